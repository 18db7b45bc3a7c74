//! AES primitives over a key of any of the three lengths: one-block
//! encryption, CBC without padding, CMAC, and the padding SCP03 uses
//! (Amd D §4.1.4: `80` then `00` bytes up to a whole block).
//!
//! Crate-internal: the protocol files above build on these.

use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256};
use cmac::{Cmac, Mac};
use zeroize::Zeroizing;

use crate::secret::{AesKey, AesKeyLen};

/// The AES block length.
pub(crate) const BLOCK: usize = 16;

/// One AES block.
pub(crate) type Block = [u8; BLOCK];

/// An AES key schedule for one of the three key lengths.
enum Cipher {
    A128(Aes128),
    A192(Aes192),
    A256(Aes256),
}

impl Cipher {
    fn new(key: &AesKey) -> Self {
        // `AesKey` admits only 16, 24 or 32 bytes and `key_len` reports which,
        // so each slice has the length its arm expects.
        let k = key.expose_secret();
        match key.key_len() {
            AesKeyLen::Aes128 => Cipher::A128(Aes128::new(GenericArray::from_slice(k))),
            AesKeyLen::Aes192 => Cipher::A192(Aes192::new(GenericArray::from_slice(k))),
            AesKeyLen::Aes256 => Cipher::A256(Aes256::new(GenericArray::from_slice(k))),
        }
    }

    fn encrypt(&self, block: &mut [u8]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Cipher::A128(c) => c.encrypt_block(b),
            Cipher::A192(c) => c.encrypt_block(b),
            Cipher::A256(c) => c.encrypt_block(b),
        }
    }

    fn decrypt(&self, block: &mut [u8]) {
        let b = GenericArray::from_mut_slice(block);
        match self {
            Cipher::A128(c) => c.decrypt_block(b),
            Cipher::A192(c) => c.decrypt_block(b),
            Cipher::A256(c) => c.decrypt_block(b),
        }
    }
}

/// AES-ECB of one block.
pub(crate) fn encrypt_block(key: &AesKey, block: &Block) -> Block {
    let mut out = *block;
    Cipher::new(key).encrypt(&mut out);
    out
}

/// AES-CBC encryption in place. `data` must be a whole number of blocks;
/// callers pad first (a partial tail would be left as it is).
pub(crate) fn cbc_encrypt(key: &AesKey, iv: &Block, data: &mut [u8]) {
    debug_assert_eq!(data.len() % BLOCK, 0);
    let cipher = Cipher::new(key);
    let mut prev = *iv;
    for chunk in data.chunks_exact_mut(BLOCK) {
        for (b, p) in chunk.iter_mut().zip(prev.iter()) {
            *b ^= p;
        }
        cipher.encrypt(chunk);
        prev.copy_from_slice(chunk);
    }
}

/// AES-CBC decryption in place. `data` must be a whole number of blocks;
/// callers check first (a partial tail would be left as it is).
pub(crate) fn cbc_decrypt(key: &AesKey, iv: &Block, data: &mut [u8]) {
    debug_assert_eq!(data.len() % BLOCK, 0);
    let cipher = Cipher::new(key);
    let mut prev = *iv;
    let mut this: Block = [0; BLOCK];
    for chunk in data.chunks_exact_mut(BLOCK) {
        this.copy_from_slice(chunk);
        cipher.decrypt(chunk);
        for (b, p) in chunk.iter_mut().zip(prev.iter()) {
            *b ^= p;
        }
        prev = this;
    }
}

/// AES-CMAC (NIST SP 800-38B), full 16 bytes, over the concatenation of
/// `parts`.
pub(crate) fn cmac(key: &AesKey, parts: &[&[u8]]) -> Block {
    macro_rules! run {
        ($cipher:ty) => {{
            let mut m = <Cmac<$cipher> as KeyInit>::new(GenericArray::from_slice(key.expose_secret()));
            for part in parts {
                m.update(part);
            }
            let tag = m.finalize().into_bytes();
            let mut out: Block = [0; BLOCK];
            out.copy_from_slice(&tag);
            out
        }};
    }
    match key.key_len() {
        AesKeyLen::Aes128 => run!(Aes128),
        AesKeyLen::Aes192 => run!(Aes192),
        AesKeyLen::Aes256 => run!(Aes256),
    }
}

/// `data ‖ 80 ‖ 00…` up to the next whole block (always at least one byte of
/// padding).
pub(crate) fn pad(data: &[u8]) -> Zeroizing<Vec<u8>> {
    let padded_len = (data.len() / BLOCK + 1) * BLOCK;
    let mut out = Zeroizing::new(Vec::with_capacity(padded_len));
    out.extend_from_slice(data);
    out.push(0x80);
    out.resize(padded_len, 0);
    out
}

/// The length of the data before its padding, or `None` if `data` is not
/// padded: it must be a non-empty whole number of blocks ending in `80` and at
/// most 15 `00` bytes.
pub(crate) fn unpadded_len(data: &[u8]) -> Option<usize> {
    if data.is_empty() || data.len() % BLOCK != 0 {
        return None;
    }
    let last_block_start = data.len() - BLOCK;
    let marker = data.iter().rposition(|&b| b != 0)?;
    (marker >= last_block_start && data.get(marker) == Some(&0x80)).then_some(marker)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    fn key(s: &str) -> AesKey {
        AesKey::from_slice(&h(s)).unwrap()
    }

    // NIST SP 800-38A, F.2.1 CBC-AES128.Encrypt, first two blocks.
    #[test]
    fn cbc_known_answer() {
        let k = key("2b7e151628aed2a6abf7158809cf4f3c");
        let iv: Block = h("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
        let plain = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
        let mut data = plain.clone();
        cbc_encrypt(&k, &iv, &mut data);
        assert_eq!(
            data,
            h("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")
        );
        cbc_decrypt(&k, &iv, &mut data);
        assert_eq!(data, plain);
    }

    // NIST SP 800-38B, D.1/D.2/D.3 (AES-128/192/256), example 2 (one block).
    #[test]
    fn cmac_known_answers() {
        let m = h("6bc1bee22e409f96e93d7e117393172a");
        let cases = [
            (
                "2b7e151628aed2a6abf7158809cf4f3c",
                "070a16b46b4d4144f79bdd9dd04a287c",
            ),
            (
                "8e73b0f7da0e6452c810f32b809079e562f8ead2522c6b7b",
                "9e99a7bf31e710900662f65e617c5184",
            ),
            (
                "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
                "28a7023f452e8f82bd4bf28d8c37c35c",
            ),
        ];
        for (k, tag) in cases {
            // Split input: CMAC is over the concatenation.
            assert_eq!(cmac(&key(k), &[&m[..5], &m[5..]]).to_vec(), h(tag), "{k}");
        }
    }

    #[test]
    fn padding_round_trips_and_rejects_bad_padding() {
        for len in 0..40 {
            let data = vec![0xA5; len];
            let p = pad(&data);
            assert_eq!(p.len() % BLOCK, 0);
            assert!(p.len() > len);
            assert_eq!(unpadded_len(&p), Some(len));
        }
        assert_eq!(unpadded_len(&[]), None);
        assert_eq!(unpadded_len(&[0; 16]), None);
        assert_eq!(unpadded_len(&[0x80; 15]), None);
        let mut p = pad(&[1, 2, 3]).to_vec();
        p[3] = 0x81;
        assert_eq!(unpadded_len(&p), None);
        // The marker must sit in the last block.
        let mut two = vec![0u8; 32];
        two[15] = 0x80;
        assert_eq!(unpadded_len(&two), None);
    }
}
