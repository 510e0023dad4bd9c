//! One address per range set for an attachment: the whole of host-local's
//! ADD allocation (`main.go` `cmdAdd`), with requested addresses and
//! rollback.
//!
//! # Requested addresses (deterministic)
//!
//! The requested addresses are taken in input order — `CNI_ARGS` `IP=`,
//! then `args.cni.ips`, then `runtimeConfig.ips` — with repeats of the same
//! address dropped (first occurrence kept; prefixes are ignored). Range
//! sets are visited in order, and each set takes the **first** requested
//! address it contains that no earlier set took. Any requested address no
//! set took (outside every set, or a second one for the same set) fails
//! the ADD with `failed to allocate all requested IPs: <ip> …`, listing the
//! unused addresses in input order. The reference picks randomly among
//! several addresses for one set (Go map order) and fails the same way;
//! we check this before reserving anything, so such a request has no side
//! effect at all.

use std::net::IpAddr;

use crate::allocator::{AllocError, Allocation, Allocator};
use crate::ip;
use crate::range_set::RangeSet;
use crate::store::{Attachment, Store};

/// Why an ADD could not get its addresses.
#[derive(Debug, thiserror::Error)]
pub enum AddError {
    /// Requested addresses that no range set takes.
    #[error("failed to allocate all requested IPs: {}", join(.unused))]
    UnusedRequested {
        /// The addresses, in input order.
        unused: Vec<IpAddr>,
    },
    /// Range set `index` failed.
    #[error("failed to allocate for range {index}: {cause}")]
    Range {
        /// The set's index.
        index: usize,
        /// What went wrong.
        cause: AllocError,
    },
}

impl AddError {
    /// Whether retrying later may succeed (store lock timeout).
    pub fn is_try_again(&self) -> bool {
        matches!(self, Self::Range { cause, .. } if cause.is_try_again())
    }

