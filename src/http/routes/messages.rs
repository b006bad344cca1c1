//! Mutable messages over HTTP (`docs/protocol/v2.md#mutable-messages`): update, delete and
//! append go through the channel's owner, which alone orders them; the latest version and the
//! versions page are read straight from the owner's store.

use super::super::request::Request;
use super::super::response::{ApiError, Response};
use super::json_body;
use crate::config::AppIdx;
use crate::protocol::ai::{self, AiError};
use crate::protocol::capabilities::Op;
use crate::protocol::mutation::Mutation;
use crate::protocol::versioned;
use crate::publish::PublishError;
use crate::shard::channel::mutate::Mutate;
use crate::shard::channel::rollup::FlushRollup;
use crate::shard::channel::{ChannelOp, Operation, Origin};
use crate::shard::identity::{Identity, SocketIdentity};
use crate::shard::Shard;
use crate::socket_id::SocketId;
use std::rc::Rc;
use storage::{Direction, MessageState, Store, VersionAction, VersionsQuery};

/// The message a request names, once the request may use it.
pub(super) struct Target<'a> {
    pub store: &'a Store,
    pub app_id: &'a str,
    pub message: u64,
    pub stream_id: String,
}

pub(super) fn target<'a>(shard: &'a Shard, app: AppIdx, channel: &str, serial: &str) -> Result<Target<'a>, ApiError> {
    if !shard.ctx.config.versioned.enabled && shard.ctx.config.ai_transport.is_ai_channel(channel) {
        return Err(AiError::mutable_not_permitted().into());
    }
    if !shard.ctx.config.versioned.enabled {
        return Err(ApiError::feature_disabled(
            "Versioned messages are not enabled on this server (versioned_messages.enabled and durable history)",
        ));
    }
    let a = shard.ctx.apps.get(app);
    a.validate_channel(channel).map_err(|e| ApiError::invalid_input(e.to_string()))?;
    let store = shard.owner_store(app, channel).ok_or_else(ApiError::history_disabled)?;
    let (message, stream_id) = versioned::parse_serial(serial).ok_or_else(unknown)?;
    Ok(Target { store, app_id: &a.id, message, stream_id: stream_id.to_owned() })
}

pub(super) fn unknown() -> ApiError {
    ApiError::not_found("No mutable message with this message_serial in the channel's history")
}

/// `POST …/messages/{message_serial}/update|delete|append`.
pub async fn mutate(
    shard: &Rc<Shard>,
    app: AppIdx,
    channel: &str,
    serial: &str,
    action: VersionAction,
    req: &Request,
) -> Result<Response, ApiError> {
    let t = target(shard, app, channel, serial)?;
    let mutation = Mutation::parse(action, &json_body(req)?).map_err(ApiError::invalid_input)?;
    let ai = &shard.ctx.config.ai_transport;
    let on_ai_channel = ai.is_ai_channel(channel);
    if on_ai_channel {
        ai::check_extras(mutation.extras.as_deref(), ai.header_limits)?;
    } else if ai::has_ai(mutation.extras.as_deref()) {
        return Err(AiError::not_permitted(format!("AI Transport is not enabled for channel {channel}")).into());
    }
    // On an AI channel a mutation the actor may not make is the registry's 93002.
    let refused = |e: ApiError| match e.status {
        401 if on_ai_channel => AiError::mutable_not_permitted().into(),
        _ => e,
    };
    mutate_as_actor(shard, app, channel, t, mutation).await.map_err(refused)
}

async fn mutate_as_actor(
    shard: &Rc<Shard>,
    app: AppIdx,
    channel: &str,
    t: Target<'_>,
    mutation: Mutation,
) -> Result<Response, ApiError> {
    let limit = shard.ctx.apps.get(app).limits.max_event_payload_bytes;
    if let Some(data) = mutation.data.as_deref().filter(|d| d.len() > limit) {
        return Err(ApiError::payload_too_large(format!(
            "Mutation data size ({} bytes) exceeds limit ({}KB)",
            data.len(),
            limit / 1024
        )));
    }
    let (actor, own_only) = match mutation.socket_id.as_deref() {
        None => (mutation.client_id.clone(), false),
        Some(socket_id) => bound_actor(shard, socket_id, &mutation, channel).await?,
    };
    let mutate = Mutate {
        message: t.message,
        stream_id: t.stream_id,
        mutation,
        actor,
        own_only,
        placed: None,
        first_proposed: None,
    };
    let op = Operation::Mutate(Box::new(mutate));
    let op = ChannelOp { app, channel: channel.into(), op, exclude: None, origin: Origin::Http };
    let owner = shard.channel_owner(app, channel);
    let done = shard.invoke_on(owner, op).await?.map_err(|f| ApiError::from(PublishError::from(f)))?;
    let ack = done.version.expect("a mutation answers with its version");
    Ok(Response::json(200, ack.json(channel)))
}

