//! Connection recovery on the owner (`docs/protocol/v2.md#connection-recovery`): what follows a
//! client's position, from the hot buffer when it still holds every later message, else a
//! pointer to durable history with the head frozen now, else an explicit failure.

use super::stream::{Kept, ReplayGap};
use crate::config::AppIdx;
use crate::protocol::inbound::ResumePosition;
use crate::protocol::recovery::{ResumeFailure, ResumeReason};
use crate::shard::route::{Request, Responder};
use crate::shard::Shard;
use std::rc::Rc;
use std::sync::Arc;

/// To the owner: the messages after a client's recovery position.
pub struct Replay {
    pub app: AppIdx,
    pub channel: Arc<str>,
    pub position: ResumePosition,
    /// A serial-only position: only the hot tier may answer it.
    pub legacy: bool,
}

/// The owner's answer to a recovery position.
pub enum Recovery {
    /// The hot buffer holds every message after the position: these, oldest first.
    Hot {
        stream_id: Arc<str>,
        messages: Vec<Kept>,
    },
    /// Only durable history still holds them: read serials `after + 1 ..= head` of `stream_id`
    /// from the owner's store (the cold tier).
    Cold {
        stream_id: Arc<str>,
        after: u64,
        head: u64,
    },
    Failed(ResumeFailure),
}

impl Request for Replay {
    type Reply = Recovery;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let Replay { app, channel, position: pos, legacy } = self;
        let max = shard.ctx.apps.get(app).replay_window(shard.ctx.config.replay_window).count as u64;
        let durable = shard.history_store(app).is_some();
        let mut channels = shard.channels.borrow_mut();
        let ch = channels.entry(app, &channel);
        // The replay ends at the head: what a rollup window holds goes out first.
        shard.flush_rollup(ch, app, &channel);
        let stream = &ch.stream;
        let fail = |reason| {
            Recovery::Failed(ResumeFailure {
                reason,
                expected_stream_id: pos.stream_id.clone(),
                current_stream_id: Some(stream.id.to_string()),
                oldest_available_serial: stream.oldest_buffered(),
                newest_available_serial: Some(stream.head),
            })
        };
        let too_far = pos.serial <= stream.head && stream.head - pos.serial > max;
        let result = match stream.replay_after(pos.stream_id.as_deref(), pos.serial) {
            Err(ReplayGap::StreamMismatch) => fail(ResumeReason::StreamIdMismatch),
            Err(_) if legacy => fail(ResumeReason::LegacySerialOnlyPosition),
            Err(ReplayGap::Ahead) => fail(ResumeReason::PositionAheadOfDurableStream),
            _ if too_far => fail(ResumeReason::RecoveryWindowExceeded),
            Err(ReplayGap::NotBuffered) if durable => {
                Recovery::Cold { stream_id: stream.id.clone(), after: pos.serial, head: stream.head }
            }
            Err(ReplayGap::NotBuffered) => fail(ResumeReason::HotReplayExpiredAndDurableHistoryDisabled),
            Ok(messages) => Recovery::Hot { stream_id: stream.id.clone(), messages },
        };
        drop(channels);
        reply.send(result);
    }
}
