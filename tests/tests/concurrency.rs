//! Concurrent chain ADDs on a fresh node (no shared chain, table or bridge exists yet):
//! 32 containers attached at the same moment (three times, on three fresh nodes) with bridge (`ipMasq`) + host-local +
//! portmap (one TCP and one UDP host port each), for each netfilter backend. Every
//! container's host ports are then checked with real traffic (TCP from the host
//! namespace and from another container, UDP from the host namespace), every shared
//! and per-container rule and reservation is counted (exactly one of each), CHECK passes
//! for all, and 32 DELs at once leave nothing.
//!
//! This is the race where two ADDs both find a shared chain (`CNI-HOSTPORT-DNAT`)
//! missing and the second one's `:CHAIN` declaration flushes the first one's jump, or
//! both append the hook jumps: every ADD succeeded, yet host ports were lost.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

use std::collections::BTreeSet;
use std::sync::{Barrier, Mutex};
use std::time::Instant;

use cni_testsupport::{Netns, node, require_root, serve, tcp_get, udp_ask};
use node::{Node, Side, first_ip, links};
use serde_json::{Value, json};

const N: usize = 32;
/// Fresh nodes per backend and test run: whether the racing ADDs collide depends on
/// timing, and on the code before the fix one trial lost host ports in about 3 runs of 5.
const TRIALS: usize = 3;
const TCP_BASE: u16 = 20000;
const UDP_BASE: u16 = 21000;

struct Ctr {
    index: usize,
    id: String,
    ns: Netns,
    ip: String,
    result: Value,
}

fn bridge_conf(n: &Node, backend: &str, subnet: &str) -> Value {
    n.bridge_conf(
        "1.0.0",
        &[subnet],
        json!({"isGateway": true, "ipMasq": true, "ipMasqBackend": backend}),
    )
}

/// The portmap step of the chain for container `i`, after bridge gave `prev`.
fn portmap_conf(n: &Node, backend: &str, i: usize, prev: &Value) -> Value {
    json!({
        "cniVersion": "1.0.0", "name": n.name, "type": "portmap", "backend": backend,
        "snat": true,
        "runtimeConfig": {"portMappings": [
            {"hostPort": TCP_BASE + u16::try_from(i).unwrap(), "containerPort": 80, "protocol": "tcp"},
            {"hostPort": UDP_BASE + u16::try_from(i).unwrap(), "containerPort": 53, "protocol": "udp"}
        ]},
        "prevResult": prev,
    })
}

/// Lines of `chain` in an `nft list ruleset` listing (the rules, not the hook line).
fn nft_chain<'a>(listing: &'a str, table: &str, chain: &str) -> Vec<&'a str> {
    let mut in_table = false;
    let mut in_chain = false;
    let mut out = Vec::new();
    for line in listing.lines() {
        let t = line.trim();
        if line.starts_with("table ") {
            in_table = line.trim_end_matches(" {").ends_with(&format!(" {table}"));
            in_chain = false;
        } else if in_table && t == format!("chain {chain} {{") {
            in_chain = true;
        } else if in_chain && t == "}" {
            in_chain = false;
        } else if in_chain && !t.is_empty() && !t.starts_with("type ") && !t.starts_with("comment ")
        {
            // Rules only: not the chain's hook line or its comment.
            out.push(t);
        }
    }
    out
}

fn count(listing: &str, pred: impl Fn(&str) -> bool) -> usize {
    listing.lines().filter(|l| pred(l)).count()
}

