//! Mutable messages on the wire (`docs/protocol/v2.md#mutable-messages`): the serial strings, the
//! reserved `sockudo_*` headers, the frames of versions and the JSON the HTTP API answers
//! with (the requests themselves are `mutation.rs`).

use super::outbound::{push_json_str, Data, Position};
use sonic_rs::{JsonContainerTrait, JsonValueMutTrait, JsonValueTrait};
use std::borrow::Cow;
use storage::{HistoryItem, MessageState, VersionAction, VersionData, VersionRecord};

/// `message_serial` and `version_serial`: the stream serial, zero-padded so that the strings
/// sort as the serials do, and the stream id, so that a serial from before an operator's reset
/// names no message rather than another one.
pub fn serial_string(serial: u64, stream_id: &str) -> String {
    format!("{serial:020}:{stream_id}")
}

/// The stream serial and stream id of a `message_serial` or `version_serial`.
pub fn parse_serial(s: &str) -> Option<(u64, &str)> {
    let (n, stream) = s.split_once(':')?;
    if n.len() != 20 || !n.bytes().all(|b| b.is_ascii_digit()) || stream.is_empty() {
        return None;
    }
    Some((n.parse().ok()?, stream))
}

/// The short action name of responses and items (`"update"`).
pub fn action_name(a: VersionAction) -> &'static str {
    match a {
        VersionAction::Create => "create",
        VersionAction::Update => "update",
        VersionAction::Delete => "delete",
        VersionAction::Append => "append",
    }
}

/// The dotted form of headers (`"message.update"`).
pub fn dotted(a: VersionAction) -> &'static str {
    match a {
        VersionAction::Create => "message.create",
        VersionAction::Update => "message.update",
        VersionAction::Delete => "message.delete",
        VersionAction::Append => "message.append",
    }
}

/// The event name of a version's frame (`"sockudo:message.update"`).
pub fn event_name(a: VersionAction) -> &'static str {
    match a {
        VersionAction::Create => "sockudo:message.create",
        VersionAction::Update => "sockudo:message.update",
        VersionAction::Delete => "sockudo:message.delete",
        VersionAction::Append => "sockudo:message.append",
    }
}

/// What the reserved headers of a version's frame say.
pub struct Headers<'a> {
    pub action: VersionAction,
    pub message_serial: &'a str,
    pub version_serial: &'a str,
    pub timestamp_ms: u64,
    pub history_serial: u64,
}

/// `extras` with the reserved headers set. Headers the publisher gave under `sockudo_` are
/// replaced: the prefix is the server's.
pub fn extras_with_headers(extras: Option<&str>, h: &Headers<'_>) -> String {
    let mut reserved = Vec::with_capacity(160 + h.message_serial.len() + h.version_serial.len());
    reserved.extend_from_slice(b"\"sockudo_action\":");
    push_json_str(&mut reserved, dotted(h.action));
    reserved.extend_from_slice(b",\"sockudo_message_serial\":");
    push_json_str(&mut reserved, h.message_serial);
    reserved.extend_from_slice(b",\"sockudo_version_serial\":");
    push_json_str(&mut reserved, h.version_serial);
    reserved.extend_from_slice(
        format!(",\"sockudo_version_timestamp_ms\":{},\"sockudo_history_serial\":{}", h.timestamp_ms, h.history_serial)
            .as_bytes(),
    );
    let reserved = String::from_utf8(reserved).expect("UTF-8");
    let parsed = extras.and_then(|x| sonic_rs::from_str::<sonic_rs::Value>(x).ok()).filter(|v| v.is_object());
    let Some(mut extras) = parsed else { return format!("{{\"headers\":{{{reserved}}}}}") };
    let theirs = extras.get("headers").filter(|h| h.is_object()).map(|h| {
        let kept: Vec<String> = h
            .as_object()
            .into_iter()
            .flat_map(|o| o.iter())
            .filter(|(k, _)| !k.starts_with("sockudo_"))
            .map(|(k, v)| {
                let mut pair = Vec::new();
                push_json_str(&mut pair, k);
                pair.push(b':');
                pair.extend_from_slice(v.to_string().as_bytes());
                String::from_utf8(pair).expect("UTF-8")
            })
            .collect();
        kept.join(",")
    });
    let headers = match theirs.as_deref() {
        Some("") | None => format!("{{{reserved}}}"),
        Some(kept) => format!("{{{kept},{reserved}}}"),
    };
    let headers: sonic_rs::Value = sonic_rs::from_str(&headers).expect("headers built as JSON");
    if let Some(obj) = extras.as_object_mut() {
        obj.insert("headers", headers);
    }
    extras.to_string()
}

