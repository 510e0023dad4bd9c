//! Links: lookup, dump, creation of bridges and veth pairs, attribute changes, deletion.

use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{
    AfSpecInet, AfSpecUnspec, InetDevConf, InfoBridge, InfoBridgePort, InfoData, InfoKind,
    InfoPortData, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};

use crate::error::{Error, Result};
use crate::handle::Handle;
use crate::mac::MacAddr;

/// How to name a link in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkId<'a> {
    /// By interface index.
    Index(u32),
    /// By interface name.
    Name(&'a str),
}

impl std::fmt::Display for LinkId<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LinkId::Index(i) => write!(f, "ifindex {i}"),
            LinkId::Name(n) => write!(f, "{n:?}"),
        }
    }
}

/// RFC 2863 operational state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperState {
    /// Unknown (e.g. loopback, or a bridge before carrier logic runs).
    Unknown,
    /// Not present.
    NotPresent,
    /// Down.
    Down,
    /// Down because the lower layer is down.
    LowerLayerDown,
    /// Testing.
    Testing,
    /// Dormant (e.g. a bridge port still learning).
    Dormant,
    /// Up.
    Up,
}

impl std::fmt::Display for OperState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            OperState::Unknown => "unknown",
            OperState::NotPresent => "notpresent",
            OperState::Down => "down",
            OperState::LowerLayerDown => "lowerlayerdown",
            OperState::Testing => "testing",
            OperState::Dormant => "dormant",
            OperState::Up => "up",
        };
        f.write_str(s)
    }
}

/// The part of a link's IPv4 device configuration (`net.ipv4.conf.<dev>.*`) the plugins
/// use, from `IFLA_AF_SPEC` / `AF_INET` / `IFLA_INET_CONF` of an `RTM_NEWLINK` reply.
///
/// Values are the raw integers the sysctl files show (normally 0 or 1). Reading them here
/// instead of under `/proc/sys/net/ipv4` avoids that directory's path lookup, which is
/// slow on a node with many network namespaces (see `cni_netns::sysctl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ipv4DevConf {
    /// `forwarding` of this device (not the namespace-wide `net.ipv4.ip_forward`, which
    /// [`Handle::forwarding`] reads).
    pub forwarding: i32,
    /// `arp_notify`: send gratuitous ARP when the device comes up or its MAC changes.
    pub arp_notify: i32,
    /// `route_localnet`: route packets with 127/8 addresses (needed for DNAT from
    /// localhost).
    pub route_localnet: i32,
}

impl From<&InetDevConf> for Ipv4DevConf {
    fn from(c: &InetDevConf) -> Self {
        Self {
            forwarding: c.forwarding,
            arp_notify: c.arp_notify,
            route_localnet: c.route_localnet,
        }
    }
}

/// An IPv4 device setting that [`Handle::enable_ipv4_conf`] turns on (sets to 1).
///
/// Only settings whose sysctl write has no side effect beyond storing the value are
/// offered: the kernel's netlink path (`inet_set_link_af`) stores the value and marks it
/// explicitly set, as a sysctl write does, but runs none of a sysctl's extra actions.
/// So `forwarding` is not here (its sysctl write also disables LRO and notifies
/// listeners). Values other than 1 cannot be set either: the request encoding of
/// `netlink-packet-route` (`AfSpecInet::DevConfRequest`) leaves out zero values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4ConfKey {
    /// `net.ipv4.conf.<dev>.arp_notify`.
    ArpNotify,
    /// `net.ipv4.conf.<dev>.route_localnet` (the sysctl flushes the route cache only
    /// when it goes from 1 to 0, which this cannot do).
    RouteLocalnet,
}

impl Ipv4ConfKey {
    /// The sysctl name below `net.ipv4.conf.<dev>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::ArpNotify => "arp_notify",
            Self::RouteLocalnet => "route_localnet",
        }
    }
}

