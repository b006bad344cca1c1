use std::ops::Range;

use fjall::{Batch, KvPair, PartitionHandle};

use super::{Engine, WriteRound};
use crate::keys::{channel_key, message_prefix, parse_receipt_key, receipt_key, serial_of_history_key, version_key};
use crate::{
    AnnotationRecord, Direction, MessageState, Receipt, RecordKind, StorageError, StreamMeta, VersionAction,
    VersionRecord, VersionWrite, VersionsPage, VersionsQuery,
};

/// Refuses a version write that would break what reads rely on: a create's version is the
/// message's first (at its own serial, on a `VersionedCreate` row), and a mutation's message is
/// retained and older than the mutation (on a `Mutation` row naming it). A message evicted
/// since the server looked it up is refused here rather than leaving versions nothing removes.
pub(super) fn check_version_write(
    meta: &StreamMeta,
    serial: u64,
    kind: RecordKind,
    write: &VersionWrite,
) -> Result<(), StorageError> {
    let refuse = |why: &str| Err(StorageError::InvalidInput(format!("version write at serial {serial}: {why}")));
    let message = write.message;
    match (write.record.action, kind) {
        (VersionAction::Create, RecordKind::VersionedCreate) if message == serial => Ok(()),
        (VersionAction::Create, _) => refuse("a create belongs on a versioned create row at its message's serial"),
        (_, RecordKind::Mutation { message: m }) if m == message => {
            if message < meta.oldest_serial || message >= serial {
                refuse(&format!("message {message} is not a retained earlier message"))
            } else {
                Ok(())
            }
        }
        _ => refuse("a mutation belongs on a mutation row naming its message"),
    }
}

impl Engine {
    pub(super) fn stage_version(&self, round: &mut WriteRound, ckey: &[u8], serial: u64, write: VersionWrite) {
        let VersionWrite { message, record, receipt } = write;
        if record.action == VersionAction::Create {
            round.annotated.insert(message_prefix(ckey, message), 0);
        }
        round.batch.insert(&self.versions, version_key(ckey, message, serial), record.encode());
        if let Some(receipt) = receipt {
            let key = receipt_key(ckey, message, receipt.action, &receipt.op_id);
            round.batch.insert(&self.receipts, key, Receipt { delivery_serial: serial, ..receipt }.encode_value());
        }
    }

    pub(crate) fn message(
        &self,
        app: &str,
        channel: &str,
        message: u64,
        receipts: bool,
    ) -> Result<Option<MessageState>, StorageError> {
        self.message_state(&channel_key(app, channel)?, message, receipts)
    }

    /// With `receipts`, the state carries every receipt and annotation event (the owner's load).
    pub(super) fn message_state(
        &self,
        ckey: &[u8],
        message: u64,
        receipts: bool,
    ) -> Result<Option<MessageState>, StorageError> {
        let prefix = message_prefix(ckey, message);
        let versions = self.decode_rows(self.versions.prefix(&prefix), VersionRecord::decode, "version");
        let Some(mut state) = MessageState::fold(message, versions.collect::<Result<Vec<_>, _>>()?) else {
            return Ok(None);
        };
        if receipts {
            for row in self.receipts.prefix(&prefix) {
                let (k, v) = row.map_err(self.err("read receipts"))?;
                let receipt = parse_receipt_key(&k, prefix.len())
                    .and_then(|(action, op_id)| Receipt::decode_value(action, op_id, &v))
                    .ok_or_else(|| StorageError::corrupt(&self.path, "undecodable receipt"))?;
                state.receipts.push(receipt);
            }
            let annotations = self.annotations.prefix(&prefix);
            state.annotations =
                self.decode_rows(annotations, AnnotationRecord::decode, "annotation").collect::<Result<_, _>>()?;
        }
        Ok(Some(state))
    }

    /// Whether the message's create version is stored: its versions, annotations and summaries
    /// exist only while it does.
    pub(super) fn message_known(&self, ckey: &[u8], message: u64) -> Result<bool, StorageError> {
        // The create's version is the message's first, at its own serial.
        self.versions.contains_key(version_key(ckey, message, message)).map_err(self.err("read versions"))
    }

