//! The scenarios, and what they share: building the target, spawning worker threads (one mio
//! loop each) and the coordinator's once-a-second sampling / progress line.

pub mod appends;
pub mod churn;
pub mod connect;
pub mod fanout;
pub mod presence;
pub mod recovery;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::thread::JoinHandle;

use hdrhistogram::Histogram;
use mio::{Poll, Registry};

use crate::cli::{Args, Common};
use crate::clock::{now_ns, SEC};
use crate::engine::{self, Cause, Driver, Engine, Target};
use crate::procstat::{self, ProcSample};
use crate::report::Report;
use crate::stats::{inc, phase, Counters, Shared, Totals};

/// A scenario's outcome: the report; `report.failures` decides the exit status.
pub type Outcome = Result<Report, String>;

pub fn target(c: &Common) -> Result<Target, String> {
    let resolve = |port| crate::net::resolve(&c.host, port).map_err(|e| format!("cannot resolve {}: {e}", c.host));
    Ok(Target {
        addr: resolve(c.port)?,
        socket_addrs: c.socket_ports.iter().map(|&p| resolve(p)).collect::<Result<_, _>>()?,
        host_header: format!("{}:{}", c.host, c.port),
        path: {
            let mut path = format!("/app/{}?{}", c.key, c.proto.query());
            if let Some(t) = &c.token {
                path.push_str(&format!("&token={t}"));
            }
            if let Some(f) = c.format {
                path.push_str(&format!("&format={f}"));
            }
            path
        },
        proto: c.proto,
        source_ips: c.source_ips,
        connect_timeout_ns: (c.connect_timeout_s * SEC as f64) as u64,
        close_timeout_ns: 3 * SEC,
    })
}

/// The start of every scenario's `run`: parses its options with `parse` (then rejects any
/// option it did not read), resolves the target and starts the coordinator's clock. Returns
/// the options (shared with the workers), the target, the counters (with `channel_counters`
/// per-channel ones; 0 where unused) and the monitor.
pub fn setup<O>(
    args: &Args,
    common: &Common,
    parse: impl FnOnce(&Args) -> Result<O, String>,
    channel_counters: impl FnOnce(&O) -> usize,
) -> Result<(Arc<O>, Target, Arc<Shared>, Monitor), String> {
    let opts = Arc::new(parse(args)?);
    args.finish()?;
    let target = target(common)?;
    let shared = Arc::new(Shared::new(common.threads, channel_counters(&opts)));
    Ok((opts, target, shared, Monitor::new(common)))
}

/// Ends a run: takes the last sample, closes the per-second series, tells the workers to stop
/// and joins them. Returns that last sample and what each worker handed back.
pub fn stop<T>(monitor: &mut Monitor, shared: &Shared, handles: Vec<JoinHandle<T>>) -> (Sample, Vec<T>) {
    let last = monitor.sample(shared);
    monitor.close(shared);
    shared.set_phase(phase::DONE, now_ns());
    (last, join_all(handles))
}

/// The report's description of where the load went.
pub fn target_name(c: &Common) -> String {
    let sockets = match &c.socket_ports[..] {
        [p] if *p == c.port => String::new(),
        ports => format!(", sockets on ports {ports:?}"),
    };
    format!("{}:{}{sockets} (protocol {:?}, app {}, {} thread(s))", c.host, c.port, c.proto, c.app_id, c.threads)
}

/// What a worker hands back when its loop ends.
pub trait Finish {
    type Output: Send + 'static;
    fn finish(self) -> Self::Output;
}

/// Starts `threads` workers; worker `t` runs the driver `make(t, registry)` on its own poll.
pub fn spawn_workers<D, F>(threads: usize, target: &Target, make: F) -> Vec<JoinHandle<D::Output>>
where
    D: Driver + Finish,
    F: Fn(usize, &Registry) -> D + Send + Sync + 'static,
{
    let make = Arc::new(make);
    (0..threads)
        .map(|t| {
            let make = make.clone();
            let target = target.clone();
            std::thread::Builder::new()
                .name(format!("lt-worker-{t}"))
                .spawn(move || {
                    let poll = Poll::new().expect("epoll");
                    let registry = poll.registry().try_clone().expect("epoll dup");
                    let mut driver = make(t, &registry);
                    let mut engine = Engine::new(registry, target);
                    engine::run(poll, &mut engine, &mut driver);
                    driver.finish()
                })
                .expect("spawn worker")
        })
        .collect()
}

