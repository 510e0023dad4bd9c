//! The `loopback` CNI plugin: sets `lo` up in the container's network namespace.
//!
//! It behaves as the reference plugin (containernetworking/plugins,
//! `plugins/main/loopback`, v1.9.1) in every spec version:
//!
//! * ADD sets `lo` up (`CNI_IFNAME` is ignored), checks that every address on it is a
//!   loopback address, and prints the `prevResult` unchanged when there is one.
//!   Otherwise it reports `lo` (MAC `00:00:00:00:00:00`, the sandbox path) with the
//!   first IPv4 and the first IPv6 address found on it, in the 1.x layout whatever the
//!   configuration's version, as the reference does (see [`Loopback::print_result`]).
//! * DEL sets `lo` down; an empty `CNI_NETNS` or a netns that no longer exists is
//!   success.
//! * CHECK verifies that `lo` is up.
//! * STATUS and GC succeed: the plugin keeps no state.
//!
//! Unlike the reference, a failed ADD leaves `lo` as it found it, and errors carry the
//! spec's codes.

use std::net::IpAddr;
use std::path::Path;

use cni::conf::NoPluginConfig;
use cni::version::V1_0_0;
use cni::{CmdArgs, Code, Error, Interface, IpConfig, NetConf, Plugin, Success};
use cni_netlink::{Handle, IpFamily, Link};
use cni_netns::NetNs;
use ipnetwork::IpNetwork;
use serde_json::Value;

/// The interface this plugin manages, whatever `CNI_IFNAME` says.
pub const LO: &str = "lo";

/// The MAC address the reference reports for `lo`.
pub const LO_MAC: &str = "00:00:00:00:00:00";

/// The plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Loopback;

impl Plugin for Loopback {
    type Config = NoPluginConfig;

    fn name(&self) -> &'static str {
        "loopback"
    }

    fn add(&self, args: &CmdArgs, conf: &NetConf) -> cni::Result<Success> {
        // Parsed before any change, as the reference does.
        let prev = conf.prev_result()?;
        let path = netns_path(args)?;
        let ns = NetNs::open(path)
            .map_err(|e| Error::invalid_env(format!("failed to open netns {path:?}: {e}")))?;
        let mut h = handle_in(&ns)?;
        let lo = lookup_lo(&mut h)?;
        if !lo.up {
            h.set_up(lo.index)
                .map_err(|e| netlink_error(&e, "set lo up"))?;
        }
        let addrs = match loopback_addrs(&mut h, lo.index) {
            Ok(a) => a,
            Err(e) => {
                // Leave lo as this ADD found it.
                if !lo.up
                    && let Err(down) = h.set_down(lo.index)
                {
                    log::warn!("rollback: set lo down: {down}");
                }
                return Err(e);
            }
        };
        if let Some(prev) = prev {
            // A previous plugin's result is passed through unchanged.
            return Ok(prev);
        }
        let ips = addrs
            .into_iter()
            .flatten()
            .map(|address| IpConfig {
                interface: Some(0),
                address,
                gateway: None,
            })
            .collect();
        Ok(Success {
            interfaces: vec![Interface {
                name: LO.to_owned(),
                mac: Some(LO_MAC.to_owned()),
                sandbox: Some(path.to_string_lossy().into_owned()),
                ..Interface::default()
            }],
            ips,
            ..Success::default()
        })
    }

    /// The reference builds its own result as a 1.x result labelled with the
    /// configuration's `cniVersion`, so the library prints it without conversion: the
    /// 1.x layout (`interfaces`, `ips` without `version`) in every version. Only a
    /// configuration without `cniVersion` gets the 0.1.0 layout (`ip4`/`ip6`), and a
    /// passed-through `prevResult` is printed in the configuration's version.
    fn print_result(&self, result: &Success, conf: &NetConf) -> cni::Result<String> {
        let own_result = matches!(conf.prev_result, None | Some(Value::Null));
        let labelled = conf.cni_version.as_deref().is_some_and(|v| !v.is_empty());
        if !own_result || !labelled {
            return result.to_json(conf.version);
        }
        let mut v = result.to_value(conf.version.max(V1_0_0))?;
        if let Some(o) = v.as_object_mut() {
            o.insert(
                "cniVersion".to_owned(),
                Value::String(conf.version.to_string()),
            );
        }
        cni::pretty_json(&v)
    }

    fn del(&self, args: &CmdArgs, _conf: &NetConf) -> cni::Result<()> {
        let Some(path) = args.netns.as_deref() else {
            return Ok(());
        };
        let ns = match NetNs::open(path) {
            Ok(ns) => ns,
            Err(e) if e.is_not_found() => {
                log::debug!("netns {} is gone; nothing to do", path.display());
                return Ok(());
            }
            Err(e) => {
                return Err(Error::internal(format!(
                    "failed to open netns {path:?}: {e}"
                )));
            }
        };
        let mut h = handle_in(&ns)?;
        let lo = lookup_lo(&mut h)?;
        if lo.up {
            h.set_down(lo.index)
                .map_err(|e| netlink_error(&e, "set lo down"))?;
        }
        Ok(())
    }

    fn check(&self, args: &CmdArgs, _conf: &NetConf) -> cni::Result<()> {
        let path = netns_path(args)?;
        let ns = NetNs::open(path)
            .map_err(|e| Error::invalid_env(format!("failed to open netns {path:?}: {e}")))?;
        let mut h = handle_in(&ns)?;
        if lookup_lo(&mut h)?.up {
            Ok(())
        } else {
            Err(Error::plugin(
                cni::error::codes::CHECK_MISMATCH,
                "loopback interface is down",
            ))
        }
    }
}

