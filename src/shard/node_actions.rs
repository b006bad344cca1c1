//! Actions on every node's sockets when there are several nodes
//! (`docs/architecture.md#several-nodes`): a user's connections closed, capability tokens
//! revoked. The node that takes the request acts on its own sockets at once, then appends the
//! action to the cluster log; shard 0 of every other node carries it out when the log brings
//! it (a node that was cut off catches up from the log, as far back as it keeps).

use super::revocations::{self, Revoke};
use super::route::{ToUsers, UserAction};
use super::Shard;
use crate::backplane::{Append, BackplaneError, Entry, NodeAction};
use crate::protocol::ProtocolError;
use std::rc::Rc;
use std::sync::Arc;

impl Shard {
    /// Appends `action`, already carried out on this node, for the other nodes. `Ok` at once
    /// on a single node.
    pub async fn tell_other_nodes(&self, action: NodeAction) -> Result<(), BackplaneError> {
        let Some(backplane) = &self.ctx.backplane else { return Ok(()) };
        // Crosses to the backplane's writer thread; the answer comes back as a wake.
        backplane.append(Append { entry: Entry::Nodes(action), takes_serial: None }).await.map(drop)
    }

    /// Whether `node` names this node (always false on a single node).
    pub fn is_this_node(&self, node: &str) -> bool {
        self.ctx.backplane.as_ref().is_some_and(|b| b.node_id() == node)
    }

    /// This node's id in the cluster, if it is one of several.
    pub fn node_id(&self) -> Option<String> {
        self.ctx.backplane.as_ref().map(|b| b.node_id().to_owned())
    }

    /// Carries out an action another node appended (shard 0 only).
    pub(crate) fn act_for_cluster(self: &Rc<Self>, action: NodeAction) {
        if self.is_this_node(action.node()) {
            return;
        }
        match action {
            NodeAction::CloseUser { app, user, reconnect, .. } => {
                let Some(app) = self.ctx.apps.by_id(&app) else { return };
                let err = if reconnect { ProtocolError::ForceReconnect } else { ProtocolError::TerminatedByApp };
                let user_ids = Arc::new(vec![user]);
                let close = || ToUsers { app, user_ids: user_ids.clone(), action: UserAction::Close(err.clone()) };
                // Not refusable: the request was accepted on its node.
                let _ = self.to_users_everywhere(close, false);
            }
            NodeAction::Revoke { app: app_id, jti, client_id, expires_at_ms, reason, .. } => {
                let Some(app) = self.ctx.apps.by_id(&app_id) else { return };
                let (jti, client_id): (Option<Arc<str>>, Option<Arc<str>>) =
                    (jti.map(Into::into), client_id.map(Into::into));
                // Its answer is not needed: the shards learn the revocation below either way.
                drop(revocations::persist(self, &app_id, jti.as_deref(), client_id.as_deref(), expires_at_ms, &reason));
                let revoke = Revoke { app, jti, client_id, expires_at_ms };
                for s in 0..self.shards {
                    let _ = self.tell(s, revoke.clone());
                }
                log::info!(app = app_id.as_str(); "capability tokens revoked by another node");
            }
        }
    }
}
