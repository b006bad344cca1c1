//! `appends`: mutable-message append streaming (`docs/protocol/v2.md#mutable-messages`).
//! N Protocol V2 subscribers on one channel; once they are subscribed, M messages are created
//! (signed HTTP publishes with `info`, answered with their `message_serial`), then W keep-alive
//! HTTP writers (on worker 0) append fragments ("tokens") for D s, each sending its next append
//! as soon as the previous one is answered. Writer w owns messages w, w+W, w+2W, … (one writer
//! per message: its appends are ordered); with M < W writer w appends to message w mod M, so
//! several writers append to one message at once.
//!
//! Every fragment is unique: its first 4 bytes are a token id (base64url), under which the
//! harness keeps the send time, so each receipt is timed (append → receipt) and attributed by
//! byte scans, without JSON parsing. Each subscriber keeps, per message, the count and a hash
//! of the serials it received, the last one, and its reduction (delta: create data + fragments
//! as received; full: the last frame's data) as a hash. The run fails unless every subscriber
//! received every accepted append exactly once and in serial order, and every reduction equals
//! GET latest's `item.data`, which must itself be the create data + the accepted fragments in
//! the order of their `delivery_serial`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

use mio::event::Event;
use mio::Registry;
use serde_json::Value;

use super::*;
use crate::cli::Args;
use crate::clock::{unix_secs, MS};
use crate::engine::{ConnId, FOREIGN_TOKEN_BASE};
use crate::http::{self, Answer, HttpStats, PostWriter, Requester};
use crate::pusher::{self, number_after, string_after, Kind, Protocol};
use crate::signing::{self, Signer};
use crate::stats::{add, inc, phase, set, Counters};
use crate::ws::handshake::find;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// An append frame carries its fragment.
    Delta,
    /// An append frame carries the whole text so far (`append_mode=full`).
    Full,
}

#[derive(Clone, Debug)]
pub struct Opts {
    pub subscribers: usize,
    pub messages: usize,
    pub writers: usize,
    pub duration_s: f64,
    /// Bytes per fragment (the first 4 name it).
    pub fragment: usize,
    pub mode: Mode,
    pub drain_s: f64,
    pub setup_timeout_s: f64,
    /// The channel's name starts with it (`private-ai-…`: an AI channel, whose appends the
    /// server rolls up; `private-` channels are subscribed with a signature).
    pub channel_prefix: String,
}

fn parse(a: &Args) -> Result<Opts, String> {
    let mode = match a.str("append-mode", "delta").as_str() {
        "delta" => Mode::Delta,
        "full" => Mode::Full,
        other => return Err(format!("--append-mode: delta or full, not {other:?}")),
    };
    let o = Opts {
        subscribers: a.num("subscribers", 100, 10)?,
        messages: a.num("messages", 1, 2)?,
        writers: a.num("writers", 4, 2)?,
        duration_s: a.num("duration", 10.0, 2.0)?,
        fragment: a.num("fragment", 4, 4)?,
        mode,
        drain_s: a.num("drain", 5.0, 3.0)?,
        setup_timeout_s: a.num("setup-timeout", 120.0, 30.0)?,
        channel_prefix: a.str("channel-prefix", "lt-appends-"),
    };
    if o.subscribers == 0 {
        return Err("--subscribers: at least 1".into());
    }
    if !(1..=100_000).contains(&o.messages) {
        return Err("--messages: 1..=100000".into());
    }
    if !(1..=1024).contains(&o.writers) {
        return Err("--writers: 1..=1024".into());
    }
    if !(TOKEN_LEN..=8192).contains(&o.fragment) {
        return Err(format!("--fragment: {TOKEN_LEN}..=8192 bytes (the first {TOKEN_LEN} name the append)"));
    }
    if o.duration_s <= 0.0 {
        return Err("--duration must be positive".into());
    }
    Ok(o)
}

// ---- fragments, hashes ----

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
/// Bytes of a fragment that name it: 4 base64url digits, 2^24 tokens a run.
const TOKEN_LEN: usize = 4;
const MAX_TOKENS: u32 = 1 << 24;

