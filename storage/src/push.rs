//! The push registry as the store keeps it (`docs/push.md`): device registrations and
//! channel subscriptions of an app, each as the JSON the server built, all in the store of one
//! shard so that a change and its indexes commit in one batch and every list is one range
//! scan. The store knows only ids and the client a device belongs to (for its index); the
//! bodies are the server's.

/// The name an app's registry is placed by, as a channel is: the registry lives in the store
/// of the shard that would own a channel of this name (no channel can have it: channel names
/// hold no spaces), and moves with the shard count as streams do.
pub const PUSH_REGISTRY: &str = "push registry";

/// One page of a registry list: `(id, body)` rows in id order, and whether more follow (the
/// last id is then the cursor of the next page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryPage {
    pub items: Vec<(String, Vec<u8>)>,
    pub has_more: bool,
}

/// Whose channel subscriptions a request concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionsOf {
    /// The devices subscribed to a channel (rows by device id).
    Channel(String),
    /// The channels a device is subscribed to (rows by channel).
    Device(String),
}

/// What a device upsert replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The device's previous body, `None` for a new device.
    pub previous: Option<Vec<u8>>,
}

/// Raw rows of a registry being moved between stores (`migrate.rs`).
pub(crate) type RegistryRows = Vec<(Vec<u8>, Vec<u8>)>;
