//! Network-namespace handles for CNI plugins.
//!
//! * [`NetNs`] is an open file descriptor of a network namespace (a bind mount under
//!   `/run/netns`, a `/proc/<pid>/ns/net` link, ...), verified to really be one.
//! * [`NetNs::enter`] switches the *calling thread* into the namespace and returns a
//!   [`NsGuard`] that switches back on drop (aborting the process if it cannot, so no code
//!   ever keeps running in the wrong namespace).
//! * [`NetNs::run`] runs a closure on a short-lived scoped thread inside the namespace; the
//!   calling thread is never moved.
//! * [`sysctl`] reads and writes `/proc/sys` keys (which are per network namespace for
//!   `net.*`).
//!
//! Processes spawned from a thread inherit that thread's network namespace, so spawning a
//! helper "inside" a namespace only needs [`NetNs::run`].

#![forbid(unsafe_code)]

mod error;
mod ns;
pub mod sysctl;

pub use error::{Error, Result};
pub use ns::{NetNs, NsGuard};
