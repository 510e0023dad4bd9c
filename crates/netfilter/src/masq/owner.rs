//! [`MasqOwner`], shared by the backend seam ([`crate::firewall::Masquerade`]), [`super`]
//! and the two layouts ([`super::ipt`], [`super::nft`]); a leaf module, re-exported by
//! [`super`].

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
