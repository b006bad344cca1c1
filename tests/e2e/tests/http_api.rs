//! REST endpoints (`docs/protocol/http-api.md#overview`): publishing, batches, channel queries and
//! the health routes (Connection: close is not asserted: the project keeps HTTP connections alive).

use e2e::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn subscribed(s: &Server, channel: &str) -> Client {
    let mut c = s.connect();
    c.subscribe(channel);
    c
}

fn set_of(v: &Value, key: &str) -> BTreeSet<String> {
    v.as_array().unwrap().iter().map(|u| u[key].as_str().unwrap().to_string()).collect()
}

// `docs/protocol/http-api.md#event-fields`: HTTP-published data is always a string.
#[test]
fn publish_serialises_data_to_string() {
    let s = Server::start(None);
    let mut c = subscribed(&s, "orders");
    assert_eq!(s.publish_ok(json!({"name": "e", "channel": "orders", "data": {"a": 1}})), json!({"ok": true}));
    assert_eq!(c.recv_json(T), json!({"event": "e", "channel": "orders", "data": "{\"a\":1}"}));
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "plain"}));
    assert_eq!(c.expect_event("e")["data"], "plain");
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": 5}));
    assert_eq!(c.expect_event("e")["data"], "5");
    s.publish_ok(json!({"name": "e", "channel": "orders"}));
    assert_eq!(c.expect_event("e")["data"], "null");
}

// `docs/protocol/http-api.md#event-fields`
#[test]
fn publish_channel_lists() {
    let s = Server::start(None);
    let mut a = subscribed(&s, "a");
    let mut b = subscribed(&s, "b");
    let mut c = subscribed(&s, "c");
    s.publish_ok(json!({"name": "e", "channels": ["a", "b"], "data": "1"}));
    a.expect_channel_event("e", "a");
    b.expect_channel_event("e", "b");
    // `channels` wins over `channel`.
    s.publish_ok(json!({"name": "f", "channel": "c", "channels": ["a"], "data": "1"}));
    a.expect_channel_event("f", "a");
    c.expect_no_frame(QUIET);

    s.publish(json!({"name": "e", "channels": [], "data": "1"})).assert_error(400, "missing_channel_info");
    let j = s.publish(json!({"name": "e", "data": "1"})).assert_error(400, "missing_channel_info");
    assert_eq!(j["error"], "Request must contain 'channels' (list) or 'channel' (string)");
}

// `docs/protocol/http-api.md#event-fields`: missing name, invalid channel names.
#[test]
fn publish_validation() {
    let s = Server::start(None);
    s.publish(json!({"channel": "orders", "data": "1"})).assert_error(400, "invalid_input");
    s.publish(json!({"name": "e", "channel": "bad$chan", "data": "1"})).assert_error(400, "invalid_input");
    s.publish(json!({"name": "e", "channel": "a".repeat(201), "data": "1"})).assert_error(400, "invalid_input");
    s.publish_ok(json!({"name": "e", "channel": "a".repeat(200), "data": "1"}));
    s.publish_ok(json!({"name": "e", "channel": "chat:x", "data": "1"})); // the dev app: any namespace
    drop(s);

    // A configured app publishes only to the namespaces it declares.
    let s = Server::start(Some(&config("", &[AppConfig::dev()])));
    s.publish(json!({"name": "e", "channel": "chat:x", "data": "1"})).assert_error(400, "invalid_input");
}

