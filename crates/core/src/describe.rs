//! A plain-language description of the processing, generated from the live configuration, for
//! the staff notice and the records of processing (R8, R15), in English and French.
use super::config::Config;
use super::policy::{CapPeriod, Exemption};

pub fn describe(cfg: &Config, lang: &str) -> String {
    let fr = lang.starts_with("fr");
    let mut out = String::new();
    if fr {
        out.push_str("Enregistrement des appels : description du traitement\n\n");
        out.push_str("Finalité : formation des conseillers et qualité du service. Seuls les appels tirés au sort selon une règle reproductible sont enregistrés ; l'appelant en est informé avant tout enregistrement et peut s'y opposer à tout moment, l'enregistrement étant alors arrêté et supprimé. Le conseiller entend un signal quand l'enregistrement commence, et peut le suspendre ou le supprimer depuis son poste.\n");
        out.push_str(&format!("Conservation : {} jours au plus, puis suppression automatique consignée ; journal d'audit : {} jours.\n", cfg.general.retention_days, cfg.general.audit_retention_days));
        out.push_str("Accès : fichiers lisibles par le seul groupe autorisé (0640), indexés par date ; chaque décision est consignée dans un journal chaîné et vérifiable.\n\n");
    } else {
        out.push_str("Call recording: description of the processing\n\n");
        out.push_str("Purpose: training of agents and service quality. Only calls drawn by a reproducible rule are recorded; callers are told before any recording and may refuse at any moment, which stops and deletes the recording. Agents hear a tone when recording starts and can pause or delete it from their phone or desktop.\n");
        out.push_str(&format!("Retention: at most {} days, then deleted automatically and logged; audit log: {} days.\n", cfg.general.retention_days, cfg.general.audit_retention_days));
        out.push_str("Access: files readable by the authorized group only (0640), indexed by date; every decision goes to a hash-chained, verifiable audit log.\n\n");
    }
    for p in cfg.profiles.values() {
        let period = match (p.cap_period, fr) {
            (CapPeriod::Day, false) => "day",
            (CapPeriod::Week, false) => "week",
            (CapPeriod::Month, false) => "month",
            (CapPeriod::Day, true) => "jour",
            (CapPeriod::Week, true) => "semaine",
            (CapPeriod::Month, true) => "mois",
        };
        let callers = p.never_record.iter().filter(|e| matches!(e, Exemption::Caller(_))).count();
        let agents: Vec<String> = p.never_record.iter().filter_map(|e| if let Exemption::Agent(g) = e { Some(g.clone()) } else { None }).collect();
        if fr {
            out.push_str(&format!("Profil « {} » : {} % des appels", p.name, p.record_share));
            if let Some(lb) = &p.legal_basis {
                out.push_str(&format!(" (obligation légale : {lb})"));
            }
            out.push_str(&format!(". Touche d'opposition : {} ; mentions complètes : {}. Codes du conseiller : pause {}, reprise {}, suppression {}.", p.optout_key, p.info_key, p.pause_code, p.resume_code, p.delete_code));
            if p.max_per_agent > 0 {
                out.push_str(&format!(" Au plus {} enregistrements par conseiller et par {period}.", p.max_per_agent));
            }
            if p.pause_max_seconds > 0 {
                out.push_str(&format!(" Une pause reprend d'elle-même après {} s.", p.pause_max_seconds));
            }
            let mut never = vec![];
            if callers > 0 {
                never.push(format!("{callers} numéro(s) d'appelant"));
            }
            if !agents.is_empty() {
                never.push(format!("les postes {}", agents.join(", ")));
            }
            if let Some(pp) = &p.private_prefix {
                never.push(format!("les appels privés composés avec le préfixe {pp}"));
            }
            if !never.is_empty() {
                out.push_str(&format!(" Jamais enregistrés : {}.", never.join(", ")));
            }
        } else {
            out.push_str(&format!("Profile \"{}\": {} % of calls", p.name, p.record_share));
            if let Some(lb) = &p.legal_basis {
                out.push_str(&format!(" (required by law: {lb})"));
            }
            out.push_str(&format!(". Refusal key: {}; full notice: {}. Agent codes: pause {}, resume {}, delete {}.", p.optout_key, p.info_key, p.pause_code, p.resume_code, p.delete_code));
            if p.max_per_agent > 0 {
                out.push_str(&format!(" At most {} recordings per agent per {period}.", p.max_per_agent));
            }
            if p.pause_max_seconds > 0 {
                out.push_str(&format!(" A pause resumes by itself after {} s.", p.pause_max_seconds));
            }
            let mut never = vec![];
            if callers > 0 {
                never.push(format!("{callers} caller number(s)"));
            }
            if !agents.is_empty() {
                never.push(format!("the lines {}", agents.join(", ")));
            }
            if let Some(pp) = &p.private_prefix {
                never.push(format!("private calls dialled with prefix {pp}"));
            }
            if !never.is_empty() {
                out.push_str(&format!(" Never recorded: {}.", never.join(", ")));
            }
        }
        out.push('\n');
    }
    out
}
