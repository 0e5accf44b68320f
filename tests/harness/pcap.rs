//! RTP captures for sipp's `play_pcap_audio`: one continuous RTP stream (one SSRC, increasing
//! sequence numbers and timestamps) of PCMA audio with RFC 4733 DTMF events in it. sipp's own
//! per-key captures all share one RTP timestamp, so Asterisk takes a second key for a repeat of
//! the first; a stream built here has none of that.

const PT_PCMA: u8 = 8;
const PT_EVENT: u8 = 101;
const SSRC: u32 = 0x00C0_FFEE;

pub enum Part {
    Tone {
        freq: f32,
        ms: u32,
    },
    Silence {
        ms: u32,
    },
    Digits(String),
    /// Keys as a person keys them: each an RFC 4733 event `len_ms` long, one key every
    /// `every_ms` (silence fills the rest), the first starting at once.
    Keys {
        digits: String,
        len_ms: u32,
        every_ms: u32,
    },
}

fn alaw(sample: i16) -> u8 {
    // ITU-T G.711 A-law.
    let mut pcm = i32::from(sample) >> 3;
    let sign = if pcm >= 0 { 0xD5 } else { 0x55 };
    if pcm < 0 {
        pcm = -pcm - 1;
    }
    let seg_end = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let seg = seg_end.iter().position(|e| pcm <= *e).unwrap_or(8) as i32;
    let aval = if seg >= 8 {
        0x7F
    } else if seg < 2 {
        (pcm >> 1) & 0x0F | (seg << 4)
    } else {
        (pcm >> seg) & 0x0F | (seg << 4)
    };
    (aval as u8) ^ sign
}

fn event_code(d: char) -> u8 {
    match d {
        '0'..='9' => d as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => 12 + (d as u8 - b'A'),
        _ => 0,
    }
}

struct Writer {
    out: Vec<u8>,
    seq: u16,
    ts: u32,
    time_us: u64,
}

impl Writer {
    fn packet(&mut self, pt: u8, marker: bool, ts: u32, payload: &[u8]) {
        let mut rtp = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        rtp.extend(self.seq.to_be_bytes());
        rtp.extend(ts.to_be_bytes());
        rtp.extend(SSRC.to_be_bytes());
        rtp.extend(payload);
        self.seq = self.seq.wrapping_add(1);
        let udp_len = 8 + rtp.len();
        let ip_len = 20 + udp_len;
        let mut frame = vec![0u8; 12];
        frame.extend([0x08, 0x00]);
        let mut ip = vec![
            0x45,
            0,
            (ip_len >> 8) as u8,
            ip_len as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
            127,
            0,
            0,
            1,
            127,
            0,
            0,
            1,
        ];
        let sum = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum::<u32>();
        let sum = !((sum & 0xFFFF) + (sum >> 16)) as u16;
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        frame.extend(ip);
        frame.extend(6000u16.to_be_bytes());
        frame.extend(6000u16.to_be_bytes());
        frame.extend((udp_len as u16).to_be_bytes());
        frame.extend([0, 0]);
        frame.extend(rtp);
        self.out.extend(((self.time_us / 1_000_000) as u32).to_le_bytes());
        self.out.extend(((self.time_us % 1_000_000) as u32).to_le_bytes());
        self.out.extend((frame.len() as u32).to_le_bytes());
        self.out.extend((frame.len() as u32).to_le_bytes());
        self.out.extend(frame);
    }

    fn audio(&mut self, samples: &[i16]) {
        for chunk in samples.chunks(160) {
            let payload: Vec<u8> = chunk.iter().map(|s| alaw(*s)).collect();
            self.packet(PT_PCMA, false, self.ts, &payload);
            self.ts = self.ts.wrapping_add(160);
            self.time_us += 20_000;
        }
    }

    fn digit(&mut self, d: char) {
        // A 200 ms key.
        self.key(d, 200);
    }

    /// A key `len_ms` long (rounded to 20 ms packets, at least one): updates every 20 ms, then
    /// three end packets; the timestamp is the event's start.
    fn key(&mut self, d: char, len_ms: u32) {
        let start = self.ts;
        let code = event_code(d);
        let n = (len_ms / 20).max(1) as u16;
        for i in 1..=n {
            let dur = i * 160;
            let end = i == n;
            for _ in 0..if end { 3 } else { 1 } {
                self.packet(
                    PT_EVENT,
                    i == 1,
                    start,
                    &[code, if end { 0x80 | 10 } else { 10 }, (dur >> 8) as u8, dur as u8],
                );
            }
            self.time_us += 20_000;
        }
        self.ts = self.ts.wrapping_add(u32::from(n) * 160);
    }
}

