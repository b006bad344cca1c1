//! `pusher:unsubscribe`: the socket leaves the channel here at once; its owner is told (every
//! shard, for a wildcard pattern).

use crate::protocol::inbound::{self, ClientFrame};
use crate::protocol::presence_history::Cause;
use crate::protocol::ProtocolError;
use crate::ws::session::Session;

impl Session {
    pub(in crate::ws) fn unsubscribe(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        let channel = inbound::unsubscribe_channel(frame)?;
        self.leave(&channel);
        Ok(())
    }

    /// Ends the socket's subscription of `channel` (a channel, metachannel or pattern), if it
    /// still has one.
    pub(in crate::ws) fn leave(&self, channel: &str) {
        let mut index = self.hub.index.borrow_mut();
        let Some(s) = index.live(self.key, self.id) else { return };
        let Some((channel, sub)) = s.channels.remove_entry(channel) else { return };
        // Its delta streams go with it: a new subscription starts with full frames.
        s.deltas -= sub.delta.is_some() as u32;
        s.gates -= sub.gate.is_some() as u32;
        self.hub.end_subscription(&mut index, self.key, (self.app, self.id), channel, sub, Cause::Disconnect);
    }
}
