//! iptables layout of portmap, as the reference programs it (containernetworking/plugins
//! `plugins/meta/portmap/portmap_iptables.go`).

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::{Owner, PortMapOptions, PortMapping, Protocol, Request};
use crate::error::{Error, Result};
use crate::firewall::{Iptables, PortMapper};
use crate::iptables::native::{self, Want};
use crate::iptables::{self, Family, NAT, SavedRule, SavedTable, Script};
use crate::names;
use crate::netns_lock::NetnsLock;

/// Shared DNAT chain hooked from PREROUTING and OUTPUT.
pub(crate) const DNAT_CHAIN: &str = "CNI-HOSTPORT-DNAT";
/// Shared chain marking packets for masquerading.
pub(crate) const SETMARK_CHAIN: &str = "CNI-HOSTPORT-SETMARK";
/// Shared chain masquerading marked packets, hooked first in POSTROUTING.
pub(crate) const MASQ_CHAIN: &str = "CNI-HOSTPORT-MASQ";
/// Comment of the rule in `CNI-HOSTPORT-SETMARK`.
const SETMARK_COMMENT: &str = "CNI portfwd masquerade mark";
/// Comment of the POSTROUTING jump into `CNI-HOSTPORT-MASQ`.
const MASQ_COMMENT: &str = "CNI portfwd requiring masquerade";
/// Legacy shared SNAT chain (plugins < v0.7).
const LEGACY_SNAT_CHAIN: &str = "CNI-HOSTPORT-SNAT";
const MAX_PORTS_PER_RULE: usize = 15;

