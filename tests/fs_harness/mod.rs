//! End-to-end harness for FreeSWITCH: the sandbox's FreeSWITCH 1.10.12
//! (scripts/sandbox-freeswitch.sh) with the freshly built `mod_callconsent`, one instance per
//! test, stopped on drop. A missing sandbox, sipp or module is a failure (a panic saying what to
//! run), never a skip — under CI=true and everywhere else.
//!
//! Include it from an e2e test file with
//!     #[path = "fs_harness/mod.rs"] mod fs_harness;
//!     use fs_harness::*;
//!
//! Layout: the whole instance lives inside the sid chroot, at
//! `<sandbox>/sid/var/tmp/cc-fs/<name>-<pid>-<n>` on the host (`Fs::dir`), which sipp (run in
//! the chroot) sees as `/var/tmp/cc-fs/<name>-<pid>-<n>` (`Fs::cdir`). FreeSWITCH runs on the
//! host and gets host paths: `{DIR}` in configuration and dialplan text is `dir`; `{D}` in sipp
//! scenarios is `cdir`. Under it: conf/ (freeswitch.xml, autoload_configs/), mod/ (links to the
//! sandbox's modules, a copy of mod_callconsent.so), log/ (freeswitch.log, stdout.log, sipp
//! logs, callconsent/audit.jsonl), recordings/ (callconsent/ is the module's spool), db/ run/
//! temp/ storage/ cache/, sounds/ (captures for sipp), sipp/ (the scenarios as run).
//! The directory is removed when a test passes and kept (and its logs printed) when it fails;
//! CALLCONSENT_KEEP=1 keeps it always.
#![allow(dead_code)]

#[path = "../harness/common.rs"]
mod common;
#[path = "../harness/pcap.rs"]
pub mod pcap;
pub use common::*;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where `callconsent_conf` puts the module's spool and audit log (see `Fs::spool_dir`,
/// `Fs::audit_path`).
pub const SPOOL: &str = "{DIR}/recordings/callconsent";
pub const AUDIT: &str = "{DIR}/log/callconsent/audit.jsonl";

/// The sandbox's FreeSWITCH prefix (bin/, mod/).
pub fn fs_prefix() -> PathBuf {
    let p = sandbox().join("freeswitch");
    assert!(
        p.join("bin/freeswitch").is_file() && p.join("mod/mod_sofia.so").is_file(),
        "no sandbox FreeSWITCH at {} (run scripts/sandbox-freeswitch.sh; end-to-end tests never skip)",
        p.display()
    );
    p
}

/// The sid chroot sipp runs in.
pub fn chroot_root() -> PathBuf {
    let root = sandbox().join("sid");
    assert!(
        root.join("usr/bin/sipp").is_file(),
        "no sipp in the sandbox chroot at {} (run scripts/sandbox.sh; end-to-end tests never skip)",
        root.display()
    );
    root
}

/// The FreeSWITCH module as cargo builds it.
pub fn module_path() -> PathBuf {
    let p = project_dir().join("target/release/libmod_callconsent.so");
    assert!(p.is_file(), "{} is missing: build it with cargo build --release", p.display());
    p
}

// ---------------------------------------------------------------------------------------------
// Ports

