//! Thread-per-core plumbing: one pinned glommio executor per core, a full mesh of SPSC rings
//! between them, and the stable hash that decides which shard owns a key.
//!
//! This crate knows nothing about WebSockets or Pusher. It owns three things:
//! - [`run`]: start N executors and hand each its [`Mesh`] endpoint;
//! - [`Mesh`]: the only way one shard reaches another (`mesh.send(to, msg)`), with a bounded
//!   backlog for new work (`try_send`);
//! - [`owner_of`] and [`stable_hash`]: the routing function, stable across runs and builds
//!   (history on disk is found through it, so it must never change silently).
//!
//! It must never hand out shared mutable state: a message is moved to the other core, never
//! borrowed across.

mod mesh;
mod routing;

pub use mesh::Mesh;
pub use routing::{owner_of, stable_hash, stable_hash_from};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};
use std::future::Future;
use std::io;

/// How the executors are started.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Number of shards (executors); at least 1.
    pub shards: usize,
    /// Pin each executor to its own CPU (off when there are more shards than CPUs).
    pub pin: bool,
    /// io_uring registered buffer memory per executor. glommio's default (10 MiB) exceeds a
    /// common 8 MiB memlock limit, after which it silently falls back; so it is set explicitly.
    pub io_memory: usize,
    /// io_uring submission ring depth: each idle socket keeps a poll armed, and a deeper ring
    /// made that measurably cheaper.
    pub ring_depth: usize,
    /// Capacity of each SPSC ring in messages.
    pub ring_capacity: usize,
    /// Messages one shard may have waiting for a peer beyond its ring before `try_send`
    /// refuses new work (see `Mesh`).
    pub backlog_limit: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            shards: available_cores(),
            pin: true,
            io_memory: 512 << 10,
            ring_depth: 2048,
            ring_capacity: 4096,
            backlog_limit: 65_536,
        }
    }
}

/// The number of CPUs this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The online CPUs this process may run on (its affinity mask), so that pinning honours
/// `taskset`, systemd's `CPUAffinity=` and a container's cpuset. `None` if it cannot be read:
/// glommio then picks among all online CPUs.
fn allowed_cpus() -> Option<CpuSet> {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut mask) } != 0 {
        return None;
    }
    let online = CpuSet::online().ok()?;
    // SAFETY: CPU_ISSET only reads the mask; cpu ids of online CPUs are below CPU_SETSIZE.
    Some(online.filter(|l| l.cpu < libc::CPU_SETSIZE as usize && unsafe { libc::CPU_ISSET(l.cpu, &mask) }))
}

/// Starts `cfg.shards` executors, joins them into one mesh and runs `shard_main` on each.
/// Returns when every shard's future has finished.
pub fn run<M, G, F>(cfg: &RuntimeConfig, shard_main: G) -> io::Result<()>
where
    M: Send + 'static,
    G: FnOnce(Mesh<M>) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let n = cfg.shards.max(1);
    let placement = if cfg.pin && n <= available_cores() {
        PoolPlacement::MaxSpread(n, allowed_cpus())
    } else {
        PoolPlacement::Unbound(n)
    };
    let builder = MeshBuilder::<M, _>::full(n, cfg.ring_capacity);
    let (ring_capacity, backlog_limit) = (cfg.ring_capacity, cfg.backlog_limit);
    let handles = LocalExecutorPoolBuilder::new(placement)
        .name("shard")
        .io_memory(cfg.io_memory)
        .ring_depth(cfg.ring_depth)
        .on_all_shards(move || async move {
            let mesh = Mesh::join(builder, ring_capacity, backlog_limit).await;
            shard_main(mesh).await;
        })
        .map_err(|e| io::Error::other(format!("cannot start shard executors: {e}")))?;
    for result in handles.join_all() {
        result.map_err(|e| io::Error::other(format!("a shard failed: {e}")))?;
    }
    Ok(())
}
