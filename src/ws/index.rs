//! The index of this shard's sockets: who they are, what they are subscribed to, which user
//! each belongs to, and each one's bounded outbound queue; and queueing a channel message on
//! every local subscriber (the last step of the fanout hot path). Nothing here is reachable
//! from another shard.

use super::conn::Conn;
use super::writer::{text_frame, Frame, Outbox, Pushed, QueueBound};
use crate::config::AppIdx;
use crate::protocol::outbound::{Dialect, Encoding};
use crate::shard::channel::broadcast::Broadcast;
use crate::socket_id::SocketId;
use ahash::{AHashMap, RandomState};
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
}

impl Subscription {
    pub fn new(member: Option<Arc<str>>, attach_serial: u64, gated: bool) -> Subscription {
        Subscription { member, attach_serial, gate: gated.then(Vec::new), replayed_upto: 0 }
    }
}

impl Socket {
    pub fn new(
        id: SocketId,
        app: AppIdx,
        dialect: Dialect,
        encoding: Encoding,
        conn: Rc<Conn>,
        now: Instant,
    ) -> Socket {
        Socket {
            id,
            app,
            dialect,
            encoding,
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
        }
    }
}

/// Local subscribers of one channel.
#[derive(Default)]
pub struct LocalChannel {
    pub sockets: IndexSet<SocketKey, RandomState>,
    /// Those subscribed in `ANNOTATION_SUBSCRIBE` mode, who also get raw annotation events.
    pub annotation_sockets: IndexSet<SocketKey, RandomState>,
}

#[derive(Default)]
pub struct Index {
    pub sockets: Slab<Socket>,
    /// Per app: channel -> local subscribers.
    pub channels: Vec<AHashMap<Arc<str>, LocalChannel>>,
    /// Per app: user id -> local sockets of that user.
    pub users: Vec<AHashMap<Arc<str>, Vec<SocketKey>>>,
}

impl Index {
    pub fn new(apps: usize) -> Index {
        Index {
            sockets: Slab::new(),
            channels: (0..apps).map(|_| AHashMap::default()).collect(),
            users: (0..apps).map(|_| AHashMap::default()).collect(),
        }
    }

    /// The socket at `key` if it is still the connection `id` (keys are reused after close).
    pub fn live(&mut self, key: SocketKey, id: SocketId) -> Option<&mut Socket> {
        self.sockets.get_mut(key).filter(|s| s.id == id && !s.closing)
    }

    /// Queues `message` in each socket's encoding on every local subscriber of `channel` except
    /// `exclude`. Every encoding the message has is framed once per call: cheaper than a
    /// per-socket check for whether one is needed (measured with 1,000 V1 subscribers).
    /// Sockets that now need a flush are appended to `listed`. Returns the sockets whose queue
    /// was full, and how many frames and bytes were queued. The hot path of a publish: one
    /// reference-count increment and one queue push per socket.
    pub fn queue_on_channel(
        &mut self,
        app: AppIdx,
        channel: &str,
        message: &Broadcast,
        exclude: Option<SocketId>,
        bound: QueueBound,
        listed: &mut Vec<SocketKey>,
    ) -> (Vec<SocketKey>, usize, usize) {
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
        let Index { sockets, channels, .. } = self;
        let Some(local) = channels[app as usize].get(channel) else { return (full, queued, bytes) };
        let audience = if message.annotations_only { &local.annotation_sockets } else { &local.sockets };
        for &key in audience {
            let s = &mut sockets[key];
            if Some(s.id) == exclude || s.closing {
                continue;
            }
            let Some(frame) = &frames[s.encoding.index()] else { continue };
            queued += 1;
            bytes += frame.len();
            if s.gates > 0 {
                if let Some(gate) = s.channels.get_mut(channel).and_then(|sub| sub.gate.as_mut()) {
                    gate.push((message.serial, frame.clone()));
                    if gate.len() > bound.frames {
                        full.push(key);
                    }
                    continue;
                }
            }
            match s.out.push(frame.clone(), bound.frames, bound.bytes) {
                Pushed::NeedsFlush => listed.push(key),
                Pushed::Queued => {}
                Pushed::Full => full.push(key),
            }
        }
        (full, queued, bytes)
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

    /// Adds `key` to the channel's local subscribers; true if it is the channel's first here.
    pub fn add_subscriber(&mut self, app: AppIdx, channel: &Arc<str>, key: SocketKey) -> bool {
        let local = self.channels[app as usize].entry(channel.clone()).or_default();
        local.sockets.insert(key);
        local.sockets.len() == 1
    }

    /// Marks a subscriber of the channel as in `ANNOTATION_SUBSCRIBE` mode.
    pub fn add_annotation_subscriber(&mut self, app: AppIdx, channel: &str, key: SocketKey) {
        if let Some(local) = self.channels[app as usize].get_mut(channel) {
            local.annotation_sockets.insert(key);
        }
    }

    /// Removes `key` from the channel's local subscribers; true if that emptied the channel
    /// here.
    pub fn remove_subscriber(&mut self, app: AppIdx, channel: &str, key: SocketKey) -> bool {
        let map = &mut self.channels[app as usize];
        let Some(local) = map.get_mut(channel) else { return false };
        local.annotation_sockets.swap_remove(&key);
        let removed = local.sockets.swap_remove(&key);
        if local.sockets.is_empty() {
            map.remove(channel);
        }
        removed && !map.contains_key(channel)
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
