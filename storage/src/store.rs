use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError};

use crate::cursor::{CursorCodec, SECRET_LEN};
use crate::engine::{Engine, StreamExport};
use crate::keys::idempotency_key;
use crate::push::RegistryRows;
use crate::reply::{AppendTicket, Reply, Responder};
use crate::worker::{AppendRow, ControlRequest, PushRequest, ReadRequest, Request, StoreStats, Worker, WriteRequest};
use crate::{
    AnnotationWrite, AnnotationsPage, AnnotationsQuery, HistoryPage, HistoryQuery, HistoryRecord, MessageState, Purge,
    Purged, RegistryPage, Replaced, Revocation, StorageError, StoreConfig, StoredSummary, StreamMeta, SubscriptionsOf,
    VersionWrite, VersionsPage, VersionsQuery,
};

/// One shard's store. Every method only enqueues a request for the store's own thread and
/// returns a [`Reply`]; nothing here blocks except `open` and `close`.
pub struct Store {
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<Result<(), StorageError>>>,
    path: PathBuf,
    label: Arc<str>,
    cursors: CursorCodec,
    stats: Arc<StoreStats>,
}

pub fn shard_dir(data_dir: &Path, shard: usize) -> PathBuf {
    data_dir.join(format!("shard-{shard}"))
}

impl Store {
    /// Opens (or creates) `<data_dir>/shard-<shard>/` and starts its store thread.
    pub fn open(data_dir: &Path, shard: usize, cfg: &StoreConfig) -> Result<Store, StorageError> {
        Store::open_dir(&shard_dir(data_dir, shard), cfg, None)
    }

