//! Privileged tests: real iptables-restore / nft transactions inside private network
//! namespaces, compared with listings produced by the reference Go plugins in
//! /usr/lib/cni (Debian v1.1.1).

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "tests"
)]

use std::time::Instant;

use cni_netfilter::Firewall;
use cni_netfilter::firewall::{self, Iptables, Masquerade, Nftables, PortMapper};
use cni_netfilter::iptables::{self, Family};
use cni_netfilter::masq::{self, MasqOwner};
use cni_netfilter::portmap::{self, Owner, PortMapOptions, PortMapping, Protocol, Request};
use cni_netfilter::{Backend, spoofchk};
use cni_testsupport::{Netns, require_root};
use ipnetwork::IpNetwork;

const REF_PORTMAP: &str = "/usr/lib/cni/portmap";

include!("common/mappings.rs");

fn ips() -> Vec<IpNetwork> {
    vec![
        "10.99.0.3/24".parse().unwrap(),
        "fd00:99::3/64".parse().unwrap(),
    ]
}

const OWNER: Owner<'static> = Owner {
    network: "ccnet",
    container_id: "ctr1",
};

const MASQ_OWNER: MasqOwner<'static> = MasqOwner {
    network: "ccnet",
    container_id: "ctr1",
    ifname: "eth0",
};

