//! `recovery-storm`: N Protocol V2 sockets round-robin over C channels (K channels each) while the
//! fanout publisher sends R events/s over signed HTTP; every S s a fraction F of the settled
//! sockets is dropped abruptly (TCP closed, no close frame) and reconnected at once: re-subscribe
//! every channel and `sockudo:resume` from the position held at the drop, all in one write (the
//! server then holds live frames behind the replay). Every socket records, per channel, which
//! serials it received (a bitset above its first position): a serial seen twice is duplicated;
//! after the drain every serial from the first position + 1 to the channel's final head must
//! have been seen, or it is lost. A serial older than one already seen is "reordered". Any of
//! the three fails the run.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use mio::event::Event;
use mio::Registry;
use serde_json::Value;

use super::fanout::{publish_config, Pub, PublishOpts};
use super::*;
use crate::cli::Args;
use crate::engine::ConnId;
use crate::pusher::{self, Kind, Protocol};
use crate::stats::{add, inc, phase, set, Counters};

#[derive(Clone, Debug)]
pub struct Extra {
    pub per_socket: usize,
    pub storm_every_s: f64,
    pub fraction: f64,
}

pub type Opts = PublishOpts<Extra>;

fn parse(a: &Args) -> Result<Opts, String> {
    let o = PublishOpts::parse_with(a, (1000, 4.0), |a| {
        Ok(Extra {
            per_socket: a.num("channels-per-socket", 1, 1)?,
            storm_every_s: a.num("storm-every", 2.0, 1.0)?,
            fraction: a.num("disconnect-fraction", 0.2, 0.2)?,
        })
    })?;
    if !(1..=o.channels.min(64)).contains(&o.x.per_socket) {
        return Err("--channels-per-socket: 1..=min(--channels, 64)".into());
    }
    if !(0.0..=1.0).contains(&o.x.fraction) {
        return Err("--disconnect-fraction: 0..=1".into());
    }
    if o.x.storm_every_s <= 0.0 || o.duration_s / o.x.storm_every_s > 10_000.0 {
        return Err("--storm-every: positive, at most 10,000 storms a run".into());
    }
    Ok(o)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    New,
    /// First connect, then first subscribes.
    Connecting,
    Subscribing,
    /// Subscribed (and, after a drop, resumed): may be dropped by a storm.
    Live,
    /// Dropped and reconnecting; then re-subscribed and waiting for resume_success.
    Reconnecting,
    Resuming,
    Gone,
}

/// One socket's view of one channel.
struct Track {
    ch: u32,
    /// The socket's first position on the channel (its first attach serial).
    base: u64,
    /// Current position: stream and the highest serial seen.
    stream: Vec<u8>,
    max: u64,
    /// Serials base+1.. seen (bit i = serial base+1+i).
    seen: Vec<u64>,
    /// The position held when the socket was dropped: what `sockudo:resume` asks for.
    resume_stream: Vec<u8>,
    resume_serial: u64,
    /// Subscribed on the current connection.
    subscribed: bool,
}

impl Track {
    /// Records a delivered serial. Returns (duplicated, reordered).
    fn record(&mut self, serial: u64) -> (bool, bool) {
        if serial <= self.base {
            // At or before the position the socket started from: it had that one already.
            return (true, false);
        }
        let i = (serial - self.base - 1) as usize;
        if i / 64 >= self.seen.len() {
            self.seen.resize(i / 64 + 1, 0);
        }
        let bit = 1u64 << (i % 64);
        let dup = self.seen[i / 64] & bit != 0;
        self.seen[i / 64] |= bit;
        let reordered = !dup && serial < self.max;
        self.max = self.max.max(serial);
        (dup, reordered)
    }

    /// Serials base+1..=head not seen.
    fn lost(&self, head: u64) -> u64 {
        let want = head.saturating_sub(self.base);
        let mut have = 0u64;
        for (w, word) in self.seen.iter().enumerate() {
            let lo = w as u64 * 64;
            if lo >= want {
                break;
            }
            let bits = (want - lo).min(64);
            let mask = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            have += (word & mask).count_ones() as u64;
        }
        want - have
    }
}

