//! What the mutable-message tests (versions.rs, annotations.rs) share: a channel handle that
//! writes rows with their versions, the version records it writes, paging, and the checks that
//! a fixture survives a reopen, that a reset touches only its own channel, and that a stream's
//! messages move with it when the shard count changes.

use std::fmt::Debug;

use futures_executor::block_on;
use storage::{
    open_all, AppendTicket, HistoryRecord, MessageState, RecordKind, StorageError, Store, VersionAction, VersionData,
    VersionRecord, VersionWrite,
};

use super::{no_age_limit, owner, record, TempDir};

pub const APP: &str = "app";

/// A store of its own in a fresh directory (keep it as long as the store), with count
/// retention only: the rows are published at small fixed times.
pub fn open_store(name: &str, max_messages: Option<u64>) -> (TempDir, Store) {
    let dir = TempDir::new(name);
    let store = Store::open(dir.path(), 0, &no_age_limit(max_messages)).unwrap();
    (dir, store)
}

pub fn text(s: &str) -> VersionData {
    VersionData::Text(s.into())
}

/// A create, update or delete: the message's whole state after it, made by `client`.
pub fn snapshot(action: VersionAction, name: &str, data: VersionData, client: &str) -> VersionRecord {
    VersionRecord {
        action,
        // The store keys a version by its append's serial and reports that on reads, whatever
        // is written here; the helpers leave it 0 to show that.
        delivery_serial: 0,
        timestamp_ms: 0,
        message_id: String::new(),
        name: Some(name.into()),
        data,
        extras: None,
        user_id: Some(format!("u-{client}")),
        client_id: Some(format!("c-{client}")),
        description: None,
        metadata: None,
    }
}

/// An append: a text fragment ("" for none) and no name.
pub fn append_of(fragment: &str, client: &str) -> VersionRecord {
    let data = if fragment.is_empty() { VersionData::Absent } else { text(fragment) };
    VersionRecord { name: None, ..snapshot(VersionAction::Append, "", data, client) }
}

pub fn is_invalid_input<T: Debug>(result: &Result<T, StorageError>) -> bool {
    matches!(result, Err(StorageError::InvalidInput(_)))
}

/// Waits for both completions of a ticket; they must agree (a refusal reaches both alike).
pub fn settle(ticket: AppendTicket) -> Result<(), StorageError> {
    let written = block_on(ticket.written);
    assert_eq!(block_on(ticket.durable), written, "durable reports what written did");
    written
}

/// Follows `after` from page to page, starting from `None`: `read(after)` gives a page's
/// serials (at most `limit`) and whether more follow; the next page starts after its last
/// serial. Returns each page's serials.
pub fn follow_pages(limit: usize, read: impl Fn(Option<u64>) -> (Vec<u64>, bool)) -> Vec<Vec<u64>> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let (serials, has_more) = read(after);
        assert!(serials.len() <= limit);
        after = serials.last().copied();
        pages.push(serials);
        if !has_more {
            return pages;
        }
        assert!(after.is_some(), "a page with more is not empty");
    }
}

/// One channel of one store; each test file adds the calls its tests make on it.
pub struct Chan<'a> {
    pub store: &'a Store,
    pub name: &'a str,
    pub stream: &'a str,
}

