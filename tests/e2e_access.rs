//! Recordings nobody on the PBX can read (issue 12) on a real Asterisk: kept calls are archived
//! encrypted to the DPO's age recipient (only `.opus.age` remains, the PBX holds no identity),
//! `callconsent listen` opens them with the identity and logs each access, the listening bound
//! refuses the (max+1)th listen of an agent's calls, a coach is refused another team's agent,
//! and a caller's two calls (national and E.164 forms of one number) are found and erased with
//! the audit chain still verifying.
mod harness;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use age::secrecy::ExposeSecret;
use harness::*;

struct Dpo {
    /// Inside the chroot, outside the PBX's own directories.
    cdir: String,
    host: PathBuf,
    recipient: String,
}

impl Drop for Dpo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.host);
    }
}

fn dpo() -> Dpo {
    let id = age::x25519::Identity::generate();
    let cdir = format!("/var/tmp/cc-dpo-{}", std::process::id());
    let host = sandbox_root().join(cdir.trim_start_matches('/'));
    let _ = std::fs::remove_dir_all(&host);
    std::fs::create_dir_all(&host).expect("create the DPO's directory");
    std::fs::write(host.join("dpo.key"), format!("{}\n", id.to_string().expose_secret()))
        .expect("write the identity");
    let other = age::x25519::Identity::generate();
    std::fs::write(host.join("other.key"), format!("{}\n", other.to_string().expose_secret()))
        .expect("write a stranger's identity");
    Dpo { cdir, host, recipient: id.to_public().to_string() }
}

fn dialplan() -> String {
    let tone = sound("agent-880-2s", 880, 2.0);
    format!(
        "[test]\nexten => national,1,Answer()\n same => n,Set(CALLERID(num)=0612345678)\n same => n,CallConsent(acc)\n same => n,Dial(Local/agent@test)\n\
         exten => e164,1,Answer()\n same => n,Set(CALLERID(num)=+33612345678)\n same => n,CallConsent(acc)\n same => n,Dial(Local/agent2@test)\n\
         exten => agent,1,Answer()\n same => n,Playback({tone})\n same => n,Playback({tone})\n same => n,Hangup()\n\
         exten => agent2,1,Answer()\n same => n,Playback({tone})\n same => n,Playback({tone})\n same => n,Hangup()\n\
         exten => dev,1,Wait(60)\n"
    )
}

fn start(name: &str, dpo: &Dpo) -> Pbx {
    let conf = consent_conf_opus(&profile("acc", 100, "start_tone = off")).replace(
        "archive = opus\n",
        &format!(
            "archive = opus\nencrypt_to = {}\ndefault_country = FR\n\n[access]\nlisten_period = month\nmax_listens_per_agent = 2\n\
             dpo = claire\ncoach = marc: Local/agent@test\n",
            dpo.recipient
        ),
    );
    // As Debian runs it: Asterisk as the asterisk user, the DPO's tool as root.
    let pbx = Pbx::builder(name)
        .file("callconsent.conf", &conf)
        .file("extensions.conf", &dialplan())
        .as_asterisk_user()
        .start();
    // The DPO's tool runs on the PBX's tree (the paths the audit log names).
    std::fs::copy(project_dir().join("target/release/callconsent"), pbx.path("callconsent"))
        .expect("copy the DPO's tool");
    pbx
}

fn tool(pbx: &Pbx, args: &[&str]) -> Output {
    Command::new("chroot")
        .arg(&pbx.root)
        .arg(format!("{}/callconsent", pbx.cdir))
        .args(args)
        .args([
            "--config",
            &format!("{}/etc/callconsent.conf", pbx.cdir),
            "--secret",
            &format!("{}/db/callconsent/secret", pbx.cdir),
        ])
        .output()
        .expect("run the DPO's tool in the sandbox")
}

