//! `cni-bench`: our CNI plugins against the Go reference plugins (Debian's v1.1.1 and,
//! optionally, upstream's current release) in one interleaved run.
//! Run it with `make bench`; see BENCHMARKS.md and `cni-bench --help`.
#![allow(
    clippy::print_stdout,
    reason = "a benchmark tool: the result table goes to stdout"
)]

pub mod busy;
pub mod cleanup;
pub mod cli;
pub mod exec;
pub mod machine;
pub mod net;
pub mod plot;
pub mod report;
pub mod scenarios;
pub mod stats;
pub mod sys;

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use serde_json::{Map, Value, json};

use cli::Opts;
use net::{Backend, Impl};
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
    if let Some(out) = &opts.plot {
        return match plot::run(out, &opts.inputs) {
            Ok(n) => {
                eprintln!("cni-bench: {} series drawn to {}", n, out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cni-bench: --plot: {e}");
                ExitCode::FAILURE
            }
        };
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

/// The implementations of this run, ours first: Debian's reference (only with the
/// iptables backend, which is all it has), then upstream when given. Also a note for the
/// output when the reference is left out.
fn implementations(opts: &Opts, ours: &std::path::Path) -> Result<(Vec<Impl>, String), String> {
    let b = opts.backend;
    let mut impls = vec![Impl::new("ours", "o", ours, b)?];
    let mut note = String::new();
    if b == Backend::Iptables {
        impls.push(Impl::new("debian", "d", &opts.reference, b)?);
    } else {
        note = format!(
            "debian ({}) left out: v1.1.1 has no nftables backend (it ignores the keys and uses iptables)",
            opts.reference.display()
        );
    }
    if let Some(up) = &opts.upstream {
        impls.push(Impl::new("upstream", "u", up, b)?);
    }
    if impls.len() == 1 {
        note.push_str("; no reference to compare with (give --upstream DIR)");
    }
    Ok((impls, note))
}

fn run(opts: Opts, ours: &std::path::Path) -> ExitCode {
    let started = Instant::now();
    let machine = machine::describe();
    let (impls, note) = match implementations(&opts, ours) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("cni-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let list: Vec<String> = impls
        .iter()
        .map(|i| {
            format!(
                "{} = {} (host namespace {})",
                i.label,
                i.dir.display(),
                i.host_name
            )
        })
        .collect();
    eprintln!(
        "cni-bench: backend {}; {}",
        opts.backend.as_str(),
        list.join(", ")
    );
    if !note.is_empty() {
        eprintln!("cni-bench: {note}");
    }
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
            5 => ctx.scenario5(),
            _ => ctx.scenario6(),
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

    let labels = ctx.labels();
    let table = report::table(&labels, &ctx.rows);
    let impl_list: Vec<String> = ctx
        .impls
        .iter()
        .map(|i| format!("{} ({})", i.label, i.dir.display()))
        .collect();
    let refs: Vec<&str> = labels.iter().skip(1).copied().collect();
    let summary = format!(
        "backend {}: {}; medians of interleaved runs; ratio = ours/{}{}",
        opts.backend.as_str(),
        impl_list.join(", "),
        if refs.is_empty() {
            "-".to_owned()
        } else {
            refs.join(", ours/")
        },
        if note.is_empty() {
            String::new()
        } else {
            format!("\nnote: {note}")
        },
    );
    let machine_line = format!(
        "machine: {} cpus, {}, kernel {}, {}, {}; total {:.0} s",
        machine["cpus"],
        machine["cpu_model"].as_str().unwrap_or(""),
        machine["kernel"].as_str().unwrap_or(""),
        machine["iptables"].as_str().unwrap_or(""),
        machine["nft"].as_str().unwrap_or(""),
        total.as_secs_f64(),
    );
    let _ = std::io::stdout()
        .write_all(format!("cni-bench: {summary}\n{machine_line}\n\n{table}").as_bytes());
    for e in &errors {
        let _ = writeln!(std::io::stdout(), "ERROR {e}");
    }

    let mut machine = machine;
    if let Some(m) = machine.as_object_mut() {
        m.insert("loadavg_end".into(), json!(machine::loadavg()));
    }
    let c = &opts.counts;
    let options = json!({
        "backend": opts.backend.as_str(),
        "ours": ours, "reference": opts.reference, "upstream": opts.upstream,
        "reps": c.reps, "chain_reps": c.chain_reps, "scale": c.scale,
        "probes": c.probes, "parallel": c.parallel, "parallel_reps": c.parallel_reps,
        "rss_reps": c.rss_reps, "busy_rules": c.busy_rules, "busy_reps": c.busy_reps,
        "warmup": c.warmup, "scenarios": opts.scenarios,
        "quick": opts.quick, "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    let implementations: Vec<Value> = ctx
        .impls
        .iter()
        .map(|i| json!({ "label": i.label, "dir": i.dir, "backend": i.backend.as_str() }))
        .collect();
    let doc = json!({
        "machine": machine,
        "options": options,
        "implementations": implementations,
        "note": note,
        "total_s": stats::round3(total.as_secs_f64()),
        "scenario_s": durations,
        "rows": ctx.rows.iter().map(|r| r.to_json(&labels)).collect::<Vec<_>>(),
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
        && let Err(e) = write_file(
            path,
            &format!("{summary}\n\n{}", report::markdown(&labels, &ctx.rows)),
        )
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
