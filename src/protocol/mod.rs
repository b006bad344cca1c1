//! The Pusher wire protocol with no I/O: what clients send, what the server answers, channel
//! naming rules and the protocol's error codes.

pub mod ai;
pub mod annotations;
pub mod capabilities;
pub mod channel;
pub mod delta;
pub mod error;
pub mod filter;
pub mod history;
pub mod inbound;
pub mod mutation;
pub mod operator;
pub mod outbound;
pub mod presence_history;
pub mod recovery;
pub mod versioned;
pub mod wildcard;
pub mod wire;

pub use error::ProtocolError;
