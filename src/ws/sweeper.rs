//! The socket timers, as one pass a second over the shard's sockets instead of a timer per
//! socket: pings idle sockets (V1 `pusher:ping` after the activity timeout, V2 native Ping on
//! its own interval), closes those that never answered, enforces the user-authentication
//! timeout, tells sockets their capability token expired and closes those that did not
//! refresh it in time, drops sockets stuck in their close handshake, and gives memory back
//! after a storm.

use super::hub::{Hub, TOKEN_CLOSE};
use super::index::SocketKey;
use crate::protocol::outbound::{self, Dialect, TokenEnd};
use crate::protocol::ProtocolError;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a socket may take to finish its close handshake before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a socket whose token expired has to send `sockudo:auth` before it is closed.
const TOKEN_GRACE: Duration = Duration::from_secs(30);

impl Hub {
    pub(super) async fn sweeper(self: Rc<Self>) {
        let cfg = &self.shard.ctx.config;
        loop {
            glommio::timer::sleep(Duration::from_secs(1)).await;
            let now = Instant::now();
            let now_unix = (crate::time::unix_ms() / 1000) as i64;
            let mut to_close: Vec<(SocketKey, ProtocolError)> = Vec::new();
            let mut to_ping = Vec::new();
            let (mut tokens_expired, mut tokens_over) = (Vec::new(), Vec::new());
            {
                let mut index = self.index.borrow_mut();
                for (key, s) in index.sockets.iter_mut() {
                    if s.closing {
                        if now.duration_since(s.last_activity) > CLOSE_TIMEOUT {
                            s.conn.kill();
                        }
                        continue;
                    }
                    match s.ping_sent {
                        Some(at) if now.duration_since(at) >= cfg.pong_timeout => {
                            to_close.push((key, ProtocolError::PongTimeout));
                            continue;
                        }
                        None if match s.dialect {
                            Dialect::V1 => Some(cfg.activity_timeout),
                            Dialect::V2 => cfg.v2_ping_interval,
                        }
                        .is_some_and(|idle| now.duration_since(s.last_activity) >= idle) =>
                        {
                            s.ping_sent = Some(now);
                            to_ping.push((key, s.dialect));
                        }
                        _ => {}
                    }
                    if let Some(t) = s.token.as_mut() {
                        match t.expired_notice {
                            None if now_unix >= t.exp => {
                                t.expired_notice = Some(now);
                                tokens_expired.push(key);
                            }
                            Some(at) if now.duration_since(at) >= TOKEN_GRACE => tokens_over.push(key),
                            _ => {}
                        }
                    }
                    let app = self.shard.ctx.apps.get(s.app);
                    if app.user_authentication
                        && !s.authenticated
                        && now.duration_since(s.connected_at) >= cfg.user_authentication_timeout
                    {
                        to_close.push((key, ProtocolError::AuthTimeout));
                    }
                }
            }
            for (key, dialect) in to_ping {
                match dialect {
                    Dialect::V1 => self.send_heartbeat(key, &outbound::ping(dialect)),
                    Dialect::V2 => self.send_ping(key),
                }
            }
            for (key, err) in to_close {
                self.close(key, &err);
            }
            for key in tokens_expired {
                self.end_token(key, TokenEnd::Expired);
            }
            for key in tokens_over {
                self.close_ws(key, TOKEN_CLOSE, "capability token expired");
            }
            if self.index.borrow_mut().trim() {
                // The allocator keeps freed pages until this thread allocates again; an idle
                // shard would hold them, so ask it to return them now.
                // SAFETY: mi_collect has no preconditions.
                unsafe { libmimalloc_sys::mi_collect(true) };
            }
            if self.draining.get() && self.index.borrow().sockets.is_empty() {
                return;
            }
        }
    }
}
