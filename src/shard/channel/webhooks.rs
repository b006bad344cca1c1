//! The webhook events a channel's owner decides: the count-derived ones, which only the owner
//! can, since it alone knows the node-wide subscriber count and the presence members (client
//! events are decided on the sender's shard). Nothing is built unless some webhook of the app
//! wants that event on that channel.
//!
//! `channel_vacated` and `member_removed` wait [`RECHECK_DELAY`] on the owner shard: a
//! re-subscribe (or the user's return) within it calls the pending event off, and then the
//! matching `channel_occupied` (`member_added`) is not sent either, so a receiver sees
//! occupied/vacated (added/removed) strictly alternate.
//!
//! With several nodes (`cluster.rs`) these events follow the cluster's view instead, which
//! changes in log order alike on every node: every node keeps the same re-checks, the node
//! whose change made a transition alone sends its event, and the end of a re-check delay is
//! itself appended to the log (`ShareChange::Due`), so whether a return called the event off
//! is decided in log order too: once for the cluster.

use super::is_presence;
use crate::backplane::ShareChange;
use crate::config::{wants, AppIdx, EventKind, Webhook};
use crate::protocol::channel::META_PREFIX;
use crate::shard::Shard;
use crate::webhook::{WebhookEvent, Webhooks};
use ahash::AHashMap;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// How long `channel_vacated` and `member_removed` wait for a re-check
/// (`docs/protocol/http-api.md#webhooks`).
pub const RECHECK_DELAY: Duration = Duration::from_secs(3);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Vacated(AppIdx, Arc<str>),
    Removed(AppIdx, Arc<str>, Arc<str>),
}

/// One owner shard's events waiting for their re-check, each with a generation: a timer only
/// sends its event if its entry is still there with its generation.
#[derive(Default)]
pub struct Pending {
    next: u64,
    waiting: AHashMap<Key, u64>,
}

impl Pending {
    fn start(&mut self, key: Key) -> u64 {
        self.next += 1;
        self.waiting.insert(key, self.next);
        self.next
    }

    /// Calls off a waiting event; true if there was one.
    fn cancel(&mut self, key: &Key) -> bool {
        self.waiting.remove(key).is_some()
    }

    /// The timer of generation `generation` is due: true if its event still stands.
    fn due(&mut self, key: &Key, generation: u64) -> bool {
        if self.waiting.get(key) == Some(&generation) {
            self.waiting.remove(key);
            true
        } else {
            false
        }
    }
}

impl Shard {
    /// The app's webhooks, if it has any (and the sender runs).
    fn hooks(&self, app: AppIdx) -> Option<(&Webhooks, &[Webhook])> {
        let sender = self.ctx.webhooks.as_ref()?;
        let hooks = &self.ctx.apps.get(app).webhooks;
        (!hooks.is_empty()).then_some((sender, hooks.as_slice()))
    }

    /// Owner: a subscribe was answered. `total` is the new node-wide count when the subscribe
    /// was counted (not a repeat), `joined` the user it made a new presence member, and
    /// `cache_miss` says a cache channel had nothing to give.
    pub(super) fn webhook_subscribed(
        &self,
        app: AppIdx,
        channel: &Arc<str>,
        total: Option<u64>,
        joined: Option<&str>,
        cache_miss: bool,
    ) {
        // A metachannel is no channel of the app's: its subscribers are not reported.
        if channel.starts_with(META_PREFIX) {
            return;
        }
        let Some((sender, hooks)) = self.hooks(app) else { return };
        let mut pending = self.webhook_pending.borrow_mut();
        if total == Some(1)
            && !pending.cancel(&Key::Vacated(app, channel.clone()))
            && wants(hooks, EventKind::ChannelOccupied, channel)
        {
            sender.push(app, WebhookEvent::ChannelOccupied { channel: channel.clone() });
        }
        if let Some(user) = joined {
            let user: Arc<str> = user.into();
            if !pending.cancel(&Key::Removed(app, channel.clone(), user.clone()))
                && wants(hooks, EventKind::MemberAdded, channel)
            {
                sender.push(app, WebhookEvent::MemberAdded { channel: channel.clone(), user_id: user });
            }
        }
        if let Some(count) = total {
            if !is_presence(channel) && wants(hooks, EventKind::SubscriptionCount, channel) {
                sender.push(app, WebhookEvent::SubscriptionCount { channel: channel.clone(), count });
            }
        }
        if cache_miss && wants(hooks, EventKind::CacheMiss, channel) {
            sender.push(app, WebhookEvent::CacheMiss { channel: channel.clone() });
        }
    }

    /// Owner: a subscription ended; `total` is the new node-wide count.
    pub(super) fn webhook_unsubscribed(&self, app: AppIdx, channel: &Arc<str>, total: u64) {
        if channel.starts_with(META_PREFIX) {
            return;
        }
        let Some((sender, hooks)) = self.hooks(app) else { return };
        if total == 0 && wants(hooks, EventKind::ChannelVacated, channel) {
            let event = WebhookEvent::ChannelVacated { channel: channel.clone() };
            self.webhook_after_recheck(app, Key::Vacated(app, channel.clone()), event);
        }
        if !is_presence(channel) && wants(hooks, EventKind::SubscriptionCount, channel) {
            sender.push(app, WebhookEvent::SubscriptionCount { channel: channel.clone(), count: total });
        }
    }

    /// Owner: the last socket of `user` left the presence channel.
    pub(super) fn webhook_member_left(&self, app: AppIdx, channel: &Arc<str>, user: &Arc<str>) {
        let Some((_, hooks)) = self.hooks(app) else { return };
        if wants(hooks, EventKind::MemberRemoved, channel) {
            let event = WebhookEvent::MemberRemoved { channel: channel.clone(), user_id: user.clone() };
            self.webhook_after_recheck(app, Key::Removed(app, channel.clone(), user.clone()), event);
        }
    }

