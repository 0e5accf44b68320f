//! What an admin reads of the live module: the CLI's `show` output and the dialplan function's
//! fields. Plain lines; the adapter writes them where its host wants them.
use std::sync::Arc;

use callconsent_core::call::Phase;

use crate::calls::Slot;
use crate::Runtime;

/// `show profiles`: one line a profile, then a summary.
pub fn profiles(rt: &Runtime) -> Vec<String> {
    let cfg = rt.config();
    let mut out = vec![format!(
        "{:<16} {:>6} {:>4} {:>4} {:<14} {:>9}  {}",
        "Profile", "Share", "Out", "Info", "Codes", "PauseMax", "Legal basis"
    )];
    for p in cfg.profiles.values() {
        out.push(format!(
            "{:<16} {:>5}% {:>4} {:>4} {:<14} {:>8}s  {}",
            p.name,
            p.record_share,
            p.optout_key,
            p.info_key,
            format!("{} {} {}", p.pause_code, p.resume_code, p.delete_code),
            p.pause_max_seconds,
            p.legal_basis.as_deref().unwrap_or("-")
        ));
    }
    out.push(format!(
        "{} profile(s); recordings in {}; audit log {}",
        cfg.profiles.len(),
        cfg.general.spool_dir.display(),
        cfg.general.audit_log.display()
    ));
    out
}

/// `show calls`: the live calls (state, recorded, paused, agent).
pub fn calls(rt: &Runtime) -> Vec<String> {
    let slots = rt.calls().all();
    let mut out = vec![format!(
        "{:<40} {:<12} {:<14} {:<8} {:<6} {:>6}  {}",
        "Channel", "Profile", "State", "Recorded", "Paused", "Secs", "Agent"
    )];
    for s in &slots {
        let agent = rt.exec().host.agent_of(&s.uniqueid).unwrap_or_else(|| "-".into());
        let (state, recorded, paused) =
            s.with_call(|c| (c.state_name(), c.phase() == Phase::Recording, c.paused()));
        out.push(format!(
            "{:<40} {:<12} {:<14} {:<8} {:<6} {:>6}  {}",
            s.channel,
            s.profile,
            state,
            if recorded { "yes" } else { "no" },
            if paused { "yes" } else { "no" },
            s.age_secs(),
            agent
        ));
    }
    out.push(format!("{} call(s) watched", slots.len()));
    out
}

/// `show call <channel>`: one call in detail.
pub fn call(slot: &Slot) -> Vec<String> {
    let mut out = vec![format!("Channel: {}", slot.channel)];
    out.extend(slot.status_fields().into_iter().map(|(k, v)| format!("{k}: {v}")));
    out
}

/// `show status`: the module's health: the audit log (lines written, head, a failing write),
/// the live calls, the key id.
pub fn status(rt: &Runtime) -> Vec<String> {
    let cfg = rt.config();
    let a = rt.audit_status();
    vec![
        format!("Audit log:      {}", cfg.general.audit_log.display()),
        format!(
            "Audit writes:   {}",
            a.last_error.as_deref().map_or("ok".to_string(), |e| format!("FAILING: {e}"))
        ),
        format!("Lines written:  {} since load", a.lines_written),
        format!("Chain head:     {}", if a.head.is_empty() { "-" } else { &a.head }),
        format!("Key id:         {}", rt.key_id()),
        format!("Recordings:     {}", cfg.general.spool_dir.display()),
        format!(
            "Encryption:     {}",
            if cfg.general.encrypt_to.is_empty() {
                "off: kept recordings are readable in the spool (R11: set encrypt_to)".to_string()
            } else {
                format!(
                    "age, {} recipient(s): {}",
                    cfg.general.encrypt_to.len(),
                    cfg.general
                        .encrypt_to
                        .iter()
                        .map(|r| callconsent_core::policy::recipient_fingerprint(r))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ),
        format!("Store:          {}", rt.store_status()),
        format!("Live calls:     {}", rt.calls().all().len()),
        format!("Profiles:       {}", cfg.profiles.keys().cloned().collect::<Vec<_>>().join(", ")),
    ]
}

/// The channel names of the live calls (CLI completion).
pub fn names(rt: &Runtime) -> Vec<String> {
    rt.calls().all().iter().map(|s| s.channel.clone()).collect()
}

/// `CALLCONSENT(field)`: state, profile, paused (1/0) or file.
pub fn field(slot: &Arc<Slot>, name: &str) -> Result<String, String> {
    match name.trim().to_ascii_lowercase().as_str() {
        "state" => Ok(slot.with_call(|c| c.state_name().to_string())),
        "profile" => Ok(slot.profile.clone()),
        "paused" => Ok(if slot.with_call(|c| c.paused()) { "1" } else { "0" }.to_string()),
        "file" => Ok(slot.with_call(|c| c.file().unwrap_or("").to_string())),
        other => Err(format!(
            "CALLCONSENT({other}): unknown field (state, profile, paused, file, secure_digits)"
        )),
    }
}
