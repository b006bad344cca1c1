//! Durable history, rewind, cold recovery and restart continuity
//! (`docs/protocol/v2.md#durable-history`, `docs/protocol/v2.md#rewind`,
//! `docs/protocol/v2.md#cold-tier`), against the real binary and its store.

use e2e::*;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn publish_n(s: &Server, channel: &str, range: std::ops::RangeInclusive<u32>) {
    for i in range {
        s.publish_ok(json!({"name": "e", "channel": channel, "data": i.to_string()}));
    }
}

fn history(s: &Server, channel: &str, query: &[(&str, &str)]) -> Response {
    s.get(&format!("/channels/{channel}/history"), query)
}

fn serials(page: &Value) -> Vec<u64> {
    page["items"].as_array().unwrap().iter().map(|i| i["serial"].as_u64().unwrap()).collect()
}

// `docs/protocol/v2.md#http-history`
#[test]
fn http_history_pages_with_cursors() {
    let s = Server::start(None);
    publish_n(&s, "orders", 1..=5);
    let r = history(&s, "orders", &[("limit", "2")]);
    assert_eq!(r.status, 200, "{}", r.text());
    let page = r.json();
    assert_eq!(serials(&page), vec![5, 4]);
    let item = &page["items"][0];
    for key in [
        "stream_id",
        "serial",
        "published_at_ms",
        "message_id",
        "event_name",
        "operation_kind",
        "payload_size_bytes",
        "message",
    ] {
        assert!(item.get(key).is_some(), "item lacks {key}: {item}");
    }
    assert_eq!(item["operation_kind"], "append");
    assert_eq!(item["message"]["data"], "5");
    assert_eq!(item["message"]["serial"], 5);
    assert_eq!(item["message"]["message_id"], item["message_id"]);
    assert_eq!(page["has_more"], true);
    assert_eq!(page["direction"], "newest_first");
    assert_eq!(page["continuity"]["newest_available_serial"], 5);
    assert_eq!(page["continuity"]["complete"], false);
    assert_eq!(page["stream_state"]["durable_state"], "healthy");
    let cursor = page["next_cursor"].as_str().expect("string next_cursor").to_owned();
    let next = history(&s, "orders", &[("limit", "2"), ("cursor", &cursor)]).json();
    assert_eq!(serials(&next), vec![3, 2]);
    let last = history(&s, "orders", &[("limit", "2"), ("cursor", next["next_cursor"].as_str().unwrap())]).json();
    assert_eq!(serials(&last), vec![1]);
    assert_eq!((last["has_more"].clone(), last["next_cursor"].clone()), (json!(false), Value::Null));
    assert_eq!(last["continuity"]["complete"], true);

    let oldest =
        history(&s, "orders", &[("direction", "oldest_first"), ("start_serial", "2"), ("end_serial", "4")]).json();
    assert_eq!(serials(&oldest), vec![2, 3, 4]);

    history(&s, "orders", &[("direction", "sideways")]).assert_error(400, "invalid_input");
    history(&s, "orders", &[("limit", "0")]).assert_error(400, "invalid_input");
    history(&s, "orders", &[("start_serial", "4"), ("end_serial", "2")]).assert_error(400, "invalid_input");
    let r = history(&s, "orders", &[("limit", "2"), ("cursor", &cursor), ("direction", "oldest_first")]);
    r.assert_error(400, "invalid_input");
    assert!(r.text().contains("Invalid history cursor"), "{}", r.text());
    let mut tampered = cursor.clone().into_bytes();
    tampered[12] = if tampered[12] == b'A' { b'B' } else { b'A' };
    let r = history(&s, "orders", &[("limit", "2"), ("cursor", std::str::from_utf8(&tampered).unwrap())]);
    r.assert_error(400, "invalid_input");
    // A cursor is bound to its channel.
    publish_n(&s, "other", 1..=1);
    history(&s, "other", &[("limit", "2"), ("cursor", &cursor)]).assert_error(400, "invalid_input");
    // A channel never published to has an empty history.
    let empty = history(&s, "never", &[]).json();
    assert_eq!((empty["items"].clone(), empty["has_more"].clone()), (json!([]), json!(false)));
    // Unsigned requests are refused like every other API route.
    assert_eq!(s.http("GET", "/apps/app-id/channels/orders/history", &[], None).status, 400);
}

