//! The card application administration key `9B` (the management key):
//! its authentication through GENERAL AUTHENTICATE and SET MANAGEMENT KEY.
//!
//! Two protocols, both with challenges from the card's random generator:
//!
//! - mutual authentication (yubico-piv-tool, ykman): the host asks for a
//!   witness with `7C 02 80 00`; the card draws W and answers
//!   `7C L 80 L E(K, W)`; the host decrypts it and sends `7C L 80 L W 81 L C`
//!   with a challenge of its own; the card checks W and answers
//!   `7C L 82 L E(K, C)`.
//! - single authentication (SP 800-73-4, OpenSC's GET CHALLENGE): the host
//!   asks `7C 02 81 00`; the card answers `7C L 81 L C`; the host sends
//!   `7C L 82 L E(K, C)`; the card answers `9000` or `6982`.
//!
//! Blocks are 8 bytes for 3DES (`03`) and 16 for AES-128/192/256 (`08`,
//! `0A`, `0C`); E is the block cipher in ECB on one block. A pending witness
//! or challenge is consumed by the next answer, right or wrong, and is
//! forgotten on reset, deselection, re-selection and a new request.

use aes::{Aes128, Aes192, Aes256};
use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};
use des::TdesEde3;
use subtle::ConstantTimeEq;

use crate::codec::{CommandApdu, ResponseApdu, StatusWord, Tag, Tlv};
use crate::file::{KeyAlgorithm, KeyAttributes, KeyOrigin, KeyRef, PinPolicy, SecretKeyEntry, TouchPolicy};
use crate::secret::SecretBytes;
use crate::tag;

use super::super::app::{CardStore, Ctx};
use super::general_auth::AuthTemplate;
use super::slots::MANAGEMENT_KEY;
use super::{Pending, Volatile};

/// The block length of a management key algorithm, `None` for algorithms
/// a management key cannot have.
pub(super) fn block_len(algorithm: KeyAlgorithm) -> Option<usize> {
    match algorithm {
        KeyAlgorithm::Tdes => Some(8),
        KeyAlgorithm::Aes128 | KeyAlgorithm::Aes192 | KeyAlgorithm::Aes256 => Some(16),
        _ => None,
    }
}

/// E(K, block): one block in ECB mode.
fn encrypt_block(algorithm: KeyAlgorithm, key: &SecretBytes, block: &[u8]) -> Result<Vec<u8>, StatusWord> {
    let k = key.expose_secret();
    match algorithm {
        KeyAlgorithm::Tdes => ecb::<TdesEde3>(k, block),
        KeyAlgorithm::Aes128 => ecb::<Aes128>(k, block),
        KeyAlgorithm::Aes192 => ecb::<Aes192>(k, block),
        KeyAlgorithm::Aes256 => ecb::<Aes256>(k, block),
        _ => Err(StatusWord::ReferenceDataNotUsable),
    }
}

fn ecb<C: BlockEncrypt + KeyInit>(key: &[u8], block: &[u8]) -> Result<Vec<u8>, StatusWord> {
    // A stored key of the wrong length is unusable reference data.
    let cipher = C::new_from_slice(key).map_err(|_| StatusWord::ReferenceDataNotUsable)?;
    if block.len() != C::block_size() {
        return Err(StatusWord::IncorrectData);
    }
    let mut b = GenericArray::clone_from_slice(block);
    cipher.encrypt_block(&mut b);
    Ok(b.to_vec())
}

/// The stored management key and its algorithm.
fn management_key(store: &CardStore) -> Result<&SecretKeyEntry, StatusWord> {
    store
        .vsc()
        .secret_key(&KeyRef::PivSlot(MANAGEMENT_KEY))
        .ok_or(StatusWord::ReferencedDataNotFound)
}

/// `7C L {tag L value}`.
fn dynamic_auth(tag: Tag, value: Vec<u8>) -> ResponseApdu {
    ResponseApdu::success(Tlv::constructed(tag!(0x7C), &[Tlv::new(tag, value)]).to_bytes())
}

