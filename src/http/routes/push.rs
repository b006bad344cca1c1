//! The push registry over HTTP (`docs/push.md`): device registrations and channel
//! subscriptions under `/apps/{id}/push/`, and the publish routes' admission. Every route is
//! a signed app API call; the `x-sockudo-push-capability` header narrows it to what a device
//! may do for itself (`push-subscribe`, with its `x-sockudo-device-identity-token`), the default
//! being the app's own `push-admin`.

use super::super::request::Request;
use super::super::response::{ApiError, Response};
use crate::config::AppIdx;
use crate::push::registry::{self, Device, Registration, Subscription, SubscriptionRequest};
use crate::shard::route::OwnerKey;
use crate::shard::Shard;
use base64::Engine as _;
use std::rc::Rc;
use storage::{RegistryPage, Store, SubscriptionsOf};

const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// What the caller may do: everything (the app's server), or act for one device.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Capability {
    Admin,
    Subscribe,
}

fn capability(req: &Request) -> Result<Capability, ApiError> {
    match req.header("x-sockudo-push-capability") {
        None | Some("push-admin") => Ok(Capability::Admin),
        Some("push-subscribe") => Ok(Capability::Subscribe),
        Some(other) => Err(ApiError::forbidden(format!(
            "x-sockudo-push-capability {other:?} is neither push-admin nor push-subscribe"
        ))),
    }
}

fn admin_only(req: &Request) -> Result<(), ApiError> {
    match capability(req)? {
        Capability::Admin => Ok(()),
        Capability::Subscribe => Err(ApiError::forbidden("this push route needs the push-admin capability")),
    }
}

/// A push JSON body: `application/json` or any `…+json` type; anything else is 400.
fn body(req: &Request) -> Result<sonic_rs::Value, ApiError> {
    let ct = req.header("content-type").unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence != "application/json" && !(essence.contains('/') && essence.ends_with("+json")) {
        return Err(ApiError::invalid_input("push routes take a JSON body (Content-Type: application/json)"));
    }
    sonic_rs::from_slice(&req.body).map_err(|e| ApiError::invalid_input(format!("Invalid JSON body: {e}")))
}

/// The store that holds the app's push registry, and the app's id it is kept under.
fn registry(shard: &Shard, app: AppIdx) -> Result<(&Store, &str), ApiError> {
    if shard.ctx.backplane.is_some() {
        // Each node's store would hold a registry of its own: refused rather than split.
        return Err(ApiError::new(
            501,
            "not_supported_with_adapter",
            "the push registry does not go through the cluster log yet; with several nodes it is not available",
        ));
    }
    let stores = shard
        .ctx
        .stores
        .as_ref()
        .ok_or_else(|| ApiError::feature_disabled("push needs the server's durable storage (history.enabled)"))?;
    let app = shard.ctx.apps.get(app);
    Ok((&stores.by_shard[shard.owner(OwnerKey::PushRegistry(app))], &app.id))
}

fn storage_error(e: storage::StorageError) -> ApiError {
    ApiError::storage(e.to_string())
}

/// `limit` (1 to 1000, 100 by default) and `cursor` of a list.
fn page_params(param: &dyn Fn(&str) -> Option<String>) -> Result<(usize, Option<String>), ApiError> {
    let limit = match param("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(ApiError::invalid_input(format!("limit must be an integer from 1 to {MAX_LIMIT}"))),
        },
    };
    let cursor = match param("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c.as_bytes()).ok();
            Some(
                raw.and_then(|r| String::from_utf8(r).ok())
                    .ok_or_else(|| ApiError::invalid_input("cursor is not one this server issued"))?,
            )
        }
    };
    Ok((limit, cursor))
}

/// `{"items":[…],"next_cursor":…,"has_more":…}`; the cursor names the last item.
fn page(items: Vec<sonic_rs::Value>, last: Option<&str>, has_more: bool) -> Response {
    let next = last.filter(|_| has_more).map(|l| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(l));
    let body = sonic_rs::json!({"items": items, "next_cursor": next, "has_more": has_more});
    Response::json(200, body.to_string())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    sonic_rs::from_slice(bytes).map_err(|e| ApiError::storage(format!("an undecodable push registry row: {e}")))
}

