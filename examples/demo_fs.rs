//! The FreeSWITCH half of the demo (`scripts/demo.sh`): the sandbox FreeSWITCH with
//! mod_callconsent, two sipp calls bridged to a sipp agent (one kept, one where the caller
//! presses 9 mid-call), then the audit lines, the files left and the DPO tool's check.
#[path = "../tests/fs_harness/mod.rs"]
mod fs_harness;

use std::time::Duration;

use fs_harness::pcap::{rtp_pcap, Part};
use fs_harness::*;

const DIALPLAN: &str = r#"
<extension name="in">
  <condition field="destination_number" expression="^in$">
    <action application="answer"/>
    <action application="callconsent" data="inbound"/>
    <action application="bridge" data="sofia/callconsent/agent@127.0.0.1:{AGENT_PORT}"/>
  </condition>
</extension>
"#;

fn call(fs: &Fs, caller: &[Part], settled: usize) {
    fs.write_sound("caller.pcap", &rtp_pcap(caller));
    let mut phone = fs.agent_phone(&rtp_pcap(&[
        Part::Silence { ms: 2000 },
        Part::Tone { freq: 1000.0, ms: 1500 },
        Part::Silence { ms: 5000 },
    ]));
    fs.sipp_ok(&caller_scenario(6500), &["-s", "in"]);
    let _ = phone.wait(Duration::from_secs(10));
    fs.wait_idle(Duration::from_secs(15));
    fs.wait_event("call_settled", settled, Duration::from_secs(15));
}

fn main() {
    // The demo profile selects every call, so both outcomes show; the prompts are tones here.
    let params = "<param name=\"legal_basis\" value=\"demo: every call is selected to show both outcomes\"/>\n\
                  <param name=\"full_notice\" value=\"tone_stream://%(2000,0,600)\"/>\n\
                  <param name=\"optout_confirm\" value=\"tone_stream://%(600,0,700)\"/>";
    let conf = default_conf(&fs_profile("inbound", 100, params));
    let fs = Fs::builder("demo-fs").conf_xml(&conf).dialplan(DIALPLAN).start();
    println!("{}", fs.api("callconsent show profiles"));
    println!("demo (FreeSWITCH): call 1, the caller keeps the recording");
    call(
        &fs,
        &[
            Part::Silence { ms: 1500 },
            Part::Tone { freq: 440.0, ms: 1500 },
            Part::Silence { ms: 3000 },
        ],
        1,
    );
    println!("demo (FreeSWITCH): call 2, the caller presses 9 mid-call");
    call(
        &fs,
        &[
            Part::Silence { ms: 1500 },
            Part::Tone { freq: 440.0, ms: 1000 },
            Part::Digits("9".into()),
            Part::Silence { ms: 3000 },
        ],
        2,
    );
    println!("\n== audit log ({}) ==", fs.audit_path().display());
    print!("{}", std::fs::read_to_string(fs.audit_path()).unwrap_or_default());
    println!("\n== files left in the spool ==");
    for f in fs.spool_files() {
        println!("{}  {} bytes", f.display(), std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0));
    }
    println!("\n== the DPO's check ==");
    let secret = fs.path("db/callconsent/secret");
    let out = std::process::Command::new(project_dir().join("target/release/callconsent"))
        .args([
            "audit",
            "verify",
            "--key",
            &secret.display().to_string(),
            &fs.audit_path().display().to_string(),
        ])
        .output()
        .expect("run target/release/callconsent");
    print!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        std::process::exit(1);
    }
}
