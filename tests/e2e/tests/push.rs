//! The push registry (`docs/push.md`): device registrations and channel subscriptions over
//! the signed HTTP API, with the device identity token a device acts for itself with, lists by
//! cursor, removals, the errors of each route, and publish admission while no provider
//! delivery worker runs. The suite runs with 1 and 2 shards (the registry lives in one
//! shard's store, reached from every shard).

use e2e::*;
use serde_json::{json, Value};

/// A signed call with extra headers (with or without a body).
fn call(
    s: &Server,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&Value>,
    headers: &[(&str, &str)],
) -> Response {
    let body = body.map(|b| b.to_string().into_bytes());
    let target = signed_target(&s.app, method, &s.app.path(path), query, body.as_deref(), now());
    let mut all = headers.to_vec();
    if body.is_some() {
        all.push(("Content-Type", "application/json"));
    }
    http(s.port, method, &target, &all, body.as_deref())
}

fn apns_device(id: &str, client: &str, token: &str) -> Value {
    json!({"id": id, "clientId": client, "formFactor": "phone", "platform": "ios",
           "push": {"recipient": {"transportType": "apns", "deviceToken": token}}})
}

fn register(s: &Server, body: &Value) -> Value {
    let r = call(s, "POST", "/push/deviceRegistrations", &[], Some(body), &[]);
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()
}

const SUBSCRIBE_MODE: (&str, &str) = ("x-sockudo-push-capability", "push-subscribe");

