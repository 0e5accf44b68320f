//! Issue 5's benchmark (run by `scripts/bench.sh archive`): the same 200 one-minute recordings
//! (8 kHz 16-bit mono speech, as MixMonitor writes them) encoded by callconsent's encoder and by
//! `opusenc` from Debian's opus-tools at 16 kb/s, one after the other on one core, in one run;
//! then (issue 12) callconsent's encoder without and with encryption to two age recipients,
//! alternated over three rounds each, in the same run: the cost of encryption as a ratio.
#[path = "../tests/harness/mod.rs"]
mod harness;

use std::process::Command;
use std::time::Instant;

use harness::*;

const FILES: usize = 200;

fn main() {
    let root = sandbox_root();
    let dir_c = "/var/tmp/cc-bench-archive";
    let dir = root.join(dir_c.trim_start_matches('/'));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("in")).unwrap();
    std::fs::create_dir_all(dir.join("cc")).unwrap();
    std::fs::create_dir_all(dir.join("opusenc")).unwrap();
    // One minute of speech: the spoken English notice, repeated.
    let status = Command::new("chroot")
        .arg(&root)
        .args([
            "sox",
            "/usr/share/asterisk/sounds/en/callconsent/full-notice.wav",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            &format!("{dir_c}/speech.wav"),
            "repeat",
            "3",
            "trim",
            "0",
            "60",
        ])
        .status()
        .expect("sox in the sandbox (run scripts/prompts.sh first: scripts/bench.sh does)");
    assert!(status.success());
    for i in 0..FILES {
        std::fs::copy(dir.join("speech.wav"), dir.join(format!("in/{i:03}.wav"))).unwrap();
    }
    let wav_bytes: u64 = (0..FILES)
        .map(|i| std::fs::metadata(dir.join(format!("in/{i:03}.wav"))).unwrap().len())
        .sum();

    let t = Instant::now();
    let mut cc_bytes = 0;
    for i in 0..FILES {
        let e = callconsent_runtime::archive::encode(
            &dir.join(format!("in/{i:03}.wav")),
            &dir.join(format!("cc/{i:03}.opus")),
            &[("CALLCONSENT_CALL".into(), format!("bench.{i}"))],
            16000,
            &[],
        )
        .expect("encode");
        cc_bytes += e.opus_bytes;
    }
    let cc_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    for i in 0..FILES {
        let s = Command::new("chroot")
            .arg(&root)
            .args([
                "taskset",
                "-c",
                "0",
                "opusenc",
                "--quiet",
                "--bitrate",
                "16",
                "--vbr",
                &format!("{dir_c}/in/{i:03}.wav"),
                &format!("{dir_c}/opusenc/{i:03}.opus"),
            ])
            .status()
            .expect("opusenc");
        assert!(s.success());
    }
    let oe_secs = t.elapsed().as_secs_f64();
    let oe_bytes: u64 = (0..FILES)
        .map(|i| std::fs::metadata(dir.join(format!("opusenc/{i:03}.opus"))).unwrap().len())
        .sum();
    let minutes = FILES as f64;
    println!("== Ogg Opus archive: {FILES} one-minute recordings at 16 kb/s, one core ==");
    println!(
        "callconsent: {cc_secs:.1} s, {:.0}x real time, {:.1} KiB/min, {:.1}x smaller than WAV",
        minutes * 60.0 / cc_secs,
        cc_bytes as f64 / minutes / 1024.0,
        wav_bytes as f64 / cc_bytes as f64
    );
    println!(
        "opusenc:     {oe_secs:.1} s, {:.0}x real time, {:.1} KiB/min, {:.1}x smaller than WAV",
        minutes * 60.0 / oe_secs,
        oe_bytes as f64 / minutes / 1024.0,
        wav_bytes as f64 / oe_bytes as f64
    );
    println!("wall time ratio callconsent/opusenc: {:.2}", cc_secs / oe_secs);

    // Encryption at rest: plain and encrypted rounds alternate so drift hits both alike.
    let recipients: Vec<String> =
        (0..2).map(|_| age::x25519::Identity::generate().to_public().to_string()).collect();
    std::fs::create_dir_all(dir.join("age")).unwrap();
    let round = |encrypt: bool| -> (f64, u64) {
        let t = Instant::now();
        let mut bytes = 0;
        for i in 0..FILES {
            let (out, rcp) = if encrypt {
                (dir.join(format!("age/{i:03}.opus.age")), &recipients[..])
            } else {
                (dir.join(format!("cc/{i:03}.opus")), &[][..])
            };
            bytes += callconsent_runtime::archive::encode(
                &dir.join(format!("in/{i:03}.wav")),
                &out,
                &[("CALLCONSENT_CALL".into(), format!("bench.{i}"))],
                16000,
                rcp,
            )
            .expect("encode")
            .opus_bytes;
        }
        (t.elapsed().as_secs_f64(), bytes)
    };
    let (mut plain, mut enc) = (vec![], vec![]);
    let mut enc_bytes = 0;
    for _ in 0..3 {
        plain.push(round(false).0);
        let (secs, bytes) = round(true);
        enc.push(secs);
        enc_bytes = bytes;
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let (p, e) = (median(&mut plain), median(&mut enc));
    println!("== encryption at rest: the same {FILES} recordings, plain and encrypted to 2 age recipients, 3 alternated rounds each ==");
    println!("plain:     {p:.2} s (median), {:.0}x real time", minutes * 60.0 / p);
    println!(
        "encrypted: {e:.2} s (median), {:.0}x real time, {:.1} KiB/min ({} bytes more per file)",
        minutes * 60.0 / e,
        enc_bytes as f64 / minutes / 1024.0,
        enc_bytes.saturating_sub(cc_bytes) / FILES as u64
    );
    println!(
        "encryption cost: {:+.1} % (wall time ratio encrypted/plain {:.3})",
        (e / p - 1.0) * 100.0,
        e / p
    );
    let _ = std::fs::remove_dir_all(&dir);
}
