//! Per-shard embedded store (fjall) for durable channel history, stream metadata, idempotency
//! records and token revocations. Each shard's store runs on its own thread; callers only
//! enqueue requests and await [`Reply`] futures, so executor threads never block on disk. Mutable
//! messages keep their versions and annotations beside their history rows, for as long as
//! their create row.

mod annotation;
mod codec;
mod config;
mod cursor;
mod engine;
mod error;
mod keys;
mod migrate;
mod push;
mod query;
mod record;
mod reply;
mod revocation;
mod store;
mod stream;
mod version;
mod worker;

pub use annotation::{
    AnnotationAction, AnnotationRecord, AnnotationWrite, AnnotationsPage, AnnotationsQuery, StoredSummary,
};
pub use config::{Fsync, Retention, RetentionOverrides, StoreConfig};
pub use cursor::{Cursor, CursorCheck, CursorCodec, CursorError};
pub use error::StorageError;
pub use migrate::open_all;
pub use push::{RegistryPage, Replaced, SubscriptionsOf, PUSH_REGISTRY};
pub use query::{Bounds, Continuity, Direction, HistoryItem, HistoryPage, HistoryQuery, HistoryView};
pub use record::{HistoryRecord, RecordKind};
pub use reply::{AppendTicket, Reply};
pub use revocation::Revocation;
pub use store::{shard_dir, Store};
pub use stream::{presence_channel, presence_stream, Purge, Purged, StreamMeta};
pub use version::{
    MessageState, Receipt, VersionAction, VersionData, VersionRecord, VersionWrite, VersionsPage, VersionsQuery,
};
pub use worker::StoreStats;
