//! One shard's endpoint of the full mesh of SPSC rings.
//!
//! `send` never waits: if the ring to a peer is full, the message goes into a local outbox that
//! a per-peer task drains in order. A handler that answers a message by sending another can
//! therefore never deadlock two shards that are both waiting on each other's full ring.
//! Messages a shard sends to itself go through a local queue and are handled later by the same
//! handler, so the code path (and its re-entrancy rules) is the same whether the peer is this
//! shard or another.
//!
//! The outbox is bounded for new work only: `try_send` refuses a message once the peer's
//! backlog (its outbox, or this shard's local queue) holds `backlog_limit` messages, so a stuck
//! peer costs at most the ring plus that many messages per sender. `send` is for what must not
//! be refused (answers, bookkeeping that undoes earlier work) and for the work that admitted
//! requests cause. A shard has at most `ring + backlog_limit` requests from each shard waiting
//! for it, so what it sends one peer while working through all of them at once stays below
//! [`Mesh::has_room_for_results`]; a backlog beyond that means the peer is stuck, and the
//! caller refuses the work that would add to it.

use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::GlommioError;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

pub struct Mesh<M: Send + 'static> {
    id: usize,
    shards: usize,
    senders: Senders<M>,
    receivers: RefCell<Option<glommio::channels::channel_mesh::Receivers<M>>>,
    /// Messages to peer i that did not fit in its ring, oldest first.
    outboxes: Vec<Queue<M>>,
    /// Messages this shard sent to itself.
    local: Queue<M>,
    backlog_limit: usize,
    ring_capacity: usize,
    /// Incoming messages wait until then (see [`Mesh::pause`]).
    paused_until: Cell<Option<Instant>>,
}

/// A FIFO with one waiting task.
struct Queue<M> {
    items: RefCell<VecDeque<M>>,
    waiter: Cell<Option<Waker>>,
    /// The consumer has taken a message and not finished with it (an outbox message whose ring
    /// send is still waiting). A new message must queue behind it to keep FIFO order.
    busy: Cell<bool>,
}

impl<M> Queue<M> {
    fn new() -> Self {
        Queue { items: RefCell::new(VecDeque::new()), waiter: Cell::new(None), busy: Cell::new(false) }
    }

    fn push(&self, m: M) {
        self.items.borrow_mut().push_back(m);
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }

    fn len(&self) -> usize {
        self.items.borrow().len()
    }

    async fn pop(&self) -> M {
        poll_fn(|cx| match self.items.borrow_mut().pop_front() {
            Some(m) => Poll::Ready(m),
            None => {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

impl<M: Send + 'static> Mesh<M> {
    pub(crate) async fn join(builder: MeshBuilder<M, Full>, ring_capacity: usize, backlog_limit: usize) -> Self {
        let (senders, receivers) = builder.join().await.expect("joining the shard mesh");
        let shards = senders.nr_consumers();
        Mesh {
            id: senders.peer_id(),
            shards,
            senders,
            receivers: RefCell::new(Some(receivers)),
            outboxes: (0..shards).map(|_| Queue::new()).collect(),
            local: Queue::new(),
            backlog_limit,
            ring_capacity,
            paused_until: Cell::new(None),
        }
    }

    /// This shard's index, `0..shards()`.
    pub fn id(&self) -> usize {
        self.id
    }

    /// How many shards the mesh joins.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// Sends `msg` to shard `to` (which may be this shard), whatever the backlog. Never waits;
    /// order between one sender and one receiver is preserved.
    pub fn send(&self, to: usize, msg: M) {
        if to == self.id {
            self.local.push(msg);
            return;
        }
        let outbox = &self.outboxes[to];
        if outbox.busy.get() || !outbox.items.borrow().is_empty() {
            outbox.push(msg);
            return;
        }
        match self.senders.try_send_to(to, msg) {
            Ok(()) => {}
            Err(GlommioError::WouldBlock(glommio::ResourceType::Channel(msg))) => outbox.push(msg),
            Err(e) => log::debug!("shard {} -> {to}: message dropped, peer gone: {e}", self.id),
        }
    }

    /// Sends `msg` unless shard `to` is already `backlog_limit` messages behind; then gives the
    /// message back. In order with `send`.
    pub fn try_send(&self, to: usize, msg: M) -> Result<(), M> {
        if !self.has_room(to) {
            return Err(msg);
        }
        self.send(to, msg);
        Ok(())
    }

    /// Whether `try_send` to `to` would be accepted now.
    pub fn has_room(&self, to: usize) -> bool {
        self.backlog(to) < self.backlog_limit
    }

    /// Whether shard `to` can take what this shard's admitted work sends it: false only when
    /// its backlog exceeds everything that work could have caused (see the module doc), so the
    /// peer has stopped reading. Always true for this shard itself, which drains its own queue.
    pub fn has_room_for_results(&self, to: usize) -> bool {
        to == self.id || self.backlog(to) < (self.ring_capacity + self.backlog_limit) * self.shards
    }

    /// Messages waiting for shard `to` beyond what its ring holds (for this shard: its local
    /// queue).
    pub fn backlog(&self, to: usize) -> usize {
        if to == self.id {
            self.local.len()
        } else {
            self.outboxes[to].len()
        }
    }

    /// Holds every incoming message (from peers and from this shard) for `d`, as a shard stuck
    /// in a long computation would. For tests of deadlines and backlog bounds.
    pub fn pause(&self, d: Duration) {
        self.paused_until.set(Some(Instant::now() + d));
    }

    async fn wait_if_paused(&self) {
        while let Some(until) = self.paused_until.get() {
            let now = Instant::now();
            if now >= until {
                self.paused_until.set(None);
                return;
            }
            glommio::timer::sleep(until - now).await;
        }
    }

    /// Starts the tasks that receive from every peer (and from this shard itself) and calls
    /// `handler` for each message, one at a time, in arrival order per sender. Call once.
    pub fn serve(self: &Rc<Self>, handler: Rc<dyn Fn(M)>) {
        let mut receivers = self.receivers.borrow_mut().take().expect("Mesh::serve called twice");
        for (_peer, rx) in receivers.streams() {
            let (me, handler) = (self.clone(), handler.clone());
            glommio::spawn_local(async move {
                while let Some(m) = rx.recv().await {
                    me.wait_if_paused().await;
                    handler(m);
                }
            })
            .detach();
        }
        let me = self.clone();
        glommio::spawn_local(async move {
            loop {
                let m = me.local.pop().await;
                me.wait_if_paused().await;
                handler(m);
            }
        })
        .detach();
        for peer in (0..self.shards).filter(|&p| p != self.id) {
            let me = self.clone();
            glommio::spawn_local(async move {
                loop {
                    let outbox = &me.outboxes[peer];
                    let m = outbox.pop().await;
                    outbox.busy.set(true);
                    if me.senders.send_to(peer, m).await.is_err() {
                        log::debug!("shard {} -> {peer}: outbox message dropped, peer gone", me.id);
                    }
                    outbox.busy.set(false);
                }
            })
            .detach();
        }
    }
}
