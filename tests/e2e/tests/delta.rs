//! Delta compression rules (`docs/protocol/v2.md#delta-compression`): who gets deltas, on which
//! channels, with which algorithm, and when a full frame comes instead. The deltas themselves
//! are decoded by independent decoders in `tests/clients/delta.test.mjs`.

use e2e::*;
use serde_json::{json, Value};

/// A publish whose V2 frame is well over the minimum size (500 bytes in the tests that set it).
fn tick(s: &Server, channel: &str, n: u64) {
    let data =
        json!({"symbol": "BTC", "price": 67000 + n, "volume": 1000 + n, "venue": "spot", "pad": "p".repeat(200)})
            .to_string();
    s.publish_ok(json!({"name": "tick", "channel": channel, "data": data}));
}

/// The next channel frame (confirmations skipped): its kind ("full" with its `__delta_seq`,
/// "delta" with its `seq` and `base_index`, or "plain") and the frame.
fn next_frame_kind(c: &mut Client) -> (String, Value) {
    loop {
        let f = c.recv_json(T);
        let kind = match (f["event"].as_str(), f.get("__delta_seq")) {
            (Some("sockudo:delta"), _) => format!("delta {} <- {}", f["data"]["seq"], f["data"]["base_index"]),
            (Some("tick"), Some(seq)) => format!("full {seq}"),
            (Some(e), _) if e.ends_with("subscription_succeeded") || e.ends_with("delta_compression_enabled") => {
                continue
            }
            _ => "plain".to_owned(),
        };
        return (kind, f);
    }
}

/// The kinds of the next `n` frames of `channel` among the next frames of any channel (each
/// channel's order is kept; frames of other channels are dropped).
fn kinds(c: &mut Client, channel: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let (kind, f) = next_frame_kind(c);
        if f["channel"] == channel {
            out.push(kind);
        }
    }
    out
}

/// The kinds of the next `n` frames, by channel.
fn kinds_by_channel(c: &mut Client, n: usize) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out = std::collections::BTreeMap::<String, Vec<String>>::new();
    for _ in 0..n {
        let (kind, f) = next_frame_kind(c);
        out.entry(f["channel"].as_str().unwrap().to_owned()).or_default().push(kind);
    }
    out
}

fn subscribe_with(c: &mut Client, channel: &str, delta: Value) -> Vec<Value> {
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": channel, "delta": delta}}));
    settled(c)
}

/// A plain V2 subscribe, settled like `subscribe_with`.
fn subscribe(c: &mut Client, channel: &str) {
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": channel}}));
    settled(c);
}

/// The frames up to a pong: a ping answered after the subscribe means its read is over and its
/// continuity gate released, so the next publish is a live delta-stream frame, not one the gate
/// held (those go out whole: `docs/protocol/v2.md#delta-compression`).
fn settled(c: &mut Client) -> Vec<Value> {
    c.send_json(&json!({"event": "sockudo:ping"}));
    let mut seen = Vec::new();
    loop {
        let f = c.recv_json(T);
        if f["event"] == "sockudo:pong" {
            return seen;
        }
        seen.push(f);
    }
}

// A subscription's `delta` turns deltas on for that channel only, with its algorithm, and is
// confirmed on the channel; the socket's other channels get ordinary frames.
#[test]
fn a_subscription_opt_in_stays_on_its_channel() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    let got = subscribe_with(&mut c, "prices", json!({"enabled": true, "algorithm": "xdelta3"}));
    let confirm = got.last().unwrap();
    assert_eq!(confirm["event"], "sockudo:delta_compression_enabled", "{got:?}");
    assert_eq!(confirm["channel"], "prices");
    assert_eq!(confirm["data"], json!({"enabled": true, "algorithm": "xdelta3", "channel": "prices"}));
    subscribe(&mut c, "news");
    for n in 0..3 {
        tick(&s, "prices", n);
        tick(&s, "news", n);
    }
    let got = kinds_by_channel(&mut c, 6);
    assert_eq!(got["prices"], ["full 0", "delta 1 <- 0", "delta 2 <- 1"]);
    assert_eq!(got["news"], ["plain", "plain", "plain"]);
    // The algorithm asked for is the one used; the delta frame keeps the stream position.
    tick(&s, "prices", 9);
    let (_, f) = next_frame_kind(&mut c);
    assert_eq!(f["data"]["algorithm"], "xdelta3", "{f}");
    assert_eq!(f["data"]["event"], "tick");
    assert!(f["serial"].is_u64() && f["stream_id"].is_string(), "{f}");
}

