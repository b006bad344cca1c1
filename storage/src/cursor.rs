//! Opaque history cursors (`docs/protocol/v2.md#history-cursors`): URL-safe base64 (no padding)
//! of the cursor JSON followed by a truncated HMAC-SHA256 tag, so clients cannot forge a
//! position.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{Bounds, Direction};

const CURSOR_VERSION: u32 = 1;
const MAX_CURSOR_LEN: usize = 16 * 1024;
const TAG_LEN: usize = 16;
pub(crate) const SECRET_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub version: u32,
    pub app_id: String,
    pub channel: String,
    pub stream_id: String,
    /// Serial of the last item returned.
    pub serial: u64,
    pub direction: Direction,
    pub bounds: Bounds,
}

/// What the request and the stream's current state say a cursor must match.
#[derive(Debug, Clone, Copy)]
pub struct CursorCheck<'a> {
    pub app: &'a str,
    pub channel: &'a str,
    pub direction: Direction,
    pub bounds: &'a Bounds,
    pub stream_id: &'a str,
    pub oldest_retained_serial: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorError {
    Invalid(&'static str),
    StreamChanged,
    BeforeRetained,
}

impl fmt::Display for CursorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CursorError::Invalid(why) => write!(f, "Invalid history cursor: {why}"),
            CursorError::StreamChanged => f.write_str("Expired history cursor: channel stream changed"),
            CursorError::BeforeRetained => f.write_str("cursor points before retained history"),
        }
    }
}

impl std::error::Error for CursorError {}

/// Signs and verifies cursors with the data directory's secret. Cheap to clone and pure CPU,
/// so it runs on the caller's thread.
#[derive(Clone)]
pub struct CursorCodec {
    secret: Arc<[u8; SECRET_LEN]>,
}

impl fmt::Debug for CursorCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CursorCodec")
    }
}

impl CursorCodec {
    pub(crate) fn new(secret: [u8; SECRET_LEN]) -> Self {
        CursorCodec { secret: Arc::new(secret) }
    }

    pub(crate) fn secret(&self) -> [u8; SECRET_LEN] {
        *self.secret
    }

    fn tag(&self, json: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret[..]).expect("HMAC accepts keys of any length");
        mac.update(json);
        let full = mac.finalize().into_bytes();
        let mut tag = [0; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }

    pub fn encode(&self, cursor: &Cursor) -> String {
        let mut bytes = serde_json::to_vec(cursor).expect("cursor fields always serialize");
        let tag = self.tag(&bytes);
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    pub fn decode(&self, encoded: &str, check: &CursorCheck<'_>) -> Result<Cursor, CursorError> {
        if encoded.len() > MAX_CURSOR_LEN {
            return Err(CursorError::Invalid("too long"));
        }
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| CursorError::Invalid("not url-safe base64"))?;
        let at = bytes.len().checked_sub(TAG_LEN).ok_or(CursorError::Invalid("too short"))?;
        let (json, tag) = bytes.split_at(at);
        if !constant_time_eq(&self.tag(json), tag) {
            return Err(CursorError::Invalid("tampered"));
        }
        let cursor: Cursor = serde_json::from_slice(json).map_err(|_| CursorError::Invalid("malformed"))?;
        if cursor.version != CURSOR_VERSION {
            return Err(CursorError::Invalid("unsupported version"));
        }
        if cursor.app_id != check.app || cursor.channel != check.channel {
            return Err(CursorError::Invalid("issued for another channel"));
        }
        if cursor.direction != check.direction {
            return Err(CursorError::Invalid("direction mismatch"));
        }
        if cursor.bounds != *check.bounds {
            return Err(CursorError::Invalid("bounds mismatch"));
        }
        if cursor.stream_id != check.stream_id {
            return Err(CursorError::StreamChanged);
        }
        if cursor.serial < check.oldest_retained_serial {
            return Err(CursorError::BeforeRetained);
        }
        Ok(cursor)
    }

    pub(crate) fn next_cursor(
        &self,
        app: &str,
        channel: &str,
        stream_id: &str,
        serial: u64,
        direction: Direction,
        bounds: Bounds,
    ) -> String {
        self.encode(&Cursor {
            version: CURSOR_VERSION,
            app_id: app.to_string(),
            channel: channel.to_string(),
            stream_id: stream_id.to_string(),
            serial,
            direction,
            bounds,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
