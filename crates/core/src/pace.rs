//! Keys faster than a PBX can relay them. Asterisk stretches every key it relays to at least
//! 80 ms and leaves 45 ms after it (AST_MIN_DTMF_DURATION, AST_MIN_DTMF_GAP); the keys that come
//! meanwhile wait in the channel's read queue, and while that queue holds a key Asterisk reads
//! nothing else from the caller, so a burst of thousands of tiny keys (RFC 4733 or SIP INFO)
//! would hold the opt-out key and the caller's audio back for minutes. The pacer lets a key
//! through only once the PBX is done with the last one and drops the others, BEGIN and END
//! alike, before the PBX queues them: no human presses keys that fast, and what is dropped is a
//! key the agent would not hear in time anyway (never the opt-out key, which the call acts on
//! before any pacing).
use crate::call::Press;
use crate::timing::{KEY_RELAY_GAP_MS, KEY_RELAY_MIN_MS};

#[derive(Debug, Default, Clone)]
pub struct Pacer {
    /// Until when the PBX is relaying the last key let through.
    busy_until_ms: u64,
    /// The key let through that is still down, and when it began.
    down: Option<(char, u64)>,
    /// Keys whose BEGIN was dropped: their END is dropped too.
    dropping: Vec<char>,
    /// How many keys were dropped (for the call's audit line).
    pub dropped: u32,
}

impl Pacer {
    /// Whether this key may go on to the PBX. `len_ms` is the key's length the PBX gives at its
    /// END (0 when it does not say).
    pub fn admit(&mut self, press: Press, digit: char, len_ms: u32, now_ms: u64) -> bool {
        match press {
            Press::Begin => {
                if self.down.is_some() || now_ms < self.busy_until_ms {
                    // A key that is already being dropped stays one key (phones repeat BEGIN).
                    if !self.dropping.contains(&digit) {
                        self.dropping.push(digit);
                        self.dropped = self.dropped.saturating_add(1);
                    }
                    return false;
                }
                self.down = Some((digit, now_ms));
                self.busy_until_ms = now_ms + KEY_RELAY_MIN_MS + KEY_RELAY_GAP_MS;
                true
            }
            Press::End => {
                if let Some(i) = self.dropping.iter().position(|d| *d == digit) {
                    self.dropping.remove(i);
                    return false;
                }
                if let Some((d, began)) = self.down {
                    if d == digit {
                        self.down = None;
                        let relayed_until = (began + KEY_RELAY_MIN_MS).max(now_ms);
                        self.busy_until_ms =
                            self.busy_until_ms.max(relayed_until + KEY_RELAY_GAP_MS);
                        return true;
                    }
                }
                // An END without a BEGIN (SIP INFO, a key the PBX deferred): a key of its own,
                // relayed for its length.
                if self.down.is_some() || now_ms < self.busy_until_ms {
                    self.dropped = self.dropped.saturating_add(1);
                    return false;
                }
                self.busy_until_ms =
                    now_ms + u64::from(len_ms).max(KEY_RELAY_MIN_MS) + KEY_RELAY_GAP_MS;
                true
            }
        }
    }
}

impl Pacer {
    /// The keys under way when a secure card entry takes the caller's keys: (the key let
    /// through and still down, the keys being dropped). Their ENDs are the entry's to handle,
    /// and the pacer waits for none of them; the key let through keeps the PBX busy for its
    /// least relay.
    pub fn abandon(&mut self, now_ms: u64) -> (Option<char>, Vec<char>) {
        let dropping = std::mem::take(&mut self.dropping);
        let down = self.down.take().map(|(d, began)| {
            let relayed_until = (began + KEY_RELAY_MIN_MS).max(now_ms);
            self.busy_until_ms = self.busy_until_ms.max(relayed_until + KEY_RELAY_GAP_MS);
            d
        });
        (down, dropping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const SPACING: u64 = KEY_RELAY_MIN_MS + KEY_RELAY_GAP_MS;
    use Press::*;

    #[test]
    fn keys_at_a_human_pace_all_pass() {
        let mut p = Pacer::default();
        let mut t = 0;
        for d in "0123456789*#".chars() {
            assert!(p.admit(Begin, d, 0, t), "{d} begin");
            assert!(p.admit(End, d, 0, t + 90), "{d} end");
            t += 200;
        }
        assert_eq!(p.dropped, 0);
    }

    #[test]
    fn a_flood_passes_one_key_per_spacing_and_drops_begin_and_end_together() {
        let mut p = Pacer::default();
        let (mut passed_begins, mut passed_ends) = (0, 0);
        // 3000 keys 1 ms apart, each 1 ms long.
        for i in 0..3000u64 {
            let d = b"12345678"[(i % 8) as usize] as char;
            passed_begins += p.admit(Begin, d, 0, i) as u32;
            passed_ends += p.admit(End, d, 0, i) as u32;
        }
        assert_eq!(passed_begins, passed_ends, "a key passes whole or not at all");
        let most = 3000 / SPACING as u32 + 1;
        assert!(
            passed_begins <= most && passed_begins >= most - 2,
            "{passed_begins} keys passed, about {most} expected"
        );
        assert_eq!(p.dropped, 3000 - passed_begins);
    }

    #[test]
    fn ends_without_begins_are_paced_too() {
        let mut p = Pacer::default();
        let passed = (0..1000u64).filter(|i| p.admit(End, '5', 0, i * 2)).count();
        assert_eq!(passed as u64, 2000 / SPACING + 1);
    }

    #[test]
    fn a_long_key_holds_the_next_until_after_its_end() {
        let mut p = Pacer::default();
        assert!(p.admit(Begin, '1', 0, 0));
        assert!(!p.admit(Begin, '2', 0, 500), "a key while another is down");
        assert!(!p.admit(End, '2', 0, 510));
        assert!(p.admit(End, '1', 0, 600));
        assert!(!p.admit(Begin, '3', 0, 600 + KEY_RELAY_GAP_MS - 1));
        assert!(!p.admit(End, '3', 0, 600 + KEY_RELAY_GAP_MS));
        assert!(p.admit(Begin, '4', 0, 600 + KEY_RELAY_GAP_MS));
        assert!(p.admit(End, '4', 0, 700 + KEY_RELAY_GAP_MS));
    }

    #[test]
    fn a_long_info_key_holds_the_next_for_its_length() {
        let mut p = Pacer::default();
        assert!(p.admit(End, '5', 100, 0));
        assert!(!p.admit(End, '5', 100, 140), "the PBX relays it for 100 ms and 45 ms of gap");
        assert!(p.admit(End, '5', 100, 150));
    }
}
