//! Upgrade and downgrade in place: attachments created by the Debian reference
//! plugins are CHECKed and DELeted by ours with nothing left, attachments created by ours
//! are DELeted by the reference with nothing left, and a node where both implementations
//! allocate from one store never hands out an address twice.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

use std::collections::BTreeSet;

use cni_testsupport::{Netns, node, require_root};
use node::{Node, Side, first_ip, require_reference};
use serde_json::{Value, json};

/// The full chain: bridge (dual-stack, default gateway, masquerade, spoof check) then
/// portmap.
struct Chain {
    bridge: Value,
    version: String,
}

impl Chain {
    fn new(n: &Node, version: &str) -> Self {
        Self {
            bridge: n.bridge_conf(
                version,
                &["10.81.0.0/24", "fd00:81::/64"],
                json!({"isDefaultGateway": true, "ipMasq": true, "macspoofchk": true}),
            ),
            version: version.into(),
        }
    }

    fn portmap(&self, n: &Node, prev: Option<&Value>) -> Value {
        let mut c = json!({
            "cniVersion": self.version,
            "name": n.name,
            "type": "portmap",
            "runtimeConfig": {"portMappings": [
                {"hostPort": 8081, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 8082, "containerPort": 80, "protocol": "tcp", "hostIP": "10.81.0.1"}
            ]},
        });
        if let Some(p) = prev {
            c["prevResult"] = p.clone();
        }
        c
    }

    /// ADD through bridge then portmap; returns the final result.
    fn add(&self, n: &Node, side: Side, ctr: &Netns, id: &str) -> Value {
        let br = n.add(side, "bridge", &self.bridge, ctr, id);
        n.add(side, "portmap", &self.portmap(n, Some(&br)), ctr, id)
    }

    /// DEL in reverse order, with the final result as prevResult (like libcni).
    fn del(&self, n: &Node, side: Side, ctr: Option<&Netns>, id: &str, prev: &Value) {
        n.del(side, "portmap", &self.portmap(n, Some(prev)), ctr, id);
        let mut b = self.bridge.clone();
        b["prevResult"] = prev.clone();
        n.del(side, "bridge", &b, ctr, id);
    }

    /// After the last DEL only the shared state is left ([`shared_only`]), and an ADD by
    /// `side` in a new container (on the store the other side used before) gets `want`
    /// as its first address; then its DEL leaves nothing behind.
    fn after_last_del_next_add_gets(&self, n: &Node, side: Side, id: &str, want: &str) {
        shared_only(n);
        let c = n.env.add_container();
        let r = self.add(n, side, &c, id);
        assert_eq!(
            first_ip(&r),
            want,
            "round robin continues after the other side's cursor"
        );
        self.del(n, side, Some(&c), id, &r);
        n.assert_clean(Some(&c), id);
    }
}

/// The shared state both implementations leave after the last DEL (chains created on
/// demand and never deleted, the bridge).
fn shared_only(n: &Node) {
    let nat = n.nat();
    for l in nat.lines() {
        let ok = l.starts_with('*')
            || l == "COMMIT"
            || l.starts_with(":PREROUTING")
            || l.starts_with(":INPUT")
            || l.starts_with(":OUTPUT")
            || l.starts_with(":POSTROUTING")
            || l.starts_with(":CNI-HOSTPORT-")
            || l.contains("CNI-HOSTPORT-")
            || l.is_empty();
        assert!(ok, "unexpected nat line left behind: {l}\n{nat}");
    }
}

/// Runs `test` on a new node with the chain in each result layout the reference writes
/// (0.4.0 and 1.0.0), when running as root with the reference installed.
fn for_each_version(test: impl Fn(&Node, &Chain)) {
    if !require_root() || !require_reference() {
        return;
    }
    for version in ["0.4.0", "1.0.0"] {
        let n = Node::new();
        test(&n, &Chain::new(&n, version));
    }
}

