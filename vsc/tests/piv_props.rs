//! Properties of the PIV application under any input: every command ends in
//! a status word without a panic, and no response ever carries private key
//! material.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod piv_support;

use std::collections::HashSet;
use std::sync::OnceLock;

use piv_support::*;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use vsc::card::SoftCard;
use vsc::codec::{CommandApdu, ResponseApdu, StatusWord};
use vsc::file::{KeyAlgorithm, KeyRef, Unlock, Vsc};
use vsc::secret::AesKey;
use vsc::transport::{CardTransport, InProcess, ResetKind};

const CUSTOM_MGMT: [u8; 24] = [
    0x3A, 0x71, 0x0C, 0xE2, 0x95, 0x4B, 0xD8, 0x16, 0x6F, 0xA3, 0x27, 0xC9, 0x50, 0x1E, 0xB4, 0x8D, 0x02,
    0xF7, 0x69, 0x3C, 0xAE, 0x41, 0x9B, 0x05,
];

fn unlock() -> Unlock {
    Unlock::Kek {
        key_id: "stock/1".into(),
        key: AesKey::from_slice(&[9; 32]).unwrap(),
    }
}

/// A card holding keys in several slots (RSA in 9E, which needs no PIN;
/// P-256 in 9A, 9C, 9D) with the default management key, as VSC bytes.
fn template() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let mut t = piv_card(4000);
        authenticate_default(&mut t);
        assert_eq!(
            import_rsa(&mut t, 0x9E, &test_rsa_key(41), &[]),
            StatusWord::Success
        );
        for (slot, seed) in [(0x9A, 42), (0x9C, 43), (0x9D, 44)] {
            assert_eq!(
                import_p256(&mut t, slot, &test_p256_key(seed), &[]),
                StatusWord::Success
            );
        }
        let mut d = hex("5C 03 5F C1 09");
        d.extend(tlv(&[0x53], b"printed"));
        assert_eq!(send(&mut t, &cmd(0xDB, 0x3F, 0xFF, &d)).sw, StatusWord::Success);
        t.remove()
            .into_vsc()
            .to_bytes(&mut StdRng::seed_from_u64(1))
            .unwrap()
    })
}

fn fresh_card(seed: u64) -> Card {
    let vsc = Vsc::open(template(), &unlock()).unwrap();
    InProcess::insert(SoftCard::with_seed(vsc, seed).unwrap())
}

// ------------------------------------------------------------ strategies

const INS: &[u8] = &[
    0xCB, 0xDB, 0x20, 0x24, 0x2C, 0x87, 0x47, 0xFE, 0xFF, 0xFD, 0xF8, 0xF7, 0xA4, 0xC0,
];
const P1: &[u8] = &[0x00, 0x3F, 0xFF, 0x03, 0x07, 0x11, 0x0A, 0x04];
const P2: &[u8] = &[0xFF, 0x80, 0x81, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x82, 0x95, 0x00];
const TAGS: &[u8] = &[
    0x80, 0x81, 0x82, 0x85, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x53, 0x5C, 0xAA, 0xAB, 0x4F,
];

fn leaf() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(TAGS),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..12),
            prop::collection::vec(any::<u8>(), 0..300),
            Just(vec![0x11]),
            Just(vec![0x07]),
            Just(hex("5F C1 05")),
            Just(vec![0x7E]),
        ],
    )
        .prop_map(|(t, v)| tlv(&[t], &v))
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    let tree = leaf().prop_recursive(3, 24, 4, |inner| {
        (
            prop::sample::select(&[0x7Cu8, 0xAC, 0x7E, 0x53][..]),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(t, kids)| tlv(&[t], &kids.concat()))
    });
    prop_oneof![
        3 => tree,
        1 => prop::collection::vec(leaf(), 0..6).prop_map(|v| v.concat()),
        1 => prop::collection::vec(any::<u8>(), 0..40),
        1 => prop::collection::vec(any::<u8>(), 200..700),
        1 => Just(padded(b"123456")),
    ]
}

