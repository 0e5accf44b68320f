use std::path::PathBuf;

use super::*;

fn entries(text: &str) -> Vec<Entry> {
    let mut out = vec![];
    let mut cat = String::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') {
            continue;
        }
        if let Some(c) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            cat = c.to_string();
            out.push(Entry {
                category: cat.clone(),
                name: None,
                value: String::new(),
                file: "/etc/asterisk/callconsent.conf".into(),
                line: 0,
            });
        } else if let Some((k, v)) = line.split_once('=') {
            let v = v.trim_start_matches('>');
            out.push(Entry {
                category: cat.clone(),
                name: Some(k.trim().into()),
                value: v.trim().into(),
                file: "/etc/asterisk/callconsent.conf".into(),
                line: i as u32 + 1,
            });
        }
    }
    out
}

fn defaults() -> Defaults {
    Defaults {
        spool_dir: PathBuf::from("/var/spool/asterisk/callconsent"),
        audit_log: PathBuf::from("/var/log/asterisk/callconsent/audit.jsonl"),
    }
}

const GOOD: &str = "[general]\n\n[sales]\nnotice = callconsent/notice\nfull_notice = callconsent/full-notice\noptout_confirm = callconsent/optout-confirm\nrecord_share = 20\n";

fn parse_text(text: &str) -> Result<Config, ConfigError> {
    parse(&entries(text), &defaults(), &|s| !s.contains("missing"))
}

#[test]
fn paths_that_would_break_the_recorder_options_are_refused() {
    for bad in ["/var/spool/a,b", "/var/spool/a)b", "/var/spool/a b", "/var/spool/a|b"] {
        let e =
            parse_text(&GOOD.replace("[general]\n", &format!("[general]\nspool_dir = {bad}\n")))
                .unwrap_err()
                .to_string();
        assert!(e.contains("spool_dir: may hold only"), "{bad}: {e}");
    }
    assert!(parse_text(
        &GOOD.replace("[general]\n", "[general]\nspool_dir = /var/spool/asterisk/call-consent_2\n")
    )
    .is_ok());
}

#[test]
fn good_file_and_defaults() {
    let c = parse_text(GOOD).expect("good");
    assert_eq!(c.general.spool_dir, PathBuf::from("/var/spool/asterisk/callconsent"));
    let p = &c.profiles["sales"];
    assert_eq!((p.optout_key, p.info_key, p.record_share), ('9', '0', 20));
    assert_eq!(
        (p.pause_code.as_str(), p.resume_code.as_str(), p.delete_code.as_str()),
        ("*1", "*2", "*3")
    );
    assert_eq!(p.pause_max_seconds, 0, "auto-resume is off by default");
    assert!(!p.record_legs);
}

fn err(text: &str) -> String {
    parse_text(text).expect_err("must be refused").to_string()
}

#[test]
fn unknown_key_names_file_line_key() {
    let e = err(&format!("{GOOD}colour = blue\n"));
    assert!(e.starts_with("/etc/asterisk/callconsent.conf:8: [sales] colour: unknown key"), "{e}");
    let e = err("[general]\nspool = /x\n");
    assert!(e.starts_with("/etc/asterisk/callconsent.conf:2: [general] spool: unknown key"), "{e}");
}

#[test]
fn keys_and_codes() {
    assert!(err(&GOOD.replace("record_share", "optout_key = 99\nrecord_share"))
        .contains("[sales] optout_key: must be one DTMF key"));
    assert!(err(&GOOD.replace("record_share", "info_key = 9\nrecord_share"))
        .contains("info_key: must differ from optout_key"));
    assert!(err(&GOOD.replace("record_share", "pause_code = 1\nrecord_share"))
        .contains("pause_code: must be 2 to 8 DTMF keys"));
    assert!(err(&GOOD.replace("record_share", "resume_code = *12\nrecord_share"))
        .contains("no code may begin another"));
    assert!(err(&GOOD.replace("record_share", "start_tone = loud\nrecord_share"))
        .contains("start_tone: must be tones"));
    assert_eq!(
        parse_text(&GOOD.replace("record_share", "start_tone = off\nrecord_share"))
            .unwrap()
            .profiles["sales"]
            .start_tone,
        None
    );
    assert!(err(&format!("{GOOD}notice = again\n")).contains("notice: the key is given twice"));
}

#[test]
fn share_rules() {
    assert!(err(&GOOD.replace("= 20", "= 150"))
        .contains("record_share: must be a whole percentage from 0 to 100"));
    assert!(err(&GOOD.replace("= 20", "= 50")).contains("50 % is more than 30 %: set legal_basis"));
    let ok = parse_text(&GOOD.replace("= 20", "= 100\nlegal_basis = Code X art. 1")).unwrap();
    assert_eq!(ok.profiles["sales"].legal_basis.as_deref(), Some("Code X art. 1"));
    assert!(err(&GOOD.replace("record_share = 20\n", "")).contains("record_share: is required"));
}

