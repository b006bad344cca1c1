//! The event loop of one worker thread: a mio (epoll, edge-triggered) reactor that drives many
//! WebSocket client connections through connect → upgrade → `connection_established` → open,
//! answers pings by itself and hands everything else to a scenario's [`Driver`].
//!
//! Steady-state receiving allocates nothing: bytes are read into one per-thread buffer, frames are
//! handed out as slices of it, and the event name is found by a byte scan.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddrV4;
use std::time::Duration;

use mio::event::Event;
use mio::{Events, Interest, Poll, Registry, Token};
use slab::Slab;

use crate::clock::{now_ns, MS};
use crate::net;
use crate::pusher::{self, Kind, Protocol};
use crate::ws::codec::{self, FrameReader, Msg};
use crate::ws::handshake;

pub type ConnId = usize;

/// Tokens at or above this belong to the driver (e.g. the HTTP publisher).
pub const FOREIGN_TOKEN_BASE: usize = 1 << 40;

/// How the engine reaches the server.
#[derive(Clone)]
pub struct Target {
    /// Where HTTP publishes go.
    pub addr: SocketAddrV4,
    /// Where sockets connect: socket `tag` to the `tag % len`-th (several nodes of a cluster).
    pub socket_addrs: Vec<SocketAddrV4>,
    pub host_header: String,
    /// `/app/KEY?protocol=…`
    pub path: String,
    pub proto: Protocol,
    /// Bind sockets to 127.0.0.1..=127.0.0.K (0: let the kernel choose).
    pub source_ips: u32,
    pub connect_timeout_ns: u64,
    pub close_timeout_ns: u64,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// socket()/bind()/connect() failed at once (e.g. EADDRNOTAVAIL, EMFILE).
    ConnectError(i32),
    /// The TCP connect failed (refused, reset…).
    ConnectFailed,
    /// The upgrade was answered with this HTTP status (0: garbage or bad accept key).
    Upgrade(u16),
    /// No `connection_established` within the connect timeout.
    ConnectTimeout,
    /// We closed, and the server completed the close handshake (or closed TCP).
    Finished,
    /// We closed, and the server did not answer in time.
    CloseTimeout,
    /// The server sent a close frame (with this code) first.
    ServerClose(Option<u16>),
    /// TCP EOF or reset without a close frame.
    Eof,
    Io,
    Protocol,
}

