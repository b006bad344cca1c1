//! Client-to-server frames: decoding and the shapes of each event's `data`
//! (`docs/protocol/pusher.md#inbound-processing-order`).

use super::capabilities::Capabilities;
use super::error::ProtocolError;
use serde::Deserialize;
use sonic_rs::{JsonType, JsonValueTrait, LazyValue};
use std::borrow::Cow;

/// One decoded client frame. `data` stays raw JSON until a handler needs it.
#[derive(Deserialize)]
pub struct ClientFrame<'a> {
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub channel: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub data: Option<LazyValue<'a>>,
    /// V2 `extras` (AI events carry `extras.ai`).
    #[serde(borrow, default)]
    pub extras: Option<LazyValue<'a>>,
}

/// What a frame asks for, routed by name with either prefix family
/// (`docs/protocol/pusher.md#inbound-processing-order`).
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Ping,
    Pong,
    Subscribe,
    Unsubscribe,
    Signin,
    Resume,
    ChannelHistory,
    PresenceUpdate,
    /// `enable_delta_compression` (`docs/protocol/v2.md#delta-compression`).
    EnableDelta,
    /// `delta_sync_error`: the client lost a channel's delta base.
    DeltaSyncError,
    /// `sockudo:auth`: a capability token refresh (`docs/protocol/v2.md#capability-tokens`).
    Auth,
    ClientEvent(&'a str),
    /// An `ai-*` event (`docs/protocol/v2.md#ai-transport`).
    AiEvent(&'a str),
    /// Any other name: ignored without an error.
    Other,
}

impl<'a> ClientFrame<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<ClientFrame<'a>, ProtocolError> {
        let frame: ClientFrame<'a> = sonic_rs::from_slice(bytes)
            .map_err(|e| ProtocolError::invalid_format(format!("Decode failed: {}", first_line(&e))))?;
        if frame.event.is_none() {
            return Err(ProtocolError::invalid_event_name("Event name is required"));
        }
        Ok(frame)
    }

    pub fn event(&self) -> &str {
        self.event.as_deref().unwrap_or_default()
    }

    pub fn command(&self) -> Command<'_> {
        let name = self.event();
        if name.starts_with("client-") {
            return Command::ClientEvent(name);
        }
        if super::ai::is_ai_event(name) {
            return Command::AiEvent(name);
        }
        let bare = ["pusher:", "sockudo:"].iter().find_map(|p| name.strip_prefix(p));
        match bare {
            Some("ping") => Command::Ping,
            Some("pong") => Command::Pong,
            Some("subscribe") => Command::Subscribe,
            Some("unsubscribe") => Command::Unsubscribe,
            Some("signin") => Command::Signin,
            Some("resume") => Command::Resume,
            Some("channel_history") => Command::ChannelHistory,
            Some("presence_update") => Command::PresenceUpdate,
            Some("enable_delta_compression") => Command::EnableDelta,
            Some("delta_sync_error") => Command::DeltaSyncError,
            _ if name == "sockudo:auth" => Command::Auth,
            _ => Command::Other,
        }
    }

    /// The raw JSON text of `data`, or `null` when absent.
    pub fn data_raw(&self) -> &str {
        self.data.as_ref().map_or("null", |d| d.as_raw_str())
    }
}

/// The first line of a decoder error (sonic's later lines quote the input back).
fn first_line(e: &sonic_rs::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

/// `data` as an object: either an object, or a string holding one (pusher clients send both).
fn data_object<T: serde::de::DeserializeOwned>(data: Option<&LazyValue<'_>>) -> Result<T, ProtocolError> {
    let data = data.ok_or_else(|| ProtocolError::invalid_format("Missing data field"))?;
    let parsed = match data.get_type() {
        JsonType::String => {
            let inner = data.as_str().unwrap_or_default();
            sonic_rs::from_str(inner)
        }
        _ => sonic_rs::from_str(data.as_raw_str()),
    };
    parsed.map_err(|e| ProtocolError::invalid_format(format!("Invalid data: {e}")))
}

/// A string field that a client may also send as JSON (e.g. `channel_data` as an object): the
/// exact string when it is one, else the raw JSON text.
#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrJson {
    Str(String),
    Json(sonic_rs::Value),
}

