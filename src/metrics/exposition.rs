//! The Prometheus text format (version 0.0.4) of everything counted: per-app series summed
//! over shards, a few per-shard series to spot an unbalanced core, the store's and the
//! process's own figures.
//!
//! The counters stay this crate's per-shard atomics, which the hot path writes; only a scrape
//! turns their sums into `prometheus` metric families, and the crate's `TextEncoder` writes the
//! text. No `Registry` is involved: it would reorder the families and series, and it only
//! takes collectors that own what they read.

use super::{
    AppCounters, Counter, Metrics, Sources, CHANNEL_TYPES, CLOSE_REASONS, CONNECTION_ERRORS, LATENCY_BUCKETS_MS,
    LIMITERS, PANIC_SITES, RECIPIENT_BUCKETS,
};
use prometheus::proto::{self, Bucket, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::TextEncoder;

/// Starts a family at the end of `out`; its series are added to what this returns.
fn family<'a>(out: &'a mut Vec<MetricFamily>, name: &str, kind: MetricType, help: &str) -> &'a mut MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    out.push(f);
    let last = out.len() - 1;
    &mut out[last]
}

fn series(labels: &[(&str, &str)]) -> Metric {
    Metric::from_label(
        labels
            .iter()
            .map(|(k, v)| {
                let mut pair = LabelPair::default();
                pair.set_name((*k).to_owned());
                pair.set_value((*v).to_owned());
                pair
            })
            .collect(),
    )
}

/// One counter or gauge series, as the family's type says.
fn sample(f: &mut MetricFamily, labels: &[(&str, &str)], value: f64) {
    let mut m = series(labels);
    if f.get_field_type() == MetricType::GAUGE {
        let mut g = proto::Gauge::default();
        g.set_value(value);
        m.set_gauge(g);
    } else {
        let mut c = proto::Counter::default();
        c.set_value(value);
        m.set_counter(c);
    }
    f.mut_metric().push(m);
}

