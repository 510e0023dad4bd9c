//! Bridge ports: port flags (`IFLA_PROTINFO`) and VLAN entries (`IFLA_AF_SPEC`).
//!
//! Both are `AF_BRIDGE` requests addressed to the *port*; the kernel forwards them to the
//! port's master bridge (like `bridge link set` / `bridge vlan add`).

use netlink_packet_core::{DefaultNla, NLM_F_DUMP};
use netlink_packet_route::link::{
    AfSpecBridge, BridgeVlanInfo, BridgeVlanInfoFlags, LinkAttribute, LinkExtentMask, LinkMessage,
    LinkProtoInfoBridge,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::{Error, Result};
use crate::handle::Handle;

/// `IFLA_BRPORT_MODE` (hairpin).
const IFLA_BRPORT_MODE: u16 = 4;
/// `IFLA_BRPORT_ISOLATED`.
const IFLA_BRPORT_ISOLATED: u16 = 33;

/// Bridge-port flags to change; `None` leaves a flag as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PortFlags {
    /// Hairpin mode (reflect frames back out of the port they came in on).
    pub hairpin: Option<bool>,
    /// Isolated: may only talk to non-isolated ports.
    pub isolated: Option<bool>,
}

/// One VLAN entry of a bridge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct VlanEntry {
    /// VLAN id (1..=4094).
    pub vid: u16,
    /// Untagged ingress frames are assigned this VLAN.
    pub pvid: bool,
    /// Frames of this VLAN leave untagged.
    pub untagged: bool,
}

/// Pure message builders.
pub mod msg {
    use super::*;

    fn bridge_message(port: u32) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.interface_family = AddressFamily::Bridge;
        m.header.index = port;
        m
    }

    /// `RTM_SETLINK` (`AF_BRIDGE`) with `IFLA_PROTINFO` port flags.
    pub fn set_port_flags(port: u32, f: PortFlags) -> RouteNetlinkMessage {
        let mut nlas = Vec::new();
        if let Some(h) = f.hairpin {
            nlas.push(LinkProtoInfoBridge::Other(DefaultNla::new(
                IFLA_BRPORT_MODE,
                vec![u8::from(h)],
            )));
        }
        if let Some(i) = f.isolated {
            nlas.push(LinkProtoInfoBridge::Other(DefaultNla::new(
                IFLA_BRPORT_ISOLATED,
                vec![u8::from(i)],
            )));
        }
        let mut m = bridge_message(port);
        m.attributes.push(LinkAttribute::ProtoInfoBridge(nlas));
        RouteNetlinkMessage::SetLink(m)
    }

    fn vlan_message(port: u32, e: VlanEntry) -> LinkMessage {
        let mut flags = BridgeVlanInfoFlags::empty();
        if e.pvid {
            flags |= BridgeVlanInfoFlags::Pvid;
        }
        if e.untagged {
            flags |= BridgeVlanInfoFlags::Untagged;
        }
        let mut m = bridge_message(port);
        m.attributes
            .push(LinkAttribute::AfSpecBridge(vec![AfSpecBridge::VlanInfo(
                BridgeVlanInfo { flags, vid: e.vid },
            )]));
        m
    }

    /// `RTM_SETLINK` adding a VLAN to a port.
    pub fn vlan_add(port: u32, e: VlanEntry) -> RouteNetlinkMessage {
        RouteNetlinkMessage::SetLink(vlan_message(port, e))
    }

    /// `RTM_DELLINK` removing a VLAN from a port.
    pub fn vlan_del(port: u32, vid: u16) -> RouteNetlinkMessage {
        RouteNetlinkMessage::DelLink(vlan_message(
            port,
            VlanEntry {
                vid,
                pvid: false,
                untagged: false,
            },
        ))
    }

    /// `RTM_GETLINK` dump (`AF_BRIDGE`) asking for per-port VLAN lists.
    pub fn vlan_dump() -> RouteNetlinkMessage {
        let mut m = LinkMessage::default();
        m.header.interface_family = AddressFamily::Bridge;
        m.attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::Brvlan]));
        RouteNetlinkMessage::GetLink(m)
    }

    /// VLAN entries in a dump reply for `port`.
    pub fn parse_vlans(port: u32, m: &LinkMessage) -> Vec<VlanEntry> {
        if m.header.index != port {
            return Vec::new();
        }
        m.attributes
            .iter()
            .filter_map(|a| match a {
                LinkAttribute::AfSpecBridge(v) => Some(v),
                _ => None,
            })
            .flatten()
            .filter_map(|s| match s {
                AfSpecBridge::VlanInfo(i) => Some(VlanEntry {
                    vid: i.vid,
                    pvid: i.flags.contains(BridgeVlanInfoFlags::Pvid),
                    untagged: i.flags.contains(BridgeVlanInfoFlags::Untagged),
                }),
                _ => None,
            })
            .collect()
    }
}

fn check_vid(vid: u16) -> Result<()> {
    if (1..=4094).contains(&vid) {
        Ok(())
    } else {
        Err(Error::Invalid(format!("VLAN id {vid} (must be 1..4094)")))
    }
}

impl Handle {
    /// Sets bridge-port flags on `port` (which must be enslaved to a bridge).
    ///
    /// # Errors
    /// Kernel errors (e.g. `EOPNOTSUPP` when the link is not a bridge port).
    pub fn set_port_flags(&mut self, port: u32, f: PortFlags) -> Result<()> {
        self.request(
            msg::set_port_flags(port, f),
            0,
            &format!(
                "set bridge port flags (hairpin {:?}, isolated {:?}) on ifindex {port}",
                f.hairpin, f.isolated
            ),
        )?;
        Ok(())
    }

