//! Durable history on the wire (`docs/protocol/v2.md#durable-history`,
//! `docs/protocol/v2.md#rewind`): the parameters of an HTTP history read, of a WebSocket
//! `sockudo:channel_history` request and of a subscribe's `rewind`, and the one page shape both
//! history routes answer with.

use super::versioned;
use serde::Serialize;
use sonic_rs::JsonValueTrait;
use storage::{Bounds, Continuity, Direction, HistoryPage};

/// A history request as parsed, before the server fills in the app and caps.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HistoryParams {
    pub limit: Option<usize>,
    pub direction: Option<Direction>,
    pub cursor: Option<String>,
    pub bounds: Bounds,
    /// WebSocket only: end at the socket's attach serial (`docs/protocol/v2.md#websocket-history`).
    pub until_attach: bool,
}

/// The direction names of `docs/protocol/v2.md#http-history`, case-insensitive.
fn direction(v: &str) -> Result<Direction, String> {
    match v.to_ascii_lowercase().as_str() {
        "newest_first" | "backwards" | "reverse" => Ok(Direction::NewestFirst),
        "oldest_first" | "forwards" | "forward" => Ok(Direction::OldestFirst),
        other => Err(format!("direction must be newest_first or oldest_first, not \"{other}\"")),
    }
}

fn number(key: &str, v: &str) -> Result<u64, String> {
    v.trim().parse().map_err(|_| format!("{key} must be a non-negative integer, not \"{v}\""))
}

impl HistoryParams {
    /// The HTTP query string (`start`/`end` are publish times here, serials on the
    /// WebSocket: `docs/protocol/v2.md#websocket-history`).
    pub fn from_query(pairs: &[(String, String)]) -> Result<HistoryParams, String> {
        let mut p = HistoryParams::default();
        for (k, v) in pairs {
            match k.as_str() {
                "limit" => p.limit = Some(number(k, v)? as usize),
                "direction" => p.direction = Some(direction(v)?),
                "cursor" if !v.is_empty() => p.cursor = Some(v.clone()),
                "start_serial" => p.bounds.start_serial = Some(number(k, v)?),
                "end_serial" => p.bounds.end_serial = Some(number(k, v)?),
                "start_time_ms" | "start" => p.bounds.start_time_ms = Some(number(k, v)?),
                "end_time_ms" | "end" => p.bounds.end_time_ms = Some(number(k, v)?),
                _ => {}
            }
        }
        p.check()?;
        Ok(p)
    }

    /// `sockudo:channel_history` data, or its nested `params` (`start`/`end` are serials here).
    pub fn from_ws(data: &sonic_rs::Value) -> Result<HistoryParams, String> {
        let src = data.get("params").filter(|v| v.is_object()).unwrap_or(data);
        let mut p = HistoryParams::default();
        let num = |key: &str| -> Result<Option<u64>, String> {
            match src.get(key) {
                None => Ok(None),
                Some(v) if v.is_null() => Ok(None),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                    .map(Some)
                    .ok_or_else(|| format!("{key} must be a non-negative integer")),
            }
        };
        p.limit = num("limit")?.map(|n| n as usize);
        p.direction = match src.get("direction").filter(|v| !v.is_null()) {
            Some(v) => Some(direction(v.as_str().ok_or("direction must be a string")?)?),
            None => None,
        };
        p.cursor = match src.get("cursor").filter(|v| !v.is_null()) {
            Some(v) => Some(v.as_str().ok_or("cursor must be a string")?.to_owned()),
            None => None,
        };
        p.bounds.start_serial = num("start_serial")?.or(num("start")?);
        p.bounds.end_serial = num("end_serial")?.or(num("end")?);
        p.bounds.start_time_ms = num("start_time_ms")?;
        p.bounds.end_time_ms = num("end_time_ms")?;
        p.until_attach = match src.get("until_attach").or(src.get("untilAttach")) {
            None => false,
            Some(v) if v.is_null() => false,
            Some(v) => v.as_bool().ok_or("until_attach must be true or false")?,
        };
        p.check()?;
        Ok(p)
    }

    fn check(&self) -> Result<(), String> {
        if self.limit == Some(0) {
            return Err("limit must be at least 1".into());
        }
        let b = &self.bounds;
        if let (Some(s), Some(e)) = (b.start_serial, b.end_serial) {
            if s > e {
                return Err(format!("start_serial {s} is after end_serial {e}"));
            }
        }
        if let (Some(s), Some(e)) = (b.start_time_ms, b.end_time_ms) {
            if s > e {
                return Err(format!("start_time_ms {s} is after end_time_ms {e}"));
            }
        }
        Ok(())
    }
}

/// `rewind` in a subscribe (`docs/protocol/v2.md#rewind-request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewind {
    Count(u64),
    Seconds(u64),
}

