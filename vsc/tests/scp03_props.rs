//! SCP03 property tests: random commands at random levels round-trip through
//! host wrap → card unwrap → card wrap_response → host unwrap, and parsing
//! arbitrary bytes never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use vsc::codec::{CommandApdu, ResponseApdu, StatusWord};
use vsc::scp03::{
    CardKeySet, CardOptions, ExternalAuthenticate, HostSession, InitializeUpdate, InitializeUpdateResponse,
    Protection, Scp03Card, SecurityLevel, StaticKeys,
};
use vsc::secret::AesKey;

const AID: &[u8] = &[0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00];
const KDD: [u8; 10] = [0x11; 10];

fn static_keys(len: usize) -> StaticKeys {
    let k = || AesKey::from_slice(&(0..len as u8).map(|i| 0x40 + i).collect::<Vec<_>>()).unwrap();
    StaticKeys::new(k(), k(), k()).unwrap()
}

/// A host and a card with an open session.
fn open(
    level: SecurityLevel,
    key_len: usize,
    host_challenge: [u8; 8],
    seed: u64,
) -> (HostSession, Scp03Card) {
    let mut card = Scp03Card::default();
    let mut keysets = vec![CardKeySet {
        kvn: 1,
        keys: static_keys(key_len),
        sequence_counter: 0,
    }];
    let resp = card
        .process_initialize_update(
            &InitializeUpdate::new(0, host_challenge).to_command(),
            &mut keysets,
            &KDD,
            AID,
            &mut StdRng::seed_from_u64(seed),
        )
        .unwrap();
    let r = InitializeUpdateResponse::from_response(&resp).unwrap();
    let (ea, host) = HostSession::open(&static_keys(key_len), host_challenge, &r, level, Some(AID)).unwrap();
    card.process_external_authenticate(&ea).unwrap();
    (host, card)
}

fn level() -> impl Strategy<Value = SecurityLevel> {
    proptest::sample::select(SecurityLevel::ALL_LEVELS.to_vec())
}

fn status_word() -> impl Strategy<Value = StatusWord> {
    prop_oneof![
        Just(StatusWord::Success),
        Just(StatusWord::VerificationFailed { retries: 2 }),
        Just(StatusWord::EndOfData),
        Just(StatusWord::AuthenticationFailed),
        Just(StatusWord::FileNotFound),
        Just(StatusWord::WrongLength),
        any::<u16>().prop_map(StatusWord::from),
    ]
}

/// A command the host can wrap: CLA without secure messaging bits, on the
/// basic channel (the session's), b7 clear.
fn command() -> impl Strategy<Value = CommandApdu> {
    (
        any::<u8>().prop_map(|c| c & 0xB0),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 0..64),
            1 => proptest::collection::vec(any::<u8>(), 230..600),
        ],
        proptest::option::of(1usize..=65536),
    )
        .prop_map(|(cla, ins, p1, p2, data, ne)| {
            let c = CommandApdu::new(cla, ins, p1, p2).with_data(data).unwrap();
            match ne {
                Some(ne) => c.with_ne(ne).unwrap(),
                None => c,
            }
        })
}

