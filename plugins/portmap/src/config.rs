//! Plugin keys and port mappings, validated (errors are code 7 and name the value).

use std::net::IpAddr;

use cni::{Error, NetConf, Result};
use cni_netfilter::portmap::{PortMapOptions, PortMapping, Protocol, Request};
use cni_netfilter::{Backend, Firewall, firewall};
use ipnetwork::IpNetwork;
use serde::Deserialize;

use crate::errors::to_cni;

/// The portmap keys of the network configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortmapConfig {
    /// Masquerade hairpin/localhost traffic (default true).
    #[serde(default)]
    pub snat: Option<bool>,
    /// Masquerade traffic to the mapped ports from any source.
    #[serde(default)]
    pub masq_all: Option<bool>,
    /// iptables mark bit (0..=31, default 13).
    #[serde(default)]
    pub mark_masq_bit: Option<i64>,
    /// iptables chain to jump to instead of `CNI-HOSTPORT-SETMARK`.
    #[serde(default)]
    pub external_set_mark_chain: Option<String>,
    /// Extra IPv4 match tokens.
    #[serde(default, rename = "conditionsV4")]
    pub conditions_v4: Option<Vec<String>>,
    /// Extra IPv6 match tokens.
    #[serde(default, rename = "conditionsV6")]
    pub conditions_v6: Option<Vec<String>>,
    /// `iptables` or `nftables`; auto-detected when absent.
    #[serde(default)]
    pub backend: Option<String>,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    /// Rule options.
    pub options: PortMapOptions,
    /// Mappings.
    pub mappings: Vec<PortMapping>,
    requested: Option<String>,
    iptables_only: Vec<&'static str>,
    nftables_only: Vec<&'static str>,
}

/// Condition tokens become part of an `nft -f` script or an
/// `iptables-restore` batch, so they must not be able to end the rule they
/// belong to: no control characters (a newline starts a new command) in any
/// list, no `;` (command separator) or `#` (comment) in nftables conditions,
/// no quotes in iptables conditions (the restore format cannot carry them).
fn validate_condition_tokens(name: &str, list: &[String], nft: bool) -> Result<()> {
    for token in list {
        let bad = token.chars().find(|&ch| {
            ch.is_control()
                || (nft && matches!(ch, ';' | '#'))
                || (!nft && matches!(ch, '"' | '\''))
        });
        if let Some(ch) = bad {
            return Err(Error::invalid_config(format!(
                "{name}: condition {token:?} contains the character {ch:?}, which is not allowed"
            )));
        }
        if token.is_empty() {
            return Err(Error::invalid_config(format!(
                "{name}: empty condition token"
            )));
        }
    }
    Ok(())
}

/// A condition list is nftables-flavoured unless its first token looks like an iptables
/// option (`-m`, `!`).
fn is_nft_conditions(c: &[String]) -> bool {
    c.first()
        .is_some_and(|t| !t.starts_with('-') && !t.starts_with('!'))
}

fn port(value: i64, what: &str) -> Result<u16> {
    u16::try_from(value).ok().filter(|p| *p > 0).ok_or_else(|| {
        Error::invalid_config(format!(
            "Invalid {what} port number: {value} (must be 1..65535)"
        ))
    })
}

fn mapping(m: &cni::PortMapping) -> Result<PortMapping> {
    let protocol = if m.protocol.is_empty() {
        Protocol::Tcp
    } else {
        Protocol::parse(&m.protocol).map_err(to_cni)?
    };
    let host_ip = if m.host_ip.is_empty() {
        None
    } else {
        Some(m.host_ip.parse::<IpAddr>().map_err(|_| {
            Error::invalid_config(format!(
                "invalid hostIP \"{}\" in port mapping {}",
                m.host_ip, m.host_port
            ))
        })?)
    };
    Ok(PortMapping {
        host_port: port(m.host_port, "host")?,
        container_port: port(m.container_port, "container")?,
        protocol,
        host_ip,
    })
}

