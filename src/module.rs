//! The Asterisk 22 adapter: executes the core's actions on real channels. It holds no policy.
// The `cc_rs_*` entry points are called only by the C shim, which passes the pointers Asterisk
// gave it; each dereference says why it holds (SAFETY). Marking them `unsafe fn` would change
// nothing for their only caller.
#![allow(clippy::not_unsafe_ptr_arg_deref)]
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, c_int, c_void};
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;

use crate::audit::{record, AuditLog, AuditSender};
use crate::caps::Caps;
use crate::core::call::{Action, Call, Command, Dir, Event, PromptOutcome, Press};
use crate::core::config::{self, Config, Defaults};
use crate::guard;

pub mod ffi;
mod sweeper;
mod worker;

use sweeper::Sweeper;

use ffi::{sys, Chan, ChanRef};
use worker::{Job, Worker};

pub const CONFIG_FILE: &str = "callconsent.conf";
pub const STATUS_VAR: &str = "CALLCONSENT_STATUS";
const MIXMON_ID_VAR: &str = "CALLCONSENT_MIXMON_ID";

/// One watched call: the core's value plus what the adapter needs to act on it.
pub struct Slot {
    call: Mutex<Call>,
    pub channel: String,
    pub uniqueid: String,
    pub linkedid: String,
    pub profile: String,
    /// The notice the caller heard (its sound name: the notice's version).
    pub notice: String,
    files: Mutex<Vec<PathBuf>>,
    mixmon_id: Mutex<String>,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock is already logged by the guard; the data stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Slot {
    pub fn files(&self) -> Vec<PathBuf> {
        lock(&self.files).clone()
    }
    pub fn mixmon_id(&self) -> String {
        lock(&self.mixmon_id).clone()
    }
    pub fn agent(&self) -> Option<String> {
        lock(&self.call).agent().map(str::to_string)
    }
    /// An audit record of this call: its linkedid, channel and profile, then the facts.
    pub fn record(&self, event: &str, facts: serde_json::Map<String, serde_json::Value>) -> serde_json::Map<String, serde_json::Value> {
        let mut f = serde_json::Map::new();
        f.insert("profile".into(), self.profile.clone().into());
        f.extend(facts);
        record(&self.linkedid, &self.channel, event, f)
    }
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
    fn feed(&self, ev: Event) -> (crate::core::call::Verdict, Vec<Action>, bool) {
        let mut call = lock(&self.call);
        let (v, a) = call.on(ev);
        (v, a, call.wants_ticks())
    }
}

struct Module {
    // Field order is drop order: the threads holding audit senders go first.
    _sweeper: Sweeper,
    worker: Worker,
    // After the worker (which holds a sender to it), before the audit log.
    _encoders: Option<crate::encoders::Pool>,
    audit_tx: AuditSender,
    caps: Caps,
    secret: Vec<u8>,
    _audit: AuditLog,
    config: RwLock<Arc<Config>>,
    calls: Mutex<HashMap<String, Arc<Slot>>>,
}

static MODULE: RwLock<Option<Arc<Module>>> = RwLock::new(None);
static LOGGER: ffi::AstLogger = ffi::AstLogger;

fn module() -> Option<Arc<Module>> {
    MODULE.read().ok().and_then(|m| m.clone())
}

impl Module {
    fn config(&self) -> Arc<Config> {
        self.config.read().map(|c| c.clone()).unwrap_or_else(|e| e.into_inner().clone())
    }
    fn audit(&self, slot: &Slot, event: &str, facts: serde_json::Map<String, serde_json::Value>) {
        self.audit_tx.send(slot.record(event, facts));
    }
}

fn read_config() -> Result<Config, String> {
    let defaults = Defaults {
        spool_dir: PathBuf::from(ffi::dir(sys::cc_ast_spool_dir)).join("callconsent"),
        audit_log: PathBuf::from(ffi::dir(sys::cc_ast_log_dir)).join("callconsent/audit.jsonl"),
    };
    let path = format!("{}/{CONFIG_FILE}", ffi::dir(sys::cc_ast_config_dir));
    let entries = match ffi::config_read(CONFIG_FILE) {
        Ok(e) => e,
        Err(rc) if rc == sys::cc_config_status_CC_CONFIG_MISSING => {
            return Err(format!("{path}: file not found (copy dialplan/callconsent.conf.sample there)"))
        }
        Err(_) => return Err(format!("{path}: the file could not be parsed (see the config messages above)")),
    };
    config::parse(&entries, &defaults, &|sound| ffi::sound_exists(sound, "en")).map_err(|e| e.to_string())
}

fn load() -> Result<(), String> {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Debug);
    std::panic::set_hook(Box::new(|info| {
        log::error!("callconsent: panic at {}: {}", info.location().map(|l| l.to_string()).unwrap_or_default(), info);
    }));
    let cfg = read_config()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(&cfg.general.spool_dir)
        .map_err(|e| format!("spool_dir {}: {e}", cfg.general.spool_dir.display()))?;
    for sub in ["staging", "kept"] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(cfg.general.spool_dir.join(sub))
            .map_err(|e| format!("spool_dir {}: {e}", cfg.general.spool_dir.display()))?;
    }
    let var = PathBuf::from(ffi::dir(sys::cc_ast_var_dir)).join("callconsent");
    std::fs::DirBuilder::new().recursive(true).mode(0o750).create(&var).map_err(|e| format!("{}: {e}", var.display()))?;
    let secret = load_secret(&var.join("secret"))?;
    let caps = Caps::open(&var.join("caps.redb"))?;
    let audit = AuditLog::open(&cfg.general.audit_log).map_err(|e| format!("audit_log {}: {e}", cfg.general.audit_log.display()))?;
    let audit_tx = audit.sender();
    discard_staging(&cfg, &audit_tx);
    let encoders = if cfg.general.archive_opus {
        let pool = crate::encoders::Pool::start(cfg.general.encoder_threads as usize, cfg.general.opus_bitrate as i32, audit_tx.clone())
            .map_err(|e| format!("encoder threads: {e}"))?;
        pool.resume(&cfg.general.spool_dir.join("kept"), &cfg.general.audit_log);
        Some(pool)
    } else {
        None
    };
    let archiver = encoders.as_ref().map(|p| p.sender());
    let worker = Worker::start(audit_tx.clone(), archiver).map_err(|e| format!("worker thread: {e}"))?;
    let sweeper = Sweeper::start(cfg.general.clone(), audit_tx.clone()).map_err(|e| format!("retention thread: {e}"))?;
    log::info!(
        "callconsent: loaded {} profile(s) ({}); recordings in {}, audit log {}",
        cfg.profiles.len(),
        cfg.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
        cfg.general.spool_dir.display(),
        cfg.general.audit_log.display()
    );
    let m = Module { _sweeper: sweeper, worker, _encoders: encoders, audit_tx, caps, secret, _audit: audit, config: RwLock::new(Arc::new(cfg)), calls: Mutex::new(HashMap::new()) };
    if let Ok(mut g) = MODULE.write() {
        *g = Some(Arc::new(m));
    }
    Ok(())
}

