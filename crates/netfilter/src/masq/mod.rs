//! bridge `ipMasq`: masquerade traffic from a container to destinations outside its
//! subnet, with the reference's iptables (per-container `CNI-<hash>` chain) and nftables
//! (`inet cni_plugins_masquerade`) layouts.

mod ipt;
mod nft;

use ipnetwork::IpNetwork;

use crate::backend::Backend;
use crate::error::{Error, Result};

/// The attachment the masquerade rules belong to.
#[derive(Debug, Clone, Copy)]
pub struct MasqOwner<'a> {
    /// Network name (from the config).
    pub network: &'a str,
    /// Container ID.
    pub container_id: &'a str,
    /// Interface name inside the container (part of the nftables comment only).
    pub ifname: &'a str,
}

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
/// all of them.
///
/// # Errors
/// Collected tool failures.
pub fn teardown(owner: &MasqOwner<'_>) -> Result<()> {
    let mut errors = Vec::new();
    if let Err(e) = ipt::teardown(owner) {
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
