//! Outbound calls: an agent calls a customer through the example dialplan
//! (dialplan/extensions.conf.sample, [from-agents]). CallConsent() runs on the called channel in
//! Dial's U() subroutine, so the customer is the one told and able to refuse (R1, R3), the
//! agent's codes stay the agent's (R9), and the private prefix still exempts (R12). The customer
//! is a sipp UAS behind the PJSIP endpoint `trunk`; the agent is a Local channel originated into
//! [from-agents] that runs a script of tones and keys in [test].
mod harness;

use std::time::Duration;

use harness::pcap::{rtp_pcap, Part};
use harness::*;
use serde_json::Value;

/// The customer's voice in the captures, and the agent's in the scripts.
const CUSTOMER_HZ: f32 = 660.0;
const AGENT_HZ: f32 = 880.0;

fn conf() -> String {
    consent_conf(&profile("outbound", 100, "private_prefix = 8"))
}

/// What the agent does once the call is bridged: the originated Local channel's other half runs
/// the outbound dialplan.
fn agents() -> String {
    let tone = sound("agent-880-2s", AGENT_HZ as u32, 2.0);
    format!(
        "[test]\n\
         exten => agent-talks,1,Answer()\n same => n,Wait(3)\n same => n,Playback({tone})\n same => n,Hangup()\n\
         exten => agent-listens,1,Answer()\n same => n,Playback({tone})\n same => n,Wait(6)\n same => n,Hangup()\n\
         exten => agent-pauses,1,Answer()\n same => n,Playback({tone})\n same => n,SendDTMF(*1)\n same => n,Playback({tone})\n \
         same => n,SendDTMF(*2)\n same => n,Playback({tone})\n same => n,Hangup()\n"
    )
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(project_dir().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The example dialplan as shipped, and the agents' scripts.
fn dialplan() -> String {
    format!("{}\n{}", read("dialplan/extensions.conf.sample"), agents())
}

/// The PJSIP endpoint `trunk` the example dials: the harness's UAS port (`agent_port`) stands for
/// the customer's phone behind the operator. Added to the running Asterisk's pjsip.conf.
fn add_trunk(pbx: &Pbx) {
    let pjsip =
        std::fs::read_to_string(pbx.path("etc/pjsip.conf")).expect("the harness's pjsip.conf");
    pbx.write_conf(
        "pjsip.conf",
        &format!(
            "{pjsip}\n[trunk]\ntype = endpoint\ncontext = test\ndisallow = all\nallow = alaw\ndtmf_mode = rfc4733\n\
             direct_media = no\nrtp_symmetric = yes\naors = agent\n"
        ),
    );
    pbx.rx("module reload res_pjsip.so");
    wait_for("the PJSIP endpoint trunk after the reload", Duration::from_secs(10), || {
        let out = pbx.rx("pjsip show endpoint trunk");
        if out.contains("Endpoint:  trunk") {
            Ok(())
        } else {
            Err(out)
        }
    });
}

fn start(name: &str, conf: &str, extensions: &str) -> Pbx {
    let pbx = Pbx::builder(name)
        .sip()
        .file("callconsent.conf", conf)
        .file("extensions.conf", extensions)
        .start();
    add_trunk(&pbx);
    pbx
}

/// The customer's phone: these parts (tones for speech, RFC 4733 keys) from the answer, then silence.
fn customer(parts: Vec<Part>) -> Vec<u8> {
    let mut all = parts;
    all.push(Part::Silence { ms: 6000 });
    rtp_pcap(&all)
}

fn sipp_ok(pbx: &Pbx, phone: Sipp) {
    assert!(
        phone.wait(Duration::from_secs(15)),
        "the customer's phone (sipp) failed:\n{}",
        std::fs::read_to_string(pbx.path("log/sipp-agent.log")).unwrap_or_default()
    );
}

fn on_callee(v: &Value) -> bool {
    v["channel"].as_str().is_some_and(|c| c.starts_with("PJSIP/trunk-"))
}

fn count(pbx: &Pbx, event: &str) -> usize {
    pbx.audit().iter().filter(|v| v["event"] == event).count()
}

/// The customer stays: the customer heard the notice, the recording is the customer's channel
/// with the agent (the Local channel that dialled) as its agent, both voices in it, and kept.
#[test]
fn the_called_customer_hears_the_notice_and_the_call_is_kept() {
    let pbx = start("out-kept", &conf(), &dialplan());
    // The customer talks 3 s from the answer (the notice takes the first second), then listens
    // to the agent, who waits 3 s and talks 2 s: two voices one after the other.
    let phone = pbx.agent_phone(&customer(vec![Part::Tone { freq: CUSTOMER_HZ, ms: 3000 }]));
    pbx.originate("Local/0555123@from-agents", "agent-talks@test");
    let kept = pbx.wait_event("recording_kept", 1, Duration::from_secs(30));
    pbx.wait_idle(Duration::from_secs(10));
    sipp_ok(&pbx, phone);
    pbx.wait_settled(1, Duration::from_secs(10));
    let audit = pbx.audit();
    let of = |e: &str| audit.iter().filter(|v| v["event"] == e).cloned().collect::<Vec<_>>();
    let notices = of("notice_played");
    assert_eq!(notices.len(), 1, "one notice, to the customer only: {notices:?}");
    assert!(
        on_callee(&notices[0]),
        "the notice was played to {} instead of the called customer",
        notices[0]["channel"]
    );
    assert_eq!(notices[0]["outcome"], "completed");
    let started = of("recording_started");
    assert!(on_callee(&started[0]), "recorded as the caller: {}", started[0]["channel"]);
    let cleared = of("agent_cleared");
    assert_eq!(
        cleared[0]["agent"], "Local/0555123@from-agents",
        "the agent is the one who dialled: {cleared:?}"
    );
    assert!(on_callee(&kept[0]));
    assert_eq!(of("call_ended")[0]["outcome"], "recorded");
    // Both parties are in the recording: the customer after the notice, then the agent.
    let samples = wav_samples(&pbx.host_path(kept[0]["file"].as_str().unwrap()));
    let (customer_ms, agent_ms) = (tone_ms(&samples, CUSTOMER_HZ), tone_ms(&samples, AGENT_HZ));
    assert!(
        customer_ms >= 1000 && agent_ms >= 1000,
        "customer {customer_ms} ms, agent {agent_ms} ms in the recording"
    );
}

/// The customer refuses mid-call with an RFC 4733 9: the recording stops and every file of the
/// call is deleted, as asked by the caller (the customer).
#[test]
fn the_called_customer_refuses_mid_call() {
    let pbx = start("out-refused", &conf(), &dialplan());
    let phone = pbx.agent_phone(&customer(vec![
        Part::Tone { freq: CUSTOMER_HZ, ms: 4000 },
        Part::Digits("9".into()),
    ]));
    pbx.originate("Local/0555123@from-agents", "agent-listens@test");
    let started = pbx.wait_event("recording_started", 1, Duration::from_secs(20));
    assert!(on_callee(&started[0]), "{started:?}");
    let opt = pbx.wait_event("opt_out", 1, Duration::from_secs(15));
    assert_eq!(opt[0]["during"], "call", "{opt:?}");
    assert!(on_callee(&opt[0]));
    let deleted = pbx.wait_event("recording_deleted", 1, Duration::from_secs(5));
    assert_eq!(deleted[0]["by"], "caller");
    pbx.wait_idle(Duration::from_secs(20));
    sipp_ok(&pbx, phone);
    let settled = pbx.wait_settled(1, Duration::from_secs(15));
    assert_eq!(settled[0]["call"], deleted[0]["call"]);
    assert_eq!(pbx.wait_event("call_ended", 1, Duration::from_secs(1))[0]["outcome"], "opted_out");
    assert_eq!(
        pbx.spool_files(),
        Vec::<std::path::PathBuf>::new(),
        "files of the refused outbound call remain"
    );
}

/// The customer presses the agent's delete code (*3): nothing changes. The agent's own *1 and
/// *2, from the agent's side, pause and resume.
#[test]
fn the_customers_keys_are_not_agent_codes() {
    let pbx = start("out-codes", &conf(), &dialplan());
    let phone = pbx.agent_phone(&customer(vec![
        Part::Tone { freq: CUSTOMER_HZ, ms: 2500 },
        Part::Digits("*3".into()),
    ]));
    pbx.originate("Local/0555123@from-agents", "agent-pauses@test");
    let kept = pbx.wait_event("recording_kept", 1, Duration::from_secs(30));
    pbx.wait_idle(Duration::from_secs(10));
    sipp_ok(&pbx, phone);
    pbx.wait_settled(1, Duration::from_secs(10));
    assert_eq!(
        (count(&pbx, "delete_requested"), count(&pbx, "recording_deleted")),
        (0, 0),
        "the customer's *3 deleted the recording: {:?}",
        pbx.events()
    );
    assert_eq!(pbx.wait_event("call_ended", 1, Duration::from_secs(1))[0]["outcome"], "recorded");
    let paused = pbx.wait_event("paused", 1, Duration::from_secs(1));
    assert_eq!(
        (paused[0]["by"].as_str(), paused[0]["source"].as_str()),
        (Some("agent"), Some("keypad")),
        "{paused:?}"
    );
    assert_eq!(paused[0]["agent"], "Local/0555123@from-agents");
    assert_eq!(pbx.wait_event("resumed", 1, Duration::from_secs(1))[0]["by"], "agent");
    assert_paused_span(&pbx.host_path(kept[0]["file"].as_str().unwrap()), 1500);
}

/// A number dialled with the private prefix: exempt on the customer's channel, no notice,
/// nothing recorded, and the number is nowhere in the audit log.
#[test]
fn the_private_prefix_still_exempts() {
    let pbx = start("out-private", &conf(), &dialplan());
    let phone = pbx.agent_phone(&customer(vec![Part::Tone { freq: CUSTOMER_HZ, ms: 2000 }]));
    pbx.originate("Local/8555123@from-agents", "agent-talks@test");
    let exempt = pbx.wait_event("exempt", 1, Duration::from_secs(20));
    assert_eq!(exempt[0]["reason"], "private_prefix", "{exempt:?}");
    assert!(
        on_callee(&exempt[0]),
        "exempted on {} instead of the called customer",
        exempt[0]["channel"]
    );
    pbx.wait_idle(Duration::from_secs(20));
    sipp_ok(&pbx, phone);
    for e in ["notice_played", "selected", "recording_started"] {
        assert_eq!(count(&pbx, e), 0, "{e} on a private call: {:?}", pbx.events());
    }
    assert!(
        !std::fs::read_to_string(pbx.audit_path()).unwrap().contains("555123"),
        "the dialled number is in the audit log"
    );
    assert_eq!(pbx.spool_files(), Vec::<std::path::PathBuf>::new());
}

/// The customer hangs up during the notice (a 4 s notice, a BYE after 1.5 s): the subroutine
/// ends there, the agent's side is hung up like after any hangup of the called party, and the
/// module holds nothing of the call any more.
#[test]
fn the_customer_hangs_up_during_the_notice() {
    let conf = consent_conf(
        &profile("outbound", 100, "private_prefix = 8")
            .replace(&sound("notice", 500, 1.0), &sound("notice-4s", 500, 4.0)),
    );
    let mut pbx = start("out-hangup", &conf, &dialplan());
    let phone = pbx.uas_phone(
        "callee-hangs-up.xml",
        &customer(vec![Part::Tone { freq: CUSTOMER_HZ, ms: 1000 }]),
    );
    pbx.originate("Local/0555123@from-agents", "agent-talks@test");
    sipp_ok(&pbx, phone);
    let notice = pbx.wait_event("notice_played", 1, Duration::from_secs(10));
    assert!(on_callee(&notice[0]));
    assert_eq!(notice[0]["outcome"], "hangup", "{notice:?}");
    pbx.wait_idle(Duration::from_secs(10));
    let settled = pbx.wait_settled(1, Duration::from_secs(10));
    assert!(on_callee(&settled[0]));
    assert_eq!(
        pbx.wait_event("call_ended", 1, Duration::from_secs(1))[0]["outcome"],
        "hangup_during_notice"
    );
    assert_eq!(count(&pbx, "recording_started"), 0, "{:?}", pbx.events());
    let calls = pbx.rx("callconsent show calls");
    assert!(
        !calls.contains("PJSIP/") && !calls.contains("Local/"),
        "the module still holds the call: {calls}"
    );
    assert_eq!(pbx.spool_files(), Vec::<std::path::PathBuf>::new());
    pbx.assert_alive();
}

/// FreePBX 17's outbound path, reduced to what leads to the trunk's Dial() (core's
/// functions.inc.php: the route Gosubs macro-dialout-trunk, which Gosubs the predial hook, then
/// dials from trunk-dial-with-exten with DIAL_TRUNK_OPTIONS), with the shipped
/// extensions_custom.conf: the customer is told on a business route, a private route exempts.
#[test]
fn freepbx_predial_hook_informs_the_called_customer() {
    let freepbx = "[from-internal]\ninclude => outbound-allroutes\n[outbound-allroutes]\ninclude => outrt-1\ninclude => outrt-2\n\
        [outrt-1]\nexten => _0X.,1,Gosub(macro-user-callerid,s,1(LIMIT,EXTERNAL))\n same => n,Set(_ROUTENAME=business)\n \
        same => n,Gosub(macro-dialout-trunk,s,1(1,${EXTEN:1},,))\n same => n,Hangup()\n\
        [outrt-2]\nexten => _8X.,1,Gosub(macro-user-callerid,s,1(LIMIT,EXTERNAL))\n same => n,Set(_ROUTENAME=private)\n \
        same => n,Gosub(macro-dialout-trunk,s,1(1,${EXTEN:1},,))\n same => n,Hangup()\n\
        [macro-user-callerid]\nexten => s,1,Return()\n\
        [macro-dialout-trunk]\nexten => s,1,Set(DIAL_TRUNK=${ARG1})\n same => n,Set(DIAL_NUMBER=${ARG2})\n \
        same => n,Set(DIAL_TRUNK_OPTIONS=T)\n same => n,Set(OUTNUM=${DIAL_NUMBER})\n \
        same => n(gocall),Gosub(macro-dialout-trunk-predial-hook,s,1())\n same => n,GotoIf($[\"${PREDIAL_HOOK_RET}\" = \"BYPASS\"]?bypass,1)\n \
        same => n,Gosub(trunk-dial-with-exten,${DIAL_NUMBER},1())\n same => n,Return()\nexten => bypass,1,Return()\n\
        [trunk-dial-with-exten]\nexten => _[+-X].,1,Dial(PJSIP/${OUTNUM}@trunk,300,${DIAL_TRUNK_OPTIONS}b(func-apply-sipheaders^s^1))\n same => n,Return()\n\
        [func-apply-sipheaders]\nexten => s,1,Return()\n";
    let ext = format!("{freepbx}\n#include extensions_custom.conf\n{}", agents());
    let pbx = Pbx::builder("out-freepbx")
        .sip()
        .file("callconsent.conf", &conf())
        .file("extensions.conf", &ext)
        .file("extensions_custom.conf", &read("dialplan/freepbx/extensions_custom.conf"))
        .start();
    add_trunk(&pbx);
    let phone = pbx.agent_phone(&customer(vec![Part::Tone { freq: CUSTOMER_HZ, ms: 3000 }]));
    pbx.originate("Local/0555123@from-internal", "agent-talks@test");
    let kept = pbx.wait_event("recording_kept", 1, Duration::from_secs(30));
    pbx.wait_idle(Duration::from_secs(10));
    sipp_ok(&pbx, phone);
    let notice = pbx.wait_event("notice_played", 1, Duration::from_secs(1));
    assert!(
        on_callee(&notice[0]) && on_callee(&kept[0]),
        "not the customer's channel: {notice:?} {kept:?}"
    );
    assert_eq!(notice[0]["outcome"], "completed");
    assert_eq!(
        pbx.wait_event("agent_cleared", 1, Duration::from_secs(1))[0]["agent"],
        "Local/0555123@from-internal"
    );
    pbx.wait_settled(1, Duration::from_secs(10));

    // The private route strips its 8, but the hook passes the number as the agent dialled it.
    let phone = pbx.agent_phone(&customer(vec![Part::Tone { freq: CUSTOMER_HZ, ms: 2000 }]));
    pbx.originate("Local/8555123@from-internal", "agent-talks@test");
    let exempt = pbx.wait_event("exempt", 1, Duration::from_secs(20));
    assert_eq!(exempt[0]["reason"], "private_prefix", "{exempt:?}");
    assert!(on_callee(&exempt[0]), "{exempt:?}");
    pbx.wait_idle(Duration::from_secs(20));
    sipp_ok(&pbx, phone);
    assert_eq!(
        (count(&pbx, "notice_played"), count(&pbx, "recording_started")),
        (1, 1),
        "the private call was told or recorded: {:?}",
        pbx.events()
    );
}

/// Both example files load together, and no example runs CallConsent() on an outbound call's
/// agent side or uses app_macro (gone since Asterisk 21).
#[test]
fn examples_put_consent_on_the_called_party() {
    let conf = consent_conf(&format!(
        "{}\n{}",
        profile("inbound", 20, ""),
        profile("outbound", 20, "private_prefix = 8")
    ));
    let freepbx = read("dialplan/freepbx/extensions_custom.conf");
    let ext = read("dialplan/extensions.conf.sample") + "\n#include extensions_custom.conf\n";
    let mut pbx = Pbx::builder("out-examples")
        .file("callconsent.conf", &conf)
        .file("extensions.conf", &ext)
        .file("extensions_custom.conf", &freepbx)
        .file("features.conf", &read("dialplan/features.conf.sample"))
        .start();
    let show = |context: &str| pbx.rx(&format!("dialplan show {context}"));
    let agents = show("from-agents");
    assert!(
        agents.contains("U(sub-callconsent-outbound^${EXTEN})") && !agents.contains("CallConsent("),
        "{agents}"
    );
    let sub = show("sub-callconsent-outbound");
    assert!(sub.contains("CallConsent(outbound,${ARG1})") && sub.contains("Return()"), "{sub}");
    // Queue()'s gosub is its 7th argument since Asterisk 21 (the 8th is the rule).
    assert!(show("from-pstn").contains("Queue(support,,,,,,callconsent-agent)"));
    let hook = show("macro-dialout-trunk-predial-hook");
    assert!(
        hook.contains("U(callconsent-out^${STACK_PEEK(2,e,1)})") && hook.contains("Return()"),
        "{hook}"
    );
    assert!(show("callconsent-out").contains("CallConsent(outbound,${ARG1})"));
    assert!(show("macro-dialout-one-predial-hook").contains("Return()"));
    let code: Vec<&str> = freepbx.lines().filter(|l| !l.trim_start().starts_with(';')).collect();
    assert!(
        !code.iter().any(|l| l.contains("Macro")),
        "app_macro is gone since Asterisk 21: {code:?}"
    );
    let messages = pbx.messages();
    let complaints: Vec<&str> = messages
        .lines()
        .filter(|l| {
            (l.contains("WARNING[") || l.contains("ERROR["))
                && (l.contains("pbx") || l.contains("extension"))
        })
        .collect();
    assert!(complaints.is_empty(), "the examples do not load cleanly: {complaints:?}");
    pbx.assert_alive();
}
