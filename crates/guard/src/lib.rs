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

/// What both adapters' FFI modules need alike: C strings, the opaque context pointers the shims
/// hand back, and the line writers they pass. The unsafe code stays here, each block with its
/// contract.
pub mod c {
    use std::ffi::{c_char, c_void, CStr, CString};
    use std::marker::PhantomData;
    use std::ptr::NonNull;

    use super::FromC;

    /// A C string from Rust text; interior NULs (never expected) are dropped rather than unwrapped.
    pub fn cstring(s: &str) -> CString {
        CString::new(s.replace('\0', "")).unwrap_or_default()
    }

    /// Copies a C string the host gave us; NULL reads as empty.
    ///
    /// # Safety
    /// `p` is NULL or a valid NUL-terminated string for the duration of the call.
    pub unsafe fn text(p: *const c_char) -> String {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: the caller guarantees a valid NUL-terminated string.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    }

    /// An opaque context pointer handed back to us (a `Box` we made, or a collector on our stack).
    #[derive(Clone, Copy)]
    pub struct Ctx(NonNull<c_void>);

    impl FromC<*mut c_void> for Ctx {
        unsafe fn from_c(raw: *mut c_void) -> Option<Ctx> {
            NonNull::new(raw).map(Ctx)
        }
    }

    impl Ctx {
        pub fn ptr(self) -> *mut c_void {
            self.0.as_ptr()
        }
    }

    /// Collects the text a shim hands back to its `take_text` entry during `f`.
    pub fn take_text(f: impl FnOnce(*mut c_void)) -> String {
        let mut out = String::new();
        f((&mut out as *mut String).cast());
        out
    }