fn mapping_json(maps: &[PortMapping]) -> String {
    let items: Vec<String> = maps
        .iter()
        .map(|m| {
            let host_ip = m
                .host_ip
                .map(|h| format!(r#","hostIP":"{h}""#))
                .unwrap_or_default();
            format!(
                r#"{{"hostPort":{},"containerPort":{},"protocol":"{}"{host_ip}}}"#,
                m.host_port, m.container_port, m.protocol
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// Runs the reference portmap plugin with `command` inside `ns`.
fn reference_portmap(ns: &Netns, command: &str, cid: &str, maps: &[PortMapping]) {
    let conf = format!(
        r#"{{"cniVersion":"0.4.0","name":"ccnet","type":"portmap","snat":true,"runtimeConfig":{{"portMappings":{}}},
        "prevResult":{{"cniVersion":"0.4.0","interfaces":[{{"name":"eth0","sandbox":"/var/run/netns/x"}}],
        "ips":[{{"version":"4","interface":0,"address":"10.99.0.3/24","gateway":"10.99.0.1"}},{{"version":"6","interface":0,"address":"fd00:99::3/64"}}]}}}}"#,
        mapping_json(maps)
    );
    let env = [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    let (ok, out, err) = ns.sh_in(REF_PORTMAP, &env, &conf);
    assert!(ok, "reference portmap {command} failed: {out} {err}");
}

/// Runs the reference bridge plugin's ADD (container `ctr1`, `eth0`) of `container` in
/// `host` with `conf`; its success and output.
fn reference_bridge_add(host: &Netns, container: &Netns, conf: &str) -> (bool, String, String) {
    let netns = format!("/run/netns/{}", container.name());
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "ctr1"),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni"),
    ];
    host.sh_in("/usr/lib/cni/bridge", &env, conf)
}

fn host_ns() -> Netns {
    let ns = Netns::new();
    ns.sh("ip link add br0 type bridge && ip addr add 10.99.0.1/24 dev br0 && ip -6 addr add fd00:99::1/64 dev br0 nodad && ip link set br0 up");
    ns
}

/// A second container of the network, with one mapping, at [`second_ips`].
const SECOND: Owner<'static> = Owner {
    network: "ccnet",
    container_id: "ctr2",
};

const SECOND_MAPPING: PortMapping = PortMapping {
    host_port: 6000,
    container_port: 60,
    protocol: Protocol::Tcp,
    host_ip: None,
};

fn second_ips() -> Vec<IpNetwork> {
    vec!["10.99.0.4/24".parse().unwrap()]
}

#[test]
fn portmap_iptables_listing_equals_reference_plugin() {
    if !require_root() {
        return;
    }
    let reference = host_ns();
    reference_portmap(&reference, "ADD", "ctr1", &sample());
    let ours = host_ns();
    let started = Instant::now();
    add_sample(&ours, &Iptables, &PortMapOptions::default());
    println!("portmap iptables ADD (v4+v6): {:?}", started.elapsed());
    for v6 in [false, true] {
        assert_eq!(ours.nat(v6), reference.nat(v6), "v6={v6}");
    }
    // Re-applying the same mappings changes nothing and needs no restore.
    add_sample(&ours, &Iptables, &PortMapOptions::default());
    assert_eq!(ours.nat(false), reference.nat(false));
    ours.run_in(|| {
        Iptables.check_port_mappings(
            &OWNER,
            &Request::new(&PortMapOptions::default(), &sample(), &ips()),
        )
    })
    .unwrap();
}

#[test]
fn portmap_iptables_readd_check_del_gc() {
    if !require_root() {
        return;
    }
    let ns = host_ns();
    let opts = PortMapOptions::default();
    add_sample(&ns, &Iptables, &opts);
    let new = readd_replaces(&ns, &Iptables, &opts);
    for v6 in [false, true] {
        let listing = ns.nat(v6);
        assert!(
            !listing.contains("8080") && !listing.contains("9091") && !listing.contains("8053"),
            "stale rules:\n{listing}"
        );
        assert!(
            listing.contains("--dports 7000 -j CNI-DN-fe994aa6f38cd8a2c97f6"),
            "{listing}"
        );
    }
    // CHECK per family: delete one IPv6 rule only and the IPv6 check fails.
    ns.sh("ip6tables -t nat -D CNI-DN-fe994aa6f38cd8a2c97f6 -p udp -m udp --dport 7000 -j DNAT --to-destination [fd00:99::3]:70");
    let v4: Vec<IpNetwork> = ips()[..1].to_vec();
    ns.run_in(|| Iptables.check_port_mappings(&OWNER, &Request::new(&opts, &new, &v4)))
        .unwrap();
    let err = ns
        .run_in(|| Iptables.check_port_mappings(&OWNER, &Request::new(&opts, &new, &ips())))
        .unwrap_err();
    assert!(err.to_string().contains("ip6tables"), "{err}");
    ns.run_in(|| {
        Iptables.add_port_mappings(
            &SECOND,
            &Request::new(&opts, &[SECOND_MAPPING], &second_ips()),
        )
    })
    .unwrap();
    del_leaves_second_container(&ns, &Iptables, |cid| {
        let chain = cni_netfilter::names::portmap_dnat_chain("ccnet", cid);
        ns.nat(false).contains(&chain) || ns.nat(true).contains(&chain)
    });
    assert!(ns.nat(false).contains("--dports 6000"));
    ns.run_in(|| portmap::gc("othernet", &[])).unwrap();
    assert!(
        ns.nat(false).contains("--dports 6000"),
        "GC of another network must not touch ccnet"
    );
    ns.run_in(|| portmap::gc("ccnet", &[])).unwrap();
    assert!(!ns.nat(false).contains("CNI-DN-"), "{}", ns.nat(false));
}

#[test]
fn portmap_del_removes_reference_plugin_rules() {
    if !require_root() {
        return;
    }
    let ns = host_ns();
    reference_portmap(&ns, "ADD", "ctr1", &sample());
    assert!(ns.nat(false).contains("CNI-DN-fe994aa6f38cd8a2c97f6"));
    ns.run_in(|| portmap::del(&OWNER)).unwrap();
    for v6 in [false, true] {
        let l = ns.nat(v6);
        assert!(!l.contains("CNI-DN-"), "{l}");
        assert!(
            l.contains("-N CNI-HOSTPORT-DNAT"),
            "shared chains stay: {l}"
        );
    }
    // And the reference removes ours (same layout).
    add_sample(&ns, &Iptables, &PortMapOptions::default());
    reference_portmap(&ns, "DEL", "ctr1", &sample());
    assert!(!ns.nat(false).contains("CNI-DN-"), "{}", ns.nat(false));
}

#[test]
fn masq_iptables_lifecycle() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let owner = MASQ_OWNER;
    ns.run_in(|| Iptables.setup_masq(&owner, &ips())).unwrap();
    let v4 = ns.nat(false);
    let expected_v4 = "-N CNI-fe994aa6f38cd8a2c97f61d7
-A POSTROUTING -s 10.99.0.3/32 -m comment --comment \"name: \\\"ccnet\\\" id: \\\"ctr1\\\"\" -j CNI-fe994aa6f38cd8a2c97f61d7
-A CNI-fe994aa6f38cd8a2c97f61d7 -d 10.99.0.0/24 -m comment --comment \"name: \\\"ccnet\\\" id: \\\"ctr1\\\"\" -j ACCEPT
-A CNI-fe994aa6f38cd8a2c97f61d7 ! -d 224.0.0.0/4 -m comment --comment \"name: \\\"ccnet\\\" id: \\\"ctr1\\\"\" -j MASQUERADE
";
    assert!(v4.ends_with(expected_v4), "{v4}");
    assert!(
        ns.nat(true).contains("! -d ff00::/8 -m comment"),
        "{}",
        ns.nat(true)
    );
    ns.run_in(|| Iptables.setup_masq(&owner, &ips())).unwrap();
    assert_eq!(ns.nat(false), v4, "re-setup is idempotent");
    teardown_leaves_second_attachment(&ns, &Iptables, |cid| {
        let chain = cni_netfilter::names::masq_chain("ccnet", cid);
        ns.nat(false).contains(&chain) || ns.nat(true).contains(&chain)
    });
    assert!(!ns.nat(true).contains("CNI-"), "{}", ns.nat(true));
    assert!(ns.nat(false).contains("10.99.0.4/32"));
    ns.run_in(|| masq::gc("ccnet", &[])).unwrap();
    assert!(!ns.nat(false).contains("CNI-"), "{}", ns.nat(false));
}

#[test]
fn masq_iptables_listing_equals_reference_bridge() {
    if !require_root() {
        return;
    }
    let reference = Netns::new();
    let container = Netns::new();
    let data = std::env::temp_dir().join(format!("cninf-ipam-{}", container.name()));
    let conf = format!(
        r#"{{"cniVersion":"0.4.0","name":"ccnet","type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":true,
        "ipam":{{"type":"host-local","dataDir":"{}","ranges":[[{{"subnet":"10.99.0.0/24"}}],[{{"subnet":"fd00:99::/64"}}]]}}}}"#,
        data.display()
    );
    let (ok, out, err) = reference_bridge_add(&reference, &container, &conf);
    let _ = std::fs::remove_dir_all(&data);
    assert!(ok, "reference bridge failed: {out} {err}");
    let ours = Netns::new();
    let owner = MASQ_OWNER;
    let addrs: Vec<IpNetwork> = vec![
        "10.99.0.2/24".parse().unwrap(),
        "fd00:99::2/64".parse().unwrap(),
    ];
    ours.run_in(|| Iptables.setup_masq(&owner, &addrs)).unwrap();
    for v6 in [false, true] {
        assert_eq!(ours.nat(v6), reference.nat(v6), "v6={v6}");
    }
    // Our teardown removes the reference's rules without knowing the addresses.
    reference.run_in(|| masq::teardown(&owner)).unwrap();
    for v6 in [false, true] {
        assert!(!reference.nat(v6).contains("CNI-"), "{}", reference.nat(v6));
    }
}

