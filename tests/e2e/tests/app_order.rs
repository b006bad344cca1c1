//! Owners are keyed by app id, not by where an app sits in the config: adding an app in front
//! of the others and reordering them keeps every app's history, serials and idempotency
//! records across a `kill -9`, and each app keeps its own rate window.

use e2e::*;
use serde_json::json;

fn apps() -> [App; 3] {
    [
        App::new("app-a", "key-a", "secret-a"),
        App::new("app-b", "key-b", "secret-b"),
        App::new("app-new", "key-new", "secret-new"),
    ]
}

fn cfg(order: &[&App]) -> String {
    let tables: Vec<AppConfig> = order.iter().map(|a| AppConfig::for_app(a)).collect();
    config(
        "[rate_limiter]\nenabled = true\n[rate_limiter.api_rate_limit]\nmax_requests = 60\nwindow_seconds = 60",
        &tables,
    )
}

fn history_serials(s: &Server, app: &App, channel: &str) -> Vec<u64> {
    let r = s.api_as(
        app,
        "GET",
        &app.path(&format!("/channels/{channel}/history")),
        &[("direction", "oldest_first")],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"].as_array().unwrap().iter().map(|i| i["serial"].as_u64().unwrap()).collect()
}

fn publish(s: &Server, app: &App, body: serde_json::Value) -> Response {
    s.api_as(app, "POST", &app.path("/events"), &[], Some(&body))
}

#[test]
fn reordering_apps_keeps_each_apps_state() {
    let [a, b, new] = apps();
    let mut s = Server::start_with(Some(&cfg(&[&a, &b])), Some(2), &[], &[]);
    let mut first = Vec::new();
    for app in [&a, &b] {
        for i in 0..6 {
            let key = format!("{}-key-{i}", app.id);
            let r = publish(
                &s,
                app,
                json!({"name": "e", "channel": format!("orders-{i}"), "data": "1", "idempotency_key": key, "info": "subscription_count"}),
            );
            assert_eq!(r.status, 200, "{}", r.text());
            first.push((app.clone(), key, i, r.json()));
        }
    }

    s.kill9();
    s.set_config(&cfg(&[&new, &b, &a]));
    s.restart(None);

    // Every retry is recognised: the same body back, nothing published a second time.
    for (app, key, i, body) in &first {
        let r = publish(
            &s,
            app,
            json!({"name": "e", "channel": format!("orders-{i}"), "data": "1", "idempotency_key": key, "info": "subscription_count"}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(&r.json(), body, "{} retry of {key} was not answered from its first response", app.id);
        assert_eq!(history_serials(&s, app, &format!("orders-{i}")), vec![1], "{} orders-{i} published twice", app.id);
    }
    // Serials continue where each stream left off.
    for app in [&a, &b] {
        let r = publish(&s, app, json!({"name": "e", "channel": "orders-0", "data": "2"}));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(history_serials(&s, app, "orders-0"), vec![1, 2], "{}", app.id);
    }
    // Each app has its own API window: exhausting one does not touch the others.
    let mut limited = 0;
    for _ in 0..61 {
        let r = s.api_raw(&a, "GET", &a.path("/channels"), &[], None, &[]);
        if r.status == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 1, "app-a was never limited");
    for app in [&b, &new] {
        let r = s.api_raw(app, "GET", &app.path("/channels"), &[], None, &[]);
        assert_eq!(r.status, 200, "{} was limited by app-a's window: {}", app.id, r.text());
    }
}
