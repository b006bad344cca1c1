//! The nested app layout of Sockudo 5 (`[apps.policy.*]`): the same settings as the flat
//! fields, grouped. An app with a `policy` table takes its settings from there, and its errors
//! name the nested keys.

use super::apps::{AppConfig, AppIdempotency, NamespaceConfig};
use super::channel_delta::ChannelDeltaConfig;
use super::overrides::{HistoryOverride, RecoveryOverride};
use super::value::{num_or_str, ConfigError};
use super::webhooks::WebhookConfig;
use serde::Deserialize;
use std::collections::BTreeMap;

/// An app's `policy` table: the same settings as the flat fields, grouped.
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct Policy {
    pub limits: PolicyLimits,
    pub features: PolicyFeatures,
    pub channels: PolicyChannels,
    pub webhooks: Option<Vec<WebhookConfig>>,
    pub idempotency: AppIdempotency,
    pub presence_history: PolicySwitch,
    pub history: HistoryOverride,
    pub connection_recovery: RecoveryOverride,
}

/// A `policy` table that only switches a feature (`policy.presence_history`).
#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct PolicySwitch {
    pub enabled: Option<bool>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct PolicyLimits {
    #[serde(deserialize_with = "num_or_str")]
    pub max_connections: Option<u64>,
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
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct PolicyFeatures {
    pub enable_client_messages: Option<bool>,
    pub enable_user_authentication: Option<bool>,
    pub enable_watchlist_events: Option<bool>,
    pub annotations_enabled: Option<bool>,
}

#[derive(Deserialize, Default, Debug, Clone)]
#[serde(default)]
pub struct PolicyChannels {
    pub allowed_origins: Option<Vec<String>>,
    pub channel_namespaces: Option<Vec<NamespaceConfig>>,
    pub channel_delta_compression: Option<BTreeMap<String, ChannelDeltaConfig>>,
}

impl ConfigError {
    /// The error's key as the nested layout spells it (`max_connections` is
    /// `policy.limits.max_connections` there).
    pub(super) fn under_policy(self) -> ConfigError {
        let group = match self.key.split(['.', '[']).next().unwrap_or_default() {
            "id" | "key" | "secret" | "enabled" => None,
            "enable_client_messages"
            | "enable_user_authentication"
            | "enable_watchlist_events"
            | "annotations_enabled" => Some("features"),
            "allowed_origins" | "channel_namespaces" | "channel_delta_compression" => Some("channels"),
            "webhooks" | "idempotency" | "history" | "connection_recovery" => Some(""),
            "presence_history_enabled" => return ConfigError { key: "policy.presence_history.enabled".into(), ..self },
            _ => Some("limits"),
        };
        let key = match group {
            None => self.key,
            Some("") => format!("policy.{}", self.key),
            Some(g) => format!("policy.{g}.{}", self.key),
        };
        ConfigError { key, problem: self.problem }
    }
}

impl AppConfig {
    /// The settings in effect: the `policy` table's when there is one (then any flat field
    /// given as well is ignored, with a warning naming it), else the flat fields.
    pub(super) fn effective(mut self) -> AppConfig {
        let Some(p) = self.policy.take() else { return self };
        let shadowed = self.flat_fields_given();
        let flat = AppConfig {
            id: self.id.clone(),
            key: self.key.clone(),
            secret: self.secret.clone(),
            enabled: self.enabled,
            ..AppConfig::default()
        };
        let l = p.limits;
        let policy_based = AppConfig {
            max_connections: l.max_connections,
            max_client_events_per_second: l.max_client_events_per_second,
            decay_seconds: l.decay_seconds,
            terminate_on_limit: l.terminate_on_limit,
            max_presence_members_per_channel: l.max_presence_members_per_channel,
            max_presence_member_size_in_kb: l.max_presence_member_size_in_kb,
            max_channel_name_length: l.max_channel_name_length,
            max_event_channels_at_once: l.max_event_channels_at_once,
            max_event_name_length: l.max_event_name_length,
            max_event_payload_in_kb: l.max_event_payload_in_kb,
            max_event_batch_size: l.max_event_batch_size,
            enable_client_messages: p.features.enable_client_messages,
            enable_user_authentication: p.features.enable_user_authentication,
            enable_watchlist_events: p.features.enable_watchlist_events,
            annotations_enabled: p.features.annotations_enabled,
            presence_history_enabled: p.presence_history.enabled,
            allowed_origins: p.channels.allowed_origins,
            channel_namespaces: p.channels.channel_namespaces,
            channel_delta_compression: p.channels.channel_delta_compression,
            idempotency: p.idempotency,
            history: p.history,
            connection_recovery: p.connection_recovery,
            webhooks: p.webhooks,
            policy: None,
            ..flat
        };
        if !shadowed.is_empty() {
            log::warn!(
                "app {}: `policy` is given, so the flat fields {} are ignored",
                policy_based.id,
                shadowed.join(", ")
            );
        }
        policy_based
    }

    /// Names of the flat (non-`policy`) settings this app gives.
    fn flat_fields_given(&self) -> Vec<&'static str> {
        let given = [
            ("max_connections", self.max_connections.is_some()),
            ("enable_client_messages", self.enable_client_messages.is_some()),
            ("max_client_events_per_second", self.max_client_events_per_second.is_some()),
            ("decay_seconds", self.decay_seconds.is_some()),
            ("terminate_on_limit", self.terminate_on_limit.is_some()),
            ("max_presence_members_per_channel", self.max_presence_members_per_channel.is_some()),
            ("max_presence_member_size_in_kb", self.max_presence_member_size_in_kb.is_some()),
            ("max_channel_name_length", self.max_channel_name_length.is_some()),
            ("max_event_channels_at_once", self.max_event_channels_at_once.is_some()),
            ("max_event_name_length", self.max_event_name_length.is_some()),
            ("max_event_payload_in_kb", self.max_event_payload_in_kb.is_some()),
            ("max_event_batch_size", self.max_event_batch_size.is_some()),
            ("enable_user_authentication", self.enable_user_authentication.is_some()),
            ("enable_watchlist_events", self.enable_watchlist_events.is_some()),
            ("annotations_enabled", self.annotations_enabled.is_some()),
            ("presence_history_enabled", self.presence_history_enabled.is_some()),
            ("allowed_origins", self.allowed_origins.is_some()),
            ("channel_namespaces", self.channel_namespaces.is_some()),
            ("channel_delta_compression", self.channel_delta_compression.is_some()),
            ("idempotency", self.idempotency.enabled.is_some() || self.idempotency.ttl_seconds.is_some()),
            ("webhooks", self.webhooks.is_some()),
            ("history", self.history != HistoryOverride::default()),
            ("connection_recovery", self.connection_recovery != RecoveryOverride::default()),
        ];
        given.into_iter().filter(|(_, g)| *g).map(|(n, _)| n).collect()
    }
}
