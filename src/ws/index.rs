//! The index of this shard's sockets: who they are, what they are subscribed to, which user
//! each belongs to, and each one's bounded outbound queue; and queueing a channel message on
//! every local subscriber (the last step of the fanout hot path). Nothing here is reachable
//! from another shard.

use super::conn::Conn;
use super::delta::{ChannelDelta, Shared};
use super::writer::{frame_in, text_frame, Frame, Outbox, Pushed, QueueBound};
use crate::config::AppIdx;
use crate::config::DeltaCompression;
use crate::protocol::delta::Algorithm;
use crate::protocol::filter::{Filter, Subject};
use crate::protocol::outbound::{Dialect, Encoding};
use crate::protocol::wildcard::{self, PatternSet};
use crate::protocol::wire::Format;
use crate::shard::channel::broadcast::Broadcast;
use crate::socket_id::SocketId;
use ahash::{AHashMap, AHashSet, RandomState};
use indexmap::IndexSet;
use slab::Slab;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

pub type SocketKey = usize;

/// One local WebSocket connection's protocol state.
pub struct Socket {
    pub id: SocketId,
    pub app: AppIdx,
    pub dialect: Dialect,
    /// The form channel messages reach it in.
    pub encoding: Encoding,
    /// How its frames are encoded on the wire (V2 `format`).
    pub format: Format,
    pub conn: Rc<Conn>,
    pub out: Outbox,
    /// Set by sign-in or by a presence `channel_data.user_id`
    /// (`docs/protocol/pusher.md#presence-channels`).
    pub user_id: Option<Arc<str>>,
    /// Signed in with `pusher:signin` (then `user_id` is the signed-in id).
    pub signed_in: bool,
    /// The watchlist given at sign-in, if watchlist events are on.
    pub watchlist: Option<Vec<String>>,
    /// Channels this socket is subscribed to.
    pub channels: AHashMap<Arc<str>, Subscription>,
    pub connected_at: Instant,
    pub last_activity: Instant,
    /// When a `pusher:ping` went out unanswered.
    pub ping_sent: Option<Instant>,
    /// Private/presence subscription or sign-in done: the user-authentication timer is off.
    pub authenticated: bool,
    /// Client-event rate window: start and count.
    pub client_event_window: (Instant, u64),
    /// The socket is being closed: it accepts no more frames and is no longer indexed.
    pub closing: bool,
    /// The close code sent or received (0: none, the connection just ended).
    pub close_code: u16,
    /// How many of its subscriptions hold a continuity gate: only then does a delivery look
    /// the subscription up.
    pub gates: u32,
    /// Deltas on every channel (`enable_delta_compression`), with this algorithm.
    pub delta: Option<Algorithm>,
    /// How many of its subscriptions have delta streams: only then does a delivery look the
    /// subscription up for them.
    pub deltas: u32,
    /// The capability token it holds (`docs/protocol/v2.md#capability-tokens`).
    pub token: Option<Box<HeldToken>>,
}

/// A socket's capability token, for its expiry (its `jti` is in the shard's identities, where
/// revocations look).
pub struct HeldToken {
    /// Unix seconds.
    pub exp: i64,
    /// When `token_expired` was sent: the socket is closed a grace period later unless a
    /// refresh replaced the token meanwhile.
    pub expired_notice: Option<Instant>,
}

/// One of a socket's channels.
#[derive(Clone, Debug)]
pub struct Subscription {
    /// The presence user id it joined as.
    pub member: Option<Arc<str>>,
    /// The stream head when it was registered (`docs/protocol/v2.md#attach-serial`): later serials
    /// arrive live.
    pub attach_serial: u64,
    /// Live frames held back while recovery or rewind sends older ones
    /// (`docs/protocol/v2.md#continuity-gate`): opened when a V2 socket subscribes, released
    /// once the input that arrived with the subscribe has been handled. `None` once released.
    pub gate: Option<Vec<(Option<u64>, Frame)>>,
    /// The newest serial already sent by a replay or rewind: gated frames up to it are dropped.
    pub replayed_upto: u64,
    /// Its filter, shared with the channel's other subscribers that gave the same one.
    pub filter: Option<Rc<Filter>>,
    /// Its delta streams, when this socket gets deltas on the channel.
    pub delta: Option<Box<ChannelDelta>>,
    /// The subscribe said `delta: false`: a connection-wide enable leaves it alone.
    pub delta_off: bool,
}

