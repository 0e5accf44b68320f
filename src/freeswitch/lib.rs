//! mod_callconsent: the FreeSWITCH 1.10 adapter of callconsent. It executes what the runtime asks
//! of a PBX on FreeSWITCH's sessions and holds no policy; the core and the runtime are the same
//! as on Asterisk, and so are the spool, the audit log and the DPO tool.
//!
//! `ffi` holds every extern declaration and all code the compiler cannot check; `entries` every
//! function the C shim (`c-shim/freeswitch/`) calls, each written with `callconsent_guard::entry!`;
//! `channel` implements the runtime's `CallChannel` and `Host` traits.
mod channel;
mod entries;
mod ffi;

use std::ffi::c_int;

/// FreeSWITCH's `switch_loadable_module_function_table_t`.
#[repr(C)]
pub struct ModuleTable {
    pub api_version: c_int,
    pub load: Option<ffi::LoadFn>,
    pub shutdown: Option<ffi::StatusFn>,
    pub runtime: Option<ffi::StatusFn>,
    pub flags: u32,
}

/// What FreeSWITCH looks up (dlsym of `<file name>_module_interface`) when it loads
/// `mod_callconsent.so`. Defined here because a cdylib exports only Rust's own symbols; the load
/// and shutdown functions are the shim's.
#[cfg(not(test))]
#[no_mangle]
#[used]
pub static mod_callconsent_module_interface: ModuleTable = ModuleTable {
    api_version: 5,
    load: Some(ffi::cc_fs_module_load),
    shutdown: Some(ffi::cc_fs_module_shutdown),
    runtime: None,
    flags: 0,
};
