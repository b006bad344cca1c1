//! Client events: `docs/protocol/pusher.md#client-events`,
//! `docs/protocol/pusher.md#client-event-checks` and
//! `docs/protocol/pusher.md#client-event-rate-limit`.

use e2e::*;
use serde_json::json;

const CHAT: &str = "private-chat";

/// Two sockets subscribed to `channel` (private).
fn pair(s: &Server, channel: &str) -> (Client, Client) {
    let mut a = s.connect();
    let mut b = s.connect();
    a.subscribe_private(channel);
    b.subscribe_private(channel);
    (a, b)
}

// `docs/protocol/pusher.md#client-events`
#[test]
fn client_event_reaches_others_not_sender() {
    let s = Server::start(None);
    let (mut a, mut b) = pair(&s, CHAT);
    let mut c = s.connect();
    c.subscribe_private(CHAT);
    a.client_event("client-typing", CHAT, json!({"typing": true}));
    let expected = json!({"event": "client-typing", "channel": CHAT, "data": {"typing": true}});
    assert_eq!(b.recv_json(T), expected);
    assert_eq!(c.recv_json(T), expected);
    a.expect_no_frame(QUIET);
    // String data stays a string.
    b.client_event("client-msg", CHAT, json!("hello"));
    assert_eq!(a.recv_json(T), json!({"event": "client-msg", "channel": CHAT, "data": "hello"}));
}

// Encrypted channels are private for client events (`docs/protocol/pusher.md#client-event-checks`),
// and so are private-cache ones, unlike in the reference (`docs/protocol/pusher.md#channel-types`).
#[test]
fn client_events_on_encrypted_and_private_cache() {
    let s = Server::start(None);
    for channel in ["private-encrypted-x", "private-cache-x"] {
        let mut a = s.connect();
        let mut b = s.connect();
        a.subscribe_private(channel);
        b.subscribe_private(channel);
        if channel.contains("cache-") {
            a.expect_event("pusher:cache_miss");
            b.expect_event("pusher:cache_miss");
        }
        a.client_event("client-x", channel, json!("d"));
        assert_eq!(b.recv_json(T), json!({"event": "client-x", "channel": channel, "data": "d"}));
    }
}

// `docs/protocol/pusher.md#client-events` (unlike the reference): client events on presence
// channels carry the sender's user_id.
#[test]
fn presence_client_event_carries_user_id() {
    let s = Server::start(None);
    let mut a = s.connect();
    let mut b = s.connect();
    a.subscribe_presence("presence-room", &json!({"user_id": "42"}));
    b.subscribe_presence("presence-room", &json!({"user_id": "7"}));
    a.expect_event("pusher_internal:member_added");
    a.client_event("client-hi", "presence-room", json!({"x": 1}));
    assert_eq!(
        b.recv_json(T),
        json!({"event": "client-hi", "channel": "presence-room", "data": {"x": 1}, "user_id": "42"})
    );
    // Also for the cache variant, which has presence semantics here.
    a.subscribe_presence("presence-cache-room", &json!({"user_id": "42"}));
    a.expect_event("pusher:cache_miss");
    b.subscribe_presence("presence-cache-room", &json!({"user_id": "7"}));
    b.expect_event("pusher:cache_miss");
    a.expect_event("pusher_internal:member_added");
    b.client_event("client-hi", "presence-cache-room", json!("y"));
    assert_eq!(
        a.recv_json(T),
        json!({"event": "client-hi", "channel": "presence-cache-room", "data": "y", "user_id": "7"})
    );
}

// `docs/protocol/pusher.md#client-event-checks`
#[test]
fn client_event_on_public_channel() {
    let s = Server::start(None);
    let mut a = s.connect();
    let mut b = s.connect();
    a.subscribe("orders");
    b.subscribe("orders");
    for channel in ["orders", "cache-orders"] {
        a.client_event("client-x", channel, json!({}));
        assert_eq!(
            a.expect_error(4301),
            "Client event error: Client events can only be sent to private or presence channels"
        );
    }
    b.expect_no_frame(QUIET);
    a.assert_alive();
}

// `docs/protocol/pusher.md#client-event-checks`
#[test]
fn client_event_without_subscription() {
    let s = Server::start(None);
    let (_a, mut b) = pair(&s, CHAT);
    let mut c = s.connect();
    c.client_event("client-x", CHAT, json!({}));
    let msg = c.expect_error(4301);
    assert!(msg.starts_with("Client event error: Socket"), "{msg}");
    assert!(msg.contains("is not subscribed to channel"), "{msg}");
    b.expect_no_frame(QUIET);
    c.assert_alive();
}

// `docs/protocol/pusher.md#client-event-checks`: channel required; name lengths.
#[test]
fn client_event_field_checks() {
    let s = Server::start(None);
    let (mut a, mut b) = pair(&s, CHAT);
    a.send_json(&json!({"event": "client-x", "data": {}}));
    assert_eq!(a.expect_error(4301), "Client event error: Channel required for client event");
    let long_event = format!("client-{}", "x".repeat(194)); // 201 bytes
    a.client_event(&long_event, CHAT, json!({}));
    assert_eq!(a.expect_error(4000), "Invalid event name: Event name exceeds maximum length of 200");
    let long_channel = format!("private-{}", "x".repeat(193));
    a.client_event("client-x", &long_channel, json!({}));
    assert_eq!(a.expect_error(4300), "Channel name invalid: Channel name exceeds maximum length of 200");
    b.expect_no_frame(QUIET);
    // 200 bytes is fine.
    let event = format!("client-{}", "x".repeat(193));
    a.client_event(&event, CHAT, json!({}));
    assert_eq!(b.expect_event(&event)["channel"], CHAT);
}

