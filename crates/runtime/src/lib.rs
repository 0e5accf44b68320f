//! callconsent's runtime: everything between the core and a PBX that knows no PBX. Live calls,
//! the one effect executor and its worker, the audit writer, the caps store, the recordings
//! spool, the archive encoder, retention and the installation secret. It reaches a PBX only
//! through the [`host`] traits that an adapter implements.
pub mod access;
pub mod archive;
pub mod audit;
pub mod calls;
pub mod caps;
mod effects;
pub mod encoders;
pub mod host;
pub mod retention;
mod runtime;
pub mod secret;
pub mod shared;
pub mod show;
pub mod spool;
pub mod store;
mod sweeper;

pub use calls::{CallIds, Slot};
pub use effects::Fed;
pub use host::{CallChannel, Host, RecorderPlan};
pub use runtime::{Begun, ControlRequest, Frame, Runtime};
