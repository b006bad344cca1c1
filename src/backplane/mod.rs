//! The seam between this node and the others (`docs/architecture.md#several-nodes`).
//!
//! One node needs nothing here: each channel's owner shard orders its operations and the shard
//! mesh fans them out. With several nodes, a channel's operations come from every node, so
//! something outside the nodes must order them: a [`Backplane`] is a cluster-wide, ordered log
//! of channel operations. A node appends an [`Intent`] (everything every node needs to carry
//! the operation out identically); the log gives it its place, the channel's next serial when
//! it takes one, and brings it back to every node, this one included, in log order. Each node's
//! owner shard then carries it out as it would a local publish: it stores it in its own store,
//! keeps it in its replay buffer and fans it out to its own sockets. So every node holds the
//! whole stream of every channel, and a client resumes, rewinds or reads history on any node.
//!
//! The shards see only this trait; `redis` is the one implementation today. Besides the log,
//! it holds what must be decided once for the cluster: publish idempotency keys, and which
//! nodes are alive (heartbeats; a node that misses them is appended as [`Entry::Gone`]).

pub mod redis;

use crate::metrics::BackplaneFigures;
use futures_channel::{mpsc, oneshot};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What the cluster log carries.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Entry {
    /// A channel operation, carried out by its channel's owner on every node.
    Publish(Intent),
    /// An action on every node's sockets (`NodeAction`), carried out by shard 0 of every node
    /// but the one that appended it, which acted before appending.
    Nodes(NodeAction),
    /// A node's share of a channel changed: applied by the channel's owner on every node.
    Share(Share),
    /// An operator changed a channel's durable history: carried out by the channel's owner on
    /// every node, so every node keeps the same history.
    History(HistoryChange),
    /// An annotation of a message or its delete: made by the channel's owner on every node.
    Annotate(AnnotationIntent),
    /// An update, delete or append of a mutable message: applied by the channel's owner on
    /// every node under the serial the log gave it.
    Mutate(MutationIntent),
    /// `node` missed its heartbeats and is taken for dead; `by` is the node that noticed. Every
    /// shard of every node removes `node`'s share of its channels.
    Gone { node: String, by: String },
}

/// A node's share of one channel (its subscriptions and presence members there), as every
/// node keeps it in one cluster-wide view of the channel (`shard/channel/cluster.rs`). A node
/// appends a change when its own share changes; the view changes when the log brings it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Share {
    pub app: String,
    pub channel: String,
    pub node: String,
    pub change: ShareChange,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "c", rename_all = "snake_case")]
pub enum ShareChange {
    /// The node's first socket of `user` joined; `socket` is told no `member_added` of itself.
    Join { user: String, info: String, socket: String },
    /// The node's last socket of `user` left (`socket`); `cause` as presence history names it.
    Leave { user: String, cause: String, socket: String },
    /// A member replaced its `user_info` from the node's `socket`.
    Update { user: String, info: String, socket: String },
    /// The node's subscriptions of the channel now.
    Count { n: u64 },
    /// The node's whole share, replacing what the cluster held of it: appended after a
    /// reconnect (what failed to append meanwhile is repaired so), and at start from what Redis
    /// keeps of every live node's share.
    Sync { n: u64, members: Vec<(String, String)> },
    /// A webhook's re-check delay ended on the node that started it: `channel_vacated`
    /// (`user` none) or `member_removed`, unless the log called it off meanwhile.
    Due {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
    },
}

/// A purge or reset of a channel's durable history (`docs/protocol/v2.md#history-operator-endpoints`),
/// or a reset of its presence history.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct HistoryChange {
    pub app: String,
    pub channel: String,
    pub op: HistoryOp,
    /// The node that took the request and its token there: that node answers the operator
    /// when its own copy has been carried out.
    pub node: String,
    pub token: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "h", rename_all = "snake_case")]
pub enum HistoryOp {
    /// A new stream, whose id the node that took the request chose; serials from 1. The log
    /// restarts the channel's serials with it.
    Reset {
        stream_id: String,
    },
    /// A new stream of the channel's presence history (its id chosen alike).
    PresenceReset {
        stream_id: String,
    },
    PurgeAll,
    PurgeBeforeSerial {
        serial: u64,
    },
    /// Rows published before this unix time (ms).
    PurgeBeforeTime {
        ms: u64,
    },
}

/// An annotation request as the cluster log carries it (`docs/protocol/v2.md#annotations`). It
/// takes no channel serial; every node numbers it after the message's earlier annotation
/// events, alike since every node applies the same ones in the same order.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct AnnotationIntent {
    pub app: String,
    pub channel: String,
    pub stream_id: String,
    /// The annotated message's serial.
    pub message: u64,
    pub change: crate::protocol::annotations::Change,
    /// The annotation's id and time, decided by the node that took the request.
    pub id: String,
    pub at_ms: u64,
    /// The node that took the request and its token there (it answers).
    pub node: String,
    pub token: u64,
}

