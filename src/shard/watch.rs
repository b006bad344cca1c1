//! Watchlist presence of signed-in users (spec 01 §4.3, with Q7 Rec: every signed-in user is
//! tracked, and no duplicate events). Each user id has an owner shard (hash of app and id)
//! that counts the user's signed-in sockets and knows who watches the user.

use super::call::{answer, ReplyTo};
use super::msg::{Msg, Reply, UserAction};
use super::Shard;
use crate::apps::AppIdx;
use crate::protocol::outbound;
use ahash::AHashMap;
use std::sync::Arc;

pub enum WatchMsg {
    /// A socket signed in as `watcher`: count it if `online` (this shard owns `watcher`), and
    /// register it as a watcher of `watch` (the ids this shard owns). Answered with
    /// `Reply::Online` listing which of `watch` are online.
    Signin { reply_to: ReplyTo, app: AppIdx, watcher: Arc<str>, online: bool, watch: Vec<String> },
    /// That socket went away: the reverse of `Signin`. Unanswered.
    Signout { app: AppIdx, watcher: Arc<str>, online: bool, watch: Vec<String> },
}

#[derive(Default)]
struct UserEntry {
    /// Signed-in sockets of this user, node-wide.
    sockets: u32,
    /// Users watching this one, with how many of their sockets registered.
    watchers: AHashMap<Arc<str>, u32>,
}

#[derive(Default)]
pub struct Watch {
    users: Vec<AHashMap<Arc<str>, UserEntry>>,
}

impl Watch {
    pub fn new(apps: usize) -> Watch {
        Watch { users: (0..apps).map(|_| AHashMap::default()).collect() }
    }
}

impl Shard {
    /// The shard that owns watchlist state for `user`.
    pub fn user_owner(&self, app: AppIdx, user: &str) -> usize {
        shards::owner_of(shards::stable_hash(&[&app.to_le_bytes(), b"user", user.as_bytes()]), self.shards)
    }

    /// Sends `online`/`offline` about `user` to every socket of its watchers.
    fn notify_watchers(&self, app: AppIdx, user: &Arc<str>, entry: &UserEntry, online: bool) {
        if entry.watchers.is_empty() {
            return;
        }
        let watchers: Vec<String> = entry.watchers.keys().map(|w| w.to_string()).collect();
        let payload = Arc::new(outbound::watchlist(online, &[user.to_string()]));
        let user_ids = Arc::new(watchers);
        for shard in 0..self.shards {
            self.mesh.send(
                shard,
                Msg::ToUsers {
                    app,
                    user_ids: user_ids.clone(),
                    action: UserAction::Deliver { payload: payload.clone(), exclude: None },
                },
            );
        }
    }

    pub(super) fn on_watch(&self, msg: WatchMsg) {
        let mut watch = self.watch.borrow_mut();
        match msg {
            WatchMsg::Signin { reply_to, app, watcher, online, watch: ids } => {
                let users = &mut watch.users[app as usize];
                if online {
                    let e = users.entry(watcher.clone()).or_default();
                    e.sockets += 1;
                    self.notify_watchers(app, &watcher, e, true);
                }
                let mut on = Vec::new();
                for id in ids {
                    let e = users.entry(id.as_str().into()).or_default();
                    *e.watchers.entry(watcher.clone()).or_default() += 1;
                    if e.sockets > 0 {
                        on.push(id);
                    }
                }
                answer(self, reply_to, Reply::Online(on));
            }
            WatchMsg::Signout { app, watcher, online, watch: ids } => {
                let users = &mut watch.users[app as usize];
                if online {
                    if let Some(e) = users.get_mut(&watcher) {
                        e.sockets = e.sockets.saturating_sub(1);
                        if e.sockets == 0 {
                            self.notify_watchers(app, &watcher, e, false);
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
    }
}

fn forget_if_unused(users: &mut AHashMap<Arc<str>, UserEntry>, id: &str) {
    if users.get(id).is_some_and(|e| e.sockets == 0 && e.watchers.is_empty()) {
        users.remove(id);
    }
}
