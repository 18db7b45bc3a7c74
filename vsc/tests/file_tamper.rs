#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Damage and forgery: every bit, every length, forgers who recompute the
//! SHA-256 trailer, hostile KDF parameters, broken section order.

mod file_support;

use file_support::*;
use vsc::file::{DataObject, ObjectId, Section, State, Vsc, VscError, VscFile, FORMAT_MAJOR, MAX_FILE_SIZE};

fn small_file() -> Vec<u8> {
    let mut rng = rng(100);
    let mut v = Vsc::create(
        vsc::file::NewVsc::new("VSC 1", "t", 1),
        &kek_protector("k", 7),
        &mut rng,
    )
    .unwrap();
    v.put_public(DataObject::new(ObjectId::Piv(0x5FC102), b"pub".to_vec()))
        .unwrap();
    v.put_private(DataObject::new(ObjectId::Named("p".into()), b"priv".to_vec()))
        .unwrap();
    v.to_bytes(&mut rng).unwrap()
}

#[test]
fn every_single_bit_flip_is_caught_with_the_right_error() {
    let bytes = small_file();
    assert!(Vsc::open(&bytes, &kek("k", 7)).is_ok());
    let mut flipped = bytes.clone();
    for i in 0..bytes.len() {
        for bit in 0..8 {
            flipped[i] ^= 1 << bit;
            let inspected = VscFile::inspect(&flipped);
            let opened = Vsc::open(&flipped, &kek("k", 7));
            flipped[i] ^= 1 << bit;
            let e = opened.expect_err("a flipped bit opened");
            let ie = inspected.expect_err("a flipped bit inspected clean");
            assert_eq!(format!("{e:?}"), format!("{ie:?}"), "byte {i} bit {bit}");
            let ok = match i {
                0..=7 => matches!(e, VscError::BadMagic),
                8..=9 => {
                    matches!(e, VscError::UnsupportedVersion { major, minor: 0 } if major != FORMAT_MAJOR)
                }
                // A newer minor is readable; the digest catches the change.
                10..=11 => matches!(e, VscError::IntegrityDigestMismatch),
                12..=15 => matches!(e, VscError::Truncated { .. } | VscError::TrailingBytes { .. }),
                _ => matches!(e, VscError::IntegrityDigestMismatch),
            };
            assert!(ok, "byte {i} bit {bit}: {e:?}");
        }
    }
    assert_eq!(flipped, bytes);
}

#[test]
fn every_truncation_and_an_appended_byte_are_caught() {
    let bytes = small_file();
    for len in 0..bytes.len() {
        match VscFile::inspect(&bytes[..len]) {
            Err(VscError::Truncated { actual, .. }) => assert_eq!(actual, len as u64),
            other => panic!("length {len}: {other:?}"),
        }
        assert!(Vsc::open(&bytes[..len], &kek("k", 7)).is_err());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        VscFile::inspect(&longer),
        Err(VscError::TrailingBytes { count: 1 })
    ));
    assert!(matches!(VscFile::inspect(b"not a vsc"), Err(VscError::BadMagic)));
    let huge = vec![0u8; MAX_FILE_SIZE as usize + 1];
    assert!(matches!(VscFile::inspect(&huge), Err(VscError::TooLarge { .. })));
}

#[test]
fn too_large_file_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.vsc");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(MAX_FILE_SIZE + 1).unwrap(); // sparse: costs no disk
    assert!(matches!(
        Vsc::load(&path, &kek("k", 7)),
        Err(VscError::TooLarge { .. })
    ));
    assert!(matches!(
        Vsc::load(&dir.path().join("missing.vsc"), &kek("k", 7)),
        Err(VscError::Io { .. })
    ));
}

fn full_file() -> Vec<u8> {
    let mut rng = rng(101);
    full(&password_protector("pw"), &mut rng)
        .to_bytes(&mut rng)
        .unwrap()
}

#[test]
fn forged_ciphertext_fails_file_authentication_first() {
    let bytes = full_file();
    // The MAC over prefix and body is checked before the areas' GCM tags
    // (FORMAT.md, check order), so a forger without the key who fixes the
    // digest is stopped by FileAuthenticationFailed.
    for area_tag in [0xE4, 0xE5, 0xE6] {
        let (start, end) = value_offset(&bytes, &[area_tag, 0xC2]);
        for pos in [start, (start + end) / 2, end - 1] {
            let mut forged = bytes.clone();
            forged[pos] ^= 0x80;
            redigest(&mut forged);
            assert!(VscFile::inspect(&forged).is_ok(), "inspect cannot see this");
            match Vsc::open(&forged, &password("pw")) {
                Err(VscError::FileAuthenticationFailed) => {}
                other => panic!("area {area_tag:X} at {pos}: {other:?}"),
            }
        }
        // The nonce too.
        let (nonce, _) = value_offset(&bytes, &[area_tag, 0xC1]);
        let mut forged = bytes.clone();
        forged[nonce] ^= 1;
        redigest(&mut forged);
        assert!(matches!(
            Vsc::open(&forged, &password("pw")),
            Err(VscError::FileAuthenticationFailed)
        ));
    }
}

