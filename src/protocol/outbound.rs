//! Server-to-client frames as JSON text. Built by hand (the shapes are fixed and small), so a
//! frame costs one allocation and no intermediate tree.

/// Which family of system event names a socket speaks (`docs/protocol/pusher.md#conventions`): V1
/// `pusher:` / `pusher_internal:`, V2 `sockudo:` / `sockudo_internal:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    V1,
    V2,
}

impl Dialect {
    /// The protocol version a client asked for: 1 (Pusher) or 2.
    pub fn number(self) -> u8 {
        match self {
            Dialect::V1 => 1,
            Dialect::V2 => 2,
        }
    }

    fn public_prefix(self) -> &'static str {
        match self {
            Dialect::V1 => "pusher:",
            Dialect::V2 => "sockudo:",
        }
    }
    fn internal_prefix(self) -> &'static str {
        match self {
            Dialect::V1 => "pusher_internal:",
            Dialect::V2 => "sockudo_internal:",
        }
    }
}

/// The shape in which one socket receives channel messages: its dialect and (later) its
/// format. A broadcast carries one payload per encoding; a delta or binary format is a new
/// variant here and a new column in every broadcast's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// Pusher JSON: no V2 fields.
    V1Json,
    /// The V2 JSON envelope (message id, stream id, serial, extras); a mutable message's
    /// append carries its fragment (`append_mode=delta`, the default).
    V2Json,
    /// The same for a socket in `append_mode=full`: an append carries the whole text so far
    /// (`docs/protocol/v2.md#append-mode`). Every other message is the `V2Json` payload itself.
    V2JsonFull,
}

impl Encoding {
    pub const COUNT: usize = 3;
    pub const ALL: [Encoding; Encoding::COUNT] = [Encoding::V1Json, Encoding::V2Json, Encoding::V2JsonFull];

