//! The synchronous side of a shard store: owns the fjall keyspace and runs only on the store
//! thread.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fjall::{Batch, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

use crate::cursor::SECRET_LEN;
use crate::keys::{channel_key, history_key, idempotency_key, parse_channel_key};
use crate::worker::AppendRow;
use crate::{RecordKind, StorageError, StoreConfig, StreamMeta};

mod annotations;
mod history;
mod push;
mod retention;
mod revocations;
mod streams;
mod versions;

pub(crate) use streams::StreamExport;

const FORMAT_VERSION: u32 = 1;
const FORMAT_KEY: &[u8] = b"format_version";
const SECRET_KEY: &[u8] = b"cursor_secret";

/// Writes gathered during one group-commit round; stream metas are staged here so a failed
/// commit leaves the in-memory metas untouched.
pub(crate) struct WriteRound {
    batch: Batch,
    metas: HashMap<Vec<u8>, StreamMeta>,
    /// The newest annotation serial (0 for none) of each message, by `message_prefix`, that
    /// the round created or annotated: the batch cannot be read back, and a message's
    /// annotations may follow its create, and each other, within one round.
    annotated: HashMap<Vec<u8>, u64>,
}

impl WriteRound {
    pub(crate) fn is_empty(&self) -> bool {
        self.batch.is_empty() && self.metas.is_empty()
    }
}

pub(crate) struct Engine {
    path: PathBuf,
    cfg: StoreConfig,
    keyspace: Keyspace,
    history: PartitionHandle,
    streams: PartitionHandle,
    idempotency: PartitionHandle,
    /// Versions of mutable messages, `channel + message serial + delivery serial`.
    versions: PartitionHandle,
    /// op_id receipts of mutations, `channel + message serial + action + op_id`.
    receipts: PartitionHandle,
    /// Annotation events of mutable messages, `channel + message serial + annotation serial`.
    annotations: PartitionHandle,
    /// Summary JSON per message and annotation type, `channel + message serial + type`.
    summaries: PartitionHandle,
    /// Capability-token revocations (`revocations.rs`).
    revocations: PartitionHandle,
    /// The push registry (`push.rs`).
    push: PartitionHandle,
    /// Every stream's meta, keyed by channel key: serial checks on append need no read.
    metas: HashMap<Vec<u8>, StreamMeta>,
    secret: [u8; SECRET_LEN],
}

