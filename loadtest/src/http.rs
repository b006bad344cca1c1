//! The HTTP publisher: signed `POST /apps/ID/events` (or `batch_events`) over a few keep-alive
//! HTTP/1.1 connections with pipelining, registered on the worker's poll. Requests are built in
//! reusable buffers: publishing allocates nothing in steady state. [`Requester`] carries one
//! request at a time on such connections (the `appends` writers); both build on `Conns`.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddrV4;

use mio::event::Event;
use mio::{Interest, Registry, Token};

use crate::clock::{now_ns, unix_secs, MS};
use crate::net;
use crate::pusher;
use crate::signing::{self, Signer};
use crate::ws::handshake::find;

pub struct PublishConfig {
    pub addr: SocketAddrV4,
    pub host_header: String,
    pub app_id: String,
    pub key: String,
    pub signer: Signer,
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Length of the `data` string of each event (≥ the timestamp marker).
    pub payload: usize,
    /// A `tags` object (JSON) added to every published event.
    pub tags: Option<String>,
    /// Events per request: 1 → `/events`, more → `/batch_events`.
    pub batch: usize,
    pub source_ips: u32,
}

/// What one request carried: `items` events on consecutive channels from `first_channel`.
#[derive(Clone, Copy, Debug)]
pub struct Inflight {
    pub first_channel: u32,
    pub items: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    /// The connection closed before the answer came.
    Unanswered,
}

pub struct Publisher {
    cfg: PublishConfig,
    conns: Conns,
    /// Per connection: its requests in flight, oldest first.
    inflight: Vec<VecDeque<Inflight>>,
    path_events: String,
    path_batch: String,
    body: Vec<u8>,
    post: PostWriter,
    /// Cleared when the server answers `Connection: close` (then one request per connection).
    keep_alive: bool,
}

impl Publisher {
    pub fn new(registry: &Registry, cfg: PublishConfig, token_base: usize) -> Publisher {
        let n = cfg.connections.max(1);
        Publisher {
            path_events: format!("/apps/{}/events", cfg.app_id),
            path_batch: format!("/apps/{}/batch_events", cfg.app_id),
            conns: Conns::new(registry, cfg.addr, cfg.source_ips, n, token_base),
            inflight: (0..n).map(|_| VecDeque::with_capacity(cfg.pipeline)).collect(),
            body: Vec::with_capacity(4096),
            post: PostWriter::new(cfg.signer.clone(), cfg.key.clone(), cfg.host_header.clone()),
            cfg,
            keep_alive: true,
        }
    }

    fn window(&self) -> usize {
        if self.keep_alive {
            self.cfg.pipeline.max(1)
        } else {
            1
        }
    }

    /// Reopens dropped connections whose back-off has passed.
    pub fn tick(&mut self, registry: &Registry, now: u64) {
        self.conns.tick(registry, now);
    }

    /// Responses by status code, and connection re-opens.
    pub fn stats(&self) -> &HttpStats {
        &self.conns.stats
    }

    pub fn inflight(&self) -> usize {
        self.inflight.iter().map(VecDeque::len).sum()
    }

    /// Sends one request carrying `items` events on channels `first, first+1, …` (mod the
    /// channel count), each with the send time embedded. False if no connection has room.
    pub fn publish(&mut self, channels: &[String], first: u32, items: u32) -> bool {
        let w = self.window();
        let Some(i) = (0..self.inflight.len())
            .filter(|&i| self.conns.is_open(i) && self.inflight[i].len() < w)
            .min_by_key(|&i| self.inflight[i].len())
        else {
            return false;
        };
        let now = now_ns();
        // Body.
        let body = &mut self.body;
        body.clear();
        let batch = items > 1 || self.cfg.batch > 1;
        if batch {
            body.extend_from_slice(b"{\"batch\":[");
        }
        for k in 0..items {
            if k > 0 {
                body.push(b',');
            }
            let ch = &channels[((first + k) as usize) % channels.len()];
            body.extend_from_slice(b"{\"name\":\"lt\",\"channel\":\"");
            body.extend_from_slice(ch.as_bytes());
            body.extend_from_slice(b"\",\"data\":\"");
            pusher::push_timestamp(body, now);
            let pad = self.cfg.payload.saturating_sub(pusher::TS_LEN);
            body.resize(body.len() + pad, b'x');
            body.push(b'"');
            if let Some(tags) = &self.cfg.tags {
                body.extend_from_slice(b",\"tags\":");
                body.extend_from_slice(tags.as_bytes());
            }
            body.push(b'}');
        }
        if batch {
            body.extend_from_slice(b"]}");
        }
        // Signed request.
        let path = if batch { &self.path_batch } else { &self.path_events };
        let c = &mut self.conns.conns[i];
        self.post.write(&mut c.out, path, &self.body, now);
        self.inflight[i].push_back(Inflight { first_channel: first, items });
        if c.connected {
            c.flush();
        }
        true
    }

