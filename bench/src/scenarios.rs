//! The scenarios of the benchmark (BENCHMARKS.md). Every implementation runs in the same
//! process, interleaved per repetition with the order rotating (A B C, then B C A, …) so
//! that load changes on a shared machine hit all alike. Container namespaces are created
//! before any timing. A failed operation is recorded (count and first message) and the
//! run goes on; only set-up failures (namespaces, directories) end a scenario.

use std::collections::{BTreeMap, HashSet};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::cleanup;
use crate::cli::Opts;
use crate::machine;
use crate::net::{self, Attachment, Backend, CHAIN, ChainOutcome, Impl, Net, SIMPLE};
use crate::report::{Check, Row};
use crate::stats::{Summary, ms, ms_list, round3};

/// Shared state of a run.
#[derive(Debug)]
pub struct Ctx {
    /// The implementations, ours first, then the references.
    pub impls: Vec<Impl>,
    /// Options.
    pub opts: Opts,
    /// Table rows so far.
    pub rows: Vec<Row>,
    /// Per-scenario details for the JSON (samples, failures, timings).
    pub detail: Map<String, Value>,
}

/// Index order of `n` implementations for repetition `rep`: rotated by one each time.
pub fn order(rep: usize, n: usize) -> Vec<usize> {
    (0..n).map(|j| (rep + j) % n).collect()
}

/// A line on stderr.
pub fn progress(msg: &str) {
    eprintln!("cni-bench: {msg}");
}

/// Periodic progress lines of a long loop: done/total, elapsed time and an ETA.
#[derive(Debug)]
pub struct Progress {
    what: String,
    total: usize,
    started: Instant,
    last: Instant,
    every: Duration,
}

impl Progress {
    /// Starts reporting on `total` units of `what`.
    pub fn new(what: impl Into<String>, total: usize) -> Self {
        let now = Instant::now();
        Self {
            what: what.into(),
            total,
            started: now,
            last: now,
            every: Duration::from_secs(10),
        }
    }

    /// Prints a line when the last one is older than the interval; `extra` is appended.
    pub fn tick(&mut self, done: usize, extra: impl FnOnce() -> String) {
        if self.last.elapsed() < self.every || done == 0 {
            return;
        }
        self.last = Instant::now();
        let el = self.started.elapsed().as_secs_f64();
        let eta = el / done as f64 * self.total.saturating_sub(done) as f64;
        let extra = extra();
        progress(&format!(
            "{}: {done}/{} ({:.0} %), {el:.0} s elapsed, ETA {eta:.0} s{}{extra}",
            self.what,
            self.total,
            100.0 * done as f64 / self.total.max(1) as f64,
            if extra.is_empty() { "" } else { "; " },
        ));
    }
}

/// Failures of one implementation in one scenario.
#[derive(Debug, Default, Clone)]
struct Failures {
    count: usize,
    first: Option<String>,
}

impl Failures {
    fn record(&mut self, label: &str, what: &str, error: &str) {
        self.count += 1;
        if self.first.is_none() {
            progress(&format!("{label}: {what} failed: {error}"));
            self.first = Some(format!("{what}: {error}"));
        }
    }

    fn to_json(&self) -> Value {
        json!({ "count": self.count, "first": self.first })
    }
}

/// `failures: debian 1 (ADD #476: …)` for the implementations with failures, or "".
fn fail_note(labels: &[&str], fails: &[Failures]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .zip(fails)
        .filter(|(_, f)| f.count > 0)
        .map(|(l, f)| {
            let first: String = f.first.as_deref().unwrap_or("").chars().take(100).collect();
            format!("{l} {} ({first})", f.count)
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("failures: {}", parts.join("; "))
    }
}

fn cpu(out: &ChainOutcome) -> Duration {
    out.steps.iter().map(|s| s.outcome.exit.cpu()).sum()
}

/// The samples of `Ctx::add_del_loop`: every ADD and DEL, and the ADDs split by
/// whether the call made just before was the same implementation's DEL (back to back
/// in its namespace) or not.
pub(crate) struct AddDel {
    add: Samples,
    del: Samples,
    add_after_own_del: Samples,
    add_after_other: Samples,
}

/// Samples of one operation, one set per implementation.
#[derive(Debug, Clone)]
pub(crate) struct Samples {
    wall: Vec<Vec<Duration>>,
    cpu: Vec<Vec<Duration>>,
    steps: Vec<BTreeMap<&'static str, Vec<Duration>>>,
    fails: Vec<Failures>,
}

impl Samples {
    pub(crate) fn new(n: usize) -> Self {
        Self {
            wall: vec![Vec::new(); n],
            cpu: vec![Vec::new(); n],
            steps: vec![BTreeMap::new(); n],
            fails: vec![Failures::default(); n],
        }
    }

    pub(crate) fn record(&mut self, i: usize, label: &str, what: &str, out: &ChainOutcome) {
        if let Some(e) = &out.error {
            self.fails[i].record(label, what, e);
            return;
        }
        self.wall[i].push(out.wall);
        self.cpu[i].push(cpu(out));
        for s in &out.steps {
            self.steps[i]
                .entry(s.plugin)
                .or_default()
                .push(s.outcome.wall);
        }
    }

    pub(crate) fn summaries(&self) -> Vec<Option<Summary>> {
        self.wall.iter().map(|w| Summary::of_ms(w)).collect()
    }

    fn cpu_summaries(&self) -> Vec<Option<Summary>> {
        self.cpu.iter().map(|w| Summary::of_ms(w)).collect()
    }

    fn step_summaries(&self, plugin: &str) -> Vec<Option<Summary>> {
        self.steps
            .iter()
            .map(|m| Summary::of_ms(m.get(plugin).map_or(&[][..], Vec::as_slice)))
            .collect()
    }

    pub(crate) fn medians(&self) -> Vec<Option<f64>> {
        self.summaries()
            .iter()
            .map(|s| s.map(|s| s.median))
            .collect()
    }

    pub(crate) fn fail_note(&self, labels: &[&str]) -> String {
        fail_note(labels, &self.fails)
    }

    pub(crate) fn to_json(&self, labels: &[&str]) -> Value {
        let mut m = Map::new();
        for (i, label) in labels.iter().enumerate() {
            let steps: Map<String, Value> = self.steps[i]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ms_list(v)))
                .collect();
            m.insert(
                (*label).into(),
                json!({
                    "wall_ms": ms_list(&self.wall[i]),
                    "cpu_ms": ms_list(&self.cpu[i]),
                    "steps_ms": steps,
                    "failures": self.fails[i].to_json(),
                }),
            );
        }
        Value::Object(m)
    }
}