// `docs/push.md#registry`: a device registered by the app's server gets an identity token; it
// reads, updates and subscribes itself with it, never another device; the app's server lists
// and removes registrations and subscriptions; a device's removal takes its subscriptions.
#[test]
fn devices_register_and_subscribe() {
    let s = Server::start(None);
    {
        let created = register(&s, &apns_device("ios-1", "user-42", "apns-token-1"));
        assert_eq!(created["change"], "created", "{created}");
        let token = created["deviceIdentityToken"].as_str().unwrap().to_owned();
        let device = &created["device"];
        assert_eq!(
            (&device["id"], &device["clientId"], &device["pushState"]),
            (&json!("ios-1"), &json!("user-42"), &json!("ACTIVE"))
        );
        assert_eq!(device["recipient"]["provider"], "apns");
        assert_eq!(device["recipient"]["tokenHash"], created["tokenHash"]);
        assert!(!created.to_string().contains("apns-token-1"), "the provider token is never shown: {created}");
        let web = json!({"id": "web-1", "client_id": "user-42", "form_factor": "desktop", "platform": "browser",
                         "push": {"recipient": {"transportType": "web", "endpoint": "https://push.example/e1",
                                                "p256dh": "key", "auth": "secret"}}});
        register(&s, &web);
        register(&s, &apns_device("ios-2", "user-7", "apns-token-2"));

        // The device acts for itself with its token.
        let own = [SUBSCRIBE_MODE, ("x-sockudo-device-identity-token", token.as_str())];
        let r = call(&s, "GET", "/push/deviceRegistrations/ios-1", &[], None, &own);
        assert_eq!((r.status, &r.json()["platform"]), (200, &json!("ios")), "{}", r.text());
        call(&s, "GET", "/push/deviceRegistrations/ios-2", &[], None, &own).assert_error(401, "auth_failed");
        call(&s, "GET", "/push/deviceRegistrations/ios-1", &[], None, &[SUBSCRIBE_MODE])
            .assert_error(401, "auth_failed");
        let updated = call(
            &s,
            "POST",
            "/push/deviceRegistrations",
            &[],
            Some(&apns_device("ios-1", "user-42", "apns-token-3")),
            &own,
        );
        assert_eq!((updated.status, &updated.json()["change"]), (201, &json!("updated")), "{}", updated.text());
        assert!(updated.json().get("deviceIdentityToken").is_none(), "a device is given no new token");
        let unknown = call(&s, "POST", "/push/deviceRegistrations", &[], Some(&apns_device("new", "u", "t")), &own);
        unknown.assert_error(401, "auth_failed");

        // Subscriptions: the app's server any device, a device only itself.
        let sub = |device: &str, channel: &str, headers: &[(&str, &str)]| {
            call(
                &s,
                "POST",
                "/push/channelSubscriptions",
                &[],
                Some(&json!({"channel": channel, "deviceId": device})),
                headers,
            )
        };
        let r = sub("ios-1", "orders", &own);
        assert_eq!(r.status, 201, "{}", r.text());
        assert_eq!((&r.json()["provider"], &r.json()["clientId"]), (&json!("apns"), &json!("user-42")));
        sub("ios-2", "orders", &own).assert_error(401, "auth_failed");
        for (device, channel) in [("web-1", "orders"), ("ios-2", "orders"), ("ios-1", "news"), ("ios-2", "alerts")] {
            assert_eq!(sub(device, channel, &[]).status, 201);
        }
        sub("nobody", "orders", &[]).assert_error(404, "not_found");
        let listed = |query: &[(&str, &str)], headers: &[(&str, &str)]| {
            let r = call(&s, "GET", "/push/channelSubscriptions", query, None, headers);
            assert_eq!(r.status, 200, "{}", r.text());
            r.json()
        };
        let orders = listed(&[("channel", "orders"), ("limit", "2")], &[]);
        assert_eq!((orders["items"].as_array().unwrap().len(), &orders["has_more"]), (2, &json!(true)), "{orders}");
        let cursor = orders["next_cursor"].as_str().unwrap().to_owned();
        let rest = listed(&[("channel", "orders"), ("cursor", &cursor)], &[]);
        assert_eq!((rest["items"].as_array().unwrap().len(), &rest["next_cursor"]), (1, &Value::Null), "{rest}");
        let one = listed(&[("channel", "orders"), ("deviceId", "web-1")], &[]);
        assert_eq!(
            (one["items"].as_array().unwrap().len(), &one["items"][0]["deviceId"]),
            (1, &json!("web-1")),
            "{one}"
        );
        let mine = listed(&[("deviceId", "ios-1")], &own);
        let channels: Vec<&str> =
            mine["items"].as_array().unwrap().iter().map(|i| i["channel"].as_str().unwrap()).collect();
        assert_eq!(channels, ["news", "orders"]);
        call(&s, "GET", "/push/channelSubscriptions", &[], None, &[]).assert_error(400, "invalid_input");
        let first = call(&s, "GET", "/push/channelSubscriptions/channels", &[("limit", "2")], None, &[]).json();
        let cursor = first["next_cursor"].as_str().unwrap().to_owned();
        let second = call(&s, "GET", "/push/channelSubscriptions/channels", &[("cursor", &cursor)], None, &[]).json();
        let mut names: Vec<String> = first["items"]
            .as_array()
            .unwrap()
            .iter()
            .chain(second["items"].as_array().unwrap())
            .map(|c| c.as_str().unwrap().to_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["alerts", "news", "orders"]);

        // The app's server lists devices page by page and removes a client's.
        let page = call(&s, "GET", "/push/deviceRegistrations", &[("limit", "2")], None, &[]).json();
        let next = page["next_cursor"].as_str().unwrap_or_else(|| panic!("{page}")).to_owned();
        let page2 = call(&s, "GET", "/push/deviceRegistrations", &[("cursor", &next)], None, &[]).json();
        let mut ids: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .chain(page2["items"].as_array().unwrap())
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        assert_eq!(ids, ["ios-1", "ios-2", "web-1"]);
        let r = call(&s, "DELETE", "/push/deviceRegistrations", &[("clientId", "user-42")], None, &[]);
        assert_eq!(r.json(), json!({"deleted": 2, "consistency": "eventual"}));
        let orders = listed(&[("channel", "orders")], &[]);
        let left: Vec<&str> =
            orders["items"].as_array().unwrap().iter().map(|i| i["deviceId"].as_str().unwrap()).collect();
        assert_eq!(left, ["ios-2"], "a removed device's subscriptions go with it");
        call(&s, "GET", "/push/deviceRegistrations/ios-1", &[], None, &[]).assert_error(404, "not_found");
        let r = call(&s, "DELETE", "/push/channelSubscriptions", &[("deviceId", "ios-2")], None, &[]);
        assert_eq!(r.json(), json!({"deleted": 2}));
        assert_eq!(call(&s, "DELETE", "/push/deviceRegistrations/ios-2", &[], None, &[]).status, 204);
        call(&s, "DELETE", "/push/deviceRegistrations/ios-2", &[], None, &[]).assert_error(404, "not_found");
    }
}

