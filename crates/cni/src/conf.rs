//! The network configuration a plugin reads on stdin (SPEC.md "Network
//! configuration", CONVENTIONS.md for `runtimeConfig` and `args`).
//!
//! [`NetConf`] holds the keys every plugin shares; a plugin's own keys land
//! in `plugin: P`, decoded from the same object. Every input is decoded with
//! Go's key matching ([`crate::gojson`]); unknown keys are ignored, as the
//! reference plugins do.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

pub use crate::de::{cidr_with_prefix, empty_ip_as_none, null_as_default, struct_keys};
use crate::error::Result;
use crate::gojson;
use crate::types::{Dns, Success};
use crate::version::SpecVersion;

/// A plugin configuration with no keys of its own.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NoPluginConfig {}

/// The network configuration given to one plugin.
///
/// Decoded as Go decodes it (see [`crate::gojson`]): keys match fields
/// case-insensitively, the last key landing on a field wins, unknown keys are
/// ignored. The plugin's own keys are decoded from the same object into `P`
/// by a second pass (each pass ignores the other's keys).
#[derive(Debug, Clone)]
pub struct NetConf<P = NoPluginConfig> {
    /// The configuration's `cniVersion` as written (absent means 0.1.0).
    pub cni_version: Option<String>,
    /// The resolved version; filled in by the skel after the version gate.
    pub version: SpecVersion,
    /// Network name (validated by the skel).
    pub name: String,
    /// Plugin type (the executable's name).
    pub plugin_type: String,
    /// Capabilities this plugin declared in the network list.
    pub capabilities: BTreeMap<String, bool>,
    /// The IPAM section; absent or with an empty `type` means no IPAM.
    pub ipam: Option<IpamConf>,
    /// DNS settings from the configuration.
    pub dns: Option<Dns>,
    /// Capability arguments injected by the runtime.
    pub runtime_config: RuntimeConfig,
    /// Per-attachment `args` (CONVENTIONS.md "args in network config").
    pub args: ArgsConf,
    /// The previous plugin's result, raw; see [`NetConf::prev_result`].
    pub prev_result: Option<Value>,
    /// GC: the attachments that must be kept.
    pub valid_attachments: Option<Vec<GcAttachment>>,
    /// GC: the same list under the key of an older draft (containernetworking/cni#1101).
    pub legacy_attachments: Option<Vec<GcAttachment>>,
    /// The plugin's own keys.
    pub plugin: P,
}

/// The keys every plugin shares (all of [`NetConf`] but `prevResult` and
/// `ipam`, which are moved out of the object rather than copied, and the
/// plugin's keys).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommonKeys {
    #[serde(default)]
    cni_version: Option<String>,
    name: String,
    #[serde(rename = "type", default)]
    plugin_type: String,
    #[serde(default, deserialize_with = "null_as_default")]
    capabilities: BTreeMap<String, bool>,
    #[serde(default)]
    dns: Option<Dns>,
    #[serde(default, deserialize_with = "null_as_default")]
    runtime_config: RuntimeConfig,
    #[serde(default, deserialize_with = "null_as_default")]
    args: ArgsConf,
    #[serde(rename = "cni.dev/valid-attachments", default)]
    valid_attachments: Option<Vec<GcAttachment>>,
    #[serde(rename = "cni.dev/attachments", default)]
    legacy_attachments: Option<Vec<GcAttachment>>,
}

