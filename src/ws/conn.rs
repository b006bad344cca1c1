//! The one place that touches a socket's file descriptor.
//!
//! Reads go through glommio's readiness-based `poll_read` into the shard's scratch buffer, so
//! an idle socket holds no read buffer. Writes are gathered: everything queued for a socket
//! during one executor turn leaves in one `writev` (the cost on loopback is per send, not per
//! byte). When the kernel buffer is full the socket waits for writability on its own, without
//! holding up the others.

use futures_lite::io::AsyncRead;
use glommio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// A whole encoded server frame, shared by every local socket it is queued on.
pub type Frame = Rc<[u8]>;

/// Most frames one `writev` gathers.
const MAX_IOV: usize = 64;

pub struct Conn {
    stream: RefCell<TcpStream>,
    fd: RawFd,
    /// Set to make the reader give up (close handshake timed out, shutdown).
    kill: Cell<bool>,
    reader: Cell<Option<Waker>>,
}

impl Conn {
    pub fn new(stream: TcpStream) -> Rc<Conn> {
        let fd = stream.as_raw_fd();
        Rc::new(Conn { stream: RefCell::new(stream), fd, kill: Cell::new(false), reader: Cell::new(None) })
    }

    /// Reads into `scratch` (borrowed only while polling, so one buffer serves every socket of
    /// the shard). Returns the byte count, 0 at end of stream; an error once killed.
    pub async fn read(&self, scratch: &RefCell<Vec<u8>>) -> io::Result<usize> {
        poll_fn(|cx| {
            if self.kill.get() {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionAborted, "closed by server")));
            }
            let mut buf = scratch.borrow_mut();
            let r = Pin::new(&mut *self.stream.borrow_mut()).poll_read(cx, &mut buf[..]);
            if r.is_pending() {
                self.reader.set(Some(cx.waker().clone()));
            }
            r
        })
        .await
    }

    /// Makes the reader stop at its next poll.
    pub fn kill(&self) {
        self.kill.set(true);
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// Writes all of `bytes` (for HTTP responses and handshakes, which are not queued).
    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let n = self.write_some(bytes).await?;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    /// Writes some of `bytes`, waiting for the socket to become writable if it is full.
    pub async fn write_some(&self, bytes: &[u8]) -> io::Result<usize> {
        use futures_lite::io::AsyncWrite;
        let n = poll_fn(|cx| Pin::new(&mut *self.stream.borrow_mut()).poll_write(cx, bytes)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        Ok(n)
    }

    /// Stops sending (after the close frame), so the peer sees the end of our stream.
    pub fn shutdown_write(&self) {
        // SAFETY: fd belongs to this stream for as long as `self` lives.
        unsafe { libc::shutdown(self.fd, libc::SHUT_WR) };
    }
}

/// Where a socket's queue stands relative to the shard's flusher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutState {
    /// Nothing queued.
    Idle,
    /// Listed for the flusher's next pass.
    Listed,
    /// The kernel buffer is full; a writability waiter owns the next write.
    Blocked,
}

/// A socket's bounded outbound queue.
pub struct Outbox {
    frames: VecDeque<Frame>,
    bytes: usize,
    /// Bytes of `frames[0]` already written.
    offset: usize,
    pub state: OutState,
    /// Half-close the socket once the queue drains (a close frame is last in it).
    pub close_when_drained: bool,
}

/// What happened to a pushed frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Queued; the socket must be listed for the flusher.
    NeedsFlush,
    /// Queued behind frames already waiting.
    Queued,
    /// The queue is at its bound.
    Full,
}

/// What a write attempt achieved.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    Drained,
    WouldBlock,
    Failed,
}

impl Outbox {
    pub fn new() -> Outbox {
        Outbox { frames: VecDeque::new(), bytes: 0, offset: 0, state: OutState::Idle, close_when_drained: false }
    }

    pub fn push(&mut self, frame: Frame, max_frames: usize, max_bytes: usize) -> Pushed {
        if self.frames.len() >= max_frames || self.bytes + frame.len() > max_bytes {
            return Pushed::Full;
        }
        self.push_unbounded(frame)
    }

    /// Queues a frame whatever the bound (control frames and the close sequence).
    pub fn push_unbounded(&mut self, frame: Frame) -> Pushed {
        self.bytes += frame.len();
        self.frames.push_back(frame);
        if self.state == OutState::Idle {
            self.state = OutState::Listed;
            Pushed::NeedsFlush
        } else {
            Pushed::Queued
        }
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Drops queued frames (the socket is gone).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.bytes = 0;
        self.offset = 0;
    }

    fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        while n > 0 {
            let left = self.frames[0].len() - self.offset;
            if n >= left {
                n -= left;
                self.offset = 0;
                self.frames.pop_front();
            } else {
                self.offset += n;
                n = 0;
            }
        }
    }

    /// Writes as much as the kernel takes, gathering up to `MAX_IOV` frames per call.
    pub fn write_to(&mut self, conn: &Conn) -> Written {
        while !self.frames.is_empty() {
            let mut iov: [libc::iovec; MAX_IOV] =
                [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
            let mut count = 0;
            for (i, f) in self.frames.iter().take(MAX_IOV).enumerate() {
                let start = if i == 0 { self.offset } else { 0 };
                iov[i] = libc::iovec { iov_base: f[start..].as_ptr() as *mut _, iov_len: f.len() - start };
                count += 1;
            }
            // SAFETY: the iovecs point into frames kept alive by `self.frames` for the call.
            // One frame (the common case under light load) takes the cheaper plain send.
            let n = unsafe {
                if count == 1 {
                    libc::send(conn.fd, iov[0].iov_base, iov[0].iov_len, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
                } else {
                    libc::writev(conn.fd, iov.as_ptr(), count as libc::c_int)
                }
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Written::WouldBlock,
                    io::ErrorKind::Interrupted => continue,
                    _ => Written::Failed,
                };
            }
            self.advance(n as usize);
        }
        // An idle socket keeps no queue buffer (a few allocations per send are far cheaper
        // than the send itself; the memory is per connection).
        self.frames = VecDeque::new();
        Written::Drained
    }

    /// Waits until the socket takes at least one byte of the head frame, and consumes what it
    /// took. Used only after `write_to` returned `WouldBlock`.
    pub fn head(&self) -> Option<Frame> {
        self.frames.front().cloned()
    }

    pub fn head_offset(&self) -> usize {
        self.offset
    }

    pub fn consumed(&mut self, n: usize) {
        self.advance(n);
    }
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox::new()
    }
}