// `docs/push.md#errors`: each route's refusals, and publish admission while no provider
// delivery worker runs (the registry keeps working).
#[test]
fn push_routes_refuse_what_is_wrong() {
    let s = Server::start(None);
    let admin_only = [("x-sockudo-push-capability", "push-subscribe")];
    let r = call(
        &s,
        "POST",
        "/push/publish",
        &[],
        Some(&json!({"recipients": [{"type": "channel", "channel": "orders"}]})),
        &[],
    );
    let j = r.assert_error(503, "service_unavailable");
    assert!(j["error"].as_str().unwrap().starts_with("push admission unavailable"), "{j}");
    call(&s, "POST", "/push/publish", &[], Some(&json!({})), &admin_only).assert_error(403, "forbidden");
    call(&s, "POST", "/push/batch/publish", &[], Some(&json!([])), &[("x-sockudo-push-capability", "root")])
        .assert_error(403, "forbidden");
    call(&s, "GET", "/push/deviceRegistrations", &[("limit", "0")], None, &[]).assert_error(400, "invalid_input");
    call(&s, "GET", "/push/deviceRegistrations", &[("limit", "1001")], None, &[]).assert_error(400, "invalid_input");
    call(&s, "GET", "/push/deviceRegistrations", &[], None, &admin_only).assert_error(403, "forbidden");
    call(&s, "DELETE", "/push/deviceRegistrations", &[], None, &[]).assert_error(400, "invalid_input");
    call(&s, "DELETE", "/push/channelSubscriptions", &[], None, &[]).assert_error(400, "invalid_input");
    let body = apns_device("d", "u", "t").to_string().into_bytes();
    let target = signed_target(&s.app, "POST", &s.app.path("/push/deviceRegistrations"), &[], Some(&body), now());
    http(s.port, "POST", &target, &[], Some(&body)).assert_error(400, "invalid_input");
    let plus = http(s.port, "POST", &target, &[("Content-Type", "application/vnd.api+json")], Some(&body));
    assert_eq!(plus.status, 201, "a +json type is JSON: {}", plus.text());
    let bad = json!({"id": "d", "formFactor": "fridge", "platform": "ios", "push": {"recipient": {"transportType": "apns", "deviceToken": "t"}}});
    let j = call(&s, "POST", "/push/deviceRegistrations", &[], Some(&bad), &[]).assert_error(400, "invalid_input");
    assert!(j["error"].as_str().unwrap().contains("formFactor"), "{j}");
}

// `docs/push.md#several-nodes`: with the Redis adapter each node's store would hold a registry
// of its own, so the push routes refuse rather than split it.
#[test]
fn the_registry_is_refused_with_an_adapter() {
    let cluster = Cluster::start(1, None);
    let s = &cluster.nodes[0];
    let r = call(s, "POST", "/push/deviceRegistrations", &[], Some(&apns_device("d", "u", "t")), &[]);
    r.assert_error(501, "not_supported_with_adapter");
    call(s, "GET", "/push/deviceRegistrations", &[], None, &[]).assert_error(501, "not_supported_with_adapter");
}
