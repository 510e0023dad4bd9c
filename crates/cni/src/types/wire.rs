//! The JSON layouts of each result family, and conversion between them and
//! the [`Success`] model.
//!
//! * 0.1.0 / 0.2.0 (`types/020`): `ip4` / `ip6` objects each with `ip`,
//!   `gateway` and the routes of that family; no interfaces. Only the first
//!   address of each family fits; route fields newer than `dst`/`gw` are
//!   dropped.
//! * 0.3.0 / 0.3.1 / 0.4.0 (`types/040`): `interfaces`, `ips` (with a
//!   mandatory `version` of "4" or "6"), `routes`, `dns`. The 1.1.0 route
//!   fields are kept (as the reference does); interface `mtu`, `socketPath`
//!   and `pciID` are not part of this layout and are dropped.
//! * 1.0.0 / 1.1.0 (`types/100`): like 0.4.0 without `ips[].version`.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Dns, Interface, IpConfig, Route, Success};
use crate::de::null_as_default;
use crate::error::{Code, Error, Result};
use crate::version::{ResultFamily, SpecVersion, require_supported};

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Result020 {
    // Resolved by `from_value` (absent or null means the default version).
    #[serde(default, skip_deserializing)]
    cni_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip4: Option<Ip020>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip6: Option<Ip020>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    dns: Dns,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Ip020 {
    ip: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    routes: Vec<Route020>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Route020 {
    dst: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gw: Option<IpAddr>,
}

/// The layout shared by the 0.3.0 to 0.4.0 results and the 1.x ones: `I` and `P`
/// are the family's interface and IP entries. An empty `dns` is written as `{}` by
/// 0.4.0 and left out by 1.x (`OMIT_EMPTY_DNS`).
#[derive(Serialize, Deserialize)]
#[serde(
    rename_all = "camelCase",
    bound(deserialize = "I: Deserialize<'de>, P: Deserialize<'de>")
)]
pub(super) struct ResultLists<I, P, const OMIT_EMPTY_DNS: bool> {
    // Resolved by `from_value` (absent or null means the default version).
    #[serde(default, skip_deserializing)]
    cni_version: String,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    interfaces: Vec<I>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    ips: Vec<P>,
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "omit_dns::<OMIT_EMPTY_DNS>")]
    dns: Dns,
}

fn omit_dns<const OMIT_EMPTY_DNS: bool>(dns: &Dns) -> bool {
    OMIT_EMPTY_DNS && dns.is_empty()
}

/// The 0.3.0 / 0.3.1 / 0.4.0 layout.
pub(super) type Result040 = ResultLists<Interface040, Ip040, false>;

/// The 1.0.0 / 1.1.0 layout.
pub(super) type Result100 = ResultLists<Interface, IpConfig, true>;

#[derive(Serialize, Deserialize)]
pub(super) struct Interface040 {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sandbox: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct Ip040 {
    version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
    address: IpNetwork,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
}

fn family_tag(addr: &IpNetwork) -> &'static str {
    if addr.is_ipv4() { "4" } else { "6" }
}

/// A result in one version's layout; serializing it keeps the field order of
/// the layout structs (`cniVersion, interfaces, ips, routes, dns`), as the
/// reference prints them.
#[derive(Serialize)]
#[serde(untagged)]
pub(super) enum Wire {
    V02(Result020),
    V04(Result040),
    V1(Result100),
}

impl Wire {
    pub(super) fn to_value(&self) -> Result<Value> {
        serde_json::to_value(self)
            .map_err(|e| Error::internal(format!("failed to encode result: {e}")))
    }
}

