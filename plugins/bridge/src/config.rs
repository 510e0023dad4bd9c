//! Configuration: the reference bridge's keys and their validation.
//!
//! [`BridgeConf`] is what serde decodes (type errors become code 7 in the skel);
//! [`Settings::new`] validates it together with the runtime inputs (MAC precedence:
//! `CNI_ARGS` `MAC=` < `args.cni.mac` < `runtimeConfig.mac`). Invalid values are code 7,
//! an unknown `ipMasqBackend` is code 2.

use cni::{CmdArgs, Error, NetConf};
use cni_netlink::MacAddr;
use serde::Deserialize;

/// Default bridge name.
pub const DEFAULT_BRIDGE: &str = "cni0";

/// One `vlanTrunk` entry: `{"id": N}` or `{"minID": A, "maxID": B}` (or both).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TrunkEntry {
    /// Lower end of a range.
    #[serde(rename = "minID")]
    pub min_id: Option<i64>,
    /// Upper end of a range.
    #[serde(rename = "maxID")]
    pub max_id: Option<i64>,
    /// A single VLAN.
    pub id: Option<i64>,
}

/// The plugin's own configuration keys (unknown keys are ignored, as in Go).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BridgeConf {
    /// Bridge name (default `cni0`).
    #[serde(default)]
    pub bridge: Option<String>,
    /// Put the gateway address on the bridge and enable forwarding.
    #[serde(default)]
    pub is_gateway: bool,
    /// Add a default route via the gateway (implies `isGateway`).
    #[serde(default)]
    pub is_default_gateway: bool,
    /// Replace a conflicting bridge address instead of failing.
    #[serde(default)]
    pub force_address: bool,
    /// Masquerade traffic leaving the container subnet.
    #[serde(default)]
    pub ip_masq: bool,
    /// `iptables` or `nftables`; auto-detected when absent.
    #[serde(default)]
    pub ip_masq_backend: Option<String>,
    /// MTU of a newly created bridge and of both veth ends (0 = kernel default).
    #[serde(default)]
    pub mtu: i64,
    /// Hairpin mode on the host port.
    #[serde(default)]
    pub hairpin_mode: bool,
    /// Promiscuous mode on the bridge.
    #[serde(default)]
    pub promisc_mode: bool,
    /// Access VLAN of the host port (0 = none).
    #[serde(default)]
    pub vlan: i64,
    /// Trunk VLANs of the host port.
    #[serde(default)]
    pub vlan_trunk: Option<Vec<TrunkEntry>>,
    /// Keep the kernel's default VLAN 1 on the new port.
    #[serde(default)]
    pub preserve_default_vlan: bool,
    /// nftables rules allowing only the container MAC from the host port.
    #[serde(default, rename = "macspoofchk")]
    pub mac_spoof_chk: bool,
    /// Enable (enhanced) duplicate address detection in the container.
    #[serde(default, rename = "enabledad")]
    pub enable_dad: bool,
    /// Leave the container interface down (layer 2 only).
    #[serde(default)]
    pub disable_container_interface: bool,
    /// Set the bridge-port `isolated` flag on the host port.
    #[serde(default)]
    pub port_isolation: bool,
}

/// Validated settings for one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Bridge name.
    pub bridge: String,
    /// Gateway address on the bridge.
    pub is_gateway: bool,
    /// Default route via the gateway.
    pub is_default_gateway: bool,
    /// Replace conflicting bridge addresses.
    pub force_address: bool,
    /// Masquerade.
    pub ip_masq: bool,
    /// Requested backend name.
    pub ip_masq_backend: Option<String>,
    /// MTU, `None` for the kernel default.
    pub mtu: Option<u32>,
    /// Hairpin.
    pub hairpin: bool,
    /// Promiscuous bridge.
    pub promisc: bool,
    /// Access VLAN (0 = none).
    pub vlan: u16,
    /// Trunk VLANs, sorted and de-duplicated; `None` when `vlanTrunk` is absent.
    pub trunk: Option<Vec<u16>>,
    /// Keep VLAN 1 on new ports.
    pub preserve_default_vlan: bool,
    /// MAC spoof check.
    pub mac_spoof_chk: bool,
    /// DAD in the container.
    pub enable_dad: bool,
    /// Container interface stays down.
    pub disable_container_interface: bool,
    /// Isolated port.
    pub port_isolation: bool,
    /// MAC for the container interface.
    pub mac: Option<MacAddr>,
}

