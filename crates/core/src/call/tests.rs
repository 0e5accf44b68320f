use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::audit::{AuditEvent, By, Source};
use crate::config::Profile;
use crate::policy::{CapPeriod, Exemption};

const K: &[u8] = b"test-secret";

const KEYS: &str = "0123456789*#ABCD";

fn profile(share: u8, pause_max: u64) -> Arc<Profile> {
    Arc::new(Profile {
        name: "sales".into(),
        notice: "notice".into(),
        full_notice: "full".into(),
        optout_key: '9',
        info_key: '0',
        optout_confirm: "confirm".into(),
        record_share: share,
        legal_basis: None,
        record_legs: false,
        pause_code: "*1".into(),
        resume_code: "*2".into(),
        delete_code: "*3".into(),
        code_timeout_ms: 2000,
        pause_max_seconds: pause_max,
        start_tone: Some("440/150".into()),
        optout_tone: Some("950/120".into()),
        pause_tone: Some("620/150".into()),
        resume_tone: Some("820/150".into()),
        delete_tone: Some("950/300".into()),
        warn_tone: Some("1400/100".into()),
        never_record: vec![
            Exemption::parse("caller:_0145XXXXXX").unwrap(),
            Exemption::parse("agent:Local/rep@*").unwrap(),
        ],
        private_prefix: Some("8".into()),
        max_per_agent: 0,
        cap_period: CapPeriod::Week,
        secure_code: "*4".into(),
        secure_end_key: '#',
        secure_max_digits: 19,
        secure_timeout_ms: 60000,
        secure_mask_tone: Some("800/60".into()),
        secure_start_tone: Some("600/100".into()),
        secure_end_tone: Some("900/100".into()),
        secure_gosub: None,
        store_unavailable: crate::config::StoreUnavailable::NoRecord,
        store_local_seconds: 900,
    })
}

fn new_call(p: Arc<Profile>) -> Call {
    Call::new(p, K, "1763800000.7", "0299000000", "")
}

fn events(actions: &[Action]) -> Vec<&'static str> {
    actions
        .iter()
        .filter_map(
            |a| if let Action::Audit { event, .. } = a { Some(event.as_str()) } else { None },
        )
        .collect()
}

/// A call driven to one of the states a key can meet.
fn in_state(state: &str) -> Call {
    let mut c = new_call(profile(if state == "not_recording" { 0 } else { 100 }, 0));
    if state == "created" {
        return c;
    }
    c.on(Event::Start);
    match state {
        "notice" => return c,
        "full_notice" => {
            c.on(Event::PromptDone(PromptOutcome::Key('0')));
            return c;
        }
        _ => {}
    }
    c.on(Event::PromptDone(PromptOutcome::Completed));
    match state {
        "armed" | "not_recording" => return c,
        _ => {}
    }
    c.on(Event::Bridged { agent: "Local/agent@test".into() });
    if state == "starting" {
        return c;
    }
    c.on(Event::RecorderStarted { file: "/spool/cc-1.wav".into(), now_ms: 0 });
    match state {
        "recording" => {}
        "paused" => {
            c.on(Event::Control {
                cmd: Command::Pause,
                source: Source::Ami,
                actor: String::new(),
                now_ms: 0,
            });
        }
        "opted_out" => {
            c.on(Event::Dtmf {
                dir: Dir::Caller,
                press: Press::Begin,
                digit: '9',
                len_ms: 0,
                now_ms: 0,
            });
            c.on(Event::Dtmf {
                dir: Dir::Caller,
                press: Press::End,
                digit: '9',
                len_ms: 0,
                now_ms: 0,
            });
        }
        "deleted" => {
            c.on(Event::Control {
                cmd: Command::Delete,
                source: Source::Ami,
                actor: String::new(),
                now_ms: 0,
            });
        }
        "ended" => {
            c.on(Event::Hangup);
        }
        other => panic!("unknown state {other}"),
    }
    c
}

const STATES: &[&str] = &[
    "created",
    "notice",
    "full_notice",
    "armed",
    "starting",
    "not_recording",
    "recording",
    "paused",
    "opted_out",
    "deleted",
    "ended",
];

#[test]
fn every_caller_key_in_every_state() {
    for state in STATES {
        for key in KEYS.chars() {
            let mut c = in_state(state);
            let (v1, a1) = c.on(Event::Dtmf {
                dir: Dir::Caller,
                press: Press::Begin,
                digit: key,
                len_ms: 0,
                now_ms: 10,
            });
            let (v2, a2) = c.on(Event::Dtmf {
                dir: Dir::Caller,
                press: Press::End,
                digit: key,
                len_ms: 0,
                now_ms: 60,
            });
            let recording = matches!(*state, "recording" | "paused" | "starting");
            let reserved = matches!(*state, "opted_out" | "deleted");
            if *state == "armed" && key == '9' {
                // Refused while waiting for an agent: nothing was recorded, nothing to delete.
                assert_eq!((v1, v2), (Verdict::Drop, Verdict::Drop));
                assert!(events(&a1).contains(&"opt_out"));
                assert!(!a1.iter().any(|a| matches!(a, Action::StopAndDelete { .. })));
                assert_eq!(c.phase(), Phase::OptedOut);
                continue;
            }
            match (key, recording, reserved) {
                ('9', true, _) => {
                    assert_eq!((v1, v2), (Verdict::Drop, Verdict::Drop), "{state}");
                    assert_eq!(a1[0], Action::Mute, "{state}: mute comes first, in this frame");
                    assert!(a1.contains(&Action::StopAndDelete { by: By::Caller }), "{state}");
                    assert!(events(&a1).contains(&"opt_out"));
                    assert!(a1.contains(&Action::PlayToCaller("confirm".into())));
                    assert!(a2.is_empty(), "{state}: the END only completes the dropped key");
                    assert_eq!(c.phase(), Phase::OptedOut);
                }
                ('9', false, true) => {
                    assert_eq!(
                        (v1, v2),
                        (Verdict::Drop, Verdict::Drop),
                        "{state}: the key stays reserved"
                    );
                    assert!(a1.is_empty() && a2.is_empty(), "{state}");
                }
                _ => {
                    assert_eq!((v1, v2), (Verdict::Pass, Verdict::Pass), "{state} key {key}");
                    assert!(a1.is_empty() && a2.is_empty(), "{state} key {key}: {a1:?} {a2:?}");
                }
            }
        }
    }
}

