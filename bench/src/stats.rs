//! Order statistics over samples.

use std::time::Duration;

use serde_json::{Value, json};

/// Summary of a sample set (values in the caller's unit, e.g. milliseconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Number of samples.
    pub n: usize,
    /// Median (mean of the two middle values for an even count).
    pub median: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarizes `values`; `None` when empty.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            f64::midpoint(v[n / 2 - 1], v[n / 2])
        };
        // Nearest rank: the smallest value with at least 95 % of samples at or below it.
        let rank = (0.95 * n as f64).ceil().max(1.0) as usize;
        let p95 = v[rank.min(n) - 1];
        let mean = v.iter().sum::<f64>() / n as f64;
        Some(Self {
            n,
            median,
            p95,
            mean,
            min: v[0],
            max: v[n - 1],
        })
    }

    /// Summarizes durations in milliseconds.
    pub fn of_ms(samples: &[Duration]) -> Option<Self> {
        Self::of(&samples.iter().map(|d| ms(*d)).collect::<Vec<_>>())
    }

    /// JSON object with every field.
    pub fn to_json(self) -> Value {
        json!({
            "n": self.n,
            "median": round3(self.median),
            "p95": round3(self.p95),
            "mean": round3(self.mean),
            "min": round3(self.min),
            "max": round3(self.max),
        })
    }
}

/// Milliseconds as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Rounds to 3 decimals (for compact JSON).
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Durations as rounded milliseconds, for raw sample arrays in the JSON.
pub fn ms_list(samples: &[Duration]) -> Value {
    Value::from(samples.iter().map(|d| round3(ms(*d))).collect::<Vec<f64>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p95() {
        let s = Summary::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(s.median, 3.0);
        assert_eq!(s.p95, 5.0);
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(s.median, 2.5);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Summary::of(&v).unwrap();
        assert_eq!(s.p95, 95.0);
        assert_eq!(s.median, 50.5);
        assert!(Summary::of(&[]).is_none());
    }
}
