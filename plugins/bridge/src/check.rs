//! CHECK: verify the attachment `prevResult` describes.
//!
//! Bridge (kind, MAC, promiscuous state), container interface (veth, MAC, sandbox), the
//! host veth (peer of the container interface, port of the bridge, MAC, hairpin and
//! isolation flags), addresses and routes inside the container, masquerade and
//! spoof-check rules, and IPAM CHECK for layer-3 configs. Layer-2 configs are checked too
//! (the reference always fails them).

use cni::{CmdArgs, Command, Error, Interface, NetConf, Success};
use cni_netfilter::firewall;
use cni_netfilter::masq::MasqOwner;
use cni_netlink::{Handle, IpFamily, Link};
use ipnetwork::IpNetwork;

use crate::add::open_container_ns;
use crate::config::{BridgeConf, Settings};
use crate::errors::Context;

/// A difference between `prevResult` and what exists: code 103
/// ([`cni::error::codes::CHECK_MISMATCH`]).
fn fail(msg: impl Into<String>) -> Error {
    Error::plugin(cni::error::codes::CHECK_MISMATCH, msg)
}

/// The link that the result's interface `i` names, in `handle`'s namespace, checked
/// against it: a mismatch with message `missing` when there is no such link, with
/// `wrong_kind(link)` when `is_kind` does not hold, then [`mac_matches`].
fn verified_link(
    handle: &mut Handle,
    i: &Interface,
    missing: String,
    is_kind: impl Fn(&Link) -> bool,
    wrong_kind: impl FnOnce(&Link) -> String,
) -> cni::Result<Link> {
    let link = handle
        .link_by_name(&i.name)
        .ctx("failed to retrieve link")?
        .ok_or_else(|| fail(missing))?;
    if !is_kind(&link) {
        return Err(fail(wrong_kind(&link)));
    }
    mac_matches(i, &link)?;
    Ok(link)
}

fn mac_matches(i: &Interface, l: &Link) -> cni::Result<()> {
    if let Some(want) = &i.mac {
        let have = l.mac.map(|m| m.to_string()).unwrap_or_default();
        if !want.eq_ignore_ascii_case(&have) {
            return Err(fail(format!(
                "Interface {} Mac {want} doesn't match current Mac: {have}",
                i.name
            )));
        }
    }
    Ok(())
}

