//! Per-shard store costs: group-committed appends at each fsync level, and one history page.
//! Run: cargo bench -p sockudo --bench storage -- --warm-up-time 1 --measurement-time 3

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_lite::future::block_on;
use storage::{Direction, Fsync, HistoryQuery, HistoryRecord, Store, StoreConfig};

const ROUND: u64 = 64;

struct BenchDir(PathBuf);

impl BenchDir {
    fn new(name: &str) -> BenchDir {
        let dir = std::env::temp_dir().join(format!("sockudo-bench-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        BenchDir(dir)
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn record(serial: u64) -> HistoryRecord {
    HistoryRecord {
        published_at_ms: 1_700_000_000_000 + serial,
        message_id: format!("{serial:036}"),
        event_name: "order.updated".into(),
        payload: vec![b'x'; 200],
    }
}

fn append_rounds(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage_append_64");
    group.throughput(Throughput::Elements(ROUND));
    for (name, fsync) in
        [("os", Fsync::Os), ("interval_10ms", Fsync::Interval(Duration::from_millis(10))), ("always", Fsync::Always)]
    {
        let dir = BenchDir::new(name);
        let cfg = StoreConfig { fsync, ..StoreConfig::default() };
        let store = Store::open(&dir.0, 0, &cfg).expect("open bench store");
        let next = Cell::new(1u64);
        group.bench_function(name, |b| {
            b.iter(|| {
                let first = next.get();
                next.set(first + ROUND);
                let tickets: Vec<_> =
                    (first..first + ROUND).map(|s| store.append("app", "bench", "s", s, record(s))).collect();
                for t in tickets {
                    block_on(t.durable).expect("append durable");
                }
            })
        });
        store.close().expect("close bench store");
    }
    group.finish();
}

fn history_page(c: &mut Criterion) {
    let dir = BenchDir::new("history");
    let store =
        Store::open(&dir.0, 0, &StoreConfig { fsync: Fsync::Os, ..StoreConfig::default() }).expect("open bench store");
    let tickets: Vec<_> = (1..=10_000).map(|s| store.append("app", "bench", "s", s, record(s))).collect();
    for t in tickets {
        block_on(t.written).expect("prefill");
    }
    let query = HistoryQuery {
        app: "app".into(),
        channel: "bench".into(),
        limit: 50,
        direction: Direction::NewestFirst,
        bounds: Default::default(),
        cursor: None,
    };
    c.bench_function("storage_history_newest_first_50_of_10000", |b| {
        b.iter_batched(
            || query.clone(),
            |q| {
                let page = block_on(store.read_history(q)).expect("read page");
                assert_eq!(page.items.len(), 50);
            },
            BatchSize::SmallInput,
        )
    });
    store.close().expect("close bench store");
}

criterion_group!(benches, append_rounds, history_page);
criterion_main!(benches);
