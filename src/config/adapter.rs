//! `[adapter]`: how nodes share fanout, serials and state (`README.md#run-several-nodes`).
//! The reference's keys and environment names (`[adapter.redis]` for one Redis,
//! `[adapter.cluster]` and `REDIS_CLUSTER_NODES` for a Redis Cluster), plus the ones its
//! multi-node compose file sets but never reads (`ADAPTER_REDIS_URL`, `ADAPTER_REDIS_PREFIX`,
//! `ADAPTER_REQUEST_TIMEOUT`), which users copy.

use super::value::{env, env_bool, num_or_str, positive, ConfigError};
use serde::Deserialize;
use std::time::Duration;

/// The backplane this node joins, if any.
#[derive(Clone, Debug, Default)]
pub enum Adapter {
    /// One node: the shard mesh alone.
    #[default]
    Local,
    Redis(RedisAdapter),
}

#[derive(Clone, Debug)]
pub struct RedisAdapter {
    pub target: RedisTarget,
    /// Prepended to every key, so that several clusters can share one Redis.
    pub prefix: String,
    /// How long a node waits for Redis (an append, a cross-node query) before it answers 503.
    pub request_timeout: Duration,
    /// Entries the cluster log keeps (`XADD MAXLEN ~`), over all its parts: how far behind a
    /// node may fall (a Redis outage, a partition) and still catch up without a gap.
    pub log_max_entries: u64,
    /// Node heartbeats (`[adapter.cluster_health]`).
    pub heartbeat_interval: Duration,
    pub node_timeout: Duration,
}

