//! A channel's message stream as its owner keeps it
//! (`docs/protocol/v2.md#streams-and-serials`): the stream id, the next serial, and the hot
//! replay buffer of recent V2 frames that connection recovery reads. Serials are assigned here,
//! by the owner only, so serial order is fan-out order. With durable history a serial is
//! assigned before its append and delivered after it, so the stream tracks both: `assigned`
//! runs ahead of `head` by the appends in flight.

use super::broadcast::Payload;
use crate::config::ReplayWindow;
use crate::protocol::filter::Attrs;
use crate::protocol::outbound;
use ahash::AHashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

pub struct Stream {
    pub id: Arc<str>,
    /// Serial of the newest message delivered; 0 before the first. Positions, attach serials
    /// and recovery are all relative to it.
    pub head: u64,
    /// Serial of the newest message given a place (delivered or still being appended).
    assigned: u64,
    /// Bumped when in-flight serials are taken back, so that the later appends of the same
    /// failed run (which the store rejects too) do not take them back again.
    epoch: u64,
    /// Recent messages, oldest first, by serial (contiguous but for a serial the cluster log
    /// gave a mutation that did not apply, `mutate.rs`).
    replay: VecDeque<Kept>,
    /// Frame bytes held in `replay`.
    replay_bytes: usize,
    /// Message serial -> serial of its buffered append that holds the `full` frame.
    full_appends: AHashMap<u64, u64>,
    /// The store holds this stream's id (loaded at start, or made by a reset): it cannot be
    /// forgotten and made anew, or the store would refuse the new id.
    stored: bool,
}

/// A message in the replay buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Kept {
    pub serial: u64,
    pub at: Instant,
    pub message_id: Arc<str>,
    /// The V2 frame as it was delivered.
    pub frame: Payload,
    /// An append to the mutable message created at this serial.
    pub append_to: Option<u64>,
    /// For the newest buffered append of its message only: the frame sockets in
    /// `append_mode=full` got (the whole text). A full-mode replay sends that one and skips
    /// the message's older appends, whose text it already includes.
    pub full: Option<Payload>,
    /// What subscription filters see of it (`Broadcast::attrs`).
    pub attrs: Option<Arc<Attrs>>,
}

impl Kept {
    pub fn new(serial: u64, at: Instant, message_id: Arc<str>, frame: Payload) -> Kept {
        Kept { serial, at, message_id, frame, append_to: None, full: None, attrs: None }
    }

    fn bytes(&self) -> usize {
        self.frame.len() + self.full.as_ref().map_or(0, |f| f.len())
    }
}

/// Why a position cannot be replayed from memory (codes and reasons of
/// `docs/protocol/v2.md#recovery-failures`).
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayGap {
    StreamMismatch,
    /// Older than what the buffer still holds: the durable tier must answer.
    NotBuffered,
    Ahead,
}

/// How an entry of the cluster log fits the stream this node holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Fit {
    /// It takes the next serial: carry it out.
    Next,
    /// Already carried out (the log was read again): skip it.
    Seen,
    /// The cluster's stream is not the one held here (another id, or serials this node
    /// missed): the stream was restarted at the entry, and the store must restart it too.
    Rebased,
}