impl Subscription {
    pub fn new(member: Option<Arc<str>>, attach_serial: u64, gated: bool, filter: Option<Rc<Filter>>) -> Subscription {
        Subscription {
            member,
            attach_serial,
            gate: gated.then(Vec::new),
            replayed_upto: 0,
            filter,
            delta: None,
            delta_off: false,
        }
    }
}

impl Socket {
    pub fn new(
        id: SocketId,
        app: AppIdx,
        dialect: Dialect,
        (encoding, format): (Encoding, Format),
        conn: Rc<Conn>,
        now: Instant,
    ) -> Socket {
        Socket {
            id,
            app,
            dialect,
            encoding,
            format,
            conn,
            out: Outbox::new(),
            user_id: None,
            signed_in: false,
            watchlist: None,
            channels: AHashMap::default(),
            connected_at: now,
            last_activity: now,
            ping_sent: None,
            authenticated: false,
            client_event_window: (now, 0),
            closing: false,
            close_code: 0,
            gates: 0,
            delta: None,
            deltas: 0,
            token: None,
        }
    }
}

/// A delivery's frames in the binary formats, by encoding, each made once when first needed.
#[derive(Default)]
struct BinaryFrames {
    /// `[msgpack, protobuf]` per encoding: `None` not made yet, `Some(None)` not made for
    /// good (the message has no form in that encoding).
    made: [[Option<Option<Frame>>; 2]; Encoding::COUNT],
}

impl BinaryFrames {
    fn frame(&mut self, message: &Broadcast, encoding: Encoding, format: Format) -> Option<&Frame> {
        let column = usize::from(format == Format::Protobuf);
        self.made[encoding.index()][column]
            .get_or_insert_with(|| message.payload(encoding).and_then(|p| frame_in(format, p)))
            .as_ref()
    }
}

/// What one delivery queued.
pub struct Queued {
    /// Sockets whose queue overflowed.
    pub full: Vec<SocketKey>,
    pub frames: usize,
    pub bytes: usize,
    /// Bytes delta frames saved against full ones.
    pub delta_saved: u64,
}

/// Local subscribers of one channel (or of one wildcard pattern).
#[derive(Default)]
pub struct LocalChannel {
    /// Those without a filter.
    pub sockets: IndexSet<SocketKey, RandomState>,
    /// Those with a filter, grouped by it: each distinct filter is evaluated once per message.
    pub filtered: Vec<FilterGroup>,
    /// Those subscribed in `ANNOTATION_SUBSCRIBE` mode, who also get raw annotation events.
    pub annotation_sockets: IndexSet<SocketKey, RandomState>,
}

/// The subscribers of a channel on this shard that gave the same filter.
pub struct FilterGroup {
    pub filter: Rc<Filter>,
    pub sockets: IndexSet<SocketKey, RandomState>,
}

impl LocalChannel {
    fn is_empty(&self) -> bool {
        self.sockets.is_empty() && self.filtered.is_empty()
    }

    /// Adds `key`, in the group of its filter if it has one; returns the group's filter.
    fn add(&mut self, key: SocketKey, filter: Option<Filter>) -> Option<Rc<Filter>> {
        let Some(filter) = filter else {
            self.sockets.insert(key);
            return None;
        };
        let group = match self.filtered.iter().position(|g| *g.filter == filter) {
            Some(i) => &mut self.filtered[i],
            None => {
                self.filtered.push(FilterGroup { filter: Rc::new(filter), sockets: IndexSet::default() });
                self.filtered.last_mut().expect("just pushed")
            }
        };
        group.sockets.insert(key);
        Some(group.filter.clone())
    }

    /// Calls `f` with each subscriber the message reaches: the unfiltered ones, then those
    /// whose filter it passes (each distinct filter evaluated once).
    fn for_each_reached(&self, subject: &Subject, mut f: impl FnMut(SocketKey)) {
        self.sockets.iter().for_each(|&k| f(k));
        for group in self.filtered.iter().filter(|g| g.filter.matches(subject)) {
            group.sockets.iter().for_each(|&k| f(k));
        }
    }

