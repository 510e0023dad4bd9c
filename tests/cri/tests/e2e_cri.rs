//! kubelet's path: containerd's CRI plugin (Debian's containerd 1.6) runs
//! the plugins for pod sandboxes, driven through the CRI v1 gRPC API the
//! way kubelet drives it.
//!
//! A private containerd (own root, state, socket and `config.toml`; the
//! CRI section is `conf-examples/containerd-cri.toml` with `bin_dir` and
//! `conf_dir` pointed at private directories) runs in a private "host"
//! network namespace (`nsenter --net`: `ip netns exec` would also remount
//! `/sys` and hide the cgroup hierarchies runc needs) and a private mount
//! namespace (`unshare --mount --propagation slave`) where an overlay on
//! `/var/lib` catches libcni's result cache (`/var/lib/cni/results`, not
//! configurable in containerd 1.6) in the test's directory. `bin_dir` holds
//! only `bridge`, `host-local`, `portmap` and `loopback`: ours (the build
//! directory), or another set named by `CRI_E2E_PLUGINS` (e.g.
//! `CRI_E2E_PLUGINS=/usr/lib/cni`, the Go reference plugins, to check the
//! test itself). `conf_dir` holds one conflist: bridge with `ipMasq`,
//! host-local, portmap with `"capabilities": {"portMappings": true}`.
//!
//! The image (sandbox image and container image alike) is built from
//! busybox-static as an OCI layout tarball, its default command a sleep,
//! and imported into the `k8s.io` namespace: nothing is pulled.
//!
//! Asserted: two pods (A with `hostPort` 18080 -> 80/TCP, B without) get
//! addresses in the subnet; a busybox `httpd` in pod A answers from pod B's
//! namespace, from the host namespace, and from an "outside" namespace at
//! the host's address and port 18080; after StopPodSandbox (DEL with the
//! pod's namespace) and RemovePodSandbox (containerd 1.6 DELs again, with
//! an empty `CNI_NETNS`) no veth, IP reservation, netfilter rule naming a pod's
//! id or address, cached result, pod network namespace, pod process, shim
//! or zombie is left.
//!
//! Needs root, containerd, runc, busybox-static (skips without them, unless
//! `CI=true`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use cni_cri_tests::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ImageSpec, LinuxPodSandboxConfig,
    PodSandboxConfig, PodSandboxMetadata, PodSandboxState, PortMapping, Protocol,
};
use cni_cri_tests::{Cri, CriError};
use cni_testsupport::{Netns, bin_dir, e2e, unique_name};
use e2e::{HOST_IP, eventually, mentions_ip, netfilter_dump, reservations};
use serde_json::Value;

const SUBNET: &str = "10.91.0.0/24";
const SUBNET_PREFIX: &str = "10.91.0.";
const BRIDGE: &str = "cnicri0";
const HOST_PORT: u16 = 18080;
const IMAGE: &str = "localhost/cnie2e-cri-busybox:latest";
const PAGE: &str = "hello from pod A\n";
/// The plugins containerd's CRI plugin runs: the chain, and `loopback`
/// for the pod's `lo` (go-cni always adds that network).
const PLUGINS: [&str; 4] = ["bridge", "host-local", "portmap", "loopback"];
/// Bound of every CRI call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the daemon with an overlay on `/var/lib` (upper `$1`, work `$2`),
/// inside the private mount namespace it is started in.
const DAEMON_WRAPPER: &str = r#"set -eu
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$1,workdir=$2" /var/lib
shift 2
exec "$@"
"#;

/// The directory whose `bridge`, `host-local`, `portmap` and `loopback`
/// the test puts in containerd's `bin_dir`.
fn plugin_source() -> PathBuf {
    std::env::var_os("CRI_E2E_PLUGINS").map_or_else(bin_dir, PathBuf::from)
}

/// A private containerd with its CRI plugin; `Drop` removes what the test
/// left (pods through CRI, then tasks, the daemon, shims, cgroups), also
/// when the test fails.
struct CriContainerd {
    dir: tempfile::TempDir,
    daemon: Child,
    cri: Option<Cri>,
    cgroup_parent: String,
    created_run_dirs: Vec<PathBuf>,
    /// Sandboxes not yet removed.
    pods: Vec<String>,
}

