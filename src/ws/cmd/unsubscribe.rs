//! `pusher:unsubscribe`: the socket leaves the channel here at once; the owner is told.

use crate::protocol::inbound::{self, ClientFrame};
use crate::protocol::presence_history::Cause;
use crate::protocol::ProtocolError;
use crate::ws::session::Session;

impl Session {
    pub(in crate::ws) fn unsubscribe(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        let channel = inbound::unsubscribe_channel(frame)?;
        let mut index = self.hub.index.borrow_mut();
        let Some(s) = index.live(self.key, self.id) else { return Ok(()) };
        let Some((channel, sub)) = s.channels.remove_entry(channel.as_str()) else { return Ok(()) };
        // Its delta streams go with it: a new subscription starts with full frames.
        s.deltas -= sub.delta.is_some() as u32;
        s.gates -= sub.gate.is_some() as u32;
        self.hub.end_subscription(&mut index, self.key, (self.app, self.id), channel, sub, Cause::Disconnect);
        Ok(())
    }
}
