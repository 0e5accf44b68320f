//! The retention sweeper (R7): at load and then hourly, off the media path, deletes kept
//! recordings older than `retention_days` and rotated audit files older than
//! `audit_retention_days`; each deletion is an audit line.
use std::thread::JoinHandle;
use std::time::SystemTime;

use crossbeam_channel::{bounded, RecvTimeoutError, Sender};
use serde_json::{json, Map};

use callconsent_core::audit::AuditEvent;
use callconsent_core::config::General;
use callconsent_core::timing::RETENTION_SWEEP_EVERY;

use crate::audit::{record, AuditSender};
use crate::retention;

pub struct Sweeper {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Sweeper {
    pub fn start(general: General, audit: AuditSender) -> std::io::Result<Sweeper> {
        let (stop, stopped) = bounded::<()>(1);
        let thread =
            std::thread::Builder::new().name("cc-retention".into()).spawn(move || loop {
                sweep(&general, &audit);
                match stopped.recv_timeout(RETENTION_SWEEP_EVERY) {
                    // Hourly, the audit log's head is written down and published (see audit).
                    Err(RecvTimeoutError::Timeout) => audit.checkpoint("hourly"),
                    _ => return,
                }
            })?;
        Ok(Sweeper { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Sweeper {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sweep(g: &General, audit: &AuditSender) {
    for (file, age) in
        retention::expired(&g.spool_dir.join("kept"), g.retention_days, SystemTime::now())
    {
        if std::fs::remove_file(&file).is_ok() {
            let mut f = Map::new();
            f.insert("file".into(), json!(file.display().to_string()));
            f.insert("age_days".into(), json!(age));
            f.insert("retention_days".into(), json!(g.retention_days));
            audit.send(record("", "", AuditEvent::RecordingExpired, f));
        }
    }
    for file in retention::expired_audit_files(
        &g.audit_log,
        g.audit_retention_days,
        chrono::Utc::now().date_naive(),
    ) {
        // The expiry record keeps the removed file's last hash and length, so that `audit verify`
        // tells a file removed by retention from lines removed by someone.
        let tail = crate::audit::file_tail(&file);
        if std::fs::remove_file(&file).is_ok() {
            let mut f = Map::new();
            f.insert("file".into(), json!(file.display().to_string()));
            f.insert("audit_retention_days".into(), json!(g.audit_retention_days));
            f.insert("last_hash".into(), json!(tail.as_ref().map(|t| t.0.clone())));
            f.insert("lines".into(), json!(tail.map(|t| t.1)));
            audit.send(record("", "", AuditEvent::AuditFileExpired, f));
        }
    }
}
