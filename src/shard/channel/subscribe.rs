//! Subscribing and unsubscribing, as the channel's owner counts them: per-shard subscriber
//! counts, presence members and their events, and the position a new subscriber starts at.

use super::broadcast::Broadcast;
use super::meta::MetaEvent;
use super::presence::member_event;
use crate::backplane::ShareChange;
use crate::config::AppIdx;
use crate::protocol::channel;
use crate::protocol::inbound::Member;
use crate::protocol::presence_history::{Cause, PresenceEvent, Transition};
use crate::protocol::ProtocolError;
use crate::shard::route::{Request, Responder};
use crate::shard::Shard;
use crate::socket_id::SocketId;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// To the owner: a socket on `shard` joins `channel`. Answered after member events for a new
/// presence member went out (with several nodes they go out when the log brings the join back).
pub struct Subscribe {
    pub app: AppIdx,
    pub channel: Arc<str>,
    pub shard: usize,
    pub socket: SocketId,
    pub member: Option<Member>,
    /// The socket was already subscribed: answer with the current state, count nothing.
    pub again: bool,
}

/// The owner's answer to a subscribe it accepted.
pub struct Subscribed {
    /// Data of `subscription_succeeded`: `{}` or a presence snapshot.
    pub data: String,
    /// For cache channels: the cached event (`Some(Some)`), or a miss (`Some(None)`).
    pub cache: Option<Option<Broadcast>>,
    /// The channel's stream and its head serial when the subscriber was registered.
    pub stream_id: Arc<str>,
    pub head: u64,
    /// What undoes the subscription if the asker is gone when this answer arrives; `None` when
    /// nothing was counted (a repeat).
    pub undo: Option<Unsubscribe>,
}

impl Request for Subscribe {
    type Reply = Result<Subscribed, ProtocolError>;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let Subscribe { app, channel, shard: from, socket, member, again } = self;
        let limits = &shard.ctx.apps.get(app).limits;
        let mut channels = shard.channels.borrow_mut();
        let ch = channels.entry(app, &channel);
        // The subscriber starts after the head: what a rollup window holds goes out first.
        shard.flush_rollup(ch, app, &channel);
        // With several nodes, member events, their webhooks and occupancy follow the cluster's
        // view when the log brings this node's changes back (`cluster.rs`).
        let clustered = ch.cluster.is_some();
        if let Some(m) = &member {
            let known = ch.members.contains(&m.user_id);
            let (members, anywhere) = match &ch.cluster {
                Some(view) => (view.member_count(), known || view.is_member(&m.user_id)),
                None => (ch.members.len(), known),
            };
            if !again && !anywhere && members as u64 >= limits.max_presence_members {
                reply.send(Err(ProtocolError::PresenceFull));
                return;
            }
            if !again && !known {
                if clustered {
                    let join = ShareChange::Join {
                        user: m.user_id.clone(),
                        info: m.user_info.clone(),
                        socket: socket.to_string(),
                    };
                    shard.share(app, &channel, join);
                } else {
                    // Tell the others before answering: on the joiner's shard the member event
                    // is handled first, while the joiner is not yet indexed, so it never sees
                    // its own member_added.
                    let added = member_event(&channel, &m.user_id, Some(&m.user_info));
                    shard.fan_out(ch, app, &channel, &added, Some(socket));
                    let transition = Transition {
                        event: PresenceEvent::Added,
                        cause: Cause::Join,
                        user_id: &m.user_id,
                        connection_id: Some(socket.to_string()),
                        user_info: &m.user_info,
                    };
                    shard.record_presence(ch, app, &channel, transition);
                }
            }
            if !again {
                ch.members.join(&m.user_id, &m.user_info);
            }
        }
        if !again {
            if ch.per_shard.is_empty() {
                ch.per_shard = vec![0; shard.shards];
            }
            ch.per_shard[from] += 1;
            ch.total += 1;
            shard.count_changed(ch, app, &channel);
        }
        let data = match (&member, &ch.cluster) {
            (Some(m), Some(view)) => view.snapshot((&m.user_id, &m.user_info)),
            (Some(_), None) => ch.members.snapshot(),
            (None, _) => "{}".to_owned(),
        };
        let cache =
            channel::channel_type(&channel).cache.then(|| ch.live_cache(Instant::now()).map(|(p, _)| p.clone()));
        let joined = member.as_ref().filter(|m| !again && !clustered && ch.members.just_joined(&m.user_id));
        let counted = (!again).then_some(ch.total);
        let (stream_id, head) = (ch.stream.id.clone(), ch.stream.head);
        if let Some(total) = counted {
            channels.meta_watched(app, &channel, total, true);
            if let Some(m) = joined {
                shard.tell_meta(&channels, app, &channel, MetaEvent::MemberAdded(&m.user_id));
            }
            shard.tell_meta(&channels, app, &channel, MetaEvent::Subscribed(total));
        }
        drop(channels);
        let counted_here = counted.filter(|_| !clustered);
        shard.webhook_subscribed(app, &channel, counted_here, joined.map(|m| &*m.user_id), matches!(cache, Some(None)));
        let user_id = member.map(|m| Arc::<str>::from(m.user_id));
        let undo =
            (!again).then_some(Unsubscribe { app, channel, shard: from, socket, user_id, cause: Cause::Disconnect });
        reply.send(Ok(Subscribed { data, cache, stream_id, head, undo }));
    }

    /// The socket's shard gave up waiting (or the socket went away): take the count back.
    fn abandoned(reply: Self::Reply, shard: &Rc<Shard>) {
        if let Ok(Subscribed { undo: Some(undo), .. }) = reply {
            shard.unsubscribe_from_owner(undo);
        }
    }
}

