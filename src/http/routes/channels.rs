//! `GET /apps/{id}/channels`, `GET /apps/{id}/channels/{name}` and `.../users`
//! (`docs/protocol/http-api.md#channel-information`): occupancy as each channel's owner reports it.

use super::super::response::{ApiError, Response};
use super::events::Info;
use crate::config::AppIdx;
use crate::protocol::channel::{self, Kind};
use crate::protocol::outbound::{push_json_str, Encoding};
use crate::shard::channel::info::{ChannelInfo, ListChannels};
use crate::shard::channel::presence::PresenceUsers;
use crate::shard::channel::Occupancy;
use crate::shard::route;
use crate::shard::Shard;
use std::rc::Rc;
use std::sync::Arc;

/// Asks every shard for the occupied channels it owns.
async fn gather_channels(shard: &Rc<Shard>, app: AppIdx, prefix: &str) -> Result<Vec<(Arc<str>, Occupancy)>, ApiError> {
    let lists = route::all(shard.invoke_on_all(ListChannels { app, prefix: prefix.into() })).await?;
    let mut all: Vec<_> = lists.into_iter().flatten().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(all)
}

pub async fn channels(shard: &Rc<Shard>, app: AppIdx, prefix: &str, info: Option<&str>) -> Result<Response, ApiError> {
    let list = gather_channels(shard, app, prefix).await?;
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
                continue; // `info` given but nothing it names applies
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

pub async fn channel(shard: &Rc<Shard>, app_idx: AppIdx, name: &str, info: Option<&str>) -> Result<Response, ApiError> {
    let app = shard.ctx.apps.get(app_idx);
    app.validate_channel(name).map_err(|e| ApiError::invalid_input(e.to_string()))?;
    let ty = channel::channel_type(name);
    let tokens: Vec<&str> = info.map(|i| i.split(',').map(str::trim).collect()).unwrap_or_default();
    if tokens.contains(&"user_count") && ty.kind != Kind::Presence {
        return Err(ApiError::invalid_input("user_count is only available for presence channels"));
    }
    let owner = shard.channel_owner(app_idx, name);
    let answer = shard.invoke_on(owner, ChannelInfo { app: app_idx, channel: name.into() }).await?;
    let (occ, cache) = (answer.occupancy, answer.cache);
    let mut body = format!("{{\"occupied\":{}", occ.subscription_count > 0).into_bytes();
    if tokens.contains(&"subscription_count") {
        body.extend_from_slice(format!(",\"subscription_count\":{}", occ.subscription_count).as_bytes());
    }
    if tokens.contains(&"user_count") {
        body.extend_from_slice(format!(",\"user_count\":{}", occ.user_count.unwrap_or(0)).as_bytes());
    }
    if let (true, Some((payload, ttl))) = (tokens.contains(&"cache") && ty.cache, cache) {
        body.extend_from_slice(b",\"cache\":{\"data\":");
        let v1 = payload.payload(Encoding::V1Json).map_or(&[][..], |p| p.as_slice());
        push_json_str(&mut body, std::str::from_utf8(v1).unwrap_or_default());
        body.extend_from_slice(format!(",\"ttl\":{ttl}}}").as_bytes());
    }
    body.push(b'}');
    Ok(Response::json(200, body))
}

pub async fn users(shard: &Rc<Shard>, app_idx: AppIdx, name: &str) -> Result<Response, ApiError> {
    let app = shard.ctx.apps.get(app_idx);
    app.validate_channel(name).map_err(|e| ApiError::invalid_input(e.to_string()))?;
    if channel::channel_type(name).kind != Kind::Presence {
        return Err(ApiError::invalid_input("Only presence channels support this endpoint"));
    }
    let owner = shard.channel_owner(app_idx, name);
    let users = shard.invoke_on(owner, PresenceUsers { app: app_idx, channel: name.into() }).await?;
    let mut body = b"{\"users\":[".to_vec();
    for (i, u) in users.iter().enumerate() {
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
