//! Command-line options (std only).

use std::path::PathBuf;

use crate::net::Backend;

/// Usage text.
pub const USAGE: &str = "\
cni-bench: our CNI plugins vs the Go reference plugins, interleaved in one run.

usage: cni-bench [OPTIONS] [OURS_DIR]
       cni-bench --plot OUT.svg RESULTS.json [RESULTS.json...]
       cni-bench --cleanup

  OURS_DIR / --ours DIR   directory with our bridge, host-local, portmap (required)
  --reference DIR         Debian's Go plugins v1.1.1, iptables only (default /usr/lib/cni)
  --upstream DIR          also measure upstream's current Go plugins from DIR
  --backend B             iptables (default) or nftables: bridge ipMasqBackend and portmap
                          backend; with nftables the reference (no such backend) is left out
  --reps N                scenario 1 repetitions, bridge+host-local ADD/DEL (default 60)
  --chain-reps N          scenario 2 repetitions, chain ADD/DEL (default 60)
  --scale N               scenario 3 container count (default 1000)
  --probes N              scenario 3 probe ADD/DEL pairs per checkpoint (default 5)
  --parallel N            scenario 4 concurrent chain ADDs (default 32)
  --parallel-reps N       scenario 4 repetitions (default 3)
  --rss-reps N            scenario 5 repetitions (default 5)
  --busy-rules N          scenario 6 unrelated kube-proxy-style rules on the busy node (default 20000)
  --busy-reps N           scenario 6 repetitions (default 20)
  --warmup N              untimed ADD/DEL pairs before the timed ones (default 2)
  --scenarios LIST        comma-separated subset of 1,2,3,4,5,6 (default all)
  --quick                 small run: reps 10, scale 100, probes 3, 1 parallel rep, 2 RSS reps,
                          5 busy reps
  --json FILE             write all results and samples as JSON
  --markdown FILE         write the result table as Markdown
  --plot OUT.svg          draw chain ADD latency against pods on the node (scenario 3) from the
                          JSON files given as arguments, one line per implementation and backend
  --cleanup               remove leftovers of killed runs (cnibench-* namespaces and temp dirs)
  -h, --help              this text

Must run as root (except --plot). Everything happens in private network namespaces named
cnibench-<pid>-* and temp dirs of the same name, removed at the end, on Ctrl-C and on failure.
";

/// Parsed options.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Our plugin directory.
    pub ours: Option<PathBuf>,
    /// Debian's reference plugin directory.
    pub reference: PathBuf,
    /// Upstream's current plugins, when given.
    pub upstream: Option<PathBuf>,
    /// The netfilter backend the configurations ask for.
    pub backend: Backend,
    /// Repetition and size counts, by option name (see [`COUNTS`]).
    pub counts: Counts,
    /// Scenarios to run.
    pub scenarios: Vec<u8>,
    /// JSON output.
    pub json: Option<PathBuf>,
    /// Markdown output.
    pub markdown: Option<PathBuf>,
    /// `--plot`: the SVG to write.
    pub plot: Option<PathBuf>,
    /// Positional arguments after `--plot`: the JSON result files.
    pub inputs: Vec<PathBuf>,
    /// Only clean up leftovers.
    pub cleanup: bool,
    /// Print usage.
    pub help: bool,
    /// `--quick` was given.
    pub quick: bool,
}

/// The counts of the scenarios (each set by the option of the same name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(
    missing_docs,
    reason = "each field is the option of the same name, see USAGE"
)]
pub struct Counts {
    pub reps: usize,
    pub chain_reps: usize,
    pub scale: usize,
    pub probes: usize,
    pub parallel: usize,
    pub parallel_reps: usize,
    pub rss_reps: usize,
    pub busy_rules: usize,
    pub busy_reps: usize,
    pub warmup: usize,
}

/// A count option: its name, its field, the smallest accepted value and its `--quick`
/// value (when `--quick` changes it).
type CountOpt = (
    &'static str,
    fn(&mut Counts) -> &mut usize,
    usize,
    Option<usize>,
);

