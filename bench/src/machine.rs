//! Description of the machine and tools, recorded with every result, and binary facts
//! (size, static or dynamic, stripped).

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

fn first_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Machine, kernel and tool versions.
pub fn describe() -> Value {
    let cpuinfo = read_trim("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("")
        .trim()
        .to_owned();
    let mem_kib: u64 = read_trim("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    json!({
        "cpus": std::thread::available_parallelism().map(std::num::NonZero::get).unwrap_or(0),
        "cpu_model": model,
        "mem_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": read_trim("/proc/sys/kernel/osrelease"),
        "os": read_trim("/etc/debian_version"),
        "iptables": first_line("iptables", &["--version"]),
        "nft": first_line("nft", &["--version"]),
        "reference_package": first_line("dpkg-query", &["-W", "-f", "${Package} ${Version}", "containernetworking-plugins"]),
        "loadavg_start": read_trim("/proc/loadavg"),
    })
}

/// Current load average line.
pub fn loadavg() -> String {
    read_trim("/proc/loadavg")
}

/// Facts about one binary: size, whether it is statically linked (no `PT_INTERP`) and
/// stripped (no `.symtab`), from `file(1)` when available.
pub fn binary(path: &Path) -> Value {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let file = first_line("file", &["-b", &real.to_string_lossy()]);
    let static_linked = file.contains("statically linked") || file.contains("static-pie");
    json!({
        "path": path,
        "size_bytes": size,
        "static": static_linked,
        "stripped": file.contains(", stripped"),
        "file": file,
    })
}
