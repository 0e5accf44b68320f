//! What the pages show, computed from the audit and access logs (never from caps.redb: the
//! running module holds its lock).
use std::collections::BTreeMap;

use callconsent_core::audit::AuditEvent;
use callconsent_core::config::Config;
use callconsent_core::draw;
use callconsent_runtime::access::{self, Line};
use callconsent_runtime::audit::{audit_key, verify_files_with, Check};

/// One profile's counts on one day.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Day {
    /// Calls decided (selected, not selected or exempt).
    pub calls: u64,
    pub selected: u64,
    pub recorded: u64,
    pub optout_notice: u64,
    pub optout_call: u64,
    pub exempt: u64,
    pub pauses: u64,
    pub deletes: u64,
}

/// Per profile, per day (YYYY-MM-DD), the counts.
pub fn per_day(lines: &[Line]) -> BTreeMap<String, BTreeMap<String, Day>> {
    let mut out: BTreeMap<String, BTreeMap<String, Day>> = BTreeMap::new();
    for l in lines {
        let v = &l.value;
        let Some(ev) = AuditEvent::parse(v["event"].as_str().unwrap_or("")) else { continue };
        let profile = v["profile"].as_str().unwrap_or("");
        let day = v["ts"].as_str().and_then(|t| t.get(..10)).unwrap_or("");
        if profile.is_empty() || day.is_empty() {
            continue;
        }
        let d = out.entry(profile.to_string()).or_default().entry(day.to_string()).or_default();
        match ev {
            AuditEvent::Selected => {
                d.calls += 1;
                d.selected += 1;
            }
            AuditEvent::NotSelected => d.calls += 1,
            AuditEvent::Exempt => {
                d.calls += 1;
                d.exempt += 1;
            }
            AuditEvent::RecordingKept => d.recorded += 1,
            AuditEvent::OptOut if v["during"] == "notice" => d.optout_notice += 1,
            AuditEvent::OptOut => d.optout_call += 1,
            AuditEvent::Paused => d.pauses += 1,
            AuditEvent::DeleteRequested => d.deletes += 1,
            _ => {}
        }
    }
    out
}

/// The state of a log's chain, in plain words.
pub struct Chain {
    pub ok: bool,
    pub text: String,
    /// FILE:LINE of the first broken line.
    pub at: Option<String>,
}

/// Verifies a chained log (rotated files then the log), with the MAC when the secret is known.
pub fn chain(log: &std::path::Path, secret: Option<&[u8]>, what: &str) -> Chain {
    let files: Vec<String> =
        access::log_files(log).iter().map(|p| p.display().to_string()).collect();
    if files.is_empty() {
        return Chain {
            ok: true,
            text: format!("The {what} ({}) has no line yet.", log.display()),
            at: None,
        };
    }
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    let key = secret.map(audit_key);
    match verify_files_with(&refs, &Check { key: key.as_deref(), anchors: &[] }) {
        // A keyed log the console cannot check the MACs of (no secret given) is not called
        // intact: its chain alone can be recomputed by whoever rewrites the file.
        Ok(v) if v.unchecked_macs > 0 => Chain {
            ok: false,
            text: format!(
                "Not verified: the {what}'s {} line(s) are chained, but their keyed MACs were not checked (the console was started without the installation secret); an edit whose hashes were recomputed would go unseen. Start the console with --secret, or run callconsent audit verify --key.",
                v.lines
            ),
            at: None,
        },
        Ok(v) => {
            let mut text = format!("Intact: all {} line(s) of the {what} verified, in {} file(s), each line chained to the one before", v.lines, files.len());
            if key.is_some() {
                text.push_str(&format!("; {} line(s) carry a valid keyed MAC (nobody without the installation secret could rewrite them)", v.keyed_lines));
            }
            text.push('.');
            if let Some(f) = v.follows_expired {
                text.push_str(&format!(" The first file follows {f}, removed by retention."));
            }
            Chain { ok: true, text, at: None }
        }
        Err((file, line, why)) => Chain { ok: false, text: format!("Broken: {why}. Lines before it verify; from this line on the {what} cannot be trusted."), at: Some(format!("{file}:{line}")) },
    }
}

/// The last checkpoint line of the audit log, and the heads published (anchors).
pub fn last_checkpoint(lines: &[Line]) -> Option<&Line> {
    lines.iter().rev().find(|l| l.value["event"] == AuditEvent::AuditCheckpoint.as_str())
}

/// Recordings made against each profile's cap this cap period, for one agent: (profile,
/// count, max, period key). Counted from the audit log's agent_cleared lines (each one started
/// a recording of the agent, as the cap counts).
pub fn caps(cfg: &Config, lines: &[Line], agent: &str) -> Vec<(String, u64, u64, String)> {
    let now = chrono::Utc::now();
    cfg.profiles
        .values()
        .map(|p| {
            let key = p.cap_period.key(now);
            let n = lines
                .iter()
                .filter(|l| {
                    l.value["event"] == AuditEvent::AgentCleared.as_str()
                        && l.value["agent"].as_str() == Some(agent)
                        && l.value["profile"].as_str() == Some(p.name.as_str())
                })
                .filter(|l| {
                    chrono::DateTime::parse_from_rfc3339(l.value["ts"].as_str().unwrap_or(""))
                        .is_ok_and(|t| p.cap_period.key(t.with_timezone(&chrono::Utc)) == key)
                })
                .count() as u64;
            (p.name.clone(), n, p.max_per_agent, key)
        })
        .collect()
}

