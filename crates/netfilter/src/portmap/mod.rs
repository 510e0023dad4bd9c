//! Port mappings (the portmap plugin) with the reference layouts: iptables chains
//! `CNI-HOSTPORT-{DNAT,SETMARK,MASQ}` + per-container `CNI-DN-<hash>` (reference-behaviour
//! 4.5), or nftables tables `ip`/`ip6 cni_hostport` (4.6, with the CVE-2025-67499 local
//! destination check and `masqAll`).
//!
//! Beyond the reference: a re-ADD replaces the container's rules (no stale rules), DEL
//! needs neither mappings nor addresses, CHECK is per family, GC is implemented.

mod ipt;
mod nft;

use std::fmt;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::backend::Backend;
use crate::error::{Error, Result};

/// Transport protocol of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// SCTP.
    Sctp,
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Parses `tcp`, `udp` or `sctp` (any case).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the value.
    pub fn parse(value: &str) -> Result<Protocol> {
        match value.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err(Error::Invalid(format!(
                "unsupported protocol \"{value}\" (expected tcp, udp or sctp)"
            ))),
        }
    }

    /// Lower-case name as used by iptables and nft.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Sctp => "sctp",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `runtimeConfig.portMappings` entry, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    /// Port on the host (1..=65535).
    pub host_port: u16,
    /// Port in the container (1..=65535).
    pub container_port: u16,
    /// Protocol.
    pub protocol: Protocol,
    /// `None` = every local address. An address restricts the mapping to its family;
    /// an unspecified one (`0.0.0.0`, `::`) selects the family without `-d`.
    pub host_ip: Option<IpAddr>,
}

impl PortMapping {
    /// Whether the mapping applies to the family of `container_ip`.
    pub fn applies_to(&self, container_ip: IpAddr) -> bool {
        self.host_ip
            .is_none_or(|h| h.is_ipv4() == container_ip.is_ipv4())
    }

    /// The specific destination address (`None` for any / unspecified).
    pub fn destination(&self) -> Option<IpAddr> {
        self.host_ip.filter(|h| !h.is_unspecified())
    }
}

/// Plugin options that shape the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapOptions {
    /// Masquerade hairpin and localhost traffic (default true).
    pub snat: bool,
    /// Masquerade traffic to mapped ports from any source.
    pub masq_all: bool,
    /// iptables: mark bit `1 << bit` (0..=31, default 13).
    pub mark_masq_bit: u8,
    /// iptables: jump here instead of `CNI-HOSTPORT-SETMARK` (then SETMARK/MASQ chains
    /// are not created).
    pub external_set_mark_chain: Option<String>,
    /// Extra match tokens for IPv4 (iptables args or nft expression words).
    pub conditions_v4: Vec<String>,
    /// Extra match tokens for IPv6.
    pub conditions_v6: Vec<String>,
}

impl Default for PortMapOptions {
    fn default() -> Self {
        PortMapOptions {
            snat: true,
            masq_all: false,
            mark_masq_bit: 13,
            external_set_mark_chain: None,
            conditions_v4: Vec::new(),
            conditions_v6: Vec::new(),
        }
    }
}

impl PortMapOptions {
    fn conditions(&self, ip: IpAddr) -> &[String] {
        if ip.is_ipv4() {
            &self.conditions_v4
        } else {
            &self.conditions_v6
        }
    }

    fn mark(&self) -> u32 {
        1u32 << (self.mark_masq_bit & 31)
    }
}

/// Whose rules these are. iptables chains hash network + container ID; nftables rules
/// carry the container ID as comment (as the reference does).
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// Network name.
    pub network: &'a str,
    /// Container ID.
    pub container_id: &'a str,
}

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

/// What a DEL may know of the attachment: the backend, options, mappings and container
/// addresses its ADD was given (runtimes pass `runtimeConfig.portMappings` and
/// `prevResult` on DEL too).
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// The backend ADD used (the iptables fast path is tried only for iptables).
    pub backend: Backend,
    /// The plugin options.
    pub options: &'a PortMapOptions,
    /// The port mappings.
    pub mappings: &'a [PortMapping],
    /// The container addresses (first IPv4 and first IPv6 are the mapped ones).
    pub ips: &'a [IpNetwork],
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
