//! Helpers for the `e2e_*` tests (plugins driven by `cnitool`, containerd, podman and
//! the CRI API): running `cnitool` inside a private "host" namespace, reading results,
//! and checking that a namespace holds no trace of an attachment.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::{Netns, bin_dir, checked_stdout};
use serde_json::Value;

/// The "host" namespace's own address, on its uplink (TEST-NET-1).
pub const HOST_IP: &str = "192.0.2.1";
/// The address of the "outside" namespace at the other end of the uplink.
pub const OUTSIDE_IP: &str = "192.0.2.2";

/// Creates the host namespace's uplink to an "outside" namespace: [`HOST_IP`] on
/// `uplink0` in `host`, [`OUTSIDE_IP`] on `eth0` in `outside`, both up.
///
/// # Panics
/// When a command fails.
pub fn uplink(host: &Netns, outside: &Netns) {
    let out = Command::new("ip")
        .args([
            "link",
            "add",
            "uplink0",
            "netns",
            host.name(),
            "type",
            "veth",
        ])
        .args(["peer", "name", "eth0", "netns", outside.name()])
        .output()
        .expect("spawn ip link add");
    checked_stdout("uplink", &out);
    host.exec_ok(
        "ip",
        &["addr", "add", &format!("{HOST_IP}/24"), "dev", "uplink0"],
    );
    host.exec_ok("ip", &["link", "set", "uplink0", "up"]);
    outside.exec_ok(
        "ip",
        &["addr", "add", &format!("{OUTSIDE_IP}/24"), "dev", "eth0"],
    );
    outside.exec_ok("ip", &["link", "set", "eth0", "up"]);
}

/// A "host" namespace and an "outside" one joined by [`uplink`].
pub fn host_and_outside() -> (Netns, Netns) {
    let (host, outside) = (Netns::new(), Netns::new());
    uplink(&host, &outside);
    (host, outside)
}

/// The conflist the container-runtime tests install as network `name`: `bridge` on
/// bridge `bridge` as gateway with masquerade, host-local IPAM over `subnet` with a default
/// route and its state in `data_dir` (`bridge_extra` merged into that entry), then
/// `portmap` with the `portMappings` capability.
pub fn bridge_portmap_conflist(
    name: &str,
    bridge: &str,
    subnet: &str,
    data_dir: &Path,
    bridge_extra: Value,
) -> Value {
    let mut bridge_entry = serde_json::json!({
        "type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                 "routes": [{"dst": "0.0.0.0/0"}], "dataDir": data_dir},
    });
    crate::node::merge(&mut bridge_entry, bridge_extra);
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [bridge_entry, {"type": "portmap", "capabilities": {"portMappings": true}}],
    })
}

/// Where an end-to-end test of a container runtime starts: [`host_and_outside`] and
/// the runtime's network `net` ([`bridge_portmap_conflist`] in `conf`) whose IPAM state
/// is in `data`.
pub struct Testbed {
    /// The "host" namespace the runtime and the plugins run in.
    pub host: Netns,
    /// The "outside" namespace at the other end of the host's uplink.
    pub outside: Netns,
    /// The network's unique name.
    pub net: String,
    /// host-local's `dataDir`.
    pub data: tempfile::TempDir,
    /// The conflist.
    pub conf: Value,
}

/// A [`Testbed`] when running as root with runc, busybox and every one of `programs`
/// installed ([`require_programs`]); `None` (the test is skipped) otherwise. The network
/// is named `<prefix><unique>`, on bridge `bridge` over `subnet`, `bridge_extra` merged
/// into the bridge entry.
pub fn testbed(
    programs: &[(&str, &str)],
    prefix: &str,
    bridge: &str,
    subnet: &str,
    bridge_extra: Value,
) -> Option<Testbed> {
    let every_runtime = [("runc", "runc"), ("busybox", "busybox-static")];
    if !crate::require_root() || !require_programs(programs) || !require_programs(&every_runtime) {
        return None;
    }
    let (host, outside) = host_and_outside();
    let net = crate::unique_name(prefix);
    let data = tempfile::tempdir().expect("tempdir");
    let conf = bridge_portmap_conflist(&net, bridge, subnet, data.path(), bridge_extra);
    Some(Testbed {
        host,
        outside,
        net,
        data,
        conf,
    })
}