/// To the owner: a socket on `shard` left `channel` (unsubscribe or disconnect).
pub struct Unsubscribe {
    pub app: AppIdx,
    pub channel: Arc<str>,
    pub shard: usize,
    pub socket: SocketId,
    /// The presence user it had joined as.
    pub user_id: Option<Arc<str>>,
    /// Why, for presence history.
    pub cause: Cause,
}

impl Request for Unsubscribe {
    type Reply = ();
    /// Undoes a counted subscription: losing it would leave the count wrong for good.
    const REFUSABLE: bool = false;

    fn handle(self, shard: &Rc<Shard>, _reply: Responder<Self>) {
        let Unsubscribe { app, channel, shard: from, socket, user_id, cause } = self;
        let mut channels = shard.channels.borrow_mut();
        let Some(ch) = channels.get_mut(app, &channel) else { return };
        if ch.per_shard.get(from).is_none_or(|&n| n == 0) {
            log::warn!("unsubscribe from shard {from} for {channel} without a subscription");
            return;
        }
        ch.per_shard[from] -= 1;
        ch.total -= 1;
        shard.count_changed(ch, app, &channel);
        let clustered = ch.cluster.is_some();
        let mut left = None;
        // The user's last socket here left.
        let last_here = user_id.and_then(|user| ch.members.leave(&user).map(|info| (user, info)));
        if let Some((user, info)) = last_here {
            if clustered {
                let leave = ShareChange::Leave {
                    user: user.to_string(),
                    cause: cause.name().into(),
                    socket: socket.to_string(),
                };
                shard.share(app, &channel, leave);
            } else {
                let removed = member_event(&channel, &user, None);
                shard.fan_out(ch, app, &channel, &removed, None);
                let transition = Transition {
                    event: PresenceEvent::Removed,
                    cause,
                    user_id: &user,
                    connection_id: Some(socket.to_string()),
                    user_info: &info,
                };
                shard.record_presence(ch, app, &channel, transition);
                left = Some(user);
            }
        }
        let total = ch.total;
        channels.meta_watched(app, &channel, total, false);
        if let Some(user) = &left {
            shard.tell_meta(&channels, app, &channel, MetaEvent::MemberRemoved(user));
        }
        shard.tell_meta(&channels, app, &channel, MetaEvent::Unsubscribed(total));
        drop(channels);
        if let Some(user) = left {
            shard.webhook_member_left(app, &channel, &user);
        }
        if !clustered {
            shard.webhook_unsubscribed(app, &channel, total);
        }
    }
}

impl Shard {
    /// Tells `undo`'s channel owner that a subscription ended.
    pub fn unsubscribe_from_owner(&self, undo: Unsubscribe) {
        let owner = self.channel_owner(undo.app, &undo.channel);
        // Never refused (`Unsubscribe::REFUSABLE`).
        let _ = self.tell(owner, undo);
    }
}