#[test]
fn forged_state_or_public_object_fails_file_authentication() {
    let bytes = full_file();
    // Header E1 > attributes E4 > state C1: 01 active -> 02 disabled.
    let (state, _) = value_offset(&bytes, &[0xE1, 0xE4, 0xC1]);
    assert_eq!(bytes[state], 0x01);
    let mut forged = bytes.clone();
    forged[state] = 0x02;
    redigest(&mut forged);
    // Without a key the forged state is all one can see.
    assert_eq!(
        VscFile::inspect(&forged).unwrap().header.attributes.state,
        State::Disabled
    );
    assert!(matches!(
        Vsc::open(&forged, &password("pw")),
        Err(VscError::FileAuthenticationFailed)
    ));

    // A public object changed in place.
    let pos = bytes.windows(12).position(|w| w == b"CHUID-PUBLIC").unwrap();
    let mut forged = bytes.clone();
    forged[pos..pos + 12].copy_from_slice(b"CHUID-FORGED");
    redigest(&mut forged);
    let seen = VscFile::inspect(&forged).unwrap();
    assert_eq!(
        seen.public_area_unauthenticated
            .get(&ObjectId::Piv(0x5FC102))
            .unwrap(),
        b"CHUID-FORGED"
    );
    assert!(matches!(
        Vsc::open(&forged, &password("pw")),
        Err(VscError::FileAuthenticationFailed)
    ));
    // The label, the UID.
    for path in [[0xE1, 0xC2], [0xE1, 0xC1]] {
        let (p, _) = value_offset(&bytes, &path);
        let mut forged = bytes.clone();
        forged[p] ^= 0x01;
        redigest(&mut forged);
        assert!(Vsc::open(&forged, &password("pw")).is_err(), "{path:X?}");
    }
}

#[test]
fn swapped_areas_are_caught() {
    let bytes = full_file();
    let secs = sections(&bytes);
    let b = |i: usize| bytes[secs[i].1..secs[i].2].to_vec();
    // Swap the values of the private and password sections, keeping tags.
    let swap_values = |x: usize, y: usize| {
        let mut body = Vec::new();
        for (i, (tag, _, _)) in secs.iter().enumerate() {
            let src = if i == x {
                y
            } else if i == y {
                x
            } else {
                i
            };
            let value = vsc::codec::TlvRef::parse_single(&b(src)).unwrap().value.to_vec();
            vsc::codec::Tlv::new(vsc::codec::Tag::new(*tag).unwrap(), value).write(&mut body);
        }
        with_body(&bytes, &body)
    };
    for (x, y) in [(3, 4), (3, 5), (4, 5)] {
        let forged = swap_values(x, y);
        let e = Vsc::open(&forged, &password("pw")).unwrap_err();
        // Lengths differ, so the header's structure catches it before a key
        // is tried; with equal lengths the MAC would.
        assert!(
            matches!(
                e,
                VscError::BadHeader {
                    field: "structure",
                    ..
                } | VscError::FileAuthenticationFailed
            ),
            "{x}<->{y}: {e:?}"
        );
    }

    // The same area from another file of identical shape: equal lengths.
    let mut rng = rng(102);
    let other = full(&password_protector("pw"), &mut rng)
        .to_bytes(&mut rng)
        .unwrap();
    let osecs = sections(&other);
    let mut forged = bytes[..secs[3].1].to_vec();
    forged.extend_from_slice(&other[osecs[3].1..osecs[3].2]);
    forged.extend_from_slice(&bytes[secs[3].2..]);
    assert_eq!(forged.len(), bytes.len());
    assert_ne!(forged, bytes);
    redigest(&mut forged);
    assert!(matches!(
        Vsc::open(&forged, &password("pw")),
        Err(VscError::FileAuthenticationFailed)
    ));
}

#[test]
fn a_changed_slot_looks_like_a_wrong_password() {
    let bytes = full_file();
    // Slot E2 > E1 > Argon2 E2 > salt C6.
    let (salt, _) = value_offset(&bytes, &[0xE2, 0xE1, 0xE2, 0xC6]);
    let mut forged = bytes.clone();
    forged[salt] ^= 1;
    redigest(&mut forged);
    assert!(matches!(
        Vsc::open(&forged, &password("pw")),
        Err(VscError::WrongPassword)
    ));
}

fn set_u32(bytes: &[u8], path: &[u32], value: u32) -> Vec<u8> {
    let (p, end) = value_offset(bytes, path);
    assert_eq!(end - p, 4);
    let mut out = bytes.to_vec();
    out[p..end].copy_from_slice(&value.to_be_bytes());
    redigest(&mut out);
    out
}

