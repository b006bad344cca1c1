//! Publishing with several nodes (`docs/architecture.md#several-nodes`): the cluster log, not
//! this owner, orders a channel's operations. The owner appends each publish as an [`Intent`]
//! and carries it out only when the log brings it back, exactly as every other node does, so
//! every node stores the same messages under the same serials in the same order. The publisher
//! is answered when this node's own copy is carried out (stored and delivered here).

use super::annotate::Annotate;
use super::broadcast::{ChannelEvent, EventData};
use super::mutate::{Mutate, Placement};
use super::operator::{ChangeFailure, HistoryPurge, HistoryReset};
use super::presence_log::PresenceLogReset;
use super::stream::Fit;
use super::{ChannelOp, OpFailure, Operation, Origin, Rejection};
use crate::backplane::{
    Append, Appended, Backplane, BackplaneError, Entry, FromLog, Inbox, Intent, MutationIntent, Placed, Reply,
};
use crate::config::AppIdx;
use crate::protocol::filter::Tags;
use crate::protocol::outbound;
use crate::shard::route::Responder;
use crate::shard::Shard;
use crate::socket_id::SocketId;
use crate::time::unix_ms;
use ahash::AHashMap;
use futures_channel::oneshot;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

/// This shard's operations that the log has not brought back yet, by token.
#[derive(Default)]
pub struct Sequenced {
    next_token: u64,
    waiting: AHashMap<u64, (Instant, Waiter)>,
    /// What the log brings this shard; kept here so a restarted reading task goes on with it.
    inbox: Option<Inbox>,
    /// Channels whose count waits for the next flush (`cluster.rs`).
    pub(super) counts_dirty: Vec<(AppIdx, Arc<str>)>,
}

impl Sequenced {
    pub fn new(inbox: Option<Inbox>) -> Sequenced {
        Sequenced { inbox, ..Sequenced::default() }
    }

    /// Forgets operations older than `limit` (the log never brought them back: their asker
    /// has had its 503 by now).
    pub fn expire(&mut self, now: Instant, limit: Duration) {
        self.waiting.retain(|_, (at, _)| now.duration_since(*at) < limit);
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// Keeps `waiter` until the log brings its operation back; returns its token.
    pub(super) fn wait_for(&mut self, waiter: Waiter) -> u64 {
        let token = self.token();
        self.waiting.insert(token, (Instant::now(), waiter));
        token
    }
}

/// Who waits for an operation that this node appended to the cluster log.
pub(super) enum Waiter {
    Publish(Responder<ChannelOp>),
    Reset(Responder<HistoryReset>),
    Purge(Responder<HistoryPurge>),
    PresenceReset(Responder<PresenceLogReset>),
    Annotate(Responder<Annotate>),
    Mutate(Responder<ChannelOp>),
}

impl Waiter {
    /// Answers that the operation was not appended, as far as this node knows (an asker
    /// retries: a publish with an idempotency key, a mutation with an op_id).
    pub(super) fn fail(self, why: &BackplaneError) {
        let not_done = format!("not done: {why}");
        let refused = |message| OpFailure::Rejected(Rejection::new(503, "backplane_unavailable", message));
        match self {
            Waiter::Publish(r) => r.send(Err(refused(format!("not published: {why}")))),
            Waiter::Reset(r) => r.send(Err(ChangeFailure::Backplane(not_done))),
            Waiter::Purge(r) => r.send(Err(ChangeFailure::Backplane(not_done))),
            Waiter::PresenceReset(r) => r.send(Err(ChangeFailure::Backplane(not_done))),
            Waiter::Annotate(r) => r.send(Err(refused(not_done))),
            Waiter::Mutate(r) => r.send(Err(refused(not_done))),
        }
    }
}

impl Shard {
    /// Appends a publish to the cluster log; it is carried out when the log brings it back
    /// (`apply_placed`). An append that fails is answered 503 at once: not published anywhere, as far
    /// as this node knows (a publisher retries with an idempotency key).
    pub(super) fn append_to_log(
        self: &Rc<Self>,
        backplane: &Arc<dyn Backplane>,
        op: ChannelOp,
        event: &ChannelEvent,
        reply: Responder<ChannelOp>,
    ) {
        let ChannelOp { app, channel, exclude, origin, .. } = op;
        let known_stream = {
            let mut channels = self.channels.borrow_mut();
            let stream = &channels.entry(app, &channel).stream;
            (stream.id.to_string(), stream.head)
        };
        let token = {
            let mut s = self.sequenced.borrow_mut();
            match reply.is_wanted() {
                true => s.wait_for(Waiter::Publish(reply)),
                false => s.token(),
            }
        };
        let (data, raw) = match &event.data {
            EventData::Str(s) => (s.clone(), false),
            EventData::Raw(r) => (r.clone(), true),
        };
        let intent = Intent {
            app: self.ctx.apps.get(app).id.clone(),
            channel: channel.to_string(),
            name: event.name.clone(),
            data,
            raw,
            user_id: event.user_id.as_deref().map(str::to_owned),
            creator: event.creator.as_deref().map(str::to_owned),
            message_id: event.message_id.clone().unwrap_or_else(outbound::uuid_v4),
            extras: event.extras.clone(),
            tags: event.tags.as_ref().map(Tags::to_json),
            no_delta: event.no_delta,
            ephemeral: event.ephemeral,
            opens_stream: event.opens_stream,
            client: origin == Origin::Client,
            exclude: exclude.map(|s| s.to_string()),
            published_at_ms: unix_ms(),
            node: backplane.node_id().to_owned(),
            token,
        };
        // Crosses to the backplane's writer thread; the answer comes back as a wake.
        let takes_serial = (!event.ephemeral).then_some(known_stream);
        let appended = backplane.append(Append { entry: Entry::Publish(intent), takes_serial });
        self.fail_unless_appended(appended, token);
    }

