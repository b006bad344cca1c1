//! What a failure inside the server costs (`docs/architecture.md#failures-and-stop`): a panic
//! closes only the socket it happened on (or answers 500), a shard that does not answer gives every
//! request waiting on it a deadline error instead of a hang, and work for a shard that is far
//! behind is refused at a bound instead of queued without end. The `--test-hooks` flag provides the
//! panic trigger and the stall.

use e2e::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn panics(s: &Server, context: &str) -> f64 {
    let series = format!("sockudo_panics_total{{app_id=\"app-id\",port=\"{}\",context=\"{context}\"}}", s.metrics_port);
    scrape(s.metrics_port).get(&series).copied().unwrap_or_else(|| panic!("no series {series}"))
}

// One shard, so the bystander shares the panicking socket's executor.
#[test]
fn a_panic_closes_only_its_socket() {
    let s = Server::start_with(None, Some(1), &[], &["--test-hooks"]);
    let mut bystander = s.connect();
    bystander.subscribe("news");
    let mut victim = s.connect();
    victim.subscribe("news");
    assert_eq!(panics(&s, "socket"), 0.0);

    victim.send_json(&json!({"event": "sockudo_test:panic", "data": {}}));
    assert_eq!(victim.expect_close(1011), "Internal error");
    assert_eq!(panics(&s, "socket"), 1.0);

    s.publish_ok(json!({"name": "after", "channel": "news", "data": "1"}));
    assert_eq!(bystander.expect_channel_event("after", "news")["data"], "1");
    let mut newcomer = s.connect();
    newcomer.subscribe("news");
    s.publish_ok(json!({"name": "again", "channel": "news", "data": "2"}));
    bystander.expect_channel_event("again", "news");
    newcomer.expect_channel_event("again", "news");
    // The victim's subscription was taken back: one bystander and one newcomer remain.
    let info = s.get("/channels/news", &[("info", "subscription_count")]).json();
    assert_eq!(info["subscription_count"], 2, "{info}");
}

#[test]
fn a_panic_in_a_request_answers_500() {
    let s = Server::start_with(None, Some(1), &[], &["--test-hooks"]);
    let mut c = s.connect();
    c.subscribe("news");
    let r = s.http("POST", "/test/panic", &[], Some(b""));
    let body = r.assert_error(500, "internal_error");
    assert_eq!(body["error"], "Internal server error");
    assert_eq!(
        scrape(s.metrics_port)
            .get(&format!("sockudo_panics_total{{app_id=\"system\",port=\"{}\",context=\"request\"}}", s.metrics_port)),
        Some(&1.0)
    );
    s.publish_ok(json!({"name": "after", "channel": "news", "data": "1"}));
    c.expect_channel_event("after", "news");
}

/// Stalls the shard that owns `channel` for `ms` and returns its number.
fn stall(s: &Server, channel: &str, ms: u64) -> u64 {
    let r = s.http("POST", &format!("/test/stall?app=app-id&channel={channel}&ms={ms}"), &[], Some(b""));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["shard"].as_u64().unwrap()
}