impl CriContainerd {
    fn start(host: &Netns, conflist: &Value, plugins: &Path) -> Self {
        let subdirs = [
            "cni/bin",
            "cni/net.d",
            "root",
            "state",
            "runc",
            "logs",
            "varlib/upper",
            "varlib/work",
        ];
        let dir = e2e::runtime_dir(&subdirs, "cni/net.d/10-cri.conflist", conflist);
        let d = dir.path();
        for p in PLUGINS {
            let src = plugins.join(p);
            assert!(
                src.is_file(),
                "{} not found: bin_dir must hold {PLUGINS:?} (build the workspace, or set \
                 CRI_E2E_PLUGINS to a directory holding them)",
                src.display()
            );
            std::os::unix::fs::symlink(&src, d.join("cni/bin").join(p)).expect("link plugin");
        }
        assert_eq!(
            std::fs::read_dir(d.join("cni/bin"))
                .map(Iterator::count)
                .ok(),
            Some(PLUGINS.len()),
            "bin_dir holds only {PLUGINS:?}"
        );
        let example =
            std::fs::read_to_string(e2e::repo_root().join("conf-examples/containerd-cri.toml"))
                .expect("read conf-examples/containerd-cri.toml")
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .map(|l| format!("{l}\n"))
                .collect::<String>();
        for default in ["\"/opt/cni/bin\"", "\"/etc/cni/net.d\""] {
            assert_eq!(example.matches(default).count(), 1, "{default} in example");
        }
        let cni_section = example
            .replace("\"/opt/cni/bin\"", &format!("{:?}", d.join("cni/bin")))
            .replace("\"/etc/cni/net.d\"", &format!("{:?}", d.join("cni/net.d")));
        // The example's top-level keys (`version = 2`) must precede the
        // tables of the head.
        let split = cni_section.find("\n[").map_or(0, |i| i + 1);
        let (top, tables) = cni_section.split_at(split);
        let config = format!(
            r#"{top}{head}
{tables}
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  disable_apparmor = true
  enable_selinux = false
  restrict_oom_score_adj = true
  disable_cgroup = false
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "native"
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{runc}"
"#,
            head = e2e::containerd_config_head(d, &[]),
            runc = d.join("runc").display(),
        );
        std::fs::write(d.join("config.toml"), config).expect("config.toml");
        let daemon = e2e::spawn_logged(
            Command::new("nsenter")
                .arg(format!("--net={}", host.path().display()))
                .args(["unshare", "--mount", "--propagation", "slave"])
                .args(["sh", "-c", DAEMON_WRAPPER, "sh"])
                .arg(d.join("varlib/upper"))
                .arg(d.join("varlib/work"))
                .arg("containerd")
                .arg("--config")
                .arg(d.join("config.toml")),
            &d.join("containerd.log"),
        );
        let mut me = Self {
            dir,
            daemon,
            cri: None,
            cgroup_parent: format!("/{}", unique_name("cnie2e-cri-")),
            created_run_dirs: e2e::missing_containerd_run_dirs(),
            pods: Vec::new(),
        };
        let sock = me.socket();
        let mut last = String::new();
        let ready = eventually(Duration::from_secs(30), || {
            if !matches!(me.daemon.try_wait(), Ok(None)) {
                return true;
            }
            if !sock.exists() {
                return false;
            }
            match Cri::connect(&sock, CALL_TIMEOUT).and_then(|mut c| c.version().map(|v| (c, v))) {
                Ok((c, v)) => {
                    eprintln!(
                        "CRI: {} {} (API {})",
                        v.runtime_name, v.runtime_version, v.runtime_api_version
                    );
                    me.cri = Some(c);
                    true
                }
                Err(e) => {
                    last = e.to_string();
                    false
                }
            }
        });
        assert!(
            ready && me.cri.is_some(),
            "containerd's CRI plugin did not answer ({last}): {}",
            me.log()
        );
        me
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn cri(&mut self) -> &mut Cri {
        self.cri.as_mut().expect("connected")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// The tail of the daemon's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `ctr` on this daemon's socket in the `k8s.io` namespace (the CRI
    /// plugin's), killed after 30 s.
    fn ctr(&self, args: &[&str]) -> Output {
        Command::new("timeout")
            .args(["30", "ctr", "--address"])
            .arg(self.socket())
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .expect("spawn ctr")
    }

    /// libcni's result cache (`/var/lib/cni/results` as containerd sees it).
    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("varlib/upper/cni")
    }

    /// The pod network namespaces containerd mounted under its state dir.
    fn netns_files(&self) -> Vec<String> {
        std::fs::read_dir(
            self.dir
                .path()
                .join("state/io.containerd.grpc.v1.cri/netns"),
        )
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
    }

    fn sandbox_config(&self, name: &str, ports: Vec<PortMapping>) -> PodSandboxConfig {
        let log_dir = self.dir.path().join("logs").join(name);
        std::fs::create_dir_all(&log_dir).expect("log dir");
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: unique_name("uid-"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_dir.to_string_lossy().into_owned(),
            port_mappings: ports,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent.clone(),
            }),
        }
    }

    fn run_pod(&mut self, config: PodSandboxConfig) -> Result<String, CriError> {
        let id = self.cri().run_pod_sandbox(config)?;
        self.pods.push(id.clone());
        Ok(id)
    }

    /// StopPodSandbox + RemovePodSandbox, as kubelet does when a pod goes.
    fn remove_pod(&mut self, id: &str) -> Result<(), CriError> {
        self.cri().stop_and_remove_pod_sandbox(id)?;
        self.pods.retain(|p| p != id);
        Ok(())
    }
}