/// One latency histogram series from its per-bucket counts (the last is beyond every bound).
fn histogram(f: &mut MetricFamily, labels: &[(&str, &str)], counts: &[u64], sum_ms: f64) {
    let mut cumulative = 0;
    let buckets = LATENCY_BUCKETS_MS
        .iter()
        .zip(counts)
        .map(|(&bound, &c)| {
            cumulative += c;
            let mut b = Bucket::default();
            b.set_upper_bound(bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut h = proto::Histogram::default();
    h.set_bucket(buckets);
    // The encoder writes the `+Inf` bucket from the count.
    h.set_sample_count(counts.iter().sum());
    h.set_sample_sum(sum_ms);
    let mut m = series(labels);
    m.set_histogram(h);
    f.mut_metric().push(m);
}

/// Which of an app's counters a series reads.
type Pick = fn(&AppCounters) -> &Counter;

/// The sum of one counter over every shard, for app slot `slot`.
fn total(m: &Metrics, slot: usize, pick: impl Fn(&AppCounters) -> &Counter) -> u64 {
    m.shards.iter().map(|s| pick(&s.apps[slot]).get()).fold(0u64, u64::wrapping_add)
}

pub fn render(src: &Sources<'_>) -> String {
    use MetricType::{COUNTER, GAUGE};
    let m = src.metrics;
    let mut out = Vec::new();
    let port = m.port.as_str();
    let app_count = src.app_ids.len();
    // (label value, slot) for each app, then `system`.
    let mut apps: Vec<(String, usize)> = src.app_ids.iter().enumerate().map(|(i, id)| (id.to_string(), i)).collect();
    apps.push(("system".into(), app_count));

    let simple: [(&str, &str, Pick); 12] = [
        ("sockudo_new_connections_total", "Accepted WebSocket connections", |a| &a.new_connections),
        ("sockudo_new_disconnections_total", "Closed WebSocket connections", |a| &a.disconnections),
        ("sockudo_ws_messages_received_total", "WebSocket messages received", |a| &a.ws_received),
        ("sockudo_ws_messages_sent_total", "WebSocket messages queued to sockets", |a| &a.ws_sent),
        ("sockudo_socket_received_bytes", "WebSocket bytes received", |a| &a.ws_received_bytes),
        ("sockudo_socket_transmitted_bytes", "WebSocket bytes queued to sockets", |a| &a.ws_sent_bytes),
        ("sockudo_http_calls_received_total", "HTTP requests", |a| &a.http_calls),
        ("sockudo_http_received_bytes", "HTTP request bytes", |a| &a.http_received_bytes),
        ("sockudo_http_transmitted_bytes", "HTTP response bytes", |a| &a.http_sent_bytes),
        ("sockudo_idempotency_publish_total", "Publishes carrying an idempotency key", |a| &a.idempotency_publishes),
        ("sockudo_idempotency_duplicates_total", "Publishes answered from a stored idempotent response", |a| {
            &a.idempotency_duplicates
        }),
        ("sockudo_delta_compression_bytes_saved_total", "Bytes delta frames saved against full frames", |a| {
            &a.delta_bytes_saved
        }),
    ];
    let f = family(&mut out, "sockudo_connected", GAUGE, "Open WebSocket connections");
    for (id, slot) in &apps {
        let open = total(m, *slot, |a| &a.new_connections).wrapping_sub(total(m, *slot, |a| &a.disconnections));
        sample(f, &[("app_id", id), ("port", port)], open as i64 as f64);
    }
    for (name, help, pick) in simple {
        let f = family(&mut out, name, COUNTER, help);
        for (id, slot) in &apps {
            sample(f, &[("app_id", id), ("port", port)], total(m, *slot, pick) as f64);
        }
    }
    let f = family(
        &mut out,
        "sockudo_slow_consumer_disconnections_total",
        COUNTER,
        "Sockets closed with 4100 because their queue was full",
    );
    for (id, slot) in &apps {
        sample(f, &[("app_id", id), ("port", port)], total(m, *slot, |a| &a.slow_consumer_disconnections) as f64);
    }
    let f = family(
        &mut out,
        "sockudo_backlog_refusals_total",
        COUNTER,
        "Requests and deliveries refused because a shard was too far behind (503 or a client-event error)",
    );
    sample(f, &[("port", port)], total(m, app_count, |a| &a.backlog_refusals) as f64);
    let f = family(
        &mut out,
        "sockudo_disconnections_by_reason_total",
        COUNTER,
        "Closed WebSocket connections by the close code sent or received",
    );
    for (id, slot) in apps.iter().take(app_count) {
        for (r, reason) in CLOSE_REASONS.iter().enumerate() {
            sample(
                f,
                &[("app_id", id), ("port", port), ("reason", reason)],
                total(m, *slot, |a| &a.disconnections_by_reason[r]) as f64,
            );
        }
    }
    let f = family(
        &mut out,
        "sockudo_connection_errors_total",
        COUNTER,
        "Refused or failed WebSocket connections by reason (app_id \"unknown\" for unknown keys)",
    );
    for (id, slot) in &apps {
        let id = if *slot == app_count { "unknown" } else { id.as_str() };
        for (e, name) in CONNECTION_ERRORS.iter().enumerate() {
            sample(
                f,
                &[("app_id", id), ("port", port), ("error_type", name)],
                total(m, *slot, |a| &a.connection_errors[e]) as f64,
            );
        }
    }
    for (name, help, pick) in [
        (
            "sockudo_channel_subscriptions_total",
            "Channel subscriptions",
            (|a, t| &a.subscriptions[t]) as fn(&AppCounters, usize) -> &Counter,
        ),
        ("sockudo_channel_unsubscriptions_total", "Channel unsubscriptions (including disconnects)", |a, t| {
            &a.unsubscriptions[t]
        }),
    ] {
        let f = family(&mut out, name, COUNTER, help);
        for (id, slot) in apps.iter().take(app_count) {
            for (t, ty) in CHANNEL_TYPES.iter().enumerate() {
                sample(
                    f,
                    &[("app_id", id), ("port", port), ("channel_type", ty)],
                    total(m, *slot, |a| pick(a, t)) as f64,
                );
            }
        }
    }
    let f = family(
        &mut out,
        "sockudo_active_channels",
        GAUGE,
        "Channels with at least one subscriber, counted once per shard holding subscribers",
    );
    for (id, slot) in apps.iter().take(app_count) {
        for (t, ty) in CHANNEL_TYPES.iter().enumerate() {
            sample(
                f,
                &[("app_id", id), ("port", port), ("channel_type", ty)],
                total(m, *slot, |a| &a.active_channels[t]) as i64 as f64,
            );
        }
    }
    for (name, help, pick) in [
        (
            "sockudo_rate_limit_checks_total",
            "Rate limit checks",
            (|a, l| &a.rate_limit_checks[l]) as fn(&AppCounters, usize) -> &Counter,
        ),
        ("sockudo_rate_limit_triggered_total", "Requests refused by a rate limit", |a, l| &a.rate_limit_triggered[l]),
    ] {
        let f = family(&mut out, name, COUNTER, help);
        for (id, slot) in &apps {
            for (l, (ty, context)) in LIMITERS.iter().enumerate() {
                sample(
                    f,
                    &[("app_id", id), ("port", port), ("limiter_type", ty), ("request_context", context)],
                    total(m, *slot, |a| pick(a, l)) as f64,
                );
            }
        }
    }
    let f = family(
        &mut out,
        "sockudo_panics_total",
        COUNTER,
        "Panics caught: the socket was closed (1011), the request failed (500) or the task restarted",
    );
    for (id, slot) in &apps {
        for (p, site) in PANIC_SITES.iter().enumerate() {
            sample(f, &[("app_id", id), ("port", port), ("context", site)], total(m, *slot, |a| &a.panics[p]) as f64);
        }
    }
    webhooks(&mut out, src, port);
    if let Some(b) = src.backplane {
        backplane(&mut out, b, port);
    }
    latency(&mut out, m, &apps[..app_count], port);
    per_shard(&mut out, src);
    process(&mut out, m);
    // The encoder refuses a family without series, such as the latency histogram before the
    // first delivery; Prometheus reads nothing from one anyway.
    out.retain(|f| !f.get_metric().is_empty());
    let mut text = String::with_capacity(16 << 10);
    if let Err(e) = TextEncoder::new().encode_utf8(&out, &mut text) {
        log::error!("metrics: cannot encode a scrape: {e}");
    }
    text
}

/// The webhook sender's counters (zeros when no app has webhooks).
fn webhooks(out: &mut Vec<MetricFamily>, src: &Sources<'_>, port: &str) {
    let w = src.webhooks.unwrap_or_default();
    for (name, help, value) in [
        ("sockudo_webhook_events_queued_total", "Webhook events queued for delivery", w.queued),
        ("sockudo_webhook_events_dropped_total", "Webhook events dropped because the queue was full", w.dropped),
        ("sockudo_webhook_requests_sent_total", "Webhook requests answered with 2xx", w.sent),
        (
            "sockudo_webhook_requests_failed_total",
            "Webhook requests given up (permanent error, retries exhausted, backlog full)",
            w.failed,
        ),
        ("sockudo_webhook_requests_retried_total", "Webhook request retries", w.retried),
    ] {
        sample(family(out, name, MetricType::COUNTER, help), &[("port", port)], value as f64);
    }
}

/// The backplane's state and counters (only on a node with an adapter).
fn backplane(out: &mut Vec<MetricFamily>, b: crate::metrics::BackplaneFigures, port: &str) {
    let up = family(out, "sockudo_backplane_connected", MetricType::GAUGE, "1 while the node reaches the backplane");
    sample(up, &[("port", port)], if b.connected { 1.0 } else { 0.0 });
    for (name, help, value) in [
        ("sockudo_backplane_appends_total", "Operations appended to the cluster log", b.appended),
        (
            "sockudo_backplane_append_failures_total",
            "Appends to the cluster log that failed (answered 503)",
            b.append_failures,
        ),
        ("sockudo_backplane_entries_read_total", "Entries read from the cluster log", b.entries_read),
        ("sockudo_backplane_disconnects_total", "Times a connection to the backplane was lost", b.disconnects),
    ] {
        sample(family(out, name, MetricType::COUNTER, help), &[("port", port)], value as f64);
    }
}

/// `sockudo_broadcast_latency_ms`: only series that saw an observation.
fn latency(out: &mut Vec<MetricFamily>, m: &Metrics, apps: &[(String, usize)], port: &str) {
    let f = family(
        out,
        "sockudo_broadcast_latency_ms",
        MetricType::HISTOGRAM,
        "Publish (owner) to socket queue latency, per delivering shard",
    );
    for (id, slot) in apps {
        for (t, ty) in CHANNEL_TYPES.iter().enumerate() {
            for (r, rb) in RECIPIENT_BUCKETS.iter().enumerate() {
                let counts: Vec<u64> = (0..14).map(|b| total(m, *slot, |a| &a.latency[t][r].buckets[b])).collect();
                if counts.iter().all(|&c| c == 0) {
                    continue;
                }
                let sum_us = total(m, *slot, |a| &a.latency[t][r].sum_us);
                histogram(
                    f,
                    &[("app_id", id.as_str()), ("port", port), ("channel_type", ty), ("recipient_count_bucket", rb)],
                    &counts,
                    sum_us as f64 / 1000.0,
                );
            }
        }
    }
}

/// Per shard: open sockets and frames queued, to find an unbalanced core; and each shard's
/// store (group commits and fsyncs).
fn per_shard(out: &mut Vec<MetricFamily>, src: &Sources<'_>) {
    let m = src.metrics;
    let sum = |s: &super::ShardCounters, pick: Pick| s.apps.iter().map(|a| pick(a).get()).fold(0u64, u64::wrapping_add);
    let f = family(out, "sockudo_shard_connections", MetricType::GAUGE, "Open WebSocket connections per shard");
    for (i, s) in m.shards.iter().enumerate() {
        let open = sum(s, |a| &a.new_connections).wrapping_sub(sum(s, |a| &a.disconnections));
        sample(f, &[("shard", &i.to_string())], open as i64 as f64);
    }
    let f =
        family(out, "sockudo_shard_messages_sent_total", MetricType::COUNTER, "WebSocket messages queued per shard");
    for (i, s) in m.shards.iter().enumerate() {
        sample(f, &[("shard", &i.to_string())], sum(s, |a| &a.ws_sent) as f64);
    }
    if src.stores.is_empty() {
        return;
    }
    let f =
        family(out, "sockudo_store_batches_total", MetricType::COUNTER, "Group-commit batches written per shard store");
    for (i, s) in src.stores.iter().enumerate() {
        sample(f, &[("shard", &i.to_string())], s.batches() as f64);
    }
    let f = family(out, "sockudo_store_syncs_total", MetricType::COUNTER, "fdatasync calls per shard store");
    for (i, s) in src.stores.iter().enumerate() {
        sample(f, &[("shard", &i.to_string())], s.syncs() as f64);
    }
}

/// The standard `process_*` figures, from /proc.
fn process(out: &mut Vec<MetricFamily>, m: &Metrics) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) =
        unsafe { (libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64, libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64) };
    let cpu = (field(11) + field(12)) as f64 / ticks;
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count());
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we pass.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    let start = m.started_at.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    for (name, help, value) in [
        ("process_cpu_seconds_total", "User and system CPU time", cpu),
        ("process_resident_memory_bytes", "Resident memory", (field(21) * page) as f64),
        ("process_virtual_memory_bytes", "Virtual memory", field(20) as f64),
        ("process_start_time_seconds", "Start time, seconds since the epoch", start),
        ("process_open_fds", "Open file descriptors", fds as f64),
        ("process_max_fds", "File descriptor limit", limit.rlim_cur as f64),
    ] {
        sample(family(out, name, MetricType::GAUGE, help), &[], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text dashboards read: label order as given, escaped values, integral values without
    /// a fraction, the histogram's bounds as `le` with `+Inf` from the count and the sum in ms.
    #[test]
    fn families_encode_as_the_text_format() {
        let mut out = Vec::new();
        sample(family(&mut out, "g", MetricType::GAUGE, "Open \"x\""), &[("z", "a\"b\\c\nd"), ("a", "1")], -1.0);
        let mut counts = [0; 14];
        counts[1] = 2;
        counts[13] = 1;
        histogram(family(&mut out, "h", MetricType::HISTOGRAM, "Latency"), &[("k", "v")], &counts, 9_000.7);
        let mut want = "# HELP g Open \"x\"\n# TYPE g gauge\ng{z=\"a\\\"b\\\\c\\nd\",a=\"1\"} -1\n# HELP h Latency\n# TYPE h histogram\n".to_owned();
        for (bound, cumulative) in LATENCY_BUCKETS_MS.iter().zip([0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]) {
            want += &format!("h_bucket{{k=\"v\",le=\"{bound}\"}} {cumulative}\n");
        }
        want += "h_bucket{k=\"v\",le=\"+Inf\"} 3\nh_sum{k=\"v\"} 9000.7\nh_count{k=\"v\"} 3\n";
        assert_eq!(TextEncoder::new().encode_to_string(&out).unwrap(), want);
    }
}
