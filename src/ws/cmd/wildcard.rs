//! `sockudo:subscribe` to a wildcard pattern such as `orders.*`
//! (`docs/protocol/v2.md#wildcard-subscriptions`). The socket is indexed here under the
//! pattern behind a shut continuity gate; every shard then records that this shard has a
//! subscriber of the pattern, since any of them may own a matching channel; once all have,
//! the socket is told it is subscribed and the gate opens. A message published meanwhile
//! waits behind the gate rather than arriving before the confirmation.

use crate::protocol::capabilities::Op;
use crate::protocol::inbound::Subscribe;
use crate::protocol::{outbound, wildcard, ProtocolError};
use crate::shard::patterns::PatternChange;
use crate::ws::index::Subscription;
use crate::ws::session::Session;
use std::sync::Arc;

impl Session {
    pub(in crate::ws) async fn subscribe_pattern(&self, sub: Subscribe) -> Result<(), ProtocolError> {
        let app = self.app();
        wildcard::validate(&sub.channel, app.limits.max_channel_name_length)?;
        if sub.rewind.is_some() {
            return Err(ProtocolError::channel(format!(
                "Wildcard subscription '{}' cannot rewind: a pattern has no history of its own",
                sub.channel
            )));
        }
        if sub.annotations {
            return Err(ProtocolError::channel(format!(
                "ANNOTATION_SUBSCRIBE is not supported on wildcard subscription '{}'",
                sub.channel
            )));
        }
        self.require(Op::Subscribe, &sub.channel)?;
        let pattern: Arc<str> = sub.channel.into();
        let (app_idx, key) = (self.app, self.key);
        let mut filter = sub.filter;
        let known = {
            let mut index = self.hub.index.borrow_mut();
            let Some(s) = index.live(key, self.id) else { return Ok(()) };
            match s.channels.get(&pattern) {
                // Subscribed again: the new filter (or none) replaces the old one.
                Some(old) => {
                    let old = old.filter.clone();
                    index.remove_pattern_subscriber(app_idx, &pattern, key, old.as_ref());
                    let shared = index.add_pattern_subscriber(app_idx, &pattern, key, filter.take());
                    if let Some(sub) = index.sockets[key].channels.get_mut(&pattern) {
                        sub.filter = shared;
                    }
                    true
                }
                None => {
                    let shared = index.add_pattern_subscriber(app_idx, &pattern, key, filter.take());
                    let s = &mut index.sockets[key];
                    s.channels.insert(pattern.clone(), Subscription::new(None, 0, true, shared));
                    s.gates += 1;
                    false
                }
            }
        };
        if known {
            self.send(&outbound::pattern_subscribed(&pattern));
            return Ok(());
        }
        let shard = self.shard();
        let join = PatternChange { app: app_idx, pattern: pattern.clone(), shard: shard.id, joined: true };
        let mut failed = None;
        for call in shard.invoke_on_all(join) {
            if let Err(e) = call.await {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            // Undone as an unsubscribe would, unless one (or a close) came first.
            self.leave(&pattern);
            return Err(e.into());
        }
        // Unsubscribed or closed meanwhile: that already told every shard it left.
        if self.with_socket(|s| s.channels.contains_key(&pattern)).unwrap_or(false) {
            self.send(&outbound::pattern_subscribed(&pattern));
            self.hub.release_gates(key, Some(&pattern));
        }
        Ok(())
    }
}
