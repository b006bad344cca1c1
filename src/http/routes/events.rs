//! `POST /apps/{id}/events` and `POST /apps/{id}/batch_events`
//! (`docs/protocol/http-api.md#publishing-an-event`): validation, idempotency, and the publish
//! itself through `crate::publish`.

use super::super::request::Request;
use super::super::response::{ApiError, Response};
use super::json_body;
use crate::config::{AiTransport, App, AppIdx, Idempotency};
use crate::protocol::ai::{self, AiError};
use crate::protocol::filter::Tags;
use crate::protocol::outbound::{self, push_json_str};
use crate::publish::publish;
use crate::shard::channel::broadcast::{ChannelEvent, EventData};
use crate::shard::channel::Done;
use crate::shard::idempotency::{self, Space, Taken};
use crate::shard::identity::SocketIdentity;
use crate::shard::Shard;
use crate::socket_id::SocketId;
use serde::Deserialize;
use sonic_rs::{JsonContainerTrait, JsonType, JsonValueTrait, LazyValue};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// `POST /apps/{id}/events`.
pub async fn events(shard: &Rc<Shard>, app_idx: AppIdx, req: &Request) -> Result<Response, ApiError> {
    let body = json_body(req)?;
    let app = shard.ctx.apps.get(app_idx);
    let key = idempotency_key(&shard.ctx.config.idempotency, app, Some(&body), req.header("x-idempotency-key"))?;
    // The claim comes before validation: a retry of a stored publish gets the stored body
    // whatever it carries. A failed publish drops `held`, freeing the key.
    let held = match claim(shard, app_idx, Space::Event, key).await? {
        Claimed::Proceed(h) => h,
        Claimed::Repeat(stored) => return Ok(stored),
    };
    let event = EventRequest::parse(app, &shard.ctx.config.ai_transport, &body)?;
    let creator = creator(shard, event.exclude).await?;
    let published = publish(shard, app_idx, &event.channels, event.to_channel_event(creator), event.exclude).await?;
    let response = Response::json(200, publish_response(event.info, &published));
    if let Some(h) = held {
        h.keep(&response.body).await;
    }
    Ok(response)
}

/// The signed-in user of the publish's `socket_id`, which a versioned create records as its
/// creator (`docs/protocol/v2.md#actor-binding`); asked only when creates are versioned.
async fn creator(shard: &Rc<Shard>, socket: Option<SocketId>) -> Result<Option<Arc<str>>, ApiError> {
    let Some(id) = socket.filter(|_| shard.ctx.config.versioned.enabled) else { return Ok(None) };
    // Crosses to the shard that holds the socket.
    let identity = shard.invoke_on(id.shard(shard.shards), SocketIdentity { socket_id: id }).await?;
    Ok(identity.map(|i| i.user_id))
}

/// The body of a successful single publish.
fn publish_response(info: Option<Info>, published: &[(String, Done)]) -> Vec<u8> {
    let Some(info) = info else { return b"{\"ok\":true}".to_vec() };
    let mut body = b"{\"channels\":{".to_vec();
    for (i, (name, occ)) in published.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        push_json_str(&mut body, name);
        body.push(b':');
        body.extend_from_slice(info.describe(occ).as_bytes());
    }
    body.extend_from_slice(b"}}");
    body
}

/// The idempotency key of a publish and its window, if the app uses idempotency: the body's
/// `idempotency_key`, else `header`.
fn idempotency_key<'a>(
    cfg: &Idempotency,
    app: &App,
    body: Option<&'a sonic_rs::Value>,
    header: Option<&'a str>,
) -> Result<Option<(&'a str, Duration)>, ApiError> {
    if !app.idempotency.enabled.unwrap_or(cfg.enabled) {
        return Ok(None);
    }
    let key = match body.and_then(|b| b.get("idempotency_key")) {
        Some(v) if v.is_null() => header,
        Some(v) => Some(v.as_str().ok_or_else(|| ApiError::invalid_input("Idempotency key must be a string"))?),
        None => header,
    };
    let Some(key) = key else { return Ok(None) };
    if key.is_empty() {
        return Err(ApiError::invalid_input("Idempotency key must not be empty"));
    }
    if key.chars().count() > cfg.max_key_length {
        return Err(ApiError::invalid_input(format!(
            "Idempotency key exceeds maximum length of {} characters",
            cfg.max_key_length
        )));
    }
    let ttl = app.idempotency.ttl_seconds.map_or(cfg.ttl, Duration::from_secs);
    Ok(Some((key, ttl)))
}

