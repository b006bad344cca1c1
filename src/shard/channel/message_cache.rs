//! The owner's working copy of mutable messages (`docs/protocol/v2.md#mutable-messages`): each
//! message's current state, op_id receipts and annotation events, loaded from the store on
//! its first mutation or annotation and then kept up to date by the owner itself, so that a
//! stream of appends checks and merges against memory instead of folding every version from
//! disk each time. Operations on one message are applied here one at a time in the order the
//! owner took them; for mutations that order is their serial order, so concurrent writers
//! each land exactly once.
//!
//! Bounded by bytes (`versioned_messages.cache_mb`): the least recently mutated messages are
//! dropped first and read back from the store when mutated again.

use super::annotate::Annotate;
use super::{ChannelOp, OpFailure};
use crate::config::AppIdx;
use crate::protocol::mutation::Mutation;
use crate::protocol::outbound::push_json_str;
use crate::shard::route::Responder;
use ahash::AHashMap;
use std::collections::BTreeMap;
use std::sync::Arc;
use storage::{AnnotationRecord, MessageState, VersionAction, VersionData};

/// A message: its app, channel, stream and history serial (after an operator's reset the new
/// stream reuses the serials).
pub type MessageKey = (AppIdx, Arc<str>, Arc<str>, u64);

/// An op_id receipt as the owner holds it.
pub struct HeldReceipt {
    pub action: VersionAction,
    pub op_id: String,
    pub digest: [u8; 32],
    pub delivery_serial: u64,
    /// The mutation's append is written; until then a retry cannot be answered yet.
    pub committed: bool,
}

/// An operation on a message, waiting for the message or in hand.
pub enum Pending {
    Mutation(ChannelOp, Responder<ChannelOp>),
    Annotation(Annotate, Responder<Annotate>),
}

impl Pending {
    pub fn fail(self, failure: OpFailure) {
        match self {
            Pending::Mutation(_, reply) => reply.send(Err(failure)),
            Pending::Annotation(_, reply) => reply.send(Err(failure)),
        }
    }
}

pub struct Entry {
    pub state: MessageState,
    pub receipts: Vec<HeldReceipt>,
    /// Every annotation event of the message, in serial order (deletes included: a repeated
    /// delete finds its first, and each summary is folded from them).
    pub annotations: Vec<AnnotationRecord>,
    /// The text as a JSON string literal, kept in step with `state.data` so that a full
    /// append frame copies it instead of encoding the whole text on every append.
    quoted: String,
    tick: u64,
    bytes: usize,
}

impl Entry {
    fn new(mut state: MessageState, receipts: Vec<HeldReceipt>, tick: u64) -> Entry {
        let quoted = quote(&state.data);
        let annotations = std::mem::take(&mut state.annotations);
        Entry { state, receipts, annotations, quoted, tick, bytes: 0 }
    }

    /// The text as a JSON string literal (`""` while there is no text).
    pub fn quoted(&self) -> &str {
        &self.quoted
    }

    /// Applies a mutation already checked against the state (`mutate.rs`): update and delete
    /// are shallow mixins of name, data and extras (each kept, cleared or replaced); an append
    /// extends the text in place and may replace the extras. The newest version, counters
    /// and receipts are the caller's.
    pub fn change(&mut self, m: &Mutation) {
        let s = &mut self.state;
        s.versions += 1;
        if m.action == VersionAction::Append {
            s.appends += 1;
            let fragment = m.data.as_deref().unwrap_or_default();
            match &mut s.data {
                VersionData::Text(t) => t.push_str(fragment),
                d => *d = VersionData::Text(fragment.to_owned()),
            }
            if m.extras.is_some() {
                s.extras.clone_from(&m.extras);
            }
            let mut escaped = Vec::with_capacity(fragment.len() + 2);
            push_json_str(&mut escaped, fragment);
            self.quoted.pop();
            self.quoted.push_str(std::str::from_utf8(&escaped[1..]).expect("escaped UTF-8 stays UTF-8"));
            return;
        }
        if m.clear.name {
            s.name = String::new();
        } else if let Some(name) = &m.name {
            s.name.clone_from(name);
        }
        if m.clear.data {
            s.data = VersionData::Absent;
        } else if let Some(data) = &m.data {
            s.data = VersionData::Text(data.clone());
        }
        if m.clear.extras {
            s.extras = None;
        } else if m.extras.is_some() {
            s.extras.clone_from(&m.extras);
        }
        self.quoted = quote(&s.data);
    }

