//! HTTP routes: the signed REST API under `/apps/{id}/` (spec 01 §8) and the health
//! endpoints. Publishes and queries go to the owner shard of each channel over the mesh.

use super::request::{path_decode, query_pairs, Request};
use super::response::{ApiError, Response};
use super::rest_auth;
use crate::apps::{App, AppIdx};
use crate::protocol::channel::{self, Kind};
use crate::protocol::history::{page_json, HistoryParams};
use crate::protocol::outbound::{self, push_json_str, Data};
use crate::config::Idempotency;
use crate::protocol::ProtocolError;
use crate::shard::call::expect_reply;
use crate::shard::idempotency::{self, Space, Taken};
use crate::shard::msg::{ChannelEvent, EventData, Msg, Occupancy, Reply, UserAction};
use crate::metrics;
use crate::shard::limits::{self, RateKey};
use crate::shard::Shard;
use crate::socket_id::SocketId;
use serde::Deserialize;
use sonic_rs::{JsonContainerTrait, JsonType, JsonValueTrait, LazyValue};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use storage::{Direction, HistoryQuery, StorageError};

pub async fn handle(shard: &Rc<Shard>, req: Request) -> Response {
    let path = req.path.clone();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method.as_str();
    let result = match (method, segments.as_slice()) {
        ("GET", ["up"]) => return up(shard, None),
        ("GET", ["up", app_id]) => return up(shard, Some(app_id)),
        ("GET", ["live"]) => return Response::text(200, ""),
        ("GET", ["usage"]) if shard.ctx.config.usage_enabled => return usage(),
        (_, ["apps", app_id, rest @ ..]) => {
            let route = match (method, rest) {
                ("POST", ["events"]) => Route::Events,
                ("POST", ["batch_events"]) => Route::BatchEvents,
                ("GET", ["channels"]) => Route::Channels,
                ("GET", ["channels", name]) => Route::Channel(path_decode(name)),
                ("GET", ["channels", name, "users"]) => Route::Users(path_decode(name)),
                ("GET", ["channels", name, "history"]) => Route::History(path_decode(name)),
                ("POST", ["users", user, "terminate_connections"]) => {
                    Route::CloseUser(path_decode(user), ProtocolError::terminated_by_app())
                }
                ("POST", ["users", user, "force_reconnect"]) => {
                    Route::CloseUser(path_decode(user), ProtocolError::force_reconnect())
                }
                (_, ["events"] | ["batch_events"] | ["channels"] | ["channels", _] | ["channels", _, "users"])
                | (_, ["users", _, "terminate_connections" | "force_reconnect"]) => {
                    return Response::text(405, "405 METHOD NOT ALLOWED")
                }
                _ => return not_found(),
            };
            api(shard, &req, app_id, route).await
        }
        _ => return not_found(),
    };
    match result {
        Ok(r) => r,
        Err(e) => e.into(),
    }
}

fn not_found() -> Response {
    Response::text(404, "404 NOT FOUND")
}

enum Route {
    Events,
    BatchEvents,
    Channels,
    Channel(String),
    Users(String),
    History(String),
    CloseUser(String, ProtocolError),
}

