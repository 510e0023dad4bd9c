//! Privileged tests of work skipped natively: the conntrack dump is skipped in a
//! namespace without entries and done once for several ports and both families.
//! Everything runs in private namespaces. In its own test binary, because
//! `conntrack::dumps_requested` counts for the whole process.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "tests"
)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use cni_netfilter::conntrack::{self, Family};
use common::{Ns, require_root};

/// `a` and `b` joined by a veth with static neighbours; conntrack is enabled in `a`
/// only when asked (an nftables `ct state` rule).
fn pair() -> (Ns, Ns) {
    let a = Ns::new();
    let b = Ns::new();
    a.sh(&format!(
        "ip link add va address 02:00:00:00:00:0a type veth peer name vb address 02:00:00:00:00:0b netns {}",
        b.name
    ));
    a.sh(
        "ip addr add 10.78.0.1/24 dev va && ip -6 addr add fd78::1/64 dev va nodad && \
         ip link set va up && \
         ip neigh add 10.78.0.2 lladdr 02:00:00:00:00:0b dev va nud permanent && \
         ip -6 neigh add fd78::2 lladdr 02:00:00:00:00:0b dev va nud permanent",
    );
    b.sh(
        "ip addr add 10.78.0.2/24 dev vb && ip -6 addr add fd78::2/64 dev vb nodad && \
         ip link set vb up && \
         ip neigh add 10.78.0.1 lladdr 02:00:00:00:00:0a dev vb nud permanent && \
         ip -6 neigh add fd78::1 lladdr 02:00:00:00:00:0a dev vb nud permanent",
    );
    (a, b)
}

fn send_udp(b: &Ns, dst: &str) {
    let dst: SocketAddr = dst.parse().unwrap();
    b.run(|| {
        let any: SocketAddr = if dst.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        UdpSocket::bind(any).unwrap().send_to(b"ping", dst).unwrap();
    });
}

#[test]
fn conntrack_dump_skipped_without_entries_and_done_once_for_both_families() {
    if require_root("conntrack_dump_skipped_without_entries").is_none() {
        return;
    }
    let (a, b) = pair();
    let both = [Family::V4, Family::V6];
    let ports = [8053, 8054];

    // Conntrack not in use in `a`: no entry, no dump.
    assert!(a.run(conntrack::namespace_is_empty));
    let before = conntrack::dumps_requested();
    assert_eq!(
        a.run(|| conntrack::delete_udp_flows_to_ports(&both, &ports))
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
    assert!(a.run(conntrack::namespace_is_empty));

    a.sh("nft 'add table inet cttest; \
         add chain inet cttest pre { type filter hook prerouting priority 0; }; \
         add rule inet cttest pre ct state new counter'");
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
    while a.run(conntrack::namespace_is_empty) {
        assert!(Instant::now() < deadline, "no conntrack entry appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Wait until all five are there (packets cross the veth asynchronously).
    let count = || {
        a.sh("cat /proc/sys/net/netfilter/nf_conntrack_count")
            .trim()
            .parse::<u32>()
            .unwrap()
    };
    while count() < 5 {
        assert!(Instant::now() < deadline, "{} entries", count());
        std::thread::sleep(Duration::from_millis(20));
    }

    // Both families and both ports: deleted with one dump.
    let before = conntrack::dumps_requested();
    let deleted = a
        .run(|| conntrack::delete_udp_flows_to_ports(&both, &ports))
        .unwrap();
    assert_eq!(deleted, 4);
    assert_eq!(conntrack::dumps_requested(), before + 1, "one dump");
    assert!(
        a.run(|| conntrack::udp_flows_to_port(Family::V4, 9999))
            .unwrap()
            .len()
            == 1,
        "other ports stay"
    );
    for family in both {
        for port in ports {
            assert!(
                a.run(|| conntrack::udp_flows_to_port(family, port))
                    .unwrap()
                    .is_empty()
            );
        }
    }
}
