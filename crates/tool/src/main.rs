//! `callconsent`: the DPO's command-line tool (R5, R7, R8, R14, R15).
//!
//!   callconsent audit verify FILE...               check the hash chain (files in order); exit 1 at the first broken line (R14)
//!   callconsent agent AGENT FILE...                every audit record concerning one agent (R8)
//!   callconsent describe CONF [--lang fr|en]       plain-language description of the processing (R15)
//!   callconsent retention SPOOL_KEPT_DIR DAYS      what retention would delete now (R7, dry run)
//!   callconsent draw CALL SECRET_FILE SHARE        replay a selection decision (R5)
//!   callconsent archive verify FILE.opus AUDIT...  decode an archive, check its length and tags against the audit log
//!   callconsent listen|export RECORDING --identity FILE --as PERSON --purpose TEXT
//!                                                  decrypt a recording to a player or an Opus file, logged and bounded (R6, R11)
//!   callconsent access report                      listens per agent and period against the bounds (R6)
//!   callconsent subject find|export|erase --number NUMBER   a caller's rights of access and erasure (GDPR Art. 15, 17)
//!
//! Exit codes: 0 success, 1 a check failed or a file could not be read, 2 usage error (clap's).
//! The parsing and the help are clap's; every output line below is a contract (scripts and the
//! end-to-end tests read them): change none of them.
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use callconsent_core::audit::AuditEvent;
use callconsent_core::{describe, draw};
use callconsent_runtime::audit::{audit_key, verify_files_with, Check};

mod access;
use access::Where;
mod conf;
mod console;
mod shared;

const EXIT_CODES: &str = "\
Exit codes:
  0  success: the check passed, or the list was printed
  1  a check failed, or a file could not be read
  2  usage error: unknown command, missing argument, invalid value
  3  audit verify: the chain holds, but the log is keyed and no --key was given (MACs not checked)";

const LONG_ABOUT: &str = "\
The data protection officer's tool for lawful call recording (res_callconsent)

