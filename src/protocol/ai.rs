//! The AI Transport conventions (`docs/protocol/v2.md#ai-transport`) with no I/O: the `ai-*`
//! event names, the checks of `extras.ai` (its `transport` registry and opaque `codec`), the
//! identity rules for client-sent AI events, and the error registry those checks answer with.

use serde::Deserialize;
use sonic_rs::{JsonType, JsonValueMutTrait, JsonValueTrait};
use std::collections::BTreeMap;
use std::fmt;

pub const INPUT: &str = "ai-input";
pub const CANCEL: &str = "ai-cancel";

/// Every `ai-*` event name: the two a signed-in client may send, the agent's (trusted, over
/// HTTP), and the legacy turn events.
pub fn is_ai_event(name: &str) -> bool {
    matches!(
        name,
        "ai-input"
            | "ai-cancel"
            | "ai-output"
            | "ai-run-start"
            | "ai-run-suspend"
            | "ai-run-resume"
            | "ai-run-end"
            | "ai-step-start"
            | "ai-step-end"
            | "ai-turn-start"
            | "ai-turn-end"
    )
}

/// The AI events a client may publish over a Protocol V2 socket.
pub fn is_client_ai_event(name: &str) -> bool {
    matches!(name, INPUT | CANCEL)
}

/// A refusal from the AI Transport registry: its numeric code, with the HTTP status and the
/// registry name derived from it in one place (`docs/protocol/v2.md#ai-transport-errors`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AiError {
    pub code: u32,
    pub message: String,
}

impl AiError {
    pub const PAYLOAD_TOO_LARGE: u32 = 40009;
    pub const MUTABLE_NOT_PERMITTED: u32 = 93002;
    pub const INVALID_TRANSPORT_HEADER: u32 = 104000;
    pub const HEADER_TOO_LARGE: u32 = 104001;
    pub const CLIENT_ID_SPOOF: u32 = 104002;
    pub const EVENT_NOT_PERMITTED: u32 = 104003;

    fn new(code: u32, message: impl Into<String>) -> AiError {
        AiError { code, message: message.into() }
    }
    pub fn invalid(message: impl Into<String>) -> AiError {
        Self::new(Self::INVALID_TRANSPORT_HEADER, message)
    }
    pub fn too_large(message: impl Into<String>) -> AiError {
        Self::new(Self::HEADER_TOO_LARGE, message)
    }
    pub fn spoof(message: impl Into<String>) -> AiError {
        Self::new(Self::CLIENT_ID_SPOOF, message)
    }
    pub fn not_permitted(message: impl Into<String>) -> AiError {
        Self::new(Self::EVENT_NOT_PERMITTED, message)
    }
    /// A message or channel past an AI streaming limit (accumulated bytes, appends, open streams).
    pub fn limit(message: impl Into<String>) -> AiError {
        Self::new(Self::PAYLOAD_TOO_LARGE, message)
    }
    pub fn mutable_not_permitted() -> AiError {
        Self::new(Self::MUTABLE_NOT_PERMITTED, "mutations not permitted on this channel")
    }

    /// The registry name, which the HTTP body carries as `code`.
    pub fn name(&self) -> &'static str {
        match self.code {
            Self::PAYLOAD_TOO_LARGE => "payload_too_large",
            Self::MUTABLE_NOT_PERMITTED => "mutable_not_permitted",
            Self::HEADER_TOO_LARGE => "ai_header_too_large",
            Self::CLIENT_ID_SPOOF => "ai_client_id_spoof",
            Self::EVENT_NOT_PERMITTED => "ai_event_not_permitted",
            _ => "ai_invalid_transport_header",
        }
    }

    pub fn status(&self) -> u16 {
        match self.code {
            Self::PAYLOAD_TOO_LARGE | Self::HEADER_TOO_LARGE => 413,
            Self::MUTABLE_NOT_PERMITTED | Self::CLIENT_ID_SPOOF | Self::EVENT_NOT_PERMITTED => 403,
            _ => 400,
        }
    }
}

