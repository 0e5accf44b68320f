//! The audit vocabulary: every event name the log can hold, and who or what caused a change.
//! Names are a contract (log pipelines, the DPO tool, the console): they never change.

/// One kind of audit line. `as_str` is the `event` field written to the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuditEvent {
    /// The draw selected the call (R5).
    Selected,
    /// The draw did not select the call (R5), with the reason.
    NotSelected,
    /// Never recorded whatever the draw (R12): never_record caller, private prefix.
    Exempt,
    NoticePlayed,
    InfoPlayed,
    /// The notice could not be played: a caller who was not told is never recorded (R1).
    NotRecorded,
    /// The agent-side checks passed (never_record agent, cap): the recorder starts (R6, R12).
    AgentCleared,
    AgentVetoed,
    RecordingStarted,
    RecordingFailed,
    /// The caller refused (R3).
    OptOut,
    /// The agent asked for the recording to be stopped and deleted (R9).
    DeleteRequested,
    RecordingDeleted,
    RecordingKept,
    /// Left in staging by a crash or restart: discarded (privacy by default).
    RecordingDiscarded,
    /// Past `retention_days` (R7).
    RecordingExpired,
    AuditFileExpired,
    RecordingArchived,
    ArchiveFailed,
    Paused,
    Resumed,
    PauseWarning,
    CallEnded,
    /// The last line of a call: every effect of the call (deletions after hangup included) is done.
    CallSettled,
    /// A worker's queue was full: what was done instead (the safe side).
    QueueFull,
    /// The log's head at a moment (load, rotation, hourly), also published outside the file.
    AuditCheckpoint,
    /// A last line torn by a crash was cut off at load.
    LogRepaired,
    /// A caller's recordings deleted at their request (GDPR Art. 17), with its reference.
    RecordingErased,
    /// The shared store (issue 14) was reached at load: node, schema version.
    StoreConnected,
    /// The shared store could not be reached for a call's cap: what the profile chose instead
    /// (`fallback`: no_record or local).
    StoreUnavailable,
    /// The shared store is back after an outage: how long it lasted, what was counted locally.
    StoreRestored,
    /// A caller's erasure request from the shared store, done on this node.
    ErasureApplied,
    /// A secure card entry began: the recorder is muted, the caller's keys are the card's.
    SecureEntryStarted,
    /// It ended (end key, maximum digits, timeout, hangup): how many digits, never a digit.
    SecureEntryEnded,
}

