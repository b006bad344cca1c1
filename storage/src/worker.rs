//! The store thread: group commit, fsync policy and background retention.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use fjall::PersistMode;

use crate::cursor::CursorCodec;
use crate::engine::{Engine, StreamExport, WriteRound};
use crate::push::RegistryRows;
use crate::reply::Responder;
use crate::{
    AnnotationWrite, AnnotationsPage, AnnotationsQuery, Fsync, HistoryPage, HistoryQuery, HistoryRecord, MessageState,
    Purge, Purged, RegistryPage, Replaced, Revocation, StorageError, StoreConfig, StoredSummary, StreamMeta,
    SubscriptionsOf, VersionWrite, VersionsPage, VersionsQuery,
};

pub(crate) enum Request {
    Write(WriteRequest),
    Read(ReadRequest),
    Control(ControlRequest),
    /// The push registry, whose rows no round writes: run at once.
    Push(PushRequest),
}

pub(crate) enum PushRequest {
    Apps {
        reply: Responder<Vec<String>>,
    },
    Export {
        app: String,
        reply: Responder<RegistryRows>,
    },
    Import {
        rows: RegistryRows,
        reply: Responder<()>,
    },
    Drop {
        app: String,
        reply: Responder<()>,
    },
    PutDevice {
        app: String,
        id: String,
        client: Option<String>,
        body: Vec<u8>,
        reply: Responder<Replaced>,
    },
    Device {
        app: String,
        id: String,
        reply: Responder<Option<Vec<u8>>>,
    },
    Devices {
        app: String,
        after: Option<String>,
        limit: usize,
        reply: Responder<RegistryPage>,
    },
    ClientDevices {
        app: String,
        client: String,
        reply: Responder<Vec<String>>,
    },
    DeleteDevice {
        app: String,
        id: String,
        reply: Responder<bool>,
    },
    Subscribe {
        app: String,
        channel: String,
        device: String,
        body: Vec<u8>,
        reply: Responder<()>,
    },
    Subscriptions {
        app: String,
        of: SubscriptionsOf,
        after: Option<String>,
        limit: usize,
        reply: Responder<RegistryPage>,
    },
    Unsubscribe {
        app: String,
        of: SubscriptionsOf,
        reply: Responder<u64>,
    },
    UnsubscribeOne {
        app: String,
        channel: String,
        device: String,
        reply: Responder<u64>,
    },
    Channels {
        app: String,
        after: Option<String>,
        limit: usize,
        reply: Responder<(Vec<String>, bool)>,
    },
}

/// A history row to append at `serial` of `stream_id`.
pub(crate) struct AppendRow {
    pub(crate) app: String,
    pub(crate) channel: String,
    pub(crate) stream_id: String,
    pub(crate) serial: u64,
    pub(crate) record: HistoryRecord,
    /// A mutable message's version, written with the row or not at all.
    pub(crate) version: Option<VersionWrite>,
}

/// Writes that join the round's single batch.
pub(crate) enum WriteRequest {
    Append {
        /// Boxed: a row with its version is far larger than the other requests.
        row: Box<AppendRow>,
        written: Responder<()>,
        durable: Responder<()>,
    },
    /// Completes like an append: `durable` follows the fsync policy.
    Annotate {
        app: String,
        channel: String,
        write: Box<AnnotationWrite>,
        written: Responder<()>,
        durable: Responder<()>,
    },
    /// Passes over a serial that holds nothing (`Store::skip`).
    Skip {
        app: String,
        channel: String,
        stream_id: String,
        serial: u64,
        reply: Responder<()>,
    },
    IdempotencyPut {
        key: Vec<u8>,
        body: Vec<u8>,
        expires_at_ms: u64,
        reply: Responder<()>,
    },
    IdempotencyDelete {
        key: Vec<u8>,
        reply: Responder<()>,
    },
}