impl Cause {
    /// Failed before the socket was usable.
    pub fn is_connect_failure(self) -> bool {
        matches!(self, Cause::ConnectError(_) | Cause::ConnectFailed | Cause::Upgrade(_) | Cause::ConnectTimeout)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Handshaking,
    /// Upgraded, waiting for `connection_established`.
    Upgraded,
    Open,
    Closing,
}

struct Conn {
    stream: mio::net::TcpStream,
    state: State,
    gen: u32,
    tag: u32,
    out: Vec<u8>,
    out_pos: usize,
    reader: FrameReader,
    handshake: Vec<u8>,
    key: [u8; 24],
    socket_id: [u8; 40],
    socket_id_len: u8,
}

/// What a scenario does with the connections.
pub trait Driver {
    /// Called once per loop turn; returns the time (monotonic ns) it wants to be called again
    /// at the latest, or None to stop the loop.
    fn tick(&mut self, io: &mut Engine, now: u64) -> Option<u64>;
    /// `connection_established` arrived; `io.socket_id(id)` is set.
    fn on_established(&mut self, _io: &mut Engine, _id: ConnId, _tag: u32) {}
    /// Any other text frame: a system event or a channel event.
    fn on_event(&mut self, _io: &mut Engine, _id: ConnId, _tag: u32, _kind: Kind, _text: &[u8]) {}
    /// The connection has gone (its id may already be reused); keyed by tag.
    fn on_closed(&mut self, _io: &mut Engine, _tag: u32, _cause: Cause) {}
    /// Readiness of a token ≥ FOREIGN_TOKEN_BASE that the driver registered itself.
    fn on_foreign(&mut self, _io: &mut Engine, _ev: &Event) {}
}

pub struct Engine {
    registry: Registry,
    conns: Slab<Conn>,
    target: Target,
    next_gen: u32,
    /// Read buffer shared by all connections of this thread.
    scratch: Vec<u8>,
    /// (deadline, id, gen): connections waiting for connection_established, in deadline order.
    connect_deadlines: VecDeque<(u64, ConnId, u32)>,
    /// (deadline, id, gen): connections waiting for the server's close, in deadline order.
    close_deadlines: VecDeque<(u64, ConnId, u32)>,
    /// Connections that ended, reported to the driver by the loop (never re-entrantly).
    ended: Vec<(u32, Cause)>,
    pending: usize,
}

impl Engine {
    pub fn new(registry: Registry, target: Target) -> Engine {
        Engine {
            registry,
            conns: Slab::with_capacity(1024),
            target,
            next_gen: 0,
            scratch: vec![0; 256 * 1024],
            connect_deadlines: VecDeque::new(),
            close_deadlines: VecDeque::new(),
            ended: Vec::new(),
            pending: 0,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn proto(&self) -> Protocol {
        self.target.proto
    }

    /// Connections not yet open (connecting, upgrading, waiting for connection_established).
    pub fn pending(&self) -> usize {
        self.pending
    }

    pub fn socket_id(&self, id: ConnId) -> &[u8] {
        self.conns.get(id).map(|c| &c.socket_id[..c.socket_id_len as usize]).unwrap_or(b"")
    }

    /// Starts a connection; `tag` is the driver's name for it (also picks the source address).
    /// An immediate failure is reported through `on_closed` like any other (and gives None).
    pub fn open(&mut self, tag: u32) -> Option<ConnId> {
        let src = net::source_ip(tag as u64, self.target.source_ips);
        let to = self.target.socket_addrs[tag as usize % self.target.socket_addrs.len()];
        let mut stream = match net::connect(src, to) {
            Ok(s) => s,
            Err(e) => {
                self.ended.push((tag, Cause::ConnectError(e.raw_os_error().unwrap_or(0))));
                return None;
            }
        };
        let entry = self.conns.vacant_entry();
        let id = entry.key();
        if let Err(e) = self.registry.register(&mut stream, Token(id), Interest::READABLE | Interest::WRITABLE) {
            self.ended.push((tag, Cause::ConnectError(e.raw_os_error().unwrap_or(0))));
            return None;
        }
        self.next_gen = self.next_gen.wrapping_add(1);
        entry.insert(Conn {
            stream,
            state: State::Connecting,
            gen: self.next_gen,
            tag,
            out: Vec::new(),
            out_pos: 0,
            reader: FrameReader::default(),
            handshake: Vec::new(),
            key: handshake::new_key(),
            socket_id: [0; 40],
            socket_id_len: 0,
        });
        self.pending += 1;
        self.connect_deadlines.push_back((now_ns() + self.target.connect_timeout_ns, id, self.next_gen));
        Some(id)
    }

    /// Sends one masked text frame (queued if the socket is busy or not open yet).
    pub fn send_text(&mut self, id: ConnId, payload: &[u8]) {
        self.send_frame(id, codec::OP_TEXT, payload);
    }

    /// Several text frames in one write, so the server reads them together (a pipelined
    /// subscribe and resume).
    pub fn send_texts<'a>(&mut self, id: ConnId, payloads: impl IntoIterator<Item = &'a [u8]>) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.state == State::Closing {
            return;
        }
        for p in payloads {
            codec::encode_frame(&mut c.out, codec::OP_TEXT, p, codec::random_mask());
        }
        if matches!(c.state, State::Upgraded | State::Open) {
            self.flush(id);
        }
    }

    fn send_frame(&mut self, id: ConnId, opcode: u8, payload: &[u8]) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.state == State::Closing {
            return;
        }
        codec::encode_frame(&mut c.out, opcode, payload, codec::random_mask());
        if matches!(c.state, State::Upgraded | State::Open) {
            self.flush(id);
        }
    }

    /// Starts the closing handshake (close frame 1000); the end is reported via `on_closed`
    /// as `Finished` or `CloseTimeout`. A connection that is not open yet is dropped at once
    /// and reported as `Finished`.
    pub fn close(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        match c.state {
            State::Open | State::Upgraded => {
                if c.state == State::Upgraded {
                    self.pending -= 1;
                }
                codec::encode_frame(&mut c.out, codec::OP_CLOSE, &1000u16.to_be_bytes(), codec::random_mask());
                c.state = State::Closing;
                let gen = c.gen;
                self.close_deadlines.push_back((now_ns() + self.target.close_timeout_ns, id, gen));
                self.flush(id);
            }
            State::Closing => {}
            _ => self.end(id, Cause::Finished),
        }
    }

