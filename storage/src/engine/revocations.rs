//! Capability-token revocations: `app + kind + id` -> expiry (unix ms, 8 bytes BE) and reason.
//! Few and read whole at start; each write is synced before it is acknowledged, since a lost
//! revocation would let a revoked token back in.

use fjall::PersistMode;

use super::Engine;
use crate::keys::{parse_revocation_key, revocation_key};
use crate::{Revocation, StorageError};

impl Engine {
    pub(crate) fn put_revocation(&self, r: &Revocation) -> Result<(), StorageError> {
        let key = revocation_key(&r.app, r.kind, &r.id)?;
        let mut value = Vec::with_capacity(8 + r.reason.len());
        value.extend_from_slice(&r.expires_at_ms.to_be_bytes());
        value.extend_from_slice(r.reason.as_bytes());
        self.revocations.insert(key, value).map_err(self.err("write revocation"))?;
        self.persist(PersistMode::SyncAll)
    }

    /// Every revocation still in force at `now_ms`.
    pub(crate) fn revocations(&self, now_ms: u64) -> Result<Vec<Revocation>, StorageError> {
        let mut out = Vec::new();
        for row in self.revocations.iter() {
            let (k, v) = row.map_err(self.err("revocation scan"))?;
            let corrupt = || StorageError::corrupt(&self.path, "undecodable revocation");
            let (app, kind, id) = parse_revocation_key(&k).ok_or_else(corrupt)?;
            let expires_at_ms = v.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()).ok_or_else(corrupt)?;
            let expires_at_ms = u64::from_be_bytes(expires_at_ms);
            if expires_at_ms > now_ms {
                let reason = String::from_utf8_lossy(&v[8..]).into_owned();
                out.push(Revocation { app, kind, id, expires_at_ms, reason });
            }
        }
        Ok(out)
    }

    /// Drops the revocations expired at `now_ms`. Returns whether any was.
    pub(crate) fn expire_revocations(&self, now_ms: u64) -> Result<bool, StorageError> {
        self.expire_rows(&self.revocations, now_ms, "revocation expiry")
    }
}