/// GENERAL AUTHENTICATE with the management key. `algorithm` is P1: `00`
/// (OpenSC's GET CHALLENGE) means the key's own algorithm; any other value
/// must be it (`6A80` otherwise).
pub(super) fn authenticate(
    vol: &mut Volatile,
    ctx: &mut Ctx<'_>,
    algorithm: u8,
    t: &AuthTemplate,
) -> Result<ResponseApdu, StatusWord> {
    let entry = management_key(ctx.store)?;
    let key_algorithm = entry.algorithm;
    if algorithm != 0x00 && algorithm != key_algorithm.to_byte() {
        return Err(StatusWord::IncorrectData);
    }
    let len = block_len(key_algorithm).ok_or(StatusWord::ReferenceDataNotUsable)?;
    // Whatever this command is, it answers (or abandons) what was pending.
    let pending = vol.pending.take();
    let requested = |v: &Option<Vec<u8>>| v.as_ref().is_some_and(Vec::is_empty);
    let given = |v: &Option<Vec<u8>>| v.as_ref().is_some_and(|v| !v.is_empty());
    if t.exponentiation.is_some() {
        return Err(StatusWord::IncorrectData);
    }
    match (&t.witness, &t.challenge, &t.response) {
        // Mutual authentication, step 1: a witness for the host.
        (w, None, None) if requested(w) => {
            let witness = SecretBytes::random(ctx.rng, len);
            let encrypted = encrypt_block(key_algorithm, entry.material(), witness.expose_secret())?;
            vol.pending = Some(Pending::Witness {
                algorithm: key_algorithm,
                witness,
            });
            Ok(dynamic_auth(tag!(0x80), encrypted))
        }
        // Mutual authentication, step 2: the decrypted witness and the
        // host's challenge (with or without an empty `82` asking for the
        // response, as SP 800-73-4 writes it).
        (Some(w), Some(c), r)
            if given(&t.witness) && given(&t.challenge) && (r.is_none() || requested(r)) =>
        {
            let Some(Pending::Witness {
                algorithm: pending_algorithm,
                witness,
            }) = pending
            else {
                return Err(StatusWord::ConditionsOfUseNotSatisfied);
            };
            if pending_algorithm != key_algorithm || w.len() != len || c.len() != len {
                return Err(StatusWord::IncorrectData);
            }
            if !bool::from(witness.expose_secret().ct_eq(w.as_slice())) {
                vol.management_authenticated = false;
                return Err(StatusWord::SecurityStatusNotSatisfied);
            }
            let answer = encrypt_block(key_algorithm, entry.material(), c)?;
            vol.management_authenticated = true;
            Ok(dynamic_auth(tag!(0x82), answer))
        }
        // Single authentication, step 1: a challenge for the host.
        (None, c, None) if requested(c) => {
            let challenge = SecretBytes::random(ctx.rng, len);
            let reply = challenge.expose_secret().to_vec();
            vol.pending = Some(Pending::Challenge {
                algorithm: key_algorithm,
                challenge,
            });
            Ok(dynamic_auth(tag!(0x81), reply))
        }
        // Single authentication, step 2: the encrypted challenge.
        (None, None, Some(r)) if given(&t.response) => {
            let Some(Pending::Challenge {
                algorithm: pending_algorithm,
                challenge,
            }) = pending
            else {
                return Err(StatusWord::ConditionsOfUseNotSatisfied);
            };
            if pending_algorithm != key_algorithm || r.len() != len {
                return Err(StatusWord::IncorrectData);
            }
            let expected = SecretBytes::new(encrypt_block(
                key_algorithm,
                entry.material(),
                challenge.expose_secret(),
            )?);
            if bool::from(expected.expose_secret().ct_eq(r.as_slice())) {
                vol.management_authenticated = true;
                Ok(ResponseApdu::status(StatusWord::Success))
            } else {
                vol.management_authenticated = false;
                Err(StatusWord::SecurityStatusNotSatisfied)
            }
        }
        _ => Err(StatusWord::IncorrectData),
    }
}

