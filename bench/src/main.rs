//! `cni-bench`: our CNI plugins against the Go reference plugins in one interleaved run.
//! Run it with `make bench`; see BENCHMARKS.md and `cni-bench --help`.
#![allow(
    clippy::print_stdout,
    reason = "a benchmark tool: the result table goes to stdout"
)]

pub mod cleanup;
pub mod cli;
pub mod exec;
pub mod machine;
pub mod net;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod sys;

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::{Map, Value, json};

use cli::Opts;
use net::Impl;
use scenarios::Ctx;

/// Entry point of `cni-bench`.
fn main() -> ExitCode {
    let opts = match Opts::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cni-bench: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if opts.help {
        let _ = std::io::stdout().write_all(cli::USAGE.as_bytes());
        return ExitCode::SUCCESS;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!("cni-bench: must run as root (it creates network namespaces)");
        return ExitCode::from(2);
    }
    if opts.cleanup {
        let (ns, dirs) = cleanup::cleanup_prefix(cleanup::PREFIX);
        eprintln!("cni-bench: removed {ns} namespaces and {dirs} temp dirs named cnibench-*");
        return ExitCode::SUCCESS;
    }
    let Some(ours) = opts.ours.clone() else {
        eprintln!(
            "cni-bench: give the directory of our plugins\n\n{}",
            cli::USAGE
        );
        return ExitCode::from(2);
    };
    let guard = match cleanup::Guard::install() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("cni-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = run(opts, &ours);
    drop(guard);
    code
}

fn run(opts: Opts, ours: &std::path::Path) -> ExitCode {
    let started = Instant::now();
    let machine = machine::describe();
    let impls = match (
        Impl::new("ours", "o", ours),
        Impl::new("reference", "r", &opts.reference),
    ) {
        (Ok(a), Ok(b)) => [a, b],
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("cni-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "cni-bench: ours = {}, reference = {}; host namespaces {} and {}",
        impls[0].dir.display(),
        impls[1].dir.display(),
        impls[0].host_name,
        impls[1].host_name
    );
    let mut ctx = Ctx {
        impls,
        opts: opts.clone(),
        rows: Vec::new(),
        detail: Map::new(),
    };
    let mut errors: Vec<String> = Vec::new();
    let mut durations = Map::new();
    for &s in &opts.scenarios {
        if cleanup::interrupted() {
            break;
        }
        let t = Instant::now();
        let r = match s {
            1 => ctx.scenario1(),
            2 => ctx.scenario2(),
            3 => ctx.scenario3(),
            4 => ctx.scenario4(),
            _ => ctx.scenario5(),
        };
        durations.insert(
            s.to_string(),
            json!(stats::round3(t.elapsed().as_secs_f64())),
        );
        if let Err(e) = r {
            eprintln!("cni-bench: scenario {s}: {e}");
            errors.push(format!("scenario {s}: {e}"));
        }
    }
    let total = started.elapsed();

    let table = report::table(&ctx.rows);
    let header = format!(
        "cni-bench: ours ({}) vs reference ({}), medians of interleaved runs; ratio = ours/ref\n\
         machine: {} cpus, {}, kernel {}, {}, {}; total {:.0} s\n\n",
        ctx.impls[0].dir.display(),
        ctx.impls[1].dir.display(),
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or(""),
        machine["kernel"].as_str().unwrap_or(""),
        machine["iptables"].as_str().unwrap_or(""),
        machine["nft"].as_str().unwrap_or(""),
        total.as_secs_f64(),
    );
    let _ = std::io::stdout().write_all(format!("{header}{table}").as_bytes());
    for e in &errors {
        let _ = writeln!(std::io::stdout(), "ERROR {e}");
    }

    let mut machine = machine;
    if let Some(m) = machine.as_object_mut() {
        m.insert("loadavg_end".into(), json!(machine::loadavg()));
    }
    let options = json!({
        "ours": ctx.impls[0].dir, "reference": ctx.impls[1].dir,
        "reps": opts.reps, "chain_reps": opts.chain_reps, "scale": opts.scale,
        "probes": opts.probes, "parallel": opts.parallel, "parallel_reps": opts.parallel_reps,
        "rss_reps": opts.rss_reps, "warmup": opts.warmup, "scenarios": opts.scenarios,
        "quick": opts.quick, "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    let doc = json!({
        "machine": machine,
        "options": options,
        "total_s": stats::round3(total.as_secs_f64()),
        "scenario_s": durations,
        "rows": ctx.rows.iter().map(report::Row::to_json).collect::<Vec<_>>(),
        "details": Value::Object(ctx.detail.clone()),
        "errors": errors,
        "interrupted": cleanup::interrupted(),
    });
    let mut ok = errors.is_empty() && !cleanup::interrupted();
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if let Err(e) = write_file(path, &text) {
            eprintln!("cni-bench: write {}: {e}", path.display());
            ok = false;
        }
    }
    if let Some(path) = &opts.markdown
        && let Err(e) = write_file(path, &report::markdown(&ctx.rows))
    {
        eprintln!("cni-bench: write {}: {e}", path.display());
        ok = false;
    }
    drop(ctx);
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn write_file(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)
}
