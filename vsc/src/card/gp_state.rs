//! The GlobalPlatform state a software card keeps in its VSC: SCP03 key
//! sets with their sequence counters, and the card life cycle.
//!
//! | where            | object                              | content                 |
//! |------------------|-------------------------------------|-------------------------|
//! | secret key area  | `Scp03 { kvn, kid: 1/2/3 }`         | Key-ENC, Key-MAC, Key-DEK (AES) |
//! | public area      | `"gp/scp03/<kvn>/sequence-counter"` | u24 big-endian          |
//! | public area      | `"gp/scp03/<kvn>/factory"`          | `01`: the card stock's transport keys |
//! | public area      | `"gp/life-cycle"`                   | the card life cycle byte |
//! | public area      | `GP <tag>`                          | ISD data from STORE DATA (BER-TLV, or inside DGI `0070`): the value |
//! | public area      | `"gp/dgi/<DGI>"`                    | ISD data from STORE DATA in any other DGI: the value |

use std::collections::BTreeMap;

use crate::file::{
    DataObject, KeyAlgorithm, KeyAttributes, KeyOrigin, KeyRef, ObjectId, PinPolicy, SecretKeyEntry,
    TouchPolicy, Vsc,
};
use crate::scp03::{CardKeySet, StaticKeys};
use crate::secret::{AesKey, AesKeyLen, SecretBytes};

use super::CardError;

/// Key identifiers within a key set (Amd D §7.1.1).
pub const KID_ENC: u8 = 1;
pub const KID_MAC: u8 = 2;
pub const KID_DEK: u8 = 3;

/// The card life cycle (Card Specification §5.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifeCycle {
    OpReady,
    Initialized,
    Secured,
    CardLocked,
    Terminated,
    /// A value this card does not know, kept.
    Other(u8),
}

impl LifeCycle {
    /// Whether SET STATUS may take the card from `self` to `to`
    /// (Card Specification §5.1.1, Figure 5-1): OP_READY → INITIALIZED →
    /// SECURED, each irreversible (INITIALIZED may be skipped); SECURED ⇄
    /// CARD_LOCKED; any state but TERMINATED → TERMINATED. Staying in the
    /// same state is not a transition.
    pub fn may_become(self, to: LifeCycle) -> bool {
        use LifeCycle::*;
        match (self, to) {
            (Terminated, _) => false,
            (_, Terminated) => true,
            (OpReady, Initialized | Secured) => true,
            (Initialized, Secured) => true,
            (Secured, CardLocked) | (CardLocked, Secured) => true,
            _ => false,
        }
    }

    /// Whether the card content (keys, ISD data, files) may change: not in
    /// CARD_LOCKED, TERMINATED or a state this card does not know.
    pub fn allows_content_changes(self) -> bool {
        matches!(
            self,
            LifeCycle::OpReady | LifeCycle::Initialized | LifeCycle::Secured
        )
    }

    /// The pre-issuance states, in which the issuer personalizes the card.
    pub fn is_pre_issuance(self) -> bool {
        matches!(self, LifeCycle::OpReady | LifeCycle::Initialized)
    }

    pub fn to_byte(self) -> u8 {
        match self {
            LifeCycle::OpReady => 0x01,
            LifeCycle::Initialized => 0x07,
            LifeCycle::Secured => 0x0F,
            LifeCycle::CardLocked => 0x7F,
            LifeCycle::Terminated => 0xFF,
            LifeCycle::Other(b) => b,
        }
    }

    pub fn from_byte(b: u8) -> Self {
        match b {
            0x01 => LifeCycle::OpReady,
            0x07 => LifeCycle::Initialized,
            0x0F => LifeCycle::Secured,
            0x7F => LifeCycle::CardLocked,
            0xFF => LifeCycle::Terminated,
            b => LifeCycle::Other(b),
        }
    }
}

fn named(s: String) -> ObjectId {
    ObjectId::Named(s)
}

fn seq_object(kvn: u8) -> ObjectId {
    named(format!("gp/scp03/{kvn:02X}/sequence-counter"))
}

fn factory_object(kvn: u8) -> ObjectId {
    named(format!("gp/scp03/{kvn:02X}/factory"))
}

fn life_cycle_object() -> ObjectId {
    named("gp/life-cycle".into())
}

/// The card's life cycle state (OP_READY when the VSC says nothing).
pub fn life_cycle(vsc: &Vsc) -> LifeCycle {
    vsc.public_area()
        .get(&life_cycle_object())
        .and_then(|v| v.first().copied())
        .map_or(LifeCycle::OpReady, LifeCycle::from_byte)
}

pub fn set_life_cycle(vsc: &mut Vsc, lc: LifeCycle) -> Result<(), CardError> {
    vsc.put_public(DataObject::new(life_cycle_object(), vec![lc.to_byte()]))?;
    Ok(())
}

/// Most key sets a card keeps (PUT KEY adding another answers `6A84`).
pub const MAX_KEYSETS: usize = 8;

/// The VSC object of ISD data that STORE DATA received in a DGI other than
/// `0070` (whose BER-TLV objects are stored by tag, as `ObjectId::Gp`).
pub fn dgi_object(dgi: u16) -> ObjectId {
    named(format!("gp/dgi/{dgi:04X}"))
}

