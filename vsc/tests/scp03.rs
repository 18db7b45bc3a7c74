//! SCP03: test vectors, the host and card halves as a pair at every level and
//! key length, tampering, the pseudo-random challenge, and an independent
//! re-implementation of the wire format from the spec text as a cross-check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::rngs::StdRng;
use rand::SeedableRng;
use vsc::codec::{CommandApdu, ResponseApdu, StatusWord};
use vsc::scp03::{
    CardKeySet, CardOptions, CardSessionState, ChallengeMode, HostSession, InitializeUpdate,
    InitializeUpdateResponse, Protection, ResponseSupport, Scp03Card, Scp03Error, SecurityLevel, StaticKeys,
};
use vsc::secret::AesKey;

/// Shared fixtures: keys, a card with its keysets, and a test application.
mod support {
    use super::*;

    pub const AID: &[u8] = &[0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00];
    pub const KDD: [u8; 10] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09];
    pub const HOST_CHALLENGE: [u8; 8] = [0xA7, 0xF7, 0x6C, 0x71, 0x3F, 0x0A, 0x71, 0x3D];
    pub const KVN: u8 = 0x30;
    pub const SW_6982: [u8; 2] = [0x69, 0x82];

    /// `40 41 42 …` of `len` bytes, plus `offset` to make distinct keys.
    pub fn key(len: usize, offset: u8) -> AesKey {
        AesKey::from_slice(&(0..len as u8).map(|i| 0x40 + i + offset).collect::<Vec<_>>()).unwrap()
    }

    pub fn static_keys(len: usize) -> StaticKeys {
        StaticKeys::new(key(len, 0), key(len, 0), key(len, 0)).unwrap()
    }

    pub fn keysets(len: usize) -> Vec<CardKeySet> {
        vec![CardKeySet {
            kvn: KVN,
            keys: static_keys(len),
            sequence_counter: 0,
        }]
    }

    pub fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    /// The test application behind the card. P1 chooses the answer.
    pub fn app(cmd: &CommandApdu) -> ResponseApdu {
        match cmd.p1() {
            // Data derived from the command, so a mix-up shows.
            0x00 => {
                let mut d: Vec<u8> = cmd.data().iter().rev().copied().collect();
                d.push(cmd.ins().into());
                ResponseApdu::success(d)
            }
            0x01 => ResponseApdu::success(Vec::new()),
            0x02 => ResponseApdu::new(vec![1, 2, 3], StatusWord::VerificationFailed { retries: 2 }),
            0x03 => ResponseApdu::status(StatusWord::FileNotFound),
            0x04 => ResponseApdu::status(StatusWord::EndOfData),
            0x05 => ResponseApdu::success((0..300).map(|i| i as u8).collect::<Vec<_>>()),
            // An application that wrongly puts data into an error response.
            0x06 => ResponseApdu::new(vec![0xDE, 0xAD], StatusWord::FileNotFound),
            _ => ResponseApdu::status(StatusWord::IncorrectP1P2),
        }
    }

    /// What the card side does with the bytes of one command after the
    /// session is open: unwrap, run the application, wrap. Returns the
    /// response bytes and the command the application saw.
    pub fn card_transmit(card: &mut Scp03Card, raw: &[u8]) -> (Vec<u8>, Option<(CommandApdu, Protection)>) {
        match card.unwrap_command_bytes(raw) {
            Err(sw) => (ResponseApdu::status(sw).to_bytes(), None),
            Ok((cmd, protection)) => {
                let resp = card.wrap_response(app(&cmd));
                (resp.to_bytes(), Some((cmd, protection)))
            }
        }
    }

    pub struct Pair {
        pub host: HostSession,
        pub card: Scp03Card,
        pub keysets: Vec<CardKeySet>,
        pub init_response: InitializeUpdateResponse,
    }

    /// INITIALIZE UPDATE + EXTERNAL AUTHENTICATE between a host and a default card.
    pub fn open(level: SecurityLevel, key_len: usize) -> Pair {
        open_with(CardOptions::default(), level, key_len)
    }

    pub fn open_with(options: CardOptions, level: SecurityLevel, key_len: usize) -> Pair {
        let mut card = Scp03Card::new(options);
        let mut keysets = keysets(key_len);
        let iu = InitializeUpdate::new(0, HOST_CHALLENGE).to_command();
        let resp = card
            .process_initialize_update(
                &CommandApdu::parse(&iu.to_bytes()).unwrap(),
                &mut keysets,
                &KDD,
                AID,
                &mut rng(),
            )
            .unwrap();
        let resp = ResponseApdu::parse(&resp.to_bytes()).unwrap();
        let init_response = InitializeUpdateResponse::from_response(&resp).unwrap();
        let (ea, host) = HostSession::open(
            &static_keys(key_len),
            HOST_CHALLENGE,
            &init_response,
            level,
            Some(AID),
        )
        .unwrap();
        let ok = card
            .process_external_authenticate(&CommandApdu::parse(&ea.to_bytes()).unwrap())
            .unwrap();
        assert_eq!(ok.to_bytes(), [0x90, 0x00]);
        assert_eq!(card.state(), CardSessionState::Open(level));
        Pair {
            host,
            card,
            keysets,
            init_response,
        }
    }

    /// A new session with the same card and keysets (the sequence counter
    /// goes on, as a real card persists it).
    pub fn open_again(pair: Pair, level: SecurityLevel) -> Pair {
        let Pair {
            mut card,
            mut keysets,
            ..
        } = pair;
        let key_len = keysets[0].keys.enc().expose_secret().len();
        let iu = InitializeUpdate::new(0, HOST_CHALLENGE).to_command();
        let resp = card
            .process_initialize_update(&iu, &mut keysets, &KDD, AID, &mut rng())
            .unwrap();
        let init_response = InitializeUpdateResponse::from_response(&resp).unwrap();
        let (ea, host) = HostSession::open(
            &static_keys(key_len),
            HOST_CHALLENGE,
            &init_response,
            level,
            Some(AID),
        )
        .unwrap();
        card.process_external_authenticate(&ea).unwrap();
        Pair {
            host,
            card,
            keysets,
            init_response,
        }
    }

    /// Wraps, sends as bytes, checks what the application saw, unwraps.
    pub fn exchange(pair: &mut Pair, cmd: &CommandApdu) -> Result<ResponseApdu, Scp03Error> {
        let wrapped = pair.host.wrap(cmd)?;
        let raw = wrapped.apdu.to_bytes();
        let (resp, seen) = card_transmit(&mut pair.card, &raw);
        let (seen, protection) = seen.unwrap_or_else(|| panic!("card refused {cmd:?}: {resp:02X?}"));
        assert_eq!(protection, Protection::Secured(pair.host.level()));
        assert_eq!(
            (seen.cla(), seen.ins(), seen.p1(), seen.p2(), seen.data()),
            (cmd.cla(), cmd.ins(), cmd.p1(), cmd.p2(), cmd.data()),
        );
        let expected_ne = cmd
            .ne()
            .map(|_| if wrapped.apdu.needs_extended() { 65536 } else { 256 });
        assert_eq!(seen.ne(), expected_ne);
        pair.host
            .unwrap(&wrapped.expect, &ResponseApdu::parse(&resp).unwrap())
    }

    pub fn command(cla: u8, ins: u8, p1: u8, data: &[u8], ne: Option<usize>) -> CommandApdu {
        let c = CommandApdu::new(cla, ins, p1, 0x00)
            .with_data(data.to_vec())
            .unwrap();
        match ne {
            Some(ne) => c.with_ne(ne).unwrap(),
            None => c,
        }
    }

    /// The session is over on the card: refused, aborted, keys gone.
    pub fn assert_card_session_over(card: &Scp03Card) {
        assert_eq!(card.state(), CardSessionState::Aborted);
        assert!(!card.has_session_keys());
        assert_eq!(card.security_level(), None);
    }
}

