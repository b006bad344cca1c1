//! `fanout`: N sockets spread round-robin over C channels; a publisher (on worker 0) sends
//! signed HTTP publishes at R events/s for D s with the send time embedded in the data; every
//! receipt is timed by a byte scan for the marker. Deliveries expected = Σ accepted events ×
//! subscribers of their channel; the run waits up to --drain s for stragglers.

use std::sync::Arc;

use mio::event::Event;
use mio::Registry;

use super::*;
use crate::cli::Args;
use crate::engine::{ConnId, FOREIGN_TOKEN_BASE};
use crate::http::{Outcome as HttpOutcome, PublishConfig, Publisher};
use crate::pusher::{self, Kind, Protocol};
use crate::signing::{self, Signer};
use crate::stats::{add, inc, phase, set};

/// The options of a publishing run (fanout, recovery-storm): sockets over channels, the
/// publisher's rate and window, and the drain.
#[derive(Clone, Debug)]
pub struct PublishOpts<X> {
    pub sockets: usize,
    pub channels: usize,
    pub rate: f64,
    pub duration_s: f64,
    pub payload: usize,
    pub drain_s: f64,
    pub publish_conns: usize,
    pub pipeline: usize,
    pub setup_timeout_s: f64,
    /// The scenario's own options.
    pub x: X,
}

impl<X> PublishOpts<X> {
    /// `sockets` and the `--smoke` duration are the scenario's defaults; `extra` parses (and
    /// checks) the scenario's own options.
    pub(super) fn parse_with(
        a: &Args,
        (sockets, smoke_duration_s): (usize, f64),
        extra: impl FnOnce(&Args) -> Result<X, String>,
    ) -> Result<Self, String> {
        let o = PublishOpts {
            sockets: a.num("sockets", sockets, 50)?,
            channels: a.num("channels", 10, 5)?,
            rate: a.num("rate", 100.0, 20.0)?,
            duration_s: a.num("duration", 10.0, smoke_duration_s)?,
            payload: a.num("payload", 200, 200)?,
            drain_s: a.num("drain", 5.0, 3.0)?,
            publish_conns: a.num("publish-conns", 4, 2)?,
            pipeline: a.num("pipeline", 32, 32)?,
            setup_timeout_s: a.num("setup-timeout", 120.0, 30.0)?,
            x: extra(a)?,
        };
        if o.channels == 0 || o.sockets == 0 {
            return Err("--sockets and --channels must be at least 1".into());
        }
        if o.payload < pusher::TS_LEN {
            return Err(format!("--payload: at least {} bytes (the timestamp marker)", pusher::TS_LEN));
        }
        if o.rate <= 0.0 || o.duration_s <= 0.0 {
            return Err("--rate and --duration must be positive".into());
        }
        Ok(o)
    }
}

#[derive(Clone, Debug)]
pub struct Extra {
    pub batch: usize,
    /// Private channels (subscribe with an auth signature).
    pub private: bool,
    /// V2 only: socket i subscribes with tag filter i mod F (F distinct filters), each of which
    /// every event passes (all carry the tag `k=all`), so deliveries equal an unfiltered run's.
    pub filters: usize,
    /// V2 only: subscribe with deltas in this algorithm (`sockudo:delta` frames are counted as
    /// deliveries; only full frames carry a timestamp to time).
    pub delta: Option<String>,
}

pub type Opts = PublishOpts<Extra>;

impl Opts {
    pub fn parse(a: &Args) -> Result<Opts, String> {
        PublishOpts::parse_with(a, (100, 3.0), |a| {
            let x = Extra {
                batch: a.num("batch", 1, 1)?,
                private: a.switch("private"),
                filters: a.num("filters", 0, 0)?,
                delta: a.opt_num::<String>("delta")?,
            };
            if !(1..=10).contains(&x.batch) {
                return Err("--batch: 1..=10".into());
            }
            Ok(x)
        })
    }

    fn total_events(&self) -> u64 {
        (self.rate * self.duration_s).round() as u64
    }
}

