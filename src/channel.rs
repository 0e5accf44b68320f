//! The runtime's `CallChannel` and `Host`, over Asterisk's channels (through `ffi`).
use std::sync::Arc;

use callconsent_core::call::{PromptOutcome, Status};
use callconsent_runtime::{CallChannel, Host, RecorderPlan, Slot};

use crate::ffi::{self, sys, Chan, ChanRef};

pub const STATUS_VAR: &str = "CALLCONSENT_STATUS";
const MIXMON_ID_VAR: &str = "CALLCONSENT_MIXMON_ID";

/// The channel operations, on a borrowed channel (callbacks) and an owned one (the worker).
fn play(c: Chan<'_>, sound: &str, keys: &str) -> PromptOutcome {
    let rc = c.stream_and_wait(sound, keys);
    match rc {
        0 => PromptOutcome::Completed,
        x if x == sys::cc_stream_result_CC_STREAM_MISSING => PromptOutcome::Missing,
        x if x > 0 => PromptOutcome::Key(char::from(x.clamp(0, 127) as u8)),
        _ => PromptOutcome::Hangup,
    }
}

fn watch(c: Chan<'_>, slot: &Arc<Slot>) -> Result<(), String> {
    // The framehook holds the call until its destroy callback (hangup).
    // The ticks flag lives in the slot, which the box keeps alive until destroy.
    c.hook_attach(Box::new(slot.clone()), slot.ticks_flag())
        .map_err(|_| "could not attach the key watcher".to_string())?;
    if c.watch_bridges(&slot.uniqueid) != 0 {
        log::warn!(
            "callconsent: {}: cannot watch bridge joins; the recording cannot start",
            slot.channel
        );
    }
    Ok(())
}

fn start_recorder(c: Chan<'_>, plan: &RecorderPlan) -> Result<String, String> {
    let mut options = format!("i({MIXMON_ID_VAR})");
    if let Some((rx, tx)) = &plan.legs {
        options.push_str(&format!("r({})t({})", rx.display(), tx.display()));
    }
    if c.mixmonitor_start(&plan.mixed.display().to_string(), &options) != 0 {
        return Err("MixMonitor did not start (is app_mixmonitor loaded?)".into());
    }
    Ok(c.getvar(MIXMON_ID_VAR))
}

/// The borrowed channel of either kind.
trait AsChan {
    fn chan(&self) -> Chan<'_>;
}

impl AsChan for Chan<'_> {
    fn chan(&self) -> Chan<'_> {
        *self
    }
}

impl AsChan for ChanRef {
    fn chan(&self) -> Chan<'_> {
        self.borrow()
    }
}

macro_rules! call_channel {
    ($t:ty) => {
        impl CallChannel for $t {
            fn play(&self, sound: &str, keys: &str) -> PromptOutcome {
                play(self.chan(), sound, keys)
            }
            fn watch(&self, slot: &Arc<Slot>) -> Result<(), String> {
                watch(self.chan(), slot)
            }
            fn set_status(&self, status: Status) {
                self.chan().setvar(STATUS_VAR, status.as_str());
            }
            fn mute_recorder(&self, mute: bool) {
                self.chan().mixmonitor_mute(mute);
            }
            fn start_recorder(&self, plan: &RecorderPlan) -> Result<String, String> {
                start_recorder(self.chan(), plan)
            }
            fn stop_recorder(&self, id: &str) {
                if self.chan().mixmonitor_stop(id) != 0 {
                    log::debug!(
                        "callconsent: MixMonitor on {} was already stopped",
                        self.chan().name()
                    );
                }
            }
            fn play_to_caller(&self, sound: &str) -> bool {
                self.chan().play_to_self(sound) == 0
            }
            fn run_gosub(&self, target: &str) -> bool {
                self.chan().run_gosub(target) == 0
            }
            fn tone_to_agent(&self, tones: &str) -> bool {
                self.chan().tones_to_peer(tones) == 0
            }
            fn send_to_caller(&self, digits: &str) -> bool {
                self.chan().send_digits(digits) == 0
            }
            fn bridge_peer(&self) -> Option<String> {
                self.chan().bridge_peer().map(|p| p.borrow().name())
            }
            fn owned(&self) -> Box<dyn CallChannel + Send> {
                Box::new(self.chan().to_owned())
            }
        }
    };
}

call_channel!(Chan<'_>);
call_channel!(ChanRef);

/// Asterisk as a whole: AMI events and channel lookups.
pub struct Asterisk;

/// The PBX's name in the audit lines.
pub const PBX: &str = "asterisk";

impl Host for Asterisk {
    fn name(&self) -> &'static str {
        PBX
    }
    fn notify(&self, channel: &str, fields: &[(&'static str, String)]) {
        let body: String = fields.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        ffi::manager_event(channel, &body);
    }
    fn agent_of(&self, uniqueid: &str) -> Option<String> {
        ChanRef::by_name(uniqueid).and_then(|c| c.borrow().bridge_peer()).map(|p| p.borrow().name())
    }
    fn module_event(&self, event: &'static str, fields: &[(&'static str, String)]) {
        let body: String = fields.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
        ffi::module_event(event, &body);
    }
}