// `docs/protocol/v2.md#http-history` and `docs/protocol/v2.md#rewind-request`: history and rewind
// switched off.
#[test]
fn history_disabled() {
    let s = Server::start(Some(&config("[history]\nenabled = false", &[AppConfig::dev()])));
    publish_n(&s, "orders", 1..=2);
    history(&s, "orders", &[]).assert_error(422, "feature_disabled");
    let mut c = v2_connected(&s);
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "orders", "rewind": {"count": 2}}}));
    assert!(c.expect_v2_error(4300).contains("rewind"));
    // Without a store, V2 still works from memory.
    let f = v2_subscribe(&mut c, "orders");
    assert_eq!(f["serial"], 2);
}

// `docs/protocol/v2.md#rewind-delivery-order`: rewind by count, the exact order and the summary.
#[test]
fn rewind_by_count() {
    let s = Server::start(None);
    publish_n(&s, "orders", 1..=5);
    let mut c = v2_connected(&s);
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "orders", "rewind": {"count": 3}}}));
    let ack = c.recv_json(T);
    assert_eq!(ack["event"], "sockudo_internal:subscription_succeeded", "{ack}");
    assert_eq!(data_json(&ack)["attach_serial"], 5);
    for serial in 3..=5 {
        let f = c.recv_json(T);
        assert_eq!((f["event"].as_str(), f["serial"].as_u64()), (Some("e"), Some(serial)), "{f}");
        assert_eq!(f["data"], serial.to_string());
    }
    let done = c.recv_json(T);
    assert_eq!(done["event"], "sockudo:rewind_complete", "{done}");
    assert_eq!(done["channel"], "orders");
    assert_eq!(
        done["data"],
        json!({"historical_count": 3, "live_count": 0, "complete": false, "truncated_by_retention": false, "truncated_by_limit": true})
    );
    // Live delivery continues with the next serial.
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "6"}));
    assert_eq!(c.recv_json(T)["serial"], 6);

    let mut all = v2_connected(&s);
    all.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "orders", "rewind": "6"}}));
    all.expect_event("sockudo_internal:subscription_succeeded");
    let got: Vec<u64> = (0..6).map(|_| all.recv_json(T)["serial"].as_u64().unwrap()).collect();
    assert_eq!(got, vec![1, 2, 3, 4, 5, 6]);
    let done = all.expect_event("sockudo:rewind_complete");
    assert_eq!(done["data"]["complete"], true, "{done}");
    assert_eq!(done["data"]["historical_count"], 6, "{done}");
}

// `docs/protocol/v2.md#rewind-delivery-order`: a message published while the rewind is read arrives
// once, after history, before rewind_complete. A publisher thread runs while many rewinds
// subscribe.
#[test]
fn rewind_with_concurrent_live_messages() {
    let s = Arc::new(Server::start(None));
    publish_n(&s, "busy", 1..=20);
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 20;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                s.publish_ok(json!({"name": "e", "channel": "busy", "data": n.to_string()}));
            }
        })
    };
    for _ in 0..10 {
        let mut c = v2_connected(&s);
        c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "busy", "rewind": {"count": 5}}}));
        let ack = c.expect_event("sockudo_internal:subscription_succeeded");
        let attach = data_json(&ack)["attach_serial"].as_u64().unwrap();
        let mut seen = Vec::new();
        let done = loop {
            let f = c.recv_json(T);
            if f["event"] == "sockudo:rewind_complete" {
                break f;
            }
            seen.push(f["serial"].as_u64().unwrap());
        };
        let history: Vec<u64> = (attach - 4..=attach).collect();
        assert_eq!(&seen[..5], &history[..], "history first, oldest to newest: {seen:?}");
        let live = &seen[5..];
        assert!(live.windows(2).all(|w| w[1] == w[0] + 1), "live frames in order without gaps: {seen:?}");
        assert!(live.first().is_none_or(|&f| f == attach + 1), "live continues after attach: {seen:?}");
        assert_eq!(done["data"]["live_count"], live.len(), "{done}");
        // Then normal live delivery, still contiguous.
        let next = c.recv_json(T)["serial"].as_u64().unwrap();
        assert_eq!(next, seen.last().unwrap() + 1);
    }
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
}

