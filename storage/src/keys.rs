//! Key layout. Length-prefixed components keep `(app, channel)` prefixes unambiguous, and the
//! big-endian serial suffix makes a channel's history one contiguous, ordered range.

use crate::StorageError;

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

pub(crate) fn idempotency_key(app: &str, space: u8, key: &[u8]) -> Result<Vec<u8>, StorageError> {
    let mut out = app_prefix(app)?;
    out.push(space);
    out.extend_from_slice(key);
    Ok(out)
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
}
