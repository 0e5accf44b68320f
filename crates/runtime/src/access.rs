//! Reaching kept recordings (issue 12): the index of recordings the audit log describes, the
//! access log (hash-chained like the audit log, its own file) of every listen, export and
//! caller's request, the listening counts the bounds apply to (R6), and the caller's rights
//! (find, export, erase by the keyed number hash). The DPO's tool and the console both go
//! through here, so what one logs and refuses the other does too; the rules themselves are the
//! core's (`callconsent_core::access`).
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use callconsent_core::access::{decide, Want};
use callconsent_core::audit::{AccessEvent, AuditEvent};
use callconsent_core::config::{Config, Person};

use crate::audit::{self, line_hash, now_rfc3339, Options};

/// One line of a log, where it was read.
#[derive(Debug, Clone)]
pub struct Line {
    pub file: String,
    pub number: usize,
    pub text: String,
    pub value: Value,
}

/// The audit files of a log, oldest first: the rotated `<stem>-YYYY-MM-DD.jsonl`, then the log.
pub fn log_files(log: &Path) -> Vec<PathBuf> {
    let stem = log.file_stem().and_then(|s| s.to_str()).unwrap_or("audit").to_string();
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(log.parent().unwrap_or(Path::new(".")))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix(&format!("{stem}-"))
                    .and_then(|r| r.strip_suffix(".jsonl"))
                    .is_some_and(|d| {
                        d.len() == 10 && d.chars().all(|c| c.is_ascii_digit() || c == '-')
                    })
            })
        })
        .collect();
    rotated.sort();
    if log.exists() {
        rotated.push(log.to_path_buf());
    }
    rotated
}

/// Every line of these files (a missing file has none; an unreadable one is an error).
pub fn read_lines(files: &[PathBuf]) -> Result<Vec<Line>, String> {
    let mut out = vec![];
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: cannot read: {e}", f.display())),
        };
        for (i, l) in text.lines().enumerate() {
            if let Ok(value) = serde_json::from_str::<Value>(l) {
                out.push(Line {
                    file: f.display().to_string(),
                    number: i + 1,
                    text: l.to_string(),
                    value,
                });
            }
        }
    }
    Ok(out)
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or("").to_string()
}

fn file_name(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// A kept recording as the audit log describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub call: String,
    pub profile: String,
    pub agent: Option<String>,
    pub number_hash: Option<String>,
    /// When it was kept (the `recording_kept` line's `ts`).
    pub kept_at: String,
    pub duration_ms: u64,
    pub pause_spans_ms: String,
    /// SHA-256 of the `recording_kept` line (the archive's CALLCONSENT_AUDIT tag).
    pub kept_line: String,
    /// The files as the module named them: the kept WAVs, then the archives that replaced them.
    pub files: Vec<String>,
    pub archives: Vec<String>,
    /// Each archive's SHA-256 as its `recording_archived` line holds it (the bytes on disk,
    /// checkable without the identity): (file, hex).
    pub archive_sha256: Vec<(String, String)>,
    /// The recipients' fingerprints, when it is encrypted.
    pub encrypted_to: Vec<String>,
    /// The event that removed it (`recording_deleted`, `recording_expired`, `recording_erased`).
    pub removed_by: Option<String>,
}

/// SHA-256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl Recording {
    /// An archive of it whose bytes on disk are not those its `recording_archived` line
    /// describes (replaced or altered since): Err names it. Files without a known SHA-256
    /// (WAVs, archives of a version that did not write it) pass.
    pub fn check_archive_bytes(&self, path: &Path, on_disk: &[u8]) -> Result<(), String> {
        let shown = path.display().to_string();
        let known = self.archive_sha256.iter().find(|(f, _)| *f == shown || Path::new(f) == path);
        match known {
            Some((_, h)) if *h != sha256_hex(on_disk) => Err(format!(
                "{shown}: its SHA-256 is not the one its recording_archived line holds: the archive was replaced or altered after it was written"
            )),
            _ => Ok(()),
        }
    }

    /// Its files that are on disk now.
    pub fn present(&self) -> Vec<String> {
        self.archives
            .iter()
            .chain(self.files.iter())
            .filter(|f| Path::new(f).exists())
            .cloned()
            .collect()
    }
    /// Whether `name` (a path, or a file name) is one of its files.
    pub fn names(&self, name: &str) -> bool {
        let n = file_name(name);
        self.archives.iter().chain(self.files.iter()).any(|f| f == name || file_name(f) == n)
    }
}

