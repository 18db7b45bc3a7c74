//! Per-card keys, diversified from master keys.
//!
//! Both derivations use the SCP03 data derivation function (NIST SP 800-108
//! in counter mode, PRF = AES-CMAC; [`vsc::scp03::kdf::derive_labeled`]):
//! block `i` is `CMAC(master, 00×11 ‖ label ‖ 00 ‖ L ‖ i ‖ context)`, with `L`
//! the output length in bits (2 bytes) and blocks concatenated and
//! truncated to `L`. The labels below are outside SCP03's own constants
//! (00–07), and every master key serves one derivation only.
//!
//! | What | Master (AES-256) | Label | L | Context |
//! |---|---|---|---|---|
//! | card Key-ENC | `scp03-master/enc` | `41` | `0080` (AES-128) | KDD (10 bytes, from INITIALIZE UPDATE) |
//! | card Key-MAC | `scp03-master/mac` | `42` | `0080` | KDD |
//! | card Key-DEK | `scp03-master/dek` | `43` | `0080` | KDD |
//! | PIV management key (9B) | `piv-mgmt-master` | `50` | `00C0` (AES-192) | chip serial, 4 bytes big-endian |
//!
//! A card's own key set is installed with key version number
//! [`CARD_KVN`] (`30`); its keys are AES-128, what every SCP03 card
//! accepts, while the masters are AES-256.
//!
//! `keyserver/tests/data/derivation-vectors.txt` holds vectors computed
//! independently (Python `cryptography`'s CMAC over the layout above).

use vsc::scp03::kdf::{derive_labeled, OutputLen};
use vsc::scp03::StaticKeys;
use vsc::secret::AesKey;

use crate::ports::{KeyError, KeySet};

/// The key version number of a card's own SCP03 key set.
pub const CARD_KVN: u8 = 0x30;
/// Label of a card's Key-ENC.
pub const LABEL_CARD_ENC: u8 = 0x41;
/// Label of a card's Key-MAC.
pub const LABEL_CARD_MAC: u8 = 0x42;
/// Label of a card's Key-DEK.
pub const LABEL_CARD_DEK: u8 = 0x43;
/// Label of a card's PIV management key.
pub const LABEL_PIV_MGMT: u8 = 0x50;

/// The SCP03 master key set.
#[derive(Clone, Debug)]
pub struct Scp03Masters {
    pub enc: AesKey,
    pub mac: AesKey,
    pub dek: AesKey,
}

fn derive_key(
    master: &AesKey,
    label: u8,
    len: OutputLen,
    context: &[u8],
    what: &'static str,
) -> Result<AesKey, KeyError> {
    let bytes = derive_labeled(master, label, len, context);
    AesKey::from_slice(&bytes).map_err(|e| KeyError::Derivation {
        what,
        reason: e.to_string(),
    })
}

/// A card's SCP03 key set (KVN 30, AES-128) for its key diversification data.
pub fn card_keys(masters: &Scp03Masters, kdd: &[u8; 10]) -> Result<KeySet, KeyError> {
    let enc = derive_key(
        &masters.enc,
        LABEL_CARD_ENC,
        OutputLen::Bytes16,
        kdd,
        "card Key-ENC",
    )?;
    let mac = derive_key(
        &masters.mac,
        LABEL_CARD_MAC,
        OutputLen::Bytes16,
        kdd,
        "card Key-MAC",
    )?;
    let dek = derive_key(
        &masters.dek,
        LABEL_CARD_DEK,
        OutputLen::Bytes16,
        kdd,
        "card Key-DEK",
    )?;
    let keys = StaticKeys::new(enc, mac, dek).map_err(|e| KeyError::Derivation {
        what: "card key set",
        reason: e.to_string(),
    })?;
    Ok(KeySet { kvn: CARD_KVN, keys })
}

/// A card's PIV management key (AES-192) for its chip serial.
pub fn management_key(master: &AesKey, serial: u32) -> Result<AesKey, KeyError> {
    derive_key(
        master,
        LABEL_PIV_MGMT,
        OutputLen::Bytes24,
        &serial.to_be_bytes(),
        "PIV management key",
    )
}
