//! DEL: best effort and idempotent.
//!
//! Deletes the container interface (the host end goes with it), releases the IPAM
//! reservation and removes spoof-check and masquerade state. Unlike the reference, the
//! netfilter state is removed even when `CNI_NETNS` is empty or already gone: it is found
//! by network name, container id and interface name, not by addresses. The bridge stays.

use cni::{CmdArgs, Command, Error, NetConf};
use cni_netfilter::firewall;
use cni_netfilter::masq::{self, MasqOwner};
use cni_netlink::delete_link_detached;
use cni_netns::NetNs;
use ipnetwork::IpNetwork;

use crate::config::{BridgeConf, Settings};
use crate::errors::{Context, collect};

/// Runs DEL.
///
/// # Errors
/// Every failure (the remaining steps still run), joined into one error.
pub fn del(args: &CmdArgs, conf: &NetConf<BridgeConf>) -> cni::Result<()> {
    let s = Settings::new(conf, None)?;
    let mut errors: Vec<Error> = Vec::new();

    if let Some(path) = &args.netns {
        match NetNs::open(path) {
            Ok(ns) => {
                if let Err(e) = delete_container_iface(&ns, &args.ifname) {
                    errors.push(e);
                }
            }
            Err(e) if e.is_not_found() => {
                log::debug!("netns {} is gone; nothing to delete there", path.display());
            }
            Err(e) => errors.push(Error::internal(format!("failed to open netns: {e}"))),
        }
    }

    if let Some(ipam) = conf.ipam_type()
        && let Err(e) = cni::invoke::delegate(ipam, Command::Del, args)
    {
        errors.push(e);
    }

    if s.mac_spoof_chk
        && let Err(e) = cni_netfilter::spoofchk::teardown(&args.container_id, &args.ifname)
            .ctx("failed to remove macspoofchk rules")
    {
        errors.push(e);
    }

    if s.ip_masq {
        let owner = MasqOwner {
            network: &conf.name,
            container_id: &args.container_id,
            ifname: &args.ifname,
        };
        // With prevResult (runtimes pass it on DEL) the iptables rules go without a read.
        let ips: Vec<IpNetwork> = match conf.prev_result() {
            Ok(Some(prev)) => prev.ips.iter().map(|i| i.address).collect(),
            _ => Vec::new(),
        };
        let known = firewall::select(s.ip_masq_backend.as_deref())
            .ok()
            .filter(|_| !ips.is_empty())
            .map(|fw| masq::Known {
                backend: fw.backend(),
                ips: &ips,
            });
        if let Err(e) =
            masq::teardown_known(&owner, known.as_ref()).ctx("failed to remove IP masquerade")
        {
            errors.push(e);
        }
    }
    collect(errors)
}

/// Deletes the container end of the veth pair (the host end goes with it). Returns once
/// the pair is gone from both namespaces; the kernel's final wait for the devices'
/// release happens in a detached helper (`cni_netlink::detach`), which saves most of a
/// DEL's time.
fn delete_container_iface(ns: &NetNs, ifname: &str) -> cni::Result<()> {
    match delete_link_detached(ns, ifname) {
        Err(e) if !e.is_not_found() => Err(e).ctx(format!(
            "failed to delete {ifname:?} in netns {}",
            ns.path().display()
        )),
        _ => Ok(()),
    }
}
