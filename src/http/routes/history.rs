//! `GET /apps/{id}/channels/{name}/history` (`docs/protocol/v2.md#http-history`), read
//! straight from the store of the channel's owner, and the operator's controls
//! (`docs/protocol/v2.md#history-operator-endpoints`), which go through the owner.

use super::super::response::{ApiError, Response};
use crate::config::AppIdx;
use crate::protocol::history::{page_json, Counted, HistoryParams};
use crate::protocol::operator::{self, StreamDescription};
use crate::shard::channel::operator::{ChangeFailure, HistoryPurge, HistoryReset, HistoryState};
use crate::shard::Shard;
use std::rc::Rc;
use storage::{Direction, HistoryPage, HistoryQuery, HistoryView, StorageError, Store};

pub async fn history(
    shard: &Rc<Shard>,
    app_idx: AppIdx,
    channel: &str,
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let app = shard.ctx.apps.get(app_idx);
    let Some(store) = shard.owner_store(app_idx, channel) else {
        return Err(ApiError::history_disabled());
    };
    app.validate_channel(channel).map_err(|e| ApiError::invalid_input(e.to_string()))?;
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
        view: HistoryView::Latest,
    };
    let page = read_page(store, q).await?;
    Ok(Response::json(200, page_json(channel, &page, direction, limit, &params.bounds, None)))
}

/// A page of a stream's history; a cursor the store refuses is the client's error.
pub(super) async fn read_page(store: &Store, query: HistoryQuery) -> Result<HistoryPage, ApiError> {
    // Crosses to the owner shard's store thread; no executor is involved in the read.
    store.read_history(query).await.map_err(|e| match e {
        StorageError::Cursor(c) => ApiError::invalid_input(c.to_string()),
        other => ApiError::storage(other.to_string()),
    })
}

/// The owner that holds `channel`'s history, once the request may use it.
fn operator_target(shard: &Shard, app: AppIdx, channel: &str) -> Result<usize, ApiError> {
    if shard.owner_store(app, channel).is_none() {
        return Err(ApiError::history_disabled());
    }
    shard.ctx.apps.get(app).validate_channel(channel).map_err(|e| ApiError::invalid_input(e.to_string()))?;
    Ok(shard.channel_owner(app, channel))
}

/// `GET …/history/state`.
pub async fn state(shard: &Rc<Shard>, app: AppIdx, channel: &str) -> Result<Response, ApiError> {
    let owner = operator_target(shard, app, channel)?;
    let view = shard.invoke_on(owner, HistoryState { app, channel: channel.into() }).await?;
    let view = view.map_err(|e| ApiError::storage(e.to_string()))?;
    let stream = StreamDescription::new(&view.stream_id, view.next_serial, view.stored.as_ref(), Counted::Messages);
    Ok(Response::json(200, operator::state_json(channel, &stream)))
}

impl From<ChangeFailure> for ApiError {
    fn from(e: ChangeFailure) -> ApiError {
        match e {
            ChangeFailure::Storage(e) => ApiError::storage(e.to_string()),
            ChangeFailure::Backplane(why) => ApiError::new(503, "backplane_unavailable", why),
        }
    }
}

/// `POST …/history/reset` (`purge: None`: a new stream id, the old stream's history purged) and
/// `POST …/history/purge` (retained rows removed by mode; stream id and serials kept).
pub async fn change(
    shard: &Rc<Shard>,
    app: AppIdx,
    channel: &str,
    body: &sonic_rs::Value,
    purge: bool,
) -> Result<Response, ApiError> {
    let owner = operator_target(shard, app, channel)?;
    let operation = if purge { "purge" } else { "reset" };
    let confirmed = operator::confirmation(body, channel, operation).map_err(ApiError::invalid_input)?;
    let mode = purge.then(|| operator::purge_mode(body)).transpose().map_err(ApiError::invalid_input)?;
    let purged = match mode {
        Some(mode) => shard
            .invoke_on(owner, HistoryPurge { app, channel: channel.into(), mode })
            .await??
            .ok_or_else(|| ApiError::not_found(format!("Channel {channel} has no history to purge")))?,
        None => shard.invoke_on(owner, HistoryReset { app, channel: channel.into() }).await??,
    };
    let app_id = shard.ctx.apps.get(app).id.as_str();
    log::warn!(app = app_id, channel = channel, operation = operation, reason = confirmed.reason.as_str(); "history changed by the operator");
    let meta = &purged.meta;
    let stream = StreamDescription::new(&meta.stream_id, meta.next_serial, Some(meta), Counted::Messages);
    Ok(Response::json(200, operator::done_json(channel, &confirmed, mode, &purged, &stream, Counted::Messages)))
}
