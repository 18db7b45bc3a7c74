//! GENERATE ASYMMETRIC KEY PAIR (INS `47`):
//! `00 47 00 slot Lc AC L {80 01 alg, [AA 01 pin-policy], [AB 01 touch-policy]}`.
//!
//! RSA-2048 (`07`, exponent 65537) and P-256 (`11`) into any key slot. The
//! new key replaces the slot's key; the slot's certificate is left alone
//! (yubico-piv-tool writes the new one afterwards). The private key is
//! stored as PKCS#8 in the secret key area with origin "generated on the
//! card" and the policies as its attributes, after a pairwise consistency
//! check. The answer is the public key:
//!
//! - RSA: `7F49 82 0109 {81 82 0100 n, 82 03 010001}`;
//! - EC: `7F49 43 {86 41 04 X Y}` (one length byte: yubico-piv-tool reads
//!   the point at a fixed offset).
//!
//! Needs the management key's authentication or the issuer's authority.

use crate::codec::{CommandApdu, ResponseApdu, StatusWord, TlvRef};
use crate::file::{KeyAlgorithm, KeyAttributes, KeyOrigin, PinPolicy, SecretKeyEntry, TouchPolicy};
use crate::tag;

use super::super::app::Ctx;
use super::keys::PivKey;
use super::slots::KeySlot;
use super::Volatile;

/// The key policies a GENERATE or IMPORT may carry (`AA`, `AB`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Policies {
    pub(super) pin: Option<PinPolicy>,
    pub(super) touch: Option<TouchPolicy>,
}

impl Policies {
    /// Takes `AA 01 p` or `AB 01 t`; `Ok(false)` for any other tag. Values
    /// `00` (default) to `03`; a repeated tag is an error.
    pub(super) fn take(&mut self, object: &TlvRef<'_>) -> Result<bool, StatusWord> {
        let byte = || match object.value {
            [b @ 0x00..=0x03] => Ok(*b),
            _ => Err(StatusWord::IncorrectData),
        };
        match object.tag.raw() {
            0xAA if self.pin.is_none() => self.pin = Some(PinPolicy::from_byte(byte()?)),
            0xAB if self.touch.is_none() => self.touch = Some(TouchPolicy::from_byte(byte()?)),
            0xAA | 0xAB => return Err(StatusWord::IncorrectData),
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub(super) fn attributes(self, origin: KeyOrigin) -> KeyAttributes {
        KeyAttributes {
            origin,
            pin_policy: self.pin.unwrap_or(PinPolicy::Default),
            touch_policy: self.touch.unwrap_or(TouchPolicy::Default),
        }
    }
}

/// A parsed GENERATE ASYMMETRIC KEY PAIR.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct GenerateKeyPair {
    slot: KeySlot,
    algorithm: KeyAlgorithm,
    policies: Policies,
}

impl TryFrom<&CommandApdu> for GenerateKeyPair {
    type Error = StatusWord;

    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        if cmd.p1() != 0x00 {
            return Err(StatusWord::IncorrectP1P2);
        }
        let slot = KeySlot::from_reference(cmd.p2()).ok_or(StatusWord::IncorrectP1P2)?;
        if cmd.data().is_empty() {
            return Err(StatusWord::WrongLength);
        }
        let template = TlvRef::parse_single(cmd.data()).map_err(|_| StatusWord::IncorrectData)?;
        if template.tag != tag!(0xAC) {
            return Err(StatusWord::IncorrectData);
        }
        let mut algorithm = None;
        let mut policies = Policies::default();
        for object in template.children().map_err(|_| StatusWord::IncorrectData)? {
            if policies.take(&object)? {
                continue;
            }
            match (object.tag.raw(), object.value) {
                (0x80, [alg]) if algorithm.is_none() => algorithm = Some(KeyAlgorithm::from_byte(*alg)),
                _ => return Err(StatusWord::IncorrectData),
            }
        }
        let algorithm = algorithm
            .filter(|a| PivKey::supports(*a))
            .ok_or(StatusWord::IncorrectData)?;
        Ok(GenerateKeyPair {
            slot,
            algorithm,
            policies,
        })
    }
}

pub(super) fn process(
    vol: &mut Volatile,
    ctx: &mut Ctx<'_>,
    cmd: &CommandApdu,
) -> Result<ResponseApdu, StatusWord> {
    let g = GenerateKeyPair::try_from(cmd)?;
    if !vol.administrator(ctx) {
        return Err(StatusWord::SecurityStatusNotSatisfied);
    }
    let key = PivKey::generate(g.algorithm, ctx.rng).map_err(|e| e.status_word())?;
    let material = key.to_pkcs8().map_err(|e| e.status_word())?;
    let entry = SecretKeyEntry::new(
        g.slot.key_ref(),
        g.algorithm,
        material,
        g.policies.attributes(KeyOrigin::GeneratedOnCard),
    )
    .map_err(|_| StatusWord::NoPreciseDiagnosis)?;
    ctx.store.vsc_mut().put_secret_key(entry);
    Ok(ResponseApdu::success(key.public_template()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p2: u8, hex_data: &str) -> Result<GenerateKeyPair, StatusWord> {
        let cmd = CommandApdu::new(0x00, 0x47, 0x00, p2);
        let data = hex::decode(hex_data.replace(' ', "")).unwrap();
        let cmd = if data.is_empty() {
            cmd
        } else {
            cmd.with_data(data).unwrap()
        };
        GenerateKeyPair::try_from(&cmd)
    }

    #[test]
    fn templates() {
        let g = parse(0x9A, "AC 03 80 01 11").unwrap();
        assert_eq!(g.algorithm, KeyAlgorithm::EccP256);
        assert_eq!(g.policies, Policies::default());
        let g = parse(0x9C, "AC 09 80 01 07 AA 01 03 AB 01 02").unwrap();
        assert_eq!(g.algorithm, KeyAlgorithm::Rsa2048);
        assert_eq!(g.policies.pin, Some(PinPolicy::Always));
        assert_eq!(g.policies.touch, Some(TouchPolicy::Always));
        assert_eq!(
            parse(0x9B, "AC 03 80 01 11").unwrap_err(),
            StatusWord::IncorrectP1P2
        );
        assert_eq!(parse(0x9A, "").unwrap_err(), StatusWord::WrongLength);
        for bad in [
            "AC 03 80 01 14",          // P-384: not supported here
            "AC 03 80 01 06",          // RSA-1024
            "AC 00",                   // no algorithm
            "AC 06 80 01 11 80 01 11", // twice
            "AC 06 80 01 11 AA 01 04", // unknown PIN policy
            "AC 06 80 01 11 AC 01 00", // unknown tag
            "AD 03 80 01 11",
            "AC 04 80 01 11",
            "AC 03 80 01 11 00",
        ] {
            assert_eq!(parse(0x9A, bad).unwrap_err(), StatusWord::IncorrectData, "{bad}");
        }
    }
}
