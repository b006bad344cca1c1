//! The publish operation on the owner: the message gets its place in the stream (unless
//! ephemeral), is encoded once per encoding, is appended to the store when history is on, and
//! is delivered by `release` once the append is written (see `commit`).

use super::broadcast::{Broadcast, ChannelEvent, Deliver, DeltaKey, EventData};
use super::commit::{message_write_failure, Append, Commit, Step, VersionCommit};
use super::stream::Kept;
use super::{is_presence, ChannelOp, ChannelState, Done, Occupancy, OpFailure, Origin, Rejection};
use crate::protocol::filter::Attrs;
use crate::protocol::outbound::{self, Data, Position};
use crate::protocol::{channel, versioned, wildcard};
use crate::shard::route::{CrossingError, Msg, Responder};
use crate::shard::Shard;
use crate::socket_id::SocketId;
use crate::time::unix_ms;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{VersionAction, VersionData, VersionRecord, VersionWrite};

/// How long a cache channel keeps its last event (`docs/protocol/pusher.md#cache-channels`).
const CACHE_TTL: Duration = Duration::from_secs(3600);

impl Shard {
    /// Gives the event its place in the channel's stream (unless ephemeral) and builds every
    /// encoding once. With durable history the V2 frame is appended to the store and the
    /// message waits in the commit pipeline until the append is written; without, it is
    /// delivered at once. `placed`: the cluster log already gave it its place (and its publish
    /// time, in ms), and the stream was made ready for it (`sequence.rs`); it is carried out
    /// whatever this node's backlog, like every node does.
    pub(super) fn publish(
        self: &Rc<Self>,
        op: ChannelOp,
        event: &ChannelEvent,
        reply: Responder<ChannelOp>,
        placed: Option<u64>,
    ) {
        let now = Instant::now();
        let ChannelOp { app, channel, exclude, origin, .. } = op;
        let commit = {
            let mut channels = self.channels.borrow_mut();
            let ch = channels.entry(app, &channel);
            // Deliveries must not pile up without bound behind a peer that has stopped reading:
            // refuse new work for it here, before the message takes a serial. The bound is
            // above anything a burst of admitted work causes (`Mesh::has_room_for_results`). A
            // refused client event is dropped and counted: client events are never acknowledged.
            let busy = ch.subscribed_shards().find(|&s| placed.is_none() && !self.mesh.has_room_for_results(s));
            if let Some(busy) = busy {
                drop(channels);
                self.counters(None).backlog_refusals.inc();
                log::debug!(shard = self.id, peer = busy; "publish refused: a subscribed shard is too far behind");
                reply.send(Err(OpFailure::Overloaded(CrossingError::Overloaded { shard: busy })));
                return;
            }
            // With versioned messages every stored HTTP publish is a mutable message's create:
            // its frame carries the reserved headers and its ack the serials that name it.
            let versioned = origin == Origin::Http && self.ctx.config.versioned.enabled;
            let ai = &self.ctx.config.ai_transport;
            let store = self.history_store(app);
            let opens_stream =
                event.opens_stream && versioned && !event.ephemeral && store.is_some() && ai.is_ai_channel(&channel);
            if opens_stream && placed.is_none() {
                if let Err(e) = ch.admit_stream(ai, None, now) {
                    drop(channels);
                    reply.send(Err(OpFailure::Rejected(Rejection::ai(e))));
                    return;
                }
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
            let now_ms = placed.unwrap_or_else(unix_ms);
            let create = match (store, place) {
                (Some(_), Some((serial, _))) if versioned => Some(versioned::Ack::create(serial, &stream.id)),
                _ => None,
            };
            let extras = match &create {
                Some(ack) => Some(versioned::extras_with_headers(event.extras.as_deref(), &ack.headers(now_ms))),
                None => event.extras.clone(),
            };
            let pos = Position { message_id: &message_id, stream_id: &stream.id, serial };
            let v1 = Arc::new(outbound::event(&event.name, Some(&channel), data, user_id));
            let tags = event.tags.as_ref().map(|t| t.to_json());
            let per_channel = self.ctx.apps.get(app).channel_delta(&channel);
            let deliver_tags =
                per_channel.and_then(|d| d.enable_tags).unwrap_or(self.ctx.config.filtering.deliver_tags);
            let shown_tags = tags.as_deref().filter(|_| deliver_tags);
            let v2 =
                Arc::new(outbound::v2_event(&event.name, &channel, data, user_id, shown_tags, pos, extras.as_deref()));
            let attrs = Some(Arc::new(Attrs { event: event.name.as_str().into(), tags: event.tags.clone() }));
            let mut message = Broadcast::new(serial, now, Some(v1), v2.clone()).with_attrs(attrs.clone());
            let delta = &self.ctx.config.delta;
            // Never for encrypted channels (the payload is ciphertext) or small messages.
            if delta.enabled
                && per_channel.is_none_or(|d| d.enabled)
                && !event.no_delta
                && v2.len() >= delta.min_message_size
                && !channel::channel_type(&channel).encrypted
            {
                let raw = match &event.data {
                    EventData::Str(s) | EventData::Raw(s) => s.as_str(),
                };
                let conflation = per_channel.and_then(|d| d.conflation_value(raw));
                message.delta = Some(Arc::new(DeltaKey {
                    key: match &conflation {
                        Some(c) => format!("{}:{c}", event.name).into(),
                        None => event.name.as_str().into(),
                    },
                    event: event.name.as_str().into(),
                    conflation: conflation.map(Into::into),
                    max_keys: per_channel.map_or(1000, |d| d.max_conflation_keys),
                    stream: serial.map(|n| (stream.id.clone(), n)),
                }));
            }
            let append = match (store, place) {
                (Some(store), Some((serial, epoch))) => {
                    let mut record = storage::HistoryRecord {
                        published_at_ms: now_ms,
                        message_id: message_id.clone(),
                        event_name: event.name.clone(),
                        payload: v2.to_vec(),
                        kind: storage::RecordKind::Plain,
                        tags,
                    };
                    let app_id = &self.ctx.apps.get(app).id;
                    // Crosses to this shard's store thread; the answer comes back as a wake.
                    let ticket = match create {
                        Some(_) => {
                            record.kind = storage::RecordKind::VersionedCreate;
                            let write = create_version(event, &message_id, serial, now_ms);
                            store.append_version(app_id, &channel, &stream.id, serial, record, write)
                        }
                        None => store.append(app_id, &channel, &stream.id, serial, record),
                    };
                    // Only `always` holds the answer for the fsync; with `interval` and `os` the
                    // publish is acknowledged once written, and the documented loss bound on a
                    // power cut is what was not synced yet (tuning.md).
                    let durable =
                        (self.ctx.config.history.store.fsync == storage::Fsync::Always).then_some(ticket.durable);
                    Some(Append { serial, epoch, written: Some(ticket.written), durable })
                }
                _ => None,
            };
            let kept = serial.map(|serial| Kept { attrs, ..Kept::new(serial, now, message_id.as_str().into(), v2) });
            let version = create.map(|ack| VersionCommit { ack, message: None, op_id: None });
            let stream_id = stream.id.clone();
            if let (true, Some(serial)) = (opens_stream, serial) {
                ch.track_stream(serial, true, now);
            }
            Commit { app, channel, stream_id, append, message, kept, version, exclude, origin, reply, rollup: None }
        };
        if commit.append.is_none() && self.pipeline.is_idle() {
            self.release(commit, Ok(()));
        } else {
            self.pipeline.push(Step::Message(commit));
        }
    }

    /// Delivers a message whose append was written (or that needs none): it becomes the stream
    /// head, joins the replay buffer, updates a cache channel and fans out. A failed append
    /// is not delivered and gives its serial back.
    pub(super) fn release(self: &Rc<Self>, c: Commit, written: Result<(), storage::StorageError>) {
        let Commit { app, channel, stream_id, append, message, kept, version, exclude, origin, reply, rollup } = c;
        let mut channels = self.channels.borrow_mut();
        let ch = channels.entry(app, &channel);
        // A message of a stream an operator has since reset is still delivered (it was
        // accepted), but it is no part of the new stream's serials or buffer.
        let same_stream = ch.stream.id == stream_id;
        if let Err(e) = written {
            if let Some(a) = append.as_ref().filter(|_| same_stream) {
                ch.stream.take_back(a.serial, a.epoch);
            }
            drop(channels);
            log::error!("shard {}: publish to {channel} failed: {e}", self.id);
            let failure = match version.and_then(|v| v.message) {
                Some(key) => {
                    // The held state counted this mutation in: read it again next time.
                    self.messages.borrow_mut().forget(&key);
                    message_write_failure(e)
                }
                None => OpFailure::Storage(failure_text(&e)),
            };
            reply.send(Err(failure));
            return;
        }
        if let Some(kept) = kept.filter(|_| same_stream) {
            ch.stream.remember(kept, self.ctx.apps.get(app).replay_window(self.ctx.config.replay_window));
        }
        if channel::channel_type(&channel).cache && origin == Origin::Http {
            ch.cache = Some((message.clone(), Instant::now() + CACHE_TTL));
        }
        match rollup {
            Some(part) => self.fan_out_append(ch, app, &channel, message, part),
            None => self.fan_out(ch, app, &channel, &message, exclude),
        }
        let occupancy = ch.occupancy(is_presence(&channel));
        drop(channels);
        let version = version.map(|v| {
            if let (Some(key), Some(op_id)) = (&v.message, &v.op_id) {
                self.messages.borrow_mut().committed(key, v.ack.action, op_id);
            }
            v.ack
        });
        let done = Done { occupancy, version };
        self.answer_when_durable(append.and_then(|a| a.durable), reply, done, "message");
    }

    /// Sends `message` to every shard with local subscribers of the channel, after what the
    /// channel's rollup window holds (`rollup.rs`).
    pub(super) fn fan_out(
        &self,
        ch: &mut ChannelState,
        app: crate::config::AppIdx,
        channel: &Arc<str>,
        message: &Broadcast,
        exclude: Option<SocketId>,
    ) {
        self.flush_rollup(ch, app, channel);
        self.send_to_subscribers(ch, app, channel, message, exclude);
    }

    /// Sends `message` to every shard with local subscribers of the channel, or with
    /// wildcard subscribers of a pattern that matches it (this shard too, through its own
    /// queue, so the order is the same for every shard).
    pub(super) fn send_to_subscribers(
        &self,
        ch: &ChannelState,
        app: crate::config::AppIdx,
        channel: &Arc<str>,
        message: &Broadcast,
        exclude: Option<SocketId>,
    ) {
        let send = |shard| {
            let deliver = Deliver { app, channel: channel.clone(), message: message.clone(), exclude };
            self.mesh.send(shard, Msg::Deliver(deliver));
        };
        let patterns = self.patterns.borrow();
        if !patterns.any(app) || message.annotations_only || !wildcard::matchable(channel) {
            ch.subscribed_shards().for_each(send);
            return;
        }
        let mut to = vec![false; self.shards];
        ch.subscribed_shards().for_each(|s| to[s] = true);
        patterns.mark_matching(app, channel, &mut to);
        to.iter().enumerate().filter(|(_, &yes)| yes).for_each(|(s, _)| send(s));
    }
}

/// The create's version: the message as published.
fn create_version(event: &ChannelEvent, message_id: &str, serial: u64, now_ms: u64) -> VersionWrite {
    let data = match &event.data {
        EventData::Str(s) => VersionData::Text(s.clone()),
        EventData::Raw(r) => VersionData::Json(r.clone()),
    };
    let record = VersionRecord {
        action: VersionAction::Create,
        delivery_serial: serial,
        timestamp_ms: now_ms,
        message_id: message_id.to_owned(),
        name: Some(event.name.clone()),
        data,
        extras: event.extras.clone(),
        user_id: event.user_id.as_deref().map(str::to_owned),
        client_id: event.creator.as_deref().map(str::to_owned),
        description: None,
        metadata: None,
    };
    VersionWrite { message: serial, record, receipt: None }
}

/// What a storage failure tells the publisher.
pub fn failure_text(e: &storage::StorageError) -> String {
    format!("message not stored, not delivered: {e}")
}

/// Occupancy of a channel nobody is subscribed to.
pub(super) fn empty_occupancy(channel: &str) -> Occupancy {
    Occupancy { subscription_count: 0, user_count: is_presence(channel).then_some(0) }
}