It reads what the module writes and changes nothing (retention is a dry run).
Default locations:
  audit log      /var/log/asterisk/callconsent/audit.jsonl
                 (rotated daily to audit-YYYY-MM-DD.jsonl beside it)
  access log     /var/log/asterisk/callconsent/access.jsonl
                 (every listen, export and caller's request; [access] access_log)
  recordings     /var/spool/asterisk/callconsent/kept
                 (.opus.age when [general] encrypt_to is set: only an identity opens them)
  selection key  /var/lib/asterisk/callconsent/secret
  configuration  /etc/asterisk/callconsent.conf (or CALLCONSENT_CONFIG)";

/// The data protection officer's tool for lawful call recording (res_callconsent)
#[derive(Debug, Parser)]
#[command(
    name = "callconsent",
    version,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES,
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check that no line of the audit log was edited, removed or inserted (R14)
    #[command(subcommand, arg_required_else_help = true)]
    Audit(AuditCommand),
    /// Print every audit record concerning one agent, for an employee's request (R8)
    #[command(
        long_about = "Print every audit record concerning one agent, for an employee's request (R8)\n\n\
                      Prints, one per line and unchanged, every audit line whose \"agent\" field is AGENT,\n\
                      then on stderr \"N record(s) concern AGENT\". Without FILE, the audit log of the\n\
                      configuration (rotated files included). When the configuration can be read, also one\n\
                      JSON line {\"recording\": PATH, ...} per recording of AGENT on disk now, and every line\n\
                      of the access log about AGENT's calls (each listen, export and refusal).",
        after_help = "Exit codes:\n  0  listed (possibly none)\n  1  a file could not be read\n  2  usage error"
    )]
    Agent(AgentArgs),
    /// Print a plain-language description of the processing, for the staff notice (R15)
    #[command(
        long_about = "Print a plain-language description of the processing, for the staff notice (R15)\n\n\
                      What is recorded, why, for how long, who can listen, and the rule of each profile,\n\
                      generated from the configuration the module runs with.",
        after_help = "Exit codes:\n  0  printed\n  1  CONF cannot be read, or the configuration is invalid (the error is on stderr)\n  2  usage error, e.g. a language other than fr or en"
    )]
    Describe(DescribeArgs),
    /// List the recordings that retention would delete now (R7, dry run)
    #[command(
        long_about = "List the recordings that retention would delete now (R7, dry run)\n\n\
                      Prints \"would delete PATH (N days old)\" for each file under SPOOL_KEPT_DIR last\n\
                      modified more than DAYS days ago, then the count on stderr. Nothing is deleted:\n\
                      the module itself deletes them, and logs each deletion in the audit log.",
        after_help = "Exit codes:\n  0  listed (possibly none; a missing directory lists none)\n  2  usage error, e.g. DAYS not a whole number"
    )]
    Retention(RetentionArgs),
    /// Replay the selection decision of one call: was it drawn for recording? (R5)
    #[command(
        long_about = "Replay the selection decision of one call: was it drawn for recording? (R5)\n\n\
                      The rule is objective and reproducible: from the installation's key and the call id\n\
                      alone (nothing about the caller or the agent), a bucket 0-9999; the call is selected\n\
                      when the bucket is below SHARE * 100. The audit log's selected / not_selected line\n\
                      of that call shows the same bucket.",
        after_help = "Exit codes:\n  0  replayed (selected or not)\n  1  SECRET_FILE cannot be read\n  2  usage error, e.g. SHARE not in 0-100"
    )]
    Draw(DrawArgs),
    /// Check that an Opus archive is the recording the audit log describes
    #[command(subcommand, arg_required_else_help = true)]
    Archive(ArchiveCommand),
    /// Listen to a recording: decrypted to a player, written to the access log, bounded (R6, R11)
    #[command(
        long_about = "Listen to a recording: decrypted to a player, written to the access log, bounded (R6, R11)\n\n\
                      RECORDING is an archive's path or file name (as the audit log's recording_archived line\n\
                      names it). PERSON must be listed in [access]: the DPO reaches every recording, a coach\n\
                      their team's, an agent their own. A listen of an agent's calls past\n\
                      max_listens_per_agent in the listen_period is refused. Every listen, and every refusal,\n\
                      is a line of the access log (who, which recording, which agent, purpose, when), written\n\
                      before any audio is released. The Ogg Opus stream goes to --player's input, or to stdout\n\
                      when it is not a terminal (callconsent listen ... | mpv -); a summary goes to stderr.",
        after_help = "Exit codes:\n  0  listened\n  1  refused (the reason is on stderr and in the access log), or the recording cannot be opened\n  2  usage error, or no player and stdout is a terminal"
    )]
    Listen(ListenArgs),
    /// Export a recording as the call's Ogg Opus file, written to the access log, bounded (R6, R11)
    #[command(
        long_about = "Export a recording as the call's Ogg Opus file, written to the access log, bounded (R6, R11)\n\n\
                      The same rules as listen (an export counts as a listen); the output is the decrypted Ogg\n\
                      Opus stream, never a WAV: --out must end in .opus (or be a directory), and is never\n\
                      overwritten. The file is written 0600.",
        after_help = "Exit codes:\n  0  exported\n  1  refused, or the recording cannot be opened, or --out exists or is not .opus\n  2  usage error"
    )]
    Export(ExportArgs),
    /// Reports on accesses: listens per agent and period against the bounds (R6)
    #[command(subcommand, arg_required_else_help = true)]
    Access(AccessCommand),
    /// A caller's rights: find, export or erase their recordings by number (GDPR Art. 15, 17, 21)
    #[command(subcommand, arg_required_else_help = true)]
    Subject(SubjectCommand),
    /// The DPO's decryption key: create one, or print the recipient to give encrypt_to (R11)
    #[command(subcommand, arg_required_else_help = true)]
    Identity(IdentityCommand),
    // The help (short and long) is ConsoleArgs' own.
    Console(console::ConsoleArgs),
}

#[derive(Debug, Subcommand)]
enum IdentityCommand {
    /// Create an age X25519 identity file (0600) and print its recipient for [general] encrypt_to
    #[command(
        long_about = "Create an age X25519 identity file (0600) and print its recipient for [general] encrypt_to (R11)\n\n\
                      The file is what age-keygen writes (comment lines, then AGE-SECRET-KEY-1...); keep it\n\
                      where the DPO works, never on the PBX. Prints the recipient (age1...) on stdout and its\n\
                      fingerprint (as the audit lines' encrypted_to name it) on stderr. Never overwrites.",
        after_help = "Exit codes:\n  0  created\n  1  FILE exists or cannot be written\n  2  usage error"
    )]
    New(IdentityFileArgs),
    /// Print the recipient (age1...) and fingerprint of each identity in a file
    #[command(
        after_help = "Exit codes:\n  0  printed\n  1  FILE cannot be read or holds no X25519 identity\n  2  usage error"
    )]
    Recipient(IdentityFileArgs),
}

