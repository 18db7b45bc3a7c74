//! The card layer of Cardsmith.
//!
//! - [`codec`]: APDU, status words, chaining, BER-TLV — pure, no I/O.
//! - [`scp03`]: GlobalPlatform SCP03, host and card halves — pure, no I/O.
//! - [`mod@file`]: the VSC container with its five areas.
//! - [`secret`]: types for key material (zeroized, redacted, compared in
//!   constant time).
//! - [`transport`]: the `CardTransport` trait host code talks to, the
//!   `SmartCard` trait a card implements, and the in-process transport.
//! - [`vpcd`]: plugs a card into pcscd through vsmartcard's vpcd driver.
//! - [`feeder`]: feeds card files through vpcd slots into pass and reject
//!   bins, like a card-personalization machine.

pub mod card;
pub mod clock;
pub mod codec;
pub mod feeder;
pub mod file;
pub mod scp03;
pub mod secret;
pub mod transport;
pub mod vpcd;
