//! `churn`: connect → subscribe → unsubscribe → close cycles started at --rate per second for
//! --duration s; a cycle succeeds when the server completes the close handshake. Reports cycles
//! completed / failed, cycle latency and server CPU per cycle.

use std::sync::Arc;

use mio::Registry;
use slab::Slab;

use super::*;
use crate::cli::Args;
use crate::clock::MS;
use crate::engine::ConnId;
use crate::pusher::{self, Kind};
use crate::stats::{inc, phase, Counters};

#[derive(Clone, Debug)]
pub struct Opts {
    pub rate: f64,
    pub duration_s: f64,
    pub channels: usize,
    pub cycle_timeout_s: f64,
}

impl Opts {
    pub fn parse(a: &Args) -> Result<Opts, String> {
        let o = Opts {
            rate: a.num("rate", 50.0, 20.0)?,
            duration_s: a.num("duration", 10.0, 3.0)?,
            channels: a.num("channels", 10, 5)?,
            cycle_timeout_s: a.num("cycle-timeout", 10.0, 10.0)?,
        };
        if o.rate <= 0.0 || o.duration_s <= 0.0 || o.channels == 0 {
            return Err("--rate, --duration and --channels must be positive".into());
        }
        Ok(o)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connecting,
    Subscribing,
    Closing,
}

struct Cycle {
    n: u64,
    id: Option<ConnId>,
    stage: Stage,
    started: u64,
    timed_out: bool,
}

struct Worker {
    t: usize,
    threads: usize,
    opts: Arc<Opts>,
    shared: Arc<Shared>,
    cycles: Slab<Cycle>,
    started: u64,
    run_start: u64,
    next_timeout_scan: u64,
    tally: Tally,
    buf: Vec<u8>,
}

impl Worker {
    fn c(&self) -> &Counters {
        &self.shared.workers[self.t]
    }
    fn channel(&self, n: u64) -> String {
        format!("lt-churn-{}", n % self.opts.channels as u64)
    }
    fn fail(&mut self, key: usize) {
        self.cycles.remove(key);
        inc(&self.shared.workers[self.t].cycles_failed);
    }
}

impl Driver for Worker {
    fn tick(&mut self, io: &mut Engine, now: u64) -> Option<u64> {
        let ph = self.shared.phase();
        if ph == phase::DONE {
            return None;
        }
        let mut next = now + 20 * MS;
        if ph == phase::RUN {
            if self.run_start == 0 {
                self.run_start = self.shared.phase_started();
            }
            let per_thread = self.opts.rate / self.threads as f64;
            let total = (per_thread * self.opts.duration_s).round() as u64;
            let due = (((now - self.run_start) as f64 / SEC as f64 * per_thread) as u64 + 1).min(total);
            while self.started < due {
                let n = self.t as u64 + self.started * self.threads as u64;
                self.started += 1;
                let key =
                    self.cycles.insert(Cycle { n, id: None, stage: Stage::Connecting, started: now, timed_out: false });
                inc(&self.c().cycles_started);
                self.cycles[key].id = io.open(key as u32);
            }
            if self.started < total {
                next = next.min(self.run_start + ((self.started as f64 / per_thread) * SEC as f64) as u64);
            }
        }
        if now >= self.next_timeout_scan {
            self.next_timeout_scan = now + 100 * MS;
            let limit = (self.opts.cycle_timeout_s * SEC as f64) as u64;
            let late: Vec<usize> =
                self.cycles.iter().filter(|(_, c)| !c.timed_out && now - c.started > limit).map(|(k, _)| k).collect();
            for key in late {
                self.cycles[key].timed_out = true;
                match self.cycles[key].id {
                    Some(id) => io.close(id),
                    None => self.fail(key),
                }
            }
        }
        Some(next)
    }

    fn on_established(&mut self, io: &mut Engine, id: ConnId, tag: u32) {
        let Some(c) = self.cycles.get_mut(tag as usize) else {
            return;
        };
        c.stage = Stage::Subscribing;
        let n = c.n;
        let ch = self.channel(n);
        self.buf.clear();
        pusher::subscribe(&mut self.buf, io.proto(), &ch, None, None);
        io.send_text(id, &self.buf);
    }

    fn on_event(&mut self, io: &mut Engine, id: ConnId, tag: u32, kind: Kind, _text: &[u8]) {
        let Some(c) = self.cycles.get_mut(tag as usize) else {
            return;
        };
        match kind {
            Kind::SubscriptionSucceeded if c.stage == Stage::Subscribing => {
                c.stage = Stage::Closing;
                let n = c.n;
                inc(&self.shared.workers[self.t].subscribed);
                let ch = self.channel(n);
                self.buf.clear();
                pusher::unsubscribe(&mut self.buf, io.proto(), &ch);
                io.send_text(id, &self.buf);
                io.close(id);
            }
            Kind::Error | Kind::SubscriptionError => {
                inc(&self.shared.workers[self.t].server_errors);
                c.timed_out = true; // marks the cycle failed when it closes
                io.close(id);
            }
            _ => {}
        }
    }

