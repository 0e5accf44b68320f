//! A throwaway PostgreSQL cluster (Debian's `postgresql` package) for the shared store's tests:
//! its own data directory, a loopback port, TLS with a test CA (server certificate for
//! 127.0.0.1), and a `callconsent` role whose password the nodes read from a file.
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub struct Postgres {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    pub password: String,
}

fn pg_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().unwrap_or_else(|| panic!("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb): scripts/sandbox.sh installs Debian's postgresql package"))
}

fn as_postgres(cmd: &mut Command) -> std::process::Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn run(program: &Path, args: &[&str]) -> std::process::Output {
    let out = as_postgres(
        Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args)
            .stdin(Stdio::null()),
    );
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Postgres {
    /// A cluster for tests: fsync off (nothing here survives the test).
    pub fn start(name: &str) -> Postgres {
        Postgres::start_with(name, false)
    }

    /// `fsync`: durable commits, as a production database (the benchmark compares with redb,
    /// which syncs every reservation).
    pub fn start_with(name: &str, fsync: bool) -> Postgres {
        let bin = pg_bin();
        let dir = PathBuf::from(format!("/var/tmp/cc-pg-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("tls")).expect("create the cluster's directory");
        // A test CA and a server certificate for 127.0.0.1, as an admin's own CA would issue.
        let t = dir.join("tls");
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=callconsent test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            &t,
        );
        openssl(
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
            &t,
        );
        fs::write(t.join("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n").expect("write ext.cnf");
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
            &t,
        );
        let st = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown");
        assert!(st.success());
        fs::set_permissions(t.join("server.key"), fs::Permissions::from_mode(0o600))
            .expect("chmod the key");
        let data = dir.join("data");
        run(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        let port = super::free_tcp_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{d}'\nssl = on\nssl_cert_file = '{t}/server.crt'\nssl_key_file = '{t}/server.key'\n\
             fsync = {}\nmax_connections = 50\nshared_buffers = 32MB\nlog_min_messages = warning\n",
            if fsync { "on" } else { "off" },
            d = dir.display(),
            t = t.display()
        );
        let mut text =
            fs::read_to_string(data.join("postgresql.conf")).expect("read postgresql.conf");
        text.push_str(&conf);
        fs::write(data.join("postgresql.conf"), text).expect("write postgresql.conf");
        // Only TLS from the network: a node that tried plain text would be refused.
        fs::write(data.join("pg_hba.conf"), "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n").expect("write pg_hba.conf");
        let pg = Postgres { dir, port, bin, password: format!("pw-{}-{port}", std::process::id()) };
        pg.start_server();
        pg.psql(&format!("CREATE ROLE callconsent LOGIN PASSWORD '{}'", pg.password));
        pg.psql("CREATE DATABASE callconsent OWNER callconsent");
        pg
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    pub fn start_server(&self) {
        run(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &self.data(),
                "-l",
                &self.dir.join("server.log").display().to_string(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// Stops the server (fast: connections are cut, as when a database goes away).
    pub fn stop_server(&self) {
        run(&self.bin.join("pg_ctl"), &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    /// Runs SQL as the superuser on the Unix socket; returns the unaligned, tuples-only output.
    pub fn psql(&self, sql: &str) -> String {
        let out = run(
            &self.bin.join("psql"),
            &[
                "-h",
                &self.dir.display().to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                if sql.starts_with("CREATE DATABASE") || sql.starts_with("CREATE ROLE") {
                    "postgres"
                } else {
                    "callconsent"
                },
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// The URL a node gives `[general] store` (no password in it).
    pub fn url(&self) -> String {
        format!("postgresql://callconsent@127.0.0.1:{}/callconsent?sslmode=require", self.port)
    }

    /// Waits until `sql` returns `want`.
    pub fn wait_for(&self, what: &str, sql: &str, want: &str, timeout: Duration) {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < timeout {
            last = self.psql(sql);
            if last == want {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("{what}: {sql} gave {last:?}, not {want:?}, within {timeout:?}");
    }

    pub fn ca_pem(&self) -> String {
        fs::read_to_string(self.dir.join("tls/ca.crt")).expect("read the CA")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
        let _ = fs::remove_dir_all(&self.dir);
    }
}
