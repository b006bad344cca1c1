//! The parent re-runs this test binary as a child that appends until it is SIGKILLed, then
//! checks that every append the child saw `written` survived.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use common::{append_range, query, read, record, serials, TempDir};
use futures_executor::block_on;
use storage::{Direction, Fsync, Store, StoreConfig};

const CHILD_DIR: &str = "STORAGE_CRASH_CHILD_DIR";

fn cfg() -> StoreConfig {
    StoreConfig { fsync: Fsync::Os, ..StoreConfig::default() }
}

/// Child mode only; a no-op in a normal test run.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let store = Store::open(std::path::Path::new(&dir), 0, &cfg()).unwrap();
    let mut out = std::io::stdout().lock();
    let mut next = 1u64;
    loop {
        // Several appends in flight so kills land mid-batch too.
        let tickets: Vec<_> = (next..next + 8).map(|s| (s, store.append("app", "ch", "s", s, record(s, s)))).collect();
        for (serial, ticket) in tickets {
            block_on(ticket.written).unwrap();
            writeln!(out, "written {serial}").unwrap();
            out.flush().unwrap();
        }
        next += 8;
    }
}

#[test]
fn appends_reported_written_survive_sigkill() {
    let dir = TempDir::new("crash");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash_child", "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut reported = Vec::new();
    while reported.len() < 500 {
        let line = lines.next().expect("child stopped early").unwrap();
        if let Some(serial) = line.strip_prefix("written ") {
            reported.push(serial.parse::<u64>().unwrap());
        }
    }
    child.kill().unwrap(); // SIGKILL
    for line in lines {
        if let Some(serial) = line.unwrap().strip_prefix("written ") {
            reported.push(serial.parse().unwrap());
        }
    }
    child.wait().unwrap();
    let last_reported = *reported.iter().max().unwrap();

    let store = Store::open(dir.path(), 0, &cfg()).unwrap();
    let page = read(&store, query("app", "ch", Direction::OldestFirst, 100_000));
    let found = serials(&page);
    assert!(found.len() as u64 >= last_reported, "lost appends: {} found, {last_reported} reported", found.len());
    assert_eq!(found, (1..=found.len() as u64).collect::<Vec<_>>(), "serials have a gap");
    eprintln!("{} reported written, {} recovered", reported.len(), found.len());

    let next = found.len() as u64 + 1;
    append_range(&store, "app", "ch", "s", next, 3, |s| s);
    let newest = read(&store, query("app", "ch", Direction::NewestFirst, 1));
    assert_eq!(serials(&newest), vec![next + 2]);
}