impl Drop for CriContainerd {
    fn drop(&mut self) {
        // Pods the test did not remove: through CRI first, so the plugins
        // get their DEL.
        if let Some(cri) = self.cri.as_mut() {
            cri.set_timeout(Duration::from_secs(20));
            for id in std::mem::take(&mut self.pods) {
                if let Err(e) = cri.stop_and_remove_pod_sandbox(&id) {
                    eprintln!("cleanup: pod {id}: {e}");
                }
            }
        }
        // Whatever is still running: kill and delete the tasks.
        let tasks = self.ctr(&["tasks", "ls", "-q"]);
        for id in String::from_utf8_lossy(&tasks.stdout).lines() {
            let _ = self.ctr(&["tasks", "kill", "-s", "KILL", id.trim()]);
            let _ = self.ctr(&["tasks", "rm", "-f", id.trim()]);
        }
        self.cri = None;
        e2e::stop_child(&mut self.daemon, Duration::from_secs(10));
        // Shims are started with this daemon's socket address.
        for pid in e2e::pids_with_cmdline(&self.socket().to_string_lossy()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Containers whose shim is gone.
        let runc_root = self.dir.path().join("runc/k8s.io");
        if runc_root.is_dir() {
            let list = Command::new("timeout")
                .args(["10", "runc", "--root"])
                .arg(&runc_root)
                .args(["list", "-q"])
                .output();
            if let Ok(list) = list {
                for id in String::from_utf8_lossy(&list.stdout).lines() {
                    let _ = Command::new("timeout")
                        .args(["10", "runc", "--root"])
                        .arg(&runc_root)
                        .args(["delete", "--force", id.trim()])
                        .output();
                }
            }
        }
        e2e::remove_cgroup_everywhere(&self.cgroup_parent);
        e2e::remove_empty_dirs(&self.created_run_dirs);
    }
}

/// The pid in a CRI `info` map (containerd's verbose status).
fn info_pid(info: &HashMap<String, String>) -> Option<i32> {
    let v: Value = serde_json::from_str(info.get("info")?).ok()?;
    i32::try_from(v["pid"].as_i64()?).ok().filter(|p| *p > 0)
}

/// An HTTP GET of `/` at `addr:port` with `busybox nc` (busybox-static's
/// `wget` cannot resolve anything statically linked) from the namespace
/// that `prefix` enters (`ip netns exec <ns>` or `nsenter --net=...`),
/// retried for 10 s, each try bounded by `timeout`.
fn http_get(prefix: &[&str], addr: &str, port: u16) -> Result<String, String> {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | busybox nc -w 3 {addr} {port}");
    let mut last = String::new();
    let ok = eventually(Duration::from_secs(10), || {
        let out = Command::new(prefix[0])
            .args(&prefix[1..])
            .args(["timeout", "5", "sh", "-c", &script])
            .output()
            .expect("spawn nc");
        last = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        last.contains(PAGE.trim())
    });
    if ok {
        Ok(last.lines().last().unwrap_or_default().to_owned())
    } else {
        Err(last)
    }
}

#[test]
fn e2e_cri_pods_hostport_and_teardown() {
    let started = Instant::now();
    let programs = [
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("containerd-shim-runc-v2", "containerd"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
    ];
    let Some(tb) = e2e::testbed(&programs, "cnicri-", BRIDGE, SUBNET, serde_json::json!({})) else {
        return;
    };
    let plugins = plugin_source();
    eprintln!("plugins: {}", plugins.display());
    let mut ctrd = CriContainerd::start(&tb.host, &tb.conf, &plugins);

    // The image, imported into the CRI plugin's namespace: nothing is pulled.
    let tar = e2e::busybox_oci_image(ctrd.dir.path(), IMAGE, PAGE, &["/bin/sleep", "2147483647"]);
    let import = ctrd.ctr(&[
        "images",
        "import",
        "--snapshotter",
        "native",
        &tar.to_string_lossy(),
    ]);
    assert!(
        import.status.success(),
        "ctr images import: {}",
        String::from_utf8_lossy(&import.stderr)
    );
    let mut seen = None;
    assert!(
        eventually(Duration::from_secs(15), || {
            seen = ctrd.cri().image_status(IMAGE).ok().flatten();
            seen.is_some()
        }),
        "the CRI plugin does not see {IMAGE}"
    );
    eprintln!("image: {:?}", seen.map(|i| i.id));

    // Pod B (no port mapping) first, then pod A with hostPort 18080 -> 80.
    let cfg_b = ctrd.sandbox_config("pod-b", Vec::new());
    let pod_b = ctrd
        .run_pod(cfg_b)
        .unwrap_or_else(|e| panic!("RunPodSandbox pod-b: {e}\n{}", ctrd.log_tail()));
    let cfg_a = ctrd.sandbox_config(
        "pod-a",
        vec![PortMapping {
            protocol: Protocol::Tcp.into(),
            container_port: 80,
            host_port: i32::from(HOST_PORT),
            host_ip: String::new(),
        }],
    );
    let pod_a = ctrd.run_pod(cfg_a.clone()).unwrap_or_else(|e| {
        panic!(
            "RunPodSandbox pod-a (hostPort {HOST_PORT} -> 80/TCP, so portmap gets go-cni's \
             runtimeConfig.portMappings) failed: {e}\n{}",
            ctrd.log_tail()
        )
    });

    let mut ips = Vec::new();
    let mut pids = Vec::new();
    for (name, id) in [("pod-a", &pod_a), ("pod-b", &pod_b)] {
        let st = ctrd
            .cri()
            .pod_sandbox_status(id)
            .unwrap_or_else(|e| panic!("PodSandboxStatus {name}: {e}"));
        let status = st.status.as_ref().expect("status");
        assert_eq!(
            status.state,
            i32::from(PodSandboxState::SandboxReady),
            "{name} not ready"
        );
        let ip = status
            .network
            .as_ref()
            .map(|n| n.ip.clone())
            .unwrap_or_default();
        assert!(
            ip.starts_with(SUBNET_PREFIX),
            "{name}: address {ip:?} not in {SUBNET}"
        );
        let pid = info_pid(&st.info).unwrap_or_else(|| panic!("{name}: no pid in {:?}", st.info));
        eprintln!("{name}: id {id} ip {ip} sandbox pid {pid}");
        ips.push(ip);
        pids.push(pid);
    }
    let (ip_a, ip_b) = (ips[0].clone(), ips[1].clone());
    assert_ne!(ip_a, ip_b);
    assert_eq!(
        reservations(tb.data.path(), &tb.net).len(),
        2,
        "host-local reservations while both pods run"
    );
    let cached = e2e::cache_entries(&ctrd.cache_dir());
    for id in [&pod_a, &pod_b] {
        assert!(
            cached.iter().any(|f| f.contains(id.as_str())),
            "no cached result for {id} in {cached:?}"
        );
    }
    assert_eq!(ctrd.netns_files().len(), 2, "pod network namespaces");

    // busybox httpd in pod A.
    let httpd = ctrd
        .cri()
        .create_container(
            &pod_a,
            ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "httpd".into(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: IMAGE.into(),
                }),
                command: ["httpd", "-f", "-p", "80", "-h", "/www"]
                    .map(String::from)
                    .to_vec(),
                log_path: "httpd.log".into(),
            },
            cfg_a,
        )
        .unwrap_or_else(|e| panic!("CreateContainer: {e}\n{}", ctrd.log_tail()));
    ctrd.cri()
        .start_container(&httpd)
        .unwrap_or_else(|e| panic!("StartContainer: {e}\n{}", ctrd.log_tail()));
    let st = ctrd
        .cri()
        .container_status(&httpd)
        .unwrap_or_else(|e| panic!("ContainerStatus: {e}"));
    assert_eq!(
        st.status.as_ref().map(|s| s.state),
        Some(i32::from(ContainerState::ContainerRunning)),
        "httpd not running: {st:?}"
    );
    let httpd_pid = info_pid(&st.info).expect("httpd pid");
    pids.push(httpd_pid);

