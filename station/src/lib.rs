//! The card control system: PC/SC readers, the transparent relay, the control
//! stream and the operator console.
//!
//! Empty until the station issue; nothing here yet.
