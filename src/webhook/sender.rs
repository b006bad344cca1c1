//! Delivery: the bounded queue the shards push into, and the threads behind it.
//!
//! One dispatcher thread takes events off the queue, gathers them per app for the batch window
//! (`docs/protocol/http-api.md#batching-and-retries`), builds and signs one body per webhook with
//! the events that webhook wants, and hands the requests to at most `max_concurrent` worker threads
//! (started as needed), each making blocking HTTP requests. Failed requests come back to the
//! dispatcher, which schedules the retries. Everything waiting is bounded: the queue (events and
//! bytes), the requests ready to go (per webhook, and bytes) and the retries waiting (bytes); past
//! a bound the newest work is dropped and counted, so a dead endpoint costs at most those bounds
//! and never slows a shard. One webhook holds at most half the workers, so a slow or dead endpoint
//! leaves the others room.

use super::delivery::{post, Delivery, FailureLog, Outcome};
use super::{payload, WebhookEvent};
use crate::config::{AppIdx, Registry, Settings};
use crate::time::unix_ms;
use crossbeam_channel::{select, Receiver, Sender, TrySendError};
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Event data the queue may hold, whatever `queue_capacity` allows (client events can be large).
const QUEUE_MAX_BYTES: usize = 64 << 20;
/// Request bodies built and waiting for a free worker; past this no more events are taken.
const READY_MAX_BYTES: usize = 64 << 20;
/// Requests of one webhook waiting for a worker (retries not counted); more are given up.
const HOOK_MAX_READY: usize = 1000;
/// Request bodies waiting for a retry; past this a failed request is given up.
const RETRY_MAX_BYTES: usize = 64 << 20;
/// At most one log line per this interval for drops and for failed deliveries.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(10);

/// Webhook counters. Events: `queued` (accepted into the queue), `dropped` (queue full or
/// server stopping). Requests: `sent` (answered 2xx), `failed` (given up: permanent error,
/// retries used up, retry backlog full, or abandoned at shutdown), `retried` (attempts
/// scheduled again after a retryable failure).
#[derive(Default, Debug)]
pub struct WebhookStats {
    pub queued: AtomicU64,
    pub dropped: AtomicU64,
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub retried: AtomicU64,
}

/// The counters read at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookStatsSnapshot {
    pub queued: u64,
    pub dropped: u64,
    pub sent: u64,
    pub failed: u64,
    pub retried: u64,
}

impl WebhookStats {
    pub fn snapshot(&self) -> WebhookStatsSnapshot {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WebhookStatsSnapshot {
            queued: r(&self.queued),
            dropped: r(&self.dropped),
            sent: r(&self.sent),
            failed: r(&self.failed),
            retried: r(&self.retried),
        }
    }
}

/// An event on its way to the dispatcher.
struct Queued {
    app: AppIdx,
    time_ms: u64,
    event: WebhookEvent,
    size: usize,
}

/// The handle every shard shares (in `Context`): push events, read the counters, stop.
pub struct Webhooks {
    queue: Sender<Queued>,
    pub stats: Arc<WebhookStats>,
    queued_bytes: Arc<AtomicUsize>,
    /// Unix ms of the last "queue full" log line.
    last_drop_log: AtomicU64,
    stop: Sender<Instant>,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
}

impl Webhooks {
    /// Starts the sender when some app has webhooks; `None` otherwise (nothing runs then).
    pub fn start(settings: &Settings, apps: Arc<Registry>) -> Result<Option<Webhooks>, String> {
        if (0..apps.len()).all(|i| apps.get(i as AppIdx).webhooks.is_empty()) {
            return Ok(None);
        }
        let (queue, events) = crossbeam_channel::bounded(settings.queue_capacity);
        let (stop, stop_rx) = crossbeam_channel::bounded(1);
        let stats = Arc::new(WebhookStats::default());
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        let dispatcher = Dispatcher::new(settings.clone(), apps, events, stop_rx, stats.clone(), queued_bytes.clone());
        let handle = std::thread::Builder::new()
            .name("webhooks".into())
            .spawn(move || dispatcher.run())
            .map_err(|e| format!("cannot start the webhook sender: {e}"))?;
        Ok(Some(Webhooks {
            queue,
            stats,
            queued_bytes,
            last_drop_log: AtomicU64::new(0),
            stop,
            dispatcher: Mutex::new(Some(handle)),
        }))
    }

