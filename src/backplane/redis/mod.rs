//! The Redis backplane: the cluster log is a Redis stream, appended by a Lua script that gives
//! a channel its next serial, appends the intent and trims the stream in one atomic step
//! (Centrifugo's model), and read by every node with `XREAD BLOCK` from the last entry it
//! applied. Reading a stream rather than subscribing to pub/sub is what makes a node's feed
//! gap-free across a dropped connection: it resumes from its last entry id, as far back as the
//! stream keeps (`log_max_entries`).
//!
//! **Parts.** With one Redis the log is one stream. A Redis Cluster serves each key slot from
//! one of its nodes, and a script or an `XREAD` may only touch one slot, so there the log is
//! split into `log_partitions` parts ([`LogPart`]), each a stream with its own keys under one
//! hash tag, the tags chosen so the parts spread evenly over the slots (and so over the
//! cluster's nodes). A channel's entries all go to one part (by a stable hash of the channel),
//! so per-channel order holds; what concerns every channel (a node gone) is appended to every
//! part; what concerns the nodes (heartbeats, revocations) lives in part 0.
//!
//! Threads per node, beside the shard executors and never blocking one:
//! - the **writer** takes appends from every shard through a queue and sends each batch as one
//!   pipeline (one round trip per Redis node for everything that arrived while the previous one
//!   was out), and beats;
//! - one **reader** per part follows its stream and hands each entry to the owner shard of its
//!   channel on this node (one queue per shard, so per-channel order is the log's).
//!
//! Keys of a part (all under the part's prefix: the configured prefix, plus the hash tag in a
//! Redis Cluster, so clusters can share a Redis):
//! - `log`: the stream; fields `n` (serial, 0 for none), `s` (stream id), `op` (the intent as
//!   JSON);
//! - `serials`: a hash, one field per channel (`<app id>\n<channel>`) holding
//!   `"<serial> <stream id>"`: where each channel's serials stand. This is the authority for
//!   serials; nodes hold copies.
//! - `mv:<app id>\n<channel>\n<stream id>\n<message serial>`: how many versions a mutable
//!   message has, while it is being mutated (an hour after its last mutation), so that two
//!   nodes cannot both mutate the same version of it;
//! - per node, its share of the part's channels, kept by the script that appends each change so
//!   that a node that starts reads every node's share with the log position it stands at:
//!   `shares:<node>` (a set of channel fields), `counts:<node>` (a hash of subscription counts)
//!   and `members:<node>:<channel field>` (a hash of presence members and their `user_info`);
//!   `sharers`, the set of nodes that hold a share in the part.
//!
//! Keys of part 0 only: `nodes`, a sorted set of the live nodes, each scored with the time its
//! heartbeat runs out; `beat`, when Redis last ran a heartbeat; `gone`, the nodes taken for dead
//! whose removal is not yet appended to every part; `revocations`, the token revocations in
//! force (each as its log entry), so that a node that starts later carries them out too.
//! Idempotency keys are keys of their own (`<prefix>idem:…`), and so is `<prefix>log_parts`,
//! the number of parts, which a node set to another number refuses to join.
//!
//! `writer.rs` and `reader.rs` are the threads, `scripts.rs` the Lua they run.

mod reader;
mod scripts;
mod writer;

use super::{
    Append, Appended, Backplane, Entry, HistoryOp, IdempotencyKey, Inbox, KeyState, LogPart, NodeAction, Reply,
};
use crate::config::{RedisAdapter, RedisTarget};
use crate::metrics::BackplaneFigures;
use futures_channel::mpsc;
use reader::Reader;
use redis::{FromRedisValue, RedisResult, Value};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use writer::{share_args, Job, Serial, Writer};

struct Shared {
    writer: AtomicU8,
    /// One per part.
    readers: Vec<AtomicU8>,
    appended: AtomicU64,
    append_failures: AtomicU64,
    entries_read: AtomicU64,
    disconnects: AtomicU64,
}

pub struct RedisLog {
    node: String,
    prefix: String,
    parts: u16,
    jobs: crossbeam_channel::Sender<Job>,
    inboxes: Mutex<Vec<Option<Inbox>>>,
    shared: Arc<Shared>,
}

