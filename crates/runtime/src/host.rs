//! What the runtime needs from a PBX, and nothing more. An adapter (Asterisk, FreeSWITCH)
//! implements these traits over its own channels; the runtime never sees a PBX type.
use std::path::PathBuf;
use std::sync::Arc;

use callconsent_core::call::{PromptOutcome, Status};

use crate::calls::Slot;

/// The files one recording is written to: the mixed file, and the two legs when asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderPlan {
    pub mixed: PathBuf,
    /// `(caller, agent)`: what the caller said and what the caller heard (`record_legs`).
    pub legs: Option<(PathBuf, PathBuf)>,
}

impl RecorderPlan {
    pub fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.mixed.clone()];
        if let Some((a, b)) = &self.legs {
            v.extend([a.clone(), b.clone()]);
        }
        v
    }
}

/// The caller's channel of one call, as the adapter can reach it from the current thread: a
/// channel lent by the PBX for one callback, or a reference the worker holds.
///
/// Methods marked *application thread* or *media path* are called only from there; the others
/// from the worker. None of them may block for longer than the PBX's own queueing takes, except
/// `play` (it plays the notice on the dialplan application's thread).
pub trait CallChannel {
    /// *Application thread.* Plays a sound to the caller; stops at any of `keys`.
    fn play(&self, sound: &str, keys: &str) -> PromptOutcome;
    /// *Application thread.* Watches the call from now until hangup: its keys in both directions
    /// (fed to [`crate::Runtime::frame`]) and its bridge joins ([`crate::Runtime::joined`]); at
    /// hangup the adapter calls [`crate::Runtime::hangup`].
    fn watch(&self, slot: &Arc<Slot>) -> Result<(), String>;
    /// Sets `CALLCONSENT_STATUS` (or the host's equivalent) on the caller's channel.
    fn set_status(&self, status: Status);
    /// *Media path.* Mutes (true) or unmutes the recorder in both directions; the timeline is kept.
    fn mute_recorder(&self, mute: bool);
    /// Starts the recorder into these files; returns the recorder's id (to stop exactly it).
    fn start_recorder(&self, plan: &RecorderPlan) -> Result<String, String>;
    /// Stops the recorder and closes its files before returning; an already stopped one is fine.
    fn stop_recorder(&self, id: &str);
    /// Queues a sound to the caller while bridged; false when the caller is not in a bridge.
    fn play_to_caller(&self, sound: &str) -> bool;
    /// Queues a tone (`freq/ms[,freq/ms...]`) to the agent only; false while no agent is bridged.
    fn tone_to_agent(&self, tones: &str) -> bool;
    /// Passes digits on to the caller (digits held back as a possible code that was not one).
    fn send_to_caller(&self, digits: &str) -> bool;
    /// Runs a dialplan subroutine (`context,exten,priority`) on the caller's channel while it is
    /// bridged (queued to the channel's own thread); false when it cannot.
    fn run_gosub(&self, target: &str) -> bool;
    /// The channel the caller is bridged with (the agent), if any.
    fn bridge_peer(&self) -> Option<String>;
    /// A reference the worker may hold after this callback returns.
    fn owned(&self) -> Box<dyn CallChannel + Send>;
}

/// The PBX as a whole.
pub trait Host: Send + Sync + 'static {
    /// The PBX's name in every audit line (`pbx`): `asterisk`, `freeswitch`.
    fn name(&self) -> &'static str;
    /// Raises the host's management event (AMI `CallConsent`) for a call's channel.
    fn notify(&self, channel: &str, fields: &[(&'static str, String)]);
    /// The channel a live call's caller is bridged with, looked up by the caller's uniqueid
    /// (for `show calls`).
    fn agent_of(&self, uniqueid: &str) -> Option<String>;
    /// Raises a management event of the module itself (AMI `CallConsentAudit`: the audit log's
    /// published head, or a failed write).
    fn module_event(&self, event: &'static str, fields: &[(&'static str, String)]);
}
