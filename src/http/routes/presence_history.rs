//! `GET /apps/{id}/channels/{name}/presence/history` with its `snapshot` and `state`, and
//! `POST …/presence/history/reset` (`docs/protocol/v2.md#presence-history`). Pages are read
//! straight from the store of the channel's owner; the owner tells the stream's id and health.

use super::super::response::{ApiError, Response};
use super::history::read_page;
use crate::config::AppIdx;
use crate::protocol::channel::{self, Kind};
use crate::protocol::history::{Counted, HistoryParams};
use crate::protocol::operator::{self, StreamDescription};
use crate::protocol::presence_history::{self as wire, Snapshot, SnapshotAt};
use crate::shard::channel::presence_log::{PresenceLogReset, PresenceLogState, PresenceLogView};
use crate::shard::Shard;
use std::rc::Rc;
use storage::{Bounds, Direction, HistoryQuery, HistoryView, Store};

/// Records read per store request while a snapshot replays them.
const SNAPSHOT_PAGE: usize = 1000;

/// The store and the owner's view of the channel's presence stream, once the request may
/// read them.
async fn target<'s>(
    shard: &'s Rc<Shard>,
    app: AppIdx,
    channel: &str,
) -> Result<(&'s Store, PresenceLogView), ApiError> {
    let a = shard.ctx.apps.get(app);
    a.validate_channel(channel).map_err(|e| ApiError::invalid_input(e.to_string()))?;
    if channel::channel_type(channel).kind != Kind::Presence {
        return Err(ApiError::invalid_input(format!("{channel} is not a presence channel")));
    }
    let store = shard.owner_store(app, channel).filter(|_| shard.ctx.config.presence_history.enabled);
    let Some(store) = store.filter(|_| a.presence_history_allowed(channel)) else {
        return Err(ApiError::feature_disabled(format!("Presence history is not enabled for {channel}")));
    };
    let owner = shard.channel_owner(app, channel);
    let view = shard.invoke_on(owner, PresenceLogState { app, channel: channel.into() }).await?;
    Ok((store, view))
}

fn query(
    shard: &Shard,
    app: AppIdx,
    channel: &str,
    limit: usize,
    direction: Direction,
    bounds: Bounds,
) -> HistoryQuery {
    HistoryQuery {
        app: shard.ctx.apps.get(app).id.clone(),
        channel: storage::presence_stream(channel),
        limit,
        direction,
        bounds,
        cursor: None,
        view: HistoryView::Raw,
    }
}

/// `GET …/presence/history`: the same parameters and cursors as channel history.
pub async fn history(
    shard: &Rc<Shard>,
    app: AppIdx,
    channel: &str,
    params: &[(String, String)],
) -> Result<Response, ApiError> {
    let (store, view) = target(shard, app, channel).await?;
    let params = HistoryParams::from_query(params).map_err(ApiError::invalid_input)?;
    let max = shard.ctx.config.presence_history.max_page_size;
    let limit = params.limit.unwrap_or(max).min(max);
    let direction = params.direction.unwrap_or(Direction::NewestFirst);
    let q = HistoryQuery { cursor: params.cursor, ..query(shard, app, channel, limit, direction, params.bounds) };
    let page = read_page(store, q).await?;
    let json = wire::page_json(&page, direction, limit, &params.bounds, &view.stream_id, view.degraded);
    Ok(Response::json(200, json))
}

/// `GET …/presence/history/snapshot`: who was present at `at_serial` and/or `at_time_ms`
/// (latest without either), replayed from the records. Without a time bound every record
/// from serial 1 must still be retained, or members who joined earlier would be missing.
pub async fn snapshot(
    shard: &Rc<Shard>,
    app: AppIdx,
    channel: &str,
    params: &[(String, String)],
) -> Result<Response, ApiError> {
    let (store, view) = target(shard, app, channel).await?;
    let at = SnapshotAt::from_query(params).map_err(ApiError::invalid_input)?;
    let bounds = Bounds { end_serial: at.serial, end_time_ms: at.time_ms, ..Bounds::default() };
    let mut q = query(shard, app, channel, SNAPSHOT_PAGE, Direction::OldestFirst, bounds);
    let mut snapshot = Snapshot::default();
    let mut first = read_page(store, q.clone()).await?;
    let continuity = first.continuity.take();
    let floor = continuity.as_ref().and_then(|c| c.oldest_available_serial);
    if at.time_ms.is_none() && floor.is_some_and(|f| f > 1) {
        return Err(ApiError::new(
            409,
            "continuity_unproven",
            format!(
                "presence events of {channel} before serial {} are no longer retained, so a snapshot by serial \
                 would miss members who joined earlier; give at_time_ms to replay what is retained",
                floor.unwrap_or_default()
            ),
        ));
    }
    let mut page = first;
    loop {
        page.items.iter().for_each(|i| snapshot.apply(i));
        match page.next_cursor.take() {
            Some(cursor) => {
                q.cursor = Some(cursor);
                page = read_page(store, q.clone()).await?;
            }
            None => break,
        }
    }
    let stream_id = continuity.as_ref().map_or(&*view.stream_id, |c| c.stream_id.as_str());
    Ok(Response::json(200, wire::snapshot_json(channel, stream_id, view.degraded, &snapshot, continuity.as_ref())))
}

/// `GET …/presence/history/state`.
pub async fn state(shard: &Rc<Shard>, app: AppIdx, channel: &str) -> Result<Response, ApiError> {
    let (store, view) = target(shard, app, channel).await?;
    let a = shard.ctx.apps.get(app);
    let stored = store.stream_meta(&a.id, &storage::presence_stream(channel)).await;
    let stored = stored.map_err(|e| ApiError::storage(e.to_string()))?;
    let counted = Counted::Events { degraded: view.degraded };
    let stream = StreamDescription::new(&view.stream_id, view.next_serial, stored.as_ref(), counted);
    Ok(Response::json(200, operator::state_json(channel, &stream)))
}

/// `POST …/presence/history/reset`: a new presence stream, the old one's records purged.
pub async fn reset(
    shard: &Rc<Shard>,
    app: AppIdx,
    channel: &str,
    body: &sonic_rs::Value,
) -> Result<Response, ApiError> {
    target(shard, app, channel).await?;
    let confirmed = operator::confirmation(body, channel, "reset").map_err(ApiError::invalid_input)?;
    let owner = shard.channel_owner(app, channel);
    let purged = shard.invoke_on(owner, PresenceLogReset { app, channel: channel.into() }).await?;
    let purged = purged?;
    let app_id = shard.ctx.apps.get(app).id.as_str();
    log::warn!(app = app_id, channel = channel, reason = confirmed.reason.as_str(); "presence history reset by the operator");
    let (meta, counted) = (&purged.meta, Counted::Events { degraded: false });
    let stream = StreamDescription::new(&meta.stream_id, meta.next_serial, Some(meta), counted);
    Ok(Response::json(200, operator::done_json(channel, &confirmed, None, &purged, &stream, counted)))
}
