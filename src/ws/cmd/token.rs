//! Capability tokens on a socket (`docs/protocol/v2.md#capability-tokens`): the token checked
//! at connect is held here, `sockudo:auth` replaces it (same identity only), and every command
//! that touches a channel asks `require` whether the socket's capabilities allow it.

use crate::auth::token::Grant;
use crate::protocol::capabilities::Op;
use crate::protocol::inbound::{self, ClientFrame};
use crate::protocol::outbound::{self, Dialect};
use crate::protocol::ProtocolError;
use crate::shard::identity::Identity;
use crate::ws::admission;
use crate::ws::index::HeldToken;
use crate::ws::session::Session;

impl Session {
    /// Makes `grant` the socket's token: its client id becomes the socket's user, its
    /// capabilities apply from now on, and its expiry is watched (`sweeper.rs`).
    pub(in crate::ws) fn hold_token(&self, grant: Grant) {
        let Grant { client_id, capabilities, jti, exp } = grant;
        {
            let mut index = self.hub.index.borrow_mut();
            let Some(s) = index.live(self.key, self.id) else { return };
            s.token = Some(Box::new(HeldToken { exp, expired_notice: None }));
            s.authenticated = true;
            if s.user_id.as_deref() != Some(&*client_id) {
                index.set_user(self.key, client_id.clone());
            }
        }
        let identity =
            Identity { app: self.app, user_id: client_id, capabilities: Some(capabilities), token: Some(jti) };
        self.shard().identities.borrow_mut().insert(self.id, identity);
    }

    /// `sockudo:auth`: a fresh token for the same identity. A bad token or another identity
    /// is an error and the socket keeps what it had.
    pub(in crate::ws) fn refresh_token(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        if self.dialect != Dialect::V2 {
            return Ok(()); // not a V1 event: ignored like any unknown one
        }
        let token = inbound::auth_token(frame)?;
        let grant = admission::check_token(self.shard(), self.app, &token).map_err(ProtocolError::auth)?;
        let Some((held, user)) = self.with_socket(|s| {
            let held = s.token.is_some();
            (held, if held || s.signed_in { s.user_id.clone() } else { None })
        }) else {
            return Ok(());
        };
        if let Some(user) = user.filter(|u| **u != *grant.client_id) {
            return Err(ProtocolError::auth(if held {
                format!("a token refresh cannot change client_id ({user} to {})", grant.client_id)
            } else {
                format!("a token refresh cannot change the connection's user ({user} to {})", grant.client_id)
            }));
        }
        let reply = outbound::auth_success(&grant.client_id, &grant.jti, grant.exp);
        self.hold_token(grant);
        self.send(&reply);
        Ok(())
    }

    /// Whether the socket's capabilities allow `op` on `channel`; sockets without a capability
    /// set (no token, no sign-in capabilities) are not limited.
    pub(in crate::ws) fn require(&self, op: Op, channel: &str) -> Result<(), ProtocolError> {
        let identities = self.shard().identities.borrow();
        let Some(caps) = identities.get(&self.id).and_then(|i| i.capabilities.as_ref()) else { return Ok(()) };
        if caps.allows(op, channel) {
            Ok(())
        } else {
            Err(ProtocolError::auth(format!("the connection's capabilities do not grant {} on {channel}", op.name())))
        }
    }
}
