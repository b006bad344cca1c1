//! The writer thread: takes appends, idempotency claims and heartbeats from every shard through
//! one queue and sends what arrived meanwhile as one pipeline (one round trip for everything
//! that came while the previous one was out; in a Redis Cluster one per node, sent together),
//! beating and sweeping between batches.

use super::scripts::{APPEND_SCRIPT, CLAIM_SCRIPT, GONE_SCRIPT, HEARTBEAT_SCRIPT, KEEP_SCRIPT, SHARE_SCRIPT};
use super::{Backoff, Con, Keys, Link, Shared, Side};
use crate::backplane::{Appended, BackplaneError, FromLog, KeyState, LogPart, Responder, ShareChange};
use futures_channel::mpsc;
use redis::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most appends sent in one pipeline.
const MAX_BATCH: usize = 512;

/// What the writer thread sends Redis, each with where its answer goes.
pub(super) enum Job {
    Append {
        /// The log's part it goes to.
        part: u16,
        /// The channel's field in the serials hash ("" for an entry of no channel).
        field: String,
        serial: Serial,
        op: String,
        reply: Responder<Appended>,
    },
    /// An entry also kept for nodes that start later (`KEEP_SCRIPT`): a revocation.
    Keep {
        field: String,
        op: String,
        reply: Responder<Appended>,
    },
    /// A change of this node's share of a channel (`SHARE_SCRIPT`).
    Share {
        part: u16,
        field: String,
        mode: &'static str,
        args: Vec<String>,
        op: String,
        reply: Responder<Appended>,
    },
    Claim {
        key: String,
        ttl_ms: u64,
        reply: Responder<KeyState>,
    },
    /// This node stops: its deadline is put in the past, and it beats no more.
    Depart,
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
    pub(super) fn fail(self, why: &str) {
        let e = BackplaneError(why.to_owned());
        match self {
            Job::Append { reply, .. } | Job::Keep { reply, .. } | Job::Share { reply, .. } => drop(reply.send(Err(e))),
            Job::Settle { reply, .. } => drop(reply.send(Err(e))),
            Job::Claim { reply, .. } => drop(reply.send(Err(e))),
            Job::Depart => {}
        }
    }

    /// Answers with what Redis replied to the job's command.
    fn answer(self, value: Value) {
        match self {
            // `APPEND_SCRIPT` refuses a mutation with -2 (stale) or -1 (its stream is gone).
            Job::Append { reply, .. } => drop(reply.send(Ok(match value {
                Value::Int(-2) => Appended::Stale,
                Value::Int(-1) => Appended::StreamGone,
                _ => Appended::Taken,
            }))),
            Job::Keep { reply, .. } | Job::Share { reply, .. } => drop(reply.send(Ok(Appended::Taken))),
            Job::Settle { reply, .. } => drop(reply.send(Ok(()))),
            Job::Claim { reply, .. } => drop(reply.send(Ok(key_state(value)))),
            Job::Depart => {}
        }
    }
}

