//! Every function the C shim calls, each written with `entry!` (arguments checked and converted,
//! the body run inside the panic guard, the host's error value on failure).
use std::ffi::{c_char, c_int, c_long, c_void};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use callconsent_core::audit::Source;
use callconsent_core::call::{Dir, Press, Status, Verdict};
use callconsent_core::config::{self, Config, Defaults, Entry};
use callconsent_core::policy;
use callconsent_guard::entry;
use callconsent_runtime::{
    show, Begun, CallChannel, CallIds, ControlRequest, Fed, Frame, Runtime, Slot,
};

use crate::channel::Asterisk;
use crate::ffi::{
    self, sys, AstDir, Chan, ChanRef, Collector, Hooked, Opaque, TextSlot, Unhooked, Writer,
    WriterFn,
};

pub const CONFIG_FILE: &str = "callconsent.conf";

static RUNTIME: RwLock<Option<Arc<Runtime>>> = RwLock::new(None);

fn runtime() -> Option<Arc<Runtime>> {
    RUNTIME.read().ok().and_then(|m| m.clone())
}

fn read_config() -> Result<Config, String> {
    let defaults = Defaults {
        spool_dir: PathBuf::from(ffi::dir(AstDir::Spool)).join("callconsent"),
        audit_log: PathBuf::from(ffi::dir(AstDir::Log)).join("callconsent/audit.jsonl"),
    };
    let path = format!("{}/{CONFIG_FILE}", ffi::dir(AstDir::Config));
    let entries = match ffi::config_read(CONFIG_FILE) {
        Ok(e) => e,
        Err(rc) if rc == sys::cc_config_status_CC_CONFIG_MISSING => {
            return Err(format!(
                "{path}: file not found (copy dialplan/callconsent.conf.sample there)"
            ))
        }
        Err(_) => {
            return Err(format!(
                "{path}: the file could not be parsed (see the config messages above)"
            ))
        }
    };
    config::parse(&entries, &defaults, &|sound| ffi::sound_exists(sound, "en"))
        .map_err(|e| e.to_string())
}

fn load() -> Result<(), String> {
    let _ = log::set_logger(&ffi::LOGGER);
    log::set_max_level(log::LevelFilter::Debug);
    std::panic::set_hook(Box::new(|info| {
        log::error!(
            "callconsent: panic at {}: {}",
            info.location().map(|l| l.to_string()).unwrap_or_default(),
            info
        );
    }));
    let state = PathBuf::from(ffi::dir(AstDir::Var)).join("callconsent");
    Runtime::discard_before_config(&state, crate::channel::PBX);
    let cfg = read_config()?;
    let rt = Runtime::start(cfg, &state, Box::new(Asterisk))?;
    if let Ok(mut g) = RUNTIME.write() {
        *g = Some(Arc::new(rt));
    }
    Ok(())
}

/// Finds the watched call a control names: the caller's channel itself, or the agent's channel
/// bridged to it (directly or through a Local channel pair).
fn find_call(rt: &Runtime, name: &str) -> Option<(Arc<Slot>, ChanRef)> {
    let start = ChanRef::by_name(name)?;
    let mut candidates = vec![];
    if let Some(p) = start.borrow().bridge_peer() {
        candidates.push(p);
    }
    if let Some(l) = start.borrow().local_peer() {
        if let Some(p) = l.borrow().bridge_peer() {
            candidates.push(p);
        }
        candidates.push(l);
    }
    candidates.insert(0, start);
    candidates.into_iter().find_map(|c| rt.calls().get(&c.borrow().uniqueid()).map(|s| (s, c)))
}

/// A control of the call `channel` belongs to, by `actor`; its answer as `Key: value` lines.
fn control(
    channel: &str,
    request: ControlRequest,
    source: Source,
    actor: &str,
) -> Result<Vec<String>, String> {
    let rt = runtime().ok_or("callconsent is not loaded")?;
    let (slot, chan) = find_call(&rt, channel)
        .ok_or_else(|| format!("no call recorded by CallConsent on channel {channel}"))?;
    let caller = if chan.borrow().uniqueid() == slot.uniqueid {
        chan
    } else {
        ChanRef::by_name(&slot.uniqueid).ok_or("the caller's channel is gone")?
    };
    Ok(rt
        .control(&slot, &caller, request, source, actor)
        .into_iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect())
}

fn control_request(c: c_int) -> Option<ControlRequest> {
    use callconsent_core::call::Command;
    match c {
        x if x == sys::cc_control_CC_CONTROL_PAUSE as c_int => {
            Some(ControlRequest::Command(Command::Pause))
        }
        x if x == sys::cc_control_CC_CONTROL_RESUME as c_int => {
            Some(ControlRequest::Command(Command::Resume))
        }
        x if x == sys::cc_control_CC_CONTROL_DELETE as c_int => {
            Some(ControlRequest::Command(Command::Delete))
        }
        x if x == sys::cc_control_CC_CONTROL_STATUS as c_int => Some(ControlRequest::Status),
        x if x == sys::cc_control_CC_CONTROL_SECURE as c_int => {
            Some(ControlRequest::Command(Command::Secure))
        }
        _ => None,
    }
}

