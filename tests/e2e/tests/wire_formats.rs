//! Binary wire formats (`docs/protocol/v2.md#binary-wire-formats`): `format=msgpack` and
//! `format=protobuf` connections beside JSON ones on the same channel. MessagePack is read and
//! written with `rmpv`, Protobuf with the few lines of wire-format reading below; neither uses
//! the server's code. sockudo-python's codecs are checked in `tests/python`.

use e2e::*;
use rmpv::Value as Mp;
use serde_json::{json, Value};
use tungstenite::Message;

const FIELDS: [&str; 15] = [
    "event",
    "channel",
    "data",
    "name",
    "user_id",
    "tags",
    "sequence",
    "conflation_key",
    "message_id",
    "stream_id",
    "serial",
    "idempotency_key",
    "extras",
    "__delta_seq",
    "__conflation_key",
];

/// The next binary message (native pings and pongs skipped); a text one fails the test.
fn next_binary(c: &mut Client) -> Vec<u8> {
    loop {
        match c.ws.read() {
            Ok(Message::Binary(b)) => return b.to_vec(),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }
}

fn mp_to_json(v: &Mp) -> Value {
    match v {
        Mp::Nil => Value::Null,
        Mp::Boolean(b) => json!(b),
        Mp::Integer(i) => i.as_u64().map_or_else(|| json!(i.as_i64()), |u| json!(u)),
        Mp::F32(f) => json!(f),
        Mp::F64(f) => json!(f),
        Mp::String(s) => json!(s.as_str().expect("UTF-8")),
        Mp::Binary(b) => json!(b),
        Mp::Array(a) => Value::Array(a.iter().map(mp_to_json).collect()),
        Mp::Map(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.as_str().expect("string keys").to_owned(), mp_to_json(v))).collect())
        }
        Mp::Ext(..) => panic!("no extension types"),
    }
}

/// A MessagePack frame as an object of its non-nil fields (`data` stays `[kind, value]`).
fn mp_frame(c: &mut Client) -> Value {
    let bytes = next_binary(c);
    let mut rd = bytes.as_slice();
    let v = rmpv::decode::read_value(&mut rd).expect("MessagePack");
    assert!(rd.is_empty(), "trailing bytes");
    let Mp::Array(items) = v else { panic!("an envelope is an array: {v}") };
    assert_eq!(items.len(), 15, "15 envelope fields");
    let obj = FIELDS.iter().zip(&items).filter(|(_, v)| !v.is_nil()).map(|(k, v)| (k.to_string(), mp_to_json(v)));
    Value::Object(obj.collect())
}

/// The next MessagePack frame that is event `name`.
fn mp_event(c: &mut Client, name: &str) -> Value {
    for _ in 0..20 {
        let f = mp_frame(c);
        if f["event"] == name {
            return f;
        }
    }
    panic!("no {name}");
}

fn mp_send(c: &mut Client, event: &str, data: Option<Value>) {
    let mut fields = vec![Mp::Nil; 15];
    fields[0] = event.into();
    if let Some(d) = data {
        fields[2] = Mp::Array(vec!["json".into(), d.to_string().into()]);
    }
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, &Mp::Array(fields)).unwrap();
    c.send(Message::binary(bytes));
}

// ---- Protobuf, read and written by hand ---------------------------------------------------

