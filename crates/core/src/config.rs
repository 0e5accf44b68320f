//! `callconsent.conf`: the rules every key obeys, checked before anything is used.
//!
//! The host reads the file with its own config parser and hands over [`Entry`] values in file
//! order; this module turns them into a [`Config`] or one [`ConfigError`] naming file, line,
//! section, key and the rule broken.
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use super::policy::{CapPeriod, Exemption};

/// One line of the file as the host's parser saw it. `name == None` marks a section header.
#[derive(Debug, Clone)]
pub struct Entry {
    pub category: String,
    pub name: Option<String>,
    pub value: String,
    pub file: String,
    pub line: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: String,
    pub line: u32,
    pub section: String,
    pub key: String,
    pub rule: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: [{}] {}: {}", self.file, self.line, self.section, self.key, self.rule)
        } else {
            write!(f, "{}: [{}] {}: {}", self.file, self.section, self.key, self.rule)
        }
    }
}

/// Where things go when `[general]` does not say (from the host's own directories).
#[derive(Debug, Clone)]
pub struct Defaults {
    pub spool_dir: PathBuf,
    pub audit_log: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct General {
    pub spool_dir: PathBuf,
    pub audit_log: PathBuf,
    /// R7: kept recordings are deleted after this many days (at most 183, the CNIL's 6 months).
    pub retention_days: u64,
    /// Rotated audit files are deleted after this many days.
    pub audit_retention_days: u64,
    /// Kept recordings are archived as Ogg Opus (`opus`, the default) or left as WAV (`wav`).
    pub archive_opus: bool,
    pub opus_bitrate: u64,
    pub encoder_threads: u64,
    /// R11: kept archives are encrypted to these age X25519 recipients (`age1...`); the PBX holds
    /// no identity and cannot read them. Empty: archives stay plain Ogg Opus (warned at start).
    pub encrypt_to: Vec<String>,
    /// ISO 3166 country (`FR`) of national numbers, so `0612...` and `+33612...` hash alike.
    pub default_country: Option<String>,
    /// Issue 14: `postgresql://...` shares caps, listen counts, the audit trail and callers'
    /// requests between nodes. None: the embedded local store (caps.redb), as on one node.
    pub store: Option<String>,
    /// The file holding the database password (never in the URL, the audit log or CLI output).
    pub store_password_file: Option<PathBuf>,
    /// The CA certificate (PEM) the database's TLS certificate must chain to.
    pub store_ca: Option<PathBuf>,
    /// This node's name in the shared store (default: the host name).
    pub node: Option<String>,
    /// R15: who is responsible for the processing, and how to reach the DPO (processing record).
    pub controller: Option<String>,
    pub dpo_contact: Option<String>,
}

impl General {
    /// `[general]` with nothing set: the host's directories and every key's default.
    pub fn defaults(d: &Defaults) -> General {
        General {
            spool_dir: d.spool_dir.clone(),
            audit_log: d.audit_log.clone(),
            retention_days: 90,
            audit_retention_days: 365,
            archive_opus: true,
            opus_bitrate: 16000,
            encoder_threads: 1,
            encrypt_to: Vec::new(),
            default_country: None,
            store: None,
            store_password_file: None,
            store_ca: None,
            node: None,
            controller: None,
            dpo_contact: None,
        }
    }
}

/// What a profile's calls do when the shared store cannot be reached (issue 14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreUnavailable {
    /// Privacy wins: the call is not recorded (the default).
    NoRecord,
    /// Caps are counted on this node only, for at most `store_local_seconds` of outage.
    Local,
}

impl StoreUnavailable {
    pub fn as_str(self) -> &'static str {
        match self {
            StoreUnavailable::NoRecord => "no_record",
            StoreUnavailable::Local => "local",
        }
    }
}

/// The DPO's web console (issue 13): `[console]`, read by `callconsent console` only.
#[derive(Debug, Clone, PartialEq)]
pub struct Console {
    /// `ADDR:PORT` to listen on; plain HTTP only on loopback, HTTPS with a certificate.
    pub listen: String,
    pub tls_certificate: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Failed sign-ins of one person before the account is locked for `lockout_seconds`.
    pub max_failed_signins: u64,
    pub lockout_seconds: u64,
    /// A session ends after this many minutes without a request.
    pub session_minutes: u64,
}

impl Default for Console {
    fn default() -> Console {
        Console {
            listen: "127.0.0.1:8470".into(),
            tls_certificate: None,
            tls_key: None,
            max_failed_signins: 5,
            lockout_seconds: 300,
            session_minutes: 30,
        }
    }
}