// `docs/protocol/http-api.md#requests-and-responses`: malformed JSON -> 400; wrong field types ->
// 422; no JSON content type -> 415.
#[test]
fn publish_body_rejections() {
    let s = Server::start(None);
    let path = s.app.path("/events");
    let json_ct = [("Content-Type", "application/json")];
    let r = s.api_raw(&s.app, "POST", &path, &[], Some(b"{\"name\":"), &json_ct);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = s.api_raw(&s.app, "POST", &path, &[], Some(br#"{"name":5,"channel":"orders","data":"1"}"#), &json_ct);
    assert_eq!(r.status, 422, "{}", r.text());
    let body = br#"{"name":"e","channel":"orders","data":"1"}"#;
    let r = s.api_raw(&s.app, "POST", &path, &[], Some(body), &[]);
    assert_eq!(r.status, 415, "{}", r.text());
    let r = s.api_raw(&s.app, "POST", &path, &[], Some(body), &[("Content-Type", "text/plain")]);
    assert_eq!(r.status, 415, "{}", r.text());
}

// `docs/protocol/http-api.md#event-fields`
#[test]
fn publish_excludes_socket_id() {
    let s = Server::start(None);
    let mut a = subscribed(&s, "orders");
    let mut b = subscribed(&s, "orders");
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "1", "socket_id": a.socket_id}));
    b.expect_event("e");
    a.expect_no_frame(QUIET);
    // An invalid socket_id is ignored (`docs/protocol/pusher.md#socket-ids`).
    s.publish_ok(json!({"name": "g", "channel": "orders", "data": "1", "socket_id": "not-a-socket"}));
    a.expect_event("g");
    b.expect_event("g");
}

// `docs/protocol/http-api.md#publish-response`
#[test]
fn publish_info() {
    let s = Server::start(None);
    let _a = subscribed(&s, "orders");
    let _b = subscribed(&s, "orders");
    let mut members = Vec::new();
    for user in ["42", "7", "7"] {
        let mut c = s.connect();
        c.subscribe_presence("presence-room", &json!({"user_id": user}));
        members.push(c);
    }
    let r = s.publish_ok(json!({"name": "e", "channels": ["orders", "presence-room"], "data": "1",
                                "info": "subscription_count,user_count"}));
    let orders = &r["channels"]["orders"];
    assert_eq!(orders["subscription_count"], 2, "{r}");
    assert!(orders["acknowledgement_id"].is_string(), "{r}");
    assert!(orders.get("user_count").is_none(), "user_count only for presence: {r}");
    let room = &r["channels"]["presence-room"];
    assert_eq!(room["user_count"], 2, "{r}");
    assert_eq!(room["subscription_count"], 3, "{r}");
    assert!(room["acknowledgement_id"].is_string(), "{r}");
    // Only the requested token.
    let r = s.publish_ok(json!({"name": "e", "channel": "presence-room", "data": "1", "info": "user_count"}));
    assert_eq!(r["channels"]["presence-room"]["user_count"], 2, "{r}");
    assert!(r["channels"]["presence-room"].get("subscription_count").is_none(), "{r}");
}

// `docs/protocol/http-api.md#event-fields` and the default of 100 channels per trigger.
#[test]
fn channels_per_trigger_limit() {
    let s = Server::start(Some(&config("", &[AppConfig::dev().set("max_event_channels_at_once", "2")])));
    let mut a = subscribed(&s, "a");
    s.publish(json!({"name": "e", "channels": ["a", "b", "c"], "data": "1"})).assert_error(400, "limit_exceeded");
    a.expect_no_frame(QUIET);
    s.publish_ok(json!({"name": "e", "channels": ["a", "b"], "data": "1"}));
    a.expect_event("e");

    let s = Server::start(None);
    let names = |n: usize| (0..n).map(|i| format!("ch-{i}")).collect::<Vec<_>>();
    s.publish(json!({"name": "e", "channels": names(101), "data": "1"})).assert_error(400, "limit_exceeded");
    s.publish_ok(json!({"name": "e", "channels": names(100), "data": "1"}));
}

// `docs/protocol/http-api.md#event-fields` and the default of 100 KB.
#[test]
fn payload_limit() {
    let s = Server::start(Some(&config("", &[AppConfig::dev().set("max_event_payload_in_kb", "1")])));
    let mut a = subscribed(&s, "orders");
    s.publish(json!({"name": "e", "channel": "orders", "data": "x".repeat(2000)}))
        .assert_error(413, "payload_too_large");
    // Non-string data is measured serialised.
    s.publish(json!({"name": "e", "channel": "orders", "data": {"k": "x".repeat(2000)}}))
        .assert_error(413, "payload_too_large");
    a.expect_no_frame(QUIET);
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "x".repeat(900)}));
    a.expect_event("e");

    let s = Server::start(None);
    let mut a = subscribed(&s, "orders");
    s.publish(json!({"name": "e", "channel": "orders", "data": "x".repeat(101 * 1024)}))
        .assert_error(413, "payload_too_large");
    a.expect_no_frame(QUIET);
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "x".repeat(99 * 1024)}));
    assert_eq!(a.expect_event("e")["data"].as_str().unwrap().len(), 99 * 1024);
}

