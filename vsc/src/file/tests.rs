//! Tests that need the inside of the format: files re-authenticated with the
//! DEK (only a key holder can do that), newer minor versions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::container::{FORMAT_MAJOR, MAGIC, PREFIX_LEN};
use super::crypto::{self, FileKeys};
use super::encode::{self, body, AreaStructure};
use super::*;
use crate::codec::{Tlv, TlvRef};
use crate::secret::{AesKey, SecretBytes};
use crate::tag;

fn kek() -> AesKey {
    AesKey::from_slice(&[0x5A; 32]).unwrap()
}

fn unlock() -> Unlock {
    Unlock::Kek {
        key_id: "test/1".into(),
        key: kek(),
    }
}

fn sample(rng: &mut StdRng) -> Vsc {
    let p = Protector::Kek {
        key_id: "test/1".into(),
        key: kek(),
    };
    let mut v = Vsc::create(NewVsc::new("VSC 1", "test", 1_700_000_000), &p, rng).unwrap();
    v.put_public(DataObject::new(ObjectId::Piv(0x5FC102), b"chuid".to_vec()))
        .unwrap();
    v.put_private(DataObject::new(
        ObjectId::Named("notes".into()),
        b"private notes".to_vec(),
    ))
    .unwrap();
    v.put_secret_key(
        SecretKeyEntry::new(
            KeyRef::PivSlot(0x9B),
            KeyAlgorithm::Aes256,
            SecretBytes::from_slice(&[0x11; 32]),
            KeyAttributes {
                origin: KeyOrigin::GeneratedOnMaster,
                pin_policy: PinPolicy::Default,
                touch_policy: TouchPolicy::Default,
            },
        )
        .unwrap(),
    );
    v.put_password(
        PasswordEntry::new(
            PasswordRef::Pin,
            &SecretBytes::from_slice(b"123456"),
            3,
            6,
            8,
            rng,
        )
        .unwrap(),
    );
    v
}

/// A file taken apart with the DEK, to be changed and put together again.
struct Parts {
    header: Header,
    structure: Vec<AreaStructure>,
    header_extra: Vec<Tlv>,
    slots: Tlv,
    public: Tlv,
    /// Private, secret key, password plaintexts.
    plaintexts: [Vec<u8>; 3],
    /// (nonce, ciphertext) to use instead of encrypting, per area.
    sealed_override: [Option<([u8; 12], Vec<u8>)>; 3],
    top_extra: Vec<Tlv>,
    /// The public section's bytes as written, instead of `public`.
    public_raw: Option<Vec<u8>>,
}

fn decompose(bytes: &[u8], dek: &SecretBytes) -> Parts {
    let body = &bytes[PREFIX_LEN..bytes.len() - 64];
    let top = TlvRef::parse_all(body).unwrap();
    let (header, structure) = encode::decode_header(&top[0], false).unwrap();
    let keys = FileKeys::derive(dek, &header.uid);
    let version: [u8; 4] = bytes[8..12].try_into().unwrap();
    let mut plaintexts: [Vec<u8>; 3] = Default::default();
    for (i, area) in AreaId::ENCRYPTED.into_iter().enumerate() {
        let (nonce, ct) = encode::decode_sealed(&top[3 + i], false).unwrap();
        let mut aad = version.to_vec();
        aad.extend_from_slice(header.uid.as_bytes());
        aad.push(area.to_byte());
        plaintexts[i] = crypto::open(keys.area(area), &nonce, &aad, ct).unwrap().to_vec();
    }
    Parts {
        header,
        structure,
        header_extra: vec![],
        slots: top[1].to_owned_checked().unwrap(),
        public: top[2].to_owned_checked().unwrap(),
        plaintexts,
        sealed_override: Default::default(),
        top_extra: vec![],
        public_raw: None,
    }
}

