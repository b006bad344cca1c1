//! The push registry (`crate::push`), in one partition:
//! - `D app device` -> the device's client id (a key component, empty for none), then its body;
//! - `C app client device` -> empty: a client's devices, for removal by client;
//! - `S app channel device` -> the subscription's body;
//! - `T app device channel` -> empty: a device's channels, so that removing a device removes
//!   its subscriptions and a device's subscriptions list is one scan;
//! - `A app` -> empty: the apps with a registry here, so that a start after the shard count
//!   changed finds the registries to move without reading them (`migrate.rs`).
//!
//! Every change commits its rows and indexes in one batch and is synced before it is answered:
//! registrations are rare, and a lost one would leave a device unreachable.

use fjall::{Batch, PersistMode};

use super::Engine;
use crate::keys::{push_component_into, push_components, push_key};
use crate::push::{RegistryPage, RegistryRows, Replaced, SubscriptionsOf};
use crate::StorageError;

/// A device row: its client, if any, and its body.
type DeviceRow = (Option<String>, Vec<u8>);

const DEVICE: u8 = b'D';
const CLIENT: u8 = b'C';
const SUBSCRIPTION: u8 = b'S';
const DEVICE_CHANNEL: u8 = b'T';
const APP: u8 = b'A';
const KINDS: [u8; 5] = [DEVICE, CLIENT, SUBSCRIPTION, DEVICE_CHANNEL, APP];

impl Engine {
    /// Stores a device under `id`, indexed under `client` (moved from its previous client's
    /// index entry).
    pub(crate) fn push_put_device(
        &self,
        app: &str,
        id: &str,
        client: Option<&str>,
        body: &[u8],
    ) -> Result<Replaced, StorageError> {
        let key = push_key(DEVICE, app, &[id])?;
        let previous = self.push_device_row(&key)?;
        let mut batch = self.keyspace.batch();
        if let Some((old, _)) = previous.as_ref().filter(|(old, _)| old.as_deref() != client) {
            batch.remove(&self.push, push_key(CLIENT, app, &[old.as_deref().unwrap_or_default(), id])?);
        }
        if let Some(client) = client {
            batch.insert(&self.push, push_key(CLIENT, app, &[client, id])?, Vec::new());
        }
        let mut value = Vec::with_capacity(2 + client.map_or(0, str::len) + body.len());
        push_component_into(&mut value, client.unwrap_or_default())?;
        value.extend_from_slice(body);
        batch.insert(&self.push, key, value);
        batch.insert(&self.push, push_key(APP, app, &[])?, Vec::new());
        self.commit_push(batch, "commit device")?;
        Ok(Replaced { previous: previous.map(|(_, body)| body) })
    }

