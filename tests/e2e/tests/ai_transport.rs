//! The AI Transport conventions (`docs/protocol/v2.md#ai-transport`): `ai-*` events and
//! `extras.ai` only on AI channels, the registry checks with their codes over HTTP and on the
//! socket, the identity rules and stamps of client AI events, terminal statuses, and the
//! limits (accumulated bytes, appends per message, open streams per channel).

use e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

/// AI channels are `ai-…` (public: no signatures needed to subscribe); small limits; no rollup,
/// so every append is a frame of its own.
fn server() -> Server {
    let top = "[ai_transport]\nmax_appends_per_message = 3\nmax_accumulated_message_bytes = 64\n\
               max_open_streaming_messages_per_channel = 2\n[[ai_transport.channels]]\nprefix = \"ai-\"\n\
               [ai_transport.rollup]\ndefault_window_ms = 0\n";
    Server::start(Some(&config(top, &[AppConfig::dev()])))
}

fn streaming(status: &str) -> Value {
    json!({"ai": {"transport": {"status": status, "stream": "true", "stream-id": "text"}}})
}

/// Asserts an AI registry refusal: status, registry name and `ai_code`.
fn assert_ai(r: Response, status: u16, name: &str, ai_code: u64) -> Value {
    let j = r.assert_error(status, name);
    assert_eq!(j["ai_code"], ai_code, "{j}");
    j
}

fn mutate(s: &Server, channel: &str, serial: &str, action: &str, body: Value) -> Response {
    s.api("POST", &messages_path(s, channel, serial, &format!("/{action}")), &[], Some(&body))
}

fn append_ok(s: &Server, channel: &str, serial: &str, body: Value) {
    let r = mutate(s, channel, serial, "append", body);
    assert_eq!(r.status, 200, "{}", r.text());
}

fn stream_create(s: &Server, channel: &str) -> String {
    let body =
        json!({"name": "ai-output", "channel": channel, "data": "", "info": "", "extras": streaming("streaming")});
    let ack = s.publish_ok(body);
    ack["channels"][channel]["message_serial"].as_str().unwrap_or_else(|| panic!("{ack}")).to_owned()
}