const DECODE: [u8; 256] = {
    let mut t = [255u8; 256];
    let mut i = 0;
    while i < 64 {
        t[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Appends fragment `token`: its 4-digit name, then lowercase letters up to `len` bytes (no
/// character needs escaping in JSON, so frames are scanned as they are).
fn push_fragment(out: &mut Vec<u8>, token: u32, len: usize) {
    for i in (0..TOKEN_LEN).rev() {
        out.push(ALPHABET[((token >> (6 * i)) & 63) as usize]);
    }
    out.extend((TOKEN_LEN..len).map(|k| b'a' + ((token as usize + k) % 26) as u8));
}

/// The token a fragment starts with.
fn decode_token(frag: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &b in frag.get(..TOKEN_LEN)? {
        let d = DECODE[b as usize];
        if d == 255 {
            return None;
        }
        v = (v << 6) | d as u32;
    }
    Some(v)
}

/// The data each message is created with.
fn create_data(m: usize) -> String {
    format!("lt{m}:")
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, continued from `h`: the delta reduction hashes create data and fragments as they
/// come, and equals the hash of their concatenation.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A hash of a whole text, 8 bytes a step (a full-mode frame carries the whole text).
fn whole_hash(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = FNV_OFFSET ^ (bytes.len() as u64).wrapping_mul(K);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().expect("8 bytes"))).wrapping_mul(K);
        h ^= h >> 29;
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = (h ^ u64::from_le_bytes(tail)).wrapping_mul(K);
    h ^ (h >> 32)
}

/// Mixes a serial into the order-independent sum that names a set of serials.
fn mix(serial: u64) -> u64 {
    let mut z = serial.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Percent-encodes a path segment (everything but the unreserved characters), as it is sent
/// and signed.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---- state shared by the workers ----

const SEG: usize = 1 << 16;

/// Send time of each token (monotonic ns), written by the writers' thread, read by every
/// worker on receipt: segments of 64Ki slots allocated as the tokens reach them.
struct SendTimes {
    segs: Vec<OnceLock<Box<[AtomicU64]>>>,
}

impl SendTimes {
    fn new() -> SendTimes {
        SendTimes { segs: (0..MAX_TOKENS as usize / SEG).map(|_| OnceLock::new()).collect() }
    }
    fn set(&self, token: u32, ns: u64) {
        let seg = self.segs[token as usize / SEG].get_or_init(|| (0..SEG).map(|_| AtomicU64::new(0)).collect());
        seg[token as usize % SEG].store(ns, Relaxed);
    }
    fn get(&self, token: u32) -> Option<u64> {
        let seg = self.segs.get(token as usize / SEG)?.get()?;
        Some(seg[token as usize % SEG].load(Relaxed)).filter(|&t| t != 0)
    }
}

/// The created messages: `message_serial` by index, and the index of each.
struct Messages {
    serials: Vec<String>,
    index: HashMap<Vec<u8>, u32>,
}

struct Plan {
    opts: Arc<Opts>,
    channel: String,
    /// Set by the coordinator before the RUN phase.
    messages: OnceLock<Messages>,
    times: SendTimes,
}

/// What one subscriber saw of one message.
#[derive(Clone, Copy, Debug, Default)]
struct Track {
    /// Appends received (a rolled-up frame carries several).
    count: u64,
    /// Frames received.
    frames: u64,
    /// Highest serial received.
    last: u64,
    /// Σ mix(serial) over the serials received (every accepted serial, unless rolled up).
    serials: u64,
    /// The reduction: its hash (`fnv` in delta mode, `whole_hash` in full mode) and length.
    text: u64,
    text_len: u64,
}

impl Track {
    fn new(mode: Mode, create: &[u8]) -> Track {
        Track { text: text_hash(mode, create), text_len: create.len() as u64, ..Track::default() }
    }
}

/// The reduction hash of a whole text, as a subscriber of `mode` computes it.
fn text_hash(mode: Mode, text: &[u8]) -> u64 {
    match mode {
        Mode::Delta => fnv(FNV_OFFSET, text),
        Mode::Full => whole_hash(text),
    }
}

// ---- the writers ----

/// The W writers: one keep-alive connection each, one append in flight each.
struct Appender {
    req: Requester,
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    t: usize,
    /// Per writer: the messages it owns, the next (round-robin) and what is in flight
    /// (message, token).
    owned: Vec<Vec<u32>>,
    next: Vec<usize>,
    inflight: Vec<Option<(u32, u32)>>,
    /// Per message: the path of its append, as sent and signed.
    paths: Vec<String>,
    next_token: u32,
    /// Accepted appends: (message, delivery_serial, token).
    accepted: Vec<(u32, u64, u32)>,
    /// 200 answers without `"status":"applied"` and a `delivery_serial`.
    odd_answers: u64,
    post: PostWriter,
    app_id: String,
    body: Vec<u8>,
    request: Vec<u8>,
}

/// The messages writer `w` of `writers` owns.
fn owned(w: usize, writers: usize, messages: usize) -> Vec<u32> {
    if messages >= writers {
        (w..messages).step_by(writers).map(|m| m as u32).collect()
    } else {
        vec![(w % messages) as u32]
    }
}

impl Appender {
    fn counters(&self) -> &Counters {
        &self.shared.workers[self.t]
    }

    /// Starts an append on every idle writer while the RUN phase lasts.
    fn fill(&mut self, now: u64) {
        if self.shared.phase() != phase::RUN {
            return;
        }
        let end = self.shared.phase_started() + (self.plan.opts.duration_s * SEC as f64) as u64;
        if now >= end || self.next_token >= MAX_TOKENS {
            return;
        }
        for i in 0..self.req.connections() {
            if self.req.idle(i) {
                self.send(i);
            }
        }
        set(&self.shared.workers[self.t].publish_inflight, self.req.inflight() as u64);
    }

    fn send(&mut self, i: usize) {
        let Some(msgs) = self.plan.messages.get() else {
            return;
        };
        if self.paths.is_empty() {
            let ch = encode_segment(&self.plan.channel);
            self.paths = msgs
                .serials
                .iter()
                .map(|s| format!("/apps/{}/channels/{ch}/messages/{}/append", self.app_id, encode_segment(s)))
                .collect();
        }
        if self.next_token >= MAX_TOKENS {
            return;
        }
        let mine = &self.owned[i];
        let m = mine[self.next[i] % mine.len()];
        self.next[i] += 1;
        let token = self.next_token;
        self.next_token += 1;
        let now = crate::clock::now_ns();
        self.body.clear();
        self.body.extend_from_slice(b"{\"data\":\"");
        push_fragment(&mut self.body, token, self.plan.opts.fragment);
        self.body.extend_from_slice(b"\"}");
        self.request.clear();
        self.post.write(&mut self.request, &self.paths[m as usize], &self.body, now);
        self.plan.times.set(token, crate::clock::now_ns());
        if self.req.send(i, &self.request) {
            self.inflight[i] = Some((m, token));
            inc(&self.counters().publish_requests);
        }
    }

    fn on_event(&mut self, registry: &Registry, ev: &Event) {
        let Appender { req, inflight, accepted, odd_answers, shared, t, .. } = self;
        let c = &shared.workers[*t];
        req.on_event(registry, ev, &mut |i, answer| {
            let Some((m, token)) = inflight[i].take() else {
                return;
            };
            match answer {
                Answer::Status(200, body) => {
                    let serial = number_after(body, b"\"delivery_serial\":");
                    match serial.filter(|_| find(body, b"\"status\":\"applied\"").is_some()) {
                        Some(serial) => {
                            accepted.push((m, serial, token));
                            inc(&c.events_accepted);
                        }
                        None => {
                            *odd_answers += 1;
                            inc(&c.events_rejected);
                        }
                    }
                }
                Answer::Status(..) => inc(&c.events_rejected),
                Answer::Lost => inc(&c.events_unanswered),
            }
        });
        self.fill(crate::clock::now_ns());
        set(&self.counters().publish_inflight, self.req.inflight() as u64);
    }
}

// ---- the subscribers ----

struct Worker {
    socks: Sockets,
    plan: Arc<Plan>,
    /// Per local socket, per message.
    tracks: Vec<Vec<Track>>,
    tally: Tally,
    buf: Vec<u8>,
    appender: Option<Appender>,
    /// Signs subscribes to `private-` channels.
    signer: Signer,
    key: String,
}

pub struct WorkerResult {
    tally: Tally,
    /// The tracks of the sockets that subscribed.
    tracks: Vec<Vec<Track>>,
    accepted: Vec<(u32, u64, u32)>,
    odd_answers: u64,
    statuses: Vec<(u16, u64)>,
    reconnects: u64,
    tokens_exhausted: bool,
}

impl Worker {
    /// One `sockudo:message.append` frame.
    fn on_append(&mut self, l: usize, text: &[u8]) {
        let now = crate::clock::now_ns();
        let c = self.socks.counters();
        add(&c.append_bytes, text.len() as u64);
        inc(&c.append_frames);
        let attributed = (|| {
            let msgs = self.plan.messages.get()?;
            let m = *msgs.index.get(string_after(text, b"\"sockudo_message_serial\":")?)?;
            let (_, serial) = pusher::v2_position(text)?;
            let data = string_after(text, b"\"data\":")?;
            Some((m, serial, data))
        })();
        let Some((m, serial, data)) = attributed else {
            inc(&c.unknown_frames);
            return;
        };
        let (mode, f) = (self.plan.opts.mode, self.plan.opts.fragment);
        let tr = &mut self.tracks[l][m as usize];
        // The fragments this frame brings: one, or several where the server rolled them up.
        let new = match mode {
            Mode::Delta => data,
            Mode::Full => data.get(tr.text_len as usize..).unwrap_or_default(),
        };
        if new.is_empty() || new.len() % f != 0 {
            inc(&c.unknown_frames);
            return;
        }
        for frag in new.chunks(f) {
            match decode_token(frag).and_then(|tok| self.plan.times.get(tok)) {
                Some(sent) => record(&mut self.tally.hist, now.saturating_sub(sent)),
                None => inc(&c.unknown_frames),
            }
        }
        let tokens = (new.len() / f) as u64;
        if serial == tr.last {
            inc(&c.duplicated);
        } else if serial < tr.last {
            inc(&c.reordered);
        }
        tr.last = tr.last.max(serial);
        tr.count += tokens;
        tr.frames += 1;
        tr.serials = tr.serials.wrapping_add(mix(serial));
        match mode {
            Mode::Delta => {
                tr.text = fnv(tr.text, data);
                tr.text_len += data.len() as u64;
            }
            Mode::Full => {
                tr.text = whole_hash(data);
                tr.text_len = data.len() as u64;
            }
        }
        add(&c.delivered, tokens);
    }
}

impl Driver for Worker {
    fn tick(&mut self, io: &mut Engine, now: u64) -> Option<u64> {
        let ph = self.socks.shared.phase();
        if ph == phase::DONE {
            return None;
        }
        if let Some(a) = self.appender.as_mut() {
            a.req.tick(io.registry(), now);
            a.fill(now);
        }
        if ph == phase::SETUP {
            self.socks.open_more(io);
        }
        Some(now + 20 * MS)
    }

    fn on_established(&mut self, io: &mut Engine, id: ConnId, tag: u32) {
        self.socks.established(tag);
        self.buf.clear();
        let channel = &self.plan.channel;
        let auth = channel
            .starts_with("private-")
            .then(|| signing::private_auth(&self.signer, &self.key, io.socket_id(id), channel));
        pusher::subscribe(&mut self.buf, Protocol::V2, channel, auth.as_deref(), None);
        io.send_text(id, &self.buf);
    }

    fn on_event(&mut self, _io: &mut Engine, _id: ConnId, tag: u32, kind: Kind, text: &[u8]) {
        match kind {
            Kind::OtherSystem if pusher::event_name(text) == Some(&b"sockudo:message.append"[..]) => {
                self.on_append(self.socks.local(tag), text)
            }
            Kind::Channel => inc(&self.socks.counters().creates_received),
            Kind::SubscriptionSucceeded => {
                self.socks.subscribed(tag);
            }
            Kind::Error | Kind::SubscriptionError => self.socks.error(tag),
            _ => {}
        }
    }

    fn on_closed(&mut self, _io: &mut Engine, tag: u32, cause: Cause) {
        self.socks.closed(tag, cause, &mut self.tally.causes);
    }

    fn on_foreign(&mut self, io: &mut Engine, ev: &Event) {
        if let Some(a) = self.appender.as_mut() {
            a.on_event(io.registry(), ev);
        }
    }
}

impl Finish for Worker {
    type Output = WorkerResult;
    fn finish(self) -> WorkerResult {
        // A socket that subscribed and then closed counts as closed_unexpectedly; its track
        // is kept, so what it missed shows too.
        let tracks = self
            .socks
            .state
            .iter()
            .zip(self.tracks)
            .filter(|(s, tr)| **s == Sock::Subscribed || (**s == Sock::Gone && tr.iter().any(|t| t.count > 0)))
            .map(|(_, tr)| tr)
            .collect();
        let (accepted, odd_answers, statuses, reconnects, tokens_exhausted) = match self.appender {
            Some(a) => {
                let HttpStats { statuses, reconnects } = a.req.stats().clone();
                (a.accepted, a.odd_answers, statuses, reconnects, a.next_token >= MAX_TOKENS)
            }
            None => Default::default(),
        };
        WorkerResult { tally: self.tally, tracks, accepted, odd_answers, statuses, reconnects, tokens_exhausted }
    }
}

// ---- the coordinator ----

/// A signed REST request on a fresh connection: the status and the body.
fn rest(
    common: &Common,
    target: &Target,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), String> {
    let (mut query, mut scratch) = (Vec::new(), Vec::new());
    let signer = Signer::new(&common.secret);
    let mp = (method.as_bytes(), path.as_bytes());
    signing::push_signed_query(&mut query, &mut scratch, &signer, &common.key, mp, unix_secs(), body);
    let url = format!("{path}?{}", String::from_utf8(query).expect("ascii"));
    http::request_blocking(target.addr, &target.host_header, method, &url, body.unwrap_or(b""))
}

/// Creates the messages (publishes with `info`, one at a time): their `message_serial`s.
fn create_messages(common: &Common, target: &Target, channel: &str, n: usize) -> Result<Messages, String> {
    let path = format!("/apps/{}/events", common.app_id);
    let mut serials = Vec::with_capacity(n);
    for m in 0..n {
        let body = serde_json::json!({"name": "lt", "channel": channel, "data": create_data(m), "info": ""});
        let body = serde_json::to_vec(&body).expect("json");
        let (status, answer) = rest(common, target, "POST", &path, Some(&body))?;
        let v: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        let Some(serial) = v["channels"][channel]["message_serial"].as_str().filter(|_| status == 200) else {
            let answer = String::from_utf8_lossy(&answer);
            let hint = "no message_serial: are versioned messages and history on?";
            return Err(format!("creating message {m}: HTTP {status} {answer} ({hint})"));
        };
        serials.push(serial.to_string());
    }
    let index = serials.iter().enumerate().map(|(i, s)| (s.as_bytes().to_vec(), i as u32)).collect();
    Ok(Messages { serials, index })
}

/// GET latest of a message: its `item.data`.
fn latest_data(common: &Common, target: &Target, channel: &str, serial: &str) -> Result<String, String> {
    let path =
        format!("/apps/{}/channels/{}/messages/{}", common.app_id, encode_segment(channel), encode_segment(serial));
    let (status, body) = rest(common, target, "GET", &path, None)?;
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    match v["item"]["data"].as_str() {
        Some(d) if status == 200 => Ok(d.to_string()),
        _ => Err(format!("HTTP {status} {}", String::from_utf8_lossy(&body))),
    }
}

/// Per-second accepted appends over the seconds wholly inside the RUN phase: the median.
fn median_rate(samples: &[Sample]) -> Option<f64> {
    let mut rates: Vec<f64> = samples
        .windows(2)
        .filter(|w| w[0].phase == phase::RUN && w[1].phase == phase::RUN && w[0].t > 0.0)
        .map(|w| rate(&w[0], &w[1], |t| t.events_accepted))
        .collect();
    if rates.is_empty() {
        return None;
    }
    rates.sort_by(f64::total_cmp);
    let n = rates.len();
    Some(if n % 2 == 1 { rates[n / 2] } else { (rates[n / 2 - 1] + rates[n / 2]) / 2.0 })
}

pub fn run(args: &Args, common: &Common) -> Outcome {
    if common.proto != Protocol::V2 && args.given().iter().any(|(k, _)| k == "protocol") {
        return Err("appends speaks Protocol V2 (mutable messages): --protocol 2".into());
    }
    let common = &Common { proto: Protocol::V2, ..common.clone() };
    let (opts, mut target, shared, mut monitor) = setup(args, common, parse, |_| 0)?;
    if opts.mode == Mode::Full {
        target.path += "&append_mode=full";
    }
    // A fresh channel each run: its stream holds only this run's messages.
    let channel = format!("{}{:08x}", opts.channel_prefix, fastrand::u32(..));
    let plan = Arc::new(Plan { opts: opts.clone(), channel, messages: OnceLock::new(), times: SendTimes::new() });
    let threads = common.threads;
    let concurrency = (common.concurrency / threads).max(1);

    let handles = {
        let (plan, shared, c, addr) = (plan.clone(), shared.clone(), common.clone(), target.addr);
        spawn_workers(threads, &target, move |t, registry: &Registry| {
            let o = &plan.opts;
            let socks = Sockets::new(t, threads, concurrency, shared.clone(), o.subscribers);
            let initial: Vec<Track> = (0..o.messages).map(|m| Track::new(o.mode, create_data(m).as_bytes())).collect();
            Worker {
                tracks: vec![initial; socks.state.len()],
                socks,
                plan: plan.clone(),
                tally: Tally::default(),
                buf: Vec::with_capacity(256),
                signer: Signer::new(&c.secret),
                key: c.key.clone(),
                appender: (t == 0).then(|| Appender {
                    req: Requester::new(registry, addr, c.source_ips, o.writers, FOREIGN_TOKEN_BASE),
                    plan: plan.clone(),
                    shared: shared.clone(),
                    t,
                    owned: (0..o.writers).map(|w| owned(w, o.writers, o.messages)).collect(),
                    next: vec![0; o.writers],
                    inflight: vec![None; o.writers],
                    paths: Vec::new(),
                    next_token: 0,
                    accepted: Vec::new(),
                    odd_answers: 0,
                    post: PostWriter::new(Signer::new(&c.secret), c.key.clone(), format!("{}:{}", c.host, c.port)),
                    app_id: c.app_id.clone(),
                    body: Vec::with_capacity(64 + o.fragment),
                    request: Vec::with_capacity(1024),
                }),
            }
        })
    };

    let words = ("subscribers", "appends", "frames");
    let progress = |p: &Sample, s: &Sample| publish_progress(p, s, opts.subscribers, words);

    // Setup: connect and subscribe every socket, then create the messages.
    let setup_s = settle(&mut monitor, &shared, (opts.subscribers, opts.setup_timeout_s), &progress);
    let aborted = shared.totals().subscribed == 0;
    let mut drain_s = 0.0;
    let s1 = if aborted {
        monitor.sample(&shared)
    } else {
        match create_messages(common, &target, &plan.channel, opts.messages) {
            Ok(msgs) => {
                let _ = plan.messages.set(msgs);
            }
            Err(e) => {
                stop(&mut monitor, &shared, handles);
                return Err(e);
            }
        }
        let s1 = monitor.sample(&shared);
        let complete = |t: &Totals| t.delivered >= t.subscribed * t.events_accepted && t.publish_inflight == 0;
        drain_s = run_and_drain(&mut monitor, &shared, (opts.duration_s, opts.drain_s), &progress, complete);
        s1
    };
    let (s2, results) = stop(&mut monitor, &shared, handles);

    // ---- the checks ----
    let t = s2.totals;
    let mode = opts.mode;
    let m_count = opts.messages;
    let accepted: Vec<(u32, u64, u32)> = results.iter().flat_map(|r| r.accepted.iter().copied()).collect();
    // Per message: the accepted appends in serial order, their count and serial-set sum.
    let mut per_message: Vec<Vec<(u64, u32)>> = vec![Vec::new(); m_count];
    for &(m, serial, token) in &accepted {
        per_message[m as usize].push((serial, token));
    }
    let mut serial_twice = 0u64;
    for v in &mut per_message {
        v.sort_unstable();
        serial_twice += v.windows(2).filter(|w| w[0].0 == w[1].0).count() as u64;
    }
    let expected_text: Vec<Vec<u8>> = (0..m_count)
        .map(|m| {
            let mut text = create_data(m).into_bytes();
            for &(_, token) in &per_message[m] {
                push_fragment(&mut text, token, opts.fragment);
            }
            text
        })
        .collect();
    // GET latest of every message.
    let mut latest: Vec<Option<String>> = vec![None; m_count];
    let mut latest_errors = Vec::new();
    if let Some(msgs) = plan.messages.get() {
        for (m, serial) in msgs.serials.iter().enumerate() {
            match latest_data(common, &target, &plan.channel, serial) {
                Ok(d) => latest[m] = Some(d),
                Err(e) => latest_errors.push(format!("message {m}: {e}")),
            }
        }
    }
    let stored_mismatch =
        (0..m_count).filter(|&m| latest[m].as_ref().is_some_and(|d| d.as_bytes() != expected_text[m])).count();
    let latest_hash: Vec<Option<(u64, u64)>> =
        latest.iter().map(|d| d.as_ref().map(|d| (text_hash(mode, d.as_bytes()), d.len() as u64))).collect();
    // Per message: accepted appends, Σ mix(serial), the newest serial.
    let exp: Vec<(u64, u64, u64)> = per_message
        .iter()
        .map(|v| {
            let sum = v.iter().fold(0u64, |s, &(serial, _)| s.wrapping_add(mix(serial)));
            (v.len() as u64, sum, v.last().map_or(0, |l| l.0))
        })
        .collect();
    let tracks: Vec<&Vec<Track>> = results.iter().flat_map(|r| &r.tracks).collect();
    let (mut missing, mut extra, mut incomplete, mut reductions_off) = (0u64, 0u64, 0u64, 0u64);
    for sub in &tracks {
        for (m, tr) in sub.iter().enumerate() {
            let (count, sum, newest) = exp[m];
            missing += count.saturating_sub(tr.count);
            extra += tr.count.saturating_sub(count);
            // Rolled-up frames name only their newest serial: then the newest must arrive.
            let serials_ok = if tr.frames == tr.count { tr.serials == sum } else { tr.last == newest };
            if tr.count != count || !serials_ok {
                incomplete += 1;
            }
            if latest_hash[m].is_some_and(|h| h != (tr.text, tr.text_len)) {
                reductions_off += 1;
            }
        }
    }
    let pairs = (tracks.len() * m_count) as u64;
    let Tally { hist, causes } = Tally::merge(results.iter().map(|r| r.tally.clone()));
    let statuses: Vec<(u16, u64)> = results.iter().flat_map(|r| r.statuses.clone()).collect();
    let odd_answers: u64 = results.iter().map(|r| r.odd_answers).sum();
    let tokens_exhausted = results.iter().any(|r| r.tokens_exhausted);
    let expected = t.subscribed * t.events_accepted;
    let text_bytes: u64 = latest.iter().flatten().map(|d| d.len() as u64).sum();

    // ---- report ----
    let mut report = Report::new("appends", target_name(common), args.given());
    let run_s = (s2.t - s1.t).max(1e-9);
    let mode_name = match mode {
        Mode::Delta => "delta",
        Mode::Full => "full",
    };
    let requested = format!("{} subscribers", opts.subscribers);
    let sockets = sockets_summary(&t, &requested, &format!("to {}", plan.channel), setup_s);
    report.line("sockets", format!("{sockets}; append_mode={mode_name}"));
    report.line(
        "messages",
        format!(
            "{} created; create frames received {} of {}",
            plan.messages.get().map_or(0, |m| m.serials.len()),
            t.creates_received,
            t.subscribed * m_count as u64
        ),
    );
    let mean_rate = t.events_accepted as f64 / opts.duration_s;
    let median = median_rate(&monitor.samples);
    report.line(
        "appending",
        format!(
            "{} writers for {} s, {}-byte fragments: sent {}, accepted {} ({:.0}/s median over the run's whole seconds, {:.0}/s mean), rejected {}, unanswered {}",
            opts.writers,
            opts.duration_s,
            opts.fragment,
            t.publish_requests,
            t.events_accepted,
            median.unwrap_or(mean_rate),
            mean_rate,
            t.events_rejected,
            t.events_unanswered
        ),
    );
    report.line("HTTP statuses", describe_statuses(&statuses));
    report.line(
        "deliveries",
        format!(
            "{}, extra {}, duplicated {}, out of order {}, unattributed {}; drain {:.2} s",
            deliveries(expected, t.delivered, missing),
            thousands(extra),
            t.duplicated,
            t.reordered,
            t.unknown_frames,
            drain_s
        ),
    );
    let per_token = t.append_bytes as f64 / expected.max(1) as f64;
    report.line(
        "wire",
        format!(
            "{:.1} bytes per token per subscriber (append frame payload bytes {} / {} subscribers × {} appends), {} append frames, {:.2} appends and {:.1} bytes per frame",
            per_token,
            thousands(t.append_bytes),
            t.subscribed,
            t.events_accepted,
            thousands(t.append_frames),
            t.delivered as f64 / t.append_frames.max(1) as f64,
            t.append_bytes as f64 / t.append_frames.max(1) as f64
        ),
    );
    report.line(
        "check",
        format!(
            "{} of {} subscriber × message pairs complete and in order; {} reductions ≠ GET latest; {} of {} stored texts ≠ create + accepted fragments; {} text bytes in all",
            pairs - incomplete,
            pairs,
            reductions_off,
            stored_mismatch,
            m_count,
            thousands(text_bytes)
        ),
    );
    report.metric("subscribers", opts.subscribers as u64);
    report.metric("messages", m_count as u64);
    report.metric("writers", opts.writers as u64);
    report.metric("fragment_bytes", opts.fragment as u64);
    report.metric("append_mode", mode_name);
    socket_metrics(&mut report, &t, setup_s);
    report.metric("creates_received", t.creates_received);
    report.metric("appends_sent", t.publish_requests);
    report.metric("appends_accepted", t.events_accepted);
    report.metric("appends_rejected", t.events_rejected);
    report.metric("appends_unanswered", t.events_unanswered);
    report.metric("appends_per_s_median", median.unwrap_or(mean_rate));
    report.metric("appends_per_s_mean", mean_rate);
    report.metric("deliveries_expected", expected);
    report.metric("deliveries_received", t.delivered);
    report.metric("missing", missing);
    report.metric("extra", extra);
    report.metric("duplicated", t.duplicated);
    report.metric("reordered", t.reordered);
    report.metric("unattributed_frames", t.unknown_frames);
    report.metric("incomplete_pairs", incomplete);
    report.metric("reductions_mismatched", reductions_off);
    report.metric("stored_texts_mismatched", stored_mismatch as u64);
    report.metric("text_bytes", text_bytes);
    report.metric("append_frame_bytes", t.append_bytes);
    report.metric("append_frames", t.append_frames);
    report.metric("wire_bytes_per_token_per_subscriber", per_token);
    report.metric("drain_s", drain_s);
    report.metric("writer_reconnects", results.iter().map(|r| r.reconnects).sum::<u64>());
    let per = |u: &Usage, n: u64, what: &str| u.per(n, what, 2).unwrap_or_else(|| format!("no {what}"));
    if let Some(u) = Usage::server(&s1, &s2) {
        let detail =
            format!(": {}, {}", per(&u, t.events_accepted, "append"), per(&u, t.delivered, "delivered append"));
        server_line(&mut report, &u, run_s, "", &detail);
        report.metric("server_cpu_us", u.cpu_us);
        report.metric("server_cpu_us_per_append", u.cpu_us as f64 / t.events_accepted.max(1) as f64);
        report.metric("server_cpu_us_per_delivery", u.cpu_us as f64 / t.delivered.max(1) as f64);
        report.metric("server_rss_kb_end", u.rss_end_kb);
    }
    let me = Usage::own(&s1, &s2);
    loadtest_line(&mut report, &me, &per(&me, t.delivered, "delivered append"), threads);
    report.metric("loadtest_cpu_us_per_delivery", me.cpu_us as f64 / t.delivered.max(1) as f64);
    report.line("connections ended", causes.describe());
    report.latency("append → receipt", hist);
    report.chart("Appends", "per second", acceptance_series(&monitor.samples));
    report.chart(
        "Deliveries",
        "per second",
        vec![
            ("appends delivered/s".into(), series(&monitor.samples, |t| t.delivered)),
            ("append frames/s".into(), series(&monitor.samples, |t| t.append_frames)),
        ],
    );
    add_server_charts(&mut report, &monitor.samples);

    // ---- verdict ----
    fail_sockets_and_publishing(&mut report, &t, opts.subscribers, aborted, ("append", "appended"));
    if missing > 0 {
        report.fail(format!("{missing} append frames missing after a {} s drain", opts.drain_s));
    }
    if extra > 0 || t.duplicated > 0 {
        report.fail(format!("{extra} append frames beyond the accepted appends ({} duplicated serials)", t.duplicated));
    }
    if t.reordered > 0 {
        report.fail(format!("{} append frames arrived after a later serial of their message", t.reordered));
    }
    if incomplete > 0 && missing + extra == 0 {
        report.fail(format!("{incomplete} subscriber × message pairs received other serials than the accepted ones"));
    }
    if t.unknown_frames > 0 {
        report.fail(format!("{} append frames named no known message or fragment", t.unknown_frames));
    }
    if reductions_off > 0 {
        report.fail(format!("{reductions_off} subscriber reductions differ from GET latest's item.data"));
    }
    if stored_mismatch > 0 {
        report.fail(format!(
            "{stored_mismatch} messages' GET latest text is not the create data + the accepted fragments in delivery_serial order"
        ));
    }
    if serial_twice > 0 {
        report.fail(format!("{serial_twice} accepted appends answered with a delivery_serial already given"));
    }
    if !latest_errors.is_empty() {
        report.fail(format!("GET latest failed: {}", latest_errors.join("; ")));
    }
    if odd_answers > 0 {
        report.fail(format!("{odd_answers} append answers were 200 without status applied and a delivery_serial"));
    }
    if t.creates_received < t.subscribed * m_count as u64 {
        report.warn(format!("{} of {} create frames received", t.creates_received, t.subscribed * m_count as u64));
    }
    if t.publish_inflight > 0 {
        report.warn(format!("{} appends were still unanswered at the end", t.publish_inflight));
    }
    if t.events_rejected + t.events_unanswered > 0 {
        report.warn(format!(
            "{} appends rejected or unanswered (an unanswered one may have been applied: its frames then count as extra)",
            t.events_rejected + t.events_unanswered
        ));
    }
    if tokens_exhausted {
        report.warn(format!("the run used all {MAX_TOKENS} fragment names and stopped appending"));
    }
    conclude(report, &monitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_name_their_token() {
        for token in [0, 1, 63, 64, 4095, MAX_TOKENS - 1] {
            for len in [4, 5, 16] {
                let mut f = Vec::new();
                push_fragment(&mut f, token, len);
                assert_eq!(f.len(), len);
                assert!(f.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'));
                assert_eq!(decode_token(&f), Some(token));
            }
        }
        assert_eq!(decode_token(b"AB"), None);
        assert_eq!(decode_token(b"AB\"C"), None);
    }

    #[test]
    fn reductions_hash_like_the_whole_text() {
        let mut h = fnv(FNV_OFFSET, b"lt0:");
        for frag in [&b"AAAB"[..], b"AAAC", b"AAAD"] {
            h = fnv(h, frag);
        }
        assert_eq!(h, text_hash(Mode::Delta, b"lt0:AAABAAACAAAD"));
        assert_ne!(whole_hash(b"lt0:AAAB"), whole_hash(b"lt0:AAAC"));
        assert_ne!(whole_hash(b"abcdefgh"), whole_hash(b"abcdefgh\0"));
        assert_eq!(mix(3).wrapping_add(mix(5)), mix(5).wrapping_add(mix(3)));
    }

    #[test]
    fn append_frames_are_scanned() {
        let f = br#"{"event":"sockudo:message.append","channel":"c","data":"AAAB","name":"lt","message_id":"m","stream_id":"s1","serial":7,"extras":{"headers":{"sockudo_action":"message.append","sockudo_message_serial":"00000000000000000002:s1","sockudo_version_serial":"00000000000000000007:s1","sockudo_history_serial":2}}}"#;
        assert_eq!(string_after(f, b"\"sockudo_message_serial\":"), Some(&b"00000000000000000002:s1"[..]));
        assert_eq!(string_after(f, b"\"data\":"), Some(&b"AAAB"[..]));
        assert_eq!(pusher::v2_position(f), Some((&b"s1"[..], 7)));
        let ack = br#"{"channel":"c","message_serial":"x","action":"append","accepted":true,"version_serial":"y","history_serial":2,"delivery_serial":17,"status":"applied"}"#;
        assert_eq!(number_after(ack, b"\"delivery_serial\":"), Some(17));
        assert_eq!(encode_segment("00000000000000000002:5b1e-x"), "00000000000000000002%3A5b1e-x");
    }

    #[test]
    fn writers_own_messages_round_robin() {
        assert_eq!(owned(0, 4, 1), vec![0]);
        assert_eq!(owned(3, 4, 1), vec![0]);
        assert_eq!(owned(1, 4, 10), vec![1, 5, 9]);
        assert_eq!(owned(2, 4, 3), vec![2]);
        assert_eq!(owned(3, 4, 3), vec![0]);
    }

    #[test]
    fn send_times_by_token() {
        let t = SendTimes::new();
        assert_eq!(t.get(5), None);
        t.set(5, 42);
        t.set(SEG as u32 * 3 + 1, 7);
        assert_eq!(t.get(5), Some(42));
        assert_eq!(t.get(SEG as u32 * 3 + 1), Some(7));
        assert_eq!(t.get(MAX_TOKENS), None);
    }
}
