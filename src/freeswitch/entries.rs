//! Every function the C shim calls, each written with `entry!` (arguments checked and converted,
//! the body run inside the panic guard, the host's error value on failure).
use std::ffi::{c_char, c_int, c_uint, c_void};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use callconsent_core::audit::Source;
use callconsent_core::call::{Dir, Press, Status, Verdict};
use callconsent_core::config::{self, Config, Defaults, Entry};
use callconsent_guard::entry;
use callconsent_runtime::{show, CallChannel, CallIds, ControlRequest, Frame, Runtime, Slot};

use crate::channel::{FreeSwitch, FsChannel};
use crate::ffi::{
    self, by_uuid, sys, Collector, FsDir, Hooked, Opaque, Session, TextSlot, Unhooked, Writer,
    WriterFn,
};

static RUNTIME: RwLock<Option<Arc<Runtime>>> = RwLock::new(None);

fn runtime() -> Option<Arc<Runtime>> {
    RUNTIME.read().ok().and_then(|m| m.clone())
}

/// A sound as FreeSWITCH's `playback` takes it: a stream (`tone_stream://`, `silence_stream://`,
/// ...), an absolute path, or a path under `sound_prefix` (vars.xml) where `playback` looks for
/// it, else under the sounds directory; with or without `.wav`.
fn sound_exists(sound: &str) -> bool {
    if sound.contains("://") {
        return true;
    }
    let base = Some(ffi::global_var("sound_prefix"))
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ffi::dir(FsDir::Sounds));
    let path = if Path::new(sound).is_absolute() {
        PathBuf::from(sound)
    } else {
        PathBuf::from(base).join(sound)
    };
    path.is_file() || PathBuf::from(format!("{}.wav", path.display())).is_file()
}

fn read_config() -> Result<Config, String> {
    let defaults = Defaults {
        spool_dir: PathBuf::from(ffi::dir(FsDir::Recordings)).join("callconsent"),
        audit_log: PathBuf::from(ffi::dir(FsDir::Log)).join("callconsent/audit.jsonl"),
    };
    let path = format!("{}/autoload_configs/callconsent.conf.xml", ffi::dir(FsDir::Conf));
    let entries = match ffi::config_read() {
        Ok(e) => e,
        Err(-1) => return Err(format!("{path}: no <configuration name=\"callconsent.conf\"> (copy dialplan/freeswitch/callconsent.conf.xml there, then reloadxml)")),
        Err(_) => return Err(format!("{path}: a <profile> has no name")),
    };
    let cfg = config::parse(&entries, &defaults, &sound_exists).map_err(|e| e.to_string())?;
    // record_session writes both parties into one file: separate legs are an Asterisk option.
    if let Some((name, _)) = cfg.profiles.iter().find(|(_, p)| p.record_legs) {
        return Err(format!("{path}: [{name}] record_legs: not supported on FreeSWITCH (record_session writes one file of both parties); remove it"));
    }
    Ok(cfg)
}

fn state_dir() -> PathBuf {
    PathBuf::from(ffi::dir(FsDir::Db)).join("callconsent")
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
    let state = state_dir();
    Runtime::discard_before_config(&state, crate::channel::PBX);
    let cfg = read_config()?;
    let rt = Runtime::start(cfg, &state, Box::new(FreeSwitch))?;
    if let Ok(mut g) = RUNTIME.write() {
        *g = Some(Arc::new(rt));
    }
    Ok(())
}

/// The watched call a uuid belongs to: the caller's session itself, or the agent bridged to it.
fn find_call(rt: &Runtime, uuid: &str) -> Option<Arc<Slot>> {
    rt.calls().get(uuid).or_else(|| {
        let partner = by_uuid::partner_uuid(uuid);
        (!partner.is_empty()).then(|| rt.calls().get(&partner)).flatten()
    })
}

const USAGE: &str = "usage: callconsent pause|resume|delete|secure|status|secure_digits <uuid> | show calls|profiles|status | reload";

