//! The channels this shard owns: their global truth (how many subscribers each shard has,
//! presence members, the cache channel's last event) and the handlers of requests about them.
//! Only the owner changes this state; other shards ask through the mesh.

use super::call::{answer, ReplyTo};
use super::durable::{failure_text, unix_ms, Append, Commit};
use super::msg::{Broadcast, ChannelEvent, EventData, Msg, Occupancy, Recovery, Reply, ResumeFailure};
use super::stream::{Kept, ReplayGap, Stream};
use super::Shard;
use crate::apps::AppIdx;
use crate::protocol::channel::{self, Kind};
use crate::protocol::inbound::{Member, ResumePosition};
use crate::protocol::outbound::{self, Data, Dialect, Position};
use crate::protocol::ProtocolError;
use crate::socket_id::SocketId;
use ahash::{AHashMap, RandomState};
use indexmap::IndexMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a cache channel keeps its last event (spec 01 §6.4).
const CACHE_TTL: Duration = Duration::from_secs(3600);

struct MemberEntry {
    /// `user_info` JSON as given by the member's first socket.
    info: String,
    /// Sockets of this user in the channel, across all shards.
    sockets: u32,
}

#[derive(Default)]
pub struct OwnedChannel {
    /// Local subscriber count of each shard.
    per_shard: Vec<u32>,
    total: u64,
    /// Presence members in join order.
    members: IndexMap<Arc<str>, MemberEntry, RandomState>,
    cache: Option<(Broadcast, Instant)>,
}

impl OwnedChannel {
    fn occupancy(&self, presence: bool) -> Occupancy {
        Occupancy { subscription_count: self.total, user_count: presence.then_some(self.members.len() as u64) }
    }

    fn live_cache(&self, now: Instant) -> Option<&(Broadcast, Instant)> {
        self.cache.as_ref().filter(|(_, exp)| *exp > now)
    }

    fn is_idle(&self, now: Instant) -> bool {
        self.total == 0 && self.members.is_empty() && self.live_cache(now).is_none()
    }
}

#[derive(Default)]
pub struct Owned {
    /// Per app: channel -> state.
    channels: Vec<AHashMap<Arc<str>, OwnedChannel>>,
    /// Per app: channel -> its stream. Kept while the channel is idle: serials continue.
    streams: Vec<AHashMap<Arc<str>, Stream>>,
}

impl Owned {
    pub fn new(apps: usize) -> Owned {
        Owned {
            channels: (0..apps).map(|_| AHashMap::default()).collect(),
            streams: (0..apps).map(|_| AHashMap::default()).collect(),
        }
    }

    fn stream(&mut self, app: AppIdx, channel: &Arc<str>) -> &mut Stream {
        self.streams[app as usize].entry(channel.clone()).or_insert_with(Stream::new)
    }

    pub(super) fn insert_stream(&mut self, app: AppIdx, channel: Arc<str>, stream: Stream) {
        self.streams[app as usize].insert(channel, stream);
    }
}

/// A presence member event in both dialects.
fn member_event(channel: &str, user_id: &str, added: Option<&str>) -> Broadcast {
    let make = |d| match added {
        Some(info) => outbound::member_added(d, channel, user_id, info),
        None => outbound::member_removed(d, channel, user_id),
    };
    Broadcast { v1: Arc::new(make(Dialect::V1)), v2: Arc::new(make(Dialect::V2)), serial: None, published_at: Instant::now() }
}

fn is_presence(name: &str) -> bool {
    channel::channel_type(name).kind == Kind::Presence
}

