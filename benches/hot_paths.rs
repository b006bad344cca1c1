//! Criterion benchmarks of the hot paths: WebSocket framing, inbound JSON parsing, binary wire
//! formats, signature
//! and capability-token checks, fanout inside one shard (queueing and the gathered write),
//! matching a channel against many wildcard patterns, and
//! the hand-off of a message between two shards. `frame_layer` sets the pieces of the WebSocket frame layer the
//! codec keeps hand-written against tungstenite's (`docs/architecture.md#libraries-and-what-is-written-here`).
//!
//! Run: `cargo bench -p sockudo --bench hot_paths` (add a filter, e.g. `-- fanout`).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use sockudo::auth;
use sockudo::protocol::filter;
use sockudo::protocol::inbound::{ClientFrame, Subscribe};
use sockudo::protocol::outbound::{self, Data, Dialect, Encoding, Position};
use sockudo::protocol::wildcard::PatternSet;
use sockudo::protocol::wire::Format;
use sockudo::shard::channel::broadcast::Broadcast;
use sockudo::socket_id::SocketId;
use sockudo::ws::codec::{self, Decoder, Opcode};
use sockudo::ws::conn::Conn;
use sockudo::ws::index::{Index, Socket};
use sockudo::ws::writer::{OutState, QueueBound};
use std::io::Cursor;
use std::io::Read;
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::{Frame, FrameHeader};
use tungstenite::Bytes;

fn payload_200() -> Vec<u8> {
    let data = "x".repeat(160);
    outbound::event("price-update", Some("ticker-1"), Data::Str(&data), None)
}

/// A masked client text frame, as a browser sends it.
fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = vec![0x81];
    if payload.len() < 126 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let mut p = payload.to_vec();
    codec::unmask(&mut p, mask);
    out.extend(p);
    out
}

fn framing(c: &mut Criterion) {
    let payload = payload_200();
    let mut g = c.benchmark_group("ws");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_200B", |b| b.iter(|| codec::encode(Opcode::Text, black_box(&payload))));
    let frame = client_frame(&payload);
    let mut dec = Decoder::new(64 << 10);
    g.bench_function("decode_masked_200B", |b| b.iter(|| dec.decode(black_box(&frame)).unwrap()));
    g.finish();
}

/// The two pieces of the WebSocket frame layer the codec keeps hand-written, each against
/// tungstenite's: the header parse of a client frame, and unmasking (tungstenite's own masking
/// is private; its one public route is `Frame::format` with a masked header, which copies).
fn frame_layer(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_layer");
    g.throughput(Throughput::Elements(1));
    for (size, payload) in [("100B", "x".repeat(100)), ("16KiB", "x".repeat(16 << 10))] {
        let payload = payload.as_bytes();
        let frame = client_frame(payload);
        g.bench_function(format!("parse_header_{size}/ours"), |b| {
            b.iter(|| codec::parse_header(black_box(&frame)).unwrap())
        });
        g.bench_function(format!("parse_header_{size}/tungstenite"), |b| {
            b.iter(|| FrameHeader::parse(&mut Cursor::new(black_box(&frame[..]))).unwrap())
        });
        let mask = [1, 2, 3, 4];
        let masked = &frame[frame.len() - payload.len()..];
        g.bench_function(format!("unmask_{size}/ours"), |b| {
            b.iter(|| {
                let mut p = black_box(masked).to_vec();
                codec::unmask(&mut p, mask);
                p
            })
        });
        let header = FrameHeader { mask: Some(mask), ..FrameHeader::default() };
        g.bench_function(format!("unmask_{size}/tungstenite"), |b| {
            b.iter(|| {
                let frame = Frame::from_payload(header.clone(), Bytes::copy_from_slice(black_box(masked)));
                let mut out = Vec::with_capacity(frame.len());
                frame.format(&mut out).unwrap();
                out
            })
        });
    }
    g.finish();
}

