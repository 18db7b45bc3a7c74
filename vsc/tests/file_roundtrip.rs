#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Round trips, protectors, unlocking, the area APIs, secrets never in clear.

mod file_support;

use file_support::*;
use vsc::file::{
    AreaId, DataObject, KeyAlgorithm, KeyOrigin, KeyRef, NewVsc, ObjectId, Origin, PasswordEntry,
    PasswordRef, Protector, SecretKeyEntry, SlotInfo, State, Unlock, Vsc, VscError, VscFile,
};
use vsc::secret::{AesKey, SecretBytes};

#[test]
fn round_trip_with_a_password() {
    let mut rng = rng(1);
    let v = full(&password_protector("correct horse"), &mut rng);
    let bytes = v.to_bytes(&mut rng).unwrap();
    let w = Vsc::open(&bytes, &password("correct horse")).unwrap();
    assert_same_content(&v, &w);
    assert_eq!(w.state(), State::Active);
    assert_eq!(w.header().attributes.origin, Origin::Master);
    assert_eq!(
        w.header().attributes.chip_serials,
        vec![vec![0x04, 0xA1, 0xB2, 0xC3]]
    );
    assert_eq!(w.format_version(), (1, 0));
    assert_eq!(
        w.protectors(),
        vec![SlotInfo::Password {
            params: fast_params()
        }]
    );
    let pin = w.password(PasswordRef::Pin).unwrap();
    assert!(pin.check(&SecretBytes::from_slice(b"123456")));
    assert!(!pin.check(&SecretBytes::from_slice(b"123457")));
    assert_eq!(
        w.secret_key(&KeyRef::PivSlot(0x9B))
            .unwrap()
            .material_for_card_personalization()
            .expose_secret(),
        &[0x9B; 32]
    );
}

#[test]
fn round_trip_with_a_kek_and_through_a_file() {
    let mut rng = rng(2);
    let v = full(&kek_protector("archive-kek/1", 0x01), &mut rng);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.vsc");
    v.save_new(&path, &mut rng).unwrap();
    let w = Vsc::load(&path, &kek("archive-kek/1", 0x01)).unwrap();
    assert_same_content(&v, &w);
    // A second save replaces it; the content is unchanged, the nonces new.
    let first = std::fs::read(&path).unwrap();
    w.save(&path, &mut rng).unwrap();
    let second = std::fs::read(&path).unwrap();
    assert_ne!(first, second);
    assert_same_content(&v, &Vsc::load(&path, &kek("archive-kek/1", 0x01)).unwrap());
    // save_new refuses to replace.
    assert!(matches!(v.save_new(&path, &mut rng), Err(VscError::Io { .. })));
}

#[test]
fn two_protectors_either_unlocks() {
    let mut rng = rng(3);
    let mut v = full(&password_protector("pw one"), &mut rng);
    v.add_protector(&kek_protector("archive-kek/1", 0x02), &mut rng)
        .unwrap();
    v.add_protector(&password_protector("pw two"), &mut rng).unwrap();
    let bytes = v.to_bytes(&mut rng).unwrap();
    for unlock in [password("pw one"), password("pw two"), kek("archive-kek/1", 0x02)] {
        assert_same_content(&v, &Vsc::open(&bytes, &unlock).unwrap());
    }
    assert_eq!(VscFile::inspect(&bytes).unwrap().slots.len(), 3);

    // Remove the first password: it no longer opens copies written now.
    assert!(matches!(
        v.remove_protector(0).unwrap(),
        SlotInfo::Password { .. }
    ));
    let bytes = v.to_bytes(&mut rng).unwrap();
    assert!(matches!(
        Vsc::open(&bytes, &password("pw one")),
        Err(VscError::WrongPassword)
    ));
    assert!(Vsc::open(&bytes, &password("pw two")).is_ok());
    v.remove_protector(1).unwrap();
    assert!(matches!(v.remove_protector(0), Err(VscError::LastProtector)));
    assert!(matches!(v.remove_protector(5), Err(VscError::Invalid { .. })));
    // A KEK id is unique per file.
    assert!(v
        .add_protector(&kek_protector("archive-kek/1", 0x09), &mut rng)
        .is_err());
}

