//! Pusher signatures: channel auth (private / presence) and REST query auth; and a V2
//! capability token for `--token`.
//! Everything here writes into caller-owned buffers so the publish path does not allocate.

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lowercase hex of `bytes` appended to `out`.
pub fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    for b in bytes {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

/// An HS256 JWT capability token (`kid` = `key`, signed with `secret`) granting every
/// operation on every channel for an hour, for client id `loadtest`.
pub fn capability_token(key: &str, secret: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "kid": key});
    let ops = ["subscribe", "publish", "history", "presence"];
    let claims = serde_json::json!({"x-sockudo-capability": {"*": ops}, "x-sockudo-client-id": "loadtest",
        "iat": now, "exp": now + 3600, "jti": format!("loadtest-{now}")});
    let signing_input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
    let signature = Signer::new(secret).sign_parts(&[signing_input.as_bytes()]);
    format!("{signing_input}.{}", B64.encode(signature))
}

/// A keyed HMAC-SHA256 that is cloned per signature instead of re-keyed.
#[derive(Clone)]
pub struct Signer {
    mac: HmacSha256,
}

impl Signer {
    pub fn new(secret: &str) -> Signer {
        Signer { mac: HmacSha256::new_from_slice(secret.as_bytes()).expect("hmac accepts any key length") }
    }

    /// Raw HMAC-SHA256 of the concatenation of `parts`.
    pub fn sign_parts(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// Lowercase hex HMAC-SHA256 of `msg`, appended to `out`.
    pub fn push_sig_hex(&self, out: &mut Vec<u8>, parts: &[&[u8]]) {
        push_hex(out, &self.sign_parts(parts));
    }

    /// Lowercase hex HMAC-SHA256 of `msg` as a String.
    #[cfg(test)]
    pub fn sig_hex(&self, msg: &[u8]) -> String {
        let mut out = Vec::with_capacity(64);
        self.push_sig_hex(&mut out, &[msg]);
        String::from_utf8(out).expect("hex is ascii")
    }
}

/// The `auth` value of a presence subscribe: `KEY:hex(HMAC(secret, socket_id:channel:channel_data))`.
pub fn presence_auth(signer: &Signer, key: &str, socket_id: &[u8], channel: &str, channel_data: &str) -> String {
    let mut out = Vec::with_capacity(key.len() + 65);
    out.extend_from_slice(key.as_bytes());
    out.push(b':');
    signer.push_sig_hex(&mut out, &[socket_id, b":", channel.as_bytes(), b":", channel_data.as_bytes()]);
    String::from_utf8(out).expect("ascii")
}

/// The `auth` value of a private subscribe: `KEY:hex(HMAC(secret, socket_id:channel))`.
pub fn private_auth(signer: &Signer, key: &str, socket_id: &[u8], channel: &str) -> String {
    let mut out = Vec::with_capacity(key.len() + 65);
    out.extend_from_slice(key.as_bytes());
    out.push(b':');
    signer.push_sig_hex(&mut out, &[socket_id, b":", channel.as_bytes()]);
    String::from_utf8(out).expect("ascii")
}

/// MD5 of `body` as 32 lowercase hex bytes.
pub fn md5_hex(body: &[u8]) -> [u8; 32] {
    let digest = Md5::digest(body);
    let mut out = [0u8; 32];
    for (i, b) in digest.iter().enumerate() {
        out[2 * i] = HEX[(b >> 4) as usize];
        out[2 * i + 1] = HEX[(b & 15) as usize];
    }
    out
}

/// Appends the signed query string (without `?`) of a Pusher REST POST to `out`:
/// `auth_key=..&auth_timestamp=..&auth_version=1.0&body_md5=..&auth_signature=..`.
/// The parameters are already in sorted order, which is what the signature needs.
/// `scratch` is a reusable buffer for the string to sign.
pub fn push_signed_post_query(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    signer: &Signer,
    key: &str,
    path: &[u8],
    timestamp: u64,
    body: &[u8],
) {
    push_signed_query(out, scratch, signer, key, (b"POST", path), timestamp, Some(body));
}

/// The signed query string of any REST request: `method` and `path` exactly as sent (a
/// percent-encoded path is signed encoded); `body_md5` only with a body (a GET has none).
pub fn push_signed_query(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    signer: &Signer,
    key: &str,
    (method, path): (&[u8], &[u8]),
    timestamp: u64,
    body: Option<&[u8]>,
) {
    use std::io::Write;
    let start = out.len();
    let _ = write!(out, "auth_key={key}&auth_timestamp={timestamp}&auth_version=1.0");
    if let Some(body) = body {
        out.extend_from_slice(b"&body_md5=");
        out.extend_from_slice(&md5_hex(body));
    }
    scratch.clear();
    scratch.extend_from_slice(method);
    scratch.push(b'\n');
    scratch.extend_from_slice(path);
    scratch.push(b'\n');
    scratch.extend_from_slice(&out[start..]);
    out.extend_from_slice(b"&auth_signature=");
    signer.push_sig_hex(out, &[scratch]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_signature_vector() {
        let s = Signer::new("app-secret");
        let msg = "POST\n/apps/app-id/events\nauth_key=app-key&auth_timestamp=1700000000&auth_version=1.0&body_md5=67ca2151445b18af0a3f01aba9ce65d8";
        assert_eq!(s.sig_hex(msg.as_bytes()), "d96fbf3f259ab358a0a5d1b89ae941437f91495d3d8fc64e36f8c4a1f4697371");
    }

    #[test]
    fn body_md5_and_signed_query_vector() {
        let body = br#"{"name":"order.created","channel":"orders","data":"{\"id\":1}"}"#;
        assert_eq!(&md5_hex(body), b"67ca2151445b18af0a3f01aba9ce65d8");
        assert_eq!(&md5_hex(b""), b"d41d8cd98f00b204e9800998ecf8427e");
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let s = Signer::new("app-secret");
        push_signed_post_query(&mut out, &mut scratch, &s, "app-key", b"/apps/app-id/events", 1_700_000_000, body);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "auth_key=app-key&auth_timestamp=1700000000&auth_version=1.0&body_md5=67ca2151445b18af0a3f01aba9ce65d8\
             &auth_signature=d96fbf3f259ab358a0a5d1b89ae941437f91495d3d8fc64e36f8c4a1f4697371"
        );
    }

    #[test]
    fn signed_get_query_has_no_body_md5() {
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        let s = Signer::new("app-secret");
        let path = b"/apps/app-id/channels/c/messages/00000000000000000001%3Aab";
        push_signed_query(&mut out, &mut scratch, &s, "app-key", (b"GET", path), 1_700_000_000, None);
        let query = "auth_key=app-key&auth_timestamp=1700000000&auth_version=1.0";
        let to_sign = format!("GET\n{}\n{query}", std::str::from_utf8(path).unwrap());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{query}&auth_signature={}", s.sig_hex(to_sign.as_bytes()))
        );
    }

    #[test]
    fn channel_auth_vectors() {
        let s = Signer::new("app-secret");
        assert_eq!(
            private_auth(&s, "app-key", b"1234.5678", "private-foo"),
            "app-key:d7d4254b75e2b60944b91bc92e916d56da84c4835011f5aa3c59a8e7f6e8b65d"
        );
        assert_eq!(
            presence_auth(
                &s,
                "app-key",
                b"1234.5678",
                "presence-room",
                r#"{"user_id":"42","user_info":{"name":"Ada"}}"#
            ),
            "app-key:7eae5778a7edfe839d7a03f042293004e8cc0798fcf98a63b02be7f19f8bef86"
        );
    }
}
