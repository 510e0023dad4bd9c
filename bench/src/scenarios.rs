//! The five scenarios of the benchmark (BENCHMARKS.md). Both implementations run in the
//! same process, interleaved per repetition (A B, then B A, …) so that load changes on a
//! shared machine hit both alike. Container namespaces are created before any timing.

use std::collections::{BTreeMap, HashSet};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::cleanup;
use crate::cli::Opts;
use crate::machine;
use crate::net::{self, Attachment, CHAIN, ChainOutcome, Impl, Net, SIMPLE};
use crate::report::{Check, Row};
use crate::stats::{Summary, ms, ms_list, round3};

/// Shared state of a run.
#[derive(Debug)]
pub struct Ctx {
    /// `[ours, reference]`.
    pub impls: [Impl; 2],
    /// Options.
    pub opts: Opts,
    /// Table rows so far.
    pub rows: Vec<Row>,
    /// Per-scenario details for the JSON (samples, failures, timings).
    pub detail: Map<String, Value>,
}

/// Index order for repetition `rep`: A B on even, B A on odd repetitions.
fn order(rep: usize) -> [usize; 2] {
    if rep.is_multiple_of(2) {
        [0, 1]
    } else {
        [1, 0]
    }
}

fn progress(msg: &str) {
    eprintln!("cni-bench: {msg}");
}

/// Failures of one implementation in one scenario.
#[derive(Debug, Default, Clone)]
struct Failures {
    count: usize,
    first: Option<String>,
}

impl Failures {
    fn record(&mut self, label: &str, what: &str, out: &ChainOutcome) {
        if let Some(e) = &out.error {
            self.count += 1;
            if self.first.is_none() {
                progress(&format!("{label}: {what} failed: {e}"));
                self.first = Some(format!("{what}: {e}"));
            }
        }
    }

    fn to_json(&self) -> Value {
        json!({ "count": self.count, "first": self.first })
    }
}

fn cpu(out: &ChainOutcome) -> Duration {
    out.steps.iter().map(|s| s.outcome.exit.cpu()).sum()
}

/// Samples of one operation for both implementations.
#[derive(Debug, Default, Clone)]
struct Samples {
    wall: [Vec<Duration>; 2],
    cpu: [Vec<Duration>; 2],
    steps: [BTreeMap<&'static str, Vec<Duration>>; 2],
    fails: [Failures; 2],
}

impl Samples {
    fn record(&mut self, i: usize, label: &str, what: &str, out: &ChainOutcome) {
        if out.ok() {
            self.wall[i].push(out.wall);
            self.cpu[i].push(cpu(out));
            for s in &out.steps {
                self.steps[i]
                    .entry(s.plugin)
                    .or_default()
                    .push(s.outcome.wall);
            }
        } else {
            self.fails[i].record(label, what, out);
        }
    }

    fn summary(&self, i: usize) -> Option<Summary> {
        Summary::of_ms(&self.wall[i])
    }

    fn cpu_summary(&self, i: usize) -> Option<Summary> {
        Summary::of_ms(&self.cpu[i])
    }

    fn step_summary(&self, i: usize, plugin: &str) -> Option<Summary> {
        Summary::of_ms(self.steps[i].get(plugin).map_or(&[][..], Vec::as_slice))
    }

    fn fail_note(&self) -> String {
        let [o, r] = &self.fails;
        if o.count + r.count == 0 {
            String::new()
        } else {
            format!("failures: ours {}, ref {}", o.count, r.count)
        }
    }

