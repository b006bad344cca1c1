//! Protocol V2 negotiation, prefixes, direct-frame message ids, heartbeat and echo control:
//! `docs/protocol/v2.md#negotiation`, `docs/protocol/v2.md#message-ids`,
//! `docs/protocol/v2.md#heartbeat` and `docs/protocol/v2.md#echo-control`; also the subscription
//! position, the envelope and connection recovery.

use e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

fn v2(s: &Server, query: &str) -> Client {
    s.connect_raw(&format!("/app/app-key?protocol=2{query}"), None)
}

fn is_uuid_v4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && parts[2].starts_with('4')
        && s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit())
}

// `docs/protocol/v2.md#query-parameters`, `docs/protocol/v2.md#message-ids`
#[test]
fn v2_connection_established_has_message_id() {
    let s = Server::start(None);
    let mut c = v2(&s, "");
    let f = c.recv_json(T);
    assert_eq!(f["event"], "sockudo:connection_established", "{f}");
    let data: Value = serde_json::from_str(f["data"].as_str().expect("data-string")).unwrap();
    assert!(data["socket_id"].is_string());
    assert_eq!(data["activity_timeout"], 120);
    assert!(is_uuid_v4(f["message_id"].as_str().unwrap_or("")), "{f}");

    let mut v1 = s.connect_raw("/app/app-key?protocol=7", None);
    let f = v1.recv_json(T);
    assert_eq!(f["event"], "pusher:connection_established");
    assert!(f.get("message_id").is_none(), "{f}");
}

// `docs/protocol/v2.md#query-parameters`
#[test]
fn bad_v2_query_parameters_are_refused_before_upgrade() {
    let s = Server::start(None);
    for q in ["&format=xml", "&append_rollup_window=60", "&append_mode=snapshot", "&echo_messages=maybe"] {
        let upgrade = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ];
        let r = s.http("GET", &format!("/app/app-key?protocol=2{q}"), &upgrade, None);
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        assert!(!r.text().is_empty(), "{q}: the refusal says why");
    }
    for q in ["&format=json", "&format=", "&append_mode=full", "&append_rollup_window=40", "&echo_messages=false"] {
        let mut c = v2(&s, q);
        assert_eq!(c.recv_json(T)["event"], "sockudo:connection_established", "{q}");
    }
    // V1 ignores them.
    let mut c = s.connect_raw("/app/app-key?protocol=7&format=xml", None);
    c.established();
}

// `docs/protocol/v2.md#event-name-prefixes`: either prefix family is accepted inbound; replies use
// the connection's family.
#[test]
fn prefixes_in_and_out() {
    let s = Server::start(None);
    let mut c = v2(&s, "");
    c.recv_json(T);
    c.send_json(&json!({"event": "pusher:subscribe", "data": {"channel": "a"}}));
    let f = c.recv_json(T);
    assert_eq!(f["event"], "sockudo_internal:subscription_succeeded", "{f}");
    assert_eq!(f["channel"], "a");
    assert!(is_uuid_v4(f["message_id"].as_str().unwrap_or("")), "{f}");

    let mut v1 = s.connect();
    v1.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "a"}}));
    let f = v1.recv_json(T);
    assert_eq!(f["event"], "pusher_internal:subscription_succeeded", "{f}");
    assert!(f.get("message_id").is_none(), "{f}");

    // Errors on V2 are sockudo:error with a message_id.
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "private-x"}}));
    let f = c.recv_json(T);
    assert_eq!(f["event"], "sockudo:error", "{f}");
    assert_eq!(f["data"]["code"], 4009, "{f}");
    assert!(f["message_id"].is_string(), "{f}");
}

// `docs/protocol/v2.md#heartbeat`: the JSON heartbeat reply carries nothing but the event.
#[test]
fn v2_json_ping_gets_bare_pong() {
    let s = Server::start(None);
    let mut c = v2(&s, "");
    c.recv_json(T);
    c.send_json(&json!({"event": "sockudo:ping"}));
    assert_eq!(c.recv_json(T), json!({"event": "sockudo:pong"}));
}

// `docs/protocol/v2.md#heartbeat`: the server probes V2 sockets with native Ping frames, never a
// sockudo:ping text frame.
#[test]
fn v2_heartbeat_is_native_ping() {
    let cfg = config("activity_timeout = 10\n[websocket]\nping_interval = 1", &[AppConfig::dev()]);
    let s = Server::start(Some(&cfg));
    let mut c = v2(&s, "");
    c.recv_json(T);
    // Interval = max(ping_interval, activity_timeout / 2, 5) = 5 s.
    match c.recv(Duration::from_secs(12)) {
        Some(Frame::Ping(_)) => {}
        other => panic!("expected a native Ping, got {other:?}"),
    }
    // tungstenite answered with a Pong: the socket stays open.
    c.send_json(&json!({"event": "sockudo:ping"}));
    assert_eq!(c.recv_json(T), json!({"event": "sockudo:pong"}));
}

