//! A test-only WebSocket echo endpoint (`/test/echo`, enabled by `--test-hooks`) so the
//! Autobahn testsuite can exercise the codec and the socket I/O without the Pusher layer.

use super::codec::{self, Decoder, Incoming, Opcode};
use super::conn::Conn;
use super::hub::Hub;
use std::rc::Rc;

/// Autobahn's largest messages are 16 MiB.
const MAX_MESSAGE: usize = 16 << 20;

pub async fn run(hub: Rc<Hub>, conn: Rc<Conn>, mut buf: Vec<u8>) {
    let mut decoder = Decoder::new(MAX_MESSAGE);
    loop {
        let mut out = Vec::new();
        let mut used = 0;
        let mut done = false;
        loop {
            match decoder.decode(&buf[used..]) {
                Ok((unit, n)) => {
                    used += n;
                    match unit {
                        Some(Incoming::Text(p)) => out.extend(codec::encode(Opcode::Text, &p)),
                        Some(Incoming::Binary(p)) => out.extend(codec::encode(Opcode::Binary, &p)),
                        Some(Incoming::Ping(p)) => out.extend(codec::encode(Opcode::Pong, &p)),
                        Some(Incoming::Pong) => {}
                        Some(Incoming::Close(c)) => {
                            out.extend(codec::encode_close(c.map_or(1000, |(code, _)| code), ""));
                            done = true;
                            break;
                        }
                        None if n == 0 => break,
                        None => {}
                    }
                }
                Err(e) => {
                    out.extend(codec::encode_close(e.close_code(), e.reason()));
                    done = true;
                    break;
                }
            }
        }
        buf.drain(..used);
        if !out.is_empty() && conn.write_all(&out).await.is_err() {
            return;
        }
        if done {
            conn.shutdown_write();
            return;
        }
        match conn.read(&hub.scratch).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&hub.scratch.borrow()[..n]),
        }
    }
}
