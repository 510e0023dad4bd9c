//! The round-robin walk over a range set that dynamic allocation uses.
//!
//! Starting point: right after the cursor (`last_reserved_ip.<n>`) when the
//! cursor lies in the set, else the first range's `rangeStart`. Each step
//! adds one; after a range's `rangeEnd` the walk continues at the next
//! range's `rangeStart`, wrapping from the last range to the first. Each
//! range's gateway is skipped. The walk ends when it comes back to the
//! address it started at, so every address is offered at most once and the
//! cursor itself is offered last (a set that is full except for the last
//! reserved address hands that address out again, as the reference does).

use std::net::IpAddr;

use crate::ip;
use crate::range::Range;
use crate::range_set::RangeSet;

/// Iterator over the candidate addresses of a [`RangeSet`] in round-robin
/// order; yields each address with the range it belongs to.
#[derive(Debug, Clone)]
pub struct RoundRobin<'a> {
    set: &'a RangeSet,
    index: usize,
    current: Option<IpAddr>,
    first: Option<IpAddr>,
    done: bool,
}

impl<'a> RoundRobin<'a> {
    /// A walk over `set` that starts after `cursor` if the set contains it,
    /// else at the first range's start.
    pub fn new(set: &'a RangeSet, cursor: Option<IpAddr>) -> Self {
        let resume = cursor.and_then(|c| set.range_for(c).ok().map(|(i, _)| (i, ip::canonical(c))));
        match resume {
            Some((index, at)) => Self {
                set,
                index,
                current: Some(at),
                first: None,
                done: false,
            },
            None => Self {
                set,
                index: 0,
                current: None,
                first: None,
                done: false,
            },
        }
    }

    fn range(&self, index: usize) -> Option<&'a Range> {
        self.set.ranges().get(index)
    }

    /// One step of the walk, before the gateway filter: the next address and
    /// its range, or `None` once the walk is back at its first address.
    fn step(&mut self) -> Option<(IpAddr, &'a Range)> {
        let range = self.range(self.index)?;
        let candidate = match self.current {
            None => range.range_start,
            Some(cur) if cur == range.range_end => {
                self.index = (self.index + 1) % self.set.ranges().len();
                self.range(self.index)?.range_start
            }
            // cur < range_end, so there is a next address
            Some(cur) => ip::next(cur)?,
        };
        self.current = Some(candidate);
        match self.first {
            None => self.first = Some(candidate),
            Some(first) if first == candidate => return None,
            Some(_) => {}
        }
        Some((candidate, self.range(self.index)?))
    }
}

impl<'a> Iterator for RoundRobin<'a> {
    type Item = (IpAddr, &'a Range);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.step() {
                None => self.done = true,
                Some((addr, range)) if addr == range.gateway => continue,
                Some(found) => return Some(found),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::RangeSpec;
    use crate::test_util::ip;
    use ipnetwork::IpNetwork;

    fn spec(subnet: &str, start: Option<&str>, end: Option<&str>) -> RangeSpec {
        RangeSpec {
            subnet: subnet.parse::<IpNetwork>().expect("test network"),
            range_start: start.map(ip),
            range_end: end.map(ip),
            gateway: None,
        }
    }

    fn set(specs: &[RangeSpec]) -> RangeSet {
        RangeSet::canonicalize(specs).expect("valid set")
    }

    fn walk(set: &RangeSet, cursor: Option<&str>) -> Vec<String> {
        RoundRobin::new(set, cursor.map(ip))
            .map(|(a, _)| ip::to_text(a))
            .collect()
    }

    #[test]
    fn walk_skips_gateway_and_broadcast_and_wraps_after_the_cursor() {
        let s = set(&[spec("192.168.1.0/29", None, None)]);
        // (cursor, last octets in the order offered): a fresh walk; from the middle,
        // wrapping and offering the cursor last; from the end, wrapping to the start.
        let cases: [(Option<&str>, [u8; 5]); 3] = [
            (None, [2, 3, 4, 5, 6]),
            (Some("192.168.1.4"), [5, 6, 2, 3, 4]),
            (Some("192.168.1.6"), [2, 3, 4, 5, 6]),
        ];
        for (cursor, octets) in cases {
            let want: Vec<String> = octets.iter().map(|o| format!("192.168.1.{o}")).collect();
            assert_eq!(walk(&s, cursor), want, "cursor {cursor:?}");
        }
    }

    #[test]
    fn cursor_outside_set_starts_at_first_range() {
        let s = set(&[spec("192.168.1.0/29", Some("192.168.1.3"), None)]);
        assert_eq!(
            walk(&s, Some("10.0.0.1")),
            ["192.168.1.3", "192.168.1.4", "192.168.1.5", "192.168.1.6"]
        );
        // the cursor is in the subnet but before rangeStart: not in the set
        assert_eq!(walk(&s, Some("192.168.1.2"))[0], "192.168.1.3");
        // a cursor of the other family is ignored too
        assert_eq!(walk(&s, Some("2001:db8::5"))[0], "192.168.1.3");
    }

    #[test]
    fn multi_range_advance_and_roll_over() {
        let s = set(&[
            spec("192.168.1.0/30", None, None),
            spec("192.168.2.0/30", None, None),
            spec("192.168.3.0/30", None, None),
        ]);
        // each /30 yields only .2 (.1 is the gateway, .3 the broadcast)
        assert_eq!(
            walk(&s, None),
            ["192.168.1.2", "192.168.2.2", "192.168.3.2"]
        );
        assert_eq!(
            walk(&s, Some("192.168.1.2")),
            ["192.168.2.2", "192.168.3.2", "192.168.1.2"]
        );
        assert_eq!(
            walk(&s, Some("192.168.3.2")),
            ["192.168.1.2", "192.168.2.2", "192.168.3.2"]
        );
    }

    #[test]
    fn gateway_at_range_start_is_skipped_and_walk_terminates() {
        // only address of the window is the gateway: nothing to offer
        let s = set(&[spec("10.0.0.0/24", Some("10.0.0.1"), Some("10.0.0.1"))]);
        assert!(walk(&s, None).is_empty());
        assert!(walk(&s, Some("10.0.0.1")).is_empty());
    }

    #[test]
    fn ipv6_walk_from_cursor() {
        let s = set(&[spec("2001:db8::/126", None, None)]);
        assert_eq!(walk(&s, None), ["2001:db8::2", "2001:db8::3"]);
        assert_eq!(
            walk(&s, Some("2001:db8::2")),
            ["2001:db8::3", "2001:db8::2"]
        );
        let big = set(&[spec("2001:db8::/64", None, None)]);
        let mut it = RoundRobin::new(&big, Some(ip("2001:db8::ffff:ffff:ffff:ffff")));
        // wraps from the last address of a /64 to its start, skipping ::1
        assert_eq!(it.next().map(|(a, _)| a), Some(ip("2001:db8::2")));
    }

    #[test]
    fn yields_owning_range() {
        let s = set(&[
            spec("10.0.0.0/30", None, None),
            spec("10.0.1.0/30", None, None),
        ]);
        let got: Vec<_> = RoundRobin::new(&s, None)
            .map(|(a, r)| (ip::to_text(a), r.subnet.to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.2".to_string(), "10.0.0.0/30".to_string()),
                ("10.0.1.2".to_string(), "10.0.1.0/30".to_string())
            ]
        );
    }
}
