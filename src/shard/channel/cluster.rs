//! A channel as the whole cluster holds it, with several nodes
//! (`docs/architecture.md#several-nodes`): each node's subscription count and the presence
//! members with the nodes that hold a socket of each.
//!
//! Each node keeps its own share (its local counts and members, `ChannelState::total` and
//! `members`) and appends every change of it to the cluster log as a [`ShareChange`]. The view
//! changes only when the log brings a change back, on every node in the same order, so every
//! node holds the same view; what is decided from it is decided alike everywhere. A member
//! event goes to each node's own subscribers when the view gains or loses a member (once per
//! user, however many nodes hold a socket of it), and a webhook is sent only by the node whose
//! change made the transition: once for the cluster. HTTP queries answer from the view, so
//! every node answers alike.
//!
//! Counts are appended at once when a node's count becomes or stops being 0 (which is what
//! occupancy and its webhooks follow), and otherwise at most every [`COUNT_FLUSH`].

use super::broadcast::Broadcast;
use super::meta::MetaEvent;
use super::presence::{member_event, presence_update_event};
use super::ChannelState;
use crate::backplane::{Append, Appended, Entry, LogPart, Reply, Share, ShareChange};
use crate::config::AppIdx;
use crate::protocol::outbound;
use crate::protocol::presence_history::{Cause, PresenceEvent, Transition};
use crate::shard::Shard;
use crate::socket_id::SocketId;
use ahash::{AHashSet, RandomState};
use indexmap::IndexMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// How long a node's changed subscription count (other than to or from 0) waits before it is
/// appended: the log carries one count per channel per interval, however many subscribes.
pub const COUNT_FLUSH: Duration = Duration::from_millis(100);

struct ViewMember {
    info: String,
    /// The nodes with a socket of this user in the channel.
    nodes: Vec<Arc<str>>,
}

/// One channel across the cluster, as the log made it.
#[derive(Default)]
pub(super) struct ClusterView {
    /// Subscriptions per node; nodes with none are left out.
    counts: Vec<(Arc<str>, u64)>,
    /// Members in the order the log added them.
    members: IndexMap<Arc<str>, ViewMember, RandomState>,
    /// This node's count as it last appended it.
    told: u64,
    /// This node's count changed since, and the channel waits for the next flush.
    dirty: bool,
}

impl ClusterView {
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    pub fn is_member(&self, user: &str) -> bool {
        self.members.contains_key(user)
    }

    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(|u| &**u)
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.members.is_empty()
    }

    /// Whether `node` has a share of the channel.
    fn holds(&self, node: &str) -> bool {
        self.counts.iter().any(|(n, _)| &**n == node)
            || self.members.values().any(|m| m.nodes.iter().any(|n| &**n == node))
    }

    fn set_count(&mut self, node: &Arc<str>, count: u64) {
        self.counts.retain(|(n, _)| n != node);
        if count > 0 {
            self.counts.push((node.clone(), count));
        }
    }

    /// `node` holds `user`; true if that made the user a member.
    fn add(&mut self, node: &Arc<str>, user: &str, info: &str) -> bool {
        match self.members.get_mut(user) {
            Some(m) => {
                if !m.nodes.contains(node) {
                    m.nodes.push(node.clone());
                }
                false
            }
            None => {
                self.members.insert(user.into(), ViewMember { info: info.to_owned(), nodes: vec![node.clone()] });
                true
            }
        }
    }

    /// `node` no longer holds `user`; the user's last `user_info` if it is no longer a member.
    fn remove(&mut self, node: &str, user: &str) -> Option<String> {
        let m = self.members.get_mut(user)?;
        m.nodes.retain(|n| &**n != node);
        if m.nodes.is_empty() {
            return self.members.shift_remove(user).map(|m| m.info);
        }
        None
    }

    /// The users `node` holds.
    fn users_of(&self, node: &str) -> Vec<Arc<str>> {
        self.members.iter().filter(|(_, m)| m.nodes.iter().any(|n| &**n == node)).map(|(u, _)| u.clone()).collect()
    }

    /// The `subscription_succeeded` data for a subscriber joining as `me`: the members as the
    /// log has them, and the subscriber itself, whose own join may still be on its way.
    pub fn snapshot(&self, me: (&str, &str)) -> String {
        let listed = self.members.iter().map(|(u, m)| (&**u, m.info.as_str()));
        let own = (!self.members.contains_key(me.0)).then_some(me);
        outbound::presence_snapshot(listed.chain(own))
    }
}

/// What one change of the view does to members.
#[derive(Default)]
struct Outcome {
    /// Users that became members: `user_info`, and the joining socket (told nothing of itself).
    added: Vec<(Arc<str>, String, Option<String>)>,
    /// Users no longer members: last `user_info`, cause, and the leaving socket.
    removed: Vec<(Arc<str>, String, Cause, Option<String>)>,
    /// A member's new `user_info`, and the socket that sent it.
    updated: Option<(Arc<str>, String, String)>,
}

