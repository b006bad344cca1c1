//! Annotations (`docs/protocol/v2.md#annotations`): the request body, the annotation types and
//! their summarizers, the summaries folded from a message's annotation events, and the frames
//! and JSON answers. The owner orders the events; everything here is a pure function of them.

use super::outbound::push_json_str;
use ahash::AHashMap;
use serde::{Deserialize, Serialize};
use sonic_rs::{JsonContainerTrait, JsonType, JsonValueTrait};
use std::collections::BTreeMap;
use storage::{AnnotationAction, AnnotationRecord};

/// Longest annotation type, in bytes.
pub const MAX_TYPE_BYTES: usize = 256;
/// Longest annotation name or client id, in bytes.
const MAX_NAME_BYTES: usize = 256;
const MAX_CLIENT_ID_BYTES: usize = 128;
/// Client ids a summary lists per entry; past it the list is cut and `clipped` is true.
pub const MAX_SUMMARY_CLIENTS: usize = 100;

/// How a type's annotations are summarised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Summarizer {
    /// `{"total":n}`: live annotations.
    Total,
    /// `{"total","clientIds","clipped"}`: distinct clients.
    Flag,
    /// Per name, the distinct clients; a client may be under several names.
    Distinct,
    /// Per name, the distinct clients; a client is under one name at a time (its newest).
    Unique,
    /// Per name, each client's summed `count`, and the unidentified ones'.
    Multiple,
}

impl Summarizer {
    fn parse(s: &str) -> Option<Summarizer> {
        Some(match s {
            "total" => Summarizer::Total,
            "flag" => Summarizer::Flag,
            "distinct" => Summarizer::Distinct,
            "unique" => Summarizer::Unique,
            "multiple" => Summarizer::Multiple,
            _ => return None,
        })
    }

    fn needs_name(self) -> bool {
        matches!(self, Summarizer::Distinct | Summarizer::Unique | Summarizer::Multiple)
    }

    fn needs_client(self) -> bool {
        matches!(self, Summarizer::Flag | Summarizer::Distinct | Summarizer::Unique)
    }
}

/// The summarizer of `namespace:summarizer.v1`.
pub fn summarizer_of(ty: &str) -> Result<Summarizer, String> {
    if ty.len() > MAX_TYPE_BYTES {
        return Err(format!("type is {} bytes; at most {MAX_TYPE_BYTES}", ty.len()));
    }
    let shape = || format!("type {ty:?} is not namespace:summarizer.v1");
    let (namespace, rest) = ty.split_once(':').ok_or_else(shape)?;
    let (summarizer, version) = rest.rsplit_once('.').ok_or_else(shape)?;
    if namespace.is_empty() {
        return Err(shape());
    }
    let summarizer = Summarizer::parse(summarizer).ok_or_else(|| {
        format!("type {ty:?}: unknown summarizer {summarizer:?} (total, flag, distinct, unique or multiple)")
    })?;
    if version != "v1" {
        return Err(format!("type {ty:?}: summarizer version must be v1, not {version:?}"));
    }
    Ok(summarizer)
}

/// `POST …/annotations` body; both `clientId` and `client_id` (and `socketId`/`socket_id`)
/// are read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAnnotation {
    pub annotation_type: String,
    pub summarizer: Summarizer,
    pub name: Option<String>,
    pub client_id: Option<String>,
    pub socket_id: Option<String>,
    pub count: Option<u64>,
    /// `data` as raw JSON.
    pub data: Option<String>,
    pub encoding: Option<String>,
}

/// What an annotation request does to its message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "c", rename_all = "snake_case")]
pub enum Change {
    /// A new annotation; its client id is settled (a bound socket's user stands in).
    Create(NewAnnotation),
    /// Delete the annotation created at annotation serial `target`.
    Delete {
        target: u64,
        actor: Option<String>,
        /// The actor may delete only its own annotations.
        own_only: bool,
    },
}

