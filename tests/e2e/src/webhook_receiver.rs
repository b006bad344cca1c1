//! A webhook receiver for tests: a minimal HTTP/1.1 server on 127.0.0.1 that records every
//! request and answers with scripted statuses, and helpers to configure webhooks.

use crate::{toml_str, AppConfig, QUIET};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound for a webhook to arrive (batch window, re-check delay and retries included).
pub const ARRIVE: Duration = Duration::from_secs(15);

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Hook {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
}

impl Hook {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
    pub fn events(&self) -> Vec<Value> {
        self.json()["events"].as_array().expect("events array").clone()
    }
}

#[derive(Default)]
struct State {
    hooks: Vec<Hook>,
    /// Statuses to answer per path, in order; then 200.
    script: HashMap<String, VecDeque<u16>>,
}

/// A minimal HTTP/1.1 server on 127.0.0.1 that records every request (keep-alive included).
#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, state));
            }
        });
        Receiver { port, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The next requests to `path` are answered with these statuses.
    pub fn answer(&self, path: &str, statuses: &[u16]) {
        self.state.lock().unwrap().script.entry(path.into()).or_default().extend(statuses);
    }

    pub fn hooks(&self, path: &str) -> Vec<Hook> {
        self.state.lock().unwrap().hooks.iter().filter(|h| h.path == path).cloned().collect()
    }

    /// Every event delivered to `path` by requests answered 2xx, with its request's arrival.
    pub fn delivered(&self, path: &str) -> Vec<(Instant, Value)> {
        self.hooks(path)
            .iter()
            .filter(|h| (200..300).contains(&h.status))
            .flat_map(|h| h.events().into_iter().map(move |e| (h.at, e)))
            .collect()
    }

    /// Polls until `done` holds for the events delivered to `path`; returns them.
    pub fn wait_for(&self, path: &str, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + ARRIVE;
        loop {
            let events: Vec<Value> = self.delivered(path).into_iter().map(|(_, e)| e).collect();
            if done(&events) {
                return events;
            }
            if Instant::now() > deadline {
                panic!("{path}: {what} did not arrive within {ARRIVE:?}; got {events:#?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the first delivered event matching `pred`; returns it and when it came.
    pub fn wait_event(&self, path: &str, pred: impl Fn(&Value) -> bool) -> (Instant, Value) {
        let deadline = Instant::now() + ARRIVE;
        loop {
            if let Some(found) = self.delivered(path).into_iter().find(|(_, e)| pred(e)) {
                return found;
            }
            if Instant::now() > deadline {
                panic!("{path}: expected event did not arrive within {ARRIVE:?}; got {:#?}", self.delivered(path));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Forgets what `path` got so far.
    pub fn clear(&self, path: &str) {
        self.state.lock().unwrap().hooks.retain(|h| h.path != path);
    }

    /// The events delivered to `path` once nothing new came for a while.
    pub fn settled(&self, path: &str) -> Vec<Value> {
        std::thread::sleep(QUIET);
        let mut n = self.hooks(path).len();
        loop {
            std::thread::sleep(QUIET);
            let now = self.hooks(path).len();
            if now == n {
                return self.delivered(path).into_iter().map(|(_, e)| e).collect();
            }
            n = now;
        }
    }
}

fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let status = {
            let mut st = state.lock().unwrap();
            let status = st.script.get_mut(&path).and_then(|q| q.pop_front()).unwrap_or(200);
            st.hooks.push(Hook { path, headers, body, at: Instant::now(), status });
            status
        };
        let resp = format!("HTTP/1.1 {status} Whatever\r\nContent-Length: 2\r\n\r\nok");
        if reader.get_mut().write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// One webhook as a TOML inline table; `extra` is more `key = value` pairs.
pub fn hook(url: &str, types: &[&str], extra: &str) -> String {
    let types: Vec<String> = types.iter().map(|t| toml_str(t)).collect();
    let extra = if extra.is_empty() { String::new() } else { format!(", {extra}") };
    format!("{{ url = {}, event_types = [{}]{extra} }}", toml_str(url), types.join(", "))
}

/// The dev app with these webhooks (TOML inline tables).
pub fn app_with(hooks: &[String]) -> AppConfig {
    AppConfig::dev().set("webhooks", &format!("[{}]", hooks.join(", ")))
}