fn compose(p: &Parts, minor: u16, dek: &SecretBytes, rng: &mut StdRng) -> Vec<u8> {
    use rand::RngCore;
    let uid = p.header.uid;
    let keys = FileKeys::derive(dek, &uid);
    let mut version = FORMAT_MAJOR.to_be_bytes().to_vec();
    version.extend_from_slice(&minor.to_be_bytes());
    let mut sealed = Vec::new();
    for (i, area) in AreaId::ENCRYPTED.into_iter().enumerate() {
        if let Some(o) = &p.sealed_override[i] {
            sealed.push(o.clone());
            continue;
        }
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let mut aad = version.clone();
        aad.extend_from_slice(uid.as_bytes());
        aad.push(area.to_byte());
        sealed.push((
            nonce,
            crypto::seal(keys.area(area), &nonce, &aad, &p.plaintexts[i]).unwrap(),
        ));
    }
    let mut structure = p.structure.clone();
    structure[0].stored_len = p.public.value().len() as u32;
    for i in 0..3 {
        structure[i + 1].stored_len = sealed[i].1.len() as u32;
    }
    let header = encode::encode_header(&p.header, &structure);
    let mut header_children = header.children().unwrap();
    header_children.extend(p.header_extra.iter().cloned());
    let mut bodyb = Vec::new();
    Tlv::constructed(body::HEADER, &header_children).write(&mut bodyb);
    p.slots.write(&mut bodyb);
    match &p.public_raw {
        Some(raw) => bodyb.extend_from_slice(raw),
        None => p.public.write(&mut bodyb),
    }
    for (tag, (nonce, ct)) in [body::PRIVATE, body::SECRET_KEYS, body::PASSWORDS]
        .into_iter()
        .zip(&sealed)
    {
        encode::encode_sealed(tag, nonce, ct).write(&mut bodyb);
    }
    for t in &p.top_extra {
        t.write(&mut bodyb);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&version);
    out.extend_from_slice(&(bodyb.len() as u32).to_be_bytes());
    out.extend_from_slice(&bodyb);
    let mac = crypto::hmac_sha256(&keys.mac, &out);
    out.extend_from_slice(&mac);
    let digest = crypto::sha256(&out);
    out.extend_from_slice(&digest);
    out
}

#[test]
fn decompose_compose_is_faithful() {
    let mut rng = StdRng::seed_from_u64(10);
    let v = sample(&mut rng);
    let bytes = v.to_bytes(&mut rng).unwrap();
    let parts = decompose(&bytes, v.dek_for_tests());
    let again = compose(&parts, 0, v.dek_for_tests(), &mut rng);
    let w = Vsc::open(&again, &unlock()).unwrap();
    assert_eq!(w.private_area(), v.private_area());
    assert_eq!(w.header(), v.header());
}

#[test]
fn area_tag_failure_is_named_when_the_file_mac_is_valid() {
    let mut rng = StdRng::seed_from_u64(11);
    let v = sample(&mut rng);
    let bytes = v.to_bytes(&mut rng).unwrap();
    for (i, area) in AreaId::ENCRYPTED.into_iter().enumerate() {
        let mut parts = decompose(&bytes, v.dek_for_tests());
        // Take the real ciphertext and flip one bit; the key holder then
        // re-authenticates the whole file.
        let top = TlvRef::parse_all(&bytes[16..bytes.len() - 64]).unwrap();
        let (nonce, ct) = encode::decode_sealed(&top[3 + i], false).unwrap();
        let mut ct = ct.to_vec();
        ct[0] ^= 0x01;
        parts.sealed_override[i] = Some((nonce, ct));
        let forged = compose(&parts, 0, v.dek_for_tests(), &mut rng);
        match Vsc::open(&forged, &unlock()) {
            Err(VscError::AreaAuthenticationFailed { area: a }) => assert_eq!(a, area),
            other => panic!("{area}: {other:?}"),
        }
    }
}

#[test]
fn areas_swapped_by_a_key_holder_fail_their_tag() {
    let mut rng = StdRng::seed_from_u64(12);
    let v = sample(&mut rng);
    let bytes = v.to_bytes(&mut rng).unwrap();
    let top = TlvRef::parse_all(&bytes[16..bytes.len() - 64]).unwrap();
    let private = encode::decode_sealed(&top[3], false).unwrap();
    let secret = encode::decode_sealed(&top[4], false).unwrap();
    let mut parts = decompose(&bytes, v.dek_for_tests());
    parts.sealed_override[0] = Some((secret.0, secret.1.to_vec()));
    parts.sealed_override[1] = Some((private.0, private.1.to_vec()));
    let forged = compose(&parts, 0, v.dek_for_tests(), &mut rng);
    assert!(matches!(
        Vsc::open(&forged, &unlock()),
        Err(VscError::AreaAuthenticationFailed {
            area: AreaId::Private
        })
    ));
}

