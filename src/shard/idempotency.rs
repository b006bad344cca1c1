//! Publish idempotency (`docs/protocol/http-api.md#idempotency`; unlike the reference, a failed
//! publish releases its key).
//!
//! Every key has one owner shard (`OwnerKey::Idempotency`, hashed from the app id), so claiming
//! is a plain test-and-set on that shard's table: no lock, no shared map. The HTTP side claims a
//! key before publishing and settles it afterwards with the response body (stored for the
//! window) or, if the request failed, releases it so the corrected retry goes through.
//!
//! With durable history the owner also keeps stored responses in its store, so a retry after a
//! restart (clean or `kill -9`) is still answered from the first response: a claim that misses
//! in memory looks in the store before it is granted, and a kept response is written before
//! the publish is answered. With several nodes the key is then claimed in the backplane too
//! (Redis `SET NX PX`), and a kept response or a release is shared there before the answer,
//! so a retry on another node is still a duplicate.

use super::route::{CrossingError, OwnerKey, Request, Responder};
use super::Shard;
use crate::backplane::KeyState;
use crate::config::AppIdx;
use crate::time::unix_ms;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Single publishes and batch items share one key space; a batch's header key has its own.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[repr(u8)]
pub enum Space {
    Event = 0,
    Batch = 1,
}

impl Space {
    /// Part of the key's owner hash.
    pub fn tag(self) -> &'static [u8] {
        match self {
            Space::Event => b"idempotency",
            Space::Batch => b"batch-idempotency",
        }
    }
}

/// The owner's answer to a claim.
#[derive(Debug)]
pub enum Claim {
    /// The key was free and is now held by the asker.
    Claimed,
    /// A publish with this key succeeded inside the window: its response body.
    Stored(Arc<str>),
    /// Another request holds the key and has not finished.
    InProgress,
}

enum Entry {
    InFlight,
    Done(Arc<str>),
}

/// The keys this shard owns, each with its expiry.
#[derive(Default)]
pub struct Table {
    entries: HashMap<(AppIdx, Space, Arc<str>), (Entry, Instant)>,
}

impl Table {
    fn claim(&mut self, id: (AppIdx, Space, Arc<str>), ttl: Duration, now: Instant) -> Claim {
        match self.entries.get(&id) {
            Some((Entry::Done(body), until)) if *until > now => Claim::Stored(body.clone()),
            Some((Entry::InFlight, until)) if *until > now => Claim::InProgress,
            _ => {
                self.entries.insert(id, (Entry::InFlight, now + ttl));
                Claim::Claimed
            }
        }
    }

    fn settle(&mut self, id: (AppIdx, Space, Arc<str>), body: Option<Arc<str>>, ttl: Duration, now: Instant) {
        match body {
            Some(b) => {
                self.entries.insert(id, (Entry::Done(b), now + ttl));
            }
            None => {
                self.entries.remove(&id);
            }
        }
    }

    /// Drops expired keys; called by the shard's once-a-second sweeper.
    pub fn expire(&mut self, now: Instant) {
        self.entries.retain(|_, (_, until)| *until > now);
    }
}

/// To the key's owner: take the key if free.
pub struct ClaimKey {
    pub app: AppIdx,
    pub space: Space,
    pub key: Arc<str>,
    pub ttl: Duration,
}

/// The owner's answer to a claim, with what releases the key if the asker is gone by then.
pub struct ClaimAnswer {
    pub claim: Claim,
    release: SettleKey,
}

impl Request for ClaimKey {
    type Reply = ClaimAnswer;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let ClaimKey { app, space, key, ttl } = self;
        let release = SettleKey { app, space, key: key.clone(), body: None, ttl };
        let claim = shard.idempotency.borrow_mut().claim((app, space, key.clone()), ttl, Instant::now());
        if !matches!(claim, Claim::Claimed) || (shard.store().is_none() && shard.ctx.backplane.is_none()) {
            reply.send(ClaimAnswer { claim, release });
            return;
        }
        // Held in memory meanwhile, so a concurrent claim waits as for any key in flight.
        let owner = shard.clone();
        super::spawn(shard, "idempotency lookup", async move {
            let claim = owner.look_up_key(app, space, key, ttl).await;
            reply.send(ClaimAnswer { claim, release });
        });
    }

    /// The asker gave up: a key it was granted is released at once, not held for the window.
    fn abandoned(answer: ClaimAnswer, shard: &Rc<Shard>) {
        if matches!(answer.claim, Claim::Claimed) {
            release(shard, answer.release);
        }
    }
}

