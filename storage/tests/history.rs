mod common;

use std::time::Duration;

use common::{append_range, no_age_limit, now_ms, query, read, record, serials, TempDir};
use futures_executor::block_on;
use std::sync::Arc;
use storage::{
    Bounds, CursorCheck, CursorError, Direction, HistoryQuery, Retention, RetentionOverrides, Store, StoreConfig,
};

/// 30 messages, serial s published at 1000 + 10 s.
fn filled(dir: &TempDir) -> (Store, String) {
    let store = Store::open(dir.path(), 0, &no_age_limit(Some(10_000))).unwrap();
    let stream = block_on(store.reset_stream("app", "ch", &uuid::Uuid::new_v4().to_string())).unwrap().meta.stream_id;
    append_range(&store, "app", "ch", &stream, 1, 30, |s| 1000 + 10 * s);
    (store, stream)
}

fn bounded(direction: Direction, limit: usize, bounds: Bounds) -> HistoryQuery {
    HistoryQuery { bounds, ..query("app", "ch", direction, limit) }
}

#[test]
fn pages_follow_direction_limit_and_bounds() {
    let dir = TempDir::new("pages");
    let (store, stream) = filled(&dir);

    let newest = read(&store, query("app", "ch", Direction::NewestFirst, 10));
    assert_eq!(serials(&newest), (21..=30).rev().collect::<Vec<_>>());
    assert!(newest.has_more && newest.next_cursor.is_some());
    let item = &newest.items[0];
    assert_eq!((item.published_at_ms, item.message_id.as_str()), (1300, "m-30"));
    assert_eq!(item.payload_size_bytes, item.payload.len() as u64);
    let c = newest.continuity.unwrap();
    assert_eq!(c.stream_id, stream);
    assert_eq!((c.oldest_available_serial, c.newest_available_serial), (Some(1), Some(30)));
    assert_eq!((c.oldest_available_published_at_ms, c.newest_available_published_at_ms), (Some(1010), Some(1300)));
    assert_eq!(c.retained_messages, 30);
    assert!(!c.truncated_by_retention);

    let oldest = read(&store, query("app", "ch", Direction::OldestFirst, 10));
    assert_eq!(serials(&oldest), (1..=10).collect::<Vec<_>>());

    let all = read(&store, query("app", "ch", Direction::OldestFirst, 30));
    assert!(!all.has_more && all.next_cursor.is_none());

    let by_serial = Bounds { start_serial: Some(5), end_serial: Some(12), ..Bounds::default() };
    let page = read(&store, bounded(Direction::OldestFirst, 100, by_serial));
    assert_eq!(serials(&page), (5..=12).collect::<Vec<_>>());
    assert!(!page.has_more);

    let by_time = Bounds { start_time_ms: Some(1050), end_time_ms: Some(1100), ..Bounds::default() };
    let page = read(&store, bounded(Direction::NewestFirst, 100, by_time));
    assert_eq!(serials(&page), (5..=10).rev().collect::<Vec<_>>());
    let page = read(&store, bounded(Direction::OldestFirst, 3, by_time));
    assert_eq!(serials(&page), vec![5, 6, 7]);
    assert!(page.has_more);

    let missing =
        read(&store, HistoryQuery { channel: "nothing".into(), ..query("app", "ch", Direction::NewestFirst, 5) });
    assert!(missing.items.is_empty() && missing.continuity.is_none());
}

#[test]
fn publish_time_never_decreases_along_serials() {
    let dir = TempDir::new("clamp");
    let store = Store::open(dir.path(), 0, &no_age_limit(Some(10_000))).unwrap();
    append_range(&store, "app", "ch", "s", 1, 3, |s| [0, 500, 400, 600][s as usize]);
    let page = read(&store, query("app", "ch", Direction::OldestFirst, 10));
    let times: Vec<u64> = page.items.iter().map(|i| i.published_at_ms).collect();
    assert_eq!(times, vec![500, 500, 600]);
}

/// Follows `next_cursor` through the codec, as the server will, until the pages run out.
fn walk(store: &Store, direction: Direction, limit: usize, bounds: Bounds) -> Vec<u64> {
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = bounded(direction, limit, bounds);
        q.cursor = cursor.take();
        let page = read(store, q);
        seen.extend(serials(&page));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return seen,
        }
    }
}

