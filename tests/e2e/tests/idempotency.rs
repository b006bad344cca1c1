//! Publish idempotency (`docs/protocol/http-api.md#idempotency`), including where it differs from
//! the reference: a failed publish releases its key.

use e2e::*;
use serde_json::{json, Value};

fn publish_with_header(s: &Server, body: &Value, key: &str) -> Response {
    let bytes = body.to_string().into_bytes();
    let headers = [("Content-Type", "application/json"), ("X-Idempotency-Key", key)];
    s.api_raw(&s.app, "POST", &s.app.path("/events"), &[], Some(&bytes), &headers)
}

// `docs/protocol/http-api.md#single-publish-keys`: body key.
#[test]
fn duplicate_body_key_is_delivered_once() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.subscribe("orders");
    let body =
        json!({"name": "e", "channel": "orders", "data": "1", "info": "subscription_count", "idempotency_key": "k-1"});
    let first = s.publish(body.clone());
    assert_eq!(first.status, 200, "{}", first.text());
    let second = s.publish(body);
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(first.text(), second.text(), "the retry must get the stored response");
    assert!(first.json()["channels"]["orders"]["acknowledgement_id"].is_string());
    c.expect_event("e");
    // The retry's payload is not compared: a different payload with the same key is not sent.
    let r = s.publish(json!({"name": "other", "channel": "orders", "data": "2", "info": "subscription_count", "idempotency_key": "k-1"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), first.text());
    c.expect_no_frame(QUIET);
    // The key never reaches V1 clients; another key is a new publish.
    s.publish_ok(json!({"name": "e2", "channel": "orders", "data": "3", "idempotency_key": "k-2"}));
    assert_eq!(c.recv_json(T), json!({"event": "e2", "channel": "orders", "data": "3"}));
}

// `docs/protocol/http-api.md#single-publish-keys`: header key, and body key wins over header key.
#[test]
fn header_key_and_precedence() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.subscribe("orders");
    let body = json!({"name": "e", "channel": "orders", "data": "1"});
    let first = publish_with_header(&s, &body, "h-1");
    assert_eq!(first.status, 200, "{}", first.text());
    let second = publish_with_header(&s, &body, "h-1");
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(first.text(), second.text());
    c.expect_event("e");
    c.expect_no_frame(QUIET);

    // Body key "b-1" (new) wins over header key "h-1" (used): published.
    let r = publish_with_header(
        &s,
        &json!({"name": "f", "channel": "orders", "data": "1", "idempotency_key": "b-1"}),
        "h-1",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    c.expect_event("f");
    // Body key "h-1" (used) wins over header key "fresh": duplicate, not published.
    let r = publish_with_header(
        &s,
        &json!({"name": "g", "channel": "orders", "data": "1", "idempotency_key": "h-1"}),
        "fresh",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    c.expect_no_frame(QUIET);
    // Header key shared with body keys: "b-1" is used.
    let r = publish_with_header(&s, &json!({"name": "h", "channel": "orders", "data": "1"}), "b-1");
    assert_eq!(r.status, 200, "{}", r.text());
    c.expect_no_frame(QUIET);
}

// `docs/protocol/http-api.md#single-publish-keys`
#[test]
fn key_validation() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.subscribe("orders");
    let body = |key: &str| json!({"name": "e", "channel": "orders", "data": "1", "idempotency_key": key});
    let j = s.publish(body("")).assert_error(400, "invalid_input");
    assert_eq!(j["error"], "Idempotency key must not be empty");
    let j = s.publish(body(&"k".repeat(129))).assert_error(400, "invalid_input");
    assert_eq!(j["error"], "Idempotency key exceeds maximum length of 128 characters");
    let r = publish_with_header(&s, &json!({"name": "e", "channel": "orders", "data": "1"}), &"k".repeat(129));
    r.assert_error(400, "invalid_input");
    c.expect_no_frame(QUIET);
    s.publish_ok(body(&"k".repeat(128)));
    c.expect_event("e");
}

// `docs/protocol/http-api.md#single-publish-keys` (unlike the reference): a failed publish releases
// the key, so the corrected retry goes through.
#[test]
fn failed_publish_releases_key() {
    let s = Server::start(Some(&config("", &[AppConfig::dev().set("max_event_payload_in_kb", "1")])));
    let mut c = s.connect();
    c.subscribe("orders");
    s.publish(json!({"name": "e", "channel": "orders", "data": "x".repeat(2000), "idempotency_key": "k"}))
        .assert_error(413, "payload_too_large");
    s.publish(json!({"name": "e", "channel": "bad$", "data": "1", "idempotency_key": "k"}))
        .assert_error(400, "invalid_input");
    let r = s.publish(json!({"name": "e", "channel": "orders", "data": "ok", "idempotency_key": "k"}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(c.expect_event("e")["data"], "ok");
}

// Issue 4: a retry after a restart (kill -9 included) is still answered once, from the store.
#[test]
fn keys_survive_kill_9() {
    let mut s = Server::start(None);
    let body = json!({"name": "e", "channel": "orders", "data": "once", "info": "subscription_count", "idempotency_key": "k-restart"});
    let first = s.publish_ok(body.clone());
    let batch_item = json!({"name": "e", "channel": "orders", "data": "batched", "idempotency_key": "k-batch"});
    assert_eq!(s.batch(json!([batch_item.clone()])).status, 200);
    s.kill9();
    s.restart(None);
    let mut c = s.connect();
    c.subscribe("orders");
    assert_eq!(s.publish_ok(body), first, "the stored response, not a new publish");
    assert_eq!(s.batch(json!([batch_item])).status, 200);
    c.expect_no_frame(QUIET);
    let history = s.get("/channels/orders/history", &[]).json();
    let data: Vec<&str> =
        history["items"].as_array().unwrap().iter().map(|i| i["message"]["data"].as_str().unwrap()).collect();
    assert_eq!(data, vec!["batched", "once"], "each delivered exactly once");
    // A new key still publishes.
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "new", "idempotency_key": "k-other"}));
    assert_eq!(c.expect_event("e")["data"], "new");
}
