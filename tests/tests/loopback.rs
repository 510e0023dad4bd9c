//! The `loopback` plugin against the Debian reference (v1.1.1, `/usr/lib/cni/loopback`):
//! ADD results in every version the reference supports (after normalising the netns
//! path), DEL (twice, without a netns, with a deleted netns), CHECK, VERSION, and the
//! state of `lo` in the container namespace after each; then what only ours does (spec
//! 1.1.0, STATUS, GC, error codes, a failed ADD leaving `lo` as it was).
//!
//! Every plugin runs from a private host namespace on a private container namespace.

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

use cni_testsupport::{
    Netns, PluginCall, PluginOutput, TestEnv, node, require_reference, require_root,
};
use node::{Side, normalise};
use serde_json::{Value, json};

fn conf(version: &str) -> Value {
    let mut c = json!({"name": "lo-test", "type": "loopback"});
    if !version.is_empty() {
        c["cniVersion"] = json!(version);
    }
    c
}

/// Runs `command` of `side`'s loopback from `env`'s host namespace on `ctr`.
fn run(
    env: &TestEnv,
    side: Side,
    command: &str,
    conf: &Value,
    ctr: Option<&Netns>,
) -> PluginOutput {
    let mut call = PluginCall::new(command, conf.to_string()).cni_path(vec![side.cni_path()]);
    call = match ctr {
        Some(n) => call.netns(n.path()),
        None => call.no_netns(),
    };
    call.run_in(&env.host, &side.bin("loopback"))
}

/// A test environment when running as root with the reference loopback installed;
/// `None` (the test is skipped) otherwise.
fn env_with_reference() -> Option<TestEnv> {
    (require_root() && require_reference(&["loopback"])).then(TestEnv::new)
}

/// Whether `lo` is administratively up in `ns` (`ip -j link show lo`).
fn lo_up(ns: &Netns) -> bool {
    let v: Value = serde_json::from_str(&ns.exec_ok("ip", &["-j", "link", "show", "lo"])).unwrap();
    v[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP")
}

fn set_lo(ns: &Netns, state: &str) {
    ns.exec_ok("ip", &["link", "set", "lo", state]);
}

/// A container namespace whose `lo` is down, as a new namespace's is.
fn fresh_container() -> Netns {
    let n = Netns::new();
    set_lo(&n, "down");
    assert!(!lo_up(&n));
    n
}

#[test]
fn add_results_equal_the_reference_in_every_version() {
    let Some(env) = env_with_reference() else {
        return;
    };
    // "" is a configuration without cniVersion (0.1.0, printed in the 0.1.0 layout).
    for version in ["", "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        let mut results = Vec::new();
        for side in [Side::Ref, Side::Ours] {
            let ctr = fresh_container();
            let out = run(&env, side, "ADD", &conf(version), Some(&ctr));
            out.assert_success();
            assert!(lo_up(&ctr), "{side:?} {version}: lo is up after ADD");
            let r = out.json();
            if r.get("interfaces").is_some() {
                assert_eq!(r["interfaces"][0]["sandbox"], json!(ctr.path()));
            }
            // ADD again on an up lo: same result.
            let again = run(&env, side, "ADD", &conf(version), Some(&ctr));
            assert_eq!(
                normalise(&again.json()),
                normalise(&r),
                "{side:?} {version}"
            );
            results.push(normalise(&r));
        }
        assert_eq!(results[0], results[1], "cniVersion {version:?}: ADD result");
        let r = &results[1];
        let expected_version = if version.is_empty() { "0.1.0" } else { version };
        assert_eq!(r["cniVersion"], expected_version);
        if version.is_empty() {
            assert_eq!(r["ip4"]["ip"], "127.0.0.1/8", "{r}");
        } else {
            // The reference's own result is in the 1.x layout whatever the version.
            assert_eq!(r["interfaces"][0]["name"], "lo", "{r}");
            assert_eq!(
                r["ips"][0],
                json!({"interface": 0, "address": "127.0.0.1/8"})
            );
            assert_eq!(r["ips"][1], json!({"interface": 0, "address": "::1/128"}));
        }
    }
}

#[test]
fn add_passes_prev_result_through_like_the_reference() {
    let Some(env) = env_with_reference() else {
        return;
    };
    let prevs = [
        (
            "0.2.0",
            json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.70.0.2/24", "gateway": "10.70.0.1"}}),
        ),
        (
            "0.3.1",
            json!({"cniVersion": "0.3.1", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
                   "ips": [{"version": "4", "interface": 0, "address": "10.70.0.2/24", "gateway": "10.70.0.1"}],
                   "routes": [{"dst": "0.0.0.0/0"}]}),
        ),
        (
            "1.0.0",
            json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": "/x"}],
                   "ips": [{"interface": 0, "address": "fd00:70::2/64"}],
                   "dns": {"nameservers": ["192.0.2.53"]}}),
        ),
    ];
    for (version, prev) in prevs {
        let mut c = conf(version);
        c["prevResult"] = prev.clone();
        let mut results = Vec::new();
        for side in [Side::Ref, Side::Ours] {
            let ctr = fresh_container();
            let out = run(&env, side, "ADD", &c, Some(&ctr));
            out.assert_success();
            assert!(lo_up(&ctr), "{side:?} {version}: lo is up after ADD");
            results.push(normalise(&out.json()));
        }
        assert_eq!(
            results[0], results[1],
            "{version}: prevResult passed through"
        );
        assert_eq!(results[1], normalise(&prev), "{version}");
    }
}

