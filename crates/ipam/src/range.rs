//! One allocation range: a subnet with an inclusive `rangeStart..=rangeEnd`
//! window and a gateway, canonicalized and validated exactly like the
//! reference host-local (`backend/allocator/range.go`).

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::ip;

/// A range as written in the configuration, before validation.
///
/// `subnet` may carry host bits (it is parsed like Go's `types.ParseCIDR`);
/// [`Range::canonicalize`] rejects them with the reference's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeSpec {
    /// `subnet`: the network, e.g. `10.1.2.0/24`.
    pub subnet: IpNetwork,
    /// `rangeStart`: first allocatable address (inclusive).
    pub range_start: Option<IpAddr>,
    /// `rangeEnd`: last allocatable address (inclusive).
    pub range_end: Option<IpAddr>,
    /// `gateway`: returned with each address and never allocated.
    pub gateway: Option<IpAddr>,
}

impl RangeSpec {
    /// A spec with only a subnet; everything else defaulted.
    pub fn subnet(subnet: IpNetwork) -> Self {
        Self {
            subnet,
            range_start: None,
            range_end: None,
            gateway: None,
        }
    }
}

/// A validated range with every default filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    /// The subnet (network address, no host bits); its prefix is the prefix
    /// of every address allocated from this range.
    pub subnet: IpNetwork,
    /// First allocatable address (inclusive).
    pub range_start: IpAddr,
    /// Last allocatable address (inclusive).
    pub range_end: IpAddr,
    /// Gateway: returned with allocations, skipped by the iterator. Not
    /// required to lie in the subnet (the reference does not check it).
    pub gateway: IpAddr,
}

/// Why a [`RangeSpec`] is invalid. The texts are the reference's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// IPv4 prefix longer than /30 or IPv6 prefix longer than /126.
    #[error("Network {} too small to allocate from", display_net(.subnet))]
    TooSmall {
        /// The subnet as written.
        subnet: IpNetwork,
    },
    /// An IPv4-mapped IPv6 subnet (`::ffff:a.b.c.d/n`): the reference turns
    /// the address into IPv4 but keeps the IPv6 mask.
    #[error("IPNet IP and Mask version mismatch")]
    FamilyMismatch {
        /// The subnet as written.
        subnet: IpNetwork,
    },
    /// The subnet address is not the network address.
    #[error(
        "Network has host bits set. For a subnet mask of length {prefix} the network address is {}",
        ip::to_text(*.network)
    )]
    HostBitsSet {
        /// The prefix length.
        prefix: u8,
        /// The network address the subnet should have been written with.
        network: IpAddr,
    },
    /// `rangeStart` outside the subnet, of another family, or after
    /// `rangeEnd` (the reference reports a reversed range this way too).
    #[error("RangeStart {} not in network {}", ip::to_text(*.start), display_net(.subnet))]
    StartNotInNetwork {
        /// The offending `rangeStart`.
        start: IpAddr,
        /// The subnet.
        subnet: IpNetwork,
    },
    /// `rangeEnd` outside the subnet, of another family, or before the
    /// (possibly defaulted) `rangeStart`.
    #[error("RangeEnd {} not in network {}", ip::to_text(*.end), display_net(.subnet))]
    EndNotInNetwork {
        /// The offending `rangeEnd`.
        end: IpAddr,
        /// The subnet.
        subnet: IpNetwork,
    },
}

/// `ip/prefix` with Go's address formatting.
pub(crate) fn display_net(net: &IpNetwork) -> String {
    format!("{}/{}", ip::to_text(net.ip()), net.prefix())
}

