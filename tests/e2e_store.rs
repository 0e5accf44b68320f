//! Several nodes, one policy (issue 14): two sandbox Asterisks (run as the `asterisk` user) share
//! a real PostgreSQL (Debian's package, a throwaway cluster, TLS to a test CA, the password read
//! from a file). Caps hold across both nodes under load, every node's audit lines reach the store
//! in order and `audit verify --store` finds the node and line of an edited row, a caller's
//! erasure is applied by every node, calls follow `store_unavailable` while the database is
//! stopped and the shipped log catches up after, and a kill -9 loses no acknowledged line.
mod harness;

use std::process::{Command, Output};
use std::time::Duration;

use harness::pg::Postgres;
use harness::*;

fn dialplan() -> String {
    format!(
        "[test]\nexten => _call-X,1,Answer()\n same => n,CallConsent(shared)\n same => n,Dial(Local/desk-${{EXTEN:5}}@test)\n\
         exten => _soft-X,1,Answer()\n same => n,CallConsent(lenient)\n same => n,Dial(Local/desk-${{EXTEN:5}}@test)\n\
         exten => _caller-.,1,Answer()\n same => n,Set(CALLERID(num)=${{EXTEN:7}})\n same => n,CallConsent(shared)\n same => n,Dial(Local/desk-9@test)\n\
         exten => _desk-X,1,Answer()\n same => n,Playback({tone})\n same => n,Hangup()\n\
         exten => long,1,Answer()\n same => n,CallConsent(shared)\n same => n,Dial(Local/talk@test)\n\
         exten => talk,1,Answer()\n same => n,Wait(20)\n\
         exten => dev,1,Wait(120)\n",
        tone = sound("agent-880-05s", 880, 0.5)
    )
}

/// A node of the store: its configuration names the store, the password file and the CA.
fn node(name: &str, pg: &Postgres, secret: Option<&[u8]>) -> Pbx {
    node_with(name, pg, secret, "wav", "")
}

/// As `node`, with more of callconsent.conf (an [access] section, archive = opus).
fn node_with(name: &str, pg: &Postgres, secret: Option<&[u8]>, archive: &str, extra: &str) -> Pbx {
    let profiles = format!(
        "{}{}",
        profile("shared", 100, "start_tone = off\nmax_per_agent = 10\ncap_period = day\n"),
        profile("lenient", 100, "start_tone = off\nmax_per_agent = 10\ncap_period = day\nstore_unavailable = local\nstore_local_seconds = 600\n")
    );
    let conf = consent_conf(&format!("{extra}\n{profiles}")).replace(
        "archive = wav\n",
        &format!("archive = {archive}\nstore = {}\nstore_password_file = {{D}}/etc/store.pw\nstore_ca = {{D}}/etc/store-ca.pem\nnode = {name}\ndefault_country = FR\n", pg.url()),
    );
    let mut b = Pbx::builder(&format!("store-{name}"))
        .file("callconsent.conf", &conf)
        .file("extensions.conf", &dialplan())
        .file("store.pw", &format!("{}\n", pg.password))
        .file("store-ca.pem", &pg.ca_pem())
        .as_asterisk_user();
    if let Some(s) = secret {
        // The nodes of one installation share its secret: one draw, one number hash.
        b = b.var_file("callconsent/secret", s);
    }
    let pbx = b.start();
    std::fs::copy(project_dir().join("target/release/callconsent"), pbx.path("callconsent"))
        .expect("copy the DPO's tool into the sandbox");
    pbx
}

fn tool(pbx: &Pbx, args: &[&str]) -> Output {
    Command::new("chroot")
        .arg(&pbx.root)
        .arg(format!("{}/callconsent", pbx.cdir))
        .args(args)
        .args(["--config", &format!("{}/etc/callconsent.conf", pbx.cdir)])
        .output()
        .expect("run the DPO's tool in the sandbox")
}

