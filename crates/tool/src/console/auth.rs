//! Sign-in (argon2 hashes of `[access] password`), sessions, CSRF tokens and the lock-out.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;

/// A random token: 32 bytes from the OS, hex.
pub fn token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Equal strings, compared in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An argon2id hash (PHC string) of a password, for `[access] password = NAME: ...`.
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `password` matches the PHC hash (false for a malformed hash).
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

#[derive(Clone)]
pub struct Session {
    pub person: String,
    pub csrf: String,
    pub last: Instant,
}

/// Failed sign-ins of one name, and until when it is locked.
#[derive(Default)]
struct Failures {
    count: u64,
    locked_until: Option<Instant>,
}

#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Failures>>,
}

impl Sessions {
    pub fn open(&self, person: &str) -> (String, Session) {
        let id = token();
        let s = Session { person: person.to_string(), csrf: token(), last: Instant::now() };
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(id.clone(), s.clone());
        }
        (id, s)
    }

    /// The live session of this id (its idle time under `idle`); refreshes it.
    pub fn get(&self, id: &str, idle: Duration) -> Option<Session> {
        let mut m = self.sessions.lock().ok()?;
        m.retain(|_, s| s.last.elapsed() < idle);
        let s = m.get_mut(id)?;
        s.last = Instant::now();
        Some(s.clone())
    }

    pub fn close(&self, id: &str) {
        if let Ok(mut m) = self.sessions.lock() {
            m.remove(id);
        }
    }

    /// Seconds left of a lock-out of this name, if it is locked.
    pub fn locked(&self, name: &str) -> Option<u64> {
        let mut m = self.failures.lock().ok()?;
        let f = m.get_mut(name)?;
        match f.locked_until {
            Some(t) if t > Instant::now() => Some((t - Instant::now()).as_secs().max(1)),
            Some(_) => {
                f.locked_until = None;
                f.count = 0;
                None
            }
            None => None,
        }
    }

    /// Counts a failure; returns true when it locks the name.
    pub fn failed(&self, name: &str, max: u64, lockout: Duration) -> bool {
        let Ok(mut m) = self.failures.lock() else { return false };
        let f = m.entry(name.to_string()).or_default();
        f.count += 1;
        if max > 0 && f.count >= max {
            f.locked_until = Some(Instant::now() + lockout);
            return true;
        }
        false
    }

    pub fn succeeded(&self, name: &str) {
        if let Ok(mut m) = self.failures.lock() {
            m.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let h = hash("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horsf", &h));
        assert!(!verify("correct horse", "not a hash"));
    }

    #[test]
    fn the_lockout_follows_the_failures_of_a_name() {
        let s = Sessions::default();
        assert!(!s.failed("marc", 3, Duration::from_secs(60)));
        assert!(!s.failed("marc", 3, Duration::from_secs(60)));
        assert_eq!(s.locked("marc"), None);
        assert!(s.failed("marc", 3, Duration::from_secs(60)));
        assert!(s.locked("marc").is_some_and(|n| n <= 60));
        assert_eq!(s.locked("claire"), None, "per name");
        let s = Sessions::default();
        s.failed("x", 1, Duration::ZERO);
        assert_eq!(s.locked("x"), None, "a lock-out ends");
    }

    #[test]
    fn sessions_expire_and_tokens_differ() {
        let s = Sessions::default();
        let (id, sess) = s.open("claire");
        assert_ne!(id, sess.csrf);
        assert_eq!(id.len(), 64);
        assert!(s.get(&id, Duration::from_secs(60)).is_some());
        assert!(s.get(&id, Duration::ZERO).is_none());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
