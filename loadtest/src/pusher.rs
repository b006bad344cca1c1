//! Pusher protocol by byte scanning: what the receive path needs without parsing JSON,
//! plus builders for the few client→server messages the harness sends.

use crate::ws::handshake::find;

/// The marker placed in published data, followed by 16 lowercase hex digits of the send time.
pub const TS_MARKER: &[u8] = b"~lt:";
pub const TS_LEN: usize = TS_MARKER.len() + 16;

/// Which protocol the sockets speak: V1 (`pusher:`) or V2 (`sockudo:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    V1,
    V2,
}

impl Protocol {
    pub fn query(self) -> &'static str {
        match self {
            Protocol::V1 => "protocol=7&client=loadtest&version=1",
            Protocol::V2 => "protocol=2&client=loadtest&version=1",
        }
    }
    pub fn prefix(self) -> &'static str {
        match self {
            Protocol::V1 => "pusher",
            Protocol::V2 => "sockudo",
        }
    }
}

/// System events the harness reacts to; everything else is a channel event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    ConnectionEstablished,
    Ping,
    Pong,
    Error,
    SubscriptionSucceeded,
    SubscriptionError,
    MemberAdded,
    MemberRemoved,
    /// Another `pusher:`/`pusher_internal:` (or `sockudo…`) event: cache_miss, signin_success…
    OtherSystem,
    /// A channel event (published or client event).
    Channel,
    /// `sockudo:delta`: a channel event as a delta against the previous one.
    Delta,
}

/// The value of the top-level `"event"` key (a byte scan; event names contain no escapes).
#[inline]
pub fn event_name(text: &[u8]) -> Option<&[u8]> {
    const KEY: &[u8] = b"\"event\":";
    // Fast path: servers put "event" first.
    let at = if text.len() > 10 && &text[1..9] == KEY { 1 } else { find(text, KEY)? };
    string_value(&text[at + KEY.len()..])
}

/// The event name of a V2 binary frame: the first element of a MessagePack envelope (a
/// 15-element array) or field 1 of a Protobuf one. The rest of a frame is read with the same
/// byte scans as JSON text: the data string (with its timestamp) is in it unescaped.
pub fn binary_event_name(frame: &[u8]) -> Option<&[u8]> {
    let (start, len) = match frame {
        // fixarray(15), then a fixstr or a str8.
        [0x9f, b @ 0xa0..=0xbf, ..] => (2, (b & 0x1f) as usize),
        [0x9f, 0xd9, n, ..] => (3, *n as usize),
        // Field 1, length-delimited, a one-byte length.
        [0x0a, n @ 0..=0x7f, ..] => (2, *n as usize),
        _ => return None,
    };
    frame.get(start..start + len)
}

/// The JSON string at the start of `rest` (after optional spaces), without its quotes.
fn string_value(rest: &[u8]) -> Option<&[u8]> {
    let mut i = 0;
    while i < rest.len() && rest[i] == b' ' {
        i += 1;
    }
    if rest.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let len = rest[start..].iter().position(|&b| b == b'"')?;
    Some(&rest[start..start + len])
}

/// Classifies an event name. Both prefix families are accepted whatever the protocol.
#[inline]
pub fn classify(name: &[u8]) -> Kind {
    let rest = if let Some(r) = name.strip_prefix(b"pusher") {
        r
    } else if let Some(r) = name.strip_prefix(b"sockudo") {
        r
    } else {
        return Kind::Channel;
    };
    let (internal, rest) = match rest.strip_prefix(b"_internal:") {
        Some(r) => (true, r),
        None => match rest.strip_prefix(b":") {
            Some(r) => (false, r),
            None => return Kind::Channel,
        },
    };
    match (internal, rest) {
        (false, b"connection_established") => Kind::ConnectionEstablished,
        (false, b"ping") => Kind::Ping,
        (false, b"pong") => Kind::Pong,
        (false, b"error") => Kind::Error,
        (false, b"delta") => Kind::Delta,
        (_, b"subscription_succeeded") => Kind::SubscriptionSucceeded,
        (_, b"subscription_error") => Kind::SubscriptionError,
        (true, b"member_added") => Kind::MemberAdded,
        (true, b"member_removed") => Kind::MemberRemoved,
        _ => Kind::OtherSystem,
    }
}

