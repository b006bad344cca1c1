//! Annotations on the channel's owner (`docs/protocol/v2.md#annotations`). An annotation
//! event is an operation on its message, like a mutation: it waits for the message in the
//! owner's cache (`message_cache.rs`), is numbered after the message's earlier annotation
//! events, and is stored with the summary of its (message, type) in one write. Once written,
//! the summary goes to every V2 subscriber and the event to subscriptions in
//! `ANNOTATION_SUBSCRIBE` mode, in order with the channel's messages (the commit pipeline).
//! Annotations take no channel serial: they are not messages, and subscribers without the
//! mode must not see gaps for them. With several nodes an annotation is appended to the cluster
//! log and made by the owner on every node when the log brings it back: every node numbers it
//! alike, since each applies the same events to the same message in the same order.

use super::broadcast::Broadcast;
use super::commit::{message_write_failure, AnnotationCommit};
use super::message_cache::{Entry, MessageKey, Pending};
use super::sequence::Waiter;
use super::{OpFailure, Rejection};
use crate::backplane::{self, AnnotationIntent, Append};
use crate::config::AppIdx;
use crate::protocol::annotations::{self, Change};
use crate::protocol::versioned;
use crate::shard::route::{Request, Responder};
use crate::shard::Shard;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use storage::{AnnotationAction, AnnotationRecord, AnnotationWrite, StorageError};

/// To the channel's owner: annotate the message created at `message` in stream `stream_id`.
pub struct Annotate {
    pub app: AppIdx,
    pub channel: Arc<str>,
    pub message: u64,
    pub stream_id: Arc<str>,
    pub change: Change,
    /// The new annotation's id and the event's time, decided where the request came in (with
    /// several nodes, every node records the same).
    pub id: String,
    pub at_ms: u64,
}

/// The annotation event made (or, for a repeated delete, the one made before).
#[derive(Clone, Debug)]
pub struct Annotated {
    pub serial: u64,
    /// A delete's target.
    pub deleted: Option<u64>,
}

impl Request for Annotate {
    type Reply = Result<Annotated, OpFailure>;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        match shard.ctx.backplane.is_some() {
            true => shard.append_annotation(self, reply),
            false => {
                let key: MessageKey = (self.app, self.channel.clone(), self.stream_id.clone(), self.message);
                shard.on_message(key, Pending::Annotation(self, reply));
            }
        }
    }
}

impl Shard {
    /// Makes the annotation event against the held message and returns its commit, or answers
    /// at once (a refused delete, a repeated one).
    pub(super) fn annotate_held(
        &self,
        entry: &mut Entry,
        a: Annotate,
        reply: Responder<Annotate>,
    ) -> Option<AnnotationCommit> {
        let serial = entry.annotations.last().map_or(1, |r| r.serial + 1);
        let now_ms = a.at_ms;
        let record = match a.change {
            Change::Create(n) => AnnotationRecord {
                serial,
                action: AnnotationAction::Create,
                id: Some(a.id),
                annotation_type: n.annotation_type,
                name: n.name,
                client_id: n.client_id,
                count: n.count,
                data: n.data,
                encoding: n.encoding,
                timestamp_ms: now_ms,
                deletes: None,
            },
            Change::Delete { target, actor, own_only } => {
                let refuse =
                    |status, code, message: String| Err(OpFailure::Rejected(Rejection::new(status, code, message)));
                let Some(t) = entry.annotations.iter().find(|r| r.serial == target) else {
                    reply.send(refuse(404, "not_found", "no annotation with this serial on the message".into()));
                    return None;
                };
                if t.action == AnnotationAction::Delete {
                    let text = format!("annotation serial {} names a delete, not an annotation", target);
                    reply.send(refuse(400, "invalid_input", text));
                    return None;
                }
                if own_only && (actor.is_none() || t.client_id != actor) {
                    let text = "the socket may delete only its own annotations, and this one is not its user's";
                    reply.send(refuse(403, "forbidden", text.into()));
                    return None;
                }
                // Deleting again answers with the first delete; nothing more is sent.
                if let Some(first) = entry.annotations.iter().find(|r| r.deletes == Some(target)) {
                    reply.send(Ok(Annotated { serial: first.serial, deleted: Some(target) }));
                    return None;
                }
                AnnotationRecord {
                    serial,
                    action: AnnotationAction::Delete,
                    id: None,
                    annotation_type: t.annotation_type.clone(),
                    name: t.name.clone(),
                    client_id: t.client_id.clone(),
                    count: None,
                    data: None,
                    encoding: None,
                    timestamp_ms: now_ms,
                    deletes: Some(target),
                }
            }
        };
        let summarizer = annotations::summarizer_of(&record.annotation_type).expect("types are checked on the way in");
        let ty = record.annotation_type.clone();
        entry.annotations.push(record.clone());
        let (summary, nothing_counts) =
            annotations::summarize(summarizer, entry.annotations.iter().filter(|r| r.annotation_type == ty));
        let message_serial = versioned::serial_string(a.message, &a.stream_id);
        let summary_frame = annotations::summary_frame(&a.channel, &message_serial, &ty, &summary);
        let event_frame = annotations::event_frame(&a.channel, &message_serial, &record);
        let answer = Annotated { serial, deleted: record.deletes };
        let Some(store) = self.store() else { unreachable!("annotated messages are read from the store") };
        let stored_summary = if nothing_counts { Vec::new() } else { summary };
        let write = AnnotationWrite { message: a.message, record, summary: stored_summary };
        // Crosses to this shard's store thread: the event and the summary in one batch.
        let ticket = store.annotate(&self.ctx.apps.get(a.app).id, &a.channel, write);
        let durable = (self.ctx.config.history.store.fsync == storage::Fsync::Always).then_some(ticket.durable);
        let now = Instant::now();
        Some(AnnotationCommit {
            app: a.app,
            channel: a.channel.clone(),
            written: Some(ticket.written),
            durable,
            summary: Broadcast::new(None, now, None, Arc::new(summary_frame)),
            event: Broadcast::new(None, now, None, Arc::new(event_frame)).to_annotation_subscribers(),
            message: (a.app, a.channel, a.stream_id, a.message),
            answer,
            reply,
        })
    }