// `docs/protocol/http-api.md#event-fields`
#[test]
fn event_name_length() {
    let s = Server::start(None);
    s.publish(json!({"name": "e".repeat(201), "channel": "orders", "data": "1"})).assert_error(400, "limit_exceeded");
    s.publish_ok(json!({"name": "e".repeat(200), "channel": "orders", "data": "1"}));
    let s = Server::start(Some(&config("", &[AppConfig::dev().set("max_event_name_length", "10")])));
    s.publish(json!({"name": "e".repeat(11), "channel": "orders", "data": "1"})).assert_error(400, "limit_exceeded");
    s.publish_ok(json!({"name": "e".repeat(10), "channel": "orders", "data": "1"}));
}

// `docs/protocol/http-api.md#batch-events`
#[test]
fn batch_events() {
    let s = Server::start(None);
    let mut a = subscribed(&s, "orders");
    let mut b = subscribed(&s, "audit");
    let r = s.batch(json!([
        {"name": "first", "channel": "orders", "data": "1"},
        {"name": "second", "channel": "orders", "data": {"n": 2}},
    ]));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({}));
    assert_eq!(a.recv_json(T), json!({"event": "first", "channel": "orders", "data": "1"}));
    assert_eq!(a.recv_json(T), json!({"event": "second", "channel": "orders", "data": "{\"n\":2}"}));

    // With info on one item: one entry per item.
    let r = s.batch(json!([
        {"name": "x", "channel": "orders", "data": "1", "info": "subscription_count"},
        {"name": "y", "channels": ["audit", "orders"], "data": "1"},
    ]));
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let items = j["batch"].as_array().unwrap_or_else(|| panic!("{j}"));
    assert_eq!(items.len(), 2, "{j}");
    assert_eq!(items[0]["subscription_count"], 1, "{j}");
    assert_eq!(items[1], json!({}), "{j}");
    a.expect_event("x");
    a.expect_event("y");
    b.expect_event("y");

    // Socket exclusion per item.
    let r = s.batch(json!([{"name": "z", "channel": "orders", "data": "1", "socket_id": a.socket_id}]));
    assert_eq!(r.status, 200, "{}", r.text());
    a.expect_no_frame(QUIET);

    // Empty batch.
    assert_eq!(s.batch(json!([])).status, 200);
}

// `docs/protocol/http-api.md#batch-events` and the default batch of 10.
#[test]
fn batch_size_limit() {
    let item = |i: usize| json!({"name": "e", "channel": "orders", "data": i.to_string()});
    let s = Server::start(Some(&config("", &[AppConfig::dev().set("max_event_batch_size", "2")])));
    let mut a = subscribed(&s, "orders");
    let j = s.batch(json!((0..3).map(item).collect::<Vec<_>>())).assert_error(400, "limit_exceeded");
    assert_eq!(j["error"], "Batch size (3) exceeds limit (2)");
    a.expect_no_frame(QUIET); // nothing was published

    let s = Server::start(None);
    let mut a = subscribed(&s, "orders");
    s.batch(json!((0..11).map(item).collect::<Vec<_>>())).assert_error(400, "limit_exceeded");
    a.expect_no_frame(QUIET);
    assert_eq!(s.batch(json!((0..10).map(item).collect::<Vec<_>>())).status, 200);
    for i in 0..10 {
        assert_eq!(a.expect_event("e")["data"], i.to_string());
    }
}

// `docs/protocol/http-api.md#batch-events`: items are validated like single publishes.
#[test]
fn batch_item_validation() {
    let s = Server::start(None);
    s.batch(json!([{"name": "e", "channel": "bad$", "data": "1"}])).assert_error(400, "invalid_input");
    s.batch(json!([{"name": "e".repeat(201), "channel": "orders", "data": "1"}])).assert_error(400, "limit_exceeded");
    s.batch(json!([{"name": "e", "channel": "orders", "data": "x".repeat(101 * 1024)}]))
        .assert_error(413, "payload_too_large");
    s.batch(json!([{"name": "e", "data": "1"}])).assert_error(400, "missing_channel_info");
}