#[derive(Debug, Args)]
struct IdentityFileArgs {
    /// The identity file
    #[arg(value_name = "FILE")]
    file: String,
}

/// What every listen and export names: the recording, the key, who and why.
#[derive(Debug, Args)]
struct Access {
    /// The recording: an archive's path or file name, e.g. cc-1764590000.12.opus.age
    #[arg(value_name = "RECORDING")]
    recording: String,
    /// An age identity file (age-keygen) of one of the encrypt_to recipients
    #[arg(long, value_name = "FILE")]
    identity: Option<String>,
    /// Who listens or exports: a person of [access]
    #[arg(long = "as", value_name = "PERSON")]
    person: String,
    /// Why (written to the access log), e.g. "coaching session 2026-12"
    #[arg(long, value_name = "TEXT")]
    purpose: String,
}

#[derive(Debug, Args)]
struct ListenArgs {
    #[command(flatten)]
    who: Access,
    /// A command that plays Ogg Opus from its standard input, e.g. "mpv -" or "paplay"
    #[arg(long, value_name = "CMD")]
    player: Option<String>,
    #[command(flatten)]
    place: Where,
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    who: Access,
    /// The Opus file to write (or a directory: the recording's name there); default: the
    /// recording's name in the current directory
    #[arg(long, value_name = "FILE.opus")]
    out: Option<String>,
    #[command(flatten)]
    place: Where,
}

#[derive(Debug, Subcommand)]
enum AccessCommand {
    /// Listens per agent in a period, against min_listens_per_agent and max_listens_per_agent (R6)
    #[command(
        long_about = "Listens per agent in a period, against min_listens_per_agent and max_listens_per_agent (R6)\n\n\
                      One line per agent (the agents of [access] and those the audit log names): listens and\n\
                      exports of their calls by others in the period, refusals, and whether the count is\n\
                      within the bounds, at the maximum, or below the minimum (never coached).",
        after_help = "Exit codes:\n  0  printed\n  1  the configuration or a log cannot be read\n  2  usage error"
    )]
    Report(ReportArgs),
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// The period, as the access log's "period" field names it (2026-12-01, 2026-W49, 2026-12,
    /// 2026-Q4); default: the current one
    #[arg(long, value_name = "PERIOD")]
    period: Option<String>,
    #[command(flatten)]
    place: Where,
}

#[derive(Debug, Subcommand)]
enum SubjectCommand {
    /// Every recording and audit line of a caller, found by the keyed hash of their number (Art. 15)
    #[command(
        long_about = "Every recording and audit line of a caller, found by the keyed hash of their number (Art. 15)\n\n\
                      The number is normalised to E.164 ([general] default_country for national numbers, so\n\
                      0612345678 and +33612345678 are one caller) and hashed with the installation secret, as\n\
                      the module does: the logs never hold the number itself. Prints a summary line, one\n\
                      \"recording ...\" line per kept recording, then \"audit FILE:LINE LINE\" per audit line.",
        after_help = "Exit codes:\n  0  searched (possibly nothing found)\n  1  the configuration, the secret or a log cannot be read\n  2  usage error"
    )]
    Find(SubjectFindArgs),
    /// Bundle a caller's recordings (Ogg Opus) and the audit lines about them into a new directory (Art. 15)
    #[command(
        after_help = "Exit codes:\n  0  exported\n  1  refused (--as names someone who is not the DPO), or a file cannot be read or written\n  2  usage error"
    )]
    Export(SubjectExportArgs),
    /// Erase a caller's recordings; each call gets a recording_erased line with the request reference (Art. 17, 21)
    #[command(
        long_about = "Erase a caller's recordings; each call gets a recording_erased line with the request reference (Art. 17, 21)\n\n\
                      Every file of the caller's calls is deleted; the audit lines stay (they hold no number,\n\
                      only its keyed hash) and the chain goes on, so audit verify still passes. Asks for\n\
                      confirmation on a terminal unless --yes.",
        after_help = "Exit codes:\n  0  erased (possibly nothing)\n  1  refused (--as names someone who is not the DPO), not confirmed, or a file cannot be deleted\n  2  usage error"
    )]
    Erase(SubjectEraseArgs),
}

#[derive(Debug, Args)]
struct SubjectFindArgs {
    /// The caller's number, in any form (0612345678, +33 6 12 34 56 78, 0033612345678)
    #[arg(long, value_name = "NUMBER")]
    number: String,
    #[command(flatten)]
    place: Where,
}

