//! Key-DEK: the key check value and the encryption of sensitive data such as
//! the keys in PUT KEY (Amd D §6.2.8, §7.2).
//!
//! Sensitive data is encrypted with the static Key-DEK in AES-CBC with a zero
//! ICV. Data that is not a whole number of blocks (a 24-byte AES key) is padded
//! with arbitrary bytes before encryption; this module pads with `00`.

use super::block::{cbc_decrypt, cbc_encrypt, encrypt_block, BLOCK};
use super::Scp03Error;
use crate::secret::{AesKey, SecretBytes};

/// Key type of an AES key in a PUT KEY key data field (Card Spec Table 11-68).
pub const KEY_TYPE_AES: u8 = 0x88;

/// The key check value of an AES key: the first 3 bytes of `AES(key, 16 × 01)`
/// (Amd D §7.2.2).
pub fn key_check_value(key: &AesKey) -> [u8; 3] {
    let c = encrypt_block(key, &[0x01; BLOCK]);
    [c[0], c[1], c[2]]
}

/// Encrypts sensitive data under Key-DEK: zero-padded to a whole number of
/// blocks, then AES-CBC with a zero ICV.
pub fn encrypt_sensitive_data(dek: &AesKey, data: &[u8]) -> Vec<u8> {
    let mut buf = zeroize::Zeroizing::new(data.to_vec());
    buf.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
    cbc_encrypt(dek, &[0; BLOCK], &mut buf);
    buf.to_vec()
}

/// Decrypts sensitive data encrypted under Key-DEK. The result keeps any
/// padding: the caller knows the length of what it expects (for a key, from
/// the key data field).
pub fn decrypt_sensitive_data(dek: &AesKey, encrypted: &[u8]) -> Result<SecretBytes, Scp03Error> {
    if encrypted.len() % BLOCK != 0 {
        return Err(Scp03Error::SensitiveDataLength(encrypted.len()));
    }
    let mut buf = encrypted.to_vec();
    cbc_decrypt(dek, &[0; BLOCK], &mut buf);
    Ok(SecretBytes::new(buf))
}

/// The key data field of an AES key for PUT KEY (Amd D Table 7-10):
/// `88 ‖ Lk+1 ‖ Lk ‖ E(Key-DEK, key) ‖ 03 ‖ KCV`, where `Lk` is the key length
/// and the encrypted key is 16 or 32 bytes.
pub fn put_key_component(dek: &AesKey, key: &AesKey) -> Vec<u8> {
    let secret = key.expose_secret();
    let encrypted = encrypt_sensitive_data(dek, secret);
    let mut out = Vec::with_capacity(3 + encrypted.len() + 4);
    // At most 32 + 1 bytes: the casts cannot truncate.
    out.extend_from_slice(&[KEY_TYPE_AES, (encrypted.len() + 1) as u8, secret.len() as u8]);
    out.extend_from_slice(&encrypted);
    out.push(3);
    out.extend_from_slice(&key_check_value(key));
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn k(len: usize) -> AesKey {
        AesKey::from_slice(&(0x40..0x40 + len as u8).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn kcv_of_the_test_key() {
        // Computed (card-protocols.md §B): KCV of 40..4F is 504A77.
        assert_eq!(key_check_value(&k(16)), [0x50, 0x4A, 0x77]);
    }

    #[test]
    fn sensitive_data_round_trips_with_padding_for_24_byte_keys() {
        let dek = k(16);
        for len in [16, 24, 32] {
            let key = k(len);
            let enc = encrypt_sensitive_data(&dek, key.expose_secret());
            assert_eq!(enc.len(), if len == 16 { 16 } else { 32 });
            let dec = decrypt_sensitive_data(&dek, &enc).unwrap();
            assert_eq!(&dec.expose_secret()[..len], key.expose_secret());
            assert!(dec.expose_secret()[len..].iter().all(|&b| b == 0));
        }
        assert_eq!(
            decrypt_sensitive_data(&dek, &[0; 17]).unwrap_err(),
            Scp03Error::SensitiveDataLength(17)
        );
    }

    #[test]
    fn cbc_with_zero_icv() {
        let dek = k(16);
        let plain = [0x11u8; 32];
        let enc = encrypt_sensitive_data(&dek, &plain);
        // First block is plain ECB (zero ICV); the second is chained.
        assert_eq!(enc[..16], encrypt_block(&dek, &[0x11; 16]));
        let mut x = [0u8; 16];
        for (i, b) in x.iter_mut().enumerate() {
            *b = 0x11 ^ enc[i];
        }
        assert_eq!(enc[16..], encrypt_block(&dek, &x));
    }

    #[test]
    fn put_key_layout() {
        let dek = k(16);
        let f = put_key_component(&dek, &k(24));
        assert_eq!(&f[..3], &[0x88, 0x21, 0x18]);
        assert_eq!(f.len(), 3 + 32 + 1 + 3);
        assert_eq!(&f[35..], &[&[3u8][..], &key_check_value(&k(24))[..]].concat()[..]);
        let f = put_key_component(&dek, &k(16));
        assert_eq!(&f[..3], &[0x88, 0x11, 0x10]);
        assert_eq!(&f[19..], &[0x03, 0x50, 0x4A, 0x77]);
    }
}
