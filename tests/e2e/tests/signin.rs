//! User sign-in and user features: `docs/protocol/pusher.md#user-sign-in`,
//! `docs/protocol/pusher.md#watchlist-events`, `docs/protocol/pusher.md#sending-to-a-user` and
//! `docs/protocol/http-api.md#terminating-user-connections`.

use e2e::*;
use serde_json::{json, Value};

// `docs/protocol/pusher.md#user-sign-in`
#[test]
fn signin_success() {
    let s = Server::start(None);
    let mut c = s.connect();
    let ud = c.send_signin_ok(&json!({"id": "42", "user_info": {"name": "Ada"}}));
    assert_eq!(c.recv_json(T), json!({"event": "pusher:signin_success", "data": {"user_data": ud}}));
}

// `docs/protocol/pusher.md#user-sign-in` and `docs/protocol/pusher.md#sign-in-signature` (the key
// prefix is checked, unlike in the reference)
#[test]
fn signin_bad_signature() {
    let s = Server::start(None);
    let mut c = s.connect();
    let ud = json!({"id": "42"}).to_string();
    c.send_signin(&ud, &format!("app-key:{}", hmac_hex("app-secret", &format!("{}::user::{{}}", c.socket_id))));
    assert_eq!(c.expect_error(4009), "Authentication error: Connection not authorized for signin.");
    c.assert_alive();
    // Correct hex but another key prefix (the prefix is verified).
    let good = signin_auth(&c.app, &c.socket_id, &ud);
    let hex = good.split_once(':').unwrap().1;
    c.send_signin(&ud, &format!("other-key:{hex}"));
    assert_eq!(c.expect_error(4009), "Authentication error: Connection not authorized for signin.");
    c.assert_alive();
    // Still not signed in: nothing reaches user 42.
    s.publish_ok(json!({"name": "e", "channel": "#server-to-user-42", "data": "x"}));
    c.expect_no_frame(QUIET);
}

// `docs/protocol/pusher.md#user-sign-in`
#[test]
fn signin_bad_user_data() {
    let s = Server::start(None);
    let mut c = s.connect();
    let sign = |c: &Client, ud: &str| signin_auth(&c.app, &c.socket_id, ud);

    let ud = json!({"name": "no id"}).to_string();
    c.send_signin(&ud, &sign(&c, &ud));
    assert_eq!(c.expect_error(4009), "Authentication error: Missing 'id' field in user_data");

    let ud = "{not json";
    c.send_signin(ud, &sign(&c, ud));
    let msg = c.expect_error(4009);
    assert!(msg.starts_with("Authentication error: Invalid user_data JSON"), "{msg}");

    c.send_json(&json!({"event": "pusher:signin", "data": {"auth": "app-key:00"}}));
    assert_eq!(c.expect_error(4009), "Authentication error: Missing 'user_data' field in signin data");
    c.send_json(&json!({"event": "pusher:signin", "data": {"user_data": "{\"id\":\"1\"}"}}));
    assert_eq!(c.expect_error(4009), "Authentication error: Missing 'auth' field in signin data");
    c.assert_alive();
}

// `docs/protocol/pusher.md#user-sign-in`
#[test]
fn signin_disabled_for_app() {
    let s = Server::start(Some(&config("", &[AppConfig::dev().set("enable_user_authentication", "false")])));
    let mut c = s.connect();
    c.send_signin_ok(&json!({"id": "42"}));
    assert_eq!(c.expect_error(4009), "Authentication error: User authentication is disabled for this app");
    c.assert_alive();
}

// `docs/protocol/pusher.md#sending-to-a-user`
#[test]
fn send_to_user() {
    let s = Server::start(None);
    let mut a1 = s.connect();
    a1.signin(&json!({"id": "42"}));
    let mut a2 = s.connect();
    a2.signin(&json!({"id": "42"}));
    let mut other = s.connect();
    other.signin(&json!({"id": "7"}));
    let mut anonymous = s.connect();
    // A user identified through presence is addressable too.
    let mut member = s.connect();
    member.subscribe_presence("presence-room", &json!({"user_id": "43"}));

    s.publish_ok(json!({"name": "note", "channel": "#server-to-user-42", "data": "x"}));
    let expected = json!({"event": "note", "channel": "#server-to-user-42", "data": "x"});
    assert_eq!(a1.recv_json(T), expected);
    assert_eq!(a2.recv_json(T), expected);
    other.expect_no_frame(QUIET);
    anonymous.expect_no_frame(QUIET);
    member.expect_no_frame(QUIET);

    s.publish_ok(json!({"name": "note", "channel": "#server-to-user-43", "data": "y"}));
    assert_eq!(member.recv_json(T), json!({"event": "note", "channel": "#server-to-user-43", "data": "y"}));

    // socket_id exclusion applies.
    s.publish_ok(json!({"name": "n2", "channel": "#server-to-user-42", "data": "z", "socket_id": a1.socket_id}));
    a2.expect_event("n2");
    a1.expect_no_frame(QUIET);

    // Subscribing to the user channel is allowed (pusher-js does it) and does not double deliveries.
    a1.subscribe("#server-to-user-42");
    s.publish_ok(json!({"name": "n3", "channel": "#server-to-user-42", "data": "w"}));
    a1.expect_event("n3");
    a1.expect_no_frame(QUIET);
}

