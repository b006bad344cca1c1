//! Subscription filters (`docs/protocol/v2.md#subscription-filters`): tags, event names and
//! expressions on live fan-out, grouped per filter, and on rewind and recovery alike; tags on
//! the wire only when switched on; invalid filters refused with what is wrong.

use e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

const CH: &str = "orders";

fn subscribe_filtered(c: &mut Client, channel: &str, filter: Value) -> Value {
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": channel, "filter": filter}}));
    c.expect_channel_event("sockudo_internal:subscription_succeeded", channel)
}

fn publish_tagged(s: &Server, event: &str, data: Value, tags: Value) {
    s.publish_ok(json!({"name": event, "channel": CH, "data": data.to_string(), "tags": tags}));
}

/// The `id` of each of the next `n` channel events.
fn ids(c: &mut Client, n: usize) -> Vec<u64> {
    (0..n)
        .map(|_| {
            let f = c.recv_json(T);
            assert_eq!(f["channel"], CH, "{f}");
            data_json(&f)["id"].as_u64().unwrap_or_else(|| panic!("no id in {f}"))
        })
        .collect()
}

// Every kind of filter on one channel, several sockets sharing a filter, sockets spread over
// the shards; each gets exactly the messages its filter passes, in order. V1 sockets are never
// filtered.
#[test]
fn live_fanout_follows_each_filter() {
    let s = Server::start(None);
    let filters = [
        ("eu", json!({"key": "r", "cmp": "eq", "val": "eu"})),
        ("not-eu", json!({"key": "r", "cmp": "neq", "val": "eu"})),
        ("n>10", json!({"key": "n", "cmp": "gt", "val": "10"})),
        ("order-in-eu-us", json!({"events": ["order"], "tags": {"key": "r", "cmp": "in", "vals": ["eu", "us"]}})),
        ("total>=100", json!({"expression": "data.total >= `100`"})),
        (
            "tags_filter alias",
            json!({"op": "or", "nodes": [{"key": "r", "cmp": "sw", "val": "e"}, {"key": "n", "cmp": "nex"}]}),
        ),
    ];
    let expected: [&[u64]; 6] = [&[1, 3], &[2, 4, 5], &[3], &[1, 2], &[1, 3], &[1, 3, 4]];
    // Three sockets per filter: they share one group per shard.
    let mut sockets = Vec::new();
    for (i, (name, f)) in filters.iter().enumerate() {
        for _ in 0..3 {
            let mut c = v2_connected(&s);
            if *name == "tags_filter alias" {
                c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": CH, "tags_filter": f}}));
                c.expect_channel_event("sockudo_internal:subscription_succeeded", CH);
            } else {
                subscribe_filtered(&mut c, CH, f.clone());
            }
            sockets.push((i, c));
        }
    }
    let mut plain = v2_connected(&s);
    v2_subscribe(&mut plain, CH);
    let mut v1 = s.connect();
    v1.send_json(&json!({"event": "pusher:subscribe", "data": {"channel": CH, "filter": filters[0].1}}));
    v1.expect_subscribed(CH);

    publish_tagged(&s, "order", json!({"id": 1, "total": 150}), json!({"r": "eu"}));
    publish_tagged(&s, "order", json!({"id": 2, "total": 50}), json!({"r": "us", "n": "5"}));
    publish_tagged(&s, "other", json!({"id": 3, "total": 100}), json!({"r": "eu", "n": 20}));
    publish_tagged(&s, "order", json!({"id": 4, "total": 1}), json!({}));
    publish_tagged(&s, "order", json!({"id": 5}), json!({"n": "abc"}));

    for (i, c) in sockets.iter_mut() {
        assert_eq!(ids(c, expected[*i].len()), expected[*i], "filter {}", filters[*i].0);
    }
    assert_eq!(ids(&mut plain, 5), [1, 2, 3, 4, 5]);
    assert_eq!(ids(&mut v1, 5), [1, 2, 3, 4, 5]);
    // Nothing more arrived for anyone (the first wait covers the rest).
    sockets[0].1.expect_no_frame(QUIET);
    for (_, c) in sockets.iter_mut().skip(1) {
        c.expect_no_frame(Duration::from_millis(50));
    }
    // Leaving one socket of a group leaves the others theirs.
    let (_, mut first) = sockets.remove(0);
    first.unsubscribe(CH);
    publish_tagged(&s, "order", json!({"id": 6}), json!({"r": "eu"}));
    assert_eq!(ids(&mut sockets[0].1, 1), [6]);
    assert_eq!(ids(&mut sockets[1].1, 1), [6]);
    first.expect_no_frame(Duration::from_millis(200));
}

// A bad filter is refused with the subscribe error (4000) naming what is wrong, and no
// subscription is made; the socket stays open. Bad publish tags are a 400.
#[test]
fn invalid_filters_and_tags_are_refused() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    let cases = [
        (json!({"op": "not", "nodes": []}), "exactly one"),
        (json!({"key": "r", "cmp": "like", "val": "x"}), "unknown cmp"),
        (json!({"key": "r", "cmp": "in", "vals": []}), "non-empty vals"),
        (json!({"events": []}), "must not be empty"),
        (json!({"expression": "data.["}), "invalid JMESPath"),
        (json!({"expression": {"language": "sql", "source": "x"}}), "not supported"),
        (json!("r=eu"), "object"),
    ];
    for (filter, why) in cases {
        c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": CH, "filter": filter}}));
        let message = c.expect_v2_error(4000);
        assert!(message.contains(why), "{filter}: {message}");
    }
    let deep = (0..17).fold(json!({"key": "a", "cmp": "ex"}), |n, _| json!({"op": "not", "nodes": [n]}));
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": CH, "filter": deep}}));
    assert!(c.expect_v2_error(4000).contains("deeper than 16"));
    c.send_json(&json!({"event": "sockudo:ping"}));
    assert_eq!(c.recv_json(T), json!({"event": "sockudo:pong"}));
    s.publish_ok(json!({"name": "e", "channel": CH, "data": "{}"}));
    c.expect_no_frame(Duration::from_millis(300));

    for (tags, why) in
        [(json!("eu"), "object"), (json!({"r": {"x": 1}}), "must be a string"), (json!({"": "x"}), "key")]
    {
        let r = s.publish(json!({"name": "e", "channel": CH, "data": "{}", "tags": tags}));
        r.assert_error(400, "invalid_input");
        assert!(r.text().contains(why), "{}", r.text());
    }
}

