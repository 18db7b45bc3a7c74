//! Helpers shared by the `file*` integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use rand::rngs::StdRng;
use rand::SeedableRng;
use vsc::codec::TlvRef;
use vsc::file::{
    AccessRule, Argon2Params, DataObject, Df, Ef, EfArea, KeyAlgorithm, KeyAttributes, KeyOrigin, KeyRef,
    NewVsc, Node, ObjectId, PasswordEntry, PasswordRef, PinPolicy, Protector, SecretKeyEntry, TouchPolicy,
    Unlock, Vsc,
};
use vsc::secret::{AesKey, SecretBytes};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Low Argon2id cost for tests: 8 MiB, one pass.
pub fn fast_params() -> Argon2Params {
    Argon2Params::new(8 * 1024, 1, 1).unwrap()
}

pub fn password_protector(pw: &str) -> Protector {
    Protector::Password {
        password: SecretBytes::from_slice(pw.as_bytes()),
        params: fast_params(),
    }
}

pub fn password(pw: &str) -> Unlock {
    Unlock::Password(SecretBytes::from_slice(pw.as_bytes()))
}

pub fn kek_key(byte: u8) -> AesKey {
    AesKey::from_slice(&[byte; 32]).unwrap()
}

pub fn kek_protector(id: &str, byte: u8) -> Protector {
    Protector::Kek {
        key_id: id.into(),
        key: kek_key(byte),
    }
}

pub fn kek(id: &str, byte: u8) -> Unlock {
    Unlock::Kek {
        key_id: id.into(),
        key: kek_key(byte),
    }
}

/// A PKCS#8 DER shaped EC private key (structure only; the scalar is
/// `fill`).
pub fn fake_pkcs8_p256(fill: u8) -> Vec<u8> {
    let mut inner = hex::decode("020100301306072A8648CE3D020106082A8648CE3D030107").unwrap();
    let mut ec = hex::decode("3025020101 0420".replace(' ', "")).unwrap();
    ec.extend_from_slice(&[fill; 32]);
    inner.push(0x04);
    inner.push(ec.len() as u8);
    inner.extend_from_slice(&ec);
    let mut out = vec![0x30, inner.len() as u8];
    out.extend_from_slice(&inner);
    out
}

pub fn hierarchy() -> Df {
    Df {
        fid: 0x3F00,
        name: None,
        children: vec![
            Node::Ef(Ef {
                fid: 0x2F00,
                area: EfArea::Public,
                read: AccessRule::Always,
                update: AccessRule::Never,
                size: 64,
            }),
            Node::Df(Df {
                fid: 0x5015,
                name: Some(hex::decode("A000000308000010000100").unwrap()),
                children: vec![Node::Ef(Ef {
                    fid: 0x4401,
                    area: EfArea::Private,
                    read: AccessRule::Pin,
                    update: AccessRule::Pin,
                    size: 128,
                })],
            }),
        ],
    }
}

pub fn attrs(origin: KeyOrigin) -> KeyAttributes {
    KeyAttributes {
        origin,
        pin_policy: PinPolicy::Once,
        touch_policy: TouchPolicy::Never,
    }
}

