//! Harness for the end-to-end tests (see tests/).
//!
//! - [`Server`]: starts the real `sockudo` binary on fresh ports, waits for `/up`, kills it on drop.
//! - [`Client`]: a blocking WebSocket client (tungstenite) whose reads are bounded by timeouts.
//! - signatures ([`private_auth`], [`presence_auth`], [`signin_auth`], [`api_signature`]):
//!   `docs/protocol/pusher.md#authorization-signatures`, `docs/protocol/http-api.md#request-signing`.
//! - [`http`] / [`HttpConn`]: a tiny HTTP/1.1 client over `std::net::TcpStream`, and the signed
//!   REST helpers (`docs/protocol/http-api.md#request-signing`): [`Server::api`], [`signed_target`].
//!
//! - [`Receiver`] (`webhook_receiver.rs`): an HTTP server that records the webhooks it gets.
//! - [`Cluster`] (`redis.rs`): several nodes over a `redis-server` or a Redis Cluster the test
//!   starts, and a [`Proxy`] that cuts a node off.
//!
//! Tests assert behaviour, never speed: every timeout below only bounds a wait.

mod redis;
mod webhook_receiver;
pub use redis::*;
pub use webhook_receiver::*;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, WebSocketConfig};
use tungstenite::{client::IntoClientRequest, Message, WebSocket};

/// Bound for "this should arrive".
pub const T: Duration = Duration::from_secs(5);
/// Window for "nothing arrives".
pub const QUIET: Duration = Duration::from_millis(1000);
/// Bound for the server to start.
const START_DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Apps and configuration
// ---------------------------------------------------------------------------------------------

/// Credentials of one app.
#[derive(Clone, Debug)]
pub struct App {
    pub id: String,
    pub key: String,
    pub secret: String,
}

impl App {
    /// The development app the server has without `--config`
    /// (`docs/protocol/pusher.md#development-app`).
    pub fn dev() -> App {
        App::new("app-id", "app-key", "app-secret")
    }
    pub fn new(id: &str, key: &str, secret: &str) -> App {
        App { id: id.into(), key: key.into(), secret: secret.into() }
    }
    /// `/apps/{id}{rest}`
    pub fn path(&self, rest: &str) -> String {
        format!("/apps/{}{}", self.id, rest)
    }
}

/// One `[[apps]]` table. Starts like the dev app (enabled, client events at 1000/s, user auth,
/// watchlist) so that a test only states the fields it is about.
#[derive(Clone, Debug)]
pub struct AppConfig {
    fields: Vec<(String, String)>,
    namespaces: Vec<String>,
}

impl AppConfig {
    pub fn dev() -> AppConfig {
        AppConfig::for_app(&App::dev())
    }
    pub fn for_app(app: &App) -> AppConfig {
        let q = |s: &str| toml_str(s);
        AppConfig { fields: Vec::new(), namespaces: Vec::new() }
            .set("id", &q(&app.id))
            .set("key", &q(&app.key))
            .set("secret", &q(&app.secret))
            .set("enabled", "true")
            .set("enable_client_messages", "true")
            .set("enable_user_authentication", "true")
            .set("enable_watchlist_events", "true")
            .set("max_client_events_per_second", "1000")
    }
    /// Sets (or replaces) a field; `value` is TOML (`"true"`, `"3"`, `"\"x\""`, `"[\"a\"]"`).
    pub fn set(mut self, key: &str, value: &str) -> AppConfig {
        self.fields.retain(|(k, _)| k != key);
        self.fields.push((key.into(), value.into()));
        self
    }
    /// Removes a field so the server's default applies.
    pub fn unset(mut self, key: &str) -> AppConfig {
        self.fields.retain(|(k, _)| k != key);
        self
    }
    pub fn namespace(mut self, name: &str) -> AppConfig {
        self.namespaces.push(name.into());
        self
    }
    fn toml(&self) -> String {
        let mut s = String::from("[[apps]]\n");
        for (k, v) in &self.fields {
            s += &format!("{k} = {v}\n");
        }
        for ns in &self.namespaces {
            s += &format!("[[apps.channel_namespaces]]\nname = {}\n", toml_str(ns));
        }
        s
    }
}

/// A whole config file: top-level lines (e.g. `"activity_timeout = 2"`) then the apps.
pub fn config(top: &str, apps: &[AppConfig]) -> String {
    let mut s = format!("{top}\n");
    for a in apps {
        s += &a.toml();
    }
    s
}

pub fn toml_str(s: &str) -> String {
    Value::String(s.into()).to_string() // JSON string escaping is valid TOML basic-string escaping
}

// ---------------------------------------------------------------------------------------------
// Server process
// ---------------------------------------------------------------------------------------------

/// A running `sockudo` process, killed (SIGKILL) on drop. Its stdout+stderr go to a log file
/// whose tail is printed if the test panics.
pub struct Server {
    child: Child,
    pub port: u16,
    pub metrics_port: u16,
    /// The app the helpers sign with (the dev app unless a test says otherwise).
    pub app: App,
    dir: PathBuf,
    shards: Option<usize>,
}

/// The shard count the harness passes (`SOCKUDO_SHARDS`, default 1).
pub fn env_shards() -> usize {
    std::env::var("SOCKUDO_SHARDS").ok().and_then(|s| s.parse().ok()).unwrap_or(1)
}

pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("SOCKUDO_BIN") {
        return p.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/sockudo")
}

/// A port nobody listens on, never handed out twice by this process.
pub fn free_port() -> u16 {
    static USED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if USED.lock().unwrap().insert(port) {
            return port;
        }
    }
}

fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    let dir = std::env::temp_dir().join(format!(
        "sockudo-e2e-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos
    ));
    fs::create_dir_all(&dir).unwrap();
    dir
}

impl Server {
    /// Starts with `--shards $SOCKUDO_SHARDS` and the given config (none = built-in dev app).
    pub fn start(config: Option<&str>) -> Server {
        Server::launch(config, Some(env_shards()))
    }

    /// Starts without `--shards`, so the config file's `shards` decides.
    pub fn start_with_config_shards(config: &str) -> Server {
        Server::launch(Some(config), None)
    }

    /// Starts like `start`, with extra environment variables (kept for restarts).
    pub fn start_with_env(config: Option<&str>, env: &[(&str, &str)]) -> Server {
        Server::start_with(config, Some(env_shards()), env, &[])
    }

    /// Starts with a shard count, extra environment variables and extra command-line flags
    /// (all kept for restarts).
    pub fn start_with(config: Option<&str>, shards: Option<usize>, env: &[(&str, &str)], args: &[&str]) -> Server {
        let mut server = Server::spawn_with(config, shards, env, args);
        server.wait_ready();
        server
    }

    /// Starts on `port` (which may have lingering connections of another server).
    pub fn start_on_port(port: u16, config: Option<&str>) -> Server {
        let mut server = Server::spawn_with(config, Some(env_shards()), &[], &["--port", &port.to_string()]);
        server.port = port;
        server.wait_ready();
        server
    }

    /// Replaces the config file a restart reads.
    pub fn set_config(&self, config: &str) {
        fs::write(self.dir.join("config.toml"), config).unwrap();
    }

    fn launch(config: Option<&str>, shards: Option<usize>) -> Server {
        let mut server = Server::spawn(config, shards);
        server.wait_ready();
        server
    }

    fn wait_ready(&mut self) {
        let server = self;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("sockudo exited during start-up ({status}):\n{}", server.log());
            }
            if let Ok(r) = try_http(server.port, "GET", "/up", &[], None) {
                if r.status == 200 && r.text().trim() == "OK" {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("sockudo not ready on /up within {START_DEADLINE:?}:\n{}", server.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn(config: Option<&str>, shards: Option<usize>) -> Server {
        Server::spawn_with(config, shards, &[], &[])
    }

    fn spawn_with(config: Option<&str>, shards: Option<usize>, env: &[(&str, &str)], args: &[&str]) -> Server {
        let dir = temp_dir();
        if let Some(cfg) = config {
            fs::write(dir.join("config.toml"), cfg).unwrap();
        }
        let env: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        fs::write(dir.join("env"), env).unwrap();
        fs::write(dir.join("args"), args.join("\n")).unwrap();
        let (child, port, metrics_port) = Server::run_in(&dir, shards);
        Server { child, port, metrics_port, app: App::dev(), dir, shards }
    }

    /// Starts the binary with the config and data dir kept in `dir`, on fresh ports.
    fn run_in(dir: &Path, shards: Option<usize>) -> (Child, u16, u16) {
        let bin = binary();
        assert!(bin.exists(), "server binary {} not found (set SOCKUDO_BIN)", bin.display());
        let (port, metrics_port) = (free_port(), free_port());
        let log = fs::OpenOptions::new().create(true).append(true).open(dir.join("server.log")).unwrap();
        let mut cmd = Command::new(bin);
        for line in fs::read_to_string(dir.join("env")).unwrap_or_default().lines() {
            if let Some((k, v)) = line.split_once('=') {
                cmd.env(k, v);
            }
        }
        let config = dir.join("config.toml");
        // Tests are not throttled, except those that configure the rate limiter
        // (`docs/protocol/http-api.md#rate-limits`).
        if !fs::read_to_string(&config).is_ok_and(|c| c.contains("[rate_limiter")) {
            cmd.env("RATE_LIMITER_ENABLED", "false");
        }
        if config.exists() {
            cmd.arg("--config").arg(config);
        }
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()]);
        cmd.args(["--metrics-port", &metrics_port.to_string()]);
        cmd.arg("--data-dir").arg(dir.join("data"));
        if let Some(n) = shards {
            cmd.args(["--shards", &n.to_string()]);
        }
        cmd.args(fs::read_to_string(dir.join("args")).unwrap_or_default().lines().filter(|a| !a.is_empty()));
        cmd.stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log);
        (cmd.spawn().expect("spawn sockudo"), port, metrics_port)
    }

    /// Kills the process at once (SIGKILL): no graceful stop, no final sync.
    pub fn kill9(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().unwrap();
    }

    /// Starts the server again on the same config and data dir (after `kill9` or a stop), on
    /// new ports; `shards` overrides the shard count.
    pub fn restart(&mut self, shards: Option<usize>) {
        assert!(self.child.try_wait().unwrap().is_some(), "restart: the server is still running");
        self.shards = shards.or(self.shards);
        let (child, port, metrics_port) = Server::run_in(&self.dir, self.shards);
        (self.child, self.port, self.metrics_port) = (child, port, metrics_port);
        self.wait_ready();
    }

