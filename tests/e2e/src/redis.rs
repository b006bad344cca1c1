//! Several nodes over Redis: a `redis-server` of the test's own ([`Redis`]) or a Redis Cluster
//! of three ([`RedisCluster`]), the nodes that share it ([`Cluster`]), and a [`Proxy`] that
//! cuts a node off as a network partition would.

use super::{env_shards, free_port, temp_dir, try_http, Server, START_DEADLINE, T};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `redis-server` of its own on a free loopback port, without persistence, killed on drop.
/// The Debian package must be installed (`.ci/run` installs it): a test that needs Redis
/// fails without it rather than being skipped.
pub struct Redis {
    child: Child,
    pub port: u16,
    /// Where its files live (the append-only file of a durable Redis, a cluster node's
    /// configuration).
    dir: Option<PathBuf>,
    durable: bool,
    /// For a node of a Redis Cluster: its cluster bus port.
    bus: Option<u16>,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::launch(None, false, None)
    }

    /// A Redis that fsyncs its append-only file before it answers a write, so a restart keeps
    /// everything it acknowledged.
    pub fn start_durable() -> Redis {
        Redis::launch(Some(temp_dir()), true, None)
    }

    fn launch(dir: Option<PathBuf>, durable: bool, bus: Option<u16>) -> Redis {
        let port = free_port();
        let child = Redis::spawn(port, dir.as_deref(), durable, bus);
        let redis = Redis { child, port, dir, durable, bus };
        redis.wait_ready();
        redis
    }

    fn spawn(port: u16, dir: Option<&Path>, durable: bool, bus: Option<u16>) -> Child {
        let mut args: Vec<String> =
            ["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""].iter().map(|s| s.to_string()).collect();
        if let Some(dir) = dir {
            args.extend(["--dir".into(), dir.to_string_lossy().into_owned()]);
        }
        match durable {
            true => args.extend(["--appendonly", "yes", "--appendfsync", "always"].map(String::from)),
            false => args.extend(["--appendonly", "no"].map(String::from)),
        }
        if let Some(bus) = bus {
            // The bus port is set apart, since port + 10000 (the default) may be taken or
            // out of range.
            let config = format!("nodes-{port}.conf");
            args.extend(["--cluster-enabled".into(), "yes".into(), "--cluster-config-file".into(), config]);
            args.extend(["--cluster-port".into(), bus.to_string()]);
            // A replica takes over within about a second of its master's failure, however
            // long it was cut off, and syncs without waiting for a disk snapshot.
            args.extend(["--cluster-node-timeout".into(), "1000".into()]);
            args.extend(["--cluster-replica-validity-factor".into(), "0".into()]);
            args.extend(["--repl-diskless-sync".into(), "yes".into(), "--repl-diskless-sync-delay".into(), "0".into()]);
        }
        Command::new("redis-server")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: install the Debian package redis-server")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + START_DEADLINE;
        while self.command(&["PING"]).is_none() {
            assert!(Instant::now() < deadline, "redis-server did not answer PING on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends one command (RESP) and returns the first line of the reply, `None` if Redis is
    /// not reachable.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(T)).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).ok()?;
        Some(line.trim_end().to_owned())
    }

    /// Kills Redis at once; `restart` brings it back on the same port, empty unless durable.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn restart(&mut self) {
        self.child = Redis::spawn(self.port, self.dir.as_deref(), self.durable, self.bus);
        self.wait_ready();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        if let Some(dir) = &self.dir {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// A Redis Cluster of three masters (no replicas) on free loopback ports, made with
/// `redis-cli --cluster create`, which gives each an equal range of the slots.
pub struct RedisCluster {
    pub masters: Vec<Redis>,
}

impl RedisCluster {
    pub fn start() -> RedisCluster {
        RedisCluster::create(0)
    }

    /// Three masters with a replica each. `masters` holds all six servers.
    pub fn start_replicated() -> RedisCluster {
        RedisCluster::create(1)
    }

    fn create(replicas: usize) -> RedisCluster {
        let masters: Vec<Redis> =
            (0..3 * (1 + replicas)).map(|_| Redis::launch(Some(temp_dir()), false, Some(free_port()))).collect();
        let addrs: Vec<String> = masters.iter().map(|m| format!("127.0.0.1:{}", m.port)).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli not found: install the Debian package redis-server");
        assert!(out.status.success(), "redis-cli --cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        let cluster = RedisCluster { masters };
        let deadline = Instant::now() + START_DEADLINE;
        // Up once every node sees every slot served and every replica has its master's data.
        let synced = |m: &Redis| role(m) != "slave" || cluster.replication(m).contains("master_link_status:up");
        while !cluster.masters.iter().all(|m| cluster.info(m).contains("cluster_state:ok") && synced(m)) {
            assert!(Instant::now() < deadline, "the Redis Cluster did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        cluster
    }

    fn info(&self, m: &Redis) -> String {
        cli(m, &["cluster", "info"])
    }

    fn replication(&self, m: &Redis) -> String {
        cli(m, &["info", "replication"])
    }

    /// `REDIS_CLUSTER_NODES` for it.
    pub fn nodes(&self) -> String {
        self.masters.iter().map(Redis::url).collect::<Vec<_>>().join(",")
    }

    /// The servers that are masters now.
    pub fn current_masters(&mut self) -> Vec<&mut Redis> {
        self.masters.iter_mut().filter(|m| role(m) == "master").collect()
    }

    /// How many keys each master holds.
    pub fn keys_per_master(&self) -> Vec<u64> {
        let count = |m: &Redis| m.command(&["DBSIZE"]).and_then(|l| l.trim_start_matches(':').parse().ok());
        self.masters.iter().map(|m| count(m).unwrap_or(0)).collect()
    }
}

/// A server's role (`master`, `slave`), `""` if it does not answer.
fn role(m: &Redis) -> String {
    cli(m, &["role"]).lines().next().unwrap_or_default().trim().to_owned()
}

/// `redis-cli`'s whole answer (`""` if the server does not answer).
fn cli(m: &Redis, args: &[&str]) -> String {
    let out = Command::new("redis-cli").args(["-p", &m.port.to_string()]).args(args).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

/// What the nodes of a [`Cluster`] share.
pub enum Backend {
    One(Redis),
    Sharded(RedisCluster),
}

/// `n` nodes of the real binary sharing one Redis (or one Redis Cluster) under a prefix of
/// their own. Each node is started like any test server, plus the adapter's environment
/// variables, and is ready once `/up` says it reaches Redis.
pub struct Cluster {
    pub nodes: Vec<Server>,
    pub backend: Backend,
    prefix: String,
    config: Option<String>,
}

impl Cluster {
    pub fn start(n: usize, config: Option<&str>) -> Cluster {
        Cluster::start_with(Backend::One(Redis::start()), n, config)
    }

    /// `n` nodes over a Redis Cluster of three.
    pub fn start_sharded(n: usize, config: Option<&str>) -> Cluster {
        Cluster::start_with(Backend::Sharded(RedisCluster::start()), n, config)
    }

    pub fn start_with(backend: Backend, n: usize, config: Option<&str>) -> Cluster {
        let prefix = format!("e2e-{}:", free_port());
        let mut cluster = Cluster { nodes: Vec::new(), backend, prefix, config: config.map(str::to_owned) };
        for _ in 0..n {
            let node = cluster.start_node();
            cluster.nodes.push(node);
        }
        cluster
    }

    /// The one Redis (a test of one Redis's faults).
    pub fn redis(&self) -> &Redis {
        match &self.backend {
            Backend::One(redis) => redis,
            Backend::Sharded(_) => panic!("this cluster runs over a Redis Cluster"),
        }
    }

    pub fn redis_mut(&mut self) -> &mut Redis {
        match &mut self.backend {
            Backend::One(redis) => redis,
            Backend::Sharded(_) => panic!("this cluster runs over a Redis Cluster"),
        }
    }

    /// Kills every Redis server the nodes share.
    pub fn kill_redis(&mut self) {
        self.servers().for_each(Redis::kill);
    }

    /// Brings every Redis server back, empty (a cluster node keeps only its slots).
    pub fn restart_redis(&mut self) {
        self.servers().for_each(Redis::restart);
    }

    fn servers(&mut self) -> impl Iterator<Item = &mut Redis> {
        match &mut self.backend {
            Backend::One(redis) => std::slice::from_mut(redis).iter_mut(),
            Backend::Sharded(sharded) => sharded.masters.iter_mut(),
        }
    }

    /// One more node of this cluster, ready once it reaches Redis.
    pub fn start_node(&self) -> Server {
        let node = self.launch(&[]);
        node.wait_backplane(true);
        node
    }

    /// Every key's prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// One more node with `extra` environment variables, not waited for: it may not join.
    pub fn start_node_unjoined(&self, extra: &[(&str, &str)]) -> Server {
        self.launch(extra)
    }

    /// One more node of this cluster that reaches its one Redis through `port` (a [`Proxy`]'s).
    pub fn start_node_via(&self, port: u16) -> Server {
        let url = format!("redis://127.0.0.1:{port}");
        let node = self.launch(&[("REDIS_URL", &url)]);
        node.wait_backplane(true);
        node
    }

    fn launch(&self, extra: &[(&str, &str)]) -> Server {
        let (driver, key, to) = match &self.backend {
            Backend::One(redis) => ("redis", "REDIS_URL", redis.url()),
            Backend::Sharded(sharded) => ("redis-cluster", "REDIS_CLUSTER_NODES", sharded.nodes()),
        };
        let mut env = vec![("ADAPTER_DRIVER", driver), (key, to.as_str()), ("ADAPTER_REDIS_PREFIX", &self.prefix)];
        // Later entries win.
        for (k, v) in extra {
            env.retain(|(name, _)| name != k);
            env.push((k, v));
        }
        Server::start_with(self.config.as_deref(), Some(env_shards()), &env, &[])
    }
}

/// A TCP proxy on a free loopback port to another port, which a test cuts as a network
/// partition would (open connections reset, new ones dropped) and heals.
pub struct Proxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, open) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (cut2, open2) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for down in listener.incoming().flatten() {
                if cut2.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(up) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let mut list = open2.lock().unwrap();
                list.push(down.try_clone().unwrap());
                list.push(up.try_clone().unwrap());
                for (mut from, mut to) in [(down.try_clone().unwrap(), up.try_clone().unwrap()), (up, down)] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, open }
    }

    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Server {
    /// Waits until `/up` reports the backplane `connected` (or not).
    pub fn wait_backplane(&self, connected: bool) {
        let want = if connected { "connected" } else { "disconnected" };
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let r = try_http(self.port, "GET", "/up", &[], None);
            if r.as_ref().is_ok_and(|r| r.header("x-backplane") == Some(want)) {
                return;
            }
            assert!(Instant::now() < deadline, "node on port {} never reported the backplane {want}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
