//! `GET /apps/{id}/channels/{name}/history` (`docs/protocol/v2.md#http-history`), read
//! straight from the store of the channel's owner.

use super::super::response::{ApiError, Response};
use crate::config::AppIdx;
use crate::protocol::history::{page_json, HistoryParams};
use crate::shard::Shard;
use std::rc::Rc;
use storage::{Direction, HistoryQuery, StorageError};

pub async fn history(
    shard: &Rc<Shard>,
    app_idx: AppIdx,
    channel: &str,
    query: &[(String, String)],
) -> Result<Response, ApiError> {
    let app = shard.ctx.apps.get(app_idx);
    let Some(store) = shard.owner_store(app_idx, channel) else {
        return Err(ApiError::feature_disabled("Durable history is not enabled on this server"));
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
    };
    // Crosses to the owner shard's store thread; no executor is involved in the read.
    let page = store.read_history(q).await.map_err(|e| match e {
        StorageError::Cursor(c) => ApiError::invalid_input(c.to_string()),
        other => ApiError::storage(other.to_string()),
    })?;
    Ok(Response::json(200, page_json(&page, direction, limit, &params.bounds, None)))
}
