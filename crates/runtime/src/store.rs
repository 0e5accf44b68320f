//! The shared store of several nodes (issue 14): PostgreSQL, reached with its sync client from the
//! runtime's own worker threads (the store worker, the shipper, the DPO's tool), never from a
//! channel's thread. `postgres::Client` drives a current-thread tokio runtime on the calling
//! thread only: it starts no thread of its own as long as the host is an IP address or a socket
//! directory (a host name is resolved on a thread of tokio's blocking pool).
//!
//! What lives there: per-agent caps and listen counts (one atomic statement each), the nodes'
//! audit lines shipped in order (append-only, with the chain heads as anchors), and callers'
//! erasure requests that every node applies to its own files. The schema is created and migrated
//! by whoever connects first (versioned, under an advisory lock).
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use callconsent_core::config::General;

pub use postgres::Client;

/// Every statement and lock wait is bounded: a call's reservation never waits on a stuck database.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
pub const STATEMENT_TIMEOUT_MS: u64 = 2000;

/// How to reach the store: the URL of `[general] store`, the password from its file, TLS.
#[derive(Clone)]
pub struct Pg {
    config: postgres::Config,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The URL without anything secret, for logs and errors.
    pub shown: String,
    pub node: String,
}

/// The node's name: `[general] node`, else the host name.
pub fn node_name(g: &General) -> String {
    g.node.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".into())
    })
}

impl Pg {
    /// None when `[general] store` is not set (the embedded local store).
    pub fn from_general(g: &General) -> Result<Option<Pg>, String> {
        let Some(url) = &g.store else { return Ok(None) };
        let shown = url.split('?').next().unwrap_or("").to_string();
        let mut config: postgres::Config =
            url.parse().map_err(|e| format!("store {shown}: {e}"))?;
        if let Some(f) = &g.store_password_file {
            let pw = std::fs::read_to_string(f)
                .map_err(|e| format!("store_password_file {}: {e}", f.display()))?;
            let pw = pw.trim_end_matches(['\n', '\r']);
            if pw.is_empty() {
                return Err(format!("store_password_file {}: the file is empty", f.display()));
            }
            config.password(pw);
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        config.tcp_user_timeout(Duration::from_secs(4));
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(10));
        config.application_name("callconsent");
        // Server-side bounds on every statement and lock wait of this session.
        config.options(&format!("-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout=1000 -c idle_in_transaction_session_timeout=10000"));
        let wants_tls = !matches!(config.get_ssl_mode(), postgres::config::SslMode::Disable);
        let local = on_this_host(&config);
        if !wants_tls && !local {
            // Passwords and callers' hashes never cross a network in plain text.
            return Err(format!(
                "store {shown}: sslmode=disable is allowed only for a database on this host (localhost, 127.0.0.1, ::1 or a Unix socket); \
                 across a network TLS stays required: remove sslmode=disable and set store_ca to the CA that signed the database's certificate"
            ));
        }
        let tls = if wants_tls || g.store_ca.is_some() {
            Some(Arc::new(tls_config(g.store_ca.as_deref()).map_err(|e| match e {
                TlsError::NoCa if local => format!(
                    "store {shown}: TLS is asked for but no CA certificate is known: set store_ca to the CA that signed the database's certificate, \
                     or, as the database is on this host, add ?sslmode=disable to the store URL"
                ),
                TlsError::NoCa => format!(
                    "store {shown}: TLS is asked for but no CA certificate is known: set store_ca to the CA that signed the database's certificate \
                     (install ca-certificates if it is signed by a public CA)"
                ),
                TlsError::Other(e) => e,
            })?))
        } else {
            None
        };
        if g.store_ca.is_some()
            && matches!(config.get_ssl_mode(), postgres::config::SslMode::Prefer)
        {
            // A CA named means TLS is wanted: never fall back to plain text.
            config.ssl_mode(postgres::config::SslMode::Require);
        }
        Ok(Some(Pg { config, tls, shown, node: node_name(g) }))
    }

