//! User-limited channels (`docs/protocol/v2.md#user-limited-channels`): `name#u1,u2` in a
//! namespace that allows it, subscribed only by V2 sockets whose user is in the list.

use e2e::*;
use serde_json::json;

fn server() -> Server {
    let mut cfg = config("", &[AppConfig::dev()]);
    cfg += "[[apps.channel_namespaces]]\nname = \"dm\"\nallow_user_limited_channels = true\n";
    cfg += "[[apps.channel_namespaces]]\nname = \"chat\"\n";
    Server::start(Some(&cfg))
}

fn v2_error(c: &mut Client, code: u64) -> String {
    let f = c.expect_event("sockudo:error");
    assert_eq!(f["data"]["code"], code, "{f}");
    f["data"]["message"].as_str().unwrap().to_owned()
}

#[test]
fn only_listed_v2_users_subscribe() {
    let s = server();
    let mut u1 = signed_in_v2(&s, "u1", json!({}));
    v2_subscribe(&mut u1, "dm:a#u1,u2");
    let mut u3 = signed_in_v2(&s, "u3", json!({}));
    u3.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "dm:a#u1,u2"}}));
    assert_eq!(
        v2_error(&mut u3, 4009),
        "Authentication error: User 'u3' is not allowed to access channel 'dm:a#u1,u2'"
    );
    let mut anonymous = v2_connected(&s);
    anonymous.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "dm:a#u1,u2"}}));
    assert_eq!(
        v2_error(&mut anonymous, 4009),
        "Authentication error: User-limited channels require an authenticated V2 user"
    );
    u3.send_json(&json!({"event": "sockudo:ping"}));
    u3.expect_event("sockudo:pong");

    // HTTP publishes reach the listed subscribers.
    s.publish_ok(json!({"name": "note", "channel": "dm:a#u1,u2", "data": "hi"}));
    let f = u1.expect_channel_event("note", "dm:a#u1,u2");
    assert_eq!(f["data"], "hi");

    // Private and presence forms: the signature covers the whole name.
    let auth = private_auth(&u1.app, &u1.socket_id, "private-dm:b#u1");
    u1.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "private-dm:b#u1", "auth": auth}}));
    u1.expect_channel_event("sockudo_internal:subscription_succeeded", "private-dm:b#u1");
    let base_only = private_auth(&u1.app, &u1.socket_id, "private-dm:b");
    u1.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "private-dm:c#u1", "auth": base_only}}));
    assert!(v2_error(&mut u1, 4009).starts_with("Authentication error"));
    let presence = v2_subscribe_presence(&mut u1, "presence-dm:room#u1,u2", &json!({"user_id": "u1"}));
    assert_eq!(presence["presence"]["count"], 1, "{presence}");

    // V1 sockets cannot use them at all.
    let mut v1 = s.connect();
    v1.send_subscribe("dm:a#u1", None, None);
    assert_eq!(v1.expect_error(4300), "Channel error: User-limited channels are only supported on protocol V2");
}

#[test]
fn names_and_namespaces() {
    let s = server();
    let mut c = signed_in_v2(&s, "u1", json!({}));
    for (name, why) in [
        ("chat:a#u1", "Channel 'chat:a#u1' uses user-limited syntax but the namespace does not allow it"),
        ("room#u1", "Channel 'room#u1' uses user-limited syntax but the namespace does not allow it"),
        ("dm:a#", "Channel 'dm:a#' has an empty user limit segment"),
        ("dm:a#u1,,u2", "Channel 'dm:a#u1,,u2' contains an empty user id in its user limit segment"),
        ("dm:a#u1#u2", "Channel 'dm:a#u1#u2' contains multiple user limit separators"),
        ("dm:a#u1;x", "Channel 'dm:a#u1;x' contains an invalid user id in its user limit segment"),
    ] {
        c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": name}}));
        assert_eq!(v2_error(&mut c, 4300), format!("Channel error: {why}"), "{name}");
        let r = s.publish(json!({"name": "e", "channel": name, "data": "x"}));
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert!(r.text().contains(why), "{name}: {}", r.text());
    }
    // Ids may hold `.`, `@`, `=`, `-`, `_`.
    v2_subscribe(&mut c, "dm:x#u.2,u1");
}
