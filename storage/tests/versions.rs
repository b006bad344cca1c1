//! Mutable-message versions in the shard store.
//!
//! Covers: `append_version` storing a message's create (on its own `VersionedCreate` row) and
//! its mutations (on `Mutation` rows) with op_id receipts; `Store::message` folding them and
//! `Store::versions` paging them; the version writes the store refuses, and that a refusal
//! writes nothing; how the Latest and Raw history views treat versioned rows; that a stream
//! counts messages, not mutation rows (`retained_messages`, count retention, `Purged::messages`),
//! while `retained_bytes` counts every row; that versions and receipts live exactly as long as
//! their create row, and mutation rows left behind go once the floor reaches them (count
//! retention, purge, reset); and that they survive a reopen and move with their stream when
//! the shard count changes.

mod common;

use common::messages::{
    append_of, check_moves_between_shards, check_reopen, check_reset, follow_pages, is_invalid_input, open_store,
    snapshot, text, Chan, APP,
};
use common::{query, record};
use futures_executor::block_on;
use storage::{
    Bounds, Direction, HistoryItem, HistoryPage, HistoryQuery, HistoryView, MessageState, Purge, Receipt, RecordKind,
    StorageError, StreamMeta, VersionAction, VersionData, VersionRecord, VersionWrite, VersionsPage, VersionsQuery,
};
use Direction::{NewestFirst, OldestFirst};
use VersionAction::{Append, Create, Delete, Update};

/// The server's digest of an operation; any fixed function of the op_id will do here.
fn digest(op_id: &str) -> [u8; 32] {
    let mut d = [0u8; 32];
    for (i, b) in op_id.bytes().enumerate() {
        d[i % 32] ^= b;
    }
    d
}

/// A receipt as `Store::message` reports it: delivered at `serial`.
fn receipt(action: VersionAction, op_id: &str, serial: u64) -> Receipt {
    Receipt { action, op_id: op_id.into(), digest: digest(op_id), delivery_serial: serial }
}

/// Receipts ordered by delivery, so assertions do not depend on the receipt key layout.
fn by_delivery(mut receipts: Vec<Receipt>) -> Vec<Receipt> {
    receipts.sort_by_key(|r| r.delivery_serial);
    receipts
}

fn delivery_serials(page: &VersionsPage) -> Vec<u64> {
    page.items.iter().map(|v| v.delivery_serial).collect()
}

fn serials(items: &[HistoryItem]) -> Vec<u64> {
    items.iter().map(|i| i.serial).collect()
}

/// The payload bytes of the rows at `serials`, as `Chan::append_ticket` writes them: what
/// `retained_bytes` adds up, mutation rows included.
fn payload_bytes(serials: impl IntoIterator<Item = u64>) -> u64 {
    serials.into_iter().map(|serial| record(serial, 0).payload.len() as u64).sum()
}