impl Settings {
    /// True when VLAN filtering is needed (access VLAN or any trunk list, even empty).
    pub fn uses_vlans(&self) -> bool {
        self.vlan != 0 || self.trunk.is_some()
    }

    /// Validates the configuration (and, when `args` is given, the runtime MAC inputs).
    ///
    /// # Errors
    /// Code 7 for invalid values, code 4 for malformed or unknown `CNI_ARGS`.
    pub fn new(conf: &NetConf<BridgeConf>, args: Option<&CmdArgs>) -> cni::Result<Self> {
        let c = &conf.plugin;
        let bridge = c
            .bridge
            .clone()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
        if bridge.len() > 15
            || bridge.contains(['/', ':'])
            || bridge.chars().any(char::is_whitespace)
        {
            return Err(Error::invalid_config(format!(
                "invalid bridge name {bridge:?} (at most 15 bytes, no '/', ':' or whitespace)"
            )));
        }
        if !(0..=4094).contains(&c.vlan) {
            return Err(Error::invalid_config(format!(
                "invalid VLAN ID {} (must be between 0 and 4094)",
                c.vlan
            )));
        }
        let trunk = c.vlan_trunk.as_deref().map(collect_trunk).transpose()?;
        if c.hairpin_mode && c.promisc_mode {
            return Err(Error::invalid_config(
                "cannot set hairpin mode and promiscuous mode at the same time",
            ));
        }
        if c.disable_container_interface && conf.ipam_type().is_some() {
            return Err(Error::invalid_config(
                "cannot use IPAM when DisableContainerInterface flag is set",
            ));
        }
        let mtu = match u32::try_from(c.mtu) {
            Ok(0) => None,
            Ok(m) if (68..=65535).contains(&m) => Some(m),
            _ => {
                return Err(Error::invalid_config(format!(
                    "invalid mtu {} (must be 0 or between 68 and 65535)",
                    c.mtu
                )));
            }
        };
        if let Some(b) = &c.ip_masq_backend
            && b != "iptables"
            && b != "nftables"
        {
            return Err(Error::unsupported_field("ipMasqBackend", b));
        }
        let mac = match args {
            Some(a) => select_mac(conf, a)?,
            None => None,
        };
        Ok(Self {
            bridge,
            is_gateway: c.is_gateway || c.is_default_gateway,
            is_default_gateway: c.is_default_gateway,
            force_address: c.force_address,
            ip_masq: c.ip_masq,
            ip_masq_backend: c.ip_masq_backend.clone(),
            mtu,
            hairpin: c.hairpin_mode,
            promisc: c.promisc_mode,
            vlan: u16::try_from(c.vlan).unwrap_or_default(),
            trunk,
            preserve_default_vlan: c.preserve_default_vlan,
            mac_spoof_chk: c.mac_spoof_chk,
            enable_dad: c.enable_dad,
            disable_container_interface: c.disable_container_interface,
            port_isolation: c.port_isolation,
            mac,
        })
    }
}

