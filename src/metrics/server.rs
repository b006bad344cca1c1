//! `GET /metrics` on the metrics port, served by one plain thread: a scrape sums counters and
//! reads /proc, which must not take time from a shard's executor.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// Binds the metrics port and serves it on its own thread until the process exits; `render`
/// makes the text of one scrape.
pub fn serve(host: &str, port: u16, render: impl Fn() -> String + Send + 'static) -> Result<(), String> {
    let addr = (host, port);
    let listener =
        TcpListener::bind(addr).map_err(|e| format!("cannot listen for metrics on {}:{}: {e}", addr.0, addr.1))?;
    log::info!("metrics on {}:{}/metrics", addr.0, addr.1);
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Err(e) = answer(&render, stream) {
                    log::debug!("metrics request failed: {e}");
                }
            }
        })
        .map_err(|e| format!("cannot start the metrics thread: {e}"))?;
    Ok(())
}

fn answer(render: &dyn Fn() -> String, mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() > 16 << 10 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, kind, body) = match (method, path) {
        (b"GET", b"/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render()),
        (b"GET", _) => ("404 Not Found", "text/plain", "404 NOT FOUND".to_owned()),
        _ => ("405 Method Not Allowed", "text/plain", "only GET".to_owned()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes())
}
