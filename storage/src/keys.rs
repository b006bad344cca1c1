//! Key layout. Length-prefixed components keep `(app, channel)` prefixes unambiguous, and the
//! big-endian serial suffix makes a channel's history one contiguous, ordered range. A mutable
//! message's versions and receipts sit under `channel_key + its history serial`, so one
//! message, and the messages created in a serial range, are contiguous ranges too. Its
//! annotation events (by annotation serial) and its summaries (by annotation type) sit under
//! the same prefix in partitions of their own, so those ranges take them in as well.

use crate::{StorageError, VersionAction};

fn push_component(out: &mut Vec<u8>, part: &str, what: &str) -> Result<(), StorageError> {
    let len =
        u16::try_from(part.len()).map_err(|_| StorageError::InvalidInput(format!("{what} longer than 65535 bytes")))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(part.as_bytes());
    Ok(())
}

pub(crate) fn app_prefix(app: &str) -> Result<Vec<u8>, StorageError> {
    let mut key = Vec::with_capacity(2 + app.len());
    push_component(&mut key, app, "app id")?;
    Ok(key)
}

pub(crate) fn channel_key(app: &str, channel: &str) -> Result<Vec<u8>, StorageError> {
    let mut key = Vec::with_capacity(4 + app.len() + channel.len() + 8);
    push_component(&mut key, app, "app id")?;
    push_component(&mut key, channel, "channel")?;
    Ok(key)
}

pub(crate) fn history_key(channel_key: &[u8], serial: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(channel_key.len() + 8);
    key.extend_from_slice(channel_key);
    key.extend_from_slice(&serial.to_be_bytes());
    key
}

pub(crate) fn serial_of_history_key(key: &[u8]) -> Option<u64> {
    let tail = key.len().checked_sub(8).map(|at| &key[at..])?;
    Some(u64::from_be_bytes(tail.try_into().ok()?))
}

/// The prefix of every version, receipt, annotation and summary key of the message created at serial `message`;
/// for a serial range `message_prefix(a)..message_prefix(b)` covers the messages created in
/// `a..b`.
pub(crate) fn message_prefix(channel_key: &[u8], message: u64) -> Vec<u8> {
    history_key(channel_key, message)
}

pub(crate) fn version_key(channel_key: &[u8], message: u64, delivery_serial: u64) -> Vec<u8> {
    let mut key = message_prefix(channel_key, message);
    key.extend_from_slice(&delivery_serial.to_be_bytes());
    key
}

pub(crate) fn receipt_key(channel_key: &[u8], message: u64, action: VersionAction, op_id: &str) -> Vec<u8> {
    let mut key = message_prefix(channel_key, message);
    key.push(action.code());
    key.extend_from_slice(op_id.as_bytes());
    key
}

/// Laid out like a version key (in a partition of its own): a message's annotation events in
/// serial order.
pub(crate) fn annotation_key(channel_key: &[u8], message: u64, serial: u64) -> Vec<u8> {
    version_key(channel_key, message, serial)
}

/// Types follow the message prefix unframed: a channel's summaries order by message, then
/// type.
pub(crate) fn summary_key(channel_key: &[u8], message: u64, annotation_type: &str) -> Vec<u8> {
    let mut key = message_prefix(channel_key, message);
    key.extend_from_slice(annotation_type.as_bytes());
    key
}

/// Splits a summary key, given the length of its channel key, into `(message, type)`.
pub(crate) fn parse_summary_key(key: &[u8], channel_key_len: usize) -> Option<(u64, String)> {
    let rest = key.get(channel_key_len..)?;
    let (message, annotation_type) = (rest.get(..8)?, rest.get(8..)?);
    Some((u64::from_be_bytes(message.try_into().ok()?), String::from_utf8(annotation_type.to_vec()).ok()?))
}

/// Splits a receipt key, given the length of its message prefix, into `(action, op_id)`.
pub(crate) fn parse_receipt_key(key: &[u8], prefix_len: usize) -> Option<(VersionAction, String)> {
    let (&action, op_id) = key.get(prefix_len..)?.split_first()?;
    Some((VersionAction::from_code(action)?, String::from_utf8(op_id.to_vec()).ok()?))
}

