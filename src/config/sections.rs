//! The resolved settings of the config's sections that are more than a value or two: rate
//! limits, history and storage, idempotency, the recovery buffer and the shard mesh.

use super::file::{
    AiTransportFile, AnnotationsFile, DeltaCompressionFile, EchoControlFile, EventNameFilteringFile, HistoryFile,
    MeshFile, PresenceFile, PresenceHistoryFile, RateLimitFile, StorageFile, TagFilteringFile, VersionedFile,
};
use super::value::{env, env_bool, positive, ConfigError};
use crate::protocol::ai::{self, HeaderLimits};
use std::path::PathBuf;
use std::time::Duration;

/// One fixed-window limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub max_requests: u32,
    pub window: Duration,
    /// Proxies in front whose `X-Forwarded-For` entries are trusted (WebSocket limit only).
    pub trust_hops: usize,
}

/// Node-wide rate limits (`docs/protocol/http-api.md#rate-limits`): HTTP API requests per app
/// and WebSocket connects per client IP. Off by default when only the built-in development app
/// runs.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    pub enabled: bool,
    pub api: RateLimit,
    pub websocket: RateLimit,
}

pub(super) fn rate_limit(
    prefix: &str,
    env_prefix: &str,
    f: RateLimitFile,
    default: (u32, u64),
) -> Result<RateLimit, ConfigError> {
    let max =
        positive(&format!("{prefix}.max_requests"), env(&format!("{env_prefix}_MAX_REQUESTS"))?.or(f.max_requests))?;
    let window = positive(
        &format!("{prefix}.window_seconds"),
        env(&format!("{env_prefix}_WINDOW_SECONDS"))?.or(f.window_seconds),
    )?;
    Ok(RateLimit {
        max_requests: max.unwrap_or(default.0),
        window: Duration::from_secs(window.unwrap_or(default.1)),
        trust_hops: env(&format!("{env_prefix}_TRUST_HOPS"))?.or(f.trust_hops).unwrap_or(0),
    })
}

/// Durable channel history (`docs/protocol/v2.md#durable-history`). Off means no store is
/// opened: serials, recovery and idempotency then live in memory only and start over after a
/// restart.
#[derive(Clone, Debug)]
pub struct History {
    pub enabled: bool,
    pub rewind_enabled: bool,
    /// Largest history page and rewind (`docs/protocol/v2.md#http-history`,
    /// `docs/protocol/v2.md#rewind-request`).
    pub max_page_size: usize,
    pub data_dir: PathBuf,
    pub store: storage::StoreConfig,
}

/// Publish idempotency (`docs/protocol/http-api.md#idempotency`); apps may override `enabled` and
/// the window.
#[derive(Clone, Debug)]
pub struct Idempotency {
    pub enabled: bool,
    pub ttl: Duration,
    pub max_key_length: usize,
}

/// How much of a stream stays in memory for recovery: a message is dropped once it is both older
/// than `age` and beyond the newest `count` (by default 120 s or 1,000 messages, whichever is
/// larger: `docs/protocol/v2.md#recovery-configuration`), or when the buffer holds more than
/// `bytes` (a very busy channel must not hold minutes of traffic in memory).
#[derive(Clone, Copy, Debug)]
pub struct ReplayWindow {
    pub age: Duration,
    pub count: usize,
    pub bytes: usize,
}

/// Mutable messages (`[versioned_messages]`, `docs/protocol/v2.md#mutable-messages`). They
/// live in the store, so they are on only where durable history is.
#[derive(Clone, Copy, Debug)]
pub struct Versioned {
    pub enabled: bool,
    /// Largest page of `GET …/messages/{serial}/versions`.
    pub max_page_size: usize,
    /// Memory each shard may spend on the state of messages being mutated (tuning.md).
    pub cache_bytes: usize,
    /// `[annotations] enabled`: annotations of mutable messages, where the app allows them.
    pub annotations: bool,
}

