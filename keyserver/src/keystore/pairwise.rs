//! Key generation with a pairwise consistency check: every key pair the
//! keystore makes signs and verifies (RSA also encrypts and decrypts) before
//! it is used or stored.

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey};
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::{Pkcs1v15Encrypt, Pkcs1v15Sign, RsaPrivateKey};

use crate::ports::KeyError;

fn failed(what: &str, why: impl std::fmt::Display) -> KeyError {
    KeyError::Generation(format!(
        "the pairwise consistency check of a new {what} key failed: {why}"
    ))
}

/// Signs a random message with the private key and verifies it with the public.
pub fn check_p256(key: &SigningKey) -> Result<(), KeyError> {
    let mut msg = [0u8; 32];
    OsRng.fill_bytes(&mut msg);
    let sig: Signature = key.try_sign(&msg).map_err(|e| failed("P-256", e))?;
    key.verifying_key()
        .verify(&msg, &sig)
        .map_err(|e| failed("P-256", e))
}

/// Signs and verifies, then encrypts with the public key and decrypts.
pub fn check_rsa(key: &RsaPrivateKey) -> Result<(), KeyError> {
    key.validate().map_err(|e| failed("RSA", e))?;
    let public = key.to_public_key();
    let mut digest = [0u8; 32];
    OsRng.fill_bytes(&mut digest);
    let sig = key
        .sign_with_rng(&mut OsRng, Pkcs1v15Sign::new_unprefixed(), &digest)
        .map_err(|e| failed("RSA", e))?;
    public
        .verify(Pkcs1v15Sign::new_unprefixed(), &digest, &sig)
        .map_err(|e| failed("RSA", e))?;
    let ct = public
        .encrypt(&mut OsRng, Pkcs1v15Encrypt, &digest)
        .map_err(|e| failed("RSA", e))?;
    let pt = zeroize::Zeroizing::new(key.decrypt(Pkcs1v15Encrypt, &ct).map_err(|e| failed("RSA", e))?);
    if pt.as_slice() != digest {
        return Err(failed("RSA", "decryption did not return the plaintext"));
    }
    Ok(())
}

/// A new P-256 key, checked.
pub fn generate_p256() -> Result<SigningKey, KeyError> {
    let key = SigningKey::random(&mut OsRng);
    check_p256(&key)?;
    Ok(key)
}

/// A new RSA-2048 key (e = 65537), checked.
pub fn generate_rsa2048() -> Result<RsaPrivateKey, KeyError> {
    let key =
        RsaPrivateKey::new(&mut OsRng, 2048).map_err(|e| KeyError::Generation(format!("RSA-2048: {e}")))?;
    check_rsa(&key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatched_halves_fail_the_check() {
        let a = generate_p256().unwrap();
        let b = SigningKey::random(&mut OsRng);
        let sig: Signature = a.sign(b"m");
        assert!(b.verifying_key().verify(b"m", &sig).is_err());
        check_p256(&b).unwrap();
    }

    #[test]
    fn rsa_check_passes_for_a_good_key() {
        let k = generate_rsa2048().unwrap();
        assert_eq!(rsa::traits::PublicKeyParts::size(&k), 256);
    }
}
