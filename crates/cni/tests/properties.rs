//! Property tests: whatever a runtime feeds the skel, the answer is a result
//! or a CNI error object, never a panic; results survive conversion between
//! versions as far as each layout can hold them.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cni::version::{ALL, ResultFamily};
use cni::{CniArgs, Dns, Interface, IpConfig, Route, SpecVersion, Success};
use ipnetwork::IpNetwork;
use proptest::prelude::*;

#[allow(
    dead_code,
    reason = "only the Echo plugin is used here; the bodies serve the fuzz corpus test"
)]
#[path = "common/fuzz_targets.rs"]
mod fuzz_targets;

use fuzz_targets::Echo;

fn dispatch(env: &HashMap<&str, String>, stdin: &[u8]) -> (i32, String) {
    let lookup = |k: &str| env.get(k).map(std::ffi::OsString::from);
    let mut out = Vec::new();
    let code = cni::skel::dispatch(&Echo, &lookup, &mut &stdin[..], &mut out, &mut Vec::new());
    (code, String::from_utf8(out).expect("stdout is UTF-8"))
}

fn assert_one_document(cmd: &str, code: i32, stdout: &str) {
    if code == 0 && matches!(cmd, "DEL" | "CHECK" | "STATUS" | "GC") {
        assert!(stdout.is_empty(), "{cmd} succeeded but printed {stdout:?}");
        return;
    }
    let v: serde_json::Value = serde_json::from_str(stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout:?}"));
    if code == 1 {
        assert!(v["code"].is_u64(), "{v}");
        assert!(v["msg"].is_string() && v["cniVersion"].is_string() && v["details"].is_string());
    } else {
        assert_eq!(code, 0);
        assert!(v.get("cniVersion").is_some(), "{v}");
    }
}

fn ip_net() -> impl Strategy<Value = IpNetwork> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, p)| IpNetwork::new(
            IpAddr::V4(Ipv4Addr::from(a)),
            p
        )
        .expect("valid v4 prefix")),
        (any::<u128>(), 0u8..=128).prop_map(|(a, p)| IpNetwork::new(
            IpAddr::V6(Ipv6Addr::from(a)),
            p
        )
        .expect("valid v6 prefix")),
    ]
}

fn ip_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9:./_ -]{0,20}"
}