// Registry checks of HTTP publishes (§13, seed test point 34); the app is trusted, so its
// `*-client-id` values are taken as given.
#[test]
fn http_publishes_follow_the_registry() {
    let s = server();
    let publish = |channel: &str, name: &str, extras: Value, message_id: Option<&str>| {
        let mut body = json!({"name": name, "channel": channel, "data": "x", "extras": extras});
        if let Some(m) = message_id {
            body["message_id"] = m.into();
        }
        s.publish(body)
    };
    let none = json!({});
    assert_ai(publish("chat", "ai-output", none.clone(), None), 403, "ai_event_not_permitted", 104003);
    assert_ai(publish("chat", "note", streaming("streaming"), None), 403, "ai_event_not_permitted", 104003);
    let r = s.publish(json!({"name": "ai-run-start", "channels": ["ai-a", "chat"], "data": "x"}));
    assert_ai(r, 403, "ai_event_not_permitted", 104003);
    assert_ai(publish("ai-a", "ai-output", streaming("done"), None), 400, "ai_invalid_transport_header", 104000);
    let unknown = json!({"ai": {"transport": {"colour": "red"}}});
    let j = assert_ai(publish("ai-a", "ai-output", unknown, None), 400, "ai_invalid_transport_header", 104000);
    assert!(j["error"].as_str().unwrap().contains("colour"), "{j}");
    let upper = json!({"ai": {"transport": {"Run-Id": "r"}}});
    assert_ai(publish("ai-a", "ai-output", upper, None), 400, "ai_invalid_transport_header", 104000);
    let not_strings = json!({"ai": {"transport": {"run-id": 7}}});
    assert_ai(publish("ai-a", "ai-output", not_strings, None), 400, "ai_invalid_transport_header", 104000);
    let long = json!({"ai": {"transport": {"model": "m".repeat(257)}}});
    assert_ai(publish("ai-a", "ai-output", long, None), 413, "ai_header_too_large", 104001);
    let many: serde_json::Map<String, Value> = (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
    let wide = json!({"ai": {"codec": many}});
    assert_ai(publish("ai-a", "ai-output", wide, None), 413, "ai_header_too_large", 104001);
    assert_ai(publish("ai-a", "ai-output", none.clone(), Some("")), 400, "ai_invalid_transport_header", 104000);
    let id65 = "i".repeat(65);
    assert_ai(publish("ai-a", "ai-output", none.clone(), Some(&id65)), 413, "ai_header_too_large", 104001);
    let big = s.publish(json!({"name": "ai-output", "channel": "ai-a", "data": "d".repeat(65)}));
    assert_ai(big, 413, "payload_too_large", 40009);

    // Accepted: the agent's events with the registry's keys, any client id (trusted), a
    // codec tier, and a 64-byte message_id; V2 subscribers see the extras as sent.
    let mut sub = v2_connected(&s);
    v2_subscribe(&mut sub, "ai-a");
    let extras = json!({"ai": {
        "transport": {"run-id": "r1", "invocation-id": "i1", "run-client-id": "someone", "role": "assistant"},
        "codec": {"providerMetadata": "p".repeat(4000)}
    }});
    let r = publish("ai-a", "ai-run-start", extras.clone(), Some(&"i".repeat(64)));
    assert_eq!(r.status, 200, "{}", r.text());
    let f = next_frame(&mut sub, "ai-run-start");
    assert_eq!(f["extras"]["ai"], extras["ai"], "{f}");
    // Outside AI channels, other events and other extras are untouched by these rules.
    s.publish_ok(json!({"name": "note", "channel": "chat", "data": "x", "extras": {"echo": true}}));
}

// Terminal statuses, the append and size limits, and mutations' own registry checks.
#[test]
fn streams_end_with_a_terminal_status_within_the_limits() {
    let s = server();
    let mut sub = v2_connected(&s);
    v2_subscribe(&mut sub, "ai-b");
    let ms = stream_create(&s, "ai-b");
    next_frame(&mut sub, "ai-output");
    let bad = json!({"data": "t", "extras": streaming("done")});
    assert_ai(mutate(&s, "ai-b", &ms, "append", bad), 400, "ai_invalid_transport_header", 104000);
    append_ok(&s, "ai-b", &ms, json!({"data": "one "}));
    append_ok(&s, "ai-b", &ms, json!({"data": "two "}));
    // The accumulated text may not pass max_accumulated_message_bytes (64).
    let r = mutate(&s, "ai-b", &ms, "append", json!({"data": "x".repeat(60)}));
    assert_ai(r, 413, "payload_too_large", 40009);
    // An empty append ends the stream when it carries a terminal status; its extras become
    // the message's, so GET latest shows the end.
    append_ok(&s, "ai-b", &ms, json!({"data": "", "extras": streaming("complete")}));
    let latest = s.api("GET", &messages_path(&s, "ai-b", &ms, ""), &[], None).json();
    assert_eq!(latest["item"]["data"], "one two ", "{latest}");
    assert_eq!(latest["item"]["extras"]["ai"]["transport"]["status"], "complete", "{latest}");
    let j = mutate(&s, "ai-b", &ms, "append", json!({"data": "late"})).assert_error(400, "invalid_input");
    assert!(j["error"].as_str().unwrap().contains("terminal"), "{j}");
    // Outside a terminal append, empty data is still refused.
    let ms2 = stream_create(&s, "ai-b");
    mutate(&s, "ai-b", &ms2, "append", json!({"data": ""})).assert_error(400, "invalid_input");
    // At most max_appends_per_message (3) appends.
    for t in ["a", "b", "c"] {
        append_ok(&s, "ai-b", &ms2, json!({"data": t}));
    }
    let j = assert_ai(mutate(&s, "ai-b", &ms2, "append", json!({"data": "d"})), 413, "payload_too_large", 40009);
    assert!(j["error"].as_str().unwrap().contains("appends"), "{j}");
    // The live frames: every accepted append once, in order, the terminal one with its status.
    let mut seen = Vec::new();
    for _ in 0..6 {
        let f = next_frame(&mut sub, if seen.len() == 3 { "ai-output" } else { "sockudo:message.append" });
        seen.push(f["data"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(seen, ["one ", "two ", "", "", "a", "b"], "live frames");
    // extras.ai in a mutation on another channel is refused like in a publish.
    let (plain, _) = create(&s, "chat", "m", "x");
    let r = mutate(&s, "chat", &plain, "update", json!({"extras": streaming("complete")}));
    assert_ai(r, 403, "ai_event_not_permitted", 104003);
}

// At most max_open_streaming_messages_per_channel (2) streams per channel; ending one (a
// terminal status or a delete) makes room, and another channel has its own count.
#[test]
fn open_streams_per_channel_are_limited() {
    let s = server();
    let first = stream_create(&s, "ai-c");
    let second = stream_create(&s, "ai-c");
    let body = json!({"name": "ai-output", "channel": "ai-c", "data": "", "extras": streaming("streaming")});
    let j = assert_ai(s.publish(body.clone()), 413, "payload_too_large", 40009);
    assert!(j["error"].as_str().unwrap().contains("open streaming"), "{j}");
    // A message that does not stream, and another channel, are not limited.
    s.publish_ok(json!({"name": "ai-output", "channel": "ai-c", "data": "done", "extras": streaming("complete")}));
    stream_create(&s, "ai-d");
    // A message that starts streaming by an update counts too.
    let (quiet, _) = create(&s, "ai-c", "ai-output", "");
    let r = mutate(&s, "ai-c", &quiet, "update", json!({"extras": streaming("streaming")}));
    assert_ai(r, 413, "payload_too_large", 40009);
    append_ok(&s, "ai-c", &first, json!({"data": "end", "extras": streaming("cancelled")}));
    let third = stream_create(&s, "ai-c");
    assert_ai(s.publish(body.clone()), 413, "payload_too_large", 40009);
    let r = mutate(&s, "ai-c", &second, "delete", json!({}));
    assert_eq!(r.status, 200, "{}", r.text());
    stream_create(&s, "ai-c");
    append_ok(&s, "ai-c", &third, json!({"data": "more"}));
    // An update that clears the extras (status and all) ends the stream too.
    assert_ai(s.publish(body.clone()), 413, "payload_too_large", 40009);
    let r = mutate(&s, "ai-c", &third, "update", json!({"clear_fields": ["extras"]}));
    assert_eq!(r.status, 200, "{}", r.text());
    stream_create(&s, "ai-c");
}

// A stream left open (its agent gone) stops counting after rollup.orphan_ttl_ms.
#[test]
fn orphaned_streams_stop_counting() {
    let top =
        "[ai_transport]\nmax_open_streaming_messages_per_channel = 1\n[[ai_transport.channels]]\nprefix = \"ai-\"\n\
               [ai_transport.rollup]\norphan_ttl_ms = 3000\n";
    let s = Server::start(Some(&config(top, &[AppConfig::dev()])));
    stream_create(&s, "ai-e");
    let body = json!({"name": "ai-output", "channel": "ai-e", "data": "", "extras": streaming("streaming")});
    assert_ai(s.publish(body), 413, "payload_too_large", 40009);
    std::thread::sleep(Duration::from_millis(3200));
    stream_create(&s, "ai-e");
}

// With versioned messages off, and for a socket-bound actor without the grant, a mutation on
// an AI channel is the registry's 93002.
#[test]
fn mutations_not_permitted_on_ai_channels() {
    let s = server();
    let (ms, _) = create(&s, "ai-f", "ai-output", "x");
    let bare = signed_in_v2(&s, "carol", json!({"subscribe": ["*"]}));
    let r = mutate(&s, "ai-f", &ms, "append", json!({"data": "+", "socket_id": bare.socket_id}));
    let j = assert_ai(r, 403, "mutable_not_permitted", 93002);
    assert_eq!(j["error"], "mutations not permitted on this channel");
    // Elsewhere the same refusal stays the 401 of actor binding.
    let (plain, _) = create(&s, "chat", "m", "x");
    mutate(&s, "chat", &plain, "append", json!({"data": "+", "socket_id": bare.socket_id}))
        .assert_error(401, "auth_failed");

    let top = "[[ai_transport.channels]]\nprefix = \"ai-\"\n";
    let off =
        Server::start_with_env(Some(&config(top, &[AppConfig::dev()])), &[("VERSIONED_MESSAGES_ENABLED", "false")]);
    let r = mutate(&off, "ai-f", "1@x", "append", json!({"data": "+"}));
    assert_ai(r, 403, "mutable_not_permitted", 93002);
    mutate(&off, "chat", "1@x", "append", json!({"data": "+"})).assert_error(422, "feature_disabled");
}

fn signed_in_on(s: &Server, user: &str, channel: &str) -> Client {
    let mut c = signed_in_v2(s, user, json!({"subscribe": ["*"], "publish": ["*"]}));
    v2_subscribe(&mut c, channel);
    c
}

// Client AI events (§13): ai-input and ai-cancel from a signed-in V2 socket subscribed to an
// AI channel, stamped with who sent them; everything else refused with 4000 and the registry
// code in the message, and the socket keeps working.
#[test]
fn client_ai_events_are_checked_and_stamped() {
    let s = server();
    let mut alice = signed_in_on(&s, "alice", "ai-g");
    let mut watcher = v2_connected(&s);
    v2_subscribe(&mut watcher, "ai-g");
    let mut v1 = s.connect();
    v1.send_subscribe("ai-g", None, None);
    v1.expect_subscribed("ai-g");

    let input = json!({"event": "ai-input", "channel": "ai-g", "data": {"text": "hi"},
        "extras": {"ai": {"transport": {"run-id": "r1", "role": "user"}}}});
    alice.send_json(&input);
    let f = next_frame(&mut watcher, "ai-input");
    let t = &f["extras"]["ai"]["transport"];
    assert_eq!((t["input-client-id"].as_str(), t["run-id"].as_str()), (Some("alice"), Some("r1")), "{f}");
    assert_eq!(f["data"]["text"], "hi", "client data is forwarded as sent");
    let plain = v1.expect_event("ai-input");
    assert!(plain.get("extras").is_none(), "V1 sockets get no extras: {plain}");
    // The sender gets its own event back (V2 echo), with the stamp.
    assert_eq!(next_frame(&mut alice, "ai-input")["extras"]["ai"]["transport"]["input-client-id"], "alice");
    alice.send_json(&json!({"event": "ai-cancel", "channel": "ai-g", "data": {}}));
    let f = next_frame(&mut watcher, "ai-cancel");
    assert_eq!(f["extras"]["ai"]["transport"]["run-client-id"], "alice", "{f}");
    next_frame(&mut alice, "ai-cancel");
    v1.expect_event("ai-cancel");
    // `extras.echo` decides for one AI event: false keeps it from its sender, who then gets
    // the next one (echo true) as its next frame.
    for (n, echo) in [(2, false), (3, true)] {
        alice.send_json(&json!({"event": "ai-input", "channel": "ai-g", "data": {"n": n}, "extras": {"echo": echo}}));
        assert_eq!(next_frame(&mut watcher, "ai-input")["data"]["n"], n);
        v1.expect_event("ai-input");
    }
    assert_eq!(next_frame(&mut alice, "ai-input")["data"]["n"], 3);

    let refused = |c: &mut Client, frame: Value, code: &str| {
        c.send_json(&frame);
        let m = c.expect_v2_error(4000);
        assert!(m.contains(code), "{code} expected in {m:?}");
    };
    let spoof = json!({"event": "ai-input", "channel": "ai-g", "data": {},
        "extras": {"ai": {"transport": {"input-client-id": "mallory"}}}});
    refused(&mut alice, spoof, "104002");
    let bad = json!({"event": "ai-input", "channel": "ai-g", "data": {}, "extras": {"ai": {"transport": {"status": "done"}}}});
    refused(&mut alice, bad, "104000");
    refused(&mut alice, json!({"event": "ai-output", "channel": "ai-g", "data": {}}), "104003");
    let mut elsewhere = signed_in_on(&s, "alice", "chat-x");
    refused(&mut elsewhere, json!({"event": "ai-input", "channel": "chat-x", "data": {}}), "104003");
    // Not signed in: an authentication error.
    let mut anonymous = v2_connected(&s);
    v2_subscribe(&mut anonymous, "ai-g");
    anonymous.send_json(&json!({"event": "ai-input", "channel": "ai-g", "data": {}}));
    assert!(anonymous.expect_v2_error(4009).contains("signed-in"));
    // A V1 socket may not send AI events at all.
    v1.send_json(&json!({"event": "ai-input", "channel": "ai-g", "data": {}}));
    assert!(v1.expect_error(4000).contains("104003"));
    // None of this reached the channel, and every socket still works.
    watcher.expect_no_frame(QUIET);
    v1.assert_alive();
    for c in [&mut alice, &mut anonymous, &mut elsewhere] {
        c.send_json(&json!({"event": "sockudo:ping", "data": {}}));
        next_frame(c, "sockudo:pong");
    }
}
