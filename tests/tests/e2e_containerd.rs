//! containerd (Debian's containerd 1.6, `ctr run --cni`) runs containers on
//! our plugins (loopback included: go-cni attaches it first and parses its
//! 0.3.1 result).
//!
//! A private containerd (own config, root, state, socket; the CRI plugin is
//! disabled) and an image built by hand as an OCI layout tarball from
//! Debian's busybox-static, loaded with `ctr images import`. `ctr` always
//! reads the first file of `/etc/cni/net.d` and runs plugins from
//! `/opt/cni/bin`, so every `ctr` runs in a private mount namespace (`ip
//! netns exec`, which also puts it in the test's "host" network namespace)
//! with a private directory bind-mounted on `/etc/cni` and another on
//! `/opt`. The real host's network, `/etc/cni` and `/opt` are never
//! changed.
//!
//! Asserted: both containers get an address in the subnet, they ping each
//! other and talk HTTP, a container reaches an "outside" namespace through
//! masquerade, and after the tasks are killed (ctr then DELs with an empty
//! `CNI_NETNS`) no veth, IP reservation, masquerade rule or cached result
//! is left.
//!
//! Needs: containerd, runc, busybox-static (skips without them, unless
//! `CI=true`).

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use cni_testsupport::{Netns, bin_dir, e2e, unique_name};
use e2e::{HOST_IP, OUTSIDE_IP, eventually, netfilter_dump};
use serde_json::json;

const SUBNET_PREFIX: &str = "10.90.";
const CTR_NS: &str = "cnie2e";

/// Runs `ctr` in the host network namespace and a private mount namespace
/// where `$1` is mounted on /etc/cni and `$2` on /opt.
const CTR_WRAPPER: &str = r#"set -eu
mount --bind "$1" /etc/cni
mount --bind "$2" /opt
shift 2
exec ctr "$@"
"#;

/// A private containerd; `Drop` kills its tasks, stops it and removes
/// cgroups, also when the test fails.
struct Containerd<'a> {
    host: &'a Netns,
    dir: tempfile::TempDir,
    daemon: Child,
    cgroup_parent: String,
    runs: Vec<Child>,
    /// Directories under /run that containerd/ctr hard-code and that did
    /// not exist before (removed again when empty).
    created_run_dirs: Vec<PathBuf>,
}