#[test]
fn area_from_another_version_fails_its_tag() {
    // Encrypted with minor 0's associated data, presented as minor 1.
    let mut rng = StdRng::seed_from_u64(13);
    let v = sample(&mut rng);
    let bytes = v.to_bytes(&mut rng).unwrap();
    let top = TlvRef::parse_all(&bytes[16..bytes.len() - 64]).unwrap();
    let mut parts = decompose(&bytes, v.dek_for_tests());
    for i in 0..3 {
        let (n, c) = encode::decode_sealed(&top[3 + i], false).unwrap();
        parts.sealed_override[i] = Some((n, c.to_vec()));
    }
    let forged = compose(&parts, 1, v.dek_for_tests(), &mut rng);
    assert!(matches!(
        Vsc::open(&forged, &unlock()),
        Err(VscError::AreaAuthenticationFailed { .. })
    ));
}

#[test]
fn bad_content_inside_an_authentic_area_is_malformed_area() {
    let mut rng = StdRng::seed_from_u64(14);
    let v = sample(&mut rng);
    let bytes = v.to_bytes(&mut rng).unwrap();
    let cases: [(usize, Vec<u8>, AreaId); 4] = [
        (0, vec![0xE1, 0x05, 0xC5], AreaId::Private),
        (1, vec![0xE1, 0x81, 0x00], AreaId::SecretKeys),
        (2, vec![0xE9, 0x00], AreaId::Passwords),
        // Valid TLV but the count in the structure no longer matches.
        (0, vec![], AreaId::Private),
    ];
    for (i, pt, area) in cases {
        let mut parts = decompose(&bytes, v.dek_for_tests());
        parts.plaintexts[i] = pt;
        let forged = compose(&parts, 0, v.dek_for_tests(), &mut rng);
        match Vsc::open(&forged, &unlock()) {
            Err(VscError::MalformedArea { area: a, .. }) => assert_eq!(a, area),
            other => panic!("{area}: {other:?}"),
        }
    }
}

fn unknown(tag: u32) -> Tlv {
    Tlv::new(crate::codec::Tag::new(tag).unwrap(), vec![0xAB])
}

fn with_unknown_everywhere(bytes: &[u8], dek: &SecretBytes) -> Parts {
    let mut parts = decompose(bytes, dek);
    parts.header_extra.push(unknown(0xD0));
    parts
        .top_extra
        .push(Tlv::constructed(tag!(0xEF), &[unknown(0xC1)]));
    // An unknown field inside each private object and an unknown entry.
    let mut private = Vec::new();
    for o in TlvRef::parse_all(&parts.plaintexts[0]).unwrap() {
        let mut ch = o.to_owned_checked().unwrap().children().unwrap();
        ch.push(unknown(0xDA));
        Tlv::constructed(o.tag, &ch).write(&mut private);
    }
    parts.plaintexts[0] = private;
    parts.plaintexts[2].extend(unknown(0xCC).to_bytes());
    parts
}

#[test]
fn newer_minor_skips_unknown_tags_and_is_read_only() {
    let mut rng = StdRng::seed_from_u64(15);
    let v = sample(&mut rng);
    let bytes = v.to_bytes(&mut rng).unwrap();
    let parts = with_unknown_everywhere(&bytes, v.dek_for_tests());
    let newer = compose(&parts, 1, v.dek_for_tests(), &mut rng);
    let seen = VscFile::inspect(&newer).unwrap();
    assert_eq!(seen.format_version, (1, 1));
    let w = Vsc::open(&newer, &unlock()).unwrap();
    assert_eq!(w.format_version(), (1, 1));
    assert_eq!(w.header(), v.header());
    assert_eq!(w.private_area(), v.private_area());
    assert_eq!(w.secret_keys().count(), 1);
    assert!(w
        .password(PasswordRef::Pin)
        .unwrap()
        .check(&SecretBytes::from_slice(b"123456")));
    assert!(matches!(
        w.to_bytes(&mut rng),
        Err(VscError::NewerMinorReadOnly { minor: 1 })
    ));
}