use support::*;

mod vectors {
    use super::*;
    use std::collections::BTreeMap;
    use vsc::scp03::{card_cryptogram, host_cryptogram, key_check_value, SessionKeys};

    fn load() -> BTreeMap<String, Vec<u8>> {
        let text = include_str!("vectors/scp03_session_keys.txt");
        let mut out = BTreeMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap().trim();
            if line.is_empty() {
                continue;
            }
            let (name, value) = line.split_once('=').expect("name = hex");
            let value = hex::decode(value.trim()).expect("hex value");
            assert!(
                out.insert(name.trim().to_string(), value).is_none(),
                "{name} twice"
            );
        }
        out
    }

    /// A random generator that yields fixed bytes: forces the card challenge.
    struct FixedRng(Vec<u8>);

    impl rand::RngCore for FixedRng {
        fn next_u32(&mut self) -> u32 {
            unimplemented!()
        }
        fn next_u64(&mut self) -> u64 {
            unimplemented!()
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.copy_from_slice(&self.0[..dest.len()]);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }
    impl rand::CryptoRng for FixedRng {}

    #[test]
    fn every_value_in_the_file_is_checked() {
        let v = load();
        let k = |name: &str| AesKey::from_slice(&v[name]).unwrap();
        let keys = StaticKeys::new(k("key_enc"), k("key_mac"), k("key_dek")).unwrap();
        let hc: [u8; 8] = v["host_challenge"].clone().try_into().unwrap();
        let cc: [u8; 8] = v["card_challenge"].clone().try_into().unwrap();
        let mut checked = vec![
            "key_enc",
            "key_mac",
            "key_dek",
            "host_challenge",
            "card_challenge",
        ];

        let s = SessionKeys::derive(&keys, &hc, &cc);
        assert_eq!(s.s_enc().expose_secret(), &v["s_enc"][..], "S-ENC");
        assert_eq!(s.s_mac().expose_secret(), &v["s_mac"][..], "S-MAC");
        assert_eq!(s.s_rmac().expose_secret(), &v["s_rmac"][..], "S-RMAC");
        assert_eq!(
            card_cryptogram(s.s_mac(), &hc, &cc).to_vec(),
            v["card_cryptogram"]
        );
        assert_eq!(
            host_cryptogram(s.s_mac(), &hc, &cc).to_vec(),
            v["host_cryptogram"]
        );
        assert_eq!(key_check_value(keys.dek()).to_vec(), v["kcv"]);
        checked.extend([
            "s_enc",
            "s_mac",
            "s_rmac",
            "card_cryptogram",
            "host_cryptogram",
            "kcv",
        ]);

        let mut names: Vec<&str> = v.keys().map(String::as_str).collect();
        names.sort_unstable();
        checked.sort_unstable();
        assert_eq!(names, checked, "a value in the file is not checked");
    }

    /// The same vectors through the card and host halves: a card whose random
    /// generator yields the published card challenge.
    #[test]
    fn card_and_host_produce_the_vector_cryptograms() {
        let v = load();
        let mut card = Scp03Card::new(CardOptions {
            challenge: ChallengeMode::Random,
            responses: ResponseSupport::RMacREnc,
        });
        let hc: [u8; 8] = v["host_challenge"].clone().try_into().unwrap();
        let mut keysets = keysets(16);
        let resp = card
            .process_initialize_update(
                &InitializeUpdate::new(KVN, hc).to_command(),
                &mut keysets,
                &KDD,
                AID,
                &mut FixedRng(v["card_challenge"].clone()),
            )
            .unwrap();
        let r = InitializeUpdateResponse::from_response(&resp).unwrap();
        assert_eq!(r.card_challenge.to_vec(), v["card_challenge"]);
        assert_eq!(r.card_cryptogram.to_vec(), v["card_cryptogram"]);
        assert_eq!((r.i_param, r.sequence_counter, resp.data.len()), (0x60, None, 29));
        let (ea, _host) = HostSession::open(&static_keys(16), hc, &r, SecurityLevel::All, None).unwrap();
        assert_eq!(&ea.to_bytes()[..5], &[0x84, 0x82, 0x33, 0x00, 0x10]);
        assert_eq!(ea.data()[..8], v["host_cryptogram"][..]);
        assert!(card.process_external_authenticate(&ea).is_ok());
    }
}

mod pair {
    use super::*;

