//! Issue 11's benchmarks on the sandbox FreeSWITCH (run by `scripts/bench.sh fs`):
//! 1. leak after a key: the agent plays tone A (1000 Hz), sends `*1`, then at once tone B
//!    (1800 Hz); any tone B in the recording was spoken after pausing. mod_callconsent (the code
//!    heard in the caller's send-DTMF hook, the recording masked on that thread) against stock
//!    FreeSWITCH's way: `record_session` in the dialplan and an ESL client that waits for the
//!    agent's DTMF events and sends `uuid_record <uuid> mask <file>`; and with that client gone.
//! 2. cost per call: concurrent loopback calls with 10 s of audio, FreeSWITCH's CPU time per call
//!    with `callconsent` against `playback(notice)` + plain `record_session`, alternating.
#[path = "../tests/fs_harness/mod.rs"]
mod fs_harness;

use std::time::{Duration, Instant};

use fs_harness::pcap::{rtp_pcap, Part};
use fs_harness::*;

const ROUNDS: usize = 5;
const LOAD_CALLS: usize = 50;

fn dialplan() -> String {
    r#"
<extension name="in">
  <condition field="destination_number" expression="^in$">
    <action application="answer"/>
    <action application="callconsent" data="inbound"/>
    <action application="bridge" data="sofia/callconsent/agent@127.0.0.1:{AGENT_PORT}"/>
  </condition>
</extension>
<extension name="stock">
  <condition field="destination_number" expression="^stock$">
    <action application="answer"/>
    <action application="playback" data="tone_stream://%(1000,0,500)"/>
    <action application="record_session" data="{DIR}/recordings/stock-${uuid}.wav"/>
    <action application="bridge" data="sofia/callconsent/agent@127.0.0.1:{AGENT_PORT}"/>
  </condition>
</extension>
<extension name="ccload">
  <condition field="destination_number" expression="^ccload$">
    <action application="answer"/>
    <action application="callconsent" data="inbound"/>
    <action application="bridge" data="loopback/talker/public"/>
  </condition>
</extension>
<extension name="plainload">
  <condition field="destination_number" expression="^plainload$">
    <action application="answer"/>
    <action application="playback" data="tone_stream://%(1000,0,500)"/>
    <action application="record_session" data="{DIR}/recordings/plain-${uuid}.wav"/>
    <action application="bridge" data="loopback/talker/public"/>
  </condition>
</extension>
<extension name="talker">
  <condition field="destination_number" expression="^talker$">
    <action application="answer"/>
    <action application="playback" data="tone_stream://%(10000,0,600)"/>
    <action application="hangup"/>
  </condition>
</extension>
"#
    .to_string()
}

fn start() -> Fs {
    // Tones off: a tone to the agent would hide a late mask.
    let params = "<param name=\"legal_basis\" value=\"bench: every call\"/>\n\
                  <param name=\"full_notice\" value=\"tone_stream://%(2000,0,600)\"/>\n\
                  <param name=\"optout_confirm\" value=\"tone_stream://%(600,0,700)\"/>\n\
                  <param name=\"start_tone\" value=\"off\"/>\n<param name=\"pause_tone\" value=\"off\"/>\n<param name=\"resume_tone\" value=\"off\"/>";
    let conf = default_conf(&fs_profile("inbound", 100, params))
        .replace("  </settings>", "    <param name=\"archive\" value=\"wav\"/>\n  </settings>");
    Fs::builder("bench-fs").conf_xml(&conf).dialplan(&dialplan()).start()
}

/// The stock controller: on the agent's `*` then `1` (DTMF events), mask the caller's recording.
fn esl_controller(fs: &Fs) -> std::thread::JoinHandle<()> {
    let (port, dir) = (fs.esl_port, fs.dir.clone());
    std::thread::spawn(move || {
        let mut events = Esl::connect(port);
        events.subscribe("CHANNEL_ANSWER DTMF");
        let mut api = Esl::connect(port);
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut caller, mut last, mut seen) = (None::<String>, String::new(), 0);
        while Instant::now() < deadline {
            let evs = events.events().to_vec();
            for e in &evs[seen..] {
                let name = e.get("Event-Name").map(String::as_str).unwrap_or("");
                if name == "CHANNEL_ANSWER"
                    && e.get("Caller-Destination-Number").is_some_and(|d| d == "stock")
                {
                    caller = e.get("Unique-ID").cloned();
                }
                if name == "DTMF" && e.get("Unique-ID") != caller.as_ref() {
                    let d = e.get("DTMF-Digit").cloned().unwrap_or_default();
                    if last == "*" && d == "1" {
                        if let Some(c) = &caller {
                            api.api(&format!(
                                "uuid_record {c} mask {}/recordings/stock-{c}.wav",
                                dir.display()
                            ));
                        }
                        return;
                    }
                    last = d;
                }
            }
            seen = evs.len();
            std::thread::sleep(Duration::from_millis(1));
        }
    })
}