    /// Whether a range set ran out of addresses.
    pub fn is_exhausted(&self) -> bool {
        matches!(self, Self::Range { cause, .. } if cause.is_exhausted())
    }
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(|a| ip::to_text(*a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decides which requested address each range set allocates (see the
/// module documentation for the rule).
///
/// # Errors
/// [`AddError::UnusedRequested`] listing the addresses no set takes.
pub fn assign_requested(
    sets: &[RangeSet],
    requested: &[IpAddr],
) -> Result<Vec<Option<IpAddr>>, AddError> {
    let mut pending: Vec<IpAddr> = Vec::with_capacity(requested.len());
    for r in requested.iter().map(|r| ip::canonical(*r)) {
        if !pending.contains(&r) {
            pending.push(r);
        }
    }
    let mut taken = Vec::with_capacity(sets.len());
    for set in sets {
        match pending.iter().position(|r| set.contains(*r)) {
            Some(i) => taken.push(Some(pending.remove(i))),
            None => taken.push(None),
        }
    }
    if pending.is_empty() {
        Ok(taken)
    } else {
        Err(AddError::UnusedRequested { unused: pending })
    }
}

/// Allocates one address per range set for `who`, in set order, set `i`
/// using cursor `last_reserved_ip.i`. On any failure every address this
/// call reserved is released again (earlier reservations of `who` are not
/// touched) before the error is returned.
///
/// # Errors
/// [`AddError`]: an unused requested address, or the first set that failed.
pub fn allocate_all<S: Store + ?Sized>(
    sets: &[RangeSet],
    store: &mut S,
    who: &Attachment<'_>,
    requested: &[IpAddr],
) -> Result<Vec<Allocation>, AddError> {
    let plan = assign_requested(sets, requested)?;
    let mut done: Vec<Allocation> = Vec::with_capacity(sets.len());
    for (index, (set, req)) in sets.iter().zip(plan).enumerate() {
        match Allocator::new(set, index, store).allocate(who, req) {
            Ok(a) => done.push(a),
            Err(cause) => {
                for a in &done {
                    let addr = a.address.ip();
                    if let Err(e) = store.release_ip(addr, who) {
                        log::warn!("rollback: cannot release {addr}: {e}");
                    }
                }
                return Err(AddError::Range { index, cause });
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::RangeSpec;
    use crate::store::MemStore;
    use crate::test_util::ip;

    fn set(subnets: &[&str]) -> RangeSet {
        let specs: Vec<RangeSpec> = subnets
            .iter()
            .map(|s| RangeSpec::subnet(s.parse().expect("net")))
            .collect();
        RangeSet::canonicalize(&specs).expect("valid set")
    }

    fn texts(a: &[Allocation]) -> Vec<String> {
        a.iter().map(|a| a.address.to_string()).collect()
    }

    #[test]
    fn one_address_per_set_dual_stack() {
        let sets = [
            set(&["10.1.2.0/24", "10.1.3.0/24"]),
            set(&["2001:db8:1::/64"]),
        ];
        let mut st = MemStore::new();
        let got = allocate_all(&sets, &mut st, &Attachment::new("a", "eth0"), &[]).expect("add");
        assert_eq!(texts(&got), ["10.1.2.2/24", "2001:db8:1::2/64"]);
        assert_eq!(got[1].gateway, ip("2001:db8:1::1"));
        assert_eq!(st.last_reserved(0).expect("c0"), Some(ip("10.1.2.2")));
        assert_eq!(st.last_reserved(1).expect("c1"), Some(ip("2001:db8:1::2")));
    }

    #[test]
    fn requested_one_per_set_first_wins() {
        let sets = [
            set(&["10.1.2.0/24"]),
            set(&["10.1.3.0/24"]),
            set(&["2001:db8::/64"]),
        ];
        let plan = assign_requested(
            &sets,
            &[
                ip("2001:db8::9"),
                ip("10.1.3.9"),
                ip("10.1.2.9"),
                ip("10.1.3.9"),
            ],
        )
        .expect("plan");
        assert_eq!(
            plan,
            [
                Some(ip("10.1.2.9")),
                Some(ip("10.1.3.9")),
                Some(ip("2001:db8::9"))
            ]
        );
        let plan = assign_requested(&sets, &[ip("10.1.3.9")]).expect("plan");
        assert_eq!(plan, [None, Some(ip("10.1.3.9")), None]);
    }

    #[test]
    fn several_requested_in_one_set_fail_naming_the_later_ones() {
        let sets = [set(&["10.1.2.0/24"])];
        let err = assign_requested(&sets, &[ip("10.1.2.7"), ip("10.1.2.5"), ip("10.1.2.6")])
            .expect_err("two extra");
        assert_eq!(
            err.to_string(),
            "failed to allocate all requested IPs: 10.1.2.5 10.1.2.6"
        );
        let err = assign_requested(&sets, &[ip("10.9.9.9")]).expect_err("outside");
        assert_eq!(
            err.to_string(),
            "failed to allocate all requested IPs: 10.9.9.9"
        );
    }

    #[test]
    fn unused_request_reserves_nothing() {
        let sets = [set(&["10.1.2.0/24"])];
        let mut st = MemStore::new();
        let err = allocate_all(
            &sets,
            &mut st,
            &Attachment::new("a", "eth0"),
            &[ip("10.1.2.7"), ip("10.1.5.5")],
        )
        .expect_err("unused");
        assert!(matches!(err, AddError::UnusedRequested { .. }));
        assert!(st.list().expect("list").is_empty());
        assert_eq!(st.last_reserved(0).expect("cursor"), None);
    }

    #[test]
    fn failure_in_later_set_rolls_back_only_this_call() {
        let sets = [set(&["10.1.2.0/24"]), set(&["10.2.0.0/30"])];
        let mut st = MemStore::new();
        // earlier reservation of the same container on another interface
        st.reserve(ip("10.1.2.200"), &Attachment::new("a", "eth1"))
            .expect("r");
        // fill the second set
        st.reserve(ip("10.2.0.2"), &Attachment::new("z", "eth0"))
            .expect("r");
        let err = allocate_all(&sets, &mut st, &Attachment::new("a", "eth0"), &[])
            .expect_err("set 1 full");
        assert_eq!(
            err.to_string(),
            "failed to allocate for range 1: no IP addresses available in range set: 10.2.0.1-10.2.0.2"
        );
        assert!(err.is_exhausted());
        assert!(!err.is_try_again());
        let left: Vec<IpAddr> = st.list().expect("list").into_iter().map(|r| r.ip).collect();
        assert_eq!(left, [ip("10.1.2.200"), ip("10.2.0.2")]);
    }

    #[test]
    fn exhaustion_then_release_and_reuse() {
        let sets = [set(&["10.3.0.0/30"])];
        let mut st = MemStore::new();
        let a = Attachment::new("a", "eth0");
        let b = Attachment::new("b", "eth0");
        assert_eq!(
            texts(&allocate_all(&sets, &mut st, &a, &[]).expect("a")),
            ["10.3.0.2/30"]
        );
        assert!(
            allocate_all(&sets, &mut st, &b, &[])
                .expect_err("full")
                .is_exhausted()
        );
        st.release(&a).expect("release");
        assert_eq!(
            texts(&allocate_all(&sets, &mut st, &b, &[]).expect("b")),
            ["10.3.0.2/30"]
        );
    }

    #[test]
    fn requested_failure_message_is_prefixed_with_set_index() {
        let sets = [set(&["10.1.2.0/24"]), set(&["10.1.3.0/24"])];
        let mut st = MemStore::new();
        st.reserve(ip("10.1.3.5"), &Attachment::new("z", "eth0"))
            .expect("r");
        let err = allocate_all(
            &sets,
            &mut st,
            &Attachment::new("a", "eth0"),
            &[ip("10.1.3.5")],
        )
        .expect_err("taken");
        assert_eq!(
            err.to_string(),
            "failed to allocate for range 1: requested IP address 10.1.3.5 is not available in range set 10.1.3.1-10.1.3.254"
        );
        assert_eq!(
            st.list().expect("list").len(),
            1,
            "set 0's address was rolled back"
        );
    }
}
