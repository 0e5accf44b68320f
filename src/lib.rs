//! callconsent: lawful, humane call recording for PBXs.
//!
//! `core` knows nothing of any PBX: a call is a value fed events, returning actions.
//! `audit` and `worker`-side file work run on threads of their own, fed over crossbeam channels.
//! `asterisk` is the adapter (with `c-shim/asterisk/`) that executes those actions in Asterisk 22.
pub mod archive;
pub mod audit;
pub mod caps;
pub mod encoders;
pub mod retention;
pub mod core;
pub mod guard;

#[cfg(asterisk_framehook_v4)]
pub mod asterisk;
