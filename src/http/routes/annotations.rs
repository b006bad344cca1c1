//! Annotations over HTTP (`docs/protocol/v2.md#annotations`): create and delete go through
//! the channel's owner, which numbers and summarises them; the events page is read straight
//! from the owner's store.

use super::super::request::Request;
use super::super::response::{ApiError, Response};
use super::json_body;
use super::messages::{in_current_stream, page_limit, socket_identity, target, Target};
use crate::config::AppIdx;
use crate::protocol::annotations::{self, Change, NewAnnotation};
use crate::protocol::capabilities::{Capabilities, Op};
use crate::publish::PublishError;
use crate::shard::channel::annotate::{Annotate, Annotated};
use crate::shard::Shard;
use std::rc::Rc;
use std::sync::Arc;
use storage::AnnotationsQuery;

/// The message, once annotations are on for its channel.
fn annotated<'a>(shard: &'a Shard, app: AppIdx, channel: &str, serial: &str) -> Result<Target<'a>, ApiError> {
    let t = target(shard, app, channel, serial)?;
    if !shard.ctx.config.versioned.annotations {
        return Err(ApiError::forbidden("Annotations are not enabled on this server (annotations.enabled)"));
    }
    if !shard.ctx.apps.get(app).annotations_allowed(channel) {
        return Err(ApiError::forbidden(format!(
            "Annotations are not enabled for {channel} (the channel namespace's annotations_enabled)"
        )));
    }
    Ok(t)
}

/// The signed-in user and capabilities of a socket a request is bound to; a socket that is
/// not a signed-in V2 connection here has no capability set.
async fn bound(shard: &Rc<Shard>, socket_id: &str) -> Result<(Arc<str>, Arc<Capabilities>), ApiError> {
    let identity = socket_identity(shard, socket_id).await?;
    match identity.and_then(|i| i.capabilities.map(|c| (i.user_id, c))) {
        Some(bound) => Ok(bound),
        None => Err(ApiError::forbidden(format!(
            "socket {socket_id} has no capability set (not a Protocol V2 connection signed in with capabilities here)"
        ))),
    }
}

async fn run(
    shard: &Rc<Shard>,
    app: AppIdx,
    channel: &str,
    t: Target<'_>,
    change: Change,
) -> Result<Annotated, ApiError> {
    let request = Annotate {
        app,
        channel: channel.into(),
        message: t.message,
        stream_id: t.stream_id.as_str().into(),
        change,
        id: crate::protocol::outbound::uuid_v4(),
        at_ms: crate::time::unix_ms(),
    };
    let owner = shard.channel_owner(app, channel);
    shard.invoke_on(owner, request).await?.map_err(|f| ApiError::from(PublishError::from(f)))
}

/// `POST …/messages/{message_serial}/annotations`.
pub async fn create(
    shard: &Rc<Shard>,
    app: AppIdx,
    channel: &str,
    serial: &str,
    req: &Request,
) -> Result<Response, ApiError> {
    let t = annotated(shard, app, channel, serial)?;
    let mut a = NewAnnotation::parse(&json_body(req)?).map_err(ApiError::invalid_input)?;
    let limit = shard.ctx.apps.get(app).limits.max_event_payload_bytes;
    if let Some(data) = a.data.as_deref().filter(|d| d.len() > limit) {
        return Err(ApiError::payload_too_large(format!(
            "Annotation data size ({} bytes) exceeds limit ({}KB)",
            data.len(),
            limit / 1024
        )));
    }
    if let Some(socket_id) = a.socket_id.clone() {
        let (user, caps) = bound(shard, &socket_id).await?;
        if !(caps.allows(Op::Publish, channel) && caps.allows(Op::AnnotationPublish, channel)) {
            return Err(ApiError::forbidden(format!(
                "the socket's capabilities do not grant both publish and annotation-publish on {channel}"
            )));
        }
        if a.client_id.as_deref().is_some_and(|c| c != &*user) {
            return Err(ApiError::auth_failed("clientId is not the user the socket is signed in as"));
        }
        a.client_id = Some(user.to_string());
    }
    a.check_fields().map_err(ApiError::invalid_input)?;
    let done = run(shard, app, channel, t, Change::Create(a)).await?;
    Ok(Response::json(200, format!("{{\"annotationSerial\":\"{}\"}}", annotations::serial_string(done.serial))))
}

/// `DELETE …/messages/{message_serial}/annotations/{annotation_serial}?socket_id`.
pub async fn delete(
    shard: &Rc<Shard>,
    app: AppIdx,
    channel: &str,
    serial: &str,
    annotation: &str,
    socket_id: Option<&str>,
) -> Result<Response, ApiError> {
    let t = annotated(shard, app, channel, serial)?;
    let target = annotations::parse_serial(annotation)
        .ok_or_else(|| ApiError::invalid_input(format!("{annotation:?} is not an annotation serial")))?;
    let (actor, own_only) = match socket_id {
        None => (None, false),
        Some(socket_id) => {
            let (user, caps) = bound(shard, socket_id).await?;
            let own_only = if caps.allows(Op::AnnotationDeleteAny, channel) {
                false
            } else if caps.allows(Op::AnnotationDeleteOwn, channel) {
                true
            } else {
                return Err(ApiError::forbidden(format!(
                    "the socket's capabilities grant neither annotation-delete-any nor annotation-delete-own on {channel}"
                )));
            };
            (Some(user.to_string()), own_only)
        }
    };
    let done = run(shard, app, channel, t, Change::Delete { target, actor, own_only }).await?;
    Ok(Response::json(
        200,
        format!(
            "{{\"annotationSerial\":\"{}\",\"deletedAnnotationSerial\":\"{}\"}}",
            annotations::serial_string(done.serial),
            annotations::serial_string(target)
        ),
    ))
}

/// `GET …/messages/{message_serial}/annotations?type&limit&from_serial&socket_id`.
pub async fn list(
    shard: &Rc<Shard>,
    app: AppIdx,
    channel: &str,
    serial: &str,
    param: impl Fn(&str) -> Option<String>,
) -> Result<Response, ApiError> {
    let t = annotated(shard, app, channel, serial)?;
    if let Some(socket_id) = param("socket_id") {
        let (_, caps) = bound(shard, &socket_id).await?;
        if !caps.allows(Op::AnnotationSubscribe, channel) {
            return Err(ApiError::forbidden(format!(
                "the socket's capabilities do not grant annotation-subscribe on {channel}"
            )));
        }
    }
    let annotation_type = param("type");
    if let Some(ty) = &annotation_type {
        annotations::summarizer_of(ty).map_err(ApiError::invalid_input)?;
    }
    let limit = page_limit(shard, param("limit"))?;
    let after = match param("from_serial") {
        None => 0,
        Some(s) => annotations::parse_serial(&s)
            .ok_or_else(|| ApiError::invalid_input(format!("from_serial {s:?} is not an annotation serial")))?,
    };
    let query = AnnotationsQuery { after, limit, annotation_type };
    let page = in_current_stream(&t, channel, t.store.annotations(t.app_id, channel, t.message, query)).await?;
    let message_serial = crate::protocol::versioned::serial_string(t.message, &t.stream_id);
    Ok(Response::json(200, annotations::page_json(channel, &message_serial, limit, page.has_more, &page.items)))
}