impl StrOrJson {
    fn into_string(self) -> String {
        match self {
            StrOrJson::Str(s) => s,
            StrOrJson::Json(v) => v.to_string(),
        }
    }
}

#[derive(Deserialize)]
struct RawSubscribe {
    channel: Option<String>,
    auth: Option<String>,
    channel_data: Option<StrOrJson>,
    rewind: Option<sonic_rs::Value>,
    modes: Option<sonic_rs::Value>,
    filter: Option<sonic_rs::Value>,
    tags_filter: Option<sonic_rs::Value>,
    delta: Option<sonic_rs::Value>,
}

/// `pusher:subscribe` data.
#[derive(Debug)]
pub struct Subscribe {
    pub channel: String,
    pub auth: Option<String>,
    pub channel_data: Option<String>,
    pub rewind: Option<super::history::Rewind>,
    /// `modes` holds `ANNOTATION_SUBSCRIBE`: raw annotation events too
    /// (`docs/protocol/v2.md#annotations`).
    pub annotations: bool,
    /// `filter` (or `tags_filter`): which messages the subscription receives
    /// (`docs/protocol/v2.md#subscription-filters`).
    pub filter: Option<super::filter::Filter>,
    /// `delta`: this channel's delta compression, if the subscribe says
    /// (`docs/protocol/v2.md#delta-compression`).
    pub delta: Option<super::delta::Choice>,
}

impl Subscribe {
    /// `filters`: how V2 filters are read; `None` for V1 sockets, which are never filtered.
    pub fn parse(
        frame: &ClientFrame<'_>,
        filters: Option<super::filter::Settings>,
    ) -> Result<Subscribe, ProtocolError> {
        let raw: RawSubscribe = data_object(frame.data.as_ref())?;
        let channel = raw.channel.ok_or_else(|| ProtocolError::invalid_format("Missing channel field"))?;
        let rewind = match raw.rewind.filter(|v| !v.is_null()) {
            Some(v) => Some(super::history::Rewind::parse(&v).map_err(ProtocolError::invalid_format)?),
            None => None,
        };
        let annotations = match raw.modes.filter(|v| !v.is_null()) {
            Some(m) => super::annotations::wants_annotations(&m).map_err(ProtocolError::invalid_format)?,
            None => false,
        };
        let filter = match (raw.filter.or(raw.tags_filter).filter(|v| !v.is_null()), filters) {
            (Some(f), Some(settings)) => {
                super::filter::Filter::parse(&f, settings).map_err(ProtocolError::invalid_format)?
            }
            _ => None,
        };
        let delta = match raw.delta.filter(|v| !v.is_null()) {
            Some(d) => Some(super::delta::Choice::parse(&d).map_err(ProtocolError::invalid_format)?),
            None => None,
        };
        Ok(Subscribe {
            channel,
            auth: raw.auth,
            channel_data: raw.channel_data.map(StrOrJson::into_string),
            rewind,
            annotations,
            filter,
            delta,
        })
    }
}

/// The channel of a `delta_sync_error`: `{"channel": …}`.
pub fn delta_sync_channel(frame: &ClientFrame<'_>) -> Result<String, ProtocolError> {
    data_string(frame, "channel", "delta_sync_error needs a channel")
}

/// The token of a `sockudo:auth`: `{"token": …}`.
pub fn auth_token(frame: &ClientFrame<'_>) -> Result<String, ProtocolError> {
    data_string(frame, "token", "sockudo:auth needs data.token")
}

/// A string field of `data` (an object, or a string holding one); `missing` when it is absent
/// or not a string.
fn data_string(frame: &ClientFrame<'_>, field: &str, missing: &str) -> Result<String, ProtocolError> {
    let data: sonic_rs::Value = data_object(frame.data.as_ref())?;
    data.get(field).and_then(|v| v.as_str()).map(str::to_owned).ok_or_else(|| ProtocolError::invalid_format(missing))
}

/// The channel named by `pusher:unsubscribe`: `{"channel":..}`, or a bare string taken literally.
pub fn unsubscribe_channel(frame: &ClientFrame<'_>) -> Result<String, ProtocolError> {
    #[derive(Deserialize)]
    struct Raw {
        channel: Option<String>,
    }
    let data = frame.data.as_ref();
    if let Some(d) = data.filter(|d| d.get_type() == JsonType::String) {
        let s = d.as_str().unwrap_or_default();
        if let Ok(Raw { channel: Some(c) }) = sonic_rs::from_str::<Raw>(s) {
            return Ok(c);
        }
        return Ok(s.to_owned());
    }
    let raw: Raw = data_object(data)?;
    raw.channel.ok_or_else(|| ProtocolError::invalid_format("Missing channel field"))
}