/// The recordings the audit lines describe, in the order they were kept.
pub fn recordings(lines: &[Line]) -> Vec<Recording> {
    let mut out: Vec<Recording> = vec![];
    for l in lines {
        let v = &l.value;
        match AuditEvent::parse(v["event"].as_str().unwrap_or("")) {
            Some(AuditEvent::RecordingKept) => {
                let files: Vec<String> = match v["files"].as_array() {
                    Some(a) => a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect(),
                    None => v["file"].as_str().map(|f| vec![f.to_string()]).unwrap_or_default(),
                };
                out.push(Recording {
                    call: s(v, "call"),
                    profile: s(v, "profile"),
                    agent: v["agent"].as_str().filter(|a| !a.is_empty()).map(str::to_string),
                    number_hash: v["number_hash"].as_str().map(str::to_string),
                    kept_at: s(v, "ts"),
                    duration_ms: v["duration_ms"].as_u64().unwrap_or(0),
                    pause_spans_ms: s(v, "pause_spans_ms"),
                    kept_line: line_hash(&l.text),
                    files,
                    archives: vec![],
                    archive_sha256: vec![],
                    encrypted_to: v["encrypted_to"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
                        .unwrap_or_default(),
                    removed_by: None,
                });
            }
            Some(AuditEvent::RecordingArchived) => {
                let from = s(v, "from");
                if let Some(r) =
                    out.iter_mut().rev().find(|r| r.call == s(v, "call") && r.files.contains(&from))
                {
                    r.archives.push(s(v, "file"));
                    if let Some(h) = v["sha256"].as_str() {
                        r.archive_sha256.push((s(v, "file"), h.to_string()));
                    }
                }
            }
            Some(
                e @ (AuditEvent::RecordingDeleted
                | AuditEvent::RecordingExpired
                | AuditEvent::RecordingErased),
            ) => {
                let gone: Vec<String> = match v["files"].as_array() {
                    Some(a) => a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect(),
                    None => v["file"].as_str().map(|f| vec![f.to_string()]).unwrap_or_default(),
                };
                for r in out
                    .iter_mut()
                    .filter(|r| r.call == s(v, "call") || gone.iter().any(|g| r.names(g)))
                {
                    if e == AuditEvent::RecordingErased || gone.iter().any(|g| r.names(g)) {
                        r.removed_by = Some(e.as_str().to_string());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Where the logs and recordings are, from the configuration, and the installation secret when
/// it can be read (lines the tool writes then carry the keyed MAC, as the module's do).
/// The listening bound's lock (see `Store::bound_lock`), released on drop.
pub struct BoundLock(std::fs::File);

impl Drop for BoundLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

pub struct Store {
    pub audit_log: PathBuf,
    pub access_log: PathBuf,
    pub secret: Option<Vec<u8>>,
}

impl Store {
    pub fn new(cfg: &Config, secret: Option<Vec<u8>>) -> Store {
        Store {
            audit_log: cfg.general.audit_log.clone(),
            access_log: cfg.access.access_log.clone(),
            secret,
        }
    }

    pub fn audit_lines(&self) -> Result<Vec<Line>, String> {
        read_lines(&log_files(&self.audit_log))
    }

    pub fn access_lines(&self) -> Result<Vec<Line>, String> {
        read_lines(&log_files(&self.access_log))
    }

    fn options(&self) -> Options {
        Options {
            key: self
                .secret
                .as_ref()
                .map(|s| (audit::audit_key(s), callconsent_core::policy::key_id(s))),
            publish: None,
            pbx: None,
            wake: None,
        }
    }

    /// Appends lines to a chained log, after its last line, keyed when the log is (then the
    /// secret is needed).
    fn append(&self, log: &Path, recs: &[Map<String, Value>]) -> Result<Vec<String>, String> {
        if self.secret.is_none() && audit::is_keyed(log) {
            return Err(format!("{}: the log is keyed: the installation secret must be readable (--secret FILE) to add a line to it", log.display()));
        }
        audit::append(log, recs, &self.options())
            .map_err(|e| format!("{}: cannot write: {e}", log.display()))
    }

    /// Writes one access line (before any byte of audio is released); returns its hash.
    pub fn log_access(
        &self,
        event: AccessEvent,
        facts: Map<String, Value>,
    ) -> Result<String, String> {
        let mut m = Map::new();
        m.insert("ts".into(), Value::String(now_rfc3339()));
        m.insert("event".into(), Value::String(event.as_str().into()));
        m.extend(facts);
        self.append(&self.access_log, &[m])
            .map(|h| h.into_iter().next().unwrap_or_default())
            .map_err(|e| format!("{e} (no access without its line)"))
    }

    /// Held across a listen's count, its decryption and its access line (issue 24): two
    /// listens at once on this machine cannot both pass a bound that has room for one. A lock
    /// file of its own beside the access log (`<access log>.lock`, never rotated); the access
    /// line's own append locks the log file itself.
    pub fn bound_lock(&self) -> Result<BoundLock, String> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let mut name = self.access_log.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(dir) = path.parent() {
            let _ = std::fs::DirBuilder::new().recursive(true).mode(0o750).create(dir);
        }
        // flock needs no write access: a file another user made is locked through a read.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(&path)
            .or_else(|_| std::fs::File::open(&path))
            .map_err(|e| {
                format!("{}: cannot open the listening bound's lock: {e}", path.display())
            })?;
        file.lock()
            .map_err(|e| format!("{}: cannot lock the listening bound: {e}", path.display()))?;
        Ok(BoundLock(file))
    }

    /// Appends lines to the module's audit log, chained after its last line.
    pub fn log_audit(&self, recs: &[Map<String, Value>]) -> Result<Vec<String>, String> {
        self.append(&self.audit_log, recs)
    }
}

/// Listens (and exports) of `agent`'s calls in the period `key` of `cfg`'s listen_period, by
/// anyone but the agent themself: what the bounds count (R6).
pub fn listens(cfg: &Config, access_lines: &[Line], agent: &str, key: &str) -> u64 {
    access_lines
        .iter()
        .filter(|l| {
            AccessEvent::parse(l.value["event"].as_str().unwrap_or(""))
                .is_some_and(AccessEvent::is_listen)
        })
        .filter(|l| {
            l.value["agent"].as_str() == Some(agent) && l.value["role"].as_str() != Some("agent")
        })
        .filter(|l| period_of(cfg, l.value["ts"].as_str().unwrap_or("")).as_deref() == Some(key))
        .count() as u64
}

/// The listen period (`2026-W49`, `2026-12`, `2026-Q4`) a timestamp falls in.
pub fn period_of(cfg: &Config, ts: &str) -> Option<String> {
    chrono::DateTime::parse_from_rfc3339(ts)
        .ok()
        .map(|t| cfg.access.listen_period.key(t.with_timezone(&chrono::Utc)))
}

pub fn current_period(cfg: &Config) -> String {
    cfg.access.listen_period.key(chrono::Utc::now())
}

/// What one access asked for, for its access line.
pub struct Ask<'a> {
    pub person: &'a str,
    pub purpose: &'a str,
    pub event: AccessEvent,
    /// The identity file's recipients' fingerprints (which key decrypted).
    pub identity: Vec<String>,
}

/// The decision on listening to (or exporting) `rec`, before anything is decrypted. A refusal is
/// written to the access log and returned with its reason; an allowed access returns the facts
/// of its access line and the person's role: the caller writes that line (`Store::log_access`)
/// once the archive is open, and only then releases the audio.
pub fn check(
    cfg: &Config,
    store: &Store,
    ask: &Ask,
    rec: &Recording,
    file: &str,
) -> Result<(Map<String, Value>, &'static str), String> {
    let access_lines = store.access_lines()?;
    let period = current_period(cfg);
    let mut done =
        rec.agent.as_deref().map(|a| listens(cfg, &access_lines, a, &period)).unwrap_or(0);
    // Several nodes (issue 14): the listens are counted in the shared store, whoever listened
    // from wherever; a store away means the bound cannot be checked: refused.
    let mut shared = None;
    let mut decision = Ok(());
    if let (Some(agent), Some(pg)) =
        (rec.agent.as_deref(), crate::store::Pg::from_general(&cfg.general)?)
    {
        match pg
            .connect()
            .and_then(|mut c| crate::store::listens(&mut c, agent, &period).map(|n| (c, n)))
        {
            Ok((c, n)) => {
                done = done.max(n);
                shared = Some(c);
            }
            Err(e) => {
                decision = Err(format!(
                "the shared store is unreachable, so the listening bound cannot be checked ({e})"
            ))
            }
        }
    }
    let decision = decision.and_then(|_| decide(&cfg.access, ask.person, Want::Listen, rec.agent.as_deref(), done)).and_then(|p| {
        match (shared.as_mut(), rec.agent.as_deref()) {
            (Some(c), Some(agent)) if p.role != callconsent_core::config::Role::Agent => match crate::store::reserve_listen(c, agent, &period, cfg.access.max_listens_per_agent) {
                Ok((_, true)) => Ok(p),
                Ok((n, false)) => Err(format!("the listening bound is reached on the shared store: {n} of {} listens of {agent}'s calls this {}", cfg.access.max_listens_per_agent, period)),
                Err(e) => Err(format!("the shared store is unreachable, so the listening bound cannot be checked ({e})")),
            },
            _ => Ok(p),
        }
    });
    let mut f = Map::new();
    f.insert("person".into(), json!(ask.person));
    f.insert("role".into(), json!(cfg.access.person(ask.person).map(|p: &Person| p.role.as_str())));
    f.insert("recording".into(), json!(file_name(file)));
    f.insert("call".into(), json!(rec.call));
    f.insert("agent".into(), json!(rec.agent));
    f.insert("purpose".into(), json!(ask.purpose));
    f.insert("period".into(), json!(period));
    f.insert("listens_before".into(), json!(done));
    if !ask.identity.is_empty() {
        f.insert("identity".into(), json!(ask.identity));
    }
    match decision {
        Ok(p) => Ok((f, p.role.as_str())),
        Err(why) => {
            f.insert("reason".into(), json!(why));
            store.log_access(ask.event.refused(), f)?;
            Err(why)
        }
    }
}

/// A caller's calls: every call whose lines carry this number hash.
pub fn subject_calls(lines: &[Line], number_hash: &str) -> BTreeSet<String> {
    lines
        .iter()
        .filter(|l| l.value["number_hash"].as_str() == Some(number_hash))
        .map(|l| s(&l.value, "call"))
        .filter(|c| !c.is_empty())
        .collect()
}

/// Every audit line about those calls.
pub fn subject_lines<'a>(lines: &'a [Line], calls: &BTreeSet<String>) -> Vec<&'a Line> {
    lines.iter().filter(|l| l.value["call"].as_str().is_some_and(|c| calls.contains(c))).collect()
}

/// The decision on a caller's request; the refusal is logged. A person named (`--as`, a console
/// sign-in) must be the DPO; the tool run without a name acts for the Unix user running it.
pub fn authorize_subject(
    cfg: &Config,
    store: &Store,
    person: &str,
    named: bool,
    event: AccessEvent,
    request: &str,
    number_hash: &str,
) -> Result<(), String> {
    if !named {
        return Ok(());
    }
    let mut f = Map::new();
    f.insert("person".into(), json!(person));
    f.insert("role".into(), json!(cfg.access.person(person).map(|p| p.role.as_str())));
    f.insert("request".into(), json!(request));
    f.insert("number_hash".into(), json!(number_hash));
    match decide(&cfg.access, person, Want::SubjectRequest, None, 0) {
        Ok(_) => Ok(()),
        Err(why) => {
            f.insert("reason".into(), json!(why));
            store.log_access(event.refused(), f)?;
            Err(why)
        }
    }
}

/// Erases a caller's recordings (GDPR Art. 17): every file of their calls is deleted, and each
/// call gets a `recording_erased` line with the request reference in the audit log (the chain
/// goes on). Returns (call, files deleted).
pub fn erase(
    store: &Store,
    recs: &[&Recording],
    person: &str,
    request: &str,
) -> Result<Vec<(String, Vec<String>)>, String> {
    let mut out = vec![];
    let mut lines = vec![];
    for r in recs {
        let deleted = delete_files(r)?;
        lines.push(erased_record(r, person, request, &deleted));
        out.push((r.call.clone(), deleted));
    }
    if !lines.is_empty() {
        store.log_audit(&lines)?;
    }
    Ok(out)
}

/// Deletes every file of one recording (archives, WAVs, sidecars); returns what was deleted.
pub fn delete_files(r: &Recording) -> Result<Vec<String>, String> {
    let mut deleted = vec![];
    for f in r.archives.iter().chain(r.files.iter()) {
        for p in [PathBuf::from(f), crate::encoders::sidecar(Path::new(f))] {
            match std::fs::remove_file(&p) {
                Ok(()) => deleted.push(p.display().to_string()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: cannot delete: {e}", p.display())),
            }
        }
    }
    Ok(deleted)
}

/// The `recording_erased` line of one recording.
pub fn erased_record(
    r: &Recording,
    person: &str,
    request: &str,
    deleted: &[String],
) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert("profile".into(), json!(r.profile));
    f.insert("request".into(), json!(request));
    f.insert("by".into(), json!(person));
    f.insert("number_hash".into(), json!(r.number_hash));
    f.insert("files".into(), json!(deleted));
    f.insert("kept_line".into(), json!(r.kept_line));
    audit::record(&r.call, "", AuditEvent::RecordingErased, f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(file: &str, n: usize, v: Value) -> Line {
        Line { file: file.into(), number: n, text: v.to_string(), value: v }
    }

    #[test]
    fn recordings_follow_kept_archived_and_removed_lines() {
        let lines = vec![
            line("a", 1, json!({"event": "selected", "call": "1.1", "number_hash": "h1"})),
            line(
                "a",
                2,
                json!({"event": "recording_kept", "call": "1.1", "ts": "2026-12-01T10:00:00.000Z", "profile": "sales", "agent": "PJSIP/anna", "number_hash": "h1", "files": ["/k/cc-1.1.wav"], "duration_ms": 4000}),
            ),
            line(
                "a",
                3,
                json!({"event": "recording_archived", "call": "1.1", "from": "/k/cc-1.1.wav", "file": "/k/cc-1.1.opus.age"}),
            ),
            line(
                "a",
                4,
                json!({"event": "recording_kept", "call": "1.2", "ts": "2026-12-01T11:00:00.000Z", "profile": "sales", "agent": null, "files": ["/k/cc-1.2.wav"], "duration_ms": 1000}),
            ),
            line(
                "a",
                5,
                json!({"event": "recording_expired", "call": "", "file": "/k/cc-1.2.wav"}),
            ),
        ];
        let r = recordings(&lines);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].archives, vec!["/k/cc-1.1.opus.age".to_string()]);
        assert_eq!(r[0].agent.as_deref(), Some("PJSIP/anna"));
        assert!(
            r[0].names("cc-1.1.opus.age")
                && r[0].names("/elsewhere/cc-1.1.opus.age")
                && !r[0].names("cc-1.2.wav")
        );
        assert_eq!(r[0].removed_by, None);
        assert_eq!(
            (r[1].agent.as_deref(), r[1].removed_by.as_deref()),
            (None, Some("recording_expired"))
        );
        assert_eq!(
            subject_calls(&lines, "h1").into_iter().collect::<Vec<_>>(),
            vec!["1.1".to_string()]
        );
        assert_eq!(subject_lines(&lines, &subject_calls(&lines, "h1")).len(), 3);
    }

    #[test]
    fn listens_count_per_agent_and_period_not_the_agents_own() {
        let text = "[general]\n\n[access]\nlisten_period = month\nmax_listens_per_agent = 2\ndpo = claire\n";
        let cfg = callconsent_core::config::parse(
            &callconsent_core::config::entries_from_text(text, "c"),
            &callconsent_core::config::Defaults {
                spool_dir: "/s".into(),
                audit_log: "/l/audit.jsonl".into(),
            },
            &|_| true,
        )
        .unwrap();
        let l = |ev: &str, agent: &str, role: &str, ts: &str| {
            line("x", 0, json!({"event": ev, "agent": agent, "role": role, "ts": ts}))
        };
        let lines = vec![
            l("listen", "PJSIP/anna", "coach", "2026-12-01T10:00:00.000Z"),
            l("export", "PJSIP/anna", "dpo", "2026-12-02T10:00:00.000Z"),
            l("listen_refused", "PJSIP/anna", "coach", "2026-12-02T10:00:00.000Z"),
            l("listen", "PJSIP/anna", "agent", "2026-12-03T10:00:00.000Z"),
            l("listen", "PJSIP/anna", "coach", "2026-11-30T10:00:00.000Z"),
            l("listen", "PJSIP/bob", "coach", "2026-12-01T10:00:00.000Z"),
        ];
        assert_eq!(listens(&cfg, &lines, "PJSIP/anna", "2026-12"), 2);
        assert_eq!(listens(&cfg, &lines, "PJSIP/anna", "2026-11"), 1);
        assert_eq!(listens(&cfg, &lines, "PJSIP/bob", "2026-12"), 1);
        assert_eq!(cfg.access.access_log, PathBuf::from("/l/access.jsonl"));
    }

    #[test]
    fn log_files_are_the_rotated_ones_then_the_log() {
        let dir = std::env::temp_dir().join(format!("cc-access-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for n in [
            "audit.jsonl",
            "audit-2026-11-30.jsonl",
            "audit-2026-11-29.jsonl",
            "access.jsonl",
            "audit.jsonl.head",
            "audit-x.jsonl",
        ] {
            std::fs::write(dir.join(n), "").unwrap();
        }
        let names: Vec<String> = log_files(&dir.join("audit.jsonl"))
            .iter()
            .map(|p| file_name(&p.display().to_string()).to_string())
            .collect();
        assert_eq!(names, ["audit-2026-11-29.jsonl", "audit-2026-11-30.jsonl", "audit.jsonl"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
