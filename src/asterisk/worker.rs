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
use crate::audit::{record, AuditSender};

pub enum Job {
    StopAndDelete { chan: ChanRef, slot: Arc<Slot>, by: &'static str },
    PlayToCaller { chan: ChanRef, file: String },
    Tone { chan: ChanRef, tones: String },
    SendDigits { chan: ChanRef, digits: String },
    /// Deletes the files of a refused recording again at these delays after hangup.
    DeleteAgain { slot: Arc<Slot> },
}

pub struct Worker {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// After hangup a refused call's files are looked for again at these delays: MixMonitor's own
/// thread closes its file asynchronously at hangup.
pub const DELETE_AGAIN_AFTER: [Duration; 3] = [Duration::ZERO, Duration::from_secs(1), Duration::from_secs(5)];

impl Worker {
    pub fn start(audit: AuditSender) -> std::io::Result<Worker> {
        let (tx, rx) = unbounded();
        let thread = std::thread::Builder::new().name("cc-worker".into()).spawn(move || run(rx, audit))?;
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

fn run(rx: Receiver<Job>, audit: AuditSender) {
    // Deletions due later, by due time.
    let mut due: BTreeMap<(Instant, u64), Arc<Slot>> = BTreeMap::new();
    let mut seq = 0u64;
    loop {
        let next = due.keys().next().map(|(t, _)| *t);
        let job = match next {
            Some(t) => rx.recv_timeout(t.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match job {
            Ok(job) => match job {
                Job::StopAndDelete { chan, slot, by } => {
                    let id = slot.mixmon_id();
                    if chan.mixmonitor_stop(&id) != 0 {
                        log::debug!("callconsent: MixMonitor on {} was already stopped", slot.channel);
                    }
                    let deleted = delete_files(&slot.files());
                    let mut f = Map::new();
                    f.insert("profile".into(), Value::String(slot.profile.clone()));
                    f.insert("by".into(), Value::String(by.into()));
                    f.insert("files".into(), json!(deleted));
                    audit.send(record(&slot.linkedid, &slot.channel, "recording_deleted", f));
                }
                Job::PlayToCaller { chan, file } => {
                    if chan.play_to_self(&file) != 0 {
                        log::info!("callconsent: the caller is not in a bridge; \"{file}\" was not played");
                    }
                }
                Job::Tone { chan, tones } => {
                    let _ = chan.tones_to_peer(&tones);
                }
                Job::SendDigits { chan, digits } => {
                    if chan.send_digits(&digits) != 0 {
                        log::warn!("callconsent: could not pass digits on to the caller");
                    }
                }
                Job::DeleteAgain { slot } => {
                    let now = Instant::now();
                    for d in DELETE_AGAIN_AFTER {
                        seq += 1;
                        due.insert((now + d, seq), slot.clone());
                    }
                }
            },
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                // Unloading: do what is still due now.
                for slot in std::mem::take(&mut due).into_values() {
                    late_delete(&slot, &audit);
                }
                return;
            }
        }
        let now = Instant::now();
        while let Some(entry) = due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let slot = entry.remove();
            late_delete(&slot, &audit);
        }
    }
}

fn late_delete(slot: &Slot, audit: &AuditSender) {
    let deleted = delete_files(&slot.files());
    if !deleted.is_empty() {
        let mut f = Map::new();
        f.insert("profile".into(), Value::String(slot.profile.clone()));
        f.insert("by".into(), Value::String("cleanup".into()));
        f.insert("files".into(), json!(deleted));
        audit.send(record(&slot.linkedid, &slot.channel, "recording_deleted", f));
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