pub(super) fn versioned(f: VersionedFile, a: AnnotationsFile, history: &History) -> Result<Versioned, ConfigError> {
    let enabled = env_bool("VERSIONED_MESSAGES_ENABLED")?.or(f.enabled).unwrap_or(true);
    let max_page_size =
        positive("versioned_messages.max_page_size", env("VERSIONED_MESSAGES_MAX_PAGE_SIZE")?.or(f.max_page_size))?
            .unwrap_or(100);
    let cache_mb = positive("versioned_messages.cache_mb", env("VERSIONED_MESSAGES_CACHE_MB")?.or(f.cache_mb))?;
    let retention = env::<u64>("VERSIONED_MESSAGES_RETENTION_WINDOW_SECONDS")?.or(f.retention_window_seconds);
    if retention.is_some() {
        log::info!(
            "versioned_messages.retention_window_seconds is not used: a message's versions are kept as long as its \
             history row (history.retention_window_seconds, history.max_messages_per_channel)"
        );
    }
    if enabled && !history.enabled {
        log::info!("versioned messages are off: they need durable history (history.enabled)");
    }
    let enabled = enabled && history.enabled;
    let annotations = env_bool("ANNOTATIONS_ENABLED")?.or(a.enabled).unwrap_or(true);
    if annotations && !enabled {
        log::info!("annotations are off: they annotate versioned messages (versioned_messages.enabled)");
    }
    Ok(Versioned {
        enabled,
        max_page_size,
        cache_bytes: cache_mb.unwrap_or(64) << 20,
        annotations: annotations && enabled,
    })
}

/// Presence updates (`[presence]`).
#[derive(Clone, Copy, Debug)]
pub struct Presence {
    /// `sockudo:presence_update`s one member may send per second on one channel.
    pub update_rate_per_member: u32,
}

pub(super) fn presence(f: PresenceFile) -> Result<Presence, ConfigError> {
    let rate = positive(
        "presence.update_rate_limit_per_member_per_second",
        env("PRESENCE_UPDATE_RATE_LIMIT_PER_MEMBER_PER_SECOND")?.or(f.update_rate_limit_per_member_per_second),
    )?;
    Ok(Presence { update_rate_per_member: rate.unwrap_or(10) })
}

/// Presence history (`[presence_history]`, `docs/protocol/v2.md#presence-history`). It lives
/// in the store, so it is on only where durable history is; its retention is the store's
/// `presence_retention`.
#[derive(Clone, Copy, Debug)]
pub struct PresenceHistory {
    pub enabled: bool,
    /// Largest page of `GET …/presence/history`.
    pub max_page_size: usize,
}

pub(super) fn presence_history(f: PresenceHistoryFile, history: &mut History) -> Result<PresenceHistory, ConfigError> {
    let enabled = env_bool("PRESENCE_HISTORY_ENABLED")?.or(f.enabled).unwrap_or(true);
    if enabled && !history.enabled {
        log::info!("presence history is off: it needs durable history (history.enabled)");
    }
    let max_page_size =
        positive("presence_history.max_page_size", env("PRESENCE_HISTORY_MAX_PAGE_SIZE")?.or(f.max_page_size))?
            .unwrap_or(100);
    let age = positive(
        "presence_history.retention_window_seconds",
        env("PRESENCE_HISTORY_RETENTION_WINDOW_SECONDS")?.or(f.retention_window_seconds),
    )?
    .unwrap_or(86_400);
    let events = positive(
        "presence_history.max_events_per_channel",
        env("PRESENCE_HISTORY_MAX_EVENTS_PER_CHANNEL")?.or(f.max_events_per_channel),
    )?;
    let bytes = positive(
        "presence_history.max_bytes_per_channel",
        env("PRESENCE_HISTORY_MAX_BYTES_PER_CHANNEL")?.or(f.max_bytes_per_channel),
    )?;
    history.store.presence_retention = storage::Retention {
        max_age: Some(Duration::from_secs(age)),
        max_messages: Some(events.unwrap_or(10_000)),
        max_bytes: bytes,
    };
    Ok(PresenceHistory { enabled: enabled && history.enabled, max_page_size })
}

/// The rollup windows a client or the config may choose (`docs/protocol/v2.md#ai-transport`).
pub const ROLLUP_WINDOWS_MS: [u64; 5] = [0, 20, 40, 100, 500];

