//! End-to-end harness: a real Asterisk 22 from the project's sandbox (scripts/sandbox.sh), run
//! chrooted with the freshly built module, one instance per test, killed on drop. A missing
//! sandbox or module is a failure, never a skip.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver};

mod common;
pub mod pcap;
pub mod pg;
pub mod webdriver;
pub use common::*;
use serde_json::Value;

pub const MODULES: &[&str] = &[
    "app_mixmonitor.so",
    "app_dial.so",
    "app_playback.so",
    "app_senddtmf.so",
    "app_echo.so",
    "app_verbose.so",
    "app_system.so",
    "app_read.so",
    "app_queue.so",
    "app_stack.so",
    "pbx_config.so",
    "func_channel.so",
    "func_strings.so",
    "func_logic.so",
    "format_wav.so",
    "format_pcm.so",
    "format_sln.so",
    "codec_ulaw.so",
    "codec_alaw.so",
    "res_rtp_asterisk.so",
    "bridge_simple.so",
    "bridge_native_rtp.so",
    "bridge_builtin_features.so",
    "bridge_softmix.so",
    "res_pjsip.so",
    "res_pjsip_session.so",
    "res_pjsip_pubsub.so",
    "chan_pjsip.so",
    "res_pjsip_sdp_rtp.so",
    "res_pjsip_endpoint_identifier_ip.so",
    "res_pjsip_endpoint_identifier_user.so",
    "res_pjproject.so",
    "res_sorcery_config.so",
    "res_sorcery_memory.so",
    "res_sorcery_astdb.so",
    "res_pjsip_caller_id.so",
    "res_pjsip_dtmf_info.so",
    "res_pjsip_logger.so",
    "res_timing_timerfd.so",
    "res_musiconhold.so",
    "res_features.so",
    "func_callerid.so",
    "func_sha1.so",
    "res_pjsip_refer.so",
    "res_clioriginate.so",
    "func_global.so",
];

pub fn sandbox_root() -> PathBuf {
    let root = sandbox().join("sid");
    assert!(
        root.join("usr/sbin/asterisk").is_file(),
        "no sandbox Asterisk at {} (run scripts/sandbox.sh; end-to-end tests never skip)",
        root.display()
    );
    root
}