    /// Runs the server with a config that must be refused: returns its exit status and output.
    pub fn start_expecting_exit(config: &str) -> (ExitStatus, String) {
        let mut server = Server::spawn(Some(config), Some(env_shards()));
        match server.wait_exit(Duration::from_secs(15)) {
            Some(status) => (status, server.log()),
            None => panic!("sockudo kept running with a bad config:\n{}", server.log()),
        }
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (graceful stop).
    pub fn sigterm(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap();
        assert!(ok.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // -- WebSocket ---------------------------------------------------------------------------

    /// Connects to `/app/app-key` like pusher-js does and reads `connection_established`.
    pub fn connect(&self) -> Client {
        self.connect_app(&self.app)
    }

    pub fn connect_app(&self, app: &App) -> Client {
        let path = format!("/app/{}?protocol=7&client=js&version=8.4.0&flash=false", app.key);
        let mut c = self.connect_raw(&path, None);
        c.app = app.clone();
        c.established();
        c
    }

    /// Upgrades on `path` (with an optional `Origin`) and reads nothing.
    pub fn connect_raw(&self, path: &str, origin: Option<&str>) -> Client {
        let mut req = format!("ws://127.0.0.1:{}{}", self.port, path).into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("Origin", o.parse().unwrap());
        }
        let stream = TcpStream::connect(("127.0.0.1", self.port)).expect("tcp connect");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let cfg = WebSocketConfig::default().write_buffer_size(0).max_message_size(None).max_frame_size(None);
        let (ws, resp) = tungstenite::client::client_with_config(req, stream, Some(cfg))
            .unwrap_or_else(|e| panic!("WebSocket handshake on {path} failed: {e}"));
        assert_eq!(resp.status().as_u16(), 101);
        Client { ws, socket_id: String::new(), app: self.app.clone() }
    }

    // -- HTTP ---------------------------------------------------------------------------------

    /// Unsigned request.
    pub fn http(&self, method: &str, target: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
        http(self.port, method, target, headers, body)
    }

    /// Signed REST call as `self.app`; `body` is sent as `application/json`.
    pub fn api(&self, method: &str, path: &str, query: &[(&str, &str)], body: Option<&Value>) -> Response {
        self.api_as(&self.app, method, path, query, body)
    }

    /// Signed REST call as another app of the server; `body` is sent as `application/json`.
    pub fn api_as(
        &self,
        app: &App,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Response {
        let body = body.map(|b| b.to_string().into_bytes());
        self.api_raw(app, method, path, query, body.as_deref(), &[("Content-Type", "application/json")])
    }

    /// Signed REST call with full control over app, body bytes and headers.
    pub fn api_raw(
        &self,
        app: &App,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&[u8]>,
        headers: &[(&str, &str)],
    ) -> Response {
        let target = signed_target(app, method, path, query, body, now());
        let headers = if body.is_some() { headers } else { &[] };
        http(self.port, method, &target, headers, body)
    }

    /// A signed JSON `POST` that may find the server gone (a kill under load): `None` then, or
    /// when it answers with anything but 200.
    pub fn try_post_ok(&self, path: &str, body: &Value) -> Option<Value> {
        let body = body.to_string().into_bytes();
        let target = signed_target(&self.app, "POST", path, &[], Some(&body), now());
        let r = try_http(self.port, "POST", &target, &[("Content-Type", "application/json")], Some(&body)).ok()?;
        (r.status == 200).then(|| r.json())
    }

    /// A signed `POST` of JSON that does not parse (`{`), which every JSON route refuses with 400.
    pub fn post_malformed_json(&self, path: &str) -> Response {
        let r = self.api_raw(&self.app, "POST", path, &[], Some(b"{"), &[("Content-Type", "application/json")]);
        assert_eq!(r.status, 400, "{}", r.text());
        r
    }

    /// `POST /apps/{id}/events`.
    pub fn publish(&self, body: Value) -> Response {
        self.api("POST", &self.app.path("/events"), &[], Some(&body))
    }

    /// Publishes and asserts 200.
    pub fn publish_ok(&self, body: Value) -> Value {
        let r = self.publish(body);
        assert_eq!(r.status, 200, "publish failed: {}", r.text());
        r.json()
    }

    /// `POST /apps/{id}/batch_events`.
    pub fn batch(&self, batch: Value) -> Response {
        self.api("POST", &self.app.path("/batch_events"), &[], Some(&json!({ "batch": batch })))
    }

    /// Signed `GET /apps/{id}{rest}`.
    pub fn get(&self, rest: &str, query: &[(&str, &str)]) -> Response {
        self.api("GET", &self.app.path(rest), query, None)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let tail = &log[log.len().saturating_sub(4000)..];
            eprintln!("---- sockudo log (port {}) ----\n{tail}\n---- end ----", self.port);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// Capability tokens (`docs/protocol/v2.md#capability-tokens`), written here: base64url and HMAC
// ---------------------------------------------------------------------------------------------

/// Claims of a token for `client` with id `jti`, valid for an hour.
pub fn claims(client: &str, jti: &str, capability: Value) -> Value {
    let t = now();
    json!({"x-sockudo-capability": capability, "x-sockudo-client-id": client, "iat": t, "exp": t + 3600, "jti": jti})
}

/// A JWT with `alg` `HS256` or `HS384`, signed with that HMAC.
pub fn mint_with(alg: &str, kid: &str, secret: &str, claims: &Value) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = match alg {
        "HS256" => {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        "HS384" => {
            let mut mac = Hmac::<sha2::Sha384>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        _ => panic!("{alg}"),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

pub fn mint(claims: &Value) -> String {
    mint_with("HS256", "app-key", "app-secret", claims)
}

/// A V2 socket connected with `token`, past its connection_established.
pub fn with_token(s: &Server, token: &str) -> Client {
    let mut c = s.connect_raw(&format!("/app/app-key?protocol=2&token={token}"), None);
    let f = c.recv_json(T);
    assert_eq!(f["event"], "sockudo:connection_established", "{f}");
    c.socket_id = data_json(&f)["socket_id"].as_str().unwrap().to_owned();
    c
}

// ---------------------------------------------------------------------------------------------
// WebSocket client
// ---------------------------------------------------------------------------------------------

/// One thing read from the socket.
#[derive(Debug)]
pub enum Frame {
    Json(Value),
    /// A text or binary message that is not JSON.
    Other(String),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame: (code, reason); `None` for a close frame without a code.
    Close(Option<(u16, String)>),
    /// The connection ended without (further) close frame: EOF, reset or protocol error.
    Gone(String),
}

pub struct Client {
    pub ws: WebSocket<TcpStream>,
    /// Set by [`Client::established`].
    pub socket_id: String,
    /// The app whose secret signs subscriptions and sign-ins.
    pub app: App,
}

impl Client {
    /// Reads `pusher:connection_established` and remembers the socket id.
    pub fn established(&mut self) -> Value {
        let f = self.expect_event("pusher:connection_established");
        let data = f["data"].as_str().expect("connection_established data must be a string");
        let data: Value = serde_json::from_str(data).unwrap();
        self.socket_id = data["socket_id"].as_str().expect("socket_id").to_string();
        data
    }

    // -- sending --------------------------------------------------------------------------------

    pub fn send_json(&mut self, v: &Value) {
        self.send_text(&v.to_string());
    }

    /// Sends the frames in one TCP write, so that the server reads them together (a subscribe
    /// with the resume that must be served before its live frames,
    /// `docs/protocol/v2.md#continuity-gate`).
    pub fn send_json_together(&mut self, frames: &[Value]) {
        // The client writes every frame as soon as it is queued (`write_buffer_size(0)`):
        // buffer them for the duration, so they leave in one write.
        let eager = self.ws.get_config().write_buffer_size;
        self.ws.set_config(|c| c.write_buffer_size = usize::MAX / 2);
        for f in frames {
            self.ws.write(Message::text(f.to_string())).expect("queue text");
        }
        self.ws.flush().expect("flush");
        self.ws.set_config(|c| c.write_buffer_size = eager);
    }

    pub fn send_text(&mut self, s: &str) {
        self.ws.send(Message::text(s)).expect("send text");
    }

    pub fn send(&mut self, m: Message) {
        self.ws.send(m).expect("send");
    }

    /// Writes bytes straight to the TCP stream (hand-made frames). Errors are ignored: the server
    /// may already have closed the connection.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let s = self.ws.get_mut();
        let _ = s.write_all(bytes).and_then(|_| s.flush());
    }

    // -- receiving ------------------------------------------------------------------------------

    /// The next frame, or `None` if nothing arrived within `timeout`.
    pub fn recv(&mut self, timeout: Duration) -> Option<Frame> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.ws.get_mut().set_read_timeout(Some(left)).unwrap();
            return Some(match self.ws.read() {
                Ok(Message::Text(t)) => parse_frame(t.as_bytes()),
                Ok(Message::Binary(b)) => parse_frame(&b),
                Ok(Message::Ping(p)) => Frame::Ping(p.to_vec()),
                Ok(Message::Pong(p)) => Frame::Pong(p.to_vec()),
                Ok(Message::Close(c)) => Frame::Close(c.map(|c| (u16::from(c.code), c.reason.to_string()))),
                Ok(Message::Frame(_)) => continue,
                Err(tungstenite::Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    continue
                }
                Err(e) => Frame::Gone(e.to_string()),
            });
        }
    }

    /// The next JSON frame (native pings/pongs skipped); panics on anything else.
    pub fn recv_json(&mut self, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Some(Frame::Json(v)) => return v,
                Some(Frame::Ping(_)) | Some(Frame::Pong(_)) => continue,
                Some(other) => panic!("expected a JSON frame, got {other:?}"),
                None => panic!("no frame within {timeout:?}"),
            }
        }
    }

    /// The next frame must be event `name`; returns it.
    pub fn expect_event(&mut self, name: &str) -> Value {
        self.expect_event_within(name, T)
    }

    pub fn expect_event_within(&mut self, name: &str, timeout: Duration) -> Value {
        let f = self.recv_json(timeout);
        assert_eq!(f["event"], name, "expected event {name}, got {f}");
        f
    }

    /// The next frame must be event `name` on `channel`; returns it.
    pub fn expect_channel_event(&mut self, name: &str, channel: &str) -> Value {
        let f = self.expect_event(name);
        assert_eq!(f["channel"], channel, "wrong channel in {f}");
        f
    }

    /// The next frame must be `pusher:error` with this code, `data` an object and no `channel`
    /// key (`docs/protocol/pusher.md#error-frame`). Returns the message.
    pub fn expect_error(&mut self, code: u64) -> String {
        self.expect_error_within(code, T)
    }

    pub fn expect_error_within(&mut self, code: u64, timeout: Duration) -> String {
        self.expect_error_event("pusher:error", code, timeout)
    }

    /// The same for a Protocol V2 socket: `sockudo:error`.
    pub fn expect_v2_error(&mut self, code: u64) -> String {
        self.expect_error_event("sockudo:error", code, T)
    }

    fn expect_error_event(&mut self, event: &str, code: u64, timeout: Duration) -> String {
        let f = self.expect_event_within(event, timeout);
        assert!(f.get("channel").is_none(), "{event} must not carry a channel: {f}");
        assert!(f["data"].is_object(), "pusher:error data must be an object: {f}");
        assert_eq!(f["data"]["code"], code, "wrong error code in {f}");
        f["data"]["message"].as_str().expect("error message").to_string()
    }

    /// Nothing at all (no event, no close) arrives within `d`.
    pub fn expect_no_frame(&mut self, d: Duration) {
        if let Some(f) = self.recv(d) {
            panic!("expected no frame for {d:?}, got {f:?}");
        }
    }

    /// The next frame (native pings/pongs skipped) must be a close frame with this code. Returns
    /// the reason.
    pub fn expect_close(&mut self, code: u16) -> String {
        self.expect_close_within(code, T)
    }

    pub fn expect_close_within(&mut self, code: u16, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())) {
                Some(Frame::Ping(_)) | Some(Frame::Pong(_)) => continue,
                Some(Frame::Close(Some((c, reason)))) => {
                    assert_eq!(c, code, "wrong close code (reason {reason:?})");
                    return reason;
                }
                other => panic!("expected close {code}, got {other:?}"),
            }
        }
    }

