//! Storm: 200 ADD and DEL operations in parallel across two networks sharing
//! one bridge, some attachments then lost by the "runtime" (netns deleted, no DEL), then
//! GC with the list of valid attachments: the IPAM stores, the bridge ports and veths,
//! the iptables masquerade chains, the nftables masquerade rules and the spoof-check
//! chains must match exactly the attachments that should exist. Finally everything is
//! deleted and nothing is left.
//!
//! Network A: 10.120.0.0/22, gateway on the bridge, masquerade through iptables.
//! Network B: 10.124.0.0/22, no gateway, masquerade through nftables, MAC spoof check.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use cni_testsupport::{Netns, PluginOutput, node};
use node::{Node, Side, first_ip, links};
use serde_json::{Value, json};

const CONTAINERS: usize = 120; // 120 ADDs
const DELETED: usize = 80; // + 80 DELs = 200 operations
const LOST: usize = 10; // of the 40 survivors, lost without DEL (GC must collect them)
const WORKERS: usize = 10;

struct Net {
    name: String,
    conf: Value,
}

struct Attachment {
    id: String,
    net: usize,
    ctr: Option<Netns>,
    result: Value,
}

/// The first address of each of `attachments` on network `k`.
fn ips_on<'a>(attachments: impl Iterator<Item = &'a Attachment>, k: usize) -> Vec<String> {
    attachments
        .filter(|a| a.net == k)
        .map(|a| first_ip(&a.result))
        .collect()
}

fn nets(n: &Node) -> Vec<Net> {
    let mut a = n.bridge_conf(
        "1.1.0",
        &["10.120.0.0/22"],
        json!({"isGateway": true, "ipMasq": true, "ipMasqBackend": "iptables"}),
    );
    let mut b = n.bridge_conf(
        "1.1.0",
        &["10.124.0.0/22"],
        json!({"ipMasq": true, "ipMasqBackend": "nftables", "macspoofchk": true}),
    );
    let (na, nb) = (format!("{}-a", n.name), format!("{}-b", n.name));
    a["name"] = json!(na);
    b["name"] = json!(nb);
    vec![Net { name: na, conf: a }, Net { name: nb, conf: b }]
}

/// Runs `cmd`, retrying (like a runtime) while the plugin answers code 11.
fn run_retrying(
    n: &Node,
    cmd: &str,
    conf: &Value,
    ctr: Option<&Netns>,
    id: &str,
    retries: &AtomicUsize,
) -> PluginOutput {
    for _ in 0..10 {
        let out = n.exec(Side::Ours, "bridge", cmd, conf, ctr, id);
        if out.error_code() != Some(11) {
            return out;
        }
        retries.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{cmd} {id}: still code 11 after 10 tries");
}

fn reservations(n: &Node, net: &str) -> BTreeSet<String> {
    std::fs::read_dir(n.env.data_path().join(net))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.parse::<std::net::IpAddr>().is_ok())
        .collect()
}

