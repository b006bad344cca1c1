//! Capability-token revocations (`docs/protocol/v2.md#revocation`). Every shard holds all of
//! them in memory, so a token connect or refresh checks them with no crossing; shard 0's store
//! keeps them across restarts; a new one reaches every shard as a `Revoke`, which also closes
//! that shard's sockets holding a matching token.

use super::route::{Msg, Request, Responder, ToUsers, UserAction};
use super::Shard;
use crate::config::AppIdx;
use crate::socket_id::SocketId;
use ahash::AHashMap;
use std::rc::Rc;
use std::sync::Arc;

/// Which id a revocation names (the store keeps it as this byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Jti = 0,
    ClientId = 1,
}

impl Kind {
    pub fn from_code(code: u8) -> Option<Kind> {
        match code {
            0 => Some(Kind::Jti),
            1 => Some(Kind::ClientId),
            _ => None,
        }
    }
}

/// The revocations in force: (app, kind, id) -> expiry (unix ms).
#[derive(Default)]
pub struct Revocations {
    until: AHashMap<(AppIdx, Kind, Box<str>), u64>,
}

impl Revocations {
    pub fn insert(&mut self, app: AppIdx, kind: Kind, id: &str, expires_at_ms: u64, now_ms: u64) {
        // Expired ones go whenever a new one comes: revocations are rare, so this bounds them.
        self.until.retain(|_, until| *until > now_ms);
        let until = self.until.entry((app, kind, id.into())).or_default();
        *until = expires_at_ms.max(*until);
    }

    /// Whether a token with this `jti` and client id is revoked at `now_ms`.
    pub fn revoked(&self, app: AppIdx, jti: &str, client_id: &str, now_ms: u64) -> bool {
        let live = |kind, id: &str| self.until.get(&(app, kind, id.into())).is_some_and(|&until| until > now_ms);
        !self.until.is_empty() && (live(Kind::Jti, jti) || live(Kind::ClientId, client_id))
    }
}

/// Writes a revocation to shard 0's store, which keeps them all: one row per id it names.
/// Crosses to that store's thread; each reply says when its row is stored.
pub fn persist(
    shard: &Shard,
    app_id: &str,
    jti: Option<&str>,
    client_id: Option<&str>,
    expires_at_ms: u64,
    reason: &str,
) -> Vec<storage::Reply<()>> {
    let Some(stores) = &shard.ctx.stores else { return Vec::new() };
    [(Kind::Jti, jti), (Kind::ClientId, client_id)]
        .into_iter()
        .filter_map(|(kind, id)| Some((kind, id?)))
        .map(|(kind, id)| {
            stores.by_shard[0].put_revocation(storage::Revocation {
                app: app_id.to_owned(),
                kind: kind as u8,
                id: id.to_owned(),
                expires_at_ms,
                reason: reason.to_owned(),
            })
        })
        .collect()
}

/// To every shard: a token id and/or client id is revoked until `expires_at_ms`; close this
/// shard's sockets that hold a matching token. Answers how many it closes.
#[derive(Clone)]
pub struct Revoke {
    pub app: AppIdx,
    pub jti: Option<Arc<str>>,
    pub client_id: Option<Arc<str>>,
    pub expires_at_ms: u64,
}

impl Request for Revoke {
    type Reply = usize;
    /// A revocation is not new work that may be shed: each shard must learn it.
    const REFUSABLE: bool = false;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let Revoke { app, jti, client_id, expires_at_ms } = self;
        let now = crate::time::unix_ms();
        {
            let mut revoked = shard.revocations.borrow_mut();
            if let Some(jti) = &jti {
                revoked.insert(app, Kind::Jti, jti, expires_at_ms, now);
            }
            if let Some(client) = &client_id {
                revoked.insert(app, Kind::ClientId, client, expires_at_ms, now);
            }
        }
        let (mut users, mut sockets): (Vec<String>, Vec<SocketId>) = (Vec::new(), Vec::new());
        for (id, identity) in shard.identities.borrow().iter() {
            let Some(token) = identity.token.as_ref().filter(|_| identity.app == app) else { continue };
            if jti.as_ref() == Some(token) || client_id.as_ref() == Some(&identity.user_id) {
                users.push(identity.user_id.to_string());
                sockets.push(*id);
            }
        }
        let closed = sockets.len();
        users.sort_unstable();
        users.dedup();
        if closed > 0 {
            // The sockets are this shard's socket side's: it closes them when this message
            // comes round (the owner side never touches a socket).
            let action = UserAction::Revoked(Arc::new(sockets));
            shard.mesh.send(shard.id, Msg::ToUsers(ToUsers { app, user_ids: Arc::new(users), action }));
        }
        reply.send(closed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_force_until_expiry() {
        let mut r = Revocations::default();
        r.insert(0, Kind::Jti, "j1", 2_000, 1_000);
        r.insert(0, Kind::ClientId, "u1", 3_000, 1_000);
        assert!(r.revoked(0, "j1", "u9", 1_500) && r.revoked(0, "j9", "u1", 2_500));
        assert!(!r.revoked(0, "j1", "u9", 2_000) && !r.revoked(1, "j1", "u1", 1_500));
        // A shorter revocation of the same id does not shorten the longer one.
        r.insert(0, Kind::ClientId, "u1", 1_200, 1_000);
        assert!(r.revoked(0, "j9", "u1", 2_500));
        // Expired entries are dropped when the next one comes.
        r.insert(0, Kind::Jti, "j2", 9_000, 2_600);
        assert_eq!(r.until.len(), 2);
    }
}