/// The installation's secret for the draw and the keyed hashes: created at first load (0600).
fn load_secret(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::{Read, Write};
    use std::os::unix::fs::OpenOptionsExt;
    if let Ok(s) = std::fs::read(path) {
        if s.len() >= 32 {
            return Ok(s);
        }
    }
    let mut key = vec![0u8; 32];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key)).map_err(|e| format!("/dev/urandom: {e}"))?;
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(&key).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", path.display()))?;
    log::info!("callconsent: created the installation secret {}", path.display());
    Ok(key)
}

/// After a crash or kill -9, recordings whose call never concluded are discarded (privacy by default).
fn discard_staging(cfg: &Config, audit: &AuditSender) {
    for e in std::fs::read_dir(cfg.general.spool_dir.join("staging")).into_iter().flatten().flatten() {
        let p = e.path();
        if std::fs::remove_file(&p).is_ok() {
            let mut f = serde_json::Map::new();
            f.insert("file".into(), p.display().to_string().into());
            f.insert("reason".into(), "the call never concluded while the module ran (crash or restart): discarded, privacy by default".into());
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            audit.send(record(&stem, "", "recording_discarded", f));
        }
    }
}

#[no_mangle]
pub extern "C" fn cc_rs_load() -> c_int {
    guard::enter(-1, "load", || match load() {
        Ok(()) => 0,
        Err(e) => {
            log::error!("callconsent: not loaded: {e}");
            -1
        }
    })
}

