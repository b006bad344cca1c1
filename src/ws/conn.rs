//! The one place that touches a connection's file descriptor, HTTP or WebSocket.
//!
//! Reads go through glommio's readiness-based `poll_read` into the shard's scratch buffer, so
//! an idle socket holds no read buffer. Queued WebSocket frames leave through `Outbox::write_to`
//! (`writer`), gathered into one send per flush.

use futures_lite::io::AsyncRead;
use glommio::net::TcpStream;
use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Poll, Waker};

pub struct Conn {
    stream: RefCell<TcpStream>,
    pub(super) fd: RawFd,
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
