//! Self-tests of the shared harness.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cni_testsupport::{NetNs, Netns, PluginCall, require_root, write_script};

#[test]
fn netns_is_created_and_deleted_on_drop() {
    let Some(ns) = Netns::root() else { return };
    let name = ns.name().to_string();
    assert!(Netns::exists(&name));
    assert_eq!(ns.path(), PathBuf::from(format!("/run/netns/{name}")));
    let links = ns.exec_ok("ip", &["-o", "link", "show"]);
    assert_eq!(links.lines().count(), 1, "fresh ns has only lo: {links}");
    drop(ns);
    assert!(!Netns::exists(&name), "{name} still exists after drop");
}

#[test]
fn netns_is_deleted_after_panic() {
    if !require_root() {
        return;
    }
    let name = std::sync::Mutex::new(String::new());
    let r = std::panic::catch_unwind(|| {
        let ns = Netns::new();
        *name.lock().unwrap() = ns.name().to_string();
        ns.run_in(|| panic!("boom inside ns"));
    });
    assert!(r.is_err());
    let name = name.into_inner().unwrap();
    assert!(!name.is_empty());
    assert!(!Netns::exists(&name), "{name} leaked after panic");
}

/// A temporary directory holding the script `name` running `body`, and its path.
fn fake_plugin(name: &str, body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = write_script(dir.path(), name, body);
    (dir, bin)
}

#[test]
fn run_in_executes_inside_namespace() {
    let Some(ns) = Netns::root() else { return };
    let target = std::fs::metadata(ns.path()).unwrap().ino();
    let inside = ns.run_in(|| std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino());
    let outside = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
    assert_eq!(inside, target);
    assert_ne!(outside, target);
}

#[test]
fn plugin_call_runs_in_host_namespace_with_clean_env() {
    let Some(host) = Netns::root() else { return };
    let target = std::fs::metadata(host.path()).unwrap().ino();
    let script = "echo $(stat -L -c %i /proc/self/ns/net) $CNI_COMMAND $CNI_IFNAME $CNI_NETNS; env | grep -c . ; cat";
    let call = PluginCall::new("ADD", "hello-stdin")
        .ifname("eth7")
        .netns("/run/netns/x")
        .env("SCRIPT", script);
    // A tiny "plugin": sh reading its script from the environment.
    let (_dir, bin) = fake_plugin("plugin.sh", "eval \"$SCRIPT\"");
    let out = call.run_in(&host, &bin);
    assert!(out.success(), "{}", out.describe());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("{target} ADD eth7 /run/netns/x")
    );
    // CNI_COMMAND, CNI_CONTAINERID, CNI_IFNAME, CNI_NETNS, CNI_PATH, PATH, SCRIPT (+ PWD etc. set by sh)
    let nvars: usize = lines.next().unwrap().trim().parse().unwrap();
    assert!(nvars <= 10, "environment not clean: {nvars} vars");
    assert_eq!(lines.next().unwrap(), "hello-stdin");
}

#[test]
fn plugin_output_parses_error_code() {
    let Some(host) = Netns::root() else { return };
    let (_dir, bin) = fake_plugin("fail.sh", "echo '{\"code\": 7, \"msg\": \"bad\"}'\nexit 1");
    let out = PluginCall::new("ADD", "").run_in(&host, &bin);
    assert!(!out.success());
    assert_eq!(out.error_code(), Some(7));
    assert_eq!(out.error_msg().as_deref(), Some("bad"));
}

#[test]
fn parallel_creation_gives_unique_names() {
    if !require_root() {
        return;
    }
    let names: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let ns = Netns::new();
                    ns.name().to_string()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "{names:?}");
    for n in &names {
        assert!(!Netns::exists(n));
    }
}

#[test]
fn timeout_kills_hanging_plugin() {
    let Some(host) = Netns::root() else { return };
    let (_dir, bin) = fake_plugin("hang.sh", "exec sleep 30");
    let call = PluginCall::new("ADD", "").timeout(Duration::from_millis(300));
    let start = Instant::now();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call.run_in(&host, &bin)));
    assert!(r.is_err(), "timeout did not fail the call");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn netns_handle_matches_path() {
    let Some(ns) = Netns::root() else { return };
    let h = NetNs::open(ns.path()).unwrap();
    assert!(h.is_same(ns.handle()).unwrap());
    assert!(!h.is_current().unwrap());
}