impl RedisLog {
    /// Starts the writer and reader threads. `owner` places a channel of an app (by id) on one
    /// of this node's shards. Redis need not be reachable yet: the threads keep trying, and
    /// say so in the log. When it is, this returns once every reader has the share of every
    /// live node (at most the request timeout), so that the node's first presence subscribe
    /// lists every member.
    pub fn start(
        cfg: &RedisAdapter,
        shards: usize,
        owner: impl Fn(&str, &str) -> usize + Send + Sync + 'static,
    ) -> Result<Arc<RedisLog>, String> {
        let link = Link::new(cfg)?;
        let parts = match &cfg.target {
            RedisTarget::One(_) => 1,
            RedisTarget::Cluster { parts, .. } => *parts,
        };
        let node = crate::protocol::outbound::uuid_v4();
        let shared = Arc::new(Shared {
            writer: AtomicU8::new(0),
            readers: (0..parts).map(|_| AtomicU8::new(0)).collect(),
            appended: AtomicU64::new(0),
            append_failures: AtomicU64::new(0),
            entries_read: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
        });
        let (jobs, rx) = crossbeam_channel::unbounded();
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::unbounded()).unzip();
        let keys = Keys::new(&cfg.prefix, matches!(cfg.target, RedisTarget::Cluster { .. }), parts);
        let writer = Writer {
            link: link.clone(),
            keys: keys.clone(),
            max_entries: cfg.log_max_entries.div_ceil(u64::from(parts)),
            shared: shared.clone(),
            node: node.clone(),
            heartbeat: cfg.heartbeat_interval,
            node_timeout: cfg.node_timeout,
            shards: senders.clone(),
        };
        std::thread::Builder::new()
            .name("redis-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| format!("cannot start the Redis writer thread: {e}"))?;
        let (ready, joined) = crossbeam_channel::bounded(usize::from(parts));
        let owner: Arc<reader::Owner> = Arc::new(owner);
        for index in 0..parts {
            let reader = Reader {
                link: link.clone(),
                part: LogPart { index, count: parts },
                keys: keys.parts[usize::from(index)].clone(),
                shared: shared.clone(),
                inboxes: senders.clone(),
                owner: owner.clone(),
                ready: Some(ready.clone()),
            };
            std::thread::Builder::new()
                .name(format!("redis-reader-{index}"))
                .spawn(move || reader.run())
                .map_err(|e| format!("cannot start a Redis reader thread: {e}"))?;
        }
        log::info!("backplane: Redis at {}, log in {parts} part(s), node {node}", link.url);
        let deadline = Instant::now() + cfg.request_timeout;
        for _ in 0..parts {
            if joined.recv_deadline(deadline).is_err() {
                log::warn!("backplane: not joined within {:?}; serving meanwhile", cfg.request_timeout);
                break;
            }
        }
        Ok(Arc::new(RedisLog {
            node,
            prefix: cfg.prefix.clone(),
            parts,
            jobs,
            inboxes: Mutex::new(receivers.into_iter().map(Some).collect()),
            shared,
        }))
    }
}

impl RedisLog {
    fn submit(&self, job: Job) {
        if let Err(e) = self.jobs.send(job) {
            e.into_inner().fail("the Redis writer thread has stopped");
        }
    }

    fn idempotency_key(&self, (app, space, key): &IdempotencyKey) -> String {
        format!("{}idem:{app}\n{space}\n{key}", self.prefix)
    }
}

impl Backplane for RedisLog {
    fn node_id(&self) -> &str {
        &self.node
    }

    fn append(&self, append: Append) -> Reply<Appended> {
        let (reply, answer) = Reply::pair();
        let op = sonic_rs::to_string(&append.entry).expect("a log entry serializes");
        let job = match &append.entry {
            Entry::Publish(intent) => {
                let part = LogPart::of(&intent.app, &intent.channel, self.parts);
                let field = format!("{}\n{}", intent.app, intent.channel);
                let serial = append.takes_serial.map_or(Serial::None, |(sid, n)| Serial::Next(sid, n));
                Job::Append { part, field, serial, op, reply }
            }
            Entry::Mutate(m) => {
                let part = LogPart::of(&m.app, &m.channel, self.parts);
                let field = format!("{}\n{}", m.app, m.channel);
                let floor = append.takes_serial.map_or(0, |(_, n)| n);
                let key = format!("mv:{field}\n{}\n{}", m.stream_id, m.message);
                let serial = Serial::Mutate(m.stream_id.clone(), floor, key, m.versions);
                Job::Append { part, field, serial, op, reply }
            }
            Entry::Annotate(a) => {
                let part = LogPart::of(&a.app, &a.channel, self.parts);
                let field = format!("{}\n{}", a.app, a.channel);
                Job::Append { part, field, serial: Serial::None, op, reply }
            }
            Entry::History(change) => {
                let part = LogPart::of(&change.app, &change.channel, self.parts);
                let field = format!("{}\n{}", change.app, change.channel);
                let serial = match &change.op {
                    HistoryOp::Reset { stream_id } => Serial::Reset(stream_id.clone()),
                    _ => Serial::None,
                };
                Job::Append { part, field, serial, op, reply }
            }
            Entry::Share(share) => {
                let part = LogPart::of(&share.app, &share.channel, self.parts);
                let (mode, args) = share_args(&share.change);
                Job::Share { part, field: format!("{}\n{}", share.app, share.channel), mode, args, op, reply }
            }
            Entry::Nodes(NodeAction::Revoke { app, jti, client_id, .. }) => {
                let field = match (jti, client_id) {
                    (Some(jti), _) => format!("{app}\njti\n{jti}"),
                    (None, client) => format!("{app}\nclient\n{}", client.as_deref().unwrap_or_default()),
                };
                Job::Keep { field, op, reply }
            }
            Entry::Nodes(_) | Entry::Gone { .. } => {
                Job::Append { part: 0, field: String::new(), serial: Serial::None, op, reply }
            }
        };
        self.submit(job);
        answer
    }