impl<P: DeserializeOwned> NetConf<P> {
    /// Decode a configuration parsed from stdin (ideally with
    /// [`gojson::parse_slice`]). `prevResult` and `ipam` are moved out of
    /// `value`, not copied.
    ///
    /// # Errors
    /// serde_json's message for a missing `name` or a value of the wrong type.
    pub fn from_value(mut value: Value) -> std::result::Result<Self, serde_json::Error> {
        let (prev_result, ipam) = match &mut value {
            Value::Object(map) => (gojson::take(map, "prevResult"), gojson::take(map, "ipam")),
            _ => (None, None),
        };
        let ipam = match ipam {
            None => None,
            Some(v) => IpamConf::from_value(v)?,
        };
        let common: CommonKeys = gojson::from_value(&value)?;
        let plugin: P = gojson::from_value(&value)?;
        Ok(Self {
            cni_version: common.cni_version,
            version: SpecVersion::default(),
            name: common.name,
            plugin_type: common.plugin_type,
            capabilities: common.capabilities,
            ipam,
            dns: common.dns,
            runtime_config: common.runtime_config,
            args: common.args,
            prev_result,
            valid_attachments: common.valid_attachments,
            legacy_attachments: common.legacy_attachments,
            plugin,
        })
    }
}

impl<'de, P: DeserializeOwned> Deserialize<'de> for NetConf<P> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::{DeserializeSeed as _, Error as _};
        let value = gojson::GoOrderSeed.deserialize(d)?;
        Self::from_value(value).map_err(D::Error::custom)
    }
}

impl<P> NetConf<P> {
    /// The `prevResult`, parsed in whatever version it carries (the config's
    /// version when it has none). `None` when absent or `null`.
    ///
    /// # Errors
    /// Code 1 or 6 when the previous result cannot be parsed.
    pub fn prev_result(&self) -> Result<Option<Success>> {
        match &self.prev_result {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Success::from_value(v, self.version)
                .map(Some)
                .map_err(|e| e.context("could not parse prevResult")),
        }
    }

    /// The IPAM plugin type, if IPAM is configured (non-empty `ipam.type`).
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam
            .as_ref()
            .map(|i| i.plugin_type.as_str())
            .filter(|t| !t.is_empty())
    }

    /// GC: the union of `cni.dev/valid-attachments` and the legacy
    /// `cni.dev/attachments`, without duplicates. `None` when neither key is
    /// present (the runtime gave no list: nothing may be collected).
    pub fn gc_valid_attachments(&self) -> Option<Vec<GcAttachment>> {
        if self.valid_attachments.is_none() && self.legacy_attachments.is_none() {
            return None;
        }
        let mut all: Vec<GcAttachment> = Vec::new();
        for a in self
            .valid_attachments
            .iter()
            .chain(self.legacy_attachments.iter())
            .flatten()
        {
            if !all.contains(a) {
                all.push(a.clone());
            }
        }
        Some(all)
    }
}

/// The `ipam` section: its `type` plus every key, kept raw for the IPAM
/// plugin to parse.
#[derive(Debug, Clone, Default)]
pub struct IpamConf {
    /// `ipam.type`; empty means layer-2 only.
    pub plugin_type: String,
    /// The section as written (an object), including `type`; decode it with
    /// [`gojson::from_value`].
    pub raw: Value,
}

impl IpamConf {
    /// The section from its value, moved rather than copied; `null` is no
    /// section.
    ///
    /// # Errors
    /// As the `Deserialize` impl: not an object, or a `type` that is not a
    /// string.
    pub fn from_value(value: Value) -> std::result::Result<Option<Self>, serde_json::Error> {
        match value {
            Value::Object(raw) => Self::from_map(raw).map(Some),
            other => Option::<Self>::deserialize(gojson::GoValue(&other)),
        }
    }

    fn from_map<E: serde::de::Error>(raw: Map<String, Value>) -> std::result::Result<Self, E> {
        let plugin_type = match gojson::get(&raw, "type") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(E::custom(format!(
                    "ipam.type must be a string, got {other}"
                )));
            }
        };
        Ok(Self {
            plugin_type,
            raw: Value::Object(raw),
        })
    }
}

impl<'de> Deserialize<'de> for IpamConf {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = Option::<Map<String, Value>>::deserialize(d)?.unwrap_or_default();
        Self::from_map(raw)
    }
}