    /// One connection (the caller keeps it: a small pool of one per worker thread).
    pub fn connect(&self) -> Result<Client, String> {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &self.tls {
            Some(tls) => {
                self.config.connect(tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone()))
            }
            None => self.config.connect(postgres::NoTls),
        }));
        match r {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(format!("cannot connect to {}: {}", self.shown, error_text(&e))),
            Err(_) => Err(format!("cannot connect to {}: the client failed", self.shown)),
        }
    }
}

/// The database's own message when there is one (rather than "db error").
pub fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.code().code(), d.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(x) = src {
                s.push_str(": ");
                s.push_str(&x.to_string());
                src = x.source();
            }
            s
        }
    }
}

/// Whether every host of the URL is this machine: a loopback address, `localhost` or a Unix
/// socket (a host that is a path).
fn on_this_host(config: &postgres::Config) -> bool {
    use postgres::config::Host;
    let hosts = config.get_hosts();
    !hosts.is_empty()
        && hosts.iter().all(|h| match h {
            Host::Tcp(name) => {
                let name = name.trim_start_matches('[').trim_end_matches(']');
                name.eq_ignore_ascii_case("localhost")
                    || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            }
            Host::Unix(_) => true,
        })
}

/// Why the TLS configuration could not be made.
#[derive(Debug)]
enum TlsError {
    /// Neither store_ca nor the system's CA bundle gives a certificate.
    NoCa,
    Other(String),
}

impl From<String> for TlsError {
    fn from(e: String) -> TlsError {
        TlsError::Other(e)
    }
}