/// Expands `vlanTrunk` into sorted unique VLAN ids, with the reference's messages.
///
/// # Errors
/// Code 7 for out-of-range ids, inverted or half-specified ranges.
pub fn collect_trunk(entries: &[TrunkEntry]) -> cni::Result<Vec<u16>> {
    let valid = |v: i64| (1..=4094).contains(&v);
    let bad = |m: &str| Error::invalid_config(m.to_string());
    let mut out = Vec::new();
    for e in entries {
        match (e.min_id, e.max_id) {
            (Some(min), Some(max)) => {
                if !valid(min) {
                    return Err(bad("incorrect trunk minID parameter"));
                }
                if !valid(max) {
                    return Err(bad("incorrect trunk maxID parameter"));
                }
                if max < min {
                    return Err(bad("minID is greater than maxID in trunk parameter"));
                }
                out.extend(min..=max);
            }
            (None, Some(_)) => {
                return Err(bad(
                    "minID and maxID should be configured simultaneously, minID is missing",
                ));
            }
            (Some(_), None) => {
                return Err(bad(
                    "minID and maxID should be configured simultaneously, maxID is missing",
                ));
            }
            (None, None) => {}
        }
        if let Some(id) = e.id {
            if !valid(id) {
                return Err(bad("incorrect trunk id parameter"));
            }
            out.push(id);
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out
        .into_iter()
        .filter_map(|v| u16::try_from(v).ok())
        .collect())
}

/// The container MAC: `runtimeConfig.mac` > `args.cni.mac` > `CNI_ARGS` `MAC=`.
fn select_mac(conf: &NetConf<BridgeConf>, args: &CmdArgs) -> cni::Result<Option<MacAddr>> {
    let cni_args = args.cni_args()?;
    cni_args.require_known(&["MAC"])?;
    let from_conf = conf
        .runtime_config
        .mac
        .as_deref()
        .map(|m| ("runtimeConfig.mac", m))
        .or_else(|| conf.args.cni.mac.as_deref().map(|m| ("args.cni.mac", m)));
    // CNI_ARGS MAC only when the configuration names none (CONVENTIONS.md).
    let chosen = match from_conf {
        Some(c) => Some(c),
        None => cni_args.get("MAC")?.map(|m| ("CNI_ARGS MAC", m)),
    };
    match chosen {
        None => Ok(None),
        Some((key, m)) => m
            .parse::<MacAddr>()
            .map(Some)
            .map_err(|_| Error::invalid_config(format!("{key}: invalid MAC address {m:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(json: &str) -> NetConf<BridgeConf> {
        serde_json::from_str(json).unwrap()
    }

    fn base(extra: &str) -> String {
        format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"bridge"{extra}}}"#)
    }

    fn args(cni_args: &str) -> CmdArgs {
        CmdArgs {
            command: cni::Command::Add,
            container_id: "c".into(),
            netns: None,
            ifname: "eth0".into(),
            args: cni_args.into(),
            path: vec![],
            stdin: vec![],
        }
    }

    fn err(extra: &str) -> Error {
        Settings::new(&conf(&base(extra)), None).unwrap_err()
    }

    #[test]
    fn defaults() {
        let s = Settings::new(&conf(&base("")), None).unwrap();
        assert_eq!(s.bridge, "cni0");
        assert!(!s.is_gateway && !s.ip_masq && !s.uses_vlans());
        assert_eq!(s.mtu, None);
    }

    #[test]
    fn default_gateway_implies_gateway() {
        let s = Settings::new(&conf(&base(r#","isDefaultGateway":true"#)), None).unwrap();
        assert!(s.is_gateway && s.is_default_gateway);
    }

    #[test]
    fn vlan_range_messages() {
        let e = err(r#","vlan":-100"#);
        assert_eq!(e.code, 7);
        assert_eq!(e.msg, "invalid VLAN ID -100 (must be between 0 and 4094)");
        assert_eq!(
            err(r#","vlan":5000"#).msg,
            "invalid VLAN ID 5000 (must be between 0 and 4094)"
        );
        let s = Settings::new(&conf(&base(r#","vlan":0,"vlanTrunk":[]"#)), None).unwrap();
        assert!(
            s.uses_vlans(),
            "an empty trunk list still enables filtering"
        );
    }

    #[test]
    fn trunk_collection_and_errors() {
        let t = |j: &str| collect_trunk(&serde_json::from_str::<Vec<TrunkEntry>>(j).unwrap());
        assert_eq!(t("[]").unwrap(), Vec::<u16>::new());
        assert_eq!(
            t(r#"[{"minID":100,"maxID":103}]"#).unwrap(),
            vec![100, 101, 102, 103]
        );
        assert_eq!(t(r#"[{"id":5}]"#).unwrap(), vec![5]);
        assert_eq!(
            t(r#"[{"id":102},{"minID":100,"maxID":103},{"id":7}]"#).unwrap(),
            vec![7, 100, 101, 102, 103]
        );
        let cases = [
            (
                r#"[{"minID":0,"maxID":10}]"#,
                "incorrect trunk minID parameter",
            ),
            (
                r#"[{"minID":4095,"maxID":10}]"#,
                "incorrect trunk minID parameter",
            ),
            (
                r#"[{"minID":1,"maxID":0}]"#,
                "incorrect trunk maxID parameter",
            ),
            (
                r#"[{"minID":1,"maxID":4095}]"#,
                "incorrect trunk maxID parameter",
            ),
            (
                r#"[{"minID":10,"maxID":5}]"#,
                "minID is greater than maxID in trunk parameter",
            ),
            (
                r#"[{"maxID":5}]"#,
                "minID and maxID should be configured simultaneously, minID is missing",
            ),
            (
                r#"[{"minID":5}]"#,
                "minID and maxID should be configured simultaneously, maxID is missing",
            ),
            (r#"[{"id":0}]"#, "incorrect trunk id parameter"),
            (r#"[{"id":4095}]"#, "incorrect trunk id parameter"),
        ];
        for (j, msg) in cases {
            let e = t(j).unwrap_err();
            assert_eq!((e.code, e.msg.as_str()), (7, msg), "{j}");
        }
    }

    #[test]
    fn incompatible_options() {
        assert_eq!(
            err(r#","hairpinMode":true,"promiscMode":true"#).msg,
            "cannot set hairpin mode and promiscuous mode at the same time"
        );
        let e = err(r#","disableContainerInterface":true,"ipam":{"type":"host-local"}"#);
        assert_eq!(
            e.msg,
            "cannot use IPAM when DisableContainerInterface flag is set"
        );
        assert!(
            Settings::new(
                &conf(&base(r#","disableContainerInterface":true,"ipam":{}"#)),
                None
            )
            .is_ok()
        );
        assert_eq!(err(r#","mtu":-1"#).code, 7);
        assert_eq!(err(r#","mtu":70000"#).code, 7);
        assert_eq!(err(r#","bridge":"a-very-long-bridge-name""#).code, 7);
    }

    #[test]
    fn unknown_backend_is_code_2() {
        let e = err(r#","ipMasq":true,"ipMasqBackend":"ebpf""#);
        assert_eq!(e.code, 2);
        assert!(
            e.msg.contains("ipMasqBackend") && e.msg.contains("ebpf"),
            "{}",
            e.msg
        );
        assert!(Settings::new(&conf(&base(r#","ipMasqBackend":"nftables""#)), None).is_ok());
    }

    #[test]
    fn mac_precedence() {
        let m = |j: &str, a: &str| {
            Settings::new(&conf(&base(j)), Some(&args(a)))
                .unwrap()
                .mac
                .map(|m| m.to_string())
        };
        assert_eq!(m("", ""), None);
        assert_eq!(
            m("", "MAC=0a:00:00:00:00:01"),
            Some("0a:00:00:00:00:01".into())
        );
        assert_eq!(
            m(
                r#","args":{"cni":{"mac":"0a:00:00:00:00:02"}}"#,
                "MAC=0a:00:00:00:00:01"
            ),
            Some("0a:00:00:00:00:02".into())
        );
        assert_eq!(
            m(
                r#","args":{"cni":{"mac":"0a:00:00:00:00:02"}},"runtimeConfig":{"mac":"0a:00:00:00:00:03"}"#,
                "MAC=0a:00:00:00:00:01"
            ),
            Some("0a:00:00:00:00:03".into())
        );
        let e = Settings::new(&conf(&base("")), Some(&args("MAC=zz"))).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("zz"));
        let e = Settings::new(&conf(&base("")), Some(&args("FOO=1"))).unwrap_err();
        assert_eq!(e.code, 4);
        assert!(Settings::new(&conf(&base("")), Some(&args("IgnoreUnknown=1;FOO=1"))).is_ok());
    }
}
