//! The socket writer: each socket's bounded outbound queue, and the shard's flusher that writes
//! out every socket with something queued once per executor turn.
//!
//! Writes are gathered: everything queued for a socket during one turn (or one burst of
//! pipelined input, see [`Hub::hold_flush`]) leaves in one `writev`, because on loopback the
//! cost is per send, not per byte. When a socket's kernel buffer is full it waits for
//! writability on its own task, without holding up the others.

use super::conn::Conn;
use super::hub::Hub;
use super::index::SocketKey;
use crate::protocol::wire::Format;
use crate::socket_id::SocketId;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::rc::Rc;
use std::task::{Poll, Waker};

/// A whole encoded server frame, shared by every local socket it is queued on.
pub type Frame = Rc<[u8]>;

/// A text frame of `payload`, ready to queue.
pub fn text_frame(payload: &[u8]) -> Frame {
    super::codec::encode(super::codec::Opcode::Text, payload).into()
}

/// The frame of a server message (`json`, how the server builds every one) for a socket that
/// speaks `format`: a text frame as it is, or a binary frame of its re-encoding
/// (`docs/protocol/v2.md#binary-wire-formats`). `None` if it cannot be re-encoded (a bug,
/// logged).
pub fn frame_in(format: Format, json: &[u8]) -> Option<Frame> {
    match format.encode(json) {
        None if format.is_binary() => None,
        None => Some(text_frame(json)),
        Some(binary) => Some(super::codec::encode(super::codec::Opcode::Binary, &binary).into()),
    }
}

/// Most frames one `writev` gathers.
const MAX_IOV: usize = 64;

/// The bound on each socket's outbound queue.
#[derive(Clone, Copy, Debug)]
pub struct QueueBound {
    pub frames: usize,
    pub bytes: usize,
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
            let mut iov: [libc::iovec; MAX_IOV] = [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_IOV];
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

/// The flusher's state: which sockets have something to write.
#[derive(Default)]
pub struct Writer {
    /// Sockets with queued frames for the flusher's next pass.
    dirty: RefCell<Vec<SocketKey>>,
    flusher: Cell<Option<Waker>>,
    /// Open `FlushHold`s: a burst of received input is still being handled.
    holds: Cell<u32>,
}

impl Writer {
    /// Lists a socket whose queue went from empty to not (`Pushed::NeedsFlush`).
    pub fn list(&self, key: SocketKey) {
        let mut dirty = self.dirty.borrow_mut();
        dirty.push(key);
        if dirty.len() == 1 {
            self.wake();
        }
    }

    /// Lends the dirty list to code that queues on many sockets at once (a delivery); wakes
    /// the flusher if it filled.
    pub fn with_dirty<T>(&self, f: impl FnOnce(&mut Vec<SocketKey>) -> T) -> T {
        let mut dirty = self.dirty.borrow_mut();
        let was_empty = dirty.is_empty();
        let r = f(&mut dirty);
        if was_empty && !dirty.is_empty() {
            self.wake();
        }
        r
    }

    fn wake(&self) {
        if let Some(w) = self.flusher.take() {
            w.wake();
        }
    }
}

impl Hub {
    /// Defers the flusher until the returned hold is dropped: taken while a burst of input
    /// that has already arrived (pipelined publishes) is handled, so that each socket gets the
    /// whole burst's frames in one send instead of one send per publish.
    pub fn hold_flush(self: &Rc<Self>) -> FlushHold {
        self.writer.holds.set(self.writer.holds.get() + 1);
        FlushHold(self.clone())
    }

    /// Writes out every listed socket's queue, once per executor turn (or per burst).
    pub(super) async fn flusher(self: Rc<Self>) {
        let w = &self.writer;
        loop {
            poll_fn(|cx| {
                if w.dirty.borrow().is_empty() || w.holds.get() > 0 {
                    w.flusher.set(Some(cx.waker().clone()));
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            let keys = std::mem::take(&mut *w.dirty.borrow_mut());
            for key in keys {
                let blocked = {
                    let mut index = self.index.borrow_mut();
                    let Some(s) = index.sockets.get_mut(key) else { continue };
                    if s.out.state != OutState::Listed {
                        continue;
                    }
                    match s.out.write_to(&s.conn) {
                        Written::Drained => {
                            s.out.state = OutState::Idle;
                            if s.out.close_when_drained {
                                s.conn.shutdown_write();
                                s.conn.kill();
                            }
                            None
                        }
                        Written::WouldBlock => {
                            s.out.state = OutState::Blocked;
                            Some(s.id)
                        }
                        Written::Failed => {
                            s.out.clear();
                            s.out.state = OutState::Idle;
                            s.conn.kill();
                            None
                        }
                    }
                };
                if let Some(id) = blocked {
                    let hub = self.clone();
                    crate::shard::spawn(&self.shard, "socket writability wait", async move {
                        hub.wait_writable(key, id).await
                    });
                }
            }
        }
    }

    /// A socket's kernel buffer was full: wait until it takes more, then hand the socket back
    /// to the flusher. Other sockets are not held up meanwhile.
    async fn wait_writable(self: Rc<Self>, key: SocketKey, id: SocketId) {
        let (conn, head, offset) = {
            let index = self.index.borrow();
            let Some(s) = index.sockets.get(key).filter(|s| s.id == id) else { return };
            let Some(head) = s.out.head() else { return };
            (s.conn.clone(), head, s.out.head_offset())
        };
        let written = conn.write_some(&head[offset..]).await;
        let mut index = self.index.borrow_mut();
        let Some(s) = index.sockets.get_mut(key).filter(|s| s.id == id) else { return };
        match written {
            Ok(n) => {
                s.out.consumed(n);
                s.out.state = OutState::Listed;
                drop(index);
                self.writer.list(key);
            }
            Err(_) => {
                s.out.clear();
                s.out.state = OutState::Idle;
                s.conn.kill();
            }
        }
    }
}

/// See [`Hub::hold_flush`].
pub struct FlushHold(Rc<Hub>);

impl Drop for FlushHold {
    fn drop(&mut self) {
        let w = &self.0.writer;
        w.holds.set(w.holds.get() - 1);
        if w.holds.get() == 0 && !w.dirty.borrow().is_empty() {
            w.wake();
        }
    }
}
