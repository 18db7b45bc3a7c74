//! Cardsmith's keyserver: the card administration system (seed 003) and the
//! script server (seed 004). It holds every key and all personalization
//! logic; nothing secret leaves it except inside SCP03-encrypted commands
//! addressed to one card.
//!
//! - [`keystore`]: custody — a root KEK that exists only when the
//!   custodians' components are combined; every other key wrapped under it.
//! - [`profile`]: issuance profiles (TOML): what is written to a card.
//! - [`issue`]: one card — identify, diversify, build and seal the master
//!   VSC, compile the SCP03 script, check the reply.
//! - [`archive`]: the read-only master VSC archive and its signed,
//!   hash-chained manifest.
//! - [`audit`]: the hash-chained, signed audit log.
//! - [`jobs`]: jobs of records submitted from CSV.
//! - [`service`]: the gRPC service (mutual TLS) stations talk to, and the
//!   local admin socket.
//! - [`recovery`]: at start, what a stopped keyserver left unfinished is
//!   voided in the archive and the job store alike.
//! - [`ports`]: the interfaces between these parts; [`script`] and
//!   [`record`] the values that cross them.

pub mod archive;
pub mod audit;
pub mod cli;
pub mod issue;
pub mod jobs;
pub mod keystore;
pub mod ports;
pub mod profile;
pub mod record;
pub mod recovery;
pub mod script;
pub mod service;
