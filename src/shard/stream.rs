//! A channel's message stream as its owner keeps it (spec 02 §2.2): the stream id, the next
//! serial, and the hot replay buffer of recent V2 frames that connection recovery reads.
//! Serials are assigned here, by the owner only, so serial order is fan-out order.

use super::msg::Payload;
use crate::protocol::outbound;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How much of a stream stays in memory for recovery: a message is dropped once it is both
/// older than `age` and beyond the newest `count` (spec 00: 120 s or 1,000 messages, whichever
/// is larger), or when the buffer holds more than `bytes` (a very busy channel must not hold
/// minutes of traffic in memory).
#[derive(Clone, Copy, Debug)]
pub struct ReplayWindow {
    pub age: Duration,
    pub count: usize,
    pub bytes: usize,
}

pub struct Stream {
    pub id: Arc<str>,
    /// Serial of the newest message; 0 before the first.
    pub head: u64,
    /// Recent messages, oldest first, contiguous serials.
    replay: VecDeque<Kept>,
    /// Frame bytes held in `replay`.
    replay_bytes: usize,
}

/// A message in the replay buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Kept {
    pub serial: u64,
    pub at: Instant,
    pub message_id: Arc<str>,
    /// The V2 frame as it was delivered.
    pub frame: Payload,
}

/// Why a position cannot be replayed from memory (spec 02 §3.5 codes and reasons).
#[derive(Debug, PartialEq, Eq)]
pub enum ReplayGap {
    StreamMismatch,
    /// Older than what the buffer still holds: the durable tier must answer.
    NotBuffered,
    Ahead,
}

impl Stream {
    pub fn new() -> Stream {
        Stream { id: outbound::uuid_v4().into(), head: 0, replay: VecDeque::new(), replay_bytes: 0 }
    }

    /// Reserves the next serial.
    pub fn next_serial(&mut self) -> u64 {
        self.head += 1;
        self.head
    }

    pub fn remember(&mut self, kept: Kept, window: ReplayWindow) {
        let now = kept.at;
        self.replay_bytes += kept.frame.len();
        self.replay.push_back(kept);
        while self.replay.len() > 1
            && (self.replay_bytes > window.bytes
                || self.replay.len() > window.count
                    && self.replay.front().is_some_and(|k| now.duration_since(k.at) > window.age))
        {
            if let Some(old) = self.replay.pop_front() {
                self.replay_bytes -= old.frame.len();
            }
        }
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
            Some(oldest) if oldest <= serial + 1 => Ok(self.replay.iter().filter(|k| k.serial > serial).cloned().collect()),
            _ => Err(ReplayGap::NotBuffered),
        }
    }

    /// Nothing to remember: never published and no frames held.
    pub fn is_blank(&self) -> bool {
        self.head == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_window_and_replay() {
        let window = ReplayWindow { age: Duration::from_secs(120), count: 3, bytes: 1 << 20 };
        let mut s = Stream::new();
        let t0 = Instant::now();
        let kept = |serial: u64, at: Instant| Kept {
            serial,
            at,
            message_id: format!("id-{serial}").into(),
            frame: Arc::new(format!("m{serial}").into_bytes()),
        };
        for _ in 0..5 {
            let n = s.next_serial();
            s.remember(kept(n, t0), window);
        }
        assert_eq!(s.head, 5);
        // Young messages are kept beyond the count.
        assert_eq!(s.replay_after(None, 0).unwrap().len(), 5);
        let later = t0 + Duration::from_secs(121);
        let n = s.next_serial();
        s.remember(kept(n, later), window);
        // Old and beyond the newest 3: dropped.
        assert_eq!(s.replay_after(None, 2), Err(ReplayGap::NotBuffered));
        let got: Vec<u64> = s.replay_after(Some(&s.id.clone()), 3).unwrap().into_iter().map(|k| k.serial).collect();
        assert_eq!(got, vec![4, 5, 6]);
        assert_eq!(s.replay_after(None, 6).unwrap().len(), 0);
        assert_eq!(s.replay_after(None, 7), Err(ReplayGap::Ahead));
        // The byte cap wins over age: only what fits stays.
        let tight = ReplayWindow { bytes: 4, ..window };
        let n = s.next_serial();
        s.remember(kept(n, later), tight);
        assert_eq!(s.oldest_buffered(), Some(6));
        assert_eq!(s.replay_after(Some("bogus"), 3), Err(ReplayGap::StreamMismatch));
    }
}
