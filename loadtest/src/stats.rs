//! State shared between the worker threads and the coordinator: the phase, per-thread counters
//! (each written by one thread only, read by the coordinator once in a while) and per-channel
//! figures for the expected-delivery count.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// One worker's counters; cache-line aligned so threads do not share lines.
        #[repr(align(128))]
        #[derive(Default)]
        pub struct Counters { $(pub $name: AtomicU64,)* }

        /// The sum over all workers at one instant.
        #[derive(Clone, Copy, Debug, Default)]
        pub struct Totals { $(pub $name: u64,)* }

        impl Totals {
            fn add(&mut self, c: &Counters) { $(self.$name += c.$name.load(Relaxed);)* }
        }
    };
}

counters!(
    // sockets
    connect_started,
    connected,
    connect_failed,
    subscribed,
    subscribe_failed,
    closed_unexpectedly,
    server_errors,
    // fanout
    delivered,
    publish_requests,
    events_accepted,
    events_rejected,
    events_unanswered,
    publish_inflight,
    // churn
    cycles_started,
    cycles_ok,
    cycles_failed,
    // presence
    presence_events,
    view_mismatch,
    members_synced,
    last_view_change_ns,
    // presence: when this worker put the leave phase in force (0: not yet)
    leave_applied_ns,
    // recovery-storm
    reconnects,
    resumes_ok,
    channels_recovered,
    channels_failed,
    replayed,
    duplicated,
    reordered,
    // recovery-storm gauges: sockets between a drop and resume_success, tracks behind the head
    unsettled,
    behind,
    // appends: WebSocket payload bytes of the append frames received, those frames (fewer than
    // the appends they carry where the server rolls appends up), append frames that name no
    // known message or carry no known fragment, create frames received
    append_bytes,
    append_frames,
    unknown_frames,
    creates_received,
    // fanout: WebSocket payload bytes of the channel frames received (full frames and deltas)
    channel_bytes,
);

/// Single-writer increment: cheaper than fetch_add, exact because only the owner writes.
#[inline]
pub fn inc(c: &AtomicU64) {
    c.store(c.load(Relaxed) + 1, Relaxed);
}

#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed) + n, Relaxed);
}

#[inline]
pub fn set(c: &AtomicU64, v: u64) {
    c.store(v, Relaxed);
}

pub struct Shared {
    phase: AtomicU32,
    phase_ns: AtomicU64,
    pub workers: Vec<Counters>,
    /// Successful subscriptions per channel (fanout).
    pub subs_per_channel: Vec<AtomicU64>,
    /// Accepted events per channel (fanout).
    pub accepted_per_channel: Vec<AtomicU64>,
}

impl Shared {
    pub fn new(threads: usize, channels: usize) -> Shared {
        Shared {
            phase: AtomicU32::new(0),
            phase_ns: AtomicU64::new(crate::clock::now_ns()),
            workers: (0..threads).map(|_| Counters::default()).collect(),
            subs_per_channel: (0..channels).map(|_| AtomicU64::new(0)).collect(),
            accepted_per_channel: (0..channels).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn phase(&self) -> u32 {
        self.phase.load(std::sync::atomic::Ordering::Acquire)
    }

    /// When the current phase started (monotonic ns).
    pub fn phase_started(&self) -> u64 {
        self.phase_ns.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn set_phase(&self, phase: u32, now: u64) {
        self.phase_ns.store(now, std::sync::atomic::Ordering::Release);
        self.phase.store(phase, std::sync::atomic::Ordering::Release);
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for w in &self.workers {
            t.add(w);
        }
        // A max, not a sum.
        t.last_view_change_ns = self.workers.iter().map(|w| w.last_view_change_ns.load(Relaxed)).max().unwrap_or(0);
        t.leave_applied_ns = self.workers.iter().map(|w| w.leave_applied_ns.load(Relaxed)).min().unwrap_or(0);
        t
    }

    /// Σ over channels of accepted events × subscribers.
    pub fn expected_deliveries(&self) -> u64 {
        self.subs_per_channel
            .iter()
            .zip(&self.accepted_per_channel)
            .map(|(s, a)| s.load(Relaxed) * a.load(Relaxed))
            .sum()
    }
}

/// Phases every scenario uses (a scenario may skip some).
pub mod phase {
    /// Opening sockets / subscribing.
    pub const SETUP: u32 = 0;
    /// The measured part: publishing, holding, churning, leaving.
    pub const RUN: u32 = 1;
    /// Waiting for stragglers.
    pub const DRAIN: u32 = 2;
    /// Workers stop.
    pub const DONE: u32 = 3;
}
