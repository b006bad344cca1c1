//! One shard's owner side: the state this core owns for the whole node (channels, users,
//! idempotency keys, rate windows), its store, and the typed requests other shards (and its
//! own sockets) make of it. Everything here is `!Send` and lives on one core; another shard is
//! reached only through `route` (`invoke_on`, `tell`), so every crossing shows at its call
//! site. The sockets this core accepted are `ws`'s; this module never touches one.

pub mod channel;
pub mod idempotency;
pub mod identity;
pub mod limits;
pub mod node_actions;
pub mod patterns;
pub mod revocations;
pub mod route;
pub mod watch;

use crate::config::AppIdx;
use crate::context::Context;
use crate::metrics::{AppCounters, PanicSite};
use route::{Msg, Request, Responder};
use shards::Mesh;
use std::any::Any;
use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use storage::{StorageError, Store};

pub struct Shard {
    pub id: usize,
    pub shards: usize,
    pub ctx: Arc<Context>,
    pub mesh: Rc<Mesh<Msg>>,
    calls: RefCell<route::Calls>,
    channels: RefCell<channel::Channels>,
    pipeline: channel::commit::Pipeline,
    /// Signed-in identities of this shard's V2 sockets (`identity.rs`).
    pub identities: RefCell<identity::Identities>,
    /// Mutable messages being mutated, for the channels this shard owns.
    messages: RefCell<channel::message_cache::MessageCache>,
    watch: RefCell<watch::Watch>,
    idempotency: RefCell<idempotency::Table>,
    rate_windows: RefCell<limits::Windows>,
    /// Which shards have wildcard subscribers of which patterns (every shard holds all).
    pub patterns: RefCell<patterns::Patterns>,
    /// Capability-token revocations in force (every shard holds all of them).
    pub revocations: RefCell<revocations::Revocations>,
    /// With several nodes: publishes waiting for the cluster log, and what it brings.
    sequenced: RefCell<channel::sequence::Sequenced>,
    /// Webhook events of channels this shard owns waiting for their re-check.
    webhook_pending: Rc<RefCell<channel::webhooks::Pending>>,
}

impl Shard {
    pub fn new(ctx: Arc<Context>, mesh: Mesh<Msg>) -> Rc<Shard> {
        let apps = ctx.apps.len();
        let message_cache_bytes = ctx.config.versioned.cache_bytes;
        let inbox = ctx.backplane.as_ref().and_then(|b| b.take_inbox(mesh.id()));
        let named_streams =
            ctx.backplane.as_ref().map(|_| (0..apps).map(|i| ctx.apps.get(i as AppIdx).id_hash).collect());
        Rc::new(Shard {
            id: mesh.id(),
            shards: mesh.shards(),
            ctx,
            mesh: Rc::new(mesh),
            calls: RefCell::default(),
            channels: RefCell::new(channel::Channels::new(apps, named_streams)),
            pipeline: channel::commit::Pipeline::default(),
            identities: RefCell::default(),
            messages: RefCell::new(channel::message_cache::MessageCache::new(message_cache_bytes)),
            watch: RefCell::new(watch::Watch::new(apps)),
            idempotency: RefCell::default(),
            rate_windows: RefCell::default(),
            patterns: RefCell::new(patterns::Patterns::new(apps)),
            revocations: RefCell::default(),
            sequenced: RefCell::new(channel::sequence::Sequenced::new(inbox)),
            webhook_pending: Rc::default(),
        })
    }

    /// Starts the owner side's own tasks: the commit pipeline, the deadline timer and the
    /// once-a-second housekeeping.
    pub fn start(self: &Rc<Self>) {
        supervise(self, "committer", |s| s.committer());
        supervise(self, "acker", |s| s.acker());
        supervise(self, "deadline timer", |s| s.deadline_timer());
        supervise(self, "housekeeping", |s| s.housekeeping());
        if self.ctx.backplane.is_some() {
            supervise(self, "cluster log", |s| s.follow_log());
            supervise(self, "cluster counts", |s| s.flush_counts());
        }
    }

    /// This shard's counters for `app` (`None`: requests that name no app).
    pub fn counters(&self, app: Option<AppIdx>) -> &AppCounters {
        self.ctx.metrics.shard(self.id).app(app)
    }

    /// Handles a request for this shard or an answer to one of its calls. (Deliveries and
    /// user actions are the socket side's: `node` routes those.)
    pub fn handle(self: &Rc<Self>, m: Msg) {
        match m {
            Msg::Request(req) => req.run(self),
            Msg::Reply { call, answer } => self.on_answer(call, Ok(answer)),
            Msg::Failed { call } => self.on_answer(call, Err(())),
            Msg::Deliver(_) | Msg::ToUsers(_) => unreachable!("node routes these to the socket side"),
        }
    }

    /// Logs a caught panic with where it happened and counts it.
    pub fn report_panic(&self, app: Option<AppIdx>, site: PanicSite, what: &str, payload: &(dyn Any + Send)) {
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        log::error!(shard = self.id, context = what; "panic caught: {message}");
        self.counters(app).panics[site as usize].inc();
    }

    // ---- storage ---------------------------------------------------------------------------

    /// This shard's store, when history is enabled.
    pub fn store(&self) -> Option<&Store> {
        self.ctx.stores.as_ref().map(|s| &s.by_shard[self.id])
    }

    /// The store holding `channel`'s history (its owner's), when the app keeps history. Reads
    /// go to it directly from any shard: the store thread serves them, not the owner's executor.
    pub fn owner_store(&self, app: AppIdx, channel: &str) -> Option<&Store> {
        let stores = self.ctx.stores.as_ref().filter(|_| self.history_on(app))?;
        Some(&stores.by_shard[self.channel_owner(app, channel)])
    }

