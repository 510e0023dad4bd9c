//! Privileged tests in private namespaces created by the tests themselves.

use std::process::Command;

use cni_netns::{Error, NetNs, sysctl};
use nix::sched::{CloneFlags, unshare};

fn root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "needs root (CI=true forbids skipping)"
    );
    eprintln!("skipped: needs root");
    false
}

/// A fresh namespace, alive while the handle is open.
fn new_ns() -> NetNs {
    std::thread::spawn(|| {
        unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
        NetNs::current().expect("open new ns")
    })
    .join()
    .expect("ns thread")
}

#[test]
fn open_rejects_non_namespace_files() {
    let e = NetNs::open("/etc/hostname").unwrap_err();
    assert!(matches!(e, Error::NotNetns { .. }), "{e}");
    assert!(e.to_string().contains("/etc/hostname"));
    let e = NetNs::open("/run/netns/definitely-missing-ns").unwrap_err();
    assert!(e.is_not_found(), "{e}");
    assert!(e.to_string().contains("definitely-missing-ns"));
}

#[test]
fn current_is_current_and_same_as_proc_self() {
    let a = NetNs::current().unwrap();
    let b = NetNs::open(format!(
        "/proc/{}/task/{}/ns/net",
        std::process::id(),
        nix::unistd::gettid()
    ))
    .unwrap();
    assert!(a.is_same(&b).unwrap());
    assert!(a.is_current().unwrap());
}

#[test]
fn enter_switches_and_guard_switches_back() {
    if !root() {
        return;
    }
    let ns = new_ns();
    let before = NetNs::current().unwrap();
    assert!(!ns.is_current().unwrap());
    {
        let guard = ns.enter().unwrap();
        assert!(ns.is_current().unwrap());
        assert!(guard.previous().is_same(&before).unwrap());
    }
    assert!(before.is_current().unwrap());
    assert!(!ns.is_current().unwrap());
}

#[test]
fn run_executes_in_namespace_and_children_inherit_it() {
    if !root() {
        return;
    }
    let ns = new_ns();
    let id = ns.id().unwrap();
    let (inside, links) = ns
        .run(|| {
            let cur = NetNs::current().unwrap().id().unwrap();
            let out = Command::new("ip")
                .args(["-o", "link", "show"])
                .output()
                .unwrap();
            (cur, String::from_utf8_lossy(&out.stdout).lines().count())
        })
        .unwrap();
    assert_eq!(inside, id);
    assert_eq!(links, 1, "a fresh namespace has only lo");
    assert!(!ns.is_current().unwrap());
}

#[test]
fn run_reports_panics_as_errors() {
    if !root() {
        return;
    }
    let ns = new_ns();
    let e = ns.run(|| panic!("kaboom")).unwrap_err();
    assert!(matches!(e, Error::Thread { .. }));
    assert!(e.to_string().contains("kaboom"), "{e}");
}

#[test]
fn sysctl_set_is_per_namespace_and_handles_dotted_names() {
    if !root() {
        return;
    }
    let ns = new_ns();
    ns.run(|| {
        let ok = Command::new("ip")
            .args(["link", "add", "br.5", "type", "bridge"])
            .status()
            .unwrap();
        assert!(ok.success());
        let key = ["net", "ipv6", "conf", "br.5", "accept_ra"];
        sysctl::set(&key, "0").unwrap();
        assert_eq!(sysctl::read(&key).unwrap(), "0");
        // Writing the same value is a no-op.
        assert!(!sysctl::set(&key, "0").unwrap());
        assert!(sysctl::set_dotted("net.ipv6.conf.br/5.accept_ra", "2").unwrap());
        assert_eq!(
            sysctl::read_dotted("net.ipv6.conf.br/5.accept_ra").unwrap(),
            "2"
        );
        // Forwarding in this namespace only.
        sysctl::set(&["net", "ipv4", "ip_forward"], "1").unwrap();
        let e = sysctl::set(&["net", "ipv4", "conf", "missing0", "arp_notify"], "1").unwrap_err();
        assert!(
            e.is_not_found() && e.to_string().contains("missing0"),
            "{e}"
        );
    })
    .unwrap();
}
