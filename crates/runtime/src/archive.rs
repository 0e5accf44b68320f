//! Ogg Opus archives of kept recordings (issue 5): mono, VBR, DTX (a paused span costs almost
//! nothing), the consent facts in the OpusTags comments. Written crash-safe: `.opus.tmp`, fsync,
//! rename, fsync the directory; the WAV is removed only then.
//!
//! With recipients (R11, issue 12) the Ogg stream is encrypted as it is written, in the age
//! format to X25519 recipients (`<name>.opus.age`): no plaintext Opus ever reaches the disk, and
//! only a holder of a recipient's identity (the DPO, not the PBX) can read it.
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ogg::writing::PacketWriteEndInfo;

pub const VENDOR: &str = "callconsent";
const FRAME: usize = 160; // 20 ms at 8 kHz

/// A 16-bit PCM mono WAV file read as a stream: memory stays the same whatever the call's length.
pub struct WavStream {
    reader: std::io::BufReader<File>,
    pub rate: u32,
    /// Samples in the data chunk.
    pub samples: usize,
    left: usize,
}

impl WavStream {
    pub fn open(path: &Path) -> Result<WavStream, String> {
        use std::io::{Read, Seek, SeekFrom};
        let err = |e: std::io::Error| format!("{}: {e}", path.display());
        let mut f = std::io::BufReader::new(File::open(path).map_err(err)?);
        let mut head = [0u8; 12];
        if f.read_exact(&mut head).is_err() || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
            return Err(format!("{}: not a WAV file", path.display()));
        }
        let (mut rate, mut format_ok) = (0u32, false);
        loop {
            let mut ch = [0u8; 8];
            if f.read_exact(&mut ch).is_err() {
                return Err(format!("{}: no data chunk", path.display()));
            }
            let len = u32::from_le_bytes([ch[4], ch[5], ch[6], ch[7]]) as usize;
            match &ch[0..4] {
                b"fmt " if len >= 16 => {
                    let mut body = vec![0u8; len];
                    f.read_exact(&mut body).map_err(err)?;
                    let fmt = u16::from_le_bytes([body[0], body[1]]);
                    let channels = u16::from_le_bytes([body[2], body[3]]);
                    rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
                    let bits = u16::from_le_bytes([body[14], body[15]]);
                    format_ok = fmt == 1 && channels == 1 && bits == 16;
                    if len & 1 == 1 {
                        f.seek(SeekFrom::Current(1)).map_err(err)?;
                    }
                }
                b"data" => {
                    if !format_ok {
                        return Err(format!(
                            "{}: only 16-bit mono PCM is archived",
                            path.display()
                        ));
                    }
                    // A data chunk longer than the file (a header never finalised) is cut to it.
                    let here = f.stream_position().map_err(err)?;
                    let size = f.get_ref().metadata().map_err(err)?.len();
                    let samples = (len as u64).min(size.saturating_sub(here)) as usize / 2;
                    return Ok(WavStream { reader: f, rate, samples, left: samples });
                }
                _ => {
                    f.seek(SeekFrom::Current((len + (len & 1)) as i64)).map_err(err)?;
                }
            }
        }
    }

    /// Fills `pcm` with the next samples (zeros past the end); returns how many were read.
    pub fn read(&mut self, pcm: &mut [i16]) -> Result<usize, String> {
        use std::io::Read;
        let n = pcm.len().min(self.left);
        let mut bytes = vec![0u8; n * 2];
        self.reader.read_exact(&mut bytes).map_err(|e| e.to_string())?;
        for (i, s) in pcm.iter_mut().enumerate() {
            *s = if i < n { i16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]) } else { 0 };
        }
        self.left -= n;
        Ok(n)
    }
}

