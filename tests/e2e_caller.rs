//! The caller's path on a real Asterisk (R1, R2, R3, R13): notice, full notice, opt-out during
//! the notice and mid-call, and a kept recording.
mod harness;

use std::time::Duration;

use harness::*;

/// Dialplan: `in-<profile>` is the PBX's caller channel; `dev-*` scripts the caller's phone;
/// `agent` answers and plays an 880 Hz tone.
fn dialplan(devices: &str) -> String {
    let mut d = String::from("[test]\n");
    for p in ["always", "never", "share20", "nosuch"] {
        d.push_str(&format!(
            "exten => in-{p},1,Answer()\n same => n,CallConsent({p})\n same => n,NoOp(CCSTATUS=${{CALLCONSENT_STATUS}})\n \
             same => n,Dial(Local/agent@test)\n same => n,Hangup()\n"
        ));
    }
    d.push_str(&format!(
        "exten => agent,1,Answer()\n same => n,Playback({})\n same => n,Wait(30)\n",
        sound("agent-880", 880, 3.0)
    ));
    d.push_str(devices);
    d
}

fn start(name: &str, devices: &str) -> Pbx {
    let profiles = [
        profile("always", 100, "record_legs = yes"),
        profile("never", 0, ""),
        profile("share20", 20, ""),
    ]
    .join("\n");
    Pbx::builder(name)
        .file("callconsent.conf", &consent_conf(&profiles))
        .file("extensions.conf", &dialplan(devices))
        .start()
}

