//! Presence history: `docs/protocol/v2.md#presence-history` (records of joins, updates and
//! leaves in their own stream, pages with cursors, snapshots, state, reset, the switches).

use e2e::*;
use serde_json::{json, Value};

const ROOM: &str = "presence-room";

fn member(id: &str) -> Value {
    json!({"user_id": id, "user_info": {"name": format!("user {id}")}})
}

fn history(s: &Server, channel: &str, query: &[(&str, &str)]) -> Value {
    let r = s.get(&format!("/channels/{channel}/presence/history"), query);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn events(page: &Value) -> Vec<(u64, String, String, String)> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let s = |k: &str| i[k].as_str().unwrap().to_owned();
            (i["serial"].as_u64().unwrap(), s("event"), s("cause"), s("user_id"))
        })
        .collect()
}

fn reset_body(channel: &str) -> Value {
    json!({"confirm_channel": channel, "confirm_operation": "reset", "reason": "test", "requested_by": "e2e"})
}

// Join, update, leave: three records with serials 1..3 in the channel's presence stream, as a
// page, in pages with cursors, as snapshots, in the state, and gone after a reset.
#[test]
fn joins_updates_and_leaves_are_recorded() {
    let s = Server::start(None);
    let mut a = v2_connected(&s);
    v2_subscribe_presence(&mut a, ROOM, &member("a"));
    let mut b = v2_connected(&s);
    v2_subscribe_presence(&mut b, ROOM, &member("b"));
    a.expect_channel_event("sockudo_internal:member_added", ROOM);
    b.send_json(&json!({"event": "sockudo:presence_update", "data": {"channel": ROOM, "data": {"status": "away"}}}));
    a.expect_channel_event("sockudo_internal:presence_update", ROOM);
    b.unsubscribe(ROOM);
    a.expect_channel_event("sockudo_internal:member_removed", ROOM);

    let page = history(&s, ROOM, &[("direction", "oldest_first")]);
    let e = |n: u64, e: &str, c: &str, u: &str| (n, e.to_owned(), c.to_owned(), u.to_owned());
    assert_eq!(
        events(&page),
        vec![
            e(1, "member_added", "join", "a"),
            e(2, "member_added", "join", "b"),
            e(3, "member_updated", "update", "b"),
            e(4, "member_removed", "disconnect", "b"),
        ],
        "{page}"
    );
    let items = page["items"].as_array().unwrap();
    let stream_id = items[0]["stream_id"].as_str().unwrap().to_owned();
    for (i, item) in items.iter().enumerate() {
        let e = &item["presence_event"];
        assert_eq!(e["serial"], item["serial"], "{item}");
        assert_eq!((e["stream_id"].as_str(), item["stream_id"].as_str()), (Some(&*stream_id), Some(&*stream_id)));
        assert_eq!(e["event"], item["event"]);
        assert_eq!(e["cause"], item["cause"]);
        assert!(item["dead_node_id"].is_null() && e["dead_node_id"].is_null());
        assert!(item["payload_size_bytes"].as_u64().unwrap() > 0);
        let socket = if i == 0 { &a.socket_id } else { &b.socket_id };
        assert_eq!(item["connection_id"].as_str(), Some(socket.as_str()), "{item}");
    }
    assert_eq!(items[0]["presence_event"]["user_info"], json!({"name": "user a"}));
    assert_eq!(items[2]["presence_event"]["user_info"], json!({"status": "away"}));
    assert_eq!(items[3]["presence_event"]["user_info"], json!({"status": "away"}));
    let c = &page["continuity"];
    assert_eq!((c["retained_events"].as_u64(), c["oldest_available_serial"].as_u64()), (Some(4), Some(1)));
    assert_eq!((c["complete"].as_bool(), c["degraded"].as_bool()), (Some(true), Some(false)));
    assert_eq!(page["stream_state"]["continuity_proven"], true);
    assert!(page["next_cursor"].is_null() && page["has_more"] == false);

    // Newest first, one per page, by cursor.
    let mut serials = Vec::new();
    let mut cursor = None::<String>;
    loop {
        let mut q = vec![("limit", "1")];
        if let Some(c) = &cursor {
            q.push(("cursor", c));
        }
        let p = history(&s, ROOM, &q);
        serials.extend(events(&p).iter().map(|e| e.0));
        match p["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(serials, vec![4, 3, 2, 1]);
    // A channel-history cursor is not a presence-history cursor.
    let stale = cursor_of_channel_history(&s);
    let r = s.get(&format!("/channels/{ROOM}/presence/history"), &[("cursor", &stale)]);
    r.assert_error(400, "invalid_input");

    // Snapshots: at serial 3 both were members (b updated), latest only a.
    let snap = s.get(&format!("/channels/{ROOM}/presence/history/snapshot"), &[("at_serial", "3")]).json();
    assert_eq!((snap["member_count"].as_u64(), snap["snapshot_serial"].as_u64()), (Some(2), Some(3)));
    assert_eq!(snap["events_replayed"], 3);
    assert_eq!(
        snap["members"][1],
        json!({"user_id": "b", "last_event": "member_updated", "last_event_serial": 3, "last_event_at_ms": items[2]["published_at_ms"]})
    );
    let latest = s.get(&format!("/channels/{ROOM}/presence/history/snapshot"), &[]).json();
    assert_eq!(
        latest["members"],
        json!([{"user_id": "a", "last_event": "member_added", "last_event_serial": 1, "last_event_at_ms": items[0]["published_at_ms"]}])
    );
    assert_eq!(latest["channel"], ROOM);
    // By time: every record published up to that millisecond, which may be more than two.
    let at = items[1]["published_at_ms"].as_u64().unwrap();
    let upto = items.iter().filter(|i| i["published_at_ms"].as_u64().unwrap() <= at).count();
    let by_time = s.get(&format!("/channels/{ROOM}/presence/history/snapshot"), &[("at", &at.to_string())]).json();
    assert_eq!(by_time["events_replayed"].as_u64(), Some(upto as u64), "{by_time}");
    let present = if upto == 4 { 1 } else { 2 };
    assert_eq!(by_time["member_count"].as_u64(), Some(present), "{by_time}");

    let state = s.get(&format!("/channels/{ROOM}/presence/history/state"), &[]).json();
    assert_eq!(state["stream"]["stream_id"].as_str(), Some(&*stream_id));
    assert_eq!(state["stream"]["next_serial"], 5);
    assert_eq!(state["stream"]["retained"]["retained_events"], 4);
    assert_eq!(state["stream"]["state"]["durable_state"], "healthy");

    // Reset: a new stream, the records purged; the next transition is serial 1 of it.
    let path = s.app.path(&format!("/channels/{ROOM}/presence/history/reset"));
    let wrong = json!({"confirm_channel": "presence-other", "confirm_operation": "reset", "reason": "x"});
    s.api("POST", &path, &[], Some(&wrong)).assert_error(400, "invalid_input");
    let r = s.api("POST", &path, &[], Some(&reset_body(ROOM)));
    assert_eq!(r.status, 200, "{}", r.text());
    let done = r.json();
    assert_eq!((done["ok"].as_bool(), done["purged_events"].as_u64()), (Some(true), Some(4)));
    assert_eq!(done["previous_stream_id"].as_str(), Some(&*stream_id));
    let new_id = done["new_stream_id"].as_str().unwrap().to_owned();
    assert_ne!(new_id, stream_id);
    assert!(events(&history(&s, ROOM, &[])).is_empty());
    a.unsubscribe(ROOM);
    // a's unsubscribe and c's subscribe reach the channel's owner from different sockets (on two
    // shards, from different shards), so c joins only once a's leave is recorded.
    let deadline = std::time::Instant::now() + T;
    while events(&history(&s, ROOM, &[])).is_empty() {
        assert!(std::time::Instant::now() < deadline, "a's leave was never recorded");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut c = v2_connected(&s);
    v2_subscribe_presence(&mut c, ROOM, &member("c"));
    let page = history(&s, ROOM, &[("direction", "oldest_first")]);
    let got = events(&page);
    assert_eq!(got[0], (1, "member_removed".into(), "disconnect".into(), "a".into()), "{page}");
    assert_eq!(got[1], (2, "member_added".into(), "join".into(), "c".into()));
    assert_eq!(page["items"][0]["stream_id"].as_str(), Some(&*new_id));
}

/// A `channel history` cursor of another channel.
fn cursor_of_channel_history(s: &Server) -> String {
    for i in 0..2 {
        s.publish_ok(json!({"name": "e", "channel": "plain", "data": i.to_string()}));
    }
    let page = s.get("/channels/plain/history", &[("limit", "1")]).json();
    page["next_cursor"].as_str().unwrap().to_owned()
}

// How a leave is recorded: the app terminating the user's connections is forced; a dropped
// connection is a disconnect. Presence streams survive kill -9 and continue their serials.
#[test]
fn causes_and_restarts() {
    let mut s = Server::start(None);
    let mut watcher = v2_connected(&s);
    v2_subscribe_presence(&mut watcher, ROOM, &member("w"));
    let mut x = v2_connected(&s);
    v2_subscribe_presence(&mut x, ROOM, &member("x"));
    watcher.expect_channel_event("sockudo_internal:member_added", ROOM);
    let r = s.api("POST", &s.app.path("/users/x/terminate_connections"), &[], Some(&json!({})));
    assert_eq!(r.status, 200, "{}", r.text());
    watcher.expect_channel_event("sockudo_internal:member_removed", ROOM);
    let mut y = v2_connected(&s);
    v2_subscribe_presence(&mut y, ROOM, &member("y"));
    watcher.expect_channel_event("sockudo_internal:member_added", ROOM);
    drop(y);
    watcher.expect_channel_event("sockudo_internal:member_removed", ROOM);
    let page = history(&s, ROOM, &[("direction", "oldest_first")]);
    let causes: Vec<_> = events(&page).into_iter().map(|(_, e, c, u)| format!("{e}/{c}/{u}")).collect();
    assert_eq!(
        causes,
        [
            "member_added/join/w",
            "member_added/join/x",
            "member_removed/forced_disconnect/x",
            "member_added/join/y",
            "member_removed/disconnect/y"
        ]
    );
    let stream_id = page["items"][0]["stream_id"].as_str().unwrap().to_owned();

    // Written records survive kill -9; serials continue in the same stream after the restart,
    // also when the shard count changes (the stream moves with its channel).
    s.kill9();
    s.restart(Some(if env_shards() == 1 { 2 } else { 1 }));
    let mut z = v2_connected(&s);
    v2_subscribe_presence(&mut z, ROOM, &member("z"));
    let page = history(&s, ROOM, &[("direction", "oldest_first")]);
    let serials: Vec<u64> = events(&page).iter().map(|e| e.0).collect();
    assert_eq!(serials, [1, 2, 3, 4, 5, 6], "{page}");
    assert!(page["items"].as_array().unwrap().iter().all(|i| i["stream_id"].as_str() == Some(&*stream_id)));
    assert_eq!(events(&page)[5].3, "z");
}

// What is refused: a channel that is not a presence channel (400), bad parameters (400), and
// channels of apps or namespaces without presence history (422); nothing is recorded there.
#[test]
fn presence_history_errors_and_switches() {
    let ns_app = App::new("ns-app", "ns-key", "ns-secret");
    let cfg = format!(
        "{}[[apps]]\nid = \"off-app\"\nkey = \"off-key\"\nsecret = \"off-secret\"\nenabled = true\n\
         [apps.policy.presence_history]\nenabled = false\n\
         [[apps]]\nid = \"ns-app\"\nkey = \"ns-key\"\nsecret = \"ns-secret\"\nenabled = true\n\
         [apps.policy.presence_history]\nenabled = true\n\
         [[apps.policy.channels.channel_namespaces]]\nname = \"quiet\"\npresence_history = {{ enabled = false }}\n\
         [[apps.policy.channels.channel_namespaces]]\nname = \"loud\"\n",
        config("", &[AppConfig::dev().set("presence_history_enabled", "true")])
    );
    let mut s = Server::start(Some(&cfg));
    let get = |s: &Server, channel: &str, rest: &str, q: &[(&str, &str)]| {
        s.get(&format!("/channels/{channel}/presence/history{rest}"), q)
    };
    get(&s, "public", "", &[]).assert_error(400, "invalid_input");
    get(&s, "private-x", "/state", &[]).assert_error(400, "invalid_input");
    get(&s, ROOM, "", &[("limit", "0")]).assert_error(400, "invalid_input");
    get(&s, ROOM, "", &[("direction", "sideways")]).assert_error(400, "invalid_input");
    get(&s, ROOM, "", &[("cursor", "not-a-cursor")]).assert_error(400, "invalid_input");
    get(&s, ROOM, "/snapshot", &[("at_serial", "x")]).assert_error(400, "invalid_input");
    let empty = get(&s, ROOM, "", &[]);
    assert_eq!(empty.status, 200, "{}", empty.text());
    assert_eq!(empty.json()["items"], json!([]));

    s.app = App::new("off-app", "off-key", "off-secret");
    get(&s, ROOM, "", &[]).assert_error(422, "feature_disabled");
    s.app = ns_app.clone();
    get(&s, "presence-quiet:1", "", &[]).assert_error(422, "feature_disabled");
    let mut m = s.connect_raw("/app/ns-key?protocol=2", None);
    let f = m.recv_json(T);
    m.socket_id = data_json(&f)["socket_id"].as_str().unwrap().to_owned();
    m.app = ns_app;
    v2_subscribe_presence(&mut m, "presence-loud:1", &member("m"));
    v2_subscribe_presence(&mut m, "presence-quiet:1", &member("m"));
    assert_eq!(events(&history(&s, "presence-loud:1", &[])).len(), 1);
}
