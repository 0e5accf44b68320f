//! res_callconsent: the Asterisk 22 adapter of callconsent. It executes what the runtime asks
//! of a PBX on Asterisk's channels and holds no policy.
//!
//! `ffi` holds every extern declaration and all code the compiler cannot check; `entries` every function the C
//! shim (`c-shim/asterisk/`) calls, each written with `callconsent_guard::entry!`; `channel`
//! implements the runtime's `CallChannel` and `Host` traits.
#[cfg(not(asterisk_framehook_v4))]
compile_error!("res_callconsent supports Asterisk 22 (framehook interface 4)");

mod channel;
mod entries;
mod ffi;