fn varint(b: &[u8], i: &mut usize) -> u64 {
    let (mut v, mut shift) = (0u64, 0);
    loop {
        let byte = b[*i];
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// (field number, varint or bytes) of one message's fields.
fn pb_fields(b: &[u8]) -> Vec<(u64, Result<u64, Vec<u8>>)> {
    let (mut i, mut out) = (0, Vec::new());
    while i < b.len() {
        let key = varint(b, &mut i);
        match key & 7 {
            0 => out.push((key >> 3, Ok(varint(b, &mut i)))),
            2 => {
                let n = varint(b, &mut i) as usize;
                out.push((key >> 3, Err(b[i..i + n].to_vec())));
                i += n;
            }
            1 => {
                out.push((key >> 3, Err(b[i..i + 8].to_vec())));
                i += 8;
            }
            w => panic!("wire type {w}"),
        }
    }
    out
}

fn pb_str(fields: &[(u64, Result<u64, Vec<u8>>)], n: u64) -> Option<String> {
    fields.iter().find(|(f, _)| *f == n).map(|(_, v)| String::from_utf8(v.clone().unwrap_err()).unwrap())
}

fn pb_uint(fields: &[(u64, Result<u64, Vec<u8>>)], n: u64) -> Option<u64> {
    fields.iter().find(|(f, _)| *f == n).map(|(_, v)| *v.as_ref().unwrap())
}

fn put_bytes(out: &mut Vec<u8>, field: u8, b: &[u8]) {
    out.push(field << 3 | 2);
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

/// A Protobuf command with `data` as JSON text (oneof case 3).
fn pb_send(c: &mut Client, event: &str, data: &Value) {
    let mut inner = Vec::new();
    put_bytes(&mut inner, 3, data.to_string().as_bytes());
    let mut out = Vec::new();
    put_bytes(&mut out, 1, event.as_bytes());
    put_bytes(&mut out, 3, &inner);
    c.send(Message::binary(out));
}

fn pb_event(c: &mut Client, name: &str) -> Vec<(u64, Result<u64, Vec<u8>>)> {
    for _ in 0..20 {
        let f = pb_fields(&next_binary(c));
        if pb_str(&f, 1).as_deref() == Some(name) {
            return f;
        }
    }
    panic!("no {name}");
}

// A channel message reaches JSON, MessagePack and Protobuf subscribers as the same message;
// frames for one socket (connection_established, subscription_succeeded, errors, pongs) and
// replayed ones (rewind) are in the socket's format; text frames are JSON on any connection.
#[test]
fn one_channel_three_formats() {
    let s = Server::start(None);
    let mut js = v2_connected(&s);
    v2_subscribe(&mut js, "orders");

    let mut mp = s.connect_raw("/app/app-key?protocol=2&format=MessagePack", None);
    let hello = mp_frame(&mut mp);
    assert_eq!(hello["event"], "sockudo:connection_established", "{hello}");
    assert_eq!(hello["data"][0], "string", "{hello}");
    let established: Value = serde_json::from_str(hello["data"][1].as_str().unwrap()).unwrap();
    assert!(established["socket_id"].is_string() && established["activity_timeout"] == 120, "{hello}");
    assert_eq!(hello["message_id"].as_str().map(str::len), Some(36), "{hello}");
    mp_send(&mut mp, "sockudo:subscribe", Some(json!({"channel": "orders"})));
    let ok = mp_event(&mut mp, "sockudo_internal:subscription_succeeded");
    assert_eq!(ok["channel"], "orders", "{ok}");
    assert_eq!(ok["serial"], 0, "{ok}");
    assert!(ok["stream_id"].is_string(), "{ok}");
    // Subscribed once the pong is back (`docs/protocol/v2.md#continuity-gate`).
    mp_send(&mut mp, "sockudo:ping", None);
    assert_eq!(mp_frame(&mut mp), json!({"event": "sockudo:pong"}));

    let mut pb = s.connect_raw("/app/app-key?protocol=2&format=proto", None);
    let hello = pb_event(&mut pb, "sockudo:connection_established");
    assert!(pb_str(&hello, 9).is_some_and(|id| id.len() == 36), "a message id");
    pb_send(&mut pb, "sockudo:subscribe", &json!({"channel": "orders"}));
    let ok = pb_event(&mut pb, "sockudo_internal:subscription_succeeded");
    assert_eq!(pb_str(&ok, 2).as_deref(), Some("orders"));
    // A JSON text frame on a binary connection: answered in the connection's format.
    pb.send_json(&json!({"event": "sockudo:ping"}));
    pb_event(&mut pb, "sockudo:pong");

    let data = r#"{"item":"tea","qty":2}"#;
    s.publish_ok(json!({"name": "placed", "channel": "orders", "data": data,
        "extras": {"headers": {"h": "v", "n": 2, "b": true}}}));
    let j = js.expect_channel_event("placed", "orders");
    let m = mp_event(&mut mp, "placed");
    assert_eq!(m["channel"], "orders");
    assert_eq!(m["data"], json!(["string", data]));
    for k in ["message_id", "stream_id", "serial"] {
        assert_eq!(m[k], j[k], "{k}: {m} vs {j}");
    }
    // Header values are tagged; the server's own (versioned messages) too.
    let headers = &m["extras"]["headers"];
    assert_eq!(headers["h"], json!(["string", "v"]));
    assert_eq!(headers["n"], json!(["number", 2.0]));
    assert_eq!(headers["b"], json!(["bool", true]));
    assert_eq!(headers["sockudo_action"], json!(["string", "message.create"]));
    let json_headers = j["extras"]["headers"].as_object().unwrap();
    assert_eq!(headers.as_object().unwrap().len(), json_headers.len(), "{m} vs {j}");
    let p = pb_event(&mut pb, "placed");
    assert_eq!(pb_str(&p, 9).as_deref(), j["message_id"].as_str());
    assert_eq!(pb_uint(&p, 11), j["serial"].as_u64());
    let data_field = p.iter().find(|(f, _)| *f == 3).unwrap().1.clone().unwrap_err();
    assert_eq!(pb_str(&pb_fields(&data_field), 1).as_deref(), Some(data), "data as the string case");
    let extras = p.iter().find(|(f, _)| *f == 13).unwrap().1.clone().unwrap_err();
    assert_eq!(pb_fields(&extras).iter().filter(|(f, _)| *f == 1).count(), json_headers.len(), "every header");

    // Undecodable input is an error frame in the format; the socket stays open. Deltas are
    // not offered on a binary connection.
    mp.send(Message::binary(vec![0xc1]));
    let err = mp_event(&mut mp, "sockudo:error");
    assert_eq!(err["data"][0], "json", "{err}");
    let body: Value = serde_json::from_str(err["data"][1].as_str().unwrap()).unwrap();
    assert!(body["message"].as_str().unwrap().contains("Decode failed"), "{body}");
    mp_send(&mut mp, "sockudo:enable_delta_compression", Some(json!({})));
    let d = mp_event(&mut mp, "sockudo:delta_compression_enabled");
    let d: Value = serde_json::from_str(d["data"][1].as_str().unwrap()).unwrap();
    assert_eq!(d["enabled"], false, "{d}");

    // A rewind replays stored frames in the format.
    let mut late = s.connect_raw("/app/app-key?protocol=2&format=msgpack", None);
    mp_event(&mut late, "sockudo:connection_established");
    mp_send(&mut late, "sockudo:subscribe", Some(json!({"channel": "orders", "rewind": {"count": 5}})));
    let old = mp_event(&mut late, "placed");
    assert_eq!(old["message_id"], j["message_id"], "{old}");
    mp_event(&mut late, "sockudo:rewind_complete");

    // A refused connection's error frame is in the format too.
    let mut refused = s.connect_raw("/app/app-key?protocol=2&format=msgpack&token=not-a-jwt", None);
    let err = mp_event(&mut refused, "sockudo:error");
    let body: Value = serde_json::from_str(err["data"][1].as_str().unwrap()).unwrap();
    assert_eq!(body["code"], 4009, "{body}");
    refused.expect_close(4009);
}
