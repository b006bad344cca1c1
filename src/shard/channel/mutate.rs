//! Update, delete and append of a mutable message on the channel's owner
//! (`docs/protocol/v2.md#mutable-messages`). The owner checks the mutation against the
//! message as it stands (held in `message_cache.rs`, read from the store on first use), gives
//! it the next serial, stores its history row and version in one batch, and delivers a
//! `sockudo:message.<action>` frame to every V2 subscriber through the commit pipeline, like
//! any publish. Mutations of one message are applied one at a time in serial order, each
//! against the state its predecessor left.
//!
//! With several nodes (`docs/architecture.md#several-nodes`) the owner of the node that took
//! the request checks the mutation the same way, then appends it to the cluster log instead of
//! applying it, together with how many versions the message had: the log takes it only if no
//! other mutation of the message was taken since (else it is checked again here once this node
//! caught up). Every node's owner applies it when the log brings it back, under the serial the
//! log gave it, to the same state: so every node makes the same version, and the node that
//! took it answers.

use super::broadcast::Broadcast;
use super::commit::{Append, Commit, Step, VersionCommit};
use super::message_cache::{Entry, HeldReceipt, Lookup, MessageKey, Pending};
use super::rollup::RollupPart;
use super::sequence::Waiter;
use super::stream::Kept;
use super::{is_presence, ChannelOp, Done, OpFailure, Operation, Origin, Rejection};
use crate::backplane::{self, Appended, Backplane, MutationIntent};
use crate::config::{AiTransport, AppIdx};
use crate::protocol::ai::{self, AiError};
use crate::protocol::mutation::Mutation;
use crate::protocol::outbound::{self, Data, Position};
use crate::protocol::versioned::{self, Ack, VersionFrame};
use crate::shard::route::Responder;
use crate::shard::Shard;
use crate::time::unix_ms;
use futures_channel::oneshot;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::{MessageState, Receipt, VersionAction, VersionData, VersionRecord, VersionWrite};

/// The largest text a message may grow to by appends.
pub const MAX_AGGREGATE_BYTES: usize = 1 << 20;

/// A mutation of the message created at `message` in stream `stream_id`.
pub struct Mutate {
    pub message: u64,
    pub stream_id: String,
    pub mutation: Mutation,
    /// The client the version is recorded as made by (`client_id`), if any.
    pub actor: Option<String>,
    /// Bound to a socket whose grant covers only its own messages: the actor must be the
    /// message's creator.
    pub own_only: bool,
    /// Where the cluster log placed it; `None` for a request this node took.
    pub placed: Option<Placement>,
    /// With several nodes, when this node first appended it, if the log refused that as
    /// checked against an older state of the message (it is checked again until
    /// `RECHECK_FOR` after).
    pub first_proposed: Option<Instant>,
}

/// A mutation's place in the cluster log (`sequence.rs`), and what the node that took it
/// decided for the version.
pub struct Placement {
    pub serial: u64,
    pub message_id: String,
    pub at_ms: u64,
    /// Dropped once the mutation is applied or refused (its commit pushed): the shard's log
    /// follower waits for that before it carries out its next entry, so that serials are
    /// committed in order even when the message must first be read from the store.
    pub done: oneshot::Sender<()>,
}

/// With several nodes, how long a mutation waits for this node to catch up with the log, at
/// most: checked against a state the log has moved past (another node's mutation of the
/// message came first), or naming a message this node has not received yet. Either reaches
/// this node within a log round trip.
const RECHECK_FOR: Duration = Duration::from_secs(2);

impl Shard {
    pub(super) fn mutate(self: &Rc<Self>, op: ChannelOp, reply: Responder<ChannelOp>) {
        self.mutate_after(op, reply, Instant::now());
    }