/// `CNI_NETNS` (the skel already requires it for ADD and CHECK).
fn netns_path(args: &CmdArgs) -> cni::Result<&Path> {
    args.netns
        .as_deref()
        .ok_or_else(|| Error::invalid_env("required env variables [CNI_NETNS] missing"))
}

fn handle_in(ns: &NetNs) -> cni::Result<Handle> {
    Handle::new_in(ns).map_err(|e| netlink_error(&e, "open a netlink socket in the netns"))
}

fn lookup_lo(h: &mut Handle) -> cni::Result<Link> {
    h.link_by_name(LO)
        .map_err(|e| netlink_error(&e, "look up lo"))?
        .ok_or_else(|| Error::internal(format!("link {LO:?} not found in {}", h.ns_label())))
}

/// The first IPv4 and the first IPv6 address of `lo`, after checking that every
/// address on it is a loopback address (as the reference does).
fn loopback_addrs(h: &mut Handle, index: u32) -> cni::Result<[Option<IpNetwork>; 2]> {
    let mut first = [None, None];
    for (slot, family) in first.iter_mut().zip([IpFamily::V4, IpFamily::V6]) {
        let addrs = h
            .addrs(Some(index), Some(family))
            .map_err(|e| netlink_error(&e, "list the addresses of lo"))?;
        if let Some(bad) = addrs.iter().find(|a| !is_loopback(a.addr.ip())) {
            return Err(Error::internal(format!(
                "loopback interface found with non-loopback address \"{}\"",
                bad.addr.ip()
            )));
        }
        *slot = addrs.first().map(|a| a.addr);
    }
    Ok(first)
}

/// Go's `net.IP.IsLoopback`: 127.0.0.0/8, `::1`, and 127.0.0.0/8 mapped into IPv6.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// A netlink failure as a CNI error: a timeout is "try again later" (11), anything
/// else unexpected (999), prefixed with the step.
fn netlink_error(e: &cni_netlink::Error, what: &str) -> Error {
    let code = match e {
        cni_netlink::Error::Timeout { .. } => Code::TryAgainLater,
        _ => Code::Internal,
    };
    Error::new(code, format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(json: &str) -> NetConf {
        let mut c: NetConf = serde_json::from_str(json).expect("conf");
        c.version = c
            .cni_version
            .as_deref()
            .filter(|v| !v.is_empty())
            .unwrap_or("0.1.0")
            .parse()
            .expect("version");
        c
    }

    fn lo_result() -> Success {
        Success {
            interfaces: vec![Interface {
                name: LO.into(),
                mac: Some(LO_MAC.into()),
                sandbox: Some("/run/netns/x".into()),
                ..Interface::default()
            }],
            ips: vec![IpConfig {
                interface: Some(0),
                address: "127.0.0.1/8".parse().expect("cidr"),
                gateway: None,
            }],
            ..Success::default()
        }
    }

    fn printed(conf: &NetConf, r: &Success) -> Value {
        let text = Loopback.print_result(r, conf).expect("print");
        serde_json::from_str(&text).expect("json")
    }

    #[test]
    fn own_result_is_the_1_x_layout_labelled_with_the_config_version() {
        for v in ["0.1.0", "0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
            let c = conf(&format!(r#"{{"cniVersion":"{v}","name":"n"}}"#));
            let out = printed(&c, &lo_result());
            assert_eq!(out["cniVersion"], v);
            assert_eq!(
                out["ips"][0],
                serde_json::json!({"interface": 0, "address": "127.0.0.1/8"}),
                "{v}: no version field, no ip4"
            );
            assert_eq!(out["interfaces"][0]["name"], "lo");
            assert!(
                out.get("ip4").is_none() && out.get("dns").is_none(),
                "{out}"
            );
        }
    }

    #[test]
    fn no_version_or_a_prev_result_is_printed_in_the_config_layout() {
        let out = printed(&conf(r#"{"name":"n"}"#), &lo_result());
        assert_eq!(out["cniVersion"], "0.1.0");
        assert_eq!(out["ip4"]["ip"], "127.0.0.1/8", "{out}");
        let c = conf(r#"{"cniVersion":"0.3.1","name":"n","prevResult":{"ips":[]}}"#);
        let out = printed(&c, &lo_result());
        assert_eq!(out["ips"][0]["version"], "4", "{out}");
    }

    #[test]
    fn loopback_addresses_are_those_go_calls_loopback() {
        for ok in ["127.0.0.1", "127.255.0.9", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(ok.parse().expect("address")), "{ok}");
        }
        for bad in ["10.0.0.1", "128.0.0.1", "::2", "fe80::1", "::ffff:10.0.0.1"] {
            assert!(!is_loopback(bad.parse().expect("address")), "{bad}");
        }
    }
}
