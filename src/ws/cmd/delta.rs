//! Delta compression commands (`docs/protocol/v2.md#delta-compression`):
//! `enable_delta_compression` turns deltas on for every channel of the connection;
//! `delta_sync_error` restarts a channel's delta streams with full frames.

use crate::protocol::delta::{self, Algorithm};
use crate::protocol::inbound::{self, ClientFrame};
use crate::protocol::ProtocolError;
use crate::ws::delta::ChannelDelta;
use crate::ws::session::Session;
use sonic_rs::{JsonContainerTrait, JsonValueTrait};

impl Session {
    pub(in crate::ws) fn enable_delta(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        let config = &self.shard().ctx.config.delta;
        // `{"algorithm": name}`, or `{"algorithms": [names]}` (sockudo-python) for the first
        // this server speaks.
        let data: Option<sonic_rs::Value> = frame.data.as_ref().and_then(|d| sonic_rs::from_str(d.as_raw_str()).ok());
        let field = |k: &str| data.as_ref().and_then(|d| d.get(k)).filter(|v| !v.is_null());
        let asked = match (field("algorithm"), field("algorithms")) {
            (Some(a), _) => {
                let name = a.as_str().unwrap_or_default();
                Some(Algorithm::parse(name).ok_or_else(|| {
                    ProtocolError::invalid_format(format!("delta: unknown algorithm {name:?} (fossil, xdelta3)"))
                })?)
            }
            (None, Some(list)) => {
                list.as_array().and_then(|l| l.iter().find_map(|a| a.as_str().and_then(Algorithm::parse)))
            }
            (None, None) => None,
        };
        let algorithm = asked.unwrap_or(config.algorithm);
        // Other sockets are answered and keep getting full frames.
        let enabled = config.enabled && self.takes_deltas();
        if enabled {
            self.with_socket(|s| {
                s.delta = Some(algorithm);
                for sub in s.channels.values_mut().filter(|sub| !sub.delta_off && sub.delta.is_none()) {
                    sub.delta = Some(Box::new(ChannelDelta::new(algorithm)));
                    s.deltas += 1;
                }
            });
        }
        self.send(&delta::enabled_frame(self.dialect, enabled, algorithm, None));
        Ok(())
    }

    pub(in crate::ws) fn delta_sync_error(&self, frame: &ClientFrame<'_>) -> Result<(), ProtocolError> {
        let channel = inbound::delta_sync_channel(frame)?;
        self.with_socket(|s| {
            if let Some(state) = s.channels.get_mut(channel.as_str()).and_then(|sub| sub.delta.as_mut()) {
                state.reset();
            }
        });
        Ok(())
    }
}
