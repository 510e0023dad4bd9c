//! Reference-compatible chain names and rule comments.
//!
//! The hashes must match containernetworking/plugins byte for byte so that a node can
//! switch between the Go and the Rust plugins and each removes the other's rules.

use sha2::{Digest, Sha512};

/// Lower-case hex of SHA-512 of `input`.
fn sha512_hex(input: &str) -> String {
    let digest = Sha512::digest(input.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// First `n` hex characters of SHA-512(`input`).
fn hash_prefix(input: &str, n: usize) -> String {
    let mut hex = sha512_hex(input);
    hex.truncate(n);
    hex
}

/// bridge ipMasq (iptables) chain: `CNI-` + 24 hex of SHA-512(network + container id).
pub fn masq_chain(network: &str, container_id: &str) -> String {
    format!(
        "CNI-{}",
        hash_prefix(&format!("{network}{container_id}"), 24)
    )
}

/// Comment on every bridge ipMasq iptables rule: `name: "<net>" id: "<cid>"`.
pub fn masq_comment(network: &str, container_id: &str) -> String {
    format!("name: \"{network}\" id: \"{container_id}\"")
}

/// portmap per-container DNAT chain: `CNI-DN-` + 21 hex of SHA-512(network + container id).
pub fn portmap_dnat_chain(network: &str, container_id: &str) -> String {
    format!(
        "CNI-DN-{}",
        hash_prefix(&format!("{network}{container_id}"), 21)
    )
}

/// Legacy portmap SNAT chain (plugins < v0.7), removed on DEL for upgrades.
pub fn portmap_legacy_snat_chain(network: &str, container_id: &str) -> String {
    format!(
        "CNI-SN-{}",
        hash_prefix(&format!("{network}{container_id}"), 21)
    )
}

/// Comment of portmap's entry rules in `CNI-HOSTPORT-DNAT`, cut like the reference
/// (more than 255 bytes: first 253 bytes + `...`).
pub fn portmap_dnat_comment(network: &str, container_id: &str) -> String {
    let comment = format!("dnat name: \"{network}\" id: \"{container_id}\"");
    truncate_comment(comment, 255, 253)
}

fn truncate_comment(mut comment: String, max: usize, keep: usize) -> String {
    if comment.len() > max {
        let mut cut = keep;
        while !comment.is_char_boundary(cut) {
            cut -= 1;
        }
        comment.truncate(cut);
        comment.push_str("...");
    }
    comment
}

/// nftables masquerade comment prefix identifying a network: 16 hex of SHA-512(network).
pub fn nft_masq_network_hash(network: &str) -> String {
    hash_prefix(network, 16)
}

/// nftables masquerade comment prefix identifying one attachment:
/// `H(network)-H(ifname ":" container id)`.
pub fn nft_masq_instance_hash(network: &str, ifname: &str, container_id: &str) -> String {
    format!(
        "{}-{}",
        nft_masq_network_hash(network),
        hash_prefix(&format!("{ifname}:{container_id}"), 16)
    )
}

/// Full nftables masquerade rule comment (at most 128 bytes, double quotes removed from
/// the human-readable part).
pub fn nft_masq_comment(network: &str, ifname: &str, container_id: &str) -> String {
    let mut comment = format!(
        "{}, net: {}, if: {}, id: {}",
        nft_masq_instance_hash(network, ifname, container_id),
        network.replace('"', ""),
        ifname.replace('"', ""),
        container_id.replace('"', "")
    );
    let mut cut = comment.len().min(128);
    while !comment.is_char_boundary(cut) {
        cut -= 1;
    }
    comment.truncate(cut);
    comment
}

/// macspoofchk chain for an attachment: `cni-br-iface-<cid>-<ifname>`.
pub fn spoofchk_iface_chain(container_id: &str, ifname: &str) -> String {
    format!("cni-br-iface-{container_id}-{ifname}")
}

/// macspoofchk MAC chain: `cni-br-iface-<cid>-<ifname>-mac`.
pub fn spoofchk_mac_chain(container_id: &str, ifname: &str) -> String {
    format!("{}-mac", spoofchk_iface_chain(container_id, ifname))
}

/// macspoofchk rule comment: `macspoofchk-<cid>-<ifname>`.
pub fn spoofchk_comment(container_id: &str, ifname: &str) -> String {
    format!("macspoofchk-{container_id}-{ifname}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG_ID: &str = "icee6giejonei6sohng6ahngee7laquohquee9shiGo7fohferakah3Feiyoolu2pei7ciPhoh7shaoX6vai3vuf0ahfaeng8yohb9ceu0daez5hashee8ooYai5wa3y";

    #[test]
    fn reference_chain_names() {
        assert_eq!(
            portmap_dnat_chain("testNetName", LONG_ID),
            "CNI-DN-bfd599665540dd91d5d28"
        );
        assert_eq!(
            portmap_dnat_chain("ccnet", "ctr1"),
            "CNI-DN-fe994aa6f38cd8a2c97f6"
        );
        assert_eq!(masq_chain("ccnet", "ctr1"), "CNI-fe994aa6f38cd8a2c97f61d7");
        assert_eq!(masq_chain("ccnet", "ctr1").len(), 28);
    }

    #[test]
    fn comments() {
        assert_eq!(masq_comment("n", "c"), "name: \"n\" id: \"c\"");
        assert_eq!(
            portmap_dnat_comment("ccnet", "ctr1"),
            "dnat name: \"ccnet\" id: \"ctr1\""
        );
        let long = portmap_dnat_comment("n", &"x".repeat(300));
        assert_eq!(long.len(), 256);
        assert!(long.ends_with("..."));
        let c = nft_masq_comment("net\"1", "eth0", "abc");
        assert!(c.starts_with(&format!("{}-", nft_masq_network_hash("net\"1"))));
        assert!(c.ends_with(", net: net1, if: eth0, id: abc"));
        assert_eq!(nft_masq_comment("n", "eth0", &"y".repeat(300)).len(), 128);
        assert_eq!(nft_masq_network_hash("n").len(), 16);
    }
}