// `docs/protocol/v2.md#rewind-request`
#[test]
fn rewind_errors() {
    let s = Server::start(None);
    let mut v1 = s.connect();
    v1.send_json(&json!({"event": "pusher:subscribe", "data": {"channel": "orders", "rewind": {"count": 1}}}));
    assert_eq!(v1.expect_error(4300), "History error: rewind only supported on protocol V2");
    v1.expect_no_frame(QUIET);
    let mut c = v2_connected(&s);
    for bad in [json!(0), json!({"count": 0}), json!({"minutes": 1}), json!(true)] {
        c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "orders", "rewind": bad}}));
        assert!(c.expect_v2_error(4000).contains("rewind"), "{bad}");
    }
    // None of them subscribed.
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "x"}));
    c.expect_no_frame(QUIET);
}

// `docs/protocol/v2.md#rewind-request`: seconds rewind returns what was published within the window.
#[test]
fn rewind_by_seconds() {
    let s = Server::start(None);
    publish_n(&s, "orders", 1..=3);
    std::thread::sleep(Duration::from_millis(2100));
    publish_n(&s, "orders", 4..=5);
    let mut c = v2_connected(&s);
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "orders", "rewind": {"seconds": 1}}}));
    c.expect_event("sockudo_internal:subscription_succeeded");
    assert_eq!(c.recv_json(T)["serial"], 4);
    assert_eq!(c.recv_json(T)["serial"], 5);
    let done = c.recv_json(T);
    assert_eq!(done["event"], "sockudo:rewind_complete");
    assert_eq!(done["data"]["historical_count"], 2);
}

// `docs/protocol/v2.md#websocket-history`
#[test]
fn ws_history_until_attach() {
    let s = Server::start(None);
    publish_n(&s, "orders", 1..=3);
    let mut c = v2_connected(&s);
    let attach = data_json(&v2_subscribe(&mut c, "orders"))["attach_serial"].as_u64().unwrap();
    assert_eq!(attach, 3);
    publish_n(&s, "orders", 4..=5);
    c.recv_json(T);
    c.recv_json(T);
    c.send_json(&json!({"event": "sockudo:channel_history", "data": {"channel": "orders", "until_attach": true}}));
    let f = c.expect_event("sockudo:channel_history");
    assert_eq!(f["channel"], "orders");
    let page = &f["data"];
    assert_eq!(serials(page), vec![3, 2, 1], "{f}");
    assert_eq!(
        (page["bounds"]["attach_serial"].as_u64(), page["bounds"]["until_attach"].as_bool()),
        (Some(3), Some(true))
    );
    // Paging with the cursor and the serial aliases of the WebSocket form.
    c.send_json(&json!({"event": "sockudo:channel_history", "data": {"channel": "orders", "params": {"limit": 2, "start": 2, "direction": "forwards"}}}));
    let page = c.expect_event("sockudo:channel_history")["data"].clone();
    assert_eq!(serials(&page), vec![2, 3]);
    let cursor = page["next_cursor"].as_str().unwrap();
    c.send_json(&json!({"event": "sockudo:channel_history", "data": {"channel": "orders", "params": {"limit": 2, "start": 2, "direction": "forwards", "cursor": cursor}}}));
    assert_eq!(serials(&c.expect_event("sockudo:channel_history")["data"]), vec![4, 5]);

    c.send_json(&json!({"event": "sockudo:channel_history", "data": {"channel": "elsewhere"}}));
    assert!(c.expect_v2_error(4301).contains("not subscribed"));
    let mut v1 = s.connect();
    v1.subscribe("orders");
    v1.send_json(&json!({"event": "pusher:channel_history", "data": {"channel": "orders"}}));
    v1.expect_error(4300);
}

/// The V2 frames of `channel` a client receives until `n` have arrived.
fn take_serials(c: &mut Client, n: usize) -> Vec<u64> {
    (0..n).map(|_| c.recv_json(T)["serial"].as_u64().unwrap()).collect()
}

