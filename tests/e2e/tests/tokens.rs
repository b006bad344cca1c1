//! Capability tokens (`docs/protocol/v2.md#capability-tokens`): the claim rules on connect,
//! what the capabilities allow, refresh with `sockudo:auth`, expiry, and revocation across
//! shards and restarts. Tokens are written here (RFC 7519 by hand: base64url JSON, HMAC), not
//! with the JWT crate the server reads them with.

use e2e::*;
use serde_json::{json, Value};
use std::time::Duration;

/// The refusal of a connect with `token`: `sockudo:error` 4009 and close 4009. Returns the message.
fn refused(s: &Server, token: &str) -> String {
    let mut c = s.connect_raw(&format!("/app/app-key?protocol=2&token={token}"), None);
    let f = c.recv_json(T);
    assert_eq!((f["event"].as_str(), f["data"]["code"].as_u64()), (Some("sockudo:error"), Some(4009)), "{f}");
    let message = f["data"]["message"].as_str().unwrap().to_owned();
    assert_eq!(c.expect_close(4009), message);
    message
}

/// Subscribes and returns the `sockudo:error` message, or `None` when it succeeded.
fn subscribe_result(c: &mut Client, data: Value) -> Option<String> {
    let channel = data["channel"].as_str().unwrap().to_owned();
    c.send_json(&json!({"event": "sockudo:subscribe", "data": data}));
    loop {
        let f = c.recv_json(T);
        match f["event"].as_str() {
            Some("sockudo_internal:subscription_succeeded") if f["channel"] == channel => return None,
            Some("sockudo:error") => {
                assert_eq!(f["data"]["code"], 4009, "{f}");
                return Some(f["data"]["message"].as_str().unwrap().to_owned());
            }
            _ => continue,
        }
    }
}

fn auth_frame(token: &str) -> Value {
    json!({"event": "sockudo:auth", "data": {"token": token}})
}

// Every claim rule on connect; a refusal says which rule failed. V1 never takes a token.
#[test]
fn claim_rules_on_connect() {
    let s = Server::start(None);
    let ok = claims("u1", "j1", json!({"*": ["subscribe"]}));
    with_token(&s, &mint(&ok)).assert_alive_v2();
    let with = |k: &str, v: Value| {
        let mut c = ok.clone();
        c[k] = v;
        c
    };
    let t = now();
    for (token, says) in [
        (mint_with("HS256", "other-key", "app-secret", &ok), "kid"),
        (mint_with("HS384", "app-key", "app-secret", &ok), "HS256"),
        (mint_with("HS256", "app-key", "wrong-secret", &ok), "signature"),
        (mint(&with("exp", json!(t - 120))), "expired"),
        (mint(&with("nbf", json!(t + 300))), "nbf"),
        (mint(&with("exp", json!(t + 24 * 3600 + 60))), "24 hours"),
        (mint(&with("x-sockudo-capability", json!({"*": ["subscribe", "admin"]}))), "\"admin\""),
        (mint(&with("jti", json!(""))), "jti"),
        ("not-a-jwt".to_owned(), "malformed"),
    ] {
        let message = refused(&s, &token);
        assert!(message.starts_with("Authentication error: ") && message.contains(says), "{says}: {message}");
    }
    let mut v1 = s.connect_raw(&format!("/app/app-key?protocol=7&token={}", mint(&ok)), None);
    assert!(v1.expect_fatal(4009).contains("protocol=2"));
}

