//! The JSON record (`--json FILE`).

use serde_json::{json, Map, Value};

use super::{percentile_curve, Report, PERCENTILES};

pub fn render(r: &Report) -> Value {
    let mut lat = Map::new();
    for (name, h) in &r.latencies {
        let mut m = Map::new();
        m.insert("count".into(), h.len().into());
        if !h.is_empty() {
            m.insert("min_us".into(), us(h.min()));
            for (p, label) in PERCENTILES {
                m.insert(format!("{label}_us"), us(h.value_at_percentile(*p)));
            }
            m.insert("max_us".into(), us(h.max()));
            m.insert("mean_us".into(), json!((h.mean() / 1e3 * 1000.0).round() / 1000.0));
            let curve: Vec<Value> = percentile_curve(h).iter().map(|(p, v)| json!([p, us(*v)])).collect();
            m.insert("percentile_curve".into(), Value::Array(curve));
        }
        lat.insert(name.clone(), Value::Object(m));
    }
    let charts: Vec<Value> = r
        .charts
        .iter()
        .map(|c| {
            let series: Map<String, Value> = c
                .series
                .iter()
                .map(|(n, pts)| {
                    (n.clone(), Value::Array(pts.iter().map(|(x, y)| json!([round3(*x), round3(*y)])).collect()))
                })
                .collect();
            json!({"title": c.title, "unit": c.y_label, "series": series})
        })
        .collect();
    json!({
        "scenario": r.scenario,
        "target": r.target,
        "options": r.options.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>(),
        "summary": r.lines.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect::<Map<_, _>>(),
        "metrics": r.metrics,
        "latency": lat,
        "timeseries": charts,
        "warnings": r.warnings,
        "failures": r.failures,
        "passed": r.passed(),
    })
}

fn us(ns: u64) -> Value {
    json!((ns as f64 / 1e3 * 1000.0).round() / 1000.0)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
