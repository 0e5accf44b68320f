//! `listen`, `export`, `access report`, `subject find|export|erase` and the recordings part of
//! `agent` (issue 12): every access decided by the core's rules and written to the access log
//! before any byte of audio is released, through `callconsent_runtime::access` (the console
//! goes through the same code).
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{json, Map, Value};

use callconsent_core::audit::AccessEvent;
use callconsent_core::config::Config;
use callconsent_core::policy;
use callconsent_runtime::access::{self, Ask, Recording, Store};
use callconsent_runtime::archive;

pub const DEFAULT_CONFIG: &str = "/etc/asterisk/callconsent.conf";
pub const DEFAULT_SECRET: &str = "/var/lib/asterisk/callconsent/secret";

/// The options every command of this module takes.
#[derive(Debug, clap::Args)]
pub struct Where {
    /// The module's configuration ([general] paths, [access] people and bounds): Asterisk's
    /// callconsent.conf or FreeSWITCH's callconsent.conf.xml ($${vars} from its vars.xml); by
    /// default whichever of /etc/asterisk/callconsent.conf and
    /// /etc/freeswitch/autoload_configs/callconsent.conf.xml exists
    #[arg(long, value_name = "CONF", env = "CALLCONSENT_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: String,
    /// The installation secret: the keyed number hashes, and the keyed MAC of the lines written
    #[arg(long, value_name = "SECRET_FILE", default_value = DEFAULT_SECRET)]
    pub secret: String,
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("callconsent: {msg}");
    ExitCode::from(1)
}

/// Asterisk's `callconsent.conf` or FreeSWITCH's `callconsent.conf.xml` (see `conf`).
pub fn load_config(path: &str) -> Result<Config, String> {
    crate::conf::load(path)
}

/// The configuration and where its logs are: what every access starts from (the tool and the
/// console alike).
pub struct Ctx {
    pub cfg: Config,
    pub store: Store,
}

pub fn open(w: &Where, need_secret: bool) -> Result<Ctx, String> {
    let cfg = load_config(&w.config)?;
    let secret = match std::fs::read(&w.secret) {
        Ok(s) => Some(s),
        Err(e) if need_secret => {
            return Err(format!("{}: cannot read the installation secret: {e}", w.secret))
        }
        Err(_) => None,
    };
    let store = Store::new(&cfg, secret);
    Ok(Ctx { cfg, store })
}

fn identities(path: &str) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, String> {
    archive::read_identities(Path::new(path))
}

pub fn fingerprints(identity: &str) -> Vec<String> {
    archive::identity_recipients(Path::new(identity))
        .iter()
        .map(|r| policy::recipient_fingerprint(r))
        .collect()
}

/// The recording named (a path or a file name), as the audit log describes it, and its file on disk.
fn find(ctx: &Ctx, name: &str) -> Result<(Recording, PathBuf), String> {
    let lines = ctx.store.audit_lines()?;
    let recs = access::recordings(&lines);
    let Some(rec) = recs.into_iter().rev().find(|r| r.names(name)) else {
        return Err(format!(
            "{name}: no recording_kept line of {} names it",
            ctx.store.audit_log.display()
        ));
    };
    if let Some(by) = &rec.removed_by {
        return Err(format!("{name}: the recording of call {} is gone ({by})", rec.call));
    }
    let given = PathBuf::from(name);
    let path = if given.is_file() {
        given
    } else {
        let base = name.rsplit('/').next().unwrap_or(name);
        match rec.present().into_iter().find(|f| f.rsplit('/').next() == Some(base)) {
            Some(f) => PathBuf::from(f),
            None => {
                return Err(format!(
                    "{name}: not on disk (the audit log names {})",
                    rec.archives
                        .first()
                        .or(rec.files.first())
                        .map(String::as_str)
                        .unwrap_or("nothing")
                ))
            }
        }
    };
    Ok((rec, path))
}

