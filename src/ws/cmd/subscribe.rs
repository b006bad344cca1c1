//! `pusher:subscribe` (`docs/protocol/pusher.md#subscribing`): checks the name and signature,
//! then asks the channel's owner to count the socket; its answer indexes the socket here, in
//! mesh order. V2 subscribers get a continuity gate so that a rewind or a resume sent with the
//! subscribe puts older messages ahead of live ones. A metachannel `[meta]<channel>` is
//! subscribed like a channel, with the checks of the channel it is about; a wildcard pattern
//! goes to `wildcard.rs`.

use crate::auth;
use crate::metrics::ChannelLabel;
use crate::protocol::annotations;
use crate::protocol::capabilities::Op;
use crate::protocol::channel::{self, Kind};
use crate::protocol::delta::{self, Algorithm, Choice};
use crate::protocol::inbound::{self, ClientFrame, Member, ResumePosition, Subscribe};
use crate::protocol::outbound::{self, Dialect};
use crate::protocol::{versioned, wildcard, ProtocolError};
use crate::shard::channel::subscribe::{Subscribe as OwnerSubscribe, Subscribed};
use crate::shard::Shard;
use crate::ws::delta::ChannelDelta;
use crate::ws::index::{Socket, Subscription};
use crate::ws::session::Session;
use std::rc::Rc;
use std::sync::Arc;

/// Applies a subscribe's `delta` option to the socket's subscription of `channel` (none:
/// the connection's setting applies). Returns the algorithm to confirm on the channel when the
/// option turned deltas on for it alone.
fn set_delta(sock: &mut Socket, channel: &str, choice: Option<Choice>, default: Algorithm) -> Option<Algorithm> {
    let connection = sock.delta;
    let sub = sock.channels.get_mut(channel)?;
    let had = sub.delta.is_some();
    let (algorithm, confirm) = match choice {
        None if sub.delta_off || had => return None,
        None => (connection, None),
        Some(Choice::Off) => {
            sub.delta_off = true;
            (None, None)
        }
        Some(Choice::On(asked)) => {
            sub.delta_off = false;
            let a = asked.or(connection).unwrap_or(default);
            (Some(a), connection.is_none().then_some(a))
        }
    };
    sub.delta = algorithm.map(|a| Box::new(ChannelDelta::new(a)));
    sock.deltas = sock.deltas + sub.delta.is_some() as u32 - had as u32;
    confirm
}

