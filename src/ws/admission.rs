//! Whether a WebSocket may connect (`docs/protocol/pusher.md#connecting`): the app by key, its
//! switch, the origin, capability tokens, and the node's and the app's connection limits, in
//! that order. A refusal names its `error_type` metric label.

use crate::auth::token::{self, Grant};
use crate::config::AppIdx;
use crate::metrics::ConnectionError;
use crate::protocol::outbound::Dialect;
use crate::protocol::ProtocolError;
use crate::shard::Shard;
use std::sync::atomic::Ordering;

/// What admission looks at.
pub struct Asking<'a> {
    pub key: &'a str,
    pub origin: Option<&'a str>,
    /// The upgrade's `token` parameter.
    pub token: Option<&'a str>,
    pub dialect: Dialect,
}

/// Admits a socket and counts it, with what its capability token grants, or says why not.
pub fn admit(shard: &Shard, a: &Asking<'_>) -> Result<(AppIdx, Option<Grant>), (ProtocolError, ConnectionError)> {
    let ctx = &shard.ctx;
    let idx = ctx.apps.by_key(a.key).ok_or((ProtocolError::AppNotFound, ConnectionError::AppNotFound))?;
    let app = ctx.apps.get(idx);
    if !app.enabled {
        return Err((ProtocolError::AppDisabled, ConnectionError::AppDisabled));
    }
    if !app.origin_allowed(a.origin) {
        return Err((ProtocolError::OriginNotAllowed, ConnectionError::OriginNotAllowed));
    }
    let grant = match (a.token, a.dialect) {
        (None, _) => None,
        (Some(_), Dialect::V1) => {
            let why = "capability tokens need protocol=2".to_owned();
            return Err((ProtocolError::TokenRefused(why), ConnectionError::AuthenticationFailed));
        }
        (Some(t), Dialect::V2) => Some(
            check_token(shard, idx, t)
                .map_err(|why| (ProtocolError::TokenRefused(why), ConnectionError::AuthenticationFailed))?,
        ),
    };
    let total = ctx.connections.fetch_add(1, Ordering::Relaxed) + 1;
    if ctx.config.max_connections > 0 && total > ctx.config.max_connections {
        ctx.connections.fetch_sub(1, Ordering::Relaxed);
        return Err((ProtocolError::OverCapacity, ConnectionError::OverCapacity));
    }
    let per_app = ctx.app_connections[idx as usize].fetch_add(1, Ordering::Relaxed) + 1;
    if app.limits.max_connections > 0 && per_app > app.limits.max_connections {
        ctx.app_connections[idx as usize].fetch_sub(1, Ordering::Relaxed);
        ctx.connections.fetch_sub(1, Ordering::Relaxed);
        return Err((ProtocolError::AppOverQuota, ConnectionError::OverCapacity));
    }
    Ok((idx, grant))
}

/// A capability token of `app`: valid now, and neither its `jti` nor its client id revoked
/// (`docs/protocol/v2.md#capability-tokens`). Checked on connect and on every refresh.
pub fn check_token(shard: &Shard, app: AppIdx, t: &str) -> Result<Grant, String> {
    let a = shard.ctx.apps.get(app);
    let now_ms = crate::time::unix_ms();
    let grant = token::verify(t, &a.key, &a.secret, (now_ms / 1000) as i64)?;
    if shard.revocations.borrow().revoked(app, &grant.jti, &grant.client_id, now_ms) {
        return Err("capability token has been revoked".into());
    }
    Ok(grant)
}
