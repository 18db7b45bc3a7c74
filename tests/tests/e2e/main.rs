//! End-to-end tests over real pcscd + vpcd (one test binary; the tests
//! take turns on the two vpcd readers through `harness::lock_readers`).
//!
//! Every test needs pcscd and vsmartcard's vpcd; some also OpenSC,
//! yubico-piv-tool, openssl or Debian's Python with pyscard. A missing one
//! fails the test with what to install (`scripts/setup`); nothing skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod feeder;
mod issuance;
mod opensc;
mod readers;
mod scp03_py;
mod serve;
mod yubico;
