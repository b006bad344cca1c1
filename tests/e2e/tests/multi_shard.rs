//! Two shards forced by the config (`shards = 2`): state that spans sockets must be node-wide.
//! Each test opens many sockets so that (with overwhelming probability) some land on each shard.

use e2e::*;
use serde_json::json;
use std::time::Duration;

const N: usize = 12;

fn two_shards(top: &str, app: AppConfig) -> Server {
    Server::start_with_config_shards(&config(&format!("shards = 2\n{top}"), &[app]))
}

fn start() -> Server {
    two_shards("", AppConfig::dev())
}

/// No socket receives anything more (one shared wait, then a short look at each).
fn all_quiet(clients: &mut [Client]) {
    std::thread::sleep(QUIET);
    for c in clients {
        c.expect_no_frame(Duration::from_millis(50));
    }
}

fn user(i: usize) -> String {
    format!("u{}", i / 2) // two sockets per user
}

#[test]
fn presence_members_seen_once_across_shards() {
    let s = start();
    let room = "presence-room";
    let mut obs = s.connect();
    obs.subscribe_presence(room, &json!({"user_id": "obs"}));
    let mut sockets = Vec::new();
    for i in 0..N {
        let mut c = s.connect();
        let snap = c.subscribe_presence(room, &json!({"user_id": user(i)}));
        assert_eq!(snap["count"], 1 + i / 2 + 1, "socket {i}: {snap}");
        let ids = snap["ids"].as_array().unwrap();
        let distinct: std::collections::BTreeSet<String> = ids.iter().map(|v| v.to_string()).collect();
        assert_eq!(distinct.len(), ids.len(), "duplicate ids: {snap}");
        sockets.push(c);
    }
    // The observer saw each user join exactly once.
    let mut added: Vec<String> = (0..N / 2)
        .map(|_| {
            let f = obs.expect_channel_event("pusher_internal:member_added", room);
            data_json(&f)["user_id"].as_str().unwrap().to_string()
        })
        .collect();
    added.sort();
    assert_eq!(added, (0..N / 2).map(|u| format!("u{u}")).collect::<Vec<_>>());
    obs.expect_no_frame(QUIET);

    let r = s.get(&format!("/channels/{room}"), &[("info", "user_count,subscription_count")]);
    assert_eq!(r.json(), json!({"occupied": true, "user_count": 1 + N / 2, "subscription_count": 1 + N}));
    let users = s.get(&format!("/channels/{room}/users"), &[]).json();
    assert_eq!(users["users"].as_array().unwrap().len(), 1 + N / 2, "{users}");

    // u1 leaves: nothing after its first socket, one member_removed after its second.
    let second = sockets.remove(3);
    let first = sockets.remove(2);
    first.close();
    obs.expect_no_frame(QUIET);
    second.close();
    let f = obs.expect_channel_event("pusher_internal:member_removed", room);
    assert_eq!(data_json(&f), json!({"user_id": "u1"}));
    obs.expect_no_frame(QUIET);
    let mut late = s.connect();
    assert_eq!(late.subscribe_presence(room, &json!({"user_id": "late"}))["count"], 1 + N / 2);
}

#[test]
fn presence_member_limit_is_channel_wide() {
    let s = two_shards("", AppConfig::dev().set("max_presence_members_per_channel", "3"));
    let (mut accepted, mut refused) = (0, 0);
    let mut keep = Vec::new();
    for i in 0..8 {
        let mut c = s.connect();
        c.send_presence("presence-room", &json!({"user_id": i.to_string()}));
        let f = c.recv_json(T);
        match f["event"].as_str().unwrap() {
            "pusher_internal:subscription_succeeded" => accepted += 1,
            "pusher:error" => {
                assert_eq!(f["data"]["code"], 4100, "{f}");
                refused += 1;
            }
            _ => panic!("{f}"),
        }
        keep.push(c);
    }
    assert_eq!((accepted, refused), (3, 5));
}