impl<'a> Containerd<'a> {
    fn start(host: &'a Netns, conflist: &serde_json::Value) -> Self {
        let dir = e2e::runtime_dir(
            &["etc-cni/net.d", "opt/cni/bin", "root", "state", "runc"],
            "etc-cni/net.d/10-e2e.conflist",
            conflist,
        );
        let d = dir.path();
        // ctr also attaches a loopback network (go-cni's WithLoNetwork): ours too.
        for p in ["bridge", "host-local", "portmap", "loopback"] {
            std::os::unix::fs::symlink(bin_dir().join(p), d.join("opt/cni/bin").join(p))
                .expect("link plugin");
        }
        std::fs::write(
            d.join("config.toml"),
            format!(
                "version = 2\n{}",
                e2e::containerd_config_head(d, &["io.containerd.grpc.v1.cri"])
            ),
        )
        .expect("config.toml");
        let daemon = e2e::spawn_logged(
            Command::new("containerd")
                .arg("--config")
                .arg(d.join("config.toml")),
            &d.join("containerd.log"),
        );
        let me = Self {
            host,
            dir,
            daemon,
            cgroup_parent: format!("/{}", unique_name("cnie2e-ctr-")),
            runs: Vec::new(),
            created_run_dirs: e2e::missing_containerd_run_dirs(),
        };
        let ready = eventually(Duration::from_secs(20), || {
            me.ctr_plain(&["version"]).status.success()
        });
        assert!(ready, "containerd did not start: {}", me.log());
        me
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    fn ctr_command(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            self.host.name(),
            "sh",
            "-c",
            CTR_WRAPPER,
            "sh",
        ])
        .arg(d.join("etc-cni"))
        .arg(d.join("opt"))
        .arg("--address")
        .arg(d.join("c.sock"))
        .args(["--namespace", CTR_NS])
        .args(args)
        .env("CONTAINERD_SNAPSHOTTER", "native");
        cmd
    }

    fn ctr_plain(&self, args: &[&str]) -> Output {
        self.ctr_command(args).output().expect("spawn ctr")
    }

    /// The ids a `ctr … ls -q` listing prints, one a line (none when it fails).
    fn ids(&self, ls: &[&str]) -> Vec<String> {
        String::from_utf8_lossy(&self.ctr_plain(ls).stdout)
            .lines()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn ctr(&self, args: &[&str]) -> String {
        let out = self.ctr_plain(args);
        assert!(
            out.status.success(),
            "ctr {args:?} failed ({}): {}{}\ncontainerd log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `ctr run --rm --cni` in the background (it DELs when the task ends).
    fn run(&mut self, image: &str, id: &str, cmd: &[&str]) {
        let runc_root = self.dir.path().join("runc");
        let cgroup = format!("{}/{id}", self.cgroup_parent);
        let mut args = vec![
            "run",
            "--rm",
            "--cni",
            "--runc-root",
            runc_root.to_str().expect("utf-8 path"),
            "--cgroup",
            &cgroup,
            image,
            id,
        ];
        args.extend_from_slice(cmd);
        let log =
            std::fs::File::create(self.dir.path().join(format!("run-{id}.log"))).expect("log");
        let child = self
            .ctr_command(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn ctr run");
        self.runs.push(child);
    }

    fn run_log(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("run-{id}.log"))).unwrap_or_default()
    }

    /// `ctr task exec` in container `id`.
    fn exec(&self, id: &str, cmd: &[&str]) -> String {
        let exec_id = unique_name("x");
        let mut args = vec!["task", "exec", "--exec-id", exec_id.as_str(), id];
        args.extend_from_slice(cmd);
        self.ctr(&args)
    }

    /// Wait until every `ctr run` has exited (after its DEL).
    fn wait_runs(&mut self, timeout: Duration) {
        let end = Instant::now() + timeout;
        for child in &mut self.runs {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < end => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    _ => panic!("ctr run did not exit after its task was killed"),
                }
            }
        }
    }
}

impl Drop for Containerd<'_> {
    fn drop(&mut self) {
        for id in self.ids(&["task", "ls", "-q"]) {
            let _ = self.ctr_plain(&["task", "kill", "-s", "KILL", &id]);
        }
        for child in &mut self.runs {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for id in self.ids(&["containers", "ls", "-q"]) {
            let _ = self.ctr_plain(&["task", "rm", "-f", &id]);
            let _ = self.ctr_plain(&["containers", "rm", &id]);
        }
        e2e::stop_child(&mut self.daemon, Duration::from_secs(10));
        e2e::remove_cgroup_everywhere(&self.cgroup_parent);
        e2e::remove_empty_dirs(&self.created_run_dirs);
    }
}

fn oci_image(dir: &Path, name: &str) -> PathBuf {
    e2e::busybox_oci_image(dir, name, "hello from containerd c1\n", &["/bin/sh"])
}

fn ipv4_of(c: &Containerd<'_>, id: &str) -> String {
    let out = c.exec(id, &["ip", "-4", "-o", "addr", "show", "eth0"]);
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no IPv4 on eth0 of {id}: {out}"))
        .to_owned()
}

