//! The sockudo server as a library: the binary (`main.rs`), the benchmarks and the tests use
//! these modules. Start at `shard` for where a socket and a publish go.

pub mod apps;
pub mod auth;
pub mod config;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod shard;
pub mod socket_id;
pub mod webhook;
pub mod ws;
