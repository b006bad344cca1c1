//! One Pusher WebSocket connection after the handshake: reads frames, runs each client event
//! (spec 01 §4) in order, and answers. Subscriptions, publishes and sign-ins that concern state
//! owned by another shard cross the mesh; the call sites say so (`shard.mesh.send`,
//! `expect_reply`).

use crate::apps::{App, AppIdx};
use crate::auth;
use crate::protocol::channel::{self, Kind};
use crate::protocol::inbound::{self, ClientFrame, Command, Member, ResumePosition, Signin, Subscribe};
use crate::protocol::outbound::{self, Dialect};
use crate::protocol::ProtocolError;
use crate::shard::call::expect_reply;
use crate::shard::hub::{SocketKey, Subscription};
use crate::protocol::history::{page_json, AttachBounds, Rewind};
use crate::shard::msg::{ChannelEvent, EventData, Msg, Recovery, Reply, ResumeFailure};
use crate::shard::watch::WatchMsg;
use crate::shard::durable::unix_ms;
use crate::shard::Shard;
use crate::socket_id::SocketId;
use crate::ws::codec::{self, Decoder, Incoming, Opcode, WsError};
use crate::ws::conn::Conn;
use crate::ws::handshake::Negotiated;
use ahash::AHashMap;
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;
use storage::{Bounds, Direction, HistoryQuery, StorageError};

struct Session {
    shard: Rc<Shard>,
    key: SocketKey,
    id: SocketId,
    app: AppIdx,
    dialect: Dialect,
    /// Client events come back to the sender (V2 `echo_messages`, spec 02 §12.3).
    echo: bool,
    /// Channels resumed before they were subscribed: stream and serial reached.
    resumed: RefCell<Option<Box<AHashMap<Arc<str>, (Arc<str>, u64)>>>>,
}

/// Units decoded from one read, and how the read ended.
struct Decoded {
    units: Vec<Incoming>,
    used: usize,
    error: Option<WsError>,
}

fn decode_all(dec: &mut Decoder, buf: &[u8]) -> Decoded {
    let mut d = Decoded { units: Vec::new(), used: 0, error: None };
    loop {
        match dec.decode(&buf[d.used..]) {
            Ok((unit, n)) => {
                d.units.extend(unit);
                if n == 0 {
                    return d;
                }
                d.used += n;
            }
            Err(e) => {
                d.error = Some(e);
                return d;
            }
        }
    }
}

/// Runs a connected socket until it closes. `handshake` is the 101 response, not yet sent;
/// `pending` holds bytes that arrived with the handshake.
pub async fn run(shard: Rc<Shard>, conn: Rc<Conn>, app: AppIdx, options: Negotiated, handshake: Vec<u8>, mut pending: Vec<u8>) {
    let dialect = options.dialect;
    let (key, id) = shard.add_socket(conn.clone(), app, dialect, handshake);
    let session = Session { shard: shard.clone(), key, id, app, dialect, echo: options.echo, resumed: RefCell::new(None) };
    let mut decoder = Decoder::new(shard.ctx.config.max_message_bytes);
    let mut fresh = 0; // bytes of the last read waiting in the scratch buffer
    loop {
        let decoded = if pending.is_empty() {
            let scratch = shard.scratch.borrow();
            let d = decode_all(&mut decoder, &scratch[..fresh]);
            if d.error.is_none() {
                pending.extend_from_slice(&scratch[d.used..fresh]);
            }
            d
        } else {
            pending.extend_from_slice(&shard.scratch.borrow()[..fresh]);
            let d = decode_all(&mut decoder, &pending);
            pending.drain(..d.used);
            d
        };
        if pending.is_empty() && pending.capacity() > 0 {
            pending = Vec::new(); // an idle socket keeps no buffer
        }
        for unit in decoded.units {
            // Boxed so the state of a subscribe or sign-in in progress is not part of every
            // idle socket's future.
            Box::pin(session.on_unit(unit)).await;
        }
        // Gates opened by subscribes of this read had their chance to serve a resume sent
        // with them (spec 02 §3.4): what they held goes out now.
        shard.release_gates(key, None);
        if let Some(e) = decoded.error {
            pending.clear();
            shard.close_ws(key, e.close_code(), e.reason());
        }
        fresh = match conn.read(&shard.scratch).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
    }
    shard.remove_socket(key, id);
}

