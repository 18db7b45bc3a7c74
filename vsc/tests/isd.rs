//! The GlobalPlatform issuer security domain of the software card, driven in
//! process: SELECT, GET DATA, PUT KEY, GET STATUS, SET STATUS, STORE DATA,
//! with good and bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod isd_support;

use isd_support::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use vsc::card::gp_state;
use vsc::card::isd::put_key::put_key_command;
use vsc::card::{LifeCycle, ISD_AID};
use vsc::codec::{CommandApdu, StatusWord};
use vsc::file::ObjectId;
use vsc::scp03::{key_check_value, put_key_component, SecurityLevel, StaticKeys};
use vsc::secret::{AesKey, AesKeyLen};
use vsc::transport::{CardTransport, ResetKind};

const FCI: &str = "6F41 8408A000000151000000 A535 \
                   732F 06072A864886FC6B01 600C060A2A864886FC6B02020301 \
                   630906072A864886FC6B03 640B06092A864886FC6B040370 \
                   9F6501FF";

fn h(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).unwrap()
}

fn random_keys(seed: u64, len: AesKeyLen) -> StaticKeys {
    let mut rng = StdRng::seed_from_u64(seed);
    StaticKeys::new(
        AesKey::random(&mut rng, len),
        AesKey::random(&mut rng, len),
        AesKey::random(&mut rng, len),
    )
    .unwrap()
}

fn test_dek() -> AesKey {
    test_keys().dek().clone()
}

// ------------------------------------------------------------------ SELECT

#[test]
fn select_answers_the_fci_by_empty_partial_and_full_aid() {
    let mut t = card(100);
    for apdu in [
        "00A4040000",
        "00A4040005A000000151",
        "00A4040008A00000015100000000",
    ] {
        let r = send(&mut t, apdu);
        assert_eq!(r.sw, StatusWord::Success, "{apdu}");
        assert_eq!(r.data, h(FCI), "{apdu}");
    }
    // P2 0C: no data.
    let r = send(&mut t, "00A4040C08A000000151000000");
    assert_eq!((r.data.len(), r.sw), (0, StatusWord::Success));
    // Next occurrence: there is only one.
    assert_eq!(
        send(&mut t, "00A4040208A000000151000000").sw,
        StatusWord::FileNotFound
    );
}

// ------------------------------------------------------------------ GET DATA

#[test]
fn get_data_cplc_card_data_key_information_counter_kdd() {
    let mut t = card(101);
    let cplc = t.card().identity().cplc().to_vec();
    let r = send(&mut t, "80CA9F7F00");
    assert_eq!(r.sw, StatusWord::Success);
    assert_eq!(r.data, [&[0x9F, 0x7F, 0x2A][..], &cplc].concat());
    // An ISO class gets the value only (Card Specification §11.3.3.1).
    assert_eq!(send(&mut t, "00CA9F7F00").data, cplc);
    let r = send(&mut t, "80CA006600");
    assert_eq!(r.data, [&h("6631")[..], &h(FCI)[14..14 + 0x31]].concat());
    let r = send(&mut t, "80CA00E000");
    assert_eq!(r.data, h("E012 C00401018810 C00402018810 C00403018810"));
    assert_eq!(send(&mut t, "80CA00C100").data, h("C103000000"));
    let kdd = t.card().identity().kdd();
    assert_eq!(
        send(&mut t, "80CA00CF00").data,
        [&[0xCF, 0x0A][..], &kdd].concat()
    );
    // INITIALIZE UPDATE moves the counter of the default key set.
    open(&mut t, SecurityLevel::CMac);
    t.reset(ResetKind::Warm).unwrap();
    assert_eq!(send(&mut t, "80CA00C100").data, h("C103000001"));
    for unknown in [
        "80CA5F5000",
        "80CA00D300",
        "80CA004200",
        "80CA000000",
        "80CA2F0000",
    ] {
        assert_eq!(
            send(&mut t, unknown).sw,
            StatusWord::ReferencedDataNotFound,
            "{unknown}"
        );
    }
    // An invalid tag in P1-P2 is not found either.
    assert_eq!(send(&mut t, "80CA1F0000").sw, StatusWord::ReferencedDataNotFound);
}

