//! Issue 3's benchmarks, on the sandbox Asterisk (run by `scripts/bench.sh`):
//! 1. leak after a key: the agent plays tone A (1000 Hz), sends the pause code, then at once
//!    tone B (1800 Hz); any tone B in the recording was spoken after pausing. callconsent's
//!    in-module codes versus the way an admin builds it today (an AMI client that waits for the
//!    agent's DTMFEnd events and sends MixMonitorMute), idle and with 100 other recorded calls,
//!    and with each controller gone.
//! 2. cost per call: 100 concurrent recorded calls, Asterisk's CPU time with CallConsent() and its
//!    framehook versus the same calls with a plain MixMonitor().
//! 3. capacity: the most concurrent recorded 10 s calls before calls stretch (the p95 of the
//!    talker's 10 s Playback, timed in the dialplan, over 10.5 s), CallConsent() against a plain
//!    MixMonitor(), alternating at each step of the same run.
#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::*;

const ROUNDS: usize = 5;

fn dialplan() -> String {
    let (a, b, long) = (
        sound("bench-a-1000", 1000, 1.5),
        sound("bench-b-1800", 1800, 1.5),
        sound("bench-long-600", 600, 10.0),
    );
    let notice = sound("notice", 500, 1.0);
    format!(
        "[b]\n\
         exten => cc,1,Answer()\n same => n,CallConsent(bench)\n same => n,Dial(Local/agent@b)\n\
         exten => ami,1,Answer()\n same => n,MixMonitor({{D}}/spool/ami-${{UNIQUEID}}.wav)\n same => n,Set(GLOBAL(AMI_CALLER)=${{CHANNEL}})\n same => n,Dial(Local/agent@b)\n\
         exten => agent,1,Answer()\n same => n,Wait(0.5)\n same => n,Playback({a})\n same => n,SendDTMF(*1,,50)\n same => n,Playback({b})\n same => n,Hangup()\n\
         exten => dev,1,Wait(30)\n\
         exten => load,1,Answer()\n same => n,CallConsent(bench)\n same => n,Dial(Local/talker@b)\n\
         exten => plain,1,Answer()\n same => n,Playback({notice})\n same => n,MixMonitor({{D}}/spool/plain-${{UNIQUEID}}.wav)\n same => n,Dial(Local/talker@b)\n\
         exten => talker,1,Answer()\n same => n,Playback({long})\n same => n,Hangup()\n\
         exten => loaddev,1,Wait(60)\n\
         exten => capcc,1,Answer()\n same => n,CallConsent(bench)\n same => n,Dial(Local/timed@b)\n\
         exten => capplain,1,Answer()\n same => n,Playback({notice})\n same => n,MixMonitor({{D}}/spool/plain-${{UNIQUEID}}.wav)\n same => n,Dial(Local/timed@b)\n\
         exten => timed,1,Answer()\n same => n,Set(T0=${{STRFTIME(,,%s.%3q)}})\n same => n,Playback({long})\n\
         same => n,Log(NOTICE,ccbench-play ${{T0}} ${{STRFTIME(,,%s.%3q)}})\n same => n,Hangup()\n"
    )
}

fn start() -> Pbx {
    // Tones off: a tone takes the agent out of the bridge audio for its length, hiding a late mute.
    let conf = consent_conf(&profile(
        "bench",
        100,
        "start_tone = off\npause_tone = off\nresume_tone = off",
    ));
    Pbx::builder("bench")
        .file("callconsent.conf", &conf)
        .file("extensions.conf", &dialplan())
        .start()
}