/// A chain ADD; a failed one is cleaned up like a runtime would (DEL without
/// prevResult).
pub fn add(imp: &Impl, net: &Net, att: &mut Attachment) -> ChainOutcome {
    let out = imp.chain_add(net, att, false);
    if !out.ok() {
        let _ = imp.chain_del(net, att, false);
    }
    out
}

/// A chain DEL with the cached result.
pub fn del(imp: &Impl, net: &Net, att: &mut Attachment) -> ChainOutcome {
    imp.chain_del(net, att, false)
}

/// Rules per nftables table (`family name` → count) in `nft -a list ruleset` output:
/// every line with a handle that is not a table, chain, set, map or flowtable header.
/// iptables-nft rules are nftables rules too, so this counts both backends.
pub fn parse_rule_counts(text: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut table = String::new();
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("table ") {
            table = rest.split(" {").next().unwrap_or(rest).trim().to_owned();
            counts.entry(table.clone()).or_insert(0);
        } else if line.contains("# handle ")
            && !["chain ", "set ", "map ", "flowtable "]
                .iter()
                .any(|p| line.starts_with(p))
        {
            *counts.entry(table.clone()).or_insert(0) += 1;
        }
    }
    counts
}

/// Rules per nftables table in the named namespace (untimed).
///
/// # Errors
/// When `nft` fails.
pub fn rule_counts_in(ns: &str) -> Result<BTreeMap<String, usize>, String> {
    net::ns_exec(ns, &["nft", "-a", "list", "ruleset"]).map(|t| parse_rule_counts(&t))
}

