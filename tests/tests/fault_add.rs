//! Real failures at each step of a bridge ADD: missing privileges, an address
//! conflict, IPAM errors (plugin missing, garbage output, no address, exhaustion), a
//! missing netfilter backend, a netns that is gone before or disappears during ADD.
//! Each must end in a clear CNI error with the right code and a full rollback.
//! (Injected failures after every step are in `bridge.rs`; kill -9 in `fault_kill.rs`.)

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

use std::time::Duration;

use cni_testsupport::{Netns, node, wait_for_file, write_script};
use node::{Node, Side, links};
use serde_json::{Value, json};

fn bridge_exists(n: &Node) -> bool {
    links(&n.env.host)
        .iter()
        .any(|l| l["ifname"] == n.bridge.as_str())
}

#[test]
fn without_cap_net_admin_nothing_is_created() {
    let Some(n) = Node::root() else { return };
    let conf = n.bridge_conf("1.0.0", &["10.101.0.0/24"], json!({"isGateway": true}));
    let ctr = n.env.add_container();
    let drop_cap = "exec setpriv --bounding-set -net_admin --inh-caps -net_admin ";
    let out = n.add_ours_wrapped(drop_cap, &conf, &ctr, "cap");
    assert!(!out.success());
    let msg = out.error_msg().unwrap_or_default();
    assert!(
        msg.contains("Operation not permitted") || msg.contains("EPERM"),
        "{}",
        out.describe()
    );
    assert_ne!(out.error_code(), Some(0));
    assert!(!bridge_exists(&n), "no bridge");
    n.assert_clean(Some(&ctr), "cap");
}

#[test]
fn requested_address_taken_by_another_container_rolls_back() {
    let Some(n) = Node::root() else { return };
    let conf = n.bridge_conf("1.0.0", &["10.102.0.0/24"], json!({"ipMasq": true}));
    let (a, b) = (n.env.add_container(), n.env.add_container());
    let first = n
        .call(Side::Ours, "ADD", &conf, Some(&a), "owner")
        .cni_args("IgnoreUnknown=1;IP=10.102.0.5");
    n.run(Side::Ours, "bridge", &first).assert_success();
    let second = n
        .call(Side::Ours, "ADD", &conf, Some(&b), "thief")
        .cni_args("IgnoreUnknown=1;IP=10.102.0.5");
    let out = n.run(Side::Ours, "bridge", &second);
    out.assert_error(101, "10.102.0.5");
    assert!(
        links(&b).iter().all(|l| l["ifname"] != "eth0"),
        "container interface rolled back"
    );
    assert_eq!(n.host_veths().len(), 1, "only the owner's veth");
    assert_eq!(n.reservations(), vec!["10.102.0.5".to_string()]);
    assert!(!n.nat().contains("thief"));
    n.del_clean(&conf, Some(&a), "owner");
}

#[test]
fn ipam_failures_are_returned_and_roll_back() {
    let Some(n) = Node::root() else { return };
    let fake = tempfile::tempdir().unwrap();
    let log = fake.path().join("calls");
    // garbage: not JSON; empty: a result without addresses; fails: a CNI error with code 11.
    write_script(
        fake.path(),
        "garbage",
        "cat >/dev/null; echo 'this is not json'",
    );
    write_script(
        fake.path(),
        "empty",
        &format!(
            "cat >/dev/null; echo \"$CNI_COMMAND $CNI_CONTAINERID\" >> {}; [ \"$CNI_COMMAND\" = ADD ] && echo '{{\"cniVersion\":\"1.0.0\"}}'; exit 0",
            log.display()
        ),
    );
    write_script(
        fake.path(),
        "fails",
        "cat >/dev/null; echo '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"busy, try later\"}'; exit 1",
    );
    let cases: [(&str, u64, &str); 4] = [
        ("no-such-ipam", 0, "no-such-ipam"),
        ("garbage", 0, ""),
        ("empty", 0, "IPAM plugin returned missing IP config"),
        ("fails", 11, "busy, try later"),
    ];
    for (ipam, code, msg) in cases {
        let mut conf = n.bridge_conf("1.0.0", &["10.103.0.0/24"], json!({"isGateway": true}));
        conf["ipam"]["type"] = json!(ipam);
        let ctr = n.env.add_container();
        let call = n
            .call(Side::Ours, "ADD", &conf, Some(&ctr), ipam)
            .cni_path(vec![fake.path().to_path_buf(), Side::Ours.cni_path()]);
        let out = n.run(Side::Ours, "bridge", &call);
        assert!(!out.success(), "{ipam}");
        if code != 0 {
            out.assert_error(code, msg);
        } else {
            let m = out
                .error_msg()
                .unwrap_or_else(|| panic!("{ipam}: {}", out.describe()));
            assert!(m.contains(msg), "{ipam}: {m}");
            assert!(out.error_code().is_some_and(|c| c != 0));
        }
        n.assert_clean(Some(&ctr), ipam);
    }
    let calls = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls, "ADD empty\nDEL empty\n",
        "an IPAM ADD that succeeded is undone"
    );
    // Exhaustion (code 100) after the veth exists.
    let conf = n.bridge_conf("1.0.0", &["10.103.1.0/30"], json!({}));
    let (a, b) = (n.env.add_container(), n.env.add_container());
    n.add(Side::Ours, "bridge", &conf, &a, "ex-a");
    n.exec(Side::Ours, "bridge", "ADD", &conf, Some(&b), "ex-b")
        .assert_error(100, "no IP addresses available");
    assert!(links(&b).iter().all(|l| l["ifname"] != "eth0"));
    assert_eq!(n.host_veths().len(), 1);
    n.del_clean(&conf, Some(&a), "ex-a");
}

