//! Webhook configuration: which events exist, what each app's webhooks ask for (event types,
//! channel filters, headers, retries) and the server-wide `[webhooks]` settings
//! (`docs/protocol/http-api.md#webhooks`).

use super::value::{env, env_bool, num_or_str, ConfigError};
use crate::protocol::channel;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The webhook events this server sends (`docs/protocol/http-api.md#webhook-events`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    ChannelOccupied,
    ChannelVacated,
    MemberAdded,
    MemberRemoved,
    /// A presence member replaced its `user_info` (`sockudo:presence_update`, V2).
    MemberUpdated,
    ClientEvent,
    CacheMiss,
    SubscriptionCount,
}

impl EventKind {
    pub const ALL: [EventKind; 8] = [
        EventKind::ChannelOccupied,
        EventKind::ChannelVacated,
        EventKind::MemberAdded,
        EventKind::MemberRemoved,
        EventKind::MemberUpdated,
        EventKind::ClientEvent,
        EventKind::CacheMiss,
        EventKind::SubscriptionCount,
    ];

    /// The event's `name` on the wire and in `event_types`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::ChannelOccupied => "channel_occupied",
            EventKind::ChannelVacated => "channel_vacated",
            EventKind::MemberAdded => "member_added",
            EventKind::MemberRemoved => "member_removed",
            EventKind::MemberUpdated => "member_updated",
            EventKind::ClientEvent => "client_event",
            EventKind::CacheMiss => "cache_miss",
            EventKind::SubscriptionCount => "subscription_count",
        }
    }

    pub fn parse(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// Event types of the reference's V2 part (`docs/protocol/http-api.md#webhook-events`):
/// accepted in a config so that a Sockudo file loads, never sent by this server.
fn is_v2_event_type(name: &str) -> bool {
    name == "message_version_created" || ["annotation_", "ai_", "push_"].iter().any(|p| name.starts_with(p))
}

// ---- per-app configuration -------------------------------------------------------------------

/// One webhook as written in an app's config (`docs/protocol/http-api.md#webhook-configuration`).
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct WebhookConfig {
    pub url: Option<String>,
    /// AWS Lambda delivery (not supported here: refused with a clear error).
    pub lambda_function: Option<String>,
    pub lambda: Option<serde::de::IgnoredAny>,
    pub event_types: Vec<String>,
    pub filter: FilterConfig,
    pub headers: BTreeMap<String, String>,
    pub retry: RetryConfig,
    #[serde(deserialize_with = "num_or_str")]
    pub request_timeout_ms: Option<u64>,
}

/// Which channels a webhook hears about; every given field must match
/// (`docs/protocol/http-api.md#webhook-configuration`).
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct FilterConfig {
    pub channel_prefix: Option<String>,
    pub channel_suffix: Option<String>,
    pub channel_pattern: Option<String>,
    pub channel_namespace: Option<String>,
    pub channel_namespaces: Option<Vec<String>>,
}

/// Retry settings; unset fields take the server's `[webhooks.retry]`
/// (`docs/protocol/http-api.md#batching-and-retries`).
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct RetryConfig {
    pub enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_attempts: Option<u32>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_elapsed_time_ms: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub initial_backoff_ms: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_backoff_ms: Option<u64>,
}

impl RetryConfig {
    /// Checks the given fields; `at` is the key of this table.
    fn check(&self, at: &str) -> Result<(), ConfigError> {
        for (field, v) in [
            ("max_attempts", self.max_attempts.map(u64::from)),
            ("max_elapsed_time_ms", self.max_elapsed_time_ms),
            ("initial_backoff_ms", self.initial_backoff_ms),
            ("max_backoff_ms", self.max_backoff_ms),
        ] {
            if v == Some(0) {
                return Err(ConfigError::new(format!("{at}.{field}"), "must be greater than 0"));
            }
        }
        if let (Some(i), Some(m)) = (self.initial_backoff_ms, self.max_backoff_ms) {
            if m < i {
                return Err(ConfigError::new(
                    format!("{at}.max_backoff_ms"),
                    "must not be less than `initial_backoff_ms`",
                ));
            }
        }
        Ok(())
    }
}

/// A channel filter, compiled.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    prefix: Option<String>,
    suffix: Option<String>,
    pattern: Option<regex::Regex>,
    namespace: Option<String>,
    namespaces: Option<Vec<String>>,
}