#[no_mangle]
pub extern "C" fn cc_rs_reload() -> c_int {
    guard::enter(-1, "reload", || {
        let Some(m) = module() else { return -1 };
        match read_config() {
            Ok(cfg) => {
                let old = m.config();
                if cfg.general != old.general {
                    log::warn!("callconsent: [general] changes take effect when the module is loaded again; profiles reloaded");
                }
                let names = cfg.profiles.keys().cloned().collect::<Vec<_>>().join(", ");
                if let Ok(mut g) = m.config.write() {
                    *g = Arc::new(Config { general: old.general.clone(), profiles: cfg.profiles });
                }
                log::info!("callconsent: reloaded; profiles: {names}; calls in progress keep their profile");
                0
            }
            Err(e) => {
                log::error!("callconsent: reload refused, the running configuration stays: {e}");
                -1
            }
        }
    })
}

#[no_mangle]
pub extern "C" fn cc_rs_unload() {
    guard::enter((), "unload", || {
        let m = MODULE.write().ok().and_then(|mut g| g.take());
        // Dropping the module joins its threads in order (sweeper, worker, encoders, audit writer,
        // which writes everything queued first). No blocking channel receive happens on this
        // Asterisk thread: crossbeam's waiter is a thread-local with a destructor, which would pin
        // the library after dlclose.
        drop(m);
        let _ = std::panic::take_hook();
    })
}

/// Channel names and ids are Asterisk's; a file name is built from the uniqueid only, with
/// anything but `[A-Za-z0-9._-]` replaced, so caller-controlled text never reaches a path.
pub fn safe_file_stem(uniqueid: &str) -> String {
    let s: String = uniqueid
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    format!("cc-{}", s.trim_start_matches('.'))
}

fn set_status(chan: Chan<'_>, status: &str) {
    chan.setvar(STATUS_VAR, status);
}

#[no_mangle]
pub extern "C" fn cc_rs_exec(chan: *mut sys::cc_chan, data: *const c_char) -> c_int {
    guard::enter(0, "CallConsent", || {
        // SAFETY: Asterisk runs the application with a live channel and its argument string.
        let (Some(chan), data) = (unsafe { Chan::from_ptr(chan) }, unsafe { ffi::text(data) }) else { return 0 };
        let mut args = data.splitn(2, ',');
        let profile = args.next().unwrap_or("").trim().to_string();
        let dialled = args.next().unwrap_or("").trim().to_string();
        exec(chan, &profile, &dialled)
    })
}

