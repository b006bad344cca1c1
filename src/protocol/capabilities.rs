//! Capabilities (`docs/protocol/v2.md#actor-binding`): which operations a connection may
//! perform, each on the channels its patterns match. Sign-in fills them from
//! `user_data.capabilities`; the mutation endpoints read the `message_*_own` / `_any` grants
//! of the socket a mutation is bound to.

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
    /// `{"<op>": ["<pattern>", …], …}`: every op known, every pattern a non-empty string, at
    /// most 100 patterns in all.
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

    /// Whether `op` is granted on `channel`.
    pub fn allows(&self, op: Op, channel: &str) -> bool {
        self.grants.iter().filter(|(o, _)| *o == op).flat_map(|(_, p)| p).any(|p| pattern_matches(p, channel))
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
    }
}