fn command() -> impl Strategy<Value = Vec<u8>> {
    let structured = (
        prop_oneof![4 => Just(0x00u8), 1 => Just(0x10), 1 => Just(0x80), 1 => any::<u8>()],
        prop_oneof![4 => prop::sample::select(INS), 1 => any::<u8>()],
        prop_oneof![3 => prop::sample::select(P1), 1 => any::<u8>()],
        prop_oneof![3 => prop::sample::select(P2), 1 => any::<u8>()],
        data(),
        prop::option::of(1usize..=65536),
    )
        .prop_map(|(cla, ins, p1, p2, data, ne)| {
            let c = CommandApdu::new(cla, ins, p1, p2);
            let c = if data.is_empty() || data.len() > 65535 {
                c
            } else {
                c.with_data(data).unwrap()
            };
            let c = match ne {
                Some(ne) => c.with_ne(ne).unwrap(),
                None => c,
            };
            if c.needs_extended() {
                c.to_bytes_extended()
            } else {
                c.to_bytes()
            }
        });
    prop_oneof![
        6 => structured,
        1 => prop::collection::vec(any::<u8>(), 0..20),
    ]
}

/// Checks one response: at least a status word, and it parses.
fn check(bytes: &[u8]) -> Result<ResponseApdu, TestCaseError> {
    prop_assert!(bytes.len() >= 2, "no status word");
    Ok(ResponseApdu::parse(bytes).unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    /// Random PIV commands, with or without the PIN and the management key,
    /// never panic the card and always end in a status word.
    #[test]
    fn random_commands_always_end_in_a_status_word(
        seed in any::<u64>(),
        admin in any::<bool>(),
        pin in any::<bool>(),
        commands in prop::collection::vec(command(), 1..12),
    ) {
        let mut t = fresh_card(seed);
        select_piv(&mut t);
        if admin {
            authenticate_default(&mut t);
        }
        if pin {
            prop_assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
        }
        for c in &commands {
            let r = t.transmit(c).unwrap();
            check(&r)?;
        }
        // And the card still answers sensibly afterwards.
        t.reset(ResetKind::Warm).unwrap();
        let r = raw(&mut t, "00 A4 04 00 05 A0 00 00 03 08");
        prop_assert_eq!(r.sw, StatusWord::Success);
    }
}

// ------------------------------------------------------------ key scan

/// Every 8-byte window of `bytes`.
fn windows(bytes: &[u8]) -> impl Iterator<Item = [u8; 8]> + '_ {
    bytes.windows(8).map(|w| w.try_into().unwrap())
}

/// The private parts of every key a VSC holds, as 8-byte windows: the
/// PKCS#8 DER (without the windows that lie inside its public key), RSA
/// d, p, q, dP, dQ, qInv, the EC scalar, symmetric keys.
fn secret_windows(vsc: &Vsc) -> HashSet<[u8; 8]> {
    let mut secret = HashSet::new();
    let mut public = HashSet::new();
    for entry in vsc.secret_keys() {
        if !matches!(entry.id, KeyRef::PivSlot(_)) {
            continue;
        }
        let material = entry.material_for_card_personalization().expose_secret();
        match entry.algorithm {
            KeyAlgorithm::Rsa2048 => {
                let k = rsa::RsaPrivateKey::from_pkcs8_der(material).unwrap();
                // Public: n and e as the card encodes them (7F49, metadata)
                // and as DER encodes them (PKCS#1 RSAPublicKey).
                let mut template = tlv(&[0x81], &k.n().to_bytes_be());
                template.extend(tlv(&[0x82], &k.e().to_bytes_be()));
                public.extend(windows(&tlv(&[0x7F, 0x49], &template)));
                use rsa::pkcs1::EncodeRsaPublicKey;
                public.extend(windows(k.to_public_key().to_pkcs1_der().unwrap().as_bytes()));
                let parts = [
                    k.d().to_bytes_be(),
                    k.primes()[0].to_bytes_be(),
                    k.primes()[1].to_bytes_be(),
                    k.dp().unwrap().to_bytes_be(),
                    k.dq().unwrap().to_bytes_be(),
                    k.crt_coefficient().unwrap().to_bytes_be(),
                ];
                for p in &parts {
                    secret.extend(windows(p));
                }
                secret.extend(windows(material));
            }
            KeyAlgorithm::EccP256 => {
                let k = p256::SecretKey::from_pkcs8_der(material).unwrap();
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                let point = k.public_key().to_encoded_point(false);
                public.extend(windows(&tlv(&[0x7F, 0x49], &tlv(&[0x86], point.as_bytes()))));
                secret.extend(windows(&k.to_bytes()));
                secret.extend(windows(material));
            }
            _ => secret.extend(windows(material)),
        }
    }
    secret.retain(|w| !public.contains(w));
    secret
}

