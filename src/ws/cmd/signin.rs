//! `pusher:signin` (`docs/protocol/pusher.md#user-sign-in`): checks the signature, indexes the
//! user here, and registers the socket (and its watchlist) with the owners of the user ids.

use crate::auth;
use crate::protocol::inbound::{self, ClientFrame, Signin};
use crate::protocol::outbound::{self, Dialect};
use crate::protocol::ProtocolError;
use crate::shard::identity::Identity;
use crate::shard::route;
use crate::shard::watch::{self, Signin as WatchSignin};
use crate::ws::session::Session;
use std::sync::Arc;

impl Session {
    pub(in crate::ws) async fn signin(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        let app = self.app();
        if !app.user_authentication {
            return Err(ProtocolError::auth("User authentication is disabled for this app"));
        }
        if self.with_socket(|s| s.token.is_some()).unwrap_or(false) {
            return Err(ProtocolError::auth("sign-in is not allowed on a connection that holds a capability token"));
        }
        let signin = Signin::parse(frame)?;
        let user = inbound::user_data(&signin.user_data)?;
        let message = auth::signin_message(&self.socket_id(), &signin.user_data);
        if !auth::verify_key_and_signature(&app.key, &app.secret, message.as_bytes(), &signin.auth) {
            return Err(ProtocolError::auth("Connection not authorized for signin."));
        }
        let user_id: Arc<str> = user.id.as_str().into();
        let watching = app.watchlist_events;
        let watchlist = if watching { user.watchlist.clone().unwrap_or_default() } else { Vec::new() };
        let previous = {
            let mut index = self.hub.index.borrow_mut();
            let Some(s) = index.live(self.key, self.id) else { return Ok(()) };
            let previous = if s.signed_in { s.user_id.clone().zip(s.watchlist.take()) } else { None };
            s.signed_in = true;
            s.authenticated = true;
            s.watchlist = watching.then(|| watchlist.clone());
            index.set_user(self.key, user_id.clone());
            previous
        };
        // Another shard may ask who this socket is (a mutation bound to its socket_id).
        if self.dialect == Dialect::V2 {
            let capabilities = user.capabilities.map(Arc::new);
            let identity = Identity { app: self.app, user_id: user_id.clone(), capabilities, token: None };
            self.shard().identities.borrow_mut().insert(self.id, identity);
        }
        let mut failure = None;
        if watching {
            if let Some((old, old_list)) = previous {
                self.shard().signout_watch(self.app, old, old_list);
            }
            match self.register_watch(user_id, &watchlist).await {
                Ok(online) => {
                    let offline: Vec<String> = watchlist.iter().filter(|w| !online.contains(w)).cloned().collect();
                    if !online.is_empty() {
                        self.send(&outbound::watchlist(true, &online));
                    }
                    if !offline.is_empty() {
                        self.send(&outbound::watchlist(false, &offline));
                    }
                }
                // Signed in all the same; only who is online could not be told.
                Err(e) => failure = Some(e.into()),
            }
        }
        self.send(&outbound::signin_success(self.dialect, &signin.user_data));
        failure.map_or(Ok(()), Err)
    }

    /// Counts this socket as `user` online and registers it as a watcher of `watchlist`, on
    /// the owner shard of each id. Returns the watched ids that are online.
    async fn register_watch(&self, user: Arc<str>, watchlist: &[String]) -> Result<Vec<String>, route::CrossingError> {
        let shard = self.shard();
        let calls = watch::by_owner(shard, self.app, &user, watchlist.to_vec())
            .into_iter()
            .map(|(owner, online, watch)| {
                shard.invoke_on(owner, WatchSignin { app: self.app, watcher: user.clone(), online, watch })
            })
            .collect();
        Ok(route::all(calls).await?.into_iter().flatten().collect())
    }
}
