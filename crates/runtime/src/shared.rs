//! One policy across nodes (issue 14): the caps a call reserves (in the shared store when there
//! is one, with the profile's `store_unavailable` rule when it is away), and the shipper thread
//! that sends this node's audit lines to the store in order, resumes after an outage from the
//! last acknowledged line, and applies callers' erasure requests to this node's files.
//!
//! Everything here runs on the runtime's own threads (the store worker, `cc-shipper`), never on
//! a channel's: a database that is slow or away delays a call's reservation, never its audio.
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender};
use serde_json::{json, Map, Value};

use callconsent_core::audit::AuditEvent;
use callconsent_core::config::StoreUnavailable;

use crate::audit::{self, line_hash, AuditSender};
use crate::caps::Caps;
use crate::store::{self, Client, Pg};

/// After a failure, the store is not tried again for this long (calls decide at once meanwhile).
const RETRY_AFTER: Duration = Duration::from_secs(3);
/// Lines per shipped transaction.
const SHIP_BATCH: usize = 500;
/// How often the shipper looks for erasure requests and says the node is alive.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// The store's state as this node sees it, shared by the store worker and the shipper.
#[derive(Default)]
pub struct Health {
    /// Since when the store has been away (monotonic, wall clock) and the last error.
    down: Option<(Instant, String, String)>,
    next_try: Option<Instant>,
    /// Reservations made on this node while the store was away (`local`), added to the store's
    /// counts when it is back.
    counted: BTreeMap<(String, String), u64>,
}

impl Health {
    pub fn fail(&mut self, error: &str) {
        if self.down.is_none() {
            log::warn!("callconsent: the shared store is unreachable: {error}");
            self.down = Some((Instant::now(), audit::now_rfc3339(), error.to_string()));
        } else if let Some(d) = &mut self.down {
            d.2 = error.to_string();
        }
        self.next_try = Some(Instant::now() + RETRY_AFTER);
    }

    fn may_try(&self) -> bool {
        self.next_try.is_none_or(|t| Instant::now() >= t)
    }

    pub fn is_down(&self) -> bool {
        self.down.is_some()
    }

    /// Since when (UTC) the store has been away, and the last error.
    pub fn outage(&self) -> Option<(String, String)> {
        self.down.as_ref().map(|d| (d.1.clone(), d.2.clone()))
    }
}

/// What a call's cap reservation found.
pub struct Reserved {
    pub result: Result<(u64, bool), String>,
    /// The `store_unavailable` line's facts when the store was away.
    pub unavailable: Option<Map<String, Value>>,
}

/// The caps of this node: the embedded store, or the shared one with the local store as the
/// fallback (and as a mirror of the shared counts, so a fallback starts from what was known).
pub enum CapStore {
    Local(Caps),
    Shared(Box<SharedCaps>),
}

pub struct SharedCaps {
    pg: Pg,
    local: Caps,
    conn: Mutex<Option<Client>>,
    health: Arc<Mutex<Health>>,
    audit: AuditSender,
}

impl CapStore {
    pub fn shared(pg: Pg, local: Caps, health: Arc<Mutex<Health>>, audit: AuditSender) -> CapStore {
        CapStore::Shared(Box::new(SharedCaps { pg, local, conn: Mutex::new(None), health, audit }))
    }

    /// Reserves one recording of `max` for `agent` in `period`.
    pub fn reserve(
        &self,
        agent: &str,
        period: &str,
        max: u64,
        fallback: StoreUnavailable,
        local_seconds: u64,
    ) -> Reserved {
        match self {
            CapStore::Local(c) => {
                Reserved { result: c.reserve(agent, period, max), unavailable: None }
            }
            CapStore::Shared(s) => s.reserve(agent, period, max, fallback, local_seconds),
        }
    }
}

