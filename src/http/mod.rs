//! HTTP/1.1 on the WebSocket port: request framing (`request`, no I/O), responses and the API
//! error type, REST authentication, the routes (`routes/`, one module per group), the upgrade
//! to a WebSocket, and the listener and connection loop (`server`).

pub mod request;
pub mod response;
pub mod rest_auth;
mod routes;
pub mod server;
mod upgrade;
