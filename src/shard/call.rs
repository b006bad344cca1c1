//! Requests to another shard and their answers.
//!
//! A request carries a [`ReplyTo`]; the answering shard sends `Msg::Reply` back over the mesh.
//! The asking shard runs the request's continuation *synchronously when the reply is handled*,
//! in mesh order: a subscribe's continuation adds the socket to the local index before any
//! later delivery from the owner is handled, so nothing published after the owner registered
//! the subscriber can be missed. The continuation's result then reaches the waiting task.

use super::msg::Reply;
use super::Shard;
use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// Where an answer goes: the asking shard and its pending-call slot.
#[derive(Clone, Copy, Debug)]
pub struct ReplyTo {
    pub shard: usize,
    pub call: usize,
}

pub type Continuation = Box<dyn FnOnce(&Rc<Shard>, Reply)>;

/// A one-shot slot between a continuation and the task awaiting it, on one shard.
struct Slot<T> {
    value: Option<T>,
    waiter: Option<Waker>,
}

/// Registers `on_reply` and returns where the answer must be sent and a future for the
/// continuation's result.
pub fn expect_reply<T: 'static>(
    shard: &Rc<Shard>,
    on_reply: impl FnOnce(&Rc<Shard>, Reply) -> T + 'static,
) -> (ReplyTo, impl std::future::Future<Output = T>) {
    let slot = Rc::new(RefCell::new(Slot { value: None, waiter: None }));
    let filler = slot.clone();
    let call = shard.calls.borrow_mut().insert(Box::new(move |shard: &Rc<Shard>, reply: Reply| {
        let v = on_reply(shard, reply);
        let mut s = filler.borrow_mut();
        s.value = Some(v);
        if let Some(w) = s.waiter.take() {
            w.wake();
        }
    }) as Continuation);
    let fut = poll_fn(move |cx| {
        let mut s = slot.borrow_mut();
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waiter = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    });
    (ReplyTo { shard: shard.id, call }, fut)
}

/// Handles an arriving reply: runs and forgets its continuation.
pub fn complete(shard: &Rc<Shard>, call: usize, reply: Reply) {
    let cont = shard.calls.borrow_mut().try_remove(call);
    match cont {
        Some(c) => c(shard, reply),
        None => log::warn!("shard {}: reply for unknown call {call}", shard.id),
    }
}

/// Sends `reply` to whoever asked.
pub fn answer(shard: &Shard, to: ReplyTo, reply: Reply) {
    shard.mesh.send(to.shard, super::msg::Msg::Reply { call: to.call, reply });
}