async fn api(shard: &Rc<Shard>, req: &Request, app_id: &str, route: Route) -> Result<Response, ApiError> {
    let app_idx = rest_auth::authenticate(&shard.ctx.apps, req, app_id)?;
    // After authentication, so that nobody without the secret can spend an app's quota.
    let rl = &shard.ctx.config.rate_limiter;
    if rl.enabled {
        let c = shard.counters(Some(app_idx));
        c.rate_limit_checks[metrics::API_RATE].inc();
        let verdict = limits::check(shard, RateKey::Api(app_idx), rl.api).await;
        if !verdict.allowed {
            c.rate_limit_triggered[metrics::API_RATE].inc();
            return Err(ApiError::rate_limited("API requests for this app", &verdict, rl.api.window));
        }
    }
    let query = query_pairs(&req.query);
    let param = |name: &str| query.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match route {
        Route::Events => {
            let body = json_body(req)?;
            let app = shard.ctx.apps.get(app_idx);
            let key = idempotency_key(&shard.ctx.config.idempotency, app, Some(&body), req.header("x-idempotency-key"))?;
            // The claim comes before validation (spec 01 §9): a retry of a stored publish gets
            // the stored body whatever it carries. A failed publish drops `held`, freeing the key.
            let held = match claim(shard, app_idx, Space::Event, key).await? {
                Claimed::Proceed(h) => h,
                Claimed::Repeat(stored) => return Ok(stored),
            };
            let event = EventRequest::parse(app, &body)?;
            let published = publish(shard, app_idx, &event).await?;
            let response = Response::json(200, publish_response(event.info, &published));
            if let Some(h) = held {
                h.keep(&response.body).await;
            }
            Ok(response)
        }
        Route::BatchEvents => batch(shard, app_idx, req).await,
        Route::Channels => channels(shard, app_idx, param("filter_by_prefix").unwrap_or(""), param("info")).await,
        Route::Channel(name) => channel_info(shard, app_idx, &name, param("info")).await,
        Route::Users(name) => users(shard, app_idx, &name).await,
        Route::History(name) => history(shard, app_idx, &name, &query).await,
        Route::CloseUser(user, err) => {
            let user_ids = Arc::new(vec![user]);
            for s in 0..shard.shards {
                shard.mesh.send(
                    s,
                    Msg::ToUsers { app: app_idx, user_ids: user_ids.clone(), action: UserAction::Close(err.clone()) },
                );
            }
            Ok(Response::json(200, "{\"ok\":true}"))
        }
    }
}

/// The body of a successful single publish (spec 01 §8.4).
fn publish_response(info: Option<Info>, published: &[(String, Occupancy)]) -> Vec<u8> {
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

/// The idempotency key of a publish and its window, if the app uses idempotency (spec 01 §9):
/// the body's `idempotency_key`, else `header`.
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

/// Claims a whole request's key, waiting briefly while another request holds it (spec 01 §9).
async fn claim(shard: &Rc<Shard>, app: AppIdx, space: Space, key: Option<(&str, Duration)>) -> Result<Claimed, ApiError> {
    let Some((key, ttl)) = key else { return Ok(Claimed::Proceed(None)) };
    match idempotency::take(shard, app, space, key, ttl, true).await {
        Taken::Held(h) => Ok(Claimed::Proceed(Some(h))),
        Taken::Stored(stored) => Ok(Claimed::Repeat(Response::json(200, stored.as_bytes()))),
        Taken::InProgress => Err(ApiError::backpressure()),
    }
}

/// A JSON request body: `Content-Type: application/json` (415), well-formed JSON (400).
fn json_body(req: &Request) -> Result<sonic_rs::Value, ApiError> {
    let ct = req.header("content-type").unwrap_or("");
    if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Err(ApiError::unsupported_media_type());
    }
    sonic_rs::from_slice(&req.body).map_err(|e| ApiError::invalid_input(format!("Invalid JSON body: {e}")))
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
    ephemeral: bool,
}

#[derive(Clone, Copy, Default)]
struct Info {
    subscription_count: bool,
    user_count: bool,
}