// `enable_delta_compression` turns deltas on for every channel of the connection, present and
// future, except a subscription that said `delta: false`. V1 sockets are answered (not
// enabled) and keep full frames.
#[test]
fn the_connection_wide_switch() {
    let s = Server::start(None);
    let mut c = v2_connected(&s);
    subscribe(&mut c, "a");
    subscribe_with(&mut c, "off", json!(false));
    c.send_json(&json!({"event": "sockudo:enable_delta_compression", "data": {}}));
    let f = c.expect_event("sockudo:delta_compression_enabled");
    assert_eq!(f["data"], json!({"enabled": true, "algorithm": "fossil"}), "{f}");
    subscribe(&mut c, "b");
    for n in 0..2 {
        for ch in ["a", "b", "off"] {
            tick(&s, ch, n);
        }
    }
    let got = kinds_by_channel(&mut c, 6);
    assert_eq!(got["a"], ["full 0", "delta 1 <- 0"]);
    assert_eq!(got["b"], ["full 0", "delta 1 <- 0"]);
    assert_eq!(got["off"], ["plain", "plain"]);

    let mut v1 = s.connect();
    v1.subscribe("a");
    v1.send_json(&json!({"event": "pusher:enable_delta_compression", "data": {}}));
    let f = v1.expect_event("pusher:delta_compression_enabled");
    assert_eq!(f["data"]["enabled"], false, "{f}");
    tick(&s, "a", 5);
    let f = v1.recv_json(T);
    assert_eq!(f["event"], "tick");
    assert!(f.get("__delta_seq").is_none(), "{f}");
}

// Never a delta: encrypted channels, client events, publishes with `delta: false`, messages
// under `min_message_size`. A `delta_sync_error` and a new subscription start again with a full
// frame; after `full_message_interval` deltas comes a full frame.
#[test]
fn exclusions_resets_and_the_full_frame_interval() {
    let cfg = "[delta_compression]\nfull_message_interval = 3\nmin_message_size = 500\n";
    let s = Server::start(Some(&config(cfg, &[AppConfig::dev()])));
    let mut c = v2_connected(&s);
    c.send_json(&json!({"event": "sockudo:enable_delta_compression", "data": {"algorithm": "Fossil"}}));
    c.expect_event("sockudo:delta_compression_enabled");
    subscribe(&mut c, "t");
    for n in 0..5 {
        tick(&s, "t", n);
    }
    assert_eq!(kinds(&mut c, "t", 5), ["full 0", "delta 1 <- 0", "delta 2 <- 1", "delta 3 <- 2", "full 4"]);
    // Small (under 500 bytes here) and `delta: false` publishes go out plain and leave the
    // stream where it was.
    s.publish_ok(json!({"name": "tick", "channel": "t", "data": "1"}));
    let data = json!({"symbol": "BTC", "price": 1, "volume": 2, "venue": "spot", "pad": "p".repeat(200)}).to_string();
    s.publish_ok(json!({"name": "tick", "channel": "t", "data": data, "delta": false}));
    tick(&s, "t", 7);
    assert_eq!(kinds(&mut c, "t", 3), ["plain", "plain", "delta 5 <- 4"]);
    c.send_json(&json!({"event": "sockudo:delta_sync_error", "data": {"channel": "t"}}));
    c.send_json(&json!({"event": "sockudo:ping"}));
    c.expect_event("sockudo:pong");
    tick(&s, "t", 8);
    assert_eq!(kinds(&mut c, "t", 1), ["full 0"]);
    c.unsubscribe("t");
    subscribe(&mut c, "t");
    tick(&s, "t", 9);
    assert_eq!(kinds(&mut c, "t", 1), ["full 0"]);

    // Encrypted channels: never.
    let enc = "private-encrypted-t";
    let auth = private_auth(&c.app, &c.socket_id, enc);
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": enc, "auth": auth}}));
    c.expect_channel_event("sockudo_internal:subscription_succeeded", enc);
    for n in 0..2 {
        let ciphertext = json!({"nonce": "bm9uY2U=", "ciphertext": "x".repeat(600 + n)}).to_string();
        s.publish_ok(json!({"name": "tick", "channel": enc, "data": ciphertext}));
    }
    assert_eq!(kinds(&mut c, enc, 2), ["plain", "plain"]);

    // Client events: never.
    let mut other = v2_connected(&s);
    let auth = private_auth(&other.app, &other.socket_id, "private-t");
    other.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "private-t", "auth": auth}}));
    other.expect_channel_event("sockudo_internal:subscription_succeeded", "private-t");
    let auth = private_auth(&c.app, &c.socket_id, "private-t");
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": "private-t", "auth": auth}}));
    c.expect_channel_event("sockudo_internal:subscription_succeeded", "private-t");
    for n in 0..2 {
        other.client_event("client-tick", "private-t", json!({"pad": "y".repeat(600), "n": n}));
    }
    assert_eq!(kinds(&mut c, "private-t", 2), ["plain", "plain"]);
}