// `docs/protocol/v2.md#echo-control`: V2 senders get their own client events back unless
// echo_messages=false; V1 never.
#[test]
fn echo_control() {
    let s = Server::start(None);
    let mut echo = v2(&s, "");
    let mut quiet = v2(&s, "&echo_messages=false");
    let mut v1 = s.connect();
    for c in [&mut echo, &mut quiet] {
        let f = c.recv_json(T);
        let data: Value = serde_json::from_str(f["data"].as_str().unwrap()).unwrap();
        c.socket_id = data["socket_id"].as_str().unwrap().to_owned();
    }
    for c in [&mut echo, &mut quiet, &mut v1] {
        let auth = private_auth(&c.app, &c.socket_id, "private-c");
        c.send_subscribe("private-c", Some(&auth), None);
        let f = c.recv_json(T);
        assert!(f["event"].as_str().unwrap().ends_with("subscription_succeeded"), "{f}");
    }
    echo.client_event("client-x", "private-c", json!({"from": "echo"}));
    assert_eq!(echo.recv_json(T)["event"], "client-x");
    assert_eq!(quiet.recv_json(T)["event"], "client-x");
    assert_eq!(v1.recv_json(T)["event"], "client-x");

    quiet.client_event("client-y", "private-c", json!({"from": "quiet"}));
    quiet.expect_no_frame(QUIET);
    assert_eq!(echo.recv_json(T)["event"], "client-y");
    assert_eq!(v1.recv_json(T)["event"], "client-y");

    v1.client_event("client-z", "private-c", json!({"from": "v1"}));
    v1.expect_no_frame(QUIET);
    assert_eq!(echo.recv_json(T)["event"], "client-z");
}

// `[echo_control]`: `default_echo_messages = false` makes echo opt-in; `enabled = false` echoes
// to every V2 sender whatever it asked.
#[test]
fn echo_control_settings() {
    let echoed = |s: &Server, query: &str| {
        let mut c = v2(s, query);
        let f = c.recv_json(T);
        c.socket_id = data_json(&f)["socket_id"].as_str().unwrap().to_owned();
        let auth = private_auth(&c.app, &c.socket_id, "private-c");
        c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "private-c", "auth": auth}}));
        c.expect_channel_event("sockudo_internal:subscription_succeeded", "private-c");
        c.client_event("client-x", "private-c", json!({}));
        c.recv(Duration::from_millis(500)).is_some()
    };
    let s = Server::start_with_env(None, &[("ECHO_CONTROL_DEFAULT_ECHO_MESSAGES", "false")]);
    assert!(!echoed(&s, ""));
    assert!(echoed(&s, "&echo_messages=true"));
    drop(s);
    let s = Server::start(Some(&config("[echo_control]\nenabled = false\n", &[AppConfig::dev()])));
    assert!(echoed(&s, "&echo_messages=false"));
}

// `docs/protocol/v2.md#subscription-position`: a fresh channel's subscribe ack carries its stream
// and serial 0.
#[test]
fn subscribe_ack_position() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    let f = v2_subscribe(&mut c, "orders");
    assert_eq!(data_json(&f), json!({"attach_serial": 0}));
    assert!(f["stream_id"].is_string(), "{f}");
    assert_eq!(f["serial"], 0);
    // The position moves with publishes, under the same stream.
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "1"}));
    c.recv_json(T);
    let mut late = v2_connected(&s);
    let g = v2_subscribe(&mut late, "orders");
    assert_eq!(g["stream_id"], f["stream_id"]);
    assert_eq!(g["serial"], 1);
    assert_eq!(data_json(&g), json!({"attach_serial": 1}));
}

