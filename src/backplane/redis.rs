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

use super::{
    Append, Backplane, BackplaneError, Entry, FromLog, IdempotencyKey, Inbox, KeyState, Placed, Reply, Responder,
};
use crate::config::RedisAdapter;
use crate::metrics::BackplaneFigures;
use futures_channel::mpsc;
use redis::Value;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Gives the channel its next serial (continuing from what the appending node knows when the
/// hash holds nothing for it), appends the intent and trims the log, atomically.
const APPEND_SCRIPT: &str = r#"
local sid = ''
local n = 0
if ARGV[2] == '1' then
  local cur = redis.call('HGET', KEYS[1], ARGV[1])
  if cur then
    local at = string.find(cur, ' ', 1, true)
    n = tonumber(string.sub(cur, 1, at - 1)) + 1
    sid = string.sub(cur, at + 1)
  else
    n = tonumber(ARGV[4]) + 1
    sid = ARGV[3]
  end
  redis.call('HSET', KEYS[1], ARGV[1], n .. ' ' .. sid)
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'n', n, 's', sid, 'op', ARGV[6])
return n
"#;

/// Most appends sent in one pipeline.
const MAX_BATCH: usize = 512;
/// Most entries read per `XREAD`.
const READ_COUNT: usize = 512;
/// How long one `XREAD` blocks: a dead connection is noticed within this plus the timeout.
const READ_BLOCK_MS: u64 = 1000;

/// Takes an idempotency key if free (marked in progress with an empty value); else answers
/// what it holds.
const CLAIM_SCRIPT: &str = r#"
if redis.call('SET', KEYS[1], '', 'NX', 'PX', ARGV[1]) then return {1} end
return {0, redis.call('GET', KEYS[1])}
"#;

/// What the writer thread sends Redis, each with where its answer goes.
enum Job {
    Append {
        /// The channel's field in the serials hash ("" for an entry that takes no serial).
        field: String,
        /// The stream the appending node knows, for an entry that takes a serial.
        known: Option<(String, u64)>,
        op: String,
        reply: Responder<()>,
    },
    Claim {
        key: String,
        ttl_ms: u64,
        reply: Responder<KeyState>,
    },
    /// Keeps a response (`Some`) for the window, or frees the key.
    Settle {
        key: String,
        body: Option<String>,
        ttl_ms: u64,
        reply: Responder<()>,
    },
}

impl Job {
    /// Answers with `why` (a gone asker needs no answer).
    fn fail(self, why: &str) {
        let e = BackplaneError(why.to_owned());
        match self {
            Job::Append { reply, .. } | Job::Settle { reply, .. } => drop(reply.send(Err(e))),
            Job::Claim { reply, .. } => drop(reply.send(Err(e))),
        }
    }

    /// Answers with what Redis replied to the job's command.
    fn answer(self, value: Value) {
        match self {
            Job::Append { reply, .. } | Job::Settle { reply, .. } => drop(reply.send(Ok(()))),
            Job::Claim { reply, .. } => drop(reply.send(Ok(key_state(value)))),
        }
    }
}

