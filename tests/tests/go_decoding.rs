//! JSON input decoded as Go's `encoding/json` decodes it (`cni::gojson`): object keys
//! match struct fields case-insensitively, so the reference plugins accept every key in
//! any case, and runtimes rely on it: containerd's go-cni sends capability arguments
//! serialised from Go structs without JSON tags (`{"HostPort":18080,"ContainerPort":80,
//! "Protocol":"tcp","HostIP":""}`). Each scenario runs on two private nodes, once through
//! the Debian reference plugins (v1.1.1, `/usr/lib/cni`) and once through ours, with
//! re-cased keys; results, `dataDir` files and netfilter state must be equal, as in
//! `diff_reference.rs`. The `CNI_ARGS` tests at the end check our rules (types.LoadArgs's
//! pair syntax; CONVENTIONS.md: `CNI_ARGS` `IP` is ignored when `args` name addresses).

#![allow(
    clippy::unwrap_used,
    reason = "test helpers panic with the failing value"
)]

use cni_testsupport::{PluginOutput, node, require_root};
use node::{Node, Pair, Side, links, normalise, require_reference};
use serde_json::{Value, json};

/// How keys are re-spelled; Go accepts each for a field of the original name.
#[derive(Debug, Clone, Copy)]
enum Case {
    /// `CNIVERSION`, `HOSTPORT`.
    Upper,
    /// `CniVersion`, `HostPort` (what a Go struct without tags gives).
    Pascal,
    /// `cniversion`, `hostport`.
    Lower,
}

const CASES: [Case; 3] = [Case::Upper, Case::Pascal, Case::Lower];

fn recase_key(k: &str, case: Case) -> String {
    match case {
        Case::Upper => k.to_uppercase(),
        Case::Lower => k.to_lowercase(),
        Case::Pascal => {
            let mut c = k.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        }
    }
}

/// `v` with every object key re-cased, except the keys of `capabilities`, which are map
/// keys (data, matched exactly by Go too).
fn recase(v: &Value, case: Case) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = if k == "capabilities" {
                        v.clone()
                    } else {
                        recase(v, case)
                    };
                    (recase_key(k, case), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| recase(x, case)).collect()),
        other => other.clone(),
    }
}

/// MTU of the container's `eth0`.
fn eth0_mtu(ctr: &cni_testsupport::Netns) -> u64 {
    links(ctr)
        .iter()
        .find(|l| l["ifname"] == "eth0")
        .and_then(|l| l["mtu"].as_u64())
        .unwrap()
}

/// The MAC of the interface named `eth0` in a result.
fn eth0_mac(result: &Value) -> String {
    result["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "eth0")
        .and_then(|i| i["mac"].as_str())
        .unwrap()
        .to_string()
}

fn addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap().to_string())
        .collect()
}

