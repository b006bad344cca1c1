//! Push notifications (`docs/push.md`): the registry of devices and their channel
//! subscriptions (`registry.rs`). The registry of an app lives in the store of one shard, the
//! app's push owner (`OwnerKey::PushRegistry`), so that a change and its indexes commit
//! together and every list is one range scan; any shard reads and writes it there directly, as
//! history reads do.

pub mod registry;
