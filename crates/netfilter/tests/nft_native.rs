//! The native nf_tables path against `nft` itself: the same operations of every nftables
//! layout (masquerade, portmap, macspoofchk) run natively in one namespace and through
//! `nft` (the native path turned off, [`nft::set_native`]) in another; after every step
//! `nft list ruleset` and the kernel's expressions (`nft --debug=netlink list ruleset`)
//! must be identical. The native side must not have started any process
//! ([`cni_netfilter::tools_run`]).

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "tests"
)]

use std::net::IpAddr;

use cni_netfilter::firewall::{Masquerade, Nftables, PortMapper};
use cni_netfilter::masq::{self, MasqOwner};
use cni_netfilter::nft;
use cni_netfilter::portmap::{self, Owner, PortMapOptions, PortMapping, Protocol, Request};
use cni_netfilter::spoofchk;
use cni_testsupport::{Netns, require_root};
use ipnetwork::IpNetwork;

/// Runs `step` in `native` with the native path (and checks that it started no
/// process), and in `tool` through nft; then compares the two rulesets and returns the
/// listing.
fn both(
    native: &Netns,
    tool: &Netns,
    what: &str,
    step: &(dyn Fn() -> cni_netfilter::Result<()> + Sync),
) -> String {
    let run = native.run_in(|| {
        nft::set_native(true);
        let before = cni_netfilter::tools_run();
        step().map(|()| cni_netfilter::tools_run() - before)
    });
    let run = run.unwrap_or_else(|e| panic!("{what} (native): {e}"));
    assert_eq!(run, 0, "{what}: the native side ran {run} tool processes");
    tool.run_in(|| {
        nft::set_native(false);
        step()
    })
    .unwrap_or_else(|e| panic!("{what} (nft): {e}"));
    for cmd in ["nft --debug=netlink list ruleset", "nft list ruleset"] {
        let (a, b) = (native.sh(cmd), tool.sh(cmd));
        assert_eq!(a, b, "{what}: `{cmd}` differs (left: native, right: nft)");
    }
    native.sh("nft list ruleset")
}

include!("common/mappings.rs");

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