/// One call: ms of tone B in its recording.
fn leak_one(fs: &Fs, mode: &str, with_controller: bool) -> u32 {
    let kept_before = fs.audit().iter().filter(|v| v["event"] == "recording_kept").count();
    let ctl = (mode == "stock" && with_controller).then(|| esl_controller(fs));
    std::thread::sleep(Duration::from_millis(200));
    fs.write_sound("caller.pcap", &rtp_pcap(&[Part::Silence { ms: 7000 }]));
    let mut phone = fs.agent_phone(&rtp_pcap(&[
        Part::Silence { ms: 500 },
        Part::Tone { freq: 1000.0, ms: 1500 },
        Part::Digits("*1".into()),
        Part::Tone { freq: 1800.0, ms: 1500 },
        Part::Silence { ms: 3000 },
    ]));
    fs.sipp_ok(&caller_scenario(6500), &["-s", mode]);
    let _ = phone.wait(Duration::from_secs(10));
    fs.wait_idle(Duration::from_secs(15));
    if let Some(c) = ctl {
        let _ = c.join();
    }
    let file = if mode == "in" {
        let kept = fs.wait_event("recording_kept", kept_before + 1, Duration::from_secs(15));
        std::path::PathBuf::from(
            kept[kept_before]["file"].as_str().expect("recording_kept names its file"),
        )
    } else {
        let newest = std::fs::read_dir(fs.path("recordings"))
            .expect("recordings")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("stock-")));
        newest
            .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
            .expect("the stock recording")
    };
    let samples = wav_samples(&file);
    let a = tone_ms(&samples, 1000.0);
    assert!(a >= 1000, "{}: only {a} ms of tone A; not the measured call", file.display());
    let leaked = tone_ms(&samples, 1800.0);
    let _ = std::fs::remove_file(&file);
    leaked
}

fn cpu_ms(fs: &Fs) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", fs.pid())).unwrap_or_default();
    let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    ticks * 10
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let fs = start();
    if what == "all" || what == "leak" {
        println!("== FreeSWITCH: leak after the pause code: ms of tone B (spoken after *1) in the recording, {ROUNDS} calls each ==");
        let cc: Vec<u32> = (0..ROUNDS).map(|_| leak_one(&fs, "in", false)).collect();
        println!("leak mod_callconsent (*1 in the send-DTMF hook)        {cc:?} ms");
        let stock: Vec<u32> = (0..ROUNDS).map(|_| leak_one(&fs, "stock", true)).collect();
        println!("leak ESL client + uuid_record mask                    {stock:?} ms");
        let gone = leak_one(&fs, "stock", false);
        println!("leak ESL client gone                                  [{gone}] ms (tone B lasts 1500 ms)");
    }
    if what == "all" || what == "cost" {
        println!("== FreeSWITCH: cost per call: {LOAD_CALLS} concurrent loopback calls (10 s of audio), CPU ms per call ==");
        let mut ratios = vec![];
        for round in 0..3 {
            let mut per = [0f64; 2];
            for (i, ext) in ["ccload", "plainload"].iter().enumerate() {
                let cpu0 = cpu_ms(&fs);
                for _ in 0..LOAD_CALLS {
                    fs.api(&format!("bgapi originate loopback/{ext}/public &park()"));
                }
                wait_until("the calls to start", Duration::from_secs(30), || fs.channels() > 0);
                fs.wait_idle(Duration::from_secs(120));
                per[i] = (cpu_ms(&fs) - cpu0) as f64 / LOAD_CALLS as f64;
                for f in fs.spool_files() {
                    let _ = std::fs::remove_file(f);
                }
                for f in std::fs::read_dir(fs.path("recordings")).into_iter().flatten().flatten() {
                    if f.path().is_file() {
                        let _ = std::fs::remove_file(f.path());
                    }
                }
            }
            let ratio = per[0] / per[1];
            println!("cost round {round}: mod_callconsent {:.1} ms/call, plain record_session {:.1} ms/call, ratio {ratio:.3}", per[0], per[1]);
            ratios.push(ratio);
        }
        ratios.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        println!("cost ratio (median of 3 rounds): {:.3}", ratios[1]);
    }
}
