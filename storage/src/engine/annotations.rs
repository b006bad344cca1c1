use super::versions::take_page;
use super::{Engine, WriteRound};
use crate::keys::{annotation_key, channel_key, message_prefix, parse_summary_key, serial_of_history_key, summary_key};
use crate::{AnnotationRecord, AnnotationWrite, AnnotationsPage, AnnotationsQuery, StorageError, StoredSummary};

impl Engine {
    /// Stages the annotation event and its type's summary. Refused unless the message is a
    /// stored mutable message and the event is its next one: annotations under a message that
    /// is gone would be left for nothing to remove, and a gap or repeat means the server's
    /// numbering went astray.
    pub(crate) fn stage_annotation(
        &self,
        round: &mut WriteRound,
        app: &str,
        channel: &str,
        write: AnnotationWrite,
    ) -> Result<(), StorageError> {
        let AnnotationWrite { message, record, summary } = write;
        let refuse = |why: String| Err(StorageError::InvalidInput(format!("annotation of message {message}: {why}")));
        let ckey = channel_key(app, channel)?;
        let prefix = message_prefix(&ckey, message);
        let newest = match round.annotated.get(&prefix) {
            Some(&newest) => newest,
            None if !self.message_known(&ckey, message)? => return refuse("no such mutable message".into()),
            None => self.newest_annotation(&prefix)?,
        };
        if record.serial != newest + 1 {
            return refuse(format!("serial {} given, next is {}", record.serial, newest + 1));
        }
        let summary_key = summary_key(&ckey, message, &record.annotation_type);
        // fjall refuses (panics on) longer keys.
        if summary_key.len() > usize::from(u16::MAX) {
            return refuse("annotation type too long".into());
        }
        if summary.is_empty() {
            round.batch.remove(&self.summaries, summary_key);
        } else {
            round.batch.insert(&self.summaries, summary_key, summary);
        }
        round.batch.insert(&self.annotations, annotation_key(&ckey, message, record.serial), record.encode());
        round.annotated.insert(prefix, record.serial);
        Ok(())
    }

    /// The serial of the message's newest stored annotation event, 0 without any.
    fn newest_annotation(&self, prefix: &[u8]) -> Result<u64, StorageError> {
        match self.annotations.prefix(prefix).next_back() {
            None => Ok(0),
            Some(row) => {
                let (k, _) = row.map_err(self.err("read annotations"))?;
                serial_of_history_key(&k).ok_or_else(|| StorageError::corrupt(&self.path, "short annotation key"))
            }
        }
    }

    pub(crate) fn annotations(
        &self,
        app: &str,
        channel: &str,
        message: u64,
        q: AnnotationsQuery,
    ) -> Result<Option<AnnotationsPage>, StorageError> {
        if q.limit == 0 {
            return Err(StorageError::InvalidInput("annotations limit must be positive".into()));
        }
        let ckey = channel_key(app, channel)?;
        if !self.message_known(&ckey, message)? {
            return Ok(None);
        }
        let Some(first) = q.after.checked_add(1) else {
            return Ok(Some(AnnotationsPage { items: vec![], has_more: false }));
        };
        let range = annotation_key(&ckey, message, first)..=annotation_key(&ckey, message, u64::MAX);
        let rows = self.decode_rows(self.annotations.range(range), AnnotationRecord::decode, "annotation");
        let wanted = q.annotation_type.as_deref();
        let (items, has_more) = take_page(rows, q.limit, |a| wanted.is_none_or(|t| a.annotation_type == t))?;
        Ok(Some(AnnotationsPage { items, has_more }))
    }

    pub(crate) fn summaries(&self, app: &str, channel: &str) -> Result<Vec<StoredSummary>, StorageError> {
        let ckey = channel_key(app, channel)?;
        self.summaries
            .prefix(&ckey)
            .map(|row| {
                let (k, v) = row.map_err(self.err("read summaries"))?;
                let (message, annotation_type) = parse_summary_key(&k, ckey.len())
                    .ok_or_else(|| StorageError::corrupt(&self.path, "undecodable summary key"))?;
                Ok(StoredSummary { message, annotation_type, summary: v.to_vec() })
            })
            .collect()
    }
}
