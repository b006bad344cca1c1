//! Server configuration: defaults, then a TOML file (`--config`), then the reference server's
//! environment variables, then command-line flags. A bad value stops start-up with the key and
//! the problem. One module per part: `value` (the error type and readers), `flags`, `file` (the
//! file's shape), `apps`, `webhooks`, and `sections` (the other resolved sections).

mod adapter;
mod apps;
mod channel_delta;
mod file;
mod flags;
mod overrides;
mod policy;
mod sections;
mod value;
mod webhooks;

pub use adapter::{Adapter, RedisAdapter, RedisTarget};
pub use apps::{App, AppConfig, AppIdempotency, AppIdx, Limits, NamespaceConfig, Registry};
pub use channel_delta::ChannelDelta;
pub use flags::{Flags, USAGE};
pub use overrides::{HistoryOverride, RecoveryOverride};
pub use sections::{
    AiTransport, DeltaCompression, EchoControl, Filtering, History, Idempotency, Mesh, Presence, PresenceHistory,
    RateLimit, RateLimiter, ReplayWindow, Versioned, ROLLUP_WINDOWS_MS,
};
pub use value::{env, env_bool, num_or_str, ConfigError};
pub use webhooks::{
    wants, EventKind, Filter, FilterConfig, Retry, RetryConfig, Settings, Webhook, WebhookConfig, WebhooksFile,
};

use std::time::Duration;

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
    /// `sockudo:resume` is served; on by default (`docs/protocol/v2.md#recovery-configuration`).
    pub recovery_enabled: bool,
    /// What each channel's owner keeps in memory for connection recovery.
    pub replay_window: ReplayWindow,
    pub history: History,
    pub rate_limiter: RateLimiter,
    /// `text`, `json` or `logfmt` (`log_format`, env `LOG_FORMAT`).
    pub log_format: crate::logging::Format,
    /// Batching, timeouts and bounds of webhook delivery
    /// (`docs/protocol/http-api.md#batching-and-retries`).
    pub webhooks: Settings,
    /// How shards reach each other: request deadline and backlog bound.
    pub mesh: Mesh,
    /// The backplane shared with other nodes (`[adapter]`), if any.
    pub adapter: Adapter,
    pub presence: Presence,
    pub presence_history: PresenceHistory,
    pub ai_transport: AiTransport,
    pub filtering: Filtering,
    pub echo_control: EchoControl,
    pub delta: DeltaCompression,
    pub versioned: Versioned,
    /// Test-only hooks (`--test-hooks`): the `/test/echo` WebSocket route (Autobahn), stalling a
    /// shard, injected panics. Never on in production.
    pub test_hooks: bool,
    pub apps: Vec<App>,
}