/// The `callconsent` API command: its output lines, or the error line.
/// `on`: the session the command runs on (a dialplan's `${callconsent(...)}`), None from fs_cli
/// or ESL.
fn api(cmd: &str, on: Option<&str>) -> Result<Vec<String>, String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    match words.as_slice() {
        ["reload"] => {
            let rt = runtime().ok_or("callconsent is not loaded")?;
            let cfg = read_config()
                .map_err(|e| format!("reload refused, the running configuration stays: {e}"))?;
            let names = rt.reload(cfg);
            log::info!(
                "callconsent: reloaded; profiles: {names}; calls in progress keep their profile"
            );
            Ok(vec![format!("+OK reloaded; profiles: {names}")])
        }
        ["show", what] => {
            let rt = runtime().ok_or("callconsent is not loaded")?;
            match *what {
                "calls" => Ok(show::calls(&rt)),
                "profiles" => Ok(show::profiles(&rt)),
                "status" => Ok(show::status(&rt)),
                _ => Err(USAGE.into()),
            }
        }
        // The payment extension's read of a secure entry's digits: once, on the caller's session.
        ["secure_digits", uuid] => {
            let rt = runtime().ok_or("callconsent is not loaded")?;
            // Only the dialplan running on that session reads the card (issue 24): fs_cli, ESL's
            // api/bgapi and other sessions are refused, and the digits stay for it.
            if on != Some(*uuid) {
                log::warn!(
                    "callconsent: secure_digits of {uuid} asked {}: refused; only the payment extension on that session reads them",
                    on.map_or("from fs_cli or ESL".to_string(), |s| format!("on another session ({s})"))
                );
                return Err(format!("secure_digits of {uuid}: refused; only the dialplan on that session reads them (${{callconsent(secure_digits ${{uuid}})}})"));
            }
            let slot = rt.calls().get(uuid).ok_or_else(|| format!("no call watched by callconsent on session {uuid} (secure_digits is read on the caller's)"))?;
            Ok(slot
                .take_secure_digits()
                .map(|d| vec![d.expose().to_string()])
                .unwrap_or_else(|| vec![String::new()]))
        }
        [action, uuid] => {
            let request = ControlRequest::parse(action).ok_or(USAGE)?;
            let rt = runtime().ok_or("callconsent is not loaded")?;
            let slot = find_call(&rt, uuid)
                .ok_or_else(|| format!("no call recorded by callconsent on session {uuid}"))?;
            let caller = FsChannel { uuid: slot.uniqueid.clone() };
            // The API tells a module nothing about who sent the command: the session it named is
            // recorded as the actor.
            let actor = format!("API uuid: {uuid}");
            let mut lines: Vec<String> = rt
                .control(&slot, &caller, request, Source::Esl, &actor)
                .into_iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            if let Some(first) = lines.first_mut() {
                *first = format!("+OK {}", first.trim_start_matches("Message: "));
            }
            Ok(lines)
        }
        _ => Err(USAGE.into()),
    }
}

