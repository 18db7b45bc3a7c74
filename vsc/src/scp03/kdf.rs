//! The SCP03 data derivation scheme (Amd D §4.1.5): NIST SP 800-108 KDF in
//! counter mode with AES-CMAC (full 16-byte output) as the PRF.
//!
//! The PRF input for block `i` (1, then 2 when more than 16 bytes are needed):
//!
//! ```text
//! 00 × 11 ‖ constant ‖ 00 ‖ L (2 bytes, in bits) ‖ i ‖ context
//! ```

use zeroize::Zeroizing;

use super::block::{cmac, BLOCK};
use crate::secret::{AesKey, AesKeyLen};

/// The derivation constant (Amd D Table 4-1), which says what is derived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum DerivationConstant {
    /// The card cryptogram (key S-MAC).
    CardCryptogram = 0x00,
    /// The host cryptogram (key S-MAC).
    HostCryptogram = 0x01,
    /// The pseudo-random card challenge (key static Key-ENC).
    CardChallenge = 0x02,
    /// Session key S-ENC (key static Key-ENC).
    SEnc = 0x04,
    /// Session key S-MAC (key static Key-MAC).
    SMac = 0x06,
    /// Session key S-RMAC (key static Key-MAC).
    SRmac = 0x07,
}

impl From<DerivationConstant> for u8 {
    fn from(c: DerivationConstant) -> u8 {
        c as u8
    }
}

/// How much is derived: the values of `L` the scheme allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OutputLen {
    /// 8 bytes, L = `0040`: cryptograms and challenges (S8 mode).
    Bytes8,
    /// 16 bytes, L = `0080`: AES-128 session keys.
    Bytes16,
    /// 24 bytes, L = `00C0`: AES-192 session keys.
    Bytes24,
    /// 32 bytes, L = `0100`: AES-256 session keys.
    Bytes32,
}

impl OutputLen {
    pub fn bytes(self) -> usize {
        match self {
            OutputLen::Bytes8 => 8,
            OutputLen::Bytes16 => 16,
            OutputLen::Bytes24 => 24,
            OutputLen::Bytes32 => 32,
        }
    }

    /// `L`, the length in bits, as the two bytes the PRF input carries.
    fn l_field(self) -> [u8; 2] {
        match self {
            OutputLen::Bytes8 => [0x00, 0x40],
            OutputLen::Bytes16 => [0x00, 0x80],
            OutputLen::Bytes24 => [0x00, 0xC0],
            OutputLen::Bytes32 => [0x01, 0x00],
        }
    }
}

impl From<AesKeyLen> for OutputLen {
    fn from(len: AesKeyLen) -> Self {
        match len {
            AesKeyLen::Aes128 => OutputLen::Bytes16,
            AesKeyLen::Aes192 => OutputLen::Bytes24,
            AesKeyLen::Aes256 => OutputLen::Bytes32,
        }
    }
}

/// Derives `len` bytes from `key` for `constant` and `context`.
pub fn derive(
    key: &AesKey,
    constant: DerivationConstant,
    len: OutputLen,
    context: &[u8],
) -> Zeroizing<Vec<u8>> {
    derive_labeled(key, constant.into(), len, context)
}

/// The same KDF with any one-byte derivation constant (the "label"), for
/// derivations outside SCP03's own Table 4-1 — e.g. the keyserver
/// diversifying a card's static keys from a master key with the card's KDD as
/// context. Keep such labels apart from the values of [`DerivationConstant`]
/// when the same key could feed both.
pub fn derive_labeled(key: &AesKey, label: u8, len: OutputLen, context: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut fixed = [0u8; 16];
    fixed[11] = label;
    // fixed[12] is the separation indicator, 00.
    fixed[13..15].copy_from_slice(&len.l_field());
    let mut out = Zeroizing::new(Vec::with_capacity(2 * BLOCK));
    let mut counter = 1u8;
    while out.len() < len.bytes() {
        fixed[15] = counter;
        let block = Zeroizing::new(cmac(key, &[&fixed, context]));
        out.extend_from_slice(&*block);
        counter += 1;
    }
    out.truncate(len.bytes());
    out
}

/// [`derive`] for 8 bytes, returned as an array (cryptograms, challenges).
pub(crate) fn derive8(key: &AesKey, constant: DerivationConstant, context: &[u8]) -> [u8; 8] {
    let v = derive(key, constant, OutputLen::Bytes8, context);
    let mut out = [0u8; 8];
    out.copy_from_slice(&v);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key(len: usize) -> AesKey {
        AesKey::from_slice(&(0x40..0x40 + len as u8).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn first_block_is_one_cmac_over_the_documented_layout() {
        let k = key(16);
        let ctx = [0xAB; 16];
        let mut input = vec![0u8; 11];
        input.extend([0x04, 0x00, 0x00, 0x80, 0x01]);
        input.extend(ctx);
        let expected = cmac(&k, &[&input]);
        assert_eq!(
            &derive(&k, DerivationConstant::SEnc, OutputLen::Bytes16, &ctx)[..],
            &expected
        );
    }

    #[test]
    fn longer_outputs_concatenate_a_second_block_with_its_own_l() {
        let k = key(32);
        let ctx = [0x11; 16];
        let out = derive(&k, DerivationConstant::SMac, OutputLen::Bytes24, &ctx);
        assert_eq!(out.len(), 24);
        let mut input = vec![0u8; 11];
        input.extend([0x06, 0x00, 0x00, 0xC0, 0x02]);
        input.extend(ctx);
        let second = cmac(&k, &[&input]);
        assert_eq!(&out[16..], &second[..8]);
        // L is part of the input: a 32-byte output is not an extension of the 24-byte one.
        let out32 = derive(&k, DerivationConstant::SMac, OutputLen::Bytes32, &ctx);
        assert_ne!(&out32[..24], &out[..]);
    }

    #[test]
    fn labeled_is_the_same_kdf_with_any_constant() {
        let k = key(32);
        let ctx = [0x5A; 10];
        assert_eq!(
            derive(&k, DerivationConstant::SEnc, OutputLen::Bytes16, &ctx),
            derive_labeled(&k, 0x04, OutputLen::Bytes16, &ctx)
        );
        assert_ne!(
            derive_labeled(&k, 0x41, OutputLen::Bytes16, &ctx),
            derive_labeled(&k, 0x42, OutputLen::Bytes16, &ctx)
        );
    }

    #[test]
    fn constants_and_lengths_separate_outputs() {
        let k = key(16);
        let ctx = [0u8; 16];
        let a = derive8(&k, DerivationConstant::CardCryptogram, &ctx);
        let b = derive8(&k, DerivationConstant::HostCryptogram, &ctx);
        assert_ne!(a, b);
        assert_eq!(u8::from(DerivationConstant::SRmac), 0x07);
        assert_eq!(OutputLen::from(AesKeyLen::Aes192).bytes(), 24);
    }
}