impl Info {
    fn parse(s: &str) -> Info {
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
    fn parse(app: &App, v: &sonic_rs::Value) -> Result<EventRequest, ApiError> {
        let text = v.to_string();
        let raw: RawEvent = sonic_rs::from_str(&text).map_err(|e| ApiError::unprocessable(format!("Invalid event: {e}")))?;
        let limits = &app.limits;
        let name = raw.name.filter(|n| !n.is_empty()).ok_or_else(|| ApiError::invalid_input("Event name is required"))?;
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
            channel::validate(c, limits.max_channel_name_length, &app.namespaces)
                .map_err(|e| ApiError::invalid_input(e.message))?;
        }
        let extras = match &raw.extras {
            Some(x) if x.get_type() == JsonType::Object => Some(x.as_raw_str().to_owned()),
            Some(x) if x.get_type() == JsonType::Null => None,
            Some(_) => return Err(ApiError::invalid_input("extras must be a JSON object")),
            None => None,
        };
        let ephemeral = extras.as_deref().is_some_and(|x| {
            sonic_rs::get_from_str(x, ["ephemeral"]).is_ok_and(|v| v.as_raw_str() == "true")
        });
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
            ephemeral,
        })
    }
}

/// Publishes to every channel of the event, each through its owner, and returns the
/// occupancy each owner reported (user channels report none). Fails if any owner could not
/// store its message (the others were delivered).
async fn publish(shard: &Rc<Shard>, app: AppIdx, ev: &EventRequest) -> Result<Vec<(String, Occupancy)>, ApiError> {
    let event = Arc::new(ChannelEvent {
        name: ev.name.clone(),
        data: EventData::Str(ev.data.clone()),
        user_id: None,
        message_id: ev.message_id.clone(),
        extras: ev.extras.clone(),
        ephemeral: ev.ephemeral,
    });
    let mut waits = Vec::new();
    for name in &ev.channels {
        if let Some(user) = channel::user_channel_target(name) {
            let payload = Arc::new(outbound::event(&ev.name, Some(name), Data::Str(&ev.data), None));
            let user_ids = Arc::new(vec![user.to_owned()]);
            for s in 0..shard.shards {
                shard.mesh.send(
                    s,
                    Msg::ToUsers {
                        app,
                        user_ids: user_ids.clone(),
                        action: UserAction::Deliver { payload: payload.clone(), exclude: ev.exclude },
                    },
                );
            }
            continue;
        }
        let (reply_to, done) = expect_reply(shard, |_, r| match r {
            Reply::Published(o) => Ok(o),
            Reply::Failed(why) => Err(ApiError::storage(why)),
            _ => Err(ApiError::internal()),
        });
        let owner = shard.channel_owner(app, name);
        shard.mesh.send(
            owner,
            Msg::Publish {
                reply_to: Some(reply_to),
                app,
                channel: name.as_str().into(),
                event: event.clone(),
                exclude: ev.exclude,
                from_http: true,
            },
        );
        waits.push((name, done));
    }
    let mut out = Vec::new();
    let mut failure = None;
    for (name, done) in waits {
        match done.await {
            Ok(o) => out.push((name.clone(), o)),
            Err(e) => failure = Some(e),
        }
    }
    failure.map_or(Ok(out), Err)
}

/// `GET /apps/{id}/channels/{channel}/history` (spec 02 §5.1), read straight from the store
/// of the channel's owner.
async fn history(shard: &Rc<Shard>, app_idx: AppIdx, channel: &str, query: &[(String, String)]) -> Result<Response, ApiError> {
    let app = shard.ctx.apps.get(app_idx);
    let Some(store) = shard.owner_store(app_idx, channel) else {
        return Err(ApiError::feature_disabled("Durable history is not enabled on this server"));
    };
    channel::validate(channel, app.limits.max_channel_name_length, &app.namespaces)
        .map_err(|e| ApiError::invalid_input(e.message))?;
    let params = HistoryParams::from_query(query).map_err(ApiError::invalid_input)?;
    let max = shard.ctx.config.history.max_page_size;
    let limit = params.limit.unwrap_or(max).min(max);
    let direction = params.direction.unwrap_or(Direction::NewestFirst);
    let q = HistoryQuery {
        app: app.id.clone(),
        channel: channel.to_owned(),
        limit,
        direction,
        bounds: params.bounds,
        cursor: params.cursor,
    };
    // Crosses to the owner shard's store thread; no executor is involved in the read.
    let page = store.read_history(q).await.map_err(|e| match e {
        StorageError::Cursor(c) => ApiError::invalid_input(c.to_string()),
        other => ApiError::storage(other.to_string()),
    })?;
    Ok(Response::json(200, page_json(&page, direction, limit, &params.bounds, None)))
}

