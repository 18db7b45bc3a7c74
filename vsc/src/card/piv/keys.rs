//! The asymmetric keys of the PIV slots: RSA-2048 and ECC P-256.
//!
//! A key lives in the VSC's secret key area as PKCS#8 DER and is parsed for
//! each use; the parsed key zeroizes itself when dropped. Every key made or
//! imported here passes a pairwise consistency check (sign, then verify with
//! the public half) before it is stored.

use p256::ecdsa::signature::hazmat::{PrehashVerifier, RandomizedPrehashSigner};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand::rngs::StdRng;
use rand::RngCore;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Pkcs1v15Sign, RsaPrivateKey};
use zeroize::Zeroizing;

use crate::codec::{StatusWord, Tlv};
use crate::file::{KeyAlgorithm, SecretKeyEntry};
use crate::secret::SecretBytes;
use crate::tag;

/// RSA-2048: the modulus length in bytes.
pub(super) const RSA_2048_LEN: usize = 256;
/// The public exponent of every RSA key this card makes or accepts.
pub(super) const RSA_EXPONENT: u32 = 65_537;
/// P-256: the length of a field element and of a scalar.
pub(super) const P256_LEN: usize = 32;
/// The longest hash an ECDSA signature request may carry (SHA-512); longer
/// input is not a hash.
const MAX_HASH_LEN: usize = 64;

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error)]
pub(super) enum KeyError {
    #[error("{0} keys are not supported by this PIV application")]
    Unsupported(KeyAlgorithm),
    #[error("the stored {0} key is not a readable PKCS#8 key of that algorithm")]
    Unreadable(KeyAlgorithm),
    #[error("generating a {0} key failed")]
    Generation(KeyAlgorithm),
    #[error("the {0} key failed its pairwise consistency check")]
    Inconsistent(KeyAlgorithm),
    #[error("encoding the {0} key as PKCS#8 failed")]
    Encoding(KeyAlgorithm),
}

impl KeyError {
    /// The status word a card answers when this happens while using a
    /// stored key or generating one.
    pub(super) fn status_word(&self) -> StatusWord {
        match self {
            KeyError::Unsupported(_) => StatusWord::FunctionNotSupported,
            KeyError::Unreadable(_) => StatusWord::ReferenceDataNotUsable,
            KeyError::Generation(_) | KeyError::Inconsistent(_) | KeyError::Encoding(_) => {
                StatusWord::NoPreciseDiagnosis
            }
        }
    }
}

/// A private key of a PIV slot.
pub(super) enum PivKey {
    Rsa2048(Box<RsaPrivateKey>),
    P256(p256::SecretKey),
}

impl PivKey {
    /// Whether this card makes and uses keys of `algorithm` in key slots.
    pub(super) fn supports(algorithm: KeyAlgorithm) -> bool {
        matches!(algorithm, KeyAlgorithm::Rsa2048 | KeyAlgorithm::EccP256)
    }

    pub(super) fn algorithm(&self) -> KeyAlgorithm {
        match self {
            PivKey::Rsa2048(_) => KeyAlgorithm::Rsa2048,
            PivKey::P256(_) => KeyAlgorithm::EccP256,
        }
    }

    /// A new key, checked pairwise.
    pub(super) fn generate(algorithm: KeyAlgorithm, rng: &mut StdRng) -> Result<Self, KeyError> {
        let key = match algorithm {
            KeyAlgorithm::Rsa2048 => {
                let e = BigUint::from(RSA_EXPONENT);
                PivKey::Rsa2048(Box::new(
                    RsaPrivateKey::new_with_exp(rng, RSA_2048_LEN * 8, &e)
                        .map_err(|_| KeyError::Generation(algorithm))?,
                ))
            }
            KeyAlgorithm::EccP256 => PivKey::P256(p256::SecretKey::random(rng)),
            other => return Err(KeyError::Unsupported(other)),
        };
        key.check_pairwise(rng)?;
        Ok(key)
    }

    /// An RSA-2048 key from its primes; the CRT values must be the ones the
    /// primes and the exponent 65537 give. `None` when the values do not
    /// make such a key.
    pub(super) fn rsa_from_crt(p: &[u8], q: &[u8], dp: &[u8], dq: &[u8], qinv: &[u8]) -> Option<Self> {
        let p = Zeroizing::new(BigUint::from_bytes_be(p));
        let q = Zeroizing::new(BigUint::from_bytes_be(q));
        let three = BigUint::from(3u8);
        let two = BigUint::from(2u8);
        // Odd primes of at least 3: smaller values would make the key
        // arithmetic below divide by zero.
        if *p < three
            || *q < three
            || (&*p % &two) == BigUint::from(0u8)
            || (&*q % &two) == BigUint::from(0u8)
        {
            return None;
        }
        if (&*p * &*q).bits() != RSA_2048_LEN * 8 {
            return None;
        }
        let key = RsaPrivateKey::from_p_q((*p).clone(), (*q).clone(), BigUint::from(RSA_EXPONENT)).ok()?;
        let given = |v: &[u8]| Zeroizing::new(BigUint::from_bytes_be(v));
        let crt_agrees = {
            use rsa::traits::PrivateKeyParts;
            let coefficient = key.crt_coefficient().map(Zeroizing::new);
            key.dp() == Some(&*given(dp))
                && key.dq() == Some(&*given(dq))
                && coefficient.as_deref() == Some(&*given(qinv))
        };
        crt_agrees.then(|| PivKey::Rsa2048(Box::new(key)))
    }