impl NewAnnotation {
    pub fn parse(body: &sonic_rs::Value) -> Result<NewAnnotation, String> {
        if !body.is_object() {
            return Err("the body must be a JSON object".into());
        }
        let text = |keys: &[&str]| -> Result<Option<String>, String> {
            for key in keys {
                match body.get(key) {
                    None => {}
                    Some(v) if v.is_null() => {}
                    Some(v) => {
                        return v.as_str().map(|s| Some(s.to_owned())).ok_or_else(|| format!("{key} must be a string"))
                    }
                }
            }
            Ok(None)
        };
        let annotation_type = text(&["type"])?.ok_or("type is required (namespace:summarizer.v1)")?;
        let summarizer = summarizer_of(&annotation_type)?;
        let name = text(&["name"])?;
        if name.as_ref().is_some_and(|n| n.is_empty() || n.len() > MAX_NAME_BYTES) {
            return Err(format!("name must be 1 to {MAX_NAME_BYTES} bytes"));
        }
        let client_id = text(&["clientId", "client_id"])?;
        if client_id.as_ref().is_some_and(|c| c.is_empty() || c.len() > MAX_CLIENT_ID_BYTES) {
            return Err(format!("clientId must be 1 to {MAX_CLIENT_ID_BYTES} bytes"));
        }
        let count = match body.get("count") {
            None => None,
            Some(v) if v.is_null() => None,
            Some(v) => match v.as_u64() {
                Some(0) => return Err("count must be at least 1".into()),
                Some(n) => Some(n),
                None => return Err("count must be a positive integer".into()),
            },
        };
        let data = body.get("data").filter(|v| !v.is_null()).map(|v| v.to_string());
        Ok(NewAnnotation {
            annotation_type,
            summarizer,
            name,
            client_id,
            socket_id: text(&["socketId", "socket_id"])?,
            count,
            data,
            encoding: text(&["encoding"])?,
        })
    }

    /// The fields the summarizer needs, once the client id is settled (a socket's signed-in
    /// user stands in for an absent one).
    pub fn check_fields(&self) -> Result<(), String> {
        if self.summarizer.needs_name() && self.name.is_none() {
            return Err(format!("a {} annotation needs a name", self.annotation_type));
        }
        if self.summarizer.needs_client() && self.client_id.is_none() {
            return Err(format!("a {} annotation needs a clientId", self.annotation_type));
        }
        Ok(())
    }
}

/// An annotation serial as clients see it: zero-padded, so that text order is serial order.
pub fn serial_string(serial: u64) -> String {
    format!("{serial:020}")
}

pub fn parse_serial(s: &str) -> Option<u64> {
    (!s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

/// The annotations that count, after every event of one type in serial order: deletes take
/// their target out (for `multiple`, every annotation of the target's client under its name),
/// and for `unique` a client's newest annotation replaces its earlier ones.
fn live<'a>(
    summarizer: Summarizer,
    events: impl IntoIterator<Item = &'a AnnotationRecord>,
) -> Vec<&'a AnnotationRecord> {
    let mut live: BTreeMap<u64, &AnnotationRecord> = BTreeMap::new();
    for e in events {
        match e.action {
            AnnotationAction::Create => {
                if summarizer == Summarizer::Unique && e.client_id.is_some() {
                    live.retain(|_, r| r.client_id != e.client_id);
                }
                live.insert(e.serial, e);
            }
            AnnotationAction::Delete => {
                let Some(target) = e.deletes.and_then(|t| live.remove(&t)) else { continue };
                if summarizer == Summarizer::Multiple && target.client_id.is_some() {
                    live.retain(|_, r| !(r.client_id == target.client_id && r.name == target.name));
                }
            }
        }
    }
    live.into_values().collect()
}

/// Distinct client ids in order of first appearance.
fn clients<'a>(records: impl Iterator<Item = &'a AnnotationRecord>) -> Vec<&'a str> {
    let mut seen = ahash::AHashSet::new();
    records.filter_map(|r| r.client_id.as_deref()).filter(|c| seen.insert(*c)).collect()
}

fn client_list(out: &mut Vec<u8>, ids: &[&str]) {
    out.extend_from_slice(format!("{{\"total\":{},\"clientIds\":[", ids.len()).as_bytes());
    for (i, c) in ids.iter().take(MAX_SUMMARY_CLIENTS).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, c);
    }
    out.extend_from_slice(format!("],\"clipped\":{}}}", ids.len() > MAX_SUMMARY_CLIENTS).as_bytes());
}

/// The live annotations grouped by name, names in text order.
fn by_name<'a>(live: &[&'a AnnotationRecord]) -> BTreeMap<&'a str, Vec<&'a AnnotationRecord>> {
    let mut names: BTreeMap<&str, Vec<&AnnotationRecord>> = BTreeMap::new();
    for r in live {
        names.entry(r.name.as_deref().unwrap_or_default()).or_default().push(r);
    }
    names
}