pub fn join_all<T>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    handles.into_iter().map(|h| h.join().expect("worker panicked")).collect()
}

/// One per-second observation.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    pub phase: u32,
    pub totals: Totals,
    pub server: Option<ProcSample>,
    pub me: ProcSample,
}

/// The coordinator's clock and samples.
pub struct Monitor {
    pub start_ns: u64,
    server_pid: Option<u32>,
    quiet: bool,
    next_ns: u64,
    pub samples: Vec<Sample>,
    pub server_gone: bool,
}

impl Monitor {
    pub fn new(c: &Common) -> Monitor {
        let start_ns = now_ns();
        Monitor {
            start_ns,
            server_pid: c.server_pid,
            quiet: c.quiet,
            next_ns: start_ns + SEC,
            samples: Vec::new(),
            server_gone: false,
        }
    }

    /// A sample right now (not stored in the per-second series).
    pub fn sample(&mut self, shared: &Shared) -> Sample {
        let server = self.server_pid.and_then(procstat::sample);
        if self.server_pid.is_some() && server.is_none() {
            self.server_gone = true;
        }
        Sample {
            t: (now_ns() - self.start_ns) as f64 / SEC as f64,
            phase: shared.phase(),
            totals: shared.totals(),
            server,
            me: procstat::sample_self(),
        }
    }

    /// Call often: once a second it stores a sample and prints `progress(prev, cur)` on stderr.
    pub fn tick(&mut self, shared: &Shared, progress: impl Fn(&Sample, &Sample) -> String) {
        let now = now_ns();
        if now < self.next_ns {
            return;
        }
        self.next_ns += SEC;
        if self.next_ns <= now {
            self.next_ns = now + SEC;
        }
        let s = self.sample(shared);
        if self.samples.is_empty() {
            self.samples.push(Sample { t: 0.0, phase: s.phase, totals: Totals::default(), server: s.server, me: s.me });
        }
        let prev = *self.samples.last().expect("non-empty");
        if !self.quiet {
            let mut line = format!("[{:6.1}s] {}", s.t, progress(&prev, &s));
            if let (Some(a), Some(b)) = (prev.server, s.server) {
                let dt = (s.t - prev.t).max(1e-3);
                line += &format!(
                    " | server cpu {:.0}% rss {:.1} MiB",
                    (b.cpu_us.saturating_sub(a.cpu_us)) as f64 / 1e4 / dt,
                    b.rss_kb as f64 / 1024.0
                );
            }
            let _ = writeln!(std::io::stderr(), "{line}");
        }
        self.samples.push(s);
    }

    /// Stores a last (possibly partial-second) sample so the series cover the whole run.
    pub fn close(&mut self, shared: &Shared) {
        let s = self.sample(shared);
        match self.samples.last() {
            Some(last) if s.t - last.t >= 0.2 => self.samples.push(s),
            None => self.samples.push(s),
            _ => {}
        }
    }

    pub fn elapsed_s(&self) -> f64 {
        (now_ns() - self.start_ns) as f64 / SEC as f64
    }
}

/// Per-second rate of a counter between two samples.
pub fn rate(prev: &Sample, cur: &Sample, f: impl Fn(&Totals) -> u64) -> f64 {
    let dt = (cur.t - prev.t).max(1e-3);
    f(&cur.totals).saturating_sub(f(&prev.totals)) as f64 / dt
}

/// Per-second series of a counter, for the report's charts.
pub fn series(samples: &[Sample], f: impl Fn(&Totals) -> u64) -> Vec<(f64, f64)> {
    samples.windows(2).map(|w| (w[1].t, rate(&w[0], &w[1], &f))).collect()
}

/// Points of a chart: (seconds since start, value).
pub type Points = Vec<(f64, f64)>;