    /// Queues an event without waiting; when the queue is full it is dropped and counted.
    pub fn push(&self, app: AppIdx, event: WebhookEvent) {
        let size = event.size();
        let bytes = self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        let sent = if bytes + size > QUEUE_MAX_BYTES {
            false
        } else {
            match self.queue.try_send(Queued { app, time_ms: unix_ms(), event, size }) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            }
        };
        if sent {
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
        let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = unix_ms();
        let last = self.last_drop_log.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64
            && self.last_drop_log.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            log::warn!("webhook queue full: events dropped ({dropped} in all since start)");
        }
    }

    /// Sends what is queued and waits for requests in flight, at most `grace`; what is still
    /// waiting then (e.g. retries) is given up and counted as failed.
    pub fn stop(&self, grace: Duration) {
        let _ = self.stop.try_send(Instant::now() + grace);
        let handle = self.dispatcher.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// Events of one app gathered during the batch window.
struct Batch {
    opened: Instant,
    events: Vec<(u64, WebhookEvent)>,
}

#[derive(Default, Clone, Copy)]
struct Load {
    ready: usize,
    busy: usize,
}

struct Dispatcher {
    settings: Settings,
    apps: Arc<Registry>,
    events: Receiver<Queued>,
    never: Receiver<Queued>,
    stop: Receiver<Instant>,
    stats: Arc<WebhookStats>,
    queued_bytes: Arc<AtomicUsize>,
    batches: Vec<Option<Batch>>,
    ready: VecDeque<Delivery>,
    ready_bytes: usize,
    /// Per app, the slot of its first webhook in `loads`.
    first_slot: Vec<usize>,
    /// Per webhook: requests ready and in flight.
    loads: Vec<Load>,
    /// Requests of one webhook in flight at once.
    hook_max_busy: usize,
    /// Waiting retries by due time (and a sequence number to keep equal times apart).
    retries: BTreeMap<(Instant, u64), Delivery>,
    retry_bytes: usize,
    seq: u64,
    in_flight: usize,
    work: Sender<Delivery>,
    work_rx: Receiver<Delivery>,
    done: Sender<(Delivery, Outcome)>,
    done_rx: Receiver<(Delivery, Outcome)>,
    workers: usize,
    agent: ureq::Agent,
    failures: FailureLog,
}

impl Dispatcher {
    fn new(
        settings: Settings,
        apps: Arc<Registry>,
        events: Receiver<Queued>,
        stop: Receiver<Instant>,
        stats: Arc<WebhookStats>,
        queued_bytes: Arc<AtomicUsize>,
    ) -> Dispatcher {
        let (work, work_rx) = crossbeam_channel::unbounded();
        let (done, done_rx) = crossbeam_channel::unbounded();
        let agent = ureq::AgentBuilder::new()
            .redirects(0)
            .user_agent(concat!("sockudo/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections(settings.max_concurrent * 2)
            .max_idle_connections_per_host(settings.max_concurrent)
            .build();
        let mut first_slot = Vec::with_capacity(apps.len());
        let mut slots = 0;
        for i in 0..apps.len() {
            first_slot.push(slots);
            slots += apps.get(i as AppIdx).webhooks.len();
        }
        Dispatcher {
            batches: (0..apps.len()).map(|_| None).collect(),
            first_slot,
            loads: vec![Load::default(); slots],
            hook_max_busy: (settings.max_concurrent / 2).max(1),
            settings,
            apps,
            events,
            never: crossbeam_channel::never(),
            stop,
            stats,
            queued_bytes,
            ready: VecDeque::new(),
            ready_bytes: 0,
            retries: BTreeMap::new(),
            retry_bytes: 0,
            seq: 0,
            in_flight: 0,
            work,
            work_rx,
            done,
            done_rx,
            workers: 0,
            agent,
            failures: FailureLog { last: None, suppressed: 0 },
        }
    }

    fn run(mut self) {
        let mut deadline: Option<Instant> = None;
        loop {
            let now = Instant::now();
            self.flush_batches(now, deadline.is_some());
            self.release_retries(now);
            self.dispatch();
            if let Some(d) = deadline {
                let waiting_retry = self.retries.keys().next().is_some_and(|(due, _)| *due <= d);
                if now >= d || (self.ready.is_empty() && self.in_flight == 0 && !waiting_retry) {
                    self.abandon();
                    return;
                }
            }
            let wake = self.next_wake(now, deadline);
            let take_events = deadline.is_none() && self.ready_bytes < READY_MAX_BYTES;
            let events = if take_events { &self.events } else { &self.never };
            select! {
                recv(events) -> q => match q {
                    Ok(q) => {
                        self.take(q);
                        // Take what else is already there in the same pass.
                        for _ in 0..4096 {
                            match self.events.try_recv() {
                                Ok(q) => self.take(q),
                                Err(_) => break,
                            }
                        }
                    }
                    Err(_) => deadline = Some(Instant::now()),
                },
                recv(self.done_rx) -> r => {
                    if let Ok((d, outcome)) = r {
                        self.finished(d, outcome);
                    }
                }
                recv(self.stop) -> d => {
                    let d = d.unwrap_or_else(|_| Instant::now());
                    deadline = Some(d);
                    // Everything already queued goes out with the final batches.
                    while let Ok(q) = self.events.try_recv() {
                        self.take(q);
                    }
                }
                default(wake) => {}
            }
        }
    }

    /// When the loop must look again without news: the next batch or retry due, at most 1 s.
    fn next_wake(&self, now: Instant, deadline: Option<Instant>) -> Duration {
        let mut at = now + Duration::from_secs(1);
        for b in self.batches.iter().flatten() {
            at = at.min(b.opened + self.settings.batch_duration);
        }
        if let Some((due, _)) = self.retries.keys().next() {
            at = at.min(*due);
        }
        if let Some(d) = deadline {
            at = at.min(d);
        }
        at.saturating_duration_since(now)
    }

    fn take(&mut self, q: Queued) {
        self.queued_bytes.fetch_sub(q.size, Ordering::Relaxed);
        let Some(slot) = self.batches.get_mut(q.app as usize) else { return };
        let batch = slot.get_or_insert_with(|| Batch { opened: Instant::now(), events: Vec::new() });
        batch.events.push((q.time_ms, q.event));
        if !self.settings.batching || batch.events.len() >= self.settings.batch_size {
            let batch = slot.take().expect("just filled");
            self.make_deliveries(q.app, batch.events);
        }
    }

    /// Closes the batches whose window has passed (all of them when stopping).
    fn flush_batches(&mut self, now: Instant, all: bool) {
        for app in 0..self.batches.len() {
            let due = self.batches[app]
                .as_ref()
                .is_some_and(|b| all || !self.settings.batching || now >= b.opened + self.settings.batch_duration);
            if due {
                let batch = self.batches[app].take().expect("checked");
                self.make_deliveries(app as AppIdx, batch.events);
            }
        }
    }

    /// One signed request per webhook of the app that wants some of these events
    /// (`docs/protocol/http-api.md#webhook-requests`); the same body for the same URL is sent once.
    fn make_deliveries(&mut self, app: AppIdx, events: Vec<(u64, WebhookEvent)>) {
        let apps = self.apps.clone();
        let a = apps.get(app);
        let mut seen: HashSet<(&str, Arc<Vec<u8>>)> = HashSet::new();
        for (i, hook) in a.webhooks.iter().enumerate() {
            let wanted: Vec<&(u64, WebhookEvent)> =
                events.iter().filter(|(_, e)| hook.wants(e.kind(), e.channel())).collect();
            let Some(time_ms) = wanted.iter().map(|(t, _)| *t).min() else { continue };
            let body = Arc::new(payload(time_ms, wanted.iter().map(|(_, e)| e)));
            if !seen.insert((hook.url.as_str(), body.clone())) {
                continue;
            }
            let slot = self.first_slot[app as usize] + i;
            if self.loads[slot].ready >= HOOK_MAX_READY {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let url = &hook.url;
                self.failures.log(|| {
                    format!("webhook {url} of app {}: {HOOK_MAX_READY} requests waiting; one more dropped", a.id)
                });
                continue;
            }
            self.loads[slot].ready += 1;
            self.ready_bytes += body.len();
            self.ready.push_back(Delivery {
                app,
                hook: i,
                slot,
                signature: crate::auth::sign(&a.secret, &body),
                body,
                retry: self.settings.retry.with(&hook.retry),
                timeout: hook.request_timeout.unwrap_or(self.settings.request_timeout),
                attempts: 0,
                first_attempt: None,
            });
        }
    }

    fn release_retries(&mut self, now: Instant) {
        while let Some(entry) = self.retries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let d = entry.remove();
            self.retry_bytes -= d.body.len();
            self.ready_bytes += d.body.len();
            self.loads[d.slot].ready += 1;
            self.ready.push_back(d);
        }
    }

    /// Hands ready requests to workers, oldest first, while fewer than `max_concurrent` are in
    /// flight, skipping those whose webhook already has its share of the workers.
    fn dispatch(&mut self) {
        let mut i = 0;
        while self.in_flight < self.settings.max_concurrent && i < self.ready.len() {
            if self.loads[self.ready[i].slot].busy >= self.hook_max_busy {
                i += 1;
                continue;
            }
            let d = self.ready.remove(i).expect("index checked");
            self.ready_bytes -= d.body.len();
            self.loads[d.slot].ready -= 1;
            self.loads[d.slot].busy += 1;
            if self.workers == self.in_flight {
                self.spawn_worker();
            }
            self.in_flight += 1;
            if self.work.send(d).is_err() {
                unreachable!("the dispatcher holds the work receiver");
            }
        }
    }

    fn spawn_worker(&mut self) {
        let (work, done, agent, apps) =
            (self.work_rx.clone(), self.done.clone(), self.agent.clone(), self.apps.clone());
        let spawned = std::thread::Builder::new().name(format!("webhook-{}", self.workers)).spawn(move || {
            while let Ok(mut d) = work.recv() {
                let outcome = post(&agent, &apps, &mut d);
                if done.send((d, outcome)).is_err() {
                    return;
                }
            }
        });
        match spawned {
            Ok(_) => self.workers += 1,
            // The requests wait for the workers there are; with none, the first one is needed.
            Err(e) if self.workers > 0 => log::warn!("cannot start another webhook worker: {e}"),
            Err(e) => panic!("cannot start a webhook worker: {e}"),
        }
    }

    fn finished(&mut self, d: Delivery, outcome: Outcome) {
        self.in_flight -= 1;
        self.loads[d.slot].busy -= 1;
        let reason = match outcome {
            Outcome::Delivered => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Outcome::Permanent(reason) => reason,
            Outcome::Retryable(reason) => {
                let elapsed = d.first_attempt.map_or(Duration::ZERO, |t| t.elapsed());
                match d.retry.next_wait(d.attempts, elapsed) {
                    Some(_) if self.retry_bytes + d.body.len() > RETRY_MAX_BYTES => {
                        format!("{reason}; retry backlog full")
                    }
                    Some(wait) => {
                        self.stats.retried.fetch_add(1, Ordering::Relaxed);
                        self.retry_bytes += d.body.len();
                        self.seq += 1;
                        self.retries.insert((Instant::now() + wait, self.seq), d);
                        return;
                    }
                    None => format!("{reason}; given up after {} attempt(s)", d.attempts),
                }
            }
        };
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        let a = self.apps.get(d.app);
        let url = &a.webhooks[d.hook].url;
        self.failures.log(|| format!("webhook {url} of app {}: delivery failed: {reason}", a.id));
    }

    /// At shutdown: whatever did not go out is counted as failed.
    fn abandon(&mut self) {
        let left = self.ready.len() + self.retries.len() + self.in_flight;
        if left > 0 {
            self.stats.failed.fetch_add(left as u64, Ordering::Relaxed);
            log::warn!("stopping: {left} webhook requests not delivered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::delivery::retryable_status;
    use super::*;
    use crate::config::{App, AppConfig, RetryConfig, WebhookConfig};

    /// A registry of one app whose webhooks have these URLs (all for channel_occupied).
    fn registry(urls: &[&str], retry: RetryConfig) -> Arc<Registry> {
        let hooks = urls
            .iter()
            .map(|u| WebhookConfig {
                url: Some(u.to_string()),
                event_types: vec!["channel_occupied".into()],
                retry: retry.clone(),
                ..WebhookConfig::default()
            })
            .collect();
        let c = AppConfig {
            id: "a".into(),
            key: "k".into(),
            secret: "s".into(),
            webhooks: Some(hooks),
            ..AppConfig::default()
        };
        Registry::new(vec![App::from_config(c).unwrap()])
    }

    fn dispatcher(apps: Arc<Registry>, settings: Settings) -> Dispatcher {
        let (_, events) = crossbeam_channel::bounded(1);
        let (_, stop) = crossbeam_channel::bounded(1);
        Dispatcher::new(settings, apps, events, stop, Arc::default(), Arc::default())
    }

    fn occupied(n: usize) -> Vec<(u64, WebhookEvent)> {
        (0..n).map(|i| (i as u64, WebhookEvent::ChannelOccupied { channel: format!("c{i}").into() })).collect()
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (queue, _held) = crossbeam_channel::bounded(2);
        let (stop, _stop_rx) = crossbeam_channel::bounded(1);
        let w = Webhooks {
            queue,
            stats: Arc::default(),
            queued_bytes: Arc::default(),
            last_drop_log: AtomicU64::new(0),
            stop,
            dispatcher: Mutex::new(None),
        };
        for i in 0..5 {
            w.push(0, WebhookEvent::ChannelOccupied { channel: format!("c{i}").into() });
        }
        let s = w.stats.snapshot();
        assert_eq!((s.queued, s.dropped), (2, 3));
        assert_eq!(
            w.queued_bytes.load(Ordering::Relaxed),
            2 * WebhookEvent::ChannelOccupied { channel: "c0".into() }.size()
        );
    }

    #[test]
    fn one_body_per_webhook_and_signed() {
        let apps =
            registry(&["http://127.0.0.1:9/a", "http://127.0.0.1:9/a", "http://127.0.0.1:9/b"], RetryConfig::default());
        let mut d = dispatcher(apps, Settings::default());
        d.make_deliveries(0, occupied(3));
        // The same URL with the same body is sent once.
        assert_eq!(d.ready.len(), 2);
        let first = &d.ready[0];
        assert_eq!(first.signature, crate::auth::sign("s", &first.body));
        let v: serde_json::Value = serde_json::from_slice(&first.body).unwrap();
        assert_eq!((v["time_ms"].as_u64(), v["events"].as_array().map(Vec::len)), (Some(0), Some(3)));
    }

    #[test]
    fn retries_are_scheduled_then_given_up() {
        let retry = RetryConfig { max_attempts: Some(2), ..RetryConfig::default() };
        let apps = registry(&["http://127.0.0.1:9/a"], retry);
        let mut d = dispatcher(apps, Settings::default());
        d.make_deliveries(0, occupied(1));
        let mut del = d.ready.pop_front().unwrap();
        (d.loads[0].ready, d.loads[0].busy, d.in_flight) = (0, 1, 1);
        del.attempts = 1;
        d.finished(del, Outcome::Retryable("HTTP 500".into()));
        assert_eq!((d.stats.snapshot().retried, d.retries.len()), (1, 1));
        let (&(due, _), _) = d.retries.iter().next().unwrap();
        assert!(due > Instant::now() + Duration::from_millis(500), "waits the initial backoff (1 s)");
        let mut del = d.retries.pop_first().unwrap().1;
        d.retry_bytes = 0;
        (d.loads[0].busy, d.in_flight) = (1, 1);
        del.attempts = 2;
        d.finished(del, Outcome::Retryable("HTTP 500".into()));
        let s = d.stats.snapshot();
        assert_eq!((s.retried, s.failed, d.retries.len()), (1, 1, 0), "two attempts in all");
        // A permanent failure is not retried.
        d.make_deliveries(0, occupied(1));
        let del = d.ready.pop_front().unwrap();
        (d.loads[0].busy, d.in_flight) = (1, 1);
        d.finished(del, Outcome::Permanent("HTTP 404".into()));
        assert_eq!(d.stats.snapshot().failed, 2);
    }

    #[test]
    fn backlog_and_worker_share_per_webhook() {
        let apps = registry(&["http://127.0.0.1:9/dead", "http://127.0.0.1:9/ok"], RetryConfig::default());
        let settings = Settings { max_concurrent: 4, ..Settings::default() };
        let mut d = dispatcher(apps, settings);
        // A webhook's backlog is capped; the rest is given up and counted.
        for i in 0..HOOK_MAX_READY + 5 {
            let e = WebhookEvent::ChannelOccupied { channel: format!("only-{i}").into() };
            d.make_deliveries(0, vec![(0, e)]);
        }
        assert_eq!(d.loads[0].ready, HOOK_MAX_READY);
        assert_eq!(d.loads[1].ready, HOOK_MAX_READY);
        assert_eq!(d.stats.snapshot().failed, 10);
        // Each webhook gets at most half the workers, though the first is older in the queue.
        d.dispatch();
        assert_eq!((d.loads[0].busy, d.loads[1].busy, d.in_flight), (2, 2, 4));
    }

    #[test]
    fn retryable_statuses() {
        for s in [500, 502, 503, 599, 408, 409, 425, 429] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 422, 301] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
