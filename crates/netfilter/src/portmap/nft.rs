//! nftables layout of portmap (reference-behaviour 4.6): tables `ip`/`ip6 cni_hostport`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use nftables::expr::Expression;
use nftables::types::{NfChainType, NfFamily, NfHook};

use super::{Owner, PortMapOptions, PortMapping};
use crate::error::{Error, Result};
use crate::exec;
use crate::nft::{self, Hook, ListedTable, Tx, expr};

/// Table name (in both the `ip` and the `ip6` family).
pub(crate) const TABLE: &str = "cni_hostport";
const HOSTPORTS: &str = "hostports";
const HOSTIP_HOSTPORTS: &str = "hostip_hostports";
const HOSTPORTS_ALL: &str = "hostports_all";
const PREROUTING: &str = "prerouting";
const OUTPUT: &str = "output";
const MASQUERADING: &str = "masquerading";
/// Chains that hold per-container rules (commented with the container ID).
const CONTAINER_CHAINS: [&str; 3] = [HOSTPORTS, HOSTIP_HOSTPORTS, MASQUERADING];
const FAMILIES: [NfFamily; 2] = [NfFamily::IP, NfFamily::IP6];

fn family_of(ip: IpAddr) -> NfFamily {
    if ip.is_ipv4() {
        NfFamily::IP
    } else {
        NfFamily::IP6
    }
}

fn word(family: NfFamily) -> &'static str {
    nft::family_name(family)
}

fn nat_hook(hook: NfHook, prio: i32) -> Option<Hook> {
    Some(Hook {
        kind: NfChainType::NAT,
        hook,
        prio,
    })
}

/// The JSON part of ADD for one family. With `conditions`, the `prerouting`/`output`
/// rules are left to [`conditions_script`] (nft's JSON input cannot carry free-form
/// expressions).
fn add_family(
    tx: &mut Tx,
    current: Option<&ListedTable>,
    owner: &Owner<'_>,
    opts: &PortMapOptions,
    mappings: &[PortMapping],
    net: &IpNetwork,
) {
    let ip = net.ip();
    let family = family_of(ip);
    let with_conditions = !opts.conditions(ip).is_empty();
    tx.add_table(family, TABLE)
        .add_chain(family, TABLE, HOSTPORTS, None)
        .add_chain(family, TABLE, HOSTIP_HOSTPORTS, None)
        .add_chain(family, TABLE, HOSTPORTS_ALL, None)
        .flush_chain(family, TABLE, HOSTPORTS_ALL)
        .add_rule(
            family,
            TABLE,
            HOSTPORTS_ALL,
            vec![expr::jump(HOSTIP_HOSTPORTS)],
            None,
        )
        .add_rule(
            family,
            TABLE,
            HOSTPORTS_ALL,
            vec![expr::jump(HOSTPORTS)],
            None,
        );
    for (chain, hook) in [(PREROUTING, NfHook::Prerouting), (OUTPUT, NfHook::Output)] {
        tx.add_chain(family, TABLE, chain, nat_hook(hook, -100));
        if !with_conditions {
            tx.flush_chain(family, TABLE, chain).add_rule(
                family,
                TABLE,
                chain,
                vec![
                    expr::eq(expr::fib_daddr_type(), expr::string("local")),
                    expr::jump(HOSTPORTS_ALL),
                ],
                None,
            );
        }
    }
    if opts.snat {
        tx.add_chain(
            family,
            TABLE,
            MASQUERADING,
            nat_hook(NfHook::Postrouting, 100),
        );
    }
    if let Some(table) = current {
        for rule in table
            .rules
            .iter()
            .filter(|r| CONTAINER_CHAINS.contains(&r.chain.as_str()))
        {
            if rule.comment.as_deref() == Some(owner.container_id) {
                tx.delete_rule(family, TABLE, &rule.chain, rule.handle);
            }
        }
    }
    let w = word(family);
    for m in mappings.iter().filter(|m| m.applies_to(ip)) {
        let mut stmts = Vec::new();
        if let Some(dst) = m.destination() {
            stmts.push(expr::eq(expr::payload(w, "daddr"), expr::addr(dst)));
        }
        stmts.push(expr::eq(
            expr::payload(m.protocol.as_str(), "dport"),
            Expression::Number(u32::from(m.host_port)),
        ));
        stmts.push(expr::dnat(ip, m.container_port, false));
        tx.add_rule(family, TABLE, HOSTPORTS, stmts, Some(owner.container_id));
    }
    if opts.snat {
        let any: IpAddr = if ip.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let mut sources = Vec::new();
        if opts.masq_all {
            sources.push(expr::prefix(any, 0));
        } else {
            sources.push(expr::addr(ip));
            if ip.is_ipv4() {
                sources.push(expr::addr(Ipv4Addr::LOCALHOST.into()));
            }
        }
        for src in sources {
            tx.add_rule(
                family,
                TABLE,
                MASQUERADING,
                vec![
                    expr::eq(expr::payload(w, "saddr"), src),
                    expr::eq(expr::payload(w, "daddr"), expr::addr(ip)),
                    expr::masquerade(),
                ],
                Some(owner.container_id),
            );
        }
    }
}

