//! The recordings spool: `staging/` while a call runs, `kept/YYYY/MM/DD/` once it ended with
//! consent intact (files 0640, directories 0750). File names come from the caller channel's
//! uniqueid only, so caller-controlled text never reaches a path.
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Map};

use callconsent_core::audit::AuditEvent;

use crate::audit::{record, AuditSender};
use crate::host::RecorderPlan;

/// `cc-<uniqueid>` with anything but `[A-Za-z0-9._-]` replaced.
pub fn safe_file_stem(uniqueid: &str) -> String {
    let s: String = uniqueid
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    format!("cc-{}", s.trim_start_matches('.'))
}

pub fn staging(spool: &Path) -> PathBuf {
    spool.join("staging")
}

pub fn kept(spool: &Path) -> PathBuf {
    spool.join("kept")
}

fn mkdir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o750).create(dir)
}

/// Creates the spool and its two trees.
pub fn create(spool: &Path) -> Result<(), String> {
    for d in [spool.to_path_buf(), staging(spool), kept(spool)] {
        mkdir(&d).map_err(|e| format!("spool_dir {}: {e}", spool.display()))?;
    }
    Ok(())
}

/// Where a call's recorder writes.
pub fn plan(spool: &Path, uniqueid: &str, legs: bool) -> RecorderPlan {
    let (dir, stem) = (staging(spool), safe_file_stem(uniqueid));
    RecorderPlan {
        mixed: dir.join(format!("{stem}.wav")),
        legs: legs.then(|| {
            (dir.join(format!("{stem}-caller.wav")), dir.join(format!("{stem}-agent.wav")))
        }),
    }
}

/// After a crash or kill -9, recordings whose call never concluded are discarded (privacy by
/// default).
pub fn discard_staging(spool: &Path, audit: &AuditSender) {
    for e in std::fs::read_dir(staging(spool)).into_iter().flatten().flatten() {
        let p = e.path();
        if std::fs::remove_file(&p).is_ok() {
            let mut f = Map::new();
            f.insert("file".into(), p.display().to_string().into());
            f.insert("reason".into(), "the call never concluded while the module ran (crash or restart): discarded, privacy by default".into());
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            audit.send(record(&stem, "", AuditEvent::RecordingDiscarded, f));
        }
    }
}

/// Where the spool and the audit log were, remembered in the state directory at every start, so
/// that the next start can discard what a crash left in staging before it reads the
/// configuration, even when the configuration is then refused.
const LOCATIONS: &str = "locations.json";

pub fn remember(state_dir: &Path, spool: &Path, audit_log: &Path) {
    let v = json!({ "spool_dir": spool.display().to_string(), "audit_log": audit_log.display().to_string() });
    let (path, tmp) = (state_dir.join(LOCATIONS), state_dir.join(format!("{LOCATIONS}.tmp")));
    let written = std::fs::write(&tmp, v.to_string())
        .and_then(|_| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o640)))
        .and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        log::error!("callconsent: cannot write {}: {e}", path.display());
    }
}

/// The spool and audit log the last start used, if it recorded them.
pub fn remembered(state_dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let text = std::fs::read_to_string(state_dir.join(LOCATIONS)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((PathBuf::from(v["spool_dir"].as_str()?), PathBuf::from(v["audit_log"].as_str()?)))
}

/// At the very start of a load, before the configuration: the remembered staging tree is emptied
/// (each file audited in the remembered log). Privacy by default, whatever happens next.
pub fn discard_remembered(state_dir: &Path, pbx: &str) {
    let Some((spool, audit_log)) = remembered(state_dir) else { return };
    let has_files =
        std::fs::read_dir(staging(&spool)).map(|mut d| d.next().is_some()).unwrap_or(false);
    if !has_files {
        return;
    }
    // The lines carry the keyed MAC like every other: the secret is read if it is there and
    // whole (it is never created or repaired here; the load that follows says what is wrong).
    let key = std::fs::read(state_dir.join("secret"))
        .ok()
        .filter(|s| s.len() >= crate::secret::LEN)
        .map(|s| (crate::audit::audit_key(&s), callconsent_core::policy::key_id(&s)));
    if key.is_none() {
        log::warn!("callconsent: no readable installation secret in {}: the discarded files' audit lines carry no MAC", state_dir.display());
    }
    match crate::audit::AuditLog::open_with(
        &audit_log,
        crate::audit::Options { key, publish: None, pbx: Some(pbx.to_string()), wake: None },
    ) {
        Ok(log) => discard_staging(&spool, &log.sender()),
        Err(e) => {
            log::error!("callconsent: audit log {}: {e}; discarding the staging files without an audit line", audit_log.display());
            delete(
                &std::fs::read_dir(staging(&spool))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path())
                    .collect::<Vec<_>>(),
            );
        }
    }
}

