//! The operator's history controls on the wire (`docs/protocol/v2.md#history-operator-endpoints`):
//! the confirmation body a reset or purge must carry, the purge modes, and the answers.

use super::history::{Counted, StreamState};
use serde::Serialize;
use sonic_rs::JsonValueTrait;
use storage::{Purge, Purged, StreamMeta};

/// A destructive request's confirmation: it names its channel and operation, and says why.
#[derive(Debug, PartialEq, Eq)]
pub struct Confirmation {
    pub reason: String,
    pub requested_by: Option<String>,
}

fn text<'a>(body: &'a sonic_rs::Value, key: &str) -> Result<Option<&'a str>, String> {
    match body.get(key) {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| format!("{key} must be a string")),
    }
}

/// Checks the body of a reset or purge of `channel`: `confirm_channel` and `confirm_operation`
/// must repeat the request, and `reason` must say why.
pub fn confirmation(body: &sonic_rs::Value, channel: &str, operation: &str) -> Result<Confirmation, String> {
    if text(body, "confirm_channel")? != Some(channel) {
        return Err(format!("confirm_channel must be \"{channel}\", the channel of the request"));
    }
    if text(body, "confirm_operation")? != Some(operation) {
        return Err(format!("confirm_operation must be \"{operation}\""));
    }
    let reason = text(body, "reason")?.map(str::trim).filter(|r| !r.is_empty());
    let reason = reason.ok_or("reason must say why (a non-empty string)")?.to_owned();
    Ok(Confirmation { reason, requested_by: text(body, "requested_by")?.map(str::to_owned) })
}

/// The purge's `mode` with the one bound it takes.
pub fn purge_mode(body: &sonic_rs::Value) -> Result<Purge, String> {
    let bound = |key: &str| match body.get(key) {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| format!("{key} must be a non-negative integer")),
    };
    let (serial, time) = (bound("before_serial")?, bound("before_time_ms")?);
    match (text(body, "mode")?, serial, time) {
        (Some("all"), None, None) => Ok(Purge::All),
        (Some("all"), _, _) => Err("mode \"all\" takes no before_serial or before_time_ms".into()),
        (Some("before_serial"), Some(s), None) => Ok(Purge::BeforeSerial(s)),
        (Some("before_time_ms"), None, Some(t)) => Ok(Purge::BeforeTime(t)),
        (Some(m @ ("before_serial" | "before_time_ms")), _, _) => {
            Err(format!("mode \"{m}\" takes {m} and nothing else"))
        }
        _ => Err("mode must be \"all\", \"before_serial\" or \"before_time_ms\"".into()),
    }
}

/// A channel's stream: its id, the serial the next message takes, and what history retains.
#[derive(Serialize)]
pub struct StreamDescription<'a> {
    stream_id: &'a str,
    next_serial: u64,
    retained: Retained<'a>,
    state: StreamState<'a>,
}

#[derive(Serialize)]
struct Retained<'a> {
    stream_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    retained_messages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retained_events: Option<u64>,
    retained_bytes: u64,
    oldest_available_serial: Option<u64>,
    newest_available_serial: Option<u64>,
    oldest_available_published_at_ms: Option<u64>,
    newest_available_published_at_ms: Option<u64>,
}

impl<'a> StreamDescription<'a> {
    /// `stored` is the store's view (`None`: nothing was ever stored for the stream).
    pub fn new(
        stream_id: &'a str,
        next_serial: u64,
        stored: Option<&StreamMeta>,
        counted: Counted,
    ) -> StreamDescription<'a> {
        let retained = stored.filter(|m| m.has_retained());
        let (retained_messages, retained_events) = counted.split(retained.map_or(0, |m| m.retained_messages));
        StreamDescription {
            stream_id,
            next_serial,
            retained: Retained {
                stream_id,
                retained_messages,
                retained_events,
                retained_bytes: retained.map_or(0, |m| m.retained_bytes),
                oldest_available_serial: retained.map(|m| m.oldest_serial),
                newest_available_serial: retained.map(|m| m.newest_serial()),
                oldest_available_published_at_ms: retained.map(|m| m.oldest_published_at_ms),
                newest_available_published_at_ms: retained.map(|m| m.newest_published_at_ms),
            },
            state: StreamState::of(Some(stream_id), counted),
        }
    }
}