#[derive(Debug, Args)]
struct SubjectExportArgs {
    /// The caller's number, in any form
    #[arg(long, value_name = "NUMBER")]
    number: String,
    /// Who serves the request: the DPO of [access] (default: the Unix user running the tool,
    /// named in the logs as unix:USER)
    #[arg(long = "as", value_name = "PERSON")]
    person: Option<String>,
    /// The request's reference (written to the access log)
    #[arg(long, value_name = "REF", visible_aliases = ["ref", "reference"])]
    request: String,
    /// An age identity file of one of the encrypt_to recipients
    #[arg(long, value_name = "FILE")]
    identity: Option<String>,
    /// A new directory for the bundle (0700): the recordings as .opus, audit.jsonl, README.txt
    #[arg(long, value_name = "DIR")]
    out: String,
    #[command(flatten)]
    place: Where,
}

#[derive(Debug, Args)]
struct SubjectEraseArgs {
    /// The caller's number, in any form
    #[arg(long, value_name = "NUMBER")]
    number: String,
    /// Who serves the request: the DPO of [access] (default: the Unix user running the tool,
    /// named in the logs as unix:USER)
    #[arg(long = "as", value_name = "PERSON")]
    person: Option<String>,
    /// The request's reference (on each recording_erased line)
    #[arg(long, value_name = "REF", visible_aliases = ["ref", "reference"])]
    request: String,
    /// Do not ask for confirmation
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    place: Where,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain of the audit log, across rotated files (R14)
    #[command(
        long_about = "Check the hash chain of the audit log, across rotated files (R14)\n\n\
                      Each line carries the SHA-256 of the line before it, and audit.jsonl.head that of the\n\
                      newest line, so an edited, removed or inserted line breaks the chain. Prints\n\
                      \"audit: N lines, chain intact\", or \"FILE:LINE: reason\" for the first broken line.\n\n\
                      With --store URL (several nodes sharing PostgreSQL), every node's chain as shipped to\n\
                      the store: rows numbered 1..N per node, each row's hash, prev and keyed MAC (--key), and\n\
                      the chain heads anchored there. Prints \"node NODE: N lines, chain intact\" per node, or\n\
                      \"node NODE line N: reason\" for the first break.",
        after_help = "Exit codes:\n  0  chain intact (and every keyed MAC checked when the log is keyed)\n  1  chain broken, or a file could not be read (FILE:0: cannot read)\n  2  usage error\n  3  the hash chain holds but the log is keyed and no --key was given: its MACs were not checked, so it is not called intact"
    )]
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
struct AuditVerifyArgs {
    /// Audit files, oldest first: the rotated audit-YYYY-MM-DD.jsonl, then audit.jsonl
    #[arg(value_name = "FILE", required_unless_present = "store")]
    files: Vec<String>,
    /// Verify every node's chain as shipped to the shared store (postgresql://...) instead of
    /// files: prints "node NODE line N: reason" at the first break
    #[arg(long, value_name = "URL", conflicts_with = "files")]
    store: Option<String>,
    /// The store's password file (default: store_password_file of --config when it names the
    /// same store)
    #[arg(long, value_name = "FILE", requires = "store")]
    store_password_file: Option<String>,
    /// The CA certificate the store's TLS certificate must chain to (default: store_ca of --config)
    #[arg(long, value_name = "FILE", requires = "store")]
    store_ca: Option<String>,
    /// The configuration naming the store (its password file and CA)
    #[arg(long, value_name = "CONF", env = "CALLCONSENT_CONFIG", default_value = access::DEFAULT_CONFIG)]
    config: String,
    /// The installation secret (/var/lib/asterisk/callconsent/secret): every line's keyed MAC
    /// is checked too, which nobody without the secret can recompute after an edit
    #[arg(long, value_name = "SECRET_FILE")]
    key: Option<String>,
    /// A chain head published earlier (Asterisk's log "audit head ...", or the AMI event
    /// CallConsentAudit): it must still be a line of the log, or lines were removed after it.
    /// Needed when the .head file is missing. Repeatable
    #[arg(long, value_name = "HEAD")]
    anchor: Vec<String>,
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// The agent as the audit log names it (its "agent" field), e.g. PJSIP/anna
    #[arg(value_name = "AGENT")]
    agent: String,
    /// Audit files to search (rotated files and audit.jsonl); default: the configuration's
    #[arg(value_name = "FILE")]
    files: Vec<String>,
    #[command(flatten)]
    place: Where,
}

