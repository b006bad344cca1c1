//! The commit pipeline: every stored message waits here, in order, between its append and its
//! delivery.
//!
//! A message is fanned out only once its append is `written` (handed to the OS: a process kill
//! cannot take back anything a subscriber saw). The HTTP publish is answered then too, except
//! with `fsync = "always"`, where the answer waits until the append is synced to disk. Both
//! waits are FIFO queues served by one task each, because the store answers appends in the
//! order they were made: one queue keeps every channel's messages in serial order without a
//! per-channel structure.

use super::annotate::{Annotate, Annotated};
use super::broadcast::Broadcast;
use super::message_cache::MessageKey;
use super::rollup::RollupPart;
use super::stream::Kept;
use super::{ChannelOp, OpFailure, Origin, Rejection};
use crate::config::AppIdx;
use crate::protocol::versioned::Ack;
use crate::shard::route::{Request, Responder};
use crate::shard::Shard;
use crate::socket_id::SocketId;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use storage::StorageError;

/// A message waiting for its append to be written before it is delivered.
pub(crate) struct Commit {
    pub app: AppIdx,
    pub channel: Arc<str>,
    /// The stream the message took its place in: an operator's reset may have replaced it by
    /// the time the message is released.
    pub stream_id: Arc<str>,
    /// `None` for messages that are not stored (ephemeral): they wait only for those ahead.
    pub append: Option<Append>,
    pub message: Broadcast,
    pub kept: Option<Kept>,
    /// A versioned create or a mutation: the version it makes.
    pub version: Option<VersionCommit>,
    pub exclude: Option<SocketId>,
    pub origin: Origin,
    pub reply: Responder<ChannelOp>,
    /// An append that an AI channel's rollup window may hold (`rollup.rs`).
    pub rollup: Option<RollupPart>,
}

/// The version a commit makes, answered once it is delivered.
pub(crate) struct VersionCommit {
    pub ack: Ack,
    /// A mutation's message, whose held state is dropped if the append fails.
    pub message: Option<MessageKey>,
    /// A mutation's op_id, whose receipt counts once the append is written.
    pub op_id: Option<String>,
}

pub(crate) struct Append {
    pub serial: u64,
    pub epoch: u64,
    pub written: Option<storage::Reply<()>>,
    pub durable: Option<storage::Reply<()>>,
}

/// An operation delivered and waiting for its write's fsync (`always`) before it is answered.
struct Durable {
    durable: Option<storage::Reply<()>>,
    answer: Box<dyn FnOnce(Result<(), StorageError>)>,
}

/// A stored change waiting in the pipeline: a message, or an annotation of one.
pub(crate) enum Step {
    Message(Commit),
    Annotation(AnnotationCommit),
}

impl Step {
    fn written(&mut self) -> Option<storage::Reply<()>> {
        match self {
            Step::Message(c) => c.append.as_mut().and_then(|a| a.written.take()),
            Step::Annotation(a) => a.written.take(),
        }
    }
}

/// An annotation event waiting for its write before its summary and the event go out.
pub(crate) struct AnnotationCommit {
    pub app: AppIdx,
    pub channel: Arc<str>,
    pub written: Option<storage::Reply<()>>,
    pub durable: Option<storage::Reply<()>>,
    /// The (message, type) summary, to every V2 subscriber.
    pub summary: Broadcast,
    /// The raw event, to subscriptions in `ANNOTATION_SUBSCRIBE` mode.
    pub event: Broadcast,
    /// Whose held state is dropped if the write fails.
    pub message: MessageKey,
    pub answer: Annotated,
    pub reply: Responder<Annotate>,
}

/// A FIFO of entries each waiting for one store completion, served by one task: the store
/// answers in the order requests were made, so awaiting the front entry only is enough.
struct Fifo<T> {
    queue: RefCell<VecDeque<T>>,
    waiter: Cell<Option<Waker>>,
}

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo { queue: RefCell::new(VecDeque::new()), waiter: Cell::new(None) }
    }
}

