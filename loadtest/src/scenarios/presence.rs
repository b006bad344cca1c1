//! `presence`: M members (user `u<i>`) join C presence channels (member i → channel i mod C);
//! each member keeps its view of the channel from `subscription_succeeded` plus
//! `member_added` / `member_removed`. Measured: the time until every view equals the full
//! member set (join), then — after a fraction of members leave — until every remaining view
//! equals the remaining set (leave). Views are checked incrementally: each member tracks how
//! many ids its view has wrong, so consistency is a sum reaching zero.

use std::sync::Arc;

use mio::Registry;
use serde_json::Value;

use super::*;
use crate::cli::Args;
use crate::clock::MS;
use crate::engine::ConnId;
use crate::pusher::{self, Kind};
use crate::signing::{self, Signer};
use crate::stats::{inc, phase, set, Counters};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leave {
    Unsubscribe,
    Close,
}

#[derive(Clone, Debug)]
pub struct Opts {
    pub members: usize,
    pub channels: usize,
    pub leave_fraction: f64,
    pub leave: Leave,
    pub timeout_s: f64,
}

impl Opts {
    pub fn parse(a: &Args) -> Result<Opts, String> {
        let o = Opts {
            members: a.num("sockets", 100, 50)?,
            channels: a.num("channels", 2, 2)?,
            leave_fraction: a.num("leave-fraction", 0.5, 0.5)?,
            leave: match a.str("leave", "unsubscribe").as_str() {
                "unsubscribe" => Leave::Unsubscribe,
                "close" => Leave::Close,
                other => return Err(format!("--leave: unsubscribe or close, not {other:?}")),
            },
            timeout_s: a.num("timeout", 30.0, 15.0)?,
        };
        if o.members == 0 || o.channels == 0 {
            return Err("--sockets and --channels must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&o.leave_fraction) {
            return Err("--leave-fraction: 0..=1".into());
        }
        Ok(o)
    }

    /// Members of channel `c`.
    fn per_channel(&self, c: usize) -> usize {
        (self.members + self.channels - 1 - c) / self.channels
    }

    /// Whether the k-th member of a channel leaves (spread evenly, ≈ fraction of each channel).
    fn leaves(&self, k: usize) -> bool {
        let f = self.leave_fraction;
        ((k + 1) as f64 * f).floor() > (k as f64 * f).floor()
    }

    fn channel_name(c: usize) -> String {
        format!("presence-lt-{c}")
    }
}

struct Member {
    i: usize,
    id: Option<ConnId>,
    /// subscription_succeeded received.
    synced: bool,
    /// This member has left (or failed); its view no longer counts.
    gone: bool,
    /// Bitset over the channel's members (index k = i / C).
    view: Vec<u64>,
    /// Ids in the view that are not our users (should never happen).
    foreign: i64,
    /// |view Δ expected| + foreign.
    mismatch: i64,
}

struct Worker {
    t: usize,
    threads: usize,
    concurrency: usize,
    opts: Arc<Opts>,
    shared: Arc<Shared>,
    signer: Signer,
    key: String,
    members: Vec<Member>,
    next_open: usize,
    /// Phase whose expected set the mismatches are computed against.
    applied_phase: u32,
    added: u64,
    removed: u64,
    errors_shown: u32,
    /// Views changed since the totals were last published.
    dirty: bool,
    causes: Causes,
    buf: Vec<u8>,
}

pub struct WorkerResult {
    added: u64,
    removed: u64,
    causes: Causes,
}

fn bit(view: &[u64], k: usize) -> bool {
    view.get(k / 64).is_some_and(|w| w >> (k % 64) & 1 == 1)
}

/// The member index of a user id `u<i>` on channel `c`, if it is one of ours.
fn member_k(user_id: &str, channels: usize, c: usize) -> Option<usize> {
    let i: usize = user_id.strip_prefix('u')?.parse().ok()?;
    (i % channels == c).then_some(i / channels)
}

impl Worker {
    fn c(&self) -> &Counters {
        &self.shared.workers[self.t]
    }

    fn local(&self, tag: u32) -> usize {
        tag as usize / self.threads
    }

    /// Whether member k of a channel belongs in views during `phase`.
    fn expected(&self, k: usize, ph: u32) -> bool {
        ph == phase::SETUP || !self.opts.leaves(k)
    }

    fn recompute(&mut self, l: usize) {
        let ph = self.applied_phase;
        let m = &self.members[l];
        let c = m.i % self.opts.channels;
        let mut wrong = m.foreign;
        for k in 0..self.opts.per_channel(c) {
            if bit(&m.view, k) != self.expected(k, ph) {
                wrong += 1;
            }
        }
        self.members[l].mismatch = wrong;
    }

