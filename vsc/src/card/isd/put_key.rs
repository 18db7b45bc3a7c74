//! PUT KEY for SCP03 key sets (Card Specification §11.8, Amendment D §7.2).
//!
//! `80 D8 P1 P2 Lc data`:
//!
//! - P1: bit 8 must be 0 (a chain of PUT KEY commands is not supported,
//!   `6A86`); bits 7–1 the KVN of the key set to replace, or `00` to add a
//!   key set.
//! - P2: `81` (several keys, the first with key identifier 1). Any other
//!   value answers `6A86`: only whole key sets (Key-ENC, Key-MAC, Key-DEK)
//!   are loaded.
//! - Data: the new KVN (`01`–`7F`), then three key data fields, one per key
//!   identifier 1, 2, 3, each `88 L [Lk] E(Key-DEK, key) 03 KCV`. The key
//!   component block carries the key length `Lk` first when its length is
//!   not a multiple of 16 (Amendment D Table 7-10 always sends it), and is
//!   the bare ciphertext otherwise (Card Specification Table 11-71).
//!
//! The keys are decrypted with the static Key-DEK of the key set the current
//! session was opened with (AES-CBC, zero ICV; SCP03 has no session DEK), and
//! each KCV (first 3 bytes of `AES(key, 16 × 01)`) is checked. The command
//! needs a session with C-DECRYPTION (level `03`, `13` or `33`): the keys
//! then travel encrypted twice.
//!
//! | condition | SW |
//! |---|---|
//! | no session, or one without C-DECRYPTION | `6982` |
//! | card CARD_LOCKED or TERMINATED | `6985` |
//! | P1 bit 8, P2 ≠ `81` | `6A86` |
//! | malformed data, not 3 AES keys of one length, KVN outside `01`–`7F`, a key type other than AES (`88`), adding a KVN that exists, replacing with a different key length | `6A80` |
//! | a wrong KCV | `6982` (Table 11-78; the deprecated `9485` is not used) |
//! | the key set to replace (P1) or the session's key set does not exist | `6A88` |
//! | already [`MAX_KEYSETS`] key sets | `6A84` |
//!
//! Success replaces (or adds) the key set atomically, with its sequence
//! counter at 0 and not marked as the card stock's transport set, and
//! answers `new KVN ‖ KCV(ENC) ‖ KCV(MAC) ‖ KCV(DEK)`.
//!
//! After a PUT KEY that replaced the session's own key set under a new KVN,
//! the session goes on (its session keys are derived already) but a further
//! PUT KEY in it finds no Key-DEK (`6A88`): open a session with the new keys.

use crate::codec::{CommandApdu, ResponseApdu, StatusWord};
use crate::scp03::{
    cryptograms_equal, decrypt_sensitive_data, key_check_value, put_key_component, StaticKeys, KEY_TYPE_AES,
};
use crate::secret::AesKey;

use super::super::app::Ctx;
use super::super::gp_state::{self, MAX_KEYSETS};
use super::{require_content_changes, require_issuer};

/// P2 of a PUT KEY with a whole key set: several keys, starting at key
/// identifier 1.
pub const P2_KEY_SET: u8 = 0x81;
/// The length of an AES key check value.
pub const KCV_LEN: usize = 3;
const BLOCK: usize = 16;

/// One key data field, still encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyData<'a> {
    /// The length of the clear key (16, 24 or 32).
    pub key_len: usize,
    /// `E(Key-DEK, key ‖ padding)`, a multiple of 16 bytes.
    pub encrypted: &'a [u8],
    pub kcv: &'a [u8],
}

/// A parsed PUT KEY of an AES key set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutKey<'a> {
    /// The key set to replace; `None` adds one.
    pub replace: Option<u8>,
    pub new_kvn: u8,
    /// Key-ENC, Key-MAC, Key-DEK.
    pub keys: [KeyData<'a>; 3],
}

/// A BER length as PUT KEY codes it: `00`–`7F`, `80` (128, for backward
/// compatibility), `81 xx`, `82 xx xx`.
fn length(input: &[u8]) -> Option<(usize, &[u8])> {
    let (first, rest) = input.split_first()?;
    match *first {
        0x81 => {
            let (b, rest) = rest.split_first()?;
            Some((usize::from(*b), rest))
        }
        0x82 => {
            let (b, rest) = rest.split_first_chunk::<2>()?;
            Some((usize::from(u16::from_be_bytes(*b)), rest))
        }
        0x00..=0x80 => Some((usize::from(*first), rest)),
        _ => None,
    }
}

fn take(input: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (input.len() >= n).then(|| input.split_at(n))
}

