//! One behaviour suite for every backplane (`docs/architecture.md#several-nodes`): each test
//! runs against one node, whose shards only the mesh joins, against three nodes sharing a real
//! `redis-server`, and against three nodes sharing a Redis Cluster of three (the log split into
//! parts over its nodes). "Node i" is that one node for every i when there is only one, so the
//! same assertions say what crossing shards and crossing nodes must both keep.

use e2e::*;
use serde_json::{json, Value};

enum Nodes {
    One(Server),
    Redis(Cluster),
}

impl Nodes {
    fn node(&self, i: usize) -> &Server {
        match self {
            Nodes::One(s) => s,
            Nodes::Redis(c) => &c.nodes[i % c.nodes.len()],
        }
    }

    fn all(&self) -> Vec<&Server> {
        match self {
            Nodes::One(s) => vec![s],
            Nodes::Redis(c) => c.nodes.iter().collect(),
        }
    }
}

/// Polls until every node answers `ask` with `want` (each node applies the cluster log a
/// moment after the change).
fn wait_alike<V: PartialEq + std::fmt::Debug>(nodes: &[&Server], want: V, ask: impl Fn(&Server) -> V) {
    let deadline = std::time::Instant::now() + T;
    for node in nodes {
        loop {
            let got = ask(node);
            if got == want {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "node on port {} answers {got:?}, not {want:?}", node.port);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The users of a presence channel as `s` lists them, sorted.
fn users(s: &Server, channel: &str) -> Vec<String> {
    let r = s.get(&format!("/channels/{channel}/users"), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut ids: Vec<String> =
        r.json()["users"].as_array().unwrap().iter().map(|u| u["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

fn user_of(frame: &Value) -> String {
    data_json(frame)["user_id"].as_str().unwrap().to_owned()
}

/// The webhook events `/hooks` got once nothing more came, as sorted "name channel user" lines.
fn settled_hooks(receiver: &Receiver) -> Vec<String> {
    let line = |e: &Value| {
        let field = |k: &str| e[k].as_str().unwrap_or("").to_owned();
        format!("{} {} {}", field("name"), field("channel"), field("user_id"))
    };
    let mut got: Vec<String> = receiver.settled("/hooks").iter().map(line).collect();
    got.sort();
    got
}

const ROOM: &str = "presence-room";

/// A socket on `node` that joined [`ROOM`] as `user`.
fn member_of_room(node: &Server, user: &str) -> Client {
    let mut c = node.connect();
    c.subscribe_presence(ROOM, &json!({"user_id": user}));
    c
}

/// `n` nodes whose heartbeats are fast enough that a dead node is noticed within seconds.
fn fast_health_cluster(n: usize) -> Cluster {
    health_cluster(n, AppConfig::dev(), 1000)
}

/// `n` nodes beating every 200 ms, taken for dead after `node_timeout_ms`.
fn health_cluster(n: usize, app: AppConfig, node_timeout_ms: u64) -> Cluster {
    let health =
        format!("[adapter.cluster_health]\nheartbeat_interval_ms = 200\nnode_timeout_ms = {node_timeout_ms}\n");
    Cluster::start(n, Some(&config(&health, &[app])))
}

/// Runs `test` on one node, then on three nodes over Redis, then over a Redis Cluster.
fn on_every_backplane(test: fn(&Nodes)) {
    test(&Nodes::One(Server::start(None)));
    test(&Nodes::Redis(Cluster::start(3, None)));
    test(&Nodes::Redis(Cluster::start_sharded(3, None)));
}

fn publish(s: &Server, channel: &str, data: &str) {
    s.publish_ok(json!({"name": "e", "channel": channel, "data": data}));
}

// `docs/architecture.md#several-nodes`: a publish on any node reaches subscribers on every node.
#[test]
fn a_publish_reaches_subscribers_on_every_node() {
    on_every_backplane(|nodes| {
        let mut subscribers: Vec<Client> = (0..3).map(|i| nodes.node(i).connect()).collect();
        for c in &mut subscribers {
            c.subscribe("orders");
        }
        for p in 0..3 {
            publish(nodes.node(p), "orders", &format!("from {p}"));
            for c in &mut subscribers {
                let f = c.expect_channel_event("e", "orders");
                assert_eq!(f["data"], format!("from {p}"));
            }
        }
    });
}

// Publishers on every node at once: each subscriber, wherever it is, sees one sequence of
// contiguous serials, the same on every node, and each publisher's own order.
#[test]
fn concurrent_publishers_on_every_node_make_one_stream() {
    on_every_backplane(|nodes| {
        let mut subscribers: Vec<Client> = (0..3).map(|i| v2_connected(nodes.node(i))).collect();
        let told: Vec<Value> = subscribers.iter_mut().map(|c| v2_subscribe(c, "ticks")["stream_id"].clone()).collect();
        const EACH: usize = 20;
        std::thread::scope(|scope| {
            for p in 0..3 {
                let node = nodes.node(p);
                scope.spawn(move || {
                    for i in 0..EACH {
                        publish(node, "ticks", &format!("{p}-{i}"));
                    }
                });
            }
        });
        let mut seen: Vec<Vec<(u64, String)>> = Vec::new();
        for (c, told) in subscribers.iter_mut().zip(&told) {
            let frames: Vec<(u64, String)> = (0..3 * EACH)
                .map(|_| {
                    let f = next_frame(c, "e");
                    assert_eq!(&f["stream_id"], told, "{f}");
                    (f["serial"].as_u64().unwrap(), f["data"].as_str().unwrap().to_owned())
                })
                .collect();
            seen.push(frames);
        }
        for frames in &seen {
            assert_eq!(frames, &seen[0], "every node delivers the same sequence");
            let first = frames[0].0;
            let serials: Vec<u64> = frames.iter().map(|f| f.0).collect();
            assert_eq!(serials, (first..first + 3 * EACH as u64).collect::<Vec<_>>(), "contiguous serials");
            for p in 0..3 {
                let mine: Vec<usize> = frames
                    .iter()
                    .filter_map(|(_, d)| d.strip_prefix(&format!("{p}-")).map(|i| i.parse().unwrap()))
                    .collect();
                assert_eq!(mine, (0..EACH).collect::<Vec<_>>(), "publisher {p}'s order");
            }
        }
    });
}

// `docs/protocol/v2.md#hot-tier`: a client that drops off one node resumes on another with
// nothing missed and nothing twice.
#[test]
fn a_v2_client_resumes_on_another_node() {
    on_every_backplane(|nodes| {
        let mut c = v2_connected(nodes.node(0));
        let told = v2_subscribe(&mut c, "orders")["stream_id"].clone();
        publish(nodes.node(1), "orders", "0");
        let f = next_frame(&mut c, "e");
        let (stream, n) = (f["stream_id"].clone(), f["serial"].as_u64().unwrap());
        // Every node names a channel's first stream alike, so the subscriber was told the
        // stream its first message belongs to.
        assert_eq!(stream, told);
        c.close();
        for i in 1..=3 {
            publish(nodes.node(i % 3), "orders", &i.to_string());
        }
        // Subscribe and resume sent together, as clients do after a reconnect: what is replayed
        // comes first, then what the new node applies later (another node's publish may still
        // be on its way here), without gap or duplicate.
        let mut c = v2_connected(nodes.node(1));
        c.send_json_together(&[
            json!({"event": "sockudo:subscribe", "data": {"channel": "orders"}}),
            json!({"event": "sockudo:resume", "data": {"channel_positions": {"orders": {"stream_id": stream, "serial": n}}}}),
        ]);
        next_frame(&mut c, "sockudo_internal:subscription_succeeded");
        let (mut got, mut success) = (Vec::new(), None);
        while got.len() < 3 || success.is_none() {
            let f = c.recv_json(T);
            match f["event"].as_str() {
                Some("e") => got.push((f["serial"].as_u64().unwrap(), f["data"].as_str().unwrap().to_owned())),
                Some("sockudo:resume_success") => success = Some(data_json(&f)),
                _ => panic!("unexpected frame {f}"),
            }
        }
        assert_eq!(got, (1..=3u64).map(|i| (n + i, i.to_string())).collect::<Vec<_>>());
        let d = success.unwrap();
        assert_eq!(d["failed"], json!([]), "{d}");
        v2_drained(&mut c);
    });
}

// `docs/protocol/v2.md#http-history`: every node answers the same history, whoever published.
// A publish is acknowledged once its own node has it; another node has it as soon as it has
// read the log that far, so each node is asked until it has all six (bounded).
#[test]
fn every_node_has_the_whole_history() {
    on_every_backplane(|nodes| {
        for i in 1..=6 {
            publish(nodes.node(i), "ledger", &i.to_string());
        }
        let page = |i: usize| {
            let r = nodes.node(i).get("/channels/ledger/history", &[("direction", "forwards")]);
            assert_eq!(r.status, 200, "{}", r.text());
            let items = r.json()["items"].clone();
            json!(items
                .as_array()
                .unwrap()
                .iter()
                .map(|m| (m["serial"].clone(), m["data"].clone()))
                .collect::<Vec<_>>())
        };
        let mut pages: Vec<Value> = Vec::new();
        for i in 0..3 {
            let deadline = std::time::Instant::now() + T;
            let mut p = page(i);
            while p.as_array().unwrap().len() < 6 && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
                p = page(i);
            }
            pages.push(p);
        }
        assert_eq!(pages[0].as_array().unwrap().len(), 6, "{}", pages[0]);
        assert!(pages.iter().all(|p| *p == pages[0]), "{pages:?}");
    });
}

// `docs/protocol/pusher.md#client-events`: a client event reaches the others on every node, not
// its sender.
#[test]
fn client_events_cross_nodes() {
    on_every_backplane(|nodes| {
        let mut a = nodes.node(0).connect();
        let mut b = nodes.node(1).connect();
        a.subscribe_private("private-chat");
        b.subscribe_private("private-chat");
        a.client_event("client-typing", "private-chat", json!({"typing": true}));
        assert_eq!(
            b.recv_json(T),
            json!({"event": "client-typing", "channel": "private-chat", "data": {"typing": true}})
        );
        a.expect_no_frame(QUIET);
    });
}

// `README.md#run-several-nodes`: with Redis gone (one Redis, or every node of a Redis Cluster),
// nodes keep their sockets and refuse publishes with 503 (never a silent local-only delivery);
// once it is back they rejoin by themselves and a channel's serials go on from where they
// were, though Redis lost everything.
#[test]
fn a_redis_outage_refuses_publishes_and_heals() {
    for mut cluster in [Cluster::start(2, None), Cluster::start_sharded(2, None)] {
        let mut c = v2_connected(&cluster.nodes[1]);
        let stream = v2_subscribe(&mut c, "orders")["stream_id"].clone();
        publish(&cluster.nodes[0], "orders", "before");
        let before = next_frame(&mut c, "e")["serial"].as_u64().unwrap();
        cluster.kill_redis();
        for node in &cluster.nodes {
            node.wait_backplane(false);
        }
        let gauge = |node: &Server| {
            let text = http(node.metrics_port, "GET", "/metrics", &[], None).text();
            let line = text.lines().find(|l| l.starts_with("sockudo_backplane_connected")).map(str::to_owned);
            line.and_then(|l| l.rsplit(' ').next().map(str::to_owned))
        };
        assert_eq!(gauge(&cluster.nodes[0]).as_deref(), Some("0"));
        let r = cluster.nodes[0].publish(json!({"name": "e", "channel": "orders", "data": "lost?"}));
        let body = r.assert_error(503, "backplane_unavailable");
        assert!(body["error"].as_str().unwrap().contains("not published"), "{body}");
        v2_drained(&mut c);
        cluster.restart_redis();
        for node in &cluster.nodes {
            node.wait_backplane(true);
        }
        assert_eq!(gauge(&cluster.nodes[0]).as_deref(), Some("1"));
        publish(&cluster.nodes[0], "orders", "after");
        let f = next_frame(&mut c, "e");
        assert_eq!((f["serial"].as_u64(), f["data"].as_str()), (Some(before + 1), Some("after")), "{f}");
        assert_eq!(f["stream_id"], stream);
    }
}

// `docs/protocol/http-api.md#terminating-user-connections`: the user's sockets on every node are
// closed, whichever node the request reaches.
#[test]
fn terminate_connections_reaches_every_node() {
    on_every_backplane(|nodes| {
        let mut a = nodes.node(1).connect();
        a.signin(&json!({"id": "42"}));
        let mut b = nodes.node(2).connect();
        b.signin(&json!({"id": "42"}));
        let mut other = nodes.node(2).connect();
        other.signin(&json!({"id": "7"}));
        let s = nodes.node(0);
        let r = s.api("POST", &s.app.path("/users/42/terminate_connections"), &[], Some(&json!({})));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(a.expect_fatal(4009), "You got disconnected by the app.");
        assert_eq!(b.expect_fatal(4009), "You got disconnected by the app.");
        other.assert_alive();
    });
}

// `docs/protocol/v2.md#revocation`: a revocation made on one node closes the matching token
// sockets on every node, and the token is refused there afterwards.
#[test]
fn revocations_reach_every_node() {
    on_every_backplane(|nodes| {
        let token = mint(&claims("mallory", "m-1", json!({"*": ["subscribe"]})));
        let mut on_1 = with_token(nodes.node(1), &token);
        let mut on_2 = with_token(nodes.node(2), &token);
        let s = nodes.node(0);
        let r =
            s.api("POST", &s.app.path("/revocations"), &[], Some(&json!({"client_id": "mallory", "ttl_seconds": 600})));
        assert_eq!(r.status, 200, "{}", r.text());
        for c in [&mut on_1, &mut on_2] {
            let f = c.expect_event("sockudo:token_expired");
            assert_eq!(f["data"], json!({"code": 40160, "reason": "revoked"}), "{f}");
            c.expect_close(4009);
        }
        let mut again = nodes.node(2).connect_raw(&format!("/app/app-key?protocol=2&token={token}"), None);
        let f = again.recv_json(T);
        assert_eq!((f["event"].as_str(), f["data"]["code"].as_u64()), (Some("sockudo:error"), Some(4009)), "{f}");
    });
}

// A node killed with kill -9 stops nothing for the others: publishes on the survivors reach
// the survivors' subscribers.
#[test]
fn a_killed_node_leaves_the_others_serving() {
    let mut cluster = Cluster::start(3, None);
    let mut subscribers: Vec<Client> = (0..3).map(|i| cluster.nodes[i].connect()).collect();
    for c in &mut subscribers {
        c.subscribe("orders");
    }
    cluster.nodes[2].kill9();
    for p in 0..2 {
        publish(&cluster.nodes[p], "orders", &format!("from {p}"));
        for c in &mut subscribers[..2] {
            assert_eq!(c.expect_channel_event("e", "orders")["data"], format!("from {p}"));
        }
    }
}

// `docs/protocol/http-api.md#idempotency`: a retry on another node is still a duplicate, and a
// failed publish frees its key on every node.
#[test]
fn an_idempotent_retry_on_another_node_is_a_duplicate() {
    on_every_backplane(|nodes| {
        let mut c = nodes.node(2).connect();
        c.subscribe("orders");
        let body = json!({"name": "e", "channel": "orders", "data": "once", "idempotency_key": "k-1"});
        let first = nodes.node(0).publish(body.clone());
        assert_eq!(first.status, 200, "{}", first.text());
        for retry_on in [1, 2, 0] {
            let retry = nodes.node(retry_on).publish(body.clone());
            assert_eq!(retry.text(), first.text(), "the retry on node {retry_on} gets the first response");
        }
        assert_eq!(c.expect_channel_event("e", "orders")["data"], "once");
        c.expect_no_frame(QUIET);
        // A publish refused (too large a payload) leaves its key free for the corrected one.
        let big = "x".repeat(200 * 1024);
        let r = nodes.node(0).publish(json!({"name": "e", "channel": "orders", "data": big, "idempotency_key": "k-2"}));
        assert_eq!(r.status, 413, "{}", r.text());
        let fixed = json!({"name": "e", "channel": "orders", "data": "fixed", "idempotency_key": "k-2"});
        assert_eq!(nodes.node(1).publish(fixed).status, 200);
        assert_eq!(c.expect_channel_event("e", "orders")["data"], "fixed");
    });
}

fn mutate(s: &Server, channel: &str, serial: &str, action: &str, body: &Value) -> Response {
    s.api("POST", &messages_path(s, channel, serial, &format!("/{action}")), &[], Some(body))
}

/// A message's versions as `s` lists them, oldest first: (delivery serial, action, message id).
fn versions_of(s: &Server, channel: &str, serial: &str) -> Vec<(u64, String, String)> {
    let query = [("direction", "oldest_first"), ("limit", "100")];
    let page = s.api("GET", &messages_path(s, channel, serial, "/versions"), &query, None).json();
    let of = |i: &Value| {
        let text = |k: &str| i["version"][k].as_str().unwrap_or_default().to_owned();
        (i["delivery_serial"].as_u64().unwrap(), i["action"].as_str().unwrap().to_owned(), text("message_id"))
    };
    page["items"].as_array().map(|items| items.iter().map(of).collect()).unwrap_or_default()
}

// `docs/architecture.md#several-nodes` (mutable messages): updates, appends and deletes sent to
// any node, even at once, are applied alike on every node: a subscriber anywhere gets each
// under the next serial, every node lists the same versions with the same ids, and an op_id
// retry on another node is answered as a duplicate.
#[test]
fn mutations_are_alike_on_every_node() {
    on_every_backplane(|nodes| {
        let ch = "edits";
        let mut c = v2_connected(nodes.node(2));
        v2_subscribe(&mut c, ch);
        let (ms, _) = create(nodes.node(0), ch, "msg", "hello");
        next_frame(&mut c, "msg");
        let ok = |r: Response| {
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()
        };
        let up = ok(mutate(nodes.node(1), ch, &ms, "update", &json!({"data": "hi"})));
        assert_eq!(up["delivery_serial"], 2, "{up}");
        let f = next_frame(&mut c, "sockudo:message.update");
        assert_eq!((f["serial"].as_u64(), f["data"].as_str()), (Some(2), Some("hi")), "{f}");
        // Three writers on three nodes append at once; each append lands exactly once.
        let acks: Vec<Value> = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..3)
                .map(|w| {
                    let (node, ms) = (nodes.node(w), &ms);
                    scope.spawn(move || {
                        (0..4)
                            .map(|k| {
                                let body = json!({"data": format!(" {w}{k}"), "op_id": format!("w{w}-{k}")});
                                ok(mutate(node, ch, ms, "append", &body))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            writers.into_iter().flat_map(|w| w.join().unwrap()).collect()
        });
        let mut text = "hi".to_owned();
        for serial in 3..=14 {
            let f = next_frame(&mut c, "sockudo:message.append");
            assert_eq!(f["serial"].as_u64(), Some(serial), "{f}");
            text.push_str(f["data"].as_str().unwrap());
        }
        let mut taken: Vec<u64> = acks.iter().map(|a| a["delivery_serial"].as_u64().unwrap()).collect();
        taken.sort();
        assert_eq!(taken, (3..=14).collect::<Vec<_>>());
        // The retry goes to another node than the first try (writer 0 used node 0).
        let again = ok(mutate(nodes.node(2), ch, &ms, "append", &json!({"data": " 00", "op_id": "w0-0"})));
        assert_eq!((&again["status"], &again["version_serial"]), (&json!("duplicate"), &acks[0]["version_serial"]));
        // Every node holds the text the subscriber put together.
        wait_alike(&nodes.all(), Some(text), |s| {
            let r = s.api("GET", &messages_path(s, ch, &ms, ""), &[], None);
            r.json()["item"]["data"].as_str().map(str::to_owned)
        });
        let gone = ok(mutate(nodes.node(0), ch, &ms, "delete", &json!({})));
        assert_eq!(gone["delivery_serial"], 15, "{gone}");
        assert_eq!(next_frame(&mut c, "sockudo:message.delete")["serial"], 15);
        let want = versions_of(nodes.node(1), ch, &ms);
        let serials: Vec<u64> = want.iter().map(|v| v.0).collect();
        assert_eq!(serials, (1..=15).collect::<Vec<_>>(), "{want:?}");
        wait_alike(&nodes.all(), want, |s| versions_of(s, ch, &ms));
        // A mutation sent to a node right after its message was created through another waits
        // for the message to reach that node, rather than call it unknown.
        for i in 0..10 {
            let (fresh, _) = create(nodes.node(i), "fresh", "msg", "x");
            ok(mutate(nodes.node(i + 1), "fresh", &fresh, "update", &json!({"data": "y"})));
        }
    });
}

// `docs/architecture.md#several-nodes` (mutable messages): a mutation keeps its place in the
// channel's stream among the publishes around it, on every node, even when a node must first
// read its message from the store (each of these messages is mutated once, so every node
// reads it): subscribers anywhere get every serial in order, and every node stores the same.
#[test]
fn mutations_keep_their_place_among_publishes() {
    on_every_backplane(|nodes| {
        let ch = "mixed";
        let mut subscribers: Vec<Client> = (0..3).map(|i| v2_connected(nodes.node(i))).collect();
        for c in &mut subscribers {
            v2_subscribe(c, ch);
        }
        let created: Vec<String> = (0..20).map(|i| create(nodes.node(i), ch, "msg", "x").0).collect();
        std::thread::scope(|scope| {
            let created = &created;
            scope.spawn(move || {
                for (i, ms) in created.iter().enumerate() {
                    let r = mutate(nodes.node(i), ch, ms, "update", &json!({"data": format!("u{i}")}));
                    assert_eq!(r.status, 200, "{}", r.text());
                }
            });
            scope.spawn(move || {
                for i in 0..20 {
                    publish(nodes.node(i + 1), ch, "p");
                }
            });
        });
        for c in &mut subscribers {
            for serial in 1..=60 {
                let f = c.recv_json(T);
                assert_eq!(f["serial"].as_u64(), Some(serial), "{f}");
            }
        }
        let want = versions_of(nodes.node(0), ch, &created[19]);
        assert_eq!(want.len(), 2, "{want:?}");
        wait_alike(&nodes.all(), want, |s| versions_of(s, ch, &created[19]));
        let next =
            |s: &Server| s.get(&format!("/channels/{ch}/history/state"), &[]).json()["stream"]["next_serial"].clone();
        wait_alike(&nodes.all(), json!(61), next);
    });
}

// `docs/architecture.md#several-nodes` (mutable messages): mutations that race through
// different nodes are decided once, against the message as the log has it: of eight appends
// at once to an AI message that may take three, exactly three are applied and five refused,
// and the channel's serials go on with no gap on every node.
#[test]
fn racing_mutations_leave_no_gap() {
    let top = "[ai_transport]\nmax_appends_per_message = 3\n[[ai_transport.channels]]\nprefix = \"ai-\"\n\
               [ai_transport.rollup]\ndefault_window_ms = 0\n";
    let config = config(top, &[AppConfig::dev()]);
    for cluster in [Cluster::start(3, Some(&config)), Cluster::start_sharded(3, Some(&config))] {
        let ch = "ai-race";
        let node = |i: usize| &cluster.nodes[i % 3];
        let mut c = v2_connected(node(1));
        v2_subscribe(&mut c, ch);
        let extras = json!({"ai": {"transport": {"status": "streaming", "stream": "true", "stream-id": "text"}}});
        let body = json!({"name": "ai-output", "channel": ch, "data": "", "info": "", "extras": extras});
        let ack = node(0).publish_ok(body);
        let ms = ack["channels"][ch]["message_serial"].as_str().unwrap().to_owned();
        next_frame(&mut c, "ai-output");
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8)
                .map(|i| {
                    let ms = &ms;
                    let cluster = &cluster;
                    scope.spawn(move || mutate(&cluster.nodes[i % 3], ch, ms, "append", &json!({"data": "x"})).status)
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(statuses.iter().filter(|&&s| s == 200).count(), 3, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|&&s| s == 413).count(), 5, "{statuses:?}");
        for serial in 2..=4 {
            assert_eq!(next_frame(&mut c, "sockudo:message.append")["serial"].as_u64(), Some(serial));
        }
        node(2).publish_ok(json!({"name": "after", "channel": ch, "data": "x"}));
        assert_eq!(next_frame(&mut c, "after")["serial"].as_u64(), Some(5));
        let next =
            |s: &Server| s.get(&format!("/channels/{ch}/history/state"), &[]).json()["stream"]["next_serial"].clone();
        wait_alike(&cluster.nodes.iter().collect::<Vec<_>>(), json!(6), next);
    }
}

// `docs/protocol/v2.md#annotations`: annotations made through any node are numbered alike and
// listed alike on every node, and every V2 subscriber, wherever it is, gets each summary; a
// delete through another node reaches them all too.
#[test]
fn annotations_are_alike_on_every_node() {
    on_every_backplane(|nodes| {
        let (ch, ty) = ("notes", "reactions:distinct.v1");
        let mut c = v2_connected(nodes.node(2));
        v2_subscribe(&mut c, ch);
        let (ms, _) = create(nodes.node(0), ch, "msg", "hello");
        next_frame(&mut c, "msg");
        let path = |s: &Server, rest: &str| messages_path(s, ch, &ms, &format!("/annotations{rest}"));
        let serial = |r: Response| {
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["annotationSerial"].as_str().unwrap().to_owned()
        };
        let annotate = |s: &Server, client: &str| {
            let body = json!({"type": ty, "name": "up", "clientId": client});
            serial(s.api("POST", &path(s, ""), &[], Some(&body)))
        };
        let summary = |c: &mut Client| {
            let f = next_frame(c, "sockudo_internal:message");
            assert_eq!(f["data"]["action"], "message.summary", "{f}");
            f["data"]["annotations"]["summary"][ty]["up"]["clientIds"].clone()
        };
        assert_eq!(annotate(nodes.node(1), "u1"), format!("{:020}", 1));
        assert_eq!(summary(&mut c), json!(["u1"]));
        assert_eq!(annotate(nodes.node(2), "u2"), format!("{:020}", 2));
        assert_eq!(summary(&mut c), json!(["u1", "u2"]));
        let deleted = serial(nodes.node(0).api("DELETE", &path(nodes.node(0), &format!("/{:020}", 1)), &[], None));
        assert_eq!(deleted, format!("{:020}", 3));
        assert_eq!(summary(&mut c), json!(["u2"]));
        let listed = |s: &Server| {
            let page = s.api("GET", &path(s, ""), &[], None).json();
            let of = |i: &Value| json!([i["serial"], i["action"], i["clientId"], i["id"]]);
            json!(page["items"].as_array().unwrap().iter().map(of).collect::<Vec<_>>())
        };
        let want = listed(nodes.node(0));
        assert_eq!(want.as_array().unwrap().len(), 3, "{want}");
        wait_alike(&nodes.all(), want, listed);
    });
}

// `docs/protocol/v2.md#history-operator-endpoints`: an operator's purge or reset, sent to any
// node, changes every node's history alike, in order with the channel's messages: the same
// rows remain everywhere, a reset's new stream is the one every node continues, and its
// serials start again at 1 wherever the next message is published.
#[test]
fn history_changes_reach_every_node() {
    on_every_backplane(|nodes| {
        let operator = |s: &Server, operation: &str, extra: Value| {
            let mut body = json!({"confirm_channel": "ledger", "confirm_operation": operation, "reason": "test"});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            let r = s.api("POST", &s.app.path(&format!("/channels/ledger/history/{operation}")), &[], Some(&body));
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()
        };
        let rows = |s: &Server| {
            let r = s.get("/channels/ledger/history", &[("direction", "forwards")]);
            let items = r.json()["items"].clone();
            items.as_array().unwrap().iter().map(|m| m["serial"].as_u64().unwrap()).collect::<Vec<_>>()
        };
        let state = |s: &Server| s.get("/channels/ledger/history/state", &[]).json()["stream"].clone();
        let mut c = v2_connected(nodes.node(2));
        v2_subscribe(&mut c, "ledger");
        for i in 1..=5 {
            publish(nodes.node(i), "ledger", &i.to_string());
        }
        for _ in 1..=5 {
            next_frame(&mut c, "e");
        }
        let r = operator(nodes.node(1), "purge", json!({"mode": "before_serial", "before_serial": 3}));
        assert_eq!(r["purged_messages"], 2, "{r}");
        wait_alike(&nodes.all(), vec![3, 4, 5], rows);
        let old = state(nodes.node(0))["stream_id"].clone();
        let r = operator(nodes.node(1), "reset", json!({}));
        let new = r["new_stream_id"].clone();
        assert_ne!(new, old, "{r}");
        wait_alike(&nodes.all(), json!({"id": new, "next": 1}), |s| {
            let st = state(s);
            json!({"id": st["stream_id"], "next": st["next_serial"]})
        });
        wait_alike(&nodes.all(), Vec::new(), rows);
        publish(nodes.node(0), "ledger", "after");
        let f = next_frame(&mut c, "e");
        assert_eq!((f["serial"].as_u64(), &f["stream_id"], f["data"].as_str()), (Some(1), &new, Some("after")), "{f}");
        wait_alike(&nodes.all(), vec![1], rows);
        // A presence history reset likewise gives every node the new stream.
        let _member = member_of_room(nodes.node(0), "m");
        let path = nodes.node(1).app.path(&format!("/channels/{ROOM}/presence/history/reset"));
        let body = json!({"confirm_channel": ROOM, "confirm_operation": "reset", "reason": "test"});
        let r = nodes.node(1).api("POST", &path, &[], Some(&body));
        assert_eq!(r.status, 200, "{}", r.text());
        let new = r.json()["new_stream_id"].clone();
        let presence = |s: &Server| s.get(&format!("/channels/{ROOM}/presence/history/state"), &[]).json();
        wait_alike(&nodes.all(), new, |s| presence(s)["stream"]["stream_id"].clone());
    });
}

// `docs/architecture.md#several-nodes` (presence and occupancy): a user is one member however many nodes hold
// its sockets: one member_added when its first socket anywhere joins, one member_removed when
// its last one anywhere leaves, and a subscriber on any node lists every member.
#[test]
fn presence_has_one_member_per_user_across_nodes() {
    on_every_backplane(|nodes| {
        let ch = "presence-room";
        let mut observer = nodes.node(0).connect();
        observer.subscribe_presence(ch, &json!({"user_id": "o"}));
        let mut a1 = nodes.node(1).connect();
        a1.subscribe_presence(ch, &json!({"user_id": "a", "user_info": {"n": 1}}));
        let added = observer.expect_channel_event("pusher_internal:member_added", ch);
        assert_eq!(data_json(&added), json!({"user_id": "a", "user_info": {"n": 1}}));
        let mut a2 = nodes.node(2).connect();
        a2.subscribe_presence(ch, &json!({"user_id": "a", "user_info": {"n": 1}}));
        wait_alike(&nodes.all(), vec!["a".to_owned(), "o".to_owned()], |s| users(s, ch));
        let mut late = nodes.node(2).connect();
        let p = late.subscribe_presence(ch, &json!({"user_id": "late"}));
        let mut ids: Vec<&str> = p["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        ids.sort();
        assert_eq!((ids, &p["count"]), (vec!["a", "late", "o"], &json!(3)), "{p}");
        assert_eq!(p["hash"]["a"], json!({"n": 1}));
        // a's second socket made no second member_added: the next event is late's.
        assert_eq!(user_of(&observer.expect_channel_event("pusher_internal:member_added", ch)), "late");
        a1.close();
        late.close();
        // a is still on another node: the next removal is late's, not a's.
        assert_eq!(user_of(&observer.expect_channel_event("pusher_internal:member_removed", ch)), "late");
        a2.close();
        assert_eq!(user_of(&observer.expect_channel_event("pusher_internal:member_removed", ch)), "a");
        wait_alike(&nodes.all(), vec!["o".to_owned()], |s| users(s, ch));
        observer.expect_no_frame(QUIET);
    });
}

// `docs/protocol/http-api.md#listing-channels`: the channel list and a channel's counts are the same
// whichever node is asked.
#[test]
fn http_queries_answer_alike_on_every_node() {
    on_every_backplane(|nodes| {
        let mut subscribers: Vec<Client> = (0..3).map(|i| nodes.node(i).connect()).collect();
        for c in &mut subscribers[..2] {
            c.subscribe("orders");
        }
        subscribers[2].subscribe_presence("presence-lobby", &json!({"user_id": "u"}));
        let listed = |s: &Server| {
            let r = s.get("/channels", &[("info", "subscription_count")]);
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()["channels"].clone()
        };
        let want = json!({"orders": {"subscription_count": 2}, "presence-lobby": {"subscription_count": 1}});
        wait_alike(&nodes.all(), want, listed);
        let info = |s: &Server| {
            let r = s.get("/channels/presence-lobby", &[("info", "user_count,subscription_count")]);
            r.json()
        };
        let want = json!({"occupied": true, "user_count": 1, "subscription_count": 1});
        wait_alike(&nodes.all(), want, info);
        drop(subscribers);
        wait_alike(&nodes.all(), json!({}), listed);
    });
}

// `docs/protocol/http-api.md#webhooks`: occupancy and member webhooks follow the cluster, and
// each is sent once, by one node, however many nodes hold the channel's sockets.
#[test]
fn webhooks_fire_once_for_the_cluster() {
    let receiver = Receiver::start();
    let types = ["channel_occupied", "channel_vacated", "member_added", "member_removed"];
    let config = config("", &[app_with(&[hook(&receiver.url("/hooks"), &types, "")])]);
    let run = |nodes: &Nodes| {
        let (ch, presence) = ("orders-hooked", "presence-hooked");
        let mut sockets = Vec::new();
        for i in 0..3 {
            let mut c = nodes.node(i).connect();
            c.subscribe(ch);
            c.subscribe_presence(presence, &json!({"user_id": "same"}));
            sockets.push(c);
        }
        receiver.wait_for("/hooks", "the member and both occupied", |events| events.len() >= 3);
        drop(sockets);
        receiver.wait_for("/hooks", "both vacated and the removal", |events| events.len() >= 6);
        let got = settled_hooks(&receiver);
        let want = [
            "channel_occupied orders-hooked ",
            "channel_occupied presence-hooked ",
            "channel_vacated orders-hooked ",
            "channel_vacated presence-hooked ",
            "member_added presence-hooked same",
            "member_removed presence-hooked same",
        ];
        assert_eq!(got, want);
    };
    run(&Nodes::One(Server::start(Some(&config))));
    receiver.clear("/hooks");
    run(&Nodes::Redis(Cluster::start(3, Some(&config))));
    receiver.clear("/hooks");
    run(&Nodes::Redis(Cluster::start_sharded(3, Some(&config))));
}

// `README.md#run-several-nodes`: the members of a node killed with kill -9 are removed on the
// others within the node timeout and a heartbeat (here 1 s and 0.2 s), once, from every
// channel; over a Redis Cluster the rooms' channels lie in different parts of the log, and each
// part carries the removal.
#[test]
fn a_killed_nodes_members_are_removed() {
    let rooms = ["presence-room", "presence-den", "presence-hall", "presence-yard"];
    let health = "[adapter.cluster_health]\nheartbeat_interval_ms = 200\nnode_timeout_ms = 1000\n";
    let config = config(health, &[AppConfig::dev()]);
    for mut cluster in [Cluster::start(3, Some(&config)), Cluster::start_sharded(3, Some(&config))] {
        let mut observers: Vec<Client> = rooms.iter().map(|_| cluster.nodes[0].connect()).collect();
        let mut others = Vec::new();
        for (room, observer) in rooms.iter().zip(&mut observers) {
            observer.subscribe_presence(room, &json!({"user_id": "o"}));
            for (node, user) in [(1, "s"), (2, "k")] {
                let mut c = cluster.nodes[node].connect();
                c.subscribe_presence(room, &json!({"user_id": user}));
                assert_eq!(user_of(&observer.expect_channel_event("pusher_internal:member_added", room)), user);
                others.push(c);
            }
        }
        cluster.nodes[2].kill9();
        for (room, observer) in rooms.iter().zip(&mut observers) {
            let removed =
                observer.expect_event_within("pusher_internal:member_removed", std::time::Duration::from_secs(10));
            assert_eq!((removed["channel"].as_str(), user_of(&removed).as_str()), (Some(*room), "k"));
            let alive = [&cluster.nodes[0], &cluster.nodes[1]];
            wait_alike(&alive, vec!["o".to_owned(), "s".to_owned()], |s| users(s, room));
        }
        for observer in &mut observers {
            observer.expect_no_frame(QUIET);
        }
    }
}

// `README.md#run-several-nodes`: a node set to split the log into another number of parts than
// the cluster's does not join (its channels' entries would go to other parts): it says why,
// reports the backplane down and refuses publishes, and the cluster goes on.
#[test]
fn a_node_with_other_log_parts_does_not_join() {
    let cluster = Cluster::start_sharded(1, None);
    let odd = cluster.start_node_unjoined(&[("ADAPTER_REDIS_LOG_PARTITIONS", "4")]);
    let deadline = std::time::Instant::now() + T;
    while !odd.log().contains("log_partitions says 4") {
        assert!(std::time::Instant::now() < deadline, "no reason given:\n{}", odd.log());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(odd.log().contains("the cluster's log is in 8 part(s)"), "{}", odd.log());
    odd.wait_backplane(false);
    let r = odd.publish(json!({"name": "e", "channel": "orders", "data": "x"}));
    r.assert_error(503, "backplane_unavailable");
    publish(&cluster.nodes[0], "orders", "still fine");
}

// `docs/architecture.md#several-nodes` (stream ids): a Redis that comes back behind the nodes
// (a replica promoted before it had the newest writes; here the channel's serial is set back by
// hand) hands out no serial the nodes already hold: the next publish continues after them.
#[test]
fn a_redis_that_came_back_behind_gives_no_serial_twice() {
    let cluster = Cluster::start(2, None);
    let mut c = v2_connected(&cluster.nodes[1]);
    v2_subscribe(&mut c, "orders");
    for i in 1..=3 {
        publish(&cluster.nodes[0], "orders", &i.to_string());
    }
    let stream = (1..=3).map(|_| next_frame(&mut c, "e")).last().unwrap()["stream_id"].as_str().unwrap().to_owned();
    let key = format!("{}serials", cluster.prefix());
    let back = format!("1 {stream}");
    assert_eq!(cluster.redis().command(&["HSET", &key, "app-id\norders", &back]).as_deref(), Some(":0"));
    publish(&cluster.nodes[0], "orders", "4");
    let f = next_frame(&mut c, "e");
    assert_eq!((f["serial"].as_u64(), f["data"].as_str()), (Some(4), Some("4")), "{f}");
}

// `README.md#run-several-nodes`: a Redis Cluster master that dies is replaced by its replica;
// the nodes find the new master by themselves, publishes succeed again, and every channel's
// serials go on without going back, though the replica may have missed the newest writes.
#[test]
fn a_redis_cluster_failover_is_survived() {
    let mut cluster = Cluster::start_with(Backend::Sharded(RedisCluster::start_replicated()), 2, None);
    let channels: Vec<String> = (0..8).map(|i| format!("fail-{i}")).collect();
    let mut c = v2_connected(&cluster.nodes[1]);
    for ch in &channels {
        v2_subscribe(&mut c, ch);
    }
    let mut last: std::collections::HashMap<String, u64> = Default::default();
    let mut take = |c: &mut Client, n: usize| {
        for _ in 0..n {
            let f = c.recv_json(std::time::Duration::from_secs(30));
            assert_eq!(f["event"], "e", "{f}");
            let serial = f["serial"].as_u64().unwrap();
            let before = last.insert(f["channel"].as_str().unwrap().to_owned(), serial).unwrap_or(0);
            assert!(serial > before, "serial {serial} after {before}: {f}");
        }
    };
    for ch in &channels {
        publish(&cluster.nodes[0], ch, "before");
    }
    take(&mut c, channels.len());
    let Backend::Sharded(redis) = &mut cluster.backend else { unreachable!() };
    redis.current_masters().into_iter().next().expect("a master").kill();
    // Each publish is retried until the cluster takes it again (a replica takes over within a
    // few seconds).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for ch in &channels {
        loop {
            let r = cluster.nodes[0].publish(json!({"name": "e", "channel": ch, "data": "after"}));
            if r.status == 200 {
                break;
            }
            if std::time::Instant::now() >= deadline {
                let log = cluster.nodes[0].log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!("{ch} never published again: {}\n{}", r.text(), tail.join("\n"));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    take(&mut c, channels.len());
    for node in &cluster.nodes {
        node.wait_backplane(true);
    }
}

// `docs/architecture.md#several-nodes`: over a Redis Cluster the log's parts spread over its
// nodes (each holds some of it), and every channel's messages still reach every node in order.
#[test]
fn the_log_spreads_over_a_redis_clusters_nodes() {
    let cluster = Cluster::start_sharded(3, None);
    let channels: Vec<String> = (0..24).map(|i| format!("spread-{i}")).collect();
    let mut subscribers: Vec<Client> = (1..3).map(|i| v2_connected(&cluster.nodes[i])).collect();
    for c in &mut subscribers {
        for ch in &channels {
            v2_subscribe(c, ch);
        }
    }
    for round in 0..3 {
        for ch in &channels {
            publish(&cluster.nodes[0], ch, &round.to_string());
        }
    }
    for c in &mut subscribers {
        let mut seen: std::collections::HashMap<String, Vec<u64>> = Default::default();
        for _ in 0..channels.len() * 3 {
            let f = next_frame(c, "e");
            let data: u64 = f["data"].as_str().unwrap().parse().unwrap();
            seen.entry(f["channel"].as_str().unwrap().to_owned()).or_default().push(data);
        }
        for ch in &channels {
            assert_eq!(seen.get(ch), Some(&vec![0, 1, 2]), "{ch}");
        }
    }
    let Backend::Sharded(redis) = &cluster.backend else { unreachable!() };
    let keys = redis.keys_per_master();
    assert!(keys.iter().all(|&n| n > 0), "keys per Redis node: {keys:?}");
}

// `README.md#run-several-nodes`: a Redis outage longer than the node timeout removes no member
// who stayed connected: neither a stall that keeps its data (every heartbeat held up at once)
// nor a restart that loses it; a node started afterwards lists every member at its first
// subscribe.
#[test]
fn a_long_redis_outage_removes_no_member() {
    let mut cluster = fast_health_cluster(2);
    let mut observer = member_of_room(&cluster.nodes[0], "o");
    // x stays connected throughout (what it hears is not the point here).
    let _x = member_of_room(&cluster.nodes[1], "x");
    assert_eq!(user_of(&observer.expect_channel_event("pusher_internal:member_added", ROOM)), "x");
    // Redis answers no one for 2.5 s, more than twice the node timeout.
    assert_eq!(cluster.redis().command(&["CLIENT", "PAUSE", "2500", "ALL"]).as_deref(), Some("+OK"));
    observer.expect_no_frame(std::time::Duration::from_millis(5000));
    cluster.redis_mut().kill();
    for node in &cluster.nodes {
        node.wait_backplane(false);
    }
    std::thread::sleep(std::time::Duration::from_millis(2500));
    cluster.redis_mut().restart();
    for node in &cluster.nodes {
        node.wait_backplane(true);
    }
    // Longer than the node timeout and a few heartbeats: long enough for a wrong sweep.
    observer.expect_no_frame(std::time::Duration::from_millis(2500));
    let third = cluster.start_node();
    let mut late = third.connect();
    let p = late.subscribe_presence(ROOM, &json!({"user_id": "late"}));
    let mut ids: Vec<&str> = p["ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, vec!["late", "o", "x"], "{p}");
    assert_eq!(user_of(&observer.expect_channel_event("pusher_internal:member_added", ROOM)), "late");
}

// `README.md#run-several-nodes`: a node cut off from Redis (a partition, through a proxy) keeps
// serving its own sockets and refuses publishes; the others remove its members once its
// heartbeats run out; when the partition heals it rejoins by itself, its members return once,
// and its V2 subscriber gets what was published elsewhere meanwhile, in order, nothing lost.
#[test]
fn a_partitioned_node_rejoins_without_loss() {
    let cluster = fast_health_cluster(2);
    let proxy = Proxy::start(cluster.redis().port);
    let cut_off = cluster.start_node_via(proxy.port);
    let mut observer = member_of_room(&cluster.nodes[0], "o");
    let _p = member_of_room(&cut_off, "p");
    assert_eq!(user_of(&observer.expect_channel_event("pusher_internal:member_added", ROOM)), "p");
    let mut v2 = v2_connected(&cut_off);
    v2_subscribe(&mut v2, "orders");
    publish(&cluster.nodes[0], "orders", "0");
    let first = next_frame(&mut v2, "e")["serial"].as_u64().unwrap();
    proxy.cut();
    cut_off.wait_backplane(false);
    let r = cut_off.publish(json!({"name": "e", "channel": "orders", "data": "refused"}));
    r.assert_error(503, "backplane_unavailable");
    for i in 1..=3 {
        publish(&cluster.nodes[0], "orders", &i.to_string());
    }
    let long = std::time::Duration::from_secs(10);
    assert_eq!(user_of(&observer.expect_event_within("pusher_internal:member_removed", long)), "p");
    v2_drained(&mut v2);
    proxy.heal();
    cut_off.wait_backplane(true);
    assert_eq!(user_of(&observer.expect_event_within("pusher_internal:member_added", long)), "p");
    for i in 1..=3u64 {
        let f = next_frame(&mut v2, "e");
        assert_eq!((f["serial"].as_u64(), f["data"].as_str()), (Some(first + i), Some(i.to_string().as_str())), "{f}");
    }
    publish(&cut_off, "orders", "after");
    let f = next_frame(&mut v2, "e");
    assert_eq!((f["serial"].as_u64(), f["data"].as_str()), (Some(first + 4), Some("after")), "{f}");
    wait_alike(&[&cluster.nodes[0], &cluster.nodes[1], &cut_off], vec!["o".to_owned(), "p".to_owned()], |s| {
        users(s, ROOM)
    });
    observer.expect_no_frame(QUIET);
}

// `README.md#run-several-nodes`: a node stopped in order (SIGTERM) is taken for dead at the next
// heartbeat of another node, not after the node timeout (here a minute), which removes its
// members and sends the webhooks its departure causes, once (the stopping node could not wait
// out their re-check).
#[test]
fn a_stopped_nodes_departure_is_reported_once() {
    let receiver = Receiver::start();
    let app = app_with(&[hook(&receiver.url("/hooks"), &["channel_vacated", "member_removed"], "")]);
    let mut cluster = health_cluster(2, app, 60_000);
    let mut observer = member_of_room(&cluster.nodes[0], "o");
    let _leaving = member_of_room(&cluster.nodes[1], "l");
    let mut solo = cluster.nodes[1].connect();
    solo.subscribe("solo");
    assert_eq!(user_of(&observer.expect_channel_event("pusher_internal:member_added", ROOM)), "l");
    cluster.nodes[1].sigterm();
    assert!(cluster.nodes[1].wait_exit(std::time::Duration::from_secs(10)).is_some(), "node 1 did not stop");
    let long = std::time::Duration::from_secs(10);
    assert_eq!(user_of(&observer.expect_event_within("pusher_internal:member_removed", long)), "l");
    receiver.wait_for("/hooks", "the vacated channel and the removed member", |events| events.len() >= 2);
    assert_eq!(settled_hooks(&receiver), ["channel_vacated solo ", "member_removed presence-room l"]);
}

// `README.md#run-several-nodes`: a durable Redis killed and restarted while a publisher keeps
// publishing: every publish acknowledged reaches the V2 subscribers on the other nodes exactly
// once, in order, under contiguous serials. Publishes refused with 503 meanwhile are the
// publisher's to retry (one whose outcome was unknown may still have been delivered).
#[test]
fn a_redis_restart_mid_traffic_loses_nothing_acknowledged() {
    let mut cluster = Cluster::start_with(Backend::One(Redis::start_durable()), 3, None);
    let mut subscribers: Vec<Client> = (1..3).map(|i| v2_connected(&cluster.nodes[i])).collect();
    for c in &mut subscribers {
        v2_subscribe(c, "ticks");
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let Backend::One(redis) = &mut cluster.backend else { unreachable!() };
    let nodes = &cluster.nodes;
    let accepted: Vec<u64> = std::thread::scope(|scope| {
        let publisher = scope.spawn(|| {
            let mut accepted = Vec::new();
            for i in 0.. {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
                let r = nodes[0].publish(json!({"name": "e", "channel": "ticks", "data": i.to_string()}));
                match r.status {
                    200 => accepted.push(i),
                    503 => std::thread::sleep(std::time::Duration::from_millis(20)),
                    other => panic!("publish {i}: {other} {}", r.text()),
                }
            }
            accepted
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        redis.kill();
        std::thread::sleep(std::time::Duration::from_millis(500));
        redis.restart();
        for node in nodes {
            node.wait_backplane(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        publisher.join().unwrap()
    });
    let last = *accepted.last().expect("publishes were accepted");
    assert!(accepted.len() < last as usize + 1, "some publishes were refused during the outage: {accepted:?}");
    for c in &mut subscribers {
        let mut got = Vec::new();
        let mut serials = Vec::new();
        while got.last() != Some(&last) {
            let f = next_frame(c, "e");
            serials.push(f["serial"].as_u64().unwrap());
            got.push(f["data"].as_str().unwrap().parse::<u64>().unwrap());
        }
        assert_eq!(serials, (serials[0]..serials[0] + serials.len() as u64).collect::<Vec<_>>(), "contiguous serials");
        let delivered: Vec<u64> = got.iter().copied().filter(|d| accepted.contains(d)).collect();
        assert_eq!(delivered, accepted, "every acknowledged publish once, in order");
        assert!(got.windows(2).all(|w| w[0] < w[1]), "in publish order, none twice: {got:?}");
    }
}

// `docs/protocol/v2.md#revocation`: a node that starts after a revocation refuses the token
// too (Redis keeps the revocations in force for nodes that join later).
#[test]
fn revocations_reach_nodes_started_later() {
    let mut cluster = Cluster::start(1, None);
    let token = mint(&claims("mallory", "m-2", json!({"*": ["subscribe"]})));
    let s = &cluster.nodes[0];
    let body = json!({"client_id": "mallory", "ttl_seconds": 600});
    assert_eq!(s.api("POST", &s.app.path("/revocations"), &[], Some(&body)).status, 200);
    let later = cluster.start_node();
    cluster.nodes.push(later);
    // The new node carries the revocation out as it joins; poll until its shards have it.
    let deadline = std::time::Instant::now() + T;
    loop {
        let mut c = cluster.nodes[1].connect_raw(&format!("/app/app-key?protocol=2&token={token}"), None);
        let f = c.recv_json(T);
        if f["event"] == "sockudo:error" {
            assert_eq!(f["data"]["code"].as_u64(), Some(4009), "{f}");
            break;
        }
        assert_eq!(f["event"], "sockudo:connection_established", "{f}");
        assert!(std::time::Instant::now() < deadline, "the node started later accepts the revoked token");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
