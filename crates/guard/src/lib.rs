//! The one guard every entry from C passes through: a panic never crosses into the PBX.
//!
//! Every `extern "C"` function a host calls is written with [`entry!`] (as pgrx's `#[pg_guard]`
//! and redismodule-rs's wrappers do): it converts and checks each argument through [`FromC`]
//! (a NULL pointer where a value is required gives the host's error value, never a dereference),
//! runs the body inside [`enter`], and returns the host's error value if the body panics. No
//! entry is written by hand, so none is forgotten.
use std::panic::{catch_unwind, AssertUnwindSafe};

#[doc(hidden)]
pub use log;

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

/// A Rust value made from what C passed: `None` refuses the call (the entry returns the host's
/// error value).
pub trait FromC<Raw>: Sized {
    /// # Safety
    /// `raw` is what the host passed for this argument, valid for the duration of the entry
    /// (the adapter's implementation says what that means for its type).
    unsafe fn from_c(raw: Raw) -> Option<Self>;
}

/// Plain values pass through.
macro_rules! plain {
    ($($t:ty),*) => {$(
        impl FromC<$t> for $t {
            unsafe fn from_c(raw: $t) -> Option<$t> {
                Some(raw)
            }
        }
    )*};
}
plain!(i32, u32, i64, u64, usize);

/// A string argument, copied at once; NULL reads as empty.
impl FromC<*const std::ffi::c_char> for String {
    unsafe fn from_c(raw: *const std::ffi::c_char) -> Option<String> {
        // SAFETY: FromC's contract: NULL or a NUL-terminated string valid for this call.
        Some(unsafe { text(raw) }.unwrap_or_default())
    }
}

/// An optional string argument: NULL is `None` (not a refusal).
impl FromC<*const std::ffi::c_char> for Option<String> {
    unsafe fn from_c(raw: *const std::ffi::c_char) -> Option<Option<String>> {
        // SAFETY: as for String.
        Some(unsafe { text(raw) })
    }
}

/// # Safety
/// `p` is NULL or a valid NUL-terminated string for the duration of the call.
unsafe fn text(p: *const std::ffi::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees a valid NUL-terminated string.
    Some(unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned())
}

/// Declares C->Rust entries. Each argument is written `name: RustType = CType`; the body sees
/// the converted values. `on_error` is what the host gets back on a refused argument or a panic.
///
/// ```text
/// entry! {
///     /// `CallConsent(profile)`.
///     fn cc_rs_exec(chan: Chan<'_> = *mut sys::cc_chan, data: String = *const c_char) -> c_int, on_error 0 {
///         ...
///     }
/// }
/// ```
#[macro_export]
macro_rules! entry {
    ($(
        $(#[$meta:meta])*
        fn $name:ident($($arg:ident : $ty:ty = $raw:ty),* $(,)?) $(-> $ret:ty)?, on_error $err:expr => $body:block
    )*) => {$(
        $(#[$meta])*
        #[no_mangle]
        #[allow(clippy::unused_unit)]
        pub extern "C" fn $name($($arg: $raw),*) $(-> $ret)? {
            $crate::enter($err, stringify!($name), move || {
                $(
                    // SAFETY: the host passed this argument for this call; `FromC` checks it
                    // (NULL is refused) and copies or borrows it only for the entry's duration.
                    let Some($arg) = (unsafe { <$ty as $crate::FromC<$raw>>::from_c($arg) }) else {
                        $crate::log::warn!("callconsent: {}: the host passed no {}", stringify!($name), stringify!($arg));
                        return $err;
                    };
                )*
                $body
            })
        }
    )*};
}

#[cfg(test)]
mod tests {
    use super::FromC;

    struct NonZero(u32);
    impl FromC<u32> for NonZero {
        unsafe fn from_c(raw: u32) -> Option<NonZero> {
            (raw != 0).then_some(NonZero(raw))
        }
    }

    entry! {
        fn cc_test_double(x: NonZero = u32) -> u32, on_error 0 => {
            x.0 * 2
        }
        fn cc_test_panics(x: u32 = u32) -> i32, on_error -1 => {
            if x > 0 {
                panic!("boom");
            }
            7
        }
    }

    #[test]
    fn a_panic_becomes_the_error_value() {
        let r = super::enter(-1, "test", || -> i32 { panic!("boom") });
        assert_eq!(r, -1);
        assert_eq!(super::enter(-1, "test", || 7), 7);
    }

    entry! {
        fn cc_test_len(s: String = *const std::ffi::c_char, o: Option<String> = *const std::ffi::c_char) -> usize, on_error 0 => {
            s.len() + o.map_or(100, |o| o.len())
        }
    }

    #[test]
    fn strings_are_copied_and_null_is_empty_or_none() {
        let a = std::ffi::CString::new("abc").unwrap();
        assert_eq!(cc_test_len(a.as_ptr(), a.as_ptr()), 6);
        assert_eq!(cc_test_len(std::ptr::null(), std::ptr::null()), 100);
    }

    #[test]
    fn entries_check_their_arguments_and_catch_panics() {
        assert_eq!(cc_test_double(21), 42);
        assert_eq!(cc_test_double(0), 0, "a refused argument gives the error value");
        assert_eq!(cc_test_panics(0), 7);
        assert_eq!(cc_test_panics(1), -1, "a panic gives the error value");
    }
}