impl Ctx {
    /// The labels of the implementations, in order.
    pub fn labels(&self) -> Vec<&'static str> {
        self.impls.iter().map(|i| i.label).collect()
    }

    pub(crate) fn n(&self) -> usize {
        self.impls.len()
    }

    pub(crate) fn samples(&self) -> Samples {
        Samples::new(self.n())
    }

    fn containers(&self, group: &str, count: usize) -> Result<Vec<Vec<String>>, String> {
        containers_of(self.impls.iter(), group, count)
    }

    /// Untimed ADD/DEL pairs so that every implementation has the bridge, the netfilter
    /// chains and a warm page cache before the first sample. Failures are only reported
    /// (the timed operations record them).
    fn warmup(&self, net: &Net, atts: &mut [Attachment]) -> Result<(), String> {
        warmup(
            &self.impls.iter().collect::<Vec<_>>(),
            net,
            atts,
            self.opts.counts.warmup,
        )
    }

    /// The ADD and DEL rows of scenarios 1 and 2, each with its ratio target.
    fn push_add_del(&mut self, sc: &str, samples: [&Samples; 2], limits: [f64; 2]) {
        let labels = self.labels();
        for ((op, s), limit) in ["ADD", "DEL"].into_iter().zip(samples).zip(limits) {
            self.rows.push(
                Row::compare(sc, op, "ms", s.summaries(), Some(limit)).note(s.fail_note(&labels)),
            );
        }
    }

    /// Repeated ADD then DEL of one container on `net`, interleaved.
    fn add_del_loop(&self, net: &Net, group: &str, reps: usize) -> Result<AddDel, String> {
        let names = self.containers(group, 1)?;
        let mut atts: Vec<Attachment> = names
            .iter()
            .map(|n| Attachment::new(String::new(), &n[0], 42_000))
            .collect();
        self.warmup(net, &mut atts)?;
        let mut out = AddDel {
            add: self.samples(),
            del: self.samples(),
            add_after_own_del: self.samples(),
            add_after_other: self.samples(),
        };
        // The implementation whose DEL was the last call made, if that was a DEL.
        let mut last_del: Option<usize> = None;
        let mut prog = Progress::new(format!("{group} ADD/DEL"), reps);
        for rep in 0..reps {
            for i in order(rep, self.n()) {
                cleanup::check()?;
                atts[i].id = format!("{group}{rep}");
                let o = add(&self.impls[i], net, &mut atts[i]);
                out.add.record(i, self.impls[i].label, "ADD", &o);
                let split = if last_del == Some(i) {
                    &mut out.add_after_own_del
                } else {
                    &mut out.add_after_other
                };
                split.record(i, self.impls[i].label, "ADD", &o);
                last_del = None;
            }
            for i in order(rep, self.n()) {
                cleanup::check()?;
                if atts[i].result.is_some() {
                    let o = del(&self.impls[i], net, &mut atts[i]);
                    out.del.record(i, self.impls[i].label, "DEL", &o);
                    last_del = Some(i);
                }
            }
            prog.tick(rep + 1, String::new);
        }
        drop_containers(&names);
        Ok(out)
    }

    /// Scenario 1: bridge + host-local ADD then DEL of one container.
    ///
    /// # Errors
    /// On set-up failure or interruption.
    pub fn scenario1(&mut self) -> Result<(), String> {
        let reps = self.opts.counts.reps;
        progress(&format!("scenario 1: bridge+host-local ADD/DEL x{reps}"));
        let AddDel {
            add: add_s,
            del: del_s,
            ..
        } = self.add_del_loop(&SIMPLE, "s1-", reps)?;
        let labels = self.labels();
        let sc = "1 bridge+host-local";
        // Start-up floor: the same spawn path with no network work (VERSION).
        let mut version: Vec<Vec<Duration>> = vec![Vec::new(); self.n()];
        let att = Attachment::new("version".into(), "none", 0);
        for rep in 0..reps {
            for i in order(rep, self.n()) {
                cleanup::check()?;
                let o = self.impls[i].version(&att);
                if o.ok() {
                    version[i].push(o.wall);
                }
            }
        }
        self.push_add_del(sc, [&add_s, &del_s], [0.25, 0.6]);
        self.rows.push(Row::compare(
            sc,
            "ADD CPU (user+sys)",
            "ms",
            add_s.cpu_summaries(),
            None,
        ));
        self.rows.push(Row::compare(
            sc,
            "VERSION (start-up floor)",
            "ms",
            version.iter().map(|v| Summary::of_ms(v)).collect(),
            None,
        ));
        self.rows.push(Row::compare(
            sc,
            "DEL CPU (user+sys)",
            "ms",
            del_s.cpu_summaries(),
            None,
        ));
        let version_json: Map<String, Value> = labels
            .iter()
            .zip(&version)
            .map(|(l, v)| ((*l).to_owned(), ms_list(v)))
            .collect();
        let d = json!({
            "reps": reps,
            "add": add_s.to_json(&labels),
            "del": del_s.to_json(&labels),
            "version_ms": version_json,
        });
        self.detail.insert("1_bridge_host_local".into(), d);
        Ok(())
    }

    /// Scenario 2: the full chain, ADD in order with prevResult, DEL in reverse.
    ///
    /// # Errors
    /// On set-up failure or interruption.
    pub fn scenario2(&mut self) -> Result<(), String> {
        let reps = self.opts.counts.chain_reps;
        progress(&format!(
            "scenario 2: chain (bridge ipMasq + host-local, portmap 2 mappings, {}) ADD/DEL x{reps}",
            self.opts.backend.as_str()
        ));
        self.netfilter_check()?;
        let AddDel {
            add: add_s,
            del: del_s,
            add_after_own_del,
            add_after_other,
        } = self.add_del_loop(&CHAIN, "s2-", reps)?;
        let labels = self.labels();
        let sc = "2 chain";
        self.push_add_del(sc, [&add_s, &del_s], [0.15, 0.35]);
        // With two implementations every other ADD comes right after the same
        // implementation's DEL in its namespace; the kernel's deferred cleanup of that
        // DEL lands on whichever of the two does not sit it out.
        if add_after_own_del.summaries().iter().any(Option::is_some) {
            for (what, s) in [
                ("right after its own DEL", &add_after_own_del),
                ("after another's DEL", &add_after_other),
            ] {
                self.rows.push(Row::compare(
                    sc,
                    &format!("  ADD {what}"),
                    "ms",
                    s.summaries(),
                    None,
                ));
            }
        }
        for (op, s) in [("ADD", &add_s), ("DEL", &del_s)] {
            for p in ["bridge", "portmap"] {
                self.rows.push(Row::compare(
                    sc,
                    &format!("  {op}: {p} step"),
                    "ms",
                    s.step_summaries(p),
                    None,
                ));
            }
            self.rows.push(Row::compare(
                sc,
                &format!("{op} CPU (user+sys)"),
                "ms",
                s.cpu_summaries(),
                None,
            ));
        }
        let d =
            json!({ "reps": reps, "add": add_s.to_json(&labels), "del": del_s.to_json(&labels) });
        self.detail.insert("2_chain".into(), d);
        Ok(())
    }

    /// Adds one container with the chain for each implementation and records which
    /// netfilter tables it programmed and how many rules each holds: with the iptables
    /// backend only iptables-nft tables (and `CNI-HOSTPORT-DNAT` in `nat`), with the
    /// nftables backend `ip cni_hostport` and `inet cni_plugins_masquerade` and no
    /// iptables `nat` table. Deviations are warnings; then the container is deleted.
    fn netfilter_check(&mut self) -> Result<(), String> {
        let names = self.containers("nfcheck-", 1)?;
        let mut out = Map::new();
        for (i, imp) in self.impls.iter().enumerate() {
            let mut att = Attachment::new("nfcheck".into(), &names[i][0], 42_001);
            let a = add(imp, &CHAIN, &mut att);
            if let Some(e) = &a.error {
                progress(&format!(
                    "{}: WARNING: netfilter check: chain ADD failed: {e}",
                    imp.label
                ));
                out.insert(imp.label.into(), json!({ "add_error": e }));
                continue;
            }
            let counts = rule_counts_in(&imp.host_name)?;
            let problem = netfilter_problem(imp.backend, &counts, || {
                net::ns_exec(&imp.host_name, &["iptables-save", "-t", "nat"]).unwrap_or_default()
            });
            if let Some(p) = &problem {
                progress(&format!("{}: WARNING: {p}", imp.label));
            }
            let d = del(imp, &CHAIN, &mut att);
            if let Some(e) = &d.error {
                progress(&format!(
                    "{}: WARNING: netfilter check: chain DEL failed: {e}",
                    imp.label
                ));
            }
            out.insert(
                imp.label.into(),
                json!({ "rules_per_table": counts, "problem": problem, "del_error": d.error }),
            );
        }
        drop_containers(&names);
        self.detail
            .insert("netfilter_after_one_chain_add".into(), Value::Object(out));
        Ok(())
    }

    /// Scenario 3: chain ADDs up to N containers without deleting; probe ADD/DEL latency
    /// at each checkpoint; then DEL all. An implementation whose ADD fails stops growing
    /// (and is no longer probed); the others go on.
    ///
    /// # Errors
    /// On set-up failure or interruption.
    pub fn scenario3(&mut self) -> Result<(), String> {
        let n = self.opts.counts.scale;
        let probes = self.opts.counts.probes;
        let ni = self.n();
        let labels = self.labels();
        let iptables = self.opts.backend == Backend::Iptables;
        let mut points: Vec<usize> = [1, 10, 100, 500, 1000]
            .into_iter()
            .filter(|&k| k < n)
            .collect();
        points.push(n);
        progress(&format!(
            "scenario 3: scale to {n} containers, probes x{probes} at {points:?}"
        ));
        let started = Instant::now();
        // n-1 background containers plus one probe namespace per implementation.
        let names = self.containers("s3-", n)?;
        let mut probe: Vec<Attachment> = names
            .iter()
            .map(|nm| Attachment::new(String::new(), &nm[n - 1], 40_000))
            .collect();
        self.warmup(&CHAIN, &mut probe)?;
        let mut bg: Vec<Vec<Attachment>> = vec![Vec::new(); ni];
        // Why an implementation stopped growing (its first failed ADD).
        let mut stopped: Vec<Option<String>> = vec![None; ni];
        let mut bulk_add = self.samples();
        let mut probe_add: Vec<Samples> = Vec::new();
        let mut probe_del: Vec<Samples> = Vec::new();
        let mut rules_at: Vec<Value> = Vec::new();
        let mut floor_at: Vec<Vec<Vec<Duration>>> = Vec::new();
        let mut prog = Progress::new("scenario 3: chain ADDs", n - 1);
        let mut idx = 0;
        for &k in &points {
            while idx < k - 1 {
                for i in order(idx, ni) {
                    cleanup::check()?;
                    if stopped[i].is_some() {
                        continue;
                    }
                    let slot = u32::try_from(idx).unwrap_or(0);
                    let mut att = Attachment::new(format!("scale-{idx}"), &names[i][idx], slot);
                    let o = add(&self.impls[i], &CHAIN, &mut att);
                    bulk_add.record(i, labels[i], &format!("ADD #{}", idx + 1), &o);
                    if let Some(e) = o.error {
                        progress(&format!(
                            "scenario 3: {} stops growing at {idx} containers",
                            labels[i]
                        ));
                        stopped[i] = Some(format!(
                            "stopped at {idx} containers: ADD #{}: {e}",
                            idx + 1
                        ));
                    } else {
                        bg[i].push(att);
                    }
                }
                idx += 1;
                prog.tick(idx, || {
                    let last: Vec<String> = labels
                        .iter()
                        .zip(&bulk_add.wall)
                        .map(|(l, w)| {
                            format!("{l} {:.1} ms", w.last().map_or(f64::NAN, |d| ms(*d)))
                        })
                        .collect();
                    format!("last chain ADD {}", last.join(", "))
                });
            }
            let active: Vec<usize> = (0..ni).filter(|&i| stopped[i].is_none()).collect();
            let mut pa = self.samples();
            let mut pd = self.samples();
            for p in 0..probes {
                for i in order(p, ni) {
                    cleanup::check()?;
                    if !active.contains(&i) {
                        continue;
                    }
                    probe[i].id = format!("probe-{k}-{p}");
                    let o = add(&self.impls[i], &CHAIN, &mut probe[i]);
                    pa.record(i, labels[i], &format!("probe ADD at {k}"), &o);
                }
                for i in order(p, ni) {
                    cleanup::check()?;
                    if probe[i].result.is_some() {
                        let o = del(&self.impls[i], &CHAIN, &mut probe[i]);
                        pd.record(i, labels[i], &format!("probe DEL at {k}"), &o);
                    }
                }
            }
            let meds: Vec<String> = labels
                .iter()
                .zip(pa.medians())
                .map(|(l, m)| format!("{l} {:.1} ms", m.unwrap_or(f64::NAN)))
                .collect();
            progress(&format!(
                "scenario 3: at {k} containers: chain ADD median {}",
                meds.join(", ")
            ));
            // What one iptables change costs at this size, whoever makes it.
            let mut floor: Vec<Vec<Duration>> = vec![Vec::new(); ni];
            for p in 0..probes {
                for i in order(p, ni) {
                    cleanup::check()?;
                    if !iptables || !active.contains(&i) {
                        continue;
                    }
                    match self.impls[i].time_nat_rule_add() {
                        Ok(d) => floor[i].push(d),
                        Err(e) => progress(&format!("scenario 3: floor at {k}: {e}")),
                    }
                }
            }
            floor_at.push(floor);
            rules_at.push(json!({ "containers": k - 1, "rules_per_table": self.rule_counts() }));
            probe_add.push(pa);
            probe_del.push(pd);
        }
        let add_phase = started.elapsed();

        let mut bulk_del = self.samples();
        let del_started = Instant::now();
        let count = bg.iter().map(Vec::len).max().unwrap_or(0);
        let mut prog = Progress::new("scenario 3: chain DELs", count);
        for idx in 0..count {
            for i in order(idx, ni) {
                cleanup::check()?;
                if let Some(att) = bg[i].get_mut(idx)
                    && att.result.is_some()
                {
                    let o = del(&self.impls[i], &CHAIN, att);
                    bulk_del.record(i, labels[i], &format!("DEL #{}", idx + 1), &o);
                }
            }
            prog.tick(idx + 1, String::new);
        }
        let del_phase = del_started.elapsed();
        drop_containers(&names);

        let sc = format!("3 scale to {n}");
        let stop_note: Vec<String> = labels
            .iter()
            .zip(&stopped)
            .filter_map(|(l, s)| {
                s.as_ref()
                    .map(|s| format!("{l} {}", s.chars().take(100).collect::<String>()))
            })
            .collect();
        let stop_note = stop_note.join("; ");
        for (what, series) in [("ADD", &probe_add), ("DEL", &probe_del)] {
            for (j, &k) in points.iter().enumerate() {
                let s = &series[j];
                let mut note = s.fail_note(&labels);
                if !stop_note.is_empty() && s.wall.iter().any(Vec::is_empty) {
                    note = format!(
                        "{note}{}{stop_note}",
                        if note.is_empty() { "" } else { "; " }
                    );
                }
                self.rows.push(
                    Row::compare(
                        &sc,
                        &format!("chain {what} at {k}"),
                        "ms",
                        s.summaries(),
                        None,
                    )
                    .note(note),
                );
            }
        }
        if iptables {
            for (j, &k) in points.iter().enumerate() {
                self.rows.push(Row::compare(
                    &sc,
                    &format!("floor: iptables-restore of 1 rule at {k}"),
                    "ms",
                    floor_at[j].iter().map(|v| Summary::of_ms(v)).collect(),
                    None,
                ));
            }
        }
        let growth: Vec<Option<f64>> = (0..ni)
            .map(|i| {
                let first = probe_add.first()?.summaries()[i]?.median;
                let last = probe_add.last()?.summaries()[i]?.median;
                Some(last / first)
            })
            .collect();
        self.rows.push(
            Row::single(&sc, &format!("ADD at {n} / ADD at 1"), "x", &growth).check(Check {
                value: growth[0].unwrap_or(f64::NAN),
                limit: 1.3,
                text: "ours <= 1.3".into(),
            }),
        );
        let sum_s = |v: &[Duration]| Some(v.iter().sum::<Duration>().as_secs_f64());
        for (op, bulk) in [("ADD", &bulk_add), ("DEL", &bulk_del)] {
            let totals: Vec<Option<f64>> = bulk.wall.iter().map(|w| sum_s(w)).collect();
            self.rows.push(
                Row::single(
                    &sc,
                    &format!("all {} chain {op}s, total", n - 1),
                    "s",
                    &totals,
                )
                .note(bulk.fail_note(&labels)),
            );
        }
        let points_json: Vec<Value> = points
            .iter()
            .enumerate()
            .map(|(j, k)| {
                let floor: Map<String, Value> = labels
                    .iter()
                    .zip(&floor_at[j])
                    .map(|(l, v)| (format!("{l}_host"), ms_list(v)))
                    .collect();
                let per = |m: Vec<Option<f64>>| -> Map<String, Value> {
                    labels
                        .iter()
                        .zip(m)
                        .map(|(l, v)| ((*l).to_owned(), json!(v.map(round3))))
                        .collect()
                };
                json!({
                    "containers": k,
                    "add_median_ms": per(probe_add[j].medians()),
                    "del_median_ms": per(probe_del[j].medians()),
                    "add": probe_add[j].to_json(&labels),
                    "del": probe_del[j].to_json(&labels),
                    "floor_iptables_restore_ms": floor,
                })
            })
            .collect();
        let per_impl = |v: &[Option<String>]| -> Map<String, Value> {
            labels
                .iter()
                .zip(v)
                .map(|(l, s)| ((*l).to_owned(), json!(s)))
                .collect()
        };
        let d = json!({
            "containers": n,
            "probes": probes,
            "points": points_json,
            "growth_add_last_over_first": labels.iter().zip(&growth).map(|(l, g)| ((*l).to_owned(), json!(g.map(round3)))).collect::<Map<String, Value>>(),
            "stopped": per_impl(&stopped),
            "bulk_add": bulk_add.to_json(&labels),
            "bulk_del": bulk_del.to_json(&labels),
            "rules": rules_at,
            "add_phase_s": round3(add_phase.as_secs_f64()),
            "del_phase_s": round3(del_phase.as_secs_f64()),
        });
        self.detail.insert("3_scale".into(), d);
        progress(&format!(
            "scenario 3 took {:.0} s (ADD phase {:.0} s, DEL phase {:.0} s)",
            started.elapsed().as_secs_f64(),
            add_phase.as_secs_f64(),
            del_phase.as_secs_f64()
        ));
        Ok(())
    }

    /// Rules per nftables table in each host namespace (untimed).
    fn rule_counts(&self) -> Value {
        self.impls
            .iter()
            .map(|imp| {
                (
                    imp.label.to_owned(),
                    json!(rule_counts_in(&imp.host_name).ok()),
                )
            })
            .collect::<Map<String, Value>>()
            .into()
    }

    /// Runs `op` (chain ADD or DEL) for every attachment at once, each on its own thread
    /// released by one barrier. Returns the wall time until the last finished.
    fn burst(&self, i: usize, atts: &mut [Attachment], add: bool) -> (Duration, Vec<ChainOutcome>) {
        let imp = &self.impls[i];
        let barrier = Barrier::new(atts.len() + 1);
        std::thread::scope(|s| {
            let handles: Vec<_> = atts
                .iter_mut()
                .map(|att| {
                    let barrier = &barrier;
                    s.spawn(move || {
                        barrier.wait();
                        let out = if add {
                            imp.chain_add(&CHAIN, att, false)
                        } else {
                            imp.chain_del(&CHAIN, att, false)
                        };
                        (out, Instant::now())
                    })
                })
                .collect();
            barrier.wait();
            let start = Instant::now();
            let mut outs = Vec::new();
            let mut end = start;
            for h in handles {
                if let Ok((o, t)) = h.join() {
                    end = end.max(t);
                    outs.push(o);
                }
            }
            (end.duration_since(start), outs)
        })
    }

    /// Scenario 4: N chain ADDs started at once, then N DELs.
    ///
    /// # Errors
    /// On set-up failure or interruption.
    pub fn scenario4(&mut self) -> Result<(), String> {
        let n = self.opts.counts.parallel;
        let reps = self.opts.counts.parallel_reps;
        let ni = self.n();
        let labels = self.labels();
        progress(&format!(
            "scenario 4: {n} parallel chain ADDs then DELs, x{reps}"
        ));
        let names = self.containers("s4-", n)?;
        let mut atts: Vec<Vec<Attachment>> = names
            .iter()
            .map(|nm| {
                nm.iter()
                    .enumerate()
                    .map(|(j, ns)| {
                        let slot = 41_000 + u32::try_from(j).unwrap_or(0);
                        Attachment::new(String::new(), ns, slot)
                    })
                    .collect()
            })
            .collect();
        let mut add_wall: Vec<Vec<Duration>> = vec![Vec::new(); ni];
        let mut del_wall: Vec<Vec<Duration>> = vec![Vec::new(); ni];
        let mut add_each = self.samples();
        let mut fails = vec![Failures::default(); ni];
        let mut dups = vec![0usize; ni];
        let mut prog = Progress::new("scenario 4: repetitions", reps);
        for rep in 0..reps {
            for i in order(rep, ni) {
                cleanup::check()?;
                for (j, a) in atts[i].iter_mut().enumerate() {
                    a.id = format!("par-{rep}-{j}");
                }
                let (wall, outs) = self.burst(i, &mut atts[i], true);
                add_wall[i].push(wall);
                let mut seen = HashSet::new();
                for o in &outs {
                    add_each.record(i, labels[i], "parallel ADD", o);
                    if let Some(e) = &o.error {
                        fails[i].record(labels[i], "parallel ADD", e);
                    }
                }
                for a in &atts[i] {
                    if let Some(r) = &a.result {
                        for ip in net::result_ips(r) {
                            if !seen.insert(ip) {
                                dups[i] += 1;
                            }
                        }
                    }
                }
                progress(&format!(
                    "scenario 4: {} {n} ADDs in {:.0} ms, {} failed so far, {} unique IPs",
                    labels[i],
                    ms(wall),
                    fails[i].count,
                    seen.len()
                ));
            }
            for i in order(rep, ni) {
                cleanup::check()?;
                let (wall, outs) = self.burst(i, &mut atts[i], false);
                del_wall[i].push(wall);
                for o in &outs {
                    if let Some(e) = &o.error {
                        fails[i].record(labels[i], "parallel DEL", e);
                    }
                }
            }
            prog.tick(rep + 1, String::new);
        }
        drop_containers(&names);
        let sc = format!("4 parallel x{n}");
        let summaries = |w: &[Vec<Duration>]| w.iter().map(|v| Summary::of_ms(v)).collect();
        let dup_note: Vec<String> = labels
            .iter()
            .zip(&dups)
            .map(|(l, d)| format!("{l} {d}"))
            .collect();
        self.rows.push(
            Row::compare(
                &sc,
                "chain ADD wall",
                "ms",
                summaries(&add_wall),
                Some(0.25),
            )
            .note(format!(
                "duplicate IPs: {}{}{}",
                dup_note.join(", "),
                if fails.iter().any(|f| f.count > 0) {
                    "; "
                } else {
                    ""
                },
                fail_note(&labels, &fails)
            )),
        );
        let errors: Vec<Option<f64>> = (0..ni)
            .map(|i| Some((fails[i].count + dups[i]) as f64))
            .collect();
        self.rows.push(
            Row::single(&sc, "all ADDs succeed, unique IPs", "errors", &errors).check(Check {
                value: errors[0].unwrap_or(f64::NAN),
                limit: 0.0,
                text: "ours = 0".into(),
            }),
        );
        self.rows.push(Row::compare(
            &sc,
            "chain DEL wall",
            "ms",
            summaries(&del_wall),
            None,
        ));
        self.rows.push(Row::compare(
            &sc,
            "  single chain ADD inside the burst",
            "ms",
            add_each.summaries(),
            None,
        ));
        let mut d = Map::new();
        d.insert("parallel".into(), json!(n));
        d.insert("reps".into(), json!(reps));
        for (i, l) in labels.iter().enumerate() {
            d.insert(
                (*l).into(),
                json!({
                    "add_wall_ms": ms_list(&add_wall[i]),
                    "del_wall_ms": ms_list(&del_wall[i]),
                    "failures": fails[i].to_json(),
                    "duplicate_ips": dups[i],
                }),
            );
        }
        d.insert("single_add_in_burst".into(), add_each.to_json(&labels));
        self.detail.insert("4_parallel".into(), Value::Object(d));
        Ok(())
    }

    /// Scenario 5: peak RSS of each binary (its own `VmHWM` at exit, via ptrace) and of
    /// the helper processes it runs, the processes per call, and binary sizes.
    ///
    /// # Errors
    /// On set-up failure or interruption.
    pub fn scenario5(&mut self) -> Result<(), String> {
        let reps = self.opts.counts.rss_reps;
        let ni = self.n();
        let labels = self.labels();
        progress(&format!(
            "scenario 5: peak RSS, processes per call, binary sizes, x{reps}"
        ));
        let names = self.containers("s5-", 1)?;
        let plugins = ["bridge", "host-local", "portmap"];
        // own[impl][plugin] = per-rep max over the plugin's ADD and DEL, in MiB; tree = the
        // largest process of the call (the plugin or a helper it ran).
        let mut own: Vec<BTreeMap<&str, Vec<f64>>> = vec![BTreeMap::new(); ni];
        let mut tree: Vec<BTreeMap<&str, Vec<f64>>> = vec![BTreeMap::new(); ni];
        // procs[impl]["portmap ADD"] = process names of the last such call; split[impl]
        // ["bridge ADD"] = (anon, file) RSS of the plugin process at its exit, KiB.
        let mut procs: Vec<BTreeMap<String, Vec<String>>> = vec![BTreeMap::new(); ni];
        let mut split: Vec<BTreeMap<String, Value>> = vec![BTreeMap::new(); ni];
        let mut errors: Vec<String> = Vec::new();
        let mut prog = Progress::new("scenario 5: repetitions", reps);
        for rep in 0..reps {
            for i in order(rep, ni) {
                cleanup::check()?;
                let imp = &self.impls[i];
                let mut att = Attachment::new(format!("rss-{rep}"), &names[i][0], 42_002);
                let mut peaks: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
                let mut note = |p: &'static str, cmd: &str, o: &crate::exec::Outcome| {
                    if !o.ok() {
                        errors.push(format!("{} {p} {cmd}: {}", imp.label, o.describe()));
                    }
                    let e = peaks.entry(p).or_default();
                    if let Some(t) = &o.tree {
                        e.0 = e.0.max(t.root_peak_kib.unwrap_or(0));
                        e.1 = e.1.max(t.max_peak_kib());
                        let list = t.procs.iter().rev().map(|p| p.name.clone()).collect();
                        procs[i].insert(format!("{p} {cmd}"), list);
                        if let Some(root) = t.procs.last() {
                            split[i].insert(
                                format!("{p} {cmd}"),
                                json!({ "peak_kib": root.peak_kib, "anon_kib": root.anon_kib, "file_kib": root.file_kib }),
                            );
                        }
                    }
                };
                for cmd in ["ADD", "DEL"] {
                    let hl = imp.host_local(&CHAIN, cmd, &att, true);
                    note("host-local", cmd, &hl);
                }
                att.id = format!("rss-chain-{rep}");
                let a = imp.chain_add(&CHAIN, &mut att, true);
                for s in &a.steps {
                    note(s.plugin, "ADD", &s.outcome);
                }
                let d = imp.chain_del(&CHAIN, &mut att, true);
                for s in &d.steps {
                    note(s.plugin, "DEL", &s.outcome);
                }
                for (p, (o, t)) in peaks {
                    own[i].entry(p).or_default().push(o as f64 / 1024.0);
                    tree[i].entry(p).or_default().push(t as f64 / 1024.0);
                }
            }
            prog.tick(rep + 1, String::new);
        }
        drop_containers(&names);
        for e in errors.iter().take(5) {
            progress(&format!("scenario 5: {e}"));
        }
        let sc = "5 memory and size";
        let get = |m: &[BTreeMap<&str, Vec<f64>>], p: &str| -> Vec<Option<Summary>> {
            m.iter()
                .map(|x| x.get(p).and_then(|v| Summary::of(v)))
                .collect()
        };
        // Own peak RSS: a guard, not a goal (BENCHMARKS.md, "Memory").
        for (what, m, limit) in [
            ("peak RSS, own", &own, Some(0.75)),
            ("call: largest process", &tree, None),
        ] {
            for p in plugins {
                let row = Row::compare(sc, &format!("{p} {what}"), "MiB", get(m, p), limit);
                self.rows.push(row);
            }
        }
        for p in plugins {
            let anon: Vec<Option<f64>> = split
                .iter()
                .map(|m| {
                    let kib = ["ADD", "DEL"]
                        .iter()
                        .filter_map(|c| m.get(&format!("{p} {c}"))?.get("anon_kib")?.as_u64())
                        .max()?;
                    Some(kib as f64 / 1024.0)
                })
                .collect();
            self.rows.push(Row::single(
                sc,
                &format!("{p} anonymous RSS at exit"),
                "MiB",
                &anon,
            ));
        }
        for key in ["bridge ADD", "bridge DEL", "portmap ADD", "portmap DEL"] {
            let count: Vec<Option<f64>> = procs
                .iter()
                .map(|m| m.get(key).map(|v| v.len() as f64))
                .collect();
            let lists: Vec<String> = labels
                .iter()
                .zip(&procs)
                .map(|(l, m)| {
                    format!(
                        "{l}: {}",
                        m.get(key).map(|v| v.join(" ")).unwrap_or_default()
                    )
                })
                .collect();
            self.rows.push(
                Row::single(sc, &format!("{key}: processes"), "count", &count)
                    .note(lists.join("; ")),
            );
        }
        let mut bins = Map::new();
        for p in plugins {
            let facts: Vec<Value> = self
                .impls
                .iter()
                .map(|imp| machine::binary(&imp.bin(p)))
                .collect();
            let size: Vec<Option<f64>> = facts
                .iter()
                .map(|v| {
                    v.get("size_bytes")
                        .and_then(Value::as_u64)
                        .map(|b| b as f64 / 1_000_000.0)
                })
                .collect();
            let kind: Vec<String> = labels
                .iter()
                .zip(&facts)
                .map(|(l, v)| {
                    let st = v.get("static").and_then(Value::as_bool).unwrap_or(false);
                    let sp = v.get("stripped").and_then(Value::as_bool).unwrap_or(false);
                    format!(
                        "{l} {}{}",
                        if st { "static" } else { "dynamic" },
                        if sp { ", stripped" } else { "" }
                    )
                })
                .collect();
            self.rows.push(
                Row::single(sc, &format!("{p} binary size"), "MB", &size).note(kind.join("; ")),
            );
            bins.insert(
                p.into(),
                labels
                    .iter()
                    .map(|l| (*l).to_owned())
                    .zip(facts)
                    .collect::<Map<String, Value>>()
                    .into(),
            );
        }
        let per_impl = |m: &[BTreeMap<&str, Vec<f64>>]| -> Value {
            labels
                .iter()
                .zip(m)
                .map(|(l, side)| {
                    let v: Map<String, Value> = side
                        .iter()
                        .map(|(k, v)| {
                            (
                                (*k).to_owned(),
                                json!(v.iter().map(|x| round3(*x)).collect::<Vec<_>>()),
                            )
                        })
                        .collect();
                    ((*l).to_owned(), Value::Object(v))
                })
                .collect::<Map<String, Value>>()
                .into()
        };
        let by_label = |v: Vec<Value>| -> Value {
            labels
                .iter()
                .map(|l| (*l).to_owned())
                .zip(v)
                .collect::<Map<String, Value>>()
                .into()
        };
        let d = json!({
            "reps": reps,
            "own_peak_mib": per_impl(&own),
            "largest_process_mib": per_impl(&tree),
            "processes": by_label(procs.iter().map(|m| json!(m)).collect()),
            "rss_at_exit_kib": by_label(split.iter().map(|m| json!(m)).collect()),
            "binaries": bins,
            "errors": errors,
        });
        self.detail.insert("5_memory_size".into(), d);
        Ok(())
    }
}

