//! Wildcard subscriptions (`orders.*`, `docs/protocol/v2.md#wildcard-subscriptions`): the
//! pattern rules, and a set of patterns that finds the ones matching a channel name without
//! looking at every pattern.

use super::channel::{self, Kind};
use super::error::ProtocolError;
use ahash::AHashMap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Whether a subscribe names a pattern rather than a channel (`#server-to-user-` names are
/// never patterns: they are refused as channel names).
pub fn is_pattern(name: &str) -> bool {
    name.contains('*') && !name.starts_with(channel::USER_CHANNEL_PREFIX)
}

fn pattern_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_=@.:*".contains(&c)
}

/// Checks a pattern against the rules: exactly one `*`, no user limit, the characters of a
/// channel name minus `,;#`, within `max_len`, and public channels only (a pattern cannot
/// carry one subscription's authorisation to every channel it matches).
pub fn validate(pattern: &str, max_len: usize) -> Result<(), ProtocolError> {
    let refuse = |why: &str| Err(ProtocolError::channel(format!("Wildcard subscription '{pattern}' {why}")));
    if pattern.len() > max_len {
        return Err(ProtocolError::channel(format!("Channel name too long. Max length is {max_len}")));
    }
    if pattern.matches('*').count() != 1 {
        return refuse("must contain exactly one '*'");
    }
    if pattern.contains('#') {
        return refuse("cannot use user-limited syntax");
    }
    if !pattern.bytes().all(pattern_char) {
        return refuse("contains invalid characters");
    }
    // A pattern such as `priv*` is accepted but never matches a private channel (`matchable`).
    if channel::channel_type(pattern).kind != Kind::Public {
        return refuse("is only supported for public channels");
    }
    Ok(())
}

/// Whether a published channel can be matched by patterns at all: public channels without a
/// user limit, and not metachannels.
pub fn matchable(channel: &str) -> bool {
    !channel.contains('#') && !channel.starts_with(channel::META_PREFIX) && !channel::channel_type(channel).needs_auth()
}

/// Patterns, each with a value: indexed by the length of the text before the `*` and that
/// text, then by the length of the text after it and that text. A channel is matched with one
/// hash lookup per distinct prefix length, plus one per distinct suffix length among the
/// patterns whose prefix it has: never by looking at every pattern.
pub struct PatternSet<T> {
    by_prefix: BTreeMap<usize, AHashMap<Box<str>, BySuffix<T>>>,
    len: usize,
}

/// The patterns of one prefix, by the length of their suffix, then the suffix.
type BySuffix<T> = BTreeMap<usize, AHashMap<Box<str>, (Arc<str>, T)>>;

impl<T> Default for PatternSet<T> {
    fn default() -> Self {
        PatternSet { by_prefix: BTreeMap::new(), len: 0 }
    }
}

fn split(pattern: &str) -> (&str, &str) {
    pattern.split_once('*').unwrap_or((pattern, ""))
}

impl<T> PatternSet<T> {
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get_mut(&mut self, pattern: &str) -> Option<&mut T> {
        let (prefix, suffix) = split(pattern);
        let by_suffix = self.by_prefix.get_mut(&prefix.len())?.get_mut(prefix)?;
        by_suffix.get_mut(&suffix.len())?.get_mut(suffix).map(|(_, v)| v)
    }

    /// The value of `pattern`, made with `T::default()` if it has none.
    pub fn entry(&mut self, pattern: &Arc<str>) -> &mut T
    where
        T: Default,
    {
        let (prefix, suffix) = split(pattern);
        let by_suffix = self.by_prefix.entry(prefix.len()).or_default().entry(prefix.into()).or_default();
        let slot = by_suffix.entry(suffix.len()).or_default().entry(suffix.into());
        if matches!(slot, std::collections::hash_map::Entry::Vacant(_)) {
            self.len += 1;
        }
        &mut slot.or_insert_with(|| (pattern.clone(), T::default())).1
    }

