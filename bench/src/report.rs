//! Result rows, the printed table and the JSON document.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

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

/// One row of the table: one summary per implementation, ours first.
#[derive(Debug, Clone)]
pub struct Row {
    /// Scenario number and name, e.g. `1 bridge+host-local`.
    pub scenario: String,
    /// What is measured, e.g. `ADD`.
    pub metric: String,
    /// Unit of the values.
    pub unit: &'static str,
    /// One summary per implementation, in the run's order (ours first).
    pub values: Vec<Option<Summary>>,
    /// The target, if BENCHMARKS.md sets one for this row.
    pub check: Option<Check>,
    /// Extra information (failures, unique IPs, …).
    pub note: String,
}

impl Row {
    /// A row of summaries (ours first); `limit` makes ours over the first reference (the
    /// implementation at index 1) of the medians a target.
    pub fn compare(
        scenario: &str,
        metric: &str,
        unit: &'static str,
        values: Vec<Option<Summary>>,
        limit: Option<f64>,
    ) -> Self {
        let mut row = Self {
            scenario: scenario.into(),
            metric: metric.into(),
            unit,
            values,
            check: None,
            note: String::new(),
        };
        if let Some(limit) = limit {
            row.check = Some(Check::ratio(row.ratio(1).unwrap_or(f64::NAN), limit));
        }
        row
    }

    /// A row of single values (counts, sizes, totals), one per implementation.
    pub fn single(
        scenario: &str,
        metric: &str,
        unit: &'static str,
        values: &[Option<f64>],
    ) -> Self {
        let values = values
            .iter()
            .map(|v| v.and_then(|x| Summary::of(&[x])))
            .collect();
        Self::compare(scenario, metric, unit, values, None)
    }

    /// Ours over implementation `j` of the medians.
    pub fn ratio(&self, j: usize) -> Option<f64> {
        let o = (*self.values.first()?)?;
        let r = (*self.values.get(j)?)?;
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

    /// The row as JSON; `labels` name the implementations in order.
    pub fn to_json(&self, labels: &[&str]) -> Value {
        let values: Map<String, Value> = labels
            .iter()
            .zip(&self.values)
            .map(|(l, v)| ((*l).to_owned(), json!(v.map(Summary::to_json))))
            .collect();
        let ratios: Map<String, Value> = labels
            .iter()
            .enumerate()
            .skip(1)
            .map(|(j, l)| {
                (
                    format!("{}/{l}", labels[0]),
                    json!(self.ratio(j).map(round3)),
                )
            })
            .collect();
        json!({
            "scenario": self.scenario,
            "metric": self.metric,
            "unit": self.unit,
            "values": values,
            "ratios_of_medians": ratios,
            "target": self.check.as_ref().map(|c| json!({
                "text": c.text, "value": round3(c.value), "limit": c.limit, "pass": c.pass(),
            })),
            "note": self.note,
        })
    }

    /// The cells after scenario, metric and unit: n, median and p95 per implementation,
    /// ours over each other implementation, the target and its verdict.
    fn cells(&self) -> Vec<String> {
        let ns: Vec<usize> = self.values.iter().map(|v| v.map_or(0, |s| s.n)).collect();
        let n = if ns.windows(2).all(|w| w[0] == w[1]) {
            ns.first().copied().unwrap_or(0).to_string()
        } else {
            ns.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("/")
        };
        let mut out = vec![n];
        for v in &self.values {
            out.push(cell(*v, false));
            out.push(cell(*v, true));
        }
        for j in 1..self.values.len() {
            out.push(
                self.ratio(j)
                    .map_or_else(|| "-".into(), |x| format!("{x:.3}")),
            );
        }
        match &self.check {
            Some(c) => {
                out.push(c.text.clone());
                out.push(if c.pass() { "PASS" } else { "MISS" }.to_owned());
            }
            None => out.extend([String::new(), String::new()]),
        }
        out
    }
}

/// Column headers after scenario, metric and unit (see [`Row::cells`]).
fn headers(labels: &[&str]) -> Vec<String> {
    let mut h = vec!["n".to_owned()];
    for l in labels {
        h.push(format!("{l} med"));
        h.push(format!("{l} p95"));
    }
    for l in labels.iter().skip(1) {
        h.push(format!("{}/{l}", labels[0]));
    }
    h.extend(["target".to_owned(), String::new()]);
    h
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

/// The table as fixed-width text; `labels` name the implementations in order.
pub fn table(labels: &[&str], rows: &[Row]) -> String {
    let mut header = vec!["scenario".to_owned(), "metric".into(), "unit".into()];
    header.extend(headers(labels));
    header.push("note".into());
    let cols = header.len();
    let mut lines: Vec<Vec<String>> = vec![header];
    for r in rows {
        let mut l = vec![r.scenario.clone(), r.metric.clone(), r.unit.to_owned()];
        l.extend(r.cells());
        l.push(r.note.clone());
        lines.push(l);
    }
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    // n, the medians and p95s, and the ratios are right-aligned.
    let numeric = |c: usize| (3..cols - 3).contains(&c);
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
            out.push_str(&"-".repeat(total.min(200)));
            out.push('\n');
        }
    }
    out
}

/// The table as Markdown (for BENCHMARKS.md); `labels` name the implementations.
pub fn markdown(labels: &[&str], rows: &[Row]) -> String {
    let h = headers(labels);
    let mut out = format!(
        "| scenario | metric | unit | {} |\n|---|---|---|",
        h.join(" | ")
    );
    for c in &h {
        out.push_str(if c.is_empty() || c == "target" {
            "---|"
        } else {
            "---:|"
        });
    }
    out.push('\n');
    for r in rows {
        let note = if r.note.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.note)
        };
        let cells: Vec<String> = r.cells().iter().map(|c| c.replace("<=", "≤")).collect();
        let _ = writeln!(
            out,
            "| {} | {}{} | {} | {} |",
            r.scenario,
            r.metric,
            note,
            r.unit,
            cells.join(" | ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_implementations_two_ratios() {
        let s = |x: f64| Summary::of(&[x]);
        let rows = vec![Row::compare(
            "1 x",
            "ADD",
            "ms",
            vec![s(1.0), s(4.0), s(2.0)],
            Some(0.3),
        )];
        let labels = ["ours", "debian", "upstream"];
        let t = table(&labels, &rows);
        assert!(
            t.contains("ours/debian") && t.contains("ours/upstream"),
            "{t}"
        );
        assert!(
            t.contains("0.250") && t.contains("0.500") && t.contains("PASS"),
            "{t}"
        );
        let m = markdown(&labels, &rows);
        let widths: Vec<usize> = m.lines().map(|l| l.matches('|').count()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{m}");
        let j = rows[0].to_json(&labels);
        assert_eq!(j["ratios_of_medians"]["ours/upstream"], json!(0.5));
        assert_eq!(j["values"]["debian"]["median"], json!(4.0));
    }
}