/// Who may reach recordings and how much listening is allowed (R6, R11): the `[access]` section,
/// read by the DPO's tool (the module only checks it).
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    /// The hash-chained log of every listen, export and erasure (the tool writes it).
    pub access_log: PathBuf,
    pub listen_period: CapPeriod,
    /// Listens of one agent's calls per period, whoever listens (0: no maximum).
    pub max_listens_per_agent: u64,
    /// Listens of one agent's calls each period should reach (coaching actually done).
    pub min_listens_per_agent: u64,
    pub people: Vec<Person>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every recording (R11), and the callers' requests.
    Dpo,
    /// The recordings of the agents of their team.
    Coach,
    /// The recordings of their own calls.
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Dpo => "dpo",
            Role::Coach => "coach",
            Role::Agent => "agent",
        }
    }
}

/// A person of `[access]`: `dpo = NAME`, `coach = NAME: AGENT[, AGENT...]`, `agent = NAME: AGENT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub name: String,
    pub role: Role,
    /// The agents (as the audit log names them, e.g. PJSIP/anna) whose calls this person may
    /// reach: a coach's team, an agent's own line; empty for the DPO (everything).
    pub agents: Vec<String>,
    /// The console's sign-in: `password = NAME: $argon2id$...` (a PHC string). None: no sign-in.
    pub password_hash: Option<String>,
}

impl Access {
    pub fn person(&self, name: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.name == name)
    }
}

pub const RETENTION_DAYS_MAX: u64 = 183;

/// A profile: what one kind of call hears, and how its recording is controlled.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub notice: String,
    pub full_notice: String,
    pub optout_key: char,
    pub info_key: char,
    pub optout_confirm: String,
    pub record_share: u8,
    pub legal_basis: Option<String>,
    pub record_legs: bool,
    pub pause_code: String,
    pub resume_code: String,
    pub delete_code: String,
    pub code_timeout_ms: u64,
    pub pause_max_seconds: u64,
    pub start_tone: Option<String>,
    pub optout_tone: Option<String>,
    pub pause_tone: Option<String>,
    pub resume_tone: Option<String>,
    pub delete_tone: Option<String>,
    pub warn_tone: Option<String>,
    /// R12: callers and agents never recorded, whatever the draw.
    pub never_record: Vec<Exemption>,
    /// A dialled number starting with this is a private call: never recorded.
    pub private_prefix: Option<String>,
    /// R6: recordings per agent and period (0: no cap).
    pub max_per_agent: u64,
    pub cap_period: CapPeriod,
    /// Secure card entry (PCI DSS), available when `secure_gosub` is set: the agent's code.
    pub secure_code: String,
    /// The caller's key that ends the entry (never part of the digits).
    pub secure_end_key: char,
    pub secure_max_digits: u64,
    pub secure_timeout_ms: u64,
    /// What the agent hears for each key the caller types (never the DTMF itself).
    pub secure_mask_tone: Option<String>,
    pub secure_start_tone: Option<String>,
    pub secure_end_tone: Option<String>,
    /// `context,exten,priority` run on the caller's channel when an entry ends, where
    /// `CALLCONSENT(secure_digits)` returns the digits once. None: no secure entry.
    pub secure_gosub: Option<String>,
    /// When `[general] store` cannot be reached before a recording starts (issue 14).
    pub store_unavailable: StoreUnavailable,
    /// With `store_unavailable = local`: how long an outage may last before calls are no
    /// longer recorded (seconds).
    pub store_local_seconds: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub general: General,
    pub access: Access,
    pub console: Console,
    pub profiles: BTreeMap<String, Arc<Profile>>,
}

/// The share of calls above which a profile must name the law that requires recording (R4:
/// 20-30 % is the call-centre norm, 50 % was judged excessive).
pub const SHARE_WITHOUT_LEGAL_BASIS_MAX: u8 = 30;

