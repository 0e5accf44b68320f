//! `callconsent console`: the DPO's and coaches' web console (issue 13).
//!
//! An HTTP server (HTTPS with `[console] tls_certificate`/`tls_key`; plain HTTP only on
//! loopback) that reads the audit and access logs and the spool, and writes only through the
//! tool's own code (`crate::access`): every listen, export and caller's request is decided by
//! the core's rules, bounded and logged exactly as `callconsent listen|subject ...` do.
use std::collections::HashMap;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::access::{self, Where};

mod auth;
mod html;
mod pages;
mod record;
mod stats;

#[derive(Debug, clap::Args)]
#[command(
    args_conflicts_with_subcommands = true,
    about = "The DPO's and coaches' web console: sign-in, overview, agents, recordings, callers' requests (R5, R6, R8, R15)",
    long_about = "The DPO's and coaches' web console\n\n\
                  Serves, to the people of [access] who have a password line (dpo, coach, agent):\n\
                  Overview (per profile the configured and measured share, opt-outs, exemptions, pauses,\n\
                  deletes per day; the audit chain's status), Agents (recordings against the cap, listens\n\
                  against the bounds; an agent sees only their own page), Recordings (a player that\n\
                  decrypts with --identity after asking the purpose, within the listening bound),\n\
                  Selection explained (the draw replayed, the agent checks), Processing record (R15, in\n\
                  French and English, for print) and Caller requests (find, export, erase; DPO only).\n\
                  Every listen, export and erase goes through the same code as the command line and is\n\
                  written to the access log. HTTPS with [console] tls_certificate and tls_key; plain\n\
                  HTTP only on a loopback address. Set passwords with `callconsent console password NAME`.",
    after_help = "Exit codes:\n  0  stopped (SIGINT or SIGTERM)\n  1  the configuration, the certificate or the address cannot be used\n  2  usage error"
)]
pub struct ConsoleArgs {
    #[command(subcommand)]
    pub command: Option<ConsoleCommand>,
    #[command(flatten)]
    pub place: Where,
    /// An age identity file (of an encrypt_to recipient): recordings are decrypted with it, in memory
    #[arg(long, value_name = "FILE")]
    pub identity: Option<String>,
    /// The address to listen on (default: [console] listen, 127.0.0.1:8470)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Where exports of callers' requests are written (a new directory per request)
    #[arg(long, value_name = "DIR", default_value = "/var/lib/callconsent-console/exports")]
    pub exports: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum ConsoleCommand {
    /// Hash a password for [access]: prints `password = NAME: $argon2id$...`
    #[command(
        long_about = "Hash a password for [access]: prints `password = NAME: $argon2id$...`\n\n\
                      Reads the password from the terminal without echo (twice), or one line of standard input\n\
                      when it is not a terminal. Paste the printed line into the [access] section.",
        after_help = "Exit codes:\n  0  printed\n  1  no password, or the two entries differ\n  2  usage error"
    )]
    Password {
        /// The person of [access] the password is for
        #[arg(value_name = "NAME", default_value = "NAME")]
        name: String,
    },
}

/// The audio of one logged listen: (the session it is for, the Ogg Opus bytes, until when).
pub type Play = (String, Arc<Vec<u8>>, Instant);

/// What the server keeps between requests; the configuration itself is read again on every
/// request (the pages show the live one).
pub struct App {
    pub place: Where,
    pub identity: Option<String>,
    pub tls: bool,
    pub exports: PathBuf,
    pub sessions: auth::Sessions,
    /// Password checks running at once (each holds argon2's 19 MiB buffer).
    pub verifying: Arc<tokio::sync::Semaphore>,
    /// Checked for unknown names (see `auth::dummy_hash`).
    pub dummy_hash: String,
    /// Audio released by a logged listen, for the session that asked: token -> (session, bytes, until).
    pub plays: Mutex<HashMap<String, Play>>,
}

/// Password checks at once: one per core of the machines the console runs on (2 here).
pub const VERIFYING: usize = 2;