fn exec(chan: Chan<'_>, profile_name: &str, dialled: &str) -> c_int {
    let Some(m) = module() else {
        set_status(chan, "ERROR");
        return 0;
    };
    let cfg = m.config();
    let Some(profile) = cfg.profiles.get(profile_name).cloned() else {
        log::warn!(
            "callconsent: CallConsent({profile_name}) on {}: no such profile in {CONFIG_FILE} (profiles: {}); the call goes on unrecorded",
            chan.name(),
            cfg.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        set_status(chan, "ERROR");
        return 0;
    };
    let uniqueid = chan.uniqueid();
    if lock(&m.calls).contains_key(&uniqueid) {
        log::warn!("callconsent: CallConsent() already ran on {}; ignored", chan.name());
        return 0;
    }
    let linkedid = chan.linkedid();
    let slot = Arc::new(Slot {
        call: Mutex::new(Call::new(profile.clone(), &m.secret, &linkedid, &chan.caller_number(), dialled)),
        channel: chan.name(),
        uniqueid,
        linkedid,
        profile: profile.name.clone(),
        notice: profile.notice.clone(),
        files: Mutex::new(Vec::new()),
        mixmon_id: Mutex::new(String::new()),
        started: Instant::now(),
    });
    let mut queue: VecDeque<Action> = slot.feed(Event::Start).1.into();
    let mut hung_up = false;
    while let Some(a) = queue.pop_front() {
        match a {
            Action::Play { file, keys } => {
                let rc = chan.stream_and_wait(&file, &keys);
                if rc == sys::cc_stream_result_CC_STREAM_HANGUP {
                    hung_up = true;
                }
                if keys.is_empty() {
                    continue;
                }
                let outcome = match rc {
                    0 => PromptOutcome::Completed,
                    x if x == sys::cc_stream_result_CC_STREAM_MISSING => PromptOutcome::Missing,
                    x if x > 0 => PromptOutcome::Key(char::from(x as u8)),
                    _ => PromptOutcome::Hangup,
                };
                queue.extend(slot.feed(Event::PromptDone(outcome)).1);
            }
            other => run_actions(&m, &slot, Some(chan), vec![other]),
        }
    }
    if hung_up {
        -1
    } else {
        0
    }
}

fn start_recorder(m: &Module, slot: &Arc<Slot>, chan: Chan<'_>) -> Event {
    let stem = safe_file_stem(&slot.uniqueid);
    let dir = m.config().general.spool_dir.join("staging");
    let file = dir.join(format!("{stem}.wav"));
    let mut options = format!("i({MIXMON_ID_VAR})");
    let mut files = vec![file.clone()];
    if lock(&slot.call).profile().record_legs {
        let (rx, tx) = (dir.join(format!("{stem}-caller.wav")), dir.join(format!("{stem}-agent.wav")));
        options.push_str(&format!("r({})t({})", rx.display(), tx.display()));
        files.extend([rx, tx]);
    }
    *lock(&slot.files) = files;
    if chan.mixmonitor_start(&file.display().to_string(), &options) != 0 {
        return Event::RecorderFailed { reason: "MixMonitor did not start (is app_mixmonitor loaded?)".into() };
    }
    *lock(&slot.mixmon_id) = chan.getvar(MIXMON_ID_VAR);
    Event::RecorderStarted { file: file.display().to_string(), now_ms: slot.now_ms() }
}

/// Arms the call: watches its keys (framehook) and its bridge joins from now until hangup.
fn watch(m: &Module, slot: &Arc<Slot>, chan: Chan<'_>) {
    lock(&m.calls).insert(slot.uniqueid.clone(), slot.clone());
    let data = Box::into_raw(Box::new(slot.clone()));
    // SAFETY: `data` is handed back to cc_rs_hook_destroy, which frees it exactly once.
    let id = unsafe { chan.hook_attach(data.cast()) };
    if id < 0 {
        // SAFETY: the hook was not attached, so nobody else holds `data`.
        drop(unsafe { Box::from_raw(data) });
        lock(&m.calls).remove(&slot.uniqueid);
        let acts = slot.feed(Event::RecorderFailed { reason: "could not attach the key watcher".into() }).1;
        run_actions(m, slot, Some(chan), acts);
        return;
    }
    if chan.watch_bridges(&slot.uniqueid) != 0 {
        log::warn!("callconsent: {}: cannot watch bridge joins; the recording cannot start", slot.channel);
    }
}

/// Runs the core's actions in order, feeding back what the host answers (recorder started, cap
/// checked) and running the actions that answer gives.
fn run_actions(m: &Module, slot: &Arc<Slot>, chan: Option<Chan<'_>>, actions: Vec<Action>) {
    let mut queue: VecDeque<Action> = actions.into();
    while let Some(a) = queue.pop_front() {
        match (a, chan) {
            (Action::StartRecorder, Some(c)) => queue.extend(slot.feed(start_recorder(m, slot, c)).1),
            (Action::Watch, Some(c)) => watch(m, slot, c),
            (Action::ReserveCap { agent, period_max }, _) => {
                let period = lock(&slot.call).profile().cap_period.key(chrono::Utc::now());
                let ev = match m.caps.reserve(&agent, &period, period_max) {
                    Ok((count, allowed)) => Event::CapChecked { agent, period, count, allowed },
                    Err(e) => {
                        // An unreadable store must not lift a cap: the call is not recorded.
                        log::error!("callconsent: cap store: {e}");
                        Event::CapChecked { agent, period, count: period_max, allowed: false }
                    }
                };
                queue.extend(slot.feed(ev).1);
            }
            (a, c) => execute(m, slot, c, a),
        }
    }
}

/// The caller's channel joined a bridge: find the agent (the bridge peer, which may still be
/// joining), then let the core decide. Runs on the worker thread.
pub(crate) fn joined(slot: &Arc<Slot>, chan: &ChanRef, tries: u32) -> bool {
    let Some(m) = module() else { return true };
    let Some(peer) = chan.bridge_peer() else {
        // The peer may still be joining: try again later, and give up after about a second.
        if tries >= 20 {
            log::warn!("callconsent: {}: joined a bridge without a peer", slot.channel);
            return true;
        }
        return false;
    };
    let agent = crate::core::policy::agent_id(&peer.borrow().name());
    let acts = slot.feed(Event::Bridged { agent }).1;
    run_actions(&m, slot, Some(chan.borrow()), acts);
    true
}

/// Runs one action of the core. `chan` is the caller's channel when we are on a thread that may
/// use it (the application, the media path, or a control holding a reference).
fn execute(m: &Module, slot: &Arc<Slot>, chan: Option<Chan<'_>>, action: Action) {
    match (action, chan) {
        (Action::Mute, Some(c)) => {
            c.mixmonitor_mute(true);
        }
        (Action::Unmute, Some(c)) => {
            c.mixmonitor_mute(false);
        }
        (Action::StopAndDelete { by }, Some(c)) => m.worker.send(Job::StopAndDelete { chan: c.to_owned(), slot: slot.clone(), by }),
        (Action::StopRecorder, Some(c)) => m.worker.send(Job::Stop { chan: c.to_owned(), slot: slot.clone() }),
        (Action::StopAndDelete { .. }, None) | (Action::DeleteAgain, _) => m.worker.send(Job::DeleteAgain { slot: slot.clone() }),
        (Action::PlayToCaller(file), Some(c)) => m.worker.send(Job::PlayToCaller { chan: c.to_owned(), file }),
        (Action::ToneToAgent(tones), Some(c)) => m.worker.send(Job::Tone { chan: c.to_owned(), tones, tries: 0 }),
        (Action::SendToCaller(digits), Some(c)) => m.worker.send(Job::SendDigits { chan: c.to_owned(), digits }),
        (Action::SetStatus(s), Some(c)) => set_status(c, s.as_str()),
        (Action::Keep { pauses, spans }, _) => m.worker.send(Job::Keep { slot: slot.clone(), pauses, spans, tries: 0 }),
        (Action::Audit { event, facts }, _) => m.audit(slot, event, facts),
        (Action::Notify, _) => notify(slot),
        (a, _) => log::debug!("callconsent: {a:?} has no effect here on {}", slot.channel),
    }
}

fn status_lines(slot: &Slot) -> String {
    let call = lock(&slot.call);
    format!(
        "Uniqueid: {}\r\nLinkedid: {}\r\nProfile: {}\r\nState: {}\r\nPaused: {}\r\nFile: {}\r\n",
        slot.uniqueid,
        slot.linkedid,
        slot.profile,
        call.state_name(),
        if call.paused() { "yes" } else { "no" },
        call.file().unwrap_or("")
    )
}

fn notify(slot: &Slot) {
    ffi::manager_event(&slot.channel, &status_lines(slot));
}

fn answer(verdict: crate::core::call::Verdict, ticks: bool) -> c_int {
    let mut a = sys::cc_answer_CC_PASS as c_int;
    if verdict == crate::core::call::Verdict::Drop {
        a |= sys::cc_answer_CC_DROP as c_int;
    }
    if ticks {
        a |= sys::cc_answer_CC_WANT_TICKS as c_int;
    }
    a
}

#[no_mangle]
pub extern "C" fn cc_rs_frame(data: *mut c_void, chan: *mut sys::cc_chan, dir: c_int, kind: c_int, digit: c_int) -> c_int {
    guard::enter(0, "frame", || {
        // SAFETY: `data` is the Box<Arc<Slot>> attached with the hook, alive until destroy.
        let slot = unsafe { &*(data as *const Arc<Slot>) };
        // SAFETY: the framehook runs with a live, locked channel.
        let (Some(m), Some(chan)) = (module(), unsafe { Chan::from_ptr(chan) }) else { return 0 };
        let now_ms = slot.now_ms();
        let ev = if kind == sys::cc_frame_kind_CC_FRAME_VOICE as c_int {
            Event::Tick { now_ms }
        } else {
            let press = if kind == sys::cc_frame_kind_CC_FRAME_DTMF_BEGIN as c_int { Press::Begin } else { Press::End };
            let dir = if dir == sys::cc_dir_CC_DIR_READ as c_int { Dir::Caller } else { Dir::Agent };
            Event::Dtmf { dir, press, digit: char::from(digit.clamp(0, 127) as u8), now_ms }
        };
        let (verdict, actions, ticks) = slot.feed(ev);
        run_actions(&m, slot, Some(chan), actions);
        answer(verdict, ticks)
    })
}

#[no_mangle]
pub extern "C" fn cc_rs_joined(uniqueid: *const c_char, chan: *mut sys::cc_chan) {
    guard::enter((), "bridge join", || {
        // SAFETY: the shim passes the uniqueid it stored and the joining channel, live here.
        let (uniqueid, chan) = (unsafe { ffi::text(uniqueid) }, unsafe { Chan::from_ptr(chan) });
        let (Some(m), Some(chan)) = (module(), chan) else { return };
        let Some(slot) = lock(&m.calls).get(&uniqueid).cloned() else { return };
        // The peer may still be joining: the worker looks for it, off this thread.
        m.worker.send(Job::Joined { chan: chan.to_owned(), slot, tries: 0 });
    })
}

#[no_mangle]
pub extern "C" fn cc_rs_hook_destroy(data: *mut c_void) {
    guard::enter((), "hangup", || {
        if data.is_null() {
            return;
        }
        // SAFETY: `data` came from Box::into_raw in start_recorder and is destroyed only here.
        let slot = unsafe { Box::from_raw(data as *mut Arc<Slot>) };
        let Some(m) = module() else { return };
        let (_, actions, _) = slot.feed(Event::Hangup);
        run_actions(&m, &slot, None, actions);
        lock(&m.calls).remove(&slot.uniqueid);
    })
}

/// Finds the watched call a control names: the caller's channel itself, or the agent's channel
/// bridged to it (directly or through a Local channel pair).
fn find_call(m: &Module, name: &str) -> Option<(Arc<Slot>, ChanRef)> {
    let start = ChanRef::by_name(name)?;
    let mut candidates = vec![];
    if let Some(p) = start.bridge_peer() {
        candidates.push(p);
    }
    if let Some(l) = start.local_peer() {
        if let Some(p) = l.bridge_peer() {
            candidates.push(p);
        }
        candidates.push(l);
    }
    candidates.insert(0, start);
    let calls = lock(&m.calls);
    candidates.into_iter().find_map(|c| calls.get(&c.borrow().uniqueid()).cloned().map(|s| (s, c)))
}

fn write_out(out: *mut c_char, outlen: usize, text: &str) {
    if out.is_null() || outlen == 0 {
        return;
    }
    let bytes = text.as_bytes();
    let n = bytes.len().min(outlen - 1);
    // SAFETY: `out` is writable for `outlen` bytes (the shim's buffer); we write n + 1 <= outlen.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.cast::<u8>(), n);
        *out.add(n) = 0;
    }
}