fn frame_of(dir: c_int, kind: c_int, digit: c_int, len_ms: c_long) -> Frame {
    if kind == sys::cc_frame_kind_CC_FRAME_VOICE as c_int {
        return Frame::Voice;
    }
    let press = if kind == sys::cc_frame_kind_CC_FRAME_DTMF_BEGIN as c_int {
        Press::Begin
    } else {
        Press::End
    };
    let dir = if dir == sys::cc_dir_CC_DIR_READ as c_int { Dir::Caller } else { Dir::Agent };
    let len_ms = u32::try_from(len_ms.max(0)).unwrap_or(u32::MAX);
    Frame::Dtmf { dir, press, digit: char::from(digit.clamp(0, 127) as u8), len_ms }
}

fn answer(fed: Fed) -> c_int {
    // Whether ticks are wanted is read by the hook from the slot's flag, not from this answer.
    if fed.verdict == Verdict::Drop {
        sys::cc_answer_CC_DROP as c_int
    } else {
        sys::cc_answer_CC_PASS as c_int
    }
}

entry! {
    /// Module load: the configuration, then the runtime. A bad file declines the load.
    fn cc_rs_load() -> c_int, on_error -1 => {
        match load() {
            Ok(()) => 0,
            Err(e) => {
                log::error!("callconsent: not loaded: {e}");
                -1
            }
        }
    }

    /// `module reload` / `callconsent reload`: profiles swapped atomically, or refused.
    fn cc_rs_reload() -> c_int, on_error -1 => {
        let Some(rt) = runtime() else { return -1 };
        match read_config() {
            Ok(cfg) => {
                let names = rt.reload(cfg);
                log::info!("callconsent: reloaded; profiles: {names}; calls in progress keep their profile");
                0
            }
            Err(e) => {
                log::error!("callconsent: reload refused, the running configuration stays: {e}");
                -1
            }
        }
    }

    /// Module unload: the runtime's threads are joined in order (the audit writer last, after
    /// writing everything queued). No blocking channel receive happens on this Asterisk thread:
    /// crossbeam's waiter is a thread-local with a destructor, which would pin the library.
    fn cc_rs_unload(), on_error () => {
        let rt = RUNTIME.write().ok().and_then(|mut g| g.take());
        drop(rt);
        let _ = std::panic::take_hook();
    }

    /// `CallConsent(profile[,dialled])` on the caller's channel.
    fn cc_rs_exec(chan: Chan<'_> = *mut sys::cc_chan, data: String = *const c_char) -> c_int, on_error 0 => {
        let mut args = data.splitn(2, ',');
        let profile = args.next().unwrap_or("").trim().to_string();
        let dialled = args.next().unwrap_or("").trim().to_string();
        let Some(rt) = runtime() else {
            chan.set_status(Status::Error);
            return 0;
        };
        let ids = CallIds { channel: chan.name(), uniqueid: chan.uniqueid(), linkedid: chan.linkedid() };
        match rt.begin(&chan, ids, &profile, &chan.caller_number(), &dialled) {
            Begun::Continue => 0,
            Begun::HungUp => -1,
        }
    }

    /// A DTMF or voice frame of a watched call (the media path).
    fn cc_rs_frame(slot: Hooked<'_, Arc<Slot>> = *mut c_void, chan: Chan<'_> = *mut sys::cc_chan, dir: c_int = c_int, kind: c_int = c_int, digit: c_int = c_int, len_ms: c_long = c_long) -> c_int, on_error 0 => {
        let slot: &Arc<Slot> = &slot;
        let Some(rt) = runtime() else { return 0 };
        answer(rt.frame(slot, &chan, frame_of(dir, kind, digit, len_ms)))
    }

    /// The watched caller's channel joined a bridge.
    fn cc_rs_joined(uniqueid: String = *const c_char, chan: Chan<'_> = *mut sys::cc_chan), on_error () => {
        if let Some(rt) = runtime() {
            rt.joined(&uniqueid, &chan);
        }
    }

    /// The framehook is destroyed: the call hung up.
    fn cc_rs_hook_destroy(slot: Unhooked<Arc<Slot>> = *mut c_void), on_error () => {
        let slot: Box<Arc<Slot>> = slot.0;
        if let Some(rt) = runtime() {
            rt.hangup(&slot);
        }
    }

    /// AMI `CallConsentPause/Resume/Delete/Status`.
    fn cc_rs_control(channel: String = *const c_char, which: c_int = c_int, source: c_int = c_int, out: WriterFn = sys::cc_line_writer, ctx: Opaque = *mut c_void) -> c_int, on_error -1 => {
        let out = Writer::new(out, ctx);
        let source = if source == sys::cc_source_CC_SOURCE_AMI as c_int { Source::Ami } else { Source::Dialplan };
        // AMI does not tell a module which manager user sent the action: the channel it named is
        // recorded as the actor.
        let actor = format!("AMI Channel: {channel}");
        let result = control_request(which).ok_or_else(|| format!("unknown control {which}")).and_then(|r| control(&channel, r, source, &actor));
        match result {
            Ok(lines) => {
                out.lines(&lines);
                0
            }
            Err(e) => {
                out.line(&e);
                -1
            }
        }
    }

    /// `CallConsentControl(action[,channel])`: for features.conf applicationmap on the agent's side.
    fn cc_rs_control_exec(chan: Chan<'_> = *mut sys::cc_chan, data: String = *const c_char) -> c_int, on_error 0 => {
        let mut args = data.splitn(2, ',');
        let action = args.next().unwrap_or("").trim().to_string();
        let target = args.next().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
        let Some(rt) = runtime() else { return 0 };
        if !policy::dialplan_control_allowed(rt.calls().contains(&chan.uniqueid()), target.is_some()) {
            log::warn!("callconsent: CallConsentControl({action}) refused on the caller's own channel {}", chan.name());
            chan.setvar("CALLCONSENT_CONTROL", "REFUSED");
            return 0;
        }
        let name = target.unwrap_or_else(|| chan.name());
        let result = ControlRequest::parse(&action)
            .ok_or_else(|| format!("unknown action {action} (pause, resume, delete, secure, status)"))
            .and_then(|r| control(&name, r, Source::Dialplan, &chan.name()));
        match result {
            Ok(_) => chan.setvar("CALLCONSENT_CONTROL", "OK"),
            Err(e) => {
                log::warn!("callconsent: CallConsentControl({action}): {e}");
                chan.setvar("CALLCONSENT_CONTROL", "ERROR");
            }
        }
        0
    }

    /// `callconsent show calls|profiles|call <channel>`, and the channel names for completion.
    fn cc_rs_show(what: c_int = c_int, arg: String = *const c_char, out: WriterFn = sys::cc_line_writer, ctx: Opaque = *mut c_void), on_error () => {
        let out = Writer::new(out, ctx);
        let Some(rt) = runtime() else {
            out.line("callconsent is not loaded");
            return;
        };
        let lines = match what {
            x if x == sys::cc_show_CC_SHOW_CALLS as c_int => show::calls(&rt),
            x if x == sys::cc_show_CC_SHOW_PROFILES as c_int => show::profiles(&rt),
            x if x == sys::cc_show_CC_SHOW_NAMES as c_int => show::names(&rt),
            x if x == sys::cc_show_CC_SHOW_STATUS as c_int => show::status(&rt),
            _ => match find_call(&rt, &arg) {
                Some((slot, _)) => show::call(&slot),
                None => vec![format!("no call recorded by CallConsent on channel {arg}")],
            },
        };
        out.lines(&lines);
    }

    /// `CALLCONSENT(state|profile|paused|file)` on the caller's or the agent's channel.
    fn cc_rs_function(chan: Chan<'_> = *mut sys::cc_chan, field: String = *const c_char, external: c_int = c_int, out: WriterFn = sys::cc_line_writer, ctx: Opaque = *mut c_void) -> c_int, on_error -1 => {
        let out = Writer::new(out, ctx);
        let Some(rt) = runtime() else { return -1 };
        let Some((slot, _)) = find_call(&rt, &chan.uniqueid()) else { return 0 };
        if field.trim().eq_ignore_ascii_case("secure_digits") {
            // Only the dialplan reads the card (issue 24): an AMI Getvar, ARI or any other
            // external interface is refused whatever live_dangerously says, and the digits stay
            // for the payment gosub (a desktop reading first would make the payment fail).
            if external != 0 {
                log::warn!(
                    "callconsent: CALLCONSENT(secure_digits) read on {} from an external interface (AMI, ARI or HTTP): refused; only the dialplan on the caller's channel reads the digits",
                    chan.name()
                );
                return -1;
            }
            // Once: the read takes them (wiped when `digits` drops). Only on the caller's own
            // channel, where the payment gosub runs; never logged here.
            if slot.uniqueid == chan.uniqueid() {
                if let Some(digits) = slot.take_secure_digits() {
                    out.line(digits.expose());
                }
            } else {
                log::warn!("callconsent: CALLCONSENT(secure_digits) read on {}, not the caller's channel: refused", chan.name());
            }
            return 0;
        }
        match show::field(&slot, &field) {
            Ok(v) => {
                out.line(&v);
                0
            }
            Err(e) => {
                log::warn!("callconsent: {e}");
                -1
            }
        }
    }

    /// One entry of callconsent.conf, from Asterisk's parser (see `ffi::config_read`).
    fn cc_rs_config_entry(ctx: Collector<'_, Entry> = *mut c_void, category: String = *const c_char, name: Option<String> = *const c_char, value: String = *const c_char, file: String = *const c_char, line: c_int = c_int), on_error () => {
        ctx.push(Entry { category, name, value, file, line: line.max(0) as u32 });
    }

    /// A text value the shim hands back (see `Chan::getvar`).
    fn cc_rs_take_text(ctx: TextSlot<'_> = *mut c_void, text: String = *const c_char), on_error () => {
        ctx.put(text);
    }
}
