//! Presence channels: `docs/protocol/pusher.md#presence-channels`,
//! `docs/protocol/pusher.md#member-events`, `docs/protocol/pusher.md#validation-order`,
//! `docs/protocol/pusher.md#presence-limits`, `docs/protocol/pusher.md#unsubscribing` and
//! `docs/protocol/v2.md#presence-update`.

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

/// `sockudo:presence_update` in the documented shape.
fn update(c: &mut Client, data: Value) {
    c.send_json(&json!({"event": "sockudo:presence_update", "data": {"channel": ROOM, "data": data}}));
}

fn expect_update(c: &mut Client, user_id: &str, info: Value) {
    let f = c.expect_channel_event("sockudo_internal:presence_update", ROOM);
    assert_eq!(data_json(&f), json!({"user_id": user_id, "user_info": info}), "{f}");
}

// `docs/protocol/v2.md#presence-update`: every V2 subscriber (the sender too) is told, V1 sockets
// are not; later snapshots carry the new info; both the documented and sockudo-python's shape.
#[test]
fn presence_update_reaches_v2_subscribers() {
    let s = Server::start(None);
    let mut a = v2_connected(&s);
    v2_subscribe_presence(&mut a, ROOM, &member("a"));
    let mut b = v2_connected(&s);
    v2_subscribe_presence(&mut b, ROOM, &member("b"));
    a.expect_channel_event("sockudo_internal:member_added", ROOM);
    let mut v1 = s.connect();
    v1.subscribe_presence(ROOM, &member("c"));
    a.expect_channel_event("sockudo_internal:member_added", ROOM);
    b.expect_channel_event("sockudo_internal:member_added", ROOM);

    update(&mut a, json!({"status": "thinking"}));
    expect_update(&mut a, "a", json!({"status": "thinking"}));
    expect_update(&mut b, "a", json!({"status": "thinking"}));
    // sockudo-python's PresenceChannel.update(): user_info, channel beside data.
    b.send_json(&json!({"event": "sockudo:presence_update", "data": {"user_info": {"away": true}}, "channel": ROOM}));
    expect_update(&mut a, "b", json!({"away": true}));
    expect_update(&mut b, "b", json!({"away": true}));
    // A JSON string is its JSON.
    update(&mut a, json!("{\"status\":\"typing\"}"));
    expect_update(&mut b, "a", json!({"status": "typing"}));
    expect_update(&mut a, "a", json!({"status": "typing"}));
    v1.expect_no_frame(QUIET);

    let mut late = s.connect();
    let snap = late.subscribe_presence(ROOM, &member("d"));
    assert_eq!(snap["count"], 4);
    assert_eq!(snap["hash"]["a"], json!({"status": "typing"}));
    assert_eq!(snap["hash"]["b"], json!({"away": true}));
    assert_eq!(snap["hash"]["c"], json!({"name": "user c"}));
    // Leaving and joining again starts from the info in the new channel_data.
    a.unsubscribe(ROOM);
    expect_removed(&mut late, "a");
    let mut again = v2_connected(&s);
    let data = v2_subscribe_presence(&mut again, ROOM, &member("a"));
    assert_eq!(data["presence"]["hash"]["a"], json!({"name": "user a"}));
}

// `docs/protocol/v2.md#presence-update`: what is refused, with 4000; the socket stays usable.
#[test]
fn presence_update_errors() {
    let s = Server::start(None);
    let mut a = v2_connected(&s);
    v2_subscribe_presence(&mut a, ROOM, &member("a"));
    let mut b = v2_connected(&s);
    v2_subscribe(&mut b, "public");

    // Over 1024 bytes serialised.
    update(&mut a, json!({"bio": "x".repeat(1100)}));
    assert!(a.expect_v2_error(4000).contains("1024"));
    // No data, no channel.
    a.send_json(&json!({"event": "sockudo:presence_update", "data": {"channel": ROOM}}));
    assert!(a.expect_v2_error(4000).contains("missing data"));
    a.send_json(&json!({"event": "sockudo:presence_update", "data": {"data": {}}}));
    assert!(a.expect_v2_error(4000).contains("missing channel"));
    // Not a member: not subscribed at all, or subscribed to a channel without members.
    update(&mut b, json!({}));
    assert!(b.expect_v2_error(4000).contains("not a member"));
    b.send_json(&json!({"event": "sockudo:presence_update", "data": {"channel": "public", "data": {}}}));
    assert!(b.expect_v2_error(4000).contains("not a member"));
    // V1 has no presence update.
    let mut v1 = s.connect();
    v1.subscribe_presence(ROOM, &member("c"));
    v1.send_json(&json!({"event": "sockudo:presence_update", "data": {"channel": ROOM, "data": {}}}));
    assert!(v1.expect_error(4000).contains("protocol=2"));

    // Nothing was applied, and the sockets still work.
    a.expect_channel_event("sockudo_internal:member_added", ROOM);
    a.expect_no_frame(QUIET);
    update(&mut a, json!({"ok": 1}));
    expect_update(&mut a, "a", json!({"ok": 1}));
    s.publish_ok(json!({"name": "e", "channel": "public", "data": "still here"}));
    b.expect_channel_event("e", "public");
}

// `docs/protocol/v2.md#presence-update`: each member may send
// `presence.update_rate_limit_per_member_per_second` updates per second per channel; more are
// refused with 4301 and not applied.
#[test]
fn presence_update_rate_limit() {
    let s =
        Server::start(Some(&config("[presence]\nupdate_rate_limit_per_member_per_second = 2\n", &[AppConfig::dev()])));
    let mut a = v2_connected(&s);
    v2_subscribe_presence(&mut a, ROOM, &member("a"));
    // Three updates in one burst: the window is a second, far longer than the burst.
    for n in 1..=3 {
        update(&mut a, json!({"n": n}));
    }
    expect_update(&mut a, "a", json!({"n": 1}));
    expect_update(&mut a, "a", json!({"n": 2}));
    assert!(a.expect_v2_error(4301).contains("rate limit"));
    let mut late = s.connect();
    assert_eq!(late.subscribe_presence(ROOM, &member("b"))["hash"]["a"], json!({"n": 2}));
}
