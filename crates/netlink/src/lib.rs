//! A small synchronous `NETLINK_ROUTE` client for the CNI plugins.
//!
//! Built on `netlink-sys` (a plain blocking socket) and `netlink-packet-route` message
//! types; no async runtime. One [`Handle`] owns one socket, bound to the network namespace
//! that was current when it was opened ([`Handle::new`]) or to a given namespace
//! ([`Handle::new_in`]); after that no thread needs to be inside the namespace.
//!
//! The transport checks sequence numbers, waits for the kernel's ACK on every change,
//! uses a 64 KiB receive buffer, retries dumps the kernel marks `NLM_F_DUMP_INTR`, and sets
//! `SO_RCVTIMEO` so a wedged reply cannot hang the caller. Kernel errors keep their errno and
//! the operation they belong to ([`Error::is_not_found`], [`Error::is_exists`]).
//!
//! Request construction lives in pure functions (`msg` submodules of [`link`], [`addr`],
//! [`route`], [`bridge`]) so it is unit-tested without privileges.
//!
//! Some IPv4 sysctls have netlink equivalents used instead of `/proc/sys/net/ipv4`, whose
//! path lookup is slow on a node with many network namespaces (`cni_netns::sysctl`):
//! a link's IPv4 device configuration ([`Link::ipv4`], [`Handle::enable_ipv4_conf`]) and
//! the namespace-wide forwarding switch ([`Handle::forwarding`], `RTM_GETNETCONF`).

// Unsafe code is denied (workspace lint) everywhere but in `detach`, which forks.

pub mod addr;
pub mod bridge;
#[allow(
    unsafe_code,
    reason = "fork, dup2 and _exit for the detached deletion helper"
)]
pub mod detach;
mod error;
mod handle;
pub mod link;
mod mac;
mod netconf;
pub mod route;
mod socket;

pub use addr::{AddrFlags, Address, IpFamily};
pub use bridge::{PortFlags, VlanEntry};
pub use detach::{Deleted, delete_link_detached};
pub use error::{Error, Result};
pub use handle::Handle;
pub use link::{BridgeSpec, Ipv4ConfKey, Ipv4DevConf, Link, LinkId, OperState, VethSpec};
pub use mac::{MacAddr, ParseMacError};
pub use route::{Route, RouteLookup, RouteSpec};
