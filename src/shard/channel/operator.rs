//! The operator's controls of a channel's durable history (`docs/protocol/v2.md#history-operator-endpoints`):
//! its state, a purge (rows removed, stream and serials kept) and a reset (a new stream id,
//! serials from 1). They run on the owner, which alone can change the stream, and reach its
//! store in order after every append already made.

use super::stream::Stream;
use crate::config::AppIdx;
use crate::protocol::outbound;
use crate::shard::route::{Request, Responder};
use crate::shard::Shard;
use crate::time::unix_ms;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use storage::{Purge, Purged, StorageError, StreamMeta};

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
    type Reply = Result<Purged, StorageError>;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let Some(store) = shard.history_store(self.app) else {
            reply.send(Err(StorageError::InvalidInput("durable history is not enabled".into())));
            return;
        };
        let new_id: Arc<str> = outbound::uuid_v4().into();
        {
            let mut channels = shard.channels.borrow_mut();
            let ch = channels.entry(self.app, &self.channel);
            ch.stream = Stream::resume(new_id.clone(), 0);
            // The old stream's messages are gone, streaming or not.
            ch.open_streams = None;
        }
        shard.messages.borrow_mut().forget_channel(self.app, &self.channel);
        let reset = store.reset_stream(&shard.ctx.apps.get(self.app).id, &self.channel, &new_id);
        crate::shard::spawn(shard, "history reset", async move { reply.send(reset.await) });
    }
}

/// To the owner: remove retained history by `mode`; the stream and its serials stay.
pub struct HistoryPurge {
    pub app: AppIdx,
    pub channel: Arc<str>,
    pub mode: Purge,
}

impl Request for HistoryPurge {
    type Reply = Result<Option<Purged>, StorageError>;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let Some(store) = shard.history_store(self.app) else {
            reply.send(Err(StorageError::InvalidInput("durable history is not enabled".into())));
            return;
        };
        if let Some(ch) = shard.channels.borrow_mut().get_mut(self.app, &self.channel) {
            let (now, now_ms) = (Instant::now(), unix_ms());
            ch.stream.forget(|k| match self.mode {
                Purge::All => false,
                Purge::BeforeSerial(serial) => k.serial >= serial,
                Purge::BeforeTime(ms) => now_ms.saturating_sub(now.duration_since(k.at).as_millis() as u64) >= ms,
            });
        }
        shard.messages.borrow_mut().forget_channel(self.app, &self.channel);
        let purge = store.purge_stream(&shard.ctx.apps.get(self.app).id, &self.channel, self.mode);
        crate::shard::spawn(shard, "history purge", async move { reply.send(purge.await) });
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