impl Session {
    fn app(&self) -> &App {
        self.shard.ctx.apps.get(self.app)
    }

    fn socket_id(&self) -> String {
        self.id.to_string()
    }

    /// Runs `f` on this socket's state if it is still open.
    fn with_socket<T>(&self, f: impl FnOnce(&mut crate::shard::hub::Socket) -> T) -> Option<T> {
        self.shard.hub.borrow_mut().live(self.key, self.id).map(f)
    }

    fn send(&self, json: &[u8]) {
        self.shard.send_json(self.key, json);
    }

    async fn on_unit(&self, unit: Incoming) {
        match unit {
            Incoming::Text(bytes) | Incoming::Binary(bytes) => {
                let c = self.shard.counters(Some(self.app));
                c.ws_received.inc();
                c.ws_received_bytes.add(bytes.len() as u64);
                let open = self.with_socket(|s| s.last_activity = Instant::now()).is_some();
                if open {
                    if let Err(e) = self.on_message(&bytes).await {
                        self.fail(e);
                    }
                }
            }
            Incoming::Ping(payload) => {
                // A native ping counts as activity and answers a pending pusher:ping.
                self.with_socket(|s| {
                    s.last_activity = Instant::now();
                    s.ping_sent = None;
                });
                self.shard.send_frame(self.key, codec::encode(Opcode::Pong, &payload).into());
            }
            Incoming::Pong => {
                // The answer to the server's native ping (V2 heartbeat, spec 02 §1.5).
                self.with_socket(|s| {
                    s.last_activity = Instant::now();
                    s.ping_sent = None;
                });
            }
            Incoming::Close(code) => {
                let code = code.map_or(1000, |(c, _)| c);
                self.shard.close_ws(self.key, code, "");
            }
        }
    }

    /// Reports a handler error: fatal ones close the socket with their code.
    fn fail(&self, e: ProtocolError) {
        if e.fatal {
            self.shard.close(self.key, &e);
        } else {
            self.send(&outbound::error(self.dialect, e.code, &e.message));
        }
    }

    async fn on_message(&self, bytes: &[u8]) -> Result<(), ProtocolError> {
        let frame = ClientFrame::parse(bytes)?;
        match frame.command() {
            Command::Ping => {
                self.with_socket(|s| s.ping_sent = None);
                self.shard.send_heartbeat(self.key, &outbound::pong(self.dialect));
            }
            Command::Pong => {
                self.with_socket(|s| s.ping_sent = None);
            }
            Command::Subscribe => self.subscribe(&frame).await?,
            Command::Unsubscribe => self.unsubscribe(&frame)?,
            Command::Signin => self.signin(&frame).await?,
            Command::Resume => self.resume(&frame).await?,
            Command::ChannelHistory => self.channel_history(&frame).await?,
            Command::ClientEvent(name) => self.client_event(&frame, name)?,
            Command::Other => {}
        }
        Ok(())
    }