#[test]
fn get_data_works_inside_a_session_with_response_encryption() {
    let mut t = card(102);
    let plain_cplc = send(&mut t, "80CA9F7F00").data;
    let mut s = open(&mut t, SecurityLevel::All);
    assert_eq!(ssend(&mut t, &mut s, "80CA9F7F00").data, plain_cplc);
}

#[test]
fn gp_commands_need_the_gp_class_and_unknown_instructions_are_refused() {
    let mut t = card(103);
    let mut s = open(&mut t, SecurityLevel::All);
    for iso in ["00F2800002 4F00", "00F0800700", "00E2900003420101", "00D8018100"] {
        // Sent with secure messaging, as an ISO class (CLA 04).
        let r = secure(&mut t, &mut s, &cmd(iso));
        assert_eq!(r.sw, StatusWord::ClassNotSupported, "{iso}");
    }
    assert_eq!(
        ssend(&mut t, &mut s, "80AA000000").sw,
        StatusWord::InstructionNotSupported
    );
    assert_eq!(
        ssend(&mut t, &mut s, "80B0000000").sw,
        StatusWord::InstructionNotSupported
    );
    assert_eq!(
        ssend(&mut t, &mut s, "80CB3FFF00").sw,
        StatusWord::InstructionNotSupported
    );
}

#[test]
fn issuer_commands_without_a_session_are_refused() {
    let mut t = card(104);
    let put_key = put_key_command(None, 0x30, &test_dek(), &random_keys(1, AesKeyLen::Aes128));
    assert_eq!(plain(&mut t, &put_key).sw, StatusWord::SecurityStatusNotSatisfied);
    for apdu in ["80F28002024F0000", "80F0800700", "80E2900003420101"] {
        assert_eq!(
            send(&mut t, apdu).sw,
            StatusWord::SecurityStatusNotSatisfied,
            "{apdu}"
        );
    }
    assert_eq!(t.card().life_cycle(), LifeCycle::OpReady);
    assert_eq!(gp_state::keysets(t.card().vsc()).unwrap().len(), 1);
}

// ------------------------------------------------------------------ PUT KEY

struct VectorSet {
    kvn: u8,
    keys: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

fn vectors() -> (Vec<u8>, Vec<VectorSet>) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/gp_put_key.txt"
    ))
    .unwrap();
    let mut dek = Vec::new();
    let mut sets: Vec<VectorSet> = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[0] {
            "dek" => {
                dek = h(f[1]);
                assert_eq!(
                    key_check_value(&AesKey::from_slice(&dek).unwrap()).to_vec(),
                    h(f[2])
                );
            }
            "set" => sets.push(VectorSet {
                kvn: u8::from_str_radix(f[1], 16).unwrap(),
                keys: Vec::new(),
            }),
            "key" => sets.last_mut().unwrap().keys.push((h(f[2]), h(f[3]), h(f[4]))),
            other => panic!("unknown vector line {other}"),
        }
    }
    (dek, sets)
}

