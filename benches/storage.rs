//! Per-shard store costs: group-committed appends at each fsync level (rounds of 64 awaited
//! together, and a sustained stream with 1024 appends in flight, as a busy shard produces),
//! and one history page (criterion's estimate, plus p50/p99 of 20,000 reads printed first).
//! Run: cargo bench -p sockudo --bench storage -- --warm-up-time 1 --measurement-time 3

use std::cell::Cell;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, BatchSize, Criterion, Throughput};
use futures_lite::future::block_on;
use storage::{Direction, Fsync, HistoryQuery, HistoryRecord, HistoryView, RecordKind, Store, StoreConfig};

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
        kind: RecordKind::Plain,
        tags: None,
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

/// Appends/s one shard's store sustains: a window of appends in flight, each awaited durable
/// in order (what the commit pipeline does), so group commit batches whatever is queued.
fn append_sustained(c: &mut Criterion) {
    const WINDOW: usize = 1024;
    let mut group = c.benchmark_group("storage_append_sustained_window_1024");
    group.throughput(Throughput::Elements(1));
    for (name, fsync) in
        [("os", Fsync::Os), ("interval_10ms", Fsync::Interval(Duration::from_millis(10))), ("always", Fsync::Always)]
    {
        let dir = BenchDir::new(&format!("sustained-{name}"));
        let cfg = StoreConfig { fsync, ..StoreConfig::default() };
        let store = Store::open(&dir.0, 0, &cfg).expect("open bench store");
        let next = Cell::new(1u64);
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = std::time::Instant::now();
                let mut in_flight = std::collections::VecDeque::with_capacity(WINDOW);
                for _ in 0..iters {
                    let s = next.get();
                    next.set(s + 1);
                    in_flight.push_back(store.append("app", "bench", "s", s, record(s)).durable);
                    if in_flight.len() == WINDOW {
                        block_on(in_flight.pop_front().expect("window")).expect("append durable");
                    }
                }
                for d in in_flight {
                    block_on(d).expect("append durable");
                }
                start.elapsed()
            })
        });
        store.close().expect("close bench store");
    }
    group.finish();
}

fn page_query() -> HistoryQuery {
    HistoryQuery {
        app: "app".into(),
        channel: "bench".into(),
        limit: 50,
        direction: Direction::NewestFirst,
        bounds: Default::default(),
        cursor: None,
        view: HistoryView::Latest,
    }
}

fn filled_history(name: &str) -> (BenchDir, Store) {
    let dir = BenchDir::new(name);
    let store =
        Store::open(&dir.0, 0, &StoreConfig { fsync: Fsync::Os, ..StoreConfig::default() }).expect("open bench store");
    let tickets: Vec<_> = (1..=10_000).map(|s| store.append("app", "bench", "s", s, record(s))).collect();
    for t in tickets {
        block_on(t.written).expect("prefill");
    }
    (dir, store)
}

/// p50/p99 of a 50-message page, which criterion's mean does not give.
fn history_page_percentiles() {
    let (_dir, store) = filled_history("history-pct");
    let mut samples: Vec<Duration> = (0..20_000)
        .map(|_| {
            let start = std::time::Instant::now();
            let page = block_on(store.read_history(page_query())).expect("read page");
            assert_eq!(page.items.len(), 50);
            start.elapsed()
        })
        .collect();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "storage_history_newest_first_50_of_10000: {} reads, p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        samples.len(),
        pct(0.50).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        samples[samples.len() - 1].as_secs_f64() * 1e6
    );
    store.close().expect("close bench store");
}

fn history_page(c: &mut Criterion) {
    let (_dir, store) = filled_history("history");
    let query = page_query();
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

criterion_group!(benches, append_rounds, append_sustained, history_page);

fn main() {
    history_page_percentiles();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
