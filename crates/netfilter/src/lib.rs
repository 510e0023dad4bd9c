//! Netfilter programming for the CNI plugins, compatible with the reference Go plugins
//! (containernetworking/plugins): same chain and table names, rule layouts and comments,
//! so a node can switch between the implementations in place.
//!
//! * [`backend`]: the configured backend's name, iptables or nftables;
//! * [`firewall`]: the backend seam: one [`Firewall`] object per backend, chosen once
//!   from the configuration, with each feature's operations as methods;
//! * [`names`]: the reference's hashed chain names and comments;
//! * [`iptables`]: one `iptables-save` read and one atomic `iptables-restore --noflush`
//!   write per family and operation, with a bounded xtables lock wait; ADD of a new
//!   container and DEL with known mappings/addresses are one optimistic restore that
//!   reads nothing (falling back to read-compare-write when it is rejected);
//! * [`nft`]: one nf_tables transaction per operation, committed natively over nfnetlink
//!   ([`nftnl`]: one batch, no process) or, as a fallback, with `nft -j -f -` / `nft -f -`;
//!   the rules to replace or delete are read natively too (one dump per chain concerned);
//! * [`masq`]: bridge `ipMasq`; [`spoofchk`]: bridge `macspoofchk`; [`portmap`]: port
//!   mappings;
//! * [`netns_lock`]: a per-network-namespace `flock` serialising our own
//!   check-then-create of shared chains and rules among concurrent plugin processes;
//! * [`localnet`]: the shared filter rule that keeps containers away from the host's
//!   127.0.0.0/8 services once portmap has turned `route_localnet` on;
//! * [`conntrack`]: deleting UDP conntrack entries by port over `NETLINK_NETFILTER`
//!   (one dump for all ports and families, none in a namespace without entries);
//! * [`release_sockets`]: the final close of this crate's netfilter sockets, left to a
//!   detached helper so the plugin does not wait for nf_tables' deferred cleanup.

mod attachments;
mod error;
mod exec;
mod nfnl;
mod release;

pub mod backend;
pub mod conntrack;
pub mod firewall;
pub mod iptables;
pub mod localnet;
pub mod masq;
pub mod names;
pub mod netns_lock;
pub mod nft;
pub mod nftnl;
pub mod portmap;
pub mod spoofchk;

pub use backend::Backend;
pub use error::{Error, Result};
pub use firewall::Firewall;
pub use release::release_sockets;

/// How many netfilter tool processes (`nft`, `iptables-restore`, ...) this crate has
/// started on the calling thread: a diagnostic for tests and benchmarks.
pub fn tools_run() -> u64 {
    exec::tools_run()
}