/// Pause, resume, delete or status for the call a channel belongs to. Returns 0 or -1 with the
/// reason in `out`.
fn control(channel: &str, action: &str, source: &'static str) -> Result<String, String> {
    let m = module().ok_or("callconsent is not loaded")?;
    let (slot, chan) = find_call(&m, channel).ok_or_else(|| format!("no call recorded by CallConsent on channel {channel}"))?;
    if action.eq_ignore_ascii_case("status") {
        return Ok(format!("Message: CallConsent status\r\n{}", status_lines(&slot)));
    }
    let cmd = Command::parse(action).ok_or_else(|| format!("unknown action {action} (pause, resume, delete, status)"))?;
    let caller = if chan.borrow().uniqueid() == slot.uniqueid { chan } else { ChanRef::by_name(&slot.uniqueid).ok_or("the caller's channel is gone")? };
    let now_ms = slot.now_ms();
    let (_, actions, _) = slot.feed(Event::Control { cmd, source, now_ms });
    let acted = !actions.is_empty();
    run_actions(&m, &slot, Some(caller.borrow()), actions);
    let state = lock(&slot.call).state_name();
    Ok(format!("Message: {}\r\n{}", if acted { format!("{action} done") } else { format!("nothing to {action}: the recording is {state}") }, status_lines(&slot)))
}

