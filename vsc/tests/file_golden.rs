#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The twenty-year guard: a VSC written by format 1.0 and checked in as
//! `tests/vectors/vsc-v1-golden.vsc` must always load with its known content.
//!
//! Password: `golden-vsc-v1 correct horse battery staple`
//! (Argon2id m = 8192 KiB, t = 1, p = 1).
//! KEK slot `archive-kek/1`: the 32 bytes `00 01 02 … 1F`.
//!
//! The file was made once by `generate_golden_file` below
//! (`VSC_WRITE_GOLDEN=1 cargo test -p vsc --test file_golden -- --ignored`).
//! Never regenerate it to make a failing test pass: a failure here means
//! this code can no longer read an archive written by an earlier version.

use std::path::PathBuf;

use vsc::file::{
    AccessRule, Argon2Params, DataObject, Df, Ef, EfArea, KeyAlgorithm, KeyAttributes, KeyOrigin, KeyRef,
    NewVsc, Node, ObjectId, Origin, PasswordEntry, PasswordRef, PinPolicy, Protector, SecretKeyEntry,
    SlotInfo, State, TouchPolicy, Unlock, Vsc, VscFile,
};
use vsc::secret::{AesKey, SecretBytes};

const PASSWORD: &str = "golden-vsc-v1 correct horse battery staple";
const KEK_ID: &str = "archive-kek/1";
/// SHA-256 of the checked-in file, so that it is not replaced unnoticed.
const FILE_SHA256: &str = "90511d44e439a0a768089f083501e132c75feafc8d121260c7224500d026a5c2";

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/vsc-v1-golden.vsc")
}

fn kek() -> AesKey {
    let bytes: Vec<u8> = (0u8..32).collect();
    AesKey::from_slice(&bytes).unwrap()
}

fn ec_key() -> Vec<u8> {
    // PKCS#8 shape of a P-256 key (version, algorithm, ECPrivateKey with a
    // fixed scalar); only the DER structure is checked by the file layer.
    let mut ec = hex::decode("30250201010420").unwrap();
    ec.extend((0u8..32).map(|i| i.wrapping_mul(7).wrapping_add(1)));
    let mut inner = hex::decode("020100301306072A8648CE3D020106082A8648CE3D030107").unwrap();
    inner.push(0x04);
    inner.push(ec.len() as u8);
    inner.extend(ec);
    let mut der = vec![0x30, inner.len() as u8];
    der.extend(inner);
    der
}

fn hierarchy() -> Df {
    Df {
        fid: 0x3F00,
        name: None,
        children: vec![
            Node::Ef(Ef {
                fid: 0x2F00,
                area: EfArea::Public,
                read: AccessRule::Always,
                update: AccessRule::Never,
                size: 256,
            }),
            Node::Df(Df {
                fid: 0x5015,
                name: Some(vec![0xA0, 0x00, 0x00, 0x03, 0x08]),
                children: vec![
                    Node::Ef(Ef {
                        fid: 0x4401,
                        area: EfArea::Private,
                        read: AccessRule::Pin,
                        update: AccessRule::Pin,
                        size: 512,
                    }),
                    Node::Ef(Ef {
                        fid: 0x4402,
                        area: EfArea::Public,
                        read: AccessRule::Always,
                        update: AccessRule::Pin,
                        size: 32,
                    }),
                ],
            }),
        ],
    }
}

