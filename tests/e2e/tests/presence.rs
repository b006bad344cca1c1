//! Presence channels: `docs/protocol/pusher.md#presence-channels`,
//! `docs/protocol/pusher.md#member-events`, `docs/protocol/pusher.md#validation-order`,
//! `docs/protocol/pusher.md#presence-limits` and `docs/protocol/pusher.md#unsubscribing`.

use e2e::*;
use serde_json::{json, Value};

const ROOM: &str = "presence-room";

fn sorted_ids(snapshot: &Value) -> Vec<String> {
    let mut ids: Vec<String> =
        snapshot["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

fn member(id: &str) -> Value {
    json!({"user_id": id, "user_info": {"name": format!("user {id}")}})
}

/// Expects `member_added` for `id` (with the `user_info` of [`member`]).
fn expect_added(c: &mut Client, id: &str) {
    let f = c.expect_channel_event("pusher_internal:member_added", ROOM);
    assert_eq!(data_json(&f), member(id), "{f}");
}

fn expect_removed(c: &mut Client, id: &str) {
    let f = c.expect_channel_event("pusher_internal:member_removed", ROOM);
    assert_eq!(data_json(&f), json!({"user_id": id}), "{f}");
}

// `docs/protocol/pusher.md#presence-channels`
#[test]
fn presence_subscribe_snapshot() {
    let s = Server::start(None);
    let mut c = s.connect();
    let snap = c.subscribe_presence(ROOM, &json!({"user_id": "42", "user_info": {"name": "Ada"}}));
    assert_eq!(snap, json!({"ids": ["42"], "hash": {"42": {"name": "Ada"}}, "count": 1}));
    // Without user_info the hash entry is {}.
    let mut d = s.connect();
    let snap = d.subscribe_presence("presence-other", &json!({"user_id": "1"}));
    assert_eq!(snap, json!({"ids": ["1"], "hash": {"1": {}}, "count": 1}));
}

// `docs/protocol/pusher.md#member-events`
#[test]
fn member_added_to_others_only() {
    let s = Server::start(None);
    let mut a = s.connect();
    a.subscribe_presence(ROOM, &member("42"));
    let mut b = s.connect();
    let snap = b.subscribe_presence(ROOM, &member("7"));
    assert_eq!(snap["count"], 2);
    assert_eq!(sorted_ids(&snap), ["42", "7"]);
    assert_eq!(snap["hash"], json!({"42": {"name": "user 42"}, "7": {"name": "user 7"}}));
    expect_added(&mut a, "7");
    // The joiner never gets its own member_added.
    b.expect_no_frame(QUIET);
    a.expect_no_frame(QUIET);
}

// `docs/protocol/pusher.md#member-events`: one member per user id, however many sockets.
#[test]
fn same_user_on_two_sockets() {
    let s = Server::start(None);
    let mut a1 = s.connect();
    a1.subscribe_presence(ROOM, &member("42"));
    let mut a2 = s.connect();
    let snap = a2.subscribe_presence(ROOM, &member("42"));
    assert_eq!(snap["count"], 1);
    assert_eq!(sorted_ids(&snap), ["42"]);
    a1.expect_no_frame(QUIET);

    let mut obs = s.connect();
    let snap = obs.subscribe_presence(ROOM, &member("1"));
    assert_eq!(snap["count"], 2);
    assert_eq!(sorted_ids(&snap), ["1", "42"]);
    expect_added(&mut a1, "1");
    expect_added(&mut a2, "1");

    a1.close();
    obs.expect_no_frame(QUIET);
    a2.close();
    expect_removed(&mut obs, "42");
    obs.expect_no_frame(QUIET);
}

// `docs/protocol/pusher.md#validation-order` (unlike the reference): a numeric user_id is accepted and
// stringified.
#[test]
fn numeric_user_id_is_stringified() {
    let s = Server::start(None);
    let mut a = s.connect();
    a.subscribe_presence(ROOM, &member("1"));
    let mut b = s.connect();
    let snap = b.subscribe_presence(ROOM, &json!({"user_id": 42, "user_info": {"name": "user 42"}}));
    assert_eq!(sorted_ids(&snap), ["1", "42"]);
    assert_eq!(snap["hash"]["42"], json!({"name": "user 42"}));
    expect_added(&mut a, "42");
    b.close();
    expect_removed(&mut a, "42");
}

// `docs/protocol/pusher.md#validation-order`: bad channel_data or signatures are refused (the
// reference crashes on object data without channel_data).
#[test]
fn bad_channel_data() {
    let s = Server::start(None);
    let mut c = s.connect();
    // Object data without channel_data (a signature of the private form).
    let auth = private_auth(&c.app, &c.socket_id, ROOM);
    c.send_subscribe(ROOM, Some(&auth), None);
    assert_eq!(c.expect_error(4000), "Invalid message format: Missing channel_data for presence channel");
    // channel_data that is not JSON.
    let cd = "{not json";
    c.send_subscribe(ROOM, Some(&presence_auth(&c.app, &c.socket_id, ROOM, cd)), Some(cd));
    let msg = c.expect_error(4000);
    assert!(msg.starts_with("Invalid message format:"), "{msg}");
    // channel_data without user_id.
    let cd = r#"{"user_info":{"name":"x"}}"#;
    c.send_subscribe(ROOM, Some(&presence_auth(&c.app, &c.socket_id, ROOM, cd)), Some(cd));
    assert_eq!(c.expect_error(4300), "Channel error: Missing user_id in channel_data");
    // Bad signature.
    c.send_subscribe(ROOM, Some("app-key:0000"), Some(r#"{"user_id":"1"}"#));
    assert_eq!(c.expect_error(4009), "Authentication error: Channel requires authentication");
    // Signature over different channel_data than was sent.
    let auth = presence_auth(&c.app, &c.socket_id, ROOM, r#"{"user_id":"1"}"#);
    c.send_subscribe(ROOM, Some(&auth), Some(r#"{"user_id":"2"}"#));
    assert_eq!(c.expect_error(4009), "Authentication error: Channel requires authentication");
    c.assert_alive();
    // None of these joined.
    let mut d = s.connect();
    assert_eq!(sorted_ids(&d.subscribe_presence(ROOM, &member("9"))), ["9"]);
}

// `docs/protocol/pusher.md#presence-limits`
#[test]
fn member_limit() {
    let s = Server::start(Some(&config("", &[AppConfig::dev().set("max_presence_members_per_channel", "1")])));
    let mut a = s.connect();
    a.subscribe_presence(ROOM, &member("1"));
    let mut b = s.connect();
    b.send_presence(ROOM, &member("2"));
    assert_eq!(b.expect_error(4100), "Over capacity");
    b.assert_alive();
    a.expect_no_frame(QUIET);
    // Another channel is not affected.
    b.subscribe_presence("presence-other", &member("2"));
}

// `docs/protocol/pusher.md#presence-limits`: 100 members per channel by default.
#[test]
fn default_member_limit_is_100() {
    let s = Server::start(None);
    let mut clients: Vec<Client> = Vec::new();
    for i in 0..100 {
        let mut c = s.connect();
        let snap = c.subscribe_presence(ROOM, &json!({"user_id": i.to_string()}));
        assert_eq!(snap["count"], i + 1);
        clients.push(c);
    }
    let mut extra = s.connect();
    extra.send_presence(ROOM, &json!({"user_id": "100"}));
    assert_eq!(extra.expect_error(4100), "Over capacity");
}

// `docs/protocol/pusher.md#presence-limits`: floor(bytes / 1024) > limit fails.
#[test]
fn member_size_limit() {
    let s = Server::start(Some(&config("", &[AppConfig::dev().set("max_presence_member_size_in_kb", "1")])));
    let mut c = s.connect();
    c.send_presence(ROOM, &json!({"user_id": "1", "user_info": {"bio": "x".repeat(3000)}}));
    let msg = c.expect_error(4300);
    assert!(msg.starts_with("Channel error: Presence member data size"), "{msg}");
    assert!(msg.contains("exceeds limit (1KB)"), "{msg}");
    c.subscribe_presence(ROOM, &json!({"user_id": "1", "user_info": {"bio": "x".repeat(1900)}}));
}

// `docs/protocol/pusher.md#presence-limits`: 2 KB user_info by default.
#[test]
fn default_member_size_limit_is_2kb() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.send_presence(ROOM, &json!({"user_id": "1", "user_info": {"bio": "x".repeat(5000)}}));
    let msg = c.expect_error(4300);
    assert!(msg.contains("exceeds limit (2KB)"), "{msg}");
    c.subscribe_presence(ROOM, &json!({"user_id": "1", "user_info": {"bio": "x".repeat(1900)}}));
}

// `docs/protocol/pusher.md#unsubscribing`: unsubscribe and disconnect both remove the member at once.
#[test]
fn member_removed_on_unsubscribe_close_and_drop() {
    let s = Server::start(None);
    let mut obs = s.connect();
    obs.subscribe_presence(ROOM, &member("0"));
    let mut joined = Vec::new();
    for id in ["1", "2", "3"] {
        let mut c = s.connect();
        c.subscribe_presence(ROOM, &member(id));
        expect_added(&mut obs, id);
        joined.push(c);
    }
    let dropped = joined.pop().unwrap();
    let closed = joined.pop().unwrap();
    let mut unsubscribed = joined.pop().unwrap();
    expect_added(&mut unsubscribed, "2");
    expect_added(&mut unsubscribed, "3");

    unsubscribed.unsubscribe(ROOM);
    expect_removed(&mut obs, "1");
    unsubscribed.expect_no_frame(QUIET);
    closed.close();
    expect_removed(&mut obs, "2");
    drop(dropped); // TCP gone without a close frame
    expect_removed(&mut obs, "3");

    let mut late = s.connect();
    assert_eq!(sorted_ids(&late.subscribe_presence(ROOM, &member("4"))), ["0", "4"]);
}

// `docs/protocol/pusher.md#re-subscribing` (unlike the reference): re-subscribing to a presence
// channel replies with the current snapshot.
#[test]
fn presence_resubscribe_replies_with_snapshot() {
    let s = Server::start(None);
    let mut a = s.connect();
    a.subscribe_presence(ROOM, &member("1"));
    let mut b = s.connect();
    b.subscribe_presence(ROOM, &member("2"));
    expect_added(&mut a, "2");
    let snap = a.subscribe_presence(ROOM, &member("1"));
    assert_eq!(snap["count"], 2);
    assert_eq!(sorted_ids(&snap), ["1", "2"]);
    // Nobody sees the re-subscribe as a new member.
    b.expect_no_frame(QUIET);
}