impl Writer {
    /// A pcap file's header, the RTP stream `offset_ms` on (sequence numbers and timestamps).
    fn start(offset_ms: u32) -> Writer {
        let mut w = Writer {
            out: Vec::new(),
            seq: 1000u16.wrapping_add((offset_ms / 20) as u16),
            ts: 8000 + offset_ms * 8,
            time_us: 1_000_000,
        };
        w.out.extend(0xa1b2_c3d4u32.to_le_bytes());
        w.out.extend(2u16.to_le_bytes());
        w.out.extend(4u16.to_le_bytes());
        w.out.extend([0u8; 8]);
        w.out.extend(65535u32.to_le_bytes());
        w.out.extend(1u32.to_le_bytes());
        w
    }
}

/// The bytes of a pcap file playing these parts in order.
pub fn rtp_pcap(parts: &[Part]) -> Vec<u8> {
    let mut w = Writer::start(0);
    write_parts(&mut w, parts);
    w.out
}

/// The parts of `rtp_pcap`, written on a stream that is already under way.
fn write_parts(w: &mut Writer, parts: &[Part]) {
    for p in parts {
        match p {
            Part::Tone { freq, ms } => {
                let n = (*ms as usize) * 8;
                let s: Vec<i16> = (0..n)
                    .map(|i| {
                        ((i as f32 * freq * std::f32::consts::TAU / 8000.0).sin() * 12000.0) as i16
                    })
                    .collect();
                w.audio(&s);
            }
            Part::Silence { ms } => w.audio(&vec![0i16; (*ms as usize) * 8]),
            Part::Digits(ds) => {
                for d in ds.chars() {
                    w.digit(d);
                    w.audio(&[0i16; 800]);
                }
            }
            Part::Keys { digits, len_ms, every_ms } => {
                let len = (len_ms / 20).max(1) * 20;
                for d in digits.chars() {
                    w.key(d, len);
                    w.audio(&vec![0i16; (every_ms.saturating_sub(len) as usize) * 8]);
                }
            }
        }
    }
}

/// A DTMF flood for `flood_pcap`: `count` keys drawn in turn from `digits`, one every `gap_us`
/// microseconds, each a tiny RFC 4733 event (a start packet and three end packets, 1 ms long) at
/// an RTP timestamp of its own, so each is a new key; 20 ms PCMA packets of `freq` Hz (0:
/// silence) go on between them, as a phone's audio does.
pub struct Flood<'a> {
    pub digits: &'a str,
    pub count: usize,
    pub gap_us: u64,
    pub freq: f32,
}

/// The bytes of a pcap file: `before` (as `rtp_pcap`), the flood, then `after`. The stream
/// starts `offset_ms` on (sequence numbers and RTP timestamps), so a capture played after
/// another on the same call goes on with the stream instead of going back in it.
pub fn flood_pcap(offset_ms: u32, before: &[Part], flood: &Flood, after: &[Part]) -> Vec<u8> {
    assert!(
        flood.gap_us >= 250 && !flood.digits.is_empty() || flood.count == 0,
        "a flood needs digits and at least 250 µs between keys"
    );
    let mut w = Writer::start(offset_ms);
    write_parts(&mut w, before);
    // The flood: audio every 20 ms, a key every gap_us, in time order; every timestamp from the
    // one 8 kHz clock (a key's is the moment it starts).
    let (t0, ts0) = (w.time_us, w.ts);
    let keys: Vec<char> = flood.digits.chars().collect();
    let span_us = flood.count as u64 * flood.gap_us;
    let frames = span_us.div_ceil(20_000);
    let mut key = 0usize;
    for f in 0..frames {
        let frame_us = f * 20_000;
        let payload: Vec<u8> = (0..160u64)
            .map(|i| {
                let n = (f * 160 + i) as f32;
                alaw(if flood.freq > 0.0 {
                    ((n * flood.freq * std::f32::consts::TAU / 8000.0).sin() * 12000.0) as i16
                } else {
                    0
                })
            })
            .collect();
        w.time_us = t0 + frame_us;
        w.packet(PT_PCMA, false, ts0.wrapping_add((f * 160) as u32), &payload);
        while key < flood.count && key as u64 * flood.gap_us < frame_us + 20_000 {
            let at_us = key as u64 * flood.gap_us;
            let ts = ts0.wrapping_add((at_us * 8 / 1000) as u32);
            let code = event_code(keys[key % keys.len()]);
            w.time_us = t0 + at_us;
            w.packet(PT_EVENT, true, ts, &[code, 10, 0, 8]);
            for _ in 0..3 {
                w.packet(PT_EVENT, false, ts, &[code, 0x80 | 10, 0, 8]);
            }
            key += 1;
        }
    }
    w.time_us = t0 + frames * 20_000;
    w.ts = ts0.wrapping_add((frames * 160) as u32);
    write_parts(&mut w, after);
    w.out
}
