use serde_json::json;

use super::*;
use crate::version::{ALL, V0_1_0, V0_2_0, V0_3_0, V0_3_1, V0_4_0, V1_0_0, V1_1_0};

fn full() -> Success {
    Success {
        interfaces: vec![
            Interface {
                name: "cni0".into(),
                mac: Some("aa:bb:cc:00:00:01".into()),
                ..Interface::default()
            },
            Interface {
                name: "eth0".into(),
                mac: Some("aa:bb:cc:00:00:02".into()),
                mtu: Some(1400),
                sandbox: Some("/var/run/netns/c1".into()),
                socket_path: Some("/run/vhost.sock".into()),
                pci_id: Some("0000:00:1f.6".into()),
            },
        ],
        ips: vec![
            IpConfig {
                interface: Some(1),
                address: "10.1.2.3/24".parse().unwrap(),
                gateway: Some("10.1.2.1".parse().unwrap()),
            },
            IpConfig {
                interface: Some(1),
                address: "10.1.3.3/24".parse().unwrap(),
                gateway: None,
            },
            IpConfig {
                interface: Some(1),
                address: "fd00::3/64".parse().unwrap(),
                gateway: Some("fd00::1".parse().unwrap()),
            },
        ],
        routes: vec![
            Route {
                mtu: Some(1300),
                advmss: Some(1200),
                priority: Some(100),
                table: Some(200),
                scope: Some(0),
                ..Route::new(
                    "0.0.0.0/0".parse().unwrap(),
                    Some("10.1.2.1".parse().unwrap()),
                )
            },
            Route::new("::/0".parse().unwrap(), None),
        ],
        dns: Dns {
            nameservers: vec!["10.1.2.1".into()],
            domain: Some("example.com".into()),
            search: vec!["a.example.com".into()],
            options: vec!["ndots:2".into()],
        },
    }
}

#[test]
fn v1_layout_keeps_every_field() {
    for v in [V1_0_0, V1_1_0] {
        let j = full().to_value(v).unwrap();
        assert_eq!(j["cniVersion"], v.to_string());
        assert_eq!(j["interfaces"][1]["mtu"], 1400);
        assert_eq!(j["interfaces"][1]["socketPath"], "/run/vhost.sock");
        assert_eq!(j["interfaces"][1]["pciID"], "0000:00:1f.6");
        assert_eq!(j["interfaces"][1]["sandbox"], "/var/run/netns/c1");
        assert!(j["ips"][0].get("version").is_none());
        assert_eq!(j["ips"][0]["interface"], 1);
        assert_eq!(j["ips"][0]["address"], "10.1.2.3/24");
        assert_eq!(j["routes"][0]["table"], 200);
        assert_eq!(j["routes"][0]["advmss"], 1200);
        assert_eq!(j["dns"]["options"][0], "ndots:2");
        assert_eq!(
            Success::from_value(&j, v).unwrap(),
            full(),
            "round trip {v}"
        );
    }
}

#[test]
fn v04_layout_has_version_and_drops_new_interface_fields() {
    for v in [V0_3_0, V0_3_1, V0_4_0] {
        let j = full().to_value(v).unwrap();
        assert_eq!(j["ips"][0]["version"], "4");
        assert_eq!(j["ips"][2]["version"], "6");
        assert!(j["interfaces"][1].get("mtu").is_none());
        assert!(j["interfaces"][1].get("pciID").is_none());
        assert_eq!(j["routes"][0]["priority"], 100, "route fields are kept");
        let back = Success::from_value(&j, v).unwrap();
        let mut expected = full();
        for i in &mut expected.interfaces {
            i.mtu = None;
            i.socket_path = None;
            i.pci_id = None;
        }
        assert_eq!(back, expected, "round trip {v}");
    }
}

#[test]
fn v04_prints_empty_dns_and_v1_omits_it() {
    let s = Success {
        ips: full().ips,
        ..Success::default()
    };
    assert_eq!(s.to_value(V0_4_0).unwrap()["dns"], json!({}));
    assert!(s.to_value(V1_0_0).unwrap().get("dns").is_none());
}

