//! Presence history on the wire (`docs/protocol/v2.md#presence-history`): the record of one
//! member transition as it is stored, the page of `GET …/presence/history`, the snapshot
//! replayed from those records. The operator's state and reset answer like channel history's
//! (`operator.rs`), counting events.

use super::history::{push_page_tail, ContinuityOut, Counted};
use indexmap::IndexMap;
use serde::Serialize;
use sonic_rs::JsonValueTrait;
use storage::{Bounds, Continuity, Direction, HistoryItem, HistoryPage};

/// What happened to a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PresenceEvent {
    Added,
    Updated,
    Removed,
}

impl PresenceEvent {
    pub fn name(self) -> &'static str {
        match self {
            PresenceEvent::Added => "member_added",
            PresenceEvent::Updated => "member_updated",
            PresenceEvent::Removed => "member_removed",
        }
    }
}

/// Why it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Join,
    /// A `sockudo:presence_update` (the reference records these as `join`).
    Update,
    /// The member's last socket unsubscribed or its connection ended.
    Disconnect,
    /// The server closed the last socket for missing pongs.
    Timeout,
    /// The server closed the last socket for cause: the app terminated the user's
    /// connections, or its authentication failed or expired.
    ForcedDisconnect,
}

impl Cause {
    pub fn name(self) -> &'static str {
        match self {
            Cause::Join => "join",
            Cause::Update => "update",
            Cause::Disconnect => "disconnect",
            Cause::Timeout => "timeout",
            Cause::ForcedDisconnect => "forced_disconnect",
        }
    }

    /// The cause `name` names (another node's, from the cluster log).
    pub fn from_name(name: &str) -> Cause {
        match name {
            "join" => Cause::Join,
            "update" => Cause::Update,
            "timeout" => Cause::Timeout,
            "forced_disconnect" => Cause::ForcedDisconnect,
            _ => Cause::Disconnect,
        }
    }

    /// Why a socket's memberships ended, from the close code the server sent (0: none, the
    /// connection just ended).
    pub fn of_close(code: u16) -> Cause {
        match code {
            4201 => Cause::Timeout,
            4009 => Cause::ForcedDisconnect,
            _ => Cause::Disconnect,
        }
    }
}

/// One transition as the owner records it.
pub struct Transition<'a> {
    pub event: PresenceEvent,
    pub cause: Cause,
    pub user_id: &'a str,
    /// The socket whose join, update or leave it was.
    pub connection_id: Option<String>,
    /// The member's `user_info` JSON (after an update: the new one; on removal: the last one).
    pub user_info: &'a str,
}

/// The keys a record and a page item share (an item adds its record's size).
#[derive(Serialize)]
struct Head<'a> {
    stream_id: &'a str,
    serial: u64,
    published_at_ms: u64,
    event: &'a str,
    cause: &'a str,
    user_id: &'a str,
    connection_id: Option<&'a str>,
    dead_node_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_size_bytes: Option<u64>,
}

/// The stored record of a transition: the `presence_event` object of the history item.
pub fn event_json(stream_id: &str, serial: u64, published_at_ms: u64, t: &Transition<'_>) -> Vec<u8> {
    let head = sonic_rs::to_string(&Head {
        stream_id,
        serial,
        published_at_ms,
        event: t.event.name(),
        cause: t.cause.name(),
        user_id: t.user_id,
        connection_id: t.connection_id.as_deref(),
        dead_node_id: None,
        payload_size_bytes: None,
    })
    .expect("plain struct");
    let info = if t.user_info.trim().is_empty() { "null" } else { t.user_info };
    let mut out = Vec::with_capacity(head.len() + info.len() + 16);
    out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    out.extend_from_slice(b",\"user_info\":");
    out.extend_from_slice(info.as_bytes());
    out.push(b'}');
    out
}

/// The fields of a stored record the page and the snapshot report.
struct Recorded<'a> {
    event: &'a str,
    cause: String,
    user_id: String,
    connection_id: Option<String>,
}