fn v(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn hook_rule() -> Vec<String> {
    v(&["-m", "addrtype", "--dst-type", "LOCAL", "-j", DNAT_CHAIN])
}

fn mark_spec(opts: &PortMapOptions) -> String {
    let m = opts.mark();
    format!("{m:#x}/{m:#x}")
}

fn setmark_rule(opts: &PortMapOptions) -> Vec<String> {
    v(&[
        "-m",
        "comment",
        "--comment",
        SETMARK_COMMENT,
        "-j",
        "MARK",
        "--set-xmark",
        &mark_spec(opts),
    ])
}

fn masq_rule(opts: &PortMapOptions) -> Vec<String> {
    v(&["-m", "mark", "--mark", &mark_spec(opts), "-j", "MASQUERADE"])
}

fn postrouting_rule() -> Vec<String> {
    v(&["-m", "comment", "--comment", MASQ_COMMENT, "-j", MASQ_CHAIN])
}

/// Entry rules in `CNI-HOSTPORT-DNAT`: per protocol (sorted), groups of <= 15 host ports
/// (every mapping of the protocol, as the reference does).
pub(crate) fn entry_rules(
    owner: &Owner<'_>,
    opts: &PortMapOptions,
    mappings: &[PortMapping],
    ip: IpAddr,
) -> Vec<Vec<String>> {
    let chain = names::portmap_dnat_chain(owner.network, owner.container_id);
    let comment = names::portmap_dnat_comment(owner.network, owner.container_id);
    let mut protocols: Vec<Protocol> = mappings.iter().map(|m| m.protocol).collect();
    protocols.sort();
    protocols.dedup();
    let mut rules = Vec::new();
    for proto in protocols {
        let ports: Vec<String> = mappings
            .iter()
            .filter(|m| m.protocol == proto)
            .map(|m| m.host_port.to_string())
            .collect();
        for group in ports.chunks(MAX_PORTS_PER_RULE) {
            let mut rule = v(&[
                "-p",
                proto.as_str(),
                "-m",
                "comment",
                "--comment",
                &comment,
                "-m",
                "multiport",
                "--dports",
                &group.join(","),
            ]);
            rule.extend(opts.conditions(ip).iter().cloned());
            rule.extend(v(&["-j", &chain]));
            rules.push(rule);
        }
    }
    rules
}

/// Rules of the per-container chain for container address `net`.
pub(crate) fn chain_rules(
    opts: &PortMapOptions,
    mappings: &[PortMapping],
    net: &IpNetwork,
) -> Vec<Vec<String>> {
    let ip = net.ip();
    let setmark = opts
        .external_set_mark_chain
        .as_deref()
        .unwrap_or(SETMARK_CHAIN);
    let mut rules = Vec::new();
    for m in mappings.iter().filter(|m| m.applies_to(ip)) {
        let proto = m.protocol.as_str();
        let port = m.host_port.to_string();
        let dst: Vec<String> = m
            .destination()
            .map(|d| vec!["-d".to_owned(), iptables::host_cidr(d)])
            .unwrap_or_default();
        let matches = |src: Option<String>| {
            let mut r: Vec<String> = src.map(|s| vec!["-s".to_owned(), s]).unwrap_or_default();
            r.extend(dst.iter().cloned());
            r.extend(v(&["-p", proto, "-m", proto, "--dport", &port]));
            r
        };
        if opts.snat {
            // masqAll: source 0.0.0.0/0 (::/0), which iptables-save prints as no -s.
            let src = (!opts.masq_all).then(|| iptables::subnet_cidr(net));
            let mut hairpin = matches(src);
            hairpin.extend(v(&["-j", setmark]));
            rules.push(hairpin);
            if ip.is_ipv4() && !opts.masq_all {
                let mut local = matches(Some("127.0.0.1/32".to_owned()));
                local.extend(v(&["-j", setmark]));
                rules.push(local);
            }
        }
        let target = match ip {
            IpAddr::V4(a) => format!("{a}:{}", m.container_port),
            IpAddr::V6(a) => format!("[{a}]:{}", m.container_port),
        };
        let mut dnat = matches(None);
        dnat.extend(v(&["-j", "DNAT", "--to-destination", &target]));
        rules.push(dnat);
    }
    rules
}

fn same_list(current: &[&SavedRule], wanted: &[Vec<String>]) -> bool {
    current.len() == wanted.len() && current.iter().zip(wanted).all(|(c, w)| c.args == *w)
}

/// The restore script turning `saved` into the layout for one family.
///
/// Shared chains are created with `-N`, never declared: a `:CHAIN` line of a
/// `--noflush` restore flushes a chain that exists, so a concurrent ADD that created
/// it since `saved` was read (and put its jump there) would lose that jump. With `-N`
/// the restore fails instead and changes nothing; [`add`] then reads the table again.
/// [`add`] builds and applies this script under the network namespace's lock
/// ([`crate::netns_lock`]), so that no other of our processes adds the same hook or
/// shared rule between the read and the write.
pub(crate) fn add_script(
    saved: &SavedTable,
    owner: &Owner<'_>,
    opts: &PortMapOptions,
    mappings: &[PortMapping],
    net: &IpNetwork,
) -> Script {
    let mut s = Script::new(NAT);
    let chain = names::portmap_dnat_chain(owner.network, owner.container_id);

    if !saved.has_chain(DNAT_CHAIN) {
        s.new_chain(DNAT_CHAIN);
    }
    for hook in ["PREROUTING", "OUTPUT"] {
        if !saved.contains(hook, &hook_rule()) {
            s.append(hook, &hook_rule());
        }
    }
    if opts.snat && opts.external_set_mark_chain.is_none() {
        for (name, rule) in [
            (SETMARK_CHAIN, setmark_rule(opts)),
            (MASQ_CHAIN, masq_rule(opts)),
        ] {
            if !saved.has_chain(name) {
                s.new_chain(name);
            }
            if !saved.contains(name, &rule) {
                s.append(name, &rule);
            }
        }
        if !saved.contains("POSTROUTING", &postrouting_rule()) {
            s.insert("POSTROUTING", 1, &postrouting_rule());
        }
    }

    let wanted = chain_rules(opts, mappings, net);
    let current: Vec<&SavedRule> = saved.rules_in(&chain).collect();
    if !saved.has_chain(&chain) || !same_list(&current, &wanted) {
        s.declare_chain(&chain);
        for rule in &wanted {
            s.append(&chain, rule);
        }
    }

    let entries = entry_rules(owner, opts, mappings, net.ip());
    let existing: Vec<&SavedRule> = saved.jumps_to(&chain).collect();
    if !same_list(&existing, &entries) || existing.iter().any(|r| r.chain != DNAT_CHAIN) {
        for old in &existing {
            s.delete(&old.chain, &old.args);
        }
        for rule in &entries {
            s.append(DNAT_CHAIN, rule);
        }
    }
    s
}

/// One rule a container's chain relies on: where it lives, its iptables arguments, and
/// the same rule as iptables-nft encodes it.
struct SharedRule {
    chain: &'static str,
    args: Vec<String>,
    shape: Vec<Want>,
}

/// The shared rules a container's chain relies on: the hooks into `CNI-HOSTPORT-DNAT`
/// and, with SNAT into our own chains, the mark, masquerade and POSTROUTING rules.
/// [`fast_add_script`] asserts them; [`shared_rules_confirmed`] looks them up natively,
/// in this order: POSTROUTING (long: a jump per container) comes last, where the lookup
/// stops at the rule.
fn shared_rules(opts: &PortMapOptions) -> Vec<SharedRule> {
    let hook = |chain| SharedRule {
        chain,
        args: hook_rule(),
        shape: vec![Want::dst_type_local(), Want::Jump(DNAT_CHAIN.to_owned())],
    };
    let mut rules = vec![hook("PREROUTING"), hook("OUTPUT")];
    if opts.snat && opts.external_set_mark_chain.is_none() {
        let m = opts.mark();
        rules.push(SharedRule {
            chain: SETMARK_CHAIN,
            args: setmark_rule(opts),
            shape: vec![Want::comment(SETMARK_COMMENT), Want::set_xmark(m, m)],
        });
        rules.push(SharedRule {
            chain: MASQ_CHAIN,
            args: masq_rule(opts),
            shape: vec![Want::MarkAll(m), Want::masquerade()],
        });
        rules.push(SharedRule {
            chain: "POSTROUTING",
            args: postrouting_rule(),
            shape: vec![
                Want::comment(MASQ_COMMENT),
                Want::Jump(MASQ_CHAIN.to_owned()),
            ],
        });
    }
    rules
}

/// Whether every shared rule of `family` is confirmed present by reading the chains
/// natively (iptables-nft only; see [`native`]). `false` means "not confirmed": the
/// caller keeps the `-C` checks.
pub(crate) fn shared_rules_confirmed(family: Family, opts: &PortMapOptions) -> bool {
    if !iptables::is_nft_variant(family) {
        return false;
    }
    let shared = shared_rules(opts);
    let rules: Vec<(&str, &[Want])> = shared
        .iter()
        .map(|r| (r.chain, r.shape.as_slice()))
        .collect();
    match native::all_present(family, NAT, &rules) {
        Ok(true) => true,
        Ok(false) => {
            log::debug!("{family} nat: shared portmap rules not all found natively");
            false
        }
        Err(e) => {
            log::debug!("{family} nat: native rule lookup failed: {e}");
            false
        }
    }
}

/// The fast-path script: what [`add_script`] produces for a table that holds every
/// shared chain and hook rule but not the container's chain. Unless `shared_confirmed`
/// (see [`shared_rules_confirmed`]), `-C` lines make the restore fail (changing
/// nothing) when a shared rule or chain is missing; `-N` fails when the container's
/// chain exists (re-ADD, leftovers). Then the caller falls back to [`add_script`], so
/// the entry rules are never duplicated and the hooks always ensured.
pub(crate) fn fast_add_script(
    owner: &Owner<'_>,
    opts: &PortMapOptions,
    mappings: &[PortMapping],
    net: &IpNetwork,
    shared_confirmed: bool,
) -> Script {
    let mut s = Script::new(NAT);
    let chain = names::portmap_dnat_chain(owner.network, owner.container_id);
    if !shared_confirmed {
        for rule in shared_rules(opts) {
            s.check(rule.chain, &rule.args);
        }
    }
    s.new_chain(&chain);
    for rule in chain_rules(opts, mappings, net) {
        s.append(&chain, &rule);
    }
    for rule in entry_rules(owner, opts, mappings, net.ip()) {
        s.append(DNAT_CHAIN, &rule);
    }
    s
}

/// One container's mappings in one family: the fast path (one restore, no read of the
/// whole table, whose cost grows with the number of containers), else [`slow_add`].
fn add_family(
    owner: &Owner<'_>,
    opts: &PortMapOptions,
    mappings: &[PortMapping],
    net: &IpNetwork,
) -> Result<()> {
    let family = Family::of(net.ip());
    let shared_confirmed = shared_rules_confirmed(family, opts);
    if iptables::try_restore(
        family,
        &fast_add_script(owner, opts, mappings, net, shared_confirmed),
        &format!(
            "setting up port mappings of new container {} (chain {})",
            owner.container_id,
            names::portmap_dnat_chain(owner.network, owner.container_id)
        ),
    )? {
        return Ok(());
    }
    slow_add(family, owner, opts, mappings, net)
}

/// How many times [`slow_add`] reads the table again after its restore was rejected
/// (a shared chain created meanwhile by a process that does not take our lock).
const SLOW_ADD_ATTEMPTS: usize = 3;

/// Read-compare-write of one family's layout, under the network namespace's lock:
/// among our processes, only one at a time finds a shared chain or hook rule missing
/// and creates it. A restore rejected because something appeared between the read and
/// the write (`-N` of an existing chain) is retried on a fresh read; a failure is
/// returned, never swallowed.
fn slow_add(
    family: Family,
    owner: &Owner<'_>,
    opts: &PortMapOptions,
    mappings: &[PortMapping],
    net: &IpNetwork,
) -> Result<()> {
    let chain = names::portmap_dnat_chain(owner.network, owner.container_id);
    let op = format!(
        "setting up port mappings of container {} (chain {chain})",
        owner.container_id
    );
    let lock = NetnsLock::acquire(&op)?;
    // Concurrent first ADDs on a fresh node queue here: the holder before us most
    // likely created every shared chain and rule, so assert them (-C) and add ours in
    // one restore before reading the whole table.
    if lock.was_contended()
        && iptables::try_restore(
            family,
            &fast_add_script(owner, opts, mappings, net, false),
            &op,
        )?
    {
        return Ok(());
    }
    let mut attempt = 1;
    loop {
        let saved = iptables::save(family, NAT)?;
        let script = add_script(&saved, owner, opts, mappings, net);
        match iptables::restore(family, &script, &op) {
            Err(Error::Tool { stderr, .. }) if attempt < SLOW_ADD_ATTEMPTS => {
                log::debug!("{op}: restore rejected ({stderr}), reading the table again");
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The restore script removing the container's chains (and legacy SNAT chain).
pub(crate) fn del_script(saved: &SavedTable, owner: &Owner<'_>) -> Script {
    let mut s = Script::new(NAT);
    iptables::remove_chain(
        saved,
        &mut s,
        &names::portmap_dnat_chain(owner.network, owner.container_id),
    );
    let legacy = names::portmap_legacy_snat_chain(owner.network, owner.container_id);
    if saved.has_chain(&legacy)
        || saved
            .jumps_to(&legacy)
            .any(|r| r.chain == LEGACY_SNAT_CHAIN)
    {
        iptables::remove_chain(saved, &mut s, &legacy);
    }
    s
}

/// The fast DEL script for `family` when the mappings and addresses ADD was given are
/// known: what [`del_script`] schedules for a table holding exactly what [`add_script`]
/// left for the container. `-D` fails (and the restore changes nothing) when an entry
/// rule is missing, `-X` when the container's chain is missing or still referenced, and
/// `-N` of the legacy SNAT chain when that chain exists (plugins < v0.7); then the
/// caller reads the table. `None` without mappings or an address of `family` (ADD
/// installed nothing then).
pub(crate) fn fast_del_script(
    owner: &Owner<'_>,
    added: &Request<'_>,
    family: Family,
) -> Option<Script> {
    let net = added.ips.iter().find(|n| Family::of(n.ip()) == family)?;
    let entries = entry_rules(owner, added.options, added.mappings, net.ip());
    if entries.is_empty() {
        return None;
    }
    let chain = names::portmap_dnat_chain(owner.network, owner.container_id);
    let legacy = names::portmap_legacy_snat_chain(owner.network, owner.container_id);
    let mut s = Script::new(NAT);
    for rule in &entries {
        s.delete(DNAT_CHAIN, rule);
    }
    s.flush(&chain)
        .delete_chain(&chain)
        .new_chain(&legacy)
        .delete_chain(&legacy);
    Some(s)
}

/// Loose match of an entry rule whose conditions iptables may have re-ordered.
fn entry_present(saved: &SavedTable, wanted: &[String]) -> bool {
    if saved.contains(DNAT_CHAIN, wanted) {
        return true;
    }
    let key = |opt: &str| {
        wanted
            .iter()
            .position(|a| a == opt)
            .and_then(|p| wanted.get(p + 1))
    };
    saved.rules_in(DNAT_CHAIN).any(|r| {
        ["-p", "--comment", "--dports", "-j"]
            .iter()
            .all(|opt| r.option(opt).map(str::to_owned).as_ref() == key(opt))
    })
}

/// Container chains of `network` (found through their entry rules' comments) whose
/// container is not in `valid`.
pub(crate) fn stale_chains(saved: &SavedTable, network: &str, valid: &[&str]) -> Vec<String> {
    let prefix = format!("dnat name: \"{network}\" id: \"");
    let keep: Vec<String> = valid
        .iter()
        .map(|c| names::portmap_dnat_chain(network, c))
        .collect();
    let mut out: Vec<String> = Vec::new();
    for rule in saved.rules_in(DNAT_CHAIN) {
        let ours = rule.comment().is_some_and(|c| c.starts_with(&prefix));
        if ours
            && let Some(target) = rule.target()
            && target.starts_with("CNI-DN-")
            && !keep.iter().any(|k| k == target)
            && !out.iter().any(|o| o == target)
        {
            out.push(target.to_owned());
        }
    }
    out
}

impl PortMapper for Iptables {
    // The localnet guard first (under the namespace lock when it is missing), then each
    // family.
    fn add_port_mappings(&self, owner: &Owner<'_>, request: &Request<'_>) -> Result<()> {
        if request.needs_localnet_guard() {
            crate::localnet::ensure_iptables()?;
        }
        for net in &request.mapped_ips() {
            add_family(owner, request.options, request.mappings, net)?;
        }
        Ok(())
    }

    fn del_port_mappings(&self, owner: &Owner<'_>, added: Option<&Request<'_>>) -> Result<()> {
        let chain = names::portmap_dnat_chain(owner.network, owner.container_id);
        iptables::delete_in_each_family(
            NAT,
            &format!(
                "removing port-mapping chain {chain} of container {}",
                owner.container_id
            ),
            |family| added.and_then(|k| fast_del_script(owner, k, family)),
            |family| {
                let legacy = names::portmap_legacy_snat_chain(owner.network, owner.container_id);
                native::remove_chains(
                    family,
                    NAT,
                    &[(DNAT_CHAIN, &chain), (LEGACY_SNAT_CHAIN, &legacy)],
                )
            },
            |saved| del_script(saved, owner),
        )
    }

    fn check_port_mappings(&self, owner: &Owner<'_>, request: &Request<'_>) -> Result<()> {
        let (opts, mappings) = (request.options, request.mappings);
        let chain = names::portmap_dnat_chain(owner.network, owner.container_id);
        for net in &request.mapped_ips() {
            let family = Family::of(net.ip());
            let saved = iptables::save(family, NAT)?;
            let tool = family.tool();
            if !saved.has_chain(&chain) {
                return Err(Error::Missing(format!(
                    "{tool}: chain {chain} not found in table nat"
                )));
            }
            for rule in chain_rules(opts, mappings, net) {
                if !saved.contains(&chain, &rule) {
                    return Err(Error::Missing(format!(
                        "{tool}: rule [{}] not found in chain {chain} of table nat",
                        rule.join(" ")
                    )));
                }
            }
            for rule in entry_rules(owner, opts, mappings, net.ip()) {
                if !entry_present(&saved, &rule) {
                    return Err(Error::Missing(format!(
                        "{tool}: rule [{}] not found in chain {DNAT_CHAIN} of table nat",
                        rule.join(" ")
                    )));
                }
            }
        }
        Ok(())
    }

    fn gc_port_mappings(&self, network: &str, valid: &[&str]) -> Result<()> {
        iptables::delete_in_each_family(
            NAT,
            &format!("garbage-collecting port-mapping chains of network {network}"),
            |_| None,
            |_| false,
            |saved| {
                let mut s = Script::new(NAT);
                for chain in stale_chains(saved, network, valid) {
                    iptables::remove_chain(saved, &mut s, &chain);
                }
                s
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    include!("../../tests/common/mappings.rs");

    /// A restore script as `iptables-save` would list its result: `-N X` is `:X`.
    fn as_listing(script: &str) -> String {
        script
            .lines()
            .map(|l| match l.strip_prefix("-N ") {
                Some(chain) => format!(":{chain} - [0:0]\n"),
                None => format!("{l}\n"),
            })
            .collect()
    }

    const OWNER: Owner<'static> = Owner {
        network: "ccnet",
        container_id: "ctr1",
    };

    /// The reference listing observed with /usr/lib/cni/portmap (v1.1.1).
    #[test]
    fn golden_ipv4_script_matches_reference_listing() {
        let net: IpNetwork = "10.99.0.3/24".parse().unwrap();
        let script = add_script(
            &SavedTable::default(),
            &OWNER,
            &PortMapOptions::default(),
            &sample(),
            &net,
        );
        assert_eq!(
            script.render(),
            r#"*nat
:CNI-DN-fe994aa6f38cd8a2c97f6 - [0:0]
-N CNI-HOSTPORT-DNAT
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-N CNI-HOSTPORT-SETMARK
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
-N CNI-HOSTPORT-MASQ
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-I POSTROUTING 1 -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A CNI-DN-fe994aa6f38cd8a2c97f6 -s 10.99.0.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-fe994aa6f38cd8a2c97f6 -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-fe994aa6f38cd8a2c97f6 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.99.0.3:80
-A CNI-DN-fe994aa6f38cd8a2c97f6 -s 10.99.0.0/24 -p udp -m udp --dport 8053 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-fe994aa6f38cd8a2c97f6 -s 127.0.0.1/32 -p udp -m udp --dport 8053 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-fe994aa6f38cd8a2c97f6 -p udp -m udp --dport 8053 -j DNAT --to-destination 10.99.0.3:53
-A CNI-DN-fe994aa6f38cd8a2c97f6 -s 10.99.0.0/24 -d 10.99.0.1/32 -p tcp -m tcp --dport 9090 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-fe994aa6f38cd8a2c97f6 -s 127.0.0.1/32 -d 10.99.0.1/32 -p tcp -m tcp --dport 9090 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-fe994aa6f38cd8a2c97f6 -d 10.99.0.1/32 -p tcp -m tcp --dport 9090 -j DNAT --to-destination 10.99.0.3:90
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"ccnet\" id: \"ctr1\"" -m multiport --dports 8080,9090,9091 -j CNI-DN-fe994aa6f38cd8a2c97f6
-A CNI-HOSTPORT-DNAT -p udp -m comment --comment "dnat name: \"ccnet\" id: \"ctr1\"" -m multiport --dports 8053 -j CNI-DN-fe994aa6f38cd8a2c97f6
COMMIT
"#
        );
    }

    #[test]
    fn fast_script_checks_shared_state_and_creates_the_chain() {
        let net: IpNetwork = "10.99.0.3/24".parse().unwrap();
        let fast =
            fast_add_script(&OWNER, &PortMapOptions::default(), &sample(), &net, false).render();
        let full = add_script(
            &SavedTable::default(),
            &OWNER,
            &PortMapOptions::default(),
            &sample(),
            &net,
        )
        .render();
        // Same container lines as the full path on an empty table.
        let container_lines = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.starts_with("-A CNI-DN-") || l.starts_with("-A CNI-HOSTPORT-DNAT"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(container_lines(&fast), container_lines(&full));
        assert!(fast.starts_with(
            "*nat\n-C PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT\n-C OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT\n-C CNI-HOSTPORT-SETMARK -m comment --comment \"CNI portfwd masquerade mark\" -j MARK --set-xmark 0x2000/0x2000\n-C CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE\n-C POSTROUTING -m comment --comment \"CNI portfwd requiring masquerade\" -j CNI-HOSTPORT-MASQ\n-N CNI-DN-fe994aa6f38cd8a2c97f6\n-A CNI-DN-"
        ), "{fast}");
        assert!(!fast.contains(":CNI-"), "never flushes a chain: {fast}");
        // Shared rules confirmed natively: the same script without the checks.
        let confirmed =
            fast_add_script(&OWNER, &PortMapOptions::default(), &sample(), &net, true).render();
        let unchecked: String = fast
            .lines()
            .filter(|l| !l.starts_with("-C "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(confirmed, unchecked);
        let ext = PortMapOptions {
            external_set_mark_chain: Some("EXT".into()),
            ..PortMapOptions::default()
        };
        let fast = fast_add_script(&OWNER, &ext, &sample(), &net, false).render();
        assert!(
            !fast.contains("SETMARK") && !fast.contains("-C POSTROUTING"),
            "{fast}"
        );
    }

    #[test]
    fn fast_del_is_del_script_on_the_table_add_leaves() {
        let net: IpNetwork = "10.99.0.3/24".parse().unwrap();
        let opts = PortMapOptions {
            conditions_v4: vec!["-i".into(), "eth0".into()],
            ..PortMapOptions::default()
        };
        let listing = add_script(&SavedTable::default(), &OWNER, &opts, &sample(), &net)
            .render()
            .replace("-I POSTROUTING 1 ", "-A POSTROUTING ");
        let saved = SavedTable::parse(&as_listing(&listing), "nat", "t").unwrap();
        let slow = del_script(&saved, &OWNER).render();
        let ips = ["fd00::3/64".parse().unwrap(), net];
        let known = Request {
            options: &opts,
            mappings: &sample(),
            ips: &ips,
        };
        let fast = fast_del_script(&OWNER, &known, Family::V4)
            .unwrap()
            .render();
        // The same deletions, plus the assertion that no legacy SNAT chain exists.
        let legacy = names::portmap_legacy_snat_chain("ccnet", "ctr1");
        assert_eq!(
            fast,
            slow.replace("COMMIT\n", &format!("-N {legacy}\n-X {legacy}\nCOMMIT\n"))
        );
        assert!(fast.contains("--dports 8053 -i eth0 -j CNI-DN-"), "{fast}");
        let v6 = fast_del_script(&OWNER, &known, Family::V6)
            .unwrap()
            .render();
        assert!(!v6.contains("-i eth0"), "IPv6 conditions apply: {v6}");
        let v4_only = Request {
            ips: &ips[1..],
            ..known
        };
        assert!(fast_del_script(&OWNER, &v4_only, Family::V6).is_none());
        let none = Request {
            mappings: &[],
            ..known
        };
        assert!(fast_del_script(&OWNER, &none, Family::V4).is_none());
        // Only the backend that did the ADD is given what it was given.
        let by_nft = crate::portmap::Known {
            backend: crate::Backend::Nftables,
            request: known,
        };
        assert!(by_nft.for_backend(crate::Backend::Iptables).is_none());
        assert!(by_nft.for_backend(crate::Backend::Nftables).is_some());
    }

    #[test]
    fn ipv6_masq_all_external_chain_and_port_groups() {
        let net: IpNetwork = "fd00:99::3/64".parse().unwrap();
        let opts = PortMapOptions {
            masq_all: true,
            external_set_mark_chain: Some("EXT".into()),
            conditions_v6: vec!["-i".into(), "eth0".into()],
            ..PortMapOptions::default()
        };
        let mut maps = sample();
        maps.extend((0..16).map(|i| pm(10000 + i, 80, Protocol::Sctp, None)));
        let rules = chain_rules(&opts, &maps, &net);
        assert_eq!(rules[0].join(" "), "-p tcp -m tcp --dport 8080 -j EXT");
        assert_eq!(
            rules[1].join(" "),
            "-p tcp -m tcp --dport 8080 -j DNAT --to-destination [fd00:99::3]:80"
        );
        assert!(
            !rules.iter().any(|r| r.join(" ").contains("9090")),
            "IPv4 hostIP skipped for IPv6"
        );
        assert!(rules.iter().any(|r| r.join(" ")
            == "-p tcp -m tcp --dport 9091 -j DNAT --to-destination [fd00:99::3]:91"));
        let entries = entry_rules(&OWNER, &opts, &maps, net.ip());
        assert_eq!(entries.len(), 4, "sctp split 15+1, tcp, udp");
        assert!(entries[0].join(" ").contains("--dports 10000,10001,10002,10003,10004,10005,10006,10007,10008,10009,10010,10011,10012,10013,10014 -i eth0 -j"));
        assert!(entries[1].join(" ").contains("--dports 10015 -i eth0"));
        let script = add_script(&SavedTable::default(), &OWNER, &opts, &maps, &net).render();
        assert!(
            !script.contains("SETMARK") && !script.contains("CNI-HOSTPORT-MASQ"),
            "{script}"
        );
    }

    #[test]
    fn reapply_is_noop_and_readd_replaces() {
        let net: IpNetwork = "10.99.0.3/24".parse().unwrap();
        let opts = PortMapOptions {
            mark_masq_bit: 5,
            ..PortMapOptions::default()
        };
        let first = add_script(&SavedTable::default(), &OWNER, &opts, &sample(), &net).render();
        assert!(first.contains("--set-xmark 0x20/0x20"));
        let as_saved = first
            .replace("-I POSTROUTING 1 ", "-A POSTROUTING ")
            .replace("COMMIT\n", "");
        let saved =
            SavedTable::parse(&as_listing(&format!("{as_saved}COMMIT\n")), "nat", "t").unwrap();
        assert!(add_script(&saved, &OWNER, &opts, &sample(), &net).is_empty());
        let changed = add_script(
            &saved,
            &OWNER,
            &opts,
            &[pm(7000, 70, Protocol::Udp, None)],
            &net,
        )
        .render();
        assert!(
            changed.contains(":CNI-DN-fe994aa6f38cd8a2c97f6 - [0:0]"),
            "chain flushed: {changed}"
        );
        assert!(changed.contains("-D CNI-HOSTPORT-DNAT -p tcp"), "{changed}");
        assert!(changed.contains("-A CNI-HOSTPORT-DNAT -p udp -m comment --comment \"dnat name: \\\"ccnet\\\" id: \\\"ctr1\\\"\" -m multiport --dports 7000"));
        let del = del_script(&saved, &OWNER).render();
        assert_eq!(del.matches("-D CNI-HOSTPORT-DNAT").count(), 2);
        assert!(
            del.ends_with(
                "-F CNI-DN-fe994aa6f38cd8a2c97f6\n-X CNI-DN-fe994aa6f38cd8a2c97f6\nCOMMIT\n"
            ),
            "{del}"
        );
        assert!(del_script(&SavedTable::default(), &OWNER).is_empty());
        assert_eq!(
            stale_chains(&saved, "ccnet", &[]),
            ["CNI-DN-fe994aa6f38cd8a2c97f6"]
        );
        assert!(stale_chains(&saved, "ccnet", &["ctr1"]).is_empty());
        assert!(stale_chains(&saved, "other", &[]).is_empty());
    }
}
