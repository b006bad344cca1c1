//! Channel names: classification by prefix and the naming rules
//! (`docs/protocol/pusher.md#channel-types`, `docs/protocol/pusher.md#channel-names`).

use super::error::ProtocolError;

/// What a channel name asks of a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Public,
    /// `private-` and `private-encrypted-`: `auth` signs `socket_id:channel`.
    Private,
    /// `presence-`: `auth` signs `socket_id:channel:channel_data`, members are tracked.
    Presence,
}

/// A classified channel name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelType {
    pub kind: Kind,
    pub encrypted: bool,
    /// One of the `cache-` families: the last HTTP-published event is replayed to subscribers.
    pub cache: bool,
}

/// The type prefixes, longest first, with what each means. The reference matches `cache-`
/// anywhere in a name; we match only these prefixes (`docs/protocol/pusher.md#channel-types`).
const PREFIXES: [(&str, ChannelType); 7] = [
    ("private-encrypted-cache-", ChannelType { kind: Kind::Private, encrypted: true, cache: true }),
    ("private-cache-", ChannelType { kind: Kind::Private, encrypted: false, cache: true }),
    ("presence-cache-", ChannelType { kind: Kind::Presence, encrypted: false, cache: true }),
    ("cache-", ChannelType { kind: Kind::Public, encrypted: false, cache: true }),
    ("private-encrypted-", ChannelType { kind: Kind::Private, encrypted: true, cache: false }),
    ("presence-", ChannelType { kind: Kind::Presence, encrypted: false, cache: false }),
    ("private-", ChannelType { kind: Kind::Private, encrypted: false, cache: false }),
];

const PUBLIC: ChannelType = ChannelType { kind: Kind::Public, encrypted: false, cache: false };

/// The prefix that addresses every socket of one user (`docs/protocol/pusher.md#sending-to-a-user`).
pub const USER_CHANNEL_PREFIX: &str = "#server-to-user-";

/// Classifies `name` and returns its type and the name without its type prefix.
pub fn classify(name: &str) -> (ChannelType, &str) {
    for (prefix, ty) in PREFIXES {
        if let Some(rest) = name.strip_prefix(prefix) {
            return (ty, rest);
        }
    }
    (PUBLIC, name)
}

pub fn channel_type(name: &str) -> ChannelType {
    classify(name).0
}

impl ChannelType {
    pub fn needs_auth(self) -> bool {
        self.kind != Kind::Public
    }

    /// Client events are accepted on private and presence channels, cache variants included
    /// (unlike the reference), and never on public ones.
    pub fn allows_client_events(self) -> bool {
        self.kind != Kind::Public
    }

    /// The `channel_type` label of the metrics (`docs/protocol/http-api.md#metrics`).
    pub fn metric_label(self) -> &'static str {
        match (self.cache, self.encrypted, self.kind) {
            (true, _, _) => "cache",
            (false, true, _) => "private_encrypted",
            (false, false, Kind::Private) => "private",
            (false, false, Kind::Presence) => "presence",
            (false, false, Kind::Public) => "public",
        }
    }
}

/// The user id addressed by a `#server-to-user-{id}` channel.
pub fn user_channel_target(name: &str) -> Option<&str> {
    name.strip_prefix(USER_CHANNEL_PREFIX).filter(|id| !id.is_empty())
}

fn allowed_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_=@,;.:#".contains(&c)
}

/// The channel's namespace: the text before the first `:` after the type prefix.
pub fn namespace(name: &str) -> Option<&str> {
    classify(name).1.split_once(':').map(|(ns, _)| ns)
}

/// Checks a channel name against the naming rules: length first, then characters, then the
/// namespace ([`namespace`]) against the app's namespaces
/// (`None`: any namespace). `max_len` is the app's limit. V2-only forms (`[meta]`, wildcards)
/// are rejected on V1.
pub fn validate(name: &str, max_len: usize, namespaces: Option<&[String]>) -> Result<(), ProtocolError> {
    if name.is_empty() {
        return Err(ProtocolError::channel("Channel name must not be empty"));
    }
    if name.starts_with("[meta]") || name.contains('*') {
        return Err(ProtocolError::channel(format!(
            "Channel '{name}' is a metachannel or wildcard, only supported on protocol V2"
        )));
    }
    if name.len() > max_len {
        return Err(ProtocolError::channel(format!("Channel name too long. Max length is {max_len}")));
    }
    let mut bad: Vec<char> = name.chars().filter(|&c| !(c.is_ascii() && allowed_char(c as u8))).collect();
    if !bad.is_empty() {
        bad.dedup();
        let list: Vec<String> = bad.iter().map(|c| format!("'{c}'")).collect();
        return Err(ProtocolError::channel(format!(
            "Channel name contains invalid characters: '{name}' (invalid chars: [{}])",
            list.join(", ")
        )));
    }
    if user_channel_target(name).is_some() {
        return Ok(());
    }
    if let (Some(ns), Some(declared)) = (namespace(name), namespaces) {
        if !declared.iter().any(|n| n == ns) {
            return Err(ProtocolError::channel(format!("Unknown channel namespace '{ns}'")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_uses_prefixes_only() {
        assert_eq!(channel_type("orders").kind, Kind::Public);
        assert_eq!(channel_type("my-cache-x"), PUBLIC);
        let pc = channel_type("presence-cache-room");
        assert!(pc.cache && pc.kind == Kind::Presence);
        let pec = channel_type("private-encrypted-cache-x");
        assert!(pec.cache && pec.encrypted && pec.kind == Kind::Private);
        assert_eq!(channel_type("private-encrypted-x").metric_label(), "private_encrypted");
        assert!(!channel_type("cache-news").allows_client_events());
        assert!(channel_type("private-cache-x").allows_client_events());
    }

    #[test]
    fn name_rules() {
        let ns = vec!["chat".to_string()];
        assert!(validate("a-b_c=d@e,f;g.h", 200, Some(&[])).is_ok());
        assert!(validate("chat:room-1", 200, Some(&ns)).is_ok());
        assert!(validate("private-chat:room-1", 200, Some(&ns)).is_ok());
        assert_eq!(
            validate("news:x", 200, Some(&ns)).unwrap_err().to_string(),
            "Channel error: Unknown channel namespace 'news'"
        );
        assert!(validate("bad$chan", 200, Some(&[]))
            .unwrap_err()
            .to_string()
            .starts_with("Channel error: Channel name contains invalid characters"));
        assert_eq!(
            validate(&"a".repeat(201), 200, Some(&[])).unwrap_err().to_string(),
            "Channel error: Channel name too long. Max length is 200"
        );
        assert!(validate("", 200, Some(&[])).is_err());
        assert!(validate("#server-to-user-42", 200, Some(&[])).is_ok());
        assert_eq!(validate("bad$chan", 200, Some(&[])).unwrap_err().code(), 4300);
        // No declared namespaces at all (the development app): any namespace is fine.
        assert!(validate("market:btc", 200, None).is_ok());
        assert!(validate("presence-room:incident-123", 200, None).is_ok());
    }
}