/// A (message, type) summary after `events` (every event of that type, in serial order), and
/// whether nothing counts any more (such a summary is sent once, then no longer stored).
pub fn summarize<'a>(
    summarizer: Summarizer,
    events: impl IntoIterator<Item = &'a AnnotationRecord>,
) -> (Vec<u8>, bool) {
    let live = live(summarizer, events);
    let mut out = Vec::with_capacity(64);
    match summarizer {
        Summarizer::Total => out.extend_from_slice(format!("{{\"total\":{}}}", live.len()).as_bytes()),
        Summarizer::Flag => client_list(&mut out, &clients(live.iter().copied())),
        Summarizer::Distinct | Summarizer::Unique | Summarizer::Multiple => {
            out.push(b'{');
            for (i, (name, records)) in by_name(&live).into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json_str(&mut out, name);
                out.push(b':');
                if summarizer == Summarizer::Multiple {
                    multiple_entry(&mut out, &records);
                } else {
                    client_list(&mut out, &clients(records.into_iter()));
                }
            }
            out.push(b'}');
        }
    }
    (out, live.is_empty())
}

fn multiple_entry(out: &mut Vec<u8>, records: &[&AnnotationRecord]) {
    let mut counts: AHashMap<&str, u64> = AHashMap::new();
    let mut order = Vec::new();
    let (mut total, mut unidentified) = (0u64, 0u64);
    for r in records {
        let n = r.count.unwrap_or(1);
        total = total.saturating_add(n);
        match r.client_id.as_deref() {
            None => unidentified = unidentified.saturating_add(n),
            Some(c) => {
                let slot = counts.entry(c).or_insert_with(|| {
                    order.push(c);
                    0
                });
                *slot = slot.saturating_add(n);
            }
        }
    }
    out.extend_from_slice(format!("{{\"total\":{total},\"clientCounts\":{{").as_bytes());
    for (i, c) in order.iter().take(MAX_SUMMARY_CLIENTS).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, c);
        out.extend_from_slice(format!(":{}", counts[c]).as_bytes());
    }
    out.extend_from_slice(
        format!(
            "}},\"totalUnidentified\":{unidentified},\"clipped\":{},\"totalClientIds\":{}}}",
            order.len() > MAX_SUMMARY_CLIENTS,
            order.len()
        )
        .as_bytes(),
    );
}

/// `sockudo_internal:message` with `action: message.summary` for one (message, type), to
/// every V2 subscriber; ephemeral.
pub fn summary_frame(channel: &str, message_serial: &str, annotation_type: &str, summary: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + channel.len() + message_serial.len() + summary.len());
    out.extend_from_slice(b"{\"event\":\"sockudo_internal:message\",\"channel\":");
    push_json_str(&mut out, channel);
    out.extend_from_slice(b",\"data\":{\"action\":\"message.summary\",\"serial\":");
    push_json_str(&mut out, message_serial);
    out.extend_from_slice(b",\"annotations\":{\"summary\":{");
    push_json_str(&mut out, annotation_type);
    out.push(b':');
    out.extend_from_slice(summary);
    out.extend_from_slice(b"}}},\"extras\":{\"ephemeral\":true}}");
    out
}

/// An annotation event as clients see it (the raw event's `data`, a GET item). A delete
/// names the annotation it deletes.
pub fn event_json(message_serial: &str, r: &AnnotationRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    let create = r.action == AnnotationAction::Create;
    out.extend_from_slice(if create {
        b"{\"action\":\"annotation.create\""
    } else {
        b"{\"action\":\"annotation.delete\""
    });
    let field = |out: &mut Vec<u8>, key: &str, value: Option<&str>| {
        if let Some(v) = value {
            out.extend_from_slice(format!(",\"{key}\":").as_bytes());
            push_json_str(out, v);
        }
    };
    field(&mut out, "id", r.id.as_deref());
    field(&mut out, "serial", Some(&serial_string(r.serial)));
    field(&mut out, "messageSerial", Some(message_serial));
    field(&mut out, "type", Some(&r.annotation_type));
    field(&mut out, "name", r.name.as_deref());
    field(&mut out, "clientId", r.client_id.as_deref());
    if let Some(n) = r.count {
        out.extend_from_slice(format!(",\"count\":{n}").as_bytes());
    }
    if let Some(d) = &r.data {
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(d.as_bytes());
    }
    field(&mut out, "encoding", r.encoding.as_deref());
    field(&mut out, "deletedAnnotationSerial", r.deletes.map(serial_string).as_deref());
    out.extend_from_slice(format!(",\"timestamp\":{}}}", r.timestamp_ms).as_bytes());
    out
}

