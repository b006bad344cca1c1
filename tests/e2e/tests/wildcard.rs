//! Wildcard subscriptions (`docs/protocol/v2.md#wildcard-subscriptions`): `orders.*` on V2,
//! delivered with each matching channel's own name, once per socket however many of its
//! subscriptions match, on whichever shard owns the channel; refused on V1 and checked on V2.

use e2e::*;
use serde_json::json;
use std::collections::BTreeSet;

fn subscribe_pattern(c: &mut Client, pattern: &str, filter: Option<serde_json::Value>) {
    let mut data = json!({"channel": pattern});
    if let Some(f) = filter {
        data["filter"] = f;
    }
    c.send_json(&json!({"event": "sockudo:subscribe", "data": data}));
    let f = c.expect_channel_event("sockudo_internal:subscription_succeeded", pattern);
    assert_eq!(data_json(&f), json!({}), "a pattern has no stream position: {f}");
}

#[test]
fn refused_on_v1_and_checked_on_v2() {
    let s = Server::start(None);
    let mut v1 = s.connect();
    v1.send_subscribe("orders.*", None, None);
    assert_eq!(v1.expect_error(4300), "Channel error: Wildcard subscriptions are only supported on protocol V2");
    v1.send_subscribe("[meta]orders", None, None);
    assert_eq!(v1.expect_error(4300), "Channel error: Metachannel subscriptions are only supported on protocol V2");
    v1.assert_alive();

    let mut v2 = v2_connected(&s);
    for (pattern, why) in [
        ("orders.*.*", "must contain exactly one '*'"),
        ("dm:*#u1", "cannot use user-limited syntax"),
        ("orders;*", "contains invalid characters"),
        ("private-orders.*", "is only supported for public channels"),
        ("presence-*", "is only supported for public channels"),
    ] {
        v2.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": pattern}}));
        assert_eq!(v2.expect_v2_error(4300), format!("Channel error: Wildcard subscription '{pattern}' {why}"));
    }
    v2.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "orders.*", "rewind": {"count": 5}}}));
    assert!(v2.expect_v2_error(4300).contains("cannot rewind"));
    v2_drained(&mut v2);

    // A pattern is no channel to publish to or ask about.
    let r = s.publish(json!({"name": "e", "channel": "orders.*", "data": "x"}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("wildcard"), "{}", r.text());
}

#[test]
fn matching_public_channels_arrive_with_their_own_names() {
    let s = Server::start(None);
    let mut watcher = v2_connected(&s);
    subscribe_pattern(&mut watcher, "orders.*", None);
    subscribe_pattern(&mut watcher, "*.eu", None);
    // Enough channels that, with several shards, their owners differ.
    let mut expected = BTreeSet::new();
    for i in 0..16 {
        let channel = format!("orders.{i}");
        s.publish_ok(json!({"name": "placed", "channel": channel, "data": format!("{i}")}));
        expected.insert((channel, format!("{i}")));
    }
    s.publish_ok(json!({"name": "placed", "channel": "stock.eu", "data": "eu"}));
    expected.insert(("stock.eu".to_owned(), "eu".to_owned()));
    // Not matched: another name, a private channel whose name matches, a user-limited one.
    s.publish_ok(json!({"name": "placed", "channel": "other.1", "data": "no"}));
    s.publish_ok(json!({"name": "placed", "channel": "private-x.eu", "data": "no"}));
    let mut got = BTreeSet::new();
    for _ in 0..expected.len() {
        let f = watcher.expect_event("placed");
        assert!(f["serial"].is_u64() && f["stream_id"].is_string(), "the channel's own position: {f}");
        got.insert((f["channel"].as_str().unwrap().to_owned(), f["data"].as_str().unwrap().to_owned()));
    }
    assert_eq!(got, expected);
    v2_drained(&mut watcher);
}

#[test]
fn one_copy_per_socket_with_subscriptions_ored() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    v2_subscribe(&mut c, "orders.1");
    subscribe_pattern(&mut c, "orders.*", None);
    subscribe_pattern(&mut c, "*.1", None);
    v2_drained(&mut c);
    s.publish_ok(json!({"name": "once", "channel": "orders.1", "data": "x"}));
    let f = c.expect_channel_event("once", "orders.1");
    assert_eq!(f["data"], "x");
    v2_drained(&mut c);

    // An exact and a wildcard subscription with different filters: a message passing either
    // arrives, once.
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "prices.eu", "filter": {"events": ["a"]}}}));
    c.expect_channel_event("sockudo_internal:subscription_succeeded", "prices.eu");
    subscribe_pattern(&mut c, "prices.*", Some(json!({"events": ["b"]})));
    v2_drained(&mut c);
    for name in ["a", "b", "c", "a"] {
        s.publish_ok(json!({"name": name, "channel": "prices.eu", "data": name}));
    }
    for name in ["a", "b", "a"] {
        c.expect_channel_event(name, "prices.eu");
    }
    v2_drained(&mut c);

    // Subscribing to the pattern again replaces its filter.
    subscribe_pattern(&mut c, "prices.*", Some(json!({"events": ["c"]})));
    s.publish_ok(json!({"name": "c", "channel": "prices.us", "data": "c"}));
    s.publish_ok(json!({"name": "b", "channel": "prices.us", "data": "b"}));
    c.expect_channel_event("c", "prices.us");
    v2_drained(&mut c);
}

#[test]
fn unsubscribe_and_disconnect_end_delivery() {
    let s = Server::start(None);
    let mut a = v2_connected(&s);
    let mut b = v2_connected(&s);
    subscribe_pattern(&mut a, "news.*", None);
    subscribe_pattern(&mut b, "news.*", None);
    a.send_json(&json!({"event": "sockudo:unsubscribe", "data": {"channel": "news.*"}}));
    v2_drained(&mut a);
    s.publish_ok(json!({"name": "n", "channel": "news.1", "data": "1"}));
    b.expect_channel_event("n", "news.1");
    v2_drained(&mut a);
    b.close();
    // With nobody left on b's shard, publishing still reaches a after it subscribes again.
    subscribe_pattern(&mut a, "news.*", None);
    for i in 2..10 {
        s.publish_ok(json!({"name": "n", "channel": format!("news.{i}"), "data": "x"}));
    }
    let mut got = BTreeSet::new();
    for _ in 2..10 {
        got.insert(a.expect_event("n")["channel"].as_str().unwrap().to_owned());
    }
    assert_eq!(got, (2..10).map(|i| format!("news.{i}")).collect());
    v2_drained(&mut a);
}

#[test]
fn v1_and_v2_subscribers_of_the_concrete_channel_are_unaffected() {
    let s = Server::start(None);
    let mut v1 = s.connect();
    v1.subscribe("orders.7");
    let mut v2 = v2_connected(&s);
    subscribe_pattern(&mut v2, "orders.*", None);
    s.publish_ok(json!({"name": "e", "channel": "orders.7", "data": "d"}));
    assert_eq!(v1.expect_channel_event("e", "orders.7")["data"], "d");
    assert_eq!(v2.expect_channel_event("e", "orders.7")["data"], "d");
}
