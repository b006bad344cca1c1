//! WebSockets: framing (`codec`, no I/O), the opening handshake and admission, the connection's
//! fd (`conn`) and its writer, this shard's sockets as one service (`hub`, over `index`), the
//! socket timers (`sweeper`), and the Pusher session on top (`session`, with one file per
//! client command in `cmd/`).

pub mod admission;
mod cmd;
pub mod codec;
pub mod conn;
pub mod delta;
pub mod echo;
pub mod handshake;
pub mod hub;
pub mod index;
pub mod session;
mod sweeper;
pub mod writer;
