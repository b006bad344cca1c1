//! Applications: credentials, switches and limits (the reference's flat fields, with the
//! defaults in README.md), origin validation, and the app the environment may define. Immutable
//! once loaded; every shard reads the same registry.

use super::overrides::{HistoryOverride, RecoveryOverride};
use super::policy::{Policy, PolicySwitch};
use super::value::{env, env_bool, num_or_str, ConfigError};
use super::webhooks::{Webhook, WebhookConfig};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;

/// An app as written in the config file (flat layout).
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct AppConfig {
    pub id: String,
    pub key: String,
    pub secret: String,
    /// The reference defaults an omitted `enabled` to false; so do we
    /// (`docs/protocol/pusher.md#app-fields`).
    pub enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_connections: Option<u64>,
    pub enable_client_messages: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_client_events_per_second: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub decay_seconds: Option<u64>,
    pub terminate_on_limit: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_presence_members_per_channel: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_presence_member_size_in_kb: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_channel_name_length: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_event_channels_at_once: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_event_name_length: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_event_payload_in_kb: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_event_batch_size: Option<u64>,
    pub enable_user_authentication: Option<bool>,
    pub enable_watchlist_events: Option<bool>,
    /// Annotations on the app's channels, where a namespace does not say otherwise.
    pub annotations_enabled: Option<bool>,
    /// Presence history of the app's presence channels, where a namespace does not say
    /// otherwise (`policy.presence_history.enabled` in the nested layout).
    pub presence_history_enabled: Option<bool>,
    pub allowed_origins: Option<Vec<String>>,
    pub channel_namespaces: Option<Vec<NamespaceConfig>>,
    /// Delta settings by channel pattern (`docs/protocol/v2.md#conflation-keys`).
    pub channel_delta_compression: Option<std::collections::BTreeMap<String, super::channel_delta::ChannelDeltaConfig>>,
    pub idempotency: AppIdempotency,
    /// The app's own `[history]` settings (`docs/protocol/v2.md#per-app-and-namespace-settings`).
    pub history: HistoryOverride,
    /// The app's own `[connection_recovery]` settings.
    pub connection_recovery: RecoveryOverride,
    /// `webhooks = [{ url, event_types, filter, headers, retry, request_timeout_ms }]`
    /// (`docs/protocol/http-api.md#webhook-configuration`).
    pub webhooks: Option<Vec<WebhookConfig>>,
    /// The nested layout (Sockudo 5): when present, the fields above other than `id`, `key`,
    /// `secret` and `enabled` are ignored, as the reference does.
    pub policy: Option<Policy>,
}

/// Per-app override of the server's idempotency settings (`docs/protocol/http-api.md#idempotency`).
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct AppIdempotency {
    pub enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub ttl_seconds: Option<u64>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct NamespaceConfig {
    pub name: String,
    /// Annotations on this namespace's channels (`docs/protocol/v2.md#annotations`).
    pub annotations_enabled: Option<bool>,
    /// Presence history of this namespace's presence channels
    /// (`docs/protocol/v2.md#presence-history`): `true`/`false` or `{ enabled = … }`.
    #[serde(deserialize_with = "switch")]
    pub presence_history: Option<bool>,
    /// This namespace's own history settings (rewind and retention).
    pub history: Option<HistoryOverride>,
    /// Its channels may be user-limited (`name#u1,u2`, `docs/protocol/v2.md#user-limited-channels`).
    pub allow_user_limited_channels: Option<bool>,
}

/// A switch given as a boolean or as a table with `enabled`.
fn switch<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Switch {
        Flag(bool),
        Table(PolicySwitch),
    }
    Ok(match Option::<Switch>::deserialize(d)? {
        None => None,
        Some(Switch::Flag(on)) => Some(on),
        Some(Switch::Table(t)) => t.enabled,
    })
}