// `docs/protocol/v2.md#message-envelope`: the V2 envelope; V1 subscribers of the same channel get
// the plain event.
#[test]
fn v2_envelope_and_v1_stripping() {
    let s = Server::start(None);
    let mut c2 = v2_connected(&s);
    let stream = v2_subscribe(&mut c2, "orders")["stream_id"].clone();
    let mut c1 = s.connect();
    c1.subscribe("orders");
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": {"x": 1}, "tags": {"r": "eu"},
        "extras": {"headers": {"h": "v"}}, "idempotency_key": "k-env"}));
    let mut f = c2.recv_json(T);
    assert!(f["message_id"].is_string(), "{f}");
    // A versioned create (on by default): the reserved headers join the publisher's
    // (`docs/protocol/v2.md#mutation-frames`).
    let headers = f["extras"]["headers"].as_object_mut().unwrap();
    assert_eq!(headers.remove("sockudo_action"), Some(json!("message.create")));
    for reserved in ["sockudo_message_serial", "sockudo_version_serial", "sockudo_version_timestamp_ms"] {
        assert!(headers.remove(reserved).is_some(), "{reserved}");
    }
    assert_eq!(headers.remove("sockudo_history_serial"), Some(json!(1)));
    let mut expected = json!({"event": "e", "channel": "orders", "data": "{\"x\":1}", "stream_id": stream,
        "serial": 1, "extras": {"headers": {"h": "v"}}});
    expected["message_id"] = f["message_id"].clone();
    assert_eq!(f, expected);
    assert_eq!(c1.recv_json(T), json!({"event": "e", "channel": "orders", "data": "{\"x\":1}"}));
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "2", "message_id": "my-id"}));
    let f = c2.recv_json(T);
    assert_eq!(
        (f["serial"].as_u64(), f["stream_id"].clone(), f["message_id"].as_str()),
        (Some(2), stream, Some("my-id"))
    );
    assert_eq!(c1.recv_json(T), json!({"event": "e", "channel": "orders", "data": "2"}));
}

// `docs/protocol/v2.md#ephemeral-messages`: ephemeral messages take no serial.
#[test]
fn ephemeral_messages_take_no_serial() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    v2_subscribe(&mut c, "orders");
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "1", "extras": {"ephemeral": true}}));
    let f = c.recv_json(T);
    assert!(f.get("serial").is_none() && f.get("stream_id").is_none(), "{f}");
    assert!(f["message_id"].is_string(), "{f}");
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "2"}));
    assert_eq!(c.recv_json(T)["serial"], 1);
    s.publish(json!({"name": "e", "channel": "orders", "data": "3", "extras": [1]})).assert_error(400, "invalid_input");
}

// `docs/protocol/v2.md#event-name-prefixes`: presence member events reach each socket in its own
// dialect.
#[test]
fn member_events_per_dialect() {
    let s = Server::start(None);
    let mut c2 = v2_connected(&s);
    let cd = json!({"user_id": "a"}).to_string();
    let auth = presence_auth(&c2.app, &c2.socket_id, "presence-r", &cd);
    c2.send_json(
        &json!({"event": "sockudo:subscribe", "data": {"channel": "presence-r", "auth": auth, "channel_data": cd}}),
    );
    let f = c2.recv_json(T);
    assert_eq!(f["event"], "sockudo_internal:subscription_succeeded", "{f}");
    let data = data_json(&f);
    assert_eq!(data["presence"]["count"], 1, "{f}");
    assert_eq!(data["attach_serial"], 0, "{f}");
    let mut c1 = s.connect();
    c1.subscribe_presence("presence-r", &json!({"user_id": "b"}));
    assert_eq!(c2.recv_json(T)["event"], "sockudo_internal:member_added");
    c2.close();
    assert_eq!(c1.recv_json(T)["event"], "pusher_internal:member_removed");
}

// `docs/protocol/v2.md#hot-tier`: hot resume replays what was missed, in order, then resume_success.
#[test]
fn hot_resume() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    let ack = v2_subscribe(&mut c, "orders");
    let stream = ack["stream_id"].as_str().unwrap().to_owned();
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "0"}));
    let n = c.recv_json(T)["serial"].as_u64().unwrap();
    c.close();
    for i in 1..=3 {
        s.publish_ok(json!({"name": "e", "channel": "orders", "data": i.to_string()}));
    }
    let mut c = v2_connected(&s);
    v2_subscribe(&mut c, "orders");
    resume(&mut c, json!({"orders": {"stream_id": stream, "serial": n}}));
    let mut last_id = Value::Null;
    for i in 1..=3 {
        let f = c.recv_json(T);
        assert_eq!(
            (f["event"].as_str(), f["serial"].as_u64(), f["data"].as_str()),
            (Some("e"), Some(n + i), Some(&*i.to_string())),
            "{f}"
        );
        last_id = f["message_id"].clone();
    }
    let d = resume_success(&mut c);
    assert_eq!(
        d,
        json!({"recovered": [{"channel": "orders", "source": "hot", "replayed": 3,
            "position": {"stream_id": stream, "serial": n + 3, "last_message_id": last_id}}], "failed": []})
    );
    // At the head: nothing to replay; serials may come as strings.
    resume(&mut c, json!({"orders": {"stream_id": stream, "serial": (n + 3).to_string()}}));
    let d = resume_success(&mut c);
    assert_eq!(d["recovered"][0]["replayed"], 0);
    assert_eq!(d["recovered"][0]["position"], Value::Null);
    // Live delivery continues after the replay.
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "4"}));
    assert_eq!(c.recv_json(T)["serial"], n + 4);
}

