//! The types of a port mapping request, shared by the backend seam
//! ([`crate::firewall::PortMapper`]), [`super`] and the two layouts ([`super::ipt`],
//! [`super::nft`]); a leaf module, re-exported by [`super`].

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
    pub(super) fn conditions(&self, ip: IpAddr) -> &[String] {
        if ip.is_ipv4() {
            &self.conditions_v4
        } else {
            &self.conditions_v6
        }
    }

    pub(super) fn mark(&self) -> u32 {
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

/// What ADD installs for a container and CHECK verifies: the plugin options, the
/// mappings and the container addresses.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The plugin options.
    pub options: &'a PortMapOptions,
    /// The port mappings.
    pub mappings: &'a [PortMapping],
    /// The container addresses; the first IPv4 and the first IPv6 one are mapped.
    pub ips: &'a [IpNetwork],
}

impl<'a> Request<'a> {
    /// The request for `mappings` with `options` to the container addresses `ips`.
    pub fn new(
        options: &'a PortMapOptions,
        mappings: &'a [PortMapping],
        ips: &'a [IpNetwork],
    ) -> Request<'a> {
        Request {
            options,
            mappings,
            ips,
        }
    }

    /// The mapped addresses: the first IPv4 and the first IPv6 one of `ips`.
    pub(super) fn mapped_ips(&self) -> Vec<IpNetwork> {
        let v4 = self.ips.iter().find(|n| n.is_ipv4());
        let v6 = self.ips.iter().find(|n| n.is_ipv6());
        v4.into_iter().chain(v6).copied().collect()
    }

    /// Whether ADD makes sure of the localnet guard ([`crate::localnet`]) first: with
    /// `snat` and an IPv4 address, the case in which the plugin turns `route_localnet`
    /// on.
    pub fn needs_localnet_guard(&self) -> bool {
        self.options.snat && self.ips.iter().any(IpNetwork::is_ipv4)
    }
}

/// What a DEL may know of the attachment: the backend its ADD used and what that ADD was
/// given (runtimes pass `runtimeConfig.portMappings` and `prevResult` on DEL too).
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// The backend ADD used (only it is given `request`).
    pub backend: Backend,
    /// What ADD was given.
    pub request: Request<'a>,
}

impl Known<'_> {
    /// What `backend`'s DEL is given: the request, if `backend` did the ADD.
    pub fn for_backend(&self, backend: Backend) -> Option<&Request<'_>> {
        (self.backend == backend).then_some(&self.request)
    }
}
