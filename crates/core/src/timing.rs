//! Every timing the module's behaviour depends on, in one place (the runtime only applies them).
use std::time::Duration;

/// How a deferred effect that the host could not carry out yet is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub every: Duration,
    /// Tries after the first one.
    pub tries: u32,
}

/// After hangup, a refused call's files are looked for again at these delays: MixMonitor's own
/// thread closes (and may still create) its file asynchronously at hangup (R3).
pub const DELETE_AGAIN_AFTER: [Duration; 3] =
    [Duration::ZERO, Duration::from_secs(1), Duration::from_secs(5)];

/// The caller joined a bridge: the agent (the bridge peer) may still be joining. About a second.
pub const FIND_AGENT: Retry = Retry { every: Duration::from_millis(50), tries: 20 };

/// A tone to the agent while the agent is still joining the bridge. About a second.
pub const TONE_TO_AGENT: Retry = Retry { every: Duration::from_millis(50), tries: 20 };

/// A kept recording is moved once MixMonitor has closed it, looked at this often...
pub const KEEP_POLL: Duration = Duration::from_millis(100);
/// ...for at most this long when it holds audio,
pub const KEEP_WAIT_AUDIO: Duration = Duration::from_secs(10);
/// ...and this long when it is still only a WAV header (a call without audio).
pub const KEEP_WAIT_HEADER_ONLY: Duration = Duration::from_secs(3);

/// How long before an automatic resume the agent hears the warning tone.
pub const AUTO_RESUME_WARNING: Duration = Duration::from_secs(5);

/// How many deferred effects may wait in each worker's queue; past it, the safe side wins (see
/// `Action::on_full_queue`).
pub const QUEUE_CAPACITY: usize = 4096;

/// The retention sweeper runs at load and then this often (R7).
pub const RETENTION_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// The caller's keys go on to the agent only as fast as the PBX relays them (see `pace`):
/// Asterisk stretches a key to at least this many ms...
pub const KEY_RELAY_MIN_MS: u64 = 80;
/// ...and waits 45 ms after it (AST_MIN_DTMF_GAP) before the next; 5 ms more here, so a queue
/// that formed anyway drains.
pub const KEY_RELAY_GAP_MS: u64 = 50;