    pub(crate) fn versions(
        &self,
        app: &str,
        channel: &str,
        message: u64,
        q: VersionsQuery,
    ) -> Result<Option<VersionsPage>, StorageError> {
        if q.limit == 0 {
            return Err(StorageError::InvalidInput("versions limit must be positive".into()));
        }
        let ckey = channel_key(app, channel)?;
        if !self.message_known(&ckey, message)? {
            return Ok(None);
        }
        let (lo, hi) = match (q.direction, q.after) {
            (_, None) => (0, u64::MAX),
            (Direction::OldestFirst, Some(after)) => (after.saturating_add(1), u64::MAX),
            (Direction::NewestFirst, Some(0)) => return Ok(Some(VersionsPage { items: vec![], has_more: false })),
            (Direction::NewestFirst, Some(before)) => (0, before - 1),
        };
        let range = self.versions.range(version_key(&ckey, message, lo)..=version_key(&ckey, message, hi));
        let rows: Box<dyn Iterator<Item = fjall::Result<KvPair>>> = match q.direction {
            Direction::OldestFirst => Box::new(range),
            Direction::NewestFirst => Box::new(range.rev()),
        };
        let rows = self.decode_rows(rows, VersionRecord::decode, "version");
        let (items, has_more) = take_page(rows, q.limit, |_| true)?;
        Ok(Some(VersionsPage { items, has_more }))
    }

    /// Decodes rows keyed by a serial suffix (versions by delivery serial, annotations by
    /// annotation serial); `what` names them in errors.
    pub(super) fn decode_rows<'a, T: 'a>(
        &'a self,
        rows: impl Iterator<Item = fjall::Result<KvPair>> + 'a,
        decode: fn(&[u8], u64) -> Option<T>,
        what: &'static str,
    ) -> impl Iterator<Item = Result<T, StorageError>> + 'a {
        rows.map(move |row| {
            let (k, v) = row.map_err(self.err("read message rows"))?;
            serial_of_history_key(&k)
                .and_then(|serial| decode(&v, serial))
                .ok_or_else(|| StorageError::corrupt(&self.path, format!("undecodable {what}")))
        })
    }

    /// Every partition keyed under `message_prefix`: what a message leaves behind when its
    /// create row goes, and what moves with its stream.
    pub(super) fn message_partitions(&self) -> [&PartitionHandle; 4] {
        [&self.versions, &self.receipts, &self.annotations, &self.summaries]
    }

    /// Removes everything stored under the messages created at serials `created`, whose create
    /// rows the same batch removes.
    pub(super) fn stage_forget_messages(
        &self,
        batch: &mut Batch,
        ckey: &[u8],
        created: Range<u64>,
    ) -> Result<(), StorageError> {
        let keys = message_prefix(ckey, created.start)..message_prefix(ckey, created.end);
        for partition in self.message_partitions() {
            self.stage_remove_all(batch, partition, partition.range(keys.clone()))?;
        }
        Ok(())
    }

    /// Removes everything stored under every message of the channel (reset, drop).
    pub(super) fn stage_forget_all_messages(&self, batch: &mut Batch, ckey: &[u8]) -> Result<(), StorageError> {
        for partition in self.message_partitions() {
            self.stage_remove_all(batch, partition, partition.prefix(ckey))?;
        }
        Ok(())
    }

    fn stage_remove_all(
        &self,
        batch: &mut Batch,
        partition: &PartitionHandle,
        rows: impl Iterator<Item = fjall::Result<KvPair>>,
    ) -> Result<(), StorageError> {
        for row in rows {
            let (k, _) = row.map_err(self.err("scan message rows to remove"))?;
            batch.remove(partition, k);
        }
        Ok(())
    }
}

/// Up to `limit` of the `items` that `keep` accepts, and whether another accepted one follows.
pub(super) fn take_page<T>(
    items: impl Iterator<Item = Result<T, StorageError>>,
    limit: usize,
    keep: impl Fn(&T) -> bool,
) -> Result<(Vec<T>, bool), StorageError> {
    let mut page = Vec::with_capacity(limit.min(1024));
    for item in items {
        let item = item?;
        if !keep(&item) {
            continue;
        }
        if page.len() == limit {
            return Ok((page, true));
        }
        page.push(item);
    }
    Ok((page, false))
}
