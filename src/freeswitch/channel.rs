//! The runtime's `CallChannel` and `Host`, over FreeSWITCH's sessions (through `ffi`). A call's
//! channel is its caller's session uuid: every operation locates the session for its own length,
//! so a worker may hold a channel past the call without holding the session.
use std::sync::Arc;

use callconsent_core::call::{PromptOutcome, Status};
use callconsent_runtime::{CallChannel, Host, RecorderPlan, Slot};

use crate::ffi::{by_uuid, event, sys};

/// The channel variable the application sets (RECORDING, NOT_SELECTED, OPTED_OUT, ERROR).
pub const STATUS_VAR: &str = "callconsent_status";
/// Where the recording of a call is being written (the recorder's handle for mask and stop).
const RECORDING_VAR: &str = "callconsent_recording";
pub const STATE_SUBCLASS: &str = "callconsent::state";
pub const AUDIT_SUBCLASS: &str = "callconsent::audit";

#[derive(Clone)]
pub struct FsChannel {
    pub uuid: String,
}

/// `freq/ms[,freq/ms...]` (the runtime's tone syntax) as a FreeSWITCH tone_stream.
fn tone_stream(tones: &str) -> String {
    let parts: Vec<String> = tones
        .split(',')
        .filter_map(|t| {
            let (f, ms) = t.trim().split_once('/')?;
            let (f, ms) = (f.trim().parse::<u32>().ok()?, ms.trim().parse::<u32>().ok()?);
            Some(format!("%({ms},0,{f})"))
        })
        .collect();
    format!("tone_stream://{}", parts.join(";"))
}

impl CallChannel for FsChannel {
    fn play(&self, sound: &str, keys: &str) -> PromptOutcome {
        match by_uuid::play(&self.uuid, sound, keys) {
            0 => PromptOutcome::Completed,
            x if x == sys::cc_fs_play_result_CC_FS_PLAY_MISSING => PromptOutcome::Missing,
            x if x > 0 => PromptOutcome::Key(char::from(x.clamp(0, 127) as u8)),
            _ => PromptOutcome::Hangup,
        }
    }
    fn watch(&self, slot: &Arc<Slot>) -> Result<(), String> {
        // The media bug holds the call until its close callback (hangup).
        by_uuid::watch(&self.uuid, Box::new(slot.clone()), slot.ticks_flag())
            .map_err(|_| "could not attach the key watcher".to_string())
    }
    fn set_status(&self, status: Status) {
        by_uuid::setvar(&self.uuid, STATUS_VAR, status.as_str());
    }
    fn mute_recorder(&self, mute: bool) {
        let file = by_uuid::getvar(&self.uuid, RECORDING_VAR);
        if !file.is_empty() && by_uuid::record_mask(&self.uuid, &file, mute) != 0 {
            log::debug!(
                "callconsent: {}: no recording to {}",
                self.uuid,
                if mute { "mask" } else { "unmask" }
            );
        }
    }
    fn start_recorder(&self, plan: &RecorderPlan) -> Result<String, String> {
        // record_session writes both parties into one file; separate legs are an Asterisk option.
        let file = plan.mixed.display().to_string();
        if by_uuid::record_start(&self.uuid, &file) != 0 {
            return Err("record_session did not start (is mod_sndfile loaded?)".into());
        }
        by_uuid::setvar(&self.uuid, RECORDING_VAR, &file);
        Ok(file)
    }
    fn stop_recorder(&self, id: &str) {
        if by_uuid::record_stop(&self.uuid, id) != 0 {
            log::debug!("callconsent: the recording {id} was already stopped");
        }
    }
    fn run_gosub(&self, target: &str) -> bool {
        // `context,exten,priority` as FreeSWITCH runs it: the extension of that XML dialplan
        // context, executed on the caller's session while it stays bridged (uuid_broadcast of
        // execute_extension); the priority has no meaning there. The extension reads the digits
        // once with `${callconsent(secure_digits ${uuid})}`.
        let mut parts = target.split(',');
        let (Some(context), Some(exten)) = (parts.next(), parts.next()) else { return false };
        by_uuid::broadcast(&self.uuid, &format!("execute_extension::{exten} XML {context}")) == 0
    }
    fn play_to_caller(&self, sound: &str) -> bool {
        !by_uuid::partner_uuid(&self.uuid).is_empty() && by_uuid::broadcast(&self.uuid, sound) == 0
    }
    fn tone_to_agent(&self, tones: &str) -> bool {
        let agent = by_uuid::partner_uuid(&self.uuid);
        !agent.is_empty() && by_uuid::broadcast(&agent, &tone_stream(tones)) == 0
    }
    fn send_to_caller(&self, digits: &str) -> bool {
        by_uuid::send_digits(&self.uuid, digits) == 0
    }
    fn bridge_peer(&self) -> Option<String> {
        Some(by_uuid::partner_name(&self.uuid)).filter(|n| !n.is_empty())
    }
    fn owned(&self) -> Box<dyn CallChannel + Send> {
        Box::new(self.clone())
    }
}

/// FreeSWITCH as a whole: CUSTOM events and session lookups.
pub struct FreeSwitch;

/// The PBX's name in the audit lines.
pub const PBX: &str = "freeswitch";

impl Host for FreeSwitch {
    fn name(&self) -> &'static str {
        PBX
    }
    fn notify(&self, _channel: &str, fields: &[(&'static str, String)]) {
        let uuid =
            fields.iter().find(|(k, _)| *k == "Uniqueid").map(|(_, v)| v.as_str()).unwrap_or("");
        event(STATE_SUBCLASS, uuid, fields);
    }
    fn agent_of(&self, uniqueid: &str) -> Option<String> {
        Some(by_uuid::partner_name(uniqueid)).filter(|n| !n.is_empty())
    }
    fn module_event(&self, _event: &'static str, fields: &[(&'static str, String)]) {
        event(AUDIT_SUBCLASS, "", fields);
    }
}