// Two shards: requests reach the stalled one from either shard, and a subscribe counted by the
// stalled owner after its asker gave up is taken back.
#[test]
fn a_stalled_shard_gives_deadline_errors_not_hangs() {
    let stall_ms = 4000;
    let s = Server::start_with(None, Some(2), &[("MESH_REQUEST_TIMEOUT_MS", "300")], &["--test-hooks"]);
    let mut c = s.connect();
    let owner = stall(&s, "stuck", stall_ms);
    let started = Instant::now();

    let r = s.get("/channels/stuck", &[]);
    let body = r.assert_error(503, "service_unavailable");
    assert_eq!(body["error"], format!("shard {owner} did not answer within 300 ms"));
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = s.publish(json!({"name": "e", "channel": "stuck", "data": "x"}));
    r.assert_error(503, "service_unavailable");

    c.send_subscribe("stuck", None, None);
    let message = c.expect_error(4100);
    assert_eq!(message, format!("Over capacity: shard {owner} did not answer within 300 ms"));
    assert!(started.elapsed() < Duration::from_millis(stall_ms), "the answers came only after the stall");

    // Once the shard is back: the subscribe counted late was undone, and the timed-out publish
    // was carried out late (a 503 after a deadline means "outcome unknown").
    let deadline = Instant::now() + Duration::from_millis(stall_ms) + T;
    let info = loop {
        let r = s.get("/channels/stuck", &[("info", "subscription_count")]);
        if r.status == 200 {
            let info = r.json();
            if info["subscription_count"] == 0 {
                break info;
            }
        }
        assert!(Instant::now() < deadline, "the late subscribe was never undone");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(info["occupied"], false, "{info}");
    while s.get("/channels/stuck/history", &[]).json()["items"].as_array().is_none_or(|i| i.is_empty()) {
        assert!(Instant::now() < deadline, "the timed-out publish was never carried out");
        std::thread::sleep(Duration::from_millis(100));
    }
    c.subscribe("stuck");
    c.assert_alive();
}

// A wildcard subscribe waits for every shard to record it: with one stalled it fails with the
// deadline error and is undone everywhere, so once the shard is back the same pattern works.
#[test]
fn a_wildcard_join_given_up_on_is_undone() {
    let stall_ms = 2000;
    let s = Server::start_with(None, Some(2), &[("MESH_REQUEST_TIMEOUT_MS", "300")], &["--test-hooks"]);
    let mut c = v2_connected(&s);
    let owner = stall(&s, "stuck", stall_ms);
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "stuck.*"}}));
    assert_eq!(c.expect_v2_error(4100), format!("Over capacity: shard {owner} did not answer within 300 ms"));
    // Again until the shard is back.
    let deadline = Instant::now() + Duration::from_millis(stall_ms) + T;
    loop {
        c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "stuck.*"}}));
        let f = c.recv_json(T);
        if f["event"] == "sockudo_internal:subscription_succeeded" {
            assert_eq!(f["channel"], "stuck.*", "{f}");
            break;
        }
        assert_eq!(f["data"]["code"], 4100, "{f}");
        assert!(Instant::now() < deadline, "the stalled shard never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..8 {
        s.publish_ok(json!({"name": "e", "channel": format!("stuck.{i}"), "data": "x"}));
    }
    let mut got: Vec<String> = (0..8).map(|_| c.expect_event("e")["channel"].as_str().unwrap().to_owned()).collect();
    got.sort();
    assert_eq!(got, (0..8).map(|i| format!("stuck.{i}")).collect::<Vec<_>>());
    v2_drained(&mut c);
}

// Client events for a shard that is far behind: each sender may have at most the ring (4096),
// the backlog limit and the one message each side holds in hand waiting for it; beyond that
// events are refused with an error, and every event that was not refused is delivered once
// the shard is back.
#[test]
fn work_for_a_stalled_shard_is_bounded_and_none_accepted_is_lost() {
    let backlog = 1000;
    let sent = 4096 + 2 * backlog;
    let cfg = config("", &[AppConfig::dev().set("max_client_events_per_second", "1000000")]);
    // The receiver gets everything at once when the shard is back: let its queue hold it.
    let env = [("MESH_BACKLOG_LIMIT", backlog.to_string()), ("WEBSOCKET_MAX_MESSAGES", (2 * sent).to_string())];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let s = Server::start_with(Some(&cfg), Some(2), &env, &["--test-hooks"]);
    let channel = "private-flood";
    let mut sender = s.connect();
    sender.subscribe_private(channel);
    let mut receiver = s.connect();
    receiver.subscribe_private(channel);

    let stall_ms = 6000;
    let stalled_at = Instant::now();
    stall(&s, channel, stall_ms);
    for i in 0..sent {
        sender.client_event("client-n", channel, json!({ "i": i }));
    }
    // Refusals come back while the shard is still stalled.
    let mut refused = 0;
    while let Some(f) = sender.recv(Duration::from_millis(500)) {
        let Frame::Json(f) = f else { panic!("{f:?}") };
        assert_eq!(f["event"], "pusher:error", "{f}");
        assert_eq!(f["data"]["code"], 4301, "{f}");
        assert!(f["data"]["message"].as_str().unwrap().contains("too far behind"), "{f}");
        refused += 1;
    }
    assert!(
        stalled_at.elapsed() < Duration::from_millis(stall_ms),
        "sending outlasted the stall; the test proves nothing"
    );
    assert!(refused > 0, "nothing was refused: the bound did not hold");
    let accepted = sent - refused;
    assert!(accepted <= 4096 + backlog + 2, "{accepted} accepted, more than the ring and the backlog");
    // Everything accepted arrives once the shard is back, in the order sent. (Mostly the first
    // `accepted`, but a slot that frees while events are refused lets a later one in.)
    let mut last = None;
    for _ in 0..accepted {
        let f = receiver.recv_json(Duration::from_millis(stall_ms) + T);
        assert_eq!(f["event"], "client-n", "{f}");
        let i = f["data"]["i"].as_u64().unwrap();
        assert!(last.is_none_or(|l| i > l), "{f} after {last:?}: out of order or twice");
        last = Some(i);
    }
    receiver.expect_no_frame(QUIET);
    let refusals = scrape(s.metrics_port)[&format!("sockudo_backlog_refusals_total{{port=\"{}\"}}", s.metrics_port)];
    assert_eq!(refusals, refused as f64, "refusals counted");
}