/// Reads, answered after the round's batch so they see it.
pub(crate) enum ReadRequest {
    IdempotencyGet {
        app: String,
        space: u8,
        key: Vec<u8>,
        reply: Responder<Option<Vec<u8>>>,
    },
    History {
        query: HistoryQuery,
        reply: Responder<HistoryPage>,
    },
    Revocations {
        reply: Responder<Vec<Revocation>>,
    },
    LoadStreams {
        reply: Responder<Vec<(String, String, StreamMeta)>>,
    },
    Export {
        app: String,
        channel: String,
        reply: Responder<Option<StreamExport>>,
    },
    StreamMeta {
        app: String,
        channel: String,
        reply: Responder<Option<StreamMeta>>,
    },
    Message {
        app: String,
        channel: String,
        message: u64,
        receipts: bool,
        reply: Responder<Option<MessageState>>,
    },
    Versions {
        app: String,
        channel: String,
        message: u64,
        query: VersionsQuery,
        reply: Responder<Option<VersionsPage>>,
    },
    Annotations {
        app: String,
        channel: String,
        message: u64,
        query: AnnotationsQuery,
        reply: Responder<Option<AnnotationsPage>>,
    },
    Summaries {
        app: String,
        channel: String,
        reply: Responder<Vec<StoredSummary>>,
    },
}

/// Whole-stream changes, applied in arrival order between batches.
pub(crate) enum ControlRequest {
    Reset { app: String, channel: String, stream_id: String, next_serial: u64, reply: Responder<Purged> },
    Purge { app: String, channel: String, mode: Purge, reply: Responder<Option<Purged>> },
    Import { app: String, channel: String, export: StreamExport, reply: Responder<()> },
    Drop { app: String, channel: String, reply: Responder<()> },
    Sync { reply: Responder<()> },
    Revoke { revocation: Revocation, reply: Responder<()> },
}

/// Counters that show how well group commit batches.
#[derive(Debug, Default)]
pub struct StoreStats {
    batches: AtomicU64,
    syncs: AtomicU64,
}

impl StoreStats {
    /// fjall batches committed for appends and idempotency writes.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
    /// fdatasync calls.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A write waiting for its batch to reach the OS; `durable` waits further for the fsync.
struct Waiter {
    written: Responder<()>,
    durable: Option<Responder<()>>,
}

impl Waiter {
    /// A ticket's write waits for the batch once staged; a refusal answers both completions.
    fn push_staged(
        waiters: &mut Vec<Waiter>,
        staged: Result<(), StorageError>,
        written: Responder<()>,
        durable: Responder<()>,
    ) {
        match staged {
            Ok(()) => waiters.push(Waiter { written, durable: Some(durable) }),
            Err(e) => {
                let _ = written.send(Err(e.clone()));
                let _ = durable.send(Err(e));
            }
        }
    }
}

pub(crate) struct Worker {
    engine: Engine,
    cursors: CursorCodec,
    cfg: StoreConfig,
    stats: Arc<StoreStats>,
    /// `durable` completions of written but not yet synced appends.
    unsynced: Vec<Responder<()>>,
    last_sync: Instant,
    next_cleanup: Instant,
}

impl Worker {
    pub(crate) fn new(engine: Engine, cursors: CursorCodec, cfg: StoreConfig, stats: Arc<StoreStats>) -> Self {
        let next_cleanup = Instant::now() + cfg.cleanup_interval;
        Worker { engine, cursors, cfg, stats, unsynced: Vec::new(), last_sync: Instant::now(), next_cleanup }
    }

