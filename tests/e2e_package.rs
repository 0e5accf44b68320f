//! Issue 15: installed the way admins install PBX modules. `scripts/package.sh` builds the Debian
//! packages from target/release; each test installs them with dpkg into its own Debian sid: an
//! overlay over the sandbox's tree (.sandbox/sid), mounted in a private mount namespace that
//! lives as long as the test, so the sandbox's own Asterisk, the module scripts/install.sh put
//! there and its callconsent.conf, which the other end-to-end tests use at the same time, are
//! never touched, not even for a moment. Asterisk runs in that tree as Debian's unit runs it:
//! `asterisk -f -g -U asterisk -G asterisk`, as the asterisk user.
mod harness;

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::pcap::{rtp_pcap, Part};
use harness::*;
use serde_json::Value;

const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const MODULE: &str = "/usr/lib/x86_64-linux-gnu/asterisk/modules/res_callconsent.so";
const CONF: &str = "/etc/asterisk/callconsent.conf";
const SPOOL: &str = "/var/spool/asterisk/callconsent";
const STATE: &str = "/var/lib/asterisk/callconsent";
const LOGDIR: &str = "/var/log/asterisk/callconsent";
const AUDIT: &str = "/var/log/asterisk/callconsent/audit.jsonl";
const SECRET: &str = "/var/lib/asterisk/callconsent/secret";

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

// ---- The packages, built once per test binary ------------------------------------------------

struct Packages {
    dir: PathBuf,
    version: String,
    /// A higher version of the same build, for the upgrade.
    upgrade: String,
    /// What `scripts/package.sh --lint` printed (lintian's tags among it).
    lint: String,
}

impl Packages {
    fn deb(&self, package: &str, version: &str) -> PathBuf {
        let p = self.dir.join(format!("{package}_{version}_amd64.deb"));
        assert!(p.is_file(), "{} was not built", p.display());
        p
    }
}

fn workspace_version() -> String {
    let toml = fs::read_to_string(project_dir().join("Cargo.toml")).expect("read Cargo.toml");
    let section = &toml[toml.find("[workspace.package]").expect("a [workspace.package] section")..];
    section
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("the workspace version")
        .to_string()
}

