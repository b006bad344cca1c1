//! Crossing between shards: who owns what, and typed requests with deadlines.
//!
//! Everything a shard says to another is a [`Msg`] on the mesh. Requests are typed: each is a
//! struct implementing [`Request`] beside the state it concerns, with its own reply type, and
//! is sent with [`Shard::invoke_on`] (ask, and wait for the answer), [`Shard::invoke_on_then`]
//! (ask, and run a continuation on this shard when the answer is handled), [`Shard::invoke_on_all`]
//! or [`Shard::tell`] (no answer). A reader of a call site sees every crossing.
//!
//! - **Order.** Answers travel the same rings as deliveries, and a continuation runs when its
//!   answer is handled, in mesh order: a subscribe's continuation indexes the socket before any
//!   later delivery from the owner is handled, so nothing published after the owner registered
//!   the subscriber can be missed.
//! - **Deadlines.** Every asked request has one (`mesh.request_timeout`): a stuck or dead shard
//!   gives [`CrossingError::Timeout`], never a hang. An answer that arrives after its asker gave
//!   up is passed to [`Request::abandoned`], which undoes what the target did for it.
//! - **Bounds.** A request may be refused at once with [`CrossingError::Overloaded`] when the
//!   target is already `mesh.backlog_limit` messages behind; requests that settle or undo
//!   earlier work are never refused (`Request::REFUSABLE = false`): their volume is bounded by
//!   the work that was admitted.
//! - **Failures.** A request whose handler panics or drops its [`Responder`] answers
//!   [`CrossingError::Failed`] at once.
//!
//! Owners: a channel, user, idempotency key or rate key is owned by the shard its [`OwnerKey`]
//! hashes to. Keys are hashed from the app's **id** and the name, never from the app's position
//! in the config, so owners (and the store that holds a channel's history) stay put when apps
//! are added or reordered, and agree across nodes.

use super::channel::broadcast::Deliver;
use super::idempotency::Space;
use super::Shard;
use crate::config::{App, AppIdx};
use crate::metrics::PanicSite;
use crate::protocol::ProtocolError;
use crate::socket_id::SocketId;
use slab::Slab;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::marker::PhantomData;
use std::net::IpAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Everything one shard can say to another (or to itself).
pub enum Msg {
    /// A typed request for state the receiving shard owns.
    Request(Box<dyn Envelope>),
    /// The answer to a request this shard asked.
    Reply { call: CallId, answer: Answer },
    /// The request `call` could not be handled (its handler failed).
    Failed { call: CallId },
    /// A channel message for this shard's local subscribers: the fanout hot path, not boxed.
    Deliver(Deliver),
    /// An action on this shard's sockets of some users.
    ToUsers(ToUsers),
}

/// A request one shard makes of another. Implemented beside the state it reads or changes.
pub trait Request: Send + Sized + 'static {
    type Reply: Send + 'static;
    /// Whether the request may be refused when the target is far behind. Requests that settle
    /// or undo earlier work must not be lost and say `false`.
    const REFUSABLE: bool = true;
    /// Runs on the target shard; answers through `reply` (now or later).
    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>);
    /// Runs on the asking shard when the answer came after the asker gave up (deadline, or the
    /// waiting task went away): undo what the target did for it.
    fn abandoned(_reply: Self::Reply, _shard: &Rc<Shard>) {}
}

/// A request on its way, with where its answer goes.
pub trait Envelope: Send {
    fn run(self: Box<Self>, shard: &Rc<Shard>);
}

struct Sealed<Q: Request> {
    req: Q,
    from: Option<(usize, CallId)>,
}

impl<Q: Request> Envelope for Sealed<Q> {
    fn run(self: Box<Self>, shard: &Rc<Shard>) {
        let reply = Responder { shard: shard.clone(), to: self.from, _q: PhantomData };
        self.req.handle(shard, reply);
    }
}

/// An answer on its way back, with what undoes it if nobody waits for it any more.
pub struct Answer {
    value: Box<dyn Any + Send>,
    abandon: fn(Box<dyn Any + Send>, &Rc<Shard>),
}

fn abandon_as<Q: Request>(value: Box<dyn Any + Send>, shard: &Rc<Shard>) {
    if let Ok(reply) = value.downcast::<Q::Reply>() {
        Q::abandoned(*reply, shard);
    }
}

/// Where the answer to one request goes. Dropping it unanswered answers `Failed`.
pub struct Responder<Q: Request> {
    shard: Rc<Shard>,
    to: Option<(usize, CallId)>,
    _q: PhantomData<fn(Q)>,
}

impl<Q: Request> Responder<Q> {
    pub fn send(mut self, reply: Q::Reply) {
        if let Some((to, call)) = self.to.take() {
            let answer = Answer { value: Box::new(reply), abandon: abandon_as::<Q> };
            self.shard.mesh.send(to, Msg::Reply { call, answer });
        }
    }

