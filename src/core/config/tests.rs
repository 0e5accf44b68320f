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
            out.push(Entry { category: cat.clone(), name: None, value: String::new(), file: "/etc/asterisk/callconsent.conf".into(), line: 0 });
        } else if let Some((k, v)) = line.split_once('=') {
            let v = v.trim_start_matches('>');
            out.push(Entry { category: cat.clone(), name: Some(k.trim().into()), value: v.trim().into(), file: "/etc/asterisk/callconsent.conf".into(), line: i as u32 + 1 });
        }
    }
    out
}

fn defaults() -> Defaults {
    Defaults { spool_dir: PathBuf::from("/var/spool/asterisk/callconsent"), audit_log: PathBuf::from("/var/log/asterisk/callconsent/audit.jsonl") }
}

const GOOD: &str = "[general]\n\n[sales]\nnotice = callconsent/notice\nfull_notice = callconsent/full-notice\noptout_confirm = callconsent/optout-confirm\nrecord_share = 20\n";

fn parse_text(text: &str) -> Result<Config, ConfigError> {
    parse(&entries(text), &defaults(), &|s| !s.contains("missing"))
}

#[test]
fn good_file_and_defaults() {
    let c = parse_text(GOOD).expect("good");
    assert_eq!(c.general.spool_dir, PathBuf::from("/var/spool/asterisk/callconsent"));
    let p = &c.profiles["sales"];
    assert_eq!((p.optout_key, p.info_key, p.record_share), ('9', '0', 20));
    assert_eq!((p.pause_code.as_str(), p.resume_code.as_str(), p.delete_code.as_str()), ("*1", "*2", "*3"));
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
    assert!(err(&GOOD.replace("record_share", "optout_key = 99\nrecord_share")).contains("[sales] optout_key: must be one DTMF key"));
    assert!(err(&GOOD.replace("record_share", "info_key = 9\nrecord_share")).contains("info_key: must differ from optout_key"));
    assert!(err(&GOOD.replace("record_share", "pause_code = 1\nrecord_share")).contains("pause_code: must be 2 to 8 DTMF keys"));
    assert!(err(&GOOD.replace("record_share", "resume_code = *12\nrecord_share")).contains("no code may begin another"));
    assert!(err(&GOOD.replace("record_share", "start_tone = loud\nrecord_share")).contains("start_tone: must be tones"));
    assert_eq!(parse_text(&GOOD.replace("record_share", "start_tone = off\nrecord_share")).unwrap().profiles["sales"].start_tone, None);
    assert!(err(&format!("{GOOD}notice = again\n")).contains("notice: the key is given twice"));
}

#[test]
fn share_rules() {
    assert!(err(&GOOD.replace("= 20", "= 150")).contains("record_share: must be a whole percentage from 0 to 100"));
    assert!(err(&GOOD.replace("= 20", "= 50")).contains("50 % is more than 30 %: set legal_basis"));
    let ok = parse_text(&GOOD.replace("= 20", "= 100\nlegal_basis = Code X art. 1")).unwrap();
    assert_eq!(ok.profiles["sales"].legal_basis.as_deref(), Some("Code X art. 1"));
    assert!(err(&GOOD.replace("record_share = 20\n", "")).contains("record_share: is required"));
}

#[test]
fn missing_sound_and_paths() {
    assert!(err(&GOOD.replace("callconsent/full-notice", "missing-one")).contains("[sales] full_notice: sound \"missing-one\" not found"));
    assert!(err(&GOOD.replace("[general]\n", "[general]\nspool_dir = relative/dir\n")).contains("spool_dir: must be an absolute path"));
    assert!(err(&GOOD.replace("[general]\n", "[general]\naudit_log = /var/log/../etc/x\n")).contains("audit_log: must be an absolute path without '..'"));
    assert!(err(&GOOD.replace("[sales]", "[sa les]")).contains("a profile name uses only"));
}
