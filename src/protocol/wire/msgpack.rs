//! MessagePack envelopes: a 15-element array in envelope order, `data` as a `[kind, value]`
//! pair, `extras` as a map whose header values are `[kind, value]` pairs.

use super::{json_number, ClientData, Command, DataKind, Envelope, HeaderValue};
use rmp::encode as put;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize, Serializer};
use sonic_rs::{JsonContainerTrait, JsonType, JsonValueTrait};
use std::collections::BTreeMap;

// Writes into a `Vec` cannot fail; the results of `rmp::encode` are ignored for that reason.

fn nil(out: &mut Vec<u8>) {
    let _ = put::write_nil(out);
}

fn str_or_nil(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            let _ = put::write_str(out, s);
        }
        None => nil(out),
    }
}

fn uint_or_nil(out: &mut Vec<u8>, n: Option<u64>) {
    match n {
        Some(n) => {
            let _ = put::write_uint(out, n);
        }
        None => nil(out),
    }
}

/// `[kind, value]`, the tagged form of `data` and of header values.
fn tagged(out: &mut Vec<u8>, kind: &str) {
    let _ = put::write_array_len(out, 2);
    let _ = put::write_str(out, kind);
}

pub(super) fn encode(e: &Envelope<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + e.data.as_ref().map_or(0, |d| d.as_raw_str().len()));
    let _ = put::write_array_len(&mut out, 15);
    str_or_nil(&mut out, e.event.as_deref());
    str_or_nil(&mut out, e.channel.as_deref());
    match e.data() {
        Some(DataKind::Text(s)) => {
            tagged(&mut out, "string");
            let _ = put::write_str(&mut out, &s);
        }
        Some(DataKind::Json(text)) => {
            tagged(&mut out, "json");
            let _ = put::write_str(&mut out, text);
        }
        None => nil(&mut out),
    }
    str_or_nil(&mut out, e.name.as_deref());
    str_or_nil(&mut out, e.user_id.as_deref());
    if e.tags.is_some() {
        let tags = e.tags();
        let _ = put::write_map_len(&mut out, tags.len() as u32);
        for (k, v) in tags {
            let _ = put::write_str(&mut out, k);
            let _ = put::write_str(&mut out, &v);
        }
    } else {
        nil(&mut out);
    }
    uint_or_nil(&mut out, e.sequence);
    str_or_nil(&mut out, e.conflation_key.as_deref());
    str_or_nil(&mut out, e.message_id.as_deref());
    str_or_nil(&mut out, e.stream_id.as_deref());
    uint_or_nil(&mut out, e.serial);
    // `idempotency_key` is never sent to a socket; `__delta_seq` and `__conflation_key` belong
    // to delta frames, which binary connections do not get.
    nil(&mut out);
    match &e.extras {
        Some(x) => value(&mut out, x, true),
        None => nil(&mut out),
    }
    nil(&mut out);
    nil(&mut out);
    out
}

/// A JSON value as MessagePack; in the top level of `extras` (`in_extras`), the values of
/// `headers` are tagged.
fn value(out: &mut Vec<u8>, v: &sonic_rs::Value, in_extras: bool) {
    match v.get_type() {
        JsonType::Null => nil(out),
        JsonType::Boolean => {
            let _ = put::write_bool(out, v.as_bool().unwrap_or_default());
        }
        JsonType::Number => {
            if let Some(u) = v.as_u64() {
                let _ = put::write_uint(out, u);
            } else if let Some(i) = v.as_i64() {
                let _ = put::write_sint(out, i);
            } else {
                let _ = put::write_f64(out, v.as_f64().unwrap_or_default());
            }
        }
        JsonType::String => {
            let _ = put::write_str(out, v.as_str().unwrap_or_default());
        }
        JsonType::Array => {
            let Some(items) = v.as_array() else { return };
            let _ = put::write_array_len(out, items.len() as u32);
            items.iter().for_each(|item| value(out, item, false));
        }
        JsonType::Object => {
            let Some(obj) = v.as_object() else { return };
            let _ = put::write_map_len(out, obj.len() as u32);
            for (k, x) in obj.iter() {
                let _ = put::write_str(out, k);
                match x.as_object() {
                    Some(headers) if in_extras && k == "headers" => {
                        let _ = put::write_map_len(out, headers.len() as u32);
                        for (name, h) in headers.iter() {
                            let _ = put::write_str(out, name);
                            match HeaderValue::of(h) {
                                HeaderValue::Text(s) => {
                                    tagged(out, "string");
                                    let _ = put::write_str(out, &s);
                                }
                                HeaderValue::Number(n) => {
                                    tagged(out, "number");
                                    let _ = put::write_f64(out, n);
                                }
                                HeaderValue::Bool(b) => {
                                    tagged(out, "bool");
                                    let _ = put::write_bool(out, b);
                                }
                            }
                        }
                    }
                    _ => value(out, x, false),
                }
            }
        }
    }
}

/// A client frame, in array form or (as decoders must also take) map form.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Frame {
    event: Option<String>,
    channel: Option<String>,
    data: Option<ClientData>,
    name: Option<IgnoredAny>,
    user_id: Option<IgnoredAny>,
    tags: Option<IgnoredAny>,
    sequence: Option<IgnoredAny>,
    conflation_key: Option<IgnoredAny>,
    message_id: Option<IgnoredAny>,
    stream_id: Option<IgnoredAny>,
    serial: Option<IgnoredAny>,
    idempotency_key: Option<IgnoredAny>,
    extras: Option<Extras>,
    #[serde(rename = "__delta_seq")]
    delta_seq: Option<IgnoredAny>,
    #[serde(rename = "__conflation_key")]
    delta_conflation_key: Option<IgnoredAny>,
}