/// Deletes these files; returns the ones that existed and are gone.
pub fn delete(files: &[PathBuf]) -> Vec<String> {
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

/// Whether the recorder may still be writing the file: this process has it open, or (where
/// /proc cannot tell, as in a chroot) its WAV header is not final yet. Asterisk's WAV writer
/// fills in the RIFF and data sizes only when it closes the file.
pub fn still_written(file: &Path) -> bool {
    let open = std::fs::read_dir("/proc/self/fd")
        .map(|fds| fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == file)))
        .unwrap_or(false);
    open || (file.extension().is_some_and(|e| e == "wav")
        && file.exists()
        && !wav_header_final(file))
}

/// A file that is still only a WAV header (a call without audio), or absent.
pub fn header_only(file: &Path) -> bool {
    std::fs::metadata(file).map_or(true, |m| m.len() <= 44)
}

fn wav_header_final(file: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 44];
    let (Ok(mut f), Ok(len)) =
        (std::fs::File::open(file), std::fs::metadata(file).map(|m| m.len()))
    else {
        return false;
    };
    if len <= 44 || f.read_exact(&mut head).is_err() {
        return false;
    }
    let riff = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
    let data = u64::from(u32::from_le_bytes([head[40], head[41], head[42], head[43]]));
    riff == len - 8 && data == len - 44
}

/// Moves a call's files from staging into today's kept directory; returns where they went and
/// the mixed recording's length in ms (8 kHz, 16-bit WAV).
pub fn keep(files: &[PathBuf]) -> Result<(Vec<String>, u64), String> {
    let Some(spool) = files.first().and_then(|f| f.parent()).and_then(|d| d.parent()) else {
        return Ok((vec![], 0));
    };
    let dir = kept(spool).join(chrono::Utc::now().format("%Y/%m/%d").to_string());
    mkdir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
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
    let duration_ms = kept
        .first()
        .and_then(|k| std::fs::metadata(k).ok())
        .map(|m| m.len().saturating_sub(44) / 16)
        .unwrap_or(0);
    Ok((kept, duration_ms))
}

/// The facts of a `recording_kept` line.
pub fn kept_facts(
    kept: &[String],
    duration_ms: u64,
    pauses: u32,
    spans: &str,
    agent: Option<String>,
) -> Map<String, serde_json::Value> {
    let mut f = Map::new();
    f.insert("file".into(), json!(kept.first()));
    f.insert("files".into(), json!(kept));
    f.insert("duration_ms".into(), json!(duration_ms));
    f.insert("pauses".into(), json!(pauses));
    f.insert("pause_spans_ms".into(), json!(spans));
    f.insert("agent".into(), json!(agent));
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_text_never_becomes_a_path() {
        assert_eq!(safe_file_stem("1763800000.12"), "cc-1763800000.12");
        assert_eq!(safe_file_stem("../../etc/passwd"), "cc-_.._etc_passwd");
        let p = plan(Path::new("/s"), "a/b", true);
        assert_eq!(p.mixed, PathBuf::from("/s/staging/cc-a_b.wav"));
        assert_eq!(p.files().len(), 3);
        assert!(p.files().iter().all(|f| f.starts_with("/s/staging")));
    }

    #[test]
    fn kept_files_move_to_the_dated_tree_private() {
        let spool = std::env::temp_dir().join(format!("cc-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&spool);
        create(&spool).unwrap();
        let f = staging(&spool).join("cc-1.wav");
        std::fs::write(&f, vec![0u8; 44 + 1600]).unwrap();
        let (kept, ms) = keep(std::slice::from_ref(&f)).unwrap();
        assert_eq!(ms, 100);
        assert!(!f.exists());
        let k = PathBuf::from(&kept[0]);
        assert!(k.starts_with(super::kept(&spool)));
        assert_eq!(std::fs::metadata(&k).unwrap().permissions().mode() & 0o777, 0o640);
        assert_eq!(delete(&[k.clone(), k]), vec![kept[0].clone()]);
        let _ = std::fs::remove_dir_all(&spool);
    }

    #[test]
    fn a_crash_s_leftovers_are_discarded_with_keyed_lines_before_the_configuration() {
        let root = std::env::temp_dir().join(format!("cc-discard-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let (state, spool, log) =
            (root.join("state"), root.join("spool"), root.join("audit.jsonl"));
        std::fs::create_dir_all(&state).unwrap();
        create(&spool).unwrap();
        let secret = crate::secret::load_or_create(&state.join("secret")).unwrap();
        remember(&state, &spool, &log);
        let left = staging(&spool).join("cc-1.wav");
        std::fs::write(&left, vec![0u8; 400]).unwrap();
        discard_remembered(&state, "test");
        assert!(!left.exists());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(
            text.contains("recording_discarded") && text.contains("\"pbx\":\"test\""),
            "{text}"
        );
        let key = crate::audit::audit_key(&secret);
        let files = [log.to_str().unwrap()];
        crate::audit::verify_files_with(
            &files,
            &crate::audit::Check { key: Some(&key), anchors: &[] },
        )
        .unwrap_or_else(|e| {
            panic!("the discard's lines do not verify with the key: {e:?}\n{text}")
        });
        let _ = std::fs::remove_dir_all(&root);
    }
}
