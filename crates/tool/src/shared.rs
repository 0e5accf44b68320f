//! The tool across nodes (issue 14): what the shared store holds of every node's audit trail
//! (`audit verify --store`, `agent`, `subject find`), and callers' erasure requests that every
//! node applies to its own files (`subject erase`).
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde_json::Value;

use callconsent_core::config::{Config, General};
use callconsent_runtime::audit::line_hash;
use callconsent_runtime::store::{self, Client, Pg};

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("callconsent: {msg}");
    ExitCode::from(1)
}

/// Connects to the store of `g` (its URL, password file and CA).
pub fn connect(g: &General) -> Result<(Client, Pg), String> {
    let pg = Pg::from_general(g)?.ok_or("no [general] store in the configuration")?;
    let c = pg.connect()?;
    Ok((c, pg))
}

/// The store given on the command line, with the password file and CA of the configuration when
/// it names the same store, or of the options.
pub fn general_for(
    url: &str,
    cfg: Option<&Config>,
    password_file: Option<&str>,
    ca: Option<&str>,
) -> General {
    let mut g = cfg
        .map(|c| c.general.clone())
        .filter(|g| g.store.as_deref() == Some(url))
        .unwrap_or_else(|| {
            General::defaults(&callconsent_core::config::Defaults {
                spool_dir: "/".into(),
                audit_log: "/".into(),
            })
        });
    g.store = Some(url.to_string());
    if let Some(p) = password_file {
        g.store_password_file = Some(p.into());
    }
    if let Some(c) = ca {
        g.store_ca = Some(c.into());
    }
    g
}

/// Where a node's chain in the store breaks: (node, line, reason).
pub type Break = (String, i64, String);

/// One node's chain in the store: (node, lines, anchors checked, keyed lines checked, keyed lines
/// not checked for want of the key).
pub type NodeChain = (String, i64, usize, usize, usize);

/// What the store's chains hold, per node.
pub fn verify(c: &mut Client, key: Option<&[u8]>) -> Result<Vec<NodeChain>, Result<Break, String>> {
    let lines = store::all_lines(c).map_err(Err)?;
    let anchors = store::anchors(c).map_err(Err)?;
    let mut out: Vec<NodeChain> = vec![];
    let mut i = 0;
    while i < lines.len() {
        let node = lines[i].node.clone();
        let mut prev_hash = String::new();
        let mut seq = 0;
        let mut keyed = 0;
        let mut unchecked = 0;
        let mut hashes = std::collections::HashMap::new();
        while i < lines.len() && lines[i].node == node {
            let l = &lines[i];
            i += 1;
            if l.seq != seq + 1 {
                return Err(Ok((
                    node,
                    seq + 1,
                    format!(
                        "the line is missing from the store (the next one there is line {})",
                        l.seq
                    ),
                )));
            }
            seq = l.seq;
            if line_hash(&l.line) != l.hash {
                return Err(Ok((
                    node,
                    seq,
                    "the line was edited in the store (its hash does not match the one shipped)"
                        .into(),
                )));
            }
            let Ok(v) = serde_json::from_str::<Value>(&l.line) else {
                return Err(Ok((
                    node,
                    seq,
                    "not a JSON line (a foreign line was inserted)".into(),
                )));
            };
            let Some(p) = v.get("prev").and_then(Value::as_str) else {
                return Err(Ok((
                    node,
                    seq,
                    "the line has no prev: it is not one of the module's lines".into(),
                )));
            };
            // The first line shipped may follow lines removed by retention before shipping began.
            if seq > 1 && p != prev_hash {
                return Err(Ok((
                    node,
                    seq - 1,
                    "the line was edited (the next line's prev does not match it)".into(),
                )));
            }
            if let Some(k) = key {
                if !callconsent_runtime::audit::mac_matches(k, &v) {
                    return Err(Ok((
                        node,
                        seq,
                        "the line's mac does not match: it was edited, or written without the key"
                            .into(),
                    )));
                }
                keyed += 1;
            } else if v.get("mac").is_some() {
                unchecked += 1;
            }
            prev_hash = l.hash.clone();
            hashes.insert(seq, l.hash.clone());
        }
        let mut found = 0;
        for (_, aseq, ahash) in anchors.iter().filter(|(n, _, _)| *n == node) {
            match hashes.get(aseq) {
                Some(h) if h == ahash => found += 1,
                Some(_) => return Err(Ok((node, *aseq, "the line differs from the head anchored when it was shipped".into()))),
                None => return Err(Ok((node, *aseq, format!("the head anchored at line {aseq} is missing: lines were removed after line {seq}")))),
            }
        }
        out.push((node, seq, found, keyed, unchecked));
    }
    // A node whose every line was removed still has its anchors.
    for (n, aseq, _) in &anchors {
        if !out.iter().any(|(node, ..)| node == n) {
            return Err(Ok((
                n.clone(),
                *aseq,
                "the node's lines are gone from the store (its anchored head remains)".into(),
            )));
        }
    }
    Ok(out)
}