#[test]
fn del_sets_lo_down_is_idempotent_and_succeeds_without_the_netns() {
    let Some(env) = env_with_reference() else {
        return;
    };
    for side in [Side::Ref, Side::Ours] {
        for version in ["0.3.1", "1.0.0"] {
            let c = conf(version);
            let ctr = fresh_container();
            run(&env, side, "ADD", &c, Some(&ctr)).assert_success();
            assert!(lo_up(&ctr));
            let del = run(&env, side, "DEL", &c, Some(&ctr));
            del.assert_success();
            assert!(del.stdout.is_empty(), "{side:?}: {}", del.describe());
            assert!(!lo_up(&ctr), "{side:?} {version}: lo is down after DEL");
            run(&env, side, "DEL", &c, Some(&ctr)).assert_success();
            assert!(!lo_up(&ctr), "{side:?} {version}: second DEL");
            // Without CNI_NETNS.
            run(&env, side, "DEL", &c, None).assert_success();
            // With the path of a namespace that was deleted.
            let gone = Netns::new();
            let path = gone.path().to_path_buf();
            drop(gone);
            assert!(!path.exists());
            let out = PluginCall::new("DEL", c.to_string())
                .cni_path(vec![side.cni_path()])
                .netns(&path)
                .run_in(&env.host, &side.bin("loopback"));
            out.assert_success();
        }
    }
}

#[test]
fn check_passes_on_up_and_fails_on_down_lo() {
    let Some(env) = env_with_reference() else {
        return;
    };
    for side in [Side::Ref, Side::Ours] {
        let c = conf("1.0.0");
        let ctr = fresh_container();
        let add = run(&env, side, "ADD", &c, Some(&ctr));
        add.assert_success();
        let mut with_prev = c.clone();
        with_prev["prevResult"] = add.json();
        run(&env, side, "CHECK", &with_prev, Some(&ctr)).assert_success();
        set_lo(&ctr, "down");
        let out = run(&env, side, "CHECK", &with_prev, Some(&ctr));
        assert!(!out.success(), "{side:?}: {}", out.describe());
        assert_eq!(
            out.error_msg().as_deref(),
            Some("loopback interface is down")
        );
        let code = match side {
            Side::Ref => 999,
            Side::Ours => 103,
        };
        assert_eq!(out.error_code(), Some(code), "{side:?}");
        // CHECK is not defined before 0.4.0: code 1 on both sides.
        set_lo(&ctr, "up");
        let old = run(&env, side, "CHECK", &conf("0.3.1"), Some(&ctr));
        assert_eq!(old.error_code(), Some(1), "{side:?}: {}", old.describe());
    }
}

#[test]
fn version_lists_what_each_supports_and_our_status_gc_succeed() {
    let Some(env) = env_with_reference() else {
        return;
    };
    for side in [Side::Ref, Side::Ours] {
        let out = run(&env, side, "VERSION", &conf("1.0.0"), None);
        let v = out.json();
        let mut expected = vec!["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"];
        if side == Side::Ours {
            // As upstream v1.9.1.
            expected.push("1.1.0");
        }
        assert_eq!(v["supportedVersions"], json!(expected), "{side:?}");
    }
    for cmd in ["STATUS", "GC"] {
        let mut c = conf("1.1.0");
        c["cni.dev/valid-attachments"] = json!([{"containerID": "a", "ifname": "eth0"}]);
        let call = PluginCall::new(cmd, c.to_string())
            .cni_path(vec![Side::Ours.cni_path()])
            .container_id("")
            .ifname("");
        let out = call.run_in(&env.host, &Side::Ours.bin("loopback"));
        out.assert_success();
        assert!(out.stdout.is_empty(), "{cmd}: {}", out.describe());
        // Not defined before 1.1.0.
        let old = PluginCall::new(cmd, conf("1.0.0").to_string())
            .cni_path(vec![Side::Ours.cni_path()])
            .run_in(&env.host, &Side::Ours.bin("loopback"));
        assert_eq!(old.error_code(), Some(1), "{cmd}: {}", old.describe());
        // The reference (v1.1.1) does not know the commands at all.
        let theirs = call.run_in(&env.host, &Side::Ref.bin("loopback"));
        assert!(
            theirs.error_code().is_some(),
            "{cmd}: {}",
            theirs.describe()
        );
    }
    // ADD in 1.1.0 (the reference v1.1.1 rejects the version with code 1).
    let ctr = fresh_container();
    let out = run(&env, Side::Ours, "ADD", &conf("1.1.0"), Some(&ctr));
    let r = out.json();
    assert_eq!(r["cniVersion"], "1.1.0", "{}", out.describe());
    assert_eq!(r["interfaces"][0]["name"], "lo");
    assert!(r.get("dns").is_none(), "empty dns omitted: {r}");
    assert!(lo_up(&ctr));
    let theirs = run(&env, Side::Ref, "ADD", &conf("1.1.0"), Some(&ctr));
    assert_eq!(theirs.error_code(), Some(1), "{}", theirs.describe());
}

