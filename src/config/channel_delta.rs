//! An app's delta settings by channel pattern
//! (`policy.channels.channel_delta_compression."<pattern>"`,
//! `docs/protocol/v2.md#conflation-keys`): whether the channels get deltas, their default
//! algorithm, the conflation key that gives each entity its own delta stream, and whether
//! their frames carry tags.

use super::value::{num_or_str, ConfigError};
use crate::protocol::delta::Algorithm;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One pattern's table as written.
#[derive(Deserialize, Default, Debug, Clone, PartialEq)]
#[serde(default)]
pub struct ChannelDeltaConfig {
    pub enabled: Option<bool>,
    pub algorithm: Option<String>,
    /// A dotted path into the message's data (`item_id`, `data.item.id`).
    pub conflation_key: Option<String>,
    /// Accepted for compatibility; this server bounds a stream by `full_message_interval`.
    #[serde(deserialize_with = "num_or_str")]
    pub max_messages_per_key: Option<u64>,
    /// Most conflation keys one subscription keeps a stream for (default 1000): past it, its
    /// streams start again with full frames.
    #[serde(deserialize_with = "num_or_str")]
    pub max_conflation_keys: Option<usize>,
    pub enable_tags: Option<bool>,
}

/// The settings of the channels matching `pattern`.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelDelta {
    /// `prefix*`, `*suffix`, `pre*suf`, `*` or an exact name.
    pattern: String,
    pub enabled: bool,
    pub algorithm: Option<Algorithm>,
    /// Path segments into the data.
    pub conflation_key: Option<Vec<String>>,
    pub max_conflation_keys: usize,
    pub enable_tags: Option<bool>,
}

impl ChannelDelta {
    pub fn matches(&self, channel: &str) -> bool {
        match self.pattern.split_once('*') {
            None => self.pattern == channel,
            Some((pre, suf)) => {
                channel.len() >= pre.len() + suf.len() && channel.starts_with(pre) && channel.ends_with(suf)
            }
        }
    }

    /// The conflation value of a message with `data` (JSON text, or a string holding JSON):
    /// the string or number at the path. `None` when the path leads nowhere.
    pub fn conflation_value(&self, data: &str) -> Option<String> {
        let path = self.conflation_key.as_ref()?;
        let value: sonic_rs::Value = sonic_rs::from_str(data).ok()?;
        let value = match sonic_rs::JsonValueTrait::as_str(&value) {
            Some(inner) => sonic_rs::from_str(inner).ok()?,
            None => value,
        };
        let mut at = &value;
        for seg in path {
            at = sonic_rs::JsonValueTrait::get(at, seg.as_str())?;
        }
        match sonic_rs::JsonValueTrait::as_str(at) {
            Some(s) => Some(s.to_owned()),
            None if sonic_rs::JsonValueTrait::is_number(at) => Some(at.to_string()),
            None => None,
        }
    }
}

/// Checks and orders an app's table: exact names first, then longer patterns.
pub fn compile(map: Option<BTreeMap<String, ChannelDeltaConfig>>) -> Result<Vec<ChannelDelta>, ConfigError> {
    let mut out = Vec::new();
    for (pattern, c) in map.unwrap_or_default() {
        let key = |field: &str| format!("channel_delta_compression.\"{pattern}\".{field}");
        if pattern.is_empty() || pattern.matches('*').count() > 1 {
            return Err(ConfigError::new(key("pattern"), "a pattern is a name with at most one `*`"));
        }
        let algorithm = match &c.algorithm {
            None => None,
            Some(a) => Some(
                Algorithm::parse(a)
                    .ok_or_else(|| ConfigError::new(key("algorithm"), format!("\"{a}\" is not fossil or xdelta3")))?,
            ),
        };
        let conflation_key = match c.conflation_key.as_deref().map(str::trim).filter(|k| !k.is_empty()) {
            None => None,
            Some(k) => {
                let k = k.strip_prefix("data.").unwrap_or(k);
                let segs: Vec<String> = k.split('.').map(str::to_owned).collect();
                if segs.iter().any(|s| s.is_empty()) {
                    return Err(ConfigError::new(key("conflation_key"), format!("\"{k}\" is not a dotted path")));
                }
                Some(segs)
            }
        };
        if c.max_conflation_keys == Some(0) {
            return Err(ConfigError::new(key("max_conflation_keys"), "must be greater than 0"));
        }
        out.push(ChannelDelta {
            pattern,
            enabled: c.enabled.unwrap_or(true),
            algorithm,
            conflation_key,
            max_conflation_keys: c.max_conflation_keys.unwrap_or(1000),
            enable_tags: c.enable_tags,
        });
    }
    out.sort_by_key(|d| (d.pattern.contains('*'), std::cmp::Reverse(d.pattern.len())));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_paths_and_errors() {
        let t = |pattern: &str, key: &str| {
            (pattern.to_owned(), ChannelDeltaConfig { conflation_key: Some(key.into()), ..Default::default() })
        };
        let list =
            compile(Some([t("ticker:*", "item_id"), t("ticker:btc", "data.quote.sym"), t("*", "x")].into())).unwrap();
        assert_eq!(list[0].pattern, "ticker:btc", "exact names first");
        let find = |c: &str| list.iter().find(|d| d.matches(c)).unwrap();
        assert_eq!(find("ticker:eth").conflation_value(r#""{\"item_id\":\"ETH\"}""#).as_deref(), Some("ETH"));
        assert_eq!(find("ticker:eth").conflation_value(r#"{"item_id":7}"#).as_deref(), Some("7"));
        assert_eq!(find("ticker:btc").conflation_value(r#"{"quote":{"sym":"BTC"}}"#).as_deref(), Some("BTC"));
        assert_eq!(find("ticker:eth").conflation_value(r#"{"other":1}"#), None);
        assert_eq!(find("news").pattern, "*");
        let bad = |c: ChannelDeltaConfig| compile(Some([("a*".to_owned(), c)].into())).unwrap_err().key;
        assert!(bad(ChannelDeltaConfig { algorithm: Some("zip".into()), ..Default::default() }).ends_with("algorithm"));
        assert!(bad(ChannelDeltaConfig { conflation_key: Some("a..b".into()), ..Default::default() })
            .ends_with("conflation_key"));
        assert!(compile(Some([("a**".to_owned(), ChannelDeltaConfig::default())].into())).is_err());
    }
}