/// Every count option.
const COUNTS: [CountOpt; 10] = [
    ("--reps", |c| &mut c.reps, 0, Some(10)),
    ("--chain-reps", |c| &mut c.chain_reps, 0, Some(10)),
    ("--scale", |c| &mut c.scale, 1, Some(100)),
    ("--probes", |c| &mut c.probes, 1, Some(3)),
    ("--parallel", |c| &mut c.parallel, 1, None),
    ("--parallel-reps", |c| &mut c.parallel_reps, 1, Some(1)),
    ("--rss-reps", |c| &mut c.rss_reps, 1, Some(2)),
    ("--busy-rules", |c| &mut c.busy_rules, 0, None),
    ("--busy-reps", |c| &mut c.busy_reps, 1, Some(5)),
    ("--warmup", |c| &mut c.warmup, 0, Some(1)),
];

impl Default for Opts {
    fn default() -> Self {
        Self {
            ours: None,
            reference: PathBuf::from("/usr/lib/cni"),
            upstream: None,
            backend: Backend::Iptables,
            counts: Counts {
                reps: 60,
                chain_reps: 60,
                scale: 1000,
                probes: 5,
                parallel: 32,
                parallel_reps: 3,
                rss_reps: 5,
                busy_rules: 20_000,
                busy_reps: 20,
                warmup: 2,
            },
            scenarios: vec![1, 2, 3, 4, 5, 6],
            json: None,
            markdown: None,
            plot: None,
            inputs: Vec::new(),
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
            for (_, field, _, quick) in COUNTS {
                if let Some(q) = quick {
                    *field(&mut o.counts) = q;
                }
            }
        }
        let mut positional: Vec<PathBuf> = Vec::new();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            if let Some((name, field, min, _)) = COUNTS.iter().find(|c| c.0 == a) {
                let v = value(name)?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("{name}: not a number: {v}"))?;
                *field(&mut o.counts) = n.max(*min);
                continue;
            }
            match a.as_str() {
                "-h" | "--help" => o.help = true,
                "--quick" => {}
                "--cleanup" => o.cleanup = true,
                "--ours" => o.ours = Some(value("--ours")?.into()),
                "--reference" => o.reference = value("--reference")?.into(),
                "--upstream" => o.upstream = Some(value("--upstream")?.into()),
                "--backend" => o.backend = Backend::parse(&value("--backend")?)?,
                "--json" => o.json = Some(value("--json")?.into()),
                "--markdown" => o.markdown = Some(value("--markdown")?.into()),
                "--plot" => o.plot = Some(value("--plot")?.into()),
                "--scenarios" => {
                    o.scenarios = value("--scenarios")?
                        .split(',')
                        .map(|s| match s.trim().parse::<u8>() {
                            Ok(n @ 1..=6) => Ok(n),
                            _ => Err(format!("--scenarios: unknown scenario {s:?}")),
                        })
                        .collect::<Result<_, _>>()?;
                }
                s if s.starts_with('-') => return Err(format!("unknown option {s}")),
                arg => positional.push(arg.into()),
            }
        }
        if o.plot.is_some() {
            o.inputs = positional;
        } else if let Some(dir) = positional.pop() {
            if o.ours.is_some() || !positional.is_empty() {
                return Err(format!("unexpected argument {}", dir.display()));
            }
            o.ours = Some(dir);
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
        let c = o.counts;
        assert_eq!(
            (c.reps, c.scale, c.parallel, c.busy_rules),
            (60, 1000, 32, 20_000)
        );
        assert_eq!(o.backend, Backend::Iptables);
        let o = parse(&["--scale", "50", "--quick", "--ours", "x"]).unwrap();
        assert_eq!(
            (o.counts.reps, o.counts.scale, o.counts.busy_reps),
            (10, 50, 5)
        );
        let o = parse(&[
            "--scenarios",
            "1,6",
            "--backend",
            "nftables",
            "--upstream",
            "u",
        ])
        .unwrap();
        assert_eq!(o.scenarios, vec![1, 6]);
        assert_eq!(o.backend, Backend::Nftables);
        assert_eq!(o.upstream, Some(PathBuf::from("u")));
        assert!(parse(&["--scenarios", "9"]).is_err());
        assert!(parse(&["--backend", "ebtables"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
        assert!(parse(&["a", "b"]).is_err());
        assert!(parse(&["--scale"]).is_err());
        assert_eq!(parse(&["--scale", "0"]).unwrap().counts.scale, 1);
        let o = parse(&["--plot", "o.svg", "a.json", "b.json"]).unwrap();
        assert_eq!(o.inputs.len(), 2);
        assert!(o.ours.is_none());
    }
}
