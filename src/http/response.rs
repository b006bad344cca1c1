//! HTTP responses and the REST API's one error type (`docs/protocol/http-api.md#error-responses`).

use crate::protocol::ai::AiError;
use crate::publish::PublishError;
use crate::shard::route::CrossingError;
use std::fmt;

pub struct Response {
    pub status: u16,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

impl Response {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response { status, content_type: "application/json", headers: Vec::new(), body: body.into() }
    }

    pub fn text(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", headers: Vec::new(), body: body.into() }
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    /// The response on the wire. `keep_alive: false` adds `Connection: close`.
    pub fn encode(&self, keep_alive: bool) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (n, v) in &self.headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// A REST API failure: status, the snake_case `code` and the human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u32>,
    /// `X-RateLimit-Limit`, `-Remaining` and `-Reset` of a rate-limited request.
    pub rate: Option<(u32, u32, u64)>,
    /// The AI Transport registry code of an AI refusal (`code` is then its registry name).
    pub ai_code: Option<u32>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), retry_after: None, rate: None, ai_code: None }
    }
    pub fn invalid_input(m: impl Into<String>) -> ApiError {
        Self::new(400, "invalid_input", m)
    }
    pub fn limit_exceeded(m: impl Into<String>) -> ApiError {
        Self::new(400, "limit_exceeded", m)
    }
    pub fn missing_channel_info() -> ApiError {
        Self::new(400, "missing_channel_info", "Request must contain 'channels' (list) or 'channel' (string)")
    }
    pub fn auth_failed(m: impl Into<String>) -> ApiError {
        Self::new(401, "auth_failed", m)
    }
    /// The app, channel or socket may not do this.
    pub fn forbidden(m: impl Into<String>) -> ApiError {
        Self::new(403, "forbidden", m)
    }
    pub fn app_not_found() -> ApiError {
        Self::new(404, "app_not_found", "Application key not found or invalid: Invalid app key")
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        Self::new(404, "not_found", m)
    }
    pub fn payload_too_large(m: impl Into<String>) -> ApiError {
        Self::new(413, "payload_too_large", m)
    }
    pub fn unsupported_media_type() -> ApiError {
        Self::new(415, "unsupported_media_type", "Content-Type must be application/json")
    }
    pub fn unprocessable(m: impl Into<String>) -> ApiError {
        Self::new(422, "invalid_body", m)
    }
    /// Another request holds the idempotency key.
    pub fn backpressure() -> ApiError {
        ApiError {
            retry_after: Some(1),
            ..Self::new(503, "backpressure", "A request with this idempotency key is still in progress; retry later")
        }
    }
    /// The feature is switched off for this app or channel.
    pub fn feature_disabled(m: impl Into<String>) -> ApiError {
        Self::new(422, "feature_disabled", m)
    }
    /// The app keeps no durable history (the server's or its own `history.enabled`).
    pub fn history_disabled() -> ApiError {
        Self::feature_disabled("Durable history is not enabled for this app (history.enabled)")
    }
    /// The store could not take or serve the request; nothing was delivered, a retry is safe.
    pub fn storage(m: impl Into<String>) -> ApiError {
        ApiError { retry_after: Some(1), ..Self::new(503, "storage_unavailable", m) }
    }
    /// A rate limit refused the request.
    pub fn rate_limited(what: &str, v: &crate::shard::limits::Verdict, window: std::time::Duration) -> ApiError {
        let message =
            format!("Rate limit exceeded: {} {what} per {} s; retry in {} s", v.limit, window.as_secs(), v.reset);
        ApiError {
            retry_after: Some(v.reset as u32),
            rate: Some((v.limit, v.remaining, v.reset)),
            ..Self::new(429, "rate_limited", message)
        }
    }
    pub fn internal() -> ApiError {
        Self::new(500, "internal_error", "Internal server error")
    }
    /// A shard did not answer in time or is too far behind (503: retry), or failed the request
    /// (500).
    pub fn unavailable(e: CrossingError) -> ApiError {
        match e {
            CrossingError::Failed { .. } => Self::internal(),
            other => ApiError { retry_after: Some(1), ..Self::new(503, "service_unavailable", other.to_string()) },
        }
    }
}

impl From<CrossingError> for ApiError {
    fn from(e: CrossingError) -> ApiError {
        ApiError::unavailable(e)
    }
}

impl From<AiError> for ApiError {
    fn from(e: AiError) -> ApiError {
        ApiError { ai_code: Some(e.code), ..Self::new(e.status(), e.name(), e.message) }
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> ApiError {
        match e {
            PublishError::Storage(why) => ApiError::storage(why),
            PublishError::Unavailable(e) => ApiError::unavailable(e),
            PublishError::Rejected(r) => ApiError { ai_code: r.ai_code, ..ApiError::new(r.status, r.code, r.message) },
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl From<ApiError> for Response {
    fn from(e: ApiError) -> Response {
        let mut body = b"{\"error\":".to_vec();
        crate::protocol::outbound::push_json_str(&mut body, &e.message);
        body.extend_from_slice(format!(",\"code\":\"{}\",\"status\":{}", e.code, e.status).as_bytes());
        if let Some(ai_code) = e.ai_code {
            body.extend_from_slice(format!(",\"ai_code\":{ai_code}").as_bytes());
        }
        body.push(b'}');
        let mut r = Response::json(e.status, body);
        if let Some((limit, remaining, reset)) = e.rate {
            r = r
                .header("X-RateLimit-Limit", limit.to_string())
                .header("X-RateLimit-Remaining", remaining.to_string())
                .header("X-RateLimit-Reset", reset.to_string());
        }
        match e.retry_after {
            Some(s) => r.header("Retry-After", s.to_string()),
            None => r,
        }
    }
}