impl Session {
    pub(in crate::ws) async fn subscribe(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        let ctx = &self.shard().ctx;
        let filters = (self.dialect == Dialect::V2).then_some(ctx.config.filtering.filters);
        let sub = Subscribe::parse(frame, filters)?;
        if wildcard::is_pattern(&sub.channel) {
            if self.dialect == Dialect::V1 {
                return Err(ProtocolError::channel("Wildcard subscriptions are only supported on protocol V2"));
            }
            return self.subscribe_pattern(sub).await;
        }
        // A metachannel is checked as the channel it is about (`docs/protocol/v2.md#metachannels`).
        let meta = channel::meta_of(&sub.channel);
        if meta.is_some() {
            if self.dialect == Dialect::V1 {
                return Err(ProtocolError::channel("Metachannel subscriptions are only supported on protocol V2"));
            }
            if sub.rewind.is_some() || sub.annotations {
                return Err(ProtocolError::channel(format!(
                    "Metachannel '{}' has no messages to rewind or annotate",
                    sub.channel
                )));
            }
        }
        let target = meta.unwrap_or(&sub.channel);
        if sub.rewind.is_some() {
            if self.dialect == Dialect::V1 {
                return Err(ProtocolError::history("rewind only supported on protocol V2"));
            }
            if !self.app().rewind_allowed(&sub.channel, &ctx.config.history) {
                return Err(ProtocolError::history(format!("rewind is not enabled for channel {}", sub.channel)));
            }
        }
        let rewind = sub.rewind;
        let app = self.app();
        app.validate_channel(target)?;
        let user_limit = channel::user_limit(target)?;
        if user_limit.is_some() && self.dialect == Dialect::V1 {
            return Err(ProtocolError::channel("User-limited channels are only supported on protocol V2"));
        }
        let annotations = meta.is_none()
            && self.dialect == Dialect::V2
            && ctx.config.versioned.annotations
            && app.annotations_allowed(&sub.channel);
        let ty = channel::channel_type(target);
        self.require(Op::Subscribe, target)?;
        if ty.kind == Kind::Presence {
            self.require(Op::Presence, target)?;
        }
        if rewind.is_some() {
            self.require(Op::History, &sub.channel)?;
        }
        if sub.annotations {
            self.check_annotation_mode(&sub.channel, annotations)?;
        }
        if let Some(limit) = &user_limit {
            // The socket's user: signed in, its token's client id, or an earlier presence
            // subscription's member (`docs/protocol/v2.md#user-limited-channels`).
            let user = self.with_socket(|s| s.user_id.clone()).flatten();
            match user {
                None => return Err(ProtocolError::auth("User-limited channels require an authenticated V2 user")),
                Some(u) if !limit.allows(&u) => {
                    return Err(ProtocolError::auth(format!(
                        "User '{u}' is not allowed to access channel '{}'",
                        sub.channel
                    )))
                }
                Some(_) => {}
            }
        }
        // A private or presence channel's metachannel is authorised as a private channel of
        // its own name: seeing who comes and goes is not implied by a public name.
        let member = match (ty.needs_auth(), meta) {
            (false, _) => None,
            (true, None) => self.authorize(&sub, ty.kind)?,
            (true, Some(_)) => self.authorize(&sub, Kind::Private)?,
        };
        let channel: Arc<str> = sub.channel.into();
        let Some(already) = self.with_socket(|s| s.channels.contains_key(&channel)) else { return Ok(()) };
        // V2 answers carry the stream position, which only the owner knows.
        if already && member.is_none() && self.dialect == Dialect::V1 {
            self.send(&outbound::subscription_succeeded(self.dialect, &channel, "{}", ("", 0)));
            return Ok(());
        }
        let (hub, key, id, app_idx, dialect) = (self.hub.clone(), self.key, self.id, self.app, self.dialect);
        let user = member.as_ref().map(|m| Arc::<str>::from(m.user_id.as_str()));
        let needs_auth = ty.needs_auth();
        let annotation_mode = sub.annotations;
        let mut filter = sub.filter;
        // Deltas are for V2 JSON sockets only, and only when the server has them on.
        let per_channel = app.channel_delta(&channel);
        let delta_choice = sub
            .delta
            .filter(|_| self.takes_deltas() && ctx.config.delta.enabled && per_channel.is_none_or(|d| d.enabled));
        let default_algorithm = per_channel.and_then(|d| d.algorithm).unwrap_or(ctx.config.delta.algorithm);
        // V2 subscribers get a continuity gate: a resume or rewind can then put older messages
        // ahead of the live ones that arrive meanwhile.
        let app = self.app();
        let gated = dialect == Dialect::V2
            && (app.recovery_on(ctx.config.recovery_enabled) || app.history_on(&ctx.config.history));
        let ch = channel.clone();
        // Runs when the owner's answer is handled, before any later delivery from it.
        let on_answer = move |shard: &Rc<Shard>,
                              reply: Result<Subscribed, ProtocolError>|
              -> Result<Option<(u64, Arc<str>)>, ProtocolError> {
            let s = reply?;
            let mut index = hub.index.borrow_mut();
            if index.live(key, id).is_none() {
                drop(index);
                if let Some(undo) = s.undo {
                    // The socket went away while the owner counted it: take it back.
                    shard.unsubscribe_from_owner(undo);
                }
                return Ok(None);
            }
            if already {
                // Subscribed again: the new filter (or none) replaces the old one.
                let old = index.sockets[key].channels.get(&ch).and_then(|sub| sub.filter.clone());
                if old.as_deref() != filter.as_ref() {
                    let shared = index.refilter(app_idx, &ch, key, old.as_ref(), filter.take());
                    if let Some(sub) = index.sockets[key].channels.get_mut(&ch) {
                        sub.filter = shared;
                    }
                }
            } else {
                let c = hub.counters(Some(app_idx));
                let label = ChannelLabel::of(&ch) as usize;
                c.subscriptions[label].inc();
                let (first, shared) = index.add_subscriber(app_idx, &ch, key, filter.take());
                if first {
                    c.active_channels[label].inc();
                }
                let sock = index.sockets.get_mut(key).expect("live socket");
                sock.channels.insert(ch.clone(), Subscription::new(user.clone(), s.head, gated, shared));
                sock.gates += gated as u32;
                if needs_auth {
                    sock.authenticated = true;
                }
                if let Some(u) = user.filter(|_| !sock.signed_in) {
                    index.set_user(key, u);
                }
            }
            if annotation_mode {
                index.add_annotation_subscriber(app_idx, &ch, key);
            }
            let confirm = set_delta(&mut index.sockets[key], &ch, delta_choice, default_algorithm);
            drop(index);
            hub.send_json(key, &outbound::subscription_succeeded(dialect, &ch, &s.data, (&s.stream_id, s.head)));
            if let Some(algorithm) = confirm {
                hub.send_json(key, &delta::enabled_frame(dialect, true, algorithm, Some(&ch)));
            }
            match s.cache {
                Some(Some(event)) => {
                    let encoding = hub.index.borrow().sockets.get(key).map(|s| s.encoding);
                    if let Some(p) = encoding.and_then(|e| event.payload(e)) {
                        hub.send_payload(key, p);
                    }
                }
                Some(None) => hub.send_json(key, &outbound::cache_miss(dialect, &ch)),
                None => {}
            }
            Ok(Some((s.head, s.stream_id)))
        };
        let shard = self.shard();
        let owner = shard.channel_owner(self.app, &channel);
        let request = OwnerSubscribe {
            app: self.app,
            channel: channel.clone(),
            shard: shard.id,
            socket: self.id,
            member,
            again: already,
        };
        let Some((attach, stream_id)) = shard.invoke_on_then(owner, request, on_answer).await?? else { return Ok(()) };
        if annotations {
            self.send_summaries(&channel, &stream_id).await;
        }
        let resumed = self.resumed.borrow_mut().as_mut().and_then(|r| r.remove(&channel));
        match (rewind, resumed) {
            (Some(rewind), _) => self.rewind(&channel, rewind, attach).await,
            // A resume for this channel came first: send what was published since, behind
            // the gate like any replay.
            (None, Some((stream_id, serial))) if attach > serial => {
                let position = ResumePosition { stream_id: Some(stream_id.to_string()), serial, last_message_id: None };
                let step = self.ask_replay(channel, position, false).await;
                let _ = self.finish_replay(step, None).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `ANNOTATION_SUBSCRIBE` needs annotations on for the channel and a capability set (of
    /// the sign-in or the token) granting `subscribe` and `annotation-subscribe` on it.
    fn check_annotation_mode(&self, channel: &str, enabled: bool) -> Result<(), ProtocolError> {
        if !enabled {
            return Err(ProtocolError::channel(format!(
                "ANNOTATION_SUBSCRIBE: annotations are not enabled for {channel} (or the connection is not protocol=2)"
            )));
        }
        let caps = self.shard().identities.borrow().get(&self.id).and_then(|i| i.capabilities.clone());
        if caps.is_some_and(|c| c.allows(Op::Subscribe, channel) && c.allows(Op::AnnotationSubscribe, channel)) {
            Ok(())
        } else {
            Err(ProtocolError::auth(format!(
                "ANNOTATION_SUBSCRIBE needs a capability set (sign-in or token) granting subscribe and annotation-subscribe on {channel}"
            )))
        }
    }

    /// One `message.summary` per stored (message, type) summary of the channel, sent while
    /// the subscription's gate holds live frames back, so that a live summary that follows is
    /// never overtaken by an older stored one.
    async fn send_summaries(&self, channel: &str, stream_id: &str) {
        let shard = self.shard();
        let Some(store) = shard.owner_store(self.app, channel) else { return };
        // Crosses to the owner's store thread.
        let summaries = match store.summaries(&self.app().id, channel).await {
            Ok(s) => s,
            Err(e) => {
                log::warn!("shard {}: summaries of {channel} could not be read: {e}", shard.id);
                // The subscription stands; the client is told what it lacks (4100: retry later).
                let why = format!("the annotation summaries could not be read ({e}); subscribe again to get them");
                self.send(&outbound::channel_error(self.dialect, 4100, channel, &why));
                return;
            }
        };
        for s in summaries {
            let message_serial = versioned::serial_string(s.message, stream_id);
            self.send(&annotations::summary_frame(channel, &message_serial, &s.annotation_type, &s.summary));
        }
    }

    /// Checks the `auth` signature of a private or presence subscribe; returns the presence
    /// member it announces.
    fn authorize(&self, sub: &Subscribe, kind: Kind) -> Result<Option<Member>, ProtocolError> {
        let app = self.app();
        let auth_value = sub
            .auth
            .as_deref()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| ProtocolError::auth("Authentication signature required for this channel"))?;
        let mut member = None;
        let channel_data = if kind == Kind::Presence {
            let cd = sub
                .channel_data
                .as_deref()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| ProtocolError::invalid_format("Missing channel_data for presence channel"))?;
            let m = inbound::presence_member(cd)?;
            // Whole kilobytes are compared, as the reference does: 1.9 KB passes a 1 KB limit.
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
        Ok(member)
    }
}