fn storm(backend: &str, subnet: &str) {
    let n = Node::new();
    let bconf = bridge_conf(&n, backend, subnet);
    let start = Barrier::new(N);
    // The portmap steps of the chains start together too: that is where the shared
    // chains are created, and a fresh node is where they are all missing.
    let chained = Barrier::new(N);
    let done: Mutex<Vec<Ctr>> = Mutex::new(Vec::new());
    let wall: Mutex<Option<Instant>> = Mutex::new(None);
    std::thread::scope(|s| {
        for i in 0..N {
            let (n, bconf, start, chained, done, wall) =
                (&n, &bconf, &start, &chained, &done, &wall);
            s.spawn(move || {
                let id = format!("cc-{backend}-{i}");
                let ns = Netns::new();
                serve(&ns, id.clone());
                if start.wait().is_leader() {
                    *wall.lock().unwrap() = Some(Instant::now());
                }
                let br = n.add(Side::Ours, "bridge", bconf, &ns, &id);
                let pm = portmap_conf(n, backend, i, &br);
                chained.wait();
                let out = n.add(Side::Ours, "portmap", &pm, &ns, &id);
                assert_eq!(out, br, "portmap passes the result through");
                let ip = first_ip(&br);
                done.lock().unwrap().push(Ctr {
                    index: i,
                    id,
                    ns,
                    ip,
                    result: br,
                });
            });
        }
    });
    let t_add = wall.lock().unwrap().unwrap().elapsed();
    let mut ctrs = done.into_inner().unwrap();
    ctrs.sort_by_key(|c| c.index);
    assert_eq!(ctrs.len(), N);

    // Reservations: N distinct addresses, exactly the ones handed out.
    let ips: BTreeSet<String> = ctrs.iter().map(|c| c.ip.clone()).collect();
    assert_eq!(ips.len(), N, "duplicate address");
    assert_eq!(
        n.reservations().into_iter().collect::<BTreeSet<_>>(),
        ips,
        "reservations"
    );
    // The bridge has its gateway address once.
    let gw = n
        .env
        .host
        .exec_ok("ip", &["-4", "-o", "addr", "show", "dev", &n.bridge]);
    assert_eq!(gw.lines().count(), 1, "bridge addresses: {gw}");
    let gateway = gw
        .split_whitespace()
        .nth(3)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        links(&n.env.host)
            .iter()
            .filter(|l| l["master"] == n.bridge.as_str())
            .count(),
        N,
        "bridge ports"
    );

    // Every rule, exactly once.
    let nat = n.nat();
    let nft = n.nft();
    let mut lost = Vec::new();
    let mut problems = Vec::new();
    if backend == "iptables" {
        let mut once = |what: &str, pred: &dyn Fn(&str) -> bool| {
            let k = count(&nat, pred);
            if k != 1 {
                problems.push(format!("{what}: {k} (want 1)"));
            }
        };
        once("PREROUTING hook", &|l| {
            l == "-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"
        });
        once("OUTPUT hook", &|l| {
            l == "-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT"
        });
        once("POSTROUTING jump to CNI-HOSTPORT-MASQ", &|l| {
            l.starts_with("-A POSTROUTING ") && l.ends_with("-j CNI-HOSTPORT-MASQ")
        });
        once("mark rule", &|l| l.starts_with("-A CNI-HOSTPORT-SETMARK "));
        once("masquerade rule", &|l| {
            l.starts_with("-A CNI-HOSTPORT-MASQ ")
        });
        let dn_chains = count(&nat, |l| l.starts_with(":CNI-DN-"));
        if dn_chains != N {
            problems.push(format!("CNI-DN chains: {dn_chains} (want {N})"));
        }
        let masq_chains = count(&nat, |l| {
            l.starts_with(":CNI-") && !l.starts_with(":CNI-HOSTPORT-") && !l.starts_with(":CNI-DN-")
        });
        assert_eq!(masq_chains, N, "masquerade chains\n{nat}");
        let entries = count(&nat, |l| l.starts_with("-A CNI-HOSTPORT-DNAT "));
        if entries != 2 * N {
            problems.push(format!(
                "CNI-HOSTPORT-DNAT jumps (one per protocol and container): {entries} (want {})",
                2 * N
            ));
        }
        for (i, c) in ctrs.iter().enumerate() {
            let tag = format!("id: \\\"{}\\\"", c.id);
            let jumps = count(&nat, |l| {
                l.starts_with("-A CNI-HOSTPORT-DNAT ") && l.contains(&tag)
            });
            if jumps != 2 {
                lost.push(format!("{} ({jumps} of 2 DNAT jumps)", c.id));
            }
            for (port, to) in [(TCP_BASE, 80), (UDP_BASE, 53)] {
                let port = port + u16::try_from(i).unwrap();
                let dnat = format!("--dport {port} -j DNAT --to-destination {}:{to}", c.ip);
                assert_eq!(count(&nat, |l| l.ends_with(&dnat)), 1, "{dnat}\n{nat}");
            }
            let masq = format!("-A POSTROUTING -s {}/32 ", c.ip);
            assert_eq!(count(&nat, |l| l.starts_with(&masq)), 1, "{masq}\n{nat}");
        }
    } else {
        assert!(!nat.contains(":CNI-"), "nothing in iptables\n{nat}");
        for hook in ["prerouting", "output"] {
            assert_eq!(
                nft_chain(&nft, "cni_hostport", hook),
                ["fib daddr type local jump hostports_all"],
                "{hook}\n{nft}"
            );
        }
        assert_eq!(
            nft_chain(&nft, "cni_hostport", "hostports_all"),
            ["jump hostip_hostports", "jump hostports"],
            "{nft}"
        );
        assert_eq!(
            nft_chain(&nft, "cni_plugins_masquerade", "postrouting").len(),
            3,
            "{nft}"
        );
        let hostports = nft_chain(&nft, "cni_hostport", "hostports");
        let masquerading = nft_chain(&nft, "cni_hostport", "masquerading");
        let checks = nft_chain(&nft, "cni_plugins_masquerade", "masq_checks");
        assert_eq!(hostports.len(), 2 * N, "{nft}");
        assert_eq!(masquerading.len(), 2 * N, "{nft}");
        assert_eq!(checks.len(), N, "{nft}");
        for c in &ctrs {
            let tag = format!("comment \"{}\"", c.id);
            let dnats = hostports.iter().filter(|l| l.ends_with(&tag)).count();
            if dnats != 2 {
                lost.push(format!("{} ({dnats} of 2 DNAT rules)", c.id));
            }
            let saddr = format!("ip saddr {} ", c.ip);
            assert_eq!(
                checks.iter().filter(|l| l.starts_with(&saddr)).count(),
                1,
                "{saddr}\n{nft}"
            );
        }
    }
    if !lost.is_empty() {
        problems.push(format!(
            "{} of {N} containers lost host-port rules after successful ADDs: {lost:?}",
            lost.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "{backend}: {}\n{nat}\n{nft}",
        problems.join("\n")
    );

    // Real traffic to every host port.
    let t0 = Instant::now();
    for (i, c) in ctrs.iter().enumerate() {
        let tcp = TCP_BASE + u16::try_from(i).unwrap();
        let udp = UDP_BASE + u16::try_from(i).unwrap();
        let via = format!("{gateway}:{tcp}");
        assert_eq!(
            tcp_get(&n.env.host, &via),
            Ok(c.id.clone()),
            "host -> {via}"
        );
        let other = &ctrs[(i + 1) % N].ns;
        assert_eq!(tcp_get(other, &via), Ok(c.id.clone()), "container -> {via}");
        let via = format!("{gateway}:{udp}");
        assert_eq!(
            udp_ask(&n.env.host, "0.0.0.0:0", &via),
            Ok(c.id.clone()),
            "udp host -> {via}"
        );
    }
    let t_traffic = t0.elapsed();

    // CHECK of every attachment, all at once.
    std::thread::scope(|s| {
        for (i, c) in ctrs.iter().enumerate() {
            let (n, bconf) = (&n, &bconf);
            s.spawn(move || {
                n.check(Side::Ours, "bridge", bconf, &c.result, &c.ns, &c.id)
                    .assert_success();
                let pm = portmap_conf(n, backend, i, &c.result);
                n.check(Side::Ours, "portmap", &pm, &c.result, &c.ns, &c.id)
                    .assert_success();
            });
        }
    });

    // N DELs at once (portmap, then bridge, as a runtime deletes a chain).
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for c in &ctrs {
            let (n, bconf) = (&n, &bconf);
            s.spawn(move || {
                n.del(Side::Ours, "portmap", &json!({"cniVersion": "1.0.0", "name": n.name, "type": "portmap", "backend": backend}), Some(&c.ns), &c.id);
                n.del(Side::Ours, "bridge", bconf, Some(&c.ns), &c.id);
            });
        }
    });
    let t_del = t0.elapsed();
    for c in &ctrs {
        n.assert_clean(Some(&c.ns), &c.id);
    }
    let nat = n.nat();
    assert_eq!(
        count(&nat, |l| l.starts_with("-A CNI-HOSTPORT-DNAT ")),
        0,
        "{nat}"
    );
    let nft = n.nft();
    for (table, chain) in [
        ("cni_hostport", "hostports"),
        ("cni_hostport", "masquerading"),
        ("cni_plugins_masquerade", "masq_checks"),
    ] {
        assert!(nft_chain(&nft, table, chain).is_empty(), "{chain}\n{nft}");
    }
    eprintln!(
        "{backend}: {N} chain ADDs at once on a fresh node in {t_add:?}, traffic checked in {t_traffic:?}, {N} chain DELs at once in {t_del:?}"
    );
}

/// [`TRIALS`] storms on fresh nodes with `backend`.
fn storms(backend: &str, subnet: &str) {
    if !require_root() {
        return;
    }
    for _ in 0..TRIALS {
        storm(backend, subnet);
    }
}

#[test]
fn iptables_32_chain_adds_at_once_on_a_fresh_node_keep_every_host_port() {
    storms("iptables", "10.140.0.0/24");
}

#[test]
fn nftables_32_chain_adds_at_once_on_a_fresh_node_keep_every_host_port() {
    storms("nftables", "10.141.0.0/24");
}
