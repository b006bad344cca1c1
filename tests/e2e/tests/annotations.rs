//! Annotations of mutable messages (`docs/protocol/v2.md#annotations`): create, list and
//! delete over HTTP with their errors, the summaries of each summarizer on V2 subscribers, the
//! raw events on `ANNOTATION_SUBSCRIBE` subscriptions, clipping, the summaries sent at
//! subscribe, the capability checks of socket-bound requests and of the subscribe mode, the
//! server and namespace switches, and durability across kill -9 and an operator's reset.

use e2e::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;

const CH: &str = "chat";
const TOTAL: &str = "views:total.v1";
const FLAG: &str = "spam:flag.v1";
const DISTINCT: &str = "reactions:distinct.v1";
const UNIQUE: &str = "poll:unique.v1";
const MULTIPLE: &str = "votes:multiple.v1";
const BOTH_MODES: [&str; 2] = ["SUBSCRIBE", "ANNOTATION_SUBSCRIBE"];

/// An annotation serial as the server writes it: 20 digits, zero-padded.
fn serial(n: u64) -> String {
    format!("{n:020}")
}

fn annotations_path(s: &Server, channel: &str, message: &str, rest: &str) -> String {
    messages_path(s, channel, message, &format!("/annotations{rest}"))
}

fn annotate(s: &Server, channel: &str, message: &str, body: Value) -> Response {
    s.api("POST", &annotations_path(s, channel, message, ""), &[], Some(&body))
}

/// Posts an annotation, asserts the answer is exactly `{"annotationSerial"}`, returns the serial.
fn annotate_ok(s: &Server, channel: &str, message: &str, body: Value) -> String {
    let r = annotate(s, channel, message, body.clone());
    assert_eq!(r.status, 200, "{body}: {}", r.text());
    let j = r.json();
    let got = j["annotationSerial"].as_str().unwrap_or_else(|| panic!("{j}")).to_owned();
    assert_eq!(j, json!({ "annotationSerial": got }), "{body}");
    got
}

fn delete(s: &Server, channel: &str, message: &str, annotation: &str, socket_id: Option<&str>) -> Response {
    let query: Vec<(&str, &str)> = socket_id.map(|id| ("socket_id", id)).into_iter().collect();
    s.api("DELETE", &annotations_path(s, channel, message, &format!("/{annotation}")), &query, None)
}

/// Deletes and asserts the answer names the delete event and its target.
fn delete_ok(s: &Server, channel: &str, message: &str, annotation: &str, socket_id: Option<&str>) -> String {
    let r = delete(s, channel, message, annotation, socket_id);
    assert_eq!(r.status, 200, "delete {annotation}: {}", r.text());
    let j = r.json();
    let event = j["annotationSerial"].as_str().unwrap_or_else(|| panic!("{j}")).to_owned();
    assert_eq!(j, json!({"annotationSerial": event, "deletedAnnotationSerial": annotation}));
    event
}

fn list(s: &Server, channel: &str, message: &str, query: &[(&str, &str)]) -> Response {
    s.api("GET", &annotations_path(s, channel, message, ""), query, None)
}

fn list_ok(s: &Server, channel: &str, message: &str, query: &[(&str, &str)]) -> Value {
    let r = list(s, channel, message, query);
    assert_eq!(r.status, 200, "{query:?}: {}", r.text());
    r.json()
}

fn items(page: &Value) -> Vec<Value> {
    page["items"].as_array().unwrap_or_else(|| panic!("no items: {page}")).clone()
}

fn serials(page: &Value) -> Vec<String> {
    items(page).iter().map(|i| i["serial"].as_str().unwrap().to_owned()).collect()
}

/// The `message.summary` frame of one (message, type).
fn summary_frame(channel: &str, message: &str, ty: &str, summary: Value) -> Value {
    json!({
        "event": "sockudo_internal:message",
        "channel": channel,
        "data": {"action": "message.summary", "serial": message, "annotations": {"summary": { ty: summary }}},
        "extras": {"ephemeral": true}
    })
}

/// A client-id list entry (`flag`, and each name of `distinct` and `unique`), not clipped.
fn ids(clients: &[&str]) -> Value {
    json!({"total": clients.len(), "clientIds": clients, "clipped": false})
}

/// A `multiple` name entry, not clipped.
fn counts(total: u64, client_counts: Value, unidentified: u64) -> Value {
    let n = client_counts.as_object().unwrap().len();
    json!({"total": total, "clientCounts": client_counts, "totalUnidentified": unidentified,
        "clipped": false, "totalClientIds": n})
}

