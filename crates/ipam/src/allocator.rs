//! Allocation of one address from one range set
//! (`backend/allocator/allocator.go` `Get`).

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::ip;
use crate::iter::RoundRobin;
use crate::range_set::{NotInSet, RangeSet};
use crate::store::{Attachment, Store, StoreError};

/// One allocated address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The address with its range's subnet prefix, e.g. `10.1.2.2/24`.
    pub address: IpNetwork,
    /// The gateway of the range the address came from.
    pub gateway: IpAddr,
}

/// Why a range set could not provide an address. Texts are the
/// reference's (the duplicate one as of v0.8.2).
#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    /// A requested address lies in no range of the set.
    #[error(transparent)]
    NotInSet(#[from] NotInSet),
    /// A requested address is its range's gateway.
    #[error("requested ip {} is subnet's gateway", ip::to_text(*.ip))]
    RequestedGateway {
        /// The address.
        ip: IpAddr,
    },
    /// A requested address is reserved already.
    #[error("requested IP address {} is not available in range set {set}", ip::to_text(*.ip))]
    Unavailable {
        /// The address.
        ip: IpAddr,
        /// The set, as `A-B[,C-D…]`.
        set: String,
    },
    /// The attachment already holds an address in this set.
    #[error(
        "{} has been allocated to {container_id}, duplicate allocation is not allowed",
        ip::to_text(*.ip)
    )]
    Duplicate {
        /// The address it holds.
        ip: IpAddr,
        /// Its container ID, as given.
        container_id: String,
    },
    /// Every address of the set is reserved.
    #[error("no IP addresses available in range set: {set}")]
    Exhausted {
        /// The set, as `A-B[,C-D…]`.
        set: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AllocError {
    /// Whether retrying later may succeed (store lock timeout).
    pub fn is_try_again(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_try_again())
    }

    /// Whether the set ran out of addresses.
    pub fn is_exhausted(&self) -> bool {
        matches!(self, Self::Exhausted { .. })
    }
}

/// Allocates from range set number `set_index` (the `N` of
/// `last_reserved_ip.N`) using `store`.
#[derive(Debug)]
pub struct Allocator<'a, S: Store + ?Sized> {
    set: &'a RangeSet,
    set_index: usize,
    store: &'a mut S,
}

impl<'a, S: Store + ?Sized> Allocator<'a, S> {
    /// An allocator for one range set.
    pub fn new(set: &'a RangeSet, set_index: usize, store: &'a mut S) -> Self {
        Self {
            set,
            set_index,
            store,
        }
    }

    /// Reserves an address for `who` and moves the set's cursor to it.
    ///
    /// With `requested`, exactly that address: it must lie in the set, must
    /// not be its range's gateway and must be free. Without, the first free
    /// address of the round-robin walk ([`RoundRobin`]) from the cursor.
    /// Either way `who` must not already hold an address of this set.
    ///
    /// # Errors
    /// [`AllocError`]; nothing is left reserved when it fails.
    pub fn allocate(
        &mut self,
        who: &Attachment<'_>,
        requested: Option<IpAddr>,
    ) -> Result<Allocation, AllocError> {
        let allocation = match requested {
            Some(req) => self.take_requested(who, ip::canonical(req))?,
            None => self.take_next(who)?,
        };
        let addr = allocation.address.ip();
        if let Err(e) = self.store.set_last_reserved(self.set_index, addr) {
            if let Err(undo) = self.store.release_ip(addr, who) {
                log::warn!("cannot undo reservation of {addr}: {undo}");
            }
            return Err(e.into());
        }
        Ok(allocation)
    }

    fn refuse_duplicate(&self, who: &Attachment<'_>) -> Result<(), AllocError> {
        let held = self.store.lookup(who)?;
        match held.into_iter().find(|a| self.set.contains(*a)) {
            Some(ip) => Err(AllocError::Duplicate {
                ip,
                container_id: who.container_id.to_string(),
            }),
            None => Ok(()),
        }
    }