    /// `pusher:error` with `code` and then a close frame with the same code
    /// (`docs/protocol/pusher.md#close-sequence`): the error frame is sent once. Returns the
    /// error message.
    pub fn expect_fatal(&mut self, code: u16) -> String {
        self.expect_fatal_within(code, T)
    }

    pub fn expect_fatal_within(&mut self, code: u16, timeout: Duration) -> String {
        let msg = self.expect_error_within(code as u64, timeout);
        let reason = self.expect_close(code);
        assert_eq!(reason, msg, "close reason should repeat the error message");
        msg
    }

    /// The connection is still usable: `pusher:ping` is answered by `pusher:pong` as the very
    /// next frame (`docs/protocol/pusher.md#activity-timeout-and-heartbeat`).
    pub fn assert_alive(&mut self) {
        self.send_json(&json!({"event": "pusher:ping", "data": {}}));
        let f = self.recv_json(T);
        assert_eq!(f, json!({"event": "pusher:pong"}), "expected exactly a pusher:pong");
    }

    /// Sends a close frame (1000) so the server cleans up now.
    pub fn close(mut self) {
        let _ = self.ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }));
        let _ = self.ws.flush();
        // Let the server see it before the TCP stream goes away.
        let _ = self.recv(Duration::from_millis(500));
    }

    // -- Pusher helpers ---------------------------------------------------------------------

    /// Sends `pusher:subscribe` with optional `auth` and `channel_data`.
    pub fn send_subscribe(&mut self, channel: &str, auth: Option<&str>, channel_data: Option<&str>) {
        let mut data = json!({ "channel": channel });
        if let Some(a) = auth {
            data["auth"] = a.into();
        }
        if let Some(cd) = channel_data {
            data["channel_data"] = cd.into();
        }
        self.send_json(&json!({"event": "pusher:subscribe", "data": data}));
    }

    /// Expects `subscription_succeeded` for `channel`; returns its parsed `data`.
    pub fn expect_subscribed(&mut self, channel: &str) -> Value {
        let f = self.expect_channel_event("pusher_internal:subscription_succeeded", channel);
        let data = f["data"].as_str().unwrap_or_else(|| panic!("subscription_succeeded data must be a string: {f}"));
        serde_json::from_str(data).unwrap()
    }

    /// Public (or cache) channel.
    pub fn subscribe(&mut self, channel: &str) {
        self.send_subscribe(channel, None, None);
        assert_eq!(self.expect_subscribed(channel), json!({}));
    }

    /// Private channel with a correct signature.
    pub fn subscribe_private(&mut self, channel: &str) {
        let auth = private_auth(&self.app, &self.socket_id, channel);
        self.send_subscribe(channel, Some(&auth), None);
        assert_eq!(self.expect_subscribed(channel), json!({}));
    }

    /// Presence channel with a correct signature; returns the `presence` snapshot.
    pub fn subscribe_presence(&mut self, channel: &str, channel_data: &Value) -> Value {
        self.send_presence(channel, channel_data);
        let data = self.expect_subscribed(channel);
        data["presence"].clone()
    }

    /// Sends a correctly signed presence subscribe without reading the reply.
    pub fn send_presence(&mut self, channel: &str, channel_data: &Value) {
        let cd = channel_data.to_string();
        let auth = presence_auth(&self.app, &self.socket_id, channel, &cd);
        self.send_subscribe(channel, Some(&auth), Some(&cd));
    }

    pub fn unsubscribe(&mut self, channel: &str) {
        self.send_json(&json!({"event": "pusher:unsubscribe", "data": {"channel": channel}}));
    }

    pub fn client_event(&mut self, event: &str, channel: &str, data: Value) {
        self.send_json(&json!({"event": event, "channel": channel, "data": data}));
    }

    /// Sends `pusher:signin` with the given `user_data` string and `auth`.
    pub fn send_signin(&mut self, user_data: &str, auth: &str) {
        self.send_json(&json!({"event": "pusher:signin", "data": {"user_data": user_data, "auth": auth}}));
    }

    /// Correctly signed sign-in; does not read the reply.
    pub fn send_signin_ok(&mut self, user_data: &Value) -> String {
        let ud = user_data.to_string();
        let auth = signin_auth(&self.app, &self.socket_id, &ud);
        self.send_signin(&ud, &auth);
        ud
    }

    /// Correctly signed sign-in; expects `pusher:signin_success` echoing `user_data`.
    pub fn signin(&mut self, user_data: &Value) {
        let ud = self.send_signin_ok(user_data);
        let f = self.expect_event("pusher:signin_success");
        assert_eq!(f["data"]["user_data"], ud.as_str(), "signin_success must echo user_data: {f}");
    }
}

