//! The unsigned operational routes: `GET /up`, `GET /up/{app_id}`, `GET /usage`, and 404.

use super::super::response::Response;
use crate::ws::hub::Hub;

pub fn not_found() -> Response {
    Response::text(404, "404 NOT FOUND")
}

/// `GET /up` and `GET /up/{app_id}` (`docs/protocol/http-api.md#health-and-status-routes`).
pub fn up(hub: &Hub, app_id: Option<&str>) -> Response {
    if hub.draining.get() {
        return Response::text(503, "DRAINING");
    }
    let apps = &hub.shard.ctx.apps;
    let ok = match app_id {
        None => !apps.is_empty(),
        Some(id) => match apps.by_id(id) {
            None => return Response::text(404, "NOT_FOUND"),
            Some(i) => apps.get(i).enabled,
        },
    };
    let response =
        if ok { Response::text(200, "OK").header("X-Health-Check", "OK") } else { Response::text(503, "ERROR") };
    // A node cut off from Redis still serves its own sockets, so it stays up for a load
    // balancer; the header says whether it reaches the other nodes.
    match &hub.shard.ctx.backplane {
        Some(b) => response.header("X-Backplane", if b.connected() { "connected" } else { "disconnected" }),
        None => response,
    }
}

/// `GET /usage`: the machine's memory, from /proc/meminfo.
pub fn usage() -> Response {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    let total = field("MemTotal:");
    let free = field("MemAvailable:");
    let used = total.saturating_sub(free);
    let percent = if total > 0 { used as f64 * 100.0 / total as f64 } else { 0.0 };
    Response::json(
        200,
        format!("{{\"memory\":{{\"free\":{free},\"used\":{used},\"total\":{total},\"percent\":{percent:.2}}}}}"),
    )
}
