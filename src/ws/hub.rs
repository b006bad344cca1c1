//! This shard's WebSockets as one service: the index of sockets and subscriptions, the writer,
//! the read buffer they share, and what is done to a socket (queue a frame, deliver a channel
//! message, close). Sessions and the mesh handler (`node`) use it; the owner side (`shard`)
//! reaches these sockets only through `Msg::Deliver` and `Msg::ToUsers`.

use super::codec::{self, Opcode};
use super::conn::Conn;
use super::index::{Index, Socket, SocketKey, Subscription};
use super::writer::{frame_in, Frame, Pushed, QueueBound, Writer};
use crate::config::AppIdx;
use crate::metrics::{AppCounters, ChannelLabel, CloseReason};
use crate::protocol::outbound::{self, Dialect, Encoding, TokenEnd};
use crate::protocol::presence_history::Cause;
use crate::protocol::wildcard;
use crate::protocol::wire::Format;
use crate::protocol::ProtocolError;
use crate::shard::channel::broadcast::Deliver;
use crate::shard::channel::subscribe::Unsubscribe;
use crate::shard::route::{ToUsers, UserAction};
use crate::shard::Shard;
use crate::socket_id::SocketId;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The close code of a socket whose capability token ended (revoked, or expired and not
/// refreshed).
pub const TOKEN_CLOSE: u16 = 4009;

/// Shared read buffer per shard: the most one read takes from a socket.
const SCRATCH_BYTES: usize = 64 << 10;

pub struct Hub {
    pub shard: Rc<Shard>,
    pub index: RefCell<Index>,
    pub(super) writer: Writer,
    /// The read buffer every socket (and HTTP connection) of this shard reads into.
    pub scratch: RefCell<Vec<u8>>,
    /// Set when the shard starts its graceful stop: no new sockets.
    pub draining: Cell<bool>,
}

impl Hub {
    pub fn new(shard: Rc<Shard>) -> Rc<Hub> {
        let apps = shard.ctx.apps.len();
        Rc::new(Hub {
            shard,
            index: RefCell::new(Index::new(apps)),
            writer: Writer::default(),
            scratch: RefCell::new(vec![0; SCRATCH_BYTES]),
            draining: Cell::new(false),
        })
    }

    /// Starts the writer and the socket timers.
    pub fn start(self: &Rc<Self>) {
        let hub = self.clone();
        crate::shard::supervise(&self.shard, "flusher", move |_| hub.clone().flusher());
        let hub = self.clone();
        crate::shard::supervise(&self.shard, "socket sweeper", move |_| hub.clone().sweeper());
    }

    pub fn counters(&self, app: Option<AppIdx>) -> &AppCounters {
        self.shard.counters(app)
    }

    // ---- sockets -------------------------------------------------------------------------

    /// Indexes a new WebSocket and queues the handshake response and `connection_established`
    /// (one send for both).
    pub fn add_socket(
        &self,
        conn: Rc<Conn>,
        app: AppIdx,
        dialect: Dialect,
        (encoding, format): (Encoding, Format),
        handshake: Vec<u8>,
    ) -> (SocketKey, SocketId) {
        let id = SocketId::on_shard(self.shard.id, self.shard.shards);
        let socket = Socket::new(id, app, dialect, (encoding, format), conn, Instant::now());
        let key = self.index.borrow_mut().sockets.insert(socket);
        self.counters(Some(app)).new_connections.inc();
        log::debug!(socket_id = id.to_string().as_str(), app = self.shard.ctx.apps.get(app).id.as_str(), shard = self.shard.id, protocol = dialect.number(); "connection opened");
        // The 101 response is HTTP, not a WebSocket message: queued without counting.
        let pushed = self.index.borrow_mut().sockets.get_mut(key).map(|s| s.out.push_unbounded(handshake.into()));
        if pushed == Some(Pushed::NeedsFlush) {
            self.writer.list(key);
        }
        let timeout = self.shard.ctx.config.activity_timeout.as_secs();
        self.send_json(key, &outbound::connection_established(dialect, &id.to_string(), timeout));
        (key, id)
    }

    /// Forgets a socket whose reader has ended; undoes its subscriptions if not done yet.
    pub fn remove_socket(&self, key: SocketKey, id: SocketId) {
        self.detach(key);
        let mut index = self.index.borrow_mut();
        if index.sockets.get(key).is_some_and(|s| s.id == id) {
            let s = index.sockets.remove(key);
            let c = self.counters(Some(s.app));
            c.disconnections.inc();
            c.disconnections_by_reason[CloseReason::of(s.close_code) as usize].inc();
            let open_ms = s.connected_at.elapsed().as_millis() as u64;
            log::debug!(socket_id = id.to_string().as_str(), app = self.shard.ctx.apps.get(s.app).id.as_str(), shard = self.shard.id, open_ms = open_ms; "connection closed");
            let ctx = &self.shard.ctx;
            ctx.connections.fetch_sub(1, Ordering::Relaxed);
            ctx.app_connections[s.app as usize].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Removes the socket from every channel and user index, telling the owners. Idempotent.
    fn detach(&self, key: SocketKey) {
        let mut index = self.index.borrow_mut();
        let Some(s) = index.sockets.get_mut(key) else { return };
        let (app, id, cause) = (s.app, s.id, Cause::of_close(s.close_code));
        let channels = std::mem::take(&mut s.channels);
        s.deltas = 0;
        let user = if s.signed_in || s.user_id.is_some() { s.user_id.take() } else { None };
        let signed_in = std::mem::replace(&mut s.signed_in, false);
        if signed_in || s.token.take().is_some() {
            self.shard.identities.borrow_mut().remove(&s.id);
        }
        let watchlist = s.watchlist.take();
        for (channel, sub) in channels {
            self.end_subscription(&mut index, key, (app, id), channel, sub, cause);
        }
        if let Some(user) = user {
            index.unindex_user(app as usize, &user, key);
            if signed_in && self.shard.ctx.apps.get(app).watchlist_events {
                self.shard.signout_watch(app, user, watchlist.unwrap_or_default());
            }
        }
    }

    /// Ends one of a socket's subscriptions (already taken out of the socket's own map): out
    /// of the local index, counted, and the owner told; for a wildcard pattern, every shard.
    pub fn end_subscription(
        &self,
        index: &mut Index,
        key: SocketKey,
        (app, id): (AppIdx, SocketId),
        channel: Arc<str>,
        sub: Subscription,
        cause: Cause,
    ) {
        if wildcard::is_pattern(&channel) {
            index.remove_pattern_subscriber(app, &channel, key, sub.filter.as_ref());
            self.shard.leave_pattern_everywhere(app, &channel);
            return;
        }
        self.count_unsubscribe(app, &channel, index.remove_subscriber(app, &channel, key, sub.filter.as_ref()));
        let unsubscribe = Unsubscribe { app, channel, shard: self.shard.id, socket: id, user_id: sub.member, cause };
        self.shard.unsubscribe_from_owner(unsubscribe);
    }

    /// Counts a subscription that ended; `emptied`: it was the channel's last on this shard.
    fn count_unsubscribe(&self, app: AppIdx, channel: &str, emptied: bool) {
        let c = self.counters(Some(app));
        let ty = ChannelLabel::of(channel) as usize;
        c.unsubscriptions[ty].inc();
        if emptied {
            c.active_channels[ty].sub(1);
        }
    }

    // ---- outbound ------------------------------------------------------------------------

    /// Queues a frame meant for this one socket (not a channel broadcast). On V2 it gets a
    /// `message_id` of its own (`docs/protocol/v2.md#message-ids`).
    pub fn send_json(&self, key: SocketKey, json: &[u8]) {
        let Some((dialect, format)) = self.index.borrow().sockets.get(key).map(|s| (s.dialect, s.format)) else {
            return;
        };
        let json =
            if dialect == Dialect::V2 { Cow::Owned(outbound::with_message_id(json)) } else { Cow::Borrowed(json) };
        if let Some(frame) = frame_in(format, &json) {
            self.send_frame(key, frame);
        }
    }

    /// Queues a heartbeat frame: never given a `message_id`.
    pub fn send_heartbeat(&self, key: SocketKey, json: &[u8]) {
        self.send_payload(key, json);
    }

    /// Queues a message for one socket in its format as it is (a replayed channel message,
    /// a heartbeat), outside the queue bound.
    pub fn send_payload(&self, key: SocketKey, json: &[u8]) {
        let format = self.index.borrow().sockets.get(key).map(|s| s.format);
        if let Some(frame) = format.and_then(|f| frame_in(f, json)) {
            self.send_frame(key, frame);
        }
    }

    /// Queues an encoded frame for one socket, outside the queue bound.
    pub fn send_frame(&self, key: SocketKey, frame: Frame) {
        let mut index = self.index.borrow_mut();
        if let Some(s) = index.sockets.get_mut(key).filter(|s| !s.closing) {
            let c = self.counters(Some(s.app));
            c.ws_sent.inc();
            c.ws_sent_bytes.add(frame.len() as u64);
            if s.out.push_unbounded(frame) == Pushed::NeedsFlush {
                self.writer.list(key);
            }
        }
    }

    /// Queues one channel message on every local subscriber except `exclude` (`Msg::Deliver`).
    pub fn deliver(&self, d: Deliver) {
        let Deliver { app, channel, message, exclude } = d;
        let overflowed = {
            let mut index = self.index.borrow_mut();
            if !index.channels[app as usize].contains_key(&*channel) && index.patterns[app as usize].is_empty() {
                return;
            }
            let limits = (self.queue_bound(), &self.shard.ctx.config.delta);
            let q =
                self.writer.with_dirty(|dirty| index.queue_on_channel(app, &channel, &message, exclude, limits, dirty));
            let c = self.counters(Some(app));
            c.delivered(&channel, q.frames, q.bytes, message.published_at.elapsed());
            if q.delta_saved > 0 {
                c.delta_bytes_saved.add(q.delta_saved);
            }
            q.full
        };
        for key in overflowed {
            self.overflow(key);
        }
    }

    /// Lets through the live frames a socket's continuity gates held back (all its gates, or
    /// one channel's). Returns how many went out.
    pub fn release_gates(&self, key: SocketKey, channel: Option<&str>) -> usize {
        let bound = self.queue_bound();
        let (passed, full) =
            self.writer.with_dirty(|dirty| self.index.borrow_mut().release_gates(key, channel, bound, dirty));
        if full {
            self.overflow(key);
        }
        passed
    }

    fn queue_bound(&self) -> QueueBound {
        let cfg = &self.shard.ctx.config;
        QueueBound { frames: cfg.max_queued_messages, bytes: cfg.max_queued_bytes }
    }

    /// A socket's queue is full: it is too slow for what it subscribed to.
    fn overflow(&self, key: SocketKey) {
        let cfg = &self.shard.ctx.config;
        if cfg.disconnect_on_buffer_full {
            if let Some(s) = self.index.borrow().sockets.get(key).filter(|s| !s.closing) {
                self.counters(Some(s.app)).slow_consumer_disconnections.inc();
            }
            self.close(key, &ProtocolError::BufferFull { limit: cfg.max_queued_messages });
        } else {
            // Per message: not at info; the socket stays open by configuration.
            log::debug!(shard = self.shard.id; "socket queue full, message dropped for it");
        }
    }

    /// Acts on every local socket of some users (`Msg::ToUsers`).
    pub fn to_users(&self, t: ToUsers) {
        let ToUsers { app, user_ids, action } = t;
        let keys: Vec<(SocketKey, SocketId)> = {
            let index = self.index.borrow();
            user_ids.iter().flat_map(|u| index.user_sockets(app, u).iter().map(|&k| (k, index.sockets[k].id))).collect()
        };
        for (key, id) in keys {
            match &action {
                UserAction::Deliver { payload, exclude } if Some(id) != *exclude => {
                    let bound = self.queue_bound();
                    let full = {
                        let mut index = self.index.borrow_mut();
                        let pushed = index
                            .live(key, id)
                            .and_then(|s| Some(s.out.push(frame_in(s.format, payload)?, bound.frames, bound.bytes)));
                        match pushed {
                            Some(Pushed::NeedsFlush) => {
                                self.writer.list(key);
                                false
                            }
                            Some(Pushed::Full) => true,
                            _ => false,
                        }
                    };
                    if full {
                        self.overflow(key);
                    }
                }
                UserAction::Deliver { .. } => {}
                UserAction::Close(err) => self.close(key, err),
                UserAction::Revoked(sockets) if sockets.contains(&id) => self.end_token(key, TokenEnd::Revoked),
                UserAction::Revoked(_) => {}
            }
        }
    }

    /// Tells the socket its capability token expired or was revoked; a revoked one is closed
    /// with 4009 at once, an expired one gets a grace period to refresh (`sweeper.rs`).
    pub fn end_token(&self, key: SocketKey, why: TokenEnd) {
        self.send_json(key, &outbound::token_expired(why));
        if why == TokenEnd::Revoked {
            self.close_ws(key, TOKEN_CLOSE, "capability token revoked");
        }
    }

    /// Sends `pusher:error` and a close frame with the error's code, then stops the socket
    /// once they are written. The socket leaves every channel at once.
    pub fn close(&self, key: SocketKey, err: &ProtocolError) {
        let dialect = match self.index.borrow().sockets.get(key) {
            Some(s) if !s.closing => s.dialect,
            _ => return,
        };
        let message = err.to_string();
        self.send_json(key, &outbound::error(dialect, err.code(), &message));
        self.close_ws(key, err.code(), &message);
    }

    /// Queues a close frame and stops the socket once it is written (no `pusher:error`).
    pub fn close_ws(&self, key: SocketKey, code: u16, reason: &str) {
        {
            let mut index = self.index.borrow_mut();
            let Some(s) = index.sockets.get_mut(key).filter(|s| !s.closing) else { return };
            if s.out.push_unbounded(codec::encode_close(code, reason).into()) == Pushed::NeedsFlush {
                self.writer.list(key);
            }
            s.out.close_when_drained = true;
            s.closing = true;
            s.close_code = code;
            s.last_activity = Instant::now();
        }
        self.detach(key);
    }

    /// Stop step: closes every socket with 4200 and waits for them to go, at most `grace`.
    pub async fn close_all(&self, grace: Duration) {
        self.draining.set(true);
        let keys: Vec<SocketKey> = self.index.borrow().sockets.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close(key, &ProtocolError::ServerShutdown);
        }
        let deadline = Instant::now() + grace;
        while !self.index.borrow().sockets.is_empty() && Instant::now() < deadline {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A native Ping frame (V2 heartbeat).
    pub fn send_ping(&self, key: SocketKey) {
        self.send_frame(key, codec::encode(Opcode::Ping, b"").into());
    }
}