/// What to do with a request after claiming its idempotency key.
enum Claimed {
    /// Publish; the key (if any) is held until the response is kept or the request fails.
    Proceed(Option<idempotency::Held>),
    /// An earlier request with this key succeeded: answer with its stored response.
    Repeat(Response),
}

/// Claims a whole request's key, waiting briefly while another request holds it.
async fn claim(
    shard: &Rc<Shard>,
    app: AppIdx,
    space: Space,
    key: Option<(&str, Duration)>,
) -> Result<Claimed, ApiError> {
    let Some((key, ttl)) = key else { return Ok(Claimed::Proceed(None)) };
    match idempotency::take(shard, app, space, key, ttl, true).await? {
        Taken::Held(h) => Ok(Claimed::Proceed(Some(h))),
        Taken::Stored(stored) => Ok(Claimed::Repeat(Response::json(200, stored.as_bytes()))),
        Taken::InProgress => Err(ApiError::backpressure()),
    }
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    name: Option<String>,
    #[serde(borrow)]
    data: Option<LazyValue<'a>>,
    channel: Option<String>,
    channels: Option<Vec<String>>,
    socket_id: Option<String>,
    info: Option<String>,
    message_id: Option<String>,
    #[serde(borrow)]
    extras: Option<LazyValue<'a>>,
    tags: Option<sonic_rs::Value>,
    delta: Option<bool>,
}

/// A validated publish: everything is checked before anything is sent (so a bad channel in
/// the list publishes nothing).
struct EventRequest {
    name: String,
    data: String,
    channels: Vec<String>,
    exclude: Option<SocketId>,
    info: Option<Info>,
    message_id: Option<String>,
    /// `extras` as raw JSON (an object), forwarded to V2 subscribers only.
    extras: Option<String>,
    /// Top-level `tags` (`docs/protocol/v2.md#subscription-filters`).
    tags: Option<Tags>,
    /// `delta: false`: never sent as a delta.
    no_delta: bool,
    ephemeral: bool,
    /// `extras.ai.transport.status` is `streaming`.
    opens_stream: bool,
}

#[derive(Clone, Copy, Default)]
pub(super) struct Info {
    pub(super) subscription_count: bool,
    pub(super) user_count: bool,
}

impl Info {
    pub(super) fn parse(s: &str) -> Info {
        let mut i = Info::default();
        for t in s.split(',').map(str::trim) {
            match t {
                "subscription_count" => i.subscription_count = true,
                "user_count" => i.user_count = true,
                _ => {}
            }
        }
        i
    }
}

impl EventRequest {
    /// The event as its owners publish it.
    fn to_channel_event(&self, creator: Option<Arc<str>>) -> Arc<ChannelEvent> {
        Arc::new(ChannelEvent {
            name: self.name.clone(),
            data: EventData::Str(self.data.clone()),
            user_id: None,
            creator,
            message_id: self.message_id.clone(),
            extras: self.extras.clone(),
            tags: self.tags.clone(),
            no_delta: self.no_delta,
            ephemeral: self.ephemeral,
            opens_stream: self.opens_stream,
        })
    }

