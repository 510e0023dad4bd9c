//! Test fixtures shared by the tests of every crate of the workspace (a dev-dependency
//! only; it depends on no plugin and on no workspace crate but `cni-netns`).
//!
//! * [`require_root`]: skip privileged tests when not root (panics instead when `CI=true`).
//! * [`Netns`]: a throw-away named network namespace (`ip netns add`), deleted on drop;
//!   [`anonymous_netns`]: an unnamed one that lives as long as its handle;
//!   [`veth_pair`]: two namespaces joined by a veth pair.
//! * [`PluginCall`]: runs a plugin binary with a clean `CNI_*` environment from a thread
//!   inside a "host" namespace, with a timeout, returning a [`PluginOutput`] (with
//!   [`PluginOutput::assert_error`] for CNI error objects).
//! * [`TestEnv`]: a private host namespace, a temporary data directory and the plugin
//!   directory, plus container namespaces on demand.
//! * [`plugin_bin`] / [`reference_bin`]: where our and the Go reference binaries live.
//! * [`serve`], [`tcp_get`], [`udp_ask`], [`send_udp`]: real traffic to and from a namespace.
//! * [`node`]: a whole "node" (host namespace + `dataDir`) on which an attachment runs with
//!   our plugins or the reference ones, and snapshots of what it leaves behind.
//! * [`e2e`]: helpers for the tests that drive the plugins through container runtimes
//!   (`cnitool`, containerd, podman, CRI).
//!
//! All network changes happen in namespaces created here, never in the caller's namespace.

pub mod e2e;
pub mod node;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use cni_netns::NetNs;

/// Default time a plugin may run before it is killed and the test fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Directory holding the Go reference plugins (Debian package).
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// True when running as root. Otherwise prints a skip message and returns false, or
/// panics when the environment variable `CI` is `true` (CI must not silently skip).
///
/// Use as `if !require_root() { return; }` at the top of a privileged test.
pub fn require_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("this test needs root (CI=true forbids skipping)");
    }
    eprintln!("skipped: test needs root");
    false
}

/// A fresh unnamed network namespace (`unshare` on a short-lived thread), alive as long
/// as the returned handle: nothing to clean up, nothing visible in `ip netns`.
///
/// # Panics
/// When `unshare` fails (not root).
pub fn anonymous_netns() -> NetNs {
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        NetNs::current().expect("open new ns")
    })
    .join()
    .expect("ns thread")
}

/// The stdout of a finished process as text; panics with `what`, the exit status, stdout
/// and stderr unless it succeeded.
///
/// # Panics
/// When the process failed.
#[track_caller]
pub fn checked_stdout(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes the executable shell script `dir/name` (`#!/bin/sh`, then `body`) and
/// returns its path: fake plugins, tools and wrappers.
///
/// # Panics
/// When it cannot be written.
pub fn write_script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod script");
    p
}

/// The names of the entries of `dir`, sorted.
///
/// # Panics
/// When `dir` cannot be read.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A short random hex string (not cryptographic; for unique names only).
pub fn random_hex(len: usize) -> String {
    let mut buf = vec![0u8; len.div_ceil(2)];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .is_err()
    {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        buf = nanos
            .to_le_bytes()
            .iter()
            .copied()
            .cycle()
            .take(buf.len())
            .collect();
    }
    let mut s: String = buf.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(len);
    s
}

/// A unique short name `<prefix><pid>-<counter>-<random>` for links, networks, ids.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{prefix}{}-{n}-{}",
        std::process::id() % 100_000,
        random_hex(4)
    )
}

/// A named network namespace created with `ip netns add`, deleted on drop (also when the
/// test panics). Deleting it removes its links, addresses, routes and rules, and the
/// peers of veth pairs that cross into other namespaces.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
    ns: NetNs,
}

impl Netns {
    /// [`Netns::new`] when running as root; `None` (the test is skipped) otherwise.
    pub fn root() -> Option<Self> {
        require_root().then(Self::new)
    }

