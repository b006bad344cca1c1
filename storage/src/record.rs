use crate::codec::{decode_versions, peek_versions, put_long_bytes, put_long_str, put_optional, put_short_str, Reader};

/// Version 2 added the record kind after the version 1 fields; every version 1 row is plain.
/// Version 3 added the message's tags after the kind; older rows have none.
const RECORD_VERSION: u8 = 3;
const TAGS_VERSION: u8 = 3;
const FIRST_RECORD_VERSION: u8 = 1;
const READABLE: std::ops::RangeInclusive<u8> = FIRST_RECORD_VERSION..=RECORD_VERSION;

const KIND_PLAIN: u8 = 0;
const KIND_VERSIONED_CREATE: u8 = 1;
const KIND_MUTATION: u8 = 2;

/// What a history row is to a mutable message, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// An ordinary message.
    Plain,
    /// The create of a mutable message: its serial is the message's history serial.
    VersionedCreate,
    /// An update, delete or append of the mutable message created at serial `message`.
    Mutation { message: u64 },
}

impl RecordKind {
    fn put(self, out: &mut Vec<u8>) {
        match self {
            RecordKind::Plain => out.push(KIND_PLAIN),
            RecordKind::VersionedCreate => out.push(KIND_VERSIONED_CREATE),
            RecordKind::Mutation { message } => {
                out.push(KIND_MUTATION);
                out.extend_from_slice(&message.to_be_bytes());
            }
        }
    }

    fn read(version: u8, r: &mut Reader<'_>) -> Option<RecordKind> {
        if version == FIRST_RECORD_VERSION {
            return Some(RecordKind::Plain);
        }
        match r.u8()? {
            KIND_PLAIN => Some(RecordKind::Plain),
            KIND_VERSIONED_CREATE => Some(RecordKind::VersionedCreate),
            KIND_MUTATION => Some(RecordKind::Mutation { message: r.u64()? }),
            _ => None,
        }
    }
}

/// One history row: the message exactly as delivered to V2 subscribers plus the fields history
/// reads filter and report on without parsing the JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    pub published_at_ms: u64,
    pub message_id: String,
    pub event_name: String,
    /// The exact V2 wire JSON bytes of the message.
    pub payload: Vec<u8>,
    pub kind: RecordKind,
    /// The publisher's `tags` as a JSON object, kept whether or not frames carry them, so that
    /// rewind and recovery filter by them as live delivery does.
    pub tags: Option<String>,
}

impl HistoryRecord {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            1 + 8
                + 2
                + self.message_id.len()
                + 2
                + self.event_name.len()
                + 4
                + self.payload.len()
                + 9
                + 5
                + self.tags.as_ref().map_or(0, |t| t.len()),
        );
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.published_at_ms.to_be_bytes());
        put_short_str(&mut out, &self.message_id);
        put_short_str(&mut out, &self.event_name);
        put_long_bytes(&mut out, &self.payload);
        self.kind.put(&mut out);
        put_optional(&mut out, self.tags.as_deref(), put_long_str);
        out
    }

    pub fn decode(buf: &[u8]) -> Option<HistoryRecord> {
        decode_versions(buf, READABLE, |version, r| {
            Some(HistoryRecord {
                published_at_ms: r.u64()?,
                message_id: r.short_str()?,
                event_name: r.short_str()?,
                payload: r.long_bytes()?.to_vec(),
                kind: RecordKind::read(version, r)?,
                tags: if version >= TAGS_VERSION { r.optional(|r| r.long_str())? } else { None },
            })
        })
    }

    /// Reads only the publish time, so retention can walk rows without copying payloads.
    pub(crate) fn published_at_of(buf: &[u8]) -> Option<u64> {
        peek_versions(buf, READABLE, |_, r| r.u64())
    }

    pub(crate) fn payload_len_of(buf: &[u8]) -> Option<u64> {
        peek_versions(buf, READABLE, |_, r| {
            Self::skip_to_payload(r)?;
            Some(r.long_bytes()?.len() as u64)
        })
    }

    /// Reads the kind without copying the payload, so history reads skip mutation rows cheaply.
    pub(crate) fn kind_of(buf: &[u8]) -> Option<RecordKind> {
        peek_versions(buf, READABLE, |version, r| {
            Self::skip_to_payload(r)?;
            r.long_bytes()?;
            RecordKind::read(version, r)
        })
    }

    fn skip_to_payload(r: &mut Reader<'_>) -> Option<()> {
        r.u64()?;
        r.short_str()?;
        r.short_str()?;
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: RecordKind) -> HistoryRecord {
        HistoryRecord {
            published_at_ms: 1_710_000_000_000,
            message_id: "m-1".into(),
            event_name: "order.updated".into(),
            payload: br#"{"event":"order.updated"}"#.to_vec(),
            kind,
            tags: None,
        }
    }

    #[test]
    fn record_round_trips_and_rejects_truncation() {
        for kind in [RecordKind::Plain, RecordKind::VersionedCreate, RecordKind::Mutation { message: 7 }] {
            let mut rec = rec(kind);
            if kind == RecordKind::Plain {
                rec.tags = Some(r#"{"region":"eu"}"#.into());
            }
            let bytes = rec.encode();
            assert_eq!(HistoryRecord::decode(&bytes), Some(rec.clone()));
            assert_eq!(HistoryRecord::published_at_of(&bytes), Some(rec.published_at_ms));
            assert_eq!(HistoryRecord::payload_len_of(&bytes), Some(rec.payload.len() as u64));
            assert_eq!(HistoryRecord::kind_of(&bytes), Some(kind));
            assert_eq!(HistoryRecord::decode(&bytes[..bytes.len() - 1]), None);
        }
    }

    /// Version 2 rows (a kind, no tags) decode with no tags.
    #[test]
    fn version_2_rows_have_no_tags() {
        let mut v2 = rec(RecordKind::Mutation { message: 7 }).encode();
        assert_eq!(v2.pop(), Some(0), "no tags: one absent marker");
        v2[0] = 2;
        assert_eq!(HistoryRecord::decode(&v2), Some(rec(RecordKind::Mutation { message: 7 })));
        assert_eq!(HistoryRecord::kind_of(&v2), Some(RecordKind::Mutation { message: 7 }));
    }

    /// The exact bytes version 1 wrote (before record kinds), as existing data dirs hold them.
    #[test]
    fn version_1_rows_decode_as_plain() {
        let mut v1 = vec![1];
        v1.extend_from_slice(&1_710_000_000_000u64.to_be_bytes());
        v1.extend_from_slice(&[0, 3]);
        v1.extend_from_slice(b"m-1");
        v1.extend_from_slice(&[0, 13]);
        v1.extend_from_slice(b"order.updated");
        let payload = br#"{"event":"order.updated"}"#;
        v1.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        v1.extend_from_slice(payload);
        assert_eq!(HistoryRecord::decode(&v1), Some(rec(RecordKind::Plain)));
        assert_eq!(HistoryRecord::published_at_of(&v1), Some(1_710_000_000_000));
        assert_eq!(HistoryRecord::payload_len_of(&v1), Some(payload.len() as u64));
        assert_eq!(HistoryRecord::kind_of(&v1), Some(RecordKind::Plain));
        let mut trailing = v1.clone();
        trailing.push(KIND_PLAIN);
        assert_eq!(HistoryRecord::decode(&trailing), None, "a version 1 row has no kind byte");
        v1[0] = 3;
        assert_eq!(HistoryRecord::decode(&v1), None);
    }
}