/// A version's data as a frame carries it.
pub fn data_of(d: &VersionData) -> Data<'_> {
    match d {
        VersionData::Absent => Data::Raw("null"),
        VersionData::Text(t) => Data::Str(t),
        VersionData::Json(j) => Data::Raw(j),
    }
}

/// A stored frame with its `data` replaced (an append's fragment by the message's whole text).
pub fn with_data(frame: &[u8], data: &VersionData) -> Vec<u8> {
    let Ok(mut v) = sonic_rs::from_slice::<sonic_rs::Value>(frame) else { return frame.to_vec() };
    let data: sonic_rs::Value = match data {
        VersionData::Absent => sonic_rs::Value::default(),
        VersionData::Text(t) => sonic_rs::Value::from(t.as_str()),
        VersionData::Json(j) => sonic_rs::from_str(j).unwrap_or_default(),
    };
    if let Some(obj) = v.as_object_mut() {
        obj.insert("data", data);
    }
    v.to_string().into_bytes()
}

/// An append frame made by [`VersionFrame::encode`] with its `data` string replaced by `text`
/// and every other byte kept. The first `,"data":"` is the key: only `event` (a fixed name)
/// and `channel` (whose characters exclude quotes) come before it.
pub fn with_append_text(frame: &[u8], text: &str) -> Vec<u8> {
    let key = b",\"data\":\"";
    let Some(at) = frame.windows(key.len()).position(|w| w == key) else {
        return with_data(frame, &VersionData::Text(text.to_owned()));
    };
    let open = at + key.len() - 1;
    let mut i = open + 1;
    while i < frame.len() && frame[i] != b'"' {
        i += if frame[i] == b'\\' { 2 } else { 1 };
    }
    if i >= frame.len() {
        return with_data(frame, &VersionData::Text(text.to_owned()));
    }
    let mut out = Vec::with_capacity(frame.len() + text.len() + 2);
    out.extend_from_slice(&frame[..open]);
    push_json_str(&mut out, text);
    out.extend_from_slice(&frame[i + 1..]);
    out
}

/// The frame of a mutation, and of a message as history shows it: `event` is
/// `sockudo:message.<action>`, `name` the message's own event name.
pub struct VersionFrame<'a> {
    pub action: VersionAction,
    pub channel: &'a str,
    pub data: Data<'a>,
    pub name: &'a str,
    pub user_id: Option<&'a str>,
    pub pos: Position<'a>,
    /// With the reserved headers already in.
    pub extras: &'a str,
}

impl VersionFrame<'_> {
    /// `{"event","channel","data","name","user_id","message_id","stream_id","serial","extras"}`.
    pub fn encode(&self) -> Vec<u8> {
        let extra = match self.data {
            Data::Str(s) | Data::Raw(s) => s.len(),
        };
        let mut out = Vec::with_capacity(160 + self.channel.len() + self.name.len() + self.extras.len() + extra);
        out.extend_from_slice(b"{\"event\":");
        push_json_str(&mut out, event_name(self.action));
        out.extend_from_slice(b",\"channel\":");
        push_json_str(&mut out, self.channel);
        out.extend_from_slice(b",\"data\":");
        match self.data {
            Data::Str(s) => push_json_str(&mut out, s),
            Data::Raw(r) => out.extend_from_slice(r.as_bytes()),
        }
        if !self.name.is_empty() {
            out.extend_from_slice(b",\"name\":");
            push_json_str(&mut out, self.name);
        }
        if let Some(u) = self.user_id {
            out.extend_from_slice(b",\"user_id\":");
            push_json_str(&mut out, u);
        }
        out.extend_from_slice(b",\"message_id\":");
        push_json_str(&mut out, self.pos.message_id);
        if let Some(serial) = self.pos.serial {
            out.extend_from_slice(b",\"stream_id\":");
            push_json_str(&mut out, self.pos.stream_id);
            out.extend_from_slice(format!(",\"serial\":{serial}").as_bytes());
        }
        out.extend_from_slice(b",\"extras\":");
        out.extend_from_slice(self.extras.as_bytes());
        out.push(b'}');
        out
    }
}

/// A message as it stands now, in the frame shape history and rewind deliver
/// (`docs/protocol/v2.md#history-substitution`): the aggregate data under its newest version's
/// action, serial and headers.
pub fn latest_frame(channel: &str, stream_id: &str, m: &MessageState) -> Vec<u8> {
    let message_serial = serial_string(m.history_serial, stream_id);
    let version_serial = serial_string(m.latest.delivery_serial, stream_id);
    let headers = Headers {
        action: m.latest.action,
        message_serial: &message_serial,
        version_serial: &version_serial,
        timestamp_ms: m.latest.timestamp_ms,
        history_serial: m.history_serial,
    };
    let extras = extras_with_headers(m.extras.as_deref(), &headers);
    VersionFrame {
        action: m.latest.action,
        channel,
        data: data_of(&m.data),
        name: &m.name,
        user_id: m.user_id.as_deref(),
        pos: Position { message_id: &m.latest.message_id, stream_id, serial: Some(m.latest.delivery_serial) },
        extras: &extras,
    }
    .encode()
}