struct Sock {
    st: St,
    conn: ConnId,
    tracks: Vec<Track>,
    /// When the socket was dropped (monotonic ns).
    dropped_at: u64,
    /// Channel failures reported by `resume_failed` during the current resume: (channel, code/reason).
    failed: Vec<(String, String)>,
}

struct Worker {
    t: usize,
    threads: usize,
    concurrency: usize,
    opts: Arc<Opts>,
    channels: Arc<Vec<String>>,
    shared: Arc<Shared>,
    socks: Vec<Sock>,
    next_open: usize,
    next_storm: u64,
    tally: Tally,
    /// Channel failures by `code/reason`.
    failures: Causes,
    /// Storm victims that were not settled (still resuming) when their storm came.
    skipped: u64,
    publisher: Option<Pub>,
}

/// What a worker hands back: its tracks (channel, base, max, lost-check data) and tallies.
pub struct WorkerResult {
    tally: Tally,
    tracks: Vec<Track>,
    failures: Causes,
    skipped: u64,
    unsettled: u64,
    statuses: Vec<(u16, u64)>,
    publisher_reconnects: u64,
}

impl Worker {
    fn counters(&self) -> &Counters {
        &self.shared.workers[self.t]
    }
    fn local(&self, tag: u32) -> usize {
        tag as usize / self.threads
    }

    /// Subscribes every channel of the socket, and after a drop resumes them, in one write.
    fn send_subscribes(&mut self, io: &mut Engine, id: ConnId, l: usize, resume: bool) {
        let s = &self.socks[l];
        let mut frames: Vec<Vec<u8>> = s
            .tracks
            .iter()
            .map(|tr| {
                let mut f = Vec::new();
                pusher::subscribe(&mut f, Protocol::V2, &self.channels[tr.ch as usize], None, None);
                f
            })
            .collect();
        if resume {
            let mut f = Vec::new();
            pusher::resume(
                &mut f,
                s.tracks
                    .iter()
                    .map(|tr| (self.channels[tr.ch as usize].as_str(), tr.resume_stream.as_slice(), tr.resume_serial)),
            );
            frames.push(f);
        }
        io.send_texts(id, frames.iter().map(Vec::as_slice));
    }

    /// Drops `round(F × local sockets)` settled sockets and reconnects them.
    fn storm(&mut self, io: &mut Engine, now: u64) {
        let want = (self.opts.x.fraction * self.socks.len() as f64).round() as usize;
        let mut live: Vec<usize> = (0..self.socks.len()).filter(|&l| self.socks[l].st == St::Live).collect();
        fastrand::shuffle(&mut live);
        if live.len() < want {
            self.skipped += (want - live.len()) as u64;
        }
        for &l in live.iter().take(want) {
            let s = &mut self.socks[l];
            io.abort(s.conn);
            s.st = St::Reconnecting;
            s.dropped_at = now;
            s.failed.clear();
            for tr in &mut s.tracks {
                tr.resume_stream.clone_from(&tr.stream);
                tr.resume_serial = tr.max;
                tr.subscribed = false;
            }
            inc(&self.shared.workers[self.t].reconnects);
            io.open((self.t + l * self.threads) as u32);
        }
    }

    /// Sockets between a drop and its resume_success, and tracks short of the head implied by
    /// the accepted publishes (the drain waits for both to reach 0).
    fn gauges(&self) {
        let mut unsettled = 0;
        let mut behind = 0;
        for s in &self.socks {
            match s.st {
                St::Reconnecting | St::Resuming => unsettled += 1,
                St::Gone => continue,
                _ => {}
            }
            for tr in &s.tracks {
                let head = tr.base + self.shared.accepted_per_channel[tr.ch as usize].load(Relaxed);
                if tr.max < head {
                    behind += 1;
                }
            }
        }
        let c = self.counters();
        set(&c.unsettled, unsettled);
        set(&c.behind, behind);
    }

