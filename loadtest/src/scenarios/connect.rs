//! `connect`: open N sockets as fast as allowed (bounded concurrency, optional rate cap), hold
//! them idle for --hold s, and report the connect rate, failures, connect latency and — with
//! --server-pid — server CPU per accepted connection and RSS per idle connection.

use std::sync::Arc;

use mio::Registry;

use super::*;
use crate::cli::Args;
use crate::engine::ConnId;
use crate::pusher::{self, Kind};
use crate::stats::{inc, phase, Counters};

#[derive(Clone, Debug)]
pub struct Opts {
    pub sockets: usize,
    pub hold_s: f64,
    pub subscribe: bool,
    pub channels: usize,
    /// Connects per second (0: as fast as the concurrency allows).
    pub connect_rate: f64,
    pub setup_timeout_s: f64,
}

impl Opts {
    pub fn parse(a: &Args) -> Result<Opts, String> {
        let o = Opts {
            sockets: a.num("sockets", 1000, 50)?,
            hold_s: a.num("hold", 5.0, 1.0)?,
            subscribe: a.switch("subscribe"),
            channels: a.num("channels", 10, 5)?,
            connect_rate: a.num("connect-rate", 0.0, 0.0)?,
            setup_timeout_s: a.num("setup-timeout", 300.0, 30.0)?,
        };
        if o.sockets == 0 || o.channels == 0 {
            return Err("--sockets and --channels must be at least 1".into());
        }
        Ok(o)
    }
}

struct Worker {
    t: usize,
    threads: usize,
    concurrency: usize,
    opts: Arc<Opts>,
    shared: Arc<Shared>,
    n_local: usize,
    next_open: usize,
    /// When each local socket started connecting (0: finished).
    started: Vec<u64>,
    open: Vec<bool>,
    tally: Tally,
    buf: Vec<u8>,
    first_open_ns: u64,
}

impl Worker {
    fn c(&self) -> &Counters {
        &self.shared.workers[self.t]
    }
}

impl Driver for Worker {
    fn tick(&mut self, io: &mut Engine, now: u64) -> Option<u64> {
        if self.shared.phase() == phase::DONE {
            return None;
        }
        let mut next = now + 20 * crate::clock::MS;
        if self.first_open_ns == 0 {
            self.first_open_ns = now;
        }
        let allowed = if self.opts.connect_rate > 0.0 {
            let per_thread = self.opts.connect_rate / self.threads as f64;
            let due = ((now - self.first_open_ns) as f64 / SEC as f64 * per_thread) as usize + 1;
            next = next.min(self.first_open_ns + ((due as f64 / per_thread) * SEC as f64) as u64);
            due.min(self.n_local)
        } else {
            self.n_local
        };
        while self.next_open < allowed && io.pending() < self.concurrency {
            let l = self.next_open;
            self.next_open += 1;
            self.started[l] = crate::clock::now_ns();
            inc(&self.c().connect_started);
            io.open((self.t + l * self.threads) as u32);
        }
        Some(next)
    }

    fn on_established(&mut self, io: &mut Engine, id: ConnId, tag: u32) {
        let l = tag as usize / self.threads;
        record(&mut self.tally.hist, crate::clock::now_ns() - self.started[l]);
        self.open[l] = true;
        inc(&self.c().connected);
        if self.opts.subscribe {
            self.buf.clear();
            let ch = format!("lt-connect-{}", tag as usize % self.opts.channels);
            pusher::subscribe(&mut self.buf, io.proto(), &ch, None, None);
            io.send_text(id, &self.buf);
        }
    }

    fn on_event(&mut self, _io: &mut Engine, _id: ConnId, _tag: u32, kind: Kind, _text: &[u8]) {
        match kind {
            Kind::SubscriptionSucceeded => inc(&self.c().subscribed),
            Kind::Error | Kind::SubscriptionError => {
                inc(&self.c().server_errors);
                if self.opts.subscribe {
                    inc(&self.c().subscribe_failed);
                }
            }
            _ => {}
        }
    }

    fn on_closed(&mut self, _io: &mut Engine, tag: u32, cause: Cause) {
        let l = tag as usize / self.threads;
        self.tally.causes.add(cause);
        if std::mem::replace(&mut self.open[l], false) {
            inc(&self.c().closed_unexpectedly);
        } else {
            inc(&self.c().connect_failed);
        }
    }
}

impl Finish for Worker {
    type Output = Tally;
    fn finish(self) -> Tally {
        self.tally
    }
}

