//! Secure card entry (issue 16) on a real Asterisk: the agent's phone sends `*4` (RFC 4733), the
//! caller keys 16 card digits and `#`; the agent's leg receives no DTMF of them (its RTP, captured
//! by the test) and hears one mask tone per key; the recording is silent for the span although
//! the caller plays a tone meanwhile; the payment gosub reads the digits once (a second read is
//! empty); the digits are in no file under Asterisk's log, spool, audit and state directories. A
//! timeout ends an entry, a 9 keyed during it is a card digit, and the opt-out key works again as
//! soon as the entry has ended.
mod harness;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::pcap::{rtp_pcap, Part};
use harness::*;

const CARD: &str = "4111111111111111";
const CALLER_HZ: f32 = 1500.0;
const MASK_HZ: f32 = 1200.0;

/// The agent's endpoint sends its RTP where its SDP says (not back to where the phone sends
/// from): to the test's own socket, the capture of what the agent hears.
const PJSIP: &str = "[transport-udp]\ntype = transport\nprotocol = udp\nbind = 127.0.0.1:{SIP_PORT}\n\n\
    [sipp]\ntype = endpoint\ncontext = test\ndisallow = all\nallow = alaw\ndtmf_mode = rfc4733\ndirect_media = no\nrtp_symmetric = yes\n\n\
    [sipp]\ntype = identify\nendpoint = sipp\nmatch = 127.0.0.1\n\n\
    [agent]\ntype = endpoint\ncontext = test\ndisallow = all\nallow = alaw\ndtmf_mode = rfc4733\ndirect_media = no\nrtp_symmetric = no\naors = agent\n\n\
    [agent]\ntype = aor\ncontact = sip:agent@127.0.0.1:{AGENT_PORT}\n";

/// The payment gosub of the tests: it reads the digits, passes on only their SHA-1 (what
/// Asterisk's verbose log may show), reads them a second time, and returns.
const PAY: &str = "[pay]\nexten => s,1,Set(CARD_SHA1=${SHA1(${CALLCONSENT(secure_digits)})})\n \
    same => n,Set(AGAIN=${LEN(${CALLCONSENT(secure_digits)})})\n same => n,Verbose(1,secure payment sha1 ${CARD_SHA1} again ${AGAIN})\n same => n,Return()\n";

fn conf(extra: &str) -> String {
    consent_conf(&profile(
        "sec",
        100,
        &format!("start_tone = off\nsecure_gosub = pay,s,1\nsecure_mask_tone = 1200/80\nsecure_start_tone = off\nsecure_end_tone = off\n{extra}"),
    ))
}

/// What the agent's leg received: RTP packets (payload type, payload), in order.
/// RTP packets as (payload type, payload).
type Packets = Arc<Mutex<Vec<(u8, Vec<u8>)>>>;

struct Capture {
    port: u16,
    packets: Packets,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    fn start() -> Capture {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the agent's RTP capture");
        sock.set_read_timeout(Some(Duration::from_millis(100))).expect("a read timeout");
        let port = sock.local_addr().expect("its port").port();
        let (packets, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (p, s) = (packets.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::SeqCst) {
                if let Ok(n) = sock.recv(&mut buf) {
                    if n > 12 && buf[0] >> 6 == 2 {
                        p.lock().unwrap().push((buf[1] & 0x7f, buf[12..n].to_vec()));
                    }
                }
            }
        });
        Capture { port, packets, stop, thread: Some(thread) }
    }
    fn finish(mut self) -> Vec<(u8, Vec<u8>)> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("the capture thread");
        }
        std::mem::take(&mut *self.packets.lock().unwrap())
    }
}

/// The SIP caller of these tests: sipp plays `pcap` from the answer (RFC 4733 keys in it) and
/// hangs up `play_ms` later; returns the scenario for `Pbx::sipp`.
fn sip_caller(pbx: &Pbx, pcap: &[u8], play_ms: u32) -> String {
    std::fs::write(pbx.path("sounds/flood-caller.pcap"), pcap).expect("write the caller's capture");
    std::fs::read_to_string(project_dir().join("tests/sipp/flood-dtmf-caller.xml"))
        .expect("read the caller's scenario")
        .replace("{PLAY_MS}", &play_ms.to_string())
}