/// A mutation of a mutable message as the cluster log carries it
/// (`docs/architecture.md#several-nodes`). The node that took the request checked it against
/// the message as it stood after `versions` versions; the log takes it only if no other
/// mutation of the message took that place first (else the node checks again), so every node
/// applies it to the same state, with the same outcome.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct MutationIntent {
    pub app: String,
    pub channel: String,
    /// The message's stream and serial.
    pub stream_id: String,
    pub message: u64,
    /// How many versions the message had when the mutation was checked.
    pub versions: u32,
    pub mutation: crate::protocol::mutation::Mutation,
    /// The client the version is recorded as made by, and whether it may mutate only its own
    /// messages (checked where the request came in; checked again on every node alike).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default)]
    pub own_only: bool,
    /// The version's message id and time, decided by the node that took the request.
    pub message_id: String,
    pub at_ms: u64,
    /// The node that took the request and its token there (it answers).
    pub node: String,
    pub token: u64,
}

/// An action every node takes on its own sockets and state.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "a", rename_all = "snake_case")]
pub enum NodeAction {
    /// `terminate_connections` (or `force_reconnect` with `reconnect`): close a user's sockets.
    CloseUser { app: String, user: String, reconnect: bool, node: String },
    /// A capability-token revocation (`docs/protocol/v2.md#revocation`).
    Revoke {
        app: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jti: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
        expires_at_ms: u64,
        reason: String,
        node: String,
    },
}

impl NodeAction {
    /// The node that appended it.
    pub fn node(&self) -> &str {
        match self {
            NodeAction::CloseUser { node, .. } | NodeAction::Revoke { node, .. } => node,
        }
    }
}

/// A channel operation as the cluster log carries it. The publisher decides everything that
/// would otherwise differ between nodes (the message id, the publish time).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Intent {
    /// The app's id (stable across nodes, unlike its position in a config file).
    pub app: String,
    pub channel: String,
    pub name: String,
    /// The JSON text of `data`: a string's contents (`raw == false`) or raw JSON.
    pub data: String,
    pub raw: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creator: Option<String>,
    pub message_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extras: Option<String>,
    /// The tags as a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<String>,
    #[serde(default)]
    pub no_delta: bool,
    #[serde(default)]
    pub ephemeral: bool,
    #[serde(default)]
    pub opens_stream: bool,
    /// A client event (not an HTTP publish).
    #[serde(default)]
    pub client: bool,
    /// The publisher's socket, which does not receive its own message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<String>,
    pub published_at_ms: u64,
    /// The node that appended it and its token there: that node answers the publisher when
    /// its own copy has been carried out.
    pub node: String,
    pub token: u64,
}

/// What the log brings a shard: an intent with its place, an action on the node, a change of
/// a node's share of a channel, or a node gone. `Resync` is the backplane's own: it reached
/// Redis again, and each shard appends its share of its channels anew.
#[derive(Debug)]
pub enum FromLog {
    Placed(Placed),
    Mutate(Placed<MutationIntent>),
    Nodes(NodeAction),
    Share(Share),
    History(HistoryChange),
    Annotate(AnnotationIntent),
    /// `node` is gone from the channels of `part`.
    Gone {
        node: String,
        by: String,
        part: LogPart,
    },
    /// Append this node's share of the channels of `part` anew.
    Resync(LogPart),
}

/// One of the parts a log is split into (a Redis Cluster spreads them over its nodes), each
/// ordered on its own: a channel's entries are all in one part, so per-channel order holds,
/// and what concerns every channel (a node gone) is appended to every part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogPart {
    pub index: u16,
    pub count: u16,
}

impl LogPart {
    /// A log in one part.
    pub const WHOLE: LogPart = LogPart { index: 0, count: 1 };

    /// The part a channel's entries go to: the same on every node and in every version, so a
    /// stable hash of the channel (CRC-16, as Redis Cluster's key slots).
    pub fn of(app: &str, channel: &str, count: u16) -> u16 {
        let mut crc = crc16::State::<crc16::XMODEM>::new();
        crc.update(app.as_bytes());
        crc.update(b"\n");
        crc.update(channel.as_bytes());
        crc.get() % count.max(1)
    }

    /// Whether a channel's entries are in this part.
    pub fn holds(&self, app: &str, channel: &str) -> bool {
        self.count <= 1 || LogPart::of(app, channel, self.count) == self.index
    }
}

/// An intent with its place in the cluster log, for the owner shard of its channel.
#[derive(Debug)]
pub struct Placed<T = Intent> {
    /// The channel's stream id in the cluster ("" for an intent that takes no serial).
    pub stream_id: String,
    /// The channel's serial for it; 0 when it takes none (ephemeral messages, client events
    /// of channels without serials are still ordered by the log).
    pub serial: u64,
    pub intent: T,
}