fn nft_list(ns: &Netns, what: &str) -> String {
    ns.sh(&format!("nft list {what}"))
}

#[test]
fn masq_nftables_lifecycle() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    let owner = MASQ_OWNER;
    ns.run_in(|| Nftables.setup_masq(&owner, &ips())).unwrap();
    let listing = nft_list(&ns, "table inet cni_plugins_masquerade");
    println!("{listing}");
    let comment = cni_netfilter::names::nft_masq_comment("ccnet", "eth0", "ctr1");
    for line in [
        "type nat hook postrouting priority srcnat; policy accept;".to_owned(),
        "ip daddr 224.0.0.0/4 return".to_owned(),
        "ip6 daddr ff00::/8 return".to_owned(),
        "goto masq_checks".to_owned(),
        format!("ip saddr 10.99.0.3 ip daddr != 10.99.0.0/24 masquerade comment \"{comment}\""),
        format!("ip6 saddr fd00:99::3 ip6 daddr != fd00:99::/64 masquerade comment \"{comment}\""),
    ] {
        assert!(listing.contains(&line), "missing {line:?} in\n{listing}");
    }
    ns.run_in(|| Nftables.setup_masq(&owner, &ips())).unwrap();
    assert_eq!(
        nft_list(&ns, "chain inet cni_plugins_masquerade masq_checks")
            .matches("masquerade comment")
            .count(),
        2,
        "re-setup replaces"
    );
    teardown_leaves_second_attachment(&ns, &Nftables, |cid| {
        let comment = cni_netfilter::names::nft_masq_comment("ccnet", "eth0", cid);
        nft_list(&ns, "chain inet cni_plugins_masquerade masq_checks").contains(&comment)
    });
    let left = nft_list(&ns, "chain inet cni_plugins_masquerade masq_checks");
    assert!(
        !left.contains("10.99.0.3") && left.contains("10.99.0.4"),
        "{left}"
    );
    ns.run_in(|| masq::gc("ccnet", &[("ctr2".into(), "eth1".into())]))
        .unwrap();
    assert!(!nft_list(&ns, "chain inet cni_plugins_masquerade masq_checks").contains("10.99.0.4"));
}

