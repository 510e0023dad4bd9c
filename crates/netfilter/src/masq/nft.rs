//! nftables layout of ipMasq, as the reference programs it (containernetworking/plugins
//! `pkg/ip/ipmasq_nftables_linux.go`): table `inet cni_plugins_masquerade`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use nftables::types::{NfChainType, NfFamily, NfHook};

use super::MasqOwner;
use crate::attachments::Marker;
use crate::error::{Error, Result};
use crate::firewall::{Masquerade, Nftables};
use crate::names;
use crate::nft::{self, Hook, ListedTable, Tx, expr};

/// Table name.
pub(super) const TABLE: &str = "cni_plugins_masquerade";
/// Regular chain holding one rule per container address.
pub(super) const CHECKS: &str = "masq_checks";
const POSTROUTING: &str = "postrouting";
const FAMILY: NfFamily = NfFamily::INet;

fn ip_word(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() { "ip" } else { "ip6" }
}

/// Adds the table, chains and the rewritten `postrouting` chain to `tx`.
fn skeleton(tx: &mut Tx) {
    tx.add_table(FAMILY, TABLE)
        .add_chain(FAMILY, TABLE, CHECKS, None)
        .add_chain(
            FAMILY,
            TABLE,
            POSTROUTING,
            Some(Hook {
                kind: NfChainType::NAT,
                hook: NfHook::Postrouting,
                prio: 100,
            }),
        )
        .flush_chain(FAMILY, TABLE, POSTROUTING);
    // Multicast destinations return, per family; everything else goes to the checks.
    let multicast = [
        IpAddr::V4(Ipv4Addr::new(224, 0, 0, 0)),
        IpAddr::V6(Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0)),
    ];
    for net in multicast {
        let len = if net.is_ipv4() { 4 } else { 8 };
        let daddr = expr::payload(ip_word(net), "daddr");
        let rule = vec![expr::eq(daddr, expr::prefix(net, len)), expr::ret()];
        tx.add_rule(FAMILY, TABLE, POSTROUTING, rule, None);
    }
    tx.add_rule(FAMILY, TABLE, POSTROUTING, vec![expr::goto(CHECKS)], None);
}

/// The transaction for [`Masquerade::setup_masq`] given the current listing.
pub(super) fn setup_tx(
    current: Option<&ListedTable>,
    owner: &MasqOwner<'_>,
    ips: &[IpNetwork],
) -> Tx {
    let mut tx = Tx::new();
    skeleton(&mut tx);
    let prefix = names::nft_masq_instance_hash(owner.network, owner.ifname, owner.container_id);
    if let Some(table) = current {
        for rule in table.rules_in(CHECKS) {
            if rule
                .comment
                .as_deref()
                .is_some_and(|c| c.starts_with(&prefix))
            {
                tx.delete_rule(FAMILY, TABLE, CHECKS, rule.handle);
            }
        }
    }
    let comment = names::nft_masq_comment(owner.network, owner.ifname, owner.container_id);
    for net in ips {
        let word = ip_word(net.ip());
        tx.add_rule(
            FAMILY,
            TABLE,
            CHECKS,
            vec![
                expr::eq(expr::payload(word, "saddr"), expr::addr(net.ip())),
                expr::ne(
                    expr::payload(word, "daddr"),
                    expr::prefix(net.network(), net.prefix()),
                ),
                expr::masquerade(),
            ],
            Some(&comment),
        );
    }
    tx
}

/// The rules of `masq_checks` (handles and comments), natively; `None` when the table
/// does not exist.
fn read_checks() -> Result<Option<ListedTable>> {
    nft::read_table(FAMILY, TABLE, &[CHECKS], nft::Chains::Named(&[]))
}

/// The [`Marker`] of the attachment's masquerade rules.
fn marker(owner: &MasqOwner<'_>) -> Option<Marker> {
    Marker::of(
        "masquerade",
        &[owner.network, owner.ifname, owner.container_id],
    )
}

fn teardown_tx(table: &ListedTable, keep: impl Fn(&str) -> bool, prefix: &str) -> Tx {
    let mut tx = Tx::new();
    for rule in table.rules_in(CHECKS) {
        if let Some(c) = rule.comment.as_deref()
            && c.starts_with(prefix)
            && !keep(c)
        {
            tx.delete_rule(FAMILY, TABLE, CHECKS, rule.handle);
        }
    }
    tx
}

impl Masquerade for Nftables {
    fn setup_masq(&self, owner: &MasqOwner<'_>, ips: &[IpNetwork]) -> Result<()> {
        // A first ADD of the attachment has nothing to replace: no read of masq_checks.
        let first = marker(owner).is_some_and(|m| m.mark_new());
        let current = if first { None } else { read_checks()? };
        setup_tx(current.as_ref(), owner, ips).apply(&format!(
            "setting up masquerading for container {} in table inet {TABLE}",
            owner.container_id
        ))
    }

