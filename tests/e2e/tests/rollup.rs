//! Egress rollup of appends on AI channels (`docs/protocol/v2.md#rollup`): fewer live frames,
//! the same text, serials in order, terminal appends and other channels untouched, and no
//! fragment twice for a client that learns a position (subscribe, GET latest, resume) while a
//! window holds appends.

use e2e::*;
use serde_json::{json, Value};

const AI: &str = "ai-chat";

/// AI channels are `ai-…` (public, so no signatures); a 500 ms window, so that appends sent
/// back to back share windows on any machine.
fn server() -> Server {
    let top =
        "[ai_transport]\n[[ai_transport.channels]]\nprefix = \"ai-\"\n[ai_transport.rollup]\ndefault_window_ms = 500\n";
    Server::start(Some(&config(top, &[AppConfig::dev()])))
}

fn append(conn: &mut HttpConn, s: &Server, channel: &str, ms: &str, body: Value) {
    let path = messages_path(s, channel, ms, "/append");
    let body = body.to_string().into_bytes();
    let target = signed_target(&s.app, "POST", &path, &[], Some(&body), now());
    let r = conn.request("POST", &target, &[("Content-Type", "application/json")], Some(&body)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

fn latest(s: &Server, channel: &str, ms: &str) -> Value {
    let r = s.api("GET", &messages_path(s, channel, ms, ""), &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["item"].clone()
}

/// Reads append frames until the reduced text (from `text` at serial `at`) is `expected`;
/// checks that serials only grow and returns how many frames it took.
fn reduce_until(c: &mut Client, text: &mut String, at: &mut u64, expected: &str) -> usize {
    let mut frames = 0;
    while text.len() < expected.len() {
        let f = next_frame(c, "sockudo:message.append");
        let serial = f["serial"].as_u64().unwrap();
        assert!(serial > *at, "serials only grow: {serial} after {at}");
        *at = serial;
        text.push_str(f["data"].as_str().unwrap());
        frames += 1;
    }
    assert_eq!(text, expected);
    frames
}

#[test]
fn appends_on_ai_channels_leave_in_fewer_frames() {
    let s = server();
    let mut delta = v2_connected(&s);
    v2_subscribe(&mut delta, AI);
    let mut full = s.connect_raw("/app/app-key?protocol=2&append_mode=full", None);
    full.recv_json(T);
    v2_subscribe(&mut full, AI);
    let (ms, _) = create(&s, AI, "ai-output", "");
    next_frame(&mut delta, "ai-output");
    next_frame(&mut full, "ai-output");
    let n = 50;
    let mut conn = HttpConn::open(s.port).unwrap();
    for i in 0..n {
        append(&mut conn, &s, AI, &ms, json!({"data": format!("<{i}>")}));
    }
    let expected: String = (0..n).map(|i| format!("<{i}>")).collect();
    let (mut text, mut at) = (String::new(), 1);
    let frames = reduce_until(&mut delta, &mut text, &mut at, &expected);
    assert!(frames < n, "{n} appends within a 500 ms window came as {frames} frames");
    // Full mode: the last frame carries the whole text, at the newest serial.
    let mut last = Value::Null;
    while last["data"].as_str().map_or(0, str::len) < expected.len() {
        last = next_frame(&mut full, "sockudo:message.append");
    }
    assert_eq!((last["data"].as_str(), last["serial"].as_u64()), (Some(expected.as_str()), Some(n as u64 + 1)));
    assert_eq!(at, n as u64 + 1, "the last frame has the newest serial");
    assert_eq!(latest(&s, AI, &ms)["data"].as_str(), Some(expected.as_str()));

    // A terminal append goes out at once, with its status; another channel is not rolled up.
    append(&mut conn, &s, AI, &ms, json!({"data": "!", "extras": {"ai": {"transport": {"status": "complete"}}}}));
    let f = next_frame(&mut delta, "sockudo:message.append");
    assert_eq!((f["data"].as_str(), f["extras"]["ai"]["transport"]["status"].as_str()), (Some("!"), Some("complete")));
    let mut plain = v2_connected(&s);
    v2_subscribe(&mut plain, "chat");
    let (other, _) = create(&s, "chat", "msg", "");
    next_frame(&mut plain, "msg");
    for i in 0..10 {
        append(&mut conn, &s, "chat", &other, json!({"data": i.to_string()}));
    }
    for i in 0..10 {
        assert_eq!(next_frame(&mut plain, "sockudo:message.append")["data"].as_str(), Some(i.to_string().as_str()));
    }
}

// A subscribe, a GET latest and a resume each send what a window holds before they answer, so
// the client's base never already contains a fragment of a later frame.
#[test]
fn positions_learnt_mid_window_get_no_fragment_twice() {
    let s = server();
    let mut a = v2_connected(&s);
    let stream = v2_subscribe(&mut a, AI)["stream_id"].as_str().unwrap().to_owned();
    let (ms, _) = create(&s, AI, "ai-output", "");
    next_frame(&mut a, "ai-output");
    let mut conn = HttpConn::open(s.port).unwrap();
    let mut expected = String::new();
    let mut send = |conn: &mut HttpConn, piece: &str| {
        append(conn, &s, AI, &ms, json!({ "data": piece }));
        expected.push_str(piece);
        expected.clone()
    };
    send(&mut conn, "a");
    send(&mut conn, "b"); // held
                          // A subscriber that joins now starts after b: GET latest is its base.
    let mut b = v2_connected(&s);
    v2_subscribe(&mut b, AI);
    let base = latest(&s, AI, &ms);
    let (mut b_text, mut b_at) = (base["data"].as_str().unwrap().to_owned(), base["serial"].as_u64().unwrap());
    assert_eq!(b_text, "ab");
    send(&mut conn, "c");
    let want = send(&mut conn, "d");
    // GET latest while c and d may be held: its text and serial cover them.
    let mid = latest(&s, AI, &ms);
    assert_eq!(mid["data"].as_str(), Some(want.as_str()));
    reduce_until(&mut b, &mut b_text, &mut b_at, &want);

    // A drops out while appends are held and resumes: the replay has each of them once.
    let (mut a_text, mut a_at) = (String::new(), 1);
    reduce_until(&mut a, &mut a_text, &mut a_at, &want);
    drop(a);
    send(&mut conn, "e");
    send(&mut conn, "f");
    let mut a = v2_connected(&s);
    a.send_json_together(&[
        json!({"event": "sockudo:subscribe", "data": {"channel": AI}}),
        json!({"event": "sockudo:resume", "data": {"channel_positions": { AI: {"stream_id": stream, "serial": a_at} }}}),
    ]);
    next_frame(&mut a, "sockudo_internal:subscription_succeeded");
    let want = send(&mut conn, "g");
    let mut seen = 0;
    while a_text.len() < want.len() {
        let f = a.recv_json(T);
        if f["event"] == "sockudo:resume_success" {
            assert!(data_json(&f)["failed"].as_array().is_none_or(|x| x.is_empty()), "{f}");
            continue;
        }
        assert_eq!(f["event"], "sockudo:message.append", "{f}");
        let serial = f["serial"].as_u64().unwrap();
        assert!(serial > a_at, "{f}");
        a_at = serial;
        a_text.push_str(f["data"].as_str().unwrap());
        seen += 1;
    }
    assert_eq!(a_text, want, "after {seen} frames");
    reduce_until(&mut b, &mut b_text, &mut b_at, &want);
}