/// The paced HTTP publisher (shared with `recovery-storm`): `total` events at `rate`/s over
/// `duration_s` from the start of the RUN phase, round-robin over the channels, `batch` events a
/// request; accepted events are counted per channel in `Shared::accepted_per_channel`.
pub(super) struct Pub {
    publisher: Publisher,
    shared: Arc<Shared>,
    /// The worker whose counters it writes.
    t: usize,
    channels: Arc<Vec<String>>,
    /// Events handed to the publisher so far.
    sent: u64,
    total: u64,
    next_channel: u32,
    rate: f64,
    duration_s: f64,
    batch: usize,
}

/// The publisher's configuration from the common options.
pub(super) fn publish_config(
    c: &Common,
    addr: std::net::SocketAddrV4,
    connections: usize,
    pipeline: usize,
    payload: usize,
    batch: usize,
    tags: Option<String>,
) -> PublishConfig {
    PublishConfig {
        addr,
        host_header: format!("{}:{}", c.host, c.port),
        app_id: c.app_id.clone(),
        key: c.key.clone(),
        signer: Signer::new(&c.secret),
        connections,
        pipeline,
        payload,
        tags,
        batch,
        source_ips: c.source_ips,
    }
}

impl Pub {
    pub(super) fn new(
        registry: &Registry,
        cfg: PublishConfig,
        (rate, duration_s): (f64, f64),
        (shared, t): (Arc<Shared>, usize),
        channels: Arc<Vec<String>>,
    ) -> Pub {
        let batch = cfg.batch;
        Pub {
            publisher: Publisher::new(registry, cfg, FOREIGN_TOKEN_BASE),
            shared,
            t,
            channels,
            sent: 0,
            total: (rate * duration_s).round() as u64,
            next_channel: 0,
            rate,
            duration_s,
            batch,
        }
    }

    /// Reconnects the publisher's connections when due.
    pub(super) fn tick(&mut self, registry: &Registry, now: u64) {
        self.publisher.tick(registry, now);
    }

    /// Sends what is due by `now` (RUN phase); returns when to be called next.
    pub(super) fn publish(&mut self, now: u64) -> u64 {
        let (shared, channels) = (&*self.shared, &*self.channels);
        let c = &shared.workers[self.t];
        let start = shared.phase_started();
        let elapsed = now.saturating_sub(start);
        if elapsed >= (self.duration_s * SEC as f64) as u64 {
            self.total = self.sent; // the window is over: what was not sent is not sent
            return now + 20 * crate::clock::MS;
        }
        let (rate, batch) = (self.rate, self.batch as u64);
        let due = ((elapsed as f64 / SEC as f64 * rate) as u64 + 1).min(self.total);
        while self.sent < due {
            let items = batch.min(self.total - self.sent);
            // Wait until a full batch is due, except for the tail.
            if items > 1 && self.sent + items > due && self.sent + items < self.total {
                break;
            }
            if !self.publisher.publish(channels, self.next_channel, items as u32) {
                // Every connection's pipeline is full: a response (which wakes the loop) has
                // to come first, so do not spin on the overdue deadline.
                set(&c.publish_inflight, self.publisher.inflight() as u64);
                return now + 20 * crate::clock::MS;
            }
            self.next_channel = (self.next_channel + items as u32) % channels.len() as u32;
            self.sent += items;
            inc(&c.publish_requests);
        }
        set(&c.publish_inflight, self.publisher.inflight() as u64);
        // Next wake-up: when the next full batch (or single event) is due.
        let next_due = (self.sent + batch).min(self.total.max(self.sent + 1));
        start + ((next_due - 1) as f64 / rate * SEC as f64) as u64
    }

