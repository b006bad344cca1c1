//! Wall-clock time as the protocol states it.

/// Milliseconds since the Unix epoch: publish times in history, idempotency expiries, webhook
/// `time_ms`.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}