    fn claim_key(&self, key: &IdempotencyKey, ttl_ms: u64) -> Reply<KeyState> {
        let (reply, answer) = Reply::pair();
        self.submit(Job::Claim { key: self.idempotency_key(key), ttl_ms, reply });
        answer
    }

    fn settle_key(&self, key: &IdempotencyKey, body: Option<String>, ttl_ms: u64) -> Reply<()> {
        let (reply, answer) = Reply::pair();
        self.submit(Job::Settle { key: self.idempotency_key(key), body, ttl_ms, reply });
        answer
    }

    fn depart(&self) {
        self.submit(Job::Depart);
    }

    fn take_inbox(&self, shard: usize) -> Option<Inbox> {
        self.inboxes.lock().ok()?.get_mut(shard)?.take()
    }

    fn connected(&self) -> bool {
        let up = |s: &AtomicU8| s.load(Ordering::Relaxed) == UP;
        up(&self.shared.writer) && self.shared.readers.iter().all(up)
    }

    fn figures(&self) -> BackplaneFigures {
        let s = &self.shared;
        BackplaneFigures {
            connected: self.connected(),
            appended: s.appended.load(Ordering::Relaxed),
            append_failures: s.append_failures.load(Ordering::Relaxed),
            entries_read: s.entries_read.load(Ordering::Relaxed),
            disconnects: s.disconnects.load(Ordering::Relaxed),
        }
    }
}

/// The keys of one part of the log.
#[derive(Clone)]
struct PartKeys {
    /// What every key of the part starts with: the configured prefix, and in a Redis Cluster a
    /// hash tag that puts all of them in one slot.
    prefix: String,
    log: String,
    serials: String,
    sharers: String,
    /// Kept entries (revocations); only part 0's holds any.
    kept: String,
}

#[derive(Clone)]
struct Keys {
    parts: Vec<PartKeys>,
    /// How many parts the cluster's log is in (a key of its own, wherever its slot is).
    layout: String,
    /// Part 0's keys about the nodes.
    nodes: String,
    beat: String,
    gone: String,
}

impl Keys {
    fn new(prefix: &str, cluster: bool, parts: u16) -> Keys {
        let parts: Vec<PartKeys> = (0..parts)
            .map(|i| {
                let prefix = if cluster { format!("{prefix}{{{}}}", slot_tag(i, parts)) } else { prefix.to_owned() };
                PartKeys {
                    log: format!("{prefix}log"),
                    serials: format!("{prefix}serials"),
                    sharers: format!("{prefix}sharers"),
                    kept: format!("{prefix}revocations"),
                    prefix,
                }
            })
            .collect();
        let first = &parts[0].prefix;
        Keys {
            nodes: format!("{first}nodes"),
            beat: format!("{first}beat"),
            gone: format!("{first}gone"),
            layout: format!("{prefix}log_parts"),
            parts,
        }
    }
}

/// Redis Cluster's number of key slots.
const SLOTS: u32 = 16384;

/// A hash tag whose slot lies in the `part`-th of `parts` equal ranges of the slots: the
/// first of `0`, `1`, ... that does. A cluster's nodes serve ranges of slots, so parts spread
/// this way land on different nodes (`redis-cli --cluster create` gives each node an equal
/// range); the same on every node of this server, since it depends on nothing else.
fn slot_tag(part: u16, parts: u16) -> u32 {
    let range = |slot: u32| slot * u32::from(parts) / SLOTS;
    (0u32..)
        .find(|k| {
            range(u32::from(crc16::State::<crc16::XMODEM>::calculate(k.to_string().as_bytes())) % SLOTS)
                == u32::from(part)
        })
        .expect("every range of slots has a tag")
}

/// How a thread reaches Redis: one server or a cluster.
#[derive(Clone)]
struct Link {
    target: Target,
    /// For messages: the URL(s) without password.
    url: String,
    timeout: Duration,
}

