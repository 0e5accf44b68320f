//! Writes the hand-made seeds (`seed-*`) of every target into fuzz/corpus/<target>/:
//! `cargo run --bin make_seeds` (from fuzz/). The corpus the fuzzer grew sits beside them.
use std::fs;
use std::path::{Path, PathBuf};

use callconsent_core::audit::AuditEvent;
use callconsent_fuzz::call::{agent, caller, header};
use callconsent_runtime::audit::{head_path, record, AuditLog, Options};
use serde_json::{Map, Value};

fn put(dir: &Path, name: &str, data: &[u8]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let corpus = root.join("corpus");

    // config: the shipped sample and a few small files, good and bad.
    let d = corpus.join("config");
    if let Ok(sample) = fs::read(root.join("../dialplan/callconsent.conf.sample")) {
        put(&d, "sample.conf", &sample);
    }
    put(&d, "minimal.conf", b"[general]\n[inbound]\nnotice = n\nfull_notice = f\noptout_confirm = c\nrecord_share = 20\n");
    put(
        &d,
        "every-key.conf",
        b"[general]\nspool_dir = /var/spool/asterisk/callconsent\naudit_log = /var/log/asterisk/callconsent/audit.jsonl\nretention_days = 183\naudit_retention_days = 365\narchive = wav\nopus_bitrate = 24000\nencoder_threads = 2\n\n[sales]\nnotice => callconsent/notice\nfull_notice = callconsent/full-notice\noptout_confirm = callconsent/optout-confirm ; comment\noptout_key = 9\ninfo_key = 0\nrecord_share = 100%\nlegal_basis = Code monetaire et financier, art. L533-10\nrecord_legs = yes\npause_code = *1\nresume_code = *2\ndelete_code = *3\ncode_timeout_ms = 2000\npause_max_seconds = 60\nstart_tone = 440/150\noptout_tone = 950/120,0/80,950/120\npause_tone = off\nresume_tone = 820+620/150\ndelete_tone = 950/300\nwarn_tone = 1400/100,0/100,1400/100\nnever_record = agent:PJSIP/cse-*, caller:_0145XXXXXX\nnever_record = caller:_33[1-5]N!.\nnever_record = caller:+33612345678\nprivate_prefix = 8\nmax_per_agent = 10\ncap_period = month\n",
    );
    put(&d, "twice.conf", b"[inbound]\nrecord_share = 20\n[inbound]\n");
    put(&d, "clash.conf", b"[p]\nnotice = n\nfull_notice = f\noptout_confirm = c\nrecord_share = 40\npause_code = *1\nresume_code = *12\n");

    // call: header byte (profile, with the fixed prefix that reaches `recording`), then events.
    let d = corpus.join("call");
    let h0 = header(0);
    put(&d, "pause", &[&[h0][..], &agent("*1")].concat());
    put(&d, "pause-resume", &[&[h0][..], &agent("*1"), &agent("*2")].concat());
    put(&d, "delete", &[&[h0][..], &agent("*3"), &[0xA0]].concat());
    put(&d, "optout", &[&[h0][..], &caller("9"), &[0xA0]].concat());
    put(&d, "agent-9-then-hangup", &[&[h0][..], &agent("9"), &[0xA0]].concat());
    put(&d, "held-star-timeout", &[&[h0][..], &agent("*"), &[0x8F, 0x8F], &agent("5")].concat());
    put(&d, "pause-auto-resume", &[&[header(1)][..], &agent("*1"), &[0x8F; 3]].concat());
    put(&d, "transfer", &[&[h0][..], &[0xB0, 0xC1], &agent("*1"), &[0xB0, 0xC2, 0xA0]].concat());
    put(&d, "transfer-cap", &[&[header(1)][..], &[0xB0, 0xC1, 0xD0, 0xB0, 0xC0, 0xD1, 0xA0]].concat());
    put(&d, "codes-hash", &[&[header(2)][..], &agent("#11"), &agent("#12"), &agent("#2")].concat());
    put(&d, "codes-abc", &[&[header(3)][..], &agent("AB"), &agent("AC"), &caller("*")].concat());
    // No prefix: the whole call from the notice on, refused while still waiting for an agent.
    put(&d, "notice-optout-late-recorder", &[0x04, 0xF0, 0xF5, 0xF1, 0xC0, 0xE0, 0xA0]);
    put(&d, "armed-optout-then-bridge", &[&[0x04, 0xF0, 0xF1][..], &caller("9"), &[0xB0, 0xC0, 0xE0, 0xA0]].concat());

    // policy: pattern (or glob), a line end, then number (or channel).
    let d = corpus.join("policy");
    for (name, s) in [
        ("pattern-fixed", "0145XXXXXX\n0145123456"),
        ("pattern-dot", "33.\n33612345678"),
        ("pattern-set", "[1-3]N!\n12"),
        ("glob-star", "PJSIP/rep-*\nPJSIP/rep-anna"),
        ("glob-q", "Local/rep@?gents\nLocal/rep@agents-00000003;1"),
    ] {
        put(&d, name, s.as_bytes());
    }

    // audit: real logs written by AuditLog, then NUL, the .head (and key, anchors).
    let d = corpus.join("audit");
    let tmp = std::env::temp_dir().join(format!("cc-fuzz-seeds-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    let write_log = |name: &str, key: Option<&[u8]>| -> (Vec<u8>, Vec<u8>) {
        let path = tmp.join(name).join("audit.jsonl");
        {
            let options = Options { key: key.map(|k| (k.to_vec(), "k1".into())), publish: None };
            let log = AuditLog::open_with(&path, options).unwrap();
            let s = log.sender();
            let mut f = Map::new();
            f.insert("profile".into(), Value::from("inbound"));
            f.insert("share".into(), Value::from(20));
            s.send(record("1763800000.7", "PJSIP/caller-00000001", AuditEvent::Selected, f));
            s.checkpoint("load");
            let mut f = Map::new();
            f.insert("file".into(), Value::from("/var/spool/asterisk/callconsent/cc-1.wav"));
            s.send(record("1763800000.7", "PJSIP/caller-00000001", AuditEvent::RecordingStarted, f));
            let mut f = Map::new();
            f.insert("outcome".into(), Value::from("recorded"));
            s.send(record("1763800000.7", "PJSIP/caller-00000001", AuditEvent::CallEnded, f));
            log.flush();
        }
        (fs::read(&path).unwrap(), fs::read(head_path(&path)).unwrap())
    };
    let (log, head) = write_log("plain", None);
    put(&d, "log-only.jsonl", &log);
    put(&d, "log-head", &[&log[..], b"\0", &head].concat());
    let (log, head) = write_log("keyed", Some(b"fuzz-key"));
    put(&d, "keyed", &[&log[..], b"\0", &head, b"\0\0fuzz-key"].concat());
    let first_line = log.split(|b| *b == b'\n').next().unwrap();
    let anchor = callconsent_runtime::audit::line_hash(std::str::from_utf8(first_line).unwrap());
    put(&d, "keyed-anchor", &[&log[..], b"\0", &head, b"\0\0fuzz-key\0", anchor.as_bytes()].concat());
    let _ = fs::remove_dir_all(&tmp);
    println!("seeds written under {}", corpus.display());
}
