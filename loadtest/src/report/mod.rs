//! What a run found, and its three renderings: a human summary (stdout), a JSON record and a
//! self-contained HTML page with inline SVG charts.

pub mod html;
pub mod json;
pub mod svg;
pub mod text;

use hdrhistogram::Histogram;
use serde_json::{Map, Value};

pub struct Chart {
    pub title: String,
    pub y_label: String,
    /// (name, points (x = seconds since start, y))
    pub series: Vec<(String, Vec<(f64, f64)>)>,
}

pub struct Report {
    pub scenario: String,
    pub target: String,
    pub options: Vec<(String, String)>,
    /// Human summary, in order.
    pub lines: Vec<(String, String)>,
    /// Machine-readable figures for the JSON record.
    pub metrics: Map<String, Value>,
    /// Named latency histograms, in nanoseconds.
    pub latencies: Vec<(String, Histogram<u64>)>,
    pub charts: Vec<Chart>,
    /// Reasons the run failed its checks (non-empty → exit status 1).
    pub failures: Vec<String>,
    pub warnings: Vec<String>,
}

impl Report {
    pub fn new(scenario: &str, target: String, options: Vec<(String, String)>) -> Report {
        Report {
            scenario: scenario.into(),
            target,
            options,
            lines: Vec::new(),
            metrics: Map::new(),
            latencies: Vec::new(),
            charts: Vec::new(),
            failures: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn line(&mut self, label: &str, value: impl Into<String>) {
        self.lines.push((label.into(), value.into()));
    }

    pub fn metric(&mut self, key: &str, value: impl Into<Value>) {
        self.metrics.insert(key.into(), value.into());
    }

    pub fn chart(&mut self, title: &str, y_label: &str, series: Vec<(String, Vec<(f64, f64)>)>) {
        self.charts.push(Chart { title: title.into(), y_label: y_label.into(), series });
    }

    pub fn latency(&mut self, name: &str, h: Histogram<u64>) {
        self.latencies.push((name.into(), h));
    }

    pub fn fail(&mut self, why: impl Into<String>) {
        self.failures.push(why.into());
    }

    pub fn warn(&mut self, why: impl Into<String>) {
        self.warnings.push(why.into());
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// `1234` ns → `1.2 µs`, etc.
pub fn fmt_ns(ns: u64) -> String {
    let ns = ns as f64;
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.3} s", ns / 1e9)
    }
}

/// The percentiles every rendering shows.
pub const PERCENTILES: &[(f64, &str)] =
    &[(50.0, "p50"), (90.0, "p90"), (99.0, "p99"), (99.9, "p99.9"), (99.99, "p99.99")];

/// Points of an HdrHistogram-style percentile plot: x = percentile, y = latency (ns), for
/// percentiles 0 … 1 − 1/count on a 1/(1−p) scale, plus the maximum.
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    let n = h.len();
    if n == 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let max_x = (n as f64).log10().max(1.0);
    let steps = 200;
    for i in 0..=steps {
        let x = max_x * i as f64 / steps as f64; // log10(1/(1-q))
        let q = 1.0 - 10f64.powf(-x);
        if q >= 1.0 {
            break;
        }
        out.push((q * 100.0, h.value_at_quantile(q)));
    }
    out.push(((1.0 - 1.0 / n as f64).max(out.last().map_or(0.0, |p| p.0 / 100.0)) * 100.0, h.max()));
    out
}