/// A 16-bit PCM mono WAV file's bytes, header final (as MixMonitor leaves it at close): what
/// [`WavStream`] reads. For tests and benchmarks that need a recording.
pub fn wav_bytes(rate: u32, samples: &[i16]) -> Vec<u8> {
    let data = samples.len() as u32 * 2;
    let mut b = b"RIFF".to_vec();
    b.extend((36 + data).to_le_bytes());
    b.extend(b"WAVEfmt ");
    b.extend(16u32.to_le_bytes());
    b.extend(1u16.to_le_bytes());
    b.extend(1u16.to_le_bytes());
    b.extend(rate.to_le_bytes());
    b.extend((rate * 2).to_le_bytes());
    b.extend(2u16.to_le_bytes());
    b.extend(16u16.to_le_bytes());
    b.extend(b"data");
    b.extend(data.to_le_bytes());
    for s in samples {
        b.extend(s.to_le_bytes());
    }
    b
}

pub struct Encoded {
    pub opus_bytes: u64,
    pub samples: usize,
    pub rate: u32,
    /// SHA-256 of the file as written (encrypted when it is), for the audit line.
    pub sha256: String,
}

/// A writer that hashes what goes through it.
struct Hashing<W: Write> {
    inner: W,
    hash: sha2::Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where the Ogg pages go: the file, or the age stream over it.
enum Sink {
    Plain(BufWriter<Hashing<File>>),
    Age(age::stream::StreamWriter<BufWriter<Hashing<File>>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Age(w) => w.flush(),
        }
    }
}

impl Sink {
    fn open(file: File, recipients: &[String]) -> Result<Sink, String> {
        let out = BufWriter::new(Hashing { inner: file, hash: sha2::Digest::new() });
        if recipients.is_empty() {
            return Ok(Sink::Plain(out));
        }
        let parsed = parse_recipients(recipients)?;
        let enc = age::Encryptor::with_recipients(parsed.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| format!("encryption: {e}"))?;
        Ok(Sink::Age(enc.wrap_output(out).map_err(|e| format!("encryption: {e}"))?))
    }
    /// Ends the age stream (its last chunk), flushes; returns the file and the hash of its bytes.
    fn finish(self) -> std::io::Result<(File, String)> {
        let buffered = match self {
            Sink::Plain(w) => w,
            Sink::Age(w) => w.finish()?,
        };
        let h = buffered.into_inner().map_err(|e| e.into_error())?;
        let digest = sha2::Digest::finalize(h.hash);
        Ok((h.inner, digest.iter().map(|b| format!("{b:02x}")).collect()))
    }
}

/// Recipients as the age crate reads them (`age1...`).
pub fn parse_recipients(recipients: &[String]) -> Result<Vec<age::x25519::Recipient>, String> {
    recipients
        .iter()
        .map(|r| r.parse::<age::x25519::Recipient>().map_err(|e| format!("recipient \"{r}\": {e}")))
        .collect()
}

fn opus_head(pre_skip: u16, rate: u32) -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1);
    h.push(1);
    h.extend(pre_skip.to_le_bytes());
    h.extend(rate.to_le_bytes());
    h.extend(0i16.to_le_bytes());
    h.push(0);
    h
}

fn opus_tags(tags: &[(String, String)]) -> Vec<u8> {
    let mut t = b"OpusTags".to_vec();
    t.extend((VENDOR.len() as u32).to_le_bytes());
    t.extend(VENDOR.as_bytes());
    t.extend((tags.len() as u32).to_le_bytes());
    for (k, v) in tags {
        let c = format!("{k}={v}");
        t.extend((c.len() as u32).to_le_bytes());
        t.extend(c.as_bytes());
    }
    t
}