    /// Answers the operation of `token` with the append's failure, if it failed.
    pub(super) fn fail_unless_appended(self: &Rc<Self>, appended: Reply<Appended>, token: u64) {
        let shard = self.clone();
        crate::shard::spawn(self, "cluster log append", async move {
            let Err(why) = appended.await else { return };
            if let Some(waiter) = shard.take_waiter(token) {
                waiter.fail(&why);
            }
        });
    }

    /// Who waits here for an operation the log brought back, if this node appended it.
    pub(super) fn waiter(&self, node: &str, token: u64) -> Option<Waiter> {
        self.is_this_node(node).then(|| self.take_waiter(token)).flatten()
    }

    /// Who waits for the operation of `token`, which this node appended.
    pub(super) fn take_waiter(&self, token: u64) -> Option<Waiter> {
        self.sequenced.borrow_mut().waiting.remove(&token).map(|(_, w)| w)
    }

    /// Carries out what the cluster log brings this shard, in log order, for the shard's life.
    pub(crate) async fn follow_log(self: Rc<Self>) {
        loop {
            let next = poll_fn(|cx| match self.sequenced.borrow_mut().inbox.as_mut() {
                Some(inbox) => futures_lite::StreamExt::poll_next(inbox, cx),
                None => Poll::Ready(None),
            })
            .await;
            match next {
                Some(FromLog::Placed(placed)) => self.apply_placed(placed),
                Some(FromLog::Mutate(placed)) => self.apply_placed_mutation(placed).await,
                Some(FromLog::Nodes(action)) => self.act_for_cluster(action),
                Some(FromLog::Share(share)) => self.apply_share(share),
                Some(FromLog::History(change)) => self.apply_history(change),
                Some(FromLog::Annotate(intent)) => self.apply_annotation(intent),
                Some(FromLog::Gone { node, by, part }) => self.node_gone(&node, &by, part),
                Some(FromLog::Resync(part)) => self.resync(part),
                None => return,
            }
        }
    }

