//! Presence members of a channel, as its owner counts them across every shard: who is in the
//! channel with how many sockets, the member events, and the users request of the HTTP API.

use super::broadcast::Broadcast;
use crate::backplane::ShareChange;
use crate::config::AppIdx;
use crate::protocol::outbound::{self, Dialect};
use crate::protocol::presence_history::{Cause, PresenceEvent, Transition};
use crate::protocol::ProtocolError;
use crate::shard::route::{Request, Responder};
use crate::shard::Shard;
use crate::socket_id::SocketId;
use ahash::RandomState;
use indexmap::IndexMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct MemberEntry {
    /// `user_info` JSON as given by the member's first socket, or by its latest presence
    /// update.
    info: String,
    /// Sockets of this user in the channel, across all shards.
    sockets: u32,
    /// The member's presence-update rate window: start and count.
    updates: (Instant, u32),
}

/// Members in join order.
#[derive(Default)]
pub(super) struct Members(IndexMap<Arc<str>, MemberEntry, RandomState>);

impl Members {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, user: &str) -> bool {
        self.0.contains_key(user)
    }

    /// Counts one more socket of `user`; true if that made the user a member.
    pub fn join(&mut self, user: &str, info: &str) -> bool {
        match self.0.get_mut(user) {
            Some(e) => {
                e.sockets += 1;
                false
            }
            None => {
                let entry = MemberEntry { info: info.to_owned(), sockets: 1, updates: (Instant::now(), 0) };
                self.0.insert(user.into(), entry);
                true
            }
        }
    }

    /// Counts one socket of `user` less; if that was the user's last, the user is no longer a
    /// member and its `user_info` is returned.
    pub fn leave(&mut self, user: &str) -> Option<String> {
        let e = self.0.get_mut(user)?;
        e.sockets -= 1;
        if e.sockets == 0 {
            return self.0.shift_remove(user).map(|e| e.info);
        }
        None
    }

    /// Whether `user` is a member with exactly one socket (it just joined).
    pub fn just_joined(&self, user: &str) -> bool {
        self.0.get(user).is_some_and(|e| e.sockets == 1)
    }

    /// Every member and its `user_info`, in join order.
    pub fn list(&self) -> Vec<(String, String)> {
        self.0.iter().map(|(u, e)| (u.to_string(), e.info.clone())).collect()
    }

    /// The `subscription_succeeded` data of a presence channel.
    pub fn snapshot(&self) -> String {
        outbound::presence_snapshot(self.0.iter().map(|(id, e)| (&**id, e.info.as_str())))
    }
}

/// A presence update: V2 only, V1 sockets never see it.
pub(super) fn presence_update_event(channel: &str, user_id: &str, info: &str) -> Broadcast {
    Broadcast::new(None, Instant::now(), None, Arc::new(outbound::presence_update(channel, user_id, info)))
}

/// A presence member event in each dialect; member events take no place in the stream.
pub(super) fn member_event(channel: &str, user_id: &str, added: Option<&str>) -> Broadcast {
    let make = |d| {
        Arc::new(match added {
            Some(info) => outbound::member_added(d, channel, user_id, info),
            None => outbound::member_removed(d, channel, user_id),
        })
    };
    Broadcast::new(None, Instant::now(), Some(make(Dialect::V1)), make(Dialect::V2))
}

/// To the owner: the distinct users of a presence channel.
pub struct PresenceUsers {
    pub app: AppIdx,
    pub channel: Arc<str>,
}

impl Request for PresenceUsers {
    type Reply = Vec<String>;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let channels = shard.channels.borrow();
        let users = channels
            .get(self.app, &self.channel)
            .map(|ch| match &ch.cluster {
                Some(view) => view.users().map(str::to_owned).collect(),
                None => ch.members.0.keys().map(|k| k.to_string()).collect(),
            })
            .unwrap_or_default();
        reply.send(users);
    }
}

/// To the owner: a member of a presence channel replaces its `user_info`
/// (`docs/protocol/v2.md#presence-update`). Every V2 subscriber (the sender too) is told, and
/// members who join later get the new info in their snapshot.
pub struct PresenceUpdate {
    pub app: AppIdx,
    pub channel: Arc<str>,
    pub user_id: Arc<str>,
    /// The member's socket that sent it.
    pub socket: SocketId,
    /// The new `user_info` as JSON text.
    pub info: String,
}

impl Request for PresenceUpdate {
    type Reply = Result<(), ProtocolError>;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let PresenceUpdate { app, channel, user_id, socket, info } = self;
        let limit = shard.ctx.config.presence.update_rate_per_member;
        let mut channels = shard.channels.borrow_mut();
        let Some(ch) = channels.get_mut(app, &channel) else {
            reply.send(Err(ProtocolError::presence_update(format!("not a member of {channel}"))));
            return;
        };
        let Some(member) = ch.members.0.get_mut(&*user_id) else {
            reply.send(Err(ProtocolError::presence_update(format!("not a member of {channel}"))));
            return;
        };
        let now = Instant::now();
        if now.duration_since(member.updates.0) >= Duration::from_secs(1) {
            member.updates = (now, 0);
        }
        member.updates.1 += 1;
        if member.updates.1 > limit {
            reply.send(Err(ProtocolError::PresenceUpdateRateLimited));
            return;
        }
        member.info = info;
        if ch.cluster.is_some() {
            // Every node's subscribers are told when the log brings it back (`cluster.rs`).
            let update = ShareChange::Update {
                user: user_id.to_string(),
                info: member.info.clone(),
                socket: socket.to_string(),
            };
            shard.share(app, &channel, update);
            reply.send(Ok(()));
            return;
        }
        let event = presence_update_event(&channel, &user_id, &member.info);
        let info = member.info.clone();
        shard.fan_out(ch, app, &channel, &event, None);
        let transition = Transition {
            event: PresenceEvent::Updated,
            cause: Cause::Update,
            user_id: &user_id,
            connection_id: Some(socket.to_string()),
            user_info: &info,
        };
        shard.record_presence(ch, app, &channel, transition);
        shard.tell_meta(&channels, app, &channel, super::meta::MetaEvent::PresenceUpdate(&user_id));
        drop(channels);
        shard.webhook_member_updated(app, &channel, &user_id);
        reply.send(Ok(()));
    }
}
