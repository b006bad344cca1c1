mod common;

use common::{append_range, no_age_limit, owner, query, read, serials, TempDir};
use futures_executor::block_on;
use storage::{open_all, CursorCheck, Direction, Store, SubscriptionsOf};

const CHANNELS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

/// Checks every channel's history is 1..=`newest` in its owner's store, then appends `extra`
/// more serials there.
fn check_and_extend(stores: &[Store], streams: &[String], newest: u64, extra: u64) {
    let own = owner(stores.len());
    for (channel, stream) in CHANNELS.iter().zip(streams) {
        let store = &stores[own("app", channel)];
        let page = read(store, query("app", channel, Direction::OldestFirst, 1000));
        assert_eq!(serials(&page), (1..=newest).collect::<Vec<_>>(), "channel {channel}");
        assert_eq!(&page.continuity.unwrap().stream_id, stream);
        append_range(store, "app", channel, stream, newest + 1, extra, |s| s);
        for (i, other) in stores.iter().enumerate() {
            if i != own("app", channel) {
                assert!(read(other, query("app", channel, Direction::OldestFirst, 1)).continuity.is_none());
            }
        }
    }
}

#[test]
fn shard_count_changes_keep_history_and_serials() {
    let dir = TempDir::new("migrate");
    let stores = open_all(dir.path(), 2, owner(2), &no_age_limit(None)).unwrap();
    let own = owner(2);
    let mut streams = Vec::new();
    for channel in CHANNELS {
        let store = &stores[own("app", channel)];
        let stream =
            block_on(store.reset_stream("app", channel, &uuid::Uuid::new_v4().to_string())).unwrap().meta.stream_id;
        append_range(store, "app", channel, &stream, 1, 5, |s| s);
        streams.push(stream);
    }
    let q = query("app", "a", Direction::NewestFirst, 2);
    let cursor = read(&stores[own("app", "a")], q.clone()).next_cursor.unwrap();
    drop(stores);

    let stores = open_all(dir.path(), 1, owner(1), &no_age_limit(None)).unwrap();
    assert!(!storage::shard_dir(dir.path(), 1).exists(), "emptied shard dir removed");
    check_and_extend(&stores, &streams, 5, 2);
    drop(stores);

    let stores = open_all(dir.path(), 3, owner(3), &no_age_limit(None)).unwrap();
    assert!(storage::shard_dir(dir.path(), 2).exists());
    check_and_extend(&stores, &streams, 7, 1);

    // Every shard signs cursors alike, so a cursor survives its stream moving.
    let check = CursorCheck {
        app: "app",
        channel: "a",
        direction: q.direction,
        bounds: &q.bounds,
        stream_id: &streams[0],
        oldest_retained_serial: 1,
    };
    for store in &stores {
        assert_eq!(store.cursors().decode(&cursor, &check).unwrap().serial, 4);
    }
}

// An app's push registry moves with the shard count like a stream, placed by `PUSH_REGISTRY`:
// after each change it is whole in its owner's store and nowhere else.
#[test]
fn shard_count_changes_move_push_registries() {
    let dir = TempDir::new("migrate-push");
    let apps = ["app-1", "app-2", "app-3", "app-4"];
    {
        let stores = open_all(dir.path(), 1, owner(1), &no_age_limit(None)).unwrap();
        for app in apps {
            block_on(stores[0].push_put_device(app, "d1", Some("u1"), b"{}".to_vec())).unwrap();
            block_on(stores[0].push_subscribe(app, "orders", "d1", b"{}".to_vec())).unwrap();
        }
        for s in stores {
            s.close().unwrap();
        }
    }
    for shards in [3, 2] {
        let stores = open_all(dir.path(), shards, owner(shards), &no_age_limit(None)).unwrap();
        for app in apps {
            let home = owner(shards)(app, storage::PUSH_REGISTRY);
            for (i, store) in stores.iter().enumerate() {
                let device = block_on(store.push_device(app, "d1")).unwrap();
                let clients = block_on(store.push_client_devices(app, "u1")).unwrap();
                let subs = block_on(store.push_subscriptions(app, SubscriptionsOf::Device("d1".into()), None, 10));
                let held = (device.is_some(), clients.len(), subs.unwrap().items.len());
                assert_eq!(
                    held,
                    if i == home { (true, 1, 1) } else { (false, 0, 0) },
                    "{app} in store {i} of {shards}"
                );
            }
        }
        for s in stores {
            s.close().unwrap();
        }
    }
}
