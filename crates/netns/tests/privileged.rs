//! Privileged tests in private namespaces created by the tests themselves.

use std::process::Command;

use cni_netns::{Error, NetNs, sysctl};
use cni_testsupport::{anonymous_netns, require_root};
use nix::sched::{CloneFlags, unshare};

/// A fresh anonymous namespace when running as root; `None` (the test is skipped)
/// otherwise.
fn root_netns() -> Option<NetNs> {
    require_root().then(anonymous_netns)
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
    let Some(ns) = root_netns() else { return };
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
    let Some(ns) = root_netns() else { return };
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
    let Some(ns) = root_netns() else { return };
    let e = ns.run(|| panic!("kaboom")).unwrap_err();
    assert!(matches!(e, Error::Thread { .. }));
    assert!(e.to_string().contains("kaboom"), "{e}");
}

#[test]
fn sysctl_set_is_per_namespace_and_handles_dotted_names() {
    let Some(ns) = root_netns() else { return };
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

/// A key read by path on a fresh thread (whose sysctl cache is empty) inside `ns`.
fn read_by_path_in(ns: &NetNs, key: &[&str]) -> String {
    let p = sysctl::path(key).expect("valid key");
    ns.run(|| std::fs::read_to_string(&p).map(|v| v.trim().to_string()))
        .expect("thread in ns")
        .expect("read by path")
}

#[test]
fn sysctl_follows_the_thread_across_namespace_switches() {
    if !require_root() {
        return;
    }
    let (a, b, c) = (anonymous_netns(), anonymous_netns(), anonymous_netns());
    let announce = ["net", "ipv4", "conf", "lo", "arp_announce"];
    let accept_ra = ["net", "ipv6", "conf", "lo", "accept_ra"];
    let forward = ["net", "ipv4", "ip_forward"];
    // The host namespace is only read, by path and through the cache.
    let host_announce = std::fs::read_to_string(sysctl::path(&announce).unwrap()).unwrap();
    let host_ra = std::fs::read_to_string(sysctl::path(&accept_ra).unwrap()).unwrap();
    let (host_announce, host_ra) = (host_announce.trim(), host_ra.trim());
    // A: 1/0, B: 2/2, C: the kernel's defaults 0/1; forwarding off in all three. Set
    // explicitly: a new namespace copies its IPv4 settings (ip_forward, conf/default/*)
    // from the host's (net.core.devconf_inherit_init_net=0), so they are whatever the
    // machine running the test has, e.g. ip_forward=1 on every Docker or Kubernetes host.
    for (ns, v4, v6) in [(&a, "1", "0"), (&b, "2", "2"), (&c, "0", "1")] {
        let _in = ns.enter().unwrap();
        sysctl::write(&announce, v4).unwrap();
        sysctl::write(&accept_ra, v6).unwrap();
        sysctl::write(&forward, "0").unwrap();
    }
    let expected = [(&a, "1", "0"), (&b, "2", "2"), (&c, "0", "1")];
    for round in 0..3 {
        assert_eq!(sysctl::read(&announce).unwrap(), host_announce, "{round}");
        assert_eq!(sysctl::read(&accept_ra).unwrap(), host_ra, "{round}");
        for (i, (ns, v4, v6)) in expected.iter().enumerate() {
            let _in = ns.enter().unwrap();
            assert_eq!(sysctl::read(&announce).unwrap(), *v4, "{round} ns {i}");
            assert_eq!(sysctl::read(&accept_ra).unwrap(), *v6, "{round} ns {i}");
            assert!(!sysctl::set(&announce, v4).unwrap(), "{round} ns {i}");
        }
        // Nested: B entered from A, then back in A.
        let _in_a = a.enter().unwrap();
        {
            let _in_b = b.enter().unwrap();
            assert_eq!(
                sysctl::read_dotted("net.ipv4.conf.lo.arp_announce").unwrap(),
                "2"
            );
        }
        assert_eq!(sysctl::read(&announce).unwrap(), "1", "{round}");
    }
    // Writes go to the namespace the thread is in at that moment.
    {
        let _in_b = b.enter().unwrap();
        assert!(sysctl::set(&forward, "1").unwrap());
        assert!(sysctl::set_dotted("net.ipv4.conf.lo.arp_announce", "1").unwrap());
        let _in_a = a.enter().unwrap();
        assert!(sysctl::set(&announce, "2").unwrap());
        assert_eq!(sysctl::read(&forward).unwrap(), "0");
    }
    {
        let _in_c = c.enter().unwrap();
        assert!(sysctl::set(&accept_ra, "0").unwrap());
        assert_eq!(sysctl::read(&forward).unwrap(), "0");
    }
    {
        let _in_b = b.enter().unwrap();
        assert_eq!(sysctl::read(&forward).unwrap(), "1");
        assert_eq!(sysctl::read(&announce).unwrap(), "1");
    }
    // Checked independently of the cache.
    for (ns, v4, v6, fwd) in [
        (&a, "2", "0", "0"),
        (&b, "1", "2", "1"),
        (&c, "0", "0", "0"),
    ] {
        assert_eq!(read_by_path_in(ns, &announce), v4);
        assert_eq!(read_by_path_in(ns, &accept_ra), v6);
        assert_eq!(read_by_path_in(ns, &forward), fwd);
    }
    assert_eq!(sysctl::read(&announce).unwrap(), host_announce);
    assert_eq!(sysctl::read(&accept_ra).unwrap(), host_ra);
}

#[test]
fn sysctl_stays_per_namespace_beyond_the_cache_size() {
    if !require_root() {
        return;
    }
    // More namespaces than the per-thread cache holds, two first components each.
    let all: Vec<NetNs> = (0..6).map(|_| anonymous_netns()).collect();
    let ttl = ["net", "ipv4", "ip_default_ttl"];
    let somaxconn = ["net", "core", "somaxconn"];
    for (i, ns) in all.iter().enumerate() {
        let _in = ns.enter().unwrap();
        sysctl::write(&ttl, &(100 + i).to_string()).unwrap();
        sysctl::write(&somaxconn, &(1000 + i).to_string()).unwrap();
    }
    let order: Vec<usize> = (0..6).chain((0..6).rev()).chain([0, 5, 0, 5]).collect();
    for i in order {
        let _in = all[i].enter().unwrap();
        assert_eq!(sysctl::read(&ttl).unwrap(), (100 + i).to_string(), "ns {i}");
        assert_eq!(
            sysctl::read(&somaxconn).unwrap(),
            (1000 + i).to_string(),
            "ns {i}"
        );
    }
    for (i, ns) in all.iter().enumerate() {
        assert_eq!(read_by_path_in(ns, &ttl), (100 + i).to_string());
    }
}

/// Not a timed test (nothing asserted on time): prints the cost of a `net.*` read by
/// plain path and through [`sysctl::read`] in a namespace whose `/proc/sys/net/ipv4`
/// dentry is older than those of `SYSCTL_MEASURE_NS` (default 1000) sibling namespaces,
/// like the host's on a busy node. Run with
/// `cargo test -p cni-netns --test privileged -- --ignored --nocapture measure`.
#[test]
#[ignore = "measurement; creates many namespaces"]
fn measure_net_sysctl_reads_with_many_sibling_namespaces() {
    use std::time::Instant;

    if !require_root() {
        return;
    }
    let siblings: usize = std::env::var("SYSCTL_MEASURE_NS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let key = ["net", "ipv4", "ip_forward"];
    let p = sysctl::path(&key).unwrap();
    let measured = anonymous_netns();
    measured
        .run(|| std::fs::read_to_string(&p).unwrap())
        .unwrap();
    let start = Instant::now();
    let _siblings: Vec<NetNs> = (0..siblings)
        .map(|_| {
            std::thread::spawn(|| {
                unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
                std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
                NetNs::current().expect("open new ns")
            })
            .join()
            .expect("ns thread")
        })
        .collect();
    eprintln!("{siblings} sibling namespaces in {:?}", start.elapsed());
    let rounds = 2000;
    let (plain, cached, first) = measured
        .run(|| {
            let t = Instant::now();
            sysctl::read(&key).unwrap();
            let first = t.elapsed();
            let t = Instant::now();
            for _ in 0..rounds {
                std::fs::read_to_string(&p).unwrap();
            }
            let plain = t.elapsed() / rounds;
            let t = Instant::now();
            for _ in 0..rounds {
                sysctl::read(&key).unwrap();
            }
            (plain, t.elapsed() / rounds, first)
        })
        .unwrap();
    eprintln!(
        "read {}: by path {plain:?}, sysctl::read {cached:?} (its first, opening \
         the directory: {first:?})",
        key.join(".")
    );
}
