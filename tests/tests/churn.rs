//! Churn: worker threads push many containers through ADD -> CHECK -> DEL rounds of the
//! chain bridge (`ipMasq`) + host-local + portmap (a TCP and a UDP host port), on two
//! dual-stack networks at once (one per netfilter backend, each with its own bridge), starting
//! from a fresh node. At random moments bridge or portmap is SIGKILLed in the middle of
//! an ADD or DEL; the "runtime" then DELs the attachment, half of the time after the
//! container namespace is gone (DEL without `CNI_NETNS`), as it also does in some
//! normal rounds.
//!
//! At the end: every operation that was not killed succeeded, nothing is left (host
//! veths, container interfaces, reservations, per-container iptables chains and rules,
//! nftables rules), the shared hook rules exist exactly once, and a fresh container on
//! each network is reachable through its host port.
//!
//! `make test` runs a short version; `make churn` the long one, sized by
//! `CHURN_WORKERS` (threads), `CHURN_ROUNDS` (containers per worker) and `CHURN_SEED`.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cni_testsupport::{Netns, node, require_root, serve, tcp_get, udp_ask};
use node::{Node, Side, links, run_and_kill, save};
use serde_json::{Value, json};

/// Short-run defaults (`make test`).
const WORKERS: usize = 6;
const ROUNDS: usize = 12;

