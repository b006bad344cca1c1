//! The Redis backplane: the cluster log is one Redis stream, appended by a Lua script that
//! gives a channel its next serial, appends the intent and trims the stream in one atomic step
//! (Centrifugo's model), and read by every node with `XREAD BLOCK` from the last entry it
//! applied. Reading a stream rather than subscribing to pub/sub is what makes a node's feed
//! gap-free across a dropped connection: it resumes from its last entry id, as far back as the
//! stream keeps (`log_max_entries`).
//!
//! Two threads per node, beside the shard executors and never blocking one:
//! - the **writer** takes appends from every shard through a queue and sends each batch as one
//!   pipeline (one round trip for everything that arrived while the previous one was out);
//! - the **reader** follows the stream and hands each entry to the owner shard of its channel
//!   on this node (one queue per shard, so per-channel order is the log's).
//!
//! Keys (all under the configured prefix, so clusters can share a Redis):
//! - `<prefix>log`: the stream; fields `n` (serial, 0 for none), `s` (stream id), `op` (the
//!   intent as JSON);
//! - `<prefix>serials`: a hash, one field per channel (`<app id>\n<channel>`) holding
//!   `"<serial> <stream id>"`: where each channel's serials stand. This is the authority for
//!   serials; nodes hold copies.
//! - `<prefix>nodes`: a sorted set of the live nodes, each scored with the time its heartbeat
//!   runs out, and `<prefix>beat`, when Redis last ran a heartbeat;
//! - per node, its share of the channels, kept by the script that appends each change so that
//!   a node that starts reads every live node's share with the log position it stands at:
//!   `<prefix>shares:<node>` (a set of channel fields), `<prefix>counts:<node>` (a hash of
//!   subscription counts) and `<prefix>members:<node>:<channel field>` (a hash of presence
//!   members and their `user_info`);
//! - `<prefix>revocations`: a hash of the token revocations in force (each as its log entry), so
//!   that a node that starts later carries them out too.
//!
//! `writer.rs` and `reader.rs` are the two threads, `scripts.rs` the Lua they run.

mod reader;
mod scripts;
mod writer;

use super::{Append, Backplane, Entry, IdempotencyKey, Inbox, KeyState, NodeAction, Reply};
use crate::config::RedisAdapter;
use crate::metrics::BackplaneFigures;
use futures_channel::mpsc;
use reader::Reader;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use writer::{share_args, Job, Writer};

struct Shared {
    writer: AtomicU8,
    reader: AtomicU8,
    appended: AtomicU64,
    append_failures: AtomicU64,
    entries_read: AtomicU64,
    disconnects: AtomicU64,
}

pub struct RedisLog {
    node: String,
    prefix: String,
    jobs: crossbeam_channel::Sender<Job>,
    inboxes: Mutex<Vec<Option<Inbox>>>,
    shared: Arc<Shared>,
}

