//! Process lifecycle: graceful stop (`docs/protocol/pusher.md#close-sequence`) and config validation.

use e2e::*;
use std::time::Duration;

// SIGTERM: every socket gets E(4200) then close 4200; the process exits within the grace period.
#[test]
fn sigterm_closes_every_socket_with_4200() {
    let grace = 5;
    let s = Server::start(Some(&config(&format!("shutdown_grace_period = {grace}"), &[AppConfig::dev()])));
    // Several sockets, so that with more than one shard some land on each.
    let mut clients: Vec<Client> = (0..8).map(|_| s.connect()).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        if i % 2 == 0 {
            c.subscribe("orders");
        } else {
            c.subscribe_presence("presence-room", &serde_json::json!({"user_id": i.to_string()}));
        }
    }
    // Drain member_added frames so that each socket's next frame is the shutdown error.
    std::thread::sleep(Duration::from_millis(500));
    for c in clients.iter_mut() {
        while let Some(Frame::Json(f)) = c.recv(Duration::from_millis(200)) {
            assert_eq!(f["event"], "pusher_internal:member_added", "{f}");
        }
    }
    let mut s = s;
    s.sigterm();
    for c in clients.iter_mut() {
        // With several shards, members on a shard that stops first may be reported as removed
        // before this socket's own shard closes it.
        let f = loop {
            let f = c.recv_json(T);
            if f["event"] != "pusher_internal:member_removed" {
                break f;
            }
        };
        assert_eq!(f["event"], "pusher:error", "{f}");
        assert_eq!(f["data"]["code"], 4200, "{f}");
        assert_eq!(c.expect_close(4200), f["data"]["message"].as_str().unwrap());
    }
    let status = s.wait_exit(Duration::from_secs(grace + 5)).expect("server did not exit after SIGTERM");
    assert!(status.success(), "graceful stop should exit 0, got {status}");
}

// A bad config value stops start-up with a non-zero exit and a message naming the key.
#[test]
fn bad_config_values_are_refused() {
    let cases = [
        ("port", config("port = \"abc\"", &[AppConfig::dev()])),
        ("activity_timeout", config("activity_timeout = -1", &[AppConfig::dev()])),
        ("shutdown_grace_period", config("shutdown_grace_period = \"soon\"", &[AppConfig::dev()])),
        (
            "max_presence_members_per_channel",
            config("", &[AppConfig::dev().set("max_presence_members_per_channel", "-5")]),
        ),
        ("enable_client_messages", config("", &[AppConfig::dev().set("enable_client_messages", "[1]")])),
    ];
    for (key, cfg) in cases {
        let (status, out) = Server::start_expecting_exit(&cfg);
        assert!(!status.success(), "{key}: exit status {status}\n{out}");
        assert!(out.contains(key), "{key}: message does not name the key:\n{out}");
    }
}

// Sanity check for the case above: the same configs with good values do start.
#[test]
fn good_config_values_start() {
    let cfg = config(
        "activity_timeout = 30\nshutdown_grace_period = 3\nuser_authentication_timeout = 100\nmax_connections = 0",
        &[AppConfig::dev().set("max_presence_members_per_channel", "5")],
    );
    let s = Server::start(Some(&cfg));
    let mut c = s.connect_raw("/app/app-key", None);
    assert_eq!(c.established()["activity_timeout"], 30);
}

// The reference layout `[[app_manager.array.apps]]` is accepted too
// (`docs/protocol/pusher.md#app-fields`).
#[test]
fn reference_app_layout() {
    let other = App::new("ref-id", "ref-key", "ref-secret");
    let cfg = config("", &[AppConfig::for_app(&other)]).replace("[[apps]]", "[[app_manager.array.apps]]");
    let s = Server::start(Some(&cfg));
    let mut c = s.connect_app(&other);
    c.subscribe_private("private-x");
    let r = s.api_raw(&other, "GET", &other.path("/channels"), &[], None, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    // Only the configured app exists.
    let mut dev = s.connect_raw("/app/app-key", None);
    dev.expect_fatal(4001);
}

// Taking over a port from another server: that server (a std listener, SO_REUSEADDR but not
// SO_REUSEPORT, as the reference uses) closed its connections itself, so they linger in
// TIME_WAIT on the port. This server binds with SO_REUSEADDR too and starts at once.
#[test]
fn starts_at_once_on_a_port_with_connections_in_time_wait() {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    let port = free_port();
    let previous = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let mut clients: Vec<TcpStream> = (0..50).map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    for _ in 0..clients.len() {
        let (conn, _) = previous.accept().unwrap();
        drop(conn); // the server closes first: its side goes to TIME_WAIT
    }
    for c in clients.iter_mut() {
        let mut buf = [0u8; 1];
        assert_eq!(c.read(&mut buf).unwrap(), 0, "the old server's close");
    }
    drop(clients);
    drop(previous);
    let s = Server::start_on_port(port, None);
    let mut c = s.connect();
    c.subscribe("after-takeover");
}

// A Sockudo 5 config with the nested `policy` table: its limits, features and namespaces are
// applied (they used to be logged as unused and ignored).
#[test]
fn nested_policy_apps_are_enforced() {
    let cfg = r#"
[[apps]]
id = "app-id"
key = "app-key"
secret = "app-secret"
enabled = true
[apps.policy.limits]
max_event_batch_size = 1
[apps.policy.features]
enable_client_messages = false
[apps.policy.channels]
channel_namespaces = [{ name = "chat" }]
"#;
    let s = Server::start(Some(cfg));
    let r = s.batch(serde_json::json!([
        {"name": "e", "channel": "a", "data": "1"},
        {"name": "e", "channel": "b", "data": "2"},
    ]));
    r.assert_error(400, "limit_exceeded");
    let mut c = s.connect();
    c.subscribe("chat:room-1");
    c.send_subscribe("market:btc", None, None);
    assert_eq!(c.expect_error(4300), "Channel error: Unknown channel namespace 'market'");
    c.subscribe_private("private-chat:x");
    c.client_event("client-typing", "private-chat:x", serde_json::json!({}));
    assert_eq!(c.expect_error(4301), "Client event error: Client events are not enabled for this app");
}