entry! {
    /// Module load: the configuration, then the runtime. A bad file declines the load and
    /// FreeSWITCH goes on without the module.
    fn cc_rs_fs_load() -> c_int, on_error -1 => {
        match load() {
            Ok(()) => 0,
            Err(e) => {
                log::error!("callconsent: not loaded: {e}");
                -1
            }
        }
    }

    /// Not used by the shim today (reload goes through the API command); kept for symmetry.
    fn cc_rs_fs_reload() -> c_int, on_error -1 => {
        match api("reload", None) {
            Ok(_) => 0,
            Err(e) => {
                log::error!("callconsent: {e}");
                -1
            }
        }
    }

    /// Module unload: the runtime's threads are joined in order (the audit writer last).
    fn cc_rs_fs_unload(), on_error () => {
        let rt = RUNTIME.write().ok().and_then(|mut g| g.take());
        drop(rt);
        let _ = std::panic::take_hook();
    }

    /// `<action application="callconsent" data="PROFILE[,DIALLED]"/>` on the caller's leg.
    fn cc_rs_fs_exec(session: Session<'_> = *mut sys::cc_session, data: String = *const c_char), on_error () => {
        let mut args = data.splitn(2, ',');
        let profile = args.next().unwrap_or("").trim().to_string();
        let dialled = args.next().unwrap_or("").trim().to_string();
        let chan = FsChannel { uuid: session.uuid() };
        let Some(rt) = runtime() else {
            chan.set_status(Status::Error);
            return;
        };
        // The call's id for the draw: the A leg's uuid (call_uuid on a B leg).
        let linkedid = Some(session.var("call_uuid")).filter(|v| !v.is_empty()).unwrap_or_else(|| chan.uuid.clone());
        let ids = CallIds { channel: session.name(), uniqueid: chan.uuid.clone(), linkedid };
        let _ = rt.begin(&chan, ids, &profile, &session.caller_number(), &dialled);
    }

    /// A key on a watched caller's session: from the caller (RECV) or to the caller (SEND: the
    /// agent's keys through the bridge). A key arrives whole: its start and end are fed at once.
    fn cc_rs_fs_dtmf(uuid: String = *const c_char, dir: c_int = c_int, digit: c_int = c_int, duration_ms: c_uint = c_uint) -> c_int, on_error 0 => {
        let pass = sys::cc_fs_answer_CC_FS_PASS as c_int;
        let Some(rt) = runtime() else { return pass };
        let Some(slot) = rt.calls().get(&uuid) else { return pass };
        let dir = if dir == sys::cc_fs_dir_CC_FS_DIR_RECV as c_int { Dir::Caller } else { Dir::Agent };
        let digit = char::from(digit.clamp(0, 127) as u8);
        let chan = FsChannel { uuid };
        let begin = rt.frame(&slot, &chan, Frame::Dtmf { dir, press: Press::Begin, digit, len_ms: 0 });
        let end = rt.frame(&slot, &chan, Frame::Dtmf { dir, press: Press::End, digit, len_ms: duration_ms });
        if begin.verdict == Verdict::Drop || end.verdict == Verdict::Drop {
            sys::cc_fs_answer_CC_FS_DROP as c_int
        } else {
            pass
        }
    }

    /// An agent's key a loopback leg has already relayed to the watched caller `uuid` (the DTMF
    /// event): its codes act; it cannot be held back any more.
    fn cc_rs_fs_agent_relayed(uuid: String = *const c_char, digit: c_int = c_int), on_error () => {
        let Some(rt) = runtime() else { return };
        let Some(slot) = rt.calls().get(&uuid) else { return };
        let digit = char::from(digit.clamp(0, 127) as u8);
        rt.frame(&slot, &FsChannel { uuid }, Frame::AgentKeyRelayed { digit });
    }

    /// A read frame while the call asks for clock ticks (held digits, automatic resume).
    fn cc_rs_fs_tick(call: Hooked<'_, Arc<Slot>> = *mut c_void), on_error () => {
        let slot: &Arc<Slot> = &call;
        if let Some(rt) = runtime() {
            rt.frame(slot, &FsChannel { uuid: slot.uniqueid.clone() }, Frame::Voice);
        }
    }

    /// The watcher's media bug closed: the call hung up.
    fn cc_rs_fs_close(call: Unhooked<Arc<Slot>> = *mut c_void), on_error () => {
        let slot: Box<Arc<Slot>> = call.0;
        if let Some(rt) = runtime() {
            rt.hangup(&slot);
        }
    }

    /// A session joined a bridge: an agent answered, or a transfer.
    fn cc_rs_fs_bridged(uuid: String = *const c_char), on_error () => {
        if let Some(rt) = runtime() {
            if rt.calls().contains(&uuid) {
                rt.joined(&uuid, &FsChannel { uuid: uuid.clone() });
            }
        }
    }

    /// `callconsent ...` from fs_cli or ESL.
    fn cc_rs_fs_api(cmd: String = *const c_char, session_uuid: String = *const c_char, out: WriterFn = sys::cc_line_writer, ctx: Opaque = *mut c_void) -> c_int, on_error -1 => {
        let out = Writer::new(out, ctx);
        let on = Some(session_uuid.as_str()).filter(|s| !s.is_empty());
        match api(&cmd, on) {
            Ok(lines) => {
                out.lines(&lines);
                0
            }
            Err(e) => {
                out.line(&format!("-ERR {e}"));
                -1
            }
        }
    }

    /// One `<param>` of callconsent.conf, from the XML registry (see `ffi::config_read`).
    fn cc_rs_fs_config_entry(ctx: Collector<'_, Entry> = *mut c_void, category: String = *const c_char, name: Option<String> = *const c_char, value: String = *const c_char, file: String = *const c_char, line: c_int = c_int), on_error () => {
        ctx.push(Entry { category, name, value, file, line: line.max(0) as u32 });
    }

    /// A text value the shim hands back.
    fn cc_rs_fs_take_text(ctx: TextSlot<'_> = *mut c_void, text: String = *const c_char), on_error () => {
        ctx.put(text);
    }
}
