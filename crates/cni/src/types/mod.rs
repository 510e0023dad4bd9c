//! The CNI ADD result (SPEC.md "Success"), held in one version-independent
//! model ([`Success`], the 1.1.0 shape) and printed or parsed in any
//! supported version's layout by the `wire` module.

mod wire;

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::error::{Code, Error, Result};
use crate::version::SpecVersion;

/// An interface created or configured by a plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    /// Interface name.
    pub name: String,
    /// Hardware address, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path (CNI_NETNS) for container interfaces; absent for host ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// vhost-user or similar socket path (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<String>,
    /// PCI address of the device (1.1.0).
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

/// One IP address assigned to an interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Index into the result's `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    /// The address with its prefix length (host bits kept: `10.1.2.3/24`).
    pub address: IpNetwork,
    /// The default gateway for this subnet, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
}

/// A route to install or that was installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination network.
    pub dst: IpNetwork,
    /// Next hop; absent means the IP config's gateway or on-link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    /// Route MTU (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    /// Route priority / metric (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// Routing table (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    /// Route scope (1.1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    /// A plain route to `dst` via `gw`.
    pub fn new(dst: IpNetwork, gw: Option<IpAddr>) -> Self {
        Self {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings (both in configurations and in results).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers, in order of preference.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::conf::null_as_default"
    )]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::conf::null_as_default"
    )]
    pub search: Vec<String>,
    /// Resolver options.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "crate::conf::null_as_default"
    )]
    pub options: Vec<String>,
}

impl Dns {
    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A successful ADD result, independent of the spec version it is printed in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Success {
    /// Interfaces, in order (IP configs refer to them by index).
    pub interfaces: Vec<Interface>,
    /// Assigned addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS information.
    pub dns: Dns,
}

impl Success {
    /// The result in the layout of `version`, as a JSON value.
    ///
    /// # Errors
    /// Code 1 when the result cannot be expressed in that version: 0.1.0 and
    /// 0.2.0 need at least one IP address.
    pub fn to_value(&self, version: SpecVersion) -> Result<serde_json::Value> {
        wire::to_wire(self, version)?.to_value()
    }

    /// The result printed as JSON in the layout of `version` (4-space indent
    /// like the reference plugins).
    ///
    /// # Errors
    /// As [`Success::to_value`].
    pub fn to_json(&self, version: SpecVersion) -> Result<String> {
        crate::pretty_json(&wire::to_wire(self, version)?)
    }

    /// Parse a result in any supported version's layout. `default_version` is
    /// used when the JSON has no `cniVersion` (as for a `prevResult` that
    /// omits it).
    ///
    /// # Errors
    /// Code 1 for an unsupported `cniVersion`, code 6 when the JSON does not
    /// have that version's shape.
    pub fn from_value(value: &serde_json::Value, default_version: SpecVersion) -> Result<Self> {
        wire::from_value(value, default_version)
    }

    /// Parse a result from bytes (see [`Success::from_value`]).
    ///
    /// # Errors
    /// Code 6 for invalid JSON, otherwise as [`Success::from_value`].
    pub fn from_slice(bytes: &[u8], default_version: SpecVersion) -> Result<Self> {
        let v: serde_json::Value = crate::gojson::parse_slice(bytes)
            .map_err(|e| Error::new(Code::Decode, format!("failed to decode result: {e}")))?;
        Self::from_value(&v, default_version)
    }

    /// The IP configs of one family (`true` = IPv4).
    pub fn ips_of_family(&self, ipv4: bool) -> impl Iterator<Item = &IpConfig> {
        self.ips
            .iter()
            .filter(move |ip| ip.address.is_ipv4() == ipv4)
    }
}

#[cfg(test)]
mod tests;
