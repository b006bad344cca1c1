//! Capabilities (`docs/protocol/v2.md#capabilities`): which operations a connection may
//! perform, each on the channels its patterns match. Sign-in fills them from
//! `user_data.capabilities` (operation -> patterns), a capability token from its
//! `x-sockudo-capability` claim (pattern -> operations). Subscribe, publish, history and
//! presence are open unless the set names them (a token always names them); every other
//! operation needs a grant.

use sonic_rs::{JsonContainerTrait, JsonValueTrait};

/// An operation a capability grants. Spellings with `-` and `_` are both accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Subscribe,
    Publish,
    History,
    Presence,
    AnnotationSubscribe,
    AnnotationPublish,
    AnnotationDeleteOwn,
    AnnotationDeleteAny,
    MessageUpdateOwn,
    MessageUpdateAny,
    MessageDeleteOwn,
    MessageDeleteAny,
    MessageAppendOwn,
    MessageAppendAny,
    PushAdmin,
    PushSubscribe,
}

impl Op {
    /// The operations a connection has unless its capability set says otherwise.
    fn open_by_default(self) -> bool {
        matches!(self, Op::Subscribe | Op::Publish | Op::History | Op::Presence)
    }

    /// The hyphenated name, as error messages give it.
    pub fn name(self) -> &'static str {
        match self {
            Op::Subscribe => "subscribe",
            Op::Publish => "publish",
            Op::History => "history",
            Op::Presence => "presence",
            Op::AnnotationSubscribe => "annotation-subscribe",
            Op::AnnotationPublish => "annotation-publish",
            Op::AnnotationDeleteOwn => "annotation-delete-own",
            Op::AnnotationDeleteAny => "annotation-delete-any",
            Op::MessageUpdateOwn => "message-update-own",
            Op::MessageUpdateAny => "message-update-any",
            Op::MessageDeleteOwn => "message-delete-own",
            Op::MessageDeleteAny => "message-delete-any",
            Op::MessageAppendOwn => "message-append-own",
            Op::MessageAppendAny => "message-append-any",
            Op::PushAdmin => "push-admin",
            Op::PushSubscribe => "push-subscribe",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        Some(match s.replace('-', "_").as_str() {
            "subscribe" => Op::Subscribe,
            "publish" => Op::Publish,
            "history" => Op::History,
            "presence" => Op::Presence,
            "annotation_subscribe" => Op::AnnotationSubscribe,
            "annotation_publish" => Op::AnnotationPublish,
            "annotation_delete_own" => Op::AnnotationDeleteOwn,
            "annotation_delete_any" => Op::AnnotationDeleteAny,
            "message_update_own" => Op::MessageUpdateOwn,
            "message_update_any" => Op::MessageUpdateAny,
            "message_delete_own" => Op::MessageDeleteOwn,
            "message_delete_any" => Op::MessageDeleteAny,
            "message_append_own" => Op::MessageAppendOwn,
            "message_append_any" => Op::MessageAppendAny,
            "push_admin" => Op::PushAdmin,
            "push_subscribe" => Op::PushSubscribe,
            _ => return None,
        })
    }
}

const MAX_PATTERNS: usize = 100;

/// Operations and the channel patterns each is granted on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    grants: Vec<(Op, Vec<String>)>,
}

impl Capabilities {
    /// Sign-in's form, `{"<op>": ["<pattern>", …], …}`: every op known, every pattern a
    /// non-empty string, at most 100 patterns in all.
    pub fn parse(v: &sonic_rs::Value) -> Result<Capabilities, String> {
        let obj = v.as_object().ok_or("capabilities must be an object of operation -> channel patterns")?;
        let mut grants = Vec::new();
        let mut count = 0;
        for (op, patterns) in obj.iter() {
            let op = Op::parse(op).ok_or_else(|| format!("unknown capability operation {op:?}"))?;
            let list = patterns.as_array().ok_or_else(|| format!("capability {op:?} must list channel patterns"))?;
            let mut out = Vec::with_capacity(list.len());
            for p in list.iter() {
                match p.as_str() {
                    Some(p) if !p.is_empty() => out.push(p.to_owned()),
                    _ => return Err(format!("capability {op:?} patterns must be non-empty strings")),
                }
            }
            count += out.len();
            grants.push((op, out));
        }
        if count > MAX_PATTERNS {
            return Err(format!("capabilities list {count} patterns; at most {MAX_PATTERNS}"));
        }
        Ok(Capabilities { grants })
    }

    /// A token's form, `{"<pattern>": ["<op>", …], …}` (or that object as a JSON string): at
    /// most 100 non-empty patterns, every op known. Subscribe, publish, history and presence
    /// are named even when no pattern grants them, so they are denied unless granted.
    pub fn parse_token_claim(v: &serde_json::Value) -> Result<Capabilities, String> {
        let parsed;
        let v = match v {
            serde_json::Value::String(text) => {
                parsed = serde_json::from_str::<serde_json::Value>(text)
                    .map_err(|e| format!("x-sockudo-capability is not JSON: {e}"))?;
                &parsed
            }
            v => v,
        };
        let obj = v.as_object().ok_or("x-sockudo-capability must map channel patterns to operations")?;
        if obj.len() > MAX_PATTERNS {
            return Err(format!("x-sockudo-capability has {} patterns; at most {MAX_PATTERNS}", obj.len()));
        }
        let mut grants: Vec<(Op, Vec<String>)> =
            [Op::Subscribe, Op::Publish, Op::History, Op::Presence].into_iter().map(|op| (op, Vec::new())).collect();
        for (pattern, ops) in obj {
            if pattern.is_empty() {
                return Err("x-sockudo-capability patterns must not be empty".into());
            }
            let ops = ops.as_array().ok_or_else(|| format!("x-sockudo-capability {pattern:?} must list operations"))?;
            for op in ops {
                let name = op.as_str().ok_or_else(|| format!("x-sockudo-capability {pattern:?} lists a non-string"))?;
                let op = Op::parse(name).ok_or_else(|| format!("unsupported capability operation {name:?}"))?;
                match grants.iter_mut().find(|(o, _)| *o == op) {
                    Some((_, patterns)) => patterns.push(pattern.clone()),
                    None => grants.push((op, vec![pattern.clone()])),
                }
            }
        }
        Ok(Capabilities { grants })
    }