#[test]
fn wrong_secrets_give_no_data() {
    let mut rng = rng(4);
    let mut v = full(&password_protector("right"), &mut rng);
    v.add_protector(&kek_protector("archive-kek/1", 0x03), &mut rng)
        .unwrap();
    let bytes = v.to_bytes(&mut rng).unwrap();
    assert!(matches!(
        Vsc::open(&bytes, &password("wrong")),
        Err(VscError::WrongPassword)
    ));
    assert!(matches!(
        Vsc::open(&bytes, &password("")),
        Err(VscError::WrongPassword)
    ));
    match Vsc::open(&bytes, &kek("archive-kek/1", 0x04)) {
        Err(VscError::WrongKek { key_id }) => assert_eq!(key_id, "archive-kek/1"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Vsc::open(&bytes, &kek("archive-kek/2", 0x03)),
        Err(VscError::NoMatchingSlot { .. })
    ));
    // A file with only a KEK slot has nothing for a password.
    let k = full(&kek_protector("k", 0x05), &mut rng)
        .to_bytes(&mut rng)
        .unwrap();
    assert!(matches!(
        Vsc::open(&k, &password("right")),
        Err(VscError::NoMatchingSlot { .. })
    ));
    // A KEK must be AES-256.
    let short = Unlock::Kek {
        key_id: "k".into(),
        key: AesKey::from_slice(&[0x05; 16]).unwrap(),
    };
    assert!(matches!(Vsc::open(&k, &short), Err(VscError::Invalid { .. })));
}

#[test]
fn empty_vsc_round_trips() {
    let mut rng = rng(5);
    let v = Vsc::create(
        NewVsc::new("VSC empty", "generic", 0),
        &kek_protector("k", 1),
        &mut rng,
    )
    .unwrap();
    let bytes = v.to_bytes(&mut rng).unwrap();
    let w = Vsc::open(&bytes, &kek("k", 1)).unwrap();
    assert_same_content(&v, &w);
    let seen = VscFile::inspect(&bytes).unwrap();
    assert_eq!(seen.structure.len(), 4);
    assert!(seen.structure.iter().all(|s| s.object_count == 0));
    assert_eq!(
        seen.structure
            .iter()
            .find(|s| s.area == AreaId::Private)
            .unwrap()
            .stored_len,
        16
    );
}

#[test]
fn inspect_reads_header_and_public_area_without_a_key() {
    let mut rng = rng(6);
    let v = full(&password_protector("pw"), &mut rng);
    let bytes = v.to_bytes(&mut rng).unwrap();
    let seen = VscFile::inspect(&bytes).unwrap();
    assert_eq!(&seen.header, v.header());
    assert_eq!(&seen.public_area_unauthenticated, v.public_area());
    assert_eq!(seen.format_version, (1, 0));
    let counts: Vec<u32> = seen.structure.iter().map(|s| s.object_count).collect();
    assert_eq!(counts, vec![3, 2, 3, 2]);
}