    /// Cases 1–4, short and extended, empty data, and the answers the test
    /// application gives: data, no data, warnings, an error.
    fn script() -> Vec<(CommandApdu, ResponseApdu)> {
        let data20: Vec<u8> = (0..20).collect();
        let data300: Vec<u8> = (0..300).map(|i| (i * 7) as u8).collect();
        let mut reversed300: Vec<u8> = data300.iter().rev().copied().collect();
        reversed300.push(0xE2);
        let mut reversed20: Vec<u8> = data20.iter().rev().copied().collect();
        reversed20.push(0xDB);
        let ok = ResponseApdu::success(Vec::<u8>::new());
        vec![
            // Case 1.
            (command(0x80, 0xF0, 0x01, &[], None), ok.clone()),
            // Case 2: empty data, data back.
            (
                command(0x00, 0xCA, 0x00, &[], Some(256)),
                ResponseApdu::success(vec![0xCA]),
            ),
            // Case 3.
            (command(0x80, 0xE2, 0x01, &data20, None), ok.clone()),
            // Case 4.
            (
                command(0x00, 0xDB, 0x00, &data20, Some(16)),
                ResponseApdu::success(reversed20),
            ),
            // Case 4 extended: 300 bytes of data and a 300-byte answer.
            (
                command(0x80, 0xE2, 0x00, &data300, Some(65536)),
                ResponseApdu::success(reversed300),
            ),
            (
                command(0x80, 0xE2, 0x05, &data300, None),
                app(&command(0, 0, 5, &[], None)),
            ),
            // Short data but Ne > 256: extended.
            (
                command(0x00, 0xCB, 0x05, &[0x5C, 0x01, 0x7E], Some(1000)),
                app(&command(0, 0, 5, &[], None)),
            ),
            // The short/extended boundary: 247 + 8 = 255, 248 + 8 = 256.
            (command(0x80, 0xE2, 0x01, &[0x55; 247], Some(1)), ok.clone()),
            (command(0x80, 0xE2, 0x01, &[0x55; 248], Some(1)), ok.clone()),
            // Warnings, with and without data.
            (
                command(0x00, 0x20, 0x02, &[], Some(256)),
                ResponseApdu::new(vec![1, 2, 3], StatusWord::VerificationFailed { retries: 2 }),
            ),
            (
                command(0x00, 0xB0, 0x04, &[], Some(256)),
                ResponseApdu::status(StatusWord::EndOfData),
            ),
            // An error: returned bare, and the session goes on.
            (
                command(0x00, 0xA4, 0x03, &[1, 2], Some(256)),
                ResponseApdu::status(StatusWord::FileNotFound),
            ),
            (command(0x80, 0xE2, 0x01, &[9; 3], None), ok),
        ]
    }

    #[test]
    fn every_level_and_key_length_exchanges_every_case() {
        for level in SecurityLevel::ALL_LEVELS {
            for key_len in [16, 24, 32] {
                let mut p = open(level, key_len);
                for (i, (cmd, expected)) in script().into_iter().enumerate() {
                    let got = exchange(&mut p, &cmd)
                        .unwrap_or_else(|e| panic!("level {level}, AES-{}, step {i}: {e}", key_len * 8));
                    assert_eq!(got, expected, "level {level}, AES-{}, step {i}", key_len * 8);
                }
                assert_eq!(p.host.commands_wrapped(), script().len() as u64);
                assert!(p.card.has_session_keys() && p.host.has_session_keys());
            }
        }
    }

    #[test]
    fn wire_format_follows_the_level() {
        let data20: Vec<u8> = (0..20).collect();
        for level in SecurityLevel::ALL_LEVELS {
            let mut p = open(level, 16);
            let w = p
                .host
                .wrap(&command(0x80, 0xE2, 0x00, &data20, Some(16)))
                .unwrap();
            assert_eq!(w.apdu.cla(), 0x84);
            assert_eq!(w.expect.command_number(), 1);
            // MAC only: data in clear + 8; C-DECRYPTION: 32 bytes of ciphertext + 8.
            if level.c_decryption() {
                assert_eq!(w.apdu.data().len(), 40);
                assert_ne!(&w.apdu.data()[..20], &data20[..]);
            } else {
                assert_eq!(&w.apdu.data()[..20], &data20[..]);
                assert_eq!(w.apdu.data().len(), 28);
            }
            assert_eq!(w.apdu.ne(), Some(256));
            let (resp, _) = card_transmit(&mut p.card, &w.apdu.to_bytes());
            let resp = ResponseApdu::parse(&resp).unwrap();
            // 21 bytes of answer: clear, + R-MAC, or encrypted to 32 + R-MAC.
            let expected_len = match (level.r_mac(), level.r_encryption()) {
                (false, _) => 21,
                (true, false) => 29,
                (true, true) => 40,
            };
            assert_eq!(resp.data.len(), expected_len, "level {level}");
            // A command without data is only MACed, even with C-DECRYPTION.
            let w = p.host.wrap(&command(0x00, 0xCA, 0x01, &[], None)).unwrap();
            assert_eq!(w.apdu.data().len(), 8);
            assert_eq!(w.expect.command_number(), 2);
        }
    }

    #[test]
    fn error_status_words_come_bare_at_r_mac_levels() {
        for level in SecurityLevel::ALL_LEVELS {
            let mut p = open(level, 16);
            let w = p.host.wrap(&command(0x00, 0xA4, 0x06, &[], Some(256))).unwrap();
            let (resp, _) = card_transmit(&mut p.card, &w.apdu.to_bytes());
            if level.r_mac() {
                // The application's stray data is dropped, no R-MAC added.
                assert_eq!(resp, [0x6A, 0x82]);
            } else {
                assert_eq!(resp, [0xDE, 0xAD, 0x6A, 0x82]);
            }
            let r = p
                .host
                .unwrap(&w.expect, &ResponseApdu::parse(&resp).unwrap())
                .unwrap();
            assert_eq!(r.sw, StatusWord::FileNotFound);
        }
    }

    #[test]
    fn responses_can_be_checked_later_and_out_of_order() {
        let mut p = open(SecurityLevel::All, 32);
        let cmds: Vec<CommandApdu> = (0..5u8)
            .map(|i| command(0x80, 0xE2, 0x00, &[i; 40], Some(256)))
            .collect();
        // Compile the whole script first, as the keyserver does.
        let wrapped: Vec<_> = cmds.iter().map(|c| p.host.wrap(c).unwrap()).collect();
        let responses: Vec<Vec<u8>> = wrapped
            .iter()
            .map(|w| card_transmit(&mut p.card, &w.apdu.to_bytes()).0)
            .collect();
        for i in [3, 0, 4, 1, 2] {
            let r = p
                .host
                .unwrap(&wrapped[i].expect, &ResponseApdu::parse(&responses[i]).unwrap())
                .unwrap();
            assert_eq!(r, app(&cmds[i]));
        }
        // A response checked against another command's context fails.
        let err = p
            .host
            .unwrap(&wrapped[1].expect, &ResponseApdu::parse(&responses[2]).unwrap())
            .unwrap_err();
        assert_eq!(err, Scp03Error::RMacMismatch { command: 2 });
        assert_eq!(
            err.to_string(),
            "R-MAC of the response to command #2 does not verify"
        );
    }

