//! The client commands, one file each: what the command's data must be, what it does and what
//! it answers. Each is a method of the socket's `Session`; `session.rs` dispatches to them.

mod ai_event;
mod client_event;
mod delta;
mod history;
mod presence_update;
mod resume;
mod rewind;
mod signin;
mod subscribe;
mod token;
mod unsubscribe;
mod wildcard;