    /// With several nodes a message created through another node may not have reached this
    /// one yet: a mutation of a serial this node's stream has not reached waits for the log
    /// (since `since`, up to `RECHECK_FOR`) before it is refused as unknown.
    fn mutate_after(self: &Rc<Self>, op: ChannelOp, reply: Responder<ChannelOp>, since: Instant) {
        let Operation::Mutate(m) = &op.op else { unreachable!("mutate is only called with a Mutate operation") };
        let key: MessageKey = (op.app, op.channel.clone(), m.stream_id.as_str().into(), m.message);
        if m.placed.is_none() && self.ctx.backplane.is_some() && since.elapsed() < RECHECK_FOR {
            let ahead = {
                let mut channels = self.channels.borrow_mut();
                let stream = &channels.entry(op.app, &op.channel).stream;
                stream.id == key.2 && m.message >= stream.next_serial_to_assign()
            };
            if ahead {
                let shard = self.clone();
                crate::shard::spawn(self, "mutation waits for its message", async move {
                    glommio::timer::sleep(Duration::from_millis(2)).await;
                    shard.mutate_after(op, reply, since);
                });
                return;
            }
        }
        self.on_message(key, Pending::Mutation(op, reply));
    }

    /// Runs `pending` on the message `key` names: at once if the owner holds it, else once
    /// the store has read it, behind the operations already waiting for it.
    pub(super) fn on_message(self: &Rc<Self>, key: MessageKey, pending: Pending) {
        let (app, channel, stream_id, message) = key.clone();
        {
            let mut channels = self.channels.borrow_mut();
            let stream = &channels.entry(app, &channel).stream;
            // Only serials this stream handed out name messages; the store knows which of
            // those are mutable and still retained.
            if stream.id != stream_id || message >= stream.next_serial_to_assign() {
                drop(channels);
                self.refuse(pending, OpFailure::Rejected(unknown_message()));
                return;
            }
        }
        let Some(store) = self.history_store(app) else {
            self.refuse(pending, OpFailure::Rejected(Rejection::invalid("durable history is not enabled".into())));
            return;
        };
        let mut cache = self.messages.borrow_mut();
        match cache.lookup(&key, pending) {
            (Lookup::Ready(entry), Some(p)) => {
                let step = self.run(entry, p);
                cache.resized(&key);
                drop(cache);
                if let Some(step) = step {
                    self.pipeline.push(step);
                }
            }
            (Lookup::Ready(_), None) => unreachable!("a ready entry hands the operation back"),
            (Lookup::Queued, _) => {}
            (Lookup::Load, _) => {
                drop(cache);
                // Crosses to this shard's store thread; the operations on this message wait
                // in the cache slot meanwhile, in arrival order.
                let read = store.message(&self.ctx.apps.get(app).id, &channel, message, true);
                let shard = self.clone();
                crate::shard::spawn(self, "message load", async move {
                    let state = read.await;
                    shard.loaded(key, state);
                });
            }
        }
    }

    /// The store answered for a message: the operations that waited for it run now, in order.
    fn loaded(self: &Rc<Self>, key: MessageKey, state: Result<Option<MessageState>, storage::StorageError>) {
        let failure = match &state {
            Ok(None) => Some(OpFailure::Rejected(unknown_message())),
            Err(e) => Some(OpFailure::Storage(format!("the message could not be read: {e}"))),
            Ok(Some(_)) => None,
        };
        let waiting = self.messages.borrow_mut().loaded(&key, state.ok().flatten());
        if let Some(failure) = failure {
            for p in waiting {
                self.refuse(p, failure.clone());
            }
            return;
        }
        for p in waiting {
            let mut cache = self.messages.borrow_mut();
            let (lookup, p) = cache.lookup(&key, p);
            let (Lookup::Ready(entry), Some(p)) = (lookup, p) else { unreachable!("a message just loaded is ready") };
            let step = self.run(entry, p);
            cache.resized(&key);
            drop(cache);
            if let Some(step) = step {
                self.pipeline.push(step);
            }
        }
    }

    /// Answers an operation that cannot be carried out; a mutation the log placed still spends
    /// its serial.
    fn refuse(&self, pending: Pending, failure: OpFailure) {
        if let Pending::Mutation(ChannelOp { app, channel, op: Operation::Mutate(m), .. }, _) = &pending {
            if let Some(p) = &m.placed {
                self.spend(*app, channel, p.serial);
            }
        }
        pending.fail(failure);
    }

