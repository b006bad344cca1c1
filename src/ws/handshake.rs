//! The RFC 6455 opening handshake, checked against a parsed HTTP request, and what the
//! upgrade query negotiates (protocol version and V2 options).

use crate::config::{AiTransport, EchoControl};
use crate::protocol::outbound::{Dialect, Encoding};
use crate::protocol::wire::Format;
use base64::Engine;
use tungstenite::handshake::derive_accept_key;

/// Why an upgrade was refused: the status and a message for the body.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub message: &'static str,
}

/// What the handshake needs of the HTTP request it upgrades (header names are lower-case).
pub trait UpgradeRequest {
    fn method(&self) -> &str;
    fn header(&self, name: &str) -> Option<&str>;
    /// True when a comma-separated header contains `token` (case-insensitive).
    fn header_has_token(&self, name: &str, token: &str) -> bool;
}

/// True when the request asks for a WebSocket upgrade at all.
pub fn is_upgrade(req: &impl UpgradeRequest) -> bool {
    req.header_has_token("upgrade", "websocket")
}

/// Checks the upgrade request and returns the `101 Switching Protocols` response bytes.
pub fn accept(req: &impl UpgradeRequest) -> Result<Vec<u8>, Refusal> {
    if req.method() != "GET" {
        return Err(Refusal { status: 405, message: "WebSocket upgrades must use GET" });
    }
    if !is_upgrade(req) || !req.header_has_token("connection", "upgrade") {
        return Err(Refusal { status: 400, message: "Expected a WebSocket upgrade request" });
    }
    if req.header("sec-websocket-version") != Some("13") {
        return Err(Refusal { status: 426, message: "Unsupported WebSocket version; use 13" });
    }
    let key = req
        .header("sec-websocket-key")
        .filter(|k| base64::engine::general_purpose::STANDARD.decode(k).map(|b| b.len() == 16).unwrap_or(false));
    let Some(key) = key else {
        return Err(Refusal { status: 400, message: "Missing or invalid Sec-WebSocket-Key" });
    };
    Ok(format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    )
    .into_bytes())
}

/// What the upgrade's query asks for (`docs/protocol/v2.md#negotiation`). Unknown parameters
/// are ignored.
pub struct Negotiated {
    pub dialect: Dialect,
    /// The form channel messages reach the socket in (its dialect and `append_mode`).
    pub encoding: Encoding,
    /// How its frames are encoded (`format`; V1 is always JSON).
    pub format: Format,
    /// A V2 client's own client events come back to it (`echo_messages`, default
    /// `echo_control.default_echo_messages`; always with `echo_control.enabled = false`).
    pub echo: bool,
}

impl Negotiated {
    /// From the query's decoded `(name, value)` pairs.
    pub fn parse(pairs: &[(String, String)], ai: &AiTransport, echo: EchoControl) -> Result<Negotiated, String> {
        let param = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
        let dialect = match param("protocol").map(str::parse::<u8>) {
            Some(Ok(2)) => Dialect::V2,
            Some(Err(_)) => return Err("Invalid protocol query parameter".into()),
            _ => Dialect::V1,
        };
        if dialect == Dialect::V1 {
            return Ok(Negotiated { dialect, encoding: Encoding::V1Json, format: Format::Json, echo: false });
        }
        let format = Format::parse(param("format"))?;
        let full_appends = match param("append_mode") {
            None | Some("" | "delta") => false,
            Some("full") => true,
            Some(_) => return Err("Invalid append_mode query parameter: use delta or full".into()),
        };
        // Accepted as the reference does: the server's window is what applies
        // (`docs/protocol/v2.md#rollup`).
        if let Some(w) = param("append_rollup_window") {
            if !w.parse::<u64>().is_ok_and(|w| ai.window_allowed(w)) {
                let (min, max) = ai.rollup_range_ms;
                return Err(format!("Invalid append_rollup_window: one of 0, 20, 40, 100, 500 within {min}..={max}"));
            }
        }
        let echo = match param("echo_messages") {
            None | Some("") => echo.default_echo,
            Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(_) => return Err("Invalid echo_messages query parameter: use true or false".into()),
        } || !echo.enabled;
        Ok(Negotiated { dialect, encoding: Encoding::of(dialect, full_appends), format, echo })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Upgrade(&'static [(&'static str, &'static str)]);

    impl UpgradeRequest for Upgrade {
        fn method(&self) -> &str {
            "GET"
        }
        fn header(&self, name: &str) -> Option<&str> {
            self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
        }
        fn header_has_token(&self, name: &str, token: &str) -> bool {
            self.header(name).is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        }
    }

    #[test]
    fn rfc_accept_key() {
        // The example of RFC 6455 section 1.3.
        let req = Upgrade(&[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
        ]);
        let response = String::from_utf8(accept(&req).unwrap()).unwrap();
        assert!(response.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }
}