#[test]
fn current_minor_refuses_unknown_tags() {
    let mut rng = StdRng::seed_from_u64(16);
    let v = sample(&mut rng);
    let bytes = v.to_bytes(&mut rng).unwrap();
    let dek = v.dek_for_tests();

    let mut p = decompose(&bytes, dek);
    p.top_extra.push(unknown(0xC9));
    assert!(matches!(
        Vsc::open(&compose(&p, 0, dek, &mut rng), &unlock()),
        Err(VscError::UnknownSection { .. })
    ));

    let mut p = decompose(&bytes, dek);
    p.header_extra.push(unknown(0xD0));
    let e = Vsc::open(&compose(&p, 0, dek, &mut rng), &unlock()).unwrap_err();
    assert!(
        matches!(
            &e,
            VscError::MalformedBody {
                section: Section::Header,
                source: ContentError::UnexpectedTag { .. }
            }
        ),
        "{e:?}"
    );

    let mut p = decompose(&bytes, dek);
    p.plaintexts[2].extend(unknown(0xCC).to_bytes());
    assert!(matches!(
        Vsc::open(&compose(&p, 0, dek, &mut rng), &unlock()),
        Err(VscError::MalformedArea {
            area: AreaId::Passwords,
            ..
        })
    ));
}

#[test]
fn newer_minor_still_enforces_known_rules() {
    let mut rng = StdRng::seed_from_u64(17);
    let v = sample(&mut rng);
    let bytes = v.to_bytes(&mut rng).unwrap();
    let dek = v.dek_for_tests();
    // A duplicated known section stays an error.
    let mut p = decompose(&bytes, dek);
    p.top_extra.push(p.public.clone());
    assert!(matches!(
        Vsc::open(&compose(&p, 1, dek, &mut rng), &unlock()),
        Err(VscError::DuplicateSection {
            section: Section::PublicArea
        })
    ));
    // An unknown state value stays an error.
    let mut p = decompose(&bytes, dek);
    let good = compose(&p, 1, dek, &mut rng);
    assert!(Vsc::open(&good, &unlock()).is_ok());
    p.header.attributes.state = State::Disabled;
    let mut forged = compose(&p, 1, dek, &mut rng);
    // Find the state field (C1 01 02 inside the attributes) and set 03.
    let pos = forged.windows(3).position(|w| w == [0xC1, 0x01, 0x02]).unwrap();
    forged[pos + 2] = 0x03;
    let n = forged.len();
    let d = crypto::sha256(&forged[..n - 32]);
    forged[n - 32..].copy_from_slice(&d);
    assert!(matches!(
        VscFile::inspect(&forged),
        Err(VscError::BadHeader { field: "state", .. })
    ));
}

#[test]
fn non_minimal_length_is_refused() {
    let mut rng = StdRng::seed_from_u64(18);
    let v = sample(&mut rng);
    let bytes = v.to_bytes(&mut rng).unwrap();
    let dek = v.dek_for_tests();
    let mut p = decompose(&bytes, dek);
    // The public area with a long-form length for a short value, even
    // correctly authenticated.
    let value = p.public.value().to_vec();
    assert!(value.len() < 0x80);
    let mut raw = vec![0xE3, 0x81, value.len() as u8];
    raw.extend_from_slice(&value);
    p.public_raw = Some(raw);
    let forged = compose(&p, 0, dek, &mut rng);
    assert!(matches!(
        VscFile::inspect(&forged),
        Err(VscError::MalformedBody {
            section: Section::PublicArea,
            source: ContentError::NonMinimalLength,
        })
    ));
}

#[test]
fn derived_keys_are_pinned() {
    // The HKDF labels and inputs are part of the format: pin the derived
    // keys of a fixed DEK and UID.
    let dek = SecretBytes::from_slice(&[0x01; 32]);
    let uid = Uid::from_bytes([0x02; 16]);
    let k = FileKeys::derive(&dek, &uid);
    let got: Vec<String> = [&k.mac, &k.private, &k.secret_keys, &k.passwords]
        .iter()
        .map(|k| hex::encode(k.expose_secret()))
        .collect();
    assert_eq!(got, PINNED);
}

/// Computed independently (Python's `hmac`/`hashlib`, RFC 5869 by hand).
const PINNED: [&str; 4] = [
    "9e41f6a61a423ee06852be5401b2c6d5f665a7dba140cd9567aed0385678e032",
    "57186480e7cb43ba7b631e78624250a48dfb779abb697d6de8c76397f0b4d0f8",
    "efe96f43038c92fef857f6441933c1500eb9d4ef9506df5fcc2f105201de4d1e",
    "54513f640b16500ef4ad7e451647d56e14b08441a2639cb9bece982664f608c4",
];
