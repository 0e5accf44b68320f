//! The FreeSWITCH harness proved on plain FreeSWITCH (no mod_callconsent): a recorded call
//! bridged to a sipp agent, ESL events, API commands, and the autoload_configs include that
//! `write_conf` + `reloadxml` rely on.
#[path = "fs_harness/mod.rs"]
mod fs_harness;

use std::time::{Duration, Instant};

use fs_harness::pcap::{rtp_pcap, Part};
use fs_harness::*;

const REC: &str = r#"
<extension name="rec">
  <condition field="destination_number" expression="^rec$">
    <action application="answer"/>
    <action application="record_session" data="{DIR}/recordings/t-${uuid}.wav"/>
    <action application="bridge" data="sofia/callconsent/agent@127.0.0.1:{AGENT_PORT}"/>
  </condition>
</extension>
"#;

/// A caller who says 440 Hz, presses 5 (RFC 4733) and hangs up; an agent who answers, says
/// 1000 Hz later (so the two tones never overlap in the mono mix) and waits for the hang-up.
/// The recording holds both; ESL saw both legs answered; the digit reached FreeSWITCH.
#[test]
fn records_a_bridged_call_and_sees_its_events() {
    let t0 = Instant::now();
    let fs = Fs::builder("selftest-rec").without_module().dialplan(REC).start();
    let started = t0.elapsed();
    let mut esl = fs.esl();
    esl.subscribe("CHANNEL_ANSWER");

    fs.write_sound(
        "caller.pcap",
        &rtp_pcap(&[
            Part::Tone { freq: 440.0, ms: 1200 },
            Part::Digits("5".into()),
            Part::Silence { ms: 2500 },
        ]),
    );
    let mut agent = fs.agent_phone(&rtp_pcap(&[
        Part::Silence { ms: 1800 },
        Part::Tone { freq: 1000.0, ms: 1200 },
        Part::Silence { ms: 600 },
    ]));
    let t_call = Instant::now();
    fs.sipp_ok(&caller_scenario(4500), &["-s", "rec"]);
    assert!(
        agent.wait(Duration::from_secs(15)),
        "the agent's sipp failed:\n{}\n{}",
        agent.output(),
        fs.sipp_errors()
    );
    fs.wait_idle(Duration::from_secs(15));
    let call = t_call.elapsed();

    // ESL: the caller's leg (inbound, to "rec") and the agent's (outbound) were answered.
    let a = esl.wait_for(Duration::from_secs(5), |e| {
        e.get("Event-Name").is_some_and(|n| n == "CHANNEL_ANSWER")
            && e.get("Call-Direction").is_some_and(|d| d == "inbound")
    });
    assert_eq!(a.get("Caller-Destination-Number").map(String::as_str), Some("rec"), "{a:#?}");
    let uuid = a.get("Unique-ID").cloned().expect("the answered channel's Unique-ID");
    let b = esl.wait_for(Duration::from_secs(5), |e| {
        e.get("Event-Name").is_some_and(|n| n == "CHANNEL_ANSWER")
            && e.get("Call-Direction").is_some_and(|d| d == "outbound")
    });
    assert!(
        b.get("Channel-Name")
            .is_some_and(|c| c.contains(&format!("agent@127.0.0.1:{}", fs.agent_port))),
        "{b:#?}"
    );

    // The digit: FreeSWITCH logs "RECV DTMF 5:<duration>" for the caller's RFC 4733 event.
    fs.wait_log("the caller's RFC 4733 5", Duration::from_secs(5), |l| l.contains("RECV DTMF 5:"));

    // The recording: mono 8 kHz, both tones.
    let wav = fs.path(&format!("recordings/t-{uuid}.wav"));
    assert!(
        wav.is_file(),
        "no recording {}; recordings/: {:?}",
        wav.display(),
        std::fs::read_dir(fs.path("recordings"))
            .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    let samples = wav_samples(&wav);
    let (caller_ms, agent_ms) = (tone_ms(&samples, 440.0), tone_ms(&samples, 1000.0));
    eprintln!(
        "recording {}: {} ms; 440 Hz {caller_ms} ms at {:?}, 1000 Hz {agent_ms} ms at {:?}",
        wav.display(),
        samples.len() / 8,
        tone_span_ms(&samples, 440.0),
        tone_span_ms(&samples, 1000.0)
    );
    assert!(caller_ms >= 900, "the caller's 440 Hz: only {caller_ms} ms in the recording");
    assert!(agent_ms >= 900, "the agent's 1000 Hz: only {agent_ms} ms in the recording");

    let t_drop = Instant::now();
    drop(esl);
    drop(fs);
    eprintln!(
        "timing: start {:?}, call (sipp to idle) {:?}, stop {:?}, total {:?}",
        started,
        call,
        t_drop.elapsed(),
        t0.elapsed()
    );
}

/// `status` over the event socket; and a rewritten autoload_configs file is what FreeSWITCH
/// serves after `reloadxml`.
#[test]
fn api_status_and_reloadxml() {
    let t0 = Instant::now();
    let mut fs = Fs::builder("selftest-api")
        .without_module()
        .conf_xml(&default_conf(&fs_profile("inbound", 100, "")))
        .start();
    let started = t0.elapsed();
    let status = fs.api("status");
    assert!(status.contains("is ready"), "{status}");
    assert!(fs.fs_cli("status").contains("is ready"), "fs_cli -x status");
    fs.assert_alive();
    assert_eq!(fs.channels(), 0);

    let xml = fs.api("xml_locate configuration configuration name callconsent.conf");
    assert!(
        xml.contains(&format!("{}/recordings/callconsent", fs.dir.display())),
        "{{DIR}} not filled in: {xml}"
    );
    assert!(xml.contains("record_share") && xml.contains("\"100\""), "{xml}");
    fs.write_conf(
        "callconsent.conf.xml",
        &default_conf(&fs_profile("inbound", 40, "<param name=\"optout_key\" value=\"9\"/>")),
    );
    fs.reloadxml();
    let xml = fs.api("xml_locate configuration configuration name callconsent.conf");
    assert!(xml.contains("\"40\"") && xml.contains("optout_key"), "after reloadxml: {xml}");

    assert!(fs.audit().is_empty() && fs.spool_files().is_empty());
    // audit(): complete lines only, a torn last one left out; wait_event counts by "event".
    std::fs::write(
        fs.audit_path(),
        "{\"event\":\"a\"}\n{\"event\":\"b\"}\n{\"event\":\"a\",\"x\":",
    )
    .expect("write an audit log");
    assert_eq!(fs.audit().len(), 2);
    assert_eq!(fs.wait_event("a", 1, Duration::from_secs(1)).len(), 1);
    std::fs::create_dir_all(fs.spool_dir().join("2026/12")).expect("spool subdir");
    std::fs::write(fs.spool_dir().join("2026/12/x.wav"), b"").expect("spool file");
    assert_eq!(fs.spool_files(), vec![fs.spool_dir().join("2026/12/x.wav")]);
    let pid = fs.pid();
    let t_drop = Instant::now();
    drop(fs);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "freeswitch {pid} outlived its instance"
    );
    eprintln!("timing: start {started:?}, stop {:?}, total {:?}", t_drop.elapsed(), t0.elapsed());
}