    /// Takes `key` out of the unfiltered set or its filter's group (dropped once empty).
    fn take(&mut self, key: SocketKey, filter: Option<&Rc<Filter>>) -> bool {
        let Some(filter) = filter else { return self.sockets.swap_remove(&key) };
        let Some(i) = self.filtered.iter().position(|g| Rc::ptr_eq(&g.filter, filter)) else { return false };
        let removed = self.filtered[i].sockets.swap_remove(&key);
        if self.filtered[i].sockets.is_empty() {
            self.filtered.swap_remove(i);
        }
        removed
    }
}

#[derive(Default)]
pub struct Index {
    pub sockets: Slab<Socket>,
    /// Per app: channel -> local subscribers.
    pub channels: Vec<AHashMap<Arc<str>, LocalChannel>>,
    /// Per app: user id -> local sockets of that user.
    pub users: Vec<AHashMap<Arc<str>, Vec<SocketKey>>>,
    /// Per app: wildcard pattern -> local subscribers (`docs/protocol/v2.md#wildcard-subscriptions`).
    pub patterns: Vec<PatternSet<LocalChannel>>,
}

impl Index {
    pub fn new(apps: usize) -> Index {
        Index {
            sockets: Slab::new(),
            channels: (0..apps).map(|_| AHashMap::default()).collect(),
            users: (0..apps).map(|_| AHashMap::default()).collect(),
            patterns: (0..apps).map(|_| PatternSet::default()).collect(),
        }
    }

    /// The socket at `key` if it is still the connection `id` (keys are reused after close).
    pub fn live(&mut self, key: SocketKey, id: SocketId) -> Option<&mut Socket> {
        self.sockets.get_mut(key).filter(|s| s.id == id && !s.closing)
    }

