//! One Pusher WebSocket connection after the handshake: the read loop, and the dispatch of each
//! client command (`cmd/`, one file each) in order. A panic while handling the socket's input
//! is caught here: that socket is closed with 1011 and the shard goes on serving the others.

use super::codec::{self, Decoder, Incoming, Opcode, WsError};
use super::conn::Conn;
use super::handshake::Negotiated;
use super::hub::Hub;
use super::index::{Socket, SocketKey};
use crate::config::{App, AppIdx};
use crate::metrics::PanicSite;
use crate::protocol::inbound::{ClientFrame, Command};
use crate::protocol::outbound::{self, Dialect};
use crate::protocol::ProtocolError;
use crate::shard::Shard;
use crate::socket_id::SocketId;
use ahash::AHashMap;
use std::cell::RefCell;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// The close code of a socket whose handling failed (RFC 6455 "internal error").
const INTERNAL_ERROR: u16 = 1011;

/// What one connection's commands share.
pub(super) struct Session {
    pub hub: Rc<Hub>,
    pub key: SocketKey,
    pub id: SocketId,
    pub app: AppIdx,
    pub dialect: Dialect,
    /// Client events come back to the sender (V2 `echo_messages`).
    pub echo: bool,
    /// Channels resumed before they were subscribed: stream and serial reached. Boxed and
    /// absent until used: most sockets never resume.
    pub resumed: RefCell<Option<Box<Resumed>>>,
}

/// Per channel: the stream and serial a resume reached.
pub(super) type Resumed = AHashMap<Arc<str>, (Arc<str>, u64)>;

/// Units decoded from one read, and how the read ended.
struct Decoded {
    units: Vec<Incoming>,
    used: usize,
    error: Option<WsError>,
}

fn decode_all(dec: &mut Decoder, buf: &[u8]) -> Decoded {
    let mut d = Decoded { units: Vec::new(), used: 0, error: None };
    loop {
        match dec.decode(&buf[d.used..]) {
            Ok((unit, n)) => {
                d.units.extend(unit);
                if n == 0 {
                    return d;
                }
                d.used += n;
            }
            Err(e) => {
                d.error = Some(e);
                return d;
            }
        }
    }
}

/// Runs a connected socket until it closes. `handshake` is the 101 response, not yet sent;
/// `pending` holds bytes that arrived with the handshake.
pub async fn run(hub: Rc<Hub>, conn: Rc<Conn>, app: AppIdx, options: Negotiated, handshake: Vec<u8>, pending: Vec<u8>) {
    let dialect = options.dialect;
    let (key, id) = hub.add_socket(conn.clone(), app, dialect, handshake);
    let session = Session { hub: hub.clone(), key, id, app, dialect, echo: options.echo, resumed: RefCell::new(None) };
    if let Err(p) = futures_lite::FutureExt::catch_unwind(AssertUnwindSafe(session.read_loop(&conn, pending))).await {
        let socket_id = id.to_string();
        hub.shard.report_panic(Some(app), PanicSite::Socket, &format!("socket {socket_id}"), &*p);
        hub.close_ws(key, INTERNAL_ERROR, "Internal error");
        // As after any close: input is ignored until the close frame is written and the
        // connection ends (or the sweeper drops it).
        while matches!(conn.read(&hub.scratch).await, Ok(n) if n > 0) {}
    }
    hub.remove_socket(key, id);
}

