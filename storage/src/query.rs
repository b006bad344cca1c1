use serde::{Deserialize, Serialize};

use crate::{MessageState, RecordKind, StreamMeta};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    NewestFirst,
    OldestFirst,
}

/// Inclusive bounds of a history read; part of the cursor so a page cannot be continued with
/// other bounds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    pub start_serial: Option<u64>,
    pub end_serial: Option<u64>,
    pub start_time_ms: Option<u64>,
    pub end_time_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub app: String,
    pub channel: String,
    pub limit: usize,
    pub direction: Direction,
    pub bounds: Bounds,
    /// The previous page's `next_cursor`, as the client sent it back: the page holds items
    /// strictly after its serial (oldest first) or strictly before it (newest first). The store
    /// checks it against the request and the channel's current stream.
    pub cursor: Option<String>,
    pub view: HistoryView,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HistoryView {
    /// Every row, as stored (connection recovery replays exactly what was delivered).
    Raw,
    /// What a history reader sees (HTTP/WebSocket history, rewind): mutation rows are left out,
    /// and each versioned create comes with the message's current state. `limit`, `has_more`
    /// and the cursor count only the rows returned.
    #[default]
    Latest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    pub serial: u64,
    pub published_at_ms: u64,
    pub message_id: String,
    pub event_name: String,
    pub payload: Vec<u8>,
    pub payload_size_bytes: u64,
    pub kind: RecordKind,
    /// The publisher's `tags` (a JSON object), if any.
    pub tags: Option<String>,
    /// Latest view only: the current state of the message a versioned create row made, while
    /// its versions are retained (without receipts or annotations).
    pub message: Option<MessageState>,
}

/// What is still retained of the stream (`continuity` in `docs/protocol/v2.md#history-page`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continuity {
    pub stream_id: String,
    pub oldest_available_serial: Option<u64>,
    pub newest_available_serial: Option<u64>,
    pub oldest_available_published_at_ms: Option<u64>,
    pub newest_available_published_at_ms: Option<u64>,
    pub retained_messages: u64,
    pub retained_bytes: u64,
    pub truncated_by_retention: bool,
}

impl Continuity {
    pub(crate) fn of(meta: &StreamMeta, bounds: &Bounds) -> Self {
        let retained = meta.has_retained();
        let evicted = meta.oldest_serial > 1;
        let truncated_by_retention = evicted
            && match (bounds.start_serial, bounds.start_time_ms) {
                (Some(start), _) => start < meta.oldest_serial,
                (None, Some(start)) => !retained || start < meta.oldest_published_at_ms,
                (None, None) => true,
            };
        Continuity {
            stream_id: meta.stream_id.clone(),
            oldest_available_serial: retained.then_some(meta.oldest_serial),
            newest_available_serial: retained.then_some(meta.newest_serial()),
            oldest_available_published_at_ms: retained.then_some(meta.oldest_published_at_ms),
            newest_available_published_at_ms: retained.then_some(meta.newest_published_at_ms),
            retained_messages: meta.retained_messages,
            retained_bytes: meta.retained_bytes,
            truncated_by_retention,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryPage {
    pub items: Vec<HistoryItem>,
    pub has_more: bool,
    /// Encoded cursor for the next page; `None` when `has_more` is false.
    pub next_cursor: Option<String>,
    /// `None` when the channel has no stream yet.
    pub continuity: Option<Continuity>,
}
