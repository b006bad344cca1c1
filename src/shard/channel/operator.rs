//! The operator's controls of a channel's durable history (`docs/protocol/v2.md#history-operator-endpoints`):
//! its state, a purge (rows removed, stream and serials kept) and a reset (a new stream id,
//! serials from 1). They run on the owner, which alone can change the stream, and reach its
//! store in order after every append already made. With several nodes a purge or reset is
//! appended to the cluster log and carried out by the owner on every node when the log brings
//! it back, in order with the channel's messages (`docs/architecture.md#several-nodes`).

use super::sequence::Waiter;
use super::stream::Stream;
use crate::backplane::{Append, Entry, HistoryChange, HistoryOp};
use crate::config::AppIdx;
use crate::protocol::outbound;
use crate::shard::route::{Request, Responder};
use crate::shard::Shard;
use crate::time::unix_ms;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use storage::{Purge, Purged, StorageError, StreamMeta};

/// Why a purge or reset was not made.
pub enum ChangeFailure {
    Storage(StorageError),
    /// The cluster log did not take it: not changed anywhere, as far as this node knows.
    Backplane(String),
}

impl From<StorageError> for ChangeFailure {
    fn from(e: StorageError) -> ChangeFailure {
        ChangeFailure::Storage(e)
    }
}

/// The stream as the owner and its store see it.
pub struct StreamView {
    pub stream_id: Arc<str>,
    /// The serial the next message will take.
    pub next_serial: u64,
    /// What the store retains (`None`: nothing was ever stored).
    pub stored: Option<StreamMeta>,
}

/// To the owner: the channel's stream and what its history retains.
pub struct HistoryState {
    pub app: AppIdx,
    pub channel: Arc<str>,
}

impl Request for HistoryState {
    type Reply = Result<StreamView, StorageError>;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let (stream_id, next_serial) = shard.stream_position(self.app, &self.channel);
        let Some(store) = shard.history_store(self.app) else {
            reply.send(Ok(StreamView { stream_id, next_serial, stored: None }));
            return;
        };
        let read = store.stream_meta(&shard.ctx.apps.get(self.app).id, &self.channel);
        crate::shard::spawn(shard, "history state", async move {
            reply.send(read.await.map(|stored| StreamView { stream_id, next_serial, stored }));
        });
    }
}

/// To the owner: replace the channel's stream by a new one, purging its history. Clients
/// holding positions in the old stream get `stream_reset` when they resume.
pub struct HistoryReset {
    pub app: AppIdx,
    pub channel: Arc<str>,
}

impl Request for HistoryReset {
    type Reply = Result<Purged, ChangeFailure>;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        if shard.history_store(self.app).is_none() {
            reply.send(Err(no_history()));
            return;
        }
        let new_id = outbound::uuid_v4();
        match shard.ctx.backplane.is_some() {
            true => shard.append_history(
                self.app,
                &self.channel,
                HistoryOp::Reset { stream_id: new_id },
                Waiter::Reset(reply),
            ),
            false => shard.reset_history(self.app, &self.channel, new_id.into(), reply),
        }
    }
}

/// To the owner: remove retained history by `mode`; the stream and its serials stay.
pub struct HistoryPurge {
    pub app: AppIdx,
    pub channel: Arc<str>,
    pub mode: Purge,
}

impl Request for HistoryPurge {
    type Reply = Result<Option<Purged>, ChangeFailure>;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        if shard.history_store(self.app).is_none() {
            reply.send(Err(no_history()));
            return;
        }
        match shard.ctx.backplane.is_some() {
            true => {
                let op = match self.mode {
                    Purge::All => HistoryOp::PurgeAll,
                    Purge::BeforeSerial(serial) => HistoryOp::PurgeBeforeSerial { serial },
                    Purge::BeforeTime(ms) => HistoryOp::PurgeBeforeTime { ms },
                };
                shard.append_history(self.app, &self.channel, op, Waiter::Purge(reply));
            }
            false => shard.purge_history(self.app, &self.channel, self.mode, reply),
        }
    }
}

fn no_history() -> ChangeFailure {
    ChangeFailure::Storage(StorageError::InvalidInput("durable history is not enabled".into()))
}