#[derive(Clone)]
enum Target {
    One(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

impl Link {
    fn new(cfg: &RedisAdapter) -> Result<Link, String> {
        let connect = cfg.request_timeout.min(Duration::from_secs(2));
        let (target, url) = match &cfg.target {
            RedisTarget::One(url) => {
                let client = redis::Client::open(url.as_str())
                    .map_err(|e| format!("invalid configuration: `adapter.redis.redis_pub_options.url`: {e}"))?;
                (Target::One(client), redact(url))
            }
            RedisTarget::Cluster { nodes, .. } => {
                // Few retries: a redirect after a slot moved needs one, but an append retried
                // after a lost connection could be appended twice (the writer reports the
                // outcome as unknown instead).
                let client = redis::cluster::ClusterClientBuilder::new(nodes.iter().map(String::as_str))
                    .connection_timeout(connect)
                    .response_timeout(cfg.request_timeout)
                    .retries(2)
                    .build()
                    .map_err(|e| format!("invalid configuration: `adapter.cluster.nodes`: {e}"))?;
                (Target::Cluster(client), nodes.iter().map(|n| redact(n)).collect::<Vec<_>>().join(","))
            }
        };
        Ok(Link { target, url, timeout: cfg.request_timeout })
    }

    fn connect(&self, read_timeout: Duration) -> RedisResult<Con> {
        let connect = self.timeout.min(Duration::from_secs(2));
        let con = match &self.target {
            Target::One(client) => {
                let con = client.get_connection_with_timeout(connect)?;
                con.set_read_timeout(Some(read_timeout))?;
                con.set_write_timeout(Some(self.timeout))?;
                Con::One(con)
            }
            Target::Cluster(client) => {
                let con = client.get_connection()?;
                con.set_read_timeout(Some(read_timeout))?;
                con.set_write_timeout(Some(self.timeout))?;
                Con::Cluster(Box::new(con))
            }
        };
        Ok(con)
    }
}

/// A connection to one Redis, or to a cluster (which routes each command to the node serving
/// its key's slot, and a pipeline as one pipeline per node).
enum Con {
    One(redis::Connection),
    // One per thread, made at each (re)connect: the box costs nothing that matters.
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl Con {
    fn query<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> RedisResult<T> {
        match self {
            Con::One(c) => cmd.query(c),
            Con::Cluster(c) => cmd.query(&mut **c),
        }
    }

    fn pipeline(&mut self, cmds: Vec<redis::Cmd>) -> RedisResult<Vec<Value>> {
        match self {
            Con::One(c) => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query(c)
            }
            Con::Cluster(c) => {
                let mut pipe = redis::cluster::cluster_pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.query(c)
            }
        }
    }
}

/// Retry delays after a failure: 100 ms doubling to 2 s.
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { next: Duration::from_millis(100) }
    }

    fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(2));
        d
    }
}

/// A link's state: 0 before its first attempt, then UP or DOWN.
const UP: u8 = 1;
const DOWN: u8 = 2;

/// Which thread's link: the writer's or a part's reader's.
#[derive(Clone, Copy)]
enum Side {
    Writer,
    Reader(u16),
}

impl Shared {
    /// Records a link's state and reports each change once, loudly when it goes down.
    fn report(&self, side: Side, up: bool, url: &str, why: &dyn std::fmt::Display) {
        let (state, who) = match side {
            Side::Writer => (&self.writer, "writer".to_owned()),
            Side::Reader(i) => (&self.readers[usize::from(i)], format!("reader {i}")),
        };
        let new = if up { UP } else { DOWN };
        let old = state.swap(new, Ordering::Relaxed);
        if old == new {
            return;
        }
        if old == UP {
            self.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        report_change(&who, up, url, why);
    }
}

fn report_change(who: &str, up: bool, url: &str, why: &dyn std::fmt::Display) {
    if up {
        log::info!("backplane {who}: connected to Redis at {url}");
    } else {
        log::error!(
            "backplane {who}: Redis at {url} is unreachable ({why}); this node serves its own sockets, \
             its publishes answer 503, and it keeps retrying"
        );
    }
}

/// The URL without a password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(key: &str) -> u32 {
        u32::from(crc16::State::<crc16::XMODEM>::calculate(key.as_bytes())) % SLOTS
    }

    #[test]
    fn the_parts_spread_over_the_slots() {
        for parts in [1u16, 3, 8, 256] {
            let keys = Keys::new("p:", true, parts);
            for (i, part) in keys.parts.iter().enumerate() {
                let tag = slot_tag(i as u16, parts);
                assert!(part.log.starts_with(&format!("p:{{{tag}}}")), "{}", part.log);
                assert_eq!(slot(&tag.to_string()) * u32::from(parts) / SLOTS, i as u32);
            }
        }
        let one = Keys::new("p:", false, 1);
        assert_eq!((one.parts[0].log.as_str(), one.nodes.as_str()), ("p:log", "p:nodes"));
    }
}