#[test]
fn missing_sound_and_paths() {
    assert!(err(&GOOD.replace("callconsent/full-notice", "missing-one"))
        .contains("[sales] full_notice: sound \"missing-one\" not found"));
    assert!(err(&GOOD.replace("[general]\n", "[general]\nspool_dir = relative/dir\n"))
        .contains("spool_dir: must be an absolute path"));
    assert!(err(&GOOD.replace("[general]\n", "[general]\naudit_log = /var/log/../etc/x\n"))
        .contains("audit_log: must be an absolute path without '..'"));
    assert!(err(&GOOD.replace("[sales]", "[sa les]")).contains("a profile name uses only"));
}

#[test]
fn policy_keys() {
    let c = parse_text(&format!("{GOOD}never_record = caller:_0145XXXXXX, agent:PJSIP/rep-*\nnever_record = caller:+33612345678\nmax_per_agent = 5\ncap_period = month\nprivate_prefix = 8\n")).unwrap();
    let p = &c.profiles["sales"];
    assert_eq!(p.never_record.len(), 3, "repeatable and comma-separated");
    assert_eq!((p.max_per_agent, p.cap_period), (5, crate::policy::CapPeriod::Month));
    assert_eq!(p.private_prefix.as_deref(), Some("8"));
    assert!(err(&format!("{GOOD}cap_period = year\n"))
        .contains("cap_period: must be day, week, month or quarter"));
    assert!(err(&format!("{GOOD}never_record = 0145\n"))
        .contains("never_record: \"0145\" must start with caller: or agent:"));
}

#[test]
fn retention_rules() {
    assert_eq!(parse_text(GOOD).unwrap().general.retention_days, 90);
    assert_eq!(parse_text(GOOD).unwrap().general.audit_retention_days, 365);
    assert!(err(&GOOD.replace("[general]\n", "[general]\nretention_days = 400\n"))
        .contains("retention_days: must be a whole number from 1 to 183 (R7"));
    assert_eq!(
        parse_text(&GOOD.replace("[general]\n", "[general]\nretention_days = 183\n"))
            .unwrap()
            .general
            .retention_days,
        183
    );
}

#[test]
fn the_dpo_tool_reads_the_same_file() {
    let e = entries_from_text(
        "[general]\nretention_days => 30 ; a month\n[sales]\nnotice = n\n",
        "x.conf",
    );
    assert_eq!(e.len(), 4);
    assert_eq!(
        (e[1].name.as_deref(), e[1].value.as_str(), e[1].line),
        (Some("retention_days"), "30", 2)
    );
}

const DPO_KEY: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

#[test]
fn encryption_recipients_are_age_keys_and_need_opus_archives() {
    let c = parse_text(&GOOD.replace(
        "[general]\n",
        &format!("[general]\nencrypt_to = {DPO_KEY}\nencrypt_to = {DPO_KEY}\n"),
    ))
    .expect("good");
    assert_eq!(c.general.encrypt_to, vec![DPO_KEY.to_string()], "repeated, kept once");
    let e = err(&GOOD.replace("[general]\n", "[general]\nencrypt_to = age1notakey\n"));
    assert!(
        e.contains(":2: [general] encrypt_to: must be age X25519 recipients")
            && e.contains("age1notakey"),
        "{e}"
    );
    let e = err(&GOOD
        .replace("[general]\n", &format!("[general]\nencrypt_to = {DPO_KEY}\narchive = wav\n")));
    assert!(e.contains("encrypt_to: needs archive = opus"), "{e}");
    assert!(parse_text(GOOD).unwrap().general.encrypt_to.is_empty());
    let e = err(&GOOD.replace("[general]\n", "[general]\ndefault_country = France\n"));
    assert!(e.contains("default_country: must be a two-letter ISO 3166 country code"), "{e}");
    assert_eq!(
        parse_text(&GOOD.replace("[general]\n", "[general]\ndefault_country = fr\n"))
            .unwrap()
            .general
            .default_country
            .as_deref(),
        Some("FR")
    );
}