    // Pod B -> pod A, host -> pod A, outside -> host:18080 -> pod A.
    // The pod's namespace file (the runtime spec's netns path) is a mount
    // in the daemon's private mount namespace; the sandbox process's
    // /proc entry reaches the same namespace from here.
    let enter_b = format!("--net=/proc/{}/ns/net", pids[1]);
    let page = http_get(&["nsenter", &enter_b], &ip_a, 80)
        .unwrap_or_else(|e| panic!("pod B -> {ip_a}:80: {e}"));
    eprintln!("ok: pod B -> pod A {ip_a}:80: {page}");
    let page = http_get(&["ip", "netns", "exec", tb.host.name()], &ip_a, 80)
        .unwrap_or_else(|e| panic!("host -> {ip_a}:80: {e}"));
    eprintln!("ok: host -> pod A {ip_a}:80: {page}");
    let page = http_get(
        &["ip", "netns", "exec", tb.outside.name()],
        HOST_IP,
        HOST_PORT,
    )
    .unwrap_or_else(|e| {
        panic!(
            "outside -> {HOST_IP}:{HOST_PORT} (hostPort of pod A): {e}\n{}",
            netfilter_dump(&tb.host)
        )
    });
    eprintln!("ok: outside -> host {HOST_IP}:{HOST_PORT} -> pod A: {page}");
    let rules = netfilter_dump(&tb.host);
    assert!(
        rules.contains(pod_a.as_str()) && mentions_ip(&rules, &ip_a),
        "no rule names pod A ({pod_a}, {ip_a}):\n{rules}"
    );

