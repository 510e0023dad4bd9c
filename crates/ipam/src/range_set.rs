//! A range set: one family's disjoint ranges, from which exactly one
//! address is allocated per attachment (`backend/allocator/range_set.go`).

use std::fmt;
use std::net::IpAddr;

use crate::ip;
use crate::range::{Range, RangeError, RangeSpec};

/// A non-empty list of canonical, pairwise disjoint ranges of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range>,
}

/// Why a list of [`RangeSpec`]s is not a valid range set. The texts are the
/// reference's; the caller adds the `invalid range set N: ` prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeSetError {
    /// The set has no range.
    #[error("empty range set")]
    Empty,
    /// A range failed [`Range::canonicalize`].
    #[error(transparent)]
    Range(#[from] RangeError),
    /// Ranges of both families in one set.
    #[error("mixed address families")]
    MixedFamilies,
    /// Two ranges of the set overlap.
    #[error("subnets {first} and {second} overlap")]
    Overlap {
        /// The earlier range, as `start-end`.
        first: String,
        /// The later range, as `start-end`.
        second: String,
    },
}

/// An address requested for a set that no range of the set contains.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} not in range set {set}", ip::to_text(*.ip))]
pub struct NotInSet {
    /// The address.
    pub ip: IpAddr,
    /// The set, as `A-B[,C-D…]`.
    pub set: String,
}

impl RangeSet {
    /// Canonicalizes every range, then checks the family and overlaps, in
    /// the reference's order: ranges are canonicalized one by one and the
    /// family of each is compared with the first as it goes; overlaps are
    /// checked last, pair by pair in order.
    ///
    /// # Errors
    /// [`RangeSetError`] for the first failing rule.
    pub fn canonicalize(specs: &[RangeSpec]) -> Result<Self, RangeSetError> {
        let mut ranges: Vec<Range> = Vec::with_capacity(specs.len());
        for spec in specs {
            let range = Range::canonicalize(spec)?;
            if let Some(first) = ranges.first()
                && first.is_ipv4() != range.is_ipv4()
            {
                return Err(RangeSetError::MixedFamilies);
            }
            ranges.push(range);
        }
        if ranges.is_empty() {
            return Err(RangeSetError::Empty);
        }
        for (i, first) in ranges.iter().enumerate() {
            for second in ranges.iter().skip(i + 1) {
                if first.overlaps(second) {
                    return Err(RangeSetError::Overlap {
                        first: first.to_string(),
                        second: second.to_string(),
                    });
                }
            }
        }
        Ok(Self { ranges })
    }

    /// The ranges, in configuration order (never empty).
    pub fn ranges(&self) -> &[Range] {
        &self.ranges
    }

    /// Whether the set holds IPv4 addresses.
    pub fn is_ipv4(&self) -> bool {
        self.ranges.first().is_some_and(Range::is_ipv4)
    }

    /// The range containing `ip` (its index and the range).
    ///
    /// # Errors
    /// [`NotInSet`] (`<ip> not in range set <set>`) when no range does.
    pub fn range_for(&self, ip: IpAddr) -> Result<(usize, &Range), NotInSet> {
        let ip = ip::canonical(ip);
        self.ranges
            .iter()
            .enumerate()
            .find(|(_, r)| r.contains(ip))
            .ok_or_else(|| NotInSet {
                ip,
                set: self.to_string(),
            })
    }

    /// Whether some range of the set contains `ip`.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.range_for(ip).is_ok()
    }

    /// Whether any range of this set overlaps any range of `other`.
    pub fn overlaps(&self, other: &RangeSet) -> bool {
        self.ranges
            .iter()
            .any(|r| other.ranges.iter().any(|o| r.overlaps(o)))
    }

    /// How many addresses the set can hand out in total (gateways excluded).
    pub fn capacity(&self) -> u128 {
        self.ranges
            .iter()
            .fold(0u128, |acc, r| acc.saturating_add(r.capacity()))
    }

    /// Whether `ip` can be handed out by the iterator: inside some range
    /// and not that range's gateway.
    pub fn is_allocatable(&self, ip: IpAddr) -> bool {
        match self.range_for(ip) {
            Ok((_, r)) => r.gateway != ip::canonical(ip),
            Err(_) => false,
        }
    }
}

