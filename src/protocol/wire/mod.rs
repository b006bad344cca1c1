//! The binary wire formats of V2 connections, `format=msgpack` and `format=protobuf`
//! (`docs/protocol/v2.md#binary-wire-formats`).
//!
//! The server builds every frame as JSON (`outbound.rs`) and reads every command as JSON
//! (`inbound.rs`); a binary format is a translation at the socket's edge: a server frame is
//! re-encoded from its JSON (once per message and format on a shard for channel messages, see
//! `ws/index.rs`), and a client frame is turned into the JSON the command parser reads. So there
//! is still one codec for what frames mean, and these files only know how envelopes are laid
//! out in each format.

mod msgpack;
mod protobuf;

use serde::Deserialize;
use sonic_rs::{JsonContainerTrait, JsonType, JsonValueTrait, LazyValue};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// How frames of one connection are encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    MessagePack,
    Protobuf,
}

impl Format {
    /// The `format` query parameter (trimmed, any case); `None` is JSON.
    pub fn parse(value: Option<&str>) -> Result<Format, String> {
        match value.map(str::to_ascii_lowercase).as_deref() {
            None | Some("" | "json") => Ok(Format::Json),
            Some("msgpack" | "messagepack") => Ok(Format::MessagePack),
            Some("protobuf" | "proto") => Ok(Format::Protobuf),
            Some(f) => Err(format!("Invalid format query parameter: {f} (use json, msgpack or protobuf)")),
        }
    }

    pub fn is_binary(self) -> bool {
        self != Format::Json
    }

    /// A server frame, given as its JSON object, in this format (`None` for JSON: send it as is).
    pub fn encode(self, json: &[u8]) -> Option<Vec<u8>> {
        let encode = match self {
            Format::Json => return None,
            Format::MessagePack => msgpack::encode,
            Format::Protobuf => protobuf::encode,
        };
        // Every frame is built by the server as a JSON object: one that does not parse is a bug
        // in its builder, and the socket gets nothing rather than a frame it cannot read.
        match sonic_rs::from_slice::<Envelope<'_>>(json) {
            Ok(envelope) => Some(encode(&envelope)),
            Err(e) => {
                log::error!("a server frame is not a JSON envelope ({e}); not sent");
                None
            }
        }
    }

    /// A client frame in this format as the JSON command it stands for.
    pub fn decode(self, bytes: &[u8]) -> Result<Cow<'_, [u8]>, String> {
        let command = match self {
            Format::Json => return Ok(Cow::Borrowed(bytes)),
            Format::MessagePack => msgpack::decode(bytes)?,
            Format::Protobuf => protobuf::decode(bytes)?,
        };
        Ok(Cow::Owned(command.to_json()))
    }
}

/// The fields of a server frame that the binary formats carry, in their order
/// (`docs/protocol/v2.md#message-envelope`). Other keys have no place in them and are dropped,
/// as in the reference (none of the server's frames has one).
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<LazyValue<'a>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
    /// Filter tags: an object of strings (`docs/protocol/v2.md#tag-filters`).
    #[serde(default)]
    tags: Option<sonic_rs::Value>,
    #[serde(default)]
    sequence: Option<u64>,
    #[serde(borrow, default)]
    conflation_key: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    stream_id: Option<Cow<'a, str>>,
    #[serde(default)]
    serial: Option<u64>,
    #[serde(default)]
    extras: Option<sonic_rs::Value>,
}

/// `data` as the binary formats tag it.
enum DataKind<'a> {
    /// A JSON string: its contents.
    Text(Cow<'a, str>),
    /// Anything else: its JSON text.
    Json(&'a str),
}

impl<'a> Envelope<'a> {
    fn data(&self) -> Option<DataKind<'_>> {
        let data = self.data.as_ref()?;
        Some(match data.get_type() {
            JsonType::String => DataKind::Text(data.as_str().map_or(Cow::Borrowed(""), Cow::Borrowed)),
            _ => DataKind::Json(data.as_raw_str()),
        })
    }

    /// `tags` as (key, value text) pairs; values that are not strings as their JSON text.
    fn tags(&self) -> Vec<(&str, Cow<'_, str>)> {
        let Some(tags) = self.tags.as_ref().and_then(|t| t.as_object()) else { return Vec::new() };
        tags.iter().map(|(k, v)| (k, v.as_str().map_or_else(|| Cow::Owned(v.to_string()), Cow::Borrowed))).collect()
    }
}

/// A header value in `extras.headers`, as both formats type it.
enum HeaderValue<'a> {
    Text(Cow<'a, str>),
    Number(f64),
    Bool(bool),
}

