//! Node-wide rate limits (`docs/protocol/http-api.md#rate-limits`): WebSocket connects per
//! client IP and HTTP API requests per app, as fixed windows.
//!
//! A limit must hold across shards, and connections from one IP land on any shard, so each
//! limited key has an owner shard (`OwnerKey::ApiRate`, `OwnerKey::ConnectRate`) that keeps its
//! window: one mesh round trip per check, no shared lock. Only used when `rate_limiter.enabled`.
//! Windows live in memory, as the reference's do: a restart starts them afresh.

use super::route::{CrossingError, OwnerKey, Request, Responder};
use super::Shard;
use crate::config::{AppIdx, RateLimit};
use ahash::AHashMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// What is limited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// WebSocket upgrades from one client address.
    Connect(IpAddr),
    /// HTTP API requests of one app.
    Api(AppIdx),
}

/// The owner's answer: allowed or not, and what the `X-RateLimit-*` headers report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset: u64,
}

/// The windows of the keys this shard owns.
#[derive(Default)]
pub struct Windows {
    windows: AHashMap<RateKey, (Instant, u32)>,
}

impl Windows {
    fn check(&mut self, key: RateKey, limit: RateLimit, now: Instant) -> Verdict {
        let (start, count) = self.windows.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= limit.window {
            (*start, *count) = (now, 0);
        }
        let allowed = *count < limit.max_requests;
        if allowed {
            *count += 1;
        }
        let reset = limit.window.saturating_sub(now.duration_since(*start)).as_secs_f64().ceil() as u64;
        Verdict { allowed, limit: limit.max_requests, remaining: limit.max_requests - *count, reset: reset.max(1) }
    }

    /// Drops windows that ended; called by the shard's sweeper.
    pub fn expire(&mut self, now: Instant, longest: Duration) {
        self.windows.retain(|_, (start, _)| now.duration_since(*start) < longest);
    }
}

/// To the owner of a rate-limited key: count one request.
pub struct RateCheck {
    pub key: RateKey,
    pub limit: RateLimit,
}

impl Request for RateCheck {
    type Reply = Verdict;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        reply.send(shard.rate_windows.borrow_mut().check(self.key, self.limit, Instant::now()));
    }
}

/// Counts one request against `key`'s window on the key's owner shard. A shard that cannot
/// answer refuses the request rather than letting it through unchecked.
pub async fn check(shard: &Rc<Shard>, key: RateKey, limit: RateLimit) -> Result<Verdict, CrossingError> {
    let owner = match key {
        RateKey::Api(app) => shard.owner(OwnerKey::ApiRate(shard.ctx.apps.get(app))),
        RateKey::Connect(ip) => shard.owner(OwnerKey::ConnectRate(ip)),
    };
    shard.invoke_on(owner, RateCheck { key, limit }).await
}

/// The client address a limit applies to: the peer, or with `trust_hops` proxies in front,
/// the address they recorded in `X-Forwarded-For` (counted from the right).
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trust_hops: usize) -> IpAddr {
    if trust_hops == 0 {
        return peer;
    }
    let hops: Vec<&str> = forwarded_for.map(|h| h.split(',').map(str::trim).collect()).unwrap_or_default();
    hops.len().checked_sub(trust_hops).and_then(|i| hops[i].parse().ok()).unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_window() {
        let mut w = Windows::default();
        let limit = RateLimit { max_requests: 2, window: Duration::from_secs(10), trust_hops: 0 };
        let key = RateKey::Api(0);
        let t = Instant::now();
        assert_eq!(w.check(key, limit, t), Verdict { allowed: true, limit: 2, remaining: 1, reset: 10 });
        assert!(w.check(key, limit, t).allowed);
        let v = w.check(key, limit, t + Duration::from_secs(3));
        assert_eq!((v.allowed, v.remaining, v.reset), (false, 0, 7));
        // Another key has its own window; the next window starts fresh.
        assert!(w.check(RateKey::Api(1), limit, t).allowed);
        assert!(w.check(key, limit, t + Duration::from_secs(10)).allowed);
        w.expire(t + Duration::from_secs(30), limit.window);
        assert!(w.windows.is_empty());
    }

    #[test]
    fn forwarded_for_hops() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let xff = Some("1.2.3.4, 5.6.7.8");
        assert_eq!(client_ip(peer, xff, 0), peer);
        assert_eq!(client_ip(peer, xff, 1), "5.6.7.8".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(peer, xff, 2), "1.2.3.4".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(peer, xff, 3), peer);
        assert_eq!(client_ip(peer, Some("junk"), 1), peer);
    }
}
