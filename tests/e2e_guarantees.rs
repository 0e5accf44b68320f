//! Issue 10: the promises hold under crashes, bad configuration and damaged state.
mod harness;

use std::time::Duration;

use harness::*;

fn loaded(pbx: &Pbx) -> bool {
    let out = pbx.rx("module show like res_callconsent");
    out.contains("Running") && !out.contains("Not Running")
}

fn dialplan() -> String {
    let tone = sound("agent-880-30s", 880, 30.0);
    format!(
        "[test]\nexten => in,1,Answer()\n same => n,CallConsent(sales)\n same => n,Dial(Local/agent@test)\n same => n,Hangup()\n\
         exten => agent,1,Answer()\n same => n,Playback({tone})\n same => n,Hangup()\n\
         exten => dev,1,Answer()\n same => n,Wait(40)\n"
    )
}

/// R5, R12: a damaged installation secret is never replaced (past draws could no longer be
/// replayed): the module declines to load, says why, and leaves the file as it was.
#[test]
fn a_damaged_secret_declines_the_load_and_is_left_as_it_was() {
    let mut pbx = Pbx::builder("secret-short")
        .file("callconsent.conf", &consent_conf(&profile("sales", 100, "")))
        .var_file("callconsent/secret", b"short")
        .start();
    assert!(!loaded(&pbx), "loaded with a damaged secret");
    assert!(
        pbx.messages().contains("the installation secret is damaged (5 bytes, 32 expected)"),
        "{}",
        pbx.logs()
    );
    assert_eq!(std::fs::read(pbx.path("db/callconsent/secret")).unwrap(), b"short");
    pbx.assert_alive();
}

/// The draw's lines name the key that replays them.
#[test]
fn selection_lines_carry_the_key_id() {
    let mut pbx = Pbx::builder("key-id")
        .file("callconsent.conf", &consent_conf(&profile("sales", 100, "")))
        .file("extensions.conf", &dialplan())
        .start();
    pbx.originate("Local/in@test", "dev@test");
    let selected = pbx.wait_event("selected", 1, Duration::from_secs(10));
    let key_id = selected[0]["key_id"].as_str().unwrap_or("").to_string();
    assert_eq!(key_id.len(), 8, "{selected:?}");
    assert!(
        pbx.messages().contains(&format!("(key id {key_id})")),
        "the key id of the secret made at first load is logged"
    );
    pbx.assert_alive();
}

/// Privacy by default at every start: a crash mid-call, then a restart whose configuration is
/// refused (a typo) still removes the crashed call's recording, and says so in the audit log.
#[test]
fn a_crash_then_a_refused_configuration_still_discards_the_recording() {
    let mut pbx = Pbx::builder("crash-badconf")
        .file("callconsent.conf", &consent_conf(&profile("sales", 100, "")))
        .file("extensions.conf", &dialplan())
        .start();
    pbx.originate("Local/in@test", "dev@test");
    let started = pbx.wait_event("recording_started", 1, Duration::from_secs(10));
    let file = pbx.host_path(started[0]["file"].as_str().unwrap());
    wait_until(
        &format!("the staging file {} to exist mid-call", file.display()),
        Duration::from_secs(5),
        || file.is_file(),
    );
    // The admin's edit that breaks the file lands while Asterisk is down.
    let conf = std::fs::read_to_string(pbx.path("etc/callconsent.conf"))
        .unwrap()
        .replace("record_share = 100", "record_share = 1000");
    std::fs::write(pbx.path("etc/callconsent.conf"), conf).unwrap();
    pbx.kill9_and_restart();
    assert!(!loaded(&pbx), "the broken configuration was accepted");
    assert!(pbx.messages().contains("record_share: must be a whole percentage"), "{}", pbx.logs());
    assert!(!file.exists(), "the crashed call's recording survived a refused configuration");
    let discarded = pbx.wait_event("recording_discarded", 1, Duration::from_secs(5));
    assert!(
        discarded[0]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with(file.file_name().unwrap().to_str().unwrap())),
        "{discarded:?}"
    );
    assert_eq!(pbx.spool_files(), Vec::<std::path::PathBuf>::new());
    pbx.assert_alive();
}