/// The `socket_id` inside `connection_established` (whose data is an escaped JSON string).
pub fn socket_id(text: &[u8]) -> Option<&[u8]> {
    let at = find(text, b"socket_id")? + b"socket_id".len();
    let rest = &text[at..];
    let start = rest.iter().position(|b| b.is_ascii_digit())?;
    // skip only `\":\"`-like separators
    if rest[..start].iter().any(|b| !matches!(b, b'\\' | b'"' | b':' | b' ')) {
        return None;
    }
    let len = rest[start..].iter().position(|&b| !(b.is_ascii_digit() || b == b'.'))?;
    Some(&rest[start..start + len])
}

/// The top-level `"channel"` value.
pub fn channel(text: &[u8]) -> Option<&[u8]> {
    string_after(text, b"\"channel\":")
}

/// The JSON string after the first `key` (e.g. `"data":`), without its quotes (a byte scan: the
/// string must contain no escaped quote).
pub fn string_after<'a>(text: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    string_value(&text[find(text, key)? + key.len()..])
}

/// The unsigned number after the first `key`.
pub fn number_after(text: &[u8], key: &[u8]) -> Option<u64> {
    number_value(&text[find(text, key)? + key.len()..])
}

/// The unsigned number at the start of `rest` (after optional spaces or an opening quote).
#[inline]
fn number_value(rest: &[u8]) -> Option<u64> {
    let digits = rest.iter().skip_while(|&&b| b == b' ' || b == b'"').take_while(|b| b.is_ascii_digit());
    let mut v: u64 = 0;
    let mut n = 0;
    for &d in digits {
        v = v.checked_mul(10)?.checked_add((d - b'0') as u64)?;
        n += 1;
    }
    (n > 0).then_some(v)
}

/// A V2 frame's position: the `"stream_id"` string and the `"serial"` number (a byte scan; in
/// a data-string every quote is escaped, so neither key can match inside it).
#[inline]
pub fn v2_position(text: &[u8]) -> Option<(&[u8], u64)> {
    const SID: &[u8] = b"\"stream_id\":";
    const SERIAL: &[u8] = b"\"serial\":";
    let at = find(text, SID)? + SID.len();
    let sid = string_value(&text[at..])?;
    let rest = &text[at + sid.len()..];
    Some((sid, number_after(rest, SERIAL)?))
}

/// `{"event":"sockudo:resume","data":{"channel_positions":{"c":{"stream_id":"S","serial":K},…}}}`.
pub fn resume<'a>(out: &mut Vec<u8>, positions: impl IntoIterator<Item = (&'a str, &'a [u8], u64)>) {
    out.extend_from_slice(b"{\"event\":\"sockudo:resume\",\"data\":{\"channel_positions\":{");
    for (i, (channel, stream_id, serial)) in positions.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_string(out, channel.as_bytes());
        out.extend_from_slice(b":{\"stream_id\":");
        push_json_string(out, stream_id);
        use std::io::Write;
        let _ = write!(out, ",\"serial\":{serial}}}");
    }
    out.extend_from_slice(b"}}}");
}

/// Appends the timestamp marker for `ns` (`~lt:` + 16 hex digits).
pub fn push_timestamp(out: &mut Vec<u8>, ns: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(TS_MARKER);
    for shift in (0..16).rev() {
        out.push(HEX[((ns >> (shift * 4)) & 15) as usize]);
    }
}

