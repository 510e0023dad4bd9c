//! IP address arithmetic and canonical forms shared by ranges, the allocator
//! and the store.
//!
//! Addresses are compared the way the reference plugin compares them
//! (`ip.Cmp` in containernetworking/plugins `pkg/ip`): an IPv4 address is
//! the 32-bit integer of its four bytes, an IPv6 address the 128-bit integer
//! of its sixteen bytes. Within one family that is plain numeric order.

use std::cmp::Ordering;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

/// Rewrites an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4
/// address it maps, and leaves every other address unchanged.
///
/// The reference stores IPv4 addresses in their 4-byte form, so
/// `::ffff:10.1.2.3` and `10.1.2.3` are the same address for it.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        IpAddr::V4(_) => ip,
    }
}

/// The address as an unsigned integer (32 significant bits for IPv4).
pub fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_bits()),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

/// Builds an address of the same family as `like` from `bits`; `None` when
/// the value does not fit that family.
fn from_bits_like(like: IpAddr, bits: u128) -> Option<IpAddr> {
    match like {
        IpAddr::V4(_) => u32::try_from(bits)
            .ok()
            .map(|b| IpAddr::V4(Ipv4Addr::from_bits(b))),
        IpAddr::V6(_) => Some(IpAddr::V6(Ipv6Addr::from_bits(bits))),
    }
}

/// The address right after `ip`, or `None` past the last address of the
/// family (`255.255.255.255`, `ffff:…:ffff`).
pub fn next(ip: IpAddr) -> Option<IpAddr> {
    to_bits(ip)
        .checked_add(1)
        .and_then(|b| from_bits_like(ip, b))
}

/// The address right before `ip`, or `None` before `0.0.0.0` / `::`.
pub fn prev(ip: IpAddr) -> Option<IpAddr> {
    to_bits(ip)
        .checked_sub(1)
        .and_then(|b| from_bits_like(ip, b))
}

/// Compares two addresses as the reference does: by integer value, so an
/// IPv4 address sorts by its 32-bit value even against an IPv6 address.
/// Callers that care about families check them first.
pub fn compare(a: IpAddr, b: IpAddr) -> Ordering {
    to_bits(a).cmp(&to_bits(b))
}

