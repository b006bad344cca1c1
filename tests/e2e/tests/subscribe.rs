//! Subscriptions (public, private, cache, names): `docs/protocol/pusher.md#subscribing`,
//! `docs/protocol/pusher.md#unsubscribing`, `docs/protocol/pusher.md#channel-types`,
//! `docs/protocol/pusher.md#channel-names` and `docs/protocol/pusher.md#cache-channels`. Presence
//! is in presence.rs.

use e2e::*;
use serde_json::json;

const BAD_SIG: &str = "Authentication error: Channel requires authentication";

// `docs/protocol/pusher.md#subscription-succeeded`
#[test]
fn public_subscribe() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.send_subscribe("orders", None, None);
    assert_eq!(
        c.recv_json(T),
        json!({"event": "pusher_internal:subscription_succeeded", "channel": "orders", "data": "{}"})
    );
    // `auth` is ignored on public channels.
    c.send_subscribe("audit", Some("garbage"), None);
    c.expect_subscribed("audit");
}

// `docs/protocol/pusher.md#subscribe-request`: `data` may be a JSON-encoded string.
#[test]
fn subscribe_data_as_string() {
    let s = Server::start(None);
    let mut c = s.connect();
    let channel = "private-str";
    let data = json!({"channel": channel, "auth": private_auth(&c.app, &c.socket_id, channel)}).to_string();
    c.send_json(&json!({"event": "pusher:subscribe", "data": data}));
    c.expect_subscribed(channel);
}

// `docs/protocol/pusher.md#re-subscribing`: re-subscribing a non-presence channel replies again.
#[test]
fn resubscribe_public_replies_again() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.subscribe("orders");
    c.subscribe("orders");
    // Still subscribed once: one delivery.
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "1"}));
    c.expect_channel_event("e", "orders");
    c.expect_no_frame(QUIET);
}

// `docs/protocol/pusher.md#private-channel-signature`
#[test]
fn private_subscribe_with_valid_signature() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.subscribe_private("private-foo");
    c.subscribe_private("private-encrypted-foo");
    s.publish_ok(json!({"name": "e", "channel": "private-foo", "data": "x"}));
    assert_eq!(c.recv_json(T), json!({"event": "e", "channel": "private-foo", "data": "x"}));
}

// `docs/protocol/pusher.md#validation-order`
#[test]
fn private_subscribe_with_wrong_signature() {
    let s = Server::start(None);
    let mut c = s.connect();
    let wrong = format!("app-key:{}", hmac_hex("app-secret", &format!("{}:private-other", c.socket_id)));
    c.send_subscribe("private-foo", Some(&wrong), None);
    assert_eq!(c.expect_error(4009), BAD_SIG);
    // No pusher:subscription_error, nothing else.
    c.expect_no_frame(QUIET);
    c.assert_alive();
    s.publish_ok(json!({"name": "e", "channel": "private-foo", "data": "x"}));
    c.expect_no_frame(QUIET);
}

// `docs/protocol/pusher.md#private-channel-signature`: a signature made for another socket is refused.
#[test]
fn private_signature_of_another_socket() {
    let s = Server::start(None);
    let other = s.connect();
    let mut c = s.connect();
    let auth = private_auth(&c.app, &other.socket_id, "private-foo");
    c.send_subscribe("private-foo", Some(&auth), None);
    assert_eq!(c.expect_error(4009), BAD_SIG);
}

// `docs/protocol/pusher.md#validation-order`
#[test]
fn private_subscribe_without_auth() {
    let s = Server::start(None);
    let mut c = s.connect();
    for channel in ["private-foo", "private-encrypted-foo", "presence-room"] {
        c.send_subscribe(channel, None, None);
        assert_eq!(c.expect_error(4009), "Authentication error: Authentication signature required for this channel");
    }
    c.assert_alive();
}