    pub fn receipt(&self, action: VersionAction, op_id: &str) -> Option<&HeldReceipt> {
        self.receipts.iter().find(|r| r.action == action && r.op_id == op_id)
    }
}

enum Slot {
    /// Read from the store; operations that arrive meanwhile wait here, in order.
    Loading(Vec<Pending>),
    Ready(Box<Entry>),
}

/// What `lookup` found.
pub enum Lookup<'a> {
    Ready(&'a mut Entry),
    /// Being read from the store: the operation was queued behind the read.
    Queued,
    /// Not held: the caller reads it, and the operation waits in the new slot.
    Load,
}

pub struct MessageCache {
    slots: AHashMap<MessageKey, Slot>,
    /// Ready entries by last use.
    by_use: BTreeMap<u64, MessageKey>,
    next_tick: u64,
    bytes: usize,
    limit: usize,
}

impl MessageCache {
    pub fn new(limit: usize) -> MessageCache {
        MessageCache { slots: AHashMap::default(), by_use: BTreeMap::new(), next_tick: 0, bytes: 0, limit }
    }

    /// The message's entry for `m`, or where `m` went instead.
    pub fn lookup(&mut self, key: &MessageKey, m: Pending) -> (Lookup<'_>, Option<Pending>) {
        let ready = match self.slots.get_mut(key) {
            Some(Slot::Loading(waiting)) => {
                waiting.push(m);
                return (Lookup::Queued, None);
            }
            Some(Slot::Ready(_)) => true,
            None => false,
        };
        if !ready {
            self.slots.insert(key.clone(), Slot::Loading(vec![m]));
            return (Lookup::Load, None);
        }
        self.next_tick += 1;
        let Some(Slot::Ready(entry)) = self.slots.get_mut(key) else { unreachable!("checked just above") };
        self.by_use.remove(&entry.tick);
        entry.tick = self.next_tick;
        self.by_use.insert(entry.tick, key.clone());
        (Lookup::Ready(entry), Some(m))
    }

    /// The store answered for a loading message: `Some` makes it ready. Returns the operations
    /// that waited, in order.
    pub fn loaded(&mut self, key: &MessageKey, state: Option<MessageState>) -> Vec<Pending> {
        let waiting = match self.slots.remove(key) {
            Some(Slot::Loading(w)) => w,
            Some(ready) => {
                self.slots.insert(key.clone(), ready);
                return Vec::new();
            }
            None => return Vec::new(),
        };
        if let Some(mut state) = state {
            let receipts = std::mem::take(&mut state.receipts)
                .into_iter()
                .map(|r| HeldReceipt {
                    action: r.action,
                    op_id: r.op_id,
                    digest: r.digest,
                    delivery_serial: r.delivery_serial,
                    committed: true,
                })
                .collect();
            self.next_tick += 1;
            let entry = Box::new(Entry::new(state, receipts, self.next_tick));
            self.by_use.insert(entry.tick, key.clone());
            self.slots.insert(key.clone(), Slot::Ready(entry));
            self.resized(key);
        }
        waiting
    }

    /// Re-counts an entry's bytes after it changed, and drops the least recently used entries
    /// while over the bound (never the one just changed).
    pub fn resized(&mut self, key: &MessageKey) {
        if let Some(Slot::Ready(e)) = self.slots.get_mut(key) {
            let bytes = entry_bytes(e);
            self.bytes = self.bytes + bytes - e.bytes;
            e.bytes = bytes;
        }
        while self.bytes > self.limit {
            let Some((&tick, oldest)) = self.by_use.iter().next() else { break };
            if oldest == key {
                break;
            }
            let oldest = oldest.clone();
            self.by_use.remove(&tick);
            if let Some(Slot::Ready(e)) = self.slots.remove(&oldest) {
                self.bytes -= e.bytes;
            }
        }
    }

    /// A mutation's append is written: a retry of its op_id is now a duplicate.
    pub fn committed(&mut self, key: &MessageKey, action: VersionAction, op_id: &str) {
        if let Some(Slot::Ready(e)) = self.slots.get_mut(key) {
            if let Some(r) = e.receipts.iter_mut().find(|r| r.action == action && r.op_id == op_id) {
                r.committed = true;
            }
        }
    }