fn alaw_decode(a: u8) -> i16 {
    let a = a ^ 0x55;
    let seg = (a & 0x70) >> 4;
    let mut t = i32::from(a & 0x0f) << 4;
    t = match seg {
        0 => t + 8,
        1 => t + 0x108,
        _ => (t + 0x108) << (seg - 1),
    };
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

fn sha1_hex(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha1sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("sha1sum (coreutils)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string()
}

#[test]
fn a_card_keyed_during_a_secure_entry_reaches_only_the_payment_gosub() {
    let dialplan = format!("[test]\nexten => in,1,Answer()\n same => n,CallConsent(sec)\n same => n,Dial(PJSIP/agent)\n same => n,Hangup()\n\n{PAY}");
    let mut pbx = Pbx::builder("secure")
        .sip()
        .file("pjsip.conf", PJSIP)
        .file("callconsent.conf", &conf(""))
        .file("extensions.conf", &dialplan)
        .as_asterisk_user()
        .start();
    let capture = Capture::start();
    // The agent's phone: its SDP names the capture's port; it presses *4 four seconds in.
    let uas = std::fs::read_to_string(project_dir().join("tests/sipp/agent-uas.xml"))
        .expect("read the UAS scenario")
        .replace("m=audio [media_port]", &format!("m=audio {}", capture.port));
    let phone = pbx.uas_phone_text(
        "agent-uas-capture.xml",
        &uas,
        &rtp_pcap(&[
            Part::Silence { ms: 4000 },
            Part::Digits("*4".into()),
            Part::Silence { ms: 25000 },
        ]),
    );
    // The caller: a tone (recorded), then once the entry runs a tone (not recorded) and the card
    // with its end key, then a tone again (recorded).
    let caller = rtp_pcap(&[
        Part::Silence { ms: 2500 },
        Part::Tone { freq: CALLER_HZ, ms: 1000 },
        Part::Silence { ms: 3500 },
        Part::Tone { freq: CALLER_HZ, ms: 2000 },
        Part::Digits(format!("{CARD}#")),
        Part::Silence { ms: 1000 },
        Part::Tone { freq: CALLER_HZ, ms: 1000 },
        Part::Silence { ms: 1500 },
    ]);
    let scenario = sip_caller(&pbx, &caller, 18000);
    let out = pbx.sipp(&scenario, &[]);
    assert!(out.status.success(), "sipp: {}\n{}", String::from_utf8_lossy(&out.stderr), pbx.logs());
    let _ = phone.wait(Duration::from_secs(10));
    pbx.wait_settled(1, Duration::from_secs(20));
    let received = capture.finish();

    // The audit trail: started by the agent's code, ended by the end key with 16 digits.
    let started = pbx.wait_event("secure_entry_started", 1, Duration::from_secs(1));
    assert_eq!(
        (started[0]["source"].as_str(), started[0]["by"].as_str()),
        (Some("keypad"), Some("agent")),
        "{:?}",
        started[0]
    );
    assert!(
        started[0]["agent"].as_str().is_some_and(|a| a.starts_with("PJSIP/agent")),
        "{:?}",
        started[0]
    );
    let ended = pbx.wait_event("secure_entry_ended", 1, Duration::from_secs(1));
    assert_eq!(
        (ended[0]["reason"].as_str(), ended[0]["digits"].as_u64()),
        (Some("end_key"), Some(16)),
        "{:?}",
        ended[0]
    );
    assert!(
        pbx.events().iter().all(|e| e != "opt_out"),
        "the 9 of the card is a digit, not a refusal"
    );

    // The gosub read the digits once.
    let paid = pbx.wait_log("the payment gosub", Duration::from_secs(5), |l| {
        l.contains("secure payment sha1")
    });
    assert!(paid.contains(&format!("sha1 {} again 0", sha1_hex(CARD))), "{paid}");

    // The agent heard no key of it (no RFC 4733 event at all reached its leg) but a mask tone per key.
    assert!(received.len() > 500, "the capture got the agent's RTP ({} packets)", received.len());
    let events: Vec<&(u8, Vec<u8>)> = received.iter().filter(|(pt, _)| *pt == 101).collect();
    assert!(
        events.is_empty(),
        "{} RFC 4733 packets reached the agent, first {:?}",
        events.len(),
        events.first()
    );
    let heard: Vec<i16> = received
        .iter()
        .filter(|(pt, _)| *pt == 8)
        .flat_map(|(_, p)| p.iter().map(|b| alaw_decode(*b)))
        .collect();
    let mask_ms = tone_ms(&heard, MASK_HZ);
    assert!(
        (16 * 80 * 6 / 10..=17 * 80 + 400).contains(&mask_ms),
        "the agent heard {mask_ms} ms of the mask tone for 16 digits of 80 ms"
    );

    // The recording: the caller's tone before and after the entry, silence during it.
    let kept = pbx.wait_event("recording_kept", 1, Duration::from_secs(1));
    let wav = pbx.host_path(kept[0]["file"].as_str().unwrap());
    let recorded = tone_ms(&wav_samples(&wav), CALLER_HZ);
    assert!((1500..=2400).contains(&recorded), "{recorded} ms of the caller's tone recorded: 2000 expected (the 2000 ms during the entry muted)");
    assert!(tone_ms(&wav_samples(&wav), MASK_HZ) < 100, "the mask tone is not in the recording");
    let spans = kept[0]["pause_spans_ms"].as_str().unwrap();
    assert_eq!(kept[0]["pauses"], 1, "the entry is a span of the pause tags: {spans}");

    // The digits are nowhere on disk: logs (Asterisk's, the audit log), spool, state.
    for f in ["log", "spool", "db", "run"].iter().flat_map(|d| files_under(&pbx.path(d))) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(CARD.len()).any(|w| w == CARD.as_bytes()),
            "{} holds the card number",
            f.display()
        );
    }
    pbx.assert_alive();
}