// `docs/protocol/v2.md#cold-tier` and issue 4 "restart continuity": after a clean stop and after
// kill -9, serials and stream ids continue, history is intact, and a pre-restart position recovers
// from the cold tier (the hot buffer died with the process).
#[test]
fn restart_continuity_and_cold_resume() {
    let mut s = Server::start(None);
    let mut c = v2_connected(&s);
    let ack = v2_subscribe(&mut c, "orders");
    let stream = ack["stream_id"].as_str().unwrap().to_owned();
    publish_n(&s, "orders", 1..=2);
    let seen = c.recv_json(T);
    c.recv_json(T);
    let (n, last_id) = (seen["serial"].as_u64().unwrap(), seen["message_id"].as_str().unwrap().to_owned());
    assert_eq!(n, 1);
    c.close();
    publish_n(&s, "orders", 3..=4);
    s.sigterm();
    s.wait_exit(Duration::from_secs(20)).expect("graceful stop");
    s.restart(None);

    let mut c = v2_connected(&s);
    let ack = v2_subscribe(&mut c, "orders");
    assert_eq!((ack["stream_id"].as_str(), ack["serial"].as_u64()), (Some(stream.as_str()), Some(4)), "{ack}");
    resume(&mut c, json!({"orders": {"stream_id": stream, "serial": n, "last_message_id": last_id}}));
    assert_eq!(take_serials(&mut c, 3), vec![2, 3, 4]);
    let d = resume_success(&mut c);
    assert_eq!(d["recovered"][0]["source"], "cold", "{d}");
    assert_eq!(d["recovered"][0]["replayed"], 3, "{d}");
    assert_eq!(d["recovered"][0]["position"]["serial"], 4, "{d}");
    c.close();

    // kill -9, and a restart with another shard count: everything continues the same.
    s.kill9();
    s.restart(Some(if env_shards() == 1 { 2 } else { 1 }));
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "5"}));
    let page = history(&s, "orders", &[("direction", "oldest_first")]).json();
    assert_eq!(serials(&page), vec![1, 2, 3, 4, 5]);
    assert!(page["items"].as_array().unwrap().iter().all(|i| i["stream_id"] == stream.as_str()), "{page}");
    let mut c = v2_connected(&s);
    v2_subscribe(&mut c, "orders");
    resume(&mut c, json!({"orders": {"stream_id": stream, "serial": 4}}));
    assert_eq!(take_serials(&mut c, 1), vec![5]);
    assert_eq!(resume_success(&mut c)["recovered"][0]["source"], "hot");
    // A position from a stream the server never had fails explicitly.
    resume(&mut c, json!({"orders": {"stream_id": "gone", "serial": 1}}));
    let f = data_json(&c.expect_event("sockudo:resume_failed"));
    assert_eq!(f["code"], "stream_reset");
}