pub fn audit_verify(g: &General, key: Option<&[u8]>) -> ExitCode {
    let (mut c, pg) = match connect(g) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match verify(&mut c, key) {
        Ok(nodes) => {
            let total: i64 = nodes.iter().map(|n| n.1).sum();
            let unchecked: usize = nodes.iter().map(|n| n.4).sum();
            for (node, lines, anchors, keyed, not_checked) in &nodes {
                if *not_checked > 0 {
                    println!(
                        "node {node}: {lines} lines, hash chain consistent, but NOT verified: the keyed MACs of {not_checked} lines were not checked; {anchors} anchored head(s) found"
                    );
                    continue;
                }
                let mac = if key.is_some() {
                    format!(", {keyed} with a valid keyed MAC")
                } else {
                    String::new()
                };
                println!("node {node}: {lines} lines, chain intact{mac}; {anchors} anchored head(s) found");
            }
            if unchecked > 0 {
                println!(
                    "audit: {total} lines of {} node(s) in {}: the keyed MACs of {unchecked} lines were not checked \
                     (without them an edit whose hashes were recomputed goes unseen); give --key SECRET_FILE to check them",
                    nodes.len(),
                    pg.shown
                );
                return ExitCode::from(crate::UNVERIFIED_MACS);
            }
            println!(
                "audit: {total} lines of {} node(s) in {}, chain intact",
                nodes.len(),
                pg.shown
            );
            ExitCode::SUCCESS
        }
        Err(Ok((node, line, why))) => {
            println!("node {node} line {line}: {why}");
            ExitCode::from(1)
        }
        Err(Err(e)) => fail(e),
    }
}

/// Every shipped line of every node, as (node, seq, text, value).
pub fn lines(g: &General) -> Result<Vec<(String, i64, String, Value)>, String> {
    let (mut c, _) = connect(g)?;
    Ok(store::all_lines(&mut c)?
        .into_iter()
        .filter_map(|l| serde_json::from_str(&l.line).ok().map(|v| (l.node, l.seq, l.line, v)))
        .collect())
}

/// A caller's calls on every node, from the shipped lines.
pub fn subject_find(g: &General, normal: &str, hash: &str) -> ExitCode {
    let all = match lines(g) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let calls: std::collections::BTreeSet<(String, String)> = all
        .iter()
        .filter(|(_, _, _, v)| v["number_hash"].as_str() == Some(hash))
        .filter_map(|(n, _, _, v)| v["call"].as_str().map(|c| (n.clone(), c.to_string())))
        .collect();
    let nodes: std::collections::BTreeSet<&String> = calls.iter().map(|(n, _)| n).collect();
    println!(
        "subject {normal} (number hash {hash}): {} call(s) on {} node(s)",
        calls.len(),
        nodes.len()
    );
    for (n, seq, text, v) in &all {
        if v["call"].as_str().is_some_and(|c| calls.contains(&(n.clone(), c.to_string()))) {
            println!("audit {n}:{seq} {text}");
        }
    }
    ExitCode::SUCCESS
}

/// Asks every node to erase a caller's recordings, and waits until each node seen in the last
/// 10 minutes has done it (or `wait` has passed). Returns (node, files) per node that did.
/// An erasure asked of every node: (request id, nodes asked, (node, files erased) per node done).
pub type Erased = (i64, Vec<String>, Vec<(String, u64)>);

pub fn erase_everywhere(
    g: &General,
    hash: &str,
    person: &str,
    request: &str,
    wait: Duration,
) -> Result<Erased, String> {
    let (mut c, _) = connect(g)?;
    let nodes = store::live_nodes(&mut c, 600)?;
    let id = store::request_erasure(&mut c, hash, request, person)?;
    let start = Instant::now();
    loop {
        let done = store::erasure_status(&mut c, id)?;
        if nodes.iter().all(|n| done.iter().any(|(d, _)| d == n)) || start.elapsed() >= wait {
            return Ok((id, nodes, done));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn subject_erase(
    g: &General,
    normal: &str,
    hash: &str,
    person: &str,
    request: &str,
) -> ExitCode {
    let (id, nodes, done) =
        match erase_everywhere(g, hash, person, request, Duration::from_secs(60)) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
    let mut files = 0;
    for (node, n) in &done {
        println!("node {node}: erased, {n} file(s) deleted");
        files += n;
    }
    let missing: Vec<&String> =
        nodes.iter().filter(|n| !done.iter().any(|(d, _)| d == *n)).collect();
    for n in &missing {
        println!("node {n}: not done yet (it applies request {id} when it is back)");
    }
    println!("subject {normal}: erasure request {id} ({request}) done on {} of {} node(s), {files} file(s) deleted", done.len(), nodes.len());
    if missing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