    /// Queues `message` in each socket's encoding on every local subscriber of `channel` except
    /// `exclude`. Every encoding the message has is framed once per call: cheaper than a
    /// per-socket check for whether one is needed (measured with 1,000 V1 subscribers).
    /// Sockets that now need a flush are appended to `listed`. The hot path of a publish: one
    /// reference-count increment and one queue push per socket (sockets with delta streams on
    /// the channel get frames of their own, shared by those whose streams stand alike). Then
    /// wildcard subscribers of matching patterns, each socket once (its subscriptions ORed).
    pub fn queue_on_channel(
        &mut self,
        app: AppIdx,
        channel: &str,
        message: &Broadcast,
        exclude: Option<SocketId>,
        (bound, delta): (QueueBound, &DeltaCompression),
        listed: &mut Vec<SocketKey>,
    ) -> Queued {
        let mut full = Vec::new();
        let (mut queued, mut bytes) = (0, 0);
        let mut frames: [Option<Frame>; Encoding::COUNT] = Default::default();
        for (e, payload) in message.payloads() {
            // Encodings that share a payload (V2 in both append modes, but for appends) share
            // the frame too.
            let shared = message.payloads().take_while(|(o, _)| *o != e).find(|(_, p)| Arc::ptr_eq(p, payload));
            frames[e.index()] = match shared {
                Some((o, _)) => frames[o.index()].clone(),
                None => Some(text_frame(payload)),
            };
        }
        let Index { sockets, channels, patterns, .. } = self;
        let local = channels[app as usize].get(channel);
        let by_pattern = Some(&patterns[app as usize]).filter(|p| !p.is_empty() && wildcard::matchable(channel));
        if local.is_none() && by_pattern.is_none() {
            return Queued { full, frames: 0, bytes: 0, delta_saved: 0 };
        }
        let v2_text = message.payload(Encoding::V2Json).map_or(&[][..], |p| p.as_slice());
        let subject = Subject::new(message.attrs.as_deref(), v2_text);
        let v2 = message.payload(Encoding::V2Json).filter(|_| message.delta.is_some());
        let mut shared = Shared::default();
        // Binary formats are built when the first socket needs one: most deliveries have none.
        let mut binary = BinaryFrames::default();
        // `pattern`: the socket is reached through that wildcard subscription.
        let mut queue = |key: SocketKey, pattern: Option<&str>| {
            let s = &mut sockets[key];
            if Some(s.id) == exclude || s.closing {
                return;
            }
            if pattern.is_some() {
                // Its own subscription of the channel, when it has one that passes, sent it.
                let direct = s.channels.get(channel);
                if direct.is_some_and(|sub| sub.filter.as_ref().is_none_or(|f| f.matches(&subject))) {
                    return;
                }
            }
            let frame = match s.format {
                Format::Json => frames[s.encoding.index()].as_ref(),
                format => binary.frame(message, s.encoding, format),
            };
            let Some(frame) = frame else { return };
            // A socket with delta streams on this channel gets its own frame of the message;
            // not while its continuity gate is shut, since a replay may drop gated frames and
            // a delta stream must not lose one.
            let own = match (&message.delta, &v2) {
                (Some(key), Some(v2)) if s.deltas > 0 && pattern.is_none() => s
                    .channels
                    .get_mut(channel)
                    .filter(|sub| sub.gate.is_none())
                    .and_then(|sub| sub.delta.as_deref_mut())
                    .map(|state| shared.frame_for(state, channel, key, v2, delta)),
                _ => None,
            };
            let frame = own.as_ref().unwrap_or(frame);
            queued += 1;
            bytes += frame.len();
            if s.gates > 0 {
                let via = pattern.unwrap_or(channel);
                if let Some(gate) = s.channels.get_mut(via).and_then(|sub| sub.gate.as_mut()) {
                    gate.push((message.serial, frame.clone()));
                    if gate.len() > bound.frames {
                        full.push(key);
                    }
                    return;
                }
            }
            match s.out.push(frame.clone(), bound.frames, bound.bytes) {
                Pushed::NeedsFlush => listed.push(key),
                Pushed::Queued => {}
                Pushed::Full => full.push(key),
            }
        };
        if message.annotations_only {
            local.into_iter().flat_map(|l| &l.annotation_sockets).for_each(|&k| queue(k, None));
            return Queued { full, frames: queued, bytes, delta_saved: 0 };
        }
        if let Some(local) = local {
            local.for_each_reached(&subject, |k| queue(k, None));
        }
        if let Some(by_pattern) = by_pattern {
            let mut reached = AHashSet::<SocketKey>::default();
            by_pattern.for_each_match(channel, |pattern, subs| {
                subs.for_each_reached(&subject, |k| {
                    if reached.insert(k) {
                        queue(k, Some(pattern));
                    }
                })
            });
        }
        Queued { full, frames: queued, bytes, delta_saved: shared.saved }
    }

    /// Opens the socket's gates (all, or only `channel`'s) onto its queue, in arrival order
    /// (which is serial order), minus what a replay already sent. Returns how many frames
    /// went through and whether the queue overflowed.
    pub fn release_gates(
        &mut self,
        key: SocketKey,
        channel: Option<&str>,
        bound: QueueBound,
        listed: &mut Vec<SocketKey>,
    ) -> (usize, bool) {
        let (mut passed, mut full) = (0, false);
        let Some(s) = self.sockets.get_mut(key).filter(|s| s.gates > 0) else { return (passed, full) };
        for (name, sub) in s.channels.iter_mut() {
            if channel.is_some_and(|c| c != &**name) {
                continue;
            }
            let Some(frames) = sub.gate.take() else { continue };
            s.gates -= 1;
            for (serial, frame) in frames {
                if serial.is_some_and(|n| n <= sub.replayed_upto) {
                    continue;
                }
                passed += 1;
                match s.out.push(frame, bound.frames, bound.bytes) {
                    Pushed::NeedsFlush => listed.push(key),
                    Pushed::Queued => {}
                    Pushed::Full => full = true,
                }
            }
        }
        (passed, full)
    }

    /// Adds `key` to the channel's local subscribers, in the group of its filter if it has
    /// one; true if it is the channel's first here. Returns the group's filter.
    pub fn add_subscriber(
        &mut self,
        app: AppIdx,
        channel: &Arc<str>,
        key: SocketKey,
        filter: Option<Filter>,
    ) -> (bool, Option<Rc<Filter>>) {
        let local = self.channels[app as usize].entry(channel.clone()).or_default();
        let first = local.is_empty();
        (first, local.add(key, filter))
    }

