//! Webhooks (`docs/protocol/http-api.md#webhooks`) delivered to a real HTTP receiver started by
//! each test: payload shape and signature, every event type, the 3 s re-check of `channel_vacated`
//! and `member_removed`, batching, retries, filters, and node-wide counts across shards.
//!
//! Nothing here depends on speed: arrivals are polled for with generous bounds; the re-check
//! delay is only asserted as "not before 2.5 s".

use e2e::*;
use serde_json::{json, Value};
use std::net::TcpListener;
use std::time::{Duration, Instant};

/// The server's re-check delay is 3 s; nothing may come before this.
const NOT_BEFORE: Duration = Duration::from_millis(2500);

// ---------------------------------------------------------------------------------------------
// Configuration helpers
// ---------------------------------------------------------------------------------------------

fn start(top: &str, hooks: &[String]) -> Server {
    Server::start(Some(&config(top, &[app_with(hooks).namespace("chat")])))
}

fn names(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["name"].as_str().unwrap().to_string()).collect()
}

fn count(events: &[Value], name: &str, channel: &str) -> usize {
    events.iter().filter(|e| e["name"] == name && e["channel"] == channel).count()
}

fn is(name: &'static str, channel: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["name"] == name && e["channel"] == channel
}

const ALL: [&str; 7] = [
    "channel_occupied",
    "channel_vacated",
    "member_added",
    "member_removed",
    "client_event",
    "cache_miss",
    "subscription_count",
];

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