#[test]
fn every_agent_key_in_every_state() {
    for state in STATES {
        for key in KEYS.chars() {
            let mut c = in_state(state);
            let before = c.phase();
            let (v1, a1) = c.on(Event::Dtmf {
                dir: Dir::Agent,
                press: Press::Begin,
                digit: key,
                len_ms: 0,
                now_ms: 10,
            });
            let (v2, a2) = c.on(Event::Dtmf {
                dir: Dir::Agent,
                press: Press::End,
                digit: key,
                len_ms: 0,
                now_ms: 60,
            });
            // Every watched call offers the secure entry's code (`*4`); recorded ones the others too.
            let watching_codes = matches!(
                *state,
                "armed" | "starting" | "recording" | "paused" | "opted_out" | "deleted"
            );
            if watching_codes && key == '*' {
                assert_eq!(
                    (v1, v2),
                    (Verdict::Drop, Verdict::Drop),
                    "{state}: a code's first key is held back"
                );
                assert!(c.wants_ticks());
                // A recording that is heard is muted at the code's first key (issue 23).
                let muted = if *state == "recording" { vec![Action::Mute] } else { vec![] };
                assert_eq!((&a1, &a2), (&muted, &vec![]), "{state} key {key}");
            } else {
                assert_eq!((v1, v2), (Verdict::Pass, Verdict::Pass), "{state} key {key}");
                assert!(a1.is_empty() && a2.is_empty(), "{state} key {key}: {a1:?} {a2:?}");
            }
            assert_eq!(c.phase(), before, "the agent can never opt the caller out");
        }
    }
}

fn press(c: &mut Call, dir: Dir, keys: &str, t0: u64) -> Vec<(Verdict, Vec<Action>)> {
    let mut out = vec![];
    for (i, k) in keys.chars().enumerate() {
        let t = t0 + i as u64 * 200;
        out.push(c.on(Event::Dtmf { dir, press: Press::Begin, digit: k, len_ms: 0, now_ms: t }));
        out.push(c.on(Event::Dtmf {
            dir,
            press: Press::End,
            digit: k,
            len_ms: 0,
            now_ms: t + 100,
        }));
    }
    out
}

#[test]
fn agent_codes_pause_resume_and_delete() {
    let mut c = in_state("recording");
    let r = press(&mut c, Dir::Agent, "*1", 0);
    assert!(r.iter().all(|(v, _)| *v == Verdict::Drop), "the caller never hears a code");
    // The code acts at the first frame of its last key.
    assert_eq!(r[2].1[0], Action::Mute);
    assert!(events(&r[2].1).contains(&"paused"));
    assert!(c.paused());
    let r = press(&mut c, Dir::Agent, "*2", 1000);
    assert_eq!(r[2].1[0], Action::Unmute);
    assert!(events(&r[2].1).contains(&"resumed"));
    assert!(!c.paused());
    let r = press(&mut c, Dir::Agent, "*3", 2000);
    assert!(r[2].1.contains(&Action::StopAndDelete { by: By::Agent }));
    assert_eq!(c.phase(), Phase::Deleted);
    let (_, a) = c.on(Event::Hangup);
    assert!(a.contains(&Action::DeleteLate { after: std::time::Duration::from_secs(5) }));
    assert!(!events(&a).contains(&"recording_kept"));
}

#[test]
fn a_non_code_is_passed_on_in_order() {
    let mut c = in_state("recording");
    let r = press(&mut c, Dir::Agent, "*5", 0);
    assert!(r.iter().all(|(v, _)| *v == Verdict::Drop));
    // Muted at the '*' (it may be a code), heard again once it is none.
    assert_eq!(r[0].1, vec![Action::Mute]);
    assert_eq!(r[2].1, vec![Action::SendToCaller("*5".into()), Action::Unmute]);
    let r = press(&mut c, Dir::Agent, "7", 1000);
    assert!(r.iter().all(|(v, a)| *v == Verdict::Pass && a.is_empty()));
    // A lone '*' is released when the code times out.
    press(&mut c, Dir::Agent, "*", 2000);
    let (_, a) = c.on(Event::Tick { now_ms: 2000 + 2000 });
    assert_eq!(a, vec![Action::SendToCaller("*".into()), Action::Unmute]);
    assert!(!c.wants_ticks());
}

/// Issue 23 (the pause under load): Asterisk holds a key back for 45 ms after the previous one
/// and lets the agent's voice overtake it, so what the agent says right after `*1` can reach the
/// recorder before the `1` does. The recorder is muted from the code's first key on, and each
/// code leaves it as the code says: paused, deleted, in an entry, or (no code) recording again.
#[test]
fn an_agent_code_mutes_from_its_first_key() {
    let mut c = in_state("recording");
    let (_, a) = c.on(Event::Dtmf {
        dir: Dir::Agent,
        press: Press::Begin,
        digit: '*',
        len_ms: 0,
        now_ms: 0,
    });
    assert_eq!(a, vec![Action::Mute], "muted in the frame of the '*'");
    let r = press(&mut c, Dir::Agent, "1", 100);
    assert!(c.paused() && events(&r[0].1).contains(&"paused"));
    assert!(!r.iter().flat_map(|(_, a)| a).any(|a| *a == Action::Unmute), "a pause never unmutes");
    // While paused, the resume code's '*' changes nothing; the resume unmutes once.
    let r = press(&mut c, Dir::Agent, "*2", 1000);
    assert_eq!(r.iter().flat_map(|(_, a)| a).filter(|a| **a == Action::Unmute).count(), 1, "{r:?}");
    assert!(!r.iter().flat_map(|(_, a)| a).any(|a| *a == Action::Mute), "{r:?}");
    // A resume code while recording: muted at '*', unmuted at '2' (nothing to resume).
    let r = press(&mut c, Dir::Agent, "*2", 2000);
    assert_eq!(r[0].1, vec![Action::Mute]);
    assert_eq!(r[2].1, vec![Action::Unmute]);
    // A desktop pause while a code is being keyed: the code's end does not unmute.
    c.on(Event::Dtmf { dir: Dir::Agent, press: Press::Begin, digit: '*', len_ms: 0, now_ms: 3000 });
    c.on(Event::Control {
        cmd: Command::Pause,
        source: Source::Ami,
        actor: String::new(),
        now_ms: 3050,
    });
    let (_, a) = c.on(Event::Tick { now_ms: 3000 + 2500 });
    assert_eq!(a, vec![Action::SendToCaller("*".into())], "released, still paused: {a:?}");
    assert!(c.paused());
    // The delete code: muted at '*', stopped and deleted at '3'.
    let mut c = in_state("recording");
    let r = press(&mut c, Dir::Agent, "*3", 0);
    assert_eq!(r[0].1, vec![Action::Mute]);
    assert!(
        r[2].1.contains(&Action::StopAndDelete { by: By::Agent })
            && !r[2].1.contains(&Action::Unmute)
    );
}

#[test]
fn a_caller_pressing_the_agent_codes_changes_nothing() {
    let mut c = in_state("recording");
    for (i, code) in ["*1", "*2", "*3"].into_iter().enumerate() {
        let r = press(&mut c, Dir::Caller, code, i as u64 * 1000);
        assert!(r.iter().all(|(v, a)| *v == Verdict::Pass && a.is_empty()), "{code}");
    }
    assert!(!c.paused());
    assert_eq!(c.phase(), Phase::Recording);
}