    /// Drops a message whose held state may no longer match the store (a failed append).
    pub fn forget(&mut self, key: &MessageKey) {
        if let Some(Slot::Ready(e)) = self.slots.remove(key) {
            self.by_use.remove(&e.tick);
            self.bytes -= e.bytes;
        }
    }

    /// Drops every ready message of a channel whose history an operator purged or reset.
    pub fn forget_channel(&mut self, app: AppIdx, channel: &str) {
        let keys: Vec<MessageKey> = self
            .slots
            .iter()
            .filter(|((a, c, _, _), slot)| *a == app && &**c == channel && matches!(slot, Slot::Ready(_)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.forget(&k);
        }
    }
}

/// Text data as a JSON string literal; `""` for anything an append would replace.
fn quote(data: &VersionData) -> String {
    let mut out = Vec::new();
    match data {
        VersionData::Text(t) => push_json_str(&mut out, t),
        VersionData::Absent | VersionData::Json(_) => out.extend_from_slice(b"\"\""),
    }
    String::from_utf8(out).expect("escaped UTF-8 stays UTF-8")
}

fn entry_bytes(e: &Entry) -> usize {
    let s = &e.state;
    let data = match &s.data {
        storage::VersionData::Absent => 0,
        storage::VersionData::Text(t) | storage::VersionData::Json(t) => t.len(),
    };
    let fixed = 256 + s.name.len() + s.extras.as_ref().map_or(0, String::len);
    let annotation_bytes = |a: &AnnotationRecord| {
        let text: usize = [&a.id, &a.name, &a.client_id, &a.data, &a.encoding]
            .iter()
            .map(|t| t.as_ref().map_or(0, String::len))
            .sum();
        160 + a.annotation_type.len() + text
    };
    fixed
        + data
        + e.quoted.len()
        + e.receipts.iter().map(|r| 80 + r.op_id.len()).sum::<usize>()
        + e.annotations.iter().map(annotation_bytes).sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::VersionRecord;

    fn state(data: VersionData) -> MessageState {
        let latest = VersionRecord {
            action: VersionAction::Create,
            delivery_serial: 1,
            timestamp_ms: 1,
            message_id: "m".into(),
            name: Some("e".into()),
            data: data.clone(),
            extras: None,
            user_id: None,
            client_id: None,
            description: None,
            metadata: None,
        };
        MessageState {
            history_serial: 1,
            name: "e".into(),
            data,
            extras: None,
            user_id: None,
            creator_client_id: None,
            latest,
            appends: 0,
            versions: 1,
            receipts: Vec::new(),
            annotations: Vec::new(),
        }
    }

    fn mutation(action: VersionAction, json: &str) -> Mutation {
        Mutation::parse(action, &sonic_rs::from_str(json).unwrap()).unwrap()
    }

    /// The quoted text must always be the JSON encoding of the text, whatever the mix of
    /// appends (escaped piecewise) and replacements.
    #[test]
    fn quoted_text_follows_every_change() {
        let mut e = Entry::new(state(VersionData::Text("a\"b".into())), Vec::new(), 0);
        let expect = |e: &Entry| match &e.state.data {
            VersionData::Text(t) => sonic_rs::to_string(t).unwrap(),
            _ => "\"\"".to_owned(),
        };
        for (action, body) in [
            (VersionAction::Append, r#"{"data":"\n\u0001é"}"#),
            (VersionAction::Append, r#"{"data":"\\","extras":{"k":1}}"#),
            (VersionAction::Update, r#"{"clear_fields":["data"],"name":"n"}"#),
            (VersionAction::Append, r#"{"data":"x"}"#),
            (VersionAction::Delete, r#"{"data":"gone"}"#),
        ] {
            e.change(&mutation(action, body));
            assert_eq!(e.quoted(), expect(&e), "{body}");
        }
        assert_eq!((e.state.versions, e.state.appends, e.state.name.as_str()), (6, 3, "n"));
        assert_eq!(e.state.data, VersionData::Text("gone".into()));
        assert_eq!(e.state.extras.as_deref(), Some(r#"{"k":1}"#));
    }
}