fn response() -> impl Strategy<Value = ResponseApdu> {
    (proptest::collection::vec(any::<u8>(), 0..300), status_word())
        .prop_map(|(data, sw)| ResponseApdu::new(data, sw))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_commands_round_trip_at_random_levels(
        level in level(),
        key_len in proptest::sample::select(vec![16usize, 24, 32]),
        host_challenge in any::<[u8; 8]>(),
        seed in any::<u64>(),
        exchanges in proptest::collection::vec((command(), response()), 1..6),
    ) {
        let (mut host, mut card) = open(level, key_len, host_challenge, seed);
        for (cmd, answer) in exchanges {
            let wrapped = host.wrap(&cmd).unwrap();
            let (seen, protection) = card.unwrap_command_bytes(&wrapped.apdu.to_bytes()).unwrap();
            prop_assert_eq!(protection, Protection::Secured(level));
            prop_assert_eq!(
                (seen.cla(), seen.ins(), seen.p1(), seen.p2(), seen.data()),
                (cmd.cla(), cmd.ins(), cmd.p1(), cmd.p2(), cmd.data())
            );
            prop_assert_eq!(seen.ne().is_some(), cmd.ne().is_some());
            let on_wire = card.wrap_response(answer.clone()).to_bytes();
            let got = host.unwrap(&wrapped.expect, &ResponseApdu::parse(&on_wire).unwrap()).unwrap();
            let protected = answer.sw.is_success() || matches!(answer.sw.sw1(), 0x62 | 0x63);
            let expected = if level.r_mac() && !protected {
                ResponseApdu::status(answer.sw)
            } else {
                answer
            };
            prop_assert_eq!(got, expected);
        }
    }

    #[test]
    fn parsing_an_initialize_update_response_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(r) = InitializeUpdateResponse::parse(&bytes) {
            prop_assert_eq!(r.to_bytes(), bytes.clone());
        }
        if let Ok(resp) = ResponseApdu::parse(&bytes) {
            let _ = InitializeUpdateResponse::from_response(&resp);
        }
    }

    #[test]
    fn parsing_near_valid_initialize_update_responses_never_panics(
        len in prop_oneof![Just(29usize), Just(32), Just(45), Just(48), 0usize..50],
        i in any::<u8>(),
        fill in any::<u8>(),
    ) {
        let mut bytes = vec![fill; len];
        if len > 12 {
            bytes[11] = 0x03;
            bytes[12] = i;
        }
        let _ = InitializeUpdateResponse::parse(&bytes);
    }

    #[test]
    fn parsing_commands_never_panics(
        header in any::<[u8; 4]>(),
        data in proptest::collection::vec(any::<u8>(), 0..40),
        ne in proptest::option::of(1usize..=65536),
    ) {
        let mut cmd = CommandApdu::new(header[0], header[1], header[2], header[3]).with_data(data).unwrap();
        if let Some(ne) = ne {
            cmd = cmd.with_ne(ne).unwrap();
        }
        if let Ok(ea) = ExternalAuthenticate::try_from(&cmd) {
            prop_assert_eq!(ExternalAuthenticate::try_from(&ea.to_command()), Ok(ea));
        }
        let _ = InitializeUpdate::try_from(&cmd);
    }

    /// Arbitrary bytes at every state of the card: never a panic, and in an
    /// open session anything that is not a correctly secured command ends it.
    #[test]
    fn the_card_never_panics_on_arbitrary_bytes(
        raw in proptest::collection::vec(any::<u8>(), 0..80),
        level in level(),
        seed in any::<u64>(),
    ) {
        let mut idle = Scp03Card::new(CardOptions::default());
        let _ = idle.unwrap_command_bytes(&raw);
        if let Ok(cmd) = CommandApdu::parse(&raw) {
            let _ = idle.process_external_authenticate(&cmd);
            let mut keysets = vec![CardKeySet { kvn: 1, keys: static_keys(16), sequence_counter: 0 }];
            let _ = idle.process_initialize_update(&cmd, &mut keysets, &KDD, AID, &mut StdRng::seed_from_u64(seed));
            let _ = idle.process_external_authenticate(&cmd);
        }
        let (mut host, mut card) = open(level, 16, [1; 8], seed);
        if card.unwrap_command_bytes(&raw).is_err() {
            prop_assert!(!card.has_session_keys());
        }
        let _ = card.wrap_response(ResponseApdu::success(raw.clone()));
        // The host facing arbitrary response bytes.
        let w = host.wrap(&CommandApdu::new(0x80, 0xCA, 0, 0)).unwrap();
        if let Ok(resp) = ResponseApdu::parse(&raw) {
            let _ = host.unwrap(&w.expect, &resp);
        }
    }
}