/// Limits of one app; 0 never means "unlimited" here: every limit has a number
/// (`docs/protocol/pusher.md#app-fields`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Sockets of this app across the node; 0 = unlimited.
    pub max_connections: u64,
    /// Client events per socket per `decay`; 0 = unlimited.
    pub client_events_per_window: u64,
    pub client_event_window: std::time::Duration,
    pub terminate_on_limit: bool,
    pub max_presence_members: u64,
    pub max_presence_member_bytes: usize,
    pub max_channel_name_length: usize,
    pub max_event_channels_at_once: usize,
    pub max_event_name_length: usize,
    pub max_event_payload_bytes: usize,
    pub max_event_batch_size: usize,
}

/// A loaded app.
#[derive(Clone, Debug)]
pub struct App {
    pub id: String,
    pub key: String,
    pub secret: String,
    pub enabled: bool,
    pub client_messages: bool,
    pub user_authentication: bool,
    pub watchlist_events: bool,
    pub limits: Limits,
    /// Empty: every origin is allowed.
    pub allowed_origins: Vec<String>,
    /// The channel namespaces the app declares; `None` (the built-in development app only):
    /// any namespace, so that examples like `chat:room-1` work without configuration.
    pub namespaces: Option<Vec<String>>,
    /// Annotations on the app's channels (`annotations_enabled`), unless the channel's
    /// namespace says otherwise.
    pub annotations: bool,
    /// Presence history of the app's presence channels, unless the channel's namespace says
    /// otherwise.
    pub presence_history: bool,
    /// The declared namespaces' own switches.
    pub namespace_switches: Vec<NamespaceConfig>,
    pub idempotency: AppIdempotency,
    pub history: HistoryOverride,
    pub recovery: RecoveryOverride,
    pub webhooks: Vec<Webhook>,
    /// Delta settings by channel pattern, exact names first.
    pub channel_delta: Vec<super::channel_delta::ChannelDelta>,
    /// The stable hash of `id`: every owner key of the app continues from it, so the shard that
    /// owns a channel, user or key never depends on the order apps are configured in.
    pub id_hash: u64,
}

impl App {
    /// The development app used when no app is configured (`docs/protocol/pusher.md#development-app`).
    pub fn development() -> App {
        let c = AppConfig {
            id: "app-id".into(),
            key: "app-key".into(),
            secret: "app-secret".into(),
            enabled: Some(true),
            max_client_events_per_second: Some(1000),
            enable_watchlist_events: Some(true),
            annotations_enabled: Some(true),
            presence_history_enabled: Some(true),
            ..AppConfig::default()
        };
        let app = App::from_config(c).expect("the development app is valid");
        App { namespaces: None, ..app }
    }

    /// Checks a channel name against the naming rules, this app's length limit and its
    /// namespaces.
    pub fn validate_channel(&self, name: &str) -> Result<(), crate::protocol::ProtocolError> {
        crate::protocol::channel::validate(
            name,
            self.limits.max_channel_name_length,
            self.namespaces.as_deref(),
            // Its namespace's `allow_user_limited_channels` (default false); in the development
            // app, which takes any namespace, every one may.
            |channel| {
                self.namespace_switch(channel, |n| n.allow_user_limited_channels).unwrap_or(self.namespaces.is_none())
            },
        )
    }

    /// Whether the channel takes annotations: its namespace's `annotations_enabled` if that is
    /// set, else the app's.
    pub fn annotations_allowed(&self, channel: &str) -> bool {
        self.namespace_switch(channel, |n| n.annotations_enabled).unwrap_or(self.annotations)
    }

    /// Whether the presence channel's transitions are recorded: its namespace's
    /// `presence_history` if that is set, else the app's.
    pub fn presence_history_allowed(&self, channel: &str) -> bool {
        self.namespace_switch(channel, |n| n.presence_history).unwrap_or(self.presence_history)
    }

    fn namespace_switch(&self, channel: &str, switch: impl Fn(&NamespaceConfig) -> Option<bool>) -> Option<bool> {
        let ns = crate::protocol::channel::namespace(channel)?;
        self.namespace_switches.iter().find(|n| n.name == ns).and_then(switch)
    }

    /// Resolves a configured app, applying the defaults of `docs/protocol/pusher.md#app-fields` to
    /// what it leaves unset. The error's key is the field name.
    pub fn from_config(c: AppConfig) -> Result<App, ConfigError> {
        let nested = c.policy.is_some();
        App::resolve(c.effective()).map_err(|e| if nested { e.under_policy() } else { e })
    }

