//! Annotations of mutable messages in the shard store.
//!
//! Covers: `annotate` storing a message's annotation events (every field back as written) and
//! its per-type summaries; `Store::message(…, true)` carrying the events in serial order and
//! `Store::annotations` paging them (after, limit, type filter, has_more); `Store::summaries`
//! listing a channel's summaries by message, then type; the annotations the store refuses
//! (no such mutable message, a serial that is not the next one), and that a refusal writes
//! nothing; annotations pipelined with each other and with their message's create; and that
//! annotations and summaries live exactly as long as their message (count retention, purge,
//! reset), survive a reopen and move with their stream when the shard count changes.

mod common;

use common::messages::{
    append_of, check_moves_between_shards, check_reopen, check_reset, follow_pages, is_invalid_input, open_store,
    settle, snapshot, text, Chan, APP,
};
use futures_executor::block_on;
use storage::{
    AnnotationAction, AnnotationRecord, AnnotationWrite, AnnotationsPage, AnnotationsQuery, AppendTicket, MessageState,
    Purge, RecordKind, StorageError, StoredSummary, VersionAction, VersionWrite,
};

const DISTINCT: &str = "reaction:distinct.v1";
const MULTIPLE: &str = "reaction:multiple.v1";

/// The create of annotation `serial`: a reaction `name` of `annotation_type` by `client`.
fn reaction(serial: u64, annotation_type: &str, name: &str, client: &str) -> AnnotationRecord {
    AnnotationRecord {
        serial,
        action: AnnotationAction::Create,
        id: Some(format!("ann-{serial}")),
        annotation_type: annotation_type.into(),
        name: Some(name.into()),
        client_id: Some(client.into()),
        count: None,
        data: None,
        encoding: None,
        timestamp_ms: 7000 + serial,
        deletes: None,
    }
}

/// A summary's JSON, distinct per `tag`.
fn summary(tag: &str) -> Vec<u8> {
    format!(r#"{{"{tag}":{{"total":1}}}}"#).into_bytes()
}

fn stored(message: u64, annotation_type: &str, tag: &str) -> StoredSummary {
    StoredSummary { message, annotation_type: annotation_type.into(), summary: summary(tag) }
}

fn annotation_serials(page: &AnnotationsPage) -> Vec<u64> {
    page.items.iter().map(|a| a.serial).collect()
}

impl Chan<'_> {
    fn create_ticket(&self, serial: u64) -> AppendTicket {
        let create = snapshot(VersionAction::Create, "ev", text("hi"), "alice");
        let write = VersionWrite { message: serial, record: create, receipt: None };
        self.append_ticket(serial, RecordKind::VersionedCreate, Some(write))
    }

    /// A mutable message created at `serial`.
    fn create(&self, serial: u64) {
        settle(self.create_ticket(serial)).expect("create");
    }

    /// An append to `message` on a mutation row at `serial`.
    fn mutate(&self, serial: u64, message: u64) {
        let write = VersionWrite { message, record: append_of("!", "alice"), receipt: None };
        self.append(serial, RecordKind::Mutation { message }, Some(write)).expect("mutation");
    }

    fn annotate_ticket(&self, message: u64, record: AnnotationRecord, summary: Vec<u8>) -> AppendTicket {
        self.store.annotate(APP, self.name, AnnotationWrite { message, record, summary })
    }

    fn annotate(&self, message: u64, record: AnnotationRecord, summary: Vec<u8>) -> Result<(), StorageError> {
        settle(self.annotate_ticket(message, record, summary))
    }

    /// Reaction `serial` of `message`, of `annotation_type`, with that type's summary tagged
    /// by the serial; returns the record as the store should report it.
    fn react(&self, message: u64, serial: u64, annotation_type: &str) -> AnnotationRecord {
        let rec = reaction(serial, annotation_type, "👍", "alice");
        self.annotate(message, rec.clone(), summary(&format!("s{serial}"))).expect("annotate");
        rec
    }

    /// Every annotation event of the message as the owner's load sees it.
    fn events(&self, message: u64) -> Option<Vec<AnnotationRecord>> {
        self.message(message, true).map(|m| m.annotations)
    }

    fn page(
        &self,
        message: u64,
        after: u64,
        limit: usize,
        annotation_type: Option<&str>,
    ) -> Result<Option<AnnotationsPage>, StorageError> {
        let query = AnnotationsQuery { after, limit, annotation_type: annotation_type.map(Into::into) };
        block_on(self.store.annotations(APP, self.name, message, query))
    }

    /// Follows `after` from page to page; returns each page's serials.
    fn pages(&self, message: u64, limit: usize, annotation_type: Option<&str>) -> Vec<Vec<u64>> {
        follow_pages(limit, |after| {
            let page = self.page(message, after.unwrap_or(0), limit, annotation_type).expect("read").expect("known");
            (annotation_serials(&page), page.has_more)
        })
    }

    fn summaries(&self) -> Vec<StoredSummary> {
        block_on(self.store.summaries(APP, self.name)).expect("read summaries")
    }

    /// Everything the public API shows of the annotations of messages A and B.
    fn seen(&self) -> Seen {
        Seen {
            events: [A, B].map(|m| self.events(m)),
            pages: [A, B].map(|m| self.page(m, 0, 100, None).expect("read annotations")),
            summaries: self.summaries(),
        }
    }
}