    fn parse(app: &App, ai: &AiTransport, v: &sonic_rs::Value) -> Result<EventRequest, ApiError> {
        let text = v.to_string();
        let raw: RawEvent =
            sonic_rs::from_str(&text).map_err(|e| ApiError::unprocessable(format!("Invalid event: {e}")))?;
        let limits = &app.limits;
        let name =
            raw.name.filter(|n| !n.is_empty()).ok_or_else(|| ApiError::invalid_input("Event name is required"))?;
        if name.len() > limits.max_event_name_length {
            return Err(ApiError::limit_exceeded(format!(
                "Event name exceeds maximum length of {}",
                limits.max_event_name_length
            )));
        }
        // Data is delivered as a string: non-strings are serialised, absent is "null".
        let data = match &raw.data {
            None => "null".to_owned(),
            Some(d) if d.get_type() == JsonType::String => d.as_str().unwrap_or_default().to_owned(),
            Some(d) => d.as_raw_str().to_owned(),
        };
        if data.len() > limits.max_event_payload_bytes {
            return Err(ApiError::payload_too_large(format!(
                "Event payload size ({} bytes) exceeds limit ({}KB)",
                data.len(),
                limits.max_event_payload_bytes / 1024
            )));
        }
        let channels = match (raw.channels, raw.channel) {
            (Some(list), _) if list.is_empty() => return Err(ApiError::missing_channel_info()),
            (Some(list), _) => list,
            (None, Some(c)) => vec![c],
            (None, None) => return Err(ApiError::missing_channel_info()),
        };
        if channels.len() > limits.max_event_channels_at_once {
            return Err(ApiError::limit_exceeded(format!(
                "Too many channels ({}); the limit is {}",
                channels.len(),
                limits.max_event_channels_at_once
            )));
        }
        for c in &channels {
            app.validate_channel(c).map_err(|e| ApiError::invalid_input(e.to_string()))?;
        }
        let extras = match &raw.extras {
            Some(x) if x.get_type() == JsonType::Object => Some(x.as_raw_str().to_owned()),
            Some(x) if x.get_type() == JsonType::Null => None,
            Some(_) => return Err(ApiError::invalid_input("extras must be a JSON object")),
            None => None,
        };
        let tags = match &raw.tags {
            Some(t) => Tags::parse(t).map_err(ApiError::invalid_input)?,
            None => None,
        };
        let ephemeral = extras
            .as_deref()
            .is_some_and(|x| sonic_rs::get_from_str(x, ["ephemeral"]).is_ok_and(|v| v.as_raw_str() == "true"));
        let opens_stream = check_ai(ai, &channels, &name, &data, raw.message_id.as_deref(), extras.as_deref())?;
        if raw.message_id.as_deref().is_some_and(|m| m.is_empty() || m.len() > 128) {
            return Err(ApiError::invalid_input("message_id must be 1 to 128 characters"));
        }
        Ok(EventRequest {
            name,
            data,
            channels,
            exclude: raw.socket_id.as_deref().and_then(SocketId::parse),
            info: raw.info.as_deref().map(Info::parse),
            message_id: raw.message_id,
            extras,
            tags,
            no_delta: raw.delta == Some(false),
            ephemeral,
            opens_stream,
        })
    }
}

/// The AI Transport rules of an HTTP publish (`docs/protocol/v2.md#ai-transport`): `ai-*`
/// events and `extras.ai` only on AI channels, where `extras.ai` is checked against the
/// registry, `message_id` is at most 64 bytes and data at most the accumulated limit. The app
/// is trusted, so its `*-client-id` values are taken as they are. Returns whether the message
/// opens a stream (`status` `streaming`).
fn check_ai(
    ai: &AiTransport,
    channels: &[String],
    name: &str,
    data: &str,
    message_id: Option<&str>,
    extras: Option<&str>,
) -> Result<bool, ApiError> {
    let on_ai_channel = channels.iter().filter(|c| ai.is_ai_channel(c)).count();
    if on_ai_channel < channels.len() && (ai::is_ai_event(name) || ai::has_ai(extras)) {
        let other = channels.iter().find(|c| !ai.is_ai_channel(c)).map_or("", String::as_str);
        return Err(AiError::not_permitted(format!("AI Transport is not enabled for channel {other}")).into());
    }
    if on_ai_channel == 0 {
        return Ok(false);
    }
    match message_id {
        Some("") => return Err(AiError::invalid("message_id must not be empty").into()),
        Some(m) if m.len() > ai::MAX_MESSAGE_ID_BYTES => {
            return Err(AiError::too_large(format!("message_id is over {} bytes", ai::MAX_MESSAGE_ID_BYTES)).into())
        }
        _ => {}
    }
    if data.len() > ai.max_accumulated_bytes {
        return Err(AiError::limit(format!("data is over {} bytes", ai.max_accumulated_bytes)).into());
    }
    let transport = ai::check_extras(extras, ai.header_limits)?;
    Ok(transport.is_some_and(|t| t.get("status") == Some("streaming")))
}

