//! Exemptions (R12), caps (R6) and keyed hashes: the rules that keep some calls and some
//! employees out of recording, whatever the draw says.
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// One `never_record` entry: `caller:NUMBER-OR-PATTERN` or `agent:GLOB`.
#[derive(Debug, Clone, PartialEq)]
pub enum Exemption {
    /// A caller number: a literal, or an Asterisk-style pattern starting with `_`
    /// (X = 0-9, Z = 1-9, N = 2-9, [..] a set, `.` one or more of anything, `!` zero or more).
    Caller(String),
    /// An agent: a glob (`*`, `?`) on the agent's channel name without Asterisk's unique
    /// suffix, e.g. `PJSIP/rep-*` or `Local/rep@agents`.
    Agent(String),
}

impl Exemption {
    pub fn parse(entry: &str) -> Result<Exemption, String> {
        let entry = entry.trim();
        if let Some(p) = entry.strip_prefix("caller:") {
            let p = p.trim();
            if p.is_empty() {
                return Err("caller: needs a number or a pattern".into());
            }
            if let Some(pat) = p.strip_prefix('_') {
                check_pattern(pat)?;
            } else if !p.chars().all(|c| c.is_ascii_digit() || c == '+' || c == '*' || c == '#') {
                return Err(format!(
                    "\"{p}\" is not a number (digits, +, *, #) nor a pattern starting with _"
                ));
            }
            Ok(Exemption::Caller(p.to_string()))
        } else if let Some(g) = entry.strip_prefix("agent:") {
            let g = g.trim();
            if g.is_empty() || !g.chars().all(|c| c.is_ascii_graphic()) {
                return Err(format!("\"{g}\" is not an agent glob (e.g. PJSIP/rep-*)"));
            }
            Ok(Exemption::Agent(g.to_string()))
        } else {
            Err(format!("\"{entry}\" must start with caller: or agent:"))
        }
    }
}

fn check_pattern(p: &str) -> Result<(), String> {
    let mut in_set = false;
    for c in p.chars() {
        match (in_set, c) {
            (false, '[') => in_set = true,
            (true, ']') => in_set = false,
            (true, c) if c.is_ascii_digit() || c == '-' => {}
            (false, 'X' | 'Z' | 'N' | '.' | '!' | '+' | '*' | '#') => {}
            (false, c) if c.is_ascii_digit() => {}
            _ => {
                return Err(format!(
                    "pattern _{p}: '{c}' is not allowed (digits, X, Z, N, [..], ., !)"
                ))
            }
        }
    }
    if in_set {
        return Err(format!("pattern _{p}: unclosed ["));
    }
    Ok(())
}

/// One element of an extension pattern.
enum Tok {
    /// `.`: one or more characters.
    OneOrMore,
    /// `!`: zero or more characters.
    ZeroOrMore,
    /// One character for which the test holds (`X`, `Z`, `N`, `[...]`, a literal).
    One(Box<dyn Fn(char) -> bool>),
}

fn tokens(pattern: &str) -> Option<Vec<Tok>> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        out.push(match p[i] {
            '.' => Tok::OneOrMore,
            '!' => Tok::ZeroOrMore,
            'X' => Tok::One(Box::new(|c: char| c.is_ascii_digit())),
            'Z' => Tok::One(Box::new(|c: char| ('1'..='9').contains(&c))),
            'N' => Tok::One(Box::new(|c: char| ('2'..='9').contains(&c))),
            '[' => {
                let end = i + p[i..].iter().position(|c| *c == ']')?;
                let set: Vec<char> = p[i + 1..end].to_vec();
                i = end;
                Tok::One(Box::new(move |c: char| {
                    let mut j = 0;
                    while j < set.len() {
                        if j + 2 < set.len() && set[j + 1] == '-' {
                            if (set[j]..=set[j + 2]).contains(&c) {
                                return true;
                            }
                            j += 3;
                        } else {
                            if set[j] == c {
                                return true;
                            }
                            j += 1;
                        }
                    }
                    false
                }))
            }
            lit => Tok::One(Box::new(move |c: char| c == lit)),
        });
        i += 1;
    }
    Some(out)
}

