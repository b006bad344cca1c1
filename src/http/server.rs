//! The listening socket and each accepted connection until it is known to be HTTP or a
//! WebSocket: HTTP/1.1 with keep-alive and pipelining on the same port as `/app/{key}`.

use super::request::{self, Limits, Request};
use super::response::{ApiError, Response};
use super::api;
use crate::apps::App;
use crate::protocol::outbound::{self, Dialect};
use crate::protocol::ProtocolError;
use crate::metrics;
use crate::shard::limits::{self, RateKey};
use crate::shard::Shard;
use crate::ws::codec::{self, Opcode};
use crate::ws::conn::Conn;
use crate::ws::{handshake, session};
use glommio::net::{TcpListener, TcpStream};
use std::cell::Cell;
use std::future::poll_fn;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::Duration;

/// Largest request head accepted.
const MAX_HEAD: usize = 16 << 10;

/// Accepts connections until the process is asked to stop. Every shard binds the same port
/// (SO_REUSEPORT); the kernel spreads connections across shards.
pub async fn accept_loop(shard: Rc<Shard>) {
    let cfg = &shard.ctx.config;
    let listener = match TcpListener::bind((cfg.host.as_str(), cfg.port)) {
        Ok(l) => l,
        Err(e) => {
            log::error!("shard {}: cannot listen on {}:{}: {e}", shard.id, cfg.host, cfg.port);
            shard.ctx.fail();
            return;
        }
    };
    if shard.id == 0 {
        log::info!("listening on {}:{} with {} shard(s)", cfg.host, cfg.port, shard.shards);
    }
    let stop = Rc::new(StopSignal::default());
    glommio::spawn_local(stop.clone().watch(shard.clone())).detach();
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                glommio::spawn_local(serve(shard.clone(), stream)).detach();
            }
            Some(Err(e)) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("shard {}: accept failed: {e}", shard.id);
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Becomes set when the process is asked to stop.
#[derive(Default)]
struct StopSignal {
    set: Cell<bool>,
    waiter: Cell<Option<Waker>>,
}