/// `extras` of a client frame, re-written as JSON for the command.
#[derive(Deserialize, Serialize)]
struct Extras {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    headers: Option<BTreeMap<String, Header>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ephemeral: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    echo: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ai: Option<Ai>,
}

#[derive(Deserialize, Serialize)]
struct Ai {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    transport: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    codec: Option<BTreeMap<String, String>>,
}

/// A header value: tagged `[kind, value]` as the format says, or plain.
#[derive(Deserialize)]
#[serde(untagged)]
enum Header {
    Tagged(TaggedHeader),
    Text(String),
    Number(f64),
    Bool(bool),
}

#[derive(Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
enum TaggedHeader {
    String(String),
    Number(f64),
    Bool(bool),
}

impl Serialize for Header {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Header::Tagged(TaggedHeader::String(t)) | Header::Text(t) => s.serialize_str(t),
            Header::Tagged(TaggedHeader::Number(n)) | Header::Number(n) => json_number(*n).serialize(s),
            Header::Tagged(TaggedHeader::Bool(b)) | Header::Bool(b) => s.serialize_bool(*b),
        }
    }
}

pub(super) fn decode(bytes: &[u8]) -> Result<Command, String> {
    let mut cursor = std::io::Cursor::new(bytes);
    let frame = Frame::deserialize(&mut rmp_serde::Deserializer::new(&mut cursor))
        .map_err(|e| format!("MessagePack frame: {e}"))?;
    if cursor.position() != bytes.len() as u64 {
        return Err("MessagePack frame: trailing bytes after the value".into());
    }
    let data = frame.data.map(ClientData::into_json).transpose()?;
    let extras = frame.extras.map(|x| sonic_rs::to_string(&x).expect("plain struct"));
    Ok(Command { event: frame.event, channel: frame.channel, data, extras })
}

#[cfg(test)]
mod tests {
    use crate::protocol::wire::Format;

    #[test]
    fn server_frames() {
        let json = br#"{"event":"e","channel":"c","data":"{\"a\":1}","tags":{"r":"eu"},"message_id":"m","stream_id":"s","serial":7,"extras":{"headers":{"h":"v","n":2,"b":true},"ai":{"transport":{"status":"done"}}}}"#;
        let bytes = Format::MessagePack.encode(json).unwrap();
        let v = rmpv::decode::read_value(&mut bytes.as_slice()).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr.len(), 15);
        assert_eq!(arr[0].as_str(), Some("e"));
        assert_eq!(arr[2], rmpv::Value::Array(vec!["string".into(), "{\"a\":1}".into()]));
        assert!(arr[3].is_nil());
        assert_eq!(arr[10].as_u64(), Some(7));
        let extras = arr[12].as_map().unwrap();
        let headers = extras[0].1.as_map().unwrap();
        assert_eq!(headers[1].1, rmpv::Value::Array(vec!["number".into(), 2.0.into()]));
        assert_eq!(headers[2].1, rmpv::Value::Array(vec!["bool".into(), true.into()]));

        let error = Format::MessagePack.encode(br#"{"event":"sockudo:error","data":{"code":4009}}"#).unwrap();
        let v = rmpv::decode::read_value(&mut error.as_slice()).unwrap();
        assert_eq!(v[2], rmpv::Value::Array(vec!["json".into(), "{\"code\":4009}".into()]));
    }

    fn command(v: rmpv::Value) -> Result<String, String> {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &v).unwrap();
        Format::MessagePack.decode(&bytes).map(|c| String::from_utf8(c.into_owned()).unwrap())
    }

    #[test]
    fn client_frames() {
        use rmpv::Value as V;
        let mut fields = vec![V::Nil; 15];
        fields[0] = "sockudo:subscribe".into();
        fields[2] = V::Array(vec!["json".into(), r#"{"channel":"x"}"#.into()]);
        assert_eq!(
            command(V::Array(fields.clone())).unwrap(),
            r#"{"event":"sockudo:subscribe","data":{"channel":"x"}}"#
        );

        fields[0] = "client-a".into();
        fields[1] = "private-x".into();
        fields[2] = V::Array(vec!["binary".into(), V::Binary(vec![1, 2])]);
        fields[12] = V::Map(vec![(
            "headers".into(),
            V::Map(vec![("n".into(), V::Array(vec!["number".into(), 5.0.into()])), ("s".into(), "t".into())]),
        )]);
        assert_eq!(
            command(V::Array(fields.clone())).unwrap(),
            r#"{"event":"client-a","channel":"private-x","data":[1,2],"extras":{"headers":{"n":5,"s":"t"}}}"#
        );

        let map = V::Map(vec![("event".into(), "sockudo:ping".into())]);
        assert_eq!(command(map).unwrap(), r#"{"event":"sockudo:ping"}"#);

        fields[2] = V::Array(vec!["json".into(), "1,\"event\":\"x\"".into()]);
        assert!(command(V::Array(fields)).unwrap_err().contains("not JSON"));
        assert!(command(V::from(3)).is_err());
        let mut trailing = Vec::new();
        rmpv::encode::write_value(&mut trailing, &V::Map(vec![])).unwrap();
        trailing.push(0xc0);
        assert!(Format::MessagePack.decode(&trailing).unwrap_err().contains("trailing"));
    }
}
