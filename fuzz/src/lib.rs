//! The fuzz harnesses: each `run` takes the fuzzer's bytes and panics only on a bug (a panic of
//! the code under test, or a broken invariant asserted here). The AFL++ binaries in `src/bin`
//! are one line each; `repro` runs the same functions on saved files without AFL.
#![allow(clippy::missing_panics_doc)]

/// The 16 DTMF keys, in the order the call target's low nibble indexes them.
pub const KEYS: &[u8; 16] = b"0123456789*#ABCD";

/// Target `config`: bytes -> text -> `entries_from_text` -> `parse`; never panics, and what it
/// accepts obeys the rules it claims to check.
pub mod config {
    use callconsent_core::config::{self, Defaults};
    use std::path::PathBuf;

    pub fn defaults() -> Defaults {
        Defaults { spool_dir: PathBuf::from("/var/spool/asterisk/callconsent"), audit_log: PathBuf::from("/var/log/asterisk/callconsent/audit.jsonl") }
    }

    pub fn run(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let entries = config::entries_from_text(&text, "callconsent.conf");
        match config::parse(&entries, &defaults(), &|_| true) {
            Err(e) => {
                let _ = e.to_string();
            }
            Ok(c) => {
                let g = &c.general;
                assert!((1..=config::RETENTION_DAYS_MAX).contains(&g.retention_days), "retention_days {} accepted", g.retention_days);
                assert!(g.spool_dir.is_absolute() && g.audit_log.is_absolute(), "relative path accepted: {g:?}");
                for (name, p) in &c.profiles {
                    assert_eq!(name, &p.name);
                    assert!(p.record_share <= 100, "record_share {} accepted", p.record_share);
                    assert!(
                        p.record_share <= config::SHARE_WITHOUT_LEGAL_BASIS_MAX || p.legal_basis.is_some(),
                        "record_share {} accepted without legal_basis",
                        p.record_share
                    );
                    assert_ne!(p.optout_key, p.info_key, "optout_key == info_key accepted");
                    let codes = [&p.pause_code, &p.resume_code, &p.delete_code];
                    for (i, a) in codes.iter().enumerate() {
                        assert!((2..=8).contains(&a.chars().count()) && a.chars().all(config::is_dtmf), "code {a:?} accepted");
                        for b in codes.iter().skip(i + 1) {
                            assert!(!a.starts_with(b.as_str()) && !b.starts_with(a.as_str()), "clashing codes {a:?} {b:?} accepted");
                        }
                    }
                }
            }
        }
    }
}

/// Target `policy`: `pattern_matches`, `glob_matches` and `Exemption::parse` on input split at
/// the first line end (pattern or glob, then number or channel).
pub mod policy {
    use callconsent_core::policy::{self, Exemption};

    pub fn run(data: &[u8]) {
        let text = String::from_utf8_lossy(data);
        let (pattern, number) = text.split_once('\n').unwrap_or((&text, ""));
        let m = policy::pattern_matches(pattern, number);
        let g = policy::glob_matches(pattern, number);
        // Without metacharacters both are plain equality.
        if !pattern.chars().any(|c| matches!(c, 'X' | 'Z' | 'N' | '[' | '.' | '!')) {
            assert_eq!(m, pattern == number, "pattern_matches({pattern:?}, {number:?})");
        }
        if !pattern.contains(['*', '?']) {
            assert_eq!(g, pattern == number, "glob_matches({pattern:?}, {number:?})");
        }
        if pattern == "*" {
            assert!(g);
        }
        for entry in [format!("caller:_{pattern}"), format!("caller:{pattern}"), format!("agent:{pattern}"), pattern.to_string()] {
            if let Ok(e) = Exemption::parse(&entry) {
                let list = [e];
                let _ = policy::caller_exempt(&list, number);
                let _ = policy::agent_exempt(&list, number);
            }
        }
        let _ = policy::agent_id(number);
    }
}

