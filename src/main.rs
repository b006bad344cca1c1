//! `sockudo`: a thread-per-core, io_uring, Pusher-compatible realtime event server.
//!
//! Start-up: resolve the configuration, install the logger and the signal handler, then run
//! one shard per core until SIGTERM/SIGINT, when every shard stops gracefully.

use mimalloc::MiMalloc;
use sockudo::config::{Config, Flags};
use sockudo::shard::{self, Context};
use std::sync::atomic::Ordering;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    sockudo::logging::init();
    let flags = match Flags::parse(std::env::args().skip(1)) {
        Ok(f) => f,
        Err(e) if e.key == "--help" => {
            println!("{}", e.problem);
            return;
        }
        Err(e) => exit_with(&e),
    };
    let config = match Config::load(flags) {
        Ok(c) => c,
        Err(e) => exit_with(&e),
    };
    sockudo::logging::set_format(config.log_format);
    let runtime = shards::RuntimeConfig { shards: config.shards, ..shards::RuntimeConfig::default() };
    let ctx = match Context::new(config) {
        Ok(c) => c,
        Err(e) => exit_with(&e),
    };
    if ctx.config.metrics_enabled {
        if let Err(e) = sockudo::metrics::serve(ctx.clone()) {
            exit_with(&e);
        }
    }
    watch_signals(ctx.clone());
    let shard_ctx = ctx.clone();
    if let Err(e) = shards::run(&runtime, move |mesh| shard::run(shard_ctx, mesh)) {
        eprintln!("sockudo: {e}");
        std::process::exit(1);
    }
    // Every shard has stopped: whatever the fsync policy, what was written reaches the disk
    // before the process exits.
    for store in ctx.stores.iter().flat_map(|s| s.by_shard.iter()) {
        if let Err(e) = futures_lite::future::block_on(store.sync()) {
            log::error!("final sync of {} failed: {e}", store.path().display());
        }
    }
    // Webhook events already queued go out, waiting a few seconds at most.
    if let Some(webhooks) = &ctx.webhooks {
        webhooks.stop(ctx.config.shutdown_grace.min(std::time::Duration::from_secs(5)));
    }
    if ctx.failed.load(Ordering::Relaxed) {
        std::process::exit(1);
    }
}

fn exit_with(e: &dyn std::fmt::Display) -> ! {
    eprintln!("sockudo: {e}");
    std::process::exit(2);
}

/// SIGTERM or SIGINT starts the graceful stop; a second one exits at once.
fn watch_signals(ctx: std::sync::Arc<Context>) {
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
            }
        })
        .expect("starting the signal thread");
}