pub fn run(a: ConsoleArgs) -> ExitCode {
    if let Some(ConsoleCommand::Password { name }) = &a.command {
        return password(name);
    }
    let cfg = match access::load_config(&a.place.config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let listen = a.listen.clone().unwrap_or_else(|| cfg.console.listen.clone());
    let addr: SocketAddr = match listen.parse() {
        Ok(a) => a,
        Err(e) => return fail(format!("--listen {listen}: not an address:port ({e})")),
    };
    let tls = match (&cfg.console.tls_certificate, &cfg.console.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => return fail("[console] tls_certificate and tls_key go together"),
    };
    if tls.is_none() && !addr.ip().is_loopback() {
        return fail(format!("{addr}: plain HTTP only on a loopback address; give [console] tls_certificate and tls_key to listen there"));
    }
    if !cfg.access.people.iter().any(|p| p.password_hash.is_some()) {
        eprintln!("callconsent: warning: no [access] person has a password line: nobody can sign in (callconsent console password NAME)");
    }
    if let Some(i) = &a.identity {
        if access::fingerprints(i).is_empty() {
            return fail(format!("{i}: no age X25519 identity can be read there"));
        }
    }
    let app = Arc::new(App {
        place: Where { config: a.place.config.clone(), secret: a.place.secret.clone() },
        identity: a.identity.clone(),
        tls: tls.is_some(),
        exports: PathBuf::from(&a.exports),
        sessions: auth::Sessions::default(),
        verifying: Arc::new(tokio::sync::Semaphore::new(VERIFYING)),
        dummy_hash: auth::dummy_hash(),
        plays: Mutex::new(HashMap::new()),
    });
    let rt =
        match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(r) => r,
            Err(e) => return fail(format!("cannot start the runtime: {e}")),
        };
    let result = rt.block_on(serve(app, addr, tls));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn serve(
    app: Arc<App>,
    addr: SocketAddr,
    tls: Option<(PathBuf, PathBuf)>,
) -> Result<(), String> {
    let router = pages::router(app);
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        }
        h.graceful_shutdown(Some(Duration::from_secs(2)));
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let service = router.into_make_service();
    match tls {
        Some((cert, key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(&cert, &key)
                .await
                .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))?;
            let server = axum_server::bind_rustls(addr, config).handle(handle.clone());
            announce(&handle, scheme).await;
            server.serve(service).await.map_err(|e| format!("{addr}: {e}"))
        }
        None => {
            let server = axum_server::bind(addr).handle(handle.clone());
            announce(&handle, scheme).await;
            server.serve(service).await.map_err(|e| format!("{addr}: {e}"))
        }
    }
}

/// Prints the address once the server listens (tests and the journal read it).
async fn announce(handle: &axum_server::Handle, scheme: &'static str) {
    let h = handle.clone();
    tokio::spawn(async move {
        if let Some(a) = h.listening().await {
            eprintln!("callconsent: console listening on {scheme}://{a}/");
        }
    });
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("callconsent: {msg}");
    ExitCode::from(1)
}

/// `console password NAME`.
fn password(name: &str) -> ExitCode {
    let pw = if std::io::stdin().is_terminal() {
        let first = match rpassword::prompt_password(format!("password for {name}: ")) {
            Ok(p) => p,
            Err(e) => return fail(format!("cannot read the password: {e}")),
        };
        match rpassword::prompt_password("again: ") {
            Ok(p) if p == first => first,
            Ok(_) => return fail("the two entries differ"),
            Err(e) => return fail(format!("cannot read the password: {e}")),
        }
    } else {
        let mut line = String::new();
        if let Err(e) = std::io::stdin().read_line(&mut line) {
            return fail(format!("cannot read the password: {e}"));
        }
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if pw.is_empty() {
        return fail("an empty password is not accepted");
    }
    match auth::hash(&pw) {
        Ok(h) => {
            println!("password = {name}: {h}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}
