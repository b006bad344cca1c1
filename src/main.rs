//! `sockudo`: a thread-per-core, io_uring, Pusher-compatible realtime event server.
//!
//! Resolves the configuration, installs the logger, and runs the node (`node.rs`) until
//! SIGTERM/SIGINT.

use mimalloc::MiMalloc;
use sockudo::config::{Config, Flags};

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
    match sockudo::node::run(config) {
        Ok(code) => std::process::exit(code),
        Err(e) => exit_with(&e),
    }
}

fn exit_with(e: &dyn std::fmt::Display) -> ! {
    eprintln!("sockudo: {e}");
    std::process::exit(2);
}
