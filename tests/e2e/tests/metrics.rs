//! Prometheus metrics (`docs/protocol/http-api.md#metrics`, issue 5): `/metrics` on the metrics
//! port parses as the text format, and a scripted workload moves each counter by exactly what it
//! did.

use e2e::*;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Counters are summed from every shard when scraped; a socket's close is counted when its
/// shard notices it, so wait (without a speed assertion) until the gauges settle.
fn scrape_until(port: u16, series: &str, want: f64) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(port);
        if m.get(series) == Some(&want) || Instant::now() > deadline {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_scripted_workload_moves_each_counter_exactly() {
    let app = AppConfig::dev().set("max_client_events_per_second", "2");
    let s = Server::start(Some(&config("", &[app])));
    let mp = s.metrics_port;
    let l = |name: &str, extra: &str| format!("{name}{{app_id=\"app-id\",port=\"{mp}\"{extra}}}");
    let before = scrape(mp);

    let mut a = s.connect();
    let mut b = s.connect();
    a.subscribe("news");
    a.subscribe_private("private-room");
    b.subscribe_private("private-room");
    for i in 0..3 {
        s.publish_ok(json!({"name": "e", "channel": "news", "data": i.to_string()}));
        a.expect_event("e");
    }
    s.publish_ok(json!({"name": "e", "channel": "news", "data": "k", "idempotency_key": "m-1"}));
    a.expect_event("e");
    s.publish_ok(json!({"name": "e", "channel": "news", "data": "k", "idempotency_key": "m-1"}));
    // Three client events within one second: the third exceeds 2/s.
    for _ in 0..3 {
        a.client_event("client-x", "private-room", json!({}));
    }
    b.expect_event("client-x");
    b.expect_event("client-x");
    a.expect_error(4301);
    let mut refused = s.connect_raw("/app/no-such-key?protocol=7", None);
    refused.expect_error(4001);
    a.unsubscribe("news");
    b.close();
    let after = scrape_until(mp, &l("sockudo_connected", ""), 1.0);

    assert_eq!(delta(&before, &after, &l("sockudo_new_connections_total", "")), 2.0);
    assert_eq!(delta(&before, &after, &l("sockudo_new_disconnections_total", "")), 1.0);
    assert_eq!(after[&l("sockudo_connected", "")], 1.0);
    // b closed with 1000 (normal).
    assert_eq!(delta(&before, &after, &l("sockudo_disconnections_by_reason_total", ",reason=\"normal\"")), 1.0);
    assert_eq!(
        delta(&before, &after, &l("sockudo_disconnections_by_reason_total", ",reason=\"connection_lost\"")),
        0.0
    );
    assert_eq!(delta(&before, &after, &l("sockudo_channel_subscriptions_total", ",channel_type=\"public\"")), 1.0);
    assert_eq!(delta(&before, &after, &l("sockudo_channel_subscriptions_total", ",channel_type=\"private\"")), 2.0);
    assert_eq!(delta(&before, &after, &l("sockudo_channel_unsubscriptions_total", ",channel_type=\"public\"")), 1.0);
    assert_eq!(delta(&before, &after, &l("sockudo_channel_unsubscriptions_total", ",channel_type=\"private\"")), 1.0);
    assert_eq!(after[&l("sockudo_active_channels", ",channel_type=\"public\"")], 0.0);
    // private-room: a is still in it (once per shard that holds a subscriber).
    assert_eq!(after[&l("sockudo_active_channels", ",channel_type=\"private\"")], 1.0);
    // 5 publishes (one answered from the idempotency store).
    assert_eq!(delta(&before, &after, &l("sockudo_http_calls_received_total", "")), 5.0);
    assert_eq!(delta(&before, &after, &l("sockudo_idempotency_publish_total", "")), 2.0);
    assert_eq!(delta(&before, &after, &l("sockudo_idempotency_duplicates_total", "")), 1.0);
    // Received: a's 2 subscribes + 3 client events + 1 unsubscribe; b's 1 subscribe (its close
    // frame is a control frame, not a message).
    assert_eq!(delta(&before, &after, &l("sockudo_ws_messages_received_total", "")), 7.0);
    // Sent: a: established, 2 subscription_succeeded, 4 events, 1 error; b: established,
    // subscription_succeeded, 2 client events. Close frames are not messages.
    assert_eq!(delta(&before, &after, &l("sockudo_ws_messages_sent_total", "")), 12.0);
    let limiter = ",limiter_type=\"client_events\",request_context=\"websocket\"";
    assert_eq!(delta(&before, &after, &l("sockudo_rate_limit_checks_total", limiter)), 3.0);
    assert_eq!(delta(&before, &after, &l("sockudo_rate_limit_triggered_total", limiter)), 1.0);
    let unknown =
        format!("sockudo_connection_errors_total{{app_id=\"unknown\",port=\"{mp}\",error_type=\"app_not_found\"}}");
    assert_eq!(delta(&before, &after, &unknown), 1.0);
    // Four channel broadcasts to one socket each, plus two client events to one socket.
    let hist = |ty: &str| {
        l("sockudo_broadcast_latency_ms_count", &format!(",channel_type=\"{ty}\",recipient_count_bucket=\"xs\""))
    };
    assert_eq!(delta(&before, &after, &hist("public")), 4.0);
    assert_eq!(delta(&before, &after, &hist("private")), 2.0);
    let inf =
        l("sockudo_broadcast_latency_ms_bucket", ",channel_type=\"public\",recipient_count_bucket=\"xs\",le=\"+Inf\"");
    assert_eq!(after[&inf], after[&hist("public")], "the +Inf bucket counts every observation");
    assert_eq!(after[&format!("sockudo_webhook_events_dropped_total{{port=\"{mp}\"}}")], 0.0, "no app has webhooks");
    assert!(after["process_resident_memory_bytes"] > 0.0);
    assert!(after["process_open_fds"] > 0.0);
    let shards: f64 = (0..env_shards()).map(|i| after[&format!("sockudo_shard_connections{{shard=\"{i}\"}}")]).sum();
    assert_eq!(shards, 1.0);
}
