//! The one publish path, for HTTP publishes, batch items and client events alike: each channel
//! goes to its owner shard as a `ChannelOp` (serial, store, fan-out there), and a
//! `#server-to-user-{id}` channel goes to that user's sockets on every shard.

use crate::config::AppIdx;
use crate::protocol::channel;
use crate::protocol::outbound::{self, Data};
use crate::shard::channel::broadcast::{ChannelEvent, EventData};
use crate::shard::channel::{ChannelOp, Done, OpFailure, Operation, Origin, Rejection};
use crate::shard::route::{CrossingError, ToUsers, UserAction};
use crate::shard::Shard;
use crate::socket_id::SocketId;
use std::rc::Rc;
use std::sync::Arc;

/// Why a publish failed. Channels whose owner succeeded were delivered all the same.
#[derive(Clone, Debug)]
pub enum PublishError {
    /// A store could not take the message: it was neither stored nor delivered.
    Storage(String),
    /// A shard did not answer, or was too far behind to take more work.
    Unavailable(CrossingError),
    /// The owner refused the operation as it stands (mutations).
    Rejected(Rejection),
}

impl From<OpFailure> for PublishError {
    fn from(f: OpFailure) -> PublishError {
        match f {
            OpFailure::Storage(why) => PublishError::Storage(why),
            OpFailure::Overloaded(e) => PublishError::Unavailable(e),
            OpFailure::Rejected(r) => PublishError::Rejected(r),
        }
    }
}

/// Publishes `event` to every channel of `channels`, each through its owner, and returns what
/// each owner reported (occupancy, and the version a versioned create made; user channels
/// report nothing).
pub async fn publish(
    shard: &Rc<Shard>,
    app: AppIdx,
    channels: &[String],
    event: Arc<ChannelEvent>,
    exclude: Option<SocketId>,
) -> Result<Vec<(String, Done)>, PublishError> {
    let mut waits = Vec::new();
    for name in channels {
        if let Some(user) = channel::user_channel_target(name) {
            to_user(shard, app, name, user, &event, exclude)?;
            continue;
        }
        let owner = shard.channel_owner(app, name);
        let op = ChannelOp {
            app,
            channel: name.as_str().into(),
            op: Operation::Publish(event.clone()),
            exclude,
            origin: Origin::Http,
        };
        waits.push((name, shard.invoke_on(owner, op)));
    }
    let mut out = Vec::with_capacity(waits.len());
    let mut failure = None;
    for (name, done) in waits {
        match done.await {
            Ok(Ok(o)) => out.push((name.clone(), o)),
            Ok(Err(f)) => failure = Some(f.into()),
            Err(e) => failure = Some(PublishError::Unavailable(e)),
        }
    }
    failure.map_or(Ok(out), Err)
}

/// Publishes a client event to its channel without waiting for the owner: clients get no
/// acknowledgement. Refused at once when the owner is too far behind.
pub fn publish_client_event(
    shard: &Shard,
    app: AppIdx,
    channel: Arc<str>,
    event: ChannelEvent,
    exclude: Option<SocketId>,
) -> Result<(), CrossingError> {
    let owner = shard.channel_owner(app, &channel);
    let op = ChannelOp { app, channel, op: Operation::Publish(Arc::new(event)), exclude, origin: Origin::Client };
    shard.tell(owner, op)
}

/// An HTTP publish to `#server-to-user-{user}`: every socket of the user, on every shard.
fn to_user(
    shard: &Shard,
    app: AppIdx,
    channel: &str,
    user: &str,
    event: &ChannelEvent,
    exclude: Option<SocketId>,
) -> Result<(), PublishError> {
    let data = match &event.data {
        EventData::Str(s) => Data::Str(s),
        EventData::Raw(r) => Data::Raw(r),
    };
    let payload = Arc::new(outbound::event(&event.name, Some(channel), data, None));
    let user_ids = Arc::new(vec![user.to_owned()]);
    let make = || ToUsers {
        app,
        user_ids: user_ids.clone(),
        action: UserAction::Deliver { payload: payload.clone(), exclude },
    };
    shard.to_users_everywhere(make, true).map_err(PublishError::Unavailable)
}