    pub(crate) fn push_device(&self, app: &str, id: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.push_device_row(&push_key(DEVICE, app, &[id])?)?.map(|(_, body)| body))
    }

    fn push_device_row(&self, key: &[u8]) -> Result<Option<DeviceRow>, StorageError> {
        let Some(v) = self.push.get(key).map_err(self.err("read device"))? else { return Ok(None) };
        let (client, body) = push_components(&v).ok_or_else(|| self.corrupt_push())?;
        Ok(Some(((!client.is_empty()).then_some(client), body.to_vec())))
    }

    /// Devices after the id `after`, in key order (ids by length, then bytes: the order is
    /// only the cursor's).
    pub(crate) fn push_devices(
        &self,
        app: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RegistryPage, StorageError> {
        let mut page = self.push_page(push_key(DEVICE, app, &[])?, after, limit, "list devices")?;
        for (_, value) in &mut page.items {
            let (_, body) = push_components(value).ok_or_else(|| self.corrupt_push())?;
            *value = body.to_vec();
        }
        Ok(page)
    }

    /// The ids of a client's devices.
    pub(crate) fn push_client_devices(&self, app: &str, client: &str) -> Result<Vec<String>, StorageError> {
        let page = self.push_page(push_key(CLIENT, app, &[client])?, None, usize::MAX, "list client devices")?;
        Ok(page.items.into_iter().map(|(id, _)| id).collect())
    }

    /// Removes a device, its client index entry and its channel subscriptions. Returns whether
    /// it existed.
    pub(crate) fn push_delete_device(&self, app: &str, id: &str) -> Result<bool, StorageError> {
        let key = push_key(DEVICE, app, &[id])?;
        let Some((client, _)) = self.push_device_row(&key)? else { return Ok(false) };
        let mut batch = self.keyspace.batch();
        batch.remove(&self.push, key);
        if let Some(client) = client {
            batch.remove(&self.push, push_key(CLIENT, app, &[&client, id])?);
        }
        self.stage_unsubscribe(&mut batch, app, &SubscriptionsOf::Device(id.to_owned()))?;
        self.commit_push(batch, "commit device removal")?;
        Ok(true)
    }

    /// Subscribes a device to a channel (replacing the subscription's body if it was).
    pub(crate) fn push_subscribe(
        &self,
        app: &str,
        channel: &str,
        device: &str,
        body: Vec<u8>,
    ) -> Result<(), StorageError> {
        let mut batch = self.keyspace.batch();
        batch.insert(&self.push, push_key(SUBSCRIPTION, app, &[channel, device])?, body);
        batch.insert(&self.push, push_key(DEVICE_CHANNEL, app, &[device, channel])?, Vec::new());
        self.commit_push(batch, "commit subscription")
    }

    /// A channel's subscriptions by device id, or a device's by channel, after `after`.
    pub(crate) fn push_subscriptions(
        &self,
        app: &str,
        of: &SubscriptionsOf,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RegistryPage, StorageError> {
        match of {
            SubscriptionsOf::Channel(channel) => {
                self.push_page(push_key(SUBSCRIPTION, app, &[channel])?, after, limit, "list subscriptions")
            }
            SubscriptionsOf::Device(device) => {
                let channels =
                    self.push_page(push_key(DEVICE_CHANNEL, app, &[device])?, after, limit, "list subscriptions")?;
                let mut items = Vec::with_capacity(channels.items.len());
                for (channel, _) in channels.items {
                    let key = push_key(SUBSCRIPTION, app, &[&channel, device])?;
                    if let Some(body) = self.push.get(key).map_err(self.err("read subscription"))? {
                        items.push((channel, body.to_vec()));
                    }
                }
                Ok(RegistryPage { items, has_more: channels.has_more })
            }
        }
    }

    /// Removes a channel's or a device's subscriptions. Returns how many there were.
    pub(crate) fn push_unsubscribe(&self, app: &str, of: &SubscriptionsOf) -> Result<u64, StorageError> {
        let mut batch = self.keyspace.batch();
        let removed = self.stage_unsubscribe(&mut batch, app, of)?;
        if removed > 0 {
            self.commit_push(batch, "commit unsubscribe")?;
        }
        Ok(removed)
    }

    /// Removes one device's subscription to one channel. Returns how many there were (0 or 1).
    pub(crate) fn push_unsubscribe_one(&self, app: &str, channel: &str, device: &str) -> Result<u64, StorageError> {
        let key = push_key(SUBSCRIPTION, app, &[channel, device])?;
        if self.push.get(&key).map_err(self.err("read subscription"))?.is_none() {
            return Ok(0);
        }
        let mut batch = self.keyspace.batch();
        batch.remove(&self.push, key);
        batch.remove(&self.push, push_key(DEVICE_CHANNEL, app, &[device, channel])?);
        self.commit_push(batch, "commit unsubscribe")?;
        Ok(1)
    }

    /// The channels that have subscriptions, after `after`.
    pub(crate) fn push_channels(
        &self,
        app: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<String>, bool), StorageError> {
        let prefix = push_key(SUBSCRIPTION, app, &[])?;
        let mut channels: Vec<String> = Vec::new();
        let start = match after {
            // Past every subscription of `after`: its key prefix followed by 0xFF.
            Some(a) => {
                let mut k = push_key(SUBSCRIPTION, app, &[a])?;
                k.push(0xFF);
                k
            }
            None => prefix.clone(),
        };
        for row in self.push.range(start..).take_while(|r| r.as_ref().map_or(true, |(k, _)| k.starts_with(&prefix))) {
            let (k, _) = row.map_err(self.err("list channels"))?;
            let (channel, _) = push_components(&k[prefix.len()..]).ok_or_else(|| self.corrupt_push())?;
            if channels.last() != Some(&channel) {
                if channels.len() == limit {
                    return Ok((channels, true));
                }
                channels.push(channel);
            }
        }
        Ok((channels, false))
    }

    /// The apps that have a registry in this store.
    pub(crate) fn push_apps(&self) -> Result<Vec<String>, StorageError> {
        let mut apps = Vec::new();
        for row in self.push.prefix([APP]) {
            let (k, _) = row.map_err(self.err("list push apps"))?;
            let (app, _) = push_components(&k[1..]).ok_or_else(|| self.corrupt_push())?;
            apps.push(app);
        }
        Ok(apps)
    }

    /// Every row of an app's registry, to move it to another store.
    pub(crate) fn push_export(&self, app: &str) -> Result<RegistryRows, StorageError> {
        let mut rows = Vec::new();
        for kind in KINDS {
            for row in self.push.prefix(push_key(kind, app, &[])?) {
                let (k, v) = row.map_err(self.err("export push registry"))?;
                rows.push((k.to_vec(), v.to_vec()));
            }
        }
        Ok(rows)
    }

    /// Takes in rows another store's `push_export` gave.
    pub(crate) fn push_import(&self, rows: RegistryRows) -> Result<(), StorageError> {
        let mut batch = self.keyspace.batch();
        for (k, v) in rows {
            batch.insert(&self.push, k, v);
        }
        self.commit_push(batch, "import push registry")
    }

    /// Removes an app's whole registry (moved to another store).
    pub(crate) fn push_drop(&self, app: &str) -> Result<(), StorageError> {
        let mut batch = self.keyspace.batch();
        for kind in KINDS {
            for row in self.push.prefix(push_key(kind, app, &[])?) {
                let (k, _) = row.map_err(self.err("drop push registry"))?;
                batch.remove(&self.push, k);
            }
        }
        self.commit_push(batch, "drop push registry")
    }

    fn stage_unsubscribe(&self, batch: &mut Batch, app: &str, of: &SubscriptionsOf) -> Result<u64, StorageError> {
        let (prefix, pair) = match of {
            SubscriptionsOf::Channel(c) => (push_key(SUBSCRIPTION, app, &[c])?, DEVICE_CHANNEL),
            SubscriptionsOf::Device(d) => (push_key(DEVICE_CHANNEL, app, &[d])?, SUBSCRIPTION),
        };
        let mut removed = 0;
        for row in self.push.prefix(&prefix) {
            let (k, _) = row.map_err(self.err("scan subscriptions"))?;
            let (other, _) = push_components(&k[prefix.len()..]).ok_or_else(|| self.corrupt_push())?;
            let twin = match of {
                SubscriptionsOf::Channel(c) => push_key(pair, app, &[&other, c])?,
                SubscriptionsOf::Device(d) => push_key(pair, app, &[&other, d])?,
            };
            batch.remove(&self.push, k);
            batch.remove(&self.push, twin);
            removed += 1;
        }
        Ok(removed)
    }

    /// Rows under `prefix` whose next key component is after `after`, up to `limit`.
    fn push_page(
        &self,
        prefix: Vec<u8>,
        after: Option<&str>,
        limit: usize,
        what: &'static str,
    ) -> Result<RegistryPage, StorageError> {
        let start = match after {
            Some(a) => {
                let mut k = prefix.clone();
                push_component_into(&mut k, a)?;
                k.push(0);
                k
            }
            None => prefix.clone(),
        };
        let mut items = Vec::new();
        for row in self.push.range(start..) {
            let (k, v) = row.map_err(self.err(what))?;
            if !k.starts_with(&prefix) {
                break;
            }
            if items.len() == limit {
                return Ok(RegistryPage { items, has_more: true });
            }
            let (id, _) = push_components(&k[prefix.len()..]).ok_or_else(|| self.corrupt_push())?;
            items.push((id, v.to_vec()));
        }
        Ok(RegistryPage { items, has_more: false })
    }

    fn corrupt_push(&self) -> StorageError {
        StorageError::corrupt(&self.path, "undecodable push registry row")
    }

    fn commit_push(&self, batch: Batch, during: &'static str) -> Result<(), StorageError> {
        batch.commit().map_err(self.err(during))?;
        self.persist(PersistMode::SyncData)
    }
}
