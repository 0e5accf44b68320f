//! mod_callconsent on a real FreeSWITCH 1.10 (the sandbox's, built by
//! scripts/sandbox-freeswitch.sh) with real SIP calls: the caller is sipp (UAC) with RFC 4733
//! keys, the agent a sipp UAS the dialplan bridges to. What is asserted is what happened: the
//! files under the spool, the tones in them (Goertzel), the audit lines, the events over ESL.
#[path = "fs_harness/mod.rs"]
mod fs_harness;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use fs_harness::pcap::{rtp_pcap, Part};
use fs_harness::*;
use serde_json::Value;

const CALLER_HZ: f32 = 440.0;
const AGENT_HZ: f32 = 1000.0;
/// What the agent says while paused: it must never be in a recording.
const SECRET_HZ: f32 = 1800.0;

/// The inbound extension: the application on the caller's leg, then the bridge to the agent.
const INBOUND: &str = r#"
<extension name="in">
  <condition field="destination_number" expression="^in$">
    <action application="answer"/>
    <action application="callconsent" data="inbound"/>
    <action application="log" data="NOTICE callconsent_status=${callconsent_status}"/>
    <action application="bridge" data="sofia/callconsent/agent@127.0.0.1:{AGENT_PORT}"/>
  </condition>
</extension>
"#;

/// The test profile: every call selected (with the legal basis that needs), a 1 s notice, the
/// prompts as tones, kept recordings as WAV so their audio can be measured.
fn conf(extra: &str) -> String {
    let params = format!(
        "<param name=\"legal_basis\" value=\"test: recording every call of this test profile\"/>\n\
         <param name=\"full_notice\" value=\"tone_stream://%(2000,0,600)\"/>\n\
         <param name=\"optout_confirm\" value=\"tone_stream://%(600,0,700)\"/>\n{extra}"
    );
    default_conf(&fs_profile("inbound", 100, &params))
        .replace("  </settings>", "    <param name=\"archive\" value=\"wav\"/>\n  </settings>")
}

fn start(name: &str, extra: &str) -> Fs {
    Fs::builder(name).conf_xml(&conf(extra)).dialplan(INBOUND).start()
}

fn count(audit: &[Value], ev: &str) -> usize {
    audit.iter().filter(|v| v["event"] == ev).count()
}

fn dump(audit: &[Value]) -> String {
    audit.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n")
}

/// Places one call: the caller plays `caller` from the answer and hangs up after `play_ms`; the
/// agent answers and plays `agent`. Returns once the call has settled in the audit log.
fn call(fs: &Fs, caller: &[Part], agent: &[Part], play_ms: u32) -> Vec<Value> {
    call_until(fs, caller, agent, play_ms, "call_settled")
}

/// As `call`, done once the audit log holds `last` (a call that was never watched, refused
/// during the notice or exempt, has no call_ended or call_settled: its trail ends earlier).
fn call_until(fs: &Fs, caller: &[Part], agent: &[Part], play_ms: u32, last: &str) -> Vec<Value> {
    fs.write_sound("caller.pcap", &rtp_pcap(caller));
    let mut phone = fs.agent_phone(&rtp_pcap(agent));
    fs.sipp_ok(&caller_scenario(play_ms), &["-s", "in"]);
    // Every caller reaches the agent, a caller who refused the recording too (R3: refusing costs
    // the caller nothing).
    assert!(
        phone.wait(Duration::from_secs(10)),
        "the agent's phone was never reached: {}",
        phone.output()
    );
    fs.wait_idle(Duration::from_secs(15));
    fs.wait_event(last, 1, Duration::from_secs(15));
    fs.audit()
}

fn kept_wav(audit: &[Value]) -> PathBuf {
    let kept = audit
        .iter()
        .find(|v| v["event"] == "recording_kept")
        .unwrap_or_else(|| panic!("no recording_kept line:\n{}", dump(audit)));
    PathBuf::from(kept["file"].as_str().expect("recording_kept names its file"))
}

fn dpo_tool(args: &[&str]) -> std::process::Output {
    Command::new(project_dir().join("target/release/callconsent"))
        .args(args)
        .output()
        .expect("run target/release/callconsent")
}

