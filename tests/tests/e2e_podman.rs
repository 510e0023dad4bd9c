//! podman (Debian's podman 4, CNI backend) runs containers on our plugins.
//!
//! Everything is private to the test: podman runs with its own `--root`,
//! `--runroot`, `--tmpdir`, containers.conf (`CONTAINERS_CONF`), network
//! config dir with one conflist, a runc wrapper keeping runc's state in the
//! test directory, a private cgroup parent, and an image imported from a
//! rootfs made of Debian's busybox-static (no registry needed). podman and
//! therefore the plugins run in a private "host" network namespace (the
//! podman process is spawned from a thread that entered it), so the real
//! host's links and netfilter are never touched; container namespaces are
//! made by podman.
//!
//! Asserted: both containers get an address in the subnet, they ping each
//! other and talk HTTP (busybox httpd / nc), the published host port serves
//! the container's page from the host namespace, and after `podman rm` no
//! veth, IP reservation, DNAT or masquerade rule is left.
//!
//! Needs: podman, runc, conmon, busybox-static (skips without them, unless
//! `CI=true`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cni_testsupport::{Netns, bin_dir, checked_stdout, e2e, unique_name};
use e2e::{HOST_IP, mentions_ip, netfilter_dump};
use serde_json::json;

const SUBNET_PREFIX: &str = "10.89.";
const HOST_PORT: u16 = 18080;

/// A private podman installation; `Drop` removes its containers, storage
/// and cgroups, also when the test fails.
struct Podman<'a> {
    host: &'a Netns,
    dir: tempfile::TempDir,
    cgroup_parent: String,
}