/// A link as reported by the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// `IFLA_INFO_KIND` (`bridge`, `veth`, ...), `None` for physical/loopback links.
    pub kind: Option<String>,
    /// Hardware address, when the link has a 6-byte one.
    pub mac: Option<MacAddr>,
    /// MTU.
    pub mtu: u32,
    /// Index of the master (e.g. the bridge of a bridge port).
    pub master: Option<u32>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Operational state.
    pub oper_state: OperState,
    /// Promiscuous flag (`IFF_PROMISC`).
    pub promisc: bool,
    /// `IFLA_LINK`: for a veth, the peer's index (in the peer's namespace).
    pub peer_index: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the peer's namespace id, when it lives elsewhere.
    pub link_netnsid: Option<i32>,
    /// Bridge option `vlan_filtering` (bridges only).
    pub vlan_filtering: Option<bool>,
    /// Bridge-port hairpin flag (bridge ports only).
    pub hairpin: Option<bool>,
    /// Bridge-port isolated flag (bridge ports only).
    pub isolated: Option<bool>,
    /// IPv4 device configuration; `None` when the reply has none (the device has no
    /// IPv4 configuration, e.g. its MTU is below 68).
    pub ipv4: Option<Ipv4DevConf>,
}

impl Link {
    /// True when the kind is `bridge`.
    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }

    /// True when the kind is `veth`.
    pub fn is_veth(&self) -> bool {
        self.kind.as_deref() == Some("veth")
    }

    /// Builds a [`Link`] from a kernel `RTM_NEWLINK` message.
    pub fn from_message(m: &LinkMessage) -> Self {
        let mut l = Link {
            index: m.header.index,
            name: String::new(),
            kind: None,
            mac: None,
            mtu: 0,
            master: None,
            up: m.header.flags.contains(LinkFlags::Up),
            oper_state: OperState::Unknown,
            promisc: m.header.flags.contains(LinkFlags::Promisc),
            peer_index: None,
            link_netnsid: None,
            vlan_filtering: None,
            hairpin: None,
            isolated: None,
            ipv4: None,
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name.clone_from(n),
                LinkAttribute::Address(b) => l.mac = MacAddr::from_slice(b),
                LinkAttribute::Mtu(v) => l.mtu = *v,
                LinkAttribute::Controller(v) => l.master = Some(*v),
                LinkAttribute::Link(v) => l.peer_index = Some(*v),
                LinkAttribute::LinkNetNsId(v) => l.link_netnsid = Some(*v),
                LinkAttribute::OperState(s) => l.oper_state = oper_state(s),
                LinkAttribute::LinkInfo(infos) => parse_link_info(infos, &mut l),
                LinkAttribute::AfSpecUnspec(specs) => l.ipv4 = ipv4_devconf(specs),
                _ => {}
            }
        }
        l
    }
}

/// The `AF_INET` / `IFLA_INET_CONF` entry of `IFLA_AF_SPEC`.
fn ipv4_devconf(specs: &[AfSpecUnspec]) -> Option<Ipv4DevConf> {
    specs.iter().find_map(|s| match s {
        AfSpecUnspec::Inet(inet) => inet.iter().find_map(|a| match a {
            AfSpecInet::DevConf(c) => Some(Ipv4DevConf::from(c)),
            _ => None,
        }),
        _ => None,
    })
}

fn oper_state(s: &State) -> OperState {
    match s {
        State::NotPresent => OperState::NotPresent,
        State::Down => OperState::Down,
        State::LowerLayerDown => OperState::LowerLayerDown,
        State::Testing => OperState::Testing,
        State::Dormant => OperState::Dormant,
        State::Up => OperState::Up,
        _ => OperState::Unknown,
    }
}