impl StopSignal {
    async fn watch(self: Rc<Self>, shard: Rc<Shard>) {
        while !shard.ctx.stopping.load(Ordering::Relaxed) {
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        self.set.set(true);
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.get() {
                Poll::Ready(())
            } else {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// Serves one connection: HTTP requests in order until it closes or upgrades to a WebSocket.
async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    stream.set_nodelay(true).ok();
    let peer = stream.peer_addr().map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |a| a.ip());
    let conn = Conn::new(stream);
    let limits = Limits { max_head: MAX_HEAD, max_body: shard.ctx.config.max_http_body };
    let mut buf: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    loop {
        loop {
            match request::parse(&buf, limits) {
                Ok(Some((req, used))) => {
                    buf.drain(..used);
                    let app = req.path.strip_prefix("/apps/").and_then(|r| r.split('/').next()).and_then(|id| shard.ctx.apps.by_id(id));
                    if handshake::is_upgrade(&req) {
                        if !out.is_empty() && conn.write_all(&out).await.is_err() {
                            return;
                        }
                        return upgrade(shard, conn, req, std::mem::take(&mut buf), peer).await;
                    }
                    let keep_alive = req.keep_alive && !shard.draining.get();
                    // More pipelined requests are already here: handle them all before the
                    // sockets they publish to are written.
                    let _burst = (!buf.is_empty()).then(|| shard.hold_flush());
                    let resp = api::handle(&shard, req).await.encode(keep_alive);
                    let c = shard.counters(app);
                    c.http_calls.inc();
                    c.http_received_bytes.add(used as u64);
                    c.http_sent_bytes.add(resp.len() as u64);
                    out.extend_from_slice(&resp);
                    if !keep_alive {
                        let _ = conn.write_all(&out).await;
                        conn.shutdown_write();
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    out.extend_from_slice(&Response::text(e.status(), e.to_string()).encode(false));
                    let _ = conn.write_all(&out).await;
                    conn.shutdown_write();
                    return;
                }
            }
        }
        if !out.is_empty() {
            if conn.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if buf.is_empty() {
            buf = Vec::new(); // an idle keep-alive connection keeps no buffer
        }
        match conn.read(&shard.scratch).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&shard.scratch.borrow()[..n]),
        }
    }
}

/// `GET /app/{key}` (and the test echo route): complete the handshake, then admit the socket
/// (spec 01 §2.2) and hand it to its session.
async fn upgrade(shard: Rc<Shard>, conn: Rc<Conn>, req: Request, pending: Vec<u8>, peer: IpAddr) {
    let refuse = |status: u16, msg: &str| Response::text(status, msg.to_owned()).encode(false);
    if shard.draining.get() {
        let _ = conn.write_all(&Response::text(503, "").encode(false)).await;
        return;
    }
    let rl = &shard.ctx.config.rate_limiter;
    if rl.enabled && req.path.starts_with("/app/") {
        let ip = limits::client_ip(peer, req.header("x-forwarded-for"), rl.websocket.trust_hops);
        let app = req.path.strip_prefix("/app/").and_then(|k| shard.ctx.apps.by_key(k));
        let c = shard.counters(app);
        c.rate_limit_checks[metrics::CONNECTION_RATE].inc();
        let verdict = limits::check(&shard, RateKey::Connect(ip), rl.websocket).await;
        if !verdict.allowed {
            c.rate_limit_triggered[metrics::CONNECTION_RATE].inc();
            let refused: Response = ApiError::rate_limited("WebSocket connections from this address", &verdict, rl.websocket.window).into();
            let _ = conn.write_all(&refused.encode(false)).await;
            conn.shutdown_write();
            return;
        }
    }
    let echo = shard.ctx.config.test_echo && req.path == "/test/echo";
    let key = match req.path.strip_prefix("/app/") {
        Some(k) if !k.is_empty() && !k.contains('/') => request::path_decode(k),
        _ if echo => String::new(),
        _ => {
            let _ = conn.write_all(&refuse(404, "404 NOT FOUND")).await;
            return;
        }
    };
    let options = match handshake::Negotiated::parse(&req.query) {
        Ok(o) => o,
        Err(why) => {
            let _ = conn.write_all(&refuse(400, &why)).await;
            return;
        }
    };
    let dialect = options.dialect;
    let accept = match handshake::accept(&req) {
        Ok(a) => a,
        Err(r) => {
            let _ = conn.write_all(&refuse(r.status, r.message)).await;
            return;
        }
    };
    if echo {
        if conn.write_all(&accept).await.is_err() {
            return;
        }
        return crate::ws::echo::run(shard, conn, pending).await;
    }
    // The 101 response leaves in the same send as the first frame (connection_established
    // or the refusal): on loopback each send costs far more than its bytes.
    match admit(&shard, &req, &key, dialect) {
        // The session is a task of its own, so that what the handshake needed (this future,
        // the request, the read buffers) is freed now rather than held for the socket's life:
        // an idle socket costs only the session's small state.
        Ok(app) => {
            drop((req, key));
            glommio::spawn_local(session::run(shard, conn, app, options, accept, pending)).detach();
        }
        Err((e, kind)) => {
            shard.counters(shard.ctx.apps.by_key(&key)).connection_errors[kind].inc();
            log::debug!(code = e.code, reason = e.message.as_str(), shard = shard.id; "connection refused");
            let mut bytes = accept;
            bytes.extend_from_slice(&codec::encode(Opcode::Text, &outbound::error(dialect, e.code, &e.message)));
            bytes.extend_from_slice(&codec::encode_close(e.code, &e.message));
            let _ = conn.write_all(&bytes).await;
            conn.shutdown_write();
        }
    }
}

/// Connection admission in the order of spec 01 §2.2; counts the socket on success. A refusal
/// comes with its `metrics::CONNECTION_ERRORS` index.
fn admit(shard: &Shard, req: &Request, key: &str, dialect: Dialect) -> Result<crate::apps::AppIdx, (ProtocolError, usize)> {
    let ctx = &shard.ctx;
    let idx = ctx.apps.by_key(key).ok_or((ProtocolError::app_not_found(), 0))?;
    let app: &App = ctx.apps.get(idx);
    if !app.enabled {
        return Err((ProtocolError::app_disabled(), 1));
    }
    if !app.origin_allowed(req.header("origin")) {
        return Err((ProtocolError::origin_not_allowed(), 2));
    }
    // spec 02 §1.1: `token` is refused on V1. This server has no capability-token keys
    // configured, so a V2 token fails closed the same way rather than being ignored.
    if request::query_pairs(&req.query).iter().any(|(k, _)| k == "token") {
        let why = match dialect {
            Dialect::V1 => "capability tokens need protocol=2",
            Dialect::V2 => "capability tokens are not enabled on this server",
        };
        return Err((ProtocolError::token_refused(why), 5));
    }
    let total = ctx.connections.fetch_add(1, Ordering::Relaxed) + 1;
    if ctx.config.max_connections > 0 && total > ctx.config.max_connections {
        ctx.connections.fetch_sub(1, Ordering::Relaxed);
        return Err((ProtocolError::over_capacity(), 3));
    }
    let per_app = ctx.app_connections[idx as usize].fetch_add(1, Ordering::Relaxed) + 1;
    if app.limits.max_connections > 0 && per_app > app.limits.max_connections {
        ctx.app_connections[idx as usize].fetch_sub(1, Ordering::Relaxed);
        ctx.connections.fetch_sub(1, Ordering::Relaxed);
        return Err((ProtocolError::app_over_quota(), 3));
    }
    Ok(idx)
}