fn watch_event(c: &mut Client) -> (String, Vec<String>) {
    let f = c.recv_json(T);
    assert!(f.get("channel").is_none(), "{f}");
    let mut ids: Vec<String> = f["data"]["user_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("expected a watchlist event, got {f}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    ids.sort();
    (f["event"].as_str().unwrap().to_string(), ids)
}

// `docs/protocol/pusher.md#watchlist-events` (unlike the reference: no duplicates, every signed-in
// user is tracked).
#[test]
fn watchlist_events() {
    let s = Server::start(None);
    let mut u7 = s.connect();
    u7.signin(&json!({"id": "7"}));

    let mut u42 = s.connect();
    let ud = u42.send_signin_ok(&json!({"id": "42", "watchlist": ["7", "9"]}));
    let mut got = vec![watch_event(&mut u42), watch_event(&mut u42)];
    got.sort();
    assert_eq!(got, [("offline".to_string(), vec!["9".to_string()]), ("online".to_string(), vec!["7".to_string()])]);
    assert_eq!(u42.recv_json(T), json!({"event": "pusher:signin_success", "data": {"user_data": ud}}));
    u42.expect_no_frame(QUIET);
    u7.expect_no_frame(QUIET);

    // A watched user signs in: the watcher hears it once; the new user gets only its success.
    let mut u9 = s.connect();
    u9.signin(&json!({"id": "9"}));
    assert_eq!(u42.recv_json(T), json!({"event": "online", "data": {"user_ids": ["9"]}}));
    u42.expect_no_frame(QUIET);
    u9.expect_no_frame(QUIET);

    // Its last socket goes: offline, once.
    u9.close();
    assert_eq!(u42.recv_json(T), json!({"event": "offline", "data": {"user_ids": ["9"]}}));
    u42.expect_no_frame(QUIET);
}

// `docs/protocol/pusher.md#watchlist-events`: no watchlist events when the app does not enable them.
#[test]
fn watchlist_disabled() {
    let s = Server::start(Some(&config("", &[AppConfig::dev().set("enable_watchlist_events", "false")])));
    let mut u7 = s.connect();
    u7.signin(&json!({"id": "7"}));
    let mut u42 = s.connect();
    u42.signin(&json!({"id": "42", "watchlist": ["7", "9"]}));
    u42.expect_no_frame(QUIET);
}

fn user_action(s: &Server, user: &str, action: &str) {
    let r = s.api("POST", &s.app.path(&format!("/users/{user}/{action}")), &[], Some(&json!({})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"ok": true}));
}

// `docs/protocol/http-api.md#terminating-user-connections`
#[test]
fn terminate_connections() {
    let s = Server::start(None);
    let mut watcher = s.connect();
    watcher.subscribe_presence("presence-room", &json!({"user_id": "1"}));
    let mut a1 = s.connect();
    a1.signin(&json!({"id": "42"}));
    let mut a2 = s.connect();
    a2.subscribe_presence("presence-room", &json!({"user_id": "42"})); // presence-derived
    watcher.expect_event("pusher_internal:member_added");
    let mut other = s.connect();
    other.signin(&json!({"id": "7"}));

    user_action(&s, "42", "terminate_connections");
    assert_eq!(a1.expect_fatal(4009), "You got disconnected by the app.");
    assert_eq!(a2.expect_fatal(4009), "You got disconnected by the app.");
    let removed = watcher.expect_channel_event("pusher_internal:member_removed", "presence-room");
    assert_eq!(data_json(&removed), json!({"user_id": "42"}));
    other.assert_alive();
    watcher.assert_alive();
    // Unknown user: still 200.
    user_action(&s, "nobody", "terminate_connections");
}

// `docs/protocol/http-api.md#terminating-user-connections`: `force_reconnect`, a Sockudo extension.
#[test]
fn force_reconnect() {
    let s = Server::start(None);
    let mut a = s.connect();
    a.signin(&json!({"id": "42"}));
    let mut other = s.connect();
    other.signin(&json!({"id": "7"}));
    user_action(&s, "42", "force_reconnect");
    assert_eq!(a.expect_fatal(4200), "Force reconnect requested by the app.");
    other.assert_alive();
}

// A second sign-in on the same socket moves it to the new user id
// (`docs/protocol/pusher.md#user-sign-in`).
#[test]
fn signin_again_changes_user() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.signin(&json!({"id": "1"}));
    c.signin(&json!({"id": "2"}));
    let publish = |user: &str| -> Value {
        s.publish_ok(json!({"name": "n", "channel": format!("#server-to-user-{user}"), "data": user}))
    };
    publish("1");
    c.expect_no_frame(QUIET);
    publish("2");
    assert_eq!(c.expect_event("n")["data"], "2");
}