    /// Writes as much queued output as the socket takes.
    fn flush(&mut self, id: ConnId) {
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        while c.out_pos < c.out.len() {
            match c.stream.write(&c.out[c.out_pos..]) {
                Ok(0) => break,
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    let cause = if c.state == State::Closing { Cause::Finished } else { Cause::Io };
                    self.end(id, cause);
                    return;
                }
            }
        }
        c.out.clear();
        c.out_pos = 0;
    }

    /// Drops a connection abruptly: the TCP socket is closed without a WebSocket close frame.
    /// Not reported through `on_closed` (the driver asked for it); `id` may be reused at once.
    pub fn abort(&mut self, id: ConnId) {
        self.remove(id);
    }

    /// Removes a connection and queues its report to the driver.
    fn end(&mut self, id: ConnId, cause: Cause) {
        if let Some(tag) = self.remove(id) {
            self.ended.push((tag, cause));
        }
    }

    /// Removes a connection (closing its socket); its tag, or None if there was none.
    fn remove(&mut self, id: ConnId) -> Option<u32> {
        if !self.conns.contains(id) {
            return None;
        }
        let mut c = self.conns.remove(id);
        if matches!(c.state, State::Connecting | State::Handshaking | State::Upgraded) {
            self.pending -= 1;
        }
        let _ = self.registry.deregister(&mut c.stream);
        Some(c.tag)
    }

    fn alive(&self, id: ConnId, gen: u32) -> bool {
        self.conns.get(id).is_some_and(|c| c.gen == gen)
    }

    /// Times out connects and closes that took too long.
    fn expire(&mut self, now: u64) {
        while let Some(&(deadline, id, gen)) = self.connect_deadlines.front() {
            if deadline > now {
                break;
            }
            self.connect_deadlines.pop_front();
            if self.alive(id, gen)
                && matches!(self.conns[id].state, State::Connecting | State::Handshaking | State::Upgraded)
            {
                self.end(id, Cause::ConnectTimeout);
            }
        }
        while let Some(&(deadline, id, gen)) = self.close_deadlines.front() {
            if deadline > now {
                break;
            }
            self.close_deadlines.pop_front();
            if self.alive(id, gen) && self.conns[id].state == State::Closing {
                self.end(id, Cause::CloseTimeout);
            }
        }
    }

    fn on_ready<D: Driver>(&mut self, driver: &mut D, ev: &Event) {
        let id = ev.token().0;
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if c.state == State::Connecting {
            if ev.is_error() || matches!(c.stream.take_error(), Ok(Some(_)) | Err(_)) {
                self.end(id, Cause::ConnectFailed);
                return;
            }
            if c.stream.peer_addr().is_err() {
                return; // not connected yet
            }
            c.state = State::Handshaking;
            let mut out = std::mem::take(&mut c.out); // frames queued before the upgrade go after it
            handshake::write_request(&mut c.out, &self.target.host_header, &self.target.path, &c.key);
            c.out.append(&mut out);
            self.flush(id);
            if !self.conns.contains(id) {
                return;
            }
        } else if ev.is_writable() {
            self.flush(id);
            if !self.conns.contains(id) {
                return;
            }
        }
        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
            self.read(driver, id, ev.is_read_closed() || ev.is_error());
        }
    }

    /// Reads until the socket would block, dispatching every message.
    /// `peer_closed`: the event reported the peer's FIN, so read on to EOF even after a short read.
    fn read<D: Driver>(&mut self, driver: &mut D, id: ConnId, peer_closed: bool) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let gen = self.conns[id].gen;
        while let Some(c) = self.conns.get_mut(id).filter(|c| c.gen == gen) {
            match c.stream.read(&mut scratch) {
                Ok(0) => {
                    let cause = if c.state == State::Closing {
                        Cause::Finished
                    } else if c.state == State::Open {
                        Cause::Eof
                    } else {
                        Cause::ConnectFailed
                    };
                    self.end(id, cause);
                    break;
                }
                Ok(n) => {
                    self.input(driver, id, gen, &scratch[..n]);
                    // A short read drained the socket: with edge-triggered epoll new data
                    // raises a new event, so the extra read() that would say EAGAIN is skipped.
                    if n < scratch.len() && !peer_closed {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    let cause = match c.state {
                        State::Closing => Cause::Finished,
                        State::Open => Cause::Io,
                        _ => Cause::ConnectFailed,
                    };
                    self.end(id, cause);
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    fn input<D: Driver>(&mut self, driver: &mut D, id: ConnId, gen: u32, bytes: &[u8]) {
        let c = &mut self.conns[id];
        if c.state != State::Handshaking {
            return self.feed(driver, id, gen, bytes);
        }
        c.handshake.extend_from_slice(bytes);
        match handshake::parse_response(&c.handshake, &c.key) {
            Ok(None) => {}
            Ok(Some(n)) => {
                c.state = State::Upgraded;
                let mut rest = std::mem::take(&mut c.handshake);
                rest.drain(..n);
                if !rest.is_empty() {
                    self.feed(driver, id, gen, &rest);
                }
            }
            Err(handshake::HandshakeError::Status(s)) => self.end(id, Cause::Upgrade(s)),
            Err(_) => self.end(id, Cause::Upgrade(0)),
        }
    }

    /// Runs WebSocket bytes through the connection's frame parser.
    fn feed<D: Driver>(&mut self, driver: &mut D, id: ConnId, gen: u32, bytes: &[u8]) {
        let mut reader = std::mem::take(&mut self.conns[id].reader);
        let result = reader.feed(bytes, &mut |msg| self.message(driver, id, gen, msg));
        if let Some(c) = self.conns.get_mut(id).filter(|c| c.gen == gen) {
            c.reader = reader;
            if result.is_err() {
                self.end(id, Cause::Protocol);
            }
        }
    }

    fn message<D: Driver>(&mut self, driver: &mut D, id: ConnId, gen: u32, msg: Msg<'_>) {
        let Some(c) = self.conns.get_mut(id).filter(|c| c.gen == gen) else {
            return;
        };
        let tag = c.tag;
        match msg {
            Msg::Text(text) | Msg::Binary(text) => {
                let name = if matches!(msg, Msg::Binary(_)) {
                    pusher::binary_event_name(text)
                } else {
                    pusher::event_name(text)
                };
                let kind = name.map_or(Kind::OtherSystem, pusher::classify);
                match kind {
                    Kind::ConnectionEstablished if c.state == State::Upgraded => {
                        let sid = pusher::socket_id(text).unwrap_or(b"");
                        let n = sid.len().min(c.socket_id.len());
                        c.socket_id[..n].copy_from_slice(&sid[..n]);
                        c.socket_id_len = n as u8;
                        c.state = State::Open;
                        self.pending -= 1;
                        driver.on_established(self, id, tag);
                    }
                    Kind::Ping => {
                        let pong = pusher::pong(self.target.proto);
                        self.send_text(id, pong);
                    }
                    Kind::Pong => {}
                    _ => driver.on_event(self, id, tag, kind, text),
                }
            }
            Msg::Ping(payload) => self.send_frame(id, codec::OP_PONG, payload),
            Msg::Pong => {}
            Msg::Close(code) => {
                if c.state == State::Closing {
                    self.end(id, Cause::Finished);
                } else {
                    let echo = code.unwrap_or(1000).to_be_bytes();
                    codec::encode_frame(
                        &mut c.out,
                        codec::OP_CLOSE,
                        if code.is_some() { &echo } else { &[] },
                        codec::random_mask(),
                    );
                    self.flush(id);
                    self.end(id, Cause::ServerClose(code));
                }
            }
        }
    }

    /// Hands queued `on_closed` reports to the driver (which may open new connections).
    fn report_ended<D: Driver>(&mut self, driver: &mut D) {
        while let Some((tag, cause)) = self.ended.pop() {
            driver.on_closed(self, tag, cause);
        }
    }
}

/// Runs one worker's loop until the driver's `tick` returns None.
pub fn run<D: Driver>(mut poll: Poll, engine: &mut Engine, driver: &mut D) {
    let mut events = Events::with_capacity(1024);
    loop {
        let now = now_ns();
        engine.expire(now);
        engine.report_ended(driver);
        let Some(wake_at) = driver.tick(engine, now) else {
            break;
        };
        engine.report_ended(driver);
        // Wake at least every 20 ms to notice phase changes made by the coordinator.
        let wait = wake_at.saturating_sub(now_ns()).min(20 * MS);
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_nanos(wait))) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("loadtest: poll failed: {e}");
                break;
            }
        }
        for ev in events.iter() {
            if ev.token().0 >= FOREIGN_TOKEN_BASE {
                driver.on_foreign(engine, ev);
            } else {
                engine.on_ready(driver, ev);
            }
            engine.report_ended(driver);
        }
    }
}
