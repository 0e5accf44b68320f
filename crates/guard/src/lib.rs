//! The one guard every entry from C passes through: a panic never crosses into Asterisk.
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `f`; if it panics, logs the panic and returns `on_panic` (the host's error value).
pub fn enter<T>(on_panic: T, what: &str, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            log::error!("callconsent: internal error in {what}: {msg}; the call goes on");
            on_panic
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_becomes_the_error_value() {
        let r = super::enter(-1, "test", || -> i32 { panic!("boom") });
        assert_eq!(r, -1);
        assert_eq!(super::enter(-1, "test", || 7), 7);
    }
}
