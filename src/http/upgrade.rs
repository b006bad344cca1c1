//! `GET /app/{key}` (and the test echo route): the HTTP side of becoming a WebSocket. Refusals
//! before the upgrade are HTTP answers (503 while draining, 429 over the connect rate, 404,
//! 400, 426); after the handshake, admission refusals are Pusher errors and close codes.

use super::request::{path_decode, query_pairs, Request};
use super::response::{ApiError, Response};
use crate::metrics::Limiter;
use crate::protocol::outbound;
use crate::shard::limits::{self, RateKey};
use crate::ws::admission::{self, Asking};
use crate::ws::codec;
use crate::ws::conn::Conn;
use crate::ws::handshake::{self, Negotiated};
use crate::ws::hub::Hub;
use crate::ws::session;
use crate::ws::writer::frame_in;
use std::net::IpAddr;
use std::rc::Rc;

pub async fn upgrade(hub: Rc<Hub>, conn: Rc<Conn>, req: Request, pending: Vec<u8>, peer: IpAddr) {
    let refuse = |r: Response| {
        let conn = conn.clone();
        async move { conn.write_all(&r.encode(false)).await }
    };
    if hub.draining.get() {
        let _ = refuse(Response::text(503, "")).await;
        return;
    }
    let ctx = hub.shard.ctx.clone();
    let rl = &ctx.config.rate_limiter;
    if rl.enabled && req.path.starts_with("/app/") {
        let ip = limits::client_ip(peer, req.header("x-forwarded-for"), rl.websocket.trust_hops);
        let app = req.path.strip_prefix("/app/").and_then(|k| ctx.apps.by_key(k));
        let c = hub.counters(app);
        c.rate_limit_checks[Limiter::ConnectionRate as usize].inc();
        let refused = match limits::check(&hub.shard, RateKey::Connect(ip), rl.websocket).await {
            Ok(v) if v.allowed => None,
            Ok(v) => {
                c.rate_limit_triggered[Limiter::ConnectionRate as usize].inc();
                Some(ApiError::rate_limited("WebSocket connections from this address", &v, rl.websocket.window))
            }
            Err(e) => Some(ApiError::unavailable(e)),
        };
        if let Some(e) = refused {
            let _ = refuse(e.into()).await;
            conn.shutdown_write();
            return;
        }
    }
    let echo = ctx.config.test_hooks && req.path == "/test/echo";
    let key = match req.path.strip_prefix("/app/") {
        Some(k) if !k.is_empty() && !k.contains('/') => path_decode(k),
        _ if echo => String::new(),
        _ => {
            let _ = refuse(Response::text(404, "404 NOT FOUND")).await;
            return;
        }
    };
    let query = query_pairs(&req.query);
    let options = match Negotiated::parse(&query, &ctx.config.ai_transport, ctx.config.echo_control) {
        Ok(o) => o,
        Err(why) => {
            let _ = refuse(Response::text(400, why)).await;
            return;
        }
    };
    let (dialect, format) = (options.dialect, options.format);
    let accept = match handshake::accept(&req) {
        Ok(a) => a,
        Err(r) => {
            let _ = refuse(Response::text(r.status, r.message)).await;
            return;
        }
    };
    if echo {
        if conn.write_all(&accept).await.is_err() {
            return;
        }
        return crate::ws::echo::run(hub, conn, pending).await;
    }
    let token = query.iter().find(|(k, _)| k == "token").map(|(_, v)| v.as_str());
    let asking = Asking { key: &key, origin: req.header("origin"), token, dialect };
    // The 101 response leaves in the same send as the first frame (connection_established
    // or the refusal): on loopback each send costs far more than its bytes.
    match admission::admit(&hub.shard, &asking) {
        // The session is a task of its own, so that what the handshake needed (this future,
        // the request, the read buffers) is freed now rather than held for the socket's life:
        // an idle socket costs only the session's small state.
        Ok((app, grant)) => {
            drop((req, key, query));
            // The session's task catches its own panics (it closes the socket with 1011).
            glommio::spawn_local(session::run(hub, conn, app, options, grant, accept, pending)).detach();
        }
        Err((e, kind)) => {
            hub.counters(ctx.apps.by_key(&key)).connection_errors[kind as usize].inc();
            let message = e.to_string();
            log::debug!(code = e.code(), reason = message.as_str(), shard = hub.shard.id; "connection refused");
            let mut bytes = accept;
            if let Some(frame) = frame_in(format, &outbound::error(dialect, e.code(), &message)) {
                bytes.extend_from_slice(&frame);
            }
            bytes.extend_from_slice(&codec::encode_close(e.code(), &message));
            let _ = conn.write_all(&bytes).await;
            conn.shutdown_write();
        }
    }
}