impl Filter {
    /// Compiles `c`; an invalid `channel_pattern` is an error naming it.
    pub fn compile(c: FilterConfig) -> Result<Filter, ConfigError> {
        let pattern = match c.channel_pattern {
            Some(p) => Some(regex::Regex::new(&p).map_err(|e| {
                let first = e.to_string().lines().last().unwrap_or_default().trim().to_owned();
                ConfigError::new(
                    "filter.channel_pattern",
                    format!("\"{p}\" is not a valid regular expression: {first}"),
                )
            })?),
            None => None,
        };
        Ok(Filter {
            prefix: c.channel_prefix,
            suffix: c.channel_suffix,
            pattern,
            namespace: c.channel_namespace,
            namespaces: c.channel_namespaces,
        })
    }

    pub fn matches(&self, channel: &str) -> bool {
        let ns = namespace_of(channel);
        self.prefix.as_deref().is_none_or(|p| channel.starts_with(p))
            && self.suffix.as_deref().is_none_or(|s| channel.ends_with(s))
            && self.pattern.as_ref().is_none_or(|r| r.is_match(channel))
            && self.namespace.as_deref().is_none_or(|n| ns == Some(n))
            && self.namespaces.as_ref().is_none_or(|list| ns.is_some_and(|ns| list.iter().any(|n| n == ns)))
    }
}

/// A channel's namespace: the text before the first `:` after its type prefix
/// (`private-chat:room` is in `chat`), as in the naming rules
/// (`docs/protocol/pusher.md#channel-names`).
fn namespace_of(channel: &str) -> Option<&str> {
    channel::classify(channel).1.split_once(':').map(|(ns, _)| ns)
}

/// One configured webhook, validated.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub url: String,
    kinds: u8,
    filter: Filter,
    /// Custom headers sent with every request.
    pub headers: Vec<(String, String)>,
    pub retry: RetryConfig,
    /// Overrides the server's `webhooks.request_timeout_ms`.
    pub request_timeout: Option<Duration>,
}

impl Webhook {
    /// This webhook wants events of `kind` on `channel`.
    pub fn wants(&self, kind: EventKind, channel: &str) -> bool {
        self.kinds & kind.bit() != 0 && self.filter.matches(channel)
    }
}

/// Some webhook of `hooks` wants events of `kind` on `channel`.
pub fn wants(hooks: &[Webhook], kind: EventKind, channel: &str) -> bool {
    hooks.iter().any(|h| h.wants(kind, channel))
}

/// Headers a webhook may not set: the server sets them
/// (`docs/protocol/http-api.md#webhook-requests`) or HTTP does.
const RESERVED_HEADERS: [&str; 6] =
    ["content-type", "content-length", "host", "transfer-encoding", "x-pusher-key", "x-pusher-signature"];

/// Validates an app's `webhooks`; an error's key is `webhooks[i].<field>`.
pub fn compile(configs: Vec<WebhookConfig>) -> Result<Vec<Webhook>, ConfigError> {
    configs
        .into_iter()
        .enumerate()
        .map(|(i, c)| compile_one(c).map_err(|e| ConfigError::new(format!("webhooks[{i}].{}", e.key), e.problem)))
        .collect()
}

