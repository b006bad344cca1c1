//! HTTP routes, one module per group: the signed REST API under `/apps/{id}/`
//! (`docs/protocol/http-api.md`) and the unsigned health routes. This file only dispatches:
//! it authenticates, applies the API rate limit, and turns a panic in a route into a 500 while
//! the shard goes on serving.

mod annotations;
mod channels;
mod events;
mod health;
mod history;
mod messages;
mod presence_history;
mod push;
mod revocations;
mod test_hooks;
mod users;

use super::request::{path_decode, query_pairs, Request};
use super::response::{ApiError, Response};
use super::rest_auth;
use crate::config::AppIdx;
use crate::metrics::{Limiter, PanicSite};
use crate::protocol::ProtocolError;
use crate::shard::limits::{self, RateKey};
use crate::ws::hub::Hub;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use storage::VersionAction;

/// Answers one request; also names the app it concerned (for the metrics).
pub async fn handle(hub: &Rc<Hub>, req: Request) -> (Option<AppIdx>, Response) {
    let app =
        req.path.strip_prefix("/apps/").and_then(|r| r.split('/').next()).and_then(|id| hub.shard.ctx.apps.by_id(id));
    let path = req.path.clone();
    match futures_lite::FutureExt::catch_unwind(AssertUnwindSafe(route(hub, req))).await {
        Ok(r) => (app, r),
        Err(p) => {
            hub.shard.report_panic(app, PanicSite::Request, &format!("HTTP {path}"), &*p);
            (app, ApiError::internal().into())
        }
    }
}

