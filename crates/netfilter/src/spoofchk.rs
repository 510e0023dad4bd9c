//! bridge `macspoofchk` (containernetworking/plugins `pkg/link/spoofcheck.go`): in table `bridge nat`, base chain
//! `PREROUTING` (filter, prerouting, priority -300) jumps per host veth to
//! `cni-br-iface-<cid>-<ifname>`, which jumps to `...-mac`: accept (return) the container's
//! MAC, drop anything else. Every rule is commented `macspoofchk-<cid>-<ifname>`.
//! Each operation is one nf_tables transaction, after a native read of the chains concerned
//! (see [`crate::nft::Tx::apply`] and [`crate::nft::read_table`]).

use nftables::expr::MetaKey;
use nftables::types::{NfChainType, NfFamily, NfHook};

use crate::error::{Error, Result};
use crate::names;
use crate::nft::{self, Hook, ListedTable, Tx, expr};

const FAMILY: NfFamily = NfFamily::Bridge;
const TABLE: &str = "nat";
const PREROUTING: &str = "PREROUTING";
const CHAIN_PREFIX: &str = "cni-br-iface-";
const COMMENT_PREFIX: &str = "macspoofchk-";

fn prerouting_hook() -> Hook {
    Hook {
        kind: NfChainType::Filter,
        hook: NfHook::Prerouting,
        prio: -300,
    }
}

/// The transaction for [`setup`] given the current `bridge nat` listing.
pub fn setup_tx(
    current: Option<&ListedTable>,
    container_id: &str,
    ifname: &str,
    host_veth: &str,
    mac: &str,
) -> Tx {
    let iface = names::spoofchk_iface_chain(container_id, ifname);
    let mac_chain = names::spoofchk_mac_chain(container_id, ifname);
    let comment = names::spoofchk_comment(container_id, ifname);
    let mut tx = Tx::new();
    tx.add_table(FAMILY, TABLE)
        .add_chain(FAMILY, TABLE, PREROUTING, Some(prerouting_hook()))
        .add_chain(FAMILY, TABLE, &iface, None)
        .add_chain(FAMILY, TABLE, &mac_chain, None)
        .flush_chain(FAMILY, TABLE, &iface)
        .flush_chain(FAMILY, TABLE, &mac_chain);
    if let Some(table) = current {
        for rule in table.rules_in(PREROUTING) {
            if rule.comment.as_deref() == Some(comment.as_str()) {
                tx.delete_rule(FAMILY, TABLE, PREROUTING, rule.handle);
            }
        }
    }
    tx.add_rule(
        FAMILY,
        TABLE,
        PREROUTING,
        vec![
            expr::eq(expr::meta(MetaKey::Iifname), expr::string(host_veth)),
            expr::jump(&iface),
        ],
        Some(&comment),
    )
    .add_rule(
        FAMILY,
        TABLE,
        &iface,
        vec![expr::jump(&mac_chain)],
        Some(&comment),
    )
    .add_rule(
        FAMILY,
        TABLE,
        &mac_chain,
        vec![
            expr::eq(
                expr::payload("ether", "saddr"),
                expr::string(&mac.to_ascii_lowercase()),
            ),
            expr::ret(),
        ],
        Some(&comment),
    )
    .add_rule(
        FAMILY,
        TABLE,
        &mac_chain,
        vec![expr::drop()],
        Some(&comment),
    );
    tx
}

/// Whether the spoof-check table (`bridge nat`) exists: one native probe, no process.
///
/// # Errors
/// The kernel's error for the probe.
pub fn table_exists() -> Result<bool> {
    nft::table_exists(FAMILY, TABLE)
}

/// Installs (or replaces) the MAC spoof check for one attachment.
///
/// # Errors
/// nft failures with context.
pub fn setup(container_id: &str, ifname: &str, host_veth: &str, mac: &str) -> Result<()> {
    let current = nft::read_table(FAMILY, TABLE, &[PREROUTING], nft::Chains::Named(&[]))?;
    setup_tx(current.as_ref(), container_id, ifname, host_veth, mac).apply(&format!(
        "setting up macspoofchk for container {container_id} interface {ifname} in table bridge nat"
    ))
}

