//! `sockudo:resume` (`docs/protocol/v2.md#connection-recovery`): each channel's owner answers
//! from its hot buffer (queued on the socket when the answer is handled, in mesh order) or
//! points to durable history, read here from the owner's store (the cold tier).

use crate::protocol::filter::{self, Subject};
use crate::protocol::inbound::{self, ClientFrame, ResumePosition};
use crate::protocol::outbound::{self, Encoding};
use crate::protocol::recovery::{ResumeFailure, ResumeReason};
use crate::protocol::versioned;
use crate::protocol::ProtocolError;
use crate::shard::channel::replay::{Recovery, Replay};
use crate::shard::Shard;
use crate::ws::hub::Hub;
use crate::ws::index::SocketKey;
use crate::ws::session::Session;
use std::rc::Rc;
use std::sync::Arc;
use storage::{Bounds, Direction, HistoryQuery, HistoryView, RecordKind, VersionAction};

impl Session {
    /// A channel subscribed in this same read still
    /// holds its continuity gate, so live frames wait behind the replay; on an older
    /// subscription, messages after the attach serial already arrived live and are not repeated.
    pub(in crate::ws) async fn resume(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        if !self.app().recovery_on(self.shard().ctx.config.recovery_enabled) {
            return Err(ProtocolError::RecoveryDisabled);
        }
        let request = inbound::Resume::parse(frame)?;
        if request.positions.is_empty() {
            return Err(ProtocolError::NoRecoveryPositions);
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
                    self.resumed
                        .borrow_mut()
                        .get_or_insert_with(Default::default)
                        .insert(r.channel.clone(), (r.stream_id.clone(), at));
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
    pub(in crate::ws) fn ask_replay(
        &self,
        channel: Arc<str>,
        position: ResumePosition,
        legacy: bool,
    ) -> impl std::future::Future<Output = Step> {
        let (hub, key, ch) = (self.hub.clone(), self.key, channel.clone());
        let on_answer = move |_: &Rc<Shard>, recovery: Recovery| match recovery {
            Recovery::Hot { stream_id, messages } => {
                let cap = replay_cap(&hub, key, &ch);
                let full = hub.index.borrow().sockets.get(key).is_some_and(|s| s.encoding == Encoding::V2JsonFull);
                let filter = hub.index.borrow().sockets.get(key).and_then(|s| s.channels.get(&ch)?.filter.clone());
                let mut sent = 0;
                let mut last = None;
                for m in messages.iter().filter(|m| m.serial <= cap) {
                    last = Some((m.serial, m.message_id.to_string()));
                    if filter.as_ref().is_some_and(|f| !f.matches(&Subject::new(m.attrs.as_deref(), &m.frame))) {
                        continue;
                    }
                    // In `append_mode=full` only a message's newest append is replayed: its
                    // text includes every older one.
                    let frame = match (full, m.append_to, &m.full) {
                        (true, Some(_), Some(full)) => full,
                        (true, Some(_), None) => continue,
                        _ => &m.frame,
                    };
                    hub.send_payload(key, frame);
                    sent += 1;
                }
                mark_replayed(&hub, key, &ch, last.as_ref().map(|l| l.0));
                Step::Done(Ok(ChannelRecovered { channel: ch, source: "hot", replayed: sent, stream_id, last }))
            }
            Recovery::Cold { stream_id, after, head } => {
                let head = head.min(replay_cap(&hub, key, &ch));
                Step::Cold { channel: ch, stream_id, after, head }
            }
            Recovery::Failed(failure) => Step::Done(Err((ch, failure))),
        };
        let shard = self.shard();
        let owner = shard.channel_owner(self.app, &channel);
        let call = shard.invoke_on_then(
            owner,
            Replay { app: self.app, channel: channel.clone(), position, legacy },
            on_answer,
        );
        async move {
            call.await.unwrap_or_else(|e| {
                log::debug!("recovery of {channel}: {e}");
                Step::Done(Err((channel, ResumeFailure::new(ResumeReason::FailedToDeliverRecoveryPayload))))
            })
        }
    }

    /// Completes one channel's recovery (the cold tier if the owner pointed there) and reports
    /// a failure with `sockudo:resume_failed`.
    pub(in crate::ws) async fn finish_replay(
        &self,
        step: Step,
        last_message_id: Option<&str>,
    ) -> Result<ChannelRecovered, (Arc<str>, ResumeFailure)> {
        let outcome = match step {
            Step::Done(outcome) => outcome,
            Step::Cold { channel, stream_id, after, head } => {
                self.cold_replay(channel, stream_id, after, head, last_message_id).await
            }
        };
        if let Err((channel, f)) = &outcome {
            // `channel` is in the data too: sockudo-python 2.2 reads it there.
            self.send(&outbound::resume_failed(channel, &FailedChannel { channel, failure: f }));
        }
        outcome
    }

    /// The cold tier: serials `after + 1 ..= head` from the owner's
    /// store, which must be exactly those, contiguous and of the same stream.
    async fn cold_replay(
        &self,
        channel: Arc<str>,
        stream_id: Arc<str>,
        after: u64,
        head: u64,
        last_message_id: Option<&str>,
    ) -> Result<ChannelRecovered, (Arc<str>, ResumeFailure)> {
        let fail = |reason, oldest: Option<u64>| {
            let mut f = ResumeFailure::new(reason);
            f.current_stream_id = Some(stream_id.to_string());
            f.oldest_available_serial = oldest;
            f.newest_available_serial = Some(head);
            (channel.clone(), f)
        };
        let done = |replayed, last| ChannelRecovered {
            channel: channel.clone(),
            source: "cold",
            replayed,
            stream_id: stream_id.clone(),
            last,
        };
        if after >= head {
            return Ok(done(0, None));
        }
        let Some(store) = self.shard().owner_store(self.app, &channel) else {
            return Err(fail(ResumeReason::HotReplayExpiredAndDurableHistoryDisabled, None));
        };
        let query = HistoryQuery {
            app: self.app().id.clone(),
            channel: channel.to_string(),
            limit: (head - after) as usize,
            direction: Direction::OldestFirst,
            bounds: Bounds { start_serial: Some(after + 1), end_serial: Some(head), ..Bounds::default() },
            cursor: None,
            view: HistoryView::Raw,
        };
        // Crosses to the owner's store thread; this channel's gate holds live frames meanwhile.
        let page = match store.read_history(query).await {
            Ok(p) => p,
            Err(_) => return Err(fail(ResumeReason::DurableHistoryReadFailed, None)),
        };
        let oldest = page.continuity.as_ref().and_then(|c| c.oldest_available_serial);
        match page.continuity.as_ref() {
            Some(c) if *c.stream_id != *stream_id => {
                return Err(fail(ResumeReason::DurableStreamChangedDuringReconnect, oldest));
            }
            None => return Err(fail(ResumeReason::DurableHistoryEmptyAfterPriorWrites, None)),
            Some(_) if oldest.is_none_or(|o| o > after + 1) => {
                return Err(fail(ResumeReason::RetainedHistoryFloorAheadOfRequestedSerial, oldest));
            }
            Some(_) => {}
        }
        if page.items.iter().enumerate().any(|(i, item)| item.serial != after + 1 + i as u64) {
            return Err(fail(ResumeReason::DurableHistoryNotContiguous, oldest));
        }
        if page.items.last().map(|i| i.serial) != Some(head) {
            return Err(fail(ResumeReason::DurableHistoryEndedBeforeStreamHead, oldest));
        }
        let full = self.with_socket(|s| s.encoding == Encoding::V2JsonFull).unwrap_or(false);
        let newest_appends = if full { self.newest_appends(store, &channel, &page.items).await } else { Vec::new() };
        let filter = self.filter_of(&channel);
        let mut replayed = 0;
        for (i, item) in page.items.iter().enumerate().filter(|(_, i)| Some(i.message_id.as_str()) != last_message_id) {
            if !filter::row_passes(filter.as_deref(), item) {
                continue;
            }
            let frame = match newest_appends.iter().find(|(at, _)| *at == i) {
                Some((_, whole)) => whole,
                // In `append_mode=full` only a message's newest append is replayed, with the
                // whole text; older ones are included in it.
                None if full && is_append(item) => continue,
                None => &item.payload,
            };
            self.hub.send_payload(self.key, frame);
            replayed += 1;
        }
        mark_replayed(&self.hub, self.key, &channel, Some(head));
        let last = page.items.last().map(|i| (i.serial, i.message_id.clone()));
        Ok(done(replayed, last))
    }
}

impl Session {
    /// For `append_mode=full`: the position in `items` of each message's newest append, with
    /// that append's frame carrying the message's whole text as the store holds it now. A
    /// message the store no longer holds keeps its fragment.
    async fn newest_appends(
        &self,
        store: &storage::Store,
        channel: &str,
        items: &[storage::HistoryItem],
    ) -> Vec<(usize, Vec<u8>)> {
        let mut newest: Vec<(u64, usize)> = Vec::new();
        for (i, item) in items.iter().enumerate().filter(|(_, i)| is_append(i)) {
            let RecordKind::Mutation { message } = item.kind else { continue };
            match newest.iter_mut().find(|(m, _)| *m == message) {
                Some(slot) => slot.1 = i,
                None => newest.push((message, i)),
            }
        }
        let app_id = &self.app().id;
        let mut out = Vec::with_capacity(newest.len());
        for (message, i) in newest {
            // Crosses to the owner's store thread; the channel's gate holds live frames.
            let whole = match store.message(app_id, channel, message, false).await {
                Ok(Some(state)) => versioned::with_data(&items[i].payload, &state.data),
                _ => items[i].payload.clone(),
            };
            out.push((i, whole));
        }
        out
    }
}

fn is_append(item: &storage::HistoryItem) -> bool {
    matches!(item.kind, RecordKind::Mutation { .. }) && item.event_name == versioned::event_name(VersionAction::Append)
}

/// Where one channel's resume stands once its owner answered.
pub(in crate::ws) enum Step {
    Done(Result<ChannelRecovered, (Arc<str>, ResumeFailure)>),
    /// Durable history must supply serials `after + 1 ..= head`.
    Cold {
        channel: Arc<str>,
        stream_id: Arc<str>,
        after: u64,
        head: u64,
    },
}

pub(in crate::ws) struct ChannelRecovered {
    channel: Arc<str>,
    source: &'static str,
    replayed: usize,
    stream_id: Arc<str>,
    /// Serial and message id of the last message replayed.
    last: Option<(u64, String)>,
}

/// The newest serial a replay may send on this socket: everything while the subscription's
/// gate is closed (live frames wait behind the replay); only up to the attach serial once it
/// was released, since later messages already arrived live.
fn replay_cap(hub: &Hub, key: SocketKey, channel: &str) -> u64 {
    let index = hub.index.borrow();
    match index.sockets.get(key).and_then(|s| s.channels.get(channel)) {
        Some(sub) if sub.gate.is_none() => sub.attach_serial,
        _ => u64::MAX,
    }
}

/// Records what a replay sent, so the gate does not send it again.
fn mark_replayed(hub: &Hub, key: SocketKey, channel: &str, serial: Option<u64>) {
    let Some(serial) = serial else { return };
    let mut index = hub.index.borrow_mut();
    if let Some(sub) = index.sockets.get_mut(key).and_then(|s| s.channels.get_mut(channel)) {
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
