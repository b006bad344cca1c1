//! HTTP/1.1 request framing over a byte buffer (httparse), with no I/O.

use crate::ws::handshake::UpgradeRequest;
use std::fmt;

/// Headers beyond this count make the request malformed (400).
const MAX_HEADERS: usize = 64;

/// One parsed request. Header names are lower-cased.
#[derive(Debug)]
pub struct Request {
    pub method: String,
    /// The path exactly as received (percent-encoding preserved: it is part of what a REST
    /// signature covers).
    pub path: String,
    /// The raw query string, without the `?`; empty when absent.
    pub query: String,
    /// False when the client asked to close after this response (`Connection: close`, or
    /// HTTP/1.0 without keep-alive).
    pub keep_alive: bool,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl UpgradeRequest for Request {
    fn method(&self) -> &str {
        &self.method
    }

    fn header(&self, name: &str) -> Option<&str> {
        Request::header(self, name)
    }

    fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }
}

/// Why a request could not be read; each maps to the status sent before closing.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestError {
    Malformed(String),
    BodyTooLarge,
    HeadersTooLarge,
}

impl RequestError {
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Malformed(_) => 400,
            RequestError::BodyTooLarge => 413,
            RequestError::HeadersTooLarge => 431,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Malformed(why) => write!(f, "Malformed request: {why}"),
            RequestError::BodyTooLarge => f.write_str("Request body too large"),
            RequestError::HeadersTooLarge => f.write_str("Request headers too large"),
        }
    }
}

/// Limits applied while framing.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_head: usize,
    pub max_body: usize,
}

/// Parses one request from the front of `buf`. `Ok(None)`: incomplete, read more.
/// On success returns the request and the bytes it used (pipelined requests follow).
pub fn parse(buf: &[u8], limits: Limits) -> Result<Option<(Request, usize)>, RequestError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > limits.max_head { Err(RequestError::HeadersTooLarge) } else { Ok(None) }
        }
        Err(e) => return Err(RequestError::Malformed(e.to_string())),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target.to_owned(), String::new()),
    };
    let mut out_headers = Vec::with_capacity(req.headers.len());
    let mut content_length: Option<usize> = None;
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = std::str::from_utf8(h.value)
            .map_err(|_| RequestError::Malformed(format!("header {name} is not UTF-8")))?
            .trim()
            .to_owned();
        if name == "content-length" {
            let n = value.parse::<usize>().map_err(|_| RequestError::Malformed("invalid Content-Length".into()))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(RequestError::Malformed("conflicting Content-Length".into()));
            }
            content_length = Some(n);
        } else if name == "transfer-encoding" {
            return Err(RequestError::Malformed("Transfer-Encoding is not supported; send Content-Length".into()));
        }
        out_headers.push((name, value));
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > limits.max_body {
        return Err(RequestError::BodyTooLarge);
    }
    if buf.len() < head_len + body_len {
        return Ok(None);
    }
    let version = req.version.unwrap_or(1);
    let mut request = Request {
        method: req.method.unwrap_or("GET").to_owned(),
        path,
        query,
        keep_alive: true,
        headers: out_headers,
        body: buf[head_len..head_len + body_len].to_vec(),
    };
    request.keep_alive = if version == 0 {
        request.header_has_token("connection", "keep-alive")
    } else {
        !request.header_has_token("connection", "close")
    };
    Ok(Some((request, head_len + body_len)))
}

/// Percent-decodes a path segment (`+` stays a plus); invalid escapes are kept as they are.
pub fn path_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Splits a query string into decoded `(key, value)` pairs in order (form encoding: `+` is a
/// space).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_head: 8192, max_body: 100 };

    #[test]
    fn pipelined_requests_and_partial_bodies() {
        let raw = b"POST /a?x=1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nConnection: close\r\n\r\n";
        let (r1, n1) = parse(raw, LIMITS).unwrap().unwrap();
        assert_eq!(
            (r1.method.as_str(), r1.path.as_str(), r1.query.as_str(), &r1.body[..]),
            ("POST", "/a", "x=1", &b"abc"[..])
        );
        assert!(r1.keep_alive);
        let (r2, n2) = parse(&raw[n1..], LIMITS).unwrap().unwrap();
        assert_eq!(r2.path, "/b");
        assert!(!r2.keep_alive);
        assert_eq!(n1 + n2, raw.len());
        assert!(parse(&raw[..n1 - 1], LIMITS).unwrap().is_none());
    }

    #[test]
    fn errors() {
        assert_eq!(parse(b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", LIMITS).unwrap_err().status(), 413);
        assert_eq!(parse(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n", LIMITS).unwrap_err().status(), 400);
        assert_eq!(parse(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n", LIMITS).unwrap_err().status(), 400);
    }

    #[test]
    fn decoding() {
        assert_eq!(query_pairs("x=a%20b+c%2"), vec![("x".into(), "a b c%2".into())]);
        assert_eq!(path_decode("%23server-to-user-4+2"), "#server-to-user-4+2");
        assert_eq!(
            query_pairs("a=1&&b=%3D&c"),
            vec![("a".into(), "1".into()), ("b".into(), "=".into()), ("c".into(), "".into())]
        );
    }
}