#[test]
fn v02_layout_takes_first_ip_per_family_and_splits_routes() {
    for v in [V0_1_0, V0_2_0] {
        let j = full().to_value(v).unwrap();
        assert_eq!(j["ip4"]["ip"], "10.1.2.3/24");
        assert_eq!(j["ip4"]["gateway"], "10.1.2.1");
        assert_eq!(
            j["ip4"]["routes"],
            json!([{"dst": "0.0.0.0/0", "gw": "10.1.2.1"}])
        );
        assert_eq!(j["ip6"]["ip"], "fd00::3/64");
        assert_eq!(j["ip6"]["routes"], json!([{"dst": "::/0"}]));
        assert!(j.get("interfaces").is_none() && j.get("ips").is_none());
        let back = Success::from_value(&j, v).unwrap();
        assert_eq!(back.ips.len(), 2);
        assert_eq!(back.ips[0].interface, None);
        assert_eq!(back.routes.len(), 2);
        assert_eq!(back.dns, full().dns);
    }
}

#[test]
fn no_ip_cannot_be_printed_as_v02() {
    let l2 = Success {
        interfaces: full().interfaces,
        ..Success::default()
    };
    for v in [V0_1_0, V0_2_0] {
        let e = l2.to_value(v).unwrap_err();
        assert_eq!(e.code, 1);
        assert_eq!(e.msg, "cannot convert: no valid IP addresses");
    }
    for v in [V0_3_0, V0_4_0, V1_0_0, V1_1_0] {
        l2.to_value(v).unwrap();
    }
}

#[test]
fn every_version_converts_to_every_other() {
    for from in ALL {
        let j = full().to_value(from).unwrap();
        let parsed = Success::from_value(&j, from).unwrap();
        for to in ALL {
            let out = parsed.to_value(to).unwrap();
            assert_eq!(out["cniVersion"], to.to_string());
            let again = Success::from_value(&out, to).unwrap();
            assert_eq!(
                again.ips[0].address,
                full().ips[0].address,
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn missing_cni_version_uses_default() {
    let j = json!({"ips": [{"address": "10.0.0.2/24"}]});
    let s = Success::from_value(&j, V1_0_0).unwrap();
    assert_eq!(s.ips[0].address.to_string(), "10.0.0.2/24");
}

#[test]
fn spec_example_result_parses() {
    // The ADD example result of SPEC.md (1.1.0).
    let j = json!({
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "cni0", "mac": "00:11:22:33:44:55"},
            {"name": "veth3243", "mac": "55:44:33:22:11:11"},
            {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}
        ],
        "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.1.0.1"]}
    });
    let s = Success::from_value(&j, V1_1_0).unwrap();
    assert_eq!(
        s.interfaces[2].sandbox.as_deref(),
        Some("/var/run/netns/blue")
    );
    assert_eq!(s.to_value(V1_1_0).unwrap(), j);
}

#[test]
fn bad_results_are_decode_or_version_errors() {
    let wrong_family =
        json!({"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.2/24"}]});
    assert_eq!(
        Success::from_value(&wrong_family, V0_4_0).unwrap_err().code,
        6
    );
    let missing_version_key = json!({"cniVersion": "0.3.1", "ips": [{"address": "10.0.0.2/24"}]});
    assert_eq!(
        Success::from_value(&missing_version_key, V0_4_0)
            .unwrap_err()
            .code,
        6
    );
    let bad_addr = json!({"cniVersion": "1.0.0", "ips": [{"address": "nonsense"}]});
    assert_eq!(Success::from_value(&bad_addr, V1_0_0).unwrap_err().code, 6);
    let unknown = json!({"cniVersion": "9.9.9"});
    assert_eq!(Success::from_value(&unknown, V1_0_0).unwrap_err().code, 1);
    assert_eq!(Success::from_slice(b"{", V1_0_0).unwrap_err().code, 6);
    assert_eq!(
        Success::from_value(&json!([1]), V1_0_0).unwrap_err().code,
        6
    );
}

#[test]
fn printed_results_keep_the_reference_key_order() {
    let keys_in_order = |text: &str, keys: &[&str]| {
        let pos: Vec<usize> = keys
            .iter()
            .map(|k| {
                text.find(&format!("\"{k}\""))
                    .unwrap_or_else(|| panic!("{k} in {text}"))
            })
            .collect();
        assert!(
            pos.windows(2).all(|w| w[0] < w[1]),
            "{keys:?} out of order in {text}"
        );
    };
    for v in [V1_0_0, V1_1_0, V0_3_1, V0_4_0] {
        let text = full().to_json(v).unwrap();
        keys_in_order(&text, &["cniVersion", "interfaces", "ips", "routes", "dns"]);
    }
    let text = full().to_json(V0_4_0).unwrap();
    keys_in_order(&text, &["version", "interface", "address", "gateway"]);
    let text = full().to_json(V0_2_0).unwrap();
    keys_in_order(&text, &["cniVersion", "ip4", "ip6", "dns"]);
}