    fn run(self: &Rc<Self>, entry: &mut Entry, pending: Pending) -> Option<Step> {
        match pending {
            Pending::Mutation(op, reply) => self.apply(entry, op, reply).map(Step::Message),
            Pending::Annotation(a, reply) => self.annotate_held(entry, a, reply).map(Step::Annotation),
        }
    }

    /// Checks a mutation against the message and, if it applies, advances the held state and
    /// returns its commit (or, with several nodes, appends it to the cluster log); otherwise
    /// answers it.
    fn apply(self: &Rc<Self>, entry: &mut Entry, op: ChannelOp, reply: Responder<ChannelOp>) -> Option<Commit> {
        let ChannelOp { app, channel, op: Operation::Mutate(mut m), exclude, origin } = op else {
            unreachable!("only mutations are pending as Pending::Mutation")
        };
        let placed = m.placed.take();
        if let Err(answer) = self.admit(entry, app, &channel, &m, placed.is_none()) {
            if let Some(p) = &placed {
                self.spend(app, &channel, p.serial);
            }
            reply.send(answer);
            return None;
        }
        if let (None, Some(log)) = (&placed, &self.ctx.backplane) {
            self.propose(entry, log, ChannelOp { app, channel, op: Operation::Mutate(m), exclude, origin }, reply);
            return None;
        }
        let stream_id: Arc<str> = m.stream_id.as_str().into();
        let message_serial = versioned::serial_string(m.message, &stream_id);
        let digest = m.mutation.digest();
        let action = m.mutation.action;
        let ai = &self.ctx.config.ai_transport;
        let on_ai_channel = ai.is_ai_channel(&channel);
        let streams = on_ai_channel && streams_after(entry, &m.mutation);
        let Some(store) = self.history_store(app) else { unreachable!("mutations are checked for a store first") };
        let now = Instant::now();
        let (message_id, now_ms) = match &placed {
            Some(p) => (p.message_id.clone(), p.at_ms),
            None => (outbound::uuid_v4(), unix_ms()),
        };
        let mut channels = self.channels.borrow_mut();
        let ch = channels.entry(app, &channel);
        let (serial, epoch) = ch.stream.next_serial();
        debug_assert!(placed.as_ref().is_none_or(|p| p.serial == serial), "a placed mutation takes its log serial");
        if on_ai_channel {
            ch.track_stream(m.message, streams, now);
        }
        drop(channels);
        let ack = Ack {
            action,
            version_serial: versioned::serial_string(serial, &stream_id),
            message_serial,
            history_serial: m.message,
            delivery_serial: serial,
            duplicate: false,
        };
        entry.change(&m.mutation);
        let state = &entry.state;
        let headers = ack.headers(now_ms);
        let extras = versioned::extras_with_headers(state.extras.as_deref(), &headers);
        let pos = Position { message_id: &message_id, stream_id: &stream_id, serial: Some(serial) };
        let frame = |data: Data<'_>| {
            let name = &state.name;
            let user_id = m.actor.as_deref();
            Arc::new(VersionFrame { action, channel: &channel, data, name, user_id, pos, extras: &extras }.encode())
        };
        let fragment = m.mutation.data.as_deref().unwrap_or_default();
        // Sockets in `append_mode=delta` get an append's fragment, those in `full` the whole
        // text (kept JSON-quoted by the cache, so this is a copy, not an encoding, of it);
        // updates and deletes carry the whole message for both.
        let (v2, full) = match action {
            VersionAction::Append => (frame(Data::Str(fragment)), Some(frame(Data::Raw(entry.quoted())))),
            _ => (frame(versioned::data_of(&state.data)), None),
        };
        let record = VersionRecord {
            action,
            delivery_serial: serial,
            timestamp_ms: now_ms,
            message_id: message_id.clone(),
            name: (action != VersionAction::Append).then(|| state.name.clone()),
            data: match action {
                VersionAction::Append => VersionData::Text(fragment.to_owned()),
                _ => state.data.clone(),
            },
            extras: match action {
                VersionAction::Append => m.mutation.extras.clone(),
                _ => state.extras.clone(),
            },
            user_id: m.actor.clone(),
            client_id: m.actor.clone(),
            description: m.mutation.description.clone(),
            metadata: m.mutation.metadata.clone(),
        };
        let receipt = m.mutation.op_id.as_ref().map(|op_id| Receipt {
            action,
            op_id: op_id.clone(),
            digest,
            delivery_serial: serial,
        });
        let history = storage::HistoryRecord {
            published_at_ms: now_ms,
            message_id: message_id.clone(),
            event_name: versioned::event_name(action).to_owned(),
            payload: v2.to_vec(),
            kind: storage::RecordKind::Mutation { message: m.message },
            tags: None,
        };
        let write = VersionWrite { message: m.message, record: record.clone(), receipt };
        // Crosses to this shard's store thread: the row, the version and the receipt in one batch.
        let ticket = store.append_version(&self.ctx.apps.get(app).id, &channel, &stream_id, serial, history, write);
        let durable = (self.ctx.config.history.store.fsync == storage::Fsync::Always).then_some(ticket.durable);
        let rollup = (action == VersionAction::Append && !ai.rollup.is_zero() && on_ai_channel).then(|| RollupPart {
            message: m.message,
            fragment: fragment.to_owned(),
            terminal: ai::is_terminal(ai::status(m.mutation.extras.as_deref()).as_deref()),
        });
        let mut kept = Kept::new(serial, now, message_id.as_str().into(), v2.clone());
        if action == VersionAction::Append {
            kept.append_to = Some(m.message);
            kept.full.clone_from(&full);
        }
        let mut broadcast = Broadcast::new(Some(serial), now, None, v2);
        if let Some(full) = full {
            broadcast = broadcast.with_full_append(full);
        }
        entry.state.latest = record;
        if let Some(op_id) = &m.mutation.op_id {
            entry.receipts.push(HeldReceipt {
                action,
                op_id: op_id.clone(),
                digest,
                delivery_serial: serial,
                committed: false,
            });
        }
        Some(Commit {
            app,
            channel: channel.clone(),
            stream_id: stream_id.clone(),
            append: Some(Append { serial, epoch, written: Some(ticket.written), durable }),
            message: broadcast,
            kept: Some(kept),
            version: Some(VersionCommit {
                ack,
                message: Some((app, channel, stream_id.clone(), m.message)),
                op_id: m.mutation.op_id.clone(),
            }),
            exclude,
            origin,
            reply,
            rollup,
        })
    }

    /// Whether `m` applies to the message as it stands: the actor's right to it, an op_id
    /// already used, the size and AI limits, the message's stream. `Err` holds the answer when
    /// it does not apply (an op_id retry is answered as a duplicate). `fresh`: a request this
    /// node took, not one the log placed, which alone counts against the AI open-stream limit
    /// (it depends on time, so only one node may decide it).
    fn admit(
        &self,
        entry: &Entry,
        app: AppIdx,
        channel: &Arc<str>,
        m: &Mutate,
        fresh: bool,
    ) -> Result<(), Result<Done, OpFailure>> {
        let refuse = |r: Rejection| Err(Err(OpFailure::Rejected(r)));
        let action = m.mutation.action;
        if m.own_only && (m.actor.is_none() || entry.state.creator_client_id != m.actor) {
            return refuse(Rejection::new(
                401,
                "auth_failed",
                format!(
                    "the socket may {} only its own messages, and this one was not created by {:?}",
                    versioned::action_name(action),
                    m.actor.as_deref().unwrap_or_default()
                ),
            ));
        }
        if let Some(op_id) = m.mutation.op_id.as_deref() {
            if let Some(r) = entry.receipt(action, op_id) {
                return match (r.digest == m.mutation.digest(), r.committed) {
                    (false, _) => refuse(Rejection::invalid(format!(
                        "op_id {op_id:?} was already used for a different {} of this message",
                        versioned::action_name(action)
                    ))),
                    // The first request is still being stored: its outcome is not known yet.
                    (true, false) => refuse(Rejection::new(
                        503,
                        "backpressure",
                        format!("a mutation with op_id {op_id:?} is still being stored; retry"),
                    )),
                    (true, true) => {
                        let message_serial = versioned::serial_string(m.message, &m.stream_id);
                        Err(Ok(self.duplicate(app, channel, &message_serial, &m.stream_id, entry, r)))
                    }
                };
            }
        }
        let ai = &self.ctx.config.ai_transport;
        let on_ai_channel = ai.is_ai_channel(channel);
        check(&entry.state, &m.mutation, on_ai_channel.then_some(ai)).or_else(refuse)?;
        let mut channels = self.channels.borrow_mut();
        let ch = channels.entry(app, channel);
        if *ch.stream.id != *m.stream_id {
            // An operator reset the stream while the message was being read: it is gone.
            return refuse(unknown_message());
        }
        if fresh && on_ai_channel && streams_after(entry, &m.mutation) {
            ch.admit_stream(ai, Some(m.message), Instant::now()).map_err(Rejection::ai).or_else(refuse)?;
        }
        Ok(())
    }

    /// Appends a mutation this node checked to the cluster log; every node applies it when the
    /// log brings it back, and this one answers then (`apply_placed_mutation`). One the log
    /// refuses as checked against an older state of the message is checked again.
    fn propose(self: &Rc<Self>, entry: &Entry, log: &Arc<dyn Backplane>, op: ChannelOp, reply: Responder<ChannelOp>) {
        let ChannelOp { app, channel, op: Operation::Mutate(mut m), .. } = op else {
            unreachable!("only mutations are proposed")
        };
        let since = *m.first_proposed.get_or_insert_with(Instant::now);
        let head = self.channels.borrow_mut().entry(app, &channel).stream.head;
        let token = self.sequenced.borrow_mut().wait_for(Waiter::Mutate(reply));
        let intent = MutationIntent {
            app: self.ctx.apps.get(app).id.clone(),
            channel: channel.to_string(),
            stream_id: m.stream_id.clone(),
            message: m.message,
            versions: entry.state.versions,
            mutation: m.mutation.clone(),
            actor: m.actor.clone(),
            own_only: m.own_only,
            message_id: outbound::uuid_v4(),
            at_ms: unix_ms(),
            node: log.node_id().to_owned(),
            token,
        };
        let takes_serial = Some((m.stream_id.clone(), head));
        // Crosses to the backplane's writer thread; the answer comes back as a wake.
        let appended = log.append(backplane::Append { entry: backplane::Entry::Mutate(intent), takes_serial });
        let shard = self.clone();
        crate::shard::spawn(self, "cluster log append", async move {
            let stale = match appended.await {
                Ok(Appended::Taken) => return,
                Ok(Appended::Stale) => true,
                Ok(Appended::StreamGone) => false,
                Err(why) => {
                    if let Some(waiter) = shard.take_waiter(token) {
                        waiter.fail(&why);
                    }
                    return;
                }
            };
            let Some(Waiter::Mutate(reply)) = shard.take_waiter(token) else { return };
            let refusal = match stale {
                true if since.elapsed() < RECHECK_FOR => {
                    // Another node's mutation of the message came first; it reaches this node
                    // within a log round trip.
                    glommio::timer::sleep(Duration::from_millis(2)).await;
                    let op = ChannelOp { app, channel, op: Operation::Mutate(m), exclude: None, origin: Origin::Http };
                    shard.mutate(op, reply);
                    return;
                }
                true => Rejection::new(
                    503,
                    "backpressure",
                    "the message is being changed through other nodes faster than this node follows; retry".into(),
                ),
                false => unknown_message(),
            };
            reply.send(Err(OpFailure::Rejected(refusal)));
        });
    }

    /// Passes over `serial`, which the cluster log gave a mutation that does not apply here
    /// (its message was purged while it was on its way): every node does the same, so the
    /// channel's serials go on alike, with this one holding nothing.
    fn spend(&self, app: AppIdx, channel: &Arc<str>, serial: u64) {
        let stream_id = {
            let mut channels = self.channels.borrow_mut();
            let stream = &mut channels.entry(app, channel).stream;
            let (spent, _) = stream.next_serial();
            debug_assert_eq!(spent, serial, "a placed mutation spends its log serial");
            stream.id.clone()
        };
        log::warn!(shard = self.id; "{channel}: serial {serial} of stream {stream_id} was given to a mutation that no longer applied; it holds nothing");
        if let Some(store) = self.history_store(app) {
            // Ordered before the appends that follow; a failure shows on the next append.
            drop(store.skip(&self.ctx.apps.get(app).id, channel, &stream_id, serial));
        }
    }

    /// The answer to an op_id retry of a mutation already applied: its serials, nothing sent.
    fn duplicate(
        &self,
        app: crate::config::AppIdx,
        channel: &Arc<str>,
        message_serial: &str,
        stream_id: &str,
        entry: &Entry,
        r: &HeldReceipt,
    ) -> Done {
        let occupancy = {
            let mut channels = self.channels.borrow_mut();
            channels.entry(app, channel).occupancy(is_presence(channel))
        };
        let ack = Ack {
            action: r.action,
            message_serial: message_serial.to_owned(),
            version_serial: versioned::serial_string(r.delivery_serial, stream_id),
            history_serial: entry.state.history_serial,
            delivery_serial: r.delivery_serial,
            duplicate: true,
        };
        Done { occupancy, version: Some(ack) }
    }
}

