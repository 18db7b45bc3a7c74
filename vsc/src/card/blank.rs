//! Blank card stock: software chips as a card bureau receives them from the
//! manufacturer, ready to be personalized.
//!
//! A blank card is in life cycle OP_READY, holds the stock's SCP03 transport
//! key set (by default the GlobalPlatform test keys `40..4F`, key version
//! 01), an empty PIV application with the default management key (3DES
//! `0102…08` three times), PIN `123456`, PUK `12345678`, and a unique chip
//! serial with its CPLC.

use std::time::{SystemTime, UNIX_EPOCH};

use rand::{CryptoRng, RngCore};

use crate::file::{
    KeyAlgorithm, KeyAttributes, KeyOrigin, KeyRef, NewVsc, Origin, PasswordEntry, PasswordRef, PinPolicy,
    Protector, SecretKeyEntry, TouchPolicy, Vsc,
};
use crate::scp03::StaticKeys;
use crate::secret::{AesKey, SecretBytes};

use super::gp_state::{self, LifeCycle};
use super::identity::CardIdentity;
use super::CardError;

/// The GlobalPlatform test key value `40 41 … 4F`.
pub const GP_TEST_KEY: [u8; 16] = [
    0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47, 0x48, 0x49, 0x4A, 0x4B, 0x4C, 0x4D, 0x4E, 0x4F,
];

/// The PIV default management key (3DES).
pub const DEFAULT_MANAGEMENT_KEY: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];

pub const DEFAULT_PIN: &[u8] = b"123456";
pub const DEFAULT_PUK: &[u8] = b"12345678";

/// PIN and PUK: 3 tries; 6 to 8 characters (PIV pads to 8 with `FF`).
pub const PIN_RETRIES: u8 = 3;
pub const PUK_RETRIES: u8 = 3;

/// The card type a blank VSC carries in its header.
pub const BLANK_CARD_TYPE: &str = "blank";

/// What a blank card is made of.
pub struct BlankCard {
    pub serial: u32,
    /// The stock's transport key set.
    pub keys: StaticKeys,
    pub kvn: u8,
}

impl BlankCard {
    /// A blank card with the GP test keys as key set 01.
    pub fn new(serial: u32) -> Result<Self, CardError> {
        let test_key = || AesKey::from_slice(&GP_TEST_KEY).map_err(|e| CardError::Keyset(e.to_string()));
        let keys = StaticKeys::new(test_key()?, test_key()?, test_key()?)
            .map_err(|e| CardError::Keyset(e.to_string()))?;
        Ok(BlankCard {
            serial,
            keys,
            kvn: 0x01,
        })
    }

    /// The label of the card's VSC: `VSC 00001079`.
    pub fn label(&self) -> String {
        format!("VSC {:08}", self.serial)
    }

    /// Makes the card's VSC, protected by `protector`: a software chip
    /// (origin `Chip`, type `blank`) with a new identity for the serial.
    pub fn build(
        &self,
        protector: &Protector,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Vsc, CardError> {
        let identity = CardIdentity::new(self.serial);
        BlankSpec {
            identity: &identity,
            keys: &self.keys,
            kvn: self.kvn,
            origin: Origin::Chip,
            card_type: BLANK_CARD_TYPE,
        }
        .build(protector, rng)
    }
}

/// A blank card for a chip that exists already: its identity (CPLC, ATR)
/// read from the chip, the stock's transport key set, and what the VSC is
/// for. The keyserver builds a card's master VSC from this: the same blank
/// the chip is, labelled `VSC <serial>`, with the chip serial recorded,
/// then personalized with the same commands as the chip.
pub struct BlankSpec<'a> {
    pub identity: &'a CardIdentity,
    /// The stock's transport key set and its key version number.
    pub keys: &'a StaticKeys,
    pub kvn: u8,
    /// `Chip` for card stock; `Master` for a keyserver's master VSC.
    pub origin: Origin,
    /// The VSC's card type: `blank`, or the issuance profile's id.
    pub card_type: &'a str,
}