// Issue 4's crash test: publish continuously with fsync = "always", kill -9 mid-stream, and
// check that every publish that got a 200 is in history with gapless serials, and that a
// client resuming from before the crash gets every message after its position.
#[test]
fn kill_9_loses_no_acknowledged_publish() {
    let cfg = config("[storage]\nfsync = \"always\"", &[AppConfig::dev()]);
    let mut s = Server::start(Some(&cfg));
    let mut c = v2_connected(&s);
    let stream = v2_subscribe(&mut c, "crash")["stream_id"].as_str().unwrap().to_owned();
    publish_n(&s, "crash", 1..=1);
    let position = c.recv_json(T)["serial"].as_u64().unwrap();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let port = s.port;
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let acked = acked.clone();
            let app = s.app.clone();
            std::thread::spawn(move || {
                for i in 0.. {
                    let data = format!("w{w}-{i}");
                    let body = json!({"name": "e", "channel": "crash", "data": data}).to_string();
                    let target = signed_target(&app, "POST", &app.path("/events"), &[], Some(body.as_bytes()), now());
                    match try_http(
                        port,
                        "POST",
                        &target,
                        &[("Content-Type", "application/json")],
                        Some(body.as_bytes()),
                    ) {
                        Ok(r) if r.status == 200 => acked.lock().unwrap().push(data),
                        _ => return,
                    }
                }
            })
        })
        .collect();
    while acked.lock().unwrap().len() < 300 {
        std::thread::sleep(Duration::from_millis(10));
    }
    s.kill9();
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    s.restart(None);

    let mut stored = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = vec![("direction", "oldest_first"), ("limit", "100")];
        if let Some(c) = &cursor {
            q.push(("cursor", c.as_str()));
        }
        let page = history(&s, "crash", &q).json();
        stored.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let serials: Vec<u64> = stored.iter().map(|i| i["serial"].as_u64().unwrap()).collect();
    assert_eq!(serials, (1..=stored.len() as u64).collect::<Vec<_>>(), "history is gapless from 1");
    let data: std::collections::HashSet<String> =
        stored.iter().map(|i| i["message"]["data"].as_str().unwrap().to_owned()).collect();
    let lost: Vec<&String> = acked.iter().filter(|d| !data.contains(*d)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged publishes missing after kill -9: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(stored.iter().all(|i| i["stream_id"] == stream.as_str()));

    // A client from before the crash recovers everything after its position.
    let mut c = v2_connected(&s);
    v2_subscribe(&mut c, "crash");
    let newest = *serials.last().unwrap();
    let missed = (newest - position) as usize;
    let max = 1000; // connection_recovery.max_buffer_size: larger gaps are refused, not truncated
    resume(&mut c, json!({"crash": {"stream_id": stream, "serial": position}}));
    if missed <= max {
        assert_eq!(take_serials(&mut c, missed), (position + 1..=newest).collect::<Vec<_>>());
        let d = resume_success(&mut c);
        assert_eq!(d["recovered"][0]["source"], "cold", "{d}");
    } else {
        let d = data_json(&c.expect_event("sockudo:resume_failed"));
        assert_eq!(d["reason"], "recovery_window_exceeded");
    }
}

// `docs/protocol/v2.md#rewind-delivery-order`: a count rewind that reaches below what retention
// kept says so.
#[test]
fn rewind_reports_retention_truncation() {
    let s = Server::start(Some(&config("[history]\nmax_messages_per_channel = 2", &[AppConfig::dev()])));
    publish_n(&s, "orders", 1..=5);
    let mut c = v2_connected(&s);
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "orders", "rewind": {"count": 5}}}));
    c.expect_event("sockudo_internal:subscription_succeeded");
    assert_eq!(take_serials(&mut c, 2), vec![4, 5]);
    let done = c.expect_event("sockudo:rewind_complete");
    assert_eq!(
        done["data"],
        json!({"historical_count": 2, "live_count": 0, "complete": false, "truncated_by_retention": true, "truncated_by_limit": false})
    );
}

fn operator(s: &Server, channel: &str, operation: &str, body: Value) -> Response {
    s.api("POST", &s.app.path(&format!("/channels/{channel}/history/{operation}")), &[], Some(&body))
}

