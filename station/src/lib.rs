//! The card control system: PC/SC and sim readers, the transparent relay,
//! the control stream to the keyserver, the local journal.
//!
//! - [`readers`]: PC/SC readers through pcscd and `sim:N` in-process
//!   readers behind one abstraction.
//! - [`relay`]: runs one script on one card, transparently.

pub mod readers;
pub mod relay;
