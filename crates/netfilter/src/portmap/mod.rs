//! Port mappings (the portmap plugin) with the reference layouts: iptables chains
//! `CNI-HOSTPORT-{DNAT,SETMARK,MASQ}` + per-container `CNI-DN-<hash>`, or nftables tables
//! `ip`/`ip6 cni_hostport` (with the CVE-2025-67499 local destination check and `masqAll`);
//! containernetworking/plugins `plugins/meta/portmap/portmap_{iptables,nftables}.go`.
//!
//! ADD and CHECK are [`crate::firewall::PortMapper`] methods of the chosen backend; DEL and
//! GC here clean up every backend.
//!
//! Beyond the reference: a re-ADD replaces the container's rules (no stale rules), DEL
//! needs neither mappings nor addresses, CHECK is per family, GC is implemented.

mod ipt;
mod nft;
mod types;

use crate::error::Result;
use crate::firewall;

pub use types::{Known, Owner, PortMapOptions, PortMapping, Protocol, Request};

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
    firewall::on_every(|fw| {
        fw.del_port_mappings(owner, known.and_then(|k| k.for_backend(fw.backend())))
    })
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
    firewall::on_every(|fw| fw.gc_port_mappings(network, &ids))
}