/// Why a call was recorded or not (R5): the draw replayed, and the agent checks.
pub struct Explained {
    pub call: String,
    pub profile: String,
    pub agent: Option<String>,
    pub steps: Vec<(String, String)>,
    pub outcome: String,
}

pub fn explain(
    cfg: &Config,
    lines: &[Line],
    secret: Option<&[u8]>,
    call: &str,
) -> Option<Explained> {
    let of: Vec<&Line> = lines.iter().filter(|l| l.value["call"].as_str() == Some(call)).collect();
    if of.is_empty() {
        return None;
    }
    let mut steps = vec![];
    let mut profile = String::new();
    let mut agent = None;
    let mut outcome = String::new();
    for l in &of {
        let v = &l.value;
        let ev = v["event"].as_str().unwrap_or("");
        if profile.is_empty() {
            profile = v["profile"].as_str().unwrap_or("").to_string();
        }
        if let Some(a) = v["agent"].as_str().filter(|a| !a.is_empty()) {
            agent = Some(a.to_string());
        }
        let at = format!("{}:{}", l.file.rsplit('/').next().unwrap_or(&l.file), l.number);
        match AuditEvent::parse(ev) {
            Some(e @ (AuditEvent::Selected | AuditEvent::NotSelected)) => {
                let share = v["share"].as_u64().unwrap_or(0);
                let bucket = v["bucket"].as_u64();
                let rule = v["rule"].as_str().unwrap_or(draw::RULE);
                let mut text = format!(
                    "Draw: bucket {} {} share {share} % × 100 = {}: {}. Rule: {rule}.",
                    bucket.map(|b| b.to_string()).unwrap_or_else(|| "?".into()),
                    if e == AuditEvent::Selected { "<" } else { ">=" },
                    share * 100,
                    if e == AuditEvent::Selected { "selected" } else { "not selected" }
                );
                if let Some(r) = v["reason"].as_str() {
                    text.push_str(&format!(" Reason: {r}."));
                }
                match secret {
                    Some(s) => {
                        let d = draw::draw(s, call, share.min(100) as u8);
                        let same = Some(u64::from(d.bucket)) == bucket && d.selected == (e == AuditEvent::Selected);
                        text.push_str(&format!(
                            " Replayed now from the installation secret and the call id: bucket {}, {}: {}.",
                            d.bucket,
                            if d.selected { "selected" } else { "not selected" },
                            if same { "the same decision" } else { "NOT the decision the log shows" }
                        ));
                    }
                    None => text.push_str(" (The installation secret is not readable here: the draw cannot be replayed.)"),
                }
                if let Some(p) = cfg.profiles.get(&profile) {
                    if u64::from(p.record_share) != share {
                        text.push_str(&format!(
                            " The profile's share is {} % now (changed since).",
                            p.record_share
                        ));
                    }
                }
                steps.push((at, text));
            }
            Some(AuditEvent::Exempt) => steps.push((
                at,
                format!(
                    "Exempt, never recorded whatever the draw (R12): {}.",
                    v["reason"].as_str().unwrap_or("")
                ),
            )),
            Some(AuditEvent::AgentCleared) => steps.push((
                at,
                format!(
                    "Agent {} cleared: not exempt; {}{}.",
                    v["agent"].as_str().unwrap_or("?"),
                    match (v["count"].as_u64(), v["max"].as_u64()) {
                        (Some(c), Some(m)) if m > 0 => format!(
                            "recording {} of the cap of {m} for {}",
                            c + 1,
                            v["period"].as_str().unwrap_or("the period")
                        ),
                        _ => "the profile has no cap".to_string(),
                    },
                    if v["after"].is_string() { " (after a transfer)" } else { "" }
                ),
            )),
            Some(AuditEvent::AgentVetoed) => steps.push((
                at,
                format!(
                    "Agent {} vetoed: {}.",
                    v["agent"].as_str().unwrap_or("?"),
                    v["reason"].as_str().unwrap_or("")
                ),
            )),
            Some(AuditEvent::OptOut) => steps.push((
                at,
                format!(
                    "The caller refused (key {}, during the {}).",
                    v["key"].as_str().unwrap_or("?"),
                    v["during"].as_str().unwrap_or("call")
                ),
            )),
            Some(AuditEvent::NotRecorded) => {
                steps.push((at, "The notice could not be played: not recorded (R1).".to_string()))
            }
            Some(AuditEvent::RecordingKept) => steps.push((
                at,
                format!(
                    "Recording kept: {} ms, pauses {}.",
                    v["duration_ms"].as_u64().unwrap_or(0),
                    v["pauses"].as_u64().unwrap_or(0)
                ),
            )),
            Some(
                AuditEvent::RecordingDeleted
                | AuditEvent::RecordingErased
                | AuditEvent::RecordingExpired,
            ) => steps.push((
                at,
                format!("{ev}: {}.", v["reason"].as_str().or(v["request"].as_str()).unwrap_or("")),
            )),
            Some(AuditEvent::CallEnded) => {
                outcome = v["outcome"].as_str().unwrap_or("").to_string()
            }
            _ => {}
        }
    }
    Some(Explained { call: call.to_string(), profile, agent, steps, outcome })
}

