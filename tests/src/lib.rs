//! End-to-end tests over real pcscd + vpcd, with OpenSC, yubico-piv-tool and
//! openssl as outside clients; the harness they share; the card benchmark.
//!
//! The tests are in `tests/e2e/` (one test binary), the benchmark in
//! `benches/card_apdus.rs`. [`harness`] is what they stand on: pcscd with
//! the project's configuration, the `vsc` binary, served cards, the lock on
//! the two vpcd readers, and the outside tools — a missing one fails the
//! test with a message saying what to install, never skips it.

pub mod cardlink;
pub mod harness;
pub mod netdelay;
pub mod opensc;
pub mod piv;
pub mod stack;
