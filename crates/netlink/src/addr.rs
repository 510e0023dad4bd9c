//! IP addresses on links.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::error::Result;
use crate::handle::Handle;

/// IP address family filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl IpFamily {
    /// Family of an address.
    pub fn of(ip: IpAddr) -> Self {
        if ip.is_ipv4() { Self::V4 } else { Self::V6 }
    }

    pub(crate) fn af(self) -> AddressFamily {
        match self {
            Self::V4 => AddressFamily::Inet,
            Self::V6 => AddressFamily::Inet6,
        }
    }
}

/// Address flags relevant to CNI (`IFA_F_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AddrFlags {
    /// Duplicate address detection still running.
    pub tentative: bool,
    /// Duplicate address detection failed.
    pub dad_failed: bool,
    /// Permanent (configured) address.
    pub permanent: bool,
    /// Secondary address.
    pub secondary: bool,
    /// No DAD for this address.
    pub nodad: bool,
    /// Deprecated (preferred lifetime expired).
    pub deprecated: bool,
}

impl AddrFlags {
    fn from_bits(f: AddressFlags) -> Self {
        Self {
            tentative: f.contains(AddressFlags::Tentative),
            dad_failed: f.contains(AddressFlags::Dadfailed),
            permanent: f.contains(AddressFlags::Permanent),
            secondary: f.contains(AddressFlags::Secondary),
            nodad: f.contains(AddressFlags::Nodad),
            deprecated: f.contains(AddressFlags::Deprecated),
        }
    }
}

/// An address assigned to a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Link index.
    pub index: u32,
    /// Address with prefix length (host bits kept).
    pub addr: IpNetwork,
    /// Scope (`0` universe/global, `253` link, `254` host).
    pub scope: u8,
    /// Flags.
    pub flags: AddrFlags,
}

impl Address {
    /// True for global-scope addresses (what the reference calls "global unicast").
    pub fn is_global(&self) -> bool {
        self.scope == 0
    }

    fn from_message(m: &AddressMessage) -> Option<Self> {
        let mut local = None;
        let mut address = None;
        let mut flags = AddressFlags::from_bits_retain(u32::from(m.header.flags.bits()));
        for a in &m.attributes {
            match a {
                AddressAttribute::Local(ip) => local = Some(*ip),
                AddressAttribute::Address(ip) => address = Some(*ip),
                AddressAttribute::Flags(f) => flags = *f,
                _ => {}
            }
        }
        // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on
        // point-to-point links and equal to it otherwise. IPv6 only sends IFA_ADDRESS.
        let ip = local.or(address)?;
        let addr = IpNetwork::new(ip, m.header.prefix_len).ok()?;
        Some(Self {
            index: m.header.index,
            addr,
            scope: u8::from(m.header.scope),
            flags: AddrFlags::from_bits(flags),
        })
    }
}

/// Pure message builders.
pub mod msg {
    use super::*;

    /// `RTM_GETADDR` dump, optionally filtered (strict checking) by link and family.
    pub fn dump(index: Option<u32>, family: Option<IpFamily>) -> RouteNetlinkMessage {
        let mut m = AddressMessage::default();
        if let Some(f) = family {
            m.header.family = f.af();
        }
        if let Some(i) = index {
            m.header.index = i;
        }
        RouteNetlinkMessage::GetAddress(m)
    }

    fn base(index: u32, addr: IpNetwork) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = IpFamily::of(addr.ip()).af();
        m.header.prefix_len = addr.prefix();
        m.header.index = index;
        m.header.scope = AddressScope::Universe;
        m.header.flags = AddressHeaderFlags::empty();
        m.attributes.push(AddressAttribute::Local(addr.ip()));
        m.attributes.push(AddressAttribute::Address(addr.ip()));
        m
    }

    /// `RTM_NEWADDR`; IPv4 addresses shorter than /31 get the subnet broadcast.
    pub fn add(index: u32, addr: IpNetwork) -> RouteNetlinkMessage {
        let mut m = base(index, addr);
        if let IpNetwork::V4(n) = addr
            && n.prefix() < 31
        {
            m.attributes
                .push(AddressAttribute::Broadcast(n.broadcast()));
        }
        RouteNetlinkMessage::NewAddress(m)
    }

    /// `RTM_DELADDR`.
    pub fn del(index: u32, addr: IpNetwork) -> RouteNetlinkMessage {
        RouteNetlinkMessage::DelAddress(base(index, addr))
    }
}

