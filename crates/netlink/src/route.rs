//! Routes: dump, add (with ECMP append), delete, and lookup.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use netlink_packet_core::{NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};

use crate::addr::IpFamily;
use crate::error::{Error, Result};
use crate::handle::Handle;

/// The main routing table.
pub const TABLE_MAIN: u32 = 254;
/// Scope `link` (directly attached, no gateway).
pub const SCOPE_LINK: u8 = 253;
/// Scope `universe` (global).
pub const SCOPE_UNIVERSE: u8 = 0;

/// A route to add or delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination prefix.
    pub dst: IpNetwork,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface.
    pub oif: Option<u32>,
    /// Metric (`RTA_PRIORITY`).
    pub priority: Option<u32>,
    /// Table, main when `None`.
    pub table: Option<u32>,
    /// Scope; when `None`: `link` for IPv4 routes without gateway, else `universe`.
    pub scope: Option<u8>,
    /// Path MTU metric.
    pub mtu: Option<u32>,
    /// Advertised MSS metric.
    pub advmss: Option<u32>,
}

impl RouteSpec {
    /// A route to `dst` with everything else unset.
    pub fn new(dst: IpNetwork) -> Self {
        Self {
            dst,
            gateway: None,
            oif: None,
            priority: None,
            table: None,
            scope: None,
            mtu: None,
            advmss: None,
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("{}", self.dst);
        if let Some(g) = self.gateway {
            s.push_str(&format!(" via {g}"));
        }
        if let Some(o) = self.oif {
            s.push_str(&format!(" dev ifindex {o}"));
        }
        if let Some(t) = self.table {
            s.push_str(&format!(" table {t}"));
        }
        if let Some(p) = self.priority {
            s.push_str(&format!(" metric {p}"));
        }
        s
    }
}

/// A route as reported by the kernel. Multipath routes are reported once per next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination prefix (`0.0.0.0/0` / `::/0` for default routes).
    pub dst: IpNetwork,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface.
    pub oif: Option<u32>,
    /// Metric.
    pub priority: Option<u32>,
    /// Table.
    pub table: u32,
    /// Scope.
    pub scope: u8,
    /// Protocol (`2` kernel, `3` boot, ...).
    pub protocol: u8,
    /// Route type (`1` unicast, `2` local, ...).
    pub kind: u8,
    /// MTU metric.
    pub mtu: Option<u32>,
    /// Advertised MSS metric.
    pub advmss: Option<u32>,
}

/// Result of a route lookup ([`Handle::route_get`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLookup {
    /// Interface the packet would leave through.
    pub oif: Option<u32>,
    /// Next hop, if not directly connected.
    pub gateway: Option<IpAddr>,
    /// Preferred source address.
    pub prefsrc: Option<IpAddr>,
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Pure message builders and parsers.
pub mod msg {
    use super::*;

    fn family_of(dst: &IpNetwork) -> IpFamily {
        IpFamily::of(dst.ip())
    }

