//! IMPORT ASYMMETRIC KEY (Yubico extension, INS `FE`): `00 FE alg slot Lc
//! TLVs`, exactly as yubico-piv-tool sends it:
//!
//! - RSA-2048 (`07`): `01` p, `02` q, `03` dP, `04` dQ, `05` qInv, each
//!   big-endian and zero-padded on the left to half the modulus (128 bytes;
//!   shorter values are read as the same integers);
//! - P-256 (`11`): `06` d (32 bytes, or fewer read as the same integer);
//! - optionally `AA 01` PIN policy and `AB 01` touch policy.
//!
//! The key is checked before it is stored: RSA p·q has exactly 2048 bits,
//! the public exponent is 65537 and dP, dQ, qInv are the values p and q
//! give; EC 0 < d < n. Then a pairwise consistency check (which also
//! catches most non-prime "primes"). Anything else answers `6A80`. The key
//! goes to the secret key area as PKCS#8, origin "imported".
//!
//! Needs the management key's authentication or the issuer's authority.

use crate::codec::{CommandApdu, ResponseApdu, StatusWord, TlvRef};
use crate::file::{KeyAlgorithm, KeyOrigin, SecretKeyEntry};
use crate::secret::SecretBytes;

use super::super::app::Ctx;
use super::generate::Policies;
use super::keys::{PivKey, P256_LEN, RSA_2048_LEN};
use super::slots::KeySlot;
use super::Volatile;

/// A parsed IMPORT ASYMMETRIC KEY. The components stay in secret types.
pub(super) struct ImportKey {
    slot: KeySlot,
    algorithm: KeyAlgorithm,
    /// RSA: p, q, dP, dQ, qInv; EC: d.
    components: Vec<SecretBytes>,
    policies: Policies,
}

impl TryFrom<&CommandApdu> for ImportKey {
    type Error = StatusWord;

    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        let slot = KeySlot::from_reference(cmd.p2()).ok_or(StatusWord::IncorrectP1P2)?;
        let algorithm = KeyAlgorithm::from_byte(cmd.p1());
        let (first_tag, count, max_len) = match algorithm {
            KeyAlgorithm::Rsa2048 => (0x01u32, 5usize, RSA_2048_LEN / 2),
            KeyAlgorithm::EccP256 => (0x06, 1, P256_LEN),
            _ => return Err(StatusWord::IncorrectData),
        };
        if cmd.data().is_empty() {
            return Err(StatusWord::WrongLength);
        }
        let objects = TlvRef::parse_all(cmd.data()).map_err(|_| StatusWord::IncorrectData)?;
        let mut components: Vec<Option<SecretBytes>> = vec![None; count];
        let mut policies = Policies::default();
        for object in &objects {
            if policies.take(object)? {
                continue;
            }
            let index = object
                .tag
                .raw()
                .checked_sub(first_tag)
                .and_then(|i| usize::try_from(i).ok())
                .filter(|i| *i < count)
                .ok_or(StatusWord::IncorrectData)?;
            let value = object.value;
            if value.is_empty() || value.len() > max_len {
                return Err(StatusWord::IncorrectData);
            }
            let place = components.get_mut(index).ok_or(StatusWord::IncorrectData)?;
            if place.replace(SecretBytes::from_slice(value)).is_some() {
                return Err(StatusWord::IncorrectData);
            }
        }
        let components = components
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or(StatusWord::IncorrectData)?;
        Ok(ImportKey {
            slot,
            algorithm,
            components,
            policies,
        })
    }
}

impl ImportKey {
    fn key(&self) -> Option<PivKey> {
        let c = |i: usize| self.components.get(i).map(SecretBytes::expose_secret);
        match self.algorithm {
            KeyAlgorithm::Rsa2048 => PivKey::rsa_from_crt(c(0)?, c(1)?, c(2)?, c(3)?, c(4)?),
            KeyAlgorithm::EccP256 => PivKey::p256_from_scalar(c(0)?),
            _ => None,
        }
    }
}

pub(super) fn process(
    vol: &mut Volatile,
    ctx: &mut Ctx<'_>,
    cmd: &CommandApdu,
) -> Result<ResponseApdu, StatusWord> {
    let import = ImportKey::try_from(cmd)?;
    if !vol.administrator(ctx) {
        return Err(StatusWord::SecurityStatusNotSatisfied);
    }
    let key = import.key().ok_or(StatusWord::IncorrectData)?;
    key.check_pairwise(ctx.rng)
        .map_err(|_| StatusWord::IncorrectData)?;
    let material = key.to_pkcs8().map_err(|e| e.status_word())?;
    let entry = SecretKeyEntry::new(
        import.slot.key_ref(),
        import.algorithm,
        material,
        import.policies.attributes(KeyOrigin::Imported),
    )
    .map_err(|_| StatusWord::NoPreciseDiagnosis)?;
    ctx.store.vsc_mut().put_secret_key(entry);
    Ok(ResponseApdu::status(StatusWord::Success))
}