#[test]
fn password_slots_over_the_work_budget_are_refused() {
    let bytes = full_file();
    let m = [0xE2, 0xE1, 0xE2, 0xC3];
    let t = [0xE2, 0xE1, 0xE2, 0xC4];
    // 1 GiB × 5 passes: each parameter within its bound, the work is not.
    let file = set_u32(&set_u32(&bytes, &m, 1 << 20), &t, 5);
    let e = Vsc::open(&file, &password("pw")).unwrap_err();
    assert!(matches!(e, VscError::KdfBudgetExceeded { .. }), "{e:?}");
    assert!(e.to_string().contains("budget"), "{e}");
}

#[test]
fn hostile_kdf_parameters_are_refused_without_running_argon2() {
    let bytes = full_file();
    let m = [0xE2, 0xE1, 0xE2, 0xC3];
    let t = [0xE2, 0xE1, 0xE2, 0xC4];
    let p = [0xE2, 0xE1, 0xE2, 0xC5];
    let hostile = [
        (set_u32(&bytes, &m, (1 << 20) + 1), "m_cost"),
        (set_u32(&bytes, &m, u32::MAX), "m_cost"),
        (set_u32(&bytes, &m, 7), "m_cost"),
        (set_u32(&bytes, &t, 65), "t_cost"),
        (set_u32(&bytes, &t, 0), "t_cost"),
        (set_u32(&bytes, &p, 17), "p_cost"),
        (set_u32(&bytes, &p, 0), "p_cost"),
        // 16 lanes need at least 128 KiB.
        (set_u32(&set_u32(&bytes, &p, 16), &m, 127), "m_cost"),
    ];
    for (file, param) in hostile {
        // The error says Argon2 was not run: the bounds are checked first.
        let e = Vsc::open(&file, &password("pw")).unwrap_err();
        match &e {
            VscError::KdfParamsOutOfRange {
                index: 0, param: p, ..
            } => {
                assert!(p.starts_with(param), "{e:?}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            VscFile::inspect(&file),
            Err(VscError::KdfParamsOutOfRange { .. })
        ));
    }
    // Within the bounds the parameters are accepted (and then, since the
    // wrap's associated data binds them, the password does not open it).
    let changed = set_u32(&bytes, &t, 2);
    assert!(VscFile::inspect(&changed).is_ok());
    assert!(matches!(
        Vsc::open(&changed, &password("pw")),
        Err(VscError::WrongPassword)
    ));
}

#[test]
fn section_order_is_enforced() {
    let bytes = full_file();
    let secs = sections(&bytes);
    let piece = |i: usize| bytes[secs[i].1..secs[i].2].to_vec();
    let build = |order: &[usize]| {
        let mut body = Vec::new();
        for i in order {
            body.extend(piece(*i));
        }
        with_body(&bytes, &body)
    };
    let open = |f: &[u8]| Vsc::open(f, &password("pw")).unwrap_err();
    assert!(matches!(
        open(&build(&[1, 0, 2, 3, 4, 5])),
        VscError::SectionOutOfOrder {
            section: Section::Header,
            after: Section::KeySlots
        }
    ));
    assert!(matches!(
        open(&build(&[0, 1, 2, 3, 5, 4])),
        VscError::SectionOutOfOrder {
            section: Section::SecretKeyArea,
            ..
        }
    ));
    assert!(matches!(
        open(&build(&[0, 1, 2, 2, 3, 4, 5])),
        VscError::DuplicateSection {
            section: Section::PublicArea
        }
    ));
    assert!(matches!(
        open(&build(&[0, 1, 2, 3, 4])),
        VscError::MissingSection {
            section: Section::PasswordArea
        }
    ));
    assert!(matches!(
        open(&build(&[1, 2, 3, 4, 5])),
        VscError::MissingSection {
            section: Section::Header
        }
    ));
    // A broken TLV in the body is named by section.
    let mut body = Vec::new();
    for i in 0..5 {
        body.extend(piece(i));
    }
    body.extend_from_slice(&[0xE6, 0x05, 0x00]);
    assert!(matches!(
        open(&with_body(&bytes, &body)),
        VscError::MalformedBody {
            section: Section::PasswordArea,
            ..
        }
    ));
    // An empty body.
    assert!(matches!(
        open(&with_body(&bytes, &[])),
        VscError::MissingSection {
            section: Section::Header
        }
    ));
}

#[test]
fn error_messages_name_the_check() {
    let bytes = full_file();
    let mut broken = bytes.clone();
    broken[100] ^= 1;
    let msg = VscFile::inspect(&broken).unwrap_err().to_string();
    assert!(msg.contains("integrity digest"), "{msg}");
    let msg = Vsc::open(&bytes, &password("nope")).unwrap_err().to_string();
    assert!(msg.contains("wrong password"), "{msg}");
}