#[derive(Debug, Args)]
struct DescribeArgs {
    /// The module's configuration file: /etc/asterisk/callconsent.conf, or FreeSWITCH's
    /// autoload_configs/callconsent.conf.xml
    #[arg(value_name = "CONF")]
    conf: String,
    /// Language of the description
    #[arg(long, value_name = "LANG", value_parser = ["fr", "en"], default_value = "en")]
    lang: String,
}

#[derive(Debug, Args)]
struct RetentionArgs {
    /// Directory of the kept recordings (searched recursively)
    #[arg(value_name = "SPOOL_KEPT_DIR")]
    dir: String,
    /// Retention period in days (retention_days in the configuration)
    #[arg(value_name = "DAYS")]
    days: u64,
}

#[derive(Debug, Args)]
struct DrawArgs {
    /// The call id (linkedid), the "call" field of the audit log, e.g. 1763800000.12
    #[arg(value_name = "CALL")]
    call: String,
    /// The installation's selection key (readable by root only)
    #[arg(value_name = "SECRET_FILE")]
    secret: String,
    /// Share of calls to record, in percent (record_share of the profile, 0-100)
    #[arg(value_name = "SHARE", value_parser = clap::value_parser!(u8).range(0..=100))]
    share: u8,
}

#[derive(Debug, Subcommand)]
enum ArchiveCommand {
    /// Check an archive's length and consent tags against the audit log
    #[command(
        long_about = "Check an archive's length and consent tags against the audit log\n\n\
                      Decodes FILE.opus and finds the recording_kept line of its call and file in the\n\
                      audit files: the CALLCONSENT_AUDIT tag must be that line's SHA-256, the profile,\n\
                      pauses and agent tags must match it, and the length must be within 50 ms of it.\n\
                      Prints an ok line, or \"FILE: reason\".",
        after_help = "Exit codes:\n  0  the archive matches the audit log\n  1  it does not, or a file could not be read\n  2  usage error"
    )]
    Verify(ArchiveVerifyArgs),
}

#[derive(Debug, Args)]
struct ArchiveVerifyArgs {
    /// The archive, a kept recording in Ogg Opus
    #[arg(value_name = "FILE.opus")]
    file: String,
    /// Audit files holding its recording_kept line (rotated files and audit.jsonl)
    #[arg(value_name = "AUDIT", required = true)]
    audits: Vec<String>,
    /// An age identity file, for an encrypted archive (.opus.age)
    #[arg(long, value_name = "FILE")]
    identity: Option<String>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Audit(AuditCommand::Verify(a)) if a.store.is_some() => audit_verify_store(&a),
        Command::Audit(AuditCommand::Verify(a)) => {
            audit_verify(&strs(&a.files), a.key.as_deref(), &a.anchor)
        }
        Command::Agent(a) => agent(&a.agent, &strs(&a.files), &a.place),
        Command::Describe(a) => describe(&a.conf, &a.lang),
        Command::Retention(a) => retention(&a.dir, a.days),
        Command::Draw(a) => draw(&a.call, &a.secret, a.share),
        Command::Archive(ArchiveCommand::Verify(a)) => {
            archive_verify(&a.file, &strs(&a.audits), a.identity.as_deref())
        }
        Command::Listen(a) => {
            access::listen(&a.place, &listen_of(&a.who, a.player.as_deref(), None))
        }
        Command::Export(a) => {
            let out = a.out.clone().unwrap_or_else(|| ".".into());
            access::listen(&a.place, &listen_of(&a.who, None, Some(&out)))
        }
        Command::Access(AccessCommand::Report(a)) => access::report(&a.place, a.period.as_deref()),
        Command::Identity(IdentityCommand::New(a)) => access::identity_new(&a.file),
        Command::Identity(IdentityCommand::Recipient(a)) => access::identity_recipient(&a.file),
        Command::Subject(SubjectCommand::Find(a)) if shared_store(&a.place).is_some() => {
            shared_subject_find(&a.place, &a.number)
        }
        Command::Subject(SubjectCommand::Find(a)) => access::subject_find(&a.place, &a.number),
        Command::Subject(SubjectCommand::Erase(a)) if shared_store(&a.place).is_some() => {
            shared_subject_erase(&a.place, &a.number, a.person.as_deref(), &a.request, a.yes)
        }
        Command::Subject(SubjectCommand::Export(a)) => access::subject_export(
            &a.place,
            &a.number,
            a.person.as_deref(),
            &a.request,
            a.identity.as_deref(),
            &a.out,
        ),
        Command::Subject(SubjectCommand::Erase(a)) => {
            access::subject_erase(&a.place, &a.number, a.person.as_deref(), &a.request, a.yes)
        }
        Command::Console(a) => console::run(a),
    }
}