impl Handle {
    /// Addresses, optionally of one link and/or one family.
    ///
    /// # Errors
    /// Kernel or transport errors.
    pub fn addrs(&mut self, index: Option<u32>, family: Option<IpFamily>) -> Result<Vec<Address>> {
        let what = match index {
            Some(i) => format!("dump addresses of ifindex {i}"),
            None => "dump addresses".to_string(),
        };
        let r = self.request(msg::dump(index, family), NLM_F_DUMP, &what)?;
        Ok(r.into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => Address::from_message(&a),
                _ => None,
            })
            // The kernel filters with strict checking; filter again for old kernels.
            .filter(|a| index.is_none_or(|i| a.index == i))
            .filter(|a| family.is_none_or(|f| IpFamily::of(a.addr.ip()) == f))
            .collect())
    }

    /// Adds an address. An identical existing address gives
    /// [`crate::Error::is_exists`].
    ///
    /// # Errors
    /// Kernel errors.
    pub fn add_addr(&mut self, index: u32, addr: IpNetwork) -> Result<()> {
        self.request(
            msg::add(index, addr),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add address {addr} to ifindex {index}"),
        )?;
        Ok(())
    }

    /// Removes an address.
    ///
    /// # Errors
    /// Kernel errors; [`crate::Error::is_not_found`] when it is not there.
    pub fn del_addr(&mut self, index: u32, addr: IpNetwork) -> Result<()> {
        self.request(
            msg::del(index, addr),
            0,
            &format!("delete address {addr} from ifindex {index}"),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_v4_has_broadcast() {
        let n: IpNetwork = "10.1.2.3/24".parse().unwrap();
        let RouteNetlinkMessage::NewAddress(m) = msg::add(4, n) else {
            panic!()
        };
        assert_eq!(m.header.prefix_len, 24);
        assert_eq!(m.header.index, 4);
        assert_eq!(m.header.family, AddressFamily::Inet);
        assert!(
            m.attributes
                .contains(&AddressAttribute::Local("10.1.2.3".parse().unwrap()))
        );
        assert!(
            m.attributes
                .contains(&AddressAttribute::Broadcast("10.1.2.255".parse().unwrap()))
        );
        let p31: IpNetwork = "10.1.2.3/31".parse().unwrap();
        let RouteNetlinkMessage::NewAddress(m) = msg::add(4, p31) else {
            panic!()
        };
        assert!(
            !m.attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Broadcast(_)))
        );
    }

    #[test]
    fn v6_add_and_parse_flags() {
        let n: IpNetwork = "2001:db8::5/64".parse().unwrap();
        let RouteNetlinkMessage::NewAddress(mut m) = msg::add(2, n) else {
            panic!()
        };
        assert_eq!(m.header.family, AddressFamily::Inet6);
        m.attributes
            .retain(|a| matches!(a, AddressAttribute::Address(_)));
        m.attributes.push(AddressAttribute::Flags(
            AddressFlags::Tentative | AddressFlags::Permanent,
        ));
        let a = Address::from_message(&m).unwrap();
        assert_eq!(a.addr, n);
        assert!(a.flags.tentative && a.flags.permanent && !a.flags.dad_failed);
        assert!(a.is_global());
    }

    #[test]
    fn dump_filters() {
        let RouteNetlinkMessage::GetAddress(m) = msg::dump(Some(3), Some(IpFamily::V6)) else {
            panic!()
        };
        assert_eq!(m.header.index, 3);
        assert_eq!(m.header.family, AddressFamily::Inet6);
        assert_eq!(m.header.prefix_len, 0);
    }
}