/// Decrypts (in memory) and decodes the archive; its tags must be the audit log's.
pub fn open_checked(
    rec: &Recording,
    path: &Path,
    identity: Option<&str>,
) -> Result<(Vec<u8>, u64), String> {
    let ids = match identity {
        Some(i) => identities(i)?,
        None => vec![],
    };
    // The bytes on disk first: what the module's encoder wrote, or refused (issue 24).
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    rec.check_archive_bytes(path, &raw)?;
    let bytes = archive::open_bytes(path, &ids)?;
    let a = archive::read_archive_bytes(&bytes, &path.display().to_string())?;
    if a.tag("CALLCONSENT_CALL") != Some(rec.call.as_str()) {
        return Err(format!(
            "{}: its CALLCONSENT_CALL tag is {:?}, the audit log says {}",
            path.display(),
            a.tag("CALLCONSENT_CALL"),
            rec.call
        ));
    }
    match a.tag("CALLCONSENT_AUDIT") {
        Some(h) if h == rec.kept_line => {}
        Some(_) => {
            return Err(format!(
                "{}: CALLCONSENT_AUDIT is not the hash of the recording_kept line",
                path.display()
            ))
        }
        // Every archive the module writes carries it: one without is not the module's.
        None => {
            return Err(format!(
                "{}: no CALLCONSENT_AUDIT tag: not an archive the module wrote for this call",
                path.display()
            ))
        }
    }
    Ok((bytes, a.duration_ms))
}

pub struct Listen<'a> {
    pub recording: &'a str,
    pub identity: Option<&'a str>,
    pub person: &'a str,
    pub purpose: &'a str,
    pub player: Option<&'a str>,
    /// `export`: the Opus file to write.
    pub out: Option<&'a str>,
}

/// `listen` (to a player, or to stdout when it is not a terminal) and `export` (to an Opus file).
pub fn listen(w: &Where, l: &Listen) -> ExitCode {
    let export = l.out.is_some();
    if !export && l.player.is_none() && std::io::stdout().is_terminal() {
        eprintln!("callconsent: give --player CMD (e.g. --player 'mpv -'), or pipe the output into a player");
        return ExitCode::from(2);
    }
    let ctx = match open(w, false) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (rec, path) = match find(&ctx, l.recording) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    let out = l.out.map(|o| {
        let p = PathBuf::from(o);
        if p.is_dir() {
            p.join(
                path.file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("recording.opus")
                    .trim_end_matches(".age"),
            )
        } else {
            p
        }
    });
    if let Some(o) = &out {
        if o.extension().and_then(|e| e.to_str()) != Some("opus") {
            return fail(format!(
                "{}: export writes the call's Ogg Opus only: name the file .opus",
                o.display()
            ));
        }
        if o.exists() {
            return fail(format!("{}: exists; not overwritten", o.display()));
        }
    }
    let event = if export { AccessEvent::Export } else { AccessEvent::Listen };
    let mut extra = Map::new();
    if let Some(o) = &out {
        extra.insert("out".into(), json!(o.display().to_string()));
    }
    let Released { bytes, duration_ms, line, role } =
        match access_audio(&ctx, &rec, &path, l.person, l.purpose, event, l.identity, extra) {
            Ok(r) => r,
            Err(Denied::Refused(why)) => return fail(format!("refused: {why}")),
            Err(Denied::Failed(e)) => return fail(e),
        };
    let released = match (&out, l.player) {
        (Some(o), _) => write_new(o, &bytes),
        (None, Some(cmd)) => play(cmd, &bytes),
        (None, None) => std::io::stdout()
            .write_all(&bytes)
            .and_then(|_| std::io::stdout().flush())
            .map_err(|e| format!("stdout: {e}")),
    };
    if let Err(e) = released {
        return fail(e);
    }
    let what = match &out {
        Some(o) => format!("exported to {}", o.display()),
        None => "listened".to_string(),
    };
    let bound = match (&rec.agent, ctx.cfg.access.max_listens_per_agent) {
        (Some(a), max) if max > 0 && role != "agent" => {
            let n = ctx
                .store
                .access_lines()
                .map(|lines| {
                    access::listens(&ctx.cfg, &lines, a, &access::current_period(&ctx.cfg))
                })
                .unwrap_or(0);
            format!(
                "; {n} of {max} listen(s) of {a}'s calls this {}",
                ctx.cfg.access.listen_period.as_str()
            )
        }
        _ => String::new(),
    };
    eprintln!(
        "callconsent: {} {what}: call {}, agent {}, {duration_ms} ms (the audit log says {} ms), by {} ({role}); access line {line}{bound}",
        path.display(),
        rec.call,
        rec.agent.as_deref().unwrap_or("none"),
        rec.duration_ms,
        l.person
    );
    ExitCode::SUCCESS
}