    /// Carries out one entry of the cluster log, as the local publish path would with the
    /// serial the log gave it.
    fn apply_placed(self: &Rc<Self>, placed: Placed) {
        let Placed { stream_id, serial, intent } = placed;
        let Some(app) = self.ctx.apps.by_id(&intent.app) else { return };
        let reply = match self.waiter(&intent.node, intent.token) {
            Some(Waiter::Publish(r)) => r,
            _ => Responder::nobody(self),
        };
        let channel: Arc<str> = intent.channel.as_str().into();
        if serial > 0 && !self.fit_placed(app, &channel, &stream_id, serial) {
            return;
        }
        let event = ChannelEvent {
            name: intent.name,
            data: if intent.raw { EventData::Raw(intent.data) } else { EventData::Str(intent.data) },
            user_id: intent.user_id.map(Into::into),
            creator: intent.creator.map(Into::into),
            message_id: Some(intent.message_id),
            extras: intent.extras,
            tags: intent.tags.as_deref().and_then(Tags::from_json),
            no_delta: intent.no_delta,
            ephemeral: intent.ephemeral,
            opens_stream: intent.opens_stream,
        };
        let event = Arc::new(event);
        let op = ChannelOp {
            app,
            channel,
            op: Operation::Publish(event.clone()),
            exclude: intent.exclude.as_deref().and_then(SocketId::parse),
            origin: if intent.client { Origin::Client } else { Origin::Http },
        };
        self.publish(op, &event, reply, Some(intent.published_at_ms));
    }

    /// Applies a mutation the log placed (`mutate.rs`), on this node as on every other; the
    /// node that took it answers. Returns once its commit is pushed (or it was refused), so
    /// that the entries after it take their serials after it.
    async fn apply_placed_mutation(self: &Rc<Self>, placed: Placed<MutationIntent>) {
        let Placed { stream_id, serial, intent } = placed;
        let Some(app) = self.ctx.apps.by_id(&intent.app) else { return };
        let reply = match self.waiter(&intent.node, intent.token) {
            Some(Waiter::Mutate(r)) => r,
            _ => Responder::nobody(self),
        };
        let channel: Arc<str> = intent.channel.as_str().into();
        if !self.fit_placed(app, &channel, &stream_id, serial) {
            return;
        }
        let (done, applied) = oneshot::channel();
        let placement = Placement { serial, message_id: intent.message_id, at_ms: intent.at_ms, done };
        let m = Mutate {
            message: intent.message,
            stream_id: intent.stream_id,
            mutation: intent.mutation,
            actor: intent.actor,
            own_only: intent.own_only,
            placed: Some(placement),
            first_proposed: None,
        };
        let op = ChannelOp { app, channel, op: Operation::Mutate(Box::new(m)), exclude: None, origin: Origin::Http };
        self.mutate(op, reply);
        // Resolves (cancelled) when the placement is dropped: at once if the message was held,
        // else once the store has read it.
        let _ = applied.await;
    }

    /// Makes the channel's stream ready for an entry the log placed at `serial` of `stream_id`;
    /// false when this node carried it out already.
    fn fit_placed(&self, app: AppIdx, channel: &Arc<str>, stream_id: &str, serial: u64) -> bool {
        let fit = self.channels.borrow_mut().entry(app, channel).stream.fit(stream_id, serial);
        match fit {
            Fit::Next => true,
            Fit::Seen => false,
            Fit::Rebased => {
                log::warn!(
                    shard = self.id;
                    "{channel}: the cluster's stream {stream_id} continues at serial {serial}, which this node \
                     did not follow; its own history of the channel restarts there"
                );
                self.messages.borrow_mut().forget_channel(app, channel);
                if let Some(store) = self.history_store(app) {
                    // Ordered before the append that follows; its answer is not needed.
                    drop(store.rebase_stream(&self.ctx.apps.get(app).id, channel, stream_id, serial));
                }
                true
            }
        }
    }
}