/// A history row as readers see it (`docs/protocol/v2.md#history-substitution`): a mutable
/// message changed since its create shows as it stands now; any other row as delivered.
/// Also names the row's operation kind.
pub fn shown<'a>(item: &'a HistoryItem, channel: &str, stream_id: &str) -> (Cow<'a, [u8]>, &'static str) {
    match item.message.as_ref().filter(|m| m.versions > 1) {
        Some(m) => (Cow::Owned(latest_frame(channel, stream_id, m)), dotted(m.latest.action)),
        None => (Cow::Borrowed(&item.payload), "append"),
    }
}

/// `GET …/messages/{serial}` (`docs/protocol/v2.md#reading-messages`): `{"channel","item"}`.
pub fn latest_json(channel: &str, stream_id: &str, m: &MessageState) -> String {
    let frame = latest_frame(channel, stream_id, m);
    let item = item_json(frame, m.history_serial, stream_id, &m.latest);
    let mut out = String::with_capacity(item.len() + channel.len() + 24);
    out.push_str("{\"channel\":");
    out.push_str(&json_str(channel));
    out.push_str(",\"item\":");
    out.push_str(&item);
    out.push('}');
    out
}

/// One entry of `GET …/versions`: the version as stored (an append carries its fragment; a
/// snapshot the whole message) in the frame shape, plus the item fields.
pub fn version_item(channel: &str, stream_id: &str, message: &MessageState, v: &VersionRecord) -> String {
    let message_serial = serial_string(message.history_serial, stream_id);
    let version_serial = serial_string(v.delivery_serial, stream_id);
    let headers = Headers {
        action: v.action,
        message_serial: &message_serial,
        version_serial: &version_serial,
        timestamp_ms: v.timestamp_ms,
        history_serial: message.history_serial,
    };
    let extras = extras_with_headers(v.extras.as_deref(), &headers);
    let frame = VersionFrame {
        action: v.action,
        channel,
        data: data_of(&v.data),
        name: v.name.as_deref().unwrap_or(&message.name),
        user_id: v.user_id.as_deref(),
        pos: Position { message_id: &v.message_id, stream_id, serial: Some(v.delivery_serial) },
        extras: &extras,
    }
    .encode();
    item_json(frame, message.history_serial, stream_id, v)
}

/// A frame with `action`, `message_serial`, `history_serial`, `delivery_serial` and `version`
/// added.
fn item_json(frame: Vec<u8>, history_serial: u64, stream_id: &str, v: &VersionRecord) -> String {
    let mut out = String::from_utf8(frame).expect("frames are UTF-8");
    out.pop();
    out.push_str(",\"action\":");
    out.push_str(&json_str(action_name(v.action)));
    out.push_str(",\"message_serial\":");
    out.push_str(&json_str(&serial_string(history_serial, stream_id)));
    out.push_str(&format!(",\"history_serial\":{history_serial},\"delivery_serial\":{}", v.delivery_serial));
    out.push_str(",\"version\":{\"serial\":");
    out.push_str(&json_str(&serial_string(v.delivery_serial, stream_id)));
    if let Some(c) = &v.client_id {
        out.push_str(",\"client_id\":");
        out.push_str(&json_str(c));
    }
    out.push_str(&format!(",\"timestamp_ms\":{}", v.timestamp_ms));
    if let Some(d) = &v.description {
        out.push_str(",\"description\":");
        out.push_str(&json_str(d));
    }
    if let Some(m) = &v.metadata {
        out.push_str(",\"metadata\":");
        out.push_str(m);
    }
    out.push_str("}}");
    out
}

/// `GET …/versions`: `next_cursor` is always present, `null` on the last page.
pub fn versions_json(channel: &str, direction: &str, limit: usize, has_more: bool, items: &[String]) -> String {
    let next = match items.last() {
        Some(last) if has_more => sonic_rs::get_from_str(last, ["version", "serial"])
            .map(|v| v.as_raw_str().to_owned())
            .unwrap_or_else(|_| "null".into()),
        _ => "null".into(),
    };
    format!(
        "{{\"channel\":{},\"direction\":\"{direction}\",\"limit\":{limit},\"has_more\":{has_more},\"next_cursor\":{next},\"items\":[{}]}}",
        json_str(channel),
        items.join(",")
    )
}

