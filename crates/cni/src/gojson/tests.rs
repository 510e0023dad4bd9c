use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::json;

use super::*;
use crate::conf::tests::Bridgeish;
use crate::conf::{NetConf, PortMapping, RangeConf, null_as_default};

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
struct Mapping {
    #[serde(default)]
    host_port: i64,
    #[serde(default)]
    container_port: i64,
    #[serde(default, rename = "hostIP")]
    host_ip: String,
}

fn go<T: DeserializeOwned>(text: &str) -> T {
    from_slice(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn keys_match_fields_case_insensitively() {
    let m: Mapping = go(r#"{"HostPort":18080,"ContainerPort":80,"HostIP":"","Protocol":"tcp"}"#);
    assert_eq!(
        m,
        Mapping {
            host_port: 18080,
            container_port: 80,
            host_ip: String::new()
        }
    );
    let m: Mapping = go(r#"{"HOSTIP":"10.0.0.1","hostport":1}"#);
    assert_eq!((m.host_ip.as_str(), m.host_port), ("10.0.0.1", 1));
}

#[test]
fn the_last_key_landing_on_a_field_wins() {
    // Go 1.24: {"hostPort":2,"HOSTPORT":3} gives 3, the other order 2.
    let m: Mapping = go(r#"{"hostPort":2,"HOSTPORT":3}"#);
    assert_eq!(m.host_port, 3);
    let m: Mapping = go(r#"{"HOSTPORT":3,"hostPort":2}"#);
    assert_eq!(m.host_port, 2);
    // A key repeated with one spelling counts at its last position.
    let m: Mapping = go(r#"{"hostPort":2,"HOSTPORT":3,"hostPort":4}"#);
    assert_eq!(m.host_port, 4);
    let m: Mapping = go(r#"{"hostPort":2,"hostPort":5}"#);
    assert_eq!(m.host_port, 5);
}

#[derive(Debug, Deserialize)]
struct TwoSpellings {
    #[serde(default)]
    abc: i32,
    #[serde(default, rename = "ABC")]
    upper: i32,
}

#[test]
fn an_exact_match_is_preferred_over_a_case_insensitive_one() {
    let t: TwoSpellings = go(r#"{"ABC":1,"abc":2}"#);
    assert_eq!((t.abc, t.upper), (2, 1));
    // "Abc" matches no field exactly: it lands on the first that folds
    // equal, as Go's field order decides.
    let t: TwoSpellings = go(r#"{"Abc":7}"#);
    assert_eq!((t.abc, t.upper), (7, 0));
}

#[test]
fn unicode_folding() {
    assert!(fold_eq("straße", "STRAßE"));
    assert!(fold_eq("ÉTÉ", "été"));
    assert!(!fold_eq("hostport", "hostpor"));
    assert!(!fold_eq("hostPort", "host_port"));
    #[derive(Deserialize)]
    struct Accent {
        #[serde(rename = "été")]
        ete: u8,
    }
    let a: Accent = go(r#"{"ÉTÉ":3}"#);
    assert_eq!(a.ete, 3);
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outer {
    #[serde(default)]
    mappings: Vec<Mapping>,
    #[serde(default)]
    nested: Option<Box<Outer>>,
    #[serde(default)]
    sets: Vec<Vec<Mapping>>,
    #[serde(default)]
    by_name: BTreeMap<String, Mapping>,
    #[serde(default, deserialize_with = "null_as_default")]
    listed: Vec<Mapping>,
}

#[test]
fn nested_structs_sequences_options_and_maps() {
    let o: Outer = go(r#"{
        "MAPPINGS":[{"HostPort":1},{"hostport":2}],
        "Nested":{"Mappings":[{"CONTAINERPORT":9}],"Nested":null},
        "SETS":[[{"HostIP":"a"}],[]],
        "ByName":{"KeepMe":{"HOSTPORT":5},"keepme":{"HostPort":6}},
        "LISTED":null
    }"#);
    assert_eq!(o.mappings[0].host_port, 1);
    assert_eq!(o.mappings[1].host_port, 2);
    let inner = o.nested.expect("nested");
    assert_eq!(inner.mappings[0].container_port, 9);
    assert!(inner.nested.is_none());
    assert_eq!(o.sets[0][0].host_ip, "a");
    assert!(o.sets[1].is_empty());
    // Map keys are data, not field names: kept as written, both of them.
    assert_eq!(o.by_name.len(), 2);
    assert_eq!(o.by_name["KeepMe"].host_port, 5);
    assert_eq!(o.by_name["keepme"].host_port, 6);
    assert!(o.listed.is_empty(), "null_as_default through the adapter");
}

#[test]
fn unknown_keys_are_ignored_and_types_still_checked() {
    let m: Mapping = go(r#"{"hostPort":1,"Unknown":{"deep":[1,2]},"protocol":"udp"}"#);
    assert_eq!(m.host_port, 1);
    let e = from_slice::<Mapping>(br#"{"HostPort":"80"}"#).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid type: string "80", expected i64"#,
        "serde_json's own message"
    );
    let e = from_slice::<Mapping>(br#"{"HostPort":null}"#).unwrap_err();
    assert!(e.to_string().contains("expected i64"), "{e}");
    let e = from_slice::<Mapping>(br#""text""#).unwrap_err();
    assert!(e.to_string().contains("expected struct Mapping"), "{e}");
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Plain,
    Tagged { port: u16 },
    Wrapped(Mapping),
    Pair(u8, u8),
}

#[test]
fn enums() {
    assert_eq!(go::<Mode>(r#""plain""#), Mode::Plain);
    assert_eq!(
        go::<Mode>(r#"{"tagged":{"PORT":7}}"#),
        Mode::Tagged { port: 7 }
    );
    assert_eq!(
        go::<Mode>(r#"{"wrapped":{"HostPort":8}}"#),
        Mode::Wrapped(Mapping {
            host_port: 8,
            ..Mapping::default()
        })
    );
    assert_eq!(go::<Mode>(r#"{"pair":[1,2]}"#), Mode::Pair(1, 2));
    assert!(
        from_slice::<Mode>(br#""PLAIN""#).is_err(),
        "variants stay exact"
    );
    assert!(from_slice::<Mode>(br#"{"pair":[1,2,3]}"#).is_err());
}

#[test]
fn newtypes_and_values() {
    #[derive(Deserialize)]
    struct Wrapper(Mapping);
    let w: Wrapper = go(r#"{"HOSTPORT":4}"#);
    assert_eq!(w.0.host_port, 4);
    // A raw Value keeps every key as written.
    let v: Value = go(r#"{"A":1,"a":[{"B":null}]}"#);
    assert_eq!(v, json!({"A":1,"a":[{"B":null}]}));
}

#[test]
fn hand_written_lookups_match_as_go_does() {
    let v = parse_slice(br#"{"CNIVERSION":"0.4.0","cniversion":"1.0.0","other":1}"#).unwrap();
    assert_eq!(get_in(&v, "cniVersion"), Some(&json!("1.0.0")));
    assert_eq!(get_in(&v, "missing"), None);
    assert_eq!(get_in(&json!([1]), "cniVersion"), None);
    let mut map = v.as_object().cloned().expect("object");
    assert_eq!(take(&mut map, "cniVersion"), Some(json!("1.0.0")));
    assert_eq!(map.keys().collect::<Vec<_>>(), ["other"]);
}

#[test]
fn parse_slice_moves_a_repeated_key_to_its_last_position() {
    let v = parse_slice(br#"{"a":1,"b":2,"a":3}"#).unwrap();
    let keys: Vec<_> = v.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["b", "a"]);
    assert_eq!(v["a"], 3);
    assert!(parse_slice(b"{").is_err());
    assert!(parse_slice(b"{} x").is_err(), "trailing characters");
    assert_eq!(parse_slice(b"1.5").unwrap(), json!(1.5));
}

#[test]
fn netconf_common_and_plugin_keys_both_match_as_go() {
    // What containerd's go-cni sends, plus re-cased common and plugin keys.
    let v = parse_slice(
        br#"{"CNIVersion":"1.0.0","NAME":"net","Type":"bridge","Bridge":"br9","ISGATEWAY":true,
        "Capabilities":{"portMappings":true},
        "IPAM":{"TYPE":"host-local","Subnet":"10.1.0.0/24"},
        "DNS":{"Nameservers":["10.0.0.53"],"Search":["x"]},
        "RuntimeConfig":{"PortMappings":[{"HostPort":18080,"ContainerPort":80,"Protocol":"tcp","HostIP":""}],
            "IPRanges":[[{"Subnet":"10.9.0.0/24","RangeStart":"10.9.0.10","RangeEnd":"10.9.0.20","Gateway":"10.9.0.1"}]],
            "IPs":["10.9.0.11"],"MAC":"c2:11:22:33:44:55"},
        "Args":{"CNI":{"IPs":["10.9.0.12"],"Mac":"c2:00:00:00:00:01"}},
        "PrevResult":{"CNIVersion":"1.0.0","IPs":[{"Address":"10.9.0.5/24"}]}}"#,
    )
    .unwrap();
    let mut c = NetConf::<Bridgeish>::from_value(v).unwrap();
    assert_eq!(c.cni_version.as_deref(), Some("1.0.0"));
    assert_eq!((c.name.as_str(), c.plugin_type.as_str()), ("net", "bridge"));
    assert_eq!(c.plugin.bridge.as_deref(), Some("br9"));
    assert!(c.plugin.is_gateway);
    assert_eq!(c.capabilities.get("portMappings"), Some(&true));
    assert_eq!(c.ipam_type(), Some("host-local"));
    assert_eq!(c.dns.as_ref().expect("dns").nameservers, ["10.0.0.53"]);
    assert_eq!(
        c.runtime_config.port_mappings,
        [PortMapping {
            host_port: 18080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: String::new()
        }]
    );
    let range: &RangeConf = &c.runtime_config.ip_ranges[0][0];
    assert_eq!(range.range_end, Some("10.9.0.20".parse().unwrap()));
    assert_eq!(range.gateway, Some("10.9.0.1".parse().unwrap()));
    assert_eq!(c.runtime_config.ips, ["10.9.0.11"]);
    assert_eq!(c.runtime_config.mac.as_deref(), Some("c2:11:22:33:44:55"));
    assert_eq!(c.args.cni.ips, ["10.9.0.12"]);
    assert_eq!(c.args.cni.mac.as_deref(), Some("c2:00:00:00:00:01"));
    c.version = crate::version::V1_0_0;
    let prev = c.prev_result().unwrap().expect("prevResult");
    assert_eq!(prev.ips[0].address.to_string(), "10.9.0.5/24");
}

#[test]
fn netconf_plugin_keys_last_wins_and_missing_name() {
    let v = parse_slice(br#"{"name":"n","bridge":"a","BRIDGE":"b"}"#).unwrap();
    let c = NetConf::<Bridgeish>::from_value(v).unwrap();
    assert_eq!(c.plugin.bridge.as_deref(), Some("b"));
    let v = parse_slice(br#"{"Bridge":"a"}"#).unwrap();
    let e = NetConf::<Bridgeish>::from_value(v).unwrap_err();
    assert_eq!(e.to_string(), "missing field `name`");
}

#[test]
fn go_cni_ip_ranges_with_empty_fields() {
    // go-cni's IPRanges has no JSON tags and no omitempty: unset fields are "".
    let v = parse_slice(
        br#"{"name":"n","runtimeConfig":{"ipRanges":[[{"Subnet":"10.9.0.0/24","RangeStart":"","RangeEnd":"","Gateway":""}]]}}"#,
    )
    .unwrap();
    let c = NetConf::<Bridgeish>::from_value(v).unwrap();
    let r = &c.runtime_config.ip_ranges[0][0];
    assert_eq!(r.subnet.to_string(), "10.9.0.0/24");
    assert_eq!((r.range_start, r.range_end, r.gateway), (None, None, None));
    let e = from_slice::<RangeConf>(br#"{"Subnet":"10.9.0.0/24","Gateway":"nope"}"#).unwrap_err();
    assert_eq!(e.to_string(), "invalid IP address syntax");
}
