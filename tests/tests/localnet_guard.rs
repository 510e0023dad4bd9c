//! The localnet guard: with `route_localnet=1` on the bridge (set by portmap for
//! host-to-container traffic through `127.0.0.1:<hostPort>`), a container must still not
//! reach services the host binds to 127.0.0.1 (the CVE-2020-8558 class).
//!
//! Topology (all created here): a "host" namespace with bridge `br0` (10.97.0.1/24) and
//! containers attached by veth with 10.97.0.x, default route via the bridge. The host runs
//! a TCP and a UDP service on 127.0.0.1 only. The attacks, from a container:
//! * a crafted frame through an `AF_PACKET` socket (what a process with only `CAP_NET_RAW`
//!   can send): UDP to 127.0.0.1 in an Ethernet frame to the gateway's MAC;
//! * a route: `127.0.0.1/32 via` the gateway (with 127.0.0.1 removed from the
//!   container's `lo`, so that it is not local there, and `route_localnet` on its `eth0`,
//!   all of which root in the container may do), then an ordinary TCP connect.
//!
//! With our portmap both get no answer (both backends) while the host still reaches the
//! container through `127.0.0.1:<hostPort>`; with the reference portmap (Debian v1.1.1,
//! iptables only) the same attacks reach the host's services, which proves the test.

#![allow(
    clippy::unwrap_used,
    clippy::print_stdout,
    missing_docs,
    reason = "tests"
)]

use std::io::Write;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cni_testsupport::{Netns, PluginOutput, TestEnv, reference_bin, require_root, serve, tcp_get};

const GATEWAY: &str = "10.97.0.1";
const SECRET_TCP: &str = "127.0.0.1:9999";
const SECRET_UDP_PORT: u16 = 9998;
const GUARD_COMMENT: &str = "CNI portfwd localnet guard";

struct Topo {
    env: TestEnv,
    containers: Vec<Netns>,
}

impl Topo {
    /// A topology with secrets served on the host's localhost, a server container
    /// (`.2`, answering "A") and an attacker container (`.3`); returns their indices.
    fn with_server_and_attacker() -> (Self, Secrets, usize, usize) {
        let mut t = Topo::new();
        let secrets = serve_secrets(&t.env.host);
        let server = t.container(2);
        let attacker = t.container(3);
        serve(&t.containers[server], "A");
        (t, secrets, server, attacker)
    }

    fn new() -> Topo {
        let env = TestEnv::with_host_setup(&[
            "ip link set lo up",
            "ip link add br0 type bridge",
            &format!("ip addr add {GATEWAY}/24 dev br0"),
            "ip link set br0 up",
            "sysctl -qw net.ipv4.ip_forward=1",
            "sysctl -qw net.ipv4.conf.br0.route_localnet=0",
        ]);
        Topo {
            env,
            containers: Vec::new(),
        }
    }

    /// Container `n` with 10.97.0.<n>/24 on `eth0`.
    fn container(&mut self, n: u8) -> usize {
        let c = Netns::new();
        let veth = format!("vg{n}");
        self.env.host.exec_ok(
            "sh",
            &[
                "-c",
                &format!(
                    "ip link add {veth} type veth peer name eth0 netns {} && ip link set {veth} master br0 up",
                    c.name()
                ),
            ],
        );
        c.exec_ok(
            "sh",
            &[
                "-c",
                &format!(
                    "ip addr add 10.97.0.{n}/24 dev eth0 && ip link set eth0 up && ip route add default via {GATEWAY}"
                ),
            ],
        );
        self.containers.push(c);
        self.containers.len() - 1
    }

    fn portmap(&self, bin: &Path, command: &str, cid: &str, i: usize, conf: &str) -> PluginOutput {
        let call = self
            .env
            .call(command, conf)
            .container_id(cid)
            .netns(self.containers[i].path())
            .ifname("eth0");
        call.run_in(&self.env.host, bin)
    }
}

fn conf(backend: &str, ip_last: u8) -> String {
    format!(
        r#"{{"cniVersion":"0.4.0","name":"lgnet","type":"portmap","backend":"{backend}",
        "runtimeConfig":{{"portMappings":[{{"hostPort":8080,"containerPort":80,"protocol":"tcp"}}]}},
        "prevResult":{{"cniVersion":"0.4.0","interfaces":[{{"name":"eth0","sandbox":"/x"}}],
        "ips":[{{"version":"4","interface":0,"address":"10.97.0.{ip_last}/24","gateway":"{GATEWAY}"}}]}}}}"#
    )
}

/// What the host's 127.0.0.1-only services received.
#[derive(Clone, Default)]
struct Secrets {
    tcp_accepted: Arc<AtomicUsize>,
    udp_received: Arc<AtomicUsize>,
}

