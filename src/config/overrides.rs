//! An app's own `history` and `connection_recovery` settings, and a channel namespace's own
//! `history` (`docs/protocol/v2.md#per-app-and-namespace-settings`): each value given replaces
//! the server's for that app's (or namespace's) channels; a namespace's wins over its app's.

use super::apps::App;
use super::sections::{History, ReplayWindow};
use super::value::{num_or_str, ConfigError};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// `history = { … }` of an app (also `[apps.policy.history]`) or of a channel namespace.
#[derive(Deserialize, Default, Debug, Clone, PartialEq, Eq)]
#[serde(default)]
pub struct HistoryOverride {
    /// Apps only: `false` keeps the app's messages out of durable history.
    pub enabled: Option<bool>,
    pub rewind_enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub retention_window_seconds: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_messages_per_channel: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_bytes_per_channel: Option<u64>,
}

/// `connection_recovery = { … }` of an app (also `[apps.policy.connection_recovery]`).
#[derive(Deserialize, Default, Debug, Clone, PartialEq, Eq)]
#[serde(default)]
pub struct RecoveryOverride {
    pub enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    pub buffer_ttl_seconds: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    pub max_buffer_size: Option<u64>,
}

impl HistoryOverride {
    fn sets_retention(&self) -> bool {
        self.retention_window_seconds.is_some()
            || self.max_messages_per_channel.is_some()
            || self.max_bytes_per_channel.is_some()
    }

    /// `base` with the bounds this override gives.
    fn retention(&self, base: storage::Retention) -> storage::Retention {
        storage::Retention {
            max_age: self.retention_window_seconds.map_or(base.max_age, |s| Some(Duration::from_secs(s))),
            max_messages: self.max_messages_per_channel.or(base.max_messages),
            max_bytes: self.max_bytes_per_channel.or(base.max_bytes),
        }
    }

    /// Zero bounds would keep nothing: refused, as for the server's own settings.
    pub(super) fn check(&self, namespace: bool) -> Result<(), ConfigError> {
        if namespace && self.enabled.is_some() {
            return Err(ConfigError::new(
                "history.enabled",
                "is an app setting; a namespace may set rewind_enabled and the retention bounds",
            ));
        }
        for (key, v) in [
            ("history.retention_window_seconds", self.retention_window_seconds),
            ("history.max_messages_per_channel", self.max_messages_per_channel),
            ("history.max_bytes_per_channel", self.max_bytes_per_channel),
        ] {
            super::value::positive(key, v)?;
        }
        Ok(())
    }
}

impl RecoveryOverride {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        super::value::positive("connection_recovery.max_buffer_size", self.max_buffer_size)?;
        Ok(())
    }
}

impl App {
    /// Whether the app's messages go to durable history (the server's history must be on).
    pub fn history_on(&self, server: &History) -> bool {
        server.enabled && self.history.enabled != Some(false)
    }

    /// Whether a subscribe may rewind on `channel`.
    pub fn rewind_allowed(&self, channel: &str, server: &History) -> bool {
        self.history_on(server)
            && self
                .namespace_history(channel)
                .and_then(|n| n.rewind_enabled)
                .or(self.history.rewind_enabled)
                .unwrap_or(server.rewind_enabled)
    }

    /// The retention of `channel` where the app or its namespace sets one, from `base` (the
    /// server's).
    pub fn retention(&self, channel: &str, base: storage::Retention) -> Option<storage::Retention> {
        let ns = self.namespace_history(channel).filter(|n| n.sets_retention());
        match (self.history.sets_retention(), ns) {
            (false, None) => None,
            (_, ns) => {
                let app = self.history.retention(base);
                Some(ns.map_or(app, |n| n.retention(app)))
            }
        }
    }

    /// Whether the app's sockets may resume (`sockudo:resume`).
    pub fn recovery_on(&self, server: bool) -> bool {
        self.recovery.enabled.unwrap_or(server)
    }

    /// What the owner keeps in memory for the recovery of the app's channels.
    pub fn replay_window(&self, server: ReplayWindow) -> ReplayWindow {
        let r = &self.recovery;
        ReplayWindow {
            age: r.buffer_ttl_seconds.map_or(server.age, Duration::from_secs),
            count: r.max_buffer_size.map_or(server.count, |n| n as usize),
            bytes: server.bytes,
        }
    }

    fn namespace_history(&self, channel: &str) -> Option<&HistoryOverride> {
        let ns = crate::protocol::channel::namespace(channel)?;
        self.namespace_switches.iter().find(|n| n.name == ns).and_then(|n| n.history.as_ref())
    }
}

/// Checks the apps' overrides against the server's settings and gives the store the
/// retention of the channels whose app or namespace sets their own.
pub(super) fn apply(apps: &[App], history: &mut History) -> Result<(), ConfigError> {
    for (i, a) in apps.iter().enumerate() {
        if a.history.enabled == Some(true) && !history.enabled {
            return Err(ConfigError::new(
                format!("apps[{i}].history.enabled"),
                "needs the server's durable history (history.enabled)",
            ));
        }
    }
    let sets_own = |a: &&App| {
        a.history.sets_retention()
            || a.namespace_switches.iter().any(|n| n.history.as_ref().is_some_and(HistoryOverride::sets_retention))
    };
    let own: HashMap<String, App> = apps.iter().filter(sets_own).map(|a| (a.id.clone(), a.clone())).collect();
    if !own.is_empty() {
        let base = history.store.retention;
        let lookup = move |app: &str, channel: &str| own.get(app)?.retention(channel, base);
        history.store.overrides = Some(storage::RetentionOverrides(Arc::new(lookup)));
    }
    Ok(())
}