/// What earlier runs of this binary left in target/e2e-package (a failed test keeps its tree to
/// be looked at): gone once the process that made it is.
fn clean_stale() {
    let dir = project_dir().join("target/e2e-package");
    for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.rsplit('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid
            .is_some_and(|p| p != std::process::id() && !Path::new(&format!("/proc/{p}")).exists())
        {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

fn packages() -> &'static Packages {
    static BUILT: OnceLock<Packages> = OnceLock::new();
    BUILT.get_or_init(|| {
        module_path();
        clean_stale();
        let dir = project_dir().join(format!("target/e2e-package/debs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let version = workspace_version();
        let upgrade = format!("{version}+upgrade1");
        let started = Instant::now();
        // Both versions at once (one per core), from the same target/release.
        let build = |v: &str, lint: bool| {
            let mut c = Command::new(project_dir().join("scripts/package.sh"));
            c.args(["--no-build", "--version", v, "--out"]).arg(&dir);
            if lint {
                c.arg("--lint");
            }
            c.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run scripts/package.sh")
        };
        let (first, second) = (build(&version, true), build(&upgrade, false));
        let (first, second) = (
            first.wait_with_output().expect("package.sh"),
            second.wait_with_output().expect("package.sh"),
        );
        assert!(
            first.status.success(),
            "scripts/package.sh --lint --version {version} failed:\n{}",
            text(&first)
        );
        assert!(
            second.status.success(),
            "scripts/package.sh --version {upgrade} failed:\n{}",
            text(&second)
        );
        eprintln!(
            "packages: both versions built (and linted) in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Packages { dir, version, upgrade, lint: text(&first) }
    })
}

// ---- A Debian sid of the test's own: an overlay over the sandbox's tree -----------------------

struct Tree {
    name: String,
    base: PathBuf,
    merged: PathBuf,
    /// `unshare -m` holding the mount namespace; it ends when its stdin closes.
    holder: Child,
    holder_in: Option<ChildStdin>,
    asterisk: Option<Child>,
    phones: Vec<Child>,
}

impl Tree {
    fn new(name: &str) -> Tree {
        let lower = sandbox_root();
        let base =
            project_dir().join(format!("target/e2e-package/tree-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        for d in ["upper", "work", "merged"] {
            fs::create_dir_all(base.join(d)).expect("create the overlay's directories");
        }
        let script = "set -e\n\
            mount -t overlay overlay -o \"lowerdir=$1,upperdir=$2/upper,workdir=$2/work\" \"$2/merged\"\n\
            mount -t proc proc \"$2/merged/proc\"\n\
            echo ready\n\
            exec cat >/dev/null";
        let mut holder = Command::new("unshare")
            .args(["-m", "--propagation", "private", "--", "sh", "-c", script, "_"])
            .arg(&lower)
            .arg(&base)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run unshare (util-linux; scripts/sandbox.sh installs it)");
        let mut line = String::new();
        BufReader::new(holder.stdout.take().expect("the holder's stdout"))
            .read_line(&mut line)
            .expect("read from the holder");
        if line.trim() != "ready" {
            let _ = holder.kill();
            let out = holder.wait_with_output().expect("the holder's output");
            panic!(
                "cannot mount the overlay of {} (root and overlayfs are needed): {}",
                lower.display(),
                text(&out)
            );
        }
        let holder_in = holder.stdin.take();
        let tree = Tree {
            name: name.into(),
            base: base.clone(),
            merged: base.join("merged"),
            holder,
            holder_in,
            asterisk: None,
            phones: vec![],
        };
        // A Debian sid with Debian's Asterisk and nothing of callconsent: what scripts/install.sh
        // and the other tests put into the sandbox is hidden here (whiteouts in the overlay).
        tree.ok(&[
            "rm",
            "-rf",
            MODULE,
            CONF,
            "/etc/asterisk/callconsent.conf.sample",
            "/usr/share/asterisk/documentation/thirdparty/res_callconsent-en_US.xml",
            "/usr/share/asterisk/sounds/en/callconsent",
            "/usr/share/asterisk/sounds/fr",
            SPOOL,
            STATE,
            LOGDIR,
            "/var/tmp/cc-e2e",
            "/var/tmp/cc-demo",
            "/var/tmp/cc-fs",
            "/var/tmp/cc-sounds",
        ]);
        tree
    }

    /// A path of the tree, for this process (through the holder's view of the mounts).
    fn host(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{}{}", self.holder.id(), self.merged.display(), path))
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.holder.id().to_string(), "-m", "--", "chroot"])
            .arg(&self.merged)
            .args(args);
        c.env_clear()
            .env("PATH", PATH)
            .env("LC_ALL", "C")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run nsenter (util-linux)")
    }

    /// Runs a command in the tree; it must succeed. Returns stdout and stderr.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed in the {} tree ({}):\n{}",
            self.name,
            out.status,
            text(&out)
        );
        text(&out)
    }

    fn sh(&self, script: &str) -> String {
        self.ok(&["sh", "-c", script])
    }

    /// Copies the packages into the tree's /tmp/pkgs.
    fn add_debs(&self, debs: &[PathBuf]) {
        fs::create_dir_all(self.host("/tmp/pkgs")).expect("create /tmp/pkgs in the tree");
        for d in debs {
            fs::copy(
                d,
                self.host(&format!("/tmp/pkgs/{}", d.file_name().unwrap().to_string_lossy())),
            )
            .expect("copy a package");
        }
    }

    fn uid_of(&self, user: &str) -> u32 {
        self.ok(&["id", "-u", user]).trim().parse().expect("a uid")
    }

    fn write(&self, path: &str, body: &str) {
        fs::write(self.host(path), body)
            .unwrap_or_else(|e| panic!("write {path} in the tree: {e}"));
    }

    fn read(&self, path: &str) -> String {
        fs::read_to_string(self.host(path))
            .unwrap_or_else(|e| panic!("read {path} in the tree: {e}"))
    }

    // ---- Asterisk in the tree, as Debian's asterisk.service starts it --------------------------

    fn start_asterisk(&mut self) {
        let log = fs::File::create(self.base.join("asterisk.out")).expect("create asterisk.out");
        // Debian's unit: ExecStart=/usr/sbin/asterisk -g -f -p -U asterisk -G asterisk, in
        // /var/lib/asterisk. Without -p: realtime priority would starve the other tests.
        let child = self
            .command(&[
                "/bin/sh",
                "-c",
                "cd /var/lib/asterisk && exec /usr/sbin/asterisk -f -g -U asterisk -G asterisk",
            ])
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .expect("start the tree's asterisk");
        self.asterisk = Some(child);
        self.wait_booted();
    }

    fn wait_booted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.asterisk.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("asterisk exited ({st}):\n{}", self.logs());
                }
            }
            let out = self.run(&["asterisk", "-rx", "core waitfullybooted"]);
            if out.status.success() && text(&out).contains("fully booted") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "asterisk did not boot within 30 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> u32 {
        self.asterisk.as_ref().map(|c| c.id()).expect("asterisk runs")
    }

    fn rx(&self, cmd: &str) -> String {
        let out = self.run(&["asterisk", "-rx", cmd]);
        assert!(out.status.success(), "CLI {cmd:?} failed:\n{}\n{}", text(&out), self.logs());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn assert_alive(&mut self) {
        let c = self.asterisk.as_mut().expect("asterisk was started");
        assert!(matches!(c.try_wait(), Ok(None)), "asterisk died:\n{}", self.logs());
        assert!(
            self.rx("core show uptime").contains("System uptime"),
            "asterisk does not answer:\n{}",
            self.logs()
        );
    }

    fn stop_asterisk(&mut self) {
        if let Some(mut c) = self.asterisk.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The mappings of res_callconsent.so in the running Asterisk: (inode, deleted).
    fn mapped_module(&self) -> BTreeSet<(u64, bool)> {
        let maps =
            fs::read_to_string(format!("/proc/{}/maps", self.pid())).expect("read asterisk's maps");
        maps.lines()
            .filter(|l| l.contains(MODULE))
            .map(|l| {
                let inode = l
                    .split_whitespace()
                    .nth(4)
                    .and_then(|i| i.parse().ok())
                    .expect("an inode in maps");
                (inode, l.ends_with("(deleted)"))
            })
            .collect()
    }

    fn inode(&self, path: &str) -> u64 {
        fs::metadata(self.host(path)).unwrap_or_else(|e| panic!("{path}: {e}")).ino()
    }

    fn messages(&self) -> String {
        fs::read_to_string(self.host("/var/log/asterisk/messages.log")).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let m = self.messages();
        let tail: Vec<&str> =
            m.lines().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect();
        format!(
            "--- messages.log (last 80 lines) ---\n{}\n--- asterisk stdout ---\n{}",
            tail.join("\n"),
            fs::read_to_string(self.base.join("asterisk.out")).unwrap_or_default()
        )
    }

    fn audit(&self) -> Vec<Value> {
        fs::read_to_string(self.host(AUDIT))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}"))
            })
            .collect()
    }

    fn call_events(&self, call: &str) -> Vec<Value> {
        self.audit().into_iter().filter(|v| v["call"] == call).collect()
    }

    /// Waits until the call's work is done: `call_settled` is its last audit line.
    fn wait_settled(&self, call: &str) -> Vec<Value> {
        wait_for(&format!("call_settled of call {call}"), Duration::from_secs(40), || {
            let lines = self.call_events(call);
            if lines.iter().any(|v| v["event"] == "call_settled") {
                Ok(lines)
            } else {
                Err(lines.iter().map(|v| v["event"].to_string()).collect::<Vec<_>>().join(" "))
            }
        })
    }

    /// Every file under a directory of the tree, as tree paths.
    fn files_under(&self, dir: &str) -> Vec<String> {
        let out = self.run(&["find", dir, "-type", "f"]);
        let mut v: Vec<String> =
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        v.sort();
        v
    }

    /// Owner uid and permission bits of a path of the tree.
    fn stat(&self, path: &str) -> (u32, u32, u32) {
        let m = fs::symlink_metadata(self.host(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("=== the {} tree ({}) ===\n{}", self.name, self.base.display(), self.logs());
        }
        self.stop_asterisk();
        for mut p in self.phones.drain(..) {
            let _ = p.kill();
            let _ = p.wait();
        }
        // Closing its stdin ends the holder, and with it the namespace and its mounts.
        drop(self.holder_in.take());
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.base);
        }
    }
}

