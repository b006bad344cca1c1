use fjall::{Batch, PartitionHandle};

use super::Engine;
use crate::keys::{history_key, parse_channel_key, serial_of_history_key};
use crate::{HistoryRecord, RecordKind, StorageError, StreamMeta};

impl Engine {
    /// Removes the oldest rows of a stream while `evict(published_at, meta)` holds, keeping the
    /// meta's floor and counters in step, and the versions, receipts, annotations and
    /// summaries of the messages those rows created. Returns whether anything was removed.
    ///
    /// A mutable message's update, delete and append rows belong to the message: they do not
    /// count as messages, and one found at the floor is removed whatever `evict` says, since
    /// its create (older) is gone already.
    pub(super) fn evict_oldest(
        &self,
        batch: &mut Batch,
        ckey: &[u8],
        meta: &mut StreamMeta,
        evict: impl Fn(u64, &StreamMeta) -> bool,
    ) -> Result<bool, StorageError> {
        let floor = meta.oldest_serial;
        let range = history_key(ckey, meta.oldest_serial)..=history_key(ckey, meta.newest_serial());
        let mut oldest_kept_at = 0;
        for row in self.history.range(range) {
            let (k, v) = row.map_err(self.err("retention scan"))?;
            let corrupt = || StorageError::corrupt(&self.path, "undecodable history row");
            let t = HistoryRecord::published_at_of(&v).ok_or_else(corrupt)?;
            let mutation = matches!(HistoryRecord::kind_of(&v).ok_or_else(corrupt)?, RecordKind::Mutation { .. });
            if !mutation && !evict(t, meta) {
                oldest_kept_at = t;
                break;
            }
            let serial = serial_of_history_key(&k).ok_or_else(corrupt)?;
            meta.retained_bytes -= HistoryRecord::payload_len_of(&v).ok_or_else(corrupt)?;
            if !mutation {
                meta.retained_messages -= 1;
            }
            meta.oldest_serial = serial + 1;
            batch.remove(&self.history, k);
        }
        meta.oldest_published_at_ms = oldest_kept_at;
        let removed = meta.oldest_serial > floor;
        if removed {
            // Messages below the old floor went with their rows, so only the new gap is scanned.
            self.stage_forget_messages(batch, ckey, floor..meta.oldest_serial)?;
        }
        Ok(removed)
    }

    /// Applies retention to the given streams (count always, age when `now_ms` is given) in
    /// one batch. Returns whether anything was written.
    pub(crate) fn apply_retention(&mut self, ckeys: &[Vec<u8>], now_ms: Option<u64>) -> Result<bool, StorageError> {
        let mut batch = self.keyspace.batch();
        let mut changed = Vec::new();
        for ckey in ckeys {
            let Some(meta) = self.metas.get(ckey) else {
                continue;
            };
            let Some((app, channel)) = parse_channel_key(ckey) else {
                continue;
            };
            let retention = self.cfg.retention_for(&app, &channel);
            let max_count = retention.max_messages.unwrap_or(u64::MAX);
            let max_bytes = retention.max_bytes.unwrap_or(u64::MAX);
            let cutoff = match (now_ms, retention.max_age) {
                (Some(now), Some(age)) => now.saturating_sub(age.as_millis() as u64),
                _ => 0,
            };
            let over = |m: &StreamMeta| m.retained_messages > max_count || m.retained_bytes > max_bytes;
            let too_old = meta.has_retained() && meta.oldest_published_at_ms < cutoff;
            if !over(meta) && !too_old {
                continue;
            }
            let mut meta = meta.clone();
            let evict = |t: u64, m: &StreamMeta| over(m) || t < cutoff;
            if self.evict_oldest(&mut batch, ckey, &mut meta, evict)? {
                batch.insert(&self.streams, ckey.clone(), meta.encode());
                changed.push((ckey.clone(), meta));
            }
        }
        if changed.is_empty() {
            return Ok(false);
        }
        batch.commit().map_err(self.err("commit retention"))?;
        self.metas.extend(changed);
        Ok(true)
    }

    pub(crate) fn all_stream_keys(&self) -> Vec<Vec<u8>> {
        self.metas.keys().cloned().collect()
    }

    /// Removes expired idempotency entries. Returns whether anything was written.
    pub(crate) fn expire_idempotency(&self, now_ms: u64) -> Result<bool, StorageError> {
        self.expire_rows(&self.idempotency, now_ms, "idempotency")
    }

    /// Removes the rows of `partition` whose value starts with an expiry (unix ms, 8 bytes BE)
    /// at or before `now_ms` (and rows too short to hold one). Returns whether any was.
    pub(super) fn expire_rows(
        &self,
        partition: &PartitionHandle,
        now_ms: u64,
        what: &'static str,
    ) -> Result<bool, StorageError> {
        let mut batch = self.keyspace.batch();
        for row in partition.iter() {
            let (k, v) = row.map_err(self.err(what))?;
            let expired =
                v.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).is_none_or(|b| u64::from_be_bytes(b) <= now_ms);
            if expired {
                batch.remove(partition, k);
            }
        }
        if batch.is_empty() {
            return Ok(false);
        }
        batch.commit().map_err(self.err(what))?;
        Ok(true)
    }
}
