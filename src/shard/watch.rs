//! Watchlist presence of signed-in users (`docs/protocol/pusher.md#watchlist-events`; every
//! signed-in user is tracked and no event is sent twice, unlike the reference). Each user id has
//! an owner shard (`OwnerKey::User`) that counts the user's signed-in sockets and knows who
//! watches the user.

use super::route::{OwnerKey, Request, Responder, ToUsers, UserAction};
use super::Shard;
use crate::config::AppIdx;
use crate::protocol::outbound;
use ahash::AHashMap;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Default)]
struct UserEntry {
    /// Signed-in sockets of this user, node-wide.
    sockets: u32,
    /// Users watching this one, with how many of their sockets registered.
    watchers: AHashMap<Arc<str>, u32>,
}

/// The users this shard owns, per app.
pub struct Watch {
    users: Vec<AHashMap<Arc<str>, UserEntry>>,
}

impl Watch {
    pub fn new(apps: usize) -> Watch {
        Watch { users: (0..apps).map(|_| AHashMap::default()).collect() }
    }
}

/// To the owner of `watcher` and of the ids in `watch`: a socket signed in as `watcher`. Count
/// it if `online` (this shard owns `watcher`), and register it as a watcher of `watch` (the ids
/// this shard owns). Answered with the ids of `watch` that are online.
pub struct Signin {
    pub app: AppIdx,
    pub watcher: Arc<str>,
    pub online: bool,
    pub watch: Vec<String>,
}

impl Request for Signin {
    type Reply = Vec<String>;
    /// Paired with the `Signout` the socket sends when it goes: refusing one but not the other
    /// would leave the counts wrong.
    const REFUSABLE: bool = false;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let Signin { app, watcher, online, watch: ids } = self;
        let mut watch = shard.watch.borrow_mut();
        let users = &mut watch.users[app as usize];
        if online {
            let e = users.entry(watcher.clone()).or_default();
            e.sockets += 1;
            shard.notify_watchers(app, &watcher, e, true);
        }
        let mut on = Vec::new();
        for id in ids {
            let e = users.entry(id.as_str().into()).or_default();
            *e.watchers.entry(watcher.clone()).or_default() += 1;
            if e.sockets > 0 {
                on.push(id);
            }
        }
        reply.send(on);
    }
}

/// That socket went away: the reverse of `Signin`.
pub struct Signout {
    pub app: AppIdx,
    pub watcher: Arc<str>,
    pub online: bool,
    pub watch: Vec<String>,
}

impl Request for Signout {
    type Reply = ();
    /// Undoes a `Signin`: losing it would leave the user online for good.
    const REFUSABLE: bool = false;

    fn handle(self, shard: &Rc<Shard>, _reply: Responder<Self>) {
        let Signout { app, watcher, online, watch: ids } = self;
        let mut watch = shard.watch.borrow_mut();
        let users = &mut watch.users[app as usize];
        if online {
            if let Some(e) = users.get_mut(&watcher) {
                e.sockets = e.sockets.saturating_sub(1);
                if e.sockets == 0 {
                    shard.notify_watchers(app, &watcher, e, false);
                }
            }
            forget_if_unused(users, &watcher);
        }
        for id in ids {
            if let Some(e) = users.get_mut(id.as_str()) {
                if let Some(n) = e.watchers.get_mut(&watcher) {
                    *n -= 1;
                    if *n == 0 {
                        e.watchers.remove(&watcher);
                    }
                }
            }
            forget_if_unused(users, &id);
        }
    }
}

fn forget_if_unused(users: &mut AHashMap<Arc<str>, UserEntry>, id: &str) {
    if users.get(id).is_some_and(|e| e.sockets == 0 && e.watchers.is_empty()) {
        users.remove(id);
    }
}

/// The sign-in bookkeeping of one socket, split by owner shard: `(owner, online, watched ids)`,
/// where `online` marks the owner of the user itself.
pub fn by_owner(shard: &Shard, app: AppIdx, user: &str, watchlist: Vec<String>) -> Vec<(usize, bool, Vec<String>)> {
    let a = shard.ctx.apps.get(app);
    let me = shard.owner(OwnerKey::User(a, user));
    let mut parts: Vec<Vec<String>> = vec![Vec::new(); shard.shards];
    for w in watchlist {
        parts[shard.owner(OwnerKey::User(a, &w))].push(w);
    }
    parts
        .into_iter()
        .enumerate()
        .filter(|(owner, ids)| *owner == me || !ids.is_empty())
        .map(|(owner, ids)| (owner, owner == me, ids))
        .collect()
}

impl Shard {
    /// Sends `online`/`offline` about `user` to every socket of its watchers.
    fn notify_watchers(&self, app: AppIdx, user: &Arc<str>, entry: &UserEntry, online: bool) {
        if entry.watchers.is_empty() {
            return;
        }
        let user_ids = Arc::new(entry.watchers.keys().map(|w| w.to_string()).collect::<Vec<_>>());
        let payload = Arc::new(outbound::watchlist(online, &[user.to_string()]));
        let make = || ToUsers {
            app,
            user_ids: user_ids.clone(),
            action: UserAction::Deliver { payload: payload.clone(), exclude: None },
        };
        // Bookkeeping of work already admitted (a sign-in or sign-out): never refused.
        let _ = self.to_users_everywhere(make, false);
    }

    /// Tells the owners of `user` and of its watched ids that one signed-in socket is gone.
    pub fn signout_watch(&self, app: AppIdx, user: Arc<str>, watchlist: Vec<String>) {
        for (owner, online, watch) in by_owner(self, app, &user, watchlist) {
            // Never refused (`Signout::REFUSABLE`).
            let _ = self.tell(owner, Signout { app, watcher: user.clone(), online, watch });
        }
    }
}