    fn resolve(c: AppConfig) -> Result<App, ConfigError> {
        for (field, v) in [("id", &c.id), ("key", &c.key), ("secret", &c.secret)] {
            if v.trim().is_empty() {
                return Err(ConfigError::new(field, "must not be empty"));
            }
        }
        let origins = c.allowed_origins.unwrap_or_default();
        for o in &origins {
            check_origin_pattern(o).map_err(|p| ConfigError::new("allowed_origins", format!("\"{o}\": {p}")))?;
        }
        let declared = c.channel_namespaces.unwrap_or_default();
        let namespaces: Vec<String> = declared.iter().map(|n| n.name.clone()).collect();
        if namespaces.iter().any(|n| n.is_empty() || n.contains(':')) {
            return Err(ConfigError::new("channel_namespaces", "each namespace needs a `name` without ':'"));
        }
        let webhooks = super::webhooks::compile(c.webhooks.unwrap_or_default())?;
        let channel_delta = super::channel_delta::compile(c.channel_delta_compression)?;
        c.history.check(false)?;
        c.connection_recovery.check()?;
        for (i, n) in declared.iter().enumerate() {
            if let Some(h) = &n.history {
                h.check(true).map_err(|e| ConfigError::new(format!("channel_namespaces[{i}].{}", e.key), e.problem))?;
            }
        }
        if c.idempotency.ttl_seconds == Some(0) {
            return Err(ConfigError::new("idempotency.ttl_seconds", "must be greater than 0"));
        }
        let decay = c.decay_seconds.unwrap_or(1);
        if decay == 0 {
            return Err(ConfigError::new("decay_seconds", "must be at least 1"));
        }
        let positive = |field: &str, v: Option<u64>, default: u64| -> Result<usize, ConfigError> {
            match v.unwrap_or(default) {
                0 => Err(ConfigError::new(field, "must be greater than 0")),
                n => Ok(n as usize),
            }
        };
        let limits = Limits {
            max_connections: c.max_connections.unwrap_or(0),
            client_events_per_window: c.max_client_events_per_second.unwrap_or(10),
            client_event_window: std::time::Duration::from_secs(decay),
            terminate_on_limit: c.terminate_on_limit.unwrap_or(false),
            max_presence_members: positive("max_presence_members_per_channel", c.max_presence_members_per_channel, 100)?
                as u64,
            max_presence_member_bytes: positive("max_presence_member_size_in_kb", c.max_presence_member_size_in_kb, 2)?
                * 1024,
            max_channel_name_length: positive("max_channel_name_length", c.max_channel_name_length, 200)?,
            max_event_channels_at_once: positive("max_event_channels_at_once", c.max_event_channels_at_once, 100)?,
            max_event_name_length: positive("max_event_name_length", c.max_event_name_length, 200)?,
            max_event_payload_bytes: positive("max_event_payload_in_kb", c.max_event_payload_in_kb, 100)? * 1024,
            max_event_batch_size: positive("max_event_batch_size", c.max_event_batch_size, 10)?,
        };
        Ok(App {
            id_hash: shards::stable_hash(&[c.id.as_bytes()]),
            id: c.id,
            key: c.key,
            secret: c.secret,
            enabled: c.enabled.unwrap_or(false),
            client_messages: c.enable_client_messages.unwrap_or(true),
            user_authentication: c.enable_user_authentication.unwrap_or(true),
            watchlist_events: c.enable_watchlist_events.unwrap_or(false),
            limits,
            allowed_origins: origins.into_iter().map(|o| o.to_ascii_lowercase()).collect(),
            namespaces: Some(namespaces),
            annotations: c.annotations_enabled.unwrap_or(false),
            presence_history: c.presence_history_enabled.unwrap_or(false),
            namespace_switches: declared,
            idempotency: c.idempotency,
            history: c.history,
            recovery: c.connection_recovery,
            webhooks,
            channel_delta,
        })
    }

    /// The delta settings of `channel`, if a pattern of the app's matches it.
    pub fn channel_delta(&self, channel: &str) -> Option<&super::channel_delta::ChannelDelta> {
        self.channel_delta.iter().find(|d| d.matches(channel))
    }

