//! The identities of this shard's V2 sockets (signed in, or connected with a capability token),
//! for other shards whose request names one of them by socket id (a mutation bound to a
//! `socket_id`, `docs/protocol/v2.md#mutation-endpoints`) and for revocations. The socket side
//! records them at sign-in or token check and drops them when the socket goes.

use super::route::{Request, Responder};
use super::Shard;
use crate::config::AppIdx;
use crate::protocol::capabilities::Capabilities;
use crate::socket_id::SocketId;
use ahash::AHashMap;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct Identity {
    pub app: AppIdx,
    /// The signed-in user id, or the token's client id.
    pub user_id: Arc<str>,
    /// `user_data.capabilities` if the sign-in gave any, or the token's.
    pub capabilities: Option<Arc<Capabilities>>,
    /// The `jti` of the capability token the socket holds.
    pub token: Option<Arc<str>>,
}

pub type Identities = AHashMap<SocketId, Identity>;

/// To the socket's shard: who the socket is signed in as, if it is a signed-in V2 socket here.
pub struct SocketIdentity {
    pub socket_id: SocketId,
}

impl Request for SocketIdentity {
    type Reply = Option<Identity>;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        reply.send(shard.identities.borrow().get(&self.socket_id).cloned());
    }
}
