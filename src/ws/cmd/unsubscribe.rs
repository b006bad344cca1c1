//! `pusher:unsubscribe`: the socket leaves the channel here at once; the owner is told.

use crate::protocol::inbound::{self, ClientFrame};
use crate::protocol::presence_history::Cause;
use crate::protocol::ProtocolError;
use crate::shard::channel::subscribe::Unsubscribe;
use crate::ws::session::Session;

impl Session {
    pub(in crate::ws) fn unsubscribe(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        let channel = inbound::unsubscribe_channel(frame)?;
        let mut index = self.hub.index.borrow_mut();
        let Some(s) = index.live(self.key, self.id) else { return Ok(()) };
        let Some((channel, sub)) = s.channels.remove_entry(channel.as_str()) else { return Ok(()) };
        // Its delta streams go with it: a new subscription starts with full frames.
        s.deltas -= sub.delta.is_some() as u32;
        let emptied = index.remove_subscriber(self.app, &channel, self.key, sub.filter.as_ref());
        drop(index);
        self.hub.count_unsubscribe(self.app, &channel, emptied);
        let shard = self.shard();
        let cause = Cause::Disconnect;
        shard.unsubscribe_from_owner(Unsubscribe {
            app: self.app,
            channel,
            shard: shard.id,
            socket: self.id,
            user_id: sub.member,
            cause,
        });
        Ok(())
    }
}
