//! A real SIP caller (sipp, RFC 4733 DTMF) opts out mid-call (R3).
mod harness;

use std::time::Duration;

use harness::*;

#[test]
fn sip_caller_opts_out_with_an_rfc4733_digit() {
    let conf = consent_conf(&profile("always", 100, "record_legs = yes"));
    let dialplan = format!(
        "[test]\nexten => in,1,Answer()\n same => n,CallConsent(always)\n same => n,Dial(Local/agent@test)\n\
         exten => agent,1,Answer()\n same => n,Playback({})\n same => n,Wait(30)\n",
        sound("agent-880", 880, 3.0)
    );
    let mut pbx = Pbx::builder("sip")
        .sip()
        .file("callconsent.conf", &conf)
        .file("extensions.conf", &dialplan)
        .start();
    let scenario = std::fs::read_to_string(project_dir().join("tests/sipp/optout-9.xml"))
        .expect("read the scenario");
    let out = pbx.sipp(&scenario, &[]);
    assert!(
        out.status.success(),
        "sipp failed ({}):\n{}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(pbx.path("log/sipp-errors.log")).unwrap_or_default()
    );
    let started = pbx.wait_event("recording_started", 1, Duration::from_secs(5));
    assert!(started[0]["channel"].as_str().unwrap().starts_with("PJSIP/sipp-"));
    let opt = pbx.wait_event("opt_out", 1, Duration::from_secs(5));
    assert_eq!(opt[0]["during"], "call");
    assert_eq!(opt[0]["key"], "9");
    let deleted = pbx.wait_event("recording_deleted", 1, Duration::from_secs(5));
    pbx.wait_idle(Duration::from_secs(10));
    // The later looks for the call's files (after hangup) are done once the call has settled.
    let settled = pbx.wait_settled(1, Duration::from_secs(15));
    assert_eq!(settled[0]["call"], deleted[0]["call"]);
    assert_eq!(pbx.wait_event("call_ended", 1, Duration::from_secs(1))[0]["outcome"], "opted_out");
    assert_eq!(
        pbx.spool_files(),
        Vec::<std::path::PathBuf>::new(),
        "files of a refused SIP call remain"
    );
    pbx.assert_alive();
}