/// Target `call`: the call state machine driven by a byte-coded event sequence.
///
/// Byte 0 (header): bits 0-1 the profile (see [`PROFILES`]); bit 2 set: no fixed prefix (else
/// Start, PromptDone(Completed), Bridged, [CapChecked Reserved], RecorderStarted first); bits
/// 3-4 the caller number; bit 5 a dialled number with the private prefix; bits 6-7 the call id.
/// Every later byte is one event, `op = b >> 4`, `low = b & 15`:
///
/// | op | event |
/// | -- | ----- |
/// | 0 / 1 | agent DTMF Begin / End of `KEYS[low]`, 40 ms later |
/// | 2 / 3 | caller DTMF Begin / End, 40 ms later |
/// | 4-7 | the same, 2500 ms later |
/// | 8 | Tick, `low * 700` ms later |
/// | 9 | Control: Pause / Resume / Delete (`low % 3`) from source `low / 4`, actor none or the last agent (`low & 1`) |
/// | A | Hangup |
/// | B | JoinedBridge |
/// | C | Bridged with agent `low % 3` (2 is never recorded) |
/// | D | CapChecked for the last bridged agent: Reserved / Reached / StoreFailed (`low % 3`) |
/// | E | RecorderStarted (`low < 8`) or RecorderFailed |
/// | F | 0 Start, 1 PromptDone(Completed), 2 Missing, 3 Hangup, 4-15 Key(`KEYS[low - 4]`) |
///
/// Invariants (a violation panics): after a `StopAndDelete` action, or an `opt_out` or
/// `delete_requested` audit, no `StartRecorder`, no `Unmute`, no `Keep` and no
/// `recording_kept` or `recording_started` audit.
pub mod call {
    use std::sync::{Arc, OnceLock};

    use callconsent_core::audit::{AuditEvent, Source};
    use callconsent_core::call::{Action, CapOutcome, Call, Command, Dir, Event, PromptOutcome, Press};
    use callconsent_core::config::{self, Profile};

    use super::KEYS;

    const COMMON: &str = "notice = callconsent/notice\nfull_notice = callconsent/full-notice\noptout_confirm = callconsent/optout-confirm\nnever_record = agent:Local/rep@*\nnever_record = caller:_0145XXXXXX\nprivate_prefix = 8\n";

    /// The four profiles a header can pick (made by the config parser, so always valid).
    pub const PROFILES: [&str; 4] = [
        "record_share = 100\nlegal_basis = test\n",
        "record_share = 100\nlegal_basis = test\npause_max_seconds = 10\nmax_per_agent = 3\ncap_period = day\n",
        "record_share = 20\npause_code = #11\nresume_code = #12\ndelete_code = #2\ncode_timeout_ms = 200\nstart_tone = off\npause_tone = off\nresume_tone = off\ndelete_tone = off\n",
        "record_share = 100\nlegal_basis = test\noptout_key = *\ninfo_key = #\npause_code = AB\nresume_code = AC\ndelete_code = D#\npause_max_seconds = 6\nmax_per_agent = 1\nrecord_legs = yes\n",
    ];
    pub const AGENTS: [&str; 3] = ["PJSIP/agent-1", "PJSIP/agent-2", "Local/rep@agents"];
    const CALLERS: [&str; 4] = ["0299000000", "0145000000", "", "+33612345678"];