/// Where the Redis backplane lives.
#[derive(Clone, Debug, PartialEq)]
pub enum RedisTarget {
    /// One Redis: `redis://[user:password@]host:port[/db]`.
    One(String),
    /// A Redis Cluster, reached first through any of `nodes`; the log is split into `parts`
    /// streams spread over its slots (`backplane/redis/mod.rs`). Every node of this server's
    /// cluster must be started with the same number.
    Cluster { nodes: Vec<String>, parts: u16 },
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
pub(super) struct AdapterFile {
    driver: Option<String>,
    /// The reference's silent fall back to running alone; refused when true (see `load`).
    fallback_to_local: Option<bool>,
    redis: RedisFile,
    cluster: ClusterFile,
    cluster_health: ClusterHealthFile,
}

/// `[adapter.cluster]`, the reference's section for a Redis Cluster.
#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct ClusterFile {
    nodes: Option<Vec<String>>,
    prefix: Option<String>,
    #[serde(deserialize_with = "num_or_str")]
    request_timeout_ms: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    log_max_entries: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    log_partitions: Option<u64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct RedisFile {
    prefix: Option<String>,
    #[serde(deserialize_with = "num_or_str")]
    requests_timeout: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    log_max_entries: Option<u64>,
    redis_pub_options: RedisOptionsFile,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct RedisOptionsFile {
    url: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(default)]
struct ClusterHealthFile {
    enabled: Option<bool>,
    #[serde(deserialize_with = "num_or_str")]
    heartbeat_interval_ms: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    node_timeout_ms: Option<u64>,
    #[serde(deserialize_with = "num_or_str")]
    cleanup_interval_ms: Option<u64>,
}

fn env_str(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

pub(super) fn load(f: AdapterFile) -> Result<Adapter, ConfigError> {
    let driver = env_str("ADAPTER_DRIVER").or(f.driver).unwrap_or_else(|| "local".into());
    let cluster = match driver.as_str() {
        "local" => return Ok(Adapter::Local),
        "redis" => false,
        "redis-cluster" => true,
        "nats" | "rabbitmq" | "kafka" | "pulsar" | "google-pubsub" | "iggy" => {
            return Err(ConfigError::new(
                "adapter.driver",
                format!("\"{driver}\" is not supported; use \"local\" (one node), \"redis\" or \"redis-cluster\""),
            ))
        }
        _ => {
            return Err(ConfigError::new(
                "adapter.driver",
                format!("\"{driver}\" is not one of \"local\", \"redis\", \"redis-cluster\""),
            ))
        }
    };
    if f.fallback_to_local == Some(true) {
        return Err(ConfigError::new(
            "adapter.fallback_to_local",
            "a node never falls back to running alone: it serves its own sockets while Redis is \
             unreachable and rejoins when Redis answers; remove the setting",
        ));
    }
    let (r, c) = (f.redis, f.cluster);
    // The section of the driver in use names the keys in errors.
    let section = if cluster { "adapter.cluster" } else { "adapter.redis" };
    let target = if cluster { cluster_target(&c)? } else { one_target(r.redis_pub_options.url)? };
    let prefix = env_str("ADAPTER_REDIS_PREFIX")
        .or_else(|| env_str("ADAPTER_PREFIX"))
        .or(if cluster { c.prefix } else { r.prefix })
        .unwrap_or_else(|| "sockudo_adapter:".into());
    let (timeout_key, timeout) = match cluster {
        true => ("adapter.cluster.request_timeout_ms", c.request_timeout_ms),
        false => ("adapter.redis.requests_timeout", r.requests_timeout),
    };
    let timeout = positive(timeout_key, env::<u64>("ADAPTER_REQUEST_TIMEOUT")?.or(timeout))?;
    let log_max_entries = positive(
        &format!("{section}.log_max_entries"),
        env::<u64>("ADAPTER_REDIS_LOG_MAX_ENTRIES")?.or(if cluster { c.log_max_entries } else { r.log_max_entries }),
    )?;
    let h = f.cluster_health;
    if env_bool("ADAPTER_CLUSTER_HEALTH_ENABLED")?.or(h.enabled) == Some(false) {
        return Err(ConfigError::new(
            "adapter.cluster_health.enabled",
            "heartbeats are how a dead node's members are removed; they cannot be turned off",
        ));
    }
    let heartbeat = positive("adapter.cluster_health.heartbeat_interval_ms", h.heartbeat_interval_ms)?;
    let node_timeout = positive("adapter.cluster_health.node_timeout_ms", h.node_timeout_ms)?;
    positive("adapter.cluster_health.cleanup_interval_ms", h.cleanup_interval_ms)?;
    let heartbeat_interval = Duration::from_millis(heartbeat.unwrap_or(2000));
    let node_timeout = Duration::from_millis(node_timeout.unwrap_or(10_000));
    if node_timeout < heartbeat_interval * 2 {
        return Err(ConfigError::new(
            "adapter.cluster_health.node_timeout_ms",
            format!(
                "{} ms is less than twice heartbeat_interval_ms ({} ms): a live node would be taken for dead",
                node_timeout.as_millis(),
                heartbeat_interval.as_millis()
            ),
        ));
    }
    Ok(Adapter::Redis(RedisAdapter {
        target,
        prefix,
        request_timeout: Duration::from_millis(timeout.unwrap_or(5000)),
        log_max_entries: log_max_entries.unwrap_or(100_000),
        heartbeat_interval,
        node_timeout,
    }))
}

fn one_target(file_url: Option<String>) -> Result<RedisTarget, ConfigError> {
    let url = env_str("ADAPTER_REDIS_URL")
        .or_else(|| env_str("REDIS_URL"))
        .or(file_url)
        .unwrap_or_else(|| "redis://127.0.0.1:6379".into());
    check_url("adapter.redis.redis_pub_options.url", &url)?;
    Ok(RedisTarget::One(url))
}

/// Most parts the log may be split into (each is a stream and a reader thread on every node).
const MAX_PARTS: u64 = 256;

fn cluster_target(c: &ClusterFile) -> Result<RedisTarget, ConfigError> {
    let nodes: Vec<String> = match env_str("REDIS_CLUSTER_NODES") {
        Some(list) => list.split(',').map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect(),
        None => c.nodes.clone().unwrap_or_else(|| vec!["redis://127.0.0.1:7000".into()]),
    };
    if nodes.is_empty() {
        return Err(ConfigError::new("adapter.cluster.nodes", "names no node of the Redis Cluster"));
    }
    // The reference takes `host:port` as well as URLs.
    let nodes: Vec<String> =
        nodes.into_iter().map(|n| if n.contains("://") { n } else { format!("redis://{n}") }).collect();
    for n in &nodes {
        check_url("adapter.cluster.nodes", n)?;
    }
    let parts =
        positive("adapter.cluster.log_partitions", env::<u64>("ADAPTER_REDIS_LOG_PARTITIONS")?.or(c.log_partitions))?
            .unwrap_or(8);
    if parts > MAX_PARTS {
        return Err(ConfigError::new(
            "adapter.cluster.log_partitions",
            format!("{parts} is more than {MAX_PARTS}: each part is a reader thread on every node"),
        ));
    }
    Ok(RedisTarget::Cluster { nodes, parts: parts as u16 })
}

fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://") {
        return Ok(());
    }
    Err(ConfigError::new(key, format!("\"{url}\" is not a redis:// URL")))
}