#[test]
fn storm_of_200_operations_then_gc_matches_the_valid_attachments() {
    let Some(n) = Node::root() else { return };
    let nets = nets(&n);
    let next = AtomicUsize::new(0);
    let retries = AtomicUsize::new(0);
    let done: Mutex<Vec<Attachment>> = Mutex::new(Vec::new());
    let t0 = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= CONTAINERS {
                        break;
                    }
                    let net = i % 2;
                    let id = format!("st-{i}");
                    let ctr = Netns::new();
                    let out = run_retrying(&n, "ADD", &nets[net].conf, Some(&ctr), &id, &retries);
                    out.assert_success();
                    let result = out.json();
                    // Two of every three attachments are deleted right away.
                    if !i.is_multiple_of(3) {
                        run_retrying(&n, "DEL", &nets[net].conf, Some(&ctr), &id, &retries)
                            .assert_success();
                        continue;
                    }
                    done.lock().unwrap().push(Attachment {
                        id,
                        net,
                        ctr: Some(ctr),
                        result,
                    });
                }
            });
        }
    });
    let mut live = done.into_inner().unwrap();
    assert_eq!(live.len(), CONTAINERS - DELETED);
    eprintln!(
        "storm: 200 operations in {:?} ({} retries on code 11)",
        t0.elapsed(),
        retries.load(Ordering::Relaxed)
    );

    // Unique addresses per network.
    for (k, net) in nets.iter().enumerate() {
        let ips = ips_on(live.iter(), k);
        let set: BTreeSet<String> = ips.iter().cloned().collect();
        assert_eq!(ips.len(), set.len(), "{}: duplicate address", net.name);
        assert_eq!(
            reservations(&n, &net.name),
            set,
            "{}: store after the storm",
            net.name
        );
    }

    // The runtime loses some attachments: the netns goes away, no DEL is sent.
    live.sort_by_key(|a| a.id.clone());
    for a in live.iter_mut().take(LOST) {
        a.ctr = None;
    }
    n.wait_veths_gone_but(live.iter().filter(|a| a.ctr.is_some()).count());

    // GC each network with its valid attachments.
    for (k, net) in nets.iter().enumerate() {
        let valid: Vec<Value> = live
            .iter()
            .filter(|a| a.net == k && a.ctr.is_some())
            .map(|a| json!({"containerID": a.id, "ifname": "eth0"}))
            .collect();
        let mut gc = net.conf.clone();
        gc["cni.dev/valid-attachments"] = json!(valid);
        let out = n.run(
            Side::Ours,
            "bridge",
            &n.call(Side::Ours, "GC", &gc, None, "").ifname(""),
        );
        out.assert_success();
    }
    let valid: Vec<&Attachment> = live.iter().filter(|a| a.ctr.is_some()).collect();
    assert_eq!(valid.len(), CONTAINERS - DELETED - LOST);

    // Stores.
    for (k, net) in nets.iter().enumerate() {
        let want: BTreeSet<String> = ips_on(valid.iter().copied(), k).into_iter().collect();
        assert_eq!(
            reservations(&n, &net.name),
            want,
            "{}: store after GC",
            net.name
        );
    }
    // Links: exactly the valid host veths, all ports of the bridge.
    let host_links = links(&n.env.host);
    let veths: BTreeMap<String, Value> = host_links
        .iter()
        .filter(|l| l["ifname"].as_str().is_some_and(|x| x.starts_with("veth")))
        .map(|l| (l["ifname"].as_str().unwrap().to_string(), l.clone()))
        .collect();
    let want_veths: BTreeSet<String> = valid
        .iter()
        .map(|a| {
            a.result["interfaces"][1]["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        veths.keys().cloned().collect::<BTreeSet<_>>(),
        want_veths,
        "host veths"
    );
    assert!(
        veths.values().all(|l| l["master"] == n.bridge.as_str()),
        "all enslaved"
    );
    // iptables (network A): one chain and one POSTROUTING jump per valid attachment.
    let nat = n.nat();
    let a_valid: Vec<&&Attachment> = valid.iter().filter(|a| a.net == 0).collect();
    let chains = nat
        .lines()
        .filter(|l| l.starts_with(":CNI-") && !l.starts_with(":CNI-HOSTPORT"))
        .count();
    assert_eq!(chains, a_valid.len(), "masquerade chains\n{nat}");
    for a in &a_valid {
        let ip = first_ip(&a.result);
        assert!(
            nat.contains(&format!("-A POSTROUTING -s {ip}/32")),
            "{ip}\n{nat}"
        );
    }
    let jumps = nat
        .lines()
        .filter(|l| l.starts_with("-A POSTROUTING -s "))
        .count();
    assert_eq!(jumps, a_valid.len(), "{nat}");
    // nftables (network B): one masquerade rule per valid attachment, two spoof-check
    // chains each.
    let nft = n.nft();
    let b_valid: Vec<&&Attachment> = valid.iter().filter(|a| a.net == 1).collect();
    let masq_rules = nft
        .lines()
        .filter(|l| l.contains("masquerade") && l.contains(&nets[1].name))
        .count();
    assert_eq!(masq_rules, b_valid.len(), "{nft}");
    for a in &b_valid {
        assert!(
            nft.contains(&format!("ip saddr {} ", first_ip(&a.result))),
            "{nft}"
        );
        assert!(
            nft.contains(&format!("chain cni-br-iface-{}-eth0 ", a.id)),
            "{nft}"
        );
    }
    let spoof_chains = nft
        .lines()
        .filter(|l| l.trim_start().starts_with("chain cni-br-iface-"))
        .count();
    assert_eq!(spoof_chains, 2 * b_valid.len(), "{nft}");

    // DEL everything that is left; nothing remains.
    for a in &valid {
        n.del(
            Side::Ours,
            "bridge",
            &nets[a.net].conf,
            a.ctr.as_ref(),
            &a.id,
        );
    }
    for net in &nets {
        assert_eq!(reservations(&n, &net.name), BTreeSet::new());
    }
    n.assert_clean(None, "st-0");
    assert!(!n.nft().contains("masquerade comment"));
}
