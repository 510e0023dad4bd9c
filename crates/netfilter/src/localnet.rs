//! The localnet guard: a shared filter rule that drops packets addressed to 127.0.0.0/8
//! which arrive on any interface but `lo` and are not part of a connection the host
//! itself established or DNAT-ed.
//!
//! Why: portmap sets `net.ipv4.conf.<bridge>.route_localnet=1` (as the reference does) so
//! that the host can reach a container through `127.0.0.1:<hostPort>` (the DNAT-ed
//! connection leaves with source 127.0.0.1, which needs the switch). The same switch makes
//! the host accept packets to 127.0.0.0/8 that arrive *on the bridge*, i.e. from the
//! containers, so a container with `CAP_NET_RAW` (the default in containerd and Docker)
//! could reach services the host binds to 127.0.0.1 only. This is the exposure Kubernetes
//! closed in kube-proxy for CVE-2020-8558 (kubernetes/kubernetes#92315) with the same
//! kind of rule. Replies of host-to-container connections through 127.0.0.1 are
//! `ESTABLISHED`, and packets that a DNAT rule sent to 127.0.0.0/8 carry the `DNAT`
//! status, so neither is dropped.
//!
//! The rule, by backend (IPv4 only: IPv6 has no `route_localnet`; `::1` from outside is
//! always a martian):
//! * iptables: `-I INPUT 1 -d 127.0.0.0/8 ! -i lo -m comment --comment "CNI portfwd
//!   localnet guard" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP` in table
//!   `filter`;
//! * nftables: table `ip cni_localnet_guard`, base chain `input` (filter hook input,
//!   priority 0) holding `iifname != "lo" ip daddr 127.0.0.0/8 ct state & (established |
//!   related) == 0 ct status & dnat == 0 drop comment "CNI portfwd localnet guard"` (`nft
//!   list` prints the two flag matches as `ct state ! established,related ct status !
//!   dnat`; bit tests, no anonymous set, so the kernel holds the same rule however it is
//!   listed); a table of its own, so the portmap tables stay exactly the reference's.
//!
//! It is shared state, created only when it is missing and removed by nothing (it only
//! drops traffic that no configuration of these plugins needs, so it stays as long as
//! any bridge may have `route_localnet` on). The common path costs no process: the rule
//! is looked up natively by its comment (one `NFT_MSG_GETRULE` dump of one chain). When
//! it is missing, iptables checks and inserts it under the network-namespace lock
//! ([`crate::netns_lock`]; two ADDs must not both insert it), with one more
//! `iptables-restore` per ADD when it cannot be confirmed natively (legacy iptables);
//! nftables re-creates the chain's one rule atomically, inside portmap's own ADD
//! transaction ([`add_nftables_ops`]), and needs no lock.

use nftables::types::{NfChainType, NfFamily, NfHook};

use crate::error::{Error, Result};
use crate::iptables::{self, Family, Script, native};
use crate::netns_lock::NetnsLock;
use crate::nft::{Hook, Tx, expr};

/// The comment that identifies the guard rule in both backends.
pub const GUARD_COMMENT: &str = "CNI portfwd localnet guard";
/// The iptables table and chain of the guard rule.
pub const IPT_TABLE: &str = "filter";
/// The iptables chain of the guard rule (it is inserted first).
pub const IPT_CHAIN: &str = "INPUT";
/// The nftables table (family `ip`) of the guard rule.
pub const NFT_TABLE: &str = "cni_localnet_guard";
/// The base chain of [`NFT_TABLE`].
pub const NFT_CHAIN: &str = "input";

/// The nft match words of the guard rule (before its `drop` verdict).
const NFT_MATCH: &str = "iifname != \"lo\" ip daddr 127.0.0.0/8 ct state & (established | related) == 0 ct status & dnat == 0";