#[test]
fn mutators_check_the_format_rules() {
    let mut rng = rng(7);
    let mut v = full(&kek_protector("k", 1), &mut rng);
    // EF objects must exist in the hierarchy, in the right area, and fit.
    let no_ef = DataObject::new(ObjectId::File(vec![0x3F00, 0x1234]), vec![1]);
    assert!(v.put_public(no_ef).is_err());
    let wrong_area = DataObject::new(ObjectId::File(vec![0x3F00, 0x2F00]), vec![1]);
    assert!(v.put_private(wrong_area).is_err());
    let too_big = DataObject::new(ObjectId::File(vec![0x3F00, 0x2F00]), vec![0; 65]);
    assert!(v.put_public(too_big).is_err());
    assert!(v
        .put_public(DataObject::new(ObjectId::Named(String::new()), vec![]))
        .is_err());
    assert!(v
        .put_public(DataObject::new(ObjectId::Named("a\u{7}".into()), vec![]))
        .is_err());
    assert!(v
        .put_public(DataObject::new(ObjectId::File(vec![0x5015]), vec![]))
        .is_err());
    // The hierarchy cannot drop an EF that holds an object.
    assert!(v.set_hierarchy(vsc::file::Df::master_file()).is_err());
    assert!(v.set_label("").is_err());
    assert!(v.set_label("x".repeat(256)).is_err());
    v.set_label("VSC 2").unwrap();
    v.add_chip_serial(vec![1, 2, 3]).unwrap();
    assert!(v.add_chip_serial(vec![]).is_err());
    // Keys: known PIV slots, lengths by algorithm, DER for asymmetric.
    let a = attrs(KeyOrigin::Imported);
    assert!(SecretKeyEntry::new(
        KeyRef::PivSlot(0x01),
        KeyAlgorithm::Aes128,
        SecretBytes::new(vec![0; 16]),
        a
    )
    .is_err());
    assert!(SecretKeyEntry::new(
        KeyRef::PivSlot(0x9A),
        KeyAlgorithm::Aes128,
        SecretBytes::new(vec![0; 15]),
        a
    )
    .is_err());
    assert!(SecretKeyEntry::new(
        KeyRef::PivSlot(0x9A),
        KeyAlgorithm::Rsa2048,
        SecretBytes::new(vec![4, 0]),
        a
    )
    .is_err());
    assert!(SecretKeyEntry::new(
        KeyRef::PivSlot(0x95),
        KeyAlgorithm::Tdes,
        SecretBytes::new(vec![0; 24]),
        a
    )
    .is_ok());
    assert!(SecretKeyEntry::new(
        KeyRef::Named("x".into()),
        KeyAlgorithm::Other(0x2E),
        SecretBytes::new(vec![1]),
        a
    )
    .is_ok());
    // Unknown algorithm bytes are kept.
    assert_eq!(KeyAlgorithm::from_byte(0x2E), KeyAlgorithm::Other(0x2E));
    assert_eq!(KeyAlgorithm::from_byte(0x11), KeyAlgorithm::EccP256);
    assert_eq!(KeyAlgorithm::EccP384.to_byte(), 0x14);
    // Everything still writes and reads back.
    let bytes = v.to_bytes(&mut rng).unwrap();
    assert_same_content(&v, &Vsc::open(&bytes, &kek("k", 1)).unwrap());
}

#[test]
fn password_entries() {
    let mut rng = rng(8);
    let mut e = PasswordEntry::new(
        PasswordRef::Pin,
        &SecretBytes::from_slice(b"123456"),
        3,
        6,
        8,
        &mut rng,
    )
    .unwrap();
    assert!(e.check(&SecretBytes::from_slice(b"123456")));
    assert!(!e.check(&SecretBytes::from_slice(b"1234567")));
    assert_eq!(e.decrement(), 2);
    assert_eq!(e.decrement(), 1);
    assert_eq!(e.decrement(), 0);
    assert_eq!(e.decrement(), 0);
    assert!(e.is_blocked());
    e.reset_retries();
    assert_eq!(e.retries_left(), 3);
    assert!(e.set(&SecretBytes::from_slice(b"12345"), &mut rng).is_err());
    e.set(&SecretBytes::from_slice(b"87654321"), &mut rng).unwrap();
    assert!(e.check(&SecretBytes::from_slice(b"87654321")));
    assert!(!e.check(&SecretBytes::from_slice(b"123456")));
    assert!(PasswordEntry::new(
        PasswordRef::Puk,
        &SecretBytes::from_slice(b"1"),
        0,
        1,
        8,
        &mut rng
    )
    .is_err());
    assert!(PasswordEntry::new(
        PasswordRef::Other(0x01),
        &SecretBytes::from_slice(b"1"),
        1,
        2,
        1,
        &mut rng
    )
    .is_err());
    // Counters survive a round trip.
    let mut v = full(&kek_protector("k", 1), &mut rng);
    v.password_mut(PasswordRef::Pin).unwrap().decrement();
    let bytes = v.to_bytes(&mut rng).unwrap();
    let w = Vsc::open(&bytes, &kek("k", 1)).unwrap();
    assert_eq!(w.password(PasswordRef::Pin).unwrap().retries_left(), 2);
    // Debug output holds no verifier.
    let d = format!("{:?}", w.password(PasswordRef::Pin).unwrap());
    assert!(d.contains("REDACTED"), "{d}");
}