impl Testbed {
    /// The veths in the host namespace but its uplink: those of the attachments.
    pub fn veths_left(&self) -> Vec<String> {
        veths(&self.host)
            .into_iter()
            .filter(|v| v != "uplink0")
            .collect()
    }

    /// Nothing of the network's attachments is left where the runtime's plugins write:
    /// no reservation, no netfilter rule naming one of `names` or `ips`, no entry of the
    /// network in libcni's cache at `/var/lib/cni` (the host's own entries are not looked at).
    pub fn assert_released(&self, names: &[String], ips: &[String]) {
        assert_eq!(
            reservations(self.data.path(), &self.net),
            Vec::<String>::new(),
            "IP reservations left"
        );
        let rules = netfilter_dump(&self.host);
        for name in names {
            assert!(!rules.contains(name), "rule for {name} left:\n{rules}");
        }
        for ip in ips {
            assert!(!mentions_ip(&rules, ip), "rule for {ip} left:\n{rules}");
        }
        let cached: Vec<String> = cache_entries(Path::new("/var/lib/cni"))
            .into_iter()
            .filter(|f| f.starts_with(&self.net))
            .collect();
        assert_eq!(cached, Vec::<String>::new(), "libcni cache entries left");
    }
}

/// A runtime's private directory: a temporary directory with `subdirs` and `conflist`
/// written to the relative path `conflist_at`.
///
/// # Panics
/// When a directory or the file cannot be made.
pub fn runtime_dir(subdirs: &[&str], conflist_at: &str, conflist: &Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in subdirs {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
    }
    std::fs::write(dir.path().join(conflist_at), conflist.to_string()).expect("conflist");
    dir
}

/// Spawns `cmd` with its stdout and stderr appended to a new file `log`.
///
/// # Panics
/// When the log cannot be created or `cmd` not spawned.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let file = std::fs::File::create(log).expect("log");
    cmd.stdout(file.try_clone().expect("dup log"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()))
}

/// The repository root: the nearest directory above this package that holds `Cargo.lock`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .skip(1)
        .find(|d| d.join("Cargo.lock").is_file())
        .expect("the package lives in the workspace")
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

/// [`require_program`] for each `(program, Debian package)`; false (skip)
/// at the first one missing.
pub fn require_programs(programs: &[(&str, &str)]) -> bool {
    programs
        .iter()
        .all(|(program, package)| require_program(program, package))
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
        checked_stdout(&format!("cnitool {args:?}"), &self.run(args, extra))
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
    checked_stdout("tar", &out);
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

/// Turns `dir/rootfs.tar` into a one-layer OCI image layout tarball named
/// `name` (sha256sum computes the digests); `$4` is the image config's `Cmd`
/// as a JSON array.
const OCI_SCRIPT: &str = r#"set -eu
dir=$1 name=$2 arch=$3 cmd=$4
cd "$dir"
mkdir -p oci/blobs/sha256
blob() { s=$(sha256sum "$1" | cut -d' ' -f1); z=$(stat -c %s "$1"); mv "$1" "oci/blobs/sha256/$s"; echo "$s $z"; }
set -- $(blob rootfs.tar); lsha=$1 lsize=$2
printf '{"architecture":"%s","os":"linux","config":{"Cmd":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$arch" "$cmd" "$lsha" >config.json
set -- $(blob config.json); csha=$1 csize=$2
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' "$csha" "$csize" "$lsha" "$lsize" >manifest.json
set -- $(blob manifest.json); msha=$1 msize=$2
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"latest"}}]}' "$msha" "$msize" "$name" >oci/index.json
printf '{"imageLayoutVersion":"1.0.0"}' >oci/oci-layout
tar -C oci -cf image.tar .
"#;

