//! RFC 6455 edges and the inbound size limit (`docs/protocol/pusher.md#message-size-limit`,
//! `docs/protocol/pusher.md#activity-timeout-and-heartbeat`,
//! `docs/protocol/pusher.md#inbound-processing-order`).

use e2e::*;
use serde_json::json;
use tungstenite::Message;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;

const LIMIT: usize = 64 * 1024;

/// `{"event":"pusher:ping","data":"xxx…"}` of exactly `len` bytes.
fn ping_of_len(len: usize) -> String {
    let shell = json!({"event": "pusher:ping", "data": ""}).to_string();
    let s = json!({"event": "pusher:ping", "data": "x".repeat(len - shell.len())}).to_string();
    assert_eq!(s.len(), len);
    s
}

fn expect_pong(c: &mut Client) {
    assert_eq!(c.recv_json(T), json!({"event": "pusher:pong"}));
}

// `docs/protocol/pusher.md#message-size-limit`: 64 KiB is the largest accepted message; one byte
// more closes with 1009.
#[test]
fn message_size_limit() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.send_raw(&raw_frame(true, false, TEXT, true, ping_of_len(LIMIT).as_bytes()));
    expect_pong(&mut c);

    c.send_raw(&raw_frame(true, false, TEXT, true, ping_of_len(LIMIT + 1).as_bytes()));
    c.expect_close(1009);
}

// `docs/protocol/pusher.md#message-size-limit`: the limit applies to the whole message, not to each
// fragment.
#[test]
fn fragmented_message_over_limit() {
    let s = Server::start(None);
    let mut c = s.connect();
    let msg = ping_of_len(LIMIT + 4096);
    let chunks: Vec<&[u8]> = msg.as_bytes().chunks(8192).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 { TEXT } else { CONTINUATION };
        c.send_raw(&raw_frame(i + 1 == chunks.len(), false, opcode, true, chunk));
    }
    c.expect_close(1009);
}

// RFC 6455, section 5.1: an unmasked client frame fails the connection with 1002.
#[test]
fn unmasked_client_frame() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.send_raw(&raw_frame(true, false, TEXT, false, br#"{"event":"pusher:ping"}"#));
    c.expect_close(1002);
}

// RFC 6455, sections 5.2, 5.4 and 5.5: other protocol errors -> 1002.
#[test]
fn protocol_errors() {
    let s = Server::start(None);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("RSV1 without extension", raw_frame(true, true, TEXT, true, b"{}")),
        ("reserved opcode 0x3", raw_frame(true, false, 0x3, true, b"{}")),
        ("continuation without start", raw_frame(true, false, CONTINUATION, true, b"{}")),
        ("fragmented ping", raw_frame(false, false, PING, true, b"x")),
        ("ping payload over 125 bytes", raw_frame(true, false, PING, true, &[b'x'; 126])),
        (
            "new message inside a fragmented one",
            [raw_frame(false, false, TEXT, true, b"{\"ev"), raw_frame(true, false, TEXT, true, b"{}")].concat(),
        ),
    ];
    for (name, bytes) in cases {
        let mut c = s.connect();
        c.send_raw(&bytes);
        match c.recv(T) {
            Some(Frame::Close(Some((code, _)))) => assert_eq!(code, 1002, "{name}"),
            other => panic!("{name}: expected close 1002, got {other:?}"),
        }
    }
}

// RFC 6455, section 8.1: invalid UTF-8 in a text message -> 1007.
#[test]
fn invalid_utf8_text() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.send_raw(&raw_frame(true, false, TEXT, true, b"{\"event\":\"\xff\xfe\"}"));
    c.expect_close(1007);
}

// RFC 6455, section 5.4: fragments are reassembled, with a control frame allowed in between.
#[test]
fn fragmented_message() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.send_raw(&raw_frame(false, false, TEXT, true, b"{\"event\":\"pus"));
    c.send_raw(&raw_frame(false, false, CONTINUATION, true, b"her:pi"));
    c.send_raw(&raw_frame(true, false, PING, true, b"mid"));
    c.send_raw(&raw_frame(true, false, CONTINUATION, true, b"ng\",\"data\":{}}"));
    match c.recv(T) {
        Some(Frame::Pong(p)) => assert_eq!(p, b"mid"),
        other => panic!("expected native pong, got {other:?}"),
    }
    expect_pong(&mut c);
    // A fragmented subscribe works too.
    let sub = json!({"event": "pusher:subscribe", "data": {"channel": "orders"}}).to_string();
    let (a, b) = sub.as_bytes().split_at(10);
    c.send_raw(&raw_frame(false, false, TEXT, true, a));
    c.send_raw(&raw_frame(true, false, CONTINUATION, true, b));
    c.expect_subscribed("orders");
}

// `docs/protocol/pusher.md#activity-timeout-and-heartbeat`: native pings are answered with native
// pongs carrying the same payload.
#[test]
fn native_ping_pong() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.send(Message::Ping(b"hello".to_vec().into()));
    match c.recv(T) {
        Some(Frame::Pong(p)) => assert_eq!(p, b"hello"),
        other => panic!("expected pong, got {other:?}"),
    }
    // An unsolicited pong is ignored.
    c.send(Message::Pong(b"x".to_vec().into()));
    c.expect_no_frame(QUIET);
    c.assert_alive();
}

// `docs/protocol/pusher.md#inbound-processing-order`: binary frames on V1 are parsed as JSON too.
#[test]
fn binary_frames_are_json() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.send_raw(&raw_frame(true, false, BINARY, true, br#"{"event":"pusher:ping","data":{}}"#));
    expect_pong(&mut c);
    c.send_raw(&raw_frame(true, false, BINARY, true, br#"{"event":"pusher:subscribe","data":{"channel":"orders"}}"#));
    c.expect_subscribed("orders");
}

// RFC 6455, section 5.5.1: the server answers a client close with a close frame (same code).
#[test]
fn close_handshake() {
    let s = Server::start(None);
    let mut c = s.connect();
    c.subscribe("orders");
    c.send_raw(&raw_frame(true, false, CLOSE, true, &[0x03, 0xe8])); // 1000
    match c.recv(T) {
        Some(Frame::Close(Some((code, _)))) => assert_eq!(code, 1000),
        other => panic!("expected close 1000, got {other:?}"),
    }
    // The socket is gone from the channel.
    let deadline = std::time::Instant::now() + T;
    loop {
        let j = s.get("/channels/orders", &[]).json();
        if j == json!({"occupied": false}) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{j}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

// A plain HTTP GET on the WebSocket path (no upgrade) does not crash anything.
#[test]
fn non_upgrade_request_on_ws_path() {
    let s = Server::start(None);
    let r = s.http("GET", "/app/app-key", &[], None);
    assert!(r.status >= 400, "status {}", r.status);
    s.connect().assert_alive();
}
