//! An in-memory [`Store`] for unit tests and benchmarks.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{Attachment, Reservation, Store, StoreError};
use crate::ip;

/// Reservations and cursors kept in memory; behaves like [`super::DiskStore`]
/// minus persistence and locking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStore {
    reservations: BTreeMap<IpAddr, Reservation>,
    cursors: BTreeMap<usize, IpAddr>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a legacy (ID-only) reservation, as written before reference
    /// v0.8.0. Returns false if `ip` is taken.
    pub fn insert_legacy(&mut self, ip: IpAddr, container_id: &str) -> bool {
        let ip = ip::canonical(ip);
        if self.reservations.contains_key(&ip) {
            return false;
        }
        self.reservations
            .insert(ip, Reservation::parse(ip, container_id));
        true
    }
}

impl Store for MemStore {
    fn reserve(&mut self, ip: IpAddr, who: &Attachment<'_>) -> Result<bool, StoreError> {
        let ip = ip::canonical(ip);
        if self.reservations.contains_key(&ip) {
            return Ok(false);
        }
        self.reservations
            .insert(ip, Reservation::parse(ip, &who.file_content()));
        Ok(true)
    }

    fn remove(&mut self, ip: IpAddr) -> Result<bool, StoreError> {
        Ok(self.reservations.remove(&ip::canonical(ip)).is_some())
    }

    fn get(&self, ip: IpAddr) -> Result<Option<Reservation>, StoreError> {
        Ok(self.reservations.get(&ip::canonical(ip)).cloned())
    }

    fn list(&self) -> Result<Vec<Reservation>, StoreError> {
        Ok(self.reservations.values().cloned().collect())
    }

    fn last_reserved(&self, set_index: usize) -> Result<Option<IpAddr>, StoreError> {
        Ok(self.cursors.get(&set_index).copied())
    }

    fn set_last_reserved(&mut self, set_index: usize, ip: IpAddr) -> Result<(), StoreError> {
        self.cursors.insert(set_index, ip::canonical(ip));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::ip;

    #[test]
    fn behaves_like_a_store() {
        let mut s = MemStore::new();
        let a = Attachment::new("a", "eth0");
        assert!(s.reserve(ip("10.0.0.2"), &a).expect("reserve"));
        assert!(
            !s.reserve(ip("::ffff:10.0.0.2"), &a)
                .expect("mapped is the same address")
        );
        assert!(s.insert_legacy(ip("10.0.0.3"), "old"));
        assert!(!s.insert_legacy(ip("10.0.0.3"), "old"));
        assert_eq!(s.list().expect("list").len(), 2);
        assert_eq!(
            s.lookup(&Attachment::new("old", "eth0")).expect("lookup"),
            [ip("10.0.0.3")]
        );
        s.set_last_reserved(2, ip("10.0.0.3")).expect("cursor");
        assert_eq!(s.last_reserved(2).expect("cursor"), Some(ip("10.0.0.3")));
        assert_eq!(s.last_reserved(0).expect("cursor"), None);
        assert_eq!(s.release(&a).expect("release"), [ip("10.0.0.2")]);
        assert!(s.get(ip("10.0.0.2")).expect("get").is_none());
    }
}