fn with_secret(pbx: &Pbx, args: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    v.extend(["--secret".to_string(), format!("{}/db/callconsent/secret", pbx.cdir)]);
    v
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn local_lines(pbx: &Pbx) -> Vec<String> {
    std::fs::read_to_string(pbx.audit_path())
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until the store holds exactly the node's local lines, in order, numbered 1..N.
fn wait_shipped(pg: &Postgres, pbx: &Pbx, node: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let local = local_lines(pbx);
        let stored = pg.psql(&format!("SELECT count(*), coalesce(min(seq), 0), coalesce(max(seq), 0) FROM callconsent_audit WHERE node = '{node}'"));
        if stored == format!("{n}|{}|{n}", if local.is_empty() { 0 } else { 1 }, n = local.len()) {
            let rows = store_lines(pg, node);
            assert_eq!(
                rows, local,
                "node {node}: the store's lines are not the local log's, in order"
            );
            return rows;
        }
        let last = format!("store {stored}, local {} lines", local.len());
        assert!(
            std::time::Instant::now() < deadline,
            "node {node}: the store did not catch up in 30 s ({last})\n{}",
            pbx.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn store_lines(pg: &Postgres, node: &str) -> Vec<String> {
    // One line per row: the lines are JSON, they hold no raw newline.
    pg.psql(&format!("SELECT line FROM callconsent_audit WHERE node = '{node}' ORDER BY seq"))
        .lines()
        .map(str::to_string)
        .collect()
}

fn count(pbx: &Pbx, event: &str, agent: &str) -> usize {
    pbx.audit().iter().filter(|v| v["event"] == event && v["agent"] == agent).count()
}

#[test]
fn two_nodes_share_caps_the_trail_and_erasures() {
    let pg = Postgres::start("two");
    let mut a = node("a", &pg, None);
    let secret = std::fs::read(a.path("db/callconsent/secret")).expect("node a's secret");
    let mut b = node("b", &pg, Some(&secret));
    assert_eq!(
        pg.psql("SELECT max(version) FROM callconsent_schema"),
        "1",
        "the module creates the schema"
    );
    pg.wait_for(
        "both nodes connected",
        "SELECT count(*) FROM callconsent_nodes",
        "2",
        Duration::from_secs(15),
    );

    // 200 calls at once, 100 on each node, to 4 agents capped at 10 a day each.
    std::thread::scope(|s| {
        for (pbx, offset) in [(&a, 0), (&b, 1)] {
            s.spawn(move || {
                for i in 0..100 {
                    pbx.originate(&format!("Local/call-{}@test", 1 + (i + offset) % 4), "dev@test");
                }
            });
        }
    });
    a.wait_settled(100, Duration::from_secs(180));
    b.wait_settled(100, Duration::from_secs(180));
    for agent in 1..=4 {
        let name = format!("Local/desk-{agent}@test");
        let cleared = count(&a, "agent_cleared", &name) + count(&b, "agent_cleared", &name);
        let vetoed = count(&a, "agent_vetoed", &name) + count(&b, "agent_vetoed", &name);
        assert_eq!((cleared, vetoed), (10, 40), "{name}: recorded exactly 10 across the two nodes");
        assert_eq!(
            pg.psql(&format!("SELECT used FROM callconsent_caps WHERE agent = '{name}'")),
            "10"
        );
    }
    let kept =
        a.audit().iter().chain(b.audit().iter()).filter(|v| v["event"] == "recording_kept").count();
    assert_eq!(kept, 40);
    assert!(a
        .audit()
        .iter()
        .chain(b.audit().iter())
        .filter(|v| v["event"] == "agent_vetoed")
        .all(|v| v["reason"].as_str().is_some_and(|r| r.starts_with("cap reached: 10 of 10"))));

    // Every line of both nodes is in the store, in order, and the chains verify from there.
    wait_shipped(&pg, &a, "a");
    wait_shipped(&pg, &b, "b");
    let key = format!("{}/db/callconsent/secret", a.cdir);
    let url = pg.url();
    let ok = tool(&a, &["audit", "verify", "--store", &url, "--key", &key]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains("node a: ")
            && text(&ok).contains("node b: ")
            && text(&ok).contains("chain intact"),
        "{}",
        text(&ok)
    );
    assert!(!text(&ok).contains(&pg.password), "the password is never printed");

    // A caller reached on both nodes, in two forms of one number: one request erases both.
    let files_before = |p: &Pbx| files_under(&p.path("spool/callconsent/kept")).len();
    let (fa, fb) = (files_before(&a), files_before(&b));
    a.originate("Local/caller-0612345678@test", "dev@test");
    b.originate("Local/caller-+33612345678@test", "dev@test");
    a.wait_settled(101, Duration::from_secs(30));
    b.wait_settled(101, Duration::from_secs(30));
    assert_eq!(
        (files_before(&a), files_before(&b)),
        (fa + 1, fb + 1),
        "each node kept the caller's call"
    );
    let find = tool(
        &a,
        &with_secret(&a, &["subject", "find", "--number", "06 12 34 56 78"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(
        find.status.success() && text(&find).contains("call(s) on 2 node(s)"),
        "{}",
        text(&find)
    );
    let erase = tool(
        &a,
        &with_secret(
            &a,
            &["subject", "erase", "--number", "0612345678", "--request", "REQ-2026-77", "--yes"],
        )
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    let out = text(&erase);
    assert!(erase.status.success(), "{out}");
    assert!(
        out.contains("node a: erased, ")
            && out.contains("node b: erased, ")
            && out.contains("done on 2 of 2 node(s)"),
        "{out}"
    );
    assert_eq!(
        (files_before(&a), files_before(&b)),
        (fa, fb),
        "both nodes deleted the caller's recording"
    );
    for p in [&a, &b] {
        let erased = p.wait_event("recording_erased", 1, Duration::from_secs(5));
        assert_eq!(erased[0]["request"], "REQ-2026-77");
        p.wait_event("erasure_applied", 1, Duration::from_secs(5));
    }
    // R8 across nodes: an agent's lines from both nodes.
    let ag = tool(&a, &["agent", "Local/desk-1@test"]);
    let want = count(&a, "agent_cleared", "Local/desk-1@test")
        + count(&b, "agent_cleared", "Local/desk-1@test");
    assert!(text(&ag).contains("on 2 node(s)"), "{}", text(&ag));
    assert!(
        String::from_utf8_lossy(&ag.stdout)
            .lines()
            .filter(|l| l.contains("\"agent_cleared\""))
            .count()
            == want,
        "{}",
        text(&ag)
    );

    // The store's trail is append-only; an edit made anyway is found at its node and line.
    wait_shipped(&pg, &a, "a");
    let rows_b = wait_shipped(&pg, &b, "b");
    let seq = rows_b
        .iter()
        .position(|l| l.contains("\"agent_cleared\""))
        .expect("an agent_cleared line of node b")
        + 1;
    let refused = Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            "psql",
            "-h",
            &pg.dir.display().to_string(),
            "-p",
            &pg.port.to_string(),
            "-d",
            "callconsent",
            "-c",
        ])
        .arg(format!("UPDATE callconsent_audit SET line = line WHERE node = 'b' AND seq = {seq}"))
        .output()
        .expect("psql");
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("append-only"),
        "{}",
        text(&refused)
    );
    pg.psql(&format!(
        "ALTER TABLE callconsent_audit DISABLE TRIGGER callconsent_audit_append_only; \
         UPDATE callconsent_audit SET line = replace(line, '\"agent_cleared\"', '\"agent_vetoed\"') WHERE node = 'b' AND seq = {seq}"
    ));
    let bad = tool(&a, &["audit", "verify", "--store", &url, "--key", &key]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    assert!(
        text(&bad).contains(&format!("node b line {seq}: the line was edited")),
        "{}",
        text(&bad)
    );
    a.assert_alive();
    b.assert_alive();
}

#[test]
fn with_the_database_stopped_calls_follow_store_unavailable_and_the_log_catches_up() {
    let pg = Postgres::start("outage");
    let mut a = node("a", &pg, None);
    a.originate("Local/call-1@test", "dev@test");
    a.wait_settled(1, Duration::from_secs(30));
    assert_eq!(count(&a, "agent_cleared", "Local/desk-1@test"), 1);
    assert!(a.rx("callconsent show status").contains("node a: reachable"));
    wait_shipped(&pg, &a, "a");

    pg.stop_server();
    // no_record (the default): privacy wins, the call is not recorded, and the log says why.
    a.originate("Local/call-1@test", "dev@test");
    a.wait_settled(2, Duration::from_secs(30));
    let un = a.wait_event("store_unavailable", 1, Duration::from_secs(1));
    assert_eq!(un[0]["fallback"], "no_record", "{un:?}");
    let vetoed = a.wait_event("agent_vetoed", 1, Duration::from_secs(1));
    assert!(
        vetoed[0]["reason"].as_str().is_some_and(|r| r.contains("shared store unreachable")),
        "{vetoed:?}"
    );
    let status = a.rx("callconsent show status");
    assert!(
        status.contains("node a: UNREACHABLE since") && !status.contains(&pg.password),
        "{status}"
    );
    // local: caps counted on this node for a bounded time, said both ways.
    a.originate("Local/soft-1@test", "dev@test");
    a.wait_settled(3, Duration::from_secs(30));
    let un = a.wait_event("store_unavailable", 2, Duration::from_secs(1));
    assert_eq!(
        (un[1]["fallback"].as_str(), un[1]["profile"].as_str()),
        (Some("local"), Some("lenient")),
        "{un:?}"
    );
    assert_eq!(count(&a, "agent_cleared", "Local/desk-1@test"), 2);
    assert_eq!(a.audit().iter().filter(|v| v["event"] == "recording_kept").count(), 2);

    pg.start_server();
    let restored = a.wait_event("store_restored", 1, Duration::from_secs(30));
    assert_eq!(restored[0]["local_reservations"], 1, "{restored:?}");
    a.originate("Local/call-1@test", "dev@test");
    a.wait_settled(4, Duration::from_secs(30));
    assert_eq!(count(&a, "agent_cleared", "Local/desk-1@test"), 3);
    // The local reservation was added to the shared count.
    assert_eq!(pg.psql("SELECT used FROM callconsent_caps WHERE agent = 'Local/desk-1@test'"), "3");
    // Every line written during the outage reached the store, once, in order.
    let rows = wait_shipped(&pg, &a, "a");
    assert!(rows.iter().any(|l| l.contains("\"store_unavailable\"")));
    let key = format!("{}/db/callconsent/secret", a.cdir);
    let ok = tool(&a, &["audit", "verify", "--store", &pg.url(), "--key", &key]);
    assert!(ok.status.success(), "{}", text(&ok));
    a.assert_alive();
}

#[test]
fn a_kill9_of_a_node_loses_no_acknowledged_line() {
    let pg = Postgres::start("kill");
    let mut a = node("a", &pg, None);
    a.originate("Local/call-1@test", "dev@test");
    a.wait_settled(1, Duration::from_secs(30));
    wait_shipped(&pg, &a, "a");
    // Mid-run: calls in progress, their lines written and shipped.
    let acked_before: usize = pg
        .psql("SELECT count(*) FROM callconsent_audit WHERE node = 'a'")
        .parse()
        .expect("a count");
    for _ in 0..3 {
        a.originate("Local/long@test", "dev@test");
    }
    a.wait_event("recording_started", 3, Duration::from_secs(30));
    wait_until("a line shipped while the calls run", Duration::from_secs(10), || {
        pg.psql("SELECT count(*) FROM callconsent_audit WHERE node = 'a'")
            .parse::<usize>()
            .is_ok_and(|n| n > acked_before)
    });
    a.kill9_and_restart();
    // What the store acknowledged before the kill stays, and is a prefix of the node's log.
    let acked = store_lines(&pg, "a");
    let local = local_lines(&a);
    assert_eq!(
        &local[..acked.len()],
        &acked[..],
        "an acknowledged line differs from the node's log"
    );
    a.originate("Local/call-2@test", "dev@test");
    a.wait_event("call_settled", 2, Duration::from_secs(30));
    let rows = wait_shipped(&pg, &a, "a");
    assert_eq!(
        &rows[..acked.len()],
        &acked[..],
        "a line acknowledged before the kill changed or went"
    );
    assert!(
        rows.iter().any(|l| l.contains("\"recording_discarded\"")),
        "the crash's discarded recordings are in the store too"
    );
    let key = format!("{}/db/callconsent/secret", a.cdir);
    let ok = tool(&a, &["audit", "verify", "--store", &pg.url(), "--key", &key]);
    assert!(ok.status.success(), "{}", text(&ok));
    a.assert_alive();
}

#[test]
fn the_listening_bound_holds_across_nodes() {
    let pg = Postgres::start("listen");
    let access = "[access]\nlisten_period = month\nmax_listens_per_agent = 1\ndpo = claire\ncoach = marc: Local/desk-1@test\n";
    let a = node_with("a", &pg, None, "opus", access);
    let secret = std::fs::read(a.path("db/callconsent/secret")).expect("node a's secret");
    let b = node_with("b", &pg, Some(&secret), "opus", access);
    a.originate("Local/call-1@test", "dev@test");
    b.originate("Local/call-1@test", "dev@test");
    let archived = |p: &Pbx| {
        p.wait_event("recording_archived", 1, Duration::from_secs(30))[0]["file"]
            .as_str()
            .expect("an archive")
            .to_string()
    };
    let (fa, fb) = (archived(&a), archived(&b));
    let listen = |p: &Pbx, file: &str| {
        tool(
            p,
            &with_secret(p, &["listen", file, "--as", "marc", "--purpose", "coaching"])
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
    };
    let first = listen(&a, &fa);
    assert!(first.status.success(), "{}", text(&first));
    // The second listen of desk-1's calls, on the other node: the bound counts both.
    let second = listen(&b, &fb);
    assert_eq!(second.status.code(), Some(1), "{}", text(&second));
    assert!(
        text(&second).contains("already listened to 1 time(s) this month"),
        "{}",
        text(&second)
    );
    // Node b's own access log had no listen: the count came from the store.
    let b_access =
        std::fs::read_to_string(b.path("log/callconsent/access.jsonl")).unwrap_or_default();
    assert!(
        !b_access.contains("\"event\":\"listen\"")
            && b_access.contains("\"event\":\"listen_refused\""),
        "{b_access}"
    );
    assert_eq!(
        pg.psql("SELECT used FROM callconsent_listens WHERE agent = 'Local/desk-1@test'"),
        "1"
    );
}
