//! Retention (R7): kept recordings older than `retention_days` are deleted; rotated audit files
//! older than `audit_retention_days` too. Used by the module's sweeper and, as a dry run, by the
//! DPO tool.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Kept files under `dir` (recursively) older than `days`, with their age in days. A file's age
/// counts from its call: the day of the kept tree it sits in (`YYYY/MM/DD/`, the day the call
/// ended, taken from its first second), or its modification time if that is older. A re-encode,
/// a copy or a touch therefore never gives a recording a new lease (R7: nothing outlives the
/// retention period).
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
                continue;
            }
            let by_mtime = md
                .modified()
                .map(|m| now.duration_since(m).unwrap_or_default())
                .unwrap_or_default();
            let by_day = kept_day(dir, &p).map(|day| age_since(day, now)).unwrap_or_default();
            let age = by_mtime.max(by_day);
            if age > limit {
                out.push((p, age.as_secs() / 86_400));
            }
        }
    }
    out.sort();
    out
}

/// The day of the kept tree a file sits in: `<kept>/YYYY/MM/DD/<file>`.
pub fn kept_day(kept: &Path, file: &Path) -> Option<chrono::NaiveDate> {
    let rel = file.strip_prefix(kept).ok()?;
    let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
    let [y, m, d, _name] = parts.as_slice() else { return None };
    chrono::NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

fn age_since(day: chrono::NaiveDate, now: SystemTime) -> Duration {
    let start = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).map(SystemTime::from);
    start.and_then(|s| now.duration_since(s).ok()).unwrap_or_default()
}

/// Rotated audit files (`<stem>-YYYY-MM-DD.jsonl` beside the log) older than `days`.
pub fn expired_audit_files(audit_log: &Path, days: u64, today: chrono::NaiveDate) -> Vec<PathBuf> {
    let (Some(dir), Some(stem)) =
        (audit_log.parent(), audit_log.file_stem().and_then(|s| s.to_str()))
    else {
        return vec![];
    };
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(date) =
            name.strip_prefix(&format!("{stem}-")).and_then(|r| r.strip_suffix(".jsonl"))
        else {
            continue;
        };
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
        let today = dir.join("kept").join(chrono::Utc::now().format("%Y/%m/%d").to_string());
        std::fs::create_dir_all(&today).unwrap();
        let (old, new) = (today.join("old.wav"), today.join("new.wav"));
        std::fs::write(&old, b"x").unwrap();
        std::fs::write(&new, b"x").unwrap();
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(100 * 86_400)).unwrap();
        let got = expired(&dir.join("kept"), 90, SystemTime::now());
        assert_eq!(got, vec![(old, 100)]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_fresh_file_in_an_old_day_is_as_old_as_its_call() {
        let dir = std::env::temp_dir().join(format!("cc-ret-day-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("kept/2026/01/01")).unwrap();
        // Re-encoded today (fresh mtime), from a call of 2026-01-01.
        let reencoded = dir.join("kept/2026/01/01/cc-1.opus");
        std::fs::write(&reencoded, b"x").unwrap();
        let june = SystemTime::from(
            chrono::NaiveDate::from_ymd_opt(2026, 6, 1)
                .unwrap()
                .and_hms_opt(0, 0, 1)
                .unwrap()
                .and_utc(),
        );
        let got = expired(&dir.join("kept"), 90, june.max(SystemTime::now()));
        assert!(got.iter().any(|(p, age)| *p == reencoded && *age >= 151), "{got:?}");
        assert_eq!(
            kept_day(&dir.join("kept"), &reencoded),
            chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
        );
        assert_eq!(kept_day(&dir.join("kept"), &dir.join("kept/stray.wav")), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