    /// A responder nobody waits on: for work no request asked for (an entry the cluster log
    /// brings from another node).
    pub fn nobody(shard: &Rc<Shard>) -> Responder<Q> {
        Responder { shard: shard.clone(), to: None, _q: PhantomData }
    }

    /// Whether anyone waits for the answer (a `tell` has no asker).
    pub fn is_wanted(&self) -> bool {
        self.to.is_some()
    }
}

impl<Q: Request> Drop for Responder<Q> {
    fn drop(&mut self) {
        if let Some((to, call)) = self.to.take() {
            self.shard.mesh.send(to, Msg::Failed { call });
        }
    }
}

/// Why a crossing did not produce an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrossingError {
    /// The shard did not answer within the deadline.
    Timeout { shard: usize, after: Duration },
    /// The way to the shard is full (it is far behind): refused without waiting.
    Overloaded { shard: usize },
    /// The shard could not handle the request.
    Failed { shard: usize },
}

impl fmt::Display for CrossingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CrossingError::Timeout { shard, after } => {
                write!(f, "shard {shard} did not answer within {} ms", after.as_millis())
            }
            CrossingError::Overloaded { shard } => write!(f, "shard {shard} is too far behind to take more work"),
            CrossingError::Failed { shard } => write!(f, "shard {shard} failed to handle the request"),
        }
    }
}

impl From<CrossingError> for ProtocolError {
    fn from(e: CrossingError) -> ProtocolError {
        ProtocolError::ShardUnavailable(e.to_string())
    }
}

// ---- owners ---------------------------------------------------------------------------------

/// Something with exactly one owner shard.
#[derive(Clone, Copy, Debug)]
pub enum OwnerKey<'a> {
    /// A channel of an app: its serials, subscribers, presence, cache and history store.
    Channel(&'a App, &'a str),
    /// A user of an app: its signed-in sockets and watchers.
    User(&'a App, &'a str),
    /// A publish idempotency key of an app.
    Idempotency(&'a App, Space, &'a str),
    /// The HTTP API rate window of an app.
    ApiRate(&'a App),
    /// The push registry of an app (its store holds it), placed as a channel named
    /// `storage::PUSH_REGISTRY` would be, so the store moves it with the shard count.
    PushRegistry(&'a App),
    /// The WebSocket connect rate window of a client address.
    ConnectRate(IpAddr),
}

impl OwnerKey<'_> {
    /// Stable across processes and builds; the channel key is the one durable history is
    /// placed by, so it must never change.
    pub fn hash(&self) -> u64 {
        use shards::{stable_hash, stable_hash_from};
        match *self {
            OwnerKey::Channel(app, channel) => stable_hash_from(app.id_hash, &[channel.as_bytes()]),
            OwnerKey::User(app, user) => stable_hash_from(app.id_hash, &[b"user", user.as_bytes()]),
            OwnerKey::Idempotency(app, space, key) => stable_hash_from(app.id_hash, &[space.tag(), key.as_bytes()]),
            OwnerKey::ApiRate(app) => stable_hash(&[b"rate", app.id.as_bytes()]),
            OwnerKey::PushRegistry(app) => stable_hash_from(app.id_hash, &[storage::PUSH_REGISTRY.as_bytes()]),
            OwnerKey::ConnectRate(IpAddr::V4(ip)) => stable_hash(&[b"rate", &ip.octets()]),
            OwnerKey::ConnectRate(IpAddr::V6(ip)) => stable_hash(&[b"rate", &ip.octets()]),
        }
    }

    pub fn owner(&self, shards: usize) -> usize {
        shards::owner_of(self.hash(), shards)
    }
}

/// The shard that owns `channel` of the app with `app_id` among `shards` (for placing stored
/// streams before the apps are loaded).
pub fn channel_owner_by_id(app_id: &str, channel: &str, shards: usize) -> usize {
    shards::owner_of(shards::stable_hash(&[app_id.as_bytes(), channel.as_bytes()]), shards)
}

// ---- what the owner side tells the socket side -------------------------------------------------

/// An action on every local socket of some users (`Msg::ToUsers`).
pub struct ToUsers {
    pub app: AppIdx,
    pub user_ids: Arc<Vec<String>>,
    pub action: UserAction,
}

pub enum UserAction {
    /// Queue this event (an HTTP publish to `#server-to-user-{id}`, a watchlist event), except
    /// on `exclude`.
    Deliver { payload: Arc<Vec<u8>>, exclude: Option<SocketId> },
    /// Send `pusher:error` and close with its code (terminate / force reconnect).
    Close(ProtocolError),
    /// These sockets (of the users named) hold a revoked capability token: tell them and close.
    Revoked(Arc<Vec<SocketId>>),
}

