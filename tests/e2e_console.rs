//! The DPO's and coaches' console (issue 13) in a real headless Chromium over WebDriver, on
//! recordings a real sandbox Asterisk (as the asterisk user) made and encrypted to the DPO's
//! identity: a coach sees only the team's agents, plays a recording to its end (an access line
//! is written), is refused the (max+1)th listen with the reason and another team's recording by
//! URL; an agent sees only their own calls; the DPO prints the processing record (a PDF with the
//! configured share), erases a caller's recordings, and sees the chain status turn red with the
//! FILE:LINE after a line of the audit log is edited on disk. Screenshots go to doc/console/.
mod harness;

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;
use harness::webdriver::Browser;
use harness::*;

const LONG: Duration = Duration::from_secs(30);

/// The console, started from the built binary in the sandbox (the paths of the audit log are
/// the chroot's); killed on drop.
struct Console {
    child: Child,
    base: String,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn password_line(name: &str, pw: &str) -> String {
    let mut c = Command::new(project_dir().join("target/release/callconsent"))
        .args(["console", "password", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run callconsent console password");
    c.stdin
        .take()
        .expect("stdin")
        .write_all(format!("{pw}\n").as_bytes())
        .expect("write the password");
    let o = c.wait_with_output().expect("callconsent console password");
    assert!(o.status.success(), "console password failed");
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(line.starts_with(&format!("password = {name}: $argon2id$")), "{line}");
    line
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

fn start_console(pbx: &Pbx, identity: &str) -> Console {
    std::fs::copy(project_dir().join("target/release/callconsent"), pbx.path("callconsent"))
        .expect("copy the tool");
    let port = free_tcp_port();
    let mut child = Command::new("chroot")
        .arg(&pbx.root)
        .arg(format!("{}/callconsent", pbx.cdir))
        .args([
            "console",
            "--config",
            &format!("{}/etc/callconsent.conf", pbx.cdir),
            "--secret",
            &format!("{}/db/callconsent/secret", pbx.cdir),
        ])
        .args([
            "--identity",
            identity,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--exports",
            &format!("{}/exports", pbx.cdir),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the console in the sandbox");
    let stderr = child.stderr.take().expect("the console's stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("console: {l}");
            let _ = tx.send(l);
        }
    });
    let t = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(l) if l.contains("console listening on http://") => break,
            _ => {}
        }
        assert!(t.elapsed() < LONG, "the console did not start");
        assert!(child.try_wait().ok().flatten().is_none(), "the console exited");
    }
    Console { child, base: format!("http://127.0.0.1:{port}") }
}

fn access_log(pbx: &Pbx) -> Vec<serde_json::Value> {
    std::fs::read_to_string(pbx.path("log/callconsent/access.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn sign_in(b: &Browser, c: &Console, name: &str, pw: &str) {
    b.delete_cookies();
    b.goto(&format!("{}/signin", c.base));
    b.type_in("input[name=name]", name);
    b.type_in("input[name=password]", pw);
    b.click("#signin");
    b.wait_text(&format!("{name} signed in"), LONG, |t| t.contains(&format!("{name} (")));
}

fn shot(b: &Browser, name: &str) {
    let dir = project_dir().join("doc/console");
    std::fs::create_dir_all(&dir).expect("doc/console");
    b.screenshot(&dir.join(format!("{name}.png")));
}

/// The console's id of a recording: the start of the SHA-256 of its recording_kept line.
fn rec_id(pbx: &Pbx, agent: &str) -> String {
    let text = std::fs::read_to_string(pbx.audit_path()).expect("the audit log");
    let line = text
        .lines()
        .find(|l| {
            l.contains("\"event\":\"recording_kept\"")
                && l.contains(&format!("\"agent\":\"{agent}\""))
        })
        .unwrap_or_else(|| panic!("no recording of {agent}"));
    callconsent_runtime::audit::line_hash(line).chars().take(16).collect()
}

#[test]
fn the_console_shows_plays_bounds_and_erases_in_a_real_browser() {
    let id = age::x25519::Identity::generate();
    let pw = |n: &str| format!("{n}-pass-2026");
    let people = ["claire", "marc", "paul", "anna"].map(|n| password_line(n, &pw(n))).join("\n");
    let conf = consent_conf_opus(&profile("acc", 100, "start_tone = off")).replace(
        "archive = opus\n",
        &format!(
            "archive = opus\nencrypt_to = {}\ndefault_country = FR\ncontroller = Example Telecom SAS, 1 rue de la Paix, Paris\ndpo_contact = dpo@example.test\n\n\
             [access]\nlisten_period = month\nmax_listens_per_agent = 1\ndpo = claire\ncoach = marc: Local/agent@test\ncoach = paul: Local/agent2@test\n\
             agent = anna: Local/agent@test\n{people}\n\n[console]\nmax_failed_signins = 3\n",
            id.to_public()
        ),
    );
    let mut pbx = Pbx::builder("console")
        .file("callconsent.conf", &conf)
        .file("extensions.conf", &dialplan())
        .as_asterisk_user()
        .start();
    // The DPO's identity, in the sandbox but outside the PBX's directories.
    let key_dir = format!("/var/tmp/cc-console-dpo-{}", std::process::id());
    let key_host: PathBuf = pbx.root.join(key_dir.trim_start_matches('/'));
    std::fs::create_dir_all(&key_host).expect("the DPO's directory");
    std::fs::write(key_host.join("dpo.key"), format!("{}\n", id.to_string().expose_secret()))
        .expect("write the identity");
    pbx.originate("Local/national@test", "dev@test");
    pbx.originate("Local/e164@test", "dev@test");
    pbx.wait_idle(Duration::from_secs(40));
    pbx.wait_event("recording_archived", 2, LONG);
    let console = start_console(&pbx, &format!("{key_dir}/dpo.key"));
    let b = Browser::start();
    let (anna_rec, other_rec) =
        (rec_id(&pbx, "Local/agent@test"), rec_id(&pbx, "Local/agent2@test"));

    // A wrong password is refused; the session cookie is HttpOnly (not visible to scripts).
    b.goto(&format!("{}/recordings", console.base));
    b.wait_text("the sign-in page", LONG, |t| t.contains("Sign in"));
    b.type_in("input[name=name]", "marc");
    b.type_in("input[name=password]", "wrong");
    b.click("#signin");
    b.wait_text("the refusal", LONG, |t| t.contains("Wrong name or password"));

    // The coach: only the team's agents.
    sign_in(&b, &console, "marc", &pw("marc"));
    assert_eq!(
        b.script("return document.cookie", vec![]),
        serde_json::json!(""),
        "the session cookie is HttpOnly"
    );
    b.goto(&format!("{}/agents", console.base));
    let t = b.wait_text("the agents page", LONG, |t| t.contains("Agents"));
    assert!(t.contains("Local/agent@test") && !t.contains("Local/agent2@test"), "{t}");
    b.goto(&format!("{}/recordings", console.base));
    let t = b.wait_text("the recordings", LONG, |t| t.contains("Shown:"));
    assert_eq!(
        b.script("return document.querySelectorAll('tr.rec').length", vec![]),
        serde_json::json!(1),
        "{t}"
    );
    // Play: purpose asked, access line written, the audio element reaches `ended`.
    b.goto(&format!("{}/recordings/{anna_rec}", console.base));
    b.wait_text("the recording page", LONG, |t| t.contains("Purpose of this listen"));
    assert!(b.has("svg[aria-label=timeline]"), "the timeline");
    b.type_in("#purpose", "coaching session 2026-12");
    b.click("#listen");
    b.wait_text("the listen logged", LONG, |t| t.contains("Listen logged"));
    b.wait_script("the audio to end", Duration::from_secs(40), "const a = document.querySelector('audio#player'); return !!a && a.ended === true && a.duration > 3");
    let log = access_log(&pbx);
    let last = log.last().expect("an access line");
    assert_eq!(
        (
            last["event"].as_str(),
            last["person"].as_str(),
            last["agent"].as_str(),
            last["purpose"].as_str()
        ),
        (Some("listen"), Some("marc"), Some("Local/agent@test"), Some("coaching session 2026-12")),
        "{last}"
    );
    assert_eq!(last["via"], "console");
    // The second listen of anna's calls this month is past max_listens_per_agent = 1.
    b.goto(&format!("{}/recordings/{anna_rec}", console.base));
    b.wait_text("the recording page", LONG, |t| t.contains("Purpose of this listen"));
    b.type_in("#purpose", "coaching again");
    b.click("#listen");
    let t = b.wait_text("the refusal", LONG, |t| t.contains("Refused"));
    assert!(t.contains("max_listens_per_agent = 1"), "{t}");
    assert_eq!(
        access_log(&pbx).last().map(|l| l["event"].clone()),
        Some(serde_json::json!("listen_refused"))
    );
    // Another team's recording, by its URL.
    b.goto(&format!("{}/recordings/{other_rec}", console.base));
    let t = b.wait_text("the refusal", LONG, |t| t.contains("Refused"));
    assert!(t.contains("not in marc's team"), "{t}");
    assert!(!b.has("#listen"));

    // The agent: only their own calls, and only their own page.
    sign_in(&b, &console, "anna", &pw("anna"));
    b.goto(&format!("{}/recordings", console.base));
    b.wait_text("the recordings", LONG, |t| t.contains("your own calls"));
    assert_eq!(
        b.script("return document.querySelectorAll('tr.rec').length", vec![]),
        serde_json::json!(1)
    );
    assert!(!b.text().contains("Local/agent2@test"));
    b.goto(&format!("{}/agents", console.base));
    let t = b.wait_text("the agent's own page", LONG, |t| t.contains("Agent Local/agent@test"));
    assert!(t.contains("coaching session 2026-12"), "the agent sees who listened (R8): {t}");
    shot(&b, "agent");
    b.goto(&format!("{}/agent?name=Local%2Fagent2%40test", console.base));
    let t = b.wait_text("the refusal", LONG, |t| t.contains("Refused"));
    assert!(t.contains("only their own page"), "{t}");

    // The DPO: the overview (chain intact), the processing record on paper, a caller erased.
    sign_in(&b, &console, "claire", &pw("claire"));
    b.goto(&format!("{}/overview", console.base));
    let t = b.wait_text("the overview", LONG, |t| t.contains("Profile acc"));
    assert!(b.has("#chain-audit-log.ok"), "{t}");
    assert!(
        t.contains("Configured share 100 %") && t.contains("measured: 2 of 2 call(s) recorded"),
        "{t}"
    );
    shot(&b, "overview");
    b.goto(&format!("{}/agents", console.base));
    b.wait_text("the agents", LONG, |t| t.contains("Local/agent2@test"));
    shot(&b, "agents");
    b.goto(&format!("{}/recordings", console.base));
    b.wait_text("the recordings", LONG, |t| t.contains("every recording"));
    shot(&b, "recordings");
    let call = pbx
        .audit()
        .iter()
        .find(|l| l["event"] == "selected")
        .and_then(|l| l["call"].as_str().map(str::to_string))
        .expect("a selected call");
    b.goto(&format!("{}/selection?call={call}", console.base));
    let t = b.wait_text("the selection", LONG, |t| t.contains("Replayed now"));
    assert!(t.contains("the same decision") && t.contains("share 100 %"), "{t}");
    shot(&b, "selection");
    b.goto(&format!("{}/record", console.base));
    b.wait_text("the processing record", LONG, |t| t.contains("Record of processing"));
    shot(&b, "record");
    let pdf = b.print_pdf();
    assert!(pdf.starts_with(b"%PDF-"), "a PDF");
    let pdf_file =
        std::env::temp_dir().join(format!("cc-console-record-{}.pdf", std::process::id()));
    std::fs::write(&pdf_file, &pdf).expect("write the PDF");
    let o = Command::new("pdftotext")
        .arg(&pdf_file)
        .arg("-")
        .output()
        .expect("pdftotext (poppler-utils; scripts/sandbox.sh installs it)");
    let _ = std::fs::remove_file(&pdf_file);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("acc: 100 %")
            && text.contains("Example Telecom SAS")
            && text.contains("dpo@example.test"),
        "{text}"
    );
    assert!(!text.contains("Sign out"), "the navigation is not printed: {text}");
    b.goto(&format!("{}/record?lang=fr", console.base));
    let t = b.wait_text("the French record", LONG, |t| t.contains("Registre des traitements"));
    assert!(t.contains("Responsable du traitement") && t.contains("acc : 100 %"), "{t}");
    // The caller's request: find by another form of the number, confirm, erase.
    b.goto(&format!("{}/requests", console.base));
    b.type_in("#number", "06 12 34 56 78");
    b.type_in("#request", "GDPR-2026-118");
    b.click("#find");
    let t = b.wait_text("the caller found", LONG, |t| t.contains("recording(s) on disk"));
    assert!(t.contains("2 call(s), 2 recording(s) on disk"), "{t}");
    // Export first (decrypted Opus and the audit lines, in a new directory of the console's).
    b.click("#export");
    b.wait_text("the export's confirmation", LONG, |t| t.contains("Yes, export"));
    b.click("#confirm");
    let t = b.wait_text("the export", LONG, |t| t.contains("exported to"));
    assert!(t.contains("2 recording(s)") && t.contains("GDPR-2026-118"), "{t}");
    let exports: Vec<PathBuf> = files_under(&pbx.path("exports"));
    let opus: Vec<&PathBuf> =
        exports.iter().filter(|f| f.to_string_lossy().ends_with(".opus")).collect();
    assert_eq!(opus.len(), 2, "{exports:?}");
    assert!(
        opus.iter().all(|f| std::fs::read(f).unwrap_or_default().starts_with(b"OggS")),
        "decrypted Ogg Opus"
    );
    assert_eq!(
        access_log(&pbx).last().map(|l| l["event"].clone()),
        Some(serde_json::json!("subject_export"))
    );
    b.type_in("#number", "+33612345678");
    b.click("#find");
    b.wait_text("the caller found again", LONG, |t| {
        t.contains("2 call(s), 2 recording(s) on disk")
    });
    b.click("#erase");
    let t = b.wait_text("the confirmation", LONG, |t| t.contains("Yes, erase"));
    assert!(t.contains("GDPR-2026-118"), "{t}");
    assert_eq!(pbx.spool_files().len(), 2, "nothing erased before the confirmation");
    shot(&b, "requests");
    b.click("#confirm");
    let t = b.wait_text("the erasure", LONG, |t| t.contains("erased"));
    assert!(t.contains("2 recording(s) of 2 call(s) erased"), "{t}");
    assert!(pbx.spool_files().is_empty(), "{:?}", pbx.spool_files());
    let erased = pbx.wait_event("recording_erased", 2, LONG);
    assert!(
        erased.iter().all(|e| e["request"] == "GDPR-2026-118" && e["by"] == "claire"),
        "{erased:?}"
    );
    assert_eq!(
        access_log(&pbx).last().map(|l| l["event"].clone()),
        Some(serde_json::json!("subject_erase"))
    );
    let secret = pbx.path("db/callconsent/secret");
    let v = dpo_tool(&[
        "audit",
        "verify",
        pbx.audit_path().to_str().unwrap_or(""),
        "--key",
        secret.to_str().unwrap_or(""),
    ]);
    assert!(
        v.status.success(),
        "the chain holds after the erasure: {}",
        String::from_utf8_lossy(&v.stdout)
    );

    // A line of the audit log edited on disk: the overview turns red and names FILE:LINE.
    let audit = std::fs::read_to_string(pbx.audit_path()).expect("the audit log");
    let n = audit
        .lines()
        .position(|l| l.contains("\"event\":\"opt_out\"") || l.contains("\"outcome\":\"recorded\""))
        .expect("a line to edit")
        + 1;
    let edited: String = audit
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == n {
                format!("{}\n", l.replacen("\"recorded\"", "\"not_recorded\"", 1))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(pbx.audit_path(), edited).expect("edit the audit log");
    b.goto(&format!("{}/overview", console.base));
    let t = b.wait_text("the broken chain", LONG, |t| t.contains("Broken"));
    assert!(b.has("#chain-audit-log.broken"), "{t}");
    assert!(
        t.contains(&format!("audit.jsonl:{n}.")) || t.contains(&format!("audit.jsonl:{}.", n + 1)),
        "FILE:LINE (line {n} edited) in: {t}"
    );
    shot(&b, "overview-broken");
    let _ = std::fs::remove_dir_all(&key_host);
    pbx.assert_alive();
}
