#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Property tests: the reader never panics on any input; any content the
//! API accepts round-trips.

mod file_support;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use file_support::*;
use proptest::prelude::*;
use vsc::file::{
    DataObject, KeyAlgorithm, KeyOrigin, KeyRef, NewVsc, ObjectId, PasswordEntry, PasswordRef,
    SecretKeyEntry, Vsc, VscFile,
};
use vsc::secret::SecretBytes;

fn valid_file() -> &'static Vec<u8> {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let mut rng = rng(200);
        full(&kek_protector("k", 1), &mut rng).to_bytes(&mut rng).unwrap()
    })
}

/// A frame around `body` with a correct length and digest, so the body
/// parser is reached.
fn framed(body: &[u8], minor: u16) -> Vec<u8> {
    let mut f = vsc::file::MAGIC.to_vec();
    f.extend_from_slice(&1u16.to_be_bytes());
    f.extend_from_slice(&minor.to_be_bytes());
    f.extend_from_slice(&(body.len() as u32).to_be_bytes());
    f.extend_from_slice(body);
    f.extend_from_slice(&[0; 64]);
    redigest(&mut f);
    f
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = VscFile::inspect(&bytes);
        prop_assert!(Vsc::open(&bytes, &kek("k", 1)).is_err());
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..400), minor in 0u16..3) {
        let f = framed(&body, minor);
        let _ = VscFile::inspect(&f);
        prop_assert!(Vsc::open(&f, &kek("k", 1)).is_err());
    }

    #[test]
    fn mutated_valid_files_never_open(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        minor in 0u16..2,
    ) {
        let orig = valid_file();
        let mut body = body(orig).to_vec();
        for (i, b) in &edits {
            let i = i.index(body.len());
            body[i] = *b;
        }
        let f = framed(&body, minor);
        let _ = VscFile::inspect(&f);
        // The frame's authentication tag is zero: nothing may open.
        prop_assert!(Vsc::open(&f, &kek("k", 1)).is_err());
    }

    #[test]
    fn truncated_or_spliced_bodies_never_panic(cut in any::<prop::sample::Index>(), len in 0usize..64) {
        let body = body(valid_file());
        let at = cut.index(body.len());
        let mut spliced = body[..at].to_vec();
        spliced.extend_from_slice(&body[at..(at + len).min(body.len())]);
        spliced.extend_from_slice(&body[at..]);
        for b in [&body[..at], &spliced[..]] {
            let f = framed(b, 0);
            let _ = VscFile::inspect(&f);
            prop_assert!(Vsc::open(&f, &kek("k", 1)).is_err());
        }
    }
}

fn object_id() -> impl Strategy<Value = ObjectId> {
    prop_oneof![
        any::<u32>().prop_map(ObjectId::Piv),
        any::<u32>().prop_map(ObjectId::Gp),
        "[a-zA-Z0-9 ._-]{1,24}".prop_map(ObjectId::Named),
        "\\PC{1,8}".prop_map(ObjectId::Named),
    ]
}

fn objects() -> impl Strategy<Value = BTreeMap<ObjectId, Vec<u8>>> {
    prop::collection::btree_map(object_id(), prop::collection::vec(any::<u8>(), 0..300), 0..8)
}

fn key_entry() -> impl Strategy<Value = SecretKeyEntry> {
    let key_ref = prop_oneof![
        prop::sample::select(vec![0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x82, 0x90, 0x95]).prop_map(KeyRef::PivSlot),
        (any::<u8>(), any::<u8>()).prop_map(|(kvn, kid)| KeyRef::Scp03 { kvn, kid }),
        "[a-z]{1,12}".prop_map(KeyRef::Named),
    ];
    let alg = prop::sample::select(vec![
        KeyAlgorithm::Aes128,
        KeyAlgorithm::Aes192,
        KeyAlgorithm::Aes256,
        KeyAlgorithm::Tdes,
        KeyAlgorithm::EccP256,
        KeyAlgorithm::Other(0x2E),
    ]);
    (key_ref, alg, any::<u8>(), any::<bool>()).prop_map(|(id, alg, fill, generated)| {
        let material = match alg.symmetric_key_len() {
            Some(n) => vec![fill; n],
            None if alg.is_asymmetric() => fake_pkcs8_p256(fill),
            None => vec![fill; 3],
        };
        let origin = if generated {
            KeyOrigin::GeneratedOnMaster
        } else {
            KeyOrigin::Imported
        };
        SecretKeyEntry::new(id, alg, SecretBytes::new(material), attrs(origin)).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_area_contents_round_trip(
        public in objects(),
        private in objects(),
        keys in prop::collection::vec(key_entry(), 0..6),
        pins in prop::collection::vec((prop::sample::select(vec![0x80u8, 0x81, 0x01, 0xFF]), "[0-9]{4,8}", 1u8..16), 0..4),
        label in "[A-Za-z0-9 ]{1,40}",
        created in any::<u64>(),
        serials in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..16), 0..4),
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let mut fields = NewVsc::new(label, "prop", created);
        fields.chip_serials = serials;
        let mut v = Vsc::create(fields, &kek_protector("k", 1), &mut rng).unwrap();
        for (id, value) in public {
            v.put_public(DataObject::new(id, value)).unwrap();
        }
        for (id, value) in private {
            v.put_private(DataObject::new(id, value)).unwrap();
        }
        for k in keys {
            v.put_secret_key(k);
        }
        for (r, pin, retries) in pins {
            let e = PasswordEntry::new(
                PasswordRef::from_byte(r),
                &SecretBytes::from_slice(pin.as_bytes()),
                retries,
                4,
                8,
                &mut rng,
            )
            .unwrap();
            v.put_password(e);
        }
        let bytes = v.to_bytes(&mut rng).unwrap();
        let w = Vsc::open(&bytes, &kek("k", 1)).unwrap();
        assert_same_content(&v, &w);
        let seen = VscFile::inspect(&bytes).unwrap();
        prop_assert_eq!(&seen.public_area_unauthenticated, v.public_area());
    }
}