/// `sockudo_internal:annotation`: the raw event, to subscriptions in `ANNOTATION_SUBSCRIBE`
/// mode only.
pub fn event_frame(channel: &str, message_serial: &str, r: &AnnotationRecord) -> Vec<u8> {
    let data = event_json(message_serial, r);
    let mut out = Vec::with_capacity(64 + channel.len() + data.len());
    out.extend_from_slice(b"{\"event\":\"sockudo_internal:annotation\",\"channel\":");
    push_json_str(&mut out, channel);
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(&data);
    out.push(b'}');
    out
}

/// `GET …/annotations`: `nextCursor` (the last item's serial) only when more follow.
pub fn page_json(
    channel: &str,
    message_serial: &str,
    limit: usize,
    has_more: bool,
    items: &[AnnotationRecord],
) -> String {
    let mut out = Vec::with_capacity(96 + items.len() * 160);
    out.extend_from_slice(b"{\"channel\":");
    push_json_str(&mut out, channel);
    out.extend_from_slice(b",\"messageSerial\":");
    push_json_str(&mut out, message_serial);
    out.extend_from_slice(format!(",\"limit\":{limit},\"hasMore\":{has_more},\"nextCursor\":").as_bytes());
    match items.last() {
        Some(last) if has_more => push_json_str(&mut out, &serial_string(last.serial)),
        _ => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"items\":[");
    for (i, r) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&event_json(message_serial, r));
    }
    out.extend_from_slice(b"]}");
    String::from_utf8(out).expect("JSON built from UTF-8 is UTF-8")
}