async fn route(hub: &Rc<Hub>, req: Request) -> Response {
    let path = req.path.clone();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method.as_str();
    let test_hooks = hub.shard.ctx.config.test_hooks;
    let result = match (method, segments.as_slice()) {
        ("GET", ["up"]) => return health::up(hub, None),
        ("GET", ["up", app_id]) => return health::up(hub, Some(app_id)),
        ("GET", ["live"]) => return Response::text(200, ""),
        ("GET", ["usage"]) if hub.shard.ctx.config.usage_enabled => return health::usage(),
        ("POST", ["test", "stall"]) if test_hooks => test_hooks::stall(hub, &req),
        ("POST", ["test", "panic"]) if test_hooks => test_hooks::panic(),
        (_, ["apps", app_id, rest @ ..]) => {
            let route = match (method, rest) {
                ("POST", ["events"]) => Route::Events,
                ("POST", ["batch_events"]) => Route::BatchEvents,
                ("GET", ["channels"]) => Route::Channels,
                ("GET", ["channels", name]) => Route::Channel(path_decode(name)),
                ("GET", ["channels", name, "users"]) => Route::Users(path_decode(name)),
                ("GET", ["channels", name, "history"]) => Route::History(path_decode(name)),
                ("GET", ["channels", name, "history", "state"]) => Route::HistoryState(path_decode(name)),
                ("POST", ["channels", name, "history", "reset"]) => Route::HistoryReset(path_decode(name)),
                ("POST", ["channels", name, "history", "purge"]) => Route::HistoryPurge(path_decode(name)),
                ("GET", ["channels", name, "presence", "history"]) => Route::PresenceHistory(path_decode(name)),
                ("GET", ["channels", name, "presence", "history", "snapshot"]) => {
                    Route::PresenceSnapshot(path_decode(name))
                }
                ("GET", ["channels", name, "presence", "history", "state"]) => Route::PresenceState(path_decode(name)),
                ("POST", ["channels", name, "presence", "history", "reset"]) => Route::PresenceReset(path_decode(name)),
                ("POST", ["channels", name, "messages", serial, action @ ("update" | "delete" | "append")]) => {
                    let action = match *action {
                        "update" => VersionAction::Update,
                        "delete" => VersionAction::Delete,
                        _ => VersionAction::Append,
                    };
                    Route::Mutate(path_decode(name), path_decode(serial), action)
                }
                ("GET", ["channels", name, "messages", serial]) => {
                    Route::Message(path_decode(name), path_decode(serial))
                }
                ("POST", ["channels", name, "messages", serial, "annotations"]) => {
                    Route::Annotate(path_decode(name), path_decode(serial))
                }
                ("GET", ["channels", name, "messages", serial, "annotations"]) => {
                    Route::Annotations(path_decode(name), path_decode(serial))
                }
                ("POST", ["revocations"]) => Route::Revoke,
                ("POST", ["push", "deviceRegistrations"]) => Route::PushRegister,
                ("GET", ["push", "deviceRegistrations"]) => Route::PushDevices,
                ("DELETE", ["push", "deviceRegistrations"]) => Route::PushDeleteClient,
                ("GET", ["push", "deviceRegistrations", id]) => Route::PushDevice(path_decode(id)),
                ("DELETE", ["push", "deviceRegistrations", id]) => Route::PushDeleteDevice(path_decode(id)),
                ("POST", ["push", "channelSubscriptions"]) => Route::PushSubscribe,
                ("GET", ["push", "channelSubscriptions"]) => Route::PushSubscriptions,
                ("DELETE", ["push", "channelSubscriptions"]) => Route::PushUnsubscribe,
                ("GET", ["push", "channelSubscriptions", "channels"]) => Route::PushChannels,
                ("POST", ["push", "publish"] | ["push", "batch", "publish"]) => Route::PushPublish,
                ("DELETE", ["channels", name, "messages", serial, "annotations", annotation]) => {
                    Route::DeleteAnnotation(path_decode(name), path_decode(serial), path_decode(annotation))
                }
                ("GET", ["channels", name, "messages", serial, "versions"]) => {
                    Route::Versions(path_decode(name), path_decode(serial))
                }
                ("POST", ["users", user, "terminate_connections"]) => {
                    Route::CloseUser(path_decode(user), ProtocolError::TerminatedByApp)
                }
                ("POST", ["users", user, "force_reconnect"]) => {
                    Route::CloseUser(path_decode(user), ProtocolError::ForceReconnect)
                }
                (_, ["events"] | ["batch_events"] | ["channels"] | ["channels", _] | ["channels", _, "users"])
                | (_, ["users", _, "terminate_connections" | "force_reconnect"]) => {
                    return Response::text(405, "405 METHOD NOT ALLOWED")
                }
                _ => return health::not_found(),
            };
            api(hub, &req, app_id, route).await
        }
        _ => return health::not_found(),
    };
    result.unwrap_or_else(Response::from)
}

/// A JSON request body: `Content-Type: application/json` (415), well-formed JSON (400).
fn json_body(req: &Request) -> Result<sonic_rs::Value, ApiError> {
    let ct = req.header("content-type").unwrap_or("");
    if !ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json") {
        return Err(ApiError::unsupported_media_type());
    }
    sonic_rs::from_slice(&req.body).map_err(|e| ApiError::invalid_input(format!("Invalid JSON body: {e}")))
}

enum Route {
    Events,
    BatchEvents,
    Channels,
    Channel(String),
    Users(String),
    History(String),
    HistoryState(String),
    HistoryReset(String),
    HistoryPurge(String),
    PresenceHistory(String),
    PresenceSnapshot(String),
    PresenceState(String),
    PresenceReset(String),
    /// Channel, message serial, action.
    Mutate(String, String, VersionAction),
    Message(String, String),
    Versions(String, String),
    /// Channel, message serial.
    Annotate(String, String),
    Annotations(String, String),
    /// Channel, message serial, annotation serial.
    DeleteAnnotation(String, String, String),
    CloseUser(String, ProtocolError),
    Revoke,
    PushRegister,
    PushDevices,
    PushDeleteClient,
    PushDevice(String),
    PushDeleteDevice(String),
    PushSubscribe,
    PushSubscriptions,
    PushUnsubscribe,
    PushChannels,
    PushPublish,
}