impl fmt::Display for AiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {})", self.message, self.code, self.name())
    }
}

/// How much `extras.ai` may hold (`[ai_transport]`): the registry's floors, which the config
/// may raise but not lower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderLimits {
    pub transport_value_bytes: usize,
    pub steer_ids_bytes: usize,
}

pub const MAX_KEYS: usize = 32;
pub const MAX_KEY_BYTES: usize = 64;
pub const MIN_VALUE_BYTES: usize = 256;
pub const MIN_STEER_IDS_BYTES: usize = 2048;
const PROVIDER_METADATA_BYTES: usize = 8192;
/// The longest `message_id` an AI channel takes.
pub const MAX_MESSAGE_ID_BYTES: usize = 64;

impl Default for HeaderLimits {
    fn default() -> HeaderLimits {
        HeaderLimits { transport_value_bytes: MIN_VALUE_BYTES, steer_ids_bytes: MIN_STEER_IDS_BYTES }
    }
}

type Tier = BTreeMap<String, String>;

#[derive(Deserialize)]
struct RawAi {
    #[serde(default)]
    transport: Option<Tier>,
    #[serde(default)]
    codec: Option<Tier>,
}

/// The checked `extras.ai.transport` of a message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Transport(Tier);

impl Transport {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Client events only: every non-empty `*-client-id` must be the signed-in user.
    pub fn check_identity(&self, user: &str) -> Result<(), AiError> {
        match self.0.iter().find(|(k, v)| k.ends_with("-client-id") && v.as_str() != user) {
            Some((key, _)) => Err(AiError::spoof(format!("extras.ai.transport.{key} is not the signed-in user"))),
            None => Ok(()),
        }
    }
}

/// Whether `extras` (a JSON object's text) has an `ai` key at all.
pub fn has_ai(extras: Option<&str>) -> bool {
    extras.is_some_and(|x| sonic_rs::get_from_str(x, ["ai"]).is_ok())
}

/// Checks `extras.ai` of `extras` (a JSON object's text) against the registry and returns its
/// transport headers; `None` when there is no `extras.ai`.
pub fn check_extras(extras: Option<&str>, limits: HeaderLimits) -> Result<Option<Transport>, AiError> {
    let Some(ai) = extras.and_then(|x| sonic_rs::get_from_str(x, ["ai"]).ok()) else { return Ok(None) };
    let invalid =
        || AiError::invalid("extras.ai must be an object whose transport and codec are objects of string values");
    // (serde would also read a struct from an array)
    if ai.get_type() != JsonType::Object {
        return Err(invalid());
    }
    let raw: RawAi = sonic_rs::from_str(ai.as_raw_str()).map_err(|_| invalid())?;
    if let Some(codec) = &raw.codec {
        check_tier(
            "codec",
            codec,
            |key| key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            |key| if key == "providerMetadata" { PROVIDER_METADATA_BYTES } else { MIN_VALUE_BYTES },
        )?;
    }
    let Some(transport) = raw.transport else { return Ok(Some(Transport::default())) };
    check_tier(
        "transport",
        &transport,
        |key| key.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
        |key| if key == "steer-codec-message-ids" { limits.steer_ids_bytes } else { limits.transport_value_bytes },
    )?;
    for (key, value) in &transport {
        check_domain(key, value)?;
    }
    Ok(Some(Transport(transport)))
}

fn check_tier(
    tier: &str,
    entries: &Tier,
    key_ok: impl Fn(&str) -> bool,
    value_limit: impl Fn(&str) -> usize,
) -> Result<(), AiError> {
    if entries.len() > MAX_KEYS {
        return Err(AiError::too_large(format!("extras.ai.{tier} has {} keys; at most {MAX_KEYS}", entries.len())));
    }
    for (key, value) in entries {
        if key.len() > MAX_KEY_BYTES {
            return Err(AiError::too_large(format!("extras.ai.{tier} key {key:?} is over {MAX_KEY_BYTES} bytes")));
        }
        if key.is_empty() || !key_ok(key) {
            let allowed = if tier == "codec" { "[A-Za-z0-9_-]+" } else { "[a-z0-9-]+" };
            return Err(AiError::invalid(format!("extras.ai.{tier} key {key:?} must match {allowed}")));
        }
        let limit = value_limit(key);
        if value.len() > limit {
            return Err(AiError::too_large(format!("extras.ai.{tier}.{key} is over {limit} bytes")));
        }
    }
    Ok(())
}