    /// Creates `cnit-<pid>-<counter>-<random>` and brings its `lo` up.
    ///
    /// # Panics
    /// When `ip netns add` fails.
    pub fn new() -> Self {
        let name = unique_name("cnit-");
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap_or_else(|e| panic!("spawn ip netns add {name}: {e}"));
        checked_stdout(&format!("ip netns add {name}"), &out);
        let path = PathBuf::from(format!("/run/netns/{name}"));
        let ns = match NetNs::open(&path) {
            Ok(ns) => ns,
            Err(e) => {
                let _ = Command::new("ip").args(["netns", "del", &name]).output();
                panic!("open {path:?}: {e}");
            }
        };
        let me = Self { name, path, ns };
        let lo = me.exec("ip", &["link", "set", "lo", "up"]);
        assert!(lo.status.success(), "lo up in {}", me.name);
        me
    }

    /// The namespace name (as used by `ip netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open namespace handle.
    pub fn handle(&self) -> &NetNs {
        &self.ns
    }

    /// Runs `program args...` inside the namespace via `ip netns exec` and returns its output.
    ///
    /// # Panics
    /// When the process cannot be spawned.
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {program}: {e}", self.name))
    }

    /// Like [`Netns::exec`] but panics unless the command succeeds; returns stdout.
    ///
    /// # Panics
    /// When the command fails.
    pub fn exec_ok(&self, program: &str, args: &[&str]) -> String {
        checked_stdout(
            &format!("in {}: {program} {args:?}", self.name),
            &self.exec(program, args),
        )
    }

    /// Runs `f` on a scoped thread that has `setns()`ed into this namespace. Processes
    /// spawned by `f` inherit the namespace. A panic in `f` is propagated.
    ///
    /// # Panics
    /// When entering the namespace fails or `f` panics.
    pub fn run_in<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                let _guard = self
                    .ns
                    .enter()
                    .unwrap_or_else(|e| panic!("enter {}: {e}", self.name));
                f()
            });
            match h.join() {
                Ok(v) => v,
                Err(p) => std::panic::resume_unwind(p),
            }
        })
    }

    /// Runs the shell command `cmd` inside the namespace; panics on failure; returns stdout.
    ///
    /// # Panics
    /// When the command fails.
    pub fn sh(&self, cmd: &str) -> String {
        self.exec_ok("sh", &["-c", cmd])
    }

    /// Runs the shell command `cmd` inside the namespace with extra environment and
    /// `stdin`, returning (success, stdout, stderr).
    ///
    /// # Panics
    /// When the process cannot be spawned or fed.
    pub fn sh_in(&self, cmd: &str, env: &[(&str, &str)], stdin: &str) -> (bool, String, String) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("ip netns exec {} sh: {e}", self.name));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("wait");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The `iptables -t nat -S` listing (`ip6tables` when `v6`).
    pub fn nat(&self, v6: bool) -> String {
        self.exec_ok(
            if v6 { "ip6tables" } else { "iptables" },
            &["-t", "nat", "-S"],
        )
    }

    /// True when `/run/netns/<name>` exists.
    pub fn exists(name: &str) -> bool {
        Path::new("/run/netns").join(name).exists()
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the nftables backends keep their per-attachment markers, named
/// `<nsfs device>-<nsfs inode>-...` after the namespace the plugin ran in
/// (`crates/netfilter/src/attachments.rs`).
const ATTACHMENT_MARKERS: &str = "/run/cni-rs/nftables-attachments";

/// Removes the attachment markers the plugins left for namespace `path` (those a test
/// did not DEL): exactly the entries named after this namespace's identity.
fn remove_attachment_markers(path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let prefix = format!("{}-{}-", meta.dev(), meta.ino());
    let Ok(entries) = std::fs::read_dir(ATTACHMENT_MARKERS) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        remove_attachment_markers(self.path());
        match Command::new("ip")
            .args(["netns", "del", &self.name])
            .output()
        {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("warning: ip netns del {}: {e}", self.name),
        }
    }
}

/// The directory that holds the built plugin binaries: `$CNI_TEST_BIN_DIR`, else derived
/// from the running test executable (`target/<profile>/deps/<test>` -> `target/<profile>`).
///
/// # Panics
/// When the current executable path is unknown.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CNI_TEST_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe has a parent").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// Path of our built plugin binary `name` (see [`bin_dir`]).
///
/// # Panics
/// When the binary does not exist (build it with `cargo build --workspace` first).
pub fn plugin_bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "plugin binary {p:?} not found: run `cargo build --workspace` (or set CNI_TEST_BIN_DIR)"
    );
    p
}

