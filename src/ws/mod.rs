//! WebSockets: framing (`codec`, no I/O), the opening handshake, the socket's I/O (`conn`) and
//! the per-socket Pusher session that runs on top.

pub mod codec;
pub mod conn;
pub mod echo;
pub mod handshake;
pub mod session;