/// The ADD transaction for all families of `ips`, given the current listings.
pub(crate) fn add_tx(
    current: &[(NfFamily, Option<ListedTable>)],
    owner: &Owner<'_>,
    opts: &PortMapOptions,
    mappings: &[PortMapping],
    ips: &[IpNetwork],
) -> Tx {
    let mut tx = Tx::new();
    for net in ips {
        let family = family_of(net.ip());
        let listing = current
            .iter()
            .find(|(f, _)| *f == family)
            .and_then(|(_, t)| t.as_ref());
        add_family(&mut tx, listing, owner, opts, mappings, net);
    }
    tx
}

/// nft text rewriting the hook chains with the configured conditions (empty when there
/// are none). Conditions are nft expression words, as in the reference.
pub(crate) fn conditions_script(opts: &PortMapOptions, ips: &[IpNetwork]) -> String {
    let mut out = String::new();
    for net in ips {
        let conditions = opts.conditions(net.ip());
        if conditions.is_empty() {
            continue;
        }
        let fam = word(family_of(net.ip()));
        for chain in [PREROUTING, OUTPUT] {
            out.push_str(&format!(
                "flush chain {fam} {TABLE} {chain}\nadd rule {fam} {TABLE} {chain} {} fib daddr type local jump {HOSTPORTS_ALL}\n",
                conditions.join(" ")
            ));
        }
    }
    out
}

fn list_all() -> Result<Vec<(NfFamily, Option<ListedTable>)>> {
    FAMILIES
        .iter()
        .map(|&f| nft::list_table(f, TABLE).map(|t| (f, t)))
        .collect()
}

pub(super) fn add(
    owner: &Owner<'_>,
    opts: &PortMapOptions,
    mappings: &[PortMapping],
    ips: &[IpNetwork],
) -> Result<()> {
    let families: Vec<NfFamily> = ips.iter().map(|n| family_of(n.ip())).collect();
    let current: Vec<(NfFamily, Option<ListedTable>)> = list_all()?
        .into_iter()
        .filter(|(f, _)| families.contains(f))
        .collect();
    let text = conditions_script(opts, ips);
    if !text.is_empty() {
        // nft's JSON input cannot carry free-form conditions, so they go in a
        // second (text) transaction. Validate them first, changing nothing, so
        // a condition nft rejects is a configuration error, not a half-done ADD.
        let check = format!("{}{text}", conditions_prelude(opts, ips));
        exec::run(
            "nft",
            &["-c", "-f", "-"],
            Some(&check),
            "checking nftables conditions",
        )
        .map_err(|e| Error::Invalid(format!("nftables conditions rejected by nft: {e}")))?;
    }
    add_tx(&current, owner, opts, mappings, ips).apply(&format!(
        "setting up port mappings of container {} in tables cni_hostport",
        owner.container_id
    ))?;
    if !text.is_empty()
        && let Err(e) = exec::run(
            "nft",
            &["-f", "-"],
            Some(&text),
            &format!("applying nftables conditions:\n{text}"),
        )
    {
        // Leave nothing of this container behind.
        if let Err(undo) = del(owner) {
            log::warn!(
                "cannot undo port mappings of {}: {undo}",
                owner.container_id
            );
        }
        return Err(e);
    }
    Ok(())
}