// ---- pending calls ---------------------------------------------------------------------------

/// A pending call: its slot index and a generation, so a late answer never meets a reused slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallId {
    index: u32,
    generation: u32,
}

/// How a call ended.
enum Outcome {
    Answer(Box<dyn Any + Send>),
    Failed,
    Timeout(Duration),
}

trait PendingCall {
    fn complete(self: Box<Self>, shard: &Rc<Shard>, outcome: Outcome);
}

/// The result of a call, shared by the continuation that fills it and the future that takes it.
struct Slot<T> {
    value: RefCell<Option<Result<T, CrossingError>>>,
    waiter: Cell<Option<Waker>>,
}

impl<T> Slot<T> {
    fn new() -> Rc<Slot<T>> {
        Rc::new(Slot { value: RefCell::new(None), waiter: Cell::new(None) })
    }

    fn fill(&self, v: Result<T, CrossingError>) {
        *self.value.borrow_mut() = Some(v);
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }
}

struct Pending<R, T, F> {
    to: usize,
    then: F,
    slot: Rc<Slot<T>>,
    _r: PhantomData<fn(R)>,
}

impl<R: 'static, T, F: FnOnce(&Rc<Shard>, R) -> T> PendingCall for Pending<R, T, F> {
    fn complete(self: Box<Self>, shard: &Rc<Shard>, outcome: Outcome) {
        let Pending { to, then, slot, .. } = *self;
        let value = match outcome {
            Outcome::Answer(value) => Ok(value),
            Outcome::Failed => Err(CrossingError::Failed { shard: to }),
            Outcome::Timeout(after) => Err(CrossingError::Timeout { shard: to, after }),
        };
        let result = value.and_then(|value| {
            let reply = value.downcast::<R>().map_err(|_| {
                log::error!("shard {}: an answer from shard {to} had the wrong type", shard.id);
                CrossingError::Failed { shard: to }
            })?;
            // The continuation runs in the mesh handler: a panic in it must fail this call
            // only, not the handler or the task waiting on the slot.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| then(shard, *reply))).map_err(|p| {
                shard.report_panic(None, PanicSite::Request, "continuation of a crossing", &*p);
                CrossingError::Failed { shard: to }
            })
        });
        slot.fill(result);
    }
}

/// This shard's calls waiting for answers, and their deadlines in order (every call has the
/// same timeout, so the queue is sorted by construction).
#[derive(Default)]
pub(super) struct Calls {
    slots: Slab<(u32, Box<dyn PendingCall>)>,
    generation: u32,
    deadlines: VecDeque<(Instant, CallId)>,
    timer: Option<Waker>,
}

impl Calls {
    fn register(&mut self, call: Box<dyn PendingCall>, deadline: Instant) -> CallId {
        self.generation = self.generation.wrapping_add(1);
        let id = CallId { index: self.slots.insert((self.generation, call)) as u32, generation: self.generation };
        self.deadlines.push_back((deadline, id));
        if self.deadlines.len() == 1 {
            if let Some(w) = self.timer.take() {
                w.wake();
            }
        }
        id
    }

    fn take(&mut self, id: CallId) -> Option<Box<dyn PendingCall>> {
        match self.slots.get(id.index as usize) {
            Some((generation, _)) if *generation == id.generation => Some(self.slots.remove(id.index as usize).1),
            _ => None,
        }
    }
}

/// A call in flight: resolves to the continuation's result or the crossing's error. Dropping
/// it first gives the call up (a late answer is then abandoned).
pub struct Call<T> {
    slot: Rc<Slot<T>>,
    id: Option<CallId>,
    shard: Rc<Shard>,
}

impl<T> Future for Call<T> {
    type Output = Result<T, CrossingError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.slot.value.borrow_mut().take() {
            Some(v) => {
                this.id = None;
                Poll::Ready(v)
            }
            None => {
                this.slot.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        }
    }
}

impl<T> Drop for Call<T> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            if self.slot.value.borrow().is_none() {
                // Given up: forget the call so a late answer goes to `abandoned`.
                let pending = self.shard.calls.borrow_mut().take(id);
                drop(pending);
            }
        }
    }
}