/// Validates the configuration (reference rules for option combinations).
pub(crate) fn parse(conf: &NetConf<PortmapConfig>) -> Result<Parsed> {
    let c = &conf.plugin;
    if c.mark_masq_bit.is_some() && c.external_set_mark_chain.is_some() {
        return Err(Error::invalid_config(
            "Cannot specify externalSetMarkChain and markMasqBit",
        ));
    }
    let bit = c.mark_masq_bit.unwrap_or(13);
    let mark_masq_bit = u8::try_from(bit).ok().filter(|b| *b <= 31).ok_or_else(|| {
        Error::invalid_config(format!("MasqMarkBit must be between 0 and 31, got {bit}"))
    })?;
    let v4 = c.conditions_v4.clone().unwrap_or_default();
    let v6 = c.conditions_v6.clone().unwrap_or_default();
    let mut iptables_only = Vec::new();
    let mut nftables_only = Vec::new();
    if c.external_set_mark_chain.is_some() {
        iptables_only.push("externalSetMarkChain");
    }
    for (name, list) in [("conditionsV4", &v4), ("conditionsV6", &v6)] {
        if list.is_empty() {
            continue;
        }
        let nft = is_nft_conditions(list);
        validate_condition_tokens(name, list, nft)?;
        if nft {
            nftables_only.push(name);
        } else {
            iptables_only.push(name);
        }
    }
    let mappings = conf
        .runtime_config
        .port_mappings
        .iter()
        .map(mapping)
        .collect::<Result<Vec<_>>>()?;
    let parsed = Parsed {
        options: PortMapOptions {
            snat: c.snat.unwrap_or(true),
            masq_all: c.masq_all.unwrap_or(false),
            mark_masq_bit,
            external_set_mark_chain: c.external_set_mark_chain.clone(),
            conditions_v4: v4,
            conditions_v6: v6,
        },
        mappings,
        requested: c.backend.clone(),
        iptables_only,
        nftables_only,
    };
    parsed.check_backend_options()?;
    Ok(parsed)
}

impl Parsed {
    fn check_backend_options(&self) -> Result<()> {
        let requested = match self.requested.as_deref() {
            None => None,
            Some(name) => Some(Backend::parse(name).map_err(to_cni)?),
        };
        let conflict = |backend: &str, other: &str, keys: &[&str]| {
            Error::invalid_config(format!(
                "{backend} backend was requested but configuration contains {other}-specific options [{}]",
                keys.join(" ")
            ))
        };
        match requested {
            Some(Backend::Iptables) if !self.nftables_only.is_empty() => {
                Err(conflict("iptables", "nftables", &self.nftables_only))
            }
            Some(Backend::Nftables) if !self.iptables_only.is_empty() => {
                Err(conflict("nftables", "iptables", &self.iptables_only))
            }
            None if !self.iptables_only.is_empty() && !self.nftables_only.is_empty() => {
                Err(Error::invalid_config(format!(
                    "configuration mixes iptables-specific options [{}] and nftables-specific options [{}]",
                    self.iptables_only.join(" "),
                    self.nftables_only.join(" ")
                )))
            }
            _ => Ok(()),
        }
    }