/// A stream id every node derives alike for `channel` of the app whose id hashes to
/// `app_hash` (UUID-shaped, like the random ones).
pub fn derived_id(app_hash: u64, channel: &str) -> Arc<str> {
    let a = shards::stable_hash_from(app_hash, &[channel.as_bytes(), b"stream"]);
    let b = shards::stable_hash_from(a, &[b"stream"]);
    let h = format!("{a:016x}{b:016x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..]).into()
}

impl Default for Stream {
    fn default() -> Stream {
        Stream::new()
    }
}

impl Stream {
    pub fn new() -> Stream {
        Stream { stored: false, ..Stream::resume(outbound::uuid_v4().into(), 0) }
    }

    /// A new stream with this id.
    pub fn named(id: Arc<str>) -> Stream {
        Stream { stored: false, ..Stream::resume(id, 0) }
    }

    /// A stream as durable history left it: its id and the newest stored serial.
    pub fn resume(id: Arc<str>, head: u64) -> Stream {
        Stream {
            id,
            head,
            assigned: head,
            epoch: 0,
            replay: VecDeque::new(),
            replay_bytes: 0,
            full_appends: AHashMap::default(),
            stored: true,
        }
    }

    /// Makes the stream ready to carry out an entry of the cluster log at `serial` of stream
    /// `id` (`sequence.rs`).
    pub fn fit(&mut self, id: &str, serial: u64) -> Fit {
        if *self.id == *id {
            if serial == self.assigned + 1 {
                return Fit::Next;
            }
            if serial <= self.assigned {
                return Fit::Seen;
            }
        } else if serial == 1 && self.is_blank() {
            self.id = id.into();
            return Fit::Next;
        }
        *self = Stream::resume(id.into(), serial - 1);
        Fit::Rebased
    }

    /// Reserves the next serial, with the epoch to hand back to `take_back` if it fails.
    pub fn next_serial(&mut self) -> (u64, u64) {
        self.assigned += 1;
        (self.assigned, self.epoch)
    }

    /// The append of `serial` failed, so it and every later serial of the same epoch were
    /// never stored or delivered: they are free again.
    pub fn take_back(&mut self, serial: u64, epoch: u64) {
        if epoch == self.epoch && serial > self.head && serial <= self.assigned {
            self.assigned = serial - 1;
            self.epoch += 1;
        }
    }

    /// Records a delivered message: it becomes the head and joins the replay buffer.
    pub fn remember(&mut self, kept: Kept, window: ReplayWindow) {
        let now = kept.at;
        self.head = kept.serial;
        if let (Some(message), Some(_)) = (kept.append_to, &kept.full) {
            if let Some(older) = self.full_appends.insert(message, kept.serial) {
                self.drop_full(older);
            }
        }
        self.replay_bytes += kept.bytes();
        self.replay.push_back(kept);
        while self.replay.len() > 1
            && (self.replay_bytes > window.bytes
                || self.replay.len() > window.count
                    && self.replay.front().is_some_and(|k| now.duration_since(k.at) > window.age))
        {
            if let Some(old) = self.replay.pop_front() {
                self.replay_bytes -= old.bytes();
                if let (Some(message), Some(_)) = (old.append_to, &old.full) {
                    self.full_appends.remove(&message);
                }
            }
        }
    }

    /// The buffered append at `serial` is no longer its message's newest: its full frame goes.
    fn drop_full(&mut self, serial: u64) {
        let Ok(i) = self.replay.binary_search_by_key(&serial, |k| k.serial) else { return };
        if let Some(full) = self.replay[i].full.take() {
            self.replay_bytes -= full.len();
        }
    }

    /// The serial the next message will take (after those still being appended).
    pub fn next_serial_to_assign(&self) -> u64 {
        self.assigned + 1
    }

    /// The oldest serial still buffered.
    pub fn oldest_buffered(&self) -> Option<u64> {
        self.replay.front().map(|k| k.serial)
    }

    /// Messages after `serial` up to the head, if the buffer still holds all of them.
    pub fn replay_after(&self, stream_id: Option<&str>, serial: u64) -> Result<Vec<Kept>, ReplayGap> {
        if stream_id.is_some_and(|s| s != &*self.id) {
            return Err(ReplayGap::StreamMismatch);
        }
        if serial > self.head {
            return Err(ReplayGap::Ahead);
        }
        if serial == self.head {
            return Ok(Vec::new());
        }
        match self.oldest_buffered() {
            Some(oldest) if oldest <= serial + 1 => {
                Ok(self.replay.iter().filter(|k| k.serial > serial).cloned().collect())
            }
            _ => Err(ReplayGap::NotBuffered),
        }
    }

    /// Drops buffered messages an operator purged from history (`keep` says which stay), so a
    /// recovery cannot bring them back from memory.
    pub fn forget(&mut self, keep: impl Fn(&Kept) -> bool) {
        self.replay.retain(|k| keep(k));
        self.replay_bytes = self.replay.iter().map(Kept::bytes).sum();
        self.full_appends.retain(|_, serial| self.replay.iter().any(|k| k.serial == *serial));
    }

    /// Nothing to remember: never published, nothing in flight, unknown to the store.
    pub fn is_blank(&self) -> bool {
        self.assigned == 0 && !self.stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn serials_window_and_replay() {
        let window = ReplayWindow { age: Duration::from_secs(120), count: 3, bytes: 1 << 20 };
        let mut s = Stream::new();
        assert!(s.is_blank() && !Stream::resume("reset".into(), 0).is_blank());
        let t0 = Instant::now();
        let kept = |serial: u64, at: Instant| {
            Kept::new(serial, at, format!("id-{serial}").into(), Arc::new(format!("m{serial}").into_bytes()))
        };
        for _ in 0..5 {
            let (n, _) = s.next_serial();
            s.remember(kept(n, t0), window);
        }
        assert_eq!(s.head, 5);
        // Young messages are kept beyond the count.
        assert_eq!(s.replay_after(None, 0).unwrap().len(), 5);
        let later = t0 + Duration::from_secs(121);
        let (n, _) = s.next_serial();
        s.remember(kept(n, later), window);
        // Old and beyond the newest 3: dropped.
        assert_eq!(s.replay_after(None, 2), Err(ReplayGap::NotBuffered));
        let got: Vec<u64> = s.replay_after(Some(&s.id.clone()), 3).unwrap().into_iter().map(|k| k.serial).collect();
        assert_eq!(got, vec![4, 5, 6]);
        assert_eq!(s.replay_after(None, 6).unwrap().len(), 0);
        assert_eq!(s.replay_after(None, 7), Err(ReplayGap::Ahead));
        // The byte cap wins over age: only what fits stays.
        let tight = ReplayWindow { bytes: 4, ..window };
        let (n, _) = s.next_serial();
        s.remember(kept(n, later), tight);
        assert_eq!(s.oldest_buffered(), Some(6));
        assert_eq!(s.replay_after(Some("bogus"), 3), Err(ReplayGap::StreamMismatch));
    }

    #[test]
    fn only_the_newest_append_of_a_message_keeps_its_full_frame() {
        let window = ReplayWindow { age: Duration::from_secs(120), count: 100, bytes: 1 << 20 };
        let mut s = Stream::new();
        let t0 = Instant::now();
        let frame = |text: &str| Arc::new(text.as_bytes().to_vec());
        let append = |serial: u64, message: u64, full: &str| Kept {
            append_to: Some(message),
            full: Some(frame(full)),
            ..Kept::new(serial, t0, format!("id-{serial}").into(), frame("f"))
        };
        for (serial, k) in
            [(1, append(1, 7, "a")), (2, append(2, 7, "ab")), (3, append(3, 8, "x")), (4, append(4, 7, "abc"))]
        {
            assert_eq!(s.next_serial().0, serial);
            s.remember(k, window);
        }
        let fulls: Vec<Option<&[u8]>> = s.replay.iter().map(|k| k.full.as_deref().map(Vec::as_slice)).collect();
        assert_eq!(fulls, [None, None, Some(&b"x"[..]), Some(&b"abc"[..])]);
        assert_eq!(s.replay_bytes, 4 + 1 + 3);
        // Leaving the buffer, the newest append takes its message's entry with it.
        s.forget(|k| k.serial > 3);
        assert_eq!(s.full_appends.len(), 1);
        assert_eq!(s.replay_bytes, 1 + 3);
    }

    #[test]
    fn failed_appends_give_their_serials_back_once() {
        let mut s = Stream::resume("s".into(), 10);
        let (a, epoch) = s.next_serial();
        let (b, _) = s.next_serial();
        assert_eq!((a, b), (11, 12));
        // 11 fails; 12, queued behind it in the same run, fails as well and changes nothing.
        s.take_back(a, epoch);
        let (c, epoch2) = s.next_serial();
        s.take_back(b, epoch);
        assert_eq!(c, 11);
        assert_ne!(epoch, epoch2);
        assert_eq!(s.next_serial().0, 12);
    }
}
