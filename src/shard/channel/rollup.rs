//! Egress rollup of appends on AI channels (`docs/protocol/v2.md#rollup`). When a channel's
//! window is closed, an append goes out at once and opens it; appends released while it is
//! open are held, per message, and leave together when it closes: one frame per message whose
//! fragment is the concatenation of the held ones and whose serial and version are the
//! newest's. The store, the replay buffer, history and GET latest see every append; only the
//! live frames are fewer, so live serials may skip values.
//!
//! Held frames never change the order of serials on the wire: anything else delivered on the
//! channel (a publish, an update, a delete, a terminal append, an annotation, a member event)
//! flushes them first, and the flushed frames go out in serial order. Nor do they give a client
//! a fragment twice: every place a client learns a position (a subscribe, a resume, GET latest)
//! flushes first, so a held fragment is never older than a position the client holds.

use super::broadcast::{Broadcast, Payload};
use super::ChannelState;
use crate::config::AppIdx;
use crate::protocol::outbound::Encoding;
use crate::protocol::versioned;
use crate::shard::route::{Request, Responder};
use crate::shard::Shard;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// What the owner needs of an append to hold it.
pub struct RollupPart {
    /// The message's history serial.
    pub message: u64,
    pub fragment: String,
    /// A terminal append (`extras.ai.transport.status` `complete` or `cancelled`) is never
    /// held: it flushes the others and goes out at once.
    pub terminal: bool,
}

/// A channel's open window: when it opened, and the appends released since.
pub struct Rollup {
    opened: Instant,
    held: Vec<Held>,
}

struct Held {
    message: u64,
    text: String,
    /// Fragments in `text`.
    count: usize,
    newest: Broadcast,
}

impl Held {
    /// One frame for the held appends of a message: the newest's, with all their text.
    fn into_broadcast(self) -> Broadcast {
        if self.count == 1 {
            return self.newest;
        }
        let Some(delta) = self.newest.payload(Encoding::V2Json) else { return self.newest };
        let v2: Payload = Arc::new(versioned::with_append_text(delta, &self.text));
        let mut b = Broadcast::new(self.newest.serial, self.newest.published_at, None, v2);
        if let Some(full) = self.newest.payload(Encoding::V2JsonFull) {
            b = b.with_full_append(full.clone());
        }
        b
    }
}

impl Shard {
    /// Delivers an append of an AI channel with a rollup window: held while the channel's
    /// window is open, else sent at once, opening the window.
    pub(super) fn fan_out_append(
        self: &Rc<Self>,
        ch: &mut ChannelState,
        app: AppIdx,
        channel: &Arc<str>,
        message: Broadcast,
        part: RollupPart,
    ) {
        if part.terminal {
            self.fan_out(ch, app, channel, &message, None);
            return;
        }
        if let Some(r) = &mut ch.rollup {
            match r.held.iter_mut().find(|h| h.message == part.message) {
                Some(h) => {
                    h.text.push_str(&part.fragment);
                    h.count += 1;
                    h.newest = message;
                }
                None => r.held.push(Held { message: part.message, text: part.fragment, count: 1, newest: message }),
            }
            return;
        }
        self.fan_out(ch, app, channel, &message, None);
        let opened = Instant::now();
        ch.rollup = Some(Rollup { opened, held: Vec::new() });
        let (shard, channel, window) = (self.clone(), channel.clone(), self.ctx.config.ai_transport.rollup);
        crate::shard::spawn(self, "rollup window", async move {
            glommio::timer::sleep(window).await;
            let mut channels = shard.channels.borrow_mut();
            let Some(ch) = channels.get_mut(app, &channel) else { return };
            if ch.rollup.as_ref().is_some_and(|r| r.opened == opened) {
                shard.flush_rollup(ch, app, &channel);
            }
        });
    }

    /// Closes the channel's window: what it holds goes out, in serial order.
    pub(super) fn flush_rollup(&self, ch: &mut ChannelState, app: AppIdx, channel: &Arc<str>) {
        let Some(mut r) = ch.rollup.take() else { return };
        r.held.sort_by_key(|h| h.newest.serial);
        for h in r.held {
            self.send_to_subscribers(ch, app, channel, &h.into_broadcast(), None);
        }
    }
}

/// To the owner: send what the channel's rollup window holds now. GET latest asks before it
/// reads, so the text it answers with is never older than a frame still held.
pub struct FlushRollup {
    pub app: AppIdx,
    pub channel: Arc<str>,
}

impl Request for FlushRollup {
    type Reply = ();

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        if let Some(ch) = shard.channels.borrow_mut().get_mut(self.app, &self.channel) {
            shard.flush_rollup(ch, self.app, &self.channel);
        }
        reply.send(());
    }
}