/// A presence member as announced in `channel_data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    /// `user_info` as JSON text (`{}` when absent).
    pub user_info: String,
}

/// Parses presence `channel_data`. A numeric `user_id` is accepted and stringified (Laravel
/// sends integers), unlike in the reference (`docs/protocol/pusher.md#validation-order`).
pub fn presence_member(channel_data: &str) -> Result<Member, ProtocolError> {
    #[derive(Deserialize)]
    struct Raw {
        user_id: Option<sonic_rs::Value>,
        user_info: Option<sonic_rs::Value>,
    }
    let raw: Raw = sonic_rs::from_str(channel_data)
        .map_err(|_| ProtocolError::invalid_format("Invalid channel_data JSON for presence"))?;
    let user_id = match raw.user_id {
        Some(v) if v.is_str() => v.as_str().unwrap_or_default().to_owned(),
        Some(v) if v.is_number() => v.to_string(),
        _ => return Err(ProtocolError::channel("Missing user_id in channel_data")),
    };
    if user_id.is_empty() {
        return Err(ProtocolError::channel("Missing user_id in channel_data"));
    }
    let user_info = match raw.user_info {
        Some(v) if !v.is_null() => v.to_string(),
        _ => "{}".to_owned(),
    };
    Ok(Member { user_id, user_info })
}

/// `pusher:signin` data.
#[derive(Debug)]
pub struct Signin {
    pub user_data: String,
    pub auth: String,
}

impl Signin {
    pub fn parse(frame: &ClientFrame<'_>) -> Result<Signin, ProtocolError> {
        #[derive(Deserialize)]
        struct Raw {
            user_data: Option<StrOrJson>,
            auth: Option<String>,
        }
        let raw: Raw = data_object(frame.data.as_ref()).map_err(|e| match e {
            ProtocolError::InvalidFormat(why) => ProtocolError::Auth(why),
            other => other,
        })?;
        let user_data =
            raw.user_data.ok_or_else(|| ProtocolError::auth("Missing 'user_data' field in signin data"))?.into_string();
        let auth = raw.auth.ok_or_else(|| ProtocolError::auth("Missing 'auth' field in signin data"))?;
        Ok(Signin { user_data, auth })
    }
}

/// The signed-in user: `id`, and the `watchlist` if the user data carries one.
#[derive(Debug)]
pub struct UserData {
    pub id: String,
    pub watchlist: Option<Vec<String>>,
    /// `docs/protocol/v2.md#actor-binding`
    pub capabilities: Option<Capabilities>,
}

pub fn user_data(user_data: &str) -> Result<UserData, ProtocolError> {
    #[derive(Deserialize)]
    struct Raw {
        id: Option<sonic_rs::Value>,
        watchlist: Option<Vec<String>>,
        capabilities: Option<sonic_rs::Value>,
    }
    let raw: Raw =
        sonic_rs::from_str(user_data).map_err(|e| ProtocolError::auth(format!("Invalid user_data JSON: {e}")))?;
    let id = match raw.id {
        Some(v) if v.is_str() && !v.as_str().unwrap_or_default().is_empty() => {
            v.as_str().unwrap_or_default().to_owned()
        }
        _ => return Err(ProtocolError::auth("Missing 'id' field in user_data")),
    };
    let capabilities = match raw.capabilities.filter(|c| !c.is_null()) {
        Some(c) => Some(
            Capabilities::parse(&c)
                .map_err(|e| ProtocolError::auth(format!("Invalid capabilities in user_data: {e}")))?,
        ),
        None => None,
    };
    Ok(UserData { id, watchlist: raw.watchlist, capabilities })
}

/// One channel's recovery position in `sockudo:resume` (`docs/protocol/v2.md#resume-request`).
#[derive(Debug, PartialEq, Eq)]
pub struct ResumePosition {
    pub stream_id: Option<String>,
    pub serial: u64,
    pub last_message_id: Option<String>,
}

