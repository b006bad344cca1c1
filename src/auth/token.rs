//! Capability tokens (`docs/protocol/v2.md#capability-tokens`): an HS256 JWT whose `kid` is the
//! app key, signed with the app secret, naming the connection's client id, its capabilities,
//! its lifetime and a `jti` to revoke it by. The JWT is read and its signature checked by
//! `jsonwebtoken`, with HMAC-SHA256 from the `hmac`/`sha2` crates the Pusher signatures use
//! (`Hs256`: the crate's own backends would bring RSA and elliptic curves no token here uses);
//! the claim rules are ours, so that each refusal says which rule failed.

use crate::protocol::capabilities::Capabilities;
use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result as JwtResult};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use sha2::Sha256;
use std::sync::{Arc, Once};

pub const MAX_TOKEN_BYTES: usize = 8 << 10;
const MAX_ID_BYTES: usize = 128;
const MAX_LIFETIME_SECS: i64 = 24 * 60 * 60;
/// How far the issuer's clock may be ahead of ours (or a token past its `exp`).
const CLOCK_SKEW_SECS: i64 = 30;

/// What a valid token grants.
#[derive(Clone, Debug)]
pub struct Grant {
    pub client_id: Arc<str>,
    pub capabilities: Arc<Capabilities>,
    pub jti: Arc<str>,
    /// Expiry, unix seconds.
    pub exp: i64,
}

/// Checks `token` for the app with this key and secret at `now` (unix seconds). The error
/// says what is wrong, for the client's `Authentication error: …`.
pub fn verify(token: &str, key: &str, secret: &str, now: i64) -> Result<Grant, String> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(format!("capability token is over {} KiB", MAX_TOKEN_BYTES >> 10));
    }
    let header = jsonwebtoken::decode_header(token).map_err(|e| format!("capability token is malformed: {e}"))?;
    if header.alg != Algorithm::HS256 {
        return Err(format!("capability token must use HS256, not {:?}", header.alg));
    }
    if header.kid.as_deref() != Some(key) {
        return Err("capability token kid is not this app's key".into());
    }
    install_hs256();
    // Only the signature here: the time claims are checked below, against `now`.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| format!("capability token signature or payload is invalid: {e}"))?
    .claims;
    grant(&claims, now)
}

/// `jsonwebtoken`'s process-wide crypto: HS256 only.
static HS256_ONLY: CryptoProvider = CryptoProvider {
    signer_factory: |alg, key| Ok(Box::new(Hs256::keyed(alg, key.family(), key.as_bytes())?)),
    verifier_factory: |alg, key| Ok(Box::new(Hs256::keyed(alg, key.family(), key.try_get_as_bytes()?)?)),
    key_utils: KeyUtils::new_unimplemented(),
};

/// Installs `HS256_ONLY` once, before the first token is read or (in tests) written.
pub fn install_hs256() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if HS256_ONLY.install_default().is_err() {
            log::warn!("jsonwebtoken already had a crypto provider; capability tokens use it");
        }
    });
}

/// HMAC-SHA256 keyed with an app secret, as `jsonwebtoken` signs and verifies with it.
struct Hs256(Hmac<Sha256>);

impl Hs256 {
    fn keyed(alg: &Algorithm, family: AlgorithmFamily, secret: &[u8]) -> JwtResult<Hs256> {
        if *alg != Algorithm::HS256 || family != AlgorithmFamily::Hmac {
            return Err(ErrorKind::InvalidAlgorithm.into());
        }
        Ok(Hs256(Hmac::new_from_slice(secret).map_err(|_| ErrorKind::InvalidKeyFormat)?))
    }
}

impl signature::Signer<Vec<u8>> for Hs256 {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let mut mac = self.0.clone();
        mac.update(msg);
        Ok(mac.finalize().into_bytes().to_vec())
    }
}

impl signature::Verifier<Vec<u8>> for Hs256 {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> Result<(), signature::Error> {
        let mut mac = self.0.clone();
        mac.update(msg);
        // Constant time, as every signature check here.
        mac.verify_slice(signature).map_err(signature::Error::from_source)
    }
}

impl JwtSigner for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

impl JwtVerifier for Hs256 {
    fn algorithm(&self) -> Algorithm {
        Algorithm::HS256
    }
}

