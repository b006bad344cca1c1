//! What a channel's owner hands the shards with subscribers: one message, encoded once per
//! encoding by the owner and shared (reference-counted) by every shard and socket.

use crate::config::AppIdx;
use crate::protocol::outbound::Encoding;
use crate::socket_id::SocketId;
use std::sync::Arc;
use std::time::Instant;

/// A channel event's JSON text, shared by all shards.
pub type Payload = Arc<Vec<u8>>;

/// One channel message in every encoding sockets may need (V1 sockets never see V2 fields).
#[derive(Clone)]
pub struct Broadcast {
    /// Indexed by `Encoding::index`; `None` for an encoding this message has no form in.
    payloads: [Option<Payload>; Encoding::COUNT],
    /// Its place in the channel's stream; `None` for ephemeral messages and member events.
    pub serial: Option<u64>,
    /// When the owner took the publish: delivering shards measure their latency from it.
    pub published_at: Instant,
}

impl Broadcast {
    /// A message with one payload per encoding, made by `encode`.
    pub fn new(serial: Option<u64>, published_at: Instant, mut encode: impl FnMut(Encoding) -> Payload) -> Broadcast {
        Broadcast { payloads: Encoding::ALL.map(|e| Some(encode(e))), serial, published_at }
    }

    /// A message that only sockets of `encoding` receive (a V2-only event); it takes no place in
    /// the stream.
    pub fn only(encoding: Encoding, published_at: Instant, payload: Payload) -> Broadcast {
        let mut payloads: [Option<Payload>; Encoding::COUNT] = Default::default();
        payloads[encoding.index()] = Some(payload);
        Broadcast { payloads, serial: None, published_at }
    }

    /// The payload for sockets of `encoding`.
    pub fn payload(&self, encoding: Encoding) -> Option<&Payload> {
        self.payloads[encoding.index()].as_ref()
    }

    /// Every encoding this message has, with its payload.
    pub fn payloads(&self) -> impl Iterator<Item = (Encoding, &Payload)> {
        Encoding::ALL.into_iter().filter_map(|e| self.payload(e).map(|p| (e, p)))
    }
}

/// To a shard with local subscribers of `channel`: queue the message on each of them except
/// `exclude`.
pub struct Deliver {
    pub app: AppIdx,
    pub channel: Arc<str>,
    pub message: Broadcast,
    pub exclude: Option<SocketId>,
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
    /// `extras.ephemeral`: no serial, no replay buffer (`docs/protocol/v2.md#ephemeral-messages`).
    pub ephemeral: bool,
}

pub enum EventData {
    Str(String),
    Raw(String),
}
