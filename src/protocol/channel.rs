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

/// The prefix of a metachannel, whose subscribers get events about the channel it names
/// (`docs/protocol/v2.md#metachannels`).
pub const META_PREFIX: &str = "[meta]";

/// The channel a metachannel `[meta]<channel>` is about.
pub fn meta_of(name: &str) -> Option<&str> {
    name.strip_prefix(META_PREFIX).filter(|c| !c.is_empty())
}

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

/// The channel's namespace: the text before the first `:` after the type prefix, in the name
/// without its user limit (`room#a:b` has none).
pub fn namespace(name: &str) -> Option<&str> {
    let logical = classify(name).1;
    logical.split('#').next().unwrap_or(logical).split_once(':').map(|(ns, _)| ns)
}

/// The users a user-limited channel is for (`chat:dm#u1,u2`,
/// `docs/protocol/v2.md#user-limited-channels`).
#[derive(Debug, PartialEq, Eq)]
pub struct UserLimit<'a> {
    users: Vec<&'a str>,
}

impl UserLimit<'_> {
    pub fn allows(&self, user: &str) -> bool {
        self.users.contains(&user)
    }
}

fn user_id_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_=@.".contains(&c)
}

/// The user limit of `name`: what follows the first `#` of the name without its type prefix,
/// when something precedes that `#` (so `#server-to-user-42` is not limited). Ids are
/// separated by `,` and made of `A-Za-z0-9-_=@.` (trimmed, as the reference does, though a
/// channel name has no spaces to trim).
pub fn user_limit(name: &str) -> Result<Option<UserLimit<'_>>, ProtocolError> {
    let Some((base, list)) = classify(name).1.split_once('#') else { return Ok(None) };
    if base.is_empty() {
        return Ok(None);
    }
    let refuse = |why: &str| Err(ProtocolError::channel(format!("Channel '{name}' {why}")));
    if list.contains('#') {
        return refuse("contains multiple user limit separators");
    }
    if list.trim().is_empty() {
        return refuse("has an empty user limit segment");
    }
    let users: Vec<&str> = list.split(',').map(str::trim).collect();
    if users.iter().any(|u| u.is_empty()) {
        return refuse("contains an empty user id in its user limit segment");
    }
    if !users.iter().all(|u| u.bytes().all(user_id_char)) {
        return refuse("contains an invalid user id in its user limit segment");
    }
    Ok(Some(UserLimit { users }))
}

/// Checks a channel name against the naming rules: length first, then characters, then the
/// namespace ([`namespace`]) against the app's namespaces (`None`: any namespace), then a user
/// limit ([`user_limit`]), which only a channel with a namespace that `allows_user_limits` (asked
/// with the channel's name) may have. `max_len` is the app's limit.
/// Metachannels and wildcard patterns are not channel names: a V2 subscribe checks them first.
pub fn validate(
    name: &str,
    max_len: usize,
    namespaces: Option<&[String]>,
    allows_user_limits: impl Fn(&str) -> bool,
) -> Result<(), ProtocolError> {
    if name.is_empty() {
        return Err(ProtocolError::channel("Channel name must not be empty"));
    }
    if name.starts_with(META_PREFIX) || name.contains('*') {
        return Err(ProtocolError::channel(format!(
            "Channel '{name}' is a metachannel or wildcard pattern: those are only V2 subscriptions"
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
    if user_limit(name)?.is_some() && !(namespace(name).is_some() && allows_user_limits(name)) {
        return Err(ProtocolError::channel(format!(
            "Channel '{name}' uses user-limited syntax but the namespace does not allow it"
        )));
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

    fn validate_plain(name: &str, max_len: usize, namespaces: Option<&[String]>) -> Result<(), ProtocolError> {
        validate(name, max_len, namespaces, |_| false)
    }

    #[test]
    fn user_limits() {
        let ns = vec!["dm".to_string(), "chat".to_string()];
        let dm_only = |c: &str| namespace(c) == Some("dm");
        assert!(validate("dm:a#u1,u2", 200, Some(&ns), dm_only).is_ok());
        assert!(validate("presence-dm:a#u.1", 200, Some(&ns), dm_only).is_ok());
        let refused = |name: &str| validate(name, 200, Some(&ns), dm_only).unwrap_err().to_string();
        assert_eq!(
            refused("chat:a#u1"),
            "Channel error: Channel 'chat:a#u1' uses user-limited syntax but the namespace does not allow it"
        );
        assert!(refused("room#u1").ends_with("uses user-limited syntax but the namespace does not allow it"));
        assert_eq!(refused("dm:a#"), "Channel error: Channel 'dm:a#' has an empty user limit segment");
        assert!(refused("dm:a#u1,,u2").ends_with("contains an empty user id in its user limit segment"));
        assert!(refused("dm:a#u1#u2").ends_with("contains multiple user limit separators"));
        assert!(refused("dm:a#u;1").ends_with("contains an invalid user id in its user limit segment"));
        // Not user-limited: nothing before the `#`.
        assert_eq!(user_limit("#server-to-user-42").unwrap(), None);
        assert_eq!(user_limit("private-#x").unwrap(), None);
        let limit = user_limit("private-dm:a# u1 ,u2").unwrap().unwrap();
        assert!(limit.allows("u1") && limit.allows("u2") && !limit.allows("u3"));
        assert_eq!(namespace("room#a:b"), None);
        assert_eq!(namespace("private-dm:x#u1"), Some("dm"));
    }

    #[test]
    fn name_rules() {
        let ns = vec!["chat".to_string()];
        assert!(validate_plain("a-b_c=d@e,f;g.h", 200, Some(&[])).is_ok());
        assert!(validate_plain("chat:room-1", 200, Some(&ns)).is_ok());
        assert!(validate_plain("private-chat:room-1", 200, Some(&ns)).is_ok());
        assert_eq!(
            validate_plain("news:x", 200, Some(&ns)).unwrap_err().to_string(),
            "Channel error: Unknown channel namespace 'news'"
        );
        assert!(validate_plain("bad$chan", 200, Some(&[]))
            .unwrap_err()
            .to_string()
            .starts_with("Channel error: Channel name contains invalid characters"));
        assert_eq!(
            validate_plain(&"a".repeat(201), 200, Some(&[])).unwrap_err().to_string(),
            "Channel error: Channel name too long. Max length is 200"
        );
        assert!(validate_plain("", 200, Some(&[])).is_err());
        assert!(validate_plain("#server-to-user-42", 200, Some(&[])).is_ok());
        assert_eq!(validate_plain("bad$chan", 200, Some(&[])).unwrap_err().code(), 4300);
        // No declared namespaces at all (the development app): any namespace is fine.
        assert!(validate_plain("market:btc", 200, None).is_ok());
        assert!(validate_plain("presence-room:incident-123", 200, None).is_ok());
    }
}
