//! An app's own `history` and `connection_recovery` settings and a channel namespace's own
//! `history` (`docs/protocol/v2.md#per-app-and-namespace-settings`), in the flat layout and in
//! Sockudo 5's nested `policy` layout: each replaces the server's setting for its channels
//! only.

use e2e::*;
use serde_json::{json, Value};

fn flat() -> App {
    App::new("app-flat", "key-flat", "secret-flat")
}

fn nested() -> App {
    App::new("app-nested", "key-nested", "secret-nested")
}

/// `app-flat` keeps no history and serves no resume; `app-nested` keeps 3 messages per channel
/// without rewind, but its `chat` namespace keeps 5 and may rewind.
fn server() -> Server {
    let (f, n) = (flat(), nested());
    let config = format!(
        r#"
[[apps]]
id = "{}"
key = "{}"
secret = "{}"
enabled = true
history = {{ enabled = false }}
connection_recovery = {{ enabled = false }}

[[apps]]
id = "{}"
key = "{}"
secret = "{}"
enabled = true
[apps.policy.history]
rewind_enabled = false
max_messages_per_channel = 3
[apps.policy.connection_recovery]
max_buffer_size = 2
[apps.policy.channels]
channel_namespaces = [{{ name = "chat", history = {{ rewind_enabled = true, max_messages_per_channel = 5 }} }}]
"#,
        f.id, f.key, f.secret, n.id, n.key, n.secret
    );
    Server::start(Some(&config))
}

fn publish(s: &Server, app: &App, channel: &str, data: &str) -> Value {
    let r = s.api_as(
        app,
        "POST",
        &app.path("/events"),
        &[],
        Some(&json!({"name": "e", "channel": channel, "data": data, "info": ""})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn history(s: &Server, app: &App, channel: &str) -> Response {
    s.api_as(app, "GET", &app.path(&format!("/channels/{channel}/history")), &[("direction", "oldest_first")], None)
}

fn v2(s: &Server, app: &App) -> Client {
    let mut c = s.connect_raw(&format!("/app/{}?protocol=2", app.key), None);
    let f = c.recv_json(T);
    assert_eq!(f["event"], "sockudo:connection_established", "{f}");
    c.socket_id = data_json(&f)["socket_id"].as_str().unwrap().to_owned();
    c
}

#[test]
fn an_app_without_history_or_recovery() {
    let s = server();
    let app = flat();
    let mut c = v2(&s, &app);
    v2_subscribe(&mut c, "news");
    publish(&s, &app, "news", "1");
    let f = c.expect_event("e");
    assert_eq!(f["serial"], 1, "live frames keep their serials: {f}");
    let e = history(&s, &app, "news").assert_error(422, "feature_disabled");
    assert!(e["error"].as_str().unwrap().contains("app"), "{e}");
    let stream = f["stream_id"].as_str().unwrap().to_owned();
    resume(&mut c, json!({"news": {"stream_id": stream, "serial": 1}}));
    assert!(c.expect_v2_error(4301).contains("recovery"));
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "other", "rewind": 2}}));
    assert!(c.expect_v2_error(4300).contains("rewind"));
    // Without history there are no mutable messages either.
    assert!(publish(&s, &app, "news", "2")["channels"]["news"].get("message_serial").is_none());
    // The other app keeps its history.
    publish(&s, &nested(), "news", "1");
    assert_eq!(history(&s, &nested(), "news").json()["items"].as_array().unwrap().len(), 1);
}

#[test]
fn retention_and_rewind_per_app_and_namespace() {
    let s = server();
    let app = nested();
    for i in 1..=8 {
        publish(&s, &app, "news", &i.to_string());
        publish(&s, &app, "chat:room", &i.to_string());
    }
    let serials = |channel: &str| -> Vec<u64> {
        let page = history(&s, &app, channel).json();
        page["items"].as_array().unwrap().iter().map(|i| i["serial"].as_u64().unwrap()).collect()
    };
    assert_eq!(serials("news"), vec![6, 7, 8], "the app keeps 3");
    assert_eq!(serials("chat:room"), vec![4, 5, 6, 7, 8], "its chat namespace keeps 5");
    let mut c = v2(&s, &app);
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "news", "rewind": 2}}));
    assert!(c.expect_v2_error(4300).contains("rewind"));
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "chat:room", "rewind": 2}}));
    c.expect_event("sockudo_internal:subscription_succeeded");
    let rewound: Vec<Value> = (0..2).map(|_| c.expect_event("e")["serial"].clone()).collect();
    assert_eq!(rewound, [json!(7), json!(8)]);
    c.expect_event("sockudo:rewind_complete");
}

#[test]
fn settings_the_server_cannot_honour_are_refused() {
    let app = AppConfig::dev().set("history", "{ enabled = true }");
    let (status, log) = Server::start_expecting_exit(&config("[history]\nenabled = false", &[app]));
    assert!(!status.success());
    assert!(log.contains("apps[0].history.enabled"), "{log}");
    let app = AppConfig::dev().set("channel_namespaces", r#"[{ name = "chat", history = { enabled = false } }]"#);
    let (status, log) = Server::start_expecting_exit(&config("", &[app]));
    assert!(!status.success());
    assert!(log.contains("channel_namespaces[0].history.enabled"), "{log}");
    let app = AppConfig::dev().set("connection_recovery", "{ max_buffer_size = 0 }");
    let (status, log) = Server::start_expecting_exit(&config("", &[app]));
    assert!(!status.success());
    assert!(log.contains("connection_recovery.max_buffer_size"), "{log}");
}