pub(crate) fn idempotency_key(app: &str, space: u8, key: &[u8]) -> Result<Vec<u8>, StorageError> {
    let mut out = app_prefix(app)?;
    out.push(space);
    out.extend_from_slice(key);
    Ok(out)
}

pub(crate) fn revocation_key(app: &str, kind: u8, id: &str) -> Result<Vec<u8>, StorageError> {
    let mut out = app_prefix(app)?;
    out.push(kind);
    out.extend_from_slice(id.as_bytes());
    Ok(out)
}

/// Splits a revocation key back into `(app, kind, id)`.
pub(crate) fn parse_revocation_key(key: &[u8]) -> Option<(String, u8, String)> {
    let (app, rest) = take_component(key)?;
    let (&kind, id) = rest.split_first()?;
    Some((app, kind, String::from_utf8(id.to_vec()).ok()?))
}

/// A push registry key (`engine/push.rs`): its row kind, the app, then each of `parts`.
pub(crate) fn push_key(kind: u8, app: &str, parts: &[&str]) -> Result<Vec<u8>, StorageError> {
    let mut out = vec![kind];
    push_component(&mut out, app, "app id")?;
    for part in parts {
        push_component(&mut out, part, "push registry id")?;
    }
    Ok(out)
}

/// Appends one length-prefixed component.
pub(crate) fn push_component_into(out: &mut Vec<u8>, part: &str) -> Result<(), StorageError> {
    push_component(out, part, "push registry id")
}

/// Splits the first length-prefixed component off `buf`.
pub(crate) fn push_components(buf: &[u8]) -> Option<(String, &[u8])> {
    take_component(buf)
}

/// Splits a `streams` key back into `(app, channel)`.
pub(crate) fn parse_channel_key(key: &[u8]) -> Option<(String, String)> {
    let (app, rest) = take_component(key)?;
    let (channel, rest) = take_component(rest)?;
    rest.is_empty().then_some((app, channel))
}

fn take_component(buf: &[u8]) -> Option<(String, &[u8])> {
    let len = u16::from_be_bytes(buf.get(..2)?.try_into().ok()?) as usize;
    let part = buf.get(2..2 + len)?;
    Some((String::from_utf8(part.to_vec()).ok()?, &buf[2 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_keys_round_trip_and_do_not_collide() {
        let a = channel_key("app", "ab").unwrap();
        let b = channel_key("appa", "b").unwrap();
        assert_ne!(a, b);
        assert_eq!(parse_channel_key(&a), Some(("app".into(), "ab".into())));
        let h = history_key(&a, 42);
        assert_eq!(serial_of_history_key(&h), Some(42));
        assert!(history_key(&a, 2) < history_key(&a, 256));
    }

    #[test]
    fn message_keys_order_by_message_then_delivery() {
        let c = channel_key("app", "ch").unwrap();
        let below = message_prefix(&c, 5)..message_prefix(&c, 7);
        assert!(below.contains(&version_key(&c, 5, 5)) && below.contains(&version_key(&c, 6, u64::MAX)));
        assert!(!below.contains(&version_key(&c, 7, 7)) && !below.contains(&version_key(&c, 4, 9)));
        assert!(version_key(&c, 5, 9) < version_key(&c, 5, 256));
        let r = receipt_key(&c, 5, VersionAction::Append, "op-1");
        assert!(below.contains(&r));
        assert_eq!(parse_receipt_key(&r, c.len() + 8), Some((VersionAction::Append, "op-1".into())));
        assert!(below.contains(&annotation_key(&c, 6, u64::MAX)) && !below.contains(&annotation_key(&c, 7, 1)));
        assert!(annotation_key(&c, 5, 9) < annotation_key(&c, 5, 256));
        let s = summary_key(&c, 6, "reaction:distinct.v1");
        assert!(below.contains(&s) && !below.contains(&summary_key(&c, 7, "")));
        assert!(summary_key(&c, 5, "zz") < summary_key(&c, 6, "a"));
        assert_eq!(parse_summary_key(&s, c.len()), Some((6, "reaction:distinct.v1".into())));
    }
}