    #[test]
    fn host_refuses_what_it_cannot_wrap() {
        let mut p = open(SecurityLevel::All, 16);
        for cla in [0x84, 0x0C, 0xC0, 0xFF] {
            assert_eq!(
                p.host.wrap(&command(cla, 0xE2, 0, &[], None)).unwrap_err(),
                Scp03Error::UnsupportedCla(cla)
            );
        }
        let too_long = command(0x80, 0xE2, 0, &vec![0; 65_520], None);
        assert!(matches!(
            p.host.wrap(&too_long).unwrap_err(),
            Scp03Error::CommandTooLong {
                len: 65_520,
                max: 65_519,
                ..
            }
        ));
        // The largest command still goes through.
        let max = command(0x80, 0xE2, 0x01, &vec![0; 65_519], None);
        assert_eq!(
            exchange(&mut p, &max).unwrap(),
            ResponseApdu::success(Vec::<u8>::new())
        );
        // Refusals did not advance the chain or the counter.
        assert_eq!(p.host.commands_wrapped(), 1);
    }
}

mod tamper {
    use super::*;

    fn case4() -> CommandApdu {
        command(0x80, 0xE2, 0x00, &(0..20).collect::<Vec<u8>>(), Some(256))
    }

    fn case4_extended() -> CommandApdu {
        command(0x80, 0xE2, 0x00, &[0x3C; 300], Some(256))
    }

    /// Flips every bit of the second command of a session, one at a time, in
    /// a fresh session each time. The Le bytes are skipped: SCP03 does not
    /// MAC Le (Amd D §6.2.4), so a changed Le is by design not detected; it
    /// only changes how much the card may return.
    fn flip_every_bit(level: SecurityLevel, cmd: &CommandApdu) -> usize {
        let mut p = open(level, 16);
        exchange(&mut p, &command(0x80, 0xE2, 0x01, &[1, 2, 3], None)).unwrap();
        let raw = p.host.wrap(cmd).unwrap().apdu.to_bytes();
        let le_len = match cmd.ne() {
            None => 0,
            Some(_) if CommandApdu::parse(&raw).unwrap().needs_extended() => 2,
            Some(_) => 1,
        };
        let mut flips = 0;
        for bit in 0..(raw.len() - le_len) * 8 {
            let mut p = open(level, 16);
            exchange(&mut p, &command(0x80, 0xE2, 0x01, &[1, 2, 3], None)).unwrap();
            let good = p.host.wrap(cmd).unwrap().apdu.to_bytes();
            assert_eq!(good, raw, "the session is deterministic");
            let mut bad = good.clone();
            bad[bit / 8] ^= 0x80 >> (bit % 8);
            let (resp, seen) = card_transmit(&mut p.card, &bad);
            assert_eq!(
                resp, SW_6982,
                "level {level}, bit {bit} flipped: accepted as {seen:?}"
            );
            assert_card_session_over(&p.card);
            // The correct command is refused too: the session is over.
            assert_eq!(card_transmit(&mut p.card, &good).0, SW_6982, "bit {bit}");
            assert_card_session_over(&p.card);
            flips += 1;
        }
        flips
    }

    #[test]
    fn any_flipped_bit_in_a_command_is_refused_and_ends_the_session() {
        // Level 33: 20 bytes → 32 encrypted + 8 MAC; 5-byte header.
        assert_eq!(flip_every_bit(SecurityLevel::All, &case4()), (5 + 40) * 8);
        // Level 01: 20 bytes in clear + 8 MAC.
        assert_eq!(flip_every_bit(SecurityLevel::CMac, &case4()), (5 + 28) * 8);
        // Extended lengths at level 33: 304 + 8 bytes, 7-byte header.
        assert_eq!(
            flip_every_bit(SecurityLevel::All, &case4_extended()),
            (7 + 312) * 8
        );
    }

    fn refused(p: &mut Pair, raw: &[u8]) {
        assert_eq!(card_transmit(&mut p.card, raw).0, SW_6982);
        assert_card_session_over(&p.card);
    }

    #[test]
    fn a_replayed_command_is_refused() {
        for level in [SecurityLevel::CMac, SecurityLevel::All] {
            let mut p = open(level, 16);
            let c1 = p.host.wrap(&case4()).unwrap().apdu.to_bytes();
            let c2 = p.host.wrap(&case4()).unwrap().apdu.to_bytes();
            let c3 = p.host.wrap(&case4()).unwrap().apdu.to_bytes();
            assert!(card_transmit(&mut p.card, &c1).1.is_some());
            assert!(card_transmit(&mut p.card, &c2).1.is_some());
            refused(&mut p, &c2);
            refused(&mut p, &c3);
            // Replaying the first command in the next session fails as well:
            // the persisted sequence counter gives a new card challenge.
            let mut q = open_again(p, level);
            refused(&mut q, &c1);
        }
    }

    #[test]
    fn swapped_commands_are_refused() {
        let mut p = open(SecurityLevel::All, 16);
        let c1 = p.host.wrap(&case4()).unwrap().apdu.to_bytes();
        let c2 = p.host.wrap(&case4()).unwrap().apdu.to_bytes();
        refused(&mut p, &c2);
        refused(&mut p, &c1);
    }

    #[test]
    fn a_dropped_command_is_noticed() {
        let mut p = open(SecurityLevel::CMacRMac, 24);
        let c1 = p.host.wrap(&case4()).unwrap().apdu.to_bytes();
        let c2 = p.host.wrap(&case4()).unwrap().apdu.to_bytes();
        let c3 = p.host.wrap(&case4()).unwrap().apdu.to_bytes();
        assert!(card_transmit(&mut p.card, &c1).1.is_some());
        refused(&mut p, &c3);
        refused(&mut p, &c2);
    }

    #[test]
    fn an_unprotected_command_during_a_session_is_refused_and_aborts_it() {
        let mut p = open(SecurityLevel::All, 16);
        let next = p.host.wrap(&case4()).unwrap().apdu.to_bytes();
        refused(&mut p, &case4().to_bytes());
        refused(&mut p, &next);
        // Reset (power off, another SELECT) clears the aborted state.
        p.card.reset();
        assert_eq!(p.card.state(), CardSessionState::Idle);
        let (_, seen) = card_transmit(&mut p.card, &case4().to_bytes());
        assert_eq!(seen.unwrap().1, Protection::None);
        // A secured command without a session is refused, nothing to abort.
        assert_eq!(card_transmit(&mut p.card, &next).0, SW_6982);
        assert_eq!(p.card.state(), CardSessionState::Idle);
    }

    #[test]
    fn garbage_bytes_during_a_session_end_it_but_not_outside_one() {
        let mut p = open(SecurityLevel::CMac, 16);
        refused(&mut p, &[0x84, 0xE2, 0x00, 0x00, 0x05, 0x01]);
        let mut card = Scp03Card::default();
        assert_eq!(
            card.unwrap_command_bytes(&[0x00, 0xA4, 0x04]).unwrap_err(),
            StatusWord::WrongLength
        );
        assert_eq!(card.state(), CardSessionState::Idle);
    }

