//! Authentication cryptograms and the pseudo-random card challenge (Amd D
//! §6.2.2), all 8 bytes (S8 mode, L = `0040`).

use subtle::ConstantTimeEq;

use super::kdf::{derive8, DerivationConstant};
use crate::secret::AesKey;

/// The largest value of the 3-byte sequence counter.
pub const MAX_SEQUENCE_COUNTER: u32 = 0xFF_FFFF;

fn challenges(host_challenge: &[u8; 8], card_challenge: &[u8; 8]) -> [u8; 16] {
    let mut context = [0u8; 16];
    context[..8].copy_from_slice(host_challenge);
    context[8..].copy_from_slice(card_challenge);
    context
}

/// The card cryptogram: KDF(S-MAC, `00`, context = host ‖ card challenge).
pub fn card_cryptogram(s_mac: &AesKey, host_challenge: &[u8; 8], card_challenge: &[u8; 8]) -> [u8; 8] {
    derive8(
        s_mac,
        DerivationConstant::CardCryptogram,
        &challenges(host_challenge, card_challenge),
    )
}

/// The host cryptogram: KDF(S-MAC, `01`, context = host ‖ card challenge).
pub fn host_cryptogram(s_mac: &AesKey, host_challenge: &[u8; 8], card_challenge: &[u8; 8]) -> [u8; 8] {
    derive8(
        s_mac,
        DerivationConstant::HostCryptogram,
        &challenges(host_challenge, card_challenge),
    )
}

/// The pseudo-random card challenge: KDF(static Key-ENC, `02`, context =
/// sequence counter (3 bytes) ‖ AID of the application invoking the secure
/// channel). Only the low 24 bits of `sequence_counter` are used.
pub fn pseudo_random_card_challenge(key_enc: &AesKey, sequence_counter: u32, aid: &[u8]) -> [u8; 8] {
    let mut context = Vec::with_capacity(3 + aid.len());
    context.extend_from_slice(&sequence_counter.to_be_bytes()[1..]);
    context.extend_from_slice(aid);
    derive8(key_enc, DerivationConstant::CardChallenge, &context)
}

/// Compares two cryptograms (or MACs) in constant time.
pub fn cryptograms_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn card_and_host_cryptograms_differ_and_depend_on_both_challenges() {
        let k = AesKey::from_slice(&[0x40; 16]).unwrap();
        let c = card_cryptogram(&k, &[1; 8], &[2; 8]);
        assert_ne!(c, host_cryptogram(&k, &[1; 8], &[2; 8]));
        assert_ne!(c, card_cryptogram(&k, &[1; 8], &[3; 8]));
        assert_ne!(c, card_cryptogram(&k, &[0; 8], &[2; 8]));
    }

    #[test]
    fn challenge_uses_three_counter_bytes_and_the_aid() {
        let k = AesKey::from_slice(&[0x40; 16]).unwrap();
        let aid = [0xA0, 0, 0, 0x01, 0x51, 0, 0, 0];
        let a = pseudo_random_card_challenge(&k, 1, &aid);
        assert_ne!(a, pseudo_random_card_challenge(&k, 2, &aid));
        assert_ne!(a, pseudo_random_card_challenge(&k, 1, &aid[..5]));
        // Only 24 bits of the counter are part of the context.
        assert_eq!(a, pseudo_random_card_challenge(&k, 0x0100_0001, &aid));
    }

    #[test]
    fn comparison() {
        assert!(cryptograms_equal(&[1, 2, 3], &[1, 2, 3]));
        assert!(!cryptograms_equal(&[1, 2, 3], &[1, 2, 4]));
        assert!(!cryptograms_equal(&[1, 2, 3], &[1, 2]));
    }
}