#[no_mangle]
pub extern "C" fn cc_rs_control(channel: *const c_char, action: *const c_char, source: *const c_char, out: *mut c_char, outlen: usize) -> c_int {
    guard::enter(-1, "control", || {
        // SAFETY: the shim passes valid strings.
        let (channel, action, source) = unsafe { (ffi::text(channel), ffi::text(action), ffi::text(source)) };
        let source: &'static str = if source == "ami" { "ami" } else { "dialplan" };
        match control(&channel, &action, source) {
            Ok(text) => {
                write_out(out, outlen, &text);
                0
            }
            Err(e) => {
                write_out(out, outlen, &e);
                -1
            }
        }
    })
}

/// `CallConsentControl(action[,channel])`: for features.conf applicationmap on the agent's side.
#[no_mangle]
pub extern "C" fn cc_rs_control_exec(chan: *mut sys::cc_chan, data: *const c_char) -> c_int {
    guard::enter(0, "CallConsentControl", || {
        // SAFETY: Asterisk runs the application with a live channel and its argument string.
        let (Some(chan), data) = (unsafe { Chan::from_ptr(chan) }, unsafe { ffi::text(data) }) else { return 0 };
        let mut args = data.splitn(2, ',');
        let action = args.next().unwrap_or("").trim().to_string();
        let target = args.next().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string);
        let Some(m) = module() else { return 0 };
        let own = chan.uniqueid();
        if target.is_none() && lock(&m.calls).contains_key(&own) {
            // The caller's own channel: a caller must never control the recording (R9).
            log::warn!("callconsent: CallConsentControl({action}) refused on the caller's own channel {}", chan.name());
            chan.setvar("CALLCONSENT_CONTROL", "REFUSED");
            return 0;
        }
        let name = target.unwrap_or_else(|| chan.name());
        match control(&name, &action, "dialplan") {
            Ok(_) => chan.setvar("CALLCONSENT_CONTROL", "OK"),
            Err(e) => {
                log::warn!("callconsent: CallConsentControl({action}): {e}");
                chan.setvar("CALLCONSENT_CONTROL", "ERROR");
            }
        }
        0
    })
}

