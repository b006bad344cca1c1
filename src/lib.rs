//! The sockudo server as a library: the binary (`main.rs`), the benchmarks and the tests use
//! these modules. `docs/architecture.md` walks through them; a publish goes
//! `http/routes/events` -> `publish` -> `shard/route` -> `shard/channel/publish` (and
//! `commit`) -> `ws/hub` -> `ws/writer` -> `ws/conn`.

pub mod auth;
pub mod backplane;
pub mod config;
pub mod context;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod protocol;
pub mod publish;
pub mod push;
pub mod shard;
pub mod socket_id;
pub mod time;
pub mod webhook;
pub mod ws;