fn status_of(pbx: &Pbx) -> Vec<String> {
    pbx.messages()
        .lines()
        .filter_map(|l| l.split("CCSTATUS=").nth(1))
        .map(|s| s.split('"').next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn kept_recording_has_audio_and_full_audit_trail() {
    let caller = sound("caller-440", 440, 2.0);
    let mut pbx = start("kept", &format!("exten => dev,1,Wait(1.5)\n same => n,Playback({caller})\n same => n,Wait(1)\n same => n,Hangup()\n"));
    pbx.originate("Local/in-always@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(20));
    let kept = pbx.wait_event("recording_kept", 1, Duration::from_secs(5));
    // The call's work is over (the legs moved too) before anything is said about what is left.
    let settled = pbx.wait_settled(1, Duration::from_secs(10));
    assert_eq!(settled[0]["call"], kept[0]["call"]);
    let file = kept[0]["file"].as_str().expect("recording_kept names its file").to_string();
    let host = pbx.host_path(&file);
    assert!(host.is_file(), "kept recording {file} is missing");
    // Kept means moved out of staging into the dated tree, readable by the group only (R11).
    assert!(file.contains("/spool/callconsent/kept/20"), "{file}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&host).unwrap().permissions().mode() & 0o777, 0o640);
    assert_eq!(
        std::fs::metadata(host.parent().unwrap()).unwrap().permissions().mode() & 0o777,
        0o750
    );
    assert!(
        pbx.spool_files().iter().all(|f| !f.display().to_string().contains("/staging/")),
        "staging not empty"
    );
    assert!(rms(&host, 0.0, 10.0) > 0.05, "the recording holds no audio");
    // The file was kept only once MixMonitor had closed it: the audit log's length is the file's.
    let ms = kept[0]["duration_ms"].as_u64().unwrap() as f32;
    assert!(
        (duration(&host) * 1000.0 - ms).abs() < 50.0,
        "audit {ms} ms, file {} s",
        duration(&host)
    );
    let events = pbx.events();
    for e in [
        "selected",
        "notice_played",
        "recording_started",
        "recording_kept",
        "call_ended",
        "call_settled",
    ] {
        assert!(events.iter().any(|x| x == e), "no {e} in {events:?}");
    }
    let audit = pbx.audit();
    for line in &audit {
        assert!(
            line["ts"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() == 24),
            "ts: {line}"
        );
        assert!(line["call"].as_str().is_some_and(|c| !c.is_empty()), "call: {line}");
        assert!(
            line["channel"].as_str().is_some_and(|c| c.starts_with("Local/in-always@test")),
            "channel: {line}"
        );
    }
    let notice = audit.iter().find(|v| v["event"] == "notice_played").unwrap();
    assert_eq!(notice["outcome"], "completed");
    let selected = audit.iter().find(|v| v["event"] == "selected").unwrap();
    assert_eq!(selected["legal_basis"], "test: recording every call of this test profile");
    assert_eq!(status_of(&pbx), vec!["RECORDING"]);
    assert_eq!(
        callconsent_runtime::audit::verify(&std::fs::read_to_string(pbx.audit_path()).unwrap()),
        Ok(audit.len())
    );
    pbx.assert_alive();
}

#[test]
fn optout_during_notice_records_nothing() {
    let mut pbx = start("notice-optout", "exten => dev,1,Wait(0.4)\n same => n,SendDTMF(9)\n same => n,Wait(3)\n same => n,Hangup()\n");
    pbx.originate("Local/in-always@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(20));
    let opt = pbx.wait_event("opt_out", 1, Duration::from_secs(5));
    assert_eq!(opt[0]["during"], "notice");
    // CallConsent() returned (its status is set) and the call is gone: a call refused during the
    // notice was never armed, so nothing of it is left to run. Its whole trail is the draw, the
    // interrupted notice and the refusal: no recording, no call_ended, no call_settled.
    assert_eq!(status_of(&pbx), vec!["OPTED_OUT"]);
    let events = pbx.events();
    assert!(
        !events.iter().any(|e| e == "recording_started"),
        "recording started after an opt-out: {events:?}"
    );
    assert_eq!(
        events,
        vec!["selected", "notice_played", "opt_out"],
        "a call refused during the notice is never armed"
    );
    assert_eq!(
        pbx.wait_event("notice_played", 1, Duration::from_secs(1))[0]["outcome"],
        "interrupted"
    );
    assert_eq!(pbx.spool_files(), Vec::<std::path::PathBuf>::new());
    pbx.assert_alive();
}

#[test]
fn optout_mid_call_deletes_every_file_and_agent_never_gets_the_digit() {
    let caller = sound("caller-440-1s", 440, 1.0);
    let mut pbx = start(
        "call-optout",
        &format!(
            "exten => dev,1,Wait(1.5)\n same => n,Playback({caller})\n same => n,SendDTMF(9)\n same => n,Wait(1.5)\n \
             same => n,SendDTMF(5)\n same => n,Wait(1.5)\n same => n,Hangup()\n"
        ),
    );
    let mut ami = pbx.ami();
    pbx.originate("Local/in-always@test", "dev@test");
    let started = pbx.wait_event("recording_started", 1, Duration::from_secs(10));
    let file = started[0]["file"].as_str().unwrap().to_string();
    pbx.wait_idle(Duration::from_secs(20));
    let opt = pbx.wait_event("opt_out", 1, Duration::from_secs(5));
    assert_eq!(opt[0]["during"], "call");
    let deleted = pbx.wait_event("recording_deleted", 1, Duration::from_secs(5));
    assert_eq!(deleted[0]["by"], "caller");
    assert!(
        deleted[0]["files"].as_array().is_some_and(|f| f.iter().any(|x| x == file.as_str())),
        "{deleted:?}"
    );
    // The later looks for the call's files (0, 1 and 5 s after hangup) are done once the call
    // has settled; then nothing of the call is on disk.
    let settled = pbx.wait_settled(1, Duration::from_secs(15));
    assert_eq!(settled[0]["call"], deleted[0]["call"]);
    assert_eq!(
        pbx.spool_files(),
        Vec::<std::path::PathBuf>::new(),
        "files of a refused call remain"
    );
    let ended = pbx.wait_event("call_ended", 1, Duration::from_secs(2));
    assert_eq!(ended[0]["outcome"], "opted_out");
    // What reached the agent's side: the 5, never the 9.
    let digits: Vec<String> = ami
        .events()
        .iter()
        .filter(|m| m.get("Event").map(String::as_str) == Some("DTMFEnd"))
        .filter(|m| m.get("Channel").is_some_and(|c| c.starts_with("Local/agent@test")))
        .filter(|m| m.get("Direction").map(String::as_str) == Some("Received"))
        .filter_map(|m| m.get("Digit").cloned())
        .collect();
    assert!(digits.contains(&"5".to_string()), "the agent should receive the 5: {digits:?}");
    assert!(!digits.contains(&"9".to_string()), "the agent received the opt-out key: {digits:?}");
    pbx.assert_alive();
}

#[test]
fn info_key_plays_the_full_notice() {
    let mut pbx = start("info", "exten => dev,1,Wait(0.4)\n same => n,SendDTMF(0)\n same => n,Wait(4)\n same => n,Hangup()\n");
    pbx.originate("Local/in-always@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(20));
    let info = pbx.wait_event("info_played", 1, Duration::from_secs(5));
    assert_eq!(info[0]["outcome"], "completed");
    assert!(info[0]["prompt"].as_str().unwrap().ends_with("full-notice"));
    let notice = pbx.wait_event("notice_played", 1, Duration::from_secs(1));
    assert_eq!(notice[0]["outcome"], "interrupted");
    // The call goes on: the recording starts after the full notice.
    pbx.wait_event("recording_started", 1, Duration::from_secs(5));
    let events = pbx.events();
    let i = events.iter().position(|e| e == "info_played").unwrap();
    let r = events
        .iter()
        .position(|e| e == "recording_started")
        .expect("recording after the full notice");
    assert!(r > i, "{events:?}");
    pbx.assert_alive();
}

#[test]
fn not_selected_call_is_not_recorded() {
    let mut pbx = start("not-selected", "exten => dev,1,Wait(3)\n same => n,Hangup()\n");
    pbx.originate("Local/in-never@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(20));
    let ns = pbx.wait_event("not_selected", 1, Duration::from_secs(5));
    assert_eq!(ns[0]["share"], 0);
    assert!(ns[0]["reason"].as_str().is_some_and(|r| r.contains("bucket")));
    // CallConsent() returned (its status is set) and the call is gone: a call not selected is
    // never armed, so nothing of it is left to run; its trail is the draw and the notice.
    assert_eq!(status_of(&pbx), vec!["NOT_SELECTED"]);
    assert!(!pbx.events().iter().any(|e| e == "recording_started"));
    pbx.wait_event("notice_played", 1, Duration::from_secs(2));
    assert_eq!(
        pbx.events(),
        vec!["not_selected", "notice_played"],
        "a call not selected is never armed"
    );
    assert_eq!(pbx.spool_files(), Vec::<std::path::PathBuf>::new());
    pbx.assert_alive();
}

#[test]
fn unknown_profile_sets_error_and_the_call_goes_on() {
    let mut pbx = start("unknown", "exten => dev,1,Wait(2)\n same => n,Hangup()\n");
    pbx.originate("Local/in-nosuch@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(20));
    assert_eq!(status_of(&pbx), vec!["ERROR"]);
    assert!(pbx.messages().contains("CallConsent(nosuch)"), "no clear message:\n{}", pbx.logs());
    assert!(
        pbx.messages().contains("Dial(\"Local/in-nosuch@test"),
        "the call did not go on to Dial"
    );
    pbx.assert_alive();
}

/// A caller who refuses while the call is still ringing or queued hears the confirmation once an
/// agent answers (no prompt can reach a caller before), and nothing is recorded.
#[test]
fn a_refusal_before_an_agent_answers_is_confirmed_on_answer() {
    let conf = consent_conf(&profile("always", 100, "start_tone = off"));
    let dialplan = "[test]\nexten => in,1,Answer()\n same => n,CallConsent(always)\n same => n,Dial(Local/slow@test)\n\
        exten => slow,1,Wait(3)\n same => n,Answer()\n same => n,Wait(4)\n same => n,Hangup()\n\
        exten => dev,1,MixMonitor({D}/dev-mix.wav,r({D}/dev-heard.wav))\n same => n,Wait(1.6)\n same => n,SendDTMF(9)\n same => n,Wait(30)\n";
    let mut pbx = Pbx::builder("queued-optout")
        .file("callconsent.conf", &conf)
        .file("extensions.conf", dialplan)
        .start();
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(30));
    let opt = pbx.wait_event("opt_out", 1, Duration::from_secs(2));
    assert_eq!(opt[0]["during"], "call");
    // The refused call was armed (it was waiting for an agent): it settles, then nothing of it
    // may have been recorded.
    let settled = pbx.wait_settled(1, Duration::from_secs(15));
    assert_eq!(settled[0]["call"], opt[0]["call"]);
    assert_eq!(pbx.wait_event("call_ended", 1, Duration::from_secs(1))[0]["outcome"], "opted_out");
    assert!(!pbx.events().iter().any(|e| e == "recording_started"), "{:?}", pbx.events());
    // The caller's phone (the dev side, Local/in@test-...;1) recorded what it heard; read it once
    // its MixMonitor has closed the file.
    pbx.wait_mixmonitor_closed("Local/in@test-", Duration::from_secs(10));
    let heard = tone_ms(&wav_samples(&pbx.path("dev-heard.wav")), 700.0);
    assert!(heard >= 400, "the caller did not hear the confirmation: {heard} ms");
    assert!(pbx.spool_files().is_empty());
    pbx.assert_alive();
}