    /// What a socket of `dialect` receives; `full_appends`: it asked for `append_mode=full`.
    pub fn of(dialect: Dialect, full_appends: bool) -> Encoding {
        match dialect {
            Dialect::V1 => Encoding::V1Json,
            Dialect::V2 if full_appends => Encoding::V2JsonFull,
            Dialect::V2 => Encoding::V2Json,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A fresh UUIDv4, the form of `message_id` and `acknowledgement_id`.
pub fn uuid_v4() -> String {
    uuid::Uuid::new_v4().hyphenated().to_string()
}

/// A frame for one V2 socket gets its own `message_id` (`docs/protocol/v2.md#message-ids`); `json`
/// is an object.
pub fn with_message_id(json: &[u8]) -> Vec<u8> {
    let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4().hyphenated().encode_lower(&mut id);
    let mut out = Vec::with_capacity(json.len() + 16 + id.len());
    out.extend_from_slice(&json[..json.len() - 1]);
    out.extend_from_slice(b",\"message_id\":\"");
    out.extend_from_slice(&id);
    out.extend_from_slice(b"\"}");
    out
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The `data` of a channel event: a string (HTTP publishes,
/// `docs/protocol/pusher.md#envelope-and-data-encoding`) or JSON as a client sent it.
#[derive(Clone, Copy, Debug)]
pub enum Data<'a> {
    Str(&'a str),
    Raw(&'a str),
}

/// `{"event":E,"channel":C,"data":D[,"user_id":U]}`
pub fn event(event: &str, channel: Option<&str>, data: Data<'_>, user_id: Option<&str>) -> Vec<u8> {
    let extra = match data {
        Data::Str(s) | Data::Raw(s) => s.len(),
    };
    let mut out = Vec::with_capacity(48 + event.len() + channel.map_or(0, str::len) + extra + extra / 8);
    out.extend_from_slice(b"{\"event\":");
    push_json_str(&mut out, event);
    if let Some(c) = channel {
        out.extend_from_slice(b",\"channel\":");
        push_json_str(&mut out, c);
    }
    out.extend_from_slice(b",\"data\":");
    match data {
        Data::Str(s) => push_json_str(&mut out, s),
        Data::Raw(r) => out.extend_from_slice(r.as_bytes()),
    }
    if let Some(u) = user_id {
        out.extend_from_slice(b",\"user_id\":");
        push_json_str(&mut out, u);
    }
    out.push(b'}');
    out
}

/// A message's place in its channel's stream (`docs/protocol/v2.md#message-envelope`).
#[derive(Clone, Copy, Debug)]
pub struct Position<'a> {
    pub message_id: &'a str,
    pub stream_id: &'a str,
    /// `None` for ephemeral messages, which take no place in the stream.
    pub serial: Option<u64>,
}

/// The V2 broadcast envelope, fields in the order of `docs/protocol/v2.md#message-envelope`:
/// `event, channel, data, user_id, message_id, stream_id, serial, extras`.
pub fn v2_event(
    name: &str,
    channel: &str,
    data: Data<'_>,
    user_id: Option<&str>,
    tags: Option<&str>,
    pos: Position<'_>,
    extras: Option<&str>,
) -> Vec<u8> {
    let mut out = event(name, Some(channel), data, user_id);
    out.pop();
    if let Some(t) = tags {
        out.extend_from_slice(b",\"tags\":");
        out.extend_from_slice(t.as_bytes());
    }
    out.extend_from_slice(b",\"message_id\":");
    push_json_str(&mut out, pos.message_id);
    if let Some(serial) = pos.serial {
        out.extend_from_slice(b",\"stream_id\":");
        push_json_str(&mut out, pos.stream_id);
        out.extend_from_slice(format!(",\"serial\":{serial}").as_bytes());
    }
    if let Some(x) = extras {
        out.extend_from_slice(b",\"extras\":");
        out.extend_from_slice(x.as_bytes());
    }
    out.push(b'}');
    out
}

fn system(d: Dialect, internal: bool, name: &str) -> String {
    let prefix = if internal { d.internal_prefix() } else { d.public_prefix() };
    format!("{prefix}{name}")
}

pub fn connection_established(d: Dialect, socket_id: &str, activity_timeout: u64) -> Vec<u8> {
    let data = format!("{{\"socket_id\":\"{socket_id}\",\"activity_timeout\":{activity_timeout}}}");
    event(&system(d, false, "connection_established"), None, Data::Str(&data), None)
}

/// `pusher:error` with an object `data` and no `channel` (`docs/protocol/pusher.md#error-frame`).
pub fn error(d: Dialect, code: u16, message: &str) -> Vec<u8> {
    error_frame(d, code, None, message)
}

/// An error about one channel of a subscription that stands (`docs/protocol/v2.md#v2-error-codes`).
pub fn channel_error(d: Dialect, code: u16, channel: &str, message: &str) -> Vec<u8> {
    error_frame(d, code, Some(channel), message)
}

fn error_frame(d: Dialect, code: u16, channel: Option<&str>, message: &str) -> Vec<u8> {
    let mut data = Vec::with_capacity(32 + message.len());
    data.extend_from_slice(format!("{{\"code\":{code},\"message\":").as_bytes());
    push_json_str(&mut data, message);
    data.push(b'}');
    let data = String::from_utf8(data).expect("JSON built from UTF-8");
    event(&system(d, false, "error"), channel, Data::Raw(&data), None)
}

/// `pusher:ping` / `pusher:pong` carry no `data` field at all.
pub fn ping(d: Dialect) -> Vec<u8> {
    format!("{{\"event\":\"{}\"}}", system(d, false, "ping")).into_bytes()
}
pub fn pong(d: Dialect) -> Vec<u8> {
    format!("{{\"event\":\"{}\"}}", system(d, false, "pong")).into_bytes()
}

/// `subscription_succeeded`; `data` is the JSON text to send as a string (`{}` or a presence
/// snapshot). V2 adds the subscriber's starting position (`docs/protocol/v2.md#subscription-position`,
/// `docs/protocol/v2.md#attach-serial`): top-level `stream_id` and `serial`, and `attach_serial`
/// inside the data.
pub fn subscription_succeeded(d: Dialect, channel: &str, data: &str, position: (&str, u64)) -> Vec<u8> {
    let name = system(d, true, "subscription_succeeded");
    if d == Dialect::V1 {
        return event(&name, Some(channel), Data::Str(data), None);
    }
    let (stream_id, serial) = position;
    let data = match data.strip_suffix('}') {
        Some("{") | None => format!("{{\"attach_serial\":{serial}}}"),
        Some(fields) => format!("{fields},\"attach_serial\":{serial}}}"),
    };
    let mut out = event(&name, Some(channel), Data::Str(&data), None);
    out.pop();
    out.extend_from_slice(b",\"stream_id\":");
    push_json_str(&mut out, stream_id);
    out.extend_from_slice(format!(",\"serial\":{serial}}}").as_bytes());
    out
}

/// An event of a metachannel (`docs/protocol/v2.md#metachannels`): `sockudo_internal:<kind>`
/// on `[meta]<channel>` with object data naming the channel and, for a count, the count; for
/// a member event, the user.
pub fn meta_event(meta: &str, kind: &str, channel: &str, count: Option<u64>, user_id: Option<&str>) -> Vec<u8> {
    let mut data = b"{\"channel\":".to_vec();
    push_json_str(&mut data, channel);
    if let Some(n) = count {
        data.extend_from_slice(format!(",\"subscription_count\":{n}").as_bytes());
    }
    if let Some(user) = user_id {
        data.extend_from_slice(b",\"user_id\":");
        push_json_str(&mut data, user);
    }
    data.push(b'}');
    let data = String::from_utf8(data).expect("UTF-8");
    event(&system(Dialect::V2, true, kind), Some(meta), Data::Raw(&data), None)
}

/// `sockudo_internal:subscription_succeeded` of a wildcard subscription: a pattern has no
/// stream, so no position.
pub fn pattern_subscribed(pattern: &str) -> Vec<u8> {
    event(&system(Dialect::V2, true, "subscription_succeeded"), Some(pattern), Data::Str("{}"), None)
}

/// A presence snapshot: `{"presence":{"ids":[..],"hash":{id:info},"count":n}}`, where each
/// member is `(user_id, user_info JSON text)`.
pub fn presence_snapshot<'a>(members: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut ids = Vec::new();
    let mut hash = Vec::new();
    let mut count = 0;
    for (id, info) in members {
        if count > 0 {
            ids.push(b',');
            hash.push(b',');
        }
        push_json_str(&mut ids, id);
        push_json_str(&mut hash, id);
        hash.push(b':');
        hash.extend_from_slice(info.as_bytes());
        count += 1;
    }
    format!(
        "{{\"presence\":{{\"ids\":[{}],\"hash\":{{{}}},\"count\":{count}}}}}",
        String::from_utf8(ids).expect("UTF-8"),
        String::from_utf8(hash).expect("UTF-8")
    )
}

pub fn member_added(d: Dialect, channel: &str, user_id: &str, user_info: &str) -> Vec<u8> {
    let mut data = b"{\"user_id\":".to_vec();
    push_json_str(&mut data, user_id);
    data.extend_from_slice(b",\"user_info\":");
    data.extend_from_slice(user_info.as_bytes());
    data.push(b'}');
    let data = String::from_utf8(data).expect("UTF-8");
    event(&system(d, true, "member_added"), Some(channel), Data::Str(&data), None)
}

pub fn member_removed(d: Dialect, channel: &str, user_id: &str) -> Vec<u8> {
    let mut data = b"{\"user_id\":".to_vec();
    push_json_str(&mut data, user_id);
    data.push(b'}');
    let data = String::from_utf8(data).expect("UTF-8");
    event(&system(d, true, "member_removed"), Some(channel), Data::Str(&data), None)
}

/// `sockudo_internal:presence_update` (`docs/protocol/v2.md#presence-update`): data-string
/// `{"user_id":…,"user_info":…}`; `info` is JSON text.
pub fn presence_update(channel: &str, user_id: &str, info: &str) -> Vec<u8> {
    let mut data = b"{\"user_id\":".to_vec();
    push_json_str(&mut data, user_id);
    data.extend_from_slice(b",\"user_info\":");
    data.extend_from_slice(info.as_bytes());
    data.push(b'}');
    let data = String::from_utf8(data).expect("UTF-8");
    event(&system(Dialect::V2, true, "presence_update"), Some(channel), Data::Str(&data), None)
}

/// `sockudo:resume_failed` for one channel; `failure` serialises to its data-string.
pub fn resume_failed(channel: &str, failure: &impl serde::Serialize) -> Vec<u8> {
    let data = sonic_rs::to_string(failure).expect("plain struct");
    event("sockudo:resume_failed", Some(channel), Data::Str(&data), None)
}

/// A channel's entry in `resume_success.recovered`.
#[derive(serde::Serialize)]
pub struct Recovered<'a> {
    pub channel: &'a str,
    pub source: &'static str,
    pub replayed: usize,
    /// Where the client stands after the replay; `None` when nothing was replayed.
    pub position: Option<RecoveredPosition<'a>>,
}

#[derive(serde::Serialize)]
pub struct RecoveredPosition<'a> {
    pub stream_id: &'a str,
    pub serial: u64,
    pub last_message_id: &'a str,
}

/// `sockudo:resume_success`, once after every channel of a resume
/// (`docs/protocol/v2.md#resume-responses`).
pub fn resume_success<F: serde::Serialize>(recovered: &[Recovered<'_>], failed: &[F]) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Body<'a, 'b, F> {
        recovered: &'a [Recovered<'b>],
        failed: &'a [F],
    }
    let data = sonic_rs::to_string(&Body { recovered, failed }).expect("plain struct");
    event("sockudo:resume_success", None, Data::Str(&data), None)
}

/// `sockudo:rewind_complete` (`docs/protocol/v2.md#rewind-delivery-order` step 5; data-object).
#[derive(serde::Serialize)]
pub struct RewindComplete {
    pub historical_count: usize,
    pub live_count: usize,
    pub complete: bool,
    pub truncated_by_retention: bool,
    pub truncated_by_limit: bool,
}

pub fn rewind_complete(channel: &str, summary: &RewindComplete) -> Vec<u8> {
    let data = sonic_rs::to_string(summary).expect("plain struct");
    event("sockudo:rewind_complete", Some(channel), Data::Raw(&data), None)
}

/// The answer to `sockudo:channel_history` (`docs/protocol/v2.md#websocket-history`; data-object).
pub fn channel_history(channel: &str, page_json: &str) -> Vec<u8> {
    event("sockudo:channel_history", Some(channel), Data::Raw(page_json), None)
}

pub fn cache_miss(d: Dialect, channel: &str) -> Vec<u8> {
    event(&system(d, false, "cache_miss"), Some(channel), Data::Str("{}"), None)
}

/// `pusher:signin_success` with object data carrying the exact `user_data` string.
pub fn signin_success(d: Dialect, user_data: &str) -> Vec<u8> {
    let mut data = b"{\"user_data\":".to_vec();
    push_json_str(&mut data, user_data);
    data.push(b'}');
    let data = String::from_utf8(data).expect("UTF-8");
    event(&system(d, false, "signin_success"), None, Data::Raw(&data), None)
}

/// `sockudo:auth_success`: the refreshed token's client id, `jti` and expiry.
pub fn auth_success(client_id: &str, jti: &str, exp: i64) -> Vec<u8> {
    let mut data = b"{\"client_id\":".to_vec();
    push_json_str(&mut data, client_id);
    data.extend_from_slice(b",\"jti\":");
    push_json_str(&mut data, jti);
    data.extend_from_slice(format!(",\"exp\":{exp}}}").as_bytes());
    let data = String::from_utf8(data).expect("UTF-8");
    event("sockudo:auth_success", None, Data::Raw(&data), None)
}

/// Why a socket's capability token stopped being good.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenEnd {
    Expired,
    Revoked,
}