fn parse_frame(bytes: &[u8]) -> Frame {
    match serde_json::from_slice(bytes) {
        Ok(v) => Frame::Json(v),
        Err(_) => Frame::Other(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// Parses a frame's `data` string as JSON (channel events carry JSON text).
/// A Protocol V2 socket (`?protocol=2`) past its connection_established.
pub fn v2_connected(s: &Server) -> Client {
    let mut c = s.connect_raw("/app/app-key?protocol=2", None);
    let f = c.recv_json(T);
    assert_eq!(f["event"], "sockudo:connection_established", "{f}");
    c.socket_id = data_json(&f)["socket_id"].as_str().unwrap().to_owned();
    c
}

/// Subscribes a V2 socket and returns the subscription_succeeded frame.
pub fn v2_subscribe(c: &mut Client, channel: &str) -> Value {
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": channel}}));
    let f = c.recv_json(T);
    assert_eq!(f["event"], "sockudo_internal:subscription_succeeded", "{f}");
    f
}

/// Subscribes a V2 socket to a presence channel with a correct signature; returns the
/// subscription_succeeded data (`presence` and `attach_serial`).
pub fn v2_subscribe_presence(c: &mut Client, channel: &str, channel_data: &Value) -> Value {
    let cd = channel_data.to_string();
    let auth = presence_auth(&c.app, &c.socket_id, channel, &cd);
    c.send_json(&json!({"event": "sockudo:subscribe", "data": {"channel": channel, "auth": auth, "channel_data": cd}}));
    let f = c.expect_channel_event("sockudo_internal:subscription_succeeded", channel);
    data_json(&f)
}

/// Sends `sockudo:resume` with these `channel_positions`.
pub fn resume(c: &mut Client, positions: Value) {
    c.send_json(&json!({"event": "sockudo:resume", "data": {"channel_positions": positions}}));
}

/// Reads up to `sockudo:resume_success` and returns its data.
pub fn resume_success(c: &mut Client) -> Value {
    let f = c.expect_event("sockudo:resume_success");
    assert!(f.get("channel").is_none(), "{f}");
    data_json(&f)
}

/// Nothing more reaches a V2 socket before the answer to a `sockudo:ping` sent now (frames
/// queued for it earlier arrive first).
pub fn v2_drained(c: &mut Client) {
    c.send_json(&json!({"event": "sockudo:ping"}));
    c.expect_event("sockudo:pong");
}

/// The next frame of a V2 socket, which must be event `event` (skipping nothing: asserts the
/// order).
pub fn next_frame(c: &mut Client, event: &str) -> Value {
    let f = c.recv_json(T);
    assert_eq!(f["event"], event, "{f}");
    f
}

/// A V2 socket signed in (`sockudo:signin`) as `user` with these sign-in `capabilities`
/// (`docs/protocol/v2.md#actor-binding`).
pub fn signed_in_v2(s: &Server, user: &str, capabilities: Value) -> Client {
    let mut c = v2_connected(s);
    let ud = json!({"id": user, "capabilities": capabilities}).to_string();
    let auth = signin_auth(&c.app, &c.socket_id, &ud);
    c.send_json(&json!({"event": "sockudo:signin", "data": {"user_data": ud, "auth": auth}}));
    c.expect_event("sockudo:signin_success");
    c
}

/// Publishes a mutable message (`docs/protocol/v2.md#versioned-creates`) and returns the
/// create's `message_serial` and its whole `info` acknowledgement entry.
pub fn create(s: &Server, channel: &str, name: &str, data: &str) -> (String, Value) {
    let ack = s.publish_ok(json!({"name": name, "channel": channel, "data": data, "info": "subscription_count"}));
    let entry = ack["channels"][channel].clone();
    (entry["message_serial"].as_str().unwrap_or_else(|| panic!("no message_serial: {ack}")).to_owned(), entry)
}

/// `/apps/{id}/channels/{channel}/messages/{message_serial}{rest}`.
pub fn messages_path(s: &Server, channel: &str, serial: &str, rest: &str) -> String {
    s.app.path(&format!("/channels/{channel}/messages/{}{rest}", urlencode(serial)))
}

pub fn data_json(frame: &Value) -> Value {
    let s = frame["data"].as_str().unwrap_or_else(|| panic!("data must be a string: {frame}"));
    serde_json::from_str(s).unwrap_or_else(|e| panic!("data is not JSON ({e}): {frame}"))
}

/// A hand-made client frame (RFC 6455, section 5.2). `masked` uses a fixed key.
pub fn raw_frame(fin: bool, rsv1: bool, opcode: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![(fin as u8) << 7 | (rsv1 as u8) << 6 | (opcode & 0x0f)];
    let mask_bit = (masked as u8) << 7;
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Signatures: `docs/protocol/pusher.md#authorization-signatures`, `docs/protocol/http-api.md#request-signing`
// ---------------------------------------------------------------------------------------------

/// Lowercase hex HMAC-SHA256.
pub fn hmac_hex(secret: &str, msg: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(msg.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `key:HMAC(socket_id:channel)` (`docs/protocol/pusher.md#private-channel-signature`).
pub fn private_auth(app: &App, socket_id: &str, channel: &str) -> String {
    format!("{}:{}", app.key, hmac_hex(&app.secret, &format!("{socket_id}:{channel}")))
}

/// `key:HMAC(socket_id:channel:channel_data)`
/// (`docs/protocol/pusher.md#presence-channel-signature`).
pub fn presence_auth(app: &App, socket_id: &str, channel: &str, channel_data: &str) -> String {
    format!("{}:{}", app.key, hmac_hex(&app.secret, &format!("{socket_id}:{channel}:{channel_data}")))
}

/// `key:HMAC(socket_id::user::user_data)` (`docs/protocol/pusher.md#sign-in-signature`).
pub fn signin_auth(app: &App, socket_id: &str, user_data: &str) -> String {
    format!("{}:{}", app.key, hmac_hex(&app.secret, &format!("{socket_id}::user::{user_data}")))
}

pub fn md5_hex(body: &[u8]) -> String {
    hex::encode(Md5::digest(body))
}

/// REST signature (`docs/protocol/http-api.md#signing-steps`): keys lower-cased, sorted,
/// `auth_signature` left out.
pub fn api_signature(secret: &str, method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut canon: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k.to_lowercase() != "auth_signature")
        .map(|(k, v)| (k.to_lowercase(), v.clone()))
        .collect();
    canon.sort();
    let query: Vec<String> = canon.iter().map(|(k, v)| format!("{k}={v}")).collect();
    hmac_hex(secret, &format!("{}\n{}\n{}", method.to_uppercase(), path, query.join("&")))
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// The auth parameters (`docs/protocol/http-api.md#request-signing`) for a request,
/// `auth_signature` last. `body` = Some for POST.
pub fn auth_params(
    app: &App,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&[u8]>,
    timestamp: i64,
) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    params.push(("auth_key".into(), app.key.clone()));
    params.push(("auth_timestamp".into(), timestamp.to_string()));
    params.push(("auth_version".into(), "1.0".into()));
    if method.eq_ignore_ascii_case("POST") {
        params.push(("body_md5".into(), md5_hex(body.unwrap_or_default())));
    }
    let sig = api_signature(&app.secret, method, path, &params);
    params.push(("auth_signature".into(), sig));
    params
}

/// `path?query` signed at `timestamp`.
pub fn signed_target(
    app: &App,
    method: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&[u8]>,
    timestamp: i64,
) -> String {
    format!("{path}?{}", query_string(&auth_params(app, method, path, query, body, timestamp)))
}

pub fn query_string(params: &[(String, String)]) -> String {
    let parts: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v))).collect();
    parts.join("&")
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {} {}", self.status, self.text()))
    }
    /// Asserts the status and the error body `{"error","code","status"}`
    /// (`docs/protocol/http-api.md#error-responses`).
    pub fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "body: {}", self.text());
        let j = self.json();
        assert_eq!(j["code"], code, "body: {j}");
        assert_eq!(j["status"], status, "body: {j}");
        assert!(j["error"].is_string(), "body: {j}");
        j
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct HttpConn {
    reader: BufReader<TcpStream>,
    port: u16,
}

impl HttpConn {
    pub fn open(port: u16) -> std::io::Result<HttpConn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        // Head and body go out in two writes: without this, Nagle holds the body until the
        // server's delayed ACK of the head (40 ms per request on Linux).
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(HttpConn { reader: BufReader::new(s), port })
    }

    pub fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::io::Result<Response> {
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n", self.port);
        for (k, v) in headers {
            head += &format!("{k}: {v}\r\n");
        }
        if let Some(b) = body {
            head += &format!("Content-Length: {}\r\n", b.len());
        }
        head += "\r\n";
        let s = self.reader.get_mut();
        s.write_all(head.as_bytes())?;
        // The server may answer (e.g. 413) and close before the whole body is written; still
        // try to read its response.
        if let Some(b) = body {
            let _ = s.write_all(b);
        }
        self.read_response(method == "HEAD")
    }

    fn read_response(&mut self, head_only: bool) -> std::io::Result<Response> {
        let r = &mut self.reader;
        let mut line = String::new();
        r.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidData, format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let get = |n: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
        let mut body = Vec::new();
        if head_only || status == 204 || status == 304 {
        } else if let Some(len) = get("content-length") {
            body.resize(len.parse().unwrap(), 0);
            r.read_exact(&mut body)?;
        } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                line.clear();
                r.read_line(&mut line)?;
                let n = usize::from_str_radix(line.trim().split(';').next().unwrap(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        } else {
            r.read_to_end(&mut body)?;
        }
        Ok(Response { status, headers, body })
    }
}

/// One request on a fresh connection.
pub fn try_http(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    HttpConn::open(port)?.request(method, target, headers, body)
}

pub fn http(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Response {
    try_http(port, method, target, headers, body).unwrap_or_else(|e| panic!("{method} {target}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// Every sample of one scrape, keyed `name{labels}` as printed; checks the text format on the
/// way: each sample belongs to a family announced by `# HELP` and `# TYPE` lines before it.
pub fn scrape(port: u16) -> HashMap<String, f64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics port");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    let mut typed: HashMap<String, String> = HashMap::new();
    let mut samples = HashMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(typed.insert(name.to_owned(), kind.to_owned()).is_none(), "family {name} announced twice");
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample without value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| typed.get(*f).is_some_and(|k| k == "histogram"))
            .unwrap_or(name);
        assert!(typed.contains_key(family), "sample of unannounced family: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .unwrap_or_else(|| panic!("labels: {line}"));
                for pair in inner.split("\",") {
                    let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("label {pair} in {line}"));
                    assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "label name {k}");
                    assert!(!v.contains('\n'));
                }
            }
        }
        assert!(samples.insert(series.to_owned(), value).is_none(), "duplicate series {series}");
    }
    samples
}

