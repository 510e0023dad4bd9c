//! `cni-bench --plot OUT.svg RESULTS.json...`: chain ADD latency (the probe median at each
//! checkpoint of scenario 3) against pods on the node, one line per implementation and
//! backend, from the JSON files of one or more runs. Plain SVG written with `std::fmt`.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

/// One line of the plot.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text, e.g. `ours (nftables)`.
    pub name: String,
    /// The implementation's label (picks the colour).
    pub label: String,
    /// The backend (picks the dash pattern).
    pub backend: String,
    /// `(pods on the node, median chain ADD in ms)`, ascending in pods.
    pub points: Vec<(f64, f64)>,
}

/// The series of one result document (`--json` output of a run).
pub fn series_of(doc: &Value) -> Vec<Series> {
    let backend = doc["options"]["backend"]
        .as_str()
        .unwrap_or("iptables")
        .to_owned();
    let points = doc["details"]["3_scale"]["points"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut labels: Vec<String> = Vec::new();
    for p in &points {
        if let Some(m) = p["add_median_ms"].as_object() {
            for l in m.keys() {
                if !labels.contains(l) {
                    labels.push(l.clone());
                }
            }
        }
    }
    // Ours first, then the references in the order of the run.
    let order = doc["implementations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let rank = |l: &String| {
        order
            .iter()
            .position(|i| i["label"].as_str() == Some(l))
            .unwrap_or(usize::MAX)
    };
    labels.sort_by_key(rank);
    labels
        .into_iter()
        .map(|label| {
            let mut pts: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|p| {
                    Some((
                        p["containers"].as_f64()?,
                        p["add_median_ms"][&label].as_f64()?,
                    ))
                })
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series {
                name: format!("{label} ({backend})"),
                label,
                backend: backend.clone(),
                points: pts,
            }
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// Reads the result files and collects their series; a series name that repeats (two
/// runs of the same backend) gets the file name appended.
///
/// # Errors
/// A file that cannot be read or parsed.
pub fn load(files: &[impl AsRef<Path>]) -> Result<Vec<Series>, String> {
    let mut all: Vec<Series> = Vec::new();
    for f in files {
        let f = f.as_ref();
        let text = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let doc: Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        for mut s in series_of(&doc) {
            if all.iter().any(|a| a.name == s.name) {
                s.name = format!("{} [{}]", s.name, f.display());
            }
            all.push(s);
        }
    }
    Ok(all)
}

/// A round step (1, 2 or 5 × 10^k) giving about five ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag)
}

fn colour(label: &str) -> &'static str {
    match label {
        "ours" => "#1b9e77",
        "debian" => "#d95f02",
        "upstream" => "#7570b3",
        _ => "#666666",
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn fmt_tick(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    }
}

/// The plot as an SVG document.
pub fn svg(series: &[Series], title: &str) -> String {
    const W: f64 = 760.0;
    const H: f64 = 460.0;
    const L: f64 = 70.0;
    const R: f64 = 20.0;
    const T: f64 = 40.0;
    const B: f64 = 60.0;
    let all = series.iter().flat_map(|s| s.points.iter());
    let max_x = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let max_y = all.map(|p| p.1).fold(1.0, f64::max) * 1.05;
    let (sx, sy) = (tick_step(max_x), tick_step(max_y));
    let (top_x, top_y) = ((max_x / sx).ceil() * sx, (max_y / sy).ceil() * sy);
    let x = |v: f64| L + v / top_x * (W - L - R);
    let y = |v: f64| H - B - v / top_y * (H - T - B);
    let mut o = String::new();
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        o,
        "<rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"white\"/>"
    );
    let _ = writeln!(
        o,
        "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>",
        W / 2.0,
        escape(title)
    );
    // Axes, grid and ticks.
    let _ = writeln!(o, "<g stroke=\"#000\" stroke-width=\"1\">");
    let _ = writeln!(
        o,
        "<line x1=\"{L}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>",
        H - B,
        W - R,
        H - B
    );
    let _ = writeln!(
        o,
        "<line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{}\"/>",
        H - B
    );
    let _ = writeln!(o, "</g>");
    let mut v = 0.0;
    while v <= top_x + sx / 2.0 {
        let px = x(v);
        let _ = writeln!(
            o,
            "<line x1=\"{px:.1}\" y1=\"{}\" x2=\"{px:.1}\" y2=\"{}\" stroke=\"#000\"/>",
            H - B,
            H - B + 5.0
        );
        let _ = writeln!(
            o,
            "<text x=\"{px:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            H - B + 18.0,
            fmt_tick(v)
        );
        v += sx;
    }
    let mut v = 0.0;
    while v <= top_y + sy / 2.0 {
        let py = y(v);
        let _ = writeln!(
            o,
            "<line x1=\"{L}\" y1=\"{py:.1}\" x2=\"{}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>",
            W - R
        );
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            L - 6.0,
            py + 4.0,
            fmt_tick(v)
        );
        v += sy;
    }
    let _ = writeln!(
        o,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">pods on the node</text>",
        (L + W - R) / 2.0,
        H - 20.0
    );
    let _ = writeln!(
        o,
        "<text x=\"18\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {0})\">chain ADD, median (ms)</text>",
        (T + H - B) / 2.0
    );
    // The lines, then the legend.
    for s in series {
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.0), y(p.1)))
            .collect();
        let dash = if s.backend == "nftables" {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash} points=\"{}\"><title>{}</title></polyline>",
            colour(&s.label),
            pts.join(" "),
            escape(&s.name)
        );
        for p in &s.points {
            let _ = writeln!(
                o,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{}\"/>",
                x(p.0),
                y(p.1),
                colour(&s.label)
            );
        }
    }
    let longest = series
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        o,
        "<rect x=\"{}\" y=\"{}\" width=\"{:.0}\" height=\"{}\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#ccc\"/>",
        L + 8.0,
        T,
        52.0 + 7.0 * longest as f64,
        18.0 * series.len() as f64 + 6.0
    );
    for (k, s) in series.iter().enumerate() {
        let ly = T + 10.0 + 18.0 * k as f64;
        let dash = if s.backend == "nftables" {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{}\" stroke-width=\"2\"{dash}/>",
            L + 15.0,
            L + 45.0,
            colour(&s.label)
        );
        let _ = writeln!(
            o,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            L + 52.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    o.push_str("</svg>\n");
    o
}

/// `--plot`: reads `inputs`, writes the SVG to `out`.
///
/// # Errors
/// Unreadable input, no scale data in any input, or the SVG cannot be written.
pub fn run(out: &Path, inputs: &[impl AsRef<Path>]) -> Result<usize, String> {
    let series = load(inputs)?;
    if series.is_empty() {
        return Err("no scale scenario (3) data in the given result files".into());
    }
    let text = svg(
        &series,
        "chain ADD latency against pods on the node (cni-bench, scenario 3)",
    );
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(series.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Checks that every tag is closed in order (or self-closing) and returns the names
    /// of the elements in document order.
    fn well_formed(svg: &str) -> Vec<String> {
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>').expect("unclosed <") + start;
            let tag = &rest[start + 1..end];
            assert!(!tag.contains('<'), "nested < in {tag}");
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else {
                let name = tag
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_end_matches('/')
                    .to_owned();
                names.push(name.clone());
                if !tag.ends_with('/') {
                    stack.push(name);
                }
            }
            // Text between tags has no raw '>' or '&' that is not an entity.
            let text_end = rest[end + 1..]
                .find('<')
                .map_or(rest.len(), |i| i + end + 1);
            let text = &rest[end + 1..text_end];
            assert!(!text.contains('>'), "raw > in text {text:?}");
            rest = &rest[end + 1..];
        }
        assert!(stack.is_empty(), "unclosed {stack:?}");
        names
    }

    fn doc(backend: &str) -> Value {
        json!({
            "options": { "backend": backend },
            "implementations": [{ "label": "ours" }, { "label": "upstream" }],
            "details": { "3_scale": { "points": [
                { "containers": 100, "add_median_ms": { "ours": 12.0, "upstream": 90.0 } },
                { "containers": 1, "add_median_ms": { "ours": 10.0, "upstream": 70.0 } },
                { "containers": 10, "add_median_ms": { "ours": 11.0, "upstream": null } },
            ]}}
        })
    }

    #[test]
    fn svg_is_well_formed_one_polyline_per_series_monotone_in_x() {
        let mut series = series_of(&doc("iptables"));
        series.extend(series_of(&doc("nftables")));
        assert_eq!(series.len(), 4);
        assert_eq!(series[0].name, "ours (iptables)");
        assert_eq!(series[1].points, vec![(1.0, 70.0), (100.0, 90.0)]);
        let svg = svg(&series, "a <title> & more");
        let names = well_formed(&svg);
        assert_eq!(names.first().map(String::as_str), Some("svg"));
        assert_eq!(
            names.iter().filter(|n| *n == "polyline").count(),
            series.len()
        );
        for line in svg.lines().filter(|l| l.starts_with("<polyline")) {
            let pts = line
                .split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let xs: Vec<f64> = pts
                .split(' ')
                .map(|p| p.split(',').next().unwrap().parse().unwrap())
                .collect();
            assert!(xs.len() >= 2);
            assert!(xs.windows(2).all(|w| w[0] < w[1]), "{xs:?}");
        }
        for s in &series {
            assert!(svg.contains(&escape(&s.name)), "legend lacks {}", s.name);
        }
        assert!(svg.contains("pods on the node") && svg.contains("chain ADD, median (ms)"));
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(tick_step(1000.0), 200.0);
        assert_eq!(tick_step(73.0), 20.0);
        assert_eq!(tick_step(0.0), 1.0);
    }
}