// ---- Calls with sipp --------------------------------------------------------------------------

struct Phones {
    sip_port: u16,
    agent_port: u16,
}

/// The Asterisk configuration an admin writes around the package: modules, a SIP transport, a
/// caller's trunk (sipp) and the agent phone `agent100` of the example dialplan, which is
/// /usr/share/doc/asterisk-callconsent/examples/extensions.conf.sample, as packaged.
/// callconsent.conf stays the package's.
fn configure_asterisk(tree: &Tree) -> Phones {
    let (sip_port, agent_port) = (free_udp_port(), free_udp_port());
    let mut modules = String::from("[modules]\nautoload = no\n");
    for m in MODULES.iter().copied().chain(["res_callconsent.so"]) {
        if m == "res_callconsent.so"
            || tree.host(&format!("/usr/lib/x86_64-linux-gnu/asterisk/modules/{m}")).exists()
        {
            modules.push_str(&format!("load => {m}\n"));
        }
    }
    tree.write("/etc/asterisk/modules.conf", &modules);
    tree.write(
        "/etc/asterisk/logger.conf",
        "[general]\n[logfiles]\nmessages.log => notice,warning,error,verbose(3)\n",
    );
    tree.write("/etc/asterisk/manager.conf", "[general]\nenabled = no\n");
    let rtp = 46000 + (std::process::id() % 50) * 40;
    tree.write(
        "/etc/asterisk/rtp.conf",
        &format!("[general]\nrtpstart = {rtp}\nrtpend = {}\n", rtp + 39),
    );
    tree.write(
        "/etc/asterisk/pjsip.conf",
        &format!(
            "[transport-udp]\ntype = transport\nprotocol = udp\nbind = 127.0.0.1:{sip_port}\n\n\
             [trunk]\ntype = endpoint\ncontext = from-pstn-direct\ndisallow = all\nallow = alaw\ndtmf_mode = rfc4733\n\
             direct_media = no\nrtp_symmetric = yes\n\n[trunk]\ntype = identify\nendpoint = trunk\nmatch = 127.0.0.1\n\n\
             [agent100]\ntype = endpoint\ncontext = from-agents\ndisallow = all\nallow = alaw\ndtmf_mode = rfc4733\n\
             direct_media = no\nrtp_symmetric = yes\naors = agent100\n\n[agent100]\ntype = aor\ncontact = sip:agent100@127.0.0.1:{agent_port}\n"
        ),
    );
    let example = tree.read("/usr/share/doc/asterisk-callconsent/examples/extensions.conf.sample");
    tree.write("/etc/asterisk/extensions.conf", &example);
    // The phones' files.
    fs::create_dir_all(tree.host("/tmp/cc-package")).expect("create /tmp/cc-package");
    fs::write(
        tree.host("/tmp/cc-package/agent.pcap"),
        rtp_pcap(&[Part::Tone { freq: 1000.0, ms: 20000 }]),
    )
    .expect("write the agent's capture");
    let uas = fs::read_to_string(project_dir().join("tests/sipp/agent-uas.xml"))
        .expect("read the UAS scenario");
    tree.write(
        "/tmp/cc-package/agent-uas.xml",
        &uas.replace("{D}/sounds/agent.pcap", "/tmp/cc-package/agent.pcap"),
    );
    Phones { sip_port, agent_port }
}

/// The caller's scenario (tests/sipp/optout-9.xml): talks `talk_ms` after the answer, then
/// presses 9 if `refuse`, and hangs up 3 s later.
fn caller_scenario(talk_ms: u64, refuse: bool) -> String {
    let s = fs::read_to_string(project_dir().join("tests/sipp/optout-9.xml"))
        .expect("read the caller's scenario");
    let nine = "<nop><action><exec play_pcap_audio=\"/usr/share/sip-tester/dtmf_2833_9.pcap\"/></action></nop>";
    assert!(
        s.contains(nine) && s.contains("<pause milliseconds=\"7500\"/>"),
        "tests/sipp/optout-9.xml changed"
    );
    let s = s
        .replace("<pause milliseconds=\"7500\"/>", &format!("<pause milliseconds=\"{talk_ms}\"/>"));
    if refuse {
        s
    } else {
        s.replace(nine, "")
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("the clock").as_secs_f64()
}

/// Places a SIP call to the example's direct-Dial context, at a second that the installation's
/// draw selects at the packaged `record_share = 20`: Asterisk names the caller's channel
/// `<second>.<channels so far>` and that is the call id the draw hashes, so the DPO's tool
/// (`callconsent draw`, as packaged) tells in advance which second gives a selected call. The
/// draw is the real one; only the moment of the call is chosen. Returns the call id.
fn selected_call(tree: &mut Tree, phones: &Phones, channels: &mut u64, scenario: &str) -> String {
    tree.write("/tmp/cc-package/caller.xml", scenario);
    for attempt in 1..=3 {
        let agent = tree
            .command(&[
                "sipp",
                "-sf",
                "/tmp/cc-package/agent-uas.xml",
                "-m",
                "1",
                "-i",
                "127.0.0.1",
                "-p",
                &phones.agent_port.to_string(),
            ])
            .args(["-mp", &free_udp_port().to_string(), "-timeout", "90s", "-nostdin"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the agent's phone (sipp)");
        tree.phones.push(agent);
        let port = phones.agent_port;
        wait_until(
            &format!("the agent's phone (sipp) to listen on UDP port {port}"),
            Duration::from_secs(10),
            || udp_port_bound(port),
        );
        let from = now() as u64 + 1;
        let out = tree.sh(&format!(
            "for t in $(seq {from} {}); do callconsent draw \"$t.{channels}\" {SECRET} 20; done",
            from + 60
        ));
        // The first selected second still ahead (the loop above takes about a second).
        let second: u64 = out
            .lines()
            .filter(|l| l.ends_with(": selected"))
            .filter_map(|l| l.strip_prefix("call ")?.split('.').next()?.parse::<u64>().ok())
            .find(|s| *s as f64 > now() + 0.2)
            .unwrap_or_else(|| {
                panic!("no selected second in a minute at 20 % (the draw is broken):\n{out}")
            });
        let call = format!("{second}.{channels}");
        std::thread::sleep(Duration::from_secs_f64(second as f64 + 0.05 - now()));
        let out = tree.run(&[
            "sipp",
            &format!("127.0.0.1:{}", phones.sip_port),
            "-sf",
            "/tmp/cc-package/caller.xml",
            "-m",
            "1",
            "-l",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &free_udp_port().to_string(),
            "-mp",
            &free_udp_port().to_string(),
            "-s",
            "0612345678",
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
        ]);
        assert!(
            out.status.success(),
            "the caller's sipp failed ({}):\n{}\n{}",
            out.status,
            text(&out),
            tree.logs()
        );
        // Each call is two channels: the caller's and agent100's.
        let first = wait_for("the call's first audit line", Duration::from_secs(10), || {
            tree.audit()
                .into_iter()
                .rev()
                .find(|v| {
                    matches!(v["event"].as_str(), Some("selected" | "not_selected" | "exempt"))
                })
                .filter(|v| {
                    v["call"].as_str().and_then(|c| c.split('.').nth(1)?.parse::<u64>().ok())
                        >= Some(*channels)
                })
                .ok_or_else(|| "none yet".to_string())
        });
        let got = first["call"].as_str().expect("a call id").to_string();
        *channels =
            got.split('.').nth(1).and_then(|n| n.parse::<u64>().ok()).expect("a channel count") + 2;
        if got == call && first["event"] == "selected" {
            return call;
        }
        eprintln!("attempt {attempt}: expected call {call} selected, Asterisk named it {got} ({}): the call began in another second; again", first["event"]);
    }
    panic!("three calls in a row began outside their second:\n{}", tree.logs());
}

/// Some socket is bound to this local UDP port (read from /proc, without taking the port).
fn udp_port_bound(port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
        fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(&want)))
    })
}