/// A VSC with something in every area.
pub fn full(protector: &Protector, rng: &mut StdRng) -> Vsc {
    let mut fields = NewVsc::new("VSC 00001079", "piv-basic", 1_700_000_000);
    fields.chip_serials = vec![vec![0x04, 0xA1, 0xB2, 0xC3]];
    fields.hierarchy = hierarchy();
    let mut v = Vsc::create(fields, protector, rng).unwrap();
    v.put_public(DataObject::new(ObjectId::Piv(0x5FC102), b"CHUID-PUBLIC".to_vec()))
        .unwrap();
    v.put_public(DataObject::new(
        ObjectId::File(vec![0x3F00, 0x2F00]),
        b"EF.DIR".to_vec(),
    ))
    .unwrap();
    v.put_public(DataObject::new(ObjectId::Gp(0x9F7F), vec![0x9F, 0x7F, 0x2A]))
        .unwrap();
    v.put_private(DataObject::new(
        ObjectId::Named("Private Info".into()),
        b"account 12345".to_vec(),
    ))
    .unwrap();
    v.put_private(DataObject::new(
        ObjectId::File(vec![0x3F00, 0x5015, 0x4401]),
        b"login object".to_vec(),
    ))
    .unwrap();
    v.put_secret_key(
        SecretKeyEntry::new(
            KeyRef::PivSlot(0x9D),
            KeyAlgorithm::EccP256,
            SecretBytes::new(fake_pkcs8_p256(0x77)),
            attrs(KeyOrigin::GeneratedOnMaster),
        )
        .unwrap(),
    );
    v.put_secret_key(
        SecretKeyEntry::new(
            KeyRef::PivSlot(0x9B),
            KeyAlgorithm::Aes256,
            SecretBytes::from_slice(&[0x9B; 32]),
            attrs(KeyOrigin::Imported),
        )
        .unwrap(),
    );
    v.put_secret_key(
        SecretKeyEntry::new(
            KeyRef::Scp03 { kvn: 0x30, kid: 1 },
            KeyAlgorithm::Aes128,
            SecretBytes::from_slice(&[0x30; 16]),
            attrs(KeyOrigin::Imported),
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
    v.put_password(
        PasswordEntry::new(
            PasswordRef::Puk,
            &SecretBytes::from_slice(b"12345678"),
            5,
            8,
            8,
            rng,
        )
        .unwrap(),
    );
    v
}

/// Asserts that two opened VSCs have the same header and areas.
pub fn assert_same_content(a: &Vsc, b: &Vsc) {
    assert_eq!(a.header(), b.header());
    assert_eq!(a.public_area(), b.public_area());
    assert_eq!(a.private_area(), b.private_area());
    let ka: Vec<_> = a.secret_keys().collect();
    let kb: Vec<_> = b.secret_keys().collect();
    assert_eq!(ka, kb);
    let pa: Vec<_> = a.passwords().collect();
    let pb: Vec<_> = b.passwords().collect();
    assert_eq!(pa, pb);
}

/// Recomputes the SHA-256 trailer, as anyone can.
pub fn redigest(bytes: &mut [u8]) {
    use sha2::{Digest, Sha256};
    let n = bytes.len();
    let d = Sha256::digest(&bytes[..n - 32]);
    bytes[n - 32..].copy_from_slice(&d);
}

/// A file with `body` instead of its own: new length field, the old
/// (now wrong) authentication tag, a correct digest.
pub fn with_body(bytes: &[u8], body: &[u8]) -> Vec<u8> {
    let n = bytes.len();
    let mut out = bytes[..12].to_vec();
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(&bytes[n - 64..n - 32]);
    out.extend_from_slice(&[0; 32]);
    redigest(&mut out);
    out
}

pub fn body(bytes: &[u8]) -> &[u8] {
    &bytes[16..bytes.len() - 64]
}

/// The top-level objects of the body as (tag, start, end) of their whole
/// encoding, offsets in the file.
pub fn sections(bytes: &[u8]) -> Vec<(u32, usize, usize)> {
    let mut out = Vec::new();
    let mut rest = body(bytes);
    let mut pos = 16;
    while !rest.is_empty() {
        let (t, r) = TlvRef::parse_prefix(rest).unwrap();
        let len = rest.len() - r.len();
        out.push((t.tag.raw(), pos, pos + len));
        pos += len;
        rest = r;
    }
    out
}

/// File offset of a value found by a path of tags from the body (first
/// match at each level).
pub fn value_offset(bytes: &[u8], path: &[u32]) -> (usize, usize) {
    let base = bytes.as_ptr() as usize;
    let mut level = TlvRef::parse_all(body(bytes)).unwrap();
    let mut found = None;
    for tag in path {
        let t = *level.iter().find(|t| t.tag.raw() == *tag).unwrap();
        found = Some(t);
        level = if t.tag.is_constructed() {
            t.children().unwrap_or_default()
        } else {
            vec![]
        };
    }
    let t = found.unwrap();
    let start = t.value.as_ptr() as usize - base;
    (start, start + t.value.len())
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