impl AuditEvent {
    pub const ALL: [AuditEvent; 34] = [
        AuditEvent::Selected,
        AuditEvent::NotSelected,
        AuditEvent::Exempt,
        AuditEvent::NoticePlayed,
        AuditEvent::InfoPlayed,
        AuditEvent::NotRecorded,
        AuditEvent::AgentCleared,
        AuditEvent::AgentVetoed,
        AuditEvent::RecordingStarted,
        AuditEvent::RecordingFailed,
        AuditEvent::OptOut,
        AuditEvent::DeleteRequested,
        AuditEvent::RecordingDeleted,
        AuditEvent::RecordingKept,
        AuditEvent::RecordingDiscarded,
        AuditEvent::RecordingExpired,
        AuditEvent::AuditFileExpired,
        AuditEvent::RecordingArchived,
        AuditEvent::ArchiveFailed,
        AuditEvent::Paused,
        AuditEvent::Resumed,
        AuditEvent::PauseWarning,
        AuditEvent::CallEnded,
        AuditEvent::CallSettled,
        AuditEvent::QueueFull,
        AuditEvent::AuditCheckpoint,
        AuditEvent::LogRepaired,
        AuditEvent::RecordingErased,
        AuditEvent::StoreConnected,
        AuditEvent::StoreUnavailable,
        AuditEvent::StoreRestored,
        AuditEvent::ErasureApplied,
        AuditEvent::SecureEntryStarted,
        AuditEvent::SecureEntryEnded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditEvent::Selected => "selected",
            AuditEvent::NotSelected => "not_selected",
            AuditEvent::Exempt => "exempt",
            AuditEvent::NoticePlayed => "notice_played",
            AuditEvent::InfoPlayed => "info_played",
            AuditEvent::NotRecorded => "not_recorded",
            AuditEvent::AgentCleared => "agent_cleared",
            AuditEvent::AgentVetoed => "agent_vetoed",
            AuditEvent::RecordingStarted => "recording_started",
            AuditEvent::RecordingFailed => "recording_failed",
            AuditEvent::OptOut => "opt_out",
            AuditEvent::DeleteRequested => "delete_requested",
            AuditEvent::RecordingDeleted => "recording_deleted",
            AuditEvent::RecordingKept => "recording_kept",
            AuditEvent::RecordingDiscarded => "recording_discarded",
            AuditEvent::RecordingExpired => "recording_expired",
            AuditEvent::AuditFileExpired => "audit_file_expired",
            AuditEvent::RecordingArchived => "recording_archived",
            AuditEvent::ArchiveFailed => "archive_failed",
            AuditEvent::Paused => "paused",
            AuditEvent::Resumed => "resumed",
            AuditEvent::PauseWarning => "pause_warning",
            AuditEvent::CallEnded => "call_ended",
            AuditEvent::CallSettled => "call_settled",
            AuditEvent::QueueFull => "queue_full",
            AuditEvent::AuditCheckpoint => "audit_checkpoint",
            AuditEvent::LogRepaired => "log_repaired",
            AuditEvent::RecordingErased => "recording_erased",
            AuditEvent::StoreConnected => "store_connected",
            AuditEvent::StoreUnavailable => "store_unavailable",
            AuditEvent::StoreRestored => "store_restored",
            AuditEvent::ErasureApplied => "erasure_applied",
            AuditEvent::SecureEntryStarted => "secure_entry_started",
            AuditEvent::SecureEntryEnded => "secure_entry_ended",
        }
    }

    pub fn parse(s: &str) -> Option<AuditEvent> {
        AuditEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl std::fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One kind of access-log line (`access.jsonl`, written by the DPO's tool and the console): every
/// listen, export and caller's request, done or refused (R6, R11, GDPR Art. 15 and 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessEvent {
    /// A recording decrypted to a player.
    Listen,
    /// A recording decrypted to an Opus file.
    Export,
    /// A caller's recordings and audit lines bundled for them (Art. 15).
    SubjectExport,
    /// A caller's recordings erased (Art. 17); the audit log has the `recording_erased` lines.
    SubjectErase,
    ListenRefused,
    ExportRefused,
    SubjectExportRefused,
    SubjectEraseRefused,
}

impl AccessEvent {
    pub const ALL: [AccessEvent; 8] = [
        AccessEvent::Listen,
        AccessEvent::Export,
        AccessEvent::SubjectExport,
        AccessEvent::SubjectErase,
        AccessEvent::ListenRefused,
        AccessEvent::ExportRefused,
        AccessEvent::SubjectExportRefused,
        AccessEvent::SubjectEraseRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccessEvent::Listen => "listen",
            AccessEvent::Export => "export",
            AccessEvent::SubjectExport => "subject_export",
            AccessEvent::SubjectErase => "subject_erase",
            AccessEvent::ListenRefused => "listen_refused",
            AccessEvent::ExportRefused => "export_refused",
            AccessEvent::SubjectExportRefused => "subject_export_refused",
            AccessEvent::SubjectEraseRefused => "subject_erase_refused",
        }
    }

    /// The line written when this access is refused.
    pub fn refused(self) -> AccessEvent {
        match self {
            AccessEvent::Listen | AccessEvent::ListenRefused => AccessEvent::ListenRefused,
            AccessEvent::Export | AccessEvent::ExportRefused => AccessEvent::ExportRefused,
            AccessEvent::SubjectExport | AccessEvent::SubjectExportRefused => {
                AccessEvent::SubjectExportRefused
            }
            AccessEvent::SubjectErase | AccessEvent::SubjectEraseRefused => {
                AccessEvent::SubjectEraseRefused
            }
        }
    }

    /// Whether this line counts against the listening bounds (R6): a listen or an export done.
    pub fn is_listen(self) -> bool {
        matches!(self, AccessEvent::Listen | AccessEvent::Export)
    }

    pub fn parse(s: &str) -> Option<AccessEvent> {
        AccessEvent::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

impl std::fmt::Display for AccessEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made a change (the `by` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// The caller refused (R3).
    Caller,
    /// The agent, from the keypad, the desktop (AMI) or the dialplan (R9, R10).
    Agent,
    /// The module itself: a pause that reached `pause_max_seconds`.
    Auto,
    /// A later look for a refused call's files (MixMonitor closes its file after hangup).
    Cleanup,
}

impl By {
    pub fn as_str(self) -> &'static str {
        match self {
            By::Caller => "caller",
            By::Agent => "agent",
            By::Auto => "auto",
            By::Cleanup => "cleanup",
        }
    }
}

/// Where an agent's (or the module's) command came from (the `source` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A feature code from the agent's phone.
    Keypad,
    /// A desktop control: an AMI action.
    Ami,
    /// `CallConsentControl()` in the dialplan (features.conf applicationmap).
    Dialplan,
    /// A desktop control on FreeSWITCH: the `callconsent` API command (fs_cli, ESL).
    Esl,
    /// The pause lasted `pause_max_seconds`.
    PauseMaxSeconds,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Keypad => "keypad",
            Source::Ami => "ami",
            Source::Dialplan => "dialplan",
            Source::Esl => "esl",
            Source::PauseMaxSeconds => "pause_max_seconds",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_name_is_distinct_and_parses_back() {
        let mut names: Vec<&str> = AuditEvent::ALL.iter().map(|e| e.as_str()).collect();
        for e in AuditEvent::ALL {
            assert_eq!(AuditEvent::parse(e.as_str()), Some(e));
        }
        for e in AccessEvent::ALL {
            assert_eq!(AccessEvent::parse(e.as_str()), Some(e));
            names.push(e.as_str());
        }
        names.sort();
        names.dedup();
        assert_eq!(names.len(), AuditEvent::ALL.len() + AccessEvent::ALL.len());
    }
}
