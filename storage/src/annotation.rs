//! Annotations of mutable messages (reactions, receipts): each message's annotation events,
//! numbered per message from 1, and the current summary of each (message, annotation type),
//! stored beside the message's versions and removed with it. The server validates and
//! summarises; the store persists the events and the summaries it is given.

use crate::codec::{decode_versioned, put_long_str, put_optional, put_short_str, put_u64, Reader};

const ANNOTATION_RECORD_VERSION: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnotationAction {
    Create,
    Delete,
}

/// One annotation event of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationRecord {
    /// Its place among the message's annotation events, from 1 (the key, not the value).
    pub serial: u64,
    pub action: AnnotationAction,
    /// A create's id (the server makes one); `None` on a delete.
    pub id: Option<String>,
    /// `namespace:summarizer.v1`; a delete carries its target's.
    pub annotation_type: String,
    pub name: Option<String>,
    pub client_id: Option<String>,
    /// `multiple` counts; `None` where the create gave none.
    pub count: Option<u64>,
    /// The create's `data` as raw JSON.
    pub data: Option<String>,
    pub encoding: Option<String>,
    pub timestamp_ms: u64,
    /// A delete's target: the serial of the create it deletes.
    pub deletes: Option<u64>,
}

/// An annotation event to store, with the summary of its (message, type) after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationWrite {
    /// The history serial of the annotated message.
    pub message: u64,
    pub record: AnnotationRecord,
    /// The (message, `record.annotation_type`) summary JSON after this event; empty removes it.
    pub summary: Vec<u8>,
}

/// A page of a message's annotation events, in serial order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationsPage {
    pub items: Vec<AnnotationRecord>,
    pub has_more: bool,
}

/// One stored summary: the message, the annotation type, the summary JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSummary {
    pub message: u64,
    pub annotation_type: String,
    pub summary: Vec<u8>,
}

/// Which annotation events a page holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationsQuery {
    /// Exclusive: events with a serial above this one (0 for the first page).
    pub after: u64,
    pub limit: usize,
    /// Only events of this type, when given.
    pub annotation_type: Option<String>,
}

impl AnnotationAction {
    fn code(self) -> u8 {
        match self {
            AnnotationAction::Create => 0,
            AnnotationAction::Delete => 1,
        }
    }

    fn from_code(code: u8) -> Option<AnnotationAction> {
        match code {
            0 => Some(AnnotationAction::Create),
            1 => Some(AnnotationAction::Delete),
            _ => None,
        }
    }
}

impl AnnotationRecord {
    /// The value stored under the annotation key; the serial is in the key. The id is
    /// server-made and the type fits a key (the store refuses longer), so both are short
    /// strings; names and client ids come from clients and are stored whole.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.data.as_ref().map_or(0, String::len));
        out.push(ANNOTATION_RECORD_VERSION);
        out.push(self.action.code());
        put_u64(&mut out, self.timestamp_ms);
        put_optional(&mut out, self.id.as_deref(), put_short_str);
        put_short_str(&mut out, &self.annotation_type);
        put_optional(&mut out, self.name.as_deref(), put_long_str);
        put_optional(&mut out, self.client_id.as_deref(), put_long_str);
        put_optional(&mut out, self.count, put_u64);
        put_optional(&mut out, self.data.as_deref(), put_long_str);
        put_optional(&mut out, self.encoding.as_deref(), put_long_str);
        put_optional(&mut out, self.deletes, put_u64);
        out
    }

    pub(crate) fn decode(value: &[u8], serial: u64) -> Option<AnnotationRecord> {
        let long = |r: &mut Reader<'_>| r.optional(Reader::long_str);
        decode_versioned(value, ANNOTATION_RECORD_VERSION, |r| {
            // Fields in the order `encode` writes them.
            Some(AnnotationRecord {
                serial,
                action: AnnotationAction::from_code(r.u8()?)?,
                timestamp_ms: r.u64()?,
                id: r.optional(Reader::short_str)?,
                annotation_type: r.short_str()?,
                name: long(r)?,
                client_id: long(r)?,
                count: r.optional(Reader::u64)?,
                data: long(r)?,
                encoding: long(r)?,
                deletes: r.optional(Reader::u64)?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field's round trip, and a delete's without its optional fields, go through the
    /// store in tests/annotations.rs; here, that a value cut short anywhere or followed by more
    /// bytes is refused rather than misread.
    #[test]
    fn annotation_values_decode_only_whole() {
        let rec = AnnotationRecord {
            serial: 3,
            action: AnnotationAction::Create,
            id: Some("ann-1".into()),
            annotation_type: "reaction:distinct.v1".into(),
            name: Some("👍".into()),
            client_id: Some("alice".into()),
            count: Some(2),
            data: Some(r#"{"k":[1,2]}"#.into()),
            encoding: Some("json".into()),
            timestamp_ms: 1234,
            deletes: Some(1),
        };
        let bytes = rec.encode();
        assert_eq!(AnnotationRecord::decode(&bytes, rec.serial), Some(rec.clone()));
        for len in 0..bytes.len() {
            assert_eq!(AnnotationRecord::decode(&bytes[..len], rec.serial), None, "cut to {len}");
        }
        assert_eq!(AnnotationRecord::decode(&[&bytes[..], &[0]].concat(), rec.serial), None);
        for action in [AnnotationAction::Create, AnnotationAction::Delete] {
            assert_eq!(AnnotationAction::from_code(action.code()), Some(action));
        }
    }
}