/// Every bridge key both implementations know, and host-local's `ranges` form and its
/// legacy top-level range, in each case.
#[test]
fn bridge_and_host_local_keys_in_any_case_equal_the_reference() {
    if !require_root() || !require_reference() {
        return;
    }
    for case in CASES {
        for legacy in [false, true] {
            let p = Pair::new("gd");
            let mut seen = Vec::new();
            for (side, n) in p.sides() {
                let mut ipam = json!({
                    "type": "host-local",
                    "dataDir": n.env.data_path(),
                    "routes": [{"dst": "10.200.0.0/16", "gw": "10.81.0.254"}],
                });
                let range = json!({"subnet": "10.81.0.0/24", "rangeStart": "10.81.0.20",
                                   "rangeEnd": "10.81.0.30", "gateway": "10.81.0.1"});
                if legacy {
                    node::merge(&mut ipam, range);
                } else {
                    ipam["ranges"] = json!([[range], [{"subnet": "fd00:81::/64"}]]);
                }
                let conf = json!({
                    "cniVersion": "1.0.0",
                    "name": n.name,
                    "type": "bridge",
                    "bridge": n.bridge,
                    "isGateway": true,
                    "isDefaultGateway": false,
                    "forceAddress": false,
                    "ipMasq": true,
                    "mtu": 1400,
                    "hairpinMode": true,
                    "promiscMode": false,
                    "vlan": 0,
                    "dns": {"nameservers": ["10.0.0.53"], "domain": "example.org",
                            "search": ["a.example.org"], "options": ["ndots:2"]},
                    "ipam": ipam,
                });
                let conf = recase(&conf, case);
                let ctr = n.env.add_container();
                let out = n.exec(side, "bridge", "ADD", &conf, Some(&ctr), "gd-a");
                assert!(out.success(), "{side:?} {case:?}: {}", out.describe());
                let r = out.json();
                // The re-cased keys took effect.
                assert_eq!(addresses(&r)[0], "10.81.0.20/24", "{side:?} {case:?}: {r}");
                assert_eq!(r["dns"]["nameservers"], json!(["10.0.0.53"]), "{side:?}");
                assert_eq!(eth0_mtu(&ctr), 1400, "{side:?} {case:?}");
                let nat = n.nat();
                assert!(
                    nat.contains("-A POSTROUTING -s 10.81.0.20/32"),
                    "{side:?} {case:?}: {nat}"
                );
                assert!(
                    !n.store_without_lock().is_empty(),
                    "{side:?}: state in the dataDir"
                );
                seen.push((normalise(&r), n.store_without_lock(), nat, eth0_mtu(&ctr)));
                // CHECK and DEL read the same keys.
                let chk = n.check(side, "bridge", &conf, &r, &ctr, "gd-a");
                assert!(chk.success(), "{side:?} {case:?}: {}", chk.describe());
                n.del(side, "bridge", &conf, Some(&ctr), "gd-a");
                seen.push((json!(null), n.store_without_lock(), n.nat(), 0));
                n.assert_clean(Some(&ctr), "gd-a");
            }
            assert_eq!(seen[0], seen[2], "{case:?} legacy={legacy}: after ADD");
            assert_eq!(seen[1], seen[3], "{case:?} legacy={legacy}: after DEL");
        }
    }
}

/// `runtimeConfig` as containerd's go-cni fills it: capability names as libcni injects
/// them, the values serialised from go-cni's untagged structs (`IPRanges`, `DNS`,
/// `BandWidth`, every field present, unset ones empty), and once more with the
/// capability names re-cased as well.
#[test]
fn runtime_config_as_go_cni_sends_it_equals_the_reference() {
    if !require_root() || !require_reference() {
        return;
    }
    let capability_args = json!({
        "ipRanges": [[{"Subnet": "10.83.0.0/24", "RangeStart": "10.83.0.40",
                       "RangeEnd": "10.83.0.50", "Gateway": "10.83.0.1"}],
                     [{"Subnet": "10.84.0.0/24", "RangeStart": "", "RangeEnd": "", "Gateway": ""}]],
        "ips": ["10.83.0.45/24"],
        "mac": "c2:11:22:33:44:55",
        "dns": {"Servers": ["10.0.0.10"], "Searches": ["svc.cluster.local"], "Options": ["ndots:5"]},
        "bandwidth": {"IngressRate": 0, "IngressBurst": 0, "EgressRate": 0, "EgressBurst": 0},
    });
    for recase_names in [None, Some(Case::Upper), Some(Case::Pascal)] {
        let rc = match recase_names {
            None => capability_args.clone(),
            Some(case) => Value::Object(
                capability_args
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (recase_key(k, case), v.clone()))
                    .collect(),
            ),
        };
        let p = Pair::new("gd");
        let mut seen = Vec::new();
        for (side, n) in p.sides() {
            let conf = n.bridge_conf(
                "1.0.0",
                &["10.82.0.0/24"],
                // no gateway: the reference refuses a second IPv4 gateway on the bridge
                json!({"isGateway": false, "runtimeConfig": rc.clone()}),
            );
            let ctr = n.env.add_container();
            let r = n.add(side, "bridge", &conf, &ctr, "gd-rc");
            assert_eq!(
                addresses(&r),
                ["10.83.0.45/24", "10.84.0.2/24", "10.82.0.2/24"],
                "{side:?} {recase_names:?}: ipRanges first, the requested address in them"
            );
            assert_eq!(
                eth0_mac(&r),
                "c2:11:22:33:44:55",
                "{side:?} {recase_names:?}"
            );
            seen.push((normalise(&r), n.store_without_lock(), n.nat()));
            n.del(side, "bridge", &conf, Some(&ctr), "gd-rc");
            seen.push((json!(null), n.store_without_lock(), n.nat()));
            n.assert_clean(Some(&ctr), "gd-rc");
        }
        assert_eq!(seen[0], seen[2], "{recase_names:?}: after ADD");
        assert_eq!(seen[1], seen[3], "{recase_names:?}: after DEL");
    }
}