/// An append to the cluster log.
pub struct Append {
    pub entry: Entry,
    /// For a publish (or a mutation) that takes the channel's next serial: the stream this node
    /// knows for the channel and its newest serial. The log continues from them when it holds nothing for
    /// the channel (a new cluster, or a Redis that lost its data), so that serials never go
    /// back.
    pub takes_serial: Option<(String, u64)>,
}

/// What the log did with an append it answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Appended {
    /// It is in the log.
    Taken,
    /// A mutation checked against an older state of its message than the log's (another
    /// mutation of it came first): not appended; check it again once this node caught up.
    Stale,
    /// A mutation of a message whose stream the channel no longer has (an operator reset it):
    /// not appended.
    StreamGone,
}

/// Why an append did not happen (or whether it did is unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackplaneError(pub String);

impl fmt::Display for BackplaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The answer to a backplane request; awaitable from a shard, as a store reply is. A
/// backplane thread that stopped before answering yields an error like any other.
#[must_use = "a backplane request's outcome is only known by awaiting its reply"]
pub struct Reply<T>(oneshot::Receiver<Result<T, BackplaneError>>);

/// Where a backplane thread sends the answer to one request.
pub type Responder<T> = oneshot::Sender<Result<T, BackplaneError>>;

impl<T> Reply<T> {
    pub fn pair() -> (Responder<T>, Reply<T>) {
        let (tx, rx) = oneshot::channel();
        (tx, Reply(rx))
    }
}

impl<T> Future for Reply<T> {
    type Output = Result<T, BackplaneError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.0).poll(cx) {
            Poll::Ready(Ok(answer)) => Poll::Ready(answer),
            Poll::Ready(Err(_)) => Poll::Ready(Err(BackplaneError("the backplane stopped".into()))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A publish idempotency key as the cluster knows it: the app's id, its key space, the key.
pub type IdempotencyKey = (String, u8, String);

/// What the cluster holds for an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// It was free and is now held by the asker.
    Claimed,
    /// Another request (on any node) holds it.
    InProgress,
    /// A publish with it succeeded inside the window: its response body.
    Stored(String),
}

/// What the log brings one shard of this node, in log order.
pub type Inbox = mpsc::UnboundedReceiver<FromLog>;

/// A cluster-wide ordered log of channel operations.
pub trait Backplane: Send + Sync {
    /// This node's id in the cluster (new at every start).
    fn node_id(&self) -> &str;
    /// Appends to the log. Never blocks: the append goes to the backplane's own thread.
    fn append(&self, append: Append) -> Reply<Appended>;
    /// The entries for `shard`'s channels (and for shard 0, the actions on the node), in log
    /// order; at start, first the share of every live node (`ShareChange::Sync`). Taken once,
    /// by that shard.
    fn take_inbox(&self, shard: usize) -> Option<Inbox>;
    /// Takes an idempotency key cluster-wide for `ttl_ms`, unless another node holds it or
    /// kept a response for it.
    fn claim_key(&self, key: &IdempotencyKey, ttl_ms: u64) -> Reply<KeyState>;
    /// Keeps a publish's response for the key's window (`Some`), or frees the key.
    fn settle_key(&self, key: &IdempotencyKey, body: Option<String>, ttl_ms: u64) -> Reply<()>;
    /// This node is stopping: it beats no more and is taken for dead at the next node's
    /// heartbeat, which removes its share and sends the webhooks that follow (this node's
    /// sockets are closing; their leaves are not appended one by one).
    fn depart(&self);
    /// Whether appends and the log's feed both reach the backplane now.
    fn connected(&self) -> bool;
    /// Its state and counters, for the metrics endpoint.
    fn figures(&self) -> BackplaneFigures;
}

#[cfg(test)]
mod tests {
    use super::LogPart;

    #[test]
    fn a_channel_is_in_one_part() {
        for count in [1u16, 2, 8] {
            let parts: Vec<LogPart> = (0..count).map(|index| LogPart { index, count }).collect();
            for channel in ["a", "presence-room", "private-x"] {
                assert_eq!(parts.iter().filter(|p| p.holds("app-id", channel)).count(), 1);
            }
        }
        assert!(LogPart::WHOLE.holds("app-id", "anything"));
        // The hash is fixed (nodes of different versions must agree): CRC-16/XMODEM of the
        // channel's field, whose check value is 0x31C3.
        assert_eq!(crc16::State::<crc16::XMODEM>::calculate(b"123456789"), 0x31C3);
        let field = crc16::State::<crc16::XMODEM>::calculate(b"app-id\npresence-room");
        assert_eq!(LogPart::of("app-id", "presence-room", 7), field % 7);
    }
}