    fn profiles() -> &'static [Arc<Profile>] {
        static P: OnceLock<Vec<Arc<Profile>>> = OnceLock::new();
        P.get_or_init(|| {
            PROFILES
                .iter()
                .map(|extra| {
                    let text = format!("[general]\n[fuzz]\n{COMMON}{extra}");
                    let c = config::parse(&config::entries_from_text(&text, "fuzz.conf"), &super::config::defaults(), &|_| true).expect("fuzz profile");
                    c.profiles["fuzz"].clone()
                })
                .collect()
        })
    }

    /// Header byte for a profile, with the fixed prefix and the ordinary caller.
    pub fn header(profile: u8) -> u8 {
        profile & 3
    }
    fn key_index(k: u8) -> u8 {
        KEYS.iter().position(|c| *c == k).expect("a DTMF key") as u8
    }
    /// One agent key press (Begin then End).
    pub fn agent(keys: &str) -> Vec<u8> {
        keys.bytes().flat_map(|k| [key_index(k), 0x10 | key_index(k)]).collect()
    }
    /// One caller key press (Begin then End).
    pub fn caller(keys: &str) -> Vec<u8> {
        keys.bytes().flat_map(|k| [0x20 | key_index(k), 0x30 | key_index(k)]).collect()
    }

    /// `CC_FUZZ_TRACE=1 repro call FILE` prints every event and its actions.
    fn trace() -> bool {
        static T: OnceLock<bool> = OnceLock::new();
        *T.get_or_init(|| std::env::var_os("CC_FUZZ_TRACE").is_some())
    }

    pub(crate) struct Watch {
        pub(crate) refused: Option<String>,
        pub(crate) log: Vec<String>,
    }

    impl Watch {
        pub(crate) fn check(&mut self, ev: &Event, actions: &[Action]) {
            self.log.push(format!("{ev:?}"));
            if trace() {
                eprintln!("{ev:?}\n    -> {actions:?}");
            }
            for a in actions {
                if let Some(why) = &self.refused {
                    let bad = match a {
                        Action::StartRecorder | Action::Unmute | Action::Keep { .. } => true,
                        Action::Audit { event, .. } => matches!(event, AuditEvent::RecordingKept | AuditEvent::RecordingStarted),
                        _ => false,
                    };
                    assert!(!bad, "invariant broken: {a:?} after {why}; events: {:?}", self.log);
                }
                let refusal = match a {
                    Action::StopAndDelete { by } => Some(format!("StopAndDelete {{ by: {by:?} }}")),
                    Action::Audit { event: e @ (AuditEvent::OptOut | AuditEvent::DeleteRequested), .. } => Some(format!("audit {}", e.as_str())),
                    _ => None,
                };
                if self.refused.is_none() {
                    self.refused = refusal;
                }
                let _ = (a.queue(), a.lane(), a.on_full_queue(), a.retry(), a.delay());
            }
        }
    }

    pub fn run(data: &[u8]) {
        let Some((&h, rest)) = data.split_first() else { return };
        let profile = profiles()[usize::from(h & 3)].clone();
        let caps = profile.max_per_agent > 0;
        let dialled = if h & 0x20 != 0 { "8123" } else { "" };
        let call_id = format!("1763800000.{}", h >> 6);
        let mut c = Call::new(profile, b"fuzz-secret", &call_id, CALLERS[usize::from((h >> 3) & 3)], dialled);
        let mut w = Watch { refused: None, log: Vec::new() };
        let mut now: u64 = 1000;
        let mut last_agent = AGENTS[0].to_string();
        let feed = |c: &mut Call, w: &mut Watch, ev: Event| {
            let (_verdict, actions) = c.on(ev.clone());
            w.check(&ev, &actions);
            let _ = (c.state_name(), c.wants_ticks(), c.paused(), c.file(), c.agent());
        };
        if h & 4 == 0 {
            feed(&mut c, &mut w, Event::Start);
            feed(&mut c, &mut w, Event::PromptDone(PromptOutcome::Completed));
            feed(&mut c, &mut w, Event::Bridged { agent: last_agent.clone() });
            if caps {
                feed(&mut c, &mut w, Event::CapChecked { agent: last_agent.clone(), period: "2026-12-01".into(), outcome: CapOutcome::Reserved { count: 1 } });
            }
            feed(&mut c, &mut w, Event::RecorderStarted { file: "/spool/cc-0.wav".into(), now_ms: now });
        }
        for (n, &b) in rest.iter().enumerate() {
            let (op, low) = (b >> 4, b & 15);
            let ev = match op {
                0..=7 => {
                    now += if op >= 4 { 2500 } else { 40 };
                    let dir = if op & 2 == 0 { Dir::Agent } else { Dir::Caller };
                    let press = if op & 1 == 0 { Press::Begin } else { Press::End };
                    Event::Dtmf { dir, press, digit: char::from(KEYS[usize::from(low)]), len_ms: 0, now_ms: now }
                }
                8 => {
                    now += u64::from(low) * 700;
                    Event::Tick { now_ms: now }
                }
                9 => {
                    let cmd = [Command::Pause, Command::Resume, Command::Delete][usize::from(low % 3)];
                    let source = [Source::Keypad, Source::Ami, Source::Dialplan, Source::PauseMaxSeconds][usize::from(low / 4)];
                    let actor = if low & 1 == 0 { String::new() } else { last_agent.clone() };
                    Event::Control { cmd, source, actor, now_ms: now }
                }
                10 => Event::Hangup,
                11 => Event::JoinedBridge,
                12 => {
                    last_agent = AGENTS[usize::from(low % 3)].to_string();
                    Event::Bridged { agent: last_agent.clone() }
                }
                13 => {
                    let count = u64::from(low);
                    let outcome = match low % 3 {
                        0 => CapOutcome::Reserved { count },
                        1 => CapOutcome::Reached { count },
                        _ => CapOutcome::StoreFailed("fuzz".into()),
                    };
                    Event::CapChecked { agent: last_agent.clone(), period: "2026-12-01".into(), outcome }
                }
                14 if low < 8 => Event::RecorderStarted { file: format!("/spool/cc-{n}.wav"), now_ms: now },
                14 => Event::RecorderFailed { reason: "fuzz".into() },
                _ => match low {
                    0 => Event::Start,
                    1 => Event::PromptDone(PromptOutcome::Completed),
                    2 => Event::PromptDone(PromptOutcome::Missing),
                    3 => Event::PromptDone(PromptOutcome::Hangup),
                    k => Event::PromptDone(PromptOutcome::Key(char::from(KEYS[usize::from(k - 4)]))),
                },
            };
            feed(&mut c, &mut w, ev);
        }
    }
}

