//! Inside `CNI_NETNS`: sysctls, addresses, link state, DAD wait and routes of the
//! container interface (the reference's `pkg/ipam.ConfigureIface`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use cni::{Error, IpConfig, Route};
use cni_netlink::{Handle, IpFamily, Ipv4ConfKey, Link, RouteSpec};
use cni_netns::{NetNs, sysctl};

use crate::errors::Context;

/// How long to wait for IPv6 duplicate address detection.
const DAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Poll interval while waiting for DAD.
const DAD_POLL: Duration = Duration::from_millis(50);

/// Sets the per-interface sysctls in the container: DAD (`accept_dad`, `enhanced_dad`),
/// `arp_notify=1`, and, when an IPv6 address will be configured, `disable_ipv6=0` on `lo`
/// and the interface plus `keep_addr_on_down=1`.
///
/// `arp_notify` is set over netlink with `ctr`, the ADD's socket in the container
/// namespace, not under `/proc/sys/net/ipv4`: in a new namespace the first lookup of that
/// directory walks the dcache entries of every namespace's `ipv4` directory, up to about
/// a millisecond on a node with many containers (see `cni_netns::sysctl`). The IPv6 keys
/// have no netlink setter and stay sysctls.
///
/// # Errors
/// Enabling IPv6 failing when IPv6 addresses are needed.
pub fn set_sysctls(
    ns: &NetNs,
    ctr: &mut Handle,
    link: &Link,
    enable_dad: bool,
    has_v6: bool,
) -> cni::Result<()> {
    let ifname = link.name.as_str();
    if let Err(e) = ctr.enable_ipv4_conf(link.index, &[Ipv4ConfKey::ArpNotify]) {
        log::warn!("container interface {ifname:?}: {e}");
    }
    // Entered on this thread (sysctl files belong to the namespace of the
    // opener) and left again when the guard drops; cheaper than a thread.
    let _guard = ns
        .enter()
        .ctx(format!("container netns {}", ns.path().display()))?;
    // The interface was just created: keys whose default differs from the value
    // are written without reading them first.
    let v6 = |key: &str, val: &str| sysctl::set(&["net", "ipv6", "conf", ifname, key], val);
    let dad = if enable_dad {
        v6("enhanced_dad", "1").and_then(|_| v6("accept_dad", "1"))
    } else {
        sysctl::write(&["net", "ipv6", "conf", ifname, "accept_dad"], "0").map(|()| true)
    };
    if let Err(e) = dad {
        log::debug!("ignoring: {e}");
    }
    if has_v6 {
        for dev in ["lo", ifname] {
            sysctl::set(&["net", "ipv6", "conf", dev, "disable_ipv6"], "0")
                .ctx(format!("failed to enable IPv6 on {dev}"))?;
        }
        if let Err(e) = v6("keep_addr_on_down", "1") {
            log::debug!("ignoring: {e}");
        }
    }
    Ok(())
}

/// Adds the addresses, sets the link up (unless `down`), waits for IPv6 DAD when an
/// IPv6 gateway exists, and adds the routes (ECMP append; gateway defaults to the first
/// gateway of the route's family).
///
/// # Errors
/// Kernel errors naming address/route; DAD failure or timeout.
pub fn configure(
    h: &mut Handle,
    link: &Link,
    ips: &[IpConfig],
    routes: &[Route],
) -> cni::Result<()> {
    for ip in ips {
        h.add_addr(link.index, ip.address).ctx(format!(
            "failed to add IP addr {} to {:?}",
            ip.address, link.name
        ))?;
    }
    h.set_up(link.index)
        .ctx(format!("failed to set {:?} up", link.name))?;
    let gw_of = |v4: bool| -> Option<IpAddr> {
        ips.iter()
            .filter(|i| i.address.is_ipv4() == v4)
            .find_map(|i| i.gateway)
    };
    if gw_of(false).is_some() {
        wait_dad(h, link)?;
    }
    for r in routes {
        let mut spec = RouteSpec::new(r.dst);
        spec.gateway = r.gw.or_else(|| gw_of(r.dst.is_ipv4()));
        spec.oif = Some(link.index);
        spec.priority = r.priority;
        spec.table = r.table;
        spec.scope = r.scope;
        spec.mtu = r.mtu;
        spec.advmss = r.advmss;
        h.add_route(&spec, true).ctx(format!(
            "failed to add route '{}{}' to {:?}",
            r.dst,
            spec.gateway
                .map(|g| format!(" via {g}"))
                .unwrap_or_default(),
            link.name
        ))?;
    }
    Ok(())
}

/// Waits until no IPv6 address on the link is tentative.
fn wait_dad(h: &mut Handle, link: &Link) -> cni::Result<()> {
    let start = Instant::now();
    loop {
        let addrs = h
            .addrs(Some(link.index), Some(IpFamily::V6))
            .ctx(format!("failed to list addresses of {:?}", link.name))?;
        if let Some(a) = addrs.iter().find(|a| a.flags.dad_failed) {
            return Err(Error::internal(format!(
                "link {} has address {} with DAD failure",
                link.name, a.addr
            )));
        }
        if !addrs.iter().any(|a| a.flags.tentative) {
            return Ok(());
        }
        if start.elapsed() >= DAD_TIMEOUT {
            let up = h
                .link_by_index(link.index)
                .ctx("failed to retrieve link")?
                .is_some_and(|l| l.up);
            if !up {
                return Ok(());
            }
            return Err(Error::internal(format!(
                "link {} still has tentative addresses after {:?}",
                link.name, DAD_TIMEOUT
            )));
        }
        std::thread::sleep(DAD_POLL);
    }
}
