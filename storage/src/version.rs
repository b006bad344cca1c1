//! Mutable messages: the versions and op_id receipts stored beside a message's history rows,
//! and the message's current state computed from them (with its annotation events, when
//! asked). The server validates and merges; the store only persists these and folds them on
//! reads.

use crate::codec::{decode_versioned, put_long_str, put_optional, put_short_str, Reader};
use crate::{AnnotationRecord, Direction};

const VERSION_RECORD_VERSION: u8 = 1;
const RECEIPT_VERSION: u8 = 1;

const DATA_ABSENT: u8 = 0;
const DATA_TEXT: u8 = 1;
const DATA_JSON: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionAction {
    Create,
    Update,
    Delete,
    Append,
}

impl VersionAction {
    /// The stored byte (in version values and receipt keys).
    pub(crate) fn code(self) -> u8 {
        match self {
            VersionAction::Create => 0,
            VersionAction::Update => 1,
            VersionAction::Delete => 2,
            VersionAction::Append => 3,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<VersionAction> {
        match code {
            0 => Some(VersionAction::Create),
            1 => Some(VersionAction::Update),
            2 => Some(VersionAction::Delete),
            3 => Some(VersionAction::Append),
            _ => None,
        }
    }
}

/// A message's data: absent, a JSON string's content (unescaped text; appends concatenate onto
/// it), or the JSON text of any other JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionData {
    Absent,
    Text(String),
    Json(String),
}

impl VersionData {
    /// What an append concatenates: the text, or the JSON text (the server appends only to
    /// text; anything else is still folded deterministically).
    fn as_text(&self) -> &str {
        match self {
            VersionData::Absent => "",
            VersionData::Text(s) | VersionData::Json(s) => s,
        }
    }
}

/// One version of a mutable message. For create, update and delete it holds the message's whole
/// state after the operation (a snapshot). For append, `data` is the fragment
/// (`VersionData::Text`) and `extras` is `Some` only when the append replaced the message's
/// extras; `name` is None.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRecord {
    pub action: VersionAction,
    /// The stream serial this version was delivered at (for the create: the message's history
    /// serial). Part of the key; filled in on reads.
    pub delivery_serial: u64,
    pub timestamp_ms: u64,
    /// message_id of the frame that carried this version.
    pub message_id: String,
    /// The message's event name (snapshots); None for appends.
    pub name: Option<String>,
    pub data: VersionData,
    /// JSON text of the message's extras.
    pub extras: Option<String>,
    /// The frame's user_id.
    pub user_id: Option<String>,
    /// Who made this version (actor client id), if known.
    pub client_id: Option<String>,
    pub description: Option<String>,
    /// JSON text.
    pub metadata: Option<String>,
}

impl VersionRecord {
    /// The value stored under the version key; the delivery serial is in the key.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.data.as_text().len());
        out.push(VERSION_RECORD_VERSION);
        out.push(self.action.code());
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        put_short_str(&mut out, &self.message_id);
        put_optional(&mut out, self.name.as_deref(), put_short_str);
        match &self.data {
            VersionData::Absent => out.push(DATA_ABSENT),
            VersionData::Text(s) => {
                out.push(DATA_TEXT);
                put_long_str(&mut out, s);
            }
            VersionData::Json(s) => {
                out.push(DATA_JSON);
                put_long_str(&mut out, s);
            }
        }
        for field in [&self.extras, &self.user_id, &self.client_id, &self.description, &self.metadata] {
            put_optional(&mut out, field.as_deref(), put_long_str);
        }
        out
    }

    pub(crate) fn decode(buf: &[u8], delivery_serial: u64) -> Option<VersionRecord> {
        let long = |r: &mut Reader<'_>| r.optional(Reader::long_str);
        decode_versioned(buf, VERSION_RECORD_VERSION, |r| {
            Some(VersionRecord {
                action: VersionAction::from_code(r.u8()?)?,
                delivery_serial,
                timestamp_ms: r.u64()?,
                message_id: r.short_str()?,
                name: r.optional(Reader::short_str)?,
                data: match r.u8()? {
                    DATA_ABSENT => VersionData::Absent,
                    DATA_TEXT => VersionData::Text(r.long_str()?),
                    DATA_JSON => VersionData::Json(r.long_str()?),
                    _ => return None,
                },
                extras: long(r)?,
                user_id: long(r)?,
                client_id: long(r)?,
                description: long(r)?,
                metadata: long(r)?,
            })
        })
    }
}

/// An op_id receipt: a mutation's idempotency record. Scope is (channel, message, action,
/// op_id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub action: VersionAction,
    pub op_id: String,
    /// Digest of the canonical operation, computed by the server.
    pub digest: [u8; 32],
    pub delivery_serial: u64,
}

impl Receipt {
    /// The value stored under the receipt key; action and op_id are in the key.
    pub(crate) fn encode_value(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 32 + 8);
        out.push(RECEIPT_VERSION);
        out.extend_from_slice(&self.digest);
        out.extend_from_slice(&self.delivery_serial.to_be_bytes());
        out
    }

    pub(crate) fn decode_value(action: VersionAction, op_id: String, buf: &[u8]) -> Option<Receipt> {
        decode_versioned(buf, RECEIPT_VERSION, |r| {
            Some(Receipt { action, op_id, digest: r.bytes(32)?.try_into().ok()?, delivery_serial: r.u64()? })
        })
    }
}

/// What a versioned append adds beside its history row, in the same batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionWrite {
    /// History serial of the message: the append's own serial for a create.
    pub message: u64,
    /// Stored under the append's serial, whatever its `delivery_serial` says.
    pub record: VersionRecord,
    /// Stored with the append's serial as its delivery serial.
    pub receipt: Option<Receipt>,
}