// `docs/protocol/http-api.md#webhook-requests`: headers, body shape, signature recomputed with the
// app secret.
#[test]
fn payload_shape_headers_and_signature() {
    let r = Receiver::start();
    let s = start("", &[hook(&r.url("/hook"), &["channel_occupied"], r#"headers = { X-Hook-Token = "s3cret" }"#)]);
    let before = now() * 1000;
    let mut c = s.connect();
    c.subscribe("orders");
    r.wait_for("/hook", "channel_occupied", |e| !e.is_empty());
    let h = &r.hooks("/hook")[0];
    assert_eq!(h.header("content-type"), Some("application/json"));
    assert_eq!(h.header("x-pusher-key"), Some("app-key"));
    assert_eq!(h.header("x-hook-token"), Some("s3cret"), "custom header");
    let body = std::str::from_utf8(&h.body).unwrap();
    assert_eq!(h.header("x-pusher-signature"), Some(hmac_hex("app-secret", body).as_str()), "signature of {body}");
    let v = h.json();
    assert_eq!(v.as_object().unwrap().len(), 2, "only time_ms and events: {v}");
    let t = v["time_ms"].as_i64().expect("time_ms is an integer");
    assert!(t >= before - 2000 && t <= now() * 1000 + 2000, "time_ms {t} is not now");
    assert_eq!(v["events"], json!([{"name": "channel_occupied", "channel": "orders"}]));
}

// `docs/protocol/http-api.md#webhook-events`: channel_occupied at once; channel_vacated after the
// 3 s re-check, called off by a re-subscribe within it (and then no second channel_occupied either).
#[test]
fn occupied_and_vacated_after_recheck() {
    let r = Receiver::start();
    let s = start("", &[hook(&r.url("/h"), &["channel_occupied", "channel_vacated"], "")]);
    let mut c = s.connect();
    c.subscribe("room");
    r.wait_event("/h", is("channel_occupied", "room"));

    // Leave and come back within the delay: nothing is sent.
    c.unsubscribe("room");
    c.subscribe("room");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(names(&r.settled("/h")), ["channel_occupied"], "a quick re-subscribe sends nothing");

    // Leave for good: vacated once, not before the delay.
    let left = Instant::now();
    c.unsubscribe("room");
    let (at, _) = r.wait_event("/h", is("channel_vacated", "room"));
    assert!(at.duration_since(left) >= NOT_BEFORE, "vacated came {:?} after the unsubscribe", at.duration_since(left));
    assert_eq!(names(&r.settled("/h")), ["channel_occupied", "channel_vacated"]);

    // A disconnect vacates too.
    let mut d = s.connect();
    d.subscribe("other");
    r.wait_event("/h", is("channel_occupied", "other"));
    d.close();
    r.wait_event("/h", is("channel_vacated", "other"));
}

// `docs/protocol/http-api.md#webhook-events`: member_added for a user's first socket only;
// member_removed when its last socket leaves, after the re-check; a quick return of the user sends
// neither.
#[test]
fn member_added_and_removed() {
    let r = Receiver::start();
    let s = start("", &[hook(&r.url("/m"), &["member_added", "member_removed"], "")]);
    let room = "presence-room";
    let mut a1 = s.connect();
    let mut a2 = s.connect();
    let mut b = s.connect();
    a1.subscribe_presence(room, &json!({"user_id": "ann"}));
    a2.subscribe_presence(room, &json!({"user_id": "ann"}));
    b.subscribe_presence(room, &json!({"user_id": "bob", "user_info": {"n": 1}}));
    let events = r.wait_for("/m", "two member_added", |e| e.len() >= 2);
    let mut added: Vec<Value> = events.clone();
    added.sort_by_key(|e| e["user_id"].as_str().unwrap().to_string());
    assert_eq!(
        added,
        [
            json!({"name": "member_added", "channel": room, "user_id": "ann"}),
            json!({"name": "member_added", "channel": room, "user_id": "bob"}),
        ]
    );

    // ann still has a socket: nothing. bob leaves and returns at once: nothing.
    a1.unsubscribe(room);
    b.unsubscribe(room);
    b.subscribe_presence(room, &json!({"user_id": "bob"}));
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(r.settled("/m").len(), 2, "{:#?}", r.delivered("/m"));

    // ann's last socket goes: member_removed, not before the delay.
    let left = Instant::now();
    a2.close();
    let (at, e) = r.wait_event("/m", |e| e["name"] == "member_removed");
    assert_eq!(e, json!({"name": "member_removed", "channel": room, "user_id": "ann"}));
    assert!(at.duration_since(left) >= NOT_BEFORE, "member_removed came {:?} after the close", at.duration_since(left));
    assert_eq!(r.settled("/m").len(), 3);
}

// `docs/protocol/http-api.md#webhook-events`: client_event with the data as the client sent it, the
// sender's socket_id, and on presence channels its user_id.
#[test]
fn client_event_webhook() {
    let r = Receiver::start();
    let s = start("", &[hook(&r.url("/c"), &["client_event"], "")]);
    let mut a = s.connect();
    let mut b = s.connect();
    a.subscribe_private("private-chat");
    b.subscribe_private("private-chat");
    a.client_event("client-typing", "private-chat", json!({"typing": true}));
    a.client_event("client-msg", "private-chat", json!("hello"));
    let mut p = s.connect();
    p.subscribe_presence("presence-room", &json!({"user_id": "42"}));
    p.client_event("client-hi", "presence-room", json!([1, 2]));
    let events = r.wait_for("/c", "three client events", |e| e.len() >= 3);
    let find = |name: &str| events.iter().find(|e| e["event"] == name).unwrap_or_else(|| panic!("{name}: {events:#?}"));
    assert_eq!(
        find("client-typing"),
        &json!({"name": "client_event", "channel": "private-chat", "event": "client-typing",
                "data": {"typing": true}, "socket_id": a.socket_id})
    );
    assert_eq!(find("client-msg")["data"], "hello");
    assert_eq!(
        find("client-hi"),
        &json!({"name": "client_event", "channel": "presence-room", "event": "client-hi",
                "data": [1, 2], "socket_id": p.socket_id, "user_id": "42"})
    );
    // A refused client event (public channel) is not reported.
    a.subscribe("public");
    a.client_event("client-no", "public", json!("x"));
    a.expect_event("pusher:error");
    assert_eq!(r.settled("/c").len(), 3);
}

// `docs/protocol/http-api.md#webhook-events`: member_updated when a V2 member replaces its
// user_info (`docs/protocol/v2.md#presence-update`), not for a refused update.
#[test]
fn member_updated_webhook() {
    let r = Receiver::start();
    let s = start("", &[hook(&r.url("/u"), &["member_updated"], "")]);
    let room = "presence-room";
    let mut c = v2_connected(&s);
    v2_subscribe_presence(&mut c, room, &json!({"user_id": "ann"}));
    c.send_json(&json!({"event": "sockudo:presence_update", "data": {"channel": room, "data": {"away": true}}}));
    c.expect_channel_event("sockudo_internal:presence_update", room);
    c.send_json(&json!({"event": "sockudo:presence_update", "data": {"channel": room, "data": "x".repeat(2000)}}));
    c.expect_v2_error(4000);
    let (_, e) = r.wait_event("/u", |e| e["name"] == "member_updated");
    assert_eq!(e, json!({"name": "member_updated", "channel": room, "user_id": "ann"}));
    assert_eq!(r.settled("/u").len(), 1);
}

// `docs/protocol/http-api.md#webhook-events`: cache_miss when a cache channel has nothing cached,
// not once it has.
#[test]
fn cache_miss_webhook() {
    let r = Receiver::start();
    let s = start("", &[hook(&r.url("/cm"), &["cache_miss"], "")]);
    let mut a = s.connect();
    a.subscribe("cache-prices");
    a.expect_event("pusher:cache_miss");
    let (_, e) = r.wait_event("/cm", |_| true);
    assert_eq!(e, json!({"name": "cache_miss", "channel": "cache-prices", "data": "{}"}));
    s.publish_ok(json!({"name": "tick", "channel": "cache-prices", "data": "1"}));
    a.expect_event("tick");
    let mut b = s.connect();
    b.subscribe("cache-prices");
    b.expect_event("tick");
    a.subscribe("orders"); // not a cache channel
    assert_eq!(r.settled("/cm").len(), 1, "{:#?}", r.delivered("/cm"));
}

// `docs/protocol/http-api.md#webhook-events`: subscription_count on every subscribe and unsubscribe
// of a non-presence channel, with the node-wide count; never for presence channels.
#[test]
fn subscription_count_webhook() {
    let r = Receiver::start();
    let s = start("", &[hook(&r.url("/sc"), &["subscription_count"], "")]);
    let mut a = s.connect();
    let mut b = s.connect();
    a.subscribe("news");
    r.wait_for("/sc", "count 1", |e| !e.is_empty());
    b.subscribe("news");
    r.wait_for("/sc", "count 2", |e| e.len() >= 2);
    a.unsubscribe("news");
    r.wait_for("/sc", "count 1 again", |e| e.len() >= 3);
    let mut p = s.connect();
    p.subscribe_presence("presence-x", &json!({"user_id": "1"}));
    b.close();
    let events = r.wait_for("/sc", "count 0", |e| e.len() >= 4);
    let counts: Vec<(String, u64)> = events
        .iter()
        .map(|e| (e["channel"].as_str().unwrap().to_string(), e["subscription_count"].as_u64().unwrap()))
        .collect();
    assert_eq!(counts, [("news".to_string(), 1), ("news".into(), 2), ("news".into(), 1), ("news".into(), 0)]);
    assert!(events.iter().all(|e| e["name"] == "subscription_count"));
    assert_eq!(r.settled("/sc").len(), 4, "no presence counts");
}

// `docs/protocol/http-api.md#batching-and-retries`: batching. With `size = 5` and a long window,
// events go out exactly five per request.
#[test]
fn batches_by_size() {
    let r = Receiver::start();
    let top = "[webhooks]\nbatching = { enabled = true, duration = 60000, size = 5 }";
    let s = start(top, &[hook(&r.url("/b"), &["channel_occupied"], "")]);
    let mut c = s.connect();
    for i in 0..10 {
        c.subscribe(&format!("ch-{i}"));
    }
    r.wait_for("/b", "ten events", |e| e.len() >= 10);
    let hooks = r.hooks("/b");
    assert_eq!(hooks.len(), 2, "two requests of five");
    let mut channels: Vec<String> = Vec::new();
    for h in &hooks {
        assert_eq!(h.events().len(), 5, "{:?}", h.json());
        let body = std::str::from_utf8(&h.body).unwrap();
        assert_eq!(h.header("x-pusher-signature"), Some(hmac_hex("app-secret", body).as_str()));
        channels.extend(h.events().iter().map(|e| e["channel"].as_str().unwrap().to_string()));
    }
    channels.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("ch-{i}")).collect();
    expected.sort();
    assert_eq!(channels, expected);
}

// `docs/protocol/http-api.md#batching-and-retries`: batching by time. Events sent together within
// the window arrive in one request; with batching off each has its own.
#[test]
fn batches_by_time_window() {
    let r = Receiver::start();
    let top = "[webhooks]\nbatching = { enabled = true, duration = 2000, size = 100 }";
    let s = start(top, &[hook(&r.url("/w"), &["channel_occupied", "subscription_count"], "")]);
    let mut c = s.connect();
    for ch in ["a", "b", "c"] {
        c.send_subscribe(ch, None, None);
    }
    let events = r.wait_for("/w", "six events", |e| e.len() >= 6);
    assert_eq!(r.hooks("/w").len(), 1, "one request for the window: {events:#?}");
    for ch in ["a", "b", "c"] {
        assert_eq!(count(&events, "channel_occupied", ch), 1);
        assert_eq!(count(&events, "subscription_count", ch), 1);
    }

    let r2 = Receiver::start();
    let top = "[webhooks]\nbatching = { enabled = false }";
    let s2 = start(top, &[hook(&r2.url("/w"), &["channel_occupied"], "")]);
    let mut c2 = s2.connect();
    for ch in ["a", "b", "c"] {
        c2.send_subscribe(ch, None, None);
    }
    r2.wait_for("/w", "three events", |e| e.len() >= 3);
    assert!(r2.hooks("/w").iter().all(|h| h.events().len() == 1), "one event per request");
}

// `docs/protocol/http-api.md#batching-and-retries`: a 500 is retried with the same body until a
// 2xx; a 404 is not retried.
#[test]
fn retry_after_500_then_stop() {
    let r = Receiver::start();
    r.answer("/flaky", &[500, 503]);
    r.answer("/gone", &[404]);
    let retry = "retry = { initial_backoff_ms = 200, max_backoff_ms = 400 }";
    let s = start(
        "",
        &[hook(&r.url("/flaky"), &["channel_occupied"], retry), hook(&r.url("/gone"), &["channel_occupied"], retry)],
    );
    let mut c = s.connect();
    c.subscribe("orders");
    r.wait_for("/flaky", "delivery after two failures", |e| !e.is_empty());
    std::thread::sleep(Duration::from_secs(2)); // room for a wrong extra attempt
    let tries = r.hooks("/flaky");
    assert_eq!(tries.iter().map(|h| h.status).collect::<Vec<_>>(), [500, 503, 200], "200 stops the retries");
    for h in &tries {
        assert_eq!(h.body, tries[0].body, "the same events again");
        assert_eq!(h.header("x-pusher-signature"), tries[0].header("x-pusher-signature"));
    }
    assert_eq!(tries[0].events(), [json!({"name": "channel_occupied", "channel": "orders"})]);
    assert!(tries[1].at.duration_since(tries[0].at) >= Duration::from_millis(150), "backed off");
    assert_eq!(r.hooks("/gone").len(), 1, "404 is a permanent failure");
    // The metrics port counts requests, not events: 1 sent, 2 retries, 1 permanent failure.
    let metrics = http(s.metrics_port, "GET", "/metrics", &[], None).text();
    let value = |name: &str| -> f64 {
        let series = format!("{name}{{port=\"{}\"}} ", s.metrics_port);
        metrics.lines().find_map(|l| l.strip_prefix(&series)?.parse().ok()).unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(value("sockudo_webhook_requests_sent_total"), 1.0);
    assert_eq!(value("sockudo_webhook_requests_retried_total"), 2.0);
    assert_eq!(value("sockudo_webhook_requests_failed_total"), 1.0);
}

// `docs/protocol/http-api.md#webhook-requests`, `docs/protocol/http-api.md#webhook-configuration`:
// each webhook gets only the event types it lists, on the channels its filter lets through (prefix,
// suffix, pattern, namespace).
#[test]
fn filters_and_event_types() {
    let r = Receiver::start();
    let s = start(
        "",
        &[
            hook(&r.url("/private"), &["channel_occupied"], r#"filter = { channel_prefix = "private-" }"#),
            hook(
                &r.url("/orders"),
                &["channel_occupied", "subscription_count"],
                r#"filter = { channel_pattern = '^orders-\d+$' }"#,
            ),
            hook(&r.url("/chat"), &["channel_occupied"], r#"filter = { channel_namespace = "chat" }"#),
            hook(&r.url("/live"), &ALL, r#"filter = { channel_suffix = "-live", channel_prefix = "private-" }"#),
            hook(&r.url("/vacated"), &["channel_vacated"], ""),
        ],
    );
    let mut c = s.connect();
    for ch in ["orders-1", "orders-x", "news", "chat:room", "news-live"] {
        c.subscribe(ch);
    }
    c.subscribe_private("private-a");
    c.subscribe_private("private-game-live");
    r.wait_for("/private", "two", |e| e.len() >= 2);
    r.wait_for("/orders", "two", |e| e.len() >= 2);
    r.wait_for("/chat", "one", |e| !e.is_empty());
    r.wait_for("/live", "two", |e| e.len() >= 2);

    let mut private: Vec<String> =
        r.settled("/private").iter().map(|e| e["channel"].as_str().unwrap().into()).collect();
    private.sort();
    assert_eq!(private, ["private-a", "private-game-live"]);
    assert!(r.delivered("/private").iter().all(|(_, e)| e["name"] == "channel_occupied"));
    let orders = r.settled("/orders");
    assert_eq!(orders.len(), 2, "{orders:#?}");
    assert_eq!(count(&orders, "channel_occupied", "orders-1"), 1);
    assert_eq!(count(&orders, "subscription_count", "orders-1"), 1);
    assert_eq!(r.settled("/chat"), [json!({"name": "channel_occupied", "channel": "chat:room"})]);
    let live = r.settled("/live");
    assert_eq!(live.len(), 2, "{live:#?}");
    assert_eq!(count(&live, "channel_occupied", "private-game-live"), 1);
    assert_eq!(count(&live, "subscription_count", "private-game-live"), 1);
    assert!(r.hooks("/vacated").is_empty(), "no vacated while everything is occupied");
}

// `docs/protocol/http-api.md#webhook-events` with the channel spread over shards: occupied once
// when the first socket anywhere subscribes, vacated once when the last socket on the last shard
// leaves, and never while a socket on another shard still holds the channel.
#[test]
fn vacated_once_when_the_last_shard_empties() {
    const N: usize = 12; // with 2 shards, SO_REUSEPORT puts sockets on both (all on one: 2^-11)
    let r = Receiver::start();
    let s = start("", &[hook(&r.url("/v"), &["channel_occupied", "channel_vacated", "subscription_count"], "")]);
    let room = "room-across-shards";
    let mut clients: Vec<Client> = (0..N).map(|_| s.connect()).collect();
    for c in clients.iter_mut() {
        c.subscribe(room);
    }
    let events = r.wait_for("/v", "N counts", |e| count(e, "subscription_count", room) >= N);
    assert_eq!(count(&events, "channel_occupied", room), 1, "occupied once: {events:#?}");
    let mut counts: Vec<u64> = events.iter().filter_map(|e| e["subscription_count"].as_u64()).collect();
    counts.sort();
    assert_eq!(counts, (1..=N as u64).collect::<Vec<_>>(), "node-wide counts 1..=N");

    // All but the last leave, half by unsubscribe, half by disconnect.
    let last = clients.pop().unwrap();
    for (i, mut c) in clients.into_iter().enumerate() {
        if i % 2 == 0 {
            c.unsubscribe(room);
            c.assert_alive(); // the unsubscribe is handled
        } else {
            c.close();
        }
    }
    r.wait_for("/v", "count down to 1", |e| count(e, "subscription_count", room) >= 2 * N - 1);
    std::thread::sleep(Duration::from_secs(4));
    let events = r.settled("/v");
    assert_eq!(count(&events, "channel_vacated", room), 0, "one socket still holds the channel: {events:#?}");

    let left = Instant::now();
    let mut last = last;
    last.unsubscribe(room);
    let (at, _) = r.wait_event("/v", is("channel_vacated", room));
    assert!(at.duration_since(left) >= NOT_BEFORE, "vacated came {:?} after the unsubscribe", at.duration_since(left));
    let events = r.settled("/v");
    assert_eq!(count(&events, "channel_vacated", room), 1, "vacated exactly once: {events:#?}");
    assert_eq!(count(&events, "channel_occupied", room), 1);
    let mut final_counts: Vec<u64> = events.iter().filter_map(|e| e["subscription_count"].as_u64()).collect();
    final_counts.sort();
    let mut expected: Vec<u64> = (1..=N as u64).chain(0..N as u64).collect();
    expected.sort();
    assert_eq!(final_counts, expected);
}

// `docs/protocol/http-api.md#webhook-configuration`: a bad webhook config stops start-up with the
// key and the problem.
#[test]
fn bad_webhook_config_is_refused() {
    let bad = [
        (
            hook("http://127.0.0.1:9/h", &["channel_occupied"], r#"filter = { channel_pattern = "orders-(" }"#),
            "webhooks[0].filter.channel_pattern",
        ),
        (hook("http://127.0.0.1:9/h", &["channel_ocupied"], ""), "webhooks[0].event_types"),
        (hook("ftp://x/h", &["channel_occupied"], ""), "webhooks[0].url"),
    ];
    for (h, key) in bad {
        let (status, log) = Server::start_expecting_exit(&config("", &[app_with(&[h])]));
        assert!(!status.success());
        assert!(log.contains(key), "{key} not named in: {log}");
    }
    let (status, log) = Server::start_expecting_exit(&config("[webhooks]\nmax_concurrent = 0", &[AppConfig::dev()]));
    assert!(!status.success());
    assert!(log.contains("webhooks.max_concurrent"), "{log}");
}

// `docs/protocol/http-api.md#batching-and-retries` / issue 5: an endpoint that never answers
// neither slows fanout nor stops the server; its requests time out and are given up (logged).
#[test]
fn dead_endpoint_never_slows_fanout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}/dead", listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        let mut held = Vec::new(); // accepted, never read nor answered
        for s in listener.incoming().flatten() {
            held.push(s);
        }
    });
    let top = "[webhooks]\nmax_concurrent = 2\nqueue_capacity = 50";
    let dead = hook(&url, &["client_event"], "request_timeout_ms = 300, retry = { enabled = false }");
    let s = start(top, &[dead]);
    let mut a = s.connect();
    let mut b = s.connect();
    a.subscribe_private("private-flood");
    b.subscribe_private("private-flood");
    const K: usize = 500;
    for i in 0..K {
        a.client_event("client-n", "private-flood", json!(i));
    }
    for i in 0..K {
        let f = b.recv_json(T);
        assert_eq!(f["data"], json!(i), "fanout continues in order");
    }
    s.publish_ok(json!({"name": "e", "channel": "private-flood", "data": "x"}));
    b.expect_event("e");
    let deadline = Instant::now() + ARRIVE;
    while !s.log().contains("delivery failed") {
        assert!(Instant::now() < deadline, "no failure logged:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

// A graceful stop sends what is still gathering in a batch window.
#[test]
fn graceful_stop_sends_the_open_batch() {
    let r = Receiver::start();
    let top = "[webhooks]\nbatching = { enabled = true, duration = 60000, size = 100 }";
    let mut s = start(top, &[hook(&r.url("/s"), &["channel_occupied"], "")]);
    let mut c = s.connect();
    c.subscribe("last-words");
    std::thread::sleep(QUIET);
    assert!(r.hooks("/s").is_empty(), "held by the 60 s window");
    s.sigterm();
    c.expect_fatal(4200);
    let status = s.wait_exit(Duration::from_secs(30)).expect("stops");
    assert!(status.success(), "{status}");
    assert_eq!(
        r.delivered("/s").into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        [json!({"name": "channel_occupied", "channel": "last-words"})]
    );
}