/// A port free for both UDP and TCP on 127.0.0.1, from the kernel.
pub fn free_udp_tcp_port() -> u16 {
    for _ in 0..50 {
        let u = UdpSocket::bind("127.0.0.1:0").expect("bind a UDP port");
        let port = u.local_addr().expect("local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// Media ports (FreeSWITCH's RTP range, sipp's media ports) come from 61000-65499, above the
/// kernel's ephemeral range (32768-60999) and the Asterisk harness's ranges (20000-40000), so
/// nothing else on the machine takes them by chance. Blocks are handed out in turn within a test
/// process (from a start drawn from its pid) and probed free before use.
const MEDIA_LO: u32 = 61000;
const MEDIA_HI: u32 = 65500;
static MEDIA_CURSOR: Mutex<Option<u32>> = Mutex::new(None);

fn port_free(p: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", p)).is_ok() && UdpSocket::bind(("0.0.0.0", p)).is_ok()
}

/// `n` consecutive free UDP ports (an even first one); returns the first.
pub fn media_ports(n: u32) -> u16 {
    let n = n + (n & 1);
    let mut cur = MEDIA_CURSOR.lock().unwrap_or_else(|e| e.into_inner());
    let span = MEDIA_HI - MEDIA_LO;
    let mut at = cur.unwrap_or_else(|| (std::process::id().wrapping_mul(2654435761) % span) & !1);
    for _ in 0..(span / n + 1) {
        if at + n > span {
            at = 0;
        }
        let base = MEDIA_LO + at;
        at += n;
        if (base..base + n).all(|p| port_free(p as u16)) {
            *cur = Some(at);
            return base as u16;
        }
    }
    panic!("no {n} free consecutive UDP ports in {MEDIA_LO}-{MEDIA_HI}");
}

/// Some socket is bound to this local UDP port (read from /proc: a probe by binding the port could
/// take it from the process about to bind it).
pub fn udp_port_bound(port: u16) -> bool {
    let want = format!(":{port:04X}");
    ["/proc/net/udp", "/proc/net/udp6"].iter().any(|f| {
        fs::read_to_string(f)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(&want)))
    })
}

// ---------------------------------------------------------------------------------------------
// Waiting

// ---------------------------------------------------------------------------------------------
// Configuration helpers

/// `autoload_configs/callconsent.conf.xml`: the module's configuration, in the shape the module
/// reads. `spool` and `audit` may use `{DIR}` (see `SPOOL`, `AUDIT`).
pub fn callconsent_conf(spool: &str, audit: &str, profiles_xml: &str) -> String {
    format!(
        "<configuration name=\"callconsent.conf\" description=\"callconsent\">\n  <settings>\n    \
         <param name=\"spool_dir\" value=\"{spool}\"/>\n    <param name=\"audit_log\" value=\"{audit}\"/>\n  \
         </settings>\n  <profiles>\n{profiles_xml}  </profiles>\n</configuration>\n"
    )
}

/// `callconsent_conf` with the harness's spool and audit log.
pub fn default_conf(profiles_xml: &str) -> String {
    callconsent_conf(SPOOL, AUDIT, profiles_xml)
}

/// A profile: a 1 s 500 Hz notice tone, `record_share` percent, then `extra_params_xml`
/// (more `<param .../>` lines).
pub fn fs_profile(name: &str, share: u8, extra_params_xml: &str) -> String {
    format!(
        "    <profile name=\"{name}\">\n      <param name=\"notice\" value=\"tone_stream://%(1000,0,500)\"/>\n      \
         <param name=\"record_share\" value=\"{share}\"/>\n{}    </profile>\n",
        extra_params_xml.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("      {}\n", l.trim())).collect::<String>()
    )
}

/// tests/sipp/fs-caller.xml with its pause: the caller hangs up `play_ms` after its capture
/// ({D}/sounds/caller.pcap) started, unless FreeSWITCH hangs up first.
pub fn caller_scenario(play_ms: u32) -> String {
    sipp_scenario("fs-caller.xml").replace("{PLAY_MS}", &play_ms.to_string())
}