#[test]
fn cursor_continuation_returns_every_item_once() {
    let dir = TempDir::new("walk");
    let (store, _) = filled(&dir);
    assert_eq!(walk(&store, Direction::NewestFirst, 7, Bounds::default()), (1..=30).rev().collect::<Vec<_>>());
    assert_eq!(walk(&store, Direction::OldestFirst, 4, Bounds::default()), (1..=30).collect::<Vec<_>>());
    let b = Bounds { start_serial: Some(3), end_serial: Some(28), ..Bounds::default() };
    assert_eq!(walk(&store, Direction::NewestFirst, 5, b), (3..=28).rev().collect::<Vec<_>>());
    let t = Bounds { start_time_ms: Some(1100), end_time_ms: Some(1250), ..Bounds::default() };
    assert_eq!(walk(&store, Direction::OldestFirst, 5, t), (10..=25).collect::<Vec<_>>());
    assert_eq!(walk(&store, Direction::NewestFirst, 1, t), (10..=25).rev().collect::<Vec<_>>());
}

#[test]
fn cursors_round_trip_and_reject_misuse() {
    let dir = TempDir::new("cursor");
    let (store, stream) = filled(&dir);
    let bounds = Bounds { start_serial: Some(2), ..Bounds::default() };
    let page = read(&store, bounded(Direction::NewestFirst, 5, bounds));
    let encoded = page.next_cursor.unwrap();
    assert!(encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    let check = CursorCheck {
        app: "app",
        channel: "ch",
        direction: Direction::NewestFirst,
        bounds: &bounds,
        stream_id: &stream,
        oldest_retained_serial: 1,
    };
    let codec = store.cursors();
    let cursor = codec.decode(&encoded, &check).unwrap();
    assert_eq!((cursor.version, cursor.serial, cursor.stream_id.as_str()), (1, 26, stream.as_str()));
    assert_eq!(codec.encode(&cursor), encoded);

    let msg = |r: Result<_, CursorError>| r.unwrap_err().to_string();
    let mut tampered = encoded.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(msg(codec.decode(&tampered, &check)), "Invalid history cursor: tampered");
    // The store checks a cursor it is given the same way.
    let mut q = bounded(Direction::NewestFirst, 5, bounds);
    q.cursor = Some(tampered.clone());
    assert_eq!(block_on(store.read_history(q)).unwrap_err().to_string(), "Invalid history cursor: tampered");
    let mut q = bounded(Direction::OldestFirst, 5, bounds);
    q.cursor = Some(encoded.clone());
    assert_eq!(block_on(store.read_history(q)).unwrap_err().to_string(), "Invalid history cursor: direction mismatch");
    assert!(msg(codec.decode("%%%", &check)).starts_with("Invalid history cursor: "));
    let foreign = CursorCheck { channel: "other", ..check };
    assert!(msg(codec.decode(&encoded, &foreign)).starts_with("Invalid history cursor: "));
    let other_app = CursorCheck { app: "app2", ..check };
    assert!(msg(codec.decode(&encoded, &other_app)).starts_with("Invalid history cursor: "));
    let reversed = CursorCheck { direction: Direction::OldestFirst, ..check };
    assert!(msg(codec.decode(&encoded, &reversed)).starts_with("Invalid history cursor: "));
    let other_bounds = Bounds::default();
    let rebounded = CursorCheck { bounds: &other_bounds, ..check };
    assert!(msg(codec.decode(&encoded, &rebounded)).starts_with("Invalid history cursor: "));
    let below = CursorCheck { oldest_retained_serial: 27, ..check };
    assert_eq!(msg(codec.decode(&encoded, &below)), "cursor points before retained history");

    let fresh = block_on(store.reset_stream("app", "ch", &uuid::Uuid::new_v4().to_string())).unwrap().meta;
    let moved = CursorCheck { stream_id: &fresh.stream_id, ..check };
    assert_eq!(msg(codec.decode(&encoded, &moved)), "Expired history cursor: channel stream changed");

    let other_dir = TempDir::new("cursor-other");
    let other = Store::open(other_dir.path(), 0, &no_age_limit(Some(10_000))).unwrap();
    assert_eq!(msg(other.cursors().decode(&encoded, &check)), "Invalid history cursor: tampered");
}

#[test]
fn count_retention_advances_the_floor() {
    let dir = TempDir::new("count");
    let cfg = no_age_limit(Some(10));
    let store = Store::open(dir.path(), 0, &cfg).unwrap();
    append_range(&store, "app", "ch", "s", 1, 25, |s| 100 * s);
    let page = read(&store, query("app", "ch", Direction::OldestFirst, 100));
    assert_eq!(serials(&page), (16..=25).collect::<Vec<_>>());
    let c = page.continuity.unwrap();
    assert_eq!((c.oldest_available_serial, c.newest_available_serial), (Some(16), Some(25)));
    assert_eq!(c.oldest_available_published_at_ms, Some(1600));
    assert_eq!(c.retained_messages, 10);
    assert_eq!(c.retained_bytes, page.items.iter().map(|i| i.payload_size_bytes).sum::<u64>());
    assert!(c.truncated_by_retention);
    let from_20 = Bounds { start_serial: Some(20), ..Bounds::default() };
    let page = read(&store, bounded(Direction::OldestFirst, 100, from_20));
    assert!(!page.continuity.unwrap().truncated_by_retention);

    let per_app = StoreConfig {
        overrides: Some(RetentionOverrides(Arc::new(|app: &str, _: &str| {
            (app == "big").then_some(Retention { max_age: None, max_messages: None, max_bytes: None })
        }))),
        ..cfg
    };
    drop(store);
    let store = Store::open(dir.path(), 0, &per_app).unwrap();
    append_range(&store, "big", "ch", "s", 1, 25, |s| s);
    assert_eq!(read(&store, query("big", "ch", Direction::OldestFirst, 100)).items.len(), 25);
}

// A presence stream keeps to the presence retention, whatever the app's; a byte bound keeps
// the newest rows whose payloads fit.
#[test]
fn presence_streams_and_byte_bounds_have_their_own_retention() {
    let dir = TempDir::new("presence-retention");
    let payload = record(1, 1).payload.len() as u64;
    let cfg = StoreConfig {
        presence_retention: Retention { max_age: None, max_messages: Some(3), max_bytes: None },
        retention: Retention { max_age: None, max_messages: None, max_bytes: Some(5 * payload) },
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), 0, &cfg).unwrap();
    let presence = storage::presence_stream("presence-room");
    assert_eq!(storage::presence_channel(&presence), Some("presence-room"));
    assert_eq!(storage::presence_channel("presence-room"), None);
    append_range(&store, "app", &presence, "p", 1, 8, |s| s);
    append_range(&store, "app", "presence-room", "s", 1, 8, |s| s);
    assert_eq!(serials(&read(&store, query("app", &presence, Direction::OldestFirst, 100))), vec![6, 7, 8]);
    let page = read(&store, query("app", "presence-room", Direction::OldestFirst, 100));
    assert_eq!(serials(&page), vec![4, 5, 6, 7, 8]);
    assert_eq!(page.continuity.unwrap().retained_bytes, 5 * payload);
}