/// portmap fed the exact bytes containerd's go-cni produces, then its own keys and the
/// mappings re-cased: the DNAT rule exists and the nat tables equal the reference's.
#[test]
fn portmap_go_cni_port_mappings_equal_the_reference() {
    let Some(p) = Pair::if_runnable("gd") else {
        return;
    };
    let mut seen = Vec::new();
    for (side, n) in p.sides() {
        let conf = n.bridge_conf("1.0.0", &["10.85.0.0/24"], json!({"isGateway": true}));
        let ctr = n.env.add_container();
        let br = n.add(side, "bridge", &conf, &ctr, "gd-pm");
        let ip = node::first_ip(&br);

        // The exact runtimeConfig bytes of go-cni, inside a chained portmap config.
        let raw = format!(
            r#"{{"cniVersion":"1.0.0","name":"{}","type":"portmap","snat":true,"capabilities":{{"portMappings":true}},"runtimeConfig":{{"portMappings":[{{"HostPort":18080,"ContainerPort":80,"Protocol":"tcp","HostIP":""}}]}},"prevResult":{}}}"#,
            n.name, br
        );
        let add = n
            .call(side, "ADD", &json!({}), Some(&ctr), "gd-pm")
            .stdin(raw.as_bytes());
        let out = n.run(side, "portmap", &add);
        assert!(out.success(), "{side:?}: {}", out.describe());
        assert_eq!(normalise(&out.json()), normalise(&br), "{side:?}");
        let nat = n.nat();
        let dnat = nat.lines().find(|l| {
            l.contains("--dport 18080") && l.contains(&format!("--to-destination {ip}:80"))
        });
        assert!(dnat.is_some(), "{side:?}: no DNAT rule for 18080\n{nat}");
        seen.push(nat);
        let del = n
            .call(side, "DEL", &json!({}), Some(&ctr), "gd-pm")
            .stdin(raw.as_bytes());
        n.run(side, "portmap", &del).assert_success();
        seen.push(n.nat());

        // portmap's own keys and every mapping key re-cased.
        for case in CASES {
            let pm = recase(
                &json!({
                    "cniVersion": "1.0.0",
                    "name": n.name,
                    "type": "portmap",
                    "snat": true,
                    "markMasqBit": 12,
                    "conditionsV4": ["!", "-s", "192.0.2.0/24"],
                    "conditionsV6": ["!", "-s", "2001:db8::/32"],
                    "runtimeConfig": {"portMappings": [
                        {"hostPort": 18081, "containerPort": 81, "protocol": "udp", "hostIP": ""},
                        {"hostPort": 18082, "containerPort": 82, "protocol": "tcp", "hostIP": "10.85.0.1"}
                    ]},
                }),
                case,
            );
            let mut pm = pm;
            pm["prevResult"] = br.clone();
            let r = n.add(side, "portmap", &pm, &ctr, "gd-pm");
            assert_eq!(normalise(&r), normalise(&br), "{side:?} {case:?}");
            let nat = n.nat();
            assert!(
                nat.contains("--dport 18081") && nat.contains("--dport 18082"),
                "{side:?} {case:?}: {nat}"
            );
            assert!(nat.contains("192.0.2.0/24"), "{side:?} {case:?}: {nat}");
            assert!(nat.contains("0x1000/0x1000"), "{side:?} {case:?}: {nat}");
            seen.push(nat);
            n.del(side, "portmap", &pm, Some(&ctr), "gd-pm");
            seen.push(n.nat());
        }
        n.del(side, "bridge", &conf, Some(&ctr), "gd-pm");
        seen.push(n.nat());
        n.assert_clean(Some(&ctr), "gd-pm");
    }
    let half = seen.len() / 2;
    for (i, (theirs, ours)) in seen[..half].iter().zip(&seen[half..]).enumerate() {
        assert_eq!(theirs, ours, "stage {i}");
    }
}

// ---------------------------------------------------------------------------------------
// CNI_ARGS

/// host-local ADD through `side` with `conf` and `CNI_ARGS`.
fn host_local_add(
    n: &Node,
    side: Side,
    conf: &Value,
    ctr: &cni_testsupport::Netns,
    id: &str,
    cni_args: &str,
) -> PluginOutput {
    let call = n.call(side, "ADD", conf, Some(ctr), id).cni_args(cni_args);
    n.run(side, "host-local", &call)
}