    /// An annotation's write is done: deliver and answer, or drop the held message (it
    /// counted the event in) and report the failure.
    pub(crate) fn release_annotation(&self, a: AnnotationCommit, written: Result<(), StorageError>) {
        let AnnotationCommit { app, channel, durable, summary, event, message, answer, reply, .. } = a;
        if let Err(e) = written {
            self.messages.borrow_mut().forget(&message);
            log::error!("shard {}: annotation on {channel} failed: {e}", self.id);
            reply.send(Err(message_write_failure(e)));
            return;
        }
        {
            let mut channels = self.channels.borrow_mut();
            let ch = channels.entry(app, &channel);
            // Summary first, then the event: a client folding events sees the summary agree.
            self.fan_out(ch, app, &channel, &summary, None);
            self.fan_out(ch, app, &channel, &event, None);
        }
        self.answer_when_durable(durable, reply, answer, "annotation");
    }

    /// Appends an annotation to the cluster log; it is made when the log brings it back
    /// (`apply_annotation`), and `reply` answered then. An append that fails is answered at
    /// once.
    fn append_annotation(self: &Rc<Self>, a: Annotate, reply: Responder<Annotate>) {
        let Some(log) = self.ctx.backplane.clone() else { unreachable!("appended only with a backplane") };
        let token = self.sequenced.borrow_mut().wait_for(Waiter::Annotate(reply));
        let intent = AnnotationIntent {
            app: self.ctx.apps.get(a.app).id.clone(),
            channel: a.channel.to_string(),
            stream_id: a.stream_id.to_string(),
            message: a.message,
            change: a.change,
            id: a.id,
            at_ms: a.at_ms,
            node: log.node_id().to_owned(),
            token,
        };
        // Crosses to the backplane's writer thread; the answer comes back as a wake.
        let appended = log.append(Append { entry: backplane::Entry::Annotate(intent), takes_serial: None });
        self.fail_unless_appended(appended, token);
    }

    /// Makes an annotation the cluster log brought, as the node that took it would alone; that
    /// node answers.
    pub(super) fn apply_annotation(self: &Rc<Self>, intent: AnnotationIntent) {
        let Some(app) = self.ctx.apps.by_id(&intent.app) else { return };
        let reply = match self.waiter(&intent.node, intent.token) {
            Some(Waiter::Annotate(r)) => r,
            _ => Responder::nobody(self),
        };
        let a = Annotate {
            app,
            channel: intent.channel.into(),
            message: intent.message,
            stream_id: intent.stream_id.into(),
            change: intent.change,
            id: intent.id,
            at_ms: intent.at_ms,
        };
        let key: MessageKey = (a.app, a.channel.clone(), a.stream_id.clone(), a.message);
        self.on_message(key, Pending::Annotation(a, reply));
    }
}
