//! callconsent's functional core: configuration rules, the selection draw, the policy and the
//! call state machine. No I/O and nothing of any PBX: a call is a value fed [`call::Event`]s that
//! returns [`call::Action`]s. Every rule of REQUIREMENTS.md (R1-R15) that decides something lives
//! here and is tested here.
pub mod access;
pub mod audit;
pub mod call;
pub mod config;
pub mod describe;
pub mod draw;
pub mod pace;
pub mod policy;
pub mod secure;
pub mod timing;
