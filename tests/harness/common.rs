//! What both test harnesses (Asterisk's `harness`, FreeSWITCH's `fs_harness`) share: the
//! project's directory, free ports, waiting for a fact, and the Goertzel tone measure.
#![allow(dead_code)]

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The project's sandbox (`CALLCONSENT_SANDBOX`, default `.sandbox`): the sid tree, FreeSWITCH.
pub fn sandbox() -> PathBuf {
    std::env::var_os("CALLCONSENT_SANDBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| project_dir().join(".sandbox"))
}

pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free TCP port")
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// Polls `f` every 100 ms until it gives a value; after `timeout`, panics with `what` and the
/// last observation `f` reported. The way tests wait for a fact instead of sleeping.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; last seen: {last}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `f` every 100 ms until it holds; after `timeout`, panics with `what`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    wait_for(what, timeout, || if f() { Ok(()) } else { Err("not yet".to_string()) })
}

/// Milliseconds of a tone in 8 kHz samples: 20 ms Goertzel windows with a 5 ms hop, counting the
/// hops where `freq` holds most of the window's energy.
pub fn tone_ms(samples: &[i16], freq: f32) -> u32 {
    tone_share_ms(samples, freq, 0.6) as u32
}

/// As `tone_ms` (20 ms windows, 5 ms hop), counting the hops where `freq` holds at least `share`
/// of the window's energy (a lower share finds a tone under other audio of the mix).
pub fn tone_share_ms(samples: &[i16], freq: f32, share: f32) -> u64 {
    let (n, hop) = (160usize, 40usize);
    // The generalized Goertzel: the exact frequency, not the nearest bin.
    let coeff = 2.0 * (std::f32::consts::TAU * freq / 8000.0).cos();
    let mut hits = 0;
    let mut i = 0;
    while i + n <= samples.len() {
        let w = &samples[i..i + n];
        let energy: f32 = w.iter().map(|x| (*x as f32) * (*x as f32)).sum();
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for x in w {
            let s0 = *x as f32 + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        if energy > n as f32 * 200.0 * 200.0 && 2.0 * power / (n as f32 * energy) > share {
            hits += 1;
        }
        i += hop;
    }
    hits * 5
}

/// The audit log's lines as the DPO reads them, for both harnesses: the files rotated at
/// midnight (`audit-YYYY-MM-DD.jsonl`, oldest first) then the live `audit.jsonl`, so a test
/// that runs across midnight still finds its call's lines. A torn last line (the writer
/// mid-write) is left out until it is complete; any other line that is not JSON fails the test.
pub fn audit_lines(live: &std::path::Path) -> Vec<serde_json::Value> {
    let stem = live.file_stem().and_then(|s| s.to_str()).unwrap_or("audit").to_string();
    let dir = live.parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.strip_prefix(&format!("{stem}-"))
                    .and_then(|r| r.strip_suffix(".jsonl"))
                    .is_some_and(|d| d.len() == 10 && d.as_bytes()[4] == b'-')
            })
        })
        .collect();
    rotated.sort();
    let mut out = vec![];
    for f in rotated.iter().chain(std::iter::once(&live.to_path_buf())) {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |i| &text[..i]);
        for l in complete.lines().filter(|l| !l.trim().is_empty()) {
            out.push(serde_json::from_str(l).unwrap_or_else(|e| {
                panic!("{}: an audit line is not JSON ({e}): {l}", f.display())
            }));
        }
        // A last line without its newline yet: taken when it parses, never a failure.
        if let Some(rest) = text.get(complete.len()..).map(str::trim).filter(|r| !r.is_empty()) {
            if let Ok(v) = serde_json::from_str(rest) {
                out.push(v);
            }
        }
    }
    out
}