#[test]
fn spoofchk_lifecycle() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    ns.sh("ip link add vethtest type veth peer name vethpeer");
    ns.run_in(|| spoofchk::setup("ctr1", "eth0", "vethtest", "0A:58:0A:00:00:05"))
        .unwrap();
    let listing = nft_list(&ns, "table bridge nat");
    println!("{listing}");
    let expected = r#"table bridge nat {
	chain PREROUTING {
		type filter hook prerouting priority dstnat; policy accept;
		iifname "vethtest" jump cni-br-iface-ctr1-eth0 comment "macspoofchk-ctr1-eth0"
	}

	chain cni-br-iface-ctr1-eth0 {
		jump cni-br-iface-ctr1-eth0-mac comment "macspoofchk-ctr1-eth0"
	}

	chain cni-br-iface-ctr1-eth0-mac {
		ether saddr 0a:58:0a:00:00:05 return comment "macspoofchk-ctr1-eth0"
		drop comment "macspoofchk-ctr1-eth0"
	}
}
"#;
    assert_eq!(listing, expected);
    ns.run_in(|| spoofchk::setup("ctr1", "eth0", "vethtest", "0a:58:0a:00:00:05"))
        .unwrap();
    assert_eq!(
        nft_list(&ns, "table bridge nat"),
        expected,
        "re-setup is idempotent"
    );
    ns.run_in(|| spoofchk::check("ctr1", "eth0", "vethtest", "0a:58:0a:00:00:05"))
        .unwrap();
    assert!(
        ns.run_in(|| spoofchk::check("ctr1", "eth0", "vethtest", "0a:58:0a:00:00:06"))
            .unwrap_err()
            .is_missing()
    );
    ns.run_in(|| spoofchk::setup("ctr2", "eth0", "vethpeer", "0a:58:0a:00:00:07"))
        .unwrap();
    ns.run_in(|| spoofchk::teardown("ctr1", "eth0")).unwrap();
    ns.run_in(|| spoofchk::teardown("ctr1", "eth0")).unwrap();
    let left = nft_list(&ns, "table bridge nat");
    assert!(
        !left.contains("ctr1") && left.contains("cni-br-iface-ctr2-eth0-mac"),
        "{left}"
    );
    ns.run_in(|| spoofchk::gc(&[("ctr2".into(), "eth0".into())]))
        .unwrap();
    assert!(nft_list(&ns, "table bridge nat").contains("ctr2"));
    ns.run_in(|| spoofchk::gc(&[])).unwrap();
    assert!(!nft_list(&ns, "table bridge nat").contains("ctr2"));
}

#[test]
fn spoofchk_teardown_removes_reference_bridge_rules() {
    if !require_root() {
        return;
    }
    let host = Netns::new();
    let container = Netns::new();
    let conf = r#"{"cniVersion":"0.4.0","name":"ccnet","type":"bridge","bridge":"cni0","macspoofchk":true,"ipam":{}}"#;
    let (ok, out, err) = reference_bridge_add(&host, &container, conf);
    assert!(ok, "reference bridge failed: {out} {err}");
    let before = nft_list(&host, "table bridge nat");
    assert!(before.contains("macspoofchk-ctr1-eth0"), "{before}");
    let mac = container.sh("cat /sys/class/net/eth0/address");
    let veth = host.sh("ls /sys/class/net/cni0/brif/");
    host.run_in(|| spoofchk::check("ctr1", "eth0", veth.trim(), mac.trim()))
        .unwrap();
    host.run_in(|| spoofchk::teardown("ctr1", "eth0")).unwrap();
    let after = nft_list(&host, "table bridge nat");
    assert!(!after.contains("ctr1"), "{after}");
}

