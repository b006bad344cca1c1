//! Pusher REST request authentication (`docs/protocol/http-api.md#request-signing`): query
//! signature, timestamp window and body MD5. The HMAC itself is `crate::auth`'s.

use super::request::{query_pairs, Request};
use super::response::ApiError;
use crate::auth;
use crate::config::{AppIdx, Registry};
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// How far `auth_timestamp` may be from the server's clock.
const TIMESTAMP_WINDOW_SECS: i64 = 600;

/// Authenticates a request to `/apps/{path_app_id}/...`; returns the app.
pub fn authenticate(apps: &Registry, req: &Request, path_app_id: &str) -> Result<AppIdx, ApiError> {
    if req.query.is_empty() {
        return Err(ApiError::invalid_input("Missing authentication parameters in the query string"));
    }
    let pairs = query_pairs(&req.query);
    if pairs.is_empty() {
        return Err(ApiError::invalid_input("Missing authentication parameters in the query string"));
    }
    // Keys lower-cased, values decoded, last duplicate wins, sorted by key.
    let params: BTreeMap<String, String> = pairs.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
    let key = params.get("auth_key").map(String::as_str).unwrap_or("");
    let idx = apps.by_key(key).ok_or_else(ApiError::app_not_found)?;
    let app = apps.get(idx);
    if app.id != path_app_id {
        return Err(ApiError::auth_failed("Authenticated app does not match route app_id"));
    }
    let ts: i64 = params
        .get("auth_timestamp")
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| ApiError::auth_failed("Missing or invalid auth_timestamp"))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if (now - ts).abs() > TIMESTAMP_WINDOW_SECS {
        return Err(ApiError::auth_failed("Timestamp expired or too far in the future"));
    }
    // POST must carry the body's MD5. Other methods may carry one (the Python SDK signs every
    // GET with the MD5 of the empty body); when present it must match the body all the same.
    match params.get("body_md5").filter(|m| !m.is_empty()) {
        Some(md5) if !md5.eq_ignore_ascii_case(&hex::encode(Md5::digest(&req.body))) => {
            return Err(ApiError::auth_failed("body_md5 mismatch"))
        }
        Some(_) => {}
        None if req.method == "POST" => return Err(ApiError::auth_failed("Missing body_md5")),
        None => {}
    }
    let signature = params.get("auth_signature").map(String::as_str).unwrap_or("");
    let canonical: Vec<String> =
        params.iter().filter(|(k, _)| *k != "auth_signature").map(|(k, v)| format!("{k}={v}")).collect();
    let to_sign = format!("{}\n{}\n{}", req.method.to_ascii_uppercase(), req.path, canonical.join("&"));
    if !auth::verify(&app.secret, to_sign.as_bytes(), signature) {
        return Err(ApiError::auth_failed("Invalid API signature"));
    }
    Ok(idx)
}
