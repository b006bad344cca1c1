//! Publish idempotency (spec 01 §9, with the Q8 Rec: a failed publish releases its key).
//!
//! Every key has one owner shard (`owner_of(hash(app, space, key))`), so claiming is a plain
//! test-and-set on that shard's table: no lock, no shared map. The HTTP side claims a key
//! before publishing and settles it afterwards with the response body (stored for the window)
//! or, if the request failed, releases it so the corrected retry goes through.
//!
//! With durable history the owner also keeps stored responses in its store, so a retry after a
//! restart (clean or `kill -9`) is still answered from the first response: a claim that misses
//! in memory looks in the store before it is granted, and a kept response is written before
//! the publish is answered.

use super::call::expect_reply;
use super::msg::{Msg, Reply};
use super::Shard;
use crate::apps::AppIdx;
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

pub enum IdemMsg {
    /// To the key's owner: take the key if free. Answered with `Reply::Claim`.
    Claim { reply_to: super::call::ReplyTo, app: AppIdx, space: Space, key: Arc<str>, ttl: Duration },
    /// To the key's owner: the publish finished; keep its response (`Some`) or free the key.
    /// A kept response is answered with `Reply::Kept` once stored.
    Settle { reply_to: Option<super::call::ReplyTo>, app: AppIdx, space: Space, key: Arc<str>, body: Option<Arc<str>>, ttl: Duration },
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

impl Shard {
    fn idempotency_owner(&self, app: AppIdx, space: Space, key: &str) -> usize {
        let tag: &[u8] = match space {
            Space::Event => b"idempotency",
            Space::Batch => b"batch-idempotency",
        };
        shards::owner_of(shards::stable_hash(&[&app.to_le_bytes(), tag, key.as_bytes()]), self.shards)
    }

    pub(super) fn on_idempotency(self: &Rc<Self>, m: IdemMsg) {
        let now = Instant::now();
        match m {
            IdemMsg::Claim { reply_to, app, space, key, ttl } => {
                let claim = self.idempotency.borrow_mut().claim((app, space, key.clone()), ttl, now);
                match (claim, self.store()) {
                    (Claim::Claimed, Some(store)) => {
                        // Held in memory meanwhile, so a concurrent claim waits as for any
                        // key in flight. The store thread answers; this shard resumes.
                        let lookup = store.get_idempotency(&self.ctx.apps.get(app).id, space as u8, key.as_bytes());
                        let shard = self.clone();
                        glommio::spawn_local(async move {
                            let claim = match lookup.await {
                                Ok(Some(body)) => {
                                    let body: Arc<str> = String::from_utf8_lossy(&body).into();
                                    shard.idempotency.borrow_mut().settle((app, space, key), Some(body.clone()), ttl, Instant::now());
                                    Claim::Stored(body)
                                }
                                Ok(None) => Claim::Claimed,
                                Err(e) => {
                                    log::warn!("shard {}: idempotency lookup failed, key granted: {e}", shard.id);
                                    Claim::Claimed
                                }
                            };
                            super::call::answer(&shard, reply_to, Reply::Claim(claim));
                        })
                        .detach();
                    }
                    (claim, _) => super::call::answer(self, reply_to, Reply::Claim(claim)),
                }
            }
            IdemMsg::Settle { reply_to, app, space, key, body, ttl } => {
                let stored = match (&body, self.store()) {
                    (Some(b), Some(store)) => {
                        let expires = super::durable::unix_ms() + ttl.as_millis() as u64;
                        let app_id = &self.ctx.apps.get(app).id;
                        Some(store.put_idempotency(app_id, space as u8, key.as_bytes(), b.as_bytes().to_vec(), expires))
                    }
                    _ => None,
                };
                self.idempotency.borrow_mut().settle((app, space, key), body, ttl, now);
                let Some(to) = reply_to else { return };
                let Some(put) = stored else {
                    super::call::answer(self, to, Reply::Kept);
                    return;
                };
                let shard = self.clone();
                glommio::spawn_local(async move {
                    if let Err(e) = put.await {
                        log::warn!("shard {}: idempotency record not stored: {e}", shard.id);
                    }
                    super::call::answer(&shard, to, Reply::Kept);
                })
                .detach();
            }
        }
    }
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
        let (reply_to, kept) = expect_reply(&self.shard, |_, _| ());
        self.send(Some(reply_to), Some(String::from_utf8_lossy(body).into()));
        kept.await
    }

    fn send(&self, reply_to: Option<super::call::ReplyTo>, body: Option<Arc<str>>) {
        let owner = self.shard.idempotency_owner(self.app, self.space, &self.key);
        let settle = IdemMsg::Settle { reply_to, app: self.app, space: self.space, key: self.key.clone(), body, ttl: self.ttl };
        self.shard.mesh.send(owner, Msg::Idempotency(settle));
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if !self.settled {
            self.send(None, None);
        }
    }
}

/// The outcome of trying to take a key.
pub enum Taken {
    Held(Held),
    Stored(Arc<str>),
    InProgress,
}

/// Claims `key` on its owner shard. With `wait`, while another request holds it, polls
/// 6 × 50 ms (the reference's wait) before giving up with `InProgress`.
pub async fn take(shard: &Rc<Shard>, app: AppIdx, space: Space, key: &str, ttl: Duration, wait: bool) -> Taken {
    let key: Arc<str> = key.into();
    let owner = shard.idempotency_owner(app, space, &key);
    for attempt in 0..if wait { 7 } else { 1 } {
        if attempt > 0 {
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        let (reply_to, answer) = expect_reply(shard, |_, r| match r {
            Reply::Claim(c) => c,
            _ => Claim::InProgress,
        });
        shard.mesh.send(owner, Msg::Idempotency(IdemMsg::Claim { reply_to, app, space, key: key.clone(), ttl }));
        match answer.await {
            Claim::Claimed => {
                shard.counters(Some(app)).idempotency_publishes.inc();
                return Taken::Held(Held { shard: shard.clone(), app, space, key, ttl, settled: false });
            }
            Claim::Stored(body) => {
                let c = shard.counters(Some(app));
                c.idempotency_publishes.inc();
                c.idempotency_duplicates.inc();
                return Taken::Stored(body);
            }
            Claim::InProgress => {}
        }
    }
    Taken::InProgress
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
