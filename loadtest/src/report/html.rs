//! The self-contained HTML report (`--html FILE`): summary table, latency percentile plot,
//! per-second throughput and server resource charts, all inline.

use super::svg::{escape, line_chart, XAxis};
use super::{fmt_ns, percentile_curve, Report, PERCENTILES};

pub fn render(r: &Report) -> String {
    let mut h = String::new();
    h += "<!DOCTYPE html><html><head><meta charset=\"utf-8\">";
    h += &format!("<title>loadtest {} — {}</title>", escape(&r.scenario), escape(&r.target));
    h += "<style>body{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}\
          table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}\
          th{background:#f4f4f4}.pass{color:#080;font-weight:bold}.fail{color:#b00;font-weight:bold}\
          .warn{color:#a60}svg{display:block;margin:1em 0;border:1px solid #eee}</style></head><body>";
    h += &format!("<h1>loadtest: {}</h1><p>Target <code>{}</code></p>", escape(&r.scenario), escape(&r.target));
    if r.passed() {
        h += "<p class=\"pass\">PASS</p>";
    } else {
        h += "<p class=\"fail\">FAIL</p><ul>";
        for f in &r.failures {
            h += &format!("<li class=\"fail\">{}</li>", escape(f));
        }
        h += "</ul>";
    }
    for w in &r.warnings {
        h += &format!("<p class=\"warn\">Warning: {}</p>", escape(w));
    }
    h += "<h2>Summary</h2><table>";
    for (k, v) in &r.lines {
        h += &format!("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
    h += "</table>";
    if !r.latencies.is_empty() {
        h += "<h2>Latency</h2><table><tr><th></th><th>samples</th><th>min</th>";
        for (_, label) in PERCENTILES {
            h += &format!("<th>{label}</th>");
        }
        h += "<th>max</th><th>mean</th></tr>";
        for (name, hist) in &r.latencies {
            h += &format!("<tr><th>{}</th><td>{}</td>", escape(name), hist.len());
            if hist.is_empty() {
                h += "<td colspan=\"8\">no samples</td></tr>";
                continue;
            }
            h += &format!("<td>{}</td>", fmt_ns(hist.min()));
            for (p, _) in PERCENTILES {
                h += &format!("<td>{}</td>", fmt_ns(hist.value_at_percentile(*p)));
            }
            h += &format!("<td>{}</td><td>{}</td></tr>", fmt_ns(hist.max()), fmt_ns(hist.mean() as u64));
        }
        h += "</table>";
        let series: Vec<(String, Vec<(f64, f64)>)> = r
            .latencies
            .iter()
            .filter(|(_, hist)| !hist.is_empty())
            .map(|(name, hist)| {
                (name.clone(), percentile_curve(hist).into_iter().map(|(p, v)| (p, v as f64 / 1e6)).collect())
            })
            .collect();
        if !series.is_empty() {
            h += &line_chart("Latency by percentile", "percentile", "latency (ms)", &series, XAxis::Percentile);
        }
    }
    if !r.charts.is_empty() {
        h += "<h2>Over time</h2>";
        for c in &r.charts {
            h += &line_chart(&c.title, "seconds since start", &c.y_label, &c.series, XAxis::Linear);
        }
    }
    h += "<h2>Options</h2><table>";
    for (k, v) in &r.options {
        h += &format!("<tr><th>--{}</th><td>{}</td></tr>", escape(k), escape(v));
    }
    h += "</table></body></html>\n";
    h
}
