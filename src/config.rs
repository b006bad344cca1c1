//! Server configuration: defaults, then a TOML file, then the reference server's environment
//! variables, then command-line flags (spec 01 §11). A bad value stops start-up with the key
//! and the problem.

use crate::apps::{App, AppConfig};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A start-up failure: which setting, and what is wrong with it.
#[derive(Debug)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError { key: key.into(), problem: problem.into() }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: `{}`: {}", self.key, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Accepts a number, a numeric string (`"100"`) or `null` (spec 01 §11.1).
pub fn num_or_str<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: std::str::FromStr + TryFrom<i64>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        I(i64),
        S(String),
    }
    match Option::<N>::deserialize(d)? {
        None => Ok(None),
        Some(N::I(i)) => T::try_from(i).map(Some).map_err(|_| serde::de::Error::custom(format!("{i} is out of range"))),
        Some(N::S(s)) => s
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("\"{s}\" is not a valid number"))),
    }
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct FileConfig {
    host: Option<String>,
    #[serde(deserialize_with = "num_or_str")]
    port: Option<u16>,
    #[serde(deserialize_with = "num_or_str")]
    shards: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    activity_timeout: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    user_authentication_timeout: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    websocket_max_payload_kb: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    max_connections: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    shutdown_grace_period: Option<u64>,
    metrics: MetricsFile,
    websocket: WebsocketFile,
    http_api: HttpApiFile,
    app_manager: AppManagerFile,
    idempotency: IdempotencyFile,
    connection_recovery: RecoveryFile,
    storage: StorageFile,
    history: HistoryFile,
    rate_limiter: RateLimiterFile,
    log_format: Option<String>,
    webhooks: crate::webhook::WebhooksFile,
    /// Shorthand for `app_manager.array.apps`.
    apps: Vec<AppConfig>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct MetricsFile {
    enabled: Option<bool>,
    host: Option<String>,
    #[serde(deserialize_with = "num_or_str")]
    port: Option<u16>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct WebsocketFile {
    #[serde(deserialize_with = "num_or_str")]
    max_messages: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    max_bytes: Option<usize>,
    disconnect_on_buffer_full: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    ping_interval: Option<u64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct HttpApiFile {
    #[serde(deserialize_with = "num_or_str")]
    request_limit_in_mb: Option<usize>,
    usage_enabled: Option<bool>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct RecoveryFile {
    enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    buffer_ttl_seconds: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    max_buffer_size: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    max_buffer_bytes: Option<usize>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct StorageFile {
    data_dir: Option<PathBuf>,
    fsync: Option<String>,
    #[serde(deserialize_with = "num_or_str")]
    fsync_interval_ms: Option<u64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct HistoryFile {
    enabled: Option<bool>,
    rewind_enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    max_page_size: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    retention_window_seconds: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    max_messages_per_channel: Option<u64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct RateLimiterFile {
    enabled: Option<bool>,
    api_rate_limit: RateLimitFile,
    websocket_rate_limit: RateLimitFile,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct RateLimitFile {
    #[serde(deserialize_with = "num_or_str")]
    max_requests: Option<u32>,
    #[serde(deserialize_with = "num_or_str")]
    window_seconds: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    trust_hops: Option<usize>,
}

/// One fixed-window limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub max_requests: u32,
    pub window: Duration,
    /// Proxies in front whose `X-Forwarded-For` entries are trusted (WebSocket limit only).
    pub trust_hops: usize,
}

/// Node-wide rate limits (spec 01 §8.1, spec 00): HTTP API requests per app and WebSocket
/// connects per client IP. Off by default when only the built-in development app runs.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    pub enabled: bool,
    pub api: RateLimit,
    pub websocket: RateLimit,
}

fn rate_limit(prefix: &str, env_prefix: &str, f: RateLimitFile, default: (u32, u64)) -> Result<RateLimit, ConfigError> {
    let max = positive(&format!("{prefix}.max_requests"), env(&format!("{env_prefix}_MAX_REQUESTS"))?.or(f.max_requests))?;
    let window = positive(&format!("{prefix}.window_seconds"), env(&format!("{env_prefix}_WINDOW_SECONDS"))?.or(f.window_seconds))?;
    Ok(RateLimit {
        max_requests: max.unwrap_or(default.0),
        window: Duration::from_secs(window.unwrap_or(default.1)),
        trust_hops: env(&format!("{env_prefix}_TRUST_HOPS"))?.or(f.trust_hops).unwrap_or(0),
    })
}

/// Durable channel history (spec 02 §4–5). Off means no store is opened: serials, recovery and
/// idempotency then live in memory only and start over after a restart.
#[derive(Clone, Debug)]
pub struct History {
    pub enabled: bool,
    pub rewind_enabled: bool,
    /// Largest history page and rewind (spec 02 §5.1, §4.1).
    pub max_page_size: usize,
    pub data_dir: PathBuf,
    pub store: storage::StoreConfig,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct IdempotencyFile {
    enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    ttl_seconds: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    max_key_length: Option<usize>,
}

/// Publish idempotency (spec 01 §9); apps may override `enabled` and the window.
#[derive(Clone, Debug)]
pub struct Idempotency {
    pub enabled: bool,
    pub ttl: Duration,
    pub max_key_length: usize,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct AppManagerFile {
    driver: Option<String>,
    array: AppArrayFile,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct AppArrayFile {
    apps: Vec<AppConfig>,
}

/// The resolved configuration the server runs with.
#[derive(Clone, Debug)]
pub struct Config {
    pub host: String,
    pub port: u16,
    /// Number of shards (one executor per core).
    pub shards: usize,
    pub metrics_enabled: bool,
    pub metrics_host: String,
    pub metrics_port: u16,
    pub activity_timeout: Duration,
    pub pong_timeout: Duration,
    /// V2 native Ping interval: max(`websocket.ping_interval`, activity timeout / 2, 5 s);
    /// `None` when `ping_interval` is 0.
    pub v2_ping_interval: Option<Duration>,
    pub user_authentication_timeout: Duration,
    /// Largest inbound WebSocket message.
    pub max_message_bytes: usize,
    /// Node-wide socket limit; 0 = none.
    pub max_connections: usize,
    pub shutdown_grace: Duration,
    /// Per-socket outbound queue bound, in messages and bytes.
    pub max_queued_messages: usize,
    pub max_queued_bytes: usize,
    /// Close a socket whose queue is full with 4100 (else drop the message for it).
    pub disconnect_on_buffer_full: bool,
    pub max_http_body: usize,
    pub usage_enabled: bool,
    pub idempotency: Idempotency,
    /// `sockudo:resume` is served (spec 02 §3; on by default, spec 00).
    pub recovery_enabled: bool,
    /// What each channel's owner keeps in memory for connection recovery.
    pub replay_window: crate::shard::stream::ReplayWindow,
    pub history: History,
    pub rate_limiter: RateLimiter,
    /// `text`, `json` or `logfmt` (`log_format`, env `LOG_FORMAT`).
    pub log_format: crate::logging::Format,
    /// Batching, timeouts and bounds of webhook delivery (spec 01 §10.4).
    pub webhooks: crate::webhook::Settings,
    /// Test-only WebSocket echo route at `/test/echo` (Autobahn). Off unless `--test-echo`.
    pub test_echo: bool,
    pub apps: Vec<App>,
}

/// The options given on the command line.
#[derive(Default, Debug)]
pub struct Flags {
    pub config: Option<PathBuf>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub metrics_port: Option<u16>,
    pub shards: Option<usize>,
    pub data_dir: Option<PathBuf>,
    pub test_echo: bool,
}

pub const USAGE: &str = "usage: sockudo [--config FILE.toml] [--host ADDR] [--port N] [--metrics-port N] [--shards N] [--data-dir DIR] [--test-echo]";

impl Flags {
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Flags, ConfigError> {
        let mut f = Flags::default();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
                _ => (a.clone(), None),
            };
            let mut value = |key: &str| {
                inline.clone().or_else(|| it.next()).ok_or_else(|| ConfigError::new(key, "needs a value"))
            };
            match name.as_str() {
                "--config" | "-c" => f.config = Some(PathBuf::from(value("--config")?)),
                "--host" => f.host = Some(value("--host")?),
                "--port" => f.port = Some(parse_value("--port", &value("--port")?)?),
                "--metrics-port" => f.metrics_port = Some(parse_value("--metrics-port", &value("--metrics-port")?)?),
                "--shards" => f.shards = Some(parse_value("--shards", &value("--shards")?)?),
                "--data-dir" => f.data_dir = Some(PathBuf::from(value("--data-dir")?)),
                "--test-echo" => f.test_echo = true,
                "--help" | "-h" => return Err(ConfigError::new("--help", USAGE)),
                other => return Err(ConfigError::new(other, format!("unknown option; {USAGE}"))),
            }
        }
        Ok(f)
    }
}

fn parse_value<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.trim().parse().map_err(|_| ConfigError::new(key, format!("\"{v}\" is not a valid value")))
}

/// Reads `name` from the environment, parsed; absent is `None`, unparseable is an error.
pub(crate) fn env<T: std::str::FromStr>(name: &str) -> Result<Option<T>, ConfigError> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => parse_value(name, &v).map(Some),
        _ => Ok(None),
    }
}

pub(crate) fn env_bool(name: &str) -> Result<Option<bool>, ConfigError> {
    match std::env::var(name) {
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(ConfigError::new(name, format!("\"{v}\" is not a boolean"))),
        },
        Err(_) => Ok(None),
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
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

impl Config {
    /// Resolves the configuration from `flags`, the file they name and the environment.
    pub fn load(flags: Flags) -> Result<Config, ConfigError> {
        let file = match &flags.config {
            Some(p) => read_file(p)?,
            None => FileConfig::default(),
        };
        let shards = flags.shards.or(env("SOCKUDO_SHARDS")?).or(file.shards).unwrap_or(0);
        let shards = if shards == 0 { shards::available_cores() } else { shards };
        if shards > 1024 {
            return Err(ConfigError::new("shards", format!("{shards} is more than 1024")));
        }
        let kb = env("WEBSOCKET_MAX_PAYLOAD_KB")?.or(file.websocket_max_payload_kb).unwrap_or(64);
        let max_bytes = env("WEBSOCKET_MAX_BYTES")?.or(file.websocket.max_bytes);
        let max_message_bytes = max_bytes.unwrap_or(kb * 1024);
        if max_message_bytes == 0 {
            return Err(ConfigError::new("websocket_max_payload_kb", "must be greater than 0"));
        }
        let activity = env("ACTIVITY_TIMEOUT")?.or(file.activity_timeout).unwrap_or(120);
        if activity == 0 {
            return Err(ConfigError::new("activity_timeout", "must be at least 1 second"));
        }
        let mut apps = Vec::new();
        for (i, a) in file.apps.into_iter().chain(file.app_manager.array.apps).enumerate() {
            apps.push(App::from_config(a).map_err(|e| ConfigError::new(format!("apps[{i}].{}", e.key), e.problem))?);
        }
        if let Some(driver) = file.app_manager.driver.filter(|d| d != "memory") {
            return Err(ConfigError::new("app_manager.driver", format!("\"{driver}\" is not supported; use \"memory\"")));
        }
        apply_env_app(&mut apps)?;
        let mut builtin_dev_app = false;
        if apps.is_empty() && std::env::var("SOCKUDO_DEFAULT_APP_ENABLED").map_or(true, |v| v != "false") {
            apps.push(App::development());
            builtin_dev_app = true;
        }
        crate::apps::check_unique(&apps)?;
        let config = Config {
            host: flags.host.or(std::env::var("HOST").ok()).or(file.host).unwrap_or_else(|| "0.0.0.0".into()),
            port: flags.port.or(env("PORT")?).or(file.port).unwrap_or(6001),
            shards,
            metrics_enabled: env_bool("METRICS_ENABLED")?.or(file.metrics.enabled).unwrap_or(true),
            metrics_host: std::env::var("METRICS_HOST").ok().or(file.metrics.host).unwrap_or_else(|| "0.0.0.0".into()),
            metrics_port: flags.metrics_port.or(env("METRICS_PORT")?).or(file.metrics.port).unwrap_or(9601),
            activity_timeout: Duration::from_secs(activity),
            pong_timeout: Duration::from_secs(30),
            v2_ping_interval: match env("WEBSOCKET_PING_INTERVAL")?.or(file.websocket.ping_interval).unwrap_or(30) {
                0 => None,
                i => Some(Duration::from_secs(i.max(activity / 2).max(5))),
            },
            user_authentication_timeout: Duration::from_secs(
                env("USER_AUTHENTICATION_TIMEOUT")?.or(file.user_authentication_timeout).unwrap_or(3600),
            ),
            max_message_bytes,
            max_connections: env("SOCKUDO_MAX_CONNECTIONS")?.or(file.max_connections).unwrap_or(0),
            shutdown_grace: Duration::from_secs(env("SHUTDOWN_GRACE_PERIOD")?.or(file.shutdown_grace_period).unwrap_or(10)),
            max_queued_messages: env("WEBSOCKET_MAX_MESSAGES")?.or(file.websocket.max_messages).unwrap_or(1000).max(1),
            max_queued_bytes: max_bytes.unwrap_or(8 << 20).max(max_message_bytes),
            disconnect_on_buffer_full: env_bool("WEBSOCKET_DISCONNECT_ON_BUFFER_FULL")?
                .or(file.websocket.disconnect_on_buffer_full)
                .unwrap_or(true),
            max_http_body: env::<usize>("HTTP_API_REQUEST_LIMIT_IN_MB")?.or(file.http_api.request_limit_in_mb).unwrap_or(10)
                << 20,
            usage_enabled: env_bool("HTTP_API_USAGE_ENABLED")?.or(file.http_api.usage_enabled).unwrap_or(true),
            idempotency: Idempotency {
                enabled: env_bool("IDEMPOTENCY_ENABLED")?.or(file.idempotency.enabled).unwrap_or(true),
                ttl: Duration::from_secs(
                    positive("idempotency.ttl_seconds", env("IDEMPOTENCY_TTL_SECONDS")?.or(file.idempotency.ttl_seconds))?
                        .unwrap_or(120),
                ),
                max_key_length: positive(
                    "idempotency.max_key_length",
                    env("IDEMPOTENCY_MAX_KEY_LENGTH")?.or(file.idempotency.max_key_length),
                )?
                .unwrap_or(128),
            },
            recovery_enabled: env_bool("CONNECTION_RECOVERY_ENABLED")?.or(file.connection_recovery.enabled).unwrap_or(true),
            replay_window: crate::shard::stream::ReplayWindow {
                age: Duration::from_secs(
                    env("CONNECTION_RECOVERY_BUFFER_TTL")?.or(file.connection_recovery.buffer_ttl_seconds).unwrap_or(120),
                ),
                count: positive(
                    "connection_recovery.max_buffer_size",
                    env("CONNECTION_RECOVERY_MAX_BUFFER_SIZE")?.or(file.connection_recovery.max_buffer_size),
                )?
                .unwrap_or(1000),
                bytes: positive(
                    "connection_recovery.max_buffer_bytes",
                    env("CONNECTION_RECOVERY_MAX_BUFFER_BYTES")?.or(file.connection_recovery.max_buffer_bytes),
                )?
                .unwrap_or(8 << 20),
            },
            history: history(flags.data_dir, file.storage, file.history)?,
            log_format: match env::<String>("LOG_FORMAT")?.or(file.log_format) {
                None => crate::logging::Format::Text,
                Some(v) => crate::logging::Format::parse(&v)
                    .ok_or_else(|| ConfigError::new("log_format", format!("\"{v}\" is not one of \"text\", \"json\", \"logfmt\"")))?,
            },
            rate_limiter: RateLimiter {
                // Spec 00: tests and local development on the built-in app are not throttled.
                enabled: env_bool("RATE_LIMITER_ENABLED")?.or(file.rate_limiter.enabled).unwrap_or(!builtin_dev_app),
                api: rate_limit("rate_limiter.api_rate_limit", "RATE_LIMITER_API", file.rate_limiter.api_rate_limit, (1000, 1))?,
                websocket: rate_limit("rate_limiter.websocket_rate_limit", "RATE_LIMITER_WS", file.rate_limiter.websocket_rate_limit, (100, 10))?,
            },
            webhooks: crate::webhook::Settings::load(file.webhooks)?,
            test_echo: flags.test_echo,
            apps,
        };
        if config.metrics_enabled && config.metrics_port == config.port {
            return Err(ConfigError::new("metrics.port", "must differ from `port`"));
        }
        Ok(config)
    }
}

fn history(flag_dir: Option<PathBuf>, storage: StorageFile, file: HistoryFile) -> Result<History, ConfigError> {
    let data_dir = flag_dir
        .or(std::env::var_os("SOCKUDO_DATA_DIR").filter(|v| !v.is_empty()).map(PathBuf::from))
        .or(storage.data_dir)
        .unwrap_or_else(|| PathBuf::from("./data"));
    let interval = positive("storage.fsync_interval_ms", env("STORAGE_FSYNC_INTERVAL_MS")?.or(storage.fsync_interval_ms))?
        .unwrap_or(10);
    let fsync = match env::<String>("STORAGE_FSYNC")?.or(storage.fsync).as_deref().map(str::trim) {
        None | Some("interval") => storage::Fsync::Interval(Duration::from_millis(interval)),
        Some("always") => storage::Fsync::Always,
        Some("os") => storage::Fsync::Os,
        Some(other) => {
            return Err(ConfigError::new("storage.fsync", format!("\"{other}\" is not one of \"always\", \"interval\", \"os\"")))
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

/// A setting that must not be 0 when given.
fn positive<T: PartialEq + Default>(key: &str, v: Option<T>) -> Result<Option<T>, ConfigError> {
    match v {
        Some(n) if n == T::default() => Err(ConfigError::new(key, "must be greater than 0")),
        v => Ok(v),
    }
}

/// `SOCKUDO_DEFAULT_APP_*` (spec 01 §11.5): with id, key and secret set, the environment's app
/// replaces the file's apps; `SOCKUDO_DEFAULT_APP_ENABLED=false` removes them all.
fn apply_env_app(apps: &mut Vec<App>) -> Result<(), ConfigError> {
    if env_bool("SOCKUDO_SKIP_INLINE_APPS")? == Some(true)
        || env_bool("APP_MANAGER_REGISTER_INLINE_APPS")? == Some(false)
    {
        apps.clear();
    }
    let enabled = env_bool("SOCKUDO_DEFAULT_APP_ENABLED")?;
    if enabled == Some(false) {
        apps.clear();
        return Ok(());
    }
    let var = |s: &str| std::env::var(format!("SOCKUDO_DEFAULT_APP_{s}")).ok().filter(|v| !v.is_empty());
    let (Some(id), Some(key), Some(secret)) = (var("ID"), var("KEY"), var("SECRET")) else {
        return Ok(());
    };
    let mut c = AppConfig { id, key, secret, enabled: Some(true), ..AppConfig::default() };
    let n = |s: &str| env::<u64>(&format!("SOCKUDO_DEFAULT_APP_{s}"));
    c.max_connections = n("MAX_CONNECTIONS")?;
    c.max_client_events_per_second = n("MAX_CLIENT_EVENTS_PER_SECOND")?;
    c.max_presence_members_per_channel = n("MAX_PRESENCE_MEMBERS_PER_CHANNEL")?;
    c.max_presence_member_size_in_kb = n("MAX_PRESENCE_MEMBER_SIZE_IN_KB")?;
    c.max_channel_name_length = n("MAX_CHANNEL_NAME_LENGTH")?;
    c.max_event_channels_at_once = n("MAX_EVENT_CHANNELS_AT_ONCE")?;
    c.max_event_name_length = n("MAX_EVENT_NAME_LENGTH")?;
    c.max_event_payload_in_kb = n("MAX_EVENT_PAYLOAD_IN_KB")?;
    c.max_event_batch_size = n("MAX_EVENT_BATCH_SIZE")?;
    c.enable_client_messages =
        env_bool("SOCKUDO_DEFAULT_APP_ENABLE_CLIENT_MESSAGES")?.or(env_bool("SOCKUDO_ENABLE_CLIENT_MESSAGES")?);
    c.enable_user_authentication = env_bool("SOCKUDO_DEFAULT_APP_ENABLE_USER_AUTHENTICATION")?;
    c.enable_watchlist_events = env_bool("SOCKUDO_DEFAULT_APP_ENABLE_WATCHLIST_EVENTS")?;
    if let Some(o) = var("ALLOWED_ORIGINS") {
        c.allowed_origins = Some(o.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect());
    }
    apps.clear();
    apps.push(App::from_config(c).map_err(|e| ConfigError::new(format!("SOCKUDO_DEFAULT_APP_{}", e.key.to_uppercase()), e.problem))?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str) -> Result<Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("sockudo-config-test-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.toml");
        std::fs::write(&p, toml).unwrap();
        let r = Config::load(Flags { config: Some(p), shards: Some(1), ..Flags::default() });
        std::fs::remove_dir_all(&dir).ok();
        r
    }

    #[test]
    fn defaults_give_the_dev_app() {
        let c = load_str("").unwrap();
        assert_eq!((c.port, c.metrics_port, c.apps.len()), (6001, 9601, 1));
        assert_eq!(c.history.store.fsync, storage::Fsync::Interval(Duration::from_millis(10)));
        assert!(c.history.enabled);
        assert_eq!((c.apps[0].id.as_str(), c.apps[0].key.as_str()), ("app-id", "app-key"));
        assert_eq!(c.max_message_bytes, 64 * 1024);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = load_str("port = \"abc\"").unwrap_err();
        assert_eq!(e.key, "port");
        assert!(e.problem.contains("abc"), "{e}");
        let e = load_str("[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"s\"\nmax_event_batch_size = -3").unwrap_err();
        assert!(e.key.contains("max_event_batch_size"), "{e}");
        let e = load_str("[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"s\"\nallowed_origins = [\"a*b*c\"]").unwrap_err();
        assert!(e.key.contains("allowed_origins"), "{e}");
        let e = load_str("[[apps]]\nid = \"a\"\nkey = \"\"\nsecret = \"s\"").unwrap_err();
        assert!(e.key.contains("key"), "{e}");
        let e = load_str("[storage]\nfsync = \"sometimes\"").unwrap_err();
        assert!(e.key == "storage.fsync" && e.problem.contains("sometimes"), "{e}");
        let e = load_str("[history]\nmax_page_size = 0").unwrap_err();
        assert_eq!(e.key, "history.max_page_size");
    }

    #[test]
    fn numeric_strings_and_reference_layout() {
        let c = load_str("port = \"7001\"\n[[app_manager.array.apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"s\"\nenabled = true\nmax_event_batch_size = \"5\"").unwrap();
        assert_eq!(c.port, 7001);
        assert_eq!(c.apps[0].limits.max_event_batch_size, 5);
    }
}