#[test]
fn reference_attachments_are_checked_and_deleted_by_ours() {
    for_each_version(|n, chain| {
        let ctrs: Vec<Netns> = (0..2).map(|_| n.env.add_container()).collect();
        let results: Vec<Value> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| chain.add(n, Side::Ref, c, &format!("up-{i}")))
            .collect();
        assert_eq!(n.reservations().len(), 4);
        for (i, (c, r)) in ctrs.iter().zip(&results).enumerate() {
            let id = format!("up-{i}");
            // Our CHECK accepts what the reference built (bridge, then portmap).
            n.check(Side::Ours, "bridge", &chain.bridge, r, c, &id)
                .assert_success();
            n.check(Side::Ours, "portmap", &chain.portmap(n, None), r, c, &id)
                .assert_success();
        }
        // Our DEL of the first, with the netns; of the second after its netns is gone.
        chain.del(n, Side::Ours, Some(&ctrs[0]), "up-0", &results[0]);
        let mut ctrs = ctrs;
        let last = ctrs.pop().unwrap();
        drop(last);
        chain.del(n, Side::Ours, None, "up-1", &results[1]);
        n.wait_veths_gone();
        n.assert_clean(Some(&ctrs[0]), "up-0");
        n.assert_clean(None, "up-1");
        // Our ADD continues on the reference's store.
        chain.after_last_del_next_add_gets(n, Side::Ours, "after", "10.81.0.4");
    });
}

#[test]
fn our_attachments_are_deleted_by_the_reference() {
    for_each_version(|n, chain| {
        let ctr = n.env.add_container();
        let r = chain.add(n, Side::Ours, &ctr, "down");
        assert_eq!(n.reservations().len(), 2);
        assert!(n.nat().contains(":CNI-DN-"));
        assert!(n.nft().contains("cni-br-iface-down-eth0"));
        // The reference's bridge CHECK accepts what ours built. (Its portmap CHECK
        // fails on any dual-stack host: see diff_reference.rs.)
        n.check(Side::Ref, "bridge", &chain.bridge, &r, &ctr, "down")
            .assert_success();
        chain.del(n, Side::Ref, Some(&ctr), "down", &r);
        n.assert_clean(Some(&ctr), "down");
        // The reference ADDs on our store afterwards.
        chain.after_last_del_next_add_gets(n, Side::Ref, "down2", "10.81.0.3");
    });
}

#[test]
fn mixed_node_never_allocates_an_address_twice() {
    if !require_root() || !require_reference() {
        return;
    }
    let n = Node::new();
    let conf = n.bridge_conf(
        "1.0.0",
        &["10.82.0.0/28", "fd00:82::/124"],
        json!({"isGateway": true, "ipMasq": true}),
    );
    let mut live: Vec<(String, Netns, Value)> = Vec::new();
    let mut k = 0;
    // Three rounds: add 5 alternating sides, then delete 3 with the other side.
    for round in 0..3 {
        for j in 0..5 {
            let side = if (round + j) % 2 == 0 {
                Side::Ref
            } else {
                Side::Ours
            };
            let c = n.env.add_container();
            let id = format!("mx-{k}");
            k += 1;
            let r = n.add(side, "bridge", &conf, &c, &id);
            live.push((id, c, r));
        }
        let mut seen = BTreeSet::new();
        for (_, _, r) in &live {
            for ip in r["ips"].as_array().unwrap() {
                assert!(
                    seen.insert(ip["address"].as_str().unwrap().to_string()),
                    "duplicate {ip}"
                );
            }
        }
        let files: BTreeSet<String> = n.reservations().into_iter().collect();
        let want: BTreeSet<String> = seen
            .iter()
            .map(|a| a.split('/').next().unwrap().to_string())
            .collect();
        assert_eq!(files, want, "store == live attachments");
        for j in 0..3 {
            let (id, c, _) = live.remove(0);
            let side = if (round + j) % 2 == 0 {
                Side::Ours
            } else {
                Side::Ref
            };
            n.del(side, "bridge", &conf, Some(&c), &id);
        }
    }
    for (id, c, _) in live.drain(..) {
        n.del(Side::Ours, "bridge", &conf, Some(&c), &id);
    }
    n.assert_clean(None, "mx-0");
    shared_only(&n);
}