#[test]
#[ignore = "writes tests/vectors/vsc-v1-golden.vsc; run once, by hand"]
fn generate_golden_file() {
    use rand::SeedableRng;
    if std::env::var("VSC_WRITE_GOLDEN").as_deref() != Ok("1") {
        eprintln!("set VSC_WRITE_GOLDEN=1 to write the golden file");
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5653_4331);
    let mut fields = NewVsc::new("VSC 00001079", "piv-basic/1", 1_262_304_000);
    fields.origin = Origin::Master;
    fields.chip_serials = vec![vec![0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66]];
    fields.hierarchy = hierarchy();
    let password = Protector::Password {
        password: SecretBytes::from_slice(PASSWORD.as_bytes()),
        params: Argon2Params::new(8192, 1, 1).unwrap(),
    };
    let mut v = Vsc::create(fields, &password, &mut rng).unwrap();
    v.add_protector(
        &Protector::Kek {
            key_id: KEK_ID.into(),
            key: kek(),
        },
        &mut rng,
    )
    .unwrap();
    v.set_state(State::Disabled);
    for o in [
        DataObject::new(ObjectId::Piv(0x5FC102), b"golden CHUID".to_vec()),
        DataObject::new(ObjectId::File(vec![0x3F00, 0x2F00]), b"EF.DIR golden".to_vec()),
        DataObject::new(ObjectId::File(vec![0x3F00, 0x5015, 0x4402]), vec![0x01, 0x02]),
        DataObject::new(ObjectId::Gp(0x9F7F), vec![0x9F; 42]),
        DataObject::new(ObjectId::Named("Please read".into()), b"public note".to_vec()),
    ] {
        v.put_public(o).unwrap();
    }
    for o in [
        DataObject::new(ObjectId::Named("Private Info".into()), b"golden private".to_vec()),
        DataObject::new(ObjectId::File(vec![0x3F00, 0x5015, 0x4401]), vec![0xAB; 300]),
        DataObject::new(ObjectId::Piv(0x5FC10D), vec![]),
    ] {
        v.put_private(o).unwrap();
    }
    v.put_secret_key(
        SecretKeyEntry::new(
            KeyRef::PivSlot(0x9D),
            KeyAlgorithm::EccP256,
            SecretBytes::new(ec_key()),
            KeyAttributes {
                origin: KeyOrigin::GeneratedOnMaster,
                pin_policy: PinPolicy::Once,
                touch_policy: TouchPolicy::Never,
            },
        )
        .unwrap(),
    );
    v.put_secret_key(
        SecretKeyEntry::new(
            KeyRef::PivSlot(0x9B),
            KeyAlgorithm::Aes256,
            SecretBytes::new((100u8..132).collect()),
            KeyAttributes {
                origin: KeyOrigin::Imported,
                pin_policy: PinPolicy::Default,
                touch_policy: TouchPolicy::Default,
            },
        )
        .unwrap(),
    );
    v.put_secret_key(
        SecretKeyEntry::new(
            KeyRef::Scp03 { kvn: 0x30, kid: 0x01 },
            KeyAlgorithm::Aes128,
            SecretBytes::new(vec![0x40; 16]),
            KeyAttributes {
                origin: KeyOrigin::Imported,
                pin_policy: PinPolicy::Never,
                touch_policy: TouchPolicy::Never,
            },
        )
        .unwrap(),
    );
    v.put_secret_key(
        SecretKeyEntry::new(
            KeyRef::Named("vendor key".into()),
            KeyAlgorithm::Other(0x2E),
            SecretBytes::new(vec![0x2E; 5]),
            KeyAttributes {
                origin: KeyOrigin::Imported,
                pin_policy: PinPolicy::Other(0x7F),
                touch_policy: TouchPolicy::Cached,
            },
        )
        .unwrap(),
    );
    let mut pin = PasswordEntry::new(
        PasswordRef::Pin,
        &SecretBytes::from_slice(b"123456"),
        3,
        6,
        8,
        &mut rng,
    )
    .unwrap();
    pin.decrement();
    v.put_password(pin);
    v.put_password(
        PasswordEntry::new(
            PasswordRef::Puk,
            &SecretBytes::from_slice(b"12345678"),
            10,
            8,
            8,
            &mut rng,
        )
        .unwrap(),
    );
    let bytes = v.to_bytes(&mut rng).unwrap();
    std::fs::write(path(), &bytes).unwrap();
    use sha2::Digest;
    eprintln!("FILE_SHA256 = {}", hex::encode(sha2::Sha256::digest(&bytes)));
}