/// `runtimeConfig`: capability arguments (CONVENTIONS.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    /// Capability `portMappings` (portmap).
    #[serde(default, deserialize_with = "null_as_default")]
    pub port_mappings: Vec<PortMapping>,
    /// Capability `ips`: requested addresses, `ip` or `ip/prefix` (host-local).
    #[serde(default, deserialize_with = "null_as_default")]
    pub ips: Vec<String>,
    /// Capability `ipRanges`: extra range sets (host-local).
    #[serde(default, deserialize_with = "null_as_default")]
    pub ip_ranges: Vec<Vec<RangeConf>>,
    /// Capability `mac` (bridge).
    #[serde(default)]
    pub mac: Option<String>,
}

/// One `portMappings` entry, kept as given so the plugin can validate it and
/// name the bad value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// Port on the host.
    #[serde(default)]
    pub host_port: i64,
    /// Port in the container.
    #[serde(default)]
    pub container_port: i64,
    /// `tcp`, `udp` or `sctp` (empty means tcp).
    #[serde(default)]
    pub protocol: String,
    /// Host address to restrict the mapping to; empty, `0.0.0.0` or `::` mean any.
    #[serde(default, rename = "hostIP")]
    pub host_ip: String,
}

/// One IP range as written in `ipam.ranges` or `runtimeConfig.ipRanges`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeConf {
    /// The subnet (must be the network address); a prefix length is required.
    #[serde(deserialize_with = "cidr_with_prefix")]
    pub subnet: IpNetwork,
    /// First address to allocate (inclusive).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_ip_as_none"
    )]
    pub range_start: Option<IpAddr>,
    /// Last address to allocate (inclusive).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_ip_as_none"
    )]
    pub range_end: Option<IpAddr>,
    /// Gateway of the subnet.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_ip_as_none"
    )]
    pub gateway: Option<IpAddr>,
}

/// The `args` key of a network configuration.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ArgsConf {
    /// `args.cni`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cni: CniArgsSection,
}

/// `args.cni`: per-attachment requests.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CniArgsSection {
    /// Requested addresses (`ip` or `ip/prefix`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub ips: Vec<String>,
    /// Requested MAC address.
    #[serde(default)]
    pub mac: Option<String>,
}