/// A pair that is not exactly `KEY=VALUE` fails the command (types.LoadArgs: "ARGS:
/// invalid pair"), in host-local and bridge alike, and in the reference too; ours says
/// code 4 (invalid environment), the reference 999. `IgnoreUnknown` does not excuse it.
#[test]
fn cni_args_malformed_pair_is_an_error() {
    Pair::each_side("gd", |side, n| {
        let conf = n.bridge_conf("1.0.0", &["10.86.0.0/24"], json!({}));
        let ctr = n.env.add_container();
        for args in [
            "IgnoreUnknown=1;IP=10.86.0.5;BROKEN",
            "IgnoreUnknown=1;IP=10.86.0.5=6",
            "IgnoreUnknown=1;IP=10.86.0.5;",
        ] {
            for plugin in ["host-local", "bridge"] {
                let call = n
                    .call(side, "ADD", &conf, Some(&ctr), "gd-args")
                    .cni_args(args);
                let out = n.run(side, plugin, &call);
                assert!(!out.success(), "{side:?} {plugin} {args:?}");
                let msg = out.error_msg().unwrap();
                assert!(msg.contains("invalid pair"), "{side:?} {plugin}: {msg}");
                let want = if side == Side::Ours { 4 } else { 999 };
                assert_eq!(out.error_code(), Some(want), "{side:?} {plugin} {args:?}");
            }
        }
        assert!(n.reservations().is_empty(), "{side:?}: nothing reserved");
        assert!(n.host_veths().is_empty(), "{side:?}: nothing created");
    });
}

/// CONVENTIONS.md: when `args.cni.ips` (or the `ips` capability) names addresses, the
/// plugin must ignore the `CNI_ARGS` `IP` field: the address from the configuration is
/// allocated, never the `CNI_ARGS` one. Without the lists `IP=` is used. (The reference
/// v1.1.1 requests all of them, and with two in one range fails the ADD.)
#[test]
fn cni_args_ip_is_ignored_when_args_name_addresses() {
    if !require_root() || !require_reference() {
        return;
    }
    let n = Node::new();
    let ctr = n.env.add_container();
    let base = n.bridge_conf("1.0.0", &["10.87.0.0/24"], json!({}));
    let with = |extra: Value| {
        let mut c = base.clone();
        node::merge(&mut c, extra);
        c
    };
    let cases = [
        (
            with(json!({"args": {"cni": {"ips": ["10.87.0.30"]}}})),
            "10.87.0.30/24",
        ),
        (
            with(json!({"runtimeConfig": {"ips": ["10.87.0.31/24"]}})),
            "10.87.0.31/24",
        ),
        // Go's key matching applies to args too.
        (
            with(json!({"ARGS": {"Cni": {"IPS": ["10.87.0.32"]}}})),
            "10.87.0.32/24",
        ),
        (base.clone(), "10.87.0.40/24"),
    ];
    for (i, (conf, want)) in cases.iter().enumerate() {
        let id = format!("gd-ip{i}");
        let out = host_local_add(
            &n,
            Side::Ours,
            conf,
            &ctr,
            &id,
            "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.87.0.40",
        );
        assert!(out.success(), "{i}: {}", out.describe());
        assert_eq!(addresses(&out.json()), [*want], "{i}");
        let reserved = want.split('/').next().unwrap();
        assert!(
            n.reservations().contains(&reserved.to_string()),
            "{i}: {:?}",
            n.reservations()
        );
        n.exec(Side::Ours, "host-local", "DEL", conf, Some(&ctr), &id)
            .assert_success();
        assert!(n.reservations().is_empty(), "{i}: {:?}", n.reservations());
    }
    // The reference asks for both addresses of the one range set and fails.
    let r = Node::new();
    let rctr = r.env.add_container();
    let mut conf = r.bridge_conf("1.0.0", &["10.87.0.0/24"], json!({}));
    node::merge(&mut conf, json!({"args": {"cni": {"ips": ["10.87.0.30"]}}}));
    let out = host_local_add(&r, Side::Ref, &conf, &rctr, "gd-ref", "IP=10.87.0.40");
    assert!(!out.success(), "{}", out.describe());
    assert!(r.reservations().is_empty());
}
