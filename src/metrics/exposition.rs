//! The Prometheus text format (version 0.0.4) of everything counted: per-app series summed
//! over shards, a few per-shard series to spot an unbalanced core, the store's and the
//! process's own figures.

use super::{AppCounters, Counter, Metrics, CHANNEL_TYPES, CLOSE_REASONS, CONNECTION_ERRORS, LATENCY_BUCKETS_MS, LIMITERS, RECIPIENT_BUCKETS};
use crate::shard::Context;
use std::fmt::Write;

/// Writes one metric family: header lines, then a sample per label set.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The sum of one counter over every shard, for app slot `slot`.
fn total(m: &Metrics, slot: usize, pick: impl Fn(&AppCounters) -> &Counter) -> u64 {
    m.shards.iter().map(|s| pick(&s.apps[slot]).get()).fold(0u64, u64::wrapping_add)
}

pub fn render(ctx: &Context) -> String {
    let m = &ctx.metrics;
    let mut out = String::with_capacity(16 << 10);
    let mut f = Family { out: &mut out };
    let port = m.port.as_str();
    // (label value, slot) for each app, then `system`.
    let mut apps: Vec<(String, usize)> = (0..ctx.apps.len()).map(|i| (ctx.apps.get(i as u32).id.clone(), i)).collect();
    apps.push(("system".into(), ctx.apps.len()));

    let simple: [(&str, &str, &str, fn(&AppCounters) -> &Counter); 11] = [
        ("sockudo_new_connections_total", "counter", "Accepted WebSocket connections", |a| &a.new_connections),
        ("sockudo_new_disconnections_total", "counter", "Closed WebSocket connections", |a| &a.disconnections),
        ("sockudo_ws_messages_received_total", "counter", "WebSocket messages received", |a| &a.ws_received),
        ("sockudo_ws_messages_sent_total", "counter", "WebSocket messages queued to sockets", |a| &a.ws_sent),
        ("sockudo_socket_received_bytes", "counter", "WebSocket bytes received", |a| &a.ws_received_bytes),
        ("sockudo_socket_transmitted_bytes", "counter", "WebSocket bytes queued to sockets", |a| &a.ws_sent_bytes),
        ("sockudo_http_calls_received_total", "counter", "HTTP requests", |a| &a.http_calls),
        ("sockudo_http_received_bytes", "counter", "HTTP request bytes", |a| &a.http_received_bytes),
        ("sockudo_http_transmitted_bytes", "counter", "HTTP response bytes", |a| &a.http_sent_bytes),
        ("sockudo_idempotency_publish_total", "counter", "Publishes carrying an idempotency key", |a| &a.idempotency_publishes),
        ("sockudo_idempotency_duplicates_total", "counter", "Publishes answered from a stored idempotent response", |a| &a.idempotency_duplicates),
    ];
    f.head("sockudo_connected", "gauge", "Open WebSocket connections");
    for (id, slot) in &apps {
        let open = total(m, *slot, |a| &a.new_connections).wrapping_sub(total(m, *slot, |a| &a.disconnections));
        f.sample("sockudo_connected", &[("app_id", id), ("port", port)], open as i64);
    }
    for (name, kind, help, pick) in simple {
        f.head(name, kind, help);
        for (id, slot) in &apps {
            f.sample(name, &[("app_id", id), ("port", port)], total(m, *slot, pick));
        }
    }
    f.head("sockudo_slow_consumer_disconnections_total", "counter", "Sockets closed with 4100 because their queue was full");
    for (id, slot) in &apps {
        f.sample("sockudo_slow_consumer_disconnections_total", &[("app_id", id), ("port", port)], total(m, *slot, |a| &a.slow_consumer_disconnections));
    }
    f.head("sockudo_disconnections_by_reason_total", "counter", "Closed WebSocket connections by the close code sent or received");
    for (id, slot) in apps.iter().take(ctx.apps.len()) {
        for (r, reason) in CLOSE_REASONS.iter().enumerate() {
            f.sample("sockudo_disconnections_by_reason_total", &[("app_id", id), ("port", port), ("reason", reason)], total(m, *slot, |a| &a.disconnections_by_reason[r]));
        }
    }
    f.head("sockudo_connection_errors_total", "counter", "Refused or failed WebSocket connections by reason (app_id \"unknown\" for unknown keys)");
    for (id, slot) in &apps {
        let id = if *slot == ctx.apps.len() { "unknown" } else { id.as_str() };
        for (e, name) in CONNECTION_ERRORS.iter().enumerate() {
            f.sample("sockudo_connection_errors_total", &[("app_id", id), ("port", port), ("error_type", name)], total(m, *slot, |a| &a.connection_errors[e]));
        }
    }
    for (name, help, pick) in [
        ("sockudo_channel_subscriptions_total", "Channel subscriptions", (|a, t| &a.subscriptions[t]) as fn(&AppCounters, usize) -> &Counter),
        ("sockudo_channel_unsubscriptions_total", "Channel unsubscriptions (including disconnects)", |a, t| &a.unsubscriptions[t]),
    ] {
        f.head(name, "counter", help);
        for (id, slot) in apps.iter().take(ctx.apps.len()) {
            for (t, ty) in CHANNEL_TYPES.iter().enumerate() {
                f.sample(name, &[("app_id", id), ("port", port), ("channel_type", ty)], total(m, *slot, |a| pick(a, t)));
            }
        }
    }
    f.head("sockudo_active_channels", "gauge", "Channels with at least one subscriber, counted once per shard holding subscribers");
    for (id, slot) in apps.iter().take(ctx.apps.len()) {
        for (t, ty) in CHANNEL_TYPES.iter().enumerate() {
            f.sample("sockudo_active_channels", &[("app_id", id), ("port", port), ("channel_type", ty)], total(m, *slot, |a| &a.active_channels[t]) as i64);
        }
    }
    for (name, help, pick) in [
        ("sockudo_rate_limit_checks_total", "Rate limit checks", (|a, l| &a.rate_limit_checks[l]) as fn(&AppCounters, usize) -> &Counter),
        ("sockudo_rate_limit_triggered_total", "Requests refused by a rate limit", |a, l| &a.rate_limit_triggered[l]),
    ] {
        f.head(name, "counter", help);
        for (id, slot) in &apps {
            for (l, (ty, context)) in LIMITERS.iter().enumerate() {
                f.sample(name, &[("app_id", id), ("port", port), ("limiter_type", ty), ("request_context", context)], total(m, *slot, |a| pick(a, l)));
            }
        }
    }
    webhooks(&mut f, ctx, port);
    latency(&mut f, m, &apps[..ctx.apps.len()], port);
    per_shard(&mut f, ctx);
    process(&mut f, m);
    out
}