fn tls_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(ca) = ca {
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
            .map_err(|e| format!("store_ca {}: {e}", ca.display()))?;
        for c in certs {
            let c = c.map_err(|e| format!("store_ca {}: {e}", ca.display()))?;
            roots.add(c).map_err(|e| format!("store_ca {}: {e}", ca.display()))?;
        }
    } else {
        // The system's CAs (Debian's ca-certificates).
        let system = "/etc/ssl/certs/ca-certificates.crt";
        if let Ok(certs) = rustls::pki_types::CertificateDer::pem_file_iter(system) {
            for c in certs.flatten() {
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err(TlsError::NoCa);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("store TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(cfg)
}

/// The schema's versions, applied in order, each once; never edited once released.
const MIGRATIONS: &[&str] = &[
    // 1: caps, listens, the shipped audit lines and their anchors, nodes, erasure requests.
    "CREATE TABLE callconsent_caps (agent text NOT NULL, period text NOT NULL, used bigint NOT NULL, PRIMARY KEY (agent, period));
     CREATE TABLE callconsent_listens (agent text NOT NULL, period text NOT NULL, used bigint NOT NULL, PRIMARY KEY (agent, period));
     CREATE TABLE callconsent_audit (node text NOT NULL, seq bigint NOT NULL, line text NOT NULL, hash text NOT NULL,
         shipped_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (node, seq));
     CREATE TABLE callconsent_anchors (node text NOT NULL, seq bigint NOT NULL, hash text NOT NULL,
         at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (node, seq));
     CREATE TABLE callconsent_nodes (node text PRIMARY KEY, pbx text NOT NULL, first_seen timestamptz NOT NULL DEFAULT now(),
         last_seen timestamptz NOT NULL DEFAULT now());
     CREATE TABLE callconsent_erasures (id bigserial PRIMARY KEY, number_hash text NOT NULL, request text NOT NULL,
         by_person text NOT NULL, created timestamptz NOT NULL DEFAULT now());
     CREATE TABLE callconsent_erasures_done (id bigint NOT NULL REFERENCES callconsent_erasures, node text NOT NULL,
         files bigint NOT NULL, at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id, node));
     CREATE FUNCTION callconsent_append_only() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN RAISE EXCEPTION '% is append-only: the audit trail is never edited', TG_TABLE_NAME; END $$;
     CREATE TRIGGER callconsent_audit_append_only BEFORE UPDATE OR DELETE ON callconsent_audit
         FOR EACH ROW EXECUTE FUNCTION callconsent_append_only();
     CREATE TRIGGER callconsent_audit_no_truncate BEFORE TRUNCATE ON callconsent_audit
         FOR EACH STATEMENT EXECUTE FUNCTION callconsent_append_only();
     CREATE TRIGGER callconsent_anchors_append_only BEFORE UPDATE OR DELETE ON callconsent_anchors
         FOR EACH ROW EXECUTE FUNCTION callconsent_append_only();",
];

pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Creates or migrates the schema; returns its version. Two nodes starting at once take turns
/// (a transaction-level advisory lock); a database newer than this module is refused.
pub fn migrate(c: &mut Client) -> Result<i32, String> {
    let mut t = c.transaction().map_err(|e| error_text(&e))?;
    t.execute("SELECT pg_advisory_xact_lock(7336001)", &[]).map_err(|e| error_text(&e))?;
    t.batch_execute("CREATE TABLE IF NOT EXISTS callconsent_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        .map_err(|e| error_text(&e))?;
    let have: i32 = t
        .query_one("SELECT coalesce(max(version), 0) FROM callconsent_schema", &[])
        .map_err(|e| error_text(&e))?
        .get(0);
    if have > SCHEMA_VERSION {
        return Err(format!("the store's schema is version {have}, newer than this module's {SCHEMA_VERSION}: upgrade the module"));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(have as usize) {
        let v = i as i32 + 1;
        t.batch_execute(sql).map_err(|e| format!("migration {v}: {}", error_text(&e)))?;
        t.execute("INSERT INTO callconsent_schema (version) VALUES ($1)", &[&v])
            .map_err(|e| error_text(&e))?;
    }
    t.commit().map_err(|e| error_text(&e))?;
    Ok(SCHEMA_VERSION)
}

/// Reserves one of `max` for `agent` in `period` in `table` (caps or listens), atomically across
/// nodes: no row back means the bound is reached. Returns the count after the attempt and whether
/// it was reserved.
fn reserve_in(
    c: &mut Client,
    table: &str,
    agent: &str,
    period: &str,
    max: u64,
) -> Result<(u64, bool), String> {
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let sql = format!(
        "INSERT INTO {table} AS c (agent, period, used) VALUES ($1, $2, 1) \
         ON CONFLICT (agent, period) DO UPDATE SET used = c.used + 1 WHERE c.used < $3 RETURNING used"
    );
    let rows = c.query(&sql, &[&agent, &period, &max]).map_err(|e| error_text(&e))?;
    match rows.first() {
        Some(r) => Ok((r.get::<_, i64>(0) as u64, true)),
        None => {
            let used: i64 = c
                .query_opt(
                    &format!("SELECT used FROM {table} WHERE agent = $1 AND period = $2"),
                    &[&agent, &period],
                )
                .map_err(|e| error_text(&e))?
                .map(|r| r.get(0))
                .unwrap_or(max);
            Ok((used as u64, false))
        }
    }
}

pub fn reserve_cap(
    c: &mut Client,
    agent: &str,
    period: &str,
    max: u64,
) -> Result<(u64, bool), String> {
    reserve_in(c, "callconsent_caps", agent, period, max)
}

/// A listen of `agent`'s calls (max 0: no maximum, counted all the same).
pub fn reserve_listen(
    c: &mut Client,
    agent: &str,
    period: &str,
    max: u64,
) -> Result<(u64, bool), String> {
    reserve_in(c, "callconsent_listens", agent, period, if max == 0 { u64::MAX / 2 } else { max })
}

pub fn listens(c: &mut Client, agent: &str, period: &str) -> Result<u64, String> {
    let r = c
        .query_opt(
            "SELECT used FROM callconsent_listens WHERE agent = $1 AND period = $2",
            &[&agent, &period],
        )
        .map_err(|e| error_text(&e))?;
    Ok(r.map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0))
}

/// Adds reservations made on one node while the store was away (they happened: no bound).
pub fn add_caps(c: &mut Client, counted: &[(String, String, u64)]) -> Result<(), String> {
    let mut t = c.transaction().map_err(|e| error_text(&e))?;
    for (agent, period, n) in counted {
        let n = *n as i64;
        t.execute(
            "INSERT INTO callconsent_caps AS c (agent, period, used) VALUES ($1, $2, $3) ON CONFLICT (agent, period) DO UPDATE SET used = c.used + $3",
            &[agent, period, &n],
        )
        .map_err(|e| error_text(&e))?;
    }
    t.commit().map_err(|e| error_text(&e))
}

/// The last line of `node` the store acknowledged: (seq, hash).
pub fn last_shipped(c: &mut Client, node: &str) -> Result<Option<(i64, String)>, String> {
    let r = c
        .query_opt(
            "SELECT seq, hash FROM callconsent_audit WHERE node = $1 ORDER BY seq DESC LIMIT 1",
            &[&node],
        )
        .map_err(|e| error_text(&e))?;
    Ok(r.map(|r| (r.get(0), r.get(1))))
}

/// Ships lines `first_seq`.. of `node` in one transaction, with the head as an anchor. Committed
/// means acknowledged: a line is then never shipped again.
pub fn ship(
    c: &mut Client,
    node: &str,
    pbx: &str,
    first_seq: i64,
    lines: &[(String, String)],
) -> Result<(), String> {
    let mut t = c.transaction().map_err(|e| error_text(&e))?;
    let seqs: Vec<i64> = (0..lines.len() as i64).map(|i| first_seq + i).collect();
    let texts: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
    let hashes: Vec<&str> = lines.iter().map(|(_, h)| h.as_str()).collect();
    t.execute(
        "INSERT INTO callconsent_audit (node, seq, line, hash) SELECT $1, s, l, h FROM unnest($2::bigint[], $3::text[], $4::text[]) AS u(s, l, h)",
        &[&node, &seqs, &texts, &hashes],
    )
    .map_err(|e| error_text(&e))?;
    if let (Some(seq), Some(h)) = (seqs.last(), hashes.last()) {
        t.execute("INSERT INTO callconsent_anchors (node, seq, hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", &[&node, seq, h]).map_err(|e| error_text(&e))?;
    }
    t.execute(
        "INSERT INTO callconsent_nodes (node, pbx) VALUES ($1, $2) ON CONFLICT (node) DO UPDATE SET last_seen = now(), pbx = $2",
        &[&node, &pbx],
    )
    .map_err(|e| error_text(&e))?;
    t.commit().map_err(|e| error_text(&e))
}

pub fn heartbeat(c: &mut Client, node: &str, pbx: &str) -> Result<(), String> {
    c.execute("INSERT INTO callconsent_nodes (node, pbx) VALUES ($1, $2) ON CONFLICT (node) DO UPDATE SET last_seen = now(), pbx = $2", &[&node, &pbx])
        .map(|_| ())
        .map_err(|e| error_text(&e))
}

/// One shipped line.
#[derive(Debug, Clone)]
pub struct Shipped {
    pub node: String,
    pub seq: i64,
    pub line: String,
    pub hash: String,
}

/// Every shipped line, by node then sequence.
pub fn all_lines(c: &mut Client) -> Result<Vec<Shipped>, String> {
    let rows = c
        .query("SELECT node, seq, line, hash FROM callconsent_audit ORDER BY node, seq", &[])
        .map_err(|e| error_text(&e))?;
    Ok(rows
        .into_iter()
        .map(|r| Shipped { node: r.get(0), seq: r.get(1), line: r.get(2), hash: r.get(3) })
        .collect())
}

/// The anchored heads: (node, seq, hash).
pub fn anchors(c: &mut Client) -> Result<Vec<(String, i64, String)>, String> {
    let rows = c
        .query("SELECT node, seq, hash FROM callconsent_anchors ORDER BY node, seq", &[])
        .map_err(|e| error_text(&e))?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
}

/// Nodes seen within `secs` seconds (they apply erasure requests).
pub fn live_nodes(c: &mut Client, secs: i64) -> Result<Vec<String>, String> {
    let rows = c
        .query("SELECT node FROM callconsent_nodes WHERE last_seen > now() - make_interval(secs => $1::double precision) ORDER BY node", &[&(secs as f64)])
        .map_err(|e| error_text(&e))?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

/// A caller's erasure request for every node; returns its id.
pub fn request_erasure(
    c: &mut Client,
    number_hash: &str,
    request: &str,
    by: &str,
) -> Result<i64, String> {
    let r = c
        .query_one("INSERT INTO callconsent_erasures (number_hash, request, by_person) VALUES ($1, $2, $3) RETURNING id", &[&number_hash, &request, &by])
        .map_err(|e| error_text(&e))?;
    Ok(r.get(0))
}

/// Erasure requests `node` has not applied yet: (id, number_hash, request, by).
pub fn pending_erasures(
    c: &mut Client,
    node: &str,
) -> Result<Vec<(i64, String, String, String)>, String> {
    let rows = c
        .query(
            "SELECT e.id, e.number_hash, e.request, e.by_person FROM callconsent_erasures e \
             WHERE NOT EXISTS (SELECT 1 FROM callconsent_erasures_done d WHERE d.id = e.id AND d.node = $1) ORDER BY e.id",
            &[&node],
        )
        .map_err(|e| error_text(&e))?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect())
}

pub fn erasure_done(c: &mut Client, id: i64, node: &str, files: u64) -> Result<(), String> {
    c.execute("INSERT INTO callconsent_erasures_done (id, node, files) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", &[&id, &node, &(files as i64)])
        .map(|_| ())
        .map_err(|e| error_text(&e))
}

/// Which nodes applied erasure `id`, with the number of files each deleted.
pub fn erasure_status(c: &mut Client, id: i64) -> Result<Vec<(String, u64)>, String> {
    let rows = c
        .query(
            "SELECT node, files FROM callconsent_erasures_done WHERE id = $1 ORDER BY node",
            &[&id],
        )
        .map_err(|e| error_text(&e))?;
    Ok(rows.into_iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use callconsent_core::config::Defaults;

    fn general(url: &str, ca: Option<&Path>) -> General {
        let mut g = General::defaults(&Defaults {
            spool_dir: "/tmp/s".into(),
            audit_log: "/tmp/a.jsonl".into(),
        });
        g.store = Some(url.into());
        g.store_ca = ca.map(Path::to_path_buf);
        g
    }

    fn refusal(url: &str, ca: Option<&Path>) -> String {
        match Pg::from_general(&general(url, ca)) {
            Err(e) => e,
            Ok(_) => panic!("{url} was accepted"),
        }
    }

    #[test]
    fn plain_text_only_to_a_database_on_this_host() {
        for url in [
            "postgresql://cc@127.0.0.1/cc?sslmode=disable",
            "postgresql://cc@localhost:5433/cc?sslmode=disable",
            "postgresql://cc@[::1]/cc?sslmode=disable",
            "postgresql://cc@%2Fvar%2Frun%2Fpostgresql/cc?sslmode=disable",
        ] {
            assert!(Pg::from_general(&general(url, None)).is_ok_and(|p| p.is_some()), "{url}");
        }
        let e = refusal("postgresql://cc@db.example/cc?sslmode=disable", None);
        assert!(
            e.contains("sslmode=disable is allowed only for a database on this host")
                && e.contains("set store_ca"),
            "{e}"
        );
        assert!(
            e.starts_with("store postgresql://cc@db.example/cc:"),
            "the URL is named, without its query: {e}"
        );
    }

    #[test]
    fn no_ca_names_both_fixes_on_this_host_and_only_store_ca_across_a_network() {
        let dir = std::env::temp_dir().join(format!("cc-store-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = refusal("postgresql://cc@127.0.0.1/cc?sslmode=require", Some(&empty));
        assert!(
            e.contains("TLS is asked for but no CA certificate is known: set store_ca")
                && e.contains("add ?sslmode=disable"),
            "{e}"
        );
        let e = refusal("postgresql://cc@db.example/cc?sslmode=require", Some(&empty));
        assert!(
            e.contains("TLS is asked for but no CA certificate is known: set store_ca")
                && !e.contains("sslmode=disable"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
