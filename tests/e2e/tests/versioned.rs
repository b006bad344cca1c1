//! Mutable messages (`docs/protocol/v2.md#mutable-messages`): versioned creates and their acks,
//! update / delete / append over HTTP with their frames, op_id idempotency, reads of the latest
//! version and of the versions, history substitution, recovery in both append modes, concurrent
//! writers, a long append stream with a resume in the middle, and kill -9 with fsync always.

use e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

const CH: &str = "chat";

fn mutate(s: &Server, channel: &str, serial: &str, action: &str, body: Value) -> Response {
    s.api("POST", &messages_path(s, channel, serial, &format!("/{action}")), &[], Some(&body))
}

fn mutate_ok(s: &Server, channel: &str, serial: &str, action: &str, body: Value) -> Value {
    let r = mutate(s, channel, serial, action, body);
    assert_eq!(r.status, 200, "{action}: {}", r.text());
    r.json()
}

fn latest(s: &Server, channel: &str, serial: &str) -> Response {
    s.api("GET", &messages_path(s, channel, serial, ""), &[], None)
}

fn versions(s: &Server, channel: &str, serial: &str, query: &[(&str, &str)]) -> Response {
    s.api("GET", &messages_path(s, channel, serial, "/versions"), query, None)
}

fn headers(frame: &Value) -> &Value {
    &frame["extras"]["headers"]
}

fn v2_connected_full(s: &Server) -> Client {
    let mut c = s.connect_raw("/app/app-key?protocol=2&append_mode=full", None);
    let f = c.recv_json(T);
    assert_eq!(f["event"], "sockudo:connection_established", "{f}");
    c.socket_id = data_json(&f)["socket_id"].as_str().unwrap().to_owned();
    c
}

// `docs/protocol/v2.md#versioned-creates`: every stored HTTP publish is a create; its ack names
// it; V2 frames carry the reserved headers, V1 frames stay plain Pusher events.
#[test]
fn creates_are_acknowledged_with_their_serials() {
    let s = Server::start(None);
    let mut v2 = v2_connected(&s);
    v2_subscribe(&mut v2, CH);
    let mut v1 = s.connect();
    v1.subscribe(CH);
    let (ms, entry) = create(&s, CH, "msg", "hello");
    assert_eq!(entry["subscription_count"], 2, "{entry}");
    assert_eq!((entry["history_serial"].as_u64(), entry["delivery_serial"].as_u64()), (Some(1), Some(1)), "{entry}");
    assert_eq!(entry["version_serial"].as_str(), Some(ms.as_str()), "{entry}");
    let f = next_frame(&mut v2, "msg");
    assert_eq!((f["data"].as_str(), f["serial"].as_u64()), (Some("hello"), Some(1)));
    let h = headers(&f);
    assert_eq!(h["sockudo_action"], "message.create", "{f}");
    assert_eq!(h["sockudo_message_serial"].as_str(), Some(ms.as_str()));
    assert_eq!(h["sockudo_history_serial"], 1);
    assert!(h["sockudo_version_timestamp_ms"].as_u64().unwrap() > 0);
    let f1 = v1.expect_channel_event("msg", CH);
    assert!(f1.get("extras").is_none() && f1.get("serial").is_none(), "{f1}");
    // Without `info` the answer stays Pusher's.
    assert_eq!(s.publish_ok(json!({"name": "m", "channel": CH, "data": "x"})), json!({"ok": true}));
    // The publisher's own extras and headers stay; `sockudo_` headers are the server's.
    let ack = s.publish_ok(json!({"name": "m", "channel": CH, "data": "y", "info": "",
        "extras": {"headers": {"a": "1", "sockudo_action": "forged"}, "k": true}}));
    assert!(ack["channels"][CH]["message_serial"].is_string(), "{ack}");
    next_frame(&mut v2, "m");
    let f = next_frame(&mut v2, "m");
    assert_eq!(
        (headers(&f)["a"].as_str(), headers(&f)["sockudo_action"].as_str()),
        (Some("1"), Some("message.create"))
    );
    assert_eq!(f["extras"]["k"], true);
}