impl RedisLog {
    /// Starts the writer and reader threads. `owner` places a channel of an app (by id) on one
    /// of this node's shards. Redis need not be reachable yet: both threads keep trying, and
    /// say so in the log. When it is, this returns once the reader has the share of every live
    /// node (at most the request timeout), so that the node's first presence subscribe lists
    /// every member.
    pub fn start(
        cfg: &RedisAdapter,
        shards: usize,
        owner: impl Fn(&str, &str) -> usize + Send + 'static,
    ) -> Result<Arc<RedisLog>, String> {
        let client = redis::Client::open(cfg.url.as_str())
            .map_err(|e| format!("invalid configuration: `adapter.redis.redis_pub_options.url`: {e}"))?;
        let node = crate::protocol::outbound::uuid_v4();
        let shared = Arc::new(Shared {
            writer: AtomicU8::new(0),
            reader: AtomicU8::new(0),
            appended: AtomicU64::new(0),
            append_failures: AtomicU64::new(0),
            entries_read: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
        });
        let (jobs, rx) = crossbeam_channel::unbounded();
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards).map(|_| mpsc::unbounded()).unzip();
        let keys = Keys {
            prefix: cfg.prefix.clone(),
            serials: format!("{}serials", cfg.prefix),
            log: format!("{}log", cfg.prefix),
            nodes: format!("{}nodes", cfg.prefix),
            revocations: format!("{}revocations", cfg.prefix),
            beat: format!("{}beat", cfg.prefix),
        };
        let link = Link { client, url: redact(&cfg.url), timeout: cfg.request_timeout };
        let writer = Writer {
            link: link.clone(),
            keys: keys.clone(),
            max_entries: cfg.log_max_entries,
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
        let (ready, joined) = crossbeam_channel::bounded(1);
        let reader =
            Reader { link, keys, shared: shared.clone(), inboxes: senders, owner: Box::new(owner), ready: Some(ready) };
        std::thread::Builder::new()
            .name("redis-reader".into())
            .spawn(move || reader.run())
            .map_err(|e| format!("cannot start the Redis reader thread: {e}"))?;
        log::info!("backplane: Redis at {}, node {node}", redact(&cfg.url));
        if joined.recv_timeout(cfg.request_timeout).is_err() {
            log::warn!("backplane: not joined within {:?}; serving meanwhile", cfg.request_timeout);
        }
        Ok(Arc::new(RedisLog {
            node,
            prefix: cfg.prefix.clone(),
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

    fn append(&self, append: Append) -> Reply<()> {
        let (reply, answer) = Reply::pair();
        let op = sonic_rs::to_string(&append.entry).expect("a log entry serializes");
        let job = match &append.entry {
            Entry::Publish(intent) => {
                let field = format!("{}\n{}", intent.app, intent.channel);
                Job::Append { field, known: append.takes_serial, op, reply }
            }
            Entry::Share(share) => {
                let (mode, args) = share_args(&share.change);
                Job::Share { field: format!("{}\n{}", share.app, share.channel), mode, args, op, reply }
            }
            Entry::Nodes(NodeAction::Revoke { app, jti, client_id, .. }) => {
                let field = match (jti, client_id) {
                    (Some(jti), _) => format!("{app}\njti\n{jti}"),
                    (None, client) => format!("{app}\nclient\n{}", client.as_deref().unwrap_or_default()),
                };
                Job::Keep { field, op, reply }
            }
            Entry::Nodes(_) | Entry::Gone { .. } => Job::Append { field: String::new(), known: None, op, reply },
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
        self.shared.writer.load(Ordering::Relaxed) == UP && self.shared.reader.load(Ordering::Relaxed) == UP
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

#[derive(Clone)]
struct Keys {
    prefix: String,
    serials: String,
    log: String,
    nodes: String,
    /// The revocations in force, for nodes that start later.
    revocations: String,
    /// When Redis last ran a heartbeat, of any node.
    beat: String,
}

/// How a thread reaches Redis.
#[derive(Clone)]
struct Link {
    client: redis::Client,
    /// For messages: the URL without its password.
    url: String,
    timeout: Duration,
}

impl Link {
    fn connect(&self, read_timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let con = self.client.get_connection_with_timeout(self.timeout.min(Duration::from_secs(2)))?;
        con.set_read_timeout(Some(read_timeout))?;
        con.set_write_timeout(Some(self.timeout))?;
        Ok(con)
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

/// Which of the two threads' links.
#[derive(Clone, Copy)]
enum Side {
    Writer,
    Reader,
}

impl Shared {
    /// Records a link's state and reports each change once, loudly when it goes down.
    fn report(&self, side: Side, up: bool, url: &str, why: &dyn std::fmt::Display) {
        let (state, who) = match side {
            Side::Writer => (&self.writer, "writer"),
            Side::Reader => (&self.reader, "reader"),
        };
        let new = if up { UP } else { DOWN };
        let old = state.swap(new, Ordering::Relaxed);
        if old == new {
            return;
        }
        if old == UP {
            self.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        report_change(who, up, url, why);
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
