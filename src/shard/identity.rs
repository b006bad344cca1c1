//! The signed-in identities of this shard's V2 sockets, for other shards whose request names
//! one of them by socket id (a mutation bound to a `socket_id`,
//! `docs/protocol/v2.md#mutation-endpoints`). The socket side records them at sign-in and drops
//! them when the socket goes.

use super::route::{Request, Responder};
use super::Shard;
use crate::protocol::capabilities::Capabilities;
use crate::socket_id::SocketId;
use ahash::AHashMap;
use std::rc::Rc;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct Identity {
    pub user_id: Arc<str>,
    /// `user_data.capabilities`, if the sign-in gave any.
    pub capabilities: Option<Arc<Capabilities>>,
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