/// The AI streaming conventions (`[ai_transport]`, `docs/protocol/v2.md#ai-transport`): which
/// channels they apply to, and how long appends to one message are gathered into one frame
/// for their subscribers.
#[derive(Clone, Debug)]
pub struct AiTransport {
    pub enabled: bool,
    /// Channel name prefixes of the AI channels.
    pub prefixes: Vec<String>,
    /// The rollup window of AI channels; zero: every append goes out as it comes.
    pub rollup: Duration,
    /// The windows `append_rollup_window` may ask for.
    pub rollup_range_ms: (u64, u64),
    /// How much `extras.ai` values may hold.
    pub header_limits: HeaderLimits,
    /// The longest text a message on an AI channel may grow to (create or appends).
    pub max_accumulated_bytes: usize,
    pub max_appends_per_message: u32,
    /// Messages whose `extras.ai.transport.status` is `streaming`, per channel.
    pub max_open_streams: usize,
    /// A streaming message with no change for this long no longer counts as open.
    pub orphan_ttl: Duration,
}

impl AiTransport {
    pub fn is_ai_channel(&self, channel: &str) -> bool {
        self.enabled && self.prefixes.iter().any(|p| channel.starts_with(p.as_str()))
    }

    /// Whether a connection may ask for this window (`append_rollup_window`).
    pub fn window_allowed(&self, ms: u64) -> bool {
        ROLLUP_WINDOWS_MS.contains(&ms) && (self.rollup_range_ms.0..=self.rollup_range_ms.1).contains(&ms)
    }
}

pub(super) fn ai_transport(f: AiTransportFile) -> Result<AiTransport, ConfigError> {
    let enabled = env_bool("AI_TRANSPORT_ENABLED")?.or(f.enabled).unwrap_or(true);
    let prefixes: Vec<String> = match f.channels {
        Some(c) => c.into_iter().map(|c| c.prefix).collect(),
        None => vec!["private-ai-".into()],
    };
    if prefixes.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::new("ai_transport.channels", "each entry needs a non-empty `prefix`"));
    }
    let r = f.rollup;
    let min = env("AI_TRANSPORT_ROLLUP_MIN_WINDOW_MS")?.or(r.min_window_ms).unwrap_or(0);
    let max = env("AI_TRANSPORT_ROLLUP_MAX_WINDOW_MS")?.or(r.max_window_ms).unwrap_or(500);
    let window = env("AI_TRANSPORT_ROLLUP_DEFAULT_WINDOW_MS")?.or(r.default_window_ms).unwrap_or(40);
    for (key, ms) in [("min_window_ms", min), ("max_window_ms", max), ("default_window_ms", window)] {
        if !ROLLUP_WINDOWS_MS.contains(&ms) {
            let problem = format!("{ms} is not one of 0, 20, 40, 100, 500");
            return Err(ConfigError::new(format!("ai_transport.rollup.{key}"), problem));
        }
    }
    if !(min..=max).contains(&window) {
        return Err(ConfigError::new(
            "ai_transport.rollup.default_window_ms",
            format!("{window} is outside min_window_ms..=max_window_ms ({min}..={max})"),
        ));
    }
    let header_limits = HeaderLimits {
        transport_value_bytes: at_least(
            "max_transport_value_bytes",
            env("AI_TRANSPORT_MAX_TRANSPORT_VALUE_BYTES")?.or(f.max_transport_value_bytes),
            ai::MIN_VALUE_BYTES,
        )?,
        steer_ids_bytes: at_least(
            "max_steer_codec_message_ids_bytes",
            env("AI_TRANSPORT_MAX_STEER_CODEC_MESSAGE_IDS_BYTES")?.or(f.max_steer_codec_message_ids_bytes),
            ai::MIN_STEER_IDS_BYTES,
        )?,
    };
    let max_accumulated_bytes = positive(
        "ai_transport.max_accumulated_message_bytes",
        env("AI_TRANSPORT_MAX_ACCUMULATED_MESSAGE_BYTES")?.or(f.max_accumulated_message_bytes),
    )?
    .unwrap_or(1 << 20);
    let max_appends = positive(
        "ai_transport.max_appends_per_message",
        env("AI_TRANSPORT_MAX_APPENDS_PER_MESSAGE")?.or(f.max_appends_per_message),
    )?
    .unwrap_or(4096);
    let max_open_streams = positive(
        "ai_transport.max_open_streaming_messages_per_channel",
        env("AI_TRANSPORT_MAX_OPEN_STREAMING_MESSAGES_PER_CHANNEL")?.or(f.max_open_streaming_messages_per_channel),
    )?
    .unwrap_or(1024);
    let orphan_ttl =
        positive("ai_transport.rollup.orphan_ttl_ms", env("AI_TRANSPORT_ROLLUP_ORPHAN_TTL_MS")?.or(r.orphan_ttl_ms))?
            .unwrap_or(60_000);
    Ok(AiTransport {
        enabled,
        prefixes,
        rollup: Duration::from_millis(window),
        rollup_range_ms: (min, max),
        header_limits,
        max_accumulated_bytes: max_accumulated_bytes as usize,
        max_appends_per_message: u32::try_from(max_appends).unwrap_or(u32::MAX),
        max_open_streams: max_open_streams as usize,
        orphan_ttl: Duration::from_millis(orphan_ttl),
    })
}