/// The configuration's shared store, when it names one (issue 14).
fn shared_store(place: &Where) -> Option<callconsent_core::config::General> {
    access::load_config(&place.config).ok().map(|c| c.general).filter(|g| g.store.is_some())
}

fn audit_verify_store(a: &AuditVerifyArgs) -> ExitCode {
    let key = match a.key.as_deref().map(std::fs::read) {
        None => None,
        Some(Ok(secret)) => Some(audit_key(&secret)),
        Some(Err(e)) => {
            eprintln!("{}: cannot read: {e}", a.key.as_deref().unwrap_or(""));
            return ExitCode::from(1);
        }
    };
    let cfg = access::load_config(&a.config).ok();
    let g = shared::general_for(
        a.store.as_deref().unwrap_or(""),
        cfg.as_ref(),
        a.store_password_file.as_deref(),
        a.store_ca.as_deref(),
    );
    shared::audit_verify(&g, key.as_deref())
}

fn shared_subject_find(place: &Where, number: &str) -> ExitCode {
    let ctx = match access::open(place, true) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match access::subject_hash(&ctx, number) {
        Ok((normal, hash)) => shared::subject_find(&ctx.cfg.general, &normal, &hash),
        Err(e) => fail(e),
    }
}

/// A caller's erasure on every node of the shared store: authorized and logged as on one node,
/// then applied by each node to its own files (each writes its recording_erased lines).
fn shared_subject_erase(
    place: &Where,
    number: &str,
    person: Option<&str>,
    request: &str,
    yes: bool,
) -> ExitCode {
    use std::io::IsTerminal;
    let ctx = match access::open(place, true) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let (normal, hash) = match access::subject_hash(&ctx, number) {
        Ok(h) => h,
        Err(e) => return fail(e),
    };
    let (who, named) = match person {
        Some(p) => (p.to_string(), true),
        None => (
            format!(
                "unix:{}",
                std::env::var("SUDO_USER")
                    .or_else(|_| std::env::var("USER"))
                    .unwrap_or_else(|_| "unknown".into())
            ),
            false,
        ),
    };
    let event = callconsent_core::audit::AccessEvent::SubjectErase;
    if let Err(why) = callconsent_runtime::access::authorize_subject(
        &ctx.cfg, &ctx.store, &who, named, event, request, &hash,
    ) {
        return fail(format!("refused: {why}"));
    }
    if !yes && std::io::stdin().is_terminal() {
        eprint!("erase every recording of {normal} on every node (request {request})? [y/N] ");
        let mut answer = String::new();
        let _ = std::io::stdin().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("callconsent: nothing erased");
            return ExitCode::from(1);
        }
    }
    let code = shared::subject_erase(&ctx.cfg.general, &normal, &hash, &who, request);
    let mut f = serde_json::Map::new();
    f.insert("person".into(), serde_json::json!(who));
    f.insert("role".into(), serde_json::json!(if named { Some("dpo") } else { None }));
    f.insert("request".into(), serde_json::json!(request));
    f.insert("number_hash".into(), serde_json::json!(hash));
    f.insert("nodes".into(), serde_json::json!("all"));
    if let Err(e) = ctx.store.log_access(event, f) {
        return fail(e);
    }
    code
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("callconsent: {msg}");
    ExitCode::from(1)
}

