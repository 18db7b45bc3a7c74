//! PIV key references: the asymmetric key slots, their certificate objects
//! and their default PIN policies.

use crate::file::{KeyRef, PinPolicy};

/// The card application administration key (the management key).
pub(super) const MANAGEMENT_KEY: u8 = 0x9B;

/// First and last retired key management key references.
const RETIRED_FIRST: u8 = 0x82;
const RETIRED_LAST: u8 = 0x95;
/// The certificate object of the first retired key; the others follow.
const RETIRED_FIRST_CERT: u32 = 0x5F_C10D;

/// A PIV asymmetric key reference: `9A` PIV authentication, `9C` digital
/// signature, `9D` key management, `9E` card authentication, `82`–`95`
/// retired key management keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct KeySlot(u8);

impl KeySlot {
    /// The slot a P2 names, if it names one.
    pub(super) fn from_reference(reference: u8) -> Option<Self> {
        match reference {
            0x9A | 0x9C | 0x9D | 0x9E | RETIRED_FIRST..=RETIRED_LAST => Some(KeySlot(reference)),
            _ => None,
        }
    }

    /// Where the slot's private key lives in the VSC's secret key area.
    pub(super) fn key_ref(self) -> KeyRef {
        KeyRef::PivSlot(self.0)
    }

    /// SP 800-73-4's access rule for using the key when the key itself
    /// carries no policy: PIV authentication and key management keys after
    /// one PIN verification; the digital signature key "PIN always"; card
    /// authentication without PIN.
    pub(super) fn default_pin_policy(self) -> PinPolicy {
        match self.0 {
            0x9C => PinPolicy::Always,
            0x9E => PinPolicy::Never,
            _ => PinPolicy::Once,
        }
    }

    /// The PIN policy that applies to a key in this slot stored with
    /// `stored`. A value this card has no name for is treated as the
    /// strictest, "always".
    pub(super) fn effective_pin_policy(self, stored: PinPolicy) -> PinPolicy {
        match stored {
            PinPolicy::Default => self.default_pin_policy(),
            PinPolicy::Never | PinPolicy::Once | PinPolicy::Always => stored,
            PinPolicy::Other(_) => PinPolicy::Always,
        }
    }

    /// Whether the key may compute a key agreement (ECDH). Every slot may
    /// except the digital signature key `9C`: a signature key serves one
    /// purpose (SP 800-57), and its "PIN always" rule exists for signatures.
    pub(super) fn may_agree_keys(self) -> bool {
        self.0 != 0x9C
    }
}

/// The tag of the data object holding the certificate of a key slot.
#[cfg(test)]
pub(super) fn certificate_tag(slot: KeySlot) -> u32 {
    match slot.0 {
        0x9A => 0x5F_C105,
        0x9C => 0x5F_C10A,
        0x9D => 0x5F_C10B,
        0x9E => 0x5F_C101,
        retired => RETIRED_FIRST_CERT + u32::from(retired - RETIRED_FIRST),
    }
}

/// The certificate objects of the retired keys, `5FC10D`–`5FC120`.
pub(super) fn is_retired_certificate(tag: u32) -> bool {
    let last = RETIRED_FIRST_CERT + u32::from(RETIRED_LAST - RETIRED_FIRST);
    (RETIRED_FIRST_CERT..=last).contains(&tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_their_certificates() {
        assert!(KeySlot::from_reference(0x9B).is_none());
        assert!(KeySlot::from_reference(0x81).is_none());
        assert!(KeySlot::from_reference(0x96).is_none());
        let cert = |r| certificate_tag(KeySlot::from_reference(r).unwrap());
        assert_eq!(cert(0x9A), 0x5FC105);
        assert_eq!(cert(0x9E), 0x5FC101);
        assert_eq!(cert(0x82), 0x5FC10D);
        assert_eq!(cert(0x95), 0x5FC120);
        assert!(is_retired_certificate(0x5FC120) && !is_retired_certificate(0x5FC121));
    }

    #[test]
    fn pin_policies() {
        let s = |r| KeySlot::from_reference(r).unwrap();
        assert_eq!(s(0x9A).effective_pin_policy(PinPolicy::Default), PinPolicy::Once);
        assert_eq!(
            s(0x9C).effective_pin_policy(PinPolicy::Default),
            PinPolicy::Always
        );
        assert_eq!(s(0x9E).effective_pin_policy(PinPolicy::Default), PinPolicy::Never);
        assert_eq!(s(0x85).effective_pin_policy(PinPolicy::Default), PinPolicy::Once);
        assert_eq!(s(0x9E).effective_pin_policy(PinPolicy::Always), PinPolicy::Always);
        assert_eq!(
            s(0x9A).effective_pin_policy(PinPolicy::Other(9)),
            PinPolicy::Always
        );
        assert!(!s(0x9C).may_agree_keys() && s(0x9A).may_agree_keys());
    }
}
