//! Port mappings (the portmap plugin) with the reference layouts: iptables chains
//! `CNI-HOSTPORT-{DNAT,SETMARK,MASQ}` + per-container `CNI-DN-<hash>`, or nftables tables
//! `ip`/`ip6 cni_hostport` (with the CVE-2025-67499 local destination check and `masqAll`);
//! containernetworking/plugins `plugins/meta/portmap/portmap_{iptables,nftables}.go`.
//!
//! Beyond the reference: a re-ADD replaces the container's rules (no stale rules), DEL
//! needs neither mappings nor addresses, CHECK is per family, GC is implemented.

mod ipt;
mod nft;
mod types;

use ipnetwork::IpNetwork;

use crate::backend::Backend;
use crate::error::{Error, Result};

pub use types::{Known, Owner, PortMapOptions, PortMapping, Protocol};

/// First IPv4 and first IPv6 address of `ips`.
fn per_family(ips: &[IpNetwork]) -> Vec<IpNetwork> {
    let v4 = ips.iter().find(|n| n.is_ipv4());
    let v6 = ips.iter().find(|n| n.is_ipv6());
    v4.into_iter().chain(v6).copied().collect()
}

/// Installs the mappings for the container addresses `ips` (first IPv4 and first IPv6
/// are used), replacing whatever this container had before. One read and one atomic
/// write per family (iptables) or one transaction (nftables).
///
/// With `snat` and an IPv4 address (the case in which the plugin turns `route_localnet`
/// on), the localnet guard ([`crate::localnet`]) is made sure of first: nftables adds it
/// to the same transaction when it is missing, iptables creates it before the mappings.
///
/// # Errors
/// Tool failures with context; [`Error::LockTimeout`].
pub fn add(
    backend: Backend,
    owner: &Owner<'_>,
    opts: &PortMapOptions,
    mappings: &[PortMapping],
    ips: &[IpNetwork],
) -> Result<()> {
    let ips = per_family(ips);
    let guard = opts.snat && ips.iter().any(IpNetwork::is_ipv4);
    match backend {
        Backend::Iptables => {
            if guard {
                crate::localnet::ensure(Backend::Iptables)?;
            }
            ipt::add(owner, opts, mappings, &ips)
        }
        Backend::Nftables => {
            let guard = guard && crate::localnet::present_natively(Backend::Nftables) != Some(true);
            nft::add(owner, opts, mappings, &ips, guard)
        }
    }
}

/// Whether the iptables rules every container's chain relies on (the PREROUTING and
/// OUTPUT hooks into `CNI-HOSTPORT-DNAT` and, with `snat`, the mark, masquerade and
/// POSTROUTING rules for `opts`) are confirmed present in `family`'s nat table by reading
/// the chains natively over nfnetlink (iptables-nft only). ADD then writes the
/// container's rules without `-C` checks. `false` = not confirmed (absent, different,
/// legacy iptables, or unreadable).
pub fn iptables_shared_rules_confirmed(
    family: crate::iptables::Family,
    opts: &PortMapOptions,
) -> bool {
    ipt::shared_rules_confirmed(family, opts)
}

/// Removes every rule of the container from every backend present on the host (the
/// iptables chain name is derived, nftables rules are found by comment). Idempotent.
/// See [`del_known`] when the mappings and addresses are known.
///
/// # Errors
/// Collected tool failures.
pub fn del(owner: &Owner<'_>) -> Result<()> {
    del_known(owner, None)
}

/// [`del`], faster when `known` holds what ADD was given: iptables then removes the
/// container's entry rules and chain with one `iptables-restore` per family that reads
/// nothing. That restore is all-or-nothing and fails unless the table holds exactly
/// what ADD left; then the table is read and whatever of the container is found is
/// removed, as [`del`] does. The result is the same either way. Families, backends and
/// tables without rules (an nf_tables table that does not exist, found natively) cost
/// no process.
///
/// # Errors
/// Collected tool failures.
pub fn del_known(owner: &Owner<'_>, known: Option<&Known<'_>>) -> Result<()> {
    let ips = known.map(|k| per_family(k.ips));
    let known = known
        .zip(ips.as_deref())
        .map(|(k, ips)| Known { ips, ..*k });
    let mut errors = Vec::new();
    if let Err(e) = ipt::del(owner, known.as_ref()) {
        errors.push(e);
    }
    if let Err(e) = nft::del(owner) {
        errors.push(e);
    }
    Error::collect(errors)
}

/// Verifies, per family of `ips`, that every rule [`add`] installs is present.
///
/// # Errors
/// [`Error::Missing`] naming the family and the missing rule, or a tool failure.
pub fn check(
    backend: Backend,
    owner: &Owner<'_>,
    opts: &PortMapOptions,
    mappings: &[PortMapping],
    ips: &[IpNetwork],
) -> Result<()> {
    let ips = per_family(ips);
    match backend {
        Backend::Iptables => ipt::check(owner, opts, mappings, &ips),
        Backend::Nftables => nft::check(owner, opts, mappings, &ips),
    }
}

/// Removes the rules of containers of `network` not in `valid` (`(container_id, ifname)`)
/// from every backend present.
///
/// nftables rules carry only the container ID (reference layout), so there GC removes
/// rules of every container ID not in `valid`, whichever network created them.
///
/// # Errors
/// Collected tool failures.
pub fn gc(network: &str, valid: &[(String, String)]) -> Result<()> {
    let ids: Vec<&str> = valid.iter().map(|(c, _)| c.as_str()).collect();
    let mut errors = Vec::new();
    if let Err(e) = ipt::gc(network, &ids) {
        errors.push(e);
    }
    if let Err(e) = nft::gc(&ids) {
        errors.push(e);
    }
    Error::collect(errors)
}
