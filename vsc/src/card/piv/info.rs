//! What the card says about itself: the application property template
//! (SELECT), GET VERSION (`FD`), GET SERIAL (`F8`), GET METADATA (`F7`).

use crate::codec::{CommandApdu, ResponseApdu, StatusWord, Tlv};
use crate::file::{KeyOrigin, KeyRef, PasswordRef, TouchPolicy};
use crate::secret::SecretBytes;
use crate::tag;

use super::super::app::Ctx;
use super::super::blank::{DEFAULT_PIN, DEFAULT_PUK};
use super::keys::PivKey;
use super::management;
use super::slots::{KeySlot, MANAGEMENT_KEY};
use super::PIV_AID;

/// The version GET VERSION reports: 5.4.3, chosen for what the tools do
/// with it. yubico-piv-tool reads the serial with GET SERIAL from version 5
/// on (below 5 it selects a Yubico OTP applet this card does not have);
/// below 4.3.5 it takes the ROCA warning path before RSA generation; from
/// 5.7 on it (and OpenSC, for YubiKey-like cards) expects RSA-3072/4096 and
/// Ed25519/X25519, which this card does not have.
pub const VERSION: [u8; 3] = [5, 4, 3];

/// The PIX of the PIV application: the AID after its 5-byte RID.
const PIX_START: usize = 5;
/// The PIV RID.
const RID_LEN: usize = 5;

/// The application property template SELECT answers with:
/// `61 {4F PIX, 79 {4F RID}}` — the PIX `00 00 10 00 01 00` (OpenSC accepts
/// a PIX beginning `00 00 10 00`) and the coexistent tag allocation
/// authority, the NIST RID. No `AC` algorithm list: OpenSC then assumes the
/// NIST algorithms, and a `27`/`2E` entry would start PIV secure messaging.
pub(super) fn application_property_template() -> Vec<u8> {
    let pix = PIV_AID.get(PIX_START..).unwrap_or_default();
    let rid = PIV_AID.get(..RID_LEN).unwrap_or_default();
    Tlv::constructed(
        tag!(0x61),
        &[
            Tlv::new(tag!(0x4F), pix.to_vec()),
            Tlv::constructed(tag!(0x79), &[Tlv::new(tag!(0x4F), rid.to_vec())]),
        ],
    )
    .to_bytes()
}

/// GET VERSION: three bytes. P1, P2 and data are ignored, as YubiKeys do.
pub(super) fn version() -> ResponseApdu {
    ResponseApdu::success(VERSION.to_vec())
}

/// GET SERIAL: the chip serial, four bytes big-endian.
pub(super) fn serial(ctx: &Ctx<'_>) -> ResponseApdu {
    ResponseApdu::success(ctx.identity.serial().to_be_bytes().to_vec())
}

/// What GET METADATA asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum MetadataOf {
    ManagementKey,
    Password(PasswordRef),
    Slot(KeySlot),
}

impl TryFrom<&CommandApdu> for MetadataOf {
    type Error = StatusWord;

    fn try_from(cmd: &CommandApdu) -> Result<Self, StatusWord> {
        if cmd.p1() != 0x00 {
            return Err(StatusWord::IncorrectP1P2);
        }
        match cmd.p2() {
            MANAGEMENT_KEY => Ok(MetadataOf::ManagementKey),
            0x80 => Ok(MetadataOf::Password(PasswordRef::Pin)),
            0x81 => Ok(MetadataOf::Password(PasswordRef::Puk)),
            other => KeySlot::from_reference(other)
                .map(MetadataOf::Slot)
                .ok_or(StatusWord::IncorrectP1P2),
        }
    }
}

/// A touch policy as the metadata reports it: a software card never asks
/// for a touch, so "default" is "never".
fn touch_byte(t: TouchPolicy) -> u8 {
    match t {
        TouchPolicy::Default => TouchPolicy::Never.to_byte(),
        other => other.to_byte(),
    }
}

/// GET METADATA (Yubico, INS `F7`), in YubiKey 5.3's format:
///
/// - `9B`: `01` algorithm, `02` policy (PIN, touch), `05` default key?;
/// - `80`/`81`: `01` `FF`, `05` default value?, `06` (tries total, left);
/// - key slots: `01` algorithm, `02` policy (PIN, touch), `03` origin (`01`
///   generated on the card, `02` imported), `04` public key (RSA `81` n
///   `82` e; EC `86` point). An empty slot answers `6A88`.
pub(super) fn metadata(ctx: &Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
    let vsc = ctx.store.vsc();
    let fields = match MetadataOf::try_from(cmd)? {
        MetadataOf::ManagementKey => {
            let entry = vsc
                .secret_key(&KeyRef::PivSlot(MANAGEMENT_KEY))
                .ok_or(StatusWord::ReferencedDataNotFound)?;
            vec![
                Tlv::new(tag!(0x01), vec![entry.algorithm.to_byte()]),
                Tlv::new(tag!(0x02), vec![0x00, touch_byte(entry.attributes.touch_policy)]),
                Tlv::new(tag!(0x05), vec![u8::from(management::is_default(entry))]),
            ]
        }
        MetadataOf::Password(which) => {
            let entry = vsc.password(which).ok_or(StatusWord::ReferencedDataNotFound)?;
            let default = match which {
                PasswordRef::Puk => DEFAULT_PUK,
                _ => DEFAULT_PIN,
            };
            vec![
                Tlv::new(tag!(0x01), vec![0xFF]),
                Tlv::new(
                    tag!(0x05),
                    vec![u8::from(entry.check(&SecretBytes::from_slice(default)))],
                ),
                Tlv::new(tag!(0x06), vec![entry.max_retries(), entry.retries_left()]),
            ]
        }
        MetadataOf::Slot(slot) => {
            let entry = vsc
                .secret_key(&slot.key_ref())
                .ok_or(StatusWord::ReferencedDataNotFound)?;
            let key = PivKey::load(entry).map_err(|e| e.status_word())?;
            let mut public = Vec::new();
            for object in key.public_objects() {
                object.write(&mut public);
            }
            let origin = match entry.attributes.origin {
                KeyOrigin::GeneratedOnCard => 0x01,
                KeyOrigin::Imported | KeyOrigin::GeneratedOnMaster => 0x02,
            };
            let pin = slot.effective_pin_policy(entry.attributes.pin_policy).to_byte();
            vec![
                Tlv::new(tag!(0x01), vec![entry.algorithm.to_byte()]),
                Tlv::new(tag!(0x02), vec![pin, touch_byte(entry.attributes.touch_policy)]),
                Tlv::new(tag!(0x03), vec![origin]),
                Tlv::new(tag!(0x04), public),
            ]
        }
    };
    let mut out = Vec::new();
    for f in fields {
        f.write(&mut out);
    }
    Ok(ResponseApdu::success(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_is_the_yubikey_one() {
        // docs.yubico.com (reference §C): 61 11 4F 06 000010000100 79 07 4F 05 A000000308.
        assert_eq!(
            hex::encode_upper(application_property_template()),
            "61114F0600001000010079074F05A000000308"
        );
    }
}