fn parse_link_info(infos: &[LinkInfo], l: &mut Link) {
    for info in infos {
        match info {
            LinkInfo::Kind(k) => l.kind = Some(k.to_string()),
            LinkInfo::Data(InfoData::Bridge(opts)) => {
                for o in opts {
                    if let InfoBridge::VlanFiltering(v) = o {
                        l.vlan_filtering = Some(*v);
                    }
                }
            }
            LinkInfo::PortData(InfoPortData::BridgePort(opts)) => {
                for o in opts {
                    match o {
                        InfoBridgePort::HairpinMode(v) => l.hairpin = Some(*v),
                        InfoBridgePort::Isolated(v) => l.isolated = Some(*v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// A bridge to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeSpec<'a> {
    /// Name of the bridge.
    pub name: &'a str,
    /// MTU, kernel default when `None`.
    pub mtu: Option<u32>,
    /// `vlan_filtering` option, kernel default (off) when `None`.
    pub vlan_filtering: Option<bool>,
}

/// A veth pair to create. The local end is created in the handle's namespace; the peer
/// is created directly in `peer_ns` (or next to the local end when `None`).
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    /// Name of the local end.
    pub name: &'a str,
    /// Name of the peer end.
    pub peer_name: &'a str,
    /// Namespace of the peer end (`IFLA_NET_NS_FD`).
    pub peer_ns: Option<BorrowedFd<'a>>,
    /// MTU of both ends.
    pub mtu: Option<u32>,
    /// MAC of the local end.
    pub mac: Option<MacAddr>,
    /// MAC of the peer end.
    pub peer_mac: Option<MacAddr>,
}

/// Pure message builders (unit-tested without privileges).
pub mod msg {
    use super::*;

    fn id_message(id: LinkId<'_>) -> LinkMessage {
        let mut m = LinkMessage::default();
        match id {
            LinkId::Index(i) => m.header.index = i,
            LinkId::Name(n) => m.attributes.push(LinkAttribute::IfName(n.to_string())),
        }
        m
    }

    /// `RTM_GETLINK` for one link.
    pub fn get(id: LinkId<'_>) -> RouteNetlinkMessage {
        RouteNetlinkMessage::GetLink(id_message(id))
    }

    /// `RTM_NEWLINK` creating a bridge.
    pub fn add_bridge(b: &BridgeSpec<'_>) -> RouteNetlinkMessage {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(b.name.to_string()));
        if let Some(mtu) = b.mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        let mut info = vec![LinkInfo::Kind(InfoKind::Bridge)];
        if let Some(v) = b.vlan_filtering {
            info.push(LinkInfo::Data(InfoData::Bridge(vec![
                InfoBridge::VlanFiltering(v),
            ])));
        }
        m.attributes.push(LinkAttribute::LinkInfo(info));
        RouteNetlinkMessage::NewLink(m)
    }

    /// `RTM_NEWLINK` creating a veth pair.
    pub fn add_veth(v: &VethSpec<'_>) -> RouteNetlinkMessage {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(v.peer_name.to_string()));
        if let Some(mtu) = v.mtu {
            peer.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = v.peer_mac {
            peer.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        if let Some(fd) = v.peer_ns {
            peer.attributes.push(LinkAttribute::NetNsFd(fd.as_raw_fd()));
        }
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(v.name.to_string()));
        if let Some(mtu) = v.mtu {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        }
        if let Some(mac) = v.mac {
            m.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
        }
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        RouteNetlinkMessage::NewLink(m)
    }

    /// `RTM_SETLINK` changing IFF_UP or IFF_PROMISC.
    pub fn set_flag(index: u32, flag: LinkFlags, on: bool) -> RouteNetlinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.change_mask = flag;
        if on {
            m.header.flags = flag;
        }
        RouteNetlinkMessage::SetLink(m)
    }

    /// `RTM_SETLINK` with one attribute.
    pub fn set_attr(index: u32, attr: LinkAttribute) -> RouteNetlinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(attr);
        RouteNetlinkMessage::SetLink(m)
    }

    /// `RTM_SETLINK` setting IPv4 device configuration values to 1: `IFLA_AF_SPEC` /
    /// `AF_INET` / `IFLA_INET_CONF` with one nested `u32` per key, typed by its
    /// `IPV4_DEVCONF_*` number.
    pub fn enable_ipv4_conf(index: u32, keys: &[Ipv4ConfKey]) -> RouteNetlinkMessage {
        let mut conf = InetDevConf::default();
        for k in keys {
            match k {
                Ipv4ConfKey::ArpNotify => conf.arp_notify = 1,
                Ipv4ConfKey::RouteLocalnet => conf.route_localnet = 1,
            }
        }
        set_attr(
            index,
            LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(vec![
                AfSpecInet::DevConfRequest(conf),
            ])]),
        )
    }

    /// `RTM_DELLINK`.
    pub fn del(id: LinkId<'_>) -> RouteNetlinkMessage {
        RouteNetlinkMessage::DelLink(id_message(id))
    }
}

fn links_of(replies: Vec<RouteNetlinkMessage>) -> Vec<Link> {
    replies
        .into_iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(&m)),
            _ => None,
        })
        .collect()
}