/// A key set as stored, with whether it is the card stock's transport set.
pub struct StoredKeySet {
    pub set: CardKeySet,
    pub factory: bool,
}

/// Every complete key set in the VSC, by ascending KVN.
pub fn keysets(vsc: &Vsc) -> Result<Vec<StoredKeySet>, CardError> {
    let mut parts: BTreeMap<u8, [Option<AesKey>; 3]> = BTreeMap::new();
    for entry in vsc.secret_keys() {
        if let KeyRef::Scp03 { kvn, kid } = entry.id {
            let slot = parts.entry(kvn).or_default();
            let key = AesKey::from_slice(entry.material().expose_secret())
                .map_err(|e| CardError::Keyset(format!("key set {kvn:02X} key {kid}: {e}")))?;
            match kid {
                KID_ENC => slot[0] = Some(key),
                KID_MAC => slot[1] = Some(key),
                KID_DEK => slot[2] = Some(key),
                other => {
                    return Err(CardError::Keyset(format!(
                        "key set {kvn:02X}: unknown key id {other}"
                    )))
                }
            }
        }
    }
    let mut out = Vec::new();
    for (kvn, [enc, mac, dek]) in parts {
        let (Some(enc), Some(mac), Some(dek)) = (enc, mac, dek) else {
            return Err(CardError::Keyset(format!(
                "key set {kvn:02X} lacks one of ENC, MAC, DEK"
            )));
        };
        let keys = StaticKeys::new(enc, mac, dek)
            .map_err(|e| CardError::Keyset(format!("key set {kvn:02X}: {e}")))?;
        let public = vsc.public_area();
        let sequence_counter = public
            .get(&seq_object(kvn))
            .and_then(|v| <[u8; 3]>::try_from(v.as_slice()).ok())
            .map_or(0, |[a, b, c]| u32::from_be_bytes([0, a, b, c]));
        let factory = public
            .get(&factory_object(kvn))
            .is_some_and(|v| v.as_slice() == [1]);
        out.push(StoredKeySet {
            set: CardKeySet {
                kvn,
                keys,
                sequence_counter,
            },
            factory,
        });
    }
    Ok(out)
}

/// The key sets INITIALIZE UPDATE accepts, by ascending KVN: every stored
/// set, except the card stock's transport set once the card is SECURED (the
/// rule `SoftCard`'s INITIALIZE UPDATE applies). The first is the default key
/// set (KVN `00` in INITIALIZE UPDATE). A card past personalization
/// (SECURED, or CARD_LOCKED after it) refuses the stock's transport set.
pub fn usable_keysets(vsc: &Vsc) -> Result<Vec<StoredKeySet>, CardError> {
    let personalized = matches!(life_cycle(vsc), LifeCycle::Secured | LifeCycle::CardLocked);
    Ok(keysets(vsc)?
        .into_iter()
        .filter(|s| !(personalized && s.factory))
        .collect())
}

fn algorithm_of(len: AesKeyLen) -> KeyAlgorithm {
    match len {
        AesKeyLen::Aes128 => KeyAlgorithm::Aes128,
        AesKeyLen::Aes192 => KeyAlgorithm::Aes192,
        AesKeyLen::Aes256 => KeyAlgorithm::Aes256,
    }
}

/// Stores a key set (replacing one with the same KVN), with a fresh
/// sequence counter of 0. Every check is made before the VSC changes, so a
/// failure leaves it as it was.
pub fn put_keyset(vsc: &mut Vsc, kvn: u8, keys: &StaticKeys, factory: bool) -> Result<(), CardError> {
    let attributes = KeyAttributes {
        origin: KeyOrigin::Imported,
        pin_policy: PinPolicy::Default,
        touch_policy: TouchPolicy::Default,
    };
    let mut entries = Vec::with_capacity(3);
    for (kid, key) in [
        (KID_ENC, keys.enc()),
        (KID_MAC, keys.mac()),
        (KID_DEK, keys.dek()),
    ] {
        entries.push(SecretKeyEntry::new(
            KeyRef::Scp03 { kvn, kid },
            algorithm_of(key.key_len()),
            SecretBytes::from_slice(key.expose_secret()),
            attributes,
        )?);
    }
    for entry in entries {
        vsc.put_secret_key(entry);
    }
    set_sequence_counter(vsc, kvn, 0)?;
    if factory {
        vsc.put_public(DataObject::new(factory_object(kvn), vec![1]))?;
    } else {
        vsc.remove_public(&factory_object(kvn));
    }
    Ok(())
}

/// Removes a key set and its counter.
pub fn remove_keyset(vsc: &mut Vsc, kvn: u8) {
    for kid in [KID_ENC, KID_MAC, KID_DEK] {
        vsc.remove_secret_key(&KeyRef::Scp03 { kvn, kid });
    }
    vsc.remove_public(&seq_object(kvn));
    vsc.remove_public(&factory_object(kvn));
}

pub fn set_sequence_counter(vsc: &mut Vsc, kvn: u8, counter: u32) -> Result<(), CardError> {
    let [_, a, b, c] = counter.to_be_bytes();
    vsc.put_public(DataObject::new(seq_object(kvn), vec![a, b, c]))?;
    Ok(())
}