#[derive(Serialize)]
struct State<'a> {
    channel: &'a str,
    stream: &'a StreamDescription<'a>,
}

/// The answer to `GET …/history/state` and `GET …/presence/history/state`.
pub fn state_json(channel: &str, stream: &StreamDescription<'_>) -> String {
    sonic_rs::to_string(&State { channel, stream }).expect("plain struct")
}

#[derive(Serialize)]
struct Done<'a> {
    ok: bool,
    operation: &'static str,
    channel: &'a str,
    reason: &'a str,
    requested_by: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before_serial: Option<Option<u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    before_time_ms: Option<Option<u64>>,
    previous_stream_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_stream_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purged_messages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purged_events: Option<u64>,
    purged_bytes: u64,
    stream: &'a StreamDescription<'a>,
}

/// The answer to a reset or (with its mode) a purge.
pub fn done_json(
    channel: &str,
    c: &Confirmation,
    purge: Option<Purge>,
    purged: &Purged,
    stream: &StreamDescription<'_>,
    counted: Counted,
) -> String {
    let (purged_messages, purged_events) = counted.split(purged.messages);
    let (mode, before_serial, before_time_ms) = match purge {
        None => (None, None, None),
        Some(Purge::All) => (Some("all"), Some(None), Some(None)),
        Some(Purge::BeforeSerial(s)) => (Some("before_serial"), Some(Some(s)), Some(None)),
        Some(Purge::BeforeTime(t)) => (Some("before_time_ms"), Some(None), Some(Some(t))),
    };
    let done = Done {
        ok: true,
        operation: if purge.is_some() { "purge" } else { "reset" },
        channel,
        reason: &c.reason,
        requested_by: c.requested_by.as_deref(),
        mode,
        before_serial,
        before_time_ms,
        previous_stream_id: purged.previous_stream_id.as_deref(),
        new_stream_id: purge.is_none().then_some(purged.meta.stream_id.as_str()),
        purged_messages,
        purged_events,
        purged_bytes: purged.bytes,
        stream,
    };
    sonic_rs::to_string(&done).expect("plain struct")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> sonic_rs::Value {
        sonic_rs::from_str(json).unwrap()
    }

    #[test]
    fn confirmations_and_modes() {
        let ok = body(r#"{"confirm_channel":"c","confirm_operation":"purge","reason":"gdpr","mode":"all"}"#);
        assert_eq!(
            confirmation(&ok, "c", "purge").unwrap(),
            Confirmation { reason: "gdpr".into(), requested_by: None }
        );
        assert!(confirmation(&ok, "other", "purge").unwrap_err().contains("confirm_channel"));
        assert!(confirmation(&ok, "c", "reset").unwrap_err().contains("confirm_operation"));
        let no_reason = body(r#"{"confirm_channel":"c","confirm_operation":"reset","reason":"  "}"#);
        assert!(confirmation(&no_reason, "c", "reset").unwrap_err().contains("reason"));
        assert_eq!(purge_mode(&ok), Ok(Purge::All));
        assert_eq!(purge_mode(&body(r#"{"mode":"before_serial","before_serial":5}"#)), Ok(Purge::BeforeSerial(5)));
        assert_eq!(purge_mode(&body(r#"{"mode":"before_time_ms","before_time_ms":7}"#)), Ok(Purge::BeforeTime(7)));
        for bad in [
            r#"{"mode":"all","before_serial":5}"#,
            r#"{"mode":"before_serial"}"#,
            r#"{"mode":"before_serial","before_serial":5,"before_time_ms":1}"#,
            r#"{"mode":"before_time_ms","before_serial":5}"#,
            r#"{"mode":"sometimes"}"#,
            r#"{}"#,
        ] {
            assert!(purge_mode(&body(bad)).is_err(), "{bad}");
        }
    }
}
