//! Host-side links: the bridge, the host end of the veth pair as a bridge port, gateway
//! addresses (on the bridge or on the `<bridge>.<vlan>` gateway veth) and forwarding.

use std::io::Read;
use std::os::fd::AsFd;
use std::time::Duration;

use cni::Error;
use cni_netlink::{
    BridgeSpec, Handle, IpFamily, Link, LinkId, MacAddr, OperState, PortFlags, VethSpec, VlanEntry,
};
use cni_netns::{NetNs, sysctl};
use ipnetwork::IpNetwork;

use crate::config::Settings;
use crate::errors::Context;

/// How many random host veth names to try.
const VETH_NAME_ATTEMPTS: usize = 10;

/// Creates the bridge if needed (with MTU and VLAN filtering), sets promiscuous mode
/// when configured, `accept_ra=0`, and brings it up. Returns the bridge.
/// `existing` is the caller's lookup of the bridge name, made just before.
///
/// # Errors
/// An existing non-bridge link of that name; kernel errors.
pub fn ensure_bridge(h: &mut Handle, s: &Settings, existing: Option<Link>) -> cni::Result<Link> {
    let name = s.bridge.as_str();
    let br = match existing {
        Some(l) => l,
        None => {
            let spec = BridgeSpec {
                name,
                mtu: s.mtu,
                vlan_filtering: s.uses_vlans().then_some(true),
            };
            match h.add_bridge(&spec) {
                Err(e) if e.is_exists() => {} // created concurrently
                r => r.ctx(format!("failed to create bridge {name:?}"))?,
            }
            h.link_by_name(name)
                .ctx(format!("could not lookup {name:?}"))?
                .ok_or_else(|| {
                    Error::internal(format!("bridge {name:?} vanished after creation"))
                })?
        }
    };
    if !br.is_bridge() {
        return Err(Error::internal(format!(
            "{name:?} already exists but is not a bridge"
        )));
    }
    let mut changed = false;
    if s.promisc && !br.promisc {
        h.set_promisc(br.index, true)
            .ctx(format!("could not set promiscuous mode on {name:?}"))?;
        changed = true;
    }
    if let Err(e) = sysctl::set(&["net", "ipv6", "conf", name, "accept_ra"], "0") {
        log::debug!("ignoring: {e}");
    }
    if !br.up {
        h.set_up(br.index)
            .ctx(format!("could not set {name:?} up"))?;
        changed = true;
    }
    if !changed {
        return Ok(br);
    }
    h.link_by_index(br.index)
        .ctx(format!("could not lookup {name:?}"))?
        .ok_or_else(|| Error::internal(format!("bridge {name:?} vanished")))
}