    /// The text slot of one `take_text` call, as a `take_text` entry receives it: `put` stores
    /// the value there.
    pub struct TextSlot<'a>(NonNull<String>, PhantomData<&'a mut String>);

    impl FromC<*mut c_void> for TextSlot<'_> {
        /// # Safety
        /// `raw` is the `&mut String` that `take_text` handed the shim for this very call (the
        /// shim's contract: a take_text entry is called only inside it).
        unsafe fn from_c(raw: *mut c_void) -> Option<Self> {
            NonNull::new(raw.cast::<String>()).map(|p| TextSlot(p, PhantomData))
        }
    }

    impl TextSlot<'_> {
        pub fn put(self, value: String) {
            // SAFETY: from_c's contract: take_text's String, on its stack during this entry.
            unsafe { *self.0.as_ptr() = value };
        }
    }

    /// A watcher's data, borrowed for one callback: the `Box<T>` the adapter gave the host's
    /// attach call comes back as each callback's data argument.
    pub struct Hooked<'a, T>(&'a T);

    impl<T> FromC<*mut c_void> for Hooked<'_, T> {
        /// # Safety
        /// `raw` is the pointer of the `Box<T>` (this very `T`) given at attach, and its
        /// destroy/close callback has not run yet (the host calls none after it): the shim's
        /// contract for every watcher callback.
        unsafe fn from_c(raw: *mut c_void) -> Option<Self> {
            // SAFETY: the contract above: a live Box<T>, borrowed for this callback only.
            NonNull::new(raw.cast::<T>()).map(|p| Hooked(unsafe { p.as_ref() }))
        }
    }

    impl<T> std::ops::Deref for Hooked<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0
        }
    }

    /// A watcher's data taken back at its destroy/close callback.
    pub struct Unhooked<T>(pub Box<T>);

    impl<T> FromC<*mut c_void> for Unhooked<T> {
        /// # Safety
        /// `raw` comes from `Box::<T>::into_raw` at attach, and the callback that receives it
        /// (destroy/close) runs exactly once, after every other callback of that watcher.
        unsafe fn from_c(raw: *mut c_void) -> Option<Self> {
            // SAFETY: the contract above: the raw Box<T>, taken back once.
            NonNull::new(raw.cast::<T>()).map(|p| Unhooked(unsafe { Box::from_raw(p.as_ptr()) }))
        }
    }

    /// Collects the values a shim hands, one call each, to a collector entry during `f`; with
    /// what `f` returned.
    pub fn collect<T>(f: impl FnOnce(*mut c_void) -> i32) -> (Vec<T>, i32) {
        let mut out: Vec<T> = Vec::new();
        let rc = f((&mut out as *mut Vec<T>).cast());
        (out, rc)
    }

    /// Where a collector entry puts its value, as the entry receives it.
    pub struct Collector<'a, T>(NonNull<Vec<T>>, PhantomData<&'a mut Vec<T>>);

    impl<T> FromC<*mut c_void> for Collector<'_, T> {
        /// # Safety
        /// `raw` is the pointer `collect::<T>` handed the shim, during that `collect` call (the
        /// shim's contract: a collector entry is called only inside it).
        unsafe fn from_c(raw: *mut c_void) -> Option<Self> {
            NonNull::new(raw.cast::<Vec<T>>()).map(|p| Collector(p, PhantomData))
        }
    }

    impl<T> Collector<'_, T> {
        pub fn push(&self, value: T) {
            // SAFETY: from_c's contract: collect's Vec<T>, on its stack during this entry, and
            // no other reference to it is used meanwhile (collect waits for the shim).
            unsafe { (*self.0.as_ptr()).push(value) };
        }
    }

    /// The `log` crate, bridged to a shim's log function (its text an argument, never a format).
    pub struct CLogger {
        /// The host's levels for error, warning, info and debug.
        pub levels: [i32; 4],
        /// The file name when the record has none.
        pub name: &'static str,
        pub sink: unsafe extern "C" fn(i32, *const c_char, i32, *const c_char, *const c_char),
    }

    impl log::Log for CLogger {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, r: &log::Record) {
            let level = match r.level() {
                log::Level::Error => self.levels[0],
                log::Level::Warn => self.levels[1],
                log::Level::Info => self.levels[2],
                _ => self.levels[3],
            };
            let msg = cstring(&r.args().to_string());
            let file = cstring(r.file().unwrap_or(self.name));
            let func = cstring(r.module_path().unwrap_or("callconsent"));
            // SAFETY: valid C strings; the shim passes the message as an argument to "%s".
            unsafe {
                (self.sink)(
                    level,
                    file.as_ptr(),
                    r.line().unwrap_or(0) as i32,
                    func.as_ptr(),
                    msg.as_ptr(),
                )
            };
        }
        fn flush(&self) {}
    }

    /// The shims' `cc_line_writer`.
    pub type LineWriter = Option<unsafe extern "C" fn(*mut c_void, *const c_char)>;

    /// A line writer the shim passed (NULL is refused).
    #[derive(Clone, Copy)]
    pub struct WriterFn(unsafe extern "C" fn(*mut c_void, *const c_char));

    impl FromC<LineWriter> for WriterFn {
        unsafe fn from_c(raw: LineWriter) -> Option<WriterFn> {
            raw.map(WriterFn)
        }
    }

    /// The writer's context: whatever the shim passed, handed back untouched (NULL allowed).
    #[derive(Clone, Copy)]
    pub struct Opaque(*mut c_void);

    impl FromC<*mut c_void> for Opaque {
        unsafe fn from_c(raw: *mut c_void) -> Option<Opaque> {
            Some(Opaque(raw))
        }
    }

    /// Writes output one line at a time through the shim's writer, for the entry that received it.
    pub struct Writer<'a>(WriterFn, Opaque, PhantomData<&'a ()>);

    impl Writer<'_> {
        pub fn new(f: WriterFn, ctx: Opaque) -> Self {
            Writer(f, ctx, PhantomData)
        }
        pub fn line(&self, line: &str) {
            let l = cstring(line);
            // SAFETY: the shim's writer and its context, valid during the entry that received
            // them (a Writer lives only inside that entry's body).
            unsafe { (self.0 .0)(self.1 .0, l.as_ptr()) };
        }
        pub fn lines<S: AsRef<str>>(&self, lines: &[S]) {
            for l in lines {
                self.line(l.as_ref());
            }
        }
    }
}