/// The guard rule as iptables arguments (without `-I INPUT 1`).
pub fn iptables_rule() -> Vec<String> {
    [
        "-d",
        "127.0.0.0/8",
        "!",
        "-i",
        "lo",
        "-m",
        "comment",
        "--comment",
        GUARD_COMMENT,
        "-m",
        "conntrack",
        "!",
        "--ctstate",
        "RELATED,ESTABLISHED,DNAT",
        "-j",
        "DROP",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Whether the iptables guard rule is present, answered natively (iptables-nft). `None`
/// when that cannot be told without a process (legacy iptables, or the native read
/// failed).
pub fn iptables_present_natively() -> Option<bool> {
    if !iptables::is_nft_variant(Family::V4) {
        return None;
    }
    let comment = native::Want::comment(GUARD_COMMENT);
    native_answer(
        "iptables",
        IPT_TABLE,
        IPT_CHAIN,
        native::chain_has_rule(Family::V4, IPT_TABLE, IPT_CHAIN, |rule| {
            native::expressions(rule)
                .iter()
                .any(|e| native::is_wanted_match(e, &comment))
        }),
    )
}

/// Whether the nftables guard rule is present, answered natively. `None` when the
/// native read failed.
pub fn nftables_present_natively() -> Option<bool> {
    native_answer(
        "nftables",
        NFT_TABLE,
        NFT_CHAIN,
        native::chain_has_rule(Family::V4, NFT_TABLE, NFT_CHAIN, |rule| {
            native::nft_comment(rule).as_deref() == Some(GUARD_COMMENT)
        }),
    )
}

fn native_answer(
    backend: &str,
    table: &str,
    chain: &str,
    found: std::io::Result<bool>,
) -> Option<bool> {
    match found {
        Ok(found) => Some(found),
        Err(e) => {
            log::debug!("cannot read {backend} chain {chain} of table {table} natively: {e}");
            None
        }
    }
}

/// Makes sure the iptables guard rule exists in the calling thread's network namespace,
/// creating it when it is missing (under the namespace lock).
///
/// # Errors
/// The lock wait running out ([`Error::NetnsLockTimeout`]) or the tool failing while the
/// rule is created.
pub fn ensure_iptables() -> Result<()> {
    if iptables_present_natively() == Some(true) {
        return Ok(());
    }
    let _lock = NetnsLock::acquire("ensuring the localnet guard rule in filter INPUT")?;
    let rule = iptables_rule();
    let mut check = Script::new(IPT_TABLE);
    check.check(IPT_CHAIN, &rule);
    if iptables::try_restore(Family::V4, &check, "checking the localnet guard rule")? {
        return Ok(());
    }
    let mut insert = Script::new(IPT_TABLE);
    insert.insert(IPT_CHAIN, 1, &rule);
    iptables::restore(
        Family::V4,
        &insert,
        "inserting the localnet guard rule into filter INPUT",
    )
}

/// The transaction that (re)creates the nftables guard ([`add_nftables_ops`]).
pub fn nftables_tx() -> Tx {
    let mut tx = Tx::new();
    add_nftables_ops(&mut tx);
    tx
}

/// Appends to `tx` the commands that (re)create the nftables guard: table and base chain
/// if absent, the chain flushed and its one rule added, so concurrent transactions all
/// end with exactly one rule (no lock needed). The rule is nft text
/// ([`Tx::add_rule_with_raw`]).
pub fn add_nftables_ops(tx: &mut Tx) {
    tx.add_table(NfFamily::IP, NFT_TABLE)
        .add_chain(
            NfFamily::IP,
            NFT_TABLE,
            NFT_CHAIN,
            Some(Hook {
                kind: NfChainType::Filter,
                hook: NfHook::Input,
                prio: 0,
            }),
        )
        .flush_chain(NfFamily::IP, NFT_TABLE, NFT_CHAIN)
        .add_rule_with_raw(
            NfFamily::IP,
            NFT_TABLE,
            NFT_CHAIN,
            &[NFT_MATCH.to_owned()],
            vec![expr::drop()],
            Some(GUARD_COMMENT),
        );
}

/// Makes sure the nftables guard exists in the calling thread's network namespace,
/// creating it when it is missing (one transaction, no lock: see [`add_nftables_ops`]).
///
/// # Errors
/// The transaction failing.
pub fn ensure_nftables() -> Result<()> {
    if nftables_present_natively() == Some(true) {
        return Ok(());
    }
    nftables_tx()
        .apply("creating the localnet guard in table ip cni_localnet_guard")
        .map_err(|e| match e {
            Error::Invalid(why) => Error::Invalid(format!("localnet guard: {why}")),
            other => other,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iptables_rule_renders_as_iptables_save_prints_it() {
        let mut s = Script::new(IPT_TABLE);
        s.insert(IPT_CHAIN, 1, &iptables_rule());
        assert_eq!(
            s.render(),
            "*filter\n-I INPUT 1 -d 127.0.0.0/8 ! -i lo -m comment --comment \"CNI portfwd localnet guard\" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP\nCOMMIT\n"
        );
    }

    #[test]
    fn nftables_tx_is_one_text_transaction_with_one_rule() {
        let tx = nftables_tx();
        assert!(tx.has_raw());
        let script = tx.to_script().expect("renders");
        assert_eq!(
            script,
            "add table ip cni_localnet_guard\n\
             add chain ip cni_localnet_guard input { type filter hook input priority 0; policy accept; }\n\
             flush chain ip cni_localnet_guard input\n\
             add rule ip cni_localnet_guard input iifname != \"lo\" ip daddr 127.0.0.0/8 ct state & (established | related) == 0 ct status & dnat == 0 drop comment \"CNI portfwd localnet guard\"\n"
        );
    }
}