    pub(crate) fn open_dir(
        path: &Path,
        cfg: &StoreConfig,
        secret: Option<[u8; SECRET_LEN]>,
    ) -> Result<Store, StorageError> {
        cfg.validate()?;
        let engine = Engine::open(path, cfg, secret)?;
        let cursors = CursorCodec::new(engine.secret());
        let stats = Arc::new(StoreStats::default());
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue_capacity);
        let worker = Worker::new(engine, cursors.clone(), cfg.clone(), stats.clone());
        let name =
            format!("storage-{}", path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()));
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || worker.run(rx))
            .map_err(|e| StorageError::io(path, &e))?;
        Ok(Store {
            tx: Some(tx),
            thread: Some(thread),
            path: path.to_path_buf(),
            label: Arc::from(path.display().to_string()),
            cursors,
            stats,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Signs and checks history cursors; every store of one data dir shares the secret.
    pub fn cursors(&self) -> &CursorCodec {
        &self.cursors
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    pub(crate) fn secret(&self) -> [u8; SECRET_LEN] {
        self.cursors.secret()
    }

    fn submit<T>(&self, make: impl FnOnce(Responder<T>) -> Request) -> Reply<T> {
        let (tx, reply) = Reply::pair(self.label.clone());
        self.enqueue(make(tx)).map_or_else(|e| Reply::ready(self.label.clone(), Err(e)), |()| reply)
    }

    fn enqueue(&self, req: Request) -> Result<(), StorageError> {
        let Some(tx) = &self.tx else {
            return Err(StorageError::Closed { path: self.label.to_string() });
        };
        tx.try_send(req).map_err(|e| match e {
            TrySendError::Full(_) => StorageError::Overloaded { path: self.label.to_string() },
            TrySendError::Disconnected(_) => StorageError::Closed { path: self.label.to_string() },
        })
    }

    /// All stream metas of this store, for the owner shard to load once at start.
    pub fn load_streams(&self) -> Reply<Vec<(String, String, StreamMeta)>> {
        self.submit(|reply| Request::Read(ReadRequest::LoadStreams { reply }))
    }

    /// Appends `record` at `serial` of `stream_id`. The caller assigns serials; the store
    /// rejects any serial other than the stream's next one (a channel without a stream accepts
    /// serial 1 and starts the stream under `stream_id`).
    pub fn append(
        &self,
        app: &str,
        channel: &str,
        stream_id: &str,
        serial: u64,
        record: HistoryRecord,
    ) -> AppendTicket {
        self.append_with(app, channel, stream_id, serial, record, None)
    }

    /// Like `append`, plus the version row (and receipt) in the same batch: all or nothing.
    /// A create's version goes on a `VersionedCreate` row at the message's serial; a mutation's
    /// on a `Mutation` row naming a message still retained (`InvalidInput` otherwise, nothing
    /// written). The version and receipt are stored under `serial`.
    pub fn append_version(
        &self,
        app: &str,
        channel: &str,
        stream_id: &str,
        serial: u64,
        record: HistoryRecord,
        version: VersionWrite,
    ) -> AppendTicket {
        self.append_with(app, channel, stream_id, serial, record, Some(version))
    }

    fn append_with(
        &self,
        app: &str,
        channel: &str,
        stream_id: &str,
        serial: u64,
        record: HistoryRecord,
        version: Option<VersionWrite>,
    ) -> AppendTicket {
        let row = AppendRow {
            app: app.to_string(),
            channel: channel.to_string(),
            stream_id: stream_id.to_string(),
            serial,
            record,
            version,
        };
        self.submit_ticket(|written, durable| WriteRequest::Append { row: Box::new(row), written, durable })
    }

    /// Stores a push device registration's body under its id, indexed under its client
    /// (`push.rs`); answers with the body it replaced. Synced before it answers.
    pub fn push_put_device(&self, app: &str, id: &str, client: Option<&str>, body: Vec<u8>) -> Reply<Replaced> {
        let (app, id, client) = (app.to_string(), id.to_string(), client.map(str::to_string));
        self.push(|reply| PushRequest::PutDevice { app, id, client, body, reply })
    }

    pub fn push_device(&self, app: &str, id: &str) -> Reply<Option<Vec<u8>>> {
        let (app, id) = (app.to_string(), id.to_string());
        self.push(|reply| PushRequest::Device { app, id, reply })
    }

    /// Up to `limit` devices after the cursor `after` (a device id).
    pub fn push_devices(&self, app: &str, after: Option<&str>, limit: usize) -> Reply<RegistryPage> {
        let (app, after) = (app.to_string(), after.map(str::to_string));
        self.push(|reply| PushRequest::Devices { app, after, limit, reply })
    }

    /// The ids of the devices registered to `client`.
    pub fn push_client_devices(&self, app: &str, client: &str) -> Reply<Vec<String>> {
        let (app, client) = (app.to_string(), client.to_string());
        self.push(|reply| PushRequest::ClientDevices { app, client, reply })
    }

    /// Removes a device and its channel subscriptions; whether it existed. Synced.
    pub fn push_delete_device(&self, app: &str, id: &str) -> Reply<bool> {
        let (app, id) = (app.to_string(), id.to_string());
        self.push(|reply| PushRequest::DeleteDevice { app, id, reply })
    }

    /// Subscribes a device to a channel with this body (replacing it if subscribed). Synced.
    pub fn push_subscribe(&self, app: &str, channel: &str, device: &str, body: Vec<u8>) -> Reply<()> {
        let (app, channel, device) = (app.to_string(), channel.to_string(), device.to_string());
        self.push(|reply| PushRequest::Subscribe { app, channel, device, body, reply })
    }

    /// Up to `limit` subscriptions of a channel (after a device id) or of a device (after a
    /// channel), each with the id it is listed by.
    pub fn push_subscriptions(
        &self,
        app: &str,
        of: SubscriptionsOf,
        after: Option<&str>,
        limit: usize,
    ) -> Reply<RegistryPage> {
        let (app, after) = (app.to_string(), after.map(str::to_string));
        self.push(|reply| PushRequest::Subscriptions { app, of, after, limit, reply })
    }

    /// Removes a channel's or a device's subscriptions; how many there were. Synced.
    pub fn push_unsubscribe(&self, app: &str, of: SubscriptionsOf) -> Reply<u64> {
        let app = app.to_string();
        self.push(|reply| PushRequest::Unsubscribe { app, of, reply })
    }

    /// Removes one device's subscription to one channel; how many there were (0 or 1). Synced.
    pub fn push_unsubscribe_one(&self, app: &str, channel: &str, device: &str) -> Reply<u64> {
        let (app, channel, device) = (app.to_string(), channel.to_string(), device.to_string());
        self.push(|reply| PushRequest::UnsubscribeOne { app, channel, device, reply })
    }

    /// Up to `limit` channels with subscriptions after the channel `after`, and whether more
    /// follow.
    pub fn push_channels(&self, app: &str, after: Option<&str>, limit: usize) -> Reply<(Vec<String>, bool)> {
        let (app, after) = (app.to_string(), after.map(str::to_string));
        self.push(|reply| PushRequest::Channels { app, after, limit, reply })
    }

    /// The apps with a push registry in this store (`migrate.rs`).
    pub(crate) fn push_apps(&self) -> Reply<Vec<String>> {
        self.push(|reply| PushRequest::Apps { reply })
    }

    pub(crate) fn push_export(&self, app: &str) -> Reply<RegistryRows> {
        let app = app.to_string();
        self.push(|reply| PushRequest::Export { app, reply })
    }

    pub(crate) fn push_import(&self, rows: RegistryRows) -> Reply<()> {
        self.push(|reply| PushRequest::Import { rows, reply })
    }

    pub(crate) fn push_drop(&self, app: &str) -> Reply<()> {
        let app = app.to_string();
        self.push(|reply| PushRequest::Drop { app, reply })
    }

    fn push<T>(&self, make: impl FnOnce(Responder<T>) -> PushRequest) -> Reply<T> {
        self.submit(|reply| Request::Push(make(reply)))
    }

    /// Passes over `serial` of `stream_id` (it must be the stream's next): it holds nothing, and
    /// the next append takes the serial after it. For a serial the cluster log gave an
    /// operation that did not apply (`docs/architecture.md#several-nodes`). In order with
    /// the appends around it.
    pub fn skip(&self, app: &str, channel: &str, stream_id: &str, serial: u64) -> Reply<()> {
        let (app, channel, stream_id) = (app.to_string(), channel.to_string(), stream_id.to_string());
        self.submit(|reply| Request::Write(WriteRequest::Skip { app, channel, stream_id, serial, reply }))
    }

    /// Stores an annotation event of the message created at history serial `write.message`
    /// and sets that message's summary of the event's type to `write.summary` (removes it when
    /// empty), in one batch with the round's appends: `written` and `durable` mean what they
    /// mean for `append`. Refused with `InvalidInput`, nothing written, unless the message's
    /// create version is stored and `write.record.serial` is one more than the message's
    /// newest annotation serial (0 without any).
    pub fn annotate(&self, app: &str, channel: &str, write: AnnotationWrite) -> AppendTicket {
        let (app, channel, write) = (app.to_string(), channel.to_string(), Box::new(write));
        self.submit_ticket(|written, durable| WriteRequest::Annotate { app, channel, write, written, durable })
    }

    fn submit_ticket(&self, make: impl FnOnce(Responder<()>, Responder<()>) -> WriteRequest) -> AppendTicket {
        let (written_tx, written) = Reply::pair(self.label.clone());
        let (durable_tx, durable) = Reply::pair(self.label.clone());
        match self.enqueue(Request::Write(make(written_tx, durable_tx))) {
            Ok(()) => AppendTicket { written, durable },
            Err(e) => AppendTicket {
                written: Reply::ready(self.label.clone(), Err(e.clone())),
                durable: Reply::ready(self.label.clone(), Err(e)),
            },
        }
    }

    /// Replaces the channel's stream with a fresh one named `stream_id` (serials from 1),
    /// purging the old stream's history. Ordered after every append queued before it; synced
    /// before it answers.
    pub fn reset_stream(&self, app: &str, channel: &str, stream_id: &str) -> Reply<Purged> {
        self.rebase_stream(app, channel, stream_id, 1)
    }

    /// Like `reset_stream`, but the new stream's next serial is `next_serial`: a node that
    /// joins a cluster stream part-way (or missed part of it) keeps the cluster's serials.
    pub fn rebase_stream(&self, app: &str, channel: &str, stream_id: &str, next_serial: u64) -> Reply<Purged> {
        let (app, channel, stream_id) = (app.to_string(), channel.to_string(), stream_id.to_string());
        self.submit(|reply| Request::Control(ControlRequest::Reset { app, channel, stream_id, next_serial, reply }))
    }

    /// Removes retained history of the channel by `mode`, keeping its stream id and serials.
    /// `None` when the channel has no stream. Synced before it answers.
    pub fn purge_stream(&self, app: &str, channel: &str, mode: Purge) -> Reply<Option<Purged>> {
        let (app, channel) = (app.to_string(), channel.to_string());
        self.submit(|reply| Request::Control(ControlRequest::Purge { app, channel, mode, reply }))
    }

    /// The channel's stream as stored (id, serials, what is retained), if it has one.
    pub fn stream_meta(&self, app: &str, channel: &str) -> Reply<Option<StreamMeta>> {
        let (app, channel) = (app.to_string(), channel.to_string());
        self.submit(|reply| Request::Read(ReadRequest::StreamMeta { app, channel, reply }))
    }

    pub fn read_history(&self, query: HistoryQuery) -> Reply<HistoryPage> {
        self.submit(|reply| Request::Read(ReadRequest::History { query, reply }))
    }

    /// The message created at history serial `message`, if its versions are retained; with
    /// every receipt and annotation event when `receipts`.
    pub fn message(&self, app: &str, channel: &str, message: u64, receipts: bool) -> Reply<Option<MessageState>> {
        let (app, channel) = (app.to_string(), channel.to_string());
        self.submit(|reply| Request::Read(ReadRequest::Message { app, channel, message, receipts, reply }))
    }

    /// A page of the message's versions. `None` when the message is unknown.
    pub fn versions(
        &self,
        app: &str,
        channel: &str,
        message: u64,
        query: VersionsQuery,
    ) -> Reply<Option<VersionsPage>> {
        let (app, channel) = (app.to_string(), channel.to_string());
        self.submit(|reply| Request::Read(ReadRequest::Versions { app, channel, message, query, reply }))
    }

    /// A page of the message's annotation events in serial order. `None` when the message is
    /// unknown.
    pub fn annotations(
        &self,
        app: &str,
        channel: &str,
        message: u64,
        query: AnnotationsQuery,
    ) -> Reply<Option<AnnotationsPage>> {
        let (app, channel) = (app.to_string(), channel.to_string());
        self.submit(|reply| Request::Read(ReadRequest::Annotations { app, channel, message, query, reply }))
    }

    /// Every stored summary of the channel, by message, then annotation type.
    pub fn summaries(&self, app: &str, channel: &str) -> Reply<Vec<StoredSummary>> {
        let (app, channel) = (app.to_string(), channel.to_string());
        self.submit(|reply| Request::Read(ReadRequest::Summaries { app, channel, reply }))
    }

    /// Stores a response body under `(app, space, key)` until `expires_at_ms` (unix ms).
    /// Completes once written (group-committed with appends, not separately fsynced).
    pub fn put_idempotency(&self, app: &str, space: u8, key: &[u8], body: Vec<u8>, expires_at_ms: u64) -> Reply<()> {
        match idempotency_key(app, space, key) {
            Ok(key) => {
                self.submit(|reply| Request::Write(WriteRequest::IdempotencyPut { key, body, expires_at_ms, reply }))
            }
            Err(e) => Reply::ready(self.label.clone(), Err(e)),
        }
    }

    /// The stored body, or `None` when absent or expired.
    pub fn get_idempotency(&self, app: &str, space: u8, key: &[u8]) -> Reply<Option<Vec<u8>>> {
        let (app, key) = (app.to_string(), key.to_vec());
        self.submit(|reply| Request::Read(ReadRequest::IdempotencyGet { app, space, key, reply }))
    }

    pub fn delete_idempotency(&self, app: &str, space: u8, key: &[u8]) -> Reply<()> {
        match idempotency_key(app, space, key) {
            Ok(key) => self.submit(|reply| Request::Write(WriteRequest::IdempotencyDelete { key, reply })),
            Err(e) => Reply::ready(self.label.clone(), Err(e)),
        }
    }

    /// Stores a revocation; completes once it is synced to disk.
    pub fn put_revocation(&self, revocation: Revocation) -> Reply<()> {
        self.submit(|reply| Request::Control(ControlRequest::Revoke { revocation, reply }))
    }

    /// The revocations not yet expired, for the server to load at start.
    pub fn load_revocations(&self) -> Reply<Vec<Revocation>> {
        self.submit(|reply| Request::Read(ReadRequest::Revocations { reply }))
    }

    pub(crate) fn export_stream(&self, app: &str, channel: &str) -> Reply<Option<StreamExport>> {
        let (app, channel) = (app.to_string(), channel.to_string());
        self.submit(|reply| Request::Read(ReadRequest::Export { app, channel, reply }))
    }

    pub(crate) fn import_stream(&self, app: &str, channel: &str, export: StreamExport) -> Reply<()> {
        let (app, channel) = (app.to_string(), channel.to_string());
        self.submit(|reply| Request::Control(ControlRequest::Import { app, channel, export, reply }))
    }

    pub(crate) fn drop_stream(&self, app: &str, channel: &str) -> Reply<()> {
        let (app, channel) = (app.to_string(), channel.to_string());
        self.submit(|reply| Request::Control(ControlRequest::Drop { app, channel, reply }))
    }

    /// Completes once everything queued before it is written and synced to disk, whatever the
    /// fsync policy: for a process that is about to exit without closing the store.
    pub fn sync(&self) -> Reply<()> {
        self.submit(|reply| Request::Control(ControlRequest::Sync { reply }))
    }

    /// Answers everything queued, fsyncs and stops the store thread. Blocks (fjall's shutdown
    /// waits for its monitor thread, up to 250 ms): call it off the executor, or drop the
    /// store, which does the same.
    pub fn close(mut self) -> Result<(), StorageError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), StorageError> {
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => Err(StorageError::Closed { path: format!("{} (store thread panicked)", self.label) }),
            None => Ok(()),
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