fn transfer_dialplan() -> String {
    format!(
        "[test]\nexten => in,1,Answer()\n same => n,CallConsent(sales)\n same => n,Dial(Local/talk@test)\n same => n,Hangup()\n\
         exten => talk,1,Answer()\n same => n,Playback({a})\n same => n,Wait(30)\n\
         exten => to-rep,1,Dial(Local/rep@test)\n\
         exten => rep,1,Answer()\n same => n,Playback({b})\n same => n,Hangup()\n\
         exten => dev,1,Wait(60)\n",
        a = sound("agent-880-2s", 880, 2.0),
        b = sound("rep-1800-2s", 1800, 2.0)
    )
}

/// R12 after a transfer: the never-recorded line's voice (a 1800 Hz tone from its first frame)
/// contributes 0 ms to the recording; the first agent's 2 s (880 Hz) are kept.
#[test]
fn a_never_recorded_line_contributes_nothing_after_a_transfer() {
    let conf = consent_conf(&profile(
        "sales",
        100,
        "start_tone = off\nnever_record = agent:Local/rep@*\n",
    ));
    let mut pbx = Pbx::builder("transfer-leak")
        .file("callconsent.conf", &conf)
        .file("extensions.conf", &transfer_dialplan())
        .start();
    let mut ami = pbx.ami();
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_event("recording_started", 1, Duration::from_secs(10));
    pbx.transfer_talker(&mut ami, "to-rep");
    let vetoed = pbx.wait_event("agent_vetoed", 1, Duration::from_secs(10));
    assert_eq!(vetoed[0]["after"], "transfer");
    pbx.wait_idle(Duration::from_secs(30));
    let kept = pbx.wait_event("recording_kept", 1, Duration::from_secs(10));
    pbx.wait_settled(1, Duration::from_secs(10));
    let samples = wav_samples(&pbx.host_path(kept[0]["file"].as_str().unwrap()));
    let (first, rep) = (tone_ms(&samples, 880.0), tone_ms(&samples, 1800.0));
    assert!(first >= 1500, "the first agent's part is kept: {first} ms of 880 Hz");
    assert_eq!(rep, 0, "the never-recorded line was recorded for {rep} ms");
    pbx.assert_alive();
}

/// Issue 10 (7): the audit log is a keyed chain whose head is published outside the file (the
/// log, an AMI event): truncating it and deleting its `.head` is caught with the published head.
#[test]
fn a_truncated_log_is_caught_by_its_published_head_and_lines_carry_a_keyed_mac() {
    let mut pbx = Pbx::builder("audit-anchor")
        .file("callconsent.conf", &consent_conf(&profile("sales", 100, "")))
        .file("extensions.conf", &dialplan())
        .start();
    let mut ami = pbx.ami();
    // At load, the head (here of an empty log) is published in Asterisk's log.
    let at_load = pbx.wait_log("the head published at load", Duration::from_secs(5), |l| {
        l.contains("callconsent: audit head ") && l.contains("(load)")
    });
    assert!(at_load.contains(" at line 0 of "), "{at_load}");
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_event("recording_started", 1, Duration::from_secs(10));
    pbx.rx("channel request hangup all");
    pbx.wait_settled(1, Duration::from_secs(15));
    // A reload publishes the head again, also as an AMI event.
    pbx.rx("callconsent reload");
    let ev = ami.wait_for(Duration::from_secs(5), |m| {
        m.get("Event").map(String::as_str) == Some("CallConsentAudit")
            && m.get("Reason").map(String::as_str) == Some("reload")
    });
    let head = ev.get("Head").cloned().unwrap_or_default();
    assert_eq!(head.len(), 64, "{ev:?}");
    let log = pbx.audit_path();
    let log_s = log.to_str().unwrap().to_string();
    let secret = pbx.path("db/callconsent/secret");
    let ok = dpo_tool(&[
        "audit",
        "verify",
        "--key",
        secret.to_str().unwrap(),
        "--anchor",
        &head,
        &log_s,
    ]);
    let out = String::from_utf8_lossy(&ok.stdout).to_string();
    assert!(
        ok.status.success()
            && out.contains("chain intact")
            && out.contains("carry a valid keyed MAC")
            && out.contains("1 published head(s) found"),
        "{ok:?}"
    );
    // Someone cuts the log before the call and deletes .head: what is left chains...
    let text = std::fs::read_to_string(&log).unwrap();
    let first: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, &first).unwrap();
    std::fs::remove_file(pbx.path("log/callconsent/audit.jsonl.head")).unwrap();
    // ...but the missing .head is not skipped, and the published head is not in it.
    let bad = dpo_tool(&["audit", "verify", &log_s]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stdout).contains(".head file is missing"), "{bad:?}");
    let bad = dpo_tool(&["audit", "verify", "--anchor", &head, &log_s]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("is not in the log: lines were removed"),
        "{bad:?}"
    );
    pbx.assert_alive();
}