impl Chan<'_> {
    /// Appends a version at `serial` on a row of `kind`, naming `message`; returns the version
    /// as `Store::versions` should report it.
    fn version_at(
        &self,
        serial: u64,
        kind: RecordKind,
        message: u64,
        version: VersionRecord,
        op_id: Option<&str>,
    ) -> Result<VersionRecord, StorageError> {
        let version = VersionRecord { timestamp_ms: 5000 + serial, message_id: format!("m-{serial}"), ..version };
        // The receipt's delivery serial is deliberately wrong: the store sets the append's.
        let receipt = op_id.map(|op| Receipt { delivery_serial: 0, ..receipt(version.action, op, serial) });
        let write = VersionWrite { message, record: version.clone(), receipt };
        self.append(serial, kind, Some(write))?;
        Ok(VersionRecord { delivery_serial: serial, ..version })
    }

    /// A create at `serial`: the message's history serial is its own.
    fn create(&self, serial: u64, version: VersionRecord) -> VersionRecord {
        self.version_at(serial, RecordKind::VersionedCreate, serial, version, None).expect("create")
    }

    /// A mutation at `serial` of the message created at `message`.
    fn mutate(
        &self,
        serial: u64,
        message: u64,
        version: VersionRecord,
        op_id: Option<&str>,
    ) -> Result<VersionRecord, StorageError> {
        self.version_at(serial, RecordKind::Mutation { message }, message, version, op_id)
    }

    fn versions(
        &self,
        message: u64,
        direction: Direction,
        limit: usize,
        after: Option<u64>,
    ) -> Result<Option<VersionsPage>, StorageError> {
        block_on(self.store.versions(APP, self.name, message, VersionsQuery { limit, direction, after }))
    }

    /// Every version of the message, oldest first (None when the message is unknown).
    fn all_versions(&self, message: u64) -> Option<Vec<VersionRecord>> {
        let page = self.versions(message, OldestFirst, 1000, None).expect("read versions")?;
        assert!(!page.has_more);
        Some(page.items)
    }

    /// Follows `after` from page to page; returns each page's delivery serials.
    fn version_pages(&self, message: u64, direction: Direction, limit: usize) -> Vec<Vec<u64>> {
        follow_pages(limit, |after| {
            let page = self.versions(message, direction, limit, after).expect("read versions").expect("known message");
            (delivery_serials(&page), page.has_more)
        })
    }

    fn history(&self, view: HistoryView, direction: Direction, limit: usize, bounds: Bounds) -> HistoryPage {
        self.read(HistoryQuery { view, bounds, ..query(APP, self.name, direction, limit) })
    }

    fn read(&self, q: HistoryQuery) -> HistoryPage {
        block_on(self.store.read_history(q)).expect("read history")
    }

    /// Follows `next_cursor` from page to page; returns each page's serials.
    fn history_pages(&self, view: HistoryView, direction: Direction, limit: usize, bounds: Bounds) -> Vec<Vec<u64>> {
        let mut pages = Vec::new();
        let mut q = HistoryQuery { view, bounds, ..query(APP, self.name, direction, limit) };
        loop {
            let page = self.read(q.clone());
            assert_eq!(page.has_more, page.next_cursor.is_some());
            pages.push(serials(&page.items));
            match page.next_cursor {
                Some(cursor) => q.cursor = Some(cursor),
                None => return pages,
            }
        }
    }

    fn meta(&self) -> Option<StreamMeta> {
        block_on(self.store.stream_meta(APP, self.name)).expect("read stream meta")
    }

    /// Everything the public API shows of the channel's history and of messages A and B.
    fn seen(&self) -> Seen {
        let all = |view| self.history(view, OldestFirst, 1000, Bounds::default()).items;
        Seen {
            meta: self.meta(),
            raw: all(HistoryView::Raw),
            latest: all(HistoryView::Latest),
            messages: [A, B].map(|m| self.message(m, true)),
            versions: [A, B].map(|m| self.all_versions(m)),
        }
    }
}

#[derive(Debug, PartialEq)]
struct Seen {
    meta: Option<StreamMeta>,
    raw: Vec<HistoryItem>,
    latest: Vec<HistoryItem>,
    messages: [Option<MessageState>; 2],
    versions: [Option<Vec<VersionRecord>>; 2],
}

/// The fixture's two mutable messages (their history serials) and its last serial.
const A: u64 = 2;
const B: u64 = 4;
const LAST: u64 = 9;

/// The versions the fixture wrote, as `Store::versions` should report them.
struct Fixture {
    a: Vec<VersionRecord>,
    b: Vec<VersionRecord>,
}