    /// Origin check at connect (`docs/protocol/pusher.md#origin-checks`); only when
    /// `allowed_origins` is set.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        if self.allowed_origins.is_empty() {
            return true;
        }
        let origin = origin.unwrap_or("").to_ascii_lowercase();
        let host = origin.split_once("://").map_or(origin.as_str(), |(_, h)| h);
        self.allowed_origins.iter().any(|p| {
            if p == "*" || p == "any" || *p == origin {
                return true;
            }
            if !p.contains("://") {
                if let Some(domain) = p.strip_prefix("*.") {
                    return host == domain || host.ends_with(&format!(".{domain}"));
                }
                if !p.contains('*') && p == host {
                    return true;
                }
            }
            match p.split_once('*') {
                Some((before, after)) => {
                    origin.len() >= before.len() + after.len() && origin.starts_with(before) && origin.ends_with(after)
                }
                None => false,
            }
        })
    }
}

/// Config-time validation of an origin pattern (`docs/protocol/pusher.md#origin-checks`).
fn check_origin_pattern(p: &str) -> Result<(), &'static str> {
    if p.trim().is_empty() {
        return Err("empty pattern");
    }
    if p.matches('*').count() > 1 {
        return Err("more than one '*'");
    }
    if let Some(d) = p.strip_prefix("*.") {
        if d.is_empty() || d.contains('*') || d.starts_with('.') {
            return Err("malformed '*.' domain");
        }
    }
    if let Some((scheme, host)) = p.split_once("://") {
        if scheme.is_empty() || host.is_empty() {
            return Err("'://' needs a scheme and a host");
        }
    }
    Ok(())
}

/// Rejects two apps that share an id or a key.
pub fn check_unique(apps: &[App]) -> Result<(), ConfigError> {
    let mut ids = HashMap::new();
    let mut keys = HashMap::new();
    for (i, a) in apps.iter().enumerate() {
        if ids.insert(a.id.as_str(), i).is_some() {
            return Err(ConfigError::new(format!("apps[{i}].id"), format!("\"{}\" is used by two apps", a.id)));
        }
        if keys.insert(a.key.as_str(), i).is_some() {
            return Err(ConfigError::new(format!("apps[{i}].key"), format!("\"{}\" is used by two apps", a.key)));
        }
    }
    Ok(())
}

/// Index of an app in the registry; cheap to copy into messages between shards.
pub type AppIdx = u32;

/// All apps, looked up by key (WebSocket, REST auth) or id (REST paths). Shared read-only.
#[derive(Debug)]
pub struct Registry {
    apps: Vec<App>,
    by_key: HashMap<String, AppIdx>,
    by_id: HashMap<String, AppIdx>,
}

impl Registry {
    pub fn new(apps: Vec<App>) -> Arc<Registry> {
        let by_key = apps.iter().enumerate().map(|(i, a)| (a.key.clone(), i as AppIdx)).collect();
        let by_id = apps.iter().enumerate().map(|(i, a)| (a.id.clone(), i as AppIdx)).collect();
        Arc::new(Registry { apps, by_key, by_id })
    }

    pub fn get(&self, idx: AppIdx) -> &App {
        &self.apps[idx as usize]
    }
    pub fn by_key(&self, key: &str) -> Option<AppIdx> {
        self.by_key.get(key).copied()
    }
    pub fn by_id(&self, id: &str) -> Option<AppIdx> {
        self.by_id.get(id).copied()
    }
    pub fn len(&self) -> usize {
        self.apps.len()
    }
    pub fn is_empty(&self) -> bool {
        self.apps.is_empty()
    }
}