#[test]
fn e2e_containerd_ctr_run_cni() {
    let started = Instant::now();
    let programs = [("containerd", "containerd"), ("ctr", "containerd")];
    let subnet = format!("{SUBNET_PREFIX}0.0/24");
    let Some(tb) = e2e::testbed(&programs, "cnie2e-", "cnie2e1", &subnet, json!({})) else {
        return;
    };
    let mut ctrd = Containerd::start(&tb.host, &tb.conf);
    let image = "localhost/cnie2e-busybox:latest";
    let tar = oci_image(ctrd.dir.path(), image);
    ctrd.ctr(&["images", "import", &tar.to_string_lossy()]);

    let (c1, c2) = (unique_name("c1-"), unique_name("c2-"));
    ctrd.run(image, &c1, &["httpd", "-f", "-p", "80", "-h", "/www"]);
    ctrd.run(image, &c2, &["sleep", "600"]);
    for id in [&c1, &c2] {
        let up = eventually(Duration::from_secs(30), || {
            ctrd.ctr_plain(&[
                "task",
                "exec",
                "--exec-id",
                &unique_name("p"),
                id,
                "ip",
                "-4",
                "-o",
                "addr",
                "show",
                "eth0",
            ])
            .stdout
            .windows(4)
            .any(|w| w == b"inet")
        });
        assert!(
            up,
            "{id} has no network: {}\n{}",
            ctrd.run_log(id),
            ctrd.log()
        );
    }
    let (ip1, ip2) = (ipv4_of(&ctrd, &c1), ipv4_of(&ctrd, &c2));
    assert!(
        ip1.starts_with(SUBNET_PREFIX) && ip2.starts_with(SUBNET_PREFIX),
        "{ip1} {ip2}"
    );
    assert_ne!(ip1, ip2);

    // Our loopback brought lo up in each container.
    for id in [&c1, &c2] {
        let lo = ctrd.exec(id, &["ip", "-o", "addr", "show", "lo"]);
        assert!(lo.contains("inet 127.0.0.1/8"), "{id}: {lo}");
        ctrd.exec(id, &["ping", "-c", "1", "-W", "2", "127.0.0.1"]);
    }
    ctrd.exec(&c2, &["ping", "-c", "1", "-W", "2", &ip1]);
    ctrd.exec(&c1, &["ping", "-c", "1", "-W", "2", &ip2]);
    let page = ctrd.exec(
        &c2,
        &[
            "sh",
            "-c",
            &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {ip1} 80"),
        ],
    );
    assert!(
        page.contains("hello from containerd c1"),
        "HTTP c2 -> c1: {page}"
    );

    // To the outside through the bridge plugin's masquerade.
    let listener = tb
        .outside
        .run_in(|| TcpListener::bind((OUTSIDE_IP, 9000)).expect("bind"));
    let accept = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        let mut buf = String::new();
        let _ = s.read_to_string(&mut buf);
        (peer, buf)
    });
    ctrd.exec(
        &c2,
        &["sh", "-c", &format!("echo hi | nc {OUTSIDE_IP} 9000")],
    );
    let (peer, got) = accept.join().expect("accept thread");
    assert_eq!(got.trim(), "hi");
    assert_eq!(
        peer.ip().to_string(),
        HOST_IP,
        "the outside must see the host's address"
    );
    let full_id = format!("{CTR_NS}-{c2}");
    let rules = netfilter_dump(&tb.host);
    assert!(
        rules.contains(&full_id),
        "no masquerade rule for {full_id}:\n{rules}"
    );

    // Killing the tasks ends `ctr run --rm`, which DELs with CNI_NETNS="".
    for id in [&c1, &c2] {
        ctrd.ctr(&["task", "kill", "-s", "KILL", id]);
    }
    ctrd.wait_runs(Duration::from_secs(30));
    for id in [&c1, &c2] {
        let log = ctrd.run_log(id);
        assert!(
            !log.contains("level=error"),
            "ctr run {id} reported an error: {log}"
        );
    }
    // The DEL came without a netns, so the host ends go when the kernel destroys the
    // tasks' namespaces, which it does asynchronously (later on a loaded machine).
    eventually(Duration::from_secs(20), || tb.veths_left().is_empty());
    assert_eq!(tb.veths_left(), Vec::<String>::new(), "veths left");
    let names = [&c1, &c2].map(|id| format!("{CTR_NS}-{id}"));
    tb.assert_released(&names, &[ip1, ip2]);
    eprintln!("containerd e2e took {:?}", started.elapsed());
}