/// The Go reference plugin `/usr/lib/cni/<name>`, when installed.
pub fn reference_bin(name: &str) -> Option<PathBuf> {
    let p = Path::new(REFERENCE_DIR).join(name);
    p.is_file().then_some(p)
}

/// True when every Go reference plugin in `plugins` is installed in [`REFERENCE_DIR`].
/// Otherwise prints a skip message and returns false, or panics when `CI=true` (CI must
/// run the tests that compare with the reference).
pub fn require_reference(plugins: &[&str]) -> bool {
    let missing: Vec<&str> = plugins
        .iter()
        .copied()
        .filter(|p| reference_bin(p).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "reference plugins {missing:?} required in {REFERENCE_DIR} when CI=true"
    );
    eprintln!("skipped: reference plugins {missing:?} not installed in {REFERENCE_DIR}");
    false
}

/// Output of one plugin run.
#[derive(Debug, Clone)]
pub struct PluginOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

impl PluginOutput {
    /// True on exit status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// stdout parsed as JSON.
    ///
    /// # Panics
    /// When stdout is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "plugin stdout is not JSON ({e}): {:?}; stderr: {}",
                String::from_utf8_lossy(&self.stdout),
                String::from_utf8_lossy(&self.stderr)
            )
        })
    }

    /// The CNI error `code` when the plugin failed with an error JSON on stdout.
    pub fn error_code(&self) -> Option<u64> {
        if self.success() {
            return None;
        }
        let v: serde_json::Value = serde_json::from_slice(&self.stdout).ok()?;
        v.get("code")?.as_u64()
    }

    /// The CNI error `msg` when the plugin failed with an error JSON on stdout.
    pub fn error_msg(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.stdout).ok()?;
        Some(v.get("msg")?.as_str()?.to_string())
    }

    /// stdout and stderr as text, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "status {:?}\nstdout: {}\nstderr: {}",
            self.status,
            String::from_utf8_lossy(&self.stdout),
            String::from_utf8_lossy(&self.stderr)
        )
    }

    /// Panics with the output unless the plugin failed with a CNI error object whose
    /// `code` is `code` and whose `msg` contains `msg`.
    ///
    /// # Panics
    /// When it did not.
    #[track_caller]
    pub fn assert_error(&self, code: u64, msg: &str) {
        assert_eq!(self.error_code(), Some(code), "{}", self.describe());
        let m = self.error_msg().unwrap_or_default();
        assert!(m.contains(msg), "expected {msg:?} in {m:?}");
    }

    /// Panics with the output unless the plugin failed with an error whose `msg` contains
    /// `msg` (whatever its code).
    ///
    /// # Panics
    /// When it did not.
    #[track_caller]
    pub fn assert_failure(&self, msg: &str) {
        assert!(!self.success(), "{}", self.describe());
        assert!(
            self.error_msg().is_some_and(|m| m.contains(msg)),
            "expected {msg:?} in the error: {}",
            self.describe()
        );
    }

    /// Panics with the output unless the run succeeded; returns `self` for chaining.
    ///
    /// # Panics
    /// When the plugin failed.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "plugin failed: {}", self.describe());
        self
    }
}

/// One plugin invocation: the `CNI_*` environment and stdin.
#[derive(Debug, Clone)]
pub struct PluginCall {
    /// `CNI_COMMAND` (ADD, DEL, CHECK, STATUS, GC, VERSION).
    pub command: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS` (omitted when `None`).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS` (omitted when empty).
    pub cni_args: String,
    /// `CNI_PATH` directories.
    pub cni_path: Vec<PathBuf>,
    /// Bytes written to the plugin's stdin.
    pub stdin: Vec<u8>,
    /// Additional environment variables (e.g. fault injection hooks).
    pub extra_env: BTreeMap<String, String>,
    /// Kill the plugin after this long; the call then panics.
    pub timeout: Duration,
}