struct Net {
    backend: &'static str,
    bridge: Value,
    gateway: &'static str,
}

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: reproducible from `CHURN_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn nets(n: &Node) -> Vec<Net> {
    let mk = |backend: &'static str, bridge: &str, subnet: &str, subnet6: &str, gateway| {
        let mut c = n.bridge_conf(
            "1.0.0",
            &[subnet, subnet6],
            json!({"isGateway": true, "ipMasq": true, "ipMasqBackend": backend}),
        );
        c["name"] = json!(format!("{}-{backend}", n.name));
        c["bridge"] = json!(bridge);
        Net {
            backend,
            bridge: c,
            gateway,
        }
    };
    vec![
        mk(
            "iptables",
            "cnich0",
            "10.150.0.0/20",
            "fd00:150::/64",
            "10.150.0.1",
        ),
        mk(
            "nftables",
            "cnich1",
            "10.151.0.0/20",
            "fd00:151::/64",
            "10.151.0.1",
        ),
    ]
}

fn portmap_conf(net: &Net, tcp: u16, udp: u16, prev: Option<&Value>) -> Value {
    let mut c = json!({
        "cniVersion": "1.0.0", "name": net.bridge["name"], "type": "portmap",
        "backend": net.backend,
        "runtimeConfig": {"portMappings": [
            {"hostPort": tcp, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": udp, "containerPort": 53, "protocol": "udp"}
        ]},
    });
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    c
}

#[derive(Default)]
struct Stats {
    ops: AtomicUsize,
    kills: AtomicUsize,
    no_netns_dels: AtomicUsize,
}

/// The runtime's DEL of the chain (portmap, then bridge); both must succeed.
fn del_chain(n: &Node, net: &Net, pm: &Value, ctr: Option<&Netns>, id: &str, st: &Stats) {
    n.del(Side::Ours, "portmap", pm, ctr, id);
    n.del(Side::Ours, "bridge", &net.bridge, ctr, id);
    st.ops.fetch_add(2, Ordering::Relaxed);
    match ctr {
        Some(c) => assert!(
            links(c).iter().all(|l| l["ifname"] != "eth0"),
            "{id}: container interface left after DEL"
        ),
        None => {
            st.no_netns_dels.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One container's life. With `kill_at` = Some(step), that step (0: bridge ADD,
/// 1: portmap ADD, 2: portmap DEL, 3: bridge DEL) is SIGKILLed after `delay`, and the
/// runtime's DEL follows.
fn round(n: &Node, net: &Net, id: &str, port: u16, rng: &mut Rng, st: &Stats) {
    let ctr = Netns::new();
    let (tcp, udp) = (port, port + 1);
    let kill_at = (rng.below(4) == 0).then(|| rng.below(4));
    let delay = Duration::from_millis(rng.below(40));
    let without_netns = rng.below(2) == 0;
    let bare_pm = portmap_conf(net, tcp, udp, None);
    let kill = |plugin: &str, cmd: &str, conf: &Value| {
        let call = n.call(Side::Ours, cmd, conf, Some(&ctr), id);
        if run_and_kill(n, plugin, &call, delay) {
            st.kills.fetch_add(1, Ordering::Relaxed);
        }
    };
    let finish = |ctr: Netns| {
        if without_netns {
            drop(ctr);
            del_chain(n, net, &bare_pm, None, id, st);
        } else {
            del_chain(n, net, &bare_pm, Some(&ctr), id, st);
        }
    };
    if kill_at == Some(0) {
        kill("bridge", "ADD", &net.bridge);
        return finish(ctr);
    }
    let br = n.add(Side::Ours, "bridge", &net.bridge, &ctr, id);
    let pm = portmap_conf(net, tcp, udp, Some(&br));
    if kill_at == Some(1) {
        kill("portmap", "ADD", &pm);
        return finish(ctr);
    }
    n.add(Side::Ours, "portmap", &pm, &ctr, id);
    n.check(Side::Ours, "bridge", &net.bridge, &br, &ctr, id)
        .assert_success();
    n.check(Side::Ours, "portmap", &pm, &br, &ctr, id)
        .assert_success();
    st.ops.fetch_add(4, Ordering::Relaxed);
    match kill_at {
        Some(2) => kill("portmap", "DEL", &pm),
        Some(3) => {
            n.del(Side::Ours, "portmap", &pm, Some(&ctr), id);
            kill("bridge", "DEL", &net.bridge);
        }
        _ => {}
    }
    finish(ctr);
}

fn assert_nothing_left(n: &Node, nets: &[Net]) {
    n.wait_veths_gone();
    assert_eq!(n.host_veths(), Vec::<String>::new(), "host veths left");
    for net in nets {
        let store = n.env.data_path().join(net.bridge["name"].as_str().unwrap());
        let left: Vec<String> = std::fs::read_dir(&store)
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|f| f.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(left, Vec::<String>::new(), "{} reservations", net.backend);
    }
    let nat = n.nat();
    for line in nat.lines() {
        let per_container = line.starts_with(":CNI-") && !line.starts_with(":CNI-HOSTPORT-");
        assert!(!per_container, "per-container chain left: {line}\n{nat}");
        assert!(
            !line.starts_with("-A CNI-HOSTPORT-DNAT ") && !line.starts_with("-A POSTROUTING -s "),
            "per-container rule left: {line}\n{nat}"
        );
    }
    for tool in ["iptables-save", "ip6tables-save"] {
        let table = save(&n.env.host, tool);
        for hook in ["PREROUTING", "OUTPUT"] {
            let jump = format!("-A {hook} -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT");
            assert_eq!(
                table.lines().filter(|l| *l == jump).count(),
                1,
                "{tool}: {hook} hook\n{table}"
            );
        }
    }
    let nft = n.nft();
    assert!(!nft.contains("comment \"ch-"), "nft rule left\n{nft}");
    assert!(!nft.contains("id: ch-"), "nft masquerade rule left\n{nft}");
    assert!(
        !nft.contains("cni-br-iface"),
        "spoof-check chain left\n{nft}"
    );
}

/// A fresh container on `net` answers through its host ports, then goes away cleanly.
fn fresh_container_reachable(n: &Node, net: &Net) {
    let ctr = Netns::new();
    let id = format!("fresh-{}", net.backend);
    serve(&ctr, id.clone());
    let br = n.add(Side::Ours, "bridge", &net.bridge, &ctr, &id);
    let pm = portmap_conf(net, 18080, 18053, Some(&br));
    n.add(Side::Ours, "portmap", &pm, &ctr, &id);
    let tcp = format!("{}:18080", net.gateway);
    assert_eq!(tcp_get(&n.env.host, &tcp), Ok(id.clone()), "{tcp}");
    let udp = format!("{}:18053", net.gateway);
    assert_eq!(
        udp_ask(&n.env.host, "0.0.0.0:0", &udp),
        Ok(id.clone()),
        "{udp}"
    );
    n.del(Side::Ours, "portmap", &pm, Some(&ctr), &id);
    n.del(Side::Ours, "bridge", &net.bridge, Some(&ctr), &id);
    assert!(
        links(&ctr).iter().all(|l| l["ifname"] != "eth0"),
        "container interface left"
    );
}

#[test]
fn churn_of_add_check_del_with_kills_on_both_backends_leaves_nothing() {
    if !require_root() {
        return;
    }
    let workers = usize::try_from(env_or("CHURN_WORKERS", WORKERS as u64)).unwrap();
    let rounds = usize::try_from(env_or("CHURN_ROUNDS", ROUNDS as u64)).unwrap();
    let seed = env_or(
        "CHURN_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    ) | 1;
    assert!(workers * rounds * 2 < 20000, "host ports 20000-60000");
    let n = Node::new();
    let nets = nets(&n);
    let st = Stats::default();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for w in 0..workers {
            let (n, nets, st) = (&n, &nets, &st);
            s.spawn(move || {
                let mut rng =
                    Rng(seed.wrapping_add((w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1);
                for r in 0..rounds {
                    let net = &nets[(w + r) % 2];
                    let id = format!("ch-{w}-{r}");
                    let port = 20000 + u16::try_from(2 * (w * rounds + r)).unwrap();
                    round(n, net, &id, port, &mut rng, st);
                }
            });
        }
    });
    let wall = t0.elapsed();
    assert_nothing_left(&n, &nets);
    for net in &nets {
        fresh_container_reachable(&n, net);
    }
    assert_nothing_left(&n, &nets);
    eprintln!(
        "churn (seed {seed}): {workers} workers x {rounds} rounds = {} containers, {} operations, {} kills, {} DELs without netns, {wall:?}",
        workers * rounds,
        st.ops.load(Ordering::Relaxed),
        st.kills.load(Ordering::Relaxed),
        st.no_netns_dels.load(Ordering::Relaxed),
    );
}