#[test]
fn put_key_with_published_vectors_adds_key_sets_that_open_sessions() {
    let (dek, sets) = vectors();
    assert_eq!(sets.len(), 2);
    let dek = AesKey::from_slice(&dek).unwrap();
    let mut t = card(110);
    let mut s = open(&mut t, SecurityLevel::All);
    for set in &sets {
        let mut data = vec![set.kvn];
        let mut expected = vec![set.kvn];
        for (clear, encrypted, kcv) in &set.keys {
            let key = AesKey::from_slice(clear).unwrap();
            let field = put_key_component(&dek, &key);
            // 88 | L | Lk | E(key) | 03 | KCV, checked against OpenSSL.
            let lk = clear.len() as u8;
            assert_eq!(field, [&[0x88, lk + 1, lk][..], encrypted, &[0x03], kcv].concat());
            data.extend(field);
            expected.extend(kcv);
        }
        let c = CommandApdu::new(0x80, 0xD8, 0x00, 0x81).with_data(data).unwrap();
        let r = secure(&mut t, &mut s, &c);
        assert_eq!((r.sw, r.data), (StatusWord::Success, expected));
    }
    let info = ssend(&mut t, &mut s, "80CA00E000").data;
    assert_eq!(
        info,
        h("E036 C00401018810 C00402018810 C00403018810 \
                C00401308810 C00402308810 C00403308810 \
                C00401318820 C00402318820 C00403318820")
    );
    for set in &sets {
        let [enc, mac, kdek] = [0, 1, 2].map(|i| set.keys[i].0.clone());
        let keys = keys_of(&enc, &mac, &kdek);
        let mut s2 = open_with(&mut t, set.kvn, &keys, SecurityLevel::All, ISD_AID).unwrap();
        assert_eq!(ssend(&mut t, &mut s2, "80CA00C100").sw, StatusWord::Success);
    }
    // Added sets are not the card stock's; the stock's set is still there.
    let stored = gp_state::keysets(t.card().vsc()).unwrap();
    let factory: Vec<(u8, bool)> = stored.iter().map(|s| (s.set.kvn, s.factory)).collect();
    assert_eq!(factory, [(0x01, true), (0x30, false), (0x31, false)]);
}

#[test]
fn put_key_replaces_a_key_set_under_a_new_kvn_and_resets_its_counter() {
    let mut t = card(111);
    let mut s = open(&mut t, SecurityLevel::CDecCMac);
    let new = random_keys(2, AesKeyLen::Aes128);
    let r = secure(
        &mut t,
        &mut s,
        &put_key_command(Some(0x01), 0x20, &test_dek(), &new),
    );
    let mut expected = vec![0x20];
    for k in [new.enc(), new.mac(), new.dek()] {
        expected.extend(key_check_value(k));
    }
    assert_eq!((r.sw, r.data), (StatusWord::Success, expected));
    let stored = gp_state::keysets(t.card().vsc()).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (
            stored[0].set.kvn,
            stored[0].set.sequence_counter,
            stored[0].factory
        ),
        (0x20, 0, false)
    );
    // The session goes on, but its key set (and so its Key-DEK) is gone.
    let again = put_key_command(None, 0x21, &test_dek(), &random_keys(3, AesKeyLen::Aes128));
    assert_eq!(
        secure(&mut t, &mut s, &again).sw,
        StatusWord::ReferencedDataNotFound
    );
    t.reset(ResetKind::Warm).unwrap();
    assert_eq!(
        open_with(&mut t, 0x01, &test_keys(), SecurityLevel::All, ISD_AID).unwrap_err(),
        StatusWord::ReferencedDataNotFound
    );
    let mut s = open_with(&mut t, 0x20, &new, SecurityLevel::All, ISD_AID).unwrap();
    // Replacing a set under the same KVN, with the new set's own Key-DEK.
    let newer = random_keys(4, AesKeyLen::Aes128);
    let r = secure(
        &mut t,
        &mut s,
        &put_key_command(Some(0x20), 0x20, new.dek(), &newer),
    );
    assert_eq!(r.sw, StatusWord::Success);
    t.reset(ResetKind::Warm).unwrap();
    open_with(&mut t, 0x20, &newer, SecurityLevel::All, ISD_AID).unwrap();
}