/// The registry's transport keys and what each may hold.
fn check_domain(key: &str, value: &str) -> Result<(), AiError> {
    let allowed: &[&str] = match key {
        "run-id"
        | "turn-id"
        | "turn-client-id"
        | "input-client-id"
        | "input-codec-message-id"
        | "codec-message-id"
        | "parent"
        | "fork-of"
        | "stream-id"
        | "invocation-id"
        | "event-id"
        | "step-id"
        | "step-start-serial"
        | "steer-codec-message-ids"
        | "msg-regenerate"
        | "supersedes"
        | "error-code"
        | "model" => {
            if value.is_empty() {
                return Err(AiError::invalid(format!("extras.ai.transport.{key} must not be empty")));
            }
            return Ok(());
        }
        "run-client-id" | "step-client-id" | "error-message" => return Ok(()),
        "run-reason" => &["complete", "cancelled", "error"],
        "turn-reason" => &["complete", "cancelled", "error", "suspended"],
        "step-reason" => &["complete", "failed", "cancelled"],
        "stream" | "discrete" | "run-continue" | "turn-continue" => &["true", "false"],
        "status" => &["streaming", "complete", "cancelled"],
        "role" => &["user", "assistant", "system", "tool", "agent"],
        _ => return Err(AiError::invalid(format!("unknown extras.ai.transport key {key:?}"))),
    };
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(AiError::invalid(format!(
            "extras.ai.transport.{key} is {value:?}; it must be one of {}",
            allowed.join(", ")
        )))
    }
}

/// `extras.ai.transport.status` of `extras` (a JSON object's text), if it is a string.
pub fn status(extras: Option<&str>) -> Option<String> {
    let v = sonic_rs::get_from_str(extras?, ["ai", "transport", "status"]).ok()?;
    v.as_str().map(str::to_owned)
}

/// Whether that status ends the message's stream: nothing may be appended after it.
pub fn is_terminal(status: Option<&str>) -> bool {
    matches!(status, Some("complete" | "cancelled"))
}