/// What an append does to its channel's serials.
pub(super) enum Serial {
    None,
    /// Takes the next serial; the stream the appending node knows and its newest serial, for
    /// a channel the serials hash holds nothing of.
    Next(String, u64),
    /// Restarts the channel's serials in a new stream.
    Reset(String),
    /// A mutation: takes the next serial (as `Next`) only if the message's stream is still the
    /// channel's and the message has the versions the mutation was checked against. The
    /// message's stream id, the node's newest serial, the message's version key, its versions.
    Mutate(String, u64, String, u32),
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

/// `SHARE_SCRIPT`'s mode and arguments for a change.
pub(super) fn share_args(change: &ShareChange) -> (&'static str, Vec<String>) {
    match change {
        ShareChange::Join { user, info, .. } => ("j", vec![user.clone(), info.clone()]),
        ShareChange::Update { user, info, .. } => ("u", vec![user.clone(), info.clone()]),
        ShareChange::Leave { user, .. } => ("l", vec![user.clone()]),
        ShareChange::Count { n } => ("c", vec![n.to_string()]),
        ShareChange::Sync { n, members } => {
            let mut args = Vec::with_capacity(1 + 2 * members.len());
            args.push(n.to_string());
            for (user, info) in members {
                args.push(user.clone());
                args.push(info.clone());
            }
            ("s", args)
        }
        ShareChange::Due { .. } => ("d", Vec::new()),
    }
}

pub(super) struct Writer {
    pub(super) link: Link,
    pub(super) keys: Keys,
    pub(super) max_entries: u64,
    pub(super) shared: Arc<Shared>,
    pub(super) node: String,
    pub(super) heartbeat: Duration,
    pub(super) node_timeout: Duration,
    /// Every shard's inbox, to ask for a resync after a (re)connect.
    pub(super) shards: Vec<mpsc::UnboundedSender<FromLog>>,
}

/// The writer's connection, with the scripts' SHA1s.
struct Connected {
    con: Con,
    scripts: Scripts,
}

impl Writer {
    pub(super) fn run(self, rx: crossbeam_channel::Receiver<Job>) {
        let mut con: Option<Connected> = None;
        let mut backoff = Backoff::new();
        let mut retry_at = Instant::now();
        let mut beat_at = Instant::now();
        // Once the node departs it beats no more, so the others take it for dead at once.
        let mut departed = false;
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
                        beat_at = Instant::now();
                        // What failed to append while Redis was away (and what a Redis that
                        // lost its data no longer holds) is repaired by each shard appending
                        // its share anew.
                        for shard in &self.shards {
                            let _ = shard.unbounded_send(FromLog::Resync(LogPart::WHOLE));
                        }
                    }
                    Err(e) => {
                        self.shared.report(Side::Writer, false, &self.link.url, &e);
                        retry_at = Instant::now() + backoff.step();
                    }
                }
            }
            if let Some(c) = con.as_mut().filter(|_| !departed && Instant::now() >= beat_at) {
                beat_at = Instant::now() + self.heartbeat;
                if let Err(e) = self.beat(c) {
                    self.shared.report(Side::Writer, false, &self.link.url, &e);
                    con = None;
                    retry_at = Instant::now() + backoff.step();
                    continue;
                }
            }
            let wait = match con {
                Some(_) if departed => Duration::from_secs(3600),
                Some(_) => beat_at.saturating_duration_since(Instant::now()),
                None => retry_at.saturating_duration_since(Instant::now()),
            };
            match rx.recv_timeout(wait) {
                Ok(first) => batch.push(first),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            }
            batch.extend(rx.try_iter().take(MAX_BATCH - 1));
            departed |= batch.iter().any(|j| matches!(j, Job::Depart));
            let appends =
                batch.iter().filter(|j| matches!(j, Job::Append { .. } | Job::Keep { .. } | Job::Share { .. })).count()
                    as u64;
            let Some(Connected { con: c, scripts, .. }) = con.as_mut() else {
                self.shared.append_failures.fetch_add(appends, Ordering::Relaxed);
                fail(&mut batch, &format!("Redis at {} is unreachable", self.link.url));
                continue;
            };
            let cmds = batch.iter().map(|j| self.command(scripts, j)).collect();
            match c.pipeline(cmds) {
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

    /// The job's command.
    fn command(&self, shas: &Scripts, job: &Job) -> redis::Cmd {
        let evalsha = |sha: &str, keys: &[&str]| {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(sha).arg(keys.len()).arg(keys);
            cmd
        };
        match job {
            Job::Append { part, field, serial, op, .. } => {
                let keys = &self.keys.parts[usize::from(*part)];
                let (mode, sid, floor, guard) = match serial {
                    Serial::None => ("0", "", 0, None),
                    Serial::Next(sid, floor) => ("1", sid.as_str(), *floor, None),
                    Serial::Reset(sid) => ("r", sid.as_str(), 0, None),
                    Serial::Mutate(sid, floor, key, versions) => ("m", sid.as_str(), *floor, Some((key, versions))),
                };
                let mut cmd = evalsha(&shas.append, &[&keys.serials, &keys.log]);
                cmd.arg(field).arg(mode).arg(sid).arg(floor).arg(self.max_entries).arg(op);
                if let Some((key, versions)) = guard {
                    cmd.arg(format!("{}{key}", keys.prefix)).arg(*versions);
                }
                cmd
            }
            Job::Share { part, field, mode, args, op, .. } => {
                let keys = &self.keys.parts[usize::from(*part)];
                let (node, prefix) = (&self.node, &keys.prefix);
                let members = format!("{prefix}members:{node}:{field}");
                let shares = format!("{prefix}shares:{node}");
                let counts = format!("{prefix}counts:{node}");
                let mut cmd = evalsha(&shas.share, &[&members, &shares, &counts, &keys.log, &keys.sharers]);
                cmd.arg(field).arg(*mode).arg(self.max_entries).arg(op).arg(node).arg(args);
                cmd
            }
            Job::Keep { field, op, .. } => {
                let keys = &self.keys.parts[0];
                let mut cmd = evalsha(&shas.keep, &[&keys.kept, &keys.log]);
                cmd.arg(field).arg(self.max_entries).arg(op);
                cmd
            }
            Job::Claim { key, ttl_ms, .. } => {
                let mut cmd = evalsha(&shas.claim, &[key]);
                cmd.arg(*ttl_ms);
                cmd
            }
            Job::Depart => redis::cmd("ZADD").arg(&self.keys.nodes).arg(0).arg(&self.node).clone(),
            Job::Settle { key, body: Some(body), ttl_ms, .. } => {
                redis::cmd("SET").arg(key).arg(body).arg("PX").arg(*ttl_ms).clone()
            }
            Job::Settle { key, body: None, .. } => redis::cmd("DEL").arg(key).clone(),
        }
    }

    fn connect(&self) -> redis::RedisResult<Connected> {
        let mut con = self.link.connect(self.link.timeout)?;
        // Every node must split the log alike, or channels' entries would go to different
        // parts: the first node to join records its number of parts, and a node set to
        // another one does not join.
        let parts = self.keys.parts.len();
        con.query::<()>(redis::cmd("SETNX").arg(&self.keys.layout).arg(parts))?;
        let agreed: usize = con.query(redis::cmd("GET").arg(&self.keys.layout))?;
        if agreed != parts {
            let why = format!(
                "the cluster's log is in {agreed} part(s) and this node's adapter.cluster.log_partitions says \
                 {parts}; every node must use the same number"
            );
            return Err(redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "log parts differ", why)));
        }
        // In a Redis Cluster, `SCRIPT LOAD` goes to every node.
        let mut load = |script: &str| con.query::<String>(redis::cmd("SCRIPT").arg("LOAD").arg(script));
        let scripts = Scripts {
            append: load(APPEND_SCRIPT)?,
            share: load(SHARE_SCRIPT)?,
            keep: load(KEEP_SCRIPT)?,
            claim: load(CLAIM_SCRIPT)?,
            heartbeat: load(HEARTBEAT_SCRIPT)?,
            gone: load(GONE_SCRIPT)?,
        };
        Ok(Connected { con, scripts })
    }

    /// This node's heartbeat and the sweep of nodes whose heartbeats ran out; then each node
    /// taken for dead (now or by a sweep that did not finish) is removed from every part.
    fn beat(&self, c: &mut Connected) -> redis::RedisResult<()> {
        // Heartbeats reach Redis at least every interval while any node is alive; a longer
        // silence from everyone is Redis's own outage.
        let outage = 2 * self.heartbeat.as_millis() as u64;
        let gone: Vec<String> = c.con.query(
            redis::cmd("EVALSHA")
                .arg(&c.scripts.heartbeat)
                .arg(3)
                .arg(&self.keys.nodes)
                .arg(&self.keys.beat)
                .arg(&self.keys.gone)
                .arg(&self.node)
                .arg(self.node_timeout.as_millis() as u64)
                .arg(outage),
        )?;
        if gone.is_empty() {
            return Ok(());
        }
        let mut cmds = Vec::new();
        for node in &gone {
            log::warn!(
                "backplane: node {node} missed its heartbeats for {:?}; its members are removed",
                self.node_timeout
            );
            for keys in &self.keys.parts {
                let mut cmd = redis::cmd("EVALSHA");
                cmd.arg(&c.scripts.gone).arg(2).arg(&keys.log).arg(&keys.sharers);
                cmd.arg(node).arg(&self.node).arg(self.max_entries).arg(&keys.prefix);
                cmds.push(cmd);
            }
        }
        c.con.pipeline(cmds)?;
        // Out of the set only once every part has it.
        c.con.query(redis::cmd("SREM").arg(&self.keys.gone).arg(&gone))
    }
}

/// The SHA1s of the scripts, loaded at each connect.
struct Scripts {
    append: String,
    share: String,
    keep: String,
    claim: String,
    heartbeat: String,
    gone: String,
}

fn fail(batch: &mut Vec<Job>, why: &str) {
    batch.drain(..).for_each(|j| j.fail(why));
}
