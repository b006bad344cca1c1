//! Structured logs (issue 5): one JSON object (or logfmt line) per record, with the connection
//! lifecycle at debug and its fields as fields; nothing per message at info.

use e2e::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn lines_until(s: &Server, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = s.log();
        if done(&log) || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn json_lines_with_connection_lifecycle_fields() {
    let s = Server::start_with_env(
        Some(&config("log_format = \"json\"", &[AppConfig::dev()])),
        &[("RUST_LOG", "sockudo=debug")],
    );
    let mut c = s.connect();
    let socket_id = c.socket_id.clone();
    c.subscribe("news");
    s.publish_ok(json!({"name": "e", "channel": "news", "data": "1"}));
    c.expect_event("e");
    c.close();
    let log = lines_until(&s, |l| l.contains("connection closed"));
    let records: Vec<Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(records.iter().all(|r| r["ts"].is_string() && r["level"].is_string() && r["msg"].is_string()));
    let find = |msg: &str| records.iter().find(|r| r["msg"] == msg).unwrap_or_else(|| panic!("no {msg:?} in {log}"));
    let opened = find("connection opened");
    assert_eq!(
        (opened["level"].as_str(), opened["socket_id"].as_str(), opened["app"].as_str()),
        (Some("DEBUG"), Some(socket_id.as_str()), Some("app-id"))
    );
    let closed = find("connection closed");
    assert_eq!(closed["socket_id"], socket_id.as_str());
    assert!(closed["open_ms"].as_str().is_some_and(|v| v.parse::<u64>().is_ok()), "{closed}");
    // No record at info or above mentions the message or the subscription.
    assert!(
        records
            .iter()
            .filter(|r| r["level"] == "INFO" || r["level"] == "WARN")
            .all(|r| !r.to_string().contains("news")),
        "{log}"
    );
}

#[test]
fn logfmt_lines_and_bad_format() {
    let s = Server::start_with_env(None, &[("LOG_FORMAT", "logfmt"), ("RUST_LOG", "sockudo=debug")]);
    let mut refused = s.connect_raw("/app/nope?protocol=7", None);
    refused.expect_error(4001);
    let log = lines_until(&s, |l| l.contains("connection refused"));
    let line = log.lines().find(|l| l.contains("connection refused")).unwrap();
    assert!(
        line.starts_with("ts=")
            && line.contains(" level=debug ")
            && line.contains(" code=4001")
            && line.contains("reason=\"Application does not exist\""),
        "{line}"
    );
    let (status, out) = Server::start_expecting_exit("log_format = \"xml\"");
    assert_eq!(status.code(), Some(2));
    assert!(out.contains("log_format") && out.contains("xml"), "{out}");
}
