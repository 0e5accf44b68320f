//! The configuration the DPO tool and the console read (issue 22): Asterisk's
//! `callconsent.conf` or FreeSWITCH's `callconsent.conf.xml`, turned into the same entries the
//! modules hand the core, so `describe`, `listen`, `subject`, `console`... read either PBX's file.
//!
//! FreeSWITCH's file is read as FreeSWITCH reads it: `$${name}` is replaced by the value that
//! `vars.xml` sets (`<X-PRE-PROCESS cmd="set" data="name=value"/>`; unset: empty, as FreeSWITCH's
//! preprocessor does); `<settings>` is `[general]`, `<access>` is `[access]`, each
//! `<profiles><profile name="...">` a profile; each `<param name value/>` a key, with its line.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use callconsent_core::config::{self, Config, Defaults, Entry};

/// Asterisk's file, the default when it exists.
pub const ASTERISK_CONFIG: &str = "/etc/asterisk/callconsent.conf";
/// FreeSWITCH's file (Debian's FreeSWITCH packages), the default when Asterisk's does not exist.
pub const FREESWITCH_CONFIG: &str = "/etc/freeswitch/autoload_configs/callconsent.conf.xml";

/// Which file `--config` means: the one given, or for the default the one that exists.
pub fn resolve(path: &str) -> String {
    if path == ASTERISK_CONFIG && !Path::new(path).exists() && Path::new(FREESWITCH_CONFIG).exists()
    {
        return FREESWITCH_CONFIG.to_string();
    }
    path.to_string()
}

/// Whether a file is FreeSWITCH's XML (by its name, or its first character).
pub fn is_xml(path: &str, text: &str) -> bool {
    path.ends_with(".xml") || text.trim_start().starts_with('<')
}

/// Reads and checks the configuration at `path` (either syntax).
pub fn load(path: &str) -> Result<Config, String> {
    let path = resolve(path);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: cannot read: {e}"))?;
    let (entries, defaults) = if is_xml(&path, &text) {
        let vars = vars_for(Path::new(&path));
        (entries_from_xml(&text, &path, &vars)?, freeswitch_defaults())
    } else {
        (config::entries_from_text(&text, &path), asterisk_defaults())
    };
    config::parse(&entries, &defaults, &|_| true).map_err(|e| e.to_string())
}

/// Where Debian's Asterisk keeps the module's files when the configuration does not say.
pub fn asterisk_defaults() -> Defaults {
    Defaults {
        spool_dir: "/var/spool/asterisk/callconsent".into(),
        audit_log: "/var/log/asterisk/callconsent/audit.jsonl".into(),
    }
}

/// Where Debian's FreeSWITCH keeps them (its recordings and log directories).
pub fn freeswitch_defaults() -> Defaults {
    Defaults {
        spool_dir: "/var/lib/freeswitch/recordings/callconsent".into(),
        audit_log: "/var/log/freeswitch/callconsent/audit.jsonl".into(),
    }
}

/// The `vars.xml` of the configuration tree a file belongs to: beside it, or one directory up
/// (`conf/autoload_configs/x.xml` -> `conf/vars.xml`). None found: no variables.
fn vars_for(file: &Path) -> HashMap<String, String> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let candidates: Vec<PathBuf> = vec![dir.join("vars.xml"), dir.join("../vars.xml")];
    candidates
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| vars_from_xml(&t))
        .unwrap_or_default()
}

/// The variables `vars.xml` sets, in order (a later one may use an earlier one).
pub fn vars_from_xml(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    // vars.xml is a fragment (several top-level elements, comments): wrap it.
    let wrapped = format!("<vars>{}</vars>", strip_declaration(text));
    let Ok(doc) = roxmltree::Document::parse(&wrapped) else { return vars };
    for n in doc.descendants().filter(|n| n.has_tag_name("X-PRE-PROCESS")) {
        if n.attribute("cmd") != Some("set") {
            continue;
        }
        if let Some((k, v)) = n.attribute("data").and_then(|d| d.split_once('=')) {
            let v = expand(v, &vars);
            vars.insert(k.trim().to_string(), v);
        }
    }
    vars
}

fn strip_declaration(text: &str) -> &str {
    match text.trim_start().strip_prefix("<?xml") {
        Some(rest) => rest.split_once("?>").map_or("", |(_, r)| r),
        None => text,
    }
}