/// The next frame as sent (object keys in the server's order).
fn next_text(c: &mut Client) -> String {
    c.ws.get_mut().set_read_timeout(Some(T)).unwrap();
    loop {
        match c.ws.read().unwrap_or_else(|e| panic!("no frame within {T:?}: {e}")) {
            tungstenite::Message::Text(t) => return t.to_string(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => continue,
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next frame must be this summary; returns its text.
fn expect_summary(c: &mut Client, channel: &str, message: &str, ty: &str, summary: &Value) -> String {
    let text = next_text(c);
    let f: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(f, summary_frame(channel, message, ty, summary.clone()), "frame: {text}");
    text
}

/// Reads `n` frames, each a summary sent at subscribe, as a set of (message, type, summary).
/// Such a frame is sent to the one socket, so on V2 it may carry a `message_id` of its own
/// (`docs/protocol/v2.md#message-ids`); otherwise it is exactly a live summary frame.
fn summaries(c: &mut Client, channel: &str, n: usize) -> BTreeSet<(String, String, String)> {
    (0..n)
        .map(|_| {
            let mut f = next_frame(c, "sockudo_internal:message");
            if let Some(id) = f.as_object_mut().unwrap().remove("message_id") {
                assert!(id.as_str().is_some_and(|i| !i.is_empty()), "message_id: {id}");
            }
            let by_type = f["data"]["annotations"]["summary"].as_object().unwrap();
            assert_eq!(by_type.len(), 1, "one type per frame: {f}");
            let (ty, summary) = by_type.iter().next().unwrap();
            let (ty, summary) = (ty.clone(), summary.clone());
            let message = f["data"]["serial"].as_str().unwrap().to_owned();
            assert_eq!(f, summary_frame(channel, &message, &ty, summary.clone()));
            (message, ty, summary.to_string())
        })
        .collect()
}

fn stored(message: &str, ty: &str, summary: Value) -> (String, String, String) {
    (message.to_owned(), ty.to_owned(), summary.to_string())
}

/// Sends `sockudo:subscribe` with these `modes` (any JSON) and reads nothing.
fn send_subscribe_modes(c: &mut Client, channel: &str, modes: Value) {
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": channel, "modes": modes}}));
}

fn subscribe_modes(c: &mut Client, channel: &str, modes: Value) {
    send_subscribe_modes(c, channel, modes);
    c.expect_channel_event("sockudo_internal:subscription_succeeded", channel);
}

/// Publishes a plain event; the next frame of every socket in `v2` and `v1` must be it (so
/// nothing else was queued before it). Returns the V2 frames' serial.
fn publish_marker(s: &Server, channel: &str, v2: &mut [&mut Client], v1: &mut [&mut Client]) -> u64 {
    s.publish_ok(json!({"name": "marker", "channel": channel, "data": "m"}));
    let mut serial = None;
    for c in v2 {
        let f = next_frame(c, "marker");
        assert_eq!(f["channel"], channel, "{f}");
        assert!(serial.is_none() || serial == f["serial"].as_u64(), "{f}");
        serial = f["serial"].as_u64();
    }
    for c in v1 {
        c.expect_channel_event("marker", channel);
    }
    serial.unwrap_or_default()
}

/// Asserts an item's `id` (creates only) and `timestamp`, then returns it without them.
fn without_id_and_time(item: &Value) -> Value {
    let mut item = item.clone();
    let obj = item.as_object_mut().unwrap();
    let ts = obj.remove("timestamp").unwrap_or_else(|| panic!("no timestamp"));
    assert!(ts.as_u64().is_some_and(|t| t > 1_600_000_000_000), "timestamp in ms: {ts}");
    match obj["action"].as_str() {
        Some("annotation.create") => {
            let id = obj.remove("id").unwrap();
            assert!(id.as_str().is_some_and(|i| !i.is_empty()), "id: {id}");
        }
        _ => assert!(obj.get("id").is_none(), "a delete has no id: {item}"),
    }
    item
}

// Create, list and delete with every field of their answers; annotation serials are numbered
// per message and deletes take one; a repeated delete answers like the first.
#[test]
fn create_list_and_delete_round_trip() {
    let s = Server::start(None);
    let (ms, _) = create(&s, CH, "msg", "hello");
    let (other, _) = create(&s, CH, "msg", "second");
    let first = json!({"type": DISTINCT, "name": "thumbs-up", "clientId": "user-42",
        "data": {"k": [1, "two"]}, "encoding": "json"});
    assert_eq!(annotate_ok(&s, CH, &ms, first), serial(1));
    // `client_id` is read like `clientId`.
    let second = json!({"type": MULTIPLE, "name": "heart", "client_id": "user-7", "count": 3});
    assert_eq!(annotate_ok(&s, CH, &ms, second), serial(2));
    // Numbering is per message.
    assert_eq!(annotate_ok(&s, CH, &other, json!({"type": TOTAL})), serial(1));
    assert_eq!(annotate_ok(&s, CH, &ms, json!({"type": TOTAL, "data": "plain"})), serial(3));
    assert_eq!(delete_ok(&s, CH, &ms, &serial(1), None), serial(4));
    // Deleting again: the first delete's answer, and no new event.
    assert_eq!(delete_ok(&s, CH, &ms, &serial(1), None), serial(4));
    assert_eq!(annotate_ok(&s, CH, &ms, json!({"type": FLAG, "clientId": "user-42"})), serial(5));

    let page = list_ok(&s, CH, &ms, &[]);
    assert_eq!(
        (page["channel"].as_str(), page["messageSerial"].as_str(), page["limit"].as_u64(), page["hasMore"].as_bool()),
        (Some(CH), Some(ms.as_str()), Some(100), Some(false)),
        "{page}"
    );
    assert!(page.get("nextCursor").is_some_and(Value::is_null), "{page}");
    let got: Vec<Value> = items(&page).iter().map(without_id_and_time).collect();
    let expected = [
        json!({"action": "annotation.create", "serial": serial(1), "messageSerial": ms, "type": DISTINCT,
            "name": "thumbs-up", "clientId": "user-42", "data": {"k": [1, "two"]}, "encoding": "json"}),
        json!({"action": "annotation.create", "serial": serial(2), "messageSerial": ms, "type": MULTIPLE,
            "name": "heart", "clientId": "user-7", "count": 3}),
        json!({"action": "annotation.create", "serial": serial(3), "messageSerial": ms, "type": TOTAL,
            "data": "plain"}),
        json!({"action": "annotation.delete", "serial": serial(4), "messageSerial": ms, "type": DISTINCT,
            "name": "thumbs-up", "clientId": "user-42", "deletedAnnotationSerial": serial(1)}),
        json!({"action": "annotation.create", "serial": serial(5), "messageSerial": ms, "type": FLAG,
            "clientId": "user-42"}),
    ];
    assert_eq!(got, expected);
    let all = items(&page);
    let ids: BTreeSet<&str> = all.iter().filter_map(|i| i["id"].as_str()).collect();
    assert_eq!(ids.len(), 4, "each create has its own id: {page}");
    let other_page = list_ok(&s, CH, &other, &[]);
    assert_eq!(serials(&other_page), [serial(1)]);
    assert_eq!(other_page["items"][0]["messageSerial"].as_str(), Some(other.as_str()));

    // Pages: `nextCursor` is the last item's serial while more follow; it is the next
    // `from_serial`.
    let p1 = list_ok(&s, CH, &ms, &[("limit", "2")]);
    assert_eq!(
        (serials(&p1), p1["hasMore"].as_bool(), p1["limit"].as_u64()),
        (vec![serial(1), serial(2)], Some(true), Some(2))
    );
    assert_eq!(p1["nextCursor"].as_str(), Some(serial(2).as_str()));
    let p2 = list_ok(&s, CH, &ms, &[("limit", "2"), ("from_serial", p1["nextCursor"].as_str().unwrap())]);
    assert_eq!((serials(&p2), p2["hasMore"].as_bool()), (vec![serial(3), serial(4)], Some(true)));
    assert_eq!(p2["nextCursor"].as_str(), Some(serial(4).as_str()));
    let p3 = list_ok(&s, CH, &ms, &[("limit", "2"), ("from_serial", p2["nextCursor"].as_str().unwrap())]);
    assert_eq!((serials(&p3), p3["hasMore"].as_bool()), (vec![serial(5)], Some(false)));
    assert!(p3["nextCursor"].is_null(), "{p3}");
    assert_eq!(items(&p3), items(&page)[4..]);
    let exact = list_ok(&s, CH, &ms, &[("limit", "5")]);
    assert_eq!((exact["hasMore"].as_bool(), exact["nextCursor"].is_null()), (Some(false), true), "{exact}");
    let after_all = list_ok(&s, CH, &ms, &[("from_serial", &serial(5))]);
    assert!(items(&after_all).is_empty() && after_all["hasMore"] == false, "{after_all}");
    // A limit past the maximum is the maximum.
    assert_eq!(list_ok(&s, CH, &ms, &[("limit", "500")])["limit"], 100);
    // Only one type: its creates and deletes.
    let distinct = list_ok(&s, CH, &ms, &[("type", DISTINCT)]);
    assert_eq!(serials(&distinct), [serial(1), serial(4)]);
    let paged = list_ok(&s, CH, &ms, &[("type", DISTINCT), ("limit", "1")]);
    assert_eq!((serials(&paged), paged["nextCursor"].as_str()), (vec![serial(1)], Some(serial(1).as_str())));
    assert!(items(&list_ok(&s, CH, &ms, &[("type", "none:total.v1")])).is_empty());
}

// Every refusal of the three routes (socket-bound refusals are in
// `socket_bound_requests_follow_capabilities`).
#[test]
fn annotation_errors() {
    let s = Server::start(None);
    let (ms, _) = create(&s, CH, "msg", "hello");
    let stream = ms.split_once(':').unwrap().1;
    // The type: present, a string, `namespace:summarizer.v1`, at most 256 bytes.
    let long_ok = format!("{}:total.v1", "n".repeat(256 - ":total.v1".len()));
    assert_eq!(long_ok.len(), 256);
    assert_eq!(annotate_ok(&s, CH, &ms, json!({ "type": long_ok })), serial(1));
    let too_long = format!("n{long_ok}");
    for ty in [
        json!(null),
        json!(5),
        json!("reactions"),
        json!("distinct.v1"),
        json!(":total.v1"),
        json!("reactions:sum.v1"),
        json!("reactions:total.v2"),
        json!("reactions:total"),
        json!(too_long),
    ] {
        let body = json!({"type": ty, "name": "n", "clientId": "c"});
        annotate(&s, CH, &ms, body).assert_error(400, "invalid_input");
    }
    annotate(&s, CH, &ms, json!({"name": "n", "clientId": "c"})).assert_error(400, "invalid_input");
    // The fields each summarizer needs.
    for body in [
        json!({"type": FLAG}),
        json!({"type": FLAG, "name": "n"}),
        json!({"type": DISTINCT, "clientId": "c"}),
        json!({"type": DISTINCT, "name": "n"}),
        json!({"type": UNIQUE, "clientId": "c"}),
        json!({"type": UNIQUE, "name": "n"}),
        json!({"type": MULTIPLE, "clientId": "c"}),
        json!({"type": TOTAL, "count": 0}),
        json!({"type": MULTIPLE, "name": "n", "count": 0}),
        json!({"type": MULTIPLE, "name": "n", "count": -1}),
        json!({"type": MULTIPLE, "name": "n", "count": "2"}),
        json!({"type": DISTINCT, "name": 5, "clientId": "c"}),
        json!({"type": DISTINCT, "name": "n", "clientId": 5}),
        json!([1]),
    ] {
        let e = annotate(&s, CH, &ms, body.clone()).assert_error(400, "invalid_input");
        assert!(!e["error"].as_str().unwrap().is_empty(), "{body}");
    }
    s.post_malformed_json(&annotations_path(&s, CH, &ms, ""));
    // Nothing refused was numbered; what a summarizer needs is enough.
    assert_eq!(annotate_ok(&s, CH, &ms, json!({"type": MULTIPLE, "name": "n"})), serial(2));
    assert_eq!(annotate_ok(&s, CH, &ms, json!({"type": FLAG, "clientId": "c"})), serial(3));
    // `data` within the app's payload limit (100 KB for the development app), as JSON text.
    let limit = 100 * 1024;
    let at_limit = "x".repeat(limit - 2);
    assert_eq!(annotate_ok(&s, CH, &ms, json!({"type": TOTAL, "data": at_limit})), serial(4));
    let over = "x".repeat(limit - 1);
    annotate(&s, CH, &ms, json!({"type": TOTAL, "data": over})).assert_error(413, "payload_too_large");
    // Unknown messages: a serial of this stream never made, garbage, another stream, another
    // channel.
    let unknown = format!("{}:{stream}", serial(99));
    annotate(&s, CH, &unknown, json!({"type": TOTAL})).assert_error(404, "not_found");
    annotate(&s, CH, "garbage", json!({"type": TOTAL})).assert_error(404, "not_found");
    annotate(&s, CH, &format!("{}:other", &ms[..20]), json!({"type": TOTAL})).assert_error(404, "not_found");
    annotate(&s, "other", &ms, json!({"type": TOTAL})).assert_error(404, "not_found");

    // DELETE: an unknown annotation, a delete event, malformed serials, an unknown message.
    delete(&s, CH, &ms, &serial(99), None).assert_error(404, "not_found");
    let deleted = delete_ok(&s, CH, &ms, &serial(1), None);
    assert_eq!(deleted, serial(5));
    delete(&s, CH, &ms, &deleted, None).assert_error(400, "invalid_input");
    delete(&s, CH, &ms, "abc", None).assert_error(400, "invalid_input");
    delete(&s, CH, &ms, &format!("1{}", serial(1)), None).assert_error(400, "invalid_input");
    delete(&s, CH, &unknown, &serial(1), None).assert_error(404, "not_found");
    delete(&s, "other", &ms, &serial(1), None).assert_error(404, "not_found");

    // GET: limit, type and from_serial checked; unknown messages.
    for q in [
        [("limit", "0")],
        [("limit", "ten")],
        [("limit", "-1")],
        [("type", "bad")],
        [("type", "reactions:distinct.v2")],
        [("from_serial", "x")],
    ] {
        list(&s, CH, &ms, &q).assert_error(400, "invalid_input");
    }
    list(&s, CH, &unknown, &[]).assert_error(404, "not_found");
    list(&s, CH, "garbage", &[]).assert_error(404, "not_found");
    list(&s, "other", &ms, &[]).assert_error(404, "not_found");
    // The refusals left no trace.
    assert_eq!(serials(&list_ok(&s, CH, &ms, &[])), (1..=5).map(serial).collect::<Vec<_>>());
}

/// Posts (or deletes) on `ms` and records the summary every V2 subscriber must receive.
struct Steps<'a> {
    s: &'a Server,
    ms: &'a str,
    expected: Vec<(&'static str, Value)>,
}

impl Steps<'_> {
    fn post(&mut self, ty: &'static str, mut body: Value, summary: Value) {
        body["type"] = ty.into();
        annotate_ok(self.s, CH, self.ms, body);
        self.expected.push((ty, summary));
    }
    fn delete(&mut self, target: u64, ty: &'static str, summary: Value) {
        delete_ok(self.s, CH, self.ms, &serial(target), None);
        self.expected.push((ty, summary));
    }
}

// After each annotation event every V2 subscriber receives its (message, type) summary, for
// each summarizer; subscriptions in ANNOTATION_SUBSCRIBE mode then receive the event itself;
// V1 subscribers receive nothing, and annotations take no channel serial.
#[test]
fn summaries_and_raw_events() {
    let s = Server::start(None);
    let mut plain = v2_connected(&s);
    v2_subscribe(&mut plain, CH);
    let caps = json!({"subscribe": [CH], "annotation-subscribe": [CH]});
    let mut watcher = signed_in_v2(&s, "watcher", caps);
    subscribe_modes(&mut watcher, CH, json!(BOTH_MODES));
    // Capabilities alone do not bring the events: the mode does.
    let mut modeless = signed_in_v2(&s, "modeless", json!({"subscribe": ["*"], "annotation_subscribe": ["*"]}));
    subscribe_modes(&mut modeless, CH, json!(["SUBSCRIBE"]));
    let mut v1 = s.connect();
    v1.subscribe(CH);
    let (ms, _) = create(&s, CH, "msg", "hello");
    for c in [&mut plain, &mut watcher, &mut modeless] {
        assert_eq!(next_frame(c, "msg")["serial"], 1);
    }
    v1.expect_channel_event("msg", CH);

    let mut st = Steps { s: &s, ms: &ms, expected: Vec::new() };
    // total: live annotations.
    st.post(TOTAL, json!({}), json!({"total": 1})); // 1
    st.post(TOTAL, json!({"clientId": "u1"}), json!({"total": 2})); // 2
    st.delete(1, TOTAL, json!({"total": 1})); // 3
    st.delete(2, TOTAL, json!({"total": 0})); // 4
                                              // flag: distinct clients, in order of their first live annotation.
    st.post(FLAG, json!({"clientId": "u1"}), ids(&["u1"])); // 5
    st.post(FLAG, json!({"clientId": "u2"}), ids(&["u1", "u2"])); // 6
    st.post(FLAG, json!({"clientId": "u1"}), ids(&["u1", "u2"])); // 7
    st.delete(5, FLAG, ids(&["u2", "u1"])); // 8
                                            // distinct: per name; a client may be under several names, once under each.
    st.post(DISTINCT, json!({"name": "thumbs-up", "clientId": "u1"}), json!({"thumbs-up": ids(&["u1"])})); // 9
    let both = json!({"thumbs-up": ids(&["u1", "u2"])});
    st.post(DISTINCT, json!({"name": "thumbs-up", "clientId": "u2"}), both); // 10
    let with_heart = json!({"heart": ids(&["u1"]), "thumbs-up": ids(&["u1", "u2"])});
    st.post(DISTINCT, json!({"name": "heart", "clientId": "u1"}), with_heart.clone()); // 11
    st.post(DISTINCT, json!({"name": "thumbs-up", "clientId": "u1"}), with_heart); // 12
    st.delete(9, DISTINCT, json!({"heart": ids(&["u1"]), "thumbs-up": ids(&["u2", "u1"])})); // 13
    st.delete(10, DISTINCT, json!({"heart": ids(&["u1"]), "thumbs-up": ids(&["u1"])})); // 14
    st.delete(12, DISTINCT, json!({"heart": ids(&["u1"])})); // 15
    st.delete(11, DISTINCT, json!({})); // 16
                                        // unique: a client is under one name at a time, its newest.
    st.post(UNIQUE, json!({"name": "yes", "clientId": "u1"}), json!({"yes": ids(&["u1"])})); // 17
    st.post(UNIQUE, json!({"name": "yes", "clientId": "u2"}), json!({"yes": ids(&["u1", "u2"])})); // 18
    st.post(UNIQUE, json!({"name": "no", "clientId": "u1"}), json!({"no": ids(&["u1"]), "yes": ids(&["u2"])})); // 19
    st.delete(19, UNIQUE, json!({"yes": ids(&["u2"])})); // 20
                                                         // multiple: summed counts (1 by default) per client and unidentified; deleting one of a
                                                         // client's annotations under a name takes all its count there.
    st.post(
        MULTIPLE,
        json!({"name": "up", "clientId": "u1", "count": 2}),
        json!({"up": counts(2, json!({"u1": 2}), 0)}),
    ); // 21
    st.post(MULTIPLE, json!({"name": "up", "clientId": "u1"}), json!({"up": counts(3, json!({"u1": 3}), 0)})); // 22
    st.post(MULTIPLE, json!({"name": "up", "count": 5}), json!({"up": counts(8, json!({"u1": 3}), 5)})); // 23
    let down = counts(1, json!({"u2": 1}), 0);
    st.post(
        MULTIPLE,
        json!({"name": "down", "clientId": "u2"}),
        json!({"down": down.clone(), "up": counts(8, json!({"u1": 3}), 5)}),
    ); // 24
    let up = counts(12, json!({"u1": 3, "u2": 4}), 5);
    st.post(MULTIPLE, json!({"name": "up", "clientId": "u2", "count": 4}), json!({"down": down.clone(), "up": up})); // 25
    st.delete(21, MULTIPLE, json!({"down": down, "up": counts(9, json!({"u2": 4}), 5)})); // 26
    let expected = st.expected;
    assert_eq!(expected.len(), 26);

    let page = list_ok(&s, CH, &ms, &[]);
    let events = items(&page);
    assert_eq!(serials(&page), (1..=26).map(serial).collect::<Vec<_>>());
    for (i, (ty, summary)) in expected.iter().enumerate() {
        let texts: Vec<String> = [&mut plain, &mut watcher, &mut modeless]
            .into_iter()
            .map(|c| expect_summary(c, CH, &ms, ty, summary))
            .collect();
        // Names are keys in text order.
        for text in &texts {
            for (a, b) in [("\"heart\"", "\"thumbs-up\""), ("\"no\"", "\"yes\""), ("\"down\"", "\"up\"")] {
                if let (Some(x), Some(y)) = (text.find(a), text.find(b)) {
                    assert!(x < y, "{a} before {b}: {text}");
                }
            }
        }
        // Then, on the ANNOTATION_SUBSCRIBE subscription only, the event as GET lists it.
        let f = next_frame(&mut watcher, "sockudo_internal:annotation");
        assert_eq!(f, json!({"event": "sockudo_internal:annotation", "channel": CH, "data": events[i]}), "event {i}");
    }
    // Nothing more anywhere, and the channel's next message takes serial 2.
    assert_eq!(publish_marker(&s, CH, &mut [&mut plain, &mut watcher, &mut modeless], &mut [&mut v1]), 2);
}

// Client id lists hold at most 100 ids; past that `clipped` is true and the totals stay exact.
#[test]
fn summaries_clip_at_one_hundred_clients() {
    let s = Server::start(None);
    let (ms, _) = create(&s, CH, "msg", "hello");
    let mut c = v2_connected(&s);
    v2_subscribe(&mut c, CH);
    let client = |i: usize| format!("c{i:03}");
    let all: Vec<String> = (0..=100).map(client).collect();
    let refs = |r: std::ops::Range<usize>| all[r].iter().map(String::as_str).collect::<Vec<_>>();
    for i in 0..=100 {
        annotate_ok(&s, CH, &ms, json!({"type": FLAG, "clientId": client(i)}));
        let f = next_frame(&mut c, "sockudo_internal:message");
        let summary = &f["data"]["annotations"]["summary"][FLAG];
        if i < 100 {
            assert_eq!(*summary, ids(&refs(0..i + 1)), "{i}");
        } else {
            assert_eq!(*summary, json!({"total": 101, "clientIds": refs(0..100), "clipped": true}));
        }
    }
    // A client already counted changes nothing; deleting c000's first annotation leaves its
    // second, now last in order.
    annotate_ok(&s, CH, &ms, json!({"type": FLAG, "clientId": "c000"})); // serial 102
    let clipped = json!({"total": 101, "clientIds": refs(0..100), "clipped": true});
    expect_summary(&mut c, CH, &ms, FLAG, &clipped);
    delete_ok(&s, CH, &ms, &serial(1), None);
    expect_summary(&mut c, CH, &ms, FLAG, &json!({"total": 101, "clientIds": refs(1..101), "clipped": true}));
    delete_ok(&s, CH, &ms, &serial(102), None);
    let flag = ids(&refs(1..101));
    expect_summary(&mut c, CH, &ms, FLAG, &flag);

    // multiple: `clientCounts` is clipped the same way; `totalClientIds` counts them all.
    let (ms2, _) = create(&s, CH, "msg", "second");
    next_frame(&mut c, "msg");
    for i in 0..=100 {
        annotate_ok(&s, CH, &ms2, json!({"type": MULTIPLE, "name": "up", "clientId": client(i), "count": 2}));
        next_frame(&mut c, "sockudo_internal:message");
    }
    annotate_ok(&s, CH, &ms2, json!({"type": MULTIPLE, "name": "up"}));
    let f = next_frame(&mut c, "sockudo_internal:message");
    let up = &f["data"]["annotations"]["summary"][MULTIPLE]["up"];
    let first_100: serde_json::Map<String, Value> = (0..100).map(|i| (client(i), json!(2))).collect();
    assert_eq!(
        *up,
        json!({"total": 203, "clientCounts": first_100, "totalUnidentified": 1, "clipped": true, "totalClientIds": 101})
    );
    // A new subscriber gets both as they stand.
    let mut late = v2_connected(&s);
    v2_subscribe(&mut late, CH);
    let want: BTreeSet<_> =
        [stored(&ms, FLAG, flag), stored(&ms2, MULTIPLE, json!({ "up": up }))].into_iter().collect();
    assert_eq!(summaries(&mut late, CH, 2), want);
    publish_marker(&s, CH, &mut [&mut c, &mut late], &mut []);
}

// Right after `subscription_succeeded`, a V2 subscriber (with or without the mode) gets one
// summary per (message, type) of the channel that has live annotations; V1 gets none.
#[test]
fn subscribe_sends_the_stored_summaries() {
    let s = Server::start(None);
    let (m1, _) = create(&s, CH, "msg", "one");
    let (m2, _) = create(&s, CH, "msg", "two");
    let (m3, _) = create(&s, CH, "msg", "three");
    let (elsewhere, _) = create(&s, "other", "msg", "x");
    annotate_ok(&s, CH, &m1, json!({"type": DISTINCT, "name": "up", "clientId": "u1"}));
    annotate_ok(&s, CH, &m1, json!({"type": DISTINCT, "name": "up", "clientId": "u2"}));
    annotate_ok(&s, CH, &m1, json!({"type": TOTAL}));
    annotate_ok(&s, CH, &m2, json!({"type": FLAG, "clientId": "u3"}));
    // Emptied types are not sent: on m2 a total, on m3 a message's only type.
    let gone = annotate_ok(&s, CH, &m2, json!({"type": TOTAL}));
    delete_ok(&s, CH, &m2, &gone, None);
    let gone = annotate_ok(&s, CH, &m3, json!({"type": UNIQUE, "name": "a", "clientId": "u1"}));
    delete_ok(&s, CH, &m3, &gone, None);
    annotate_ok(&s, "other", &elsewhere, json!({"type": TOTAL}));
    let want: BTreeSet<_> = [
        stored(&m1, DISTINCT, json!({"up": ids(&["u1", "u2"])})),
        stored(&m1, TOTAL, json!({"total": 1})),
        stored(&m2, FLAG, ids(&["u3"])),
    ]
    .into_iter()
    .collect();

    let mut plain = v2_connected(&s);
    v2_subscribe(&mut plain, CH);
    assert_eq!(summaries(&mut plain, CH, 3), want);
    let mut watcher = signed_in_v2(&s, "w", json!({"subscribe": [CH], "annotation-subscribe": [CH]}));
    subscribe_modes(&mut watcher, CH, json!(BOTH_MODES));
    assert_eq!(summaries(&mut watcher, CH, 3), want);
    let mut v1 = s.connect();
    v1.subscribe(CH);
    // Nothing else was queued: the next frame of each is a new message.
    publish_marker(&s, CH, &mut [&mut plain, &mut watcher], &mut [&mut v1]);
    // The stored summary follows later events: a type emptied since is gone, one refilled is back.
    delete_ok(&s, CH, &m1, &serial(3), None);
    annotate_ok(&s, CH, &m3, json!({"type": UNIQUE, "name": "b", "clientId": "u1"}));
    let want: BTreeSet<_> = [
        stored(&m1, DISTINCT, json!({"up": ids(&["u1", "u2"])})),
        stored(&m2, FLAG, ids(&["u3"])),
        stored(&m3, UNIQUE, json!({"b": ids(&["u1"])})),
    ]
    .into_iter()
    .collect();
    let mut late = v2_connected(&s);
    v2_subscribe(&mut late, CH);
    assert_eq!(summaries(&mut late, CH, 3), want);
    publish_marker(&s, CH, &mut [&mut late], &mut []);
    // The other channel has its own.
    let mut other = v2_connected(&s);
    v2_subscribe(&mut other, "other");
    assert_eq!(
        summaries(&mut other, "other", 1),
        [stored(&elsewhere, TOTAL, json!({"total": 1}))].into_iter().collect()
    );
}

// A request naming a socket acts as its signed-in user, within its sign-in capabilities
// (403 when they fall short, 401 for another clientId); ANNOTATION_SUBSCRIBE needs
// `subscribe` and `annotation-subscribe` grants (4009), and `modes` must be an array of known
// modes (4000).
#[test]
fn socket_bound_requests_follow_capabilities() {
    let s = Server::start(None);
    let (ms, _) = create(&s, CH, "msg", "hello");
    let alice = signed_in_v2(
        &s,
        "alice",
        json!({"publish": [CH], "annotation-publish": [CH], "annotation_delete_own": [CH], "annotation-subscribe": [CH]}),
    );
    let carol = signed_in_v2(
        &s,
        "carol",
        json!({"publish": ["*"], "annotation_publish": ["ch*"], "annotation-delete-any": ["ch*"]}),
    );
    let publish_only = signed_in_v2(&s, "bob", json!({"publish": [CH]}));
    // `publish` named, but not for this channel (unnamed it would be open: sign-in rules).
    let annotate_only = signed_in_v2(&s, "bea", json!({"publish": ["news"], "annotation-publish": [CH]}));
    let bare = signed_in_v2(&s, "dave", json!({"subscribe": ["*"]}));
    let anonymous = v2_connected(&s);
    let mut v1 = s.connect();
    v1.signin(&json!({"id": "eve"}));

    // POST: the socket's user is the clientId.
    let by_socket = |socket: &Client, extra: Value| {
        let mut body = json!({"type": FLAG, "socketId": socket.socket_id});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        annotate(&s, CH, &ms, body)
    };
    assert_eq!(by_socket(&alice, json!({})).json(), json!({"annotationSerial": serial(1)}));
    let r = annotate(
        &s,
        CH,
        &ms,
        json!({"type": DISTINCT, "name": "up", "socket_id": alice.socket_id, "clientId": "alice"}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let e = by_socket(&alice, json!({"clientId": "mallory"})).assert_error(401, "auth_failed");
    assert!(e["error"].as_str().unwrap().contains("clientId"), "{e}");
    assert_eq!(by_socket(&carol, json!({})).status, 200);
    for socket in [&publish_only, &annotate_only, &bare, &anonymous, &v1] {
        by_socket(socket, json!({"clientId": "x"})).assert_error(403, "forbidden");
    }
    annotate(&s, CH, &ms, json!({"type": TOTAL, "socketId": "123.456"})).assert_error(403, "forbidden");
    annotate(&s, CH, &ms, json!({"type": TOTAL, "socketId": "nope"})).assert_error(400, "invalid_input");
    // Grants are per channel.
    let (elsewhere, _) = create(&s, "news", "msg", "x");
    annotate(&s, "news", &elsewhere, json!({"type": TOTAL, "socketId": alice.socket_id}))
        .assert_error(403, "forbidden");
    annotate(&s, "news", &elsewhere, json!({"type": TOTAL, "socketId": carol.socket_id}))
        .assert_error(403, "forbidden");
    let page = list_ok(&s, CH, &ms, &[]);
    let who: Vec<String> = items(&page).iter().map(|i| i["clientId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(who, ["alice", "alice", "carol"], "{page}");
    let by_api = annotate_ok(&s, CH, &ms, json!({"type": FLAG, "clientId": "zed"})); // 4
    let anonymous_total = annotate_ok(&s, CH, &ms, json!({"type": TOTAL})); // 5

    // DELETE: `annotation-delete-own` reaches the socket user's annotations only,
    // `annotation-delete-any` every one; neither grant is 403.
    let del = |target: &str, socket: &Client| delete(&s, CH, &ms, target, Some(&socket.socket_id));
    del(&by_api, &alice).assert_error(403, "forbidden");
    del(&anonymous_total, &alice).assert_error(403, "forbidden");
    del(&serial(3), &alice).assert_error(403, "forbidden");
    assert_eq!(delete_ok(&s, CH, &ms, &serial(1), Some(&alice.socket_id)), serial(6));
    assert_eq!(delete_ok(&s, CH, &ms, &by_api, Some(&carol.socket_id)), serial(7));
    for socket in [&publish_only, &annotate_only, &bare, &anonymous, &v1] {
        del(&serial(2), socket).assert_error(403, "forbidden");
    }
    delete(&s, CH, &ms, &serial(2), Some("123.456")).assert_error(403, "forbidden");
    let news_serial = annotate_ok(&s, "news", &elsewhere, json!({"type": TOTAL}));
    delete(&s, "news", &elsewhere, &news_serial, Some(&carol.socket_id)).assert_error(403, "forbidden");
    assert_eq!(delete_ok(&s, CH, &ms, &serial(2), Some(&alice.socket_id)), serial(8));

    // GET: `annotation-subscribe` on the channel.
    let r = list(&s, CH, &ms, &[("socket_id", &alice.socket_id)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), list_ok(&s, CH, &ms, &[]));
    for socket in [&carol, &bare, &anonymous, &v1] {
        list(&s, CH, &ms, &[("socket_id", &socket.socket_id)]).assert_error(403, "forbidden");
    }
    list(&s, "news", &elsewhere, &[("socket_id", &alice.socket_id)]).assert_error(403, "forbidden");

    // ANNOTATION_SUBSCRIBE: refused without both grants on the channel; the socket stays and
    // may subscribe without the mode.
    let mut refused = vec![
        v2_connected(&s),
        signed_in_v2(&s, "f", json!({"subscribe": [CH]})),
        signed_in_v2(&s, "g", json!({"annotation-subscribe": ["news"]})),
        signed_in_v2(&s, "h", json!({"subscribe": ["news", CH], "annotation-subscribe": ["news"]})),
    ];
    for c in &mut refused {
        send_subscribe_modes(c, CH, json!(BOTH_MODES));
        let why = c.expect_v2_error(4009);
        assert!(why.contains("annotation-subscribe"), "{why}");
        v2_subscribe(c, CH);
    }
    let mut ok = signed_in_v2(&s, "i", json!({"subscribe": ["ch*"], "annotation_subscribe": ["ch*"]}));
    subscribe_modes(&mut ok, CH, json!(["ANNOTATION_SUBSCRIBE"]));
    for modes in [json!("SUBSCRIBE"), json!(["FLY"]), json!(["SUBSCRIBE", 5]), json!({"SUBSCRIBE": true})] {
        let mut c = signed_in_v2(&s, "j", json!({"subscribe": ["*"], "annotation-subscribe": ["*"]}));
        send_subscribe_modes(&mut c, CH, modes.clone());
        c.expect_v2_error(4000);
        v2_subscribe(&mut c, CH);
    }
    // Summaries go to all of them; the events only to the one in the mode.
    for c in &mut refused {
        summaries(c, CH, 2);
    }
    summaries(&mut ok, CH, 2);
    annotate_ok(&s, CH, &ms, json!({"type": TOTAL}));
    expect_summary(&mut ok, CH, &ms, TOTAL, &json!({"total": 2}));
    assert_eq!(next_frame(&mut ok, "sockudo_internal:annotation")["data"]["serial"], serial(9));
    for c in &mut refused {
        expect_summary(c, CH, &ms, TOTAL, &json!({"total": 2}));
    }
    let mut v2s: Vec<&mut Client> = refused.iter_mut().collect();
    v2s.push(&mut ok);
    publish_marker(&s, CH, &mut v2s, &mut []);
}

// The server switch (`ANNOTATIONS_ENABLED`), versioned messages off, and on a configured app
// the namespaces declared with `annotations_enabled = true`.
#[test]
fn annotations_follow_the_switches() {
    let s = Server::start_with_env(None, &[("ANNOTATIONS_ENABLED", "false")]);
    let (ms, _) = create(&s, CH, "msg", "hello");
    annotate(&s, CH, &ms, json!({"type": TOTAL})).assert_error(403, "forbidden");
    list(&s, CH, &ms, &[]).assert_error(403, "forbidden");
    delete(&s, CH, &ms, &serial(1), None).assert_error(403, "forbidden");
    let mut c = signed_in_v2(&s, "w", json!({"subscribe": ["*"], "annotation-subscribe": ["*"]}));
    send_subscribe_modes(&mut c, CH, json!(BOTH_MODES));
    next_frame(&mut c, "sockudo:error");
    v2_subscribe(&mut c, CH);
    publish_marker(&s, CH, &mut [&mut c], &mut []);
    drop(s);

    let s = Server::start_with_env(None, &[("VERSIONED_MESSAGES_ENABLED", "false")]);
    let ack = s.publish_ok(json!({"name": "m", "channel": CH, "data": "a", "info": ""}));
    assert!(ack["channels"][CH].get("message_serial").is_none(), "{ack}");
    annotate(&s, CH, &ms, json!({"type": TOTAL})).assert_error(422, "feature_disabled");
    list(&s, CH, &ms, &[]).assert_error(422, "feature_disabled");
    delete(&s, CH, &ms, &serial(1), None).assert_error(422, "feature_disabled");
    drop(s);

    let namespaces = r#"[{ name = "chat", annotations_enabled = true }, { name = "news" }]"#;
    let s = Server::start(Some(&config("", &[AppConfig::dev().set("channel_namespaces", namespaces)])));
    let (chat, _) = create(&s, "chat:1", "msg", "a");
    let (news, _) = create(&s, "news:1", "msg", "b");
    assert_eq!(annotate_ok(&s, "chat:1", &chat, json!({"type": TOTAL})), serial(1));
    assert_eq!(list_ok(&s, "chat:1", &chat, &[])["items"][0]["type"], TOTAL);
    annotate(&s, "news:1", &news, json!({"type": TOTAL})).assert_error(403, "forbidden");
    list(&s, "news:1", &news, &[]).assert_error(403, "forbidden");
    delete(&s, "news:1", &news, &serial(1), None).assert_error(403, "forbidden");
    let caps = json!({"subscribe": ["*"], "annotation-subscribe": ["*"]});
    let mut c = signed_in_v2(&s, "w", caps.clone());
    subscribe_modes(&mut c, "chat:1", json!(BOTH_MODES));
    let want: BTreeSet<_> = [stored(&chat, TOTAL, json!({"total": 1}))].into_iter().collect();
    assert_eq!(summaries(&mut c, "chat:1", 1), want);
    let mut n = signed_in_v2(&s, "w", caps);
    send_subscribe_modes(&mut n, "news:1", json!(BOTH_MODES));
    next_frame(&mut n, "sockudo:error");
    v2_subscribe(&mut n, "news:1");
    publish_marker(&s, "news:1", &mut [&mut n], &mut []);
}

// Acknowledged annotations survive kill -9 with fsync always: listed as before, numbered on
// from there, summarised to new subscribers. An operator's reset removes them.
#[test]
fn annotations_survive_kill9_and_go_with_a_reset() {
    let ch = "chat:1";
    let namespaces = r#"[{ name = "chat", annotations_enabled = true }]"#;
    let app = AppConfig::dev().set("channel_namespaces", namespaces);
    let mut s = Server::start(Some(&config("[storage]\nfsync = \"always\"\n", &[app])));
    let (ms, _) = create(&s, ch, "msg", "hello");
    annotate_ok(&s, ch, &ms, json!({"type": DISTINCT, "name": "up", "clientId": "u1", "data": {"x": 1}}));
    annotate_ok(&s, ch, &ms, json!({"type": DISTINCT, "name": "up", "clientId": "u2"}));
    annotate_ok(&s, ch, &ms, json!({"type": MULTIPLE, "name": "n", "clientId": "u1", "count": 4}));
    annotate_ok(&s, ch, &ms, json!({"type": TOTAL}));
    assert_eq!(delete_ok(&s, ch, &ms, &serial(1), None), serial(5));
    let before = list_ok(&s, ch, &ms, &[]);
    assert_eq!(items(&before).len(), 5);

    s.kill9();
    s.restart(None);
    assert_eq!(list_ok(&s, ch, &ms, &[]), before);
    let want: BTreeSet<_> = [
        stored(&ms, DISTINCT, json!({"up": ids(&["u2"])})),
        stored(&ms, MULTIPLE, json!({"n": counts(4, json!({"u1": 4}), 0)})),
        stored(&ms, TOTAL, json!({"total": 1})),
    ]
    .into_iter()
    .collect();
    let mut c = v2_connected(&s);
    v2_subscribe(&mut c, ch);
    assert_eq!(summaries(&mut c, ch, 3), want);
    // The delete is still known, and numbering goes on.
    assert_eq!(delete_ok(&s, ch, &ms, &serial(1), None), serial(5));
    assert_eq!(annotate_ok(&s, ch, &ms, json!({"type": TOTAL})), serial(6));
    expect_summary(&mut c, ch, &ms, TOTAL, &json!({"total": 2}));

    let body = json!({"confirm_channel": ch, "confirm_operation": "reset", "reason": "x"});
    let r = s.api("POST", &s.app.path(&format!("/channels/{ch}/history/reset")), &[], Some(&body));
    assert_eq!(r.status, 200, "{}", r.text());
    list(&s, ch, &ms, &[]).assert_error(404, "not_found");
    annotate(&s, ch, &ms, json!({"type": TOTAL})).assert_error(404, "not_found");
    delete(&s, ch, &ms, &serial(6), None).assert_error(404, "not_found");
    let mut late = v2_connected(&s);
    v2_subscribe(&mut late, ch);
    let (fresh, _) = create(&s, ch, "msg", "new");
    assert_ne!(fresh, ms);
    next_frame(&mut late, "msg");
    // The new stream's messages start their own annotations.
    assert_eq!(list_ok(&s, ch, &fresh, &[])["items"], json!([]));
    assert_eq!(annotate_ok(&s, ch, &fresh, json!({"type": TOTAL})), serial(1));
    expect_summary(&mut late, ch, &fresh, TOTAL, &json!({"total": 1}));
    let mut again = v2_connected(&s);
    v2_subscribe(&mut again, ch);
    assert_eq!(summaries(&mut again, ch, 1), [stored(&fresh, TOTAL, json!({"total": 1}))].into_iter().collect());
    publish_marker(&s, ch, &mut [&mut again, &mut late], &mut []);
}

// kill -9 while writers annotate, with fsync always: every acknowledged annotation is listed
// after the restart, the events are numbered without gaps, the stored summary agrees with
// them, and numbering goes on after the last.
#[test]
fn acknowledged_annotations_survive_kill9_under_load() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let ch = "chat:1";
    let app = AppConfig::dev().set("channel_namespaces", r#"[{ name = "chat", annotations_enabled = true }]"#);
    let mut s = Server::start(Some(&config("[storage]\nfsync = \"always\"\n", &[app])));
    let (ms, _) = create(&s, ch, "msg", "hello");
    let acked = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for w in 0..3 {
            let (s, ms, acked, stop) = (&s, &ms, &acked, &stop);
            scope.spawn(move || {
                let path = annotations_path(s, ch, ms, "");
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({"type": MULTIPLE, "name": "n", "clientId": format!("w{w}"), "count": w + 1});
                    // Stops once the server is gone or was killed while answering.
                    let Some(r) = s.try_post_ok(&path, &body) else { break };
                    acked.lock().unwrap().push(r["annotationSerial"].as_str().unwrap().to_owned());
                }
            });
        }
        // Kill once the writers are well under way (they hold the server borrowed; it is
        // reaped below).
        let deadline = std::time::Instant::now() + T;
        while acked.lock().unwrap().len() < 30 {
            assert!(std::time::Instant::now() < deadline, "writers acknowledged too few annotations");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let killed = std::process::Command::new("kill").args(["-9", &s.pid().to_string()]).status().unwrap();
        assert!(killed.success());
        stop.store(true, Ordering::Relaxed);
    });
    s.kill9();
    let acked = acked.into_inner().unwrap();
    s.restart(None);

    let mut listed = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut q = vec![("limit", "100")];
        if let Some(f) = &from {
            q.push(("from_serial", f));
        }
        let page = list_ok(&s, ch, &ms, &q);
        listed.extend(items(&page));
        match page["nextCursor"].as_str() {
            Some(c) => from = Some(c.to_owned()),
            None => break,
        }
    }
    let n = listed.len() as u64;
    let got: Vec<String> = listed.iter().map(|i| i["serial"].as_str().unwrap().to_owned()).collect();
    assert_eq!(got, (1..=n).map(serial).collect::<Vec<_>>(), "numbered without gaps");
    let got: BTreeSet<&String> = got.iter().collect();
    for a in &acked {
        assert!(got.contains(a), "acknowledged annotation {a} lost ({n} listed)");
    }
    // The summary stored with the last event is the one the events make.
    let mut per_client = serde_json::Map::new();
    let mut total = 0;
    for i in &listed {
        let count = i["count"].as_u64().unwrap();
        total += count;
        let c = per_client.entry(i["clientId"].as_str().unwrap()).or_insert(json!(0));
        *c = json!(c.as_u64().unwrap() + count);
    }
    let mut c = v2_connected(&s);
    v2_subscribe(&mut c, ch);
    let want = stored(&ms, MULTIPLE, json!({ "n": counts(total, Value::Object(per_client), 0) }));
    assert_eq!(summaries(&mut c, ch, 1), [want].into_iter().collect());
    assert_eq!(annotate_ok(&s, ch, &ms, json!({"type": TOTAL})), serial(n + 1));
    expect_summary(&mut c, ch, &ms, TOTAL, &json!({"total": 1}));
}
