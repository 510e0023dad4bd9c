//! Garbage collection (CNI 1.1.0 `GC`): releases every reservation whose
//! attachment the runtime no longer knows. The reference never implemented
//! this (`/* FIXME GC */`).

use crate::store::{Attachment, Reservation, Store, StoreError};

/// GC could not finish cleanly.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The reservations could not be listed; nothing was released.
    #[error("cannot list reservations: {0}")]
    List(#[source] StoreError),
    /// Some stale reservations could not be removed; the others were.
    #[error("failed to release {} stale reservation(s): {}", .failures.len(), join(.failures))]
    Partial {
        /// What was released.
        released: Vec<Reservation>,
        /// One error per reservation left behind.
        failures: Vec<StoreError>,
    },
}

impl GcError {
    /// Whether retrying later may succeed (store lock timeout).
    pub fn is_try_again(&self) -> bool {
        match self {
            Self::List(e) => e.is_try_again(),
            Self::Partial { failures, .. } => failures.iter().all(StoreError::is_try_again),
        }
    }
}

fn join(errors: &[StoreError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Whether `r` belongs to an attachment in `valid`. A legacy (ID-only)
/// reservation is valid when its container ID appears with any interface.
pub fn is_valid(r: &Reservation, valid: &[Attachment<'_>]) -> bool {
    valid.iter().any(|v| match &r.ifname {
        Some(ifname) => v.trimmed_id() == r.container_id && v.ifname == ifname,
        None => v.trimmed_id() == r.container_id,
    })
}

/// Releases every reservation not owned by an attachment in `valid` and
/// returns them. Only reservations are considered: the lock file and the
/// `last_reserved_ip.*` cursors are never touched. A failing removal does
/// not stop the others.
///
/// # Errors
/// [`GcError`], carrying what was released when only some removals failed.
pub fn gc<S: Store + ?Sized>(
    store: &mut S,
    valid: &[Attachment<'_>],
) -> Result<Vec<Reservation>, GcError> {
    let all = store.list().map_err(GcError::List)?;
    let mut released = Vec::new();
    let mut failures = Vec::new();
    for r in all.into_iter().filter(|r| !is_valid(r, valid)) {
        match store.remove(r.ip) {
            Ok(true) => released.push(r),
            Ok(false) => {}
            Err(e) => failures.push(e),
        }
    }
    if failures.is_empty() {
        Ok(released)
    } else {
        Err(GcError::Partial { released, failures })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use crate::test_util::ip;
    use std::net::IpAddr;

    #[test]
    fn releases_only_unknown_attachments() {
        let mut st = MemStore::new();
        st.reserve(ip("10.0.0.2"), &Attachment::new("keep", "eth0"))
            .expect("r");
        st.reserve(ip("10.0.0.3"), &Attachment::new("keep", "eth1"))
            .expect("r");
        st.reserve(ip("10.0.0.4"), &Attachment::new("gone", "eth0"))
            .expect("r");
        st.insert_legacy(ip("10.0.0.5"), "keep");
        st.insert_legacy(ip("10.0.0.6"), "gone-too");
        st.set_last_reserved(0, ip("10.0.0.6")).expect("cursor");
        let released = gc(&mut st, &[Attachment::new("keep", "eth0")]).expect("gc");
        let ips: Vec<IpAddr> = released.iter().map(|r| r.ip).collect();
        assert_eq!(ips, [ip("10.0.0.3"), ip("10.0.0.4"), ip("10.0.0.6")]);
        let left: Vec<IpAddr> = st.list().expect("list").iter().map(|r| r.ip).collect();
        assert_eq!(left, [ip("10.0.0.2"), ip("10.0.0.5")]);
        assert_eq!(st.last_reserved(0).expect("cursor"), Some(ip("10.0.0.6")));
    }

    #[test]
    fn empty_valid_list_releases_everything_and_repeat_is_noop() {
        let mut st = MemStore::new();
        st.reserve(ip("10.0.0.2"), &Attachment::new("a", "eth0"))
            .expect("r");
        assert_eq!(gc(&mut st, &[]).expect("gc").len(), 1);
        assert!(gc(&mut st, &[]).expect("gc").is_empty());
    }

    #[test]
    fn validity_trims_container_ids() {
        let r = Reservation::parse(ip("10.0.0.2"), "abc\r\neth0");
        assert!(is_valid(&r, &[Attachment::new(" abc ", "eth0")]));
        assert!(!is_valid(&r, &[Attachment::new("abc", "eth1")]));
        let legacy = Reservation::parse(ip("10.0.0.2"), "abc");
        assert!(is_valid(&legacy, &[Attachment::new("abc", "eth7")]));
        assert!(!is_valid(&legacy, &[Attachment::new("abcd", "eth0")]));
    }
}