    /// A P-256 key from its scalar `d` (big-endian, at most 32 bytes):
    /// `None` unless 0 < d < n.
    pub(super) fn p256_from_scalar(d: &[u8]) -> Option<Self> {
        let mut bytes = Zeroizing::new([0u8; P256_LEN]);
        let start = P256_LEN.checked_sub(d.len())?;
        bytes.get_mut(start..)?.copy_from_slice(d);
        // A fixed 32-byte array: `from_slice` cannot fail on it.
        let field = p256::FieldBytes::from_slice(bytes.as_slice());
        p256::SecretKey::from_bytes(field).ok().map(PivKey::P256)
    }

    /// The key in a secret key entry.
    pub(super) fn load(entry: &SecretKeyEntry) -> Result<Self, KeyError> {
        let der = entry.material().expose_secret();
        match entry.algorithm {
            KeyAlgorithm::Rsa2048 => {
                let key =
                    RsaPrivateKey::from_pkcs8_der(der).map_err(|_| KeyError::Unreadable(entry.algorithm))?;
                if key.size() != RSA_2048_LEN {
                    return Err(KeyError::Unreadable(entry.algorithm));
                }
                Ok(PivKey::Rsa2048(Box::new(key)))
            }
            KeyAlgorithm::EccP256 => p256::SecretKey::from_pkcs8_der(der)
                .map(PivKey::P256)
                .map_err(|_| KeyError::Unreadable(entry.algorithm)),
            other => Err(KeyError::Unsupported(other)),
        }
    }

    /// The private key as PKCS#8 DER, for the secret key area.
    pub(super) fn to_pkcs8(&self) -> Result<SecretBytes, KeyError> {
        let doc = match self {
            PivKey::Rsa2048(k) => k.to_pkcs8_der(),
            PivKey::P256(k) => k.to_pkcs8_der(),
        }
        .map_err(|_| KeyError::Encoding(self.algorithm()))?;
        Ok(SecretBytes::from_slice(doc.as_bytes()))
    }

    /// The public key's data objects: RSA `81` modulus, `82` exponent; EC
    /// `86` uncompressed point.
    pub(super) fn public_objects(&self) -> Vec<Tlv> {
        match self {
            PivKey::Rsa2048(k) => vec![
                Tlv::new(tag!(0x81), left_pad(&k.n().to_bytes_be(), RSA_2048_LEN)),
                Tlv::new(tag!(0x82), k.e().to_bytes_be()),
            ],
            PivKey::P256(k) => vec![Tlv::new(
                tag!(0x86),
                k.public_key().to_encoded_point(false).as_bytes().to_vec(),
            )],
        }
    }

    /// The public key template GENERATE answers with: `7F49 { … }`.
    pub(super) fn public_template(&self) -> Vec<u8> {
        Tlv::constructed(tag!(0x7F49), &self.public_objects()).to_bytes()
    }

    /// Checks the input of a private-key operation before any PIN status is
    /// spent on it.
    pub(super) fn check_input(&self, op: Operation, input: &[u8]) -> Result<(), StatusWord> {
        match (self, op) {
            (PivKey::Rsa2048(k), Operation::Private) => {
                if input.len() != RSA_2048_LEN || BigUint::from_bytes_be(input) >= *k.n() {
                    return Err(StatusWord::IncorrectData);
                }
            }
            (PivKey::Rsa2048(_), Operation::KeyAgreement) => return Err(StatusWord::IncorrectData),
            (PivKey::P256(_), Operation::Private) => {
                if input.is_empty() || input.len() > MAX_HASH_LEN {
                    return Err(StatusWord::IncorrectData);
                }
            }
            (PivKey::P256(_), Operation::KeyAgreement) => {
                peer_point(input)?;
            }
        }
        Ok(())
    }