/// Serials 1..=9, with A's and B's mutations interleaved so each message's versions must be
/// told apart by message rather than by serial range:
///
/// | 1 plain | 2 create A "he" | 3 A append "llo" (ap-1) | 4 create B (JSON) |
/// | 5 A update to "Hi", renamed (up-1) | 6 B delete (del-1) | 7 A append " there" (ap-2) |
/// | 8 A append, extras only | 9 plain |
fn write_fixture(ch: &Chan) -> Fixture {
    ch.plain(1);
    let create_a =
        VersionRecord { extras: Some(r#"{"x":1}"#.into()), ..snapshot(Create, "draft", text("he"), "alice") };
    let a2 = ch.create(A, create_a);
    let a3 = ch.mutate(3, A, append_of("llo", "alice"), Some("ap-1")).unwrap();
    let b4 = ch.create(B, snapshot(Create, "doc", VersionData::Json(r#"{"k":1}"#.into()), "carol"));
    let update = VersionRecord {
        description: Some("reword".into()),
        metadata: Some(r#"{"why":"typo"}"#.into()),
        ..snapshot(Update, "renamed", text("Hi"), "bob")
    };
    let a5 = ch.mutate(5, A, update, Some("up-1")).unwrap();
    let b6 = ch.mutate(6, B, snapshot(Delete, "doc", VersionData::Absent, "carol"), Some("del-1")).unwrap();
    let a7 = ch.mutate(7, A, append_of(" there", "bob"), Some("ap-2")).unwrap();
    let extras_only = VersionRecord { extras: Some(r#"{"y":2}"#.into()), ..append_of("", "bob") };
    let a8 = ch.mutate(8, A, extras_only, None).unwrap();
    ch.plain(LAST);
    Fixture { a: vec![a2, a3, a5, a7, a8], b: vec![b4, b6] }
}

#[test]
fn message_folds_versions_and_receipts() {
    let (_dir, store) = open_store("versions-fold", None);
    let ch = Chan::new(&store);
    let f = write_fixture(&ch);

    let a = ch.message(A, true).expect("A is retained");
    assert_eq!(a.history_serial, A);
    // The update replaced name, data and extras; later appends concatenate onto its text and
    // the extras-only append replaces the extras without touching the text.
    assert_eq!(a.name, "renamed");
    assert_eq!(a.data, text("Hi there"));
    assert_eq!(a.extras.as_deref(), Some(r#"{"y":2}"#));
    // The creator stays the create's author, though bob made the later versions.
    assert_eq!((a.user_id.as_deref(), a.creator_client_id.as_deref()), (Some("u-alice"), Some("c-alice")));
    assert_eq!(a.latest, f.a[4], "latest is the extras-only append, as stored, at its own serial");
    // All appends since the create count, not only those since the update.
    assert_eq!((a.versions, a.appends), (5, 3));
    assert_eq!(
        by_delivery(a.receipts.clone()),
        vec![receipt(Append, "ap-1", 3), receipt(Update, "up-1", 5), receipt(Append, "ap-2", 7)],
        "every receipt of A, at its mutation's serial; none of B's"
    );
    assert_eq!(ch.message(A, false), Some(MessageState { receipts: vec![], ..a }), "receipts only when asked");

    let b = ch.message(B, true).expect("B is retained");
    assert_eq!((b.latest.action, b.latest.delivery_serial), (Delete, 6));
    assert_eq!((b.name.as_str(), &b.data, b.versions, b.appends), ("doc", &VersionData::Absent, 2, 0));
    assert_eq!(b.creator_client_id.as_deref(), Some("c-carol"));
    assert_eq!(b.receipts, vec![receipt(Delete, "del-1", 6)]);

    // Only a create's serial names a message: plain rows, mutation rows and unused serials do not.
    for serial in [0, 1, 3, 5, LAST, 42] {
        assert_eq!(ch.message(serial, true), None, "serial {serial}");
    }
    assert_eq!(Chan { name: "other", ..ch }.message(A, true), None, "messages are per channel");
}

#[test]
fn versions_page_both_ways_from_an_exclusive_cursor() {
    let (_dir, store) = open_store("versions-pages", None);
    let ch = Chan::new(&store);
    let f = write_fixture(&ch);

    // Versions come back exactly as written, each at its own delivery serial.
    assert_eq!(ch.all_versions(A), Some(f.a.clone()));
    assert_eq!(ch.all_versions(B), Some(f.b.clone()));

    assert_eq!(ch.version_pages(A, OldestFirst, 2), vec![vec![2, 3], vec![5, 7], vec![8]]);
    assert_eq!(ch.version_pages(A, NewestFirst, 2), vec![vec![8, 7], vec![5, 3], vec![2]]);
    assert_eq!(ch.version_pages(A, NewestFirst, 1), vec![vec![8], vec![7], vec![5], vec![3], vec![2]]);
    // A page that ends exactly at the last version says there is no more.
    assert_eq!(ch.version_pages(A, OldestFirst, 5), vec![vec![2, 3, 5, 7, 8]]);
    assert_eq!(ch.version_pages(B, NewestFirst, 2), vec![vec![6, 4]]);

    let page = |direction, after| ch.versions(A, direction, 10, Some(after)).unwrap().unwrap();
    // `after` is exclusive and need not be one of the message's serials.
    assert_eq!(delivery_serials(&page(OldestFirst, 4)), vec![5, 7, 8]);
    assert_eq!(delivery_serials(&page(NewestFirst, 6)), vec![5, 3, 2]);
    assert_eq!(delivery_serials(&page(OldestFirst, 2)), vec![3, 5, 7, 8]);
    assert_eq!(delivery_serials(&page(NewestFirst, 8)), vec![7, 5, 3, 2]);
    for (direction, after) in [(OldestFirst, 8), (OldestFirst, 100), (NewestFirst, 2), (NewestFirst, 0)] {
        let p = page(direction, after);
        assert!(p.items.is_empty() && !p.has_more, "{direction:?} after {after}");
    }
    assert_eq!(page(OldestFirst, 3).items[0], f.a[2], "a page holds whole records");

    assert!(matches!(ch.versions(A, OldestFirst, 0, None), Err(StorageError::InvalidInput(_))));
    for serial in [0, 1, 3, LAST, 42] {
        assert_eq!(ch.versions(serial, NewestFirst, 10, None), Ok(None), "serial {serial} is no message");
    }
    assert_eq!(Chan { name: "other", ..ch }.versions(A, OldestFirst, 10, None), Ok(None));
}

#[test]
fn refused_version_writes_leave_nothing_behind() {
    let (_dir, store) = open_store("versions-refused", None);
    let ch = Chan::new(&store);
    write_fixture(&ch);
    let before = ch.seen();
    let next = LAST + 1;

    let create = || snapshot(Create, "ev", text("new"), "mallory");
    let update = || snapshot(Update, "ev", text("overwritten"), "mallory");
    // Each would add a version (and most a receipt, reusing A's op_ids) if it got through.
    let refused: Vec<(&str, Result<VersionRecord, StorageError>)> = vec![
        ("create naming another serial", ch.version_at(next, RecordKind::VersionedCreate, LAST, create(), None)),
        ("create on a plain row", ch.version_at(next, RecordKind::Plain, next, create(), None)),
        ("create on a mutation row", ch.version_at(next, RecordKind::Mutation { message: next }, next, create(), None)),
        ("mutation on a create row", ch.version_at(next, RecordKind::VersionedCreate, A, update(), Some("up-1"))),
        ("mutation on a plain row", ch.version_at(next, RecordKind::Plain, A, append_of("!", "m"), Some("ap-1"))),
        ("row names B, write names A", ch.version_at(next, RecordKind::Mutation { message: B }, A, update(), None)),
        ("mutation of itself", ch.mutate(next, next, update(), Some("up-1"))),
        ("mutation of a later serial", ch.mutate(next, next + 1, update(), None)),
        ("mutation of serial 0", ch.mutate(next, 0, update(), None)),
    ];
    for (case, result) in &refused {
        assert!(is_invalid_input(result), "{case}: {result:?}");
        assert_eq!(ch.seen(), before, "{case} wrote something");
    }
    // The refused serial is still the next one.
    ch.plain(next);

    // Once A's create row is purged, A is no longer a retained message to mutate; B still is.
    block_on(store.purge_stream(APP, "ch", Purge::BeforeSerial(3))).unwrap();
    let before = ch.seen();
    let result = ch.mutate(next + 1, A, update(), Some("up-2"));
    assert!(is_invalid_input(&result), "mutation of a purged message: {result:?}");
    assert_eq!(ch.seen(), before);
    ch.mutate(next + 1, B, update(), Some("up-2")).expect("B is still retained");

    // A refused first append does not start the channel's stream.
    let fresh = Chan { name: "fresh", ..ch };
    assert!(is_invalid_input(&fresh.mutate(1, 1, update(), None)));
    assert_eq!(fresh.meta(), None);
    fresh.create(1, create());
    assert_eq!(fresh.meta().map(|m| m.next_serial), Some(2));
}

#[test]
fn latest_view_leaves_out_mutations_and_attaches_the_state() {
    let (_dir, store) = open_store("versions-latest", None);
    let ch = Chan::new(&store);
    write_fixture(&ch);
    let latest = |direction, limit| ch.history_pages(HistoryView::Latest, direction, limit, Bounds::default());

    let page = ch.history(HistoryView::Latest, OldestFirst, 100, Bounds::default());
    assert_eq!(serials(&page.items), vec![1, A, B, LAST]);
    let kinds: Vec<RecordKind> = page.items.iter().map(|i| i.kind).collect();
    use RecordKind::{Plain, VersionedCreate};
    assert_eq!(kinds, vec![Plain, VersionedCreate, VersionedCreate, Plain]);
    // The create rows carry their message as it stands now, without receipts.
    assert_eq!(page.items[1].message, ch.message(A, false));
    assert_eq!(page.items[1].message.as_ref().map(|m| &m.data), Some(&text("Hi there")));
    assert_eq!(page.items[2].message, ch.message(B, false));
    assert!(page.items[2].message.as_ref().is_some_and(|m| m.receipts.is_empty()));
    assert!(page.items[0].message.is_none() && page.items[3].message.is_none());
    // The row itself is still what was delivered at the create.
    assert_eq!(page.items[1].message_id, "m-2");

    // The limit, has_more and the cursor count only returned rows.
    assert_eq!(latest(OldestFirst, 2), vec![vec![1, A], vec![B, LAST]]);
    assert_eq!(latest(NewestFirst, 3), vec![vec![LAST, B, A], vec![1]]);
    assert_eq!(latest(NewestFirst, 1), vec![vec![LAST], vec![B], vec![A], vec![1]]);
    assert_eq!(latest(OldestFirst, 4), vec![vec![1, A, B, LAST]]);
    // Only mutation rows after the last returned one: no more to read.
    let to_8 = |start| Bounds { start_serial: Some(start), end_serial: Some(8), ..Bounds::default() };
    assert_eq!(ch.history_pages(HistoryView::Latest, OldestFirst, 1, to_8(3)), vec![vec![B]]);
    assert_eq!(ch.history_pages(HistoryView::Latest, NewestFirst, 1, to_8(3)), vec![vec![B]]);
    let only_mutations = ch.history(HistoryView::Latest, NewestFirst, 5, to_8(5));
    assert!(only_mutations.items.is_empty() && !only_mutations.has_more);
    // Continuity still describes the whole stream as stored: its serial range and bytes take
    // in the mutation rows, but those rows are parts of A and B, not messages of their own, so
    // the 9 rows hold 4 messages (1, A, B, LAST).
    let continuity = only_mutations.continuity.expect("the stream exists");
    assert_eq!((continuity.oldest_available_serial, continuity.newest_available_serial), (Some(1), Some(LAST)));
    assert_eq!(continuity.retained_messages, 4);
    assert_eq!(continuity.retained_bytes, payload_bytes(1..=LAST));
}

#[test]
fn raw_view_returns_every_row_as_stored() {
    let (_dir, store) = open_store("versions-raw", None);
    let ch = Chan::new(&store);
    write_fixture(&ch);

    let page = ch.history(HistoryView::Raw, OldestFirst, 100, Bounds::default());
    assert_eq!(serials(&page.items), (1..=LAST).collect::<Vec<_>>());
    let kinds: Vec<RecordKind> = page.items.iter().map(|i| i.kind).collect();
    let (plain, create) = (RecordKind::Plain, RecordKind::VersionedCreate);
    let (of_a, of_b) = (RecordKind::Mutation { message: A }, RecordKind::Mutation { message: B });
    assert_eq!(kinds, vec![plain, create, of_a, create, of_a, of_b, of_a, of_a, plain]);
    assert!(page.items.iter().all(|i| i.message.is_none()), "raw rows carry no message state");
    assert_eq!(
        ch.history_pages(HistoryView::Raw, OldestFirst, 4, Bounds::default()),
        vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![LAST]]
    );
    assert_eq!(
        ch.history_pages(HistoryView::Raw, NewestFirst, 5, Bounds::default()),
        vec![vec![9, 8, 7, 6, 5], vec![4, 3, 2, 1]]
    );
}

#[test]
fn count_retention_forgets_the_messages_it_evicts() {
    const LIMIT: u64 = 4;
    let (_dir, store) = open_store("versions-retention", Some(LIMIT));
    let ch = Chan::new(&store);
    let create = |name| snapshot(Create, name, text(name), "alice");
    let all = |view| serials(&ch.history(view, OldestFirst, 100, Bounds::default()).items);
    // The stream's floor, message count and byte count.
    let counters = || ch.meta().map(|m| (m.oldest_serial, m.retained_messages, m.retained_bytes));

    // Rows 1..=14: the creates of 1 and 2, then 12 mutation rows, three times the limit: an
    // append of 2 at 4, and 11 appends of 1 at 3 and 5..=14.
    ch.create(1, create("one"));
    ch.create(2, create("two"));
    ch.mutate(3, 1, append_of("+", "alice"), Some("a3")).unwrap();
    let b4 = ch.mutate(4, 2, append_of("+", "bob"), Some("b4")).unwrap();
    for serial in 5..=14 {
        ch.mutate(serial, 1, append_of("+", "alice"), Some(&format!("a{serial}"))).unwrap();
    }
    // Mutation rows are parts of their message, not messages: the stream holds 2 messages, so
    // count retention evicts nothing, however many versions 1 has. Their bytes do count.
    assert_eq!(counters(), Some((1, 2, payload_bytes(1..=14))));
    let one = ch.message(1, true).expect("1 is retained");
    assert_eq!((one.versions, one.appends, one.receipts.len()), (12, 11, 11));
    assert_eq!(one.data, text(&format!("one{}", "+".repeat(11))));
    let two = ch.message(2, true).expect("2 is retained");

    // Two plain messages bring the stream to the limit, not over it.
    ch.plain(15);
    ch.plain(16);
    assert_eq!(counters(), Some((1, LIMIT, payload_bytes(1..=16))));
    assert_eq!(ch.message(1, true).as_ref(), Some(&one));

    // The fifth message pushes the create row of 1 out, and its versions and receipts with it.
    // The create row of 2, next at the floor, is within the limit and stays.
    ch.plain(17);
    assert_eq!(counters(), Some((2, LIMIT, payload_bytes(2..=17))));
    assert_eq!(ch.message(1, true), None);
    assert_eq!(ch.versions(1, OldestFirst, 10, None), Ok(None));
    assert_eq!(ch.message(2, true), Some(two), "a retained message keeps its versions and receipts");
    assert_eq!(ch.all_versions(2).and_then(|v| v.last().cloned()), Some(b4));
    // The mutation rows of 1 are above the floor, so they stay as raw rows (their bytes still
    // counted above) until the floor reaches them; the Latest view leaves them out as ever.
    assert_eq!(all(HistoryView::Raw), (2..=17).collect::<Vec<_>>());
    assert_eq!(all(HistoryView::Latest), vec![2, 15, 16, 17]);
    // 1 can no longer be mutated.
    assert!(is_invalid_input(&ch.mutate(18, 1, append_of("!", "alice"), Some("a18"))));

    // The next message evicts the create row of 2. The walk then finds only mutation rows at the
    // floor (1's orphans and 2's own append): their creates are gone, so they go too, without
    // being counted or weighed against the limit. It stops at the plain row 15, within the limit.
    ch.plain(18);
    assert_eq!(counters(), Some((15, LIMIT, payload_bytes(15..=18))));
    assert_eq!(ch.meta().map(|m| m.oldest_published_at_ms), Some(1015), "the floor's row is 15");
    assert_eq!(all(HistoryView::Raw), vec![15, 16, 17, 18]);
    assert_eq!(all(HistoryView::Latest), vec![15, 16, 17, 18]);
    assert_eq!((ch.message(2, true), ch.versions(2, NewestFirst, 10, None)), (None, Ok(None)));
}

#[test]
fn purge_forgets_the_messages_it_removes() {
    let (_dir, store) = open_store("versions-purge", None);
    let ch = Chan::new(&store);
    write_fixture(&ch);
    let purge = |mode| block_on(store.purge_stream(APP, "ch", mode)).unwrap().expect("stream exists");
    let all = |view| serials(&ch.history(view, OldestFirst, 100, Bounds::default()).items);
    let b = ch.message(B, true);

    // Rows 1 and 2 (A's create) are before serial 3. A's append at 3 is not, but once A's create
    // is gone it is at the floor and goes too; B's create at 4 stops the walk. `messages` counts
    // messages (1 and A), not the rows removed.
    let purged = purge(Purge::BeforeSerial(3));
    assert_eq!((purged.messages, purged.bytes), (2, payload_bytes(1..=3)));
    assert_eq!((purged.meta.oldest_serial, purged.meta.retained_messages), (B, 2));
    assert_eq!(ch.meta(), Some(purged.meta));
    assert_eq!((ch.message(A, true), ch.versions(A, OldestFirst, 10, None)), (None, Ok(None)));
    assert_eq!(ch.message(B, true), b, "B's create row is kept, so are its versions and receipts");
    // A's later mutation rows are above the floor: still raw rows, never in the Latest view.
    assert_eq!(all(HistoryView::Raw), vec![B, 5, 6, 7, 8, LAST]);
    assert_eq!(all(HistoryView::Latest), vec![B, LAST]);

    // Rows are published at 1000 + serial: only B's create (1004) is before 1005, but the
    // mutation rows after it (A's orphans and B's delete, published at 1005..=1008) are then at
    // the floor and go with it. The plain row LAST stops the walk: one message in five rows.
    let purged = purge(Purge::BeforeTime(1005));
    assert_eq!((purged.messages, purged.bytes), (1, payload_bytes(B..=8)));
    let meta = &purged.meta;
    assert_eq!((meta.oldest_serial, meta.oldest_published_at_ms, meta.retained_messages), (LAST, 1000 + LAST, 1));
    assert_eq!((ch.message(B, true), ch.versions(B, OldestFirst, 10, None)), (None, Ok(None)));
    assert_eq!(all(HistoryView::Raw), vec![LAST]);

    // Serials continue after a purge; a message made now goes with Purge::All, its append row
    // with it, and only LAST and c count as messages.
    let c = LAST + 1;
    ch.create(c, snapshot(Create, "c", text("c"), "alice"));
    ch.mutate(c + 1, c, append_of("!", "alice"), Some("c1")).unwrap();
    assert_eq!(ch.message(c, true).map(|m| m.receipts.len()), Some(1));
    let purged = purge(Purge::All);
    assert_eq!((purged.messages, purged.bytes), (2, payload_bytes(LAST..=c + 1)));
    assert_eq!((purged.meta.retained_messages, purged.meta.retained_bytes, purged.meta.has_retained()), (0, 0, false));
    assert_eq!((ch.message(c, true), ch.versions(c, OldestFirst, 10, None)), (None, Ok(None)));
    assert!(is_invalid_input(&ch.mutate(c + 2, c, append_of("?", "alice"), None)));
    ch.plain(c + 2);
}

#[test]
fn reset_forgets_every_message_of_the_old_stream() {
    check_reset(
        "versions-reset",
        write_fixture,
        |ch| ch.seen(),
        |ch| {
            for m in [A, B] {
                assert_eq!((ch.message(m, true), ch.versions(m, OldestFirst, 10, None)), (None, Ok(None)));
            }
            // The new stream reuses serials 1.., so messages made at A's and B's old serials must
            // start from nothing: no old version under them, and none of the old receipts.
            ch.plain(1);
            for serial in [A, 3, B] {
                ch.create(serial, snapshot(Create, "new", text("new"), "dave"));
            }
            for serial in [A, B] {
                let m = ch.message(serial, true).expect("made in the new stream");
                let counts = (m.versions, m.appends, m.receipts.len(), &m.data);
                assert_eq!(counts, (1, 0, 0, &text("new")), "message {serial}");
                assert_eq!(ch.version_pages(serial, OldestFirst, 10), vec![vec![serial]]);
            }
        },
    );
}

#[test]
fn versions_and_receipts_survive_a_reopen() {
    check_reopen(
        "versions-reopen",
        write_fixture,
        |ch| ch.seen(),
        |ch, f, before| {
            assert_eq!(before.versions, [Some(f.a), Some(f.b)]);
            // And A can still be mutated where it left off.
            ch.mutate(LAST + 1, A, append_of("!", "alice"), Some("ap-3")).unwrap();
            let a = ch.message(A, true).unwrap();
            assert_eq!((a.data, a.versions, a.receipts.len()), (text("Hi there!"), 6, 4));
        },
    );
}

#[test]
fn versions_move_with_their_stream_between_shards() {
    let left = |ch: &Chan| (ch.meta(), ch.message(A, true));
    check_moves_between_shards(
        "versions-migrate",
        write_fixture,
        |ch| ch.seen(),
        left,
        |ch| {
            // A moved message is still a retained message to its new owner.
            ch.mutate(LAST + 1, A, append_of("!", "alice"), Some("ap-3")).unwrap();
            assert_eq!(ch.message(A, false).map(|m| m.data), Some(text("Hi there!")));
        },
    );
}
