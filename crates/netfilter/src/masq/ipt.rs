//! iptables layout of ipMasq, as the reference bridge plugin programs it
//! (containernetworking/plugins `pkg/ip/ipmasq_iptables_linux.go`).

use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::MasqOwner;
use crate::error::{Error, Result};
use crate::firewall::{Iptables, Masquerade};
use crate::iptables::{self, Family, NAT, SavedTable, Script, native};
use crate::names;

const POSTROUTING: &str = "POSTROUTING";

fn multicast(family: Family) -> &'static str {
    match family {
        Family::V4 => "224.0.0.0/4",
        Family::V6 => "ff00::/8",
    }
}

fn of_family(ips: &[IpNetwork], family: Family) -> Vec<IpNetwork> {
    ips.iter()
        .copied()
        .filter(|n| Family::of(n.ip()) == family)
        .collect()
}

/// Rules of the per-container chain, canonical `iptables-save` form.
pub(super) fn chain_rules(
    owner: &MasqOwner<'_>,
    family: Family,
    ips: &[IpNetwork],
) -> Vec<Vec<String>> {
    let comment = names::masq_comment(owner.network, owner.container_id);
    let mut rules: Vec<Vec<String>> = Vec::new();
    for net in ips {
        let rule = vec![
            "-d".into(),
            iptables::subnet_cidr(net),
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            comment.clone(),
            "-j".into(),
            "ACCEPT".into(),
        ];
        if !rules.contains(&rule) {
            rules.push(rule);
        }
    }
    rules.push(vec![
        "!".into(),
        "-d".into(),
        multicast(family).into(),
        "-m".into(),
        "comment".into(),
        "--comment".into(),
        comment,
        "-j".into(),
        "MASQUERADE".into(),
    ]);
    rules
}

/// The POSTROUTING jump for one container address.
pub(super) fn jump_rule(owner: &MasqOwner<'_>, ip: IpAddr) -> Vec<String> {
    vec![
        "-s".into(),
        iptables::host_cidr(ip),
        "-m".into(),
        "comment".into(),
        "--comment".into(),
        names::masq_comment(owner.network, owner.container_id),
        "-j".into(),
        names::masq_chain(owner.network, owner.container_id),
    ]
}

/// The POSTROUTING jumps for `ips`, each once.
fn unique_jumps(owner: &MasqOwner<'_>, ips: &[IpNetwork]) -> Vec<Vec<String>> {
    let mut jumps: Vec<Vec<String>> = Vec::new();
    for net in ips {
        let jump = jump_rule(owner, net.ip());
        if !jumps.contains(&jump) {
            jumps.push(jump);
        }
    }
    jumps
}

/// The restore script for the layout of `ips` of `family`. With `saved` (the table as
/// read), only what differs: the chain declared (created or flushed) and filled unless
/// its rules are up to date, stale jumps to it deleted, missing POSTROUTING jumps
/// appended. Without (the fast path, which reads nothing), what that gives for a table
/// without the container's chain, but with `-N` making the restore fail (and change
/// nothing) when the chain exists after all (re-ADD, leftovers), so no POSTROUTING jump
/// is ever duplicated.
pub(super) fn setup_script(
    saved: Option<&SavedTable>,
    owner: &MasqOwner<'_>,
    family: Family,
    ips: &[IpNetwork],
) -> Script {
    let chain = names::masq_chain(owner.network, owner.container_id);
    let mut script = Script::new(NAT);
    let wanted = chain_rules(owner, family, ips);
    let Some(saved) = saved else {
        script.new_chain(&chain);
        for rule in &wanted {
            script.append(&chain, rule);
        }
        for jump in &unique_jumps(owner, ips) {
            script.append(POSTROUTING, jump);
        }
        return script;
    };
    let current: Vec<&Vec<String>> = saved.rules_in(&chain).map(|r| &r.args).collect();
    let up_to_date = saved.has_chain(&chain)
        && current.len() == wanted.len()
        && current.iter().zip(&wanted).all(|(a, b)| *a == b);
    if !up_to_date {
        script.declare_chain(&chain);
        for rule in &wanted {
            script.append(&chain, rule);
        }
    }
    let jumps: Vec<Vec<String>> = ips.iter().map(|n| jump_rule(owner, n.ip())).collect();
    for stale in saved.jumps_to(&chain) {
        if stale.chain != POSTROUTING || !jumps.contains(&stale.args) {
            script.delete(&stale.chain, &stale.args);
        }
    }
    for jump in &jumps {
        if !saved.contains(POSTROUTING, jump) {
            script.append(POSTROUTING, jump);
        }
    }
    script
}