/// Names of `count` container namespaces per implementation, created with `ip -batch`
/// (untimed).
///
/// # Errors
/// When a namespace cannot be created.
pub fn containers_of<'a>(
    impls: impl Iterator<Item = &'a Impl>,
    group: &str,
    count: usize,
) -> Result<Vec<Vec<String>>, String> {
    let t = Instant::now();
    let names: Vec<Vec<String>> = impls.map(|i| i.container_names(group, count)).collect();
    let all: Vec<String> = names.iter().flatten().cloned().collect();
    net::create_netns(&all)?;
    if all.len() > 100 {
        progress(&format!(
            "created {} container namespaces in {:.1} s (not timed)",
            all.len(),
            t.elapsed().as_secs_f64()
        ));
    }
    Ok(names)
}

/// Deletes container namespaces and forgets them.
pub fn drop_containers(names: &[Vec<String>]) {
    for n in names {
        let left = cleanup::delete_netns(n);
        let gone: Vec<String> = n.iter().filter(|x| !left.contains(x)).cloned().collect();
        cleanup::forget_netns(&gone);
    }
}

/// `reps` untimed ADD/DEL pairs per implementation (`atts[i]` belongs to `impls[i]`);
/// failures are reported, not fatal.
///
/// # Errors
/// Only on interruption.
pub fn warmup(
    impls: &[&Impl],
    net: &Net,
    atts: &mut [Attachment],
    reps: usize,
) -> Result<(), String> {
    for w in 0..reps {
        for i in order(w, impls.len()) {
            cleanup::check()?;
            atts[i].id = format!("warmup-{w}");
            let a = add(impls[i], net, &mut atts[i]);
            if let Some(e) = a.error {
                progress(&format!("{}: warm-up ADD failed: {e}", impls[i].label));
                continue;
            }
            let d = del(impls[i], net, &mut atts[i]);
            if let Some(e) = d.error {
                progress(&format!("{}: warm-up DEL failed: {e}", impls[i].label));
            }
        }
    }
    Ok(())
}