async fn device(store: &Store, app_id: &str, id: &str) -> Result<Option<Device>, ApiError> {
    // Crosses to the registry's store thread.
    let row = store.push_device(app_id, id).await.map_err(storage_error)?;
    row.map(|b| decode(&b)).transpose()
}

/// The device a `push-subscribe` caller acts for: it must exist and the request must carry
/// its identity token.
fn check_identity(req: &Request, device: Option<&Device>, id: &str) -> Result<(), ApiError> {
    let token = req.header("x-sockudo-device-identity-token").ok_or_else(|| {
        ApiError::auth_failed(format!("acting for device {id:?} needs its x-sockudo-device-identity-token"))
    })?;
    match device {
        Some(d) if d.identity_token_hash == registry::identity_token_hash(token) => Ok(()),
        Some(_) => Err(ApiError::auth_failed(format!("the device identity token is not device {id:?}'s"))),
        None => Err(ApiError::auth_failed(format!("device {id:?} is not registered"))),
    }
}

/// `POST …/push/deviceRegistrations`: creates or replaces a registration (201). The app's
/// server (push-admin) gets a device identity token for a new device, or a new one when it
/// asks (`x-sockudo-rotate-device-identity-token: true`); a device (push-subscribe) may only
/// update its own registration, with its token.
pub async fn register(shard: &Rc<Shard>, app: AppIdx, req: &Request) -> Result<Response, ApiError> {
    let cap = capability(req)?;
    let r = Registration::parse(&body(req)?).map_err(ApiError::invalid_input)?;
    let (store, app_id) = registry(shard, app)?;
    let existing = device(store, app_id, &r.id).await?;
    if cap == Capability::Subscribe {
        check_identity(req, existing.as_ref(), &r.id)?;
    }
    let rotate = req.header("x-sockudo-rotate-device-identity-token").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let (token, token_hash) = match (&existing, cap) {
        (Some(d), _) if !rotate || cap == Capability::Subscribe => (None, d.identity_token_hash.clone()),
        _ => {
            let (token, hash) = registry::new_identity_token();
            (Some(token), hash)
        }
    };
    let device = Device {
        push_state: r
            .state
            .or_else(|| existing.as_ref().map(|d| d.push_state.clone()))
            .unwrap_or_else(|| "ACTIVE".into()),
        push_failure_count: existing.as_ref().map_or(0, |d| d.push_failure_count),
        id: r.id,
        client_id: r.client_id,
        form_factor: r.form_factor,
        platform: r.platform,
        metadata: r.metadata,
        timezone: r.timezone,
        locale: r.locale,
        recipient: r.recipient,
        last_active_at_ms: crate::time::unix_ms(),
        identity_token_hash: token_hash,
    };
    let stored = sonic_rs::to_vec(&device).expect("a device serializes");
    // Crosses to the registry's store thread; synced before it answers.
    store.push_put_device(app_id, &device.id, device.client_id.as_deref(), stored).await.map_err(storage_error)?;
    let mut answer = sonic_rs::json!({
        "change": if existing.is_some() { "updated" } else { "created" },
        "tokenHash": device.recipient.token_hash(),
        "device": device.shown(app_id),
    });
    if let (Some(t), Some(obj)) = (token, sonic_rs::JsonValueMutTrait::as_object_mut(&mut answer)) {
        obj.insert(&"deviceIdentityToken", sonic_rs::Value::from(t.as_str()));
    }
    Ok(Response::json(201, answer.to_string()))
}

/// `GET …/push/deviceRegistrations/{id}`: the app's server, or the device with its token.
pub async fn get_device(shard: &Rc<Shard>, app: AppIdx, req: &Request, id: &str) -> Result<Response, ApiError> {
    let cap = capability(req)?;
    let (store, app_id) = registry(shard, app)?;
    let found = device(store, app_id, id).await?;
    if cap == Capability::Subscribe {
        check_identity(req, found.as_ref(), id)?;
    }
    let d = found.ok_or_else(|| ApiError::not_found(format!("no device registration {id:?}")))?;
    Ok(Response::json(200, d.shown(app_id).to_string()))
}