/// One key data field (Table 11-68, basic format, one component) from the
/// front of `input`.
fn key_data(input: &[u8]) -> Option<(KeyData<'_>, &[u8])> {
    let (key_type, rest) = input.split_first()?;
    if *key_type != KEY_TYPE_AES {
        return None;
    }
    let (block_len, rest) = length(rest)?;
    let (block, rest) = take(rest, block_len)?;
    let (kcv_len, rest) = rest.split_first()?;
    let (kcv, rest) = take(rest, usize::from(*kcv_len))?;
    if kcv.len() != KCV_LEN {
        return None;
    }
    let (key_len, encrypted) = if block.len() % BLOCK == 0 {
        (block.len(), block)
    } else {
        length(block)?
    };
    let padded_ok =
        encrypted.len() % BLOCK == 0 && encrypted.len() >= key_len && encrypted.len() - key_len < BLOCK;
    if !matches!(key_len, 16 | 24 | 32) || !padded_ok {
        return None;
    }
    Some((
        KeyData {
            key_len,
            encrypted,
            kcv,
        },
        rest,
    ))
}

impl<'a> TryFrom<&'a CommandApdu> for PutKey<'a> {
    type Error = StatusWord;

    fn try_from(cmd: &'a CommandApdu) -> Result<Self, StatusWord> {
        if cmd.p1() & 0x80 != 0 || cmd.p2() != P2_KEY_SET {
            return Err(StatusWord::IncorrectP1P2);
        }
        let replace = match cmd.p1() {
            0 => None,
            kvn => Some(kvn),
        };
        let bad = StatusWord::IncorrectData;
        let (new_kvn, mut rest) = cmd.data().split_first().ok_or(bad)?;
        if !(0x01..=0x7F).contains(new_kvn) {
            return Err(bad);
        }
        let mut keys = Vec::with_capacity(3);
        while !rest.is_empty() {
            let (k, r) = key_data(rest).ok_or(bad)?;
            keys.push(k);
            rest = r;
        }
        let keys: [KeyData<'a>; 3] = keys.try_into().map_err(|_| bad)?;
        if keys.iter().any(|k| k.key_len != keys[0].key_len) {
            return Err(bad);
        }
        Ok(PutKey {
            replace,
            new_kvn: *new_kvn,
            keys,
        })
    }
}

/// The PUT KEY command a host sends to load `keys` as key set `new_kvn`,
/// replacing key set `replace` (or adding one with `None`), the keys
/// encrypted under `dek` (the static Key-DEK of the session's key set). Send
/// it through an SCP03 session with C-DECRYPTION.
pub fn put_key_command(replace: Option<u8>, new_kvn: u8, dek: &AesKey, keys: &StaticKeys) -> CommandApdu {
    let mut data = vec![new_kvn];
    for key in [keys.enc(), keys.mac(), keys.dek()] {
        data.extend(put_key_component(dek, key));
    }
    let cmd = CommandApdu::new(
        0x80,
        crate::codec::Instruction::PutKey,
        replace.unwrap_or(0),
        P2_KEY_SET,
    );
    // 1 + 3 × at most 42 bytes: always a valid data field.
    cmd.clone().with_data(data).unwrap_or(cmd)
}

/// Decrypts one key and checks its KCV.
fn decrypt(dek: &AesKey, k: &KeyData<'_>) -> Result<AesKey, StatusWord> {
    let clear = decrypt_sensitive_data(dek, k.encrypted).map_err(|_| StatusWord::IncorrectData)?;
    let key = clear
        .expose_secret()
        .get(..k.key_len)
        .and_then(|b| AesKey::from_slice(b).ok())
        .ok_or(StatusWord::IncorrectData)?;
    if !cryptograms_equal(&key_check_value(&key), k.kcv) {
        return Err(StatusWord::SecurityStatusNotSatisfied);
    }
    Ok(key)
}

