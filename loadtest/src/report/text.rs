//! The human summary printed on stdout at the end of a run.

use super::{fmt_ns, Report, PERCENTILES};

pub fn render(r: &Report) -> String {
    let mut s = format!("\n=== loadtest {} against {} ===\n", r.scenario, r.target);
    let width = r.lines.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0);
    for (k, v) in &r.lines {
        s += &format!("  {k:<width$}  {v}\n");
    }
    for (name, h) in &r.latencies {
        if h.is_empty() {
            s += &format!("  {name}: no samples\n");
            continue;
        }
        s += &format!("  {name} ({} samples):\n    min {}", h.len(), fmt_ns(h.min()));
        for (p, label) in PERCENTILES {
            s += &format!("  {label} {}", fmt_ns(h.value_at_percentile(*p)));
        }
        s += &format!("  max {}  mean {}\n", fmt_ns(h.max()), fmt_ns(h.mean() as u64));
    }
    for w in &r.warnings {
        s += &format!("  WARNING: {w}\n");
    }
    if r.passed() {
        s += "  RESULT: PASS\n";
    } else {
        s += "  RESULT: FAIL\n";
        for f in &r.failures {
            s += &format!("    - {f}\n");
        }
    }
    s
}