impl PluginCall {
    /// A call with the given command and config, ifname `eth0`, a random container id and
    /// no netns.
    pub fn new(command: &str, stdin: impl Into<Vec<u8>>) -> Self {
        Self {
            command: command.to_string(),
            container_id: unique_name("ctr-"),
            netns: None,
            ifname: "eth0".into(),
            cni_args: String::new(),
            cni_path: Vec::new(),
            stdin: stdin.into(),
            extra_env: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Builder: sets `CNI_COMMAND`.
    pub fn command(mut self, c: &str) -> Self {
        self.command = c.into();
        self
    }

    /// Builder: sets `CNI_CONTAINERID`.
    pub fn container_id(mut self, id: &str) -> Self {
        self.container_id = id.into();
        self
    }

    /// Builder: sets `CNI_NETNS`.
    pub fn netns(mut self, p: impl Into<PathBuf>) -> Self {
        self.netns = Some(p.into());
        self
    }

    /// Builder: clears `CNI_NETNS`.
    pub fn no_netns(mut self) -> Self {
        self.netns = None;
        self
    }

    /// Builder: sets `CNI_IFNAME`.
    pub fn ifname(mut self, n: &str) -> Self {
        self.ifname = n.into();
        self
    }

    /// Builder: sets `CNI_ARGS`.
    pub fn cni_args(mut self, a: &str) -> Self {
        self.cni_args = a.into();
        self
    }

    /// Builder: sets `CNI_PATH`.
    pub fn cni_path(mut self, dirs: Vec<PathBuf>) -> Self {
        self.cni_path = dirs;
        self
    }

    /// Builder: sets stdin.
    pub fn stdin(mut self, s: impl Into<Vec<u8>>) -> Self {
        self.stdin = s.into();
        self
    }

    /// Builder: adds an environment variable.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.extra_env.insert(k.into(), v.into());
        self
    }

    /// Builder: sets the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The environment the plugin gets (only `CNI_*`, `PATH` and `extra_env`).
    pub fn environment(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("CNI_COMMAND".into(), self.command.clone());
        env.insert("CNI_CONTAINERID".into(), self.container_id.clone());
        env.insert("CNI_IFNAME".into(), self.ifname.clone());
        if let Some(ns) = &self.netns {
            env.insert("CNI_NETNS".into(), ns.to_string_lossy().into_owned());
        }
        if !self.cni_args.is_empty() {
            env.insert("CNI_ARGS".into(), self.cni_args.clone());
        }
        let path = self
            .cni_path
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":");
        env.insert("CNI_PATH".into(), path);
        env.insert(
            "PATH".into(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
        );
        env.extend(self.extra_env.clone());
        env
    }

    /// Spawns `bin` from a thread inside `host`'s namespace (the child inherits it), feeds
    /// stdin, collects output, and kills the child after the timeout.
    ///
    /// # Panics
    /// When the binary cannot be spawned or it times out.
    pub fn run_in(&self, host: &Netns, bin: &Path) -> PluginOutput {
        host.run_in(|| self.run_here(bin))
    }

    /// `program` with this call's environment only (nothing inherited) and piped stdin,
    /// stdout and stderr: for runs the plugin runner does not cover (another working
    /// directory, a wrapper such as `unshare`, a process group to kill).
    pub fn process(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .envs(self.environment())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Starts `cmd` (see [`PluginCall::process`]) and writes this call's stdin to it (then
    /// closes it); the caller waits.
    ///
    /// # Panics
    /// When it cannot be spawned.
    pub fn spawn(&self, mut cmd: Command) -> std::process::Child {
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
        // A plugin may exit without reading its input: a broken pipe is its answer.
        let _ = child
            .stdin
            .take()
            .expect("piped stdin")
            .write_all(&self.stdin);
        child
    }

    /// Runs `cmd` (see [`PluginCall::process`]) to its end with this call's stdin.
    ///
    /// # Panics
    /// When it cannot be spawned.
    pub fn output_of(&self, cmd: Command) -> PluginOutput {
        let out = self.spawn(cmd).wait_with_output().expect("wait");
        PluginOutput {
            status: out.status,
            stdout: out.stdout,
            stderr: out.stderr,
        }
    }

    /// Like [`PluginCall::run_in`] but in the calling thread's namespace.
    ///
    /// # Panics
    /// When the binary cannot be spawned or it times out.
    pub fn run_here(&self, bin: &Path) -> PluginOutput {
        let mut child = self
            .process(bin)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin:?}: {e}"));
        let mut stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let input = self.stdin.clone();
        let writer = std::thread::spawn(move || {
            // The plugin may exit without reading stdin (e.g. VERSION): ignore EPIPE.
            let _ = stdin.write_all(&input);
        });
        let out_reader = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = stdout.read_to_end(&mut b);
            b
        });
        let err_reader = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = stderr.read_to_end(&mut b);
            b
        });
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "plugin {bin:?} {} timed out after {:?}",
                        self.command, self.timeout
                    );
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("wait for {bin:?}: {e}"),
            }
        };
        let _ = writer.join();
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        PluginOutput {
            status,
            stdout,
            stderr,
        }
    }
}