// `docs/protocol/pusher.md#client-event-checks`: max_event_payload_in_kb limits client-event data.
#[test]
fn client_event_payload_limit() {
    let s = Server::start(Some(&config("", &[AppConfig::dev().set("max_event_payload_in_kb", "1")])));
    let (mut a, mut b) = pair(&s, CHAT);
    a.client_event("client-big", CHAT, json!("x".repeat(2000)));
    let msg = a.expect_error(4301);
    assert!(msg.starts_with("Client event error: Event payload size"), "{msg}");
    assert!(msg.contains("exceeds limit (1KB)"), "{msg}");
    b.expect_no_frame(QUIET);
    a.client_event("client-small", CHAT, json!("x".repeat(900)));
    b.expect_event("client-small");
}

// `docs/protocol/pusher.md#client-event-checks`
#[test]
fn client_events_disabled() {
    let s = Server::start(Some(&config("", &[AppConfig::dev().set("enable_client_messages", "false")])));
    let (mut a, mut b) = pair(&s, CHAT);
    a.client_event("client-x", CHAT, json!({}));
    assert_eq!(a.expect_error(4301), "Client event error: Client events are not enabled for this app");
    b.expect_no_frame(QUIET);
    a.assert_alive();
}

/// Rate-limited app: `max` client events per `decay_seconds = 30` window (a long window, so a
/// burst cannot straddle two windows).
fn rate_limited(max: u32, terminate: bool) -> String {
    config(
        "",
        &[AppConfig::dev()
            .set("max_client_events_per_second", &max.to_string())
            .set("decay_seconds", "30")
            .set("terminate_on_limit", &terminate.to_string())],
    )
}

// `docs/protocol/pusher.md#client-event-rate-limit`: excess events are dropped with E(4301); the
// socket stays open.
#[test]
fn client_event_rate_limit() {
    let s = Server::start(Some(&rate_limited(2, false)));
    let (mut a, mut b) = pair(&s, CHAT);
    for i in 0..3 {
        a.client_event("client-n", CHAT, json!(i));
    }
    assert_eq!(a.expect_error(4301), "Client event rejected due to rate limit");
    assert_eq!(b.expect_event("client-n")["data"], 0);
    assert_eq!(b.expect_event("client-n")["data"], 1);
    b.expect_no_frame(QUIET);
    a.assert_alive();
    // Still inside the 30 s window: still refused.
    a.client_event("client-n", CHAT, json!(3));
    a.expect_error(4301);
    b.expect_no_frame(QUIET);
}

// `docs/protocol/pusher.md#client-event-rate-limit` with terminate_on_limit: E(4301) once, then
// close 4301.
#[test]
fn client_event_rate_limit_terminates() {
    let s = Server::start(Some(&rate_limited(2, true)));
    let (mut a, mut b) = pair(&s, CHAT);
    for i in 0..3 {
        a.client_event("client-n", CHAT, json!(i));
    }
    assert_eq!(a.expect_fatal(4301), "Connection closed due to client event rate limit");
    b.expect_event("client-n");
    b.expect_event("client-n");
    b.expect_no_frame(QUIET);
}

// `docs/protocol/pusher.md#client-event-rate-limit`: configured apps get 10 client events per
// second by default.
#[test]
fn configured_app_default_rate_limit() {
    let s = Server::start(Some(&config("", &[AppConfig::dev().unset("max_client_events_per_second")])));
    let (mut a, mut b) = pair(&s, CHAT);
    for i in 0..25 {
        a.client_event("client-n", CHAT, json!(i));
    }
    // A burst can straddle at most two 1 s windows: at most 20 pass, at least 5 are refused.
    let mut refused = 0;
    while let Some(Frame::Json(f)) = a.recv(QUIET) {
        assert_eq!(f["data"]["code"], 4301, "{f}");
        refused += 1;
    }
    let mut passed = 0;
    while let Some(Frame::Json(f)) = b.recv(QUIET) {
        assert_eq!(f["event"], "client-n", "{f}");
        passed += 1;
    }
    assert_eq!(passed + refused, 25);
    assert!(refused >= 5 && passed >= 10, "passed {passed}, refused {refused}");
}

// `docs/protocol/pusher.md#development-app`: the dev app allows 1000/s, so a burst of 100 is not
// throttled.
#[test]
fn dev_app_is_not_throttled() {
    let s = Server::start(None);
    let (mut a, mut b) = pair(&s, CHAT);
    for i in 0..100 {
        a.client_event("client-n", CHAT, json!(i));
    }
    for i in 0..100 {
        assert_eq!(b.expect_event("client-n")["data"], i);
    }
    a.expect_no_frame(QUIET);
}
