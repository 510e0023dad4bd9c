//! Privileged tests of the native conntrack flush (`cni_netfilter::conntrack`) on real
//! conntrack tables: two private namespaces joined by a veth, connection tracking enabled
//! in namespace `a` by an nftables `ct state` rule, UDP and TCP flows sent from `b` to `a`.
//! Nothing runs in the root namespace; both namespaces are deleted on drop.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "tests"
)]

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use cni_netfilter::conntrack::{self, Family, UdpFlow};
use cni_testsupport::{Netns, require_root};

/// Port whose flows are deleted.
const PORT: u16 = 8053;
/// Another port whose flows must survive.
const OTHER: u16 = 8054;

/// `a` (conntrack enabled) and `b`, joined by veth `va`/`vb` with static neighbours so
/// that no packet waits for (or is dropped during) address resolution.
struct Pair {
    a: Netns,
    b: Netns,
}

impl Pair {
    fn new() -> Pair {
        let (a, b) = cni_testsupport::veth_pair();
        // Any rule needing conntrack activates the hooks in this namespace only.
        cni_testsupport::enable_conntrack(&a);
        Pair { a, b }
    }

    fn addr_a(family: Family) -> IpAddr {
        match family {
            Family::V4 => "10.78.0.1".parse().unwrap(),
            Family::V6 => "fd78::1".parse().unwrap(),
        }
    }

    fn addr_b(family: Family) -> IpAddr {
        match family {
            Family::V4 => "10.78.0.2".parse().unwrap(),
            Family::V6 => "fd78::2".parse().unwrap(),
        }
    }

    /// Sends one datagram from `b` (source port `sport`, 0 = ephemeral) to `a`:`dport`
    /// per entry of `sports`; returns the source addresses used. The sockets stay open
    /// until all are sent, so ephemeral ports are distinct (one flow each).
    fn udp_from_b(&self, family: Family, sports: &[u16], dport: u16) -> Vec<SocketAddr> {
        let dst = SocketAddr::new(Pair::addr_a(family), dport);
        let src_ip = Pair::addr_b(family);
        self.b.run_in(|| {
            let sockets: Vec<UdpSocket> = sports
                .iter()
                .map(|&sport| {
                    let s = UdpSocket::bind(SocketAddr::new(src_ip, sport)).unwrap();
                    s.send_to(b"ping", dst).unwrap();
                    s
                })
                .collect();
            sockets.iter().map(|s| s.local_addr().unwrap()).collect()
        })
    }

    /// Our listing, inside `a`.
    fn flows(&self, family: Family, port: u16) -> Vec<UdpFlow> {
        self.a
            .run_in(|| conntrack::udp_flows_to_port(family, port))
            .unwrap()
    }