/// `DELETE …/push/deviceRegistrations/{id}` (204): the registration and its subscriptions.
pub async fn delete_device(shard: &Rc<Shard>, app: AppIdx, req: &Request, id: &str) -> Result<Response, ApiError> {
    let cap = capability(req)?;
    let (store, app_id) = registry(shard, app)?;
    if cap == Capability::Subscribe {
        check_identity(req, device(store, app_id, id).await?.as_ref(), id)?;
    }
    match store.push_delete_device(app_id, id).await.map_err(storage_error)? {
        true => Ok(Response::text(204, "")),
        false => Err(ApiError::not_found(format!("no device registration {id:?}"))),
    }
}

/// `GET …/push/deviceRegistrations?limit&cursor` (push-admin).
pub async fn list_devices(
    shard: &Rc<Shard>,
    app: AppIdx,
    req: &Request,
    param: &dyn Fn(&str) -> Option<String>,
) -> Result<Response, ApiError> {
    admin_only(req)?;
    let (limit, cursor) = page_params(param)?;
    let (store, app_id) = registry(shard, app)?;
    let RegistryPage { items, has_more } =
        store.push_devices(app_id, cursor.as_deref(), limit).await.map_err(storage_error)?;
    let last = items.last().map(|(id, _)| id.clone());
    let shown = items.iter().map(|(_, b)| decode::<Device>(b).map(|d| d.shown(app_id))).collect::<Result<_, _>>()?;
    Ok(page(shown, last.as_deref(), has_more))
}

/// `DELETE …/push/deviceRegistrations?clientId=…` (push-admin): every device of the client.
pub async fn delete_client(
    shard: &Rc<Shard>,
    app: AppIdx,
    req: &Request,
    param: &dyn Fn(&str) -> Option<String>,
) -> Result<Response, ApiError> {
    admin_only(req)?;
    let client = param("clientId").or_else(|| param("client_id")).filter(|c| !c.is_empty());
    let client = client.ok_or_else(|| ApiError::invalid_input("removing registrations needs clientId"))?;
    let (store, app_id) = registry(shard, app)?;
    let mut deleted = 0u64;
    for id in store.push_client_devices(app_id, &client).await.map_err(storage_error)? {
        deleted += u64::from(store.push_delete_device(app_id, &id).await.map_err(storage_error)?);
    }
    Ok(Response::json(200, sonic_rs::json!({"deleted": deleted, "consistency": "eventual"}).to_string()))
}

/// `POST …/push/channelSubscriptions` (201): subscribes a registered device to a channel; a
/// device (push-subscribe) only itself, with its token.
pub async fn subscribe(shard: &Rc<Shard>, app: AppIdx, req: &Request) -> Result<Response, ApiError> {
    let cap = capability(req)?;
    let r = SubscriptionRequest::parse(&body(req)?).map_err(ApiError::invalid_input)?;
    shard.ctx.apps.get(app).validate_channel(&r.channel).map_err(|e| ApiError::invalid_input(e.to_string()))?;
    let (store, app_id) = registry(shard, app)?;
    let found = device(store, app_id, &r.device_id).await?;
    if cap == Capability::Subscribe {
        check_identity(req, found.as_ref(), &r.device_id)?;
    }
    let d = found.ok_or_else(|| ApiError::not_found(format!("no device registration {:?}", r.device_id)))?;
    let sub = Subscription {
        channel: r.channel,
        device_id: r.device_id,
        client_id: d.client_id.clone(),
        provider: d.recipient.provider().to_owned(),
        token_hash: d.recipient.token_hash(),
        credential_version: r.credential_version,
    };
    let stored = sonic_rs::to_vec(&sub).expect("a subscription serializes");
    // Crosses to the registry's store thread; synced before it answers.
    store.push_subscribe(app_id, &sub.channel, &sub.device_id, stored.clone()).await.map_err(storage_error)?;
    Ok(Response::json(201, stored))
}