impl BlankSpec<'_> {
    /// The label of the card's VSC: `VSC 00001079`.
    pub fn label(&self) -> String {
        format!("VSC {}", self.identity.serial_text())
    }

    /// Makes the VSC, protected by `protector`: OP_READY, the transport key
    /// set, PIN `123456`, PUK `12345678`, the default 3DES management key.
    pub fn build(
        &self,
        protector: &Protector,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Vsc, CardError> {
        let serial = self.identity.serial();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut fields = NewVsc::new(self.label(), self.card_type, now);
        fields.origin = self.origin;
        fields.chip_serials = vec![serial.to_be_bytes().to_vec()];
        let mut vsc = Vsc::create(fields, protector, rng)?;
        self.identity.store(&mut vsc)?;
        gp_state::put_keyset(&mut vsc, self.kvn, self.keys, true)?;
        gp_state::set_life_cycle(&mut vsc, LifeCycle::OpReady)?;
        let pin = PasswordEntry::new(
            PasswordRef::Pin,
            &SecretBytes::from_slice(DEFAULT_PIN),
            PIN_RETRIES,
            6,
            8,
            rng,
        )?;
        let puk = PasswordEntry::new(
            PasswordRef::Puk,
            &SecretBytes::from_slice(DEFAULT_PUK),
            PUK_RETRIES,
            6,
            8,
            rng,
        )?;
        vsc.put_password(pin);
        vsc.put_password(puk);
        vsc.put_secret_key(SecretKeyEntry::new(
            KeyRef::PivSlot(0x9B),
            KeyAlgorithm::Tdes,
            SecretBytes::from_slice(&DEFAULT_MANAGEMENT_KEY),
            KeyAttributes {
                origin: KeyOrigin::Imported,
                pin_policy: PinPolicy::Default,
                touch_policy: TouchPolicy::Default,
            },
        )?);
        Ok(vsc)
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::card::SoftCard;

    fn kek() -> Protector {
        Protector::Kek {
            key_id: "archive/1".into(),
            key: AesKey::from_slice(&[3; 32]).unwrap(),
        }
    }

    #[test]
    fn a_master_blank_has_the_chips_identity_and_says_what_it_is() {
        let chip =
            CardIdentity::from_cplc(CardIdentity::new(1079).cplc(), &[0x3B, 0x80, 0x80, 0x01, 0x01]).unwrap();
        let stock = BlankCard::new(1).unwrap();
        let spec = BlankSpec {
            identity: &chip,
            keys: &stock.keys,
            kvn: 0x01,
            origin: Origin::Master,
            card_type: "employee-badge",
        };
        let vsc = spec.build(&kek(), &mut StdRng::seed_from_u64(1)).unwrap();
        let h = vsc.header();
        assert_eq!(h.label, "VSC 00001079");
        assert_eq!(h.card_type, "employee-badge");
        assert_eq!(h.attributes.origin, Origin::Master);
        assert_eq!(h.attributes.chip_serials, vec![1079u32.to_be_bytes().to_vec()]);
        let card = SoftCard::new(vsc).unwrap();
        assert_eq!(card.identity(), &chip);
        assert_eq!(card.life_cycle(), LifeCycle::OpReady);
    }

    #[test]
    fn build_is_a_chip_blank() {
        let vsc = BlankCard::new(42)
            .unwrap()
            .build(&kek(), &mut StdRng::seed_from_u64(2))
            .unwrap();
        assert_eq!(vsc.header().attributes.origin, Origin::Chip);
        assert_eq!(vsc.header().card_type, BLANK_CARD_TYPE);
        assert_eq!(vsc.header().label, "VSC 00000042");
        assert_eq!(CardIdentity::load(&vsc).unwrap(), CardIdentity::new(42));
    }
}
