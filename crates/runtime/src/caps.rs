//! Per-agent caps per period (R6) in an embedded ACID store (redb) under Asterisk's var
//! directory: counts survive restarts, and each reservation is one write transaction, so
//! concurrent calls can never exceed a cap.
use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

const CAPS: TableDefinition<&str, u64> = TableDefinition::new("caps");

pub struct Caps {
    db: Database,
}

impl Caps {
    pub fn open(path: &Path) -> Result<Caps, String> {
        let db = Database::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Caps { db })
    }

    /// Reserves one recording for `agent` in `period` if fewer than `max` were made. Returns the
    /// count after the attempt and whether it was allowed.
    pub fn reserve(&self, agent: &str, period: &str, max: u64) -> Result<(u64, bool), String> {
        let key = format!("{agent}|{period}");
        let txn = self.db.begin_write().map_err(|e| e.to_string())?;
        let result = {
            let mut table = txn.open_table(CAPS).map_err(|e| e.to_string())?;
            let count =
                table.get(key.as_str()).map_err(|e| e.to_string())?.map(|v| v.value()).unwrap_or(0);
            if count < max {
                table.insert(key.as_str(), count + 1).map_err(|e| e.to_string())?;
                (count + 1, true)
            } else {
                (count, false)
            }
        };
        txn.commit().map_err(|e| e.to_string())?;
        Ok(result)
    }

    /// Raises the count to at least `n` (the shared store's count, mirrored for a fallback).
    pub fn raise_to(&self, agent: &str, period: &str, n: u64) -> Result<(), String> {
        let key = format!("{agent}|{period}");
        let txn = self.db.begin_write().map_err(|e| e.to_string())?;
        {
            let mut table = txn.open_table(CAPS).map_err(|e| e.to_string())?;
            let count =
                table.get(key.as_str()).map_err(|e| e.to_string())?.map(|v| v.value()).unwrap_or(0);
            if count < n {
                table.insert(key.as_str(), n).map_err(|e| e.to_string())?;
            }
        }
        txn.commit().map_err(|e| e.to_string())
    }

    pub fn count(&self, agent: &str, period: &str) -> u64 {
        let key = format!("{agent}|{period}");
        self.db
            .begin_read()
            .ok()
            .and_then(|t| t.open_table(CAPS).ok())
            .and_then(|t| t.get(key.as_str()).ok().flatten().map(|v| v.value()))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn caps_are_never_exceeded_under_concurrent_calls() {
        let dir = std::env::temp_dir().join(format!("cc-caps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let caps = Arc::new(Caps::open(&dir.join("caps.redb")).unwrap());
        let threads: Vec<_> = (0..200)
            .map(|_| {
                let c = caps.clone();
                std::thread::spawn(move || c.reserve("PJSIP/anna", "2026-W47", 10).unwrap().1)
            })
            .collect();
        let allowed = threads.into_iter().map(|t| t.join().unwrap()).filter(|a| *a).count();
        assert_eq!(allowed, 10);
        assert_eq!(caps.count("PJSIP/anna", "2026-W47"), 10);
        assert_eq!(caps.count("PJSIP/anna", "2026-W48"), 0, "a new period starts from zero");
        drop(caps);
        // Counts survive a restart.
        let again = Caps::open(&dir.join("caps.redb")).unwrap();
        assert_eq!(again.reserve("PJSIP/anna", "2026-W47", 10).unwrap(), (10, false));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