/// `callconsent show status`: the audit log's health at a glance.
#[test]
fn show_status_tells_the_audit_log_state() {
    let pbx = Pbx::builder("show-status")
        .file("callconsent.conf", &consent_conf(&profile("sales", 100, "")))
        .file("extensions.conf", &dialplan())
        .start();
    pbx.originate("Local/in@test", "dev@test");
    let selected = pbx.wait_event("selected", 1, Duration::from_secs(10));
    pbx.wait_event("recording_started", 1, Duration::from_secs(10));
    let out = wait_for("show status to count the call's lines", Duration::from_secs(5), || {
        let out = pbx.rx("callconsent show status");
        if out.contains("Lines written:  0 since load") {
            Err(out)
        } else {
            Ok(out)
        }
    });
    assert!(out.contains("Audit writes:   ok"), "{out}");
    assert!(
        out.contains(&format!("Key id:         {}", selected[0]["key_id"].as_str().unwrap_or("?"))),
        "{out}"
    );
    assert!(out.contains("Live calls:     1"), "{out}");
}

/// Issue 23 (4): as above, with the caller on PJSIP (sipp, its audio steady from the answer on)
/// and the agent on a Local channel, blind-transferred over AMI to a never-recorded line that
/// speaks from its first frame: 0 ms of it in the recording, in 3 calls of 3.
#[test]
fn a_never_recorded_line_contributes_nothing_after_a_transfer_from_a_sip_caller() {
    let conf = consent_conf(&profile(
        "sales",
        100,
        "start_tone = off\nnever_record = agent:Local/rep@*\n",
    ));
    // The caller stays after the line hangs up (sipp hangs up itself, at 9 s).
    let dialplan = transfer_dialplan().replace(
        "exten => to-rep,1,Dial(Local/rep@test)\n",
        "exten => to-rep,1,Dial(Local/rep@test,,g)\n same => n,Wait(30)\n",
    );
    let pbx = Pbx::builder("transfer-leak-sip")
        .sip()
        .file("callconsent.conf", &conf)
        .file("extensions.conf", &dialplan)
        .start();
    let mut ami = pbx.ami();
    let caller = harness::pcap::rtp_pcap(&[harness::pcap::Part::Silence { ms: 9000 }]);
    std::fs::write(pbx.path("sounds/flood-caller.pcap"), caller)
        .expect("write the caller's capture");
    let scenario = std::fs::read_to_string(project_dir().join("tests/sipp/flood-dtmf-caller.xml"))
        .expect("read the caller's scenario")
        .replace("{PLAY_MS}", "9000");
    for n in 1..=3 {
        std::thread::scope(|s| {
            let call = s.spawn(|| pbx.sipp(&scenario, &["-s", "in"]));
            pbx.wait_event("recording_started", n, Duration::from_secs(10));
            pbx.transfer_talker(&mut ami, "to-rep");
            let out = call.join().expect("the caller's thread");
            assert!(out.status.success(), "sipp: {}", String::from_utf8_lossy(&out.stderr));
        });
        pbx.wait_settled(n, Duration::from_secs(20));
    }
    let kept = pbx.wait_event("recording_kept", 3, Duration::from_secs(10));
    let leaks: Vec<u32> = kept
        .iter()
        .map(|k| tone_ms(&wav_samples(&pbx.host_path(k["file"].as_str().unwrap_or(""))), 1800.0))
        .collect();
    assert_eq!(leaks, vec![0, 0, 0], "ms of the never-recorded line in each recording");
}