/// The audio of one allowed access, and its access line.
pub struct Released {
    pub bytes: Vec<u8>,
    pub duration_ms: u64,
    /// The hash of the access line written.
    pub line: String,
    pub role: &'static str,
}

/// Why an access released nothing.
#[derive(Debug)]
pub enum Denied {
    /// The rules refused it (the refusal is in the access log).
    Refused(String),
    /// The archive or the access log could not be opened or written.
    Failed(String),
}

/// One listen or export: the rules first (a refusal is logged and nothing is decrypted), then
/// the archive (decrypted in memory, its tags checked), then the access line, and only then the
/// audio is returned. `extra` goes on the access line (after `duration_ms`).
#[allow(clippy::too_many_arguments)]
pub fn access_audio(
    ctx: &Ctx,
    rec: &Recording,
    path: &Path,
    person: &str,
    purpose: &str,
    event: AccessEvent,
    identity: Option<&str>,
    extra: Map<String, Value>,
) -> Result<Released, Denied> {
    let ask =
        Ask { person, purpose, event, identity: identity.map(fingerprints).unwrap_or_default() };
    // Count, decrypt and log under one lock: a bound with room for one lets one through.
    let _bound = ctx.store.bound_lock().map_err(Denied::Failed)?;
    let facts = access::check(&ctx.cfg, &ctx.store, &ask, rec, &path.display().to_string())
        .map_err(Denied::Refused)?;
    let (bytes, duration_ms) = open_checked(rec, path, identity).map_err(Denied::Failed)?;
    let mut more = Map::new();
    more.insert("duration_ms".into(), json!(duration_ms));
    more.extend(extra);
    let role = facts.1;
    let line = ctx.store.log_access(event, merge(facts.0, more)).map_err(Denied::Failed)?;
    Ok(Released { bytes, duration_ms, line, role })
}

/// The file of a recording on disk now (its archive first): the console names recordings by
/// their index, never by a path from a request.
pub fn file_of(rec: &Recording) -> Result<PathBuf, String> {
    if let Some(by) = &rec.removed_by {
        return Err(format!("the recording of call {} is gone ({by})", rec.call));
    }
    rec.present()
        .into_iter()
        .next()
        .map(PathBuf::from)
        .ok_or_else(|| format!("the recording of call {} is not on disk", rec.call))
}

fn merge(mut a: Map<String, Value>, b: Map<String, Value>) -> Map<String, Value> {
    a.extend(b);
    a
}

/// Writes a new file (0600, never over another), complete or not at all.
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("opus.part");
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    let done =
        f.write_all(bytes).and_then(|_| f.sync_all()).and_then(|_| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    done.map_err(err)
}

fn play(cmd: &str, bytes: &[u8]) -> Result<(), String> {
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("player {cmd:?}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A player that quits early closes its input: not an error of ours.
        let _ = stdin.write_all(bytes);
    }
    let status = child.wait().map_err(|e| format!("player {cmd:?}: {e}"))?;
    if !status.success() {
        return Err(format!("player {cmd:?} exited with {status}"));
    }
    Ok(())
}