/// Starts a TCP service on 127.0.0.1:9999 answering "secret" and a UDP service on
/// 127.0.0.1:9998 counting datagrams, inside the host namespace.
fn serve_secrets(host: &Netns) -> Secrets {
    let secrets = Secrets::default();
    let (tcp, udp) = host.run_in(|| {
        (
            TcpListener::bind(SECRET_TCP).unwrap(),
            UdpSocket::bind((Ipv4Addr::LOCALHOST, SECRET_UDP_PORT)).unwrap(),
        )
    });
    let accepted = Arc::clone(&secrets.tcp_accepted);
    std::thread::spawn(move || {
        for mut s in tcp.incoming().flatten() {
            accepted.fetch_add(1, Ordering::SeqCst);
            let _ = s.write_all(b"secret");
        }
    });
    let received = Arc::clone(&secrets.udp_received);
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while udp.recv_from(&mut buf).is_ok() {
            received.fetch_add(1, Ordering::SeqCst);
        }
    });
    secrets
}

fn mac_of(ns: &Netns, dev: &str) -> [u8; 6] {
    let text = ns.exec_ok("cat", &[&format!("/sys/class/net/{dev}/address")]);
    let mut mac = [0u8; 6];
    for (b, part) in mac.iter_mut().zip(text.trim().split(':')) {
        *b = u8::from_str_radix(part, 16).unwrap();
    }
    mac
}

/// The Internet checksum of an IPv4 header.
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame carrying UDP from `src`:40000 to 127.0.0.1:`port`.
fn udp_to_localhost_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv4Addr, port: u16) -> Vec<u8> {
    let payload = b"let me in";
    let udp_len = 8 + payload.len();
    let total = 20 + udp_len;
    let mut ip = vec![
        0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0, // ver/ihl .. checksum
    ];
    ip[2..4].copy_from_slice(&u16::try_from(total).unwrap().to_be_bytes());
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&Ipv4Addr::LOCALHOST.octets());
    let csum = ipv4_checksum(&ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    let mut frame = Vec::with_capacity(14 + total);
    frame.extend_from_slice(&dst_mac);
    frame.extend_from_slice(&src_mac);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&40000u16.to_be_bytes());
    frame.extend_from_slice(&port.to_be_bytes());
    frame.extend_from_slice(&u16::try_from(udp_len).unwrap().to_be_bytes());
    frame.extend_from_slice(&0u16.to_be_bytes()); // no UDP checksum (allowed in IPv4)
    frame.extend_from_slice(payload);
    frame
}

/// Sends `frame` out of `eth0` of `ns` through an `AF_PACKET` socket.
#[allow(unsafe_code, reason = "building a sockaddr_ll for the packet socket")]
fn send_frame(ns: &Netns, frame: Vec<u8>) {
    use nix::sys::socket::{
        AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, SockaddrLike, sendto, socket,
    };
    use std::os::fd::AsRawFd;
    ns.run_in(move || {
        let index = nix::net::if_::if_nametoindex("eth0").unwrap();
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::empty(),
            None,
        )
        .unwrap();
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = 0x0800u16.to_be();
        sll.sll_ifindex = i32::try_from(index).unwrap();
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&frame[..6]);
        let len = u32::try_from(size_of::<libc::sockaddr_ll>()).unwrap();
        // SAFETY: `sll` is a fully initialised sockaddr_ll and `len` is its size.
        let addr = unsafe {
            LinkAddr::from_raw(std::ptr::addr_of!(sll).cast::<libc::sockaddr>(), Some(len))
        }
        .unwrap();
        let sent = sendto(fd.as_raw_fd(), &frame, &addr, MsgFlags::empty()).unwrap();
        assert_eq!(sent, frame.len());
    });
}

/// Both attacks from container `i`; returns (udp datagrams received, tcp answer).
fn attack(t: &Topo, i: usize, ip_last: u8, secrets: &Secrets) -> (usize, Result<String, String>) {
    let c = &t.containers[i];
    let before = secrets.udp_received.load(Ordering::SeqCst);
    let frame = udp_to_localhost_frame(
        mac_of(&t.env.host, "br0"),
        mac_of(c, "eth0"),
        Ipv4Addr::new(10, 97, 0, ip_last),
        SECRET_UDP_PORT,
    );
    for _ in 0..3 {
        send_frame(c, frame.clone());
    }
    std::thread::sleep(Duration::from_millis(300));
    let udp = secrets.udp_received.load(Ordering::SeqCst) - before;
    c.exec_ok(
        "sh",
        &[
            "-c",
            &format!(
                "ip addr del 127.0.0.1/8 dev lo && sysctl -qw net.ipv4.conf.eth0.route_localnet=1 && ip route replace 127.0.0.1/32 via {GATEWAY} dev eth0"
            ),
        ],
    );
    let tcp = tcp_get(c, SECRET_TCP);
    c.exec_ok(
        "sh",
        &[
            "-c",
            "ip route del 127.0.0.1/32 && ip addr add 127.0.0.1/8 dev lo",
        ],
    );
    (udp, tcp)
}

fn guard_listing(t: &Topo, backend: &str) -> String {
    match backend {
        "iptables" => t.env.host.exec_ok("iptables", &["-S", "INPUT"]),
        _ => t.env.host.exec_ok("nft", &["list", "ruleset"]),
    }
}

