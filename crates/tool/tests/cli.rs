//! The `callconsent` binary as scripts and the DPO see it: its subcommands, its outputs and its
//! exit codes (0 success, 1 a check failed or a file could not be read, 2 usage error).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use callconsent_core::audit::AuditEvent;
use callconsent_runtime::audit::{record, AuditLog};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_callconsent")).args(args).output().expect("run callconsent")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A directory of its own per test and process, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("callconsent-tool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An audit log of `n` chained lines, written by the module's own writer.
fn audit_log(path: &Path, n: usize) {
    let log = AuditLog::open(path).unwrap();
    for i in 0..n {
        let mut facts = serde_json::Map::new();
        facts.insert(
            "agent".into(),
            if i % 2 == 0 { "PJSIP/anna".into() } else { "PJSIP/bob".into() },
        );
        log.sender().send(record("1.1", "Local/x", AuditEvent::Selected, facts));
    }
    drop(log); // joins the writer: every line is on disk
}

#[test]
fn help_lists_every_subcommand_and_the_exit_codes() {
    let o = run(&["--help"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let text = stdout(&o);
    for cmd in [
        "audit",
        "agent",
        "describe",
        "retention",
        "draw",
        "archive",
        "listen",
        "export",
        "access",
        "subject",
        "identity",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(&format!("{cmd} "))),
            "{cmd} missing from:\n{text}"
        );
    }
    for req in ["R5", "R7", "R8", "R14", "R15"] {
        assert!(text.contains(req), "{req} missing from:\n{text}");
    }
    assert!(text.contains("Exit codes:") && text.contains("  2  usage error"), "{text}");
}

#[test]
fn every_command_has_its_help() {
    for args in [
        &["audit", "verify", "--help"][..],
        &["agent", "--help"],
        &["describe", "--help"],
        &["retention", "--help"],
        &["draw", "--help"],
        &["archive", "verify", "--help"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {o:?}");
        let text = stdout(&o);
        assert!(
            text.contains(&format!("Usage: callconsent {}", args[..args.len() - 1].join(" "))),
            "{text}"
        );
        assert!(text.contains("Exit codes:"), "{args:?}: {text}");
    }
    let o = run(&["archive", "verify", "--help"]);
    assert!(stdout(&o).contains("<FILE.opus> <AUDIT>..."), "{o:?}");
    let o = run(&["describe", "--help"]);
    assert!(stdout(&o).contains("[possible values: fr, en]"), "{o:?}");
}

#[test]
fn version_is_printed() {
    let o = run(&["--version"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), format!("callconsent {}\n", env!("CARGO_PKG_VERSION")));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["audit"],
        &["audit", "verify"],
        &["listen", "cc-1.opus.age"],
        &["listen", "cc-1.opus.age", "--as", "marc"],
        &["export", "cc-1.opus.age", "--purpose", "x"],
        &["access"],
        &["subject", "find"],
        &["subject", "erase", "--number", "0612345678", "--as", "claire"],
        &["describe", "x.conf", "--lang", "de"],
        &["retention", "/tmp", "ninety"],
        &["draw", "1.1", "secret"],
        &["draw", "1.1", "secret", "101"],
        &["archive", "verify", "x.opus"],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {o:?}");
        assert!(stdout(&o).is_empty(), "{args:?}: usage goes to stderr: {o:?}");
    }
    let o = run(&["describe", "x.conf", "--lang", "de"]);
    assert!(stderr(&o).contains("[possible values: fr, en]"), "{o:?}");
}

#[test]
fn audit_verify_passes_an_intact_chain_across_files() {
    let dir = TempDir::new("audit-ok");
    let (rotated, current) = (dir.path("audit-2026-11-21.jsonl"), dir.path("audit.jsonl"));
    // As the writer rotates at midnight: the first lines move to the dated file, the chain
    // (and audit.jsonl.head, the newest line's hash) goes on in audit.jsonl.
    audit_log(&current, 5);
    let text = std::fs::read_to_string(&current).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&rotated, lines[..2].join("\n") + "\n").unwrap();
    std::fs::write(&current, lines[2..].join("\n") + "\n").unwrap();
    let o = run(&["audit", "verify", rotated.to_str().unwrap(), current.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o), "audit: 5 lines, chain intact\n");
    // In the wrong order the chain does not run across.
    let o = run(&["audit", "verify", current.to_str().unwrap(), rotated.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).starts_with(&format!("{}:1: ", current.display())), "{o:?}");
}

