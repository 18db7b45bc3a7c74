//! The card control system: it contacts cards and relays the keyserver's
//! scripts to them unchanged; it holds no key and knows no command.
//!
//! - [`readers`]: PC/SC readers through pcscd and `sim:N` in-process
//!   readers behind one abstraction.
//! - [`relay`]: runs one script on one card, transparently.
//! - [`journal`]: the local journal of requests (sled, durable).
//! - [`control`]: the control stream to the keyserver, one task per
//!   reader, one Perso stream per card, pass/reject accounting.
//! - [`report`]: events as JSON lines or progress lines, the summary.
//! - [`cli`]: `station run`, `station readers`, `station journal`.

pub mod cli;
pub mod control;
pub mod journal;
pub mod readers;
pub mod relay;
pub mod report;