    /// Whether `op` is allowed on `channel`: granted by a pattern, or (subscribe, publish,
    /// history, presence) not named by this set at all.
    pub fn allows(&self, op: Op, channel: &str) -> bool {
        let mut named = false;
        for (o, patterns) in &self.grants {
            if *o == op {
                named = true;
                if patterns.iter().any(|p| pattern_matches(p, channel)) {
                    return true;
                }
            }
        }
        !named && op.open_by_default()
    }
}

/// `*`, an exact name, `prefix*`, `*suffix` or `prefix*suffix`; case-sensitive.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((prefix, suffix)) => {
            name.len() >= prefix.len() + suffix.len() && name.starts_with(prefix) && name.ends_with(suffix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(json: &str) -> Result<Capabilities, String> {
        Capabilities::parse(&sonic_rs::from_str(json).unwrap())
    }

    #[test]
    fn patterns() {
        for (p, n, ok) in [
            ("*", "anything", true),
            ("chat", "chat", true),
            ("chat", "chat:1", false),
            ("ai:*", "ai:room", true),
            ("ai:*", "private-ai:room", false),
            ("*-log", "audit-log", true),
            ("pre*suf", "pre-x-suf", true),
            ("pre*suf", "presuf", true),
            ("pre*suf", "presu", false),
            ("Chat", "chat", false),
        ] {
            assert_eq!(pattern_matches(p, n), ok, "{p} {n}");
        }
    }

    #[test]
    fn parse_and_allow() {
        let c = caps(r#"{"message_append_own":["ai:*"],"message-update-any":["chat"],"subscribe":["*"]}"#).unwrap();
        assert!(c.allows(Op::MessageAppendOwn, "ai:1") && !c.allows(Op::MessageAppendAny, "ai:1"));
        assert!(c.allows(Op::MessageUpdateAny, "chat") && !c.allows(Op::MessageUpdateAny, "chat2"));
        assert!(caps(r#"{"fly":["*"]}"#).unwrap_err().contains("fly"));
        assert!(caps(r#"{"publish":"*"}"#).is_err());
        assert!(caps(r#"{"publish":[""]}"#).is_err());
        assert!(caps(r#"[1]"#).is_err());
        let many = format!(r#"{{"publish":[{}]}}"#, vec!["\"a\""; 101].join(","));
        assert!(caps(&many).is_err());
        // Sign-in: the four basic operations are open unless named; the others never are.
        let c = caps(r#"{"subscribe":["chat:*"]}"#).unwrap();
        assert!(c.allows(Op::Subscribe, "chat:1") && !c.allows(Op::Subscribe, "news"));
        assert!(c.allows(Op::Publish, "news") && c.allows(Op::History, "news") && c.allows(Op::Presence, "x"));
        assert!(!c.allows(Op::AnnotationPublish, "chat:1") && !c.allows(Op::PushAdmin, "chat:1"));
    }

    #[test]
    fn token_claims() {
        let claim = |v: serde_json::Value| Capabilities::parse_token_claim(&v);
        let c = claim(serde_json::json!({"room:*": ["subscribe", "history"], "private-room": ["publish"],
            "ai:*": ["annotation-publish", "message_append_own"]}))
        .unwrap();
        assert!(c.allows(Op::Subscribe, "room:1") && c.allows(Op::History, "room:1"));
        assert!(!c.allows(Op::Publish, "room:1") && c.allows(Op::Publish, "private-room"));
        assert!(!c.allows(Op::Presence, "presence-room") && !c.allows(Op::Subscribe, "ai:x"));
        assert!(c.allows(Op::AnnotationPublish, "ai:x") && c.allows(Op::MessageAppendOwn, "ai:x"));
        assert!(!c.allows(Op::Subscribe, "ROOM:1") && !c.allows(Op::Subscribe, "room"));
        // The claim as a JSON string.
        let c = claim(serde_json::json!(r#"{"*":["subscribe"]}"#)).unwrap();
        assert!(c.allows(Op::Subscribe, "any") && !c.allows(Op::Publish, "any"));
        for (bad, says) in [
            (serde_json::json!({"*": ["subscribe", "admin"]}), "\"admin\""),
            (serde_json::json!({"": ["subscribe"]}), "empty"),
            (serde_json::json!({"*": "subscribe"}), "list operations"),
            (serde_json::json!(["*"]), "map channel patterns"),
            (serde_json::json!("{nope"), "not JSON"),
        ] {
            let e = claim(bad).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
        let many: serde_json::Map<String, serde_json::Value> =
            (0..101).map(|i| (format!("c{i}"), serde_json::json!(["subscribe"]))).collect();
        assert!(claim(serde_json::Value::Object(many)).unwrap_err().contains("at most 100"));
    }
}