impl Rewind {
    pub fn parse(v: &sonic_rs::Value) -> Result<Rewind, String> {
        let positive = |v: &sonic_rs::Value| {
            v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())).filter(|&n| n > 0)
        };
        let bad = || "rewind must be a positive count, {\"count\":N} or {\"seconds\":S}".to_owned();
        if v.is_object() {
            if let Some(n) = v.get("count") {
                return positive(n).map(Rewind::Count).ok_or_else(bad);
            }
            if let Some(s) = v.get("seconds").or(v.get("duration_seconds")) {
                return positive(s).map(Rewind::Seconds).ok_or_else(bad);
            }
            return Err(bad());
        }
        positive(v).map(Rewind::Count).ok_or_else(bad)
    }
}

#[derive(Serialize)]
struct BoundsOut {
    start_serial: Option<u64>,
    end_serial: Option<u64>,
    start_time_ms: Option<u64>,
    end_time_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until_attach: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attach_serial: Option<Option<u64>>,
}

/// What a stream holds, which names its counts on the wire: a channel's messages, or a
/// presence channel's events (`docs/protocol/v2.md#presence-history`), whose stream also says
/// whether a transition went unrecorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    Messages,
    Events { degraded: bool },
}

impl Counted {
    /// `(retained_messages, retained_events)` as the wire has one of them.
    pub(super) fn split(self, n: u64) -> (Option<u64>, Option<u64>) {
        match self {
            Counted::Messages => (Some(n), None),
            Counted::Events { .. } => (None, Some(n)),
        }
    }

    fn degraded(self) -> Option<bool> {
        match self {
            Counted::Messages => None,
            Counted::Events { degraded } => Some(degraded),
        }
    }
}

/// `continuity` of a history page (and of a presence snapshot).
#[derive(Serialize)]
pub(super) struct ContinuityOut<'a> {
    stream_id: &'a str,
    oldest_available_serial: Option<u64>,
    newest_available_serial: Option<u64>,
    oldest_available_published_at_ms: Option<u64>,
    newest_available_published_at_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retained_messages: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retained_events: Option<u64>,
    retained_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    degraded: Option<bool>,
    complete: bool,
    truncated_by_retention: bool,
}

impl<'a> ContinuityOut<'a> {
    /// `c`: what the store retains (`None`: the stream has stored nothing); `done`: nothing
    /// more is to be read within the request's bounds.
    pub(super) fn new(stream_id: &'a str, c: Option<&Continuity>, done: bool, counted: Counted) -> Self {
        let truncated = c.is_some_and(|c| c.truncated_by_retention);
        let (retained_messages, retained_events) = counted.split(c.map_or(0, |c| c.retained_messages));
        ContinuityOut {
            stream_id,
            oldest_available_serial: c.and_then(|c| c.oldest_available_serial),
            newest_available_serial: c.and_then(|c| c.newest_available_serial),
            oldest_available_published_at_ms: c.and_then(|c| c.oldest_available_published_at_ms),
            newest_available_published_at_ms: c.and_then(|c| c.newest_available_published_at_ms),
            retained_messages,
            retained_events,
            retained_bytes: c.map_or(0, |c| c.retained_bytes),
            degraded: counted.degraded(),
            complete: done && !truncated,
            truncated_by_retention: truncated,
        }
    }
}

/// The stream's health as a history page reports it (`docs/protocol/v2.md#stream-state`). A
/// local store is either serving (healthy) or the request failed with an error; a presence
/// stream is degraded once a transition went unrecorded, until it is reset.
#[derive(Serialize)]
pub(super) struct StreamState<'a> {
    stream_id: Option<&'a str>,
    durable_state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    recovery_allowed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    continuity_proven: Option<bool>,
    reset_required: bool,
    reason: Option<&'static str>,
    node_id: Option<&'static str>,
    last_transition_at_ms: Option<u64>,
    authoritative_source: &'static str,
    observed_source: &'static str,
}

impl<'a> StreamState<'a> {
    pub(super) fn of(stream_id: Option<&'a str>, counted: Counted) -> StreamState<'a> {
        let degraded = counted.degraded() == Some(true);
        StreamState {
            stream_id,
            durable_state: if degraded { "degraded" } else { "healthy" },
            recovery_allowed: (counted == Counted::Messages).then_some(true),
            continuity_proven: counted.degraded().map(|d| !d),
            reset_required: false,
            reason: degraded.then_some("presence_events_not_recorded"),
            node_id: None,
            last_transition_at_ms: None,
            authoritative_source: "local_store",
            observed_source: "local_store",
        }
    }
}

/// What the WebSocket form adds to `bounds`.
pub struct AttachBounds {
    pub until_attach: bool,
    pub attach_serial: Option<u64>,
}

/// The history page as both routes send it (`docs/protocol/v2.md#history-page`): items newest
/// or oldest first with the V2 message as it was delivered, or a mutable message as it
/// stands now.
pub fn page_json(
    channel: &str,
    page: &HistoryPage,
    direction: Direction,
    limit: usize,
    bounds: &Bounds,
    attach: Option<AttachBounds>,
) -> String {
    let stream_id = page.continuity.as_ref().map(|c| c.stream_id.as_str());
    let mut out = String::with_capacity(256 + page.items.iter().map(|i| i.payload.len() + 200).sum::<usize>());
    out.push_str("{\"items\":[");
    for (n, item) in page.items.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let (message, operation_kind) = versioned::shown(item, channel, stream_id.unwrap_or_default());
        let head = sonic_rs::to_string(&ItemHead {
            stream_id: stream_id.unwrap_or_default(),
            serial: item.serial,
            published_at_ms: item.published_at_ms,
            message_id: &item.message_id,
            event_name: &item.event_name,
            operation_kind,
            payload_size_bytes: message.len() as u64,
        })
        .expect("plain struct");
        out.push_str(&head[..head.len() - 1]);
        out.push_str(",\"message\":");
        out.push_str(std::str::from_utf8(&message).unwrap_or("null"));
        out.push('}');
    }
    out.push(']');
    push_page_tail(&mut out, page, direction, limit, bounds, attach, None, Counted::Messages);
    out
}

