//! Command and response encryption (Amd D §6.2.6, §6.2.7).
//!
//! C-DECRYPTION: `ICV = AES-ECB(S-ENC, counter as 16 bytes)`, then AES-CBC over
//! the padded data. R-ENCRYPTION: `ICV = AES-ECB(S-ENC, 80 ‖ counter as 15
//! bytes)`, with the counter of the command being answered. The counter is 1
//! for the first command after EXTERNAL AUTHENTICATE and counts every secured
//! command, with or without data.

use zeroize::Zeroizing;

use super::block::{cbc_decrypt, cbc_encrypt, encrypt_block, pad, unpadded_len, Block, BLOCK};
use crate::secret::AesKey;

fn counter_block(counter: u64) -> Block {
    let mut b: Block = [0; BLOCK];
    b[BLOCK - 8..].copy_from_slice(&counter.to_be_bytes());
    b
}

/// The ICV for the data of command number `counter`.
pub(crate) fn command_icv(s_enc: &AesKey, counter: u64) -> Block {
    encrypt_block(s_enc, &counter_block(counter))
}

/// The ICV for the data of the response to command number `counter`.
pub(crate) fn response_icv(s_enc: &AesKey, counter: u64) -> Block {
    let mut b = counter_block(counter);
    b[0] = 0x80;
    encrypt_block(s_enc, &b)
}

fn encrypt(s_enc: &AesKey, icv: &Block, plain: &[u8]) -> Vec<u8> {
    let mut data = pad(plain);
    cbc_encrypt(s_enc, icv, &mut data);
    data.to_vec()
}

fn decrypt(s_enc: &AesKey, icv: &Block, cipher: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if cipher.is_empty() || cipher.len() % BLOCK != 0 {
        return None;
    }
    let mut data = Zeroizing::new(cipher.to_vec());
    cbc_decrypt(s_enc, icv, &mut data);
    let len = unpadded_len(&data)?;
    data.truncate(len);
    Some(data)
}

/// Pads and encrypts the data field of command number `counter`. The caller
/// encrypts only a non-empty data field.
pub(crate) fn encrypt_command(s_enc: &AesKey, counter: u64, plain: &[u8]) -> Vec<u8> {
    encrypt(s_enc, &command_icv(s_enc, counter), plain)
}

/// Decrypts and unpads the data field of command number `counter`; `None`
/// when it is not a padded whole number of blocks.
pub(crate) fn decrypt_command(s_enc: &AesKey, counter: u64, cipher: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    decrypt(s_enc, &command_icv(s_enc, counter), cipher)
}

/// Pads and encrypts the data field of the response to command `counter`.
pub(crate) fn encrypt_response(s_enc: &AesKey, counter: u64, plain: &[u8]) -> Vec<u8> {
    encrypt(s_enc, &response_icv(s_enc, counter), plain)
}

/// Decrypts and unpads the data field of the response to command `counter`.
pub(crate) fn decrypt_response(s_enc: &AesKey, counter: u64, cipher: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    decrypt(s_enc, &response_icv(s_enc, counter), cipher)
}

/// The largest plain data field a secured command can carry: the secured
/// field (encrypted data plus the 8-byte C-MAC) must fit 65 535 bytes.
pub(crate) fn max_plain_command_len(encrypted: bool) -> usize {
    let room = crate::codec::MAX_EXTENDED_LC - super::mac::MAC_LEN;
    if encrypted {
        // Padding adds 1..=16 bytes up to a whole block.
        (room / BLOCK) * BLOCK - 1
    } else {
        room
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key() -> AesKey {
        AesKey::from_slice(&[0x33; 24]).unwrap()
    }

    #[test]
    fn icvs_follow_the_counter_layouts() {
        let k = key();
        let mut b = [0u8; 16];
        b[15] = 1;
        assert_eq!(command_icv(&k, 1), encrypt_block(&k, &b));
        b[0] = 0x80;
        assert_eq!(response_icv(&k, 1), encrypt_block(&k, &b));
        assert_ne!(command_icv(&k, 1), command_icv(&k, 2));
    }

    #[test]
    fn round_trips_and_separates_directions_and_counters() {
        let k = key();
        for len in [0, 1, 15, 16, 17, 300] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let c = encrypt_command(&k, 5, &plain);
            assert_eq!(c.len(), (len / 16 + 1) * 16);
            assert_eq!(&decrypt_command(&k, 5, &c).unwrap()[..], &plain[..]);
            let r = encrypt_response(&k, 5, &plain);
            assert_ne!(c, r);
            assert_eq!(&decrypt_response(&k, 5, &r).unwrap()[..], &plain[..]);
            // A wrong counter garbles the first block and, almost surely, the padding.
            if len >= 16 {
                assert_ne!(
                    decrypt_command(&k, 6, &c).as_deref().map(|v| &v[..]),
                    Some(&plain[..])
                );
            }
        }
        assert!(decrypt_command(&k, 1, &[]).is_none());
        assert!(decrypt_command(&k, 1, &[0; 15]).is_none());
    }

    #[test]
    fn maximum_lengths_fit_an_apdu() {
        let enc = max_plain_command_len(true);
        assert_eq!((enc / 16 + 1) * 16 + 8, 65_528);
        assert!(((enc + 1) / 16 + 1) * 16 + 8 > 65_535);
        assert_eq!(max_plain_command_len(false) + 8, 65_535);
    }
}