/// Finds the embedded send time in a delivered frame: a scan for the marker, no JSON parse.
#[inline]
pub fn scan_timestamp(text: &[u8]) -> Option<u64> {
    let mut from = 0;
    while from + TS_LEN <= text.len() {
        let off = text[from..text.len() - TS_LEN + 1].iter().position(|&b| b == b'~')?;
        let at = from + off;
        if &text[at..at + TS_MARKER.len()] == TS_MARKER {
            let mut v = 0u64;
            let mut ok = true;
            for &c in &text[at + TS_MARKER.len()..at + TS_LEN] {
                let d = match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    _ => {
                        ok = false;
                        break;
                    }
                };
                v = (v << 4) | d as u64;
            }
            if ok {
                return Some(v);
            }
        }
        from = at + 1;
    }
    None
}

/// `{"event":"pusher:subscribe","data":{"channel":"…"[,"auth":"…","channel_data":"…"]}}`.
/// `channel_data` is raw JSON; it is escaped into a JSON string here.
pub fn subscribe(out: &mut Vec<u8>, proto: Protocol, channel: &str, auth: Option<&str>, channel_data: Option<&str>) {
    out.extend_from_slice(b"{\"event\":\"");
    out.extend_from_slice(proto.prefix().as_bytes());
    out.extend_from_slice(b":subscribe\",\"data\":{\"channel\":\"");
    out.extend_from_slice(channel.as_bytes());
    out.push(b'"');
    if let Some(a) = auth {
        out.extend_from_slice(b",\"auth\":\"");
        out.extend_from_slice(a.as_bytes());
        out.push(b'"');
    }
    if let Some(cd) = channel_data {
        out.extend_from_slice(b",\"channel_data\":");
        push_json_string(out, cd.as_bytes());
    }
    out.extend_from_slice(b"}}");
}

/// A V2 subscribe with one more option in its data: `field` set to `json`
/// (`filter`, `delta`).
pub fn subscribe_with(out: &mut Vec<u8>, channel: &str, field: &str, json: &str) {
    subscribe(out, Protocol::V2, channel, None, None);
    out.truncate(out.len() - 2);
    out.extend_from_slice(format!(",\"{field}\":").as_bytes());
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"}}");
}

/// `{"event":"pusher:unsubscribe","data":{"channel":"…"}}`.
pub fn unsubscribe(out: &mut Vec<u8>, proto: Protocol, channel: &str) {
    out.extend_from_slice(b"{\"event\":\"");
    out.extend_from_slice(proto.prefix().as_bytes());
    out.extend_from_slice(b":unsubscribe\",\"data\":{\"channel\":\"");
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(b"\"}}");
}