// `docs/protocol/v2.md#history-operator-endpoints`: state, purge by mode, reset to a new stream
// (clients holding old positions get stream_reset), the confirmation rules, and all of it
// after a kill -9.
#[test]
fn operator_state_purge_and_reset() {
    let mut s = Server::start(None);
    publish_n(&s, "orders", 1..=5);
    let state = s.get("/channels/orders/history/state", &[]).json();
    let stream = state["stream"]["stream_id"].as_str().unwrap().to_owned();
    assert_eq!(state["channel"], "orders");
    assert_eq!(state["stream"]["next_serial"], 6, "{state}");
    let retained = &state["stream"]["retained"];
    assert_eq!(
        (retained["retained_messages"].as_u64(), retained["oldest_available_serial"].as_u64()),
        (Some(5), Some(1))
    );
    assert_eq!(retained["newest_available_serial"], 5);
    assert_eq!(state["stream"]["state"]["durable_state"], "healthy");

    let confirm =
        |operation: &str| json!({"confirm_channel": "orders", "confirm_operation": operation, "reason": "test"});
    let mut body = confirm("purge");
    body["mode"] = json!("before_serial");
    body["before_serial"] = json!(3);
    let r = operator(&s, "orders", "purge", body).json();
    assert_eq!(
        (r["ok"].as_bool(), r["operation"].as_str(), r["mode"].as_str()),
        (Some(true), Some("purge"), Some("before_serial"))
    );
    assert_eq!((r["purged_messages"].as_u64(), r["before_serial"].as_u64()), (Some(2), Some(3)), "{r}");
    assert_eq!(r["stream"]["stream_id"], stream.as_str());
    assert_eq!(serials(&history(&s, "orders", &[("direction", "oldest_first")]).json()), vec![3, 4, 5]);

    for bad in [
        json!({"confirm_channel": "other", "confirm_operation": "purge", "reason": "x", "mode": "all"}),
        json!({"confirm_channel": "orders", "confirm_operation": "reset", "reason": "x", "mode": "all"}),
        json!({"confirm_channel": "orders", "confirm_operation": "purge", "reason": "", "mode": "all"}),
        json!({"confirm_channel": "orders", "confirm_operation": "purge", "reason": "x", "mode": "all", "before_serial": 2}),
        json!({"confirm_channel": "orders", "confirm_operation": "purge", "reason": "x", "mode": "before_time_ms"}),
    ] {
        operator(&s, "orders", "purge", bad).assert_error(400, "invalid_input");
    }
    operator(&s, "orders", "reset", confirm("purge")).assert_error(400, "invalid_input");

    // A subscriber at serial 5 of the old stream, then the reset.
    let mut c = v2_connected(&s);
    assert_eq!(v2_subscribe(&mut c, "orders")["serial"], 5);
    let r = operator(&s, "orders", "reset", confirm("reset")).json();
    let new_stream = r["new_stream_id"].as_str().unwrap().to_owned();
    assert_ne!(new_stream, stream);
    assert_eq!(
        (r["previous_stream_id"].as_str(), r["purged_messages"].as_u64()),
        (Some(stream.as_str()), Some(3)),
        "{r}"
    );
    assert_eq!((r["stream"]["next_serial"].as_u64(), r["reason"].as_str()), (Some(1), Some("test")), "{r}");
    assert!(serials(&history(&s, "orders", &[]).json()).is_empty());
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "after"}));
    let f = c.expect_channel_event("e", "orders");
    assert_eq!((f["serial"].as_u64(), f["stream_id"].as_str()), (Some(1), Some(new_stream.as_str())), "{f}");
    resume(&mut c, json!({"orders": {"stream_id": stream, "serial": 5}}));
    let failed = data_json(&c.expect_event("sockudo:resume_failed"));
    assert_eq!(
        (failed["code"].as_str(), failed["reason"].as_str()),
        (Some("stream_reset"), Some("stream_id_mismatch"))
    );

    s.kill9();
    s.restart(None);
    let state = s.get("/channels/orders/history/state", &[]).json();
    assert_eq!(state["stream"]["stream_id"], new_stream.as_str());
    assert_eq!(state["stream"]["next_serial"], 2, "{state}");
    assert_eq!(serials(&history(&s, "orders", &[]).json()), vec![1]);
    let mut all = confirm("purge");
    all["mode"] = json!("all");
    assert_eq!(operator(&s, "orders", "purge", all).json()["purged_messages"], 1);
    operator(&s, "never-published", "purge", {
        let mut b = confirm("purge");
        b["confirm_channel"] = json!("never-published");
        b["mode"] = json!("all");
        b
    })
    .assert_error(404, "not_found");

    // A channel reset while nobody uses it keeps its new stream past the owner's
    // housekeeping (once a second): the next publish is serial 1 of it, not refused by a
    // store that knows only the reset's stream id.
    drop(c);
    let r = operator(&s, "orders", "reset", confirm("reset")).json();
    let idle_stream = r["new_stream_id"].as_str().unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    s.publish_ok(json!({"name": "e", "channel": "orders", "data": "after an idle reset"}));
    let page = history(&s, "orders", &[]).json();
    assert_eq!(serials(&page), vec![1]);
    assert_eq!(page["continuity"]["stream_id"].as_str(), Some(idle_stream.as_str()), "{page}");
}

#[test]
fn operator_endpoints_need_history() {
    let s = Server::start(Some(&config("[history]\nenabled = false", &[AppConfig::dev()])));
    s.get("/channels/orders/history/state", &[]).assert_error(422, "feature_disabled");
    let body = json!({"confirm_channel": "orders", "confirm_operation": "reset", "reason": "x"});
    operator(&s, "orders", "reset", body).assert_error(422, "feature_disabled");
}