impl Shard {
    /// Replaces the channel's stream by `new_id`, purging its history.
    fn reset_history(
        self: &Rc<Self>,
        app: AppIdx,
        channel: &Arc<str>,
        new_id: Arc<str>,
        reply: Responder<HistoryReset>,
    ) {
        let Some(store) = self.history_store(app) else { return reply.send(Err(no_history())) };
        {
            let mut channels = self.channels.borrow_mut();
            let ch = channels.entry(app, channel);
            ch.stream = Stream::resume(new_id.clone(), 0);
            // The old stream's messages are gone, streaming or not.
            ch.open_streams = None;
        }
        self.messages.borrow_mut().forget_channel(app, channel);
        let reset = store.reset_stream(&self.ctx.apps.get(app).id, channel, &new_id);
        crate::shard::spawn(self, "history reset", async move { reply.send(reset.await.map_err(Into::into)) });
    }

    fn purge_history(self: &Rc<Self>, app: AppIdx, channel: &Arc<str>, mode: Purge, reply: Responder<HistoryPurge>) {
        let Some(store) = self.history_store(app) else { return reply.send(Err(no_history())) };
        if let Some(ch) = self.channels.borrow_mut().get_mut(app, channel) {
            let (now, now_ms) = (Instant::now(), unix_ms());
            ch.stream.forget(|k| match mode {
                Purge::All => false,
                Purge::BeforeSerial(serial) => k.serial >= serial,
                Purge::BeforeTime(ms) => now_ms.saturating_sub(now.duration_since(k.at).as_millis() as u64) >= ms,
            });
        }
        self.messages.borrow_mut().forget_channel(app, channel);
        let purge = store.purge_stream(&self.ctx.apps.get(app).id, channel, mode);
        crate::shard::spawn(self, "history purge", async move { reply.send(purge.await.map_err(Into::into)) });
    }

    /// Appends a purge or reset to the cluster log; it is carried out when the log brings it
    /// back (`apply_history`), and `waiter` answered then. An append that fails is answered
    /// at once.
    pub(super) fn append_history(self: &Rc<Self>, app: AppIdx, channel: &Arc<str>, op: HistoryOp, waiter: Waiter) {
        let Some(backplane) = self.ctx.backplane.clone() else { unreachable!("appended only with a backplane") };
        let token = self.sequenced.borrow_mut().wait_for(waiter);
        let change = HistoryChange {
            app: self.ctx.apps.get(app).id.clone(),
            channel: channel.to_string(),
            op,
            node: backplane.node_id().to_owned(),
            token,
        };
        // Crosses to the backplane's writer thread; the answer comes back as a wake.
        let appended = backplane.append(Append { entry: Entry::History(change), takes_serial: None });
        self.fail_unless_appended(appended, token);
    }

    /// Carries out a purge or reset the cluster log brought, as the node that took it would
    /// alone; that node answers the operator.
    pub(super) fn apply_history(self: &Rc<Self>, change: HistoryChange) {
        let Some(app) = self.ctx.apps.by_id(&change.app) else { return };
        let waiter = self.waiter(&change.node, change.token);
        let channel: Arc<str> = change.channel.into();
        let mode = match change.op {
            HistoryOp::Reset { stream_id } => {
                let reply = match waiter {
                    Some(Waiter::Reset(r)) => r,
                    _ => Responder::nobody(self),
                };
                return self.reset_history(app, &channel, stream_id.into(), reply);
            }
            HistoryOp::PresenceReset { stream_id } => {
                let reply = match waiter {
                    Some(Waiter::PresenceReset(r)) => r,
                    _ => Responder::nobody(self),
                };
                return self.reset_presence_log(app, &channel, stream_id.into(), reply);
            }
            HistoryOp::PurgeAll => Purge::All,
            HistoryOp::PurgeBeforeSerial { serial } => Purge::BeforeSerial(serial),
            HistoryOp::PurgeBeforeTime { ms } => Purge::BeforeTime(ms),
        };
        let reply = match waiter {
            Some(Waiter::Purge(r)) => r,
            _ => Responder::nobody(self),
        };
        self.purge_history(app, &channel, mode, reply);
    }
}

impl Shard {
    /// The channel's stream id and the serial its next message will take.
    fn stream_position(&self, app: AppIdx, channel: &Arc<str>) -> (Arc<str>, u64) {
        let mut channels = self.channels.borrow_mut();
        let stream = &channels.entry(app, channel).stream;
        (stream.id.clone(), stream.next_serial_to_assign())
    }
}
