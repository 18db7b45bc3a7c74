//! Who a card is: its chip serial, CPLC, key diversification data and ATR.
//!
//! A software card keeps these in its VSC's public area, written once when
//! the card stock is made:
//!
//! | object                 | content                                 |
//! |------------------------|-----------------------------------------|
//! | `GP 9F7F`              | the 42-byte CPLC (Card Production Life Cycle) |
//! | `"card/serial"`        | the chip serial, u32 big-endian          |
//! | `"card/atr"`           | the ATR                                  |
//!
//! The chip serial is the CPLC's IC serial number. The key diversification
//! data (KDD) a card returns in INITIALIZE UPDATE is built from the CPLC:
//! IC fabricator (2) ‖ IC type (2) ‖ IC batch identifier (2) ‖ IC serial
//! number (4); the keyserver derives the card's static keys from it.

use crate::file::{DataObject, ObjectId, Vsc};

use super::CardError;

/// The ATR of Cardsmith's software card.
///
/// `3B` direct convention; `F9`: TA1, TB1, TC1, TD1 follow, 9 historical
/// bytes (ykman uses extended APDUs when `ATR[1] & F0 == F0`); `96` TA1;
/// `00 00` TB1 TC1; `81` TD1: TD2 follows, T=1; `31` TD2: TA3 TB3 follow,
/// T=1; `FE` IFSC 254; `45` BWI/CWI; historical bytes `80` (compact-TLV
/// category) `57` (issuer data, 7 bytes) "CSMITH1"; then TCK. It matches no
/// ATR table entry of OpenSC, so OpenSC finds the card by its PIV SELECT.
pub const DEFAULT_ATR: [u8; 19] = atr_with_tck([
    0x3B, 0xF9, 0x96, 0x00, 0x00, 0x81, 0x31, 0xFE, 0x45, 0x80, 0x57, b'C', b'S', b'M', b'I', b'T', b'H',
    b'1', 0x00,
]);

/// Fills in the TCK: the XOR of every byte from T0 to the last historical
/// byte must be zero.
const fn atr_with_tck(mut atr: [u8; 19]) -> [u8; 19] {
    let mut x = 0u8;
    let mut i = 1;
    while i < 18 {
        x ^= atr[i];
        i += 1;
    }
    atr[18] = x;
    atr
}

/// Length of the CPLC data.
pub const CPLC_LEN: usize = 42;

const FABRICATOR: [u8; 2] = *b"CS";
const IC_TYPE: [u8; 2] = [0x00, 0x01];
const BATCH: [u8; 2] = [0x00, 0x01];
/// A date in the CPLC's YDDD form (year digit, day of year).
const DATE: [u8; 2] = [0x63, 0x26];

const SERIAL_OBJECT: &str = "card/serial";
const ATR_OBJECT: &str = "card/atr";
/// The CPLC's GlobalPlatform tag.
pub const CPLC_TAG: u32 = 0x9F7F;

/// A card's identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardIdentity {
    serial: u32,
    cplc: [u8; CPLC_LEN],
    atr: Vec<u8>,
}

impl CardIdentity {
    /// The identity of a new software chip with this serial number.
    pub fn new(serial: u32) -> Self {
        let mut cplc = [0u8; CPLC_LEN];
        let fields: [(usize, &[u8]); 13] = [
            (0, &FABRICATOR),            // IC fabricator
            (2, &IC_TYPE),               // IC type
            (4, &FABRICATOR),            // operating system identifier
            (6, &DATE),                  // operating system release date
            (8, &[0x01, 0x00]),          // operating system release level
            (10, &DATE),                 // IC fabrication date
            (12, &serial.to_be_bytes()), // IC serial number
            (16, &BATCH),                // IC batch identifier
            (18, &FABRICATOR),           // IC module fabricator
            (20, &DATE),                 // IC module packaging date
            (22, &FABRICATOR),           // ICC manufacturer
            (24, &DATE),                 // IC embedding date
            (26, &FABRICATOR),           // IC pre-personalizer
        ];
        for (at, value) in fields {
            if let Some(dst) = cplc.get_mut(at..at + value.len()) {
                dst.copy_from_slice(value);
            }
        }
        CardIdentity {
            serial,
            cplc,
            atr: DEFAULT_ATR.to_vec(),
        }
    }

    /// The identity of a chip read from the chip itself: its CPLC (GET DATA
    /// `9F7F`, the 42 bytes without the tag) and its ATR. The serial is the
    /// CPLC's IC serial number. A CPLC that is not 42 bytes, or an ATR that
    /// is not 2 to 33 bytes, is refused.
    pub fn from_cplc(cplc: &[u8], atr: &[u8]) -> Result<Self, CardError> {
        let cplc: [u8; CPLC_LEN] = cplc
            .try_into()
            .map_err(|_| CardError::NotACard("a 42-byte CPLC (GP 9F7F)"))?;
        let serial = cplc
            .get(12..16)
            .and_then(|s| <[u8; 4]>::try_from(s).ok())
            .map(u32::from_be_bytes)
            .ok_or(CardError::NotACard("a 42-byte CPLC (GP 9F7F)"))?;
        if !(2..=33).contains(&atr.len()) {
            return Err(CardError::NotACard("an ATR of 2 to 33 bytes"));
        }
        Ok(CardIdentity {
            serial,
            cplc,
            atr: atr.to_vec(),
        })
    }