    pub fn remove(&mut self, pattern: &str) -> Option<T> {
        let (prefix, suffix) = split(pattern);
        let by_prefix = self.by_prefix.get_mut(&prefix.len())?;
        let by_suffix = by_prefix.get_mut(prefix)?;
        let same_len = by_suffix.get_mut(&suffix.len())?;
        let (_, value) = same_len.remove(suffix)?;
        if same_len.is_empty() {
            by_suffix.remove(&suffix.len());
            if by_suffix.is_empty() {
                by_prefix.remove(prefix);
                if by_prefix.is_empty() {
                    self.by_prefix.remove(&prefix.len());
                }
            }
        }
        self.len -= 1;
        Some(value)
    }

    /// Calls `f` with each pattern matching `channel` and its value. The `*` matches any text,
    /// the empty one included, between the prefix and the suffix (which do not overlap).
    pub fn for_each_match(&self, channel: &str, mut f: impl FnMut(&Arc<str>, &T)) {
        for (&plen, by_prefix) in self.by_prefix.range(..=channel.len()) {
            let Some(by_suffix) = channel.get(..plen).and_then(|p| by_prefix.get(p)) else { continue };
            for (&slen, same_len) in by_suffix.range(..=channel.len() - plen) {
                let suffix = channel.get(channel.len() - slen..);
                if let Some((pattern, value)) = suffix.and_then(|s| same_len.get(s)) {
                    f(pattern, value);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(set: &PatternSet<u32>, channel: &str) -> Vec<String> {
        let mut found = Vec::new();
        set.for_each_match(channel, |p, _| found.push(p.to_string()));
        found.sort();
        found
    }

    #[test]
    fn matching() {
        let mut set = PatternSet::<u32>::default();
        for p in ["orders.*", "*.eu", "orders.*.eu", "*", "ab*b"] {
            *set.entry(&Arc::from(p)) += 1;
        }
        assert_eq!(matches(&set, "orders.1"), ["*", "orders.*"]);
        assert_eq!(matches(&set, "orders.1.eu"), ["*", "*.eu", "orders.*", "orders.*.eu"]);
        assert_eq!(matches(&set, "orders."), ["*", "orders.*"]);
        // The prefix and the suffix of `ab*b` must not overlap.
        assert_eq!(matches(&set, "ab"), ["*"]);
        assert_eq!(matches(&set, "abb"), ["*", "ab*b"]);
        assert_eq!(set.remove("*"), Some(1));
        assert_eq!(matches(&set, "x"), Vec::<String>::new());
        assert_eq!(set.get_mut("orders.*"), Some(&mut 1));
        for p in ["orders.*", "*.eu", "orders.*.eu", "ab*b"] {
            assert!(set.remove(p).is_some());
        }
        assert!(set.is_empty() && set.by_prefix.is_empty());
    }

    #[test]
    fn rules() {
        assert!(validate("orders.*", 200).is_ok());
        assert!(validate("*.eu", 200).is_ok());
        assert!(validate("market:*-usd", 200).is_ok());
        let why = |p: &str| validate(p, 200).unwrap_err().to_string();
        assert_eq!(why("a.*.*"), "Channel error: Wildcard subscription 'a.*.*' must contain exactly one '*'");
        assert!(why("dm:*#u1").ends_with("cannot use user-limited syntax"));
        assert!(why("a,*").ends_with("contains invalid characters"));
        assert!(why("private-*").ends_with("is only supported for public channels"));
        assert!(why("presence-room.*").ends_with("is only supported for public channels"));
        assert!(validate("priv*", 200).is_ok());
        assert!(why(&format!("{}*", "a".repeat(200))).contains("too long"));
        assert!(is_pattern("a*") && !is_pattern("#server-to-user-*") && !is_pattern("orders"));
        assert!(matchable("orders.1") && !matchable("private-orders.1") && !matchable("room:a#u1"));
        assert!(!matchable("[meta]orders.1") && !matchable("presence-x"));
    }
}
