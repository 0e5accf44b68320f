//! Retention (R7): kept recordings older than `retention_days` are deleted; rotated audit files
//! older than `audit_retention_days` too. Used by the module's sweeper and, as a dry run, by the
//! DPO tool.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Files under `dir` (recursively) last modified more than `days` ago, with their age in days.
pub fn expired(dir: &Path, days: u64, now: SystemTime) -> Vec<(PathBuf, u64)> {
    let limit = Duration::from_secs(days * 86_400);
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(p);
            } else if let Ok(age) = md.modified().map(|m| now.duration_since(m).unwrap_or_default()) {
                if age > limit {
                    out.push((p, age.as_secs() / 86_400));
                }
            }
        }
    }
    out.sort();
    out
}

/// Rotated audit files (`<stem>-YYYY-MM-DD.jsonl` beside the log) older than `days`.
pub fn expired_audit_files(audit_log: &Path, days: u64, today: chrono::NaiveDate) -> Vec<PathBuf> {
    let (Some(dir), Some(stem)) = (audit_log.parent(), audit_log.file_stem().and_then(|s| s.to_str())) else { return vec![] };
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(date) = name.strip_prefix(&format!("{stem}-")).and_then(|r| r.strip_suffix(".jsonl")) else { continue };
        if let Ok(d) = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d") {
            if (today - d).num_days() > days as i64 {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_past_the_limit_go() {
        let dir = std::env::temp_dir().join(format!("cc-ret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("kept/2026/01/01")).unwrap();
        let old = dir.join("kept/2026/01/01/old.wav");
        let new = dir.join("kept/2026/01/01/new.wav");
        std::fs::write(&old, b"x").unwrap();
        std::fs::write(&new, b"x").unwrap();
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(100 * 86_400)).unwrap();
        let got = expired(&dir.join("kept"), 90, SystemTime::now());
        assert_eq!(got, vec![(old, 100)]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