/// Waits for every call; the first error wins.
pub async fn all<T>(calls: Vec<Call<T>>) -> Result<Vec<T>, CrossingError> {
    let mut out = Vec::with_capacity(calls.len());
    let mut failure = None;
    for c in calls {
        match c.await {
            Ok(v) => out.push(v),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    failure.map_or(Ok(out), Err)
}

impl Shard {
    /// The shard that owns `key`.
    pub fn owner(&self, key: OwnerKey<'_>) -> usize {
        key.owner(self.shards)
    }

    /// The shard that owns `channel` of `app`; also the store that holds its history. A
    /// metachannel is owned with the channel it is about: that owner makes its events.
    pub fn channel_owner(&self, app: AppIdx, channel: &str) -> usize {
        let channel = crate::protocol::channel::meta_of(channel).unwrap_or(channel);
        self.owner(OwnerKey::Channel(self.ctx.apps.get(app), channel))
    }

    /// Asks shard `to` and waits for its answer.
    pub fn invoke_on<Q: Request>(self: &Rc<Self>, to: usize, req: Q) -> Call<Q::Reply> {
        self.invoke_on_then(to, req, |_, reply| reply)
    }

    /// Asks shard `to`; when the answer is handled (in mesh order, before anything the target
    /// sent after it), runs `then` on this shard and resolves to its result.
    pub fn invoke_on_then<Q: Request, T: 'static>(
        self: &Rc<Self>,
        to: usize,
        req: Q,
        then: impl FnOnce(&Rc<Shard>, Q::Reply) -> T + 'static,
    ) -> Call<T> {
        let slot = Slot::new();
        let deadline = Instant::now() + self.ctx.config.mesh.request_timeout;
        let pending = Box::new(Pending::<Q::Reply, T, _> { to, then, slot: slot.clone(), _r: PhantomData });
        let id = self.calls.borrow_mut().register(pending, deadline);
        let msg = Msg::Request(Box::new(Sealed { req, from: Some((self.id, id)) }));
        if let Err(e) = self.post(to, msg, Q::REFUSABLE) {
            drop(self.calls.borrow_mut().take(id));
            slot.fill(Err(e));
        }
        Call { slot, id: Some(id), shard: self.clone() }
    }

    /// Asks every shard (this one included) the same question.
    pub fn invoke_on_all<Q: Request + Clone>(self: &Rc<Self>, req: Q) -> Vec<Call<Q::Reply>> {
        (0..self.shards).map(|to| self.invoke_on(to, req.clone())).collect()
    }

    /// Sends shard `to` a request that needs no answer.
    pub fn tell<Q: Request>(&self, to: usize, req: Q) -> Result<(), CrossingError> {
        self.post(to, Msg::Request(Box::new(Sealed { req, from: None })), Q::REFUSABLE)
    }

    /// Tells every shard to act on its local sockets of some users. `refusable`: new work from
    /// a client (refused when a shard is far behind), not bookkeeping.
    pub fn to_users_everywhere(&self, to_users: impl Fn() -> ToUsers, refusable: bool) -> Result<(), CrossingError> {
        if refusable {
            if let Some(busy) = (0..self.shards).find(|&s| !self.mesh.has_room(s)) {
                self.counters(None).backlog_refusals.inc();
                return Err(CrossingError::Overloaded { shard: busy });
            }
        }
        for s in 0..self.shards {
            self.mesh.send(s, Msg::ToUsers(to_users()));
        }
        Ok(())
    }

    fn post(&self, to: usize, msg: Msg, refusable: bool) -> Result<(), CrossingError> {
        if !refusable {
            self.mesh.send(to, msg);
            return Ok(());
        }
        self.mesh.try_send(to, msg).map_err(|_| {
            self.counters(None).backlog_refusals.inc();
            log::debug!(shard = self.id, peer = to; "request refused: peer backlog full");
            CrossingError::Overloaded { shard: to }
        })
    }

    /// An answer (or a failure) for one of this shard's calls arrived.
    pub(super) fn on_answer(self: &Rc<Self>, call: CallId, outcome: Result<Answer, ()>) {
        let pending = self.calls.borrow_mut().take(call);
        match (pending, outcome) {
            (Some(p), Ok(answer)) => p.complete(self, Outcome::Answer(answer.value)),
            (Some(p), Err(())) => p.complete(self, Outcome::Failed),
            (None, Ok(answer)) => (answer.abandon)(answer.value, self),
            (None, Err(())) => {}
        }
    }

    /// Fails every call whose deadline passed. Runs for the shard's life.
    pub(super) async fn deadline_timer(self: Rc<Self>) {
        let timeout = self.ctx.config.mesh.request_timeout;
        loop {
            let due = poll_fn(|cx| {
                let mut calls = self.calls.borrow_mut();
                match calls.deadlines.front() {
                    Some(&(at, _)) => Poll::Ready(at),
                    None => {
                        calls.timer = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            })
            .await;
            let now = Instant::now();
            if due > now {
                glommio::timer::sleep(due - now).await;
                continue;
            }
            loop {
                let expired = {
                    let mut calls = self.calls.borrow_mut();
                    match calls.deadlines.front() {
                        Some(&(at, id)) if at <= now => {
                            calls.deadlines.pop_front();
                            calls.take(id)
                        }
                        _ => break,
                    }
                };
                if let Some(p) = expired {
                    p.complete(&self, Outcome::Timeout(timeout));
                }
            }
        }
    }
}
