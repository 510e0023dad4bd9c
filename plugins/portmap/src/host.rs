//! Host-side effects besides netfilter rules: `route_localnet` on the interface routing
//! to the container, and the UDP conntrack flush for mapped host ports.

use std::net::IpAddr;
use std::process::Command;

use cni::{Error, Result};
use cni_netfilter::portmap::{PortMapping, Protocol};

/// Sets `net.ipv4.conf.<iface>.route_localnet=1` on the interface the host routes
/// `container_ip` through, so DNAT-ed packets from 127.0.0.1 can leave (as the reference).
/// No route: skipped with a log line.
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

/// Deletes UDP conntrack entries whose original destination port is a mapped UDP host
/// port, so that an existing flow (e.g. to a deleted container) is re-evaluated against
/// the new DNAT rules. Errors are only logged.
///
/// Uses the `conntrack` tool (conntrack-tools): a documented fallback until a netlink
/// conntrack client exists in the workspace. One exec per UDP port; without the tool the
/// flush is skipped with a warning.
pub(crate) fn flush_udp_conntrack(ipv4: bool, mappings: &[PortMapping]) {
    let family = if ipv4 { "ipv4" } else { "ipv6" };
    let mut ports: Vec<u16> = mappings
        .iter()
        .filter(|m| m.protocol == Protocol::Udp)
        .map(|m| m.host_port)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    for port in ports {
        let out = Command::new("conntrack")
            .args([
                "-D",
                "-f",
                family,
                "-p",
                "udp",
                "--orig-port-dst",
                &port.to_string(),
            ])
            .output();
        match out {
            // Exit 1 with "0 flow entries" just means nothing matched.
            Ok(o)
                if o.status.success()
                    || String::from_utf8_lossy(&o.stderr).contains("0 flow entries") => {}
            Ok(o) => log::warn!(
                "conntrack flush of udp port {port} ({family}) failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => log::warn!("conntrack flush of udp port {port} ({family}) skipped: {e}"),
        }
    }
}