#[test]
fn publish_and_client_events_reach_every_shard() {
    let s = start();
    let mut subs: Vec<Client> = (0..N).map(|_| s.connect()).collect();
    for c in subs.iter_mut() {
        c.subscribe("orders");
        c.subscribe_private("private-chat");
    }
    let r = s.publish_ok(json!({"name": "e", "channel": "orders", "data": "1", "info": "subscription_count"}));
    assert_eq!(r["channels"]["orders"]["subscription_count"], N, "{r}");
    for c in subs.iter_mut() {
        assert_eq!(c.recv_json(T), json!({"event": "e", "channel": "orders", "data": "1"}));
    }
    all_quiet(&mut subs);

    subs[0].client_event("client-x", "private-chat", json!({"n": 1}));
    for c in subs[1..].iter_mut() {
        assert_eq!(c.recv_json(T), json!({"event": "client-x", "channel": "private-chat", "data": {"n": 1}}));
    }
    all_quiet(&mut subs);

    // socket_id exclusion, whichever shard the excluded socket is on.
    for excluded in [1, N - 1] {
        let sid = subs[excluded].socket_id.clone();
        s.publish_ok(json!({"name": "x", "channel": "orders", "data": "1", "socket_id": sid}));
        for (i, c) in subs.iter_mut().enumerate() {
            if i != excluded {
                c.expect_event("x");
            }
        }
        all_quiet(&mut subs);
    }

    let j = s.get("/channels", &[("info", "subscription_count")]).json();
    assert_eq!(j["channels"]["orders"]["subscription_count"], N, "{j}");
}

#[test]
fn cache_channel_across_shards() {
    let s = start();
    s.publish_ok(json!({"name": "update", "channel": "cache-news", "data": "x"}));
    for _ in 0..6 {
        let mut c = s.connect();
        c.subscribe("cache-news");
        assert_eq!(c.recv_json(T), json!({"event": "update", "channel": "cache-news", "data": "x"}));
    }
}

#[test]
fn user_features_across_shards() {
    let s = start();
    let mut watcher = s.connect();
    watcher.send_signin_ok(&json!({"id": "w", "watchlist": ["42"]}));
    assert_eq!(watcher.recv_json(T), json!({"event": "offline", "data": {"user_ids": ["42"]}}));
    watcher.expect_event("pusher:signin_success");
    let mut mine: Vec<Client> = Vec::new();
    for _ in 0..6 {
        let mut c = s.connect();
        c.signin(&json!({"id": "42"}));
        mine.push(c);
    }
    let mut others: Vec<Client> = (0..6).map(|_| s.connect()).collect();
    for c in others.iter_mut() {
        c.signin(&json!({"id": "7"}));
    }
    // The watcher heard 42 come online (at least once; the reference repeats it per sign-in).
    assert_eq!(watcher.recv_json(T), json!({"event": "online", "data": {"user_ids": ["42"]}}));
    while let Some(f) = watcher.recv(QUIET) {
        assert!(
            matches!(&f, Frame::Json(v) if *v == json!({"event": "online", "data": {"user_ids": ["42"]}})),
            "{f:?}"
        );
    }

    s.publish_ok(json!({"name": "n", "channel": "#server-to-user-42", "data": "x"}));
    for c in mine.iter_mut() {
        c.expect_channel_event("n", "#server-to-user-42");
    }
    all_quiet(&mut mine);
    all_quiet(&mut others);

    let r = s.api("POST", &s.app.path("/users/42/terminate_connections"), &[], Some(&json!({})));
    assert_eq!(r.status, 200, "{}", r.text());
    for c in mine.iter_mut() {
        c.expect_fatal(4009);
    }
    for c in others.iter_mut() {
        c.assert_alive();
    }
    // 42's last socket is gone: the watcher hears it once.
    assert_eq!(watcher.recv_json(T), json!({"event": "offline", "data": {"user_ids": ["42"]}}));
    watcher.expect_no_frame(QUIET);
}

#[test]
fn node_connection_limit_spans_shards() {
    let s = two_shards("max_connections = 3", AppConfig::dev());
    let _kept: Vec<Client> = (0..3).map(|_| s.connect()).collect();
    for _ in 0..5 {
        let mut c = s.connect_raw("/app/app-key?protocol=7", None);
        assert_eq!(c.expect_fatal(4100), "Over capacity");
    }
}
