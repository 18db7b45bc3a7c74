//! The card layer of Cardsmith.
//!
//! - [`codec`]: APDU, status words, chaining, BER-TLV — pure, no I/O.
//! - [`scp03`]: GlobalPlatform SCP03, host and card halves — pure, no I/O.
//! - [`file`]: the VSC container with its five areas.
//! - [`secret`]: types for key material (zeroized, redacted, compared in
//!   constant time).

pub mod codec;
pub mod file;
pub mod scp03;
pub mod secret;