const GENERAL_KEYS: &[&str] = &[
    "spool_dir",
    "audit_log",
    "retention_days",
    "audit_retention_days",
    "archive",
    "opus_bitrate",
    "encoder_threads",
    "encrypt_to",
    "default_country",
    "store",
    "store_password_file",
    "store_ca",
    "node",
    "controller",
    "dpo_contact",
];
const ACCESS_KEYS: &[&str] = &[
    "access_log",
    "listen_period",
    "max_listens_per_agent",
    "min_listens_per_agent",
    "dpo",
    "coach",
    "agent",
    "password",
];
const CONSOLE_KEYS: &[&str] = &[
    "listen",
    "tls_certificate",
    "tls_key",
    "max_failed_signins",
    "lockout_seconds",
    "session_minutes",
];
/// Keys that may be repeated: their values are collected in order.
const LIST_KEYS: &[&str] = &["never_record", "encrypt_to", "dpo", "coach", "agent", "password"];
const PROFILE_KEYS: &[&str] = &[
    "notice",
    "full_notice",
    "optout_key",
    "info_key",
    "optout_confirm",
    "record_share",
    "legal_basis",
    "record_legs",
    "pause_code",
    "resume_code",
    "delete_code",
    "code_timeout_ms",
    "pause_max_seconds",
    "start_tone",
    "optout_tone",
    "pause_tone",
    "resume_tone",
    "delete_tone",
    "warn_tone",
    "never_record",
    "private_prefix",
    "max_per_agent",
    "cap_period",
    "secure_code",
    "secure_end_key",
    "secure_max_digits",
    "secure_timeout_ms",
    "secure_mask_tone",
    "secure_start_tone",
    "secure_end_tone",
    "secure_gosub",
    "store_unavailable",
    "store_local_seconds",
];

pub fn is_dtmf(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D')
}

/// Parses and checks the whole file. `sound_exists` asks the host whether a prompt exists.
pub fn parse(
    entries: &[Entry],
    defaults: &Defaults,
    sound_exists: &dyn Fn(&str) -> bool,
) -> Result<Config, ConfigError> {
    // (section, file, key -> (value, line), every (key, value, line) of the repeatable keys)
    type Section = (String, String, BTreeMap<String, (String, u32)>, Vec<(String, String, u32)>);
    let mut sections: Vec<Section> = Vec::new();
    let mut seen_sections = HashSet::new();
    for e in entries {
        let err = |key: &str, rule: String| ConfigError {
            file: e.file.clone(),
            line: e.line,
            section: e.category.clone(),
            key: key.to_string(),
            rule,
        };
        match &e.name {
            None => {
                if !seen_sections.insert(e.category.clone()) {
                    return Err(err("(section)", "a section may appear only once".into()));
                }
                sections.push((e.category.clone(), e.file.clone(), BTreeMap::new(), Vec::new()));
            }
            Some(name) => {
                let Some(section) = sections.last_mut() else {
                    return Err(err(name, "a key must be inside a section".into()));
                };
                let allowed = match e.category.as_str() {
                    "general" => GENERAL_KEYS,
                    "access" => ACCESS_KEYS,
                    "console" => CONSOLE_KEYS,
                    _ => PROFILE_KEYS,
                };
                if e.category == "access" && PROFILE_KEYS.contains(&name.as_str()) {
                    return Err(err(name, "[access] names who may reach recordings: no profile may be called access (rename the profile)".into()));
                }
                if e.category == "console" && PROFILE_KEYS.contains(&name.as_str()) {
                    return Err(err(name, "[console] configures the DPO's web console: no profile may be called console (rename the profile)".into()));
                }
                if !allowed.contains(&name.as_str()) {
                    return Err(err(
                        name,
                        format!("unknown key (known keys here: {})", allowed.join(", ")),
                    ));
                }
                if LIST_KEYS.contains(&name.as_str()) {
                    section.3.push((name.clone(), e.value.trim().to_string(), e.line));
                }
                if let Some(prev) = section.2.get_mut(name) {
                    // never_record, encrypt_to and the people of [access] may be repeated; every
                    // other key is given once.
                    if !LIST_KEYS.contains(&name.as_str()) {
                        return Err(err(name, "the key is given twice in this section".into()));
                    }
                    prev.0.push(',');
                    prev.0.push_str(e.value.trim());
                    continue;
                }
                section.2.insert(name.clone(), (e.value.trim().to_string(), e.line));
            }
        }
    }

    let mut general = General::defaults(defaults);
    let mut access = None;
    let mut console = Console::default();
    let mut profiles = BTreeMap::new();
    for (name, file, keys, lists) in &sections {
        let mut r = Reader { file, section: name, keys };
        if name == "access" {
            access = Some((r.access(lists)?, file.clone(), r.line("access_log")));
            // [access] is no profile.
            continue;
        }
        if name == "console" {
            console = r.console()?;
            continue;
        }
        if name == "general" {
            if let Some(p) = r.opt("spool_dir") {
                general.spool_dir = r.abs_path("spool_dir", p)?;
            }
            if let Some(p) = r.opt("audit_log") {
                general.audit_log = r.abs_path("audit_log", p)?;
            }
            general.retention_days = r.number(
                "retention_days",
                90,
                1,
                RETENTION_DAYS_MAX,
                " (R7: the CNIL allows at most 6 months for recordings)",
            )?;
            general.audit_retention_days = r.number("audit_retention_days", 365, 1, 3650, "")?;
            general.archive_opus = match r.opt("archive") {
                None | Some("opus") => true,
                Some("wav") => false,
                Some(v) => {
                    return Err(r.err("archive", format!("must be opus or wav, got \"{v}\"")))
                }
            };
            general.opus_bitrate =
                r.number("opus_bitrate", 16000, 6000, 64000, " bits per second")?;
            general.encoder_threads = r.number("encoder_threads", 1, 1, 16, "")?;
            for (key, value, line) in lists.iter().filter(|(k, _, _)| k == "encrypt_to") {
                for rcp in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                    if rcp.parse::<age::x25519::Recipient>().is_err() {
                        return Err(ConfigError {
                            file: file.clone(),
                            line: *line,
                            section: name.clone(),
                            key: key.clone(),
                            rule: format!("must be age X25519 recipients (age1..., as age-keygen prints them), separated by commas, got \"{rcp}\""),
                        });
                    }
                    if !general.encrypt_to.iter().any(|r| r == rcp) {
                        general.encrypt_to.push(rcp.to_string());
                    }
                }
            }
            if !general.encrypt_to.is_empty() && !general.archive_opus {
                return Err(r.err(
                    "encrypt_to",
                    "needs archive = opus: kept recordings are encrypted as they are archived"
                        .into(),
                ));
            }
            general.default_country = match r.opt("default_country").filter(|v| !v.is_empty()) {
                None => None,
                Some(c) if crate::policy::country_known(c) => Some(c.to_ascii_uppercase()),
                Some(c) => {
                    return Err(r.err(
                        "default_country",
                        format!(
                        "must be a two-letter ISO 3166 country code such as FR or DE, got \"{c}\""
                    ),
                    ))
                }
            };
            r.store(&mut general)?;
            continue;
        }
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(
                r.err("(section)", "a profile name uses only letters, digits, '_' and '-'".into())
            );
        }
        let profile = r.profile(name, sound_exists)?;
        profiles.insert(name.clone(), Arc::new(profile));
    }
    let access = match access {
        // The access log lives beside the audit log unless [access] names it.
        Some((a, _, _)) if a.access_log.as_os_str().is_empty() => {
            Access { access_log: general.audit_log.with_file_name("access.jsonl"), ..a }
        }
        Some((a, _, _)) => a,
        None => Access::defaults(&general.audit_log),
    };
    Ok(Config { general, access, console, profiles })
}

