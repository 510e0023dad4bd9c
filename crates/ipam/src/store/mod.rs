//! Reservation stores: the [`Store`] trait, the reference-compatible
//! [`DiskStore`] and the in-memory [`MemStore`].
//!
//! A reservation ties one address to an attachment (container ID and
//! interface name). Files written before reference v0.8.0 hold only the
//! container ID; they are represented with `ifname: None` and matched by
//! [`Store::lookup`], [`Store::release`] and GC through the reference's
//! fallback: an attachment owns the legacy reservations of its container ID
//! only when it owns no reservation in the current format.

mod disk;
mod error;
mod index;
mod lock;
mod mem;

use std::net::IpAddr;

pub use disk::{
    DEFAULT_DATA_DIR, DEFAULT_LOCK_TIMEOUT, DiskStore, DiskStoreOptions, LOCK_TIMEOUT_ENV,
    validate_network_name,
};
pub use error::StoreError;
pub use mem::MemStore;

/// Who an address is for: the `(CNI_CONTAINERID, CNI_IFNAME)` pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attachment<'a> {
    /// Container ID; surrounding whitespace is not significant (the
    /// reference trims it before writing and comparing).
    pub container_id: &'a str,
    /// Interface name inside the container.
    pub ifname: &'a str,
}

impl<'a> Attachment<'a> {
    /// An attachment from its two parts.
    pub fn new(container_id: &'a str, ifname: &'a str) -> Self {
        Self {
            container_id,
            ifname,
        }
    }

    /// The container ID as stored: whitespace-trimmed.
    pub fn trimmed_id(&self) -> &'a str {
        self.container_id.trim()
    }

    /// The reservation file content: `<trimmed id>\r\n<ifname>`.
    pub fn file_content(&self) -> String {
        format!("{}\r\n{}", self.trimmed_id(), self.ifname)
    }
}

/// One reserved address and its owner.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reservation {
    /// The reserved address.
    pub ip: IpAddr,
    /// The owner's container ID (trimmed).
    pub container_id: String,
    /// The owner's interface name; `None` for a legacy, ID-only reservation.
    pub ifname: Option<String>,
}

impl Reservation {
    /// Parses a reservation file's content the way the reference compares
    /// it: whitespace-trimmed, then `<id>\r\n<ifname>` or a bare `<id>`.
    pub fn parse(ip: IpAddr, content: &str) -> Self {
        let content = content.trim();
        match content.split_once("\r\n") {
            Some((id, ifname)) => Self {
                ip,
                container_id: id.to_string(),
                ifname: Some(ifname.to_string()),
            },
            None => Self {
                ip,
                container_id: content.to_string(),
                ifname: None,
            },
        }
    }

    /// Whether this is a current-format reservation of exactly `who`.
    pub fn is_exactly(&self, who: &Attachment<'_>) -> bool {
        self.ifname.as_deref() == Some(who.ifname) && self.container_id == who.trimmed_id()
    }

    /// Whether this is a legacy (ID-only) reservation of `who`'s container.
    pub fn is_legacy_of(&self, who: &Attachment<'_>) -> bool {
        self.ifname.is_none() && self.container_id == who.trimmed_id()
    }
}

/// The reservations `who` owns among `all`: its current-format ones, or,
/// when it has none, the legacy ones of its container ID.
pub fn owned_by(all: &[Reservation], who: &Attachment<'_>) -> Vec<IpAddr> {
    let exact: Vec<IpAddr> = all
        .iter()
        .filter(|r| r.is_exactly(who))
        .map(|r| r.ip)
        .collect();
    if !exact.is_empty() {
        return exact;
    }
    all.iter()
        .filter(|r| r.is_legacy_of(who))
        .map(|r| r.ip)
        .collect()
}