impl Shard {
    /// Appends a change of this node's share of `channel`. Its outcome is not awaited: a change
    /// that fails to append is repaired by the whole share appended after the reconnect
    /// (`resync`), as the failure means the writer reconnects.
    pub(super) fn share(&self, app: AppIdx, channel: &str, change: ShareChange) {
        drop(self.share_awaited(app, channel, change));
    }

    /// Appends a change of this node's share of `channel`, with its outcome to await.
    /// Nothing is appended once the node is stopping (`Backplane::depart`).
    pub(super) fn share_awaited(&self, app: AppIdx, channel: &str, change: ShareChange) -> Option<Reply<Appended>> {
        let backplane = self.ctx.backplane.as_ref().filter(|_| !self.ctx.is_stopping())?;
        let share = Share {
            app: self.ctx.apps.get(app).id.clone(),
            channel: channel.to_owned(),
            node: backplane.node_id().to_owned(),
            change,
        };
        // Crosses to the backplane's writer thread; the answer comes back as a wake.
        Some(backplane.append(Append { entry: Entry::Share(share), takes_serial: None }))
    }

    /// This node's count of `channel` changed: to or from 0 it is appended at once, otherwise
    /// with the next flush.
    pub(super) fn count_changed(&self, ch: &mut ChannelState, app: AppIdx, channel: &Arc<str>) {
        let Some(view) = ch.cluster.as_mut() else { return };
        if ch.total == 0 || view.told == 0 {
            view.told = ch.total;
            view.dirty = false;
            self.share(app, channel, ShareChange::Count { n: ch.total });
        } else if !view.dirty {
            view.dirty = true;
            self.sequenced.borrow_mut().counts_dirty.push((app, channel.clone()));
        }
    }