/// A scenario of tests/sipp/.
pub fn sipp_scenario(name: &str) -> String {
    let p = project_dir().join("tests/sipp").join(name);
    fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

// ---------------------------------------------------------------------------------------------
// The instance

static SEQ: AtomicU32 = AtomicU32::new(0);

pub struct FsBuilder {
    name: String,
    conf_xml: Option<String>,
    dialplan: String,
    module: bool,
}

impl FsBuilder {
    /// The content of `autoload_configs/callconsent.conf.xml` (`{DIR}` replaced).
    pub fn conf_xml(mut self, text: &str) -> Self {
        self.conf_xml = Some(text.into());
        self
    }
    /// Extra `<extension>` elements for context `public`, before the template's own; `{DIR}`,
    /// `{AGENT_PORT}`, `{SIP_PORT}` replaced.
    pub fn dialplan(mut self, xml: &str) -> Self {
        self.dialplan.push_str(xml);
        self.dialplan.push('\n');
        self
    }
    /// Plain FreeSWITCH: mod_callconsent is neither copied nor loaded.
    pub fn without_module(mut self) -> Self {
        self.module = false;
        self
    }

    pub fn start(self) -> Fs {
        let prefix = fs_prefix();
        let root = chroot_root();
        let module = self.module.then(module_path);
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let cdir = format!("/var/tmp/cc-fs/{}-{}-{n}", self.name, std::process::id());
        let dir = root.join(cdir.trim_start_matches('/'));
        let _ = fs::remove_dir_all(&dir);
        for sub in [
            "conf/autoload_configs",
            "mod",
            "log/callconsent",
            "db",
            "run",
            "recordings/callconsent",
            "temp",
            "storage",
            "cache",
            "sounds",
            "sipp",
        ] {
            fs::create_dir_all(dir.join(sub)).expect("create the instance directory");
        }
        let rtp_start = media_ports(40);
        let mut fs = Fs {
            dir,
            cdir,
            root,
            prefix,
            name: self.name,
            sip_port: free_udp_tcp_port(),
            esl_port: free_tcp_port(),
            agent_port: free_udp_port(),
            rtp_start,
            // Even: FreeSWITCH rounds an odd end port down (with a warning).
            rtp_end: rtp_start + 38,
            child: None,
            api_conn: Mutex::new(None),
        };
        // Modules: links to the sandbox's, and a copy (then a rename: never a loaded .so
        // overwritten in place) of ours.
        for e in fs::read_dir(fs.prefix.join("mod")).expect("read the sandbox's mod/").flatten() {
            let name = e.file_name();
            if name.to_string_lossy().ends_with(".so") {
                std::os::unix::fs::symlink(e.path(), fs.path("mod").join(&name))
                    .expect("link a module");
            }
        }
        let load = if let Some(m) = &module {
            let tmp = fs.path("mod/.mod_callconsent.so.tmp");
            fs::copy(m, &tmp).expect("copy the module");
            fs::rename(&tmp, fs.path("mod/mod_callconsent.so")).expect("install the module");
            "<load module=\"mod_callconsent\"/>"
        } else {
            ""
        };
        let template = fs::read_to_string(project_dir().join("tests/freeswitch/freeswitch.xml"))
            .expect("read tests/freeswitch/freeswitch.xml");
        // The template's leading comment names the placeholders: only the document is filled in.
        let body = &template[template.find("<document").expect("a <document> in the template")..];
        let conf = format!("<?xml version=\"1.0\"?>\n{body}")
            .replace("{MODULE_LOAD}", load)
            .replace("{DIALPLAN}", &self.dialplan);
        fs::write(fs.path("conf/freeswitch.xml"), fs.subst(&conf)).expect("write freeswitch.xml");
        // The include's glob must match a file even when the test gives no callconsent.conf.
        fs::write(
            fs.path("conf/autoload_configs/00-harness.xml"),
            "<!-- files of this directory are included into the configuration section -->\n",
        )
        .expect("write autoload_configs");
        if let Some(text) = &self.conf_xml {
            fs.write_conf("callconsent.conf.xml", text);
        }
        fs.launch();
        fs
    }
}

/// A running FreeSWITCH; stopped (SIGTERM, then SIGKILL after 10 s) on drop.
pub struct Fs {
    /// The instance directory on the host (`{DIR}`).
    pub dir: PathBuf,
    /// The same, as sipp sees it inside the chroot (`{D}`).
    pub cdir: String,
    pub root: PathBuf,
    pub prefix: PathBuf,
    pub name: String,
    pub sip_port: u16,
    pub esl_port: u16,
    /// Where a sipp UAS agent (`agent_phone`) answers: `sofia/callconsent/agent@127.0.0.1:{AGENT_PORT}`.
    pub agent_port: u16,
    pub rtp_start: u16,
    pub rtp_end: u16,
    child: Option<Child>,
    api_conn: Mutex<Option<Esl>>,
}

extern "C" {
    fn kill(pid: i32, sig: i32) -> i32;
}

impl Fs {
    pub fn builder(name: &str) -> FsBuilder {
        FsBuilder { name: name.into(), conf_xml: None, dialplan: String::new(), module: true }
    }

    /// Fills in `{DIR}`, `{SIP_PORT}`, `{ESL_PORT}`, `{AGENT_PORT}`, `{RTP_START}`, `{RTP_END}`.
    pub fn subst(&self, text: &str) -> String {
        text.replace("{DIR}", &self.dir.display().to_string())
            .replace("{SIP_PORT}", &self.sip_port.to_string())
            .replace("{ESL_PORT}", &self.esl_port.to_string())
            .replace("{AGENT_PORT}", &self.agent_port.to_string())
            .replace("{RTP_START}", &self.rtp_start.to_string())
            .replace("{RTP_END}", &self.rtp_end.to_string())
    }

    fn launch(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("log/stdout.log"))
            .expect("open stdout.log");
        let d = |s: &str| self.dir.join(s);
        let child = Command::new(self.prefix.join("bin/freeswitch"))
            .args(["-nf", "-nc", "-nonat"])
            .arg("-conf")
            .arg(d("conf"))
            .arg("-log")
            .arg(d("log"))
            .arg("-db")
            .arg(d("db"))
            .arg("-run")
            .arg(d("run"))
            .arg("-recordings")
            .arg(d("recordings"))
            .arg("-mod")
            .arg(d("mod"))
            .arg("-temp")
            .arg(d("temp"))
            .arg("-storage")
            .arg(d("storage"))
            .arg("-cache")
            .arg(d("cache"))
            .arg("-sounds")
            .arg(d("sounds"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .expect("start the sandbox's freeswitch");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Ready: `status` says "is ready" and the sofia profile listens on its SIP port.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("freeswitch exited at start ({st}):\n{}", self.log_tail(80));
                }
            }
            if self.try_api("status").is_some_and(|s| s.contains("is ready"))
                && udp_port_bound(self.sip_port)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "freeswitch was not ready within 30 s:\n{}",
                self.log_tail(80)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Host path of something inside the instance directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// An API command over the event socket (one connection kept per instance); `None` if the
    /// socket does not answer.
    pub fn try_api(&self, cmd: &str) -> Option<String> {
        let mut conn = self.api_conn.lock().unwrap_or_else(|e| e.into_inner());
        for _ in 0..2 {
            if conn.is_none() {
                *conn = Esl::try_connect(self.esl_port);
            }
            match conn.as_mut()?.try_api(cmd) {
                Some(r) => return Some(r),
                None => *conn = None,
            }
        }
        None
    }

    /// An API command (as `fs_cli -x`); its output.
    pub fn api(&self, cmd: &str) -> String {
        self.try_api(cmd)
            .unwrap_or_else(|| panic!("API command {cmd:?} got no answer:\n{}", self.log_tail(80)))
    }

    /// `fs_cli` itself, for what a test wants to see as an operator would.
    pub fn fs_cli(&self, cmd: &str) -> String {
        let out = Command::new(self.prefix.join("bin/fs_cli"))
            .args(["-H", "127.0.0.1", "-P", &self.esl_port.to_string(), "-p", "ClueCon", "-x", cmd])
            .stdin(Stdio::null())
            .output()
            .expect("run fs_cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `reloadxml`, checked.
    pub fn reloadxml(&self) {
        let r = self.api("reloadxml");
        assert!(r.contains("+OK"), "reloadxml: {r}\n{}", self.log_tail(40));
    }

    /// Rewrites `conf/autoload_configs/<name>` (`{DIR}` etc. replaced); run `reloadxml` after.
    pub fn write_conf(&self, name: &str, text: &str) {
        let p = self.path("conf/autoload_configs").join(name);
        let tmp = p.with_extension("tmp");
        fs::write(&tmp, self.subst(text)).expect("write a config file");
        fs::rename(&tmp, &p).expect("install a config file");
    }

    /// freeswitch.log, whole.
    pub fn logs(&self) -> String {
        fs::read_to_string(self.path("log/freeswitch.log")).unwrap_or_default()
    }

    /// The last `n` lines of freeswitch.log, and stdout/stderr, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let m = self.logs();
        let lines: Vec<&str> = m.lines().collect();
        format!(
            "--- {}/log/freeswitch.log (last {n} lines) ---\n{}\n--- stdout/stderr ---\n{}",
            self.dir.display(),
            lines[lines.len().saturating_sub(n)..].join("\n"),
            fs::read_to_string(self.path("log/stdout.log")).unwrap_or_default()
        )
    }

    /// Waits until a line of freeswitch.log satisfies `pred`; returns the line.
    pub fn wait_log(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        wait_for(what, timeout, || {
            self.logs()
                .lines()
                .find(|&l| pred(l))
                .map(str::to_string)
                .ok_or_else(|| "no such line in freeswitch.log".to_string())
        })
    }

    /// The process is still there and answers.
    pub fn assert_alive(&mut self) {
        if let Some(c) = self.child.as_mut() {
            assert!(matches!(c.try_wait(), Ok(None)), "freeswitch died:\n{}", self.log_tail(80));
        }
        assert!(
            self.api("status").contains("is ready"),
            "freeswitch does not answer:\n{}",
            self.log_tail(80)
        );
    }

    /// Channels up now (`show channels count`).
    pub fn channels(&self) -> usize {
        let out = self.api("show channels count");
        out.split_whitespace()
            .zip(out.split_whitespace().skip(1))
            .find(|(_, w)| w.starts_with("total"))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected `show channels count`: {out:?}"))
    }

    /// Waits until no channel is left: 0 at every check for 300 ms, so a call between two of its
    /// legs is not taken for the end.
    pub fn wait_idle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut idle_since: Option<Instant> = None;
        loop {
            if self.channels() == 0 {
                if idle_since.get_or_insert_with(Instant::now).elapsed()
                    >= Duration::from_millis(300)
                {
                    return;
                }
            } else {
                idle_since = None;
            }
            assert!(
                Instant::now() < deadline,
                "channels still up after {timeout:?}:\n{}\n{}",
                self.api("show channels"),
                self.log_tail(60)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn audit_path(&self) -> PathBuf {
        self.path("log/callconsent/audit.jsonl")
    }

    /// The audit log's lines; a last line without its newline (being written) is left out.
    pub fn audit(&self) -> Vec<Value> {
        audit_lines(&self.audit_path())
    }

    pub fn events(&self) -> Vec<String> {
        self.audit().iter().filter_map(|v| v["event"].as_str().map(str::to_string)).collect()
    }

    /// Waits until the audit log holds at least `n` lines with this event; returns them.
    pub fn wait_event(&self, event: &str, n: usize, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let got: Vec<Value> =
                self.audit().into_iter().filter(|v| v["event"] == event).collect();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "no {n} \"{event}\" audit lines after {timeout:?}; audit:\n{}\n{}",
                self.audit().iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n"),
                self.log_tail(60)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn spool_dir(&self) -> PathBuf {
        self.path("recordings/callconsent")
    }

    /// Every file under the spool, recursively, sorted.
    pub fn spool_files(&self) -> Vec<PathBuf> {
        files_under(&self.spool_dir())
    }

    pub fn esl(&self) -> Esl {
        Esl::connect(self.esl_port)
    }

    /// Puts a capture where scenarios find it as `{D}/sounds/NAME`.
    pub fn write_sound(&self, name: &str, bytes: &[u8]) {
        fs::write(self.path("sounds").join(name), bytes).expect("write a sound");
    }

    fn write_scenario(&self, name: &str, text: &str) -> String {
        fs::write(self.path("sipp").join(name), text.replace("{D}", &self.cdir))
            .expect("write a scenario");
        format!("{}/sipp/{name}", self.cdir)
    }

    /// Runs sipp (UAC) in the chroot against this FreeSWITCH, one call; `{D}` in the scenario is
    /// the instance directory as sipp sees it. Service `in` unless `extra` has its own `-s`.
    pub fn sipp(&self, scenario: &str, extra: &[&str]) -> Output {
        let k = SEQ.fetch_add(1, Ordering::SeqCst);
        let sf = self.write_scenario(&format!("uac-{k}.xml"), scenario);
        let media = media_ports(4);
        let mut cmd = Command::new("chroot");
        cmd.arg(&self.root).args([
            "/usr/bin/sipp",
            &format!("127.0.0.1:{}", self.sip_port),
            "-sf",
            &sf,
            "-m",
            "1",
            "-l",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &free_udp_port().to_string(),
            "-mp",
            &media.to_string(),
            "-max_rtp_port",
            &(media + 3).to_string(),
            "-s",
            "in",
            "-timeout",
            "40s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            &format!("{}/log/sipp-uac-{k}-errors.log", self.cdir),
        ]);
        cmd.args(extra).stdin(Stdio::null());
        cmd.output().expect("run sipp")
    }

    /// `sipp`, asserting the call succeeded (with sipp's output and FreeSWITCH's log if not).
    pub fn sipp_ok(&self, scenario: &str, extra: &[&str]) -> Output {
        let out = self.sipp(scenario, extra);
        assert!(
            out.status.success(),
            "sipp failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- errors ---\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.sipp_errors(),
            self.log_tail(60)
        );
        out
    }

    /// What sipp wrote to its error files (-trace_err) in this instance.
    pub fn sipp_errors(&self) -> String {
        let mut s = String::new();
        for f in files_under(&self.path("log")) {
            let n = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            if n.starts_with("sipp") {
                s.push_str(&format!(
                    "--- {n} ---\n{}\n",
                    fs::read_to_string(&f).unwrap_or_default()
                ));
            }
        }
        s
    }

    /// The agent's phone: a sipp UAS on `agent_port` that answers, plays `pcap` (as
    /// {D}/sounds/agent.pcap) and stays until FreeSWITCH hangs up (at most 50 s).
    pub fn agent_phone(&self, pcap: &[u8]) -> Sipp {
        self.uas_phone(pcap, 50_000)
    }

    /// As `agent_phone`; the phone hangs up by itself `hold_ms` after the answer unless
    /// FreeSWITCH did before.
    pub fn uas_phone(&self, pcap: &[u8], hold_ms: u32) -> Sipp {
        self.write_sound("agent.pcap", pcap);
        let text = sipp_scenario("fs-agent-uas.xml").replace("{HOLD_MS}", &hold_ms.to_string());
        let sf = self.write_scenario("fs-agent-uas.xml", &text);
        let media = media_ports(4);
        let log_path = self.path("log/sipp-agent.log");
        let log = fs::File::create(&log_path).expect("create the sipp log");
        let mut child = Command::new("chroot")
            .arg(&self.root)
            .args([
                "/usr/bin/sipp",
                "-sf",
                &sf,
                "-m",
                "1",
                "-i",
                "127.0.0.1",
                "-p",
                &self.agent_port.to_string(),
            ])
            .args([
                "-mp",
                &media.to_string(),
                "-max_rtp_port",
                &(media + 3).to_string(),
                "-timeout",
                "60s",
                "-nostdin",
                "-trace_err",
            ])
            .args(["-error_file", &format!("{}/log/sipp-agent-errors.log", self.cdir)])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start sipp");
        // FreeSWITCH may call the agent only once the phone listens on its SIP port.
        let port = self.agent_port;
        wait_until(
            &format!("the agent's phone (sipp) to listen on UDP port {port}"),
            Duration::from_secs(10),
            || {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!(
                        "the agent's phone (sipp) exited at start ({st}):\n{}",
                        fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
                udp_port_bound(port)
            },
        );
        Sipp { child, log: log_path }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

impl Drop for Fs {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            eprintln!(
                "=== FreeSWITCH instance {} ({}) ===\n{}\n{}",
                self.name,
                self.dir.display(),
                self.log_tail(120),
                self.sipp_errors()
            );
        }
        *self.api_conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { kill(c.id() as i32, 15) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(c.try_wait(), Ok(None)) {
                eprintln!("freeswitch {} did not stop within 10 s of SIGTERM: SIGKILL", c.id());
                let _ = c.kill();
            }
            let _ = c.wait();
        }
        if !failed && std::env::var_os("CALLCONSENT_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A sipp running in the background (an agent's phone); killed on drop.
pub struct Sipp {
    child: Child,
    log: PathBuf,
}

impl Sipp {
    /// Waits until sipp exits; true if its call succeeded.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return st.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => return false,
            }
        }
    }

    /// sipp's screen output so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Event socket

/// One message of the event socket: its envelope headers and body.
struct Msg {
    headers: HashMap<String, String>,
    body: String,
}

/// A minimal event-socket client (inbound mode): `api` commands and plain events.
pub struct Esl {
    stream: TcpStream,
    rx: Receiver<Msg>,
    /// Events received so far (headers url-decoded; an event's own body under "_body").
    pub seen: Vec<HashMap<String, String>>,
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The headers of a `text/event-plain` body, url-decoded; the event's body (after its own
/// Content-Length) under "_body".
pub fn parse_plain_event(text: &str) -> HashMap<String, String> {
    let (head, rest) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut m = HashMap::new();
    for line in head.lines() {
        if let Some((k, v)) = line.split_once(": ") {
            m.insert(k.to_string(), url_decode(v.trim_end_matches('\r')));
        } else if let Some(k) = line.strip_suffix(':') {
            m.insert(k.to_string(), String::new());
        }
    }
    if let Some(n) = m.get("Content-Length").and_then(|n| n.parse::<usize>().ok()) {
        let body: String = rest.chars().take(n).collect();
        m.insert("_body".into(), body);
    }
    m
}

impl Esl {
    pub fn connect(port: u16) -> Esl {
        Esl::try_connect(port).unwrap_or_else(|| {
            panic!("could not connect and log in to the event socket on 127.0.0.1:{port}")
        })
    }

    pub fn try_connect(port: u16) -> Option<Esl> {
        let stream =
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
                .ok()?;
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let (tx, rx) = channel();
        std::thread::spawn(move || loop {
            let mut headers = HashMap::new();
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                let l = line.trim_end();
                if l.is_empty() {
                    if headers.is_empty() {
                        continue;
                    }
                    break;
                }
                if let Some((k, v)) = l.split_once(": ") {
                    headers.insert(k.to_string(), v.to_string());
                }
            }
            let mut body = String::new();
            if let Some(n) = headers.get("Content-Length").and_then(|n| n.parse::<usize>().ok()) {
                let mut buf = vec![0u8; n];
                if reader.read_exact(&mut buf).is_err() {
                    return;
                }
                body = String::from_utf8_lossy(&buf).into_owned();
            }
            if tx.send(Msg { headers, body }).is_err() {
                return;
            }
        });
        let mut esl = Esl { stream, rx, seen: vec![] };
        let first = esl.recv_until(Duration::from_secs(5), |m| {
            m.headers.get("Content-Type").is_some_and(|t| t == "auth/request")
        })?;
        drop(first);
        let r = esl.command("auth ClueCon")?;
        r.starts_with("+OK").then_some(esl)
    }

    fn recv_until(&mut self, timeout: Duration, want: impl Fn(&Msg) -> bool) -> Option<Msg> {
        let deadline = Instant::now() + timeout;
        loop {
            let m = match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return None
                }
            };
            if want(&m) {
                return Some(m);
            }
            self.keep(m);
        }
    }

    fn keep(&mut self, m: Msg) {
        if m.headers.get("Content-Type").is_some_and(|t| t == "text/event-plain") {
            self.seen.push(parse_plain_event(&m.body));
        }
    }

    /// A command; its Reply-Text.
    fn command(&mut self, cmd: &str) -> Option<String> {
        self.stream.write_all(format!("{cmd}\n\n").as_bytes()).ok()?;
        let m = self.recv_until(Duration::from_secs(10), |m| {
            m.headers.get("Content-Type").is_some_and(|t| t == "command/reply")
        })?;
        Some(m.headers.get("Reply-Text").cloned().unwrap_or_default())
    }

    pub fn try_api(&mut self, cmd: &str) -> Option<String> {
        self.stream.write_all(format!("api {cmd}\n\n").as_bytes()).ok()?;
        let m = self.recv_until(Duration::from_secs(30), |m| {
            m.headers.get("Content-Type").is_some_and(|t| t == "api/response")
        })?;
        Some(m.body)
    }

    /// An API command; its output.
    pub fn api(&mut self, cmd: &str) -> String {
        self.try_api(cmd).unwrap_or_else(|| panic!("event socket: no answer to api {cmd:?}"))
    }

    /// Subscribes to events, plain format: e.g. "CHANNEL_ANSWER" or "CUSTOM callconsent::state".
    pub fn subscribe(&mut self, events: &str) {
        let r = self
            .command(&format!("event plain {events}"))
            .unwrap_or_else(|| panic!("event socket: no reply to event plain {events}"));
        assert!(r.starts_with("+OK"), "event plain {events}: {r}");
    }

    /// Drains what has arrived; every event seen so far.
    pub fn events(&mut self) -> &[HashMap<String, String>] {
        while let Ok(m) = self.rx.try_recv() {
            self.keep(m);
        }
        &self.seen
    }

    /// The first event (seen before or arriving within `timeout`) that satisfies `pred`.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        pred: impl Fn(&HashMap<String, String>) -> bool,
    ) -> HashMap<String, String> {
        if let Some(m) = self.events().iter().find(|m| pred(m)) {
            return m.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let m = match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(m) => m,
                Err(_) => panic!(
                    "the awaited event did not come within {timeout:?}; seen: {:#?}",
                    self.seen
                        .iter()
                        .map(|e| e.get("Event-Name").cloned().unwrap_or_default()
                            + " "
                            + &e.get("Event-Subclass").cloned().unwrap_or_default())
                        .collect::<Vec<_>>()
                ),
            };
            let n = self.seen.len();
            self.keep(m);
            if self.seen.len() > n && pred(&self.seen[n]) {
                return self.seen[n].clone();
            }
        }
    }
}

impl Drop for Esl {
    fn drop(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

// ---------------------------------------------------------------------------------------------
// Recordings

/// A WAV file's format and 16-bit samples (interleaved when stereo).
pub struct Wav {
    pub rate: u32,
    pub channels: u16,
    pub samples: Vec<i16>,
}

impl Wav {
    /// One channel's samples (0 = left).
    pub fn channel(&self, c: u16) -> Vec<i16> {
        self.samples
            .iter()
            .skip(c as usize)
            .step_by(self.channels.max(1) as usize)
            .copied()
            .collect()
    }
}

pub fn read_wav(file: &Path) -> Wav {
    let bytes = fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    assert!(
        bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WAVE",
        "{}: not a WAV file",
        file.display()
    );
    let (mut rate, mut channels, mut bits) = (0u32, 0u16, 0u16);
    let mut i = 12;
    while i + 8 <= bytes.len() {
        let id = &bytes[i..i + 4];
        let len =
            u32::from_le_bytes([bytes[i + 4], bytes[i + 5], bytes[i + 6], bytes[i + 7]]) as usize;
        if id == b"fmt " && i + 24 <= bytes.len() {
            channels = u16::from_le_bytes([bytes[i + 10], bytes[i + 11]]);
            rate = u32::from_le_bytes([bytes[i + 12], bytes[i + 13], bytes[i + 14], bytes[i + 15]]);
            bits = u16::from_le_bytes([bytes[i + 22], bytes[i + 23]]);
        }
        if id == b"data" {
            assert_eq!(bits, 16, "{}: {bits}-bit samples, not 16", file.display());
            let end = (i + 8 + len).min(bytes.len());
            let samples = bytes[i + 8..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            return Wav { rate, channels, samples };
        }
        i += 8 + len + (len & 1);
    }
    panic!("{}: no data chunk", file.display());
}

/// The samples of a mono 8 kHz WAV (what record_session writes for a G.711 call).
pub fn wav_samples(file: &Path) -> Vec<i16> {
    let w = read_wav(file);
    assert!(
        w.rate == 8000 && w.channels == 1,
        "{}: {} Hz, {} channels; expected 8000 Hz mono",
        file.display(),
        w.rate,
        w.channels
    );
    w.samples
}

/// Where in the samples (ms from the start) a tone is first and last detected, if at all.
pub fn tone_span_ms(samples: &[i16], freq: f32) -> Option<(u32, u32)> {
    let mut first = None;
    let mut last = None;
    for (k, w) in samples.chunks(160).enumerate() {
        if tone_ms(w, freq) > 0 {
            first.get_or_insert(k as u32 * 20);
            last = Some(k as u32 * 20 + 20);
        }
    }
    first.zip(last)
}
