//! Socket ids: `"<u64>.<u64>"`, two random integers in `[0, 10^10]`
//! (`docs/protocol/pusher.md#socket-ids`).

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketId(pub u64, pub u64);

const MAX_PART: u64 = 10_000_000_000;

impl SocketId {
    pub fn random() -> SocketId {
        SocketId(fastrand::u64(0..=MAX_PART), fastrand::u64(0..=MAX_PART))
    }

    /// Parses an id received from outside. Anything malformed is `None`: such an exclusion
    /// matches no socket (accepted and silently ineffective, as in the reference:
    /// `docs/protocol/pusher.md#socket-ids`).
    pub fn parse(s: &str) -> Option<SocketId> {
        let (a, b) = s.split_once('.')?;
        let part = |p: &str| -> Option<u64> {
            if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        Some(SocketId(part(a)?, part(b)?))
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let id = SocketId::random();
        assert_eq!(SocketId::parse(&id.to_string()), Some(id));
        assert_eq!(SocketId::parse("4820174023.113"), Some(SocketId(4820174023, 113)));
        for bad in ["", "1", "1.", ".1", "1.2.3", "a.b", "-1.2", "1.+2"] {
            assert_eq!(SocketId::parse(bad), None, "{bad}");
        }
    }
}