    /// Handles readiness of one of our tokens; calls `on_response` per answered (or lost) request.
    pub fn on_event(&mut self, registry: &Registry, ev: &Event, on_response: &mut dyn FnMut(Inflight, Outcome)) {
        let (i, eof) = match self.conns.ready(ev) {
            Ready::Read { i, eof } => (i, eof),
            Ready::Failed(i) => return self.drop_conn(registry, i, on_response),
            Ready::NotOurs | Ready::Waiting(_) => return,
        };
        // Responses.
        let mut used = 0;
        let mut close = false;
        loop {
            match parse_response(&self.conns.conns[i].inbuf[used..]) {
                Ok(Some(r)) => {
                    used += r.len;
                    self.conns.stats.count(r.status);
                    if let Some(req) = self.inflight[i].pop_front() {
                        on_response(req, Outcome::Status(r.status));
                    }
                    if r.close {
                        self.keep_alive = false;
                        close = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(()) => {
                    close = true;
                    break;
                }
            }
        }
        self.conns.conns[i].inbuf.drain(..used);
        if close || eof {
            self.drop_conn(registry, i, on_response);
        }
    }

    /// Closes connection `i`; its unanswered requests are reported lost; it reopens on `tick`.
    fn drop_conn(&mut self, registry: &Registry, i: usize, on_response: &mut dyn FnMut(Inflight, Outcome)) {
        self.conns.drop_conn(registry, i);
        while let Some(req) = self.inflight[i].pop_front() {
            on_response(req, Outcome::Unanswered);
        }
    }
}

/// Signed Pusher REST POSTs with a JSON body (`POST path?auth_… HTTP/1.1`), written into
/// reusable buffers; the signature's timestamp is read from the clock at most every 0.5 s.
pub struct PostWriter {
    signer: Signer,
    key: String,
    host_header: String,
    query: Vec<u8>,
    scratch: Vec<u8>,
    unix_ts: u64,
    unix_ts_at: u64,
}

impl PostWriter {
    pub fn new(signer: Signer, key: String, host_header: String) -> PostWriter {
        PostWriter {
            signer,
            key,
            host_header,
            query: Vec::with_capacity(256),
            scratch: Vec::with_capacity(512),
            unix_ts: 0,
            unix_ts_at: 0,
        }
    }

    /// Appends the whole request (head and `body`) for `path`, as sent and signed, to `out`;
    /// `now` is the monotonic clock (ns).
    pub fn write(&mut self, out: &mut Vec<u8>, path: &str, body: &[u8], now: u64) {
        if now - self.unix_ts_at > 500 * MS || self.unix_ts == 0 {
            self.unix_ts = unix_secs();
            self.unix_ts_at = now;
        }
        self.query.clear();
        signing::push_signed_post_query(
            &mut self.query,
            &mut self.scratch,
            &self.signer,
            &self.key,
            path.as_bytes(),
            self.unix_ts,
            body,
        );
        let _ = write!(out, "POST {path}?");
        out.extend_from_slice(&self.query);
        let _ = write!(
            out,
            " HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host_header,
            body.len()
        );
        out.extend_from_slice(body);
    }
}

/// Responses by status code, and connection re-opens, of a [`Publisher`] or [`Requester`].
#[derive(Clone, Debug, Default)]
pub struct HttpStats {
    pub statuses: Vec<(u16, u64)>,
    pub reconnects: u64,
}

impl HttpStats {
    fn count(&mut self, status: u16) {
        match self.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.statuses.push((status, 1)),
        }
    }
}

/// One keep-alive connection of a [`Conns`].
struct HttpConn {
    stream: Option<mio::net::TcpStream>,
    connected: bool,
    out: Vec<u8>,
    out_pos: usize,
    inbuf: Vec<u8>,
    retry_at: u64,
    failures: u32,
}

impl HttpConn {
    /// Writes what `out` holds; false if the connection failed (or is closed).
    fn flush(&mut self) -> bool {
        let Some(s) = self.stream.as_mut() else {
            return false;
        };
        while self.out_pos < self.out.len() {
            match s.write(&self.out[self.out_pos..]) {
                Ok(0) => return false,
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.out.clear();
        self.out_pos = 0;
        true
    }
}

/// What readiness of a token came to, for the owner of the [`Conns`] to act on.
enum Ready {
    /// Not one of our tokens.
    NotOurs,
    /// Connection `i` has nothing to read yet (still opening, or already dropped).
    Waiting(usize),
    /// Connection `i` failed to open or to write: the owner drops it.
    Failed(usize),
    /// Connection `i`'s `inbuf` holds what arrived; `eof`: the server closed it (or reading failed).
    Read { i: usize, eof: bool },
}

/// Keep-alive HTTP/1.1 connections to one address, registered on a worker's poll under tokens
/// `token_base + i`: opening (and re-opening on `tick` with a back-off), writing, reading into
/// each connection's `inbuf`, dropping. What a connection carries — a pipelining window
/// ([`Publisher`]), one request at a time ([`Requester`]) — is up to its owner.
struct Conns {
    addr: SocketAddrV4,
    source_ips: u32,
    conns: Vec<HttpConn>,
    token_base: usize,
    read_buf: Vec<u8>,
    stats: HttpStats,
}

impl Conns {
    fn new(registry: &Registry, addr: SocketAddrV4, source_ips: u32, n: usize, token_base: usize) -> Conns {
        let conns = (0..n)
            .map(|_| HttpConn {
                stream: None,
                connected: false,
                out: Vec::with_capacity(4096),
                out_pos: 0,
                inbuf: Vec::with_capacity(4096),
                retry_at: 0,
                failures: 0,
            })
            .collect();
        let mut pool =
            Conns { addr, source_ips, conns, token_base, read_buf: vec![0; 64 * 1024], stats: HttpStats::default() };
        for i in 0..n {
            pool.connect(registry, i);
        }
        pool
    }

    fn connect(&mut self, registry: &Registry, i: usize) {
        let c = &mut self.conns[i];
        let stream = net::connect(net::source_ip(i as u64, self.source_ips), self.addr).and_then(|mut s| {
            registry.register(&mut s, Token(self.token_base + i), Interest::READABLE | Interest::WRITABLE)?;
            Ok(s)
        });
        match stream {
            Ok(s) => {
                c.stream = Some(s);
                c.connected = false;
            }
            Err(_) => {
                c.failures += 1;
                c.retry_at = now_ns() + 100 * MS * c.failures.min(10) as u64;
            }
        }
    }

    /// Reopens dropped connections whose back-off has passed.
    fn tick(&mut self, registry: &Registry, now: u64) {
        for i in 0..self.conns.len() {
            if self.conns[i].stream.is_none() && self.conns[i].retry_at <= now {
                self.stats.reconnects += 1;
                self.connect(registry, i);
            }
        }
    }

    /// Connection `i` is open or opening.
    fn is_open(&self, i: usize) -> bool {
        self.conns[i].stream.is_some()
    }

    /// Readiness of a token: completes the connect, writes what is pending and reads what came.
    fn ready(&mut self, ev: &Event) -> Ready {
        let Some(i) = ev.token().0.checked_sub(self.token_base).filter(|&i| i < self.conns.len()) else {
            return Ready::NotOurs;
        };
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_mut() else {
            return Ready::Waiting(i);
        };
        if !c.connected {
            if ev.is_error() || matches!(s.take_error(), Ok(Some(_)) | Err(_)) {
                return Ready::Failed(i);
            }
            if s.peer_addr().is_err() {
                return Ready::Waiting(i);
            }
            c.connected = true;
            c.failures = 0;
        }
        if !c.flush() {
            return Ready::Failed(i);
        }
        let s = c.stream.as_mut().expect("checked");
        let mut eof = false;
        loop {
            match s.read(&mut self.read_buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => c.inbuf.extend_from_slice(&self.read_buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        Ready::Read { i, eof }
    }

    /// Closes connection `i` (what it had pending is discarded); it reopens on `tick`.
    fn drop_conn(&mut self, registry: &Registry, i: usize) {
        let c = &mut self.conns[i];
        if let Some(mut s) = c.stream.take() {
            let _ = registry.deregister(&mut s);
        }
        if !c.connected {
            c.failures += 1;
        }
        c.connected = false;
        c.out.clear();
        c.out_pos = 0;
        c.inbuf.clear();
        c.retry_at = now_ns() + 100 * MS * c.failures.min(10) as u64;
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Bytes of the whole response (head + body).
    pub len: usize,
    /// The server will close after it (`Connection: close`).
    pub close: bool,
    /// Where the body starts, and whether it is chunked (see [`response_body`]).
    pub body_start: usize,
    pub chunked: bool,
}

/// Parses one complete HTTP/1.1 response at the start of `buf` (Content-Length or chunked
/// body). `Ok(None)`: incomplete.
pub fn parse_response(buf: &[u8]) -> Result<Option<Response>, ()> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > 64 * 1024 { Err(()) } else { Ok(None) };
    };
    let head = &buf[..head_end];
    let mut lines = head.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().ok_or(())?;
    if !status_line.starts_with(b"HTTP/1.") {
        return Err(());
    }
    let status = status_line
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(())?;
    let (mut content_length, mut chunked, mut close) = (0usize, false, status_line.starts_with(b"HTTP/1.0"));
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            content_length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()).ok_or(())?;
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            close = value.eq_ignore_ascii_case(b"close");
        }
    }
    let body_start = head_end + 4;
    if !chunked {
        let len = body_start + content_length;
        return Ok((buf.len() >= len).then_some(Response { status, len, close, body_start, chunked }));
    }
    let mut pos = body_start;
    loop {
        let Some(eol) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let size_str = buf[pos..pos + eol].split(|&b| b == b';').next().unwrap_or(b"");
        let size =
            std::str::from_utf8(size_str.trim_ascii()).ok().and_then(|s| usize::from_str_radix(s, 16).ok()).ok_or(())?;
        pos += eol + 2;
        if size == 0 {
            // Optional trailers, then an empty line.
            loop {
                let Some(eol) = find(&buf[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Some(Response { status, len: pos, close, body_start, chunked }));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        pos += size + 2;
    }
}

/// The body of a complete response `r` parsed from the start of `buf` (chunks joined).
pub fn response_body<'a>(buf: &'a [u8], r: &Response) -> std::borrow::Cow<'a, [u8]> {
    let body = &buf[r.body_start..r.len];
    if !r.chunked {
        return body.into();
    }
    let mut out = Vec::new();
    let mut pos = 0;
    while let Some(eol) = find(&body[pos..], b"\r\n") {
        let size_str = body[pos..pos + eol].split(|&b| b == b';').next().unwrap_or(b"");
        let size = std::str::from_utf8(size_str.trim_ascii())
            .ok()
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .unwrap_or(0);
        pos += eol + 2;
        if size == 0 || pos + size > body.len() {
            break;
        }
        out.extend_from_slice(&body[pos..pos + size]);
        pos += size + 2;
    }
    out.into()
}

/// What a [`Requester`] connection's request came to.
pub enum Answer<'a> {
    /// The status and the body.
    Status(u16, &'a [u8]),
    /// The connection closed before the answer came.
    Lost,
}

/// Keep-alive HTTP/1.1 connections registered on a worker's poll, each carrying one request at
/// a time: the caller sends the next one when the answer has come (a closed-loop client, e.g.
/// the `appends` writers). Connections that drop are reopened on `tick` with a back-off.
pub struct Requester {
    conns: Conns,
    /// Per connection: a request is in flight.
    busy: Vec<bool>,
    body_buf: Vec<u8>,
}

impl Requester {
    pub fn new(registry: &Registry, addr: SocketAddrV4, source_ips: u32, n: usize, token_base: usize) -> Requester {
        Requester {
            conns: Conns::new(registry, addr, source_ips, n, token_base),
            busy: vec![false; n],
            body_buf: Vec::new(),
        }
    }

    /// Reopens dropped connections whose back-off has passed.
    pub fn tick(&mut self, registry: &Registry, now: u64) {
        self.conns.tick(registry, now);
    }

    /// Responses by status code, and connection re-opens.
    pub fn stats(&self) -> &HttpStats {
        &self.conns.stats
    }

    pub fn connections(&self) -> usize {
        self.busy.len()
    }

    /// Connection `i` is open (or opening) and has no request in flight.
    pub fn idle(&self, i: usize) -> bool {
        self.conns.is_open(i) && !self.busy[i]
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.busy.iter().filter(|&&b| b).count()
    }

    /// Sends one complete request (head and body) on idle connection `i`; false if it is not.
    pub fn send(&mut self, i: usize, request: &[u8]) -> bool {
        if !self.idle(i) {
            return false;
        }
        let c = &mut self.conns.conns[i];
        c.out.extend_from_slice(request);
        self.busy[i] = true;
        if c.connected && !c.flush() {
            // The write failed: the readiness event that follows reports the drop.
            c.out.clear();
            c.out_pos = 0;
        }
        true
    }

    /// Handles readiness of one of our tokens; calls `on_answer(i, …)` for its answered (or
    /// lost) request. Returns the connection's index if the token was ours.
    pub fn on_event(
        &mut self,
        registry: &Registry,
        ev: &Event,
        on_answer: &mut dyn FnMut(usize, Answer<'_>),
    ) -> Option<usize> {
        let (i, eof) = match self.conns.ready(ev) {
            Ready::Read { i, eof } => (i, eof),
            Ready::Failed(i) => {
                self.drop_conn(registry, i, on_answer);
                return Some(i);
            }
            Ready::Waiting(i) => return Some(i),
            Ready::NotOurs => return None,
        };
        let mut close = false;
        let c = &mut self.conns.conns[i];
        match parse_response(&c.inbuf) {
            Ok(Some(r)) => {
                let body = response_body(&c.inbuf, &r);
                self.body_buf.clear();
                self.body_buf.extend_from_slice(&body);
                c.inbuf.drain(..r.len);
                let was_busy = std::mem::replace(&mut self.busy[i], false);
                close = r.close || !c.inbuf.is_empty(); // nothing else was asked for
                self.conns.stats.count(r.status);
                if was_busy {
                    on_answer(i, Answer::Status(r.status, &self.body_buf));
                }
            }
            Ok(None) => {}
            Err(()) => close = true,
        }
        if close || eof {
            self.drop_conn(registry, i, on_answer);
        }
        Some(i)
    }

    /// Closes connection `i`; an unanswered request is reported lost; it reopens on `tick`.
    fn drop_conn(&mut self, registry: &Registry, i: usize, on_answer: &mut dyn FnMut(usize, Answer<'_>)) {
        self.conns.drop_conn(registry, i);
        if std::mem::replace(&mut self.busy[i], false) {
            on_answer(i, Answer::Lost);
        }
    }
}

/// One request on a fresh blocking connection (`Connection: close`), for the few requests
/// made outside the event loop (a scenario's setup and final checks): the status and the body.
pub fn request_blocking(
    addr: SocketAddrV4,
    host_header: &str,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let timeout = std::time::Duration::from_secs(10);
    let mut s = std::net::TcpStream::connect_timeout(&addr.into(), timeout).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout)).and_then(|_| s.set_write_timeout(Some(timeout))).map_err(|e| e.to_string())?;
    let mut req = format!("{method} {path_and_query} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n");
    if !body.is_empty() || method == "POST" {
        req += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    }
    req += "\r\n";
    let mut out = req.into_bytes();
    out.extend_from_slice(body);
    s.write_all(&out).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match parse_response(&buf) {
            Ok(Some(r)) => return Ok((r.status, response_body(&buf, &r).into_owned())),
            Ok(None) => {}
            Err(()) => return Err("malformed HTTP response".into()),
        }
        match s.read(&mut chunk) {
            Ok(0) => return Err("connection closed before the answer was complete".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}HTTP/1.1 413 X\r\n";
        let ok = parse_response(r).unwrap().unwrap();
        assert_eq!((ok.status, ok.len, ok.close, ok.chunked), (200, r.len() - 16, false, false));
        assert_eq!(&*response_body(r, &ok), b"{\"ok\":true}");
        assert_eq!(parse_response(&r[..30]), Ok(None));
        let c = b"HTTP/1.1 401 Unauthorized\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}";
        let unauth = parse_response(c).unwrap().unwrap();
        assert_eq!((unauth.status, unauth.len, unauth.close), (401, c.len(), true));
        assert_eq!(&*response_body(c, &unauth), b"{}");
        let ch = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n";
        for cut in 0..ch.len() {
            assert_eq!(parse_response(&ch[..cut]), Ok(None), "cut {cut}");
        }
        let chunked = parse_response(ch).unwrap().unwrap();
        assert_eq!((chunked.status, chunked.len, chunked.close, chunked.chunked), (200, ch.len(), false, true));
        assert_eq!(&*response_body(ch, &chunked), b"{\"a\":1}");
        assert_eq!(parse_response(b"garbage\r\n\r\n"), Err(()));
    }
}