    /// Runs `op` on `input` (checked with [`PivKey::check_input`]):
    ///
    /// - RSA, `81`: the raw private operation on a block padded by the host
    ///   (signature or decryption alike); 256 bytes out.
    /// - EC, `81`: ECDSA over a hash. The hash is converted to an integer
    ///   as FIPS 186 says: the leftmost 32 bytes of a longer one, a shorter
    ///   one as it is (left-padded with zeros). Out: DER `SEQUENCE{r, s}`.
    /// - EC, `85`: ECDH with the peer's uncompressed point; out: the shared
    ///   secret, the x-coordinate.
    pub(super) fn compute(
        &self,
        op: Operation,
        input: &[u8],
        rng: &mut StdRng,
    ) -> Result<Vec<u8>, StatusWord> {
        self.check_input(op, input)?;
        match (self, op) {
            (PivKey::Rsa2048(k), Operation::Private) => {
                let c = BigUint::from_bytes_be(input);
                let m = rsa::hazmat::rsa_decrypt_and_check(k.as_ref(), Some(rng), &c)
                    .map_err(|_| StatusWord::NoPreciseDiagnosis)?;
                Ok(left_pad(&m.to_bytes_be(), RSA_2048_LEN))
            }
            (PivKey::P256(k), Operation::Private) => {
                let mut prehash = [0u8; P256_LEN];
                let used = input.get(..P256_LEN).unwrap_or(input);
                let start = P256_LEN - used.len();
                if let Some(dst) = prehash.get_mut(start..) {
                    dst.copy_from_slice(used);
                }
                let signer = SigningKey::from(k);
                let sig: Signature = signer
                    .sign_prehash_with_rng(rng, &prehash)
                    .map_err(|_| StatusWord::NoPreciseDiagnosis)?;
                Ok(sig.to_der().as_bytes().to_vec())
            }
            (PivKey::P256(k), Operation::KeyAgreement) => {
                let peer = peer_point(input)?;
                let shared = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine());
                Ok(shared.raw_secret_bytes().to_vec())
            }
            (PivKey::Rsa2048(_), Operation::KeyAgreement) => Err(StatusWord::IncorrectData),
        }
    }

    /// Signs a random hash and verifies the signature with the public key.
    pub(super) fn check_pairwise(&self, rng: &mut StdRng) -> Result<(), KeyError> {
        let mut hash = [0u8; 32];
        rng.fill_bytes(&mut hash);
        let ok = match self {
            PivKey::Rsa2048(k) => {
                let scheme = Pkcs1v15Sign::new_unprefixed;
                k.sign_with_rng(rng, scheme(), &hash)
                    .ok()
                    .is_some_and(|sig| k.to_public_key().verify(scheme(), &hash, &sig).is_ok())
            }
            PivKey::P256(k) => {
                let signer = SigningKey::from(k);
                let signed: Result<Signature, _> = signer.sign_prehash_with_rng(rng, &hash);
                signed
                    .ok()
                    .is_some_and(|sig| VerifyingKey::from(&signer).verify_prehash(&hash, &sig).is_ok())
            }
        };
        if ok {
            Ok(())
        } else {
            Err(KeyError::Inconsistent(self.algorithm()))
        }
    }
}

/// What GENERAL AUTHENTICATE asks of an asymmetric key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Operation {
    /// `81`: sign (ECDSA) or the raw RSA private operation.
    Private,
    /// `85`: key agreement (ECDH).
    KeyAgreement,
}

/// The peer's public key for ECDH: an uncompressed P-256 point on the curve.
fn peer_point(bytes: &[u8]) -> Result<p256::PublicKey, StatusWord> {
    if bytes.len() != 1 + 2 * P256_LEN || bytes.first() != Some(&0x04) {
        return Err(StatusWord::IncorrectData);
    }
    p256::PublicKey::from_sec1_bytes(bytes).map_err(|_| StatusWord::IncorrectData)
}

/// `bytes` left-padded with zeros to `len` (unchanged when longer).
fn left_pad(bytes: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len.saturating_sub(bytes.len())];
    out.extend_from_slice(bytes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn p256_scalars_out_of_range_are_refused() {
        assert!(PivKey::p256_from_scalar(&[0; 32]).is_none());
        assert!(PivKey::p256_from_scalar(&[0xFF; 32]).is_none());
        assert!(PivKey::p256_from_scalar(&[0x01; 33]).is_none());
        assert!(PivKey::p256_from_scalar(&[0x01]).is_some());
    }

    #[test]
    fn generated_p256_keys_round_trip_through_pkcs8() {
        let mut rng = StdRng::seed_from_u64(5);
        let key = PivKey::generate(KeyAlgorithm::EccP256, &mut rng).unwrap();
        let material = key.to_pkcs8().unwrap();
        let entry = SecretKeyEntry::new(
            crate::file::KeyRef::PivSlot(0x9A),
            KeyAlgorithm::EccP256,
            material,
            crate::file::KeyAttributes {
                origin: crate::file::KeyOrigin::GeneratedOnCard,
                pin_policy: crate::file::PinPolicy::Default,
                touch_policy: crate::file::TouchPolicy::Default,
            },
        )
        .unwrap();
        let back = PivKey::load(&entry).unwrap();
        assert_eq!(back.public_template(), key.public_template());
        let template = key.public_template();
        assert_eq!(&template[..5], &[0x7F, 0x49, 0x43, 0x86, 0x41]);
    }

    #[test]
    fn small_or_even_primes_are_refused() {
        let one = [1u8];
        assert!(PivKey::rsa_from_crt(&[0], &[0], &one, &one, &one).is_none());
        assert!(PivKey::rsa_from_crt(&[2], &[7], &one, &one, &one).is_none());
        assert!(PivKey::rsa_from_crt(&[0xFF; 128], &[0xFF; 128], &one, &one, &one).is_none());
    }
}