/// A mutable message as it stands, computed from its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageState {
    pub history_serial: u64,
    /// Event name of the newest snapshot.
    pub name: String,
    /// The newest snapshot's data with every later append's fragment concatenated (Text; an
    /// Absent base counts as empty text once something is appended).
    pub data: VersionData,
    /// The newest snapshot's extras, replaced by any later append that carried extras (the
    /// newest such wins).
    pub extras: Option<String>,
    /// The create's user_id and client_id (who created the message).
    pub user_id: Option<String>,
    pub creator_client_id: Option<String>,
    /// The newest version as stored (for an append: its fragment).
    pub latest: VersionRecord,
    /// Appends since the create (all of them, not only since the last snapshot).
    pub appends: u32,
    /// Number of versions including the create.
    pub versions: u32,
    /// Every receipt of the message (only when asked for).
    pub receipts: Vec<Receipt>,
    /// Every annotation event of the message, in serial order (only when asked for).
    pub annotations: Vec<AnnotationRecord>,
}

impl MessageState {
    /// Folds a message's versions, oldest first (the create first); `None` without any.
    pub(crate) fn fold(history_serial: u64, versions: impl IntoIterator<Item = VersionRecord>) -> Option<Self> {
        let mut versions = versions.into_iter();
        let create = versions.next()?;
        let mut state = MessageState {
            history_serial,
            name: create.name.clone().unwrap_or_default(),
            data: create.data.clone(),
            extras: create.extras.clone(),
            user_id: create.user_id.clone(),
            creator_client_id: create.client_id.clone(),
            latest: create,
            appends: 0,
            versions: 1,
            receipts: Vec::new(),
            annotations: Vec::new(),
        };
        for version in versions {
            state.apply(version);
        }
        Some(state)
    }

    fn apply(&mut self, version: VersionRecord) {
        self.versions += 1;
        if version.action == VersionAction::Append {
            self.appends += 1;
            // An append without a fragment (extras only) leaves the data as it is.
            if version.data != VersionData::Absent {
                self.data = VersionData::Text(format!("{}{}", self.data.as_text(), version.data.as_text()));
            }
            if version.extras.is_some() {
                self.extras.clone_from(&version.extras);
            }
        } else {
            if let Some(name) = &version.name {
                self.name.clone_from(name);
            }
            self.data = version.data.clone();
            self.extras.clone_from(&version.extras);
        }
        self.latest = version;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionsQuery {
    pub limit: usize,
    pub direction: Direction,
    /// Exclusive: versions strictly after (oldest first) or before (newest first) this delivery
    /// serial.
    pub after: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionsPage {
    pub items: Vec<VersionRecord>,
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(action: VersionAction, serial: u64, data: VersionData) -> VersionRecord {
        VersionRecord {
            action,
            delivery_serial: serial,
            timestamp_ms: 1000 + serial,
            message_id: format!("m-{serial}"),
            name: (action != VersionAction::Append).then(|| format!("ev-{serial}")),
            data,
            extras: None,
            user_id: Some(format!("u-{serial}")),
            client_id: Some(format!("c-{serial}")),
            description: None,
            metadata: None,
        }
    }

    #[test]
    fn version_records_and_receipts_round_trip() {
        let full = VersionRecord {
            description: Some("fix typo".into()),
            metadata: Some(r#"{"k":"v"}"#.into()),
            extras: Some(r#"{"headers":{}}"#.into()),
            ..version(VersionAction::Update, 9, VersionData::Json("[1,2]".into()))
        };
        let sparse =
            VersionRecord { user_id: None, client_id: None, ..version(VersionAction::Delete, 3, VersionData::Absent) };
        let text = version(VersionAction::Append, 4, VersionData::Text("é\"\n".into()));
        for rec in [full, sparse, text] {
            let bytes = rec.encode();
            assert_eq!(VersionRecord::decode(&bytes, rec.delivery_serial), Some(rec.clone()));
            assert_eq!(VersionRecord::decode(&bytes[..bytes.len() - 1], rec.delivery_serial), None);
        }
        let receipt =
            Receipt { action: VersionAction::Append, op_id: "op".into(), digest: [7; 32], delivery_serial: 12 };
        let bytes = receipt.encode_value();
        assert_eq!(Receipt::decode_value(VersionAction::Append, "op".into(), &bytes), Some(receipt));
        assert_eq!(Receipt::decode_value(VersionAction::Append, "op".into(), &bytes[1..]), None);
        for action in [VersionAction::Create, VersionAction::Update, VersionAction::Delete, VersionAction::Append] {
            assert_eq!(VersionAction::from_code(action.code()), Some(action));
        }
    }

    #[test]
    fn fold_applies_snapshots_and_appends() {
        let text = |s: &str| VersionData::Text(s.into());
        let state = MessageState::fold(
            1,
            [
                version(VersionAction::Create, 1, text("he")),
                version(VersionAction::Append, 2, text("llo")),
                VersionRecord { extras: Some("{}".into()), ..version(VersionAction::Append, 3, VersionData::Absent) },
            ],
        )
        .unwrap();
        assert_eq!(
            (state.data, state.extras.as_deref(), state.appends, state.versions),
            (text("hello"), Some("{}"), 2, 3)
        );
        assert_eq!((state.name.as_str(), state.user_id.as_deref()), ("ev-1", Some("u-1")));
        assert_eq!(state.latest.delivery_serial, 3);
        assert_eq!(MessageState::fold(1, []), None);
    }
}
