//! The client side of the WebSocket opening handshake (RFC 6455 §4.1).

use base64::Engine as _;
use tungstenite::handshake::derive_accept_key;

/// A random 16-byte nonce, base64 encoded (always 24 bytes).
pub fn new_key() -> [u8; 24] {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&fastrand::u64(..).to_ne_bytes());
    nonce[8..].copy_from_slice(&fastrand::u64(..).to_ne_bytes());
    let mut out = [0u8; 24];
    base64::engine::general_purpose::STANDARD.encode_slice(nonce, &mut out).expect("24 bytes hold 16 encoded");
    out
}

/// Appends the upgrade request for `path_and_query` to `out`.
pub fn write_request(out: &mut Vec<u8>, host_header: &str, path_and_query: &str, key: &[u8; 24]) {
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host_header.as_bytes());
    out.extend_from_slice(b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n\r\n");
}

#[derive(Debug, PartialEq, Eq)]
pub enum HandshakeError {
    /// The server answered something other than 101; the status code (0 if unparseable).
    Status(u16),
    BadAccept,
    TooLong,
}

/// Checks the server's answer. `Ok(None)`: the header block is not complete yet;
/// `Ok(Some(n))`: upgrade accepted, the first `n` bytes were the HTTP response.
pub fn parse_response(buf: &[u8], key: &[u8; 24]) -> Result<Option<usize>, HandshakeError> {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > 16 * 1024 { Err(HandshakeError::TooLong) } else { Ok(None) };
    };
    let head = &buf[..end];
    let status = head
        .splitn(3, |&b| b == b' ')
        .nth(1)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if status != 101 {
        return Err(HandshakeError::Status(status));
    }
    let accept = head.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon].eq_ignore_ascii_case(b"sec-websocket-accept").then(|| line[colon + 1..].trim_ascii())
    });
    if accept != Some(derive_accept_key(key).as_bytes()) {
        return Err(HandshakeError::BadAccept);
    }
    Ok(Some(end + 4))
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    let first = needle[0];
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        match hay[i..=last_start].iter().position(|&b| b == first) {
            None => return None,
            Some(off) => {
                i += off;
                if &hay[i..i + needle.len()] == needle {
                    return Some(i);
                }
                i += 1;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_parsing() {
        // The accept value of RFC 6455 §1.3.
        let key = *b"dGhlIHNhbXBsZSBub25jZQ==";
        let ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x00";
        assert_eq!(parse_response(ok, &key), Ok(Some(ok.len() - 2)));
        assert_eq!(parse_response(&ok[..20], &key), Ok(None));
        assert_eq!(parse_response(b"HTTP/1.1 429 Too Many\r\n\r\n", &key), Err(HandshakeError::Status(429)));
        let bad = b"HTTP/1.1 101 OK\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert_eq!(parse_response(bad, &key), Err(HandshakeError::BadAccept));
    }

    #[test]
    fn find_works() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"xxab", b"ab"), Some(2));
    }
}