impl Info {
    /// One channel's entry in a publish response: acknowledgement id plus what was asked,
    /// and the serials of a versioned create.
    fn describe(&self, done: &Done) -> String {
        let occ = &done.occupancy;
        let mut s = format!("{{\"acknowledgement_id\":\"{}\"", outbound::uuid_v4());
        if let Some(version) = &done.version {
            s.push_str(&version.publish_fields());
        }
        if self.subscription_count {
            s.push_str(&format!(",\"subscription_count\":{}", occ.subscription_count));
        }
        if let (true, Some(users)) = (self.user_count, occ.user_count) {
            s.push_str(&format!(",\"user_count\":{users}"));
        }
        s.push('}');
        s
    }
}

/// `POST /apps/{id}/batch_events`.
pub async fn batch(shard: &Rc<Shard>, app_idx: AppIdx, req: &Request) -> Result<Response, ApiError> {
    let body = json_body(req)?;
    let app = shard.ctx.apps.get(app_idx);
    let items = body
        .get("batch")
        .and_then(|b| b.as_array())
        .ok_or_else(|| ApiError::unprocessable("Body must be {\"batch\": [events]}"))?;
    if items.len() > app.limits.max_event_batch_size {
        return Err(ApiError::limit_exceeded(format!(
            "Batch size ({}) exceeds limit ({})",
            items.len(),
            app.limits.max_event_batch_size
        )));
    }
    let ai = &shard.ctx.config.ai_transport;
    let events = items.iter().map(|v| EventRequest::parse(app, ai, v)).collect::<Result<Vec<_>, _>>()?;
    let cfg = &shard.ctx.config.idempotency;
    let item_keys = items.iter().map(|v| idempotency_key(cfg, app, Some(v), None)).collect::<Result<Vec<_>, _>>()?;
    // The header names the whole batch, in a key space of its own.
    let key = idempotency_key(cfg, app, None, req.header("x-idempotency-key"))?;
    let held = match claim(shard, app_idx, Space::Batch, key).await? {
        Claimed::Proceed(h) => h,
        Claimed::Repeat(stored) => return Ok(stored),
    };
    let any_info = events.iter().any(|e| e.info.is_some());
    let mut entries = Vec::new();
    for (ev, key) in events.iter().zip(item_keys) {
        // An item whose key is known (stored or in flight) is skipped with an empty entry.
        let item = match key {
            Some((key, ttl)) => match idempotency::take(shard, app_idx, Space::Event, key, ttl, false).await? {
                Taken::Held(h) => Some(h),
                Taken::Stored(_) | Taken::InProgress => {
                    entries.push("{}".to_owned());
                    continue;
                }
            },
            None => None,
        };
        let creator = creator(shard, ev.exclude).await?;
        let published = publish(shard, app_idx, &ev.channels, ev.to_channel_event(creator), ev.exclude).await?;
        if let Some(h) = item {
            h.keep(&publish_response(ev.info, &published)).await;
        }
        // Each entry describes the item's first channel.
        entries.push(match (ev.info, published.first()) {
            (Some(info), Some((_, occ))) => info.describe(occ),
            _ => "{}".to_owned(),
        });
    }
    let response = if any_info {
        Response::json(200, format!("{{\"batch\":[{}]}}", entries.join(",")))
    } else {
        Response::json(200, "{}")
    };
    if let Some(h) = held {
        h.keep(&response.body).await;
    }
    Ok(response)
}