impl Range {
    /// Validates `spec` and fills in the defaults, in the reference's order:
    ///
    /// 1. the subnet must leave at least two host bits (`/30`, `/126`);
    /// 2. an IPv4-mapped IPv6 subnet is a family mismatch;
    /// 3. the subnet must be its own network address;
    /// 4. `gateway` defaults to subnet + 1;
    /// 5. `rangeStart` (default subnet + 1) must lie in the subnet and not
    ///    after an explicit `rangeEnd`;
    /// 6. `rangeEnd` (default: broadcast - 1 for IPv4, the last address for
    ///    IPv6) must lie in the subnet and not before `rangeStart`.
    ///
    /// IPv4-mapped IPv6 addresses given for start, end or gateway are
    /// treated as IPv4, like the reference.
    ///
    /// # Errors
    /// [`RangeError`] with the reference's message for the first failing
    /// rule.
    pub fn canonicalize(spec: &RangeSpec) -> Result<Self, RangeError> {
        let subnet = spec.subnet;
        let bits: u8 = if subnet.is_ipv4() { 32 } else { 128 };
        if subnet.prefix() > bits - 2 {
            return Err(RangeError::TooSmall { subnet });
        }
        if let IpAddr::V6(v6) = subnet.ip()
            && v6.to_ipv4_mapped().is_some()
        {
            return Err(RangeError::FamilyMismatch { subnet });
        }
        let network = ip::network_address(subnet);
        if network != subnet.ip() {
            return Err(RangeError::HostBitsSet {
                prefix: subnet.prefix(),
                network,
            });
        }
        let first = ip::next(network).unwrap_or(network);

        let gateway = spec.gateway.map_or(first, ip::canonical);

        let explicit_end = spec.range_end.map(ip::canonical);
        let range_start = match spec.range_start.map(ip::canonical) {
            Some(start) => {
                let in_net = ip::net_contains(subnet, start);
                let before_end = explicit_end.is_none_or(|end| ip::compare(start, end).is_le());
                if !(in_net && before_end) {
                    return Err(RangeError::StartNotInNetwork { start, subnet });
                }
                start
            }
            None => first,
        };

        let range_end = match explicit_end {
            Some(end) => {
                let in_net = ip::net_contains(subnet, end);
                if !(in_net && ip::compare(range_start, end).is_le()) {
                    return Err(RangeError::EndNotInNetwork { end, subnet });
                }
                end
            }
            None => {
                // A start past the default end (e.g. the IPv4 broadcast
                // address) would make an inverted range whose walk leaves
                // the subnet; the reference accepts it and hands out the
                // broadcast address, then addresses outside the subnet.
                let end = default_end(subnet);
                if ip::compare(range_start, end).is_gt() {
                    return Err(RangeError::StartNotInNetwork {
                        start: range_start,
                        subnet,
                    });
                }
                end
            }
        };

        Ok(Self {
            subnet,
            range_start,
            range_end,
            gateway,
        })
    }

    /// Whether `addr` is an allocatable member of this range: same family,
    /// inside the subnet and within `rangeStart..=rangeEnd`. The gateway is
    /// a member if it lies in that window (the iterator skips it).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = ip::canonical(addr);
        ip::net_contains(self.subnet, addr)
            && ip::compare(addr, self.range_start).is_ge()
            && ip::compare(addr, self.range_end).is_le()
    }

    /// Whether the two ranges share an address (never across families).
    pub fn overlaps(&self, other: &Range) -> bool {
        if !ip::same_family(self.range_start, other.range_start) {
            return false;
        }
        self.contains(other.range_start)
            || self.contains(other.range_end)
            || other.contains(self.range_start)
            || other.contains(self.range_end)
    }

    /// Whether the range holds IPv4 addresses.
    pub fn is_ipv4(&self) -> bool {
        self.range_start.is_ipv4()
    }

    /// How many addresses the iterator can hand out: the window minus the
    /// gateway when the gateway lies inside it.
    pub fn capacity(&self) -> u128 {
        let window = ip::span(self.range_start, self.range_end);
        if self.contains(self.gateway) {
            window.saturating_sub(1)
        } else {
            window
        }
    }

    /// `address` with this range's prefix length, as put in results.
    pub fn with_prefix(&self, address: IpAddr) -> IpNetwork {
        // The prefix comes from a valid network of the same family, so the
        // only failure is a family mismatch, which callers exclude.
        IpNetwork::new(address, self.subnet.prefix()).unwrap_or(self.subnet)
    }
}

/// The default `rangeEnd`: broadcast - 1 for IPv4, the last address for IPv6.
fn default_end(subnet: IpNetwork) -> IpAddr {
    let last = ip::last_address(subnet);
    if subnet.is_ipv4() {
        ip::prev(last).unwrap_or(last)
    } else {
        last
    }
}

impl fmt::Display for Range {
    /// `rangeStart-rangeEnd`, e.g. `10.1.2.1-10.1.2.254`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            ip::to_text(self.range_start),
            ip::to_text(self.range_end)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::ip;

    fn net(s: &str) -> IpNetwork {
        s.parse().expect("test network")
    }

    fn spec(subnet: &str, start: Option<&str>, end: Option<&str>, gw: Option<&str>) -> RangeSpec {
        RangeSpec {
            subnet: net(subnet),
            range_start: start.map(ip),
            range_end: end.map(ip),
            gateway: gw.map(ip),
        }
    }