#[test]
fn audit_verify_finds_an_edited_line() {
    let dir = TempDir::new("audit-edit");
    let log = dir.path("audit.jsonl");
    audit_log(&log, 3);
    let ok = run(&["audit", "verify", log.to_str().unwrap()]);
    assert_eq!(
        (ok.status.code(), stdout(&ok)),
        (Some(0), "audit: 3 lines, chain intact\n".to_string()),
        "{ok:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("Local/x", "Local/y", 1)).unwrap();
    let o = run(&["audit", "verify", log.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert_eq!(
        stdout(&o),
        format!(
            "{}:2: the line before it was edited, removed or inserted (prev does not match)\n",
            log.display()
        )
    );
    // A file that cannot be read is a failed check too.
    let missing = dir.path("missing.jsonl");
    let o = run(&["audit", "verify", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).starts_with(&format!("{}:0: cannot read", missing.display())), "{o:?}");
}

#[test]
fn audit_verify_never_calls_a_keyed_log_intact_without_its_key() {
    // The forgery of issue 23: an opt_out line removed from a keyed log and the SHA-256 chain
    // (prev of each later line, and the .head) recomputed by whoever can write the file.
    let dir = TempDir::new("audit-keyed-nokey");
    let (log, secret) = (dir.path("audit.jsonl"), dir.path("secret"));
    std::fs::write(&secret, b"0123456789abcdef0123456789abcdef").unwrap();
    let key = callconsent_runtime::audit::audit_key(b"0123456789abcdef0123456789abcdef");
    {
        let opts = callconsent_runtime::audit::Options {
            key: Some((key, "k1".into())),
            publish: None,
            pbx: None,
            wake: None,
        };
        let w = AuditLog::open_with(&log, opts).unwrap();
        for ev in [
            AuditEvent::Selected,
            AuditEvent::OptOut,
            AuditEvent::RecordingDeleted,
            AuditEvent::Selected,
        ] {
            w.sender().send(record("1.1", "Local/x", ev, serde_json::Map::new()));
        }
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let mut prev = String::new();
    let mut forged = String::new();
    for line in text.lines().filter(|l| !l.contains("\"opt_out\"")) {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        v["prev"] = serde_json::Value::String(prev.clone());
        let out = v.to_string();
        prev = callconsent_runtime::audit::line_hash(&out);
        forged.push_str(&out);
        forged.push('\n');
    }
    assert_eq!(forged.lines().count(), text.lines().count() - 1, "the opt_out line was removed");
    std::fs::write(&log, forged).unwrap();
    std::fs::write(callconsent_runtime::audit::head_path(&log), format!("{prev}\n")).unwrap();

    let o = run(&["audit", "verify", log.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "a keyed log without --key: exit 3, never 0: {o:?}");
    let out = stdout(&o);
    assert!(!out.contains("intact"), "{out}");
    assert!(
        out.contains("NOT verified")
            && out.contains("keyed MACs of 3 lines were not checked")
            && out.contains("--key"),
        "{out}"
    );
    // With the key the forgery is found.
    let o = run(&["audit", "verify", "--key", secret.to_str().unwrap(), log.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(stdout(&o).contains("mac does not match"), "{o:?}");
    // The exit code is documented.
    let h = run(&["audit", "verify", "--help"]);
    assert!(stdout(&h).contains("  3  the hash chain holds but the log is keyed"), "{h:?}");
}

#[test]
fn agent_prints_the_records_concerning_one_agent() {
    let dir = TempDir::new("agent");
    let log = dir.path("audit.jsonl");
    audit_log(&log, 3);
    let o = run(&["agent", "PJSIP/anna", log.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let lines: Vec<String> = stdout(&o).lines().map(str::to_string).collect();
    let expected: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"PJSIP/anna\""))
        .map(str::to_string)
        .collect();
    assert_eq!((lines.len(), &lines), (2, &expected));
    assert_eq!(stderr(&o), "2 record(s) concern PJSIP/anna\n");
    let o = run(&["agent", "PJSIP/anna", dir.path("missing.jsonl").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
}

#[test]
fn draw_replays_a_decision() {
    let dir = TempDir::new("draw");
    let secret = dir.path("secret");
    std::fs::write(&secret, b"0123456789abcdef0123456789abcdef").unwrap();
    let rule = callconsent_core::draw::RULE;
    let bucket =
        callconsent_core::draw::bucket(b"0123456789abcdef0123456789abcdef", "1763800000.12");
    let o = run(&["draw", "1763800000.12", secret.to_str().unwrap(), "100"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        stdout(&o),
        format!("call 1763800000.12: bucket {bucket} < share 100 % ({rule}): selected\n")
    );
    let o = run(&["draw", "1763800000.12", secret.to_str().unwrap(), "0"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(
        stdout(&o),
        format!("call 1763800000.12: bucket {bucket} >= share 0 % ({rule}): not selected\n")
    );
    let o = run(&["draw", "1763800000.12", dir.path("missing").to_str().unwrap(), "20"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
}

#[test]
fn describe_prints_the_description_or_the_error() {
    let dir = TempDir::new("describe");
    let conf = dir.path("callconsent.conf");
    std::fs::write(&conf, "[general]\nretention_days = 60\n").unwrap();
    let en = run(&["describe", conf.to_str().unwrap()]);
    assert_eq!(en.status.code(), Some(0), "{en:?}");
    assert!(stdout(&en).starts_with("Call recording: description of the processing\n"), "{en:?}");
    assert!(stdout(&en).contains("Retention: at most 60 days"), "{en:?}");
    let fr = run(&["describe", conf.to_str().unwrap(), "--lang", "fr"]);
    assert!(stdout(&fr).starts_with("Enregistrement des appels"), "{fr:?}");
    std::fs::write(&conf, "[general]\nbogus = 1\n").unwrap();
    let bad = run(&["describe", conf.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        stderr(&bad).starts_with(&format!("{}:2: [general] bogus: unknown key", conf.display())),
        "{bad:?}"
    );
    let missing = dir.path("missing.conf");
    let o = run(&["describe", missing.to_str().unwrap(), "--lang", "en"]);
    assert_eq!(
        (o.status.code(), stderr(&o)),
        (
            Some(1),
            format!("{}: cannot read: No such file or directory (os error 2)\n", missing.display())
        )
    );
}

#[test]
fn retention_is_a_dry_run() {
    let dir = TempDir::new("retention");
    // Outside the dated tree (kept/YYYY/MM/DD), a file's age is its modification time.
    let day = dir.path("kept/imported");
    std::fs::create_dir_all(&day).unwrap();
    let (old, new) = (day.join("cc-old.wav"), day.join("cc-new.wav"));
    std::fs::write(&old, b"RIFF").unwrap();
    std::fs::write(&new, b"RIFF").unwrap();
    let f = std::fs::File::options().write(true).open(&old).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(100 * 86_400))
        .unwrap();
    drop(f);
    let o = run(&["retention", dir.path("kept").to_str().unwrap(), "90"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(stdout(&o), format!("would delete {} (100 days old)\n", old.display()));
    assert_eq!(stderr(&o), "1 file(s) past 90 days (dry run: nothing deleted)\n");
    assert!(old.exists() && new.exists());
}

#[test]
fn identity_new_creates_a_key_once_and_prints_its_recipient() {
    let dir = TempDir::new("identity");
    let key = dir.path("dpo.key");
    let o = run(&["identity", "new", key.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let recipient = stdout(&o).trim().to_string();
    assert!(
        recipient.starts_with("age1") && recipient.parse::<age::x25519::Recipient>().is_ok(),
        "{recipient}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(std::fs::read_to_string(&key).unwrap().contains("AGE-SECRET-KEY-1"));
    let o = run(&["identity", "recipient", key.to_str().unwrap()]);
    assert!(stdout(&o).starts_with(&recipient), "{o:?}");
    let o = run(&["identity", "new", key.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "never overwritten: {o:?}");
    assert!(stderr(&o).contains("never overwritten"));
}
