//! Which shard owns a key. The hash is FNV-1a 64 (the `fnv` crate): stable across processes,
//! builds and platforms, because durable per-channel state is found through it.

use fnv::FnvHasher;
use std::hash::Hasher;

/// A stable 64-bit hash of the concatenation of `parts`, each followed by a 0xff separator so
/// that ("ab","c") and ("a","bc") differ.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    hash_parts(FnvHasher::default(), parts)
}

/// Continues a hash that already covers some leading parts: `stable_hash_from(stable_hash(&[a]),
/// &[b]) == stable_hash(&[a, b])`. Lets a caller hash a fixed prefix (an app id) once.
pub fn stable_hash_from(h: u64, parts: &[&[u8]]) -> u64 {
    hash_parts(FnvHasher::with_key(h), parts)
}

fn hash_parts(mut h: FnvHasher, parts: &[&[u8]]) -> u64 {
    for part in parts {
        h.write(part);
        h.write(&[0xff]);
    }
    h.finish()
}

/// The shard that owns `hash` among `shards` shards.
pub fn owner_of(hash: u64, shards: usize) -> usize {
    // Multiply-shift instead of modulo: uniform for any shard count and cheaper than a divide.
    ((hash as u128 * shards as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_separated() {
        assert_eq!(stable_hash(&[b"app-id", b"orders"]), stable_hash(&[b"app-id", b"orders"]));
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        // Pinned value: changing the hash would orphan stored history.
        assert_eq!(stable_hash(&[b"app-id", b"orders"]), 0xb9f0_2e89_072c_f877);
        assert_eq!(stable_hash_from(stable_hash(&[b"app-id"]), &[b"orders"]), 0xb9f0_2e89_072c_f877);
    }

    #[test]
    fn owner_spreads_and_is_in_range() {
        let mut counts = [0usize; 4];
        for i in 0..10_000u32 {
            let o = owner_of(stable_hash(&[b"app", &i.to_le_bytes()]), 4);
            counts[o] += 1;
        }
        assert!(counts.iter().all(|&c| c > 2000), "{counts:?}");
        assert_eq!(owner_of(u64::MAX, 3), 2);
        assert_eq!(owner_of(0, 3), 0);
    }
}
