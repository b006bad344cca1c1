//! Prometheus metrics (`docs/protocol/http-api.md#metrics`): counters kept per shard and per app, summed only when
//! `/metrics` is scraped.
//!
//! Each shard writes only its own counters, so a count is a relaxed load and store on a cache
//! line no other core writes: no lock, no shared atomic read-modify-write on the fanout path.
//! The scrape thread reads every shard's counters with relaxed loads; a scrape may see one
//! shard a few increments apart from another, which Prometheus tolerates.

mod exposition;
mod server;

pub use exposition::render;
pub use server::serve;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A counter (or, with `sub`, a gauge) written by one shard only.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        // One writer: a plain load and store is enough and costs no locked instruction.
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// For gauges: the sum over shards comes out right even if one shard's part wraps.
    #[inline]
    pub fn sub(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_sub(n), Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// `channel_type` label values, classified as the reference does: any name containing
/// `cache-` is `cache`, `private-encrypted-` counts as `private`.
pub const CHANNEL_TYPES: [&str; 5] = ["public", "private", "presence", "private_encrypted", "cache"];

/// A channel's `channel_type` label; its index into [`CHANNEL_TYPES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelLabel {
    Public,
    Private,
    Presence,
    PrivateEncrypted,
    Cache,
}

impl ChannelLabel {
    pub fn of(name: &str) -> ChannelLabel {
        if name.contains("cache-") {
            ChannelLabel::Cache
        } else if name.starts_with("presence-") {
            ChannelLabel::Presence
        } else if name.starts_with("private-") {
            ChannelLabel::Private
        } else {
            ChannelLabel::Public
        }
    }
}

/// Limiters counted by `sockudo_rate_limit_*` (`limiter_type`, `request_context`), indexed by
/// [`Limiter`].
pub const LIMITERS: [(&str, &str); 3] =
    [("client_events", "websocket"), ("api_rate_limit", "http"), ("connection_rate_limit", "websocket")];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limiter {
    ClientEvents,
    ApiRate,
    ConnectionRate,
}

/// Why a WebSocket was refused or failed (`error_type`), indexed by [`ConnectionError`].
pub const CONNECTION_ERRORS: [&str; 6] = [
    "app_not_found",
    "app_disabled",
    "origin_not_allowed",
    "over_capacity",
    "invalid_message_format",
    "authentication_failed",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionError {
    AppNotFound,
    AppDisabled,
    OriginNotAllowed,
    OverCapacity,
    InvalidMessageFormat,
    AuthenticationFailed,
}

/// Why connections ended (`reason` of `sockudo_disconnections_by_reason_total`), indexed by
/// [`CloseReason`].
pub const CLOSE_REASONS: [&str; 11] = [
    "connection_lost",
    "normal",
    "protocol_error",
    "app_refused",
    "unauthorized",
    "over_capacity",
    "reconnect_requested",
    "pong_timeout",
    "client_event_rate_limit",
    "internal_error",
    "other",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    ConnectionLost,
    Normal,
    ProtocolError,
    AppRefused,
    Unauthorized,
    OverCapacity,
    ReconnectRequested,
    PongTimeout,
    ClientEventRateLimit,
    InternalError,
    Other,
}

impl CloseReason {
    /// From the close code sent or received (0: none, the connection just ended).
    pub fn of(code: u16) -> CloseReason {
        match code {
            0 => CloseReason::ConnectionLost,
            1000 | 1001 => CloseReason::Normal,
            1011 => CloseReason::InternalError,
            1002..=1015 => CloseReason::ProtocolError,
            4001 | 4003 | 4004 => CloseReason::AppRefused,
            4009 => CloseReason::Unauthorized,
            4100 => CloseReason::OverCapacity,
            4200 => CloseReason::ReconnectRequested,
            4201 => CloseReason::PongTimeout,
            4301 => CloseReason::ClientEventRateLimit,
            _ => CloseReason::Other,
        }
    }
}

/// Where a panic was caught (`context` of `sockudo_panics_total`), indexed by [`PanicSite`].
pub const PANIC_SITES: [&str; 3] = ["socket", "request", "task"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PanicSite {
    /// Handling one WebSocket's input: that socket was closed with 1011.
    Socket,
    /// Handling one HTTP request (answered 500) or one request from another shard.
    Request,
    /// A shard's own background task, which was restarted.
    Task,
}

/// `sockudo_broadcast_latency_ms` buckets (ms) and recipient-count buckets.
pub const LATENCY_BUCKETS_MS: [f64; 13] =
    [0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0];
pub const RECIPIENT_BUCKETS: [&str; 5] = ["xs", "sm", "md", "lg", "xl"];

fn recipient_bucket(n: usize) -> usize {
    match n {
        0..=10 => 0,
        11..=100 => 1,
        101..=1000 => 2,
        1001..=10_000 => 3,
        _ => 4,
    }
}

/// One histogram series: cumulative counts are computed at scrape time.
#[derive(Default)]
pub struct Histogram {
    /// Observations per bucket (the last one is `+Inf`).
    buckets: [Counter; 14],
    sum_us: Counter,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        let i = LATENCY_BUCKETS_MS.iter().position(|&b| ms <= b).unwrap_or(LATENCY_BUCKETS_MS.len());
        self.buckets[i].inc();
        self.sum_us.add(d.as_micros() as u64);
    }
}

/// What one shard counts for one app (the last slot of each shard is `system`: requests that
/// name no app).
#[derive(Default)]
pub struct AppCounters {
    pub new_connections: Counter,
    pub panics: [Counter; PANIC_SITES.len()],
    pub disconnections: Counter,
    pub disconnections_by_reason: [Counter; CLOSE_REASONS.len()],
    pub connection_errors: [Counter; CONNECTION_ERRORS.len()],
    pub ws_received: Counter,
    pub ws_received_bytes: Counter,
    pub ws_sent: Counter,
    pub ws_sent_bytes: Counter,
    pub http_calls: Counter,
    pub http_received_bytes: Counter,
    pub http_sent_bytes: Counter,
    pub subscriptions: [Counter; 5],
    pub unsubscriptions: [Counter; 5],
    /// Channels with at least one local subscriber (a gauge).
    pub active_channels: [Counter; 5],
    pub rate_limit_checks: [Counter; LIMITERS.len()],
    pub rate_limit_triggered: [Counter; LIMITERS.len()],
    pub idempotency_publishes: Counter,
    pub idempotency_duplicates: Counter,
    /// Sockets closed with 4100 because their queue was full.
    pub slow_consumer_disconnections: Counter,
    /// Work refused because a shard was too far behind (counted under `system`).
    pub backlog_refusals: Counter,
    /// Bytes delta frames saved against the full frames they replaced.
    pub delta_bytes_saved: Counter,
    /// Per channel type and recipient bucket.
    latency: [[Histogram; 5]; 5],
}

impl AppCounters {
    /// One delivery of a channel message on this shard: `recipients` frames of `bytes` in all,
    /// `age` after the owner took the publish.
    #[inline]
    pub fn delivered(&self, channel: &str, recipients: usize, bytes: usize, age: Duration) {
        if recipients == 0 {
            return;
        }
        self.ws_sent.add(recipients as u64);
        self.ws_sent_bytes.add(bytes as u64);
        self.latency[ChannelLabel::of(channel) as usize][recipient_bucket(recipients)].observe(age);
    }
}

/// One shard's counters, one `AppCounters` per app plus `system`.
pub struct ShardCounters {
    apps: Box<[AppCounters]>,
}

impl ShardCounters {
    /// `app` is an `AppIdx`; `None` is `system`.
    #[inline]
    pub fn app(&self, app: Option<crate::config::AppIdx>) -> &AppCounters {
        let last = self.apps.len() - 1;
        &self.apps[app.map_or(last, |a| a as usize)]
    }
}

/// What a scrape reads: the counters, and what `node` alone sees besides them.
pub struct Sources<'a> {
    pub metrics: &'a Metrics,
    /// Each app's id, in `AppIdx` order.
    pub app_ids: Vec<&'a str>,
    pub webhooks: Option<crate::webhook::WebhookStatsSnapshot>,
    /// Each shard store's figures (none when history is off).
    pub stores: Vec<&'a storage::StoreStats>,
    /// The backplane's figures, when the node is one of several.
    pub backplane: Option<BackplaneFigures>,
}