// Sockets whose streams stand alike get the same delta frame, byte for byte (it is computed
// once per base on a shard).
#[test]
fn sockets_in_step_share_their_frames() {
    let s = Server::start(None);
    let mut socks: Vec<Client> = (0..4).map(|_| v2_connected(&s)).collect();
    for c in socks.iter_mut() {
        subscribe_with(c, "shared", json!(true));
    }
    tick(&s, "shared", 1);
    tick(&s, "shared", 2);
    let frames: Vec<String> = socks
        .iter_mut()
        .map(|c| {
            next_frame_kind(c);
            next_frame_kind(c).1.to_string()
        })
        .collect();
    assert!(frames[0].contains("sockudo:delta"), "{}", frames[0]);
    assert!(frames.iter().all(|f| *f == frames[0]), "{frames:?}");
}

// An app's `channel_delta_compression` patterns: a conflation key gives each entity (here
// `item_id`) its own delta stream, named on its frames; `enabled = false` keeps a channel's
// frames whole; `algorithm` is the channel's default.
#[test]
fn conflation_keys_and_channel_patterns() {
    let app = AppConfig::dev().set(
        "channel_delta_compression",
        r#"{ "ticker-*" = { conflation_key = "item_id", algorithm = "XDelta3" }, "plain-*" = { enabled = false } }"#,
    );
    let s = Server::start(Some(&config("", &[app])));
    let mut c = v2_connected(&s);
    subscribe_with(&mut c, "ticker-1", json!(true));
    subscribe_with(&mut c, "plain-1", json!(true));
    for (item, price) in [("BTC", 1), ("ETH", 2), ("BTC", 3), ("ETH", 4)] {
        let data = json!({"item_id": item, "price": price, "pad": "p".repeat(200)}).to_string();
        s.publish_ok(json!({"name": "tick", "channel": "ticker-1", "data": data}));
        s.publish_ok(json!({"name": "tick", "channel": "plain-1", "data": data}));
    }
    let mut ticker = Vec::new();
    let mut plain = Vec::new();
    while ticker.len() + plain.len() < 8 {
        let (kind, f) = next_frame_kind(&mut c);
        let conflation = f.get("__conflation_key").or(f["data"].get("conflation_key")).cloned().unwrap_or(Value::Null);
        match f["channel"].as_str() {
            Some("ticker-1") => ticker.push((kind, conflation, f["data"]["algorithm"].clone())),
            _ => plain.push(kind),
        }
    }
    let x = json!("xdelta3");
    assert_eq!(
        ticker,
        [
            ("full 0".to_owned(), json!("BTC"), Value::Null),
            ("full 0".to_owned(), json!("ETH"), Value::Null),
            ("delta 1 <- 0".to_owned(), json!("BTC"), x.clone()),
            ("delta 1 <- 0".to_owned(), json!("ETH"), x),
        ]
    );
    assert_eq!(plain, ["plain"; 4]);
}

// A rewind with deltas on: the history comes as plain full frames, then the live stream starts
// with a full frame.
#[test]
fn rewound_messages_are_plain_and_the_stream_starts_after() {
    let s = Server::start(None);
    for n in 0..3 {
        tick(&s, "r", n);
    }
    let mut c = v2_connected(&s);
    c.send_json(
        &json!({"event": "sockudo:subscribe", "data": {"channel": "r", "delta": true, "rewind": {"count": 3}}}),
    );
    c.expect_channel_event("sockudo_internal:subscription_succeeded", "r");
    assert_eq!(kinds(&mut c, "r", 3), ["plain", "plain", "plain"]);
    c.expect_event("sockudo:rewind_complete");
    for n in 3..5 {
        tick(&s, "r", n);
    }
    assert_eq!(kinds(&mut c, "r", 2), ["full 0", "delta 1 <- 0"]);
}