    fn teardown_masq(&self, owner: &MasqOwner<'_>, _ips: Option<&[IpNetwork]>) -> Result<()> {
        let Some(table) = read_checks()? else {
            return Ok(());
        };
        let prefix = names::nft_masq_instance_hash(owner.network, owner.ifname, owner.container_id);
        teardown_tx(&table, |_| false, &prefix).apply(&format!(
            "removing masquerade rules of container {} from table inet {TABLE}",
            owner.container_id
        ))?;
        if let Some(m) = marker(owner) {
            m.clear();
        }
        Ok(())
    }

    fn check_masq(&self, owner: &MasqOwner<'_>, ips: &[IpNetwork]) -> Result<()> {
        let table = nft::list_table(FAMILY, TABLE)?
            .ok_or_else(|| Error::Missing(format!("table inet {TABLE} not found")))?;
        if !table.has_chain(POSTROUTING) {
            return Err(Error::Missing(format!(
                "chain {POSTROUTING} not found in table inet {TABLE}"
            )));
        }
        let comment = names::nft_masq_comment(owner.network, owner.ifname, owner.container_id);
        for net in ips {
            let ip = net.ip().to_string();
            let found = table
                .rules_in(CHECKS)
                .any(|r| r.comment.as_deref() == Some(comment.as_str()) && r.mentions(&ip));
            if !found {
                return Err(Error::Missing(format!(
                    "masquerade rule for {ip} (comment {comment:?}) not found in inet {TABLE} chain {CHECKS}"
                )));
            }
        }
        Ok(())
    }

    fn gc_masq(&self, network: &str, valid: &[(String, String)]) -> Result<()> {
        let Some(table) = read_checks()? else {
            return Ok(());
        };
        let keep: Vec<String> = valid
            .iter()
            .map(|(cid, ifname)| names::nft_masq_comment(network, ifname, cid))
            .collect();
        let prefix = format!("{}-", names::nft_masq_network_hash(network));
        teardown_tx(&table, |c| keep.iter().any(|k| k == c), &prefix).apply(&format!(
            "garbage-collecting masquerade rules of network {network}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn golden_setup_transaction() {
        let owner = MasqOwner {
            network: "ccnet",
            container_id: "ctr1",
            ifname: "eth0",
        };
        let ips: Vec<IpNetwork> = vec![
            "10.99.0.3/24".parse().unwrap(),
            "fd00:99::3/64".parse().unwrap(),
        ];
        let listing = ListedTable::parse(&format!(
            r#"{{"nftables":[{{"rule":{{"family":"inet","table":"{TABLE}","chain":"{CHECKS}","handle":9,"comment":"{} old","expr":[]}}}},
               {{"rule":{{"family":"inet","table":"{TABLE}","chain":"{CHECKS}","handle":10,"comment":"someone else","expr":[]}}}}]}}"#,
            names::nft_masq_instance_hash("ccnet", "eth0", "ctr1")
        ))
        .unwrap();
        let tx = setup_tx(Some(&listing), &owner, &ips);
        let v: Value = serde_json::from_str(&tx.to_json().unwrap()).unwrap();
        let cmds = v["nftables"].as_array().unwrap();
        assert_eq!(cmds.len(), 10);
        assert_eq!(
            cmds[2]["add"]["chain"],
            json!({"family":"inet","table":TABLE,"name":"postrouting","type":"nat","hook":"postrouting","prio":100,"policy":"accept"})
        );
        assert_eq!(
            cmds[4]["add"]["rule"]["expr"],
            json!([{"match":{"left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"224.0.0.0","len":4}},"op":"=="}},{"return":null}])
        );
        assert_eq!(
            cmds[6]["add"]["rule"]["expr"],
            json!([{"goto":{"target":"masq_checks"}}])
        );
        assert_eq!(cmds[7]["delete"]["rule"]["handle"], 9);
        let comment = names::nft_masq_comment("ccnet", "eth0", "ctr1");
        assert_eq!(
            cmds[8]["add"]["rule"],
            json!({"family":"inet","table":TABLE,"chain":CHECKS,"comment":comment,"expr":[
            {"match":{"left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"10.99.0.3","op":"=="}},
            {"match":{"left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"10.99.0.0","len":24}},"op":"!="}},
            {"masquerade":null}]})
        );
        assert_eq!(
            cmds[9]["add"]["rule"]["expr"][1]["match"]["right"],
            json!({"prefix":{"addr":"fd00:99::","len":64}})
        );
    }
}
