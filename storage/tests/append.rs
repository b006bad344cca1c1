mod common;

use std::time::Duration;

use common::{append_range, now_ms, query, read, record, serials, TempDir};
use futures_executor::block_on;
use storage::{Direction, Fsync, StorageError, Store, StoreConfig};

fn cfg(fsync: Fsync) -> StoreConfig {
    StoreConfig { fsync, ..StoreConfig::default() }
}

#[test]
fn appends_submitted_together_share_few_batches_and_stay_gapless() {
    let dir = TempDir::new("group");
    let store = Store::open(dir.path(), 0, &cfg(Fsync::Os)).unwrap();
    let stream = block_on(store.reset_stream("app", "ch", &uuid::Uuid::new_v4().to_string())).unwrap().meta.stream_id;
    const N: u64 = 2000;
    let tickets = std::thread::scope(|s| {
        s.spawn(|| (1..=N).map(|i| store.append("app", "ch", &stream, i, record(i, 1000 + i))).collect::<Vec<_>>())
            .join()
            .unwrap()
    });
    for t in tickets {
        block_on(t.written).unwrap();
        block_on(t.durable).unwrap();
    }
    let batches = store.stats().batches();
    assert!(batches < N / 4, "{N} appends took {batches} batches");
    eprintln!("{N} appends committed in {batches} batches");

    let page = read(&store, query("app", "ch", Direction::OldestFirst, 10_000));
    assert_eq!(serials(&page), (1..=N).collect::<Vec<_>>());
    let c = page.continuity.unwrap();
    assert_eq!((c.oldest_available_serial, c.newest_available_serial), (Some(1), Some(N)));
}

#[test]
fn wrong_serial_or_stream_is_rejected_without_writing() {
    let dir = TempDir::new("reject");
    let store = Store::open(dir.path(), 0, &cfg(Fsync::Os)).unwrap();
    let gap = store.append("app", "ch", "s1", 2, record(2, 1));
    assert!(matches!(block_on(gap.written), Err(StorageError::SerialMismatch { expected: 1, got: 2, .. })));
    assert!(block_on(gap.durable).is_err());
    append_range(&store, "app", "ch", "s1", 1, 3, |_| 1);
    let dup = store.append("app", "ch", "s1", 3, record(3, 1));
    assert!(matches!(block_on(dup.written), Err(StorageError::SerialMismatch { expected: 4, got: 3, .. })));
    let other = store.append("app", "ch", "s2", 4, record(4, 1));
    let err = block_on(other.written).unwrap_err();
    assert!(matches!(err, StorageError::StreamMismatch { .. }), "{err}");
    assert_eq!(serials(&read(&store, query("app", "ch", Direction::OldestFirst, 100))), vec![1, 2, 3]);
}

// A serial the cluster log gave an operation that did not apply is passed over: the next
// append takes the serial after it, and a skip, like an append, must be the stream's next
// serial of its stream; it survives a reopen.
#[test]
fn a_skipped_serial_holds_nothing_and_the_stream_goes_on() {
    let dir = TempDir::new("skip");
    {
        let store = Store::open(dir.path(), 0, &cfg(Fsync::Os)).unwrap();
        append_range(&store, "app", "ch", "s1", 1, 2, |_| 1);
        assert!(matches!(block_on(store.skip("app", "ch", "s1", 4)), Err(StorageError::SerialMismatch { .. })));
        assert!(matches!(block_on(store.skip("app", "ch", "s2", 3)), Err(StorageError::StreamMismatch { .. })));
        block_on(store.skip("app", "ch", "s1", 3)).unwrap();
        let stale = store.append("app", "ch", "s1", 3, record(3, 1));
        assert!(matches!(block_on(stale.written), Err(StorageError::SerialMismatch { expected: 4, got: 3, .. })));
        block_on(store.append("app", "ch", "s1", 4, record(4, 1)).written).unwrap();
    }
    let store = Store::open(dir.path(), 0, &cfg(Fsync::Os)).unwrap();
    block_on(store.append("app", "ch", "s1", 5, record(5, 1)).written).unwrap();
    assert_eq!(serials(&read(&store, query("app", "ch", Direction::OldestFirst, 100))), vec![1, 2, 4, 5]);
}