/// Whose subscriptions a list or removal names (`channel` or `deviceId`); a device
/// (push-subscribe) may name only itself, with its token.
async fn subscriptions_of(
    shard: &Rc<Shard>,
    app: AppIdx,
    req: &Request,
    param: &dyn Fn(&str) -> Option<String>,
) -> Result<(SubscriptionsOf, Option<String>), ApiError> {
    let channel = param("channel").filter(|c| !c.is_empty());
    let device_id = param("deviceId").or_else(|| param("device_id")).filter(|d| !d.is_empty());
    if capability(req)? == Capability::Subscribe {
        let id = device_id.as_deref().ok_or_else(|| ApiError::forbidden("a device may name only its own deviceId"))?;
        let (store, app_id) = registry(shard, app)?;
        check_identity(req, device(store, app_id, id).await?.as_ref(), id)?;
    }
    match (channel, device_id) {
        (Some(c), d) => Ok((SubscriptionsOf::Channel(c), d)),
        (None, Some(d)) => Ok((SubscriptionsOf::Device(d), None)),
        (None, None) => Err(ApiError::invalid_input("name the subscriptions by channel or deviceId")),
    }
}

/// `GET …/push/channelSubscriptions?channel&deviceId&limit&cursor`.
pub async fn list_subscriptions(
    shard: &Rc<Shard>,
    app: AppIdx,
    req: &Request,
    param: &dyn Fn(&str) -> Option<String>,
) -> Result<Response, ApiError> {
    let (of, device_filter) = subscriptions_of(shard, app, req, param).await?;
    let (limit, cursor) = page_params(param)?;
    let (store, app_id) = registry(shard, app)?;
    let RegistryPage { items, has_more } = match (&of, &device_filter) {
        // One channel and one device: that subscription, if any, found among the device's
        // (a device has few channels; a channel may have many devices).
        (SubscriptionsOf::Channel(c), Some(d)) => {
            let of_device = SubscriptionsOf::Device(d.clone());
            let all = store.push_subscriptions(app_id, of_device, None, usize::MAX).await.map_err(storage_error)?;
            let items = all.items.into_iter().filter(|(channel, _)| channel == c).map(|(_, b)| (d.clone(), b));
            RegistryPage { items: items.collect(), has_more: false }
        }
        _ => store.push_subscriptions(app_id, of, cursor.as_deref(), limit).await.map_err(storage_error)?,
    };
    let last = items.last().map(|(id, _)| id.clone());
    let shown = items.iter().map(|(_, b)| decode::<sonic_rs::Value>(b)).collect::<Result<_, _>>()?;
    Ok(page(shown, last.as_deref(), has_more))
}

/// `DELETE …/push/channelSubscriptions?channel=…` or `?deviceId=…`: `{"deleted":n}`.
pub async fn unsubscribe(
    shard: &Rc<Shard>,
    app: AppIdx,
    req: &Request,
    param: &dyn Fn(&str) -> Option<String>,
) -> Result<Response, ApiError> {
    let (of, device_filter) = subscriptions_of(shard, app, req, param).await?;
    let (store, app_id) = registry(shard, app)?;
    let deleted = match (of, device_filter) {
        (SubscriptionsOf::Channel(c), Some(d)) => {
            store.push_unsubscribe_one(app_id, &c, &d).await.map_err(storage_error)?
        }
        (of, _) => store.push_unsubscribe(app_id, of).await.map_err(storage_error)?,
    };
    Ok(Response::json(200, sonic_rs::json!({"deleted": deleted}).to_string()))
}

/// `GET …/push/channelSubscriptions/channels?limit&cursor` (push-admin).
pub async fn channels(
    shard: &Rc<Shard>,
    app: AppIdx,
    req: &Request,
    param: &dyn Fn(&str) -> Option<String>,
) -> Result<Response, ApiError> {
    admin_only(req)?;
    let (limit, cursor) = page_params(param)?;
    let (store, app_id) = registry(shard, app)?;
    let (names, has_more) = store.push_channels(app_id, cursor.as_deref(), limit).await.map_err(storage_error)?;
    let last = names.last().cloned();
    let items = names.into_iter().map(|n| sonic_rs::Value::from(n.as_str())).collect();
    Ok(page(items, last.as_deref(), has_more))
}

/// `POST …/push/publish` and `…/push/batch/publish`: admission. No provider delivery worker
/// runs yet, so nothing is accepted (the registry keeps working).
pub async fn publish(shard: &Rc<Shard>, app: AppIdx, req: &Request) -> Result<Response, ApiError> {
    admin_only(req)?;
    body(req)?;
    registry(shard, app)?;
    Err(ApiError::new(
        503,
        "service_unavailable",
        "push admission unavailable: no provider delivery worker runs on this server",
    ))
}