impl fmt::Display for RangeSet {
    /// The ranges joined with `,`: `10.1.2.1-10.1.2.254,10.1.4.1-10.1.4.254`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::ip;
    use ipnetwork::IpNetwork;

    fn sub(s: &str) -> RangeSpec {
        RangeSpec::subnet(s.parse::<IpNetwork>().expect("test network"))
    }

    fn window(s: &str, a: &str, b: &str) -> RangeSpec {
        RangeSpec {
            range_start: Some(ip(a)),
            range_end: Some(ip(b)),
            ..sub(s)
        }
    }

    fn err(specs: &[RangeSpec]) -> String {
        RangeSet::canonicalize(specs)
            .expect_err("invalid set")
            .to_string()
    }

    #[test]
    fn empty_set_rejected() {
        assert_eq!(err(&[]), "empty range set");
    }

    #[test]
    fn mixed_families_rejected() {
        assert_eq!(
            err(&[sub("10.1.2.0/24"), sub("2001:db8::/64")]),
            "mixed address families"
        );
    }

    #[test]
    fn range_errors_come_before_later_family_check() {
        // range 1 is invalid: its own error wins over the family mismatch
        assert_eq!(
            err(&[sub("10.1.2.0/24"), sub("2001:db8::3/64")]),
            "Network has host bits set. For a subnet mask of length 64 the network address is 2001:db8::"
        );
        // the family mismatch at range 1 is found before range 2 is looked at
        assert_eq!(
            err(&[sub("10.1.2.0/24"), sub("2001:db8::/64"), sub("10.1.3.3/24")]),
            "mixed address families"
        );
    }

    #[test]
    fn overlap_inside_set_rejected() {
        assert_eq!(
            err(&[sub("10.1.2.0/24"), sub("10.1.2.0/25")]),
            "subnets 10.1.2.1-10.1.2.254 and 10.1.2.1-10.1.2.126 overlap"
        );
    }

    #[test]
    fn display_and_membership() {
        let set = RangeSet::canonicalize(&[
            sub("10.1.2.0/24"),
            window("10.1.4.0/24", "10.1.4.10", "10.1.4.20"),
        ])
        .expect("valid");
        assert_eq!(set.to_string(), "10.1.2.1-10.1.2.254,10.1.4.10-10.1.4.20");
        assert!(set.is_ipv4());
        assert!(set.contains(ip("10.1.2.200")));
        assert!(set.contains(ip("10.1.4.10")));
        assert!(!set.contains(ip("10.1.4.9")));
        assert!(!set.contains(ip("10.1.3.1")));
        assert_eq!(set.range_for(ip("10.1.4.15")).map(|(i, _)| i), Ok(1));
        assert_eq!(
            set.range_for(ip("10.1.3.1"))
                .expect_err("outside")
                .to_string(),
            "10.1.3.1 not in range set 10.1.2.1-10.1.2.254,10.1.4.10-10.1.4.20"
        );
        assert!(!set.is_allocatable(ip("10.1.2.1")));
        assert!(set.is_allocatable(ip("10.1.2.2")));
        assert_eq!(set.capacity(), 253 + 11);
    }

    #[test]
    fn overlaps_between_sets() {
        let a = RangeSet::canonicalize(&[sub("10.1.2.0/24")]).expect("valid");
        let b = RangeSet::canonicalize(&[sub("10.1.3.0/24"), sub("10.1.2.0/25")]).expect("valid");
        let c = RangeSet::canonicalize(&[sub("10.1.3.0/24")]).expect("valid");
        let v6 = RangeSet::canonicalize(&[sub("2001:db8::/64")]).expect("valid");
        assert!(a.overlaps(&b));
        assert!(b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(!a.overlaps(&v6));
        assert!(!v6.is_ipv4());
    }
}
