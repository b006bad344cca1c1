//! The operator's history controls: purge by mode (stream and serials kept) and reset (a new
//! stream, serials from 1), each surviving a reopen; and token revocations, kept until they
//! expire.

mod common;

use common::{append_range, query, read, serials, TempDir};
use futures_executor::block_on;
use storage::{Direction, Purge, Revocation, Store, StoreConfig};

#[test]
fn purge_by_mode_keeps_the_stream_and_reset_starts_a_new_one() {
    let dir = TempDir::new("operator");
    let cfg = StoreConfig::default();
    let store = Store::open(dir.path(), 0, &cfg).unwrap();
    assert_eq!(block_on(store.stream_meta("app", "ch")).unwrap(), None);
    assert_eq!(block_on(store.purge_stream("app", "ch", Purge::All)).unwrap(), None);
    let stream = "s-1";
    append_range(&store, "app", "ch", stream, 1, 10, |s| 1000 + s);

    let p = block_on(store.purge_stream("app", "ch", Purge::BeforeSerial(4))).unwrap().unwrap();
    assert_eq!((p.messages, p.meta.oldest_serial, p.meta.next_serial), (3, 4, 11));
    assert_eq!(p.previous_stream_id.as_deref(), Some(stream));
    let p = block_on(store.purge_stream("app", "ch", Purge::BeforeTime(1006))).unwrap().unwrap();
    assert_eq!((p.messages, p.meta.oldest_serial), (2, 6));
    assert_eq!(serials(&read(&store, query("app", "ch", Direction::OldestFirst, 100))), (6..=10).collect::<Vec<_>>());
    let p = block_on(store.purge_stream("app", "ch", Purge::All)).unwrap().unwrap();
    assert_eq!((p.messages, p.meta.retained_messages, p.meta.stream_id.as_str()), (5, 0, stream));
    // Serials continue after a purge.
    append_range(&store, "app", "ch", stream, 11, 2, |s| 1000 + s);

    let r = block_on(store.reset_stream("app", "ch", "s-2")).unwrap();
    assert_eq!((r.messages, r.previous_stream_id.as_deref()), (2, Some(stream)));
    assert_eq!((r.meta.stream_id.as_str(), r.meta.next_serial), ("s-2", 1));
    append_range(&store, "app", "ch", "s-2", 1, 3, |s| 2000 + s);
    drop(store);

    let store = Store::open(dir.path(), 0, &cfg).unwrap();
    let meta = block_on(store.stream_meta("app", "ch")).unwrap().unwrap();
    assert_eq!((meta.stream_id.as_str(), meta.next_serial, meta.retained_messages), ("s-2", 4, 3));
    assert_eq!(serials(&read(&store, query("app", "ch", Direction::OldestFirst, 100))), vec![1, 2, 3]);
}

#[test]
fn revocations_survive_a_reopen_until_they_expire() {
    let dir = TempDir::new("revocations");
    let cfg = StoreConfig::default();
    let store = Store::open(dir.path(), 0, &cfg).unwrap();
    let now = common::now_ms();
    let revocation = |app: &str, kind, id: &str, expires_at_ms| Revocation {
        app: app.into(),
        kind,
        id: id.into(),
        expires_at_ms,
        reason: "stolen".into(),
    };
    let live = [revocation("app", 0, "jti-1", now + 60_000), revocation("other", 1, "u1", now + 60_000)];
    for r in live.iter().cloned().chain([revocation("app", 1, "old", now - 1)]) {
        block_on(store.put_revocation(r)).unwrap();
    }
    drop(store);

    let store = Store::open(dir.path(), 0, &cfg).unwrap();
    let mut loaded = block_on(store.load_revocations()).unwrap();
    loaded.sort_by(|a, b| a.app.cmp(&b.app));
    assert_eq!(loaded, live);
}