impl<'a> Chan<'a> {
    /// Channel "ch", stream "s-1".
    pub fn new(store: &'a Store) -> Chan<'a> {
        Chan { store, name: "ch", stream: "s-1" }
    }

    /// Queues a row of `kind` at `serial`, published at 1000 + serial, with `write`, if any.
    pub fn append_ticket(&self, serial: u64, kind: RecordKind, write: Option<VersionWrite>) -> AppendTicket {
        let row = HistoryRecord { kind, ..record(serial, 1000 + serial) };
        match write {
            Some(write) => self.store.append_version(APP, self.name, self.stream, serial, row, write),
            None => self.store.append(APP, self.name, self.stream, serial, row),
        }
    }

    /// Appends like `append_ticket` and waits until the row is written and durable.
    pub fn append(&self, serial: u64, kind: RecordKind, write: Option<VersionWrite>) -> Result<(), StorageError> {
        settle(self.append_ticket(serial, kind, write))
    }

    pub fn plain(&self, serial: u64) {
        self.append(serial, RecordKind::Plain, None).expect("plain append");
    }

    pub fn message(&self, message: u64, receipts: bool) -> Option<MessageState> {
        block_on(self.store.message(APP, self.name, message, receipts)).expect("read message")
    }
}

/// Writes a fixture (`write`) to channel "ch" of a store of its own, closes the store and
/// opens it again: what `seen` shows must be as before. Then hands `then` the channel in the
/// reopened store, what `write` returned and what `seen` showed.
pub fn check_reopen<W, S>(
    name: &str,
    write: impl Fn(&Chan) -> W,
    seen: impl Fn(&Chan) -> S,
    then: impl FnOnce(&Chan, W, S),
) where
    S: Debug + PartialEq,
{
    let (dir, store) = open_store(name, None);
    let (written, before) = {
        let ch = Chan::new(&store);
        (write(&ch), seen(&ch))
    };
    store.close().unwrap();

    let store = Store::open(dir.path(), 0, &no_age_limit(None)).unwrap();
    let ch = Chan::new(&store);
    assert_eq!(seen(&ch), before, "as before the reopen");
    then(&ch, written, before);
}

/// Writes a fixture (`write`) to channels "ch" and "other" of a store of its own, resets "ch"
/// to stream "s-2" and hands `then` the channel on its new stream; what `seen` shows of
/// "other" must be the same after all that as before.
pub fn check_reset<W, S>(name: &str, write: impl Fn(&Chan) -> W, seen: impl Fn(&Chan) -> S, then: impl FnOnce(&Chan))
where
    S: Debug + PartialEq,
{
    let (_dir, store) = open_store(name, None);
    let ch = Chan::new(&store);
    let other = Chan { name: "other", ..Chan::new(&store) };
    write(&ch);
    write(&other);
    let other_before = seen(&other);

    block_on(store.reset_stream(APP, ch.name, "s-2")).unwrap();
    then(&Chan { stream: "s-2", ..ch });
    assert_eq!(seen(&other), other_before, "a reset touches only its own channel");
}

/// Channels that `owner` moves on both reopens below: 2 -> 1 shards moves b and d, 1 -> 3
/// moves a, b and d.
const MOVED: [&str; 4] = ["a", "b", "c", "d"];

/// Writes a fixture (`write`) to stream "s-1" of four channels in a directory of its own on 2
/// shards, then reopens it on 1 and on 3 shards: each channel's `seen` must be as before in
/// the store that owns it now, and what `left` finds of it in every other store the default
/// (nothing). Then hands `then` channel "a" on 3 shards.
pub fn check_moves_between_shards<W, S, L>(
    name: &str,
    write: impl Fn(&Chan) -> W,
    seen: impl Fn(&Chan) -> S,
    left: impl Fn(&Chan) -> L,
    then: impl FnOnce(&Chan),
) where
    S: Debug + PartialEq,
    L: Debug + PartialEq + Default,
{
    let dir = TempDir::new(name);
    let open = |shards| open_all(dir.path(), shards, owner(shards), &no_age_limit(None)).unwrap();
    let stores = open(2);
    let before: Vec<S> = MOVED
        .map(|name| {
            let ch = Chan { store: &stores[owner(2)(APP, name)], name, stream: "s-1" };
            write(&ch);
            seen(&ch)
        })
        .into();
    drop(stores);

    let reopen = |shards| {
        let stores = open(shards);
        for (name, before) in MOVED.into_iter().zip(&before) {
            let own = owner(shards)(APP, name);
            assert_eq!(&seen(&Chan { store: &stores[own], name, stream: "s-1" }), before, "{name} on {shards} shards");
            for (i, store) in stores.iter().enumerate().filter(|(i, _)| *i != own) {
                assert_eq!(left(&Chan { store, name, stream: "s-1" }), L::default(), "{name} left in shard {i}");
            }
        }
        stores
    };
    drop(reopen(1));
    let stores = reopen(3);
    then(&Chan { store: &stores[owner(3)(APP, "a")], name: "a", stream: "s-1" });
}
