//! The channels this shard owns, as one unit: for each, everything that is its global truth
//! (subscriber counts per shard, presence members, the cache slot, the message stream with its
//! serials and hot buffer) and every operation on it. Only the owner changes this state; other
//! shards ask through the typed requests defined here:
//!
//! | request | file | what it does |
//! |---|---|---|
//! | [`ChannelOp`] | `publish.rs`, `mutate.rs` | an [`Operation`] on the stream: serial, store, fan-out |
//! | [`annotate::Annotate`] | `annotate.rs` | an annotation of a mutable message: store, summary, fan-out |
//! | [`subscribe::Subscribe`], [`subscribe::Unsubscribe`] | `subscribe.rs` | counts, presence members |
//! | [`info::ChannelInfo`], [`info::ListChannels`] | `info.rs` | occupancy for the HTTP API |
//! | [`presence::PresenceUsers`] | `presence.rs` | a presence channel's users |
//! | [`presence_log::PresenceLogState`], `PresenceLogReset` | `presence_log.rs` | the presence history stream |
//! | [`replay::Replay`] | `replay.rs` | what follows a recovery position |
//! | [`rollup::FlushRollup`] | `rollup.rs` | sends the appends an AI channel's window holds |
//! | [`operator::HistoryState`], `HistoryReset`, `HistoryPurge` | `operator.rs` | the operator's history controls |
//!
//! `sequence.rs` hands publishes to the cluster log and carries out what it brings, with
//! several nodes; `cluster.rs` keeps each channel's view across the nodes (counts, members);
//! `commit.rs` orders stored messages between their append and their delivery;
//! `ai_streams.rs` counts an AI channel's open streams against their limit;
//! `meta.rs` tells a channel's metachannel what happened to it;
//! `message_cache.rs` holds the mutable messages being mutated or annotated; `webhooks.rs` decides the
//! count-derived webhook events, which only the owner can.

pub mod ai_streams;
pub mod annotate;
pub mod broadcast;
pub mod cluster;
pub mod commit;
pub mod info;
pub mod message_cache;
pub mod meta;
pub mod mutate;
pub mod operator;
pub mod presence;
pub mod presence_log;
pub mod publish;
pub mod replay;
pub mod rollup;
pub mod sequence;
pub mod stream;
pub mod subscribe;
pub mod webhooks;

use super::route::{Request, Responder};
use super::Shard;
use crate::config::AppIdx;
use crate::protocol::ai::AiError;
use crate::protocol::channel::{self, Kind};
use crate::protocol::versioned::Ack;
use crate::socket_id::SocketId;
use ahash::AHashMap;
use broadcast::{Broadcast, ChannelEvent};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use stream::Stream;

/// A channel's occupancy as its owner sees it.
#[derive(Clone, Debug, Default)]
pub struct Occupancy {
    pub subscription_count: u64,
    /// Distinct presence members; `None` for non-presence channels.
    pub user_count: Option<u64>,
}

/// Everything the owner holds for one channel.
pub struct ChannelState {
    /// Local subscriber count of each shard; empty until the first subscribe.
    per_shard: Vec<u32>,
    total: u64,
    members: presence::Members,
    /// The cache channel's last event and when it expires.
    cache: Option<(Broadcast, Instant)>,
    /// Kept while the channel is idle, so that serials continue.
    stream: Stream,
    /// A presence channel's record of member transitions, once it has one.
    presence: Option<presence_log::PresenceLog>,
    /// An AI channel's open rollup window.
    rollup: Option<rollup::Rollup>,
    /// An AI channel's streaming messages, once it has had one.
    open_streams: Option<Box<ai_streams::OpenStreams>>,
    /// With several nodes: the channel across the cluster, which occupancy, members and their
    /// webhooks follow (`total` and `members` are then this node's share).
    cluster: Option<Box<cluster::ClusterView>>,
}

impl ChannelState {
    fn new(stream: Stream) -> ChannelState {
        ChannelState {
            per_shard: Vec::new(),
            total: 0,
            members: presence::Members::default(),
            cache: None,
            stream,
            presence: None,
            rollup: None,
            open_streams: None,
            cluster: None,
        }
    }

    fn occupancy(&self, presence: bool) -> Occupancy {
        match &self.cluster {
            Some(view) => Occupancy {
                subscription_count: view.total(),
                user_count: presence.then_some(view.member_count() as u64),
            },
            None => {
                Occupancy { subscription_count: self.total, user_count: presence.then_some(self.members.len() as u64) }
            }
        }
    }

    /// Whether anyone (on any node) is subscribed.
    fn occupied(&self) -> bool {
        self.cluster.as_ref().map_or(self.total > 0, |view| view.total() > 0)
    }

    fn live_cache(&self, now: Instant) -> Option<&(Broadcast, Instant)> {
        self.cache.as_ref().filter(|(_, exp)| *exp > now)
    }

    /// Nothing to keep: no subscriber, no member, no live cache, and streams that never
    /// carried anything (they would be re-made identically on demand).
    fn is_forgettable(&self, now: Instant) -> bool {
        self.total == 0
            && self.members.is_empty()
            && self.live_cache(now).is_none()
            && self.stream.is_blank()
            && self.presence.as_ref().is_none_or(|p| p.stream.is_blank())
            && self.rollup.is_none()
            && self.cluster.as_ref().is_none_or(|view| view.is_empty())
    }

