//! Which shards have wildcard subscribers of which patterns (`docs/architecture.md#wildcard-subscriptions`).
//! Every shard holds the whole registry, because any shard may own a channel a pattern
//! matches: a publish then finds the shards to deliver to without asking anyone. A socket's
//! shard changes it on every shard with [`PatternChange`].

use super::route::{Request, Responder};
use super::Shard;
use crate::config::AppIdx;
use crate::protocol::wildcard::PatternSet;
use std::rc::Rc;
use std::sync::Arc;

/// Per app: pattern -> wildcard subscribers on each shard.
pub struct Patterns {
    by_app: Vec<PatternSet<Vec<u32>>>,
}

impl Patterns {
    pub fn new(apps: usize) -> Patterns {
        Patterns { by_app: (0..apps).map(|_| PatternSet::default()).collect() }
    }

    /// Whether the app has wildcard subscribers anywhere (checked on every publish).
    pub fn any(&self, app: AppIdx) -> bool {
        !self.by_app[app as usize].is_empty()
    }

    /// Marks in `shards` each shard with a subscriber of a pattern matching `channel`.
    pub fn mark_matching(&self, app: AppIdx, channel: &str, shards: &mut [bool]) {
        self.by_app[app as usize].for_each_match(channel, |_, counts| {
            for (s, &n) in counts.iter().enumerate() {
                shards[s] |= n > 0;
            }
        });
    }

    fn join(&mut self, app: AppIdx, pattern: &Arc<str>, shard: usize, shards: usize) {
        let counts = self.by_app[app as usize].entry(pattern);
        counts.resize(shards, 0);
        counts[shard] += 1;
    }

    fn leave(&mut self, app: AppIdx, pattern: &str, shard: usize) {
        let set = &mut self.by_app[app as usize];
        let Some(counts) = set.get_mut(pattern) else { return };
        counts[shard] = counts[shard].saturating_sub(1);
        if counts.iter().all(|&n| n == 0) {
            set.remove(pattern);
        }
    }
}

/// To every shard: a socket on `shard` subscribed to `pattern` (`joined`), or its wildcard
/// subscription ended or its join was given up. A join is awaited, so that the subscriber is
/// told it is subscribed only when every owner will deliver to it.
#[derive(Clone)]
pub struct PatternChange {
    pub app: AppIdx,
    pub pattern: Arc<str>,
    pub shard: usize,
    pub joined: bool,
}

impl Request for PatternChange {
    type Reply = ();
    /// A leave undoes a join and must find it ahead on the same ring; losing either would
    /// leave the registry wrong for good.
    const REFUSABLE: bool = false;

    fn handle(self, shard: &Rc<Shard>, reply: Responder<Self>) {
        let mut patterns = shard.patterns.borrow_mut();
        match self.joined {
            true => patterns.join(self.app, &self.pattern, self.shard, shard.shards),
            false => patterns.leave(self.app, &self.pattern, self.shard),
        }
        reply.send(());
    }
}

impl Shard {
    /// Tells every shard that a wildcard subscription of this shard ended.
    pub fn leave_pattern_everywhere(&self, app: AppIdx, pattern: &Arc<str>) {
        for to in 0..self.shards {
            // Never refused (`PatternChange::REFUSABLE`).
            let _ = self.tell(to, PatternChange { app, pattern: pattern.clone(), shard: self.id, joined: false });
        }
    }
}