#[test]
fn state_and_origin_round_trip() {
    let mut rng = rng(9);
    let mut v = full(&kek_protector("k", 1), &mut rng);
    v.set_state(State::Disabled);
    v.set_origin(Origin::Temporary);
    let bytes = v.to_bytes(&mut rng).unwrap();
    let seen = VscFile::inspect(&bytes).unwrap();
    assert_eq!(seen.header.attributes.state, State::Disabled);
    assert_eq!(seen.header.attributes.origin, Origin::Temporary);
    let w = Vsc::open(&bytes, &kek("k", 1)).unwrap();
    assert_eq!(w.state(), State::Disabled);
}

#[test]
fn the_saved_file_holds_no_secret_in_clear() {
    let mut rng = rng(10);
    let password_text = "scan-me-Password-7f3a91";
    let mut v = full(&password_protector(password_text), &mut rng);
    let key_material = SecretBytes::random(&mut rng, 32);
    v.put_secret_key(
        SecretKeyEntry::new(
            KeyRef::PivSlot(0x9A),
            KeyAlgorithm::Aes256,
            key_material.clone(),
            attrs(KeyOrigin::GeneratedOnMaster),
        )
        .unwrap(),
    );
    let private_text = b"PRIVATE-AREA-CONTENT-do-not-leak-0192837465".to_vec();
    v.put_private(DataObject::new(
        ObjectId::Named("secret notes".into()),
        private_text.clone(),
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.vsc");
    v.save(&path, &mut rng).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("secret key material", key_material.expose_secret().to_vec()),
        ("password", password_text.as_bytes().to_vec()),
        ("private area content", private_text.clone()),
        ("private object name", b"secret notes".to_vec()),
        ("other private content", b"account 12345".to_vec()),
        ("AES key of 9B", vec![0x9B; 32]),
        ("PKCS#8 key", fake_pkcs8_p256(0x77)),
        ("PIN", b"123456".to_vec()),
    ];
    for (what, s) in &secrets {
        assert!(!contains(&bytes, s), "{what} found in the saved file");
        assert!(
            !contains(&bytes, hex::encode(s).as_bytes()),
            "{what} found as hex"
        );
    }
    // The public area, by design, is in clear.
    assert!(contains(&bytes, b"CHUID-PUBLIC"));
    // And the file opens with the password.
    let w = Vsc::load(&path, &password(password_text)).unwrap();
    assert_eq!(
        w.private_area().get(&ObjectId::Named("secret notes".into())),
        Some(&private_text)
    );
}

#[test]
fn debug_output_is_redacted() {
    let mut rng = rng(11);
    let v = full(&password_protector("hunter2-password"), &mut rng);
    let d = format!("{v:?}");
    assert!(!d.contains("account 12345"), "{d}");
    assert!(!d.contains("9b9b9b"), "{d}");
    let k = format!("{:?}", v.secret_key(&KeyRef::PivSlot(0x9B)).unwrap());
    assert!(
        k.contains("REDACTED") && !k.to_lowercase().contains("9b9b"),
        "{k}"
    );
    let p = format!("{:?}", password_protector("hunter2-password"));
    assert!(!p.contains("hunter2"), "{p}");
    let _ = Protector::Kek {
        key_id: "x".into(),
        key: AesKey::from_slice(&[0; 32]).unwrap(),
    };
}