#[test]
fn the_access_section_names_people_roles_and_bounds() {
    let text = format!(
        "{GOOD}\n[access]\nlisten_period = week\nmax_listens_per_agent = 3\nmin_listens_per_agent = 1\ndpo = claire\n\
         coach = marc: PJSIP/anna, PJSIP/bob\nagent = anna: PJSIP/anna\n"
    );
    let c = parse_text(&text).expect("good");
    let a = &c.access;
    assert_eq!(
        (a.listen_period, a.max_listens_per_agent, a.min_listens_per_agent),
        (CapPeriod::Week, 3, 1)
    );
    assert_eq!(
        a.access_log,
        PathBuf::from("/var/log/asterisk/callconsent/access.jsonl"),
        "beside the audit log"
    );
    assert_eq!(
        a.person("marc").map(|p| (p.role, p.agents.clone())),
        Some((Role::Coach, vec!["PJSIP/anna".to_string(), "PJSIP/bob".to_string()]))
    );
    assert_eq!(a.person("claire").map(|p| p.role), Some(Role::Dpo));
    assert_eq!(a.person("anna").map(|p| p.agents.clone()), Some(vec!["PJSIP/anna".to_string()]));
    assert!(!c.profiles.contains_key("access"), "[access] is no profile");
    for (bad, want) in [
        ("coach = marc\n", "coach: must be NAME: AGENT"),
        ("agent = anna: PJSIP/anna, PJSIP/bob\n", "agent: must be NAME: AGENT"),
        ("dpo = claire: PJSIP/x\n", "dpo: is one name"),
        ("dpo = marc\n", "\"marc\" is listed twice"),
        ("listen_period = year\n", "listen_period: must be day, week, month or quarter"),
        (
            "min_listens_per_agent = 9\n",
            "min_listens_per_agent: must not exceed max_listens_per_agent (3)",
        ),
        ("colour = blue\n", "unknown key"),
        ("notice = callconsent/notice\n", "no profile may be called access"),
    ] {
        let key = bad.split(' ').next().unwrap_or("");
        let base: String = text
            .lines()
            .filter(|l| {
                !(l.starts_with(key) && (key.starts_with("min_") || key.starts_with("listen_")))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let e = err(&format!("{base}{bad}"));
        assert!(e.contains("[access]") && e.contains(want), "{bad}: {e}");
    }
    assert!(parse_text(GOOD).unwrap().access.people.is_empty(), "no [access]: nobody may listen");
}

#[test]
fn the_shared_store_keys_are_checked() {
    let with = |general: &str, profile: &str| {
        parse_text(
            &GOOD
                .replace("[general]\n", &format!("[general]\n{general}"))
                .replace("record_share = 20\n", &format!("record_share = 20\n{profile}")),
        )
    };
    let c = with("store = postgresql://cc@db.example/cc?sslmode=require\nstore_password_file = /etc/asterisk/pw\nnode = pbx-1\n", "store_unavailable = local\nstore_local_seconds = 60\n").expect("good");
    assert_eq!(c.general.store.as_deref(), Some("postgresql://cc@db.example/cc?sslmode=require"));
    assert_eq!(
        (
            c.general.node.as_deref(),
            c.profiles["sales"].store_unavailable,
            c.profiles["sales"].store_local_seconds
        ),
        (Some("pbx-1"), StoreUnavailable::Local, 60)
    );
    let d = parse_text(GOOD).expect("good");
    assert_eq!(
        (d.general.store.as_deref(), d.profiles["sales"].store_unavailable),
        (None, StoreUnavailable::NoRecord),
        "local and no_record by default"
    );
    let e = with("store = postgresql://cc:secret@db.example/cc\n", "").unwrap_err().to_string();
    assert!(e.contains("store: must not hold a password") && !e.contains("secret@"), "{e}");
    let e = with("store = mysql://db/cc\n", "").unwrap_err().to_string();
    assert!(e.contains("must be local or a postgresql:// URL"), "{e}");
    assert!(with("", "store_unavailable = maybe\n")
        .unwrap_err()
        .to_string()
        .contains("must be no_record (privacy wins) or local"));
    assert!(with("node = a b\n", "").unwrap_err().to_string().contains("node: must be 1 to 63"));
    assert!(with("store = local\n", "").expect("local").general.store.is_none());
}

#[test]
fn console_and_passwords_are_checked() {
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    let text = format!("{GOOD}[access]\ndpo = claire\ncoach = marc: PJSIP/anna\npassword = claire: {hash}\n[console]\nlisten = 127.0.0.1:9000\nlockout_seconds = 60\n");
    let c = parse_text(&text).expect("good");
    assert_eq!(c.access.person("claire").and_then(|p| p.password_hash.as_deref()), Some(hash));
    assert_eq!(c.access.person("marc").and_then(|p| p.password_hash.as_deref()), None);
    assert_eq!(c.access.people.len(), 2, "a password line is no person");
    assert_eq!(
        (c.console.listen.as_str(), c.console.lockout_seconds, c.console.max_failed_signins),
        ("127.0.0.1:9000", 60, 5)
    );
    assert!(err(&text.replace("listen = 127.0.0.1:9000", "listen = 0.0.0.0:9000"))
        .contains("not a loopback address: set tls_certificate"));
    assert!(err(&text.replace("password = claire:", "password = nobody:"))
        .contains("\"nobody\" is not a person of [access]"));
    assert!(err(&text.replace(hash, "plaintext")).contains("argon2 PHC string"));
}