/// The calls of the audit log, newest first: (call, ts, profile, agent, outcome).
pub fn calls(lines: &[Line]) -> Vec<(String, String, String, Option<String>, String)> {
    let mut order: Vec<String> = vec![];
    let mut info: BTreeMap<String, (String, String, Option<String>, String)> = BTreeMap::new();
    for l in lines {
        let v = &l.value;
        let Some(call) = v["call"].as_str().filter(|c| !c.is_empty()) else { continue };
        let e = info.entry(call.to_string()).or_insert_with(|| {
            order.push(call.to_string());
            (v["ts"].as_str().unwrap_or("").to_string(), String::new(), None, String::new())
        });
        if e.1.is_empty() {
            e.1 = v["profile"].as_str().unwrap_or("").to_string();
        }
        if let Some(a) = v["agent"].as_str().filter(|a| !a.is_empty()) {
            e.2 = Some(a.to_string());
        }
        if v["event"] == AuditEvent::CallEnded.as_str() {
            e.3 = v["outcome"].as_str().unwrap_or("").to_string();
        }
    }
    order
        .into_iter()
        .rev()
        .filter_map(|c| {
            let (ts, p, a, o) = info.remove(&c)?;
            Some((c, ts, p, a, o))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(n: usize, v: serde_json::Value) -> Line {
        Line { file: "/l/audit.jsonl".into(), number: n, text: v.to_string(), value: v }
    }

    #[test]
    fn days_count_each_kind_per_profile() {
        let lines = vec![
            line(
                1,
                json!({"event": "selected", "profile": "sales", "ts": "2026-12-01T10:00:00Z", "call": "1"}),
            ),
            line(
                2,
                json!({"event": "recording_kept", "profile": "sales", "ts": "2026-12-01T10:01:00Z", "call": "1"}),
            ),
            line(
                3,
                json!({"event": "not_selected", "profile": "sales", "ts": "2026-12-01T11:00:00Z", "call": "2"}),
            ),
            line(
                4,
                json!({"event": "selected", "profile": "sales", "ts": "2026-12-02T10:00:00Z", "call": "3"}),
            ),
            line(
                5,
                json!({"event": "opt_out", "during": "notice", "profile": "sales", "ts": "2026-12-02T10:00:01Z", "call": "3"}),
            ),
            line(
                6,
                json!({"event": "opt_out", "during": "call", "profile": "sales", "ts": "2026-12-02T10:00:01Z", "call": "4"}),
            ),
            line(
                7,
                json!({"event": "exempt", "profile": "support", "ts": "2026-12-02T10:00:00Z", "call": "5"}),
            ),
        ];
        let d = per_day(&lines);
        assert_eq!(
            d["sales"]["2026-12-01"],
            Day { calls: 2, selected: 1, recorded: 1, ..Day::default() }
        );
        assert_eq!(
            (d["sales"]["2026-12-02"].optout_notice, d["sales"]["2026-12-02"].optout_call),
            (1, 1)
        );
        assert_eq!(d["support"]["2026-12-02"].exempt, 1);
        let c = calls(&lines);
        assert_eq!(c.first().map(|c| c.0.as_str()), Some("5"));
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn explain_replays_the_draw() {
        let secret = b"k";
        let d = draw::draw(secret, "9.1", 20);
        let ev = if d.selected { "selected" } else { "not_selected" };
        let lines = vec![line(
            1,
            json!({"event": ev, "profile": "sales", "ts": "2026-12-01T10:00:00Z", "call": "9.1", "share": 20, "bucket": d.bucket}),
        )];
        let text = "[general]\n\n[sales]\nnotice = n\nfull_notice = f\noptout_confirm = c\nrecord_share = 20\n";
        let cfg = callconsent_core::config::parse(
            &callconsent_core::config::entries_from_text(text, "c"),
            &callconsent_core::config::Defaults {
                spool_dir: "/s".into(),
                audit_log: "/l/audit.jsonl".into(),
            },
            &|_| true,
        );
        let Ok(cfg) = cfg else { panic!("config: {:?}", cfg.err()) };
        let e = explain(&cfg, &lines, Some(secret), "9.1").expect("the call");
        assert!(e.steps[0].1.contains("the same decision"), "{:?}", e.steps);
        let e = explain(&cfg, &lines, Some(b"other"), "9.1").expect("the call");
        assert!(e.steps[0].1.contains(&format!("bucket {}", d.bucket)), "{:?}", e.steps);
        assert!(explain(&cfg, &lines, None, "nope").is_none());
    }
}
