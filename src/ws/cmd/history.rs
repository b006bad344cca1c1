//! `sockudo:channel_history` (`docs/protocol/v2.md#websocket-history`): a page of a
//! subscribed channel's durable history, read straight from the owner's store thread.

use crate::protocol::capabilities::Op;
use crate::protocol::history::{page_json, AttachBounds};
use crate::protocol::inbound::{self, ClientFrame};
use crate::protocol::outbound::{self, Dialect};
use crate::protocol::ProtocolError;
use crate::ws::session::Session;
use storage::{Direction, HistoryQuery, HistoryView, StorageError};

impl Session {
    /// A session handles one frame at a time, so a socket never has more than one history
    /// read in flight (the protocol allows two).
    pub(in crate::ws) async fn channel_history(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        if self.dialect == Dialect::V1 {
            return Err(ProtocolError::history("channel_history is only supported on protocol V2"));
        }
        let request = inbound::HistoryRequest::parse(frame)?;
        let channel = request.channel;
        self.require(Op::History, &channel)?;
        let Some(store) = self.shard().owner_store(self.app, &channel) else {
            return Err(ProtocolError::history("durable history is not enabled for this app (history.enabled)"));
        };
        let attach = self
            .with_socket(|s| s.channels.get(channel.as_str()).map(|sub| sub.attach_serial))
            .flatten()
            .ok_or_else(|| ProtocolError::history_request(format!("socket is not subscribed to {channel}")))?;
        let p = request.params;
        let max = self.shard().ctx.config.history.max_page_size.min(1000);
        let limit = p.limit.unwrap_or(100).min(max);
        let direction = p.direction.unwrap_or(Direction::NewestFirst);
        let mut bounds = p.bounds;
        if p.until_attach {
            bounds.end_serial = Some(bounds.end_serial.map_or(attach, |e| e.min(attach)));
        }
        let query = HistoryQuery {
            app: self.app().id.clone(),
            channel: channel.clone(),
            limit,
            direction,
            bounds,
            cursor: p.cursor,
            view: HistoryView::Latest,
        };
        // Crosses to the owner's store thread.
        let page = store.read_history(query).await.map_err(|e| match e {
            StorageError::Cursor(c) => ProtocolError::invalid_format(c),
            other => ProtocolError::history(format!("history unavailable: {other}")),
        })?;
        let attach_bounds = AttachBounds { until_attach: p.until_attach, attach_serial: Some(attach) };
        let body = page_json(&channel, &page, direction, limit, &bounds, Some(attach_bounds));
        self.send(&outbound::channel_history(&channel, &body));
        Ok(())
    }
}
