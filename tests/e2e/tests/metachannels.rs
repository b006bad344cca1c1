//! Metachannels (`docs/protocol/v2.md#metachannels`): `[meta]<channel>` on V2 tells its
//! subscribers each change of the channel's subscription count and presence members, counted
//! across every shard; private and presence channels' metachannels need a signature.

use e2e::*;
use serde_json::{json, Value};

/// The next frame: `sockudo_internal:<kind>` on `[meta]<channel>`, whose data object is returned.
fn meta(c: &mut Client, kind: &str, channel: &str) -> Value {
    let f = c.expect_channel_event(&format!("sockudo_internal:{kind}"), &format!("[meta]{channel}"));
    assert!(f["data"].is_object(), "object data: {f}");
    assert_eq!(f["data"]["channel"], channel, "{f}");
    f["data"].clone()
}

fn count(c: &mut Client, kind: &str, channel: &str) -> u64 {
    meta(c, kind, channel)["subscription_count"].as_u64().expect("a count")
}

#[test]
fn subscription_counts_across_dialects_and_shards() {
    let s = Server::start(None);
    let mut watcher = v2_connected(&s);
    v2_subscribe(&mut watcher, "[meta]room-1");
    let mut x = s.connect();
    x.subscribe("room-1");
    assert_eq!(count(&mut watcher, "channel_occupied", "room-1"), 1);
    assert_eq!(count(&mut watcher, "subscription_count", "room-1"), 1);
    let mut y = v2_connected(&s);
    v2_subscribe(&mut y, "room-1");
    assert_eq!(count(&mut watcher, "subscription_count", "room-1"), 2);
    y.send_json(&json!({"event": "sockudo:unsubscribe", "data": {"channel": "room-1"}}));
    assert_eq!(count(&mut watcher, "subscription_count", "room-1"), 1);
    // A disconnect counts like an unsubscribe.
    x.close();
    assert_eq!(count(&mut watcher, "channel_vacated", "room-1"), 0);
    v2_drained(&mut watcher);

    // Other channels, and the metachannel's own subscribers, are not reported.
    let mut other = v2_connected(&s);
    v2_subscribe(&mut other, "room-2");
    v2_subscribe(&mut other, "[meta]room-1");
    v2_drained(&mut watcher);

    // Not a channel of the app's: not listed, not publishable.
    let list = s.get("/channels", &[]).json();
    assert!(list["channels"].get("[meta]room-1").is_none(), "{list}");
    assert!(list["channels"].get("room-2").is_some(), "{list}");
    let r = s.publish(json!({"name": "e", "channel": "[meta]room-1", "data": "x"}));
    assert_eq!(r.status, 400, "{}", r.text());
}

#[test]
fn presence_members_and_updates() {
    let s = Server::start(None);
    let room = "presence-meta-room";
    let mut watcher = v2_connected(&s);
    // A presence channel's metachannel is signed like a private channel of its own name.
    watcher.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": format!("[meta]{room}")}}));
    assert!(watcher.expect_v2_error(4009).starts_with("Authentication error"));
    let wrong = private_auth(&watcher.app, &watcher.socket_id, room);
    watcher
        .send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": format!("[meta]{room}"), "auth": wrong}}));
    assert!(watcher.expect_v2_error(4009).starts_with("Authentication error"));
    let auth = private_auth(&watcher.app, &watcher.socket_id, &format!("[meta]{room}"));
    watcher
        .send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": format!("[meta]{room}"), "auth": auth}}));
    watcher.expect_channel_event("sockudo_internal:subscription_succeeded", &format!("[meta]{room}"));

    let mut u1 = v2_connected(&s);
    v2_subscribe_presence(&mut u1, room, &json!({"user_id": "u1", "user_info": {"n": 1}}));
    assert_eq!(meta(&mut watcher, "member_added", room)["user_id"], "u1");
    assert_eq!(count(&mut watcher, "channel_occupied", room), 1);
    assert_eq!(count(&mut watcher, "subscription_count", room), 1);
    // A second socket of the same user is a subscription, not a member.
    let mut u1b = v2_connected(&s);
    v2_subscribe_presence(&mut u1b, room, &json!({"user_id": "u1"}));
    assert_eq!(count(&mut watcher, "subscription_count", room), 2);
    u1.send_json(&json!({"event": "sockudo:presence_update", "data": {"channel": room, "data": {"away": true}}}));
    assert_eq!(meta(&mut watcher, "presence_update", room)["user_id"], "u1");
    u1.close();
    assert_eq!(count(&mut watcher, "subscription_count", room), 1);
    u1b.close();
    assert_eq!(meta(&mut watcher, "member_removed", room)["user_id"], "u1");
    assert_eq!(count(&mut watcher, "channel_vacated", room), 0);
    v2_drained(&mut watcher);
}

#[test]
fn metachannel_names_are_checked_as_the_channel() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    for name in ["[meta]orders.*", "[meta][meta]x", "[meta]bad$name"] {
        c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": name}}));
        c.expect_v2_error(4300);
    }
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "[meta]room", "rewind": {"count": 1}}}));
    assert!(c.expect_v2_error(4300).contains("has no messages to rewind"));
    // Client events need a private channel: a metachannel is none.
    v2_subscribe(&mut c, "[meta]room");
    c.client_event("client-x", "[meta]room", json!({}));
    c.expect_v2_error(4301);
    v2_drained(&mut c);
}