    fn take_requested(
        &mut self,
        who: &Attachment<'_>,
        req: IpAddr,
    ) -> Result<Allocation, AllocError> {
        let (_, range) = self.set.range_for(req)?;
        if req == range.gateway {
            return Err(AllocError::RequestedGateway { ip: req });
        }
        self.refuse_duplicate(who)?;
        if !self.store.reserve(req, who)? {
            return Err(AllocError::Unavailable {
                ip: req,
                set: self.set.to_string(),
            });
        }
        Ok(Allocation {
            address: range.with_prefix(req),
            gateway: range.gateway,
        })
    }

    fn take_next(&mut self, who: &Attachment<'_>) -> Result<Allocation, AllocError> {
        self.refuse_duplicate(who)?;
        let cursor = self.store.last_reserved(self.set_index)?;
        for (candidate, range) in RoundRobin::new(self.set, cursor) {
            if self.store.reserve(candidate, who)? {
                return Ok(Allocation {
                    address: range.with_prefix(candidate),
                    gateway: range.gateway,
                });
            }
        }
        Err(AllocError::Exhausted {
            set: self.set.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::RangeSpec;
    use crate::store::MemStore;
    use crate::test_util::ip;

    fn set(subnets: &[(&str, Option<&str>, Option<&str>)]) -> RangeSet {
        let specs: Vec<RangeSpec> = subnets
            .iter()
            .map(|(s, a, b)| RangeSpec {
                subnet: s.parse().expect("net"),
                range_start: a.map(ip),
                range_end: b.map(ip),
                gateway: None,
            })
            .collect();
        RangeSet::canonicalize(&specs).expect("valid set")
    }

    fn alloc(set: &RangeSet, store: &mut MemStore, id: &str) -> Result<String, String> {
        Allocator::new(set, 0, store)
            .allocate(&Attachment::new(id, "eth0"), None)
            .map(|a| a.address.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn fresh_slash_29_never_gives_gateway_or_broadcast() {
        let s = set(&[("192.168.1.0/29", None, None)]);
        let mut st = MemStore::new();
        let got: Vec<String> = (0..5)
            .map(|i| alloc(&s, &mut st, &format!("c{i}")).expect("free"))
            .collect();
        assert_eq!(
            got,
            [
                "192.168.1.2/29",
                "192.168.1.3/29",
                "192.168.1.4/29",
                "192.168.1.5/29",
                "192.168.1.6/29"
            ]
        );
        assert_eq!(
            alloc(&s, &mut st, "c5").expect_err("full"),
            "no IP addresses available in range set: 192.168.1.1-192.168.1.6"
        );
        assert_eq!(
            st.last_reserved(0).expect("cursor"),
            Some(ip("192.168.1.6"))
        );
    }

    #[test]
    fn released_address_is_not_reused_at_once() {
        let s = set(&[("192.168.1.0/29", None, None)]);
        let mut st = MemStore::new();
        assert_eq!(alloc(&s, &mut st, "a").expect("a"), "192.168.1.2/29");
        st.release(&Attachment::new("a", "eth0")).expect("release");
        assert_eq!(alloc(&s, &mut st, "b").expect("b"), "192.168.1.3/29");
    }

    #[test]
    fn skips_used_and_wraps_after_cursor() {
        let s = set(&[("192.168.1.0/29", None, None)]);
        let mut st = MemStore::new();
        st.set_last_reserved(0, ip("192.168.1.5")).expect("cursor");
        st.reserve(ip("192.168.1.6"), &Attachment::new("x", "eth0"))
            .expect("r");
        st.reserve(ip("192.168.1.2"), &Attachment::new("y", "eth0"))
            .expect("r");
        assert_eq!(alloc(&s, &mut st, "a").expect("a"), "192.168.1.3/29");
    }

    #[test]
    fn full_but_last_reserved_gives_it_again() {
        let s = set(&[("192.168.1.0/29", None, None)]);
        let mut st = MemStore::new();
        for last in ["192.168.1.2", "192.168.1.3", "192.168.1.4", "192.168.1.5"] {
            st.reserve(ip(last), &Attachment::new(last, "eth0"))
                .expect("r");
        }
        st.set_last_reserved(0, ip("192.168.1.6")).expect("cursor");
        assert_eq!(alloc(&s, &mut st, "a").expect("a"), "192.168.1.6/29");
    }

    #[test]
    fn cursor_out_of_set_starts_at_first_range() {
        let s = set(&[("192.168.1.0/24", Some("192.168.1.10"), Some("192.168.1.20"))]);
        let mut st = MemStore::new();
        st.set_last_reserved(0, ip("192.168.1.50")).expect("cursor");
        assert_eq!(alloc(&s, &mut st, "a").expect("a"), "192.168.1.10/24");
    }

    #[test]
    fn multi_range_advance_and_roll_over() {
        let s = set(&[
            ("192.168.1.0/30", None, None),
            ("192.168.2.0/30", None, None),
        ]);
        let mut st = MemStore::new();
        assert_eq!(alloc(&s, &mut st, "a").expect("a"), "192.168.1.2/30");
        assert_eq!(alloc(&s, &mut st, "b").expect("b"), "192.168.2.2/30");
        st.release(&Attachment::new("a", "eth0")).expect("release");
        // cursor at the last range: rolls over to the first
        assert_eq!(alloc(&s, &mut st, "c").expect("c"), "192.168.1.2/30");
        assert_eq!(
            alloc(&s, &mut st, "d").expect_err("full"),
            "no IP addresses available in range set: 192.168.1.1-192.168.1.2,192.168.2.1-192.168.2.2"
        );
    }

    #[test]
    fn start_after_last_range_end_goes_to_next_range() {
        let s = set(&[
            ("192.168.1.0/24", Some("192.168.1.10"), Some("192.168.1.11")),
            ("192.168.2.0/24", Some("192.168.2.10"), Some("192.168.2.11")),
        ]);
        let mut st = MemStore::new();
        st.set_last_reserved(0, ip("192.168.1.11")).expect("cursor");
        assert_eq!(alloc(&s, &mut st, "a").expect("a"), "192.168.2.10/24");
    }

    #[test]
    fn duplicate_same_attachment_refused_second_ifname_allowed() {
        let s = set(&[("10.1.2.0/24", None, None)]);
        let mut st = MemStore::new();
        assert_eq!(alloc(&s, &mut st, "a").expect("first"), "10.1.2.2/24");
        assert_eq!(
            alloc(&s, &mut st, "a").expect_err("dup"),
            "10.1.2.2 has been allocated to a, duplicate allocation is not allowed"
        );
        let second = Allocator::new(&s, 0, &mut st)
            .allocate(&Attachment::new("a", "eth1"), None)
            .expect("eth1");
        assert_eq!(second.address.to_string(), "10.1.2.3/24");
        // a requested address for an attachment that already has one is a duplicate too
        let err = Allocator::new(&s, 0, &mut st)
            .allocate(&Attachment::new("a", "eth1"), Some(ip("10.1.2.50")))
            .expect_err("dup");
        assert!(matches!(err, AllocError::Duplicate { .. }), "{err}");
    }

    #[test]
    fn legacy_reservation_counts_as_duplicate() {
        let s = set(&[("10.1.2.0/24", None, None)]);
        let mut st = MemStore::new();
        st.insert_legacy(ip("10.1.2.9"), "old");
        assert_eq!(
            alloc(&s, &mut st, "old").expect_err("dup"),
            "10.1.2.9 has been allocated to old, duplicate allocation is not allowed"
        );
    }

    #[test]
    fn duplicate_only_within_the_same_set() {
        let v4 = set(&[("10.1.2.0/24", None, None)]);
        let v6 = set(&[("2001:db8::/64", None, None)]);
        let mut st = MemStore::new();
        let who = Attachment::new("a", "eth0");
        Allocator::new(&v4, 0, &mut st)
            .allocate(&who, None)
            .expect("v4");
        let a6 = Allocator::new(&v6, 1, &mut st)
            .allocate(&who, None)
            .expect("v6");
        assert_eq!(a6.address.to_string(), "2001:db8::2/64");
        assert_eq!(a6.gateway, ip("2001:db8::1"));
        assert_eq!(
            st.last_reserved(1).expect("cursor"),
            Some(ip("2001:db8::2"))
        );
    }

    #[test]
    fn requested_ip_cases() {
        let s = set(&[("192.168.1.0/24", Some("192.168.1.3"), Some("192.168.1.20"))]);
        let mut st = MemStore::new();
        let req = |st: &mut MemStore, id: &str, r: &str| {
            Allocator::new(&s, 0, st)
                .allocate(&Attachment::new(id, "eth0"), Some(ip(r)))
                .map(|a| (a.address.to_string(), a.gateway.to_string()))
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            req(&mut st, "a", "192.168.1.5"),
            Ok(("192.168.1.5/24".to_string(), "192.168.1.1".to_string()))
        );
        // a requested IP moves the cursor, like the reference
        assert_eq!(
            st.last_reserved(0).expect("cursor"),
            Some(ip("192.168.1.5"))
        );
        assert_eq!(
            req(&mut st, "b", "192.168.1.5"),
            Err("requested IP address 192.168.1.5 is not available in range set 192.168.1.3-192.168.1.20".to_string())
        );
        assert_eq!(
            req(&mut st, "b", "192.168.1.21"),
            Err("192.168.1.21 not in range set 192.168.1.3-192.168.1.20".to_string())
        );
        assert_eq!(
            req(&mut st, "b", "192.168.1.2"),
            Err("192.168.1.2 not in range set 192.168.1.3-192.168.1.20".to_string())
        );
        assert_eq!(
            req(&mut st, "b", "::ffff:192.168.1.6"),
            Ok(("192.168.1.6/24".to_string(), "192.168.1.1".to_string()))
        );
        let gw = set(&[("10.0.0.0/24", None, None)]);
        let err = Allocator::new(&gw, 0, &mut st)
            .allocate(&Attachment::new("c", "eth0"), Some(ip("10.0.0.1")))
            .expect_err("gateway");
        assert_eq!(err.to_string(), "requested ip 10.0.0.1 is subnet's gateway");
    }

    /// A store whose cursor writes fail, to prove the reservation is undone.
    struct NoCursor(MemStore);

    impl Store for NoCursor {
        fn reserve(&mut self, ip: IpAddr, who: &Attachment<'_>) -> Result<bool, StoreError> {
            self.0.reserve(ip, who)
        }
        fn remove(&mut self, ip: IpAddr) -> Result<bool, StoreError> {
            self.0.remove(ip)
        }
        fn get(&self, ip: IpAddr) -> Result<Option<crate::store::Reservation>, StoreError> {
            self.0.get(ip)
        }
        fn list(&self) -> Result<Vec<crate::store::Reservation>, StoreError> {
            self.0.list()
        }
        fn last_reserved(&self, i: usize) -> Result<Option<IpAddr>, StoreError> {
            self.0.last_reserved(i)
        }
        fn set_last_reserved(&mut self, _: usize, _: IpAddr) -> Result<(), StoreError> {
            Err(StoreError::io(
                "replace cursor",
                "last_reserved_ip.0",
                std::io::Error::other("disk full"),
            ))
        }
    }

    #[test]
    fn failed_cursor_write_undoes_reservation() {
        let s = set(&[("10.1.2.0/24", None, None)]);
        let mut st = NoCursor(MemStore::new());
        let err = Allocator::new(&s, 0, &mut st)
            .allocate(&Attachment::new("a", "eth0"), None)
            .expect_err("cursor fails");
        assert!(err.to_string().contains("disk full"), "{err}");
        assert!(st.list().expect("list").is_empty());
    }
}
