//! A reader thread: follows one part of the cluster log with `XREAD BLOCK` from the last entry
//! it handed over and gives each entry to the owner shard of its channel on this node (one
//! queue per shard, so per-channel order is the log's); at its first connect, the snapshot of
//! every node's share of the part's channels first.

use super::scripts::SNAPSHOT_SCRIPT;
use super::{Backoff, Con, Link, PartKeys, Shared, Side};
use crate::backplane::{Entry, FromLog, LogPart, Placed, Share, ShareChange};
use futures_channel::mpsc;
use redis::Value;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Most entries read per `XREAD`.
const READ_COUNT: usize = 512;

/// How long one `XREAD` blocks: a dead connection is noticed within this plus the timeout.
const READ_BLOCK_MS: u64 = 1000;

pub(super) struct Reader {
    pub(super) link: Link,
    pub(super) part: LogPart,
    pub(super) keys: PartKeys,
    pub(super) shared: Arc<Shared>,
    pub(super) inboxes: Vec<mpsc::UnboundedSender<FromLog>>,
    pub(super) owner: Arc<Owner>,
    /// Told once the first snapshot is handed over (`RedisLog::start` waits for every part's).
    pub(super) ready: Option<crossbeam_channel::Sender<()>>,
}

/// Places a channel (app id, name) on one of this node's shards.
pub(super) type Owner = dyn Fn(&str, &str) -> usize + Send + Sync;

impl Reader {
    pub(super) fn run(mut self) {
        // The id of the last entry handed to a shard; `None` until the reader first reaches
        // Redis, when it starts where the snapshot of every node's share stands: what this
        // node missed of channels' messages before it joined, it learns as the gap in each
        // channel's serials.
        let mut last: Option<String> = None;
        let mut backoff = Backoff::new();
        loop {
            let read_timeout = Duration::from_millis(READ_BLOCK_MS) + self.link.timeout;
            let joined = self.link.connect(read_timeout).and_then(|mut con| {
                let from = match last.take() {
                    Some(id) => id,
                    None => self.snapshot(&mut con)?,
                };
                Ok((con, from))
            });
            let side = Side::Reader(self.part.index);
            let failed = match joined {
                Ok((mut con, from)) => {
                    let from = last.insert(from);
                    self.follow(&mut con, from, &mut backoff)
                }
                Err(e) => e,
            };
            self.shared.report(side, false, &self.link.url, &failed);
            std::thread::sleep(backoff.step());
        }
    }

    /// Hands every node's share of every channel of the part to the channels' owners, and
    /// returns the id of the part's newest entry at that instant (`0-0` for an empty log).
    fn snapshot(&mut self, con: &mut Con) -> redis::RedisResult<String> {
        let reply: Value = con.query(
            redis::cmd("EVAL")
                .arg(SNAPSHOT_SCRIPT)
                .arg(3)
                .arg(&self.keys.sharers)
                .arg(&self.keys.log)
                .arg(&self.keys.kept)
                .arg(&self.keys.prefix),
        )?;
        let Value::Array(parts) = reply else { return Ok("0-0".to_owned()) };
        let mut parts = parts.into_iter();
        let last = parts.next().and_then(|v| text(&v)).unwrap_or_else(|| "0-0".to_owned());
        // Revocations still in force, carried out by shard 0 as if another node had just
        // appended them.
        if let Some(Value::Array(kept)) = parts.next() {
            for entry in kept.iter().filter_map(text) {
                if let Ok(Entry::Nodes(action)) = sonic_rs::from_str::<Entry>(&entry) {
                    let _ = self.inboxes[0].unbounded_send(FromLog::Nodes(action));
                }
            }
        }
        let mut shares = 0;
        for part in parts {
            let Value::Array(p) = part else { continue };
            let [node, field, count, Value::Array(members)] = p.as_slice() else { continue };
            let (Some(node), Some(field), Some(count)) = (text(node), text(field), text(count)) else { continue };
            let Some((app, channel)) = field.split_once('\n') else { continue };
            let members = members.chunks(2).filter_map(|kv| Some((text(kv.first()?)?, text(kv.get(1)?)?))).collect();
            let change = ShareChange::Sync { n: count.parse().unwrap_or(0), members };
            let share = Share { app: app.to_owned(), channel: channel.to_owned(), node, change };
            let _ = self.inboxes[(self.owner)(app, channel)].unbounded_send(FromLog::Share(share));
            shares += 1;
        }
        log::info!(
            "backplane: joined part {} of the log at entry {last} with {shares} channel shares of other nodes",
            self.part.index
        );
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(());
        }
        Ok(last)
    }

    /// Reads the log from after `last` until the connection fails; returns why it failed. The
    /// link counts as up once a read succeeds (a Redis Cluster may take a connection while the
    /// part's slot has no live node).
    fn follow(&self, con: &mut Con, last: &mut String, backoff: &mut Backoff) -> redis::RedisError {
        let mut read_once = false;
        loop {
            let read = con.query::<Value>(
                redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(READ_COUNT)
                    .arg("BLOCK")
                    .arg(READ_BLOCK_MS)
                    .arg("STREAMS")
                    .arg(&self.keys.log)
                    .arg(&*last),
            );
            let reply = match read {
                Ok(reply) => reply,
                Err(e) => return e,
            };
            if !read_once {
                read_once = true;
                self.shared.report(Side::Reader(self.part.index), true, &self.link.url, &"");
                *backoff = Backoff::new();
            }
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
            Some(Entry::Share(share)) => ((self.owner)(&share.app, &share.channel), FromLog::Share(share)),
            Some(Entry::History(change)) => ((self.owner)(&change.app, &change.channel), FromLog::History(change)),
            Some(Entry::Annotate(a)) => ((self.owner)(&a.app, &a.channel), FromLog::Annotate(a)),
            Some(Entry::Mutate(m)) => {
                ((self.owner)(&m.app, &m.channel), FromLog::Mutate(Placed { stream_id, serial, intent: m }))
            }
            Some(Entry::Gone { node, by }) => {
                for inbox in &self.inboxes {
                    let gone = FromLog::Gone { node: node.clone(), by: by.clone(), part: self.part };
                    let _ = inbox.unbounded_send(gone);
                }
                return;
            }
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

/// A bulk string's text.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
