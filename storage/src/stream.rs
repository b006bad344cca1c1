use crate::codec::{decode_versioned, put_short_str};

const META_VERSION: u8 = 1;

/// Persisted state of one channel stream. Serials start at 1 and are gap-free; rows
/// `oldest_serial..next_serial` are retained (none when `oldest_serial == next_serial`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMeta {
    pub stream_id: String,
    pub next_serial: u64,
    pub oldest_serial: u64,
    pub retained_messages: u64,
    pub retained_bytes: u64,
    /// Publish time of the oldest retained row (0 when none is retained).
    pub oldest_published_at_ms: u64,
    /// Publish time of the newest row ever appended (0 before the first append); later appends
    /// are clamped to it so publish time never decreases along serials.
    pub newest_published_at_ms: u64,
}

impl StreamMeta {
    pub fn fresh(stream_id: String) -> Self {
        StreamMeta {
            stream_id,
            next_serial: 1,
            oldest_serial: 1,
            retained_messages: 0,
            retained_bytes: 0,
            oldest_published_at_ms: 0,
            newest_published_at_ms: 0,
        }
    }

    pub fn newest_serial(&self) -> u64 {
        self.next_serial - 1
    }

    pub fn has_retained(&self) -> bool {
        self.oldest_serial < self.next_serial
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 2 + self.stream_id.len() + 6 * 8);
        out.push(META_VERSION);
        put_short_str(&mut out, &self.stream_id);
        for n in [
            self.next_serial,
            self.oldest_serial,
            self.retained_messages,
            self.retained_bytes,
            self.oldest_published_at_ms,
            self.newest_published_at_ms,
        ] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        out
    }

    pub(crate) fn decode(buf: &[u8]) -> Option<StreamMeta> {
        decode_versioned(buf, META_VERSION, |r| {
            Some(StreamMeta {
                stream_id: r.short_str()?,
                next_serial: r.u64()?,
                oldest_serial: r.u64()?,
                retained_messages: r.u64()?,
                retained_bytes: r.u64()?,
                oldest_published_at_ms: r.u64()?,
                newest_published_at_ms: r.u64()?,
            })
        })
    }
}

/// The presence transitions of a presence channel are a stream of their own
/// (`docs/protocol/v2.md#presence-history`), stored like a channel's under this derived name.
/// `~` is never part of a channel name, so the two cannot collide, and the server places the
/// derived stream with its channel's owner.
const PRESENCE_PREFIX: &str = "~presence/";

/// The name `channel`'s presence stream is stored under.
pub fn presence_stream(channel: &str) -> String {
    format!("{PRESENCE_PREFIX}{channel}")
}

/// The channel whose presence stream is stored as `stream`, if it is one.
pub fn presence_channel(stream: &str) -> Option<&str> {
    stream.strip_prefix(PRESENCE_PREFIX)
}

/// What a purge or reset removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purge {
    All,
    /// Rows with a serial below this.
    BeforeSerial(u64),
    /// Rows published before this unix time (ms).
    BeforeTime(u64),
}

/// The outcome of a purge or reset: what was removed and the stream as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purged {
    pub messages: u64,
    pub bytes: u64,
    /// The stream before (for a reset: the id it replaced); `None` when there was none.
    pub previous_stream_id: Option<String>,
    pub meta: StreamMeta,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips() {
        let mut m = StreamMeta::fresh("s".into());
        m.next_serial = 9;
        m.retained_bytes = 77;
        assert_eq!(StreamMeta::decode(&m.encode()), Some(m));
    }
}