/// `SOCKUDO_DEFAULT_APP_*` (`docs/protocol/pusher.md#app-sources`): with id, key and secret
/// set, the environment's app replaces the file's apps; `SOCKUDO_DEFAULT_APP_ENABLED=false`
/// removes them all.
pub(super) fn apply_env_app(apps: &mut Vec<App>) -> Result<(), ConfigError> {
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
    c.annotations_enabled = env_bool("SOCKUDO_DEFAULT_APP_ANNOTATIONS_ENABLED")?;
    c.presence_history_enabled = env_bool("SOCKUDO_DEFAULT_APP_PRESENCE_HISTORY_ENABLED")?;
    if let Some(o) = var("ALLOWED_ORIGINS") {
        c.allowed_origins = Some(o.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect());
    }
    apps.clear();
    apps.push(
        App::from_config(c)
            .map_err(|e| ConfigError::new(format!("SOCKUDO_DEFAULT_APP_{}", e.key.to_uppercase()), e.problem))?,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_with_origins(o: &[&str]) -> App {
        App::from_config(AppConfig {
            id: "a".into(),
            key: "k".into(),
            secret: "s".into(),
            allowed_origins: Some(o.iter().map(|s| s.to_string()).collect()),
            ..AppConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn origins() {
        let a = app_with_origins(&["https://good.example"]);
        assert!(a.origin_allowed(Some("https://good.example")));
        assert!(a.origin_allowed(Some("HTTPS://GOOD.example")));
        assert!(!a.origin_allowed(Some("https://evil.example")));
        assert!(!a.origin_allowed(None));
        let w = app_with_origins(&["*.example.com"]);
        assert!(w.origin_allowed(Some("https://a.example.com")));
        assert!(w.origin_allowed(Some("https://example.com")));
        assert!(!w.origin_allowed(Some("https://badexample.com")));
        let p = app_with_origins(&["http://localhost:*", "example.org"]);
        assert!(p.origin_allowed(Some("http://localhost:3000")));
        assert!(p.origin_allowed(Some("https://example.org")));
        assert!(app_with_origins(&[]).origin_allowed(None));
    }

    #[test]
    fn annotations_by_app_and_namespace() {
        let ns = |name: &str, on: Option<bool>| NamespaceConfig {
            name: name.into(),
            annotations_enabled: on,
            presence_history: on.map(|on| !on),
            history: None,
            allow_user_limited_channels: on,
        };
        let app = |on: Option<bool>| {
            App::from_config(AppConfig {
                id: "a".into(),
                key: "k".into(),
                secret: "s".into(),
                annotations_enabled: on,
                channel_namespaces: Some(vec![ns("chat", Some(true)), ns("news", Some(false)), ns("misc", None)]),
                ..AppConfig::default()
            })
            .unwrap()
        };
        let off = app(None);
        // User limits where the namespace allows them (chat), nowhere else.
        assert!(off.validate_channel("chat:dm#u1,u2").is_ok());
        assert!(off.validate_channel("news:dm#u1").is_err() && off.validate_channel("misc:dm#u1").is_err());
        assert!(App::development().validate_channel("any:dm#u1").is_ok());
        assert!(off.annotations_allowed("chat:1") && off.annotations_allowed("private-chat:1"));
        assert!(
            !off.annotations_allowed("news:1") && !off.annotations_allowed("misc:1") && !off.annotations_allowed("x")
        );
        let on = app(Some(true));
        assert!(on.annotations_allowed("x") && on.annotations_allowed("misc:1") && !on.annotations_allowed("news:1"));
        assert!(App::development().annotations_allowed("anything:at-all"));
        // The namespaces' presence_history is the opposite of their annotations_enabled here.
        assert!(!off.presence_history_allowed("presence-chat:1") && off.presence_history_allowed("presence-news:1"));
        assert!(!off.presence_history_allowed("presence-misc:1") && !off.presence_history_allowed("presence-x"));
        assert!(App::development().presence_history_allowed("presence-anything:at-all"));
    }

    #[test]
    fn defaults_follow_spec_00() {
        let a = app_with_origins(&[]);
        assert!(!a.enabled);
        assert_eq!(a.limits.max_event_payload_bytes, 100 * 1024);
        assert_eq!((a.limits.max_event_batch_size, a.limits.max_event_channels_at_once), (10, 100));
        assert_eq!(a.limits.client_events_per_window, 10);
        let d = App::development();
        assert!(d.enabled && d.client_messages && d.user_authentication);
        assert_eq!(d.limits.client_events_per_window, 1000);
    }
}