impl Config {
    /// Resolves the configuration from `flags`, the file they name and the environment.
    pub fn load(flags: Flags) -> Result<Config, ConfigError> {
        let file = match &flags.config {
            Some(p) => file::read_file(p)?,
            None => file::FileConfig::default(),
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
            return Err(ConfigError::new(
                "app_manager.driver",
                format!("\"{driver}\" is not supported; use \"memory\""),
            ));
        }
        apps::apply_env_app(&mut apps)?;
        let mut builtin_dev_app = false;
        if apps.is_empty() && std::env::var("SOCKUDO_DEFAULT_APP_ENABLED").map_or(true, |v| v != "false") {
            apps.push(App::development());
            builtin_dev_app = true;
        }
        apps::check_unique(&apps)?;
        let mut history = sections::history(flags.data_dir, file.storage, file.history)?;
        overrides::apply(&apps, &mut history)?;
        let presence_history = sections::presence_history(file.presence_history, &mut history)?;
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
            shutdown_grace: Duration::from_secs(
                env("SHUTDOWN_GRACE_PERIOD")?.or(file.shutdown_grace_period).unwrap_or(10),
            ),
            max_queued_messages: env("WEBSOCKET_MAX_MESSAGES")?.or(file.websocket.max_messages).unwrap_or(1000).max(1),
            max_queued_bytes: max_bytes.unwrap_or(8 << 20).max(max_message_bytes),
            disconnect_on_buffer_full: env_bool("WEBSOCKET_DISCONNECT_ON_BUFFER_FULL")?
                .or(file.websocket.disconnect_on_buffer_full)
                .unwrap_or(true),
            max_http_body: env::<usize>("HTTP_API_REQUEST_LIMIT_IN_MB")?
                .or(file.http_api.request_limit_in_mb)
                .unwrap_or(10)
                << 20,
            usage_enabled: env_bool("HTTP_API_USAGE_ENABLED")?.or(file.http_api.usage_enabled).unwrap_or(true),
            idempotency: Idempotency {
                enabled: env_bool("IDEMPOTENCY_ENABLED")?.or(file.idempotency.enabled).unwrap_or(true),
                ttl: Duration::from_secs(
                    value::positive(
                        "idempotency.ttl_seconds",
                        env("IDEMPOTENCY_TTL_SECONDS")?.or(file.idempotency.ttl_seconds),
                    )?
                    .unwrap_or(120),
                ),
                max_key_length: value::positive(
                    "idempotency.max_key_length",
                    env("IDEMPOTENCY_MAX_KEY_LENGTH")?.or(file.idempotency.max_key_length),
                )?
                .unwrap_or(128),
            },
            recovery_enabled: env_bool("CONNECTION_RECOVERY_ENABLED")?
                .or(file.connection_recovery.enabled)
                .unwrap_or(true),
            replay_window: ReplayWindow {
                age: Duration::from_secs(
                    env("CONNECTION_RECOVERY_BUFFER_TTL")?
                        .or(file.connection_recovery.buffer_ttl_seconds)
                        .unwrap_or(120),
                ),
                count: value::positive(
                    "connection_recovery.max_buffer_size",
                    env("CONNECTION_RECOVERY_MAX_BUFFER_SIZE")?.or(file.connection_recovery.max_buffer_size),
                )?
                .unwrap_or(1000),
                bytes: value::positive(
                    "connection_recovery.max_buffer_bytes",
                    env("CONNECTION_RECOVERY_MAX_BUFFER_BYTES")?.or(file.connection_recovery.max_buffer_bytes),
                )?
                .unwrap_or(8 << 20),
            },
            versioned: sections::versioned(file.versioned_messages, file.annotations, &history)?,
            history,
            log_format: match env::<String>("LOG_FORMAT")?.or(file.log_format) {
                None => crate::logging::Format::Text,
                Some(v) => crate::logging::Format::parse(&v).ok_or_else(|| {
                    ConfigError::new("log_format", format!("\"{v}\" is not one of \"text\", \"json\", \"logfmt\""))
                })?,
            },
            rate_limiter: RateLimiter {
                // Tests and local development on the built-in app are not throttled
                // (`docs/protocol/http-api.md#rate-limits`).
                enabled: env_bool("RATE_LIMITER_ENABLED")?.or(file.rate_limiter.enabled).unwrap_or(!builtin_dev_app),
                api: sections::rate_limit(
                    "rate_limiter.api_rate_limit",
                    "RATE_LIMITER_API",
                    file.rate_limiter.api_rate_limit,
                    (1000, 1),
                )?,
                websocket: sections::rate_limit(
                    "rate_limiter.websocket_rate_limit",
                    "RATE_LIMITER_WS",
                    file.rate_limiter.websocket_rate_limit,
                    (100, 10),
                )?,
            },
            webhooks: Settings::load(file.webhooks)?,
            mesh: sections::mesh(file.mesh)?,
            adapter: adapter::load(file.adapter)?,
            presence: sections::presence(file.presence)?,
            presence_history,
            ai_transport: sections::ai_transport(file.ai_transport)?,
            filtering: sections::filtering(file.tag_filtering, file.event_name_filtering)?,
            echo_control: sections::echo_control(file.echo_control)?,
            delta: sections::delta_compression(file.delta_compression)?,
            test_hooks: flags.test_hooks,
            apps,
        };
        if config.metrics_enabled && config.metrics_port == config.port {
            return Err(ConfigError::new("metrics.port", "must differ from `port`"));
        }
        Ok(config)
    }
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
        let e =
            load_str("[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"s\"\nallowed_origins = [\"a*b*c\"]").unwrap_err();
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

    #[test]
    fn nested_policy_layout() {
        let c = load_str(
            r#"
[[apps]]
id = "a"
key = "k"
secret = "s"
enabled = true
max_event_batch_size = 3
[apps.policy.limits]
max_event_batch_size = "7"
max_presence_members_per_channel = 5
[apps.policy.features]
enable_client_messages = false
[apps.policy.channels]
allowed_origins = ["https://a.example"]
channel_namespaces = [{ name = "chat" }, { name = "quiet", presence_history = { enabled = false } }]
[apps.policy.idempotency]
ttl_seconds = 30
[apps.policy.presence_history]
enabled = true
[apps.policy.connection_recovery]
buffer_ttl_seconds = 30
max_buffer_size = "20"
[apps.policy.history]
max_bytes_per_channel = 1000
[presence_history]
max_events_per_channel = "50"
max_bytes_per_channel = 4096
"#,
        )
        .unwrap();
        let a = &c.apps[0];
        assert_eq!(a.limits.max_event_batch_size, 7, "the policy wins over the flat field");
        assert_eq!(a.limits.max_presence_members, 5);
        assert!(!a.client_messages);
        assert_eq!(a.allowed_origins, ["https://a.example"]);
        assert_eq!(a.namespaces.as_deref(), Some(&["chat".to_string(), "quiet".to_string()][..]));
        assert!(a.presence_history_allowed("presence-chat:1") && !a.presence_history_allowed("presence-quiet:1"));
        let presence = c.history.store.presence_retention;
        assert_eq!((presence.max_messages, presence.max_bytes), (Some(50), Some(4096)));
        assert!(c.presence_history.enabled);
        assert_eq!(a.idempotency.ttl_seconds, Some(30));
        assert!(a.validate_channel("chat:x").is_ok() && a.validate_channel("market:btc").is_err());
        let window = a.replay_window(c.replay_window);
        assert_eq!((window.age.as_secs(), window.count, window.bytes), (30, 20, c.replay_window.bytes));
        assert!(a.recovery_on(true) && a.history_on(&c.history));
        let retention = c.history.store.retention_for("a", "chat:x");
        assert_eq!((retention.max_bytes, retention.max_messages), (Some(1000), c.history.store.retention.max_messages));
        assert_eq!(c.history.store.retention_for("other-app", "chat:x"), c.history.store.retention);
        let e = load_str(
            "[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"s\"\n[apps.policy.limits]\nmax_event_batch_size = 0",
        )
        .unwrap_err();
        assert_eq!(e.key, "apps[0].policy.limits.max_event_batch_size", "{e}");
    }

    #[test]
    fn adapter_keys_as_the_reference_and_refusals() {
        assert!(matches!(load_str("").unwrap().adapter, Adapter::Local));
        let c = load_str(
            "[adapter]\ndriver = \"redis\"\n[adapter.redis]\nprefix = \"blue:\"\nrequests_timeout = \"2500\"\n\
             redis_pub_options = { url = \"redis://10.0.0.5:6380/2\" }\n[adapter.cluster_health]\n\
             heartbeat_interval_ms = 1000\nnode_timeout_ms = 5000",
        )
        .unwrap();
        let Adapter::Redis(r) = c.adapter else { panic!("redis adapter expected") };
        assert_eq!(r.target, RedisTarget::One("redis://10.0.0.5:6380/2".into()));
        assert_eq!(r.prefix, "blue:");
        assert_eq!((r.request_timeout, r.node_timeout), (Duration::from_millis(2500), Duration::from_secs(5)));
        // A Redis Cluster: the reference's `[adapter.cluster]`, `host:port` taken as a URL.
        let c = load_str(
            "[adapter]\ndriver = \"redis-cluster\"\n[adapter.cluster]\nnodes = [\"10.0.0.1:7000\", \"redis://10.0.0.2:7000\"]\n\
             prefix = \"green:\"\nrequest_timeout_ms = 1500\nuse_sharded_pubsub = true\nlog_partitions = 4",
        )
        .unwrap();
        let Adapter::Redis(r) = c.adapter else { panic!("redis adapter expected") };
        let nodes = vec!["redis://10.0.0.1:7000".to_owned(), "redis://10.0.0.2:7000".to_owned()];
        assert_eq!(r.target, RedisTarget::Cluster { nodes, parts: 4 });
        assert_eq!((r.prefix.as_str(), r.request_timeout), ("green:", Duration::from_millis(1500)));
        let e =
            load_str("[adapter]\ndriver = \"redis-cluster\"\n[adapter.cluster]\nlog_partitions = 1000").unwrap_err();
        assert_eq!(e.key, "adapter.cluster.log_partitions", "{e}");
        let e = load_str("[adapter]\ndriver = \"redis-cluster\"\n[adapter.cluster]\nnodes = []").unwrap_err();
        assert_eq!(e.key, "adapter.cluster.nodes", "{e}");
        let e = load_str("[adapter]\ndriver = \"nats\"").unwrap_err();
        assert!(e.key == "adapter.driver" && e.problem.contains("not supported"), "{e}");
        let e = load_str("[adapter]\ndriver = \"redis\"\nfallback_to_local = true").unwrap_err();
        assert_eq!(e.key, "adapter.fallback_to_local", "{e}");
        let e = load_str("[adapter]\ndriver = \"redis\"\n[adapter.redis]\nredis_pub_options = { url = \"http://x\" }")
            .unwrap_err();
        assert!(e.problem.contains("not a redis:// URL"), "{e}");
        let e =
            load_str("[adapter]\ndriver = \"redis\"\n[adapter.cluster_health]\nnode_timeout_ms = 1000").unwrap_err();
        assert_eq!(e.key, "adapter.cluster_health.node_timeout_ms", "{e}");
    }

    #[test]
    fn the_development_app_takes_any_namespace() {
        let c = load_str("").unwrap();
        assert!(c.apps[0].validate_channel("market:btc").is_ok());
        assert!(c.apps[0].validate_channel("presence-room:incident-123").is_ok());
    }
}
