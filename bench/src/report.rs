//! Result rows, the printed table and the JSON document.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::stats::{Summary, round3};

/// A target: `value <= limit`.
#[derive(Debug, Clone)]
pub struct Check {
    /// The checked value (usually ours/reference of the medians).
    pub value: f64,
    /// The limit.
    pub limit: f64,
    /// How the limit reads in the table, e.g. `ratio <= 0.25`.
    pub text: String,
}

impl Check {
    /// `ours/reference <= limit`.
    pub fn ratio(value: f64, limit: f64) -> Self {
        Self {
            value,
            limit,
            text: format!("ratio <= {limit}"),
        }
    }

    /// True when met.
    pub fn pass(&self) -> bool {
        self.value.is_finite() && self.value <= self.limit
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Scenario number and name, e.g. `1 bridge+host-local`.
    pub scenario: String,
    /// What is measured, e.g. `ADD`.
    pub metric: String,
    /// Unit of the values.
    pub unit: &'static str,
    /// Ours.
    pub ours: Option<Summary>,
    /// The reference.
    pub reference: Option<Summary>,
    /// The target, if BENCHMARKS.md sets one for this row.
    pub check: Option<Check>,
    /// Extra information (failures, unique IPs, …).
    pub note: String,
}

impl Row {
    /// A row comparing two summaries; `limit` makes the ratio of medians a target.
    pub fn compare(
        scenario: &str,
        metric: &str,
        unit: &'static str,
        ours: Option<Summary>,
        reference: Option<Summary>,
        limit: Option<f64>,
    ) -> Self {
        let mut row = Self {
            scenario: scenario.into(),
            metric: metric.into(),
            unit,
            ours,
            reference,
            check: None,
            note: String::new(),
        };
        if let Some(limit) = limit {
            row.check = Some(Check::ratio(row.ratio().unwrap_or(f64::NAN), limit));
        }
        row
    }

    /// ours/reference of the medians.
    pub fn ratio(&self) -> Option<f64> {
        let (o, r) = (self.ours?, self.reference?);
        (r.median > 0.0).then(|| o.median / r.median)
    }

    /// Builder: sets the note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// Builder: sets a custom check.
    pub fn check(mut self, check: Check) -> Self {
        self.check = Some(check);
        self
    }

    /// The row as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "scenario": self.scenario,
            "metric": self.metric,
            "unit": self.unit,
            "ours": self.ours.map(|s| s.to_json()),
            "reference": self.reference.map(|s| s.to_json()),
            "ratio_of_medians": self.ratio().map(round3),
            "target": self.check.as_ref().map(|c| json!({
                "text": c.text, "value": round3(c.value), "limit": c.limit, "pass": c.pass(),
            })),
            "note": self.note,
        })
    }
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn cell(s: Option<Summary>, p95: bool) -> String {
    match s {
        Some(s) if p95 => num(s.p95),
        Some(s) => num(s.median),
        None => "-".into(),
    }
}

/// The table as fixed-width text.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "scenario", "metric", "unit", "n", "ours med", "ours p95", "ref med", "ref p95", "ratio",
        "target", "", "note",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|s| (*s).to_owned()).collect()];
    for r in rows {
        let n = match (r.ours, r.reference) {
            (Some(o), Some(f)) if o.n == f.n => o.n.to_string(),
            (o, f) => format!("{}/{}", o.map_or(0, |s| s.n), f.map_or(0, |s| s.n)),
        };
        let (target, verdict) = match &r.check {
            Some(c) => (
                c.text.clone(),
                if c.pass() { "PASS" } else { "MISS" }.to_owned(),
            ),
            None => (String::new(), String::new()),
        };
        lines.push(vec![
            r.scenario.clone(),
            r.metric.clone(),
            r.unit.to_owned(),
            n,
            cell(r.ours, false),
            cell(r.ours, true),
            cell(r.reference, false),
            cell(r.reference, true),
            r.ratio().map_or_else(|| "-".into(), |x| format!("{x:.3}")),
            target,
            verdict,
            r.note.clone(),
        ]);
    }
    let cols = header.len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let numeric = |c: usize| (3..=8).contains(&c);
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        let mut line = String::new();
        for (c, v) in l.iter().enumerate() {
            let w = widths[c];
            if c + 1 == cols {
                line.push_str(v);
            } else if numeric(c) {
                let _ = write!(line, "{v:>w$}  ");
            } else {
                let _ = write!(line, "{v:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
        if i == 0 {
            let total: usize = widths.iter().sum::<usize>() + 2 * (cols - 1);
            out.push_str(&"-".repeat(total.min(160)));
            out.push('\n');
        }
    }
    out
}

/// The table as Markdown (for BENCHMARKS.md).
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| scenario | metric | unit | n | ours median | ours p95 | ref median | ref p95 | ours/ref | target | |\n\
         |---|---|---|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    for r in rows {
        let n = r.ours.or(r.reference).map_or(0, |s| s.n);
        let (t, v) = match &r.check {
            Some(c) => (c.text.clone(), if c.pass() { "PASS" } else { "MISS" }),
            None => (String::new(), ""),
        };
        let note = if r.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.note)
        };
        let _ = writeln!(
            out,
            "| {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.metric,
            note,
            r.unit,
            n,
            cell(r.ours, false),
            cell(r.ours, true),
            cell(r.reference, false),
            cell(r.reference, true),
            r.ratio().map_or_else(|| "-".into(), |x| format!("{x:.3}")),
            t.replace("<=", "≤"),
            v
        );
    }
    out
}
