//! The encoder pool (issue 5): kept WAV recordings become Ogg Opus archives on worker threads of
//! their own (never the media path), with the consent facts as tags. A `.wav.tags.json` sidecar
//! written before a job is queued lets the next module load resume interrupted work.
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{unbounded, Receiver, Sender};
use serde_json::{json, Map, Value};

use crate::archive;
use crate::audit::{record, AuditSender};
use callconsent_core::audit::AuditEvent;

pub struct Job {
    pub wav: PathBuf,
    pub call: String,
    pub channel: String,
    pub tags: Vec<(String, String)>,
    /// The hash of the `recording_kept` line, once the audit writer has it on disk.
    pub audit_hash: Option<Receiver<String>>,
    /// R11: the age recipients the archive is encrypted to (none: plain Ogg Opus).
    pub recipients: Vec<String>,
}

pub struct Pool {
    tx: Option<Sender<Job>>,
    /// Dropped to stop the threads: the dispatcher still holds senders of `tx` when the pool is
    /// dropped, so a closed queue alone would never come. A job not started stays on disk with
    /// its sidecar and is resumed at the next load.
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

#[derive(Clone)]
pub struct PoolSender(Sender<Job>);

impl PoolSender {
    pub fn send(&self, job: Job) {
        let _ = self.0.send(job);
    }
}

pub fn sidecar(wav: &Path) -> PathBuf {
    let mut p = wav.as_os_str().to_owned();
    p.push(".tags.json");
    PathBuf::from(p)
}

/// The archive of a kept WAV: `<name>.opus`, or `<name>.opus.age` when it is encrypted.
pub fn opus_path(wav: &Path, encrypted: bool) -> PathBuf {
    if encrypted {
        wav.with_extension("opus.age")
    } else {
        wav.with_extension("opus")
    }
}

/// Writes the sidecar (atomically) that lets an interrupted job resume.
pub fn write_sidecar(job: &Job, hash: Option<&str>) {
    let v = json!({ "call": job.call, "channel": job.channel, "tags": job.tags, "audit_hash": hash, "recipients": job.recipients });
    let path = sidecar(&job.wav);
    let tmp = path.with_extension("json.tmp");
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let written = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o640)
        .open(&tmp)
        .and_then(|mut f| f.write_all(v.to_string().as_bytes()));
    if written.and_then(|_| std::fs::rename(&tmp, &path)).is_err() {
        log::error!("callconsent: cannot write {}", path.display());
    }
}

impl Pool {
    pub fn start(threads: usize, bitrate: i32, audit: AuditSender) -> std::io::Result<Pool> {
        let (tx, rx) = unbounded::<Job>();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let mut handles = vec![];
        for i in 0..threads.max(1) {
            let (rx, stop_rx, audit) = (rx.clone(), stop_rx.clone(), audit.clone());
            handles.push(std::thread::Builder::new().name(format!("cc-encoder-{i}")).spawn(
                move || loop {
                    crossbeam_channel::select_biased! {
                        recv(stop_rx) -> _ => break,
                        recv(rx) -> job => match job {
                            Ok(job) => run(job, bitrate, &audit),
                            Err(_) => break,
                        },
                    }
                },
            )?);
        }
        Ok(Pool { tx: Some(tx), stop: Some(stop_tx), threads: handles })
    }

    pub fn sender(&self) -> PoolSender {
        PoolSender(self.tx.clone().expect("sender exists until drop"))
    }

    /// Queues the work an earlier run left (sidecars under `kept`).
    pub fn resume(&self, kept: &Path, audit_log: &Path) {
        let mut stack = vec![kept.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                    continue;
                }
                let Some(wav) =
                    p.to_str().and_then(|s| s.strip_suffix(".tags.json")).map(PathBuf::from)
                else {
                    continue;
                };
                let Ok(v) = std::fs::read_to_string(&p)
                    .map_err(|_| ())
                    .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|_| ()))
                else {
                    continue;
                };
                if !wav.exists() {
                    let _ = std::fs::remove_file(&p);
                    continue;
                }
                let tags: Vec<(String, String)> =
                    serde_json::from_value(v["tags"].clone()).unwrap_or_default();
                let hash = v["audit_hash"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| kept_line_hash(audit_log, &wav));
                let (htx, hrx) = crossbeam_channel::bounded(1);
                if let Some(h) = hash {
                    let _ = htx.send(h);
                }
                log::info!("callconsent: resuming the archive of {}", wav.display());
                if let Some(tx) = &self.tx {
                    let _ = tx.send(Job {
                        wav,
                        call: v["call"].as_str().unwrap_or("").into(),
                        channel: v["channel"].as_str().unwrap_or("").into(),
                        tags,
                        audit_hash: Some(hrx),
                        recipients: serde_json::from_value(v["recipients"].clone())
                            .unwrap_or_default(),
                    });
                }
            }
        }
    }
}

/// The hash of the `recording_kept` line that names this file, looked up in the audit log.
fn kept_line_hash(audit_log: &Path, wav: &Path) -> Option<String> {
    let text = std::fs::read_to_string(audit_log).ok()?;
    let name = wav.display().to_string();
    text.lines()
        .find(|l| {
            l.contains(&format!("\"{}\"", AuditEvent::RecordingKept))
                && serde_json::from_str::<Value>(l).ok().is_some_and(|v| v["file"] == name.as_str())
        })
        .map(crate::audit::line_hash)
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.tx.take();
        self.stop.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn run(mut job: Job, bitrate: i32, audit: &AuditSender) {
    let hash = job.audit_hash.take().and_then(|rx| rx.recv_timeout(Duration::from_secs(30)).ok());
    if let Some(h) = &hash {
        job.tags.push(("CALLCONSENT_AUDIT".into(), h.clone()));
        write_sidecar(&job, Some(h));
    }
    let out = opus_path(&job.wav, !job.recipients.is_empty());
    let wav_bytes = std::fs::metadata(&job.wav).map(|m| m.len()).unwrap_or(0);
    let mut f = Map::new();
    match archive::encode(&job.wav, &out, &job.tags, bitrate, &job.recipients) {
        Ok(e) => {
            let _ =
                std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o640));
            let _ = std::fs::remove_file(&job.wav);
            let _ = std::fs::remove_file(sidecar(&job.wav));
            f.insert("file".into(), json!(out.display().to_string()));
            f.insert("from".into(), json!(job.wav.display().to_string()));
            f.insert(
                "duration_ms".into(),
                json!(e.samples as u64 * 1000 / u64::from(e.rate.max(1))),
            );
            f.insert("wav_bytes".into(), json!(wav_bytes));
            f.insert("opus_bytes".into(), json!(e.opus_bytes));
            // Checkable without the identity: the bytes on disk are the ones written.
            f.insert("sha256".into(), json!(e.sha256));
            if !job.recipients.is_empty() {
                f.insert(
                    "encrypted_to".into(),
                    json!(job
                        .recipients
                        .iter()
                        .map(|r| callconsent_core::policy::recipient_fingerprint(r))
                        .collect::<Vec<_>>()),
                );
            }
            audit.send(record(&job.call, &job.channel, AuditEvent::RecordingArchived, f));
        }
        Err(e) => {
            // The WAV stays, and so does the sidecar: the next load tries again.
            f.insert("file".into(), json!(job.wav.display().to_string()));
            f.insert("reason".into(), json!(e));
            audit.send(record(&job.call, &job.channel, AuditEvent::ArchiveFailed, f));
        }
    }
}