fn compile_one(c: WebhookConfig) -> Result<Webhook, ConfigError> {
    let url = match (c.url, c.lambda_function.is_some() || c.lambda.is_some()) {
        (Some(u), _) => u,
        (None, true) => return Err(ConfigError::new("url", "AWS Lambda delivery is not supported; give a `url`")),
        (None, false) => return Err(ConfigError::new("url", "is required")),
    };
    match url::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty()) => {}
        Ok(_) => {
            return Err(ConfigError::new("url", format!("\"{url}\" must be an http:// or https:// URL with a host")))
        }
        Err(e) => return Err(ConfigError::new("url", format!("\"{url}\" is not a valid URL: {e}"))),
    }
    if c.event_types.is_empty() {
        return Err(ConfigError::new("event_types", "must list at least one event type"));
    }
    let mut kinds = 0;
    for name in &c.event_types {
        match EventKind::parse(name) {
            Some(k) => kinds |= k.bit(),
            None if is_v2_event_type(name) => {
                log::warn!("webhook {url}: event type \"{name}\" is not sent by this server; ignored")
            }
            None => {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.name()).collect();
                return Err(ConfigError::new(
                    "event_types",
                    format!("\"{name}\" is not a webhook event type (one of {})", known.join(", ")),
                ));
            }
        }
    }
    let filter = Filter::compile(c.filter)?;
    let mut headers = Vec::new();
    for (name, value) in c.headers {
        let token =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            return Err(ConfigError::new("headers", format!("\"{name}\" is not a valid header name")));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(ConfigError::new("headers", format!("\"{name}\" is set by the server")));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(ConfigError::new(format!("headers.{name}"), "must not contain line breaks"));
        }
        headers.push((name, value));
    }
    c.retry.check("retry")?;
    if c.request_timeout_ms == Some(0) {
        return Err(ConfigError::new("request_timeout_ms", "must be greater than 0"));
    }
    Ok(Webhook {
        url,
        kinds,
        filter,
        headers,
        retry: c.retry,
        request_timeout: c.request_timeout_ms.map(Duration::from_millis),
    })
}

// ---- server-wide settings ---------------------------------------------------------------------

/// `[webhooks]` of the config file.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub struct WebhooksFile {
    batching: BatchingFile,
    #[serde(deserialize_with = "num_or_str")]
    request_timeout_ms: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    queue_capacity: Option<usize>,
    #[serde(deserialize_with = "num_or_str")]
    max_concurrent: Option<usize>,
    retry: RetryConfig,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct BatchingFile {
    enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    duration: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    size: Option<usize>,
}

/// When a failed delivery is tried again (`docs/protocol/http-api.md#batching-and-retries`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub enabled: bool,
    /// Attempts in all, the first included; `None`: only `max_elapsed` stops.
    pub max_attempts: Option<u32>,
    pub max_elapsed: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            enabled: true,
            max_attempts: None,
            max_elapsed: Duration::from_secs(300),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl Retry {
    /// These settings with a webhook's own fields over them.
    pub fn with(&self, c: &RetryConfig) -> Retry {
        let ms = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_millis);
        let initial_backoff = ms(c.initial_backoff_ms, self.initial_backoff);
        Retry {
            enabled: c.enabled.unwrap_or(self.enabled),
            max_attempts: c.max_attempts.or(self.max_attempts),
            max_elapsed: ms(c.max_elapsed_time_ms, self.max_elapsed),
            initial_backoff,
            max_backoff: ms(c.max_backoff_ms, self.max_backoff).max(initial_backoff),
        }
    }

    /// The wait before the next attempt after `attempts` failed ones, the first made `elapsed`
    /// ago: `initial × 2^(attempts-1)`, capped at `max_backoff`; `None` once `max_attempts`
    /// are used or the wait would end past `max_elapsed`.
    pub fn next_wait(&self, attempts: u32, elapsed: Duration) -> Option<Duration> {
        if !self.enabled || attempts == 0 || self.max_attempts.is_some_and(|m| attempts >= m) {
            return None;
        }
        let factor = 1u32.checked_shl(attempts - 1).unwrap_or(u32::MAX);
        let wait = self.initial_backoff.saturating_mul(factor).min(self.max_backoff);
        (elapsed + wait <= self.max_elapsed).then_some(wait)
    }
}