/// Which text lengths the tokens can consume: one pass per token over the text, so the time is
/// the pattern's length times the number's, whatever the pattern (a caller chooses the number:
/// no backtracking that a pattern like `!!!!!!1` would make exponential).
fn matches_tokens(toks: &[Tok], text: &[char]) -> bool {
    let n = text.len();
    let mut cur = vec![false; n + 1];
    cur[0] = true;
    for t in toks {
        let mut next = vec![false; n + 1];
        match t {
            Tok::OneOrMore | Tok::ZeroOrMore => {
                let mut seen = false;
                for j in 0..=n {
                    // next[j]: some i < j (OneOrMore) or i <= j (ZeroOrMore) was reachable.
                    if matches!(t, Tok::ZeroOrMore) {
                        seen |= cur[j];
                        next[j] = seen;
                    } else {
                        next[j] = seen;
                        seen |= cur[j];
                    }
                }
            }
            Tok::One(ok) => {
                for j in 0..n {
                    if cur[j] && ok(text[j]) {
                        next[j + 1] = true;
                    }
                }
            }
        }
        cur = next;
    }
    cur[n]
}

/// Asterisk-style extension pattern match (without the leading `_`).
pub fn pattern_matches(pattern: &str, number: &str) -> bool {
    let Some(toks) = tokens(pattern) else { return false };
    matches_tokens(&toks, &number.chars().collect::<Vec<_>>())
}

/// A glob (`*` any run, `?` one character) over a channel name, in the same linear time.
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let toks: Vec<Tok> = glob
        .chars()
        .map(|g| match g {
            '*' => Tok::ZeroOrMore,
            '?' => Tok::One(Box::new(|_| true)),
            lit => Tok::One(Box::new(move |c: char| c == lit)),
        })
        .collect();
    matches_tokens(&toks, &text.chars().collect::<Vec<_>>())
}

pub fn caller_exempt(list: &[Exemption], number: &str) -> bool {
    !number.is_empty()
        && list.iter().any(|e| match e {
            Exemption::Caller(p) => match p.strip_prefix('_') {
                Some(pat) => pattern_matches(pat, number),
                None => p == number,
            },
            Exemption::Agent(_) => false,
        })
}

pub fn agent_exempt(list: &[Exemption], agent: &str) -> Option<String> {
    list.iter().find_map(|e| match e {
        Exemption::Agent(g) if glob_matches(g, agent) => Some(g.clone()),
        _ => None,
    })
}

/// The agent's identity from a channel name: Asterisk's unique suffix (`-0000002a`, `;1`) removed.
pub fn agent_id(channel: &str) -> String {
    let base = channel.split(';').next().unwrap_or(channel);
    match base.rsplit_once('-') {
        Some((head, tail)) if tail.len() >= 8 && tail.chars().all(|c| c.is_ascii_hexdigit()) => {
            head.to_string()
        }
        _ => base.to_string(),
    }
}

/// Who may pause, resume or delete a recording from the dialplan (`CallConsentControl()`).
///
/// R9: the controls are the agent's, to keep sensitive data out of a recording; the caller's say
/// is the opt-out key. Run on the caller's own channel without naming another channel, the
/// control is refused (a caller's feature code must never reach it).
pub fn dialplan_control_allowed(on_callers_own_channel: bool, names_a_channel: bool) -> bool {
    names_a_channel || !on_callers_own_channel
}