pub(super) fn to_wire(s: &Success, version: SpecVersion) -> Result<Wire> {
    let cni_version = version.to_string();
    match version.family() {
        ResultFamily::V02 => {
            let ip_for = |ipv4: bool| {
                s.ips_of_family(ipv4).next().map(|ip| Ip020 {
                    ip: ip.address,
                    gateway: ip.gateway,
                    routes: s
                        .routes
                        .iter()
                        .filter(|r| r.dst.is_ipv4() == ipv4)
                        .map(|r| Route020 {
                            dst: r.dst,
                            gw: r.gw,
                        })
                        .collect(),
                })
            };
            let out = Result020 {
                cni_version,
                ip4: ip_for(true),
                ip6: ip_for(false),
                dns: s.dns.clone(),
            };
            if out.ip4.is_none() && out.ip6.is_none() {
                return Err(Error::new(
                    Code::IncompatibleVersion,
                    "cannot convert: no valid IP addresses",
                )
                .with_details(format!(
                    "a CNI {version} result needs at least one IP address; use cniVersion 0.3.0 or later for a result without addresses"
                )));
            }
            Ok(Wire::V02(out))
        }
        ResultFamily::V04 => Ok(Wire::V04(Result040 {
            cni_version,
            interfaces: s
                .interfaces
                .iter()
                .map(|i| Interface040 {
                    name: i.name.clone(),
                    mac: i.mac.clone(),
                    sandbox: i.sandbox.clone(),
                })
                .collect(),
            ips: s
                .ips
                .iter()
                .map(|ip| Ip040 {
                    version: family_tag(&ip.address).to_owned(),
                    interface: ip.interface,
                    address: ip.address,
                    gateway: ip.gateway,
                })
                .collect(),
            routes: s.routes.clone(),
            dns: s.dns.clone(),
        })),
        ResultFamily::V1 => Ok(Wire::V1(Result100 {
            cni_version,
            interfaces: s.interfaces.clone(),
            ips: s.ips.clone(),
            routes: s.routes.clone(),
            dns: s.dns.clone(),
        })),
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: &Value, version: SpecVersion) -> Result<T> {
    crate::gojson::from_value(value).map_err(|e| {
        Error::new(
            Code::Decode,
            format!("failed to decode a CNI {version} result: {e}"),
        )
    })
}

pub(super) fn from_value(value: &Value, default_version: SpecVersion) -> Result<Success> {
    let Value::Object(map) = value else {
        return Err(Error::decode("a CNI result must be a JSON object"));
    };
    let raw_version = match crate::gojson::get(map, "cniVersion") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(other) => {
            return Err(Error::decode(format!(
                "result cniVersion must be a string, got {other}"
            )));
        }
    };
    let default_text = default_version.to_string();
    let version = require_supported(
        Some(raw_version.unwrap_or(&default_text)),
        &crate::version::ALL,
    )
    .map_err(|e| e.context("result"))?;
    match version.family() {
        ResultFamily::V02 => {
            let r: Result020 = decode(value, version)?;
            let mut out = Success {
                dns: r.dns,
                ..Success::default()
            };
            for ip in [r.ip4, r.ip6].into_iter().flatten() {
                out.ips.push(IpConfig {
                    interface: None,
                    address: ip.ip,
                    gateway: ip.gateway,
                });
                out.routes
                    .extend(ip.routes.into_iter().map(|r| Route::new(r.dst, r.gw)));
            }
            Ok(out)
        }
        ResultFamily::V04 => {
            let r: Result040 = decode(value, version)?;
            let mut ips = Vec::with_capacity(r.ips.len());
            for ip in r.ips {
                let expected = family_tag(&ip.address);
                if ip.version != expected {
                    return Err(Error::decode(format!(
                        "result IP {} has version {:?}, expected {expected:?}",
                        ip.address, ip.version
                    )));
                }
                ips.push(IpConfig {
                    interface: ip.interface,
                    address: ip.address,
                    gateway: ip.gateway,
                });
            }
            Ok(Success {
                interfaces: r
                    .interfaces
                    .into_iter()
                    .map(|i| Interface {
                        name: i.name,
                        mac: i.mac,
                        sandbox: i.sandbox,
                        ..Interface::default()
                    })
                    .collect(),
                ips,
                routes: r.routes,
                dns: r.dns,
            })
        }
        ResultFamily::V1 => {
            let r: Result100 = decode(value, version)?;
            Ok(Success {
                interfaces: r.interfaces,
                ips: r.ips,
                routes: r.routes,
                dns: r.dns,
            })
        }
    }
}