impl Shard {
    /// Sends `payload` to every shard with local subscribers of the channel.
    fn fan_out(&self, ch: &OwnedChannel, app: AppIdx, channel: &Arc<str>, message: &Broadcast, exclude: Option<SocketId>) {
        for (shard, &n) in ch.per_shard.iter().enumerate() {
            if n > 0 {
                self.mesh.send(
                    shard,
                    Msg::Deliver { app, channel: channel.clone(), message: message.clone(), exclude },
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_subscribe(
        &self,
        reply_to: ReplyTo,
        app: AppIdx,
        channel: Arc<str>,
        shard: usize,
        socket: SocketId,
        member: Option<Member>,
        again: bool,
    ) {
        let limits = &self.ctx.apps.get(app).limits;
        let mut owned = self.owned.borrow_mut();
        let shards = self.shards;
        let ch = owned.channels[app as usize].entry(channel.clone()).or_insert_with(|| OwnedChannel {
            per_shard: vec![0; shards],
            ..OwnedChannel::default()
        });
        if let Some(m) = &member {
            let known = ch.members.contains_key(m.user_id.as_str());
            if !again && !known && ch.members.len() as u64 >= limits.max_presence_members {
                answer(self, reply_to, Reply::Refused(ProtocolError::presence_full()));
                return;
            }
            if !again {
                if known {
                    ch.members.get_mut(m.user_id.as_str()).expect("known member").sockets += 1;
                } else {
                    // Tell the others before answering: on the joiner's shard the member event
                    // is handled first, while the joiner is not yet indexed, so it never sees
                    // its own member_added.
                    let added = member_event(&channel, &m.user_id, Some(&m.user_info));
                    self.fan_out(ch, app, &channel, &added, Some(socket));
                    ch.members.insert(m.user_id.as_str().into(), MemberEntry { info: m.user_info.clone(), sockets: 1 });
                }
            }
        }
        if !again {
            ch.per_shard[shard] += 1;
            ch.total += 1;
        }
        let data = if member.is_some() {
            outbound::presence_snapshot(ch.members.iter().map(|(id, e)| (&**id, e.info.as_str())))
        } else {
            "{}".to_owned()
        };
        let cache = channel::channel_type(&channel).cache.then(|| ch.live_cache(Instant::now()).map(|(p, _)| p.clone()));
        let joined = member.as_ref().filter(|m| !again && ch.members.get(m.user_id.as_str()).is_some_and(|e| e.sockets == 1));
        let counted = (!again).then_some(ch.total);
        self.webhook_subscribed(app, &channel, counted, joined.map(|m| &*m.user_id), matches!(cache, Some(None)));
        let stream = owned.stream(app, &channel);
        let position = (stream.id.clone(), stream.head);
        answer(self, reply_to, Reply::Subscribed { data, cache, position });
    }

    pub(super) fn on_unsubscribe(&self, app: AppIdx, channel: &Arc<str>, shard: usize, user_id: Option<Arc<str>>) {
        let mut owned = self.owned.borrow_mut();
        let map = &mut owned.channels[app as usize];
        let Some(ch) = map.get_mut(channel) else { return };
        if ch.per_shard[shard] == 0 {
            log::warn!("unsubscribe from shard {shard} for {channel} without a subscription");
            return;
        }
        ch.per_shard[shard] -= 1;
        ch.total -= 1;
        if let Some(user) = user_id {
            if let Some(e) = ch.members.get_mut(&*user) {
                e.sockets -= 1;
                if e.sockets == 0 {
                    ch.members.shift_remove(&*user);
                    let removed = member_event(channel, &user, None);
                    self.fan_out(ch, app, channel, &removed, None);
                    self.webhook_member_left(app, channel, &user);
                }
            }
        }
        self.webhook_unsubscribed(app, channel, ch.total);
        if ch.is_idle(Instant::now()) {
            map.remove(channel);
        }
    }

    /// Gives the event its place in the channel's stream (unless ephemeral) and builds both
    /// wire shapes once. With durable history the V2 frame is appended to the store and the
    /// message waits in the commit pipeline until the append is written; without, it is
    /// delivered at once.
    pub(super) fn on_publish(
        &self,
        reply_to: Option<ReplyTo>,
        app: AppIdx,
        channel: Arc<str>,
        event: &ChannelEvent,
        exclude: Option<SocketId>,
        from_http: bool,
    ) {
        let now = Instant::now();
        let commit = {
            let mut owned = self.owned.borrow_mut();
            let stream = owned.stream(app, &channel);
            let place = (!event.ephemeral).then(|| stream.next_serial());
            let serial = place.map(|(s, _)| s);
            let message_id = event.message_id.clone().unwrap_or_else(outbound::uuid_v4);
            let data = match &event.data {
                EventData::Str(s) => Data::Str(s),
                EventData::Raw(r) => Data::Raw(r),
            };
            let user_id = event.user_id.as_deref();
            let pos = Position { message_id: &message_id, stream_id: &stream.id, serial };
            let v2 = Arc::new(outbound::v2_event(&event.name, &channel, data, user_id, pos, event.extras.as_deref()));
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
                    let durable = (self.ctx.config.history.store.fsync == storage::Fsync::Always).then_some(ticket.durable);
                    Some(Append { serial, epoch, written: Some(ticket.written), durable })
                }
                _ => None,
            };
            let kept = serial.map(|serial| Kept { serial, at: now, message_id: message_id.as_str().into(), frame: v2.clone() });
            let v1 = Arc::new(outbound::event(&event.name, Some(&channel), data, user_id));
            Commit { app, channel, append, message: Broadcast { v1, v2, serial, published_at: now }, kept, exclude, from_http, reply_to }
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
        let Commit { app, channel, append, message, kept, exclude, from_http, reply_to } = c;
        let mut owned = self.owned.borrow_mut();
        if let Err(e) = written {
            if let Some(a) = &append {
                owned.stream(app, &channel).take_back(a.serial, a.epoch);
            }
            log::error!("shard {}: publish to {channel} failed: {e}", self.id);
            if let Some(to) = reply_to {
                answer(self, to, Reply::Failed(failure_text(&e)));
            }
            return;
        }
        if let Some(kept) = kept {
            owned.stream(app, &channel).remember(kept, self.ctx.config.replay_window);
        }
        let ty = channel::channel_type(&channel);
        let map = &mut owned.channels[app as usize];
        let occupancy = if ty.cache && from_http {
            let shards = self.shards;
            let ch = map.entry(channel.clone()).or_insert_with(|| OwnedChannel {
                per_shard: vec![0; shards],
                ..OwnedChannel::default()
            });
            ch.cache = Some((message.clone(), Instant::now() + CACHE_TTL));
            self.fan_out(ch, app, &channel, &message, exclude);
            ch.occupancy(ty.kind == Kind::Presence)
        } else if let Some(ch) = map.get(&channel) {
            self.fan_out(ch, app, &channel, &message, exclude);
            ch.occupancy(ty.kind == Kind::Presence)
        } else {
            Occupancy { subscription_count: 0, user_count: (ty.kind == Kind::Presence).then_some(0) }
        };
        let Some(to) = reply_to else { return };
        match append.and_then(|a| a.durable) {
            Some(durable) => self.pipeline.push_ack(durable, to, occupancy),
            None => answer(self, to, Reply::Published(occupancy)),
        }
    }

    /// Answers a recovery position (spec 02 §3.4): from the hot replay buffer when it still
    /// holds every later message, else by sending the asker to durable history with the head
    /// frozen now, else with an explicit failure.
    pub(super) fn on_replay(&self, reply_to: ReplyTo, app: AppIdx, channel: &Arc<str>, pos: ResumePosition, legacy: bool) {
        let max = self.ctx.config.replay_window.count as u64;
        let durable = self.store().is_some();
        let mut owned = self.owned.borrow_mut();
        let stream = owned.stream(app, channel);
        let fail = |code, reason| ResumeFailure {
            code,
            reason,
            expected_stream_id: pos.stream_id.clone(),
            current_stream_id: Some(stream.id.to_string()),
            oldest_available_serial: stream.oldest_buffered(),
            newest_available_serial: Some(stream.head),
        };
        let too_far = pos.serial <= stream.head && stream.head - pos.serial > max;
        let result = match stream.replay_after(pos.stream_id.as_deref(), pos.serial) {
            Err(ReplayGap::StreamMismatch) => Recovery::Failed(fail("stream_reset", "stream_id_mismatch")),
            Err(_) if legacy => {
                Recovery::Failed(fail("continuity_unverifiable", "legacy_serial_only_position_cannot_use_cold_recovery"))
            }
            Err(ReplayGap::Ahead) => Recovery::Failed(fail("continuity_unverifiable", "position_ahead_of_durable_stream")),
            _ if too_far => Recovery::Failed(fail("position_expired", "recovery_window_exceeded")),
            Err(ReplayGap::NotBuffered) if durable => {
                Recovery::Cold { stream_id: stream.id.clone(), after: pos.serial, head: stream.head }
            }
            Err(ReplayGap::NotBuffered) => {
                Recovery::Failed(fail("position_expired", "hot_replay_expired_and_durable_history_disabled"))
            }
            Ok(messages) => Recovery::Hot { stream_id: stream.id.clone(), messages },
        };
        answer(self, reply_to, Reply::Replay(result));
    }

    pub(super) fn on_channel_info(&self, reply_to: ReplyTo, app: AppIdx, channel: &str) {
        let owned = self.owned.borrow();
        let presence = is_presence(channel);
        let now = Instant::now();
        let reply = match owned.channels[app as usize].get(channel) {
            Some(ch) => Reply::ChannelInfo {
                occupancy: ch.occupancy(presence),
                cache: ch.live_cache(now).map(|(p, exp)| (p.clone(), exp.saturating_duration_since(now).as_secs())),
            },
            None => Reply::ChannelInfo {
                occupancy: Occupancy { subscription_count: 0, user_count: presence.then_some(0) },
                cache: None,
            },
        };
        answer(self, reply_to, reply);
    }

    pub(super) fn on_list_channels(&self, reply_to: ReplyTo, app: AppIdx, prefix: &str) {
        let owned = self.owned.borrow();
        let list = owned.channels[app as usize]
            .iter()
            .filter(|(name, ch)| ch.total > 0 && name.starts_with(prefix))
            .map(|(name, ch)| (name.clone(), ch.occupancy(is_presence(name))))
            .collect();
        answer(self, reply_to, Reply::Channels(list));
    }

    pub(super) fn on_presence_users(&self, reply_to: ReplyTo, app: AppIdx, channel: &str) {
        let owned = self.owned.borrow();
        let users = owned.channels[app as usize]
            .get(channel)
            .map(|ch| ch.members.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        answer(self, reply_to, Reply::Users(users));
    }

    /// Drops expired cache entries of channels nobody is subscribed to.
    pub(super) fn expire_owned(self: &Rc<Self>) {
        let now = Instant::now();
        let mut owned = self.owned.borrow_mut();
        let Owned { channels, streams } = &mut *owned;
        for (map, streams) in channels.iter_mut().zip(streams.iter_mut()) {
            map.retain(|_, ch| !ch.is_idle(now));
            // A stream that never carried a message is re-made identically on demand.
            streams.retain(|name, s| !s.is_blank() || map.contains_key(name));
        }
    }
}