/// The installation secret's public name: audit lines that depend on the secret (the draw, the
/// keyed number hashes) carry it, so a DPO knows which key replays them.
pub fn key_id(secret: &[u8]) -> String {
    use sha2::Digest;
    let d = Sha256::new().chain_update(b"callconsent-key-id:").chain_update(secret).finalize();
    d.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// A keyed hash, so the audit log can say that the same number was exempt twice without ever
/// holding the number.
pub fn keyed_hash(secret: &[u8], what: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(what.as_bytes());
    mac.finalize().into_bytes().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The period a per-agent cap counts over (R6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapPeriod {
    Day,
    Week,
    Month,
    Quarter,
}

impl CapPeriod {
    pub fn parse(s: &str) -> Option<CapPeriod> {
        match s {
            "day" => Some(CapPeriod::Day),
            "week" => Some(CapPeriod::Week),
            "month" => Some(CapPeriod::Month),
            "quarter" => Some(CapPeriod::Quarter),
            _ => None,
        }
    }
    /// The period a moment falls in, as a key: `2026-11-22`, `2026-W47`, `2026-11`.
    pub fn key(self, at: chrono::DateTime<chrono::Utc>) -> String {
        use chrono::Datelike;
        match self {
            CapPeriod::Day => at.format("%Y-%m-%d").to_string(),
            CapPeriod::Week => {
                let w = at.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            CapPeriod::Month => at.format("%Y-%m").to_string(),
            CapPeriod::Quarter => format!("{}-Q{}", at.year(), at.month0() / 3 + 1),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CapPeriod::Day => "day",
            CapPeriod::Week => "week",
            CapPeriod::Month => "month",
            CapPeriod::Quarter => "quarter",
        }
    }
}

/// Whether `code` is an ISO 3166 alpha-2 country the number plan knows (`default_country`).
pub fn country_known(code: &str) -> bool {
    code.len() == 2 && code.to_ascii_uppercase().parse::<phonenumber::country::Id>().is_ok()
}

/// A caller's number in E.164 (`+33612345678`), so that the national form (`0612345678`, with
/// `default_country = FR`), the international prefix (`0033...`) and the E.164 form are one
/// subject. What the number plan cannot read is kept as its digits (and a leading `+`).
pub fn normalize_number(raw: &str, default_country: Option<&str>) -> String {
    let trimmed: String =
        raw.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '/')).collect();
    let plus = match trimmed.strip_prefix("00") {
        Some(rest) if !rest.is_empty() => format!("+{rest}"),
        _ => trimmed.clone(),
    };
    let country = default_country
        .and_then(|c| c.to_ascii_uppercase().parse::<phonenumber::country::Id>().ok());
    if plus.starts_with('+') || country.is_some() {
        if let Ok(n) = phonenumber::parse(country, &plus) {
            return n.format().mode(phonenumber::Mode::E164).to_string();
        }
    }
    let digits: String = plus.chars().filter(|c| c.is_ascii_digit()).collect();
    if plus.starts_with('+') {
        format!("+{digits}")
    } else {
        digits
    }
}

/// The keyed hash of a caller's number (normalised), the only form in which the audit log and
/// the archives name a caller: `callconsent subject find` recomputes it from the number.
pub fn number_hash(secret: &[u8], raw: &str, default_country: Option<&str>) -> String {
    keyed_hash(secret, &normalize_number(raw, default_country))
}

/// A short public name of an encryption recipient, for the audit lines.
pub fn recipient_fingerprint(recipient: &str) -> String {
    use sha2::Digest;
    let d = Sha256::new()
        .chain_update(b"callconsent-recipient:")
        .chain_update(recipient.trim().as_bytes())
        .finalize();
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_patterns_and_numbers_take_linear_time() {
        // Found by the fuzzer (fuzz/hangs/policy): exponential backtracking took seconds.
        let t = std::time::Instant::now();
        assert!(!pattern_matches("!!!!!!!!!!!!1", &"0".repeat(24)));
        assert!(pattern_matches(&"!".repeat(64), ""), "zero or more characters match nothing");
        assert!(!glob_matches(&"*a".repeat(30), &"a".repeat(29)));
        assert!(!pattern_matches(&"X.".repeat(40), &"1".repeat(39)));
        assert!(t.elapsed() < std::time::Duration::from_millis(500), "{:?}", t.elapsed());
    }

    #[test]
    fn the_linear_matcher_agrees_with_asterisk_patterns() {
        for (p, n, want) in [
            ("0145XXXXXX", "0145123456", true),
            ("0145XXXXXX", "01451234567", false),
            ("01.", "01", false),
            ("01.", "012", true),
            ("01!", "01", true),
            ("N[1-3]Z", "229", true),
            ("N[1-3]Z", "140", false),
            ("[45]X", "58", true),
            ("[45", "4", false),
            ("X!X", "12", true),
            ("X!X", "1", false),
        ] {
            assert_eq!(pattern_matches(p, n), want, "{p} vs {n}");
        }
        for (g, t, want) in [
            ("PJSIP/rep-*", "PJSIP/rep-anna", true),
            ("Local/rep@*", "Local/rep@test", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*", "", true),
        ] {
            assert_eq!(glob_matches(g, t), want, "{g} vs {t}");
        }
    }

    #[test]
    fn national_and_international_forms_are_one_number() {
        let fr = Some("FR");
        for n in
            ["0612345678", "+33612345678", "0033612345678", "06 12 34 56 78", "+33 6 12-34-56-78"]
        {
            assert_eq!(normalize_number(n, fr), "+33612345678", "{n}");
        }
        assert_eq!(normalize_number("+33612345678", None), "+33612345678");
        assert_eq!(
            normalize_number("0612345678", None),
            "0612345678",
            "no country: the digits as they are"
        );
        // Italy keeps its leading 0 in E.164: no rule of thumb, the number plan decides.
        assert_eq!(normalize_number("0612345678", Some("IT")), "+390612345678");
        assert_eq!(normalize_number("agent-anna", fr), "", "not a number: no digits");
        let k = b"k";
        assert_eq!(number_hash(k, "0612345678", fr), number_hash(k, "+33612345678", None));
        assert_ne!(number_hash(k, "0612345678", fr), number_hash(k, "0612345679", fr));
        assert!(
            country_known("fr")
                && country_known("DE")
                && !country_known("XX")
                && !country_known("FRA")
        );
    }

    #[test]
    fn quarters_are_calendar_quarters() {
        use chrono::TimeZone;
        let at = |m| chrono::Utc.with_ymd_and_hms(2026, m, 15, 12, 0, 0).unwrap();
        assert_eq!(CapPeriod::Quarter.key(at(1)), "2026-Q1");
        assert_eq!(CapPeriod::Quarter.key(at(6)), "2026-Q2");
        assert_eq!(CapPeriod::Quarter.key(at(12)), "2026-Q4");
        assert_eq!(CapPeriod::parse("quarter"), Some(CapPeriod::Quarter));
    }

    #[test]
    fn a_callers_own_channel_never_controls_the_recording() {
        assert!(!dialplan_control_allowed(true, false));
        assert!(dialplan_control_allowed(false, false));
        assert!(dialplan_control_allowed(false, true));
        assert!(dialplan_control_allowed(true, true));
    }
    use proptest::prelude::*;

    #[test]
    fn caller_patterns() {
        assert!(pattern_matches("0145XXXXXX", "0145123456"));
        assert!(!pattern_matches("0145XXXXXX", "01451234567"));
        assert!(pattern_matches("33.", "33612345678"));
        assert!(pattern_matches("[1-3]N!", "12"));
        assert!(!pattern_matches("Z", "0"));
        let list = vec![
            Exemption::parse("caller:_0145XXXXXX").unwrap(),
            Exemption::parse("caller:+33612345678").unwrap(),
        ];
        assert!(caller_exempt(&list, "0145000000"));
        assert!(caller_exempt(&list, "+33612345678"));
        assert!(!caller_exempt(&list, "0246000000"));
        assert!(!caller_exempt(&list, ""));
    }

    #[test]
    fn agent_globs_and_ids() {
        assert_eq!(agent_id("PJSIP/rep-0000002a"), "PJSIP/rep");
        assert_eq!(agent_id("Local/rep@agents-00000003;1"), "Local/rep@agents");
        let list = vec![
            Exemption::parse("agent:PJSIP/rep-*").unwrap(),
            Exemption::parse("agent:Local/rep@*").unwrap(),
        ];
        assert!(agent_exempt(&list, "PJSIP/rep-anna").is_some());
        assert!(agent_exempt(&list, "Local/rep@agents").is_some());
        assert!(agent_exempt(&list, "PJSIP/agent100").is_none());
    }

    #[test]
    fn bad_entries_are_refused() {
        assert!(Exemption::parse("0145").unwrap_err().contains("caller: or agent:"));
        assert!(Exemption::parse("caller:_01[45").unwrap_err().contains("unclosed"));
        assert!(Exemption::parse("caller:_01Y").unwrap_err().contains("'Y' is not allowed"));
        assert!(Exemption::parse("caller:abc").is_err());
        assert!(Exemption::parse("agent:").is_err());
    }

    #[test]
    fn keyed_hashes_hide_numbers() {
        let h = keyed_hash(b"secret", "0145000000");
        assert_eq!(h.len(), 16);
        assert!(!h.contains("0145000000"));
        assert_eq!(h, keyed_hash(b"secret", "0145000000"));
        assert_ne!(h, keyed_hash(b"other", "0145000000"));
    }

    #[test]
    fn period_keys() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(CapPeriod::Day.key(t), "2026-11-22");
        assert_eq!(CapPeriod::Week.key(t), "2026-W47");
        assert_eq!(CapPeriod::Month.key(t), "2026-11");
    }

    proptest! {
        #[test]
        fn a_listed_number_is_always_exempt(n in "[0-9]{4,12}") {
            let list = vec![Exemption::parse(&format!("caller:{n}")).unwrap()];
            prop_assert!(caller_exempt(&list, &n));
            let pattern = format!("caller:_{}", "X".repeat(n.len()));
            prop_assert!(caller_exempt(&[Exemption::parse(&pattern).unwrap()], &n));
        }
    }
}
