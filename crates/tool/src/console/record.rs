//! The record of processing (R15, GDPR Art. 30) from the live configuration, in English and
//! French, laid out for paper (the page's print CSS hides the navigation).
use callconsent_core::config::Config;
use callconsent_core::describe::{self, period};
use callconsent_core::policy;

use super::html::esc;

pub fn render(cfg: &Config, fr: bool) -> String {
    let t = |en: &'static str, f: &'static str| if fr { f } else { en };
    // French sets a space before a colon; English does not.
    let colon = if fr { " : " } else { ": " };
    let unset = |key: &str| {
        format!("<em>{} [general] {key}</em>", t("not set: give", "non renseigné : indiquer"))
    };
    let g = &cfg.general;
    let a = &cfg.access;
    let mut rows = vec![];
    rows.push((
        t("Controller", "Responsable du traitement"),
        g.controller.as_deref().map(esc).unwrap_or_else(|| unset("controller")),
    ));
    rows.push((
        t("Data protection officer", "Délégué à la protection des données"),
        g.dpo_contact.as_deref().map(esc).unwrap_or_else(|| unset("dpo_contact")),
    ));
    rows.push((
        t("Purposes", "Finalités"),
        t("Training of agents and quality of service, on a share of calls drawn by a reproducible rule.", "Formation des conseillers et qualité du service, sur une part des appels tirée au sort selon une règle reproductible.").to_string(),
    ));
    let mut bases = vec![];
    let mut shares = vec![];
    let mut caps = vec![];
    for p in cfg.profiles.values() {
        bases.push(format!(
            "{}{colon}{}",
            esc(&p.name),
            match &p.legal_basis {
                Some(lb) => format!("{} ({})", t("legal obligation", "obligation légale"), esc(lb)),
                None => t(
                    "legitimate interest (Art. 6(1)(f)), with the caller told and free to refuse",
                    "intérêt légitime (art. 6.1.f), l'appelant étant informé et libre de refuser"
                )
                .to_string(),
            }
        ));
        shares.push(format!(
            "<span class=share>{}{colon}{} %</span>",
            esc(&p.name),
            p.record_share
        ));
        caps.push(format!(
            "{}{colon}{}",
            esc(&p.name),
            if p.max_per_agent > 0 {
                format!(
                    "{} {} {}",
                    p.max_per_agent,
                    t("recording(s) per agent per", "enregistrement(s) par conseiller et par"),
                    period(p.cap_period, fr)
                )
            } else {
                t("no cap", "pas de plafond").to_string()
            }
        ));
    }
    rows.push((t("Legal basis", "Base légale"), bases.join("<br>")));
    rows.push((t("Share of calls recorded", "Part des appels enregistrés"), shares.join("<br>")));
    rows.push((t("Caps per agent", "Plafonds par conseiller"), caps.join("<br>")));
    let bound = |n: u64| if n == 0 { t("none", "aucun").to_string() } else { n.to_string() };
    rows.push((
        t("Listening bounds", "Bornes d'écoute"),
        format!(
            "{} {}{colon}{} {}, {} {} ({})",
            t("per agent and", "par conseiller et par"),
            period(a.listen_period, fr),
            t("at least", "au moins"),
            bound(a.min_listens_per_agent),
            t("at most", "au plus"),
            bound(a.max_listens_per_agent),
            t("every listen is logged", "chaque écoute est consignée")
        ),
    ));
    rows.push((
        t("Retention", "Durée de conservation"),
        format!(
            "{} {}; {} {} {}",
            g.retention_days,
            t(
                "days for recordings, then deleted automatically",
                "jours pour les enregistrements, puis suppression automatique"
            ),
            t("audit log:", "journal d'audit :"),
            g.audit_retention_days,
            t("days", "jours")
        ),
    ));
    let people: Vec<String> =
        a.people.iter().map(|p| format!("{} ({})", esc(&p.name), esc(p.role.as_str()))).collect();
    let recipients = if g.encrypt_to.is_empty() {
        t(
            "recordings are NOT encrypted at rest ([general] encrypt_to is not set, R11)",
            "les enregistrements ne sont PAS chiffrés ([general] encrypt_to absent, R11)",
        )
        .to_string()
    } else {
        format!(
            "{} {}",
            t("recordings encrypted to:", "enregistrements chiffrés pour :"),
            g.encrypt_to
                .iter()
                .map(|r| format!("<code>{}</code>", esc(&policy::recipient_fingerprint(r))))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    rows.push((
        t("Recipients", "Destinataires"),
        format!(
            "{recipients}<br>{} {}",
            t("People who may listen:", "Personnes habilitées à écouter :"),
            if people.is_empty() { t("none", "aucune").to_string() } else { people.join(", ") }
        ),
    ));
    rows.push((
        t("Rights", "Droits"),
        t(
            "Callers: told before any recording, may refuse during the notice or at any moment (the recording is stopped and deleted); access, erasure and objection by their number, served by the DPO (Art. 15, 17, 21). Agents: told by a tone, may pause or delete, may see everything recorded about them (R8). Complaints: the supervisory authority.",
            "Appelants : informés avant tout enregistrement, peuvent refuser pendant l'annonce ou à tout moment (l'enregistrement est arrêté et supprimé) ; accès, effacement et opposition par leur numéro, auprès du DPO (art. 15, 17, 21). Conseillers : avertis par un signal, peuvent suspendre ou supprimer, et voir tout ce qui est consigné à leur sujet (R8). Réclamation : l'autorité de contrôle.",
        )
        .to_string(),
    ));
    let table: String =
        rows.iter().map(|(k, v)| format!("<tr><th>{k}</th><td>{v}</td></tr>")).collect();
    let text: String = describe::describe(cfg, if fr { "fr" } else { "en" })
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("<p>{}</p>", esc(l)))
        .collect();
    format!(
        "<div class=record><p class=noprint><a href=\"/record?lang={}\">{}</a> · {}</p><h1>{}</h1><table id=record>{table}</table><h2>{}</h2>{text}<p class=note>{} {}</p></div>",
        if fr { "en" } else { "fr" },
        t("Français", "English"),
        t("Print this page for the works council: the navigation is left out.", "Imprimez cette page pour le CSE : la navigation n'est pas imprimée."),
        t("Record of processing: call recording", "Registre des traitements : enregistrement des appels"),
        t("Description for the staff notice", "Description pour l'information du personnel"),
        t("Generated from the live configuration on", "Généré à partir de la configuration en vigueur le"),
        esc(&callconsent_runtime::audit::now_rfc3339())
    )
}
