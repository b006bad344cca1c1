//! One shard: the sockets it accepted, the channels it owns, and the tasks that run them
//! (accept loop, mesh handler, flusher, heartbeat sweeper). Everything here is `!Send` and
//! lives on one core; other shards are reached only through `self.mesh.send(..)`.

pub mod call;
pub mod durable;
pub mod hub;
pub mod idempotency;
pub mod limits;
pub mod msg;
mod owner;
pub mod stream;
pub mod watch;

use crate::apps::{AppIdx, Registry};
use crate::config::Config;
use crate::protocol::outbound::{self, Dialect};
use crate::protocol::ProtocolError;
use crate::socket_id::SocketId;
use crate::ws::codec::{self, Opcode};
use crate::ws::conn::{Conn, Frame, OutState, Pushed, Written};
use call::Continuation;
use hub::{Hub, QueueBound, Socket, SocketKey};
use msg::{Broadcast, Msg, UserAction};
use owner::Owned;
use shards::Mesh;
use slab::Slab;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};
use watch::{Watch, WatchMsg};

/// How long a socket may take to finish its close handshake before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Shared read buffer per shard: the most one read takes from a socket.
const SCRATCH_BYTES: usize = 64 << 10;

/// What every shard shares, read-only apart from the admission counters (touched once per
/// connect and disconnect, never on the fanout path).
pub struct Context {
    pub config: Config,
    pub apps: Arc<Registry>,
    /// Sockets open on the node, for `max_connections`.
    pub connections: AtomicUsize,
    /// Sockets open per app, for the app's `max_connections`.
    pub app_connections: Vec<AtomicU64>,
    /// Set once when the process is asked to stop.
    pub stopping: AtomicBool,
    /// A shard could not start (e.g. the port is taken): the process exits non-zero.
    pub failed: AtomicBool,
    /// Every shard's store (durable history), when history is enabled. A shard appends only to
    /// its own; history reads go straight to the owner's store thread from any shard.
    pub stores: Option<durable::Stores>,
    /// Every shard's counters; each shard writes only its own (see `metrics`).
    pub metrics: crate::metrics::Metrics,
    /// The webhook sender, when some app has webhooks; its `stats` count what it did.
    pub webhooks: Option<crate::webhook::Webhooks>,
}

impl Context {
    /// Resolves the apps and opens the stores (which may first migrate streams between them).
    pub fn new(config: Config) -> Result<Arc<Context>, String> {
        let apps = Registry::new(config.apps.clone());
        let app_connections = (0..apps.len()).map(|_| AtomicU64::new(0)).collect();
        let stores = durable::Stores::open(&config, &apps)?;
        let webhooks = crate::webhook::Webhooks::start(&config.webhooks, apps.clone())?;
        let metrics = crate::metrics::Metrics::new(config.shards, apps.len(), config.metrics_port);
        Ok(Arc::new(Context {
            metrics,
            webhooks,
            stores,
            config,
            apps,
            connections: AtomicUsize::new(0),
            app_connections,
            stopping: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }))
    }

    /// Records a fatal start-up failure and stops every shard.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
        self.stopping.store(true, Ordering::Relaxed);
    }
}

pub struct Shard {
    pub id: usize,
    pub shards: usize,
    pub ctx: Arc<Context>,
    pub mesh: Rc<Mesh<Msg>>,
    pub hub: RefCell<Hub>,
    owned: RefCell<Owned>,
    watch: RefCell<Watch>,
    idempotency: RefCell<idempotency::Table>,
    pipeline: durable::Pipeline,
    rate_windows: RefCell<limits::Windows>,
    pub(crate) calls: RefCell<Slab<Continuation>>,
    /// The read buffer every socket of this shard reads into.
    pub scratch: RefCell<Vec<u8>>,
    /// Sockets with queued frames for the flusher's next pass.
    dirty: RefCell<Vec<SocketKey>>,
    flusher: Cell<Option<Waker>>,
    /// Open `FlushHold`s: a burst of received input is still being handled.
    flush_holds: Cell<u32>,
    /// Set when the shard starts its graceful stop.
    pub draining: Cell<bool>,
    /// Webhook events of channels this shard owns waiting for their re-check.
    pub(crate) webhook_pending: Rc<RefCell<crate::webhook::Pending>>,
}