/// Closes a page whose `items` array `out` holds with the page's other keys
/// (`docs/protocol/v2.md#history-page`). `stream_id`: the stream to report when the store has
/// none yet (a page then has no `continuity` without it).
#[allow(clippy::too_many_arguments)]
pub(super) fn push_page_tail(
    out: &mut String,
    page: &HistoryPage,
    direction: Direction,
    limit: usize,
    bounds: &Bounds,
    attach: Option<AttachBounds>,
    stream_id: Option<&str>,
    counted: Counted,
) {
    let stream_id = page.continuity.as_ref().map(|c| c.stream_id.as_str()).or(stream_id);
    let rest = sonic_rs::to_string(&PageTail {
        direction,
        limit,
        has_more: page.has_more,
        next_cursor: page.next_cursor.as_deref(),
        bounds: BoundsOut {
            start_serial: bounds.start_serial,
            end_serial: bounds.end_serial,
            start_time_ms: bounds.start_time_ms,
            end_time_ms: bounds.end_time_ms,
            until_attach: attach.as_ref().map(|a| a.until_attach),
            attach_serial: attach.as_ref().map(|a| a.attach_serial),
        },
        continuity: stream_id.map(|id| ContinuityOut::new(id, page.continuity.as_ref(), !page.has_more, counted)),
        stream_state: StreamState::of(stream_id, counted),
    })
    .expect("plain struct");
    out.push(',');
    out.push_str(&rest[1..]);
}

#[derive(Serialize)]
struct ItemHead<'a> {
    stream_id: &'a str,
    serial: u64,
    published_at_ms: u64,
    message_id: &'a str,
    event_name: &'a str,
    operation_kind: &'static str,
    payload_size_bytes: u64,
}

#[derive(Serialize)]
struct PageTail<'a> {
    direction: Direction,
    limit: usize,
    has_more: bool,
    next_cursor: Option<&'a str>,
    bounds: BoundsOut,
    continuity: Option<ContinuityOut<'a>>,
    stream_state: StreamState<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Result<HistoryParams, String> {
        HistoryParams::from_query(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
    }

    #[test]
    fn http_params() {
        let p = q(&[("limit", "2"), ("direction", "Forwards"), ("start", "5"), ("end_serial", "9")]).unwrap();
        assert_eq!(p.limit, Some(2));
        assert_eq!(p.direction, Some(Direction::OldestFirst));
        assert_eq!((p.bounds.start_time_ms, p.bounds.end_serial), (Some(5), Some(9)));
        assert!(q(&[("direction", "sideways")]).unwrap_err().contains("sideways"));
        assert!(q(&[("limit", "0")]).is_err());
        assert!(q(&[("limit", "x")]).is_err());
        assert!(q(&[("start_serial", "9"), ("end_serial", "3")]).is_err());
        assert!(q(&[("start_time_ms", "9"), ("end", "3")]).is_err());
    }

    #[test]
    fn ws_params_and_aliases() {
        let v: sonic_rs::Value = sonic_rs::from_str(
            r#"{"channel":"c","params":{"start":3,"end":"8","untilAttach":true,"direction":"backwards"}}"#,
        )
        .unwrap();
        let p = HistoryParams::from_ws(&v).unwrap();
        assert_eq!((p.bounds.start_serial, p.bounds.end_serial), (Some(3), Some(8)));
        assert!(p.until_attach);
        assert_eq!(p.direction, Some(Direction::NewestFirst));
        let v: sonic_rs::Value = sonic_rs::from_str(r#"{"channel":"c","limit":0}"#).unwrap();
        assert!(HistoryParams::from_ws(&v).is_err());
    }

    #[test]
    fn rewind_forms() {
        let r = |s: &str| Rewind::parse(&sonic_rs::from_str::<sonic_rs::Value>(s).unwrap());
        assert_eq!(r("3"), Ok(Rewind::Count(3)));
        assert_eq!(r("\"4\""), Ok(Rewind::Count(4)));
        assert_eq!(r(r#"{"count":5}"#), Ok(Rewind::Count(5)));
        assert_eq!(r(r#"{"seconds":10}"#), Ok(Rewind::Seconds(10)));
        assert_eq!(r(r#"{"duration_seconds":2}"#), Ok(Rewind::Seconds(2)));
        assert!(r("0").is_err());
        assert!(r(r#"{"count":0}"#).is_err());
        assert!(r(r#"{"minutes":1}"#).is_err());
        assert!(r("true").is_err());
    }
}