    fn to_json(&self, ctx: &Ctx) -> Value {
        let mut m = Map::new();
        for (i, imp) in ctx.impls.iter().enumerate() {
            let steps: Map<String, Value> = self.steps[i]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ms_list(v)))
                .collect();
            m.insert(
                imp.label.into(),
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

impl Ctx {
    fn add(&self, i: usize, net: &Net, att: &mut Attachment) -> ChainOutcome {
        let out = self.impls[i].chain_add(net, att, false);
        if !out.ok() {
            // Clean up a half-done ADD like a runtime would (DEL without prevResult).
            let _ = self.impls[i].chain_del(net, att, false);
        }
        out
    }

    fn del(&self, i: usize, net: &Net, att: &mut Attachment) -> ChainOutcome {
        self.impls[i].chain_del(net, att, false)
    }

    fn containers(&self, group: &str, count: usize) -> Result<[Vec<String>; 2], String> {
        let t = Instant::now();
        let names = [
            self.impls[0].container_names(group, count),
            self.impls[1].container_names(group, count),
        ];
        net::create_netns(&names[0])?;
        net::create_netns(&names[1])?;
        if count > 50 {
            progress(&format!(
                "created {} container namespaces in {:.1} s (not timed)",
                2 * count,
                t.elapsed().as_secs_f64()
            ));
        }
        Ok(names)
    }

    fn drop_containers(names: &[Vec<String>; 2]) {
        for n in names {
            let left = cleanup::delete_netns(n);
            let gone: Vec<String> = n.iter().filter(|x| !left.contains(x)).cloned().collect();
            cleanup::forget_netns(&gone);
        }
    }

    /// Untimed ADD/DEL pairs so that both sides have the bridge, the netfilter chains and
    /// a warm page cache before the first sample.
    fn warmup(&self, net: &Net, atts: &mut [Attachment; 2]) -> Result<(), String> {
        for w in 0..self.opts.warmup {
            for i in order(w) {
                cleanup::check()?;
                atts[i].id = format!("warmup-{w}");
                let a = self.add(i, net, &mut atts[i]);
                if let Some(e) = a.error {
                    return Err(format!("{}: warm-up ADD failed: {e}", self.impls[i].label));
                }
                let d = self.del(i, net, &mut atts[i]);
                if let Some(e) = d.error {
                    return Err(format!("{}: warm-up DEL failed: {e}", self.impls[i].label));
                }
            }
        }
        Ok(())
    }

    /// Repeated ADD then DEL of one container on `net`, interleaved.
    fn add_del_loop(&self, net: &Net, group: &str, reps: usize) -> Result<[Samples; 2], String> {
        let names = self.containers(group, 1)?;
        let mut atts = [0, 1].map(|i| Attachment::new(String::new(), &names[i][0], 42_000));
        self.warmup(net, &mut atts)?;
        let mut add = Samples::default();
        let mut del = Samples::default();
        for rep in 0..reps {
            for i in order(rep) {
                cleanup::check()?;
                atts[i].id = format!("{group}{rep}");
                let o = self.add(i, net, &mut atts[i]);
                add.record(i, self.impls[i].label, "ADD", &o);
            }
            for i in order(rep) {
                cleanup::check()?;
                if atts[i].result.is_some() {
                    let o = self.del(i, net, &mut atts[i]);
                    del.record(i, self.impls[i].label, "DEL", &o);
                }
            }
        }
        Self::drop_containers(&names);
        Ok([add, del])
    }

    /// Scenario 1: bridge + host-local ADD then DEL of one container.
    ///
    /// # Errors
    /// On set-up failure or interruption.
    pub fn scenario1(&mut self) -> Result<(), String> {
        let reps = self.opts.reps;
        progress(&format!("scenario 1: bridge+host-local ADD/DEL x{reps}"));
        let [add, del] = self.add_del_loop(&SIMPLE, "s1-", reps)?;
        let sc = "1 bridge+host-local";
        // Start-up floor: the same spawn path with no network work (VERSION).
        let mut version: [Vec<Duration>; 2] = Default::default();
        let att = Attachment::new("version".into(), "none", 0);
        for rep in 0..reps {
            for i in order(rep) {
                cleanup::check()?;
                let o = self.impls[i].version(&att);
                if o.ok() {
                    version[i].push(o.wall);
                }
            }
        }
        self.rows.push(
            Row::compare(sc, "ADD", "ms", add.summary(0), add.summary(1), Some(0.25))
                .note(add.fail_note()),
        );
        self.rows.push(
            Row::compare(sc, "DEL", "ms", del.summary(0), del.summary(1), Some(0.6))
                .note(del.fail_note()),
        );
        self.rows.push(Row::compare(
            sc,
            "ADD CPU (user+sys)",
            "ms",
            add.cpu_summary(0),
            add.cpu_summary(1),
            None,
        ));
        self.rows.push(Row::compare(
            sc,
            "VERSION (start-up floor)",
            "ms",
            Summary::of_ms(&version[0]),
            Summary::of_ms(&version[1]),
            None,
        ));
        self.rows.push(Row::compare(
            sc,
            "DEL CPU (user+sys)",
            "ms",
            del.cpu_summary(0),
            del.cpu_summary(1),
            None,
        ));
        let d = json!({
            "reps": reps,
            "add": add.to_json(self),
            "del": del.to_json(self),
            "version_ms": { "ours": ms_list(&version[0]), "reference": ms_list(&version[1]) },
        });
        self.detail.insert("1_bridge_host_local".into(), d);
        Ok(())
    }

    /// Scenario 2: the full chain, ADD in order with prevResult, DEL in reverse.
    ///
    /// # Errors
    /// On set-up failure or interruption.
    pub fn scenario2(&mut self) -> Result<(), String> {
        let reps = self.opts.chain_reps;
        progress(&format!(
            "scenario 2: chain (bridge ipMasq + host-local, portmap 2 mappings) ADD/DEL x{reps}"
        ));
        self.netfilter_check()?;
        let [add, del] = self.add_del_loop(&CHAIN, "s2-", reps)?;
        let sc = "2 chain";
        self.rows.push(
            Row::compare(sc, "ADD", "ms", add.summary(0), add.summary(1), Some(0.15))
                .note(add.fail_note()),
        );
        self.rows.push(
            Row::compare(sc, "DEL", "ms", del.summary(0), del.summary(1), Some(0.35))
                .note(del.fail_note()),
        );
        for (op, s) in [("ADD", &add), ("DEL", &del)] {
            for p in ["bridge", "portmap"] {
                self.rows.push(Row::compare(
                    sc,
                    &format!("  {op}: {p} step"),
                    "ms",
                    s.step_summary(0, p),
                    s.step_summary(1, p),
                    None,
                ));
            }
            self.rows.push(Row::compare(
                sc,
                &format!("{op} CPU (user+sys)"),
                "ms",
                s.cpu_summary(0),
                s.cpu_summary(1),
                None,
            ));
        }
        let d = json!({ "reps": reps, "add": add.to_json(self), "del": del.to_json(self) });
        self.detail.insert("2_chain".into(), d);
        Ok(())
    }

    /// Adds one container with the chain on both sides and records which netfilter
    /// tables each implementation programmed (both must use iptables, as the reference
    /// does), then deletes it.
    fn netfilter_check(&mut self) -> Result<(), String> {
        let names = self.containers("nfcheck-", 1)?;
        let mut out = Map::new();
        for (i, imp) in self.impls.iter().enumerate() {
            let mut att = Attachment::new("nfcheck".into(), &names[i][0], 42_001);
            let a = imp.chain_add(&CHAIN, &mut att, false);
            if let Some(e) = &a.error {
                let _ = imp.chain_del(&CHAIN, &mut att, false);
                return Err(format!("{}: chain ADD failed: {e}", imp.label));
            }
            let tables = net::ns_exec(&imp.host_name, &["nft", "list", "tables"])?;
            let nat = net::ns_exec(&imp.host_name, &["iptables-save", "-t", "nat"])?;
            let ipt_rules = nat.lines().filter(|l| l.starts_with("-A ")).count();
            let hostport = nat.contains("CNI-HOSTPORT-DNAT");
            let non_ipt: Vec<&str> = tables
                .lines()
                .filter(|l| {
                    !matches!(
                        l.trim(),
                        "table ip nat"
                            | "table ip filter"
                            | "table ip6 nat"
                            | "table ip6 filter"
                            | "table ip mangle"
                            | "table ip raw"
                    )
                })
                .collect();
            if !hostport || !non_ipt.is_empty() {
                progress(&format!(
                    "{}: WARNING: portmap rules not (only) in iptables: CNI-HOSTPORT-DNAT {}, other nft tables {non_ipt:?}",
                    imp.label,
                    if hostport { "present" } else { "missing" }
                ));
            }
            out.insert(
                imp.label.into(),
                json!({ "nft_tables": tables.lines().collect::<Vec<_>>(), "iptables_nat_rules": ipt_rules, "hostport_chain": hostport }),
            );
            let d = imp.chain_del(&CHAIN, &mut att, false);
            if let Some(e) = &d.error {
                return Err(format!("{}: chain DEL failed: {e}", imp.label));
            }
        }
        Self::drop_containers(&names);
        self.detail
            .insert("netfilter_after_one_chain_add".into(), Value::Object(out));
        Ok(())
    }

    /// Scenario 3: chain ADDs up to N containers without deleting; probe ADD/DEL latency
    /// at each checkpoint; then DEL all.
    ///
    /// # Errors
    /// On set-up failure or interruption.
    pub fn scenario3(&mut self) -> Result<(), String> {
        let n = self.opts.scale;
        let probes = self.opts.probes;
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
        let probe_ns = [&names[0][n - 1], &names[1][n - 1]];
        let mut probe = [0, 1].map(|i| Attachment::new(String::new(), probe_ns[i], 40_000));
        self.warmup(&CHAIN, &mut probe)?;
        let mut bg: [Vec<Attachment>; 2] = [Vec::new(), Vec::new()];
        let mut bulk_add = Samples::default();
        let mut probe_add: Vec<Samples> = Vec::new();
        let mut probe_del: Vec<Samples> = Vec::new();
        let mut rules_at: Vec<Value> = Vec::new();
        let mut floor_at: Vec<[Vec<Duration>; 2]> = Vec::new();
        let mut last_report = Instant::now();
        for &k in &points {
            while bg[0].len() < k - 1 {
                let idx = bg[0].len();
                for i in order(idx) {
                    cleanup::check()?;
                    let slot = u32::try_from(idx).unwrap_or(0);
                    let mut att = Attachment::new(format!("scale-{idx}"), &names[i][idx], slot);
                    let o = self.add(i, &CHAIN, &mut att);
                    bulk_add.record(i, self.impls[i].label, &format!("ADD #{}", idx + 1), &o);
                    bg[i].push(att);
                }
                if last_report.elapsed() > Duration::from_secs(20) {
                    last_report = Instant::now();
                    progress(&format!(
                        "scenario 3: {} containers each, last chain ADD ours {:.1} ms, ref {:.1} ms ({:.0} s)",
                        idx + 1,
                        bulk_add.wall[0].last().map_or(f64::NAN, |d| ms(*d)),
                        bulk_add.wall[1].last().map_or(f64::NAN, |d| ms(*d)),
                        started.elapsed().as_secs_f64()
                    ));
                }
            }
            let mut pa = Samples::default();
            let mut pd = Samples::default();
            for p in 0..probes {
                for i in order(p) {
                    cleanup::check()?;
                    probe[i].id = format!("probe-{k}-{p}");
                    let o = self.add(i, &CHAIN, &mut probe[i]);
                    pa.record(i, self.impls[i].label, &format!("probe ADD at {k}"), &o);
                }
                for i in order(p) {
                    cleanup::check()?;
                    if probe[i].result.is_some() {
                        let o = self.del(i, &CHAIN, &mut probe[i]);
                        pd.record(i, self.impls[i].label, &format!("probe DEL at {k}"), &o);
                    }
                }
            }
            progress(&format!(
                "scenario 3: at {k} containers: chain ADD median ours {:.1} ms, ref {:.1} ms",
                pa.summary(0).map_or(f64::NAN, |s| s.median),
                pa.summary(1).map_or(f64::NAN, |s| s.median)
            ));
            // What one iptables change costs at this size, whoever makes it.
            let mut floor: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
            for p in 0..probes {
                for i in order(p) {
                    cleanup::check()?;
                    match self.impls[i].time_nat_rule_add() {
                        Ok(d) => floor[i].push(d),
                        Err(e) => progress(&format!("scenario 3: floor at {k}: {e}")),
                    }
                }
            }
            floor_at.push(floor);
            rules_at.push(json!({ "containers": k - 1, "iptables_rules": self.rule_counts() }));
            probe_add.push(pa);
            probe_del.push(pd);
        }
        let add_phase = started.elapsed();

        let mut bulk_del = Samples::default();
        let del_started = Instant::now();
        let count = bg[0].len().max(bg[1].len());
        for idx in 0..count {
            for i in order(idx) {
                cleanup::check()?;
                if let Some(att) = bg[i].get_mut(idx)
                    && att.result.is_some()
                {
                    let o = self.del(i, &CHAIN, att);
                    bulk_del.record(i, self.impls[i].label, &format!("DEL #{}", idx + 1), &o);
                }
            }
            if last_report.elapsed() > Duration::from_secs(20) {
                last_report = Instant::now();
                progress(&format!(
                    "scenario 3: deleted {} of {count} containers each",
                    idx + 1
                ));
            }
        }
        let del_phase = del_started.elapsed();
        Self::drop_containers(&names);

        let sc = format!("3 scale to {n}");
        for (j, &k) in points.iter().enumerate() {
            let pa = &probe_add[j];
            self.rows.push(
                Row::compare(
                    &sc,
                    &format!("chain ADD at {k}"),
                    "ms",
                    pa.summary(0),
                    pa.summary(1),
                    None,
                )
                .note(pa.fail_note()),
            );
        }
        for (j, &k) in points.iter().enumerate() {
            let pd = &probe_del[j];
            self.rows.push(
                Row::compare(
                    &sc,
                    &format!("chain DEL at {k}"),
                    "ms",
                    pd.summary(0),
                    pd.summary(1),
                    None,
                )
                .note(pd.fail_note()),
            );
        }
        for (j, &k) in points.iter().enumerate() {
            self.rows.push(Row::compare(
                &sc,
                &format!("floor: iptables-restore of 1 rule at {k}"),
                "ms",
                Summary::of_ms(&floor_at[j][0]),
                Summary::of_ms(&floor_at[j][1]),
                None,
            ));
        }
        let growth = |i: usize| -> Option<f64> {
            let first = probe_add.first()?.summary(i)?.median;
            let last = probe_add.last()?.summary(i)?.median;
            Some(last / first)
        };
        let g = [growth(0), growth(1)];
        let one = |x: Option<f64>| x.and_then(|v| Summary::of(&[v]));
        let mut row = Row::compare(
            &sc,
            &format!("ADD at {n} / ADD at 1"),
            "x",
            one(g[0]),
            one(g[1]),
            None,
        );
        row = row.check(Check {
            value: g[0].unwrap_or(f64::NAN),
            limit: 1.3,
            text: "ours <= 1.3".into(),
        });
        self.rows.push(row);
        let sum_s = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64();
        self.rows.push(
            Row::compare(
                &sc,
                &format!("all {} chain ADDs, total", n - 1),
                "s",
                Summary::of(&[sum_s(&bulk_add.wall[0])]),
                Summary::of(&[sum_s(&bulk_add.wall[1])]),
                None,
            )
            .note(bulk_add.fail_note()),
        );
        self.rows.push(
            Row::compare(
                &sc,
                &format!("all {} chain DELs, total", n - 1),
                "s",
                Summary::of(&[sum_s(&bulk_del.wall[0])]),
                Summary::of(&[sum_s(&bulk_del.wall[1])]),
                None,
            )
            .note(bulk_del.fail_note()),
        );
        let points_json: Vec<Value> = points
            .iter()
            .enumerate()
            .map(|(j, k)| {
                json!({
                    "containers": k,
                    "add": probe_add[j].to_json(self),
                    "del": probe_del[j].to_json(self),
                    "floor_iptables_restore_ms": {
                        "ours_host": ms_list(&floor_at[j][0]),
                        "reference_host": ms_list(&floor_at[j][1]),
                    },
                })
            })
            .collect();
        let d = json!({
            "containers": n,
            "probes": probes,
            "points": points_json,
            "growth_add_last_over_first": { "ours": g[0].map(round3), "reference": g[1].map(round3) },
            "bulk_add": bulk_add.to_json(self),
            "bulk_del": bulk_del.to_json(self),
            "iptables_rules": rules_at,
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

    /// Lines of `iptables-save` (all tables) in each host namespace (untimed).
    fn rule_counts(&self) -> Value {
        let mut m = Map::new();
        for imp in &self.impls {
            let n = net::ns_exec(&imp.host_name, &["iptables-save"])
                .map(|s| s.lines().filter(|l| l.starts_with("-A ")).count())
                .ok();
            m.insert(imp.label.into(), json!(n));
        }
        Value::Object(m)
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
        let n = self.opts.parallel;
        let reps = self.opts.parallel_reps;
        progress(&format!(
            "scenario 4: {n} parallel chain ADDs then DELs, x{reps}"
        ));
        let names = self.containers("s4-", n)?;
        let mut atts: [Vec<Attachment>; 2] = [0, 1].map(|i| {
            (0..n)
                .map(|j| {
                    let slot = 41_000 + u32::try_from(j).unwrap_or(0);
                    Attachment::new(String::new(), &names[i][j], slot)
                })
                .collect()
        });
        let mut add_wall: [Vec<Duration>; 2] = Default::default();
        let mut del_wall: [Vec<Duration>; 2] = Default::default();
        let mut add_each = Samples::default();
        let mut fails = [0usize; 2];
        let mut dups = [0usize; 2];
        let mut first_err: [Option<String>; 2] = Default::default();
        for rep in 0..reps {
            for i in order(rep) {
                cleanup::check()?;
                for (j, a) in atts[i].iter_mut().enumerate() {
                    a.id = format!("par-{rep}-{j}");
                }
                let (wall, outs) = self.burst(i, &mut atts[i], true);
                add_wall[i].push(wall);
                let mut seen = HashSet::new();
                for o in &outs {
                    add_each.record(i, self.impls[i].label, "parallel ADD", o);
                    if let Some(e) = &o.error {
                        fails[i] += 1;
                        first_err[i].get_or_insert_with(|| e.clone());
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
                    "scenario 4: {} {n} ADDs in {:.0} ms, {} failed, {} unique IPs",
                    self.impls[i].label,
                    ms(wall),
                    fails[i],
                    seen.len()
                ));
            }
            for i in order(rep) {
                cleanup::check()?;
                let (wall, outs) = self.burst(i, &mut atts[i], false);
                del_wall[i].push(wall);
                for o in &outs {
                    if let Some(e) = &o.error {
                        fails[i] += 1;
                        first_err[i].get_or_insert_with(|| e.clone());
                    }
                }
            }
        }
        Self::drop_containers(&names);
        let sc = format!("4 parallel x{n}");
        let note = |i: usize| format!("{} failed, {} duplicate IPs", fails[i], dups[i]);
        self.rows.push(
            Row::compare(
                &sc,
                "chain ADD wall",
                "ms",
                Summary::of_ms(&add_wall[0]),
                Summary::of_ms(&add_wall[1]),
                Some(0.25),
            )
            .note(format!("ours: {}; ref: {}", note(0), note(1))),
        );
        self.rows.push(
            Row::compare(
                &sc,
                "all ADDs succeed, unique IPs",
                "errors",
                Summary::of(&[(fails[0] + dups[0]) as f64]),
                Summary::of(&[(fails[1] + dups[1]) as f64]),
                None,
            )
            .check(Check {
                value: (fails[0] + dups[0]) as f64,
                limit: 0.0,
                text: "ours = 0".into(),
            }),
        );
        self.rows.push(Row::compare(
            &sc,
            "chain DEL wall",
            "ms",
            Summary::of_ms(&del_wall[0]),
            Summary::of_ms(&del_wall[1]),
            None,
        ));
        self.rows.push(Row::compare(
            &sc,
            "  single chain ADD inside the burst",
            "ms",
            add_each.summary(0),
            add_each.summary(1),
            None,
        ));
        let side = |i: usize| {
            json!({
                "add_wall_ms": ms_list(&add_wall[i]),
                "del_wall_ms": ms_list(&del_wall[i]),
                "failures": fails[i],
                "duplicate_ips": dups[i],
                "first_error": first_err[i],
            })
        };
        let d = json!({
            "parallel": n,
            "reps": reps,
            "ours": side(0),
            "reference": side(1),
            "single_add_in_burst": add_each.to_json(self),
        });
        self.detail.insert("4_parallel".into(), d);
        Ok(())
    }

    /// Scenario 5: peak RSS of each binary (its own `VmHWM` at exit, via ptrace) and of
    /// the helper processes it runs, the processes per call, and binary sizes.
    ///
    /// # Errors
    /// On set-up failure or interruption.
    pub fn scenario5(&mut self) -> Result<(), String> {
        let reps = self.opts.rss_reps;
        progress(&format!(
            "scenario 5: peak RSS, processes per call, binary sizes, x{reps}"
        ));
        let names = self.containers("s5-", 1)?;
        let plugins = ["bridge", "host-local", "portmap"];
        // own[impl][plugin] = per-rep max over the plugin's ADD and DEL, in MiB; tree = the
        // largest process of the call (the plugin or a helper it ran).
        let mut own: [BTreeMap<&str, Vec<f64>>; 2] = Default::default();
        let mut tree: [BTreeMap<&str, Vec<f64>>; 2] = Default::default();
        // procs[impl]["portmap ADD"] = process names of the last such call; split[impl]
        // ["bridge ADD"] = (anon, file) RSS of the plugin process at its exit, KiB.
        let mut procs: [BTreeMap<String, Vec<String>>; 2] = Default::default();
        let mut split: [BTreeMap<String, Value>; 2] = Default::default();
        let mut errors: Vec<String> = Vec::new();
        for rep in 0..reps {
            for i in order(rep) {
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
                let hl = imp.host_local(&CHAIN, "ADD", &att, true);
                note("host-local", "ADD", &hl);
                let hl = imp.host_local(&CHAIN, "DEL", &att, true);
                note("host-local", "DEL", &hl);
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
        }
        Self::drop_containers(&names);
        for e in errors.iter().take(5) {
            progress(&format!("scenario 5: {e}"));
        }
        let sc = "5 memory and size";
        let get = |m: &[BTreeMap<&str, Vec<f64>>; 2], i: usize, p: &str| {
            m[i].get(p).and_then(|v| Summary::of(v))
        };
        let mut bins = Map::new();
        for p in plugins {
            self.rows.push(Row::compare(
                sc,
                &format!("{p} peak RSS, own"),
                "MiB",
                get(&own, 0, p),
                get(&own, 1, p),
                // A guard, not a goal (BENCHMARKS.md, "Memory").
                Some(0.75),
            ));
        }
        for p in plugins {
            let anon = |i: usize| {
                let kib = ["ADD", "DEL"]
                    .iter()
                    .filter_map(|c| split[i].get(&format!("{p} {c}"))?.get("anon_kib")?.as_u64())
                    .max()?;
                Summary::of(&[kib as f64 / 1024.0])
            };
            self.rows.push(Row::compare(
                sc,
                &format!("{p} anonymous RSS at exit"),
                "MiB",
                anon(0),
                anon(1),
                None,
            ));
        }
        for p in plugins {
            self.rows.push(Row::compare(
                sc,
                &format!("{p} call: largest process"),
                "MiB",
                get(&tree, 0, p),
                get(&tree, 1, p),
                None,
            ));
        }
        for key in ["bridge ADD", "bridge DEL", "portmap ADD", "portmap DEL"] {
            let count = |i: usize| procs[i].get(key).map(|v| v.len() as f64);
            let list = |i: usize| procs[i].get(key).map(|v| v.join(" ")).unwrap_or_default();
            self.rows.push(
                Row::compare(
                    sc,
                    &format!("{key}: processes"),
                    "count",
                    count(0).and_then(|x| Summary::of(&[x])),
                    count(1).and_then(|x| Summary::of(&[x])),
                    None,
                )
                .note(format!("ours: {}; ref: {}", list(0), list(1))),
            );
        }
        for p in plugins {
            let facts = [
                machine::binary(&self.impls[0].bin(p)),
                machine::binary(&self.impls[1].bin(p)),
            ];
            let size = |v: &Value| {
                v.get("size_bytes")
                    .and_then(Value::as_u64)
                    .map(|b| b as f64 / 1_000_000.0)
            };
            let kind = |v: &Value| {
                let st = v.get("static").and_then(Value::as_bool).unwrap_or(false);
                let sp = v.get("stripped").and_then(Value::as_bool).unwrap_or(false);
                format!(
                    "{}{}",
                    if st { "static" } else { "dynamic" },
                    if sp { ", stripped" } else { "" }
                )
            };
            self.rows.push(
                Row::compare(
                    sc,
                    &format!("{p} binary size"),
                    "MB",
                    size(&facts[0]).and_then(|x| Summary::of(&[x])),
                    size(&facts[1]).and_then(|x| Summary::of(&[x])),
                    None,
                )
                .note(format!("ours {}; ref {}", kind(&facts[0]), kind(&facts[1]))),
            );
            bins.insert(
                p.into(),
                json!({ "ours": facts[0].clone(), "reference": facts[1].clone() }),
            );
        }
        let side = |m: &BTreeMap<&str, Vec<f64>>| -> Value {
            m.iter()
                .map(|(k, v)| {
                    (
                        (*k).to_owned(),
                        json!(v.iter().map(|x| round3(*x)).collect::<Vec<_>>()),
                    )
                })
                .collect::<Map<String, Value>>()
                .into()
        };
        let d = json!({
            "reps": reps,
            "own_peak_mib": { "ours": side(&own[0]), "reference": side(&own[1]) },
            "largest_process_mib": { "ours": side(&tree[0]), "reference": side(&tree[1]) },
            "processes": { "ours": procs[0].clone(), "reference": procs[1].clone() },
            "rss_at_exit_kib": { "ours": split[0].clone(), "reference": split[1].clone() },
            "binaries": bins,
            "errors": errors,
        });
        self.detail.insert("5_memory_size".into(), d);
        Ok(())
    }
}
