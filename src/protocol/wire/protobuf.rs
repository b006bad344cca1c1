//! Protobuf envelopes: fields 1–15 in envelope order, `data` a oneof, `extras` a message of
//! its own. The schema is the reference's, field for field; `extras` keys it has no field for
//! are not carried.

use super::{json_number, ClientData, Command, DataKind, Envelope, HeaderValue, Structured};
use prost::Message;
use sonic_rs::{JsonContainerTrait, JsonValueTrait};
use std::borrow::Cow;
use std::collections::BTreeMap;

#[derive(Clone, PartialEq, Message)]
struct ProtoEnvelope {
    #[prost(string, optional, tag = "1")]
    event: Option<String>,
    #[prost(string, optional, tag = "2")]
    channel: Option<String>,
    #[prost(message, optional, tag = "3")]
    data: Option<ProtoData>,
    #[prost(string, optional, tag = "4")]
    name: Option<String>,
    #[prost(string, optional, tag = "5")]
    user_id: Option<String>,
    #[prost(btree_map = "string, string", tag = "6")]
    tags: BTreeMap<String, String>,
    #[prost(uint64, optional, tag = "7")]
    sequence: Option<u64>,
    #[prost(string, optional, tag = "8")]
    conflation_key: Option<String>,
    #[prost(string, optional, tag = "9")]
    message_id: Option<String>,
    #[prost(string, optional, tag = "10")]
    stream_id: Option<String>,
    #[prost(uint64, optional, tag = "11")]
    serial: Option<u64>,
    #[prost(string, optional, tag = "12")]
    idempotency_key: Option<String>,
    #[prost(message, optional, tag = "13")]
    extras: Option<ProtoExtras>,
    #[prost(uint64, optional, tag = "14")]
    delta_sequence: Option<u64>,
    #[prost(string, optional, tag = "15")]
    delta_conflation_key: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoData {
    #[prost(oneof = "DataKindOneof", tags = "1, 2, 3, 4")]
    kind: Option<DataKindOneof>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum DataKindOneof {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(message, tag = "2")]
    Structured(ProtoStructured),
    #[prost(string, tag = "3")]
    Json(String),
    #[prost(bytes, tag = "4")]
    Binary(Vec<u8>),
}

#[derive(Clone, PartialEq, Message)]
struct ProtoStructured {
    #[prost(string, optional, tag = "1")]
    channel_data: Option<String>,
    #[prost(string, optional, tag = "2")]
    channel: Option<String>,
    #[prost(string, optional, tag = "3")]
    user_data: Option<String>,
    /// Other keys, each value as JSON text.
    #[prost(btree_map = "string, string", tag = "4")]
    extra: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoExtras {
    #[prost(btree_map = "string, message", tag = "1")]
    headers: BTreeMap<String, ProtoHeader>,
    #[prost(bool, optional, tag = "2")]
    ephemeral: Option<bool>,
    #[prost(string, optional, tag = "3")]
    idempotency_key: Option<String>,
    #[prost(bool, optional, tag = "4")]
    echo: Option<bool>,
    #[prost(message, optional, tag = "5")]
    ai: Option<ProtoAi>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoAi {
    #[prost(btree_map = "string, string", tag = "1")]
    transport: BTreeMap<String, String>,
    #[prost(btree_map = "string, string", tag = "2")]
    codec: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, Message)]
struct ProtoHeader {
    #[prost(oneof = "HeaderOneof", tags = "1, 2, 3")]
    kind: Option<HeaderOneof>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum HeaderOneof {
    #[prost(string, tag = "1")]
    String(String),
    #[prost(double, tag = "2")]
    Number(f64),
    #[prost(bool, tag = "3")]
    Bool(bool),
}

impl From<DataKindOneof> for ClientData {
    fn from(kind: DataKindOneof) -> ClientData {
        match kind {
            DataKindOneof::String(s) => ClientData::String(s),
            DataKindOneof::Json(text) => ClientData::Json(text),
            DataKindOneof::Binary(b) => ClientData::Binary(b),
            DataKindOneof::Structured(s) => ClientData::Structured(Structured {
                channel_data: s.channel_data,
                channel: s.channel,
                user_data: s.user_data,
                extra: s.extra,
            }),
        }
    }
}

fn owned(s: &Option<Cow<'_, str>>) -> Option<String> {
    s.as_deref().map(str::to_owned)
}

/// An object of strings (`ai.transport`, `ai.codec`); other values as their JSON text.
fn string_map(v: Option<&sonic_rs::Value>) -> BTreeMap<String, String> {
    let Some(obj) = v.and_then(|v| v.as_object()) else { return BTreeMap::new() };
    obj.iter().map(|(k, v)| (k.to_owned(), v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect()
}

fn extras(x: &sonic_rs::Value) -> ProtoExtras {
    let headers = x.get("headers").and_then(|h| h.as_object());
    let headers = headers.into_iter().flat_map(|h| h.iter()).map(|(k, v)| {
        let kind = match HeaderValue::of(v) {
            HeaderValue::Text(s) => HeaderOneof::String(s.into_owned()),
            HeaderValue::Number(n) => HeaderOneof::Number(n),
            HeaderValue::Bool(b) => HeaderOneof::Bool(b),
        };
        (k.to_owned(), ProtoHeader { kind: Some(kind) })
    });
    let ai = x
        .get("ai")
        .filter(|a| a.is_object())
        .map(|a| ProtoAi { transport: string_map(a.get("transport")), codec: string_map(a.get("codec")) });
    ProtoExtras {
        headers: headers.collect(),
        ephemeral: x.get("ephemeral").and_then(|v| v.as_bool()),
        idempotency_key: x.get("idempotency_key").and_then(|v| v.as_str()).map(str::to_owned),
        echo: x.get("echo").and_then(|v| v.as_bool()),
        ai,
    }
}

pub(super) fn encode(e: &Envelope<'_>) -> Vec<u8> {
    let data = e.data().map(|d| ProtoData {
        kind: Some(match d {
            DataKind::Text(s) => DataKindOneof::String(s.into_owned()),
            DataKind::Json(text) => DataKindOneof::Json(text.to_owned()),
        }),
    });
    ProtoEnvelope {
        event: owned(&e.event),
        channel: owned(&e.channel),
        data,
        name: owned(&e.name),
        user_id: owned(&e.user_id),
        tags: e.tags().into_iter().map(|(k, v)| (k.to_owned(), v.into_owned())).collect(),
        sequence: e.sequence,
        conflation_key: owned(&e.conflation_key),
        message_id: owned(&e.message_id),
        stream_id: owned(&e.stream_id),
        serial: e.serial,
        // Never sent to a socket; the delta fields belong to delta frames, which binary
        // connections do not get.
        idempotency_key: None,
        extras: e.extras.as_ref().map(extras),
        delta_sequence: None,
        delta_conflation_key: None,
    }
    .encode_to_vec()
}

/// `extras` of a client frame as JSON.
fn extras_json(x: ProtoExtras) -> String {
    let mut obj = sonic_rs::Object::new();
    if !x.headers.is_empty() {
        let mut headers = sonic_rs::Object::new();
        for (k, h) in x.headers {
            let v = match h.kind {
                Some(HeaderOneof::String(s)) => sonic_rs::Value::from(s.as_str()),
                Some(HeaderOneof::Number(n)) => json_number(n),
                Some(HeaderOneof::Bool(b)) => sonic_rs::Value::from(b),
                None => sonic_rs::Value::from(""),
            };
            headers.insert(&k, v);
        }
        obj.insert("headers", headers);
    }
    if let Some(b) = x.ephemeral {
        obj.insert("ephemeral", b);
    }
    if let Some(k) = &x.idempotency_key {
        obj.insert("idempotency_key", k.as_str());
    }
    if let Some(b) = x.echo {
        obj.insert("echo", b);
    }
    if let Some(ai) = x.ai {
        let map = |m: BTreeMap<String, String>| {
            let mut o = sonic_rs::Object::new();
            m.iter().for_each(|(k, v)| {
                o.insert(k, v.as_str());
            });
            o
        };
        let mut a = sonic_rs::Object::new();
        a.insert("transport", map(ai.transport));
        a.insert("codec", map(ai.codec));
        obj.insert("ai", a);
    }
    sonic_rs::Value::from(obj).to_string()
}

pub(super) fn decode(bytes: &[u8]) -> Result<Command, String> {
    let frame = ProtoEnvelope::decode(bytes).map_err(|e| format!("Protobuf frame: {e}"))?;
    let data = frame.data.and_then(|d| d.kind).map(|k| ClientData::from(k).into_json()).transpose()?;
    Ok(Command { event: frame.event, channel: frame.channel, data, extras: frame.extras.map(extras_json) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::wire::Format;

    #[test]
    fn round_trip_through_the_schema() {
        let json = br#"{"event":"e","channel":"c","data":{"a":1},"message_id":"m","stream_id":"s","serial":18446744073709551615,"extras":{"headers":{"h":"v","n":2.5},"echo":false}}"#;
        let bytes = Format::Protobuf.encode(json).unwrap();
        let back = ProtoEnvelope::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.event.as_deref(), Some("e"));
        assert_eq!(back.data.unwrap().kind, Some(DataKindOneof::Json(r#"{"a":1}"#.into())));
        assert_eq!(back.serial, Some(u64::MAX));
        let x = back.extras.unwrap();
        assert_eq!(x.headers["n"].kind, Some(HeaderOneof::Number(2.5)));
        assert_eq!(x.echo, Some(false));

        let client = ProtoEnvelope {
            event: Some("client-x".into()),
            channel: Some("private-a".into()),
            data: Some(ProtoData { kind: Some(DataKindOneof::String("hi".into())) }),
            extras: Some(ProtoExtras {
                headers: [("k".to_string(), ProtoHeader { kind: Some(HeaderOneof::Number(3.0)) })].into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let bytes = client.encode_to_vec();
        let json = Format::Protobuf.decode(&bytes).unwrap();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"event":"client-x","channel":"private-a","data":"hi","extras":{"headers":{"k":3}}}"#
        );
        assert!(Format::Protobuf.decode(&[0x0a, 0x05, b'a']).is_err());
    }
}