fn blocked_with_ours(backend: &str) {
    if !require_root() {
        return;
    }
    let (t, secrets, server, attacker) = Topo::with_server_and_attacker();
    let ours = cni_testsupport::plugin_bin("portmap");
    t.portmap(&ours, "ADD", "ctr-server", server, &conf(backend, 2))
        .assert_success();
    let route_localnet = t
        .env
        .host
        .exec_ok("cat", &["/proc/sys/net/ipv4/conf/br0/route_localnet"]);
    assert_eq!(
        route_localnet.trim(),
        "1",
        "portmap turns route_localnet on"
    );
    let listing = guard_listing(&t, backend);
    assert_eq!(
        listing.matches(GUARD_COMMENT).count(),
        1,
        "exactly one guard rule:\n{listing}"
    );

    // The feature still works: the host reaches the container through localhost, and
    // through the bridge address.
    assert_eq!(tcp_get(&t.env.host, "127.0.0.1:8080").unwrap(), "A");
    assert_eq!(
        tcp_get(&t.env.host, &format!("{GATEWAY}:8080")).unwrap(),
        "A"
    );
    assert_eq!(
        tcp_get(&t.containers[attacker], &format!("{GATEWAY}:8080")).unwrap(),
        "A",
        "container to container through the host port"
    );
    // The host's own localhost traffic is untouched.
    assert_eq!(tcp_get(&t.env.host, SECRET_TCP).unwrap(), "secret");

    for ip_last in [3u8, 2] {
        let who = if ip_last == 3 { attacker } else { server };
        let (udp, tcp) = attack(&t, who, ip_last, &secrets);
        assert_eq!(udp, 0, "a crafted UDP packet to 127.0.0.1 reached the host");
        assert!(
            tcp.is_err(),
            "a container reached the host's 127.0.0.1 service: {tcp:?}"
        );
    }
    assert_eq!(
        secrets.tcp_accepted.load(Ordering::SeqCst),
        1,
        "only the host's own connection was accepted"
    );

    // A second ADD (another container) keeps exactly one guard rule; DEL keeps it.
    t.portmap(&ours, "ADD", "ctr-attacker", attacker, &conf(backend, 3))
        .assert_success();
    t.portmap(&ours, "DEL", "ctr-attacker", attacker, &conf(backend, 3))
        .assert_success();
    t.portmap(&ours, "DEL", "ctr-server", server, &conf(backend, 2))
        .assert_success();
    let listing = guard_listing(&t, backend);
    assert_eq!(listing.matches(GUARD_COMMENT).count(), 1, "{listing}");
}

#[test]
fn container_cannot_reach_host_localhost_iptables() {
    blocked_with_ours("iptables");
}

#[test]
fn container_cannot_reach_host_localhost_nftables() {
    blocked_with_ours("nftables");
}

/// The same attacks against the reference portmap (no guard) reach the host's
/// localhost services: the test detects the exposure it is about.
#[test]
fn reference_portmap_exposes_host_localhost() {
    if !require_root() {
        return;
    }
    let Some(reference) = reference_bin("portmap") else {
        eprintln!("skipped: no reference portmap");
        return;
    };
    let (t, secrets, server, attacker) = Topo::with_server_and_attacker();
    t.portmap(
        &reference,
        "ADD",
        "ctr-server",
        server,
        &conf("iptables", 2),
    )
    .assert_success();
    assert_eq!(tcp_get(&t.env.host, "127.0.0.1:8080").unwrap(), "A");
    let (udp, tcp) = attack(&t, attacker, 3, &secrets);
    assert!(
        udp > 0,
        "the crafted UDP packet should reach the host's service"
    );
    assert_eq!(tcp.as_deref(), Ok("secret"));
    t.portmap(
        &reference,
        "DEL",
        "ctr-server",
        server,
        &conf("iptables", 2),
    )
    .assert_success();
}

/// Concurrent first ADDs on a fresh node create exactly one guard rule.
#[test]
fn concurrent_adds_create_one_guard_rule() {
    if !require_root() {
        return;
    }
    for backend in ["iptables", "nftables"] {
        let mut t = Topo::new();
        let ids: Vec<usize> = (2..10u8).map(|n| t.container(n)).collect();
        let ours = cni_testsupport::plugin_bin("portmap");
        std::thread::scope(|s| {
            let handles: Vec<_> = ids
                .iter()
                .map(|&i| {
                    let t = &t;
                    let ours = &ours;
                    s.spawn(move || {
                        let n = u8::try_from(i + 2).unwrap();
                        let cid = format!("ctr{n}");
                        let mut c = conf(backend, n);
                        c = c.replace("8080", &(8080 + u16::from(n)).to_string());
                        t.portmap(ours, "ADD", &cid, i, &c)
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap().assert_success();
            }
        });
        let listing = guard_listing(&t, backend);
        assert_eq!(
            listing.matches(GUARD_COMMENT).count(),
            1,
            "{backend}: exactly one guard rule after concurrent ADDs:\n{listing}"
        );
    }
}