    /// The shards with local subscribers.
    fn subscribed_shards(&self) -> impl Iterator<Item = usize> + '_ {
        self.per_shard.iter().enumerate().filter(|(_, &n)| n > 0).map(|(s, _)| s)
    }
}

/// The channels this shard owns, per app.
pub struct Channels {
    by_app: Vec<AHashMap<Arc<str>, ChannelState>>,
    /// Per app: metachannels with subscribers (`meta.rs`).
    meta_watched: Vec<u32>,
    /// With several nodes: per app, the hash of its id, from which a new channel's stream id
    /// is derived, so that every node names a channel's first stream alike before the
    /// cluster log has carried anything for it.
    named_streams: Option<Vec<u64>>,
}

impl Channels {
    /// `named_streams`: see the field.
    pub fn new(apps: usize, named_streams: Option<Vec<u64>>) -> Channels {
        Channels {
            by_app: (0..apps).map(|_| AHashMap::default()).collect(),
            meta_watched: vec![0; apps],
            named_streams,
        }
    }

    fn get(&self, app: AppIdx, channel: &str) -> Option<&ChannelState> {
        self.by_app[app as usize].get(channel)
    }

    fn get_mut(&mut self, app: AppIdx, channel: &str) -> Option<&mut ChannelState> {
        self.by_app[app as usize].get_mut(channel)
    }

    /// The channel's state, made (with a fresh stream) if it has none.
    fn entry(&mut self, app: AppIdx, channel: &Arc<str>) -> &mut ChannelState {
        let named = &self.named_streams;
        self.by_app[app as usize].entry(channel.clone()).or_insert_with(|| match named {
            Some(app_hashes) => {
                let mut ch = ChannelState::new(Stream::named(stream::derived_id(app_hashes[app as usize], channel)));
                ch.cluster = Some(Box::default());
                ch
            }
            None => ChannelState::new(Stream::new()),
        })
    }

    /// A stream as durable history left it (at start): the channel's messages, or (under
    /// `storage::presence_stream`'s name) its presence transitions.
    pub(super) fn insert_stream(&mut self, app: AppIdx, stored_as: &str, id: Arc<str>, head: u64) {
        match storage::presence_channel(stored_as) {
            Some(channel) => {
                self.entry(app, &channel.into()).presence = Some(presence_log::PresenceLog::resume(id, head))
            }
            None => self.entry(app, &stored_as.into()).stream = Stream::resume(id, head),
        }
    }

    /// Forgets channels with nothing to keep (expired caches of channels nobody uses).
    pub(super) fn expire(&mut self, now: Instant) {
        for map in &mut self.by_app {
            map.retain(|_, ch| !ch.is_forgettable(now));
        }
    }
}

fn is_presence(name: &str) -> bool {
    channel::channel_type(name).kind == Kind::Presence
}

/// What can be done to a channel's stream. Each operation gets its place in the stream from
/// the owner and goes through the commit pipeline.
pub enum Operation {
    Publish(Arc<ChannelEvent>),
    /// An update, delete or append of a mutable message (`mutate.rs`).
    Mutate(Box<mutate::Mutate>),
}

/// Who asked for an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The HTTP API (publishes to cache channels update the cache).
    Http,
    /// A client event from a socket.
    Client,
}

/// To the owner: apply `op` to `channel`. Answered (when asked) once the message is delivered
/// and, with `fsync = "always"`, durable.
pub struct ChannelOp {
    pub app: AppIdx,
    pub channel: Arc<str>,
    pub op: Operation,
    /// The publisher's socket, which does not receive its own message.
    pub exclude: Option<SocketId>,
    pub origin: Origin,
}

/// An operation carried out.
#[derive(Clone, Debug)]
pub struct Done {
    pub occupancy: Occupancy,
    /// The version it made (a versioned create or a mutation), or found (an op_id retry).
    pub version: Option<Ack>,
}

/// Why an operation was not carried out; nothing was delivered.
#[derive(Clone, Debug)]
pub enum OpFailure {
    /// The store could not take it.
    Storage(String),
    /// A shard with subscribers is too far behind to take the delivery.
    Overloaded(super::route::CrossingError),
    /// The operation does not apply to the channel as it stands (an unknown message, a
    /// conflicting op_id): the HTTP status and error code it answers with.
    Rejected(Rejection),
}

#[derive(Clone, Debug)]
pub struct Rejection {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// The AI Transport registry code, for a refusal of the AI conventions.
    pub ai_code: Option<u32>,
}

impl Rejection {
    pub fn new(status: u16, code: &'static str, message: String) -> Rejection {
        Rejection { status, code, message, ai_code: None }
    }

    pub fn not_found(message: String) -> Rejection {
        Self::new(404, "not_found", message)
    }

    pub fn invalid(message: String) -> Rejection {
        Self::new(400, "invalid_input", message)
    }

    pub fn ai(e: AiError) -> Rejection {
        Rejection { status: e.status(), code: e.name(), ai_code: Some(e.code), message: e.message }
    }
}

impl Request for ChannelOp {
    type Reply = Result<Done, OpFailure>;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        match &self.op {
            Operation::Publish(event) => {
                let event = event.clone();
                match shard.ctx.backplane.clone() {
                    Some(backplane) => shard.append_to_log(&backplane, self, &event, reply),
                    None => shard.publish(self, &event, reply, None),
                }
            }
            Operation::Mutate(_) => shard.mutate(self, reply),
        }
    }
}
