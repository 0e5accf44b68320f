//! Real call topologies (issue 3): Dial() and Queue() to a PJSIP agent who pauses with RFC 4733
//! keys, a blind transfer, and the agent controls wired through features.conf applicationmap.
mod harness;

use std::time::Duration;

use harness::pcap::{rtp_pcap, Part};
use harness::*;

fn conf() -> String {
    consent_conf(&profile("agents", 100, "start_tone = off\npause_tone = off\nresume_tone = off"))
}

/// The agent talks 2 s, pauses (*1), talks 2 s, resumes (*2), talks 2 s.
fn agent_pauses() -> Vec<u8> {
    rtp_pcap(&[
        Part::Tone { freq: 880.0, ms: 2000 },
        Part::Digits("*1".into()),
        Part::Tone { freq: 880.0, ms: 2000 },
        Part::Digits("*2".into()),
        Part::Tone { freq: 880.0, ms: 2000 },
        Part::Silence { ms: 2000 },
    ])
}

fn pjsip_agent(name: &str, target: &str, queues: &str) {
    let dialplan = format!(
        "[test]\nexten => in,1,Answer()\n same => n,CallConsent(agents)\n same => n,{target}\n same => n,Hangup()\n\
         exten => dev,1,Wait(12)\n same => n,Hangup()\n"
    );
    let mut pbx = Pbx::builder(name)
        .sip()
        .file("callconsent.conf", &conf())
        .file("extensions.conf", &dialplan)
        .file("queues.conf", queues)
        .start();
    let phone = pbx.agent_phone(&agent_pauses());
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(30));
    assert!(
        phone.wait(Duration::from_secs(10)),
        "the agent's phone (sipp) failed:\n{}",
        std::fs::read_to_string(pbx.path("log/sipp-agent.log")).unwrap_or_default()
    );
    let kept = pbx.wait_event("recording_kept", 1, Duration::from_secs(5));
    let paused = pbx.wait_event("paused", 1, Duration::from_secs(1));
    assert_eq!(paused[0]["source"], "keypad");
    let resumed = pbx.wait_event("resumed", 1, Duration::from_secs(1));
    assert_eq!(resumed[0]["by"], "agent");
    assert_paused_span(&pbx.host_path(kept[0]["file"].as_str().unwrap()), 1500);
    pbx.assert_alive();
}

#[test]
fn dial_to_a_pjsip_agent_who_pauses_with_rfc4733() {
    pjsip_agent("dial-pjsip", "Dial(PJSIP/agent)", "[general]\n");
}

#[test]
fn queue_to_a_pjsip_agent_who_pauses_with_rfc4733() {
    pjsip_agent(
        "queue-pjsip",
        "Queue(agents,,,,30)",
        "[general]\n\n[agents]\nstrategy = ringall\nmember => PJSIP/agent\n",
    );
}

/// A pause belongs to the call: it survives a blind transfer, and the new agent can resume.
#[test]
fn a_pause_survives_a_blind_transfer_to_a_second_agent() {
    let tone = sound("agent-880-2s", 880, 2.0);
    let dialplan = format!(
        "[test]\nexten => in,1,Answer()\n same => n,CallConsent(agents)\n same => n,Dial(Local/agent1@test)\n same => n,Hangup()\n\
         exten => agent1,1,Answer()\n same => n,Playback({tone})\n same => n,SendDTMF(*1)\n same => n,Wait(30)\n\
         exten => to-agent2,1,Dial(Local/agent2@test)\n\
         exten => agent2,1,Answer()\n same => n,Playback({tone})\n same => n,SendDTMF(*2)\n same => n,Playback({tone})\n same => n,Hangup()\n\
         exten => dev,1,Wait(30)\n"
    );
    let mut pbx = Pbx::builder("transfer")
        .file("callconsent.conf", &conf())
        .file("extensions.conf", &dialplan)
        .start();
    let mut ami = pbx.ami();
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_event("paused", 1, Duration::from_secs(10));
    let out = pbx.rx("core show channels concise");
    let agent1 = out
        .lines()
        .filter_map(|l| l.split('!').next())
        .find(|c| c.starts_with("Local/agent1@test-") && c.ends_with(";1"))
        .expect("agent1's channel")
        .to_string();
    let r = ami.action(
        "BlindTransfer",
        &[("Channel", &agent1), ("Context", "test"), ("Exten", "to-agent2")],
    );
    assert_eq!(r.get("Response").map(String::as_str), Some("Success"), "{r:?}");
    pbx.wait_idle(Duration::from_secs(30));
    let kept = pbx.wait_event("recording_kept", 1, Duration::from_secs(5));
    let resumed = pbx.wait_event("resumed", 1, Duration::from_secs(1));
    assert_eq!(resumed[0]["by"], "agent");
    // Agent 2's first 2 s were spoken while the pause held: silent, then audio after the resume.
    assert_paused_span(&pbx.host_path(kept[0]["file"].as_str().unwrap()), 1500);
    pbx.assert_alive();
}

#[test]
fn controls_through_features_conf_applicationmap() {
    let features = std::fs::read_to_string(project_dir().join("dialplan/features.conf.sample"))
        .expect("dialplan/features.conf.sample");
    let tone = sound("agent-880-2s", 880, 2.0);
    let dialplan = format!(
        "[test]\nexten => in,1,Answer()\n same => n,CallConsent(agents)\n same => n,Set(__DYNAMIC_FEATURES=)\n \
         same => n,Dial(Local/agent@test,,b(callconsent-agent^s^1))\n same => n,Hangup()\n\
         exten => agent,1,Answer()\n same => n,Playback({tone})\n same => n,SendDTMF(#81)\n same => n,Playback({tone})\n \
         same => n,SendDTMF(#82)\n same => n,Playback({tone})\n same => n,Hangup()\n\
         exten => dev,1,Wait(2)\n same => n,SendDTMF(#81)\n same => n,Wait(30)\n\
         [callconsent-agent]\nexten => s,1,Set(__DYNAMIC_FEATURES=callconsent_pause#callconsent_resume#callconsent_delete)\n same => n,Return()\n"
    );
    let mut pbx = Pbx::builder("applicationmap")
        .file("callconsent.conf", &conf())
        .file("extensions.conf", &dialplan)
        .file("features.conf", &features)
        .start();
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(30));
    let kept = pbx.wait_event("recording_kept", 1, Duration::from_secs(5));
    let paused = pbx.wait_event("paused", 1, Duration::from_secs(1));
    assert_eq!(paused[0]["source"], "dialplan");
    // Nothing of the call is left to happen once it has settled.
    pbx.wait_settled(1, Duration::from_secs(10));
    assert_eq!(
        pbx.audit().iter().filter(|v| v["event"] == "paused").count(),
        1,
        "the caller's #81 must not pause"
    );
    pbx.wait_event("resumed", 1, Duration::from_secs(1));
    assert_paused_span(&pbx.host_path(kept[0]["file"].as_str().unwrap()), 1500);
    pbx.assert_alive();
}
