//! Kill -9 during ADD and DEL: after a plugin dies at any point, a DEL (with
//! or without the netns) leaves no veth, reservation, netfilter rule or held lock behind,
//! and the next ADD works.
//!
//! bridge dies at each named step through `CNI_BRIDGE_ABORT_AFTER=<step>` (`abort()`, no
//! rollback, like SIGKILL there); bridge and portmap are also SIGKILLed after random
//! delays (which lands inside netlink, IPAM delegation and netfilter programming).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use bridge::rollback::STEPS;
use cni_testsupport::{node, require_root};
use node::{Node, Side, run_and_kill, wait_for_orphans};
use serde_json::{Value, json};

/// A bounded IPAM lock wait so that a lock left held would fail the next ADD quickly.
const LOCK_TIMEOUT_MS: &str = "2000";

fn full_conf(n: &Node, backend: &str) -> Value {
    n.bridge_conf(
        "1.0.0",
        &["10.91.0.0/24", "fd00:91::/64"],
        json!({"isDefaultGateway": true, "ipMasq": true, "ipMasqBackend": backend, "macspoofchk": true}),
    )
}

/// After the kills, an ADD with a bounded IPAM lock wait works (no lock left held,
/// nothing in the way), and its DEL leaves nothing.
fn next_add_works(n: &Node, conf: &Value, id: &str) {
    let ctr = n.env.add_container();
    let call = n
        .call(Side::Ours, "ADD", conf, Some(&ctr), id)
        .env("CNI_IPAM_LOCK_TIMEOUT_MS", LOCK_TIMEOUT_MS);
    n.run(Side::Ours, "bridge", &call).assert_success();
    n.del_clean(conf, Some(&ctr), id);
}

#[test]
fn bridge_aborted_after_every_step_is_cleaned_by_del() {
    let Some(n) = Node::root() else { return };
    for backend in ["iptables", "nftables"] {
        let conf = full_conf(&n, backend);
        for (i, step) in STEPS.iter().enumerate() {
            let ctr = n.env.add_container();
            let id = format!("ab-{backend}-{step}");
            let call = n
                .call(Side::Ours, "ADD", &conf, Some(&ctr), &id)
                .env("CNI_BRIDGE_ABORT_AFTER", step);
            let out = n.run(Side::Ours, "bridge", &call);
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGABRT),
                "{step}: {}",
                out.describe()
            );
            assert!(out.stdout.is_empty(), "no result printed");
            // Every other case: the runtime lost the netns too.
            if i % 2 == 1 {
                drop(ctr);
                n.del(Side::Ours, "bridge", &conf, None, &id);
                n.wait_veths_gone();
                n.assert_clean(None, &id);
            } else {
                n.del_clean(&conf, Some(&ctr), &id);
            }
        }
        next_add_works(&n, &conf, "ab-after");
    }
}

#[test]
fn bridge_sigkilled_at_random_points_of_add_and_del() {
    let Some(n) = Node::root() else { return };
    let conf = full_conf(&n, "iptables");
    let mut killed = 0;
    for i in 0..16u64 {
        let ctr = n.env.add_container();
        let id = format!("rk-{i}");
        let add = n.call(Side::Ours, "ADD", &conf, Some(&ctr), &id);
        killed += u32::from(run_and_kill(
            &n,
            "bridge",
            &add,
            Duration::from_millis(3 * i * i),
        ));
        // Kill a DEL too, half of the time, before the DEL that must clean up.
        if i % 2 == 0 {
            let del = n.call(Side::Ours, "DEL", &conf, Some(&ctr), &id);
            run_and_kill(&n, "bridge", &del, Duration::from_millis(2 * i));
        }
        // A delegated host-local ADD may outlive the killed bridge for a moment.
        wait_for_orphans();
        n.del_clean(&conf, Some(&ctr), &id);
    }
    eprintln!("{killed} of 16 ADDs were killed while running");
    assert!(
        killed > 0,
        "no ADD was interrupted: the delays are too long"
    );
    next_add_works(&n, &conf, "rk-after");
}

#[test]
fn portmap_sigkilled_at_random_points_then_del_removes_every_rule() {
    if !require_root() {
        return;
    }
    for backend in ["iptables", "nftables"] {
        let n = Node::new();
        let bconf = n.bridge_conf(
            "1.0.0",
            &["10.92.0.0/24", "fd00:92::/64"],
            json!({"isGateway": true}),
        );
        let ctr = n.env.add_container();
        let br = n.add(Side::Ours, "bridge", &bconf, &ctr, "pk");
        let pm = json!({
            "cniVersion": "1.0.0", "name": n.name, "type": "portmap", "backend": backend,
            "runtimeConfig": {"portMappings": [
                {"hostPort": 8091, "containerPort": 80, "protocol": "tcp"},
                {"hostPort": 8092, "containerPort": 53, "protocol": "udp"}
            ]},
            "prevResult": br,
        });
        let mut killed = 0;
        for i in 0..10u64 {
            let add = n.call(Side::Ours, "ADD", &pm, Some(&ctr), "pk");
            killed += u32::from(run_and_kill(
                &n,
                "portmap",
                &add,
                Duration::from_millis(2 * i * i),
            ));
            // The killed ADD's nft or iptables-restore may still be committing.
            wait_for_orphans();
            n.del(Side::Ours, "portmap", &pm, Some(&ctr), "pk");
            let nat = n.nat();
            assert!(!nat.contains(":CNI-DN-"), "{backend} #{i}: {nat}");
            let nft = n.nft();
            assert!(!nft.contains("\"pk\""), "{backend} #{i}: {nft}");
        }
        eprintln!("{backend}: {killed} of 10 portmap ADDs were killed while running");
        // The next ADD and CHECK work.
        let r = n.add(Side::Ours, "portmap", &pm, &ctr, "pk");
        n.check(Side::Ours, "portmap", &pm, &r, &ctr, "pk")
            .assert_success();
        n.del(Side::Ours, "portmap", &pm, Some(&ctr), "pk");
        n.del_clean(&bconf, Some(&ctr), "pk");
    }
}