impl Engine {
    /// `secret` replaces the stored cursor secret, so every shard of a data dir signs alike and
    /// cursors stay valid when streams move between shards.
    pub(crate) fn open(
        path: &Path,
        cfg: &StoreConfig,
        secret: Option<[u8; SECRET_LEN]>,
    ) -> Result<Engine, StorageError> {
        std::fs::create_dir_all(path).map_err(|e| StorageError::io(path, &e))?;
        let err = |during| move |e: fjall::Error| StorageError::engine(path, during, e);
        let keyspace = fjall::Config::new(path)
            .cache_size(cfg.cache_bytes)
            .max_write_buffer_size(cfg.write_buffer_bytes)
            .max_journaling_size(cfg.journal_bytes)
            .manual_journal_persist(true)
            .flush_workers(1)
            .compaction_workers(1)
            .max_open_files(256)
            .open()
            .map_err(err("open"))?;
        // A memtable that fills the whole write buffer makes fjall halt the committing thread
        // until its flush ends; at half the buffer it rotates and flushes in the background.
        let memtable_bytes = u32::try_from(cfg.write_buffer_bytes / 2).unwrap_or(u32::MAX);
        let open = |name| {
            let options = PartitionCreateOptions::default().max_memtable_size(memtable_bytes);
            keyspace.open_partition(name, options).map_err(err("open partition"))
        };
        let meta = open("meta")?;
        let history = open("history")?;
        let streams = open("streams")?;
        let idempotency = open("idempotency")?;
        // Added after format 1 shipped; opening creates them empty, so the format stays 1.
        let versions = open("versions")?;
        let receipts = open("receipts")?;
        let annotations = open("annotations")?;
        let summaries = open("summaries")?;
        let revocations = open("revocations")?;
        let push = open("push")?;

        let mut batch = keyspace.batch();
        match meta.get(FORMAT_KEY).map_err(err("read format version"))? {
            Some(v) => {
                let found = <[u8; 4]>::try_from(&v[..]).map(u32::from_be_bytes).unwrap_or(u32::MAX);
                if found != FORMAT_VERSION {
                    return Err(StorageError::UnknownFormat {
                        path: path.display().to_string(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
            }
            None => batch.insert(&meta, FORMAT_KEY, FORMAT_VERSION.to_be_bytes().to_vec()),
        }
        let stored = meta.get(SECRET_KEY).map_err(err("read cursor secret"))?;
        let stored = stored.and_then(|v| <[u8; SECRET_LEN]>::try_from(&v[..]).ok());
        let secret = match (secret, stored) {
            (Some(given), Some(stored)) if given == stored => given,
            (None, Some(stored)) => stored,
            (given, _) => {
                let secret = given.unwrap_or_else(fresh_secret);
                batch.insert(&meta, SECRET_KEY, secret.to_vec());
                secret
            }
        };
        if !batch.is_empty() {
            batch.commit().map_err(err("write meta"))?;
            keyspace.persist(PersistMode::SyncAll).map_err(err("sync meta"))?;
        }

        let mut metas = HashMap::new();
        for kv in streams.iter() {
            let (k, v) = kv.map_err(err("load streams"))?;
            let m = StreamMeta::decode(&v).ok_or_else(|| StorageError::corrupt(path, "undecodable stream meta"))?;
            metas.insert(k.to_vec(), m);
        }

        Ok(Engine {
            path: path.to_path_buf(),
            cfg: cfg.clone(),
            keyspace,
            history,
            streams,
            idempotency,
            versions,
            receipts,
            annotations,
            summaries,
            revocations,
            push,
            metas,
            secret,
        })
    }

    pub(crate) fn secret(&self) -> [u8; SECRET_LEN] {
        self.secret
    }

    fn err(&self, during: &'static str) -> impl Fn(fjall::Error) -> StorageError + '_ {
        move |e| StorageError::engine(&self.path, during, e)
    }

    pub(crate) fn persist(&self, mode: PersistMode) -> Result<(), StorageError> {
        self.keyspace.persist(mode).map_err(self.err("persist"))
    }

    pub(crate) fn streams(&self) -> Vec<(String, String, StreamMeta)> {
        self.metas.iter().filter_map(|(k, m)| parse_channel_key(k).map(|(a, c)| (a, c, m.clone()))).collect()
    }

    pub(crate) fn begin(&self) -> WriteRound {
        WriteRound { batch: self.keyspace.batch(), metas: HashMap::new(), annotated: HashMap::new() }
    }

    /// The channel's stream as the round leaves it, if `serial` of `stream_id` is its next
    /// serial (a channel without a stream starts one under `stream_id`).
    fn meta_at(
        &self,
        round: &WriteRound,
        app: &str,
        channel: &str,
        stream_id: &str,
        serial: u64,
    ) -> Result<(Vec<u8>, StreamMeta), StorageError> {
        let ckey = channel_key(app, channel)?;
        let current = round.metas.get(&ckey).or_else(|| self.metas.get(&ckey));
        let meta = match current {
            Some(m) => m.clone(),
            None => StreamMeta::fresh(stream_id.to_string()),
        };
        if meta.stream_id != stream_id {
            return Err(StorageError::StreamMismatch {
                app: app.into(),
                channel: channel.into(),
                stored: meta.stream_id,
                got: stream_id.into(),
            });
        }
        if serial != meta.next_serial {
            return Err(StorageError::SerialMismatch {
                app: app.into(),
                channel: channel.into(),
                expected: meta.next_serial,
                got: serial,
            });
        }
        Ok((ckey, meta))
    }

    /// Passes over `serial`: it holds nothing, and the next append takes the serial after it.
    pub(crate) fn stage_skip(
        &self,
        round: &mut WriteRound,
        app: &str,
        channel: &str,
        stream_id: &str,
        serial: u64,
    ) -> Result<(), StorageError> {
        let (ckey, mut meta) = self.meta_at(round, app, channel, stream_id, serial)?;
        meta.next_serial += 1;
        round.metas.insert(ckey, meta);
        Ok(())
    }

    pub(crate) fn stage_append(&self, round: &mut WriteRound, row: AppendRow) -> Result<(), StorageError> {
        let AppendRow { app, channel, stream_id, serial, mut record, version } = row;
        let (ckey, mut meta) = self.meta_at(round, &app, &channel, &stream_id, serial)?;
        if let Some(write) = &version {
            versions::check_version_write(&meta, serial, record.kind, write)?;
        }
        record.published_at_ms = record.published_at_ms.max(meta.newest_published_at_ms);
        if !meta.has_retained() {
            meta.oldest_published_at_ms = record.published_at_ms;
        }
        meta.next_serial += 1;
        // A mutable message's later versions are part of it, not messages of their own.
        if !matches!(record.kind, RecordKind::Mutation { .. }) {
            meta.retained_messages += 1;
        }
        meta.retained_bytes += record.payload.len() as u64;
        meta.newest_published_at_ms = record.published_at_ms;
        round.batch.insert(&self.history, history_key(&ckey, serial), record.encode());
        if let Some(write) = version {
            self.stage_version(round, &ckey, serial, write);
        }
        round.metas.insert(ckey, meta);
        Ok(())
    }

    pub(crate) fn stage_idempotency_put(&self, round: &mut WriteRound, key: Vec<u8>, body: &[u8], expires_at_ms: u64) {
        let mut value = Vec::with_capacity(8 + body.len());
        value.extend_from_slice(&expires_at_ms.to_be_bytes());
        value.extend_from_slice(body);
        round.batch.insert(&self.idempotency, key, value);
    }

    pub(crate) fn stage_idempotency_delete(&self, round: &mut WriteRound, key: Vec<u8>) {
        round.batch.remove(&self.idempotency, key);
    }

    /// Commits the round as one fjall batch (not yet persisted). Returns the channel keys of
    /// the streams it touched.
    pub(crate) fn commit(&mut self, round: WriteRound) -> Result<Vec<Vec<u8>>, StorageError> {
        let WriteRound { mut batch, metas, .. } = round;
        for (ckey, meta) in &metas {
            batch.insert(&self.streams, ckey.clone(), meta.encode());
        }
        batch.commit().map_err(self.err("commit"))?;
        let touched = metas.keys().cloned().collect();
        self.metas.extend(metas);
        Ok(touched)
    }

    pub(crate) fn get_idempotency(
        &self,
        app: &str,
        space: u8,
        key: &[u8],
        now_ms: u64,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        let key = idempotency_key(app, space, key)?;
        let Some(value) = self.idempotency.get(key).map_err(self.err("read idempotency"))? else {
            return Ok(None);
        };
        let expires_at = value
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StorageError::corrupt(&self.path, "short idempotency value"))?;
        Ok((expires_at > now_ms).then(|| value[8..].to_vec()))
    }
}

fn fresh_secret() -> [u8; SECRET_LEN] {
    let mut secret = [0; SECRET_LEN];
    secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    secret
}