/// An AMI client doing what an admin would: on the agent's "*" then "1" (DTMFEnd), mute the caller's MixMonitor.
fn ami_controller(pbx: &Pbx) -> std::thread::JoinHandle<()> {
    let port = pbx.ami_port;
    std::thread::spawn(move || {
        let mut ami = Ami::connect(port);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut last = String::new();
        let mut seen = 0;
        while Instant::now() < deadline {
            let events = ami.events().to_vec();
            for e in &events[seen..] {
                if std::env::var("BENCH_DEBUG").is_ok()
                    && e.get("Event").is_some_and(|x| x.starts_with("DTMF"))
                {
                    eprintln!("{e:?}");
                }
                if e.get("Event").map(String::as_str) == Some("DTMFEnd")
                    && e.get("Channel")
                        .is_some_and(|c| c.starts_with("Local/agent@b-") && c.ends_with(";1"))
                    && e.get("Direction").map(String::as_str) == Some("Received")
                {
                    let d = e.get("Digit").cloned().unwrap_or_default();
                    if last == "*" && d == "1" {
                        let caller = e.get("Linkedid").cloned().unwrap_or_default();
                        let r = ami.action("Getvar", &[("Variable", "AMI_CALLER")]);
                        let chan = r.get("Value").cloned().unwrap_or_default();
                        let _ = caller;
                        let r = ami.action(
                            "MixMonitorMute",
                            &[("Channel", &chan), ("Direction", "both"), ("State", "1")],
                        );
                        if std::env::var("BENCH_DEBUG").is_ok() {
                            eprintln!("mute {chan}: {r:?}");
                        }
                        return;
                    }
                    last = d;
                }
            }
            seen = events.len();
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

fn leak_one(pbx: &Pbx, mode: &str, with_controller: bool) -> u32 {
    let before: Vec<_> = pbx.spool_files();
    // Only this call's recording: the 100 background calls keep theirs too.
    let mine = |v: &serde_json::Value| {
        v["event"] == "recording_kept"
            && v["channel"].as_str().is_some_and(|c| c.starts_with("Local/cc@b-"))
    };
    let kept_before = pbx.audit().iter().filter(|v| mine(v)).count();
    let ctl = (mode == "ami" && with_controller).then(|| ami_controller(pbx));
    std::thread::sleep(Duration::from_millis(200));
    pbx.originate(&format!("Local/{mode}@b"), "dev@b");
    let file = if mode == "cc" {
        // callconsent keeps the recording (staging, then the kept tree) once the call ends.
        let deadline = Instant::now() + Duration::from_secs(30);
        let kept = loop {
            let k: Vec<serde_json::Value> = pbx.audit().into_iter().filter(|v| mine(v)).collect();
            if k.len() > kept_before {
                break k;
            }
            assert!(Instant::now() < deadline, "the measured call's recording was not kept");
            std::thread::sleep(Duration::from_millis(100));
        };
        pbx.host_path(kept[kept_before]["file"].as_str().expect("recording_kept names its file"))
    } else {
        let deadline = Instant::now() + Duration::from_secs(20);
        let f = loop {
            let now: Vec<_> = pbx
                .spool_files()
                .into_iter()
                .filter(|f| !before.contains(f) && f.display().to_string().contains("/spool/ami-"))
                .collect();
            if let Some(f) = now.first() {
                break f.clone();
            }
            assert!(Instant::now() < deadline, "no recording for the {mode} call");
            std::thread::sleep(Duration::from_millis(100));
        };
        std::thread::sleep(Duration::from_secs(5));
        f
    };
    if let Some(c) = ctl {
        let _ = c.join();
    }
    let samples = wav_samples(&file);
    // The right recording: tone A, spoken before the code, must be in it.
    let a = tone_ms(&samples, 1000.0);
    assert!(a >= 1000, "{}: only {a} ms of tone A; not the measured call", file.display());
    let leaked = tone_ms(&samples, 1800.0);
    let _ = std::fs::remove_file(&file);
    leaked
}

fn leak_series(pbx: &Pbx, label: &str) -> Vec<(String, Vec<u32>)> {
    let mut rows = vec![];
    for (mode, ctl) in [("cc", true), ("ami", true)] {
        let v: Vec<u32> = (0..ROUNDS).map(|_| leak_one(pbx, mode, ctl)).collect();
        println!(
            "leak {label:6} {:<28} {:?} ms",
            if mode == "cc" { "callconsent (*1 in module)" } else { "AMI client + MixMonitorMute" },
            v
        );
        rows.push((format!("{label} {mode}"), v));
    }
    rows
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let pbx = start();
    if what == "all" || what == "leak" {
        println!("== leak after the pause code: ms of tone B (spoken after *1) in the recording, {ROUNDS} calls each ==");
        leak_series(&pbx, "idle");
        let gone = leak_one(&pbx, "ami", false);
        println!("leak idle   AMI client gone               [{gone}] ms (tone B lasts 1500 ms)");
        for _ in 0..100 {
            pbx.originate("Local/load@b", "loaddev@b");
        }
        std::thread::sleep(Duration::from_secs(2));
        println!("(100 other recorded calls running: {} channels)", pbx.active_calls());
        leak_series(&pbx, "loaded");
        pbx.rx("channel request hangup all");
        pbx.wait_idle(Duration::from_secs(60));
    }
    if what == "all" || what == "cost" {
        println!("== cost per call: 100 concurrent recorded calls (10 s of audio), Asterisk CPU ms per call ==");
        let mut ratios = vec![];
        for round in 0..3 {
            let mut per = [0f64; 2];
            for (i, mode) in ["load", "plain"].iter().enumerate() {
                let cpu0 = pbx.cpu_ms();
                for _ in 0..100 {
                    pbx.originate(&format!("Local/{mode}@b"), "loaddev@b");
                }
                std::thread::sleep(Duration::from_secs(2));
                pbx.wait_idle(Duration::from_secs(120));
                per[i] = (pbx.cpu_ms() - cpu0) as f64 / 100.0;
                for f in pbx.spool_files() {
                    let _ = std::fs::remove_file(f);
                }
            }
            let ratio = per[0] / per[1];
            println!("cost round {round}: CallConsent {:.1} ms/call, plain MixMonitor {:.1} ms/call, ratio {ratio:.3}", per[0], per[1]);
            ratios.push(ratio);
        }
        ratios.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        println!("cost ratio (median of 3 rounds): {:.3}", ratios[1]);
    }
    if what == "all" || what == "capacity" {
        capacity(&pbx);
    }
}

/// The p95 of the 10 s playbacks of one step: `n` calls originated at once through AMI.
fn capacity_step(pbx: &Pbx, ami: &mut Ami, mode: &str, n: usize) -> f64 {
    let log = pbx.path("log/messages.log");
    let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0) as usize;
    for _ in 0..n {
        ami.action(
            "Originate",
            &[
                ("Channel", &format!("Local/{mode}@b")),
                ("Context", "b"),
                ("Exten", "loaddev"),
                ("Priority", "1"),
                ("Async", "true"),
            ],
        );
    }
    wait_until("the step's calls to start", Duration::from_secs(60), || pbx.active_calls() > 0);
    pbx.wait_idle(Duration::from_secs(300));
    let text = std::fs::read(&log).unwrap_or_default();
    let mut plays: Vec<f64> = String::from_utf8_lossy(&text[from.min(text.len())..])
        .lines()
        .filter_map(|l| l.split("ccbench-play ").nth(1))
        .filter_map(|v| {
            let mut t = v.split_whitespace().map(|x| x.parse::<f64>().ok());
            Some(t.next()??.max(0.0)).zip(t.next()?).map(|(a, b)| b - a)
        })
        .collect();
    for f in pbx.spool_files() {
        let _ = std::fs::remove_file(f);
    }
    if plays.len() < n * 9 / 10 {
        println!("capacity {mode} {n}: only {} of {n} playbacks timed", plays.len());
        return f64::INFINITY;
    }
    plays.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    plays[(plays.len() * 95 / 100).min(plays.len() - 1)]
}

fn capacity(pbx: &Pbx) {
    println!("== capacity: concurrent recorded 10 s calls before they stretch (p95 of the 10 s playback > 10.5 s) ==");
    let mut ami = pbx.ami();
    let mut best = [0usize; 2];
    let mut stretched = [false; 2];
    let mut n = 100;
    while n <= 800 && !(stretched[0] && stretched[1]) {
        for (i, mode) in ["capplain", "capcc"].iter().enumerate() {
            if stretched[i] {
                continue;
            }
            let p95 = capacity_step(pbx, &mut ami, mode, n);
            println!(
                "capacity {:<28} {n:>4} concurrent calls: p95 playback {p95:.2} s",
                if i == 0 { "plain MixMonitor" } else { "CallConsent" }
            );
            if p95 > 10.5 {
                stretched[i] = true;
            } else {
                best[i] = n;
            }
        }
        n += 50;
    }
    println!(
        "capacity: plain MixMonitor {} concurrent calls, CallConsent {} ({:.0} % of plain); steps of 50",
        best[0],
        best[1],
        if best[0] > 0 { 100.0 * best[1] as f64 / best[0] as f64 } else { 0.0 }
    );
}