    /// Flips every bit of a protected response; the host must refuse each,
    /// end its session and drop its keys.
    fn flip_every_response_bit(level: SecurityLevel, cmd: &CommandApdu) -> usize {
        let mut p = open(level, 16);
        let w = p.host.wrap(cmd).unwrap();
        let (good, _) = card_transmit(&mut p.card, &w.apdu.to_bytes());
        assert!(p
            .host
            .unwrap(&w.expect, &ResponseApdu::parse(&good).unwrap())
            .is_ok());
        for bit in 0..good.len() * 8 {
            let mut p = open(level, 16);
            let w = p.host.wrap(cmd).unwrap();
            let (resp, _) = card_transmit(&mut p.card, &w.apdu.to_bytes());
            assert_eq!(resp, good);
            let mut bad = resp.clone();
            bad[bit / 8] ^= 0x80 >> (bit % 8);
            let err = p.host.unwrap(&w.expect, &ResponseApdu::parse(&bad).unwrap());
            assert!(err.is_err(), "level {level}, bit {bit}: accepted");
            assert!(p.host.is_ended() && !p.host.has_session_keys());
            assert_eq!(
                p.host.unwrap(&w.expect, &ResponseApdu::parse(&good).unwrap()),
                Err(Scp03Error::SessionEnded)
            );
            assert_eq!(p.host.wrap(cmd).unwrap_err(), Scp03Error::SessionEnded);
        }
        good.len() * 8
    }

    #[test]
    fn any_flipped_bit_in_a_response_ends_the_host_session() {
        // 21 bytes of data → 32 encrypted + R-MAC + SW.
        assert_eq!(
            flip_every_response_bit(SecurityLevel::All, &case4()),
            (32 + 8 + 2) * 8
        );
        // R-MAC without encryption: 21 + 8 + 2.
        assert_eq!(
            flip_every_response_bit(SecurityLevel::CMacRMac, &case4()),
            (21 + 8 + 2) * 8
        );
        // A warning without data: R-MAC + SW.
        let warning = command(0x00, 0xB0, 0x04, &[], Some(256));
        assert_eq!(
            flip_every_response_bit(SecurityLevel::CDecCMacRMac, &warning),
            (8 + 2) * 8
        );
    }

    #[test]
    fn host_errors_name_the_failure() {
        let mut p = open(SecurityLevel::All, 16);
        let w = p.host.wrap(&case4()).unwrap();
        let e = p
            .host
            .unwrap(&w.expect, &ResponseApdu::success(vec![1, 2, 3]))
            .unwrap_err();
        assert_eq!(e, Scp03Error::RMacMissing { command: 1, len: 3 });
        assert_eq!(
            Scp03Error::SessionEnded.to_string(),
            "session ended after a failure"
        );

        let mut p = open(SecurityLevel::All, 16);
        let w = p.host.wrap(&case4()).unwrap();
        let e = p
            .host
            .unwrap(
                &w.expect,
                &ResponseApdu::new(vec![0; 8], StatusWord::FileNotFound),
            )
            .unwrap_err();
        assert!(e.to_string().contains("must come bare"), "{e}");
    }
}

mod authentication {
    use super::*;

    fn initialized_card(level_options: CardOptions) -> (Scp03Card, InitializeUpdateResponse) {
        let mut card = Scp03Card::new(level_options);
        let resp = card
            .process_initialize_update(
                &InitializeUpdate::new(0, HOST_CHALLENGE).to_command(),
                &mut keysets(16),
                &KDD,
                AID,
                &mut rng(),
            )
            .unwrap();
        (card, InitializeUpdateResponse::from_response(&resp).unwrap())
    }

    fn external_authenticate(r: &InitializeUpdateResponse, level: SecurityLevel) -> CommandApdu {
        HostSession::open(&static_keys(16), HOST_CHALLENGE, r, level, None)
            .unwrap()
            .0
    }

    fn flip(cmd: &CommandApdu, byte: usize) -> CommandApdu {
        let mut raw = cmd.to_bytes();
        raw[byte] ^= 0x01;
        CommandApdu::parse(&raw).unwrap()
    }

    #[test]
    fn wrong_host_cryptogram_is_6300_and_needs_a_new_initialize_update() {
        let (mut card, r) = initialized_card(CardOptions::default());
        let ea = external_authenticate(&r, SecurityLevel::All);
        assert_eq!(
            card.process_external_authenticate(&flip(&ea, 5)),
            Err(StatusWord::AuthenticationFailed)
        );
        assert_eq!(card.state(), CardSessionState::Idle);
        assert!(!card.has_session_keys());
        // The correct command is now out of sequence.
        assert_eq!(
            card.process_external_authenticate(&ea),
            Err(StatusWord::ConditionsOfUseNotSatisfied)
        );
    }

    #[test]
    fn wrong_mac_is_6982() {
        let (mut card, r) = initialized_card(CardOptions::default());
        let ea = external_authenticate(&r, SecurityLevel::All);
        assert_eq!(
            card.process_external_authenticate(&flip(&ea, 5 + 15)),
            Err(StatusWord::SecurityStatusNotSatisfied)
        );
        assert!(!card.has_session_keys());
        // The level is MACed: raising it breaks the MAC.
        let (mut card, r) = initialized_card(CardOptions::default());
        let ea = external_authenticate(&r, SecurityLevel::CMacRMac);
        let raised = CommandApdu::new(0x84, 0x82, 0x13, 0x00)
            .with_data(ea.data().to_vec())
            .unwrap();
        assert_eq!(
            card.process_external_authenticate(&raised),
            Err(StatusWord::SecurityStatusNotSatisfied)
        );
    }

    #[test]
    fn external_authenticate_without_initialize_update_is_6985() {
        let (_, r) = initialized_card(CardOptions::default());
        let ea = external_authenticate(&r, SecurityLevel::All);
        let mut fresh = Scp03Card::default();
        assert_eq!(
            fresh.process_external_authenticate(&ea),
            Err(StatusWord::ConditionsOfUseNotSatisfied)
        );
        // Nor twice in one session: the open session is aborted.
        let mut p = open(SecurityLevel::All, 16);
        assert_eq!(
            p.card.process_external_authenticate(&ea),
            Err(StatusWord::ConditionsOfUseNotSatisfied)
        );
        assert_card_session_over(&p.card);
    }

