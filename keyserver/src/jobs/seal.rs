//! AES-256-GCM sealing of record fields and issued secrets.
//!
//! A sealed value is `0x01 ‖ nonce (12) ‖ ciphertext ‖ tag (16)`; the
//! associated data binds it to its job and record.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use vsc::secret::AesKey;
use zeroize::Zeroizing;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Sealing failed, or a sealed value does not open.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the records key must be an AES-256 key (32 bytes), not {0} bytes")]
    KeyLength(usize),
    #[error("sealing failed")]
    Seal,
    #[error(
        "the sealed value is malformed or was altered, or the records key is not the one it was sealed with"
    )]
    Open,
}

pub(crate) struct Sealer {
    cipher: Aes256Gcm,
}

impl Sealer {
    pub(crate) fn new(key: &AesKey) -> Result<Self, SealError> {
        let bytes = key.expose_secret();
        let cipher = Aes256Gcm::new_from_slice(bytes).map_err(|_| SealError::KeyLength(bytes.len()))?;
        Ok(Sealer { cipher })
    }

    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad })
            .map_err(|_| SealError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let (version, rest) = sealed.split_first().ok_or(SealError::Open)?;
        if *version != VERSION {
            return Err(SealError::Open);
        }
        let (nonce, ct) = rest.split_at_checked(NONCE_LEN).ok_or(SealError::Open)?;
        self.cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
            .map(Zeroizing::new)
            .map_err(|_| SealError::Open)
    }
}

/// The associated data of a record's fields: `job ‖ 0x00 ‖ record id`.
pub(crate) fn record_aad(job: &str, record_id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(job.len() + record_id.len() + 1);
    aad.extend_from_slice(job.as_bytes());
    aad.push(0);
    aad.extend_from_slice(record_id.as_bytes());
    aad
}

/// The associated data of a record's issued secrets:
/// `job ‖ 0x00 ‖ record id ‖ 0x00 ‖ "issued-secrets"`.
pub(crate) fn secrets_aad(job: &str, record_id: &str) -> Vec<u8> {
    let mut aad = record_aad(job, record_id);
    aad.push(0);
    aad.extend_from_slice(b"issued-secrets");
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let s = Sealer::new(&AesKey::from_slice(&[7; 32]).unwrap()).unwrap();
        let sealed = s.seal(b"job\0r1", b"secret").unwrap();
        assert_eq!(&*s.open(b"job\0r1", &sealed).unwrap(), b"secret");
        assert!(s.open(b"job\0r2", &sealed).is_err());
        let mut bad = sealed.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        assert!(s.open(b"job\0r1", &bad).is_err());
        assert!(s.open(b"job\0r1", &[]).is_err());
        assert!(s.open(b"job\0r1", &[1, 2, 3]).is_err());
        assert!(Sealer::new(&AesKey::from_slice(&[7; 16]).unwrap()).is_err());
    }
}