/// Random commands from a seeded generator, for the scan.
fn random_command(rng: &mut StdRng) -> Vec<u8> {
    let ins = if rng.gen_bool(0.8) {
        INS[rng.gen_range(0..INS.len())]
    } else {
        rng.gen()
    };
    let p1 = P1[rng.gen_range(0..P1.len())];
    let p2 = P2[rng.gen_range(0..P2.len())];
    let mut data = Vec::new();
    for _ in 0..rng.gen_range(0..4) {
        let tag = TAGS[rng.gen_range(0..TAGS.len())];
        let value: Vec<u8> = (0..rng.gen_range(0..40)).map(|_| rng.gen()).collect();
        data.extend(tlv(&[tag], &value));
    }
    if rng.gen_bool(0.5) {
        data = tlv(&[[0x7C, 0xAC, 0x5C][rng.gen_range(0..3)]], &data);
    }
    let c = CommandApdu::new(0x00, ins, p1, p2);
    let c = if data.is_empty() {
        c
    } else {
        c.with_data(data).unwrap()
    };
    c.with_ne(256).unwrap().to_bytes()
}

#[test]
fn no_response_carries_private_key_material() {
    let mut t = Recorder::new(piv_card(4100));
    let mut assembled: Vec<Vec<u8>> = Vec::new();
    let mut go = |t: &mut Recorder<Card>, c: CommandApdu| {
        let r = send(t, &c);
        assembled.push(r.data.clone());
        r
    };
    // Keys: a management key of the test's own, imported and generated keys.
    authenticate_default(&mut t);
    let mut set = vec![0x03, 0x9B, 0x18];
    set.extend(CUSTOM_MGMT);
    assert_eq!(go(&mut t, cmd(0xFF, 0xFF, 0xFF, &set)).sw, StatusWord::Success);
    authenticate(&mut t, 0x03, &CUSTOM_MGMT).unwrap();
    assert_eq!(
        go(
            &mut t,
            cmd(0xFE, 0x07, 0x9D, &rsa_import_data(&test_rsa_key(51), &[]))
        )
        .sw,
        StatusWord::Success
    );
    let mut ec = tlv(&[0x06], &test_p256_key(52).to_bytes());
    ec.extend(hex("AA 01 01"));
    assert_eq!(go(&mut t, cmd(0xFE, 0x11, 0x9A, &ec)).sw, StatusWord::Success);
    for (slot, alg) in [(0x9C, 0x07), (0x9E, 0x11), (0x82, 0x11), (0x83, 0x07)] {
        assert_eq!(
            go(&mut t, cmd(0x47, 0x00, slot, &[0xAC, 0x03, 0x80, 0x01, alg])).sw,
            StatusWord::Success
        );
    }
    // Every command in its valid forms.
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    let mut block = vec![0x00, 0x01];
    block.resize(256 - 33, 0xFF);
    block.push(0x00);
    block.extend([0x42; 32]);
    let point = {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        test_p256_key(53)
            .public_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec()
    };
    for (slot, alg) in [
        (0x9A, 0x11),
        (0x9C, 0x07),
        (0x9D, 0x07),
        (0x9E, 0x11),
        (0x82, 0x11),
        (0x83, 0x07),
    ] {
        assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
        let input = if alg == 0x07 {
            block.clone()
        } else {
            vec![0x42; 32]
        };
        let mut inner = vec![0x82, 0x00];
        inner.extend(tlv(&[0x81], &input));
        assert_eq!(
            go(&mut t, cmd(0x87, alg, slot, &tlv(&[0x7C], &inner))).sw,
            StatusWord::Success,
            "{slot:02X}"
        );
        if alg == 0x11 && slot != 0x9C {
            let mut inner = vec![0x82, 0x00];
            inner.extend(tlv(&[0x85], &point));
            assert_eq!(
                go(&mut t, cmd(0x87, alg, slot, &tlv(&[0x7C], &inner))).sw,
                StatusWord::Success
            );
        }
    }
    for p2 in [0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x80, 0x81, 0x82, 0x83, 0x84] {
        go(&mut t, cmd(0xF7, 0x00, p2, &[]));
    }
    for tag in [
        "7E", "5FC102", "5FC107", "5FC109", "5FC10C", "5FC105", "5FC10A", "5FC10B", "5FC101", "5FC10D",
    ] {
        go(&mut t, cmd(0xCB, 0x3F, 0xFF, &tlv(&[0x5C], &hex(tag))));
    }
    for c in [
        "00 FD 00 00 00",
        "00 F8 00 00 00",
        "00 20 00 80",
        "00 20 00 81",
        "00 87 00 9B 04 7C 02 81 00 00",
    ] {
        go(&mut t, CommandApdu::parse(&hex(c)).unwrap());
    }
    let mut change = padded(b"123456");
    change.extend(padded(b"654321"));
    go(&mut t, cmd(0x24, 0x00, 0x80, &change));
    // Invalid forms, then a stream of random ones with and without the PIN.
    let mut rng = StdRng::seed_from_u64(4242);
    for i in 0..1500 {
        if i == 750 {
            t.reset(ResetKind::Warm).unwrap();
            select_piv(&mut t);
            // (Random VERIFYs may have spent the tries; then without PIN.)
            verify_pin(&mut t, b"654321");
        }
        let c = random_command(&mut rng);
        if let Ok(c) = CommandApdu::parse(&c) {
            // No random command may change the keys under test.
            if matches!(u8::from(c.ins()), 0x47 | 0xFE | 0xFF) {
                continue;
            }
            go(&mut t, c);
        }
    }
    let responses = t.responses.clone();
    let vsc = t.inner.remove().into_vsc();
    let secret = secret_windows(&vsc);
    assert!(secret.len() > 2000, "{} secret windows", secret.len());
    // The scan would see a leak: each key's PKCS#8 encoding, the imported
    // EC scalar and RSA primes all fall among the secret windows.
    for entry in vsc.secret_keys().filter(|e| e.algorithm.is_asymmetric()) {
        let der = entry.material_for_card_personalization().expose_secret();
        assert!(
            windows(der).filter(|w| secret.contains(w)).count() > 24,
            "{}",
            entry.id
        );
    }
    let ec_scalar = test_p256_key(52).to_bytes();
    assert!(windows(&ec_scalar).all(|w| secret.contains(&w)));
    let rsa = test_rsa_key(51);
    for prime in rsa.primes() {
        assert!(windows(&prime.to_bytes_be()).all(|w| secret.contains(&w)));
    }
    let mut secret_with_mgmt = secret;
    secret_with_mgmt.extend(windows(&CUSTOM_MGMT));
    let mut hits = 0;
    let all_data: Vec<u8> = assembled.concat();
    for r in responses
        .iter()
        .chain(assembled.iter())
        .chain(std::iter::once(&all_data))
    {
        hits += windows(r).filter(|w| secret_with_mgmt.contains(w)).count();
    }
    assert!(responses.len() > 1200, "{} responses", responses.len());
    assert_eq!(hits, 0);
}
