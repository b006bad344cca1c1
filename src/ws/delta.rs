//! A socket's delta streams (`docs/protocol/v2.md#delta-compression`): per subscribed channel
//! and base key, the last frame sent and its sequence number; and, per delivery, the frames
//! shared by every socket whose stream stands at the same place, so each delta is computed once
//! per (base, algorithm) on a shard however many sockets share that base.

use super::writer::{text_frame, Frame};
use crate::config::DeltaCompression;
use crate::protocol::delta::{self, Algorithm, DeltaOf};
use crate::shard::channel::broadcast::{DeltaKey, Payload};
use ahash::AHashMap;
use std::sync::Arc;

/// One subscription's delta streams.
#[derive(Clone, Debug)]
pub struct ChannelDelta {
    pub algorithm: Algorithm,
    keys: AHashMap<Box<str>, KeyStream>,
}

/// Where one base key's stream stands on one socket.
#[derive(Clone, Debug)]
struct KeyStream {
    /// The frame the next delta applies to (the last one sent on this key, without markers).
    base: Payload,
    base_seq: u64,
    deltas_since_full: u32,
}

impl ChannelDelta {
    pub fn new(algorithm: Algorithm) -> ChannelDelta {
        ChannelDelta { algorithm, keys: AHashMap::default() }
    }

    /// After a client's `delta_sync_error`: every key starts again with a full frame.
    pub fn reset(&mut self) {
        self.keys.clear();
    }
}

/// The frames of one delivery, shared between its sockets.
#[derive(Default)]
pub struct Shared {
    /// (base, algorithm) -> the delta to the message, `None` if it is no smaller.
    deltas: Vec<(Payload, Algorithm, Option<Arc<str>>)>,
    /// Full frames by sequence number.
    full: Vec<(u64, Frame)>,
    /// Delta frames by (base, algorithm, seq, base_index).
    frames: Vec<((usize, Algorithm, u64, u64), Frame)>,
    /// Bytes the deltas saved against full frames.
    pub saved: u64,
}

impl Shared {
    /// The frame for a socket whose delta streams on the channel are `state`, and moves its
    /// stream on. `payload` is the message's V2 frame.
    pub fn frame_for(
        &mut self,
        state: &mut ChannelDelta,
        channel: &str,
        key: &DeltaKey,
        payload: &Payload,
        config: &DeltaCompression,
    ) -> Frame {
        let algorithm = state.algorithm;
        let Some(stream) = state.keys.get_mut(&key.key) else {
            // Past the bound on conflation keys, every stream starts again.
            if state.keys.len() >= key.max_keys {
                state.keys.clear();
            }
            state.keys.insert(key.key.clone(), KeyStream { base: payload.clone(), base_seq: 0, deltas_since_full: 0 });
            return self.full(payload, 0, key);
        };
        let seq = stream.base_seq + 1;
        let base = std::mem::replace(&mut stream.base, payload.clone());
        let base_seq = std::mem::replace(&mut stream.base_seq, seq);
        if stream.deltas_since_full >= config.full_message_interval {
            stream.deltas_since_full = 0;
            return self.full(payload, seq, key);
        }
        match self.delta(&base, payload, algorithm) {
            Some(encoded) => {
                stream.deltas_since_full += 1;
                let id = (Arc::as_ptr(&base) as usize, algorithm, seq, base_seq);
                if let Some((_, f)) = self.frames.iter().find(|(k, _)| *k == id) {
                    self.saved += payload.len().saturating_sub(f.len()) as u64;
                    return f.clone();
                }
                let of = DeltaOf {
                    channel,
                    event: &key.event,
                    seq,
                    base_index: base_seq,
                    algorithm,
                    conflation_key: key.conflation.as_deref(),
                    stream: key.stream.as_ref().map(|(id, n)| (&**id, *n)),
                };
                let frame = text_frame(&delta::delta_frame(&of, &encoded));
                self.saved += payload.len().saturating_sub(frame.len()) as u64;
                self.frames.push((id, frame.clone()));
                frame
            }
            None => {
                stream.deltas_since_full = 0;
                self.full(payload, seq, key)
            }
        }
    }

    fn full(&mut self, payload: &Payload, seq: u64, key: &DeltaKey) -> Frame {
        if let Some((_, f)) = self.full.iter().find(|(s, _)| *s == seq) {
            return f.clone();
        }
        let frame = text_frame(&delta::with_seq(payload, seq, key.conflation.as_deref()));
        self.full.push((seq, frame.clone()));
        frame
    }

    /// The delta from `base` to `payload`, computed once per (base, algorithm); `None` when
    /// it failed or is not smaller than the message.
    fn delta(&mut self, base: &Payload, payload: &Payload, algorithm: Algorithm) -> Option<Arc<str>> {
        if let Some((_, _, d)) = self.deltas.iter().find(|(b, a, _)| *a == algorithm && Arc::ptr_eq(b, base)) {
            return d.clone();
        }
        let d = algorithm.encode(base, payload).filter(|d| d.len() < payload.len()).map(Arc::from);
        self.deltas.push((base.clone(), algorithm, d.clone()));
        d
    }
}