fn success() -> impl Strategy<Value = Success> {
    let iface = (
        "[a-z0-9]{1,15}",
        proptest::option::of(text()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(text()),
        proptest::option::of(text()),
        proptest::option::of(text()),
    )
        .prop_map(|(name, mac, mtu, sandbox, socket_path, pci_id)| Interface {
            name,
            mac,
            mtu,
            sandbox,
            socket_path,
            pci_id,
        });
    let ip = (
        proptest::option::of(0usize..4),
        ip_net(),
        proptest::option::of(ip_addr()),
    )
        .prop_map(|(interface, address, gateway)| IpConfig {
            interface,
            address,
            gateway,
        });
    let route = (
        ip_net(),
        proptest::option::of(ip_addr()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u8>()),
    )
        .prop_map(|(dst, gw, mtu, advmss, priority, table, scope)| Route {
            dst,
            gw,
            mtu,
            advmss,
            priority,
            table,
            scope,
        });
    let dns = (
        proptest::collection::vec(text(), 0..3),
        proptest::option::of(text()),
        proptest::collection::vec(text(), 0..3),
        proptest::collection::vec(text(), 0..3),
    )
        .prop_map(|(nameservers, domain, search, options)| Dns {
            nameservers,
            domain,
            search,
            options,
        });
    (
        proptest::collection::vec(iface, 0..4),
        proptest::collection::vec(ip, 0..5),
        proptest::collection::vec(route, 0..5),
        dns,
    )
        .prop_map(|(interfaces, ips, routes, dns)| Success {
            interfaces,
            ips,
            routes,
            dns,
        })
}

fn version() -> impl Strategy<Value = SpecVersion> {
    proptest::sample::select(ALL.to_vec())
}

/// What a layout can hold of `s`.
fn representable(s: &Success, v: SpecVersion) -> Success {
    match v.family() {
        ResultFamily::V1 => s.clone(),
        ResultFamily::V04 => Success {
            interfaces: s
                .interfaces
                .iter()
                .map(|i| Interface {
                    name: i.name.clone(),
                    mac: i.mac.clone(),
                    sandbox: i.sandbox.clone(),
                    ..Interface::default()
                })
                .collect(),
            ..s.clone()
        },
        ResultFamily::V02 => {
            let first = |v4: bool| s.ips.iter().find(|ip| ip.address.is_ipv4() == v4);
            let mut ips = Vec::new();
            let mut routes = Vec::new();
            for v4 in [true, false] {
                if let Some(ip) = first(v4) {
                    ips.push(IpConfig {
                        interface: None,
                        ..ip.clone()
                    });
                    routes.extend(
                        s.routes
                            .iter()
                            .filter(|r| r.dst.is_ipv4() == v4)
                            .map(|r| Route::new(r.dst, r.gw)),
                    );
                }
            }
            Success {
                interfaces: Vec::new(),
                ips,
                routes,
                dns: s.dns.clone(),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_stdin_gives_one_json_document(stdin in proptest::collection::vec(any::<u8>(), 0..512),
                                         cmd in proptest::sample::select(vec!["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION", "BOGUS"])) {
        let mut env = HashMap::new();
        env.insert("CNI_COMMAND", cmd.to_owned());
        env.insert("CNI_CONTAINERID", "c1".to_owned());
        env.insert("CNI_NETNS", "/nonexistent".to_owned());
        env.insert("CNI_IFNAME", "eth0".to_owned());
        env.insert("CNI_PATH", "/opt/cni/bin".to_owned());
        let (code, out) = dispatch(&env, &stdin);
        assert_one_document(cmd, code, &out);
    }

    #[test]
    fn any_env_gives_one_json_document(id in ".{0,20}", ifname in ".{0,20}", netns in ".{0,10}",
                                       args in ".{0,30}", path in ".{0,10}") {
        let mut env = HashMap::new();
        env.insert("CNI_COMMAND", "ADD".to_owned());
        env.insert("CNI_CONTAINERID", id);
        env.insert("CNI_NETNS", netns);
        env.insert("CNI_IFNAME", ifname);
        env.insert("CNI_ARGS", args);
        env.insert("CNI_PATH", path);
        let (code, out) = dispatch(&env, br#"{"cniVersion":"1.0.0","name":"n"}"#);
        assert_one_document("ADD", code, &out);
    }

    #[test]
    fn any_prev_result_json_gives_one_document(s in success(), from in version(), to in version(),
                                               garbage in proptest::option::of("[\\[\\]{}:,\"a-z0-9]{0,40}")) {
        let prev = match garbage {
            Some(g) => serde_json::Value::String(g),
            None => s.to_value(from).unwrap_or(serde_json::Value::Null),
        };
        let conf = serde_json::json!({"cniVersion": to.to_string(), "name": "n", "prevResult": prev});
        let mut env = HashMap::new();
        env.insert("CNI_COMMAND", "ADD".to_owned());
        env.insert("CNI_CONTAINERID", "c1".to_owned());
        env.insert("CNI_NETNS", "/nonexistent".to_owned());
        env.insert("CNI_IFNAME", "eth0".to_owned());
        env.insert("CNI_PATH", "/opt/cni/bin".to_owned());
        let (code, out) = dispatch(&env, conf.to_string().as_bytes());
        assert_one_document("ADD", code, &out);
    }

    #[test]
    fn results_round_trip_as_far_as_each_layout_holds(s in success(), v in version()) {
        match s.to_value(v) {
            Ok(json) => {
                let back = Success::from_value(&json, v).expect("own output parses");
                prop_assert_eq!(back, representable(&s, v));
            }
            Err(e) => {
                prop_assert_eq!(v.family(), ResultFamily::V02);
                prop_assert!(s.ips.is_empty());
                prop_assert_eq!(e.code, 1);
            }
        }
    }

    #[test]
    fn conversion_chains_keep_the_first_address_of_each_family(s in success(), a in version(), b in version()) {
        prop_assume!(!s.ips.is_empty());
        let via_a = Success::from_value(&s.to_value(a).expect("has an IP"), a).expect("parses");
        let via_b = Success::from_value(&via_a.to_value(b).expect("has an IP"), b).expect("parses");
        for v4 in [true, false] {
            let first = |r: &Success| r.ips_of_family(v4).next().map(|ip| ip.address);
            prop_assert_eq!(first(&via_b), first(&s));
        }
    }

    #[test]
    fn arbitrary_json_never_panics_the_result_parser(raw in "[\\[\\]{}:,\"a-z0-9./ ]{0,80}", v in version()) {
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(&raw) {
            let _ = Success::from_value(&value, v);
        }
    }

    #[test]
    fn cni_args_parse_is_total_and_round_trips(pairs in proptest::collection::vec(("[A-Za-z_][A-Za-z0-9_]{0,8}", "[^;=]{0,12}"), 0..6),
                                               raw in ".{0,40}") {
        let _ = CniArgs::parse(&raw);
        let joined = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";");
        let parsed = CniArgs::parse(&joined).expect("well-formed pairs parse");
        prop_assert_eq!(parsed.pairs().len(), pairs.len());
        for (k, _) in &pairs {
            let last = pairs.iter().rev().find(|(k2, _)| k2 == k).map(|(_, v)| v.as_str());
            prop_assert_eq!(parsed.get(k).unwrap(), last);
        }
    }
}
