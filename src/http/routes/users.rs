//! `POST /apps/{id}/users/{user}/terminate_connections` and `.../force_reconnect`: every socket
//! of the user, on every shard (and every node), gets the error and is closed.

use super::super::response::{ApiError, Response};
use crate::backplane::NodeAction;
use crate::config::AppIdx;
use crate::protocol::ProtocolError;
use crate::shard::route::{ToUsers, UserAction};
use crate::shard::Shard;
use std::sync::Arc;

pub async fn close_user(shard: &Shard, app: AppIdx, user: String, err: ProtocolError) -> Result<Response, ApiError> {
    let user_ids = Arc::new(vec![user.clone()]);
    shard.to_users_everywhere(
        || ToUsers { app, user_ids: user_ids.clone(), action: UserAction::Close(err.clone()) },
        true,
    )?;
    if let Some(node) = shard.node_id() {
        let app = shard.ctx.apps.get(app).id.clone();
        let action = NodeAction::CloseUser { app, user, reconnect: err == ProtocolError::ForceReconnect, node };
        shard.tell_other_nodes(action).await.map_err(|e| {
            ApiError::new(503, "backplane_unavailable", format!("closed on this node only, retry: {e}"))
        })?;
    }
    Ok(Response::json(200, "{\"ok\":true}"))
}