    // kubelet's teardown: stop and remove the container, then the pods.
    ctrd.cri()
        .stop_and_remove_container(&httpd, 5)
        .unwrap_or_else(|e| panic!("removing the container: {e}"));
    for id in [&pod_a, &pod_b] {
        ctrd.remove_pod(id)
            .unwrap_or_else(|e| panic!("removing pod {id}: {e}\n{}", ctrd.log_tail()));
    }

    e2e::assert_nothing_left(
        &tb.host,
        &["uplink0"],
        tb.data.path(),
        &ctrd.cache_dir(),
        &tb.net,
        &[&pod_a, &pod_b],
        &[ip_a.clone(), ip_b.clone()],
    );
    assert_eq!(
        ctrd.netns_files(),
        Vec::<String>::new(),
        "pod network namespaces left"
    );
    let gone = eventually(Duration::from_secs(10), || {
        pids.iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())
            && e2e::pids_with_cmdline(&ctrd.socket().to_string_lossy()).is_empty()
    });
    assert!(
        gone,
        "pod processes {pids:?} or shims {:?} left",
        e2e::pids_with_cmdline(&ctrd.socket().to_string_lossy())
    );
    let daemon_pid = i32::try_from(ctrd.daemon.id()).expect("pid");
    let zombies = e2e::zombie_children(&[daemon_pid, std::process::id() as i32]);
    assert_eq!(zombies, Vec::<String>::new(), "zombies");
    let errors: Vec<String> = ctrd
        .log()
        .lines()
        .filter(|l| l.contains("level=error") && (l.contains("cni") || l.contains("network")))
        .map(String::from)
        .collect();
    eprintln!("containerd network errors logged: {}", errors.len());
    for e in &errors {
        eprintln!("  {e}");
    }
    drop(ctrd);
    eprintln!("CRI e2e took {:?}", started.elapsed());
}
