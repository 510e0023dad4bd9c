//! Scenario 6, the busy node: chain ADD, chain DEL and chain DEL without `portMappings`
//! (a runtime that forgot them) on a node whose host namespace already holds thousands of
//! unrelated kube-proxy-style NAT rules, against the same operations on an empty node, in
//! the same run. Each implementation gets two fresh host namespaces for it (empty and
//! busy), removed at the end of the scenario.

use std::fmt::Write as _;
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::cleanup;
use crate::net::{self, Attachment, Backend, CHAIN, Impl};
use crate::report::{Check, Row};
use crate::scenarios::{
    Ctx, Progress, Samples, add, containers_of, del, drop_containers, order, progress,
    rule_counts_in, warmup,
};
use crate::stats::round3;

/// The limit for each operation: busy node at most this many times the empty node.
const LIMIT: f64 = 1.5;

/// An `iptables-restore --noflush` script for the `nat` table with `rules` rules laid out
/// as kube-proxy's iptables mode does: `KUBE-SERVICES`, jumped to from PREROUTING and
/// OUTPUT, matches each service's cluster IP and port and jumps to its `KUBE-SVC-*`
/// chain, which jumps to one endpoint chain `KUBE-SEP-*` that DNATs to the pod.
pub fn iptables_script(rules: usize) -> String {
    let mut chains = String::from(":KUBE-SERVICES - [0:0]\n");
    let mut body = String::from(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n",
    );
    let mut n = 2;
    let mut s = 0usize;
    while n < rules {
        let ip = format!("{}.{}", s / 256, s % 256);
        let _ = write!(
            chains,
            ":KUBE-SVC-{s:016X} - [0:0]\n:KUBE-SEP-{s:016X} - [0:0]\n"
        );
        let lines = [
            format!(
                "-A KUBE-SERVICES -d 10.96.{ip}/32 -p tcp -m comment --comment \"default/svc-{s}:http cluster IP\" -m tcp --dport 80 -j KUBE-SVC-{s:016X}"
            ),
            format!("-A KUBE-SVC-{s:016X} -j KUBE-SEP-{s:016X}"),
            format!("-A KUBE-SEP-{s:016X} -p tcp -m tcp -j DNAT --to-destination 10.244.{ip}:8080"),
        ];
        for l in lines.iter().take(rules - n) {
            body.push_str(l);
            body.push('\n');
            n += 1;
        }
        s += 1;
    }
    format!("*nat\n{chains}{body}COMMIT\n")
}

/// An `nft -f` script: table `ip kube-proxy` with `rules` rules, base chains for
/// prerouting and output that jump to `services`, which jumps to four chains of
/// `ip daddr <cluster IP> tcp dport 80 dnat to <pod>:8080` rules.
pub fn nft_script(rules: usize) -> String {
    const CHAINS: usize = 4;
    let mut out = String::from(
        "table ip kube-proxy {\n\
         \tchain nat-prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tjump services\n\t}\n\
         \tchain nat-output {\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}\n\
         \tchain services {\n",
    );
    for c in 0..CHAINS {
        let _ = writeln!(out, "\t\tjump svc-{c}");
    }
    out.push_str("\t}\n");
    let rest = rules.saturating_sub(2 + CHAINS);
    for c in 0..CHAINS {
        let _ = writeln!(out, "\tchain svc-{c} {{");
        for s in (c..rest).step_by(CHAINS) {
            let ip = format!("{}.{}", s / 256, s % 256);
            let _ = writeln!(
                out,
                "\t\tip daddr 10.96.{ip} tcp dport 80 dnat to 10.244.{ip}:8080"
            );
        }
        out.push_str("\t}\n");
    }
    out.push_str("}\n");
    out
}

/// Loads `rules` unrelated rules into the host namespace `ns` with one batch.
///
/// # Errors
/// When the tool rejects the batch.
pub fn load_rules(ns: &str, backend: Backend, rules: usize) -> Result<(), String> {
    match backend {
        Backend::Iptables => net::ns_exec_stdin(
            ns,
            &["iptables-restore", "-w", "10", "--noflush"],
            iptables_script(rules).as_bytes(),
        ),
        Backend::Nftables => {
            net::ns_exec_stdin(ns, &["nft", "-f", "-"], nft_script(rules).as_bytes())
        }
    }
    .map(drop)
}

/// The three measured operations.
const OPS: [&str; 3] = ["chain ADD", "chain DEL", "chain DEL without portMappings"];