/// The owner of a channel among `shards`; also decides which store holds its history.
pub fn owner_of_channel(app: AppIdx, channel: &str, shards: usize) -> usize {
    shards::owner_of(shards::stable_hash(&[&app.to_le_bytes(), channel.as_bytes()]), shards)
}

/// Runs one shard until the process stops.
pub async fn run(ctx: Arc<Context>, mesh: Mesh<Msg>) {
    let apps = ctx.apps.len();
    let shard = Rc::new(Shard {
        id: mesh.id(),
        shards: mesh.shards(),
        ctx,
        mesh: Rc::new(mesh),
        hub: RefCell::new(Hub::new(apps)),
        owned: RefCell::new(Owned::new(apps)),
        watch: RefCell::new(Watch::new(apps)),
        idempotency: RefCell::new(idempotency::Table::default()),
        pipeline: durable::Pipeline::default(),
        rate_windows: RefCell::new(limits::Windows::default()),
        calls: RefCell::new(Slab::new()),
        scratch: RefCell::new(vec![0; SCRATCH_BYTES]),
        dirty: RefCell::new(Vec::new()),
        flusher: Cell::new(None),
        flush_holds: Cell::new(0),
        draining: Cell::new(false),
        webhook_pending: Rc::default(),
    });
    if let Err(e) = shard.load_streams().await {
        log::error!("shard {}: cannot load channel streams from its store: {e}", shard.id);
        shard.ctx.fail();
    }
    let handler = shard.clone();
    shard.mesh.serve(Rc::new(move |m| handler.handle(m)));
    glommio::spawn_local(shard.clone().committer()).detach();
    glommio::spawn_local(shard.clone().acker()).detach();
    glommio::spawn_local(shard.clone().flusher()).detach();
    glommio::spawn_local(shard.clone().sweeper()).detach();
    crate::http::server::accept_loop(shard.clone()).await;
    shard.stop().await;
}

impl Shard {
    /// This shard's counters for `app` (`None`: requests that name no app).
    pub fn counters(&self, app: Option<AppIdx>) -> &crate::metrics::AppCounters {
        self.ctx.metrics.shard(self.id).app(app)
    }

    /// The shard that owns `channel` of `app`.
    pub fn channel_owner(&self, app: AppIdx, channel: &str) -> usize {
        owner_of_channel(app, channel, self.shards)
    }

    /// Handles one message from the mesh (or from this shard to itself).
    fn handle(self: &Rc<Self>, m: Msg) {
        match m {
            Msg::Subscribe { reply_to, app, channel, shard, socket, member, again } => {
                self.on_subscribe(reply_to, app, channel, shard, socket, member, again)
            }
            Msg::Unsubscribe { app, channel, shard, socket: _, user_id } => {
                self.on_unsubscribe(app, &channel, shard, user_id)
            }
            Msg::Publish { reply_to, app, channel, event, exclude, from_http } => {
                self.on_publish(reply_to, app, channel, &event, exclude, from_http)
            }
            Msg::Deliver { app, channel, message, exclude } => self.deliver(app, &channel, &message, exclude),
            Msg::ToUsers { app, user_ids, action } => self.to_users(app, &user_ids, action),
            Msg::ChannelInfo { reply_to, app, channel } => self.on_channel_info(reply_to, app, &channel),
            Msg::ListChannels { reply_to, app, prefix } => self.on_list_channels(reply_to, app, &prefix),
            Msg::PresenceUsers { reply_to, app, channel } => self.on_presence_users(reply_to, app, &channel),
            Msg::Watch(w) => self.on_watch(w),
            Msg::Idempotency(m) => self.on_idempotency(m),
            Msg::RateCheck { reply_to, key, limit } => self.on_rate_check(reply_to, key, limit),
            Msg::Replay { reply_to, app, channel, position, legacy } => {
                self.on_replay(reply_to, app, &channel, position, legacy)
            }
            Msg::Reply { call, reply } => call::complete(self, call, reply),
        }
    }

    // ---- sockets -------------------------------------------------------------------------

