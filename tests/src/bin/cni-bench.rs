//! `cni-bench`: our CNI plugins against the Go reference plugins in one interleaved run
//! (issue #7). Run it with `make bench`; see BENCHMARKS.md and `cni-bench --help`.
#![allow(
    clippy::print_stdout,
    reason = "a benchmark tool: the result table goes to stdout"
)]

#[path = "../bench/mod.rs"]
mod bench;

fn main() -> std::process::ExitCode {
    bench::main()
}