/// Encodes `wav` to `out` (Ogg Opus, encrypted to `recipients` when there are any). `out`
/// appears only complete.
pub fn encode(
    wav: &Path,
    out: &Path,
    tags: &[(String, String)],
    bitrate: i32,
    recipients: &[String],
) -> Result<Encoded, String> {
    let mut input = WavStream::open(wav)?;
    let rate = input.rate;
    if ![8000, 12000, 16000, 24000, 48000].contains(&rate) {
        return Err(format!("{}: {rate} Hz cannot be encoded by Opus", wav.display()));
    }
    let mut enc = opus::Encoder::new(rate, opus::Channels::Mono, opus::Application::Voip)
        .map_err(|e| e.to_string())?;
    enc.set_bitrate(opus::Bitrate::Bits(bitrate)).map_err(|e| e.to_string())?;
    enc.set_vbr(true).map_err(|e| e.to_string())?;
    enc.set_dtx(true).map_err(|e| e.to_string())?;
    let scale = 48000 / rate as u64;
    let lookahead = enc.get_lookahead().map_err(|e| e.to_string())?.max(0) as u64;
    let pre_skip = (lookahead * scale) as u16;
    let frame = FRAME * rate as usize / 8000;
    let tmp = tmp_path(out);
    let result = (|| -> Result<Encoded, String> {
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o640)
                .open(&tmp)
                .map_err(|e| format!("{}: {e}", tmp.display()))?
        };
        let mut w = ogg::PacketWriter::new(Sink::open(file, recipients)?);
        let serial = input.samples as u32 ^ 0x6363_6f6e;
        let io = |e: std::io::Error| format!("{}: {e}", tmp.display());
        w.write_packet(opus_head(pre_skip, rate), serial, PacketWriteEndInfo::EndPage, 0)
            .map_err(io)?;
        w.write_packet(opus_tags(tags), serial, PacketWriteEndInfo::EndPage, 0).map_err(io)?;
        let total = input.samples;
        // Frames cover the samples plus the encoder's look-ahead, so nothing is cut at the end.
        let frames = (total + lookahead as usize).div_ceil(frame).max(1);
        let mut buf = vec![0u8; 1500];
        let mut pcm = vec![0i16; frame];
        for n in 0..frames {
            input.read(&mut pcm)?;
            let len = enc.encode(&pcm, &mut buf).map_err(|e| e.to_string())?;
            let last = n + 1 == frames;
            let granule = if last {
                pre_skip as u64 + total as u64 * scale
            } else {
                pre_skip as u64 + ((n + 1) * frame) as u64 * scale
            };
            // Pages of half a second keep players' muxing delay low.
            let info = if last {
                PacketWriteEndInfo::EndStream
            } else if (n + 1) % 25 == 0 {
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            w.write_packet(buf[..len].to_vec(), serial, info, granule).map_err(io)?;
        }
        let (file, sha256) = w.into_inner().finish().map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&tmp, out).map_err(|e| format!("{}: {e}", out.display()))?;
        if let Some(dir) = out.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let opus_bytes = fs::metadata(out).map(|m| m.len()).unwrap_or(0);
        Ok(Encoded { opus_bytes, samples: total, rate, sha256 })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn tmp_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

/// What an archive holds: its tags, its length, and its decoded samples.
pub struct Archive {
    pub tags: Vec<(String, String)>,
    pub duration_ms: u64,
    pub samples: Vec<i16>,
    pub rate: u32,
}

impl Archive {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Whether a file is an encrypted archive (by its age header, not its name).
pub fn is_encrypted(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 21];
    File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok()
        && head.starts_with(b"age-encryption.org/v1")
}

/// The identities of an age identity file (`AGE-SECRET-KEY-1...` lines, as age-keygen writes).
pub fn read_identities(path: &Path) -> Result<Vec<Box<dyn age::Identity + Send + Sync>>, String> {
    let file = age::IdentityFile::from_file(path.display().to_string())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let ids = file.into_identities().map_err(|e| format!("{}: {e}", path.display()))?;
    if ids.is_empty() {
        return Err(format!("{}: no identity in the file", path.display()));
    }
    Ok(ids)
}

/// The recipient (public key) of each X25519 identity of a file, to name it in the access log.
pub fn identity_recipients(path: &Path) -> Vec<String> {
    let Ok(text) = fs::read_to_string(path) else { return vec![] };
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("AGE-SECRET-KEY-"))
        .filter_map(|l| l.parse::<age::x25519::Identity>().ok())
        .map(|i| i.to_public().to_string())
        .collect()
}