    #[test]
    fn host_refuses_a_card_with_other_keys() {
        let (_, r) = initialized_card(CardOptions::default());
        let other = StaticKeys::new(key(16, 1), key(16, 1), key(16, 1)).unwrap();
        let e = HostSession::open(&other, HOST_CHALLENGE, &r, SecurityLevel::All, None).unwrap_err();
        assert_eq!(e, Scp03Error::CardCryptogramMismatch);
        assert_eq!(e.to_string(), "card cryptogram does not verify");
    }

    #[test]
    fn levels_the_card_does_not_offer_are_refused_on_both_sides() {
        let options = CardOptions {
            challenge: ChallengeMode::PseudoRandom,
            responses: ResponseSupport::RMac,
        };
        let (mut card, r) = initialized_card(options);
        assert_eq!(r.i_param, 0x30);
        let e =
            HostSession::open(&static_keys(16), HOST_CHALLENGE, &r, SecurityLevel::All, None).unwrap_err();
        assert!(
            matches!(
                e,
                Scp03Error::LevelNotSupportedByCard {
                    missing: "R-ENCRYPTION",
                    ..
                }
            ),
            "{e}"
        );
        // A host that ignores `i`: the card refuses the level.
        let mut lying = r;
        lying.i_param = 0x70;
        let ea = external_authenticate(&lying, SecurityLevel::All);
        assert_eq!(
            card.process_external_authenticate(&ea),
            Err(StatusWord::IncorrectP1P2)
        );

        let (_, r) = initialized_card(CardOptions {
            challenge: ChallengeMode::Random,
            responses: ResponseSupport::None,
        });
        assert_eq!(r.i_param, 0x00);
        let e = HostSession::open(
            &static_keys(16),
            HOST_CHALLENGE,
            &r,
            SecurityLevel::CMacRMac,
            None,
        )
        .unwrap_err();
        assert!(matches!(
            e,
            Scp03Error::LevelNotSupportedByCard { missing: "R-MAC", .. }
        ));
        // Levels without response protection still open.
        let p = open_with(
            CardOptions {
                challenge: ChallengeMode::Random,
                responses: ResponseSupport::None,
            },
            SecurityLevel::CDecCMac,
            16,
        );
        assert_eq!(p.card.security_level(), Some(SecurityLevel::CDecCMac));
    }

    #[test]
    fn external_authenticate_gets_no_r_mac_and_does_not_count() {
        let mut p = open(SecurityLevel::All, 16);
        // The first secured command uses counter 1: covered end to end by the
        // independent host below; here, the host's numbering.
        let w = p.host.wrap(&command(0x80, 0xE2, 0x01, &[], None)).unwrap();
        assert_eq!(w.expect.command_number(), 1);
        assert!(card_transmit(&mut p.card, &w.apdu.to_bytes()).1.is_some());
    }

    #[test]
    fn reset_and_a_new_initialize_update_end_the_session() {
        let mut p = open(SecurityLevel::All, 16);
        p.card.reset();
        assert_eq!(p.card.state(), CardSessionState::Idle);
        assert!(!p.card.has_session_keys());
        let w = p.host.wrap(&command(0x80, 0xE2, 0x01, &[], None)).unwrap();
        assert_eq!(card_transmit(&mut p.card, &w.apdu.to_bytes()).0, SW_6982);

        let mut p = open(SecurityLevel::All, 16);
        let w = p.host.wrap(&command(0x80, 0xE2, 0x01, &[], None)).unwrap();
        let again = p.card.process_initialize_update(
            &InitializeUpdate::new(0, [9; 8]).to_command(),
            &mut p.keysets,
            &KDD,
            AID,
            &mut rng(),
        );
        assert!(again.is_ok());
        assert_eq!(p.card.state(), CardSessionState::Initialized);
        assert_eq!(card_transmit(&mut p.card, &w.apdu.to_bytes()).0, SW_6982);
        // A failed INITIALIZE UPDATE ends the session too.
        let mut p = open(SecurityLevel::All, 16);
        let bad = p.card.process_initialize_update(
            &InitializeUpdate::new(0x7F, [9; 8]).to_command(),
            &mut p.keysets,
            &KDD,
            AID,
            &mut rng(),
        );
        assert_eq!(bad, Err(StatusWord::ReferencedDataNotFound));
        assert_eq!(p.card.state(), CardSessionState::Idle);
    }

    #[test]
    fn commands_outside_a_session_pass_with_no_protection() {
        let mut card = Scp03Card::default();
        let select = command(0x00, 0xA4, 0x04, AID, Some(256));
        assert_eq!(
            card.unwrap_command(&select).unwrap(),
            (select.clone(), Protection::None)
        );
        // The response passes untouched.
        let r = ResponseApdu::success(vec![1, 2, 3]);
        assert_eq!(card.wrap_response(r.clone()), r);
        // Between INITIALIZE UPDATE and EXTERNAL AUTHENTICATE as well.
        let (mut card, _) = initialized_card(CardOptions::default());
        assert_eq!(card.unwrap_command(&select).unwrap().1, Protection::None);
        assert_eq!(card.state(), CardSessionState::Initialized);
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let p = open(SecurityLevel::All, 16);
        let d = format!("{:?} {:?} {:?}", p.card, p.host, p.keysets);
        assert!(!d.contains("40, 41") && !d.contains("4041"), "{d}");
        assert!(d.contains("Open(All)"), "{d}");
    }
}

mod challenge {
    use super::*;
    use vsc::scp03::pseudo_random_card_challenge;

    fn initialize(
        card: &mut Scp03Card,
        keysets: &mut [CardKeySet],
        kvn: u8,
    ) -> Result<InitializeUpdateResponse, StatusWord> {
        card.process_initialize_update(
            &InitializeUpdate::new(kvn, HOST_CHALLENGE).to_command(),
            keysets,
            &KDD,
            AID,
            &mut rng(),
        )
        .map(|r| InitializeUpdateResponse::from_response(&r).unwrap())
    }

    #[test]
    fn the_card_reports_kdd_kvn_i_and_an_incrementing_counter() {
        let mut card = Scp03Card::default();
        let mut keysets = keysets(16);
        for expected in 1..=3u32 {
            let r = initialize(&mut card, &mut keysets, 0).unwrap();
            assert_eq!(r.key_diversification_data, KDD);
            assert_eq!(r.kvn, KVN);
            assert_eq!((r.scp_id, r.i_param), (0x03, 0x70));
            assert_eq!(r.sequence_counter, Some(expected));
            assert_eq!(keysets[0].sequence_counter, expected);
            assert_eq!(
                r.card_challenge,
                pseudo_random_card_challenge(keysets[0].keys.enc(), expected, AID)
            );
        }
    }