#[test]
fn a_timeout_ends_the_entry_and_the_opt_out_key_is_the_callers_again() {
    let tone = sound("agent-880-10s", 880, 10.0);
    let talk = sound("caller-440-12s", 440, 12.0);
    let dialplan = format!(
        "[test]\nexten => in,1,Answer()\n same => n,CallConsent(sec)\n same => n,Dial(Local/agent@test)\n\
         exten => agent,1,Answer()\n same => n,Wait(1)\n same => n,SendDTMF(*4)\n same => n,Playback({tone})\n same => n,Wait(20)\n\
         exten => dev,1,Wait(4)\n same => n,SendDTMF(9)\n same => n,Playback({talk})\n same => n,SendDTMF(9)\n same => n,Wait(3)\n same => n,Hangup()\n\n{PAY}"
    );
    let mut pbx = Pbx::builder("secure-timeout")
        .file("callconsent.conf", &conf("secure_timeout_ms = 3000"))
        .file("extensions.conf", &dialplan)
        .start();
    pbx.originate("Local/in@test", "dev@test");
    pbx.wait_settled(1, Duration::from_secs(40));
    let ended = pbx.wait_event("secure_entry_ended", 1, Duration::from_secs(1));
    assert_eq!(
        (ended[0]["reason"].as_str(), ended[0]["digits"].as_u64()),
        (Some("timeout"), Some(1)),
        "the 9 during the entry is a card digit: {:?}",
        ended[0]
    );
    let d = ended[0]["duration_ms"].as_u64().unwrap();
    assert!((3000..3500).contains(&d), "ended {d} ms after it started");
    // The 9 after the entry: the caller's refusal, the recording deleted.
    let events = pbx.events();
    let (end_at, opt_at) = (
        events.iter().position(|e| e == "secure_entry_ended"),
        events.iter().position(|e| e == "opt_out"),
    );
    assert!(matches!((end_at, opt_at), (Some(a), Some(b)) if b > a), "{events:?}");
    assert_eq!(pbx.wait_event("call_ended", 1, Duration::from_secs(1))[0]["outcome"], "opted_out");
    assert!(pbx.spool_files().is_empty(), "{:?}", pbx.spool_files());
    pbx.wait_log("the payment gosub", Duration::from_secs(5), |l| {
        l.contains("secure payment sha1") && l.contains("again 0")
    });
    pbx.assert_alive();
}