/// `$${name}` replaced by its value (empty when unset, as FreeSWITCH's preprocessor does).
fn expand(text: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("$${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 3..];
        match after.find('}') {
            Some(j) => {
                out.push_str(vars.get(&after[..j]).map_or("", String::as_str));
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The entries of FreeSWITCH's `callconsent.conf.xml`, each with its file and line.
pub fn entries_from_xml(
    text: &str,
    file: &str,
    vars: &HashMap<String, String>,
) -> Result<Vec<Entry>, String> {
    // Expanded line by line, so every line keeps its number.
    let expanded: String = text.lines().map(|l| expand(l, vars) + "\n").collect();
    let doc = roxmltree::Document::parse(&expanded).map_err(|e| format!("{file}: {e}"))?;
    let cfg = doc
        .descendants()
        .find(|n| {
            n.has_tag_name("configuration") && n.attribute("name") == Some("callconsent.conf")
        })
        .ok_or_else(|| {
            format!("{file}: no <configuration name=\"callconsent.conf\"> in the file")
        })?;
    let line = |n: roxmltree::Node| doc.text_pos_at(n.range().start).row;
    let mut out = vec![];
    let section = |category: &str, parent: roxmltree::Node, out: &mut Vec<Entry>| {
        out.push(Entry {
            category: category.to_string(),
            name: None,
            value: String::new(),
            file: file.into(),
            line: line(parent),
        });
        for p in parent.children().filter(|c| c.has_tag_name("param")) {
            out.push(Entry {
                category: category.to_string(),
                name: Some(p.attribute("name").unwrap_or("").to_string()),
                value: p.attribute("value").unwrap_or("").to_string(),
                file: file.into(),
                line: line(p),
            });
        }
    };
    for child in cfg.children().filter(|c| c.is_element()) {
        match child.tag_name().name() {
            "settings" => section("general", child, &mut out),
            "access" => section("access", child, &mut out),
            "profiles" => {
                for p in child.children().filter(|c| c.has_tag_name("profile")) {
                    let name = p.attribute("name").unwrap_or("");
                    if name.is_empty() {
                        return Err(format!(
                            "{file}:{}: a <profile> has no name: give it name=\"...\"",
                            line(p)
                        ));
                    }
                    section(name, p, &mut out);
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0"?>
<configuration name="callconsent.conf" description="callconsent">
  <settings>
    <param name="audit_log" value="$${log_dir}/callconsent/audit.jsonl"/>
    <param name="encrypt_to" value="$${dpo_key}"/>
  </settings>
  <access>
    <param name="dpo" value="dana"/>
  </access>
  <profiles>
    <profile name="inbound">
      <param name="notice" value="$${sounds_dir}/notice.wav"/>
      <param name="record_share" value="20"/>
    </profile>
  </profiles>
</configuration>
"#;

    fn vars() -> HashMap<String, String> {
        vars_from_xml(
            r#"<include>
  <!-- where FreeSWITCH keeps things -->
  <X-PRE-PROCESS cmd="set" data="base=/opt/fs"/>
  <X-PRE-PROCESS cmd="set" data="log_dir=$${base}/log"/>
  <X-PRE-PROCESS cmd="exec-set" data="hostname=hostname"/>
  <X-PRE-PROCESS cmd="set" data="sounds_dir=/opt/fs/sounds"/>
</include>"#,
        )
    }

    #[test]
    fn vars_are_read_in_order_and_only_set_ones() {
        let v = vars();
        assert_eq!(v.get("log_dir").map(String::as_str), Some("/opt/fs/log"));
        assert!(!v.contains_key("hostname"), "exec-set is not run");
    }

    #[test]
    fn the_xml_gives_the_entries_asterisk_syntax_gives_with_their_lines() {
        let e = entries_from_xml(XML, "cc.xml", &vars()).expect("parsed");
        let find = |cat: &str, key: &str| {
            e.iter().find(|x| x.category == cat && x.name.as_deref() == Some(key)).cloned()
        };
        let audit = find("general", "audit_log").expect("audit_log");
        assert_eq!((audit.value.as_str(), audit.line), ("/opt/fs/log/callconsent/audit.jsonl", 4));
        assert_eq!(
            find("general", "encrypt_to").map(|x| x.value),
            Some(String::new()),
            "unset: empty"
        );
        assert_eq!(find("access", "dpo").map(|x| x.value), Some("dana".into()));
        let notice = find("inbound", "notice").expect("notice");
        assert_eq!((notice.value.as_str(), notice.line), ("/opt/fs/sounds/notice.wav", 12));
        // The same configuration in Asterisk's syntax parses to the same entries' values.
        let text = "[general]\naudit_log = /opt/fs/log/callconsent/audit.jsonl\nencrypt_to =\n[access]\ndpo = dana\n\
                    [inbound]\nnotice = /opt/fs/sounds/notice.wav\nrecord_share = 20\n";
        let a = config::entries_from_text(text, "cc.conf");
        let kv = |v: &[Entry]| {
            v.iter()
                .map(|x| (x.category.clone(), x.name.clone(), x.value.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(kv(&e), kv(&a));
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let bad = XML.replace("<profile name=\"inbound\">", "<profile>");
        let err = entries_from_xml(&bad, "cc.xml", &vars()).unwrap_err();
        assert_eq!(err, "cc.xml:11: a <profile> has no name: give it name=\"...\"");
        let err =
            entries_from_xml("<configuration name=\"other\"/>", "cc.xml", &vars()).unwrap_err();
        assert!(err.contains("no <configuration name=\"callconsent.conf\">"), "{err}");
        let err = entries_from_xml("<configuration", "cc.xml", &vars()).unwrap_err();
        assert!(err.starts_with("cc.xml: "), "{err}");
        // A bad value is refused by the core's rules with the XML file's line.
        let dir = std::env::temp_dir().join(format!("cc-conf-xml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a directory");
        let f = dir.join("callconsent.conf.xml");
        std::fs::write(&f, XML.replace("value=\"20\"", "value=\"200\"")).expect("write");
        let err = load(f.to_str().unwrap_or("")).unwrap_err();
        assert!(err.contains("callconsent.conf.xml:13") && err.contains("record_share"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