#[test]
fn every_fsync_level_completes_appends() {
    for (fsync, name) in
        [(Fsync::Os, "os"), (Fsync::Interval(Duration::from_millis(10)), "interval"), (Fsync::Always, "always")]
    {
        let dir = TempDir::new(name);
        let store = Store::open(dir.path(), 0, &cfg(fsync)).unwrap();
        for round in 0..5u64 {
            let tickets: Vec<_> =
                (1..=20).map(|i| round * 20 + i).map(|s| store.append("app", "ch", "s", s, record(s, 5))).collect();
            for t in tickets {
                block_on(t.written).unwrap();
                block_on(t.durable).unwrap();
            }
        }
        let (batches, syncs) = (store.stats().batches(), store.stats().syncs());
        match fsync {
            Fsync::Os => assert_eq!(syncs, 0),
            // Always syncs every batch before answering durable; Interval batches syncs.
            Fsync::Always => assert_eq!(syncs, batches),
            Fsync::Interval(_) => assert!(syncs >= 1 && syncs <= batches),
        }
        let page = read(&store, query("app", "ch", Direction::NewestFirst, 1));
        assert_eq!(serials(&page), vec![100]);
        store.close().unwrap();
    }
}

#[test]
fn unknown_format_version_is_refused_with_the_path() {
    let dir = TempDir::new("format");
    Store::open(dir.path(), 0, &StoreConfig::default()).unwrap().close().unwrap();
    let shard = storage::shard_dir(dir.path(), 0);
    {
        let ks = fjall::Config::new(&shard).open().unwrap();
        let meta = ks.open_partition("meta", Default::default()).unwrap();
        meta.insert("format_version", 99u32.to_be_bytes()).unwrap();
        ks.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let err = Store::open(dir.path(), 0, &StoreConfig::default()).err().unwrap();
    assert!(matches!(err, StorageError::UnknownFormat { found: 99, supported: 1, .. }));
    assert!(err.to_string().contains(&shard.display().to_string()), "{err}");
}

#[test]
fn too_small_fjall_limits_are_errors_not_panics() {
    let dir = TempDir::new("limits");
    let bad = StoreConfig { journal_bytes: 1 << 20, ..StoreConfig::default() };
    assert!(matches!(Store::open(dir.path(), 0, &bad), Err(StorageError::InvalidInput(_))));
}

#[test]
fn idempotency_entries_expire() {
    let dir = TempDir::new("idem");
    let cfg = StoreConfig { cleanup_interval: Duration::from_millis(20), ..StoreConfig::default() };
    let store = Store::open(dir.path(), 0, &cfg).unwrap();
    let now = now_ms();
    block_on(store.put_idempotency("app", 1, b"k1", b"resp-1".to_vec(), now + 60_000)).unwrap();
    block_on(store.put_idempotency("app", 1, b"old", b"resp-0".to_vec(), now + 50)).unwrap();
    assert_eq!(block_on(store.get_idempotency("app", 1, b"k1")).unwrap(), Some(b"resp-1".to_vec()));
    assert_eq!(block_on(store.get_idempotency("app", 2, b"k1")).unwrap(), None, "spaces are separate");
    assert_eq!(block_on(store.get_idempotency("other", 1, b"k1")).unwrap(), None, "apps are separate");
    assert_eq!(block_on(store.get_idempotency("app", 1, b"old")).unwrap(), Some(b"resp-0".to_vec()));
    std::thread::sleep(Duration::from_millis(120));
    assert_eq!(block_on(store.get_idempotency("app", 1, b"old")).unwrap(), None);
    block_on(store.delete_idempotency("app", 1, b"k1")).unwrap();
    assert_eq!(block_on(store.get_idempotency("app", 1, b"k1")).unwrap(), None);
}