/// A private host namespace, a temporary data directory and the plugin directory.
#[derive(Debug)]
pub struct TestEnv {
    /// Stand-in for the runtime's (host) namespace; plugins run here.
    pub host: Netns,
    /// Temporary directory for IPAM state etc.
    pub data_dir: tempfile::TempDir,
    /// Directory of our plugin binaries (used as `CNI_PATH`).
    pub cni_path: PathBuf,
}

impl TestEnv {
    /// [`TestEnv::new`] when running as root; `None` (the test is skipped) otherwise.
    pub fn root() -> Option<Self> {
        require_root().then(Self::new)
    }

    /// Creates the host namespace and a temp dir.
    ///
    /// # Panics
    /// When either cannot be created.
    pub fn new() -> Self {
        Self {
            host: Netns::new(),
            data_dir: tempfile::tempdir().expect("tempdir"),
            cni_path: bin_dir(),
        }
    }

    /// [`TestEnv::new`], then each of `setup` run by `sh -c` in the host namespace.
    ///
    /// # Panics
    /// When a command fails.
    pub fn with_host_setup(setup: &[&str]) -> Self {
        let env = Self::new();
        for cmd in setup {
            env.host.sh(cmd);
        }
        env
    }

    /// A new container namespace (dropped by the caller).
    pub fn add_container(&self) -> Netns {
        Netns::new()
    }

    /// Path of the temp data dir.
    pub fn data_path(&self) -> &Path {
        self.data_dir.path()
    }

    /// A call with `CNI_PATH` set to our binaries.
    pub fn call(&self, command: &str, stdin: impl Into<Vec<u8>>) -> PluginCall {
        PluginCall::new(command, stdin).cni_path(vec![self.cni_path.clone()])
    }

