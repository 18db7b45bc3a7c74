//! PIV data objects: GET DATA (`CB`) and PUT DATA (`DB`).
//!
//! - GET DATA `00 CB 3F FF Lc 5C L tag` answers `53 L value` (`7E L value`
//!   for the Discovery object); an unknown or absent object is `6A82`.
//! - PUT DATA `00 DB 3F FF Lc 5C L tag 53 L value` stores the value; the
//!   Discovery object also comes as `7E L value` (SP 800-73-4) or with
//!   `5C 01 7E` before it. An empty value (`53 00`) deletes the object. It
//!   needs the management key's authentication or the issuer's authority
//!   (a command under SCP03).
//!
//! Objects readable by anyone live in the VSC's public area, PIN-protected
//! ones (Printed Information, the biometric objects) in the private area;
//! both under [`ObjectId::Piv`] with their tag. Values are opaque to the
//! card (a certificate container is `70 L DER 71 01 00 FE 00` because the
//! host wrote it so), except the Discovery object, which must name the PIV
//! application (OpenSC refuses the card otherwise).

use crate::codec::{CommandApdu, ResponseApdu, StatusWord, Tlv, TlvRef};
use crate::file::{DataObject, ObjectId};
use crate::tag;

use super::super::app::Ctx;
use super::slots::is_retired_certificate;
use super::{Volatile, PIV_AID};

/// The Discovery object's tag.
pub(super) const DISCOVERY: u32 = 0x7E;
/// The longest object value the card stores.
pub(super) const MAX_OBJECT_LEN: usize = 8192;
/// The first 9 bytes of the PIV AID, which a Discovery object must carry.
const PIV_AID_PREFIX_LEN: usize = 9;

/// The Discovery object a card without a stored one answers with: the PIV
/// AID and a PIN usage policy of `40 00` (the PIV application PIN only, no
/// global PIN, no pairing code, no OCC).
pub const DEFAULT_DISCOVERY: [u8; 18] = [
    0x4F, 0x0B, 0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00, 0x01, 0x00, // AID
    0x5F, 0x2F, 0x02, 0x40, 0x00, // PIN usage policy
];

/// Who may read an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// Anyone: the VSC's public area.
    Always,
    /// After the PIN: the VSC's private area.
    Pin,
}

/// The objects this card stores (SP 800-73-4 Part 1, Table 3), other than
/// the retired key certificates `5FC10D`–`5FC120` (public).
const OBJECTS: &[(u32, Access)] = &[
    (0x5F_C107, Access::Always), // Card Capability Container
    (0x5F_C102, Access::Always), // Card Holder Unique Identifier
    (0x5F_C105, Access::Always), // X.509 certificate for PIV authentication (9A)
    (0x5F_C103, Access::Pin),    // Cardholder fingerprints
    (0x5F_C106, Access::Always), // Security object
    (0x5F_C108, Access::Pin),    // Cardholder facial image
    (0x5F_C101, Access::Always), // X.509 certificate for card authentication (9E)
    (0x5F_C10A, Access::Always), // X.509 certificate for digital signature (9C)
    (0x5F_C10B, Access::Always), // X.509 certificate for key management (9D)
    (0x5F_C109, Access::Pin),    // Printed information
    (DISCOVERY, Access::Always), // Discovery object
    (0x5F_C10C, Access::Always), // Key history object
    (0x5F_C121, Access::Pin),    // Cardholder iris images
    (0x5F_C122, Access::Always), // Secure messaging certificate signer
];

fn access(tag: u32) -> Option<Access> {
    if is_retired_certificate(tag) {
        return Some(Access::Always);
    }
    OBJECTS.iter().find(|(t, _)| *t == tag).map(|(_, a)| *a)
}