/// `{"event":"pusher:pong","data":{}}`.
pub fn pong(proto: Protocol) -> &'static [u8] {
    match proto {
        Protocol::V1 => b"{\"event\":\"pusher:pong\",\"data\":{}}",
        Protocol::V2 => b"{\"event\":\"sockudo:pong\",\"data\":{}}",
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &b in s {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0..=0x1f => {
                use std::io::Write;
                let _ = write!(out, "\\u{:04x}", b);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_roundtrip_and_scan() {
        for ns in [0u64, 1, 123_456_789_012, u64::MAX] {
            let mut data = b"{\"event\":\"lt\",\"channel\":\"c-1\",\"data\":\"".to_vec();
            push_timestamp(&mut data, ns);
            data.extend_from_slice(&[b'x'; 180]);
            data.extend_from_slice(b"\"}");
            assert_eq!(scan_timestamp(&data), Some(ns));
        }
    }

    #[test]
    fn timestamp_scan_edge_cases() {
        assert_eq!(scan_timestamp(b""), None);
        assert_eq!(scan_timestamp(b"~lt:0123"), None, "truncated");
        assert_eq!(scan_timestamp(b"~~lt~lt:zz~lt:00000000000000ff"), Some(255), "false starts skipped");
        assert_eq!(scan_timestamp(b"~lt:00000000000000fX ~lt:0000000000000010"), Some(16), "bad digits skipped");
        assert_eq!(scan_timestamp(b"xx~lt:000000000000abcd"), Some(0xabcd), "marker at the very end");
        // Payload with the marker at the end of a V2 envelope with extra fields.
        let v2 = b"{\"event\":\"e\",\"channel\":\"c\",\"data\":\"~lt:0000000000000001\",\"message_id\":\"m~\"}";
        assert_eq!(scan_timestamp(v2), Some(1));
    }

    #[test]
    fn binary_event_names() {
        assert_eq!(binary_event_name(b"\x9f\xa3abc\xc0"), Some(&b"abc"[..]));
        assert_eq!(binary_event_name(b"\x9f\xd9\x02ab"), Some(&b"ab"[..]));
        assert_eq!(binary_event_name(b"\x0a\x02ab\x12"), Some(&b"ab"[..]));
        assert_eq!(binary_event_name(b"\x9f\xa5ab"), None);
        assert_eq!(binary_event_name(b"{}"), None);
    }

    #[test]
    fn event_names_and_fields() {
        let est = br#"{"event":"pusher:connection_established","data":"{\"socket_id\":\"4820174023.113\",\"activity_timeout\":120}"}"#;
        assert_eq!(event_name(est), Some(&b"pusher:connection_established"[..]));
        assert_eq!(classify(event_name(est).unwrap()), Kind::ConnectionEstablished);
        assert_eq!(socket_id(est), Some(&b"4820174023.113"[..]));
        let spaced = br#"{"data": "{}", "event": "sockudo_internal:subscription_succeeded", "channel": "a-b"}"#;
        assert_eq!(classify(event_name(spaced).unwrap()), Kind::SubscriptionSucceeded);
        assert_eq!(channel(spaced), Some(&b"a-b"[..]));
        assert_eq!(classify(b"pusher:ping"), Kind::Ping);
        assert_eq!(classify(b"sockudo:ping"), Kind::Ping);
        assert_eq!(classify(b"pusher_internal:member_added"), Kind::MemberAdded);
        assert_eq!(classify(b"pusher:cache_miss"), Kind::OtherSystem);
        assert_eq!(classify(b"pusherish"), Kind::Channel);
        assert_eq!(classify(b"order.created"), Kind::Channel);
        assert_eq!(event_name(b"{\"data\":1}"), None);
    }

    #[test]
    fn v2_positions() {
        let f = br#"{"event":"e","channel":"c","data":"{\"serial\":9,\"stream_id\":\"x\"}","message_id":"m","stream_id":"S-1","serial":42,"extras":{"serial":1}}"#;
        assert_eq!(v2_position(f), Some((&b"S-1"[..], 42)));
        let sub = br#"{"event":"sockudo_internal:subscription_succeeded","channel":"c","data":"{\"attach_serial\":7}","message_id":"m","stream_id":"ab","serial":7}"#;
        assert_eq!(v2_position(sub), Some((&b"ab"[..], 7)));
        assert_eq!(v2_position(br#"{"event":"e","channel":"c","data":"x"}"#), None);
        let mut out = Vec::new();
        resume(&mut out, [("a", &b"S"[..], 3), ("b", &b"T"[..], 0)]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["event"], "sockudo:resume");
        assert_eq!(v["data"]["channel_positions"]["a"]["stream_id"], "S");
        assert_eq!(v["data"]["channel_positions"]["b"]["serial"], 0);
    }

    #[test]
    fn builders() {
        let mut out = Vec::new();
        subscribe(&mut out, Protocol::V1, "presence-r", Some("k:s"), Some(r#"{"user_id":"u1"}"#));
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["event"], "pusher:subscribe");
        assert_eq!(v["data"]["channel"], "presence-r");
        assert_eq!(v["data"]["channel_data"], r#"{"user_id":"u1"}"#);
        out.clear();
        unsubscribe(&mut out, Protocol::V2, "c");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["event"], "sockudo:unsubscribe");
        let v: serde_json::Value = serde_json::from_slice(pong(Protocol::V1)).unwrap();
        assert_eq!(v["event"], "pusher:pong");
    }
}
