//! Readiness (CNI 1.1.0 `STATUS`): can an ADD be served right now?

use std::net::IpAddr;
use std::path::Path;

use crate::ip;
use crate::range_set::RangeSet;
use crate::store::{DiskStore, DiskStoreOptions, Reservation, Store, StoreError};

/// Why an ADD could not be served now.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// Every address of range set `index` is reserved.
    #[error("range set {index} is exhausted: no IP addresses available in range set: {set}")]
    Exhausted {
        /// The set's index.
        index: usize,
        /// The set, as `A-B[,C-D…]`.
        set: String,
    },
    /// The store cannot be written: not a directory, read-only, …
    #[error("IPAM store unusable: {0}")]
    Unusable(#[source] StoreError),
    /// The store could not be read (or its lock not taken in time).
    #[error(transparent)]
    Store(StoreError),
}

impl StatusError {
    /// Whether the plugin is not available (CNI code 50): a set is
    /// exhausted or the store is unusable.
    pub fn is_not_available(&self) -> bool {
        matches!(self, Self::Exhausted { .. } | Self::Unusable(_))
    }

    /// Whether retrying later may succeed (store lock timeout).
    pub fn is_try_again(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_try_again())
    }
}

/// Checks that every range set has at least one address that is neither a
/// gateway nor reserved.
///
/// # Errors
/// [`StatusError::Exhausted`] for the first full set.
pub fn check_capacity(sets: &[RangeSet], reservations: &[Reservation]) -> Result<(), StatusError> {
    for (index, set) in sets.iter().enumerate() {
        let used = count_allocatable(set, reservations.iter().map(|r| r.ip));
        if set.capacity().saturating_sub(used) == 0 {
            return Err(StatusError::Exhausted {
                index,
                set: set.to_string(),
            });
        }
    }
    Ok(())
}

/// Distinct reserved addresses that the set could otherwise hand out.
fn count_allocatable(set: &RangeSet, reserved: impl Iterator<Item = IpAddr>) -> u128 {
    let mut seen: Vec<IpAddr> = reserved
        .map(ip::canonical)
        .filter(|a| set.is_allocatable(*a))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    u128::try_from(seen.len()).unwrap_or(u128::MAX)
}

/// STATUS against a [`DiskStore`]: the store must be writable (checked
/// without creating the network directory) and every set must have a free
/// address.
///
/// # Errors
/// [`StatusError`].
pub fn disk_status(
    sets: &[RangeSet],
    data_dir: &Path,
    network: &str,
    opts: &DiskStoreOptions,
) -> Result<(), StatusError> {
    DiskStore::probe_writable(data_dir, network).map_err(|e| match e {
        StoreError::InvalidNetworkName { .. } => StatusError::Store(e),
        other => StatusError::Unusable(other),
    })?;
    // A symlink planted in the store makes it unusable for ADD, like an unwritable one.
    let store_error = |e: StoreError| match e {
        StoreError::Symlink { .. } => StatusError::Unusable(e),
        other => StatusError::Store(other),
    };
    let reservations =
        match DiskStore::open_existing(data_dir, network, opts).map_err(store_error)? {
            Some(store) => store.list().map_err(store_error)?,
            None => Vec::new(),
        };
    check_capacity(sets, &reservations)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range::RangeSpec;
    use crate::store::{Attachment, MemStore};
    use crate::test_util::ip;

    fn set(s: &str) -> RangeSet {
        RangeSet::canonicalize(&[RangeSpec::subnet(s.parse().expect("net"))]).expect("set")
    }

    #[test]
    fn exhausted_set_reported_by_index() {
        let sets = [set("10.0.0.0/24"), set("10.1.0.0/30")];
        let mut st = MemStore::new();
        check_capacity(&sets, &st.list().expect("list")).expect("free");
        st.reserve(ip("10.1.0.2"), &Attachment::new("a", "eth0"))
            .expect("r");
        let err = check_capacity(&sets, &st.list().expect("list")).expect_err("full");
        assert!(err.is_not_available());
        assert_eq!(
            err.to_string(),
            "range set 1 is exhausted: no IP addresses available in range set: 10.1.0.1-10.1.0.2"
        );
    }

    #[test]
    fn reservations_outside_or_on_gateway_do_not_count() {
        let sets = [set("10.1.0.0/30")];
        let mut st = MemStore::new();
        st.reserve(ip("10.1.0.1"), &Attachment::new("gw", "eth0"))
            .expect("r");
        st.reserve(ip("10.9.0.2"), &Attachment::new("x", "eth0"))
            .expect("r");
        check_capacity(&sets, &st.list().expect("list")).expect("still free");
    }

    #[test]
    fn disk_status_without_directory_and_when_full() {
        let data = tempfile::tempdir().expect("tempdir");
        let opts = DiskStoreOptions::default();
        let sets = [set("10.1.0.0/30")];
        disk_status(&sets, data.path(), "net", &opts).expect("empty store");
        assert!(!data.path().join("net").exists());
        let mut st = DiskStore::open(data.path(), "net", &opts).expect("open");
        st.reserve(ip("10.1.0.2"), &Attachment::new("a", "eth0"))
            .expect("r");
        drop(st);
        let err = disk_status(&sets, data.path(), "net", &opts).expect_err("full");
        assert!(err.is_not_available(), "{err}");
    }

    #[test]
    fn disk_status_unusable_when_not_a_directory() {
        let data = tempfile::tempdir().expect("tempdir");
        std::fs::write(data.path().join("net"), "x").expect("write");
        let err = disk_status(
            &[set("10.1.0.0/24")],
            data.path(),
            "net",
            &DiskStoreOptions::default(),
        )
        .expect_err("file in the way");
        assert!(err.is_not_available(), "{err}");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