    #[test]
    fn the_host_checks_the_challenge_against_counter_and_aid() {
        let mut card = Scp03Card::default();
        let r = initialize(&mut card, &mut keysets(16), 0).unwrap();
        let keys = static_keys(16);
        assert!(HostSession::open(&keys, HOST_CHALLENGE, &r, SecurityLevel::All, Some(AID)).is_ok());
        let e =
            HostSession::open(&keys, HOST_CHALLENGE, &r, SecurityLevel::All, Some(&AID[..5])).unwrap_err();
        assert_eq!(e, Scp03Error::CardChallengeMismatch(1));
        let mut replayed = r;
        replayed.sequence_counter = Some(2);
        assert_eq!(
            HostSession::open(&keys, HOST_CHALLENGE, &replayed, SecurityLevel::All, Some(AID)).unwrap_err(),
            Scp03Error::CardChallengeMismatch(2)
        );
    }

    #[test]
    fn an_exhausted_counter_is_6985() {
        let mut card = Scp03Card::default();
        let mut keysets = keysets(16);
        keysets[0].sequence_counter = 0xFF_FFFE;
        let r = initialize(&mut card, &mut keysets, 0).unwrap();
        assert_eq!(r.sequence_counter, Some(0xFF_FFFF));
        assert_eq!(
            initialize(&mut card, &mut keysets, 0).unwrap_err(),
            StatusWord::ConditionsOfUseNotSatisfied
        );
        assert_eq!(keysets[0].sequence_counter, 0xFF_FFFF);
        assert!(!card.has_session_keys());
    }

    #[test]
    fn keysets_are_chosen_by_kvn() {
        let mut card = Scp03Card::default();
        let mut keysets = vec![
            CardKeySet {
                kvn: 0x01,
                keys: static_keys(16),
                sequence_counter: 5,
            },
            CardKeySet {
                kvn: 0x02,
                keys: static_keys(32),
                sequence_counter: 0,
            },
        ];
        assert_eq!(initialize(&mut card, &mut keysets, 0).unwrap().kvn, 0x01);
        let r = initialize(&mut card, &mut keysets, 0x02).unwrap();
        assert_eq!((r.kvn, r.sequence_counter), (0x02, Some(1)));
        assert!(HostSession::open(
            &static_keys(32),
            HOST_CHALLENGE,
            &r,
            SecurityLevel::All,
            Some(AID)
        )
        .is_ok());
        assert_eq!(
            initialize(&mut card, &mut keysets, 0x03).unwrap_err(),
            StatusWord::ReferencedDataNotFound
        );
        assert_eq!(
            initialize(&mut card, &mut [], 0).unwrap_err(),
            StatusWord::ReferencedDataNotFound
        );
        assert_eq!(keysets[0].sequence_counter, 6);
    }

    #[test]
    fn random_challenges_have_no_counter() {
        let mut card = Scp03Card::new(CardOptions {
            challenge: ChallengeMode::Random,
            responses: ResponseSupport::RMacREnc,
        });
        let mut keysets = keysets(16);
        let mut rng = rng();
        let mut init = || {
            let r = card
                .process_initialize_update(
                    &InitializeUpdate::new(0, HOST_CHALLENGE).to_command(),
                    &mut keysets,
                    &KDD,
                    AID,
                    &mut rng,
                )
                .unwrap();
            InitializeUpdateResponse::from_response(&r).unwrap()
        };
        let a = init();
        let b = init();
        assert_eq!((a.i_param, a.sequence_counter), (0x60, None));
        assert_eq!(a.to_bytes().len(), 29);
        assert_ne!(a.card_challenge, b.card_challenge);
        assert_eq!(keysets[0].sequence_counter, 0);
        // Nothing to check the AID against: accepted.
        assert!(HostSession::open(
            &static_keys(16),
            HOST_CHALLENGE,
            &b,
            SecurityLevel::All,
            Some(AID)
        )
        .is_ok());
    }

    #[test]
    fn s16_initialize_update_is_refused_with_6700() {
        let mut card = Scp03Card::default();
        let s16 = CommandApdu::new(0x80, 0x50, 0x00, 0x00)
            .with_data(vec![0; 16])
            .unwrap()
            .with_ne(256)
            .unwrap();
        assert_eq!(
            card.process_initialize_update(&s16, &mut keysets(16), &KDD, AID, &mut rng()),
            Err(StatusWord::WrongLength)
        );
    }
}

/// A second, independent encoding of the wire format written straight from
/// the spec text with the `aes` and `cmac` crates (AES-128 only), talking to
/// the card half. It checks the counter start, the ICVs, the MAC inputs and
/// the chaining, and that the card accepts an empty data field sent as one
/// encrypted block of pure padding, as yubikit does.
mod independent_host {
    use super::*;
    use aes::cipher::{BlockEncrypt, KeyInit};
    use aes::Aes128;
    use cmac::{Cmac, Mac};

