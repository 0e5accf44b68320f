//! The soak (`scripts/soak.sh [CALLS]`, default 10,000; a smaller run is tests/e2e_soak.rs): sipp
//! callers on the sandbox Asterisk in rounds, with kill -9 of Asterisk at a random moment of some
//! rounds and a restart, then checks on what is left on disk and in the audit log.
//!
//! Callers (sipp UAC, tests/sipp/soak-caller.xml) play RTP captures built here with RFC 4733 keys:
//! stayers, refusers who press 9 at a random moment (during the notice, around the bridge, during
//! a pause, a deletion or a transfer), and callers who hang up at a random moment. Agents are
//! Local channels running dialplan: they talk (a 1000 Hz tone), pause with *1 and resume with *2
//! (what they play while paused is a "secret" 1900 Hz tone that must never be in a recording),
//! delete with *3, forget to resume, or are blind-transferred (AMI BlindTransfer, sent when the
//! agent's dialplan says so) to a second agent (1300 Hz), to a never_record line (1700 Hz, must
//! never be in a recording) or, paused, to an agent who resumes.
//!
//! Everything random comes from one seed, printed first: `--seed N` replays the same plan (the
//! kinds, moments and kills; Asterisk's own timing still varies).
//!
//! After every round and at the end: no file under the spool belongs to a call that refused or was
//! deleted (files are mapped to calls through the audit log's recording_started lines), no file in
//! staging, no file the audit log does not explain, every file under kept/ named by exactly one
//! recording_kept line, every paused span of every kept WAV exactly silent and 0 ms of the secret
//! and never-recorded tones in any of them, every staging file a kill left behind discarded at the
//! restart with its recording_discarded line, each call's lines against its plan, and
//! `callconsent audit verify` (chain, every head published at a load, then every line's keyed MAC)
//! passing on the log that continues across the restarts.
#![allow(dead_code)]

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::pcap::{rtp_pcap, Part};
use harness::*;
use serde_json::Value;

const CALLER_HZ: f32 = 350.0;
const AGENT_HZ: u32 = 1000;
const SECRET_HZ: u32 = 1900;
const AGENT2_HZ: u32 = 1300;
const PRIVATE_HZ: u32 = 1700;
/// Where in capture N (1-5) the caller presses 9, ms from the capture's start.
const REFUSAL_AT_MS: [u32; 6] = [0, 300, 1200, 2100, 3000, 4000];
const CAPTURE_MS: u32 = 14_000;
/// A leaked tone is counted where it holds this share of a window's energy: the caller talks
/// (350 Hz) at the same time, and MixMonitor mixes both.
const LEAK_SHARE: f32 = 0.3;

// ---------------------------------------------------------------------------------------------
// The plan

/// splitmix64: small, fast, and the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    pub fn weighted<T: Copy>(&mut self, choices: &[(T, u64)]) -> T {
        let total: u64 = choices.iter().map(|c| c.1).sum();
        let mut x = self.next_u64() % total;
        for (v, w) in choices {
            if x < *w {
                return *v;
            }
            x -= w;
        }
        choices[0].0
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Caller {
    Stays,
    /// Presses 9 in capture N (1-5).
    Refuses(u8),
    HangsUp,
}

impl Caller {
    fn name(self) -> String {
        match self {
            Caller::Stays => "stays".into(),
            Caller::Refuses(n) => {
                let at = REFUSAL_AT_MS[n as usize] as f32 / 1000.0;
                format!("presses 9 {at:.1}-{:.1} s after the answer", at + 1.0)
            }
            Caller::HangsUp => "hangs up at a random moment".into(),
        }
    }
}

// "TransfersToAgent" says what the agent does; the enum's name is not a suffix by accident.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub enum Agent {
    Talks = 0,
    Pauses = 1,
    Deletes = 2,
    TransfersToAgent = 3,
    TransfersToPrivate = 4,
    PausesThenTransfers = 5,
    ForgetsPause = 6,
}

const AGENTS: [Agent; 7] = [
    Agent::Talks,
    Agent::Pauses,
    Agent::Deletes,
    Agent::TransfersToAgent,
    Agent::TransfersToPrivate,
    Agent::PausesThenTransfers,
    Agent::ForgetsPause,
];