#[test]
fn a_forgotten_pause_resumes_after_a_warning() {
    let mut c = new_call(profile(100, 20));
    c.on(Event::Start);
    c.on(Event::PromptDone(PromptOutcome::Completed));
    c.on(Event::Bridged { agent: "PJSIP/anna".into() });
    c.on(Event::RecorderStarted { file: "f".into(), now_ms: 0 });
    c.on(Event::Control {
        cmd: Command::Pause,
        source: Source::Keypad,
        actor: String::new(),
        now_ms: 1000,
    });
    assert!(c.wants_ticks());
    assert!(c.on(Event::Tick { now_ms: 15_000 }).1.is_empty());
    let (_, a) = c.on(Event::Tick { now_ms: 16_000 });
    assert!(events(&a).contains(&"pause_warning"));
    assert!(a.contains(&Action::ToneToAgent("1400/100".into())));
    assert!(c.on(Event::Tick { now_ms: 18_000 }).1.is_empty(), "one warning only");
    let (_, a) = c.on(Event::Tick { now_ms: 21_000 });
    assert_eq!(a[0], Action::Unmute);
    let resumed = a
        .iter()
        .find_map(|x| {
            if let Action::Audit { event: AuditEvent::Resumed, facts } = x {
                Some(facts.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(resumed["by"], "auto");
    assert!(!c.paused() && !c.wants_ticks());
}

#[test]
fn notice_paths() {
    // Opt-out during the notice: nothing is ever recorded.
    let mut c = new_call(profile(100, 0));
    c.on(Event::Start);
    let (_, a) = c.on(Event::PromptDone(PromptOutcome::Key('9')));
    assert_eq!(events(&a), vec!["notice_played", "opt_out"]);
    assert!(a.contains(&Action::SetStatus(Status::OptedOut)));
    assert!(!a.contains(&Action::StartRecorder));
    // The info key plays the full notice, then the call goes on to recording.
    let mut c = new_call(profile(100, 0));
    c.on(Event::Start);
    let (_, a) = c.on(Event::PromptDone(PromptOutcome::Key('0')));
    assert!(a.contains(&Action::Play { file: "full".into(), keys: "9".into() }));
    let (_, a) = c.on(Event::PromptDone(PromptOutcome::Completed));
    assert_eq!(events(&a), vec!["info_played"]);
    assert!(a.contains(&Action::Watch), "armed: the recorder starts at the bridge");
    assert!(a.contains(&Action::SetStatus(Status::Recording)));
    let (_, a) = c.on(Event::Bridged { agent: "PJSIP/anna".into() });
    assert_eq!(events(&a), vec!["agent_cleared"]);
    assert!(a.contains(&Action::StartRecorder));
    // A notice that cannot be played means no recording (R1).
    let mut c = new_call(profile(100, 0));
    c.on(Event::Start);
    let (_, a) = c.on(Event::PromptDone(PromptOutcome::Missing));
    assert!(a.contains(&Action::SetStatus(Status::Error)));
    assert!(!a.contains(&Action::StartRecorder));
    // Not selected: the notice still plays, nothing records.
    let mut c = new_call(profile(0, 0));
    let (_, a) = c.on(Event::Start);
    assert_eq!(events(&a), vec!["not_selected"]);
    let (_, a) = c.on(Event::PromptDone(PromptOutcome::Completed));
    assert!(a.contains(&Action::SetStatus(Status::NotSelected)));
}

#[test]
fn a_refusal_while_the_recorder_starts_still_stops_it() {
    let mut c = in_state("starting");
    c.on(Event::Dtmf { dir: Dir::Caller, press: Press::Begin, digit: '9', len_ms: 0, now_ms: 0 });
    let (_, a) = c.on(Event::RecorderStarted { file: "f".into(), now_ms: 0 });
    assert_eq!(a, vec![Action::StopAndDelete { by: By::Caller }]);
}

#[test]
fn the_agent_hears_the_start_tone_when_bridged() {
    let mut c = in_state("starting");
    let (_, a) = c.on(Event::RecorderStarted { file: "f".into(), now_ms: 0 });
    assert!(a.contains(&Action::ToneToAgent("440/150".into())));
    // A transfer: the new agent hears it too, and that the call is paused.
    let (_, a) = c.on(Event::Bridged { agent: "PJSIP/ben".into() });
    assert_eq!(a, vec![Action::ToneToAgent("440/150".into())]);
    c.on(Event::Control {
        cmd: Command::Pause,
        source: Source::Ami,
        actor: String::new(),
        now_ms: 0,
    });
    let (_, a) = c.on(Event::Bridged { agent: "PJSIP/cleo".into() });
    assert_eq!(
        a,
        vec![Action::ToneToAgent("440/150".into()), Action::ToneToAgent("620/150".into())]
    );
}

fn any_event() -> impl Strategy<Value = Event> {
    let key = proptest::sample::select(KEYS.chars().collect::<Vec<_>>());
    prop_oneof![
        Just(Event::Start),
        Just(Event::PromptDone(PromptOutcome::Completed)),
        key.clone().prop_map(|k| Event::PromptDone(PromptOutcome::Key(k))),
        Just(Event::RecorderStarted { file: "f".into(), now_ms: 0 }),
        Just(Event::JoinedBridge),
        Just(Event::Bridged { agent: "PJSIP/anna".into() }),
        Just(Event::Bridged { agent: "Local/rep@agents".into() }),
        (any::<bool>(), 0u64..20).prop_map(|(allowed, count)| Event::CapChecked {
            agent: "PJSIP/anna".into(),
            period: "2026-W47".into(),
            outcome: if allowed {
                CapOutcome::Reserved { count }
            } else {
                CapOutcome::Reached { count }
            }
        }),
        (key, any::<bool>(), any::<bool>(), 0u64..100_000).prop_map(|(k, caller, begin, t)| {
            Event::Dtmf {
                dir: if caller { Dir::Caller } else { Dir::Agent },
                press: if begin { Press::Begin } else { Press::End },
                digit: k,
                len_ms: 0,
                now_ms: t,
            }
        }),
        (0u64..100_000).prop_map(|t| Event::Tick { now_ms: t }),
        (0..3usize, 0u64..100_000).prop_map(|(i, t)| Event::Control {
            cmd: [Command::Pause, Command::Resume, Command::Delete][i],
            source: Source::Ami,
            actor: String::new(),
            now_ms: t
        }),
    ]
}

proptest! {
    /// After a refusal (or a delete), nothing ever records again: no start, no unmute, and the
    /// recording is never reported as kept.
    #[test]
    fn nothing_records_after_an_opt_out(evs in proptest::collection::vec(any_event(), 1..60), pause_max in 0u64..30) {
        let mut c = Call::new(profile(100, pause_max), K, "1763800000.9", "0299000000", "");
        let mut refused = false;
        for ev in evs.into_iter().chain([Event::Hangup]) {
            let (_, actions) = c.on(ev);
            for a in &actions {
                if refused {
                    prop_assert!(!matches!(a, Action::StartRecorder | Action::Unmute), "{a:?} after a refusal");
                    let kept = matches!(a, Action::Audit { event: AuditEvent::RecordingKept, .. });
                    prop_assert!(!kept, "kept after a refusal");
                }
                if matches!(a, Action::StopAndDelete { .. }) {
                    refused = true;
                }
            }
            if refused {
                prop_assert!(matches!(c.phase(), Phase::OptedOut | Phase::Deleted | Phase::Ended));
            }
        }
    }
}

proptest! {
    /// R12: an exempt caller, a private call or a never-recorded agent is never recorded,
    /// whatever the draw and whatever happens next.
    #[test]
    fn exempt_lines_are_never_recorded(evs in proptest::collection::vec(any_event(), 1..60), which in 0..3usize) {
        let (caller, dialled) = match which { 0 => ("0145123456", ""), 1 => ("0299000000", "80612345678"), _ => ("0299000000", "") };
        let mut c = Call::new(profile(100, 0), K, "1763800000.9", caller, dialled);
        let rep_only = which == 2;
        for ev in evs.into_iter().chain([Event::Hangup]) {
            let ev = match ev {
                Event::Bridged { .. } if rep_only => Event::Bridged { agent: "Local/rep@agents".into() },
                Event::CapChecked { .. } if rep_only => continue,
                e => e,
            };
            let (_, actions) = c.on(ev);
            prop_assert!(!actions.contains(&Action::StartRecorder), "recorded an exempt call: {actions:?}");
        }
    }
}

#[test]
fn exemptions_are_audited_without_the_number() {
    let mut c = Call::new(profile(100, 0), K, "1", "0145123456", "");
    let (_, a) = c.on(Event::Start);
    let Action::Audit { event, facts } = &a[0] else { panic!("{a:?}") };
    assert_eq!(*event, AuditEvent::Exempt);
    assert_eq!(facts["reason"], "never_record_caller");
    assert!(!serde_json::to_string(facts).unwrap().contains("0145123456"));
    assert!(a.contains(&Action::SetStatus(Status::NotSelected)));
    let mut c = Call::new(profile(100, 0), K, "1", "", "80612345678");
    assert_eq!(events(&c.on(Event::Start).1), vec!["exempt"]);
}

#[test]
fn caps_and_never_recorded_agents_veto_at_the_bridge() {
    let mut p = (*profile(100, 0)).clone();
    p.max_per_agent = 2;
    let mut c = new_call(Arc::new(p));
    c.on(Event::Start);
    c.on(Event::PromptDone(PromptOutcome::Completed));
    let (_, a) = c.on(Event::Bridged { agent: "PJSIP/anna".into() });
    assert_eq!(
        a,
        vec![Action::ReserveCap {
            agent: "PJSIP/anna".into(),
            period: CapPeriod::Week,
            period_max: 2
        }]
    );
    let (_, a) = c.on(Event::CapChecked {
        agent: "PJSIP/anna".into(),
        period: "2026-W47".into(),
        outcome: CapOutcome::Reached { count: 2 },
    });
    assert_eq!(events(&a), vec!["agent_vetoed"]);
    assert!(!a.contains(&Action::StartRecorder));
    assert_eq!(c.phase(), Phase::NotRecording);

    let mut c = in_state("armed");
    let (_, a) = c.on(Event::Bridged { agent: "Local/rep@agents".into() });
    assert_eq!(events(&a), vec!["agent_vetoed"]);
    assert_eq!(c.phase(), Phase::NotRecording);
}

#[test]
fn pause_spans_are_kept_for_the_archive() {
    let mut c = in_state("starting");
    c.on(Event::RecorderStarted { file: "f".into(), now_ms: 1000 });
    c.on(Event::Control {
        cmd: Command::Pause,
        source: Source::Ami,
        actor: String::new(),
        now_ms: 3000,
    });
    c.on(Event::Control {
        cmd: Command::Resume,
        source: Source::Ami,
        actor: String::new(),
        now_ms: 4500,
    });
    c.on(Event::Control {
        cmd: Command::Pause,
        source: Source::Ami,
        actor: String::new(),
        now_ms: 6000,
    });
    let (_, a) = c.on(Event::Hangup);
    assert!(a.contains(&Action::Keep { pauses: 2, spans: "2000-3500,5000-end".into() }), "{a:?}");
}

#[test]
fn a_transfer_to_a_never_recorded_agent_stops_and_keeps() {
    let mut c = in_state("recording");
    let (_, a) = c.on(Event::Bridged { agent: "Local/rep@agents".into() });
    assert_eq!(a[0], Action::Mute);
    assert!(a.contains(&Action::StopRecorder));
    assert_eq!(events(&a), vec!["agent_vetoed"]);
    assert_eq!(c.phase(), Phase::Stopped);
    // Nothing restarts it, and what was recorded before is kept at hangup.
    let (_, a) = c.on(Event::Control {
        cmd: Command::Resume,
        source: Source::Ami,
        actor: String::new(),
        now_ms: 1,
    });
    assert!(a.is_empty());
    let (_, a) = c.on(Event::Hangup);
    assert!(a.iter().any(|x| matches!(x, Action::Keep { .. })));
}

#[test]
fn a_refusal_while_queued_is_confirmed_once_connected() {
    let mut c = in_state("armed");
    let (_, a) = c.on(Event::Dtmf {
        dir: Dir::Caller,
        press: Press::Begin,
        digit: '9',
        len_ms: 0,
        now_ms: 0,
    });
    assert!(!a.iter().any(|x| matches!(x, Action::PlayToCaller(_))), "no bridge yet: {a:?}");
    let (_, a) = c.on(Event::Bridged { agent: "PJSIP/anna".into() });
    assert_eq!(a, vec![Action::PlayToCaller("confirm".into())]);
    assert!(!a.contains(&Action::StartRecorder));
    let (_, a) = c.on(Event::Bridged { agent: "PJSIP/ben".into() });
    assert!(a.is_empty(), "once only");
}

#[test]
fn a_cap_store_that_fails_never_lifts_the_cap() {
    let mut p = (*profile(100, 0)).clone();
    p.max_per_agent = 2;
    let mut c = new_call(Arc::new(p));
    c.on(Event::Start);
    c.on(Event::PromptDone(PromptOutcome::Completed));
    c.on(Event::Bridged { agent: "PJSIP/anna".into() });
    let (_, a) = c.on(Event::CapChecked {
        agent: "PJSIP/anna".into(),
        period: "2026-W47".into(),
        outcome: CapOutcome::StoreFailed("disk gone".into()),
    });
    assert_eq!(events(&a), vec!["agent_vetoed"]);
    let Some(Action::Audit { facts, .. }) = a.first() else { panic!("{a:?}") };
    assert!(facts["reason"].as_str().unwrap_or("").contains("cap store unavailable"), "{facts:?}");
    assert!(!a.contains(&Action::StartRecorder));
    assert_eq!(c.phase(), Phase::NotRecording);
}

#[test]
fn a_recorder_that_starts_after_hangup_is_deleted() {
    let mut c = in_state("starting");
    c.on(Event::Hangup);
    let (_, a) = c.on(Event::RecorderStarted { file: "late.wav".into(), now_ms: 10 });
    assert_eq!(a, vec![Action::StopAndDelete { by: By::Cleanup }]);
}

#[test]
fn joining_a_bridge_looks_for_the_agent_only_when_it_matters() {
    for (state, wanted) in
        [("armed", true), ("recording", true), ("not_recording", false), ("notice", false)]
    {
        let mut c = in_state(state);
        let (_, a) = c.on(Event::JoinedBridge);
        assert_eq!(a.contains(&Action::FindAgent), wanted, "{state}: {a:?}");
    }
}

#[test]
fn every_action_has_one_lane_and_deferred_ones_only_retry() {
    let all = [
        Action::Play { file: "f".into(), keys: String::new() },
        Action::Watch,
        Action::FindAgent,
        Action::ReserveCap { agent: "a".into(), period: CapPeriod::Day, period_max: 1 },
        Action::StartRecorder,
        Action::StopRecorder,
        Action::Keep { pauses: 0, spans: String::new() },
        Action::Mute,
        Action::Unmute,
        Action::StopAndDelete { by: By::Caller },
        Action::DeleteLate { after: std::time::Duration::from_secs(1) },
        Action::PlayToCaller("f".into()),
        Action::ToneToAgent("440/100".into()),
        Action::SendToCaller("1".into()),
        Action::SetStatus(Status::Recording),
        Action::Audit { event: AuditEvent::Paused, facts: Default::default() },
        Action::Notify,
    ];
    for a in &all {
        if a.lane() == Lane::Inline {
            assert!(a.retry().is_none() && a.delay().is_zero(), "{a:?}");
        }
    }
    // A full queue never drops a stop or a deletion, and never lets an unchecked recording start.
    for a in &all {
        match a.on_full_queue() {
            OnFull::Wait => assert!(
                matches!(
                    a,
                    Action::StopRecorder
                        | Action::StopAndDelete { .. }
                        | Action::DeleteLate { .. }
                        | Action::Keep { .. }
                ),
                "{a:?}"
            ),
            OnFull::Refuse(ev) => assert!(
                matches!(
                    ev,
                    Event::RecorderFailed { .. }
                        | Event::CapChecked { outcome: CapOutcome::StoreFailed(_), .. }
                ),
                "{a:?}"
            ),
            OnFull::Drop => assert!(!matches!(
                a,
                Action::StartRecorder
                    | Action::StopAndDelete { .. }
                    | Action::DeleteLate { .. }
                    | Action::ReserveCap { .. }
            )),
        }
    }
    assert_eq!(Action::SendToCaller("1".into()).queue(), Queue::Signals);
    assert_eq!(Action::StopAndDelete { by: By::Caller }.queue(), Queue::Recorder);
    // What touches files, the store or the recorder never runs on the media path.
    for a in [
        Action::StartRecorder,
        Action::StopAndDelete { by: By::Agent },
        Action::Keep { pauses: 0, spans: String::new() },
        Action::ReserveCap { agent: "a".into(), period: CapPeriod::Day, period_max: 1 },
    ] {
        assert_eq!(a.lane(), Lane::Deferred, "{a:?}");
    }
}

proptest! {
    /// R12 across transfers: from the moment a recorded caller joins another bridge until the new
    /// agent is cleared, the recorder is never unmuted; a never-recorded agent is never cleared.
    #[test]
    fn a_transfer_is_muted_until_the_new_agent_is_cleared(evs in proptest::collection::vec(any_event(), 1..80)) {
        let mut c = Call::new(profile(100, 0), K, "1763800000.9", "0299000000", "");
        let mut joined = false;
        for ev in evs.into_iter().chain([Event::Hangup]) {
            let was_recording = c.phase() == Phase::Recording;
            let clears = matches!(&ev, Event::Bridged { agent } if agent == "PJSIP/anna");
            let join = ev == Event::JoinedBridge;
            let (_, actions) = c.on(ev);
            if joined && !clears {
                prop_assert!(!actions.contains(&Action::Unmute), "unmuted during a transfer: {actions:?}");
            }
            if join && was_recording {
                let already = std::mem::replace(&mut joined, true);
                if !already && !c.paused() {
                    prop_assert_eq!(actions.first(), Some(&Action::Mute), "the join mutes first");
                }
            }
            if clears && was_recording {
                joined = false;
            }
            if c.phase() != Phase::Recording {
                joined = false;
            }
        }
    }
}

fn recording_call(max_per_agent: u64) -> Call {
    let mut p = (*profile(100, 0)).clone();
    p.max_per_agent = max_per_agent;
    let mut c = new_call(Arc::new(p));
    c.on(Event::Start);
    c.on(Event::PromptDone(PromptOutcome::Completed));
    c.on(Event::Bridged { agent: "PJSIP/anna".into() });
    if max_per_agent > 0 {
        c.on(Event::CapChecked {
            agent: "PJSIP/anna".into(),
            period: "2026-W47".into(),
            outcome: CapOutcome::Reserved { count: 1 },
        });
    }
    c.on(Event::RecorderStarted { file: "f".into(), now_ms: 0 });
    assert_eq!(c.phase(), Phase::Recording);
    c
}

#[test]
fn a_transfer_mutes_at_the_join_and_a_never_recorded_agent_stops_the_recording() {
    let mut c = recording_call(0);
    let (_, a) = c.on(Event::JoinedBridge);
    assert_eq!(a, vec![Action::Mute, Action::FindAgent]);
    let (_, a) = c.on(Event::Bridged { agent: "Local/rep@agents".into() });
    assert_eq!(events(&a), vec!["agent_vetoed"]);
    assert!(a.contains(&Action::StopRecorder) && !a.contains(&Action::Unmute), "{a:?}");
    assert_eq!(c.phase(), Phase::Stopped);
}

#[test]
fn a_transfer_to_a_cleared_agent_unmutes_with_its_tone() {
    let mut c = recording_call(0);
    c.on(Event::JoinedBridge);
    let (_, a) = c.on(Event::Bridged { agent: "PJSIP/ben".into() });
    assert_eq!(a.first(), Some(&Action::Unmute), "{a:?}");
    assert!(a.contains(&Action::ToneToAgent("440/150".into())));
    assert_eq!(c.agent(), Some("PJSIP/ben"));
}

#[test]
fn a_transfer_takes_the_new_agents_cap_reservation() {
    let mut c = recording_call(2);
    c.on(Event::JoinedBridge);
    let (_, a) = c.on(Event::Bridged { agent: "PJSIP/ben".into() });
    assert_eq!(
        a,
        vec![Action::ReserveCap {
            agent: "PJSIP/ben".into(),
            period: CapPeriod::Week,
            period_max: 2
        }]
    );
    let (_, a) = c.on(Event::CapChecked {
        agent: "PJSIP/ben".into(),
        period: "2026-W47".into(),
        outcome: CapOutcome::Reached { count: 2 },
    });
    assert_eq!(events(&a), vec!["agent_vetoed"]);
    let Some(Action::Audit { facts, .. }) = a.iter().find(|x| matches!(x, Action::Audit { .. }))
    else {
        panic!("{a:?}")
    };
    assert_eq!(
        (facts["after"].as_str(), facts["agent"].as_str()),
        (Some("transfer"), Some("PJSIP/ben"))
    );
    assert!(a.contains(&Action::StopRecorder) && !a.contains(&Action::Unmute));

    let mut c = recording_call(2);
    c.on(Event::JoinedBridge);
    c.on(Event::Bridged { agent: "PJSIP/ben".into() });
    let (_, a) = c.on(Event::CapChecked {
        agent: "PJSIP/ben".into(),
        period: "2026-W47".into(),
        outcome: CapOutcome::Reserved { count: 1 },
    });
    assert_eq!(events(&a), vec!["agent_cleared"]);
    assert!(a.contains(&Action::Unmute));
}

#[test]
fn a_pause_during_a_transfer_stays_a_pause() {
    let mut c = recording_call(0);
    c.on(Event::JoinedBridge);
    c.on(Event::Control {
        cmd: Command::Pause,
        source: Source::Ami,
        actor: String::new(),
        now_ms: 10,
    });
    let (_, a) = c.on(Event::Bridged { agent: "PJSIP/ben".into() });
    assert!(!a.contains(&Action::Unmute), "{a:?}");
    assert!(c.paused());
    let (_, a) = c.on(Event::Control {
        cmd: Command::Resume,
        source: Source::Ami,
        actor: String::new(),
        now_ms: 20,
    });
    assert!(a.contains(&Action::Unmute));
}

#[test]
fn a_controls_line_names_who_acted() {
    let mut c = recording_call(0);
    let (_, a) = c.on(Event::Control {
        cmd: Command::Pause,
        source: Source::Ami,
        actor: "AMI Channel: PJSIP/anna-0001".into(),
        now_ms: 5,
    });
    let Some(Action::Audit { facts, .. }) =
        a.iter().find(|x| matches!(x, Action::Audit { event: AuditEvent::Paused, .. }))
    else {
        panic!("{a:?}")
    };
    assert_eq!(facts["actor"], "AMI Channel: PJSIP/anna-0001");
    assert_eq!(facts["agent"], "PJSIP/anna");
}

#[test]
fn a_refusal_mutes_before_anything_else_even_when_held_digits_expire_in_the_same_frame() {
    // Found by the fuzzer: an agent's held `*` times out on the frame of the caller's 9.
    let mut c = recording_call(0);
    c.on(Event::Dtmf { dir: Dir::Agent, press: Press::Begin, digit: '*', len_ms: 0, now_ms: 0 });
    let (_, a) = c.on(Event::Dtmf {
        dir: Dir::Caller,
        press: Press::Begin,
        digit: '9',
        len_ms: 0,
        now_ms: 10_000,
    });
    let mute = a.iter().position(|x| *x == Action::Mute).expect("muted");
    let audit = a
        .iter()
        .position(|x| matches!(x, Action::Audit { event: AuditEvent::OptOut, .. }))
        .expect("audited");
    assert!(mute < audit, "{a:?}");
    assert_eq!(a.first(), Some(&Action::SendToCaller("*".into())), "{a:?}");
}

#[test]
fn a_flood_of_caller_keys_cannot_hold_back_the_opt_out() {
    let mut c = in_state("recording");
    let mut dropped = 0;
    for i in 0..3000u64 {
        let d = b"12345678*#0"[(i % 11) as usize] as char;
        for press in [Press::Begin, Press::End] {
            let (v, a) = c.on(Event::Dtmf {
                dir: Dir::Caller,
                press,
                digit: d,
                len_ms: 0,
                now_ms: 1000 + i,
            });
            assert!(a.is_empty(), "a caller's key {d} did something: {a:?}");
            dropped += (v == Verdict::Drop) as u32;
        }
    }
    assert!(dropped > 5000, "the flood went on to the PBX: {dropped} frames dropped");
    // The 9 right after the flood, while a flooded key is still being relayed, acts at once.
    let (v, a) = c.on(Event::Dtmf {
        dir: Dir::Caller,
        press: Press::Begin,
        digit: '9',
        len_ms: 0,
        now_ms: 1000 + 3000,
    });
    assert_eq!(v, Verdict::Drop);
    assert_eq!(a.first(), Some(&Action::Mute), "{a:?}");
    assert!(
        a.iter().any(|x| matches!(x, Action::Audit { event: AuditEvent::OptOut, .. })),
        "{a:?}"
    );
    let (_, a) = c.on(Event::Hangup);
    let ended = a
        .iter()
        .find_map(|x| match x {
            Action::Audit { event: AuditEvent::CallEnded, facts } => Some(facts.clone()),
            _ => None,
        })
        .expect("call_ended");
    assert!(ended["keys_dropped"].as_u64().is_some_and(|n| n > 2000), "{ended:?}");
}

// ---- secure card entry (issue 16) ----

fn secure_profile(share: u8) -> Arc<Profile> {
    let mut p = (*profile(share, 0)).clone();
    p.secure_gosub = Some("pay,s,1".into());
    p.secure_max_digits = 19;
    Arc::new(p)
}

fn key(c: &mut Call, dir: Dir, k: char, now_ms: u64) -> (Verdict, Vec<Action>) {
    let (v1, mut a) = c.on(Event::Dtmf { dir, press: Press::Begin, digit: k, len_ms: 0, now_ms });
    let (v2, a2) =
        c.on(Event::Dtmf { dir, press: Press::End, digit: k, len_ms: 100, now_ms: now_ms + 100 });
    a.extend(a2);
    assert_eq!(v1, v2, "BEGIN and END of {k} meet the same verdict");
    (v1, a)
}

fn recording_secure_call(share: u8) -> Call {
    let mut c = Call::new(secure_profile(share), K, "1763800000.7", "0299000000", "");
    c.on(Event::Start);
    c.on(Event::PromptDone(PromptOutcome::Completed));
    c.on(Event::Bridged { agent: "PJSIP/anna".into() });
    c.on(Event::RecorderStarted { file: "/spool/cc-1.wav".into(), now_ms: 1000 });
    c
}

fn secure_digits(a: &[Action]) -> Option<String> {
    a.iter().find_map(|x| {
        if let Action::SecureDigits(d) = x {
            Some(d.expose().to_string())
        } else {
            None
        }
    })
}

#[test]
fn a_secure_entry_mutes_masks_and_hands_the_digits_over_once() {
    let mut c = recording_secure_call(100);
    // The agent's *4: muted in that frame, the start tone, the audit line.
    let (v, _) = key(&mut c, Dir::Agent, '*', 2000);
    assert_eq!(v, Verdict::Drop);
    let (v, a) = key(&mut c, Dir::Agent, '4', 2200);
    assert_eq!(v, Verdict::Drop, "the code is never heard by the caller");
    assert_eq!(a.first(), Some(&Action::Mute));
    assert!(events(&a).contains(&"secure_entry_started"));
    assert!(a.contains(&Action::ToneToAgent("600/100".into())));
    assert!(c.in_secure_entry() && c.wants_ticks());
    assert_eq!(c.state_name(), "secure_entry");
    // 16 digits, the opt-out key among them: each swallowed, a mask tone each, no opt-out.
    let card = "4111119111111111";
    let mut t = 3000;
    for d in card.chars() {
        let (v, a) = key(&mut c, Dir::Caller, d, t);
        assert_eq!(v, Verdict::Drop, "{d} reaches the agent");
        assert_eq!(
            a.iter().filter(|x| **x == Action::ToneToAgent("800/60".into())).count(),
            1,
            "{d}: {a:?}"
        );
        assert!(
            !events(&a).contains(&"opt_out"),
            "the opt-out key is a card digit during an entry"
        );
        assert!(!a.iter().any(|x| matches!(
            x,
            Action::StopAndDelete { .. } | Action::Unmute | Action::SendToCaller(_)
        )));
        t += 300;
    }
    // The agent's keys pass during an entry (no code counts, the pause code neither).
    assert_eq!(key(&mut c, Dir::Agent, '*', t).0, Verdict::Pass);
    let (v, a) = key(&mut c, Dir::Caller, '#', t + 300);
    assert_eq!(v, Verdict::Drop);
    assert_eq!(a.first(), Some(&Action::Unmute));
    let ended = a
        .iter()
        .find_map(|x| {
            if let Action::Audit { event: AuditEvent::SecureEntryEnded, facts } = x {
                Some(facts.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!((ended["reason"].as_str(), ended["digits"].as_u64()), (Some("end_key"), Some(16)));
    assert!(
        !serde_json::Value::Object(ended).to_string().contains("4111"),
        "no digit in the audit line"
    );
    assert_eq!(secure_digits(&a).as_deref(), Some(card));
    assert!(!format!("{a:?}").contains("4111"), "no digit in a debug print of the actions");
    // The opt-out key is the caller's again.
    let (_, a) = key(&mut c, Dir::Caller, '9', t + 2000);
    assert!(events(&a).contains(&"opt_out"));
}

#[test]
fn the_entry_is_a_span_of_the_pause_tags_and_ends_at_the_maximum_or_the_timeout() {
    let mut c = recording_secure_call(100);
    c.on(Event::Control {
        cmd: Command::Secure,
        source: Source::Ami,
        actor: "AMI Channel: PJSIP/anna".into(),
        now_ms: 3000,
    });
    assert!(c.in_secure_entry());
    let mut last = vec![];
    for (i, d) in "1234567890123456789".chars().enumerate() {
        last = key(&mut c, Dir::Caller, d, 4000 + i as u64 * 200).1;
    }
    let ended = events(&last);
    assert!(
        ended.contains(&"secure_entry_ended") && !c.in_secure_entry(),
        "ends at secure_max_digits"
    );
    assert_eq!(secure_digits(&last).map(|d| d.len()), Some(19));
    let (_, a) = c.on(Event::Hangup);
    let keep = a
        .iter()
        .find_map(|x| {
            if let Action::Keep { pauses, spans } = x {
                Some((*pauses, spans.clone()))
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(keep.0, 1);
    assert!(keep.1.starts_with("2000-"), "{keep:?}");
    // The timeout: ticks end it and unmute.
    let mut c = recording_secure_call(100);
    c.on(Event::Control {
        cmd: Command::Secure,
        source: Source::Ami,
        actor: String::new(),
        now_ms: 3000,
    });
    key(&mut c, Dir::Caller, '9', 4000);
    let (_, a) = c.on(Event::Tick { now_ms: 3000 + 59_999 });
    assert!(a.is_empty() && c.in_secure_entry());
    let (_, a) = c.on(Event::Tick { now_ms: 3000 + 60_000 });
    assert_eq!(a.first(), Some(&Action::Unmute));
    assert_eq!(secure_digits(&a).as_deref(), Some("9"));
    let ended = a
        .iter()
        .find_map(|x| {
            if let Action::Audit { event: AuditEvent::SecureEntryEnded, facts } = x {
                Some(facts.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(ended["reason"], "timeout");
}

#[test]
fn a_secure_entry_works_on_an_unrecorded_call_and_a_hangup_drops_the_digits() {
    // Not selected: watched anyway when the profile offers secure entry.
    let mut c = Call::new(secure_profile(0), K, "1763800000.7", "0299000000", "");
    c.on(Event::Start);
    let (_, a) = c.on(Event::PromptDone(PromptOutcome::Completed));
    assert!(a.contains(&Action::Watch), "{a:?}");
    let (_, a) = c.on(Event::JoinedBridge);
    assert!(a.contains(&Action::FindAgent));
    c.on(Event::Bridged { agent: "PJSIP/anna".into() });
    key(&mut c, Dir::Agent, '*', 100);
    let (_, a) = key(&mut c, Dir::Agent, '4', 300);
    assert!(!a.contains(&Action::Mute), "nothing to mute");
    let started = a
        .iter()
        .find_map(|x| {
            if let Action::Audit { event: AuditEvent::SecureEntryStarted, facts } = x {
                Some(facts.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(started["agent"], "PJSIP/anna");
    assert_eq!(key(&mut c, Dir::Caller, '5', 500).0, Verdict::Drop);
    let (_, a) = c.on(Event::Hangup);
    assert!(secure_digits(&a).is_none(), "no gosub after a hangup");
    let ended = a
        .iter()
        .find_map(|x| {
            if let Action::Audit { event: AuditEvent::SecureEntryEnded, facts } = x {
                Some(facts.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!((ended["reason"].as_str(), ended["digits"].as_u64()), (Some("hangup"), Some(1)));
    // Without secure_gosub unselected calls are not watched (nothing to start an entry on), but
    // a recorded call still offers the entry: the digits are masked, and dropped at its end.
    let mut c = in_state("not_recording");
    assert_eq!(key(&mut c, Dir::Agent, '*', 0).0, Verdict::Pass);
    let mut c = in_state("recording");
    key(&mut c, Dir::Agent, '*', 0);
    let (_, a) = key(&mut c, Dir::Agent, '4', 200);
    assert!(events(&a).contains(&"secure_entry_started") && a.contains(&Action::Mute), "{a:?}");
}

#[test]
fn a_caller_who_refused_during_the_notice_can_still_pay_unheard() {
    // Found in review: an opt-out during the notice left the call unwatched, so the agent
    // would have heard the card digits.
    for outcome in [PromptOutcome::Key('9'), PromptOutcome::Missing] {
        let mut c = Call::new(secure_profile(100), K, "1763800000.7", "0299000000", "");
        c.on(Event::Start);
        let (_, a) = c.on(Event::PromptDone(outcome.clone()));
        assert!(a.contains(&Action::Watch), "{outcome:?}: {a:?}");
        c.on(Event::JoinedBridge);
        c.on(Event::Bridged { agent: "PJSIP/anna".into() });
        key(&mut c, Dir::Agent, '*', 100);
        key(&mut c, Dir::Agent, '4', 300);
        assert!(c.in_secure_entry(), "{outcome:?}");
        assert_eq!(key(&mut c, Dir::Caller, '4', 500).0, Verdict::Drop);
        let (_, a) = key(&mut c, Dir::Caller, '#', 800);
        assert_eq!(secure_digits(&a).as_deref(), Some("4"));
    }
}

#[test]
fn a_pause_or_a_transfer_never_unmutes_an_entry() {
    let mut c = recording_secure_call(100);
    c.on(Event::Control {
        cmd: Command::Secure,
        source: Source::Ami,
        actor: String::new(),
        now_ms: 2000,
    });
    let (_, a) = c.on(Event::Control {
        cmd: Command::Resume,
        source: Source::Ami,
        actor: String::new(),
        now_ms: 2100,
    });
    assert!(a.is_empty(), "{a:?}");
    c.on(Event::JoinedBridge);
    let (_, a) = c.on(Event::Bridged { agent: "PJSIP/bob".into() });
    assert!(
        !a.contains(&Action::Unmute),
        "the new agent is cleared, the card entry goes on muted: {a:?}"
    );
    let (_, a) = key(&mut c, Dir::Caller, '#', 3000);
    assert!(a.contains(&Action::Unmute));
}

proptest! {
    /// Whatever the keys and controls, no Unmute happens while an entry runs, and no digit keyed
    /// during an entry reaches the agent.
    #[test]
    fn nothing_unmutes_or_leaks_during_an_entry(ops in proptest::collection::vec((0u8..6, 0usize..16), 1..80)) {
        let mut c = recording_secure_call(100);
        let mut now = 2000;
        for (op, k) in ops {
            now += 150;
            let digit = KEYS.chars().nth(k).unwrap_or('1');
            let was_secure = c.in_secure_entry();
            let (v, a) = match op {
                0 => key(&mut c, Dir::Caller, digit, now),
                1 => key(&mut c, Dir::Agent, digit, now),
                2 => c.on(Event::Control { cmd: Command::Secure, source: Source::Ami, actor: String::new(), now_ms: now }),
                3 => c.on(Event::Control { cmd: Command::Resume, source: Source::Ami, actor: String::new(), now_ms: now }),
                4 => c.on(Event::Control { cmd: Command::Pause, source: Source::Ami, actor: String::new(), now_ms: now }),
                _ => c.on(Event::Tick { now_ms: now }),
            };
            if was_secure && c.in_secure_entry() {
                prop_assert!(!a.contains(&Action::Unmute), "unmuted during an entry: {a:?}");
            }
            if was_secure && op == 0 {
                prop_assert_eq!(v, Verdict::Drop);
                prop_assert!(!a.iter().any(|x| matches!(x, Action::SendToCaller(_))));
            }
        }
    }
}

/// Issue 23: an agent behind FreeSWITCH's loopback endpoint (`send_dtmf *1`): the keys reach
/// the module only once relayed to the caller. The codes still act, muted from their first key,
/// and nothing is held back or sent again.
#[test]
fn relayed_agent_keys_act_as_codes_and_are_never_sent_again() {
    let relayed =
        |c: &mut Call, digit: char, now_ms: u64| c.on(Event::AgentKeyRelayed { digit, now_ms });
    let mut c = in_state("recording");
    let (v, a) = relayed(&mut c, '*', 0);
    assert_eq!((v, a), (Verdict::Pass, vec![Action::Mute]), "muted at the code's first key");
    assert!(c.wants_ticks());
    let (_, a) = relayed(&mut c, '1', 60);
    assert!(c.paused() && events(&a).contains(&"paused"), "{a:?}");
    assert!(!a.contains(&Action::Unmute), "{a:?}");
    let (_, a) = relayed(&mut c, '*', 1000);
    assert!(a.is_empty(), "paused: the '*' changes nothing: {a:?}");
    let (_, a) = relayed(&mut c, '2', 1060);
    assert!(!c.paused() && a.contains(&Action::Unmute) && events(&a).contains(&"resumed"), "{a:?}");
    // No code: the audio comes back, nothing is sent to the caller (it heard the keys).
    let (_, a) = relayed(&mut c, '*', 2000);
    assert_eq!(a, vec![Action::Mute]);
    let (_, a) = relayed(&mut c, '5', 2060);
    assert_eq!(a, vec![Action::Unmute]);
    // A lone '*': unmuted when the code times out, nothing released.
    relayed(&mut c, '*', 3000);
    let (_, a) = c.on(Event::Tick { now_ms: 3000 + 2500 });
    assert_eq!(a, vec![Action::Unmute]);
    assert!(!c.wants_ticks());
    // A key that ends a non-code may begin a code: '*', '*', '3' deletes.
    relayed(&mut c, '*', 6000);
    relayed(&mut c, '*', 6050);
    let (_, a) = relayed(&mut c, '3', 6100);
    assert!(a.contains(&Action::StopAndDelete { by: By::Agent }), "{a:?}");
    assert!(!a.iter().any(|x| matches!(x, Action::SendToCaller(_))), "{a:?}");
}

/// A caller's key held down as the agent starts a secure entry (its BEGIN before `*4`, its END
/// after): its END goes on to the agent (who heard its BEGIN), it is no card digit, and the
/// pacer is free afterwards. Then a card keyed at 100, 250 and 500 ms reaches the gosub whole.
/// Failed before: the gosub got "5" and the card, and every later caller key but 9 was dropped.
#[test]
fn a_key_spanning_the_start_of_an_entry_is_no_card_digit_and_frees_the_pacer() {
    let card = "4111119111111111";
    for gap in [100u64, 250, 500] {
        let len = 140.min(gap - 40);
        let mut c = recording_secure_call(100);
        let dtmf = |c: &mut Call, press, d, len_ms, now_ms| {
            c.on(Event::Dtmf { dir: Dir::Caller, press, digit: d, len_ms, now_ms })
        };
        assert_eq!(dtmf(&mut c, Press::Begin, '5', 0, 2000).0, Verdict::Pass);
        c.on(Event::Control {
            cmd: Command::Secure,
            source: Source::Ami,
            actor: String::new(),
            now_ms: 2050,
        });
        assert!(c.in_secure_entry());
        assert_eq!(dtmf(&mut c, Press::End, '5', 140, 2140).0, Verdict::Pass, "its END goes on");
        let (mut t, mut last) = (2300, vec![]);
        for d in card.chars().chain(['#']) {
            let (v1, a1) = dtmf(&mut c, Press::Begin, d, 0, t);
            let (v2, a2) = dtmf(&mut c, Press::End, d, len as u32, t + len);
            assert_eq!((v1, v2), (Verdict::Drop, Verdict::Drop), "{d} at {gap} ms");
            last = [a1, a2].concat();
            t += gap;
        }
        assert_eq!(secure_digits(&last).as_deref(), Some(card), "keys {gap} ms apart");
        t += 500;
        for d in "123".chars() {
            assert_eq!(key(&mut c, Dir::Caller, d, t).0, Verdict::Pass, "{d} after the entry");
            t += 300;
        }
    }
}
