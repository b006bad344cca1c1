//! Rate limits (issue 5, `docs/protocol/http-api.md#rate-limits`): HTTP API requests per app and
//! WebSocket connects per client IP, node-wide across shards; each trips with 429 and its headers,
//! is counted in the metrics, and recovers when its window ends. (Client-event limits:
//! client_events.rs; app connection quotas: connection.rs.)

use e2e::*;
use serde_json::json;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

const UPGRADE: [(&str, &str); 4] = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
];

/// Sends a WebSocket upgrade (with `extra` headers) and returns the status and everything read
/// until the response head ends (and, for a refusal, the body the server closed after).
fn upgrade(s: &Server, extra: &[(&str, &str)]) -> (u16, String) {
    let mut t = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = "GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: x\r\n".to_owned();
    for (k, v) in UPGRADE.iter().chain(extra) {
        req += &format!("{k}: {v}\r\n");
    }
    t.write_all(format!("{req}\r\n").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = t.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a response: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let status: u16 = String::from_utf8_lossy(&got[9..12]).parse().unwrap();
    if status != 101 {
        let _ = t.read_to_end(&mut got);
    }
    (status, String::from_utf8_lossy(&got).into_owned())
}

fn limited(api: (u32, u64), ws: (u32, u64)) -> Server {
    let top = format!(
        "[rate_limiter]\nenabled = true\napi_rate_limit = {{ max_requests = {}, window_seconds = {} }}\n\
         websocket_rate_limit = {{ max_requests = {}, window_seconds = {} }}",
        api.0, api.1, ws.0, ws.1
    );
    Server::start(Some(&config(&top, &[AppConfig::dev()])))
}

fn metric(s: &Server, series: &str) -> f64 {
    let r = http(s.metrics_port, "GET", "/metrics", &[], None);
    r.text().lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
}

/// Waits until `f` holds (the window ended); no speed assertion.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < deadline, "{what} never recovered");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn api_requests_per_app() {
    let s = limited((3, 2), (1000, 60));
    let publish = || s.publish(json!({"name": "e", "channel": "c", "data": "1"}));
    for _ in 0..3 {
        assert_eq!(publish().status, 200);
    }
    let r = publish();
    let body = r.assert_error(429, "rate_limited");
    assert!(body["error"].as_str().unwrap().contains("Rate limit exceeded"), "{body}");
    assert_eq!(r.header("X-RateLimit-Limit"), Some("3"));
    assert_eq!(r.header("X-RateLimit-Remaining"), Some("0"));
    let retry: u64 = r.header("Retry-After").expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert!(r.header("X-RateLimit-Reset").is_some());
    // Reads count too; an unsigned request does not spend the app's quota.
    s.get("/channels", &[]).assert_error(429, "rate_limited");
    assert_eq!(s.http("GET", "/apps/app-id/channels", &[], None).status, 400);
    let l = |name: &str| {
        format!(
            "{name}{{app_id=\"app-id\",port=\"{}\",limiter_type=\"api_rate_limit\",request_context=\"http\"}}",
            s.metrics_port
        )
    };
    assert_eq!(metric(&s, &l("sockudo_rate_limit_checks_total")), 5.0);
    assert_eq!(metric(&s, &l("sockudo_rate_limit_triggered_total")), 2.0);
    eventually("the API window", || publish().status == 200);
}

#[test]
fn websocket_connects_per_ip() {
    let s = limited((1000, 60), (4, 2));
    // Spread over shards by the kernel; the limit holds node-wide.
    let mut open: Vec<Client> = (0..4).map(|_| s.connect()).collect();
    let (status, text) = upgrade(&s, &[]);
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("\"code\":\"rate_limited\""), "{text}");
    assert!(text.contains("X-RateLimit-Limit: 4\r\n"), "{text}");
    assert!(text.contains("Retry-After: "), "{text}");
    // Open connections are not affected.
    open[0].subscribe("c");
    s.publish_ok(json!({"name": "e", "channel": "c", "data": "1"}));
    open[0].expect_event("e");
    let l = |name: &str| {
        format!("{name}{{app_id=\"app-id\",port=\"{}\",limiter_type=\"connection_rate_limit\",request_context=\"websocket\"}}", s.metrics_port)
    };
    assert_eq!(metric(&s, &l("sockudo_rate_limit_triggered_total")), 1.0);
    eventually("the connect window", || upgrade(&s, &[]).0 == 101);
    open.push(s.connect());
}

#[test]
fn trusted_proxy_hops_pick_the_client_address() {
    let top = "[rate_limiter]\nenabled = true\nwebsocket_rate_limit = { max_requests = 2, window_seconds = 60, trust_hops = 1 }";
    let s = Server::start(Some(&config(top, &[AppConfig::dev()])));
    let from = |ip: &str| upgrade(&s, &[("X-Forwarded-For", ip)]).0;
    assert_eq!((from("9.9.9.1"), from("9.9.9.1"), from("9.9.9.1")), (101, 101, 429));
    // Another client behind the same proxy has its own window.
    assert_eq!(from("9.9.9.2"), 101);
}

#[test]
fn the_built_in_dev_app_is_not_throttled() {
    // Limits configured but no apps: the built-in development app runs and the limiter stays
    // off unless enabled explicitly (`docs/protocol/http-api.md#rate-limits`).
    let s =
        Server::start(Some(&config("[rate_limiter]\napi_rate_limit = { max_requests = 3, window_seconds = 60 }", &[])));
    for _ in 0..50 {
        assert_eq!(s.publish(json!({"name": "e", "channel": "c", "data": "1"})).status, 200);
    }
}

// The per-socket client-event limit and the per-app connection quota recover too.
#[test]
fn client_event_limit_and_app_quota_recover() {
    let app =
        AppConfig::dev().set("max_client_events_per_second", "2").set("decay_seconds", "2").set("max_connections", "2");
    let s = Server::start(Some(&config("", &[app])));
    let mut a = s.connect();
    let mut b = s.connect();
    a.subscribe_private("private-r");
    b.subscribe_private("private-r");
    let mut refused = s.connect_raw("/app/app-key?protocol=7", None);
    assert_eq!(refused.expect_fatal(4004), "Application is over adapter quota");
    for i in 0..3 {
        a.client_event("client-n", "private-r", json!(i));
    }
    assert_eq!(a.expect_error(4301), "Client event rejected due to rate limit");
    assert_eq!(b.expect_event("client-n")["data"], 0);
    assert_eq!(b.expect_event("client-n")["data"], 1);
    let mut n = 10;
    eventually("the client-event window", || {
        n += 1;
        a.client_event("client-n", "private-r", json!(n));
        match b.recv(Duration::from_millis(300)) {
            Some(Frame::Json(f)) => f["data"] == n,
            _ => {
                a.expect_error(4301);
                false
            }
        }
    });
    b.close();
    eventually("the connection quota", || {
        let mut c = s.connect_raw("/app/app-key?protocol=7", None);
        c.recv_json(T)["event"] == "pusher:connection_established"
    });
}