impl Ctx {
    /// Scenario 6: the busy node (see the module documentation).
    ///
    /// # Errors
    /// On set-up failure or interruption.
    pub fn scenario6(&mut self) -> Result<(), String> {
        let rules = self.opts.counts.busy_rules;
        let reps = self.opts.counts.busy_reps;
        let backend = self.opts.backend;
        let labels = self.labels();
        progress(&format!(
            "scenario 6: busy node ({rules} kube-proxy-style {} rules) vs empty node: chain ADD, DEL, DEL without portMappings, x{reps}",
            backend.as_str()
        ));
        // nodes[2 * i] is implementation i's empty node, nodes[2 * i + 1] its busy one.
        let mut nodes: Vec<Impl> = Vec::new();
        let mut load = Map::new();
        for imp in &self.impls {
            for kind in ["e", "b"] {
                let node = Impl::new(imp.label, &format!("{}6{kind}", imp.tag), &imp.dir, backend)?;
                if kind == "b" {
                    let t = Instant::now();
                    load_rules(&node.host_name, backend, rules)?;
                    let took = t.elapsed().as_secs_f64();
                    let counts = rule_counts_in(&node.host_name)?;
                    progress(&format!(
                        "scenario 6: {}: loaded {rules} rules in {took:.1} s (not timed): {counts:?}",
                        imp.label
                    ));
                    load.insert(
                        imp.label.into(),
                        json!({ "load_s": round3(took), "rules_per_table": counts }),
                    );
                }
                nodes.push(node);
            }
        }
        let r = self.busy_loop(&nodes, reps);
        let names: Vec<String> = nodes.iter().map(|n| n.host_name.clone()).collect();
        drop(nodes);
        let left = cleanup::delete_netns(&names);
        cleanup::forget_netns(
            &names
                .into_iter()
                .filter(|n| !left.contains(n))
                .collect::<Vec<_>>(),
        );
        // samples[op][node] for every implementation.
        let samples = r?;
        let sc = format!("6 busy node ({rules} rules)");
        let mut detail = Map::new();
        for (o, op) in OPS.iter().enumerate() {
            let [empty, busy] = &samples[o];
            for (node, s) in [("empty", empty), ("busy", busy)] {
                self.rows.push(
                    Row::compare(
                        &sc,
                        &format!("{op}, {node} node"),
                        "ms",
                        s.summaries(),
                        None,
                    )
                    .note(s.fail_note(&labels)),
                );
                detail.insert(format!("{op}, {node} node"), s.to_json(&labels));
            }
            let ratio: Vec<Option<f64>> = busy
                .medians()
                .iter()
                .zip(empty.medians())
                .map(|(b, e)| Some(b.as_ref()? / e?))
                .collect();
            self.rows.push(
                Row::single(&sc, &format!("{op}: busy / empty"), "x", &ratio).check(Check {
                    value: ratio[0].unwrap_or(f64::NAN),
                    limit: LIMIT,
                    text: format!("ours <= {LIMIT}"),
                }),
            );
            detail.insert(
                format!("{op}: busy / empty"),
                labels
                    .iter()
                    .zip(&ratio)
                    .map(|(l, r)| ((*l).to_owned(), json!(r.map(round3))))
                    .collect::<Map<String, Value>>()
                    .into(),
            );
        }
        detail.insert("rules".into(), json!(rules));
        detail.insert("reps".into(), json!(reps));
        detail.insert("busy_node".into(), Value::Object(load));
        self.detail
            .insert("6_busy_node".into(), Value::Object(detail));
        Ok(())
    }

    /// The timed part of scenario 6: per repetition, implementation and node (rotating),
    /// ADD + DEL with the mappings, then ADD + DEL without them.
    fn busy_loop(&self, nodes: &[Impl], reps: usize) -> Result<Vec<[Samples; 2]>, String> {
        let ni = self.n();
        let names = containers_of(nodes.iter(), "s6-", 1)?;
        let mut atts: Vec<Attachment> = names
            .iter()
            .map(|n| Attachment::new(String::new(), &n[0], 43_000))
            .collect();
        let refs: Vec<&Impl> = nodes.iter().collect();
        warmup(&refs, &CHAIN, &mut atts, self.opts.counts.warmup)?;
        let mut samples: Vec<[Samples; 2]> = OPS
            .iter()
            .map(|_| [self.samples(), self.samples()])
            .collect();
        let mut prog = Progress::new("scenario 6: repetitions", reps);
        for rep in 0..reps {
            for i in order(rep, ni) {
                for node in order(rep, 2) {
                    let k = 2 * i + node;
                    let (imp, att) = (&nodes[k], &mut atts[k]);
                    for (mappings, del_op) in [(true, 1), (false, 2)] {
                        cleanup::check()?;
                        att.id = format!("busy-{rep}-{mappings}");
                        att.mappings = true;
                        let o = add(imp, &CHAIN, att);
                        samples[0][node].record(i, imp.label, "ADD", &o);
                        if att.result.is_some() {
                            att.mappings = mappings;
                            let o = del(imp, &CHAIN, att);
                            samples[del_op][node].record(i, imp.label, OPS[del_op], &o);
                            att.mappings = true;
                        }
                    }
                }
            }
            prog.tick(rep + 1, String::new);
        }
        drop_containers(&names);
        Ok(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_lines(script: &str) -> usize {
        script.lines().filter(|l| l.starts_with("-A ")).count()
    }

    #[test]
    fn iptables_script_has_exactly_the_rules() {
        for n in [2, 3, 5, 100, 20_000] {
            let s = iptables_script(n);
            assert_eq!(rule_lines(&s), n, "{n}");
            assert!(s.starts_with("*nat\n") && s.ends_with("COMMIT\n"));
            // Every chain jumped to is declared.
            for l in s.lines().filter(|l| l.starts_with("-A ")) {
                if let Some(target) = l.split(" -j ").nth(1).filter(|t| t.starts_with("KUBE-")) {
                    assert!(s.contains(&format!(":{target} - [0:0]")), "{target}");
                }
            }
        }
    }

    #[test]
    fn nft_script_has_exactly_the_rules() {
        for n in [10, 1000, 20_000] {
            let s = nft_script(n);
            let rules = s
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("jump ") || l.starts_with("ip daddr"))
                .count();
            assert_eq!(rules, n, "{n}");
            assert_eq!(s.matches('{').count(), s.matches('}').count());
        }
    }
}