    /// Serves requests until every `Store` handle is gone, then syncs once more; the final
    /// sync's outcome is what `Store::close` reports.
    pub(crate) fn run(mut self, rx: Receiver<Request>) -> Result<(), StorageError> {
        let mut round = Vec::with_capacity(self.cfg.max_round);
        loop {
            let wait = self.next_deadline().saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(first) => {
                    round.push(first);
                    round.extend(rx.try_iter().take(self.cfg.max_round - 1));
                    self.handle_round(&mut round);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.sync_if_due(false);
            if Instant::now() >= self.next_cleanup {
                self.cleanup();
            }
        }
        self.sync_if_due(true);
        self.engine.persist(PersistMode::SyncData)
    }

    fn next_deadline(&self) -> Instant {
        match self.cfg.fsync {
            Fsync::Interval(every) if !self.unsynced.is_empty() => (self.last_sync + every).min(self.next_cleanup),
            _ => self.next_cleanup,
        }
    }

    /// Writes go into one batch in arrival order; reads run after it so they see the round's
    /// writes. Stream control requests commit the pending batch first to keep their order.
    fn handle_round(&mut self, requests: &mut Vec<Request>) {
        let mut batch = self.engine.begin();
        let mut waiters = Vec::new();
        let mut reads = Vec::new();
        for req in requests.drain(..) {
            match req {
                Request::Write(WriteRequest::Append { row, written, durable }) => {
                    let staged = self.engine.stage_append(&mut batch, *row);
                    Waiter::push_staged(&mut waiters, staged, written, durable);
                }
                Request::Write(WriteRequest::Annotate { app, channel, write, written, durable }) => {
                    let staged = self.engine.stage_annotation(&mut batch, &app, &channel, *write);
                    Waiter::push_staged(&mut waiters, staged, written, durable);
                }
                Request::Write(WriteRequest::Skip { app, channel, stream_id, serial, reply }) => {
                    match self.engine.stage_skip(&mut batch, &app, &channel, &stream_id, serial) {
                        Ok(()) => waiters.push(Waiter { written: reply, durable: None }),
                        Err(e) => drop(reply.send(Err(e))),
                    }
                }
                Request::Write(WriteRequest::IdempotencyPut { key, body, expires_at_ms, reply }) => {
                    self.engine.stage_idempotency_put(&mut batch, key, &body, expires_at_ms);
                    waiters.push(Waiter { written: reply, durable: None });
                }
                Request::Write(WriteRequest::IdempotencyDelete { key, reply }) => {
                    self.engine.stage_idempotency_delete(&mut batch, key);
                    waiters.push(Waiter { written: reply, durable: None });
                }
                Request::Read(read) => reads.push(read),
                Request::Push(push) => self.push(push),
                Request::Control(control) => {
                    let pending = std::mem::replace(&mut batch, self.engine.begin());
                    self.write(pending, std::mem::take(&mut waiters));
                    self.control(control);
                }
            }
        }
        self.write(batch, waiters);
        for read in reads {
            self.read(read);
        }
    }

    /// Commits one batch, hands it to the OS, answers `written`, then trims streams the
    /// batch pushed over their count limit.
    fn write(&mut self, batch: WriteRound, waiters: Vec<Waiter>) {
        if batch.is_empty() {
            return;
        }
        let outcome = self.engine.commit(batch).and_then(|touched| {
            self.engine.persist(PersistMode::Buffer)?;
            Ok(touched)
        });
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        let touched = match outcome {
            Ok(touched) => touched,
            Err(e) => {
                for w in waiters {
                    let _ = w.written.send(Err(e.clone()));
                    if let Some(d) = w.durable {
                        let _ = d.send(Err(e.clone()));
                    }
                }
                return;
            }
        };
        for w in waiters {
            let _ = w.written.send(Ok(()));
            match (w.durable, self.cfg.fsync) {
                (Some(d), Fsync::Os) => {
                    let _ = d.send(Ok(()));
                }
                (Some(d), _) => self.unsynced.push(d),
                (None, _) => {}
            }
        }
        if self.cfg.fsync == Fsync::Always {
            self.sync_if_due(true);
        }
        if let Err(e) = self.engine.apply_retention(&touched, None).and_then(|changed| {
            if changed {
                self.engine.persist(PersistMode::Buffer)
            } else {
                Ok(())
            }
        }) {
            log::warn!("count retention failed: {e}");
        }
    }

    fn sync_if_due(&mut self, force: bool) {
        if self.unsynced.is_empty() {
            return;
        }
        let due = match self.cfg.fsync {
            Fsync::Interval(every) => self.last_sync.elapsed() >= every,
            Fsync::Always | Fsync::Os => true,
        };
        if !(due || force) {
            return;
        }
        let outcome = self.engine.persist(PersistMode::SyncData);
        self.stats.syncs.fetch_add(1, Ordering::Relaxed);
        self.last_sync = Instant::now();
        for d in self.unsynced.drain(..) {
            let _ = d.send(outcome.clone());
        }
    }

    fn cleanup(&mut self) {
        let now = now_ms();
        let keys = self.engine.all_stream_keys();
        let outcome = self
            .engine
            .apply_retention(&keys, Some(now))
            .and_then(|a| Ok(a | self.engine.expire_idempotency(now)?))
            .and_then(|a| Ok(a | self.engine.expire_revocations(now)?))
            .and_then(|changed| if changed { self.engine.persist(PersistMode::Buffer) } else { Ok(()) });
        if let Err(e) = outcome {
            log::warn!("retention cleanup failed: {e}");
        }
        self.next_cleanup = Instant::now() + self.cfg.cleanup_interval;
    }

    fn control(&mut self, req: ControlRequest) {
        match req {
            ControlRequest::Reset { app, channel, stream_id, next_serial, reply } => {
                let _ = reply.send(self.engine.reset_stream(&app, &channel, &stream_id, next_serial));
            }
            ControlRequest::Purge { app, channel, mode, reply } => {
                let _ = reply.send(self.engine.purge_stream(&app, &channel, mode));
            }
            ControlRequest::Import { app, channel, export, reply } => {
                let _ = reply.send(self.engine.import_stream(&app, &channel, export));
            }
            ControlRequest::Drop { app, channel, reply } => {
                let _ = reply.send(self.engine.drop_stream(&app, &channel));
            }
            ControlRequest::Sync { reply } => {
                self.sync_if_due(true);
                let _ = reply.send(self.engine.persist(PersistMode::SyncData));
            }
            ControlRequest::Revoke { revocation, reply } => {
                let _ = reply.send(self.engine.put_revocation(&revocation));
            }
        }
    }

    fn push(&self, req: PushRequest) {
        let e = &self.engine;
        match req {
            PushRequest::Apps { reply } => drop(reply.send(e.push_apps())),
            PushRequest::Export { app, reply } => drop(reply.send(e.push_export(&app))),
            PushRequest::Import { rows, reply } => drop(reply.send(e.push_import(rows))),
            PushRequest::Drop { app, reply } => drop(reply.send(e.push_drop(&app))),
            PushRequest::PutDevice { app, id, client, body, reply } => {
                let _ = reply.send(e.push_put_device(&app, &id, client.as_deref(), &body));
            }
            PushRequest::Device { app, id, reply } => drop(reply.send(e.push_device(&app, &id))),
            PushRequest::Devices { app, after, limit, reply } => {
                let _ = reply.send(e.push_devices(&app, after.as_deref(), limit));
            }
            PushRequest::ClientDevices { app, client, reply } => drop(reply.send(e.push_client_devices(&app, &client))),
            PushRequest::DeleteDevice { app, id, reply } => drop(reply.send(e.push_delete_device(&app, &id))),
            PushRequest::Subscribe { app, channel, device, body, reply } => {
                let _ = reply.send(e.push_subscribe(&app, &channel, &device, body));
            }
            PushRequest::Subscriptions { app, of, after, limit, reply } => {
                let _ = reply.send(e.push_subscriptions(&app, &of, after.as_deref(), limit));
            }
            PushRequest::Unsubscribe { app, of, reply } => drop(reply.send(e.push_unsubscribe(&app, &of))),
            PushRequest::UnsubscribeOne { app, channel, device, reply } => {
                let _ = reply.send(e.push_unsubscribe_one(&app, &channel, &device));
            }
            PushRequest::Channels { app, after, limit, reply } => {
                let _ = reply.send(e.push_channels(&app, after.as_deref(), limit));
            }
        }
    }

    fn read(&self, req: ReadRequest) {
        match req {
            ReadRequest::IdempotencyGet { app, space, key, reply } => {
                let _ = reply.send(self.engine.get_idempotency(&app, space, &key, now_ms()));
            }
            ReadRequest::History { query, reply } => {
                let _ = reply.send(self.engine.read_history(&query, &self.cursors));
            }
            ReadRequest::Revocations { reply } => {
                let _ = reply.send(self.engine.revocations(now_ms()));
            }
            ReadRequest::LoadStreams { reply } => {
                let _ = reply.send(Ok(self.engine.streams()));
            }
            ReadRequest::Export { app, channel, reply } => {
                let _ = reply.send(self.engine.export_stream(&app, &channel));
            }
            ReadRequest::StreamMeta { app, channel, reply } => {
                let _ = reply.send(self.engine.stream_meta(&app, &channel));
            }
            ReadRequest::Message { app, channel, message, receipts, reply } => {
                let _ = reply.send(self.engine.message(&app, &channel, message, receipts));
            }
            ReadRequest::Versions { app, channel, message, query, reply } => {
                let _ = reply.send(self.engine.versions(&app, &channel, message, query));
            }
            ReadRequest::Annotations { app, channel, message, query, reply } => {
                let _ = reply.send(self.engine.annotations(&app, &channel, message, query));
            }
            ReadRequest::Summaries { app, channel, reply } => {
                let _ = reply.send(self.engine.summaries(&app, &channel));
            }
        }
    }
}