#[derive(Debug, PartialEq)]
struct Seen {
    events: [Option<Vec<AnnotationRecord>>; 2],
    pages: [Option<AnnotationsPage>; 2],
    summaries: Vec<StoredSummary>,
}

/// The fixture's two mutable messages (their history serials) and its last serial.
const A: u64 = 2;
const B: u64 = 4;
const LAST: u64 = 5;

/// | 1 plain | 2 create A | 3 A append | 4 create B | 5 plain |, then annotations of A and B
/// interleaved, so each message's events must be told apart by message: A gets 1..=5
/// (DISTINCT, MULTIPLE, DISTINCT, DISTINCT, MULTIPLE), B gets 1..=2 (MULTIPLE, DISTINCT).
/// The summaries left are the last event's of each (message, type).
fn write_fixture(ch: &Chan) -> [Vec<AnnotationRecord>; 2] {
    ch.plain(1);
    ch.create(A);
    ch.mutate(3, A);
    ch.create(B);
    ch.plain(LAST);
    let a1 = ch.react(A, 1, DISTINCT);
    let b1 = ch.react(B, 1, MULTIPLE);
    let a2 = ch.react(A, 2, MULTIPLE);
    let a3 = ch.react(A, 3, DISTINCT);
    let b2 = ch.react(B, 2, DISTINCT);
    let a4 = ch.react(A, 4, DISTINCT);
    let a5 = ch.react(A, 5, MULTIPLE);
    [vec![a1, a2, a3, a4, a5], vec![b1, b2]]
}

/// The summaries `write_fixture` leaves, as `Store::summaries` lists them.
fn fixture_summaries() -> Vec<StoredSummary> {
    vec![stored(A, DISTINCT, "s4"), stored(A, MULTIPLE, "s5"), stored(B, DISTINCT, "s2"), stored(B, MULTIPLE, "s1")]
}