/// Whether both addresses belong to the same family.
pub fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Number of addresses from `start` to `end` inclusive (0 when `end` is
/// before `start`). Saturates at `u128::MAX` for a whole IPv6 space.
pub fn span(start: IpAddr, end: IpAddr) -> u128 {
    let (s, e) = (to_bits(start), to_bits(end));
    if e < s { 0 } else { (e - s).saturating_add(1) }
}

/// The network address of `net` (host bits cleared).
pub fn network_address(net: IpNetwork) -> IpAddr {
    net.network()
}

/// The last address of `net`: the broadcast address for IPv4, the all-ones
/// host part for IPv6.
pub fn last_address(net: IpNetwork) -> IpAddr {
    net.broadcast()
}

/// Whether `net` (network address and prefix) contains `ip`; false across
/// families.
pub fn net_contains(net: IpNetwork, ip: IpAddr) -> bool {
    same_family(net.ip(), ip) && net.contains(ip)
}

/// The text the reference uses for an address (Go's `net.IP.String()`):
/// dotted quad for IPv4, RFC 5952 compressed form for IPv6. This is the
/// name of a reservation file and the content of a cursor file.
pub fn to_text(ip: IpAddr) -> String {
    canonical(ip).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::ip;

    #[test]
    fn next_and_prev_ipv4() {
        assert_eq!(next(ip("10.1.2.3")), Some(ip("10.1.2.4")));
        assert_eq!(next(ip("10.1.2.255")), Some(ip("10.1.3.0")));
        assert_eq!(next(ip("0.0.0.0")), Some(ip("0.0.0.1")));
        assert_eq!(next(ip("255.255.255.255")), None);
        assert_eq!(prev(ip("10.1.3.0")), Some(ip("10.1.2.255")));
        assert_eq!(prev(ip("0.0.0.1")), Some(ip("0.0.0.0")));
        assert_eq!(prev(ip("0.0.0.0")), None);
    }

    #[test]
    fn next_and_prev_ipv6() {
        assert_eq!(next(ip("2001:db8::ffff")), Some(ip("2001:db8::1:0")));
        assert_eq!(prev(ip("2001:db8::1:0")), Some(ip("2001:db8::ffff")));
        assert_eq!(next(ip("::")), Some(ip("::1")));
        assert_eq!(prev(ip("::")), None);
        assert_eq!(next(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")), None);
        // crossing a /64 boundary
        assert_eq!(
            next(ip("2001:db8:0:1:ffff:ffff:ffff:ffff")),
            Some(ip("2001:db8:0:2::"))
        );
    }

    #[test]
    fn compare_is_numeric() {
        assert_eq!(compare(ip("10.1.2.3"), ip("10.1.2.10")), Ordering::Less);
        assert_eq!(compare(ip("10.1.2.3"), ip("10.1.2.3")), Ordering::Equal);
        assert_eq!(compare(ip("10.1.3.0"), ip("10.1.2.255")), Ordering::Greater);
        assert_eq!(
            compare(ip("2001:db8::2"), ip("2001:db8::10")),
            Ordering::Less
        );
        // cross-family: by integer value, like the reference
        assert_eq!(compare(ip("::1"), ip("10.0.0.1")), Ordering::Less);
        assert_eq!(compare(ip("10.0.0.1"), ip("2001:db8::")), Ordering::Less);
    }

    #[test]
    fn canonical_unmaps_ipv4_mapped() {
        assert_eq!(canonical(ip("::ffff:10.1.2.3")), ip("10.1.2.3"));
        assert_eq!(canonical(ip("2001:db8::1")), ip("2001:db8::1"));
        assert_eq!(canonical(ip("10.1.2.3")), ip("10.1.2.3"));
    }

    #[test]
    fn text_matches_go_formatting() {
        assert_eq!(to_text(ip("10.1.2.3")), "10.1.2.3");
        assert_eq!(
            to_text(ip("2001:0db8:0000:0000:0000:0000:0000:0002")),
            "2001:db8::2"
        );
        // a single zero group is not compressed
        assert_eq!(to_text(ip("2001:db8:0:1:1:1:1:1")), "2001:db8:0:1:1:1:1:1");
        // the first of two equally long runs is compressed
        assert_eq!(to_text(ip("2001:0:0:1:0:0:1:1")), "2001::1:0:0:1:1");
        // IPv4-compatible addresses are printed in hex, as Go does
        assert_eq!(to_text(ip("::1.2.3.4")), "::102:304");
        // IPv4-mapped addresses become plain IPv4
        assert_eq!(to_text(ip("::ffff:1.2.3.4")), "1.2.3.4");
        assert_eq!(to_text(ip("::")), "::");
    }

    #[test]
    fn span_counts_inclusive() {
        assert_eq!(span(ip("10.0.0.1"), ip("10.0.0.1")), 1);
        assert_eq!(span(ip("10.0.0.1"), ip("10.0.0.6")), 6);
        assert_eq!(span(ip("10.0.0.6"), ip("10.0.0.1")), 0);
        assert_eq!(
            span(ip("::"), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            u128::MAX
        );
    }

    #[test]
    fn last_address_per_family() {
        let n: IpNetwork = "10.1.2.0/24".parse().expect("net");
        assert_eq!(last_address(n), ip("10.1.2.255"));
        let n: IpNetwork = "2001:db8::/64".parse().expect("net");
        assert_eq!(last_address(n), ip("2001:db8::ffff:ffff:ffff:ffff"));
        let n: IpNetwork = "10.1.2.7/24".parse().expect("net");
        assert_eq!(network_address(n), ip("10.1.2.0"));
        assert!(net_contains(n, ip("10.1.2.200")));
        assert!(!net_contains(n, ip("10.1.3.0")));
        assert!(!net_contains(n, ip("::ffff:10.1.2.1")));
    }
}