/// A card with nines in it (the opt-out key's digit is a card digit during the entry).
const CARD_9: &str = "4929123456789012";

/// Issue 23: the agent starts the entry with `*4` (its own phone over RFC 4733, or a Local
/// channel's `SendDTMF`), the caller keys the card and `#` as a person does, one key every
/// `every_ms` (each key an RFC 4733 event of `len_ms`): every digit reaches the payment gosub,
/// none is dropped, the 9s are card digits, and after the entry the call goes on (recorded).
fn card_keyed_at_a_human_pace(name: &str, local_agent: bool, every_ms: u32) {
    let len_ms = 140.min(every_ms - 40);
    let dialplan = if local_agent {
        format!(
            "[test]\nexten => in,1,Answer()\n same => n,CallConsent(sec)\n same => n,Dial(Local/agent@test)\n same => n,Hangup()\n\
             exten => agent,1,Answer()\n same => n,Wait(3)\n same => n,SendDTMF(*4)\n same => n,Wait(30)\n\n{PAY}"
        )
    } else {
        format!("[test]\nexten => in,1,Answer()\n same => n,CallConsent(sec)\n same => n,Dial(PJSIP/agent)\n same => n,Hangup()\n\n{PAY}")
    };
    let mut pbx = Pbx::builder(name)
        .sip()
        .file("pjsip.conf", PJSIP)
        .file("callconsent.conf", &conf(""))
        .file("extensions.conf", &dialplan)
        .as_asterisk_user()
        .start();
    let _phone = (!local_agent).then(|| {
        pbx.agent_phone(&rtp_pcap(&[
            Part::Silence { ms: 3000 },
            Part::Digits("*4".into()),
            Part::Silence { ms: 30000 },
        ]))
    });
    let keys = format!("{CARD_9}#");
    let keying_ms = every_ms * keys.len() as u32;
    let caller = rtp_pcap(&[
        Part::Silence { ms: 5000 },
        Part::Keys { digits: keys, len_ms, every_ms },
        Part::Silence { ms: 1000 },
        Part::Tone { freq: CALLER_HZ, ms: 1000 },
        Part::Silence { ms: 1000 },
    ]);
    let scenario = sip_caller(&pbx, &caller, 5000 + keying_ms + 3500);
    let out = pbx.sipp(&scenario, &[]);
    assert!(out.status.success(), "sipp: {}\n{}", String::from_utf8_lossy(&out.stderr), pbx.logs());
    pbx.wait_settled(1, Duration::from_secs(30));

    let ended = pbx.wait_event("secure_entry_ended", 1, Duration::from_secs(1));
    assert_eq!(
        (ended[0]["reason"].as_str(), ended[0]["digits"].as_u64()),
        (Some("end_key"), Some(16)),
        "keys {every_ms} ms apart ({len_ms} ms each): {:?}\n{}",
        ended[0],
        pbx.messages()
    );
    let paid = pbx.wait_log("the payment gosub", Duration::from_secs(5), |l| {
        l.contains("secure payment sha1")
    });
    assert!(
        paid.contains(&format!("sha1 {} again 0", sha1_hex(CARD_9))),
        "the gosub got another number: {paid}"
    );
    assert!(
        pbx.events().iter().all(|e| e != "opt_out"),
        "the 9s of the card are digits, not a refusal: {:?}",
        pbx.events()
    );
    let call_ended = pbx.wait_event("call_ended", 1, Duration::from_secs(1));
    assert_eq!(
        call_ended[0]["outcome"], "recorded",
        "the call went on, recorded, after the entry: {:?}",
        call_ended[0]
    );
    assert_eq!(
        call_ended[0]["keys_dropped"].as_u64().unwrap_or(0),
        0,
        "no key of a person was dropped: {:?}",
        call_ended[0]
    );
    pbx.assert_alive();
}

