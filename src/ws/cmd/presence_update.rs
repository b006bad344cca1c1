//! `sockudo:presence_update` (`docs/protocol/v2.md#presence-update`): a presence member replaces
//! its `user_info`. V2 only; the socket must be a member of the channel; the new info is at most
//! 1 KiB. The channel's owner applies it, within the member's rate limit.

use crate::protocol::capabilities::Op;
use crate::protocol::inbound::{ClientFrame, PresenceUpdate};
use crate::protocol::outbound::Dialect;
use crate::protocol::ProtocolError;
use crate::shard::channel::presence::PresenceUpdate as OwnerUpdate;
use crate::ws::session::Session;

/// Largest `user_info` a presence update may carry, serialised.
const MAX_INFO_BYTES: usize = 1024;

impl Session {
    pub(in crate::ws) async fn presence_update(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        if self.dialect == Dialect::V1 {
            return Err(ProtocolError::presence_update("presence updates need protocol=2"));
        }
        let update = PresenceUpdate::parse(frame)?;
        self.require(Op::Presence, &update.channel)?;
        if update.user_info.len() > MAX_INFO_BYTES {
            return Err(ProtocolError::presence_update(format!(
                "data is {} bytes; the limit is {MAX_INFO_BYTES}",
                update.user_info.len()
            )));
        }
        let member = self.with_socket(|s| {
            s.channels.get_key_value(update.channel.as_str()).map(|(c, sub)| (c.clone(), sub.member.clone()))
        });
        let Some(Some((channel, Some(user_id)))) = member else {
            return Err(ProtocolError::presence_update(format!("not a member of {}", update.channel)));
        };
        let shard = self.shard();
        let owner = shard.channel_owner(self.app, &channel);
        let request = OwnerUpdate { app: self.app, channel, user_id, socket: self.id, info: update.user_info };
        shard.invoke_on(owner, request).await?
    }
}
