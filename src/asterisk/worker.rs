//! The worker thread: everything slow or blocking that a call needs (stopping the recorder,
//! deleting files, queueing prompts and tones, re-sending held digits) runs here, fed over a
//! crossbeam channel from the media path.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use serde_json::{json, Map, Value};

use super::ffi::ChanRef;
use super::Slot;
use crate::audit::AuditSender;
use crate::encoders::{self, PoolSender};

pub enum Job {
    StopAndDelete { chan: ChanRef, slot: Arc<Slot>, by: &'static str },
    /// Stop the recorder and keep the file (it is kept at hangup).
    Stop { chan: ChanRef, slot: Arc<Slot> },
    PlayToCaller { chan: ChanRef, file: String },
    /// A tone to the caller's bridge peer; retried briefly while the peer is still joining.
    Tone { chan: ChanRef, tones: String, tries: u32 },
    SendDigits { chan: ChanRef, digits: String },
    /// Deletes the files of a refused recording again at these delays after hangup.
    DeleteAgain { slot: Arc<Slot> },
    LateDelete { slot: Arc<Slot> },
    /// The caller's channel joined a bridge; the agent-side checks run once its peer is there.
    Joined { chan: ChanRef, slot: Arc<Slot>, tries: u32 },
    /// Move a kept recording from staging to the kept tree once MixMonitor has closed it.
    Keep { slot: Arc<Slot>, pauses: u32, spans: String, tries: u32 },
}

pub struct Worker {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// After hangup a refused call's files are looked for again at these delays: MixMonitor's own
/// thread closes its file asynchronously at hangup.
pub const DELETE_AGAIN_AFTER: [Duration; 3] = [Duration::ZERO, Duration::from_secs(1), Duration::from_secs(5)];

impl Worker {
    pub fn start(audit: AuditSender, archiver: Option<PoolSender>) -> std::io::Result<Worker> {
        let (tx, rx) = unbounded();
        let thread = std::thread::Builder::new().name("cc-worker".into()).spawn(move || run(rx, audit, archiver))?;
        Ok(Worker { tx: Some(tx), thread: Some(thread) })
    }

    pub fn send(&self, job: Job) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(job);
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Jobs waiting for their time (late deletions, tone retries), in due order.
struct Due {
    jobs: BTreeMap<(Instant, u64), Job>,
    seq: u64,
    /// Where kept recordings go to become Ogg Opus archives (None: `archive = wav`).
    archiver: Option<PoolSender>,
}

impl Due {
    fn at(&mut self, when: Instant, job: Job) {
        self.seq += 1;
        self.jobs.insert((when, self.seq), job);
    }
}

fn run(rx: Receiver<Job>, audit: AuditSender, archiver: Option<PoolSender>) {
    let mut due = Due { jobs: BTreeMap::new(), seq: 0, archiver };
    loop {
        let next = due.jobs.keys().next().map(|(t, _)| *t);
        let job = match next {
            Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match job {
            Ok(job) => handle(job, &audit, &mut due),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // Unloading: the deletions still due are done now; tones are dropped.
                for job in std::mem::take(&mut due.jobs).into_values() {
                    if let Job::LateDelete { slot } = job {
                        late_delete(&slot, &audit);
                    }
                }
                return;
            }
        }
        let now = Instant::now();
        while let Some(entry) = due.jobs.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let job = entry.remove();
            handle(job, &audit, &mut due);
        }
    }
}

fn handle(job: Job, audit: &AuditSender, due: &mut Due) {
    match job {
        Job::StopAndDelete { chan, slot, by } => {
            stop_recorder(&chan, &slot);
            delete_and_audit(&slot, by, audit);
        }
        Job::Stop { chan, slot } => stop_recorder(&chan, &slot),
        Job::PlayToCaller { chan, file } => {
            if chan.play_to_self(&file) != 0 {
                log::info!("callconsent: the caller is not in a bridge; \"{file}\" was not played");
            }
        }
        Job::Tone { chan, tones, tries } => {
            if chan.tones_to_peer(&tones) != 0 && tries < 20 {
                due.at(Instant::now() + Duration::from_millis(50), Job::Tone { chan, tones, tries: tries + 1 });
            }
        }
        Job::SendDigits { chan, digits } => {
            if chan.send_digits(&digits) != 0 {
                log::warn!("callconsent: could not pass digits on to the caller");
            }
        }
        Job::DeleteAgain { slot } => {
            let now = Instant::now();
            for d in DELETE_AGAIN_AFTER {
                due.at(now + d, Job::LateDelete { slot: slot.clone() });
            }
        }
        Job::LateDelete { slot } => late_delete(&slot, audit),
        Job::Joined { chan, slot, tries } => {
            if !super::joined(&slot, &chan, tries) {
                due.at(Instant::now() + Duration::from_millis(50), Job::Joined { chan, slot, tries: tries + 1 });
            }
        }
        Job::Keep { slot, pauses, spans, tries } => {
            let files = slot.files();
            // MixMonitor's own thread closes the file after hangup. A file that is still only a
            // header may be a call without any audio: it is given 3 s, a file with audio 10 s.
            let limit = if files.iter().all(|f| std::fs::metadata(f).map_or(true, |m| m.len() <= 44)) { 30 } else { 100 };
            if tries < limit && files.iter().any(|f| still_written(f)) {
                due.at(Instant::now() + Duration::from_millis(100), Job::Keep { slot, pauses, spans, tries: tries + 1 });
                return;
            }
            keep(&slot, &files, pauses, &spans, audit, due.archiver.as_ref());
        }
    }
}

/// Whether MixMonitor may still be writing the file: this process (Asterisk) has it open, or
/// (where /proc cannot tell, as in a chroot) its WAV header is not final yet. Asterisk's WAV
/// writer fills in the RIFF and data sizes only when it closes the file.
fn still_written(file: &std::path::Path) -> bool {
    let open = std::fs::read_dir("/proc/self/fd")
        .map(|fds| fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == file)))
        .unwrap_or(false);
    open || (file.extension().is_some_and(|e| e == "wav") && file.exists() && !wav_header_final(file))
}