    fn canon(s: &RangeSpec) -> Result<Range, String> {
        Range::canonicalize(s).map_err(|e| e.to_string())
    }

    /// The range of `subnet` alone, which must be valid.
    fn valid(subnet: &str) -> Range {
        canon(&RangeSpec::subnet(net(subnet))).expect("valid")
    }

    /// `r` runs from `start` to `end` with gateway `gateway`.
    fn assert_bounds(r: &Range, start: &str, end: &str, gateway: &str) {
        assert_eq!(
            (r.range_start, r.range_end, r.gateway),
            (ip(start), ip(end), ip(gateway)),
            "{r}"
        );
    }

    /// Each (subnet, message): the subnet alone is rejected with that message.
    fn assert_subnets_rejected(cases: &[(&str, &str)]) {
        let specs: Vec<_> = cases
            .iter()
            .map(|(subnet, msg)| (RangeSpec::subnet(net(subnet)), *msg))
            .collect();
        assert_specs_rejected(&specs);
    }

    /// Each (spec, message): the spec is rejected with that message.
    fn assert_specs_rejected(cases: &[(RangeSpec, &str)]) {
        for (spec, msg) in cases {
            assert_eq!(canon(spec).unwrap_err(), *msg, "{spec:?}");
        }
    }

    #[test]
    fn defaults_for_slash_24() {
        let r = valid("192.0.2.0/24");
        assert_bounds(&r, "192.0.2.1", "192.0.2.254", "192.0.2.1");
        assert_eq!(r.to_string(), "192.0.2.1-192.0.2.254");
        assert_eq!(r.capacity(), 253);
    }

    #[test]
    fn defaults_for_slash_25_30_and_first_byte_zero() {
        let r = valid("192.0.2.0/25");
        assert_eq!(r.range_end, ip("192.0.2.126"));
        let r = valid("10.1.2.0/30");
        assert_eq!(
            (r.range_start, r.range_end),
            (ip("10.1.2.1"), ip("10.1.2.2"))
        );
        assert_eq!(r.capacity(), 1);
        let r = valid("0.0.0.0/30");
        assert_eq!(r.to_string(), "0.0.0.1-0.0.0.2");
        assert_eq!(r.gateway, ip("0.0.0.1"));
    }

    #[test]
    fn defaults_for_ipv6() {
        let r = valid("2001:db8:1::/64");
        assert_bounds(
            &r,
            "2001:db8:1::1",
            "2001:db8:1::ffff:ffff:ffff:ffff",
            "2001:db8:1::1",
        );
        assert_eq!(r.capacity(), (1u128 << 64) - 2);
        let r = valid("2001:db8::/126");
        assert_eq!(r.to_string(), "2001:db8::1-2001:db8::3");
        assert_eq!(r.capacity(), 2);
        let r = valid("::/126");
        assert_eq!(r.to_string(), "::1-::3");
    }

    #[test]
    fn host_bits_rejected_with_network_address() {
        assert_subnets_rejected(&[
            (
                "10.1.2.3/24",
                "Network has host bits set. For a subnet mask of length 24 the network address is 10.1.2.0",
            ),
            (
                "10.1.3.0/23",
                "Network has host bits set. For a subnet mask of length 23 the network address is 10.1.2.0",
            ),
            (
                "2001:db8::3/64",
                "Network has host bits set. For a subnet mask of length 64 the network address is 2001:db8::",
            ),
            (
                "2001:db8:0:1::/63",
                "Network has host bits set. For a subnet mask of length 63 the network address is 2001:db8::",
            ),
        ]);
    }

    #[test]
    fn too_small_rejected() {
        assert_subnets_rejected(&[
            (
                "10.1.2.0/31",
                "Network 10.1.2.0/31 too small to allocate from",
            ),
            (
                "10.1.2.1/32",
                "Network 10.1.2.1/32 too small to allocate from",
            ),
            (
                "2001:db8::/127",
                "Network 2001:db8::/127 too small to allocate from",
            ),
        ]);
    }

    #[test]
    fn ipv4_mapped_subnet_is_a_family_mismatch() {
        assert_subnets_rejected(&[("::ffff:10.1.2.0/120", "IPNet IP and Mask version mismatch")]);
    }

