//! The writer thread: takes appends, idempotency claims and heartbeats from every shard through
//! one queue and sends what arrived meanwhile as one pipeline (one round trip for everything
//! that came while the previous one was out), beating and sweeping between batches.

use super::scripts::{APPEND_SCRIPT, CLAIM_SCRIPT, HEARTBEAT_SCRIPT, KEEP_SCRIPT, SHARE_SCRIPT};
use super::{Backoff, Keys, Link, Shared, Side};
use crate::backplane::{BackplaneError, FromLog, KeyState, Responder, ShareChange};
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
        /// The channel's field in the serials hash ("" for an entry that takes no serial).
        field: String,
        /// The stream the appending node knows, for an entry that takes a serial.
        known: Option<(String, u64)>,
        op: String,
        reply: Responder<()>,
    },
    /// An entry also kept for nodes that start later (`KEEP_SCRIPT`): a revocation.
    Keep {
        field: String,
        op: String,
        reply: Responder<()>,
    },
    /// A change of this node's share of a channel (`SHARE_SCRIPT`).
    Share {
        field: String,
        mode: &'static str,
        args: Vec<String>,
        op: String,
        reply: Responder<()>,
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
            Job::Append { reply, .. }
            | Job::Keep { reply, .. }
            | Job::Share { reply, .. }
            | Job::Settle { reply, .. } => drop(reply.send(Err(e))),
            Job::Claim { reply, .. } => drop(reply.send(Err(e))),
            Job::Depart => {}
        }
    }

    /// Answers with what Redis replied to the job's command.
    fn answer(self, value: Value) {
        match self {
            Job::Append { reply, .. }
            | Job::Keep { reply, .. }
            | Job::Share { reply, .. }
            | Job::Settle { reply, .. } => drop(reply.send(Ok(()))),
            Job::Claim { reply, .. } => drop(reply.send(Ok(key_state(value)))),
            Job::Depart => {}
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
    con: redis::Connection,
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
                            let _ = shard.unbounded_send(FromLog::Resync);
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
            let mut pipe = redis::pipe();
            for j in &batch {
                self.command(&mut pipe, scripts, j);
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
            Job::Share { field, mode, args, op, .. } => {
                let node = &self.node;
                let prefix = &self.keys.prefix;
                pipe.cmd("EVALSHA")
                    .arg(&shas.share)
                    .arg(4)
                    .arg(format!("{prefix}members:{node}:{field}"))
                    .arg(format!("{prefix}shares:{node}"))
                    .arg(format!("{prefix}counts:{node}"))
                    .arg(&self.keys.log)
                    .arg(field)
                    .arg(*mode)
                    .arg(self.max_entries)
                    .arg(op)
                    .arg(args);
            }
            Job::Keep { field, op, .. } => {
                pipe.cmd("EVALSHA")
                    .arg(&shas.keep)
                    .arg(2)
                    .arg(&self.keys.revocations)
                    .arg(&self.keys.log)
                    .arg(field)
                    .arg(self.max_entries)
                    .arg(op);
            }
            Job::Claim { key, ttl_ms, .. } => {
                pipe.cmd("EVALSHA").arg(&shas.claim).arg(1).arg(key).arg(*ttl_ms);
            }
            Job::Depart => {
                pipe.cmd("ZADD").arg(&self.keys.nodes).arg(0).arg(&self.node);
            }
            Job::Settle { key, body: Some(body), ttl_ms, .. } => {
                pipe.cmd("SET").arg(key).arg(body).arg("PX").arg(*ttl_ms);
            }
            Job::Settle { key, body: None, .. } => {
                pipe.cmd("DEL").arg(key);
            }
        }
    }

    fn connect(&self) -> redis::RedisResult<Connected> {
        let mut con = self.link.connect(self.link.timeout)?;
        let mut load = |script: &str| redis::cmd("SCRIPT").arg("LOAD").arg(script).query::<String>(&mut con);
        let scripts = Scripts {
            append: load(APPEND_SCRIPT)?,
            share: load(SHARE_SCRIPT)?,
            keep: load(KEEP_SCRIPT)?,
            claim: load(CLAIM_SCRIPT)?,
            heartbeat: load(HEARTBEAT_SCRIPT)?,
        };
        Ok(Connected { con, scripts })
    }

    /// This node's heartbeat, and the sweep of nodes whose heartbeats ran out.
    fn beat(&self, c: &mut Connected) -> redis::RedisResult<()> {
        // Heartbeats reach Redis at least every interval while any node is alive; a longer
        // silence from everyone is Redis's own outage.
        let outage = 2 * self.heartbeat.as_millis() as u64;
        let gone: Vec<String> = redis::cmd("EVALSHA")
            .arg(&c.scripts.heartbeat)
            .arg(3)
            .arg(&self.keys.nodes)
            .arg(&self.keys.log)
            .arg(&self.keys.beat)
            .arg(&self.node)
            .arg(self.node_timeout.as_millis() as u64)
            .arg(outage)
            .arg(self.max_entries)
            .arg(&self.keys.prefix)
            .query(&mut c.con)?;
        for node in gone {
            log::warn!(
                "backplane: node {node} missed its heartbeats for {:?}; its members are removed",
                self.node_timeout
            );
        }
        Ok(())
    }
}

/// The SHA1s of the scripts, loaded at each connect.
struct Scripts {
    append: String,
    share: String,
    keep: String,
    claim: String,
    heartbeat: String,
}

fn fail(batch: &mut Vec<Job>, why: &str) {
    batch.drain(..).for_each(|j| j.fail(why));
}