const ENDS: &str = r#"
<extension name="short">
  <condition field="destination_number" expression="^short$">
    <action application="answer"/>
    <action application="playback" data="tone_stream://%(1000,0,440)"/>
    <action application="hangup"/>
  </condition>
</extension>
<extension name="bridge">
  <condition field="destination_number" expression="^bridge$">
    <action application="answer"/>
    <action application="bridge" data="sofia/callconsent/agent@127.0.0.1:{AGENT_PORT}"/>
  </condition>
</extension>
"#;

/// The other ends of a call: FreeSWITCH hangs up on the caller (who answers its BYE and
/// succeeds), and the agent hangs up by itself (the bridge ends; FreeSWITCH hangs up the caller).
#[test]
fn calls_ended_by_freeswitch_or_by_the_agent() {
    let t0 = Instant::now();
    let fs = Fs::builder("selftest-ends").without_module().dialplan(ENDS).start();
    fs.write_sound("caller.pcap", &rtp_pcap(&[Part::Tone { freq: 440.0, ms: 500 }]));

    let t = Instant::now();
    fs.sipp_ok(&caller_scenario(20_000), &["-s", "short"]);
    let by_fs = t.elapsed();
    assert!(
        by_fs < Duration::from_secs(10),
        "the caller waited for its own timeout ({by_fs:?}), not FreeSWITCH's BYE"
    );
    fs.wait_idle(Duration::from_secs(10));

    let t = Instant::now();
    let mut agent = fs.uas_phone(&rtp_pcap(&[Part::Tone { freq: 1000.0, ms: 500 }]), 1500);
    fs.sipp_ok(&caller_scenario(20_000), &["-s", "bridge"]);
    let by_agent = t.elapsed();
    assert!(agent.wait(Duration::from_secs(10)), "the agent's sipp failed:\n{}", agent.output());
    assert!(
        by_agent < Duration::from_secs(10),
        "the caller waited for its own timeout ({by_agent:?})"
    );
    fs.wait_idle(Duration::from_secs(10));
    // sofia.c logs the hangup of a leg whose far end sent BYE (a bridge's own hangup of the other
    // leg is logged by switch_ivr_bridge.c).
    fs.wait_log("the agent's BYE", Duration::from_secs(5), |l| {
        l.contains(" sofia.c:") && l.contains("Hangup sofia/callconsent/agent@")
    });
    drop(fs);
    eprintln!(
        "timing: FreeSWITCH hangs up {by_fs:?}, agent hangs up {by_agent:?}, total {:?}",
        t0.elapsed()
    );
}