/// A registry limit the config may raise but not lower: lowering it would refuse messages
/// every client library is entitled to send.
fn at_least(key: &str, value: Option<u64>, floor: usize) -> Result<usize, ConfigError> {
    match value {
        None => Ok(floor),
        Some(v) if (v as usize) < floor => {
            Err(ConfigError::new(format!("ai_transport.{key}"), format!("{v} is below the protocol's {floor}")))
        }
        Some(v) => Ok(v as usize),
    }
}

/// How shards reach each other (`[mesh]`, tuning.md).
#[derive(Clone, Copy, Debug)]
pub struct Mesh {
    /// How long a shard waits for another's answer before the request fails (503 on HTTP).
    pub request_timeout: Duration,
    /// Requests one shard may have waiting for a peer beyond the ring before new ones are
    /// refused (503) instead of queued.
    pub backlog_limit: usize,
}

pub(super) fn mesh(f: MeshFile) -> Result<Mesh, ConfigError> {
    let timeout = positive("mesh.request_timeout_ms", env("MESH_REQUEST_TIMEOUT_MS")?.or(f.request_timeout_ms))?;
    let backlog = positive("mesh.backlog_limit", env("MESH_BACKLOG_LIMIT")?.or(f.backlog_limit))?;
    Ok(Mesh {
        request_timeout: Duration::from_millis(timeout.unwrap_or(5000)),
        backlog_limit: backlog.unwrap_or(65_536),
    })
}

