//! The functional core: configuration rules, the selection draw and the call state machine.
//! Every rule of REQUIREMENTS.md (R1-R15) that decides something lives here.
pub mod call;
pub mod config;
pub mod describe;
pub mod draw;
pub mod policy;