/// `sockudo:token_expired` with code 40142 (expired) or 40160 (revoked).
pub fn token_expired(why: TokenEnd) -> Vec<u8> {
    let data = match why {
        TokenEnd::Expired => r#"{"code":40142,"reason":"expired"}"#,
        TokenEnd::Revoked => r#"{"code":40160,"reason":"revoked"}"#,
    };
    event("sockudo:token_expired", None, Data::Raw(data), None)
}

/// Watchlist `online` / `offline` events in the reference format
/// (`docs/protocol/pusher.md#watchlist-events`).
pub fn watchlist(online: bool, user_ids: &[String]) -> Vec<u8> {
    let mut data = b"{\"user_ids\":[".to_vec();
    for (i, id) in user_ids.iter().enumerate() {
        if i > 0 {
            data.push(b',');
        }
        push_json_str(&mut data, id);
    }
    data.extend_from_slice(b"]}");
    let data = String::from_utf8(data).expect("UTF-8");
    event(if online { "online" } else { "offline" }, None, Data::Raw(&data), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Vec<u8>) -> String {
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn shapes() {
        assert_eq!(
            s(connection_established(Dialect::V1, "1.2", 120)),
            r#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":120}"}"#
        );
        assert_eq!(s(pong(Dialect::V1)), r#"{"event":"pusher:pong"}"#);
        assert_eq!(
            s(error(Dialect::V1, 4009, "Authentication error: \"x\"")),
            r#"{"event":"pusher:error","data":{"code":4009,"message":"Authentication error: \"x\""}}"#
        );
        assert_eq!(
            s(subscription_succeeded(Dialect::V1, "orders", "{}", ("s", 4))),
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"orders","data":"{}"}"#
        );
        assert_eq!(
            s(subscription_succeeded(Dialect::V2, "orders", "{}", ("s-1", 41))),
            r#"{"event":"sockudo_internal:subscription_succeeded","channel":"orders","data":"{\"attach_serial\":41}","stream_id":"s-1","serial":41}"#
        );
        assert_eq!(
            s(subscription_succeeded(Dialect::V2, "presence-a", r#"{"presence":{"count":0}}"#, ("s", 0))),
            r#"{"event":"sockudo_internal:subscription_succeeded","channel":"presence-a","data":"{\"presence\":{\"count\":0},\"attach_serial\":0}","stream_id":"s","serial":0}"#
        );
        let pos = Position { message_id: "m", stream_id: "s", serial: Some(18446744073709551615) };
        assert_eq!(
            s(v2_event(
                "e",
                "orders",
                Data::Str("1"),
                None,
                Some(r#"{"r":"eu"}"#),
                pos,
                Some(r#"{"headers":{"h":"v"}}"#)
            )),
            r#"{"event":"e","channel":"orders","data":"1","tags":{"r":"eu"},"message_id":"m","stream_id":"s","serial":18446744073709551615,"extras":{"headers":{"h":"v"}}}"#
        );
        let ephemeral = Position { serial: None, ..pos };
        assert_eq!(
            s(v2_event("e", "c", Data::Raw("{}"), Some("u"), None, ephemeral, None)),
            r#"{"event":"e","channel":"c","data":{},"user_id":"u","message_id":"m"}"#
        );
        assert_eq!(
            s(event("client-x", Some("private-a"), Data::Raw(r#"{"a":1}"#), Some("42"))),
            r#"{"event":"client-x","channel":"private-a","data":{"a":1},"user_id":"42"}"#
        );
        assert_eq!(
            presence_snapshot([("42", r#"{"name":"Ada"}"#), ("7", "{}")].into_iter()),
            r#"{"presence":{"ids":["42","7"],"hash":{"42":{"name":"Ada"},"7":{}},"count":2}}"#
        );
        assert_eq!(s(watchlist(true, &["7".into()])), r#"{"event":"online","data":{"user_ids":["7"]}}"#);
    }

    #[test]
    fn escaping_round_trips() {
        let nasty = "a\"b\\c\n\u{1}é€";
        let mut out = vec![];
        push_json_str(&mut out, nasty);
        let back: String = sonic_rs::from_slice(&out).unwrap();
        assert_eq!(back, nasty);
    }
}