/// Polls `GET /apps/app-id{rest}` until `check` holds (the channel list may be cached ~2 s).
fn eventually(s: &Server, rest: &str, query: &[(&str, &str)], expected: Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = s.get(rest, query);
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        if j == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{rest} {query:?}: got {j}, want {expected}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

// `docs/protocol/http-api.md#listing-channels`
#[test]
fn list_channels() {
    let s = Server::start(None);
    let mut orders = subscribed(&s, "orders");
    let _orders2 = subscribed(&s, "orders");
    let mut members = Vec::new();
    for user in ["42", "7", "7"] {
        let mut c = s.connect();
        c.subscribe_presence("presence-room", &json!({"user_id": user}));
        members.push(c);
    }
    eventually(&s, "/channels", &[], json!({"channels": {"orders": {}, "presence-room": {}}}));
    eventually(&s, "/channels", &[("filter_by_prefix", "ord")], json!({"channels": {"orders": {}}}));
    eventually(
        &s,
        "/channels",
        &[("info", "subscription_count")],
        json!({"channels": {"orders": {"subscription_count": 2}, "presence-room": {"subscription_count": 3}}}),
    );
    eventually(
        &s,
        "/channels",
        &[("filter_by_prefix", "presence-"), ("info", "user_count")],
        json!({"channels": {"presence-room": {"user_count": 2}}}),
    );
    let j = s.get("/channels", &[("info", "user_count")]).assert_error(400, "invalid_input");
    assert_eq!(j["error"], "user_count is only available for presence channels. Use filter_by_prefix=presence-");
    // Vacated channels disappear.
    orders.unsubscribe("orders");
    orders.expect_no_frame(Duration::from_millis(100));
    drop(_orders2);
    drop(members);
    eventually(&s, "/channels", &[], json!({"channels": {}}));
}

// `docs/protocol/http-api.md#channel-information`
#[test]
fn channel_info() {
    let s = Server::start(None);
    let _c = subscribed(&s, "orders");
    let mut members = Vec::new();
    for user in ["42", "7", "7"] {
        let mut c = s.connect();
        c.subscribe_presence("presence-room", &json!({"user_id": user}));
        members.push(c);
    }
    let get = |ch: &str, info: &str| {
        let q: Vec<(&str, &str)> = if info.is_empty() { vec![] } else { vec![("info", info)] };
        s.get(&format!("/channels/{ch}"), &q)
    };
    assert_eq!(get("orders", "subscription_count").json(), json!({"occupied": true, "subscription_count": 1}));
    assert_eq!(get("orders", "").json(), json!({"occupied": true}));
    assert_eq!(get("empty", "").json(), json!({"occupied": false}));
    assert_eq!(get("empty", "subscription_count").json(), json!({"occupied": false, "subscription_count": 0}));
    get("orders", "user_count").assert_error(400, "invalid_input");
    assert_eq!(
        get("presence-room", "user_count,subscription_count").json(),
        json!({"occupied": true, "user_count": 2, "subscription_count": 3})
    );
    get("bad$chan", "").assert_error(400, "invalid_input");
}

// `docs/protocol/http-api.md#presence-users`
#[test]
fn presence_users() {
    let s = Server::start(None);
    let _o = subscribed(&s, "orders");
    let mut members = Vec::new();
    for user in ["42", "7", "7"] {
        let mut c = s.connect();
        c.subscribe_presence("presence-room", &json!({"user_id": user}));
        members.push(c);
    }
    let r = s.get("/channels/presence-room/users", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j.as_object().unwrap().len(), 1, "{j}");
    assert_eq!(j["users"].as_array().unwrap().len(), 2, "{j}");
    assert_eq!(set_of(&j["users"], "id"), BTreeSet::from(["42".to_string(), "7".to_string()]));
    let j = s.get("/channels/orders/users", &[]).assert_error(400, "invalid_input");
    assert_eq!(j["error"], "Only presence channels support this endpoint");
}

// `docs/protocol/http-api.md#channel-information`, `docs/protocol/pusher.md#cache-channels`
#[test]
fn cache_channel_info() {
    let s = Server::start(None);
    s.publish_ok(json!({"name": "update", "channel": "cache-news", "data": "x"}));
    let r = s.get("/channels/cache-news", &[("info", "cache")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let stored: Value = serde_json::from_str(j["cache"]["data"].as_str().unwrap_or_else(|| panic!("{j}"))).unwrap();
    assert_eq!(stored, json!({"event": "update", "channel": "cache-news", "data": "x"}));
    let ttl = j["cache"]["ttl"].as_u64().unwrap_or_else(|| panic!("{j}"));
    assert!(ttl > 0 && ttl <= 3600, "{j}");
    // No entry: no cache key.
    let j = s.get("/channels/cache-empty", &[("info", "cache")]).json();
    assert!(j.get("cache").is_none(), "{j}");
}

// `docs/protocol/http-api.md#requests-and-responses` (404 text; wrong method)
#[test]
fn unknown_routes() {
    let s = Server::start(None);
    for path in ["/nope", "/", "/apps"] {
        let r = s.http("GET", path, &[], None);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.text(), "404 NOT FOUND", "{path}");
        assert!(r.header("content-type").unwrap_or("").starts_with("text/plain"), "{path}: {:?}", r.headers);
    }
    let r = s.api("GET", &s.app.path("/events"), &[], None);
    assert_eq!(r.status, 405, "{}", r.text());
}

// `docs/protocol/http-api.md#health-and-status-routes`
#[test]
fn operational_endpoints() {
    let s = Server::start(None);
    let r = s.http("GET", "/up", &[], None);
    assert_eq!((r.status, r.text().as_str()), (200, "OK"));
    assert_eq!(r.header("x-health-check"), Some("OK"));
    let r = s.http("GET", "/up/app-id", &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.http("GET", "/up/nope", &[], None);
    assert_eq!((r.status, r.text().as_str()), (404, "NOT_FOUND"));
    let r = s.http("GET", "/live", &[], None);
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty(), "{}", r.text());
    let r = s.http("GET", "/usage", &[], None);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert!(j["memory"]["total"].as_u64().is_some_and(|t| t > 0), "{j}");
    for k in ["free", "used", "percent"] {
        assert!(j["memory"][k].is_number(), "{j}");
    }
}

// `docs/protocol/http-api.md#health-and-status-routes`: a disabled app's health is 503 ERROR.
#[test]
fn health_of_disabled_app() {
    let off = App::new("off-id", "off-key", "off-secret");
    let s = Server::start(Some(&config("", &[AppConfig::dev(), AppConfig::for_app(&off).set("enabled", "false")])));
    let r = s.http("GET", "/up/off-id", &[], None);
    assert_eq!((r.status, r.text().as_str()), (503, "ERROR"));
}

// `docs/protocol/http-api.md#requests-and-responses`: request bodies over 10 MiB are refused with 413.
#[test]
fn request_body_limit() {
    let s = Server::start(None);
    let body = json!({"name": "e", "channel": "orders", "data": "x".repeat(11 << 20)}).to_string();
    let target = signed_target(&s.app, "POST", &s.app.path("/events"), &[], Some(body.as_bytes()), now());
    let r = s.http("POST", &target, &[("Content-Type", "application/json")], Some(body.as_bytes()));
    assert_eq!(r.status, 413);
    // The server is fine afterwards.
    assert_eq!(s.http("GET", "/up", &[], None).status, 200);
}

// Project decision: HTTP keep-alive. Several requests on one connection.
#[test]
fn http_keep_alive() {
    let s = Server::start(None);
    let mut conn = HttpConn::open(s.port).unwrap();
    for _ in 0..3 {
        let r = conn.request("GET", "/up", &[], None).unwrap();
        assert_eq!((r.status, r.text().as_str()), (200, "OK"));
        let body = json!({"name": "e", "channel": "orders", "data": "1"}).to_string();
        let target = signed_target(&s.app, "POST", &s.app.path("/events"), &[], Some(body.as_bytes()), now());
        let r = conn.request("POST", &target, &[("Content-Type", "application/json")], Some(body.as_bytes())).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let r = conn
            .request("GET", &signed_target(&s.app, "GET", &s.app.path("/channels"), &[], None, now()), &[], None)
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
}
