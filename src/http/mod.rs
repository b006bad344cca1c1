//! HTTP/1.1 on the WebSocket port: request framing (`request`, no I/O), responses and the API
//! error type, REST authentication, the routes, and the connection loop (`server`).

pub mod api;
pub mod request;
pub mod response;
pub mod rest_auth;
pub mod server;
