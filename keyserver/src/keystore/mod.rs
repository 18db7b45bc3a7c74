//! Key custody: a root key-encryption key that exists only while the
//! custodians' components are combined, and every other key wrapped under it.
//!
//! - [`init`] (`keyserver init`): N ≥ 2 custodians each receive a random
//!   32-byte component ([`component`]); the root KEK (AES-256) is their XOR.
//!   Every key the keyserver needs is generated, pairwise-checked where it is
//!   a key pair ([`pairwise`]), wrapped under the root KEK with AES-256-GCM
//!   ([`aead`]) and stored in sled (`store`). Public material goes to
//!   `DATA/public/` ([`DataDir`]).
//! - [`Unlocked`] (`keyserver serve`): the components combined again, the
//!   keys unwrapped; it implements [`IssuerKeys`](crate::ports::IssuerKeys)
//!   and hands the service its TLS identity, the enrollment CA, the records
//!   key, the archive and the audit log.
//! - [`pool`]: pre-generated RSA-2048 keys, each handed out once.
//!
//! # The keys (names in the `keys` tree)
//!
//! | Name | What |
//! |---|---|
//! | `scp03-master/enc`, `…/mac`, `…/dek` | AES-256 masters of the cards' SCP03 keys ([`mod@derive`]) |
//! | `stock/<name>` | a card stock's transport key set: KVN ‖ ENC ‖ MAC ‖ DEK (`default`: the GP test keys 40..4F, KVN 01) |
//! | `piv-mgmt-master` | AES-256 master of the cards' PIV management keys ([`mod@derive`]) |
//! | `issuer-ca` | P-256, PKCS#8: the CA that certifies card keys |
//! | `archive-kek/1` | AES-256: protects master VSCs |
//! | `log-signing-key` | P-256, PKCS#8: signs the archive manifest and the audit log |
//! | `enrollment-ca` | P-256, PKCS#8: certifies stations and the keyserver's TLS key |
//! | `tls-server` | P-256, PKCS#8: the keyserver's TLS server key |
//! | `records-key` | AES-256: the jobs store encrypts record fields with it |
//! | `rsa-pool-key` | AES-256: wraps the pooled RSA keys |

pub mod aead;
pub mod certs;
pub mod component;
pub mod derive;
pub(crate) mod fsio;
mod init;
mod layout;
pub mod pairwise;
pub mod pool;
pub(crate) mod store;
mod unlock;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;

pub use init::{init, ComponentDelivery, FileDelivery, InitOptions, InitReport, TerminalDelivery};
pub use layout::DataDir;
pub use unlock::{StationIdentity, TlsIdentity, Unlocked};

/// Names of the keys in the `keys` tree.
pub mod names {
    pub const SCP03_ENC: &str = "scp03-master/enc";
    pub const SCP03_MAC: &str = "scp03-master/mac";
    pub const SCP03_DEK: &str = "scp03-master/dek";
    pub const PIV_MGMT: &str = "piv-mgmt-master";
    pub const ISSUER_CA: &str = "issuer-ca";
    pub const ARCHIVE_KEK: &str = "archive-kek/1";
    pub const LOG_SIGNING: &str = "log-signing-key";
    pub const ENROLLMENT_CA: &str = "enrollment-ca";
    pub const TLS_SERVER: &str = "tls-server";
    pub const RECORDS: &str = "records-key";
    pub const POOL: &str = "rsa-pool-key";
    /// The prefix of a card stock's transport key set.
    pub const STOCK_PREFIX: &str = "stock/";
    /// The stock every keystore starts with.
    pub const DEFAULT_STOCK: &str = "default";
}

/// The GlobalPlatform test keys 40..4F: what blank cards of the `default`
/// stock hold, with KVN 01.
pub const GP_TEST_KEY: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];
/// The KVN of the GP test keys.
pub const GP_TEST_KVN: u8 = 0x01;

/// Custody failed.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error(
        "--custodians {0}: a one-component setup is refused: split knowledge needs at least two custodians"
    )]
    TooFewCustodians(u8),
    #[error("--custodians {0}: at most {max} custodians are supported", max = component::MAX_CUSTODIANS)]
    TooManyCustodians(u8),
    #[error("{given} component files were given for {expected} custodians: give exactly one per custodian")]
    ComponentCount { expected: u8, given: usize },
    #[error("{} already holds an initialized keystore; init refuses to overwrite it", path.display())]
    AlreadyInitialized { path: PathBuf },
    #[error("{} already holds {what}; init needs a data directory without one", path.display())]
    NotEmpty { path: PathBuf, what: &'static str },
    #[error("{} holds no keystore: run `keyserver init --data {}` first", path.display(), path.display())]
    NotInitialized { path: PathBuf },
    #[error("the keystore in {} was never completed (init stopped before every custodian received a component): run init again", path.display())]
    InitInterrupted { path: PathBuf },
    #[error("no terminal to ask the custodians; pass --unlock FILE for each")]
    NoTerminalToUnlock,
    #[error(
        "no terminal to show the custodians their components; pass --component-out FILE for each custodian"
    )]
    NoTerminalToInit,
    #[error("component file {}: it belongs to keyserver {found}, this is keyserver {expected}", file.display())]
    OtherKeyserver {
        file: PathBuf,
        found: String,
        expected: String,
    },
    #[error("component file {}: it is for {of} custodians, this keyserver has {expected}", file.display())]
    CustodianCountMismatch { file: PathBuf, of: u8, expected: u8 },
    #[error("custodian {custodian}'s component was given twice ({})", files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "))]
    DuplicateCustodian { custodian: u8, files: Vec<PathBuf> },
    #[error("custodian {custodian}'s component is wrong{from}: its check value {given} is not the {expected} recorded at init")]
    WrongComponent {
        custodian: u8,
        from: String,
        given: String,
        expected: String,
    },
    #[error("every component matches its check value, but together they do not give the root key (check value {given}, expected {expected}): the keystore's metadata was changed")]
    RootMismatch { given: String, expected: String },
    #[error("the keystore is damaged: {what}: {reason}")]
    Damaged { what: String, reason: String },
    #[error(transparent)]
    Component(#[from] component::ComponentError),
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("wrapping {name}: {reason}")]
    Wrap { name: String, reason: String },
    #[error(transparent)]
    Key(#[from] crate::ports::KeyError),
    #[error("the key store {}: {op}: {source}", path.display())]
    Store {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: sled::Error,
    },
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the terminal: {0}")]
    Terminal(#[source] io::Error),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditLogError),
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
}

/// Checks a name (of a station, a stock): 1 to 64 of `A-Z a-z 0-9 . _ -`,
/// not starting with `.` or `-`.
pub fn check_name(what: &str, name: &str) -> Result<(), KeystoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !name.starts_with(['.', '-']);
    if ok {
        Ok(())
    } else {
        Err(KeystoreError::Invalid {
            what: format!("{what} name {name:?}"),
            reason: "use 1 to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'".into(),
        })
    }
}