/// Server CPU % and RSS (MiB) per second.
pub fn server_series(samples: &[Sample]) -> (Points, Points) {
    let mut cpu = Vec::new();
    let mut rss = Vec::new();
    for w in samples.windows(2) {
        if let (Some(a), Some(b)) = (w[0].server, w[1].server) {
            let dt = (w[1].t - w[0].t).max(1e-3);
            cpu.push((w[1].t, b.cpu_us.saturating_sub(a.cpu_us) as f64 / 1e4 / dt));
            rss.push((w[1].t, b.rss_kb as f64 / 1024.0));
        }
    }
    (cpu, rss)
}

/// Adds the server CPU% / RSS charts to a report.
pub fn add_server_charts(report: &mut Report, samples: &[Sample]) {
    let (cpu, rss) = server_series(samples);
    if !cpu.is_empty() {
        report.chart("Server CPU", "% of one core", vec![("server CPU %".into(), cpu)]);
        report.chart("Server RSS", "MiB", vec![("server RSS MiB".into(), rss)]);
    }
}

/// A latency histogram in nanoseconds, 1 µs .. 100 s at 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 100 * SEC, 3).expect("valid bounds")
}

/// Records `ns`, clamped into the histogram's range.
#[inline]
pub fn record(h: &mut Histogram<u64>, ns: u64) {
    let _ = h.record(ns.clamp(1_000, 100 * SEC));
}

pub fn merge(hists: impl IntoIterator<Item = Histogram<u64>>) -> Histogram<u64> {
    let mut all = new_histogram();
    for h in hists {
        let _ = all.add(h);
    }
    all
}

/// What a worker that times connections collects: the latencies it measured and why its
/// connections ended.
#[derive(Clone)]
pub struct Tally {
    pub hist: Histogram<u64>,
    pub causes: Causes,
}

impl Default for Tally {
    fn default() -> Tally {
        Tally { hist: new_histogram(), causes: Causes::default() }
    }
}

impl Tally {
    /// All workers' tallies in one.
    pub fn merge(all: impl IntoIterator<Item = Tally>) -> Tally {
        let (hists, causes): (Vec<_>, Vec<_>) = all.into_iter().map(|t| (t.hist, t.causes)).unzip();
        Tally { hist: merge(hists), causes: Causes::merge(causes) }
    }
}

/// How many connections ended for each reason.
#[derive(Default, Clone)]
pub struct Causes(pub BTreeMap<String, u64>);

impl Causes {
    pub fn add(&mut self, c: Cause) {
        let key = match c {
            Cause::ConnectError(errno) => format!("connect error ({})", std::io::Error::from_raw_os_error(errno)),
            Cause::Upgrade(s) => format!("upgrade refused (HTTP {s})"),
            other => format!("{other:?}"),
        };
        *self.0.entry(key).or_default() += 1;
    }
    pub fn merge(all: impl IntoIterator<Item = Causes>) -> Causes {
        let mut out = Causes::default();
        for c in all {
            for (k, v) in c.0 {
                *out.0.entry(k).or_default() += v;
            }
        }
        out
    }
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            "none".into()
        } else {
            self.0.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ")
        }
    }
}

/// Where a socket that connects once and subscribes is (fanout, appends).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sock {
    New,
    Connecting,
    Open,
    Subscribed,
    Gone,
}

/// One worker's share of the sockets of a run in which each socket connects once and
/// subscribes (fanout, appends): global socket `t + l × threads` is local socket `l` and is
/// tagged with its global index. Opens them during SETUP, at most `concurrency` connects
/// pending, and keeps their state and counters as the engine reports on them.
pub struct Sockets {
    t: usize,
    threads: usize,
    concurrency: usize,
    pub shared: Arc<Shared>,
    /// By local index.
    pub state: Vec<Sock>,
    next_open: usize,
}

impl Sockets {
    /// Worker `t`'s share of `total` sockets.
    pub fn new(t: usize, threads: usize, concurrency: usize, shared: Arc<Shared>, total: usize) -> Sockets {
        let n_local = (total + threads - 1 - t) / threads;
        Sockets { t, threads, concurrency, shared, state: vec![Sock::New; n_local], next_open: 0 }
    }