    fn on_channel_frame(&mut self, l: usize, text: &[u8]) {
        let Some((sid, serial)) = pusher::v2_position(text) else {
            return; // not a stream message (e.g. a client event without serial)
        };
        let name = pusher::channel(text).unwrap_or(b"");
        let s = &mut self.socks[l];
        let Some(tr) = s.tracks.iter_mut().find(|tr| self.channels[tr.ch as usize].as_bytes() == name) else {
            return;
        };
        if tr.stream != sid {
            tr.stream.clear();
            tr.stream.extend_from_slice(sid);
        }
        let (dup, reordered) = tr.record(serial);
        let c = &self.shared.workers[self.t];
        if dup {
            inc(&c.duplicated);
        }
        if reordered {
            inc(&c.reordered);
        }
    }

    fn on_subscribed(&mut self, l: usize, text: &[u8]) {
        let name = pusher::channel(text).unwrap_or(b"");
        let pos = pusher::v2_position(text);
        let st = self.socks[l].st;
        let channels = self.channels.clone();
        let Some(tr) = self.socks[l].tracks.iter_mut().find(|tr| channels[tr.ch as usize].as_bytes() == name) else {
            return;
        };
        tr.subscribed = true;
        if let Some((sid, serial)) = pos {
            tr.stream.clear();
            tr.stream.extend_from_slice(sid);
            if st == St::Subscribing {
                // The first position: everything after it must arrive exactly once.
                tr.base = serial;
                tr.max = serial;
            }
        }
        if !self.socks[l].tracks.iter().all(|tr| tr.subscribed) {
            return;
        }
        if st == St::Subscribing {
            self.socks[l].st = St::Live;
            inc(&self.counters().subscribed);
        }
    }

    /// `sockudo:resume_success` / `sockudo:resume_failed` / `sockudo:error` during a resume.
    fn on_resume_answer(&mut self, l: usize, name: &[u8], text: &[u8]) {
        let frame: Value = serde_json::from_slice(text).unwrap_or(Value::Null);
        let data = match &frame["data"] {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            other => other.clone(),
        };
        let reason =
            |v: &Value| format!("{}/{}", v["code"].as_str().unwrap_or("?"), v["reason"].as_str().unwrap_or("?"));
        let c = &self.shared.workers[self.t];
        match name {
            b"sockudo:resume_failed" => {
                let ch = frame["channel"].as_str().unwrap_or("?").to_string();
                self.socks[l].failed.push((ch, reason(&data)));
            }
            b"sockudo:error" if self.socks[l].st == St::Resuming => {
                inc(&c.server_errors);
                let why = format!("error {}: {}", data["code"], data["message"].as_str().unwrap_or("?"));
                let s = &mut self.socks[l];
                let chans = s.tracks.iter().map(|tr| self.channels[tr.ch as usize].clone());
                s.failed.extend(chans.map(|ch| (ch, why.clone())).collect::<Vec<_>>());
                self.settle(l, false);
            }
            b"sockudo:error" => inc(&c.server_errors),
            b"sockudo:resume_success" if self.socks[l].st == St::Resuming => {
                let mut recovered = 0;
                let mut replayed = 0;
                for r in data["recovered"].as_array().into_iter().flatten() {
                    recovered += 1;
                    replayed += r["replayed"].as_u64().unwrap_or(0);
                }
                add(&c.channels_recovered, recovered);
                add(&c.replayed, replayed);
                let s = &mut self.socks[l];
                for f in data["failed"].as_array().into_iter().flatten() {
                    let ch = f["channel"].as_str().unwrap_or("?");
                    if !s.failed.iter().any(|(c, _)| c == ch) {
                        s.failed.push((ch.to_string(), reason(f)));
                    }
                }
                self.settle(l, true);
            }
            _ => {}
        }
    }

