//! A capability-token revocation as the store keeps it (the server's side is
//! `src/shard/revocations.rs`).

/// A revoked token id or client id of an app, until `expires_at_ms` (unix ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revocation {
    pub app: String,
    /// Which id `id` is; the server gives the values their meaning.
    pub kind: u8,
    pub id: String,
    pub expires_at_ms: u64,
    pub reason: String,
}
