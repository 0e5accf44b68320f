//! Issue 14's benchmark (run by `scripts/bench.sh store`): the time a call's cap reservation takes
//! on the store worker before its recorder starts, with the embedded local store (redb) and with
//! the shared PostgreSQL store (a throwaway cluster, TLS on loopback, as in the tests), alternated
//! over rounds in one run: p50 and p99 of each, and the extra time as a difference and a ratio.
#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use callconsent_core::config::{self, StoreUnavailable};
use callconsent_runtime::audit::AuditLog;
use callconsent_runtime::caps::Caps;
use callconsent_runtime::shared::{CapStore, Health};
use callconsent_runtime::store::Pg;
use harness::pg::Postgres;

const ROUNDS: usize = 4;
const PER_ROUND: usize = 1000;
/// Agents the reservations spread over (a call centre's team), each with a cap never reached.
const AGENTS: usize = 50;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let pg = Postgres::start_with("bench", true);
    let dir = std::env::temp_dir().join(format!("cc-bench-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench directory");
    std::fs::write(dir.join("pw"), &pg.password).expect("password file");
    std::fs::write(dir.join("ca.pem"), pg.ca_pem()).expect("CA file");
    let text = format!(
        "[general]\nstore = {}\nstore_password_file = {d}/pw\nstore_ca = {d}/ca.pem\nnode = bench\n",
        pg.url(),
        d = dir.display()
    );
    let cfg = config::parse(
        &config::entries_from_text(&text, "bench.conf"),
        &config::Defaults { spool_dir: dir.join("spool"), audit_log: dir.join("audit.jsonl") },
        &|_| true,
    )
    .expect("the bench's configuration");
    let shared_pg = Pg::from_general(&cfg.general).expect("store settings").expect("a store");
    let mut c = shared_pg.connect().expect("connect to the bench's PostgreSQL");
    callconsent_runtime::store::migrate(&mut c).expect("migrate");
    drop(c);
    let audit = AuditLog::open(&dir.join("audit.jsonl")).expect("audit log");
    let local = CapStore::Local(Caps::open(&dir.join("local.redb")).expect("local caps"));
    let health = std::sync::Arc::new(std::sync::Mutex::new(Health::default()));
    let shared = CapStore::shared(
        shared_pg,
        Caps::open(&dir.join("mirror.redb")).expect("mirror caps"),
        health,
        audit.sender(),
    );
    let mut times: [Vec<Duration>; 2] = [vec![], vec![]];
    for round in 0..ROUNDS {
        for (i, store) in [&local, &shared].iter().enumerate() {
            for n in 0..PER_ROUND {
                let agent = format!("PJSIP/agent{}", n % AGENTS);
                let t = Instant::now();
                let r =
                    store.reserve(&agent, "2026-W49", 1_000_000, StoreUnavailable::NoRecord, 900);
                times[i].push(t.elapsed());
                assert!(matches!(r.result, Ok((_, true))), "round {round}: {:?}", r.result);
                assert!(r.unavailable.is_none(), "the store went away during the bench");
            }
        }
    }
    let [mut l, mut s] = times;
    let (l50, l99, s50, s99) =
        (pct(&mut l, 0.5), pct(&mut l, 0.99), pct(&mut s, 0.5), pct(&mut s, 0.99));
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("== cap reservation before the recorder starts: {} reservations each, {ROUNDS} alternated rounds, {AGENTS} agents ==", ROUNDS * PER_ROUND);
    println!(
        "local (redb, fsync per reservation)   p50 {:8.0} us   p99 {:8.0} us",
        us(l50),
        us(l99)
    );
    println!(
        "shared (PostgreSQL, TLS, fsync on)    p50 {:8.0} us   p99 {:8.0} us",
        us(s50),
        us(s99)
    );
    println!("extra with the shared store           p50 {:+8.0} us   p99 {:+8.0} us   (ratio p50 {:.2}, p99 {:.2})", us(s50) - us(l50), us(s99) - us(l99), us(s50) / us(l50), us(s99) / us(l99));
    drop((local, shared));
    drop(audit);
    let _ = std::fs::remove_dir_all(&dir);
}
