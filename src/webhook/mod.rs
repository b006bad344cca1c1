//! Webhooks (`docs/protocol/http-api.md#webhooks`): the events and the handle the shards hand
//! them to. What each app asks for is configuration (`config::webhooks`); which events happen is
//! decided where the facts are (`shard::channel::webhooks` on a channel's owner, the client
//! event on its sender's shard).
//!
//! A shard never waits on a webhook: it `try_send`s an event into one bounded queue
//! ([`Webhooks::push`]) and goes on; what does not fit is dropped, counted and logged. Batching,
//! signing, the HTTP requests and their retries run on the sender's own threads (`sender`),
//! never on an executor.

mod delivery;
mod sender;

pub use sender::{WebhookStats, WebhookStatsSnapshot, Webhooks};

use crate::config::EventKind;
use crate::protocol::outbound::push_json_str;
use std::sync::Arc;

// ---- events -------------------------------------------------------------------------------

/// One webhook event. Built by a shard only when some webhook of the app wants it; turned into
/// JSON on the sender thread.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    ChannelOccupied {
        channel: Arc<str>,
    },
    ChannelVacated {
        channel: Arc<str>,
    },
    MemberAdded {
        channel: Arc<str>,
        user_id: Arc<str>,
    },
    MemberRemoved {
        channel: Arc<str>,
        user_id: Arc<str>,
    },
    MemberUpdated {
        channel: Arc<str>,
        user_id: Arc<str>,
    },
    /// `data` is the JSON text the client sent (a string literal or any JSON value).
    ClientEvent {
        channel: Arc<str>,
        event: String,
        data: String,
        socket_id: String,
        user_id: Option<Arc<str>>,
    },
    CacheMiss {
        channel: Arc<str>,
    },
    SubscriptionCount {
        channel: Arc<str>,
        count: u64,
    },
}

impl WebhookEvent {
    pub fn kind(&self) -> EventKind {
        match self {
            WebhookEvent::ChannelOccupied { .. } => EventKind::ChannelOccupied,
            WebhookEvent::ChannelVacated { .. } => EventKind::ChannelVacated,
            WebhookEvent::MemberAdded { .. } => EventKind::MemberAdded,
            WebhookEvent::MemberRemoved { .. } => EventKind::MemberRemoved,
            WebhookEvent::MemberUpdated { .. } => EventKind::MemberUpdated,
            WebhookEvent::ClientEvent { .. } => EventKind::ClientEvent,
            WebhookEvent::CacheMiss { .. } => EventKind::CacheMiss,
            WebhookEvent::SubscriptionCount { .. } => EventKind::SubscriptionCount,
        }
    }

    pub fn channel(&self) -> &str {
        match self {
            WebhookEvent::ChannelOccupied { channel }
            | WebhookEvent::ChannelVacated { channel }
            | WebhookEvent::MemberAdded { channel, .. }
            | WebhookEvent::MemberRemoved { channel, .. }
            | WebhookEvent::MemberUpdated { channel, .. }
            | WebhookEvent::ClientEvent { channel, .. }
            | WebhookEvent::CacheMiss { channel }
            | WebhookEvent::SubscriptionCount { channel, .. } => channel,
        }
    }

    /// Roughly what the event holds in memory while queued (for the queue's byte bound).
    pub fn size(&self) -> usize {
        let extra = match self {
            WebhookEvent::MemberAdded { user_id, .. }
            | WebhookEvent::MemberRemoved { user_id, .. }
            | WebhookEvent::MemberUpdated { user_id, .. } => user_id.len(),
            WebhookEvent::ClientEvent { event, data, socket_id, user_id, .. } => {
                event.len() + data.len() + socket_id.len() + user_id.as_ref().map_or(0, |u| u.len())
            }
            _ => 0,
        };
        96 + self.channel().len() + extra
    }

    /// Appends the event object of the payload's `events` array
    /// (`docs/protocol/http-api.md#webhook-events`).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"name\":");
        push_json_str(out, self.kind().name());
        out.extend_from_slice(b",\"channel\":");
        push_json_str(out, self.channel());
        match self {
            WebhookEvent::MemberAdded { user_id, .. }
            | WebhookEvent::MemberRemoved { user_id, .. }
            | WebhookEvent::MemberUpdated { user_id, .. } => {
                out.extend_from_slice(b",\"user_id\":");
                push_json_str(out, user_id);
            }
            WebhookEvent::ClientEvent { event, data, socket_id, user_id, .. } => {
                out.extend_from_slice(b",\"event\":");
                push_json_str(out, event);
                out.extend_from_slice(b",\"data\":");
                out.extend_from_slice(data.as_bytes());
                out.extend_from_slice(b",\"socket_id\":");
                push_json_str(out, socket_id);
                // Presence client events name their sender (as Pusher does; the reference does not).
                if let Some(u) = user_id {
                    out.extend_from_slice(b",\"user_id\":");
                    push_json_str(out, u);
                }
            }
            WebhookEvent::CacheMiss { .. } => out.extend_from_slice(b",\"data\":\"{}\""),
            WebhookEvent::SubscriptionCount { count, .. } => {
                out.extend_from_slice(format!(",\"subscription_count\":{count}").as_bytes());
            }
            WebhookEvent::ChannelOccupied { .. } | WebhookEvent::ChannelVacated { .. } => {}
        }
        out.push(b'}');
    }
}

/// The request body: `{"time_ms":..,"events":[..]}` (`docs/protocol/http-api.md#webhook-requests`).
pub fn payload<'a>(time_ms: u64, events: impl IntoIterator<Item = &'a WebhookEvent>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(format!("{{\"time_ms\":{time_ms},\"events\":[").as_bytes());
    for (i, e) in events.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        e.write_json(&mut out);
    }
    out.extend_from_slice(b"]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_shape_and_signature() {
        let events = [WebhookEvent::ChannelOccupied { channel: "orders".into() }];
        let body = payload(1_700_000_000_000, &events);
        assert_eq!(body, br#"{"time_ms":1700000000000,"events":[{"name":"channel_occupied","channel":"orders"}]}"#);
        // The test vector of `docs/protocol/http-api.md#webhook-requests` for this body.
        assert_eq!(
            crate::auth::sign("app-secret", &body),
            "c1b112fcc5fc333a8453bb4b62c1a43094f2126d3c3f4ed442a92f5cda54f8e4"
        );
        let ce = WebhookEvent::ClientEvent {
            channel: "presence-r".into(),
            event: "client-x".into(),
            data: r#"{"a":"\"q\""}"#.into(),
            socket_id: "1.2".into(),
            user_id: Some("u\"1".into()),
        };
        let all = [
            ce,
            WebhookEvent::MemberRemoved { channel: "presence-r".into(), user_id: "7".into() },
            WebhookEvent::CacheMiss { channel: "cache-x".into() },
            WebhookEvent::SubscriptionCount { channel: "c".into(), count: 3 },
        ];
        let v: serde_json::Value = serde_json::from_slice(&payload(5, &all)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time_ms": 5, "events": [
                {"name": "client_event", "channel": "presence-r", "event": "client-x", "data": {"a": "\"q\""},
                 "socket_id": "1.2", "user_id": "u\"1"},
                {"name": "member_removed", "channel": "presence-r", "user_id": "7"},
                {"name": "cache_miss", "channel": "cache-x", "data": "{}"},
                {"name": "subscription_count", "channel": "c", "subscription_count": 3},
            ]})
        );
    }
}