    /// Builds the message body shared by add and delete.
    pub fn route_message(r: &RouteSpec) -> RouteMessage {
        let mut m = RouteMessage::default();
        let fam = family_of(&r.dst);
        m.header.address_family = fam.af();
        m.header.destination_prefix_length = r.dst.prefix();
        let table = r.table.unwrap_or(TABLE_MAIN);
        m.header.table = u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC);
        m.header.protocol = RouteProtocol::Boot;
        m.header.kind = RouteType::Unicast;
        let scope = r
            .scope
            .unwrap_or(if r.gateway.is_none() && fam == IpFamily::V4 {
                SCOPE_LINK
            } else {
                SCOPE_UNIVERSE
            });
        m.header.scope = RouteScope::from(scope);
        if r.dst.prefix() > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    r.dst.network(),
                )));
        }
        if let Some(gw) = r.gateway {
            m.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        if let Some(oif) = r.oif {
            m.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(p) = r.priority {
            m.attributes.push(RouteAttribute::Priority(p));
        }
        m.attributes.push(RouteAttribute::Table(table));
        let mut metrics = Vec::new();
        if let Some(mtu) = r.mtu {
            metrics.push(RouteMetric::Mtu(mtu));
        }
        if let Some(mss) = r.advmss {
            metrics.push(RouteMetric::Advmss(mss));
        }
        if !metrics.is_empty() {
            m.attributes.push(RouteAttribute::Metrics(metrics));
        }
        m
    }

    /// `RTM_GETROUTE` dump of one family.
    pub fn dump(family: IpFamily) -> RouteNetlinkMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = family.af();
        RouteNetlinkMessage::GetRoute(m)
    }

    /// `RTM_GETROUTE` lookup for one destination address.
    pub fn get(dst: IpAddr) -> RouteNetlinkMessage {
        let mut m = RouteMessage::default();
        m.header.address_family = IpFamily::of(dst).af();
        m.header.destination_prefix_length = if dst.is_ipv4() { 32 } else { 128 };
        m.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(dst)));
        RouteNetlinkMessage::GetRoute(m)
    }

    /// Expands one kernel route message into [`Route`]s (one per next hop).
    pub fn parse(m: &RouteMessage) -> Vec<Route> {
        let v4 = m.header.address_family == IpFamily::V4.af();
        let mut dst_ip: Option<IpAddr> = None;
        let mut base = Route {
            dst: IpNetwork::new(
                if v4 {
                    IpAddr::from([0u8; 4])
                } else {
                    IpAddr::from([0u8; 16])
                },
                0,
            )
            .unwrap_or_else(|_| {
                IpNetwork::V4(ipnetwork::Ipv4Network::from(
                    std::net::Ipv4Addr::UNSPECIFIED,
                ))
            }),
            gateway: None,
            oif: None,
            priority: None,
            table: u32::from(m.header.table),
            scope: u8::from(m.header.scope),
            protocol: u8::from(m.header.protocol),
            kind: u8::from(m.header.kind),
            mtu: None,
            advmss: None,
        };
        let mut hops = Vec::new();
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(d) => dst_ip = route_ip(d),
                RouteAttribute::Gateway(g) => base.gateway = route_ip(g),
                RouteAttribute::Oif(o) => base.oif = Some(*o),
                RouteAttribute::Priority(p) => base.priority = Some(*p),
                RouteAttribute::Table(t) => base.table = *t,
                RouteAttribute::Metrics(ms) => {
                    for metric in ms {
                        match metric {
                            RouteMetric::Mtu(v) => base.mtu = Some(*v),
                            RouteMetric::Advmss(v) => base.advmss = Some(*v),
                            _ => {}
                        }
                    }
                }
                RouteAttribute::MultiPath(nhs) => hops.clone_from(nhs),
                _ => {}
            }
        }
        if let Some(ip) = dst_ip
            && let Ok(n) = IpNetwork::new(ip, m.header.destination_prefix_length)
        {
            base.dst = n;
        }
        if hops.is_empty() {
            return vec![base];
        }
        hops.iter()
            .map(|nh| {
                let mut r = base.clone();
                r.oif = Some(nh.interface_index);
                r.gateway = nh.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Gateway(g) => route_ip(g),
                    _ => None,
                });
                r
            })
            .collect()
    }
}

