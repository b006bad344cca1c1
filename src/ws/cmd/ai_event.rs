//! AI events from a client (`docs/protocol/v2.md#ai-transport`): a signed-in Protocol V2
//! socket may send `ai-input` and `ai-cancel` to an AI channel it is subscribed to; the agent's
//! events come over the HTTP API only. `extras.ai` is checked against the registry, its
//! `*-client-id` values must be the signed-in user, and the server stamps who sent it
//! (`input-client-id` / `run-client-id`) before the event is published like a client event.

use crate::protocol::ai::{self, AiError};
use crate::protocol::inbound::ClientFrame;
use crate::protocol::outbound::Dialect;
use crate::protocol::ProtocolError;
use crate::ws::session::Session;
use sonic_rs::{JsonType, JsonValueTrait};

impl Session {
    pub(in crate::ws) fn ai_event(&self, frame: &ClientFrame<'_>, name: &str) -> Result<(), ProtocolError> {
        self.take_client_event_quota()?;
        let refuse = |e: AiError| Err(ProtocolError::Ai(e));
        let channel =
            frame.channel.as_deref().ok_or_else(|| ProtocolError::client_event("Channel required for AI event"))?;
        let config = &self.shard().ctx.config.ai_transport;
        if !config.is_ai_channel(channel) {
            return refuse(AiError::not_permitted(format!("AI Transport is not enabled for channel {channel}")));
        }
        if self.dialect != Dialect::V2 {
            return refuse(AiError::not_permitted("AI events require protocol 2"));
        }
        if !ai::is_client_ai_event(name) {
            return refuse(AiError::not_permitted(format!("{name} is an agent event: publish it with the HTTP API")));
        }
        let user = self
            .with_socket(|s| s.user_id.clone().filter(|_| s.signed_in))
            .flatten()
            .ok_or_else(|| ProtocolError::auth("AI events need a signed-in connection (pusher:signin)"))?;
        let extras = match &frame.extras {
            None => None,
            Some(x) if x.get_type() == JsonType::Null => None,
            Some(x) if x.get_type() == JsonType::Object => Some(x.as_raw_str()),
            Some(_) => return Err(ProtocolError::invalid_format("extras must be a JSON object")),
        };
        if let Some(transport) = ai::check_extras(extras, config.header_limits).map_err(ProtocolError::Ai)? {
            transport.check_identity(&user).map_err(ProtocolError::Ai)?;
        }
        let stamped = ai::stamp(extras, name, &user).map_err(ProtocolError::Ai)?;
        // `extras.echo` decides for this event; without it, the connection's `echo_messages`
        // (`docs/protocol/v2.md#echo-control`).
        let echo = match sonic_rs::get_from_str(&stamped, ["echo"]).ok().as_ref().map(|v| v.as_raw_str()) {
            Some("true") => true,
            Some("false") => false,
            _ => self.echo,
        };
        self.send_client_event(frame, name, channel, Some(stamped), echo)
    }
}
