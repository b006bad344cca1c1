//! WebSocket client side: the RFC 6455 frame codec and the opening handshake.

pub mod codec;
pub mod handshake;