/// Adds the removal of the given chains (idempotent: add, flush all, then delete all).
fn remove_chains(tx: &mut Tx, chains: &[String]) {
    for c in chains {
        tx.add_chain(FAMILY, TABLE, c, None);
    }
    for c in chains {
        tx.flush_chain(FAMILY, TABLE, c);
    }
    for c in chains {
        tx.delete_chain(FAMILY, TABLE, c);
    }
}

/// The transaction for [`teardown`].
pub fn teardown_tx(table: &ListedTable, container_id: &str, ifname: &str) -> Tx {
    let comment = names::spoofchk_comment(container_id, ifname);
    let mut tx = Tx::new();
    for rule in table.rules_in(PREROUTING) {
        if rule.comment.as_deref() == Some(comment.as_str()) {
            tx.delete_rule(FAMILY, TABLE, PREROUTING, rule.handle);
        }
    }
    let chains: Vec<String> = [
        names::spoofchk_iface_chain(container_id, ifname),
        names::spoofchk_mac_chain(container_id, ifname),
    ]
    .into_iter()
    .filter(|c| table.has_chain(c))
    .collect();
    remove_chains(&mut tx, &chains);
    tx
}

/// Removes the spoof check of one attachment. Idempotent; one transaction.
///
/// # Errors
/// nft failures with context.
pub fn teardown(container_id: &str, ifname: &str) -> Result<()> {
    let iface = names::spoofchk_iface_chain(container_id, ifname);
    let mac_chain = names::spoofchk_mac_chain(container_id, ifname);
    let chains = [iface.as_str(), mac_chain.as_str()];
    let Some(table) = nft::read_table(FAMILY, TABLE, &[PREROUTING], nft::Chains::Named(&chains))?
    else {
        return Ok(());
    };
    teardown_tx(&table, container_id, ifname).apply(&format!(
        "removing macspoofchk of container {container_id} interface {ifname} from table bridge nat"
    ))
}

/// Verifies the spoof check of one attachment (jump for `host_veth`, MAC `mac`, drop).
///
/// # Errors
/// [`Error::Missing`] naming what is absent, or nft failures.
pub fn check(container_id: &str, ifname: &str, host_veth: &str, mac: &str) -> Result<()> {
    let table = nft::list_table(FAMILY, TABLE)?
        .ok_or_else(|| Error::Missing("table bridge nat not found".to_owned()))?;
    let comment = names::spoofchk_comment(container_id, ifname);
    let iface = names::spoofchk_iface_chain(container_id, ifname);
    let mac_chain = names::spoofchk_mac_chain(container_id, ifname);
    let commented = |chain: &str| -> Vec<nft::ListedRule> {
        table
            .rules_in(chain)
            .filter(|r| r.comment.as_deref() == Some(comment.as_str()))
            .cloned()
            .collect()
    };
    if !commented(PREROUTING)
        .iter()
        .any(|r| r.mentions(host_veth) && r.mentions(&iface))
    {
        return Err(Error::Missing(format!(
            "macspoofchk jump for {host_veth} to {iface} not found in bridge nat chain {PREROUTING}"
        )));
    }
    if !commented(&iface).iter().any(|r| r.mentions(&mac_chain)) {
        return Err(Error::Missing(format!(
            "jump to {mac_chain} not found in bridge nat chain {iface}"
        )));
    }
    let mac_rules = commented(&mac_chain);
    let mac = mac.to_ascii_lowercase();
    let accepts = mac_rules.first().is_some_and(|r| r.mentions(&mac));
    let drops = mac_rules
        .get(1)
        .is_some_and(|r| r.expr.to_string().contains("\"drop\""));
    if mac_rules.len() != 2 || !accepts || !drops {
        return Err(Error::Missing(format!(
            "bridge nat chain {mac_chain} does not hold exactly [ether saddr {mac} return, drop]"
        )));
    }
    Ok(())
}