// What a token's capabilities allow: subscribe, presence (with subscribe), rewind and
// channel_history (history), client events (publish); everything else is denied with 4009 and
// the socket stays open. Sign-in is refused on a token connection. Sign-in capabilities limit
// only the operations they name.
#[test]
fn capabilities_limit_each_operation() {
    let s = Server::start(None);
    let caps = json!({
        "chat:*": ["subscribe", "history"],
        "private-chat:*": ["subscribe", "publish"],
        "presence-lobby": ["subscribe"],
        "presence-room": ["subscribe", "presence"],
    });
    let mut c = with_token(&s, &mint(&claims("u1", "j1", caps)));
    let denied = subscribe_result(&mut c, json!({"channel": "news"})).expect("news is not granted");
    assert!(denied.contains("subscribe on news"), "{denied}");
    assert_eq!(subscribe_result(&mut c, json!({"channel": "chat:1", "rewind": {"count": 1}})), None);
    c.expect_event("sockudo:rewind_complete");
    c.send_json(&json!({"event": "sockudo:channel_history", "data": {"channel": "chat:1"}}));
    c.expect_event("sockudo:channel_history");

    let private = "private-chat:1";
    let auth = private_auth(&c.app, &c.socket_id, private);
    assert_eq!(subscribe_result(&mut c, json!({"channel": private, "auth": auth})), None);
    let denied = subscribe_result(&mut c, json!({"channel": private, "auth": auth, "rewind": {"count": 1}}));
    assert!(denied.expect("no history grant").contains("history on private-chat:1"));
    let mut peer = v2_connected(&s);
    let peer_auth = private_auth(&peer.app, &peer.socket_id, private);
    assert_eq!(subscribe_result(&mut peer, json!({"channel": private, "auth": peer_auth})), None);
    c.client_event("client-hi", private, json!({"n": 1}));
    assert_eq!(peer.expect_channel_event("client-hi", private)["event"], "client-hi");

    for (channel, ok, says) in [("presence-lobby", false, "presence on presence-lobby"), ("presence-room", true, "")] {
        let cd = json!({"user_id": "u1"}).to_string();
        let auth = presence_auth(&c.app, &c.socket_id, channel, &cd);
        let got = subscribe_result(&mut c, json!({"channel": channel, "auth": auth, "channel_data": cd}));
        match got {
            None => assert!(ok, "{channel} was allowed"),
            Some(m) => assert!(!ok && m.contains(says), "{channel}: {m}"),
        }
    }
    let ud = json!({"id": "u1"}).to_string();
    let auth = signin_auth(&c.app, &c.socket_id, &ud);
    c.send_json(&json!({"event": "sockudo:signin", "data": {"user_data": ud, "auth": auth}}));
    assert!(c.expect_v2_error(4009).contains("capability token"));
    c.assert_alive_v2();

    // Sign-in capabilities: `subscribe` named, so limited; `publish` not named, so open.
    let mut signed = signed_in_v2(&s, "u2", json!({"subscribe": ["private-chat:*"]}));
    assert!(subscribe_result(&mut signed, json!({"channel": "news"})).is_some());
    let auth = private_auth(&signed.app, &signed.socket_id, private);
    assert_eq!(subscribe_result(&mut signed, json!({"channel": private, "auth": auth})), None);
    signed.client_event("client-hi", private, json!({"n": 2}));
    assert_eq!(peer.expect_channel_event("client-hi", private)["event"], "client-hi");
}

// `sockudo:auth` replaces the token (new capabilities at once) and answers `auth_success`; a
// token for another client id, or a bad one, is an error and the socket keeps its token.
#[test]
fn refresh_keeps_the_identity() {
    let s = Server::start(None);
    let mut c = with_token(&s, &mint(&claims("u1", "j1", json!({"a": ["subscribe"]}))));
    assert!(subscribe_result(&mut c, json!({"channel": "b"})).is_some());
    let fresh = claims("u1", "j2", json!({"a": ["subscribe"], "b": ["subscribe"]}));
    // `data` as a string, as some clients send it.
    c.send_json(&json!({"event": "sockudo:auth", "data": json!({"token": mint(&fresh)}).to_string()}));
    let f = c.expect_event("sockudo:auth_success");
    assert_eq!(f["data"], json!({"client_id": "u1", "jti": "j2", "exp": fresh["exp"]}), "{f}");
    assert_eq!(subscribe_result(&mut c, json!({"channel": "b"})), None);

    c.send_json(&auth_frame(&mint(&claims("u2", "j3", json!({"*": ["subscribe"]})))));
    assert!(c.expect_v2_error(4009).contains("cannot change client_id"));
    let mut expired = claims("u1", "j4", json!({"*": ["subscribe"]}));
    expired["exp"] = json!(now() - 120);
    c.send_json(&auth_frame(&mint(&expired)));
    assert!(c.expect_v2_error(4009).contains("expired"));
    // Still j2's capabilities.
    assert!(subscribe_result(&mut c, json!({"channel": "c"})).is_some());

    // A signed-in socket may take a token for its own user only.
    let mut signed = signed_in_v2(&s, "u7", json!({}));
    signed.send_json(&auth_frame(&mint(&claims("u8", "j5", json!({"*": ["subscribe"]})))));
    assert!(signed.expect_v2_error(4009).contains("cannot change the connection's user"));
}