    /// Readiness of one of the publisher's connections: counts the answers.
    pub(super) fn on_event(&mut self, registry: &Registry, ev: &Event) {
        let shared = &*self.shared;
        let c = &shared.workers[self.t];
        let n_ch = shared.accepted_per_channel.len() as u32;
        self.publisher.on_event(registry, ev, &mut |req, outcome| match outcome {
            HttpOutcome::Status(200) => {
                for k in 0..req.items {
                    let a = &shared.accepted_per_channel[((req.first_channel + k) % n_ch) as usize];
                    a.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                crate::stats::add(&c.events_accepted, req.items as u64);
            }
            HttpOutcome::Status(_) => crate::stats::add(&c.events_rejected, req.items as u64),
            HttpOutcome::Unanswered => crate::stats::add(&c.events_unanswered, req.items as u64),
        });
        set(&c.publish_inflight, self.publisher.inflight() as u64);
    }

    /// HTTP statuses seen and connection re-opens.
    pub(super) fn finish(&self) -> (Vec<(u16, u64)>, u64) {
        let stats = self.publisher.stats();
        (stats.statuses.clone(), stats.reconnects)
    }
}

struct Worker {
    socks: Sockets,
    channels: Arc<Vec<String>>,
    tally: Tally,
    buf: Vec<u8>,
    /// (signer, key) for private channels.
    signer: Option<(Signer, String)>,
    /// Distinct subscription filters (`Extra::filters`).
    filters: usize,
    /// `Extra::delta`.
    delta: Option<String>,
    publisher: Option<Pub>,
}

pub struct WorkerResult {
    tally: Tally,
    statuses: Vec<(u16, u64)>,
    reconnects: u64,
}

impl Driver for Worker {
    fn tick(&mut self, io: &mut Engine, now: u64) -> Option<u64> {
        let ph = self.socks.shared.phase();
        if ph == phase::DONE {
            return None;
        }
        if let Some(p) = self.publisher.as_mut() {
            p.tick(io.registry(), now);
        }
        let mut next = now + 20 * crate::clock::MS;
        if ph == phase::SETUP {
            self.socks.open_more(io);
        } else if ph == phase::RUN {
            if let Some(p) = self.publisher.as_mut() {
                next = next.min(p.publish(now));
            }
        }
        Some(next)
    }