// Tags reach V2 frames only with `tag_filtering.enable_tags`; V1 frames never carry them.
// With `tag_filtering.enabled = false` tag filters are checked but let everything through.
#[test]
fn tags_on_the_wire_and_the_switches() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    v2_subscribe(&mut c, CH);
    publish_tagged(&s, "order", json!({"id": 1}), json!({"r": "eu"}));
    let f = c.recv_json(T);
    assert!(f.get("tags").is_none(), "{f}");
    drop(s);

    let cfg = "[tag_filtering]\nenable_tags = true\n";
    let s = Server::start(Some(&config(cfg, &[AppConfig::dev()])));
    let mut c = v2_connected(&s);
    v2_subscribe(&mut c, CH);
    let mut v1 = s.connect();
    v1.subscribe(CH);
    publish_tagged(&s, "order", json!({"id": 1}), json!({"r": "eu", "n": 2}));
    let f = c.recv_json(T);
    assert_eq!(f["tags"], json!({"n": "2", "r": "eu"}), "{f}");
    let f = v1.recv_json(T);
    assert!(f.get("tags").is_none(), "{f}");
    drop(s);

    let s = Server::start_with_env(None, &[("TAG_FILTERING_ENABLED", "false")]);
    let mut c = v2_connected(&s);
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": CH, "filter": {"op": "not", "nodes": []}}}));
    assert!(c.expect_v2_error(4000).contains("Invalid tags filter"));
    subscribe_filtered(&mut c, CH, json!({"key": "r", "cmp": "eq", "val": "eu"}));
    publish_tagged(&s, "order", json!({"id": 1}), json!({"r": "us"}));
    assert_eq!(ids(&mut c, 1), [1]);
}

// Subscribing again replaces the filter.
#[test]
fn subscribing_again_replaces_the_filter() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    subscribe_filtered(&mut c, CH, json!({"key": "r", "cmp": "eq", "val": "eu"}));
    subscribe_filtered(&mut c, CH, json!({"key": "r", "cmp": "eq", "val": "us"}));
    publish_tagged(&s, "order", json!({"id": 1}), json!({"r": "eu"}));
    publish_tagged(&s, "order", json!({"id": 2}), json!({"r": "us"}));
    assert_eq!(ids(&mut c, 1), [2]);
    v2_subscribe(&mut c, CH);
    publish_tagged(&s, "order", json!({"id": 3}), json!({"r": "eu"}));
    assert_eq!(ids(&mut c, 1), [3]);
}

// Rewind, hot recovery and cold recovery (after kill -9) send only what the filter passes,
// judged on each message as published (its event and tags), with versioned messages on.
#[test]
fn rewind_and_recovery_apply_the_filter() {
    let mut s = Server::start(None);
    let eu = json!({"events": ["order"], "tags": {"key": "r", "cmp": "eq", "val": "eu"}});
    let mut n = 0;
    let mut publish_round = |s: &Server| {
        for (event, r) in [("order", "eu"), ("order", "us"), ("other", "eu")] {
            n += 1;
            publish_tagged(s, event, json!({"id": n}), json!({"r": r}));
        }
    };
    publish_round(&s);
    publish_round(&s);

    let mut c = v2_connected(&s);
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": CH, "filter": eu, "rewind": {"count": 6}}}));
    let ack = c.expect_channel_event("sockudo_internal:subscription_succeeded", CH);
    let stream_id = ack["stream_id"].as_str().unwrap().to_owned();
    assert_eq!(ids(&mut c, 2), [1, 4]);
    let done = c.expect_event("sockudo:rewind_complete");
    assert_eq!(done["data"]["historical_count"], 2, "{done}");
    let attach = ack["serial"].as_u64().unwrap();
    drop(c);

    // Subscribes with the filter and resumes from the attach position: the eu order of the
    // three published since is replayed, from `source`.
    let resume_filtered = |s: &Server, source: &str| {
        let mut c = v2_connected(s);
        c.send_json_together(&[
            json!({"event": "sockudo:subscribe", "data": {"channel": CH, "filter": eu}}),
            json!({"event": "sockudo:resume", "data": {"channel_positions": {CH: {"stream_id": stream_id, "serial": attach}}}}),
        ]);
        c.expect_channel_event("sockudo_internal:subscription_succeeded", CH);
        assert_eq!(ids(&mut c, 1), [7]);
        let ok = resume_success(&mut c);
        assert_eq!(ok["recovered"][0]["source"], source, "{ok}");
        assert_eq!(ok["recovered"][0]["replayed"], 1, "{ok}");
        // The reported position is the last message of the range, filtered out or not.
        assert_eq!(ok["recovered"][0]["position"]["serial"], attach + 3, "{ok}");
    };
    // Hot: three more while away.
    publish_round(&s);
    resume_filtered(&s, "hot");
    // Cold: the hot buffer is gone after kill -9.
    s.kill9();
    s.restart(None);
    resume_filtered(&s, "cold");
}
