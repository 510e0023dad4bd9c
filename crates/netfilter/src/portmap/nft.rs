//! nftables layout of portmap, as the reference programs it (containernetworking/plugins
//! `plugins/meta/portmap/portmap_nftables.go`): tables `ip`/`ip6 cni_hostport`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use nftables::expr::Expression;
use nftables::types::{NfChainType, NfFamily, NfHook};

use super::{Owner, PortMapOptions, PortMapping, Request};
use crate::attachments::Marker;
use crate::error::{Error, Result};
use crate::firewall::{Nftables, PortMapper};
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

/// ADD for one family. The configured conditions go verbatim before the local
/// destination check of the `prerouting`/`output` rules; they make the transaction an
/// nft text one (nft's JSON input cannot carry free-form expressions).
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
        tx.add_chain(family, TABLE, chain, nat_hook(hook, -100))
            .flush_chain(family, TABLE, chain)
            .add_rule_with_raw(
                family,
                TABLE,
                chain,
                opts.conditions(ip),
                vec![
                    expr::eq(expr::fib_daddr_type(), expr::string("local")),
                    expr::jump(HOSTPORTS_ALL),
                ],
                None,
            );
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

/// The kind of [`Marker`] of port-mapping rules (keyed, like the rules' comments, by the
/// container ID).
const MARKER: &str = "portmap";

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

/// The per-container chains' rules (handles and comments) of the tables of `families`,
/// read natively.
fn read(families: &[NfFamily]) -> Result<Vec<(NfFamily, Option<ListedTable>)>> {
    families
        .iter()
        .map(|&f| {
            nft::read_table(f, TABLE, &CONTAINER_CHAINS, nft::Chains::Named(&[])).map(|t| (f, t))
        })
        .collect()
}

