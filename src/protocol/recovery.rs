//! Why a channel could not be recovered by `sockudo:resume`: every reason, and the code each
//! belongs to, in one place (`docs/protocol/v2.md#recovery-failures`).

use serde::ser::{Serialize, SerializeStruct, Serializer};

/// A reason a recovery failed; each belongs to exactly one code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeReason {
    StreamIdMismatch,
    DurableStreamChangedDuringReconnect,
    LegacySerialOnlyPosition,
    PositionAheadOfDurableStream,
    DurableHistoryNotContiguous,
    DurableHistoryEndedBeforeStreamHead,
    RecoveryWindowExceeded,
    HotReplayExpiredAndDurableHistoryDisabled,
    DurableHistoryEmptyAfterPriorWrites,
    RetainedHistoryFloorAheadOfRequestedSerial,
    DurableHistoryReadFailed,
    FailedToDeliverRecoveryPayload,
}

impl ResumeReason {
    /// The failure's `code`.
    pub fn code(self) -> &'static str {
        use ResumeReason::*;
        match self {
            StreamIdMismatch | DurableStreamChangedDuringReconnect => "stream_reset",
            LegacySerialOnlyPosition
            | PositionAheadOfDurableStream
            | DurableHistoryNotContiguous
            | DurableHistoryEndedBeforeStreamHead => "continuity_unverifiable",
            RecoveryWindowExceeded
            | HotReplayExpiredAndDurableHistoryDisabled
            | DurableHistoryEmptyAfterPriorWrites
            | RetainedHistoryFloorAheadOfRequestedSerial => "position_expired",
            DurableHistoryReadFailed | FailedToDeliverRecoveryPayload => "persistence_unavailable",
        }
    }

    /// The failure's `reason`.
    pub fn as_str(self) -> &'static str {
        use ResumeReason::*;
        match self {
            StreamIdMismatch => "stream_id_mismatch",
            DurableStreamChangedDuringReconnect => "durable_stream_changed_during_reconnect",
            LegacySerialOnlyPosition => "legacy_serial_only_position_cannot_use_cold_recovery",
            PositionAheadOfDurableStream => "position_ahead_of_durable_stream",
            DurableHistoryNotContiguous => "durable_history_is_not_contiguous",
            DurableHistoryEndedBeforeStreamHead => "durable_history_ended_before_stream_head",
            RecoveryWindowExceeded => "recovery_window_exceeded",
            HotReplayExpiredAndDurableHistoryDisabled => "hot_replay_expired_and_durable_history_disabled",
            DurableHistoryEmptyAfterPriorWrites => "durable_history_empty_after_prior_writes",
            RetainedHistoryFloorAheadOfRequestedSerial => "retained_history_floor_is_ahead_of_requested_serial",
            DurableHistoryReadFailed => "durable_history_read_failed",
            FailedToDeliverRecoveryPayload => "failed_to_deliver_recovery_payload",
        }
    }
}

/// One channel's failed recovery as the client sees it: the reason and what the server knows
/// of the stream.
#[derive(Clone, Debug)]
pub struct ResumeFailure {
    pub reason: ResumeReason,
    pub expected_stream_id: Option<String>,
    pub current_stream_id: Option<String>,
    pub oldest_available_serial: Option<u64>,
    pub newest_available_serial: Option<u64>,
}

impl ResumeFailure {
    pub fn new(reason: ResumeReason) -> ResumeFailure {
        ResumeFailure {
            reason,
            expected_stream_id: None,
            current_stream_id: None,
            oldest_available_serial: None,
            newest_available_serial: None,
        }
    }
}

impl Serialize for ResumeFailure {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ResumeFailure", 6)?;
        st.serialize_field("code", self.reason.code())?;
        st.serialize_field("reason", self.reason.as_str())?;
        st.serialize_field("expected_stream_id", &self.expected_stream_id)?;
        st.serialize_field("current_stream_id", &self.current_stream_id)?;
        st.serialize_field("oldest_available_serial", &self.oldest_available_serial)?;
        st.serialize_field("newest_available_serial", &self.newest_available_serial)?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_code_and_reason_first() {
        let mut f = ResumeFailure::new(ResumeReason::RecoveryWindowExceeded);
        f.newest_available_serial = Some(9);
        assert_eq!(
            sonic_rs::to_string(&f).unwrap(),
            r#"{"code":"position_expired","reason":"recovery_window_exceeded","expected_stream_id":null,"current_stream_id":null,"oldest_available_serial":null,"newest_available_serial":9}"#
        );
    }
}