// `docs/protocol/v2.md#hot-tier`
#[test]
fn resume_with_a_foreign_stream_fails_explicitly() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    let current = v2_subscribe(&mut c, "orders")["stream_id"].clone();
    resume(&mut c, json!({"orders": {"stream_id": "bogus", "serial": 0}}));
    let f = c.expect_event("sockudo:resume_failed");
    assert_eq!(f["channel"], "orders");
    let d = data_json(&f);
    assert_eq!((d["code"].as_str(), d["reason"].as_str()), (Some("stream_reset"), Some("stream_id_mismatch")), "{d}");
    assert_eq!(d["expected_stream_id"], "bogus");
    assert_eq!(d["current_stream_id"], current);
    let d = resume_success(&mut c);
    assert_eq!(d["recovered"], json!([]));
    assert_eq!(d["failed"][0]["channel"], "orders");
    assert_eq!(d["failed"][0]["code"], "stream_reset");
}

// `docs/protocol/v2.md#hot-tier`: a gap over the window, and a legacy position the hot tier cannot
// serve.
#[test]
fn resume_window_and_legacy_positions() {
    let cfg = config("[connection_recovery]\nmax_buffer_size = 100\nbuffer_ttl_seconds = 1", &[AppConfig::dev()]);
    let s = Server::start(Some(&cfg));
    let mut c = v2_connected(&s);
    let stream = v2_subscribe(&mut c, "orders")["stream_id"].as_str().unwrap().to_owned();
    let batch: Vec<Value> = (0..10).map(|i| json!({"name": "e", "channel": "orders", "data": i.to_string()})).collect();
    for _ in 0..11 {
        assert_eq!(s.batch(json!(batch)).status, 200);
    }
    c.close();
    let mut c = v2_connected(&s);
    resume(&mut c, json!({"orders": {"stream_id": stream, "serial": 0}}));
    let d = data_json(&c.expect_event("sockudo:resume_failed"));
    assert_eq!(
        (d["code"].as_str(), d["reason"].as_str()),
        (Some("position_expired"), Some("recovery_window_exceeded")),
        "{d}"
    );
    assert_eq!(d["newest_available_serial"], 110);
    resume_success(&mut c);
    // Once the buffer has aged out, a serial-only position cannot be proven.
    std::thread::sleep(Duration::from_millis(1500));
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "x"}));
    c.send_json(&json!({"event": "sockudo:resume", "data": {"channel_serials": {"orders": 5}}}));
    let d = data_json(&c.expect_event("sockudo:resume_failed"));
    assert_eq!(
        (d["code"].as_str(), d["reason"].as_str()),
        (Some("continuity_unverifiable"), Some("legacy_serial_only_position_cannot_use_cold_recovery")),
        "{d}"
    );
    resume_success(&mut c);
}

// `docs/protocol/v2.md#resume-request`
#[test]
fn resume_errors() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    resume(&mut c, json!({}));
    let f = c.recv_json(T);
    assert_eq!((f["event"].as_str(), f["data"]["code"].as_u64()), (Some("sockudo:error"), Some(4302)), "{f}");
    assert_eq!(f["data"]["message"], "No channel recovery positions provided");
    c.send_json(&json!({"event": "sockudo:resume", "data": {}}));
    assert_eq!(c.recv_json(T)["data"]["code"], 4000);

    let off = config("[connection_recovery]\nenabled = false", &[AppConfig::dev()]);
    let s = Server::start(Some(&off));
    let mut c = v2_connected(&s);
    resume(&mut c, json!({"orders": {"serial": 1}}));
    let f = c.recv_json(T);
    assert_eq!(f["data"], json!({"code": 4301, "message": "Connection recovery is not enabled"}), "{f}");
}

// sockudo-python 2.2 sends its resume before re-subscribing. What is published between the
// two must still arrive: the subscribe catches up from where the resume left off.
#[test]
fn resume_before_subscribe_catches_up() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    let stream = v2_subscribe(&mut c, "orders")["stream_id"].as_str().unwrap().to_owned();
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "1"}));
    assert_eq!(c.recv_json(T)["serial"], 1);
    c.close();
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "2"}));
    let mut c = v2_connected(&s);
    resume(&mut c, json!({"orders": {"stream_id": stream, "serial": 1}}));
    assert_eq!(c.recv_json(T)["serial"], 2);
    assert_eq!(resume_success(&mut c)["recovered"][0]["replayed"], 1);
    for i in 3..=4 {
        s.publish_ok(json!({"name": "e", "channel": "orders", "data": i.to_string()}));
    }
    let ack = v2_subscribe(&mut c, "orders");
    assert_eq!(data_json(&ack)["attach_serial"], 4);
    assert_eq!(c.recv_json(T)["serial"], 3);
    assert_eq!(c.recv_json(T)["serial"], 4);
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "5"}));
    assert_eq!(c.recv_json(T)["serial"], 5);
    c.expect_no_frame(QUIET);
}