#[test]
fn portmap_nftables_lifecycle() {
    if !require_root() {
        return;
    }
    let ns = host_ns();
    let opts = PortMapOptions::default();
    let started = Instant::now();
    add_sample(&ns, &Nftables, &opts);
    println!("portmap nftables ADD (v4+v6): {:?}", started.elapsed());
    let v4 = nft_list(&ns, "table ip cni_hostport");
    let v6 = nft_list(&ns, "table ip6 cni_hostport");
    println!("{v4}\n{v6}");
    let expected_v4 = r#"table ip cni_hostport {
	comment "CNI portmap plugin"
	chain hostports {
		tcp dport 8080 dnat to 10.99.0.3:80 comment "ctr1"
		udp dport 8053 dnat to 10.99.0.3:53 comment "ctr1"
		ip daddr 10.99.0.1 tcp dport 9090 dnat to 10.99.0.3:90 comment "ctr1"
	}

	chain hostip_hostports {
	}

	chain hostports_all {
		jump hostip_hostports
		jump hostports
	}

	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local jump hostports_all
	}

	chain output {
		type nat hook output priority -100; policy accept;
		fib daddr type local jump hostports_all
	}

	chain masquerading {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.99.0.3 ip daddr 10.99.0.3 masquerade comment "ctr1"
		ip saddr 127.0.0.1 ip daddr 10.99.0.3 masquerade comment "ctr1"
	}
}
"#;
    assert_eq!(v4, expected_v4);
    for line in [
        "tcp dport 9091 dnat to [fd00:99::3]:91 comment \"ctr1\"",
        "ip6 saddr fd00:99::3 ip6 daddr fd00:99::3 masquerade comment \"ctr1\"",
    ] {
        assert!(v6.contains(line), "missing {line:?} in\n{v6}");
    }
    assert!(!v6.contains("9090") && !v6.contains("127.0.0.1"), "{v6}");
    ns.run_in(|| Nftables.check_port_mappings(&OWNER, &Request::new(&opts, &sample(), &ips())))
        .unwrap();
    readd_replaces(&ns, &Nftables, &opts);
    let v4 = nft_list(&ns, "table ip cni_hostport");
    assert!(
        !v4.contains("8080") && v4.contains("udp dport 7000 dnat to 10.99.0.3:70"),
        "{v4}"
    );
    assert_eq!(v4.matches("masquerade comment").count(), 2, "{v4}");
    // masqAll + conditions, second container.
    let all = PortMapOptions {
        masq_all: true,
        conditions_v4: vec!["iifname".into(), "!=".into(), "\"lo\"".into()],
        ..PortMapOptions::default()
    };
    let second = second_ips();
    let request = Request::new(&all, &[SECOND_MAPPING], &second);
    ns.run_in(|| Nftables.add_port_mappings(&SECOND, &request))
        .unwrap();
    let v4 = nft_list(&ns, "table ip cni_hostport");
    assert!(
        v4.contains("ip saddr 0.0.0.0/0 ip daddr 10.99.0.4 masquerade comment \"ctr2\"")
            || v4.contains("ip daddr 10.99.0.4 masquerade comment \"ctr2\""),
        "{v4}"
    );
    assert!(
        v4.contains("iifname != \"lo\" fib daddr type local jump hostports_all"),
        "{v4}"
    );
    ns.run_in(|| Nftables.check_port_mappings(&SECOND, &request))
        .unwrap();
    del_leaves_second_container(&ns, &Nftables, |cid| {
        let comment = format!("\"{cid}\"");
        ["ip", "ip6"]
            .iter()
            .any(|f| nft_list(&ns, &format!("table {f} cni_hostport")).contains(&comment))
    });
    ns.run_in(|| portmap::gc("ccnet", &[])).unwrap();
    assert!(!nft_list(&ns, "table ip cni_hostport").contains("\"ctr2\""));
}

#[test]
fn backend_autodetection_and_tool_errors() {
    if !require_root() {
        return;
    }
    let ns = Netns::new();
    assert_eq!(
        ns.run_in(|| firewall::select(None)).unwrap().backend(),
        Backend::Iptables
    );
    assert_eq!(
        ns.run_in(firewall::usable_all),
        [Backend::Iptables, Backend::Nftables]
    );
    // A rule the kernel rejects reports the tool's stderr and the rendered input.
    let bad = [pm(8080, 80, Protocol::Tcp, Some("10.99.0.1"))];
    let weird = PortMapOptions {
        conditions_v4: vec!["--no-such-option".into()],
        ..PortMapOptions::default()
    };
    let err = ns
        .run_in(|| Iptables.add_port_mappings(&OWNER, &Request::new(&weird, &bad, &ips()[..1])))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("iptables-restore")
            && text.contains("--no-such-option")
            && text.contains("CNI-DN-"),
        "{text}"
    );
    assert!(!err.is_lock_timeout());
    // Nothing was applied: the restore is atomic.
    assert!(!ns.nat(false).contains("CNI-"), "{}", ns.nat(false));
}

