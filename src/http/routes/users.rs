//! `POST /apps/{id}/users/{user}/terminate_connections` and `.../force_reconnect`: every socket
//! of the user, on every shard, gets the error and is closed.

use super::super::response::{ApiError, Response};
use crate::config::AppIdx;
use crate::protocol::ProtocolError;
use crate::shard::route::{ToUsers, UserAction};
use crate::shard::Shard;
use std::sync::Arc;

pub fn close_user(shard: &Shard, app: AppIdx, user: String, err: ProtocolError) -> Result<Response, ApiError> {
    let user_ids = Arc::new(vec![user]);
    shard.to_users_everywhere(
        || ToUsers { app, user_ids: user_ids.clone(), action: UserAction::Close(err.clone()) },
        true,
    )?;
    Ok(Response::json(200, "{\"ok\":true}"))
}
