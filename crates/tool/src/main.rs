//! `callconsent`: the DPO's command-line tool (R8, R14, R15).
//!
//!   callconsent audit verify FILE...            check the hash chain (files in order); exit 1 at the first broken line
//!   callconsent agent AGENT FILE...             every audit record concerning one agent (R8)
//!   callconsent describe CONF [--lang fr|en]    plain-language description of the processing (R15)
//!   callconsent retention SPOOL_DIR DAYS        what retention would delete now (dry run)
//!   callconsent draw CALL SECRET_FILE SHARE     replay a selection decision
//!   callconsent archive verify FILE.opus AUDIT...  decode an archive, check its length and tags against the audit log
use std::process::ExitCode;

use callconsent_runtime::audit::verify_files;
use callconsent_core::config::{self, Defaults};
use callconsent_core::{describe, draw};

fn usage() -> ExitCode {
    eprintln!("{}", include_str!("main.rs").lines().skip(2).take(6).map(|l| l.trim_start_matches("//!")).collect::<Vec<_>>().join("\n"));
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    match a.as_slice() {
        ["audit", "verify", files @ ..] if !files.is_empty() => match verify_files(files) {
            Ok(n) => {
                println!("audit: {n} lines, chain intact");
                ExitCode::SUCCESS
            }
            Err((file, line, why)) => {
                println!("{file}:{line}: {why}");
                ExitCode::from(1)
            }
        },
        ["agent", agent, files @ ..] if !files.is_empty() => {
            let mut n = 0;
            for f in files {
                let Ok(text) = std::fs::read_to_string(f) else {
                    eprintln!("{f}: cannot read");
                    return ExitCode::from(1);
                };
                for line in text.lines() {
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                    if v["agent"].as_str() == Some(agent) {
                        println!("{line}");
                        n += 1;
                    }
                }
            }
            eprintln!("{n} record(s) concern {agent}");
            ExitCode::SUCCESS
        }
        ["describe", conf, rest @ ..] => {
            let lang = match rest {
                ["--lang", l] => *l,
                [] => "en",
                _ => return usage(),
            };
            let Ok(text) = std::fs::read_to_string(conf) else {
                eprintln!("{conf}: cannot read");
                return ExitCode::from(1);
            };
            let defaults = Defaults {
                spool_dir: "/var/spool/asterisk/callconsent".into(),
                audit_log: "/var/log/asterisk/callconsent/audit.jsonl".into(),
            };
            match config::parse(&config::entries_from_text(&text, conf), &defaults, &|_| true) {
                Ok(cfg) => {
                    print!("{}", describe::describe(&cfg, lang));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        ["retention", dir, days] => {
            let Ok(days) = days.parse::<u64>() else { return usage() };
            let files = callconsent_runtime::retention::expired(std::path::Path::new(dir), days, std::time::SystemTime::now());
            for (f, age) in &files {
                println!("would delete {} ({age} days old)", f.display());
            }
            eprintln!("{} file(s) past {days} days (dry run: nothing deleted)", files.len());
            ExitCode::SUCCESS
        }
        ["draw", call, secret, share] => {
            let (Ok(secret), Ok(share)) = (std::fs::read(secret), share.parse::<u8>()) else { return usage() };
            let d = draw::draw(&secret, call, share);
            println!("call {call}: bucket {} {} share {share} % ({}): {}", d.bucket, if d.selected { "<" } else { ">=" }, draw::RULE, if d.selected { "selected" } else { "not selected" });
            ExitCode::SUCCESS
        }
        ["archive", "verify", file, audits @ ..] if !audits.is_empty() => match verify_archive(file, audits) {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("{file}: {e}");
                ExitCode::from(1)
            }
        },
        _ => usage(),
    }
}

fn verify_archive(file: &str, audits: &[&str]) -> Result<String, String> {
    use callconsent_runtime::archive::read_archive;
    let a = read_archive(std::path::Path::new(file))?;
    let tag = |k: &str| a.tag(k).map(str::to_string).ok_or(format!("no {k} tag"));
    let (call, name, hash) = (tag("CALLCONSENT_CALL")?, tag("CALLCONSENT_FILE")?, tag("CALLCONSENT_AUDIT")?);
    for f in audits {
        let text = std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?;
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            if v["event"] != "recording_kept" || v["call"] != call.as_str() || !v["file"].as_str().is_some_and(|p| p.ends_with(&format!("/{name}"))) {
                continue;
            }
            if callconsent_runtime::audit::line_hash(line) != hash {
                return Err("CALLCONSENT_AUDIT is not the hash of the recording_kept line".into());
            }
            for (k, field) in [("CALLCONSENT_PROFILE", "profile"), ("CALLCONSENT_PAUSES", "pause_spans_ms")] {
                if a.tag(k) != v[field].as_str() {
                    return Err(format!("{k} = {:?} but the audit log says {}", a.tag(k), v[field]));
                }
            }
            if a.tag("CALLCONSENT_AGENT").unwrap_or("") != v["agent"].as_str().unwrap_or("") {
                return Err("CALLCONSENT_AGENT does not match the audit log".into());
            }
            let expected = v["duration_ms"].as_u64().unwrap_or(0);
            if a.duration_ms.abs_diff(expected) > 50 {
                return Err(format!("lasts {} ms, the audit log says {expected} ms", a.duration_ms));
            }
            return Ok(format!("{file}: {} ms, tags match the audit log (call {call}, line hash {hash})", a.duration_ms));
        }
    }
    Err(format!("no recording_kept line for call {call} and file {name}"))
}