/// What is wrong with the tables after one chain ADD with `backend`, if anything.
/// `nat_save` gives `iptables-save -t nat` (asked only for the iptables backend).
fn netfilter_problem(
    backend: Backend,
    counts: &BTreeMap<String, usize>,
    nat_save: impl FnOnce() -> String,
) -> Option<String> {
    const IPTABLES: [&str; 8] = [
        "ip nat",
        "ip filter",
        "ip mangle",
        "ip raw",
        "ip6 nat",
        "ip6 filter",
        "ip6 mangle",
        "ip6 raw",
    ];
    match backend {
        Backend::Iptables => {
            let other: Vec<&String> = counts
                .keys()
                .filter(|t| !IPTABLES.contains(&t.as_str()))
                .collect();
            let hostport = nat_save().contains("CNI-HOSTPORT-DNAT");
            (!hostport || !other.is_empty()).then(|| {
                format!(
                    "iptables backend: CNI-HOSTPORT-DNAT {}, other nft tables {other:?}",
                    if hostport { "present" } else { "missing" }
                )
            })
        }
        Backend::Nftables => {
            let has = |t: &str| counts.get(t).is_some_and(|&n| n > 0);
            let ok = has("ip cni_hostport")
                && has("inet cni_plugins_masquerade")
                && !counts.contains_key("ip nat");
            (!ok).then(|| format!("nftables backend: unexpected tables {counts:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_rotates_through_every_implementation() {
        assert_eq!(order(0, 2), vec![0, 1]);
        assert_eq!(order(1, 2), vec![1, 0]);
        assert_eq!(order(4, 3), vec![1, 2, 0]);
        for rep in 0..3 {
            let mut o = order(rep, 3);
            o.sort_unstable();
            assert_eq!(o, vec![0, 1, 2]);
        }
    }

    #[test]
    fn rule_counts_per_table() {
        let text = "\
table ip nat { # handle 1
\tchain POSTROUTING { # handle 2
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tcounter jump CNI-abc # handle 5
\t}
}
# Warning: table ip filter is managed by iptables-nft, do not touch!
table inet cni_plugins_masquerade { # handle 3
\tset s { # handle 4
\t\ttype ipv4_addr
\t}
\tchain postrouting { # handle 1
\t\tip saddr 10.0.0.2 masquerade comment \"x\" # handle 6
\t\tip saddr 10.0.0.3 masquerade # handle 7
\t}
}
table ip cni_hostport { # handle 9
}
";
        let c = parse_rule_counts(text);
        assert_eq!(c["ip nat"], 1);
        assert_eq!(c["inet cni_plugins_masquerade"], 2);
        assert_eq!(c["ip cni_hostport"], 0);
        assert_eq!(c.len(), 3);
        assert!(netfilter_problem(Backend::Nftables, &c, String::new).is_some());
        let ok: BTreeMap<String, usize> = [
            ("ip cni_hostport".to_owned(), 4),
            ("inet cni_plugins_masquerade".to_owned(), 1),
        ]
        .into();
        assert!(netfilter_problem(Backend::Nftables, &ok, String::new).is_none());
        let ipt: BTreeMap<String, usize> = [("ip nat".to_owned(), 9)].into();
        assert!(
            netfilter_problem(Backend::Iptables, &ipt, || "-A CNI-HOSTPORT-DNAT -j X"
                .into())
            .is_none()
        );
        assert!(netfilter_problem(Backend::Iptables, &ok, String::new).is_some());
    }
}