pub(super) fn history(
    flag_dir: Option<PathBuf>,
    storage: StorageFile,
    file: HistoryFile,
) -> Result<History, ConfigError> {
    let data_dir = flag_dir
        .or(std::env::var_os("SOCKUDO_DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from))
        .or(storage.data_dir)
        .unwrap_or_else(|| PathBuf::from("./data"));
    let interval =
        positive("storage.fsync_interval_ms", env("STORAGE_FSYNC_INTERVAL_MS")?.or(storage.fsync_interval_ms))?
            .unwrap_or(10);
    let fsync = match env::<String>("STORAGE_FSYNC")?.or(storage.fsync).as_deref().map(str::trim) {
        None | Some("interval") => storage::Fsync::Interval(Duration::from_millis(interval)),
        Some("always") => storage::Fsync::Always,
        Some("os") => storage::Fsync::Os,
        Some(other) => {
            return Err(ConfigError::new(
                "storage.fsync",
                format!("\"{other}\" is not one of \"always\", \"interval\", \"os\""),
            ))
        }
    };
    let retention = storage::Retention {
        max_age: Some(Duration::from_secs(
            positive(
                "history.retention_window_seconds",
                env("HISTORY_RETENTION_WINDOW_SECONDS")?.or(file.retention_window_seconds),
            )?
            .unwrap_or(86_400),
        )),
        max_messages: Some(
            positive(
                "history.max_messages_per_channel",
                env("HISTORY_MAX_MESSAGES_PER_CHANNEL")?.or(file.max_messages_per_channel),
            )?
            .unwrap_or(10_000),
        ),
        max_bytes: positive(
            "history.max_bytes_per_channel",
            env("HISTORY_MAX_BYTES_PER_CHANNEL")?.or(file.max_bytes_per_channel),
        )?,
    };
    Ok(History {
        enabled: env_bool("HISTORY_ENABLED")?.or(file.enabled).unwrap_or(true),
        rewind_enabled: env_bool("HISTORY_REWIND_ENABLED")?.or(file.rewind_enabled).unwrap_or(true),
        max_page_size: positive("history.max_page_size", env("HISTORY_MAX_PAGE_SIZE")?.or(file.max_page_size))?
            .unwrap_or(100),
        data_dir,
        store: storage::StoreConfig { fsync, retention, ..storage::StoreConfig::default() },
    })
}

/// Subscription filters and tags on the wire (`docs/protocol/v2.md#subscription-filters`).
#[derive(Clone, Copy, Debug)]
pub struct Filtering {
    pub filters: crate::protocol::filter::Settings,
    /// V2 frames carry the publisher's `tags` (`tag_filtering.enable_tags`).
    pub deliver_tags: bool,
}

pub(super) fn filtering(tags: TagFilteringFile, events: EventNameFilteringFile) -> Result<Filtering, ConfigError> {
    let max_events = positive(
        "event_name_filtering.max_events_per_filter",
        env("EVENT_NAME_FILTERING_MAX_EVENTS_PER_FILTER")?.or(events.max_events_per_filter),
    )?
    .unwrap_or(50);
    let max_event_name_length = positive(
        "event_name_filtering.max_event_name_length",
        env("EVENT_NAME_FILTERING_MAX_EVENT_NAME_LENGTH")?.or(events.max_event_name_length),
    )?
    .unwrap_or(200);
    Ok(Filtering {
        filters: crate::protocol::filter::Settings {
            tags: env_bool("TAG_FILTERING_ENABLED")?.or(tags.enabled).unwrap_or(true),
            events: env_bool("EVENT_NAME_FILTERING_ENABLED")?.or(events.enabled).unwrap_or(true),
            max_events,
            max_event_name_length,
        },
        deliver_tags: env_bool("TAG_FILTERING_ENABLE_TAGS")?.or(tags.enable_tags).unwrap_or(false),
    })
}

/// Echo of V2 client events to their sender (`docs/protocol/v2.md#echo-control`).
#[derive(Clone, Copy, Debug)]
pub struct EchoControl {
    /// Off: every V2 connection gets its own client events back, whatever it asked.
    pub enabled: bool,
    /// For a V2 connection that does not give `echo_messages`.
    pub default_echo: bool,
}

pub(super) fn echo_control(f: EchoControlFile) -> Result<EchoControl, ConfigError> {
    Ok(EchoControl {
        enabled: env_bool("ECHO_CONTROL_ENABLED")?.or(f.enabled).unwrap_or(true),
        default_echo: env_bool("ECHO_CONTROL_DEFAULT_ECHO_MESSAGES")?.or(f.default_echo_messages).unwrap_or(true),
    })
}

/// Delta compression (`docs/protocol/v2.md#delta-compression`).
#[derive(Clone, Copy, Debug)]
pub struct DeltaCompression {
    pub enabled: bool,
    /// For sockets that do not name one.
    pub algorithm: crate::protocol::delta::Algorithm,
    /// After this many deltas on a base key, a full frame.
    pub full_message_interval: u32,
    /// Smaller messages go out as ordinary frames.
    pub min_message_size: usize,
}

pub(super) fn delta_compression(f: DeltaCompressionFile) -> Result<DeltaCompression, ConfigError> {
    let algorithm = match std::env::var("DELTA_COMPRESSION_ALGORITHM").ok().or(f.algorithm) {
        None => crate::protocol::delta::Algorithm::Fossil,
        Some(a) => crate::protocol::delta::Algorithm::parse(&a).ok_or_else(|| {
            ConfigError::new("delta_compression.algorithm", format!("\"{a}\" is not fossil or xdelta3"))
        })?,
    };
    Ok(DeltaCompression {
        enabled: env_bool("DELTA_COMPRESSION_ENABLED")?.or(f.enabled).unwrap_or(true),
        algorithm,
        full_message_interval: positive(
            "delta_compression.full_message_interval",
            env("DELTA_COMPRESSION_FULL_MESSAGE_INTERVAL")?.or(f.full_message_interval),
        )?
        .unwrap_or(10),
        min_message_size: env("DELTA_COMPRESSION_MIN_MESSAGE_SIZE")?.or(f.min_message_size).unwrap_or(100),
    })
}