#[test]
fn native_writes_what_nft_writes() {
    if !require_root() {
        return;
    }
    let (a, b) = (Netns::new(), Netns::new());
    // The localnet guard that portmap ADD (snat, IPv4) makes sure of is created once per
    // node and is written as nft text (its rule is not in the native encoding): create it
    // up front in both namespaces, so the portmap steps below are its native layout only.
    for ns in [&a, &b] {
        ns.run_in(cni_netfilter::localnet::ensure_nftables).unwrap();
    }

    // Masquerade: two attachments, a re-ADD, a DEL, a GC.
    let ips1 = [net("10.99.0.3/24"), net("fd00:99::3/64")];
    let ips2 = [net("10.96.5.7/12"), net("fd00:98::7/60")];
    let o1 = MasqOwner {
        network: "ccnet",
        container_id: "ctr1",
        ifname: "eth0",
    };
    let o2 = MasqOwner {
        network: "ccnet",
        container_id: "ctr2",
        ifname: "eth0",
    };
    both(&a, &b, "masq ADD ctr1", &|| Nftables.setup_masq(&o1, &ips1));
    let listing = both(&a, &b, "masq ADD ctr2", &|| Nftables.setup_masq(&o2, &ips2));
    assert!(
        listing.contains("ip daddr != 10.96.0.0/12 masquerade")
            && listing.contains("ip6 daddr != fd00:98::/60 masquerade"),
        "{listing}"
    );
    both(&a, &b, "masq re-ADD ctr1", &|| {
        Nftables.setup_masq(&o1, &ips1[..1])
    });
    both(&a, &b, "masq DEL ctr1", &|| masq::teardown(&o1));
    both(&a, &b, "masq DEL ctr1 again", &|| masq::teardown(&o1));
    both(&a, &b, "masq GC", &|| masq::gc("ccnet", &[]));

    // Portmap: both families, host IPs, every protocol, snat and masqAll, DEL, GC.
    let maps = [
        pm(8080, 80, Protocol::Tcp, None),
        pm(9090, 90, Protocol::Udp, Some("10.0.0.1")),
        pm(9091, 91, Protocol::Sctp, Some("fd00::1")),
        pm(9092, 92, Protocol::Tcp, Some("0.0.0.0")),
    ];
    let pips = [net("10.99.0.3/24"), net("fd00::3/64")];
    let p1 = Owner {
        network: "n",
        container_id: "ctr1",
    };
    let p2 = Owner {
        network: "n",
        container_id: "ctr2",
    };
    let all = PortMapOptions {
        masq_all: true,
        ..PortMapOptions::default()
    };
    let no_snat = PortMapOptions {
        snat: false,
        ..PortMapOptions::default()
    };
    let opts = PortMapOptions::default();
    let listing = both(&a, &b, "portmap ADD ctr1", &|| {
        Nftables.add_port_mappings(&p1, &Request::new(&opts, &maps, &pips))
    });
    assert!(
        listing.contains("ip daddr 10.0.0.1 udp dport 9090 dnat to 10.99.0.3:90 comment \"ctr1\"")
            && listing.contains("ip6 daddr fd00::1 sctp dport 9091 dnat to [fd00::3]:91")
            && listing.contains("fib daddr type local jump hostports_all"),
        "{listing}"
    );
    both(&a, &b, "portmap ADD ctr2 masqAll", &|| {
        Nftables.add_port_mappings(&p2, &Request::new(&all, &maps[..2], &[net("10.99.0.4/24")]))
    });
    both(&a, &b, "portmap re-ADD ctr1 no snat", &|| {
        Nftables.add_port_mappings(&p1, &Request::new(&no_snat, &maps[1..], &pips))
    });
    both(&a, &b, "portmap DEL ctr1", &|| portmap::del(&p1));
    both(&a, &b, "portmap GC", &|| portmap::gc("n", &[]));

    // macspoofchk: two attachments, a replacement, a DEL, a GC.
    both(&a, &b, "spoofchk ADD ctr1", &|| {
        spoofchk::setup("ctr1", "eth0", "veth1234", "0A:58:0A:00:00:05")
    });
    both(&a, &b, "spoofchk ADD ctr2", &|| {
        spoofchk::setup("ctr2", "eth0", "veth5678", "0a:58:0a:00:00:06")
    });
    both(&a, &b, "spoofchk re-ADD ctr1", &|| {
        spoofchk::setup("ctr1", "eth0", "veth1234", "0a:58:0a:00:00:07")
    });
    both(&a, &b, "spoofchk DEL ctr2", &|| {
        spoofchk::teardown("ctr2", "eth0")
    });
    both(&a, &b, "spoofchk DEL ctr2 again", &|| {
        spoofchk::teardown("ctr2", "eth0")
    });
    both(&a, &b, "spoofchk GC", &|| spoofchk::gc(&[]));
    assert_eq!(
        a.sh("nft list table bridge nat"),
        "table bridge nat {\n\tchain PREROUTING {\n\t\ttype filter hook prerouting priority dstnat; policy accept;\n\t}\n}\n"
    );
}

/// A large transaction (3,000 rules added, then 3,000 deleted by handle after a native
/// read) commits in one batch each; the reply does not overflow the socket.
#[test]
fn large_batches_commit_natively() {
    if !require_root() {
        return;
    }
    use nftables::types::NfFamily;
    let ns = Netns::new();
    let n = 3000;
    ns.run_in(|| {
        let mut tx = nft::Tx::new();
        tx.add_table(NfFamily::IP, "big")
            .add_chain(NfFamily::IP, "big", "c", None);
        for i in 0..n {
            let ip = IpAddr::from([10, 1, (i / 256) as u8, (i % 256) as u8]);
            tx.add_rule(
                NfFamily::IP,
                "big",
                "c",
                vec![
                    nft::expr::eq(nft::expr::payload("ip", "saddr"), nft::expr::addr(ip)),
                    nft::expr::ret(),
                ],
                Some(&format!("r{i}")),
            );
        }
        tx.apply_native_only("adding").unwrap();
        let table = nft::read_table(NfFamily::IP, "big", &["c"], nft::Chains::All)
            .unwrap()
            .unwrap();
        assert_eq!(table.chains, vec!["c".to_owned()]);
        assert_eq!(table.rules.len(), n);
        assert_eq!(table.rules[7].comment.as_deref(), Some("r7"));
        let mut del = nft::Tx::new();
        for r in &table.rules {
            del.delete_rule(NfFamily::IP, "big", "c", r.handle);
        }
        del.apply_native_only("deleting").unwrap();
        // A refused batch (the rules are gone) is an error and changes nothing.
        assert!(del.apply_native_only("deleting again").is_err());
        assert!(
            nft::read_table(NfFamily::IP, "missing", &["c"], nft::Chains::All)
                .unwrap()
                .is_none()
        );
    });
    assert_eq!(
        ns.sh("nft list table ip big"),
        "table ip big {\n\tchain c {\n\t}\n}\n"
    );
}