/// `sockudo:resume` data: positions by channel; `legacy` for the serial-only
/// `channel_serials` form, which only the hot tier may answer.
#[derive(Debug)]
pub struct Resume {
    pub positions: Vec<(String, ResumePosition)>,
    pub legacy: bool,
}

/// A serial as a JSON number or, since SDKs keep large serials as strings, a decimal string
/// (`docs/protocol/v2.md#large-serials`).
fn serial_of(v: &sonic_rs::Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// `sockudo:channel_history` (`docs/protocol/v2.md#websocket-history`): the channel and the page
/// wanted.
pub struct HistoryRequest {
    pub channel: String,
    pub params: super::history::HistoryParams,
}

impl HistoryRequest {
    pub fn parse(frame: &ClientFrame<'_>) -> Result<HistoryRequest, ProtocolError> {
        let data: sonic_rs::Value = data_object(frame.data.as_ref())?;
        let channel = data
            .get("channel")
            .and_then(|c| c.as_str())
            .or(frame.channel.as_deref())
            .ok_or_else(|| ProtocolError::invalid_format("Missing channel field"))?
            .to_owned();
        let params = super::history::HistoryParams::from_ws(&data).map_err(ProtocolError::invalid_format)?;
        Ok(HistoryRequest { channel, params })
    }
}

impl Resume {
    pub fn parse(frame: &ClientFrame<'_>) -> Result<Resume, ProtocolError> {
        use sonic_rs::JsonContainerTrait;
        let data: sonic_rs::Value = data_object(frame.data.as_ref())?;
        let bad = |why: &str| ProtocolError::invalid_format(why.to_owned());
        let (map, legacy) = match (data.get("channel_positions"), data.get("channel_serials")) {
            (Some(m), _) => (m, false),
            (None, Some(m)) => (m, true),
            (None, None) => return Err(bad("resume needs channel_positions")),
        };
        let map = map.as_object().ok_or_else(|| bad("channel_positions must be an object"))?;
        let mut positions = Vec::new();
        for (channel, v) in map.iter() {
            let position = if legacy {
                ResumePosition {
                    stream_id: None,
                    serial: serial_of(v).ok_or_else(|| bad("serial must be an unsigned integer"))?,
                    last_message_id: None,
                }
            } else {
                let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
                ResumePosition {
                    stream_id: text("stream_id"),
                    serial: v
                        .get("serial")
                        .and_then(serial_of)
                        .ok_or_else(|| bad("serial must be an unsigned integer"))?,
                    last_message_id: text("last_message_id"),
                }
            };
            positions.push((channel.to_owned(), position));
        }
        Ok(Resume { positions, legacy })
    }
}

/// `sockudo:presence_update` (`docs/protocol/v2.md#presence-update`): a presence member's new
/// `user_info`. The channel is `data.channel` or the frame's `channel`; the info is `data.data`
/// (as documented) or `data.user_info` (as sockudo-python sends it), an object or a string
/// holding JSON.
#[derive(Debug, PartialEq, Eq)]
pub struct PresenceUpdate {
    pub channel: String,
    /// The new `user_info` as JSON text.
    pub user_info: String,
}

impl PresenceUpdate {
    pub fn parse(frame: &ClientFrame<'_>) -> Result<PresenceUpdate, ProtocolError> {
        let data: sonic_rs::Value = data_object(frame.data.as_ref())
            .map_err(|_| ProtocolError::presence_update("data must be an object with the new data"))?;
        let channel = data
            .get("channel")
            .and_then(|c| c.as_str())
            .or(frame.channel.as_deref())
            .ok_or_else(|| ProtocolError::presence_update("missing channel"))?
            .to_owned();
        let info = data
            .get("data")
            .or_else(|| data.get("user_info"))
            .filter(|v| !v.is_null())
            .ok_or_else(|| ProtocolError::presence_update("missing data"))?;
        let user_info = match info.as_str() {
            // A string that holds JSON is that JSON (the reference's only accepted form);
            // any other string is just a string.
            Some(text) => match sonic_rs::from_str::<sonic_rs::Value>(text) {
                Ok(v) => v.to_string(),
                Err(_) => info.to_string(),
            },
            None => info.to_string(),
        };
        Ok(PresenceUpdate { channel, user_info })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_errors() {
        let f = ClientFrame::parse(br#"{"event":"pusher:subscribe","data":{"channel":"a"}}"#).unwrap();
        assert_eq!(f.command(), Command::Subscribe);
        assert_eq!(Subscribe::parse(&f, None).unwrap().channel, "a");
        let f = ClientFrame::parse(br#"{"event":"sockudo:ping"}"#).unwrap();
        assert_eq!(f.command(), Command::Ping);
        let e = ClientFrame::parse(b"nope").err().unwrap();
        assert!(e.to_string().starts_with("Invalid message format: Decode failed"));
        let e = ClientFrame::parse(br#"{"data":{}}"#).err().unwrap();
        assert_eq!(e.to_string(), "Invalid event name: Event name is required");
        let f = ClientFrame::parse(br#"{"event":"foo:bar"}"#).unwrap();
        assert_eq!(f.command(), Command::Other);
    }

    #[test]
    fn subscribe_string_data_and_channel_data() {
        let f = ClientFrame::parse(
            br#"{"event":"pusher:subscribe","data":"{\"channel\":\"presence-r\",\"auth\":\"k:s\",\"channel_data\":\"{\\\"user_id\\\":42}\"}"}"#,
        )
        .unwrap();
        let s = Subscribe::parse(&f, None).unwrap();
        assert_eq!((s.channel.as_str(), s.auth.as_deref()), ("presence-r", Some("k:s")));
        let m = presence_member(s.channel_data.as_deref().unwrap()).unwrap();
        assert_eq!(m, Member { user_id: "42".into(), user_info: "{}".into() });
        assert_eq!(presence_member(r#"{"user_info":{}}"#).unwrap_err().code(), 4300);
        assert_eq!(presence_member("x").unwrap_err().code(), 4000);
    }

    #[test]
    fn unsubscribe_forms() {
        let f = ClientFrame::parse(br#"{"event":"pusher:unsubscribe","data":"orders"}"#).unwrap();
        assert_eq!(unsubscribe_channel(&f).unwrap(), "orders");
        let f = ClientFrame::parse(br#"{"event":"pusher:unsubscribe","data":{"channel":"x"}}"#).unwrap();
        assert_eq!(unsubscribe_channel(&f).unwrap(), "x");
    }

    #[test]
    fn presence_update_shapes() {
        let parse = |json: &str| PresenceUpdate::parse(&ClientFrame::parse(json.as_bytes()).unwrap());
        let want = PresenceUpdate { channel: "presence-a".into(), user_info: r#"{"status":"thinking"}"#.into() };
        let documented =
            r#"{"event":"sockudo:presence_update","data":{"channel":"presence-a","data":{"status":"thinking"}}}"#;
        assert_eq!(parse(documented).unwrap(), want);
        let sdk =
            r#"{"event":"sockudo:presence_update","data":{"user_info":{"status":"thinking"}},"channel":"presence-a"}"#;
        assert_eq!(parse(sdk).unwrap(), want);
        let stringly =
            r#"{"event":"sockudo:presence_update","data":{"channel":"presence-a","data":"{\"status\":\"thinking\"}"}}"#;
        assert_eq!(parse(stringly).unwrap(), want);
        let plain = r#"{"event":"sockudo:presence_update","data":{"channel":"presence-a","data":"away"}}"#;
        assert_eq!(parse(plain).unwrap().user_info, r#""away""#);
        assert_eq!(parse(r#"{"event":"sockudo:presence_update","data":{"data":{}}}"#).unwrap_err().code(), 4000);
        assert_eq!(parse(r#"{"event":"sockudo:presence_update","data":{"channel":"c"}}"#).unwrap_err().code(), 4000);
    }

    #[test]
    fn signin_shapes() {
        let f = ClientFrame::parse(br#"{"event":"pusher:signin","data":{"auth":"k:x"}}"#).unwrap();
        assert_eq!(
            Signin::parse(&f).unwrap_err().to_string(),
            "Authentication error: Missing 'user_data' field in signin data"
        );
        assert_eq!(
            user_data(r#"{"name":"x"}"#).unwrap_err().to_string(),
            "Authentication error: Missing 'id' field in user_data"
        );
        let u = user_data(r#"{"id":"42","watchlist":["7"]}"#).unwrap();
        assert_eq!((u.id.as_str(), u.watchlist), ("42", Some(vec!["7".to_string()])));
    }
}