/// Builds an OCI image layout tarball `dir/image.tar` named `name` from
/// busybox-static ([`busybox_rootfs_tar`], `page` as `/www/index.html`),
/// whose default command is `cmd`; `ctr images import` loads it without a
/// registry.
pub fn busybox_oci_image(dir: &Path, name: &str, page: &str, cmd: &[&str]) -> PathBuf {
    busybox_rootfs_tar(dir, page);
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let cmd = serde_json::to_string(cmd).expect("command as JSON");
    let out = Command::new("sh")
        .args(["-c", OCI_SCRIPT, "sh"])
        .arg(dir)
        .args([name, arch, &cmd])
        .output()
        .expect("spawn sh");
    checked_stdout("OCI layout", &out);
    dir.join("image.tar")
}

/// containerd 1.6 and ctr put shim sockets and FIFOs here whatever the
/// configuration says (deepest first).
pub const CONTAINERD_RUN_DIRS: [&str; 3] = [
    "/run/containerd/fifo",
    "/run/containerd/s",
    "/run/containerd",
];

/// The [`CONTAINERD_RUN_DIRS`] that do not exist yet: a test that starts
/// containerd removes them again (when empty) with [`remove_empty_dirs`].
pub fn missing_containerd_run_dirs() -> Vec<PathBuf> {
    CONTAINERD_RUN_DIRS
        .iter()
        .map(PathBuf::from)
        .filter(|p| !p.exists())
        .collect()
}

/// `rmdir` each of `dirs` in order, leaving those that are not empty
/// (another containerd may use them).
pub fn remove_empty_dirs(dirs: &[PathBuf]) {
    for d in dirs {
        let _ = std::fs::remove_dir(d);
    }
}

/// The top of a private containerd's `config.toml` (version 2): root,
/// state and sockets under `dir` (`c.sock`), no debug or metrics listener,
/// and the snapshotters and plugins a test never needs disabled, plus
/// `disabled` (e.g. the CRI plugin). Tables may follow.
pub fn containerd_config_head(dir: &Path, disabled: &[&str]) -> String {
    let mut plugins = vec![
        "io.containerd.snapshotter.v1.btrfs",
        "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.devmapper",
        "io.containerd.snapshotter.v1.aufs",
        "io.containerd.internal.v1.opt",
        "io.containerd.tracing.processor.v1.otlp",
    ];
    plugins.extend_from_slice(disabled);
    let list = plugins
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"root = "{root}"
state = "{state}"
disabled_plugins = [{list}]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"#,
        root = dir.join("root").display(),
        state = dir.join("state").display(),
        sock = dir.join("c.sock").display(),
    )
}

/// SIGTERM `child`, wait up to `grace` for it, then SIGKILL; always reaped.
pub fn stop_child(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX)),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + grace;
    while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Removes the cgroup `/<name>` from the unified hierarchy and from every
/// v1 hierarchy under `/sys/fs/cgroup` (with its children).
pub fn remove_cgroup_everywhere(name: &str) {
    let name = name.trim_start_matches('/');
    let mut dirs = vec![Path::new("/sys/fs/cgroup").join(name)];
    if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
        dirs.extend(
            hierarchies
                .filter_map(|h| h.ok())
                .map(|h| h.path().join(name)),
        );
    }
    for d in dirs.iter().filter(|d| d.is_dir()) {
        remove_cgroup(d);
    }
}

/// The pids of processes whose command line contains `needle` (e.g. a
/// private containerd's socket path, which its shims are started with).
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

/// Zombie processes (state `Z`) whose parent is one of `parents`.
pub fn zombie_children(parents: &[i32]) -> Vec<String> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // pid (comm) state ppid ...; comm may hold spaces and parentheses.
            let (head, rest) = stat.rsplit_once(") ")?;
            let mut f = rest.split_whitespace();
            let state = f.next()?;
            let ppid: i32 = f.next()?.parse().ok()?;
            (state == "Z" && parents.contains(&ppid)).then(|| format!("{head})"))
        })
        .collect()
}