impl Shard {
    /// A key just granted in memory: what this node's store kept for it (a retry after a
    /// restart), then what the cluster holds (a retry on another node).
    async fn look_up_key(&self, app: AppIdx, space: Space, key: Arc<str>, ttl: Duration) -> Claim {
        let app_id = self.ctx.apps.get(app).id.clone();
        let remember = |body: Option<Arc<str>>| {
            self.idempotency.borrow_mut().settle((app, space, key.clone()), body, ttl, Instant::now())
        };
        if let Some(store) = self.store() {
            // The store thread answers; this shard resumes.
            match store.get_idempotency(&app_id, space as u8, key.as_bytes()).await {
                Ok(Some(body)) => {
                    let body: Arc<str> = String::from_utf8_lossy(&body).into();
                    remember(Some(body.clone()));
                    return Claim::Stored(body);
                }
                Ok(None) => {}
                Err(e) => log::warn!("shard {}: idempotency lookup failed, key granted: {e}", self.id),
            }
        }
        let Some(backplane) = &self.ctx.backplane else { return Claim::Claimed };
        // Crosses to the backplane's writer thread; the answer comes back as a wake.
        match backplane.claim_key(&(app_id, space as u8, key.to_string()), ttl.as_millis() as u64).await {
            Ok(KeyState::Claimed) => Claim::Claimed,
            Ok(KeyState::Stored(body)) => {
                let body: Arc<str> = body.into();
                remember(Some(body.clone()));
                Claim::Stored(body)
            }
            Ok(KeyState::InProgress) => {
                remember(None);
                Claim::InProgress
            }
            Err(e) => {
                // The publish itself needs the backplane and will answer 503, freeing the key.
                log::warn!("shard {}: idempotency key granted on this node only: {e}", self.id);
                Claim::Claimed
            }
        }
    }
}

/// To the key's owner: the publish finished; keep its response (`Some`) or free the key.
/// Answered once a kept response is stored.
pub struct SettleKey {
    pub app: AppIdx,
    pub space: Space,
    pub key: Arc<str>,
    pub body: Option<Arc<str>>,
    pub ttl: Duration,
}

impl Request for SettleKey {
    type Reply = ();
    /// Losing a settle would leave the key held (or its response unknown) for the window.
    const REFUSABLE: bool = false;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let SettleKey { app, space, key, body, ttl } = self;
        let app_id = &shard.ctx.apps.get(app).id;
        let stored = match (&body, shard.store()) {
            (Some(b), Some(store)) => {
                let expires = unix_ms() + ttl.as_millis() as u64;
                Some(store.put_idempotency(app_id, space as u8, key.as_bytes(), b.as_bytes().to_vec(), expires))
            }
            _ => None,
        };
        // Crosses to the backplane's writer thread: other nodes see the response (or the key
        // free again) from then on.
        let cluster = shard.ctx.backplane.as_ref().map(|b| {
            let id = (app_id.clone(), space as u8, key.to_string());
            b.settle_key(&id, body.as_deref().map(str::to_owned), ttl.as_millis() as u64)
        });
        shard.idempotency.borrow_mut().settle((app, space, key), body, ttl, Instant::now());
        if stored.is_none() && cluster.is_none() {
            reply.send(());
            return;
        }
        let id = shard.id;
        super::spawn(shard, "idempotency record", async move {
            if let Some(put) = stored {
                if let Err(e) = put.await {
                    log::warn!("shard {id}: idempotency record not stored: {e}");
                }
            }
            if let Some(shared) = cluster {
                if let Err(e) = shared.await {
                    log::warn!("shard {id}: idempotency record not shared with the other nodes: {e}");
                }
            }
            reply.send(());
        });
    }
}