/// Runs CHECK.
///
/// # Errors
/// The first mismatch found, naming the object.
pub fn check(args: &CmdArgs, conf: &NetConf<BridgeConf>) -> cni::Result<()> {
    let s = Settings::new(conf, None)?;
    let prev = conf
        .prev_result()?
        .ok_or_else(|| Error::invalid_config("Required prevResult missing"))?;
    if let Some(ipam) = conf.ipam_type() {
        cni::invoke::delegate(ipam, Command::Check, args)?;
    }
    let ctr_ns = open_container_ns(args)?;
    let netns = args
        .netns
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut host = Handle::new().ctx("open netlink socket")?;
    let mut ctr = Handle::new_in(&ctr_ns).ctx("open netlink socket in container netns")?;

    // Bridge.
    let br_if = prev
        .interfaces
        .iter()
        .find(|i| i.name == s.bridge)
        .ok_or_else(|| fail(format!("Interface name {} not found", s.bridge)))?;
    if br_if.sandbox.as_deref().is_some_and(|x| !x.is_empty()) {
        return Err(fail(format!(
            "Interface {} should not be in sandbox",
            br_if.name
        )));
    }
    let br = verified_link(
        &mut host,
        br_if,
        format!(
            "CNI created bridge {} in host namespace was not found",
            s.bridge
        ),
        Link::is_bridge,
        |l| format!("Interface {} does not have link type of bridge", l.name),
    )?;
    if br.promisc != s.promisc {
        return Err(fail(format!(
            "Bridge interface {} configured Promisc Mode {} doesn't match current state: {}",
            br.name, s.promisc, br.promisc
        )));
    }

    // Container interface.
    let (ctr_idx, ctr_if) = prev
        .interfaces
        .iter()
        .enumerate()
        .find(|(_, i)| i.name == args.ifname)
        .ok_or_else(|| {
            fail(format!(
                "CNI created interface in container {} not found",
                args.ifname
            ))
        })?;
    let sandbox = ctr_if.sandbox.clone().unwrap_or_default();
    if sandbox != netns {
        return Err(fail(format!(
            "Sandbox in prevResult {sandbox} doesn't match configured netns: {netns}"
        )));
    }
    let cv = verified_link(
        &mut ctr,
        ctr_if,
        format!(
            "CNI created interface in container {} not found",
            args.ifname
        ),
        Link::is_veth,
        |l| format!("Error: Container interface {} not of type veth", l.name),
    )?;

    // Host veth: a host-side result interface whose peer is the container interface.
    let mut host_veth = None;
    for i in prev
        .interfaces
        .iter()
        .filter(|i| i.name != s.bridge && i.sandbox.as_deref().is_none_or(str::is_empty))
    {
        if let Some(l) = host.link_by_name(&i.name).ctx("failed to retrieve link")?
            && l.is_veth()
            && l.peer_index == Some(cv.index)
            && l.master == Some(br.index)
        {
            mac_matches(i, &l)?;
            host_veth = Some(l);
            break;
        }
    }
    let hv = host_veth.ok_or_else(|| {
        fail(format!(
            "CNI veth created for bridge {} was not found",
            s.bridge
        ))
    })?;
    if hv.hairpin.is_some_and(|h| h != s.hairpin) {
        return Err(fail(format!(
            "hairpin mode of {} is {:?}, configured {}",
            hv.name, hv.hairpin, s.hairpin
        )));
    }
    if hv.isolated.is_some_and(|h| h != s.port_isolation) {
        return Err(fail(format!(
            "isolation of port {} is {:?}, configured {}",
            hv.name, hv.isolated, s.port_isolation
        )));
    }

    check_addresses_and_routes(&mut ctr, &cv, ctr_idx, &prev)?;

    if s.ip_masq && conf.ipam_type().is_some() {
        let fw = firewall::select(s.ip_masq_backend.as_deref()).ctx("ipMasq")?;
        let owner = MasqOwner {
            network: &conf.name,
            container_id: &args.container_id,
            ifname: &args.ifname,
        };
        let nets: Vec<IpNetwork> = prev
            .ips
            .iter()
            .filter(|i| i.interface.is_none_or(|x| x == ctr_idx))
            .map(|i| i.address)
            .collect();
        fw.check_masq(&owner, &nets).ctx("IP masquerade")?;
    }
    if s.mac_spoof_chk {
        let mac = cv.mac.map(|m| m.to_string()).unwrap_or_default();
        cni_netfilter::spoofchk::check(&args.container_id, &args.ifname, &hv.name, &mac)
            .ctx("macspoofchk")?;
    }
    Ok(())
}

fn check_addresses_and_routes(
    ctr: &mut Handle,
    cv: &Link,
    ctr_idx: usize,
    prev: &Success,
) -> cni::Result<()> {
    let addrs = ctr
        .addrs(Some(cv.index), None)
        .ctx(format!("failed to list addresses of {}", cv.name))?;
    for ip in prev.ips.iter().filter(|i| i.interface == Some(ctr_idx)) {
        if !addrs.iter().any(|a| a.addr == ip.address) {
            return Err(fail(format!(
                "Failed to match addr {} on interface {}",
                ip.address, cv.name
            )));
        }
    }
    for r in &prev.routes {
        let fam = if r.dst.is_ipv4() {
            IpFamily::V4
        } else {
            IpFamily::V6
        };
        let table = r.table.or(Some(cni_netlink::route::TABLE_MAIN));
        let routes = ctr.routes(fam, table).ctx("failed to list routes")?;
        let dst = IpNetwork::new(r.dst.network(), r.dst.prefix()).unwrap_or(r.dst);
        let found = routes
            .iter()
            .any(|k| k.dst == dst && (r.gw.is_none() || k.gateway == r.gw));
        if !found {
            return Err(fail(format!(
                "Expected Route {}{} not found in routing table",
                r.dst,
                r.gw.map(|g| format!(" via {g}")).unwrap_or_default()
            )));
        }
    }
    Ok(())
}