fn recorded(item: &HistoryItem) -> Recorded<'_> {
    let v: sonic_rs::Value = sonic_rs::from_slice(&item.payload).unwrap_or_default();
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    Recorded {
        event: &item.event_name,
        cause: text("cause").unwrap_or_default(),
        user_id: text("user_id").unwrap_or_default(),
        connection_id: text("connection_id"),
    }
}

/// A page of `GET …/presence/history` (`docs/protocol/v2.md#presence-history`): the keys of
/// a history page, each item a record. `stream_id`: the presence stream, which the store may
/// not have yet.
pub fn page_json(
    page: &HistoryPage,
    direction: Direction,
    limit: usize,
    bounds: &Bounds,
    stream_id: &str,
    degraded: bool,
) -> String {
    let stream_id = page.continuity.as_ref().map_or(stream_id, |c| c.stream_id.as_str());
    let mut out = String::with_capacity(256 + page.items.iter().map(|i| 2 * i.payload.len() + 200).sum::<usize>());
    out.push_str("{\"items\":[");
    for (n, item) in page.items.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        let r = recorded(item);
        let head = sonic_rs::to_string(&Head {
            stream_id,
            serial: item.serial,
            published_at_ms: item.published_at_ms,
            event: r.event,
            cause: &r.cause,
            user_id: &r.user_id,
            connection_id: r.connection_id.as_deref(),
            dead_node_id: None,
            payload_size_bytes: Some(item.payload_size_bytes),
        })
        .expect("plain struct");
        out.push_str(&head[..head.len() - 1]);
        out.push_str(",\"presence_event\":");
        out.push_str(std::str::from_utf8(&item.payload).unwrap_or("null"));
        out.push('}');
    }
    out.push(']');
    push_page_tail(&mut out, page, direction, limit, bounds, None, Some(stream_id), Counted::Events { degraded });
    out
}

/// `at_serial` and `at_time_ms` (alias `at`) of a snapshot request, both inclusive.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SnapshotAt {
    pub serial: Option<u64>,
    pub time_ms: Option<u64>,
}

impl SnapshotAt {
    pub fn from_query(pairs: &[(String, String)]) -> Result<SnapshotAt, String> {
        let mut at = SnapshotAt::default();
        for (k, v) in pairs {
            let n = || v.trim().parse::<u64>().map_err(|_| format!("{k} must be a non-negative integer, not \"{v}\""));
            match k.as_str() {
                "at_serial" => at.serial = Some(n()?),
                "at_time_ms" | "at" => at.time_ms = Some(n()?),
                _ => {}
            }
        }
        Ok(at)
    }
}

/// Who was present, replayed from the records oldest first.
#[derive(Default)]
pub struct Snapshot {
    /// User id -> (last event, its serial, its time), in join order.
    members: IndexMap<String, (&'static str, u64, u64)>,
    replayed: u64,
    last: Option<(u64, u64)>,
}

impl Snapshot {
    /// Applies the next record: `member_added` inserts, `member_updated` touches (a member
    /// who updated is present), `member_removed` deletes.
    pub fn apply(&mut self, item: &HistoryItem) {
        let r = recorded(item);
        let at = (item.serial, item.published_at_ms);
        match r.event {
            "member_added" => {
                self.members.insert(r.user_id, ("member_added", at.0, at.1));
            }
            "member_updated" => {
                self.members.insert(r.user_id, ("member_updated", at.0, at.1));
            }
            "member_removed" => {
                self.members.shift_remove(&r.user_id);
            }
            _ => return,
        }
        self.replayed += 1;
        self.last = Some(at);
    }
}

#[derive(Serialize)]
struct SnapshotMember<'a> {
    user_id: &'a str,
    last_event: &'static str,
    last_event_serial: u64,
    last_event_at_ms: u64,
}