    async fn subscribe(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        let sub = Subscribe::parse(frame)?;
        if sub.rewind.is_some() {
            if self.dialect == Dialect::V1 {
                return Err(ProtocolError::history("rewind only supported on protocol V2"));
            }
            if self.shard.ctx.stores.is_none() || !self.shard.ctx.config.history.rewind_enabled {
                return Err(ProtocolError::history("rewind is not enabled on this server"));
            }
        }
        let rewind = sub.rewind;
        let app = self.app();
        channel::validate(&sub.channel, app.limits.max_channel_name_length, &app.namespaces)?;
        let ty = channel::channel_type(&sub.channel);
        let mut member: Option<Member> = None;
        if ty.needs_auth() {
            let auth_value = sub
                .auth
                .as_deref()
                .filter(|a| !a.is_empty())
                .ok_or_else(|| ProtocolError::auth("Authentication signature required for this channel"))?;
            let channel_data = if ty.kind == Kind::Presence {
                let cd = sub
                    .channel_data
                    .as_deref()
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| ProtocolError::invalid_format("Missing channel_data for presence channel"))?;
                let m = inbound::presence_member(cd)?;
                // Whole kilobytes are compared (spec 01 §4.2 row 6): 1.9 KB passes a 1 KB limit.
                if m.user_info.len() / 1024 > app.limits.max_presence_member_bytes / 1024 {
                    return Err(ProtocolError::channel(format!(
                        "Presence member data size ({}KB) exceeds limit ({}KB)",
                        m.user_info.len() / 1024,
                        app.limits.max_presence_member_bytes / 1024
                    )));
                }
                member = Some(m);
                Some(cd)
            } else {
                None
            };
            let message = auth::channel_auth_message(&self.socket_id(), &sub.channel, channel_data);
            if !auth::verify_key_and_signature(&app.key, &app.secret, message.as_bytes(), auth_value) {
                return Err(ProtocolError::auth("Channel requires authentication"));
            }
        }
        let channel: Arc<str> = sub.channel.into();
        let Some(already) = self.with_socket(|s| s.channels.contains_key(&channel)) else { return Ok(()) };
        // V2 answers carry the stream position, which only the owner knows.
        if already && member.is_none() && self.dialect == Dialect::V1 {
            self.send(&outbound::subscription_succeeded(self.dialect, &channel, "{}", ("", 0)));
            return Ok(());
        }
        let (key, id, app_idx, dialect) = (self.key, self.id, self.app, self.dialect);
        let user = member.as_ref().map(|m| Arc::<str>::from(m.user_id.as_str()));
        let needs_auth = ty.needs_auth();
        // V2 subscribers get a continuity gate: a resume or rewind can then put older messages
        // ahead of the live ones that arrive meanwhile.
        let gated = dialect == Dialect::V2 && (self.shard.ctx.config.recovery_enabled || self.shard.ctx.stores.is_some());
        let ch = channel.clone();
        let (reply_to, done) = expect_reply(&self.shard, move |shard: &Rc<Shard>, reply: Reply| {
            match reply {
                Reply::Subscribed { data, cache, position } => {
                    let mut hub = shard.hub.borrow_mut();
                    if hub.live(key, id).is_none() {
                        drop(hub);
                        if !already {
                            // The socket went away while the owner counted it: undo.
                            let owner = shard.channel_owner(app_idx, &ch);
                            shard.mesh.send(owner, Msg::Unsubscribe { app: app_idx, channel: ch, shard: shard.id, socket: id, user_id: user });
                        }
                        return Ok(None);
                    }
                    if !already {
                        let c = shard.counters(Some(app_idx));
                        let ty = crate::metrics::channel_type(&ch);
                        c.subscriptions[ty].inc();
                        if hub.add_subscriber(app_idx, &ch, key) {
                            c.active_channels[ty].inc();
                        }
                        let s = hub.sockets.get_mut(key).expect("live socket");
                        s.channels.insert(ch.clone(), Subscription::new(user.clone(), position.1, gated));
                        s.gates += gated as u32;
                        if needs_auth {
                            s.authenticated = true;
                        }
                        if let Some(u) = user.filter(|_| !s.signed_in) {
                            hub.set_user(key, u);
                        }
                    }
                    drop(hub);
                    shard.send_json(key, &outbound::subscription_succeeded(dialect, &ch, &data, (&position.0, position.1)));
                    match cache {
                        Some(Some(event)) => shard.send_frame(key, event.frame_for(dialect)),
                        Some(None) => shard.send_json(key, &outbound::cache_miss(dialect, &ch)),
                        None => {}
                    }
                    Ok(Some(position.1))
                }
                Reply::Refused(e) => Err(e),
                _ => Err(ProtocolError::invalid_format("unexpected reply to subscribe")),
            }
        });
        let owner = self.shard.channel_owner(self.app, &channel);
        self.shard.mesh.send(
            owner,
            Msg::Subscribe { reply_to, app: self.app, channel: channel.clone(), shard: self.shard.id, socket: self.id, member, again: already },
        );
        let attach = done.await?;
        let resumed = self.resumed.borrow_mut().as_mut().and_then(|r| r.remove(&channel));
        match (attach, rewind, resumed) {
            (Some(attach), Some(rewind), _) => self.rewind(&channel, rewind, attach).await,
            // A resume for this channel came first: send what was published since, behind
            // the gate like any replay.
            (Some(attach), None, Some((stream_id, serial))) if attach > serial => {
                let position = ResumePosition { stream_id: Some(stream_id.to_string()), serial, last_message_id: None };
                let step = self.ask_replay(channel, position, false).await;
                let _ = self.finish_replay(step, None).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Rewind on subscribe (spec 02 §4.2): history up to the attach serial, oldest first, then
    /// the live frames the gate held meanwhile, then `rewind_complete`.
    async fn rewind(&self, channel: &Arc<str>, rewind: Rewind, attach: u64) -> Result<(), ProtocolError> {
        let Some(store) = self.shard.owner_store(self.app, channel) else { return Ok(()) };
        let max = self.shard.ctx.config.history.max_page_size;
        let (limit, direction, bounds, wanted) = match rewind {
            Rewind::Count(n) => {
                let bounds = Bounds { end_serial: Some(attach), ..Bounds::default() };
                (n.min(max as u64) as usize, Direction::NewestFirst, bounds, Some(n))
            }
            Rewind::Seconds(secs) => {
                let since = unix_ms().saturating_sub(secs.saturating_mul(1000));
                let bounds = Bounds { start_time_ms: Some(since), end_serial: Some(attach), ..Bounds::default() };
                (max, Direction::OldestFirst, bounds, None)
            }
        };
        let query = HistoryQuery { app: self.app().id.clone(), channel: channel.to_string(), limit, direction, bounds, cursor: None };
        // Crosses to the owner's store thread; the gate holds live frames meanwhile.
        let page = if attach == 0 { None } else { Some(store.read_history(query).await) };
        let page = match page.transpose() {
            Ok(page) => page,
            Err(e) => {
                self.shard.release_gates(self.key, Some(channel));
                return Err(ProtocolError::history(format!("rewind failed, history unavailable: {e}")));
            }
        };
        let mut items: Vec<&storage::HistoryItem> = page.iter().flat_map(|p| p.items.iter()).collect();
        if direction == Direction::NewestFirst {
            items.reverse();
        }
        for item in &items {
            self.shard.send_frame(self.key, codec::encode(Opcode::Text, &item.payload).into());
        }
        self.with_socket(|s| {
            if let Some(sub) = s.channels.get_mut(channel) {
                sub.replayed_upto = sub.replayed_upto.max(attach);
            }
        });
        let live_count = self.shard.release_gates(self.key, Some(channel));
        let has_more = page.as_ref().is_some_and(|p| p.has_more);
        // The store reports whether anything below the read was evicted (no lower bound for a
        // count, `now - S` for seconds).
        let evicted = page.as_ref().and_then(|p| p.continuity.as_ref()).is_some_and(|c| c.truncated_by_retention);
        let truncated_by_retention = match wanted {
            // Fewer than asked, and older messages were already evicted.
            Some(n) => (items.len() as u64) < n.min(attach) && !has_more && evicted,
            None => evicted,
        };
        let truncated_by_limit = has_more || wanted.is_some_and(|n| n > max as u64 && attach > max as u64);
        let summary = outbound::RewindComplete {
            historical_count: items.len(),
            live_count,
            complete: !truncated_by_retention && !truncated_by_limit,
            truncated_by_retention,
            truncated_by_limit,
        };
        self.send(&outbound::rewind_complete(channel, &summary));
        Ok(())
    }

    /// `sockudo:channel_history` (spec 02 §5.3). A session handles one frame at a time, so a
    /// socket never has more than one history read in flight (the spec allows two).
    async fn channel_history(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        if self.dialect == Dialect::V1 {
            return Err(ProtocolError::history("channel_history is only supported on protocol V2"));
        }
        let request = inbound::HistoryRequest::parse(frame)?;
        let channel = request.channel;
        let Some(store) = self.shard.owner_store(self.app, &channel) else {
            return Err(ProtocolError::history("durable history is not enabled on this server"));
        };
        let attach = self
            .with_socket(|s| s.channels.get(channel.as_str()).map(|sub| sub.attach_serial))
            .flatten()
            .ok_or_else(|| ProtocolError::history_request(format!("socket is not subscribed to {channel}")))?;
        let p = request.params;
        let max = self.shard.ctx.config.history.max_page_size.min(1000);
        let limit = p.limit.unwrap_or(100).min(max);
        let direction = p.direction.unwrap_or(Direction::NewestFirst);
        let mut bounds = p.bounds;
        if p.until_attach {
            bounds.end_serial = Some(bounds.end_serial.map_or(attach, |e| e.min(attach)));
        }
        let query = HistoryQuery { app: self.app().id.clone(), channel: channel.clone(), limit, direction, bounds, cursor: p.cursor };
        // Crosses to the owner's store thread.
        let page = store.read_history(query).await.map_err(|e| match e {
            StorageError::Cursor(c) => ProtocolError::invalid_format(c),
            other => ProtocolError::history(format!("history unavailable: {other}")),
        })?;
        let attach_bounds = AttachBounds { until_attach: p.until_attach, attach_serial: Some(attach) };
        let body = page_json(&page, direction, limit, &bounds, Some(attach_bounds));
        self.send(&outbound::channel_history(&channel, &body));
        Ok(())
    }

    fn unsubscribe(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        let channel = inbound::unsubscribe_channel(frame)?;
        let mut hub = self.shard.hub.borrow_mut();
        let Some(s) = hub.live(self.key, self.id) else { return Ok(()) };
        let Some((channel, sub)) = s.channels.remove_entry(channel.as_str()) else { return Ok(()) };
        let member = sub.member;
        let emptied = hub.remove_subscriber(self.app, &channel, self.key);
        self.shard.count_unsubscribe(self.app, &channel, emptied);
        drop(hub);
        let owner = self.shard.channel_owner(self.app, &channel);
        self.shard.mesh.send(
            owner,
            Msg::Unsubscribe { app: self.app, channel, shard: self.shard.id, socket: self.id, user_id: member },
        );
        Ok(())
    }

    /// `sockudo:resume` (spec 02 §3.4). Each channel's owner answers from its hot buffer
    /// (queued on the socket when the answer is handled, in mesh order) or points to durable
    /// history, read here from the owner's store. A channel subscribed in this same read still
    /// holds its continuity gate, so live frames wait behind the replay; on an older
    /// subscription, messages after the attach serial already arrived live and are not repeated.
    async fn resume(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        if !self.shard.ctx.config.recovery_enabled {
            return Err(ProtocolError::recovery_disabled());
        }
        let request = inbound::Resume::parse(frame)?;
        if request.positions.is_empty() {
            return Err(ProtocolError::no_recovery_positions());
        }
        let mut answers = Vec::new();
        for (channel, position) in request.positions {
            let channel: Arc<str> = channel.into();
            let (last_message_id, serial) = (position.last_message_id.clone(), position.serial);
            answers.push((self.ask_replay(channel, position, request.legacy), last_message_id, serial));
        }
        let mut done = Vec::new();
        for (answer, last_message_id, serial) in answers {
            let outcome = self.finish_replay(answer.await, last_message_id.as_deref()).await;
            if let Ok(r) = &outcome {
                // Resumed before subscribing (sockudo-python 2.2 does): the subscribe must
                // catch up from here, or what is published in between would be lost.
                if self.with_socket(|s| !s.channels.contains_key(&r.channel)).unwrap_or(false) {
                    let at = r.last.as_ref().map_or(serial, |l| l.0);
                    self.resumed.borrow_mut().get_or_insert_with(Default::default).insert(r.channel.clone(), (r.stream_id.clone(), at));
                }
            }
            done.push(outcome);
        }
        let recovered: Vec<outbound::Recovered> = done
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| outbound::Recovered {
                channel: &r.channel,
                source: r.source,
                replayed: r.replayed,
                position: r.last.as_ref().map(|(serial, id)| outbound::RecoveredPosition {
                    stream_id: &r.stream_id,
                    serial: *serial,
                    last_message_id: id,
                }),
            })
            .collect();
        let failed: Vec<_> = done
            .iter()
            .filter_map(|r| r.as_ref().err())
            .map(|(channel, f)| FailedChannel { channel, failure: f })
            .collect();
        self.send(&outbound::resume_success(&recovered, &failed));
        Ok(())
    }

    /// Asks the channel's owner for what follows `position`. A hot replay is queued on the
    /// socket when the answer is handled, in mesh order, so no later live frame from the owner
    /// can overtake it.
    fn ask_replay(&self, channel: Arc<str>, position: ResumePosition, legacy: bool) -> impl std::future::Future<Output = Step> {
        let (key, ch) = (self.key, channel.clone());
        let (reply_to, done) = expect_reply(&self.shard, move |shard: &Rc<Shard>, reply: Reply| match reply {
            Reply::Replay(Recovery::Hot { stream_id, messages }) => {
                let cap = replay_cap(shard, key, &ch);
                let mut sent = 0;
                let mut last = None;
                for m in messages.iter().filter(|m| m.serial <= cap) {
                    shard.send_frame(key, codec::encode(Opcode::Text, &m.frame).into());
                    sent += 1;
                    last = Some((m.serial, m.message_id.to_string()));
                }
                mark_replayed(shard, key, &ch, last.as_ref().map(|l| l.0));
                Step::Done(Ok(ChannelRecovered { channel: ch, source: "hot", replayed: sent, stream_id, last }))
            }
            Reply::Replay(Recovery::Cold { stream_id, after, head }) => {
                let head = head.min(replay_cap(shard, key, &ch));
                Step::Cold { channel: ch, stream_id, after, head }
            }
            Reply::Replay(Recovery::Failed(failure)) => Step::Done(Err((ch, failure))),
            _ => Step::Done(Err((ch, failure("persistence_unavailable", "failed_to_deliver_recovery_payload")))),
        });
        let owner = self.shard.channel_owner(self.app, &channel);
        self.shard.mesh.send(owner, Msg::Replay { reply_to, app: self.app, channel, position, legacy });
        done
    }

    /// Completes one channel's recovery (the cold tier if the owner pointed there) and reports
    /// a failure with `sockudo:resume_failed`.
    async fn finish_replay(&self, step: Step, last_message_id: Option<&str>) -> Result<ChannelRecovered, (Arc<str>, ResumeFailure)> {
        let outcome = match step {
            Step::Done(outcome) => outcome,
            Step::Cold { channel, stream_id, after, head } => self.cold_replay(channel, stream_id, after, head, last_message_id).await,
        };
        if let Err((channel, f)) = &outcome {
            // `channel` is in the data too: sockudo-python 2.2 reads it there.
            self.send(&outbound::resume_failed(channel, &FailedChannel { channel, failure: f }));
        }
        outcome
    }

    /// The cold tier (spec 02 §3.4 step 3): serials `after + 1 ..= head` from the owner's
    /// store, which must be exactly those, contiguous and of the same stream.
    async fn cold_replay(
        &self,
        channel: Arc<str>,
        stream_id: Arc<str>,
        after: u64,
        head: u64,
        last_message_id: Option<&str>,
    ) -> Result<ChannelRecovered, (Arc<str>, ResumeFailure)> {
        let fail = |code, reason, oldest: Option<u64>| {
            let mut f = failure(code, reason);
            f.current_stream_id = Some(stream_id.to_string());
            f.oldest_available_serial = oldest;
            f.newest_available_serial = Some(head);
            (channel.clone(), f)
        };
        let done = |replayed, last| ChannelRecovered { channel: channel.clone(), source: "cold", replayed, stream_id: stream_id.clone(), last };
        if after >= head {
            return Ok(done(0, None));
        }
        let Some(store) = self.shard.owner_store(self.app, &channel) else {
            return Err(fail("position_expired", "hot_replay_expired_and_durable_history_disabled", None));
        };
        let query = HistoryQuery {
            app: self.app().id.clone(),
            channel: channel.to_string(),
            limit: (head - after) as usize,
            direction: Direction::OldestFirst,
            bounds: Bounds { start_serial: Some(after + 1), end_serial: Some(head), ..Bounds::default() },
            cursor: None,
        };
        // Crosses to the owner's store thread; this channel's gate holds live frames meanwhile.
        let page = match store.read_history(query).await {
            Ok(p) => p,
            Err(_) => return Err(fail("persistence_unavailable", "durable_history_read_failed", None)),
        };
        let oldest = page.continuity.as_ref().and_then(|c| c.oldest_available_serial);
        match page.continuity.as_ref() {
            Some(c) if *c.stream_id != *stream_id => {
                return Err(fail("stream_reset", "durable_stream_changed_during_reconnect", oldest));
            }
            None => return Err(fail("position_expired", "durable_history_empty_after_prior_writes", None)),
            Some(_) if oldest.is_none_or(|o| o > after + 1) => {
                return Err(fail("position_expired", "retained_history_floor_is_ahead_of_requested_serial", oldest));
            }
            Some(_) => {}
        }
        if page.items.iter().enumerate().any(|(i, item)| item.serial != after + 1 + i as u64) {
            return Err(fail("continuity_unverifiable", "durable_history_is_not_contiguous", oldest));
        }
        if page.items.last().map(|i| i.serial) != Some(head) {
            return Err(fail("continuity_unverifiable", "durable_history_ended_before_stream_head", oldest));
        }
        let mut replayed = 0;
        for item in page.items.iter().filter(|i| Some(i.message_id.as_str()) != last_message_id) {
            self.shard.send_frame(self.key, codec::encode(Opcode::Text, &item.payload).into());
            replayed += 1;
        }
        mark_replayed(&self.shard, self.key, &channel, Some(head));
        let last = page.items.last().map(|i| (i.serial, i.message_id.clone()));
        Ok(done(replayed, last))
    }

    async fn signin(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        let app = self.app();
        if !app.user_authentication {
            return Err(ProtocolError::auth("User authentication is disabled for this app"));
        }
        let signin = Signin::parse(frame)?;
        let user = inbound::user_data(&signin.user_data)?;
        let message = auth::signin_message(&self.socket_id(), &signin.user_data);
        if !auth::verify_key_and_signature(&app.key, &app.secret, message.as_bytes(), &signin.auth) {
            return Err(ProtocolError::auth("Connection not authorized for signin."));
        }
        let user_id: Arc<str> = user.id.as_str().into();
        let watching = app.watchlist_events;
        let watchlist = if watching { user.watchlist.clone().unwrap_or_default() } else { Vec::new() };
        let previous = {
            let mut hub = self.shard.hub.borrow_mut();
            let Some(s) = hub.live(self.key, self.id) else { return Ok(()) };
            let previous = if s.signed_in { s.user_id.clone().zip(s.watchlist.take()) } else { None };
            s.signed_in = true;
            s.authenticated = true;
            s.watchlist = watching.then(|| watchlist.clone());
            hub.set_user(self.key, user_id.clone());
            previous
        };
        if watching {
            if let Some((old, old_list)) = previous {
                self.shard.signout_watch(self.app, old, old_list);
            }
            let online = self.register_watch(user_id, &watchlist).await;
            let offline: Vec<String> = watchlist.iter().filter(|w| !online.contains(w)).cloned().collect();
            if !online.is_empty() {
                self.send(&outbound::watchlist(true, &online));
            }
            if !offline.is_empty() {
                self.send(&outbound::watchlist(false, &offline));
            }
        }
        self.send(&outbound::signin_success(self.dialect, &signin.user_data));
        Ok(())
    }

    /// Counts this socket as `user` online and registers it as a watcher of `watchlist`, on
    /// the owner shard of each id. Returns the watched ids that are online.
    async fn register_watch(&self, user: Arc<str>, watchlist: &[String]) -> Vec<String> {
        let shard = &self.shard;
        let me = shard.user_owner(self.app, &user);
        let mut by_owner: Vec<Vec<String>> = vec![Vec::new(); shard.shards];
        for w in watchlist {
            by_owner[shard.user_owner(self.app, w)].push(w.clone());
        }
        let mut waits = Vec::new();
        for (owner, watch) in by_owner.into_iter().enumerate() {
            if owner != me && watch.is_empty() {
                continue;
            }
            let (reply_to, done) = expect_reply(shard, |_, reply| match reply {
                Reply::Online(ids) => ids,
                _ => Vec::new(),
            });
            shard.mesh.send(
                owner,
                Msg::Watch(WatchMsg::Signin { reply_to, app: self.app, watcher: user.clone(), online: owner == me, watch }),
            );
            waits.push(done);
        }
        let mut online = Vec::new();
        for w in waits {
            online.extend(w.await);
        }
        online
    }

    fn client_event(&self, frame: &ClientFrame<'_>, name: &str) -> Result<(), ProtocolError> {
        let app = self.app();
        let limits = &app.limits;
        // The rate limit comes first: rejected events still use quota (spec 01 §2.5).
        if limits.client_events_per_window > 0 {
            let c = self.shard.counters(Some(self.app));
            c.rate_limit_checks[crate::metrics::CLIENT_EVENTS].inc();
            let allowed = self
                .with_socket(|s| {
                    let now = Instant::now();
                    if now.duration_since(s.client_event_window.0) >= limits.client_event_window {
                        s.client_event_window = (now, 0);
                    }
                    s.client_event_window.1 += 1;
                    s.client_event_window.1 <= limits.client_events_per_window
                })
                .unwrap_or(false);
            if !allowed {
                c.rate_limit_triggered[crate::metrics::CLIENT_EVENTS].inc();
                return Err(ProtocolError::client_event_rate_limited(limits.terminate_on_limit));
            }
        }
        let channel = frame
            .channel
            .as_deref()
            .ok_or_else(|| ProtocolError::client_event("Channel required for client event"))?;
        if !app.client_messages {
            return Err(ProtocolError::client_event("Client events are not enabled for this app"));
        }
        if name.len() > limits.max_event_name_length {
            return Err(ProtocolError::invalid_event_name(format!(
                "Event name exceeds maximum length of {}",
                limits.max_event_name_length
            )));
        }
        if channel.len() > limits.max_channel_name_length {
            return Err(ProtocolError::channel_name_invalid(format!(
                "Channel name exceeds maximum length of {}",
                limits.max_channel_name_length
            )));
        }
        if !channel::channel_type(channel).allows_client_events() {
            return Err(ProtocolError::client_event("Client events can only be sent to private or presence channels"));
        }
        let data = frame.data_raw();
        if data.len() > limits.max_event_payload_bytes {
            return Err(ProtocolError::client_event(format!(
                "Event payload size ({} bytes) exceeds limit ({}KB)",
                data.len(),
                limits.max_event_payload_bytes / 1024
            )));
        }
        let (channel, member) = self
            .with_socket(|s| s.channels.get_key_value(channel).map(|(c, sub)| (c.clone(), sub.member.clone())))
            .flatten()
            .ok_or_else(|| {
                ProtocolError::client_event(format!("Socket {} is not subscribed to channel {channel}", self.id))
            })?;
        self.shard.webhook_client_event(self.app, &channel, name, data, self.id, member.as_ref());
        // Presence client events carry the sender's user id (spec 01 Q11 Rec).
        let event = ChannelEvent {
            name: name.to_owned(),
            data: EventData::Raw(data.to_owned()),
            user_id: member,
            message_id: None,
            extras: None,
            ephemeral: false,
        };
        let owner = self.shard.channel_owner(self.app, &channel);
        self.shard.mesh.send(
            owner,
            Msg::Publish {
                reply_to: None,
                app: self.app,
                channel,
                event: Arc::new(event),
                exclude: (!self.echo).then_some(self.id),
                from_http: false,
            },
        );
        Ok(())
    }
}

/// Where one channel's resume stands once its owner answered.
enum Step {
    Done(Result<ChannelRecovered, (Arc<str>, ResumeFailure)>),
    /// Durable history must supply serials `after + 1 ..= head`.
    Cold { channel: Arc<str>, stream_id: Arc<str>, after: u64, head: u64 },
}

struct ChannelRecovered {
    channel: Arc<str>,
    source: &'static str,
    replayed: usize,
    stream_id: Arc<str>,
    /// Serial and message id of the last message replayed.
    last: Option<(u64, String)>,
}

fn failure(code: &'static str, reason: &'static str) -> ResumeFailure {
    ResumeFailure {
        code,
        reason,
        expected_stream_id: None,
        current_stream_id: None,
        oldest_available_serial: None,
        newest_available_serial: None,
    }
}

/// The newest serial a replay may send on this socket: everything while the subscription's
/// gate is closed (live frames wait behind the replay); only up to the attach serial once it
/// was released, since later messages already arrived live.
fn replay_cap(shard: &Shard, key: SocketKey, channel: &str) -> u64 {
    let hub = shard.hub.borrow();
    match hub.sockets.get(key).and_then(|s| s.channels.get(channel)) {
        Some(sub) if sub.gate.is_none() => sub.attach_serial,
        _ => u64::MAX,
    }
}

/// Records what a replay sent, so the gate does not send it again.
fn mark_replayed(shard: &Shard, key: SocketKey, channel: &str, serial: Option<u64>) {
    let Some(serial) = serial else { return };
    let mut hub = shard.hub.borrow_mut();
    if let Some(sub) = hub.sockets.get_mut(key).and_then(|s| s.channels.get_mut(channel)) {
        sub.replayed_upto = sub.replayed_upto.max(serial);
    }
}

/// A channel's entry in `resume_success.failed`: its name and the failure's fields.
#[derive(serde::Serialize)]
struct FailedChannel<'a> {
    channel: &'a str,
    #[serde(flatten)]
    failure: &'a ResumeFailure,
}
