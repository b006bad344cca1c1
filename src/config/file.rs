//! The config file's shape (TOML, the reference server's layout) and reading it: unknown keys
//! are logged and ignored so that a Sockudo `config.toml` loads.

use super::apps::AppConfig;
use super::value::{num_or_str, ConfigError};
use super::webhooks::WebhooksFile;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct FileConfig {
    pub(super) host: Option<String>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) port: Option<u16>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) shards: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) activity_timeout: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) user_authentication_timeout: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) websocket_max_payload_kb: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_connections: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) shutdown_grace_period: Option<u64>,
    pub(super) metrics: MetricsFile,
    pub(super) websocket: WebsocketFile,
    pub(super) http_api: HttpApiFile,
    pub(super) app_manager: AppManagerFile,
    pub(super) idempotency: IdempotencyFile,
    pub(super) connection_recovery: RecoveryFile,
    pub(super) storage: StorageFile,
    pub(super) history: HistoryFile,
    pub(super) rate_limiter: RateLimiterFile,
    pub(super) mesh: MeshFile,
    pub(super) adapter: super::adapter::AdapterFile,
    pub(super) presence: PresenceFile,
    pub(super) presence_history: PresenceHistoryFile,
    pub(super) ai_transport: AiTransportFile,
    pub(super) versioned_messages: VersionedFile,
    pub(super) annotations: AnnotationsFile,
    pub(super) tag_filtering: TagFilteringFile,
    pub(super) event_name_filtering: EventNameFilteringFile,
    pub(super) echo_control: EchoControlFile,
    pub(super) delta_compression: DeltaCompressionFile,
    pub(super) log_format: Option<String>,
    pub(super) webhooks: WebhooksFile,
    /// Shorthand for `app_manager.array.apps`.
    pub(super) apps: Vec<AppConfig>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct MetricsFile {
    pub(super) enabled: Option<bool>,
    pub(super) host: Option<String>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) port: Option<u16>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct WebsocketFile {
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_messages: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_bytes: Option<usize>,
    pub(super) disconnect_on_buffer_full: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) ping_interval: Option<u64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct HttpApiFile {
    #[serde(deserialize_with = "num_or_str")]
    pub(super) request_limit_in_mb: Option<usize>,
    pub(super) usage_enabled: Option<bool>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct RecoveryFile {
    pub(super) enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) buffer_ttl_seconds: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_buffer_size: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_buffer_bytes: Option<usize>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct StorageFile {
    pub(super) data_dir: Option<PathBuf>,
    pub(super) fsync: Option<String>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) fsync_interval_ms: Option<u64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct HistoryFile {
    pub(super) enabled: Option<bool>,
    pub(super) rewind_enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_page_size: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) retention_window_seconds: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_messages_per_channel: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_bytes_per_channel: Option<u64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct RateLimiterFile {
    pub(super) enabled: Option<bool>,
    pub(super) api_rate_limit: RateLimitFile,
    pub(super) websocket_rate_limit: RateLimitFile,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct RateLimitFile {
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_requests: Option<u32>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) window_seconds: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) trust_hops: Option<usize>,
}

/// `[annotations]`: annotations of mutable messages (`docs/protocol/v2.md#annotations`).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct AnnotationsFile {
    pub(super) enabled: Option<bool>,
}

/// `[versioned_messages]`: mutable messages (`docs/protocol/v2.md#mutable-messages`).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct VersionedFile {
    pub(super) enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_page_size: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) retention_window_seconds: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) cache_mb: Option<usize>,
}

/// `[presence]`: presence updates (`docs/protocol/v2.md#presence-update`).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct PresenceFile {
    #[serde(deserialize_with = "num_or_str")]
    pub(super) update_rate_limit_per_member_per_second: Option<u32>,
}

/// `[presence_history]`: presence transitions of presence channels
/// (`docs/protocol/v2.md#presence-history`).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct PresenceHistoryFile {
    pub(super) enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_page_size: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) retention_window_seconds: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_events_per_channel: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_bytes_per_channel: Option<u64>,
}

/// `[tag_filtering]`: tag and expression filters of subscriptions, and whether V2 frames
/// carry a message's tags (`docs/protocol/v2.md#subscription-filters`).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct TagFilteringFile {
    pub(super) enabled: Option<bool>,
    pub(super) enable_tags: Option<bool>,
}

/// `[echo_control]`: whether V2 client events come back to their sender
/// (`docs/protocol/v2.md#echo-control`).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct EchoControlFile {
    pub(super) enabled: Option<bool>,
    pub(super) default_echo_messages: Option<bool>,
}

/// `[delta_compression]`: deltas between a channel's consecutive frames for the V2 sockets that
/// ask (`docs/protocol/v2.md#delta-compression`).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct DeltaCompressionFile {
    pub(super) enabled: Option<bool>,
    pub(super) algorithm: Option<String>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) full_message_interval: Option<u32>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) min_message_size: Option<usize>,
}

/// `[event_name_filtering]`: event-name lists in subscription filters.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct EventNameFilteringFile {
    pub(super) enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_events_per_filter: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_event_name_length: Option<usize>,
}

/// `[ai_transport]`: the AI streaming conventions (`docs/protocol/v2.md#ai-transport`).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct AiTransportFile {
    pub(super) enabled: Option<bool>,
    /// `[[ai_transport.channels]] prefix = "…"`: the channels the conventions apply to.
    pub(super) channels: Option<Vec<AiChannelsFile>>,
    pub(super) rollup: RollupFile,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_accumulated_message_bytes: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_appends_per_message: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_open_streaming_messages_per_channel: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_transport_value_bytes: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_steer_codec_message_ids_bytes: Option<u64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct AiChannelsFile {
    pub(super) prefix: String,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct RollupFile {
    #[serde(deserialize_with = "num_or_str")]
    pub(super) default_window_ms: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) min_window_ms: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_window_ms: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) orphan_ttl_ms: Option<u64>,
}

/// `[mesh]`: the rings between shards (tuning.md).
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct MeshFile {
    #[serde(deserialize_with = "num_or_str")]
    pub(super) request_timeout_ms: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) backlog_limit: Option<usize>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct IdempotencyFile {
    pub(super) enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) ttl_seconds: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub(super) max_key_length: Option<usize>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct AppManagerFile {
    pub(super) driver: Option<String>,
    pub(super) array: AppArrayFile,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct AppArrayFile {
    pub(super) apps: Vec<AppConfig>,
}

pub(super) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let key = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(&key, format!("cannot read: {e}")))?;
    let toml_de = toml::Deserializer::new(&text);
    let mut unknown = Vec::new();
    let mut note_unknown = |p: serde_ignored::Path<'_>| unknown.push(p.to_string());
    let ignoring = serde_ignored::Deserializer::new(toml_de, &mut note_unknown);
    let parsed: FileConfig = serde_path_to_error::deserialize(ignoring).map_err(|e| {
        let at = e.path().to_string();
        let inner = e.into_inner();
        let msg = inner.message().to_owned();
        ConfigError::new(if at == "." { key.clone() } else { at }, msg)
    })?;
    for k in unknown {
        log::warn!("config {key}: `{k}` is not used by this server; ignored");
    }
    Ok(parsed)
}