    /// Waits until our listing of `a` shows exactly `n` flows (packets cross the veth
    /// asynchronously); returns them.
    fn wait_flows(&self, family: Family, port: u16, n: usize) -> Vec<UdpFlow> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let flows = self.flows(family, port);
            if flows.len() == n || Instant::now() > deadline {
                assert_eq!(flows.len(), n, "{family} udp flows to {port}: {flows:?}");
                return flows;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The conntrack CLI's view inside `a`: the `src=... sport=...` of each UDP entry of
    /// `family` to `port`, or `None` when conntrack-tools is not installed.
    fn cli_flows(&self, family: Family, port: u16) -> Option<BTreeSet<String>> {
        let installed = Command::new("sh")
            .args(["-c", "command -v conntrack"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            return None;
        }
        let out = self.a.sh(&format!(
            "conntrack -L -f {family} -p udp --orig-port-dst {port} 2>/dev/null"
        ));
        Some(
            out.lines()
                .filter(|l| l.starts_with("udp"))
                .map(|l| {
                    let field = |key: &str| {
                        l.split_whitespace()
                            .find_map(|w| w.strip_prefix(key))
                            .unwrap()
                            .to_owned()
                    };
                    format!("{}:{}", field("src="), field("sport="))
                })
                .collect(),
        )
    }

    /// The number of TCP entries of `family` to `port` per the conntrack CLI (`None`
    /// without conntrack-tools).
    fn cli_tcp_count(&self, family: Family, port: u16) -> Option<usize> {
        Command::new("sh")
            .args(["-c", "command -v conntrack"])
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        let out = self.a.sh(&format!(
            "conntrack -L -f {family} -p tcp --orig-port-dst {port} 2>/dev/null"
        ));
        Some(out.lines().filter(|l| l.starts_with("tcp")).count())
    }
}

fn key(flow: &UdpFlow) -> String {
    format!("{}:{}", flow.src.ip(), flow.src.port())
}

fn other(family: Family) -> Family {
    match family {
        Family::V4 => Family::V6,
        Family::V6 => Family::V4,
    }
}

/// Three UDP flows to PORT are deleted; UDP to OTHER (including one whose *source* port is
/// PORT), TCP to PORT and the other family's UDP to PORT survive.
fn deletes_only_udp_flows_to_the_port(family: Family) {
    let p = Pair::new();
    // Background that must survive.
    let listener =
        p.a.run_in(|| TcpListener::bind(SocketAddr::new(Pair::addr_a(family), PORT)).unwrap());
    let dst = SocketAddr::new(Pair::addr_a(family), PORT);
    let tcp = p.b.run_in(|| TcpStream::connect(dst).unwrap());
    let (_accepted, _) = listener.accept().unwrap();
    p.udp_from_b(family, &[0, PORT], OTHER);
    p.udp_from_b(other(family), &[0], PORT);
    // The flows to delete.
    let srcs = p.udp_from_b(family, &[0, 0, 0], PORT);

    let flows = p.wait_flows(family, PORT, 3);
    let seen: BTreeSet<String> = flows.iter().map(key).collect();
    let sent: BTreeSet<String> = srcs
        .iter()
        .map(|s| format!("{}:{}", s.ip(), s.port()))
        .collect();
    assert_eq!(seen, sent);
    for f in &flows {
        assert_eq!(f.dst, dst);
    }
    if let Some(cli) = p.cli_flows(family, PORT) {
        assert_eq!(cli, seen, "conntrack -L disagrees with our dump");
    } else {
        println!("conntrack-tools not installed: no cross-check with conntrack -L");
    }
    p.wait_flows(family, OTHER, 2);
    p.wait_flows(other(family), PORT, 1);
    let tcp_before = p.cli_tcp_count(family, PORT);
    if let Some(n) = tcp_before {
        assert_eq!(n, 1, "one tcp entry to the port");
    }

    let deleted =
        p.a.run_in(|| conntrack::delete_udp_flows_to_port(family, PORT))
            .unwrap();
    assert_eq!(deleted, 3);

    assert!(p.flows(family, PORT).is_empty());
    if let Some(cli) = p.cli_flows(family, PORT) {
        assert!(cli.is_empty(), "conntrack -L still lists {cli:?}");
    }
    assert_eq!(p.flows(family, OTHER).len(), 2, "udp to another port");
    let survivor = p.flows(family, OTHER);
    assert!(
        survivor.iter().any(|f| f.src.port() == PORT),
        "source port == PORT is not a match: {survivor:?}"
    );
    assert_eq!(p.flows(other(family), PORT).len(), 1, "other family");
    assert_eq!(p.cli_tcp_count(family, PORT), tcp_before, "tcp to the port");
    // Nothing left: a second flush deletes nothing and succeeds.
    assert_eq!(
        p.a.run_in(|| conntrack::delete_udp_flows_to_port(family, PORT))
            .unwrap(),
        0
    );
    // A namespace without connection tracking has an empty table.
    assert_eq!(
        p.b.run_in(|| conntrack::delete_udp_flows_to_port(family, PORT))
            .unwrap(),
        0
    );
    drop(tcp);
}

#[test]
fn ipv4_deletes_only_udp_flows_to_the_port() {
    if !require_root() {
        return;
    }
    deletes_only_udp_flows_to_the_port(Family::V4);
}

#[test]
fn ipv6_deletes_only_udp_flows_to_the_port() {
    if !require_root() {
        return;
    }
    deletes_only_udp_flows_to_the_port(Family::V6);
}

/// Many entries (multi-datagram dump): all N flows to PORT are deleted, the N flows to
/// OTHER stay; two flushes racing on the same table both succeed (the loser of each race
/// gets ENOENT, which is not an error) and together delete each entry exactly once.
#[test]
fn many_flows_and_concurrent_flushes() {
    if !require_root() {
        return;
    }
    const N: usize = 2000;
    let p = Pair::new();
    let ephemeral = vec![0u16; N];
    for family in Family::ALL {
        p.udp_from_b(family, &ephemeral, PORT);
        p.udp_from_b(family, &ephemeral, OTHER);
        p.wait_flows(family, PORT, N);
        p.wait_flows(family, OTHER, N);
    }

    let start = Instant::now();
    let deleted =
        p.a.run_in(|| conntrack::delete_udp_flows_to_port(Family::V4, PORT))
            .unwrap();
    let took = start.elapsed();
    println!(
        "deleted {deleted} ipv4 udp entries in {took:?} (table of {} entries)",
        4 * N
    );
    assert_eq!(deleted, N);
    assert!(p.flows(Family::V4, PORT).is_empty());
    assert_eq!(p.flows(Family::V4, OTHER).len(), N);
    assert_eq!(p.flows(Family::V6, PORT).len(), N);
    // The common case: nothing to delete in a populated table (dump cost only).
    let start = Instant::now();
    let none =
        p.a.run_in(|| conntrack::delete_udp_flows_to_port(Family::V4, PORT))
            .unwrap();
    println!(
        "no-match ipv4 flush took {:?} (table of {} entries)",
        start.elapsed(),
        3 * N
    );
    assert_eq!(none, 0);

    let (one, two) = std::thread::scope(|s| {
        let one = s.spawn(|| {
            p.a.run_in(|| conntrack::delete_udp_flows_to_port(Family::V6, PORT))
        });
        let two = s.spawn(|| {
            p.a.run_in(|| conntrack::delete_udp_flows_to_port(Family::V6, PORT))
        });
        (one.join().unwrap(), two.join().unwrap())
    });
    let (one, two) = (one.unwrap(), two.unwrap());
    println!("concurrent ipv6 flushes deleted {one} + {two}");
    assert_eq!(one + two, N);
    assert!(p.flows(Family::V6, PORT).is_empty());
    assert_eq!(p.flows(Family::V6, OTHER).len(), N);
}
