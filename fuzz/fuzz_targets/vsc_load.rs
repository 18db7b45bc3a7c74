//! The VSC loader on arbitrary bytes: inspection without a key and opening
//! with a KEK never panic. Each input is tried twice: as it is (stopped by
//! the integrity digest almost always) and with the SHA-256 trailer
//! recomputed, so mutations reach the body, header and slot parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use vsc::file::{Unlock, Vsc, VscFile};
use vsc::secret::AesKey;

fuzz_target!(|data: &[u8]| {
    let kek = match AesKey::from_slice(&[0x4B; 32]) {
        Ok(k) => k,
        Err(_) => return,
    };
    let unlock = Unlock::Kek {
        key_id: "fuzz-kek/1".into(),
        key: kek,
    };
    let _ = VscFile::inspect(data);
    let _ = Vsc::open(data, &unlock);

    if data.len() >= 32 {
        let (body, _) = data.split_at(data.len() - 32);
        let mut fixed = body.to_vec();
        fixed.extend_from_slice(&Sha256::digest(body));
        let _ = VscFile::inspect(&fixed);
        if let Ok(vsc) = Vsc::open(&fixed, &unlock) {
            // Whatever opens re-encodes and opens again.
            // Only nonces are drawn.
            let mut rng = rand::rngs::OsRng;
            if let Ok(bytes) = vsc.to_bytes(&mut rng) {
                assert!(Vsc::open(&bytes, &unlock).is_ok());
            }
        }
    }
});