// At `exp` the socket is told (40142); one that refreshes stays, one that does not is closed
// with 4009 thirty seconds later.
#[test]
fn expiry_then_close_unless_refreshed() {
    let s = Server::start(None);
    let mut short = claims("u1", "short", json!({"*": ["subscribe"]}));
    short["exp"] = json!(now() + 2);
    let mut lazy = with_token(&s, &mint(&short));
    let mut eager = with_token(&s, &mint(&short));
    for c in [&mut lazy, &mut eager] {
        let f = c.expect_event_within("sockudo:token_expired", Duration::from_secs(10));
        assert_eq!(f["data"], json!({"code": 40142, "reason": "expired"}), "{f}");
    }
    eager.send_json(&auth_frame(&mint(&claims("u1", "long", json!({"*": ["subscribe"]})))));
    eager.expect_event("sockudo:auth_success");
    lazy.expect_close_within(4009, Duration::from_secs(40));
    eager.assert_alive_v2();
}

/// V2 sockets with tokens of `client` until every shard holds one; `jti` is `<prefix><n>`.
fn on_every_shard(s: &Server, client: &str, prefix: &str) -> Vec<(Client, String)> {
    let shards = env_shards() as u64;
    let mut out: Vec<(Client, String)> = Vec::new();
    for n in 0..64 {
        let jti = format!("{prefix}{n}");
        let c = with_token(s, &mint(&claims(client, &jti, json!({"*": ["subscribe"]}))));
        out.push((c, jti));
        let seen: std::collections::BTreeSet<u64> =
            out.iter().map(|(c, _)| c.socket_id.split('.').next().unwrap().parse::<u64>().unwrap() % shards).collect();
        if seen.len() as u64 == shards && out.len() >= 2 {
            return out;
        }
    }
    panic!("64 sockets did not reach every shard");
}

fn revoked(c: &mut Client) {
    let f = c.expect_event("sockudo:token_expired");
    assert_eq!(f["data"], json!({"code": 40160, "reason": "revoked"}), "{f}");
    c.expect_close(4009);
}

// A revocation by jti closes the sockets of that token only, by client id every token socket
// of that client, on every shard; the revoked tokens are refused afterwards, also after a
// kill -9 and restart, until the revocation expires. A body without jti or client_id is 400.
#[test]
fn revocation_by_jti_and_client_id_across_shards_and_restarts() {
    let mut s = Server::start(None);
    let path = s.app.path("/revocations");
    let r = s.api("POST", &path, &[], Some(&json!({"reason": "nothing named"})));
    assert_eq!(r.status, 400, "{}", r.text());

    let mut alice = on_every_shard(&s, "alice", "a");
    let mut bob = on_every_shard(&s, "bob", "b");
    // By jti: only alice's first token.
    let (first, jti) = alice.remove(0);
    let mut first = first;
    let r = s.api("POST", &path, &[], Some(&json!({"jti": jti, "ttl_seconds": 3600})));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"revoked_jti": true, "revoked_client_id": false, "closed_connections": 1}));
    revoked(&mut first);
    for (c, _) in alice.iter_mut().chain(bob.iter_mut()) {
        c.assert_alive_v2();
    }
    // By client id: every socket of bob, whatever its token and shard.
    let r = s.api("POST", &path, &[], Some(&json!({"client_id": "bob", "expires_at": now() + 3600})));
    assert_eq!(r.json()["closed_connections"], bob.len(), "{}", r.text());
    for (c, _) in bob.iter_mut() {
        revoked(c);
    }
    for (c, _) in alice.iter_mut() {
        c.assert_alive_v2();
    }
    // A short revocation lasts exactly its ttl.
    let r = s.api("POST", &path, &[], Some(&json!({"client_id": "carol", "ttl_seconds": 2})));
    assert_eq!(r.status, 200);
    let carol = mint(&claims("carol", "c1", json!({"*": ["subscribe"]})));
    assert!(refused(&s, &carol).contains("revoked"));

    s.kill9();
    s.restart(None);
    assert!(refused(&s, &mint(&claims("alice", &jti, json!({"*": ["subscribe"]})))).contains("revoked"));
    assert!(refused(&s, &mint(&claims("bob", "new", json!({"*": ["subscribe"]})))).contains("revoked"));
    with_token(&s, &mint(&claims("alice", "fresh", json!({"*": ["subscribe"]})))).assert_alive_v2();
    std::thread::sleep(Duration::from_millis(2500));
    with_token(&s, &carol).assert_alive_v2();
}

trait AliveV2 {
    fn assert_alive_v2(&mut self);
}

impl AliveV2 for Client {
    /// A `sockudo:ping` is answered by `sockudo:pong` as the next frame.
    fn assert_alive_v2(&mut self) {
        self.send_json(&json!({"event": "sockudo:ping"}));
        let f = self.recv_json(T);
        assert_eq!(f["event"], "sockudo:pong", "{f}");
    }
}