impl SharedCaps {
    fn reserve(
        &self,
        agent: &str,
        period: &str,
        max: u64,
        fallback: StoreUnavailable,
        local_seconds: u64,
    ) -> Reserved {
        let may = self.health.lock().map(|h| h.may_try()).unwrap_or(true);
        let error = if may {
            match self.try_reserve(agent, period, max) {
                Ok(r) => return Reserved { result: Ok(r), unavailable: None },
                Err(e) => e,
            }
        } else {
            self.health
                .lock()
                .ok()
                .and_then(|h| h.down.as_ref().map(|d| d.2.clone()))
                .unwrap_or_else(|| "unreachable".into())
        };
        let Ok(mut h) = self.health.lock() else {
            return Reserved { result: Err(error), unavailable: None };
        };
        h.fail(&error);
        let (since_instant, since, _) =
            h.down.clone().unwrap_or((Instant::now(), audit::now_rfc3339(), String::new()));
        let mut f = Map::new();
        f.insert("agent".into(), json!(agent));
        f.insert("period".into(), json!(period));
        f.insert("since".into(), json!(since));
        f.insert("error".into(), json!(error));
        let within = since_instant.elapsed() < Duration::from_secs(local_seconds);
        if fallback == StoreUnavailable::Local && within {
            let r = self.local.reserve(agent, period, max);
            if let Ok((_, true)) = r {
                *h.counted.entry((agent.to_string(), period.to_string())).or_default() += 1;
            }
            f.insert("fallback".into(), json!("local"));
            f.insert("local_for_s".into(), json!(local_seconds));
            return Reserved { result: r, unavailable: Some(f) };
        }
        f.insert("fallback".into(), json!("no_record"));
        if fallback == StoreUnavailable::Local {
            f.insert(
                "reason".into(),
                json!(format!("the outage is longer than store_local_seconds ({local_seconds} s)")),
            );
        }
        Reserved { result: Err(format!("shared store unreachable: {error}")), unavailable: Some(f) }
    }

    fn try_reserve(&self, agent: &str, period: &str, max: u64) -> Result<(u64, bool), String> {
        let mut guard =
            self.conn.lock().map_err(|_| "the store connection's lock is poisoned".to_string())?;
        // A connection kept from before may have been cut by the server (a restart): one more
        // try on a new one before the store counts as away.
        let mut reused = guard.as_ref().is_some_and(|c| !c.is_closed());
        loop {
            if !reused {
                *guard = Some(self.pg.connect()?);
            }
            let Some(c) = guard.as_mut() else { return Err("no connection".into()) };
            match store::reserve_cap(c, agent, period, max) {
                Ok((used, ok)) => {
                    restore_if_down(&self.health, c, &self.audit);
                    // The local store mirrors the shared count: a fallback starts from it.
                    let _ = self.local.raise_to(agent, period, used);
                    return Ok((used, ok));
                }
                Err(e) => {
                    *guard = None;
                    if !reused {
                        return Err(e);
                    }
                    reused = false;
                }
            }
        }
    }
}

/// The store answered again: adds what was counted locally, and says so in the audit log.
fn restore_if_down(health: &Mutex<Health>, c: &mut Client, audit: &AuditSender) {
    let Ok(mut h) = health.lock() else { return };
    h.next_try = None;
    let Some((since, since_wall, error)) = h.down.take() else { return };
    let counted: Vec<(String, String, u64)> =
        std::mem::take(&mut h.counted).into_iter().map(|((a, p), n)| (a, p, n)).collect();
    let added = store::add_caps(c, &counted);
    let mut f = Map::new();
    f.insert("since".into(), json!(since_wall));
    f.insert("outage_ms".into(), json!(since.elapsed().as_millis() as u64));
    f.insert("error".into(), json!(error));
    f.insert("local_reservations".into(), json!(counted.iter().map(|(_, _, n)| n).sum::<u64>()));
    if let Err(e) = added {
        f.insert("add_error".into(), json!(e));
    }
    log::info!("callconsent: the shared store is back after {} ms", since.elapsed().as_millis());
    audit.send(audit::record("", "", AuditEvent::StoreRestored, f));
}

/// Where the shipper is in this node's audit log.
struct Cursor {
    file: PathBuf,
    ino: u64,
    offset: u64,
    /// The store's sequence number of the last line shipped.
    seq: i64,
}