    /// This worker's counters.
    pub fn counters(&self) -> &Counters {
        &self.shared.workers[self.t]
    }

    /// The local index of the socket tagged `tag`.
    pub fn local(&self, tag: u32) -> usize {
        tag as usize / self.threads
    }

    /// Opens the next sockets while fewer than `concurrency` connects are pending.
    pub fn open_more(&mut self, io: &mut Engine) {
        while self.next_open < self.state.len() && io.pending() < self.concurrency {
            let l = self.next_open;
            self.next_open += 1;
            self.state[l] = Sock::Connecting;
            inc(&self.counters().connect_started);
            io.open((self.t + l * self.threads) as u32);
        }
    }

    /// `connection_established`: the socket is open (and subscribes next).
    pub fn established(&mut self, tag: u32) {
        let l = self.local(tag);
        self.state[l] = Sock::Open;
        inc(&self.counters().connected);
    }

    /// `subscription_succeeded`: true if it subscribed the socket (counted), false if it came
    /// for a socket that is not waiting for it.
    pub fn subscribed(&mut self, tag: u32) -> bool {
        let l = self.local(tag);
        if self.state[l] != Sock::Open {
            return false;
        }
        self.state[l] = Sock::Subscribed;
        inc(&self.counters().subscribed);
        true
    }

    /// An error or `subscription_error`: counted; a socket waiting to subscribe has failed.
    pub fn error(&mut self, tag: u32) {
        inc(&self.counters().server_errors);
        let l = self.local(tag);
        if self.state[l] == Sock::Open {
            self.state[l] = Sock::Gone;
            inc(&self.counters().subscribe_failed);
        }
    }

    /// The connection ended (`causes` counts why): a failed connect, or a socket lost.
    pub fn closed(&mut self, tag: u32, cause: Cause, causes: &mut Causes) {
        let l = self.local(tag);
        let was = std::mem::replace(&mut self.state[l], Sock::Gone);
        causes.add(cause);
        match was {
            Sock::Connecting => inc(&self.counters().connect_failed),
            Sock::Open | Sock::Subscribed => inc(&self.counters().closed_unexpectedly),
            _ => {}
        }
    }
}

/// Server CPU µs between two samples (None without --server-pid).
pub fn server_cpu_us(a: &Sample, b: &Sample) -> Option<u64> {
    Some(b.server?.cpu_us.saturating_sub(a.server?.cpu_us))
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn secs(s: f64) -> u64 {
    (s * SEC as f64) as u64
}

/// The coordinator's part of a publishing run (fanout, recovery-storm): [`settle`], then — if
/// any socket subscribed — [`run_and_drain`]. Returns (setup seconds, the sample at the end of
/// setup, drain seconds; None if aborted).
pub fn publish_run(
    monitor: &mut Monitor,
    shared: &Shared,
    (sockets, setup_timeout_s, duration_s, drain_s): (usize, f64, f64, f64),
    progress: impl Fn(&Sample, &Sample) -> String,
    complete: impl Fn(&Totals) -> bool,
) -> (f64, Sample, Option<f64>) {
    let setup_s = settle(monitor, shared, (sockets, setup_timeout_s), &progress);
    let s1 = monitor.sample(shared);
    if s1.totals.subscribed == 0 {
        return (setup_s, s1, None);
    }
    let drained = run_and_drain(monitor, shared, (duration_s, drain_s), &progress, complete);
    (setup_s, s1, Some(drained))
}

/// The SETUP phase of a run whose sockets subscribe: waits until every one of `sockets`
/// subscribed or failed, or `setup_timeout_s`. Returns the seconds since the run started.
pub fn settle<P: Fn(&Sample, &Sample) -> String>(
    monitor: &mut Monitor,
    shared: &Shared,
    (sockets, setup_timeout_s): (usize, f64),
    progress: &P,
) -> f64 {
    let setup_deadline = now_ns() + secs(setup_timeout_s);
    loop {
        nap();
        monitor.tick(shared, progress);
        let t = shared.totals();
        let settled = t.subscribed + t.subscribe_failed + t.connect_failed + t.closed_unexpectedly;
        if settled >= sockets as u64 || now_ns() > setup_deadline {
            break;
        }
    }
    monitor.elapsed_s()
}

/// The RUN phase for `duration_s`, then the DRAIN phase until `complete(totals)` or `drain_s`.
/// Returns the drain seconds.
pub fn run_and_drain<P: Fn(&Sample, &Sample) -> String>(
    monitor: &mut Monitor,
    shared: &Shared,
    (duration_s, drain_s): (f64, f64),
    progress: &P,
    complete: impl Fn(&Totals) -> bool,
) -> f64 {
    shared.set_phase(phase::RUN, now_ns());
    while (now_ns() - shared.phase_started()) < secs(duration_s) {
        nap();
        monitor.tick(shared, progress);
    }
    let drain_started = now_ns();
    shared.set_phase(phase::DRAIN, drain_started);
    loop {
        nap();
        monitor.tick(shared, progress);
        if complete(&shared.totals()) || now_ns() - drain_started > secs(drain_s) {
            break;
        }
    }
    (now_ns() - drain_started) as f64 / SEC as f64
}

/// `setup`, `run`, `drain` or `done`.
pub fn phase_name(phase: u32) -> &'static str {
    ["setup", "run", "drain", "done"][phase.min(3) as usize]
}

