//! The host side's errors. Every message names the operation that failed.
//!
//! The card side does not use this type: its failures are the status word
//! the card answers with.

use crate::codec::{ApduError, StatusWord};

use super::SecurityLevel;

/// A failure of the host half of SCP03, or of a value given to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Scp03Error {
    // --- keys and parameters -------------------------------------------------
    #[error(
        "static keys: Key-ENC, Key-MAC and Key-DEK must have the same length ({enc}, {mac} and {dek} bytes)"
    )]
    KeyLengthMismatch { enc: usize, mac: usize, dek: usize },
    #[error("security level {0:02X} is not one of 01, 03, 11, 13, 33")]
    InvalidSecurityLevel(u8),

    // --- INITIALIZE UPDATE -----------------------------------------------------
    #[error("INITIALIZE UPDATE refused by the card: {0}")]
    InitializeUpdateStatus(StatusWord),
    #[error("INITIALIZE UPDATE response: {0} bytes, expected 29 or 32")]
    InitializeUpdateLength(usize),
    #[error("INITIALIZE UPDATE response: secure channel protocol {0:02X}, expected 03")]
    NotScp03(u8),
    #[error("INITIALIZE UPDATE response: the card uses S16 mode (i = {0:02X}); only S8 is supported")]
    S16Unsupported(u8),
    #[error(
        "INITIALIZE UPDATE response: {len} bytes, but i = {i:02X} {} a sequence counter",
        if i & 0x10 != 0 { "announces" } else { "rules out" }
    )]
    SequenceCounterPresence { len: usize, i: u8 },

    // --- opening the session ---------------------------------------------------
    #[error("card cryptogram does not verify")]
    CardCryptogramMismatch,
    #[error("pseudo-random card challenge does not match sequence counter {0:06X} and the AID")]
    CardChallengeMismatch(u32),
    #[error("EXTERNAL AUTHENTICATE: security level {level} needs {missing}, which the card does not announce (i = {i:02X})")]
    LevelNotSupportedByCard {
        level: SecurityLevel,
        missing: &'static str,
        i: u8,
    },

    // --- wrapping commands -----------------------------------------------------
    #[error("wrap: CLA {0:02X} cannot carry SCP03 secure messaging (it must be a first interindustry or GlobalPlatform class without secure messaging bits)")]
    UnsupportedCla(u8),
    #[error(
        "wrap: command data of {len} bytes does not fit a secured APDU at level {level} (at most {max})"
    )]
    CommandTooLong {
        len: usize,
        max: usize,
        level: SecurityLevel,
    },
    #[error("wrap: the encryption counter is exhausted")]
    CounterExhausted,
    #[error("building an APDU: {0}")]
    Apdu(#[from] ApduError),

    // --- unwrapping responses --------------------------------------------------
    #[error("response to command #{command}: {len} bytes of data, too few to hold an R-MAC")]
    RMacMissing { command: u64, len: usize },
    #[error("R-MAC of the response to command #{command} does not verify")]
    RMacMismatch { command: u64 },
    #[error("response to command #{command}: status {sw} must come bare, yet it carries {len} bytes")]
    UnexpectedResponseData {
        command: u64,
        sw: StatusWord,
        len: usize,
    },
    #[error("response to command #{command}: encrypted data of {len} bytes is not a padded whole number of blocks")]
    ResponseDecryption { command: u64, len: usize },

    // --- the session as a whole ------------------------------------------------
    #[error("session ended after a failure")]
    SessionEnded,

    // --- sensitive data (Key-DEK) ----------------------------------------------
    #[error("Key-DEK decryption: {0} bytes is not a whole number of 16-byte blocks")]
    SensitiveDataLength(usize),
}