/// The native confirmation of portmap's shared rules (what lets ADD skip its `-C`
/// checks) recognises exactly the rules the reference plugin writes, nothing else.
#[test]
fn portmap_shared_rules_confirmed_natively_only_when_exactly_present() {
    if !require_root() {
        return;
    }
    let ns = host_ns();
    let confirmed = |opts: &PortMapOptions, family: Family| {
        ns.run_in(|| portmap::iptables_shared_rules_confirmed(family, opts))
    };
    let default = PortMapOptions::default();
    for family in Family::ALL {
        assert!(!confirmed(&default, family), "{family}: fresh namespace");
    }
    reference_portmap(&ns, "ADD", "ctr1", &sample());
    let nft_variant = iptables::is_nft_variant(Family::V4);
    for family in Family::ALL {
        assert_eq!(
            confirmed(&default, family),
            nft_variant && iptables::is_nft_variant(family),
            "{family}: after the reference plugin's ADD"
        );
    }
    if !nft_variant {
        println!("iptables is not the nf_tables variant: nothing is confirmed natively");
        return;
    }
    let other_bit = PortMapOptions {
        mark_masq_bit: 14,
        ..PortMapOptions::default()
    };
    assert!(!confirmed(&other_bit, Family::V4), "another mark bit");
    let no_snat = PortMapOptions {
        snat: false,
        ..PortMapOptions::default()
    };
    assert!(
        confirmed(&no_snat, Family::V4),
        "without snat only the hooks count"
    );

    // Hundreds of rules in POSTROUTING: still found (the dump stops at the rule).
    ns.sh("(echo '*nat'; for i in $(seq 1 600); do echo \"-A POSTROUTING -s 10.1.$((i/200)).$((i%200))/32 -j ACCEPT\"; done; echo COMMIT) | iptables-restore --noflush");
    assert!(confirmed(&default, Family::V4));

    // Each shared rule removed or altered in turn: not confirmed; put back: confirmed.
    let masq = "CNI portfwd requiring masquerade";
    let mark = "CNI portfwd masquerade mark";
    for (break_it, repair) in [
        (
            "iptables -t nat -D OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT".to_owned(),
            "iptables -t nat -A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT".to_owned(),
        ),
        (
            "iptables -t nat -R PREROUTING 1 -m addrtype ! --dst-type LOCAL -j CNI-HOSTPORT-DNAT".to_owned(),
            "iptables -t nat -R PREROUTING 1 -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT".to_owned(),
        ),
        (
            format!("iptables -t nat -R CNI-HOSTPORT-SETMARK 1 -m comment --comment '{mark}' -j MARK --set-xmark 0x2000/0x3000"),
            format!("iptables -t nat -R CNI-HOSTPORT-SETMARK 1 -m comment --comment '{mark}' -j MARK --set-xmark 0x2000/0x2000"),
        ),
        (
            "iptables -t nat -R CNI-HOSTPORT-MASQ 1 -m mark --mark 0x2000/0x2000 -j MASQUERADE --random".to_owned(),
            "iptables -t nat -R CNI-HOSTPORT-MASQ 1 -m mark --mark 0x2000/0x2000 -j MASQUERADE".to_owned(),
        ),
        (
            format!("iptables -t nat -D POSTROUTING -m comment --comment '{masq}' -j CNI-HOSTPORT-MASQ"),
            format!("iptables -t nat -I POSTROUTING 1 -m comment --comment '{masq}' -j CNI-HOSTPORT-MASQ"),
        ),
        (
            format!("iptables -t nat -R POSTROUTING 1 -m comment --comment '{mark}' -j CNI-HOSTPORT-MASQ"),
            format!("iptables -t nat -R POSTROUTING 1 -m comment --comment '{masq}' -j CNI-HOSTPORT-MASQ"),
        ),
    ] {
        ns.sh(&break_it);
        assert!(!confirmed(&default, Family::V4), "after `{break_it}`");
        ns.sh(&repair);
        assert!(confirmed(&default, Family::V4), "after `{repair}`");
    }

    // Our ADD of a second container takes the unchecked fast path and duplicates nothing.
    let second = Owner {
        network: "ccnet",
        container_id: "ctr2",
    };
    let before = ns.nat(false);
    ns.run_in(|| {
        Iptables.add_port_mappings(
            &second,
            &Request::new(
                &default,
                &[pm(7070, 70, Protocol::Tcp, None)],
                &["10.99.0.4/24".parse().unwrap()],
            ),
        )
    })
    .unwrap();
    let after = ns.nat(false);
    let count = |t: &str, prefix: &str| t.lines().filter(|l| l.starts_with(prefix)).count();
    for shared in [
        "-A PREROUTING",
        "-A OUTPUT",
        "-A CNI-HOSTPORT-SETMARK",
        "-A CNI-HOSTPORT-MASQ",
    ] {
        assert_eq!(
            count(&after, shared),
            count(&before, shared),
            "{shared}\n{after}"
        );
    }
    assert_eq!(
        count(&after, "-A CNI-HOSTPORT-DNAT"),
        count(&before, "-A CNI-HOSTPORT-DNAT") + 1
    );
    ns.run_in(|| portmap::del(&second)).unwrap();
    assert_eq!(ns.nat(false), before);
}

