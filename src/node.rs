//! The process: what is opened before the shards start (stores, webhook sender, metrics
//! endpoint), one shard per core, and the ordered stop.
//!
//! Each shard runs two services on its core: the owner side (`shard::Shard`: channels, users,
//! keys it owns) and the socket side (`ws::Hub`: the sockets it accepted). The mesh handler
//! here is where what crosses cores lands: deliveries and user actions go to the sockets,
//! requests and answers to the owner side.
//!
//! Stop, in order, on every shard: stop accepting; close every socket with 4200 within the
//! grace period; drain the commit pipeline; sync the store. Shards pass each step together, so
//! that what one sends another while stopping (a socket's last unsubscribe, a final append) is
//! still handled. Then the webhook sender delivers what is queued.

use crate::backplane::redis::RedisLog;
use crate::backplane::Backplane;
use crate::config::{Adapter, Config};
use crate::context::{Context, Stores};
use crate::metrics::PanicSite;
use crate::shard::route::{channel_owner_by_id, Msg};
use crate::shard::Shard;
use crate::webhook::Webhooks;
use crate::ws::hub::Hub;
use std::fs::File;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Runs the server until SIGTERM/SIGINT; returns the process's exit code.
pub fn run(config: Config) -> Result<i32, String> {
    let apps = crate::config::Registry::new(config.apps.clone());
    let stores = open_stores(&config)?;
    let webhooks = Webhooks::start(&config.webhooks, apps.clone())?;
    let runtime = shards::RuntimeConfig {
        shards: config.shards,
        backlog_limit: config.mesh.backlog_limit,
        ..shards::RuntimeConfig::default()
    };
    let backplane = start_backplane(&config)?;
    let ctx = Arc::new(Context::new(config, apps, stores, webhooks, backplane));
    if ctx.config.metrics_enabled {
        let c = ctx.clone();
        crate::metrics::serve(&ctx.config.metrics_host, ctx.config.metrics_port, move || {
            crate::metrics::render(&crate::metrics::Sources {
                metrics: &c.metrics,
                app_ids: (0..c.apps.len()).map(|i| c.apps.get(i as u32).id.as_str()).collect(),
                webhooks: c.webhooks.as_ref().map(|w| w.stats.snapshot()),
                stores: c.stores.iter().flat_map(|s| s.by_shard.iter().map(|st| st.stats())).collect(),
                backplane: c.backplane.as_ref().map(|b| b.figures()),
            })
        })?;
    }
    watch_signals(ctx.clone());
    let shard_ctx = ctx.clone();
    if let Err(e) = shards::run(&runtime, move |mesh| shard_main(shard_ctx, mesh)) {
        return Err(e.to_string());
    }
    // Webhook events already queued go out, waiting a few seconds at most.
    if let Some(webhooks) = &ctx.webhooks {
        webhooks.stop(ctx.config.shutdown_grace.min(Duration::from_secs(5)));
    }
    Ok(if ctx.failed.load(Ordering::Relaxed) { 1 } else { 0 })
}

/// Opens `<data_dir>/shard-0..N` (moving streams whose owner changed: another shard count, or
/// the first start after owners were keyed by app id). `None` when history is disabled.
fn open_stores(config: &Config) -> Result<Option<Stores>, String> {
    let h = &config.history;
    if !h.enabled {
        return Ok(None);
    }
    let dir = &h.data_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
    let lock = lock_dir(dir)?;
    let shards = config.shards;
    // A presence stream lives with its channel.
    let owner = |app_id: &str, stored_as: &str| {
        channel_owner_by_id(app_id, storage::presence_channel(stored_as).unwrap_or(stored_as), shards)
    };
    let by_shard = storage::open_all(dir, shards, owner, &h.store).map_err(|e| e.to_string())?;
    Ok(Some(Stores::new(by_shard, lock)))
}

/// Joins the cluster log when `[adapter]` names one. Redis need not answer yet: the node
/// serves its own sockets and joins as soon as it does.
fn start_backplane(config: &Config) -> Result<Option<Arc<dyn Backplane>>, String> {
    match &config.adapter {
        Adapter::Local => Ok(None),
        Adapter::Redis(redis) => {
            let shards = config.shards;
            let owner = move |app_id: &str, channel: &str| {
                let channel = crate::protocol::channel::meta_of(channel).unwrap_or(channel);
                channel_owner_by_id(app_id, channel, shards)
            };
            Ok(Some(RedisLog::start(redis, shards, owner)?))
        }
    }
}

/// Two servers writing one store would corrupt it; the second one is refused at start.
fn lock_dir(dir: &std::path::Path) -> Result<File, String> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let file = File::create(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own; the lock lives as long as the file.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!("data dir {} is in use by another sockudo process", dir.display()));
    }
    Ok(file)
}

/// One shard, from start to stop.
async fn shard_main(ctx: Arc<Context>, mesh: shards::Mesh<Msg>) {
    let shard = Shard::new(ctx.clone(), mesh);
    if let Err(e) = shard.load_streams().await {
        log::error!("shard {}: cannot load channel streams from its store: {e}", shard.id);
        ctx.fail();
    }
    // Fail closed: a shard that cannot know what is revoked does not serve.
    if let Err(e) = shard.load_revocations().await {
        log::error!("shard {}: cannot load token revocations from the store: {e}", shard.id);
        ctx.fail();
    }
    let hub = Hub::new(shard.clone());
    let (s, h) = (shard.clone(), hub.clone());
    shard.mesh.serve(Rc::new(move |m| dispatch(&s, &h, m)));
    shard.start();
    hub.start();
    let cfg = &ctx.config;
    match crate::http::server::bind(&cfg.host, cfg.port) {
        Ok(listener) => {
            if shard.id == 0 {
                log::info!("listening on {}:{} with {} shard(s)", cfg.host, cfg.port, shard.shards);
            }
            crate::http::server::accept_until_stopped(hub.clone(), listener).await;
        }
        Err(e) => {
            log::error!("shard {}: cannot listen on {}:{}: {e}", shard.id, cfg.host, cfg.port);
            ctx.fail();
        }
    }
    let grace = cfg.shutdown_grace;
    hub.close_all(grace).await;
    ctx.rendezvous(0, grace).await;
    shard.drain(grace).await;
    ctx.rendezvous(1, grace).await;
    shard.sync_store().await;
    ctx.rendezvous(2, grace).await;
    log::info!("shard {} stopped", shard.id);
}

/// Where a message from the mesh goes. A panic while handling one is caught here: the message
/// is lost (a request answers `Failed`), the shard goes on.
fn dispatch(shard: &Rc<Shard>, hub: &Rc<Hub>, m: Msg) {
    let handled = std::panic::catch_unwind(AssertUnwindSafe(|| match m {
        Msg::Deliver(d) => hub.deliver(d),
        Msg::ToUsers(u) => hub.to_users(u),
        other => shard.handle(other),
    }));
    if let Err(p) = handled {
        shard.report_panic(None, PanicSite::Request, "a message from the mesh", &*p);
    }
}

/// SIGTERM or SIGINT starts the graceful stop; a second one exits at once.
fn watch_signals(ctx: Arc<Context>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT]).expect("installing signal handlers");
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if ctx.stopping.swap(true, Ordering::Relaxed) {
                    log::warn!("second signal {sig}: exiting now");
                    std::process::exit(1);
                }
                log::info!("signal {sig}: stopping gracefully");
                if let Some(backplane) = &ctx.backplane {
                    backplane.depart();
                }
            }
        })
        .expect("starting the signal thread");
}
