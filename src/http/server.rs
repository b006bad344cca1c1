//! The listening socket and each accepted connection until it is known to be HTTP or a
//! WebSocket: HTTP/1.1 with keep-alive and pipelining on the same port as `/app/{key}`.

use super::request::{self, Limits};
use super::response::Response;
use super::{routes, upgrade};
use crate::ws::conn::Conn;
use crate::ws::handshake;
use crate::ws::hub::Hub;
use glommio::net::{TcpListener, TcpStream};
use std::cell::Cell;
use std::future::poll_fn;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

/// Largest request head accepted.
const MAX_HEAD: usize = 16 << 10;
/// Connections the kernel may hold for a shard before it accepts them.
const BACKLOG: i32 = 1024;

/// Binds this shard's listener. Every shard binds the same port with `SO_REUSEPORT` (the kernel
/// spreads connections across shards) and `SO_REUSEADDR`, so that the port can be taken at
/// once even while connections of a previous server on it linger in TIME_WAIT.
pub fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let addr: SocketAddr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{host} has no address")))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    // SAFETY: a bound, listening socket whose descriptor moves to the glommio listener.
    Ok(unsafe { TcpListener::from_raw_fd(socket.into_raw_fd()) })
}

/// Accepts connections until the process is asked to stop.
pub async fn accept_until_stopped(hub: Rc<Hub>, listener: TcpListener) {
    let stop = Rc::new(StopSignal::default());
    glommio::spawn_local(stop.clone().watch(hub.clone())).detach();
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            stop.wait().await;
            None
        })
        .await;
        match accepted {
            None => return,
            Some(Ok(stream)) => {
                let hub = hub.clone();
                crate::shard::spawn(&hub.shard.clone(), "http connection", connection(hub, stream));
            }
            Some(Err(e)) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("shard {}: accept failed: {e}", hub.shard.id);
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Becomes set when the process is asked to stop.
#[derive(Default)]
struct StopSignal {
    set: Cell<bool>,
    waiter: Cell<Option<Waker>>,
}

impl StopSignal {
    async fn watch(self: Rc<Self>, hub: Rc<Hub>) {
        while !hub.shard.ctx.is_stopping() {
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        self.set.set(true);
        if let Some(w) = self.waiter.take() {
            w.wake();
        }
    }

    async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.get() {
                Poll::Ready(())
            } else {
                self.waiter.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// Serves one connection: HTTP requests in order until it closes or upgrades to a WebSocket.
async fn connection(hub: Rc<Hub>, stream: TcpStream) {
    stream.set_nodelay(true).ok();
    let peer = stream.peer_addr().map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |a| a.ip());
    let conn = Conn::new(stream);
    let limits = Limits { max_head: MAX_HEAD, max_body: hub.shard.ctx.config.max_http_body };
    let mut buf: Vec<u8> = Vec::new();
    let mut out: Vec<u8> = Vec::new();
    loop {
        loop {
            match request::parse(&buf, limits) {
                Ok(Some((req, used))) => {
                    buf.drain(..used);
                    if handshake::is_upgrade(&req) {
                        if !out.is_empty() && conn.write_all(&out).await.is_err() {
                            return;
                        }
                        // Boxed, like each route below: the connection's own future stays small.
                        return Box::pin(upgrade::upgrade(hub, conn, req, std::mem::take(&mut buf), peer)).await;
                    }
                    let keep_alive = req.keep_alive && !hub.draining.get();
                    // More pipelined requests are already here: handle them all before the
                    // sockets they publish to are written.
                    let _burst = (!buf.is_empty()).then(|| hub.hold_flush());
                    let (app, resp) = Box::pin(routes::handle(&hub, req)).await;
                    let resp = resp.encode(keep_alive);
                    let c = hub.counters(app);
                    c.http_calls.inc();
                    c.http_received_bytes.add(used as u64);
                    c.http_sent_bytes.add(resp.len() as u64);
                    out.extend_from_slice(&resp);
                    if !keep_alive {
                        let _ = conn.write_all(&out).await;
                        conn.shutdown_write();
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    out.extend_from_slice(&Response::text(e.status(), e.to_string()).encode(false));
                    let _ = conn.write_all(&out).await;
                    conn.shutdown_write();
                    return;
                }
            }
        }
        if !out.is_empty() {
            if conn.write_all(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if buf.is_empty() {
            buf = Vec::new(); // an idle keep-alive connection keeps no buffer
        }
        match conn.read(&hub.scratch).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&hub.scratch.borrow()[..n]),
        }
    }
}
