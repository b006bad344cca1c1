//! `POST /apps/{id}/revocations` (`docs/protocol/v2.md#revocation`): revokes capability tokens
//! by `jti` and/or client id, for `ttl_seconds`, until `expires_at`, or for 24 hours. The
//! revocation is synced to shard 0's store before anything else, then every shard learns it
//! and closes its sockets that hold a matching token; with several nodes, then every other
//! node (`closed_connections` counts this node's).

use super::super::response::{ApiError, Response};
use crate::backplane::NodeAction;
use crate::config::AppIdx;
use crate::shard::revocations::{self, Revoke};
use crate::shard::route;
use crate::shard::Shard;
use sonic_rs::{JsonContainerTrait, JsonValueTrait};
use std::rc::Rc;
use std::sync::Arc;

const DEFAULT_TTL_SECS: u64 = 24 * 60 * 60;
const MAX_ID_BYTES: usize = 128;

pub async fn revoke(shard: &Rc<Shard>, app: AppIdx, body: &sonic_rs::Value) -> Result<Response, ApiError> {
    let obj = body.as_object().ok_or_else(|| ApiError::invalid_input("the body must be a JSON object"))?;
    let id = |name: &str| -> Result<Option<Arc<str>>, ApiError> {
        match obj.get(&name) {
            None => Ok(None),
            Some(v) if v.is_null() => Ok(None),
            Some(v) => match v.as_str() {
                Some(s) if !s.is_empty() && s.len() <= MAX_ID_BYTES => Ok(Some(s.into())),
                _ => Err(ApiError::invalid_input(format!("{name} must be a string of 1 to {MAX_ID_BYTES} bytes"))),
            },
        }
    };
    let jti = id("jti")?;
    let client_id = id("client_id")?;
    if jti.is_none() && client_id.is_none() {
        return Err(ApiError::invalid_input("a revocation needs jti or client_id"));
    }
    let reason = match obj.get(&"reason") {
        None => "revoked".to_owned(),
        Some(v) => v.as_str().ok_or_else(|| ApiError::invalid_input("reason must be a string"))?.to_owned(),
    };
    let now_ms = crate::time::unix_ms();
    let expires_at_ms = expiry(obj, now_ms)?;

    let app_id = shard.ctx.apps.get(app).id.clone();
    for stored in revocations::persist(shard, &app_id, jti.as_deref(), client_id.as_deref(), expires_at_ms, &reason) {
        stored.await.map_err(|e| ApiError::storage(e.to_string()))?;
    }
    let revoke = Revoke { app, jti: jti.clone(), client_id: client_id.clone(), expires_at_ms };
    let closed: usize = route::all(shard.invoke_on_all(revoke)).await?.into_iter().sum();
    if let Some(node) = shard.node_id() {
        let action = NodeAction::Revoke {
            app: app_id.clone(),
            jti: jti.as_deref().map(str::to_owned),
            client_id: client_id.as_deref().map(str::to_owned),
            expires_at_ms,
            reason: reason.clone(),
            node,
        };
        shard.tell_other_nodes(action).await.map_err(|e| {
            ApiError::new(503, "backplane_unavailable", format!("revoked on this node only, retry: {e}"))
        })?;
    }
    log::info!(app = app_id.as_str(), jti = jti.as_deref().unwrap_or(""), client_id = client_id.as_deref().unwrap_or(""),
        reason = reason.as_str(), closed = closed; "capability tokens revoked");
    let body = format!(
        "{{\"revoked_jti\":{},\"revoked_client_id\":{},\"closed_connections\":{closed}}}",
        jti.is_some(),
        client_id.is_some()
    );
    Ok(Response::json(200, body))
}

/// When the revocation ends (unix ms): `ttl_seconds` from now, else `expires_at` (unix
/// seconds), else 24 hours from now.
fn expiry(obj: &sonic_rs::Object, now_ms: u64) -> Result<u64, ApiError> {
    let positive = |name: &str| -> Result<Option<u64>, ApiError> {
        match obj.get(&name) {
            None => Ok(None),
            Some(v) if v.is_null() => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some(n)),
                _ => Err(ApiError::invalid_input(format!("{name} must be a positive integer"))),
            },
        }
    };
    if let Some(ttl) = positive("ttl_seconds")? {
        return Ok(now_ms.saturating_add(ttl.saturating_mul(1000)));
    }
    match positive("expires_at")? {
        Some(at) if at.saturating_mul(1000) <= now_ms => {
            Err(ApiError::invalid_input("expires_at is in the past (unix seconds)"))
        }
        Some(at) => Ok(at.saturating_mul(1000)),
        None => Ok(now_ms + DEFAULT_TTL_SECS * 1000),
    }
}
