//! GENERAL AUTHENTICATE (INS `87`): `00 87 alg key 7C L {…}`.
//!
//! With the management key `9B` it runs the administrator's authentication
//! (see [`super::management`]). With an asymmetric key it computes:
//! `7C {82 00, 81 data}` signs (ECDSA) or runs the raw RSA private
//! operation (signature and decryption alike: the host pads), and
//! `7C {82 00, 85 point}` agrees a key (ECDH). The answer is
//! `7C L {82 L result}`; an RSA-2048 answer (264 bytes) leaves through 61xx.
//!
//! Order of checks: key reference (`6A86`), key present (`6A88`), algorithm
//! P1 equal to the key's (`6A80`), template (`6A80`), operation allowed for
//! the slot (`6985`), input (`6A80`), then the PIN policy (`6982`): a PIN
//! "always" is only spent on a command that will compute.

use crate::codec::{CommandApdu, ResponseApdu, StatusWord, Tlv, TlvRef};
use crate::file::PinPolicy;
use crate::tag;

use super::super::app::Ctx;
use super::keys::{Operation, PivKey};
use super::management;
use super::slots::{KeySlot, MANAGEMENT_KEY};
use super::Volatile;

/// The dynamic authentication template's data objects: absent (`None`),
/// requested (`Some` empty) or given (`Some` with a value).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct AuthTemplate {
    /// `80`: witness.
    pub(super) witness: Option<Vec<u8>>,
    /// `81`: challenge (or the data to sign / decrypt).
    pub(super) challenge: Option<Vec<u8>>,
    /// `82`: response.
    pub(super) response: Option<Vec<u8>>,
    /// `85`: exponentiation (the peer's public point for ECDH).
    pub(super) exponentiation: Option<Vec<u8>>,
}

impl AuthTemplate {
    /// Reads `7C L {…}` filling the whole data field; each of `80`, `81`,
    /// `82`, `85` at most once, nothing else.
    fn parse(data: &[u8]) -> Result<Self, StatusWord> {
        if data.is_empty() {
            return Err(StatusWord::WrongLength);
        }
        let outer = TlvRef::parse_single(data).map_err(|_| StatusWord::IncorrectData)?;
        if outer.tag != tag!(0x7C) {
            return Err(StatusWord::IncorrectData);
        }
        let mut t = AuthTemplate::default();
        for child in outer.children().map_err(|_| StatusWord::IncorrectData)? {
            let slot = match child.tag.raw() {
                0x80 => &mut t.witness,
                0x81 => &mut t.challenge,
                0x82 => &mut t.response,
                0x85 => &mut t.exponentiation,
                _ => return Err(StatusWord::IncorrectData),
            };
            if slot.replace(child.value.to_vec()).is_some() {
                return Err(StatusWord::IncorrectData);
            }
        }
        Ok(t)
    }
}

/// Which key the command names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AuthKey {
    Management,
    Slot(KeySlot),
}

/// A parsed GENERAL AUTHENTICATE.
#[derive(Debug)]
pub(super) struct GeneralAuthenticate {
    algorithm: u8,
    key: AuthKey,
    template: AuthTemplate,
}

impl TryFrom<&CommandApdu> for GeneralAuthenticate {
    type Error = StatusWord;

    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        let key = if cmd.p2() == MANAGEMENT_KEY {
            AuthKey::Management
        } else {
            AuthKey::Slot(KeySlot::from_reference(cmd.p2()).ok_or(StatusWord::IncorrectP1P2)?)
        };
        Ok(GeneralAuthenticate {
            algorithm: cmd.p1(),
            key,
            template: AuthTemplate::parse(cmd.data())?,
        })
    }
}

pub(super) fn process(
    vol: &mut Volatile,
    ctx: &mut Ctx<'_>,
    cmd: &CommandApdu,
) -> Result<ResponseApdu, StatusWord> {
    let ga = GeneralAuthenticate::try_from(cmd)?;
    match ga.key {
        AuthKey::Management => management::authenticate(vol, ctx, ga.algorithm, &ga.template),
        AuthKey::Slot(slot) => with_key(vol, ctx, slot, ga.algorithm, &ga.template),
    }
}

/// A private-key operation with the key in `slot`.
fn with_key(
    vol: &mut Volatile,
    ctx: &mut Ctx<'_>,
    slot: KeySlot,
    algorithm: u8,
    t: &AuthTemplate,
) -> Result<ResponseApdu, StatusWord> {
    let entry = ctx
        .store
        .vsc()
        .secret_key(&slot.key_ref())
        .ok_or(StatusWord::ReferencedDataNotFound)?;
    if entry.algorithm.to_byte() != algorithm {
        return Err(StatusWord::IncorrectData);
    }
    let requested = t.response.as_ref().is_some_and(Vec::is_empty);
    let (op, input) = match (&t.witness, &t.challenge, &t.exponentiation) {
        (None, Some(data), None) if requested && !data.is_empty() => (Operation::Private, data),
        (None, None, Some(point)) if requested && !point.is_empty() => (Operation::KeyAgreement, point),
        _ => return Err(StatusWord::IncorrectData),
    };
    if op == Operation::KeyAgreement && !slot.may_agree_keys() {
        return Err(StatusWord::ConditionsOfUseNotSatisfied);
    }
    let policy = slot.effective_pin_policy(entry.attributes.pin_policy);
    let key = PivKey::load(entry).map_err(|e| e.status_word())?;
    key.check_input(op, input)?;
    match policy {
        PinPolicy::Never => {}
        PinPolicy::Always => {
            if !(ctx.security.pin_verified && vol.pin_always_ready) {
                return Err(StatusWord::SecurityStatusNotSatisfied);
            }
            // One verification, one use.
            vol.pin_always_ready = false;
        }
        _ => {
            if !ctx.security.pin_verified {
                return Err(StatusWord::SecurityStatusNotSatisfied);
            }
        }
    }
    let result = key.compute(op, input, ctx.rng)?;
    let reply = Tlv::constructed(tag!(0x7C), &[Tlv::new(tag!(0x82), result)]);
    Ok(ResponseApdu::success(reply.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(hex_data: &str) -> Result<AuthTemplate, StatusWord> {
        AuthTemplate::parse(&hex::decode(hex_data.replace(' ', "")).unwrap())
    }

    #[test]
    fn templates() {
        let t = parse("7C 02 80 00").unwrap();
        assert_eq!(t.witness, Some(vec![]));
        let t = parse("7C 06 82 00 81 02 AB CD").unwrap();
        assert_eq!(t.response, Some(vec![]));
        assert_eq!(t.challenge, Some(vec![0xAB, 0xCD]));
        assert_eq!(parse(""), Err(StatusWord::WrongLength));
        assert_eq!(parse("7C 04 80 00 80 00"), Err(StatusWord::IncorrectData));
        assert_eq!(parse("7C 02 83 00"), Err(StatusWord::IncorrectData));
        assert_eq!(parse("7D 02 80 00"), Err(StatusWord::IncorrectData));
        assert_eq!(parse("7C 03 80 00"), Err(StatusWord::IncorrectData));
        assert_eq!(parse("7C 02 80 00 00"), Err(StatusWord::IncorrectData));
    }
}
