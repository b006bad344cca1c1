use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// When appends are forced to stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// fdatasync in the same round as the write.
    Always,
    /// fdatasync at most once per interval; `durable` completes at that sync.
    Interval(Duration),
    /// Never fsync; the OS writes back. `durable` completes with `written`.
    Os,
}

/// Per-channel retention: rows older than `max_age`, beyond the newest `max_messages`, or
/// beyond the newest `max_bytes` of payload are removed. `None` disables that bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_messages: Option<u64>,
    pub max_bytes: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { max_age: Some(Duration::from_secs(24 * 3600)), max_messages: Some(10_000), max_bytes: None }
    }
}

/// The retention of a channel where it is not `StoreConfig::retention`: asked with the app id
/// and channel name of each stream (an app's or a channel namespace's own settings).
#[derive(Clone)]
pub struct RetentionOverrides(pub Arc<RetentionLookup>);

/// `(app id, channel) -> its own retention, if it has one`.
pub type RetentionLookup = dyn Fn(&str, &str) -> Option<Retention> + Send + Sync;

impl fmt::Debug for RetentionOverrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RetentionOverrides")
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub fsync: Fsync,
    pub retention: Retention,
    pub overrides: Option<RetentionOverrides>,
    /// Retention of presence streams ([`crate::presence_stream`]), whatever the app.
    pub presence_retention: Retention,
    /// How often the store thread applies age retention and drops expired idempotency keys.
    pub cleanup_interval: Duration,
    /// fjall block cache per shard.
    pub cache_bytes: u64,
    /// fjall memtable budget per shard (fjall minimum 1 MiB); a memtable rotates at half of it.
    /// Under 32 MiB, sustained writes hit fjall's write-buffer halts (tens of ms per flush).
    pub write_buffer_bytes: u64,
    /// fjall journal budget per shard (fjall minimum 24 MiB). fjall counts every sealed journal
    /// at its preallocated 32 MiB (sparse on disk) and sleeps the writer 500 ms once the sum
    /// passes 90% of this, so it needs room for several journals.
    pub journal_bytes: u64,
    /// Most requests handled in one group-commit round.
    pub max_round: usize,
    /// Requests that may wait for the store thread before callers get `Overloaded`.
    pub queue_capacity: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            fsync: Fsync::Interval(Duration::from_millis(10)),
            retention: Retention::default(),
            overrides: None,
            presence_retention: Retention::default(),
            cleanup_interval: Duration::from_secs(5),
            cache_bytes: 16 << 20,
            write_buffer_bytes: 32 << 20,
            journal_bytes: 256 << 20,
            max_round: 1024,
            queue_capacity: 65_536,
        }
    }
}

impl StoreConfig {
    pub fn retention_for(&self, app: &str, channel: &str) -> Retention {
        if crate::presence_channel(channel).is_some() {
            return self.presence_retention;
        }
        self.overrides.as_ref().and_then(|o| (o.0)(app, channel)).unwrap_or(self.retention)
    }

    /// fjall asserts (panics) on these limits, so they are checked here and reported as errors.
    pub(crate) fn validate(&self) -> Result<(), crate::StorageError> {
        let bad = |why: &str| Err(crate::StorageError::InvalidInput(why.to_string()));
        if self.journal_bytes < 24 << 20 {
            return bad("journal_bytes must be at least 24 MiB");
        }
        if self.write_buffer_bytes < 1 << 20 {
            return bad("write_buffer_bytes must be at least 1 MiB");
        }
        if self.max_round == 0 || self.queue_capacity == 0 {
            return bad("max_round and queue_capacity must be positive");
        }
        if self.cleanup_interval.is_zero() || self.fsync == Fsync::Interval(Duration::ZERO) {
            return bad("cleanup_interval and the fsync interval must be positive");
        }
        Ok(())
    }
}