/// The thread that ships this node's audit lines and applies erasure requests.
pub struct Shipper {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What the shipper needs to apply erasure requests on this node.
pub struct ErasureWork {
    pub cfg: callconsent_core::config::Config,
}

impl Shipper {
    pub fn start(
        pg: Pg,
        pbx: String,
        audit_log: PathBuf,
        audit: AuditSender,
        health: Arc<Mutex<Health>>,
        wake: Receiver<()>,
        erasure: ErasureWork,
    ) -> std::io::Result<Shipper> {
        let (stop, stop_rx) = bounded(1);
        let thread = std::thread::Builder::new().name("cc-shipper".into()).spawn(move || {
            let mut s = Ship { pg, pbx, audit_log, audit, health, conn: None, cursor: None, next_connect: Instant::now(), next_poll: Instant::now(), erasure };
            loop {
                crossbeam_channel::select! {
                    recv(stop_rx) -> _ => { s.round(); return; }
                    recv(wake) -> m => if m.is_err() { std::thread::sleep(Duration::from_millis(200)) },
                    default(Duration::from_millis(500)) => {}
                }
                s.round();
            }
        })?;
        Ok(Shipper { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Ship {
    pg: Pg,
    pbx: String,
    audit_log: PathBuf,
    audit: AuditSender,
    health: Arc<Mutex<Health>>,
    conn: Option<Client>,
    cursor: Option<Cursor>,
    next_connect: Instant,
    next_poll: Instant,
    erasure: ErasureWork,
}

impl Ship {
    fn round(&mut self) {
        if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
            self.conn = None;
            self.cursor = None;
            if Instant::now() < self.next_connect {
                return;
            }
            match self.pg.connect() {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    self.next_connect = Instant::now() + Duration::from_secs(1);
                    if let Ok(mut h) = self.health.lock() {
                        h.fail(&e);
                    }
                    return;
                }
            }
        }
        if let Err(e) = self.ship() {
            log::warn!("callconsent: shipping the audit log: {e}");
            self.conn = None;
            self.cursor = None;
            self.next_connect = Instant::now() + Duration::from_secs(1);
            if let Ok(mut h) = self.health.lock() {
                h.fail(&e);
            }
            return;
        }
        if let Some(c) = self.conn.as_mut() {
            restore_if_down(&self.health, c, &self.audit);
        }
        if Instant::now() >= self.next_poll {
            self.next_poll = Instant::now() + POLL_EVERY;
            if let Err(e) = self.poll() {
                log::warn!("callconsent: erasure requests: {e}");
            }
        }
    }

    /// Ships every complete line after the cursor.
    fn ship(&mut self) -> Result<(), String> {
        let Some(c) = self.conn.as_mut() else { return Ok(()) };
        if self.cursor.is_none() {
            let last = store::last_shipped(c, &self.pg.node)?;
            self.cursor = Some(position(&self.audit_log, last)?);
        }
        let Some(cur) = self.cursor.as_mut() else { return Ok(()) };
        loop {
            let (lines, next) = read_after(&self.audit_log, cur, SHIP_BATCH)?;
            if !lines.is_empty() {
                let batch: Vec<(String, String)> =
                    lines.iter().map(|(l, _)| (l.clone(), line_hash(l))).collect();
                store::ship(c, &self.pg.node, &self.pbx, cur.seq + 1, &batch)?;
                // Acknowledged: the cursor moves past what the store has.
                cur.seq += batch.len() as i64;
                if let Some((_, end)) = lines.last() {
                    cur.offset = *end;
                }
                if lines.len() == SHIP_BATCH {
                    continue;
                }
            }
            match next {
                // The cursor's file is finished: on to the file that follows it.
                Some((file, ino, offset)) => (cur.file, cur.ino, cur.offset) = (file, ino, offset),
                None => return Ok(()),
            }
        }
    }

    /// Says the node is alive and applies the erasure requests it has not applied yet.
    fn poll(&mut self) -> Result<(), String> {
        let Some(c) = self.conn.as_mut() else { return Ok(()) };
        store::heartbeat(c, &self.pg.node, &self.pbx)?;
        for (id, number_hash, request, by) in store::pending_erasures(c, &self.pg.node)? {
            let files = apply_erasure(&self.erasure.cfg, &self.audit, &number_hash, &request, &by)?;
            let mut f = Map::new();
            f.insert("erasure".into(), json!(id));
            f.insert("request".into(), json!(request));
            f.insert("by".into(), json!(by));
            f.insert("number_hash".into(), json!(number_hash));
            f.insert("files".into(), json!(files));
            let ack = self.audit.send_acked(audit::record("", "", AuditEvent::ErasureApplied, f));
            // Done in the store only once this node's own log says so.
            if ack.recv_timeout(Duration::from_secs(10)).is_err() {
                return Err("the audit log did not write the erasure's line".into());
            }
            store::erasure_done(c, id, &self.pg.node, files)?;
        }
        Ok(())
    }
}

/// Deletes this node's recordings of a caller's calls; each gets its `recording_erased` line in
/// this node's chain. Returns the number of files deleted.
fn apply_erasure(
    cfg: &callconsent_core::config::Config,
    audit_tx: &AuditSender,
    number_hash: &str,
    request: &str,
    by: &str,
) -> Result<u64, String> {
    let store = crate::access::Store::new(cfg, None);
    let lines = store.audit_lines()?;
    let calls = crate::access::subject_calls(&lines, number_hash);
    let mut files = 0;
    for r in crate::access::recordings(&lines)
        .iter()
        .filter(|r| calls.contains(&r.call) && r.removed_by.is_none())
    {
        let deleted = crate::access::delete_files(r)?;
        files += deleted.len() as u64;
        let ack = audit_tx.send_acked(crate::access::erased_record(r, by, request, &deleted));
        if ack.recv_timeout(Duration::from_secs(10)).is_err() {
            return Err("the audit log did not write a recording_erased line".into());
        }
    }
    Ok(files)
}

/// The cursor just after the line the store acknowledged last (by its hash), or at the start of
/// the oldest file when the store has nothing of this node yet.
fn position(audit_log: &Path, last: Option<(i64, String)>) -> Result<Cursor, String> {
    let files = crate::access::log_files(audit_log);
    let Some((seq, hash)) = last else {
        let first = files.first().cloned().unwrap_or_else(|| audit_log.to_path_buf());
        let ino = std::fs::metadata(&first).map(|m| m.ino()).unwrap_or(0);
        return Ok(Cursor { file: first, ino, offset: 0, seq: 0 });
    };
    for f in files.iter().rev() {
        let Ok(text) = std::fs::read(f) else { continue };
        let mut offset = 0u64;
        for raw in text.split_inclusive(|b| *b == b'\n') {
            offset += raw.len() as u64;
            if !raw.ends_with(b"\n") {
                break;
            }
            if line_hash(&String::from_utf8_lossy(&raw[..raw.len() - 1])) == hash {
                let ino = std::fs::metadata(f)
                    .map(|m| m.ino())
                    .map_err(|e| format!("{}: {e}", f.display()))?;
                return Ok(Cursor { file: f.clone(), ino, offset, seq });
            }
        }
    }
    Err(format!("the store's last line of this node (seq {seq}) is not in the local audit log {}: not shipping (was the log replaced?)", audit_log.display()))
}

/// Complete lines after the cursor (each with the offset after it), at most `max`; and, when the
/// cursor's file is finished and the log was rotated since, where to go on (the new file).
/// Lines read after a cursor, each with the offset after it; and the rotated-to file, if any, as
/// (path, inode, offset).
type ReadAfter = (Vec<(String, u64)>, Option<(PathBuf, u64, u64)>);

fn read_after(audit_log: &Path, cur: &Cursor, max: usize) -> Result<ReadAfter, String> {
    let now = std::fs::metadata(audit_log).ok();
    if cur.ino == 0 {
        // There was no log yet when the cursor was placed.
        return Ok((vec![], now.map(|m| (audit_log.to_path_buf(), m.ino(), 0))));
    }
    let rotated = now.as_ref().is_some_and(|m| m.ino() != cur.ino);
    // The cursor's file under whatever name it has now (rotated to <stem>-DAY.jsonl).
    let file = if rotated {
        crate::access::log_files(audit_log)
            .into_iter()
            .find(|p| std::fs::metadata(p).is_ok_and(|m| m.ino() == cur.ino))
            .unwrap_or_else(|| cur.file.clone())
    } else {
        cur.file.clone()
    };
    let mut out = vec![];
    if let Ok(mut f) = std::fs::File::open(&file) {
        if f.metadata().is_ok_and(|m| m.ino() == cur.ino) {
            f.seek(SeekFrom::Start(cur.offset)).map_err(|e| format!("{}: {e}", file.display()))?;
            let mut buf = Vec::new();
            f.take(8 << 20)
                .read_to_end(&mut buf)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let mut offset = cur.offset;
            for raw in buf.split_inclusive(|b| *b == b'\n') {
                if !raw.ends_with(b"\n") || out.len() >= max {
                    break;
                }
                offset += raw.len() as u64;
                out.push((String::from_utf8_lossy(&raw[..raw.len() - 1]).into_owned(), offset));
            }
        }
    }
    let next = match now {
        Some(m) if rotated && out.len() < max => Some((audit_log.to_path_buf(), m.ino(), 0)),
        _ => None,
    };
    Ok((out, next))
}