#[test]
fn a_card_keyed_500_ms_apart_reaches_the_gosub_whole_local_agent() {
    card_keyed_at_a_human_pace("secure-pace-500-local", true, 500);
}

#[test]
fn a_card_keyed_250_ms_apart_reaches_the_gosub_whole_local_agent() {
    card_keyed_at_a_human_pace("secure-pace-250-local", true, 250);
}

#[test]
fn a_card_keyed_100_ms_apart_reaches_the_gosub_whole_local_agent() {
    card_keyed_at_a_human_pace("secure-pace-100-local", true, 100);
}

#[test]
fn a_card_keyed_500_ms_apart_reaches_the_gosub_whole_pjsip_agent() {
    card_keyed_at_a_human_pace("secure-pace-500-pjsip", false, 500);
}

/// Issue 24 (1): an agent desktop or CTI connector holds AMI access; while the payment gosub
/// waits, it asks for `CALLCONSENT(secure_digits)` on the caller's channel with `Getvar`: refused
/// (no digit in the answer, a warning naming the channel and never the digits), and the gosub
/// still gets the whole card afterwards.
#[test]
fn ami_getvar_cannot_read_the_card_digits() {
    let pay = PAY.replace("exten => s,1,Set(", "exten => s,1,Wait(3)\n same => n,Set(");
    let dialplan = format!(
        "[test]\nexten => in,1,Answer()\n same => n,CallConsent(sec)\n same => n,Dial(Local/agent@test)\n same => n,Hangup()\n\
         exten => agent,1,Answer()\n same => n,Wait(3)\n same => n,SendDTMF(*4)\n same => n,Wait(30)\n\n{pay}"
    );
    let pbx = Pbx::builder("secure-getvar")
        .sip()
        .file("pjsip.conf", PJSIP)
        .file("callconsent.conf", &conf(""))
        .file("extensions.conf", &dialplan)
        .as_asterisk_user()
        .start();
    let mut ami = pbx.ami();
    let caller = rtp_pcap(&[
        Part::Silence { ms: 5000 },
        Part::Keys { digits: format!("{CARD_9}#"), len_ms: 140, every_ms: 300 },
        Part::Silence { ms: 6000 },
    ]);
    let scenario = sip_caller(&pbx, &caller, 16500);
    std::thread::scope(|s| {
        let call = s.spawn(|| pbx.sipp(&scenario, &[]));
        pbx.wait_event("secure_entry_ended", 1, Duration::from_secs(20));
        let out = pbx.rx("core show channels concise");
        let chan = out
            .lines()
            .filter_map(|l| l.split('!').next())
            .find(|c| c.starts_with("PJSIP/sipp-"))
            .expect("the caller's channel")
            .to_string();
        let r =
            ami.action("Getvar", &[("Channel", &chan), ("Variable", "CALLCONSENT(secure_digits)")]);
        let value = r.get("Value").cloned().unwrap_or_default();
        assert!(!value.contains("4929") && value.len() < 4, "AMI read the card: {r:?}");
        pbx.wait_log("the refusal", Duration::from_secs(5), |l| {
            l.contains("CALLCONSENT(secure_digits) read on PJSIP/sipp-")
                && l.contains("external interface")
        });
        let out = call.join().expect("the caller");
        assert!(out.status.success(), "sipp: {}", String::from_utf8_lossy(&out.stderr));
    });
    let paid = pbx.wait_log("the payment gosub", Duration::from_secs(5), |l| {
        l.contains("secure payment sha1")
    });
    assert!(
        paid.contains(&format!("sha1 {} again 0", sha1_hex(CARD_9))),
        "the gosub got another number: {paid}"
    );
    for f in ["log", "spool", "db", "run"].iter().flat_map(|d| files_under(&pbx.path(d))) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(CARD_9.len()).any(|w| w == CARD_9.as_bytes()),
            "{} holds the card number",
            f.display()
        );
    }
}