/// The resolved `[webhooks]` settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Events of one app gathered for `batch_duration`, up to `batch_size`, go in one request
    /// per webhook; off: one event per request.
    pub batching: bool,
    pub batch_duration: Duration,
    pub batch_size: usize,
    pub request_timeout: Duration,
    /// Events waiting for the sender; more are dropped (and counted).
    pub queue_capacity: usize,
    /// HTTP requests in flight at once (one sender thread each).
    pub max_concurrent: usize,
    pub retry: Retry,
}

impl Settings {
    /// Resolves `[webhooks]` with the `WEBHOOK_BATCHING_*` variables over it
    /// (`docs/protocol/http-api.md#batching-and-retries`).
    pub fn load(file: WebhooksFile) -> Result<Settings, ConfigError> {
        let positive = |key: &str, v: Option<u64>, default: u64, max: u64| -> Result<u64, ConfigError> {
            match v.unwrap_or(default) {
                0 => Err(ConfigError::new(key, "must be greater than 0")),
                n if n > max => Err(ConfigError::new(key, format!("{n} is more than {max}"))),
                n => Ok(n),
            }
        };
        let duration = env("WEBHOOK_BATCHING_DURATION")?.or(file.batching.duration).unwrap_or(50);
        if duration > 60_000 {
            return Err(ConfigError::new("webhooks.batching.duration", format!("{duration} ms is more than 60000")));
        }
        let size = env::<u64>("WEBHOOK_BATCHING_SIZE")?.or(file.batching.size.map(|s| s as u64));
        file.retry.check("webhooks.retry")?;
        Ok(Settings {
            batching: env_bool("WEBHOOK_BATCHING_ENABLED")?.or(file.batching.enabled).unwrap_or(true),
            batch_duration: Duration::from_millis(duration),
            batch_size: positive("webhooks.batching.size", size, 100, 10_000)? as usize,
            request_timeout: Duration::from_millis(positive(
                "webhooks.request_timeout_ms",
                file.request_timeout_ms,
                10_000,
                3_600_000,
            )?),
            queue_capacity: positive(
                "webhooks.queue_capacity",
                file.queue_capacity.map(|v| v as u64),
                100_000,
                10_000_000,
            )? as usize,
            max_concurrent: positive("webhooks.max_concurrent", file.max_concurrent.map(|v| v as u64), 20, 256)?
                as usize,
            retry: Retry::default().with(&file.retry),
        })
    }
}

