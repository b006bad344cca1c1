//! The push registry (`storage::push`): devices with their client index, channel
//! subscriptions listed both ways, pages by cursor, removals that take their indexes along,
//! all kept across a reopen.

mod common;

use common::TempDir;
use futures_executor::block_on;
use storage::{RegistryPage, Store, StoreConfig, SubscriptionsOf};

fn ids(page: &RegistryPage) -> Vec<&str> {
    page.items.iter().map(|(id, _)| id.as_str()).collect()
}

#[test]
fn devices_and_subscriptions_are_kept_and_listed() {
    let dir = TempDir::new("push");
    {
        let store = Store::open(dir.path(), 0, &StoreConfig::default()).unwrap();
        let put =
            |id: &str, client: Option<&str>| block_on(store.push_put_device("app", id, client, id.into())).unwrap();
        assert_eq!(put("d1", Some("u1")).previous, None);
        put("d2", Some("u1"));
        put("d3", None);
        block_on(store.push_put_device("other-app", "d9", Some("u1"), b"x".to_vec())).unwrap();
        // Moving d2 to another client moves its index entry.
        assert_eq!(put("d2", Some("u2")).previous, Some(b"d2".to_vec()));
        assert_eq!(block_on(store.push_client_devices("app", "u1")).unwrap(), ["d1"]);
        assert_eq!(block_on(store.push_client_devices("app", "u2")).unwrap(), ["d2"]);
        assert_eq!(block_on(store.push_device("app", "d3")).unwrap(), Some(b"d3".to_vec()));
        assert_eq!(block_on(store.push_device("app", "nope")).unwrap(), None);
        let first = block_on(store.push_devices("app", None, 2)).unwrap();
        assert_eq!((ids(&first), first.has_more), (vec!["d1", "d2"], true));
        assert_eq!(first.items[1].1, b"d2", "a listed device is its body alone");
        let rest = block_on(store.push_devices("app", Some("d2"), 2)).unwrap();
        assert_eq!((ids(&rest), rest.has_more), (vec!["d3"], false));

        for (channel, device) in [("orders", "d1"), ("orders", "d2"), ("news", "d1"), ("alerts", "d3")] {
            block_on(store.push_subscribe("app", channel, device, format!("{channel}/{device}").into_bytes())).unwrap();
        }
        let by_channel = block_on(store.push_subscriptions("app", SubscriptionsOf::Channel("orders".into()), None, 10));
        assert_eq!(ids(&by_channel.unwrap()), ["d1", "d2"]);
        let of_d1 = block_on(store.push_subscriptions("app", SubscriptionsOf::Device("d1".into()), None, 1)).unwrap();
        assert_eq!((ids(&of_d1), of_d1.has_more), (vec!["news"], true));
        assert_eq!(of_d1.items[0].1, b"news/d1");
        let after = block_on(store.push_subscriptions("app", SubscriptionsOf::Device("d1".into()), Some("news"), 5));
        assert_eq!(ids(&after.unwrap()), ["orders"]);
        let (channels, more) = block_on(store.push_channels("app", None, 2)).unwrap();
        assert_eq!((channels, more), (vec!["news".to_owned(), "alerts".to_owned()], true));
        let (channels, more) = block_on(store.push_channels("app", Some("alerts"), 2)).unwrap();
        assert_eq!((channels, more), (vec!["orders".to_owned()], false));

        // Removing d1 takes its subscriptions and its client entry with it.
        assert!(block_on(store.push_delete_device("app", "d1")).unwrap());
        assert!(!block_on(store.push_delete_device("app", "d1")).unwrap());
        assert!(block_on(store.push_client_devices("app", "u1")).unwrap().is_empty());
        let orders = block_on(store.push_subscriptions("app", SubscriptionsOf::Channel("orders".into()), None, 10));
        assert_eq!(ids(&orders.unwrap()), ["d2"]);
        assert_eq!(block_on(store.push_unsubscribe("app", SubscriptionsOf::Channel("orders".into()))).unwrap(), 1);
        let of_d2 = block_on(store.push_subscriptions("app", SubscriptionsOf::Device("d2".into()), None, 10)).unwrap();
        assert!(of_d2.items.is_empty());
    }
    let store = Store::open(dir.path(), 0, &StoreConfig::default()).unwrap();
    assert_eq!(ids(&block_on(store.push_devices("app", None, 10)).unwrap()), ["d2", "d3"]);
    let (channels, _) = block_on(store.push_channels("app", None, 10)).unwrap();
    assert_eq!(channels, ["alerts"]);
    assert_eq!(block_on(store.push_client_devices("other-app", "u1")).unwrap(), ["d9"]);
}
