//! What a channel's owner hands the shards with subscribers: one message, encoded once per
//! encoding by the owner and shared (reference-counted) by every shard and socket.

use crate::config::AppIdx;
use crate::protocol::filter::{Attrs, Tags};
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
    /// For subscriptions in `ANNOTATION_SUBSCRIBE` mode only (raw annotation events).
    pub annotations_only: bool,
    /// What subscription filters see of a published message; `None` (member events,
    /// mutations, annotations): every subscriber gets it.
    pub attrs: Option<Arc<Attrs>>,
    /// Set when V2 sockets that asked for deltas may get this message as one
    /// (`docs/protocol/v2.md#delta-compression`).
    pub delta: Option<Arc<DeltaKey>>,
}

/// Where a message stands in a channel's delta streams.
pub struct DeltaKey {
    /// The base key: a socket's deltas chain the messages of one key (the event name, and
    /// the conflation value where the channel has a conflation key).
    pub key: Box<str>,
    pub event: Box<str>,
    /// The message's conflation value, named on its frames.
    pub conflation: Option<Box<str>>,
    /// Most keys one subscription keeps a stream for.
    pub max_keys: usize,
    /// The message's stream id and serial, repeated on delta frames.
    pub stream: Option<(Arc<str>, u64)>,
}

impl Broadcast {
    /// A message with its Pusher form `v1` (`None`: V1 sockets do not receive it) and its V2
    /// form `v2`, which V2 sockets in either append mode get.
    pub fn new(serial: Option<u64>, published_at: Instant, v1: Option<Payload>, v2: Payload) -> Broadcast {
        Broadcast {
            payloads: [v1, Some(v2.clone()), Some(v2)],
            serial,
            published_at,
            annotations_only: false,
            attrs: None,
            delta: None,
        }
    }

    /// The same message, filtered by `attrs` for filtered subscriptions.
    pub fn with_attrs(mut self, attrs: Option<Arc<Attrs>>) -> Broadcast {
        self.attrs = attrs;
        self
    }

    /// The same message, for subscriptions in `ANNOTATION_SUBSCRIBE` mode only.
    pub fn to_annotation_subscribers(mut self) -> Broadcast {
        self.annotations_only = true;
        self
    }

    /// An append's form for sockets in `append_mode=full`: the whole text so far.
    pub fn with_full_append(mut self, full: Payload) -> Broadcast {
        self.payloads[Encoding::V2JsonFull.index()] = Some(full);
        self
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
    /// Who published it: the signed-in user of the HTTP publish's `socket_id`, if any. A
    /// versioned create records it as the message's creator (`message_*_own` grants).
    pub creator: Option<Arc<str>>,
    /// Publisher-supplied `message_id` (V2), else the owner makes one.
    pub message_id: Option<String>,
    /// `extras` as raw JSON, forwarded to V2 sockets only.
    pub extras: Option<String>,
    /// The publisher's `tags` (HTTP publishes): filtered on, and in V2 frames when
    /// `tag_filtering.enable_tags` is on.
    pub tags: Option<Tags>,
    /// `delta: false` on the publish: never sent as a delta.
    pub no_delta: bool,
    /// `extras.ephemeral`: no serial, no replay buffer (`docs/protocol/v2.md#ephemeral-messages`).
    pub ephemeral: bool,
    /// `extras.ai.transport.status` is `streaming`: as a versioned create on an AI channel,
    /// the message opens a stream (`ai_streams.rs`).
    pub opens_stream: bool,
}

pub enum EventData {
    Str(String),
    Raw(String),
}