pub fn module_path() -> PathBuf {
    let p = project_dir().join("target/release/libcallconsent.so");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --release` first (scripts/test.sh does)",
        p.display()
    );
    p
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A running Asterisk. `dir` is the instance's directory on the host; `cdir` the same seen from
/// inside the chroot.
pub struct Pbx {
    pub root: PathBuf,
    pub dir: PathBuf,
    pub cdir: String,
    pub ami_port: u16,
    pub sip_port: u16,
    /// Where the PJSIP endpoint `agent` (a sipp UAS) answers.
    pub agent_port: u16,
    child: Option<Child>,
    pub name: String,
    /// Asterisk runs as this user (`-U`/`-G`), as Debian's package runs it; None: root.
    user: Option<String>,
}

pub struct PbxBuilder {
    name: String,
    files: Vec<(String, String)>,
    var_files: Vec<(String, Vec<u8>)>,
    module: bool,
    sip: bool,
    installed: bool,
    user: Option<String>,
}

impl PbxBuilder {
    /// A file under the instance's etc/ ("{D}" in the text is replaced by the instance directory,
    /// as seen from inside the chroot; "{SIP_PORT}" and "{AGENT_PORT}" by the instance's ports).
    pub fn file(mut self, name: &str, text: &str) -> Self {
        self.files.push((name.into(), text.into()));
        self
    }
    /// A file under the instance's astvarlibdir (`db/`), there before Asterisk starts.
    pub fn var_file(mut self, name: &str, bytes: &[u8]) -> Self {
        self.var_files.push((name.into(), bytes.to_vec()));
        self
    }
    pub fn without_module(mut self) -> Self {
        self.module = false;
        self
    }
    /// Use what `scripts/install.sh` put into the sandbox's own Asterisk: its module directory,
    /// its data directory (documentation, prompts) and its callconsent.conf.
    pub fn installed(mut self) -> Self {
        self.installed = true;
        self.module = false;
        self
    }
    pub fn sip(mut self) -> Self {
        self.sip = true;
        self
    }
    /// Run Asterisk as the unprivileged `asterisk` user (`asterisk -U asterisk -G asterisk`, as
    /// Debian's package does with `runuser`), the instance directory owned by it.
    // A builder step ("run it as the asterisk user"), not a conversion.
    #[allow(clippy::wrong_self_convention)]
    pub fn as_asterisk_user(mut self) -> Self {
        self.user = Some("asterisk".into());
        self
    }

    pub fn start(self) -> Pbx {
        let root = sandbox_root();
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let cdir = format!("/var/tmp/cc-e2e/{}-{}-{n}", self.name, std::process::id());
        let dir = root.join(cdir.trim_start_matches('/'));
        let _ = fs::remove_dir_all(&dir);
        for sub in [
            "etc",
            "modules",
            "spool",
            "run",
            "log",
            "db",
            "sounds",
            "data/documentation/thirdparty",
        ] {
            fs::create_dir_all(dir.join(sub)).expect("create the instance directory");
        }
        let ami_port = free_tcp_port();
        let sip_port = free_udp_port();
        let agent_port = free_udp_port();
        let rtp_base = 20000 + (std::process::id() % 200) * 100 + (n % 20) * 20;
        let data =
            if self.installed { "/usr/share/asterisk".to_string() } else { format!("{cdir}/data") };
        let w = |name: &str, text: &str| {
            let text = text
                .replace("{DATA}", &data)
                .replace("{D}", &cdir)
                .replace("{SIP_PORT}", &sip_port.to_string())
                .replace("{AGENT_PORT}", &agent_port.to_string());
            fs::write(dir.join("etc").join(name), text).expect("write a config file");
        };
        // The data directory: the stock one, with this build's documentation beside the core's.
        let stock = root.join("usr/share/asterisk");
        for e in fs::read_dir(&stock).expect("read /usr/share/asterisk").flatten() {
            let name = e.file_name();
            if name != "documentation" {
                std::os::unix::fs::symlink(
                    Path::new("/usr/share/asterisk").join(&name),
                    dir.join("data").join(&name),
                )
                .expect("link the data dir");
            }
        }
        for f in ["appdocsxml.dtd", "appdocsxml.xslt", "core-en_US.xml"] {
            std::os::unix::fs::symlink(
                Path::new("/usr/share/asterisk/documentation").join(f),
                dir.join("data/documentation").join(f),
            )
            .expect("link the core docs");
        }
        fs::copy(
            project_dir().join("doc/res_callconsent-en_US.xml"),
            dir.join("data/documentation/thirdparty/res_callconsent-en_US.xml"),
        )
        .expect("copy the docs");
        w(
            "asterisk.conf",
            "[directories]\nastetcdir => {D}/etc\nastmoddir => {D}/modules\nastvarlibdir => {D}/db\nastdbdir => {D}/db\n\
             astkeydir => {D}/db\nastdatadir => {DATA}\nastagidir => /usr/share/asterisk/agi-bin\n\
             astspooldir => {D}/spool\nastrundir => {D}/run\nastlogdir => {D}/log\nastsbindir => /usr/sbin\n\
             [options]\nverbose = 3\ndebug = 0\ncache_media_frames = yes\n",
        );
        let mut modules = String::from("[modules]\nautoload = no\n");
        for m in MODULES {
            let src = Path::new("/usr/lib/x86_64-linux-gnu/asterisk/modules").join(m);
            if root.join(src.strip_prefix("/").unwrap_or(&src)).exists() {
                std::os::unix::fs::symlink(&src, dir.join("modules").join(m))
                    .expect("link a stock module");
                modules.push_str(&format!("load => {m}\n"));
            }
        }
        if self.installed {
            std::os::unix::fs::symlink(
                "/usr/lib/x86_64-linux-gnu/asterisk/modules/res_callconsent.so",
                dir.join("modules/res_callconsent.so"),
            )
            .expect("link the installed module");
            modules.push_str("load => res_callconsent.so\n");
            let conf = fs::read_to_string(root.join("etc/asterisk/callconsent.conf"))
                .expect("the installed callconsent.conf");
            fs::write(dir.join("etc/callconsent.conf"), conf)
                .expect("copy the installed configuration");
        }
        if self.module {
            // A copy, then a rename: never overwrite a loaded .so in place.
            let tmp = dir.join("modules/.res_callconsent.so.tmp");
            fs::copy(module_path(), &tmp).expect("copy the module");
            fs::rename(&tmp, dir.join("modules/res_callconsent.so")).expect("install the module");
            modules.push_str("load => res_callconsent.so\n");
        }
        w("modules.conf", &modules);
        w(
            "logger.conf",
            "[general]\n[logfiles]\nmessages.log => notice,warning,error,verbose(3)\n",
        );
        w(
            "manager.conf",
            &format!("[general]\nenabled = yes\nport = {ami_port}\nbindaddr = 127.0.0.1\n\n[test]\nsecret = test\nread = all\nwrite = all\n"),
        );
        w("rtp.conf", &format!("[general]\nrtpstart = {rtp_base}\nrtpend = {}\n", rtp_base + 19));
        w("musiconhold.conf", "[general]\n");
        w("queues.conf", "[general]\n");
        if self.sip {
            w(
                "pjsip.conf",
                &format!(
                    "[transport-udp]\ntype = transport\nprotocol = udp\nbind = 127.0.0.1:{sip_port}\n\n\
                     [sipp]\ntype = endpoint\ncontext = test\ndisallow = all\nallow = alaw,ulaw\ndtmf_mode = rfc4733\n\
                     direct_media = no\nrtp_symmetric = yes\n\n[sipp]\ntype = identify\nendpoint = sipp\nmatch = 127.0.0.1\n\n\
                     [agent]\ntype = endpoint\ncontext = test\ndisallow = all\nallow = alaw\ndtmf_mode = rfc4733\n\
                     direct_media = no\nrtp_symmetric = yes\naors = agent\n\n[agent]\ntype = aor\ncontact = sip:agent@127.0.0.1:{agent_port}\n"
                ),
            );
        } else {
            w("pjsip.conf", "");
        }
        for (name, bytes) in &self.var_files {
            let p = dir.join("db").join(name);
            fs::create_dir_all(p.parent().expect("a parent")).expect("create a var directory");
            fs::write(&p, bytes).expect("write a var file");
        }
        for (name, text) in &self.files {
            w(name, text);
        }
        if let Some(user) = &self.user {
            let st = Command::new("chroot")
                .arg(&root)
                .args(["chown", "-R", &format!("{user}:{user}"), &cdir])
                .status()
                .expect("chown the instance in the sandbox");
            assert!(
                st.success(),
                "chown -R {user} {cdir} failed (does the sandbox have the {user} user?)"
            );
        }
        let mut pbx = Pbx {
            root,
            dir,
            cdir,
            ami_port,
            sip_port,
            agent_port,
            child: None,
            name: self.name,
            user: self.user,
        };
        pbx.launch();
        pbx
    }
}

impl Pbx {
    pub fn builder(name: &str) -> PbxBuilder {
        PbxBuilder {
            name: name.into(),
            files: vec![],
            var_files: vec![],
            module: true,
            sip: false,
            installed: false,
            user: None,
        }
    }

    fn launch(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stdout.log"))
            .expect("open stdout.log");
        let child = Command::new("chroot")
            .arg(&self.root)
            .args(["/usr/sbin/asterisk", "-f", "-C"])
            .arg(format!("{}/etc/asterisk.conf", self.cdir))
            .args(
                self.user
                    .as_ref()
                    .map(|u| vec!["-U".to_string(), u.clone(), "-G".to_string(), u.clone()])
                    .unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log)
            .spawn()
            .expect("start the sandbox's asterisk");
        self.child = Some(child);
        self.wait_booted();
    }

    /// kill -9, then start again on the same directories (var, spool, logs, configuration).
    pub fn kill9_and_restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = fs::remove_file(self.path("run/asterisk.ctl"));
        self.launch();
    }

    fn wait_booted(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("asterisk exited at start ({st}):\n{}", self.logs());
                }
            }
            if let Some(out) = self.try_rx("core waitfullybooted") {
                if out.contains("fully booted") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "asterisk did not boot within 30 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn try_rx(&self, cmd: &str) -> Option<String> {
        let out = Command::new("chroot")
            .arg(&self.root)
            .args(["/usr/sbin/asterisk", "-C"])
            .arg(format!("{}/etc/asterisk.conf", self.cdir))
            .args(["-rx", cmd])
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs a CLI command.
    pub fn rx(&self, cmd: &str) -> String {
        self.try_rx(cmd).unwrap_or_else(|| panic!("CLI command {cmd:?} failed:\n{}", self.logs()))
    }

    /// Rewrites a file of the instance's etc/ ("{D}" as for the builder).
    pub fn write_conf(&self, name: &str, text: &str) {
        fs::write(self.path("etc").join(name), text.replace("{D}", &self.cdir))
            .expect("write a config file");
    }

    /// Host path of something inside the instance directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    pub fn messages(&self) -> String {
        fs::read_to_string(self.path("log/messages.log")).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        let m = self.messages();
        let tail: Vec<&str> =
            m.lines().rev().take(80).collect::<Vec<_>>().into_iter().rev().collect();
        format!(
            "--- messages.log (last 80 lines) ---\n{}\n--- stdout ---\n{}",
            tail.join("\n"),
            fs::read_to_string(self.path("stdout.log")).unwrap_or_default()
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// CPU time (user + system) Asterisk has used so far, in milliseconds.
    pub fn cpu_ms(&self) -> u64 {
        let stat = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<u64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
        // Fields 14 and 15 (utime, stime), counted after the ")" that ends field 2.
        (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) * 10
    }

    /// The process is still there and answers the CLI.
    pub fn assert_alive(&mut self) {
        if let Some(c) = self.child.as_mut() {
            assert!(matches!(c.try_wait(), Ok(None)), "asterisk died:\n{}", self.logs());
        }
        assert!(
            self.rx("core show uptime").contains("System uptime"),
            "asterisk does not answer:\n{}",
            self.logs()
        );
    }

    pub fn originate(&self, channel: &str, target: &str) {
        let out = self.rx(&format!("channel originate {channel} extension {target}"));
        assert!(!out.contains("No such command"), "originate: {out}");
    }

    pub fn active_calls(&self) -> usize {
        let out = self.rx("core show channels count");
        out.lines()
            .find(|l| l.contains("active channel"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Waits until no channel is left (the scripted calls ended): no channel at every check for
    /// 300 ms, so a call between two of its steps (a Local channel being set up) is not taken for
    /// the end.
    pub fn wait_idle(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut idle_since: Option<Instant> = None;
        loop {
            if self.active_calls() == 0 {
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
                "calls still up after {timeout:?}:\n{}\n{}",
                self.rx("core show channels"),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn audit_path(&self) -> PathBuf {
        self.path("log/callconsent/audit.jsonl")
    }

    pub fn audit(&self) -> Vec<Value> {
        audit_lines(&self.audit_path())
    }

    pub fn events(&self) -> Vec<String> {
        self.audit().iter().filter_map(|v| v["event"].as_str().map(str::to_string)).collect()
    }

    /// Waits until the audit log holds `n` lines with this event.
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
                "no {n} \"{event}\" audit lines after {timeout:?}; log:\n{}\n{}",
                self.audit().iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n"),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `n` calls have settled: `call_settled` is a call's last line, written once every
    /// piece of its work is done (the recorder stopped, the files kept or deleted, the late looks
    /// for a refused call's files included). Checks what settling means on the way: each
    /// `call_settled` follows its call's `call_ended` (same call, channel and profile), once per call.
    pub fn wait_settled(&self, n: usize, timeout: Duration) -> Vec<Value> {
        let settled = self.wait_event("call_settled", n, timeout);
        let audit = self.audit();
        let dump = || audit.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n");
        let same = |a: &Value, b: &Value| a["call"] == b["call"] && a["channel"] == b["channel"];
        for (i, s) in audit.iter().enumerate().filter(|(_, v)| v["event"] == "call_settled") {
            let ended = audit[..i].iter().find(|&v| v["event"] == "call_ended" && same(v, s));
            let ended = ended.unwrap_or_else(|| {
                panic!("call_settled without its call's call_ended before it: {s}\n{}", dump())
            });
            assert_eq!(
                ended["profile"], s["profile"],
                "call_settled names another profile than call_ended: {s}"
            );
            assert_eq!(
                audit.iter().filter(|&v| v["event"] == "call_settled" && same(v, s)).count(),
                1,
                "more than one call_settled for a call:\n{}",
                dump()
            );
        }
        settled
    }

    /// Waits until a line of messages.log satisfies `pred` (Asterisk writes its log on its own
    /// thread); returns the line.
    pub fn wait_log(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        wait_for(what, timeout, || {
            self.messages()
                .lines()
                .find(|&l| pred(l))
                .map(str::to_string)
                .ok_or_else(|| "no such line in messages.log".to_string())
        })
    }

    /// Waits until every MixMonitor started on a channel whose name begins with `prefix` has
    /// closed its files: app_mixmonitor logs "End MixMonitor Recording <channel>" once they are.
    pub fn wait_mixmonitor_closed(&self, prefix: &str, timeout: Duration) {
        let (begin, end) = (
            format!("Begin MixMonitor Recording {prefix}"),
            format!("End MixMonitor Recording {prefix}"),
        );
        wait_for(&format!("the MixMonitor of {prefix}* to close its files"), timeout, || {
            let m = self.messages();
            let (b, e) = (m.matches(&begin).count(), m.matches(&end).count());
            if b > 0 && e >= b {
                Ok(())
            } else {
                Err(format!("{b} begun, {e} ended"))
            }
        })
    }

    /// Once the agent `Local/talk@test` has said its tone (its dialplan is at its Wait, priority
    /// 3), blind-transfers it to `exten@test` through AMI.
    pub fn transfer_talker(&self, ami: &mut Ami, exten: &str) {
        self.wait_log("the first agent's tone to end", Duration::from_secs(10), |l| {
            l.contains("[talk@test:3]") && l.contains("Wait(\"Local/talk@test-")
        });
        let out = self.rx("core show channels concise");
        let agent = out
            .lines()
            .filter_map(|l| l.split('!').next())
            .find(|c| c.starts_with("Local/talk@test-") && c.ends_with(";1"))
            .expect("the agent's channel")
            .to_string();
        let r = ami
            .action("BlindTransfer", &[("Channel", &agent), ("Context", "test"), ("Exten", exten)]);
        assert_eq!(r.get("Response").map(String::as_str), Some("Success"), "{r:?}");
    }

    /// Files in the instance's recording spool.
    pub fn spool_files(&self) -> Vec<PathBuf> {
        let mut out = vec![];
        let mut stack = vec![self.path("spool")];
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

    /// Host path for a path seen inside the chroot.
    pub fn host_path(&self, chroot_path: &str) -> PathBuf {
        self.root.join(chroot_path.trim_start_matches('/'))
    }

    pub fn ami(&self) -> Ami {
        Ami::connect(self.ami_port)
    }

    /// Runs sipp inside the sandbox against this Asterisk.
    pub fn sipp(&self, scenario: &str, extra: &[&str]) -> std::process::Output {
        let sc = self.path("sounds/scenario.xml");
        fs::write(&sc, scenario.replace("{D}", &self.cdir)).expect("write the scenario");
        let port = free_udp_port().to_string();
        let media = (30000 + (std::process::id() % 500) * 8).to_string();
        let mut cmd = Command::new("chroot");
        cmd.arg(&self.root).args([
            "/usr/bin/sipp",
            &format!("127.0.0.1:{}", self.sip_port),
            "-sf",
            &format!("{}/sounds/scenario.xml", self.cdir),
            "-m",
            "1",
            "-l",
            "1",
            "-i",
            "127.0.0.1",
            "-p",
            &port,
            "-mp",
            &media,
            "-s",
            "in",
            "-timeout",
            "40s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            &format!("{}/log/sipp-errors.log", self.cdir),
        ]);
        cmd.args(extra).stdin(Stdio::null());
        cmd.output().expect("run sipp")
    }
}

/// A sipp running in the background (an agent's phone); killed on drop.
pub struct Sipp(Child);

impl Sipp {
    pub fn wait(mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.0.try_wait() {
                Ok(Some(st)) => return st.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                _ => return false,
            }
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Pbx {
    /// Starts the agent's phone: sipp as UAS on `agent_port`, playing this RTP capture.
    pub fn agent_phone(&self, pcap: &[u8]) -> Sipp {
        fs::write(self.path("sounds/agent.pcap"), pcap).expect("write the agent's capture");
        let scenario = fs::read_to_string(project_dir().join("tests/sipp/agent-uas.xml"))
            .expect("read the UAS scenario");
        fs::write(self.path("sounds/agent-uas.xml"), scenario.replace("{D}", &self.cdir))
            .expect("write the UAS scenario");
        let media = (32000 + (std::process::id() % 500) * 8 + 4).to_string();
        let log = fs::File::create(self.path("log/sipp-agent.log")).expect("create the sipp log");
        let mut child = Command::new("chroot")
            .arg(&self.root)
            .args([
                "/usr/bin/sipp",
                "-sf",
                &format!("{}/sounds/agent-uas.xml", self.cdir),
                "-m",
                "1",
                "-i",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.agent_port.to_string(),
                "-mp",
                &media,
                "-timeout",
                "60s",
                "-nostdin",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start sipp");
        // Asterisk may call the agent only once the phone listens on its SIP port.
        let port = self.agent_port;
        wait_until(
            &format!("the agent's phone (sipp) to listen on UDP port {port}"),
            Duration::from_secs(10),
            || {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!(
                        "the agent's phone (sipp) exited at start ({st}):\n{}",
                        fs::read_to_string(self.path("log/sipp-agent.log")).unwrap_or_default()
                    );
                }
                udp_port_bound(port)
            },
        );
        Sipp(child)
    }
}

/// Some socket is bound to this local UDP port (read from /proc: a probe by binding the port could
/// take it from the process about to bind it).
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

impl Drop for Pbx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "=== Asterisk instance {} ({}) ===\n{}",
                self.name,
                self.dir.display(),
                self.logs()
            );
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A tone file (sox) shared by all tests, created once; returns its name for Playback and for
/// callconsent.conf as seen from inside the chroot (absolute, without extension).
pub fn sound(name: &str, freq: u32, secs: f32) -> String {
    let cdir = "/var/tmp/cc-sounds";
    let dir = sandbox_root().join(cdir.trim_start_matches('/'));
    fs::create_dir_all(&dir).expect("create the sounds directory");
    let file = dir.join(format!("{name}.wav"));
    if !file.exists() {
        let tmp = dir.join(format!(
            ".{name}.{}.{}.wav",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let t = tmp.display().to_string();
        let (secs, freq) = (secs.to_string(), freq.to_string());
        if freq == "0" {
            sox(&["-n", "-r", "8000", "-c", "1", "-b", "16", &t, "trim", "0", &secs]);
        } else {
            sox(&[
                "-n", "-r", "8000", "-c", "1", "-b", "16", &t, "synth", &secs, "sine", &freq,
                "vol", "0.5",
            ]);
        }
        fs::rename(&tmp, &file).expect("publish the sound");
    }
    format!("{cdir}/{name}")
}

/// Every file under a directory, recursively (symbolic links not followed).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else if p.is_file() {
                out.push(p);
            }
        }
    }
    out
}

/// Runs the DPO's tool, `target/release/callconsent`.
pub fn dpo_tool(args: &[&str]) -> std::process::Output {
    Command::new(project_dir().join("target/release/callconsent"))
        .args(args)
        .output()
        .expect("run target/release/callconsent")
}

pub fn sox(args: &[&str]) -> String {
    let out =
        Command::new("sox").args(args).output().expect("run sox (scripts/sandbox.sh installs it)");
    assert!(out.status.success(), "sox {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// RMS amplitude of a span of a sound file (sox stat), 0.0 to 1.0.
pub fn rms(file: &Path, start: f32, len: f32) -> f32 {
    let f = file.display().to_string();
    let out = sox(&[&f, "-n", "trim", &start.to_string(), &len.to_string(), "stat"]);
    out.lines()
        .find(|l| l.starts_with("RMS     amplitude"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no RMS in sox output for {f}: {out}"))
}

pub fn duration(file: &Path) -> f32 {
    let out = Command::new("soxi").arg("-D").arg(file).output().expect("run soxi");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0.0)
}

/// 16-bit mono samples of a WAV file (MixMonitor's format), for exact span checks.
pub fn wav_samples(file: &Path) -> Vec<i16> {
    let bytes = fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let mut i = 12;
    while i + 8 <= bytes.len() {
        let id = &bytes[i..i + 4];
        let len =
            u32::from_le_bytes([bytes[i + 4], bytes[i + 5], bytes[i + 6], bytes[i + 7]]) as usize;
        if id == b"data" {
            let end = (i + 8 + len).min(bytes.len());
            return bytes[i + 8..end]
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
        }
        i += 8 + len + (len & 1);
    }
    panic!("{}: no data chunk", file.display());
}

/// 20 ms windows of a recording: true where the window is exactly silent.
pub fn silent_windows(samples: &[i16]) -> Vec<bool> {
    quiet_windows(samples, 0)
}

/// 20 ms windows whose samples all stay within `max_abs` (a decoded codec is never exactly 0).
pub fn quiet_windows(samples: &[i16], max_abs: i16) -> Vec<bool> {
    samples.chunks(160).map(|w| w.iter().all(|s| s.unsigned_abs() <= max_abs as u16)).collect()
}

pub fn longest_run(v: &[bool], value: bool) -> (usize, usize) {
    let (mut best, mut best_start, mut run, mut start) = (0, 0, 0, 0);
    for (i, x) in v.iter().enumerate() {
        if *x == value {
            if run == 0 {
                start = i;
            }
            run += 1;
            if run > best {
                best = run;
                best_start = start;
            }
        } else {
            run = 0;
        }
    }
    (best_start, best)
}

/// Checks a recording: audio, then a silent (paused) span of at least `min_silent_ms`, then audio.
pub fn assert_paused_span(file: &Path, min_silent_ms: usize) {
    assert_quiet_span(file, min_silent_ms, 0)
}

/// As `assert_paused_span`, with a tolerance for decoded audio.
pub fn assert_quiet_span(file: &Path, min_silent_ms: usize, max_abs: i16) {
    let windows = quiet_windows(&wav_samples(file), max_abs);
    let (start, len) = longest_run(&windows, true);
    assert!(
        len * 20 >= min_silent_ms,
        "no silent paused span of {min_silent_ms} ms: longest {} ms at {} ms",
        len * 20,
        start * 20
    );
    assert!(
        windows[..start].iter().filter(|s| !**s).count() >= 50,
        "too little audio before the pause"
    );
    assert!(
        windows[start + len..].iter().filter(|s| !**s).count() >= 50,
        "too little audio after the resume"
    );
}

/// A minimal AMI client: actions and the events that come with them.
pub struct Ami {
    stream: TcpStream,
    rx: Receiver<HashMap<String, String>>,
    pub seen: Vec<HashMap<String, String>>,
    next_id: u32,
}

impl Ami {
    pub fn connect(port: u16) -> Ami {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to AMI");
        let reader = BufReader::new(stream.try_clone().expect("clone the AMI socket"));
        let (tx, rx) = unbounded();
        std::thread::spawn(move || {
            let mut msg = HashMap::new();
            for line in reader.lines() {
                let Ok(line) = line else { break };
                let line = line.trim_end().to_string();
                if line.is_empty() {
                    if !msg.is_empty() && tx.send(std::mem::take(&mut msg)).is_err() {
                        break;
                    }
                    continue;
                }
                if let Some((k, v)) = line.split_once(": ") {
                    msg.insert(k.to_string(), v.to_string());
                } else if let Some(k) = line.strip_suffix(':') {
                    msg.insert(k.to_string(), String::new());
                }
            }
        });
        let mut ami = Ami { stream, rx, seen: vec![], next_id: 1 };
        let r = ami.action("Login", &[("Username", "test"), ("Secret", "test")]);
        assert_eq!(r.get("Response").map(String::as_str), Some("Success"), "AMI login: {r:?}");
        ami
    }

    pub fn action(&mut self, action: &str, fields: &[(&str, &str)]) -> HashMap<String, String> {
        let id = format!("t{}", self.next_id);
        self.next_id += 1;
        let mut text = format!("Action: {action}\r\nActionID: {id}\r\n");
        for (k, v) in fields {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        self.stream.write_all(text.as_bytes()).expect("send an AMI action");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let m = self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("AMI answer within 10 s");
            if m.get("ActionID") == Some(&id) && m.contains_key("Response") {
                return m;
            }
            self.seen.push(m);
        }
    }

    /// Drains what has arrived and returns every event seen so far.
    pub fn events(&mut self) -> &[HashMap<String, String>] {
        while let Ok(m) = self.rx.try_recv() {
            self.seen.push(m);
        }
        &self.seen
    }

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
            let m = self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the awaited AMI event");
            self.seen.push(m.clone());
            if pred(&m) {
                return m;
            }
        }
    }
}

/// A profile section for tests: a 1 s notice, a 2 s full notice and a 0.6 s confirmation, as
/// tones of their own pitch, so a recording shows what was played.
pub fn profile(name: &str, share: u8, extra: &str) -> String {
    format!(
        "[{name}]\nnotice = {}\nfull_notice = {}\noptout_confirm = {}\noptout_key = 9\ninfo_key = 0\n\
         record_share = {share}\n{}{extra}\n",
        sound("notice", 500, 1.0),
        sound("full-notice", 600, 2.0),
        sound("confirm", 700, 0.6),
        if share > 30 { "legal_basis = test: recording every call of this test profile\n" } else { "" }
    )
}

/// callconsent.conf with these profiles; recordings go to spool/callconsent, the audit log to
/// log/callconsent/audit.jsonl of the instance. Kept recordings stay WAV (`archive = wav`), so
/// tests can measure the recording itself; `consent_conf_opus` archives them.
pub fn consent_conf(profiles: &str) -> String {
    format!("[general]\nspool_dir = {{D}}/spool/callconsent\naudit_log = {{D}}/log/callconsent/audit.jsonl\narchive = wav\n\n{profiles}")
}

pub fn consent_conf_opus(profiles: &str) -> String {
    consent_conf(profiles).replace("archive = wav\n", "archive = opus\n")
}

impl Pbx {
    /// As `agent_phone`, with another UAS scenario of tests/sipp/ (e.g. an outbound call's callee
    /// who hangs up by itself); it plays `pcap` as {D}/sounds/agent.pcap.
    pub fn uas_phone(&self, scenario: &str, pcap: &[u8]) -> Sipp {
        let text = fs::read_to_string(project_dir().join("tests/sipp").join(scenario))
            .expect("read the UAS scenario");
        self.uas_phone_text(scenario, &text, pcap)
    }

    /// As `uas_phone`, with the scenario's text (named `scenario` in the instance's sounds/).
    pub fn uas_phone_text(&self, scenario: &str, text: &str, pcap: &[u8]) -> Sipp {
        fs::write(self.path("sounds/agent.pcap"), pcap).expect("write the phone's capture");
        fs::write(self.path("sounds").join(scenario), text.replace("{D}", &self.cdir))
            .expect("write the UAS scenario");
        let media = (32000 + (std::process::id() % 500) * 8 + 4).to_string();
        let log = fs::File::create(self.path("log/sipp-agent.log")).expect("create the sipp log");
        let mut child = Command::new("chroot")
            .arg(&self.root)
            .args([
                "/usr/bin/sipp",
                "-sf",
                &format!("{}/sounds/{scenario}", self.cdir),
                "-m",
                "1",
                "-i",
                "127.0.0.1",
            ])
            .args([
                "-p",
                &self.agent_port.to_string(),
                "-mp",
                &media,
                "-timeout",
                "60s",
                "-nostdin",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("start sipp");
        let port = self.agent_port;
        wait_until(
            &format!("the phone (sipp {scenario}) to listen on UDP port {port}"),
            Duration::from_secs(10),
            || {
                assert!(
                    !matches!(child.try_wait(), Ok(Some(_))),
                    "sipp {scenario} exited at start:\n{}",
                    fs::read_to_string(self.path("log/sipp-agent.log")).unwrap_or_default()
                );
                udp_port_bound(port)
            },
        );
        Sipp(child)
    }
}

impl Pbx {
    /// `kill9_and_restart` in two steps, to look at what the crash left while Asterisk is down:
    /// kill -9, and return once the process is gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// After `kill9`: starts Asterisk again on the same directories (var, spool, logs,
    /// configuration) and waits until it is fully booted.
    pub fn restart(&mut self) {
        let _ = fs::remove_file(self.path("run/asterisk.ctl"));
        self.launch();
    }
}
