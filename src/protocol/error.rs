//! The protocol layer's one error type: every WebSocket-side failure is one of these variants,
//! and this file alone maps each to its Pusher error code, its message and whether it closes
//! the socket (`docs/protocol/pusher.md#errors-and-close-codes`).

use super::ai::AiError;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A frame or field the server cannot use.
    InvalidFormat(String),
    InvalidEventName(String),
    AppNotFound,
    AppDisabled,
    AppOverQuota,
    /// A signature or user data that does not authenticate; the socket stays open.
    Auth(String),
    /// A capability token the server will not take.
    TokenRefused(String),
    OriginNotAllowed,
    AuthTimeout,
    TerminatedByApp,
    /// The node's connection limit.
    OverCapacity,
    /// A full presence channel: the subscribe fails, the socket stays open.
    PresenceFull,
    /// A consumer too slow for its queue.
    BufferFull {
        limit: usize,
    },
    /// The shard that owns what was asked for did not answer in time or is too far behind;
    /// the request failed, the socket stays open and may retry.
    ShardUnavailable(String),
    ForceReconnect,
    ServerShutdown,
    PongTimeout,
    Channel(String),
    ChannelNameInvalid(String),
    /// A history feature (rewind, `channel_history`) that cannot be used here.
    History(String),
    /// A `sockudo:presence_update` that cannot be applied (the reference's AI code 104009,
    /// which it too reports as 4000 on a WebSocket).
    PresenceUpdate(String),
    PresenceUpdateRateLimited,
    /// An AI event the AI Transport rules refuse: 4000 on the socket, as in the reference, with
    /// the registry code in the message.
    Ai(AiError),
    ClientEvent(String),
    /// A history request this socket may not make now.
    HistoryRequest(String),
    RecoveryDisabled,
    ClientEventRateLimited {
        terminate: bool,
    },
    NoRecoveryPositions,
}

impl ProtocolError {
    pub fn invalid_format(why: impl fmt::Display) -> Self {
        Self::InvalidFormat(why.to_string())
    }
    pub fn invalid_event_name(why: impl fmt::Display) -> Self {
        Self::InvalidEventName(why.to_string())
    }
    pub fn auth(why: impl fmt::Display) -> Self {
        Self::Auth(why.to_string())
    }
    pub fn channel(why: impl fmt::Display) -> Self {
        Self::Channel(why.to_string())
    }
    pub fn channel_name_invalid(why: impl fmt::Display) -> Self {
        Self::ChannelNameInvalid(why.to_string())
    }
    pub fn client_event(why: impl fmt::Display) -> Self {
        Self::ClientEvent(why.to_string())
    }
    pub fn history(why: impl fmt::Display) -> Self {
        Self::History(why.to_string())
    }
    pub fn presence_update(why: impl fmt::Display) -> Self {
        Self::PresenceUpdate(why.to_string())
    }
    pub fn history_request(why: impl fmt::Display) -> Self {
        Self::HistoryRequest(why.to_string())
    }

    /// The Pusher error code of `pusher:error` and of the close frame.
    pub fn code(&self) -> u16 {
        use ProtocolError::*;
        match self {
            InvalidFormat(_) | InvalidEventName(_) | PresenceUpdate(_) | Ai(_) => 4000,
            AppNotFound => 4001,
            AppDisabled => 4003,
            AppOverQuota => 4004,
            Auth(_) | TokenRefused(_) | OriginNotAllowed | AuthTimeout | TerminatedByApp => 4009,
            OverCapacity | PresenceFull | BufferFull { .. } | ShardUnavailable(_) => 4100,
            ForceReconnect | ServerShutdown => 4200,
            PongTimeout => 4201,
            Channel(_) | ChannelNameInvalid(_) | History(_) => 4300,
            ClientEvent(_)
            | HistoryRequest(_)
            | RecoveryDisabled
            | ClientEventRateLimited { .. }
            | PresenceUpdateRateLimited => 4301,
            NoRecoveryPositions => 4302,
        }
    }

    /// Whether the socket is closed (with `code`) after the `pusher:error` frame.
    pub fn is_fatal(&self) -> bool {
        use ProtocolError::*;
        match self {
            AppNotFound
            | AppDisabled
            | AppOverQuota
            | TokenRefused(_)
            | OriginNotAllowed
            | AuthTimeout
            | TerminatedByApp
            | OverCapacity
            | BufferFull { .. }
            | ForceReconnect
            | ServerShutdown
            | PongTimeout => true,
            ClientEventRateLimited { terminate } => *terminate,
            InvalidFormat(_)
            | InvalidEventName(_)
            | Auth(_)
            | PresenceFull
            | ShardUnavailable(_)
            | Channel(_)
            | ChannelNameInvalid(_)
            | History(_)
            | ClientEvent(_)
            | HistoryRequest(_)
            | RecoveryDisabled
            | NoRecoveryPositions
            | PresenceUpdate(_)
            | PresenceUpdateRateLimited
            | Ai(_) => false,
        }
    }
}

/// The message the client sees.
impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ProtocolError::*;
        match self {
            InvalidFormat(why) => write!(f, "Invalid message format: {why}"),
            InvalidEventName(why) => write!(f, "Invalid event name: {why}"),
            AppNotFound => f.write_str("Application does not exist"),
            AppDisabled => f.write_str("Application disabled"),
            AppOverQuota => f.write_str("Application is over adapter quota"),
            Auth(why) | TokenRefused(why) => write!(f, "Authentication error: {why}"),
            OriginNotAllowed => f.write_str("Origin not allowed"),
            AuthTimeout => f.write_str("Connection not authorized within timeout."),
            TerminatedByApp => f.write_str("You got disconnected by the app."),
            OverCapacity | PresenceFull => f.write_str("Over capacity"),
            BufferFull { limit } => {
                write!(f, "Buffer full: Client buffer full (message limit: {limit}), disconnecting slow consumer")
            }
            ShardUnavailable(why) => write!(f, "Over capacity: {why}"),
            ForceReconnect => f.write_str("Force reconnect requested by the app."),
            ServerShutdown => f.write_str("Server is shutting down; reconnect."),
            PongTimeout => f.write_str("Pong reply not received in time"),
            Channel(why) => write!(f, "Channel error: {why}"),
            ChannelNameInvalid(why) => write!(f, "Channel name invalid: {why}"),
            History(why) => write!(f, "History error: {why}"),
            PresenceUpdate(why) => write!(f, "Invalid presence update: {why}"),
            Ai(e) => write!(f, "AI Transport error: {e}"),
            PresenceUpdateRateLimited => f.write_str("Presence update rejected due to rate limit"),
            ClientEvent(why) => write!(f, "Client event error: {why}"),
            HistoryRequest(why) => write!(f, "History request error: {why}"),
            RecoveryDisabled => f.write_str("Connection recovery is not enabled"),
            ClientEventRateLimited { terminate: true } => {
                f.write_str("Connection closed due to client event rate limit")
            }
            ClientEventRateLimited { terminate: false } => f.write_str("Client event rejected due to rate limit"),
            NoRecoveryPositions => f.write_str("No channel recovery positions provided"),
        }
    }
}

impl std::error::Error for ProtocolError {}