    /// Runs our plugin `plugin` with `call` in the host namespace.
    pub fn run(&self, plugin: &str, call: &PluginCall) -> PluginOutput {
        call.run_in(&self.host, &plugin_bin(plugin))
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// How long [`tcp_get`] and [`udp_ask`] wait to connect and for the answer.
pub const TRAFFIC_TIMEOUT: Duration = Duration::from_secs(2);

/// A TCP server answering `reply` to every connection, and a UDP server answering
/// `reply` to every datagram, both inside `ns` on ports 80 and 53 (any address, both
/// families), served by threads of the test process for as long as it runs.
///
/// # Panics
/// When the ports cannot be bound.
pub fn serve(ns: &Netns, reply: impl Into<String>) {
    let reply: std::sync::Arc<str> = reply.into().into();
    let (tcp, udp) = ns.run_in(|| {
        (
            TcpListener::bind("[::]:80").expect("bind tcp [::]:80"),
            UdpSocket::bind("[::]:53").expect("bind udp [::]:53"),
        )
    });
    let r = reply.clone();
    std::thread::spawn(move || {
        for mut s in tcp.incoming().flatten() {
            let _ = s.write_all(r.as_bytes());
        }
    });
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((_, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(reply.as_bytes(), from);
        }
    });
}

/// Connects from `ns` to `addr` over TCP and reads until the server closes: the reply
/// of a [`serve`] server, or the error text.
///
/// # Errors
/// Connecting or reading failed (or timed out after [`TRAFFIC_TIMEOUT`]).
///
/// # Panics
/// When `addr` is not a socket address.
pub fn tcp_get(ns: &Netns, addr: &str) -> Result<String, String> {
    let addr: SocketAddr = addr.parse().expect("socket address");
    ns.run_in(|| {
        let mut s =
            TcpStream::connect_timeout(&addr, TRAFFIC_TIMEOUT).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(TRAFFIC_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    })
}

/// Sends one UDP datagram from `local` in `ns` to `addr` and returns the answer.
///
/// # Errors
/// Binding, sending or receiving failed (or timed out after [`TRAFFIC_TIMEOUT`]).
///
/// # Panics
/// When `addr` is not a socket address.
pub fn udp_ask(ns: &Netns, local: &str, addr: &str) -> Result<String, String> {
    let addr: SocketAddr = addr.parse().expect("socket address");
    let local = local.to_owned();
    ns.run_in(move || {
        let s = UdpSocket::bind(&local).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(TRAFFIC_TIMEOUT))
            .map_err(|e| e.to_string())?;
        s.send_to(b"ping", addr).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let (n, _) = s.recv_from(&mut buf).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
}

/// Two namespaces joined by a veth pair: `a` has 10.78.0.1/24 and fd78::1/64 on `va`,
/// `b` has .2 / ::2 on `vb` (static neighbours, no DAD), so UDP from `b` reaches `a` at once.
pub fn veth_pair() -> (Netns, Netns) {
    let a = Netns::new();
    let b = Netns::new();
    a.sh(&format!(
        "ip link add va address 02:00:00:00:00:0a type veth peer name vb address 02:00:00:00:00:0b netns {}",
        b.name()
    ));
    a.sh(
        "ip addr add 10.78.0.1/24 dev va && ip -6 addr add fd78::1/64 dev va nodad && \
         ip link set va up && \
         ip neigh add 10.78.0.2 lladdr 02:00:00:00:00:0b dev va nud permanent && \
         ip -6 neigh add fd78::2 lladdr 02:00:00:00:00:0b dev va nud permanent",
    );
    b.sh(
        "ip addr add 10.78.0.2/24 dev vb && ip -6 addr add fd78::2/64 dev vb nodad && \
         ip link set vb up && \
         ip neigh add 10.78.0.1 lladdr 02:00:00:00:00:0a dev vb nud permanent && \
         ip -6 neigh add fd78::1 lladdr 02:00:00:00:00:0a dev vb nud permanent",
    );
    (a, b)
}

/// Sends one UDP datagram from namespace `from` to `dst` (`addr:port`).
///
/// # Panics
/// When `dst` does not parse or the datagram cannot be sent.
pub fn send_udp(from: &Netns, dst: &str) {
    let dst: SocketAddr = dst.parse().expect("socket address");
    from.run_in(|| {
        let any: SocketAddr = if dst.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        UdpSocket::bind(any)
            .and_then(|s| s.send_to(b"ping", dst))
            .expect("send udp");
    });
}

/// Turns connection tracking on in `ns` only: an nftables rule that needs it.
pub fn enable_conntrack(ns: &Netns) {
    ns.sh("nft 'add table inet cttest; \
         add chain inet cttest pre { type filter hook prerouting priority 0; }; \
         add rule inet cttest pre ct state new counter'");
}

/// Waits until `path` exists, polling every 10 ms.
///
/// # Panics
/// With `what` when it does not exist within `within`.
#[track_caller]
pub fn wait_for_file(path: &Path, within: Duration, what: &str) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(t0.elapsed() < within, "{what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Another process holding a lock file, as a second plugin instance would: `flock -o`
/// on it (the lock stays with flock itself, so killing it releases the lock). Dropping
/// it (or [`LockHolder::release`]) kills and reaps that process.
#[derive(Debug)]
pub struct LockHolder {
    child: std::process::Child,
    _marker_dir: tempfile::TempDir,
}

impl LockHolder {
    /// Starts the holder of `lock` and waits (at most 10 s) until it holds it. `None`
    /// (the test is skipped) when flock(1) is not installed, which `CI=true` forbids.
    ///
    /// # Panics
    /// When flock cannot be started or does not take the lock in time.
    pub fn hold(lock: &Path) -> Option<Self> {
        if !Path::new("/usr/bin/flock").is_file() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "flock(1) required when CI=true"
            );
            eprintln!("skipped: flock(1) not installed");
            return None;
        }
        let marker_dir = tempfile::tempdir().expect("tempdir");
        let ready = marker_dir.path().join("holding");
        let child = Command::new("/usr/bin/flock")
            .arg("-o")
            .arg(lock)
            .args(["sh", "-c"])
            .arg(format!("touch {}; sleep 60", ready.display()))
            .spawn()
            .expect("spawn flock");
        let holder = Self {
            child,
            _marker_dir: marker_dir,
        };
        wait_for_file(&ready, Duration::from_secs(10), "flock never took the lock");
        Some(holder)
    }

    /// Kills the holder now, which releases the lock.
    pub fn release(self) {}
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
