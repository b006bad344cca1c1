//! `loadtest`: a load-test harness for Pusher-compatible realtime servers.
//! See `cli::USAGE`; the scenarios live in `scenarios/`, the event loop in `engine`.

mod cli;
mod clock;
mod engine;
mod http;
mod net;
mod procstat;
mod pusher;
mod report;
mod scenarios;
mod signing;
mod stats;
mod ws;

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match cli::Args::parse(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("loadtest: {e}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    if args.scenario == "help" || args.switch("help") {
        print!("{}", cli::USAGE);
        return ExitCode::SUCCESS;
    }
    let common = match cli::Common::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::from(2);
        }
    };
    let nofile = net::raise_nofile_limit();
    if !common.quiet {
        eprintln!("loadtest: {} against {}:{} (open files limit {nofile})", args.scenario, common.host, common.port);
    }
    let outcome = match args.scenario.as_str() {
        "fanout" => scenarios::fanout::run(&args, &common),
        "connect" => scenarios::connect::run(&args, &common),
        "churn" => scenarios::churn::run(&args, &common),
        "presence" => scenarios::presence::run(&args, &common),
        "recovery-storm" => scenarios::recovery::run(&args, &common),
        "appends" => scenarios::appends::run(&args, &common),
        other => Err(format!("unknown scenario {other:?}\n\n{}", cli::USAGE)),
    };
    let report = match outcome {
        Ok(r) => r,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report::text::render(&report));
    if let Some(path) = &common.json {
        let json = serde_json::to_string_pretty(&report::json::render(&report)).expect("json");
        if let Err(e) = std::fs::write(path, json + "\n") {
            eprintln!("loadtest: cannot write {path}: {e}");
            return ExitCode::from(2);
        }
    }
    if let Some(path) = &common.html {
        if let Err(e) = std::fs::write(path, report::html::render(&report)) {
            eprintln!("loadtest: cannot write {path}: {e}");
            return ExitCode::from(2);
        }
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