#[test]
fn missing_netfilter_backend_is_an_error_before_or_rolled_back() {
    let Some(n) = Node::root() else { return };
    let empty = tempfile::tempdir().unwrap();
    let no_tools = empty.path().display().to_string();
    let cases = [
        (
            json!({"ipMasq": true, "ipMasqBackend": "iptables"}),
            "iptables",
        ),
        (
            json!({"ipMasq": true, "ipMasqBackend": "nftables"}),
            "nftables",
        ),
        (json!({"ipMasq": true}), "no usable netfilter backend"),
        (
            json!({"macspoofchk": true}),
            "macspoofchk: nftables is not usable",
        ),
    ];
    for (extra, msg) in cases {
        let conf = n.bridge_conf("1.0.0", &["10.104.0.0/24"], extra.clone());
        let ctr = n.env.add_container();
        let call = n
            .call(Side::Ours, "ADD", &conf, Some(&ctr), "nf")
            .env("PATH", &no_tools);
        let out = n.run(Side::Ours, "bridge", &call);
        out.assert_error(50, msg);
        assert!(!bridge_exists(&n), "{extra}: checked before any change");
        n.assert_clean(Some(&ctr), "nf");
    }
    // portmap: no backend usable.
    let conf = n.bridge_conf("1.0.0", &["10.104.1.0/24"], json!({}));
    let ctr = n.env.add_container();
    let r = n.add(Side::Ours, "bridge", &conf, &ctr, "pmnf");
    let pm = json!({"cniVersion": "1.0.0", "name": n.name, "type": "portmap",
        "runtimeConfig": {"portMappings": [{"hostPort": 8104, "containerPort": 80, "protocol": "tcp"}]},
        "prevResult": r});
    let call = n
        .call(Side::Ours, "ADD", &pm, Some(&ctr), "pmnf")
        .env("PATH", &no_tools);
    let out = n.run(Side::Ours, "portmap", &call);
    out.assert_error(50, "");
    assert!(!n.nat().contains("CNI-DN-"));
    n.del(Side::Ours, "portmap", &pm, Some(&ctr), "pmnf");
    n.del_clean(&conf, Some(&ctr), "pmnf");
}

#[test]
fn netns_gone_before_add_changes_nothing() {
    let Some(n) = Node::root() else { return };
    let conf = n.bridge_conf("1.0.0", &["10.105.0.0/24"], json!({"ipMasq": true}));
    let ctr = n.env.add_container();
    let path = ctr.path().to_path_buf();
    drop(ctr);
    let call = n.call(Side::Ours, "ADD", &conf, None, "gone").netns(&path);
    let out = n.run(Side::Ours, "bridge", &call);
    out.assert_error(4, "failed to open netns");
    assert!(!bridge_exists(&n), "nothing created, not even the bridge");
    n.assert_clean(None, "gone");
    // Paths that are not a network namespace.
    for p in ["/proc/self/status", "/proc/self/ns/mnt", "/dev/null"] {
        let call = n.call(Side::Ours, "ADD", &conf, None, "gone").netns(p);
        n.run(Side::Ours, "bridge", &call)
            .assert_error(4, "not a network namespace");
        n.assert_clean(None, "gone");
    }
}

/// Runs an ADD paused after `step`, deletes the container netns while it waits, lets it
/// continue, then DELs with the stale path: nothing may be left.
fn netns_deleted_during(n: &Node, conf: &Value, step: &str) {
    let ctr = n.env.add_container();
    let path = ctr.path().to_path_buf();
    let pause = tempfile::tempdir().unwrap();
    let go = pause.path().join("go");
    let id = format!("mid-{step}");
    let call = n
        .call(Side::Ours, "ADD", conf, Some(&ctr), &id)
        .env("CNI_BRIDGE_PAUSE_AFTER", step)
        .env("CNI_BRIDGE_PAUSE_FILE", go.to_str().unwrap());
    let out = std::thread::scope(|s| {
        let h = s.spawn(|| n.run(Side::Ours, "bridge", &call));
        let marker = pause.path().join("go.paused");
        wait_for_file(
            &marker,
            Duration::from_secs(20),
            &format!("{step}: ADD never paused"),
        );
        drop(ctr); // ip netns del while ADD holds the namespace open
        std::fs::write(&go, "").unwrap();
        h.join().unwrap()
    });
    // The plugin holds the namespace open, so ADD may still succeed; either way, a DEL
    // with the path that no longer exists cleans up everything.
    if !out.success() {
        assert!(out.error_code().is_some(), "{step}: {}", out.describe());
    }
    let del = n.call(Side::Ours, "DEL", conf, None, &id).netns(&path);
    n.run(Side::Ours, "bridge", &del).assert_success();
    n.wait_veths_gone();
    n.assert_clean(None, &id);
}

#[test]
fn netns_deleted_in_the_middle_of_add() {
    let Some(n) = Node::root() else { return };
    let conf = n.bridge_conf(
        "1.0.0",
        &["10.106.0.0/24", "fd00:106::/64"],
        json!({"isDefaultGateway": true, "ipMasq": true, "macspoofchk": true}),
    );
    for step in ["veth", "ipam", "container", "masq"] {
        netns_deleted_during(&n, &conf, step);
    }
    // And the node still works.
    let ctr: Netns = n.env.add_container();
    n.add(Side::Ours, "bridge", &conf, &ctr, "mid-after");
    n.del_clean(&conf, Some(&ctr), "mid-after");
}
