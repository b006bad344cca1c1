//! The HTTP publisher: signed `POST /apps/ID/events` (or `batch_events`) over a few keep-alive
//! HTTP/1.1 connections with pipelining, registered on the worker's poll. Requests are built in
//! reusable buffers: publishing allocates nothing in steady state.

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

struct HttpConn {
    stream: Option<mio::net::TcpStream>,
    connected: bool,
    out: Vec<u8>,
    out_pos: usize,
    inbuf: Vec<u8>,
    inflight: VecDeque<Inflight>,
    retry_at: u64,
    failures: u32,
}

pub struct Publisher {
    cfg: PublishConfig,
    conns: Vec<HttpConn>,
    token_base: usize,
    path_events: String,
    path_batch: String,
    body: Vec<u8>,
    sig_scratch: Vec<u8>,
    query: Vec<u8>,
    read_buf: Vec<u8>,
    unix_ts: u64,
    unix_ts_at: u64,
    /// Cleared when the server answers `Connection: close` (then one request per connection).
    keep_alive: bool,
    pub reconnects: u64,
    /// Responses by status code.
    pub statuses: Vec<(u16, u64)>,
}

impl Publisher {
    pub fn new(registry: &Registry, cfg: PublishConfig, token_base: usize) -> Publisher {
        let conns = (0..cfg.connections.max(1))
            .map(|_| HttpConn {
                stream: None,
                connected: false,
                out: Vec::with_capacity(4096),
                out_pos: 0,
                inbuf: Vec::with_capacity(4096),
                inflight: VecDeque::with_capacity(cfg.pipeline),
                retry_at: 0,
                failures: 0,
            })
            .collect();
        let mut p = Publisher {
            path_events: format!("/apps/{}/events", cfg.app_id),
            path_batch: format!("/apps/{}/batch_events", cfg.app_id),
            cfg,
            conns,
            token_base,
            body: Vec::with_capacity(4096),
            sig_scratch: Vec::with_capacity(256),
            query: Vec::with_capacity(256),
            read_buf: vec![0; 64 * 1024],
            unix_ts: 0,
            unix_ts_at: 0,
            keep_alive: true,
            reconnects: 0,
            statuses: Vec::new(),
        };
        for i in 0..p.conns.len() {
            p.connect(registry, i);
        }
        p
    }

    fn window(&self) -> usize {
        if self.keep_alive {
            self.cfg.pipeline.max(1)
        } else {
            1
        }
    }

    fn connect(&mut self, registry: &Registry, i: usize) {
        let c = &mut self.conns[i];
        match net::connect(net::source_ip(i as u64, self.cfg.source_ips), self.cfg.addr) {
            Ok(mut s) => {
                if registry
                    .register(&mut s, Token(self.token_base + i), Interest::READABLE | Interest::WRITABLE)
                    .is_ok()
                {
                    c.stream = Some(s);
                    c.connected = false;
                } else {
                    c.failures += 1;
                    c.retry_at = now_ns() + 100 * MS * c.failures.min(10) as u64;
                }
            }
            Err(_) => {
                c.failures += 1;
                c.retry_at = now_ns() + 100 * MS * c.failures.min(10) as u64;
            }
        }
    }

    /// Reopens dropped connections whose back-off has passed.
    pub fn tick(&mut self, registry: &Registry, now: u64) {
        for i in 0..self.conns.len() {
            if self.conns[i].stream.is_none() && self.conns[i].retry_at <= now {
                self.reconnects += 1;
                self.connect(registry, i);
            }
        }
    }

    pub fn inflight(&self) -> usize {
        self.conns.iter().map(|c| c.inflight.len()).sum()
    }

