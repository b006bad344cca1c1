//! Metachannels (`[meta]<channel>`, `docs/protocol/v2.md#metachannels`). The owner of a channel
//! owns its metachannel too (`Shard::channel_owner`), so it can tell the metachannel's
//! subscribers of each change to the channel's subscription count and presence members as it
//! counts them, in the order it counts them.

use super::broadcast::Broadcast;
use super::Channels;
use crate::config::AppIdx;
use crate::protocol::channel::META_PREFIX;
use crate::protocol::outbound;
use crate::shard::Shard;
use std::sync::Arc;
use std::time::Instant;

/// What happened to a channel, as its metachannel tells it.
#[derive(Clone, Copy)]
pub(super) enum MetaEvent<'a> {
    /// A subscription was counted: the channel's node-wide count now.
    Subscribed(u64),
    /// A subscription ended: the count now.
    Unsubscribed(u64),
    MemberAdded(&'a str),
    MemberRemoved(&'a str),
    PresenceUpdate(&'a str),
}

impl Channels {
    /// A metachannel's count went from 0 to 1 (`true`) or back: while an app has none with
    /// subscribers, no subscribe looks one up.
    pub(super) fn meta_watched(&mut self, app: AppIdx, channel: &str, total: u64, joined: bool) {
        if !channel.starts_with(META_PREFIX) {
            return;
        }
        let watched = &mut self.meta_watched[app as usize];
        match (joined, total) {
            (true, 1) => *watched += 1,
            (false, 0) => *watched -= 1,
            _ => {}
        }
    }
}

impl Shard {
    /// Sends the subscribers of `channel`'s metachannel, if it has any, what happened to it.
    pub(super) fn tell_meta(&self, channels: &Channels, app: AppIdx, channel: &str, what: MetaEvent<'_>) {
        if channels.meta_watched[app as usize] == 0 || channel.starts_with(META_PREFIX) {
            return;
        }
        let name: Arc<str> = format!("{META_PREFIX}{channel}").into();
        let Some(meta) = channels.get(app, &name).filter(|m| m.total > 0) else { return };
        let frame = |kind, count, user| {
            let v2 = outbound::meta_event(&name, kind, channel, count, user);
            Broadcast::new(None, Instant::now(), None, Arc::new(v2))
        };
        let events = match what {
            MetaEvent::Subscribed(1) => {
                [Some(frame("channel_occupied", Some(1), None)), Some(frame("subscription_count", Some(1), None))]
            }
            MetaEvent::Unsubscribed(0) => [Some(frame("channel_vacated", Some(0), None)), None],
            MetaEvent::Subscribed(n) | MetaEvent::Unsubscribed(n) => {
                [Some(frame("subscription_count", Some(n), None)), None]
            }
            MetaEvent::MemberAdded(u) => [Some(frame("member_added", None, Some(u))), None],
            MetaEvent::MemberRemoved(u) => [Some(frame("member_removed", None, Some(u))), None],
            MetaEvent::PresenceUpdate(u) => [Some(frame("presence_update", None, Some(u))), None],
        };
        for event in events.iter().flatten() {
            self.send_to_subscribers(meta, app, &name, event, None);
        }
    }
}