/// The caller talks after the 1 s notice, the agent answers in turn; both are in the kept file;
/// every line says `pbx: freeswitch` and the DPO tool verifies the log; the status variable
/// says RECORDING; ESL gets `callconsent::state` events.
#[test]
fn a_selected_call_is_recorded_from_the_bridge_and_kept() {
    let fs = start("fs-kept", "");
    let mut esl = fs.esl();
    esl.subscribe("CUSTOM callconsent::state");
    let audit = call(
        &fs,
        &[
            Part::Silence { ms: 1500 },
            Part::Tone { freq: CALLER_HZ, ms: 1500 },
            Part::Silence { ms: 3000 },
        ],
        &[
            Part::Silence { ms: 2000 },
            Part::Tone { freq: AGENT_HZ, ms: 1200 },
            Part::Silence { ms: 5000 },
        ],
        6000,
    );
    for ev in [
        "selected",
        "notice_played",
        "agent_cleared",
        "recording_started",
        "call_ended",
        "recording_kept",
        "call_settled",
    ] {
        assert_eq!(count(&audit, ev), 1, "{ev}:\n{}", dump(&audit));
    }
    let ended = audit.iter().find(|v| v["event"] == "call_ended").unwrap();
    assert_eq!(ended["outcome"], "recorded", "{ended}");
    assert!(
        audit.iter().all(|v| v["pbx"] == "freeswitch"),
        "every line names the PBX:\n{}",
        dump(&audit)
    );
    let started = audit.iter().find(|v| v["event"] == "recording_started").unwrap();
    assert!(
        started["agent"].as_str().is_some_and(|a| a.starts_with("sofia/callconsent/agent@")),
        "{started}"
    );

    let wav = kept_wav(&audit);
    assert!(wav.starts_with(fs.spool_dir().join("kept")), "{}", wav.display());
    let samples = wav_samples(&wav);
    let (caller_ms, agent_ms, notice_ms) =
        (tone_ms(&samples, CALLER_HZ), tone_ms(&samples, AGENT_HZ), tone_ms(&samples, 500.0));
    assert!(
        caller_ms >= 900,
        "the caller's {CALLER_HZ} Hz: only {caller_ms} ms in {}",
        wav.display()
    );
    assert!(agent_ms >= 700, "the agent's {AGENT_HZ} Hz: only {agent_ms} ms in {}", wav.display());
    assert!(
        notice_ms < 200,
        "the notice was recorded ({notice_ms} ms): recording starts at the bridge"
    );
    assert!(
        fs.spool_files().iter().all(|f| !f.starts_with(fs.spool_dir().join("staging"))),
        "staging left: {:?}",
        fs.spool_files()
    );

    fs.wait_log("the status variable", Duration::from_secs(5), |l| {
        l.contains("callconsent_status=RECORDING")
    });
    let ev = esl.wait_for(Duration::from_secs(5), |e| {
        e.get("Event-Subclass").is_some_and(|s| s == "callconsent::state")
    });
    assert!(ev.contains_key("State") && ev.contains_key("Unique-ID"), "{ev:#?}");

    // Keyed by the installation secret: verified with it (without it, exit 3 and never "intact").
    let secret = fs.path("db/callconsent/secret");
    let out = dpo_tool(&[
        "audit",
        "verify",
        "--key",
        secret.to_str().unwrap(),
        fs.audit_path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("carry a valid keyed MAC"), "{out:?}");
    let out = dpo_tool(&["audit", "verify", fs.audit_path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "a keyed log verified without its key: {out:?}");
    // The DPO tool reads a FreeSWITCH log as an Asterisk one: the agent's records (R8).
    let agent = started["agent"].as_str().unwrap();
    let out = dpo_tool(&["agent", agent, fs.audit_path().to_str().unwrap()]);
    let lines = String::from_utf8_lossy(&out.stdout).lines().count();
    assert!(
        out.status.success() && lines >= 2,
        "callconsent agent {agent}: {lines} lines\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // ... and FreeSWITCH's own configuration (issue 22): the agent's records found through the
    // audit_log it names, and the processing described from it.
    let xml = fs.path("conf/autoload_configs/callconsent.conf.xml");
    let xml = xml.to_str().unwrap();
    let via_conf = dpo_tool(&["agent", "--config", xml, agent]);
    assert!(via_conf.status.success(), "{via_conf:?}");
    // The same records, then (the configuration being known) the recording on disk now (R8).
    let (via, direct) =
        (String::from_utf8_lossy(&via_conf.stdout), String::from_utf8_lossy(&out.stdout));
    assert!(via.starts_with(&*direct), "the same records through --config {xml}:\n{via}");
    assert!(via[direct.len()..].contains("\"kept_at\""), "and the kept recording:\n{via}");
    let described = dpo_tool(&["describe", xml, "--lang", "en"]);
    let text = String::from_utf8_lossy(&described.stdout);
    assert!(described.status.success() && text.contains("inbound"), "{described:?}");
}

/// Encryption at rest on FreeSWITCH (issue 12, the same runtime as Asterisk's): the kept call is
/// archived to `.opus.age` for the DPO's age recipient, nothing else is left in the spool, and the
/// DPO's identity opens it to the length the audit log says; the number's hash is on the lines.
#[test]
fn a_kept_call_is_archived_encrypted_to_the_dpo() {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let xml = conf("").replace(
        "    <param name=\"archive\" value=\"wav\"/>\n",
        &format!("    <param name=\"archive\" value=\"opus\"/>\n    <param name=\"encrypt_to\" value=\"{recipient}\"/>\n    <param name=\"default_country\" value=\"FR\"/>\n"),
    );
    let fs = Fs::builder("fs-encrypted").conf_xml(&xml).dialplan(INBOUND).start();
    // The caller calls from 0612345678 (the From of the INVITE).
    fs.write_sound(
        "caller.pcap",
        &rtp_pcap(&[
            Part::Silence { ms: 1500 },
            Part::Tone { freq: CALLER_HZ, ms: 1500 },
            Part::Silence { ms: 2000 },
        ]),
    );
    let mut phone = fs.agent_phone(&rtp_pcap(&[Part::Silence { ms: 6000 }]));
    fs.sipp_ok(&caller_scenario(5000).replace("sip:sipp@", "sip:0612345678@"), &["-s", "in"]);
    let _ = phone.wait(Duration::from_secs(10));
    fs.wait_idle(Duration::from_secs(15));
    fs.wait_event("call_settled", 1, Duration::from_secs(15));
    let audit = fs.audit();
    let archived = fs.wait_event("recording_archived", 1, Duration::from_secs(20));
    let kept = audit
        .iter()
        .find(|v| v["event"] == "recording_kept")
        .unwrap_or_else(|| panic!("no recording_kept:\n{}", dump(&audit)));
    assert_eq!(
        kept["encrypted_to"],
        serde_json::json!([callconsent_core::policy::recipient_fingerprint(&recipient)]),
        "{kept}"
    );
    let secret = std::fs::read(fs.path("db/callconsent/secret")).expect("the installation secret");
    let hash = callconsent_core::policy::number_hash(&secret, "+33612345678", None);
    assert_eq!(
        kept["number_hash"].as_str(),
        Some(hash.as_str()),
        "the keyed hash of the E.164 number: {kept}"
    );
    let files = fs.spool_files();
    let file = PathBuf::from(archived[0]["file"].as_str().unwrap());
    assert_eq!(files, vec![file.clone()], "only the encrypted archive is left");
    assert!(file.to_string_lossy().ends_with(".opus.age"));
    assert!(callconsent_runtime::archive::is_encrypted(&file));
    let key = fs.path("dpo.key");
    std::fs::write(&key, format!("{}\n", id.to_string().expose_secret())).unwrap();
    let bytes = callconsent_runtime::archive::open_bytes(
        &file,
        &callconsent_runtime::archive::read_identities(&key).unwrap(),
    )
    .expect("the DPO's identity opens it");
    let a = callconsent_runtime::archive::read_archive_bytes(&bytes, "archive").unwrap();
    let expected = kept["duration_ms"].as_u64().unwrap();
    assert!(
        expected > 2000 && a.duration_ms.abs_diff(expected) <= 50,
        "decoded {} ms, the audit log says {expected} ms",
        a.duration_ms
    );
    assert_eq!(a.tag("CALLCONSENT_NUMBER_HASH"), kept["number_hash"].as_str());
    assert!(!fs.logs().contains("encrypt_to is not set"));
}

/// Secure card entry on FreeSWITCH (issue 16): the agent's *4, the caller's 16 digits and #;
/// the payment extension (secure_gosub = context,exten,priority: the extension of that context)
/// reads them once with ${callconsent(secure_digits ${uuid})}; the audit log counts them.
#[test]
fn a_card_entry_reaches_the_payment_extension_once() {
    const CARD: &str = "4111111111111111";
    const PAY: &str = r#"
<extension name="pay">
  <condition field="destination_number" expression="^pay$">
    <action application="sleep" data="2500"/>
    <action application="log" data="INFO secure payment md5 ${md5(${callconsent(secure_digits ${uuid})})} again [${callconsent(secure_digits ${uuid})}]"/>
  </condition>
</extension>
"#;
    let xml = conf("<param name=\"secure_gosub\" value=\"public,pay,1\"/>\n<param name=\"start_tone\" value=\"off\"/>");
    let fs = Fs::builder("fs-secure").conf_xml(&xml).dialplan(&format!("{PAY}{INBOUND}")).start();
    let audit = std::thread::scope(|s| {
        let placed = s.spawn(|| {
            call(
                &fs,
                &[
                    Part::Silence { ms: 4500 },
                    Part::Digits(format!("{CARD}#")),
                    Part::Silence { ms: 4500 },
                ],
                &[
                    Part::Silence { ms: 2000 },
                    Part::Digits("*4".into()),
                    Part::Silence { ms: 13000 },
                ],
                14500,
            )
        });
        // While the payment extension waits, a desktop asks for the digits over ESL and fs_cli
        // (issue 24): refused, and the digits stay for the extension.
        let ended = fs.wait_event("secure_entry_ended", 1, Duration::from_secs(20));
        let uuid = ended[0]["call"].as_str().unwrap_or("").to_string();
        for asked in [
            fs.api(&format!("callconsent secure_digits {uuid}")),
            fs.fs_cli(&format!("callconsent secure_digits {uuid}")),
        ] {
            assert!(asked.contains("-ERR") && asked.contains("refused"), "{asked}");
            assert!(!asked.contains(CARD) && !asked.contains("4111"), "{asked}");
        }
        placed.join().expect("the call")
    });
    let ended = audit
        .iter()
        .find(|v| v["event"] == "secure_entry_ended")
        .unwrap_or_else(|| panic!("no secure_entry_ended:\n{}", dump(&audit)));
    assert_eq!(
        (ended["reason"].as_str(), ended["digits"].as_u64()),
        (Some("end_key"), Some(16)),
        "{ended}"
    );
    assert_eq!(
        count(&audit, "opt_out"),
        0,
        "the 9 is never in the card here, and no key opted out"
    );
    let md5 = {
        use std::io::Write;
        let mut c = Command::new("md5sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("md5sum");
        c.stdin.take().unwrap().write_all(CARD.as_bytes()).unwrap();
        String::from_utf8_lossy(&c.wait_with_output().unwrap().stdout)
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    };
    let line = fs.wait_log("the payment extension", Duration::from_secs(5), |l| {
        l.contains("secure payment md5") && !l.contains("${")
    });
    assert!(line.contains(&format!("md5 {md5} again []")), "{line}");
    assert!(!fs.logs().contains(CARD), "the card number is in freeswitch.log");
}

/// The caller presses 9 in the middle of the call: the recording stops and every file of the
/// call is gone; nothing is kept.
#[test]
fn a_refusal_mid_call_deletes_every_file_of_the_call() {
    let fs = start("fs-optout-mid", "");
    let audit = call(
        &fs,
        &[
            Part::Silence { ms: 1500 },
            Part::Tone { freq: CALLER_HZ, ms: 1500 },
            Part::Digits("9".into()),
            Part::Tone { freq: CALLER_HZ, ms: 2000 },
        ],
        &[Part::Silence { ms: 500 }, Part::Tone { freq: AGENT_HZ, ms: 6000 }],
        6500,
    );
    assert_eq!(count(&audit, "recording_started"), 1, "{}", dump(&audit));
    let opt = audit
        .iter()
        .find(|v| v["event"] == "opt_out")
        .unwrap_or_else(|| panic!("no opt_out:\n{}", dump(&audit)));
    assert_eq!(opt["during"], "call", "{opt}");
    assert_eq!(opt["key"], "9");
    let deleted = audit
        .iter()
        .find(|v| v["event"] == "recording_deleted")
        .unwrap_or_else(|| panic!("no recording_deleted:\n{}", dump(&audit)));
    assert_eq!(deleted["by"], "caller", "{deleted}");
    assert_eq!(count(&audit, "recording_kept"), 0, "{}", dump(&audit));
    assert_eq!(fs.spool_files(), Vec::<PathBuf>::new(), "files of a refused call remain");
    let ended = audit.iter().find(|v| v["event"] == "call_ended").unwrap();
    assert_eq!(ended["outcome"], "opted_out", "{ended}");
}

/// The caller presses 9 during the notice and then sends no more audio (a phone with silence
/// suppression, or nothing more to say): nothing is ever recorded, the application returns at
/// once with `callconsent_status` = OPTED_OUT for the next action, and the call goes on to the
/// agent, unrecorded (issue 23: it used to wait for the caller's audio, until hangup).
#[test]
fn a_refusal_during_the_notice_records_nothing_and_the_call_goes_on() {
    let conf = conf("").replace("tone_stream://%(1000,0,500)", "tone_stream://%(6000,0,500)");
    let fs = Fs::builder("fs-optout-notice").conf_xml(&conf).dialplan(INBOUND).start();
    let mut esl = fs.esl();
    esl.subscribe("CHANNEL_BRIDGE");
    let audit = call_until(
        &fs,
        &[Part::Silence { ms: 600 }, Part::Digits("9".into())],
        &[Part::Tone { freq: AGENT_HZ, ms: 3000 }, Part::Silence { ms: 3000 }],
        9000,
        "opt_out",
    );
    // Never armed: its whole trail is the draw, the interrupted notice and the refusal.
    let events: Vec<&str> = audit.iter().filter_map(|v| v["event"].as_str()).collect();
    assert_eq!(events, vec!["selected", "notice_played", "opt_out"], "{}", dump(&audit));
    let opt = audit
        .iter()
        .find(|v| v["event"] == "opt_out")
        .unwrap_or_else(|| panic!("no opt_out:\n{}", dump(&audit)));
    assert_eq!(opt["during"], "notice", "{opt}");
    assert_eq!(count(&audit, "recording_started"), 0, "{}", dump(&audit));
    assert_eq!(fs.spool_files(), Vec::<PathBuf>::new());
    // The next action saw the status, and the bridge to the agent followed.
    fs.wait_log("the status variable", Duration::from_secs(5), |l| {
        l.contains("callconsent_status=OPTED_OUT")
    });
    let bridge = esl.wait_for(Duration::from_secs(5), |e| {
        e.get("Event-Name").is_some_and(|n| n == "CHANNEL_BRIDGE")
    });
    assert!(
        bridge.values().any(|v| v.starts_with("sofia/callconsent/agent@")),
        "the caller was bridged to the agent: {bridge:#?}"
    );
}

/// The agent pauses with *1, says something secret, resumes with *2: the secret is not in the
/// kept recording (masked: silence in its place), the rest is.
#[test]
fn the_agent_s_pause_keeps_what_is_said_out_of_the_recording() {
    let fs = start("fs-pause", "");
    let audit = call(
        &fs,
        &[Part::Silence { ms: 9000 }],
        &[
            Part::Silence { ms: 300 },
            Part::Tone { freq: AGENT_HZ, ms: 1200 },
            Part::Digits("*1".into()),
            Part::Tone { freq: SECRET_HZ, ms: 1500 },
            Part::Digits("*2".into()),
            Part::Tone { freq: AGENT_HZ, ms: 1200 },
            Part::Silence { ms: 3000 },
        ],
        8500,
    );
    assert_eq!(count(&audit, "paused"), 1, "{}", dump(&audit));
    assert_eq!(count(&audit, "resumed"), 1, "{}", dump(&audit));
    let samples = wav_samples(&kept_wav(&audit));
    let (secret, agent) = (tone_ms(&samples, SECRET_HZ), tone_ms(&samples, AGENT_HZ));
    assert!(secret <= 60, "{secret} ms of what the agent said while paused is in the recording");
    assert!(agent >= 1500, "the agent's speech around the pause: only {agent} ms");
}

/// The caller pressing the agent's codes changes nothing: no pause, the recording is kept whole.
#[test]
fn a_caller_pressing_the_agent_codes_changes_nothing() {
    let fs = start("fs-caller-codes", "");
    let audit = call(
        &fs,
        &[
            Part::Silence { ms: 1500 },
            Part::Digits("*1".into()),
            Part::Tone { freq: CALLER_HZ, ms: 1500 },
            Part::Digits("*3".into()),
            Part::Silence { ms: 2000 },
        ],
        &[Part::Silence { ms: 6000 }],
        6000,
    );
    assert_eq!(
        count(&audit, "paused")
            + count(&audit, "delete_requested")
            + count(&audit, "recording_deleted"),
        0,
        "{}",
        dump(&audit)
    );
    assert_eq!(count(&audit, "recording_kept"), 1, "{}", dump(&audit));
    assert!(tone_ms(&wav_samples(&kept_wav(&audit)), CALLER_HZ) >= 900);
}

/// A never-record caller is not recorded whatever the draw; the line carries a keyed hash, not
/// the number.
#[test]
fn a_never_record_caller_is_never_recorded() {
    // The caller's number, as a trunk would give it (sipp's own is "sipp").
    let vip = INBOUND.replace(
        "<action application=\"callconsent\"",
        "<action application=\"set_profile_var\" data=\"caller_id_number=0145550000\"/>\n    <action application=\"callconsent\"",
    );
    let fs = Fs::builder("fs-never")
        .conf_xml(&conf("<param name=\"never_record\" value=\"caller:0145550000\"/>"))
        .dialplan(&vip)
        .start();
    let audit = call_until(
        &fs,
        &[Part::Tone { freq: CALLER_HZ, ms: 4000 }],
        &[Part::Tone { freq: AGENT_HZ, ms: 4000 }],
        4000,
        "exempt",
    );
    assert_eq!(count(&audit, "recording_started"), 0, "{}", dump(&audit));
    let exempt = audit
        .iter()
        .find(|v| v["event"] == "exempt")
        .unwrap_or_else(|| panic!("no exempt line:\n{}", dump(&audit)));
    assert!(
        !exempt.to_string().contains("0145550000"),
        "the number itself is in the line: {exempt}"
    );
    assert_eq!(fs.spool_files(), Vec::<PathBuf>::new());
}

/// A wrong file is refused with the key and the rule, FreeSWITCH stays up; once fixed, `load`
/// works; a bad reload is refused and the running profiles stay.
#[test]
fn a_bad_configuration_is_refused_and_freeswitch_stays_up() {
    let mut fs = Fs::builder("fs-badconf")
        .conf_xml(&conf("").replace("value=\"100\"", "value=\"150\""))
        .dialplan(INBOUND)
        .start();
    fs.wait_log("the refusal", Duration::from_secs(5), |l| {
        l.contains("callconsent: not loaded") && l.contains("record_share")
    });
    fs.assert_alive();
    assert!(
        fs.api("callconsent show profiles").contains("Command not found"),
        "the module is not loaded"
    );
    fs.write_conf("callconsent.conf.xml", &conf(""));
    fs.reloadxml();
    let loaded = fs.api("load mod_callconsent");
    assert!(loaded.contains("+OK"), "{loaded}");
    assert!(fs.api("callconsent show profiles").contains("inbound"));
    fs.write_conf(
        "callconsent.conf.xml",
        &conf("")
            .replace("name=\"inbound\"", "name=\"other\"")
            .replace("value=\"100\"", "value=\"150\""),
    );
    fs.reloadxml();
    let reload = fs.api("callconsent reload");
    assert!(reload.contains("-ERR") && reload.contains("record_share"), "{reload}");
    let profiles = fs.api("callconsent show profiles");
    assert!(profiles.contains("inbound") && !profiles.contains("other"), "{profiles}");
    fs.assert_alive();
}

/// A desktop pauses and resumes over the API (fs_cli or ESL): the audit lines name the source.
#[test]
fn api_pause_and_resume() {
    let fs = start("fs-api", "");
    fs.write_sound("caller.pcap", &rtp_pcap(&[Part::Silence { ms: 9000 }]));
    let mut phone = fs.agent_phone(&rtp_pcap(&[Part::Tone { freq: AGENT_HZ, ms: 9000 }]));
    std::thread::scope(|s| {
        let caller = s.spawn(|| fs.sipp_ok(&caller_scenario(7000), &["-s", "in"]));
        let started = fs.wait_event("recording_started", 1, Duration::from_secs(15));
        let uuid = started[0]["call"].as_str().expect("the call's uuid").to_string();
        let shown = fs.api("callconsent show calls");
        assert!(
            shown.contains("sofia/callconsent/sipp@") && shown.contains("recording"),
            "{shown}"
        );
        let paused = fs.api(&format!("callconsent pause {uuid}"));
        assert!(paused.starts_with("+OK"), "{paused}");
        let line = fs.wait_event("paused", 1, Duration::from_secs(5));
        assert_eq!(line[0]["source"], "esl", "{}", line[0]);
        let resumed = fs.api(&format!("callconsent resume {uuid}"));
        assert!(resumed.starts_with("+OK"), "{resumed}");
        fs.wait_event("resumed", 1, Duration::from_secs(5));
        let bad = fs.api("callconsent pause no-such-uuid");
        assert!(bad.starts_with("-ERR"), "{bad}");
        caller.join().expect("the caller");
    });
    let _ = phone.wait(Duration::from_secs(10));
    fs.wait_event("call_settled", 1, Duration::from_secs(15));
}

/// An agent's outbound call: the application runs on the called customer's leg once it answers
/// (`group_confirm_key=exec`), so the customer hears the notice and holds the refusal key; the
/// agent is bridged after the notice, and the agent's leg is the agent.
const OUTBOUND: &str = r#"
<extension name="out">
  <condition field="destination_number" expression="^0(\d+)$">
    <action application="bridge" data="{^^:group_confirm_key=exec:group_confirm_file=callconsent outbound,${destination_number}:ignore_early_media=true:group_confirm_timeout=0:originate_timeout=60}sofia/callconsent/customer@127.0.0.1:{AGENT_PORT}"/>
  </condition>
</extension>
"#;

fn outbound(name: &str) -> Fs {
    let conf = conf("").replace("name=\"inbound\"", "name=\"outbound\"");
    Fs::builder(name).conf_xml(&conf).dialplan(OUTBOUND).start()
}

/// The agent (sipp UAC) dials 0555123; the customer (sipp UAS) answers, hears the notice and
/// plays `customer`; the agent talks 1000 Hz.
fn outbound_call(fs: &Fs, customer: &[Part], play_ms: u32) -> Vec<Value> {
    // The agent talks once the customer is done (the Goertzel check cannot tell two tones apart
    // in the mono mix while both play).
    fs.write_sound(
        "caller.pcap",
        &rtp_pcap(&[
            Part::Silence { ms: 3500 },
            Part::Tone { freq: AGENT_HZ, ms: 1500 },
            Part::Silence { ms: 6000 },
        ]),
    );
    let mut phone = fs.agent_phone(&rtp_pcap(customer));
    fs.sipp_ok(&caller_scenario(play_ms), &["-s", "0555123"]);
    let _ = phone.wait(Duration::from_secs(10));
    fs.wait_idle(Duration::from_secs(15));
    fs.wait_event("call_settled", 1, Duration::from_secs(15));
    fs.audit()
}

/// The customer refuses mid-call: every file of the call goes; the customer's leg is the one
/// the lines name.
#[test]
fn outbound_the_called_customer_refuses_mid_call() {
    let fs = outbound("fs-out-refuse");
    let audit = outbound_call(
        &fs,
        &[
            Part::Silence { ms: 1500 },
            Part::Tone { freq: CALLER_HZ, ms: 1500 },
            Part::Digits("9".into()),
            Part::Tone { freq: CALLER_HZ, ms: 2500 },
        ],
        7000,
    );
    let started = audit
        .iter()
        .find(|v| v["event"] == "recording_started")
        .unwrap_or_else(|| panic!("not recorded:\n{}", dump(&audit)));
    assert!(
        started["channel"].as_str().is_some_and(|c| c.starts_with("sofia/callconsent/customer@")),
        "the customer's leg is the call: {started}"
    );
    assert!(
        started["agent"].as_str().is_some_and(|a| a.starts_with("sofia/callconsent/sipp@")),
        "the dialling agent is the agent: {started}"
    );
    let opt = audit
        .iter()
        .find(|v| v["event"] == "opt_out")
        .unwrap_or_else(|| panic!("no opt_out:\n{}", dump(&audit)));
    assert_eq!(opt["during"], "call", "{opt}");
    assert_eq!(count(&audit, "recording_kept"), 0, "{}", dump(&audit));
    assert_eq!(fs.spool_files(), Vec::<PathBuf>::new(), "files of a refused call remain");
}

/// The customer who stays and presses the agent's *1 is recorded whole: the customer's keys
/// are no agent codes; the agent's own audio is in the file.
#[test]
fn outbound_the_customer_s_codes_change_nothing() {
    let fs = outbound("fs-out-stay");
    let audit = outbound_call(
        &fs,
        &[
            Part::Silence { ms: 1500 },
            Part::Digits("*1".into()),
            Part::Tone { freq: CALLER_HZ, ms: 1500 },
            Part::Silence { ms: 4000 },
        ],
        7000,
    );
    assert_eq!(count(&audit, "paused"), 0, "{}", dump(&audit));
    let samples = wav_samples(&kept_wav(&audit));
    assert!(
        tone_ms(&samples, CALLER_HZ) >= 900,
        "the customer's speech: {} ms of {} ms, at {:?}",
        tone_ms(&samples, CALLER_HZ),
        samples.len() / 8,
        tone_span_ms(&samples, CALLER_HZ)
    );
    assert!(tone_ms(&samples, AGENT_HZ) >= 700, "the agent's speech");
}

/// A forgotten pause resumes by itself after `pause_max_seconds`, with its warning first: the
/// clock ticks come from the watcher's media bug.
#[test]
fn a_forgotten_pause_resumes_by_itself_after_a_warning() {
    let fs = start("fs-auto-resume", "<param name=\"pause_max_seconds\" value=\"6\"/>");
    let audit = call(
        &fs,
        &[Part::Silence { ms: 12_000 }],
        &[
            Part::Silence { ms: 500 },
            Part::Digits("*1".into()),
            Part::Tone { freq: AGENT_HZ, ms: 10_000 },
        ],
        11_000,
    );
    let order: Vec<&str> = audit
        .iter()
        .filter_map(|v| v["event"].as_str())
        .filter(|e| matches!(*e, "paused" | "pause_warning" | "resumed"))
        .collect();
    assert_eq!(order, vec!["paused", "pause_warning", "resumed"], "{}", dump(&audit));
    let resumed = audit.iter().find(|v| v["event"] == "resumed").unwrap();
    assert_eq!(
        (resumed["by"].as_str(), resumed["source"].as_str()),
        (Some("auto"), Some("pause_max_seconds")),
        "{resumed}"
    );
}

/// `unload mod_callconsent` while a call is watched is refused (its hooks and media bug still
/// run the module's code): FreeSWITCH stays up and the call is kept; once no call is watched,
/// unload works.
#[test]
fn unload_is_refused_while_a_call_is_watched() {
    let mut fs = start("fs-unload", "");
    fs.write_sound(
        "caller.pcap",
        &rtp_pcap(&[
            Part::Silence { ms: 1500 },
            Part::Tone { freq: CALLER_HZ, ms: 1500 },
            Part::Silence { ms: 4000 },
        ]),
    );
    let mut phone = fs.agent_phone(&rtp_pcap(&[
        Part::Silence { ms: 3000 },
        Part::Tone { freq: AGENT_HZ, ms: 1200 },
        Part::Silence { ms: 5000 },
    ]));
    std::thread::scope(|s| {
        let caller = s.spawn(|| fs.sipp_ok(&caller_scenario(7000), &["-s", "in"]));
        fs.wait_event("recording_started", 1, Duration::from_secs(15));
        let refused = fs.api("unload mod_callconsent");
        assert!(refused.contains("-ERR"), "unload during a watched call: {refused}");
        assert!(
            fs.api("callconsent show calls").contains("1 call(s) watched"),
            "the module is still there"
        );
        caller.join().expect("the caller");
    });
    let _ = phone.wait(Duration::from_secs(10));
    fs.wait_event("call_settled", 1, Duration::from_secs(15));
    assert_eq!(count(&fs.audit(), "recording_kept"), 1, "{}", dump(&fs.audit()));
    fs.assert_alive();
    let unloaded = fs.api("unload mod_callconsent");
    assert!(unloaded.contains("+OK"), "unload with no call watched: {unloaded}");
    fs.assert_alive();
}

/// Issue 23: an agent reached through `loopback/` (how FusionPBX builds ring groups and queues)
/// whose side runs `send_dtmf`: FreeSWITCH relays those keys past every DTMF hook, so the module
/// sees them only in the DTMF event. The agent talks, pauses with `*1`, says a secret at once,
/// resumes with `*2`, talks again: the pause and the resume are in the audit trail, the agent is
/// named by its loopback leg, and the secret is not in the kept recording.
#[test]
fn an_agent_on_loopback_pauses_with_send_dtmf() {
    const LOOP: &str = r#"
<extension name="in-loop">
  <condition field="destination_number" expression="^in-loop$">
    <action application="answer"/>
    <action application="callconsent" data="inbound"/>
    <action application="bridge" data="loopback/agent-a/public"/>
  </condition>
</extension>
<extension name="agent-a">
  <condition field="destination_number" expression="^agent-a$">
    <action application="answer"/>
    <action application="playback" data="tone_stream://%(1500,0,1000)"/>
    <action application="send_dtmf" data="*1"/>
    <action application="playback" data="tone_stream://%(2000,0,1800)"/>
    <action application="send_dtmf" data="*2"/>
    <action application="playback" data="tone_stream://%(1500,0,1000)"/>
    <action application="hangup"/>
  </condition>
</extension>
"#;
    let fs = Fs::builder("fs-loopback-pause").conf_xml(&conf("")).dialplan(LOOP).start();
    fs.write_sound("caller.pcap", &rtp_pcap(&[Part::Silence { ms: 9000 }]));
    fs.sipp_ok(&caller_scenario(10000), &["-s", "in-loop"]);
    fs.wait_idle(Duration::from_secs(15));
    fs.wait_event("call_settled", 1, Duration::from_secs(15));
    let audit = fs.audit();
    let started = audit
        .iter()
        .find(|v| v["event"] == "recording_started")
        .unwrap_or_else(|| panic!("no recording_started:\n{}", dump(&audit)));
    assert!(
        started["agent"].as_str().is_some_and(|a| a.starts_with("loopback/agent-a")),
        "{started}"
    );
    assert_eq!(count(&audit, "paused"), 1, "the agent's *1 through loopback:\n{}", dump(&audit));
    assert_eq!(count(&audit, "resumed"), 1, "the agent's *2 through loopback:\n{}", dump(&audit));
    let samples = wav_samples(&kept_wav(&audit));
    let (secret, agent) = (tone_ms(&samples, SECRET_HZ), tone_ms(&samples, AGENT_HZ));
    assert!(secret <= 60, "{secret} ms of what the agent said while paused is in the recording");
    assert!(agent >= 1500, "the agent's speech around the pause: only {agent} ms");
}