    /// Indexes a new WebSocket and queues the handshake response and `connection_established`
    /// (one send for both).
    pub fn add_socket(&self, conn: Rc<Conn>, app: AppIdx, dialect: Dialect, handshake: Vec<u8>) -> (SocketKey, SocketId) {
        let id = SocketId::random();
        let now = Instant::now();
        let key = self.hub.borrow_mut().sockets.insert(Socket::new(id, app, dialect, conn, now));
        self.counters(Some(app)).new_connections.inc();
        log::debug!(socket_id = id.to_string().as_str(), app = self.ctx.apps.get(app).id.as_str(), shard = self.id, protocol = dialect.number(); "connection opened");
        // The 101 response is HTTP, not a WebSocket message: queued without counting.
        let pushed = self.hub.borrow_mut().sockets.get_mut(key).map(|s| s.out.push_unbounded(handshake.into()));
        if pushed == Some(Pushed::NeedsFlush) {
            self.list_dirty(key);
        }
        let timeout = self.ctx.config.activity_timeout.as_secs();
        self.send_json(key, &outbound::connection_established(dialect, &id.to_string(), timeout));
        (key, id)
    }

    /// Forgets a socket whose reader has ended; undoes its subscriptions if not done yet.
    pub fn remove_socket(self: &Rc<Self>, key: SocketKey, id: SocketId) {
        self.detach(key);
        let mut hub = self.hub.borrow_mut();
        if hub.sockets.get(key).is_some_and(|s| s.id == id) {
            let s = hub.sockets.remove(key);
            let c = self.counters(Some(s.app));
            c.disconnections.inc();
            c.disconnections_by_reason[crate::metrics::close_reason(s.close_code)].inc();
            let open_ms = s.connected_at.elapsed().as_millis() as u64;
            log::debug!(socket_id = id.to_string().as_str(), app = self.ctx.apps.get(s.app).id.as_str(), shard = self.id, open_ms = open_ms; "connection closed");
            self.ctx.connections.fetch_sub(1, Ordering::Relaxed);
            self.ctx.app_connections[s.app as usize].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Removes the socket from every channel and user index, telling the owners. Idempotent.
    fn detach(self: &Rc<Self>, key: SocketKey) {
        let mut hub = self.hub.borrow_mut();
        let Some(s) = hub.sockets.get_mut(key) else { return };
        let (app, id) = (s.app, s.id);
        let channels = std::mem::take(&mut s.channels);
        let user = if s.signed_in || s.user_id.is_some() { s.user_id.take() } else { None };
        let signed_in = std::mem::replace(&mut s.signed_in, false);
        let watchlist = s.watchlist.take();
        for (channel, sub) in channels {
            self.count_unsubscribe(app, &channel, hub.remove_subscriber(app, &channel, key));
            let owner = self.channel_owner(app, &channel);
            self.mesh.send(owner, Msg::Unsubscribe { app, channel, shard: self.id, socket: id, user_id: sub.member });
        }
        if let Some(user) = user {
            hub.unindex_user(app as usize, &user, key);
            if signed_in && self.ctx.apps.get(app).watchlist_events {
                self.signout_watch(app, user, watchlist.unwrap_or_default());
            }
        }
    }

    /// Tells the owners of `user` and of its watched ids that one signed-in socket is gone.
    pub(crate) fn signout_watch(&self, app: AppIdx, user: Arc<str>, watchlist: Vec<String>) {
        let me = self.user_owner(app, &user);
        let mut by_owner: Vec<Vec<String>> = vec![Vec::new(); self.shards];
        for w in watchlist {
            by_owner[self.user_owner(app, &w)].push(w);
        }
        for (shard, watch) in by_owner.into_iter().enumerate() {
            if shard == me || !watch.is_empty() {
                self.mesh.send(
                    shard,
                    Msg::Watch(WatchMsg::Signout { app, watcher: user.clone(), online: shard == me, watch }),
                );
            }
        }
    }

    // ---- outbound ------------------------------------------------------------------------

    /// Queues a frame meant for this one socket (not a channel broadcast). On V2 it gets a
    /// `message_id` of its own (spec 02 §1.4).
    pub fn send_json(&self, key: SocketKey, json: &[u8]) {
        let v2 = self.hub.borrow().sockets.get(key).is_some_and(|s| s.dialect == Dialect::V2);
        let json = if v2 { Cow::Owned(outbound::with_message_id(json)) } else { Cow::Borrowed(json) };
        self.send_frame(key, codec::encode(Opcode::Text, &json).into());
    }

    /// Queues a heartbeat frame: never given a `message_id`.
    pub fn send_heartbeat(&self, key: SocketKey, json: &[u8]) {
        self.send_frame(key, codec::encode(Opcode::Text, json).into());
    }

    /// Counts a subscription that ended; `emptied`: it was the channel's last on this shard.
    pub fn count_unsubscribe(&self, app: AppIdx, channel: &str, emptied: bool) {
        let c = self.counters(Some(app));
        let ty = crate::metrics::channel_type(channel);
        c.unsubscriptions[ty].inc();
        if emptied {
            c.active_channels[ty].sub(1);
        }
    }

    /// Queues an encoded frame for one socket, outside the queue bound.
    pub fn send_frame(&self, key: SocketKey, frame: Frame) {
        let mut hub = self.hub.borrow_mut();
        if let Some(s) = hub.sockets.get_mut(key).filter(|s| !s.closing) {
            let c = self.counters(Some(s.app));
            c.ws_sent.inc();
            c.ws_sent_bytes.add(frame.len() as u64);
            if s.out.push_unbounded(frame) == Pushed::NeedsFlush {
                self.list_dirty(key);
            }
        }
    }

    fn list_dirty(&self, key: SocketKey) {
        let mut dirty = self.dirty.borrow_mut();
        dirty.push(key);
        if dirty.len() == 1 {
            if let Some(w) = self.flusher.take() {
                w.wake();
            }
        }
    }

    /// Queues one channel message on every local subscriber except `exclude`.
    pub fn deliver(self: &Rc<Self>, app: AppIdx, channel: &str, message: &Broadcast, exclude: Option<SocketId>) {
        let overflowed = {
            let mut hub = self.hub.borrow_mut();
            if !hub.channels[app as usize].contains_key(channel) {
                return;
            }
            let mut dirty = self.dirty.borrow_mut();
            let was_empty = dirty.is_empty();
            let (full, queued, bytes) = hub.queue_on_channel(app, channel, message, exclude, self.queue_bound(), &mut dirty);
            self.counters(Some(app)).delivered(channel, queued, bytes, message.published_at.elapsed());
            if was_empty && !dirty.is_empty() {
                if let Some(w) = self.flusher.take() {
                    w.wake();
                }
            }
            full
        };
        for key in overflowed {
            self.overflow(key);
        }
    }

    /// Lets through the live frames a socket's continuity gates held back (all its gates, or
    /// one channel's). Returns how many went out.
    pub fn release_gates(self: &Rc<Self>, key: SocketKey, channel: Option<&str>) -> usize {
        let (passed, full) = {
            let mut hub = self.hub.borrow_mut();
            let mut dirty = self.dirty.borrow_mut();
            let was_empty = dirty.is_empty();
            let r = hub.release_gates(key, channel, self.queue_bound(), &mut dirty);
            if was_empty && !dirty.is_empty() {
                if let Some(w) = self.flusher.take() {
                    w.wake();
                }
            }
            r
        };
        if full {
            self.overflow(key);
        }
        passed
    }

    fn queue_bound(&self) -> QueueBound {
        QueueBound { frames: self.ctx.config.max_queued_messages, bytes: self.ctx.config.max_queued_bytes }
    }

    /// A socket's queue is full: it is too slow for what it subscribed to.
    fn overflow(self: &Rc<Self>, key: SocketKey) {
        if self.ctx.config.disconnect_on_buffer_full {
            if let Some(s) = self.hub.borrow().sockets.get(key).filter(|s| !s.closing) {
                self.counters(Some(s.app)).slow_consumer_disconnections.inc();
            }
            self.close(key, &ProtocolError::buffer_full(self.ctx.config.max_queued_messages));
        } else {
            // Per message: not at info (issue 5); the socket stays open by configuration.
            log::debug!(shard = self.id; "socket queue full, message dropped for it");
        }
    }

    /// Acts on every local socket of `user_ids`.
    fn to_users(self: &Rc<Self>, app: AppIdx, user_ids: &[String], action: UserAction) {
        let keys: Vec<(SocketKey, SocketId)> = {
            let hub = self.hub.borrow();
            user_ids
                .iter()
                .flat_map(|u| hub.user_sockets(app, u).iter().map(|&k| (k, hub.sockets[k].id)))
                .collect()
        };
        for (key, id) in keys {
            match &action {
                UserAction::Deliver { payload, exclude } if Some(id) != *exclude => {
                    let frame: Frame = codec::encode(Opcode::Text, payload).into();
                    let bound = self.queue_bound();
                    let full = {
                        let mut hub = self.hub.borrow_mut();
                        match hub.live(key, id).map(|s| s.out.push(frame, bound.frames, bound.bytes)) {
                            Some(Pushed::NeedsFlush) => {
                                self.list_dirty(key);
                                false
                            }
                            Some(Pushed::Full) => true,
                            _ => false,
                        }
                    };
                    if full {
                        self.overflow(key);
                    }
                }
                UserAction::Deliver { .. } => {}
                UserAction::Close(err) => self.close(key, err),
            }
        }
    }

    /// Sends `pusher:error` and a close frame with the error's code, then stops the socket
    /// once they are written. The socket leaves every channel at once.
    pub fn close(self: &Rc<Self>, key: SocketKey, err: &ProtocolError) {
        let dialect = match self.hub.borrow().sockets.get(key) {
            Some(s) if !s.closing => s.dialect,
            _ => return,
        };
        self.send_json(key, &outbound::error(dialect, err.code, &err.message));
        self.close_ws(key, err.code, &err.message);
    }

    /// Queues a close frame and stops the socket once it is written (no `pusher:error`).
    pub fn close_ws(self: &Rc<Self>, key: SocketKey, code: u16, reason: &str) {
        {
            let mut hub = self.hub.borrow_mut();
            let Some(s) = hub.sockets.get_mut(key).filter(|s| !s.closing) else { return };
            if s.out.push_unbounded(codec::encode_close(code, reason).into()) == Pushed::NeedsFlush {
                self.list_dirty(key);
            }
            s.out.close_when_drained = true;
            s.closing = true;
            s.close_code = code;
            s.last_activity = Instant::now();
        }
        self.detach(key);
    }

    /// Defers the flusher until the returned hold is dropped: taken while a burst of input
    /// that has already arrived (pipelined publishes) is handled, so that each socket gets the
    /// whole burst's frames in one send instead of one send per publish.
    pub fn hold_flush(self: &Rc<Self>) -> FlushHold {
        self.flush_holds.set(self.flush_holds.get() + 1);
        FlushHold(self.clone())
    }

    /// Writes out every listed socket's queue, once per executor turn (or per burst).
    async fn flusher(self: Rc<Self>) {
        loop {
            poll_fn(|cx| {
                if self.dirty.borrow().is_empty() || self.flush_holds.get() > 0 {
                    self.flusher.set(Some(cx.waker().clone()));
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            let keys = std::mem::take(&mut *self.dirty.borrow_mut());
            for key in keys {
                let blocked = {
                    let mut hub = self.hub.borrow_mut();
                    let Some(s) = hub.sockets.get_mut(key) else { continue };
                    if s.out.state != OutState::Listed {
                        continue;
                    }
                    match s.out.write_to(&s.conn) {
                        Written::Drained => {
                            s.out.state = OutState::Idle;
                            if s.out.close_when_drained {
                                s.conn.shutdown_write();
                                s.conn.kill();
                            }
                            None
                        }
                        Written::WouldBlock => {
                            s.out.state = OutState::Blocked;
                            Some(s.id)
                        }
                        Written::Failed => {
                            s.out.clear();
                            s.out.state = OutState::Idle;
                            s.conn.kill();
                            None
                        }
                    }
                };
                if let Some(id) = blocked {
                    glommio::spawn_local(self.clone().wait_writable(key, id)).detach();
                }
            }
        }
    }

    /// A socket's kernel buffer was full: wait until it takes more, then hand the socket back
    /// to the flusher. Other sockets are not held up meanwhile.
    async fn wait_writable(self: Rc<Self>, key: SocketKey, id: SocketId) {
        let (conn, head, offset) = {
            let hub = self.hub.borrow();
            let Some(s) = hub.sockets.get(key).filter(|s| s.id == id) else { return };
            let Some(head) = s.out.head() else { return };
            (s.conn.clone(), head, s.out.head_offset())
        };
        let written = conn.write_some(&head[offset..]).await;
        let mut hub = self.hub.borrow_mut();
        let Some(s) = hub.sockets.get_mut(key).filter(|s| s.id == id) else { return };
        match written {
            Ok(n) => {
                s.out.consumed(n);
                s.out.state = OutState::Listed;
                drop(hub);
                self.list_dirty(key);
            }
            Err(_) => {
                s.out.clear();
                s.out.state = OutState::Idle;
                s.conn.kill();
            }
        }
    }

    // ---- timers and shutdown -----------------------------------------------------------------

    /// Once a second: pings idle sockets, closes those that never answered, enforces the
    /// user-authentication timeout and drops sockets stuck in their close handshake. One pass
    /// over the shard's sockets replaces a timer per socket.
    async fn sweeper(self: Rc<Self>) {
        let cfg = &self.ctx.config;
        loop {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            let now = Instant::now();
            let mut to_close: Vec<(SocketKey, ProtocolError)> = Vec::new();
            let mut to_ping = Vec::new();
            {
                let mut hub = self.hub.borrow_mut();
                for (key, s) in hub.sockets.iter_mut() {
                    if s.closing {
                        if now.duration_since(s.last_activity) > CLOSE_TIMEOUT {
                            s.conn.kill();
                        }
                        continue;
                    }
                    match s.ping_sent {
                        Some(at) if now.duration_since(at) >= cfg.pong_timeout => {
                            to_close.push((key, ProtocolError::pong_timeout()));
                            continue;
                        }
                        // V1 probes with pusher:ping after the activity timeout; V2 with native
                        // Ping frames on its own interval (spec 02 §1.5).
                        None if match s.dialect {
                            Dialect::V1 => Some(cfg.activity_timeout),
                            Dialect::V2 => cfg.v2_ping_interval,
                        }
                        .is_some_and(|idle| now.duration_since(s.last_activity) >= idle) =>
                        {
                            s.ping_sent = Some(now);
                            to_ping.push((key, s.dialect));
                        }
                        _ => {}
                    }
                    let app = self.ctx.apps.get(s.app);
                    if app.user_authentication
                        && !s.authenticated
                        && now.duration_since(s.connected_at) >= cfg.user_authentication_timeout
                    {
                        to_close.push((key, ProtocolError::auth_timeout()));
                    }
                }
            }
            for (key, dialect) in to_ping {
                match dialect {
                    Dialect::V1 => self.send_heartbeat(key, &outbound::ping(dialect)),
                    Dialect::V2 => self.send_frame(key, codec::encode(Opcode::Ping, b"").into()),
                }
            }
            for (key, err) in to_close {
                self.close(key, &err);
            }
            self.expire_owned();
            self.idempotency.borrow_mut().expire(now);
            let rl = &cfg.rate_limiter;
            self.rate_windows.borrow_mut().expire(now, rl.api.window.max(rl.websocket.window));
            if self.hub.borrow_mut().trim() {
                // The allocator keeps freed pages until this thread allocates again; an idle
                // shard would hold them, so ask it to return them now.
                // SAFETY: mi_collect has no preconditions.
                unsafe { libmimalloc_sys::mi_collect(true) };
            }
            if self.draining.get() && self.hub.borrow().sockets.is_empty() {
                return;
            }
        }
    }

    /// Graceful stop: accepting has ended; close every socket with 4200 and wait for them to
    /// go, at most the grace period.
    async fn stop(self: &Rc<Self>) {
        self.draining.set(true);
        let keys: Vec<SocketKey> = self.hub.borrow().sockets.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close(key, &ProtocolError::server_shutdown());
        }
        let deadline = Instant::now() + self.ctx.config.shutdown_grace;
        while !self.hub.borrow().sockets.is_empty() && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        log::info!("shard {} stopped", self.id);
    }
}

/// See [`Shard::hold_flush`].
pub struct FlushHold(Rc<Shard>);

impl Drop for FlushHold {
    fn drop(&mut self) {
        let s = &self.0;
        s.flush_holds.set(s.flush_holds.get() - 1);
        if s.flush_holds.get() == 0 && !s.dirty.borrow().is_empty() {
            if let Some(w) = s.flusher.take() {
                w.wake();
            }
        }
    }
}
