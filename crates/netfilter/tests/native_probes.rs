//! Privileged tests of what lets DEL/GC and the conntrack flush skip work natively: the
//! nf_tables table probe (`nft::table_exists`), "this iptables family has no nat table"
//! (`iptables::known_empty`), and the conntrack dump being skipped in a namespace
//! without entries and done once for several ports and both families. Everything runs
//! in private namespaces. One test per file section, in its own test binary, because
//! `conntrack::dumps_requested` counts for the whole process.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use cni_netfilter::conntrack::{self, Family};
use cni_netfilter::iptables;
use cni_netfilter::nft;
use cni_testsupport::{Netns, require_root, send_udp, veth_pair};
use nftables::types::NfFamily;

/// The conntrack helpers shared with `conntrack_overlap.rs`.
mod common;

#[test]
fn table_probe_and_empty_nat_tables() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let exists = |f: NfFamily, t: &'static str| ns.run_in(move || nft::table_exists(f, t)).unwrap();
    for (f, t) in [
        (NfFamily::IP, "nat"),
        (NfFamily::IP6, "nat"),
        (NfFamily::IP, "cni_hostport"),
        (NfFamily::IP6, "cni_hostport"),
        (NfFamily::INet, "cni_plugins_masquerade"),
    ] {
        assert!(!exists(f, t), "fresh namespace has no table {f:?} {t}");
    }
    let nft_variant = iptables::is_nft_variant(Family::V4);
    println!("iptables is the nf_tables variant: {nft_variant}");
    // A fresh namespace's nat tables are known to be empty with iptables-nft.
    for family in Family::ALL {
        assert_eq!(
            ns.run_in(|| iptables::known_empty(family, "nat")),
            nft_variant,
            "{family}"
        );
    }
    // Listing an absent table is answered without nft.
    assert!(
        ns.run_in(|| nft::list_table(NfFamily::INet, "cni_plugins_masquerade"))
            .unwrap()
            .is_none()
    );

    ns.sh("nft add table inet cni_plugins_masquerade && nft add table ip6 cni_hostport");
    assert!(exists(NfFamily::INet, "cni_plugins_masquerade"));
    assert!(exists(NfFamily::IP6, "cni_hostport"));
    assert!(
        !exists(NfFamily::IP, "cni_hostport"),
        "families are distinct"
    );
    assert!(!exists(NfFamily::INet, "cni_hostport"));
    assert!(
        ns.run_in(|| nft::list_table(NfFamily::IP6, "cni_hostport"))
            .unwrap()
            .is_some()
    );

    ns.sh("iptables -t nat -A POSTROUTING -s 10.9.9.9/32 -j ACCEPT");
    assert_eq!(exists(NfFamily::IP, "nat"), nft_variant);
    assert!(!ns.run_in(|| iptables::known_empty(Family::V4, "nat")));
    assert_eq!(
        ns.run_in(|| iptables::known_empty(Family::V6, "nat")),
        nft_variant,
        "ip6tables still has no nat table"
    );

    // Another namespace does not see these tables: the probe asks the caller's.
    let other = Netns::new();
    assert!(
        !other
            .run_in(|| nft::table_exists(NfFamily::INet, "cni_plugins_masquerade"))
            .unwrap()
    );
    // A name the kernel rejects is an error (then callers ask nft), not "absent".
    let long = "x".repeat(300);
    assert!(
        ns.run_in(|| nft::table_exists(NfFamily::IP, &long))
            .is_err()
    );
}

