//! Authenticated encryption of keys and records: AES-256-GCM with a random
//! 96-bit nonce.
//!
//! A wrapped key is `version (2 bytes, big-endian) ‖ nonce (12) ‖
//! ciphertext ‖ tag (16)`; the additional authenticated data is
//! `name ‖ version`, so a wrapped value moved under another name, or
//! presented as another format version, does not unwrap.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use vsc::secret::{AesKey, AesKeyLen, SecretBytes};

/// The format version of wrapped values.
pub const WRAP_VERSION: u16 = 1;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A value did not unwrap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    #[error("{name}: too short to be a wrapped value ({len} bytes)")]
    TooShort { name: String, len: usize },
    #[error("{name}: format version {found}, this keyserver reads {WRAP_VERSION}")]
    Version { name: String, found: u16 },
    #[error("{name}: the wrapping key is not the one it was wrapped with, or the value was changed")]
    Authentication { name: String },
    #[error("{name}: the wrapping key is not AES-256")]
    KeyLength { name: String },
}

fn aad(name: &str) -> Vec<u8> {
    let mut a = name.as_bytes().to_vec();
    a.extend_from_slice(&WRAP_VERSION.to_be_bytes());
    a
}

fn cipher(kek: &AesKey) -> Option<Aes256Gcm> {
    if kek.key_len() != AesKeyLen::Aes256 {
        return None;
    }
    Aes256Gcm::new_from_slice(kek.expose_secret()).ok()
}

/// Wraps `secret` under `kek` for `name`.
pub fn wrap(kek: &AesKey, name: &str, secret: &[u8]) -> Result<Vec<u8>, UnwrapError> {
    let c = cipher(kek).ok_or_else(|| UnwrapError::KeyLength { name: name.into() })?;
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let aad = aad(name);
    let ct = c
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: secret,
                aad: &aad,
            },
        )
        // Encryption fails only for inputs far beyond any key's size.
        .map_err(|_| UnwrapError::TooShort {
            name: name.into(),
            len: secret.len(),
        })?;
    let mut out = Vec::with_capacity(2 + NONCE_LEN + ct.len());
    out.extend_from_slice(&WRAP_VERSION.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Unwraps what [`wrap`] made for `name`.
pub fn unwrap(kek: &AesKey, name: &str, wrapped: &[u8]) -> Result<SecretBytes, UnwrapError> {
    let c = cipher(kek).ok_or_else(|| UnwrapError::KeyLength { name: name.into() })?;
    let (version, rest) = wrapped.split_at_checked(2).ok_or_else(|| UnwrapError::TooShort {
        name: name.into(),
        len: wrapped.len(),
    })?;
    let (nonce, ct) = rest
        .split_at_checked(NONCE_LEN)
        .filter(|(_, ct)| ct.len() >= TAG_LEN)
        .ok_or_else(|| UnwrapError::TooShort {
            name: name.into(),
            len: wrapped.len(),
        })?;
    let found = u16::from_be_bytes([
        version.first().copied().unwrap_or(0),
        version.get(1).copied().unwrap_or(0),
    ]);
    if found != WRAP_VERSION {
        return Err(UnwrapError::Version {
            name: name.into(),
            found,
        });
    }
    let aad = aad(name);
    c.decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
        .map(SecretBytes::new)
        .map_err(|_| UnwrapError::Authentication { name: name.into() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> AesKey {
        AesKey::from_slice(&[b; 32]).unwrap()
    }

    proptest! {
        #[test]
        fn round_trips_and_binds_name_and_key(secret in proptest::collection::vec(any::<u8>(), 0..200), flip in 0usize..400) {
            let w = wrap(&key(1), "scp03-master/enc", &secret).unwrap();
            let back = unwrap(&key(1), "scp03-master/enc", &w).unwrap();
            prop_assert_eq!(back.expose_secret(), &secret[..]);
            prop_assert!(unwrap(&key(2), "scp03-master/enc", &w).is_err());
            prop_assert!(unwrap(&key(1), "scp03-master/mac", &w).is_err());
            let mut bad = w.clone();
            let i = flip % bad.len();
            bad[i] ^= 0x01;
            prop_assert!(unwrap(&key(1), "scp03-master/enc", &bad).is_err());
            prop_assert!(unwrap(&key(1), "scp03-master/enc", &w[..w.len().min(flip % 30)]).is_err());
        }
    }

    #[test]
    fn refuses_a_short_kek() {
        let k = AesKey::from_slice(&[1; 16]).unwrap();
        assert!(matches!(wrap(&k, "x", b"s"), Err(UnwrapError::KeyLength { .. })));
    }
}
