//! The audit log: one JSON object per line, written by its own thread (never the media path).
//!
//! Every line has `ts` (UTC, RFC 3339, milliseconds), `call` (the linkedid), `channel`, `event`
//! and the facts of that event, then `prev`: the SHA-256 of the line before it (empty for the
//! first line of a file), so an edited, removed or inserted line breaks the chain.
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{unbounded, Receiver, Sender};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use callconsent_core::audit::AuditEvent;

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn line_hash(line: &str) -> String {
    Sha256::digest(line.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds one audit record, stamped now: the one place every line gets its `ts`, `call`,
/// `channel` and `event`.
pub fn record(
    call: &str,
    channel: &str,
    event: AuditEvent,
    facts: Map<String, Value>,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("ts".into(), Value::String(now_rfc3339()));
    m.insert("call".into(), Value::String(call.to_string()));
    m.insert("channel".into(), Value::String(channel.to_string()));
    m.insert("event".into(), Value::String(event.as_str().to_string()));
    m.extend(facts);
    m
}

enum Msg {
    Line(Map<String, Value>),
    /// A line whose hash is sent back once it is on disk (fsynced); never for a line not written.
    Acked(Map<String, Value>, Sender<String>),
    Flush(Sender<()>),
    /// Publish the head (at load, reload, hourly); rotation also writes an `audit_checkpoint`.
    Checkpoint(&'static str),
}

/// The chain's head as published outside the file (the host's logger, a management event), so
/// that a truncated log with its `.head` deleted is still found (`audit verify --anchor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub file: PathBuf,
    /// The newest line's number in the file and its SHA-256.
    pub line: u64,
    pub head: String,
    /// Why: "load", "rotated", "hourly", or "write_failed" (then `error` says why).
    pub reason: &'static str,
    pub error: Option<String>,
}

/// How the log is written.
#[derive(Default)]
pub struct Options {
    /// The key of the keyed chain and its id: every line then carries `key` and `mac`
    /// (HMAC-SHA256 of the line without `mac`), which nobody without the key can recompute.
    pub key: Option<(Vec<u8>, String)>,
    /// Called with the head at every checkpoint and when a write fails.
    pub publish: Option<Box<dyn Fn(Published) + Send>>,
    /// The PBX that wrote the line (`asterisk`, `freeswitch`): every line carries it as `pbx`.
    pub pbx: Option<String>,
    /// Told (without waiting) after every write: the shipper of the shared store (issue 14).
    pub wake: Option<crossbeam_channel::Sender<()>>,
}

/// The audit key derived from the installation secret (never the secret itself).
pub fn audit_key(secret: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(b"callconsent-audit-chain-v1");
    mac.finalize().into_bytes().to_vec()
}

fn hmac_hex(key: &[u8], text: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(text.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The state of the writer, for `show status`.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub lines_written: u64,
    pub head: String,
    pub last_error: Option<String>,
}

/// The handle the rest of the module holds. Cloning is cheap; dropping the last [`AuditLog`]
/// stops the thread after it has written everything queued.
pub struct AuditLog {
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
    status: std::sync::Arc<std::sync::Mutex<Status>>,
}

#[derive(Clone)]
pub struct AuditSender(Sender<Msg>);

impl AuditSender {
    pub fn send(&self, rec: Map<String, Value>) {
        // The writer only stops at unload, after every sender is gone.
        let _ = self.0.send(Msg::Line(rec));
    }

    /// Sends a line; the receiver gets its SHA-256 once it is durably written.
    pub fn send_acked(&self, rec: Map<String, Value>) -> Receiver<String> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let _ = self.0.send(Msg::Acked(rec, tx));
        rx
    }

    /// Publishes the head (the newest line's hash) outside the file, once what was sent before
    /// is on disk.
    pub fn checkpoint(&self, reason: &'static str) {
        let _ = self.0.send(Msg::Checkpoint(reason));
    }
}

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        AuditLog::open_with(path, Options::default())
    }

    /// Opens the log for appending. A last line torn by a crash (no line end) is cut off, and
    /// the first new line, `log_repaired`, says how many bytes went.
    pub fn open_with(path: &Path, options: Options) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
        }
        let torn = repair_torn_tail(path)?;
        let (prev, lines) = match last_line(path)? {
            Some((l, n)) => (line_hash(&l), n),
            None => (String::new(), 0),
        };
        let file = OpenOptions::new().create(true).append(true).mode(0o640).open(path)?;
        let len = file.metadata()?.len();
        let (tx, rx) = unbounded();
        let status = std::sync::Arc::new(std::sync::Mutex::new(Status {
            head: prev.clone(),
            ..Status::default()
        }));
        let mut w = Writer {
            file,
            len,
            prev,
            lines,
            path: path.to_path_buf(),
            day: day_of(path),
            options,
            unwritten: Vec::new(),
            status: status.clone(),
        };
        if torn > 0 {
            let mut f = Map::new();
            f.insert("bytes_dropped".into(), Value::from(torn));
            f.insert("reason".into(), Value::from("the last line was torn by a crash (no line end): cut off, the chain goes on from the line before"));
            w.unwritten.push(record("", "", AuditEvent::LogRepaired, f));
        }
        let thread =
            std::thread::Builder::new().name("cc-audit".into()).spawn(move || w.run(rx))?;
        Ok(AuditLog { tx: Some(tx), thread: Some(thread), status })
    }

    pub fn sender(&self) -> AuditSender {
        AuditSender(self.tx.clone().expect("sender exists until drop"))
    }

    pub fn status(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until every line sent before this call is on disk.
    pub fn flush(&self) {
        if let Some(tx) = &self.tx {
            let (done_tx, done_rx) = crossbeam_channel::bounded(1);
            if tx.send(Msg::Flush(done_tx)).is_ok() {
                let _ = done_rx.recv_timeout(std::time::Duration::from_secs(5));
            }
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Cuts a last line that has no line end (torn by a crash); returns the bytes cut.
fn repair_torn_tail(path: &Path) -> std::io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(0);
    }
    // Find the last line end (scan back in blocks).
    let mut end = len;
    let mut keep = 0u64;
    let mut buf = vec![0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(&mut buf[..n])?;
        if let Some(i) = buf[..n].iter().rposition(|b| *b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    f.set_len(keep)?;
    f.sync_all()?;
    Ok(len - keep)
}

/// A file's bytes as lines, never more than its length says (a device or a FIFO reads as empty).
fn bounded_reader(f: File) -> std::io::Result<BufReader<std::io::Take<File>>> {
    use std::io::Read;
    let len = f.metadata()?.len();
    Ok(BufReader::new(f.take(len)))
}

/// The last line of a file and its number.
fn last_line(path: &Path) -> std::io::Result<Option<(String, u64)>> {
    match File::open(path) {
        Ok(f) => {
            let mut last = None;
            let mut n = 0;
            for l in bounded_reader(f)?.lines().map_while(Result::ok).filter(|l| !l.is_empty()) {
                n += 1;
                last = Some(l);
            }
            Ok(last.map(|l| (l, n)))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// `<log>.head` holds the hash of the newest line, so an edit of the last line is found too.
pub fn head_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

fn write_head(path: &Path, hash: &str) -> std::io::Result<()> {
    let head = head_path(path);
    let tmp = head.with_extension("head.tmp");
    OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o640)
        .open(&tmp)
        .and_then(|mut f| f.write_all(hash.as_bytes()))?;
    std::fs::rename(&tmp, &head)
}

/// The UTC day of a log's first line (or today for an empty log).
fn day_of(path: &Path) -> String {
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    File::open(path)
        .ok()
        .and_then(|f| bounded_reader(f).ok())
        .and_then(|r| r.lines().next())
        .and_then(Result::ok)
        .and_then(|l| serde_json::from_str::<Value>(&l).ok())
        .and_then(|v| v["ts"].as_str().map(|t| t.chars().take(10).collect()))
        .unwrap_or(today)
}

struct Writer {
    file: File,
    /// The file's length after our last write: another length means another writer appended.
    len: u64,
    /// The hash of the newest line durably written.
    prev: String,
    /// Lines in the current file.
    lines: u64,
    path: PathBuf,
    day: String,
    options: Options,
    /// Records not written yet because a write failed (retried first, in order).
    unwritten: Vec<Map<String, Value>>,
    status: std::sync::Arc<std::sync::Mutex<Status>>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut waiting = Vec::new();
        while let Ok(first) = rx.recv() {
            self.rotate_if_new_day();
            let mut recs = std::mem::take(&mut self.unwritten);
            let mut acks: Vec<(usize, Sender<String>)> = Vec::new();
            let mut checkpoints = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next.take().or_else(|| rx.try_recv().ok()) {
                match msg {
                    Msg::Line(rec) => recs.push(rec),
                    Msg::Acked(rec, ack) => {
                        recs.push(rec);
                        acks.push((recs.len() - 1, ack));
                    }
                    Msg::Flush(done) => waiting.push(done),
                    Msg::Checkpoint(reason) => checkpoints.push(reason),
                }
            }
            match self.write(&recs) {
                Ok(hashes) => {
                    for (i, ack) in acks {
                        let _ = ack.send(hashes[i].clone());
                    }
                    for reason in checkpoints {
                        self.publish(reason, None);
                    }
                }
                Err(e) => {
                    // Nothing of the batch counts: no acknowledgement, the head stays where the
                    // disk is; the records are tried again with the next batch.
                    let msg = format!("cannot write the audit log {}: {e}", self.path.display());
                    log::error!("callconsent: {msg}");
                    if let Ok(mut s) = self.status.lock() {
                        s.last_error = Some(msg.clone());
                    }
                    self.publish("write_failed", Some(msg));
                    self.unwritten = recs;
                }
            }
            for w in waiting.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn checkpoint_record(
        &self,
        reason: &'static str,
        previous: Option<(&str, u64, &str)>,
    ) -> Map<String, Value> {
        // Written only where the chain crosses files (rotation); other checkpoints publish the
        // head without a line.
        let mut f = Map::new();
        f.insert("reason".into(), Value::from(reason));
        f.insert("lines".into(), Value::from(self.lines));
        if let Some((file, lines, head)) = previous {
            f.insert("previous_file".into(), Value::from(file));
            f.insert("previous_lines".into(), Value::from(lines));
            f.insert("previous_head".into(), Value::from(head));
        }
        record("", "", AuditEvent::AuditCheckpoint, f)
    }

    fn publish(&self, reason: &'static str, error: Option<String>) {
        let p = Published {
            file: self.path.clone(),
            line: self.lines,
            head: self.prev.clone(),
            reason,
            error,
        };
        if p.error.is_none() {
            log::info!(
                "callconsent: audit head {} at line {} of {} ({reason})",
                p.head,
                p.line,
                p.file.display()
            );
        }
        if let Some(f) = &self.options.publish {
            f(p);
        }
    }

    /// Chains and writes the records; returns each line's hash. On error the file is cut back to
    /// where it was, so no part of the batch stays. The file is locked while it is written: the
    /// DPO's tool appends lines too (`recording_erased`), and the chain goes on from its last one.
    fn write(&mut self, recs: &[Map<String, Value>]) -> std::io::Result<Vec<String>> {
        if recs.is_empty() {
            return Ok(vec![]);
        }
        let _lock = Locked::new(&self.file)?;
        let before = self.file.metadata()?.len();
        if before != self.len {
            // Another writer appended (or the file was cut): the chain goes on from the last line.
            let (prev, lines) = match last_line(&self.path)? {
                Some((l, n)) => (line_hash(&l), n),
                None => (String::new(), 0),
            };
            self.prev = prev;
            self.lines = lines;
        }
        let (buf, hashes) = chain(&self.prev, recs, &self.options);
        if let Err(e) = (&self.file).write_all(buf.as_bytes()).and_then(|_| self.file.sync_data()) {
            let _ = self.file.set_len(before);
            return Err(e);
        }
        self.len = before + buf.len() as u64;
        self.prev = hashes.last().cloned().unwrap_or_default();
        self.lines += recs.len() as u64;
        if let Err(e) = write_head(&self.path, &self.prev) {
            log::error!("callconsent: cannot write {}: {e}", head_path(&self.path).display());
        }
        if let Some(w) = &self.options.wake {
            let _ = w.try_send(());
        }
        if let Ok(mut s) = self.status.lock() {
            s.lines_written += recs.len() as u64;
            s.head = self.prev.clone();
            s.last_error = None;
        }
        Ok(hashes)
    }

    /// At the first write of a new UTC day, the log becomes `<stem>-<day>.jsonl` and a new one
    /// starts with a checkpoint naming it; the chain goes on across the two files.
    fn rotate_if_new_day(&mut self) {
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        if self.day == today {
            return;
        }
        let empty = self.file.metadata().map(|m| m.len() == 0).unwrap_or(true);
        // Renamed under the lock, after any line the tool appended is counted in the chain.
        let old = self.file.try_clone().ok();
        let _lock = old.as_ref().and_then(|f| Locked::new(f).ok());
        if self.file.metadata().map(|m| m.len()).unwrap_or(self.len) != self.len {
            if let Ok(Some((l, n))) = last_line(&self.path) {
                self.prev = line_hash(&l);
                self.lines = n;
            }
        }
        if !empty {
            let stem = self.path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit");
            let rotated = self.path.with_file_name(format!("{stem}-{}.jsonl", self.day));
            if std::fs::rename(&self.path, &rotated).is_ok() {
                match OpenOptions::new().create(true).append(true).mode(0o640).open(&self.path) {
                    Ok(f) => {
                        self.file = f;
                        self.len = 0;
                        let (name, lines, head) = (
                            rotated
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            self.lines,
                            self.prev.clone(),
                        );
                        self.lines = 0;
                        let rec = self.checkpoint_record("rotated", Some((&name, lines, &head)));
                        self.unwritten.insert(0, rec);
                    }
                    Err(e) => log::error!(
                        "callconsent: cannot start a new audit log {}: {e}",
                        self.path.display()
                    ),
                }
            }
        }
        self.day = today;
    }
}

/// An exclusive lock on a log file (flock), released on drop.
struct Locked<'a>(&'a File);

impl<'a> Locked<'a> {
    fn new(f: &'a File) -> std::io::Result<Locked<'a>> {
        f.lock()?;
        Ok(Locked(f))
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// The lines of `recs` chained after `prev` (stamped with `pbx`, keyed when there is a key),
/// and each line's hash.
fn chain(prev: &str, recs: &[Map<String, Value>], options: &Options) -> (String, Vec<String>) {
    let mut prev = prev.to_string();
    let mut buf = String::new();
    let mut hashes = Vec::with_capacity(recs.len());
    for rec in recs {
        let mut rec = rec.clone();
        if let Some(pbx) = &options.pbx {
            rec.entry("pbx").or_insert_with(|| Value::String(pbx.clone()));
        }
        rec.insert("prev".into(), Value::String(prev.clone()));
        if let Some((key, id)) = &options.key {
            rec.insert("mac_key".into(), Value::String(id.clone()));
            let mac = hmac_hex(key, &Value::Object(rec.clone()).to_string());
            rec.insert("mac".into(), Value::String(mac));
        }
        let line = Value::Object(rec).to_string();
        prev = line_hash(&line);
        hashes.push(prev.clone());
        buf.push_str(&line);
        buf.push('\n');
    }
    (buf, hashes)
}

/// Appends records to a chained log from outside the module (the DPO's tool: the access log,
/// a `recording_erased` line in the audit log), under the same lock the module's writer takes,
/// chained after whatever line is last. Returns each line's hash.
pub fn append(
    path: &Path,
    recs: &[Map<String, Value>],
    options: &Options,
) -> std::io::Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt;
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
    }
    loop {
        let file = OpenOptions::new().create(true).append(true).mode(0o640).open(path)?;
        let _lock = Locked::new(&file)?;
        // The module may have rotated the file between the open and the lock: write to the
        // current one.
        let (ours, now) = (file.metadata()?, fs::metadata(path)?);
        if (ours.dev(), ours.ino()) != (now.dev(), now.ino()) {
            continue;
        }
        if repair_torn_tail(path)? > 0 {
            log::warn!("callconsent: {}: a torn last line was cut off", path.display());
        }
        let prev = last_line(path)?.map(|(l, _)| line_hash(&l)).unwrap_or_default();
        let (buf, hashes) = chain(&prev, recs, options);
        (&file).write_all(buf.as_bytes())?;
        file.sync_data()?;
        if let Some(h) = hashes.last() {
            write_head(path, h)?;
        }
        return Ok(hashes);
    }
}

/// Whether a chained log's lines carry a keyed MAC (its last line has one).
pub fn is_keyed(path: &Path) -> bool {
    last_line(path)
        .ok()
        .flatten()
        .and_then(|(l, _)| serde_json::from_str::<Value>(&l).ok())
        .is_some_and(|v| v.get("mac").is_some())
}

/// Checks the hash chain of an audit file: returns the 1-based number of the first line whose
/// `prev` does not match the line before it.
pub fn verify(text: &str) -> Result<usize, usize> {
    let mut prev = String::new();
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        // The writer never writes a blank line: one there was inserted.
        let v: Value = serde_json::from_str(line).map_err(|_| i + 1)?;
        if v.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(i + 1);
        }
        prev = line_hash(line);
        n += 1;
    }
    Ok(n)
}

/// What `verify_files` checks beyond the chain.
#[derive(Default)]
pub struct Check<'a> {
    /// The audit key: every line must carry a matching `mac`.
    pub key: Option<&'a [u8]>,
    /// Heads published earlier: each must be the hash of a line of the chain (else lines were
    /// removed since it was published).
    pub anchors: &'a [String],
}

/// What `verify_files` found, when the chain holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verified {
    pub lines: usize,
    /// The first file follows files that retention removed (named in their expiry record).
    pub follows_expired: Option<String>,
    pub anchors_found: usize,
    pub keyed_lines: usize,
    /// Lines that carry a keyed MAC no key was given to check (verified without `--key`): the
    /// chain of such a log proves nothing against whoever can rewrite the file, so it is never
    /// called intact on its own.
    pub unchecked_macs: usize,
}

/// Whether a parsed line carries the keyed MAC of `key` (the shared store's verification).
pub fn mac_matches(key: &[u8], v: &Value) -> bool {
    mac_ok(key, v)
}

fn mac_ok(key: &[u8], v: &Value) -> bool {
    let Some(obj) = v.as_object() else { return false };
    let Some(mac) = obj.get("mac").and_then(Value::as_str) else { return false };
    let mut rest = obj.clone();
    rest.shift_remove("mac");
    hmac_hex(key, &Value::Object(rest).to_string()) == mac
}

/// Verifies files that follow each other (rotated files, then the current one): the chain runs
/// across them. Returns the number of lines, or the file, line and reason of the first break.
pub fn verify_files(files: &[&str]) -> Result<usize, (String, usize, String)> {
    verify_files_with(files, &Check::default()).map(|v| v.lines)
}

pub fn verify_files_with(
    files: &[&str],
    check: &Check<'_>,
) -> Result<Verified, (String, usize, String)> {
    let mut texts = Vec::new();
    for f in files {
        texts.push(
            std::fs::read_to_string(f)
                .map_err(|e| (f.to_string(), 0, format!("cannot read: {e}")))?,
        );
    }
    // Files removed by retention leave their last hash in an `audit_file_expired` line.
    let mut expired: Vec<(String, String)> = Vec::new();
    for t in &texts {
        for l in t.lines() {
            if let Ok(v) = serde_json::from_str::<Value>(l) {
                if v["event"] == AuditEvent::AuditFileExpired.as_str() {
                    if let (Some(h), Some(f)) = (v["last_hash"].as_str(), v["file"].as_str()) {
                        expired.push((h.to_string(), f.to_string()));
                    }
                }
            }
        }
    }
    let mut out = Verified::default();
    let mut hashes = std::collections::HashSet::new();
    let mut prev = String::new();
    for (k, (f, text)) in files.iter().zip(&texts).enumerate() {
        for (i, line) in text.lines().enumerate() {
            // The writer never writes a blank line: one there was inserted.
            let v: Value = serde_json::from_str(line).map_err(|_| {
                (
                    f.to_string(),
                    i + 1,
                    "not a JSON line (a blank or foreign line was inserted)".to_string(),
                )
            })?;
            let Some(p) = v.get("prev").and_then(Value::as_str) else {
                return Err((
                    f.to_string(),
                    i + 1,
                    "the line has no prev: it is not one of the module's lines".into(),
                ));
            };
            if p != prev {
                let first = k == 0 && i == 0;
                match expired.iter().find(|(h, _)| first && h == p) {
                    Some((_, file)) => out.follows_expired = Some(file.clone()),
                    None => {
                        let why = if i == 0 {
                            if k == 0 {
                                "lines are missing before it: it follows no file given and no file expired by retention"
                            } else {
                                "does not follow the previous file"
                            }
                        } else {
                            "the line before it was edited, removed or inserted (prev does not match)"
                        };
                        return Err((f.to_string(), i + 1, why.into()));
                    }
                }
            }
            if let Some(key) = check.key {
                if !mac_ok(key, &v) {
                    return Err((
                        f.to_string(),
                        i + 1,
                        "the line's mac does not match: it was edited, or written without the key"
                            .into(),
                    ));
                }
                out.keyed_lines += 1;
            } else if v.get("mac").is_some() {
                out.unchecked_macs += 1;
            }
            prev = line_hash(line);
            hashes.insert(prev.clone());
            out.lines += 1;
        }
        let last = text.lines().filter(|l| !l.is_empty()).count();
        match std::fs::read_to_string(head_path(Path::new(f))) {
            Ok(head) if head.trim() != prev => {
                return Err((
                    f.to_string(),
                    last,
                    "the last line was edited or removed (it does not match the .head file)".into(),
                ));
            }
            Ok(_) => {}
            // Only the live log has a .head; rotated files (<stem>-YYYY-MM-DD.jsonl) are closed by
            // the next file's first line.
            Err(_) if k + 1 == files.len() && !is_rotated(f) && check.anchors.is_empty() => {
                return Err((f.to_string(), last, "the .head file is missing: the end of the log cannot be checked (pass --anchor with a published head)".into()));
            }
            Err(_) => {}
        }
    }
    for a in check.anchors {
        if !hashes.contains(a.trim()) {
            let f = files.last().map(|f| f.to_string()).unwrap_or_default();
            return Err((
                f,
                out.lines,
                format!(
                    "the published head {} is not in the log: lines were removed after it",
                    a.trim()
                ),
            ));
        }
        out.anchors_found += 1;
    }
    Ok(out)
}

/// A rotated audit file: `<stem>-YYYY-MM-DD.jsonl`.
fn is_rotated(f: &str) -> bool {
    let name = Path::new(f).file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.strip_suffix(".jsonl").and_then(|n| n.get(n.len().saturating_sub(11)..)).is_some_and(|d| {
        d.starts_with('-') && chrono::NaiveDate::parse_from_str(&d[1..], "%Y-%m-%d").is_ok()
    })
}

/// The hash of a file's last line and its number of lines (for the expiry record).
pub fn file_tail(path: &Path) -> Option<(String, u64)> {
    last_line(path).ok().flatten().map(|(l, n)| (line_hash(&l), n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_chain_and_an_edit_is_found() {
        let dir = std::env::temp_dir().join(format!("cc-audit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("audit.jsonl");
        {
            let log = AuditLog::open(&path).expect("open");
            let s = log.sender();
            for i in 0..5 {
                let mut f = Map::new();
                f.insert("n".into(), Value::from(i));
                s.send(record("1.1", "Local/x", AuditEvent::Selected, f));
            }
            log.flush();
        }
        {
            // Reopening continues the chain.
            let log = AuditLog::open(&path).expect("reopen");
            log.sender().send(record("1.2", "Local/y", AuditEvent::CallEnded, Map::new()));
        }
        let text = fs::read_to_string(&path).expect("read");
        assert_eq!(verify(&text), Ok(6));
        let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let keys: Vec<_> = first.as_object().unwrap().keys().cloned().collect();
        assert_eq!(&keys[..4], &["ts", "call", "channel", "event"]);
        let edited = text.replacen("\"n\":2", "\"n\":3", 1);
        assert_eq!(verify(&edited), Err(4));
        // The .head file protects the last line too.
        let p = path.display().to_string();
        assert_eq!(verify_files(&[&p]), Ok(6));
        let last_edited = text.replace("\"Local/y\"", "\"Local/z\"");
        fs::write(&path, last_edited).unwrap();
        assert_eq!(verify_files(&[&p]).unwrap_err().1, 6);
        let _ = fs::remove_dir_all(&dir);
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cc-audit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn keyed(path: &Path, key: &[u8]) -> AuditLog {
        AuditLog::open_with(
            path,
            Options {
                key: Some((key.to_vec(), "k1".into())),
                publish: None,
                pbx: None,
                wake: None,
            },
        )
        .unwrap()
    }

    #[test]
    fn a_keyed_chain_catches_an_edit_whose_hashes_were_recomputed() {
        let dir = tmp("keyed");
        let path = dir.join("audit.jsonl");
        let key = audit_key(b"0123456789abcdef0123456789abcdef");
        {
            let log = keyed(&path, &key);
            for i in 0..3 {
                let mut f = Map::new();
                f.insert("n".into(), Value::from(i));
                log.sender().send(record("1.1", "Local/x", AuditEvent::Selected, f));
            }
        }
        let p = path.display().to_string();
        let ok = verify_files_with(&[&p], &Check { key: Some(&key), anchors: &[] }).unwrap();
        assert_eq!((ok.lines, ok.keyed_lines), (3, 3));
        // Someone without the key edits line 2 and recomputes every prev and the .head.
        let text = fs::read_to_string(&path).unwrap();
        let mut prev = String::new();
        let mut out = String::new();
        for (i, l) in text.lines().enumerate() {
            let mut v: Map<String, Value> = serde_json::from_str(l).unwrap();
            if i == 1 {
                v.insert("n".into(), Value::from(42));
            }
            v.insert("prev".into(), Value::from(prev.clone()));
            let line = Value::Object(v).to_string();
            prev = line_hash(&line);
            out.push_str(&line);
            out.push('\n');
        }
        fs::write(&path, out).unwrap();
        fs::write(head_path(&path), &prev).unwrap();
        assert!(verify_files(&[&p]).is_ok(), "without the key the forgery passes the plain chain");
        let e = verify_files_with(&[&p], &Check { key: Some(&key), anchors: &[] }).unwrap_err();
        assert_eq!(e.1, 2, "{e:?}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn lines_appended_by_the_tool_while_the_module_writes_keep_one_chain() {
        let dir = tmp("append");
        let path = dir.join("audit.jsonl");
        let key = audit_key(b"0123456789abcdef0123456789abcdef");
        let tool =
            Options { key: Some((key.clone(), "k1".into())), publish: None, pbx: None, wake: None };
        let line = |n: i64| {
            let mut f = Map::new();
            f.insert("n".into(), Value::from(n));
            record("1.1", "", AuditEvent::Selected, f)
        };
        {
            let log = keyed(&path, &key);
            for round in 0..3 {
                log.sender().send(line(round));
                log.flush();
                // The DPO's tool appends between two of the module's lines.
                let h = append(&path, &[line(100 + round), line(200 + round)], &tool).unwrap();
                assert_eq!(h.len(), 2);
                assert_eq!(fs::read_to_string(head_path(&path)).unwrap(), h[1]);
            }
            log.sender().send(line(9));
        }
        let p = path.display().to_string();
        let ok = verify_files_with(&[&p], &Check { key: Some(&key), anchors: &[] }).unwrap();
        assert_eq!((ok.lines, ok.keyed_lines), (10, 10));
        assert!(is_keyed(&path));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_last_line_is_cut_and_said() {
        let dir = tmp("torn");
        let path = dir.join("audit.jsonl");
        {
            let log = AuditLog::open(&path).unwrap();
            log.sender().send(record("1.1", "Local/x", AuditEvent::Selected, Map::new()));
        }
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        let torn = b"{\"ts\":\"2026-12-01T00:00:00.000Z\",\"call\":\"1.2\",\"ev";
        f.write_all(torn).unwrap();
        drop(f);
        {
            let log = AuditLog::open(&path).unwrap();
            log.sender().send(record("1.3", "Local/y", AuditEvent::CallEnded, Map::new()));
        }
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(verify(&text), Ok(3), "{text}");
        let repaired: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
        assert_eq!(repaired["event"], "log_repaired");
        assert_eq!(repaired["bytes_dropped"], torn.len());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_acknowledges_nothing_and_says_so() {
        let dir = tmp("full");
        let path = dir.join("audit.jsonl");
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let published = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let p2 = published.clone();
        let log = AuditLog::open_with(
            &path,
            Options {
                key: None,
                publish: Some(Box::new(move |p| p2.lock().unwrap().push(p))),
                pbx: None,
                wake: None,
            },
        )
        .unwrap();
        let ack = log.sender().send_acked(record(
            "1.1",
            "Local/x",
            AuditEvent::RecordingKept,
            Map::new(),
        ));
        assert!(
            ack.recv_timeout(std::time::Duration::from_secs(5)).is_err(),
            "a line that is not on disk was acknowledged"
        );
        log.flush();
        let st = log.status();
        assert!(st.last_error.as_deref().is_some_and(|e| e.contains("cannot write")), "{st:?}");
        assert_eq!((st.lines_written, st.head.as_str()), (0, ""));
        assert!(published
            .lock()
            .unwrap()
            .iter()
            .any(|p| p.reason == "write_failed" && p.error.is_some()));
        drop(log);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn truncation_with_the_head_deleted_is_caught_by_a_published_head() {
        let dir = tmp("anchor");
        let path = dir.join("audit.jsonl");
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let h2 = heads.clone();
        {
            let log = AuditLog::open_with(
                &path,
                Options {
                    key: None,
                    publish: Some(Box::new(move |p| h2.lock().unwrap().push(p.head))),
                    pbx: None,
                    wake: None,
                },
            )
            .unwrap();
            let s = log.sender();
            s.send(record("1.1", "Local/x", AuditEvent::Selected, Map::new()));
            s.send(record("1.2", "Local/x", AuditEvent::Selected, Map::new()));
            s.checkpoint("hourly");
            s.send(record("1.3", "Local/x", AuditEvent::Selected, Map::new()));
        }
        let published = heads.lock().unwrap().clone();
        assert_eq!(published.len(), 1);
        let p = path.display().to_string();
        // Cut the log after its first line and delete .head: the plain chain of what is left holds.
        let first = fs::read_to_string(&path).unwrap().lines().next().unwrap().to_string();
        fs::write(&path, format!("{first}\n")).unwrap();
        fs::remove_file(head_path(&path)).unwrap();
        assert_eq!(verify(&fs::read_to_string(&path).unwrap()), Ok(1));
        let e = verify_files(&[&p]).unwrap_err();
        assert!(e.2.contains(".head file is missing"), "{e:?}");
        let e = verify_files_with(&[&p], &Check { key: None, anchors: &published }).unwrap_err();
        assert!(e.2.contains("is not in the log"), "{e:?}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_removed_by_retention_is_told_from_a_removed_file() {
        let dir = tmp("expired");
        let (old, new) = (dir.join("audit-2026-01-01.jsonl"), dir.join("audit.jsonl"));
        {
            let log = AuditLog::open(&old).unwrap();
            log.sender().send(record("1.1", "Local/x", AuditEvent::Selected, Map::new()));
        }
        let (last_hash, lines) = file_tail(&old).unwrap();
        // The new file goes on from the old one's last line.
        let first = {
            let mut m = record("1.2", "Local/x", AuditEvent::Selected, Map::new());
            m.insert("prev".into(), Value::from(last_hash.clone()));
            Value::Object(m).to_string()
        };
        fs::write(&new, format!("{first}\n")).unwrap();
        fs::write(head_path(&new), line_hash(&first)).unwrap();
        fs::remove_file(&old).unwrap();
        let p = new.display().to_string();
        let e = verify_files(&[&p]).unwrap_err();
        assert!(e.2.contains("lines are missing before it"), "{e:?}");
        // With the sweeper's expiry record, the same gap is explained.
        {
            let log = AuditLog::open(&new).unwrap();
            let mut f = Map::new();
            f.insert("file".into(), Value::from(old.display().to_string()));
            f.insert("last_hash".into(), Value::from(last_hash));
            f.insert("lines".into(), Value::from(lines));
            log.sender().send(record("", "", AuditEvent::AuditFileExpired, f));
        }
        let v = verify_files_with(&[&p], &Check::default()).unwrap();
        assert_eq!(v.follows_expired.as_deref(), Some(old.display().to_string().as_str()));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_blank_or_foreign_line_is_not_accepted() {
        let dir = tmp("blank");
        let path = dir.join("audit.jsonl");
        {
            let log = AuditLog::open(&path).unwrap();
            log.sender().send(record("1.1", "Local/x", AuditEvent::Selected, Map::new()));
        }
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(verify(&format!("\n{text}")), Err(1));
        let p = path.display().to_string();
        fs::write(&path, format!("{{\"event\":\"selected\"}}\n{text}")).unwrap();
        let e = verify_files(&[&p]).unwrap_err();
        assert!(e.2.contains("has no prev"), "{e:?}");
        let _ = fs::remove_dir_all(&dir);
    }
}
