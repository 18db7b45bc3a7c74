//! Property tests: random commands to the issuer security domain and the
//! file system never make the card panic, always get a status word, and
//! never leave the card's VSC unusable — in clear and through an SCP03
//! session (where the ISD and file system take them with the issuer's
//! authority).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod isd_support;

use isd_support::*;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use vsc::card::fs::fcp::{create_df_data, create_ef_data};
use vsc::card::gp_state;
use vsc::card::isd::put_key::put_key_command;
use vsc::codec::{CommandApdu, ResponseApdu, Tlv};
use vsc::file::{AccessRule, EfArea};
use vsc::scp03::SecurityLevel;
use vsc::tag;
use vsc::transport::{CardTransport, ResetKind};

/// Instructions of the ISD and the file system, and some others.
const INS: [u8; 16] = [
    0xA4, 0xCA, 0xD8, 0xF2, 0xF0, 0xE2, 0xB0, 0xD6, 0xE0, 0xE4, 0x20, 0xC0, 0x50, 0x82, 0xCB, 0x00,
];

fn cla() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => Just(0x00u8),
        4 => Just(0x80u8),
        1 => Just(0x84u8),
        1 => Just(0x10u8),
        1 => Just(0x90u8),
        1 => any::<u8>(),
    ]
}

fn ins() -> impl Strategy<Value = u8> {
    prop_oneof![6 => proptest::sample::select(INS.to_vec()), 1 => any::<u8>()]
}

fn p1p2() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => proptest::sample::select(vec![0x00u8, 0x01, 0x02, 0x03, 0x04, 0x08, 0x09, 0x0C, 0x80, 0x81, 0x40, 0x0F, 0x7F, 0xFF]),
        1 => any::<u8>(),
    ]
}

/// A CREATE FILE-like FCP with random children from the tags it knows.
fn fcp() -> impl Strategy<Value = Vec<u8>> {
    let child = (
        proptest::sample::select(vec![0x80u32, 0x81, 0x82, 0x83, 0x84, 0x85, 0x8A, 0x8C, 0x99]),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..4),
            proptest::sample::select(vec![
                vec![0x01u8],
                vec![0x38],
                vec![0x03],
                vec![0x04],
                vec![0x50, 0x15],
                vec![0x03, 0xFF, 0x10]
            ]),
        ],
    );
    proptest::collection::vec(child, 0..7).prop_map(|children| {
        let tlvs: Vec<Tlv> = children
            .into_iter()
            .map(|(t, v)| Tlv::new(vsc::codec::Tag::new(t).unwrap(), v))
            .collect();
        Tlv::constructed(tag!(0x62), &tlvs).to_bytes()
    })
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => proptest::collection::vec(any::<u8>(), 0..300),
        2 => fcp(),
        // FIDs and paths.
        2 => proptest::sample::select(vec![vec![0x3Fu8, 0x00], vec![0x50, 0x15], vec![0x44, 0x01], vec![0x50, 0x15, 0x44, 0x01], vec![0x4F, 0x00]]),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    Command {
        cla: u8,
        ins: u8,
        p1: u8,
        p2: u8,
        data: Vec<u8>,
        ne: Option<usize>,
    },
    Raw(Vec<u8>),
    Reset,
}

fn command(cla: u8, ins: u8, p1: u8, p2: u8, data: Vec<u8>, ne: Option<usize>) -> Step {
    Step::Command {
        cla,
        ins,
        p1,
        p2,
        data,
        ne,
    }
}

fn select_some(v: &[u8]) -> impl Strategy<Value = u8> {
    proptest::sample::select(v.to_vec())
}

fn ne() -> impl Strategy<Value = Option<usize>> {
    proptest::option::of(prop_oneof![Just(256usize), 1usize..300, Just(65_536usize)])
}

/// A PUT KEY of random AES-128 keys under the test Key-DEK, sometimes with
/// one byte changed.
fn put_key() -> impl Strategy<Value = Step> {
    (
        select_some(&[0x00, 0x01, 0x20, 0x30]),
        0x20u8..0x30,
        any::<u64>(),
        proptest::option::of((0usize..60, any::<u8>())),
    )
        .prop_map(|(p1, kvn, seed, flip)| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut k = || vsc::secret::AesKey::random(&mut rng, vsc::secret::AesKeyLen::Aes128);
            let keys = vsc::scp03::StaticKeys::new(k(), k(), k()).unwrap();
            let c = put_key_command(Some(p1).filter(|p| *p != 0), kvn, test_keys().dek(), &keys);
            let mut data = c.data().to_vec();
            if let Some((at, x)) = flip {
                if let Some(b) = data.get_mut(at) {
                    *b ^= x;
                }
            }
            command(0x80, 0xD8, p1, 0x81, data, Some(256))
        })
}

