use fjall::{Batch, PersistMode, Slice};

use super::Engine;
use crate::keys::{channel_key, history_key};
use crate::{Purge, Purged, StorageError, StreamMeta};

/// A stream's meta and raw history rows, with its messages' rows (versions, receipts,
/// annotations, summaries), moved between shard stores when the shard count changes. The key
/// layout is the same in every store, so rows move byte for byte.
pub(crate) struct StreamExport {
    pub(crate) meta: StreamMeta,
    pub(crate) rows: Vec<(Slice, Slice)>,
    /// The rows of each of `Engine::message_partitions`, in its order.
    pub(crate) message_rows: Vec<Vec<(Slice, Slice)>>,
}

impl Engine {
    /// Replaces the channel's stream by a fresh one named `stream_id` (serials from
    /// `next_serial`), purging the old stream's rows.
    pub(crate) fn reset_stream(
        &mut self,
        app: &str,
        channel: &str,
        stream_id: &str,
        next_serial: u64,
    ) -> Result<Purged, StorageError> {
        let ckey = channel_key(app, channel)?;
        let previous = self.metas.get(&ckey).cloned();
        let mut batch = self.keyspace.batch();
        self.stage_purge(&mut batch, &ckey)?;
        let meta = StreamMeta { next_serial, oldest_serial: next_serial, ..StreamMeta::fresh(stream_id.to_string()) };
        batch.insert(&self.streams, ckey.clone(), meta.encode());
        self.commit_synced(batch, "commit new stream")?;
        self.metas.insert(ckey, meta.clone());
        let (messages, bytes) = previous.as_ref().map_or((0, 0), |m| (m.retained_messages, m.retained_bytes));
        Ok(Purged { messages, bytes, previous_stream_id: previous.map(|m| m.stream_id), meta })
    }

    /// Removes retained rows of the channel's stream by `mode`; the stream id and the next
    /// serial stay. `None` when the channel has no stream.
    pub(crate) fn purge_stream(
        &mut self,
        app: &str,
        channel: &str,
        mode: Purge,
    ) -> Result<Option<Purged>, StorageError> {
        let ckey = channel_key(app, channel)?;
        let Some(before) = self.metas.get(&ckey).cloned() else { return Ok(None) };
        let mut meta = before.clone();
        let mut batch = self.keyspace.batch();
        let removed = self.evict_oldest(&mut batch, &ckey, &mut meta, |published_at, m| match mode {
            Purge::All => true,
            Purge::BeforeSerial(serial) => m.oldest_serial < serial,
            Purge::BeforeTime(ms) => published_at < ms,
        })?;
        if removed {
            batch.insert(&self.streams, ckey.clone(), meta.encode());
            self.commit_synced(batch, "commit purge")?;
            self.metas.insert(ckey, meta.clone());
        }
        Ok(Some(Purged {
            messages: before.retained_messages - meta.retained_messages,
            bytes: before.retained_bytes - meta.retained_bytes,
            previous_stream_id: Some(before.stream_id),
            meta,
        }))
    }

    /// The channel's stream as stored, if it has one.
    pub(crate) fn stream_meta(&self, app: &str, channel: &str) -> Result<Option<StreamMeta>, StorageError> {
        Ok(self.metas.get(&channel_key(app, channel)?).cloned())
    }

    fn stage_purge(&self, batch: &mut Batch, ckey: &[u8]) -> Result<(), StorageError> {
        for row in self.history.range(history_key(ckey, 0)..=history_key(ckey, u64::MAX)) {
            let (k, _) = row.map_err(self.err("purge scan"))?;
            batch.remove(&self.history, k);
        }
        self.stage_forget_all_messages(batch, ckey)
    }

    /// Stream moves are rare and must not be lost: commit and fsync before answering.
    fn commit_synced(&self, batch: Batch, during: &'static str) -> Result<(), StorageError> {
        batch.commit().map_err(self.err(during))?;
        self.persist(PersistMode::SyncData)
    }

    pub(crate) fn export_stream(&self, app: &str, channel: &str) -> Result<Option<StreamExport>, StorageError> {
        let ckey = channel_key(app, channel)?;
        let Some(meta) = self.metas.get(&ckey) else {
            return Ok(None);
        };
        Ok(Some(StreamExport {
            meta: meta.clone(),
            rows: self.export_rows(self.history.range(history_key(&ckey, 0)..=history_key(&ckey, u64::MAX)))?,
            message_rows: self
                .message_partitions()
                .into_iter()
                .map(|partition| self.export_rows(partition.prefix(&ckey)))
                .collect::<Result<_, _>>()?,
        }))
    }

    fn export_rows(
        &self,
        rows: impl Iterator<Item = fjall::Result<fjall::KvPair>>,
    ) -> Result<Vec<(Slice, Slice)>, StorageError> {
        rows.collect::<Result<Vec<_>, _>>().map_err(self.err("export stream"))
    }

    pub(crate) fn import_stream(&mut self, app: &str, channel: &str, export: StreamExport) -> Result<(), StorageError> {
        let ckey = channel_key(app, channel)?;
        // No purge first: a remove and an insert of one key in one batch share a seqno, and a
        // leftover copy here can only be this same stream from an interrupted earlier move.
        let mut batch = self.keyspace.batch();
        let StreamExport { meta, rows, message_rows } = export;
        let partitions = std::iter::once(&self.history).chain(self.message_partitions());
        for (partition, rows) in partitions.zip(std::iter::once(rows).chain(message_rows)) {
            for (k, v) in rows {
                batch.insert(partition, k, v);
            }
        }
        batch.insert(&self.streams, ckey.clone(), meta.encode());
        self.commit_synced(batch, "commit imported stream")?;
        self.metas.insert(ckey, meta);
        Ok(())
    }

    pub(crate) fn drop_stream(&mut self, app: &str, channel: &str) -> Result<(), StorageError> {
        let ckey = channel_key(app, channel)?;
        let mut batch = self.keyspace.batch();
        self.stage_purge(&mut batch, &ckey)?;
        batch.remove(&self.streams, ckey.clone());
        self.commit_synced(batch, "commit dropped stream")?;
        self.metas.remove(&ckey);
        Ok(())
    }
}
