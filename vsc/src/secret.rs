//! Types for key material.
//!
//! Every secret lives in one of these types: the bytes are zeroized when the
//! value is dropped, `Debug` prints only the length, there is no `Display`,
//! and equality is computed in constant time. Code reaches the bytes only
//! through [`SecretBytes::expose_secret`], which makes every use greppable.

use std::fmt;

use rand::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Secret bytes of any length: a PIN, a password, a private key encoding.
#[derive(Clone, Default, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(bytes)
    }

    /// Copies `bytes`; the caller remains responsible for its own copy.
    pub fn from_slice(bytes: &[u8]) -> Self {
        SecretBytes(bytes.to_vec())
    }

    /// `len` bytes from a cryptographic random generator.
    pub fn random(rng: &mut (impl RngCore + CryptoRng), len: usize) -> Self {
        let mut v = vec![0u8; len];
        rng.fill_bytes(&mut v);
        SecretBytes(v)
    }

    /// The secret itself. Keep the borrow short and never log it.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(mut z: Zeroizing<Vec<u8>>) -> Self {
        SecretBytes(std::mem::take(&mut *z))
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes([REDACTED; {} bytes])", self.0.len())
    }
}

impl ConstantTimeEq for SecretBytes {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        // Lengths are not secret; contents are compared in constant time.
        self.0.as_slice().ct_eq(other.0.as_slice())
    }
}

impl PartialEq for SecretBytes {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for SecretBytes {}

/// The length of an AES key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AesKeyLen {
    Aes128,
    Aes192,
    Aes256,
}

impl AesKeyLen {
    pub fn bytes(self) -> usize {
        match self {
            AesKeyLen::Aes128 => 16,
            AesKeyLen::Aes192 => 24,
            AesKeyLen::Aes256 => 32,
        }
    }

    pub fn from_bytes(len: usize) -> Option<Self> {
        match len {
            16 => Some(AesKeyLen::Aes128),
            24 => Some(AesKeyLen::Aes192),
            32 => Some(AesKeyLen::Aes256),
            _ => None,
        }
    }
}

/// The bytes are not a valid AES key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an AES key is 16, 24 or 32 bytes, not {0}")]
pub struct BadKeyLength(pub usize);

/// An AES-128, -192 or -256 key.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct AesKey(SecretBytes);

impl AesKey {
    pub fn from_slice(bytes: &[u8]) -> Result<Self, BadKeyLength> {
        AesKeyLen::from_bytes(bytes.len()).ok_or(BadKeyLength(bytes.len()))?;
        Ok(AesKey(SecretBytes::from_slice(bytes)))
    }

    pub fn random(rng: &mut (impl RngCore + CryptoRng), len: AesKeyLen) -> Self {
        AesKey(SecretBytes::random(rng, len.bytes()))
    }

    pub fn key_len(&self) -> AesKeyLen {
        // The constructor admits only valid lengths.
        AesKeyLen::from_bytes(self.0.len()).unwrap_or(AesKeyLen::Aes128)
    }

    /// The key bytes. Keep the borrow short and never log it.
    pub fn expose_secret(&self) -> &[u8] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for AesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AesKey({:?}, [REDACTED])", self.key_len())
    }
}

impl ConstantTimeEq for AesKey {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretBytes::from_slice(b"123456");
        let d = format!("{s:?}");
        assert!(!d.contains("123456") && !d.contains("31323334"), "{d}");
        assert!(d.contains("6 bytes"));
        let k = AesKey::from_slice(&[0x40; 16]).unwrap();
        let d = format!("{k:?}");
        assert!(!d.contains("40") && !d.contains("64"), "{d}");
    }

    #[test]
    fn equality_and_lengths() {
        assert_eq!(SecretBytes::from_slice(b"a"), SecretBytes::from_slice(b"a"));
        assert_ne!(SecretBytes::from_slice(b"a"), SecretBytes::from_slice(b"b"));
        assert_ne!(SecretBytes::from_slice(b"a"), SecretBytes::from_slice(b"aa"));
        assert_eq!(AesKey::from_slice(&[0; 15]), Err(BadKeyLength(15)));
        assert_eq!(AesKey::from_slice(&[0; 24]).unwrap().key_len(), AesKeyLen::Aes192);
    }

    #[test]
    fn zeroize_clears_the_bytes() {
        let mut s = SecretBytes::from_slice(&[0xAA; 32]);
        s.zeroize();
        // Vec's zeroize wipes the whole allocation, then empties it.
        assert!(s.is_empty());
    }
}
