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
pub fn record(call: &str, channel: &str, event: AuditEvent, facts: Map<String, Value>) -> Map<String, Value> {
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
    /// A line whose hash is sent back once it is on disk (fsynced).
    Acked(Map<String, Value>, Sender<String>),
    Flush(Sender<()>),
}

/// The handle the rest of the module holds. Cloning is cheap; dropping the last [`AuditLog`]
/// stops the thread after it has written everything queued.
pub struct AuditLog {
    tx: Option<Sender<Msg>>,
    thread: Option<JoinHandle<()>>,
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
}

impl AuditLog {
    pub fn open(path: &Path) -> std::io::Result<AuditLog> {
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new().recursive(true).mode(0o750).create(dir)?;
        }
        let prev = last_line(path)?.map(|l| line_hash(&l)).unwrap_or_default();
        let file = OpenOptions::new().create(true).append(true).mode(0o640).open(path)?;
        let (tx, rx) = unbounded();
        let p = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("cc-audit".into())
            .spawn(move || writer(file, prev, rx, p))?;
        Ok(AuditLog { tx: Some(tx), thread: Some(thread) })
    }

    pub fn sender(&self) -> AuditSender {
        AuditSender(self.tx.clone().expect("sender exists until drop"))
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

fn last_line(path: &Path) -> std::io::Result<Option<String>> {
    match File::open(path) {
        Ok(f) => Ok(BufReader::new(f).lines().map_while(Result::ok).filter(|l| !l.is_empty()).last()),
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

fn write_head(path: &Path, hash: &str) {
    let head = head_path(path);
    let tmp = head.with_extension("head.tmp");
    let written = OpenOptions::new().create(true).truncate(true).write(true).mode(0o640).open(&tmp).and_then(|mut f| f.write_all(hash.as_bytes()));
    if written.and_then(|_| std::fs::rename(&tmp, &head)).is_err() {
        log::error!("callconsent: cannot write {}", head.display());
    }
}

/// The UTC day of a log's first line (or today for an empty log).
fn day_of(path: &Path) -> String {
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    File::open(path)
        .ok()
        .and_then(|f| BufReader::new(f).lines().next())
        .and_then(Result::ok)
        .and_then(|l| serde_json::from_str::<Value>(&l).ok())
        .and_then(|v| v["ts"].as_str().map(|t| t.chars().take(10).collect()))
        .unwrap_or(today)
}

/// At the first write of a new UTC day, the log becomes `<stem>-<day>.jsonl` and a new one
/// starts; its first line's `prev` is the hash of the rotated file's last line.
fn rotate_if_new_day(file: &mut File, day: &mut String, path: &Path) {
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    if *day == today {
        return;
    }
    let empty = file.metadata().map(|m| m.len() == 0).unwrap_or(true);
    if !empty {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("audit");
        let rotated = path.with_file_name(format!("{stem}-{day}.jsonl"));
        if std::fs::rename(path, &rotated).is_ok() {
            match OpenOptions::new().create(true).append(true).mode(0o640).open(path) {
                Ok(f) => *file = f,
                Err(e) => log::error!("callconsent: cannot start a new audit log {}: {e}", path.display()),
            }
        }
    }
    *day = today;
}

/// Chains one record onto the batch: `prev` is the hash of the line before.
fn append(buf: &mut String, prev: &mut String, mut rec: Map<String, Value>) {
    rec.insert("prev".into(), Value::String(prev.clone()));
    let line = Value::Object(rec).to_string();
    *prev = line_hash(&line);
    buf.push_str(&line);
    buf.push('\n');
}

fn writer(mut file: File, mut prev: String, rx: Receiver<Msg>, path: PathBuf) {
    let mut waiting = Vec::new();
    let mut day = day_of(&path);
    while let Ok(first) = rx.recv() {
        rotate_if_new_day(&mut file, &mut day, &path);
        let mut buf = String::new();
        let mut next = Some(first);
        let mut acks = Vec::new();
        while let Some(msg) = next.take().or_else(|| rx.try_recv().ok()) {
            match msg {
                Msg::Line(rec) => append(&mut buf, &mut prev, rec),
                Msg::Acked(rec, ack) => {
                    append(&mut buf, &mut prev, rec);
                    acks.push((ack, prev.clone()));
                }
                Msg::Flush(done) => waiting.push(done),
            }
        }
        if !buf.is_empty() {
            if let Err(e) = file.write_all(buf.as_bytes()).and_then(|_| file.sync_data()) {
                log::error!("callconsent: cannot write the audit log {}: {e}", path.display());
            }
            write_head(&path, &prev);
        }
        for (ack, hash) in acks {
            let _ = ack.send(hash);
        }
        for w in waiting.drain(..) {
            let _ = w.send(());
        }
    }
}

/// Checks the hash chain of an audit file: returns the 1-based number of the first line whose
/// `prev` does not match the line before it.
pub fn verify(text: &str) -> Result<usize, usize> {
    let mut prev = String::new();
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|_| i + 1)?;
        if v.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
            return Err(i + 1);
        }
        prev = line_hash(line);
        n += 1;
    }
    Ok(n)
}

/// Verifies files that follow each other (rotated files, then the current one): the chain runs
/// across them. Returns the number of lines, or the file, line and reason of the first break.
pub fn verify_files(files: &[&str]) -> Result<usize, (String, usize, String)> {
    let mut prev = String::new();
    let mut n = 0;
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| (f.to_string(), 0, format!("cannot read: {e}")))?;
        for (i, line) in text.lines().enumerate() {
            if line.is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line).map_err(|_| (f.to_string(), i + 1, "not a JSON line".to_string()))?;
            if v.get("prev").and_then(Value::as_str) != Some(prev.as_str()) {
                let why = if i == 0 { "does not follow the previous file" } else { "the line before it was edited, removed or inserted (prev does not match)" };
                return Err((f.to_string(), i + 1, why.into()));
            }
            prev = line_hash(line);
            n += 1;
        }
        if let Ok(head) = std::fs::read_to_string(head_path(Path::new(f))) {
            if head.trim() != prev {
                let last = text.lines().filter(|l| !l.is_empty()).count();
                return Err((f.to_string(), last, "the last line was edited (it does not match the .head file)".into()));
            }
        }
    }
    Ok(n)
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
}
