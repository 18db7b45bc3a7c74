//! What the ISD tells about the card: the FCI of SELECT, card recognition
//! data and GET DATA (Card Specification §11.3, §11.9.3, Appendix H).

use crate::codec::{CommandApdu, ResponseApdu, StatusWord, Tag, Tlv};
use crate::file::ObjectId;
use crate::scp03::{CardOptions, SCP03_ID};
use crate::tag;

use super::super::app::Ctx;
use super::super::gp_state;
use super::super::identity::CPLC_TAG;
use super::super::ISD_AID;

/// `{globalPlatform}` = 1.2.840.114283, DER-encoded.
const GP_OID: [u8; 6] = [0x2A, 0x86, 0x48, 0x86, 0xFC, 0x6B];
/// The GlobalPlatform Card Specification version this card follows:
/// `{globalPlatform 2 2 3 1}` is version 2.3.1 (Appendix H, note 2).
const GP_VERSION: [u8; 4] = [0x02, 0x02, 0x03, 0x01];

/// Tag of the card data (card recognition data inside).
pub const CARD_DATA: u32 = 0x66;
/// Tag of the key information template.
pub const KEY_INFORMATION: u32 = 0xE0;
/// Tag of the sequence counter of the default key set.
pub const SEQUENCE_COUNTER: u32 = 0xC1;
/// Tag of the key diversification data.
pub const KDD: u32 = 0xCF;

fn oid(suffix: &[u8]) -> Tlv {
    Tlv::new(tag!(0x06), [&GP_OID[..], suffix].concat())
}

/// Card recognition data (Table H-1): `73{06 {gp 1}, 60{06 {gp 2 2 3 1}},
/// 63{06 {gp 3}}, 64{06 {gp 4 03 i}}}`, with `i` the card's SCP03 options
/// (`70`: pseudo-random challenge, R-MAC, R-ENCRYPTION).
pub fn card_recognition_data() -> Tlv {
    let i = CardOptions::default().i_param();
    Tlv::constructed(
        tag!(0x73),
        &[
            oid(&[0x01]),
            Tlv::constructed(tag!(0x60), &[oid(&GP_VERSION)]),
            Tlv::constructed(tag!(0x63), &[oid(&[0x03])]),
            Tlv::constructed(tag!(0x64), &[oid(&[0x04, SCP03_ID, i])]),
        ],
    )
}

/// The FCI of the ISD (Table 11-82): `6F{84 AID, A5{73 …, 9F65 01 FF}}`.
/// The security domain management data (`73`) is the card recognition
/// data; the largest command data field announced is 255 bytes.
pub fn fci() -> Tlv {
    Tlv::constructed(
        tag!(0x6F),
        &[
            Tlv::new(tag!(0x84), ISD_AID),
            Tlv::constructed(
                tag!(0xA5),
                &[card_recognition_data(), Tlv::new(tag!(0x9F65), [0xFF])],
            ),
        ],
    )
}

/// GET DATA (`80 CA` / `00 CA`, P1-P2 the tag; P1 = `00` for a one-byte tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetData {
    pub tag: Tag,
    /// CLA `8x`: the answer is the whole TLV; `0x`: only its value
    /// (§11.3.3.1).
    pub whole_tlv: bool,
}

impl TryFrom<&CommandApdu> for GetData {
    type Error = StatusWord;

    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        let raw = u32::from(u16::from_be_bytes([cmd.p1(), cmd.p2()]));
        let tag = Tag::new(raw).map_err(|_| StatusWord::ReferencedDataNotFound)?;
        Ok(GetData {
            tag,
            whole_tlv: cmd.cla() & 0x80 != 0,
        })
    }
}

/// The key information template's value: `C0 04 KID KVN 88 len` for each
/// key of each stored key set (Table 11-28, basic structure).
fn key_information(ctx: &Ctx<'_>) -> Result<Vec<u8>, StatusWord> {
    let sets = gp_state::keysets(ctx.store.vsc()).map_err(|_| StatusWord::NoPreciseDiagnosis)?;
    let mut out = Vec::new();
    for s in &sets {
        // An AES key is 16, 24 or 32 bytes: the cast cannot truncate.
        let len = s.set.keys.key_len().bytes() as u8;
        for kid in [gp_state::KID_ENC, gp_state::KID_MAC, gp_state::KID_DEK] {
            Tlv::new(tag!(0xC0), [kid, s.set.kvn, crate::scp03::KEY_TYPE_AES, len]).write(&mut out);
        }
    }
    Ok(out)
}

/// GET DATA: CPLC `9F7F`, card data `66`, key information `E0`, sequence
/// counter `C1` (of the default key set, 3 bytes), KDD `CF`, and any data
/// object STORE DATA put in the ISD (`42` IIN, `45` CIN, …). Anything else:
/// `6A88`.
pub fn get_data(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
    let gd = GetData::try_from(cmd)?;
    let raw = gd.tag.raw();
    let stored = |t: u32| ctx.store.vsc().public_area().get(&ObjectId::Gp(t)).cloned();
    let value = match raw {
        CPLC_TAG => ctx.identity.cplc().to_vec(),
        CARD_DATA => stored(CARD_DATA).unwrap_or_else(|| card_recognition_data().to_bytes()),
        KEY_INFORMATION => key_information(ctx)?,
        SEQUENCE_COUNTER => {
            let sets =
                gp_state::usable_keysets(ctx.store.vsc()).map_err(|_| StatusWord::NoPreciseDiagnosis)?;
            let first = sets.first().ok_or(StatusWord::ReferencedDataNotFound)?;
            let [_, a, b, c] = first.set.sequence_counter.to_be_bytes();
            vec![a, b, c]
        }
        KDD => ctx.identity.kdd().to_vec(),
        other => stored(other).ok_or(StatusWord::ReferencedDataNotFound)?,
    };
    Ok(ResponseApdu::success(if gd.whole_tlv {
        Tlv::new(gd.tag, value).to_bytes()
    } else {
        value
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn recognition_data_names_gp_2_3_1_and_scp03_i70() {
        let hex = hex::encode_upper(card_recognition_data().to_bytes());
        assert_eq!(
            hex,
            "732F\
             06072A864886FC6B01\
             600C060A2A864886FC6B02020301\
             630906072A864886FC6B03\
             640B06092A864886FC6B040370"
        );
    }

    #[test]
    fn fci_layout() {
        let fci = fci().to_bytes();
        assert_eq!(
            &fci[..12],
            &hex::decode("6F41 8408A000000151000000".replace(' ', "")).unwrap()[..]
        );
        assert!(hex::encode_upper(&fci).ends_with("9F6501FF"));
    }
}
