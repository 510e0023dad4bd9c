//! Command-line options (std only).

use std::path::PathBuf;

/// Usage text.
pub const USAGE: &str = "\
cni-bench: our CNI plugins vs the Go reference plugins, interleaved in one run.

usage: cni-bench [OPTIONS] [OURS_DIR]
       cni-bench --cleanup

  OURS_DIR / --ours DIR   directory with our bridge, host-local, portmap (required)
  --reference DIR         the reference plugins (default /usr/lib/cni)
  --reps N                scenario 1 repetitions, bridge+host-local ADD/DEL (default 60)
  --chain-reps N          scenario 2 repetitions, chain ADD/DEL (default 60)
  --scale N               scenario 3 container count (default 1000)
  --probes N              scenario 3 probe ADD/DEL pairs per checkpoint (default 5)
  --parallel N            scenario 4 concurrent chain ADDs (default 32)
  --parallel-reps N       scenario 4 repetitions (default 3)
  --rss-reps N            scenario 5 repetitions (default 5)
  --warmup N              untimed ADD/DEL pairs before scenarios 1 and 2 (default 2)
  --scenarios LIST        comma-separated subset of 1,2,3,4,5 (default all)
  --quick                 small run: reps 10, scale 100, probes 3, 1 parallel rep, 2 RSS reps
  --json FILE             write all results and samples as JSON
  --markdown FILE         write the result table as Markdown
  --cleanup               remove leftovers of killed runs (cnibench-* namespaces and temp dirs)
  -h, --help              this text

Must run as root. Everything happens in private network namespaces named cnibench-<pid>-*
and temp dirs of the same name, removed at the end, on Ctrl-C and on failure.
";

/// Parsed options.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Our plugin directory.
    pub ours: Option<PathBuf>,
    /// Reference plugin directory.
    pub reference: PathBuf,
    /// Scenario 1 repetitions.
    pub reps: usize,
    /// Scenario 2 repetitions.
    pub chain_reps: usize,
    /// Scenario 3 container count.
    pub scale: usize,
    /// Scenario 3 probes per checkpoint.
    pub probes: usize,
    /// Scenario 4 concurrency.
    pub parallel: usize,
    /// Scenario 4 repetitions.
    pub parallel_reps: usize,
    /// Scenario 5 repetitions.
    pub rss_reps: usize,
    /// Warm-up pairs.
    pub warmup: usize,
    /// Scenarios to run.
    pub scenarios: Vec<u8>,
    /// JSON output.
    pub json: Option<PathBuf>,
    /// Markdown output.
    pub markdown: Option<PathBuf>,
    /// Only clean up leftovers.
    pub cleanup: bool,
    /// Print usage.
    pub help: bool,
    /// `--quick` was given.
    pub quick: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            ours: None,
            reference: PathBuf::from("/usr/lib/cni"),
            reps: 60,
            chain_reps: 60,
            scale: 1000,
            probes: 5,
            parallel: 32,
            parallel_reps: 3,
            rss_reps: 5,
            warmup: 2,
            scenarios: vec![1, 2, 3, 4, 5],
            json: None,
            markdown: None,
            cleanup: false,
            help: false,
            quick: false,
        }
    }
}

impl Opts {
    /// Parses `args` (without the program name). `--quick` sets small defaults that later
    /// explicit options override.
    ///
    /// # Errors
    /// A message for unknown options or bad values.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let args: Vec<String> = args.into_iter().collect();
        let mut o = Self::default();
        if args.iter().any(|a| a == "--quick") {
            o.quick = true;
            o.reps = 10;
            o.chain_reps = 10;
            o.scale = 100;
            o.probes = 3;
            o.parallel_reps = 1;
            o.rss_reps = 2;
            o.warmup = 1;
        }
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            let count = |name: &str, v: String| -> Result<usize, String> {
                v.parse().map_err(|_| format!("{name}: not a number: {v}"))
            };
            match a.as_str() {
                "-h" | "--help" => o.help = true,
                "--quick" => {}
                "--cleanup" => o.cleanup = true,
                "--ours" => o.ours = Some(value("--ours")?.into()),
                "--reference" => o.reference = value("--reference")?.into(),
                "--reps" => o.reps = count("--reps", value("--reps")?)?,
                "--chain-reps" => o.chain_reps = count("--chain-reps", value("--chain-reps")?)?,
                "--scale" => o.scale = count("--scale", value("--scale")?)?.max(1),
                "--probes" => o.probes = count("--probes", value("--probes")?)?.max(1),
                "--parallel" => o.parallel = count("--parallel", value("--parallel")?)?.max(1),
                "--parallel-reps" => {
                    o.parallel_reps = count("--parallel-reps", value("--parallel-reps")?)?.max(1);
                }
                "--rss-reps" => o.rss_reps = count("--rss-reps", value("--rss-reps")?)?.max(1),
                "--warmup" => o.warmup = count("--warmup", value("--warmup")?)?,
                "--json" => o.json = Some(value("--json")?.into()),
                "--markdown" => o.markdown = Some(value("--markdown")?.into()),
                "--scenarios" => {
                    let v = value("--scenarios")?;
                    o.scenarios = v
                        .split(',')
                        .map(|s| match s.trim().parse::<u8>() {
                            Ok(n @ 1..=5) => Ok(n),
                            _ => Err(format!("--scenarios: unknown scenario {s:?}")),
                        })
                        .collect::<Result<_, _>>()?;
                }
                s if s.starts_with('-') => return Err(format!("unknown option {s}")),
                dir => {
                    if o.ours.is_some() {
                        return Err(format!("unexpected argument {dir}"));
                    }
                    o.ours = Some(dir.into());
                }
            }
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(a: &[&str]) -> Result<Opts, String> {
        Opts::parse(a.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn defaults_quick_and_overrides() {
        let o = parse(&["dir"]).unwrap();
        assert_eq!(o.ours, Some(PathBuf::from("dir")));
        assert_eq!((o.reps, o.scale, o.parallel), (60, 1000, 32));
        let o = parse(&["--scale", "50", "--quick", "--ours", "x"]).unwrap();
        assert_eq!((o.reps, o.scale), (10, 50));
        let o = parse(&["--scenarios", "1,3"]).unwrap();
        assert_eq!(o.scenarios, vec![1, 3]);
        assert!(parse(&["--scenarios", "9"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["a", "b"]).is_err());
    }
}
