//! One Pusher WebSocket connection after the handshake: the read loop, and the dispatch of each
//! client command (`cmd/`, one file each) in order. A panic while handling the socket's input
//! is caught here: that socket is closed with 1011 and the shard goes on serving the others.

use super::codec::{self, Decoder, Incoming, Opcode, WsError};
use super::conn::Conn;
use super::handshake::Negotiated;
use super::hub::Hub;
use super::index::{Socket, SocketKey};
use crate::auth::token::Grant;
use crate::config::{App, AppIdx};
use crate::metrics::PanicSite;
use crate::protocol::inbound::{ClientFrame, Command};
use crate::protocol::outbound::{self, Dialect};
use crate::protocol::wire::Format;
use crate::protocol::ProtocolError;
use crate::shard::Shard;
use crate::socket_id::SocketId;
use ahash::AHashMap;
use std::cell::RefCell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
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
    /// How its frames are encoded (V2 `format`).
    pub format: Format,
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

/// Indexes a connected socket (queueing the 101 response `handshake` and
/// `connection_established`), holding its capability `token` if it came with one, and returns
/// the task that runs it until it closes. `pending` holds bytes that arrived with the handshake.
///
/// Every idle socket holds this future, so it is kept small: built from plain functions that
/// return `async move` blocks (an `async fn` keeps a second copy of its arguments), with the
/// work of a read boxed while it runs (`on_units`).
pub fn run(
    hub: Rc<Hub>,
    conn: Rc<Conn>,
    app: AppIdx,
    options: Negotiated,
    token: Option<Grant>,
    handshake: Vec<u8>,
    pending: Vec<u8>,
) -> impl Future<Output = ()> {
    let dialect = options.dialect;
    let format = options.format;
    let (key, id) = hub.add_socket(conn.clone(), app, dialect, (options.encoding, format), handshake);
    let session = Session { hub, key, id, app, dialect, format, echo: options.echo, resumed: RefCell::new(None) };
    if let Some(grant) = token {
        session.hold_token(grant);
    }
    let after_panic = AfterPanic { hub: session.hub.clone(), conn: conn.clone(), key, id, app };
    SessionTask {
        reading: futures_lite::FutureExt::catch_unwind(AssertUnwindSafe(session.read_loop(conn, pending))),
        after_panic: Some(after_panic),
    }
}

pin_project_lite::pin_project! {
    /// One socket's task: its read loop, and what a panic in it needs to close the socket.
    struct SessionTask<F> {
        #[pin]
        reading: F,
        after_panic: Option<AfterPanic>,
    }
}

impl<F: Future<Output = std::thread::Result<()>>> Future for SessionTask<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let Poll::Ready(outcome) = this.reading.poll(cx) else { return Poll::Pending };
        if let (Err(p), Some(after)) = (outcome, this.after_panic.take()) {
            after.close(&*p);
        }
        Poll::Ready(())
    }
}

struct AfterPanic {
    hub: Rc<Hub>,
    conn: Rc<Conn>,
    key: SocketKey,
    id: SocketId,
    app: AppIdx,
}

impl AfterPanic {
    /// Logs and counts the panic and closes the socket with 1011. As after any close, input is
    /// ignored until the close frame is written and the connection ends (or the sweeper drops
    /// it), on a task of its own: this path is rare, and every idle socket's task stays small.
    fn close(self, payload: &(dyn std::any::Any + Send)) {
        let AfterPanic { hub, conn, key, id, app } = self;
        hub.shard.report_panic(Some(app), PanicSite::Socket, &format!("socket {id}"), payload);
        hub.close_ws(key, INTERNAL_ERROR, "Internal error");
        let shard = hub.shard.clone();
        crate::shard::spawn(&shard, "closing a socket after a panic", async move {
            while matches!(conn.read(&hub.scratch).await, Ok(n) if n > 0) {}
            hub.remove_socket(key, id);
        });
    }
}