/// The fast teardown script for `family` when the container's addresses are known:
/// what [`iptables::remove_chain`] schedules for a table holding exactly the chain and
/// one POSTROUTING jump per address. `-D` fails (and the restore changes nothing) when
/// a jump is missing, `-X` when the chain is missing or still referenced by a jump not
/// listed here; then the caller reads the table. `None` without addresses of `family`.
pub(super) fn fast_teardown_script(
    owner: &MasqOwner<'_>,
    family: Family,
    ips: &[IpNetwork],
) -> Option<Script> {
    let mine = of_family(ips, family);
    if mine.is_empty() {
        return None;
    }
    let chain = names::masq_chain(owner.network, owner.container_id);
    let mut script = Script::new(NAT);
    for jump in &unique_jumps(owner, &mine) {
        script.delete(POSTROUTING, jump);
    }
    script.flush(&chain).delete_chain(&chain);
    Some(script)
}

/// Container IDs of `network` that own a masquerade chain in `saved`, with the chain.
pub(super) fn owned_chains(saved: &SavedTable, network: &str) -> Vec<(String, String)> {
    let prefix = format!("name: \"{network}\" id: \"");
    let mut out: Vec<(String, String)> = Vec::new();
    for rule in &saved.rules {
        let Some(cid) = rule
            .comment()
            .and_then(|c| c.strip_prefix(&prefix))
            .and_then(|c| c.strip_suffix('"'))
        else {
            continue;
        };
        let chain = names::masq_chain(network, cid);
        if rule.chain == chain && !out.iter().any(|(c, _)| c == cid) {
            out.push((cid.to_owned(), chain));
        }
    }
    out
}

impl Masquerade for Iptables {
    fn setup_masq(&self, owner: &MasqOwner<'_>, ips: &[IpNetwork]) -> Result<()> {
        for family in Family::ALL {
            let mine = of_family(ips, family);
            if mine.is_empty() {
                continue;
            }
            // Fast path: one restore, no read of the whole table (whose cost grows with the
            // number of containers). Falls back to the read-compare-write path below.
            if iptables::try_restore(
                family,
                &setup_script(None, owner, family, &mine),
                &format!(
                    "setting up masquerading for new container {} in table nat",
                    owner.container_id
                ),
            )? {
                continue;
            }
            let saved = iptables::save(family, NAT)?;
            let script = setup_script(Some(&saved), owner, family, &mine);
            iptables::restore(
                family,
                &script,
                &format!(
                    "setting up masquerading for container {} in table nat",
                    owner.container_id
                ),
            )?;
        }
        Ok(())
    }

    fn teardown_masq(&self, owner: &MasqOwner<'_>, ips: Option<&[IpNetwork]>) -> Result<()> {
        let chain = names::masq_chain(owner.network, owner.container_id);
        iptables::delete_in_each_family(
            NAT,
            &format!("removing masquerade chain {chain}"),
            |family| ips.and_then(|ips| fast_teardown_script(owner, family, ips)),
            |family| native::remove_chains(family, NAT, &[("POSTROUTING", &chain)]),
            |saved| {
                let mut script = Script::new(NAT);
                iptables::remove_chain(saved, &mut script, &chain);
                script
            },
        )
    }

    fn check_masq(&self, owner: &MasqOwner<'_>, ips: &[IpNetwork]) -> Result<()> {
        let chain = names::masq_chain(owner.network, owner.container_id);
        for family in Family::ALL {
            let mine = of_family(ips, family);
            if mine.is_empty() {
                continue;
            }
            let saved = iptables::save(family, NAT)?;
            if !saved.has_chain(&chain) {
                return Err(Error::Missing(format!(
                    "chain {chain} not found in {} table nat",
                    family.tool()
                )));
            }
            for rule in chain_rules(owner, family, &mine) {
                if !saved.contains(&chain, &rule) {
                    return Err(Error::Missing(format!(
                        "rule [{}] not found in {} chain {chain}",
                        rule.join(" "),
                        family.tool()
                    )));
                }
            }
            for net in &mine {
                let rule = jump_rule(owner, net.ip());
                if !saved.contains(POSTROUTING, &rule) {
                    return Err(Error::Missing(format!(
                        "rule [{}] not found in {} chain POSTROUTING",
                        rule.join(" "),
                        family.tool()
                    )));
                }
            }
        }
        Ok(())
    }