/// `a` and `b` joined by a veth with static neighbours; conntrack is enabled in `a`
/// only when asked (an nftables `ct state` rule).
#[test]
fn conntrack_dump_skipped_without_entries_and_done_once_for_both_families() {
    if !require_root() {
        return;
    }
    let (a, b) = veth_pair();
    let both = [Family::V4, Family::V6];
    let ports = [8053, 8054];

    // Conntrack not in use in `a`: no entry, no dump.
    assert!(a.run_in(conntrack::namespace_is_empty));
    assert_eq!(a.run_in(conntrack::entry_count).unwrap(), 0);
    let before = conntrack::dumps_requested();
    assert_eq!(
        a.run_in(|| conntrack::delete_udp_flows_to_ports(&both, &ports))
            .unwrap(),
        0
    );
    assert_eq!(
        conntrack::dumps_requested(),
        before,
        "no dump without entries"
    );

    // Traffic while conntrack is off leaves no entry either.
    send_udp(&b, "10.78.0.1:8053");
    assert!(a.run_in(conntrack::namespace_is_empty));

    // Any rule needing conntrack activates the hooks in this namespace only.
    cni_testsupport::enable_conntrack(&a);
    for dst in [
        "10.78.0.1:8053",
        "10.78.0.1:8054",
        "[fd78::1]:8053",
        "[fd78::1]:8054",
        "10.78.0.1:9999",
    ] {
        send_udp(&b, dst);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while a.run_in(conntrack::namespace_is_empty) {
        assert!(Instant::now() < deadline, "no conntrack entry appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    common::wait_for_entries(&a, 5);
    // The netlink count is the sysctl's (both read the namespace's counter).
    let sysctl = a.sh("cat /proc/sys/net/netfilter/nf_conntrack_count");
    assert_eq!(
        a.run_in(conntrack::entry_count).unwrap(),
        sysctl.trim().parse::<u32>().unwrap()
    );

    // Both families and both ports: deleted with one dump.
    let before = conntrack::dumps_requested();
    let deleted = a
        .run_in(|| conntrack::delete_udp_flows_to_ports(&both, &ports))
        .unwrap();
    assert_eq!(deleted, 4);
    assert_eq!(conntrack::dumps_requested(), before + 1, "one dump");
    assert_eq!(common::flows(&a, Family::V4, 9999), 1, "other ports stay");
    for family in both {
        for port in ports {
            assert_eq!(common::flows(&a, family, port), 0, "{family} {port}");
        }
    }
}

/// The localnet guard is found natively by its comment (iptables-nft and nftables), so
/// a second `ensure` runs no process; removing it is noticed and `ensure` restores it.
#[test]
fn localnet_guard_is_found_natively_and_restored() {
    use cni_netfilter::localnet;
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    // Per backend: its name, the native lookup and `ensure`.
    type Guard = (
        &'static str,
        fn() -> Option<bool>,
        fn() -> cni_netfilter::Result<()>,
    );
    let backends: [Guard; 2] = [
        (
            "iptables",
            localnet::iptables_present_natively,
            localnet::ensure_iptables,
        ),
        (
            "nftables",
            localnet::nftables_present_natively,
            localnet::ensure_nftables,
        ),
    ];
    for (backend, present, ensure) in backends {
        assert_eq!(
            ns.run_in(present),
            Some(false),
            "{backend}: absent in a fresh namespace"
        );
        ns.run_in(ensure).unwrap();
        assert_eq!(ns.run_in(present), Some(true));
        ns.run_in(ensure).unwrap();
    }
    let filter = ns.sh("iptables -S INPUT");
    assert_eq!(
        filter.matches(localnet::GUARD_COMMENT).count(),
        1,
        "{filter}"
    );
    assert!(
        filter.contains("-A INPUT -d 127.0.0.0/8 ! -i lo -m comment --comment \"CNI portfwd localnet guard\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"),
        "{filter}"
    );
    let nft = ns.sh("nft list table ip cni_localnet_guard");
    assert_eq!(nft.matches(localnet::GUARD_COMMENT).count(), 1, "{nft}");
    assert!(nft.contains("hook input priority filter"), "{nft}");

    // Gone (a firewall reload): noticed and restored, once.
    ns.sh("iptables -F INPUT && nft delete table ip cni_localnet_guard");
    for (_, present, ensure) in backends {
        assert_eq!(ns.run_in(present), Some(false));
        ns.run_in(ensure).unwrap();
        assert_eq!(ns.run_in(present), Some(true));
    }
    assert_eq!(
        ns.sh("iptables -S INPUT")
            .matches(localnet::GUARD_COMMENT)
            .count(),
        1
    );
    // Another rule with another comment is not taken for the guard.
    ns.sh("iptables -F INPUT && iptables -A INPUT -m comment --comment other -j ACCEPT");
    assert_eq!(ns.run_in(localnet::iptables_present_natively), Some(false));
}