// The steps both backends' lifecycle tests share.

/// Adds the [`sample`] mappings of [`OWNER`] with `fw` in `ns`.
fn add_sample(ns: &Netns, fw: &dyn Firewall, opts: &PortMapOptions) {
    ns.run_in(|| fw.add_port_mappings(&OWNER, &Request::new(opts, &sample(), &ips())))
        .unwrap();
}

/// Re-ADD of [`OWNER`] with other mappings replaces the old ones: CHECK passes for the
/// new, finds the old missing. Returns the new mappings.
fn readd_replaces(ns: &Netns, fw: &dyn Firewall, opts: &PortMapOptions) -> [PortMapping; 1] {
    let new = [pm(7000, 70, Protocol::Udp, None)];
    let check = |maps: &[PortMapping]| {
        let ips = ips();
        ns.run_in(|| fw.check_port_mappings(&OWNER, &Request::new(opts, maps, &ips)))
    };
    ns.run_in(|| fw.add_port_mappings(&OWNER, &Request::new(opts, &new, &ips())))
        .unwrap();
    check(&new).unwrap();
    let err = check(&sample()).unwrap_err();
    assert!(err.is_missing(), "{err}");
    new
}

/// With [`SECOND`] set up too: DEL of [`OWNER`] (timed; again: idempotent) removes only
/// its rules, and GC keeps [`SECOND`] while it is valid. `present(container_id)`: whether
/// the backend's listing shows rules of that container.
fn del_leaves_second_container(ns: &Netns, fw: &dyn Firewall, present: impl Fn(&str) -> bool) {
    let started = Instant::now();
    ns.run_in(|| portmap::del(&OWNER)).unwrap();
    println!(
        "portmap {} DEL (+ probe of the other backend): {:?}",
        fw.backend(),
        started.elapsed()
    );
    ns.run_in(|| portmap::del(&OWNER)).unwrap();
    assert!(!present("ctr1") && present("ctr2"));
    ns.run_in(|| portmap::gc("ccnet", &[("ctr2".into(), "eth0".into())]))
        .unwrap();
    assert!(present("ctr2"));
}

/// After the masquerade setup of `ccnet`/`ctr1`/`eth0` at [`ips`]: CHECK passes; with a
/// second attachment (`ctr2`, 10.99.0.4) set up, teardown of the first (twice:
/// idempotent) removes only its rules, CHECK then finds them missing, and GC keeps the
/// second while it is valid. `present(container_id)`: whether the backend's listing
/// shows rules of that container.
fn teardown_leaves_second_attachment(
    ns: &Netns,
    fw: &dyn Firewall,
    present: impl Fn(&str) -> bool,
) {
    let owner = MASQ_OWNER;
    ns.run_in(|| fw.check_masq(&owner, &ips())).unwrap();
    let other = MasqOwner {
        container_id: "ctr2",
        ..owner
    };
    ns.run_in(|| fw.setup_masq(&other, &second_ips())).unwrap();
    ns.run_in(|| masq::teardown(&owner)).unwrap();
    ns.run_in(|| masq::teardown(&owner)).unwrap();
    assert!(!present("ctr1") && present("ctr2"));
    let err = ns.run_in(|| fw.check_masq(&owner, &ips())).unwrap_err();
    assert!(err.is_missing(), "{err}");
    ns.run_in(|| masq::gc("ccnet", &[("ctr2".into(), "eth0".into())]))
        .unwrap();
    assert!(present("ctr2"));
}