/// `veth` + 8 random lowercase hex digits.
pub fn random_veth_name() -> String {
    let mut b = [0u8; 4];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if filled.is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ std::process::id())
            .unwrap_or_default();
        b = t.to_le_bytes();
    }
    format!("veth{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

/// Creates the veth pair: the container end `ifname` is born in `ctr_ns` (with `mac`),
/// the host end gets a random free name. Both get `mtu`. Returns the host end's name.
///
/// # Errors
/// Kernel errors; no free host name after several attempts.
pub fn create_veth(
    host: &mut Handle,
    ctr_ns: &NetNs,
    ifname: &str,
    mtu: Option<u32>,
    mac: Option<MacAddr>,
) -> cni::Result<String> {
    let mut last = None;
    for _ in 0..VETH_NAME_ATTEMPTS {
        let name = random_veth_name();
        let spec = VethSpec {
            name: &name,
            peer_name: ifname,
            peer_ns: Some(ctr_ns.as_fd()),
            mtu,
            mac: None,
            peer_mac: mac,
        };
        match host.add_veth(&spec) {
            Ok(()) => return Ok(name),
            // Either the random host name is taken (retry) or the container name
            // appeared concurrently (the retry then fails the same way and we report it).
            Err(e) if e.is_exists() => last = Some(e),
            Err(e) => {
                return Err(e).ctx(format!(
                    "failed to create veth pair {name:?} / {ifname:?} (container netns {})",
                    ctr_ns.path().display()
                ));
            }
        }
    }
    Err(Error::internal(format!(
        "failed to create veth pair for container interface {ifname:?}: no free host-side name after {VETH_NAME_ATTEMPTS} attempts (last error: {})",
        last.map(|e| e.to_string()).unwrap_or_default()
    )))
}

/// Sets the host end up, enslaves it to the bridge and sets its port flags and VLANs.
///
/// # Errors
/// Kernel errors naming the step.
pub fn setup_port(h: &mut Handle, port: &Link, br: &Link, s: &Settings) -> cni::Result<()> {
    let name = port.name.as_str();
    // A new veth: its accept_ra starts at the default (1), so write without reading.
    if let Err(e) = sysctl::write(&["net", "ipv6", "conf", name, "accept_ra"], "0") {
        log::debug!("ignoring: {e}");
    }
    h.set_master(port.index, br.index)
        .ctx(format!("failed to connect {name:?} to bridge {}", br.name))?;
    h.set_port_flags(
        port.index,
        PortFlags {
            hairpin: Some(s.hairpin),
            isolated: None,
        },
    )
    .ctx(format!("failed to setup hairpin mode for {name}"))?;
    h.set_port_flags(
        port.index,
        PortFlags {
            hairpin: None,
            isolated: Some(s.port_isolation),
        },
    )
    .ctx(format!(
        "failed to set isolated {} for {name}",
        s.port_isolation
    ))?;
    if s.uses_vlans() {
        setup_port_vlans(
            h,
            port.index,
            name,
            s.vlan,
            s.trunk.as_deref().unwrap_or(&[]),
            s.preserve_default_vlan,
        )?;
    }
    h.set_up(port.index)
        .ctx(format!("failed to set {name:?} up"))?;
    Ok(())
}

/// The VLAN entries a port gets: `vlan` as PVID+untagged (or VID 1 as native VLAN when
/// only a trunk is given), trunk VLANs tagged.
pub fn port_vlan_plan(vlan: u16, trunk: &[u16]) -> Vec<VlanEntry> {
    let native = if vlan != 0 {
        Some(vlan)
    } else if !trunk.is_empty() {
        Some(1)
    } else {
        None
    };
    let mut out: Vec<VlanEntry> = native
        .map(|vid| VlanEntry {
            vid,
            pvid: true,
            untagged: true,
        })
        .into_iter()
        .collect();
    out.extend(
        trunk
            .iter()
            .filter(|v| Some(**v) != native)
            .map(|&vid| VlanEntry {
                vid,
                pvid: false,
                untagged: false,
            }),
    );
    out
}

fn setup_port_vlans(
    h: &mut Handle,
    port: u32,
    name: &str,
    vlan: u16,
    trunk: &[u16],
    preserve_default: bool,
) -> cni::Result<()> {
    if !preserve_default {
        let current = h.bridge_vlans(port).ctx(format!(
            "failed to remove default vlan on interface {name:?}"
        ))?;
        for v in current {
            h.bridge_vlan_del(port, v.vid).ctx(format!(
                "failed to remove default vlan on interface {name:?}"
            ))?;
        }
    }
    for e in port_vlan_plan(vlan, trunk) {
        h.bridge_vlan_add(port, e)
            .ctx(format!("failed to setup vlan tag on interface {name:?}"))?;
    }
    Ok(())
}

/// Ensures `addr` (gateway IP with the container prefix) is on `link`. An identical
/// address is kept; a different IPv4 address or an overlapping IPv6 one is an error
/// unless `force`, which replaces it. The link's MAC is then pinned to its current value
/// so it no longer follows its ports.
///
/// # Errors
/// Conflicting address without `force`; kernel errors.
pub fn ensure_addr(h: &mut Handle, link: &Link, addr: IpNetwork, force: bool) -> cni::Result<()> {
    let fam = IpFamily::of(addr.ip());
    let existing = h
        .addrs(Some(link.index), Some(fam))
        .ctx(format!("could not list addresses of {:?}", link.name))?;
    for a in existing.iter().filter(|a| a.is_global()) {
        if a.addr == addr {
            return Ok(());
        }
        let overlaps =
            fam == IpFamily::V4 || a.addr.contains(addr.ip()) || addr.contains(a.addr.ip());
        if overlaps {
            if !force {
                return Err(Error::internal(format!(
                    "failed to set bridge addr: {:?} already has an IP address different from {addr}",
                    link.name
                )));
            }
            h.del_addr(link.index, a.addr).ctx(format!(
                "failed to remove IP address {} from {:?}",
                a.addr, link.name
            ))?;
        }
    }
    match h.add_addr(link.index, addr) {
        // Another ADD on this bridge added the same address since the listing above
        // (parallel ADDs of one network race here): it is there, which is all we need.
        Err(e) if e.is_exists() => {
            let now = h
                .addrs(Some(link.index), Some(fam))
                .ctx(format!("could not list addresses of {:?}", link.name))?;
            if now.iter().any(|a| a.addr == addr) {
                return Ok(());
            }
            return Err(e).ctx(format!(
                "could not add IP address {addr} to {:?}",
                link.name
            ));
        }
        r => r.ctx(format!(
            "could not add IP address {addr} to {:?}",
            link.name
        ))?,
    }
    // Pin the current MAC (re-read: it changes as ports come and go). A bridge whose
    // ports all left can report an all-zero address, which cannot be assigned.
    let current = h
        .link_by_index(link.index)
        .ctx(format!("could not lookup {:?}", link.name))?
        .and_then(|l| l.mac)
        .filter(|m| m.octets() != [0u8; 6]);
    if let Some(mac) = current {
        h.set_mac(link.index, mac)
            .ctx(format!("could not set {:?}'s mac", link.name))?;
    }
    Ok(())
}

/// Ensures the `<bridge>.<vlan>` gateway veth exists: that end stays outside the bridge
/// and carries the gateway address; its random-named peer is a bridge port with the VLAN as
/// PVID. Returns the gateway link and whether this call created it.
///
/// # Errors
/// Kernel errors.
pub fn ensure_vlan_gateway(h: &mut Handle, br: &Link, s: &Settings) -> cni::Result<(Link, bool)> {
    let name = format!("{}.{}", br.name, s.vlan);
    if name.len() > 15 {
        return Err(Error::invalid_config(format!(
            "vlan gateway interface name {name:?} would be longer than 15 bytes"
        )));
    }
    if let Some(l) = h
        .link_by_name(&name)
        .ctx(format!("could not lookup {name:?}"))?
    {
        return Ok((l, false));
    }
    let peer = random_veth_name();
    h.add_veth(&VethSpec {
        name: &name,
        peer_name: &peer,
        peer_ns: None,
        mtu: s.mtu,
        mac: None,
        peer_mac: None,
    })
    .ctx(format!("failed to create vlan interface {name:?}"))?;
    let result = (|| {
        let p = h
            .link_by_name(&peer)
            .ctx(format!("could not lookup {peer:?}"))?
            .ok_or_else(|| Error::internal(format!("veth peer {peer:?} not found")))?;
        h.set_master(p.index, br.index)
            .ctx(format!("failed to connect {peer:?} to bridge {}", br.name))?;
        setup_port_vlans(h, p.index, &peer, s.vlan, &[], s.preserve_default_vlan)?;
        h.set_up(p.index)
            .ctx(format!("failed to set {peer:?} up"))?;
        let g = h
            .link_by_name(&name)
            .ctx(format!("could not lookup {name:?}"))?
            .ok_or_else(|| Error::internal(format!("{name:?} not found")))?;
        h.set_up(g.index)
            .ctx(format!("failed to set {name:?} up"))?;
        Ok(g)
    })();
    match result {
        Ok(g) => Ok((g, true)),
        Err(e) => {
            let _ = h.del_link(LinkId::Name(&name));
            Err(e)
        }
    }
}

/// Enables IP forwarding for the family: `net.ipv4.ip_forward` or
/// `net.ipv6.conf.all.forwarding`, written only when not already 1 (a write of
/// `ip_forward` also resets every device's `forwarding`).
///
/// The value is read over netlink (`RTM_GETNETCONF`, with `h` in the host namespace): the
/// common case, forwarding already on, then involves no lookup of `/proc/sys/net/ipv4`,
/// which costs up to a millisecond on a node with many network namespaces (see
/// `cni_netns::sysctl`). Only when it is off, or the kernel cannot answer, is the sysctl
/// read (again) and written.
///
/// # Errors
/// The sysctl write failing.
pub fn enable_forwarding(h: &mut Handle, v4: bool) -> cni::Result<()> {
    let (family, key): (IpFamily, &[&str]) = if v4 {
        (IpFamily::V4, &["net", "ipv4", "ip_forward"])
    } else {
        (IpFamily::V6, &["net", "ipv6", "conf", "all", "forwarding"])
    };
    match h.forwarding(family) {
        Ok(1) => return Ok(()),
        Ok(_) => {}
        Err(e) => log::debug!("reading forwarding over netlink failed, using /proc/sys: {e}"),
    }
    sysctl::set(key, "1")
        .map(|_| ())
        .ctx("failed to enable forwarding")
}

/// Waits until the host port is operationally up (0, 50, 500, 1000, 1000 ms between probes).
///
/// # Errors
/// `bridge port in error state: <state>` when it never comes up.
pub fn wait_port_up(h: &mut Handle, index: u32, name: &str) -> cni::Result<()> {
    let mut state = OperState::Unknown;
    for delay in [0u64, 50, 500, 1000, 1000] {
        std::thread::sleep(Duration::from_millis(delay));
        let l = h
            .link_by_index(index)
            .ctx(format!("failed to retrieve link {name:?}"))?
            .ok_or_else(|| Error::internal(format!("host veth {name:?} vanished")))?;
        state = l.oper_state;
        if state == OperState::Up {
            return Ok(());
        }
    }
    Err(Error::internal(format!(
        "bridge port in error state: {state} (interface {name})"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_are_random_hex() {
        let a = random_veth_name();
        let b = random_veth_name();
        assert_eq!(a.len(), 12);
        assert!(a.starts_with("veth"));
        assert!(
            a[4..]
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }

    #[test]
    fn vlan_plans() {
        let e = |vid, pvid| VlanEntry {
            vid,
            pvid,
            untagged: pvid,
        };
        assert_eq!(port_vlan_plan(0, &[]), vec![]);
        assert_eq!(port_vlan_plan(100, &[]), vec![e(100, true)]);
        assert_eq!(
            port_vlan_plan(0, &[101, 200]),
            vec![e(1, true), e(101, false), e(200, false)]
        );
        assert_eq!(
            port_vlan_plan(100, &[100, 101]),
            vec![e(100, true), e(101, false)]
        );
    }
}
