//! Presence history on the owner (`docs/protocol/v2.md#presence-history`): each member
//! transition of a presence channel takes the next serial of the channel's presence stream and
//! is appended to the owner's store (under `storage::presence_stream`), where
//! `GET …/presence/history` reads it. Member events do not wait for the write; a transition the
//! store refuses gives its serial back and leaves the stream `degraded` until an operator resets
//! it, so a page never claims a continuity it does not have.

use super::operator::ChangeFailure;
use super::sequence::Waiter;
use super::stream::Stream;
use super::ChannelState;
use crate::backplane::HistoryOp;
use crate::config::AppIdx;
use crate::protocol::outbound;
use crate::protocol::presence_history::{event_json, Transition};
use crate::shard::route::{Request, Responder};
use crate::shard::Shard;
use crate::time::unix_ms;
use std::rc::Rc;
use std::sync::Arc;
use storage::{HistoryRecord, Purged, RecordKind, StorageError};

/// A presence channel's record of transitions. Its stream only numbers records: nothing is
/// delivered or buffered from it.
pub struct PresenceLog {
    pub stream: Stream,
    /// Transitions the store refused since the stream began.
    pub lost: u64,
}

impl PresenceLog {
    pub fn resume(id: Arc<str>, head: u64) -> PresenceLog {
        PresenceLog { stream: Stream::resume(id, head), lost: 0 }
    }

    fn fresh() -> PresenceLog {
        PresenceLog { stream: Stream::new(), lost: 0 }
    }
}

impl Shard {
    /// Records a transition of the presence channel `ch`, when presence history is on for it.
    pub(super) fn record_presence(
        self: &Rc<Self>,
        ch: &mut ChannelState,
        app: AppIdx,
        channel: &Arc<str>,
        t: Transition<'_>,
    ) {
        let a = self.ctx.apps.get(app);
        let Some(store) = self.history_store(app).filter(|_| self.ctx.config.presence_history.enabled) else { return };
        if !a.presence_history_allowed(channel) {
            return;
        }
        let log = ch.presence.get_or_insert_with(PresenceLog::fresh);
        let (serial, epoch) = log.stream.next_serial();
        let id = log.stream.id.clone();
        let published_at_ms = unix_ms();
        let record = HistoryRecord {
            published_at_ms,
            message_id: String::new(),
            event_name: t.event.name().to_owned(),
            payload: event_json(&id, serial, published_at_ms, &t),
            kind: RecordKind::Plain,
            tags: None,
        };
        let written = store.append(&a.id, &storage::presence_stream(channel), &id, serial, record).written;
        let (shard, channel) = (self.clone(), channel.clone());
        crate::shard::spawn(self, "presence record", async move {
            let Err(e) = written.await else { return };
            log::warn!("shard {}: presence event {serial} of {channel} was not recorded: {e}", shard.id);
            let mut channels = shard.channels.borrow_mut();
            let Some(log) = channels.get_mut(app, &channel).and_then(|ch| ch.presence.as_mut()) else { return };
            if log.stream.id == id {
                log.stream.take_back(serial, epoch);
                log.lost += 1;
            }
        });
    }
}

/// The presence stream as the owner knows it.
pub struct PresenceLogView {
    pub stream_id: Arc<str>,
    pub next_serial: u64,
    pub degraded: bool,
}

/// To the owner: the channel's presence stream.
pub struct PresenceLogState {
    pub app: AppIdx,
    pub channel: Arc<str>,
}

impl Request for PresenceLogState {
    type Reply = PresenceLogView;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let mut channels = shard.channels.borrow_mut();
        let log = channels.entry(self.app, &self.channel).presence.get_or_insert_with(PresenceLog::fresh);
        reply.send(PresenceLogView {
            stream_id: log.stream.id.clone(),
            next_serial: log.stream.next_serial_to_assign(),
            degraded: log.lost > 0,
        });
    }
}

/// To the owner: replace the channel's presence stream by a new one, purging its records.
pub struct PresenceLogReset {
    pub app: AppIdx,
    pub channel: Arc<str>,
}

impl Request for PresenceLogReset {
    type Reply = Result<Purged, ChangeFailure>;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let new_id = outbound::uuid_v4();
        match shard.ctx.backplane.is_some() && shard.history_store(self.app).is_some() {
            // Every node resets its presence history of the channel (`operator.rs`).
            true => {
                let op = HistoryOp::PresenceReset { stream_id: new_id };
                shard.append_history(self.app, &self.channel, op, Waiter::PresenceReset(reply));
            }
            false => shard.reset_presence_log(self.app, &self.channel, new_id.into(), reply),
        }
    }
}

impl Shard {
    pub(super) fn reset_presence_log(
        self: &Rc<Self>,
        app: AppIdx,
        channel: &Arc<str>,
        new_id: Arc<str>,
        reply: Responder<PresenceLogReset>,
    ) {
        let Some(store) = self.history_store(app) else {
            let disabled = StorageError::InvalidInput("durable history is not enabled".into());
            return reply.send(Err(ChangeFailure::Storage(disabled)));
        };
        // `resume`: the reset makes the new id the store's.
        let log = PresenceLog::resume(new_id.clone(), 0);
        self.channels.borrow_mut().entry(app, channel).presence = Some(log);
        let reset = store.reset_stream(&self.ctx.apps.get(app).id, &storage::presence_stream(channel), &new_id);
        crate::shard::spawn(self, "presence history reset", async move { reply.send(reset.await.map_err(Into::into)) });
    }
}
