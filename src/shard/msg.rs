//! Everything one shard can say to another: the whole vocabulary of the mesh.
//!
//! Channel state lives on the channel's owner (`owner_of(hash(app, channel))`); requests about
//! a channel go there. Sockets and their queues live on the shard that accepted them; the owner
//! reaches them only through `Deliver` and `ToUsers`. Payloads are shared immutable bytes
//! (`Arc`), encoded once by the sender and framed once per receiving shard.

use super::call::ReplyTo;
use crate::apps::AppIdx;
use crate::protocol::inbound::Member;
use crate::protocol::ProtocolError;
use crate::socket_id::SocketId;
use std::sync::Arc;

/// A channel event's JSON text (`{"event":..,"channel":..,"data":..}`), shared by all shards.
pub type Payload = Arc<Vec<u8>>;

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
        payload: Payload,
        exclude: Option<SocketId>,
        /// HTTP publishes to cache channels update the cache; client events never do.
        from_http: bool,
    },
    /// To each shard with local subscribers of `channel`: queue `payload` on each of them.
    Deliver { app: AppIdx, channel: Arc<str>, payload: Payload, exclude: Option<SocketId> },
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
    /// To the owner of an idempotency key: claim or settle it.
    Idempotency(super::idempotency::IdemMsg),
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
        cache: Option<Option<Payload>>,
    },
    Refused(ProtocolError),
    Published(Occupancy),
    ChannelInfo { occupancy: Occupancy, cache: Option<(Payload, u64)> },
    Channels(Vec<(Arc<str>, Occupancy)>),
    Users(Vec<String>),
    /// Which of the asked users are online.
    Online(Vec<String>),
    Claim(super::idempotency::Claim),
}