fn json(c: &mut Criterion) {
    let mut g = c.benchmark_group("json");
    let client_event = br#"{"event":"client-typing","channel":"private-chat","data":{"typing":true,"user":"ada"}}"#;
    g.bench_function("parse_client_event", |b| {
        b.iter(|| {
            let f = ClientFrame::parse(black_box(client_event)).unwrap();
            black_box((f.command(), f.data_raw().len()));
        })
    });
    let subscribe = br#"{"event":"pusher:subscribe","data":{"channel":"private-orders","auth":"app-key:d7d4254b75e2b60944b91bc92e916d56da84c4835011f5aa3c59a8e7f6e8b65d"}}"#;
    g.bench_function("parse_subscribe", |b| {
        b.iter(|| {
            let f = ClientFrame::parse(black_box(subscribe)).unwrap();
            black_box(Subscribe::parse(&f, None).unwrap());
        })
    });
    // A subscription filter, evaluated once per message per group of subscribers that gave it
    // (`ws/index.rs`): a tag filter, and an expression including the message's projection.
    let settings = filter::Settings { tags: true, events: true, max_events: 50, max_event_name_length: 200 };
    let tags_filter = br#"{"events":["tick"],"tags":{"op":"and","nodes":[{"key":"region","cmp":"eq","val":"eu"},{"key":"tier","cmp":"in","vals":["gold","vip"]}]}}"#;
    let tags_filter = filter::Filter::parse(&sonic_rs::from_slice(tags_filter).unwrap(), settings).unwrap().unwrap();
    let attrs =
        filter::Attrs { event: "tick".into(), tags: filter::Tags::from_json(r#"{"region":"eu","tier":"vip"}"#) };
    let frame = br#"{"event":"tick","channel":"prices","data":"{\"symbol\":\"BTC\",\"price\":67210.5,\"total\":150}","message_id":"9b2f","stream_id":"s","serial":7}"#;
    g.bench_function("filter_tags", |b| {
        b.iter(|| black_box(tags_filter.matches(&filter::Subject::new(Some(&attrs), black_box(frame)))))
    });
    let expression = br#"{"expression":"data.total >= `100` && tags.region == 'eu'"}"#;
    let expression = filter::Filter::parse(&sonic_rs::from_slice(expression).unwrap(), settings).unwrap().unwrap();
    g.bench_function("filter_expression_with_projection", |b| {
        b.iter(|| black_box(expression.matches(&filter::Subject::new(Some(&attrs), black_box(frame)))))
    });
    // A message id per publish and per V2 frame (the uuid crate; 276 ns when hand-written).
    g.bench_function("uuid_v4", |b| b.iter(outbound::uuid_v4));
    g.bench_function("with_message_id_200B", |b| {
        let frame = payload_200();
        b.iter(|| outbound::with_message_id(black_box(&frame)))
    });
    g.bench_function("encode_event_frame_200B", |b| {
        let data = "x".repeat(160);
        b.iter(|| outbound::event("price-update", Some("ticker-1"), Data::Str(black_box(&data)), None))
    });
    g.finish();
}

/// A channel message's re-encoding for binary connections (once per format per delivery on a
/// shard), and a client frame's decoding into the JSON command.
fn wire(c: &mut Criterion) {
    let mut g = c.benchmark_group("wire");
    let data = "x".repeat(160);
    let pos = Position { message_id: "5f0c8a4e-4f4e-4d55-9a63-0a3c1f3f4b21", stream_id: "s-1", serial: Some(4242) };
    let extras = r#"{"headers":{"sockudo_action":"message.create","sockudo_history_serial":4242,"region":"eu"}}"#;
    let frame = outbound::v2_event("price-update", "ticker-1", Data::Str(&data), None, None, pos, Some(extras));
    g.bench_function("encode_v2_event_200B/msgpack", |b| b.iter(|| Format::MessagePack.encode(black_box(&frame))));
    g.bench_function("encode_v2_event_200B/protobuf", |b| b.iter(|| Format::Protobuf.encode(black_box(&frame))));
    let client = [0x9f_u8, 0xa8]
        .iter()
        .copied()
        .chain(*b"client-a")
        .chain([0xa9])
        .chain(*b"private-x")
        .chain([0x92, 0xa4])
        .chain(*b"json")
        .chain([0xb1])
        .chain(*br#"{"x":1,"y":"abc"}"#)
        .chain([0xc0; 12])
        .collect::<Vec<u8>>();
    assert!(Format::MessagePack.decode(&client).is_ok());
    g.bench_function("decode_client_event/msgpack", |b| b.iter(|| Format::MessagePack.decode(black_box(&client))));
    g.finish();
}

fn signatures(c: &mut Criterion) {
    let auth_value = "app-key:d7d4254b75e2b60944b91bc92e916d56da84c4835011f5aa3c59a8e7f6e8b65d";
    c.bench_function("hmac/verify_private_channel_auth", |b| {
        b.iter(|| {
            let m = auth::channel_auth_message("1234.5678", "private-foo", None);
            assert!(auth::verify_key_and_signature("app-key", "app-secret", m.as_bytes(), black_box(auth_value)));
        })
    });
    // What a connect with `?token=` costs on top of a plain one (the revocation lookup is a
    // hash probe beside it).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some("app-key".into());
    let claims = serde_json::json!({"x-sockudo-capability": {"chat:*": ["subscribe", "history"], "private-*": ["publish"]},
        "x-sockudo-client-id": "u1", "iat": now, "exp": now + 3600, "jti": "bench"});
    auth::token::install_hs256();
    let token = jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(b"app-secret")).unwrap();
    c.bench_function("token/verify", |b| {
        b.iter(|| auth::token::verify(black_box(&token), "app-key", "app-secret", now).unwrap())
    });
}

/// `n` loopback TCP connections: the server ends wrapped as the server wraps them, the client
/// ends non-blocking so the benchmark can drain them between samples.
fn loopback_pairs(n: usize) -> (Vec<Rc<Conn>>, Vec<std::net::TcpStream>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut servers = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..n {
        let client = std::net::TcpStream::connect(addr).unwrap();
        client.set_nonblocking(true).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        // SAFETY: the descriptor is moved out of `server` and owned by the glommio stream.
        let stream = unsafe { glommio::net::TcpStream::from_raw_fd(server.into_raw_fd()) };
        servers.push(Conn::new(stream));
        clients.push(client);
    }
    (servers, clients)
}

fn drain(clients: &mut [std::net::TcpStream]) {
    let mut buf = [0u8; 65536];
    for c in clients {
        while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
    }
}

/// Fanout of one event to 1,000 local subscribers: queueing only (the server's own work per
/// delivery), and queueing plus one gathered write per socket (what a flush pass costs).
fn fanout(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 1000;
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).io_memory(512 << 10).make().unwrap();
    ex.run(async {
        let (conns, mut clients) = loopback_pairs(SUBSCRIBERS);
        let mut hub = Index::new(1);
        let channel: Arc<str> = "ticker-1".into();
        let now = Instant::now();
        for (i, conn) in conns.into_iter().enumerate() {
            let key = hub.sockets.insert(Socket::new(
                SocketId(i as u64, 1),
                0,
                Dialect::V1,
                (Encoding::V1Json, Format::Json),
                conn,
                now,
            ));
            hub.add_subscriber(0, &channel, key, None);
        }
        let bound = QueueBound { frames: 1000, bytes: 8 << 20 };
        let delta = sockudo::config::DeltaCompression {
            enabled: false,
            algorithm: sockudo::protocol::delta::Algorithm::Fossil,
            full_message_interval: 10,
            min_message_size: 100,
        };
        let payload = Arc::new(payload_200());
        // The frame is encoded inside `queue_on_channel`, once per call, as on a real delivery.
        let message = Broadcast::new(None, now, Some(payload.clone()), payload.clone());
        let mut g = c.benchmark_group("fanout");
        g.throughput(Throughput::Elements(SUBSCRIBERS as u64));
        g.bench_function("queue_1000_subscribers", |b| {
            b.iter(|| {
                let mut listed = Vec::with_capacity(SUBSCRIBERS);
                hub.queue_on_channel(0, &channel, &message, None, (bound, &delta), &mut listed);
                // Reset the queues untouched by a write, so only queueing is measured.
                for key in listed {
                    let s = &mut hub.sockets[key];
                    s.out.clear();
                    s.out.state = OutState::Idle;
                }
            })
        });
        g.bench_function("queue_and_write_1000_subscribers", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let mut listed = Vec::with_capacity(SUBSCRIBERS);
                    hub.queue_on_channel(0, &channel, &message, None, (bound, &delta), &mut listed);
                    for key in listed {
                        let s = &mut hub.sockets[key];
                        s.out.write_to(&s.conn);
                        s.out.state = OutState::Idle;
                    }
                    total += start.elapsed();
                    drain(&mut clients);
                }
                total
            })
        });
        g.finish();
    });
}