/// The progress line of a run that publishes to subscribed sockets (fanout, appends), in its
/// words for the sockets, the requests and the deliveries.
pub fn publish_progress(p: &Sample, s: &Sample, sockets: usize, (socks, sent, got): (&str, &str, &str)) -> String {
    let t = &s.totals;
    format!(
        "{:5} {socks} {}/{} subscribed {} | {sent} sent {} acc {} rej {} ({:.0}/s) | {got} {} ({:.0}/s)",
        phase_name(s.phase),
        t.connected,
        sockets,
        t.subscribed,
        t.publish_requests,
        t.events_accepted,
        t.events_rejected + t.events_unanswered,
        rate(p, s, |t| t.events_accepted),
        t.delivered,
        rate(p, s, |t| t.delivered),
    )
}

/// The per-second accepted and rejected (or unanswered) requests' events, for a chart.
pub fn acceptance_series(samples: &[Sample]) -> Vec<(String, Points)> {
    vec![
        ("accepted/s".into(), series(samples, |t| t.events_accepted)),
        ("rejected/s".into(), series(samples, |t| t.events_rejected + t.events_unanswered)),
    ]
}

/// The "sockets" line of a run whose sockets subscribe: `{requested} requested, C connected,
/// F connect failures, S subscribed {to} (E subscribe failures) in T s`.
pub fn sockets_summary(t: &Totals, requested: &str, to: &str, setup_s: f64) -> String {
    format!(
        "{requested} requested, {} connected, {} connect failures, {} subscribed {to} ({} subscribe failures) in {setup_s:.2} s",
        t.connected, t.connect_failed, t.subscribed, t.subscribe_failed
    )
}

/// The metrics every run whose sockets subscribe reports about them.
pub fn socket_metrics(report: &mut Report, t: &Totals, setup_s: f64) {
    report.metric("connected", t.connected);
    report.metric("connect_failed", t.connect_failed);
    report.metric("subscribed", t.subscribed);
    report.metric("subscribe_failed", t.subscribe_failed);
    report.metric("closed_unexpectedly", t.closed_unexpectedly);
    report.metric("setup_s", setup_s);
}

/// The verdicts every publishing run shares: sockets that failed to connect, subscribe or stay
/// open, nothing published or accepted. `(request, done)` name what is sent, e.g.
/// `("publish", "published")`.
pub fn fail_sockets_and_publishing(
    report: &mut Report,
    t: &Totals,
    sockets: usize,
    aborted: bool,
    (request, done): (&str, &str),
) {
    if aborted {
        report.fail(format!("no socket subscribed: nothing was {done}"));
    }
    if t.connect_failed > 0 {
        report.fail(format!("{} sockets failed to connect (or reconnect)", t.connect_failed));
    }
    if t.subscribed < sockets as u64 {
        report.fail(format!("{} of {} sockets did not subscribe", sockets as u64 - t.subscribed, sockets));
    }
    if t.closed_unexpectedly > 0 {
        report.fail(format!("{} sockets closed during the run", t.closed_unexpectedly));
    }
    if !aborted && t.events_accepted == 0 {
        report.fail(format!("no {request} was accepted"));
    }
}

