//! One shard's endpoint of the full mesh of SPSC rings.
//!
//! `send` never waits: if the ring to a peer is full, the message goes into a local outbox that
//! a per-peer task drains in order. A handler that answers a message by sending another can
//! therefore never deadlock two shards that are both waiting on each other's full ring.
//! Messages a shard sends to itself go through a local queue and are handled later by the same
//! handler, so the code path (and its re-entrancy rules) is the same whether the peer is this
//! shard or another.

use glommio::channels::channel_mesh::{Full, MeshBuilder, Senders};
use glommio::GlommioError;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

pub struct Mesh<M: Send + 'static> {
    id: usize,
    shards: usize,
    senders: Senders<M>,
    receivers: RefCell<Option<glommio::channels::channel_mesh::Receivers<M>>>,
    /// Messages to peer i that did not fit in its ring, oldest first.
    outboxes: Vec<Queue<M>>,
    /// Messages this shard sent to itself.
    local: Queue<M>,
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
    pub(crate) async fn join(builder: MeshBuilder<M, Full>) -> Self {
        let (senders, receivers) = builder.join().await.expect("joining the shard mesh");
        let shards = senders.nr_consumers();
        Mesh {
            id: senders.peer_id(),
            shards,
            senders,
            receivers: RefCell::new(Some(receivers)),
            outboxes: (0..shards).map(|_| Queue::new()).collect(),
            local: Queue::new(),
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

    /// Sends `msg` to shard `to` (which may be this shard). Never waits; order between one
    /// sender and one receiver is preserved.
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

    /// Starts the tasks that receive from every peer (and from this shard itself) and calls
    /// `handler` for each message, one at a time, in arrival order per sender. Call once.
    pub fn serve(self: &Rc<Self>, handler: Rc<dyn Fn(M)>) {
        let mut receivers = self.receivers.borrow_mut().take().expect("Mesh::serve called twice");
        for (_peer, rx) in receivers.streams() {
            let handler = handler.clone();
            glommio::spawn_local(async move {
                while let Some(m) = rx.recv().await {
                    handler(m);
                }
            })
            .detach();
        }
        let me = self.clone();
        glommio::spawn_local(async move {
            loop {
                let m = me.local.pop().await;
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
