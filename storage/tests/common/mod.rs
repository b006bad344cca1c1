#![allow(dead_code)] // each test binary uses a different part of these helpers

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use futures_executor::block_on;
use storage::{
    AppendTicket, Direction, HistoryPage, HistoryQuery, HistoryRecord, HistoryView, RecordKind, Retention, Store,
    StoreConfig,
};

pub mod messages;

/// A fresh directory removed on drop, so every test has its own data dir.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "storage-test-{name}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Count retention only (`None`: none at all): tests that publish at small fixed times would
/// lose their rows to age retention.
pub fn no_age_limit(max_messages: Option<u64>) -> StoreConfig {
    StoreConfig { retention: Retention { max_age: None, max_messages, max_bytes: None }, ..StoreConfig::default() }
}

/// A shard owner function for `open_all` that spreads single-letter channels over the shards.
pub fn owner(shards: usize) -> impl Fn(&str, &str) -> usize {
    move |app: &str, channel: &str| app.bytes().chain(channel.bytes()).map(usize::from).sum::<usize>() % shards
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

pub fn record(serial: u64, published_at_ms: u64) -> HistoryRecord {
    HistoryRecord {
        published_at_ms,
        message_id: format!("m-{serial}"),
        event_name: "ev".into(),
        payload: format!(r#"{{"event":"ev","data":"{serial}"}}"#).into_bytes(),
        kind: RecordKind::Plain,
        tags: None,
    }
}

/// Appends serials `from..from+n` and waits until all are written.
pub fn append_range(
    store: &Store,
    app: &str,
    channel: &str,
    stream_id: &str,
    from: u64,
    n: u64,
    at: impl Fn(u64) -> u64,
) {
    let tickets: Vec<AppendTicket> =
        (from..from + n).map(|s| store.append(app, channel, stream_id, s, record(s, at(s)))).collect();
    for t in tickets {
        block_on(t.written).expect("append written");
    }
}

pub fn query(app: &str, channel: &str, direction: Direction, limit: usize) -> HistoryQuery {
    HistoryQuery {
        app: app.into(),
        channel: channel.into(),
        limit,
        direction,
        bounds: Default::default(),
        cursor: None,
        view: HistoryView::default(),
    }
}

pub fn read(store: &Store, q: HistoryQuery) -> HistoryPage {
    block_on(store.read_history(q)).expect("read history")
}

pub fn serials(page: &HistoryPage) -> Vec<u64> {
    page.items.iter().map(|i| i.serial).collect()
}