/// Declarations that let `nft -c` evaluate [`conditions_script`] on a node
/// where the tables do not exist yet (check mode commits nothing).
fn conditions_prelude(opts: &PortMapOptions, ips: &[IpNetwork]) -> String {
    let mut out = String::new();
    for net in ips {
        if opts.conditions(net.ip()).is_empty() {
            continue;
        }
        let fam = word(family_of(net.ip()));
        out.push_str(&format!(
            "add table {fam} {TABLE}\nadd chain {fam} {TABLE} {HOSTPORTS_ALL}\n\
             add chain {fam} {TABLE} {PREROUTING} {{ type nat hook prerouting priority -100; }}\n\
             add chain {fam} {TABLE} {OUTPUT} {{ type nat hook output priority -100; }}\n"
        ));
    }
    out
}

/// Deletes, in one transaction, every rule commented with a container ID selected by
/// `stale` in the per-container chains of the listed tables.
fn delete_tx(current: &[(NfFamily, Option<ListedTable>)], stale: impl Fn(&str) -> bool) -> Tx {
    let mut tx = Tx::new();
    for (family, table) in current {
        let Some(table) = table else { continue };
        for rule in table
            .rules
            .iter()
            .filter(|r| CONTAINER_CHAINS.contains(&r.chain.as_str()))
        {
            if rule.comment.as_deref().is_some_and(&stale) {
                tx.delete_rule(*family, TABLE, &rule.chain, rule.handle);
            }
        }
    }
    tx
}

/// Both tables for DEL/GC; nothing is run when `nft` is absent.
fn list_all_if_present() -> Result<Vec<(NfFamily, Option<ListedTable>)>> {
    let wanted: Vec<(NfFamily, &str)> = FAMILIES.iter().map(|&f| (f, TABLE)).collect();
    nft::list_tables_if_present(&wanted)
}

pub(super) fn del(owner: &Owner<'_>) -> Result<()> {
    let current = list_all_if_present()?;
    delete_tx(&current, |c| c == owner.container_id).apply(&format!(
        "removing port mappings of container {} from tables cni_hostport",
        owner.container_id
    ))
}

pub(super) fn gc(valid: &[&str]) -> Result<()> {
    let current = list_all_if_present()?;
    delete_tx(&current, |c| !valid.contains(&c))
        .apply("garbage-collecting port mappings in tables cni_hostport")
}