impl Access {
    /// No `[access]` section: nobody is listed (the tool refuses every listen), no bounds.
    pub fn defaults(audit_log: &std::path::Path) -> Access {
        Access {
            access_log: audit_log.with_file_name("access.jsonl"),
            listen_period: CapPeriod::Month,
            max_listens_per_agent: 0,
            min_listens_per_agent: 0,
            people: Vec::new(),
        }
    }
}

struct Reader<'a> {
    file: &'a str,
    section: &'a str,
    keys: &'a BTreeMap<String, (String, u32)>,
}

impl Reader<'_> {
    fn line(&self, key: &str) -> u32 {
        self.keys.get(key).map(|(_, l)| *l).unwrap_or(0)
    }
    fn err(&self, key: &str, rule: String) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: self.line(key),
            section: self.section.to_string(),
            key: key.to_string(),
            rule,
        }
    }
    fn opt(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(|(v, _)| v.as_str())
    }
    fn req(&self, key: &str) -> Result<&str, ConfigError> {
        match self.opt(key) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(self.err(key, "is required in every profile".into())),
        }
    }
    fn abs_path(&self, key: &str, v: &str) -> Result<PathBuf, ConfigError> {
        if !v.starts_with('/') || v.split('/').any(|c| c == "..") {
            return Err(
                self.err(key, format!("must be an absolute path without '..', got \"{v}\""))
            );
        }
        // The recorder's file names are passed in MixMonitor's option string, where `,`, `(`,
        // `)` or `|` would cut them: a per-leg file could then escape deletion (R3).
        if let Some(c) = v.chars().find(|c| {
            !(c.is_ascii_alphanumeric()
                || matches!(c, '/' | '.' | '_' | '-' | '+' | '@' | '=' | ':'))
        }) {
            return Err(self.err(
                key,
                format!(
                    "may hold only letters, digits and / . _ - + @ = : (found {c:?} in \"{v}\")"
                ),
            ));
        }
        Ok(PathBuf::from(v))
    }
    fn digit(&self, key: &str, default: char) -> Result<char, ConfigError> {
        let Some(v) = self.opt(key) else { return Ok(default) };
        let mut it = v.chars();
        match (it.next(), it.next()) {
            (Some(c), None) if is_dtmf(c) => Ok(c),
            _ => Err(self.err(key, format!("must be one DTMF key (0-9, *, #, A-D), got \"{v}\""))),
        }
    }
    fn code(&self, key: &str, default: &str) -> Result<String, ConfigError> {
        let v = self.opt(key).unwrap_or(default);
        if v.chars().count() < 2 || v.chars().count() > 8 || !v.chars().all(is_dtmf) {
            return Err(
                self.err(key, format!("must be 2 to 8 DTMF keys (0-9, *, #, A-D), got \"{v}\""))
            );
        }
        Ok(v.to_string())
    }
    fn number(
        &self,
        key: &str,
        default: u64,
        min: u64,
        max: u64,
        why: &str,
    ) -> Result<u64, ConfigError> {
        let Some(v) = self.opt(key) else { return Ok(default) };
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(self
                .err(key, format!("must be a whole number from {min} to {max}{why}, got \"{v}\""))),
        }
    }
    fn sound(&self, key: &str, sound_exists: &dyn Fn(&str) -> bool) -> Result<String, ConfigError> {
        let v = self.req(key)?;
        if v.contains("..") || v.starts_with('/') && v.contains("//") {
            return Err(self.err(key, format!("must be a sound name, got \"{v}\"")));
        }
        if !sound_exists(v) {
            return Err(
                self.err(key, format!("sound \"{v}\" not found in the PBX's sounds directory"))
            );
        }
        Ok(v.to_string())
    }
    fn tone(&self, key: &str, default: &str) -> Result<Option<String>, ConfigError> {
        let v = self.opt(key).unwrap_or(default);
        if v.is_empty() || v == "off" || v == "no" {
            return Ok(None);
        }
        let ok = v.split(',').all(|part| {
            let mut it = part.split('/');
            match (
                it.next().map(|f| f.split('+').all(|x| x.parse::<u32>().is_ok_and(|n| n <= 4000))),
                it.next().and_then(|m| m.parse::<u32>().ok()),
                it.next(),
            ) {
                (Some(true), Some(ms), None) => (1..=2000).contains(&ms),
                _ => false,
            }
        });
        if !ok {
            return Err(self.err(key, format!("must be tones as FREQ/MS[,FREQ/MS...] (FREQ up to 4000 Hz, MS 1-2000) or off, got \"{v}\"")));
        }
        Ok(Some(v.to_string()))
    }
    fn yes_no(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.opt(key) {
            None => Ok(default),
            Some("yes" | "true" | "1" | "on") => Ok(true),
            Some("no" | "false" | "0" | "off") => Ok(false),
            Some(v) => Err(self.err(key, format!("must be yes or no, got \"{v}\""))),
        }
    }

    fn access(&self, lists: &[(String, String, u32)]) -> Result<Access, ConfigError> {
        let mut a =
            Access::defaults(std::path::Path::new("/var/log/asterisk/callconsent/audit.jsonl"));
        a.access_log = match self.opt("access_log") {
            Some(p) => self.abs_path("access_log", p)?,
            None => PathBuf::new(),
        };
        a.listen_period = match self.opt("listen_period") {
            None => CapPeriod::Month,
            Some(p) => CapPeriod::parse(p).ok_or_else(|| {
                self.err(
                    "listen_period",
                    format!("must be day, week, month or quarter, got \"{p}\""),
                )
            })?,
        };
        a.max_listens_per_agent = self.number(
            "max_listens_per_agent",
            0,
            0,
            100_000,
            " (R6: listens of one agent's calls per period; 0: no maximum)",
        )?;
        a.min_listens_per_agent = self.number("min_listens_per_agent", 0, 0, 100_000, "")?;
        if a.max_listens_per_agent > 0 && a.min_listens_per_agent > a.max_listens_per_agent {
            return Err(self.err(
                "min_listens_per_agent",
                format!("must not exceed max_listens_per_agent ({})", a.max_listens_per_agent),
            ));
        }
        for (key, value, line) in lists.iter().filter(|(k, _, _)| k != "password") {
            let err = |rule: String| ConfigError {
                file: self.file.to_string(),
                line: *line,
                section: self.section.to_string(),
                key: key.clone(),
                rule,
            };
            let role = match key.as_str() {
                "dpo" => Role::Dpo,
                "coach" => Role::Coach,
                _ => Role::Agent,
            };
            let (name, agents) = match value.split_once(':') {
                Some((n, list)) => (
                    n.trim(),
                    list.split(',')
                        .map(str::trim)
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                        .collect::<Vec<_>>(),
                ),
                None => (value.trim(), vec![]),
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
            {
                return Err(err(format!(
                    "a person's name uses only letters, digits and . _ - @, got \"{name}\""
                )));
            }
            match (role, agents.len()) {
                (Role::Dpo, 0) | (Role::Agent, 1) => {}
                (Role::Coach, n) if n > 0 => {}
                (Role::Dpo, _) => return Err(err(format!("is one name (the DPO reaches every recording), got \"{value}\""))),
                (Role::Coach, _) => return Err(err(format!("must be NAME: AGENT[, AGENT...] (the coach's team, as the audit log names agents), got \"{value}\""))),
                (Role::Agent, _) => return Err(err(format!("must be NAME: AGENT (the person and their own line, e.g. anna: PJSIP/anna), got \"{value}\""))),
            }
            if a.people.iter().any(|p| p.name == name) {
                return Err(err(format!(
                    "\"{name}\" is listed twice in [access]: one person, one role"
                )));
            }
            a.people.push(Person { name: name.to_string(), role, agents, password_hash: None });
        }
        for (key, value, line) in lists.iter().filter(|(k, _, _)| k == "password") {
            let err = |rule: String| ConfigError {
                file: self.file.to_string(),
                line: *line,
                section: self.section.to_string(),
                key: key.clone(),
                rule,
            };
            let Some((name, hash)) = value.split_once(':') else {
                return Err(err("must be NAME: HASH (the PHC string `callconsent console password` prints, $argon2id$...)".into()));
            };
            let (name, hash) = (name.trim(), hash.trim());
            if !hash.starts_with("$argon2") || hash.split('$').count() < 5 {
                return Err(err(format!("the hash of {name} must be an argon2 PHC string ($argon2id$v=19$...), as `callconsent console password` prints it")));
            }
            let Some(person) = a.people.iter_mut().find(|p| p.name == name) else {
                return Err(err(format!(
                    "\"{name}\" is not a person of [access] (dpo, coach or agent)"
                )));
            };
            if person.password_hash.is_some() {
                return Err(err(format!("\"{name}\" has two passwords")));
            }
            person.password_hash = Some(hash.to_string());
        }
        Ok(a)
    }

    fn console(&self) -> Result<Console, ConfigError> {
        let mut c = Console::default();
        if let Some(l) = self.opt("listen") {
            if l.parse::<std::net::SocketAddr>().is_err() {
                return Err(self.err(
                    "listen",
                    format!(
                        "must be ADDRESS:PORT such as 127.0.0.1:8470 or [::]:8470, got \"{l}\""
                    ),
                ));
            }
            c.listen = l.to_string();
        }
        c.tls_certificate = self
            .opt("tls_certificate")
            .filter(|v| !v.is_empty())
            .map(|p| self.abs_path("tls_certificate", p))
            .transpose()?;
        c.tls_key = self
            .opt("tls_key")
            .filter(|v| !v.is_empty())
            .map(|p| self.abs_path("tls_key", p))
            .transpose()?;
        if c.tls_certificate.is_some() != c.tls_key.is_some() {
            return Err(self.err(if c.tls_key.is_none() { "tls_certificate" } else { "tls_key" }, "tls_certificate and tls_key go together (the certificate chain and its private key, PEM)".into()));
        }
        let loopback = c.listen.parse::<std::net::SocketAddr>().is_ok_and(|a| a.ip().is_loopback());
        if c.tls_certificate.is_none() && !loopback {
            return Err(self.err("listen", format!("{} is not a loopback address: set tls_certificate and tls_key (plain HTTP is served on loopback only)", c.listen)));
        }
        c.max_failed_signins = self.number(
            "max_failed_signins",
            5,
            1,
            100,
            " (then the account is locked for lockout_seconds)",
        )?;
        c.lockout_seconds = self.number("lockout_seconds", 300, 1, 86400, "")?;
        c.session_minutes = self.number("session_minutes", 30, 1, 1440, "")?;
        Ok(c)
    }

    fn store(&self, g: &mut General) -> Result<(), ConfigError> {
        if let Some(url) = self.opt("store").filter(|v| !v.is_empty() && *v != "local") {
            let Some(rest) =
                url.strip_prefix("postgresql://").or_else(|| url.strip_prefix("postgres://"))
            else {
                return Err(self.err(
                    "store",
                    format!(
                        "must be local or a postgresql:// URL, got \"{}\"",
                        url.rsplit('@').next().unwrap_or("")
                    ),
                ));
            };
            let authority = rest.split(['/', '?']).next().unwrap_or("");
            if authority
                .split('@')
                .next()
                .is_some_and(|userinfo| authority.contains('@') && userinfo.contains(':'))
            {
                return Err(self.err("store", "must not hold a password: name a file with store_password_file (the URL is shown in logs)".into()));
            }
            g.store = Some(url.to_string());
        }
        g.store_password_file = self
            .opt("store_password_file")
            .filter(|v| !v.is_empty())
            .map(|p| self.abs_path("store_password_file", p))
            .transpose()?;
        g.store_ca = self
            .opt("store_ca")
            .filter(|v| !v.is_empty())
            .map(|p| self.abs_path("store_ca", p))
            .transpose()?;
        g.node = match self.opt("node").filter(|v| !v.is_empty()) {
            None => None,
            Some(n)
                if n.len() <= 63
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) =>
            {
                Some(n.to_string())
            }
            Some(n) => {
                return Err(self.err(
                    "node",
                    format!("must be 1 to 63 letters, digits, . _ or -, got \"{n}\""),
                ))
            }
        };
        g.controller = self.opt("controller").filter(|v| !v.is_empty()).map(str::to_string);
        g.dpo_contact = self.opt("dpo_contact").filter(|v| !v.is_empty()).map(str::to_string);
        Ok(())
    }

    fn profile(
        &mut self,
        name: &str,
        sound_exists: &dyn Fn(&str) -> bool,
    ) -> Result<Profile, ConfigError> {
        let optout_key = self.digit("optout_key", '9')?;
        let info_key = self.digit("info_key", '0')?;
        if optout_key == info_key {
            return Err(self.err("info_key", format!("must differ from optout_key ({optout_key})")));
        }
        let share_text = self.req("record_share")?;
        let record_share = match share_text.trim_end_matches('%').parse::<u8>() {
            Ok(n) if n <= 100 => n,
            _ => {
                return Err(self.err(
                    "record_share",
                    format!("must be a whole percentage from 0 to 100 (R4), got \"{share_text}\""),
                ))
            }
        };
        let legal_basis = self.opt("legal_basis").filter(|v| !v.is_empty()).map(str::to_string);
        if record_share > SHARE_WITHOUT_LEGAL_BASIS_MAX && legal_basis.is_none() {
            return Err(self.err(
                "record_share",
                format!("{record_share} % is more than {SHARE_WITHOUT_LEGAL_BASIS_MAX} %: set legal_basis to the law that requires it (R4: no systematic recording)"),
            ));
        }
        let pause_code = self.code("pause_code", "*1")?;
        let resume_code = self.code("resume_code", "*2")?;
        let delete_code = self.code("delete_code", "*3")?;
        let secure_code = self.code("secure_code", "*4")?;
        let codes = [
            ("pause_code", &pause_code),
            ("resume_code", &resume_code),
            ("delete_code", &delete_code),
            ("secure_code", &secure_code),
        ];
        for (i, (ka, a)) in codes.iter().enumerate() {
            for (kb, b) in codes.iter().skip(i + 1) {
                if a.starts_with(b.as_str()) || b.starts_with(a.as_str()) {
                    return Err(self.err(
                        kb,
                        format!("\"{b}\" clashes with {ka} \"{a}\": no code may begin another"),
                    ));
                }
            }
        }
        let secure_end_key = self.digit("secure_end_key", '#')?;
        if secure_end_key.is_ascii_digit() {
            return Err(self.err(
                "secure_end_key",
                format!("must not be a digit: card digits are 0-9, got \"{secure_end_key}\""),
            ));
        }
        let secure_gosub = match self.opt("secure_gosub").filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => {
                let parts: Vec<&str> = v.split(',').map(str::trim).collect();
                let ok = parts.len() == 3
                    && parts.iter().all(|p| {
                        !p.is_empty()
                            && p.chars().all(|c| {
                                c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+' | '.')
                            })
                    });
                if !ok {
                    return Err(self.err("secure_gosub", format!("must be context,exten,priority (letters, digits, _ - + .), got \"{v}\"")));
                }
                Some(parts.join(","))
            }
        };
        Ok(Profile {
            name: name.to_string(),
            notice: self.sound("notice", sound_exists)?,
            full_notice: self.sound("full_notice", sound_exists)?,
            optout_confirm: self.sound("optout_confirm", sound_exists)?,
            optout_key,
            info_key,
            record_share,
            legal_basis,
            record_legs: self.yes_no("record_legs", false)?,
            pause_code,
            resume_code,
            delete_code,
            code_timeout_ms: self.number("code_timeout_ms", 2000, 200, 10000, "")?,
            pause_max_seconds: self.number(
                "pause_max_seconds",
                0,
                0,
                3600,
                " (0 turns auto-resume off)",
            )?,
            start_tone: self.tone("start_tone", "440/150")?,
            optout_tone: self.tone("optout_tone", "950/120,0/80,950/120")?,
            pause_tone: self.tone("pause_tone", "620/150")?,
            resume_tone: self.tone("resume_tone", "820/150")?,
            delete_tone: self.tone("delete_tone", "950/300")?,
            warn_tone: self.tone("warn_tone", "1400/100,0/100,1400/100")?,
            never_record: self
                .opt("never_record")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(|e| Exemption::parse(e).map_err(|why| self.err("never_record", why)))
                .collect::<Result<_, _>>()?,
            private_prefix: match self.opt("private_prefix").filter(|p| !p.is_empty()) {
                Some(p) if p.chars().all(is_dtmf) && p.len() <= 8 => Some(p.to_string()),
                Some(p) => {
                    return Err(self
                        .err("private_prefix", format!("must be 1 to 8 DTMF keys, got \"{p}\"")))
                }
                None => None,
            },
            max_per_agent: self.number("max_per_agent", 0, 0, 100_000, " (0: no cap)")?,
            cap_period: match self.opt("cap_period") {
                None => CapPeriod::Week,
                Some(p) => CapPeriod::parse(p).ok_or_else(|| {
                    self.err(
                        "cap_period",
                        format!("must be day, week, month or quarter, got \"{p}\""),
                    )
                })?,
            },
            secure_code,
            secure_end_key,
            secure_max_digits: self.number(
                "secure_max_digits",
                19,
                1,
                32,
                " (card digits; 19 is the longest card number)",
            )?,
            secure_timeout_ms: self.number("secure_timeout_ms", 60000, 1000, 600_000, "")?,
            secure_mask_tone: self.tone("secure_mask_tone", "800/60")?,
            secure_start_tone: self.tone("secure_start_tone", "600/100,900/100")?,
            secure_end_tone: self.tone("secure_end_tone", "900/100,600/100")?,
            secure_gosub,
            store_unavailable: match self.opt("store_unavailable") {
                None | Some("no_record") => StoreUnavailable::NoRecord,
                Some("local") => StoreUnavailable::Local,
                Some(v) => {
                    return Err(self.err(
                        "store_unavailable",
                        format!("must be no_record (privacy wins) or local, got \"{v}\""),
                    ))
                }
            },
            store_local_seconds: self.number(
                "store_local_seconds",
                900,
                1,
                86400,
                " (how long caps are counted on this node alone)",
            )?,
        })
    }
}

/// Reads Asterisk config syntax outside Asterisk (for the DPO tool): `[section]`,
/// `key = value` or `key => value`, `;` comments. Templates and #include are not followed.
pub fn entries_from_text(text: &str, file: &str) -> Vec<Entry> {
    let mut out = vec![];
    let mut cat = String::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split(';').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(c) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            cat = c.trim().to_string();
            out.push(Entry {
                category: cat.clone(),
                name: None,
                value: String::new(),
                file: file.into(),
                line: i as u32 + 1,
            });
        } else if let Some((k, v)) = line.split_once('=') {
            out.push(Entry {
                category: cat.clone(),
                name: Some(k.trim().to_string()),
                value: v.trim_start_matches('>').trim().to_string(),
                file: file.into(),
                line: i as u32 + 1,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
