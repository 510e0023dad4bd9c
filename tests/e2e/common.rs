//! Helpers shared by the `e2e_*` tests (included with `#[path]`): running
//! `cnitool` inside a private "host" namespace, reading results, and checking
//! that a namespace holds no trace of an attachment.
//!
//! Each test file uses a different subset.
#![allow(dead_code, reason = "each e2e test file uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cni_tests::{Netns, bin_dir};
use serde_json::Value;

/// The repository root (the `tests` package lives one level down).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The built `cnitool` binary next to the plugins.
///
/// # Panics
/// When it has not been built.
pub fn cnitool_bin() -> PathBuf {
    let p = bin_dir().join("cnitool");
    assert!(
        p.is_file(),
        "{p:?} not found: run `cargo build --workspace` first (or set CNI_TEST_BIN_DIR)"
    );
    p
}

/// True when `program` is on `PATH`.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// Skip (return false) with a message when `program` is missing; panic in
/// CI (`CI=true`), where the packages are installed and must be used.
pub fn require_program(program: &str, package: &str) -> bool {
    if have(program) {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{program} is missing (install Debian package {package}); CI=true forbids skipping");
    }
    eprintln!("skipped: {program} not found (install Debian package {package})");
    false
}

/// `cnitool` bound to a host namespace, a config dir and a cache dir.
pub struct Cnitool<'a> {
    /// Namespace the plugins run in (the "host").
    pub host: &'a Netns,
    /// `NETCONFPATH`.
    pub netconf_dir: PathBuf,
    /// `CNI_CACHE_DIR`.
    pub cache_dir: PathBuf,
    /// `CNI_PATH`.
    pub cni_path: PathBuf,
}

impl Cnitool<'_> {
    /// Run `cnitool <args>` in the host namespace with `extra` environment.
    pub fn run(&self, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.host.name()])
            .arg(cnitool_bin())
            .args(args)
            .env("NETCONFPATH", &self.netconf_dir)
            .env("CNI_CACHE_DIR", &self.cache_dir)
            .env("CNI_PATH", &self.cni_path)
            .env_remove("CAP_ARGS")
            .env_remove("CNI_ARGS")
            .env_remove("CNI_IFNAME")
            .env_remove("CNI_CONTAINERID");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().expect("spawn cnitool")
    }

    /// Like [`Cnitool::run`], panicking with stderr unless it succeeds.
    pub fn ok(&self, args: &[&str], extra: &[(&str, &str)]) -> String {
        let out = self.run(args, extra);
        assert!(
            out.status.success(),
            "cnitool {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `cnitool add`, returning the parsed result.
    pub fn add(&self, net: &str, ns: &Netns, extra: &[(&str, &str)]) -> Value {
        let out = self.ok(&["add", net, &ns.path().to_string_lossy()], extra);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("ADD result is not JSON ({e}): {out}"))
    }
}

/// The addresses (without prefix) of a result's `ips`, as strings.
pub fn result_ips(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .map(|ips| {
            ips.iter()
                .filter_map(|ip| ip["address"].as_str())
                .map(|a| a.split('/').next().unwrap_or(a).to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `text` mentions `ip` as a whole address (not as a prefix of a
/// longer one, e.g. 10.0.0.2 inside 10.0.0.23).
pub fn mentions_ip(text: &str, ip: &str) -> bool {
    text.match_indices(ip).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + ip.len()..].chars().next();
        let addr_char = |c: Option<char>, colon: bool| {
            c.is_some_and(|c| c.is_ascii_hexdigit() || c == '.' || (colon && c == ':'))
        };
        // A port may follow (10.0.0.2:80), a longer address may not.
        !addr_char(before, true) && !addr_char(after, false)
    })
}

/// Retry `f` until it returns true or `timeout` passes.
pub fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `ping -c1 -W1 <ip>` from `ns`, retried for a few seconds (IPv6 DAD and
/// bridge port learning take a moment).
pub fn ping(ns: &Netns, ip: &str) -> bool {
    eventually(Duration::from_secs(8), || {
        ns.exec("ping", &["-c1", "-W1", ip]).status.success()
    })
}

/// Everything netfilter holds in `ns` (nft ruleset, which includes the
/// iptables-nft tables, plus iptables-save/ip6tables-save for legacy views).
pub fn netfilter_dump(ns: &Netns) -> String {
    let mut all = String::new();
    for (prog, args) in [
        ("nft", &["list", "ruleset"][..]),
        ("iptables-save", &[][..]),
        ("ip6tables-save", &[][..]),
    ] {
        let out = ns.exec(prog, args);
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    all
}

/// The veth links in `ns`.
pub fn veths(ns: &Netns) -> Vec<String> {
    ns.exec_ok("ip", &["-o", "link", "show", "type", "veth"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

/// host-local reservation files (named after an IP) under
/// `data_dir/<network>`.
pub fn reservations(data_dir: &Path, network: &str) -> Vec<String> {
    std::fs::read_dir(data_dir.join(network))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Files left in `cache_dir/results`.
pub fn cache_entries(cache_dir: &Path) -> Vec<String> {
    std::fs::read_dir(cache_dir.join("results"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Assert that nothing of the given attachments is left: no veth in
/// `host` (other than `own_veths`, links the test made itself), no
/// reservation, no cache entry, no netfilter rule naming one of `ids` or
/// `ips`.
pub fn assert_nothing_left(
    host: &Netns,
    own_veths: &[&str],
    data_dir: &Path,
    cache_dir: &Path,
    network: &str,
    ids: &[&str],
    ips: &[String],
) {
    let left: Vec<String> = veths(host)
        .into_iter()
        .filter(|v| !own_veths.contains(&v.as_str()))
        .collect();
    assert_eq!(
        left,
        Vec::<String>::new(),
        "veths left in the host namespace"
    );
    assert_eq!(
        reservations(data_dir, network),
        Vec::<String>::new(),
        "IP reservations left"
    );
    assert_eq!(
        cache_entries(cache_dir),
        Vec::<String>::new(),
        "result cache entries left"
    );
    let rules = netfilter_dump(host);
    for id in ids {
        assert!(
            !rules.contains(id),
            "netfilter still mentions {id}:\n{rules}"
        );
    }
    for ip in ips {
        assert!(
            !mentions_ip(&rules, ip),
            "netfilter still mentions {ip}:\n{rules}"
        );
    }
}

/// Builds `dir/rootfs` from busybox-static (`/bin/<applet>` links, `page`
/// as `/www/index.html`) and returns `dir/rootfs.tar` holding it.
pub fn busybox_rootfs_tar(dir: &Path, page: &str) -> PathBuf {
    let root = dir.join("rootfs");
    for d in ["bin", "www", "tmp", "etc", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir rootfs");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    for applet in [
        "sh", "httpd", "nc", "ping", "ip", "sleep", "cat", "printf", "hostname",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
            .expect("symlink applet");
    }
    std::fs::write(root.join("www/index.html"), page).expect("index.html");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
    let tar = dir.join("rootfs.tar");
    let out = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .output()
        .expect("spawn tar");
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    tar
}

/// `rmdir` a cgroup and its children, deepest first (a cgroup directory's
/// files go with it).
pub fn remove_cgroup(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for c in children.filter_map(|c| c.ok()) {
            if c.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&c.path());
            }
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        eprintln!("warning: rmdir {}: {e}", dir.display());
    }
}