    /// Appends the counts that changed since the last flush, every [`COUNT_FLUSH`].
    pub(crate) async fn flush_counts(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(COUNT_FLUSH).await;
            let dirty = std::mem::take(&mut self.sequenced.borrow_mut().counts_dirty);
            let mut channels = self.channels.borrow_mut();
            for (app, channel) in dirty {
                let Some(ch) = channels.get_mut(app, &channel) else { continue };
                let total = ch.total;
                let Some(view) = ch.cluster.as_mut().filter(|v| v.dirty) else { continue };
                view.dirty = false;
                if view.told != total {
                    view.told = total;
                    self.share(app, &channel, ShareChange::Count { n: total });
                }
            }
        }
    }

    /// Appends this node's whole share of every channel of `part` this shard owns that it has
    /// one of (or that the view says it has): after the backplane reconnected, or after this
    /// node was taken for dead.
    pub(crate) fn resync(&self, part: LogPart) {
        let Some(me) = self.node_id() else { return };
        let mut channels = self.channels.borrow_mut();
        for app in 0..channels.by_app.len() {
            let app_id = &self.ctx.apps.get(app as AppIdx).id;
            for (channel, ch) in channels.by_app[app].iter_mut() {
                let total = ch.total;
                let Some(view) = ch.cluster.as_mut() else { continue };
                if (total == 0 && ch.members.is_empty() && !view.holds(&me)) || !part.holds(app_id, channel) {
                    continue;
                }
                view.told = total;
                view.dirty = false;
                let members = ch.members.list();
                self.share(app as AppIdx, channel, ShareChange::Sync { n: total, members });
            }
        }
    }

    /// Applies a change of a node's share that the log brought.
    pub(crate) fn apply_share(self: &Rc<Self>, share: Share) {
        let Some(app) = self.ctx.apps.by_id(&share.app) else { return };
        let ours = self.is_this_node(&share.node);
        let channel: Arc<str> = share.channel.into();
        match share.change {
            // A re-check's end concerns only the pending webhook, not the channel (gone by now
            // when it was vacated).
            ShareChange::Due { user } => self.cluster_webhook_due(app, &channel, user.map(Into::into), ours),
            change => self.apply_change(app, &channel, &share.node.into(), ours, change, Cause::Disconnect),
        }
    }

    /// `node` was taken for dead by `by`: its share of every channel of `part` here is
    /// removed. If it is this node (cut off from Redis for longer than the node timeout), its
    /// share is appended again.
    pub(crate) fn node_gone(self: &Rc<Self>, node: &str, by: &str, part: LogPart) {
        let holding: Vec<(AppIdx, Arc<str>)> = {
            let channels = self.channels.borrow();
            let mut list = Vec::new();
            for (app, map) in channels.by_app.iter().enumerate() {
                let app_id = &self.ctx.apps.get(app as AppIdx).id;
                let held = map.iter().filter(|(name, ch)| {
                    ch.cluster.as_ref().is_some_and(|v| v.holds(node)) && part.holds(app_id, name)
                });
                list.extend(held.map(|(name, _)| (app as AppIdx, name.clone())));
            }
            list
        };
        let ours = self.is_this_node(by);
        let node: Arc<str> = node.into();
        for (app, channel) in holding {
            let none = ShareChange::Sync { n: 0, members: Vec::new() };
            self.apply_change(app, &channel, &node, ours, none, Cause::Timeout);
        }
        if self.is_this_node(&node) {
            log::warn!(shard = self.id; "this node was taken for dead by node {by}; its members and counts are appended again");
            self.resync(part);
        }
    }

    /// Applies `change` of `node`'s share (any but `Due`); `ours` when this node made the
    /// change (it alone sends the webhooks that follow). `dropped` is the cause recorded for
    /// members a sync leaves out.
    fn apply_change(
        self: &Rc<Self>,
        app: AppIdx,
        channel: &Arc<str>,
        node: &Arc<str>,
        ours: bool,
        change: ShareChange,
        dropped: Cause,
    ) {
        let mut channels = self.channels.borrow_mut();
        let ch = channels.entry(app, channel);
        let Some(view) = ch.cluster.as_mut() else { return };
        let before = view.total();
        let mut out = Outcome::default();
        match change {
            ShareChange::Join { user, info, socket } => {
                if view.add(node, &user, &info) {
                    out.added.push((user.into(), info, Some(socket)));
                }
            }
            ShareChange::Leave { user, cause, socket } => {
                if let Some(info) = view.remove(node, &user) {
                    out.removed.push((user.into(), info, Cause::from_name(&cause), Some(socket)));
                }
            }
            ShareChange::Update { user, info, socket } => {
                if let Some(m) = view.members.get_mut(user.as_str()) {
                    m.info = info.clone();
                    out.updated = Some((user.into(), info, socket));
                }
            }
            ShareChange::Count { n } => view.set_count(node, n),
            ShareChange::Sync { n, members } => {
                view.set_count(node, n);
                let keep: AHashSet<&str> = members.iter().map(|(u, _)| u.as_str()).collect();
                for user in view.users_of(node) {
                    if !keep.contains(&*user) {
                        if let Some(info) = view.remove(node, &user) {
                            out.removed.push((user, info, dropped, None));
                        }
                    }
                }
                for (user, info) in members {
                    if view.add(node, &user, &info) {
                        out.added.push((user.into(), info, None));
                    }
                }
            }
            ShareChange::Due { .. } => unreachable!("apply_share carries out a re-check's end"),
        }
        let after = view.total();
        for (user, info, socket) in &out.added {
            // The joiner's own socket is told nothing of itself (it was listed in its snapshot).
            let exclude = socket.as_deref().filter(|_| ours).and_then(SocketId::parse);
            let t = transition(PresenceEvent::Added, Cause::Join, user, socket.clone(), info);
            self.tell_member(ch, app, channel, &member_event(channel, user, Some(info)), exclude, t);
        }
        for (user, info, cause, socket) in &out.removed {
            let t = transition(PresenceEvent::Removed, *cause, user, socket.clone(), info);
            self.tell_member(ch, app, channel, &member_event(channel, user, None), None, t);
        }
        if let Some((user, info, socket)) = &out.updated {
            let t = transition(PresenceEvent::Updated, Cause::Update, user, Some(socket.clone()), info);
            self.tell_member(ch, app, channel, &presence_update_event(channel, user, info), None, t);
        }
        for (user, ..) in &out.added {
            self.tell_meta(&channels, app, channel, MetaEvent::MemberAdded(user));
        }
        for (user, ..) in &out.removed {
            self.tell_meta(&channels, app, channel, MetaEvent::MemberRemoved(user));
        }
        if let Some((user, ..)) = &out.updated {
            self.tell_meta(&channels, app, channel, MetaEvent::PresenceUpdate(user));
        }
        drop(channels);
        for (user, ..) in out.added {
            self.cluster_webhook_member(app, channel, user, true, ours);
        }
        for (user, ..) in out.removed {
            self.cluster_webhook_member(app, channel, user, false, ours);
        }
        if let (Some((user, ..)), true) = (&out.updated, ours) {
            self.webhook_member_updated(app, channel, user);
        }
        if before != after {
            self.cluster_webhook_occupancy(app, channel, before, after, ours);
        }
    }

    /// Tells this node's subscribers of a member event and records it in presence history.
    fn tell_member(
        self: &Rc<Self>,
        ch: &mut ChannelState,
        app: AppIdx,
        channel: &Arc<str>,
        event: &Broadcast,
        exclude: Option<SocketId>,
        t: Transition<'_>,
    ) {
        self.fan_out(ch, app, channel, event, exclude);
        self.record_presence(ch, app, channel, t);
    }
}

fn transition<'a>(
    event: PresenceEvent,
    cause: Cause,
    user_id: &'a str,
    connection_id: Option<String>,
    user_info: &'a str,
) -> Transition<'a> {
    Transition { event, cause, user_id, connection_id, user_info }
}
