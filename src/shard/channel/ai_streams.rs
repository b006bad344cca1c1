//! An AI channel's open streams (`docs/protocol/v2.md#ai-transport-limits`): the mutable
//! messages whose `extras.ai.transport.status` is `streaming`, so that a channel holds at most
//! `ai_transport.max_open_streaming_messages_per_channel` of them. A stream closes with a
//! terminal status or a delete; one left without a change for `ai_transport.rollup.orphan_ttl_ms`
//! (an agent that died mid-answer) stops counting, so a channel is never locked by orphans.
//!
//! The owner keeps this in memory only: after a restart a stream counts again from its next
//! change.

use super::ChannelState;
use crate::config::AiTransport;
use crate::protocol::ai::AiError;
use ahash::AHashMap;
use std::time::Instant;

/// Open streams by the history serial of their message, with their last change.
#[derive(Default)]
pub struct OpenStreams(AHashMap<u64, Instant>);

impl ChannelState {
    /// Whether one more stream may open on the channel (`message`: the one about to, if it
    /// exists already). Idle streams are forgotten on the way.
    pub(super) fn admit_stream(&mut self, ai: &AiTransport, message: Option<u64>, now: Instant) -> Result<(), AiError> {
        let Some(open) = self.open_streams.as_deref_mut() else { return Ok(()) };
        if message.is_some_and(|m| open.0.contains_key(&m)) {
            return Ok(());
        }
        open.0.retain(|_, changed| now.duration_since(*changed) < ai.orphan_ttl);
        if open.0.len() >= ai.max_open_streams {
            return Err(AiError::limit(format!(
                "the channel has {} open streaming messages; at most {} (ai_transport.max_open_streaming_messages_per_channel)",
                open.0.len(),
                ai.max_open_streams
            )));
        }
        Ok(())
    }

    /// Records that `message` streams (`open`) or has ended, as of `now`.
    pub(super) fn track_stream(&mut self, message: u64, open: bool, now: Instant) {
        match (&mut self.open_streams, open) {
            (Some(s), true) => {
                s.0.insert(message, now);
            }
            (None, true) => self.open_streams = Some(Box::new(OpenStreams(AHashMap::from_iter([(message, now)])))),
            (Some(s), false) => {
                s.0.remove(&message);
                if s.0.is_empty() {
                    self.open_streams = None;
                }
            }
            (None, false) => {}
        }
    }
}