fn check_known_content(v: &Vsc) {
    let h = v.header();
    assert_eq!(h.label, "VSC 00001079");
    assert_eq!(h.card_type, "piv-basic/1");
    assert_eq!(h.attributes.state, State::Disabled);
    assert_eq!(h.attributes.origin, Origin::Master);
    assert_eq!(h.attributes.created_at, 1_262_304_000);
    assert_eq!(
        h.attributes.chip_serials,
        vec![vec![0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66]]
    );
    assert_eq!(h.hierarchy, hierarchy());
    assert_eq!(v.format_version(), (1, 0));
    assert_eq!(v.protectors().len(), 2);
    assert_eq!(
        v.protectors()[1],
        SlotInfo::Kek {
            key_id: KEK_ID.into()
        }
    );

    let public = v.public_area();
    assert_eq!(public.len(), 5);
    assert_eq!(public[&ObjectId::Piv(0x5FC102)], b"golden CHUID");
    assert_eq!(public[&ObjectId::File(vec![0x3F00, 0x2F00])], b"EF.DIR golden");
    assert_eq!(
        public[&ObjectId::File(vec![0x3F00, 0x5015, 0x4402])],
        [0x01, 0x02]
    );
    assert_eq!(public[&ObjectId::Gp(0x9F7F)], vec![0x9F; 42]);
    assert_eq!(public[&ObjectId::Named("Please read".into())], b"public note");

    let private = v.private_area();
    assert_eq!(private.len(), 3);
    assert_eq!(
        private[&ObjectId::Named("Private Info".into())],
        b"golden private"
    );
    assert_eq!(
        private[&ObjectId::File(vec![0x3F00, 0x5015, 0x4401])],
        vec![0xAB; 300]
    );
    assert!(private[&ObjectId::Piv(0x5FC10D)].is_empty());

    assert_eq!(v.secret_keys().count(), 4);
    let k = v.secret_key(&KeyRef::PivSlot(0x9D)).unwrap();
    assert_eq!(k.algorithm, KeyAlgorithm::EccP256);
    assert_eq!(k.attributes.origin, KeyOrigin::GeneratedOnMaster);
    assert_eq!(k.attributes.pin_policy, PinPolicy::Once);
    assert_eq!(
        k.material_for_card_personalization().expose_secret(),
        &ec_key()[..]
    );
    let k = v.secret_key(&KeyRef::PivSlot(0x9B)).unwrap();
    assert_eq!(k.algorithm, KeyAlgorithm::Aes256);
    assert_eq!(
        k.material_for_card_personalization().expose_secret(),
        &(100u8..132).collect::<Vec<_>>()[..]
    );
    let k = v.secret_key(&KeyRef::Scp03 { kvn: 0x30, kid: 1 }).unwrap();
    assert_eq!(k.material_for_card_personalization().expose_secret(), &[0x40; 16]);
    let k = v.secret_key(&KeyRef::Named("vendor key".into())).unwrap();
    assert_eq!(k.algorithm, KeyAlgorithm::Other(0x2E));
    assert_eq!(k.attributes.pin_policy, PinPolicy::Other(0x7F));
    assert_eq!(k.attributes.touch_policy, TouchPolicy::Cached);

    let pin = v.password(PasswordRef::Pin).unwrap();
    assert!(pin.check(&SecretBytes::from_slice(b"123456")));
    assert!(!pin.check(&SecretBytes::from_slice(b"654321")));
    assert_eq!(
        (
            pin.max_retries(),
            pin.retries_left(),
            pin.min_len(),
            pin.max_len()
        ),
        (3, 2, 6, 8)
    );
    let puk = v.password(PasswordRef::Puk).unwrap();
    assert!(puk.check(&SecretBytes::from_slice(b"12345678")));
    assert_eq!(puk.retries_left(), 10);
}

fn golden_bytes() -> Vec<u8> {
    std::fs::read(path()).expect("tests/vectors/vsc-v1-golden.vsc is checked in")
}

#[test]
fn golden_file_is_the_checked_in_one() {
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(golden_bytes())), FILE_SHA256);
}

#[test]
fn golden_file_loads_with_the_password() {
    let v = Vsc::load(
        &path(),
        &Unlock::Password(SecretBytes::from_slice(PASSWORD.as_bytes())),
    )
    .unwrap();
    check_known_content(&v);
}

#[test]
fn golden_file_loads_with_the_kek() {
    let v = Vsc::load(
        &path(),
        &Unlock::Kek {
            key_id: KEK_ID.into(),
            key: kek(),
        },
    )
    .unwrap();
    check_known_content(&v);
}

#[test]
fn golden_file_inspects_without_a_key() {
    let seen = VscFile::inspect(&golden_bytes()).unwrap();
    assert_eq!(seen.format_version, (1, 0));
    assert_eq!(seen.header.label, "VSC 00001079");
    assert_eq!(seen.header.uid.to_string().len(), 32);
    assert_eq!(seen.public_area_unauthenticated.len(), 5);
    assert_eq!(
        seen.slots[0],
        SlotInfo::Password {
            params: Argon2Params::new(8192, 1, 1).unwrap()
        }
    );
    let counts: Vec<u32> = seen.structure.iter().map(|s| s.object_count).collect();
    assert_eq!(counts, vec![5, 3, 4, 2]);
}

#[test]
fn golden_file_survives_a_rewrite() {
    let unlock = Unlock::Kek {
        key_id: KEK_ID.into(),
        key: kek(),
    };
    let v = Vsc::open(&golden_bytes(), &unlock).unwrap();
    let again = v.to_bytes(&mut rand::rngs::OsRng).unwrap();
    check_known_content(&Vsc::open(&again, &unlock).unwrap());
    // The password slot was carried over unchanged.
    check_known_content(
        &Vsc::open(
            &again,
            &Unlock::Password(SecretBytes::from_slice(PASSWORD.as_bytes())),
        )
        .unwrap(),
    );
}