impl Session {
    async fn read_loop(&self, conn: &Conn, mut pending: Vec<u8>) {
        let hub = &self.hub;
        let mut decoder = Decoder::new(hub.shard.ctx.config.max_message_bytes);
        let mut fresh = 0; // bytes of the last read waiting in the scratch buffer
        loop {
            let decoded = if pending.is_empty() {
                let scratch = hub.scratch.borrow();
                let d = decode_all(&mut decoder, &scratch[..fresh]);
                if d.error.is_none() {
                    pending.extend_from_slice(&scratch[d.used..fresh]);
                }
                d
            } else {
                pending.extend_from_slice(&hub.scratch.borrow()[..fresh]);
                let d = decode_all(&mut decoder, &pending);
                pending.drain(..d.used);
                d
            };
            if pending.is_empty() && pending.capacity() > 0 {
                pending = Vec::new(); // an idle socket keeps no buffer
            }
            for unit in decoded.units {
                // Boxed so the state of a subscribe or sign-in in progress is not part of every
                // idle socket's future.
                Box::pin(self.on_unit(unit)).await;
            }
            // Gates opened by subscribes of this read had their chance to serve a resume sent
            // with them: what they held goes out now.
            hub.release_gates(self.key, None);
            if let Some(e) = decoded.error {
                pending.clear();
                hub.close_ws(self.key, e.close_code(), e.reason());
            }
            fresh = match conn.read(&hub.scratch).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
        }
    }

    pub fn shard(&self) -> &Rc<Shard> {
        &self.hub.shard
    }

    pub fn app(&self) -> &App {
        self.hub.shard.ctx.apps.get(self.app)
    }

    pub fn socket_id(&self) -> String {
        self.id.to_string()
    }

    /// Runs `f` on this socket's state if it is still open.
    pub fn with_socket<T>(&self, f: impl FnOnce(&mut Socket) -> T) -> Option<T> {
        self.hub.index.borrow_mut().live(self.key, self.id).map(f)
    }

    pub fn send(&self, json: &[u8]) {
        self.hub.send_json(self.key, json);
    }

    async fn on_unit(&self, unit: Incoming) {
        match unit {
            Incoming::Text(bytes) | Incoming::Binary(bytes) => {
                let c = self.hub.counters(Some(self.app));
                c.ws_received.inc();
                c.ws_received_bytes.add(bytes.len() as u64);
                let open = self.with_socket(|s| s.last_activity = Instant::now()).is_some();
                if open {
                    if let Err(e) = self.on_message(&bytes).await {
                        self.fail(e);
                    }
                }
            }
            Incoming::Ping(payload) => {
                // A native ping counts as activity and answers a pending pusher:ping.
                self.with_socket(|s| {
                    s.last_activity = Instant::now();
                    s.ping_sent = None;
                });
                self.hub.send_frame(self.key, codec::encode(Opcode::Pong, &payload).into());
            }
            Incoming::Pong => {
                // The answer to the server's native ping (V2 heartbeat).
                self.with_socket(|s| {
                    s.last_activity = Instant::now();
                    s.ping_sent = None;
                });
            }
            Incoming::Close(code) => {
                let code = code.map_or(1000, |(c, _)| c);
                self.hub.close_ws(self.key, code, "");
            }
        }
    }

    /// Reports a command's error: fatal ones close the socket with their code.
    fn fail(&self, e: ProtocolError) {
        if e.is_fatal() {
            self.hub.close(self.key, &e);
        } else {
            self.send(&outbound::error(self.dialect, e.code(), &e.to_string()));
        }
    }

    async fn on_message(&self, bytes: &[u8]) -> Result<(), ProtocolError> {
        let frame = ClientFrame::parse(bytes)?;
        match frame.command() {
            Command::Ping => {
                self.with_socket(|s| s.ping_sent = None);
                self.hub.send_heartbeat(self.key, &outbound::pong(self.dialect));
            }
            Command::Pong => {
                self.with_socket(|s| s.ping_sent = None);
            }
            Command::Subscribe => self.subscribe(&frame).await?,
            Command::Unsubscribe => self.unsubscribe(&frame)?,
            Command::Signin => self.signin(&frame).await?,
            Command::Resume => self.resume(&frame).await?,
            Command::ChannelHistory => self.channel_history(&frame).await?,
            Command::ClientEvent(name) => self.client_event(&frame, name)?,
            Command::Other if self.hub.shard.ctx.config.test_hooks && frame.event() == "sockudo_test:panic" => {
                panic!("test hook: a panic injected into socket {}", self.id)
            }
            Command::Other => {}
        }
        Ok(())
    }
}