    /// The backend: requested, implied by backend-specific options, or auto-detected
    /// (by installed tools, see [`firewall::select`]).
    pub(crate) fn firewall(&self) -> Result<&'static dyn Firewall> {
        self.firewall_with(false)
    }

    /// [`Parsed::firewall`] with auto-detection by real probes (STATUS).
    pub(crate) fn firewall_probed(&self) -> Result<&'static dyn Firewall> {
        self.firewall_with(true)
    }

    fn firewall_with(&self, probe: bool) -> Result<&'static dyn Firewall> {
        let implied = if !self.nftables_only.is_empty() {
            Some(Backend::Nftables)
        } else if !self.iptables_only.is_empty() {
            Some(Backend::Iptables)
        } else {
            None
        };
        let requested = self.requested.as_deref().or(implied.map(Backend::name));
        if probe {
            firewall::select_probed(requested).map_err(to_cni)
        } else {
            firewall::select(requested).map_err(to_cni)
        }
    }

    /// The request for the container addresses `ips`.
    pub(crate) fn request<'a>(&'a self, ips: &'a [IpNetwork]) -> Request<'a> {
        Request::new(&self.options, &self.mappings, ips)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(json: serde_json::Value) -> NetConf<PortmapConfig> {
        serde_json::from_value(json).unwrap()
    }

    fn base(extra: serde_json::Value) -> NetConf<PortmapConfig> {
        let mut v = serde_json::json!({"cniVersion": "1.0.0", "name": "n", "type": "portmap"});
        for (k, val) in extra.as_object().unwrap() {
            v[k] = val.clone();
        }
        conf(v)
    }

    #[test]
    fn condition_tokens_cannot_end_the_rule() {
        for (backend, cond) in [
            ("nftables", "ip saddr 1.2.3.4 counter ; add table ip evil"),
            ("nftables", "ip saddr 1.2.3.4\nadd table ip evil"),
            ("nftables", "ip saddr 1.2.3.4 # the rest is a comment"),
            ("iptables", "-s\n-A"),
            ("iptables", "\"quoted\""),
        ] {
            let first = if backend == "iptables" { "-m" } else { "ip" };
            let e = parse(&base(
                serde_json::json!({"backend": backend, "conditionsV4": [first, cond]}),
            ))
            .unwrap_err();
            assert_eq!(e.code, 7, "{backend} {cond:?}: {e}");
            assert!(e.msg.contains("conditionsV4"), "{e}");
        }
        parse(&base(serde_json::json!({"backend": "nftables",
            "conditionsV4": ["ip", "saddr", "{ 10.0.0.0/8, 192.168.0.0/16 }"]})))
        .unwrap();
        parse(&base(serde_json::json!({"backend": "iptables",
            "conditionsV6": ["!", "-s", "fd00::/8"]})))
        .unwrap();
    }

    #[test]
    fn mappings_are_validated_and_named() {
        let bad_port = base(
            serde_json::json!({"runtimeConfig": {"portMappings": [{"hostPort": 0, "containerPort": 80, "protocol": "tcp"}]}}),
        );
        let e = parse(&bad_port).unwrap_err();
        assert_eq!(
            (e.code, e.msg.contains("host port number: 0")),
            (7, true),
            "{e}"
        );
        let big = base(
            serde_json::json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 70000, "protocol": "tcp"}]}}),
        );
        assert!(parse(&big).unwrap_err().msg.contains("70000"));
        let proto = base(
            serde_json::json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]}}),
        );
        let e = parse(&proto).unwrap_err();
        assert_eq!((e.code, e.msg.contains("icmp")), (7, true), "{e}");
        let ip = base(
            serde_json::json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 80, "protocol": "udp", "hostIP": "nope"}]}}),
        );
        assert!(parse(&ip).unwrap_err().msg.contains("nope"));
        let ok = base(
            serde_json::json!({"runtimeConfig": {"portMappings": [{"hostPort": 80, "containerPort": 8080, "protocol": "UDP", "hostIP": "::"}]}}),
        );
        let p = parse(&ok).unwrap();
        assert_eq!(p.mappings[0].protocol, Protocol::Udp);
        assert!(p.options.snat && p.options.mark_masq_bit == 13);
    }

    #[test]
    fn option_rules() {
        let e = parse(&base(
            serde_json::json!({"markMasqBit": 5, "externalSetMarkChain": "X"}),
        ))
        .unwrap_err();
        assert!(
            e.msg
                .contains("Cannot specify externalSetMarkChain and markMasqBit")
        );
        assert!(
            parse(&base(serde_json::json!({"markMasqBit": 32})))
                .unwrap_err()
                .msg
                .contains("between 0 and 31")
        );
        let e = parse(&base(serde_json::json!({"backend": "ebpf"}))).unwrap_err();
        assert_eq!(e.code, 2);
        assert!(format!("{e}").contains("ebpf"));
        let e = parse(&base(
            serde_json::json!({"backend": "iptables", "conditionsV4": ["ip", "saddr", "1.2.3.4"]}),
        ))
        .unwrap_err();
        assert!(e.msg.contains("iptables backend was requested but configuration contains nftables-specific options [conditionsV4]"), "{e}");
        let e = parse(&base(serde_json::json!({"backend": "nftables", "externalSetMarkChain": "X", "conditionsV4": ["-m", "x"], "conditionsV6": ["!", "-s", "::1"]}))).unwrap_err();
        assert!(
            e.msg
                .contains("[externalSetMarkChain conditionsV4 conditionsV6]"),
            "{e}"
        );
        let p = parse(&base(
            serde_json::json!({"conditionsV4": ["ip", "saddr", "1.2.3.4"]}),
        ))
        .unwrap();
        assert_eq!(p.firewall().unwrap().backend(), Backend::Nftables);
        let p = parse(&base(
            serde_json::json!({"externalSetMarkChain": "X", "snat": false}),
        ))
        .unwrap();
        assert_eq!(p.firewall().unwrap().backend(), Backend::Iptables);
        assert!(!p.options.snat);
    }
}
