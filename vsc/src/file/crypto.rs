//! The cryptography of the VSC file, in one place: HKDF labels, AES-256-GCM,
//! HMAC-SHA256, SHA-256, Argon2id. Every label here is part of the format.

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::error::AreaId;
use super::model::Uid;
use crate::secret::SecretBytes;

/// Length of the data-encryption key, of every derived key, of a MAC.
pub(crate) const KEY_LEN: usize = 32;
pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const GCM_TAG_LEN: usize = 16;

/// HKDF-SHA256 `info` of the file MAC key.
pub(crate) const INFO_FILE_MAC: &[u8] = b"VSC1 file mac";
/// HKDF-SHA256 `info` of an area's AES-256-GCM key.
pub(crate) fn area_info(area: AreaId) -> &'static [u8] {
    match area {
        AreaId::Public => b"VSC1 public area",
        AreaId::Private => b"VSC1 private area",
        AreaId::SecretKeys => b"VSC1 secret key area",
        AreaId::Passwords => b"VSC1 password area",
    }
}
/// Prefix of the associated data of a key slot's DEK wrap.
pub(crate) const SLOT_AAD_LABEL: &[u8] = b"VSC1 key slot";

/// A 32-byte key from the DEK: HKDF-SHA256 with the UID as salt.
pub(crate) fn derive(dek: &SecretBytes, uid: &Uid, info: &[u8]) -> SecretBytes {
    let hk = Hkdf::<Sha256>::new(Some(uid.as_bytes()), dek.expose_secret());
    let mut out = Zeroizing::new(vec![0u8; KEY_LEN]);
    // 32 bytes is far below HKDF-SHA256's limit of 255 * 32; this cannot fail.
    if hk.expand(info, &mut out).is_err() {
        out.fill(0);
    }
    SecretBytes::from(out)
}

/// The keys of one file.
pub(crate) struct FileKeys {
    pub(crate) mac: SecretBytes,
    pub(crate) private: SecretBytes,
    pub(crate) secret_keys: SecretBytes,
    pub(crate) passwords: SecretBytes,
}

impl FileKeys {
    pub(crate) fn derive(dek: &SecretBytes, uid: &Uid) -> Self {
        FileKeys {
            mac: derive(dek, uid, INFO_FILE_MAC),
            private: derive(dek, uid, area_info(AreaId::Private)),
            secret_keys: derive(dek, uid, area_info(AreaId::SecretKeys)),
            passwords: derive(dek, uid, area_info(AreaId::Passwords)),
        }
    }

    pub(crate) fn area(&self, area: AreaId) -> &SecretBytes {
        match area {
            AreaId::Private => &self.private,
            AreaId::SecretKeys => &self.secret_keys,
            // The public area is not encrypted; it has no key of its own.
            AreaId::Passwords | AreaId::Public => &self.passwords,
        }
    }
}

fn cipher(key: &SecretBytes) -> Option<Aes256Gcm> {
    Aes256Gcm::new_from_slice(key.expose_secret()).ok()
}

/// AES-256-GCM encryption; `None` only for a key of the wrong length.
pub(crate) fn seal(
    key: &SecretBytes,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Option<Vec<u8>> {
    cipher(key)?
        .encrypt(GenericArray::from_slice(nonce), Payload { msg: plaintext, aad })
        .ok()
}

/// AES-256-GCM decryption; `None` when the tag does not verify.
pub(crate) fn open(
    key: &SecretBytes,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    cipher(key)?
        .decrypt(GenericArray::from_slice(nonce), Payload { msg: ciphertext, aad })
        .ok()
        .map(Zeroizing::new)
}

pub(crate) fn hmac_sha256(key: &SecretBytes, data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length; this cannot fail.
    match <Hmac<Sha256> as Mac>::new_from_slice(key.expose_secret()) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().into()
        }
        Err(_) => [0; 32],
    }
}

pub(crate) fn hmac_verify(key: &SecretBytes, data: &[u8], tag: &[u8]) -> bool {
    hmac_sha256(key, data).ct_eq(tag).into()
}

pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Argon2id (version 0x13) of `password` with `salt`, 32 bytes out. The
/// parameters must already be within the bounds.
pub(crate) fn argon2id(
    password: &SecretBytes,
    salt: &[u8],
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
) -> Result<SecretBytes, String> {
    let params = argon2::Params::new(m_cost_kib, t_cost, p_cost, Some(KEY_LEN)).map_err(|e| e.to_string())?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new(vec![0u8; KEY_LEN]);
    a.hash_password_into(password.expose_secret(), salt, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(SecretBytes::from(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn derived_keys_differ() {
        let dek = SecretBytes::from_slice(&[7; 32]);
        let uid = Uid::from_bytes([1; 16]);
        let k = FileKeys::derive(&dek, &uid);
        let all = [&k.mac, &k.private, &k.secret_keys, &k.passwords];
        for (i, a) in all.iter().enumerate() {
            for b in all.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
        let other_uid = FileKeys::derive(&dek, &Uid::from_bytes([2; 16]));
        assert_ne!(k.mac, other_uid.mac);
    }

    #[test]
    fn gcm_round_trip_and_tamper() {
        let key = SecretBytes::from_slice(&[3; 32]);
        let nonce = [9; 12];
        let ct = seal(&key, &nonce, b"aad", b"hello").unwrap();
        assert_eq!(ct.len(), 5 + GCM_TAG_LEN);
        assert_eq!(&open(&key, &nonce, b"aad", &ct).unwrap()[..], b"hello");
        assert!(open(&key, &nonce, b"aaD", &ct).is_none());
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert!(open(&key, &nonce, b"aad", &bad).is_none());
    }
}