impl Handle {
    /// Routes of one family; `table` `None` means all tables.
    ///
    /// # Errors
    /// Kernel or transport errors.
    pub fn routes(&mut self, family: IpFamily, table: Option<u32>) -> Result<Vec<Route>> {
        let r = self.request(
            msg::dump(family),
            NLM_F_DUMP,
            &format!("dump {family:?} routes"),
        )?;
        Ok(r.iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(rm) => Some(msg::parse(rm)),
                _ => None,
            })
            .flatten()
            .filter(|r| table.is_none_or(|t| r.table == t))
            .collect())
    }

    /// Adds a route. With `append` (`NLM_F_APPEND`) a route to the same destination
    /// becomes an additional next hop (ECMP) instead of failing with `EEXIST`.
    ///
    /// # Errors
    /// Kernel errors; [`Error::is_exists`] for a duplicate without `append`.
    pub fn add_route(&mut self, r: &RouteSpec, append: bool) -> Result<()> {
        let flags = NLM_F_CREATE | if append { NLM_F_APPEND } else { NLM_F_EXCL };
        self.request(
            RouteNetlinkMessage::NewRoute(msg::route_message(r)),
            flags,
            &format!("add route {}", r.describe()),
        )?;
        Ok(())
    }

    /// Deletes a route.
    ///
    /// # Errors
    /// Kernel errors; [`Error::is_not_found`] when it does not exist.
    pub fn del_route(&mut self, r: &RouteSpec) -> Result<()> {
        let mut m = msg::route_message(r);
        // Let the kernel match any scope/protocol.
        m.header.scope = RouteScope::from(SCOPE_UNIVERSE);
        m.header.protocol = RouteProtocol::Unspec;
        if r.scope.is_some() {
            m.header.scope = RouteScope::from(r.scope.unwrap_or_default());
        }
        self.request(
            RouteNetlinkMessage::DelRoute(m),
            0,
            &format!("delete route {}", r.describe()),
        )?;
        Ok(())
    }

    /// Asks the kernel which route it would use for `dst` (`ip route get`).
    ///
    /// # Errors
    /// Kernel errors (e.g. `ENETUNREACH`), or an unexpected reply.
    pub fn route_get(&mut self, dst: IpAddr) -> Result<RouteLookup> {
        let op = format!("route lookup {dst}");
        let r = self.request(msg::get(dst), 0, &op)?;
        let m = r
            .iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewRoute(rm) => Some(rm),
                _ => None,
            })
            .ok_or_else(|| Error::Unexpected {
                op,
                what: "no route in reply".into(),
            })?;
        let mut out = RouteLookup {
            oif: None,
            gateway: None,
            prefsrc: None,
        };
        for a in &m.attributes {
            match a {
                RouteAttribute::Oif(o) => out.oif = Some(*o),
                RouteAttribute::Gateway(g) => out.gateway = route_ip(g),
                RouteAttribute::PrefSource(p) => out.prefsrc = route_ip(p),
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::route::RouteNextHop;

    #[test]
    fn default_route_message() {
        let mut r = RouteSpec::new("0.0.0.0/0".parse().unwrap());
        r.gateway = Some("10.0.0.1".parse().unwrap());
        r.oif = Some(3);
        r.priority = Some(100);
        let m = msg::route_message(&r);
        assert_eq!(m.header.destination_prefix_length, 0);
        assert_eq!(u8::from(m.header.scope), SCOPE_UNIVERSE);
        assert_eq!(m.header.table, 254);
        assert!(
            !m.attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Destination(_)))
        );
        assert!(
            m.attributes
                .contains(&RouteAttribute::Gateway(RouteAddress::Inet(
                    "10.0.0.1".parse().unwrap()
                )))
        );
        assert!(m.attributes.contains(&RouteAttribute::Oif(3)));
        assert!(m.attributes.contains(&RouteAttribute::Priority(100)));
        assert!(m.attributes.contains(&RouteAttribute::Table(254)));
    }

    #[test]
    fn high_table_scope_and_metrics() {
        let mut r = RouteSpec::new("10.9.0.0/16".parse().unwrap());
        r.table = Some(1000);
        r.mtu = Some(1400);
        r.advmss = Some(1360);
        let m = msg::route_message(&r);
        assert_eq!(m.header.table, 0, "tables >255 only go in RTA_TABLE");
        assert!(m.attributes.contains(&RouteAttribute::Table(1000)));
        assert_eq!(u8::from(m.header.scope), SCOPE_LINK);
        assert!(m.attributes.contains(&RouteAttribute::Metrics(vec![
            RouteMetric::Mtu(1400),
            RouteMetric::Advmss(1360)
        ])));
        // Host bits in dst are masked.
        let m2 = msg::route_message(&RouteSpec::new("10.9.3.4/16".parse().unwrap()));
        assert!(
            m2.attributes
                .contains(&RouteAttribute::Destination(RouteAddress::Inet(
                    "10.9.0.0".parse().unwrap()
                )))
        );
        let v6 = msg::route_message(&RouteSpec::new("2001:db8::/64".parse().unwrap()));
        assert_eq!(u8::from(v6.header.scope), SCOPE_UNIVERSE);
    }

    #[test]
    fn parse_expands_multipath() {
        let mut m = RouteMessage::default();
        m.header.address_family = IpFamily::V6.af();
        m.header.destination_prefix_length = 64;
        m.header.table = 254;
        let mut nh1 = RouteNextHop::default();
        nh1.interface_index = 4;
        nh1.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(
                "fe80::1".parse().unwrap(),
            )));
        let mut nh2 = RouteNextHop::default();
        nh2.interface_index = 5;
        m.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet6("2001:db8::".parse().unwrap())),
            RouteAttribute::Table(254),
            RouteAttribute::MultiPath(vec![nh1, nh2]),
        ];
        let rs = msg::parse(&m);
        assert_eq!(rs.len(), 2);
        assert_eq!(rs[0].dst, "2001:db8::/64".parse::<IpNetwork>().unwrap());
        assert_eq!(rs[0].oif, Some(4));
        assert_eq!(rs[0].gateway, Some("fe80::1".parse().unwrap()));
        assert_eq!(rs[1].oif, Some(5));
        assert_eq!(rs[1].gateway, None);
    }

    #[test]
    fn lookup_message() {
        let RouteNetlinkMessage::GetRoute(m) = msg::get("192.0.2.7".parse().unwrap()) else {
            panic!()
        };
        assert_eq!(m.header.destination_prefix_length, 32);
        assert_eq!(
            m.attributes,
            vec![RouteAttribute::Destination(RouteAddress::Inet(
                "192.0.2.7".parse().unwrap()
            ))]
        );
    }
}