pub fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    let a = *after.get(series).unwrap_or_else(|| panic!("no series {series}"));
    a - before.get(series).copied().unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    // The test vectors of `docs/protocol/pusher.md#test-vectors`,
    // `docs/protocol/http-api.md#signature-test-vector` and `docs/protocol/http-api.md#webhook-requests`.
    #[test]
    fn signature_test_vectors() {
        let app = App::dev();
        assert_eq!(
            private_auth(&app, "1234.5678", "private-foo"),
            "app-key:d7d4254b75e2b60944b91bc92e916d56da84c4835011f5aa3c59a8e7f6e8b65d"
        );
        assert_eq!(
            presence_auth(&app, "1234.5678", "presence-room", r#"{"user_id":"42","user_info":{"name":"Ada"}}"#),
            "app-key:7eae5778a7edfe839d7a03f042293004e8cc0798fcf98a63b02be7f19f8bef86"
        );
        assert_eq!(
            signin_auth(&app, "1234.5678", r#"{"id":"42","watchlist":["7"]}"#),
            "app-key:2fedcde41e003e0e5faad8104cab08e9e93f813b527dc2bc1d42ca0f1c2913a4"
        );
        let body = br#"{"name":"order.created","channel":"orders","data":"{\"id\":1}"}"#;
        assert_eq!(md5_hex(body), "67ca2151445b18af0a3f01aba9ce65d8");
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        let params = auth_params(&app, "POST", "/apps/app-id/events", &[], Some(body), 1_700_000_000);
        assert_eq!(params.last().unwrap().1, "d96fbf3f259ab358a0a5d1b89ae941437f91495d3d8fc64e36f8c4a1f4697371");
        assert_eq!(
            hmac_hex(
                "app-secret",
                r#"{"time_ms":1700000000000,"events":[{"name":"channel_occupied","channel":"orders"}]}"#
            ),
            "c1b112fcc5fc333a8453bb4b62c1a43094f2126d3c3f4ed442a92f5cda54f8e4"
        );
    }

    #[test]
    fn api_signature_ignores_key_case_and_order() {
        let p = |v: &[(&str, &str)]| v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect::<Vec<_>>();
        let a = api_signature("s", "get", "/x", &p(&[("b", "2"), ("A", "1")]));
        let b = api_signature("s", "GET", "/x", &p(&[("a", "1"), ("b", "2"), ("auth_signature", "zz")]));
        assert_eq!(a, b);
    }

    #[test]
    fn raw_frame_lengths() {
        assert_eq!(raw_frame(true, false, 1, false, b"hi"), vec![0x81, 2, b'h', b'i']);
        assert_eq!(raw_frame(true, false, 2, false, &[0; 200])[1], 126);
        assert_eq!(raw_frame(true, false, 2, true, &[0; 70000])[1], 0x80 | 127);
    }

    #[test]
    fn config_renders() {
        let c = config("activity_timeout = 2", &[AppConfig::dev().set("enabled", "false").namespace("chat")]);
        assert!(c.contains("enabled = false\n"));
        assert!(!c.contains("enabled = true"));
        assert!(c.contains("[[apps.channel_namespaces]]\nname = \"chat\"\n"));
    }
}
