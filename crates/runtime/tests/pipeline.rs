//! The runtime's effect pipeline against a scripted host (no PBX): which effects run where,
//! what reaches the disk and the audit log, and that `call_settled` ends every call's work. The
//! real PBX is exercised end to end by the root package's tests.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callconsent_core::call::{Dir, Press, PromptOutcome, Status, Verdict};
use callconsent_core::config::{self, Defaults};
use callconsent_runtime::{CallChannel, CallIds, Frame, Host, RecorderPlan, Runtime, Slot};
use serde_json::Value;

/// What the scripted channel was asked to do, in order, and on which thread.
#[derive(Default)]
struct Log {
    calls: Vec<(String, String)>,
}

#[derive(Clone)]
struct Fake {
    log: Arc<Mutex<Log>>,
    watched: Arc<Mutex<Option<Arc<Slot>>>>,
}

impl Fake {
    fn note(&self, what: &str) {
        let thread = std::thread::current().name().unwrap_or("test").to_string();
        self.log.lock().unwrap().calls.push((what.to_string(), thread));
    }
    fn thread_of(&self, what: &str) -> Option<String> {
        self.log
            .lock()
            .unwrap()
            .calls
            .iter()
            .find(|(w, _)| w.starts_with(what))
            .map(|(_, t)| t.clone())
    }
}

/// A WAV whose header is final (as Asterisk's writer leaves it at close), with 100 ms of audio.
fn write_wav(path: &Path) {
    std::fs::write(path, callconsent_runtime::archive::wav_bytes(8000, &[0; 800])).unwrap();
}

impl CallChannel for Fake {
    fn play(&self, sound: &str, _keys: &str) -> PromptOutcome {
        self.note(&format!("play {sound}"));
        PromptOutcome::Completed
    }
    fn watch(&self, slot: &Arc<Slot>) -> Result<(), String> {
        self.note("watch");
        *self.watched.lock().unwrap() = Some(slot.clone());
        Ok(())
    }
    fn set_status(&self, status: Status) {
        self.note(&format!("status {}", status.as_str()));
    }
    fn mute_recorder(&self, mute: bool) {
        self.note(if mute { "mute" } else { "unmute" });
    }
    fn start_recorder(&self, plan: &RecorderPlan) -> Result<String, String> {
        self.note("start_recorder");
        write_wav(&plan.mixed);
        Ok("mixmon-1".into())
    }
    fn stop_recorder(&self, id: &str) {
        self.note(&format!("stop_recorder {id}"));
    }
    fn play_to_caller(&self, sound: &str) -> bool {
        self.note(&format!("play_to_caller {sound}"));
        true
    }
    fn run_gosub(&self, target: &str) -> bool {
        self.note(&format!("gosub {target}"));
        true
    }
    fn tone_to_agent(&self, tones: &str) -> bool {
        self.note(&format!("tone {tones}"));
        true
    }
    fn send_to_caller(&self, digits: &str) -> bool {
        // As Asterisk does: each digit takes about 100 ms to send.
        std::thread::sleep(Duration::from_millis(100) * digits.len() as u32);
        self.note(&format!("digits {digits}"));
        true
    }
    fn bridge_peer(&self) -> Option<String> {
        Some("PJSIP/anna-0000002a".into())
    }
    fn owned(&self) -> Box<dyn CallChannel + Send> {
        Box::new(self.clone())
    }
}

struct NoHost;
impl Host for NoHost {
    fn name(&self) -> &'static str {
        "test"
    }
    fn notify(&self, _: &str, _: &[(&'static str, String)]) {}
    fn agent_of(&self, _: &str) -> Option<String> {
        None
    }
    fn module_event(&self, _: &'static str, _: &[(&'static str, String)]) {}
}

