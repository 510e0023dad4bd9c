//! Property tests of the bridge plugin's configuration validation
//! (`bridge::config::Settings::new`): any value of any type for any key ends
//! in settings or a CNI error with code 2 (unsupported value), 4 (CNI_ARGS)
//! or 7 (invalid config), never a panic; accepted settings are ones the
//! kernel and the plugin can act on.

use std::path::PathBuf;

use bridge::config::{BridgeConf, Settings};
use cni::{CmdArgs, Command, NetConf};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A JSON value of any shape, biased towards what each key expects.
fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<bool>().prop_map(Value::from),
        (-5000i64..70_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9./: -]{0,20}".prop_map(Value::from),
        Just(Value::Null),
        proptest::collection::vec((-10i64..5000).prop_map(Value::from), 0..3).prop_map(Value::from),
    ]
}

fn trunk_entry() -> impl Strategy<Value = Value> {
    (
        proptest::option::of(-10i64..5000),
        proptest::option::of(-10i64..5000),
        proptest::option::of(-10i64..5000),
    )
        .prop_map(|(id, min, max)| {
            let mut o = serde_json::Map::new();
            if let Some(v) = id {
                o.insert("id".into(), v.into());
            }
            if let Some(v) = min {
                o.insert("minID".into(), v.into());
            }
            if let Some(v) = max {
                o.insert("maxID".into(), v.into());
            }
            Value::Object(o)
        })
}

const KEYS: [&str; 16] = [
    "bridge",
    "isGateway",
    "isDefaultGateway",
    "forceAddress",
    "ipMasq",
    "ipMasqBackend",
    "mtu",
    "hairpinMode",
    "promiscMode",
    "vlan",
    "preserveDefaultVlan",
    "macspoofchk",
    "enabledad",
    "disableContainerInterface",
    "portIsolation",
    "ipam",
];

fn is_kernel_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace())
}

fn args(cni_args: &str) -> CmdArgs {
    CmdArgs {
        command: Command::Add,
        container_id: "prop".into(),
        netns: Some(PathBuf::from("/nonexistent")),
        ifname: "eth0".into(),
        args: cni_args.into(),
        path: vec![],
        stdin: vec![],
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn bridge_config_is_settings_or_a_config_error(
        values in proptest::collection::vec((proptest::sample::select(KEYS.to_vec()), any_value()), 0..8),
        trunk in proptest::option::of(proptest::collection::vec(trunk_entry(), 0..4)),
        mac_arg in proptest::option::of("[0-9a-fA-F:]{0,20}"),
        runtime_mac in proptest::option::of("[0-9a-zA-Z:]{0,20}"),
    ) {
        let mut conf = json!({"cniVersion": "1.0.0", "name": "prop", "type": "bridge"});
        for (k, v) in values {
            conf[k] = v;
        }
        if let Some(t) = trunk {
            conf["vlanTrunk"] = Value::from(t);
        }
        if let Some(m) = runtime_mac {
            conf["runtimeConfig"] = json!({"mac": m});
        }
        // Type errors are rejected by the skel's decode (code 7) before the plugin runs.
        let Ok(net) = serde_json::from_value::<NetConf<BridgeConf>>(conf) else { return Ok(()) };
        let cni_args = mac_arg.map(|m| format!("IgnoreUnknown=1;MAC={m}")).unwrap_or_default();
        match Settings::new(&net, Some(&args(&cni_args))) {
            Ok(s) => {
                prop_assert!(is_kernel_ifname(&s.bridge), "bridge name {:?} accepted", s.bridge);
                prop_assert!(s.vlan <= 4094);
                if let Some(t) = &s.trunk {
                    prop_assert!(t.iter().all(|id| (1..=4094).contains(id)), "{t:?}");
                    prop_assert!(t.windows(2).all(|w| w[0] < w[1]), "trunk not sorted/unique: {t:?}");
                }
                prop_assert!(!(s.hairpin && s.promisc));
                prop_assert!(s.is_gateway || !s.is_default_gateway, "isDefaultGateway implies isGateway");
            }
            Err(e) => prop_assert!([2, 4, 7].contains(&e.code), "code {} for {}", e.code, e.msg),
        }
    }
}
