//! Routes that exist only with `--test-hooks`, for tests of failure handling.

use super::super::request::{query_pairs, Request};
use super::super::response::{ApiError, Response};
use crate::shard::route::OwnerKey;
use crate::shard::Stall;
use crate::ws::hub::Hub;

/// `POST /test/stall?app=ID&channel=NAME&ms=N`: the shard that owns the channel stops handling
/// messages from other shards (and from itself) for N ms. Answers with that shard's number.
pub fn stall(hub: &Hub, req: &Request) -> Result<Response, ApiError> {
    let query = query_pairs(&req.query);
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let app = param("app")
        .and_then(|id| hub.shard.ctx.apps.by_id(id))
        .ok_or_else(|| ApiError::invalid_input("app: unknown app id"))?;
    let channel = param("channel").ok_or_else(|| ApiError::invalid_input("channel is required"))?;
    let ms = param("ms").and_then(|m| m.parse().ok()).ok_or_else(|| ApiError::invalid_input("ms must be a number"))?;
    let owner = hub.shard.owner(OwnerKey::Channel(hub.shard.ctx.apps.get(app), channel));
    hub.shard.tell(owner, Stall { ms })?;
    Ok(Response::json(200, format!("{{\"shard\":{owner}}}")))
}

/// `POST /test/panic`: a route that panics, to show the 500 and that the shard goes on.
pub fn panic() -> Result<Response, ApiError> {
    panic!("test hook: a panic injected into an HTTP request")
}
