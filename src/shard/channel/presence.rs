//! Presence members of a channel, as its owner counts them across every shard: who is in the
//! channel with how many sockets, the member events, and the users request of the HTTP API.

use super::broadcast::Broadcast;
use crate::config::AppIdx;
use crate::protocol::outbound::{self, Encoding};
use crate::shard::route::{Request, Responder};
use crate::shard::Shard;
use ahash::RandomState;
use indexmap::IndexMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

struct MemberEntry {
    /// `user_info` JSON as given by the member's first socket.
    info: String,
    /// Sockets of this user in the channel, across all shards.
    sockets: u32,
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
                self.0.insert(user.into(), MemberEntry { info: info.to_owned(), sockets: 1 });
                true
            }
        }
    }

    /// Counts one socket of `user` less; true if that was the user's last.
    pub fn leave(&mut self, user: &str) -> bool {
        let Some(e) = self.0.get_mut(user) else { return false };
        e.sockets -= 1;
        if e.sockets == 0 {
            self.0.shift_remove(user);
            return true;
        }
        false
    }

    /// Whether `user` is a member with exactly one socket (it just joined).
    pub fn just_joined(&self, user: &str) -> bool {
        self.0.get(user).is_some_and(|e| e.sockets == 1)
    }

    /// The `subscription_succeeded` data of a presence channel.
    pub fn snapshot(&self) -> String {
        outbound::presence_snapshot(self.0.iter().map(|(id, e)| (&**id, e.info.as_str())))
    }
}

/// A presence member event in every encoding; member events take no place in the stream.
pub(super) fn member_event(channel: &str, user_id: &str, added: Option<&str>) -> Broadcast {
    Broadcast::new(None, Instant::now(), |e| {
        let d = match e {
            Encoding::V1Json => outbound::Dialect::V1,
            Encoding::V2Json => outbound::Dialect::V2,
        };
        Arc::new(match added {
            Some(info) => outbound::member_added(d, channel, user_id, info),
            None => outbound::member_removed(d, channel, user_id),
        })
    })
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
            .map(|ch| ch.members.0.keys().map(|k| k.to_string()).collect())
            .unwrap_or_default();
        reply.send(users);
    }
}