/// Commands shaped like the ones the ISD and the file system know, with
/// parameters and data from small sets of likely values.
fn shaped() -> impl Strategy<Value = Step> {
    let fid = || {
        select_some(&[0x3F, 0x50, 0x44, 0x2F])
            .prop_flat_map(|hi| (Just(hi), select_some(&[0x00, 0x01, 0x02, 0x15])))
    };
    prop_oneof![
        // SELECT in the file system.
        (
            select_some(&[0x00, 0x01, 0x02, 0x03, 0x08, 0x09]),
            select_some(&[0x00, 0x04, 0x0C, 0x01]),
            proptest::collection::vec(fid(), 0..3)
        )
            .prop_map(|(p1, p2, fids)| command(
                0x00,
                0xA4,
                p1,
                p2,
                fids.into_iter().flat_map(|(a, b)| [a, b]).collect(),
                Some(256)
            )),
        // SELECT by AID.
        select_some(&[0, 5, 8, 11]).prop_map(|n| {
            let aid = if n == 11 {
                vsc::card::piv::PIV_AID.to_vec()
            } else {
                vsc::card::ISD_AID[..usize::from(n)].to_vec()
            };
            command(0x00, 0xA4, 0x04, 0x00, aid, Some(256))
        }),
        // READ BINARY, UPDATE BINARY.
        (0u16..80, ne()).prop_map(|(off, ne)| {
            let [a, b] = off.to_be_bytes();
            command(0x00, 0xB0, a, b, vec![], ne)
        }),
        (0u16..80, proptest::collection::vec(any::<u8>(), 0..70)).prop_map(|(off, d)| {
            let [a, b] = off.to_be_bytes();
            command(0x00, 0xD6, a, b, d, None)
        }),
        // CREATE FILE (random and well-formed), DELETE FILE, VERIFY.
        (select_some(&[0x00, 0x01]), fcp()).prop_map(|(p2, d)| command(0x00, 0xE0, 0x00, p2, d, None)),
        (
            fid(),
            0u16..100,
            any::<bool>(),
            0usize..3,
            0usize..3,
            any::<bool>()
        )
            .prop_map(|((a, b), size, private, r, u, df)| {
                let rules = [AccessRule::Always, AccessRule::Pin, AccessRule::Never];
                let fid = u16::from_be_bytes([a, b]);
                let area = if private { EfArea::Private } else { EfArea::Public };
                let d = if df {
                    create_df_data(fid, None)
                } else {
                    create_ef_data(fid, size, area, rules[r], rules[u])
                };
                command(0x00, 0xE0, 0, 0, d, None)
            }),
        Just(command(0x00, 0xA4, 0x00, 0x0C, vec![0x3F, 0x00], None)),
        proptest::option::of(fid()).prop_map(|f| command(
            0x00,
            0xE4,
            0,
            0,
            f.map(|(a, b)| vec![a, b]).unwrap_or_default(),
            None
        )),
        (
            select_some(&[0x00, 0xFF]),
            select_some(&[0x80, 0x81]),
            select_some(&[0, 8])
        )
            .prop_map(|(p1, p2, n)| command(
                0x00,
                0x20,
                p1,
                p2,
                b"123456\xFF\xFF"[..usize::from(n)].to_vec(),
                None
            )),
        // GET DATA.
        (
            select_some(&[0x00, 0x80]),
            proptest::sample::select(vec![0x9F7Fu16, 0x0066, 0x00E0, 0x00C1, 0x00CF, 0x0042, 0x5F50])
        )
            .prop_map(|(cla, tag): (u8, u16)| {
                let [a, b] = tag.to_be_bytes();
                command(cla, 0xCA, a, b, vec![], Some(256))
            }),
        // PUT KEY, GET STATUS, SET STATUS, STORE DATA.
        put_key(),
        (
            select_some(&[0x80, 0x40, 0x20, 0x10]),
            select_some(&[0x02, 0x03, 0x00]),
            proptest::collection::vec(any::<u8>(), 0..6)
        )
            .prop_map(|(p1, p2, aid)| {
                let mut d = vec![0x4F, aid.len() as u8];
                d.extend(aid);
                command(0x80, 0xF2, p1, p2, d, Some(256))
            }),
        select_some(&[0x01, 0x07, 0x0F, 0x7F, 0xFF, 0x03]).prop_map(|p2| command(
            0x80,
            0xF0,
            0x80,
            p2,
            vec![],
            None
        )),
        (
            select_some(&[0x00, 0x10, 0x08, 0x80, 0x88, 0x90, 0x60]),
            0u8..3,
            data()
        )
            .prop_map(|(p1, p2, d)| command(0x80, 0xE2, p1, p2, d, None)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => shaped(),
        6 => (cla(), ins(), p1p2(), p1p2(), data(), ne())
            .prop_map(|(cla, ins, p1, p2, data, ne)| command(cla, ins, p1, p2, data, ne)),
        2 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Step::Raw),
        1 => Just(Step::Reset),
    ]
}