/// Matching a published channel against 10,000 wildcard patterns of three shapes (prefix,
/// suffix, both), as a channel's owner does per publish when the app has wildcard subscribers:
/// the cost follows the distinct prefix lengths and the matches, not the number of patterns.
fn wildcard(c: &mut Criterion) {
    let mut set = PatternSet::<u32>::default();
    for i in 0..3334 {
        for p in [format!("orders.{i}.*"), format!("*.region-{i}"), format!("m{i}:*-usd")] {
            *set.entry(&Arc::from(p)) += 1;
        }
    }
    let mut g = c.benchmark_group("wildcard");
    for channel in ["orders.17.eu", "m42:btc-usd", "unmatched-channel-name"] {
        g.bench_function(format!("match_10000_patterns/{channel}"), |b| {
            b.iter(|| {
                let mut n = 0;
                set.for_each_match(black_box(channel), |_, v| n += v);
                n
            })
        });
    }
    g.finish();
}

/// One message handed from shard 0 to shard 1 through the SPSC mesh, in a stream of `iters`
/// messages; measured on the receiving shard from the first send to the last receipt.
fn cross_shard(c: &mut Criterion) {
    c.bench_function("mesh/hand_off_between_two_shards", |b| {
        b.iter_custom(|iters| {
            let elapsed_ns = Arc::new(AtomicU64::new(0));
            let done = Arc::new(AtomicBool::new(false));
            let cfg = shards::RuntimeConfig { shards: 2, pin: false, ..shards::RuntimeConfig::default() };
            let (e, d) = (elapsed_ns.clone(), done.clone());
            shards::run::<Instant, _, _>(&cfg, move |mesh| async move {
                let mesh = Rc::new(mesh);
                let seen = Rc::new(std::cell::Cell::new(0u64));
                let (seen2, e2, d2) = (seen.clone(), e.clone(), d.clone());
                mesh.serve(Rc::new(move |start: Instant| {
                    seen2.set(seen2.get() + 1);
                    if seen2.get() == iters {
                        e2.store(start.elapsed().as_nanos() as u64, Ordering::SeqCst);
                        d2.store(true, Ordering::SeqCst);
                    }
                }));
                if mesh.id() == 0 {
                    let start = Instant::now();
                    for _ in 0..iters {
                        mesh.send(1, start);
                    }
                }
                while !d.load(Ordering::SeqCst) {
                    glommio::timer::sleep(Duration::from_micros(200)).await;
                }
            })
            .unwrap();
            Duration::from_nanos(elapsed_ns.load(Ordering::SeqCst))
        })
    });
}

criterion_group!(benches, framing, frame_layer, json, wire, signatures, fanout, wildcard, cross_shard);
criterion_main!(benches);