fn out(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn access_log(pbx: &Pbx) -> Vec<serde_json::Value> {
    std::fs::read_to_string(pbx.path("log/callconsent/access.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an access line is JSON"))
        .collect()
}

#[test]
fn kept_calls_are_encrypted_listened_within_bounds_and_erased_on_request() {
    let dpo = dpo();
    let mut pbx = start("access", &dpo);
    pbx.originate("Local/national@test", "dev@test");
    pbx.originate("Local/e164@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(40));
    let archived = pbx.wait_event("recording_archived", 2, Duration::from_secs(30));
    let kept = pbx.wait_event("recording_kept", 2, Duration::from_secs(1));

    // Only .opus.age under the spool: no WAV, no plaintext Opus.
    let files = pbx.spool_files();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().all(|f| f.to_string_lossy().ends_with(".opus.age")), "{files:?}");
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        assert!(
            bytes.starts_with(b"age-encryption.org/v1") && !bytes.windows(4).any(|w| w == b"OggS"),
            "{}: encrypted",
            f.display()
        );
    }
    // The audit lines name the recipient's fingerprint and the number's keyed hash, never the number.
    let fp = callconsent_core::policy::recipient_fingerprint(&dpo.recipient);
    assert!(kept.iter().all(|k| k["encrypted_to"] == serde_json::json!([fp])), "{kept:?}");
    assert_eq!(
        kept[0]["number_hash"], kept[1]["number_hash"],
        "0612345678 and +33612345678 are one caller"
    );
    let audit_text = std::fs::read_to_string(pbx.audit_path()).unwrap();
    assert!(!audit_text.contains("612345678"), "no number in the audit log");
    // The PBX's files hold no identity (its configuration, spool, logs, state).
    for f in ["etc", "spool", "log", "db", "run"].iter().flat_map(|d| files_under(&pbx.path(d))) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(15).any(|w| w == b"AGE-SECRET-KEY-"),
            "{} holds an identity",
            f.display()
        );
    }
    assert!(!pbx.messages().contains("encrypt_to is not set"), "no R11 warning when encrypting");

    let by_agent = |agent: &str| -> (String, u64) {
        let k = kept
            .iter()
            .find(|k| k["agent"] == agent)
            .unwrap_or_else(|| panic!("no recording of {agent}: {kept:?}"));
        let a = archived.iter().find(|a| a["call"] == k["call"]).expect("its archive");
        (
            a["file"].as_str().unwrap().rsplit('/').next().unwrap().to_string(),
            k["duration_ms"].as_u64().unwrap(),
        )
    };
    let (anna, anna_ms) = by_agent("Local/agent@test");
    let (other, _) = by_agent("Local/agent2@test");
    let key = format!("{}/dpo.key", dpo.cdir);

    // The DPO listens with the identity: decoded, length within 50 ms of the audit line, logged.
    let o = tool(
        &pbx,
        &[
            "listen",
            &anna,
            "--identity",
            &key,
            "--as",
            "claire",
            "--purpose",
            "quality audit",
            "--player",
            "cat >/dev/null",
        ],
    );
    assert!(o.status.success(), "{}", out(&o));
    let text = out(&o);
    let ms: u64 = text
        .split(" ms (the audit log says")
        .next()
        .and_then(|t| t.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no length in: {text}"));
    assert!(
        anna_ms > 3000 && ms.abs_diff(anna_ms) <= 50,
        "decoded {ms} ms, the audit log says {anna_ms} ms"
    );
    let log = access_log(&pbx);
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0]["event"].as_str(), log[0]["person"].as_str(), log[0]["agent"].as_str()),
        (Some("listen"), Some("claire"), Some("Local/agent@test"))
    );
    assert_eq!(
        (log[0]["purpose"].as_str(), log[0]["recording"].as_str()),
        (Some("quality audit"), Some(anna.as_str()))
    );
    // A wrong identity fails cleanly, and nothing is released.
    let o = tool(
        &pbx,
        &[
            "listen",
            &anna,
            "--identity",
            &format!("{}/other.key", dpo.cdir),
            "--as",
            "claire",
            "--purpose",
            "x",
            "--player",
            "cat >/dev/null",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("cannot decrypt"), "{}", out(&o));
    // The coach: the second listen of anna's calls this month is the maximum, the third is refused.
    let o = tool(
        &pbx,
        &[
            "listen",
            &anna,
            "--identity",
            &key,
            "--as",
            "marc",
            "--purpose",
            "coaching",
            "--player",
            "cat >/dev/null",
        ],
    );
    assert!(o.status.success(), "{}", out(&o));
    let o = tool(
        &pbx,
        &[
            "listen",
            &anna,
            "--identity",
            &key,
            "--as",
            "marc",
            "--purpose",
            "coaching",
            "--player",
            "cat >/dev/null",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("max_listens_per_agent = 2"), "{}", out(&o));
    assert_eq!(access_log(&pbx).last().unwrap()["event"], "listen_refused");
    // Another team's agent is refused to the coach.
    let o = tool(
        &pbx,
        &[
            "listen",
            &other,
            "--identity",
            &key,
            "--as",
            "marc",
            "--purpose",
            "coaching",
            "--player",
            "cat >/dev/null",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(out(&o).contains("not in marc's team"), "{}", out(&o));
    let o = tool(&pbx, &["access", "report"]);
    assert!(
        out(&o).lines().any(|l| l.starts_with("Local/agent@test")
            && l.contains("2 listen(s)")
            && l.contains("at the maximum")),
        "{}",
        out(&o)
    );

    // The caller's request: both calls found by either form of the number, both erased.
    let o = tool(&pbx, &["subject", "find", "--number", "06 12 34 56 78"]);
    assert!(out(&o).contains(": 2 call(s), 2 recording(s) on disk"), "{}", out(&o));
    let o = tool(
        &pbx,
        &[
            "subject",
            "erase",
            "--number",
            "+33612345678",
            "--as",
            "claire",
            "--request",
            "GDPR-2026-117",
        ],
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(pbx.spool_files().is_empty(), "{:?}", pbx.spool_files());
    let erased = pbx.wait_event("recording_erased", 2, Duration::from_secs(1));
    assert!(erased.iter().all(|e| e["request"] == "GDPR-2026-117"), "{erased:?}");
    // The chain verifies with the key, across the module's lines and the tool's.
    let secret = pbx.path("db/callconsent/secret");
    let v = dpo_tool(&[
        "audit",
        "verify",
        pbx.audit_path().to_str().unwrap(),
        "--key",
        secret.to_str().unwrap(),
    ]);
    assert!(v.status.success(), "{}", out(&v));
    let v = dpo_tool(&[
        "audit",
        "verify",
        pbx.path("log/callconsent/access.jsonl").to_str().unwrap(),
        "--key",
        secret.to_str().unwrap(),
    ]);
    assert!(v.status.success(), "{}", out(&v));
    // Rotation: a reload with a new recipient; the next call is encrypted to it alone, and the
    // module goes on writing after the tool's lines: the chain still holds.
    assert!(pbx.rx("callconsent show status").contains(&format!("age, 1 recipient(s): {fp}")));
    let new = age::x25519::Identity::generate();
    std::fs::write(dpo.host.join("new.key"), format!("{}\n", new.to_string().expose_secret()))
        .unwrap();
    let conf = std::fs::read_to_string(pbx.path("etc/callconsent.conf"))
        .unwrap()
        .replace(&dpo.recipient, &new.to_public().to_string());
    std::fs::write(pbx.path("etc/callconsent.conf"), conf).unwrap();
    pbx.rx("module reload res_callconsent.so");
    pbx.wait_log("the rotation", Duration::from_secs(5), |l| {
        l.contains("new archives are encrypted to 1 recipient(s)")
    });
    pbx.originate("Local/national@test", "dev@test");
    let archived = pbx.wait_event("recording_archived", 3, Duration::from_secs(40));
    let third = pbx.host_path(archived[2]["file"].as_str().unwrap());
    assert_eq!(
        archived[2]["encrypted_to"],
        serde_json::json!([callconsent_core::policy::recipient_fingerprint(
            &new.to_public().to_string()
        )])
    );
    let verify = |key: &str| {
        dpo_tool(&[
            "archive",
            "verify",
            third.to_str().unwrap(),
            pbx.audit_path().to_str().unwrap(),
            "--identity",
            dpo.host.join(key).to_str().unwrap(),
        ])
    };
    let o = verify("dpo.key");
    assert!(
        o.status.code() == Some(1) && out(&o).contains("cannot decrypt"),
        "the old identity cannot open a new file: {}",
        out(&o)
    );
    let o = verify("new.key");
    assert!(o.status.success() && out(&o).contains("tags match the audit log"), "{}", out(&o));
    let v = dpo_tool(&[
        "audit",
        "verify",
        pbx.audit_path().to_str().unwrap(),
        "--key",
        secret.to_str().unwrap(),
    ]);
    assert!(v.status.success(), "{}", out(&v));
    pbx.assert_alive();
}

#[test]
fn without_encrypt_to_the_module_warns_and_names_r11() {
    let pbx = Pbx::builder("access-plain")
        .file("callconsent.conf", &consent_conf_opus(&profile("acc", 20, "")))
        .file("extensions.conf", "[test]\n")
        .start();
    let line = pbx.wait_log("the R11 warning", Duration::from_secs(10), |m| {
        m.contains("encrypt_to is not set")
    });
    assert!(line.contains("R11"), "{line}");
}
