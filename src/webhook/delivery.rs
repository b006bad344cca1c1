//! One webhook request: what it carries, one blocking attempt at it, and how its outcome is
//! classified for the retry schedule (`docs/protocol/http-api.md#webhooks`). Runs on the
//! sender's worker threads, never on a shard.

use super::sender::LOG_EVERY;
use crate::config::{AppIdx, Registry, Retry};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One HTTP request of a webhook: a signed body and how to retry it.
pub(super) struct Delivery {
    pub(super) app: AppIdx,
    pub(super) hook: usize,
    /// The webhook's index among all apps' webhooks (`Dispatcher::loads`).
    pub(super) slot: usize,
    pub(super) body: Arc<Vec<u8>>,
    pub(super) signature: String,
    pub(super) retry: Retry,
    pub(super) timeout: Duration,
    pub(super) attempts: u32,
    pub(super) first_attempt: Option<Instant>,
}

pub(super) enum Outcome {
    Delivered,
    /// Connection error, timeout, 5xx, 408, 409, 425 or 429
    /// (`docs/protocol/http-api.md#batching-and-retries`).
    Retryable(String),
    Permanent(String),
}

/// Rate-limited logging of failed deliveries: one line per `LOG_EVERY`, with a count of the
/// lines left out.
pub(super) struct FailureLog {
    pub(super) last: Option<Instant>,
    pub(super) suppressed: u64,
}

impl FailureLog {
    pub(super) fn log(&mut self, msg: impl FnOnce() -> String) {
        let now = Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return;
        }
        let more = std::mem::take(&mut self.suppressed);
        let tail = if more > 0 { format!(" ({more} more failures not logged)") } else { String::new() };
        log::warn!("{}{tail}", msg());
        self.last = Some(now);
    }
}

/// Makes one attempt of a delivery (headers as in `docs/protocol/http-api.md#webhook-requests`);
/// blocking, on a worker thread.
pub(super) fn post(agent: &ureq::Agent, apps: &Registry, d: &mut Delivery) -> Outcome {
    d.attempts += 1;
    d.first_attempt.get_or_insert_with(Instant::now);
    let app = apps.get(d.app);
    let hook = &app.webhooks[d.hook];
    let mut req = agent
        .post(&hook.url)
        .timeout(d.timeout)
        .set("Content-Type", "application/json")
        .set("X-Pusher-Key", &app.key)
        .set("X-Pusher-Signature", &d.signature);
    for (name, value) in &hook.headers {
        req = req.set(name, value);
    }
    match req.send_bytes(&d.body) {
        Ok(resp) => {
            let status = resp.status();
            drain(resp);
            if (200..300).contains(&status) {
                Outcome::Delivered
            } else {
                Outcome::Permanent(format!("HTTP {status}"))
            }
        }
        Err(ureq::Error::Status(status, resp)) => {
            drain(resp);
            if retryable_status(status) {
                Outcome::Retryable(format!("HTTP {status}"))
            } else {
                Outcome::Permanent(format!("HTTP {status}"))
            }
        }
        Err(ureq::Error::Transport(t)) => match t.kind() {
            ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => Outcome::Permanent(t.to_string()),
            _ => Outcome::Retryable(t.to_string()),
        },
    }
}

/// Statuses worth another attempt (`docs/protocol/http-api.md#batching-and-retries`).
pub(super) fn retryable_status(status: u16) -> bool {
    (500..600).contains(&status) || matches!(status, 408 | 409 | 425 | 429)
}

/// Reads (a bounded part of) the response body, so the connection can be reused.
fn drain(resp: ureq::Response) {
    let mut sink = Vec::new();
    let _ = resp.into_reader().take(64 << 10).read_to_end(&mut sink);
}
