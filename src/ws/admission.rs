//! Whether a WebSocket may connect (`docs/protocol/pusher.md#connecting`): the app by key, its
//! switch, the origin, capability tokens, and the node's and the app's connection limits, in
//! that order. A refusal names its `error_type` metric label.

use crate::config::AppIdx;
use crate::context::Context;
use crate::metrics::ConnectionError;
use crate::protocol::outbound::Dialect;
use crate::protocol::ProtocolError;
use std::sync::atomic::Ordering;

/// What admission looks at.
pub struct Asking<'a> {
    pub key: &'a str,
    pub origin: Option<&'a str>,
    /// The upgrade carried a `token` parameter.
    pub token: bool,
    pub dialect: Dialect,
}

/// Admits a socket and counts it, or says why not.
pub fn admit(ctx: &Context, a: &Asking<'_>) -> Result<AppIdx, (ProtocolError, ConnectionError)> {
    let idx = ctx.apps.by_key(a.key).ok_or((ProtocolError::AppNotFound, ConnectionError::AppNotFound))?;
    let app = ctx.apps.get(idx);
    if !app.enabled {
        return Err((ProtocolError::AppDisabled, ConnectionError::AppDisabled));
    }
    if !app.origin_allowed(a.origin) {
        return Err((ProtocolError::OriginNotAllowed, ConnectionError::OriginNotAllowed));
    }
    // `token` is refused on V1. This server has no capability-token keys configured, so a V2
    // token fails closed the same way rather than being ignored.
    if a.token {
        let why = match a.dialect {
            Dialect::V1 => "capability tokens need protocol=2",
            Dialect::V2 => "capability tokens are not enabled on this server",
        };
        return Err((ProtocolError::TokenRefused(why.into()), ConnectionError::AuthenticationFailed));
    }
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
    Ok(idx)
}