    /// Adds `key` to the local subscribers of a wildcard pattern; returns its group's filter.
    pub fn add_pattern_subscriber(
        &mut self,
        app: AppIdx,
        pattern: &Arc<str>,
        key: SocketKey,
        filter: Option<Filter>,
    ) -> Option<Rc<Filter>> {
        self.patterns[app as usize].entry(pattern).add(key, filter)
    }

    /// Removes `key` from the local subscribers of a wildcard pattern.
    pub fn remove_pattern_subscriber(
        &mut self,
        app: AppIdx,
        pattern: &str,
        key: SocketKey,
        filter: Option<&Rc<Filter>>,
    ) {
        let set = &mut self.patterns[app as usize];
        if let Some(local) = set.get_mut(pattern) {
            local.take(key, filter);
            if local.is_empty() {
                set.remove(pattern);
            }
        }
    }

    /// Marks a subscriber of the channel as in `ANNOTATION_SUBSCRIBE` mode.
    pub fn add_annotation_subscriber(&mut self, app: AppIdx, channel: &str, key: SocketKey) {
        if let Some(local) = self.channels[app as usize].get_mut(channel) {
            local.annotation_sockets.insert(key);
        }
    }

    /// Removes `key` (subscribed with `filter`) from the channel's local subscribers; true if
    /// that emptied the channel here.
    pub fn remove_subscriber(
        &mut self,
        app: AppIdx,
        channel: &str,
        key: SocketKey,
        filter: Option<&Rc<Filter>>,
    ) -> bool {
        let map = &mut self.channels[app as usize];
        let Some(local) = map.get_mut(channel) else { return false };
        local.annotation_sockets.swap_remove(&key);
        let removed = local.take(key, filter);
        if local.is_empty() {
            map.remove(channel);
        }
        removed && !map.contains_key(channel)
    }

    /// A subscriber subscribed again with another filter (or none): it moves to that group.
    pub fn refilter(
        &mut self,
        app: AppIdx,
        channel: &Arc<str>,
        key: SocketKey,
        old: Option<&Rc<Filter>>,
        new: Option<Filter>,
    ) -> Option<Rc<Filter>> {
        if let Some(local) = self.channels[app as usize].get_mut(channel) {
            local.take(key, old);
        }
        self.add_subscriber(app, channel, key, new).1
    }

    /// Indexes `key` under `user` (a socket has at most one user id; a previous one is dropped).
    pub fn set_user(&mut self, key: SocketKey, user: Arc<str>) {
        let app = self.sockets[key].app as usize;
        if let Some(old) = self.sockets[key].user_id.replace(user.clone()) {
            if old == user {
                return;
            }
            self.unindex_user(app, &old, key);
        }
        self.users[app].entry(user).or_default().push(key);
    }

    pub fn unindex_user(&mut self, app: usize, user: &str, key: SocketKey) {
        if let Some(keys) = self.users[app].get_mut(user) {
            keys.retain(|&k| k != key);
            if keys.is_empty() {
                self.users[app].remove(user);
            }
        }
    }

    /// Gives back the index memory of sockets and channels that have gone, once the shard is
    /// well below the size it grew to (a connection storm must not pin its peak memory).
    /// Returns whether anything was released.
    pub fn trim(&mut self) -> bool {
        let cap = self.sockets.capacity();
        if cap < 1024 || self.sockets.len() * 4 > cap {
            return false;
        }
        // A slab only drops vacant slots at its end; sockets still open at high keys keep it
        // long, which costs one vacant slot per departed socket and nothing per message.
        self.sockets.shrink_to_fit();
        for map in self.channels.iter_mut() {
            map.shrink_to_fit();
        }
        for map in self.users.iter_mut() {
            map.shrink_to_fit();
        }
        self.sockets.capacity() < cap
    }

    pub fn user_sockets(&self, app: AppIdx, user: &str) -> &[SocketKey] {
        self.users[app as usize].get(user).map_or(&[], |v| v.as_slice())
    }
}