pub(super) fn check(
    owner: &Owner<'_>,
    opts: &PortMapOptions,
    mappings: &[PortMapping],
    ips: &[IpNetwork],
) -> Result<()> {
    for net in ips {
        let ip = net.ip();
        let family = family_of(ip);
        let fam = word(family);
        let table = nft::list_table(family, TABLE)?
            .ok_or_else(|| Error::Missing(format!("table {fam} {TABLE} not found")))?;
        if !table
            .rules_in(PREROUTING)
            .any(|r| r.mentions(HOSTPORTS_ALL))
        {
            return Err(Error::Missing(format!(
                "jump to {HOSTPORTS_ALL} not found in {fam} {TABLE} chain {PREROUTING}"
            )));
        }
        let ours: Vec<&nft::ListedRule> = table
            .rules
            .iter()
            .filter(|r| r.comment.as_deref() == Some(owner.container_id))
            .collect();
        let ip_text = ip.to_string();
        for m in mappings.iter().filter(|m| m.applies_to(ip)) {
            let found = ours.iter().any(|r| {
                r.chain == HOSTPORTS
                    && r.mentions_number(u64::from(m.host_port))
                    && r.mentions_number(u64::from(m.container_port))
                    && r.mentions(&ip_text)
                    && r.mentions(m.protocol.as_str())
                    && m.destination().is_none_or(|d| r.mentions(&d.to_string()))
            });
            if !found {
                return Err(Error::Missing(format!(
                    "{fam} {TABLE}: missing hostport rule {} {} -> {ip_text}:{} in chain {HOSTPORTS}",
                    m.protocol, m.host_port, m.container_port
                )));
            }
        }
        if opts.snat {
            let want = if ip.is_ipv4() && !opts.masq_all { 2 } else { 1 };
            let have = ours
                .iter()
                .filter(|r| r.chain == MASQUERADING && r.mentions(&ip_text))
                .count();
            if have < want {
                return Err(Error::Missing(format!(
                    "{fam} {TABLE}: missing masquerade rules for {ip_text} in chain {MASQUERADING}"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portmap::Protocol;
    use serde_json::{Value, json};

    #[test]
    fn golden_transaction() {
        let owner = Owner {
            network: "n",
            container_id: "ctr1",
        };
        let maps = [
            PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp,
                host_ip: None,
            },
            PortMapping {
                host_port: 9090,
                container_port: 90,
                protocol: Protocol::Udp,
                host_ip: Some("10.0.0.1".parse().unwrap()),
            },
            PortMapping {
                host_port: 9091,
                container_port: 91,
                protocol: Protocol::Tcp,
                host_ip: Some("::".parse().unwrap()),
            },
        ];
        let ips: Vec<IpNetwork> = vec![
            "10.99.0.3/24".parse().unwrap(),
            "fd00::3/64".parse().unwrap(),
        ];
        let old = ListedTable::parse(r#"{"nftables":[{"rule":{"chain":"hostports","handle":11,"comment":"ctr1","expr":[]}},{"rule":{"chain":"hostports","handle":12,"comment":"other","expr":[]}}]}"#).unwrap();
        let tx = add_tx(
            &[(NfFamily::IP, Some(old)), (NfFamily::IP6, None)],
            &owner,
            &PortMapOptions::default(),
            &maps,
            &ips,
        );
        let v: Value = serde_json::from_str(&tx.to_json().unwrap()).unwrap();
        let c = v["nftables"].as_array().unwrap();
        assert_eq!(
            c[7]["add"]["chain"],
            json!({"family":"ip","table":"cni_hostport","name":"prerouting","type":"nat","hook":"prerouting","prio":-100,"policy":"accept"})
        );
        assert_eq!(
            c[9]["add"]["rule"]["expr"],
            json!([{"match":{"left":{"fib":{"result":"type","flags":["daddr"]}},"right":"local","op":"=="}},{"jump":{"target":"hostports_all"}}])
        );
        assert_eq!(c[14]["delete"]["rule"]["handle"], 11);
        assert!(!tx.to_json().unwrap().contains("\"handle\":12"));
        assert_eq!(
            c[15]["add"]["rule"],
            json!({"family":"ip","table":"cni_hostport","chain":"hostports","comment":"ctr1","expr":[
            {"match":{"left":{"payload":{"protocol":"tcp","field":"dport"}},"right":8080,"op":"=="}},
            {"dnat":{"addr":"10.99.0.3","port":80}}]})
        );
        assert_eq!(
            c[16]["add"]["rule"]["expr"][0],
            json!({"match":{"left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"10.0.0.1","op":"=="}})
        );
        assert_eq!(
            c[17]["add"]["rule"]["expr"][0]["match"]["right"],
            "10.99.0.3"
        );
        assert_eq!(
            c[18]["add"]["rule"]["expr"][0]["match"]["right"],
            "127.0.0.1"
        );
        let text = tx.to_json().unwrap();
        assert!(
            text.contains(r#"{"dnat":{"addr":"fd00::3","port":91}}"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"{"dnat":{"addr":"fd00::3","port":90}}"#),
            "IPv4 hostIP skipped for IPv6"
        );
        assert!(conditions_script(&PortMapOptions::default(), &ips).is_empty());
        let cond = PortMapOptions {
            conditions_v4: vec!["iifname".into(), "\"eth0\"".into()],
            masq_all: true,
            ..PortMapOptions::default()
        };
        assert_eq!(
            conditions_script(&cond, &ips),
            "flush chain ip cni_hostport prerouting\nadd rule ip cni_hostport prerouting iifname \"eth0\" fib daddr type local jump hostports_all\nflush chain ip cni_hostport output\nadd rule ip cni_hostport output iifname \"eth0\" fib daddr type local jump hostports_all\n"
        );
        let all = add_tx(&[], &owner, &cond, &maps[..1], &ips[..1])
            .to_json()
            .unwrap();
        assert!(
            all.contains(r#"{"prefix":{"addr":"0.0.0.0","len":0}}"#) && !all.contains("127.0.0.1"),
            "{all}"
        );
    }
}