    /// This shard's store, for the history of an app that keeps history.
    pub fn history_store(&self, app: AppIdx) -> Option<&Store> {
        self.store().filter(|_| self.history_on(app))
    }

    fn history_on(&self, app: AppIdx) -> bool {
        self.ctx.apps.get(app).history_on(&self.ctx.config.history)
    }

    /// Loads the streams this shard's store holds, so serials and stream ids continue after a
    /// restart. Runs before the shard accepts connections.
    /// Start step: the revocations in force, from shard 0's store (which keeps them all).
    pub async fn load_revocations(&self) -> Result<(), StorageError> {
        let Some(stores) = &self.ctx.stores else { return Ok(()) };
        let now = crate::time::unix_ms();
        let mut revoked = Vec::new();
        for r in stores.by_shard[0].load_revocations().await? {
            let app = self.ctx.apps.by_id(&r.app);
            if let (Some(app), Some(kind)) = (app, revocations::Kind::from_code(r.kind)) {
                revoked.push((app, kind, r.id, r.expires_at_ms));
            }
        }
        let mut table = self.revocations.borrow_mut();
        for (app, kind, id, until) in revoked {
            table.insert(app, kind, &id, until, now);
        }
        Ok(())
    }

    pub async fn load_streams(&self) -> Result<(), StorageError> {
        let Some(store) = self.store() else { return Ok(()) };
        let streams = store.load_streams().await?;
        let mut channels = self.channels.borrow_mut();
        let mut unknown = 0;
        for (app_id, channel, meta) in streams {
            match self.ctx.apps.by_id(&app_id) {
                Some(app) => {
                    let head = meta.newest_serial();
                    channels.insert_stream(app, &channel, meta.stream_id.into(), head);
                }
                None => unknown += 1,
            }
        }
        if unknown > 0 {
            log::info!(
                "shard {}: {unknown} stored channel streams belong to apps not configured; kept, unread",
                self.id
            );
        }
        Ok(())
    }

    /// Stop step: waits until every message in the commit pipeline is delivered and answered
    /// (at most `limit`).
    pub async fn drain(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while !self.pipeline.is_drained() && Instant::now() < until {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stop step: whatever the fsync policy, what this shard's store took reaches the disk.
    pub async fn sync_store(&self) {
        if let Some(store) = self.store() {
            if let Err(e) = store.sync().await {
                log::error!("final sync of {} failed: {e}", store.path().display());
            }
        }
    }

    /// Once a second: forgets what expired among what this shard owns.
    async fn housekeeping(self: Rc<Self>) {
        let rl = &self.ctx.config.rate_limiter;
        let longest_window = rl.api.window.max(rl.websocket.window);
        loop {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            let now = Instant::now();
            self.channels.borrow_mut().expire(now);
            self.idempotency.borrow_mut().expire(now);
            self.rate_windows.borrow_mut().expire(now, longest_window);
            self.sequenced.borrow_mut().expire(now, self.ctx.config.mesh.request_timeout * 2);
        }
    }
}

/// Test hook (`--test-hooks`): the shard stops handling what the mesh brings it for `ms`, as a
/// shard stuck in a long computation would, so that deadlines and backlog bounds can be seen.
pub struct Stall {
    pub ms: u64,
}

impl Request for Stall {
    type Reply = ();
    const REFUSABLE: bool = false;

    fn handle(self, shard: &Rc<Shard>, _reply: Responder<Self>) {
        log::warn!("shard {}: stalled for {} ms by a test hook", shard.id, self.ms);
        shard.mesh.pause(Duration::from_millis(self.ms));
    }
}

/// Spawns a one-shot task on this shard; a panic in it is caught, logged and counted.
pub fn spawn(shard: &Rc<Shard>, what: &'static str, fut: impl Future<Output = ()> + 'static) {
    let guarded =
        Guarded { fut: futures_lite::FutureExt::catch_unwind(AssertUnwindSafe(fut)), shard: shard.clone(), what };
    glommio::spawn_local(guarded).detach();
}

pin_project_lite::pin_project! {
    /// A task with its panics caught. A struct rather than an `async` block, which would hold
    /// the task's future twice (once captured, once awaited): tasks live as long as their
    /// connections, so their size is memory per connection.
    struct Guarded<F> {
        #[pin]
        fut: F,
        shard: Rc<Shard>,
        what: &'static str,
    }
}

impl<F: Future<Output = std::thread::Result<()>>> Future for Guarded<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let this = self.project();
        let Poll::Ready(outcome) = this.fut.poll(cx) else { return Poll::Pending };
        if let Err(p) = outcome {
            this.shard.report_panic(None, PanicSite::Task, this.what, &*p);
        }
        Poll::Ready(())
    }
}

/// Runs one of the shard's long-lived tasks for the shard's life: a panic in it is caught,
/// logged and counted, and the task starts again, so the shard keeps serving.
pub fn supervise<F: Future<Output = ()> + 'static>(
    shard: &Rc<Shard>,
    what: &'static str,
    task: impl Fn(Rc<Shard>) -> F + 'static,
) {
    let s = shard.clone();
    glommio::spawn_local(async move {
        loop {
            match futures_lite::FutureExt::catch_unwind(AssertUnwindSafe(task(s.clone()))).await {
                Ok(()) => return,
                Err(p) => s.report_panic(None, PanicSite::Task, what, &*p),
            }
        }
    })
    .detach();
}
