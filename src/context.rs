//! What every shard of the process shares: the configuration, the apps, every shard's store,
//! the metrics, the webhook sender and the node-wide admission counters. Read-only apart from
//! those counters (touched once per connect and disconnect, never on the fanout path) and the
//! stop flags. Built once by `node` before the shards start.

use crate::backplane::Backplane;
use crate::config::{Config, Registry};
use crate::metrics::Metrics;
use crate::webhook::Webhooks;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::Store;

pub struct Context {
    pub config: Config,
    pub apps: Arc<Registry>,
    /// Sockets open on the node, for `max_connections`.
    pub connections: AtomicUsize,
    /// Sockets open per app, for the app's `max_connections`.
    pub app_connections: Vec<AtomicU64>,
    /// Set once when the process is asked to stop.
    pub stopping: AtomicBool,
    /// A shard could not start (e.g. the port is taken): the process exits non-zero.
    pub failed: AtomicBool,
    /// Every shard's store (durable history), when history is enabled. A shard appends only to
    /// its own; history reads go straight to the owner's store thread from any shard.
    pub stores: Option<Stores>,
    /// Every shard's counters; each shard writes only its own (see `metrics`).
    pub metrics: Metrics,
    /// The webhook sender, when some app has webhooks.
    pub webhooks: Option<Webhooks>,
    /// The cluster log shared with other nodes (`[adapter]`); `None` for a single node.
    pub backplane: Option<Arc<dyn Backplane>>,
    /// How many shards reached each step of the ordered stop (see [`Context::rendezvous`]).
    stop_steps: [AtomicUsize; STOP_STEPS],
}

/// The stop steps all shards pass together (`node`).
pub const STOP_STEPS: usize = 3;

/// The stores of every shard, opened before the shards start, and the lock that keeps a second
/// server off the same data directory.
pub struct Stores {
    pub by_shard: Vec<Store>,
    _lock: File,
}

impl Stores {
    pub fn new(by_shard: Vec<Store>, lock: File) -> Stores {
        Stores { by_shard, _lock: lock }
    }
}

impl Context {
    pub fn new(
        config: Config,
        apps: Arc<Registry>,
        stores: Option<Stores>,
        webhooks: Option<Webhooks>,
        backplane: Option<Arc<dyn Backplane>>,
    ) -> Context {
        let metrics = Metrics::new(config.shards, apps.len(), config.metrics_port);
        Context {
            app_connections: (0..apps.len()).map(|_| AtomicU64::new(0)).collect(),
            metrics,
            webhooks,
            backplane,
            stores,
            config,
            apps,
            connections: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            stop_steps: Default::default(),
        }
    }

    /// Records a fatal start-up failure and stops every shard.
    pub fn fail(&self) {
        self.failed.store(true, Ordering::Relaxed);
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Waits until every shard has reached stop step `step`, at most `limit` (a shard that
    /// died must not hold the others forever). Shards pass each step together so that what one
    /// sends another while stopping (a socket's last unsubscribe, an append) is still handled.
    pub async fn rendezvous(&self, step: usize, limit: Duration) {
        self.stop_steps[step].fetch_add(1, Ordering::AcqRel);
        let until = Instant::now() + limit;
        while self.stop_steps[step].load(Ordering::Acquire) < self.config.shards && Instant::now() < until {
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
    }
}
