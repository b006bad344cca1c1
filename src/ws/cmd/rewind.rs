//! Rewind on subscribe (`docs/protocol/v2.md#rewind`): history up to the attach serial, oldest
//! first, then the live frames the continuity gate held meanwhile, then `rewind_complete`.

use crate::protocol::filter;
use crate::protocol::history::Rewind;
use crate::protocol::ProtocolError;
use crate::protocol::{outbound, versioned};
use crate::time::unix_ms;
use crate::ws::session::Session;
use std::sync::Arc;
use storage::{Bounds, Direction, HistoryQuery, HistoryView};

impl Session {
    pub(in crate::ws) async fn rewind(
        &self,
        channel: &Arc<str>,
        rewind: Rewind,
        attach: u64,
    ) -> Result<(), ProtocolError> {
        let Some(store) = self.shard().owner_store(self.app, channel) else { return Ok(()) };
        let max = self.shard().ctx.config.history.max_page_size;
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
        let query = HistoryQuery {
            app: self.app().id.clone(),
            channel: channel.to_string(),
            limit,
            direction,
            bounds,
            cursor: None,
            view: HistoryView::Latest,
        };
        // Crosses to the owner's store thread; the gate holds live frames meanwhile.
        let page = if attach == 0 { None } else { Some(store.read_history(query).await) };
        let page = match page.transpose() {
            Ok(page) => page,
            Err(e) => {
                self.hub.release_gates(self.key, Some(channel));
                return Err(ProtocolError::history(format!("rewind failed, history unavailable: {e}")));
            }
        };
        let mut items: Vec<&storage::HistoryItem> = page.iter().flat_map(|p| p.items.iter()).collect();
        if direction == Direction::NewestFirst {
            items.reverse();
        }
        let stream_id = page.as_ref().and_then(|p| p.continuity.as_ref()).map_or("", |c| c.stream_id.as_str());
        let filter = self.filter_of(channel);
        let mut sent = 0;
        for item in &items {
            let (frame, _) = versioned::shown(item, channel, stream_id);
            // Filtered on the message as published (its event and tags), like live delivery.
            if !filter::row_passes(filter.as_deref(), item) {
                continue;
            }
            self.hub.send_payload(self.key, &frame);
            sent += 1;
        }
        self.with_socket(|s| {
            if let Some(sub) = s.channels.get_mut(channel) {
                sub.replayed_upto = sub.replayed_upto.max(attach);
            }
        });
        let live_count = self.hub.release_gates(self.key, Some(channel));
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
            historical_count: sent,
            live_count,
            complete: !truncated_by_retention && !truncated_by_limit,
            truncated_by_retention,
            truncated_by_limit,
        };
        self.send(&outbound::rewind_complete(channel, &summary));
        Ok(())
    }
}