impl Agent {
    fn name(self) -> &'static str {
        match self {
            Agent::Talks => "talks",
            Agent::Pauses => "pauses *1, resumes *2",
            Agent::Deletes => "deletes *3",
            Agent::TransfersToAgent => "blind transfer to an agent",
            Agent::TransfersToPrivate => "blind transfer to a never_record line",
            Agent::PausesThenTransfers => "pauses, transfer, new agent resumes",
            Agent::ForgetsPause => "pauses and hangs up paused",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Planned {
    pub idx: usize,
    pub round: usize,
    pub caller: Caller,
    pub agent: Agent,
    /// The profile with `record_legs = yes` (three files per call).
    pub legs: bool,
    /// Silence after the answer before the capture starts.
    pub before_ms: u32,
    /// HangsUp: ms after the capture started.
    pub hangup_ms: u32,
}

impl Planned {
    /// The number dialled: 7, profile, agent kind, call index.
    fn exten(&self) -> String {
        format!("7{}{}{:06}", u8::from(self.legs), self.agent as u8, self.idx)
    }
    fn capture(&self) -> u8 {
        if let Caller::Refuses(n) = self.caller {
            n
        } else {
            0
        }
    }
    fn describe(&self) -> String {
        let mut s = format!(
            "plan #{} (round {}): caller {}, agent {}, {}",
            self.idx,
            self.round + 1,
            self.caller.name(),
            self.agent.name(),
            if self.legs { "record_legs" } else { "mixed only" }
        );
        if let Caller::Refuses(n) = self.caller {
            let _ = write!(
                s,
                ", the 9 {} ms after the answer",
                self.before_ms + REFUSAL_AT_MS[n as usize]
            );
        }
        if self.caller == Caller::HangsUp {
            let _ = write!(s, ", hangs up {} ms after the answer", self.before_ms + self.hangup_ms);
        }
        s
    }
}

fn make_plan(rng: &mut Rng, calls: usize, round_size: usize) -> Vec<Planned> {
    (0..calls)
        .map(|idx| {
            let caller = rng.weighted(&[
                (Caller::Stays, 50),
                (Caller::Refuses(0), 35),
                (Caller::HangsUp, 15),
            ]);
            let caller = if caller == Caller::Refuses(0) {
                Caller::Refuses(rng.range(1, 5) as u8)
            } else {
                caller
            };
            let agent = rng.weighted(&[
                (Agent::Talks, 24),
                (Agent::Pauses, 18),
                (Agent::Deletes, 12),
                (Agent::TransfersToAgent, 12),
                (Agent::TransfersToPrivate, 12),
                (Agent::PausesThenTransfers, 12),
                (Agent::ForgetsPause, 10),
            ]);
            let legs = rng.range(0, 99) < 30;
            let before_ms = rng.range(0, 1000) as u32;
            let hangup_ms = if caller == Caller::HangsUp { rng.range(300, 5000) as u32 } else { 0 };
            Planned { idx, round: idx / round_size, caller, agent, legs, before_ms, hangup_ms }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The PBX side

fn dialplan() -> String {
    let a2 = sound("soak-agent-1000-2s", AGENT_HZ, 2.0);
    let a4 = sound("soak-agent-1000-4s", AGENT_HZ, 4.0);
    let a6 = sound("soak-agent-1000-6s", AGENT_HZ, 6.0);
    let s1 = sound("soak-secret-1900-1s", SECRET_HZ, 1.0);
    let s2 = sound("soak-secret-1900-2s", SECRET_HZ, 2.0);
    let s4 = sound("soak-secret-1900-4s", SECRET_HZ, 4.0);
    let b3 = sound("soak-agent2-1300-3s", AGENT2_HZ, 3.0);
    let b4 = sound("soak-agent2-1300-4s", AGENT2_HZ, 4.0);
    let p4 = sound("soak-private-1700-4s", PRIVATE_HZ, 4.0);
    format!(
        "[test]\n\
         exten => _7XX.,1,Answer()\n same => n,NoOp(SOAKCALL ${{CHANNEL(linkedid)}} ${{EXTEN}})\n \
         same => n,CallConsent(${{IF($[\"${{EXTEN:1:1}}\" = \"1\"]?soaklegs:soak)}})\n same => n,Dial(Local/a${{EXTEN:2:1}}@test)\n same => n,Hangup()\n\
         exten => a0,1,Answer()\n same => n,Playback({a6})\n same => n,Hangup()\n\
         exten => a1,1,Answer()\n same => n,Playback({a2})\n same => n,SendDTMF(*1)\n same => n,Playback({s2})\n same => n,SendDTMF(*2)\n same => n,Playback({a2})\n same => n,Hangup()\n\
         exten => a2,1,Answer()\n same => n,Playback({a2})\n same => n,SendDTMF(*3)\n same => n,Playback({a4})\n same => n,Hangup()\n\
         exten => a3,1,Answer()\n same => n,Playback({a2})\n same => n,Set(SOAKXFER=b2)\n same => n,Wait(12)\n same => n,Hangup()\n\
         exten => b2,1,Dial(Local/agent2@test)\n\
         exten => agent2,1,Answer()\n same => n,Playback({b4})\n same => n,Hangup()\n\
         exten => a4,1,Answer()\n same => n,Playback({a2})\n same => n,Set(SOAKXFER=p2)\n same => n,Wait(12)\n same => n,Hangup()\n\
         exten => p2,1,Dial(Local/private@test)\n\
         exten => private,1,Answer()\n same => n,Playback({p4})\n same => n,Hangup()\n\
         exten => a5,1,Answer()\n same => n,Playback({a2})\n same => n,SendDTMF(*1)\n same => n,Playback({s1})\n same => n,Set(SOAKXFER=r2)\n same => n,Wait(12)\n same => n,Hangup()\n\
         exten => r2,1,Dial(Local/agent2r@test)\n\
         exten => agent2r,1,Answer()\n same => n,Playback({s1})\n same => n,SendDTMF(*2)\n same => n,Playback({b3})\n same => n,Hangup()\n\
         exten => a6,1,Answer()\n same => n,Playback({a2})\n same => n,SendDTMF(*1)\n same => n,Playback({s4})\n same => n,Hangup()\n"
    )
}

fn conf() -> String {
    let extra = "start_tone = 440/150\npause_tone = 620/150\nresume_tone = 820/150\nnever_record = agent:Local/private@*\n";
    consent_conf(&format!(
        "{}\n{}",
        profile("soak", 80, extra),
        profile("soaklegs", 80, &format!("{extra}record_legs = yes\n"))
    ))
}

fn rtp_conf(base: u32) -> String {
    format!("[general]\nrtpstart = {base}\nrtpend = {}\n", base + 999)
}

/// The caller's capture N: talks (350 Hz) for 14 s; N = 1-5 presses 9 at REFUSAL_AT_MS[N].
fn capture(n: usize) -> Vec<u8> {
    let tone = |ms| Part::Tone { freq: CALLER_HZ, ms };
    if n == 0 {
        return rtp_pcap(&[tone(CAPTURE_MS)]);
    }
    let at = REFUSAL_AT_MS[n];
    // A key is 200 ms, then 100 ms of silence (pcap.rs).
    rtp_pcap(&[tone(at), Part::Digits("9".into()), tone(CAPTURE_MS - at - 300)])
}

// ---------------------------------------------------------------------------------------------
// Reading the logs as they grow

/// New complete lines of a file that only grows (or is renamed: offsets are kept per inode, so
/// the audit log's rotation to audit-YYYY-MM-DD.jsonl is read on without a gap).
#[derive(Default)]
struct Tail {
    offsets: HashMap<u64, u64>,
    shrank: u64,
}

impl Tail {
    fn read(&mut self, files: &[PathBuf]) -> Vec<String> {
        let mut out = vec![];
        for f in files {
            let Ok(md) = fs::metadata(f) else { continue };
            let off = self.offsets.entry(md.ino()).or_insert(0);
            if md.len() < *off {
                // Only a torn last line (never read: it had no line end) may be cut.
                self.shrank += 1;
                *off = md.len();
                continue;
            }
            if md.len() == *off {
                continue;
            }
            let Ok(mut file) = fs::File::open(f) else { continue };
            let mut buf = vec![];
            if file.seek(SeekFrom::Start(*off)).is_err() || file.read_to_end(&mut buf).is_err() {
                continue;
            }
            let Some(end) = buf.iter().rposition(|b| *b == b'\n') else { continue };
            *off += end as u64 + 1;
            out.extend(String::from_utf8_lossy(&buf[..end]).lines().map(str::to_string));
        }
        out
    }
}

#[derive(Default, Clone)]
struct Kept {
    files: Vec<String>,
    pauses: u64,
    spans: String,
    /// The agent when the call ended (after a transfer, the new one).
    agent: String,
}

#[derive(Default, Clone)]
struct CallRec {
    /// Which Asterisk (0, then +1 at each restart) wrote its lines.
    inc: usize,
    plan: Option<usize>,
    channel: String,
    selected: Option<bool>,
    optout: Option<String>,
    started: Vec<String>,
    delete_requested: bool,
    deleted_by: Vec<String>,
    kept: Vec<Kept>,
    vetoed_after_transfer: bool,
    paused: u64,
    resumed: u64,
    ended: Option<String>,
    settled: bool,
    /// ms since the epoch of its first recording_started and of the recorder's stop (call_ended,
    /// or an agent_vetoed after a transfer).
    started_at: Option<i64>,
    ended_at: Option<i64>,
}

/// "2026-12-01T10:54:14.848Z" -> ms since the epoch.
fn ts_ms(ts: &str) -> Option<i64> {
    let n = |r: std::ops::Range<usize>| ts.get(r).and_then(|x| x.parse::<i64>().ok());
    let (y, mo, d, h, mi, s, ms) =
        (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + s * 1000 + ms)
}

impl CallRec {
    fn refused(&self) -> bool {
        self.optout.is_some()
    }
    fn deleted(&self) -> bool {
        self.delete_requested || self.deleted_by.iter().any(|b| b == "agent")
    }
    /// Its lines say that nothing more will happen to it.
    fn complete(&self) -> bool {
        self.settled
            || self.selected == Some(false)
            || (self.optout.as_deref() == Some("notice") && self.ended.is_none())
    }
    /// The module will write call_settled for it.
    fn will_settle(&self) -> bool {
        self.ended.is_some()
            || (self.selected == Some(true) && self.optout.as_deref() != Some("notice"))
    }
}

#[derive(Default)]
struct Model {
    inc: usize,
    lines: u64,
    bad_lines: Vec<String>,
    calls: HashMap<String, CallRec>,
    /// cc-<uniqueid> -> call.
    stems: HashMap<String, String>,
    by_plan: HashMap<usize, Vec<String>>,
    kept_lines: HashMap<String, u64>,
    discarded: HashMap<String, u64>,
    events: BTreeMap<String, u64>,
    outcomes: BTreeMap<String, u64>,
    repaired: Vec<String>,
    anchors: Vec<String>,
    /// Lines without a keyed MAC (`mac`): a few of them, and the count per event.
    unkeyed: Vec<String>,
    unkeyed_events: BTreeMap<String, u64>,
}

/// A recording's owner: `cc-<uniqueid>` from any of its names (mixed, legs, archive, sidecar).
fn stem_of(path: &str) -> String {
    let mut name = path.rsplit('/').next().unwrap_or(path).to_string();
    for suffix in [".tags.json", ".tmp", ".opus", ".wav"] {
        if let Some(s) = name.strip_suffix(suffix) {
            name = s.to_string();
        }
    }
    for suffix in ["-caller", "-agent"] {
        if let Some(s) = name.strip_suffix(suffix) {
            name = s.to_string();
        }
    }
    name
}

impl Model {
    fn rec(&mut self, call: &str) -> &mut CallRec {
        let inc = self.inc;
        self.calls.entry(call.to_string()).or_insert_with(|| CallRec { inc, ..Default::default() })
    }

    fn audit_line(&mut self, line: &str) {
        self.lines += 1;
        let v: Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(_) => {
                self.bad_lines.push(line.chars().take(200).collect());
                return;
            }
        };
        let ev = v["event"].as_str().unwrap_or("").to_string();
        *self.events.entry(ev.clone()).or_default() += 1;
        if v.get("mac").is_none() {
            *self.unkeyed_events.entry(ev.clone()).or_default() += 1;
            if self.unkeyed.len() < 3 {
                self.unkeyed.push(line.chars().take(300).collect());
            }
        }
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        match ev.as_str() {
            "recording_discarded" => *self.discarded.entry(s("file")).or_default() += 1,
            "log_repaired" => self.repaired.push(line.to_string()),
            _ => {}
        }
        if matches!(
            ev.as_str(),
            "recording_discarded"
                | "log_repaired"
                | "audit_checkpoint"
                | "recording_expired"
                | "audit_file_expired"
                | "queue_full"
        ) {
            return;
        }
        let call = s("call");
        if call.is_empty() {
            return;
        }
        let files: Vec<String> = v["files"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if ev == "recording_started" {
            self.stems.insert(stem_of(&s("file")), call.clone());
        }
        if ev == "recording_kept" {
            for f in &files {
                *self.kept_lines.entry(f.clone()).or_default() += 1;
            }
        }
        if ev == "call_ended" {
            *self.outcomes.entry(s("outcome")).or_default() += 1;
        }
        let rec = self.rec(&call);
        if rec.channel.is_empty() {
            rec.channel = s("channel");
        }
        match ev.as_str() {
            "selected" => rec.selected = Some(true),
            "not_selected" | "exempt" => rec.selected = Some(false),
            "opt_out" => rec.optout = Some(s("during")),
            "recording_started" => {
                rec.started.push(s("file"));
                rec.started_at = rec.started_at.or(ts_ms(&s("ts")));
            }
            "delete_requested" => rec.delete_requested = true,
            "recording_deleted" => rec.deleted_by.push(s("by")),
            "recording_kept" => rec.kept.push(Kept {
                files,
                pauses: v["pauses"].as_u64().unwrap_or(0),
                spans: s("pause_spans_ms"),
                agent: s("agent"),
            }),
            "agent_vetoed" if v["after"] == "transfer" => {
                // The recorder stops there, not at the hangup.
                rec.vetoed_after_transfer = true;
                rec.ended_at = ts_ms(&s("ts"));
            }
            "paused" => rec.paused += 1,
            "resumed" => rec.resumed += 1,
            "call_ended" => {
                rec.ended = Some(s("outcome"));
                rec.ended_at = rec.ended_at.or(ts_ms(&s("ts")));
            }
            "call_settled" => rec.settled = true,
            _ => {}
        }
    }

    fn message_line(&mut self, line: &str) {
        if let Some(rest) = line.split("SOAKCALL ").nth(1) {
            // `Executing [7...@test:2] NoOp("PJSIP/sipp-...", "SOAKCALL <linkedid> <exten>") in new stack`
            let mut it = rest.split_whitespace();
            let (Some(call), Some(exten)) = (it.next(), it.next()) else { return };
            let exten: String = exten.chars().take_while(char::is_ascii_digit).collect();
            let Some(idx) = exten.get(3..).and_then(|x| x.parse::<usize>().ok()) else { return };
            let call = call.to_string();
            let ids = self.by_plan.entry(idx).or_default();
            if !ids.contains(&call) {
                ids.push(call.clone());
            }
            self.rec(&call).plan = Some(idx);
        } else if let Some(rest) = line.split("callconsent: audit head ").nth(1) {
            // The head of an empty log is empty ("audit head  at line 0 of ...").
            if let Some(h) = rest
                .split_whitespace()
                .next()
                .filter(|h| h.len() == 64 && h.chars().all(|c| c.is_ascii_hexdigit()))
            {
                if !self.anchors.iter().any(|a| a == h) {
                    self.anchors.push(h.to_string());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The run

pub struct Settings {
    pub name: String,
    pub calls: usize,
    pub round_size: usize,
    /// How many rounds have a kill -9 (chosen at random among them).
    pub kill_rounds: usize,
    /// New calls per second (sipp -r); concurrency follows from the calls' length (about 8 s).
    pub rate: u32,
    pub seed: u64,
    /// RTP ports of the first Asterisk; each restart moves 1000 up (the killed calls' callers
    /// still send RTP for a while: a new call must not receive it).
    pub rtp_base: u32,
    /// Keep the instance (files, logs) when a check fails.
    pub keep_on_failure: bool,
}

#[derive(Default, Clone)]
struct KillRec {
    round: usize,
    inc_before: usize,
    after_calls: usize,
    channels: usize,
    staging: Vec<String>,
    boot_ms: u128,
}

#[derive(Default, Clone)]
pub struct Check {
    pub files: u64,
    pub bytes: u64,
    pub kept_files: u64,
    pub wavs_measured: u64,
    pub paused_spans: u64,
    pub refused_bytes: u64,
    pub deleted_bytes: u64,
    pub missed_refusal_bytes: u64,
    pub secret_ms: u64,
    pub private_ms: u64,
    pub paused_loud_windows: u64,
    pub paused_windows: u64,
    pub paused_short_spans: u64,
    pub max_skew_ms: u64,
    pub staging_orphans: u64,
    pub unknown_files: u64,
    pub kept_without_line: u64,
    pub kept_multi_lines: u64,
    pub kept_line_missing_file: u64,
    pub not_discarded: u64,
    pub discarded_without_line: u64,
    pub discarded_checked: u64,
    pub audit_ok: bool,
    pub audit_out: String,
    pub plan_mismatches: u64,
    pub draws_replayed: u64,
    pub draws_differ: u64,
}

pub struct Report {
    pub text: String,
    pub failures: Vec<String>,
    pub placed: usize,
    pub kills: usize,
}

struct SippRun {
    child: Child,
    out: PathBuf,
}

impl Drop for SippRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Soak {
    pub pbx: Pbx,
    s: Settings,
    plan: Vec<Planned>,
    kill_plan: HashMap<usize, (usize, u64)>,
    model: Model,
    audit_tail: Tail,
    msg_tail: Tail,
    ami: Ami,
    kills: Vec<KillRec>,
    /// Kept WAVs measured so far: ms of the second agent's tone in each.
    measured: HashMap<String, u64>,
    audio: Check,
    transfers_ok: u64,
    transfers_failed: u64,
    transfer_errors: BTreeMap<String, u64>,
    cpu_ms_done: u64,
    sipp_ok: u64,
    sipp_failed: u64,
    problems: Vec<String>,
    out: String,
    media_port: u16,
}

fn say(out: &mut String, line: &str) {
    println!("{line}");
    out.push_str(line);
    out.push('\n');
}

impl Soak {
    pub fn start(s: Settings) -> Soak {
        let mut rng = Rng::new(s.seed);
        let plan = make_plan(&mut rng, s.calls, s.round_size);
        let rounds = s.calls.div_ceil(s.round_size);
        // The rounds with a kill, and in each the moment: after this many of the round's calls
        // reached the dialplan, then this many more audit lines.
        let mut order: Vec<usize> = (0..rounds).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.range(0, i as u64) as usize);
        }
        let mut kill_plan = HashMap::new();
        for &r in order.iter().take(s.kill_rounds.min(rounds)) {
            let n = plan.iter().filter(|p| p.round == r).count() as u64;
            kill_plan.insert(r, (rng.range(n * 15 / 100, n * 65 / 100) as usize, rng.range(0, 80)));
        }
        let pbx = Pbx::builder(&s.name)
            .sip()
            .file("callconsent.conf", &conf())
            .file("extensions.conf", &dialplan())
            .file("rtp.conf", &rtp_conf(s.rtp_base))
            .start();
        note_pid(pbx.pid());
        for n in 0..6 {
            fs::write(pbx.path(&format!("sounds/soak-caller-{n}.pcap")), capture(n))
                .expect("write a caller's capture");
        }
        let scenario = fs::read_to_string(project_dir().join("tests/sipp/soak-caller.xml"))
            .expect("read tests/sipp/soak-caller.xml");
        fs::write(pbx.path("sounds/soak-caller.xml"), scenario.replace("{D}", &pbx.cdir))
            .expect("write the scenario");
        let ami = connect_ami(&pbx);
        let media_port = 35000 + (std::process::id() % 500) as u16 * 8;
        let mut soak = Soak {
            pbx,
            s,
            plan,
            kill_plan,
            model: Model::default(),
            audit_tail: Tail::default(),
            msg_tail: Tail::default(),
            ami,
            kills: vec![],
            measured: HashMap::new(),
            audio: Check::default(),
            transfers_ok: 0,
            transfers_failed: 0,
            transfer_errors: BTreeMap::new(),
            cpu_ms_done: 0,
            sipp_ok: 0,
            sipp_failed: 0,
            problems: vec![],
            out: String::new(),
            media_port,
        };
        let mut kr: Vec<usize> = soak.kill_plan.keys().map(|r| r + 1).collect();
        kr.sort();
        let line = format!(
            "soak: seed {} (replay: --seed {}), {} calls in {} rounds of {} at {} new calls/s, kill -9 in round(s) {:?}; instance {}",
            soak.s.seed,
            soak.s.seed,
            soak.s.calls,
            rounds,
            soak.s.round_size,
            soak.s.rate,
            kr,
            soak.pbx.dir.display()
        );
        say(&mut soak.out, &line);
        soak
    }

    /// Reads what the logs gained and acts on the agents' transfer requests.
    fn poll(&mut self) {
        self.read_logs();
        // Events that arrive while an action waits for its answer are kept for the next poll.
        self.ami.events();
        for e in std::mem::take(&mut self.ami.seen) {
            if e.get("Event").map(String::as_str) != Some("VarSet")
                || e.get("Variable").map(String::as_str) != Some("SOAKXFER")
            {
                continue;
            }
            let (Some(chan), Some(exten)) = (e.get("Channel"), e.get("Value")) else { continue };
            // The agent's dialplan runs on ;2; ;1 is the half in the caller's bridge.
            let agent = chan.replace(";2", ";1");
            let r = self.ami.action(
                "BlindTransfer",
                &[("Channel", &agent), ("Context", "test"), ("Exten", exten)],
            );
            if r.get("Response").map(String::as_str) == Some("Success") {
                self.transfers_ok += 1;
            } else {
                self.transfers_failed += 1;
                *self
                    .transfer_errors
                    .entry(r.get("Message").cloned().unwrap_or_default())
                    .or_default() += 1;
            }
        }
    }

    fn read_logs(&mut self) {
        let files = self.audit_files();
        for l in self.msg_tail.read(&[self.pbx.path("log/messages.log")]) {
            self.model.message_line(&l);
        }
        for l in self.audit_tail.read(&files) {
            self.model.audit_line(&l);
        }
    }

    /// The audit log's files, oldest first: the rotated audit-YYYY-MM-DD.jsonl, then audit.jsonl.
    fn audit_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.pbx.path("log/callconsent"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
            })
            .collect();
        files.sort();
        files.push(self.pbx.audit_path());
        files
    }

    fn chroot_path(&self, host: &Path) -> String {
        format!("/{}", host.strip_prefix(&self.pbx.root).unwrap_or(host).display())
    }

    fn spawn_sipp(&self, round: usize, calls: &[Planned]) -> SippRun {
        let mut inf = String::from("SEQUENTIAL\n");
        for p in calls {
            let _ = writeln!(inf, "{};{};{};{}", p.exten(), p.capture(), p.before_ms, p.hangup_ms);
        }
        let name = format!("soak-round-{}.csv", round + 1);
        fs::write(self.pbx.path(&format!("sounds/{name}")), inf).expect("write the injection file");
        let out = self.pbx.path(&format!("log/sipp-soak-{}.log", round + 1));
        let log = fs::File::create(&out).expect("create the sipp log");
        let timeout = calls.len() as u64 / u64::from(self.s.rate) + 120;
        let cdir = &self.pbx.cdir;
        let child = Command::new("chroot")
            .arg(&self.pbx.root)
            .args([
                "/usr/bin/sipp",
                &format!("127.0.0.1:{}", self.pbx.sip_port),
                "-sf",
                &format!("{cdir}/sounds/soak-caller.xml"),
                "-inf",
                &format!("{cdir}/sounds/{name}"),
                "-m",
                &calls.len().to_string(),
                "-r",
                &self.s.rate.to_string(),
                "-rp",
                "1000",
                "-l",
                "500",
                "-i",
                "127.0.0.1",
                "-p",
                &free_udp_port().to_string(),
                "-mp",
                &self.media_port.to_string(),
                "-aa",
                "-nostdin",
                "-timeout",
                &format!("{timeout}s"),
                "-trace_err",
                "-error_file",
                &format!("{cdir}/log/sipp-soak-errors-{}.log", round + 1),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the sipp log"))
            .stderr(log)
            .spawn()
            .expect("start sipp");
        note_pid(child.id());
        SippRun { child, out }
    }

    fn round_calls_seen(&self, round: usize) -> usize {
        self.model.by_plan.keys().filter(|i| self.plan[**i].round == round).count()
    }

    /// kill -9 at this moment; what the dead Asterisk wrote is read, its staging files listed,
    /// and the next Asterisk started (on fresh RTP ports).
    fn kill(&mut self, round: usize) {
        let channels = self.pbx.active_calls();
        self.cpu_ms_done += self.pbx.cpu_ms();
        self.pbx.kill9();
        self.read_logs();
        let staging_dir = self.pbx.path("spool/callconsent/staging");
        let mut staging: Vec<String> = fs::read_dir(&staging_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| self.chroot_path(&e.path()))
            .collect();
        staging.sort();
        let after_calls = self.round_calls_seen(round);
        self.model.inc += 1;
        let base = self.s.rtp_base + (self.model.inc as u32 % 10) * 1000;
        self.pbx.write_conf("rtp.conf", &rtp_conf(base));
        let t = Instant::now();
        self.pbx.restart();
        let boot_ms = t.elapsed().as_millis();
        note_pid(self.pbx.pid());
        self.ami = connect_ami(&self.pbx);
        let line = format!(
            "  kill -9 in round {} after {after_calls} of its calls reached the dialplan ({channels} channels up, {} files in staging); restarted in {boot_ms} ms",
            round + 1,
            staging.len()
        );
        say(&mut self.out, &line);
        self.kills.push(KillRec {
            round,
            inc_before: self.model.inc - 1,
            after_calls,
            channels,
            staging,
            boot_ms,
        });
    }

    pub fn run_round(&mut self, round: usize) {
        let t0 = Instant::now();
        let calls: Vec<Planned> = self.plan.iter().filter(|p| p.round == round).cloned().collect();
        let mut kill_at = self.kill_plan.get(&round).copied();
        let mut kill_lines_from: Option<u64> = None;
        let mut sipp = self.spawn_sipp(round, &calls);
        let limit = Duration::from_secs(calls.len() as u64 / u64::from(self.s.rate) + 180);
        let status = loop {
            self.poll();
            if let Some((after, extra)) = kill_at {
                if self.round_calls_seen(round) >= after {
                    let from = *kill_lines_from.get_or_insert(self.model.lines);
                    if self.model.lines >= from + extra {
                        self.kill(round);
                        kill_at = None;
                    }
                }
            }
            if let Ok(Some(st)) = sipp.child.try_wait() {
                break Some(st);
            }
            if t0.elapsed() > limit {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = fs::read_to_string(&sipp.out).unwrap_or_default();
        drop(sipp);
        let (ok, failed) = sipp_counts(&text);
        self.sipp_ok += ok;
        self.sipp_failed += failed;
        if status.is_none() {
            self.problems
                .push(format!("round {}: sipp did not finish within {limit:?}", round + 1));
        }
        if failed > 0 && !self.kills.iter().any(|k| k.round == round) {
            self.problems.push(format!(
                "round {}: {failed} sipp calls failed without a kill ({})",
                round + 1,
                fs::read_to_string(
                    self.pbx.path(&format!("log/sipp-soak-errors-{}.log", round + 1))
                )
                .unwrap_or_default()
                .lines()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ")
            ));
        }
        // Facts, not sleeps: no channel left, then every call of this Asterisk that will settle has.
        if !self.wait_no_channels(Duration::from_secs(120)) {
            let out = self.pbx.rx("core show channels concise");
            self.problems.push(format!(
                "round {}: channels still up 120 s after the last call: {}",
                round + 1,
                out.lines().take(10).collect::<Vec<_>>().join(" | ")
            ));
        }
        let unsettled = self.wait_settled(Duration::from_secs(60));
        for c in unsettled.iter().take(10) {
            self.problems.push(format!("call {c} never settled: {}", self.describe_call(c)));
        }
        if unsettled.len() > 10 {
            self.problems
                .push(format!("... and {} more calls never settled", unsettled.len() - 10));
        }
        let check = self.check();
        let in_round = |c: &CallRec| c.plan.is_some_and(|i| self.plan[i].round == round);
        let kept = self.model.calls.values().filter(|c| in_round(c) && !c.kept.is_empty()).count();
        let refused = self.model.calls.values().filter(|c| in_round(c) && c.refused()).count();
        let deleted = self.model.calls.values().filter(|c| in_round(c) && c.deleted()).count();
        let line = format!(
            "round {}/{}: {} calls (sipp {ok} ok, {failed} failed), kept {kept}, refused {refused}, deleted {deleted} | {} files on disk, refused/deleted audio {} B/{} B, secret tone {} ms, short paused spans {}, staging orphans {}, unexplained files {} | audit verify {} | {:.0} s",
            round + 1,
            self.s.calls.div_ceil(self.s.round_size),
            calls.len(),
            check.files,
            check.refused_bytes + check.missed_refusal_bytes,
            check.deleted_bytes,
            check.secret_ms,
            check.paused_short_spans,
            check.staging_orphans,
            check.unknown_files + check.kept_without_line,
            if check.audit_ok { "ok" } else { "FAILED" },
            t0.elapsed().as_secs_f32()
        );
        say(&mut self.out, &line);
    }

    /// No channel at every look for 300 ms (as the harness's wait_idle, without the panic: a
    /// soak reports).
    fn wait_no_channels(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut idle_since: Option<Instant> = None;
        loop {
            self.poll();
            if self.pbx.active_calls() == 0 {
                if idle_since.get_or_insert_with(Instant::now).elapsed()
                    >= Duration::from_millis(300)
                {
                    return true;
                }
            } else {
                idle_since = None;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every call of the running Asterisk whose lines promise a call_settled has
    /// one; returns those still without after `timeout`.
    fn wait_settled(&mut self, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            let inc = self.model.inc;
            let mut pending: Vec<String> = self
                .model
                .calls
                .iter()
                .filter(|(_, c)| c.inc == inc && c.will_settle() && !c.settled)
                .map(|(k, _)| k.clone())
                .collect();
            if pending.is_empty() || Instant::now() > deadline {
                pending.sort();
                return pending;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn describe_call(&self, call: &str) -> String {
        let Some(c) = self.model.calls.get(call) else { return "no audit line".into() };
        let plan =
            c.plan.map(|i| self.plan[i].describe()).unwrap_or_else(|| "not in the plan".into());
        format!(
            "{plan}; Asterisk #{} {}: selected {:?}, opt_out {:?}, started {}, paused {}, resumed {}, deleted by {:?}, kept {} (pauses {:?}, agent {:?}), vetoed after transfer {}, ended {:?}, settled {}",
            c.inc,
            c.channel,
            c.selected,
            c.optout,
            c.started.len(),
            c.paused,
            c.resumed,
            c.deleted_by,
            c.kept.len(),
            c.kept.iter().map(|k| k.spans.clone()).collect::<Vec<_>>(),
            c.kept.iter().map(|k| k.agent.clone()).collect::<Vec<_>>(),
            c.vetoed_after_transfer,
            c.ended,
            c.settled
        )
    }

    /// Every check, over everything so far (audio measurements only for files not measured yet).
    fn check(&mut self) -> Check {
        let mut c = Check::default();
        let mut problems = vec![];
        // 1. Every file anywhere under the spool.
        for f in self.pbx.spool_files() {
            let rel = self.chroot_path(&f);
            let size = fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
            c.files += 1;
            c.bytes += size;
            let owner = self
                .model
                .stems
                .get(&stem_of(&rel))
                .and_then(|call| self.model.calls.get(call).map(|r| (call.clone(), r)));
            if rel.contains("/spool/callconsent/staging/") {
                c.staging_orphans += 1;
                problems.push(format!(
                    "staging file left: {rel} ({size} B), call {}",
                    owner.as_ref().map(|o| o.0.as_str()).unwrap_or("?")
                ));
            } else if rel.contains("/spool/callconsent/kept/") {
                c.kept_files += 1;
                match self.model.kept_lines.get(&rel).copied().unwrap_or(0) {
                    1 => {}
                    0 => {
                        c.kept_without_line += 1;
                        problems.push(format!(
                            "kept file without a recording_kept line: {rel} ({size} B), call {}",
                            owner.as_ref().map(|o| o.0.as_str()).unwrap_or("?")
                        ));
                    }
                    n => {
                        c.kept_multi_lines += 1;
                        problems
                            .push(format!("kept file named by {n} recording_kept lines: {rel}"));
                    }
                }
            } else {
                c.unknown_files += 1;
                problems.push(format!("file outside staging/ and kept/: {rel} ({size} B)"));
            }
            match owner {
                Some((call, r)) if r.refused() => {
                    c.refused_bytes += size;
                    problems.push(format!(
                        "REFUSED AUDIO on disk: {rel} ({size} B) of call {call}: {}",
                        self.describe_call(&call)
                    ));
                }
                Some((call, r)) if r.deleted() => {
                    c.deleted_bytes += size;
                    problems.push(format!(
                        "DELETED AUDIO on disk: {rel} ({size} B) of call {call}: {}",
                        self.describe_call(&call)
                    ));
                }
                Some((call, r))
                    if r.plan
                        .is_some_and(|i| matches!(self.plan[i].caller, Caller::Refuses(_)))
                        && r.complete() =>
                {
                    c.missed_refusal_bytes += size;
                    problems.push(format!("audio of a caller who pressed 9 on disk: {rel} ({size} B) of call {call}: {}", self.describe_call(&call)));
                }
                Some(_) => {}
                None => {
                    c.unknown_files += 1;
                    problems.push(format!("file of no call in the audit log: {rel} ({size} B)"));
                }
            }
        }
        // 2. Every recording_kept line's files, measured once: paused spans exactly silent, no
        //    secret (paused) tone, no never-recorded line.
        let kept: Vec<(String, Kept, Option<u64>)> = self
            .model
            .calls
            .iter()
            .flat_map(|(k, r)| {
                let wall =
                    r.started_at.zip(r.ended_at).map(|(a, b)| b.saturating_sub(a).max(0) as u64);
                r.kept.iter().map(move |x| (k.clone(), x.clone(), wall))
            })
            .collect();
        for (call, k, wall) in &kept {
            if k.files.is_empty() {
                c.kept_line_missing_file += 1;
                problems.push(format!(
                    "recording_kept names no file (call {call}): {}",
                    self.describe_call(call)
                ));
            }
            for f in &k.files {
                let host = self.pbx.host_path(f);
                if !host.is_file() {
                    c.kept_line_missing_file += 1;
                    problems.push(format!(
                        "recording_kept names {f}, which is not on disk (call {call})"
                    ));
                    continue;
                }
                if self.measured.contains_key(f) || !f.ends_with(".wav") {
                    continue;
                }
                let samples = wav_samples(&host);
                self.measured
                    .insert(f.clone(), tone_share_ms(&samples, AGENT2_HZ as f32, LEAK_SHARE));
                self.audio.wavs_measured += 1;
                let secret = tone_share_ms(&samples, SECRET_HZ as f32, LEAK_SHARE);
                let private = tone_share_ms(&samples, PRIVATE_HZ as f32, LEAK_SHARE);
                let pc = paused_check(&samples, &k.spans, *wall);
                self.audio.secret_ms += secret;
                self.audio.private_ms += private;
                self.audio.paused_windows += pc.windows;
                self.audio.paused_loud_windows += pc.loud;
                self.audio.paused_spans += pc.spans;
                self.audio.paused_short_spans += pc.short_spans;
                self.audio.max_skew_ms = self.audio.max_skew_ms.max(pc.skew);
                if secret > 0 || private > 0 || pc.short_spans > 0 {
                    problems.push(format!(
                        "PAUSED OR NEVER-RECORDED AUDIO in {f}: {secret} ms of the secret tone, {private} ms of the never_record line, {} paused spans ({}) whose silence is {} ms shorter than the pause beyond the file's {} ms clock skew; call {call}: {}",
                        pc.short_spans,
                        k.spans,
                        pc.worst_short,
                        pc.skew,
                        self.describe_call(call)
                    ));
                }
            }
        }
        c.wavs_measured = self.audio.wavs_measured;
        c.secret_ms = self.audio.secret_ms;
        c.private_ms = self.audio.private_ms;
        c.paused_windows = self.audio.paused_windows;
        c.paused_loud_windows = self.audio.paused_loud_windows;
        c.paused_spans = self.audio.paused_spans;
        c.paused_short_spans = self.audio.paused_short_spans;
        c.max_skew_ms = self.audio.max_skew_ms;
        // 3. What each kill left in staging was discarded at the restart, each with its line.
        for k in &self.kills {
            for f in &k.staging {
                c.discarded_checked += 1;
                if self.pbx.host_path(f).exists() {
                    c.not_discarded += 1;
                    problems.push(format!("staging file of a killed Asterisk still there: {f}"));
                }
                if self.model.discarded.get(f).copied().unwrap_or(0) == 0 {
                    c.discarded_without_line += 1;
                    problems.push(format!(
                        "staging file of a killed Asterisk without a recording_discarded line: {f}"
                    ));
                }
            }
        }
        // 4. Each call against its plan, when its lines say it is over.
        let mut mismatches = vec![];
        for (call, r) in &self.model.calls {
            let Some(i) = r.plan else { continue };
            if !r.complete() || r.selected != Some(true) {
                continue;
            }
            let p = &self.plan[i];
            let kept_ok = !r.kept.is_empty();
            // The second agent's voice in the mixed recording: the recording went on after the transfer.
            let agent2_ms = r
                .kept
                .first()
                .and_then(|k| k.files.first())
                .and_then(|f| self.measured.get(f))
                .copied()
                .unwrap_or(0);
            let why = match (p.caller, p.agent) {
                // After the agent's *3 there is nothing left to refuse.
                (Caller::Refuses(_), _) if !r.refused() && !r.deleted() => {
                    Some("the caller pressed 9, no opt_out")
                }
                (Caller::Refuses(_), _) => None,
                (_, _) if r.refused() => Some("an opt_out without a 9 from the caller"),
                (Caller::HangsUp, _) => None,
                (_, Agent::Deletes) if !r.deleted() || kept_ok => {
                    Some("the agent's *3 did not delete")
                }
                (_, Agent::Deletes) => None,
                (_, _) if !kept_ok => Some("not kept"),
                (_, Agent::Pauses) if r.kept[0].pauses != 1 || r.resumed == 0 => {
                    Some("not one pause and a resume")
                }
                (_, Agent::ForgetsPause)
                    if r.kept[0].pauses != 1 || !r.kept[0].spans.ends_with("end") =>
                {
                    Some("not one pause lasting to the end")
                }
                (_, Agent::PausesThenTransfers)
                    if r.kept[0].pauses < 1
                        || r.resumed == 0
                        || r.kept[0].agent != "Local/agent2r@test"
                        || agent2_ms < 1000 =>
                {
                    Some("not a pause, a transfer and the new agent's resume and voice recorded")
                }
                (_, Agent::TransfersToAgent)
                    if r.kept[0].agent != "Local/agent2@test" || agent2_ms < 1000 =>
                {
                    Some("the recording did not go on with the new agent after the transfer")
                }
                (_, Agent::TransfersToPrivate) if !r.vetoed_after_transfer => {
                    Some("no agent_vetoed after the transfer to the never_record line")
                }
                _ => None,
            };
            if let Some(why) = why {
                mismatches.push(format!("call {call}: {why}: {}", self.describe_call(call)));
            }
        }
        mismatches.sort();
        c.plan_mismatches = mismatches.len() as u64;
        // 5. A few draws replayed with the DPO's tool and the installation secret.
        let secret = self.pbx.path("db/callconsent/secret");
        let mut sample: Vec<(&String, &CallRec)> =
            self.model.calls.iter().filter(|(_, r)| r.selected.is_some()).collect();
        sample.sort_by(|a, b| a.0.cmp(b.0));
        for (call, r) in sample.iter().step_by((sample.len() / 10).max(1)).take(10) {
            let out = dpo_tool(&["draw", call, secret.to_str().unwrap_or(""), "80"]);
            let text = String::from_utf8_lossy(&out.stdout);
            c.draws_replayed += 1;
            if text.trim_end().ends_with(": selected") != (r.selected == Some(true)) {
                c.draws_differ += 1;
                problems
                    .push(format!("the draw of call {call} replays differently: {}", text.trim()));
            }
        }
        // 6. The audit log, across the restarts: the chain and every head published at a load,
        //    then every line's keyed MAC with the installation secret.
        let files = self.audit_files();
        let verify = |key: bool| {
            let mut args: Vec<String> = vec!["audit".into(), "verify".into()];
            if key {
                args.extend(["--key".to_string(), secret.display().to_string()]);
            }
            for a in &self.model.anchors {
                args.extend(["--anchor".to_string(), a.clone()]);
            }
            args.extend(files.iter().map(|f| f.display().to_string()));
            let out = dpo_tool(&args.iter().map(String::as_str).collect::<Vec<_>>());
            let text = format!(
                "{} {}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            // Without --key a keyed log's chain that holds exits 3 ("NOT verified": its MACs
            // were not checked), never 0; the MACs are checked by the second run.
            let ok =
                if key { out.status.success() } else { matches!(out.status.code(), Some(0 | 3)) };
            (ok, text.trim().replace('\n', "; "))
        };
        let (chain_ok, chain_out) = verify(false);
        let (mac_ok, mac_out) = verify(true);
        c.audit_ok = chain_ok && mac_ok;
        c.audit_out = format!("chain: {chain_out} | with --key: {mac_out}");
        if !chain_ok {
            problems.push(format!("callconsent audit verify (chain, anchors) failed: {chain_out}"));
        }
        if !mac_ok {
            problems.push(format!(
                "callconsent audit verify --key failed: {mac_out} ({} lines have no mac: {:?}, e.g. {})",
                self.model.unkeyed_events.values().sum::<u64>(),
                self.model.unkeyed_events,
                self.model.unkeyed.first().cloned().unwrap_or_default()
            ));
        }
        if !self.model.bad_lines.is_empty() {
            problems.push(format!(
                "{} audit lines are not JSON, e.g. {}",
                self.model.bad_lines.len(),
                self.model.bad_lines[0]
            ));
        }
        for p in problems.into_iter().chain(mismatches) {
            if !self.problems.contains(&p) {
                self.problems.push(p);
            }
        }
        c
    }

    /// The figures, and every failed check.
    pub fn finish(mut self, t0: Instant) -> Report {
        let check = self.check();
        let cpu_ms = self.cpu_ms_done + self.pbx.cpu_ms();
        let mut o = String::new();
        let m = &self.model;
        let placed = self.plan.len();
        let reached: HashSet<usize> = m.by_plan.keys().copied().collect();
        let mapped: Vec<&CallRec> = m.calls.values().filter(|c| c.plan.is_some()).collect();
        let _ = writeln!(o, "== soak figures (seed {}) ==", self.s.seed);
        let _ = writeln!(
            o,
            "calls placed (sipp)            {placed}: {} completed, {} failed",
            self.sipp_ok, self.sipp_failed
        );
        let _ = writeln!(
            o,
            "calls in the dialplan           {} of the {placed} planned ({} Asterisk calls: a call re-sent after a restart counts again)",
            reached.len(),
            mapped.len()
        );
        let mut by_caller: BTreeMap<Caller, u64> = BTreeMap::new();
        let mut by_agent: BTreeMap<Agent, u64> = BTreeMap::new();
        for p in &self.plan {
            *by_caller.entry(p.caller).or_default() += 1;
            *by_agent.entry(p.agent).or_default() += 1;
        }
        let _ = writeln!(o, "per caller kind:");
        for (k, n) in &by_caller {
            let _ = writeln!(o, "  {:<42} {n}", k.name());
        }
        let _ = writeln!(o, "per agent kind:");
        for k in AGENTS {
            let _ = writeln!(o, "  {:<42} {}", k.name(), by_agent.get(&k).copied().unwrap_or(0));
        }
        let legs = self.plan.iter().filter(|p| p.legs).count();
        let _ = writeln!(o, "  (record_legs profile: {legs} calls, three files each)");
        let count = |f: &dyn Fn(&CallRec) -> bool| mapped.iter().filter(|c| f(c)).count();
        let interrupted = count(&|c| c.inc < m.inc && !c.complete());
        let _ = writeln!(
            o,
            "outcomes: selected {}, not selected {}, kept {}, refused {} (during the notice {}, during the call {}), deleted by the agent {}, paused {}, transfers {} (BlindTransfer refused: {}{}), vetoed after a transfer {}, interrupted by a kill {}",
            count(&|c| c.selected == Some(true)),
            count(&|c| c.selected == Some(false)),
            count(&|c| !c.kept.is_empty()),
            count(&|c| c.refused()),
            count(&|c| c.optout.as_deref() == Some("notice")),
            count(&|c| c.optout.as_deref() == Some("call")),
            count(&|c| c.deleted()),
            count(&|c| c.paused > 0),
            self.transfers_ok,
            self.transfers_failed,
            if self.transfer_errors.is_empty() { String::new() } else { format!(": {:?}", self.transfer_errors) },
            count(&|c| c.vetoed_after_transfer),
            interrupted
        );
        let _ = writeln!(o, "call_ended outcomes: {:?}", m.outcomes);
        let _ = writeln!(
            o,
            "kills: {} ({}); staging files they left: {}, discarded at the restart: {} (recording_discarded lines {}), log_repaired lines {}",
            self.kills.len(),
            self.kills
                .iter()
                .map(|k| format!("round {} after {} calls, {} channels up, {} staging files, restart {} ms", k.round + 1, k.after_calls, k.channels, k.staging.len(), k.boot_ms))
                .collect::<Vec<_>>()
                .join("; "),
            check.discarded_checked,
            check.discarded_checked - check.not_discarded,
            m.discarded.values().sum::<u64>(),
            m.repaired.len()
        );
        let _ = writeln!(
            o,
            "files checked: {} under the spool ({:.1} MiB), {} under kept/, {} kept WAVs measured, {} paused spans",
            check.files,
            check.bytes as f64 / 1048576.0,
            check.kept_files,
            check.wavs_measured,
            check.paused_spans
        );
        let xfer: Vec<u64> = mapped
            .iter()
            .filter(|c| {
                c.plan.is_some_and(|i| {
                    matches!(
                        self.plan[i].agent,
                        Agent::TransfersToAgent | Agent::PausesThenTransfers
                    )
                })
            })
            .filter_map(|c| {
                c.kept
                    .first()
                    .and_then(|k| k.files.first())
                    .and_then(|f| self.measured.get(f))
                    .copied()
            })
            .collect();
        let _ = writeln!(
            o,
            "detector check: the second agent's 1300 Hz (same level as the secret tone) found in {} of {} kept recordings of transferred calls",
            xfer.iter().filter(|ms| **ms >= 1000).count(),
            xfer.len()
        );
        let _ = writeln!(
            o,
            "refused audio on disk            {} bytes",
            check.refused_bytes + check.missed_refusal_bytes
        );
        let _ = writeln!(o, "deleted audio on disk            {} bytes", check.deleted_bytes);
        let _ = writeln!(
            o,
            "paused audio in kept files       {} ms of the secret tone, {} paused spans whose silence is shorter than the pause",
            check.secret_ms, check.paused_short_spans
        );
        let _ = writeln!(
            o,
            "  (at the spans' wall-clock positions {} of {} windows are not silent: the file's timeline is up to {} ms off the wall clock under load)",
            check.paused_loud_windows, check.paused_windows, check.max_skew_ms
        );
        let _ = writeln!(o, "never_record line in kept files  {} ms", check.private_ms);
        let _ = writeln!(o, "orphan staging files             {}", check.staging_orphans);
        let _ = writeln!(
            o,
            "files the audit log does not explain {} (kept files without exactly one recording_kept line: {}, named twice: {})",
            check.unknown_files + check.kept_without_line,
            check.kept_without_line,
            check.kept_multi_lines
        );
        let _ = writeln!(
            o,
            "recording_kept lines naming no file or a file not on disk {}",
            check.kept_line_missing_file
        );
        let _ =
            writeln!(o, "calls against their plan         {} mismatches", check.plan_mismatches);
        let _ = writeln!(
            o,
            "draws replayed (callconsent draw) {} ({} differ)",
            check.draws_replayed, check.draws_differ
        );
        let _ = writeln!(
            o,
            "audit verify ({} lines, {} published heads) {}: {}",
            m.lines,
            m.anchors.len(),
            if check.audit_ok { "ok" } else { "FAILED" },
            check.audit_out
        );
        if !m.unkeyed_events.is_empty() {
            let _ = writeln!(o, "audit lines without a keyed MAC: {:?}", m.unkeyed_events);
        }
        let _ = writeln!(o, "audit events: {:?}", m.events);
        let wall = t0.elapsed().as_secs_f64();
        let _ = writeln!(
            o,
            "wall time {:.0} s; Asterisk CPU {:.1} s ({:.0} ms per call placed)",
            wall,
            cpu_ms as f64 / 1000.0,
            cpu_ms as f64 / placed.max(1) as f64
        );
        let mut failures = self.problems.clone();
        if self.kills.len() < self.s.kill_rounds.min(self.s.calls.div_ceil(self.s.round_size)) {
            failures.push(format!(
                "only {} of the {} planned kills happened",
                self.kills.len(),
                self.s.kill_rounds
            ));
        }
        if failures.is_empty() {
            let _ = writeln!(o, "result: all checks passed");
        } else {
            let _ = writeln!(o, "result: {} problems:", failures.len());
            for f in failures.iter().take(40) {
                let _ = writeln!(o, "  {f}");
            }
        }
        print!("{o}");
        self.out.push_str(&o);
        let kills = self.kills.len();
        if !failures.is_empty() && self.s.keep_on_failure {
            println!("(instance kept for inspection: {})", self.pbx.dir.display());
            self.pbx.kill9();
            std::mem::forget(self.pbx);
        }
        Report { text: self.out, failures, placed, kills }
    }
}

/// With SOAK_PIDS set (scripts/soak.sh), each Asterisk and sipp this run starts is noted there,
/// so that the script's exit trap ends exactly these processes, by their id, and no other test's.
fn note_pid(pid: u32) {
    if let Some(f) = std::env::var_os("SOAK_PIDS") {
        if let Ok(mut file) = fs::OpenOptions::new().create(true).append(true).open(f) {
            use std::io::Write;
            let _ = writeln!(file, "{pid}");
        }
    }
}

fn connect_ami(pbx: &Pbx) -> Ami {
    let mut ami = pbx.ami();
    // Only the agents' transfer requests: a soak's worth of AMI events would not fit in memory.
    let r = ami.action("Filter", &[("Operation", "Add"), ("Filter", "Variable: SOAKXFER")]);
    assert_eq!(r.get("Response").map(String::as_str), Some("Success"), "AMI Filter: {r:?}");
    ami
}

struct PauseCheck {
    spans: u64,
    /// 20 ms windows at the spans' wall-clock positions, and those not exactly silent there.
    windows: u64,
    loud: u64,
    /// Spans whose exactly silent stretch in the file is shorter than the pause by more than the
    /// file's clock skew (+ 60 ms): audio recorded while paused.
    short_spans: u64,
    worst_short: u64,
    skew: u64,
}

/// The paused spans ("2000-3500,5000-end", ms from the recording's start, by the wall clock) of a
/// recording. The file's own timeline drifts from the wall clock under load (the audiohook drops
/// or the recorder starts a frame early or late: `skew`, the file's length against the
/// recording's wall-clock length), so each span is matched with the exactly silent stretch of the
/// file that overlaps it most, which must be as long as the pause, give or take that skew.
fn paused_check(samples: &[i16], spans: &str, wall_ms: Option<u64>) -> PauseCheck {
    let file_ms = samples.len() as u64 / 8;
    let skew = wall_ms.map_or(0, |w| w.abs_diff(file_ms));
    let silent = silent_windows(samples);
    let mut runs = vec![];
    let mut i = 0;
    while i < silent.len() {
        if silent[i] {
            let j = (i..silent.len()).find(|j| !silent[*j]).unwrap_or(silent.len());
            runs.push((i as u64 * 20, j as u64 * 20));
            i = j;
        } else {
            i += 1;
        }
    }
    let mut pc = PauseCheck { spans: 0, windows: 0, loud: 0, short_spans: 0, worst_short: 0, skew };
    for span in spans.split(',').filter(|s| !s.is_empty()) {
        let Some((a, b)) = span.split_once('-') else { continue };
        let Ok(a) = a.parse::<u64>() else { continue };
        let b = if b == "end" { file_ms } else { b.parse::<u64>().unwrap_or(a).min(file_ms) };
        if a + 40 >= b {
            continue;
        }
        pc.spans += 1;
        let mut t = a + 60;
        while t + 20 + 60 <= b {
            pc.windows += 1;
            if samples[(t * 8) as usize..((t + 20) * 8) as usize].iter().any(|s| *s != 0) {
                pc.loud += 1;
            }
            t += 20;
        }
        let overlap = |r: &(u64, u64)| r.1.min(b).saturating_sub(r.0.max(a));
        let run = runs
            .iter()
            .max_by_key(|r| overlap(r))
            .filter(|r| overlap(r) > 0)
            .map_or(0, |r| r.1 - r.0);
        let short = (b - a).saturating_sub(run);
        if short > skew + 60 {
            pc.short_spans += 1;
            pc.worst_short = pc.worst_short.max(short);
        }
    }
    pc
}

/// sipp's final statistics: (successful, failed) calls.
fn sipp_counts(text: &str) -> (u64, u64) {
    let last = |what: &str| {
        text.lines()
            .rfind(|l| l.contains(what))
            .and_then(|l| l.split('|').nth(2))
            .and_then(|x| x.trim().parse().ok())
            .unwrap_or(0)
    };
    (last("Successful call"), last("Failed call"))
}

pub fn run(s: Settings) -> Report {
    let t0 = Instant::now();
    let rounds = s.calls.div_ceil(s.round_size);
    let mut soak = Soak::start(s);
    for r in 0..rounds {
        soak.run_round(r);
    }
    soak.finish(t0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut calls: usize = 10_000;
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64 % 1_000_000_000)
        .unwrap_or(1);
    let mut rate = 8;
    let mut round_size: usize = 1000;
    let mut kills = None;
    while let Some(a) = args.next() {
        let mut val = |what: &str| {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{what} needs a number"))
        };
        match a.as_str() {
            "--seed" => seed = val("--seed"),
            "--rate" => rate = val("--rate") as u32,
            "--round" => round_size = val("--round") as usize,
            "--kills" => kills = Some(val("--kills") as usize),
            n => calls = n.parse().unwrap_or_else(|_| panic!("usage: soak [CALLS] [--seed N] [--rate CALLS_PER_S] [--round CALLS] [--kills ROUNDS]; got {n}")),
        }
    }
    let rounds = calls.div_ceil(round_size);
    let report = run(Settings {
        name: "soak".into(),
        calls,
        round_size,
        kill_rounds: kills.unwrap_or((rounds * 4).div_ceil(10)),
        rate,
        seed,
        rtp_base: 40000,
        keep_on_failure: true,
    });
    std::process::exit(if report.failures.is_empty() { 0 } else { 1 });
}