/// An audit line of this event for this call.
fn event<'a>(lines: &'a [Value], name: &str) -> &'a Value {
    lines
        .iter()
        .find(|v| v["event"] == name)
        .unwrap_or_else(|| panic!("no {name} line: {lines:#?}"))
}

/// A French sounds package as Debian's are made: its files in a directory of its own, made
/// `sounds/fr` by update-alternatives.
fn french_sounds_deb() -> PathBuf {
    let dir = project_dir().join(format!("target/e2e-package/sounds-fr-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let root = dir.join("test-sounds-fr");
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::create_dir_all(root.join("usr/share/asterisk/sounds/fr_TEST")).unwrap();
    fs::write(root.join("usr/share/asterisk/sounds/fr_TEST/bonjour.gsm"), [0u8; 33]).unwrap();
    fs::write(root.join("DEBIAN/control"), "Package: test-sounds-fr\nVersion: 1\nArchitecture: all\nMaintainer: callconsent tests <tests@localhost>\nDescription: French sounds of a test\n").unwrap();
    let scripts = [
        ("postinst", "#!/bin/sh\nset -e\nupdate-alternatives --install /usr/share/asterisk/sounds/fr asterisk-prompt-fr /usr/share/asterisk/sounds/fr_TEST 50\n"),
        ("prerm", "#!/bin/sh\nset -e\nupdate-alternatives --remove asterisk-prompt-fr /usr/share/asterisk/sounds/fr_TEST\n"),
    ];
    for (name, body) in scripts {
        fs::write(root.join("DEBIAN").join(name), body).unwrap();
        fs::set_permissions(root.join("DEBIAN").join(name), fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let deb = dir.join("test-sounds-fr_1_all.deb");
    let out = Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&root)
        .arg(&deb)
        .output()
        .expect("run dpkg-deb");
    assert!(out.status.success(), "{}", text(&out));
    deb
}

/// Files and their contents under the module's three directories.
fn data_snapshot(tree: &Tree) -> Vec<(String, Vec<u8>)> {
    [SPOOL, LOGDIR, STATE]
        .iter()
        .flat_map(|d| tree.files_under(d))
        .map(|f| {
            let body = fs::read(tree.host(&f)).unwrap_or_default();
            (f, body)
        })
        .collect()
}

// ---- The tests -------------------------------------------------------------------------------

/// Install, two calls (kept, then refused), an upgrade under a running Asterisk, remove, purge.
#[test]
fn dpkg_install_calls_upgrade_remove_purge_with_asterisk_as_the_asterisk_user() {
    let started = Instant::now();
    let p = packages();
    let mut tree = Tree::new("life");
    let (v1, v2) = (p.version.as_str(), p.upgrade.as_str());
    tree.add_debs(&[
        p.deb("asterisk-callconsent", v1),
        p.deb("callconsent-tools", v1),
        p.deb("asterisk-callconsent", v2),
        p.deb("callconsent-tools", v2),
    ]);
    let asterisk = tree.uid_of("asterisk");
    let asterisk_gid: u32 = tree.ok(&["id", "-g", "asterisk"]).trim().parse().expect("a gid");
    let owned = |tree: &Tree| -> BTreeSet<String> {
        let out = tree.run(&["find", "/", "-xdev", "-user", "asterisk", "-not", "-path", "/tmp/*"]);
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
    };
    let before = owned(&tree);

    // ---- dpkg -i ----
    let out = tree.ok(&[
        "dpkg",
        "-i",
        &format!("/tmp/pkgs/asterisk-callconsent_{v1}_amd64.deb"),
        &format!("/tmp/pkgs/callconsent-tools_{v1}_amd64.deb"),
    ]);
    assert!(
        out.contains("core restart when convenient"),
        "the first install says how to load the module:\n{out}"
    );
    for pkg in ["asterisk-callconsent", "callconsent-tools"] {
        assert_eq!(
            tree.ok(&["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", pkg]),
            format!("ii {v1}"),
            "{pkg}"
        );
    }
    // What the asterisk user got: its three directories, 0750, and nothing else.
    let after = owned(&tree);
    let given: BTreeSet<String> = after.difference(&before).cloned().collect();
    assert_eq!(
        given,
        [LOGDIR, STATE, SPOOL].iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        "what the install gave the asterisk user"
    );
    assert!(
        before.difference(&after).next().is_none(),
        "the install took something from the asterisk user"
    );
    for d in [SPOOL, STATE, LOGDIR] {
        assert_eq!(tree.stat(d), (asterisk, asterisk_gid, 0o750), "{d}");
    }
    // Root owns the module and the configuration; Asterisk's group reads the configuration only.
    assert_eq!(tree.stat(CONF), (0, asterisk_gid, 0o640), "{CONF}");
    assert_eq!(
        tree.ok(&["dpkg-statoverride", "--list", CONF]).trim(),
        format!("root asterisk 640 {CONF}")
    );
    assert_eq!(tree.stat(MODULE), (0, 0, 0o644), "{MODULE}");
    assert_eq!(
        tree.read(CONF),
        fs::read_to_string(project_dir().join("dialplan/callconsent.conf.sample")).unwrap(),
        "the conffile is the shipped sample"
    );
    assert!(
        tree.ok(&["dpkg-query", "-W", "-f=${Conffiles}", "asterisk-callconsent"]).contains(CONF),
        "callconsent.conf is a conffile"
    );
    for f in [
        "/usr/share/asterisk/documentation/thirdparty/res_callconsent-en_US.xml",
        "/usr/share/asterisk/sounds/callconsent/notice.wav",
        "/usr/share/asterisk/sounds/callconsent/full-notice.wav",
        "/usr/share/asterisk/sounds/callconsent/optout-confirm.wav",
        "/usr/share/asterisk/sounds/callconsent/fr/notice.wav",
        "/usr/share/doc/asterisk-callconsent/examples/extensions.conf.sample",
        "/usr/share/doc/asterisk-callconsent/examples/features.conf.sample",
        "/usr/share/doc/asterisk-callconsent/examples/freepbx/extensions_custom.conf",
        "/usr/share/doc/asterisk-callconsent/copyright",
        "/usr/share/man/man1/callconsent.1.gz",
    ] {
        assert!(tree.run(&["test", "-f", f]).status.success(), "{f} was not installed");
    }
    // French prompts reach sounds/fr/ once a French sounds package makes it (through the
    // alternatives, as Debian's do): the package's trigger links them in.
    assert!(
        !tree.run(&["test", "-e", "/usr/share/asterisk/sounds/fr"]).status.success(),
        "the tree has French sounds already"
    );
    tree.add_debs(&[french_sounds_deb()]);
    let out = tree.ok(&["dpkg", "-i", "/tmp/pkgs/test-sounds-fr_1_all.deb"]);
    assert!(out.contains("Processing triggers for asterisk-callconsent"), "{out}");
    assert_eq!(
        tree.ok(&["readlink", "/usr/share/asterisk/sounds/fr/callconsent"]).trim(),
        "/usr/share/asterisk/sounds/callconsent/fr"
    );
    assert!(
        tree.run(&["test", "-f", "/usr/share/asterisk/sounds/fr/callconsent/notice.wav"])
            .status
            .success(),
        "no French notice in sounds/fr/callconsent/"
    );
    assert!(
        tree.ok(&["callconsent", "--version"]).contains(&format!("callconsent {v1}")),
        "the packaged tool runs"
    );
    let man = tree.sh("zcat /usr/share/man/man1/callconsent.1.gz");
    assert!(
        man.contains("callconsent audit verify") && man.contains("callconsent subject erase"),
        "the man page documents each command"
    );

    // ---- Asterisk as the asterisk user, the packaged callconsent.conf, the example dialplan ----
    let phones = configure_asterisk(&tree);
    tree.start_asterisk();
    let status =
        fs::read_to_string(format!("/proc/{}/status", tree.pid())).expect("asterisk's status");
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).expect("a Uid line");
    assert!(
        uid.split_whitespace().all(|u| u == asterisk.to_string()),
        "asterisk runs as root, not as the asterisk user: Uid:{uid}"
    );
    assert!(tree.rx("module show like res_callconsent").contains("Running"), "{}", tree.logs());
    let profiles = tree.rx("callconsent show profiles");
    assert!(
        profiles.contains("inbound") && profiles.contains("outbound") && profiles.contains("20%"),
        "the packaged profiles: {profiles}"
    );
    assert!(
        tree.rx("core show application CallConsent").contains("CALLCONSENT_STATUS"),
        "the packaged XML documentation is in Asterisk's help"
    );
    assert!(!tree.messages().contains("callconsent: not loaded"), "{}", tree.logs());
    assert_eq!(
        tree.stat(SECRET),
        (asterisk, asterisk_gid, 0o600),
        "the secret, created by the module at its first load"
    );
    assert!(
        tree.rx("dialplan show from-pstn-direct").contains("CallConsent(inbound)"),
        "the example dialplan is loaded"
    );
    let notice_ms = wav_samples(&tree.host("/usr/share/asterisk/sounds/callconsent/notice.wav"))
        .len() as u64
        / 8;
    assert!(notice_ms > 2000, "the packaged notice is {notice_ms} ms");

    // ---- A kept call ----
    let mut channels = 0;
    let kept =
        selected_call(&mut tree, &phones, &mut channels, &caller_scenario(notice_ms + 3000, false));
    tree.wait_settled(&kept);
    // The archive is encoded off the call's work: its line may follow call_settled.
    let lines = wait_for("the kept call's recording_archived", Duration::from_secs(30), || {
        let lines = tree.call_events(&kept);
        if lines.iter().any(|v| v["event"] == "recording_archived") {
            Ok(lines)
        } else {
            Err(lines.iter().map(|v| v["event"].to_string()).collect::<Vec<_>>().join(" "))
        }
    });
    let notice = event(&lines, "notice_played");
    assert_eq!(
        (notice["prompt"].as_str(), notice["outcome"].as_str()),
        (Some("callconsent/notice"), Some("completed")),
        "{notice}"
    );
    assert!(
        tree.messages().lines().any(|l| l.contains("<PJSIP/trunk-")
            && l.contains("Playing 'callconsent/notice.")
            && l.contains("(language 'en')")),
        "Asterisk did not play the packaged English notice:\n{}",
        tree.logs()
    );
    event(&lines, "agent_cleared");
    event(&lines, "recording_started");
    event(&lines, "recording_kept");
    let archive = event(&lines, "recording_archived")["file"]
        .as_str()
        .expect("the archive's path")
        .to_string();
    assert!(
        archive.starts_with(&format!("{SPOOL}/kept/")) && archive.ends_with(".opus"),
        "{archive}"
    );
    assert_eq!(
        tree.files_under(SPOOL),
        vec![archive.clone()],
        "only the kept call's archive is in the spool"
    );
    // Written by the asterisk user: files 0640, the kept tree's directories 0750.
    assert_eq!(tree.stat(&archive), (asterisk, asterisk_gid, 0o640), "{archive}");
    let mut dir = Path::new(&archive).parent().expect("a day directory").to_path_buf();
    while dir != Path::new(SPOOL) {
        assert_eq!(
            tree.stat(dir.to_str().unwrap()),
            (asterisk, asterisk_gid, 0o750),
            "{}",
            dir.display()
        );
        dir = dir.parent().expect("a parent").to_path_buf();
    }
    assert_eq!(tree.stat(AUDIT), (asterisk, asterisk_gid, 0o640), "the audit log");
    // The DPO's checks, as the asterisk user (the man page's advice).
    let verify = tree.ok(&[
        "runuser",
        "-u",
        "asterisk",
        "--",
        "callconsent",
        "archive",
        "verify",
        &archive,
        AUDIT,
    ]);
    assert!(!verify.trim().is_empty(), "archive verify printed nothing");
    let chain = tree.ok(&[
        "runuser",
        "-u",
        "asterisk",
        "--",
        "callconsent",
        "audit",
        "verify",
        "--key",
        SECRET,
        AUDIT,
    ]);
    assert!(chain.contains("chain intact"), "{chain}");

    // ---- Upgrade to a higher version while Asterisk runs ----
    let old = tree.inode(MODULE);
    assert_eq!(
        tree.mapped_module(),
        BTreeSet::from([(old, false)]),
        "Asterisk maps the installed module"
    );
    let edited = format!("{}; edited by the admin\n", tree.read(CONF));
    tree.write(CONF, &edited);
    let out = tree.ok(&[
        "dpkg",
        "-i",
        &format!("/tmp/pkgs/asterisk-callconsent_{v2}_amd64.deb"),
        &format!("/tmp/pkgs/callconsent-tools_{v2}_amd64.deb"),
    ]);
    assert!(out.contains(&format!("upgraded from {v1}")) && out.contains("Asterisk must restart to load the new module: asterisk -rx 'core restart when convenient'"), "the upgrade notice:\n{out}");
    assert_eq!(
        tree.ok(&["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", "asterisk-callconsent"]),
        format!("ii {v2}")
    );
    tree.assert_alive();
    let new = tree.inode(MODULE);
    assert_ne!(new, old, "dpkg put a new file in place (rename), never wrote over the loaded one");
    assert_eq!(
        tree.mapped_module(),
        BTreeSet::from([(old, true)]),
        "the running Asterisk still maps the old module, now unlinked"
    );
    assert_eq!(tree.read(CONF), edited, "the admin's edit of the conffile survives the upgrade");
    assert_eq!(tree.stat(CONF), (0, asterisk_gid, 0o640), "{CONF} after the upgrade");

    // ---- A refused call, served by the old module ----
    let refused =
        selected_call(&mut tree, &phones, &mut channels, &caller_scenario(notice_ms + 3000, true));
    let lines = tree.wait_settled(&refused);
    event(&lines, "recording_started");
    let opt = event(&lines, "opt_out");
    assert_eq!((opt["during"].as_str(), opt["key"].as_str()), (Some("call"), Some("9")), "{opt}");
    event(&lines, "recording_deleted");
    assert_eq!(event(&lines, "call_ended")["outcome"], "opted_out");
    assert!(!lines.iter().any(|v| v["event"] == "recording_kept"), "{lines:#?}");
    assert_eq!(
        tree.files_under(SPOOL),
        vec![archive.clone()],
        "a file of the refused call is left"
    );
    tree.assert_alive();
    assert_eq!(
        tree.mapped_module(),
        BTreeSet::from([(old, true)]),
        "the old module served the call"
    );

    // ---- The restart the notice asks for loads the new module ----
    // The CLI connection may close under the restart: the fact waited for is the new mapping.
    let _ = tree.run(&["asterisk", "-rx", "core restart when convenient"]);
    wait_for("Asterisk to restart on the new module", Duration::from_secs(30), || {
        let m = tree.mapped_module();
        if m == BTreeSet::from([(new, false)]) {
            Ok(())
        } else {
            Err(format!("{m:?}"))
        }
    });
    tree.wait_booted();
    assert!(tree.rx("module show like res_callconsent").contains("Running"), "{}", tree.logs());
    let chain = tree.ok(&[
        "runuser",
        "-u",
        "asterisk",
        "--",
        "callconsent",
        "audit",
        "verify",
        "--key",
        SECRET,
        AUDIT,
    ]);
    assert!(
        chain.contains("chain intact"),
        "the audit log across the upgrade and the restart: {chain}"
    );

    // ---- Remove, with Asterisk running ----
    let data = data_snapshot(&tree);
    for f in [
        SECRET,
        AUDIT,
        "/var/log/asterisk/callconsent/audit.jsonl.head",
        "/var/lib/asterisk/callconsent/caps.redb",
        &archive,
    ] {
        assert!(
            data.iter().any(|(p, _)| p == f),
            "{f} is missing before the removal: {:?}",
            data.iter().map(|(p, _)| p).collect::<Vec<_>>()
        );
    }
    let out = tree.ok(&["dpkg", "-r", "asterisk-callconsent", "callconsent-tools"]);
    assert!(out.contains("kept: recordings"), "{out}");
    for gone in [
        MODULE,
        "/usr/share/asterisk/documentation/thirdparty/res_callconsent-en_US.xml",
        "/usr/share/asterisk/sounds/callconsent",
        "/usr/share/asterisk/sounds/fr/callconsent",
        "/usr/share/doc/asterisk-callconsent",
        "/usr/bin/callconsent",
        "/usr/share/man/man1/callconsent.1.gz",
    ] {
        assert!(
            fs::symlink_metadata(tree.host(gone)).is_err(),
            "{gone} is still there after the removal"
        );
    }
    assert_eq!(tree.read(CONF), edited, "remove keeps the configuration");
    assert_eq!(
        data_snapshot(&tree),
        data,
        "remove changed the recordings, the audit log, the secret or the caps"
    );
    tree.assert_alive();
    tree.stop_asterisk();

    // ---- Purge with the default answer ----
    let data = data_snapshot(&tree);
    let out = tree.ok(&["dpkg", "--purge", "asterisk-callconsent"]);
    assert!(out.contains("kept (purge-data was not confirmed)"), "{out}");
    assert!(!tree.host(CONF).exists(), "purge removes the conffile");
    assert!(
        tree.run(&["dpkg-statoverride", "--list", CONF]).status.code() == Some(1),
        "purge removes the statoverride"
    );
    assert!(
        tree.ok(&["debconf-show", "asterisk-callconsent"]).trim().is_empty(),
        "purge removes the debconf question"
    );
    assert_eq!(
        data_snapshot(&tree),
        data,
        "purge (default: no) changed the recordings, the audit log, the secret or the caps"
    );
    let state = tree.run(&["dpkg-query", "-W", "-f=${db:Status-Status}", "asterisk-callconsent"]);
    assert!(
        !state.status.success() || text(&state) == "not-installed",
        "asterisk-callconsent after the purge: {}",
        text(&state)
    );

    // ---- Purge, the admin confirming ----
    tree.ok(&["dpkg", "-i", &format!("/tmp/pkgs/asterisk-callconsent_{v2}_amd64.deb")]);
    tree.sh("echo 'asterisk-callconsent asterisk-callconsent/purge-data boolean true' | debconf-set-selections");
    let out = tree.ok(&["dpkg", "--purge", "asterisk-callconsent"]);
    assert!(out.contains("deleted, as confirmed"), "{out}");
    for d in [SPOOL, LOGDIR, STATE] {
        assert!(!tree.host(d).exists(), "{d} is still there after a confirmed purge");
    }
    eprintln!(
        "install, two calls, upgrade, remove, purge: {:.1} s (packages included)",
        started.elapsed().as_secs_f64()
    );
}

/// The package pre-depends on the ABI of the headers it was built with, read from the sandbox's
/// packages, and dpkg and apt refuse it on an Asterisk of another build before any file lands.
#[test]
fn refused_on_an_asterisk_of_another_abi() {
    let p = packages();
    let deb = p.deb("asterisk-callconsent", &p.version);
    let field = |name: &str| -> String {
        let out =
            Command::new("dpkg-deb").arg("-f").arg(&deb).arg(name).output().expect("run dpkg-deb");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let sid = sandbox_root();
    let opts = fs::read_to_string(sid.join("usr/include/asterisk/buildopts.h"))
        .expect("the sandbox's buildopts.h");
    let sum = opts
        .lines()
        .find_map(|l| l.strip_prefix("#define AST_BUILDOPT_SUM \""))
        .and_then(|s| s.strip_suffix('"'))
        .expect("AST_BUILDOPT_SUM in buildopts.h");
    let abi = format!("asterisk-abi-{sum}");
    assert_eq!(
        field("Pre-Depends"),
        abi,
        "the package pre-depends on the ABI of the headers it was built with"
    );
    let provides = Command::new("dpkg-query")
        .arg(format!("--admindir={}", sid.join("var/lib/dpkg").display()))
        .args(["-W", "-f=${Provides}", "asterisk"])
        .output()
        .expect("dpkg-query");
    assert!(
        String::from_utf8_lossy(&provides.stdout).split(", ").any(|p| p == abi),
        "the sandbox's asterisk does not provide {abi}: {provides:?}"
    );

    // A tree whose Asterisk is another build: its asterisk package provides another ABI.
    let tree = Tree::new("abi");
    let fake = "asterisk-abi-0123456789abcdef0123456789abcdef";
    let status = tree.read("/var/lib/dpkg/status");
    assert!(status.contains(&format!("Provides: {abi}")), "the tree's asterisk provides {abi}");
    tree.write(
        "/var/lib/dpkg/status",
        &status.replace(&format!("Provides: {abi}"), &format!("Provides: {fake}")),
    );
    assert_eq!(tree.ok(&["dpkg-query", "-W", "-f=${Provides}", "asterisk"]), fake);
    tree.add_debs(&[deb.clone(), p.deb("callconsent-tools", &p.version)]);
    let path = format!("/tmp/pkgs/{}", deb.file_name().unwrap().to_string_lossy());

    let out = tree.run(&["dpkg", "-i", &path]);
    let said = text(&out);
    assert!(!out.status.success(), "dpkg installed the module on another Asterisk build:\n{said}");
    assert!(
        said.contains("pre-dependency problem") && said.contains(&abi),
        "dpkg's refusal names the ABI:\n{said}"
    );
    assert!(!tree.host(MODULE).exists(), "dpkg unpacked the module before refusing");
    assert!(!tree.host(CONF).exists(), "dpkg unpacked the configuration before refusing");
    let state = tree.run(&["dpkg-query", "-W", "-f=${db:Status-Status}", "asterisk-callconsent"]);
    assert!(
        !state.status.success() || text(&state) == "not-installed",
        "the refused package is in dpkg's database: {}",
        text(&state)
    );
    // apt, from the file: refused too, nothing touched. (The tree's apt lists go: they describe
    // the sandbox's Asterisk build, whose ABI apt would otherwise take for the installed one's.)
    tree.sh(
        "rm -f /var/lib/apt/lists/*_Packages /var/lib/apt/lists/*_InRelease /var/cache/apt/*.bin",
    );
    let out = tree.run(&["apt-get", "install", "-y", "--no-download", &path]);
    let said = text(&out);
    assert!(!out.status.success(), "apt installed the module on another Asterisk build:\n{said}");
    assert!(
        said.contains(&abi) && said.contains("not installable"),
        "apt's refusal names the ABI:\n{said}"
    );
    assert!(!tree.host(MODULE).exists());
    // The tool has no ABI: it installs anywhere.
    tree.ok(&["dpkg", "-i", &format!("/tmp/pkgs/callconsent-tools_{}_amd64.deb", p.version)]);
    assert!(tree.ok(&["callconsent", "--version"]).contains("callconsent"));

    // And scripts/package.sh refuses to package against headers whose ABI no installed asterisk provides.
    let out_dir = project_dir().join(format!("target/e2e-package/refused-{}", std::process::id()));
    let out = Command::new("nsenter")
        .args(["-t", &tree.holder.id().to_string(), "-m", "--"])
        .arg(project_dir().join("scripts/package.sh"))
        .args(["--no-build", "--out"])
        .arg(&out_dir)
        .env("ASTERISK_INCLUDE_DIR", tree.merged.join("usr/include"))
        .stdin(Stdio::null())
        .output()
        .expect("run scripts/package.sh");
    let said = text(&out);
    assert!(
        !out.status.success(),
        "package.sh packaged for an ABI the tree does not provide:\n{said}"
    );
    assert!(
        said.contains(&format!("no installed package of {} provides {abi}", tree.merged.display())),
        "{said}"
    );
    let _ = fs::remove_dir_all(&out_dir);
}

/// lintian (Debian sid's, the Debian the packages are for) on both packages: no errors.
#[test]
fn lintian_reports_no_errors_on_either_package() {
    let p = packages();
    let tags: Vec<&str> = p
        .lint
        .lines()
        .filter(|l| l.len() > 2 && l.as_bytes()[1] == b':' && "EWIXPO".contains(&l[..1]))
        .collect();
    eprintln!(
        "lintian:\n{}",
        if tags.is_empty() { "(no tags)".to_string() } else { tags.join("\n") }
    );
    assert!(p.lint.contains("package: lintian: no errors"), "lintian did not run:\n{}", p.lint);
    assert!(!tags.iter().any(|t| t.starts_with("E:")), "lintian errors:\n{}", p.lint);
}

/// The FreeSWITCH module's tarball and its install script, into a FreeSWITCH 1.10 prefix (the
/// sandbox's FreeSWITCH binary, a prefix of the test's own).
#[test]
fn freeswitch_tarball_installs_into_a_freeswitch_prefix() {
    let p = packages();
    let fs_bin = sandbox().join("freeswitch/bin/freeswitch");
    assert!(
        fs_bin.is_file(),
        "no sandbox FreeSWITCH at {} (run scripts/sandbox-freeswitch.sh; tests never skip)",
        fs_bin.display()
    );
    let dir = project_dir().join(format!("target/e2e-package/fs-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let tarball = p.dir.join(format!("freeswitch-callconsent_{}_amd64.tar.gz", p.version));
    let out =
        Command::new("tar").arg("xzf").arg(&tarball).arg("-C").arg(&dir).output().expect("run tar");
    assert!(out.status.success(), "{}", text(&out));
    let unpacked = dir.join(format!("freeswitch-callconsent-{}", p.version));
    let prefix = dir.join("fs");
    for d in ["bin", "conf/autoload_configs", "mod", "sounds"] {
        fs::create_dir_all(prefix.join(d)).unwrap();
    }
    std::os::unix::fs::symlink(&fs_bin, prefix.join("bin/freeswitch")).unwrap();
    let install = |args: &[&str]| -> Output {
        Command::new(unpacked.join("install.sh"))
            .args(["--fs-prefix", prefix.to_str().unwrap()])
            .args(args)
            .output()
            .expect("run the tarball's install.sh")
    };
    let out = install(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let module = fs::read(prefix.join("mod/mod_callconsent.so")).expect("the module was installed");
    assert!(
        module.windows(32).any(|w| w == b"mod_callconsent_module_interface"),
        "not mod_callconsent"
    );
    for f in [
        "conf/autoload_configs/callconsent.conf.xml",
        "conf/dialplan/callconsent.xml.sample",
        "sounds/callconsent/notice.wav",
        "sounds/callconsent/fr/notice.wav",
    ] {
        assert!(prefix.join(f).is_file(), "{f} was not installed");
    }
    // A second install keeps the admin's configuration and a studio recording.
    let conf = prefix.join("conf/autoload_configs/callconsent.conf.xml");
    fs::write(&conf, "<!-- the admin's -->").unwrap();
    fs::write(prefix.join("sounds/callconsent/notice.wav"), "studio").unwrap();
    fs::remove_file(prefix.join("sounds/callconsent/.notice.generated")).unwrap();
    let out = install(&[]);
    assert!(out.status.success() && text(&out).contains("kept the existing"), "{}", text(&out));
    assert_eq!(fs::read_to_string(&conf).unwrap(), "<!-- the admin's -->");
    assert_eq!(fs::read_to_string(prefix.join("sounds/callconsent/notice.wav")).unwrap(), "studio");
    assert!(prefix.join("conf/autoload_configs/callconsent.conf.xml.sample").is_file());
    // --uninstall takes the module only.
    let out = install(&["--uninstall"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!prefix.join("mod/mod_callconsent.so").exists());
    assert!(conf.is_file() && prefix.join("sounds/callconsent/fr/notice.wav").is_file());
    // Another FreeSWITCH than 1.10 is refused.
    fs::remove_file(prefix.join("bin/freeswitch")).unwrap();
    fs::write(
        prefix.join("bin/freeswitch"),
        "#!/bin/sh\necho 'FreeSWITCH version: 1.8.7-release~64bit ( 64bit)'\n",
    )
    .unwrap();
    fs::set_permissions(prefix.join("bin/freeswitch"), fs::Permissions::from_mode(0o755)).unwrap();
    let out = install(&[]);
    assert!(
        !out.status.success() && text(&out).contains("FreeSWITCH 1.8.7 is not supported"),
        "{}",
        text(&out)
    );
    let _ = fs::remove_dir_all(&dir);
}