pub fn run(args: &Args, common: &Common) -> Outcome {
    let (opts, target, shared, mut monitor) = setup(args, common, Opts::parse, |_| 0)?;
    let threads = common.threads;
    let s0 = monitor.sample(&shared);
    let concurrency = (common.concurrency / threads).max(1);
    let handles = {
        let (opts, shared) = (opts.clone(), shared.clone());
        spawn_workers(threads, &target, move |t, _registry: &Registry| {
            let n_local = (opts.sockets + threads - 1 - t) / threads;
            Worker {
                t,
                threads,
                concurrency,
                opts: opts.clone(),
                shared: shared.clone(),
                n_local,
                next_open: 0,
                started: vec![0; n_local],
                open: vec![false; n_local],
                tally: Tally::default(),
                buf: Vec::with_capacity(128),
                first_open_ns: 0,
            }
        })
    };
    let progress = |p: &Sample, s: &Sample| {
        let t = &s.totals;
        format!(
            "{:5} connected {}/{} ({:.0}/s) failed {} subscribed {} closed {}",
            if s.phase == phase::SETUP { "open" } else { "hold" },
            t.connected,
            opts.sockets,
            rate(p, s, |t| t.connected),
            t.connect_failed,
            t.subscribed,
            t.closed_unexpectedly
        )
    };
    let deadline = now_ns() + (opts.setup_timeout_s * SEC as f64) as u64;
    loop {
        nap();
        monitor.tick(&shared, progress);
        let t = shared.totals();
        let mut done = t.connected + t.connect_failed >= opts.sockets as u64;
        if opts.subscribe {
            done &= t.subscribed + t.subscribe_failed + t.closed_unexpectedly >= t.connected;
        }
        if done || now_ns() > deadline {
            break;
        }
    }
    let s1 = monitor.sample(&shared);
    shared.set_phase(phase::RUN, now_ns());
    let hold_end = now_ns() + (opts.hold_s * SEC as f64) as u64;
    while now_ns() < hold_end {
        nap();
        monitor.tick(&shared, progress);
    }
    let (s2, results) = stop(&mut monitor, &shared, handles);

    let t = s2.totals;
    let connect_s = (s1.t - s0.t).max(1e-9);
    let Tally { hist, causes } = Tally::merge(results);
    let mut report = Report::new("connect", target_name(common), args.given());
    report.line(
        "sockets",
        format!(
            "{} requested, {} connected, {} failed, in {:.2} s = {:.0} connections/s (concurrency {}{})",
            opts.sockets,
            s1.totals.connected,
            s1.totals.connect_failed,
            connect_s,
            s1.totals.connected as f64 / connect_s,
            common.concurrency,
            if opts.connect_rate > 0.0 { format!(", rate cap {}/s", opts.connect_rate) } else { String::new() }
        ),
    );
    if opts.subscribe {
        report.line(
            "subscriptions",
            format!("{} succeeded, {} failed, on {} channels", t.subscribed, t.subscribe_failed, opts.channels),
        );
    }
    report.line(
        "hold",
        format!(
            "{:.1} s idle; {} sockets closed by the server or network during it",
            s2.t - s1.t,
            t.closed_unexpectedly
        ),
    );
    report.line("connections ended", causes.describe());
    report.metric("sockets", opts.sockets as u64);
    report.metric("connected", s1.totals.connected);
    report.metric("connect_failed", s1.totals.connect_failed);
    report.metric("connect_seconds", connect_s);
    report.metric("connect_rate", s1.totals.connected as f64 / connect_s);
    report.metric("subscribed", t.subscribed);
    report.metric("closed_during_hold", t.closed_unexpectedly);
    let connected = s1.totals.connected.max(1);
    if let (Some(a), Some(b), Some(c)) = (s0.server, s1.server, s2.server) {
        let cpu_connect = b.cpu_us.saturating_sub(a.cpu_us);
        let cpu_hold = c.cpu_us.saturating_sub(b.cpu_us);
        let rss_per = (c.rss_kb as f64 - a.rss_kb as f64) * 1024.0 / connected as f64;
        report.line(
            "server CPU",
            format!(
                "{:.3} s while connecting = {:.1} µs per accepted connection; {:.3} s during the {:.1} s hold ({:.2}% of a core)",
                cpu_connect as f64 / 1e6,
                cpu_connect as f64 / connected as f64,
                cpu_hold as f64 / 1e6,
                s2.t - s1.t,
                cpu_hold as f64 / 1e4 / (s2.t - s1.t).max(1e-9)
            ),
        );
        report.line(
            "server RSS",
            format!(
                "{:.1} MiB before, {:.1} MiB connected, {:.1} MiB after the hold = {:.0} bytes ({:.2} KiB) per idle connection",
                a.rss_kb as f64 / 1024.0,
                b.rss_kb as f64 / 1024.0,
                c.rss_kb as f64 / 1024.0,
                rss_per,
                rss_per / 1024.0
            ),
        );
        report.metric("server_cpu_us_connect", cpu_connect);
        report.metric("server_cpu_us_per_connection", cpu_connect as f64 / connected as f64);
        report.metric("server_cpu_us_hold", cpu_hold);
        report.metric("server_rss_kb_before", a.rss_kb);
        report.metric("server_rss_kb_connected", b.rss_kb);
        report.metric("server_rss_kb_after_hold", c.rss_kb);
        report.metric("server_rss_bytes_per_connection", rss_per);
    }
    let my = s2.me;
    report.line(
        "loadtest",
        format!("RSS {:.1} MiB, CPU {:.3} s total", my.rss_kb as f64 / 1024.0, my.cpu_us as f64 / 1e6),
    );
    report.latency("connect (TCP → connection_established)", hist);
    report.chart("Connections", "per second", vec![("connected/s".into(), series(&monitor.samples, |t| t.connected))]);
    add_server_charts(&mut report, &monitor.samples);

    if s1.totals.connect_failed > 0 || s1.totals.connected < opts.sockets as u64 {
        report.fail(format!(
            "{} of {} sockets failed to connect",
            opts.sockets as u64 - s1.totals.connected,
            opts.sockets
        ));
    }
    if opts.subscribe && t.subscribed < s1.totals.connected {
        report.fail(format!("{} sockets did not subscribe", s1.totals.connected - t.subscribed));
    }
    if t.closed_unexpectedly > 0 {
        report.fail(format!("{} sockets were closed during the hold", t.closed_unexpectedly));
    }
    conclude(report, &monitor)
}
