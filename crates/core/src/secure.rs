//! Secure card entry (issue 16, PCI DSS): the digits a caller keys while an entry runs. They live
//! in one buffer that is wiped when dropped, print as their count only (a `{:?}` in a log line
//! shows no digit), and leave the core once, for the payment gosub.
use zeroize::Zeroizing;

/// Why an entry ended (the `reason` of `secure_entry_ended`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The caller pressed `secure_end_key`.
    EndKey,
    /// `secure_max_digits` digits were keyed.
    MaxDigits,
    /// `secure_timeout_ms` passed.
    Timeout,
    /// The call ended during the entry: the digits are dropped, no gosub runs.
    Hangup,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::EndKey => "end_key",
            EndReason::MaxDigits => "max_digits",
            EndReason::Timeout => "timeout",
            EndReason::Hangup => "hangup",
        }
    }
}

/// Card digits, wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretDigits(Zeroizing<String>);

impl SecretDigits {
    pub fn new() -> SecretDigits {
        // Room for the longest entry, so pushing never reallocates (a reallocation would leave a
        // copy behind, unwiped).
        SecretDigits(Zeroizing::new(String::with_capacity(32)))
    }
    pub fn push(&mut self, digit: char) {
        self.0.push(digit);
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The digits themselves: for the payment side only (`CALLCONSENT(secure_digits)`).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretDigits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretDigits({} digits)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_never_print() {
        let mut d = SecretDigits::new();
        for c in "4111111111111111".chars() {
            d.push(c);
        }
        assert_eq!(format!("{d:?}"), "SecretDigits(16 digits)");
        assert_eq!(d.expose(), "4111111111111111");
        assert_eq!(d.len(), 16);
    }
}
