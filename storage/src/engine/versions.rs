use std::ops::Range;

use fjall::{Batch, PartitionHandle};

use super::Engine;
use crate::keys::{channel_key, message_prefix, parse_receipt_key, receipt_key, serial_of_history_key, version_key};
use crate::{
    Direction, MessageState, Receipt, RecordKind, StorageError, StreamMeta, VersionAction, VersionRecord, VersionWrite,
    VersionsPage, VersionsQuery,
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
    pub(super) fn stage_version(&self, batch: &mut Batch, ckey: &[u8], serial: u64, write: VersionWrite) {
        let VersionWrite { message, record, receipt } = write;
        batch.insert(&self.versions, version_key(ckey, message, serial), record.encode());
        if let Some(receipt) = receipt {
            let key = receipt_key(ckey, message, receipt.action, &receipt.op_id);
            batch.insert(&self.receipts, key, Receipt { delivery_serial: serial, ..receipt }.encode_value());
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

    pub(super) fn message_state(
        &self,
        ckey: &[u8],
        message: u64,
        receipts: bool,
    ) -> Result<Option<MessageState>, StorageError> {
        let prefix = message_prefix(ckey, message);
        let versions = self.versions.prefix(&prefix).map(|row| {
            let (k, v) = row.map_err(self.err("read versions"))?;
            self.decode_version(&k, &v)
        });
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
        }
        Ok(Some(state))
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
        // The create's version is the message's first, at its own serial.
        if self.versions.get(version_key(&ckey, message, message)).map_err(self.err("read versions"))?.is_none() {
            return Ok(None);
        }
        let (lo, hi) = match (q.direction, q.after) {
            (_, None) => (0, u64::MAX),
            (Direction::OldestFirst, Some(after)) => (after.saturating_add(1), u64::MAX),
            (Direction::NewestFirst, Some(0)) => return Ok(Some(VersionsPage { items: vec![], has_more: false })),
            (Direction::NewestFirst, Some(before)) => (0, before - 1),
        };
        let range = self.versions.range(version_key(&ckey, message, lo)..=version_key(&ckey, message, hi));
        let rows: Box<dyn Iterator<Item = fjall::Result<fjall::KvPair>>> = match q.direction {
            Direction::OldestFirst => Box::new(range),
            Direction::NewestFirst => Box::new(range.rev()),
        };
        let mut items = Vec::with_capacity(q.limit.min(1024));
        for row in rows {
            if items.len() == q.limit {
                return Ok(Some(VersionsPage { items, has_more: true }));
            }
            let (k, v) = row.map_err(self.err("read versions"))?;
            items.push(self.decode_version(&k, &v)?);
        }
        Ok(Some(VersionsPage { items, has_more: false }))
    }

    fn decode_version(&self, key: &[u8], value: &[u8]) -> Result<VersionRecord, StorageError> {
        serial_of_history_key(key)
            .and_then(|delivery_serial| VersionRecord::decode(value, delivery_serial))
            .ok_or_else(|| StorageError::corrupt(&self.path, "undecodable version"))
    }

    /// Removes the versions and receipts of the messages created at serials `created`, whose
    /// create rows the same batch removes.
    pub(super) fn stage_forget_messages(
        &self,
        batch: &mut Batch,
        ckey: &[u8],
        created: Range<u64>,
    ) -> Result<(), StorageError> {
        let keys = message_prefix(ckey, created.start)..message_prefix(ckey, created.end);
        for partition in [&self.versions, &self.receipts] {
            self.stage_remove_all(batch, partition, partition.range(keys.clone()))?;
        }
        Ok(())
    }

    /// Removes the versions and receipts of every message of the channel (reset, drop).
    pub(super) fn stage_forget_all_messages(&self, batch: &mut Batch, ckey: &[u8]) -> Result<(), StorageError> {
        for partition in [&self.versions, &self.receipts] {
            self.stage_remove_all(batch, partition, partition.prefix(ckey))?;
        }
        Ok(())
    }

    fn stage_remove_all(
        &self,
        batch: &mut Batch,
        partition: &PartitionHandle,
        rows: impl Iterator<Item = fjall::Result<fjall::KvPair>>,
    ) -> Result<(), StorageError> {
        for row in rows {
            let (k, _) = row.map_err(self.err("scan versions to remove"))?;
            batch.remove(partition, k);
        }
        Ok(())
    }
}