/// An archive's Ogg Opus bytes, in memory: decrypted with `identities` when it is encrypted
/// (the plaintext never touches the disk), read as it is otherwise.
pub fn open_bytes(
    path: &Path,
    identities: &[Box<dyn age::Identity + Send + Sync>],
) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let bad = |what: String| format!("{}: {what}", path.display());
    if !is_encrypted(path) {
        return fs::read(path).map_err(|e| bad(e.to_string()));
    }
    if identities.is_empty() {
        return Err(bad("encrypted: an identity is needed (--identity FILE)".into()));
    }
    let f = File::open(path).map_err(|e| bad(e.to_string()))?;
    let d =
        age::Decryptor::new_buffered(std::io::BufReader::new(f)).map_err(|e| bad(e.to_string()))?;
    let mut r = d
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| bad(format!("cannot decrypt: {e}")))?;
    let mut out = vec![];
    r.read_to_end(&mut out).map_err(|e| bad(format!("cannot decrypt: {e}")))?;
    Ok(out)
}

pub fn read_archive(path: &Path) -> Result<Archive, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    read_archive_bytes(&bytes, &path.display().to_string())
}

/// Decodes Ogg Opus bytes (`name` for the errors).
pub fn read_archive_bytes(bytes: &[u8], name: &str) -> Result<Archive, String> {
    let mut r = ogg::PacketReader::new(std::io::Cursor::new(bytes));
    let bad = |what: &str| format!("{name}: {what}");
    let head = r.read_packet().map_err(|e| bad(&e.to_string()))?.ok_or_else(|| bad("empty"))?;
    if head.data.len() < 19 || &head.data[..8] != b"OpusHead" {
        return Err(bad("no OpusHead"));
    }
    let pre_skip = u16::from_le_bytes([head.data[10], head.data[11]]) as u64;
    let rate = u32::from_le_bytes([head.data[12], head.data[13], head.data[14], head.data[15]]);
    let tags_pkt =
        r.read_packet().map_err(|e| bad(&e.to_string()))?.ok_or_else(|| bad("no OpusTags"))?;
    let t = &tags_pkt.data;
    if t.len() < 16 || &t[..8] != b"OpusTags" {
        return Err(bad("no OpusTags"));
    }
    let rd = |at: usize| -> Result<u32, String> {
        t.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| bad("short OpusTags"))
    };
    let vlen = rd(8)? as usize;
    let mut at = 12 + vlen;
    let count = rd(at)?;
    at += 4;
    let mut tags = vec![];
    for _ in 0..count {
        let len = rd(at)? as usize;
        let c = t.get(at + 4..at + 4 + len).ok_or_else(|| bad("short comment"))?;
        at += 4 + len;
        let c = String::from_utf8_lossy(c);
        if let Some((k, v)) = c.split_once('=') {
            tags.push((k.to_string(), v.to_string()));
        }
    }
    let rate_out = if rate == 0 { 48000 } else { rate };
    let mut dec = opus::Decoder::new(rate_out, opus::Channels::Mono).map_err(|e| e.to_string())?;
    let mut samples = vec![];
    let mut last_granule = 0;
    let mut out = vec![0i16; 5760];
    while let Some(p) = r.read_packet().map_err(|e| bad(&e.to_string()))? {
        let n = dec.decode(&p.data, &mut out, false).map_err(|e| bad(&e.to_string()))?;
        samples.extend_from_slice(&out[..n]);
        last_granule = p.absgp_page();
    }
    let scale = 48000 / rate_out as u64;
    let skip = (pre_skip / scale) as usize;
    let total = (last_granule.saturating_sub(pre_skip) / scale) as usize;
    let samples: Vec<i16> = samples.into_iter().skip(skip).take(total).collect();
    Ok(Archive {
        tags,
        duration_ms: last_granule.saturating_sub(pre_skip) / 48,
        samples,
        rate: rate_out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(path: &Path, samples: &[i16]) {
        fs::write(path, wav_bytes(8000, samples)).unwrap();
    }

    #[test]
    fn round_trip_keeps_length_tags_and_silence() {
        let dir = std::env::temp_dir().join(format!("cc-arch-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        // 2 s of tone, 2 s of silence (a pause), 2 s of tone.
        let tone =
            |n: usize| (0..n).map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16).collect::<Vec<_>>();
        let mut s = tone(16000);
        s.extend(vec![0i16; 16000]);
        s.extend(tone(16000));
        wav(&dir.join("a.wav"), &s);
        let tags = vec![("CALLCONSENT_CALL".to_string(), "1763800000.1".to_string())];
        let e = encode(&dir.join("a.wav"), &dir.join("a.opus"), &tags, 16000, &[]).unwrap();
        assert_eq!(e.samples, 48000);
        assert!(e.opus_bytes * 8 < 96000 * 2, "about 16 kb/s: {} bytes", e.opus_bytes);
        let a = read_archive(&dir.join("a.opus")).unwrap();
        assert_eq!(a.duration_ms, 6000);
        assert_eq!(a.tag("CALLCONSENT_CALL"), Some("1763800000.1"));
        assert_eq!(a.samples.len(), 48000);
        let mid = &a.samples[18000..30000];
        assert!(mid.iter().all(|x| x.abs() < 50), "the paused span decodes to silence");
        assert!(!dir.join("a.opus.tmp").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_encrypted_archive_opens_only_with_a_recipients_identity() {
        use age::secrecy::ExposeSecret;
        let dir = std::env::temp_dir().join(format!("cc-arch-age-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let tone = (0..24000).map(|i| ((i as f32 * 0.3).sin() * 8000.0) as i16).collect::<Vec<_>>();
        wav(&dir.join("a.wav"), &tone);
        let (dpo, coach, stranger) = (
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
        );
        let recipients = vec![dpo.to_public().to_string(), coach.to_public().to_string()];
        let tags = vec![("CALLCONSENT_CALL".to_string(), "1763800000.2".to_string())];
        let out = dir.join("a.opus.age");
        let e = encode(&dir.join("a.wav"), &out, &tags, 16000, &recipients).unwrap();
        let on_disk = fs::read(&out).unwrap();
        assert!(on_disk.starts_with(b"age-encryption.org/v1") && is_encrypted(&out));
        assert!(!on_disk.windows(4).any(|w| w == b"OggS"), "no plaintext Ogg page on disk");
        use sha2::Digest;
        assert_eq!(
            e.sha256,
            sha2::Sha256::digest(&on_disk).iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        for id in [&dpo, &coach] {
            let idfile = dir.join("id.txt");
            fs::write(&idfile, format!("# test\n{}\n", id.to_string().expose_secret())).unwrap();
            assert_eq!(identity_recipients(&idfile), vec![id.to_public().to_string()]);
            let bytes = open_bytes(&out, &read_identities(&idfile).unwrap()).unwrap();
            let a = read_archive_bytes(&bytes, "a").unwrap();
            assert_eq!((a.duration_ms, a.tag("CALLCONSENT_CALL")), (3000, Some("1763800000.2")));
        }
        let idfile = dir.join("stranger.txt");
        fs::write(&idfile, format!("{}\n", stranger.to_string().expose_secret())).unwrap();
        let err = open_bytes(&out, &read_identities(&idfile).unwrap()).unwrap_err();
        assert!(err.contains("cannot decrypt"), "{err}");
        assert!(open_bytes(&out, &[]).unwrap_err().contains("an identity is needed"));
        assert!(encode(
            &dir.join("a.wav"),
            &dir.join("b.opus.age"),
            &tags,
            16000,
            &["age1nope".into()]
        )
        .is_err());
        assert!(!dir.join("b.opus.age").exists() && !dir.join("b.opus.age.tmp").exists());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_encode_leaves_no_output() {
        let dir = std::env::temp_dir().join(format!("cc-arch-fail-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("bad.wav"), b"not a wav").unwrap();
        assert!(encode(&dir.join("bad.wav"), &dir.join("bad.opus"), &[], 16000, &[]).is_err());
        assert!(!dir.join("bad.opus").exists() && !dir.join("bad.opus.tmp").exists());
        let _ = fs::remove_dir_all(&dir);
    }
}