impl Info {
    /// One channel's entry in a publish response: acknowledgement id plus what was asked.
    fn describe(&self, occ: &Occupancy) -> String {
        let mut s = format!("{{\"acknowledgement_id\":\"{}\"", outbound::uuid_v4());
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

async fn batch(shard: &Rc<Shard>, app_idx: AppIdx, req: &Request) -> Result<Response, ApiError> {
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
    let events = items.iter().map(|v| EventRequest::parse(app, v)).collect::<Result<Vec<_>, _>>()?;
    let cfg = &shard.ctx.config.idempotency;
    let item_keys = items.iter().map(|v| idempotency_key(cfg, app, Some(v), None)).collect::<Result<Vec<_>, _>>()?;
    // The header names the whole batch, in a key space of its own (spec 01 §9).
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
            Some((key, ttl)) => match idempotency::take(shard, app_idx, Space::Event, key, ttl, false).await {
                Taken::Held(h) => Some(h),
                Taken::Stored(_) | Taken::InProgress => {
                    entries.push("{}".to_owned());
                    continue;
                }
            },
            None => None,
        };
        let published = publish(shard, app_idx, ev).await?;
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

/// Asks every shard for the occupied channels it owns.
async fn gather_channels(shard: &Rc<Shard>, app: AppIdx, prefix: &str) -> Vec<(Arc<str>, Occupancy)> {
    let prefix: Arc<str> = prefix.into();
    let mut waits = Vec::new();
    for s in 0..shard.shards {
        let (reply_to, done) = expect_reply(shard, |_, r| match r {
            Reply::Channels(list) => list,
            _ => Vec::new(),
        });
        shard.mesh.send(s, Msg::ListChannels { reply_to, app, prefix: prefix.clone() });
        waits.push(done);
    }
    let mut all = Vec::new();
    for w in waits {
        all.extend(w.await);
    }
    all.sort_by(|a, b| a.0.cmp(&b.0));
    all
}

async fn channels(shard: &Rc<Shard>, app: AppIdx, prefix: &str, info: Option<&str>) -> Result<Response, ApiError> {
    let list = gather_channels(shard, app, prefix).await;
    let want = info.map(Info::parse);
    if let Some(Info { user_count: true, .. }) = want {
        let non_presence = list.iter().any(|(n, _)| channel::channel_type(n).kind != Kind::Presence);
        if non_presence && !prefix.starts_with("presence-") {
            return Err(ApiError::invalid_input(
                "user_count is only available for presence channels. Use filter_by_prefix=presence-",
            ));
        }
    }
    let mut body = b"{\"channels\":{".to_vec();
    let mut first = true;
    for (name, occ) in &list {
        let mut fields = Vec::new();
        if let Some(w) = want {
            if w.subscription_count {
                fields.push(format!("\"subscription_count\":{}", occ.subscription_count));
            }
            if let (true, Some(u)) = (w.user_count, occ.user_count) {
                fields.push(format!("\"user_count\":{u}"));
            }
            if fields.is_empty() {
                continue; // `info` given but nothing it names applies (spec 01 §8.6)
            }
        }
        if !first {
            body.push(b',');
        }
        first = false;
        push_json_str(&mut body, name);
        body.extend_from_slice(format!(":{{{}}}", fields.join(",")).as_bytes());
    }
    body.extend_from_slice(b"}}");
    Ok(Response::json(200, body))
}

async fn channel_info(shard: &Rc<Shard>, app_idx: AppIdx, name: &str, info: Option<&str>) -> Result<Response, ApiError> {
    let app = shard.ctx.apps.get(app_idx);
    channel::validate(name, app.limits.max_channel_name_length, &app.namespaces)
        .map_err(|e| ApiError::invalid_input(e.message))?;
    let ty = channel::channel_type(name);
    let tokens: Vec<&str> = info.map(|i| i.split(',').map(str::trim).collect()).unwrap_or_default();
    if tokens.contains(&"user_count") && ty.kind != Kind::Presence {
        return Err(ApiError::invalid_input("user_count is only available for presence channels"));
    }
    let (reply_to, done) = expect_reply(shard, |_, r| match r {
        Reply::ChannelInfo { occupancy, cache } => (occupancy, cache),
        _ => (Occupancy::default(), None),
    });
    shard.mesh.send(shard.channel_owner(app_idx, name), Msg::ChannelInfo { reply_to, app: app_idx, channel: name.into() });
    let (occ, cache) = done.await;
    let mut body = format!("{{\"occupied\":{}", occ.subscription_count > 0).into_bytes();
    if tokens.contains(&"subscription_count") {
        body.extend_from_slice(format!(",\"subscription_count\":{}", occ.subscription_count).as_bytes());
    }
    if tokens.contains(&"user_count") {
        body.extend_from_slice(format!(",\"user_count\":{}", occ.user_count.unwrap_or(0)).as_bytes());
    }
    if let (true, Some((payload, ttl))) = (tokens.contains(&"cache") && ty.cache, cache) {
        body.extend_from_slice(b",\"cache\":{\"data\":");
        push_json_str(&mut body, std::str::from_utf8(&payload.v1).unwrap_or_default());
        body.extend_from_slice(format!(",\"ttl\":{ttl}}}").as_bytes());
    }
    body.push(b'}');
    Ok(Response::json(200, body))
}

async fn users(shard: &Rc<Shard>, app_idx: AppIdx, name: &str) -> Result<Response, ApiError> {
    let app = shard.ctx.apps.get(app_idx);
    channel::validate(name, app.limits.max_channel_name_length, &app.namespaces)
        .map_err(|e| ApiError::invalid_input(e.message))?;
    if channel::channel_type(name).kind != Kind::Presence {
        return Err(ApiError::invalid_input("Only presence channels support this endpoint"));
    }
    let (reply_to, done) = expect_reply(shard, |_, r| match r {
        Reply::Users(u) => u,
        _ => Vec::new(),
    });
    shard.mesh.send(shard.channel_owner(app_idx, name), Msg::PresenceUsers { reply_to, app: app_idx, channel: name.into() });
    let mut body = b"{\"users\":[".to_vec();
    for (i, u) in done.await.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"id\":");
        push_json_str(&mut body, u);
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
    Ok(Response::json(200, body))
}

/// `GET /up` and `GET /up/{app_id}` (spec 01 §8.10).
fn up(shard: &Shard, app_id: Option<&str>) -> Response {
    if shard.draining.get() {
        return Response::text(503, "DRAINING");
    }
    let apps = &shard.ctx.apps;
    let ok = match app_id {
        None => !apps.is_empty(),
        Some(id) => match apps.by_id(id) {
            None => return Response::text(404, "NOT_FOUND"),
            Some(i) => apps.get(i).enabled,
        },
    };
    if ok {
        Response::text(200, "OK").header("X-Health-Check", "OK")
    } else {
        Response::text(503, "ERROR")
    }
}

/// `GET /usage`: the machine's memory, from /proc/meminfo.
fn usage() -> Response {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = field("MemTotal:");
    let free = field("MemAvailable:");
    let used = total.saturating_sub(free);
    let percent = if total > 0 { used as f64 * 100.0 / total as f64 } else { 0.0 };
    Response::json(
        200,
        format!("{{\"memory\":{{\"free\":{free},\"used\":{used},\"total\":{total},\"percent\":{percent:.2}}}}}"),
    )
}
