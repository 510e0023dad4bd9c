//! Kubernetes' pod network model with bridge + host-local, in namespaces:
//!
//! ```text
//!   pod-a  pod-b                     pod-c
//!     \     /                          |
//!   [cni0 10.244.1.1/24]        [cni0 10.244.2.1/24]
//!      node1 ---- phys veth ------ node2
//!   172.30.0.1/24              172.30.0.2/24
//!      |  route 10.244.2.0/24      route 10.244.1.0/24
//!      |  via 172.30.0.2           via 172.30.0.1
//!   uplink 198.51.100.1/24
//!      |
//!   outside 198.51.100.2/24 (no route to any pod CIDR)
//! ```
//!
//! Each node runs `cnitool` with its own conflist (bridge with `isGateway` and
//! `ipMasq`, host-local on the node's pod CIDR), data directory and result
//! cache. As an ip-masq-agent would, each node exempts the cluster CIDR
//! (10.244.0.0/16) from masquerading with one `RETURN` rule ahead of the
//! bridge plugin's per-pod rules. Asserted:
//! * pods on one node reach each other;
//! * pods on different nodes reach each other without NAT: the server sees
//!   the client pod's own address, in both directions;
//! * a pod reaches the outside through the bridge plugin's masquerade: the
//!   outside sees node1's address;
//! * after DEL of every pod, nothing is left on either node.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use cni_testsupport::{Netns, bin_dir, checked_stdout, e2e, require_root, unique_name};
use e2e::{Cnitool, assert_nothing_left, ping, result_ips};

const CLUSTER_CIDR: &str = "10.244.0.0/16";
const NET: &str = "k8s-pod-network";
/// The node's `NETCONFPATH`, under its directory.
const NETCONF: &str = "net.d";
/// The node's host-local `dataDir`, under its directory.
const IPAM_DATA: &str = "ipam";
/// The node's `CNI_CACHE_DIR`, under its directory.
const CACHE: &str = "cache";

struct Node {
    ns: Netns,
    dir: tempfile::TempDir,
}

impl Node {
    fn new(pod_cidr: &str) -> Self {
        let node = Self {
            ns: Netns::new(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir(node.path(NETCONF)).expect("mkdir net.d");
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": NET,
            "plugins": [{
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": node.path(IPAM_DATA)
                }
            }, {
                "type": "portmap",
                "capabilities": {"portMappings": true}
            }]
        });
        std::fs::write(node.path(NETCONF).join("10-k8s.conflist"), conf.to_string())
            .expect("write conflist");
        // Cluster traffic is never masqueraded (ip-masq-agent's nonMasqueradeCIDRs).
        node.ns.exec_ok(
            "iptables",
            &[
                "-t",
                "nat",
                "-I",
                "POSTROUTING",
                "1",
                "-s",
                CLUSTER_CIDR,
                "-d",
                CLUSTER_CIDR,
                "-j",
                "RETURN",
            ],
        );
        node
    }

    /// `sub` (one of [`NETCONF`], [`IPAM_DATA`], [`CACHE`]) in the node's directory.
    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn cnitool(&self) -> Cnitool<'_> {
        Cnitool {
            host: &self.ns,
            netconf_dir: self.path(NETCONF),
            cache_dir: self.path(CACHE),
            cni_path: bin_dir(),
        }
    }
}

/// A veth with one end in each namespace, addressed and up; returns the
/// two interface names.
fn link(a: &Netns, a_ip: &str, b: &Netns, b_ip: &str) -> (String, String) {
    let short = |mut n: String| {
        n.truncate(15);
        n
    };
    let (ea, eb) = (short(unique_name("l")), short(unique_name("l")));
    let out = std::process::Command::new("ip")
        .args([
            "link",
            "add",
            &ea,
            "netns",
            a.name(),
            "type",
            "veth",
            "peer",
            "name",
            &eb,
        ])
        .args(["netns", b.name()])
        .output()
        .expect("spawn ip link add");
    checked_stdout("veth", &out);
    for (ns, dev, ip) in [(a, &ea, a_ip), (b, &eb, b_ip)] {
        ns.exec_ok("ip", &["addr", "add", ip, "dev", dev]);
        ns.exec_ok("ip", &["link", "set", dev, "up"]);
    }
    (ea, eb)
}

