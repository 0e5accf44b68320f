//! A plain-language description of the processing, generated from the live configuration, for
//! the staff notice and the records of processing (R8, R15), in English and French.
use super::config::{Config, Role};
use super::policy::{CapPeriod, Exemption};

pub fn describe(cfg: &Config, lang: &str) -> String {
    let fr = lang.starts_with("fr");
    let mut out = String::new();
    if fr {
        out.push_str("Enregistrement des appels : description du traitement\n\n");
        out.push_str("Finalité : formation des conseillers et qualité du service. Seuls les appels tirés au sort selon une règle reproductible sont enregistrés ; l'appelant en est informé avant tout enregistrement et peut s'y opposer à tout moment, l'enregistrement étant alors arrêté et supprimé. Le conseiller entend un signal quand l'enregistrement commence, et peut le suspendre ou le supprimer depuis son poste.\n");
        out.push_str(&format!("Conservation : {} jours au plus, puis suppression automatique consignée ; journal d'audit : {} jours.\n", cfg.general.retention_days, cfg.general.audit_retention_days));
        out.push_str("Accès : fichiers lisibles par le seul groupe autorisé (0640), indexés par date ; chaque décision est consignée dans un journal chaîné et vérifiable.\n");
        out.push_str(&access_fr(cfg));
    } else {
        out.push_str("Call recording: description of the processing\n\n");
        out.push_str("Purpose: training of agents and service quality. Only calls drawn by a reproducible rule are recorded; callers are told before any recording and may refuse at any moment, which stops and deletes the recording. Agents hear a tone when recording starts and can pause or delete it from their phone or desktop.\n");
        out.push_str(&format!("Retention: at most {} days, then deleted automatically and logged; audit log: {} days.\n", cfg.general.retention_days, cfg.general.audit_retention_days));
        out.push_str("Access: files readable by the authorized group only (0640), indexed by date; every decision goes to a hash-chained, verifiable audit log.\n");
        out.push_str(&access_en(cfg));
    }
    for p in cfg.profiles.values() {
        let period = match (p.cap_period, fr) {
            (CapPeriod::Day, false) => "day",
            (CapPeriod::Week, false) => "week",
            (CapPeriod::Month, false) => "month",
            (CapPeriod::Day, true) => "jour",
            (CapPeriod::Week, true) => "semaine",
            (CapPeriod::Month, true) => "mois",
            (CapPeriod::Quarter, false) => "quarter",
            (CapPeriod::Quarter, true) => "trimestre",
        };
        let callers = p.never_record.iter().filter(|e| matches!(e, Exemption::Caller(_))).count();
        let agents: Vec<String> = p
            .never_record
            .iter()
            .filter_map(|e| if let Exemption::Agent(g) = e { Some(g.clone()) } else { None })
            .collect();
        if fr {
            out.push_str(&format!("Profil « {} » : {} % des appels", p.name, p.record_share));
            if let Some(lb) = &p.legal_basis {
                out.push_str(&format!(" (obligation légale : {lb})"));
            }
            out.push_str(&format!(". Touche d'opposition : {} ; mentions complètes : {}. Codes du conseiller : pause {}, reprise {}, suppression {}.", p.optout_key, p.info_key, p.pause_code, p.resume_code, p.delete_code));
            if p.max_per_agent > 0 {
                out.push_str(&format!(
                    " Au plus {} enregistrements par conseiller et par {period}.",
                    p.max_per_agent
                ));
            }
            if p.pause_max_seconds > 0 {
                out.push_str(&format!(
                    " Une pause reprend d'elle-même après {} s.",
                    p.pause_max_seconds
                ));
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
            if p.secure_gosub.is_some() {
                out.push_str(&format!(" Paiement par carte : après le code {} du conseiller, les chiffres tapés par l'appelant ne sont ni enregistrés, ni entendus du conseiller, ni écrits dans aucun journal ; ils ne vont qu'au système de paiement.", p.secure_code));
            }
        } else {
            out.push_str(&format!("Profile \"{}\": {} % of calls", p.name, p.record_share));
            if let Some(lb) = &p.legal_basis {
                out.push_str(&format!(" (required by law: {lb})"));
            }
            out.push_str(&format!(
                ". Refusal key: {}; full notice: {}. Agent codes: pause {}, resume {}, delete {}.",
                p.optout_key, p.info_key, p.pause_code, p.resume_code, p.delete_code
            ));
            if p.max_per_agent > 0 {
                out.push_str(&format!(
                    " At most {} recordings per agent per {period}.",
                    p.max_per_agent
                ));
            }
            if p.pause_max_seconds > 0 {
                out.push_str(&format!(
                    " A pause resumes by itself after {} s.",
                    p.pause_max_seconds
                ));
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
            if p.secure_gosub.is_some() {
                out.push_str(&format!(" Card payments: after the agent's code {}, the digits the caller types are neither recorded, nor heard by the agent, nor written to any log; they go to the payment system only.", p.secure_code));
            }
        }
        out.push('\n');
    }
    out
}

/// A period's name in English or French (the description, the console's processing record).
pub fn period(p: CapPeriod, fr: bool) -> &'static str {
    match (p, fr) {
        (CapPeriod::Day, false) => "day",
        (CapPeriod::Week, false) => "week",
        (CapPeriod::Month, false) => "month",
        (CapPeriod::Quarter, false) => "quarter",
        (CapPeriod::Day, true) => "jour",
        (CapPeriod::Week, true) => "semaine",
        (CapPeriod::Month, true) => "mois",
        (CapPeriod::Quarter, true) => "trimestre",
    }
}

fn access_en(cfg: &Config) -> String {
    let mut out = String::new();
    let g = &cfg.general;
    if g.encrypt_to.is_empty() {
        out.push_str("Encryption: none (recordings are protected by file permissions only).\n");
    } else {
        let fps: Vec<String> =
            g.encrypt_to.iter().map(|r| super::policy::recipient_fingerprint(r)).collect();
        out.push_str(&format!("Encryption: every kept recording is encrypted on the PBX to {} recipient(s) (fingerprints {}); the PBX itself cannot read them.\n", fps.len(), fps.join(", ")));
    }
    let a = &cfg.access;
    let people = |r: Role| a.people.iter().filter(|p| p.role == r).count();
    out.push_str(&format!(
        "Who may listen: {} data protection officer(s) (every recording), {} coach(es) (their team's recordings only), {} agent(s) (their own recordings only); every listen and export is logged.",
        people(Role::Dpo),
        people(Role::Coach),
        people(Role::Agent)
    ));
    if a.max_listens_per_agent > 0 {
        out.push_str(&format!(
            " Listening to one agent's calls is bounded: at most {} listen(s) per {}",
            a.max_listens_per_agent,
            period(a.listen_period, false)
        ));
        if a.min_listens_per_agent > 0 {
            out.push_str(&format!(", at least {} for coaching", a.min_listens_per_agent));
        }
        out.push('.');
    }
    out.push_str("\nCallers may ask for their recordings, or their erasure, by their number.\n\n");
    out
}

fn access_fr(cfg: &Config) -> String {
    let mut out = String::new();
    let g = &cfg.general;
    if g.encrypt_to.is_empty() {
        out.push_str("Chiffrement : aucun (les enregistrements ne sont protégés que par les droits des fichiers).\n");
    } else {
        let fps: Vec<String> =
            g.encrypt_to.iter().map(|r| super::policy::recipient_fingerprint(r)).collect();
        out.push_str(&format!("Chiffrement : chaque enregistrement conservé est chiffré sur l'autocommutateur pour {} destinataire(s) (empreintes {}) ; l'autocommutateur lui-même ne peut pas les lire.\n", fps.len(), fps.join(", ")));
    }
    let a = &cfg.access;
    let people = |r: Role| a.people.iter().filter(|p| p.role == r).count();
    out.push_str(&format!(
        "Qui peut écouter : {} délégué(s) à la protection des données (tous les enregistrements), {} coach(s) (ceux de leur équipe seulement), {} conseiller(s) (les leurs seulement) ; chaque écoute et chaque export est consigné.",
        people(Role::Dpo),
        people(Role::Coach),
        people(Role::Agent)
    ));
    if a.max_listens_per_agent > 0 {
        out.push_str(&format!(
            " L'écoute des appels d'un conseiller est bornée : au plus {} écoute(s) par {}",
            a.max_listens_per_agent,
            period(a.listen_period, true)
        ));
        if a.min_listens_per_agent > 0 {
            out.push_str(&format!(", au moins {} pour l'accompagnement", a.min_listens_per_agent));
        }
        out.push('.');
    }
    out.push_str("\nLes appelants peuvent demander leurs enregistrements, ou leur effacement, par leur numéro.\n\n");
    out
}