/// `access report`: per agent, listens done in a period against the bounds (R6).
pub fn report(w: &Where, period: Option<&str>) -> ExitCode {
    let ctx = match open(w, false) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (audit, acc) = match (ctx.store.audit_lines(), ctx.store.access_lines()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let a = &ctx.cfg.access;
    let key = period.map(str::to_string).unwrap_or_else(|| access::current_period(&ctx.cfg));
    let rows = listening(&ctx.cfg, &audit, &acc, &key);
    let bound = |n: u64| if n == 0 { "none".to_string() } else { n.to_string() };
    println!(
        "listening per agent, {} {key} (min_listens_per_agent {}, max_listens_per_agent {})",
        a.listen_period.as_str(),
        bound(a.min_listens_per_agent),
        bound(a.max_listens_per_agent)
    );
    let width = rows.iter().map(|r| r.agent.len()).max().unwrap_or(0);
    for r in &rows {
        println!("{:width$}  {} listen(s), {} refused  {}", r.agent, r.listens, r.refused, r.state);
    }
    eprintln!("{} agent(s)", rows.len());
    ExitCode::SUCCESS
}

/// One agent's listening in a period, against the bounds (R6).
pub struct AgentListening {
    pub agent: String,
    pub listens: u64,
    pub refused: usize,
    pub state: &'static str,
}

/// Per agent (those of [access] and those the audit log names), the listens of their calls by
/// others in the period `key`, the refusals, and where that stands against the bounds.
pub fn listening(
    cfg: &Config,
    audit: &[access::Line],
    acc: &[access::Line],
    key: &str,
) -> Vec<AgentListening> {
    let a = &cfg.access;
    let mut agents: std::collections::BTreeSet<String> =
        a.people.iter().flat_map(|p| p.agents.iter().cloned()).collect();
    agents.extend(access::recordings(audit).into_iter().filter_map(|r| r.agent));
    let mut out = vec![];
    for agent in agents {
        let n = access::listens(cfg, acc, &agent, key);
        let refused = acc
            .iter()
            .filter(|l| {
                l.value["agent"].as_str() == Some(agent.as_str())
                    && l.value["event"].as_str().is_some_and(|e| e.ends_with("_refused"))
            })
            .filter(|l| {
                access::period_of(cfg, l.value["ts"].as_str().unwrap_or("")).as_deref() == Some(key)
            })
            .count();
        let state = if a.max_listens_per_agent > 0 && n >= a.max_listens_per_agent {
            "at the maximum"
        } else if n < a.min_listens_per_agent {
            if n == 0 {
                "below the minimum (never listened to)"
            } else {
                "below the minimum"
            }
        } else {
            "within the bounds"
        };
        out.push(AgentListening { agent, listens: n, refused, state });
    }
    out
}

pub fn subject_hash(ctx: &Ctx, number: &str) -> Result<(String, String), String> {
    let secret = ctx
        .store
        .secret
        .as_ref()
        .ok_or("the installation secret is needed to find a caller (--secret FILE)")?;
    let country = ctx.cfg.general.default_country.as_deref();
    let normal = policy::normalize_number(number, country);
    if !normal.chars().any(|c| c.is_ascii_digit()) {
        return Err(format!("\"{number}\" is not a phone number"));
    }
    Ok((normal, policy::number_hash(secret, number, country)))
}

/// `subject find`: every recording and audit line of a caller (GDPR Art. 15).
pub fn subject_find(w: &Where, number: &str) -> ExitCode {
    let ctx = match open(w, true) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (normal, hash) = match subject_hash(&ctx, number) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let lines = match ctx.store.audit_lines() {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let calls = access::subject_calls(&lines, &hash);
    let recs: Vec<Recording> =
        access::recordings(&lines).into_iter().filter(|r| calls.contains(&r.call)).collect();
    let present: Vec<&Recording> = recs.iter().filter(|r| !r.present().is_empty()).collect();
    println!(
        "subject {normal} (number hash {hash}): {} call(s), {} recording(s) on disk",
        calls.len(),
        present.len()
    );
    for r in &recs {
        let files = r.present();
        let state = match (&r.removed_by, files.is_empty()) {
            (_, false) => files.join(" "),
            (Some(by), true) => format!("gone ({by})"),
            (None, true) => "gone".to_string(),
        };
        println!(
            "recording call {} kept {} {} ms agent {}: {state}",
            r.call,
            r.kept_at,
            r.duration_ms,
            r.agent.as_deref().unwrap_or("none")
        );
    }
    for l in access::subject_lines(&lines, &calls) {
        println!("audit {}:{} {}", l.file, l.number, l.text);
    }
    ExitCode::SUCCESS
}

/// Who serves a caller's request: the DPO named by `--as` (checked), or else the Unix user
/// running the tool (who holds the secret and the spool: the file permissions are the boundary).
fn requester(person: Option<&str>) -> (String, bool) {
    match person {
        Some(p) => (p.to_string(), true),
        None => {
            let user = std::env::var("SUDO_USER")
                .or_else(|_| std::env::var("USER"))
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_else(|_| "unknown".into());
            (format!("unix:{user}"), false)
        }
    }
}

/// What serving one caller's request starts from: the decision (a refusal is logged), the
/// caller's number and hash, the audit lines and the caller's calls.
pub struct Request {
    pub ctx: Ctx,
    pub person: String,
    pub named: bool,
    pub normal: String,
    pub hash: String,
    pub lines: Vec<access::Line>,
    pub calls: std::collections::BTreeSet<String>,
}

fn request(
    w: &Where,
    number: &str,
    person: Option<&str>,
    event: AccessEvent,
    reference: &str,
) -> Result<Request, ExitCode> {
    let ctx = open(w, true).map_err(fail)?;
    request_in(ctx, number, person, event, reference).map_err(fail)
}

/// The start of serving a caller's request (the tool's and the console's): the person named
/// must be the DPO (a refusal is logged, and returned as "refused: why").
pub fn request_in(
    ctx: Ctx,
    number: &str,
    person: Option<&str>,
    event: AccessEvent,
    reference: &str,
) -> Result<Request, String> {
    let (person, named) = requester(person);
    let (normal, hash) = subject_hash(&ctx, number)?;
    access::authorize_subject(&ctx.cfg, &ctx.store, &person, named, event, reference, &hash)
        .map_err(|why| format!("refused: {why}"))?;
    let lines = ctx.store.audit_lines()?;
    let calls = access::subject_calls(&lines, &hash);
    Ok(Request { ctx, person, named, normal, hash, lines, calls })
}

/// `subject export`: the caller's recordings (decrypted, Opus) and the audit lines about them, in
/// a new directory for the caller (GDPR Art. 15).
pub fn subject_export(
    w: &Where,
    number: &str,
    person: Option<&str>,
    request_ref: &str,
    identity: Option<&str>,
    out: &str,
) -> ExitCode {
    let req = match request(w, number, person, AccessEvent::SubjectExport, request_ref) {
        Ok(r) => r,
        Err(code) => return code,
    };
    match export_subject(&req, request_ref, identity, Path::new(out), out) {
        Ok((written, lines)) => {
            println!("subject {}: {written} recording(s) and {lines} audit line(s) of {} call(s) exported to {out}", req.normal, req.calls.len());
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// Writes a caller's recordings (decrypted, Opus), the audit lines about them and a README into
/// the new directory `dir`, and the access line (`out` names the directory there). Returns the
/// number of recordings and of audit lines.
pub fn export_subject(
    req: &Request,
    request_ref: &str,
    identity: Option<&str>,
    dir: &Path,
    out: &str,
) -> Result<(usize, usize), String> {
    let Request { ctx, person, named, normal, hash, lines, calls } = req;
    let request = request_ref;
    let recs: Vec<Recording> = access::recordings(lines)
        .into_iter()
        .filter(|r| calls.contains(&r.call) && r.removed_by.is_none())
        .collect();
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("{out}: cannot create a new directory: {e}"))?;
    }
    let mut written = vec![];
    for r in &recs {
        for f in r.present().iter().filter(|f| f.ends_with(".opus") || f.ends_with(".opus.age")) {
            let p = PathBuf::from(f);
            let (bytes, _) = open_checked(r, &p, identity)?;
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("recording.opus")
                .trim_end_matches(".age")
                .to_string();
            write_new(&dir.join(&name), &bytes)?;
            written.push(name);
        }
    }
    let audit: String =
        access::subject_lines(lines, calls).iter().map(|l| format!("{}\n", l.text)).collect();
    let readme = format!(
        "Your call recordings (request {request})\n\nNumber: {normal}\nCalls found: {}\nRecordings: {}\n\n\
         Each .opus file is one recording (Ogg Opus: most players read it). audit.jsonl lists every\n\
         record the call-recording system kept about these calls, one per line; it never holds your\n\
         number, only a keyed hash of it.\n",
        calls.len(),
        written.len()
    );
    for (name, text) in [("audit.jsonl", audit), ("README.txt", readme)] {
        write_text(&dir.join(name), &text)?;
    }
    let mut f = Map::new();
    f.insert("person".into(), json!(person));
    f.insert("role".into(), json!(if *named { Some("dpo") } else { None }));
    f.insert("request".into(), json!(request));
    f.insert("number_hash".into(), json!(hash));
    f.insert("calls".into(), json!(calls));
    f.insert("recordings".into(), json!(written));
    f.insert("out".into(), json!(out));
    if let Some(i) = identity {
        f.insert("identity".into(), json!(fingerprints(i)));
    }
    if let Err(e) = ctx.store.log_access(AccessEvent::SubjectExport, f) {
        let _ = std::fs::remove_dir_all(dir);
        return Err(e);
    }
    Ok((written.len(), access::subject_lines(lines, calls).len()))
}

fn write_text(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// `subject erase`: the caller's recordings deleted, a `recording_erased` line per call in the
/// audit log with the request reference (GDPR Art. 17, 21).
pub fn subject_erase(
    w: &Where,
    number: &str,
    person: Option<&str>,
    request_ref: &str,
    yes: bool,
) -> ExitCode {
    let req = match request(w, number, person, AccessEvent::SubjectErase, request_ref) {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (normal, calls, request) = (&req.normal, &req.calls, request_ref);
    let all = access::recordings(&req.lines);
    let recs: Vec<&Recording> =
        all.iter().filter(|r| calls.contains(&r.call) && r.removed_by.is_none()).collect();
    if !yes && std::io::stdin().is_terminal() {
        eprint!(
            "erase {} recording(s) of {} call(s) of {normal} (request {request})? [y/N] ",
            recs.len(),
            calls.len()
        );
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("callconsent: nothing erased");
            return ExitCode::from(1);
        }
    }
    let (erased, files) = match erase_subject(&req, request) {
        Ok(e) => e,
        Err(e) => return fail(e),
    };
    for (call, files) in &erased {
        println!(
            "erased call {call}: {}",
            if files.is_empty() { "no file was left".to_string() } else { files.join(" ") }
        );
    }
    println!("subject {normal}: {} recording(s) of {} call(s) erased ({files} file(s)); recording_erased lines in {}", erased.len(), calls.len(), req.ctx.store.audit_log.display());
    ExitCode::SUCCESS
}

/// Erases a caller's recordings (the `recording_erased` lines) and writes the access line.
/// Returns (call, files deleted) and the number of files.
/// Each erased call and the files deleted for it.
pub type Erased = Vec<(String, Vec<String>)>;

pub fn erase_subject(req: &Request, request: &str) -> Result<(Erased, usize), String> {
    let Request { ctx, person, named, hash, lines, calls, .. } = req;
    if ctx.cfg.general.store.is_some() {
        // Several nodes (issue 14): every node erases its own files, as `subject erase` does.
        let (id, nodes, done) = crate::shared::erase_everywhere(
            &ctx.cfg.general,
            hash,
            person,
            request,
            std::time::Duration::from_secs(60),
        )?;
        let files: u64 = done.iter().map(|(_, n)| n).sum();
        let mut f = Map::new();
        f.insert("person".into(), json!(person));
        f.insert("role".into(), json!(if *named { Some("dpo") } else { None }));
        f.insert("request".into(), json!(request));
        f.insert("number_hash".into(), json!(hash));
        f.insert("erasure".into(), json!(id));
        f.insert("nodes".into(), json!(done.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()));
        f.insert("files_deleted".into(), json!(files));
        ctx.store.log_access(AccessEvent::SubjectErase, f)?;
        let missing: Vec<&String> =
            nodes.iter().filter(|n| !done.iter().any(|(d, _)| d == *n)).collect();
        if !missing.is_empty() {
            return Err(format!("erasure request {id} is not done yet on node(s) {:?}: each applies it when it is back", missing));
        }
        return Ok((
            done.into_iter()
                .map(|(n, k)| (format!("node {n}"), vec![format!("{k} file(s)")]))
                .collect(),
            files as usize,
        ));
    }
    let all = access::recordings(lines);
    let recs: Vec<&Recording> =
        all.iter().filter(|r| calls.contains(&r.call) && r.removed_by.is_none()).collect();
    let erased = access::erase(&ctx.store, &recs, person, request)?;
    let files: usize = erased.iter().map(|(_, f)| f.len()).sum();
    let mut f = Map::new();
    f.insert("person".into(), json!(person));
    f.insert("role".into(), json!(if *named { Some("dpo") } else { None }));
    f.insert("request".into(), json!(request));
    f.insert("number_hash".into(), json!(hash));
    f.insert("calls".into(), json!(erased.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>()));
    f.insert("files_deleted".into(), json!(files));
    ctx.store.log_access(AccessEvent::SubjectErase, f)?;
    Ok((erased, files))
}

/// For `agent`: the agent's recordings on disk now, and every access to them, as JSON lines.
pub fn agent_extra(w: &Where, agent: &str) -> Result<(Vec<String>, usize, usize), String> {
    let ctx = open(w, false)?;
    let lines = ctx.store.audit_lines()?;
    let mut out = vec![];
    let mut present = 0;
    for r in access::recordings(&lines).iter().filter(|r| r.agent.as_deref() == Some(agent)) {
        for f in r.present() {
            present += 1;
            out.push(json!({"recording": f, "call": r.call, "agent": agent, "kept_at": r.kept_at, "duration_ms": r.duration_ms, "encrypted_to": r.encrypted_to}).to_string());
        }
    }
    let mut accesses = 0;
    for l in ctx.store.access_lines()?.iter().filter(|l| l.value["agent"].as_str() == Some(agent)) {
        accesses += 1;
        out.push(l.text.clone());
    }
    Ok((out, present, accesses))
}

/// `identity new`: an age X25519 identity, written as age-keygen writes it (0600, never over a file).
pub fn identity_new(file: &str) -> ExitCode {
    use age::secrecy::ExposeSecret;
    use std::os::unix::fs::OpenOptionsExt;
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let text = format!(
        "# created: {}\n# public key: {recipient}\n{}\n",
        callconsent_runtime::audit::now_rfc3339(),
        id.to_string().expose_secret()
    );
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|_| f.sync_all()));
    if let Err(e) = written {
        return fail(format!("{file}: {e} (an identity is never overwritten)"));
    }
    println!("{recipient}");
    eprintln!(
        "callconsent: {file}: identity created; give encrypt_to = {recipient} (fingerprint {})",
        policy::recipient_fingerprint(&recipient)
    );
    ExitCode::SUCCESS
}

/// `identity recipient`: the recipient and fingerprint of each X25519 identity of a file.
pub fn identity_recipient(file: &str) -> ExitCode {
    let recipients = archive::identity_recipients(Path::new(file));
    if recipients.is_empty() {
        return fail(format!("{file}: no age X25519 identity can be read there"));
    }
    for r in &recipients {
        println!("{r} {}", policy::recipient_fingerprint(r));
    }
    ExitCode::SUCCESS
}