#[test]
fn put_key_refusals() {
    let mut t = card(112);
    let new = random_keys(5, AesKeyLen::Aes128);
    let good = put_key_command(None, 0x30, &test_dek(), &new);
    // Levels without C-DECRYPTION.
    for level in [SecurityLevel::CMac, SecurityLevel::CMacRMac] {
        let mut s = open(&mut t, level);
        assert_eq!(
            secure(&mut t, &mut s, &good).sw,
            StatusWord::SecurityStatusNotSatisfied
        );
    }
    let mut s = open(&mut t, SecurityLevel::All);
    let with = |p1: u8, p2: u8, data: Vec<u8>| CommandApdu::new(0x80, 0xD8, p1, p2).with_data(data).unwrap();
    let data = good.data().to_vec();
    // P1 bit 8 (more PUT KEY commands) and single keys are not supported.
    assert_eq!(
        secure(&mut t, &mut s, &with(0x81, 0x81, data.clone())).sw,
        StatusWord::IncorrectP1P2
    );
    assert_eq!(
        secure(&mut t, &mut s, &with(0x00, 0x01, data.clone())).sw,
        StatusWord::IncorrectP1P2
    );
    assert_eq!(
        secure(&mut t, &mut s, &with(0x00, 0x82, data.clone())).sw,
        StatusWord::IncorrectP1P2
    );
    // A wrong key check value: 6982 (Card Specification Table 11-78).
    let mut bad_kcv = data.clone();
    let last = bad_kcv.len() - 1;
    bad_kcv[last] ^= 1;
    assert_eq!(
        secure(&mut t, &mut s, &with(0x00, 0x81, bad_kcv)).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    // Keys encrypted under another Key-DEK fail their KCV.
    let wrong_dek = put_key_command(None, 0x30, new.dek(), &new);
    assert_eq!(
        secure(&mut t, &mut s, &wrong_dek).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    // Malformed data.
    for bad in [
        vec![],
        vec![0x30],
        data[..data.len() - 4].to_vec(),
        [&data[..], &[0x00]].concat(),
        [&[0x00][..], &data[1..]].concat(),
        [&[0x80][..], &data[1..]].concat(),
    ] {
        let c = if bad.is_empty() {
            CommandApdu::new(0x80, 0xD8, 0x00, 0x81)
        } else {
            with(0x00, 0x81, bad)
        };
        assert_eq!(secure(&mut t, &mut s, &c).sw, StatusWord::IncorrectData);
    }
    // Keys of different lengths in one set.
    let mixed = {
        let mut d = vec![0x30];
        d.extend(put_key_component(&test_dek(), new.enc()));
        d.extend(put_key_component(
            &test_dek(),
            random_keys(6, AesKeyLen::Aes256).mac(),
        ));
        d.extend(put_key_component(&test_dek(), new.dek()));
        with(0x00, 0x81, d)
    };
    assert_eq!(secure(&mut t, &mut s, &mixed).sw, StatusWord::IncorrectData);
    // Adding a KVN that exists; replacing one that does not; replacing with
    // another key length.
    let add_01 = put_key_command(None, 0x01, &test_dek(), &new);
    assert_eq!(secure(&mut t, &mut s, &add_01).sw, StatusWord::IncorrectData);
    let replace_05 = put_key_command(Some(0x05), 0x05, &test_dek(), &new);
    assert_eq!(
        secure(&mut t, &mut s, &replace_05).sw,
        StatusWord::ReferencedDataNotFound
    );
    let longer = put_key_command(Some(0x01), 0x01, &test_dek(), &random_keys(7, AesKeyLen::Aes256));
    assert_eq!(secure(&mut t, &mut s, &longer).sw, StatusWord::IncorrectData);
    // Nothing changed, and the session is still open.
    assert_eq!(gp_state::keysets(t.card().vsc()).unwrap().len(), 1);
    assert!(t.card().secure_channel_open());
    // At most eight key sets.
    for kvn in 0x40..0x47 {
        let c = put_key_command(
            None,
            kvn,
            &test_dek(),
            &random_keys(u64::from(kvn), AesKeyLen::Aes128),
        );
        assert_eq!(secure(&mut t, &mut s, &c).sw, StatusWord::Success);
    }
    let ninth = put_key_command(None, 0x50, &test_dek(), &new);
    assert_eq!(secure(&mut t, &mut s, &ninth).sw, StatusWord::NotEnoughMemory);
    // Replacing 01 with a KVN another set has.
    let clash = put_key_command(Some(0x01), 0x40, &test_dek(), &new);
    assert_eq!(secure(&mut t, &mut s, &clash).sw, StatusWord::IncorrectData);
}

// ------------------------------------------------------- the card's life cycle

#[test]
fn rotate_keys_then_secure_the_card_and_the_factory_keys_are_refused() {
    let mut t = card(120);
    let mut s = open(&mut t, SecurityLevel::All);
    let new = random_keys(8, AesKeyLen::Aes128);
    // The stock's set stays; a new one is added.
    let r = secure(&mut t, &mut s, &put_key_command(None, 0x30, &test_dek(), &new));
    assert_eq!(r.sw, StatusWord::Success);
    assert_eq!(ssend(&mut t, &mut s, "80F0800700").sw, StatusWord::Success);
    assert_eq!(t.card().life_cycle(), LifeCycle::Initialized);
    assert_eq!(ssend(&mut t, &mut s, "80F0800F00").sw, StatusWord::Success);
    assert_eq!(t.card().life_cycle(), LifeCycle::Secured);
    t.reset(ResetKind::Cold).unwrap();
    // The factory key set is refused, by its KVN and as the default.
    assert_eq!(
        open_with(&mut t, 0x01, &test_keys(), SecurityLevel::All, ISD_AID).unwrap_err(),
        StatusWord::ReferencedDataNotFound
    );
    let mut s = open_with(&mut t, 0x00, &new, SecurityLevel::All, ISD_AID).unwrap();
    let r = ssend(&mut t, &mut s, "80F28002024F0000");
    assert_eq!(r.data, h("E3134F08A0000001510000009F70010FC5039C4600"));
    // The counter of the default key set is the new set's.
    assert_eq!(ssend(&mut t, &mut s, "80CA00C100").data, h("C103000001"));
}

#[test]
fn set_status_follows_the_card_life_cycle() {
    let mut t = card(121);
    let mut s = open(&mut t, SecurityLevel::CMac);
    // Only the card's life cycle (P1 80), only known states.
    assert_eq!(
        ssend(&mut t, &mut s, "80F0400705A000000308").sw,
        StatusWord::IncorrectP1P2
    );
    assert_eq!(ssend(&mut t, &mut s, "80F0800300").sw, StatusWord::IncorrectP1P2);
    // The current state again; SECURED with only the stock's keys.
    assert_eq!(
        ssend(&mut t, &mut s, "80F0800100").sw,
        StatusWord::ConditionsOfUseNotSatisfied
    );
    assert_eq!(
        ssend(&mut t, &mut s, "80F0800F00").sw,
        StatusWord::ConditionsOfUseNotSatisfied
    );
    assert_eq!(
        ssend(&mut t, &mut s, "80F0807F00").sw,
        StatusWord::ConditionsOfUseNotSatisfied
    );
    assert_eq!(ssend(&mut t, &mut s, "80F0800700").sw, StatusWord::Success);
    // No way back.
    assert_eq!(
        ssend(&mut t, &mut s, "80F0800100").sw,
        StatusWord::ConditionsOfUseNotSatisfied
    );
    assert_eq!(
        ssend(&mut t, &mut s, "80F0800700").sw,
        StatusWord::ConditionsOfUseNotSatisfied
    );
    // Keys of the issuer's own, then SECURED (needs C-DECRYPTION for PUT KEY).
    let mut s = open(&mut t, SecurityLevel::All);
    let new = random_keys(9, AesKeyLen::Aes128);
    assert_eq!(
        secure(&mut t, &mut s, &put_key_command(None, 0x30, &test_dek(), &new)).sw,
        StatusWord::Success
    );
    assert_eq!(ssend(&mut t, &mut s, "80F0800F00").sw, StatusWord::Success);
    assert_eq!(
        ssend(&mut t, &mut s, "80F0800700").sw,
        StatusWord::ConditionsOfUseNotSatisfied
    );
    // Lock: nothing may change, only the ISD is selectable.
    assert_eq!(ssend(&mut t, &mut s, "80F0807F00").sw, StatusWord::Success);
    assert_eq!(t.card().life_cycle(), LifeCycle::CardLocked);
    let more = put_key_command(None, 0x31, &test_dek(), &new);
    assert_eq!(
        secure(&mut t, &mut s, &more).sw,
        StatusWord::ConditionsOfUseNotSatisfied
    );
    assert_eq!(
        ssend(&mut t, &mut s, "80E2900003420101").sw,
        StatusWord::ConditionsOfUseNotSatisfied
    );
    assert_eq!(
        ssend(&mut t, &mut s, "00A4040005A000000308").sw,
        StatusWord::FunctionNotSupported
    );
    assert_eq!(
        ssend(&mut t, &mut s, "00A40000023F00").sw,
        StatusWord::FunctionNotSupported
    );
    let r = ssend(&mut t, &mut s, "00A4040008A000000151000000");
    assert_eq!((r.sw, r.data), (StatusWord::FileDeactivated, h(FCI)));
    // Unlock, then terminate.
    assert_eq!(ssend(&mut t, &mut s, "80F0800F00").sw, StatusWord::Success);
    assert_eq!(
        ssend(&mut t, &mut s, "00A4040005A000000308").sw,
        StatusWord::Success
    );
    assert_eq!(ssend(&mut t, &mut s, "00A4040000").sw, StatusWord::Success);
    assert_eq!(ssend(&mut t, &mut s, "80F080FF00").sw, StatusWord::Success);
    assert_eq!(t.card().life_cycle(), LifeCycle::Terminated);
    // TERMINATED: only GET DATA.
    assert_eq!(ssend(&mut t, &mut s, "80CA9F7F00").sw, StatusWord::Success);
    for apdu in ["80F28002024F0000", "80F0800F00", "80E2900003420101"] {
        assert_eq!(
            ssend(&mut t, &mut s, apdu).sw,
            StatusWord::ConditionsOfUseNotSatisfied,
            "{apdu}"
        );
    }
    assert_eq!(
        ssend(&mut t, &mut s, "00A4040005A000000308").sw,
        StatusWord::FunctionNotSupported
    );
    assert_eq!(ssend(&mut t, &mut s, "00A4040000").sw, StatusWord::Success);
}

// ------------------------------------------------------------------ GET STATUS

#[test]
fn get_status_lists_the_isd_and_piv() {
    let mut t = card(130);
    let mut s = open(&mut t, SecurityLevel::CMacRMac);
    let isd = "E3134F08A0000001510000009F700101C5039C4600";
    assert_eq!(ssend(&mut t, &mut s, "80F28002024F0000").data, h(isd));
    // Search criteria are ignored for the ISD.
    assert_eq!(ssend(&mut t, &mut s, "80F28002034F01FF00").data, h(isd));
    let piv = "E3204F0BA0000003080000100001009F700107C503000000CC08A000000151000000";
    assert_eq!(ssend(&mut t, &mut s, "80F24002024F0000").data, h(piv));
    assert_eq!(ssend(&mut t, &mut s, "80F24002074F05A00000030800").data, h(piv));
    // Other criteria after 4F are ignored.
    assert_eq!(ssend(&mut t, &mut s, "80F24002064F005C024F9F00").data, h(piv));
    // Nothing found.
    for apdu in [
        "80F24002064F04A000000100",
        "80F24002064F04A000000400",
        "80F22002024F0000",
        "80F21002024F0000",
        "80F24003024F0000",
    ] {
        assert_eq!(
            ssend(&mut t, &mut s, apdu).sw,
            StatusWord::ReferencedDataNotFound,
            "{apdu}"
        );
    }
    // Bad parameters and data.
    for apdu in [
        "80F28003024F0000",
        "80F24000024F0000",
        "80F20102024F0000",
        "80F2C002024F0000",
    ] {
        assert_eq!(
            ssend(&mut t, &mut s, apdu).sw,
            StatusWord::IncorrectP1P2,
            "{apdu}"
        );
    }
    for apdu in [
        "80F28002025C0000",
        "80F2800200",
        "80F24002024F0500",
        "80F24002134F11000102030405060708090A0B0C0D0E0F1000",
    ] {
        assert_eq!(
            ssend(&mut t, &mut s, apdu).sw,
            StatusWord::IncorrectData,
            "{apdu}"
        );
    }
}

// ------------------------------------------------------------------ STORE DATA

fn public(t: &Card, id: ObjectId) -> Option<Vec<u8>> {
    t.card().vsc().public_area().get(&id).cloned()
}

#[test]
fn store_data_stores_ber_tlv_and_dgi_objects() {
    let mut t = card(140);
    let mut s = open(&mut t, SecurityLevel::All);
    // BER-TLV, one block: IIN and CIN.
    assert_eq!(
        ssend(&mut t, &mut s, "80E290000942031234564502AABB").sw,
        StatusWord::Success
    );
    assert_eq!(ssend(&mut t, &mut s, "80CA004200").data, h("4203123456"));
    assert_eq!(ssend(&mut t, &mut s, "00CA004500").data, h("AABB"));
    // DGI format: BER-TLV objects inside DGI 0070, and another DGI.
    let r = ssend(&mut t, &mut s, "80E288000D 0070 04 4502CCDD 0101 03 010203");
    assert_eq!(r.sw, StatusWord::Success);
    assert_eq!(public(&t, ObjectId::Gp(0x45)), Some(h("CCDD")));
    assert_eq!(public(&t, gp_state::dgi_object(0x0101)), Some(h("010203")));
    // Application-dependent format is taken as BER-TLV.
    assert_eq!(ssend(&mut t, &mut s, "80E280000342019A").sw, StatusWord::Success);
    assert_eq!(public(&t, ObjectId::Gp(0x42)), Some(h("9A")));
    // Card data may be stored, and GET DATA then returns it.
    assert_eq!(
        ssend(&mut t, &mut s, "80E2900004 6602 7300").sw,
        StatusWord::Success
    );
    assert_eq!(ssend(&mut t, &mut s, "80CA006600").data, h("66027300"));
}

#[test]
fn store_data_objects_may_span_blocks() {
    let mut t = card(141);
    let mut s = open(&mut t, SecurityLevel::All);
    let url = b"https://issuer.example/sd";
    let mut all = vec![0x5F, 0x50, url.len() as u8];
    all.extend_from_slice(url);
    all.extend(h("4201 77"));
    let (a, rest) = all.split_at(10);
    let (b, c) = rest.split_at(10);
    let block = |p1: u8, p2: u8, d: &[u8]| {
        CommandApdu::new(0x80, 0xE2, p1, p2)
            .with_data(d.to_vec())
            .unwrap()
    };
    assert_eq!(secure(&mut t, &mut s, &block(0x10, 0, a)).sw, StatusWord::Success);
    assert_eq!(public(&t, ObjectId::Gp(0x5F50)), None);
    assert_eq!(secure(&mut t, &mut s, &block(0x10, 1, b)).sw, StatusWord::Success);
    assert_eq!(secure(&mut t, &mut s, &block(0x90, 2, c)).sw, StatusWord::Success);
    assert_eq!(public(&t, ObjectId::Gp(0x5F50)), Some(url.to_vec()));
    assert_eq!(public(&t, ObjectId::Gp(0x42)), Some(vec![0x77]));
    // DGIs span blocks too.
    let dgi = [&h("0202 20")[..], &[0xEE; 0x20]].concat();
    assert_eq!(
        secure(&mut t, &mut s, &block(0x08, 0, &dgi[..7])).sw,
        StatusWord::Success
    );
    assert_eq!(
        secure(&mut t, &mut s, &block(0x88, 1, &dgi[7..])).sw,
        StatusWord::Success
    );
    assert_eq!(public(&t, gp_state::dgi_object(0x0202)), Some(vec![0xEE; 0x20]));
}

#[test]
fn store_data_refusals() {
    let mut t = card(142);
    let mut s = open(&mut t, SecurityLevel::All);
    // Blocks out of order, and a refused block ends the sequence.
    assert_eq!(ssend(&mut t, &mut s, "80E21000024201").sw, StatusWord::Success);
    assert_eq!(
        ssend(&mut t, &mut s, "80E2900201AA").sw,
        StatusWord::IncorrectP1P2
    );
    assert_eq!(
        ssend(&mut t, &mut s, "80E2900101AA").sw,
        StatusWord::IncorrectP1P2
    );
    assert_eq!(
        ssend(&mut t, &mut s, "80E2900101AA").sw,
        StatusWord::IncorrectP1P2
    );
    assert_eq!(public(&t, ObjectId::Gp(0x42)), None);
    // A sequence must start at block 00.
    assert_eq!(
        ssend(&mut t, &mut s, "80E290010342019A").sw,
        StatusWord::IncorrectP1P2
    );
    // The format may not change within a sequence.
    assert_eq!(ssend(&mut t, &mut s, "80E21000024201").sw, StatusWord::Success);
    assert_eq!(
        ssend(&mut t, &mut s, "80E2880101AA").sw,
        StatusWord::IncorrectP1P2
    );
    // Selecting the ISD ends a sequence.
    assert_eq!(ssend(&mut t, &mut s, "80E21000024201").sw, StatusWord::Success);
    assert_eq!(ssend(&mut t, &mut s, "00A4040000").sw, StatusWord::Success);
    assert_eq!(
        ssend(&mut t, &mut s, "80E2900101AA").sw,
        StatusWord::IncorrectP1P2
    );
    // The last block leaves an incomplete object.
    assert_eq!(
        ssend(&mut t, &mut s, "80E290000342059A").sw,
        StatusWord::IncorrectData
    );
    // Objects the card makes itself; key DGIs; malformed TLV and DGI.
    for apdu in [
        "80E29000049F7F0100",
        "80E2900003C10100",
        "80E29000064F04A0000001",
        "80E2900002E000",
        "80E2880004 8010 0100",
        "80E2880004 00B9 0100",
        "80E2880006 0070 03 9F7F00",
        "80E2880005 0070 02 4205",
        "80E29000034280AA",
        "80E2900004 1F 00 00 00",
    ] {
        assert_eq!(
            ssend(&mut t, &mut s, apdu).sw,
            StatusWord::IncorrectData,
            "{apdu}"
        );
    }
    // Encrypted data structures, RFU format, no data.
    assert_eq!(
        ssend(&mut t, &mut s, "80E2F00003420101").sw,
        StatusWord::IncorrectP1P2
    );
    assert_eq!(
        ssend(&mut t, &mut s, "80E2B00003420101").sw,
        StatusWord::IncorrectP1P2
    );
    assert_eq!(
        ssend(&mut t, &mut s, "80E2980003420101").sw,
        StatusWord::IncorrectP1P2
    );
    assert_eq!(ssend(&mut t, &mut s, "80E2900000").sw, StatusWord::WrongLength);
    // Nothing was stored; the CPLC is the card's own.
    assert_eq!(public(&t, ObjectId::Gp(0x42)), None);
    assert_eq!(
        ssend(&mut t, &mut s, "00CA9F7F00").data,
        t.card().identity().cplc().to_vec()
    );
    // A level with C-MAC only is enough for STORE DATA.
    let mut s = open(&mut t, SecurityLevel::CMac);
    assert_eq!(ssend(&mut t, &mut s, "80E290000342019A").sw, StatusWord::Success);
}