fn start(name: &str) -> (Runtime, PathBuf, Fake) {
    let dir = std::env::temp_dir().join(format!("cc-pipeline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let text = "[general]\narchive = wav\n\n[sales]\nnotice = n\nfull_notice = f\noptout_confirm = c\nrecord_share = 100\nlegal_basis = test\n";
    let defaults =
        Defaults { spool_dir: dir.join("spool"), audit_log: dir.join("log/audit.jsonl") };
    let cfg =
        config::parse(&config::entries_from_text(text, "callconsent.conf"), &defaults, &|_| true)
            .expect("config");
    let rt = Runtime::start(cfg, &dir.join("state"), Box::new(NoHost)).expect("start");
    let fake = Fake { log: Arc::default(), watched: Arc::default() };
    (rt, dir, fake)
}

fn audit(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("log/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn events(dir: &Path) -> Vec<String> {
    audit(dir).iter().map(|v| v["event"].as_str().unwrap_or("").to_string()).collect()
}

fn wait_for(dir: &Path, event: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let ev = events(dir);
        if ev.iter().any(|e| e == event) {
            return ev;
        }
        assert!(Instant::now() < deadline, "no {event} line within {timeout:?}: {ev:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Drives a selected call to recording: notice, watch, bridge join, agent found, recorder started.
fn recording(rt: &Runtime, fake: &Fake, dir: &Path) -> Arc<Slot> {
    let ids = CallIds {
        channel: "Local/in@test-00000001;2".into(),
        uniqueid: "1763800000.1".into(),
        linkedid: "1763800000.0".into(),
    };
    rt.begin(fake, ids, "sales", "0299000000", "");
    let slot = fake.watched.lock().unwrap().clone().expect("the call is watched");
    rt.joined(&slot.uniqueid, fake);
    wait_for(dir, "recording_started", Duration::from_secs(5));
    slot
}

#[test]
fn a_kept_call_settles_after_its_recording_is_kept() {
    let (rt, dir, fake) = start("kept");
    let slot = recording(&rt, &fake, &dir);
    // Inline effects ran on the thread that fed the event; the recorder started on the worker.
    assert_eq!(
        fake.thread_of("play n").as_deref(),
        Some(std::thread::current().name().unwrap_or("test"))
    );
    assert_eq!(fake.thread_of("start_recorder").as_deref(), Some("cc-worker"));
    rt.hangup(&slot);
    let ev = wait_for(&dir, "call_settled", Duration::from_secs(5));
    let tail: Vec<&str> = ev.iter().rev().take(3).rev().map(String::as_str).collect();
    assert_eq!(tail, ["call_ended", "recording_kept", "call_settled"], "{ev:?}");
    let kept = audit(&dir).into_iter().find(|v| v["event"] == "recording_kept").unwrap();
    assert!(Path::new(kept["file"].as_str().unwrap()).is_file(), "{kept}");
    assert_eq!(kept["agent"], "PJSIP/anna");
    assert_eq!(ev.iter().filter(|e| *e == "call_settled").count(), 1);
    drop(rt);
    assert_eq!(
        callconsent_runtime::audit::verify(
            &std::fs::read_to_string(dir.join("log/audit.jsonl")).unwrap()
        ),
        Ok(ev.len())
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_refusal_mutes_in_the_frame_and_the_call_settles_after_the_late_deletions() {
    let (rt, dir, fake) = start("refused");
    let slot = recording(&rt, &fake, &dir);
    let file = PathBuf::from(
        audit(&dir).into_iter().find(|v| v["event"] == "recording_started").unwrap()["file"]
            .as_str()
            .unwrap(),
    );
    assert!(file.is_file());
    let fed = rt.frame(
        &slot,
        &fake,
        Frame::Dtmf { dir: Dir::Caller, press: Press::Begin, digit: '9', len_ms: 0 },
    );
    assert_eq!(fed.verdict, Verdict::Drop, "the opt-out key never reaches the agent");
    assert_eq!(
        fake.thread_of("mute").as_deref(),
        Some(std::thread::current().name().unwrap_or("test")),
        "muted in the frame's own thread"
    );
    wait_for(&dir, "recording_deleted", Duration::from_secs(5));
    assert!(!file.exists());
    let t0 = Instant::now();
    rt.hangup(&slot);
    let ev = wait_for(&dir, "call_settled", Duration::from_secs(10));
    // The last look for late files is 5 s after hangup: the call settles only after it.
    assert!(
        t0.elapsed() >= callconsent_core::timing::DELETE_AGAIN_AFTER[2],
        "settled before the last look"
    );
    assert_eq!(ev.last().map(String::as_str), Some("call_settled"), "{ev:?}");
    assert!(!ev.iter().any(|e| e == "recording_kept"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 10 (6): the agent's passed-on digits take their time on the signals worker; a refusal's
/// stop and deletion never waits behind them.
#[test]
fn a_deletion_never_waits_behind_digits_being_sent() {
    let (rt, dir, fake) = start("digits");
    let slot = recording(&rt, &fake, &dir);
    // 20 held-then-released pairs ("*5" is no code): 4 s of digits to send.
    for _ in 0..20 {
        for d in ['*', '5'] {
            rt.frame(
                &slot,
                &fake,
                Frame::Dtmf { dir: Dir::Agent, press: Press::Begin, digit: d, len_ms: 0 },
            );
            rt.frame(
                &slot,
                &fake,
                Frame::Dtmf { dir: Dir::Agent, press: Press::End, digit: d, len_ms: 0 },
            );
        }
    }
    rt.frame(
        &slot,
        &fake,
        Frame::Dtmf { dir: Dir::Caller, press: Press::Begin, digit: '9', len_ms: 0 },
    );
    wait_for(&dir, "recording_deleted", Duration::from_secs(10));
    let sent =
        fake.log.lock().unwrap().calls.iter().filter(|(w, _)| w.starts_with("digits")).count();
    assert!(sent < 20, "the deletion waited for {sent} of 20 digit pairs");
    rt.hangup(&slot);
    wait_for(&dir, "call_settled", Duration::from_secs(15));
    // The call settles only once the digits are all sent, on their own worker.
    assert_eq!(
        fake.log.lock().unwrap().calls.iter().filter(|(w, _)| w.starts_with("digits")).count(),
        20
    );
    assert_eq!(fake.thread_of("digits").as_deref(), Some("cc-signals"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Unloading (dropping the runtime) returns with the Opus archive on: the encoder threads stop
/// even though the dispatcher still holds a sender of their queue when they are joined.
#[test]
fn unloading_with_the_opus_archive_returns() {
    let dir = std::env::temp_dir().join(format!("cc-pipeline-unload-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let text = "[general]\narchive = opus\n\n[sales]\nnotice = n\nfull_notice = f\noptout_confirm = c\nrecord_share = 20\n";
    let defaults =
        Defaults { spool_dir: dir.join("spool"), audit_log: dir.join("log/audit.jsonl") };
    let cfg =
        config::parse(&config::entries_from_text(text, "callconsent.conf"), &defaults, &|_| true)
            .expect("config");
    let rt = Runtime::start(cfg, &dir.join("state"), Box::new(NoHost)).expect("start");
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        drop(rt);
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(std::time::Duration::from_secs(20)).is_ok(),
        "dropping the runtime hangs (the encoder threads are never told to stop)"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