/// A mutation bound to a socket (`docs/protocol/v2.md#actor-binding`): the socket must be a
/// signed-in V2 connection here, `client_id` (if given) its user, and its sign-in
/// capabilities must grant `message_<action>_any` (any message) or `_own` (the messages its
/// user created) on the channel. Returns the actor and whether only its own messages qualify.
async fn bound_actor(
    shard: &Rc<Shard>,
    socket_id: &str,
    mutation: &Mutation,
    channel: &str,
) -> Result<(Option<String>, bool), ApiError> {
    let Some(identity) = socket_identity(shard, socket_id).await? else {
        return Err(ApiError::auth_failed(format!(
            "socket {socket_id} is not a signed-in Protocol V2 connection on this server"
        )));
    };
    if mutation.client_id.as_deref().is_some_and(|c| c != &*identity.user_id) {
        return Err(ApiError::auth_failed("client_id is not the user the socket is signed in as"));
    }
    let (any, own) = match mutation.action {
        VersionAction::Update => (Op::MessageUpdateAny, Op::MessageUpdateOwn),
        VersionAction::Delete => (Op::MessageDeleteAny, Op::MessageDeleteOwn),
        _ => (Op::MessageAppendAny, Op::MessageAppendOwn),
    };
    let caps = identity.capabilities.as_deref();
    let user = Some(identity.user_id.to_string());
    if caps.is_some_and(|c| c.allows(any, channel)) {
        Ok((user, false))
    } else if caps.is_some_and(|c| c.allows(own, channel)) {
        Ok((user, true))
    } else {
        Err(ApiError::auth_failed(format!(
            "the socket's sign-in grants neither message_{0}_any nor message_{0}_own on {channel}",
            versioned::action_name(mutation.action)
        )))
    }
}

/// Who the socket is signed in as, if it is a signed-in Protocol V2 connection here.
pub(super) async fn socket_identity(shard: &Rc<Shard>, socket_id: &str) -> Result<Option<Identity>, ApiError> {
    let id = SocketId::parse(socket_id).ok_or_else(|| ApiError::invalid_input("socket_id is not a socket id"))?;
    // Crosses to the shard that holds the socket.
    Ok(shard.invoke_on(id.shard(shard.shards), SocketIdentity { socket_id: id }).await?)
}

/// A page's `limit`: positive, at most (and by default) `versioned_messages.max_page_size`.
pub(super) fn page_limit(shard: &Shard, limit: Option<String>) -> Result<usize, ApiError> {
    let max = shard.ctx.config.versioned.max_page_size;
    match limit {
        None => Ok(max),
        Some(l) => match l.parse::<usize>() {
            Ok(0) | Err(_) => Err(ApiError::invalid_input("limit must be a positive integer")),
            Ok(n) => Ok(n.min(max)),
        },
    }
}

/// What `read` finds for the message, if the message is of the channel's current stream.
pub(super) async fn in_current_stream<T>(
    t: &Target<'_>,
    channel: &str,
    read: storage::Reply<Option<T>>,
) -> Result<T, ApiError> {
    let storage = |e: storage::StorageError| ApiError::storage(e.to_string());
    // Crosses to the owner's store thread, twice at once: a serial of a stream an operator
    // has since reset names no message, even if the new stream reused the number.
    let meta = t.store.stream_meta(t.app_id, channel);
    let (meta, found) = (meta.await.map_err(storage)?, read.await.map_err(storage)?);
    match (meta, found) {
        (Some(meta), Some(found)) if meta.stream_id == t.stream_id => Ok(found),
        _ => Err(unknown()),
    }
}

/// The message, if it exists in the channel's current stream.
async fn read_message(t: &Target<'_>, channel: &str) -> Result<MessageState, ApiError> {
    in_current_stream(t, channel, t.store.message(t.app_id, channel, t.message, false)).await
}

/// `GET …/messages/{message_serial}`: the message as it stands now.
pub async fn latest(shard: &Rc<Shard>, app: AppIdx, channel: &str, serial: &str) -> Result<Response, ApiError> {
    let t = target(shard, app, channel, serial)?;
    let ai = &shard.ctx.config.ai_transport;
    if !ai.rollup.is_zero() && ai.is_ai_channel(channel) {
        // The text read must not be older than a live frame still held (`rollup.rs`).
        let owner = shard.channel_owner(app, channel);
        shard.invoke_on(owner, FlushRollup { app, channel: channel.into() }).await?;
    }
    let state = read_message(&t, channel).await?;
    Ok(Response::json(200, versioned::latest_json(channel, &t.stream_id, &state)))
}

/// `GET …/messages/{message_serial}/versions?limit&direction&cursor`.
pub async fn versions(
    shard: &Rc<Shard>,
    app: AppIdx,
    channel: &str,
    serial: &str,
    param: impl Fn(&str) -> Option<String>,
) -> Result<Response, ApiError> {
    let t = target(shard, app, channel, serial)?;
    let limit = page_limit(shard, param("limit"))?;
    let (direction, direction_name) = match param("direction").as_deref() {
        None | Some("newest_first") => (Direction::NewestFirst, "newest_first"),
        Some("oldest_first") => (Direction::OldestFirst, "oldest_first"),
        Some(other) => {
            return Err(ApiError::invalid_input(format!(
                "direction must be newest_first or oldest_first, not {other:?}"
            )))
        }
    };
    let after = match param("cursor") {
        None => None,
        Some(c) => match versioned::parse_serial(&c) {
            Some((serial, stream)) if stream == t.stream_id => Some(serial),
            _ => return Err(ApiError::invalid_input("cursor is not a version_serial of this message")),
        },
    };
    let state = read_message(&t, channel).await?;
    // Crosses to the owner's store thread.
    let page = t
        .store
        .versions(t.app_id, channel, t.message, VersionsQuery { limit, direction, after })
        .await
        .map_err(|e| ApiError::storage(e.to_string()))?
        .ok_or_else(unknown)?;
    let items: Vec<String> =
        page.items.iter().map(|v| versioned::version_item(channel, &t.stream_id, &state, v)).collect();
    Ok(Response::json(200, versioned::versions_json(channel, direction_name, limit, page.has_more, &items)))
}