#[derive(Serialize)]
struct SnapshotOut<'a> {
    channel: &'a str,
    members: Vec<SnapshotMember<'a>>,
    member_count: usize,
    events_replayed: u64,
    snapshot_serial: Option<u64>,
    snapshot_time_ms: Option<u64>,
    continuity: ContinuityOut<'a>,
}

/// The answer to `GET …/presence/history/snapshot`.
pub fn snapshot_json(
    channel: &str,
    stream_id: &str,
    degraded: bool,
    s: &Snapshot,
    continuity: Option<&Continuity>,
) -> String {
    let members: Vec<SnapshotMember<'_>> = s
        .members
        .iter()
        .map(|(user_id, &(last_event, last_event_serial, last_event_at_ms))| SnapshotMember {
            user_id,
            last_event,
            last_event_serial,
            last_event_at_ms,
        })
        .collect();
    sonic_rs::to_string(&SnapshotOut {
        channel,
        member_count: members.len(),
        members,
        events_replayed: s.replayed,
        snapshot_serial: s.last.map(|l| l.0),
        snapshot_time_ms: s.last.map(|l| l.1),
        continuity: ContinuityOut::new(stream_id, continuity, true, Counted::Events { degraded }),
    })
    .expect("plain struct")
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::RecordKind;

    fn item(serial: u64, event: PresenceEvent, user: &str) -> HistoryItem {
        let t = Transition {
            event,
            cause: Cause::Join,
            user_id: user,
            connection_id: Some("1.2".into()),
            user_info: r#"{"n":1}"#,
        };
        let payload = event_json("s", serial, 100 + serial, &t);
        HistoryItem {
            serial,
            published_at_ms: 100 + serial,
            message_id: String::new(),
            event_name: event.name().into(),
            payload_size_bytes: payload.len() as u64,
            payload,
            kind: RecordKind::Plain,
            tags: None,
            message: None,
        }
    }

    #[test]
    fn records_carry_the_transition() {
        let i = item(3, PresenceEvent::Added, "u1");
        let v: sonic_rs::Value = sonic_rs::from_slice(&i.payload).unwrap();
        assert_eq!(v["event"].as_str(), Some("member_added"));
        assert_eq!(v["cause"].as_str(), Some("join"));
        assert_eq!(v["serial"].as_u64(), Some(3));
        assert_eq!(v["user_info"]["n"].as_u64(), Some(1));
        assert!(v["dead_node_id"].is_null());
        assert_eq!(Cause::of_close(4201), Cause::Timeout);
        assert_eq!(Cause::of_close(4009), Cause::ForcedDisconnect);
        assert_eq!(Cause::of_close(0), Cause::Disconnect);
    }

    #[test]
    fn snapshots_replay_joins_updates_and_leaves() {
        let mut s = Snapshot::default();
        for i in [
            item(1, PresenceEvent::Added, "a"),
            item(2, PresenceEvent::Added, "b"),
            item(3, PresenceEvent::Updated, "a"),
            item(4, PresenceEvent::Removed, "b"),
        ] {
            s.apply(&i);
        }
        let v: sonic_rs::Value = sonic_rs::from_str(&snapshot_json("presence-x", "s", false, &s, None)).unwrap();
        assert_eq!(v["member_count"].as_u64(), Some(1));
        assert_eq!(v["members"][0]["user_id"].as_str(), Some("a"));
        assert_eq!(v["members"][0]["last_event"].as_str(), Some("member_updated"));
        assert_eq!(v["members"][0]["last_event_serial"].as_u64(), Some(3));
        assert_eq!((v["events_replayed"].as_u64(), v["snapshot_serial"].as_u64()), (Some(4), Some(4)));
        let at = |q: &[(&str, &str)]| {
            SnapshotAt::from_query(&q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
        };
        assert_eq!(at(&[("at", "5"), ("at_serial", "2")]), Ok(SnapshotAt { serial: Some(2), time_ms: Some(5) }));
        assert!(at(&[("at_serial", "x")]).is_err());
    }
}