/// DEL without the mappings (the runtime forgot them) on a node whose `nat` table is busy
/// with unrelated rules: the container's chains and their jumps go natively (two chain
/// dumps and one transaction per family), without a tool process and without reading the
/// table; a chain that something else still jumps to falls back to reading the table and
/// still goes, with that jump.
#[test]
fn portmap_iptables_del_without_mappings_reads_only_its_chains() {
    if !require_root() {
        return;
    }
    let ns = host_ns();
    if !iptables::is_nft_variant(Family::V4) {
        println!("skipped: iptables is not the nf_tables variant");
        return;
    }
    // 2,000 unrelated DNAT rules, reachable from PREROUTING like kube-proxy's.
    let mut busy = String::from("*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n");
    for i in 0..2000 {
        busy.push_str(&format!(
            "-A KUBE-SERVICES -d 10.96.{}.{}/32 -p tcp --dport 80 -j DNAT --to-destination 10.244.0.{}:8080\n",
            i / 250,
            i % 250,
            i % 250 + 1
        ));
    }
    busy.push_str("COMMIT\n");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), busy).unwrap();
    ns.sh(&format!(
        "iptables-restore --noflush < {}",
        file.path().display()
    ));
    let opts = PortMapOptions::default();
    for owner in [&OWNER, &SECOND] {
        let (maps, ips) = if owner.container_id == "ctr1" {
            (sample(), ips())
        } else {
            (vec![SECOND_MAPPING], second_ips())
        };
        ns.run_in(|| Iptables.add_port_mappings(owner, &Request::new(&opts, &maps, &ips)))
            .unwrap();
    }
    let chain = cni_netfilter::names::portmap_dnat_chain("ccnet", "ctr1");
    let tools = ns
        .run_in(|| {
            let before = cni_netfilter::tools_run();
            portmap::del(&OWNER).map(|()| cni_netfilter::tools_run() - before)
        })
        .unwrap();
    assert_eq!(tools, 0, "a tool ran: the table was read");
    for v6 in [false, true] {
        let l = ns.nat(v6);
        assert!(!l.contains(&chain), "{l}");
        assert!(!l.contains("id: \\\"ctr1\\\""), "{l}");
    }
    let l = ns.nat(false);
    assert!(
        l.contains("--dports 6000"),
        "the other container stays: {l}"
    );
    assert_eq!(l.matches("-A KUBE-SERVICES").count(), 2000);
    // A jump from elsewhere: the native transaction is refused, the table is read.
    let second = cni_netfilter::names::portmap_dnat_chain("ccnet", "ctr2");
    ns.sh(&format!(
        "iptables -t nat -N OTHER && iptables -t nat -A OTHER -j {second}"
    ));
    ns.run_in(|| portmap::del(&SECOND)).unwrap();
    let l = ns.nat(false);
    assert!(!l.contains(&second), "{l}");
    assert!(!l.contains("--dports 6000"), "{l}");
}

/// nftables portmap ADD reads the shared chains only when the container may have rules
/// there already (its marker exists: an earlier ADD of ours, not yet DELeted). A rule
/// planted with the container's comment before its first ADD (as upstream's plugin would
/// leave one) is not seen by that ADD; the next ADD replaces it with the rest; DEL removes
/// everything and the marker, so the next first ADD reads nothing again.
#[test]
fn portmap_nftables_first_add_reads_nothing() {
    if !require_root() {
        return;
    }
    let ns = host_ns();
    let opts = PortMapOptions::default();
    let add = || add_sample(&ns, &Nftables, &opts);
    let planted = "tcp dport 5555 dnat to 10.99.0.3:55 comment \"ctr1\"";
    let plant = || {
        ns.sh("nft add rule ip cni_hostport hostports tcp dport 5555 dnat to 10.99.0.3:55 comment '\"ctr1\"'");
    };
    add();
    ns.run_in(|| Nftables.del_port_mappings(&OWNER, None))
        .unwrap();
    plant();
    add();
    let v4 = nft_list(&ns, "table ip cni_hostport");
    assert!(v4.contains(planted), "a first ADD must not have read: {v4}");
    add();
    let v4 = nft_list(&ns, "table ip cni_hostport");
    assert!(!v4.contains(planted), "a repeated ADD replaces: {v4}");
    assert_eq!(v4.matches("comment \"ctr1\"").count(), 5, "{v4}");
    plant();
    ns.run_in(|| Nftables.del_port_mappings(&OWNER, None))
        .unwrap();
    let v4 = nft_list(&ns, "table ip cni_hostport");
    assert!(!v4.contains("ctr1"), "{v4}");
    plant();
    add();
    assert!(nft_list(&ns, "table ip cni_hostport").contains(planted));
    ns.run_in(|| Nftables.del_port_mappings(&OWNER, None))
        .unwrap();
}