    #[test]
    fn start_and_end_outside_subnet() {
        assert_specs_rejected(&[
            (
                spec("10.1.2.0/24", Some("10.1.3.5"), None, None),
                "RangeStart 10.1.3.5 not in network 10.1.2.0/24",
            ),
            (
                spec("10.1.2.0/24", None, Some("10.1.3.5"), None),
                "RangeEnd 10.1.3.5 not in network 10.1.2.0/24",
            ),
            (
                spec("10.1.2.0/24", Some("2001:db8::1"), None, None),
                "RangeStart 2001:db8::1 not in network 10.1.2.0/24",
            ),
            (
                spec("2001:db8::/64", None, Some("2001:db9::1"), None),
                "RangeEnd 2001:db9::1 not in network 2001:db8::/64",
            ),
            // an end before the default start
            (
                spec("10.1.2.0/24", None, Some("10.1.2.0"), None),
                "RangeEnd 10.1.2.0 not in network 10.1.2.0/24",
            ),
        ]);
    }

    #[test]
    fn reversed_range_reported_as_start() {
        assert_eq!(
            canon(&spec(
                "10.1.2.0/24",
                Some("10.1.2.50"),
                Some("10.1.2.40"),
                None
            ))
            .unwrap_err(),
            "RangeStart 10.1.2.50 not in network 10.1.2.0/24"
        );
    }

    #[test]
    fn explicit_fields_kept_and_mapped_addresses_unmapped() {
        let r = canon(&spec(
            "10.1.2.0/24",
            Some("::ffff:10.1.2.40"),
            Some("10.1.2.50"),
            Some("10.9.9.9"),
        ))
        .expect("valid");
        assert_bounds(&r, "10.1.2.40", "10.1.2.50", "10.9.9.9");
        assert_eq!(r.capacity(), 11);
        // the network and broadcast addresses are allowed when explicit
        let r = canon(&spec(
            "10.1.2.0/24",
            Some("10.1.2.0"),
            Some("10.1.2.255"),
            None,
        ))
        .expect("valid");
        assert_eq!(r.to_string(), "10.1.2.0-10.1.2.255");
        assert_eq!(r.capacity(), 255);
    }

    #[test]
    fn contains_checks_family_subnet_and_window() {
        let r = canon(&spec(
            "10.1.2.0/24",
            Some("10.1.2.10"),
            Some("10.1.2.20"),
            None,
        ))
        .expect("valid");
        assert!(r.contains(ip("10.1.2.10")));
        assert!(r.contains(ip("10.1.2.20")));
        assert!(r.contains(ip("::ffff:10.1.2.15")));
        assert!(!r.contains(ip("10.1.2.9")));
        assert!(!r.contains(ip("10.1.2.21")));
        assert!(!r.contains(ip("10.1.3.15")));
        assert!(!r.contains(ip("2001:db8::15")));
        let r6 = valid("2001:db8::/64");
        assert!(r6.contains(ip("2001:db8::ffff:ffff:ffff:ffff")));
        assert!(!r6.contains(ip("2001:db8::")));
        assert!(!r6.contains(ip("10.1.2.15")));
    }

    #[test]
    fn overlap_table() {
        let r = |s: &str, a: Option<&str>, b: Option<&str>| {
            canon(&spec(s, a, b, None)).expect("valid range")
        };
        let a = r("10.0.0.0/24", None, None);
        // non-overlapping
        assert!(!a.overlaps(&r("10.0.1.0/24", None, None)));
        // different families
        assert!(!a.overlaps(&r("2001:db8::/64", None, None)));
        // identical
        assert!(a.overlaps(&r("10.0.0.0/24", None, None)));
        // containing / contained
        assert!(a.overlaps(&r("10.0.0.0/25", None, None)));
        assert!(r("10.0.0.0/20", None, None).overlaps(&a));
        // same subnet, disjoint windows
        let lo = r("10.0.0.0/24", Some("10.0.0.1"), Some("10.0.0.100"));
        let hi = r("10.0.0.0/24", Some("10.0.0.101"), Some("10.0.0.200"));
        assert!(!lo.overlaps(&hi));
        assert!(!hi.overlaps(&lo));
        // same subnet, windows touching at one address
        let mid = r("10.0.0.0/24", Some("10.0.0.100"), Some("10.0.0.150"));
        assert!(lo.overlaps(&mid));
        assert!(mid.overlaps(&hi));
    }

    #[test]
    fn with_prefix_uses_subnet_prefix() {
        let r = valid("10.1.2.0/24");
        assert_eq!(r.with_prefix(ip("10.1.2.7")).to_string(), "10.1.2.7/24");
    }
}