// `docs/protocol/v2.md#mutation-endpoints`, `#mutation-frames`, `#append-mode`, `#reading-messages`.
#[test]
fn update_delete_and_append() {
    let s = Server::start(None);
    let mut delta = v2_connected(&s);
    v2_subscribe(&mut delta, CH);
    let mut full = v2_connected_full(&s);
    v2_subscribe(&mut full, CH);
    let mut v1 = s.connect();
    v1.subscribe(CH);
    let (ms, _) = create(&s, CH, "msg", "Hello");
    for c in [&mut delta, &mut full] {
        next_frame(c, "msg");
    }
    v1.expect_channel_event("msg", CH);

    let r = mutate_ok(&s, CH, &ms, "append", json!({"data": ", world", "client_id": "agent"}));
    assert_eq!(
        (r["action"].as_str(), r["status"].as_str(), r["accepted"].as_bool()),
        (Some("append"), Some("applied"), Some(true)),
        "{r}"
    );
    assert_eq!((r["history_serial"].as_u64(), r["delivery_serial"].as_u64()), (Some(1), Some(2)), "{r}");
    assert_eq!((r["channel"].as_str(), r["message_serial"].as_str()), (Some(CH), Some(ms.as_str())));
    let f = next_frame(&mut delta, "sockudo:message.append");
    assert_eq!(
        (f["data"].as_str(), f["name"].as_str(), f["serial"].as_u64()),
        (Some(", world"), Some("msg"), Some(2)),
        "{f}"
    );
    assert_eq!(f["user_id"], "agent");
    assert_eq!(headers(&f)["sockudo_version_serial"], r["version_serial"]);
    assert_eq!(headers(&f)["sockudo_action"], "message.append");
    let f = next_frame(&mut full, "sockudo:message.append");
    assert_eq!(f["data"].as_str(), Some("Hello, world"), "{f}");

    let r = mutate_ok(
        &s,
        CH,
        &ms,
        "update",
        json!({"name": "renamed", "extras": {"k": 1}, "description": "rename", "metadata": {"by": "ops"}}),
    );
    assert_eq!(r["delivery_serial"], 3);
    for c in [&mut delta, &mut full] {
        let f = next_frame(c, "sockudo:message.update");
        assert_eq!((f["data"].as_str(), f["name"].as_str()), (Some("Hello, world"), Some("renamed")), "{f}");
        assert_eq!(f["extras"]["k"], 1);
    }
    let r = mutate_ok(&s, CH, &ms, "delete", json!({"clear_fields": ["data"]}));
    assert_eq!(r["action"], "delete");
    let f = next_frame(&mut delta, "sockudo:message.delete");
    assert!(f["data"].is_null(), "{f}");
    // Mutations never reach V1 sockets.
    v1.expect_no_frame(Duration::from_millis(300));

    let item = latest(&s, CH, &ms).json();
    assert_eq!(item["channel"], CH);
    let item = &item["item"];
    assert_eq!(
        (item["event"].as_str(), item["action"].as_str()),
        (Some("sockudo:message.delete"), Some("delete")),
        "{item}"
    );
    assert!(item["data"].is_null());
    assert_eq!(
        (item["history_serial"].as_u64(), item["delivery_serial"].as_u64(), item["serial"].as_u64()),
        (Some(1), Some(4), Some(4))
    );
    assert_eq!(item["version"]["serial"], r["version_serial"]);
    assert!(item["version"]["timestamp_ms"].as_u64().unwrap() > 0);

    // Versions: newest first by default, pages by cursor, `next_cursor` null on the last page.
    let p = versions(&s, CH, &ms, &[("limit", "3")]).json();
    let actions: Vec<&str> = p["items"].as_array().unwrap().iter().map(|i| i["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["delete", "update", "append"], "{p}");
    assert_eq!(
        (p["has_more"].as_bool(), p["direction"].as_str(), p["limit"].as_u64()),
        (Some(true), Some("newest_first"), Some(3))
    );
    assert_eq!(p["items"][1]["version"]["description"], "rename");
    assert_eq!(p["items"][1]["version"]["metadata"], json!({"by": "ops"}));
    assert_eq!(p["items"][2]["data"], ", world", "append items carry the fragment");
    assert_eq!(p["items"][2]["version"]["client_id"], "agent");
    let rest = versions(&s, CH, &ms, &[("limit", "3"), ("cursor", p["next_cursor"].as_str().unwrap())]).json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!((rest["items"][0]["action"].as_str(), rest["has_more"].as_bool()), (Some("create"), Some(false)));
    assert!(rest["next_cursor"].is_null() && rest.get("next_cursor").is_some(), "{rest}");
    let old = versions(&s, CH, &ms, &[("direction", "oldest_first")]).json();
    let serials: Vec<u64> =
        old["items"].as_array().unwrap().iter().map(|i| i["delivery_serial"].as_u64().unwrap()).collect();
    assert_eq!(serials, [1, 2, 3, 4]);
}

// `docs/protocol/v2.md#op_id-idempotency`
#[test]
fn op_id_retries_are_duplicates() {
    let s = Server::start(None);
    let (ms, _) = create(&s, CH, "msg", "a");
    let mut c = v2_connected(&s);
    v2_subscribe(&mut c, CH);
    let first = mutate_ok(&s, CH, &ms, "append", json!({"data": "b", "op_id": "op-1"}));
    next_frame(&mut c, "sockudo:message.append");
    let again = mutate_ok(&s, CH, &ms, "append", json!({"op_id": "op-1", "data": "b"}));
    assert_eq!(again["status"], "duplicate", "{again}");
    for k in ["version_serial", "history_serial", "delivery_serial"] {
        assert_eq!(again[k], first[k], "{k}");
    }
    c.expect_no_frame(Duration::from_millis(300));
    let r = mutate(&s, CH, &ms, "append", json!({"data": "c", "op_id": "op-1"}));
    let e = r.assert_error(400, "invalid_input");
    assert!(e["error"].as_str().unwrap().contains("op-1"), "{e}");
    // The same op_id on another action is another operation.
    assert_eq!(mutate_ok(&s, CH, &ms, "update", json!({"data": "z", "op_id": "op-1"}))["status"], "applied");
    assert_eq!(latest(&s, CH, &ms).json()["item"]["data"], "z");
}

// Every error of `docs/protocol/v2.md#mutation-errors` (the 401s of a socket binding are in
// `socket_bound_mutations_follow_sign_in_capabilities`).
#[test]
fn mutation_errors() {
    let config = config("", &[AppConfig::dev().set("max_event_payload_in_kb", "600")]);
    let s = Server::start(Some(&config));
    let (ms, _) = create(&s, CH, "msg", "a");
    let unknown = "00000000000000000099:nope";
    mutate(&s, CH, unknown, "update", json!({"data": "x"})).assert_error(404, "not_found");
    mutate(&s, CH, "garbage", "update", json!({"data": "x"})).assert_error(404, "not_found");
    let other_stream = format!("{}:other", &ms[..20]);
    mutate(&s, CH, &other_stream, "update", json!({"data": "x"})).assert_error(404, "not_found");
    latest(&s, CH, unknown).assert_error(404, "not_found");
    versions(&s, CH, unknown, &[]).assert_error(404, "not_found");
    // A serial names a message in its own channel's stream only.
    mutate(&s, "other", &ms, "update", json!({"data": "x"})).assert_error(404, "not_found");
    for (action, body, why) in [
        ("update", json!({}), "needs"),
        ("update", json!({"data": "x", "clear_fields": ["data"]}), "both"),
        ("update", json!({"clear_fields": ["tags"]}), "clear_fields"),
        ("update", json!({"extras": [1]}), "extras"),
        ("append", json!({"data": 5}), "string"),
        ("append", json!({}), "required"),
        ("append", json!({"data": "x", "op_id": ""}), "op_id"),
        ("delete", json!({"name": "n"}), "name"),
    ] {
        let e = mutate(&s, CH, &ms, action, body).assert_error(400, "invalid_input");
        assert!(e["error"].as_str().unwrap().contains(why), "{action}: {e}");
    }
    s.post_malformed_json(&messages_path(&s, CH, &ms, "/update"));
    versions(&s, CH, &ms, &[("limit", "0")]).assert_error(400, "invalid_input");
    versions(&s, CH, &ms, &[("direction", "up")]).assert_error(400, "invalid_input");
    versions(&s, CH, &ms, &[("cursor", "bogus")]).assert_error(400, "invalid_input");
    // Per-operation data follows the app's payload limit; the text appends build, 1 MiB.
    let big = "x".repeat(600 * 1024 + 1);
    mutate(&s, CH, &ms, "append", json!({"data": big})).assert_error(413, "payload_too_large");
    let chunk = "y".repeat(600 * 1024);
    mutate_ok(&s, CH, &ms, "append", json!({"data": chunk}));
    let e = mutate(&s, CH, &ms, "append", json!({"data": chunk})).assert_error(413, "payload_too_large");
    assert!(e["error"].as_str().unwrap().contains("1048576"), "{e}");
    drop(s);

    let s = Server::start_with_env(None, &[("VERSIONED_MESSAGES_ENABLED", "false")]);
    let ack = s.publish_ok(json!({"name": "m", "channel": CH, "data": "a", "info": "subscription_count"}));
    assert!(ack["channels"][CH].get("message_serial").is_none(), "{ack}");
    mutate(&s, CH, &ms, "update", json!({"data": "x"})).assert_error(422, "feature_disabled");
    latest(&s, CH, &ms).assert_error(422, "feature_disabled");
}

// `docs/protocol/v2.md#history-substitution`: history and rewind show each mutable message as
// it stands; mutation rows are not listed separately.
#[test]
fn history_and_rewind_show_the_latest_version() {
    let s = Server::start(None);
    let (ms, _) = create(&s, CH, "msg", "Hel");
    s.publish_ok(json!({"name": "plain", "channel": CH, "data": "p"}));
    mutate_ok(&s, CH, &ms, "append", json!({"data": "lo"}));
    mutate_ok(&s, CH, &ms, "append", json!({"data": "!"}));
    let page = s.get(&format!("/channels/{CH}/history"), &[("direction", "oldest_first")]).json();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    assert_eq!(items[0]["operation_kind"], "message.append");
    let m = &items[0]["message"];
    assert_eq!(
        (m["event"].as_str(), m["data"].as_str(), m["serial"].as_u64()),
        (Some("sockudo:message.append"), Some("Hello!"), Some(4)),
        "{m}"
    );
    assert_eq!(m["extras"]["headers"]["sockudo_message_serial"].as_str(), Some(ms.as_str()));
    assert_eq!(
        (items[1]["operation_kind"].as_str(), items[1]["message"]["data"].as_str()),
        (Some("append"), Some("p"))
    );

    // Rewind in the default delta mode replays the aggregate, not the last fragment.
    let mut c = v2_connected(&s);
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": CH, "rewind": 10}}));
    let f = c.expect_channel_event("sockudo_internal:subscription_succeeded", CH);
    assert_eq!(data_json(&f)["attach_serial"], 4);
    let f = next_frame(&mut c, "sockudo:message.append");
    assert_eq!(f["data"], "Hello!");
    next_frame(&mut c, "plain");
    c.expect_event("sockudo:rewind_complete");
}

/// Connects, subscribes and resumes from `serial`; returns the frames replayed.
fn resumed_frames(c: &mut Client, stream: &str, serial: u64) -> (Vec<Value>, Value) {
    v2_subscribe(c, CH);
    resume(c, json!({ CH: {"stream_id": stream, "serial": serial} }));
    let mut frames = Vec::new();
    loop {
        let f = c.recv_json(T);
        if f["event"] == "sockudo:resume_success" {
            return (frames, data_json(&f));
        }
        frames.push(f);
    }
}

// `docs/protocol/v2.md#append-mode` on recovery: a delta-mode socket gets exactly the fragments
// it missed, a full-mode socket the message's newest append with the whole text; from the hot
// buffer and, after a kill -9, from durable history.
#[test]
fn recovery_in_both_append_modes() {
    let mut s = Server::start(None);
    let mut c = v2_connected(&s);
    let stream = v2_subscribe(&mut c, CH)["stream_id"].as_str().unwrap().to_owned();
    let (ms, _) = create(&s, CH, "msg", "a");
    mutate_ok(&s, CH, &ms, "append", json!({"data": "b"}));
    let (other, _) = create(&s, CH, "other", "1");
    for d in ["c", "d"] {
        mutate_ok(&s, CH, &ms, "append", json!({"data": d}));
    }
    mutate_ok(&s, CH, &other, "append", json!({"data": "2"}));
    for source in ["hot", "cold"] {
        if source == "cold" {
            s.kill9();
            s.restart(None);
        }
        let (frames, d) = resumed_frames(&mut v2_connected(&s), &stream, 2);
        assert_eq!(d["recovered"][0]["source"], source, "{d}");
        let data: Vec<&str> = frames.iter().map(|f| f["data"].as_str().unwrap()).collect();
        assert_eq!(data, ["1", "c", "d", "2"], "{source} delta");
        let (frames, d) = resumed_frames(&mut v2_connected_full(&s), &stream, 2);
        assert_eq!(d["recovered"][0]["position"]["serial"], 6, "{d}");
        let got: Vec<(u64, &str)> =
            frames.iter().map(|f| (f["serial"].as_u64().unwrap(), f["data"].as_str().unwrap())).collect();
        assert_eq!(got, [(3, "1"), (5, "abcd"), (6, "12")], "{source} full");
    }
}

// `docs/protocol/v2.md#mutable-messages`: appends from several writers at once each land exactly
// once, in the order the owner took them, and the subscriber's reduction matches GET latest.
#[test]
fn concurrent_appends_each_land_once() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    v2_subscribe(&mut c, CH);
    let (ms, _) = create(&s, CH, "msg", "");
    next_frame(&mut c, "msg");
    let (writers, each) = (4, 50);
    std::thread::scope(|scope| {
        for w in 0..writers {
            let (s, ms) = (&s, &ms);
            scope.spawn(move || {
                for i in 0..each {
                    mutate_ok(s, CH, ms, "append", json!({"data": format!("[{w}.{i}]")}));
                }
            });
        }
    });
    let mut text = String::new();
    let mut last = 1;
    for _ in 0..writers * each {
        let f = next_frame(&mut c, "sockudo:message.append");
        let serial = f["serial"].as_u64().unwrap();
        assert_eq!(serial, last + 1, "serials are contiguous");
        last = serial;
        text.push_str(f["data"].as_str().unwrap());
    }
    assert_eq!(latest(&s, CH, &ms).json()["item"]["data"].as_str(), Some(text.as_str()));
    for w in 0..writers {
        for i in 0..each {
            assert_eq!(text.matches(&format!("[{w}.{i}]")).count(), 1, "[{w}.{i}]");
        }
        // Each writer's own appends keep their order.
        let positions: Vec<usize> = (0..each).map(|i| text.find(&format!("[{w}.{i}]")).unwrap()).collect();
        assert!(positions.windows(2).all(|p| p[0] < p[1]), "writer {w}");
    }
}

// Issue 10 "append streaming": 10,000 fragments over one keep-alive connection at full speed;
// the subscriber reduces them per `docs/protocol/v2.md#append-mode`, is dropped mid-stream,
// resumes, and ends with exactly the concatenation, as GET latest does.
#[test]
fn ten_thousand_appends_with_a_resume() {
    let s = Server::start(None);
    let (ms, _) = create(&s, CH, "stream", "");
    let n = 10_000;
    let fragment = |i: usize| format!("<{i}>");
    let expected: String = (0..n).map(fragment).collect();
    let writer = {
        let (port, app, path) = (s.port, s.app.clone(), messages_path(&s, CH, &ms, "/append"));
        std::thread::spawn(move || {
            let mut conn = HttpConn::open(port).unwrap();
            for i in 0..n {
                let body = json!({"data": fragment(i)}).to_string().into_bytes();
                let target = signed_target(&app, "POST", &path, &[], Some(&body), now());
                let r = conn.request("POST", &target, &[("Content-Type", "application/json")], Some(&body)).unwrap();
                assert_eq!(r.status, 200, "append {i}: {}", r.text());
            }
        })
    };
    let mut c = v2_connected(&s);
    let stream = v2_subscribe(&mut c, CH)["stream_id"].as_str().unwrap().to_owned();
    // Joined while the writer runs: the base is read with GET latest, then frames after it.
    let base = latest(&s, CH, &ms).json()["item"].clone();
    let mut text = base["data"].as_str().unwrap().to_owned();
    let mut at = base["serial"].as_u64().unwrap();
    let reduce = |f: &Value, text: &mut String, at: &mut u64| {
        let serial = f["serial"].as_u64().unwrap();
        if serial <= *at {
            return; // already in the base
        }
        assert_eq!(f["event"], "sockudo:message.append", "{f}");
        assert_eq!(serial, *at + 1, "no gaps");
        *at = serial;
        text.push_str(f["data"].as_str().unwrap());
    };
    while text.len() < expected.len() / 3 {
        let f = c.recv_json(T);
        reduce(&f, &mut text, &mut at);
    }
    drop(c);
    std::thread::sleep(Duration::from_millis(50));
    // Subscribe and resume pipelined in one write, as clients do after a reconnect: the
    // replay comes before any live frame.
    let mut c = v2_connected(&s);
    c.send_json_together(&[
        json!({"event": "sockudo:subscribe", "data": {"channel": CH}}),
        json!({"event": "sockudo:resume", "data": {"channel_positions": { CH: {"stream_id": stream, "serial": at} }}}),
    ]);
    while text.len() < expected.len() {
        let f = c.recv_json(Duration::from_secs(30));
        if f["event"] == "sockudo_internal:subscription_succeeded" {
            continue;
        }
        if f["event"] == "sockudo:resume_success" {
            assert!(data_json(&f)["failed"].as_array().is_none_or(|a| a.is_empty()), "{f}");
            continue;
        }
        reduce(&f, &mut text, &mut at);
    }
    writer.join().unwrap();
    assert!(text == expected, "the reduced text differs from the concatenation");
    let r = latest(&s, CH, &ms);
    assert_eq!(r.status, 200);
    let item = r.json()["item"].take();
    assert!(item["data"].as_str() == Some(expected.as_str()), "GET latest differs: {}", &r.text()[..300]);
    assert_eq!(item["serial"].as_u64(), Some(n as u64 + 1));
}

// Issue 10 "kill -9 under mutation load with fsync = always": every acknowledged mutation is in
// the versions after restart, and op_id retries after restart are still duplicates.
#[test]
fn acknowledged_mutations_survive_kill9() {
    let mut s = Server::start(Some(&config("[storage]\nfsync = \"always\"\n", &[AppConfig::dev()])));
    let (ms, _) = create(&s, CH, "msg", "");
    let acked = std::sync::Mutex::new(Vec::new());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        for w in 0..3 {
            let (s, ms, acked, stop) = (&s, &ms, &acked, &stop);
            scope.spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let op = format!("w{w}-{i}");
                    let body = json!({"data": format!("[{op}]"), "op_id": op});
                    // Stops once the server is gone or was killed while answering.
                    let Some(r) = s.try_post_ok(&messages_path(s, CH, ms, "/append"), &body) else { break };
                    acked.lock().unwrap().push((op, r["version_serial"].as_str().unwrap().to_owned()));
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_millis(700));
        // SIGKILL while the writers run (they hold the server borrowed; it is reaped below).
        let killed = std::process::Command::new("kill").args(["-9", &s.pid().to_string()]).status().unwrap();
        assert!(killed.success());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    s.kill9();
    let acked = acked.into_inner().unwrap();
    assert!(acked.len() > 10, "too few mutations acknowledged before the kill: {}", acked.len());
    s.restart(None);
    let mut stored = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = vec![("direction", "oldest_first")];
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let p = versions(&s, CH, &ms, &q).json();
        for i in p["items"].as_array().unwrap() {
            stored.insert(i["version"]["serial"].as_str().unwrap().to_owned());
        }
        match p["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    for (op, version) in &acked {
        assert!(stored.contains(version), "acknowledged {op} ({version}) lost");
    }
    let (op, version) = &acked[acked.len() / 2];
    let again = mutate_ok(&s, CH, &ms, "append", json!({"data": format!("[{op}]"), "op_id": op}));
    assert_eq!(
        (again["status"].as_str(), again["version_serial"].as_str()),
        (Some("duplicate"), Some(version.as_str()))
    );
}

// `docs/protocol/v2.md#actor-binding`: a mutation bound to a socket is made as its signed-in
// user, within the grants of its sign-in capabilities; every failed check is 401.
#[test]
fn socket_bound_mutations_follow_sign_in_capabilities() {
    let s = Server::start(None);
    let own = signed_in_v2(&s, "alice", json!({"message_append_own": [CH], "message-update-any": ["ch*"]}));
    let other = signed_in_v2(&s, "bob", json!({"message_append_own": [CH]}));
    let bare = signed_in_v2(&s, "carol", json!({"subscribe": ["*"]}));
    // Alice's publish names her socket: she is the message's creator.
    let ack = s.publish_ok(json!({"name": "m", "channel": CH, "data": "a", "info": "", "socket_id": own.socket_id}));
    let mine = ack["channels"][CH]["message_serial"].as_str().unwrap().to_owned();
    let (theirs, _) = create(&s, CH, "m", "b");

    let r = mutate_ok(&s, CH, &mine, "append", json!({"data": "+", "socket_id": own.socket_id}));
    let v = versions(&s, CH, &mine, &[("limit", "1")]).json();
    assert_eq!(
        (v["items"][0]["version"]["client_id"].as_str(), v["items"][0]["user_id"].as_str()),
        (Some("alice"), Some("alice"))
    );
    assert_eq!(r["status"], "applied");
    let e = mutate(&s, CH, &theirs, "append", json!({"data": "+", "socket_id": own.socket_id}))
        .assert_error(401, "auth_failed");
    assert!(e["error"].as_str().unwrap().contains("own"), "{e}");
    mutate(&s, CH, &mine, "append", json!({"data": "+", "socket_id": other.socket_id}))
        .assert_error(401, "auth_failed");
    // `_any` reaches every message on the channels its patterns match.
    mutate_ok(&s, CH, &theirs, "update", json!({"data": "B", "socket_id": own.socket_id}));
    mutate(&s, "other", &theirs, "update", json!({"data": "B", "socket_id": own.socket_id}))
        .assert_error(401, "auth_failed");
    // No message grant, a client_id that is not the socket's user, a socket not here or not
    // signed in, a malformed socket id.
    mutate(&s, CH, &mine, "append", json!({"data": "+", "socket_id": bare.socket_id})).assert_error(401, "auth_failed");
    let e = mutate(&s, CH, &mine, "append", json!({"data": "+", "socket_id": own.socket_id, "client_id": "mallory"}))
        .assert_error(401, "auth_failed");
    assert!(e["error"].as_str().unwrap().contains("client_id"), "{e}");
    let anonymous = v2_connected(&s);
    mutate(&s, CH, &mine, "append", json!({"data": "+", "socket_id": anonymous.socket_id}))
        .assert_error(401, "auth_failed");
    mutate(&s, CH, &mine, "append", json!({"data": "+", "socket_id": "123.456"})).assert_error(401, "auth_failed");
    mutate(&s, CH, &mine, "append", json!({"data": "+", "socket_id": "nope"})).assert_error(400, "invalid_input");
    // Once the socket is gone its binding is too.
    let gone = own.socket_id.clone();
    own.close();
    std::thread::sleep(Duration::from_millis(200));
    mutate(&s, CH, &mine, "append", json!({"data": "+", "socket_id": gone})).assert_error(401, "auth_failed");
    // A sign-in with capabilities the server cannot read is refused.
    let mut c = v2_connected(&s);
    let ud = json!({"id": "dave", "capabilities": {"fly": ["*"]}}).to_string();
    let auth = signin_auth(&c.app, &c.socket_id, &ud);
    c.send_json(&json!({"event": "sockudo:signin", "data": {"user_data": ud, "auth": auth}}));
    assert!(c.expect_v2_error(4009).contains("fly"));
}

// `docs/protocol/v2.md#identities`: after an operator's reset the old serials name nothing,
// and the new stream's messages, which reuse the numbers, start from their own create.
#[test]
fn a_reset_stream_starts_new_messages() {
    let s = Server::start(None);
    let (old, _) = create(&s, CH, "m", "old");
    mutate_ok(&s, CH, &old, "append", json!({"data": "!"}));
    let body = json!({"confirm_channel": CH, "confirm_operation": "reset", "reason": "test"});
    let r = s.api("POST", &s.app.path(&format!("/channels/{CH}/history/reset")), &[], Some(&body));
    assert_eq!(r.status, 200, "{}", r.text());
    mutate(&s, CH, &old, "append", json!({"data": "?"})).assert_error(404, "not_found");
    latest(&s, CH, &old).assert_error(404, "not_found");
    let (new, entry) = create(&s, CH, "m", "new");
    assert_eq!(entry["history_serial"], 1);
    assert_ne!(new, old);
    assert_eq!(mutate_ok(&s, CH, &new, "append", json!({"data": "+"}))["delivery_serial"], 2);
    assert_eq!(latest(&s, CH, &new).json()["item"]["data"], "new+");
}
