//! Everything one shard can say to another: the whole vocabulary of the mesh.
//!
//! Channel state lives on the channel's owner (`owner_of(hash(app, channel))`); requests about
//! a channel go there. Sockets and their queues live on the shard that accepted them; the owner
//! reaches them only through `Deliver` and `ToUsers`. Payloads are shared immutable bytes
//! (`Arc`), encoded once by the sender and framed once per receiving shard.

use super::call::ReplyTo;
use crate::apps::AppIdx;
use crate::protocol::inbound::Member;
use crate::protocol::outbound::Dialect;
use crate::protocol::ProtocolError;
use crate::socket_id::SocketId;
use std::sync::Arc;

/// A channel event's JSON text (`{"event":..,"channel":..,"data":..}`), shared by all shards.
pub type Payload = Arc<Vec<u8>>;

/// One channel message in the shape each protocol gets (spec 02 §1.3): V1 sockets never see
/// V2 fields. Built once by the channel's owner and shared by every shard.
#[derive(Clone)]
pub struct Broadcast {
    pub v1: Payload,
    pub v2: Payload,
    /// Its place in the channel's stream; `None` for ephemeral messages and member events.
    pub serial: Option<u64>,
    /// When the owner took the publish: delivering shards measure their latency from it.
    pub published_at: std::time::Instant,
}

impl Broadcast {
    /// The WebSocket frame of this message for one socket.
    pub fn frame_for(&self, d: Dialect) -> crate::ws::conn::Frame {
        let p = match d {
            Dialect::V1 => &self.v1,
            Dialect::V2 => &self.v2,
        };
        crate::ws::codec::encode(crate::ws::codec::Opcode::Text, p).into()
    }
}

/// A channel event on its way to the owner, which gives it its place in the stream.
pub struct ChannelEvent {
    pub name: String,
    /// JSON text of `data`: a string literal's contents (`Str`) or raw JSON (`Raw`).
    pub data: EventData,
    pub user_id: Option<Arc<str>>,
    /// Publisher-supplied `message_id` (V2), else the owner makes one.
    pub message_id: Option<String>,
    /// `extras` as raw JSON, forwarded to V2 sockets only.
    pub extras: Option<String>,
    /// `extras.ephemeral`: no serial, no replay buffer (spec 02 §2.3 rule 2).
    pub ephemeral: bool,
}

pub enum EventData {
    Str(String),
    Raw(String),
}

pub enum Msg {
    /// To the owner: a socket on `shard` joins `channel`. Answered with `Reply::Subscribed`
    /// (or `Reply::Refused`) after member events for a new presence member went out.
    Subscribe {
        reply_to: ReplyTo,
        app: AppIdx,
        channel: Arc<str>,
        shard: usize,
        socket: SocketId,
        member: Option<Member>,
        /// The socket was already subscribed: answer with the current state, count nothing.
        again: bool,
    },
    /// To the owner: a socket on `shard` left `channel` (unsubscribe or disconnect).
    Unsubscribe { app: AppIdx, channel: Arc<str>, shard: usize, socket: SocketId, user_id: Option<Arc<str>> },
    /// To the owner: publish an event. HTTP publishes want an answer (counts, acknowledgement);
    /// client events do not.
    Publish {
        reply_to: Option<ReplyTo>,
        app: AppIdx,
        channel: Arc<str>,
        event: Arc<ChannelEvent>,
        exclude: Option<SocketId>,
        /// HTTP publishes to cache channels update the cache; client events never do.
        from_http: bool,
    },
    /// To each shard with local subscribers of `channel`: queue the message on each of them.
    Deliver { app: AppIdx, channel: Arc<str>, message: Broadcast, exclude: Option<SocketId> },
    /// To every shard: act on every local socket of these users.
    ToUsers { app: AppIdx, user_ids: Arc<Vec<String>>, action: UserAction },
    /// To the owner: the occupancy of one channel.
    ChannelInfo { reply_to: ReplyTo, app: AppIdx, channel: Arc<str> },
    /// To every shard: the occupied channels it owns whose names start with `prefix`.
    ListChannels { reply_to: ReplyTo, app: AppIdx, prefix: Arc<str> },
    /// To the owner: the distinct users of a presence channel.
    PresenceUsers { reply_to: ReplyTo, app: AppIdx, channel: Arc<str> },
    /// To the owner of a user id: sign-in bookkeeping for the watchlist (see `watch`).
    Watch(super::watch::WatchMsg),
    /// To the owner: the messages after a client's recovery position (spec 02 §3.4).
    Replay {
        reply_to: ReplyTo,
        app: AppIdx,
        channel: Arc<str>,
        position: crate::protocol::inbound::ResumePosition,
        /// A serial-only position: only the hot tier may answer it.
        legacy: bool,
    },
    /// To the owner of an idempotency key: claim or settle it.
    Idempotency(super::idempotency::IdemMsg),
    /// To the owner of a rate-limited key: count one request. Answered with `Reply::Rate`.
    RateCheck { reply_to: ReplyTo, key: super::limits::RateKey, limit: crate::config::RateLimit },
    /// The answer to a request.
    Reply { call: usize, reply: Reply },
}

pub enum UserAction {
    /// Queue this event (an HTTP publish to `#server-to-user-{id}`), except on `exclude`.
    Deliver { payload: Payload, exclude: Option<SocketId> },
    /// Send `pusher:error` and close with its code (terminate / force reconnect).
    Close(ProtocolError),
}

/// A channel's occupancy as its owner sees it.
#[derive(Clone, Debug, Default)]
pub struct Occupancy {
    pub subscription_count: u64,
    /// Distinct presence members; `None` for non-presence channels.
    pub user_count: Option<u64>,
}

pub enum Reply {
    Subscribed {
        /// Data of `subscription_succeeded`: `{}` or a presence snapshot.
        data: String,
        /// For cache channels: the cached event (`Some(Some)`), or a miss (`Some(None)`).
        cache: Option<Option<Broadcast>>,
        /// The channel's stream and its head serial when the subscriber was registered.
        position: (Arc<str>, u64),
    },
    Refused(ProtocolError),
    Published(Occupancy),
    ChannelInfo { occupancy: Occupancy, cache: Option<(Broadcast, u64)> },
    Channels(Vec<(Arc<str>, Occupancy)>),
    Users(Vec<String>),
    /// Which of the asked users are online.
    Online(Vec<String>),
    Claim(super::idempotency::Claim),
    /// An idempotency response is stored.
    Kept,
    Rate(super::limits::Verdict),
    Replay(Recovery),
    /// The request was valid but the server could not carry it out (the store failed).
    Failed(String),
}

/// The owner's answer to a recovery position.
pub enum Recovery {
    /// The hot buffer holds every message after the position: these, oldest first.
    Hot { stream_id: Arc<str>, messages: Vec<super::stream::Kept> },
    /// Only durable history still holds them: read serials `after + 1 ..= head` of `stream_id`
    /// from the owner's store (spec 02 §3.4 cold tier).
    Cold { stream_id: Arc<str>, after: u64, head: u64 },
    Failed(ResumeFailure),
}

/// Why one channel could not be recovered (spec 02 §3.5 `code` and `reason`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct ResumeFailure {
    pub code: &'static str,
    pub reason: &'static str,
    pub expected_stream_id: Option<String>,
    pub current_stream_id: Option<String>,
    pub oldest_available_serial: Option<u64>,
    pub newest_available_serial: Option<u64>,
}
