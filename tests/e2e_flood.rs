//! Floods against a live recorded call (issue: "a DTMF flood, thousands of digits a second from
//! both legs, and a SIP INFO flood: Asterisk stays up, RSS flat, the call's promise holds"). The
//! caller is sipp (UAC), the agent a PJSIP endpoint answered by sipp (UAS). After each flood the
//! caller presses the opt-out key 9 and, as a caller who has refused does, hangs up a few seconds
//! later (`AFTER_NINE_MS`): the 9 must have stopped the recording and every file of the call must
//! go.
//!
//! What Asterisk does with a flood (seen in `messages.log` with the `dtmf` level): a key shorter
//! than AST_MIN_DTMF_DURATION (80 ms) is stretched to it and followed by AST_MIN_DTMF_GAP (45 ms);
//! meanwhile the keys behind it wait in the channel's read queue, and while that queue holds a
//! key `__ast_read` reads nothing from the channel driver. A flooded leg is then read at about 8
//! keys a second, and everything behind the flood (its audio, the caller's 9) reaches the
//! module's framehook only when the backlog has been read: RFC 4733 keys wait in the RTP
//! socket's buffer (what does not fit, the kernel drops: a 9 that comes while it is full is
//! lost), INFO keys in the channel's read queue, which has no bound for DTMF ("Exceptionally long
//! queue length" warnings). Without pacing, the 9 after a 3-second flood came minutes later or
//! never, and the recording was kept. The module paces the caller's keys in its framehook
//! (`callconsent_core::pace`): a key goes on only once Asterisk is done relaying the last one,
//! the others are dropped before Asterisk queues them, so the caller's leg is read at wire speed
//! and the 9 acts within a frame of arriving; `call_ended` counts the dropped keys.
mod harness;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::pcap::{flood_pcap, rtp_pcap, Flood, Part};
use harness::*;
use serde_json::Value;

/// How long the caller stays on the line after pressing 9. A key takes Asterisk 125 ms; 5 s is
/// forty times that, and more than the 3 s of tests/sipp/optout-9.xml.
const AFTER_NINE_MS: u32 = 5000;

