//! CHECK: the attachment's reservations exist and agree with `prevResult`.

use std::net::IpAddr;

use crate::ip;
use crate::range_set::RangeSet;
use crate::store::{Attachment, Store, StoreError};

/// A CHECK failure.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The attachment has no reservation at all (the reference's text).
    #[error("host-local: Failed to find address added by container {container_id}")]
    NotFound {
        /// The container ID, as given.
        container_id: String,
    },
    /// `prevResult` lists an address of our ranges that is not reserved for
    /// the attachment.
    #[error(
        "host-local: address {} in prevResult is not reserved for container {container_id} interface {ifname}",
        ip::to_text(*.ip)
    )]
    NotReserved {
        /// The address.
        ip: IpAddr,
        /// The container ID.
        container_id: String,
        /// The interface name.
        ifname: String,
    },
    /// The attachment holds an address of our ranges that `prevResult` lacks.
    #[error(
        "host-local: address {} reserved for container {container_id} interface {ifname} is missing from prevResult",
        ip::to_text(*.ip)
    )]
    MissingFromResult {
        /// The address.
        ip: IpAddr,
        /// The container ID.
        container_id: String,
        /// The interface name.
        ifname: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CheckError {
    /// Whether retrying later may succeed (store lock timeout).
    pub fn is_try_again(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_try_again())
    }
}

/// Verifies `who`'s reservations. `store` is `None` when the network has no
/// state directory. With `expected` (the addresses of `prevResult`), every
/// expected address inside one of `sets` must be reserved for `who`, and
/// every address reserved for `who` inside `sets` must be expected;
/// addresses outside `sets` belong to other plugins and are ignored.
/// Without `expected`, any reservation suffices (the reference's check).
///
/// # Errors
/// [`CheckError`].
pub fn check<S: Store + ?Sized>(
    sets: &[RangeSet],
    store: Option<&S>,
    who: &Attachment<'_>,
    expected: Option<&[IpAddr]>,
) -> Result<(), CheckError> {
    let held = match store {
        Some(s) => s.lookup(who)?,
        None => Vec::new(),
    };
    if held.is_empty() {
        return Err(CheckError::NotFound {
            container_id: who.container_id.to_string(),
        });
    }
    let Some(expected) = expected else {
        return Ok(());
    };
    let ours = |a: &IpAddr| sets.iter().any(|s| s.contains(*a));
    let expected: Vec<IpAddr> = expected
        .iter()
        .map(|a| ip::canonical(*a))
        .filter(ours)
        .collect();
    if let Some(ip) = expected.iter().find(|a| !held.contains(a)) {
        return Err(CheckError::NotReserved {
            ip: *ip,
            container_id: who.container_id.to_string(),
            ifname: who.ifname.to_string(),
        });
    }
    if let Some(ip) = held
        .iter()
        .filter(|a| ours(a))
        .find(|a| !expected.contains(a))
    {
        return Err(CheckError::MissingFromResult {
            ip: *ip,
            container_id: who.container_id.to_string(),
            ifname: who.ifname.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::RangeSpec;
    use crate::store::MemStore;
    use crate::test_util::ip;

    fn sets() -> Vec<RangeSet> {
        ["10.1.2.0/24", "2001:db8::/64"]
            .iter()
            .map(|s| {
                RangeSet::canonicalize(&[RangeSpec::subnet(s.parse().expect("net"))]).expect("set")
            })
            .collect()
    }

    #[test]
    fn matches_prev_result() {
        let mut st = MemStore::new();
        let who = Attachment::new("a", "eth0");
        st.reserve(ip("10.1.2.2"), &who).expect("r");
        st.reserve(ip("2001:db8::2"), &who).expect("r");
        let s = sets();
        check(
            &s,
            Some(&st),
            &who,
            Some(&[ip("10.1.2.2"), ip("2001:db8::2"), ip("192.168.9.9")]),
        )
        .expect("consistent; foreign address ignored");
        check(&s, Some(&st), &who, None).expect("existence only");
        let err = check(
            &s,
            Some(&st),
            &who,
            Some(&[ip("10.1.2.3"), ip("2001:db8::2")]),
        )
        .expect_err("wrong v4");
        assert!(matches!(err, CheckError::NotReserved { .. }), "{err}");
        let err = check(&s, Some(&st), &who, Some(&[ip("10.1.2.2")])).expect_err("v6 missing");
        assert_eq!(
            err.to_string(),
            "host-local: address 2001:db8::2 reserved for container a interface eth0 is missing from prevResult"
        );
    }

    #[test]
    fn missing_reservation_uses_reference_text() {
        let st = MemStore::new();
        let err = check(&sets(), Some(&st), &Attachment::new("a", "eth0"), None).expect_err("none");
        assert_eq!(
            err.to_string(),
            "host-local: Failed to find address added by container a"
        );
        let err = check::<MemStore>(&sets(), None, &Attachment::new("a", "eth0"), None)
            .expect_err("no dir");
        assert!(matches!(err, CheckError::NotFound { .. }));
    }

    #[test]
    fn legacy_reservation_satisfies_check() {
        let mut st = MemStore::new();
        st.insert_legacy(ip("10.1.2.9"), "old");
        check(
            &sets(),
            Some(&st),
            &Attachment::new("old", "eth0"),
            Some(&[ip("10.1.2.9")]),
        )
        .expect("legacy");
    }
}