    /// Adds a VLAN entry to a bridge port (the bridge must have `vlan_filtering` to use
    /// it, but the kernel accepts entries either way when VLAN support is compiled in).
    ///
    /// # Errors
    /// [`Error::Invalid`] for a VID outside 1..4094; kernel errors (`EOPNOTSUPP` without
    /// kernel VLAN filtering support).
    pub fn bridge_vlan_add(&mut self, port: u32, e: VlanEntry) -> Result<()> {
        check_vid(e.vid)?;
        self.request(
            msg::vlan_add(port, e),
            0,
            &format!(
                "add VLAN {} (pvid {}, untagged {}) to bridge port ifindex {port}",
                e.vid, e.pvid, e.untagged
            ),
        )?;
        Ok(())
    }

    /// Removes a VLAN entry from a bridge port.
    ///
    /// # Errors
    /// As [`Handle::bridge_vlan_add`].
    pub fn bridge_vlan_del(&mut self, port: u32, vid: u16) -> Result<()> {
        check_vid(vid)?;
        self.request(
            msg::vlan_del(port, vid),
            0,
            &format!("delete VLAN {vid} from bridge port ifindex {port}"),
        )?;
        Ok(())
    }

    /// The VLAN entries of a bridge port, sorted by VID.
    ///
    /// # Errors
    /// Kernel or transport errors.
    pub fn bridge_vlans(&mut self, port: u32) -> Result<Vec<VlanEntry>> {
        let r = self.request(
            msg::vlan_dump(),
            NLM_F_DUMP,
            &format!("dump bridge VLANs of ifindex {port}"),
        )?;
        let mut v: Vec<VlanEntry> = r
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(msg::parse_vlans(port, l)),
                _ => None,
            })
            .flatten()
            .collect();
        v.sort();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{Emitable, Nla};

    fn emit(attr: &LinkAttribute) -> Vec<u8> {
        let mut b = vec![0u8; attr.buffer_len()];
        attr.emit(&mut b);
        b
    }

    #[test]
    fn port_flags_bytes() {
        let RouteNetlinkMessage::SetLink(m) = msg::set_port_flags(
            9,
            PortFlags {
                hairpin: Some(true),
                isolated: Some(false),
            },
        ) else {
            panic!()
        };
        assert_eq!(m.header.interface_family, AddressFamily::Bridge);
        assert_eq!(m.header.index, 9);
        let b = emit(&m.attributes[0]);
        // IFLA_PROTINFO|NLA_F_NESTED (12|0x8000), len 4+8+8
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), 20);
        assert_eq!(u16::from_ne_bytes([b[2], b[3]]), 12 | 0x8000);
        // IFLA_BRPORT_MODE = 1
        assert_eq!(&b[4..9], &[5, 0, 4, 0, 1]);
        // IFLA_BRPORT_ISOLATED = 0
        assert_eq!(&b[12..17], &[5, 0, 33, 0, 0]);
        assert_eq!(m.attributes[0].kind() & 0x7fff, 12);
    }

    #[test]
    fn vlan_add_bytes() {
        let RouteNetlinkMessage::SetLink(m) = msg::vlan_add(
            3,
            VlanEntry {
                vid: 100,
                pvid: true,
                untagged: true,
            },
        ) else {
            panic!()
        };
        assert_eq!(m.header.interface_family, AddressFamily::Bridge);
        let b = emit(&m.attributes[0]);
        // IFLA_AF_SPEC (26) nested; inner IFLA_BRIDGE_VLAN_INFO (2): flags u16, vid u16
        assert_eq!(u16::from_ne_bytes([b[2], b[3]]) & 0x7fff, 26);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), 2);
        let flags = u16::from_ne_bytes([b[8], b[9]]);
        assert_eq!(flags, 0b110, "PVID|UNTAGGED");
        assert_eq!(u16::from_ne_bytes([b[10], b[11]]), 100);
    }

    #[test]
    fn vlan_del_and_dump() {
        let RouteNetlinkMessage::DelLink(m) = msg::vlan_del(3, 1) else {
            panic!()
        };
        let b = emit(&m.attributes[0]);
        assert_eq!(u16::from_ne_bytes([b[8], b[9]]), 0);
        assert_eq!(u16::from_ne_bytes([b[10], b[11]]), 1);
        let RouteNetlinkMessage::GetLink(d) = msg::vlan_dump() else {
            panic!()
        };
        assert_eq!(d.header.interface_family, AddressFamily::Bridge);
        assert_eq!(d.header.index, 0, "bridge dumps cannot filter by index");
        let b = emit(&d.attributes[0]);
        // IFLA_EXT_MASK (29) = RTEXT_FILTER_BRVLAN (2)
        assert_eq!(u16::from_ne_bytes([b[2], b[3]]), 29);
        assert_eq!(u32::from_ne_bytes([b[4], b[5], b[6], b[7]]), 2);
    }

    #[test]
    fn parse_vlans_filters_port() {
        let RouteNetlinkMessage::SetLink(m) = msg::vlan_add(
            3,
            VlanEntry {
                vid: 7,
                pvid: false,
                untagged: false,
            },
        ) else {
            panic!()
        };
        assert_eq!(
            msg::parse_vlans(3, &m),
            vec![VlanEntry {
                vid: 7,
                pvid: false,
                untagged: false
            }]
        );
        assert!(msg::parse_vlans(4, &m).is_empty());
        assert!(check_vid(0).is_err() && check_vid(4095).is_err() && check_vid(4094).is_ok());
    }
}
