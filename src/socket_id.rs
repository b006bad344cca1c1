//! Socket ids: `"<u64>.<u64>"`, two random integers in `[0, 10^10]`
//! (`docs/protocol/pusher.md#socket-ids`). The first, taken modulo the shard count, is the shard
//! the socket lives on: a request naming a socket (a mutation's `socket_id`) reaches it in one
//! crossing.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SocketId(pub u64, pub u64);

const MAX_PART: u64 = 10_000_000_000;

impl SocketId {
    /// A fresh id for a socket of `shard` (of `shards`).
    pub fn on_shard(shard: usize, shards: usize) -> SocketId {
        let shards = shards.max(1) as u64;
        let first = fastrand::u64(0..=(MAX_PART - shard as u64) / shards) * shards + shard as u64;
        SocketId(first, fastrand::u64(0..=MAX_PART))
    }

    /// The shard a socket of this id lives on, if it is one of ours.
    pub fn shard(self, shards: usize) -> usize {
        (self.0 % shards.max(1) as u64) as usize
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
        for shards in [1, 2, 7, 64] {
            for shard in 0..shards {
                let id = SocketId::on_shard(shard, shards);
                assert!(id.0 <= MAX_PART && id.1 <= MAX_PART);
                assert_eq!(id.shard(shards), shard);
                assert_eq!(SocketId::parse(&id.to_string()), Some(id));
            }
        }
        assert_eq!(SocketId::parse("4820174023.113"), Some(SocketId(4820174023, 113)));
        for bad in ["", "1", "1.", ".1", "1.2.3", "a.b", "-1.2", "1.+2"] {
            assert_eq!(SocketId::parse(bad), None, "{bad}");
        }
    }
}
