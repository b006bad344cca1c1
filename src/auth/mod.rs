//! The one signature checker: HMAC-SHA256 with the app secret, lower-case hex, compared in
//! constant time (`docs/protocol/pusher.md#authorization-signatures`). Channel auth, user
//! sign-in and REST requests all come here. Capability tokens (JWTs) are in `token`.

pub mod token;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Lower-case hex HMAC-SHA256 of `message` keyed with `secret`.
pub fn sign(secret: &str, message: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// True when `signature_hex` is the signature of `message`; constant time in the signature.
pub fn verify(secret: &str, message: &[u8], signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex) else { return false };
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(message);
    mac.verify_slice(&sig).is_ok()
}

/// Checks an `auth` value of the form `{key}:{hex}`: the key must be the app's, for sign-in
/// too, unlike in the reference (`docs/protocol/pusher.md#authorization-signatures`), and the
/// hex the signature of `message`.
pub fn verify_key_and_signature(key: &str, secret: &str, message: &[u8], auth: &str) -> bool {
    match auth.split_once(':') {
        Some((k, sig)) => k == key && verify(secret, message, sig),
        None => false,
    }
}

/// What a private or presence subscription signs: `socket_id:channel[:channel_data]`.
pub fn channel_auth_message(socket_id: &str, channel: &str, channel_data: Option<&str>) -> String {
    match channel_data {
        Some(cd) if !cd.is_empty() => format!("{socket_id}:{channel}:{cd}"),
        _ => format!("{socket_id}:{channel}"),
    }
}

/// What a user sign-in signs: `socket_id::user::user_data`.
pub fn signin_message(socket_id: &str, user_data: &str) -> String {
    format!("{socket_id}::user::{user_data}")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vectors of `docs/protocol/pusher.md#test-vectors` (secret `app-secret`, key
    // `app-key`, socket 1234.5678), with the REST one of
    // `docs/protocol/http-api.md#signature-test-vector` and the webhook one of
    // `docs/protocol/http-api.md#webhook-requests`.
    #[test]
    fn spec_vectors() {
        let s = "app-secret";
        assert_eq!(
            sign(s, channel_auth_message("1234.5678", "private-foo", None).as_bytes()),
            "d7d4254b75e2b60944b91bc92e916d56da84c4835011f5aa3c59a8e7f6e8b65d"
        );
        let cd = r#"{"user_id":"42","user_info":{"name":"Ada"}}"#;
        assert_eq!(
            sign(s, channel_auth_message("1234.5678", "presence-room", Some(cd)).as_bytes()),
            "7eae5778a7edfe839d7a03f042293004e8cc0798fcf98a63b02be7f19f8bef86"
        );
        assert_eq!(
            sign(s, signin_message("1234.5678", r#"{"id":"42","watchlist":["7"]}"#).as_bytes()),
            "2fedcde41e003e0e5faad8104cab08e9e93f813b527dc2bc1d42ca0f1c2913a4"
        );
        let rest = "POST\n/apps/app-id/events\nauth_key=app-key&auth_timestamp=1700000000&auth_version=1.0&body_md5=67ca2151445b18af0a3f01aba9ce65d8";
        assert_eq!(sign(s, rest.as_bytes()), "d96fbf3f259ab358a0a5d1b89ae941437f91495d3d8fc64e36f8c4a1f4697371");
        let hook = r#"{"time_ms":1700000000000,"events":[{"name":"channel_occupied","channel":"orders"}]}"#;
        assert_eq!(sign(s, hook.as_bytes()), "c1b112fcc5fc333a8453bb4b62c1a43094f2126d3c3f4ed442a92f5cda54f8e4");
    }

    #[test]
    fn verification() {
        let m = b"1234.5678:private-foo";
        let good = "app-key:d7d4254b75e2b60944b91bc92e916d56da84c4835011f5aa3c59a8e7f6e8b65d";
        assert!(verify_key_and_signature("app-key", "app-secret", m, good));
        assert!(!verify_key_and_signature("app-key", "app-secret", m, &good.replace("app-key", "other-key")));
        assert!(!verify_key_and_signature("app-key", "app-secret", m, "app-key:zz"));
        assert!(!verify_key_and_signature("app-key", "app-secret", m, "garbage"));
    }
}