    /// Owner: a presence member replaced its `user_info`.
    pub(super) fn webhook_member_updated(&self, app: AppIdx, channel: &Arc<str>, user: &Arc<str>) {
        let Some((sender, hooks)) = self.hooks(app) else { return };
        if wants(hooks, EventKind::MemberUpdated, channel) {
            sender.push(app, WebhookEvent::MemberUpdated { channel: channel.clone(), user_id: user.clone() });
        }
    }

    /// Owner, several nodes: the cluster's subscriptions of `channel` went from `before` to
    /// `after`; `ours` if this node's change did it.
    pub(super) fn cluster_webhook_occupancy(
        self: &Rc<Self>,
        app: AppIdx,
        channel: &Arc<str>,
        before: u64,
        after: u64,
        ours: bool,
    ) {
        if channel.starts_with(META_PREFIX) {
            return;
        }
        let Some((sender, hooks)) = self.hooks(app) else { return };
        if before == 0 {
            let called_off = self.webhook_pending.borrow_mut().cancel(&Key::Vacated(app, channel.clone()));
            if !called_off && ours && wants(hooks, EventKind::ChannelOccupied, channel) {
                sender.push(app, WebhookEvent::ChannelOccupied { channel: channel.clone() });
            }
        } else if after == 0 && wants(hooks, EventKind::ChannelVacated, channel) {
            self.cluster_recheck(app, channel, Key::Vacated(app, channel.clone()), ours);
        }
        if ours && !is_presence(channel) && wants(hooks, EventKind::SubscriptionCount, channel) {
            sender.push(app, WebhookEvent::SubscriptionCount { channel: channel.clone(), count: after });
        }
    }

    /// Owner, several nodes: `user` became (`added`) or stopped being a member cluster-wide.
    pub(super) fn cluster_webhook_member(
        self: &Rc<Self>,
        app: AppIdx,
        channel: &Arc<str>,
        user: Arc<str>,
        added: bool,
        ours: bool,
    ) {
        let Some((sender, hooks)) = self.hooks(app) else { return };
        let key = Key::Removed(app, channel.clone(), user.clone());
        if added {
            let called_off = self.webhook_pending.borrow_mut().cancel(&key);
            if !called_off && ours && wants(hooks, EventKind::MemberAdded, channel) {
                sender.push(app, WebhookEvent::MemberAdded { channel: channel.clone(), user_id: user });
            }
        } else if wants(hooks, EventKind::MemberRemoved, channel) {
            self.cluster_recheck(app, channel, key, ours);
        }
    }

    /// Owner, several nodes: a re-check delay ended on the node that started it (`ours`: this
    /// one, which sends the event unless the log called it off first).
    pub(super) fn cluster_webhook_due(&self, app: AppIdx, channel: &Arc<str>, user: Option<Arc<str>>, ours: bool) {
        let key = match &user {
            Some(u) => Key::Removed(app, channel.clone(), u.clone()),
            None => Key::Vacated(app, channel.clone()),
        };
        if !self.webhook_pending.borrow_mut().cancel(&key) || !ours {
            return;
        }
        let Some((sender, _)) = self.hooks(app) else { return };
        let event = match user {
            Some(user_id) => WebhookEvent::MemberRemoved { channel: channel.clone(), user_id },
            None => WebhookEvent::ChannelVacated { channel: channel.clone() },
        };
        sender.push(app, event);
    }

    /// Every node starts the re-check of `key`; the node whose change it was (`ours`) appends
    /// its end after [`RECHECK_DELAY`], unless the log called it off first, and again after
    /// another delay while the append fails.
    fn cluster_recheck(self: &Rc<Self>, app: AppIdx, channel: &Arc<str>, key: Key, ours: bool) {
        self.webhook_pending.borrow_mut().start(key.clone());
        if !ours {
            return;
        }
        let (shard, channel) = (self.clone(), channel.clone());
        let user = match &key {
            Key::Removed(_, _, u) => Some(u.to_string()),
            Key::Vacated(..) => None,
        };
        crate::shard::spawn(self, "webhook re-check", async move {
            loop {
                glommio::timer::sleep(RECHECK_DELAY).await;
                if !shard.webhook_pending.borrow().waiting.contains_key(&key) {
                    return;
                }
                let due = ShareChange::Due { user: user.clone() };
                let Some(appended) = shard.share_awaited(app, &channel, due) else { return };
                if appended.await.is_ok() {
                    return;
                }
            }
        });
    }

    /// Sends `event` after [`RECHECK_DELAY`] unless `key` is called off meanwhile. A timer on
    /// this (the owner) shard: it only reads this shard's state.
    fn webhook_after_recheck(&self, app: AppIdx, key: Key, event: WebhookEvent) {
        let generation = self.webhook_pending.borrow_mut().start(key.clone());
        let pending: Rc<RefCell<Pending>> = self.webhook_pending.clone();
        let ctx = self.ctx.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(RECHECK_DELAY).await;
            if pending.borrow_mut().due(&key, generation) {
                if let Some(sender) = &ctx.webhooks {
                    sender.push(app, event);
                }
            }
        })
        .detach();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_latest_generation_fires() {
        let mut p = Pending::default();
        let k = Key::Vacated(0, "c".into());
        let first = p.start(k.clone());
        assert!(p.cancel(&k), "a re-subscribe calls it off");
        assert!(!p.due(&k, first));
        let second = p.start(k.clone());
        let third = p.start(k.clone());
        assert!(!p.due(&k, second), "an older timer of the same key stays silent");
        assert!(p.due(&k, third));
        assert!(!p.due(&k, third), "once");
        assert!(!p.cancel(&k));
    }
}