/// The webhook sender's counters (zeros when no app has webhooks).
fn webhooks(f: &mut Family<'_>, ctx: &Context, port: &str) {
    let w = ctx.webhooks.as_ref().map(|w| w.stats.snapshot()).unwrap_or_default();
    for (name, help, value) in [
        ("sockudo_webhook_events_queued_total", "Webhook events queued for delivery", w.queued),
        ("sockudo_webhook_events_dropped_total", "Webhook events dropped because the queue was full", w.dropped),
        ("sockudo_webhook_requests_sent_total", "Webhook requests answered with 2xx", w.sent),
        ("sockudo_webhook_requests_failed_total", "Webhook requests given up (permanent error, retries exhausted, backlog full)", w.failed),
        ("sockudo_webhook_requests_retried_total", "Webhook request retries", w.retried),
    ] {
        f.head(name, "counter", help);
        f.sample(name, &[("port", port)], value);
    }
}

/// `sockudo_broadcast_latency_ms`: only series that saw an observation.
fn latency(f: &mut Family<'_>, m: &Metrics, apps: &[(String, usize)], port: &str) {
    let name = "sockudo_broadcast_latency_ms";
    f.head(name, "histogram", "Publish (owner) to socket queue latency, per delivering shard");
    for (id, slot) in apps {
        for (t, ty) in CHANNEL_TYPES.iter().enumerate() {
            for (r, rb) in RECIPIENT_BUCKETS.iter().enumerate() {
                let counts: Vec<u64> = (0..14).map(|b| total(m, *slot, |a| &a.latency[t][r].buckets[b])).collect();
                let count: u64 = counts.iter().sum();
                if count == 0 {
                    continue;
                }
                let labels = [("app_id", id.as_str()), ("port", port), ("channel_type", *ty), ("recipient_count_bucket", *rb)];
                let mut cumulative = 0;
                for (b, c) in counts.iter().enumerate() {
                    cumulative += c;
                    let le = LATENCY_BUCKETS_MS.get(b).map_or("+Inf".to_owned(), |v| v.to_string());
                    let mut l = labels.to_vec();
                    l.push(("le", &le));
                    f.sample(&format!("{name}_bucket"), &l, cumulative);
                }
                let sum_us = total(m, *slot, |a| &a.latency[t][r].sum_us);
                f.sample(&format!("{name}_sum"), &labels, sum_us as f64 / 1000.0);
                f.sample(&format!("{name}_count"), &labels, count);
            }
        }
    }
}

/// Per shard: open sockets and frames queued, to find an unbalanced core; and each shard's
/// store (group commits and fsyncs).
fn per_shard(f: &mut Family<'_>, ctx: &Context) {
    let m = &ctx.metrics;
    let sum = |s: &super::ShardCounters, pick: fn(&AppCounters) -> &Counter| s.apps.iter().map(|a| pick(a).get()).fold(0u64, u64::wrapping_add);
    f.head("sockudo_shard_connections", "gauge", "Open WebSocket connections per shard");
    for (i, s) in m.shards.iter().enumerate() {
        let open = sum(s, |a| &a.new_connections).wrapping_sub(sum(s, |a| &a.disconnections));
        f.sample("sockudo_shard_connections", &[("shard", &i.to_string())], open as i64);
    }
    f.head("sockudo_shard_messages_sent_total", "counter", "WebSocket messages queued per shard");
    for (i, s) in m.shards.iter().enumerate() {
        f.sample("sockudo_shard_messages_sent_total", &[("shard", &i.to_string())], sum(s, |a| &a.ws_sent));
    }
    let Some(stores) = &ctx.stores else { return };
    f.head("sockudo_store_batches_total", "counter", "Group-commit batches written per shard store");
    for (i, s) in stores.by_shard.iter().enumerate() {
        f.sample("sockudo_store_batches_total", &[("shard", &i.to_string())], s.stats().batches());
    }
    f.head("sockudo_store_syncs_total", "counter", "fdatasync calls per shard store");
    for (i, s) in stores.by_shard.iter().enumerate() {
        f.sample("sockudo_store_syncs_total", &[("shard", &i.to_string())], s.stats().syncs());
    }
}

/// The standard `process_*` figures, from /proc.
fn process(f: &mut Family<'_>, m: &Metrics) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let (ticks, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK).max(1) as f64, libc::sysconf(libc::_SC_PAGESIZE).max(1) as u64) };
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
        f.head(name, "gauge", help);
        f.sample(name, &[], value);
    }
}