/// The transaction for [`gc`].
pub fn gc_tx(table: &ListedTable, valid: &[(String, String)]) -> Tx {
    let comments: Vec<String> = valid
        .iter()
        .map(|(c, i)| names::spoofchk_comment(c, i))
        .collect();
    let mut keep_chains: Vec<String> = Vec::new();
    for (c, i) in valid {
        keep_chains.push(names::spoofchk_iface_chain(c, i));
        keep_chains.push(names::spoofchk_mac_chain(c, i));
    }
    let mut tx = Tx::new();
    for rule in table.rules_in(PREROUTING) {
        if let Some(c) = rule.comment.as_deref()
            && c.starts_with(COMMENT_PREFIX)
            && !comments.iter().any(|k| k == c)
        {
            tx.delete_rule(FAMILY, TABLE, PREROUTING, rule.handle);
        }
    }
    let stale: Vec<String> = table
        .chains
        .iter()
        .filter(|c| c.starts_with(CHAIN_PREFIX) && !keep_chains.contains(c))
        .cloned()
        .collect();
    remove_chains(&mut tx, &stale);
    tx
}

/// Removes spoof checks of attachments not in `valid` (`(container_id, ifname)`).
///
/// # Errors
/// nft failures with context.
pub fn gc(valid: &[(String, String)]) -> Result<()> {
    let Some(table) = nft::read_table(FAMILY, TABLE, &[PREROUTING], nft::Chains::All)? else {
        return Ok(());
    };
    gc_tx(&table, valid).apply("garbage-collecting macspoofchk chains in table bridge nat")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn golden_setup_transaction() {
        let tx = setup_tx(None, "ctr1", "eth0", "veth1234", "0A:58:0A:00:00:05");
        let v: Value = serde_json::from_str(&tx.to_json().unwrap()).unwrap();
        let c = v["nftables"].as_array().unwrap();
        assert_eq!(c.len(), 10);
        assert_eq!(
            c[1]["add"]["chain"],
            json!({"family":"bridge","table":"nat","name":"PREROUTING","type":"filter","hook":"prerouting","prio":-300,"policy":"accept"})
        );
        assert_eq!(
            c[6]["add"]["rule"],
            json!({"family":"bridge","table":"nat","chain":"PREROUTING","comment":"macspoofchk-ctr1-eth0","expr":[
            {"match":{"left":{"meta":{"key":"iifname"}},"right":"veth1234","op":"=="}},{"jump":{"target":"cni-br-iface-ctr1-eth0"}}]})
        );
        assert_eq!(
            c[8]["add"]["rule"]["expr"],
            json!([{"match":{"left":{"payload":{"protocol":"ether","field":"saddr"}},"right":"0a:58:0a:00:00:05","op":"=="}},{"return":null}])
        );
        assert_eq!(c[9]["add"]["rule"]["expr"], json!([{"drop":null}]));
    }

    #[test]
    fn gc_keeps_valid_and_removes_stale() {
        let t = ListedTable::parse(r#"{"nftables":[
          {"chain":{"name":"PREROUTING"}},{"chain":{"name":"cni-br-iface-a-eth0"}},{"chain":{"name":"cni-br-iface-a-eth0-mac"}},
          {"chain":{"name":"cni-br-iface-b-eth0"}},{"chain":{"name":"cni-br-iface-b-eth0-mac"}},{"chain":{"name":"other"}},
          {"rule":{"chain":"PREROUTING","handle":3,"comment":"macspoofchk-a-eth0","expr":[]}},
          {"rule":{"chain":"PREROUTING","handle":4,"comment":"macspoofchk-b-eth0","expr":[]}},
          {"rule":{"chain":"PREROUTING","handle":5,"comment":"unrelated","expr":[]}}]}"#).unwrap();
        let tx = gc_tx(&t, &[("a".to_owned(), "eth0".to_owned())]);
        let json = tx.to_json().unwrap();
        assert!(
            json.contains("\"handle\":4")
                && !json.contains("\"handle\":3")
                && !json.contains("\"handle\":5")
        );
        assert!(
            json.contains("cni-br-iface-b-eth0-mac")
                && !json.contains("cni-br-iface-a-eth0")
                && !json.contains("\"other\"")
        );
        assert_eq!(tx.len(), 1 + 3 * 2);
    }
}
