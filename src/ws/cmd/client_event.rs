//! Client events (`docs/protocol/pusher.md#client-events`): checked here against the app's
//! rules and rate limit, then published through the same path as an HTTP publish. AI events
//! from clients (`ai_event.rs`) share the limit and the publish.

use crate::config::{wants, EventKind};
use crate::metrics::Limiter;
use crate::protocol::capabilities::Op;
use crate::protocol::channel;
use crate::protocol::inbound::ClientFrame;
use crate::protocol::ProtocolError;
use crate::publish::publish_client_event;
use crate::shard::channel::broadcast::{ChannelEvent, EventData};
use crate::webhook::WebhookEvent;
use crate::ws::session::Session;
use std::sync::Arc;
use std::time::Instant;

impl Session {
    pub(in crate::ws) fn client_event(&self, frame: &ClientFrame<'_>, name: &str) -> Result<(), ProtocolError> {
        self.take_client_event_quota()?;
        let app = self.app();
        let limits = &app.limits;
        let channel =
            frame.channel.as_deref().ok_or_else(|| ProtocolError::client_event("Channel required for client event"))?;
        if !app.client_messages {
            return Err(ProtocolError::client_event("Client events are not enabled for this app"));
        }
        if name.len() > limits.max_event_name_length {
            return Err(ProtocolError::invalid_event_name(format!(
                "Event name exceeds maximum length of {}",
                limits.max_event_name_length
            )));
        }
        if channel.len() > limits.max_channel_name_length {
            return Err(ProtocolError::channel_name_invalid(format!(
                "Channel name exceeds maximum length of {}",
                limits.max_channel_name_length
            )));
        }
        if !channel::channel_type(channel).allows_client_events() {
            return Err(ProtocolError::client_event("Client events can only be sent to private or presence channels"));
        }
        self.send_client_event(frame, name, channel, None, self.echo)
    }

    /// The app's client-event rate limit. It comes first: rejected events still use quota, as
    /// with the reference.
    pub(in crate::ws) fn take_client_event_quota(&self) -> Result<(), ProtocolError> {
        let limits = &self.app().limits;
        if limits.client_events_per_window == 0 {
            return Ok(());
        }
        let c = self.hub.counters(Some(self.app));
        c.rate_limit_checks[Limiter::ClientEvents as usize].inc();
        let allowed = self
            .with_socket(|s| {
                let now = Instant::now();
                if now.duration_since(s.client_event_window.0) >= limits.client_event_window {
                    s.client_event_window = (now, 0);
                }
                s.client_event_window.1 += 1;
                s.client_event_window.1 <= limits.client_events_per_window
            })
            .unwrap_or(false);
        if !allowed {
            c.rate_limit_triggered[Limiter::ClientEvents as usize].inc();
            return Err(ProtocolError::ClientEventRateLimited { terminate: limits.terminate_on_limit });
        }
        Ok(())
    }

    /// Publishes a checked client-sent event to `channel`, which the socket must be subscribed
    /// to, with `extras` for V2 subscribers; tells the app's client-event webhook.
    pub(in crate::ws) fn send_client_event(
        &self,
        frame: &ClientFrame<'_>,
        name: &str,
        channel: &str,
        extras: Option<String>,
        echo: bool,
    ) -> Result<(), ProtocolError> {
        self.require(Op::Publish, channel)?;
        let app = self.app();
        let data = frame.data_raw();
        if data.len() > app.limits.max_event_payload_bytes {
            return Err(ProtocolError::client_event(format!(
                "Event payload size ({} bytes) exceeds limit ({}KB)",
                data.len(),
                app.limits.max_event_payload_bytes / 1024
            )));
        }
        let (channel, member): (Arc<str>, _) = self
            .with_socket(|s| s.channels.get_key_value(channel).map(|(c, sub)| (c.clone(), sub.member.clone())))
            .flatten()
            .ok_or_else(|| {
                ProtocolError::client_event(format!("Socket {} is not subscribed to channel {channel}", self.id))
            })?;
        let ctx = &self.shard().ctx;
        if let Some(sender) = ctx.webhooks.as_ref().filter(|_| wants(&app.webhooks, EventKind::ClientEvent, &channel)) {
            let event = WebhookEvent::ClientEvent {
                channel: channel.clone(),
                event: name.to_owned(),
                data: data.to_owned(),
                socket_id: self.socket_id(),
                user_id: member.clone(),
            };
            sender.push(self.app, event);
        }
        // Presence client events carry the sender's user id (unlike the reference).
        let event = ChannelEvent {
            name: name.to_owned(),
            data: EventData::Raw(data.to_owned()),
            user_id: member,
            creator: None,
            message_id: None,
            extras,
            tags: None,
            no_delta: true,
            ephemeral: false,
            opens_stream: false,
        };
        let exclude = (!echo).then_some(self.id);
        publish_client_event(self.shard(), self.app, channel, event, exclude)
            .map_err(|e| ProtocolError::client_event(format!("rejected, the server is too busy: {e}")))
    }
}