    fn on_closed(&mut self, _io: &mut Engine, tag: u32, cause: Cause) {
        let key = tag as usize;
        let Some(c) = self.cycles.get(key) else {
            return;
        };
        if cause == Cause::Finished && c.stage == Stage::Closing && !c.timed_out {
            let took = crate::clock::now_ns() - c.started;
            record(&mut self.tally.hist, took);
            self.cycles.remove(key);
            inc(&self.c().cycles_ok);
        } else {
            if c.stage == Stage::Connecting {
                inc(&self.c().connect_failed);
            }
            self.tally.causes.add(cause);
            self.fail(key);
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
    let handles = {
        let (opts, shared) = (opts.clone(), shared.clone());
        spawn_workers(threads, &target, move |t, _registry: &Registry| Worker {
            t,
            threads,
            opts: opts.clone(),
            shared: shared.clone(),
            cycles: Slab::new(),
            started: 0,
            run_start: 0,
            next_timeout_scan: 0,
            tally: Tally::default(),
            buf: Vec::with_capacity(128),
        })
    };
    let progress = |p: &Sample, s: &Sample| {
        let t = &s.totals;
        format!(
            "{:5} cycles started {} ok {} ({:.0}/s) failed {} in flight {}",
            if s.phase == phase::RUN { "run" } else { "drain" },
            t.cycles_started,
            t.cycles_ok,
            rate(p, s, |t| t.cycles_ok),
            t.cycles_failed,
            t.cycles_started - t.cycles_ok - t.cycles_failed
        )
    };
    let s1 = monitor.sample(&shared);
    shared.set_phase(phase::RUN, now_ns());
    while now_ns() - shared.phase_started() < (opts.duration_s * SEC as f64) as u64 {
        nap();
        monitor.tick(&shared, progress);
    }
    let run_end = monitor.sample(&shared);
    shared.set_phase(phase::DRAIN, now_ns());
    let drain_limit = now_ns() + ((opts.cycle_timeout_s + 5.0) * SEC as f64) as u64;
    loop {
        nap();
        monitor.tick(&shared, progress);
        let t = shared.totals();
        if t.cycles_ok + t.cycles_failed >= t.cycles_started || now_ns() > drain_limit {
            break;
        }
    }
    let (s2, results) = stop(&mut monitor, &shared, handles);
    let t = s2.totals;
    let Tally { hist, causes } = Tally::merge(results);
    let requested = (opts.rate / threads as f64 * opts.duration_s).round() as u64 * threads as u64;
    let mut report = Report::new("churn", target_name(common), args.given());
    let run_s = run_end.t - s1.t;
    report.line(
        "cycles",
        format!(
            "requested {} ({} /s for {} s), started {}, completed {} ({:.1}/s), failed {}, unfinished {}",
            requested,
            opts.rate,
            opts.duration_s,
            t.cycles_started,
            t.cycles_ok,
            t.cycles_ok as f64 / run_s.max(1e-9),
            t.cycles_failed,
            t.cycles_started - t.cycles_ok - t.cycles_failed
        ),
    );
    report.line("failures by cause", causes.describe());
    report.metric("requested_cycles", requested);
    report.metric("cycles_started", t.cycles_started);
    report.metric("cycles_ok", t.cycles_ok);
    report.metric("cycles_failed", t.cycles_failed);
    report.metric("cycle_rate", t.cycles_ok as f64 / run_s.max(1e-9));
    if let Some(cpu) = server_cpu_us(&s1, &s2) {
        let per = cpu as f64 / t.cycles_ok.max(1) as f64;
        report.line(
            "server",
            format!(
                "CPU {:.3} s = {:.1} µs per churn cycle; RSS {:.1} → {:.1} MiB",
                cpu as f64 / 1e6,
                per,
                s1.server.map_or(0, |s| s.rss_kb) as f64 / 1024.0,
                s2.server.map_or(0, |s| s.rss_kb) as f64 / 1024.0
            ),
        );
        report.metric("server_cpu_us", cpu);
        report.metric("server_cpu_us_per_cycle", per);
    }
    report.latency("cycle (connect → close handshake done)", hist);
    report.chart(
        "Churn",
        "cycles per second",
        vec![
            ("completed/s".into(), series(&monitor.samples, |t| t.cycles_ok)),
            ("failed/s".into(), series(&monitor.samples, |t| t.cycles_failed)),
        ],
    );
    add_server_charts(&mut report, &monitor.samples);
    if t.cycles_failed > 0 {
        report.fail(format!("{} cycles failed", t.cycles_failed));
    }
    if t.cycles_ok + t.cycles_failed < t.cycles_started {
        report.fail(format!("{} cycles did not finish", t.cycles_started - t.cycles_ok - t.cycles_failed));
    }
    if t.cycles_started < requested {
        report.warn(format!("only {} of {} cycles were started", t.cycles_started, requested));
    }
    conclude(report, &monitor)
}