/// Classifies a failed ADD with conditions (nothing was applied): when the same
/// transaction without the conditions passes `nft -c`, the conditions are what nft
/// rejected, a configuration error ([`Error::Invalid`]); otherwise the failure is
/// the node's (a conflicting chain, permissions...) and `failure` is returned as it is.
/// Costs one more `nft` run, on the failure path only.
fn blame_conditions(
    failure: Error,
    current: &[(NfFamily, Option<ListedTable>)],
    owner: &Owner<'_>,
    opts: &PortMapOptions,
    mappings: &[PortMapping],
    ips: &[IpNetwork],
) -> Error {
    let plain = PortMapOptions {
        conditions_v4: Vec::new(),
        conditions_v6: Vec::new(),
        ..opts.clone()
    };
    let without = add_tx(current, owner, &plain, mappings, ips);
    match without.check_script("checking the port mappings without their nftables conditions") {
        Ok(()) => Error::Invalid(format!("nftables conditions rejected by nft: {failure}")),
        Err(e) => {
            log::debug!("the ADD fails without its conditions too: {e}");
            failure
        }
    }
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

impl PortMapper for Nftables {
    /// ADD: one transaction for both families. Without conditions it is nft JSON; with
    /// conditions the same commands are written as nft text (the conditions spliced into the
    /// hook rules) and applied with one `nft -f -`, so a condition nft rejects leaves
    /// everything as it was. When the request needs the localnet guard and it is not
    /// found natively, the transaction also creates it ([`crate::localnet`]; its rule is
    /// nft text, so the transaction is too).
    fn add_port_mappings(&self, owner: &Owner<'_>, request: &Request<'_>) -> Result<()> {
        let (opts, mappings) = (request.options, request.mappings);
        let ips = &request.mapped_ips();
        let guard = request.needs_localnet_guard()
            && crate::localnet::nftables_present_natively() != Some(true);
        let families: Vec<NfFamily> = FAMILIES
            .into_iter()
            .filter(|f| ips.iter().any(|n| family_of(n.ip()) == *f))
            .collect();
        // A first ADD of the container has nothing to replace: no read of the chains.
        let first = Marker::of(MARKER, &[owner.container_id]).is_some_and(|m| m.mark_new());
        let current = if first {
            families.iter().map(|&f| (f, None)).collect()
        } else {
            read(&families)?
        };
        let mut tx = add_tx(&current, owner, opts, mappings, ips);
        if guard {
            crate::localnet::add_nftables_ops(&mut tx);
        }
        match tx.apply(&format!(
            "setting up port mappings of container {} in tables cni_hostport",
            owner.container_id
        )) {
            Err(e @ Error::Tool { .. }) if tx.has_raw() => {
                Err(blame_conditions(e, &current, owner, opts, mappings, ips))
            }
            // Nothing was run: the transaction cannot be written as nft text.
            Err(Error::Invalid(why)) if tx.has_raw() => Err(Error::Invalid(format!(
                "with nftables conditions the ADD is written as nft text: {why}"
            ))),
            other => other,
        }
    }

    fn del_port_mappings(&self, owner: &Owner<'_>, _added: Option<&Request<'_>>) -> Result<()> {
        let current = read(&FAMILIES)?;
        delete_tx(&current, |c| c == owner.container_id).apply(&format!(
            "removing port mappings of container {} from tables cni_hostport",
            owner.container_id
        ))?;
        if let Some(m) = Marker::of(MARKER, &[owner.container_id]) {
            m.clear();
        }
        Ok(())
    }

    fn check_port_mappings(&self, owner: &Owner<'_>, request: &Request<'_>) -> Result<()> {
        let (opts, mappings) = (request.options, request.mappings);
        for net in &request.mapped_ips() {
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

    fn gc_port_mappings(&self, _network: &str, valid: &[&str]) -> Result<()> {
        let current = read(&FAMILIES)?;
        delete_tx(&current, |c| !valid.contains(&c))
            .apply("garbage-collecting port mappings in tables cni_hostport")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portmap::Protocol;
    use serde_json::{Value, json};

    include!("../../tests/common/mappings.rs");

    const OWNER: Owner<'static> = Owner {
        network: "n",
        container_id: "ctr1",
    };

    /// The container's addresses, one per family.
    fn ips() -> Vec<IpNetwork> {
        vec![
            "10.99.0.3/24".parse().unwrap(),
            "fd00::3/64".parse().unwrap(),
        ]
    }

    #[test]
    fn golden_transaction() {
        let owner = OWNER;
        let maps = [
            pm(8080, 80, Protocol::Tcp, None),
            pm(9090, 90, Protocol::Udp, Some("10.0.0.1")),
            pm(9091, 91, Protocol::Tcp, Some("::")),
        ];
        let ips = ips();
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
        assert!(!tx.has_raw(), "no conditions: the JSON transaction");
        let all = PortMapOptions {
            masq_all: true,
            ..PortMapOptions::default()
        };
        let all = add_tx(&[], &owner, &all, &maps[..1], &ips[..1])
            .to_json()
            .unwrap();
        assert!(
            all.contains(r#"{"prefix":{"addr":"0.0.0.0","len":0}}"#) && !all.contains("127.0.0.1"),
            "{all}"
        );
    }

    /// With conditions the whole ADD is one nft text script: every command of the JSON
    /// transaction, in the same order, the conditions before the local destination check.
    #[test]
    fn golden_script_with_conditions() {
        let owner = OWNER;
        let maps = [
            pm(8080, 80, Protocol::Tcp, None),
            pm(9090, 90, Protocol::Udp, Some("10.0.0.1")),
            pm(9091, 91, Protocol::Sctp, Some("fd00::1")),
        ];
        let ips = ips();
        let old = ListedTable::parse(r#"{"nftables":[{"rule":{"chain":"hostports","handle":11,"comment":"ctr1","expr":[]}},{"rule":{"chain":"masquerading","handle":12,"comment":"ctr1","expr":[]}},{"rule":{"chain":"hostports","handle":13,"comment":"other","expr":[]}}]}"#).unwrap();
        let current = [(NfFamily::IP, Some(old)), (NfFamily::IP6, None)];
        let cond = PortMapOptions {
            conditions_v4: vec!["iifname".into(), "!=".into(), "\"lo\"".into()],
            ..PortMapOptions::default()
        };
        let tx = add_tx(&current, &owner, &cond, &maps, &ips);
        assert!(tx.has_raw() && tx.to_json().is_err());
        let expected = "\
add table ip cni_hostport { comment \"CNI portmap plugin\"; }
add chain ip cni_hostport hostports
add chain ip cni_hostport hostip_hostports
add chain ip cni_hostport hostports_all
flush chain ip cni_hostport hostports_all
add rule ip cni_hostport hostports_all jump hostip_hostports
add rule ip cni_hostport hostports_all jump hostports
add chain ip cni_hostport prerouting { type nat hook prerouting priority -100; policy accept; }
flush chain ip cni_hostport prerouting
add rule ip cni_hostport prerouting iifname != \"lo\" fib daddr type \"local\" jump hostports_all
add chain ip cni_hostport output { type nat hook output priority -100; policy accept; }
flush chain ip cni_hostport output
add rule ip cni_hostport output iifname != \"lo\" fib daddr type \"local\" jump hostports_all
add chain ip cni_hostport masquerading { type nat hook postrouting priority 100; policy accept; }
delete rule ip cni_hostport hostports handle 11
delete rule ip cni_hostport masquerading handle 12
add rule ip cni_hostport hostports tcp dport 8080 dnat to 10.99.0.3:80 comment \"ctr1\"
add rule ip cni_hostport hostports ip daddr 10.0.0.1 udp dport 9090 dnat to 10.99.0.3:90 comment \"ctr1\"
add rule ip cni_hostport masquerading ip saddr 10.99.0.3 ip daddr 10.99.0.3 masquerade comment \"ctr1\"
add rule ip cni_hostport masquerading ip saddr 127.0.0.1 ip daddr 10.99.0.3 masquerade comment \"ctr1\"
add table ip6 cni_hostport { comment \"CNI portmap plugin\"; }
add chain ip6 cni_hostport hostports
add chain ip6 cni_hostport hostip_hostports
add chain ip6 cni_hostport hostports_all
flush chain ip6 cni_hostport hostports_all
add rule ip6 cni_hostport hostports_all jump hostip_hostports
add rule ip6 cni_hostport hostports_all jump hostports
add chain ip6 cni_hostport prerouting { type nat hook prerouting priority -100; policy accept; }
flush chain ip6 cni_hostport prerouting
add rule ip6 cni_hostport prerouting fib daddr type \"local\" jump hostports_all
add chain ip6 cni_hostport output { type nat hook output priority -100; policy accept; }
flush chain ip6 cni_hostport output
add rule ip6 cni_hostport output fib daddr type \"local\" jump hostports_all
add chain ip6 cni_hostport masquerading { type nat hook postrouting priority 100; policy accept; }
add rule ip6 cni_hostport hostports tcp dport 8080 dnat to [fd00::3]:80 comment \"ctr1\"
add rule ip6 cni_hostport hostports ip6 daddr fd00::1 sctp dport 9091 dnat to [fd00::3]:91 comment \"ctr1\"
add rule ip6 cni_hostport masquerading ip6 saddr fd00::3 ip6 daddr fd00::3 masquerade comment \"ctr1\"
";
        assert_eq!(tx.to_script().unwrap(), expected);

        // The same transaction without conditions (what a failure is checked against)
        // differs only by the conditions, and is the JSON transaction of a plain ADD.
        let plain = add_tx(&current, &owner, &PortMapOptions::default(), &maps, &ips);
        assert!(!plain.has_raw());
        assert_eq!(
            plain.to_script().unwrap(),
            expected.replace("iifname != \"lo\" ", "")
        );
        assert_eq!(plain.len(), tx.len());

        // IPv6 conditions alone also make the whole ADD (both families) text; masqAll
        // and snat are honoured.
        let v6 = PortMapOptions {
            conditions_v6: vec![
                "ip6".into(),
                "saddr".into(),
                "!=".into(),
                "fd00:dead::1".into(),
            ],
            masq_all: true,
            ..PortMapOptions::default()
        };
        let text = add_tx(&[], &owner, &v6, &maps[..1], &ips)
            .to_script()
            .unwrap();
        assert!(
            text.contains(
                "add rule ip cni_hostport prerouting fib daddr type \"local\" jump hostports_all\n"
            ),
            "{text}"
        );
        assert!(text.contains("add rule ip6 cni_hostport output ip6 saddr != fd00:dead::1 fib daddr type \"local\" jump hostports_all\n"), "{text}");
        assert!(text.contains("add rule ip cni_hostport masquerading ip saddr 0.0.0.0/0 ip daddr 10.99.0.3 masquerade comment \"ctr1\"\n"), "{text}");
        assert!(text.contains("add rule ip6 cni_hostport masquerading ip6 saddr ::/0 ip6 daddr fd00::3 masquerade comment \"ctr1\"\n"), "{text}");
        assert!(!text.contains("127.0.0.1"), "{text}");
        let no_snat = PortMapOptions { snat: false, ..v6 };
        let text = add_tx(&[], &owner, &no_snat, &maps[..1], &ips)
            .to_script()
            .unwrap();
        assert!(!text.contains("masquerad"), "{text}");
    }
}
