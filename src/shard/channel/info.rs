//! What the HTTP API asks a channel's owner: one channel's occupancy (and cache), and the
//! occupied channels a shard owns.

use super::broadcast::Broadcast;
use super::publish::empty_occupancy;
use super::{is_presence, Occupancy};
use crate::config::AppIdx;
use crate::protocol::channel::META_PREFIX;
use crate::shard::route::{Request, Responder};
use crate::shard::Shard;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// To the owner: the occupancy of one channel.
pub struct ChannelInfo {
    pub app: AppIdx,
    pub channel: Arc<str>,
}

pub struct ChannelInfoReply {
    pub occupancy: Occupancy,
    /// A cache channel's live event and its seconds left.
    pub cache: Option<(Broadcast, u64)>,
}

impl Request for ChannelInfo {
    type Reply = ChannelInfoReply;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let channels = shard.channels.borrow();
        let now = Instant::now();
        let answer = match channels.get(self.app, &self.channel) {
            Some(ch) => ChannelInfoReply {
                occupancy: ch.occupancy(is_presence(&self.channel)),
                cache: ch.live_cache(now).map(|(p, exp)| (p.clone(), exp.saturating_duration_since(now).as_secs())),
            },
            None => ChannelInfoReply { occupancy: empty_occupancy(&self.channel), cache: None },
        };
        reply.send(answer);
    }
}

/// To every shard: the occupied channels it owns whose names start with `prefix`.
#[derive(Clone)]
pub struct ListChannels {
    pub app: AppIdx,
    pub prefix: Arc<str>,
}

impl Request for ListChannels {
    type Reply = Vec<(Arc<str>, Occupancy)>;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let channels = shard.channels.borrow();
        let list = channels.by_app[self.app as usize]
            .iter()
            .filter(|(name, ch)| ch.occupied() && name.starts_with(&*self.prefix) && !name.starts_with(META_PREFIX))
            .map(|(name, ch)| (name.clone(), ch.occupancy(is_presence(name))))
            .collect();
        reply.send(list);
    }
}
