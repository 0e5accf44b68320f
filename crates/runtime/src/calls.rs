//! Live calls: the core's value of each watched call plus what the runtime needs to act on it.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde_json::{Map, Value};

use callconsent_core::audit::AuditEvent;
use callconsent_core::call::{Action, Call, Event, Verdict};

use crate::audit::record;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock is already logged by the guard; the data stays usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Who a call is: the ids the host gave its caller's channel.
#[derive(Debug, Clone)]
pub struct CallIds {
    pub channel: String,
    pub uniqueid: String,
    pub linkedid: String,
}

/// One watched call.
pub struct Slot {
    call: Mutex<Call>,
    pub channel: String,
    pub uniqueid: String,
    pub linkedid: String,
    pub profile: String,
    /// The notice the caller heard (its sound name: the notice's version).
    pub notice: String,
    /// The customer's keyed number hash (empty when the number is unknown).
    pub number_hash: String,
    files: Mutex<Vec<PathBuf>>,
    recorder_id: Mutex<String>,
    /// A secure entry's card digits until `CALLCONSENT(secure_digits)` reads them (once); wiped
    /// when read, replaced, or dropped with the call.
    secure_digits: Mutex<Option<callconsent_core::secure::SecretDigits>>,
    started: Instant,
    /// Effects of this call not done yet, plus dispatches under way (see `effects`).
    pub(crate) pending: AtomicU32,
    pub(crate) settled: AtomicBool,
    /// 1 while the core wants clock ticks (a pause that may auto-resume, digits held back): the
    /// host's media path reads it on every audio frame, so a change made from any thread (a
    /// desktop pause) takes effect at the next frame.
    ticks: AtomicI32,
}

impl Slot {
    pub fn new(call: Call, ids: CallIds) -> Slot {
        let (profile, notice) = (call.profile().name.clone(), call.profile().notice.clone());
        let number_hash = call.number_hash().unwrap_or_default().to_string();
        Slot {
            call: Mutex::new(call),
            channel: ids.channel,
            number_hash,
            uniqueid: ids.uniqueid,
            linkedid: ids.linkedid,
            profile,
            notice,
            files: Mutex::new(Vec::new()),
            recorder_id: Mutex::new(String::new()),
            secure_digits: Mutex::new(None),
            started: Instant::now(),
            pending: AtomicU32::new(0),
            settled: AtomicBool::new(false),
            ticks: AtomicI32::new(0),
        }
    }
    pub fn files(&self) -> Vec<PathBuf> {
        lock(&self.files).clone()
    }
    pub(crate) fn set_recorder(&self, files: Vec<PathBuf>, id: String) {
        *lock(&self.files) = files;
        *lock(&self.recorder_id) = id;
    }
    pub(crate) fn set_secure_digits(&self, digits: callconsent_core::secure::SecretDigits) {
        *lock(&self.secure_digits) = Some(digits);
    }
    /// The card digits of the last secure entry, once: a second read finds none.
    pub fn take_secure_digits(&self) -> Option<callconsent_core::secure::SecretDigits> {
        lock(&self.secure_digits).take()
    }
    pub fn recorder_id(&self) -> String {
        lock(&self.recorder_id).clone()
    }
    pub fn agent(&self) -> Option<String> {
        lock(&self.call).agent().map(str::to_string)
    }
    /// Reads the call's state (for status lines and the host's functions).
    pub fn with_call<T>(&self, f: impl FnOnce(&Call) -> T) -> T {
        f(&lock(&self.call))
    }
    /// An audit record of this call: its linkedid, channel and profile, then the facts.
    pub fn record(&self, event: AuditEvent, facts: Map<String, Value>) -> Map<String, Value> {
        let mut f = Map::new();
        f.insert("profile".into(), self.profile.clone().into());
        f.extend(facts);
        record(&self.linkedid, &self.channel, event, f)
    }
    /// The call's state as the host's status output and events give it (AMI `CallConsent`,
    /// `CallConsentStatus`, `callconsent show call`).
    pub fn status_fields(&self) -> Vec<(&'static str, String)> {
        let call = lock(&self.call);
        vec![
            ("Uniqueid", self.uniqueid.clone()),
            ("Linkedid", self.linkedid.clone()),
            ("Profile", self.profile.clone()),
            ("State", call.state_name().to_string()),
            ("Paused", if call.paused() { "yes" } else { "no" }.to_string()),
            ("File", call.file().unwrap_or("").to_string()),
        ]
    }
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
    pub fn age_secs(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
    /// Feeds one event to the core; returns the frame's verdict, the actions and whether the
    /// host must feed clock ticks from now on.
    pub(crate) fn feed(&self, ev: Event) -> (Verdict, Vec<Action>, bool) {
        let mut call = lock(&self.call);
        let (v, a) = call.on(ev);
        let ticks = call.wants_ticks();
        self.ticks.store(i32::from(ticks), Ordering::Relaxed);
        (v, a, ticks)
    }
    /// Where the host's media path reads whether to feed ticks (an `int`, 0 or 1, read
    /// atomically); valid while the slot lives.
    pub fn ticks_flag(&self) -> *const i32 {
        self.ticks.as_ptr()
    }
    pub(crate) fn busy(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }
    /// A piece of work that was counted but will not run (dropped, refused).
    pub(crate) fn undo_busy(&self) {
        self.pending.fetch_sub(1, Ordering::SeqCst);
    }
    /// One piece of work is done; true when it was the last and the call has ended.
    pub(crate) fn done(&self) -> bool {
        let left = self.pending.fetch_sub(1, Ordering::SeqCst).saturating_sub(1);
        left == 0
            && self.with_call(|c| c.phase() == callconsent_core::call::Phase::Ended)
            && !self.settled.swap(true, Ordering::SeqCst)
    }
}

/// The live calls, by the caller channel's uniqueid.
#[derive(Default)]
pub struct Calls(Mutex<HashMap<String, Arc<Slot>>>);

impl Calls {
    pub fn insert(&self, slot: Arc<Slot>) {
        lock(&self.0).insert(slot.uniqueid.clone(), slot);
    }
    pub fn remove(&self, uniqueid: &str) {
        lock(&self.0).remove(uniqueid);
    }
    pub fn get(&self, uniqueid: &str) -> Option<Arc<Slot>> {
        lock(&self.0).get(uniqueid).cloned()
    }
    pub fn contains(&self, uniqueid: &str) -> bool {
        lock(&self.0).contains_key(uniqueid)
    }
    pub fn all(&self) -> Vec<Arc<Slot>> {
        lock(&self.0).values().cloned().collect()
    }
}