fn show(what: &str, arg: &str) -> String {
    let Some(m) = module() else { return "callconsent is not loaded\n".into() };
    match what {
        "names" => lock(&m.calls).values().map(|s| format!("{}\n", s.channel)).collect(),
        "profiles" => {
            let cfg = m.config();
            let mut out = format!("{:<16} {:>6} {:>4} {:>4} {:<14} {:>9}  {}\n", "Profile", "Share", "Out", "Info", "Codes", "PauseMax", "Legal basis");
            for p in cfg.profiles.values() {
                out.push_str(&format!(
                    "{:<16} {:>5}% {:>4} {:>4} {:<14} {:>8}s  {}\n",
                    p.name,
                    p.record_share,
                    p.optout_key,
                    p.info_key,
                    format!("{} {} {}", p.pause_code, p.resume_code, p.delete_code),
                    p.pause_max_seconds,
                    p.legal_basis.as_deref().unwrap_or("-")
                ));
            }
            out.push_str(&format!("{} profile(s); recordings in {}; audit log {}\n", cfg.profiles.len(), cfg.general.spool_dir.display(), cfg.general.audit_log.display()));
            out
        }
        "calls" => {
            let slots: Vec<Arc<Slot>> = lock(&m.calls).values().cloned().collect();
            let mut out = format!("{:<40} {:<12} {:<14} {:<8} {:<6} {:>6}  {}\n", "Channel", "Profile", "State", "Recorded", "Paused", "Secs", "Agent");
            for s in &slots {
                let agent = ChanRef::by_name(&s.uniqueid).and_then(|c| c.bridge_peer()).map(|p| p.borrow().name()).unwrap_or_else(|| "-".into());
                let call = lock(&s.call);
                let recorded = matches!(call.phase(), crate::core::call::Phase::Recording);
                out.push_str(&format!(
                    "{:<40} {:<12} {:<14} {:<8} {:<6} {:>6}  {}\n",
                    s.channel,
                    s.profile,
                    call.state_name(),
                    if recorded { "yes" } else { "no" },
                    if call.paused() { "yes" } else { "no" },
                    s.started.elapsed().as_secs(),
                    agent
                ));
            }
            out.push_str(&format!("{} call(s) watched\n", slots.len()));
            out
        }
        "call" => match find_call(&m, arg) {
            Some((slot, _)) => format!("Channel: {}\r\n{}", slot.channel, status_lines(&slot)).replace("\r\n", "\n"),
            None => format!("no call recorded by CallConsent on channel {arg}\n"),
        },
        _ => "usage: callconsent show calls|profiles|call <channel>\n".into(),
    }
}