impl Default for Settings {
    fn default() -> Settings {
        Settings::load(WebhooksFile::default()).expect("the defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(toml_text: &str) -> Result<Filter, ConfigError> {
        Filter::compile(toml::from_str(toml_text).unwrap())
    }

    #[test]
    fn filters_and_together() {
        let all = filter("").unwrap();
        assert!(all.matches("anything") && all.matches("private-x"));
        let f = filter("channel_prefix = \"private-\"\nchannel_suffix = \"-live\"").unwrap();
        assert!(f.matches("private-game-live"));
        assert!(!f.matches("private-game") && !f.matches("game-live"));
        let p = filter(r#"channel_pattern = '^orders-\d+$'"#).unwrap();
        assert!(p.matches("orders-42") && !p.matches("orders-x") && !p.matches("xorders-1"));
        let ns = filter("channel_namespace = \"chat\"").unwrap();
        assert!(ns.matches("chat:room") && ns.matches("presence-chat:room") && ns.matches("private-chat:a:b"));
        assert!(!ns.matches("chat") && !ns.matches("orders:1") && !ns.matches("chatter:1"));
        let list = filter("channel_namespaces = [\"chat\", \"orders\"]").unwrap();
        assert!(list.matches("orders:1") && list.matches("private-chat:x") && !list.matches("news:1"));
        assert!(!list.matches("orders"));
        let both = filter("channel_namespaces = [\"chat\", \"orders\"]\nchannel_prefix = \"private-\"").unwrap();
        assert!(both.matches("private-orders:1") && !both.matches("orders:1"));
    }

    #[test]
    fn invalid_pattern_is_refused_with_its_key() {
        let e = filter("channel_pattern = \"orders-(\"").unwrap_err();
        assert_eq!(e.key, "filter.channel_pattern");
        assert!(e.problem.contains("orders-("), "{e}");
        let e = compile(vec![WebhookConfig {
            url: Some("http://x/hook".into()),
            event_types: vec!["channel_occupied".into()],
            filter: FilterConfig { channel_pattern: Some("[".into()), ..FilterConfig::default() },
            ..WebhookConfig::default()
        }])
        .unwrap_err();
        assert_eq!(e.key, "webhooks[0].filter.channel_pattern");
    }

    fn hook(url: &str, types: &[&str]) -> WebhookConfig {
        WebhookConfig {
            url: Some(url.into()),
            event_types: types.iter().map(|s| s.to_string()).collect(),
            ..WebhookConfig::default()
        }
    }

    #[test]
    fn webhook_validation() {
        let ok = compile(vec![hook("https://example.com/hook", &["channel_occupied", "member_updated"])]).unwrap();
        assert!(ok[0].wants(EventKind::ChannelOccupied, "c"));
        assert!(!ok[0].wants(EventKind::ChannelVacated, "c"));
        let bad = |c: WebhookConfig| compile(vec![hook("http://ok/", &["client_event"]), c]).unwrap_err();
        assert_eq!(bad(hook("ftp://x/", &["client_event"])).key, "webhooks[1].url");
        assert_eq!(bad(hook("not a url", &["client_event"])).key, "webhooks[1].url");
        assert_eq!(bad(WebhookConfig { url: None, ..hook("", &["client_event"]) }).key, "webhooks[1].url");
        let e = bad(hook("http://x/", &["channel_ocupied"]));
        assert!(e.key == "webhooks[1].event_types" && e.problem.contains("channel_ocupied"), "{e}");
        assert_eq!(bad(hook("http://x/", &[])).key, "webhooks[1].event_types");
        let mut h = hook("http://x/", &["client_event"]);
        h.headers.insert("X-Pusher-Signature".into(), "forged".into());
        assert_eq!(bad(h).key, "webhooks[1].headers");
        let mut h = hook("http://x/", &["client_event"]);
        h.retry.initial_backoff_ms = Some(0);
        assert_eq!(bad(h).key, "webhooks[1].retry.initial_backoff_ms");
        let mut h = hook("http://x/", &["client_event"]);
        (h.retry.initial_backoff_ms, h.retry.max_backoff_ms) = (Some(500), Some(100));
        assert_eq!(bad(h).key, "webhooks[1].retry.max_backoff_ms");
    }

    #[test]
    fn backoff_schedule() {
        let r = Retry::default();
        let s = Duration::from_secs;
        // 1, 2, 4, ... 32, then capped at 60 s.
        let waits: Vec<_> = (1..=8).map(|n| r.next_wait(n, Duration::ZERO).unwrap()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60].map(s));
        assert_eq!(r.next_wait(40, Duration::ZERO), Some(s(60)), "no overflow");
        // Stops when the next wait would end past max_elapsed (300 s).
        assert_eq!(r.next_wait(7, s(240)), Some(s(60)));
        assert_eq!(r.next_wait(7, s(241)), None);
        let capped =
            r.with(&RetryConfig { max_attempts: Some(3), initial_backoff_ms: Some(200), ..RetryConfig::default() });
        assert_eq!(capped.next_wait(1, Duration::ZERO), Some(Duration::from_millis(200)));
        assert_eq!(capped.next_wait(2, Duration::ZERO), Some(Duration::from_millis(400)));
        assert_eq!(capped.next_wait(3, Duration::ZERO), None, "three attempts in all");
        let off = r.with(&RetryConfig { enabled: Some(false), ..RetryConfig::default() });
        assert_eq!(off.next_wait(1, Duration::ZERO), None);
        // A per-webhook max below the global initial backoff still waits at least that.
        let low = r.with(&RetryConfig { max_backoff_ms: Some(10), ..RetryConfig::default() });
        assert_eq!(low.next_wait(3, Duration::ZERO), Some(s(1)));
    }

    /// Loads a whole config file the way the server does.
    fn load_config(text: &str) -> Result<crate::config::Config, ConfigError> {
        let dir = std::env::temp_dir().join(format!("sockudo-webhook-test-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, text).unwrap();
        let flags = crate::config::Flags { config: Some(path), shards: Some(1), ..Default::default() };
        let r = crate::config::Config::load(flags);
        std::fs::remove_dir_all(&dir).ok();
        r
    }

    #[test]
    fn config_file_forms() {
        let app = "[[apps]]\nid = \"a\"\nkey = \"k\"\nsecret = \"s\"\n";
        let inline = format!(
            "[webhooks]\nbatching = {{ enabled = true, duration = 20, size = 7 }}\nmax_concurrent = 3\n{app}\
             webhooks = [{{ url = \"http://h/1\", event_types = [\"channel_occupied\"], headers = {{ X-T = \"v\" }} }}]\n"
        );
        let c = load_config(&inline).unwrap();
        assert_eq!((c.webhooks.batch_size, c.webhooks.max_concurrent), (7, 3));
        assert_eq!(c.apps[0].webhooks[0].headers, [("X-T".to_string(), "v".to_string())]);
        let tables = format!(
            "{app}[[apps.webhooks]]\nurl = \"https://h/2\"\nevent_types = [\"client_event\"]\n\
             request_timeout_ms = \"500\"\nretry = {{ max_attempts = 4 }}\n[apps.webhooks.filter]\nchannel_prefix = \"private-\"\n"
        );
        let c = load_config(&tables).unwrap();
        let h = &c.apps[0].webhooks[0];
        assert!(h.wants(EventKind::ClientEvent, "private-x") && !h.wants(EventKind::ClientEvent, "x"));
        assert_eq!((h.request_timeout, h.retry.max_attempts), (Some(Duration::from_millis(500)), Some(4)));
        let bad = format!("{app}webhooks = [{{ url = \"http://h/\", event_types = [\"cache_miss\"], filter = {{ channel_pattern = \"(\" }} }}]\n");
        let e = load_config(&bad).unwrap_err();
        assert_eq!(e.key, "apps[0].webhooks[0].filter.channel_pattern", "{e}");
        assert!(e.to_string().contains("is not a valid regular expression"), "{e}");
    }

    #[test]
    fn settings_defaults_and_bounds() {
        let s = Settings::default();
        assert!(s.batching);
        assert_eq!((s.batch_duration, s.batch_size), (Duration::from_millis(50), 100));
        assert_eq!((s.request_timeout, s.queue_capacity, s.max_concurrent), (Duration::from_secs(10), 100_000, 20));
        let load = |t: &str| Settings::load(toml::from_str(t).unwrap());
        assert_eq!(load("max_concurrent = 0").unwrap_err().key, "webhooks.max_concurrent");
        assert_eq!(load("queue_capacity = 0").unwrap_err().key, "webhooks.queue_capacity");
        assert_eq!(load("[batching]\nsize = 0").unwrap_err().key, "webhooks.batching.size");
        assert_eq!(load("[retry]\nmax_attempts = 0").unwrap_err().key, "webhooks.retry.max_attempts");
        let s = load("[batching]\nenabled = false\nduration = \"20\"\n[retry]\nmax_attempts = 5").unwrap();
        assert!(!s.batching && s.batch_duration == Duration::from_millis(20) && s.retry.max_attempts == Some(5));
    }
}