    fn gc_masq(&self, network: &str, valid: &[(String, String)]) -> Result<()> {
        iptables::delete_in_each_family(
            NAT,
            &format!("garbage-collecting masquerade chains of network {network}"),
            |_| None,
            |_| false,
            |saved| {
                let mut script = Script::new(NAT);
                for (cid, chain) in owned_chains(saved, network) {
                    if !valid.iter().any(|(v, _)| *v == cid) {
                        iptables::remove_chain(saved, &mut script, &chain);
                    }
                }
                script
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: MasqOwner<'static> = MasqOwner {
        network: "ccnet",
        container_id: "ctr1",
        ifname: "eth0",
    };

    #[test]
    fn golden_setup_script_on_empty_table() {
        let ips: Vec<IpNetwork> = vec!["10.99.0.3/24".parse().unwrap()];
        let script = setup_script(Some(&SavedTable::default()), &OWNER, Family::V4, &ips);
        assert_eq!(
            script.render(),
            r#"*nat
:CNI-fe994aa6f38cd8a2c97f61d7 - [0:0]
-A CNI-fe994aa6f38cd8a2c97f61d7 -d 10.99.0.0/24 -m comment --comment "name: \"ccnet\" id: \"ctr1\"" -j ACCEPT
-A CNI-fe994aa6f38cd8a2c97f61d7 ! -d 224.0.0.0/4 -m comment --comment "name: \"ccnet\" id: \"ctr1\"" -j MASQUERADE
-A POSTROUTING -s 10.99.0.3/32 -m comment --comment "name: \"ccnet\" id: \"ctr1\"" -j CNI-fe994aa6f38cd8a2c97f61d7
COMMIT
"#
        );
    }

    #[test]
    fn fast_script_equals_full_script_on_table_without_the_chain() {
        let ips: Vec<IpNetwork> = vec!["10.99.0.3/24".parse().unwrap()];
        let full = setup_script(Some(&SavedTable::default()), &OWNER, Family::V4, &ips).render();
        let fast = setup_script(None, &OWNER, Family::V4, &ips).render();
        assert_eq!(
            fast,
            full.replace(
                ":CNI-fe994aa6f38cd8a2c97f61d7 - [0:0]\n",
                "-N CNI-fe994aa6f38cd8a2c97f61d7\n"
            )
        );
    }

    #[test]
    fn fast_teardown_is_remove_chain_on_the_table_setup_leaves() {
        let ips: Vec<IpNetwork> = vec![
            "10.99.0.3/24".parse().unwrap(),
            "10.99.0.3/24".parse().unwrap(),
            "10.98.0.3/24".parse().unwrap(),
            "fd00::3/64".parse().unwrap(),
        ];
        let v4: Vec<IpNetwork> = vec![ips[0], ips[2]];
        let listing = setup_script(Some(&SavedTable::default()), &OWNER, Family::V4, &v4)
            .render()
            .replace(":CNI-fe994aa6f38cd8a2c97f61d7 - [0:0]\n", "");
        let saved = SavedTable::parse(
            &listing.replace(
                "*nat\n",
                "*nat\n:POSTROUTING ACCEPT [0:0]\n:CNI-fe994aa6f38cd8a2c97f61d7 - [0:0]\n",
            ),
            "nat",
            "t",
        )
        .unwrap();
        let mut slow = Script::new(NAT);
        iptables::remove_chain(&saved, &mut slow, "CNI-fe994aa6f38cd8a2c97f61d7");
        let fast = fast_teardown_script(&OWNER, Family::V4, &ips).unwrap();
        assert_eq!(fast.render(), slow.render());
        assert_eq!(
            fast.render().matches("-D POSTROUTING").count(),
            2,
            "deduplicated"
        );
        assert!(
            fast_teardown_script(&OWNER, Family::V6, &ips[..3]).is_none(),
            "no IPv6 address, no IPv6 fast path"
        );
    }

    #[test]
    fn up_to_date_table_needs_no_change_and_stale_jump_is_removed() {
        let ips: Vec<IpNetwork> = vec!["fd00::3/64".parse().unwrap()];
        let first = setup_script(Some(&SavedTable::default()), &OWNER, Family::V6, &ips);
        let text = format!(
            ":POSTROUTING ACCEPT [0:0]\n{}",
            first.render().replace("*nat\n", "")
        );
        let saved = SavedTable::parse(&format!("*nat\n{text}"), "nat", "t").unwrap();
        assert!(setup_script(Some(&saved), &OWNER, Family::V6, &ips).is_empty());
        let moved: Vec<IpNetwork> = vec!["fd00::4/64".parse().unwrap()];
        let again = setup_script(Some(&saved), &OWNER, Family::V6, &moved).render();
        assert!(again.contains("-D POSTROUTING -s fd00::3/128"), "{again}");
        assert!(again.contains("-A POSTROUTING -s fd00::4/128"), "{again}");
        assert!(!again.contains(":CNI-"), "chain content unchanged: {again}");
        assert_eq!(
            owned_chains(&saved, "ccnet"),
            [("ctr1".to_owned(), "CNI-fe994aa6f38cd8a2c97f61d7".to_owned())]
        );
        assert!(owned_chains(&saved, "other").is_empty());
    }
}
