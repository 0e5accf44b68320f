//! `callconsent console` over plain HTTP on loopback, without a browser: the sign-in's CSRF
//! token and lock-out, the cookies' flags, sessions and CSRF on every POST, roles on the URLs,
//! the refusal of plain HTTP off loopback, and `console password`.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Console(Child, u16);

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_callconsent"))
}

fn password_line(name: &str, pw: &str) -> String {
    let mut c = bin()
        .args(["console", "password", name])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run console password");
    c.stdin.take().expect("stdin").write_all(format!("{pw}\n").as_bytes()).expect("write");
    let o = c.wait_with_output().expect("console password");
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn setup(name: &str) -> (TempDir, PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("callconsent-console-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("log")).expect("tmp");
    let conf = format!(
        "[general]\nspool_dir = {d}/spool\naudit_log = {d}/log/audit.jsonl\n\n[sales]\nnotice = n\nfull_notice = f\noptout_confirm = c\nrecord_share = 20\n\n\
         [access]\ndpo = claire\ncoach = marc: PJSIP/anna\n{}\n{}\n\n[console]\nmax_failed_signins = 2\nlockout_seconds = 60\n",
        password_line("claire", "claire-pw"),
        password_line("marc", "marc-pw"),
        d = dir.display()
    );
    let conf_path = dir.join("callconsent.conf");
    std::fs::write(&conf_path, conf).expect("write the config");
    (TempDir(dir), conf_path)
}

fn start(conf: &Path) -> Console {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let mut child = bin()
        .args([
            "console",
            "--config",
            &conf.display().to_string(),
            "--secret",
            "/nonexistent",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the console");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let t = Instant::now();
    loop {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            if l.contains("console listening on http://127.0.0.1:") {
                break;
            }
        }
        assert!(t.elapsed() < Duration::from_secs(20), "the console did not start");
    }
    Console(child, port)
}

/// One request; (status, head, body).
fn http(port: u16, method: &str, path: &str, cookie: &str, form: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn set_cookie(head: &str, name: &str) -> Option<String> {
    head.lines()
        .filter_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

fn value(cookie: &str) -> String {
    cookie
        .split(';')
        .next()
        .unwrap_or("")
        .split_once('=')
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

fn hidden_csrf(body: &str) -> String {
    body.split("name=csrf value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or("")
        .to_string()
}

/// A sign-in form's CSRF pair: (cookie header, token).
fn pre(port: u16) -> (String, String) {
    let (st, head, body) = http(port, "GET", "/signin", "", "");
    assert_eq!(st, 200);
    let c = set_cookie(&head, "cc_pre").expect("the sign-in form's cookie");
    (format!("cc_pre={}", value(&c)), hidden_csrf(&body))
}

fn sign_in(port: u16, name: &str, pw: &str) -> (u16, String, String) {
    let (cookie, token) = pre(port);
    http(port, "POST", "/signin", &cookie, &format!("csrf={token}&name={name}&password={pw}"))
}

#[test]
fn sign_in_sessions_csrf_lockout_and_roles() {
    let (_dir, conf) = setup("web");
    let c = start(&conf);
    let port = c.1;
    // Nothing without a session.
    let (st, head, _) = http(port, "GET", "/overview", "", "");
    assert!(st == 303 && head.to_ascii_lowercase().contains("location: /signin"), "{head}");
    // The sign-in form's cookie: HttpOnly, SameSite=Strict, Path=/, not Secure on plain HTTP.
    let (_, head, _) = http(port, "GET", "/signin", "", "");
    let c1 = set_cookie(&head, "cc_pre").expect("cookie");
    assert!(
        c1.contains("HttpOnly")
            && c1.contains("SameSite=Strict")
            && c1.contains("Path=/")
            && !c1.contains("Secure"),
        "{c1}"
    );
    assert!(!head.to_ascii_lowercase().contains("strict-transport-security"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    // A sign-in without the form's token is refused, even with the right password.
    let (st, _, body) = http(port, "POST", "/signin", "", "name=claire&password=claire-pw");
    assert!(st == 403 && body.contains("CSRF"), "{st} {body}");
    // Two failures lock the name; then even the right password is refused, for that name only.
    let (st, _, body) = sign_in(port, "marc", "nope");
    assert!(st == 401 && body.contains("Wrong name or password."), "{body}");
    let (_, _, body) = sign_in(port, "marc", "nope");
    assert!(body.contains("locked for 60 second(s)"), "{body}");
    let (st, _, body) = sign_in(port, "marc", "marc-pw");
    assert!(st == 403 && body.contains("locked"), "{body}");
    // The DPO signs in: a session cookie with the flags.
    let (st, head, _) = sign_in(port, "claire", "claire-pw");
    assert_eq!(st, 303, "{head}");
    let sc = set_cookie(&head, "cc_session").expect("the session cookie");
    assert!(
        sc.contains("HttpOnly") && sc.contains("SameSite=Strict") && sc.contains("Max-Age=1800"),
        "{sc}"
    );
    let cookie = format!("cc_session={}", value(&sc));
    let (st, _, body) = http(port, "GET", "/requests", &cookie, "");
    assert_eq!(st, 200, "{body}");
    let token = hidden_csrf(&body);
    assert_eq!(token.len(), 64);
    // Every POST checks the session's token.
    let (st, _, body) =
        http(port, "POST", "/requests", &cookie, "action=erase&number=0612345678&request=R1");
    assert!(st == 403 && body.contains("CSRF"), "{body}");
    let (st, _, body) = http(
        port,
        "POST",
        "/requests",
        &cookie,
        &format!("csrf={}x&action=erase&number=0612345678&request=R1", &token[..63]),
    );
    assert!(st == 403 && body.contains("CSRF"), "{body}");
    // With the token: the secret is needed to find a caller (as for `subject`), and said so.
    let (st, _, body) = http(
        port,
        "POST",
        "/requests",
        &cookie,
        &format!("csrf={token}&action=find&number=0612345678&request=R1"),
    );
    assert!(st == 500 && body.contains("installation secret"), "{st} {body}");
    // An unknown recording id, a foreign play token.
    assert_eq!(http(port, "GET", "/recordings/0123456789abcdef", &cookie, "").0, 404);
    assert_eq!(http(port, "GET", "/play/abc", &cookie, "").0, 403);
    // The processing record, both languages, from the live configuration.
    let (_, _, body) = http(port, "GET", "/record", &cookie, "");
    assert!(
        body.contains("sales: 20 %") && body.contains("not set: give [general] controller"),
        "{body}"
    );
    let (_, _, body) = http(port, "GET", "/record?lang=fr", &cookie, "");
    assert!(body.contains("Registre des traitements") && body.contains("sales : 20 %"), "{body}");
    // Sign out (with the token): the session is gone.
    assert_eq!(http(port, "POST", "/signout", &cookie, &format!("csrf={token}")).0, 303);
    assert_eq!(http(port, "GET", "/requests", &cookie, "").0, 303);
}

#[test]
fn a_coach_is_refused_the_dpos_pages() {
    let (_dir, conf) = setup("coach");
    let c = start(&conf);
    let (st, head, _) = sign_in(c.1, "marc", "marc-pw");
    assert_eq!(st, 303);
    let cookie = format!("cc_session={}", value(&set_cookie(&head, "cc_session").expect("cookie")));
    let (st, _, body) = http(c.1, "GET", "/requests", &cookie, "");
    assert!(st == 403 && body.contains("served by the DPO"), "{body}");
    let (st, _, body) = http(c.1, "GET", "/agent?name=PJSIP%2Fbob", &cookie, "");
    assert!(st == 403 && body.contains("not in marc&#39;s team"), "{body}");
    assert_eq!(http(c.1, "GET", "/agent?name=PJSIP%2Fanna", &cookie, "").0, 200);
}

#[test]
fn plain_http_is_refused_off_loopback_and_passwords_hash() {
    let (_dir, conf) = setup("plain");
    let o = bin()
        .args(["console", "--config", &conf.display().to_string(), "--listen", "0.0.0.0:8471"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("plain HTTP only on a loopback address"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let line = password_line("anna", "pw");
    assert!(line.starts_with("password = anna: $argon2id$v=19$"), "{line}");
    let mut c = bin()
        .args(["console", "password", "anna"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    drop(c.stdin.take());
    assert_eq!(c.wait().ok().and_then(|s| s.code()), Some(1), "an empty password is refused");
}

#[test]
fn with_a_certificate_it_serves_https_and_the_cookies_are_secure() {
    let (dir, conf) = setup("tls");
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (scripts/sandbox.sh installs it)");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let text = std::fs::read_to_string(&conf).expect("the config")
        + &format!(
            "listen = 127.0.0.1:{port}\ntls_certificate = {}\ntls_key = {}\n",
            cert.display(),
            key.display()
        );
    std::fs::write(&conf, text).expect("write the config");
    let mut child = bin()
        .args(["console", "--config", &conf.display().to_string(), "--secret", "/nonexistent"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let err = child.stderr.take().expect("stderr");
    let c = Console(child, port);
    let mut lines = BufReader::new(err).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(first.contains(&format!("console listening on https://127.0.0.1:{port}/")), "{first}");
    let o = Command::new("curl")
        .args(["-sk", "-i", &format!("https://127.0.0.1:{}/signin", c.1)])
        .output()
        .expect("curl (scripts/sandbox.sh installs it)");
    let out = String::from_utf8_lossy(&o.stdout).to_ascii_lowercase();
    assert!(out.starts_with("http/2 200") || out.starts_with("http/1.1 200"), "{out}");
    let cookie =
        out.lines().find(|l| l.starts_with("set-cookie: cc_pre=")).unwrap_or_default().to_string();
    assert!(
        cookie.contains("; secure")
            && cookie.contains("httponly")
            && cookie.contains("samesite=strict"),
        "{cookie}"
    );
    // HSTS under TLS (issue 24); never on plain HTTP (the other tests' console).
    assert!(out.contains("strict-transport-security: max-age=31536000"), "{out}");
    // Plain HTTP to the HTTPS port gets no page.
    let (st, _, _) = http(c.1, "GET", "/signin", "", "");
    assert_ne!(st, 200);
}

/// Issue 24 (5): 40 wrong passwords for one name sent at once, then the right one, with
/// `max_failed_signins = 2`: at most two of them are checked, the name is locked, and the right
/// password does not get in. An unknown name is answered as a wrong password is (same status,
/// same page), after a password check of its own.
#[test]
fn concurrent_wrong_sign_ins_lock_the_name_before_the_right_one() {
    let (_dir, conf) = setup("concurrent");
    let c = start(&conf);
    let port = c.1;
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..40)
            .map(|i| {
                s.spawn(move || {
                    let (st, _, body) = sign_in(port, "marc", &format!("wrong-{i}"));
                    (st, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("a sign-in")).collect()
    });
    let checked = answers.iter().filter(|(st, _)| *st == 401).count();
    assert!(checked <= 2, "{checked} wrong passwords were checked with max_failed_signins = 2");
    assert!(answers.iter().all(|(st, b)| *st == 401 || (*st == 403 && b.contains("locked"))));
    let (st, head, body) = sign_in(port, "marc", "marc-pw");
    assert!(st == 403 && body.contains("locked"), "the right password got in: {st} {head}");
    assert!(set_cookie(&head, "cc_session").is_none());
    // Unknown and known names fail alike.
    let (st_unknown, _, b_unknown) = sign_in(port, "nobody-here", "x");
    let (st_known, _, b_known) = sign_in(port, "claire", "x");
    assert_eq!((st_unknown, st_known), (401, 401));
    let reason = |b: &str| {
        b.split("id=reason>").nth(1).map(|r| r.split('<').next().unwrap_or("").to_string())
    };
    assert_eq!(reason(&b_unknown), reason(&b_known));
}

/// Issue 24 (10): a session ends when its person's password changes in `[access]` (the
/// configuration is read again on every request), as when the person is removed.
#[test]
fn a_password_change_ends_the_sessions_opened_with_the_old_one() {
    let (_dir, conf) = setup("pwchange");
    let c = start(&conf);
    let port = c.1;
    let (st, head, _) = sign_in(port, "claire", "claire-pw");
    assert_eq!(st, 303, "{head}");
    let cookie =
        format!("cc_session={}", value(&set_cookie(&head, "cc_session").expect("a session")));
    assert_eq!(http(port, "GET", "/requests", &cookie, "").0, 200);
    let text = std::fs::read_to_string(&conf).expect("read the config");
    let old = text
        .lines()
        .find(|l| l.starts_with("password = claire:"))
        .expect("claire's line")
        .to_string();
    std::fs::write(&conf, text.replace(&old, &password_line("claire", "a-new-password")))
        .expect("write");
    let (st, head, _) = http(port, "GET", "/requests", &cookie, "");
    assert!(st == 303 && head.to_ascii_lowercase().contains("location: /signin"), "{st} {head}");
    // The new password opens a new session.
    assert_eq!(sign_in(port, "claire", "a-new-password").0, 303);
}