/// The last verdict of every run (the server process went away), and the outcome.
pub fn conclude(mut report: Report, monitor: &Monitor) -> Outcome {
    if monitor.server_gone {
        report.fail("the server process went away");
    }
    Ok(report)
}

/// CPU time (µs, and the kernel's part of it) and RSS (KiB, at either end) of a process between
/// two samples.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    pub cpu_us: u64,
    pub sys_us: u64,
    pub rss_start_kb: u64,
    pub rss_end_kb: u64,
}

impl Usage {
    pub fn between(a: &ProcSample, b: &ProcSample) -> Usage {
        let cpu_us = b.cpu_us.saturating_sub(a.cpu_us);
        let sys_us = b.sys_us.saturating_sub(a.sys_us).min(cpu_us);
        Usage { cpu_us, sys_us, rss_start_kb: a.rss_kb, rss_end_kb: b.rss_kb }
    }

    /// The server's (None without --server-pid).
    pub fn server(a: &Sample, b: &Sample) -> Option<Usage> {
        Some(Usage::between(&a.server?, &b.server?))
    }

    /// The harness's own.
    pub fn own(a: &Sample, b: &Sample) -> Usage {
        Usage::between(&a.me, &b.me)
    }

    /// `X µs per {what} (user Y, kernel Z)` over `n` of them, `digits` decimals; None if `n` is 0.
    pub fn per(&self, n: u64, what: &str, digits: usize) -> Option<String> {
        let n = (n > 0).then_some(n as f64)?;
        let (cpu, sys) = (self.cpu_us as f64, self.sys_us as f64);
        Some(format!(
            "{:.digits$} µs per {what} (user {:.digits$}, kernel {:.digits$})",
            cpu / n,
            (cpu - sys) / n,
            sys / n
        ))
    }
}

/// The report's "server" line over run+drain (`run_s` seconds):
/// `CPU X s during run+drain (Y% of a core{note}){detail}; RSS A → B MiB`.
pub fn server_line(report: &mut Report, u: &Usage, run_s: f64, note: &str, detail: &str) {
    report.line(
        "server",
        format!(
            "CPU {:.3} s during run+drain ({:.0}% of a core{note}){detail}; RSS {:.1} → {:.1} MiB",
            u.cpu_us as f64 / 1e6,
            u.cpu_us as f64 / 1e4 / run_s,
            u.rss_start_kb as f64 / 1024.0,
            u.rss_end_kb as f64 / 1024.0
        ),
    );
}

/// The report's "loadtest" line over run+drain: `CPU X s during run+drain, {per} (N worker thread(s))`.
pub fn loadtest_line(report: &mut Report, u: &Usage, per: &str, threads: usize) {
    report.line(
        "loadtest",
        format!("CPU {:.3} s during run+drain, {per} ({threads} worker thread(s))", u.cpu_us as f64 / 1e6),
    );
}

/// `expected E, received R (P%), missing M`, the counts with thousands separators.
pub fn deliveries(expected: u64, received: u64, missing: u64) -> String {
    let pct = if expected > 0 { received as f64 * 100.0 / expected as f64 } else { 0.0 };
    format!(
        "expected {}, received {} ({pct:.3}%), missing {}",
        thousands(expected),
        thousands(received),
        thousands(missing)
    )
}

/// `200: 5, 503: 1`, or `none`.
pub fn describe_statuses(statuses: &[(u16, u64)]) -> String {
    if statuses.is_empty() {
        return "none".into();
    }
    statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect::<Vec<_>>().join(", ")
}

/// Sleep between coordinator checks.
pub fn nap() {
    std::thread::sleep(std::time::Duration::from_millis(10));
}
