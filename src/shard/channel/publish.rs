//! The publish operation on the owner: the message gets its place in the stream (unless
//! ephemeral), is encoded once per encoding, is appended to the store when history is on, and
//! is delivered by `release` once the append is written (see `commit`).

use super::broadcast::{Broadcast, ChannelEvent, Deliver, EventData};
use super::commit::{Append, Commit};
use super::stream::Kept;
use super::{is_presence, ChannelOp, ChannelState, Occupancy, OpFailure, Origin};
use crate::protocol::channel;
use crate::protocol::outbound::{self, Data, Encoding, Position};
use crate::shard::route::{CrossingError, Msg, Responder};
use crate::shard::Shard;
use crate::socket_id::SocketId;
use crate::time::unix_ms;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a cache channel keeps its last event (`docs/protocol/pusher.md#cache-channels`).
const CACHE_TTL: Duration = Duration::from_secs(3600);

impl Shard {
    /// Gives the event its place in the channel's stream (unless ephemeral) and builds every
    /// encoding once. With durable history the V2 frame is appended to the store and the
    /// message waits in the commit pipeline until the append is written; without, it is
    /// delivered at once.
    pub(super) fn publish(self: &Rc<Self>, op: ChannelOp, event: &ChannelEvent, reply: Responder<ChannelOp>) {
        let now = Instant::now();
        let ChannelOp { app, channel, exclude, origin, .. } = op;
        let commit = {
            let mut channels = self.channels.borrow_mut();
            let ch = channels.entry(app, &channel);
            // Deliveries must not pile up without bound behind a peer that has stopped reading:
            // refuse new work for it here, before the message takes a serial. The bound is
            // above anything a burst of admitted work causes (`Mesh::has_room_for_results`). A
            // refused client event is dropped and counted: client events are never acknowledged.
            let busy = ch.subscribed_shards().find(|&s| !self.mesh.has_room_for_results(s));
            if let Some(busy) = busy {
                drop(channels);
                self.counters(None).backlog_refusals.inc();
                log::debug!(shard = self.id, peer = busy; "publish refused: a subscribed shard is too far behind");
                reply.send(Err(OpFailure::Overloaded(CrossingError::Overloaded { shard: busy })));
                return;
            }
            let stream = &mut ch.stream;
            let place = (!event.ephemeral).then(|| stream.next_serial());
            let serial = place.map(|(s, _)| s);
            let message_id = event.message_id.clone().unwrap_or_else(outbound::uuid_v4);
            let data = match &event.data {
                EventData::Str(s) => Data::Str(s),
                EventData::Raw(r) => Data::Raw(r),
            };
            let user_id = event.user_id.as_deref();
            let pos = Position { message_id: &message_id, stream_id: &stream.id, serial };
            let message = Broadcast::new(serial, now, |e| {
                Arc::new(match e {
                    Encoding::V1Json => outbound::event(&event.name, Some(&channel), data, user_id),
                    Encoding::V2Json => {
                        outbound::v2_event(&event.name, &channel, data, user_id, pos, event.extras.as_deref())
                    }
                })
            });
            let v2 = message.payload(Encoding::V2Json).expect("every broadcast has a V2 form").clone();
            let append = match (self.store(), place) {
                (Some(store), Some((serial, epoch))) => {
                    let record = storage::HistoryRecord {
                        published_at_ms: unix_ms(),
                        message_id: message_id.clone(),
                        event_name: event.name.clone(),
                        payload: v2.to_vec(),
                    };
                    let app_id = &self.ctx.apps.get(app).id;
                    // Crosses to this shard's store thread; the answer comes back as a wake.
                    let ticket = store.append(app_id, &channel, &stream.id, serial, record);
                    // Only `always` holds the answer for the fsync; with `interval` and `os` the
                    // publish is acknowledged once written, and the documented loss bound on a
                    // power cut is what was not synced yet (tuning.md).
                    let durable =
                        (self.ctx.config.history.store.fsync == storage::Fsync::Always).then_some(ticket.durable);
                    Some(Append { serial, epoch, written: Some(ticket.written), durable })
                }
                _ => None,
            };
            let kept = serial.map(|serial| Kept { serial, at: now, message_id: message_id.as_str().into(), frame: v2 });
            let stream_id = stream.id.clone();
            Commit { app, channel, stream_id, append, message, kept, exclude, origin, reply }
        };
        if commit.append.is_none() && self.pipeline.is_idle() {
            self.release(commit, Ok(()));
        } else {
            self.pipeline.push(commit);
        }
    }

    /// Delivers a message whose append was written (or that needs none): it becomes the stream
    /// head, joins the replay buffer, updates a cache channel and fans out. A failed append
    /// is not delivered and gives its serial back.
    pub(super) fn release(&self, c: Commit, written: Result<(), storage::StorageError>) {
        let Commit { app, channel, stream_id, append, message, kept, exclude, origin, reply } = c;
        let mut channels = self.channels.borrow_mut();
        let ch = channels.entry(app, &channel);
        // A message of a stream an operator has since reset is still delivered (it was
        // accepted), but it is no part of the new stream's serials or buffer.
        let same_stream = ch.stream.id == stream_id;
        if let Err(e) = written {
            if let Some(a) = append.as_ref().filter(|_| same_stream) {
                ch.stream.take_back(a.serial, a.epoch);
            }
            log::error!("shard {}: publish to {channel} failed: {e}", self.id);
            reply.send(Err(OpFailure::Storage(failure_text(&e))));
            return;
        }
        if let Some(kept) = kept.filter(|_| same_stream) {
            ch.stream.remember(kept, self.ctx.config.replay_window);
        }
        if channel::channel_type(&channel).cache && origin == Origin::Http {
            ch.cache = Some((message.clone(), Instant::now() + CACHE_TTL));
        }
        self.fan_out(ch, app, &channel, &message, exclude);
        let occupancy = ch.occupancy(is_presence(&channel));
        drop(channels);
        match append.and_then(|a| a.durable) {
            Some(durable) if reply.is_wanted() => self.pipeline.push_ack(durable, reply, occupancy),
            _ => reply.send(Ok(occupancy)),
        }
    }

    /// Sends `message` to every shard with local subscribers of the channel (this one too,
    /// through its own queue, so the order is the same for every shard).
    pub(super) fn fan_out(
        &self,
        ch: &ChannelState,
        app: crate::config::AppIdx,
        channel: &Arc<str>,
        message: &Broadcast,
        exclude: Option<SocketId>,
    ) {
        for shard in ch.subscribed_shards() {
            let deliver = Deliver { app, channel: channel.clone(), message: message.clone(), exclude };
            self.mesh.send(shard, Msg::Deliver(deliver));
        }
    }
}

/// What a storage failure tells the publisher.
pub fn failure_text(e: &storage::StorageError) -> String {
    format!("message not stored, not delivered: {e}")
}

/// Occupancy of a channel nobody is subscribed to.
pub(super) fn empty_occupancy(channel: &str) -> Occupancy {
    Occupancy { subscription_count: 0, user_count: is_presence(channel).then_some(0) }
}
