//! `cni-archcheck`: the structure check of `make lint`.
//!
//! * [`crates`]: the dependency rules between workspace packages stated in
//!   ARCHITECTURE.md ("Rules"), read from `cargo metadata --no-deps`;
//! * [`modules`]: no cycle among the modules of a crate under `crates/` or
//!   `plugins/` (edges: `use` and paths naming another module of the crate).
//!
//! Usage: `cargo run -p cni-archcheck` (prints every violation, exits 1 if
//! there is one); `--modules` also prints each crate's module edges.

mod crates;
mod lex;
mod modules;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let verbose = std::env::args().any(|a| a == "--modules");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = match Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
    {
        Ok(o) if o.status.success() => o.stdout,
        Ok(o) => {
            eprintln!(
                "archcheck: cargo metadata failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("archcheck: cannot run cargo metadata: {e}");
            return ExitCode::FAILURE;
        }
    };
    let packages = match crates::Workspace::from_metadata(&output) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("archcheck: cargo metadata: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut problems = packages.violations();
    let mut out = std::io::stdout().lock();
    for package in packages.production() {
        for root in &package.roots {
            let graph = modules::Graph::load(root);
            problems.extend(
                graph
                    .problems
                    .iter()
                    .map(|p| format!("{}: {p}", package.name)),
            );
            if verbose {
                for (from, to, at) in graph.edges() {
                    let _ = writeln!(out, "{} {from} -> {to} ({at})", package.name);
                }
            }
            for cycle in graph.cycles() {
                problems.push(format!("{}: module cycle {cycle}", package.name));
            }
        }
    }
    for p in &problems {
        eprintln!("archcheck: {p}");
    }
    if problems.is_empty() {
        let _ = writeln!(
            out,
            "archcheck: crate edges and module graphs OK ({} packages)",
            packages.len()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "archcheck: {} problem(s); the rules are in ARCHITECTURE.md",
            problems.len()
        );
        ExitCode::FAILURE
    }
}

/// A path relative to the workspace root, for messages.
fn relative(root: &std::path::Path, path: &std::path::Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}