/// What a backplane reports (`docs/protocol/http-api.md#metrics`).
#[derive(Clone, Copy, Debug, Default)]
pub struct BackplaneFigures {
    pub connected: bool,
    /// Intents appended to the cluster log, and appends that failed (answered 503).
    pub appended: u64,
    pub append_failures: u64,
    /// Entries read from the cluster log (every node's, this one's included).
    pub entries_read: u64,
    /// Times a link to the backplane was lost.
    pub disconnects: u64,
}

/// Every shard's counters.
pub struct Metrics {
    shards: Box<[ShardCounters]>,
    /// Label `port` on every series: the metrics port (`docs/protocol/http-api.md#metrics`).
    port: String,
    started_at: std::time::SystemTime,
}

impl Metrics {
    pub fn new(shards: usize, apps: usize, port: u16) -> Metrics {
        let shard = || ShardCounters { apps: (0..=apps).map(|_| AppCounters::default()).collect() };
        Metrics {
            shards: (0..shards).map(|_| shard()).collect(),
            port: port.to_string(),
            started_at: std::time::SystemTime::now(),
        }
    }

    pub fn shard(&self, id: usize) -> &ShardCounters {
        &self.shards[id]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gauges_and_classification() {
        let c = Counter::default();
        c.add(3);
        c.sub(5);
        c.add(4);
        assert_eq!(c.get(), 2);
        assert_eq!(ChannelLabel::of("private-encrypted-x"), ChannelLabel::Private);
        assert_eq!(ChannelLabel::of("presence-cache-x"), ChannelLabel::Cache);
        assert_eq!(ChannelLabel::of("presence-x"), ChannelLabel::Presence);
        assert_eq!(ChannelLabel::of("x"), ChannelLabel::Public);
        assert_eq!(CloseReason::of(1011), CloseReason::InternalError);
        assert_eq!(CLOSE_REASONS[CloseReason::Other as usize], "other");
        assert_eq!(recipient_bucket(10), 0);
        assert_eq!(recipient_bucket(11), 1);
        assert_eq!(recipient_bucket(10_001), 4);
        let h = Histogram::default();
        h.observe(Duration::from_micros(700));
        h.observe(Duration::from_secs(9));
        assert_eq!((h.buckets[1].get(), h.buckets[13].get(), h.sum_us.get()), (1, 1, 9_000_700));
    }
}