/// Listen on `port` in `server`, connect from `client` to `ip:port`, and
/// return the client address the server saw.
fn seen_source(server: &Netns, client: &Netns, ip: &str, port: u16) -> SocketAddr {
    let listener =
        server.run_in(|| TcpListener::bind(("0.0.0.0", port)).expect("bind in server ns"));
    let accept = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().expect("accept");
        s.write_all(b"pong").expect("write");
        peer
    });
    let target: SocketAddr = format!("{ip}:{port}").parse().expect("address");
    let reply = client.run_in(|| {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to {target} from {}: {e}", client.name()));
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut buf = String::new();
        s.read_to_string(&mut buf).expect("read reply");
        buf
    });
    assert_eq!(reply, "pong");
    accept.join().expect("accept thread")
}

fn v4(result: &serde_json::Value) -> String {
    result_ips(result)
        .into_iter()
        .find(|i| i.contains('.'))
        .expect("an IPv4 address")
}

#[test]
fn e2e_k8s_pod_network_model() {
    if !require_root() || !e2e::require_program("ping", "iputils-ping") {
        return;
    }
    let node1 = Node::new("10.244.1.0/24");
    let node2 = Node::new("10.244.2.0/24");
    let outside = Netns::new();
    let (phys1, phys2) = link(&node1.ns, "172.30.0.1/24", &node2.ns, "172.30.0.2/24");
    let (uplink, _) = link(&node1.ns, "198.51.100.1/24", &outside, "198.51.100.2/24");
    node1.ns.exec_ok(
        "ip",
        &["route", "add", "10.244.2.0/24", "via", "172.30.0.2"],
    );
    node2.ns.exec_ok(
        "ip",
        &["route", "add", "10.244.1.0/24", "via", "172.30.0.1"],
    );

    let (pod_a, pod_b, pod_c) = (Netns::new(), Netns::new(), Netns::new());
    let (t1, t2) = (node1.cnitool(), node2.cnitool());
    let ids = [
        unique_name("poda-"),
        unique_name("podb-"),
        unique_name("podc-"),
    ];
    let id = |i: usize| {
        [
            ("CNI_CONTAINERID", ids[i].as_str()),
            ("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default"),
        ]
    };
    let ra = t1.add(NET, &pod_a, &id(0));
    let rb = t1.add(NET, &pod_b, &id(1));
    let rc = t2.add(NET, &pod_c, &id(2));
    let (ip_a, ip_b, ip_c) = (v4(&ra), v4(&rb), v4(&rc));
    assert!(
        ip_a.starts_with("10.244.1.") && ip_b.starts_with("10.244.1."),
        "{ip_a} {ip_b}"
    );
    assert!(ip_c.starts_with("10.244.2."), "{ip_c}");

    // Same node.
    assert!(
        ping(&pod_a, &ip_b),
        "pod-a cannot reach pod-b on the same node"
    );
    assert_eq!(
        seen_source(&pod_b, &pod_a, &ip_b, 8081).ip().to_string(),
        ip_a
    );

    // Across nodes, no NAT either way.
    assert!(ping(&pod_a, &ip_c), "pod-a cannot reach pod-c on node2");
    assert_eq!(
        seen_source(&pod_c, &pod_a, &ip_c, 8082).ip().to_string(),
        ip_a,
        "pod-c must see pod-a's own address"
    );
    assert_eq!(
        seen_source(&pod_a, &pod_c, &ip_a, 8083).ip().to_string(),
        ip_c,
        "pod-a must see pod-c's own address"
    );

    // To the outside: masqueraded to node1's address by the bridge plugin.
    assert_eq!(
        seen_source(&outside, &pod_a, "198.51.100.2", 8084)
            .ip()
            .to_string(),
        "198.51.100.1",
        "the outside must see node1's address"
    );
    let rules = node1.ns.exec_ok("iptables", &["-t", "nat", "-S"]);
    assert!(
        rules.contains(&ids[0]) && rules.contains("MASQUERADE"),
        "{rules}"
    );

    for (tool, pod, i) in [(&t1, &pod_a, 0), (&t1, &pod_b, 1), (&t2, &pod_c, 2)] {
        tool.ok(&["del", NET, &pod.path().to_string_lossy()], &id(i));
    }
    assert_nothing_left(
        &node1.ns,
        &[&phys1, &uplink],
        &node1.path(IPAM_DATA),
        &node1.path(CACHE),
        NET,
        &[&ids[0], &ids[1]],
        &[ip_a, ip_b],
    );
    assert_nothing_left(
        &node2.ns,
        &[&phys2],
        &node2.path(IPAM_DATA),
        &node2.path(CACHE),
        NET,
        &[&ids[2]],
        &[ip_c],
    );
}