    /// The resume is over: count its failures and latency; the socket may be dropped again.
    fn settle(&mut self, l: usize, success: bool) {
        let now = crate::clock::now_ns();
        let s = &mut self.socks[l];
        s.st = St::Live;
        let c = &self.shared.workers[self.t];
        for (_, why) in s.failed.drain(..) {
            inc(&c.channels_failed);
            *self.failures.0.entry(why).or_default() += 1;
        }
        if success {
            inc(&c.resumes_ok);
            record(&mut self.tally.hist, now.saturating_sub(s.dropped_at));
        }
    }
}

impl Driver for Worker {
    fn tick(&mut self, io: &mut Engine, now: u64) -> Option<u64> {
        let ph = self.shared.phase();
        if ph == phase::DONE {
            return None;
        }
        if let Some(p) = self.publisher.as_mut() {
            p.tick(io.registry(), now);
        }
        let mut next = now + 20 * crate::clock::MS;
        match ph {
            phase::SETUP => {
                while self.next_open < self.socks.len() && io.pending() < self.concurrency {
                    let l = self.next_open;
                    self.next_open += 1;
                    self.socks[l].st = St::Connecting;
                    inc(&self.counters().connect_started);
                    io.open((self.t + l * self.threads) as u32);
                }
            }
            phase::RUN => {
                let start = self.shared.phase_started();
                let every = (self.opts.x.storm_every_s * SEC as f64) as u64;
                let end = start + (self.opts.duration_s * SEC as f64) as u64;
                if self.next_storm == 0 {
                    self.next_storm = start + every;
                }
                if now >= self.next_storm && self.next_storm < end {
                    self.storm(io, now);
                    self.next_storm += every;
                }
                if self.next_storm < end {
                    next = next.min(self.next_storm);
                }
                if let Some(p) = self.publisher.as_mut() {
                    next = next.min(p.publish(now));
                }
                self.gauges();
            }
            _ => self.gauges(),
        }
        Some(next)
    }

    fn on_established(&mut self, io: &mut Engine, id: ConnId, tag: u32) {
        let l = self.local(tag);
        let s = &mut self.socks[l];
        s.conn = id;
        let resume = match s.st {
            St::Connecting => {
                s.st = St::Subscribing;
                inc(&self.counters().connected);
                false
            }
            St::Reconnecting => {
                s.st = St::Resuming;
                true
            }
            _ => return,
        };
        self.send_subscribes(io, id, l, resume);
    }

    fn on_event(&mut self, io: &mut Engine, _id: ConnId, tag: u32, kind: Kind, text: &[u8]) {
        let l = self.local(tag);
        match kind {
            Kind::Channel => self.on_channel_frame(l, text),
            Kind::SubscriptionSucceeded => self.on_subscribed(l, text),
            Kind::SubscriptionError => {
                inc(&self.counters().subscribe_failed);
                let s = &mut self.socks[l];
                if s.st == St::Subscribing {
                    s.st = St::Gone;
                    io.close(s.conn);
                } else if s.st == St::Resuming {
                    let chans: Vec<String> = s.tracks.iter().map(|tr| self.channels[tr.ch as usize].clone()).collect();
                    s.failed.extend(chans.into_iter().map(|c| (c, "subscription_error".into())));
                    self.settle(l, false);
                }
            }
            Kind::Error | Kind::OtherSystem => {
                let name = pusher::event_name(text).unwrap_or(b"");
                self.on_resume_answer(l, name, text);
            }
            _ => {}
        }
    }

    fn on_closed(&mut self, _io: &mut Engine, tag: u32, cause: Cause) {
        let l = self.local(tag);
        let was = std::mem::replace(&mut self.socks[l].st, St::Gone);
        self.tally.causes.add(cause);
        match was {
            St::Connecting | St::Reconnecting => inc(&self.counters().connect_failed),
            St::Gone | St::New => {}
            _ => inc(&self.counters().closed_unexpectedly),
        }
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
        let (statuses, publisher_reconnects) = self.publisher.as_ref().map_or_else(Default::default, Pub::finish);
        let unsettled = self.socks.iter().filter(|s| matches!(s.st, St::Reconnecting | St::Resuming)).count() as u64;
        WorkerResult {
            tally: self.tally,
            tracks: self.socks.into_iter().filter(|s| s.st != St::New).flat_map(|s| s.tracks).collect(),
            failures: self.failures,
            skipped: self.skipped,
            unsettled,
            statuses,
            publisher_reconnects,
        }
    }
}