/// Resident memory of the running Asterisk, in kB. `chroot` execs Asterisk, so the child's pid
/// is Asterisk's own (checked, so a measure of another process cannot pass).
fn rss_kb(pbx: &Pbx) -> u64 {
    let pid = pbx.pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert_eq!(comm.trim(), "asterisk", "pid {pid} is not Asterisk");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read Asterisk's /proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// RSS after the flood, once the call has settled, against RSS while the call was recorded
/// before the flood. The bound, 6 MB: the flood keeps nothing once the call is gone (every DTMF
/// frame, AMI event and SIP transaction is freed with the call or at once), but glibc keeps the
/// freed heap of its per-thread arenas mapped and pjsip keeps its pools, so a flat process still
/// shows some growth (measured: +0.3 to +0.7 MB after the RFC 4733 flood of both legs); a leak of
/// 1 kB per flooded key (6000 keys) or 6 kB per INFO (1000, each a pjsip transaction) exceeds it.
/// (Measured on Asterisk 22.10.1: the INFO flood leaves about 16 kB per INFO behind, with or
/// without this module loaded, and again on every such call.)
const RSS_GROWTH_MAX_KB: u64 = 6 * 1024;

/// What a flood test measured.
struct Run {
    sipp: std::process::Output,
    /// RSS once the call is recorded, before the first flooded key or request.
    before_kb: u64,
    /// The highest RSS sampled while the caller's scenario ran.
    peak_kb: u64,
    samples: usize,
}

/// Runs the caller's scenario while sampling Asterisk's RSS every 100 ms (measurements only: no
/// outcome is asserted on a timer).
fn run_caller(pbx: &Pbx, scenario: &str) -> Run {
    // The call is up and recorded: the baseline, taken before either flood begins (the
    // captures open with seconds of talk).
    run_caller_when(pbx, scenario, || {
        pbx.wait_event("recording_started", 1, Duration::from_secs(15));
    })
}

/// As `run_caller`, the baseline taken once `ready` returns.
fn run_caller_when(pbx: &Pbx, scenario: &str, ready: impl Fn()) -> Run {
    let trace = format!("{}/log/sipp-messages.log", pbx.cdir);
    std::thread::scope(|s| {
        let caller = s.spawn(|| pbx.sipp(scenario, &["-trace_msg", "-message_file", &trace]));
        ready();
        let before_kb = rss_kb(pbx);
        let (mut peak_kb, mut samples) = (before_kb, 0);
        while !caller.is_finished() {
            peak_kb = peak_kb.max(rss_kb(pbx));
            samples += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        Run { sipp: caller.join().expect("the sipp thread"), before_kb, peak_kb, samples }
    })
}

fn assert_sipp_ok(pbx: &Pbx, out: &std::process::Output) {
    assert!(
        out.status.success(),
        "sipp failed ({}):\n{}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(pbx.path("log/sipp-errors.log")).unwrap_or_default()
    );
}

/// Milliseconds of the day of a timestamp ("2026-12-01T10:35:55.566Z", the audit log's and
/// sipp's message log's, both UTC).
fn day_ms(ts: &str) -> i64 {
    let t = ts
        .trim()
        .split('T')
        .nth(1)
        .unwrap_or_else(|| panic!("not a timestamp: {ts}"))
        .trim_end_matches('Z');
    let f: Vec<f64> = t
        .split(':')
        .map(|x| x.parse().unwrap_or_else(|_| panic!("not a timestamp: {ts}")))
        .collect();
    ((f[0] * 3600.0 + f[1] * 60.0 + f[2]) * 1000.0).round() as i64
}

fn ms_between(from_ms: i64, to_ms: i64) -> i64 {
    (to_ms - from_ms).rem_euclid(86_400_000)
}

/// sipp's message log: when each request of this method was sent.
fn sent_at(pbx: &Pbx, method: &str) -> Vec<i64> {
    let log = std::fs::read_to_string(pbx.path("log/sipp-messages.log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let start = format!("{method} sip:");
    (0..lines.len())
        .filter(|&i| {
            lines[i].starts_with(&start) && i >= 3 && lines[i - 2].starts_with("UDP message sent")
        })
        .filter_map(|i| lines[i - 3].rsplit(' ').next().filter(|t| t.contains('T')).map(day_ms))
        .collect()
}

/// DTMF end events Asterisk published (AMI DTMFEnd), by channel kind and direction. A key that
/// Asterisk deferred is published twice (once read, once played out of the read queue).
fn dtmf_ends(ami: &mut Ami) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for e in ami.events().iter().filter(|e| e.get("Event").map(String::as_str) == Some("DTMFEnd")) {
        let chan = e.get("Channel").map(|c| c.split('-').next().unwrap_or(c)).unwrap_or("?");
        let dir = e.get("Direction").map(String::as_str).unwrap_or("?");
        *n.entry(format!("{chan} {dir}")).or_insert(0) += 1;
    }
    n
}

/// The caller's keys the call dropped as faster than Asterisk relays them (its `call_ended` line).
fn keys_dropped(audit: &[Value]) -> u64 {
    audit
        .iter()
        .find(|v| v["event"] == "call_ended")
        .and_then(|v| v["keys_dropped"].as_u64())
        .unwrap_or(0)
}

fn count(audit: &[Value], ev: &str) -> usize {
    audit.iter().filter(|v| v["event"] == ev).count()
}

/// Ms from the answer to the opt-out, if there was one. The caller's capture starts with the
/// answer, right before CallConsent() writes `selected`.
fn optout_ms(audit: &[Value]) -> Option<i64> {
    let at = |ev: &str| {
        audit.iter().find(|v| v["event"] == ev).and_then(|v| v["ts"].as_str()).map(day_ms)
    };
    Some(ms_between(at("selected")?, at("opt_out")?))
}

/// The promise after the flood: the one 9 stopped the recording during the call, the recording
/// was deleted by the caller and by no one else, the call settled, not a file of it is left, and
/// Asterisk is up.
fn assert_promise_kept(pbx: &mut Pbx) {
    let audit = pbx.audit();
    let dump = || audit.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n");
    assert_eq!(count(&audit, "recording_started"), 1, "{}", dump());
    assert_eq!(
        count(&audit, "opt_out"),
        1,
        "the caller's 9, pressed {AFTER_NINE_MS} ms before hanging up, was not acted on:\n{}",
        dump()
    );
    let opt = audit.iter().find(|v| v["event"] == "opt_out").unwrap();
    assert_eq!(opt["during"], "call", "{opt}");
    assert_eq!(opt["key"], "9");
    let pos = |ev: &str| audit.iter().position(|v| v["event"] == ev).unwrap();
    assert!(pos("recording_started") < pos("opt_out"), "the 9 came while the call was recorded");
    assert_eq!(count(&audit, "recording_deleted"), 1, "deleted once:\n{}", dump());
    let deleted = &audit[pos("recording_deleted")];
    assert_eq!(deleted["by"], "caller", "{deleted}");
    assert_eq!(
        count(&audit, "delete_requested"),
        0,
        "no one pressed a delete code the module takes (a caller's *3 is none)"
    );
    assert_eq!(
        count(&audit, "recording_kept"),
        0,
        "a refused call's recording was kept:\n{}",
        dump()
    );
    let ended = &audit[pos("call_ended")];
    assert_eq!(ended["outcome"], "opted_out", "{ended}");
    assert_eq!(
        pbx.spool_files(),
        Vec::<std::path::PathBuf>::new(),
        "files of a refused, flooded call remain"
    );
    pbx.assert_alive();
}

fn assert_rss_flat(what: &str, before_kb: u64, after_kb: u64) {
    assert!(
        after_kb <= before_kb + RSS_GROWTH_MAX_KB,
        "{what}: Asterisk's RSS grew from {before_kb} kB to {after_kb} kB (more than {RSS_GROWTH_MAX_KB} kB)"
    );
}

fn dialplan() -> String {
    "[test]\nexten => in,1,Answer()\n same => n,CallConsent(flood)\n same => n,Dial(PJSIP/agent)\n same => n,Hangup()\n".to_string()
}

/// The caller's flood: every key but 9, the agent codes among them (from the caller, no code).
const CALLER_DIGITS: &str = "12345678*#0ABCD*1*2*3";
/// The agent's flood: pause and resume codes among keys that are no code; never a 3 (a dropped
/// key could make a `*3`, the delete code, and the caller's 9 must be what deletes).
const AGENT_DIGITS: &str = "*1*2*5*1#4*2*6*17*2*8*";
const FLOOD_KEYS: usize = 3000;

/// The caller: 4 s of talk (the 1 s notice, the agent answers, the recording starts), 3000 keys
/// 1 ms apart (3 s, talk between them), 300 ms, a 200 ms 9, talk; hangs up 5 s after the 9. The
/// agent: 2 s of talk after answering, 3000 keys 1 ms apart with pause and resume codes, talk.
#[test]
fn a_dtmf_flood_from_both_legs_keeps_the_promise() {
    let conf = consent_conf(&profile("flood", 100, ""));
    let mut pbx = Pbx::builder("flood-dtmf")
        .sip()
        .file("callconsent.conf", &conf)
        .file("extensions.conf", &dialplan())
        .start();
    let mut ami = pbx.ami();
    let idle_kb = rss_kb(&pbx);
    let (talk_ms, gap_ms) = (4000u32, 300u32);
    let caller = flood_pcap(
        0,
        &[Part::Tone { freq: 440.0, ms: talk_ms }],
        &Flood { digits: CALLER_DIGITS, count: FLOOD_KEYS, gap_us: 1000, freq: 440.0 },
        &[
            Part::Silence { ms: gap_ms },
            Part::Digits("9".into()),
            Part::Tone { freq: 440.0, ms: 2000 },
        ],
    );
    let nine_at_ms = talk_ms + FLOOD_KEYS as u32 + gap_ms;
    std::fs::write(pbx.path("sounds/flood-caller.pcap"), caller)
        .expect("write the caller's capture");
    let agent = flood_pcap(
        0,
        &[Part::Tone { freq: 880.0, ms: 2000 }],
        &Flood { digits: AGENT_DIGITS, count: FLOOD_KEYS, gap_us: 1000, freq: 880.0 },
        &[Part::Tone { freq: 880.0, ms: 20_000 }],
    );
    let phone = pbx.agent_phone(&agent);
    let scenario = std::fs::read_to_string(project_dir().join("tests/sipp/flood-dtmf-caller.xml"))
        .expect("read the scenario")
        .replace("{PLAY_MS}", &(nine_at_ms + AFTER_NINE_MS).to_string());
    let t0 = Instant::now();
    let run = run_caller(&pbx, &scenario);
    assert_sipp_ok(&pbx, &run.sipp);
    assert!(
        phone.wait(Duration::from_secs(10)),
        "the agent's phone (sipp) failed:\n{}",
        std::fs::read_to_string(pbx.path("log/sipp-agent.log")).unwrap_or_default()
    );
    pbx.wait_idle(Duration::from_secs(10));
    pbx.wait_settled(1, Duration::from_secs(15));
    let after_kb = rss_kb(&pbx);
    let seen = dtmf_ends(&mut ami);
    let audit = pbx.audit();
    eprintln!(
        "dtmf flood: sent {FLOOD_KEYS} keys in 3 s from each leg, then the caller's 9; Asterisk's DTMFEnd events {seen:?}; \
         opt-out {}; audit: {} lines, {} paused, {} resumed, {} queue_full; \
         RSS idle {idle_kb} kB, before {} kB, peak during {} kB ({} samples), after {after_kb} kB; {:?}",
        optout_ms(&audit).map_or("never".to_string(), |ms| format!("{} ms after the 9 was sent", ms - nine_at_ms as i64)),
        audit.len(),
        count(&audit, "paused"),
        count(&audit, "resumed"),
        count(&audit, "queue_full"),
        run.before_kb,
        run.peak_kb,
        run.samples,
        t0.elapsed()
    );
    // The floods reached Asterisk: it read keys from both legs, and the agent's codes acted.
    let from = |kind: &str| {
        seen.iter()
            .filter(|(k, _)| k.starts_with(kind) && k.ends_with("Received"))
            .map(|(_, n)| n)
            .sum::<usize>()
    };
    // The caller's keys are paced to one per 130 ms (about 23 in 3 s); the rest are dropped in
    // the framehook before Asterisk queues them.
    assert!(from("PJSIP/sipp") >= 10, "the caller's flood did not reach Asterisk: {seen:?}");
    assert!(from("PJSIP/agent") >= 20, "the agent's flood did not reach Asterisk: {seen:?}");
    assert!(count(&audit, "paused") >= 1, "no *1 of the agent's flood paused the recording");
    assert_promise_kept(&mut pbx);
    assert!(keys_dropped(&audit) > 2000, "the caller's flood was not paced");
    assert_rss_flat("DTMF flood", run.before_kb, after_kb);
}

/// A SIP INFO flood: after 4 s of talk, 1000 INFO requests (application/dtmf-relay, Signal=5,
/// Duration=100), each sent as soon as the previous one is answered; then the 9 as RFC 4733 and
/// talk; the caller hangs up 5 s after the 9. The endpoint's dtmf_mode is rfc4733, yet
/// res_pjsip_dtmf_info takes the INFOs: each one queues a key on the caller's channel.
#[test]
fn a_sip_info_flood_keeps_the_promise() {
    const INFOS: usize = 1000;
    let conf = consent_conf(&profile("flood", 100, ""));
    // Asterisk's own share first: the same flood on plain Asterisk, without callconsent, in the
    // same run (Asterisk 22 keeps about 16 kB per INFO whatever the modules).
    let plain_growth_kb = {
        let pbx = Pbx::builder("flood-info-plain")
            .sip()
            .without_module()
            .file("extensions.conf", "[test]\nexten => in,1,Answer()\n same => n,Dial(PJSIP/agent)\n same => n,Hangup()\n")
            .start();
        let (run, after_kb) = info_flood_call(&pbx, INFOS, || {
            wait_until("the plain call to be up", Duration::from_secs(15), || {
                pbx.active_calls() >= 2
            })
        });
        assert_sipp_ok(&pbx, &run.sipp);
        eprintln!(
            "info flood on plain Asterisk: RSS before {} kB, after {after_kb} kB",
            run.before_kb
        );
        after_kb.saturating_sub(run.before_kb)
    };
    let mut pbx = Pbx::builder("flood-info")
        .sip()
        .file("callconsent.conf", &conf)
        .file("extensions.conf", &dialplan())
        .start();
    let mut ami = pbx.ami();
    let idle_kb = rss_kb(&pbx);
    let nine_at_ms = NINE_AT_MS;
    let t0 = Instant::now();
    let (run, after_kb) = info_flood_call(&pbx, INFOS, || {
        pbx.wait_event("recording_started", 1, Duration::from_secs(15));
    });
    assert_sipp_ok(&pbx, &run.sipp);
    pbx.wait_settled(1, Duration::from_secs(15));
    let seen = dtmf_ends(&mut ami);
    let audit = pbx.audit();
    let infos = sent_at(&pbx, "INFO");
    let (first, last) =
        (*infos.first().expect("INFOs in sipp's message log"), *infos.last().unwrap());
    // The 9 is sent once the last INFO is answered, nine_at_ms into its capture.
    let selected = day_ms(
        audit
            .iter()
            .find(|v| v["event"] == "selected")
            .and_then(|v| v["ts"].as_str())
            .expect("a selected line"),
    );
    let nine_ms = ms_between(selected, last) + nine_at_ms as i64;
    let warnings =
        pbx.messages().lines().filter(|l| l.contains("Exceptionally long queue length")).count();
    eprintln!(
        "info flood: sent {} INFO (Signal=5) in {} ms, every one answered 200 (sipp checks); Asterisk's DTMFEnd events {seen:?}; \
         {warnings} \"Exceptionally long queue length\" warnings; opt-out {}; audit: {} lines; \
         RSS idle {idle_kb} kB, before {} kB, peak during {} kB ({} samples), after {after_kb} kB; {:?}",
        infos.len(),
        ms_between(first, last),
        optout_ms(&audit).map_or("never".to_string(), |ms| format!("{} ms after the 9 was sent", ms - nine_ms)),
        audit.len(),
        run.before_kb,
        run.peak_kb,
        run.samples,
        t0.elapsed()
    );
    assert!(infos.len() >= INFOS, "sipp did not send every INFO (retransmissions count twice)");
    // Paced: about one key per 150 ms (100 ms each and the gap) reaches Asterisk's core, the
    // others are dropped in the framehook before Asterisk queues them.
    assert!(
        seen.get("PJSIP/sipp Received").copied().unwrap_or(0) >= 5,
        "the INFOs' keys did not reach the caller's channel: {seen:?}"
    );
    assert_promise_kept(&mut pbx);
    assert!(keys_dropped(&audit) > 500, "the INFO flood was not paced");
    assert_rss_flat(
        "SIP INFO flood (beyond plain Asterisk's own growth)",
        run.before_kb + plain_growth_kb,
        after_kb,
    );
}

/// When the caller presses 9, after the last INFO is answered.
const NINE_AT_MS: u32 = 200;

/// One INFO-flooding caller and a talking agent on `pbx`: returns the run and Asterisk's RSS
/// once the call is gone.
fn info_flood_call(pbx: &Pbx, infos: usize, ready: impl Fn()) -> (Run, u64) {
    // Talk while the INFOs go (sipp stops this capture when it starts the next), then the 9 on
    // the same RTP stream, further on in it, and talk.
    std::fs::write(
        pbx.path("sounds/flood-talk.pcap"),
        rtp_pcap(&[Part::Tone { freq: 440.0, ms: 30_000 }]),
    )
    .expect("write the talk capture");
    let optout = flood_pcap(
        31_000,
        &[
            Part::Silence { ms: NINE_AT_MS },
            Part::Digits("9".into()),
            Part::Tone { freq: 440.0, ms: 2000 },
        ],
        &Flood { digits: "", count: 0, gap_us: 0, freq: 0.0 },
        &[],
    );
    std::fs::write(pbx.path("sounds/flood-optout.pcap"), optout)
        .expect("write the opt-out capture");
    let phone = pbx.agent_phone(&rtp_pcap(&[Part::Tone { freq: 880.0, ms: 30_000 }]));
    let scenario = std::fs::read_to_string(project_dir().join("tests/sipp/flood-info-caller.xml"))
        .expect("read the scenario")
        .replace("{TALK_MS}", "4000")
        .replace("{INFOS}", &infos.to_string())
        .replace("{AFTER_MS}", &(NINE_AT_MS + AFTER_NINE_MS).to_string());
    let run = run_caller_when(pbx, &scenario, ready);
    assert!(
        phone.wait(Duration::from_secs(10)),
        "the agent's phone (sipp) failed:\n{}",
        std::fs::read_to_string(pbx.path("log/sipp-agent.log")).unwrap_or_default()
    );
    pbx.wait_idle(Duration::from_secs(10));
    (run, rss_kb(pbx))
}