    /// The chip serial number.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// The serial as it is printed: eight decimal digits.
    pub fn serial_text(&self) -> String {
        format!("{:08}", self.serial)
    }

    /// The 42 CPLC bytes.
    pub fn cplc(&self) -> &[u8; CPLC_LEN] {
        &self.cplc
    }

    pub fn atr(&self) -> &[u8] {
        &self.atr
    }

    /// The key diversification data returned by INITIALIZE UPDATE.
    pub fn kdd(&self) -> [u8; 10] {
        let mut kdd = [0u8; 10];
        let c = &self.cplc;
        let parts: [&[u8]; 3] = [
            c.get(0..4).unwrap_or(&[0; 4]),
            c.get(16..18).unwrap_or(&[0; 2]),
            c.get(12..16).unwrap_or(&[0; 4]),
        ];
        let mut at = 0;
        for p in parts {
            if let Some(dst) = kdd.get_mut(at..at + p.len()) {
                dst.copy_from_slice(p);
            }
            at += p.len();
        }
        kdd
    }

    /// Writes the identity into a VSC's public area.
    pub fn store(&self, vsc: &mut Vsc) -> Result<(), CardError> {
        vsc.put_public(DataObject::new(ObjectId::Gp(CPLC_TAG), self.cplc.to_vec()))?;
        vsc.put_public(DataObject::new(
            ObjectId::Named(SERIAL_OBJECT.into()),
            self.serial.to_be_bytes().to_vec(),
        ))?;
        vsc.put_public(DataObject::new(
            ObjectId::Named(ATR_OBJECT.into()),
            self.atr.clone(),
        ))?;
        Ok(())
    }

    /// Reads the identity a VSC's public area holds.
    pub fn load(vsc: &Vsc) -> Result<Self, CardError> {
        let public = vsc.public_area();
        let missing = |what: &'static str| CardError::NotACard(what);
        let cplc: [u8; CPLC_LEN] = public
            .get(&ObjectId::Gp(CPLC_TAG))
            .and_then(|v| v.as_slice().try_into().ok())
            .ok_or(missing("a 42-byte CPLC (GP 9F7F)"))?;
        let serial = public
            .get(&ObjectId::Named(SERIAL_OBJECT.into()))
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .map(u32::from_be_bytes)
            .ok_or(missing("a chip serial (\"card/serial\")"))?;
        let atr = public
            .get(&ObjectId::Named(ATR_OBJECT.into()))
            .filter(|a| (2..=33).contains(&a.len()))
            .cloned()
            .ok_or(missing("an ATR (\"card/atr\")"))?;
        Ok(CardIdentity { serial, cplc, atr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atr_checksum_is_zero() {
        let x = DEFAULT_ATR.iter().skip(1).fold(0u8, |a, b| a ^ b);
        assert_eq!(x, 0);
        assert_eq!(DEFAULT_ATR[1] & 0xF0, 0xF0);
        assert_eq!(usize::from(DEFAULT_ATR[1] & 0x0F), 9);
    }

    #[test]
    fn from_cplc_reads_what_new_wrote() {
        let id = CardIdentity::new(0x0102_0304);
        let again = CardIdentity::from_cplc(id.cplc(), id.atr()).unwrap();
        assert_eq!(again, id);
        assert_eq!(again.kdd(), id.kdd());
        let other_atr = CardIdentity::from_cplc(id.cplc(), &[0x3B, 0x00]).unwrap();
        assert_eq!(other_atr.atr(), &[0x3B, 0x00]);
        assert_eq!(other_atr.serial(), 0x0102_0304);
    }

    #[test]
    fn from_cplc_refuses_wrong_lengths() {
        let id = CardIdentity::new(7);
        assert!(CardIdentity::from_cplc(&id.cplc()[..41], id.atr()).is_err());
        assert!(CardIdentity::from_cplc(&[0; 43], id.atr()).is_err());
        assert!(CardIdentity::from_cplc(id.cplc(), &[0x3B]).is_err());
        assert!(CardIdentity::from_cplc(id.cplc(), &[0x3B; 34]).is_err());
    }

    #[test]
    fn serial_sits_in_cplc_and_kdd() {
        let id = CardIdentity::new(1079);
        assert_eq!(&id.cplc()[12..16], &1079u32.to_be_bytes());
        assert_eq!(&id.kdd()[6..10], &1079u32.to_be_bytes());
        assert_eq!(&id.kdd()[0..4], b"CS\x00\x01");
        assert_eq!(id.serial_text(), "00001079");
    }
}