// `docs/protocol/pusher.md#authorization-signatures`: the key prefix is part of the compared string.
#[test]
fn private_auth_with_other_key_prefix() {
    let s = Server::start(None);
    let mut c = s.connect();
    let good = private_auth(&c.app, &c.socket_id, "private-foo");
    let hex = good.split_once(':').unwrap().1;
    c.send_subscribe("private-foo", Some(&format!("other-key:{hex}")), None);
    assert_eq!(c.expect_error(4009), BAD_SIG);
    c.send_subscribe("private-foo", Some(hex), None);
    c.expect_error(4009);
}

// `docs/protocol/pusher.md#validation-order`
#[test]
fn subscribe_without_channel() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.send_json(&json!({"event": "pusher:subscribe", "data": {}}));
    assert_eq!(c.expect_error(4000), "Invalid message format: Missing channel field");
    c.assert_alive();
}

// `docs/protocol/pusher.md#channel-names`
#[test]
fn invalid_channel_names() {
    let s = Server::start(None);
    let mut c = s.connect();
    for name in ["bad$chan", "with space", "caf\u{e9}", "semi/colon", "private-bad$"] {
        let auth = private_auth(&c.app, &c.socket_id, name);
        c.send_subscribe(name, Some(&auth), None);
        let msg = c.expect_error(4300);
        assert!(msg.starts_with("Channel error: Channel name contains invalid characters"), "{name}: {msg}");
    }
    // Length is checked first (201 chars, one of them invalid).
    for name in ["a".repeat(201), format!("{}$", "a".repeat(200))] {
        c.send_subscribe(&name, None, None);
        assert_eq!(c.expect_error(4300), "Channel error: Channel name too long. Max length is 200");
    }
    // The empty name is rejected (the reference accepts it).
    c.send_subscribe("", None, None);
    c.expect_error(4300);
    c.assert_alive();
    // 200 bytes is fine.
    c.subscribe(&"a".repeat(200));
}

// `docs/protocol/pusher.md#channel-names`: app max_channel_name_length
#[test]
fn app_channel_name_length_limit() {
    let s = Server::start(Some(&config("", &[AppConfig::dev().set("max_channel_name_length", "20")])));
    let mut c = s.connect();
    c.subscribe(&"a".repeat(20));
    c.send_subscribe(&"a".repeat(21), None, None);
    assert_eq!(c.expect_error(4300), "Channel error: Channel name too long. Max length is 20");
}

// `docs/protocol/pusher.md#channel-names`
#[test]
fn allowed_characters_and_namespaces() {
    let s = Server::start(None);
    let mut c = s.connect();
    for name in ["a,b", "a;b", "a=b", "a@b", "a.b", "A-Z_a-z_0-9-_=@,;."] {
        c.subscribe(name);
    }
    // The built-in development app takes any namespace, so examples work without a config.
    for name in ["market:btc", "orders:main", "chat:room-1"] {
        c.subscribe(name);
    }
    c.subscribe_presence("presence-room:incident-123", &serde_json::json!({"user_id": "u1"}));
    drop(s);

    // A configured app takes only the namespaces it declares (none: no `:` names at all).
    let s = Server::start(Some(&config("", &[AppConfig::dev()])));
    let mut c = s.connect();
    c.send_subscribe("chat:room-1", None, None);
    assert_eq!(c.expect_error(4300), "Channel error: Unknown channel namespace 'chat'");
    drop(s);

    let s = Server::start(Some(&config("", &[AppConfig::dev().namespace("chat")])));
    let mut c = s.connect();
    c.subscribe("chat:room-1");
    c.subscribe_private("private-chat:room-2"); // namespace is read after the type prefix
    c.send_subscribe("other:room-1", None, None);
    assert_eq!(c.expect_error(4300), "Channel error: Unknown channel namespace 'other'");
}

// `docs/protocol/pusher.md#validation-order`: metachannels and wildcards are V2 only.
#[test]
fn v2_only_channels_on_v1() {
    let s = Server::start(None);
    let mut c = s.connect();
    for name in ["[meta]orders", "orders.*"] {
        c.send_subscribe(name, None, None);
        c.expect_error(4300);
    }
    c.assert_alive();
}