fn owner(shard: &Shard, app: AppIdx, space: Space, key: &str) -> usize {
    shard.owner(OwnerKey::Idempotency(shard.ctx.apps.get(app), space, key))
}

/// A key held by this request. Dropping it unsettled (an error path, or the request's task
/// going away) releases the key.
pub struct Held {
    shard: Rc<Shard>,
    app: AppIdx,
    space: Space,
    key: Arc<str>,
    ttl: Duration,
    settled: bool,
}

impl Held {
    /// Stores the successful response for the rest of the window; completes once it is
    /// stored, so the publish is not answered before a retry would find it.
    pub async fn keep(mut self, body: &[u8]) {
        self.settled = true;
        let settle = self.settle(Some(String::from_utf8_lossy(body).into()));
        let owner = owner(&self.shard, self.app, self.space, &self.key);
        if let Err(e) = self.shard.invoke_on(owner, settle).await {
            // The response went out to the client regardless; a retry may then publish again.
            log::warn!("shard {}: idempotency response not confirmed stored: {e}", self.shard.id);
        }
    }

    fn settle(&self, body: Option<Arc<str>>) -> SettleKey {
        SettleKey { app: self.app, space: self.space, key: self.key.clone(), body, ttl: self.ttl }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.settled {
            release(&self.shard, self.settle(None));
        }
    }
}

/// Frees a key on its owner (never refused: `SettleKey::REFUSABLE`).
fn release(shard: &Shard, settle: SettleKey) {
    let owner = owner(shard, settle.app, settle.space, &settle.key);
    let _ = shard.tell(owner, settle);
}

/// The outcome of trying to take a key.
pub enum Taken {
    Held(Held),
    Stored(Arc<str>),
    InProgress,
}

/// Claims `key` on its owner shard. With `wait`, while another request holds it, polls
/// 6 × 50 ms (the reference's wait) before giving up with `InProgress`.
pub async fn take(
    shard: &Rc<Shard>,
    app: AppIdx,
    space: Space,
    key: &str,
    ttl: Duration,
    wait: bool,
) -> Result<Taken, CrossingError> {
    let key: Arc<str> = key.into();
    let owner = owner(shard, app, space, &key);
    for attempt in 0..if wait { 7 } else { 1 } {
        if attempt > 0 {
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        match shard.invoke_on(owner, ClaimKey { app, space, key: key.clone(), ttl }).await?.claim {
            Claim::Claimed => {
                shard.counters(Some(app)).idempotency_publishes.inc();
                return Ok(Taken::Held(Held { shard: shard.clone(), app, space, key, ttl, settled: false }));
            }
            Claim::Stored(body) => {
                let c = shard.counters(Some(app));
                c.idempotency_publishes.inc();
                c.idempotency_duplicates.inc();
                return Ok(Taken::Stored(body));
            }
            Claim::InProgress => {}
        }
    }
    Ok(Taken::InProgress)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_store_release_and_expiry() {
        let mut t = Table::default();
        let now = Instant::now();
        let ttl = Duration::from_secs(120);
        let id = |k: &str| (0, Space::Event, Arc::<str>::from(k));
        assert!(matches!(t.claim(id("a"), ttl, now), Claim::Claimed));
        assert!(matches!(t.claim(id("a"), ttl, now), Claim::InProgress));
        // Batch keys are a separate space.
        assert!(matches!(t.claim((0, Space::Batch, "a".into()), ttl, now), Claim::Claimed));
        t.settle(id("a"), Some("{\"ok\":true}".into()), ttl, now);
        assert!(matches!(t.claim(id("a"), ttl, now), Claim::Stored(b) if &*b == "{\"ok\":true}"));
        // A failed publish frees the key at once.
        assert!(matches!(t.claim(id("b"), ttl, now), Claim::Claimed));
        t.settle(id("b"), None, ttl, now);
        assert!(matches!(t.claim(id("b"), ttl, now), Claim::Claimed));
        // After the window the key is new again.
        let later = now + ttl + Duration::from_secs(1);
        assert!(matches!(t.claim(id("a"), ttl, later), Claim::Claimed));
        t.expire(later + ttl + Duration::from_secs(1));
        assert!(t.entries.is_empty());
    }
}