async fn api(hub: &Rc<Hub>, req: &Request, app_id: &str, route: Route) -> Result<Response, ApiError> {
    let shard = &hub.shard;
    let app = rest_auth::authenticate(&shard.ctx.apps, req, app_id)?;
    // After authentication, so that nobody without the secret can spend an app's quota.
    let rl = &shard.ctx.config.rate_limiter;
    if rl.enabled {
        let c = hub.counters(Some(app));
        c.rate_limit_checks[Limiter::ApiRate as usize].inc();
        let verdict = limits::check(shard, RateKey::Api(app), rl.api).await?;
        if !verdict.allowed {
            c.rate_limit_triggered[Limiter::ApiRate as usize].inc();
            return Err(ApiError::rate_limited("API requests for this app", &verdict, rl.api.window));
        }
    }
    let query = query_pairs(&req.query);
    let param = |name: &str| query.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match route {
        Route::Events => events::events(shard, app, req).await,
        Route::BatchEvents => events::batch(shard, app, req).await,
        Route::Channels => channels::channels(shard, app, param("filter_by_prefix").unwrap_or(""), param("info")).await,
        Route::Channel(name) => channels::channel(shard, app, &name, param("info")).await,
        Route::Users(name) => channels::users(shard, app, &name).await,
        Route::History(name) => history::history(shard, app, &name, &query).await,
        Route::HistoryState(name) => history::state(shard, app, &name).await,
        Route::HistoryReset(name) => history::change(shard, app, &name, &json_body(req)?, false).await,
        Route::HistoryPurge(name) => history::change(shard, app, &name, &json_body(req)?, true).await,
        Route::PresenceHistory(name) => presence_history::history(shard, app, &name, &query).await,
        Route::PresenceSnapshot(name) => presence_history::snapshot(shard, app, &name, &query).await,
        Route::PresenceState(name) => presence_history::state(shard, app, &name).await,
        Route::PresenceReset(name) => presence_history::reset(shard, app, &name, &json_body(req)?).await,
        Route::Mutate(name, serial, action) => messages::mutate(shard, app, &name, &serial, action, req).await,
        Route::Message(name, serial) => messages::latest(shard, app, &name, &serial).await,
        Route::Versions(name, serial) => {
            messages::versions(shard, app, &name, &serial, |k| param(k).map(str::to_owned)).await
        }
        Route::Annotate(name, serial) => annotations::create(shard, app, &name, &serial, req).await,
        Route::Annotations(name, serial) => {
            annotations::list(shard, app, &name, &serial, |k| param(k).map(str::to_owned)).await
        }
        Route::DeleteAnnotation(name, serial, annotation) => {
            annotations::delete(shard, app, &name, &serial, &annotation, param("socket_id")).await
        }
        Route::CloseUser(user, err) => users::close_user(shard, app, user, err).await,
        Route::Revoke => revocations::revoke(shard, app, &json_body(req)?).await,
        Route::PushRegister => push::register(shard, app, req).await,
        Route::PushDevices => push::list_devices(shard, app, req, &|k| param(k).map(str::to_owned)).await,
        Route::PushDeleteClient => push::delete_client(shard, app, req, &|k| param(k).map(str::to_owned)).await,
        Route::PushDevice(id) => push::get_device(shard, app, req, &id).await,
        Route::PushDeleteDevice(id) => push::delete_device(shard, app, req, &id).await,
        Route::PushSubscribe => push::subscribe(shard, app, req).await,
        Route::PushSubscriptions => push::list_subscriptions(shard, app, req, &|k| param(k).map(str::to_owned)).await,
        Route::PushUnsubscribe => push::unsubscribe(shard, app, req, &|k| param(k).map(str::to_owned)).await,
        Route::PushChannels => push::channels(shard, app, req, &|k| param(k).map(str::to_owned)).await,
        Route::PushPublish => push::publish(shard, app, req).await,
    }
}