impl Handle {
    /// Looks up one link; `None` when it does not exist.
    ///
    /// # Errors
    /// Kernel errors other than "no such device", transport errors.
    pub fn link(&mut self, id: LinkId<'_>) -> Result<Option<Link>> {
        if let LinkId::Name(n) = id {
            check_name(n)?;
        }
        match self.request(msg::get(id), 0, &format!("get link {id}")) {
            Ok(r) => Ok(links_of(r).into_iter().next()),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Looks up a link by name.
    ///
    /// # Errors
    /// As [`Handle::link`].
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>> {
        self.link(LinkId::Name(name))
    }

    /// Looks up a link by index.
    ///
    /// # Errors
    /// As [`Handle::link`].
    pub fn link_by_index(&mut self, index: u32) -> Result<Option<Link>> {
        self.link(LinkId::Index(index))
    }

    /// All links of the namespace.
    ///
    /// # Errors
    /// Kernel or transport errors.
    pub fn links(&mut self) -> Result<Vec<Link>> {
        let r = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            "dump links",
        )?;
        Ok(links_of(r))
    }

    /// Creates a bridge. An existing link of that name yields an error for which
    /// [`Error::is_exists`] is true.
    ///
    /// # Errors
    /// Kernel errors (`EEXIST`, `EOPNOTSUPP` for VLAN filtering without kernel support).
    pub fn add_bridge(&mut self, b: &BridgeSpec<'_>) -> Result<()> {
        check_name(b.name)?;
        self.request(
            msg::add_bridge(b),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add bridge {:?}", b.name),
        )?;
        Ok(())
    }

    /// Creates a veth pair (peer possibly in another namespace).
    ///
    /// # Errors
    /// Kernel errors; `EEXIST` when either name is taken in its namespace.
    pub fn add_veth(&mut self, v: &VethSpec<'_>) -> Result<()> {
        check_name(v.name)?;
        check_name(v.peer_name)?;
        self.request(
            msg::add_veth(v),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("add veth {:?} (peer {:?})", v.name, v.peer_name),
        )?;
        Ok(())
    }

    /// Sets a link administratively up.
    ///
    /// # Errors
    /// Kernel errors.
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        self.change(index, msg::set_flag(index, LinkFlags::Up, true), "set up")
    }

    /// Sets a link administratively down.
    ///
    /// # Errors
    /// Kernel errors.
    pub fn set_down(&mut self, index: u32) -> Result<()> {
        self.change(
            index,
            msg::set_flag(index, LinkFlags::Up, false),
            "set down",
        )
    }

    /// Turns promiscuous mode on or off.
    ///
    /// # Errors
    /// Kernel errors.
    pub fn set_promisc(&mut self, index: u32, on: bool) -> Result<()> {
        self.change(
            index,
            msg::set_flag(index, LinkFlags::Promisc, on),
            &format!("set promisc {}", if on { "on" } else { "off" }),
        )
    }

    /// Enslaves a link to `master` (e.g. a bridge); `0` releases it.
    ///
    /// # Errors
    /// Kernel errors.
    pub fn set_master(&mut self, index: u32, master: u32) -> Result<()> {
        self.change(
            index,
            msg::set_attr(index, LinkAttribute::Controller(master)),
            &format!("set master ifindex {master}"),
        )
    }

    /// Sets the MTU.
    ///
    /// # Errors
    /// Kernel errors (e.g. `EINVAL` for an out-of-range MTU).
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> Result<()> {
        self.change(
            index,
            msg::set_attr(index, LinkAttribute::Mtu(mtu)),
            &format!("set mtu {mtu}"),
        )
    }

    /// Sets the hardware address.
    ///
    /// # Errors
    /// Kernel errors.
    pub fn set_mac(&mut self, index: u32, mac: MacAddr) -> Result<()> {
        self.change(
            index,
            msg::set_attr(index, LinkAttribute::Address(mac.0.to_vec())),
            &format!("set mac {mac}"),
        )
    }

    /// Sets IPv4 device configuration values of a link to 1 with one `RTM_SETLINK`, as
    /// writing `1` to `net.ipv4.conf.<dev>.<key>` does (see [`Ipv4ConfKey`]), without the
    /// path lookup of `/proc/sys/net/ipv4`, which is slow on a node with many network
    /// namespaces (see `cni_netns::sysctl`). Nothing is sent for an empty `keys`.
    ///
    /// # Errors
    /// Kernel errors (`EAFNOSUPPORT` when the device has no IPv4 configuration).
    pub fn enable_ipv4_conf(&mut self, index: u32, keys: &[Ipv4ConfKey]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = keys.iter().map(|k| format!("{}=1", k.name())).collect();
        self.change(
            index,
            msg::enable_ipv4_conf(index, keys),
            &format!("set IPv4 conf {}", names.join(" ")),
        )
    }

