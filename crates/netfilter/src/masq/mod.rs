//! bridge `ipMasq`: masquerade traffic from a container to destinations outside its
//! subnet, with the reference's iptables (per-container `CNI-<hash>` chain) and nftables
//! (`inet cni_plugins_masquerade`) layouts. Setup and check are
//! [`crate::firewall::Masquerade`] methods of the chosen backend; teardown and GC here
//! clean up every backend.

mod ipt;
mod nft;
mod owner;

use ipnetwork::IpNetwork;

use crate::backend::Backend;
use crate::error::Result;
use crate::firewall;

pub use owner::MasqOwner;

/// Removes this attachment's masquerade rules from every backend present on the host.
/// Needs no addresses (the iptables POSTROUTING jumps are found by their target, the
/// nftables rules by their comment). Idempotent; keeps going after an error and reports
/// all of them. See [`teardown_known`] when the addresses are known.
///
/// # Errors
/// Collected tool failures.
pub fn teardown(owner: &MasqOwner<'_>) -> Result<()> {
    teardown_known(owner, None)
}

/// What a DEL may know of the attachment: the backend and addresses setup was given (a
/// DEL's `prevResult` holds the addresses).
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// The backend setup used (only it is given the addresses).
    pub backend: Backend,
    /// The container addresses with prefix.
    pub ips: &'a [IpNetwork],
}

impl Known<'_> {
    /// What `backend`'s teardown is given: the addresses, if `backend` did the setup.
    pub fn for_backend(&self, backend: Backend) -> Option<&[IpNetwork]> {
        (self.backend == backend).then_some(self.ips)
    }
}

/// [`teardown`], faster when `known` holds what setup was given: iptables then removes
/// the POSTROUTING jumps and the chain with one `iptables-restore` per family that reads
/// nothing. That restore is all-or-nothing and fails unless the table holds exactly what
/// setup left (the chain, one jump per address, nothing else jumping to the chain); then
/// the table is read and the rules found are removed, as [`teardown`] does. The result
/// is the same either way. Families, backends and tables without rules (an nf_tables
/// table that does not exist, found natively) cost no process.
///
/// # Errors
/// Collected tool failures.
pub fn teardown_known(owner: &MasqOwner<'_>, known: Option<&Known<'_>>) -> Result<()> {
    firewall::on_every(|fw| {
        fw.teardown_masq(owner, known.and_then(|k| k.for_backend(fw.backend())))
    })
}

/// Removes masquerade rules of `network` whose attachment is not in `valid`
/// (`(container_id, ifname)` pairs), in every backend present.
///
/// iptables chains are keyed by (network, container) only, so a chain survives while any
/// valid attachment has its container ID.
///
/// # Errors
/// Collected tool failures.
pub fn gc(network: &str, valid: &[(String, String)]) -> Result<()> {
    firewall::on_every(|fw| fw.gc_masq(network, valid))
}
