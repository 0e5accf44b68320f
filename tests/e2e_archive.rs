//! Kept recordings archived as Ogg Opus with their consent record inside (issue 5), on a real
//! Asterisk: the archive replaces the WAV, opusinfo reads it, its length and tags match the
//! audit log, the paused span decodes to silence; a failed encode leaves the WAV; interrupted
//! work is resumed at load.
mod harness;

use std::process::Command;
use std::time::Duration;

use harness::*;

fn dialplan() -> String {
    let tone = sound("agent-880-2s", 880, 2.0);
    format!(
        "[test]\nexten => in,1,Answer()\n same => n,CallConsent(arch)\n same => n,Dial(Local/agent@test)\n\
         exten => agent,1,Answer()\n same => n,Playback({tone})\n same => n,SendDTMF(*1)\n same => n,Playback({tone})\n \
         same => n,SendDTMF(*2)\n same => n,Playback({tone})\n same => n,Hangup()\n\
         exten => dev,1,Wait(60)\n"
    )
}

fn start(name: &str) -> Pbx {
    let conf = consent_conf_opus(&profile(
        "arch",
        100,
        "start_tone = off\npause_tone = off\nresume_tone = off",
    ));
    Pbx::builder(name).file("callconsent.conf", &conf).file("extensions.conf", &dialplan()).start()
}

fn in_tree(pbx: &Pbx, args: &[&str]) -> std::process::Output {
    Command::new("chroot").arg(&pbx.root).args(args).output().expect("run a tool of the sandbox")
}

#[test]
fn a_kept_call_leaves_an_opus_archive_with_its_consent_facts() {
    let mut pbx = start("archive");
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(40));
    let archived = pbx.wait_event("recording_archived", 1, Duration::from_secs(20));
    let kept = pbx.wait_event("recording_kept", 1, Duration::from_secs(1));
    let opus = archived[0]["file"].as_str().unwrap().to_string();
    assert!(opus.ends_with(".opus"));
    let files = pbx.spool_files();
    assert_eq!(files.len(), 1, "only the archive remains: {files:?}");
    assert_eq!(files[0], pbx.host_path(&opus));
    // Players read it: opusinfo from Debian's opus-tools.
    let info = in_tree(&pbx, &["opusinfo", &opus]);
    let text = String::from_utf8_lossy(&info.stdout).into_owned();
    assert!(info.status.success() && text.contains("Playback length"), "{text}");
    let len = text.lines().find_map(|l| l.trim().strip_prefix("Playback length: ")).unwrap();
    let (m, rest) = len.split_once('m').unwrap();
    let secs: f64 = m.parse::<f64>().unwrap() * 60.0
        + rest.trim_start_matches(':').trim_end_matches('s').parse::<f64>().unwrap();
    let expected = kept[0]["duration_ms"].as_u64().unwrap() as f64 / 1000.0;
    assert!(
        expected > 4.0 && (secs - expected).abs() < 0.05,
        "opusinfo says {secs} s, the audit log {expected} s"
    );
    assert!(text.contains("CALLCONSENT_PROFILE=arch"), "{text}");
    assert!(text.contains("CALLCONSENT_AGENT=Local/agent@test"), "{text}");
    // The DPO's check: tags and length against the audit log, audit hash included.
    let v = dpo_tool(&[
        "archive",
        "verify",
        pbx.host_path(&opus).to_str().unwrap(),
        pbx.audit_path().to_str().unwrap(),
    ]);
    assert!(v.status.success(), "{v:?}");
    // The paused span decodes to silence.
    let wav = format!("{}/decoded.wav", pbx.cdir);
    let dec = in_tree(&pbx, &["opusdec", "--quiet", "--rate", "8000", &opus, &wav]);
    assert!(dec.status.success(), "{dec:?}");
    assert_quiet_span(&pbx.host_path(&wav), 1500, 64);
    // 9.6x and more smaller than the WAV it replaced.
    let (w, o) =
        (archived[0]["wav_bytes"].as_u64().unwrap(), archived[0]["opus_bytes"].as_u64().unwrap());
    assert!(w >= 8 * o, "WAV {w} bytes, Opus {o} bytes");
    // A forged tag fails the check.
    let forged = std::fs::read(pbx.host_path(&opus)).unwrap();
    let pos = forged.windows(17).position(|w| w == b"CALLCONSENT_AGENT").unwrap();
    let mut forged = forged;
    forged[pos + 18] = b'X';
    let fake = pbx.path("forged.opus");
    std::fs::write(&fake, forged).unwrap();
    let v = dpo_tool(&[
        "archive",
        "verify",
        fake.to_str().unwrap(),
        pbx.audit_path().to_str().unwrap(),
    ]);
    assert_eq!(v.status.code(), Some(1), "{v:?}");
    pbx.assert_alive();
}

/// Leaves, in the kept tree, what a run killed mid-archive leaves: a WAV and its sidecar.
fn interrupted_work(pbx: &Pbx, stem: &str) -> std::path::PathBuf {
    let dir = pbx.path("spool/callconsent/kept/2026/11/22");
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join(format!("{stem}.wav"));
    sox(&[
        "-n",
        "-r",
        "8000",
        "-c",
        "1",
        "-b",
        "16",
        wav.to_str().unwrap(),
        "synth",
        "3",
        "sine",
        "440",
    ]);
    let side = serde_json::json!({ "call": "1763800000.5", "channel": "Local/in@test-00000001;2", "tags": [["CALLCONSENT_CALL", "1763800000.5"], ["CALLCONSENT_FILE", format!("{stem}.wav")]], "audit_hash": "00" });
    std::fs::write(dir.join(format!("{stem}.wav.tags.json")), side.to_string()).unwrap();
    wav
}

#[test]
fn work_a_crash_interrupted_is_resumed_at_load() {
    let mut pbx = start("resume");
    let wav = interrupted_work(&pbx, "cc-1763800000.6");
    pbx.kill9_and_restart();
    let archived = pbx.wait_event("recording_archived", 1, Duration::from_secs(20));
    assert!(archived[0]["file"].as_str().unwrap().ends_with("cc-1763800000.6.opus"));
    assert!(!wav.exists(), "the WAV stays after a resumed archive");
    assert!(wav.with_extension("opus").is_file());
    assert!(!pbx.path("spool/callconsent/kept/2026/11/22/cc-1763800000.6.wav.tags.json").exists());
    pbx.assert_alive();
}

#[test]
fn a_failed_encode_leaves_the_wav_intact() {
    let mut pbx = start("encode-fail");
    let wav = interrupted_work(&pbx, "cc-1763800000.8");
    let before = std::fs::read(&wav).unwrap();
    // The archive cannot be written: a directory stands where its temporary file goes. (As
    // root, permission bits do not stop a write, and the tests mount nothing on the host.)
    std::fs::create_dir_all(wav.with_extension("opus.tmp")).unwrap();
    pbx.kill9_and_restart();
    let failed = pbx.wait_event("archive_failed", 1, Duration::from_secs(20));
    assert!(failed[0]["reason"].as_str().unwrap().contains("opus.tmp"), "{failed:?}");
    assert_eq!(std::fs::read(&wav).unwrap(), before, "the WAV must stay intact");
    assert!(!wav.with_extension("opus").exists());
    pbx.assert_alive();
}
