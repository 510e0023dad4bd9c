//! A plugin killed while a netfilter tool it started is still running leaves no tool
//! behind: the tool dies with it, so nothing is committed after the runtime's DEL.
//!
//! The tool is a wrapper on `PATH` in front of the real `iptables-restore` that first
//! records that it started, then sleeps before it execs the real tool. portmap is killed
//! during that sleep, as a runtime's timeout would; a wrapper that outlived it would
//! write the container's rules seconds later, after a DEL had already cleaned up.

#![allow(clippy::unwrap_used, missing_docs, reason = "tests")]

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cni_testsupport::{TestEnv, plugin_bin, require_root, wait_for_file};

/// Seconds the wrapper sleeps before it runs the real tool.
const WRAPPER_SLEEP_SECS: u64 = 3;

fn real_tool(name: &str) -> String {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        .iter()
        .map(|d| format!("{d}/{name}"))
        .find(|p| Path::new(p).exists())
        .unwrap()
}

/// A `PATH` directory whose `iptables-restore` and `ip6tables-restore` touch `started`,
/// sleep, then exec the real tools.
fn slow_restore_path(dir: &Path) -> String {
    for tool in ["iptables-restore", "ip6tables-restore"] {
        let script = format!(
            "#!/bin/sh\ntouch '{}/started'\nsleep {WRAPPER_SLEEP_SECS}\nexec {} \"$@\"\n",
            dir.display(),
            real_tool(tool)
        );
        let path = dir.join(tool);
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Whether any process of process group `pgid` is still alive.
fn group_alive(pgid: i32) -> bool {
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None).is_ok()
}

/// Whether a process of group `pgid` whose command line mentions `needle` is alive
/// (read from /proc: the process group is field 5 of `stat`, after the `(comm)`).
fn group_runs(pgid: i32, needle: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let dir = e.path();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let group = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(2))
            .and_then(|g| g.parse::<i32>().ok());
        group == Some(pgid)
            && String::from_utf8_lossy(&std::fs::read(dir.join("cmdline")).unwrap_or_default())
                .contains(needle)
    })
}

#[test]
fn killed_portmap_leaves_no_restore_running() {
    if !require_root() {
        return;
    }
    let env = TestEnv::new();
    let container = env.add_container();
    let tools = tempfile::tempdir().unwrap();
    let path = slow_restore_path(tools.path());
    let conf = r#"{"cniVersion":"1.0.0","name":"orphans","type":"portmap","backend":"iptables",
        "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]},
        "prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],
        "ips":[{"interface":0,"address":"10.96.0.2/24","gateway":"10.96.0.1"}]}}"#;
    let call = env
        .call("ADD", conf)
        .container_id("ctr-orphan")
        .netns(container.path())
        .ifname("eth0")
        .env("PATH", &path);
    // `ip netns exec` execs the plugin in the host namespace: the pid is the plugin's.
    let mut child = Command::new("ip")
        .args(["netns", "exec", env.host.name()])
        .arg(plugin_bin("portmap"))
        .env_clear()
        .envs(call.environment())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = i32::try_from(child.id()).unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(conf.as_bytes()).unwrap();
    }
    let started = tools.path().join("started");
    wait_for_file(
        &started,
        Duration::from_secs(10),
        "the restore wrapper never ran",
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // The wrapper died with the plugin (its sleep, reparented, may finish on its own).
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut wrapper_alive = true;
    while Instant::now() < deadline {
        if !group_runs(pgid, "restore") {
            wrapper_alive = false;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !wrapper_alive,
        "the restore wrapper outlived the killed plugin"
    );
    // Nothing is committed later either.
    std::thread::sleep(Duration::from_secs(WRAPPER_SLEEP_SECS + 1));
    let nat = env.host.exec_ok("iptables", &["-t", "nat", "-S"]);
    assert!(
        !nat.contains("10.96.0.2"),
        "a rule was committed after the plugin was killed:\n{nat}"
    );
    if group_alive(pgid) {
        // Only the wrapper's reparented `sleep` may remain; let it finish.
        std::thread::sleep(Duration::from_secs(1));
    }
}