/// Storage of reservations and round-robin cursors for one network.
///
/// Implementations are used by one command at a time: a [`DiskStore`]
/// holds the network's lock for its whole lifetime, so every method runs
/// inside one critical section.
pub trait Store {
    /// Reserves `ip` for `who` if nobody holds it. `Ok(false)` means taken.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be written.
    fn reserve(&mut self, ip: IpAddr, who: &Attachment<'_>) -> Result<bool, StoreError>;

    /// Removes the reservation of `ip`, whoever owns it. `Ok(false)` when
    /// there was none.
    ///
    /// # Errors
    /// [`StoreError`] when the reservation exists but cannot be removed.
    fn remove(&mut self, ip: IpAddr) -> Result<bool, StoreError>;

    /// The reservation of `ip`, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    fn get(&self, ip: IpAddr) -> Result<Option<Reservation>, StoreError>;

    /// Every reservation, sorted by address. Cursor, lock and temporary
    /// files are never reservations.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    fn list(&self) -> Result<Vec<Reservation>, StoreError>;

    /// The round-robin cursor of range set `set_index`, if set and valid.
    ///
    /// # Errors
    /// [`StoreError`] when the cursor exists but cannot be read.
    fn last_reserved(&self, set_index: usize) -> Result<Option<IpAddr>, StoreError>;

    /// Moves the round-robin cursor of range set `set_index` to `ip`.
    ///
    /// # Errors
    /// [`StoreError`] when the cursor cannot be written.
    fn set_last_reserved(&mut self, set_index: usize, ip: IpAddr) -> Result<(), StoreError>;

    /// The addresses `who` owns (see [`owned_by`]), sorted.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    fn lookup(&self, who: &Attachment<'_>) -> Result<Vec<IpAddr>, StoreError> {
        Ok(owned_by(&self.list()?, who))
    }

    /// Releases every address `who` owns (see [`owned_by`]) and returns
    /// them. Releasing nothing is success. Every removal is attempted; the
    /// first failure is returned after the others were tried.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read or a removal fails.
    fn release(&mut self, who: &Attachment<'_>) -> Result<Vec<IpAddr>, StoreError> {
        let owned = self.lookup(who)?;
        let mut released = Vec::with_capacity(owned.len());
        let mut first_error = None;
        for ip in owned {
            match self.remove(ip) {
                Ok(true) => released.push(ip),
                Ok(false) => {}
                Err(e) => {
                    log::warn!("release of {ip} for {}: {e}", who.trimmed_id());
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(released),
        }
    }

    /// Releases `ip` only if it is reserved exactly for `who`; used to roll
    /// back a failed ADD without touching earlier reservations.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read or written.
    fn release_ip(&mut self, ip: IpAddr, who: &Attachment<'_>) -> Result<bool, StoreError> {
        match self.get(ip)? {
            Some(r) if r.is_exactly(who) => self.remove(ip),
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::ip;

    #[test]
    fn parse_current_and_legacy_content() {
        let r = Reservation::parse(ip("10.0.0.2"), "abc\r\neth0");
        assert_eq!(r.container_id, "abc");
        assert_eq!(r.ifname.as_deref(), Some("eth0"));
        let r = Reservation::parse(ip("10.0.0.2"), "  abc \n");
        assert_eq!(r.container_id, "abc");
        assert_eq!(r.ifname, None);
        let r = Reservation::parse(ip("10.0.0.2"), "");
        assert_eq!(r.container_id, "");
        assert_eq!(r.ifname, None);
    }

    #[test]
    fn file_content_trims_id() {
        assert_eq!(
            Attachment::new("   dummy\n ", "eth0").file_content(),
            "dummy\r\neth0"
        );
    }

    #[test]
    fn owned_by_prefers_current_format() {
        let all = vec![
            Reservation::parse(ip("10.0.0.2"), "abc\r\neth0"),
            Reservation::parse(ip("10.0.0.3"), "abc"),
            Reservation::parse(ip("10.0.0.4"), "abc\r\neth1"),
            Reservation::parse(ip("10.0.0.5"), "other\r\neth0"),
        ];
        assert_eq!(
            owned_by(&all, &Attachment::new("abc", "eth0")),
            [ip("10.0.0.2")]
        );
        assert_eq!(
            owned_by(&all, &Attachment::new(" abc ", "eth1")),
            [ip("10.0.0.4")]
        );
        // no current-format match: the legacy file of the ID is the fallback
        assert_eq!(
            owned_by(&all, &Attachment::new("abc", "eth9")),
            [ip("10.0.0.3")]
        );
        assert!(owned_by(&all, &Attachment::new("nobody", "eth0")).is_empty());
    }
}
