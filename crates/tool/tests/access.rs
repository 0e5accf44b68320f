//! `listen`, `export`, `access report` and `subject find|export|erase` on what the module writes
//! (its own audit writer and archive encoder, encrypted to a recipient): the rules, the access
//! log and the erasure, without a PBX (tests/e2e_access.rs does it on a real Asterisk).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use age::secrecy::ExposeSecret;
use callconsent_core::audit::AuditEvent;
use callconsent_core::policy;
use callconsent_runtime::audit::{record, AuditLog, Options};
use serde_json::{json, Value};

struct Site {
    dir: PathBuf,
    conf: PathBuf,
    secret: PathBuf,
    identity: PathBuf,
}

fn run(site: &Site, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callconsent"))
        .args(args)
        .args(["--config", site.conf.to_str().unwrap(), "--secret", site.secret.to_str().unwrap()])
        .output()
        .expect("run callconsent")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn wav(path: &Path, secs: usize) {
    let tone: Vec<i16> =
        (0..secs * 8000).map(|i| ((i as f32 * 0.3).sin() * 6000.0) as i16).collect();
    std::fs::write(path, callconsent_runtime::archive::wav_bytes(8000, &tone)).unwrap();
}

/// What the module leaves after three kept calls: two of +33612345678 (anna, bob), one of
/// another caller (anna); archives encrypted to the DPO's recipient.
fn site(name: &str, max: u64) -> Site {
    let dir = std::env::temp_dir().join(format!("cc-tool-access-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("kept")).unwrap();
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let identity = dir.join("dpo.key");
    std::fs::write(
        &identity,
        format!("# created: test\n# public key: {recipient}\n{}\n", id.to_string().expose_secret()),
    )
    .unwrap();
    let secret = dir.join("secret");
    std::fs::write(&secret, [7u8; 32]).unwrap();
    let conf = dir.join("callconsent.conf");
    std::fs::write(
        &conf,
        format!(
            "[general]\nspool_dir = {d}\naudit_log = {d}/log/audit.jsonl\nencrypt_to = {recipient}\ndefault_country = FR\n\n\
             [access]\nlisten_period = week\nmax_listens_per_agent = {max}\nmin_listens_per_agent = 1\ndpo = claire\n\
             coach = marc: PJSIP/anna\nagent = bob: PJSIP/bob\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let s = [7u8; 32];
    let log = AuditLog::open_with(
        &dir.join("log/audit.jsonl"),
        Options {
            key: Some((callconsent_runtime::audit::audit_key(&s), policy::key_id(&s))),
            publish: None,
            pbx: Some("asterisk".into()),
            wake: None,
        },
    )
    .unwrap();
    for (call, number, agent) in [
        ("1764590000.1", "0612345678", "PJSIP/anna"),
        ("1764590000.2", "+33 6 12 34 56 78", "PJSIP/bob"),
        ("1764590000.3", "0145000000", "PJSIP/anna"),
    ] {
        let h = policy::number_hash(&s, number, Some("FR"));
        let w = dir.join(format!("kept/cc-{call}.wav"));
        wav(&w, 2);
        let mut f = serde_json::Map::new();
        f.insert("number_hash".into(), json!(h));
        log.sender().send(record(call, "PJSIP/caller-0001", AuditEvent::Selected, f));
        let mut f = serde_json::Map::new();
        for (k, v) in [
            ("file", json!(w.display().to_string())),
            ("files", json!([w.display().to_string()])),
            ("duration_ms", json!(2000)),
            ("agent", json!(agent)),
            ("number_hash", json!(h)),
            ("pause_spans_ms", json!("")),
        ] {
            f.insert(k.into(), v);
        }
        let kept = log
            .sender()
            .send_acked(record(call, "PJSIP/caller-0001", AuditEvent::RecordingKept, f))
            .recv()
            .unwrap();
        let out = w.with_extension("opus.age");
        let tags = vec![
            ("CALLCONSENT_CALL".to_string(), call.to_string()),
            ("CALLCONSENT_AUDIT".to_string(), kept),
        ];
        callconsent_runtime::archive::encode(
            &w,
            &out,
            &tags,
            16000,
            std::slice::from_ref(&recipient),
        )
        .unwrap();
        std::fs::remove_file(&w).unwrap();
        let mut f = serde_json::Map::new();
        f.insert("file".into(), json!(out.display().to_string()));
        f.insert("from".into(), json!(w.display().to_string()));
        let sha = callconsent_runtime::access::sha256_hex(&std::fs::read(&out).unwrap());
        f.insert("sha256".into(), json!(sha));
        log.sender().send(record(call, "PJSIP/caller-0001", AuditEvent::RecordingArchived, f));
    }
    drop(log);
    Site { dir, conf, secret, identity }
}

fn access_lines(site: &Site) -> Vec<Value> {
    std::fs::read_to_string(site.dir.join("log/access.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_listen_is_logged_bounded_and_reaches_only_what_the_role_owns() {
    let site = site("listen", 2);
    let id = site.identity.to_str().unwrap();
    let rec = "cc-1764590000.1.opus.age";
    // The coach of anna's team listens (to stdout: not a terminal here).
    let o = run(&site, &["listen", rec, "--identity", id, "--as", "marc", "--purpose", "coaching"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(o.stdout.starts_with(b"OggS"), "the decrypted Ogg Opus stream");
    assert!(text(&o).contains("2000 ms (the audit log says 2000 ms)"), "{}", text(&o));
    let l = access_lines(&site);
    assert_eq!(l.len(), 1);
    assert_eq!(
        (
            l[0]["event"].as_str(),
            l[0]["person"].as_str(),
            l[0]["agent"].as_str(),
            l[0]["purpose"].as_str()
        ),
        (Some("listen"), Some("marc"), Some("PJSIP/anna"), Some("coaching"))
    );
    assert!(l[0]["mac"].is_string(), "keyed like the audit log");
    // Another team's agent: refused, logged.
    let o = run(
        &site,
        &[
            "listen",
            "cc-1764590000.2.opus.age",
            "--identity",
            id,
            "--as",
            "marc",
            "--purpose",
            "coaching",
            "--player",
            "cat >/dev/null",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("not in marc's team"), "{}", text(&o));
    assert_eq!(access_lines(&site).last().unwrap()["event"], "listen_refused");
    // An export counts as a listen: the second of anna's calls reaches the maximum, the third is refused.
    let out = site.dir.join("out.opus");
    let o = run(
        &site,
        &[
            "export",
            "cc-1764590000.3.opus.age",
            "--identity",
            id,
            "--as",
            "marc",
            "--purpose",
            "coaching",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(std::fs::read(&out).unwrap().starts_with(b"OggS"));
    let o = run(
        &site,
        &[
            "listen",
            rec,
            "--identity",
            id,
            "--as",
            "marc",
            "--purpose",
            "again",
            "--player",
            "cat >/dev/null",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("max_listens_per_agent = 2"), "{}", text(&o));
    // An export is never a WAV.
    let o = run(
        &site,
        &[
            "export",
            rec,
            "--identity",
            id,
            "--as",
            "claire",
            "--purpose",
            "x",
            "--out",
            site.dir.join("x.wav").to_str().unwrap(),
        ],
    );
    assert!(o.status.code() == Some(1) && text(&o).contains("Ogg Opus only"), "{}", text(&o));
    // The agent reaches their own call, not anna's; a wrong identity fails cleanly.
    let o = run(
        &site,
        &[
            "listen",
            "cc-1764590000.2.opus.age",
            "--identity",
            id,
            "--as",
            "bob",
            "--purpose",
            "self-review",
            "--player",
            "cat >/dev/null",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = run(
        &site,
        &[
            "listen",
            rec,
            "--identity",
            id,
            "--as",
            "bob",
            "--purpose",
            "x",
            "--player",
            "cat >/dev/null",
        ],
    );
    assert!(
        o.status.code() == Some(1) && text(&o).contains("only their own calls"),
        "{}",
        text(&o)
    );
    let other = site.dir.join("other.key");
    std::fs::write(
        &other,
        format!("{}\n", age::x25519::Identity::generate().to_string().expose_secret()),
    )
    .unwrap();
    let o = run(
        &site,
        &[
            "listen",
            "cc-1764590000.2.opus.age",
            "--identity",
            other.to_str().unwrap(),
            "--as",
            "claire",
            "--purpose",
            "x",
            "--player",
            "cat >/dev/null",
        ],
    );
    assert!(o.status.code() == Some(1) && text(&o).contains("cannot decrypt"), "{}", text(&o));
    // The report: anna at the maximum, bob below the minimum (his own listen does not count).
    let o = run(&site, &["access", "report"]);
    let t = text(&o);
    assert!(
        t.lines().any(|l| l.starts_with("PJSIP/anna")
            && l.contains("2 listen(s)")
            && l.contains("at the maximum")),
        "{t}"
    );
    assert!(
        t.lines().any(|l| l.starts_with("PJSIP/bob")
            && l.contains("0 listen(s)")
            && l.contains("below the minimum")),
        "{t}"
    );
    // The access log is a chain audit verify checks, with the key too.
    let log = site.dir.join("log/access.jsonl");
    let v = Command::new(env!("CARGO_BIN_EXE_callconsent"))
        .args(["audit", "verify", log.to_str().unwrap(), "--key", site.secret.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", text(&v));
    let _ = std::fs::remove_dir_all(&site.dir);
}

#[test]
fn a_callers_calls_are_found_exported_and_erased_by_number() {
    let site = site("subject", 0);
    let o = run(&site, &["subject", "find", "--number", "06 12 34 56 78"]);
    let t = text(&o);
    assert!(o.status.success() && t.starts_with("subject +33612345678 (number hash "), "{t}");
    assert!(t.contains(": 2 call(s), 2 recording(s) on disk"), "{t}");
    assert!(
        t.contains("recording call 1764590000.1")
            && t.contains("recording call 1764590000.2")
            && !t.contains("1764590000.3"),
        "{t}"
    );
    assert!(
        !t.contains("0612345678")
            && !std::fs::read_to_string(site.dir.join("log/audit.jsonl"))
                .unwrap()
                .contains("612345678"),
        "the number is never in a log"
    );
    // Only the DPO serves a request.
    let o = run(
        &site,
        &["subject", "erase", "--number", "0612345678", "--as", "marc", "--request", "REQ-1"],
    );
    assert!(o.status.code() == Some(1) && text(&o).contains("served by the DPO"), "{}", text(&o));
    let bundle = site.dir.join("bundle");
    let o = run(
        &site,
        &[
            "subject",
            "export",
            "--number",
            "+33612345678",
            "--as",
            "claire",
            "--request",
            "REQ-1",
            "--identity",
            site.identity.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut names: Vec<String> = std::fs::read_dir(&bundle)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["README.txt", "audit.jsonl", "cc-1764590000.1.opus", "cc-1764590000.2.opus"]
    );
    // Without --as the Unix user running the tool is named.
    let o = run(
        &site,
        &[
            "subject",
            "export",
            "--number",
            "0612345678",
            "--ref",
            "REQ-1b",
            "--identity",
            site.identity.to_str().unwrap(),
            "--out",
            site.dir.join("bundle2").to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(access_lines(&site).last().unwrap()["person"]
        .as_str()
        .is_some_and(|p| p.starts_with("unix:")));
    let o = run(
        &site,
        &["subject", "erase", "--number", "0033612345678", "--as", "claire", "--request", "REQ-2"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        !site.dir.join("kept/cc-1764590000.1.opus.age").exists()
            && !site.dir.join("kept/cc-1764590000.2.opus.age").exists()
    );
    assert!(
        site.dir.join("kept/cc-1764590000.3.opus.age").exists(),
        "another caller's recording stays"
    );
    let audit = std::fs::read_to_string(site.dir.join("log/audit.jsonl")).unwrap();
    let erased: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["event"] == "recording_erased")
        .collect();
    assert_eq!(erased.len(), 2);
    assert!(erased
        .iter()
        .all(|v| v["request"] == "REQ-2" && v["by"] == "claire" && v["mac"].is_string()));
    let v = Command::new(env!("CARGO_BIN_EXE_callconsent"))
        .args([
            "audit",
            "verify",
            site.dir.join("log/audit.jsonl").to_str().unwrap(),
            "--key",
            site.secret.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(v.status.success(), "the chain goes on: {}", text(&v));
    let o = run(&site, &["subject", "find", "--number", "0612345678"]);
    assert!(
        text(&o).contains(": 2 call(s), 0 recording(s) on disk")
            && text(&o).contains("gone (recording_erased)"),
        "{}",
        text(&o)
    );
    // R8: the agent's own record lists what exists of them now and every access.
    let o = run(&site, &["agent", "PJSIP/anna"]);
    let t = text(&o);
    assert!(
        t.contains("\"recording\":")
            && t.contains("cc-1764590000.3.opus.age")
            && t.contains("1 recording(s) of PJSIP/anna on disk now"),
        "{t}"
    );
    let _ = std::fs::remove_dir_all(&site.dir);
}

/// Issue 24 (6): with room for one listen of anna's calls, six listens of the coach sent at once
/// let exactly one through (the count, the decryption and the access line are one step).
#[test]
fn listens_sent_at_once_cannot_race_past_the_bound() {
    let site = site("race", 1);
    let id = site.identity.to_str().unwrap();
    let outs: Vec<Output> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let site = &site;
                s.spawn(move || {
                    let rec = if i % 2 == 0 {
                        "cc-1764590000.1.opus.age"
                    } else {
                        "cc-1764590000.3.opus.age"
                    };
                    run(
                        site,
                        &["listen", rec, "--identity", id, "--as", "marc", "--purpose", "coaching"],
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("a listen")).collect()
    });
    let ok = outs.iter().filter(|o| o.status.success()).count();
    let said: Vec<_> = outs.iter().map(|o| String::from_utf8_lossy(&o.stderr)).collect();
    assert_eq!(ok, 1, "{said:?}");
    let lines = access_lines(&site);
    let listens = lines.iter().filter(|l| l["event"] == "listen").count();
    let refused = lines.iter().filter(|l| l["event"] == "listen_refused").count();
    assert_eq!((listens, refused), (1, 5), "{lines:?}");
}

/// Issue 24 (9): an archive replaced after it was written, by one that decrypts and whose tags
/// all match (the same audio encoded again, with the same tags), is refused by `listen`: its
/// bytes are not those its `recording_archived` line holds the SHA-256 of.
#[test]
fn a_replaced_archive_is_refused_by_its_sha256() {
    let site = site("replaced", 5);
    let id = site.identity.to_str().unwrap();
    let rec = "cc-1764590000.1.opus.age";
    let archive = site.dir.join("kept").join(rec);
    let kept = std::fs::read_to_string(site.dir.join("log/audit.jsonl"))
        .unwrap()
        .lines()
        .find(|l| l.contains("\"recording_kept\"") && l.contains("1764590000.1"))
        .map(callconsent_runtime::audit::line_hash)
        .expect("the kept line");
    let wav_path = site.dir.join("kept/cc-1764590000.1.wav");
    wav(&wav_path, 2);
    let recipient = {
        let text = std::fs::read_to_string(&site.identity).unwrap();
        text.lines().find_map(|l| l.strip_prefix("# public key: ")).unwrap().to_string()
    };
    let replacement = site.dir.join("replacement.opus.age");
    callconsent_runtime::archive::encode(
        &wav_path,
        &replacement,
        &[
            ("CALLCONSENT_CALL".to_string(), "1764590000.1".to_string()),
            ("CALLCONSENT_AUDIT".to_string(), kept),
        ],
        16000,
        std::slice::from_ref(&recipient),
    )
    .unwrap();
    std::fs::remove_file(&wav_path).unwrap();
    std::fs::rename(&replacement, &archive).unwrap();
    let o = run(&site, &["listen", rec, "--identity", id, "--as", "claire", "--purpose", "audit"]);
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("SHA-256"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
