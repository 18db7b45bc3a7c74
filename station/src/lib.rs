//! The card control system: PC/SC readers, the transparent relay, the control
//! stream and the operator console.
//!
//! - [`readers`]: PC/SC readers through pcscd, as
//!   [`vsc::transport::CardTransport`]s.

pub mod readers;