impl<T> Fifo<T> {
    fn push(&self, entry: T) {
        self.queue.borrow_mut().push_back(entry);
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }

    /// Waits for an entry, then for the completion `take` hands out of it (none: at once),
    /// and removes the entry. The entry stays queued while it waits, so `Pipeline::is_idle`
    /// sees it.
    async fn next(&self, take: impl Fn(&mut T) -> Option<storage::Reply<()>>) -> (T, Result<(), StorageError>) {
        let completion = poll_fn(|cx| match self.queue.borrow_mut().front_mut() {
            Some(entry) => Poll::Ready(take(entry)),
            None => {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        let outcome = match completion {
            Some(c) => c.await,
            None => Ok(()),
        };
        (self.queue.borrow_mut().pop_front().expect("the entry just awaited"), outcome)
    }
}

#[derive(Default)]
pub(crate) struct Pipeline {
    commits: Fifo<Step>,
    acks: Fifo<Durable>,
}

impl Pipeline {
    /// Nothing is waiting: a message that needs no append may be delivered at once.
    pub fn is_idle(&self) -> bool {
        self.commits.queue.borrow().is_empty()
    }

    /// Nothing is waiting for its append or its fsync.
    pub fn is_drained(&self) -> bool {
        self.is_idle() && self.acks.queue.borrow().is_empty()
    }

    pub fn push(&self, step: Step) {
        self.commits.push(step);
    }

    /// Runs `answer` once `durable` completes, in order with every other answer waiting.
    pub fn push_ack(&self, durable: storage::Reply<()>, answer: impl FnOnce(Result<(), StorageError>) + 'static) {
        self.acks.push(Durable { durable: Some(durable), answer: Box::new(answer) });
    }
}

impl Shard {
    /// Answers `reply` with `done`: at once, or, when the write must be synced first
    /// (`fsync = "always"`) and someone waits, once `durable` completes, in order with every
    /// other answer waiting. `what` names the change in the error if the sync fails.
    pub(crate) fn answer_when_durable<Q, T>(
        &self,
        durable: Option<storage::Reply<()>>,
        reply: Responder<Q>,
        done: T,
        what: &'static str,
    ) where
        Q: Request<Reply = Result<T, OpFailure>>,
        T: 'static,
    {
        match durable {
            Some(durable) if reply.is_wanted() => self.pipeline.push_ack(durable, move |synced| {
                reply.send(
                    synced
                        .map(|()| done)
                        .map_err(|e| OpFailure::Storage(format!("{what} delivered but not synced to disk: {e}"))),
                )
            }),
            _ => reply.send(Ok(done)),
        }
    }

    /// Delivers commits in order as their appends are written.
    pub(crate) async fn committer(self: Rc<Self>) {
        loop {
            match self.pipeline.commits.next(Step::written).await {
                (Step::Message(commit), outcome) => self.release(commit, outcome),
                (Step::Annotation(a), outcome) => self.release_annotation(a, outcome),
            }
        }
    }

    /// Answers publishes in order as their appends become durable.
    pub(crate) async fn acker(self: Rc<Self>) {
        loop {
            let (ack, outcome) = self.pipeline.acks.next(|a| a.durable.take()).await;
            if let Err(e) = &outcome {
                log::error!("shard {}: a delivered change did not reach its fsync: {e}", self.id);
            }
            (ack.answer)(outcome);
        }
    }
}

/// What a failed write of a change to a mutable message (a mutation, an annotation) tells its
/// asker: the store refuses one whose message is no longer retained.
pub(crate) fn message_write_failure(e: StorageError) -> OpFailure {
    match e {
        StorageError::InvalidInput(_) => {
            OpFailure::Rejected(Rejection::not_found("the message is no longer retained in history".into()))
        }
        e => OpFailure::Storage(super::publish::failure_text(&e)),
    }
}
