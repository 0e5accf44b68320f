//! Media-path cost: the time `Runtime::frame` takes per frame (what the framehook calls on every
//! DTMF frame, and on every audio frame while a pause may auto-resume), against a baseline
//! measured in the same run (reading the clock twice around nothing). A scripted channel stands in
//! for Asterisk's (its mute is an atomic store); the deferred work goes to the real workers.
//!
//!   cargo run --release -p callconsent-runtime --example frame_cost [FRAMES] [AUDIO_PER_KEY]
//!
//! AUDIO_PER_KEY (default 3) audio frames between two DTMF frames: 3 is a key every 80 ms, far
//! more than any agent types; 49 is one a second.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callconsent_core::call::{Dir, Press, PromptOutcome, Status};
use callconsent_core::config::{self, Defaults};
use callconsent_runtime::{CallChannel, CallIds, Frame, Host, RecorderPlan, Runtime, Slot};

#[derive(Clone, Default)]
struct Chan {
    muted: Arc<AtomicBool>,
    watched: Arc<Mutex<Option<Arc<Slot>>>>,
}

impl CallChannel for Chan {
    fn play(&self, _: &str, _: &str) -> PromptOutcome {
        PromptOutcome::Completed
    }
    fn watch(&self, slot: &Arc<Slot>) -> Result<(), String> {
        *self.watched.lock().map_err(|e| e.to_string())? = Some(slot.clone());
        Ok(())
    }
    fn set_status(&self, _: Status) {}
    fn mute_recorder(&self, mute: bool) {
        self.muted.store(mute, Ordering::Relaxed);
    }
    fn start_recorder(&self, plan: &RecorderPlan) -> Result<String, String> {
        std::fs::write(&plan.mixed, b"RIFF").map_err(|e| e.to_string())?;
        Ok("1".into())
    }
    fn stop_recorder(&self, _: &str) {}
    fn play_to_caller(&self, _: &str) -> bool {
        true
    }
    fn run_gosub(&self, _: &str) -> bool {
        true
    }
    fn tone_to_agent(&self, _: &str) -> bool {
        true
    }
    fn send_to_caller(&self, _: &str) -> bool {
        true
    }
    fn bridge_peer(&self) -> Option<String> {
        Some("PJSIP/anna-00000001".into())
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

fn percentiles(mut v: Vec<u64>) -> (u64, u64, u64) {
    v.sort_unstable();
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p) as usize];
    (at(0.5), at(0.99), at(0.999))
}

fn main() {
    let frames: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let per_key: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(3).max(1);
    let dir = std::env::temp_dir().join(format!("cc-frame-cost-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let text = "[general]\narchive = wav\n\n[p]\nnotice = n\nfull_notice = f\noptout_confirm = c\nrecord_share = 100\nlegal_basis = bench\npause_max_seconds = 3600\n";
    let defaults = Defaults { spool_dir: dir.join("spool"), audit_log: dir.join("audit.jsonl") };
    let cfg = config::parse(&config::entries_from_text(text, "bench.conf"), &defaults, &|_| true)
        .expect("config");
    let rt = Runtime::start(cfg, &dir.join("state"), Box::new(NoHost)).expect("start");
    let chan = Chan::default();
    rt.begin(
        &chan,
        CallIds { channel: "Local/in-1;2".into(), uniqueid: "1.1".into(), linkedid: "1.0".into() },
        "p",
        "",
        "",
    );
    let slot = chan.watched.lock().ok().and_then(|s| s.clone()).expect("watched");
    rt.joined(&slot.uniqueid, &chan);
    let deadline = Instant::now() + Duration::from_secs(5);
    while slot.with_call(|c| c.file().is_none()) {
        assert!(Instant::now() < deadline, "the recorder never started");
        std::thread::yield_now();
    }
    // The frames a recorded call sees: audio ticks while paused, and the agent's and the
    // caller's keys (a pause and a resume code, digits that are no code, a caller key).
    let keys: [(Dir, char); 8] = [
        (Dir::Agent, '*'),
        (Dir::Agent, '1'),
        (Dir::Agent, '5'),
        (Dir::Caller, '3'),
        (Dir::Agent, '*'),
        (Dir::Agent, '2'),
        (Dir::Caller, '#'),
        (Dir::Agent, '7'),
    ];
    let (mut cost, mut base) = (Vec::with_capacity(frames), Vec::with_capacity(frames));
    let (mut voice, mut keys_cost) = (Vec::new(), Vec::new());
    for i in 0..frames {
        let period = per_key + 1;
        let frame = if i % period == per_key {
            let n = i / period;
            let (dir, digit) = keys[(n / 2) % keys.len()];
            Frame::Dtmf {
                dir,
                press: if n.is_multiple_of(2) { Press::Begin } else { Press::End },
                digit,
                len_ms: 0,
            }
        } else {
            Frame::Voice
        };
        let t = Instant::now();
        let fed = rt.frame(&slot, &chan, frame);
        let ns = t.elapsed().as_nanos() as u64;
        cost.push(ns);
        if matches!(frame, Frame::Voice) {
            voice.push(ns);
        } else {
            keys_cost.push(ns);
        }
        std::hint::black_box(fed);
        let t = Instant::now();
        std::hint::black_box(i);
        base.push(t.elapsed().as_nanos() as u64);
    }
    let (c50, c99, c999) = percentiles(cost);
    let (b50, b99, _) = percentiles(base);
    let (v50, v99, _) = percentiles(voice);
    let (k50, k99, _) = percentiles(keys_cost);
    println!("frames: {frames} ({per_key} audio ticks : 1 DTMF frame, recorded call, pause and resume codes among the keys)");
    println!("Runtime::frame  p50 {c50} ns  p99 {c99} ns  p99.9 {c999} ns");
    println!("  audio ticks   p50 {v50} ns  p99 {v99} ns");
    println!("  DTMF frames   p50 {k50} ns  p99 {k99} ns");
    println!("baseline clock  p50 {b50} ns  p99 {b99} ns");
    println!("p99 goal 10000 ns: {}", if c99 < 10_000 { "met" } else { "NOT met" });
    rt.hangup(&slot);
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
