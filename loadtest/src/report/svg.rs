//! Minimal inline-SVG line charts (no scripts, no external files).

use std::fmt::Write;

const W: f64 = 760.0;
const H: f64 = 340.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 48.0;
const COLORS: &[&str] = &["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"];

/// X axis kind.
#[derive(Clone, Copy)]
pub enum XAxis {
    /// Plain numbers (seconds).
    Linear,
    /// Percentiles (0–100) drawn on a log 1/(1−p) scale, like HdrHistogram plots.
    Percentile,
}

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Smallest "nice" number (1, 2, 2.5, 5 × 10^k) ≥ v.
pub fn nice_ceil(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * mag >= v * 0.999_999 {
            return m * mag;
        }
    }
    10.0 * mag
}

fn percentile_x(p: f64) -> f64 {
    let q = (p / 100.0).min(1.0 - 1e-9);
    (1.0 / (1.0 - q)).log10()
}

fn fmt_tick(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}").trim_end_matches(".0").into()
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').into()
    }
}

pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    xaxis: XAxis,
) -> String {
    let tx = |x: f64| match xaxis {
        XAxis::Linear => x,
        XAxis::Percentile => percentile_x(x),
    };
    let all = series.iter().flat_map(|(_, p)| p.iter());
    let (mut xmax, mut ymax) = (0f64, 0f64);
    for &(x, y) in all {
        xmax = xmax.max(tx(x));
        ymax = ymax.max(y);
    }
    let xstep = nice_ceil(xmax.max(1.0) / 10.0);
    let xmax = match xaxis {
        XAxis::Linear => ((xmax / xstep).ceil() * xstep).max(1.0),
        XAxis::Percentile => xmax.ceil().max(1.0),
    };
    let ymax = nice_ceil(ymax * 1.05);
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let px = |x: f64| LEFT + tx(x) / xmax * pw;
    let py = |y: f64| TOP + ph - (y / ymax) * ph;

    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{}" y="20" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"#,
        W / 2.0,
        escape(title)
    );
    // Y grid and ticks.
    for i in 0..=5 {
        let v = ymax * i as f64 / 5.0;
        let y = py(v);
        let _ = write!(s, r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/>"##, W - RIGHT);
        let _ = write!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, LEFT - 6.0, y + 4.0, fmt_tick(v));
    }
    // X grid and ticks.
    let xticks: Vec<(f64, String)> = match xaxis {
        XAxis::Linear => {
            (0..=(xmax / xstep).round() as i64).map(|i| i as f64 * xstep).map(|v| (v, fmt_tick(v))).collect()
        }
        XAxis::Percentile => (0..=xmax as i32)
            .map(|k| {
                let p = 100.0 * (1.0 - 10f64.powi(-k));
                let label = match k {
                    0 => "0%".to_string(),
                    1 => "90%".to_string(),
                    2 => "99%".to_string(),
                    _ => format!("99.{}%", "9".repeat(k as usize - 2)),
                };
                (p, label)
            })
            .collect(),
    };
    for (v, label) in &xticks {
        let x = px(*v);
        let _ = write!(s, r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{}" stroke="#eee"/>"##, TOP + ph);
        let _ = write!(s, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#, TOP + ph + 16.0, escape(label));
    }
    let _ = write!(s, r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##);
    let _ =
        write!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, LEFT + pw / 2.0, H - 8.0, escape(x_label));
    let _ = write!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0,
        escape(y_label)
    );
    // Series.
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        if !pts.is_empty() {
            let path: Vec<String> = pts.iter().map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y))).collect();
            let _ =
                write!(s, r#"<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{}"/>"#, path.join(" "));
        }
        let ly = TOP + 14.0 + 16.0 * i as f64;
        let lx = LEFT + 10.0;
        let _ =
            write!(s, r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="3"/>"#, lx + 18.0);
        let _ = write!(s, r#"<text x="{}" y="{}">{}</text>"#, lx + 24.0, ly + 4.0, escape(name));
    }
    s += "</svg>";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_numbers() {
        assert_eq!(nice_ceil(0.0), 1.0);
        assert_eq!(nice_ceil(3.2), 5.0);
        assert_eq!(nice_ceil(10.0), 10.0);
        assert_eq!(nice_ceil(1234.0), 2000.0);
        assert_eq!(nice_ceil(0.21), 0.25);
    }

    #[test]
    fn chart_is_wellformed_svg() {
        let s = line_chart("t<1>", "x", "y", &[("a&b".into(), vec![(0.0, 1.0), (99.9, 5.0)])], XAxis::Percentile);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("t&lt;1&gt;") && s.contains("a&amp;b") && s.contains("99.9%"));
    }
}