    /// Sends one request carrying `items` events on channels `first, first+1, …` (mod the
    /// channel count), each with the send time embedded. False if no connection has room.
    pub fn publish(&mut self, channels: &[String], first: u32, items: u32) -> bool {
        let w = self.window();
        let Some(i) = (0..self.conns.len())
            .filter(|&i| self.conns[i].stream.is_some() && self.conns[i].inflight.len() < w)
            .min_by_key(|&i| self.conns[i].inflight.len())
        else {
            return false;
        };
        let now = now_ns();
        if now - self.unix_ts_at > 500 * MS || self.unix_ts == 0 {
            self.unix_ts = unix_secs();
            self.unix_ts_at = now;
        }
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
            body.extend_from_slice(b"\"}");
        }
        if batch {
            body.extend_from_slice(b"]}");
        }
        // Signed query.
        let path = if batch { &self.path_batch } else { &self.path_events };
        self.query.clear();
        signing::push_signed_post_query(
            &mut self.query,
            &mut self.sig_scratch,
            &self.cfg.signer,
            &self.cfg.key,
            path.as_bytes(),
            self.unix_ts,
            &self.body,
        );
        // Request.
        let c = &mut self.conns[i];
        let _ = write!(c.out, "POST {path}?");
        c.out.extend_from_slice(&self.query);
        let _ = write!(
            c.out,
            " HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.cfg.host_header,
            self.body.len()
        );
        c.out.extend_from_slice(&self.body);
        c.inflight.push_back(Inflight { first_channel: first, items });
        if c.connected {
            self.flush(i);
        }
        true
    }

    fn flush(&mut self, i: usize) -> bool {
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_mut() else {
            return false;
        };
        while c.out_pos < c.out.len() {
            match s.write(&c.out[c.out_pos..]) {
                Ok(0) => return false,
                Ok(n) => c.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        c.out.clear();
        c.out_pos = 0;
        true
    }

    /// Handles readiness of one of our tokens; calls `on_response` per answered (or lost) request.
    pub fn on_event(&mut self, registry: &Registry, ev: &Event, on_response: &mut dyn FnMut(Inflight, Outcome)) {
        let Some(i) = ev.token().0.checked_sub(self.token_base).filter(|&i| i < self.conns.len()) else {
            return;
        };
        if self.conns[i].stream.is_none() {
            return;
        }
        if !self.conns[i].connected {
            let s = self.conns[i].stream.as_mut().expect("checked");
            if ev.is_error() || matches!(s.take_error(), Ok(Some(_)) | Err(_)) {
                return self.drop_conn(registry, i, on_response);
            }
            if s.peer_addr().is_err() {
                return;
            }
            self.conns[i].connected = true;
            self.conns[i].failures = 0;
        }
        if !self.flush(i) {
            return self.drop_conn(registry, i, on_response);
        }
        let mut eof = false;
        loop {
            let s = self.conns[i].stream.as_mut().expect("checked");
            match s.read(&mut self.read_buf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => self.conns[i].inbuf.extend_from_slice(&self.read_buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        // Responses.
        let mut used = 0;
        let mut close = false;
        loop {
            match parse_response(&self.conns[i].inbuf[used..]) {
                Ok(Some(r)) => {
                    used += r.len;
                    self.count_status(r.status);
                    if let Some(req) = self.conns[i].inflight.pop_front() {
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
        self.conns[i].inbuf.drain(..used);
        if close || eof {
            self.drop_conn(registry, i, on_response);
        }
    }

    fn count_status(&mut self, status: u16) {
        match self.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.statuses.push((status, 1)),
        }
    }

    /// Closes connection `i`; its unanswered requests are reported lost; it reopens on `tick`.
    fn drop_conn(&mut self, registry: &Registry, i: usize, on_response: &mut dyn FnMut(Inflight, Outcome)) {
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
        while let Some(req) = c.inflight.pop_front() {
            on_response(req, Outcome::Unanswered);
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Bytes of the whole response (head + body).
    pub len: usize,
    /// The server will close after it (`Connection: close`).
    pub close: bool,
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
        return Ok((buf.len() >= len).then_some(Response { status, len, close }));
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
                    return Ok(Some(Response { status, len: pos, close }));
                }
            }
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        pos += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}HTTP/1.1 413 X\r\n";
        assert_eq!(parse_response(r), Ok(Some(Response { status: 200, len: r.len() - 16, close: false })));
        assert_eq!(parse_response(&r[..30]), Ok(None));
        let c = b"HTTP/1.1 401 Unauthorized\r\nconnection: close\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(c), Ok(Some(Response { status: 401, len: c.len(), close: true })));
        let ch = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n";
        for cut in 0..ch.len() {
            assert_eq!(parse_response(&ch[..cut]), Ok(None), "cut {cut}");
        }
        assert_eq!(parse_response(ch), Ok(Some(Response { status: 200, len: ch.len(), close: false })));
        assert_eq!(parse_response(b"garbage\r\n\r\n"), Err(()));
    }
}
