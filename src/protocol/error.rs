//! The protocol layer's one error type: a Pusher error code and the message the client sees.
//! Every WebSocket-side failure is one of these; `fatal` ones close the socket with the code.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: u16,
    pub message: String,
    /// Close the socket with `code` after sending the `pusher:error` frame.
    pub fatal: bool,
}

impl ProtocolError {
    fn new(code: u16, message: impl Into<String>, fatal: bool) -> Self {
        ProtocolError { code, message: message.into(), fatal }
    }

    /// 4000: a frame or field the server cannot use.
    pub fn invalid_format(why: impl fmt::Display) -> Self {
        Self::new(4000, format!("Invalid message format: {why}"), false)
    }
    pub fn invalid_event_name(why: impl fmt::Display) -> Self {
        Self::new(4000, format!("Invalid event name: {why}"), false)
    }
    pub fn app_not_found() -> Self {
        Self::new(4001, "Application does not exist", true)
    }
    pub fn app_disabled() -> Self {
        Self::new(4003, "Application disabled", true)
    }
    pub fn app_over_quota() -> Self {
        Self::new(4004, "Application is over adapter quota", true)
    }
    pub fn auth(why: impl fmt::Display) -> Self {
        Self::new(4009, format!("Authentication error: {why}"), false)
    }
    pub fn token_refused(why: &str) -> Self {
        Self::new(4009, format!("Authentication error: {why}"), true)
    }
    pub fn origin_not_allowed() -> Self {
        Self::new(4009, "Origin not allowed", true)
    }
    pub fn auth_timeout() -> Self {
        Self::new(4009, "Connection not authorized within timeout.", true)
    }
    pub fn terminated_by_app() -> Self {
        Self::new(4009, "You got disconnected by the app.", true)
    }
    /// 4100 that closes: node capacity, or a consumer too slow for its queue.
    pub fn over_capacity() -> Self {
        Self::new(4100, "Over capacity", true)
    }
    /// 4100 that does not close: a full presence channel.
    pub fn presence_full() -> Self {
        Self::new(4100, "Over capacity", false)
    }
    pub fn buffer_full(limit: usize) -> Self {
        Self::new(
            4100,
            format!("Buffer full: Client buffer full (message limit: {limit}), disconnecting slow consumer"),
            true,
        )
    }
    pub fn force_reconnect() -> Self {
        Self::new(4200, "Force reconnect requested by the app.", true)
    }
    pub fn server_shutdown() -> Self {
        Self::new(4200, "Server is shutting down; reconnect.", true)
    }
    pub fn pong_timeout() -> Self {
        Self::new(4201, "Pong reply not received in time", true)
    }
    pub fn channel(why: impl fmt::Display) -> Self {
        Self::new(4300, format!("Channel error: {why}"), false)
    }
    pub fn channel_name_invalid(why: impl fmt::Display) -> Self {
        Self::new(4300, format!("Channel name invalid: {why}"), false)
    }
    pub fn client_event(why: impl fmt::Display) -> Self {
        Self::new(4301, format!("Client event error: {why}"), false)
    }
    /// 4300: a history feature (rewind, `channel_history`) that cannot be used here.
    pub fn history(why: impl fmt::Display) -> Self {
        Self::new(4300, format!("History error: {why}"), false)
    }
    /// 4301: a history request this socket may not make now.
    pub fn history_request(why: impl fmt::Display) -> Self {
        Self::new(4301, format!("History request error: {why}"), false)
    }
    pub fn recovery_disabled() -> Self {
        Self::new(4301, "Connection recovery is not enabled", false)
    }
    pub fn no_recovery_positions() -> Self {
        Self::new(4302, "No channel recovery positions provided", false)
    }
    pub fn client_event_rate_limited(terminate: bool) -> Self {
        if terminate {
            Self::new(4301, "Connection closed due to client event rate limit", true)
        } else {
            Self::new(4301, "Client event rejected due to rate limit", false)
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

impl std::error::Error for ProtocolError {}