pub fn run(args: &Args, common: &Common) -> Outcome {
    if common.proto != Protocol::V2 && args.given().iter().any(|(k, _)| k == "protocol") {
        return Err("recovery-storm speaks Protocol V2 (connection recovery): --protocol 2".into());
    }
    let common = &Common { proto: Protocol::V2, ..common.clone() };
    let (opts, target, shared, mut monitor) = setup(args, common, parse, |o| o.channels)?;
    // Fresh channel names each run: their serials start at the run's first position.
    let run_id = fastrand::u32(..);
    let channels: Arc<Vec<String>> =
        Arc::new((0..opts.channels).map(|c| format!("lt-recovery-{run_id:08x}-{c}")).collect());
    let threads = common.threads;
    let concurrency = (common.concurrency / threads).max(1);

    let handles = {
        let (opts, channels, shared) = (opts.clone(), channels.clone(), shared.clone());
        let (c, addr) = (common.clone(), target.addr);
        spawn_workers(threads, &target, move |t, registry: &Registry| {
            let n_local = (opts.sockets + threads - 1 - t) / threads;
            let socks = (0..n_local)
                .map(|l| {
                    let g = t + l * threads;
                    Sock {
                        st: St::New,
                        conn: 0,
                        tracks: (0..opts.x.per_socket)
                            .map(|j| Track {
                                ch: ((g + j) % opts.channels) as u32,
                                base: 0,
                                stream: Vec::new(),
                                max: 0,
                                seen: Vec::new(),
                                resume_stream: Vec::new(),
                                resume_serial: 0,
                                subscribed: false,
                            })
                            .collect(),
                        dropped_at: 0,
                        failed: Vec::new(),
                    }
                })
                .collect();
            Worker {
                t,
                threads,
                concurrency,
                opts: opts.clone(),
                channels: channels.clone(),
                shared: shared.clone(),
                socks,
                next_open: 0,
                next_storm: 0,
                tally: Tally::default(),
                failures: Causes::default(),
                skipped: 0,
                publisher: (t == 0).then(|| {
                    let cfg = publish_config(&c, addr, opts.publish_conns, opts.pipeline, opts.payload, 1, None);
                    let pacing = (opts.rate, opts.duration_s);
                    Pub::new(registry, cfg, pacing, (shared.clone(), t), channels.clone())
                }),
            }
        })
    };

    let progress = |p: &Sample, s: &Sample| {
        let t = &s.totals;
        format!(
            "{:5} sockets {}/{} subscribed {} | events acc {} ({:.0}/s) | reconnects {} resumed {} unsettled {} | recovered {} failed {} replayed {} dup {}",
            phase_name(s.phase),
            t.connected,
            opts.sockets,
            t.subscribed,
            t.events_accepted,
            rate(p, s, |t| t.events_accepted),
            t.reconnects,
            t.resumes_ok,
            t.unsettled,
            t.channels_recovered,
            t.channels_failed,
            t.replayed,
            t.duplicated,
        )
    };

    let plan = (opts.sockets, opts.setup_timeout_s, opts.duration_s, opts.drain_s);
    // The workers refresh the gauges every turn (≤ 20 ms) once the drain has begun.
    let complete = |t: &Totals| {
        now_ns() - shared.phase_started() > 100 * crate::clock::MS
            && t.unsettled == 0
            && t.behind == 0
            && t.publish_inflight == 0
    };
    let (setup_s, s1, drained) = publish_run(&mut monitor, &shared, plan, progress, complete);
    let (aborted, drain_s) = (drained.is_none(), drained.unwrap_or(0.0));
    let (s2, results) = stop(&mut monitor, &shared, handles);

    // ---- the check: per channel the final head, per track what it lacks ----
    let t = s2.totals;
    let accepted: Vec<u64> = shared.accepted_per_channel.iter().map(|a| a.load(Relaxed)).collect();
    let mut head = vec![0u64; opts.channels];
    for tr in results.iter().flat_map(|r| &r.tracks) {
        let h = &mut head[tr.ch as usize];
        *h = (*h).max(tr.max).max(tr.base + accepted[tr.ch as usize]);
    }
    let lost: u64 = results.iter().flat_map(|r| &r.tracks).map(|tr| tr.lost(head[tr.ch as usize])).sum();
    let tracks_short = results.iter().flat_map(|r| &r.tracks).filter(|tr| tr.lost(head[tr.ch as usize]) > 0).count();
    let failures = Causes::merge(results.iter().map(|r| r.failures.clone()));
    let skipped: u64 = results.iter().map(|r| r.skipped).sum();
    let unsettled: u64 = results.iter().map(|r| r.unsettled).sum();
    let Tally { hist, causes } = Tally::merge(results.iter().map(|r| r.tally.clone()));
    let statuses: Vec<(u16, u64)> = results.iter().flat_map(|r| r.statuses.clone()).collect();

    // ---- report ----
    let mut report = Report::new("recovery-storm", target_name(common), args.given());
    let run_s = (s2.t - s1.t).max(1e-9);
    // Storms at k × S for k ≥ 1 while k × S < D.
    let storms = ((opts.duration_s / opts.x.storm_every_s).ceil() as u64).saturating_sub(1);
    let to = format!("to {} channel(s) each of {}", opts.x.per_socket, opts.channels);
    report.line("sockets", sockets_summary(&t, &opts.sockets.to_string(), &to, setup_s));
    report.line(
        "publishing",
        format!(
            "requested {} events/s for {} s; accepted {}, rejected {}, unanswered {}; HTTP statuses {}",
            opts.rate,
            opts.duration_s,
            t.events_accepted,
            t.events_rejected,
            t.events_unanswered,
            describe_statuses(&statuses)
        ),
    );
    report.line(
        "storms",
        format!(
            "{storms} storm(s) every {} s dropping {:.0}% of the sockets: {} reconnects, {} resume_success, {} victims skipped (still resuming), {} unsettled at the end",
            opts.x.storm_every_s,
            opts.x.fraction * 100.0,
            t.reconnects,
            t.resumes_ok,
            skipped,
            unsettled
        ),
    );
    report.line(
        "recovery",
        format!(
            "{} channel(s) recovered, {} failed ({}), {} messages replayed",
            t.channels_recovered,
            t.channels_failed,
            failures.describe(),
            t.replayed
        ),
    );
    report.line(
        "delivery check",
        format!(
            "lost {} (in {} socket-channel(s)), duplicated {}, reordered {}; channel heads {}; drain {:.2} s",
            lost,
            tracks_short,
            t.duplicated,
            t.reordered,
            head.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(" "),
            drain_s
        ),
    );
    report.metric("sockets", opts.sockets as u64);
    report.metric("channels", opts.channels as u64);
    report.metric("channels_per_socket", opts.x.per_socket as u64);
    socket_metrics(&mut report, &t, setup_s);
    report.metric("events_accepted", t.events_accepted);
    report.metric("events_rejected", t.events_rejected);
    report.metric("events_unanswered", t.events_unanswered);
    report.metric("storms", storms);
    report.metric("reconnects", t.reconnects);
    report.metric("resumes_ok", t.resumes_ok);
    report.metric("storm_victims_skipped", skipped);
    report.metric("unsettled", unsettled);
    report.metric("channels_recovered", t.channels_recovered);
    report.metric("channels_failed", t.channels_failed);
    report.metric(
        "channels_failed_by_reason",
        Value::Object(failures.0.iter().map(|(k, v)| (k.clone(), Value::from(*v))).collect()),
    );
    report.metric("replayed", t.replayed);
    report.metric("lost", lost);
    report.metric("duplicated", t.duplicated);
    report.metric("reordered", t.reordered);
    report.metric("drain_s", drain_s);
    report.metric("publisher_reconnects", results.iter().map(|r| r.publisher_reconnects).sum::<u64>());
    let per_channel = |cpu: u64| {
        if t.channels_recovered == 0 {
            "no channel recovered".to_string()
        } else {
            format!("{:.1} µs per recovered channel", cpu as f64 / t.channels_recovered as f64)
        }
    };
    if let Some(u) = Usage::server(&s1, &s2) {
        let (note, cpu) = (", publishing and fan-out included", u.cpu_us);
        server_line(&mut report, &u, run_s, note, &format!(", {}", per_channel(cpu)));
        report.metric("server_cpu_us", cpu);
        report.metric("server_cpu_us_per_recovered_channel", cpu as f64 / t.channels_recovered.max(1) as f64);
        report.metric("server_rss_kb_end", u.rss_end_kb);
    }
    let me = Usage::own(&s1, &s2);
    loadtest_line(&mut report, &me, &per_channel(me.cpu_us), threads);
    report.line("connections ended", causes.describe());
    report.latency("reconnect → resume_success", hist);
    report.chart(
        "Recovery",
        "per second",
        vec![
            ("reconnects/s".into(), series(&monitor.samples, |t| t.reconnects)),
            ("channels recovered/s".into(), series(&monitor.samples, |t| t.channels_recovered)),
            ("replayed/s".into(), series(&monitor.samples, |t| t.replayed)),
        ],
    );
    report.chart(
        "Publishing",
        "events per second",
        vec![("accepted/s".into(), series(&monitor.samples, |t| t.events_accepted))],
    );
    add_server_charts(&mut report, &monitor.samples);

    // ---- verdict ----
    fail_sockets_and_publishing(&mut report, &t, opts.sockets, aborted, ("publish", "published"));
    if lost > 0 {
        report.fail(format!("{lost} messages lost in {tracks_short} socket-channel(s)"));
    }
    if t.duplicated > 0 {
        report.fail(format!("{} messages duplicated", t.duplicated));
    }
    if t.channels_failed > 0 {
        report.fail(format!("{} channel resumes failed", t.channels_failed));
    }
    if unsettled > 0 {
        report.fail(format!("{unsettled} sockets had no resume_success after a {} s drain", opts.drain_s));
    }
    if !aborted && opts.x.fraction > 0.0 && t.reconnects == 0 && storms > 0 {
        report.warn("no socket was dropped (too few sockets for the fraction?)");
    }
    if t.reordered > 0 {
        report.fail(format!(
            "{} messages arrived before older ones (the server must hold live frames behind a replay)",
            t.reordered
        ));
    }
    if t.events_rejected + t.events_unanswered > 0 {
        report.warn(format!("{} events rejected or unanswered", t.events_rejected + t.events_unanswered));
    }
    conclude(report, &monitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(base: u64) -> Track {
        Track {
            ch: 0,
            base,
            stream: Vec::new(),
            max: base,
            seen: Vec::new(),
            resume_stream: Vec::new(),
            resume_serial: 0,
            subscribed: false,
        }
    }

    #[test]
    fn loss_duplication_and_order_are_order_independent() {
        let mut tr = track(10);
        assert_eq!(tr.record(11), (false, false));
        assert_eq!(tr.record(13), (false, false));
        assert_eq!(tr.record(12), (false, true), "older after newer: reordered");
        assert_eq!(tr.record(13), (true, false), "seen twice");
        assert_eq!(tr.record(10), (true, false), "at the start position");
        assert_eq!(tr.lost(13), 0);
        assert_eq!(tr.lost(15), 2, "14 and 15 never came");
        for s in 14..=200 {
            tr.record(s);
        }
        assert_eq!(tr.lost(200), 0);
        assert_eq!(tr.lost(201), 1);
        assert_eq!(track(5).lost(5), 0);
    }
}
