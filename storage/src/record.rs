use crate::codec::{decode_versioned, peek_versioned, put_long_bytes, put_short_str};

const RECORD_VERSION: u8 = 1;

/// One history row: the message exactly as delivered to V2 subscribers plus the fields history
/// reads filter and report on without parsing the JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    pub published_at_ms: u64,
    pub message_id: String,
    pub event_name: String,
    /// The exact V2 wire JSON bytes of the message.
    pub payload: Vec<u8>,
}

impl HistoryRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(1 + 8 + 2 + self.message_id.len() + 2 + self.event_name.len() + 4 + self.payload.len());
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.published_at_ms.to_be_bytes());
        put_short_str(&mut out, &self.message_id);
        put_short_str(&mut out, &self.event_name);
        put_long_bytes(&mut out, &self.payload);
        out
    }

    pub fn decode(buf: &[u8]) -> Option<HistoryRecord> {
        decode_versioned(buf, RECORD_VERSION, |r| {
            Some(HistoryRecord {
                published_at_ms: r.u64()?,
                message_id: r.short_str()?,
                event_name: r.short_str()?,
                payload: r.long_bytes()?.to_vec(),
            })
        })
    }

    /// Reads only the publish time, so retention can walk rows without copying payloads.
    pub(crate) fn published_at_of(buf: &[u8]) -> Option<u64> {
        peek_versioned(buf, RECORD_VERSION, |r| r.u64())
    }

    pub(crate) fn payload_len_of(buf: &[u8]) -> Option<u64> {
        peek_versioned(buf, RECORD_VERSION, |r| {
            r.u64()?;
            r.short_str()?;
            r.short_str()?;
            Some(r.long_bytes()?.len() as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_truncation() {
        let rec = HistoryRecord {
            published_at_ms: 1_710_000_000_000,
            message_id: "m-1".into(),
            event_name: "order.updated".into(),
            payload: br#"{"event":"order.updated"}"#.to_vec(),
        };
        let bytes = rec.encode();
        assert_eq!(HistoryRecord::decode(&bytes), Some(rec.clone()));
        assert_eq!(HistoryRecord::published_at_of(&bytes), Some(rec.published_at_ms));
        assert_eq!(HistoryRecord::payload_len_of(&bytes), Some(rec.payload.len() as u64));
        assert_eq!(HistoryRecord::decode(&bytes[..bytes.len() - 1]), None);
    }
}