#[test]
fn bad_input_is_a_cni_error_object_and_changes_nothing() {
    let Some(env) = TestEnv::root() else { return };
    let ctr = fresh_container();
    let cases: Vec<(&str, PluginCall, u64)> = vec![
        (
            "missing CNI_NETNS",
            PluginCall::new("ADD", conf("1.0.0").to_string()).no_netns(),
            4,
        ),
        (
            "missing CNI_NETNS (CHECK)",
            PluginCall::new("CHECK", conf("1.0.0").to_string()).no_netns(),
            4,
        ),
        (
            "unsupported cniVersion",
            PluginCall::new("ADD", conf("9.9.9").to_string()).netns(ctr.path()),
            1,
        ),
        (
            "cniVersion not a version",
            PluginCall::new("ADD", conf("one").to_string()).netns(ctr.path()),
            1,
        ),
        (
            "not JSON",
            PluginCall::new("ADD", "{not json").netns(ctr.path()),
            6,
        ),
        (
            "no network name",
            PluginCall::new("ADD", r#"{"cniVersion":"1.0.0","type":"loopback"}"#)
                .netns(ctr.path()),
            7,
        ),
        (
            "malformed prevResult",
            PluginCall::new(
                "ADD",
                json!({"cniVersion": "1.0.0", "name": "n", "type": "loopback", "prevResult": {"ips": 5}})
                    .to_string(),
            )
            .netns(ctr.path()),
            6,
        ),
        (
            "netns does not exist",
            PluginCall::new("ADD", conf("1.0.0").to_string()).netns("/run/netns/cnit-absent-lo"),
            4,
        ),
        (
            "netns is not a netns",
            PluginCall::new("ADD", conf("1.0.0").to_string()).netns(env.data_path()),
            4,
        ),
        (
            "bad container id",
            PluginCall::new("ADD", conf("1.0.0").to_string())
                .netns(ctr.path())
                .container_id("a b"),
            4,
        ),
        (
            "unknown command",
            PluginCall::new("PING", conf("1.0.0").to_string()).netns(ctr.path()),
            4,
        ),
    ];
    for (what, call, code) in cases {
        let out = call
            .cni_path(vec![Side::Ours.cni_path()])
            .run_in(&env.host, &Side::Ours.bin("loopback"));
        assert_eq!(out.error_code(), Some(code), "{what}: {}", out.describe());
        assert!(out.error_msg().is_some_and(|m| !m.is_empty()), "{what}");
        assert!(!lo_up(&ctr), "{what}: lo left down");
    }
}

#[test]
fn failed_add_leaves_lo_as_it_was_unlike_the_reference() {
    let Some(env) = env_with_reference() else {
        return;
    };
    for side in [Side::Ref, Side::Ours] {
        let ctr = fresh_container();
        ctr.exec_ok("ip", &["addr", "add", "10.71.0.1/8", "dev", "lo"]);
        let out = run(&env, side, "ADD", &conf("1.0.0"), Some(&ctr));
        assert_eq!(
            out.error_msg().as_deref(),
            Some("loopback interface found with non-loopback address \"10.71.0.1\""),
            "{side:?}: {}",
            out.describe()
        );
        match side {
            Side::Ref => {
                assert_eq!(out.error_code(), Some(999));
                assert!(lo_up(&ctr), "the reference leaves lo up");
            }
            Side::Ours => {
                assert_eq!(out.error_code(), Some(999));
                assert!(!lo_up(&ctr), "ours restores lo down");
            }
        }
    }
}

#[test]
fn ifname_is_ignored_and_only_the_container_lo_changes() {
    let Some(env) = TestEnv::root() else { return };
    let ctr = fresh_container();
    let host_lo_before = lo_up(&env.host);
    let out = PluginCall::new("ADD", conf("1.0.0").to_string())
        .cni_path(vec![Side::Ours.cni_path()])
        .netns(ctr.path())
        .ifname("net1")
        .run_in(&env.host, &Side::Ours.bin("loopback"));
    assert_eq!(out.json()["interfaces"][0]["name"], "lo");
    assert!(lo_up(&ctr));
    PluginCall::new("DEL", conf("1.0.0").to_string())
        .cni_path(vec![Side::Ours.cni_path()])
        .netns(ctr.path())
        .ifname("net1")
        .run_in(&env.host, &Side::Ours.bin("loopback"))
        .assert_success();
    assert!(!lo_up(&ctr));
    assert_eq!(
        lo_up(&env.host),
        host_lo_before,
        "the host namespace's lo untouched"
    );
}