    /// Publishes this thread's totals for the coordinator (from `tick`, so at most every 20 ms).
    fn publish_totals(&mut self) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let live = self.members.iter().filter(|m| !m.gone);
        let (mismatch, synced) = live.fold((0i64, 0u64), |(w, s), m| (w + m.mismatch, s + m.synced as u64));
        let c = self.c();
        set(&c.view_mismatch, mismatch.max(0) as u64);
        set(&c.members_synced, synced);
    }

    /// A view changed just now.
    fn changed(&mut self) {
        self.dirty = true;
        set(&self.shared.workers[self.t].last_view_change_ns, crate::clock::now_ns());
    }

    fn set_bit(&mut self, l: usize, user_id: &str, present: bool) -> bool {
        let opts = &self.opts;
        let c = self.members[l].i % opts.channels;
        let ph = self.applied_phase;
        let m = &mut self.members[l];
        match member_k(user_id, opts.channels, c).filter(|&k| k < opts.per_channel(c)) {
            Some(k) => {
                if bit(&m.view, k) == present {
                    return false;
                }
                m.view[k / 64] ^= 1 << (k % 64);
                let expected = ph == phase::SETUP || !opts.leaves(k);
                m.mismatch += if present == expected { -1 } else { 1 };
                true
            }
            None => {
                let d = if present { 1 } else { -1 };
                m.foreign += d;
                m.mismatch += d;
                true
            }
        }
    }

    fn on_presence_event(&mut self, l: usize, kind: Kind, text: &[u8]) {
        let Ok(v) = serde_json::from_slice::<Value>(text) else {
            return;
        };
        let data: Value = match &v["data"] {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            other => other.clone(),
        };
        let changed = match kind {
            Kind::SubscriptionSucceeded => {
                if self.members[l].synced {
                    return;
                }
                let m = &mut self.members[l];
                m.synced = true;
                m.view.iter_mut().for_each(|w| *w = 0);
                m.foreign = 0;
                inc(&self.shared.workers[self.t].subscribed);
                if let Some(ids) = data["presence"]["ids"].as_array() {
                    for id in ids {
                        if let Some(s) = id.as_str() {
                            self.set_bit(l, s, true);
                        }
                    }
                }
                self.recompute(l);
                true
            }
            Kind::MemberAdded => {
                self.added += 1;
                data["user_id"].as_str().is_some_and(|u| {
                    let u = u.to_string();
                    self.set_bit(l, &u, true)
                })
            }
            Kind::MemberRemoved => {
                self.removed += 1;
                data["user_id"].as_str().is_some_and(|u| {
                    let u = u.to_string();
                    self.set_bit(l, &u, false)
                })
            }
            _ => false,
        };
        inc(&self.c().presence_events);
        if changed {
            self.changed();
        }
    }

    /// The coordinator moved to the leave phase: leavers go, everyone else re-evaluates.
    fn apply_leave(&mut self, io: &mut Engine) {
        self.applied_phase = phase::RUN;
        for l in 0..self.members.len() {
            let i = self.members[l].i;
            let (c, k) = (i % self.opts.channels, i / self.opts.channels);
            if self.opts.leaves(k) {
                self.members[l].gone = true;
                if let Some(id) = self.members[l].id {
                    match self.opts.leave {
                        Leave::Unsubscribe => {
                            self.buf.clear();
                            pusher::unsubscribe(&mut self.buf, io.proto(), &Opts::channel_name(c));
                            io.send_text(id, &self.buf);
                        }
                        Leave::Close => io.close(id),
                    }
                }
            } else {
                self.recompute(l);
            }
        }
        self.dirty = true;
    }
}

impl Driver for Worker {
    fn tick(&mut self, io: &mut Engine, now: u64) -> Option<u64> {
        let ph = self.shared.phase();
        if ph == phase::DONE {
            return None;
        }
        if ph == phase::SETUP {
            while self.next_open < self.members.len() && io.pending() < self.concurrency {
                let l = self.next_open;
                self.next_open += 1;
                inc(&self.c().connect_started);
                self.members[l].id = io.open(self.members[l].i as u32);
            }
        } else if ph == phase::RUN && self.applied_phase != phase::RUN {
            let at = crate::clock::now_ns();
            self.apply_leave(io);
            self.publish_totals();
            // Tell the coordinator the new expected sets are in force.
            set(&self.c().leave_applied_ns, at);
        }
        self.publish_totals();
        Some(now + 20 * MS)
    }