/// A tag list `5C L tag` naming one object (1 to 3 tag bytes).
fn tag_list(t: &TlvRef<'_>) -> Result<u32, StatusWord> {
    if t.tag != tag!(0x5C) || t.value.is_empty() || t.value.len() > 3 {
        return Err(StatusWord::IncorrectData);
    }
    Ok(t.value.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
}

fn check_p1p2(cmd: &CommandApdu) -> Result<(), StatusWord> {
    if (cmd.p1(), cmd.p2()) == (0x3F, 0xFF) {
        Ok(())
    } else {
        Err(StatusWord::IncorrectP1P2)
    }
}

/// GET DATA: which object.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct GetData {
    tag: u32,
}

impl TryFrom<&CommandApdu> for GetData {
    type Error = StatusWord;

    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        check_p1p2(cmd)?;
        if cmd.data().is_empty() {
            return Err(StatusWord::WrongLength);
        }
        let list = TlvRef::parse_single(cmd.data()).map_err(|_| StatusWord::IncorrectData)?;
        Ok(GetData {
            tag: tag_list(&list)?,
        })
    }
}

pub(super) fn get_data(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
    let GetData { tag } = GetData::try_from(cmd)?;
    let access = access(tag).ok_or(StatusWord::FileNotFound)?;
    let id = ObjectId::Piv(tag);
    let vsc = ctx.store.vsc();
    let value = match access {
        Access::Always => vsc.public_area().get(&id),
        Access::Pin => {
            // The PIN first: an absent protected object is not revealed.
            if !ctx.security.pin_verified {
                return Err(StatusWord::SecurityStatusNotSatisfied);
            }
            vsc.private_area().get(&id)
        }
    };
    let reply = match (tag, value) {
        (DISCOVERY, Some(v)) => Tlv::new(tag!(0x7E), v.clone()),
        (DISCOVERY, None) => Tlv::new(tag!(0x7E), DEFAULT_DISCOVERY.to_vec()),
        (_, Some(v)) => Tlv::new(tag!(0x53), v.clone()),
        (_, None) => return Err(StatusWord::FileNotFound),
    };
    Ok(ResponseApdu::success(reply.to_bytes()))
}

/// PUT DATA: which object and its new value (empty: delete).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct PutData {
    tag: u32,
    value: Vec<u8>,
}

impl TryFrom<&CommandApdu> for PutData {
    type Error = StatusWord;

    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        check_p1p2(cmd)?;
        if cmd.data().is_empty() {
            return Err(StatusWord::WrongLength);
        }
        let parts = TlvRef::parse_all(cmd.data()).map_err(|_| StatusWord::IncorrectData)?;
        let (tag, value) = match parts.as_slice() {
            // SP 800-73-4: the Discovery object is sent as itself.
            [object] if object.tag == tag!(0x7E) => (DISCOVERY, object.value),
            [list, object] => {
                let tag = tag_list(list)?;
                let wrapper_ok = object.tag == tag!(0x53) || (tag == DISCOVERY && object.tag == tag!(0x7E));
                if !wrapper_ok {
                    return Err(StatusWord::IncorrectData);
                }
                (tag, object.value)
            }
            _ => return Err(StatusWord::IncorrectData),
        };
        if access(tag).is_none() {
            return Err(StatusWord::FileNotFound);
        }
        if value.len() > MAX_OBJECT_LEN {
            return Err(StatusWord::NotEnoughMemory);
        }
        if tag == DISCOVERY && !value.is_empty() && !names_piv(value) {
            return Err(StatusWord::IncorrectData);
        }
        Ok(PutData {
            tag,
            value: value.to_vec(),
        })
    }
}

/// Whether a Discovery object's value starts its `4F` with the PIV AID.
fn names_piv(value: &[u8]) -> bool {
    let Ok(objects) = TlvRef::parse_all(value) else {
        return false;
    };
    let prefix = PIV_AID.get(..PIV_AID_PREFIX_LEN).unwrap_or(PIV_AID);
    objects
        .iter()
        .any(|o| o.tag == tag!(0x4F) && o.value.starts_with(prefix))
}