/// Target `audit`: `verify` on the text, and `verify_files_with` on files made from the input.
///
/// The input is split at NUL bytes: the live log, then (if present) its `.head`, a rotated file
/// that comes before it, the audit key (empty: none), and published anchors.
pub mod audit {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use callconsent_runtime::audit::{self, Check};

    fn dir() -> &'static PathBuf {
        static D: OnceLock<PathBuf> = OnceLock::new();
        D.get_or_init(|| {
            let base = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
            base.join(format!("cc-fuzz-audit-{}", std::process::id()))
        })
    }

    pub fn run(data: &[u8]) {
        let parts: Vec<&[u8]> = data.split(|b| *b == 0).collect();
        let live = parts[0];
        let text = String::from_utf8_lossy(live);
        let plain = audit::verify(&text);
        if let Ok(n) = plain {
            assert_eq!(n, text.lines().filter(|l| !l.is_empty()).count(), "verify counted wrong");
        }

        // Made and removed by every run: AFL's fork server gives each batch of runs a new pid.
        let d = dir();
        std::fs::create_dir_all(d).expect("temp dir");
        let (live_path, rotated_path) = (d.join("audit.jsonl"), d.join("audit-2026-01-01.jsonl"));
        let head = audit::head_path(&live_path);
        std::fs::write(&live_path, live).expect("write");
        match parts.get(1) {
            Some(h) => std::fs::write(&head, h).expect("write"),
            None => {
                let _ = std::fs::remove_file(&head);
            }
        }
        let (live_s, rotated_s) = (live_path.display().to_string(), rotated_path.display().to_string());
        let mut files = vec![];
        if let Some(r) = parts.get(2) {
            std::fs::write(&rotated_path, r).expect("write");
            files.push(rotated_s.as_str());
        }
        files.push(live_s.as_str());
        let key = parts.get(3).filter(|k| !k.is_empty()).copied();
        let anchors: Vec<String> = parts.iter().skip(4).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        let checked = audit::verify_files_with(&files, &Check { key, anchors: &anchors });
        let _ = audit::verify_files(&files);

        // A chain that verifies, closed by a matching .head, verifies as a file too.
        if let (Ok(n), Some(h), 1, true, None, true) = (plain, parts.get(1), files.len(), anchors.is_empty(), key, std::str::from_utf8(live).is_ok()) {
            let last = text.lines().filter(|l| !l.is_empty()).last().map(audit::line_hash).unwrap_or_default();
            if String::from_utf8_lossy(h).trim() == last {
                assert_eq!(checked.as_ref().map(|v| v.lines), Ok(n), "verify Ok({n}) but verify_files {checked:?}");
            }
        }
        let _ = std::fs::remove_dir_all(d);
    }
}

#[cfg(test)]
mod tests {
    use callconsent_core::audit::By;
    use callconsent_core::call::{Action, Event};

    #[test]
    fn every_seed_runs_clean() {
        for (target, run) in [("config", super::config::run as fn(&[u8])), ("call", super::call::run), ("policy", super::policy::run), ("audit", super::audit::run)] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
            for f in std::fs::read_dir(&dir).unwrap() {
                let f = f.unwrap().path();
                if f.file_name().unwrap().to_string_lossy().starts_with("seed-") {
                    run(&std::fs::read(&f).unwrap());
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "invariant broken: Unmute after StopAndDelete")]
    fn the_call_invariant_is_checked() {
        let mut w = super::call::Watch { refused: None, log: Vec::new() };
        w.check(&Event::Hangup, &[Action::StopAndDelete { by: By::Caller }, Action::Unmute]);
    }
}
