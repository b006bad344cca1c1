//! The owner's working copy of mutable messages (`docs/protocol/v2.md#mutable-messages`): each
//! message's current state and op_id receipts, loaded from the store on its first mutation
//! and then kept up to date by the owner itself, so that a stream of appends checks and
//! merges against memory instead of folding every version from disk each time. Mutations of
//! one message are applied here one at a time in the order the owner took them; that order
//! is their serial order, so concurrent writers each land exactly once.
//!
//! Bounded by bytes (`versioned_messages.cache_mb`): the least recently mutated messages are
//! dropped first and read back from the store when mutated again.

use super::mutate::PendingMutation;
use crate::config::AppIdx;
use ahash::AHashMap;
use std::collections::BTreeMap;
use std::sync::Arc;
use storage::{MessageState, VersionAction};

/// A message: its app, channel and history serial.
pub type MessageKey = (AppIdx, Arc<str>, u64);

/// An op_id receipt as the owner holds it.
pub struct HeldReceipt {
    pub action: VersionAction,
    pub op_id: String,
    pub digest: [u8; 32],
    pub delivery_serial: u64,
    /// The mutation's append is written; until then a retry cannot be answered yet.
    pub committed: bool,
}

pub struct Entry {
    pub state: MessageState,
    pub receipts: Vec<HeldReceipt>,
    tick: u64,
    bytes: usize,
}

impl Entry {
    pub fn receipt(&self, action: VersionAction, op_id: &str) -> Option<&HeldReceipt> {
        self.receipts.iter().find(|r| r.action == action && r.op_id == op_id)
    }
}

enum Slot {
    /// Read from the store; mutations that arrive meanwhile wait here, in order.
    Loading(Vec<PendingMutation>),
    Ready(Box<Entry>),
}

/// What `lookup` found.
pub enum Lookup<'a> {
    Ready(&'a mut Entry),
    /// Being read from the store: the mutation was queued behind the read.
    Queued,
    /// Not held: the caller reads it, and the mutation waits in the new slot.
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
    pub fn lookup(&mut self, key: &MessageKey, m: PendingMutation) -> (Lookup<'_>, Option<PendingMutation>) {
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

    /// The store answered for a loading message: `Some` makes it ready. Returns the mutations
    /// that waited, in order.
    pub fn loaded(&mut self, key: &MessageKey, state: Option<MessageState>) -> Vec<PendingMutation> {
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
            let entry = Box::new(Entry { state, receipts, tick: self.next_tick, bytes: 0 });
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
            .filter(|((a, c, _), slot)| *a == app && &**c == channel && matches!(slot, Slot::Ready(_)))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.forget(&k);
        }
    }
}

fn entry_bytes(e: &Entry) -> usize {
    let s = &e.state;
    let data = match &s.data {
        storage::VersionData::Absent => 0,
        storage::VersionData::Text(t) | storage::VersionData::Json(t) => t.len(),
    };
    let fixed = 256 + s.name.len() + s.extras.as_ref().map_or(0, String::len);
    fixed + data + e.receipts.iter().map(|r| 80 + r.op_id.len()).sum::<usize>()
}