fn wav_header_final(file: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 44];
    let (Ok(mut f), Ok(len)) = (std::fs::File::open(file), std::fs::metadata(file).map(|m| m.len())) else { return false };
    if len <= 44 || f.read_exact(&mut head).is_err() {
        return false;
    }
    let riff = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
    let data = u64::from(u32::from_le_bytes([head[40], head[41], head[42], head[43]]));
    riff == len - 8 && data == len - 44
}

fn keep(slot: &Slot, files: &[PathBuf], pauses: u32, spans: &str, audit: &AuditSender, archiver: Option<&PoolSender>) {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let Some(spool) = files.first().and_then(|f| f.parent()).and_then(|d| d.parent()) else { return };
    let dir = spool.join("kept").join(chrono::Utc::now().format("%Y/%m/%d").to_string());
    if let Err(e) = std::fs::DirBuilder::new().recursive(true).mode(0o750).create(&dir) {
        log::error!("callconsent: cannot create {}: {e}", dir.display());
        return;
    }
    let mut kept = vec![];
    for f in files {
        let Some(name) = f.file_name() else { continue };
        let to = dir.join(name);
        match std::fs::rename(f, &to) {
            Ok(()) => {
                let _ = std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o640));
                kept.push(to.display().to_string());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::error!("callconsent: cannot keep {}: {e}", f.display()),
        }
    }
    let duration_ms = kept.first().and_then(|k| std::fs::metadata(k).ok()).map(|m| m.len().saturating_sub(44) / 16).unwrap_or(0);
    let mut f = Map::new();
    f.insert("file".into(), json!(kept.first()));
    f.insert("files".into(), json!(kept));
    f.insert("duration_ms".into(), json!(duration_ms));
    f.insert("pauses".into(), json!(pauses));
    f.insert("pause_spans_ms".into(), json!(spans));
    f.insert("agent".into(), json!(slot.agent()));
    let rec = slot.record("recording_kept", f);
    let Some(archiver) = archiver else {
        audit.send(rec);
        return;
    };
    // The archive carries the hash of this very line, returned once it is on disk.
    let hash = audit.send_acked(rec);
    let mut tags = vec![
        ("CALLCONSENT_CALL".to_string(), slot.linkedid.clone()),
        ("CALLCONSENT_PROFILE".to_string(), slot.profile.clone()),
        ("CALLCONSENT_NOTICE_VERSION".to_string(), slot.notice.clone()),
        ("CALLCONSENT_AGENT".to_string(), slot.agent().unwrap_or_default()),
        ("CALLCONSENT_PAUSES".to_string(), spans.to_string()),
    ];
    // The mixed recording carries the hash; the per-leg files name it through CALLCONSENT_CALL.
    let mut hash = Some(hash);
    for k in &kept {
        let wav = PathBuf::from(k);
        tags.retain(|(key, _)| key != "CALLCONSENT_FILE");
        tags.push(("CALLCONSENT_FILE".to_string(), wav.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()));
        let job = encoders::Job {
            wav,
            call: slot.linkedid.clone(),
            channel: slot.channel.clone(),
            tags: tags.clone(),
            audit_hash: hash.take(),
        };
        encoders::write_sidecar(&job, None);
        archiver.send(job);
    }
}

/// Stops the call's MixMonitor (synchronous close); an already stopped one is not an error.
fn stop_recorder(chan: &ChanRef, slot: &Slot) {
    if chan.mixmonitor_stop(&slot.mixmon_id()) != 0 {
        log::debug!("callconsent: MixMonitor on {} was already stopped", slot.channel);
    }
}

/// Deletes every file of the call and says so (`by` the caller, the agent, or a later cleanup).
fn delete_and_audit(slot: &Slot, by: &str, audit: &AuditSender) {
    let deleted = delete_files(&slot.files());
    let mut f = Map::new();
    f.insert("by".into(), Value::String(by.into()));
    f.insert("files".into(), json!(deleted));
    audit.send(slot.record("recording_deleted", f));
}

fn late_delete(slot: &Slot, audit: &AuditSender) {
    // A later cleanup speaks only when it found something.
    if slot.files().iter().any(|f| f.exists()) {
        delete_and_audit(slot, "cleanup", audit);
    }
}

fn delete_files(files: &[PathBuf]) -> Vec<String> {
    let mut deleted = Vec::new();
    for f in files {
        match std::fs::remove_file(f) {
            Ok(()) => deleted.push(f.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => log::error!("callconsent: cannot delete {}: {e}", f.display()),
        }
    }
    deleted
}