fn build(cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8], ne: Option<usize>) -> Option<CommandApdu> {
    let mut c = CommandApdu::new(cla, ins, p1, p2);
    if !data.is_empty() {
        c = c.with_data(data.to_vec()).ok()?;
    }
    if let Some(ne) = ne {
        c = c.with_ne(ne).ok()?;
    }
    Some(c)
}

fn check_card(t: &Card) {
    let vsc = t.card().vsc();
    // The key sets stay usable and the VSC can still be written.
    gp_state::keysets(vsc).unwrap();
    vsc.header().validate().unwrap();
    vsc.to_bytes(&mut StdRng::seed_from_u64(0)).unwrap();
}

fn answer(bytes: &[u8]) -> ResponseApdu {
    assert!(bytes.len() >= 2, "a response without a status word");
    ResponseApdu::parse(bytes).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_commands_in_clear_always_get_a_status_word(steps in proptest::collection::vec(step(), 1..24)) {
        let mut t = card(400);
        for s in &steps {
            match s {
                Step::Command { cla, ins, p1, p2, data, ne } => {
                    if let Some(c) = build(*cla, *ins, *p1, *p2, data, *ne) {
                        answer(&t.transmit(&c.to_bytes()).unwrap());
                    }
                }
                Step::Raw(bytes) => {
                    answer(&t.transmit(bytes).unwrap());
                }
                Step::Reset => {
                    t.reset(ResetKind::Warm).unwrap();
                }
            }
        }
        check_card(&t);
    }

    #[test]
    fn random_commands_with_the_issuers_authority_always_get_a_status_word(
        start_in_files in any::<bool>(),
        steps in proptest::collection::vec(step(), 1..24),
    ) {
        let mut t = card(401);
        if start_in_files {
            assert!(send(&mut t, "00A4000C023F00").is_success());
        }
        let mut s = open(&mut t, SecurityLevel::All);
        for st in &steps {
            match st {
                Step::Command { cla, ins, p1, p2, data, ne } => {
                    // Commands the dispatcher answers before secure messaging
                    // would desynchronise the session; the rest go through it.
                    if matches!(ins, 0x50 | 0x82 | 0xC0) {
                        continue;
                    }
                    let cla = cla & 0x80;
                    let Some(c) = build(cla, *ins, *p1, *p2, data, *ne) else { continue };
                    let Ok(w) = s.wrap(&c) else { continue };
                    let r = vsc::transport::exchange(&mut t, &w.apdu, false).unwrap();
                    let _ = s.unwrap(&w.expect, &r);
                }
                Step::Raw(bytes) => {
                    answer(&t.transmit(bytes).unwrap());
                }
                Step::Reset => {
                    t.reset(ResetKind::Warm).unwrap();
                }
            }
            if s.is_ended() || !t.card().secure_channel_open() {
                // Open a new one from the ISD (PIV may be selected now).
                t.reset(ResetKind::Warm).unwrap();
                match open_with(&mut t, 0x01, &test_keys(), SecurityLevel::All, vsc::card::ISD_AID) {
                    Ok(new) => s = new,
                    Err(_) => break,
                }
            }
        }
        check_card(&t);
    }
}
