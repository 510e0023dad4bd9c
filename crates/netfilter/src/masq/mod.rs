//! bridge `ipMasq`: masquerade traffic from a container to destinations outside its
//! subnet, with the reference's iptables (per-container `CNI-<hash>` chain) and nftables
//! (`inet cni_plugins_masquerade`) layouts.

mod ipt;
mod nft;
mod owner;

use ipnetwork::IpNetwork;

use crate::backend::Backend;
use crate::error::{Error, Result};

pub use owner::MasqOwner;

/// Installs (or replaces) the masquerade rules for `ips` (container addresses with
/// prefix). One `iptables-save` + one `iptables-restore` per family, or one nft listing +
/// one transaction.
///
/// # Errors
/// Tool failures (with context), [`Error::LockTimeout`].
pub fn setup(backend: Backend, owner: &MasqOwner<'_>, ips: &[IpNetwork]) -> Result<()> {
    match backend {
        Backend::Iptables => ipt::setup(owner, ips),
        Backend::Nftables => nft::setup(owner, ips),
    }
}

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

/// What a DEL may know of the attachment: the backend and addresses [`setup`] was
/// given (a DEL's `prevResult` holds the addresses).
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// The backend setup used (the iptables fast path is tried only for iptables).
    pub backend: Backend,
    /// The container addresses with prefix.
    pub ips: &'a [IpNetwork],
}

/// [`teardown`], faster when `known` holds what [`setup`] was given: iptables then removes the POSTROUTING jumps and the chain with one
/// `iptables-restore` per family that reads nothing. That restore is all-or-nothing and
/// fails unless the table holds exactly what [`setup`] left (the chain, one jump per
/// address, nothing else jumping to the chain); then the table is read and the rules
/// found are removed, as [`teardown`] does. The result is the same either way.
/// Families, backends and tables without rules (an nf_tables table that does not
/// exist, found natively) cost no process.
///
/// # Errors
/// Collected tool failures.
pub fn teardown_known(owner: &MasqOwner<'_>, known: Option<&Known<'_>>) -> Result<()> {
    let ips = known
        .filter(|k| k.backend == Backend::Iptables)
        .map(|k| k.ips);
    let mut errors = Vec::new();
    if let Err(e) = ipt::teardown(owner, ips) {
        errors.push(e);
    }
    if let Err(e) = nft::teardown(owner) {
        errors.push(e);
    }
    Error::collect(errors)
}

/// Verifies that every rule [`setup`] would install is present.
///
/// # Errors
/// [`Error::Missing`] naming the missing chain/rule, or a tool failure.
pub fn check(backend: Backend, owner: &MasqOwner<'_>, ips: &[IpNetwork]) -> Result<()> {
    match backend {
        Backend::Iptables => ipt::check(owner, ips),
        Backend::Nftables => nft::check(owner, ips),
    }
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
    let mut errors = Vec::new();
    if let Err(e) = ipt::gc(network, valid) {
        errors.push(e);
    }
    if let Err(e) = nft::gc(network, valid) {
        errors.push(e);
    }
    Error::collect(errors)
}