    fn on_established(&mut self, io: &mut Engine, id: ConnId, tag: u32) {
        inc(&self.c().connected);
        let i = tag as usize;
        let channel = Opts::channel_name(i % self.opts.channels);
        let channel_data = format!(r#"{{"user_id":"u{i}","user_info":{{}}}}"#);
        let auth = signing::presence_auth(&self.signer, &self.key, io.socket_id(id), &channel, &channel_data);
        self.buf.clear();
        pusher::subscribe(&mut self.buf, io.proto(), &channel, Some(&auth), Some(&channel_data));
        io.send_text(id, &self.buf);
    }

    fn on_event(&mut self, _io: &mut Engine, _id: ConnId, tag: u32, kind: Kind, text: &[u8]) {
        let l = self.local(tag);
        match kind {
            Kind::SubscriptionSucceeded | Kind::MemberAdded | Kind::MemberRemoved if !self.members[l].gone => {
                self.on_presence_event(l, kind, text);
            }
            Kind::Error | Kind::SubscriptionError => {
                inc(&self.c().server_errors);
                if !self.members[l].synced {
                    inc(&self.c().subscribe_failed);
                    self.members[l].gone = true;
                    self.dirty = true;
                    if self.errors_shown < 3 {
                        self.errors_shown += 1;
                        eprintln!("loadtest: member u{} got {}", self.members[l].i, String::from_utf8_lossy(text));
                    }
                }
            }
            _ => {}
        }
    }

    fn on_closed(&mut self, _io: &mut Engine, tag: u32, cause: Cause) {
        let l = self.local(tag);
        let m = &mut self.members[l];
        m.id = None;
        if cause.is_connect_failure() {
            inc(&self.shared.workers[self.t].connect_failed);
            self.causes.add(cause);
        } else if !(m.gone && self.opts.leave == Leave::Close) {
            inc(&self.shared.workers[self.t].closed_unexpectedly);
            self.causes.add(cause);
        }
    }
}

impl Finish for Worker {
    type Output = WorkerResult;
    fn finish(self) -> WorkerResult {
        WorkerResult { added: self.added, removed: self.removed, causes: self.causes }
    }
}

pub fn run(args: &Args, common: &Common) -> Outcome {
    let (opts, target, shared, mut monitor) = setup(args, common, Opts::parse, |_| 0)?;
    let threads = common.threads;
    let concurrency = (common.concurrency / threads).max(1);
    let handles = {
        let (opts, shared, c) = (opts.clone(), shared.clone(), common.clone());
        spawn_workers(threads, &target, move |t, _registry: &Registry| {
            let members: Vec<Member> = (t..opts.members)
                .step_by(threads)
                .map(|i| {
                    let n = opts.per_channel(i % opts.channels);
                    Member {
                        i,
                        id: None,
                        synced: false,
                        gone: false,
                        view: vec![0; n.div_ceil(64)],
                        foreign: 0,
                        mismatch: n as i64,
                    }
                })
                .collect();
            Worker {
                t,
                threads,
                concurrency,
                opts: opts.clone(),
                shared: shared.clone(),
                signer: Signer::new(&c.secret),
                key: c.key.clone(),
                members,
                next_open: 0,
                applied_phase: phase::SETUP,
                added: 0,
                removed: 0,
                errors_shown: 0,
                dirty: true,
                causes: Causes::default(),
                buf: Vec::with_capacity(512),
            }
        })
    };
    let progress = |_: &Sample, s: &Sample| {
        let t = &s.totals;
        format!(
            "{:5} connected {}/{} synced {} wrong view entries {} presence events {} errors {}",
            if s.phase == phase::SETUP { "join" } else { "leave" },
            t.connected,
            opts.members,
            t.members_synced,
            t.view_mismatch,
            t.presence_events,
            t.server_errors
        )
    };
    let members = opts.members as u64;
    let timeout = (opts.timeout_s * SEC as f64) as u64;

    // Join.
    let join_start = now_ns();
    let s1 = monitor.sample(&shared);
    let mut join_ok = false;
    loop {
        nap();
        monitor.tick(&shared, progress);
        let t = shared.totals();
        if t.members_synced == members && t.view_mismatch == 0 {
            join_ok = true;
            break;
        }
        let hopeless = t.connect_failed + t.subscribe_failed + t.closed_unexpectedly > 0
            && t.members_synced + t.connect_failed + t.subscribe_failed + t.closed_unexpectedly >= members;
        if hopeless || now_ns() - join_start > timeout {
            break;
        }
    }
    let tj = shared.totals();
    let join_ns = tj.last_view_change_ns.saturating_sub(join_start);
    let s_join = monitor.sample(&shared);

    // Leave.
    let mut leave_ok = false;
    let mut leave_ns = 0;
    let leavers: u64 = (0..opts.members).filter(|&i| opts.leaves(i / opts.channels)).count() as u64;
    if join_ok {
        let leave_start = now_ns();
        shared.set_phase(phase::RUN, leave_start);
        loop {
            nap();
            monitor.tick(&shared, progress);
            let t = shared.totals();
            let applied = t.leave_applied_ns != 0;
            if applied && t.view_mismatch == 0 {
                leave_ok = true;
                leave_ns = t.last_view_change_ns.saturating_sub(t.leave_applied_ns);
                break;
            }
            if now_ns() - leave_start > timeout {
                break;
            }
        }
        // Let late events (e.g. duplicates) show up before stopping.
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (s2, results) = stop(&mut monitor, &shared, handles);
    let t = s2.totals;
    let added: u64 = results.iter().map(|r| r.added).sum();
    let removed: u64 = results.iter().map(|r| r.removed).sum();
    let causes = Causes::merge(results.iter().map(|r| r.causes.clone()));
    let (mut exp_added, mut exp_removed) = (0u64, 0u64);
    for c in 0..opts.channels {
        let n = opts.per_channel(c) as u64;
        let l = (0..n as usize).filter(|&k| opts.leaves(k)).count() as u64;
        exp_added += n * n.saturating_sub(1) / 2;
        exp_removed += l * (n - l);
    }

    let mut report = Report::new("presence", target_name(common), args.given());
    report.line(
        "members",
        format!(
            "{} on {} channels ({}–{} per channel), {} connected, {} connect failures, {} subscribe failures",
            opts.members,
            opts.channels,
            opts.per_channel(opts.channels - 1),
            opts.per_channel(0),
            tj.connected,
            t.connect_failed,
            t.subscribe_failed
        ),
    );
    report.line(
        "join",
        if join_ok {
            format!("all {} views consistent {:.1} ms after the first connect", opts.members, join_ns as f64 / 1e6)
        } else {
            format!("NOT consistent: {} members synced, {} wrong view entries", tj.members_synced, tj.view_mismatch)
        },
    );
    report.line(
        "leave",
        if !join_ok {
            "skipped".to_string()
        } else if leave_ok {
            format!(
                "{} members left by {:?}; remaining views consistent after {:.1} ms",
                leavers,
                opts.leave,
                leave_ns as f64 / 1e6
            )
        } else {
            format!("NOT consistent after {} s: {} wrong view entries", opts.timeout_s, t.view_mismatch)
        },
    );
    report.line(
        "events",
        format!(
            "member_added {} (minimum for these joins {}), member_removed {} (expected {}), server errors {}",
            added, exp_added, removed, exp_removed, t.server_errors
        ),
    );
    report.line("connections ended", causes.describe());
    if let Some(cpu) = server_cpu_us(&s1, &s2) {
        report.line(
            "server",
            format!("CPU {:.3} s over join+leave = {:.1} µs per member", cpu as f64 / 1e6, cpu as f64 / members as f64),
        );
        report.metric("server_cpu_us", cpu);
    }
    report.metric("members", members);
    report.metric("channels", opts.channels as u64);
    report.metric("join_consistent", join_ok);
    report.metric("join_ms", join_ns as f64 / 1e6);
    report.metric("leave_consistent", leave_ok);
    report.metric("leave_ms", leave_ns as f64 / 1e6);
    report.metric("leavers", leavers);
    report.metric("member_added_events", added);
    report.metric("member_removed_events", removed);
    let _ = s_join;
    report.chart(
        "Presence events",
        "per second",
        vec![("events/s".into(), series(&monitor.samples, |t| t.presence_events))],
    );
    add_server_charts(&mut report, &monitor.samples);
    if !join_ok {
        report.fail("member views did not become consistent after the joins");
    }
    if join_ok && !leave_ok {
        report.fail("member views did not become consistent after the leaves");
    }
    if t.connect_failed > 0 {
        report.fail(format!("{} members failed to connect", t.connect_failed));
    }
    if t.subscribe_failed > 0 {
        report.fail(format!("{} members could not subscribe (see the server errors above)", t.subscribe_failed));
    }
    if t.closed_unexpectedly > 0 {
        report.fail(format!("{} members were disconnected", t.closed_unexpectedly));
    }
    conclude(report, &monitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leavers_are_spread() {
        let mut o = Opts { members: 10, channels: 2, leave_fraction: 0.5, leave: Leave::Unsubscribe, timeout_s: 1.0 };
        assert_eq!((0..10).filter(|&k| o.leaves(k)).count(), 5);
        o.leave_fraction = 0.0;
        assert_eq!((0..10).filter(|&k| o.leaves(k)).count(), 0);
        o.leave_fraction = 1.0;
        assert_eq!((0..10).filter(|&k| o.leaves(k)).count(), 10);
        assert_eq!(o.per_channel(0), 5);
        assert_eq!(member_k("u7", 2, 1), Some(3));
        assert_eq!(member_k("u7", 2, 0), None);
        assert_eq!(member_k("x", 2, 0), None);
    }
}
