use std::fmt;
use std::path::Path;

/// Every failure the store can report. Cloneable because one failed group commit has to be
/// delivered to every append of the round, and twice per append (written and durable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The filesystem refused an operation outside fjall (creating or removing a shard dir).
    Io {
        path: String,
        message: String,
    },
    /// fjall reported an error (I/O, disk full, corruption found while reading).
    Engine {
        path: String,
        during: &'static str,
        message: String,
    },
    /// The shard directory was written by a newer (or foreign) format.
    UnknownFormat {
        path: String,
        found: u32,
        supported: u32,
    },
    /// A stored record could not be decoded.
    Corrupt {
        path: String,
        what: String,
    },
    /// The append's serial is not the stream's next serial: writing it would leave a gap or a
    /// duplicate.
    SerialMismatch {
        app: String,
        channel: String,
        expected: u64,
        got: u64,
    },
    /// The append names another stream than the one stored for the channel.
    StreamMismatch {
        app: String,
        channel: String,
        stored: String,
        got: String,
    },
    InvalidInput(String),
    /// A history cursor that does not fit the request or the channel's stream; the message is
    /// the client-facing one (`docs/protocol/v2.md#history-cursors`).
    Cursor(crate::CursorError),
    /// The store's request queue is full; the caller should shed load rather than wait.
    Overloaded {
        path: String,
    },
    /// The store thread has stopped.
    Closed {
        path: String,
    },
}

impl StorageError {
    pub(crate) fn engine(path: &Path, during: &'static str, err: impl fmt::Display) -> Self {
        StorageError::Engine { path: path.display().to_string(), during, message: err.to_string() }
    }

    pub(crate) fn io(path: &Path, err: &std::io::Error) -> Self {
        StorageError::Io { path: path.display().to_string(), message: err.to_string() }
    }

    pub(crate) fn corrupt(path: &Path, what: impl Into<String>) -> Self {
        StorageError::Corrupt { path: path.display().to_string(), what: what.into() }
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::Io { path, message } => {
                write!(f, "storage I/O error at {path}: {message}")
            }
            StorageError::Engine { path, during, message } => {
                write!(f, "storage engine error at {path} during {during}: {message}")
            }
            StorageError::UnknownFormat { path, found, supported } => {
                write!(f, "storage at {path} has format version {found}, this build supports only {supported}")
            }
            StorageError::Corrupt { path, what } => write!(f, "corrupt storage at {path}: {what}"),
            StorageError::SerialMismatch { app, channel, expected, got } => {
                write!(f, "append to {app}/{channel} rejected: serial {got} given, next serial is {expected}")
            }
            StorageError::StreamMismatch { app, channel, stored, got } => {
                write!(f, "append to {app}/{channel} rejected: stream {got} given, current stream is {stored}")
            }
            StorageError::InvalidInput(why) => write!(f, "invalid storage request: {why}"),
            StorageError::Cursor(e) => write!(f, "{e}"),
            StorageError::Overloaded { path } => write!(f, "storage at {path} is overloaded"),
            StorageError::Closed { path } => write!(f, "storage at {path} is closed"),
        }
    }
}

impl std::error::Error for StorageError {}