/// The subscribe `modes`: whether `ANNOTATION_SUBSCRIBE` is among them. `modes` must be an
/// array of known mode names.
pub fn wants_annotations(modes: &sonic_rs::Value) -> Result<bool, String> {
    if modes.get_type() != JsonType::Array {
        return Err("modes must be an array".into());
    }
    let mut annotations = false;
    for m in modes.as_array().into_iter().flat_map(|a| a.iter()) {
        match m.as_str() {
            Some("SUBSCRIBE") | Some("PUBLISH") | Some("PRESENCE") => {}
            Some("ANNOTATION_SUBSCRIBE") => annotations = true,
            _ => return Err(format!("unknown subscribe mode {m}")),
        }
    }
    Ok(annotations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(serial: u64, name: &str, client: Option<&str>, count: Option<u64>) -> AnnotationRecord {
        AnnotationRecord {
            serial,
            action: AnnotationAction::Create,
            id: Some(format!("id-{serial}")),
            annotation_type: "r:x.v1".into(),
            name: Some(name.into()),
            client_id: client.map(Into::into),
            count,
            data: None,
            encoding: None,
            timestamp_ms: 1,
            deletes: None,
        }
    }

    fn delete(serial: u64, target: u64) -> AnnotationRecord {
        AnnotationRecord {
            action: AnnotationAction::Delete,
            id: None,
            deletes: Some(target),
            ..create(serial, "", None, None)
        }
    }

    fn text(s: Summarizer, events: &[AnnotationRecord]) -> (String, bool) {
        let (json, empty) = summarize(s, events);
        (String::from_utf8(json).unwrap(), empty)
    }

    #[test]
    fn types() {
        assert_eq!(summarizer_of("reactions:distinct.v1"), Ok(Summarizer::Distinct));
        assert_eq!(summarizer_of("a.b:multiple.v1"), Ok(Summarizer::Multiple));
        assert!(summarizer_of("reactions:distinct.v2").unwrap_err().contains("v1"));
        assert!(summarizer_of("reactions:sum.v1").unwrap_err().contains("unknown summarizer"));
        assert!(summarizer_of("distinct.v1").is_err());
        assert!(summarizer_of(":total.v1").is_err());
        assert!(summarizer_of(&format!("{}:total.v1", "n".repeat(300))).unwrap_err().contains("256"));
    }

    #[test]
    fn body() {
        let v = |s: &str| sonic_rs::from_str::<sonic_rs::Value>(s).unwrap();
        let a = NewAnnotation::parse(&v(r#"{"type":"r:distinct.v1","name":"up","client_id":"u1","data":{"k":1}}"#))
            .unwrap();
        assert_eq!((a.client_id.as_deref(), a.data.as_deref()), (Some("u1"), Some(r#"{"k":1}"#)));
        assert!(a.check_fields().is_ok());
        let a = NewAnnotation::parse(&v(r#"{"type":"r:distinct.v1","clientId":"u1"}"#)).unwrap();
        assert!(a.check_fields().unwrap_err().contains("name"));
        assert!(NewAnnotation::parse(&v(r#"{"type":"r:total.v1","count":0}"#)).unwrap_err().contains("count"));
        assert!(NewAnnotation::parse(&v(r#"{"name":"x"}"#)).unwrap_err().contains("type"));
    }

    #[test]
    fn summaries() {
        let events =
            [create(1, "up", Some("a"), None), create(2, "up", Some("b"), None), create(3, "down", Some("a"), None)];
        assert_eq!(text(Summarizer::Total, &events).0, r#"{"total":3}"#);
        assert_eq!(text(Summarizer::Flag, &events).0, r#"{"total":2,"clientIds":["a","b"],"clipped":false}"#);
        assert_eq!(
            text(Summarizer::Distinct, &events).0,
            r#"{"down":{"total":1,"clientIds":["a"],"clipped":false},"up":{"total":2,"clientIds":["a","b"],"clipped":false}}"#
        );
        // Unique: a's newest (down) replaces its up.
        assert_eq!(
            text(Summarizer::Unique, &events).0,
            r#"{"down":{"total":1,"clientIds":["a"],"clipped":false},"up":{"total":1,"clientIds":["b"],"clipped":false}}"#
        );
        let m = [
            create(1, "up", Some("a"), Some(2)),
            create(2, "up", Some("a"), None),
            create(3, "up", None, Some(5)),
            create(4, "up", Some("b"), Some(1)),
        ];
        assert_eq!(
            text(Summarizer::Multiple, &m).0,
            r#"{"up":{"total":9,"clientCounts":{"a":3,"b":1},"totalUnidentified":5,"clipped":false,"totalClientIds":2}}"#
        );
        // Deleting one of a's removes all of a's count under that name.
        let mut m2 = m.to_vec();
        m2.push(delete(5, 1));
        assert_eq!(
            text(Summarizer::Multiple, &m2).0,
            r#"{"up":{"total":6,"clientCounts":{"b":1},"totalUnidentified":5,"clipped":false,"totalClientIds":1}}"#
        );
        let gone = [create(1, "up", Some("a"), None), delete(2, 1), delete(3, 1)];
        assert_eq!(text(Summarizer::Distinct, &gone), ("{}".to_string(), true));
        assert_eq!(text(Summarizer::Total, &gone), (r#"{"total":0}"#.to_string(), true));
    }

    #[test]
    fn clipping() {
        let events: Vec<_> = (1..=150).map(|i| create(i, "up", Some(&format!("c{i}")), None)).collect();
        let (json, _) = text(Summarizer::Flag, &events);
        let v: sonic_rs::Value = sonic_rs::from_str(&json).unwrap();
        assert_eq!(v["total"].as_u64(), Some(150));
        assert_eq!(v["clientIds"].as_array().unwrap().len(), MAX_SUMMARY_CLIENTS);
        assert_eq!(v["clipped"].as_bool(), Some(true));
    }

    #[test]
    fn frames() {
        let r = create(7, "up", Some("u\"1"), None);
        let f = String::from_utf8(event_frame("chat", "m1", &r)).unwrap();
        let v: sonic_rs::Value = sonic_rs::from_str(&f).unwrap();
        assert_eq!(v["event"].as_str(), Some("sockudo_internal:annotation"));
        assert_eq!(v["data"]["serial"].as_str(), Some("00000000000000000007"));
        assert_eq!(v["data"]["clientId"].as_str(), Some("u\"1"));
        let s = String::from_utf8(summary_frame("chat", "m1", "r:total.v1", br#"{"total":1}"#)).unwrap();
        let v: sonic_rs::Value = sonic_rs::from_str(&s).unwrap();
        assert_eq!(v["data"]["annotations"]["summary"]["r:total.v1"]["total"].as_u64(), Some(1));
        assert_eq!(v["extras"]["ephemeral"].as_bool(), Some(true));
        assert_eq!(parse_serial("00000000000000000007"), Some(7));
        assert_eq!(parse_serial("x"), None);
        let modes = |s: &str| wants_annotations(&sonic_rs::from_str(s).unwrap());
        assert_eq!(modes(r#"["SUBSCRIBE","ANNOTATION_SUBSCRIBE"]"#), Ok(true));
        assert_eq!(modes(r#"["SUBSCRIBE"]"#), Ok(false));
        assert!(modes(r#""SUBSCRIBE""#).is_err());
        assert!(modes(r#"["FLY"]"#).is_err());
    }
}
