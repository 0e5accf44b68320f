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
    /// When it was opened: no session outlives `SESSION_MAX_AGE`, however busy.
    pub created: Instant,
    /// The password hash it was opened with: a changed password ends it (issue 24).
    pub password_hash: String,
}

/// The absolute lifetime of a session (issue 24): a working day, whatever its activity.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(12 * 3600);

/// A hash no password matches (its salt and the password it was made from are thrown away):
/// verified when the name is unknown, so an unknown name takes as long as a known one (names
/// cannot be told from the answer's time).
pub fn dummy_hash() -> String {
    hash(&token()).unwrap_or_default()
}

/// Sign-ins of one name that failed or are being checked, and until when it is locked.
struct Failures {
    count: u64,
    locked_until: Option<Instant>,
    last: Instant,
}

/// The most names the failure table keeps (each a few dozen bytes): beyond, the entries least
/// recently tried that are not locked go first, so random names cannot grow it (issue 24).
pub const MAX_TRACKED_NAMES: usize = 4096;

#[derive(Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Failures>>,
}

/// Why a sign-in is not checked at all.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The name is locked for this many more seconds.
    Locked(u64),
}

impl Sessions {
    pub fn open(&self, person: &str, password_hash: &str) -> (String, Session) {
        let id = token();
        let now = Instant::now();
        let s = Session {
            person: person.to_string(),
            csrf: token(),
            last: now,
            created: now,
            password_hash: password_hash.to_string(),
        };
        if let Ok(mut m) = self.sessions.lock() {
            m.insert(id.clone(), s.clone());
        }
        (id, s)
    }

    /// The live session of this id (its idle time under `idle`, its age under `max_age`);
    /// refreshes it.
    pub fn get(&self, id: &str, idle: Duration, max_age: Duration) -> Option<Session> {
        let mut m = self.sessions.lock().ok()?;
        m.retain(|_, s| s.last.elapsed() < idle && s.created.elapsed() < max_age);
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
    #[cfg(test)]
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

    /// Before a password is checked: refused while the name is locked, or once `max` attempts
    /// are failed or still being checked; otherwise the attempt is counted as a failure until
    /// `succeeded` says otherwise. The check and the count are one step under one lock, so
    /// attempts sent at once cannot all pass a check made before any of them was counted.
    pub fn begin(&self, name: &str, max: u64, lockout: Duration) -> Result<(), Refused> {
        let Ok(mut m) = self.failures.lock() else { return Err(Refused::Locked(1)) };
        let now = Instant::now();
        if !m.contains_key(name) && m.len() >= MAX_TRACKED_NAMES {
            evict_one(&mut m, now);
        }
        let f = m.entry(name.to_string()).or_insert(Failures {
            count: 0,
            locked_until: None,
            last: now,
        });
        f.last = now;
        match f.locked_until {
            Some(t) if t > now => return Err(Refused::Locked((t - now).as_secs().max(1))),
            Some(_) => {
                f.locked_until = None;
                f.count = 0;
            }
            None => {}
        }
        if max > 0 && f.count >= max {
            f.locked_until = Some(now + lockout);
            return Err(Refused::Locked(lockout.as_secs().max(1)));
        }
        f.count += 1;
        Ok(())
    }

    /// After a wrong password (its attempt already counted by `begin`): true when it locks the
    /// name.
    pub fn failed(&self, name: &str, max: u64, lockout: Duration) -> bool {
        let Ok(mut m) = self.failures.lock() else { return false };
        let Some(f) = m.get_mut(name) else { return false };
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

    /// How many names the failure table holds now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.failures.lock().map_or(0, |m| m.len())
    }
}

/// Makes room in a full failure table: the least recently tried name that is not locked, else
/// the one whose lock-out ends first.
fn evict_one(m: &mut HashMap<String, Failures>, now: Instant) {
    let victim = m
        .iter()
        .filter(|(_, f)| f.locked_until.is_none_or(|t| t <= now))
        .min_by_key(|(_, f)| f.last)
        .or_else(|| m.iter().min_by_key(|(_, f)| f.locked_until))
        .map(|(k, _)| k.clone());
    if let Some(k) = victim {
        m.remove(&k);
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
        let lock = Duration::from_secs(60);
        for _ in 0..2 {
            assert_eq!(s.begin("marc", 3, lock), Ok(()));
            assert!(!s.failed("marc", 3, lock));
        }
        assert_eq!(s.locked("marc"), None);
        assert_eq!(s.begin("marc", 3, lock), Ok(()));
        assert!(s.failed("marc", 3, lock));
        assert!(s.locked("marc").is_some_and(|n| n <= 60));
        assert!(matches!(s.begin("marc", 3, lock), Err(Refused::Locked(_))));
        assert_eq!(s.locked("claire"), None, "per name");
        let s = Sessions::default();
        assert_eq!(s.begin("x", 1, Duration::ZERO), Ok(()));
        s.failed("x", 1, Duration::ZERO);
        assert_eq!(s.locked("x"), None, "a lock-out ends");
    }

    /// Issue 24: attempts sent at once are counted before any is checked, so at most `max` of
    /// them are checked at all; a success clears the name.
    #[test]
    fn concurrent_attempts_past_the_bound_are_refused_before_they_are_checked() {
        let s = Sessions::default();
        let lock = Duration::from_secs(60);
        let admitted = (0..40).filter(|_| s.begin("marc", 3, lock).is_ok()).count();
        assert_eq!(admitted, 3, "only max attempts are checked");
        assert!(matches!(s.begin("marc", 3, lock), Err(Refused::Locked(59..=60))));
        let t = Sessions::default();
        assert_eq!(t.begin("anna", 3, lock), Ok(()));
        t.succeeded("anna");
        for _ in 0..3 {
            assert_eq!(t.begin("anna", 3, lock), Ok(()), "a success starts the count again");
            t.succeeded("anna");
        }
    }

    #[test]
    fn the_failure_table_is_bounded_and_keeps_locked_names() {
        let s = Sessions::default();
        let lock = Duration::from_secs(60);
        let _ = s.begin("marc", 1, lock);
        assert!(s.failed("marc", 1, lock));
        for i in 0..(MAX_TRACKED_NAMES * 3) {
            let _ = s.begin(&format!("random-{i}-{}", "x".repeat(200)), 3, lock);
        }
        assert_eq!(s.tracked(), MAX_TRACKED_NAMES);
        assert!(s.locked("marc").is_some(), "a locked name is not evicted by random ones");
    }

    #[test]
    fn the_dummy_hash_matches_no_password() {
        let h = dummy_hash();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!verify("", &h) && !verify("password", &h));
    }

    #[test]
    fn sessions_expire_and_tokens_differ() {
        let s = Sessions::default();
        let (id, sess) = s.open("claire", "$argon2id$x");
        assert_ne!(id, sess.csrf);
        assert_eq!(id.len(), 64);
        let minute = Duration::from_secs(60);
        assert!(s.get(&id, minute, SESSION_MAX_AGE).is_some());
        assert!(s.get(&id, minute, Duration::ZERO).is_none(), "an absolute lifetime, however busy");
        let (id, _) = s.open("claire", "$argon2id$x");
        assert!(s.get(&id, Duration::ZERO, SESSION_MAX_AGE).is_none());
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