/// SET MANAGEMENT KEY (Yubico, INS `FF`): `00 FF FF FF|FE Lc alg 9B len key`.
/// P2 `FE` asks for touch (stored, not enforced: a software card has no
/// button).
pub(super) struct SetManagementKey {
    algorithm: KeyAlgorithm,
    key: SecretBytes,
    touch_policy: TouchPolicy,
}

impl TryFrom<&CommandApdu> for SetManagementKey {
    type Error = StatusWord;

    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        let touch_policy = match (cmd.p1(), cmd.p2()) {
            (0xFF, 0xFF) => TouchPolicy::Never,
            (0xFF, 0xFE) => TouchPolicy::Always,
            _ => return Err(StatusWord::IncorrectP1P2),
        };
        let data = cmd.data();
        let Some(([alg, reference, len], key)) = data.split_first_chunk::<3>() else {
            return Err(if data.is_empty() {
                StatusWord::WrongLength
            } else {
                StatusWord::IncorrectData
            });
        };
        let algorithm = KeyAlgorithm::from_byte(*alg);
        let expected = algorithm.symmetric_key_len();
        if *reference != MANAGEMENT_KEY
            || block_len(algorithm).is_none()
            || expected != Some(usize::from(*len))
            || key.len() != usize::from(*len)
        {
            return Err(StatusWord::IncorrectData);
        }
        Ok(SetManagementKey {
            algorithm,
            key: SecretBytes::from_slice(key),
            touch_policy,
        })
    }
}

/// Replaces the management key; needs the management key's or the issuer's
/// authority.
pub(super) fn set_management_key(
    vol: &mut Volatile,
    ctx: &mut Ctx<'_>,
    cmd: &CommandApdu,
) -> Result<ResponseApdu, StatusWord> {
    let set = SetManagementKey::try_from(cmd)?;
    if !vol.administrator(ctx) {
        return Err(StatusWord::SecurityStatusNotSatisfied);
    }
    let entry = SecretKeyEntry::new(
        KeyRef::PivSlot(MANAGEMENT_KEY),
        set.algorithm,
        set.key,
        KeyAttributes {
            origin: KeyOrigin::Imported,
            pin_policy: PinPolicy::Never,
            touch_policy: set.touch_policy,
        },
    )
    .map_err(|_| StatusWord::IncorrectData)?;
    ctx.store.vsc_mut().put_secret_key(entry);
    vol.pending = None;
    Ok(ResponseApdu::status(StatusWord::Success))
}

/// Whether the stored management key is the well-known default (3DES
/// `0102…08` three times), for GET METADATA.
pub(super) fn is_default(entry: &SecretKeyEntry) -> bool {
    entry.algorithm == KeyAlgorithm::Tdes
        && bool::from(
            entry
                .material()
                .expose_secret()
                .ct_eq(&super::super::blank::DEFAULT_MANAGEMENT_KEY),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tdes_with_the_default_key() {
        // The computed check from the reference (card-protocols.md §C).
        let key = SecretBytes::from_slice(&super::super::super::blank::DEFAULT_MANAGEMENT_KEY);
        let out = encrypt_block(KeyAlgorithm::Tdes, &key, &[0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
        assert_eq!(hex::encode_upper(out), "90152A4C1CF42780");
    }

    #[test]
    fn wrong_block_lengths_are_refused() {
        let key = SecretBytes::from_slice(&[7; 24]);
        assert_eq!(
            encrypt_block(KeyAlgorithm::Aes192, &key, &[0; 8]),
            Err(StatusWord::IncorrectData)
        );
        assert!(encrypt_block(KeyAlgorithm::Aes192, &key, &[0; 16]).is_ok());
        assert_eq!(
            encrypt_block(KeyAlgorithm::Aes128, &key, &[0; 16]),
            Err(StatusWord::ReferenceDataNotUsable)
        );
    }
}