// `docs/protocol/pusher.md#unsubscribing`
#[test]
fn unsubscribe() {
    let s = Server::start(None);
    let mut a = s.connect();
    let mut b = s.connect();
    a.subscribe("orders");
    b.subscribe("orders");
    a.unsubscribe("orders");
    a.expect_no_frame(QUIET);
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "1"}));
    b.expect_channel_event("e", "orders");
    a.expect_no_frame(QUIET);
    // Not subscribed / bare string data: no reply, no error.
    a.unsubscribe("never-subscribed");
    a.send_json(&json!({"event": "pusher:unsubscribe", "data": "orders"}));
    a.expect_no_frame(QUIET);
    a.assert_alive();
}

// `docs/protocol/pusher.md#cache-channels`
#[test]
fn cache_channel() {
    let s = Server::start(None);
    let mut a = s.connect();
    a.subscribe("cache-news");
    assert_eq!(a.recv_json(T), json!({"event": "pusher:cache_miss", "channel": "cache-news", "data": "{}"}));

    s.publish_ok(json!({"name": "update", "channel": "cache-news", "data": "x"}));
    assert_eq!(a.recv_json(T), json!({"event": "update", "channel": "cache-news", "data": "x"}));

    let mut b = s.connect();
    b.subscribe("cache-news");
    assert_eq!(b.recv_json(T), json!({"event": "update", "channel": "cache-news", "data": "x"}));

    // The last publish wins; batch publishes update the cache too.
    let r = s.batch(json!([{"name": "update2", "channel": "cache-news", "data": "y"}]));
    assert_eq!(r.status, 200, "{}", r.text());
    let mut c = s.connect();
    c.subscribe("cache-news");
    assert_eq!(c.recv_json(T), json!({"event": "update2", "channel": "cache-news", "data": "y"}));
}

// `docs/protocol/pusher.md#channel-types` (unlike the reference): only the four prefixes make a
// cache channel.
#[test]
fn cache_infix_is_not_a_cache_channel() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.subscribe("my-cache-x");
    c.expect_no_frame(QUIET);
}

// `docs/protocol/pusher.md#channel-types` (unlike the reference): private-cache signatures are
// verified.
#[test]
fn private_cache_verifies_signature() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.send_subscribe("private-cache-x", Some("app-key:garbage"), None);
    assert_eq!(c.expect_error(4009), BAD_SIG);
    c.send_subscribe("private-encrypted-cache-x", Some("app-key:garbage"), None);
    assert_eq!(c.expect_error(4009), BAD_SIG);
    c.subscribe_private("private-cache-x");
    assert_eq!(c.recv_json(T), json!({"event": "pusher:cache_miss", "channel": "private-cache-x", "data": "{}"}));
}

// `docs/protocol/pusher.md#channel-types` (unlike the reference): presence-cache has presence
// semantics with normal (object) data.
#[test]
fn presence_cache_has_presence_semantics() {
    let s = Server::start(None);
    let mut a = s.connect();
    let snap = a.subscribe_presence("presence-cache-x", &json!({"user_id": "42", "user_info": {"name": "Ada"}}));
    assert_eq!(snap, json!({"ids": ["42"], "hash": {"42": {"name": "Ada"}}, "count": 1}));
    assert_eq!(a.recv_json(T), json!({"event": "pusher:cache_miss", "channel": "presence-cache-x", "data": "{}"}));

    let mut b = s.connect();
    b.send_presence("presence-cache-x", &json!({"user_id": "7", "user_info": {"name": "Bob"}}));
    let added = a.expect_channel_event("pusher_internal:member_added", "presence-cache-x");
    assert_eq!(data_json(&added), json!({"user_id": "7", "user_info": {"name": "Bob"}}));
    assert_eq!(b.expect_subscribed("presence-cache-x")["presence"]["count"], 2);
    b.expect_event("pusher:cache_miss");

    // A bad signature is refused.
    let mut c = s.connect();
    c.send_subscribe("presence-cache-x", Some("app-key:garbage"), Some(r#"{"user_id":"9"}"#));
    assert_eq!(c.expect_error(4009), BAD_SIG);
}