impl Session {
    fn read_loop(self, conn: Rc<Conn>, mut pending: Vec<u8>) -> impl Future<Output = ()> {
        let mut decoder = Decoder::new(self.hub.shard.ctx.config.max_message_bytes);
        async move {
            let mut fresh = 0; // bytes of the last read waiting in the scratch buffer
            loop {
                let error = {
                    let (units, error) = self.decode(&mut decoder, &mut pending, fresh);
                    if !units.is_empty() {
                        // Boxed so the state of a subscribe or sign-in in progress is not part
                        // of every idle socket's future.
                        Box::pin(self.on_units(units)).await;
                    }
                    error
                };
                // Gates opened by subscribes of this read had their chance to serve a resume
                // sent with them: what they held goes out now.
                self.hub.release_gates(self.key, None);
                if let Some(e) = error {
                    pending.clear();
                    self.hub.close_ws(self.key, e.close_code(), e.reason());
                }
                fresh = match conn.read(&self.hub.scratch).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
            }
            self.hub.remove_socket(self.key, self.id);
        }
    }

    /// Decodes what the last read brought (`fresh` bytes in the shard's scratch buffer, after
    /// what `pending` kept of earlier reads); keeps an incomplete frame in `pending`.
    fn decode(&self, decoder: &mut Decoder, pending: &mut Vec<u8>, fresh: usize) -> (Vec<Incoming>, Option<WsError>) {
        let scratch = self.hub.scratch.borrow();
        let d = if pending.is_empty() {
            let d = decode_all(decoder, &scratch[..fresh]);
            if d.error.is_none() {
                pending.extend_from_slice(&scratch[d.used..fresh]);
            }
            d
        } else {
            pending.extend_from_slice(&scratch[..fresh]);
            let d = decode_all(decoder, pending);
            pending.drain(..d.used);
            d
        };
        if pending.is_empty() && pending.capacity() > 0 {
            *pending = Vec::new(); // an idle socket keeps no buffer
        }
        (d.units, d.error)
    }

    async fn on_units(&self, units: Vec<Incoming>) {
        for unit in units {
            self.on_unit(unit).await;
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

    /// The filter of this socket's subscription to `channel`, if it has one.
    pub fn filter_of(&self, channel: &str) -> Option<std::rc::Rc<crate::protocol::filter::Filter>> {
        self.with_socket(|s| s.channels.get(channel)?.filter.clone()).flatten()
    }

    /// Delta compression is a form of V2 JSON frames: a delta rebuilds the JSON text of a
    /// message, which a binary connection does not receive (`docs/protocol/v2.md#delta-compression`).
    pub fn takes_deltas(&self) -> bool {
        self.dialect == Dialect::V2 && self.format == Format::Json
    }

    pub fn send(&self, json: &[u8]) {
        self.hub.send_json(self.key, json);
    }

    async fn on_unit(&self, unit: Incoming) {
        match unit {
            // A binary message is in the connection's format; text is always JSON.
            Incoming::Text(bytes) => self.on_data(&bytes, Format::Json).await,
            Incoming::Binary(bytes) => self.on_data(&bytes, self.format).await,
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

    async fn on_data(&self, bytes: &[u8], format: Format) {
        let c = self.hub.counters(Some(self.app));
        c.ws_received.inc();
        c.ws_received_bytes.add(bytes.len() as u64);
        if self.with_socket(|s| s.last_activity = Instant::now()).is_none() {
            return;
        }
        let result = match format.decode(bytes) {
            Ok(json) => self.on_message(&json).await,
            Err(why) => Err(ProtocolError::invalid_format(format!("Decode failed: {why}"))),
        };
        if let Err(e) = result {
            self.fail(e);
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
            Command::PresenceUpdate => self.presence_update(&frame).await?,
            Command::EnableDelta => self.enable_delta(&frame)?,
            Command::DeltaSyncError => self.delta_sync_error(&frame)?,
            Command::Auth => self.refresh_token(&frame)?,
            Command::ClientEvent(name) => self.client_event(&frame, name)?,
            Command::AiEvent(name) => self.ai_event(&frame, name)?,
            Command::Other if self.hub.shard.ctx.config.test_hooks && frame.event() == "sockudo_test:panic" => {
                panic!("test hook: a panic injected into socket {}", self.id)
            }
            Command::Other => {}
        }
        Ok(())
    }
}