    fn on_established(&mut self, io: &mut Engine, id: ConnId, tag: u32) {
        self.socks.established(tag);
        let ch = &self.channels[tag as usize % self.channels.len()];
        let auth = self.signer.as_ref().map(|(s, key)| signing::private_auth(s, key, io.socket_id(id), ch));
        self.buf.clear();
        match (self.filters, &self.delta) {
            (0, None) => pusher::subscribe(&mut self.buf, io.proto(), ch, auth.as_deref(), None),
            (0, Some(algorithm)) => {
                let delta = format!(r#"{{"enabled":true,"algorithm":"{algorithm}"}}"#);
                pusher::subscribe_with(&mut self.buf, ch, "delta", &delta);
            }
            (f, _) => {
                let filter = format!(r#"{{"key":"k","cmp":"in","vals":["f{}","all"]}}"#, tag as usize % f);
                pusher::subscribe_with(&mut self.buf, ch, "filter", &filter);
            }
        }
        io.send_text(id, &self.buf);
    }

    fn on_event(&mut self, _io: &mut Engine, _id: ConnId, tag: u32, kind: Kind, text: &[u8]) {
        match kind {
            Kind::Channel => {
                if let Some(sent) = pusher::scan_timestamp(text) {
                    record(&mut self.tally.hist, crate::clock::now_ns().saturating_sub(sent));
                    inc(&self.socks.counters().delivered);
                    add(&self.socks.counters().channel_bytes, text.len() as u64);
                }
            }
            Kind::Delta => {
                inc(&self.socks.counters().delivered);
                add(&self.socks.counters().channel_bytes, text.len() as u64);
            }
            Kind::SubscriptionSucceeded => {
                let first = self.socks.subscribed(tag);
                if first {
                    self.socks.shared.subs_per_channel[tag as usize % self.channels.len()]
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Kind::Error | Kind::SubscriptionError => self.socks.error(tag),
            _ => {}
        }
    }

    fn on_closed(&mut self, _io: &mut Engine, tag: u32, cause: Cause) {
        self.socks.closed(tag, cause, &mut self.tally.causes);
    }

    fn on_foreign(&mut self, io: &mut Engine, ev: &Event) {
        if let Some(p) = self.publisher.as_mut() {
            p.on_event(io.registry(), ev);
        }
    }
}

impl Finish for Worker {
    type Output = WorkerResult;
    fn finish(self) -> WorkerResult {
        let (statuses, reconnects) = self.publisher.as_ref().map_or_else(Default::default, Pub::finish);
        WorkerResult { tally: self.tally, statuses, reconnects }
    }
}

pub fn run(args: &Args, common: &Common) -> Outcome {
    let (opts, target, shared, mut monitor) = setup(args, common, Opts::parse, |o| o.channels)?;
    if (opts.x.filters > 0 || opts.x.delta.is_some()) && common.proto != Protocol::V2 {
        return Err("--filters and --delta need --protocol 2".into());
    }
    let channels: Arc<Vec<String>> = Arc::new(
        (0..opts.channels).map(|c| format!("{}lt-fanout-{c}", if opts.x.private { "private-" } else { "" })).collect(),
    );
    let threads = common.threads;
    let concurrency = (common.concurrency / threads).max(1);
    let s0 = monitor.sample(&shared);

    let pub_cfg = {
        let (c, o, addr) = (common.clone(), opts.clone(), target.addr);
        let tags = (o.x.filters > 0).then(|| r#"{"k":"all"}"#.to_owned());
        move || publish_config(&c, addr, o.publish_conns, o.pipeline, o.payload, o.x.batch, tags.clone())
    };
    let handles = {
        let (opts, channels, shared) = (opts.clone(), channels.clone(), shared.clone());
        let (secret, key) = (common.secret.clone(), common.key.clone());
        spawn_workers(threads, &target, move |t, registry: &Registry| Worker {
            socks: Sockets::new(t, threads, concurrency, shared.clone(), opts.sockets),
            channels: channels.clone(),
            tally: Tally::default(),
            buf: Vec::with_capacity(256),
            signer: opts.x.private.then(|| (Signer::new(&secret), key.clone())),
            filters: opts.x.filters,
            delta: opts.x.delta.clone(),
            publisher: (t == 0).then(|| {
                let pacing = (opts.rate, opts.duration_s);
                Pub::new(registry, pub_cfg(), pacing, (shared.clone(), t), channels.clone())
            }),
        })
    };

    let progress = |p: &Sample, s: &Sample| publish_progress(p, s, opts.sockets, ("sockets", "events", "delivered"));

    // Setup: connect + subscribe everything.
    let plan = (opts.sockets, opts.setup_timeout_s, opts.duration_s, opts.drain_s);
    let complete = |t: &Totals| t.delivered >= shared.expected_deliveries() && t.publish_inflight == 0;
    let (setup_s, s1, drained) = publish_run(&mut monitor, &shared, plan, progress, complete);
    let aborted = drained.is_none();
    let (s2, results) = stop(&mut monitor, &shared, handles);
    let expected = shared.expected_deliveries();

    // ---- report ----
    let t = s2.totals;
    let Tally { hist, causes } = Tally::merge(results.iter().map(|r| r.tally.clone()));
    let statuses: Vec<(u16, u64)> = results.iter().flat_map(|r| r.statuses.clone()).collect();
    let mut report = Report::new("fanout", target_name(common), args.given());
    let run_s = (s2.t - s1.t).max(1e-9);
    let requested = opts.total_events();
    let to = format!("on {} channels", opts.channels);
    report.line("sockets", sockets_summary(&t, &opts.sockets.to_string(), &to, setup_s));
    report.line(
        "publishing",
        format!(
            "requested {} events/s for {} s = {} events ({} B data{}); sent {} in {} requests; accepted {} ({:.1}/s over {} s), rejected {}, unanswered {}",
            opts.rate,
            opts.duration_s,
            requested,
            opts.payload,
            if opts.x.batch > 1 { format!(", batches of {}", opts.x.batch) } else { String::new() },
            t.events_accepted + t.events_rejected + t.events_unanswered + t.publish_inflight * opts.x.batch as u64,
            t.publish_requests,
            t.events_accepted,
            t.events_accepted as f64 / opts.duration_s,
            opts.duration_s,
            t.events_rejected,
            t.events_unanswered
        ),
    );
    report.line("HTTP statuses", describe_statuses(&statuses));
    report.line("deliveries", deliveries(expected, t.delivered, expected.saturating_sub(t.delivered)));
    let peak = series(&monitor.samples, |t| t.delivered).iter().map(|p| p.1).fold(0.0, f64::max);
    report.line(
        "throughput",
        format!(
            "{:.0} deliveries/s mean over run+drain ({:.2} s), peak {:.0}/s",
            t.delivered as f64 / run_s,
            run_s,
            peak
        ),
    );
    let per_frame = t.channel_bytes as f64 / t.delivered.max(1) as f64;
    report.line(
        "frame bytes",
        format!("{per_frame:.1} B of WebSocket payload per delivered frame (full frames and deltas)"),
    );
    report.metric("bytes_per_frame", per_frame);
    report.metric("sockets", opts.sockets as u64);
    report.metric("channels", opts.channels as u64);
    socket_metrics(&mut report, &t, setup_s);
    report.metric("requested_events", requested);
    report.metric("requested_rate", opts.rate);
    report.metric("publish_requests", t.publish_requests);
    report.metric("events_accepted", t.events_accepted);
    report.metric("events_rejected", t.events_rejected);
    report.metric("events_unanswered", t.events_unanswered);
    report.metric("accepted_rate", t.events_accepted as f64 / opts.duration_s);
    report.metric("deliveries_expected", expected);
    report.metric("deliveries_received", t.delivered);
    report.metric("publisher_reconnects", results.iter().map(|r| r.reconnects).sum::<u64>());
    // "X µs per delivered frame (user Y, kernel Z)"
    let per_frame =
        |u: &Usage| u.per(t.delivered, "delivered frame", 3).unwrap_or_else(|| "no frames delivered".into());
    if let Some(u) = Usage::server(&s1, &s2) {
        server_line(&mut report, &u, run_s, "", &format!(", {}", per_frame(&u)));
        report.metric("server_cpu_us", u.cpu_us);
        report.metric("server_cpu_us_per_delivery", u.cpu_us as f64 / t.delivered.max(1) as f64);
        report.metric("server_rss_kb_start", s0.server.map_or(0, |s| s.rss_kb));
        report.metric("server_rss_kb_end", u.rss_end_kb);
    }
    let me = Usage::own(&s1, &s2);
    loadtest_line(&mut report, &me, &per_frame(&me), threads);
    report.metric("loadtest_cpu_us_per_delivery", me.cpu_us as f64 / t.delivered.max(1) as f64);
    report.metric("loadtest_user_us_per_delivery", (me.cpu_us - me.sys_us) as f64 / t.delivered.max(1) as f64);
    report.line("connections ended", causes.describe());
    report.latency("publish → receipt", hist);
    report.chart("Throughput", "per second", vec![("deliveries/s".into(), series(&monitor.samples, |t| t.delivered))]);
    report.chart("Publishing", "events per second", acceptance_series(&monitor.samples));
    add_server_charts(&mut report, &monitor.samples);

    // ---- verdict ----
    fail_sockets_and_publishing(&mut report, &t, opts.sockets, aborted, ("publish", "published"));
    if t.delivered < expected {
        report.fail(format!("incomplete deliveries: {} of {} after a {} s drain", t.delivered, expected, opts.drain_s));
    }
    if t.delivered > expected {
        report.warn(format!(
            "{} more deliveries than expected (duplicates, or unanswered publishes that were delivered)",
            t.delivered - expected
        ));
    }
    if t.publish_inflight > 0 {
        report.warn(format!(
            "{} publish requests were still unanswered at the end (their deliveries are not expected)",
            t.publish_inflight
        ));
    }
    if t.events_rejected + t.events_unanswered > 0 {
        report.warn(format!("{} events rejected or unanswered", t.events_rejected + t.events_unanswered));
    }
    let sent = t.events_accepted + t.events_rejected + t.events_unanswered;
    if (sent as f64) < requested as f64 * 0.99 {
        report.warn(format!(
            "only {sent} of {requested} requested events were sent: the server answered too slowly for --publish-conns × --pipeline"
        ));
    }
    conclude(report, &monitor)
}