pub(super) fn put_data(
    vol: &mut Volatile,
    ctx: &mut Ctx<'_>,
    cmd: &CommandApdu,
) -> Result<ResponseApdu, StatusWord> {
    let PutData { tag, value } = PutData::try_from(cmd)?;
    if !vol.administrator(ctx) {
        return Err(StatusWord::SecurityStatusNotSatisfied);
    }
    let id = ObjectId::Piv(tag);
    let private = access(tag) == Some(Access::Pin);
    let vsc = ctx.store.vsc_mut();
    if value.is_empty() {
        if private {
            vsc.remove_private(&id);
        } else {
            vsc.remove_public(&id);
        }
    } else {
        let object = DataObject::new(id, value);
        let stored = if private {
            vsc.put_private(object)
        } else {
            vsc.put_public(object)
        };
        stored.map_err(|_| StatusWord::MemoryFailure)?;
    }
    Ok(ResponseApdu::status(StatusWord::Success))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(ins: u8, hex_data: &str) -> CommandApdu {
        CommandApdu::new(0x00, ins, 0x3F, 0xFF)
            .with_data(hex::decode(hex_data.replace(' ', "")).unwrap())
            .unwrap()
    }

    #[test]
    fn get_data_forms() {
        assert_eq!(
            GetData::try_from(&cmd(0xCB, "5C 03 5F C1 05")),
            Ok(GetData { tag: 0x5FC105 })
        );
        assert_eq!(
            GetData::try_from(&cmd(0xCB, "5C 01 7E")),
            Ok(GetData { tag: 0x7E })
        );
        assert_eq!(
            GetData::try_from(&cmd(0xCB, "5C 04 5F C1 05 00")),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(
            GetData::try_from(&cmd(0xCB, "5C 03 5F C1")),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(
            GetData::try_from(&cmd(0xCB, "53 01 7E")),
            Err(StatusWord::IncorrectData)
        );
        let wrong_p = CommandApdu::new(0x00, 0xCB, 0x3F, 0x00)
            .with_data(vec![0x5C, 0x01, 0x7E])
            .unwrap();
        assert_eq!(GetData::try_from(&wrong_p), Err(StatusWord::IncorrectP1P2));
    }

    #[test]
    fn put_data_forms() {
        let p = PutData::try_from(&cmd(0xDB, "5C 03 5F C1 02 53 02 AA BB")).unwrap();
        assert_eq!((p.tag, p.value.as_slice()), (0x5FC102, &[0xAA, 0xBB][..]));
        let p = PutData::try_from(&cmd(0xDB, "5C 03 5F C1 02 53 00")).unwrap();
        assert!(p.value.is_empty());
        let disc = hex::encode(DEFAULT_DISCOVERY);
        for form in [
            format!("7E 12 {disc}"),
            format!("5C 01 7E 7E 12 {disc}"),
            format!("5C 01 7E 53 12 {disc}"),
        ] {
            let p = PutData::try_from(&cmd(0xDB, &form)).unwrap();
            assert_eq!((p.tag, p.value.as_slice()), (DISCOVERY, &DEFAULT_DISCOVERY[..]));
        }
        assert_eq!(
            PutData::try_from(&cmd(0xDB, "7E 03 4F 01 A0")),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(
            PutData::try_from(&cmd(0xDB, "5C 03 5F FF 00 53 00")),
            Err(StatusWord::FileNotFound)
        );
        assert_eq!(
            PutData::try_from(&cmd(0xDB, "5C 03 5F C1 02 54 00")),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(
            PutData::try_from(&cmd(0xDB, "5C 03 5F C1 02")),
            Err(StatusWord::IncorrectData)
        );
        assert_eq!(
            PutData::try_from(&cmd(0xDB, "5C 03 5F C1 02 53 05 00")),
            Err(StatusWord::IncorrectData)
        );
    }
}
