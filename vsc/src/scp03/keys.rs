//! Static keys of a keyset and the session keys derived from them (Amd D
//! §6.1, §6.2.1).

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use super::kdf::{derive, DerivationConstant, OutputLen};
use super::Scp03Error;
use crate::secret::{AesKey, AesKeyLen};

/// A keyset's static keys: Key-ENC, Key-MAC and Key-DEK, all of one length.
/// Zeroized on drop; `Debug` shows only the length.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct StaticKeys {
    enc: AesKey,
    mac: AesKey,
    dek: AesKey,
}

impl StaticKeys {
    /// The keyset; the three keys must have the same length (Amd D §6.1).
    pub fn new(enc: AesKey, mac: AesKey, dek: AesKey) -> Result<Self, Scp03Error> {
        let (e, m, d) = (enc.key_len(), mac.key_len(), dek.key_len());
        if e != m || e != d {
            return Err(Scp03Error::KeyLengthMismatch {
                enc: e.bytes(),
                mac: m.bytes(),
                dek: d.bytes(),
            });
        }
        Ok(StaticKeys { enc, mac, dek })
    }

    /// Key-ENC: derives S-ENC and the pseudo-random card challenge.
    pub fn enc(&self) -> &AesKey {
        &self.enc
    }

    /// Key-MAC: derives S-MAC and S-RMAC.
    pub fn mac(&self) -> &AesKey {
        &self.mac
    }

    /// Key-DEK: encrypts sensitive data such as keys in PUT KEY.
    pub fn dek(&self) -> &AesKey {
        &self.dek
    }

    pub fn key_len(&self) -> AesKeyLen {
        self.enc.key_len()
    }
}

impl fmt::Debug for StaticKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StaticKeys({:?}, [REDACTED])", self.key_len())
    }
}

/// The session keys of one secure channel session: S-ENC, S-MAC and S-RMAC,
/// each as long as the static keys. Zeroized on drop; `Debug` shows only the
/// length.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    s_enc: AesKey,
    s_mac: AesKey,
    s_rmac: AesKey,
}

impl SessionKeys {
    /// Derives the session keys with context `host challenge ‖ card challenge`.
    pub fn derive(keys: &StaticKeys, host_challenge: &[u8; 8], card_challenge: &[u8; 8]) -> Self {
        let mut context = [0u8; 16];
        context[..8].copy_from_slice(host_challenge);
        context[8..].copy_from_slice(card_challenge);
        let len = OutputLen::from(keys.key_len());
        let one = |key: &AesKey, constant| {
            let bytes = derive(key, constant, len, &context);
            match AesKey::from_slice(&bytes) {
                Ok(k) => k,
                // `len` is the static key's length, which `AesKey` admitted.
                Err(_) => unreachable!("a derived session key has a valid AES key length"),
            }
        };
        SessionKeys {
            s_enc: one(&keys.enc, DerivationConstant::SEnc),
            s_mac: one(&keys.mac, DerivationConstant::SMac),
            s_rmac: one(&keys.mac, DerivationConstant::SRmac),
        }
    }

    /// S-ENC: command and response encryption.
    pub fn s_enc(&self) -> &AesKey {
        &self.s_enc
    }

    /// S-MAC: cryptograms and C-MACs.
    pub fn s_mac(&self) -> &AesKey {
        &self.s_mac
    }

    /// S-RMAC: R-MACs.
    pub fn s_rmac(&self) -> &AesKey {
        &self.s_rmac
    }
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionKeys({:?}, [REDACTED])", self.s_enc.key_len())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn k(len: usize, first: u8) -> AesKey {
        AesKey::from_slice(&(first..first + len as u8).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn lengths_must_match() {
        assert_eq!(
            StaticKeys::new(k(16, 0), k(24, 0), k(16, 0)).unwrap_err(),
            Scp03Error::KeyLengthMismatch {
                enc: 16,
                mac: 24,
                dek: 16
            }
        );
        for len in [16, 24, 32] {
            let keys = StaticKeys::new(k(len, 0x40), k(len, 0x40), k(len, 0x40)).unwrap();
            let s = SessionKeys::derive(&keys, &[1; 8], &[2; 8]);
            assert_eq!(s.s_enc().expose_secret().len(), len);
            assert_eq!(s.s_rmac().expose_secret().len(), len);
            assert_ne!(s.s_mac(), s.s_rmac());
        }
    }

    #[test]
    fn debug_is_redacted() {
        let keys = StaticKeys::new(k(16, 0x40), k(16, 0x40), k(16, 0x40)).unwrap();
        let s = SessionKeys::derive(&keys, &[1; 8], &[2; 8]);
        for d in [format!("{keys:?}"), format!("{s:?}")] {
            assert!(d.contains("REDACTED"), "{d}");
            assert!(!d.contains("40") && !d.contains("41"), "{d}");
        }
    }
}