#[no_mangle]
pub extern "C" fn cc_rs_show(what: *const c_char, arg: *const c_char, out: *mut c_char, outlen: usize) {
    guard::enter((), "CLI", || {
        // SAFETY: the shim passes valid strings (arg may be NULL).
        let (what, arg) = unsafe { (ffi::text(what), ffi::text(arg)) };
        write_out(out, outlen, &show(&what, &arg));
    })
}

#[no_mangle]
pub extern "C" fn cc_rs_function(chan: *mut sys::cc_chan, field: *const c_char, out: *mut c_char, outlen: usize) -> c_int {
    guard::enter(-1, "CALLCONSENT()", || {
        // SAFETY: a live channel and the function's argument, for this call.
        let (Some(chan), field) = (unsafe { Chan::from_ptr(chan) }, unsafe { ffi::text(field) }) else { return -1 };
        let Some(m) = module() else { return -1 };
        let Some((slot, _)) = find_call(&m, &chan.uniqueid()) else { return 0 };
        let call = lock(&slot.call);
        let value = match field.trim().to_ascii_lowercase().as_str() {
            "state" => call.state_name().to_string(),
            "profile" => slot.profile.clone(),
            "paused" => if call.paused() { "1" } else { "0" }.to_string(),
            "file" => call.file().unwrap_or("").to_string(),
            other => {
                log::warn!("callconsent: CALLCONSENT({other}): unknown field (state, profile, paused, file)");
                return -1;
            }
        };
        write_out(out, outlen, &value);
        0
    })
}