#[test]
fn age_retention_removes_old_rows_in_the_background() {
    let dir = TempDir::new("age");
    let cfg = StoreConfig {
        retention: Retention { max_age: Some(Duration::from_secs(30)), max_messages: None, max_bytes: None },
        cleanup_interval: Duration::from_millis(20),
        ..StoreConfig::default()
    };
    let store = Store::open(dir.path(), 0, &cfg).unwrap();
    let now = now_ms();
    append_range(&store, "app", "ch", "s", 1, 8, |s| if s <= 5 { now - 60_000 } else { now });
    // Cleanup runs every 20 ms; allow a loaded machine several seconds before failing.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let page = loop {
        let page = read(&store, query("app", "ch", Direction::OldestFirst, 100));
        if page.items.len() < 8 || std::time::Instant::now() > deadline {
            break page;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(serials(&page), vec![6, 7, 8]);
    let c = page.continuity.unwrap();
    assert_eq!((c.oldest_available_serial, c.retained_messages), (Some(6), 3));
    assert_eq!(c.oldest_available_published_at_ms, Some(now));
    assert!(c.truncated_by_retention);
    append_range(&store, "app", "ch", "s", 9, 1, |_| now);
    assert_eq!(read(&store, query("app", "ch", Direction::NewestFirst, 1)).items[0].serial, 9);
}