#[test]
fn annotation_events_come_back_as_written_in_serial_order() {
    let (_dir, store) = open_store("annotations-round-trip", None);
    let ch = Chan::new(&store);
    ch.create(1);

    // Every field set, and a delete with every optional field absent.
    let full = AnnotationRecord {
        count: Some(3),
        data: Some(format!(r#"{{"big":"{}","q":"é\"\n"}}"#, "x".repeat(100_000))),
        encoding: Some("json/utf-8".into()),
        name: Some("🎉 party".into()),
        ..reaction(1, "receipts:flag.v1", "", "bob")
    };
    let delete = AnnotationRecord {
        serial: 2,
        action: AnnotationAction::Delete,
        id: None,
        name: None,
        client_id: None,
        count: None,
        data: None,
        encoding: None,
        deletes: Some(1),
        ..full.clone()
    };
    ch.annotate(1, full.clone(), summary("after-1")).unwrap();
    ch.annotate(1, delete.clone(), summary("after-2")).unwrap();

    let state = ch.message(1, true).expect("1 is a stored mutable message");
    assert_eq!(state.annotations, vec![full.clone(), delete.clone()]);
    // The versions are untouched by annotations.
    assert_eq!((state.versions, &state.data), (1, &text("hi")));
    assert_eq!(ch.message(1, false), Some(MessageState { annotations: vec![], ..state }), "only when asked");
    let page = ch.page(1, 0, 10, None).unwrap().unwrap();
    assert_eq!((page.items, page.has_more), (vec![full, delete], false));
    assert_eq!(ch.summaries(), vec![stored(1, "receipts:flag.v1", "after-2")]);
}

#[test]
fn annotations_page_by_serial_and_type() {
    let (_dir, store) = open_store("annotations-pages", None);
    let ch = Chan::new(&store);
    let [a, b] = write_fixture(&ch);

    assert_eq!(ch.events(A), Some(a.clone()), "every event of A in serial order, none of B's");
    assert_eq!(ch.events(B), Some(b.clone()));
    assert_eq!(ch.pages(A, 2, None), vec![vec![1, 2], vec![3, 4], vec![5]]);
    // A page that ends exactly at the last event says there is no more.
    assert_eq!(ch.pages(A, 5, None), vec![vec![1, 2, 3, 4, 5]]);
    assert_eq!(ch.pages(A, 1, Some(DISTINCT)), vec![vec![1], vec![3], vec![4]]);
    assert_eq!(ch.pages(A, 2, Some(MULTIPLE)), vec![vec![2, 5]]);
    assert_eq!(ch.pages(B, 1, Some(DISTINCT)), vec![vec![2]]);
    assert_eq!(ch.pages(A, 10, Some("reaction:flag.v1")), vec![Vec::<u64>::new()]);

    let page = |after, limit, t| ch.page(A, after, limit, t).unwrap().unwrap();
    // `after` is exclusive; has_more counts only events of the type asked for.
    assert_eq!(page(2, 10, None).items, a[2..].to_vec(), "a page holds whole records");
    let distinct_after_3 = page(3, 1, Some(DISTINCT));
    assert_eq!((annotation_serials(&distinct_after_3), distinct_after_3.has_more), (vec![4], false));
    let multiple_after_1 = page(1, 1, Some(MULTIPLE));
    assert_eq!((annotation_serials(&multiple_after_1), multiple_after_1.has_more), (vec![2], true));
    for after in [5, 100, u64::MAX] {
        let p = page(after, 10, None);
        assert!(p.items.is_empty() && !p.has_more, "after {after}");
    }

    assert!(is_invalid_input(&ch.page(A, 0, 0, None)));
    // Only a create's serial names a message: plain rows, mutation rows and unused serials do not.
    for serial in [0, 1, 3, LAST, 42] {
        assert_eq!(ch.page(serial, 0, 10, None), Ok(None), "serial {serial}");
    }
    assert_eq!(Chan { name: "other", ..ch }.page(A, 0, 10, None), Ok(None), "messages are per channel");
    // A message without annotations is known, with an empty page.
    ch.create(LAST + 1);
    assert_eq!(ch.page(LAST + 1, 0, 10, None), Ok(Some(AnnotationsPage { items: vec![], has_more: false })));
    assert_eq!(ch.events(LAST + 1), Some(vec![]));
}

#[test]
fn refused_annotations_leave_nothing_behind() {
    let (_dir, store) = open_store("annotations-refused", None);
    let ch = Chan::new(&store);
    write_fixture(&ch);
    let before = ch.seen();

    // Each would add an event and replace a summary if it got through.
    let refused = [
        ("unused serial", 42, reaction(1, DISTINCT, "x", "m")),
        ("serial 0", 0, reaction(1, DISTINCT, "x", "m")),
        ("plain message 1", 1, reaction(1, DISTINCT, "x", "m")),
        ("plain message LAST", LAST, reaction(1, DISTINCT, "x", "m")),
        ("mutation row", 3, reaction(1, DISTINCT, "x", "m")),
        ("gap", A, reaction(7, DISTINCT, "x", "m")),
        ("repeat of the newest", A, reaction(5, DISTINCT, "x", "m")),
        ("repeat of an older one", A, reaction(1, DISTINCT, "x", "m")),
        ("serial 0 of a message", B, reaction(0, DISTINCT, "x", "m")),
        ("type too long for a key", A, reaction(6, &"t".repeat(70_000), "x", "m")),
    ];
    for (case, message, rec) in refused {
        let result = ch.annotate(message, rec, summary("refused"));
        assert!(is_invalid_input(&result), "{case}: {result:?}");
        assert_eq!(ch.seen(), before, "{case} wrote something");
    }
    // Removing a summary is refused alike.
    assert!(is_invalid_input(&ch.annotate(B, reaction(4, DISTINCT, "x", "m"), vec![])));
    assert!(is_invalid_input(&Chan { name: "fresh", ..ch }.annotate(1, reaction(1, DISTINCT, "x", "m"), vec![])));
    assert_eq!(ch.seen(), before);

    // The next serials are still the next ones.
    ch.react(A, 6, DISTINCT);
    ch.react(B, 3, DISTINCT);
}

#[test]
fn summaries_are_set_replaced_removed_and_listed_in_order() {
    let (_dir, store) = open_store("annotations-summaries", None);
    let ch = Chan::new(&store);
    let other = Chan { name: "other", ..ch };
    ch.create(1);
    ch.create(2);
    other.create(1);
    assert_eq!(ch.summaries(), vec![]);

    // Written out of order: listed by message, then type.
    ch.annotate(2, reaction(1, "b:total.v1", "x", "c"), summary("2b")).unwrap();
    ch.annotate(2, reaction(2, "a:total.v1", "x", "c"), summary("2a")).unwrap();
    ch.annotate(1, reaction(1, "c:total.v1", "x", "c"), summary("1c")).unwrap();
    other.annotate(1, reaction(1, "a:total.v1", "x", "c"), summary("other")).unwrap();
    let listed = vec![stored(1, "c:total.v1", "1c"), stored(2, "a:total.v1", "2a"), stored(2, "b:total.v1", "2b")];
    assert_eq!(ch.summaries(), listed);

    // A later event of a type replaces its summary and leaves the others.
    ch.annotate(2, reaction(3, "b:total.v1", "y", "d"), summary("2b'")).unwrap();
    let listed = vec![stored(1, "c:total.v1", "1c"), stored(2, "a:total.v1", "2a"), stored(2, "b:total.v1", "2b'")];
    assert_eq!(ch.summaries(), listed);

    // An empty summary removes the type's (the event is still stored); a later one sets it again.
    let delete =
        AnnotationRecord { action: AnnotationAction::Delete, deletes: Some(2), ..reaction(4, "a:total.v1", "x", "c") };
    ch.annotate(2, delete, vec![]).unwrap();
    assert_eq!(ch.summaries(), vec![stored(1, "c:total.v1", "1c"), stored(2, "b:total.v1", "2b'")]);
    assert_eq!(ch.page(2, 0, 10, None).unwrap().map(|p| annotation_serials(&p)), Some(vec![1, 2, 3, 4]));
    ch.annotate(2, reaction(5, "a:total.v1", "z", "e"), summary("2a'")).unwrap();
    assert_eq!(ch.summaries()[1], stored(2, "a:total.v1", "2a'"));
    assert_eq!(other.summaries(), vec![stored(1, "a:total.v1", "other")], "summaries are per channel");
}

#[test]
fn pipelined_annotations_follow_each_other_and_their_create() {
    let (_dir, store) = open_store("annotations-pipelined", None);
    let ch = Chan::new(&store);

    // Queued without waiting, so they share group-commit rounds: each must see the ones
    // queued before it, the create included, though none is committed yet.
    let create = ch.create_ticket(1);
    let events: Vec<AnnotationRecord> = (1..=200).map(|s| reaction(s, DISTINCT, &format!("n{s}"), "c")).collect();
    let tickets: Vec<AppendTicket> =
        events.iter().map(|rec| ch.annotate_ticket(1, rec.clone(), summary(&format!("s{}", rec.serial)))).collect();
    // A gap queued behind them is refused; the serial it skipped is still free.
    let gap = ch.annotate_ticket(1, reaction(202, DISTINCT, "gap", "c"), summary("gap"));
    let next = ch.annotate_ticket(1, reaction(201, DISTINCT, "next", "c"), summary("s201"));
    settle(create).unwrap();
    for ticket in tickets {
        settle(ticket).expect("annotation in serial order");
    }
    assert!(is_invalid_input(&settle(gap)));
    settle(next).unwrap();

    let stored_events = ch.events(1).unwrap();
    assert_eq!(stored_events.len(), 201);
    assert_eq!(stored_events[..200], events[..]);
    assert_eq!(ch.summaries(), vec![stored(1, DISTINCT, "s201")]);
}

#[test]
fn count_retention_forgets_the_annotations_of_the_messages_it_evicts() {
    const LIMIT: u64 = 2;
    let (_dir, store) = open_store("annotations-retention", Some(LIMIT));
    let ch = Chan::new(&store);
    ch.create(1);
    ch.create(2);
    ch.react(1, 1, DISTINCT);
    ch.react(1, 2, MULTIPLE);
    let two = vec![ch.react(2, 1, DISTINCT), ch.react(2, 2, DISTINCT)];
    let summaries_of_2 = vec![stored(2, DISTINCT, "s2")];

    // Annotations are not messages: the stream holds 2, at the limit, and nothing is evicted.
    assert_eq!(
        ch.summaries(),
        [vec![stored(1, DISTINCT, "s1"), stored(1, MULTIPLE, "s2")], summaries_of_2.clone()].concat()
    );

    // A third message evicts 1, and its annotations and summaries with it; 2 keeps its own.
    ch.plain(3);
    assert_eq!((ch.events(1), ch.page(1, 0, 10, None)), (None, Ok(None)));
    assert_eq!(ch.summaries(), summaries_of_2);
    assert_eq!(ch.events(2), Some(two.clone()));
    assert!(is_invalid_input(&ch.annotate(1, reaction(3, DISTINCT, "x", "c"), summary("late"))));
    assert_eq!(ch.summaries(), summaries_of_2, "a refused annotation of an evicted message sets no summary");

    ch.plain(4);
    assert_eq!((ch.events(2), ch.page(2, 0, 10, None)), (None, Ok(None)));
    assert_eq!(ch.summaries(), vec![]);
}

#[test]
fn purge_forgets_the_annotations_of_the_messages_it_removes() {
    let (_dir, store) = open_store("annotations-purge", None);
    let ch = Chan::new(&store);
    let [_, b] = write_fixture(&ch);
    let purge = |mode| block_on(store.purge_stream(APP, "ch", mode)).unwrap().expect("stream exists");

    // Rows 1..=3 go: A's create among them, so A's annotations and summaries too; B stays.
    purge(Purge::BeforeSerial(B));
    assert_eq!((ch.events(A), ch.page(A, 0, 10, None)), (None, Ok(None)));
    assert_eq!(ch.events(B), Some(b));
    assert_eq!(ch.summaries(), fixture_summaries()[2..].to_vec());

    purge(Purge::All);
    assert_eq!((ch.events(B), ch.page(B, 0, 10, None)), (None, Ok(None)));
    assert_eq!(ch.summaries(), vec![]);
}

#[test]
fn reset_forgets_every_annotation_of_the_old_stream() {
    check_reset(
        "annotations-reset",
        write_fixture,
        |ch| ch.seen(),
        |ch| {
            assert_eq!(ch.summaries(), vec![]);
            for m in [A, B] {
                assert_eq!((ch.events(m), ch.page(m, 0, 10, None)), (None, Ok(None)));
            }
            // The new stream reuses serials 1.., so messages made at A's and B's old serials start
            // from nothing: their first annotation is serial 1 again, alone.
            ch.plain(1);
            for serial in [A, 3, B] {
                ch.create(serial);
            }
            for m in [A, B] {
                let first = ch.react(m, 1, MULTIPLE);
                assert_eq!(ch.events(m), Some(vec![first]), "message {m}");
            }
            assert_eq!(ch.summaries(), vec![stored(A, MULTIPLE, "s1"), stored(B, MULTIPLE, "s1")]);
        },
    );
}

#[test]
fn annotations_survive_a_reopen() {
    check_reopen(
        "annotations-reopen",
        write_fixture,
        |ch| ch.seen(),
        |ch, [a, b], before| {
            assert_eq!((&before.events, &before.summaries), (&[Some(a), Some(b)], &fixture_summaries()));
            // Numbering goes on from the stored newest.
            assert!(is_invalid_input(&ch.annotate(A, reaction(5, DISTINCT, "x", "c"), summary("again"))));
            ch.react(A, 6, DISTINCT);
        },
    );
}

#[test]
fn annotations_move_with_their_stream_between_shards() {
    let left = |ch: &Chan| (ch.events(A), ch.summaries());
    check_moves_between_shards(
        "annotations-migrate",
        write_fixture,
        |ch| ch.seen(),
        left,
        |ch| {
            // A moved message takes its next annotation where it left off.
            ch.react(A, 6, DISTINCT);
            assert_eq!(ch.events(A).map(|e| e.len()), Some(6));
        },
    );
}