/// PUT KEY: see the module documentation.
pub fn run(ctx: &mut Ctx<'_>, cmd: &CommandApdu) -> Result<ResponseApdu, StatusWord> {
    require_issuer(ctx)?;
    let level = ctx
        .security_level()
        .ok_or(StatusWord::SecurityStatusNotSatisfied)?;
    if !level.c_decryption() {
        return Err(StatusWord::SecurityStatusNotSatisfied);
    }
    require_content_changes(ctx)?;
    let pk = PutKey::try_from(cmd)?;
    let session_kvn = ctx.session_kvn.ok_or(StatusWord::SecurityStatusNotSatisfied)?;
    let stored = gp_state::keysets(ctx.store.vsc()).map_err(|_| StatusWord::NoPreciseDiagnosis)?;
    let dek = stored
        .iter()
        .find(|s| s.set.kvn == session_kvn)
        .ok_or(StatusWord::ReferencedDataNotFound)?
        .set
        .keys
        .dek()
        .clone();
    let [enc, mac, kdek] = &pk.keys;
    let keys = StaticKeys::new(decrypt(&dek, enc)?, decrypt(&dek, mac)?, decrypt(&dek, kdek)?)
        .map_err(|_| StatusWord::IncorrectData)?;
    let exists = |kvn: u8| stored.iter().find(|s| s.set.kvn == kvn);
    match pk.replace {
        None => {
            if exists(pk.new_kvn).is_some() {
                return Err(StatusWord::IncorrectData);
            }
            if stored.len() >= MAX_KEYSETS {
                return Err(StatusWord::NotEnoughMemory);
            }
        }
        Some(old) => {
            let old_set = exists(old).ok_or(StatusWord::ReferencedDataNotFound)?;
            // A replaced key keeps its characteristics (§11.8.2.3.3).
            if old_set.set.keys.key_len() != keys.key_len() {
                return Err(StatusWord::IncorrectData);
            }
            if pk.new_kvn != old && exists(pk.new_kvn).is_some() {
                return Err(StatusWord::IncorrectData);
            }
        }
    }
    let vsc = ctx.store.vsc_mut();
    gp_state::put_keyset(vsc, pk.new_kvn, &keys, false).map_err(|_| StatusWord::MemoryFailure)?;
    if let Some(old) = pk.replace.filter(|old| *old != pk.new_kvn) {
        gp_state::remove_keyset(vsc, old);
    }
    let mut out = vec![pk.new_kvn];
    for key in [keys.enc(), keys.mac(), keys.dek()] {
        out.extend_from_slice(&key_check_value(key));
    }
    Ok(ResponseApdu::success(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn key(b: u8, len: usize) -> AesKey {
        AesKey::from_slice(&vec![b; len]).unwrap()
    }

    fn cmd(p1: u8, p2: u8, data: Vec<u8>) -> CommandApdu {
        CommandApdu::new(0x80, 0xD8, p1, p2).with_data(data).unwrap()
    }

    #[test]
    fn parses_amendment_d_and_bare_blocks() {
        let dek = key(0x40, 16);
        let mut data = vec![0x30];
        for b in [1, 2, 3] {
            data.extend(put_key_component(&dek, &key(b, 16)));
        }
        let c = cmd(0x01, 0x81, data);
        let pk = PutKey::try_from(&c).unwrap();
        assert_eq!((pk.replace, pk.new_kvn), (Some(1), 0x30));
        assert!(pk.keys.iter().all(|k| k.key_len == 16 && k.encrypted.len() == 16));
        // The same keys as bare 16-byte blocks (Table 11-71).
        let mut data = vec![0x30];
        for b in [1, 2, 3] {
            let f = put_key_component(&dek, &key(b, 16));
            data.extend([0x88, 0x10]);
            data.extend(&f[3..]);
        }
        let c = cmd(0x00, 0x81, data);
        let pk2 = PutKey::try_from(&c).unwrap();
        assert_eq!(pk2.replace, None);
        assert_eq!(pk2.keys[1].encrypted, pk.keys[1].encrypted);
    }

    #[test]
    fn refuses_what_it_does_not_load() {
        let dek = key(0x40, 16);
        let three = |kvn: u8, lens: [usize; 3]| {
            let mut d = vec![kvn];
            for (i, l) in lens.into_iter().enumerate() {
                d.extend(put_key_component(&dek, &key(i as u8, l)));
            }
            d
        };
        let ok = three(0x30, [16; 3]);
        assert_eq!(
            PutKey::try_from(&cmd(0x81, 0x81, ok.clone())).unwrap_err(),
            StatusWord::IncorrectP1P2
        );
        assert_eq!(
            PutKey::try_from(&cmd(0x01, 0x01, ok.clone())).unwrap_err(),
            StatusWord::IncorrectP1P2
        );
        for bad in [
            three(0x00, [16; 3]),
            three(0x80, [16; 3]),
            three(0x30, [16, 32, 16]),
            ok[..ok.len() - 1].to_vec(),
            ok[..1 + 23].to_vec(),
            [&ok[..], &[0x00]].concat(),
            vec![0x30],
        ] {
            assert_eq!(
                PutKey::try_from(&cmd(0x01, 0x81, bad)).unwrap_err(),
                StatusWord::IncorrectData
            );
        }
        let mut des = ok.clone();
        des[1] = 0x80; // DES key type
        assert_eq!(
            PutKey::try_from(&cmd(0x01, 0x81, des)).unwrap_err(),
            StatusWord::IncorrectData
        );
    }
}