fn json_str(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len() + 2);
    push_json_str(&mut out, s);
    String::from_utf8(out).expect("UTF-8")
}

/// The answer to a mutation (`docs/protocol/v2.md#mutation-endpoints`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub action: VersionAction,
    pub message_serial: String,
    pub version_serial: String,
    pub history_serial: u64,
    pub delivery_serial: u64,
    /// An `op_id` retry of a mutation already applied: nothing was sent again.
    pub duplicate: bool,
}

impl Ack {
    /// A create: its message serial is its version serial, and both are its delivery serial.
    pub fn create(serial: u64, stream_id: &str) -> Ack {
        let message_serial = serial_string(serial, stream_id);
        Ack {
            action: VersionAction::Create,
            version_serial: message_serial.clone(),
            message_serial,
            history_serial: serial,
            delivery_serial: serial,
            duplicate: false,
        }
    }

    /// The reserved headers of this version's frame.
    pub fn headers(&self, timestamp_ms: u64) -> Headers<'_> {
        Headers {
            action: self.action,
            message_serial: &self.message_serial,
            version_serial: &self.version_serial,
            timestamp_ms,
            history_serial: self.history_serial,
        }
    }

    pub fn json(&self, channel: &str) -> String {
        format!(
            "{{\"channel\":{},\"message_serial\":{},\"action\":\"{}\",\"accepted\":true,\"version_serial\":{},\"history_serial\":{},\"delivery_serial\":{},\"status\":\"{}\"}}",
            json_str(channel),
            json_str(&self.message_serial),
            action_name(self.action),
            json_str(&self.version_serial),
            self.history_serial,
            self.delivery_serial,
            if self.duplicate { "duplicate" } else { "applied" }
        )
    }

    /// The serial fields a versioned create adds to its publish acknowledgement.
    pub fn publish_fields(&self) -> String {
        format!(
            ",\"message_serial\":{},\"history_serial\":{},\"delivery_serial\":{},\"version_serial\":{}",
            json_str(&self.message_serial),
            self.history_serial,
            self.delivery_serial,
            json_str(&self.version_serial)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_text_is_replaced_in_place() {
        let pos = Position { message_id: "m", stream_id: "s", serial: Some(9) };
        let extras = r#"{"headers":{"a":"\"data\":\"x\""}}"#;
        let frame = VersionFrame {
            action: VersionAction::Append,
            channel: "private-ai-1",
            data: Data::Str("to\"k"),
            name: "ai-output",
            user_id: None,
            pos,
            extras,
        }
        .encode();
        let out = with_append_text(&frame, "a\"b\\c");
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with(r#"{"event":"sockudo:message.append","channel":"private-ai-1","data":"a\"b\\c","name""#),
            "{text}"
        );
        let (a, b): (sonic_rs::Value, sonic_rs::Value) = (
            sonic_rs::from_str(&text).unwrap(),
            sonic_rs::from_slice(&with_data(&frame, &VersionData::Text("a\"b\\c".into()))).unwrap(),
        );
        assert_eq!(a, b);
    }

    #[test]
    fn serials_round_trip_and_sort() {
        let s = serial_string(42, "abc-def");
        assert_eq!(parse_serial(&s), Some((42, "abc-def")));
        assert!(serial_string(9, "x") < serial_string(10, "x"));
        for bad in ["", "42:abc", "0000000000000000004a:x", "00000000000000000042:", "00000000000000000042"] {
            assert_eq!(parse_serial(bad), None, "{bad}");
        }
    }

    #[test]
    fn headers_merge_into_extras() {
        let h = Headers {
            action: VersionAction::Append,
            message_serial: "m",
            version_serial: "v",
            timestamp_ms: 7,
            history_serial: 3,
        };
        let bare: sonic_rs::Value = sonic_rs::from_str(&extras_with_headers(None, &h)).unwrap();
        assert_eq!(bare["headers"]["sockudo_action"].as_str(), Some("message.append"));
        assert_eq!(bare["headers"]["sockudo_history_serial"].as_u64(), Some(3));
        let given = r#"{"ai":{"transport":{"status":"streaming"}},"headers":{"a":"1","sockudo_action":"forged"}}"#;
        let merged: sonic_rs::Value = sonic_rs::from_str(&extras_with_headers(Some(given), &h)).unwrap();
        assert_eq!(merged["headers"]["a"].as_str(), Some("1"));
        assert_eq!(merged["headers"]["sockudo_action"].as_str(), Some("message.append"));
        assert_eq!(merged["headers"]["sockudo_version_timestamp_ms"].as_u64(), Some(7));
        assert_eq!(merged["ai"]["transport"]["status"].as_str(), Some("streaming"));
    }
}