/// An `ai-input` or `ai-cancel` from a client carries who sent it: `input-client-id` or
/// `run-client-id` is set to the signed-in user unless already there (and then checked to be
/// that user by `Transport::check_identity`). Returns the extras to publish.
pub fn stamp(extras: Option<&str>, event: &str, user: &str) -> Result<String, AiError> {
    let key = if event == CANCEL { "run-client-id" } else { "input-client-id" };
    let mut root: sonic_rs::Value = match extras {
        Some(x) => sonic_rs::from_str(x).map_err(|_| AiError::invalid("extras must be a JSON object"))?,
        None => sonic_rs::Value::new_object(),
    };
    let mut path = root.as_object_mut().ok_or_else(|| AiError::invalid("extras must be a JSON object"))?;
    for tier in ["ai", "transport"] {
        if path.get(&tier).is_none() {
            path.insert(&tier, sonic_rs::Value::new_object());
        }
        path = path.get_mut(&tier).and_then(|v| v.as_object_mut()).ok_or_else(|| {
            AiError::invalid(format!("extras.ai{} must be an object", if tier == "ai" { "" } else { ".transport" }))
        })?;
    }
    if path.get(&key).is_none() {
        path.insert(&key, user);
    }
    Ok(root.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(extras: &str) -> Result<Option<Transport>, AiError> {
        check_extras(Some(extras), HeaderLimits::default())
    }

    #[test]
    fn registry_checks() {
        assert_eq!(check(r#"{"echo":true}"#), Ok(None));
        let t = check(r#"{"ai":{"transport":{"status":"streaming","run-id":"r1"},"codec":{"providerMetadata":"x"}}}"#)
            .unwrap()
            .unwrap();
        assert_eq!(t.get("status"), Some("streaming"));
        let code = |x: &str| check(x).unwrap_err().code;
        assert_eq!(code(r#"{"ai":{"transport":{"status":"done"}}}"#), AiError::INVALID_TRANSPORT_HEADER);
        assert_eq!(code(r#"{"ai":{"transport":{"colour":"red"}}}"#), AiError::INVALID_TRANSPORT_HEADER);
        assert_eq!(code(r#"{"ai":{"transport":{"Run-Id":"x"}}}"#), AiError::INVALID_TRANSPORT_HEADER);
        assert_eq!(code(r#"{"ai":{"transport":{"run-id":""}}}"#), AiError::INVALID_TRANSPORT_HEADER);
        assert_eq!(code(r#"{"ai":{"transport":{"stream":"yes"}}}"#), AiError::INVALID_TRANSPORT_HEADER);
        assert_eq!(code(r#"{"ai":{"transport":{"run-id":1}}}"#), AiError::INVALID_TRANSPORT_HEADER);
        assert_eq!(code(r#"{"ai":[]}"#), AiError::INVALID_TRANSPORT_HEADER);
        assert_eq!(code(r#"{"ai":{"codec":{"a.b":"x"}}}"#), AiError::INVALID_TRANSPORT_HEADER);
        let long = "x".repeat(257);
        assert_eq!(code(&format!(r#"{{"ai":{{"transport":{{"model":"{long}"}}}}}}"#)), AiError::HEADER_TOO_LARGE);
        assert!(check(&format!(r#"{{"ai":{{"transport":{{"steer-codec-message-ids":"{long}"}}}}}}"#)).is_ok());
        let many: Vec<String> = (0..33).map(|i| format!(r#""k{i}":"v""#)).collect();
        assert_eq!(code(&format!(r#"{{"ai":{{"codec":{{{}}}}}}}"#, many.join(","))), AiError::HEADER_TOO_LARGE);
        assert_eq!(code(&format!(r#"{{"ai":{{"codec":{{"{}":"v"}}}}}}"#, "k".repeat(65))), AiError::HEADER_TOO_LARGE);
    }

    #[test]
    fn identity_and_stamp() {
        let t = check(r#"{"ai":{"transport":{"input-client-id":"alice"}}}"#).unwrap().unwrap();
        assert!(t.check_identity("alice").is_ok());
        assert_eq!(t.check_identity("bob").unwrap_err().code, AiError::CLIENT_ID_SPOOF);
        let json = |s: &str| sonic_rs::from_str::<sonic_rs::Value>(s).unwrap();
        let stamped = stamp(Some(r#"{"echo":false}"#), INPUT, "alice").unwrap();
        assert_eq!(json(&stamped), json(r#"{"echo":false,"ai":{"transport":{"input-client-id":"alice"}}}"#));
        let kept = stamp(Some(r#"{"ai":{"transport":{"run-client-id":"alice"}}}"#), CANCEL, "alice").unwrap();
        assert_eq!(json(&kept), json(r#"{"ai":{"transport":{"run-client-id":"alice"}}}"#));
        assert_eq!(json(&stamp(None, CANCEL, "bob").unwrap()), json(r#"{"ai":{"transport":{"run-client-id":"bob"}}}"#));
        assert!(stamp(Some(r#"{"ai":{"transport":[]}}"#), INPUT, "bob").is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(status(Some(r#"{"ai":{"transport":{"status":"complete"}}}"#)).as_deref(), Some("complete"));
        assert!(is_terminal(Some("cancelled")) && !is_terminal(Some("streaming")) && !is_terminal(None));
        assert_eq!(status(Some("{}")), None);
        assert!(has_ai(Some(r#"{"ai":{}}"#)) && !has_ai(Some("{}")) && !has_ai(None));
    }
}
