use super::Engine;
use crate::cursor::{CursorCheck, CursorCodec, CursorError};
use crate::keys::{channel_key, history_key, serial_of_history_key};
use crate::{
    Continuity, Direction, HistoryItem, HistoryPage, HistoryQuery, HistoryRecord, HistoryView, RecordKind, StorageError,
};

impl Engine {
    pub(crate) fn read_history(&self, q: &HistoryQuery, cursors: &CursorCodec) -> Result<HistoryPage, StorageError> {
        if q.limit == 0 {
            return Err(StorageError::InvalidInput("history limit must be positive".into()));
        }
        let ckey = channel_key(&q.app, &q.channel)?;
        let Some(meta) = self.metas.get(&ckey) else {
            if q.cursor.is_some() {
                return Err(StorageError::Cursor(CursorError::StreamChanged));
            }
            return Ok(HistoryPage { items: vec![], has_more: false, next_cursor: None, continuity: None });
        };
        let cursor_serial = match &q.cursor {
            Some(encoded) => {
                let check = CursorCheck {
                    app: &q.app,
                    channel: &q.channel,
                    direction: q.direction,
                    bounds: &q.bounds,
                    stream_id: &meta.stream_id,
                    oldest_retained_serial: meta.oldest_serial,
                };
                Some(cursors.decode(encoded, &check).map_err(StorageError::Cursor)?.serial)
            }
            None => None,
        };
        let continuity = Some(Continuity::of(meta, &q.bounds));
        let mut lo = meta.oldest_serial.max(q.bounds.start_serial.unwrap_or(0));
        let mut hi = meta.newest_serial().min(q.bounds.end_serial.unwrap_or(u64::MAX));
        match (cursor_serial, q.direction) {
            (Some(c), Direction::OldestFirst) => lo = lo.max(c.saturating_add(1)),
            (Some(c), Direction::NewestFirst) => hi = hi.min(c.saturating_sub(1)),
            (None, _) => {}
        }
        if lo > hi || !meta.has_retained() {
            return Ok(HistoryPage { items: vec![], has_more: false, next_cursor: None, continuity });
        }
        let range = self.history.range(history_key(&ckey, lo)..=history_key(&ckey, hi));
        let rows: Box<dyn Iterator<Item = fjall::Result<fjall::KvPair>>> = match q.direction {
            Direction::OldestFirst => Box::new(range),
            Direction::NewestFirst => Box::new(range.rev()),
        };
        let start_time = q.bounds.start_time_ms.unwrap_or(0);
        let end_time = q.bounds.end_time_ms.unwrap_or(u64::MAX);
        let mut items = Vec::with_capacity(q.limit.min(1024));
        let mut has_more = false;
        // The Latest view leaves mutation rows out before counting against the limit.
        let latest = q.view == HistoryView::Latest;
        for row in rows {
            let (k, v) = row.map_err(self.err("read history"))?;
            let corrupt = || StorageError::corrupt(&self.path, "undecodable history row");
            let t = HistoryRecord::published_at_of(&v).ok_or_else(corrupt)?;
            // Publish time never decreases along serials, so leaving the window ends the scan.
            let (before, past) = match q.direction {
                Direction::OldestFirst => (t < start_time, t > end_time),
                Direction::NewestFirst => (t > end_time, t < start_time),
            };
            if past {
                break;
            }
            if before {
                continue;
            }
            if latest && matches!(HistoryRecord::kind_of(&v).ok_or_else(corrupt)?, RecordKind::Mutation { .. }) {
                continue;
            }
            if items.len() == q.limit {
                has_more = true;
                break;
            }
            let serial = serial_of_history_key(&k).ok_or_else(corrupt)?;
            let rec = HistoryRecord::decode(&v).ok_or_else(corrupt)?;
            let message = match rec.kind {
                RecordKind::VersionedCreate if latest => self.message_state(&ckey, serial, false)?,
                _ => None,
            };
            items.push(HistoryItem {
                serial,
                published_at_ms: rec.published_at_ms,
                message_id: rec.message_id,
                event_name: rec.event_name,
                payload_size_bytes: rec.payload.len() as u64,
                payload: rec.payload,
                kind: rec.kind,
                tags: rec.tags,
                message,
            });
        }
        let next_cursor = match items.last() {
            Some(last) if has_more => {
                Some(cursors.next_cursor(&q.app, &q.channel, &meta.stream_id, last.serial, q.direction, q.bounds))
            }
            _ => None,
        };
        Ok(HistoryPage { items, has_more, next_cursor, continuity })
    }
}
