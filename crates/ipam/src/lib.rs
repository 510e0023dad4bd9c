//! host-local IPAM: the allocation engine and, in [`host_local`], the
//! `host-local` plugin built on it.
//!
//! * [`range`], [`range_set`]: configuration ranges, canonicalized and
//!   validated with the reference's messages;
//! * [`iter`], [`allocator`], [`allocate`]: the round-robin allocation of one
//!   address per range set, requested addresses and rollback;
//! * [`store`]: the [`Store`] trait, the reference-compatible [`DiskStore`]
//!   (`<dataDir>/<network>/<ip>`, `last_reserved_ip.<n>`, `lock`) and the
//!   in-memory [`MemStore`];
//! * [`mod@gc`], [`status`], [`mod@check`]: the GC, STATUS and CHECK commands;
//! * [`resolv`]: `resolvConf` parsing;
//! * [`ip`]: address arithmetic and Go-compatible address text;
//! * [`host_local`]: the `host-local` plugin itself (its configuration, its
//!   commands and their CNI error codes); `plugins/host-local` is only its
//!   `main`.
//!
//! The behaviour follows containernetworking/plugins
//! `plugins/ipam/host-local` so a node can switch between the two in place;
//! the differences are listed where they occur (one lock per command,
//! atomic reservation files, deterministic requested-address assignment,
//! duplicate checks for requested addresses, GC and STATUS).

pub mod allocate;
pub mod allocator;
pub mod check;
pub mod gc;
pub mod host_local;
pub mod ip;
pub mod iter;
pub mod range;
pub mod range_set;
pub mod resolv;
pub mod status;
pub mod store;

pub use allocate::{AddError, allocate_all, assign_requested};
pub use allocator::{AllocError, Allocation, Allocator};
pub use check::{CheckError, check};
pub use gc::{GcError, gc};
pub use range::{Range, RangeError, RangeSpec};
pub use range_set::{NotInSet, RangeSet, RangeSetError};
pub use resolv::ResolvConf;
pub use status::StatusError;
pub use store::{
    Attachment, DiskStore, DiskStoreOptions, MemStore, Reservation, Store, StoreError,
};

/// Helpers shared by the unit tests of every module.
#[cfg(test)]
mod test_util {
    use std::net::IpAddr;

    /// `s`, an address literal of a test, parsed.
    pub(crate) fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }
}
