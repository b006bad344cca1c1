//! The owner's side of durable history: opening the per-shard stores before the shards start,
//! loading each store's streams, and the commit pipeline that puts every stored message in
//! order between its append and its delivery.
//!
//! A message is fanned out only once its append is `written` (handed to the OS: a process kill
//! cannot take back anything a subscriber saw). The HTTP publish is answered then too, except
//! with `fsync = "always"`, where the answer waits until the append is synced to disk. Both waits are FIFO queues served by one
//! task each, because the store answers appends in the order they were made: one queue keeps
//! every channel's messages in serial order without a per-channel structure.

use super::call::{answer, ReplyTo};
use super::msg::{Broadcast, Occupancy, Reply};
use super::stream::{Kept, Stream};
use super::Shard;
use crate::apps::{AppIdx, Registry};
use crate::config::Config;
use crate::socket_id::SocketId;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fs::File;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use storage::{StorageError, Store};

/// The stores of every shard, opened before the shards start, and the lock that keeps a second
/// server off the same data directory.
pub struct Stores {
    pub by_shard: Vec<Store>,
    _lock: File,
}

impl Stores {
    /// Opens `<data_dir>/shard-0..N`, moving streams whose owner changed with the shard count.
    /// `None` when history is disabled.
    pub fn open(config: &Config, apps: &Registry) -> Result<Option<Stores>, String> {
        let h = &config.history;
        if !h.enabled {
            return Ok(None);
        }
        let dir = &h.data_dir;
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
        let lock = lock_dir(dir)?;
        let shards = config.shards;
        let owner = |app_id: &str, channel: &str| match apps.by_id(app_id) {
            Some(idx) => super::owner_of_channel(idx, channel, shards),
            // History of an app no longer configured stays where it is, unread.
            None => super::owner_of_channel(AppIdx::MAX, channel, shards),
        };
        let by_shard = storage::open_all(dir, shards, owner, &h.store).map_err(|e| e.to_string())?;
        Ok(Some(Stores { by_shard, _lock: lock }))
    }
}

/// Two servers writing one store would corrupt it; the second one is refused at start.
fn lock_dir(dir: &std::path::Path) -> Result<File, String> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let file = File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own; the lock lives as long as the file.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!("data dir {} is in use by another sockudo process", dir.display()));
    }
    Ok(file)
}

/// A message waiting for its append to be written before it is delivered.
pub(super) struct Commit {
    pub app: AppIdx,
    pub channel: Arc<str>,
    /// `None` for messages that are not stored (ephemeral): they wait only for those ahead.
    pub append: Option<Append>,
    pub message: Broadcast,
    pub kept: Option<Kept>,
    pub exclude: Option<SocketId>,
    pub from_http: bool,
    pub reply_to: Option<ReplyTo>,
}

pub(super) struct Append {
    pub serial: u64,
    pub epoch: u64,
    pub written: Option<storage::Reply<()>>,
    pub durable: Option<storage::Reply<()>>,
}

/// An HTTP publish delivered and waiting for its append's fsync (`always`) before it is
/// answered.
struct Ack {
    durable: Option<storage::Reply<()>>,
    reply_to: ReplyTo,
    occupancy: Occupancy,
}

/// A FIFO of entries each waiting for one store completion, served by one task: the store
/// answers in the order requests were made, so awaiting the front entry only is enough.
struct Fifo<T> {
    queue: RefCell<VecDeque<T>>,
    waiter: Cell<Option<Waker>>,
}

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo { queue: RefCell::new(VecDeque::new()), waiter: Cell::new(None) }
    }
}

impl<T> Fifo<T> {
    fn push(&self, entry: T) {
        self.queue.borrow_mut().push_back(entry);
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }

    /// Waits for an entry, then for the completion `take` hands out of it (none: at once),
    /// and removes the entry. The entry stays queued while it waits, so `Pipeline::is_idle`
    /// sees it.
    async fn next(&self, take: impl Fn(&mut T) -> Option<storage::Reply<()>>) -> (T, Result<(), StorageError>) {
        let completion = poll_fn(|cx| match self.queue.borrow_mut().front_mut() {
            Some(entry) => Poll::Ready(take(entry)),
            None => {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        let outcome = match completion {
            Some(c) => c.await,
            None => Ok(()),
        };
        (self.queue.borrow_mut().pop_front().expect("the entry just awaited"), outcome)
    }
}

#[derive(Default)]
pub(super) struct Pipeline {
    commits: Fifo<Commit>,
    acks: Fifo<Ack>,
}

impl Pipeline {
    /// Nothing is waiting: a message that needs no append may be delivered at once.
    pub fn is_idle(&self) -> bool {
        self.commits.queue.borrow().is_empty()
    }

    pub fn push(&self, c: Commit) {
        self.commits.push(c);
    }

    pub fn push_ack(&self, durable: storage::Reply<()>, reply_to: ReplyTo, occupancy: Occupancy) {
        self.acks.push(Ack { durable: Some(durable), reply_to, occupancy });
    }
}

/// Wall-clock milliseconds: publish times in history and idempotency expiries.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What a storage failure tells the publisher.
pub fn failure_text(e: &StorageError) -> String {
    format!("message not stored, not delivered: {e}")
}

impl Shard {
    /// Loads the streams this shard's store holds, so serials and stream ids continue after a
    /// restart. Runs before the shard accepts connections.
    pub(super) async fn load_streams(&self) -> Result<(), StorageError> {
        let Some(store) = self.store() else { return Ok(()) };
        let streams = store.load_streams().await?;
        let mut owned = self.owned.borrow_mut();
        let mut unknown = 0;
        for (app_id, channel, meta) in streams {
            match self.ctx.apps.by_id(&app_id) {
                Some(app) => owned.insert_stream(app, channel.into(), { let head = meta.newest_serial(); Stream::resume(meta.stream_id.into(), head) }),
                None => unknown += 1,
            }
        }
        if unknown > 0 {
            log::info!("shard {}: {unknown} stored channel streams belong to apps not configured; kept, unread", self.id);
        }
        Ok(())
    }

    /// This shard's store, when history is enabled.
    pub(super) fn store(&self) -> Option<&Store> {
        self.ctx.stores.as_ref().map(|s| &s.by_shard[self.id])
    }

    /// The store holding `channel`'s history (its owner's), when history is enabled. Reads go
    /// to it directly from any shard: the store thread serves them, not the owner's executor.
    pub fn owner_store(&self, app: AppIdx, channel: &str) -> Option<&Store> {
        self.ctx.stores.as_ref().map(|s| &s.by_shard[self.channel_owner(app, channel)])
    }

    /// Delivers commits in order as their appends are written.
    pub(super) async fn committer(self: Rc<Self>) {
        loop {
            let (commit, outcome) = self.pipeline.commits.next(|c| c.append.as_mut().and_then(|a| a.written.take())).await;
            self.release(commit, outcome);
        }
    }

    /// Answers HTTP publishes in order as their appends become durable.
    pub(super) async fn acker(self: Rc<Self>) {
        loop {
            let (ack, outcome) = self.pipeline.acks.next(|a| a.durable.take()).await;
            let reply = match outcome {
                Ok(()) => Reply::Published(ack.occupancy),
                Err(e) => {
                    log::error!("shard {}: a delivered message did not reach its fsync: {e}", self.id);
                    Reply::Failed(format!("message delivered but not synced to disk: {e}"))
                }
            };
            answer(&self, ack.reply_to, reply);
        }
    }
}