impl<'a> HeaderValue<'a> {
    fn of(v: &'a sonic_rs::Value) -> HeaderValue<'a> {
        if let Some(b) = v.as_bool() {
            HeaderValue::Bool(b)
        } else if let Some(n) = v.as_f64() {
            HeaderValue::Number(n)
        } else {
            HeaderValue::Text(v.as_str().map_or_else(|| Cow::Owned(v.to_string()), Cow::Borrowed))
        }
    }
}

/// What a client frame in a binary format says, ready to be written as the JSON command.
#[derive(Default)]
struct Command {
    event: Option<String>,
    channel: Option<String>,
    /// JSON text.
    data: Option<String>,
    /// JSON text of the `extras` object.
    extras: Option<String>,
}

impl Command {
    fn to_json(&self) -> Vec<u8> {
        use super::outbound::push_json_str;
        let mut out = Vec::with_capacity(64 + self.data.as_ref().map_or(0, String::len));
        out.push(b'{');
        let field = |out: &mut Vec<u8>, name: &str| {
            if out.len() > 1 {
                out.push(b',');
            }
            push_json_str(out, name);
            out.push(b':');
        };
        if let Some(e) = &self.event {
            field(&mut out, "event");
            push_json_str(&mut out, e);
        }
        if let Some(c) = &self.channel {
            field(&mut out, "channel");
            push_json_str(&mut out, c);
        }
        if let Some(d) = &self.data {
            field(&mut out, "data");
            out.extend_from_slice(d.as_bytes());
        }
        if let Some(x) = &self.extras {
            field(&mut out, "extras");
            out.extend_from_slice(x.as_bytes());
        }
        out.push(b'}');
        out
    }
}

/// `data` of a client frame, as both formats tag it (`[kind, value]` in MessagePack, a oneof in
/// Protobuf).
#[derive(Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
enum ClientData {
    String(String),
    Binary(#[serde(with = "serde_bytes")] Vec<u8>),
    Structured(Structured),
    /// JSON text.
    Json(String),
}

/// The presence/auth fields of a subscribe, and the rest as JSON text per key.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Structured {
    channel_data: Option<String>,
    channel: Option<String>,
    user_data: Option<String>,
    extra: BTreeMap<String, String>,
}

impl ClientData {
    /// The JSON text the command carries as `data`.
    fn into_json(self) -> Result<String, String> {
        match self {
            ClientData::String(s) => {
                let mut out = Vec::with_capacity(s.len() + 2);
                super::outbound::push_json_str(&mut out, &s);
                Ok(String::from_utf8(out).expect("UTF-8"))
            }
            // Placed in the command as it is: it must be one JSON value.
            ClientData::Json(text) => match sonic_rs::from_str::<serde::de::IgnoredAny>(&text) {
                Ok(_) => Ok(text),
                Err(e) => {
                    Err(format!("data tagged json is not JSON: {}", e.to_string().lines().next().unwrap_or_default()))
                }
            },
            // JSON has no bytes: an array of numbers, as the reference shows binary data to JSON
            // subscribers.
            ClientData::Binary(b) => {
                let numbers: Vec<String> = b.iter().map(u8::to_string).collect();
                Ok(format!("[{}]", numbers.join(",")))
            }
            ClientData::Structured(s) => {
                let mut obj = sonic_rs::Object::new();
                for (k, v) in [("channel_data", s.channel_data), ("channel", s.channel), ("user_data", s.user_data)] {
                    if let Some(v) = v {
                        obj.insert(k, sonic_rs::Value::from(v.as_str()));
                    }
                }
                for (k, text) in s.extra {
                    let v = sonic_rs::from_str::<sonic_rs::Value>(&text)
                        .unwrap_or_else(|_| sonic_rs::Value::from(text.as_str()));
                    obj.insert(&k, v);
                }
                Ok(sonic_rs::Value::from(obj).to_string())
            }
        }
    }
}

/// A number of a binary frame as JSON: whole numbers as integers (a header `5` stays `5`, not
/// `5.0`).
fn json_number(n: f64) -> sonic_rs::Value {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        sonic_rs::Value::from(n as i64)
    } else {
        sonic_rs::Value::new_f64(n).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names() {
        assert_eq!(Format::parse(None), Ok(Format::Json));
        assert_eq!(Format::parse(Some("")), Ok(Format::Json));
        assert_eq!(Format::parse(Some("MessagePack")), Ok(Format::MessagePack));
        assert_eq!(Format::parse(Some("msgpack")), Ok(Format::MessagePack));
        assert_eq!(Format::parse(Some("PROTO")), Ok(Format::Protobuf));
        assert!(Format::parse(Some("xml")).unwrap_err().contains("xml"));
        assert_eq!(Format::Json.encode(br#"{"event":"e"}"#), None);
    }

    #[test]
    fn commands_become_json() {
        let structured = Structured {
            channel: Some("a\"b".into()),
            extra: [("x".to_string(), "[1]".to_string())].into(),
            ..Default::default()
        };
        let c = Command {
            event: Some("sockudo:subscribe".into()),
            channel: None,
            data: Some(ClientData::Structured(structured).into_json().unwrap()),
            extras: None,
        };
        let json: sonic_rs::Value = sonic_rs::from_slice(&c.to_json()).unwrap();
        let want: sonic_rs::Value =
            sonic_rs::from_str(r#"{"event":"sockudo:subscribe","data":{"channel":"a\"b","x":[1]}}"#).unwrap();
        assert_eq!(json, want);
        assert_eq!(ClientData::Binary(vec![1, 255]).into_json().unwrap(), "[1,255]");
        assert!(ClientData::Json("1,\"event\":2".into()).into_json().is_err());
        assert_eq!(ClientData::Json(" {\"a\":1} ".into()).into_json().unwrap(), " {\"a\":1} ");
        assert_eq!(ClientData::String("q\"".into()).into_json().unwrap(), r#""q\"""#);
    }
}