    fn cmac(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
        let mut m = <Cmac<Aes128> as Mac>::new_from_slice(key).unwrap();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    fn ecb(key: &[u8], block: [u8; 16]) -> [u8; 16] {
        let mut b = block.into();
        Aes128::new_from_slice(key).unwrap().encrypt_block(&mut b);
        b.into()
    }

    fn cbc(key: &[u8], iv: [u8; 16], data: &[u8]) -> Vec<u8> {
        let mut prev = iv;
        let mut out = Vec::new();
        for chunk in data.chunks(16) {
            let mut x = [0u8; 16];
            for i in 0..16 {
                x[i] = chunk[i] ^ prev[i];
            }
            prev = ecb(key, x);
            out.extend_from_slice(&prev);
        }
        out
    }

    fn kdf(key: &[u8], constant: u8, context: &[u8]) -> [u8; 16] {
        let mut input = vec![0u8; 11];
        input.extend([constant, 0x00, 0x00, 0x80, 0x01]);
        input.extend_from_slice(context);
        cmac(key, &[&input])
    }

    fn pad(data: &[u8]) -> Vec<u8> {
        let mut v = data.to_vec();
        v.push(0x80);
        while v.len() % 16 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn the_card_speaks_the_spec() {
        let key: Vec<u8> = (0x40..0x50).collect();
        let mut card = Scp03Card::default();
        let resp = card
            .process_initialize_update(
                &InitializeUpdate::new(0, HOST_CHALLENGE).to_command(),
                &mut keysets(16),
                &KDD,
                AID,
                &mut rng(),
            )
            .unwrap();
        let card_challenge = &resp.data[13..21];
        let context = [&HOST_CHALLENGE[..], card_challenge].concat();
        let s_enc = kdf(&key, 0x04, &context);
        let s_mac = kdf(&key, 0x06, &context);
        let s_rmac = kdf(&key, 0x07, &context);
        // Card cryptogram: the first 8 bytes of constant 00 with L = 0040.
        let mut input = vec![0u8; 11];
        input.extend([0x00, 0x00, 0x00, 0x40, 0x01]);
        input.extend_from_slice(&context);
        assert_eq!(cmac(&s_mac, &[&input])[..8], resp.data[21..29]);
        input[11] = 0x01;
        let host_cryptogram = cmac(&s_mac, &[&input]);

        // EXTERNAL AUTHENTICATE at level 33, MAC over the zero chain.
        let header = [0x84, 0x82, 0x33, 0x00, 0x10];
        let chain = cmac(&s_mac, &[&[0; 16], &header, &host_cryptogram[..8]]);
        let ea = [&header[..], &host_cryptogram[..8], &chain[..8]].concat();
        card.process_external_authenticate(&CommandApdu::parse(&ea).unwrap())
            .unwrap();

        // Command 1: data 01 02 03, counter 1.
        let icv = ecb(&s_enc, {
            let mut b = [0u8; 16];
            b[15] = 1;
            b
        });
        let enc = cbc(&s_enc, icv, &pad(&[1, 2, 3]));
        let header = [0x84, 0xE2, 0x00, 0x00, (enc.len() + 8) as u8];
        let chain = cmac(&s_mac, &[&chain, &header, &enc]);
        let raw = [&header[..], &enc, &chain[..8], &[0x00]].concat();
        let (resp, seen) = card_transmit(&mut card, &raw);
        assert_eq!(seen.unwrap().0.data(), &[1, 2, 3]);
        // Response: app answers 03 02 01 E2; R-ENC ICV uses 80 ‖ counter 1.
        let ricv = ecb(&s_enc, {
            let mut b = [0u8; 16];
            b[0] = 0x80;
            b[15] = 1;
            b
        });
        let renc = cbc(&s_enc, ricv, &pad(&[3, 2, 1, 0xE2]));
        let rmac = cmac(&s_rmac, &[&chain, &renc, &[0x90, 0x00]]);
        assert_eq!(resp, [&renc[..], &rmac[..8], &[0x90, 0x00]].concat());

        // Command 2: an empty data field sent encrypted (one block of pure
        // padding), counter 2.
        let icv = ecb(&s_enc, {
            let mut b = [0u8; 16];
            b[15] = 2;
            b
        });
        let enc = cbc(&s_enc, icv, &pad(&[]));
        assert_eq!(enc.len(), 16);
        let header = [0x84, 0xCA, 0x01, 0x00, 24];
        let chain = cmac(&s_mac, &[&chain, &header, &enc]);
        let raw = [&header[..], &enc, &chain[..8]].concat();
        let (resp, seen) = card_transmit(&mut card, &raw);
        let (cmd, protection) = seen.unwrap();
        assert_eq!((cmd.cla(), cmd.data()), (0x80, &[][..]));
        assert_eq!(protection, Protection::Secured(SecurityLevel::All));
        // P1 = 01: 9000 without data, so no encryption, only the R-MAC.
        let rmac = cmac(&s_rmac, &[&chain, &[0x90, 0x00]]);
        assert_eq!(resp, [&rmac[..8], &[0x90, 0x00]].concat());

        // Command 3 with no data at all: only MACed, counter 3.
        let header = [0x84, 0xE2, 0x01, 0x00, 8];
        let chain = cmac(&s_mac, &[&chain, &header]);
        let raw = [&header[..], &chain[..8]].concat();
        assert!(card_transmit(&mut card, &raw).1.is_some());
        // Command 4: counter 4 in the ICV (it counted command 3).
        let icv = ecb(&s_enc, {
            let mut b = [0u8; 16];
            b[15] = 4;
            b
        });
        let enc = cbc(&s_enc, icv, &pad(&[7; 17]));
        let header = [0x84, 0xE2, 0x01, 0x00, (enc.len() + 8) as u8];
        let chain = cmac(&s_mac, &[&chain, &header, &enc]);
        let raw = [&header[..], &enc, &chain[..8]].concat();
        assert_eq!(card_transmit(&mut card, &raw).1.unwrap().0.data(), &[7; 17]);
    }

    #[test]
    fn extended_commands_mac_a_three_byte_lc() {
        let key: Vec<u8> = (0x40..0x50).collect();
        let mut p = open(SecurityLevel::CMac, 16);
        let context = [&HOST_CHALLENGE[..], &p.init_response.card_challenge[..]].concat();
        let s_mac = kdf(&key, 0x06, &context);
        // Recompute the chain from EXTERNAL AUTHENTICATE.
        let mut input = vec![0u8; 11];
        input.extend([0x01, 0x00, 0x00, 0x40, 0x01]);
        input.extend_from_slice(&context);
        let host_cryptogram = cmac(&s_mac, &[&input]);
        let chain = cmac(
            &s_mac,
            &[&[0; 16], &[0x84, 0x82, 0x01, 0x00, 0x10], &host_cryptogram[..8]],
        );
        let data = vec![0x42u8; 300];
        let w = p.host.wrap(&command(0x80, 0xE2, 0x01, &data, None)).unwrap();
        let expected = cmac(
            &s_mac,
            &[&chain, &[0x84, 0xE2, 0x01, 0x00, 0x00, 0x01, 0x34], &data],
        );
        assert_eq!(&w.apdu.data()[300..], &expected[..8]);
        assert_eq!(
            &w.apdu.to_bytes()[..7],
            &[0x84, 0xE2, 0x01, 0x00, 0x00, 0x01, 0x34]
        );
        assert!(card_transmit(&mut p.card, &w.apdu.to_bytes()).1.is_some());
        // Short data, but Ne > 256 makes the APDU extended, and Lc' with it.
        let chain = expected;
        let w = p
            .host
            .wrap(&command(0x80, 0xCA, 0x01, &[1; 10], Some(300)))
            .unwrap();
        let expected = cmac(
            &s_mac,
            &[&chain, &[0x84, 0xCA, 0x01, 0x00, 0x00, 0x00, 0x12], &[1; 10]],
        );
        assert_eq!(&w.apdu.data()[10..], &expected[..8]);
        assert_eq!(w.apdu.ne(), Some(65536));
        assert_eq!(w.apdu.to_bytes().len(), 7 + 18 + 2);
        assert!(card_transmit(&mut p.card, &w.apdu.to_bytes()).1.is_some());
    }
}