fn listen_of<'a>(
    w: &'a Access,
    player: Option<&'a str>,
    out: Option<&'a str>,
) -> access::Listen<'a> {
    access::Listen {
        recording: &w.recording,
        identity: w.identity.as_deref(),
        person: &w.person,
        purpose: &w.purpose,
        player,
        out,
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// `audit verify`'s exit code when a keyed log was checked without its key (documented in its
/// help and the man page): the chain holds, the MACs were not checked.
pub const UNVERIFIED_MACS: u8 = 3;

fn audit_verify(files: &[&str], key_file: Option<&str>, anchors: &[String]) -> ExitCode {
    let key = match key_file.map(std::fs::read) {
        None => None,
        Some(Ok(secret)) => Some(audit_key(&secret)),
        Some(Err(e)) => {
            eprintln!("{}: cannot read: {e}", key_file.unwrap_or(""));
            return ExitCode::from(1);
        }
    };
    match verify_files_with(files, &Check { key: key.as_deref(), anchors }) {
        Ok(v) if v.unchecked_macs > 0 => {
            // A keyed log verified without its key: whoever can rewrite the file can recompute
            // the SHA-256 chain, so the chain alone proves nothing. Never "intact", and a code of
            // its own so a script that looks for success does not get it.
            println!(
                "audit: {} lines, hash chain consistent, but NOT verified: the keyed MACs of {} lines were not checked \
                 (without them an edit whose hashes were recomputed goes unseen); give --key SECRET_FILE \
                 (the installation secret) to check them",
                v.lines, v.unchecked_macs
            );
            ExitCode::from(UNVERIFIED_MACS)
        }
        Ok(v) => {
            println!("audit: {} lines, chain intact", v.lines);
            if let Some(f) = &v.follows_expired {
                println!("audit: the first file follows {f}, removed by retention (its audit_file_expired line says so)");
            }
            if key.is_some() {
                println!("audit: {} lines carry a valid keyed MAC", v.keyed_lines);
            }
            if v.anchors_found > 0 {
                println!("audit: {} published head(s) found in the chain", v.anchors_found);
            }
            ExitCode::SUCCESS
        }
        Err((file, line, why)) => {
            println!("{file}:{line}: {why}");
            ExitCode::from(1)
        }
    }
}

fn agent(agent: &str, files: &[&str], place: &Where) -> ExitCode {
    let mut n = 0;
    if files.is_empty() {
        if let Some(g) = shared_store(place) {
            // Every node's lines, as shipped to the shared store.
            let lines = match shared::lines(&g) {
                Ok(l) => l,
                Err(e) => return fail(e),
            };
            for (_, _, text, v) in &lines {
                if v["agent"].as_str() == Some(agent) {
                    println!("{text}");
                    n += 1;
                }
            }
            let nodes: std::collections::BTreeSet<&String> = lines.iter().map(|l| &l.0).collect();
            eprintln!("{n} record(s) concern {agent} on {} node(s)", nodes.len());
            return ExitCode::SUCCESS;
        }
    }
    let from_config: Vec<String> = if files.is_empty() {
        match access::load_config(&place.config) {
            Ok(cfg) => callconsent_runtime::access::log_files(&cfg.general.audit_log)
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            Err(e) => {
                eprintln!("callconsent: {e} (give the audit files, or --config)");
                return ExitCode::from(1);
            }
        }
    } else {
        vec![]
    };
    let files: Vec<&str> = if files.is_empty() { strs(&from_config) } else { files.to_vec() };
    let mut printed = std::collections::HashSet::new();
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            eprintln!("{f}: cannot read");
            return ExitCode::from(1);
        };
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            if v["agent"].as_str() == Some(agent) {
                println!("{line}");
                printed.insert(line.to_string());
                n += 1;
            }
        }
    }
    eprintln!("{n} record(s) concern {agent}");
    // R8: what exists about them now, and who listened.
    if std::path::Path::new(&conf::resolve(&place.config)).exists() {
        match access::agent_extra(place, agent) {
            Ok((lines, present, accesses)) => {
                for l in lines.iter().filter(|l| !printed.contains(*l)) {
                    println!("{l}");
                }
                eprintln!("{present} recording(s) of {agent} on disk now; {accesses} access line(s) about them");
            }
            Err(e) => {
                eprintln!("callconsent: {e}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}

fn describe(conf: &str, lang: &str) -> ExitCode {
    match conf::load(conf) {
        Ok(cfg) => {
            print!("{}", describe::describe(&cfg, lang));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn retention(dir: &str, days: u64) -> ExitCode {
    let files = callconsent_runtime::retention::expired(
        std::path::Path::new(dir),
        days,
        std::time::SystemTime::now(),
    );
    for (f, age) in &files {
        println!("would delete {} ({age} days old)", f.display());
    }
    eprintln!("{} file(s) past {days} days (dry run: nothing deleted)", files.len());
    ExitCode::SUCCESS
}

fn draw(call: &str, secret_file: &str, share: u8) -> ExitCode {
    let Ok(secret) = std::fs::read(secret_file) else {
        eprintln!("{secret_file}: cannot read");
        return ExitCode::from(1);
    };
    let d = draw::draw(&secret, call, share);
    println!(
        "call {call}: bucket {} {} share {share} % ({}): {}",
        d.bucket,
        if d.selected { "<" } else { ">=" },
        draw::RULE,
        if d.selected { "selected" } else { "not selected" }
    );
    ExitCode::SUCCESS
}

fn archive_verify(file: &str, audits: &[&str], identity: Option<&str>) -> ExitCode {
    match verify_archive(file, audits, identity) {
        Ok(msg) => {
            println!("{msg}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{file}: {e}");
            ExitCode::from(1)
        }
    }
}

fn verify_archive(file: &str, audits: &[&str], identity: Option<&str>) -> Result<String, String> {
    use callconsent_runtime::archive;
    let path = std::path::Path::new(file);
    let ids = match identity {
        Some(i) => archive::read_identities(std::path::Path::new(i))?,
        None => vec![],
    };
    let a = archive::read_archive_bytes(&archive::open_bytes(path, &ids)?, file)?;
    let tag = |k: &str| a.tag(k).map(str::to_string).ok_or(format!("no {k} tag"));
    let (call, name, hash) =
        (tag("CALLCONSENT_CALL")?, tag("CALLCONSENT_FILE")?, tag("CALLCONSENT_AUDIT")?);
    // Each audit file read once: the kept line is searched here, the archived line below.
    let texts = audits
        .iter()
        .map(|f| std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}")))
        .collect::<Result<Vec<String>, String>>()?;
    for text in &texts {
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            if v["event"] != AuditEvent::RecordingKept.as_str()
                || v["call"] != call.as_str()
                || !v["file"].as_str().is_some_and(|p| p.ends_with(&format!("/{name}")))
            {
                continue;
            }
            if callconsent_runtime::audit::line_hash(line) != hash {
                return Err("CALLCONSENT_AUDIT is not the hash of the recording_kept line".into());
            }
            for (k, field) in
                [("CALLCONSENT_PROFILE", "profile"), ("CALLCONSENT_PAUSES", "pause_spans_ms")]
            {
                if a.tag(k) != v[field].as_str() {
                    return Err(format!(
                        "{k} = {:?} but the audit log says {}",
                        a.tag(k),
                        v[field]
                    ));
                }
            }
            if a.tag("CALLCONSENT_AGENT").unwrap_or("") != v["agent"].as_str().unwrap_or("") {
                return Err("CALLCONSENT_AGENT does not match the audit log".into());
            }
            let expected = v["duration_ms"].as_u64().unwrap_or(0);
            if a.duration_ms.abs_diff(expected) > 50 {
                return Err(format!(
                    "lasts {} ms, the audit log says {expected} ms",
                    a.duration_ms
                ));
            }
            // The bytes on disk are those the encoder wrote (issue 24): its recording_archived
            // line holds their SHA-256.
            let archive_name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let archived = texts
                .iter()
                .flat_map(|t| t.lines())
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| {
                    v["event"] == AuditEvent::RecordingArchived.as_str()
                        && v["call"] == call.as_str()
                        && v["file"]
                            .as_str()
                            .is_some_and(|p| p.ends_with(&format!("/{archive_name}")))
                });
            let sha = match archived.as_ref().and_then(|v| v["sha256"].as_str()) {
                Some(h) => {
                    let raw = std::fs::read(path).map_err(|e| e.to_string())?;
                    if callconsent_runtime::access::sha256_hex(&raw) != h {
                        return Err("its SHA-256 is not the one its recording_archived line holds: the archive was replaced or altered after it was written".into());
                    }
                    ", SHA-256 as written"
                }
                None if archived.is_none() => {
                    return Err(format!(
                        "no recording_archived line names {archive_name}: not an archive the module's encoder wrote (or its line is missing)"
                    ))
                }
                None => "",
            };
            return Ok(format!(
                "{file}: {} ms, tags match the audit log (call {call}, line hash {hash}){sha}",
                a.duration_ms
            ));
        }
    }
    Err(format!("no recording_kept line for call {call} and file {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_positional_contracts_parse() {
        let cli =
            Cli::try_parse_from(["callconsent", "audit", "verify", "a.jsonl", "b.jsonl"]).unwrap();
        assert!(
            matches!(cli.command, Command::Audit(AuditCommand::Verify(a)) if a.files == ["a.jsonl", "b.jsonl"])
        );
        let cli = Cli::try_parse_from(["callconsent", "describe", "c.conf"]).unwrap();
        assert!(matches!(cli.command, Command::Describe(a) if a.lang == "en"));
        let cli = Cli::try_parse_from(["callconsent", "draw", "1.2", "secret", "20"]).unwrap();
        assert!(matches!(cli.command, Command::Draw(a) if a.call == "1.2" && a.share == 20));
        assert!(Cli::try_parse_from(["callconsent", "draw", "1.2", "secret", "101"]).is_err());
        assert!(Cli::try_parse_from(["callconsent", "retention", "dir", "ninety"]).is_err());
        assert!(Cli::try_parse_from(["callconsent", "archive", "verify", "x.opus"]).is_err());
    }
}
