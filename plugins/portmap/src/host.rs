//! Host-side effects besides netfilter rules: `route_localnet` on the interface routing
//! to the container, and the UDP conntrack flush for mapped host ports.

use std::net::IpAddr;

use cni::{Error, Result};
use cni_netfilter::conntrack::{self, Family};
use cni_netfilter::portmap::{PortMapping, Protocol};
use cni_netlink::Ipv4ConfKey;

/// Sets `net.ipv4.conf.<iface>.route_localnet=1` on the interface the host routes
/// `container_ip` through, so DNAT-ed packets from 127.0.0.1 can leave (as the reference).
/// No route: skipped with a log line.
///
/// The current value comes with the `RTM_GETLINK` of the interface and is set over
/// netlink when it is not 1, so the usual ADD does not look up `/proc/sys/net/ipv4`,
/// which costs up to a millisecond on a node with many network namespaces (see
/// `cni_netns::sysctl`). When the reply has no IPv4 configuration or the netlink
/// change fails, the sysctl is set as before.
///
/// # Errors
/// Failing to open a netlink socket, to resolve the interface, or to write the sysctl.
pub(crate) fn enable_route_localnet(container_ip: IpAddr) -> Result<()> {
    let mut handle = cni_netlink::Handle::new().map_err(|e| {
        Error::internal(format!(
            "unable to enable route_localnet: netlink socket: {e}"
        ))
    })?;
    let oif = match handle.route_get(container_ip) {
        Ok(lookup) => lookup.oif,
        Err(e) => {
            log::warn!("no route to container {container_ip}, route_localnet not set: {e}");
            return Ok(());
        }
    };
    let Some(oif) = oif else {
        log::warn!("route to {container_ip} has no output interface, route_localnet not set");
        return Ok(());
    };
    let link = handle
        .link_by_index(oif)
        .map_err(|e| {
            Error::internal(format!(
                "unable to enable route_localnet: interface {oif}: {e}"
            ))
        })?
        .ok_or_else(|| {
            Error::internal(format!(
                "unable to enable route_localnet: interface {oif} vanished"
            ))
        })?;
    match link.ipv4 {
        Some(conf) if conf.route_localnet == 1 => return Ok(()),
        Some(_) => match handle.enable_ipv4_conf(link.index, &[Ipv4ConfKey::RouteLocalnet]) {
            Ok(()) => return Ok(()),
            Err(e) => {
                log::debug!("setting route_localnet over netlink failed, using /proc/sys: {e}")
            }
        },
        None => log::debug!(
            "{}: no IPv4 devconf in RTM_NEWLINK, using /proc/sys",
            link.name
        ),
    }
    cni_netns::sysctl::set(&["net", "ipv4", "conf", &link.name, "route_localnet"], "1").map_err(
        |e| {
            Error::internal(format!(
                "unable to enable route_localnet on {}: {e}",
                link.name
            ))
        },
    )?;
    Ok(())
}

/// The mapped UDP host ports, sorted, without duplicates.
fn udp_host_ports(mappings: &[PortMapping]) -> Vec<u16> {
    let mut ports: Vec<u16> = mappings
        .iter()
        .filter(|m| m.protocol == Protocol::Udp)
        .map(|m| m.host_port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// Starts deleting the conntrack entries of `families` whose original tuple is UDP to a
/// mapped UDP host port (whatever the addresses), so that an existing flow (e.g. to a
/// deleted container) is re-evaluated against the current DNAT rules, as the reference does
/// (containernetworking/plugins#123). Call it just before changing the rules and
/// [`finish_udp_conntrack_flush`] just after: the walk of the conntrack table overlaps
/// the change, with every entry confirmed in between caught from the kernel's events
/// (see `cni_netfilter::conntrack::OverlappedFlush`). Done natively over
/// NETLINK_NETFILTER in the calling namespace, none of it when the namespace has no
/// entry. Dropping the result without finishing (the change failed) deletes nothing.
pub(crate) fn start_udp_conntrack_flush(
    families: &[Family],
    mappings: &[PortMapping],
) -> conntrack::OverlappedFlush {
    conntrack::OverlappedFlush::start(families, &udp_host_ports(mappings))
}

/// Completes [`start_udp_conntrack_flush`] after the rules changed; as in the
/// reference, failures are only logged.
pub(crate) fn finish_udp_conntrack_flush(flush: conntrack::OverlappedFlush) {
    let described = log::log_enabled!(log::Level::Debug).then(|| format!("{flush:?}"));
    match flush.finish() {
        Ok(0) => {}
        Ok(n) => log::debug!(
            "deleted {n} udp conntrack entries ({})",
            described.unwrap_or_default()
        ),
        Err(e) => log::warn!("unable to delete udp conntrack entries to host ports: {e}"),
    }
}