fn grant(claims: &serde_json::Map<String, serde_json::Value>, now: i64) -> Result<Grant, String> {
    let text = |name: &str| -> Result<Arc<str>, String> {
        match claims.get(name).and_then(|v| v.as_str()) {
            Some(s) if !s.is_empty() && s.len() <= MAX_ID_BYTES => Ok(s.into()),
            Some(_) => Err(format!("{name} must be 1 to {MAX_ID_BYTES} bytes")),
            None => Err(format!("{name} is required (a string)")),
        }
    };
    let time = |name: &str| -> Result<Option<i64>, String> {
        match claims.get(name) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| format!("{name} must be an integer (unix seconds)")),
        }
    };
    let client_id = text("x-sockudo-client-id")?;
    let jti = text("jti")?;
    let iat = time("iat")?.ok_or("iat is required")?;
    let exp = time("exp")?.ok_or("exp is required")?;
    if iat > now + CLOCK_SKEW_SECS {
        return Err("capability token iat is in the future".into());
    }
    if exp <= now - CLOCK_SKEW_SECS {
        return Err("capability token has expired".into());
    }
    if exp - iat > MAX_LIFETIME_SECS {
        return Err("capability token lifetime (exp - iat) is over 24 hours".into());
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now + CLOCK_SKEW_SECS) {
        return Err("capability token is not valid yet (nbf)".into());
    }
    let claim = claims.get("x-sockudo-capability").ok_or("x-sockudo-capability is required")?;
    let capabilities = Arc::new(Capabilities::parse_token_claim(claim)?);
    Ok(Grant { client_id, capabilities, jti, exp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::capabilities::Op;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn mint(kid: &str, secret: &str, claims: serde_json::Value) -> String {
        install_hs256();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn b64(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    fn claims() -> serde_json::Value {
        json!({"x-sockudo-capability": {"room:*": ["subscribe"]}, "x-sockudo-client-id": "u1",
            "iat": NOW, "exp": NOW + 3600, "jti": "j1"})
    }

    fn with(k: &str, v: serde_json::Value) -> serde_json::Value {
        let mut c = claims();
        c[k] = v;
        c
    }

    fn check(token: &str) -> Result<Grant, String> {
        verify(token, "app-key", "app-secret", NOW)
    }

    #[test]
    fn a_valid_token() {
        let g = check(&mint("app-key", "app-secret", claims())).unwrap();
        assert_eq!((&*g.client_id, &*g.jti, g.exp), ("u1", "j1", NOW + 3600));
        assert!(g.capabilities.allows(Op::Subscribe, "room:1") && !g.capabilities.allows(Op::Publish, "room:1"));
    }

    #[test]
    fn refusals_say_why() {
        let hs = |c| mint("app-key", "app-secret", c);
        for (token, says) in [
            (mint("other", "app-secret", claims()), "kid"),
            // Refused on its header, before any signature check.
            (format!("{}.{}.c2ln", b64(r#"{"alg":"HS384","kid":"app-key"}"#), b64(&claims().to_string())), "HS256"),
            (mint("app-key", "wrong", claims()), "signature"),
            (hs(with("exp", json!(NOW - 31))), "expired"),
            (hs(with("iat", json!(NOW + 31))), "future"),
            (hs(with("nbf", json!(NOW + 31))), "nbf"),
            (hs(with("exp", json!(NOW + 24 * 3600 + 1))), "24 hours"),
            (hs(with("jti", json!(""))), "jti"),
            (hs(with("jti", json!("x".repeat(129)))), "jti"),
            (hs(with("x-sockudo-client-id", json!(7))), "x-sockudo-client-id"),
            (hs(with("x-sockudo-capability", json!({"*": ["fly"]}))), "\"fly\""),
            (hs(with("iat", json!("now"))), "integer"),
            ("a.b".into(), "malformed"),
            ("x".repeat(MAX_TOKEN_BYTES + 1), "KiB"),
        ] {
            let e = check(&token).unwrap_err();
            assert!(e.contains(says), "{says}: {e}");
        }
        // Within the 30 s of skew.
        assert!(check(&hs(with("exp", json!(NOW - 29)))).is_ok());
        assert!(check(&hs(with("nbf", json!(NOW + 29)))).is_ok());
    }
}