/// The claim script's reply: `{1}` taken, `{0, ""}` in progress, `{0, body}` answered.
fn key_state(v: Value) -> KeyState {
    let Value::Array(parts) = v else { return KeyState::InProgress };
    match (parts.first(), parts.get(1)) {
        (Some(Value::Int(1)), _) => KeyState::Claimed,
        (_, Some(Value::BulkString(b))) if !b.is_empty() => KeyState::Stored(String::from_utf8_lossy(b).into_owned()),
        _ => KeyState::InProgress,
    }
}

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
    /// say so in the log.
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
        let keys = Keys { serials: format!("{}serials", cfg.prefix), log: format!("{}log", cfg.prefix) };
        let link = Link { client, url: redact(&cfg.url), timeout: cfg.request_timeout };
        let writer =
            Writer { link: link.clone(), keys: keys.clone(), max_entries: cfg.log_max_entries, shared: shared.clone() };
        std::thread::Builder::new()
            .name("redis-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| format!("cannot start the Redis writer thread: {e}"))?;
        let reader = Reader { link, log: keys.log, shared: shared.clone(), inboxes: senders, owner: Box::new(owner) };
        std::thread::Builder::new()
            .name("redis-reader".into())
            .spawn(move || reader.run())
            .map_err(|e| format!("cannot start the Redis reader thread: {e}"))?;
        log::info!("backplane: Redis at {}, node {node}", redact(&cfg.url));
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
        let field = match &append.entry {
            Entry::Publish(intent) => format!("{}\n{}", intent.app, intent.channel),
            Entry::Nodes(_) => String::new(),
        };
        let op = sonic_rs::to_string(&append.entry).expect("a log entry serializes");
        self.submit(Job::Append { field, known: append.takes_serial, op, reply });
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
    serials: String,
    log: String,
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

struct Writer {
    link: Link,
    keys: Keys,
    max_entries: u64,
    shared: Arc<Shared>,
}

impl Writer {
    fn run(self, rx: crossbeam_channel::Receiver<Job>) {
        let mut con: Option<(redis::Connection, Scripts)> = None;
        let mut backoff = Backoff::new();
        let mut retry_at = Instant::now();
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // The writer connects before the first append, so that an unreachable Redis is
        // reported at start, not at the first publish.
        loop {
            if con.is_none() && Instant::now() >= retry_at {
                match self.connect() {
                    Ok(c) => {
                        self.shared.report(Side::Writer, true, &self.link.url, &"");
                        backoff = Backoff::new();
                        con = Some(c);
                    }
                    Err(e) => {
                        self.shared.report(Side::Writer, false, &self.link.url, &e);
                        retry_at = Instant::now() + backoff.step();
                    }
                }
            }
            let wait = if con.is_some() {
                Duration::from_secs(3600)
            } else {
                retry_at.saturating_duration_since(Instant::now())
            };
            match rx.recv_timeout(wait) {
                Ok(first) => batch.push(first),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
            batch.extend(rx.try_iter().take(MAX_BATCH - 1));
            let appends = batch.iter().filter(|j| matches!(j, Job::Append { .. })).count() as u64;
            let Some((c, shas)) = con.as_mut() else {
                self.shared.append_failures.fetch_add(appends, Ordering::Relaxed);
                fail(&mut batch, &format!("Redis at {} is unreachable", self.link.url));
                continue;
            };
            let mut pipe = redis::pipe();
            for j in &batch {
                self.command(&mut pipe, shas, j);
            }
            match pipe.query::<Vec<Value>>(c) {
                Ok(values) => {
                    self.shared.appended.fetch_add(appends, Ordering::Relaxed);
                    batch.drain(..).zip(values).for_each(|(j, v)| j.answer(v));
                }
                Err(e) => {
                    // The outcome of the batch is unknown (a publisher retries with an
                    // idempotency key); the next batch reconnects.
                    self.shared.append_failures.fetch_add(appends, Ordering::Relaxed);
                    fail(&mut batch, &format!("Redis at {} failed: {e}", self.link.url));
                    self.shared.report(Side::Writer, false, &self.link.url, &e);
                    con = None;
                    retry_at = Instant::now() + backoff.step();
                }
            }
        }
    }

    /// Adds the job's command to the pipeline.
    fn command(&self, pipe: &mut redis::Pipeline, shas: &Scripts, job: &Job) {
        match job {
            Job::Append { field, known, op, .. } => {
                let (sid, floor) = known.clone().unwrap_or_default();
                pipe.cmd("EVALSHA")
                    .arg(&shas.append)
                    .arg(2)
                    .arg(&self.keys.serials)
                    .arg(&self.keys.log)
                    .arg(field)
                    .arg(if known.is_some() { "1" } else { "0" })
                    .arg(sid)
                    .arg(floor)
                    .arg(self.max_entries)
                    .arg(op);
            }
            Job::Claim { key, ttl_ms, .. } => {
                pipe.cmd("EVALSHA").arg(&shas.claim).arg(1).arg(key).arg(*ttl_ms);
            }
            Job::Settle { key, body: Some(body), ttl_ms, .. } => {
                pipe.cmd("SET").arg(key).arg(body).arg("PX").arg(*ttl_ms);
            }
            Job::Settle { key, body: None, .. } => {
                pipe.cmd("DEL").arg(key);
            }
        }
    }

    fn connect(&self) -> redis::RedisResult<(redis::Connection, Scripts)> {
        let mut con = self.link.connect(self.link.timeout)?;
        let append: String = redis::cmd("SCRIPT").arg("LOAD").arg(APPEND_SCRIPT).query(&mut con)?;
        let claim: String = redis::cmd("SCRIPT").arg("LOAD").arg(CLAIM_SCRIPT).query(&mut con)?;
        Ok((con, Scripts { append, claim }))
    }
}

/// The SHA1s of the scripts, loaded at each connect.
struct Scripts {
    append: String,
    claim: String,
}

fn fail(batch: &mut Vec<Job>, why: &str) {
    batch.drain(..).for_each(|j| j.fail(why));
}

struct Reader {
    link: Link,
    log: String,
    shared: Arc<Shared>,
    inboxes: Vec<mpsc::UnboundedSender<FromLog>>,
    owner: Box<Owner>,
}

/// Places a channel (app id, name) on one of this node's shards.
type Owner = dyn Fn(&str, &str) -> usize + Send;

impl Reader {
    fn run(self) {
        // The id of the last entry handed to a shard; `None` until the reader first reaches
        // Redis, when it starts at the log's end: what this node missed before it joined, it
        // learns as the gap in each channel's serials.
        let mut last: Option<String> = None;
        let mut backoff = Backoff::new();
        loop {
            let read_timeout = Duration::from_millis(READ_BLOCK_MS) + self.link.timeout;
            let joined = self.link.connect(read_timeout).and_then(|mut con| {
                let from = match last.take() {
                    Some(id) => id,
                    None => self.log_end(&mut con)?,
                };
                Ok((con, from))
            });
            let failed = match joined {
                Ok((mut con, from)) => {
                    self.shared.report(Side::Reader, true, &self.link.url, &"");
                    backoff = Backoff::new();
                    let from = last.insert(from);
                    self.follow(&mut con, from)
                }
                Err(e) => e,
            };
            self.shared.report(Side::Reader, false, &self.link.url, &failed);
            std::thread::sleep(backoff.step());
        }
    }

    /// The id of the newest entry, or `0-0` for an empty log.
    fn log_end(&self, con: &mut redis::Connection) -> redis::RedisResult<String> {
        let newest: Value = redis::cmd("XREVRANGE").arg(&self.log).arg("+").arg("-").arg("COUNT").arg(1).query(con)?;
        let id = entries(&newest).next().map_or_else(|| "0-0".to_owned(), |(id, _)| id);
        Ok(id)
    }

    /// Reads the log from after `last` until the connection fails; returns why it failed.
    fn follow(&self, con: &mut redis::Connection, last: &mut String) -> redis::RedisError {
        loop {
            let read = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(READ_BLOCK_MS)
                .arg("STREAMS")
                .arg(&self.log)
                .arg(&*last)
                .query::<Value>(con);
            let reply = match read {
                Ok(reply) => reply,
                Err(e) => return e,
            };
            let Value::Array(streams) = reply else { continue };
            for stream in streams {
                let Value::Array(parts) = stream else { continue };
                let Some(list) = parts.get(1) else { continue };
                for (id, fields) in entries(list) {
                    self.shared.entries_read.fetch_add(1, Ordering::Relaxed);
                    self.hand_over(fields);
                    *last = id;
                }
            }
        }
    }

    fn hand_over(&self, fields: Vec<(String, Vec<u8>)>) {
        let (mut serial, mut stream_id, mut op) = (0, String::new(), None);
        for (k, v) in fields {
            match k.as_str() {
                "n" => serial = std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok()).unwrap_or(0),
                "s" => stream_id = String::from_utf8(v).unwrap_or_default(),
                "op" => op = Some(v),
                _ => {}
            }
        }
        let (shard, item) = match op.and_then(|op| sonic_rs::from_slice::<Entry>(&op).ok()) {
            Some(Entry::Publish(intent)) => {
                ((self.owner)(&intent.app, &intent.channel), FromLog::Placed(Placed { stream_id, serial, intent }))
            }
            Some(Entry::Nodes(action)) => (0, FromLog::Nodes(action)),
            None => {
                log::warn!("backplane reader: a log entry this node cannot read was skipped");
                return;
            }
        };
        let _ = self.inboxes[shard].unbounded_send(item);
    }
}

/// The entries of an `XRANGE`-shaped reply: `[[id, [field, value, ...]], ...]`.
fn entries(v: &Value) -> impl Iterator<Item = (String, Vec<(String, Vec<u8>)>)> + '_ {
    let list: &[Value] = match v {
        Value::Array(l) => l,
        _ => &[],
    };
    list.iter().filter_map(|e| {
        let Value::Array(pair) = e else { return None };
        let (Some(Value::BulkString(id)), Some(Value::Array(kv))) = (pair.first(), pair.get(1)) else { return None };
        let fields = kv
            .chunks(2)
            .filter_map(|c| match c {
                [Value::BulkString(k), Value::BulkString(v)] => {
                    Some((String::from_utf8_lossy(k).into_owned(), v.clone()))
                }
                _ => None,
            })
            .collect();
        Some((String::from_utf8_lossy(id).into_owned(), fields))
    })
}

/// The URL without a password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}