    /// Deletes a link; for a veth this also removes its peer.
    ///
    /// # Errors
    /// Kernel errors; [`Error::is_not_found`] is true when it does not exist.
    pub fn del_link(&mut self, id: LinkId<'_>) -> Result<()> {
        self.request(msg::del(id), 0, &format!("delete link {id}"))?;
        Ok(())
    }

    fn change(&mut self, index: u32, m: RouteNetlinkMessage, what: &str) -> Result<()> {
        self.request(m, 0, &format!("{what} on ifindex {index}"))?;
        Ok(())
    }
}

/// Rejects names the kernel would refuse, with a clear message.
pub(crate) fn check_name(n: &str) -> Result<()> {
    if n.is_empty() || n.len() > 15 || n.contains(['/', ':']) || n.chars().any(char::is_whitespace)
    {
        return Err(Error::Invalid(format!("interface name {n:?}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(m: &RouteNetlinkMessage) -> &[LinkAttribute] {
        match m {
            RouteNetlinkMessage::NewLink(l)
            | RouteNetlinkMessage::SetLink(l)
            | RouteNetlinkMessage::GetLink(l)
            | RouteNetlinkMessage::DelLink(l) => &l.attributes,
            _ => panic!("not a link message"),
        }
    }

    #[test]
    fn bridge_message() {
        let m = msg::add_bridge(&BridgeSpec {
            name: "cni0",
            mtu: Some(1400),
            vlan_filtering: Some(true),
        });
        let a = attrs(&m);
        assert!(a.contains(&LinkAttribute::IfName("cni0".into())));
        assert!(a.contains(&LinkAttribute::Mtu(1400)));
        assert!(a.contains(&LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::VlanFiltering(true)])),
        ])));
        let plain = msg::add_bridge(&BridgeSpec {
            name: "br",
            mtu: None,
            vlan_filtering: None,
        });
        assert_eq!(attrs(&plain).len(), 2);
    }

    #[test]
    fn veth_message_places_peer_in_namespace() {
        let f = std::fs::File::open("/proc/self/ns/net").unwrap();
        use std::os::fd::AsFd;
        let mac: MacAddr = "02:00:00:00:00:01".parse().unwrap();
        let m = msg::add_veth(&VethSpec {
            name: "veth0",
            peer_name: "eth0",
            peer_ns: Some(f.as_fd()),
            mtu: Some(9000),
            mac: None,
            peer_mac: Some(mac),
        });
        let a = attrs(&m);
        let Some(LinkAttribute::LinkInfo(info)) =
            a.iter().find(|x| matches!(x, LinkAttribute::LinkInfo(_)))
        else {
            panic!("no linkinfo")
        };
        assert_eq!(info[0], LinkInfo::Kind(InfoKind::Veth));
        let LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))) = &info[1] else {
            panic!("no peer")
        };
        assert!(
            peer.attributes
                .contains(&LinkAttribute::IfName("eth0".into()))
        );
        assert!(peer.attributes.contains(&LinkAttribute::Mtu(9000)));
        assert!(
            peer.attributes
                .contains(&LinkAttribute::Address(mac.0.to_vec()))
        );
        assert!(
            peer.attributes
                .contains(&LinkAttribute::NetNsFd(f.as_raw_fd()))
        );
        assert!(a.contains(&LinkAttribute::Mtu(9000)));
        assert!(!a.iter().any(|x| matches!(x, LinkAttribute::Address(_))));
    }

    #[test]
    fn set_flag_uses_change_mask() {
        let RouteNetlinkMessage::SetLink(m) = msg::set_flag(7, LinkFlags::Up, false) else {
            panic!()
        };
        assert_eq!(m.header.index, 7);
        assert_eq!(m.header.change_mask, LinkFlags::Up);
        assert!(m.header.flags.is_empty());
        let RouteNetlinkMessage::SetLink(m) = msg::set_flag(7, LinkFlags::Promisc, true) else {
            panic!()
        };
        assert_eq!(m.header.flags, LinkFlags::Promisc);
    }

    #[test]
    fn link_from_message_reads_port_flags() {
        let mut m = LinkMessage::default();
        m.header.index = 5;
        m.header.flags = LinkFlags::Up | LinkFlags::Promisc;
        m.attributes = vec![
            LinkAttribute::IfName("veth1".into()),
            LinkAttribute::Mtu(1500),
            LinkAttribute::Controller(3),
            LinkAttribute::Link(9),
            LinkAttribute::Address(vec![2, 0, 0, 0, 0, 9]),
            LinkAttribute::OperState(State::Up),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![
                    InfoBridgePort::HairpinMode(true),
                    InfoBridgePort::Isolated(false),
                ])),
            ]),
        ];
        let l = Link::from_message(&m);
        assert!(l.is_veth() && !l.is_bridge());
        assert_eq!(l.name, "veth1");
        assert_eq!(
            (l.index, l.mtu, l.master, l.peer_index),
            (5, 1500, Some(3), Some(9))
        );
        assert!(l.up && l.promisc);
        assert_eq!(l.oper_state, OperState::Up);
        assert_eq!(l.hairpin, Some(true));
        assert_eq!(l.isolated, Some(false));
        assert_eq!(l.mac.unwrap().to_string(), "02:00:00:00:00:09");
    }

    /// `(type, value)` of the attributes in `b`.
    fn nlas(b: &[u8]) -> Vec<(u16, &[u8])> {
        let mut out = Vec::new();
        let mut off = 0;
        while off + 4 <= b.len() {
            let len = u16::from_ne_bytes(b[off..off + 2].try_into().unwrap()) as usize;
            let kind = u16::from_ne_bytes(b[off + 2..off + 4].try_into().unwrap());
            out.push((kind, &b[off + 4..off + len]));
            off += len.next_multiple_of(4);
        }
        out
    }

    #[test]
    fn enable_ipv4_conf_encoding() {
        let m = msg::enable_ipv4_conf(7, &[Ipv4ConfKey::RouteLocalnet, Ipv4ConfKey::ArpNotify]);
        let b = crate::socket::encode(m, 0, 1);
        assert_eq!(
            u16::from_ne_bytes(b[4..6].try_into().unwrap()),
            libc::RTM_SETLINK
        );
        // ifinfomsg: family (AF_UNSPEC), pad, type, index at 4..8, flags, change.
        let ifi = &b[16..32];
        assert_eq!(ifi[0], 0);
        assert_eq!(u32::from_ne_bytes(ifi[4..8].try_into().unwrap()), 7);
        assert!(ifi[8..].iter().all(|&x| x == 0), "no flag changes");
        // IFLA_AF_SPEC -> AF_INET -> IFLA_INET_CONF (nested) -> IPV4_DEVCONF_* = u32 1.
        let top = nlas(&b[32..]);
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].0 & 0x3fff, libc::IFLA_AF_SPEC);
        let fam = nlas(top[0].1);
        assert_eq!(fam.len(), 1);
        assert_eq!(fam[0].0 & 0x3fff, libc::AF_INET as u16);
        let inet = nlas(fam[0].1);
        assert_eq!(inet.len(), 1);
        assert_eq!(inet[0].0 & 0x3fff, 1, "IFLA_INET_CONF");
        let one = 1u32.to_ne_bytes();
        let conf = nlas(inet[0].1);
        // IPV4_DEVCONF_ARP_NOTIFY = 22, IPV4_DEVCONF_ROUTE_LOCALNET = 26 (linux/ip.h).
        assert_eq!(conf, vec![(22, &one[..]), (26, &one[..])]);
        let only = crate::socket::encode(msg::enable_ipv4_conf(7, &[Ipv4ConfKey::ArpNotify]), 0, 1);
        let top = nlas(&only[32..]);
        let conf = nlas(nlas(nlas(top[0].1)[0].1)[0].1);
        assert_eq!(conf, vec![(22, &one[..])]);
    }

    #[test]
    fn link_from_message_reads_ipv4_devconf() {
        let mut m = LinkMessage::default();
        m.attributes = vec![LinkAttribute::IfName("br0".into())];
        assert_eq!(Link::from_message(&m).ipv4, None);
        let mut conf = InetDevConf::default();
        conf.forwarding = 1;
        conf.arp_notify = 2;
        conf.route_localnet = 1;
        conf.rp_filter = 1;
        m.attributes.push(LinkAttribute::AfSpecUnspec(vec![
            AfSpecUnspec::Inet6(vec![]),
            AfSpecUnspec::Inet(vec![AfSpecInet::DevConf(conf)]),
        ]));
        assert_eq!(
            Link::from_message(&m).ipv4,
            Some(Ipv4DevConf {
                forwarding: 1,
                arp_notify: 2,
                route_localnet: 1,
            })
        );
    }

    #[test]
    fn names_are_validated() {
        assert!(check_name("eth0").is_ok());
        assert!(check_name("cni0.100").is_ok());
        for bad in ["", "a/b", "a:b", "a b", "0123456789abcdef"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