/// Whether the message streams once `m` applies (`ai_streams.rs`): its extras then are the
/// mutation's, none when it clears them, else the message's; a delete ends it.
fn streams_after(entry: &Entry, m: &Mutation) -> bool {
    if m.action == VersionAction::Delete {
        return false;
    }
    let extras = match m.clear.extras {
        true => None,
        false => m.extras.as_deref().or(entry.state.extras.as_deref()),
    };
    ai::status(extras).as_deref() == Some("streaming")
}

pub(super) fn unknown_message() -> Rejection {
    Rejection::not_found("no mutable message with this message_serial in the channel's history".into())
}

/// Whether `m` applies to the message as it stands: an append needs text (or no data) to
/// extend, and may not make it larger than `MAX_AGGREGATE_BYTES`. On an AI channel (`ai`) the
/// AI Transport limits apply instead, and nothing may be appended after a terminal status.
fn check(now: &MessageState, m: &Mutation, ai: Option<&AiTransport>) -> Result<(), Rejection> {
    let limit = ai.map_or(MAX_AGGREGATE_BYTES, |a| a.max_accumulated_bytes);
    let too_large = |size: usize| {
        let message = format!("the message would hold {size} bytes; at most {limit}");
        match ai {
            Some(_) => Rejection::ai(AiError::limit(message)),
            None => Rejection::new(413, "payload_too_large", message),
        }
    };
    if m.action != VersionAction::Append {
        // An AI message's update or delete is held to the same size as its appends.
        return match m.data.as_deref().map(str::len) {
            Some(size) if ai.is_some() && size > limit => Err(too_large(size)),
            _ => Ok(()),
        };
    }
    if let Some(ai) = ai {
        if ai::is_terminal(ai::status(now.extras.as_deref()).as_deref()) {
            return Err(Rejection::invalid(
                "cannot append to a terminal message (its extras.ai.transport.status is complete or cancelled)".into(),
            ));
        }
        if now.appends >= ai.max_appends_per_message {
            return Err(Rejection::ai(AiError::limit(format!(
                "the message has {} appends; at most {} (ai_transport.max_appends_per_message)",
                now.appends, ai.max_appends_per_message
            ))));
        }
    }
    let base = match &now.data {
        VersionData::Absent => 0,
        VersionData::Text(t) => t.len(),
        VersionData::Json(_) => {
            return Err(Rejection::invalid("cannot append to a message whose data is not a string".into()))
        }
    };
    let grown = base + m.data.as_deref().map_or(0, str::len);
    if grown > limit {
        return Err(too_large(grown));
    }
    Ok(())
}