/// One attachment in GC's valid list.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GcAttachment {
    /// Container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The plugin's keys of a bridge-like plugin, for the NetConf tests (here and in
    /// `gojson`'s).
    #[derive(Debug, Default, Deserialize)]
    #[serde(rename_all = "camelCase")]
    pub(crate) struct Bridgeish {
        pub(crate) bridge: Option<String>,
        #[serde(default)]
        pub(crate) is_gateway: bool,
    }

    #[test]
    fn plugin_keys_are_flattened_and_unknown_keys_ignored() {
        let c: NetConf<Bridgeish> = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","name":"n","type":"bridge","bridge":"br0",
                "isGateway":true,"somethingElse":[1,2],
                "ipam":{"type":"host-local","subnet":"10.0.0.0/24"}}"#,
        )
        .unwrap();
        assert_eq!(c.plugin.bridge.as_deref(), Some("br0"));
        assert!(c.plugin.is_gateway);
        assert_eq!(c.ipam_type(), Some("host-local"));
        assert_eq!(c.ipam.as_ref().unwrap().raw["subnet"], "10.0.0.0/24");
    }

    #[test]
    fn struct_keys_lists_renamed_fields() {
        assert_eq!(
            struct_keys::<PortMapping>(),
            ["hostPort", "containerPort", "protocol", "hostIP"]
        );
        assert_eq!(
            struct_keys::<RangeConf>(),
            ["subnet", "rangeStart", "rangeEnd", "gateway"]
        );
        assert!(struct_keys::<String>().is_empty());
    }

    #[test]
    fn ipam_of_the_wrong_type_keeps_serdes_message() {
        let e = serde_json::from_str::<NetConf>(r#"{"name":"n","IPAM":"x"}"#).unwrap_err();
        assert!(
            e.to_string()
                .contains(r#"invalid type: string "x", expected a map"#),
            "{e}"
        );
        let e = serde_json::from_str::<NetConf>(r#"{"name":"n","ipam":{"type":5}}"#).unwrap_err();
        assert!(e.to_string().contains("ipam.type must be a string"), "{e}");
    }

    #[test]
    fn empty_ipam_means_layer_two() {
        for ipam in [r#""ipam":{}"#, r#""ipam":null"#, r#""ipam":{"type":""}"#] {
            let c: NetConf = serde_json::from_str(&format!(r#"{{"name":"n",{ipam}}}"#)).unwrap();
            assert_eq!(c.ipam_type(), None, "{ipam}");
        }
    }

    #[test]
    fn runtime_config_capabilities() {
        let c: NetConf = serde_json::from_str(
            r#"{"name":"n","runtimeConfig":{
                "portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":"127.0.0.1"}],
                "ips":["10.0.0.5/24"],"mac":"c2:11:22:33:44:55",
                "ipRanges":[[{"subnet":"10.9.0.0/24","rangeStart":"10.9.0.10"}]]},
                "args":{"cni":{"ips":["10.0.0.6"],"mac":"c2:00:00:00:00:01"}}}"#,
        )
        .unwrap();
        let pm = &c.runtime_config.port_mappings[0];
        assert_eq!((pm.host_port, pm.container_port), (8080, 80));
        assert_eq!(pm.host_ip, "127.0.0.1");
        assert_eq!(c.runtime_config.ips, ["10.0.0.5/24"]);
        assert_eq!(c.runtime_config.mac.as_deref(), Some("c2:11:22:33:44:55"));
        assert_eq!(
            c.runtime_config.ip_ranges[0][0].range_start,
            Some("10.9.0.10".parse().unwrap())
        );
        assert_eq!(c.args.cni.ips, ["10.0.0.6"]);
        assert_eq!(c.args.cni.mac.as_deref(), Some("c2:00:00:00:00:01"));
    }

    #[test]
    fn range_subnet_needs_a_prefix() {
        let e = serde_json::from_str::<RangeConf>(r#"{"subnet":"10.9.0.0"}"#).unwrap_err();
        assert!(
            e.to_string().contains("invalid CIDR address: 10.9.0.0"),
            "{e}"
        );
        let e = serde_json::from_str::<RangeConf>(r#"{"subnet":"10.9.0.0/99"}"#).unwrap_err();
        assert!(e.to_string().contains("invalid CIDR address"), "{e}");
        let r: RangeConf = serde_json::from_str(r#"{"subnet":"fd00::/64"}"#).unwrap();
        assert_eq!(r.subnet.prefix(), 64);
    }

    #[test]
    fn null_lists_are_empty() {
        let c: NetConf = serde_json::from_str(
            r#"{"name":"n","runtimeConfig":{"portMappings":null,"ips":null},"args":null,"capabilities":null}"#,
        )
        .unwrap();
        assert!(c.runtime_config.port_mappings.is_empty());
        assert!(c.runtime_config.ips.is_empty());
    }

    #[test]
    fn gc_lists_merge_both_keys() {
        let c: NetConf = serde_json::from_str(
            r#"{"name":"n",
              "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],
              "cni.dev/attachments":[{"containerID":"a","ifname":"eth0"},{"containerID":"b","ifname":"eth1"}]}"#,
        )
        .unwrap();
        let all = c.gc_valid_attachments().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1].container_id, "b");
        let none: NetConf = serde_json::from_str(r#"{"name":"n"}"#).unwrap();
        assert!(none.gc_valid_attachments().is_none());
    }

    #[test]
    fn prev_result_uses_config_version_when_missing() {
        let mut c: NetConf = serde_json::from_str(
            r#"{"name":"n","prevResult":{"ips":[{"version":"4","address":"10.0.0.2/24"}]}}"#,
        )
        .unwrap();
        c.version = crate::version::V0_4_0;
        let r = c.prev_result().unwrap().unwrap();
        assert_eq!(r.ips[0].address.to_string(), "10.0.0.2/24");
    }
}