impl<'a> Podman<'a> {
    fn new(host: &'a Netns, net_conf: &serde_json::Value) -> Self {
        let subdirs = ["net.d", "root", "runroot", "tmp", "runc"];
        let dir = e2e::runtime_dir(&subdirs, "net.d/10-e2e.conflist", net_conf);
        let p = dir.path();
        let wrapper = cni_testsupport::write_script(
            p,
            "runc-wrapper",
            &format!("exec runc --root {} \"$@\"", p.join("runc").display()),
        );
        let hard_nofile = hard_nofile_limit();
        std::fs::write(
            p.join("containers.conf"),
            format!(
                r#"[containers]
default_ulimits = ["nofile={hard_nofile}:{hard_nofile}", "nproc=32768:32768"]
log_driver = "k8s-file"

[network]
network_backend = "cni"
cni_plugin_dirs = ["{bin}"]
network_config_dir = "{netd}"
default_network = "unused-default"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{events}"
lock_type = "file"
tmp_dir = "{tmp}"
runtime = "e2e-runc"

[engine.runtimes]
e2e-runc = ["{wrapper}"]
"#,
                bin = bin_dir().display(),
                netd = p.join("net.d").display(),
                events = p.join("events.log").display(),
                tmp = p.join("tmp").display(),
                wrapper = wrapper.display(),
            ),
        )
        .expect("containers.conf");
        Self {
            host,
            dir,
            cgroup_parent: format!("/{}", unique_name("cnie2e-")),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let p = self.dir.path();
        let mut cmd = Command::new("podman");
        cmd.env("CONTAINERS_CONF", p.join("containers.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", p.join("registries.conf"))
            .arg("--root")
            .arg(p.join("root"))
            .arg("--runroot")
            .arg(p.join("runroot"))
            .args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs"])
            .arg("--network-config-dir")
            .arg(p.join("net.d"))
            .arg("--tmpdir")
            .arg(p.join("tmp"))
            .args(args);
        // Spawned from a thread inside the host namespace: podman and the
        // plugins it runs live there.
        self.host.run_in(|| cmd.output().expect("spawn podman"))
    }

    fn ok(&self, args: &[&str]) -> String {
        checked_stdout(&format!("podman {args:?}"), &self.run(args))
            .trim()
            .to_owned()
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        let out = self.run(&["rm", "--all", "--force", "--time", "0"]);
        if !out.status.success() {
            eprintln!(
                "warning: podman rm --all: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = self.run(&["system", "reset", "--force"]);
        // The private cgroup parent (with conmon's child) in every v1
        // hierarchy, or the unified one.
        e2e::remove_cgroup_everywhere(&self.cgroup_parent);
    }
}

/// The hard `RLIMIT_NOFILE` of this process (from `/proc/self/limits`).
fn hard_nofile_limit() -> String {
    let limits = std::fs::read_to_string("/proc/self/limits").expect("read /proc/self/limits");
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .expect("Max open files line")
        .to_owned()
}

fn http_get(host: &Netns, addr: &str) -> String {
    host.run_in(|| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let attempt = (|| -> std::io::Result<String> {
                let mut s = TcpStream::connect_timeout(
                    &addr.parse().expect("addr"),
                    Duration::from_secs(2),
                )?;
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                let mut body = String::new();
                s.read_to_string(&mut body)?;
                Ok(body)
            })();
            match attempt {
                Ok(b) if b.contains("hello") => return b,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(300)),
                other => panic!("GET http://{addr}/ from {}: {other:?}", host.name()),
            }
        }
    })
}

#[test]
fn e2e_podman_cni_backend() {
    let started = Instant::now();
    let programs = [("podman", "podman"), ("conmon", "conmon")];
    let subnet = format!("{SUBNET_PREFIX}0.0/24");
    let extra = json!({"hairpinMode": true});
    // The host's own address, on a veth to an "outside" namespace.
    let Some(tb) = e2e::testbed(&programs, "cnie2e-", "cnie2e0", &subnet, extra) else {
        return;
    };
    let podman = Podman::new(&tb.host, &tb.conf);
    let tar = e2e::busybox_rootfs_tar(podman.dir.path(), "hello from podman c1\n");
    let image = "localhost/cnie2e-busybox:latest";
    podman.ok(&[
        "import",
        "--change",
        "CMD=/bin/sh",
        &tar.to_string_lossy(),
        image,
    ]);

    let run_common = |name: &str| {
        vec![
            "run".to_owned(),
            "-d".to_owned(),
            "--name".to_owned(),
            name.to_owned(),
            "--network".to_owned(),
            tb.net.clone(),
            "--cgroup-parent".to_owned(),
            podman.cgroup_parent.clone(),
            "--cap-add".to_owned(),
            "NET_RAW".to_owned(),
        ]
    };
    let (n1, n2) = (unique_name("c1-"), unique_name("c2-"));
    let mut a1 = run_common(&n1);
    a1.extend(
        [
            "-p",
            &format!("{HOST_PORT}:80"),
            image,
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
            "/www",
        ]
        .map(str::to_owned),
    );
    let mut a2 = run_common(&n2);
    a2.extend([image, "sleep", "600"].map(str::to_owned));
    let id1 = podman.ok(&a1.iter().map(String::as_str).collect::<Vec<_>>());
    let id2 = podman.ok(&a2.iter().map(String::as_str).collect::<Vec<_>>());

    let ip_of = |name: &str| {
        podman.ok(&[
            "inspect",
            "--format",
            &format!(
                "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
                tb.net
            ),
            name,
        ])
    };
    let (ip1, ip2) = (ip_of(&n1), ip_of(&n2));
    assert!(
        ip1.starts_with(SUBNET_PREFIX) && ip2.starts_with(SUBNET_PREFIX),
        "{ip1} {ip2}"
    );
    assert_ne!(ip1, ip2);
    let eth0 = podman.ok(&["exec", &n2, "ip", "-4", "-o", "addr", "show", "eth0"]);
    assert!(eth0.contains(&ip2), "{eth0}");

    podman.ok(&["exec", &n2, "ping", "-c", "1", "-W", "2", &ip1]);
    podman.ok(&["exec", &n1, "ping", "-c", "1", "-W", "2", &ip2]);
    let page = podman.ok(&[
        "exec",
        &n2,
        "sh",
        "-c",
        &format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc {ip1} 80"),
    ]);
    assert!(
        page.contains("hello from podman c1"),
        "HTTP c2 -> c1: {page}"
    );

    // The published port serves from the host itself and from tb.outside.
    for client in [&tb.host, &tb.outside] {
        let page = http_get(client, &format!("{HOST_IP}:{HOST_PORT}"));
        assert!(page.contains("200 OK"), "{page}");
    }
    let rules = netfilter_dump(&tb.host);
    assert!(
        mentions_ip(&rules, &ip1) && rules.contains(&id1),
        "rules for c1 missing:\n{rules}"
    );

    podman.ok(&["rm", "--force", "--time", "0", &n1, &n2]);
    assert_eq!(
        tb.veths_left(),
        Vec::<String>::new(),
        "veths left after podman rm"
    );
    // No DNAT or masquerade rule names a container or its address.
    tb.assert_released(&[id1, id2], &[ip1, ip2]);
    eprintln!("podman e2e took {:?}", started.elapsed());
}
