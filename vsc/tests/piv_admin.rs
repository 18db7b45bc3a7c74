//! Administering the PIV application: PIN and PUK, the management key, who
//! may write objects and keys (the management key or the issuer's SCP03
//! session), and the status word of every malformed command.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod piv_support;

use piv_support::*;
use vsc::card::SoftCard;
use vsc::codec::{CommandApdu, StatusWord};
use vsc::file::{KeyAlgorithm, KeyOrigin, KeyRef, ObjectId, PinPolicy, TouchPolicy};
use vsc::scp03::SecurityLevel;
use vsc::transport::{CardTransport, ResetKind};

#[test]
fn the_management_key_vectors_hold() {
    let v = vectors(include_str!("vectors/piv_management_key.txt"));
    assert_eq!(v.len(), 3);
    assert_eq!(v["tdes_default_key"], DEFAULT_MGMT.to_vec());
    assert_eq!(
        block_encrypt(&v["tdes_default_key"], &v["tdes_plain"]),
        v["tdes_cipher"]
    );
    assert_eq!(
        block_decrypt(&v["tdes_default_key"], &v["tdes_cipher"]),
        v["tdes_plain"]
    );
}

#[test]
fn wrong_pins_block_and_the_puk_unblocks() {
    let mut t = piv_card(3001);
    assert_eq!(
        verify_pin(&mut t, b"111111"),
        StatusWord::VerificationFailed { retries: 2 }
    );
    assert_eq!(
        verify_pin(&mut t, b"111111"),
        StatusWord::VerificationFailed { retries: 1 }
    );
    assert_eq!(
        raw(&mut t, "00 20 00 80").sw,
        StatusWord::VerificationFailed { retries: 1 }
    );
    assert_eq!(
        verify_pin(&mut t, b"111111"),
        StatusWord::AuthenticationMethodBlocked
    );
    assert_eq!(
        verify_pin(&mut t, b"123456"),
        StatusWord::AuthenticationMethodBlocked
    );
    assert_eq!(
        raw(&mut t, "00 20 00 80").sw,
        StatusWord::AuthenticationMethodBlocked
    );
    // A wrong PUK counts too.
    let mut data = padded(b"00000000");
    data.extend(padded(b"246810"));
    assert_eq!(
        send(&mut t, &cmd(0x2C, 0x00, 0x80, &data)).sw,
        StatusWord::VerificationFailed { retries: 2 }
    );
    // A new PIN that is too short costs no PUK try.
    let mut data = padded(b"12345678");
    data.extend(padded(b"2468"));
    assert_eq!(
        send(&mut t, &cmd(0x2C, 0x00, 0x80, &data)).sw,
        StatusWord::IncorrectData
    );
    assert_eq!(
        raw(&mut t, "00 20 00 81").sw,
        StatusWord::VerificationFailed { retries: 2 }
    );
    let mut data = padded(b"12345678");
    data.extend(padded(b"246810"));
    assert_eq!(
        send(&mut t, &cmd(0x2C, 0x00, 0x80, &data)).sw,
        StatusWord::Success
    );
    // The PUK's counter is restored, the PIN set with all its tries, not verified.
    assert_eq!(
        raw(&mut t, "00 20 00 81").sw,
        StatusWord::VerificationFailed { retries: 3 }
    );
    assert_eq!(
        raw(&mut t, "00 20 00 80").sw,
        StatusWord::VerificationFailed { retries: 3 }
    );
    assert_eq!(
        verify_pin(&mut t, b"123456"),
        StatusWord::VerificationFailed { retries: 2 }
    );
    assert_eq!(verify_pin(&mut t, b"246810"), StatusWord::Success);
    assert_eq!(raw(&mut t, "00 20 00 80").sw, StatusWord::Success);
}

#[test]
fn a_blocked_puk_stays_blocked() {
    let mut t = piv_card(3002);
    let mut data = padded(b"00000000");
    data.extend(padded(b"246810"));
    for left in [2, 1] {
        assert_eq!(
            send(&mut t, &cmd(0x2C, 0x00, 0x80, &data)).sw,
            StatusWord::VerificationFailed { retries: left }
        );
    }
    assert_eq!(
        send(&mut t, &cmd(0x2C, 0x00, 0x80, &data)).sw,
        StatusWord::AuthenticationMethodBlocked
    );
    let mut good = padded(b"12345678");
    good.extend(padded(b"246810"));
    assert_eq!(
        send(&mut t, &cmd(0x2C, 0x00, 0x80, &good)).sw,
        StatusWord::AuthenticationMethodBlocked
    );
    // CHANGE REFERENCE DATA of the PUK is blocked as well.
    let mut change = padded(b"12345678");
    change.extend(padded(b"87654321"));
    assert_eq!(
        send(&mut t, &cmd(0x24, 0x00, 0x81, &change)).sw,
        StatusWord::AuthenticationMethodBlocked
    );
}

#[test]
fn change_reference_data_counts_tries_and_checks_the_new_length() {
    let mut t = piv_card(3003);
    let change = |old: &[u8], new: &[u8]| {
        let mut d = padded(old);
        d.extend(padded(new));
        cmd(0x24, 0x00, 0x80, &d)
    };
    assert_eq!(
        send(&mut t, &change(b"000000", b"654321")).sw,
        StatusWord::VerificationFailed { retries: 2 }
    );
    // Too short (5) or not padded: refused before the old PIN is looked at.
    assert_eq!(
        send(&mut t, &change(b"123456", b"12345")).sw,
        StatusWord::IncorrectData
    );
    assert_eq!(
        send(&mut t, &change(b"000000", b"12345")).sw,
        StatusWord::IncorrectData
    );
    assert_eq!(
        raw(&mut t, "00 20 00 80").sw,
        StatusWord::VerificationFailed { retries: 2 }
    );
    assert_eq!(
        send(&mut t, &change(b"123456", b"87654321")).sw,
        StatusWord::Success
    );
    assert_eq!(verify_pin(&mut t, b"87654321"), StatusWord::Success);
    // The success restored the tries.
    assert_eq!(
        send(&mut t, &change(b"000000", b"654321")).sw,
        StatusWord::VerificationFailed { retries: 2 }
    );
}

#[test]
fn put_data_needs_the_management_key() {
    let mut t = piv_card(3004);
    let put = |tag: &str, value: &[u8]| {
        let mut d = tlv(&[0x5C], &hex(tag));
        d.extend(tlv(&[0x53], value));
        cmd(0xDB, 0x3F, 0xFF, &d)
    };
    assert_eq!(
        send(&mut t, &put("5FC102", b"chuid")).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    // A failed authentication leaves it refused.
    assert_eq!(
        authenticate(&mut t, 0x03, &[9; 24]),
        Err(StatusWord::SecurityStatusNotSatisfied)
    );
    assert_eq!(
        send(&mut t, &put("5FC102", b"chuid")).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    authenticate_default(&mut t);
    assert_eq!(send(&mut t, &put("5FC102", b"chuid")).sw, StatusWord::Success);
    assert_eq!(
        send_hex(&mut t, "00 CB 3F FF 05 5C 03 5F C1 02 00").data,
        tlv(&[0x53], b"chuid")
    );
    // 53 00 deletes.
    assert_eq!(send(&mut t, &put("5FC102", b"")).sw, StatusWord::Success);
    assert_eq!(
        send_hex(&mut t, "00 CB 3F FF 05 5C 03 5F C1 02 00").sw,
        StatusWord::FileNotFound
    );
    // An object larger than the card keeps (8192 bytes) does not fit.
    assert_eq!(
        send(&mut t, &put("5FC105", &[0x30; 8193])).sw,
        StatusWord::NotEnoughMemory
    );
    assert_eq!(
        send(&mut t, &put("5FC105", &[0x30; 8192])).sw,
        StatusWord::Success
    );
    // Unknown objects are not found, either way.
    assert_eq!(send(&mut t, &put("5FFF00", b"x")).sw, StatusWord::FileNotFound);
    assert_eq!(
        send_hex(&mut t, "00 CB 3F FF 05 5C 03 5F FF 00 00").sw,
        StatusWord::FileNotFound
    );
    // The authentication ends with a reset.
    t.reset(ResetKind::Warm).unwrap();
    select_piv(&mut t);
    assert_eq!(
        send(&mut t, &put("5FC102", b"chuid")).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
}

#[test]
fn the_discovery_object_can_be_replaced_and_restored() {
    let mut t = piv_card(3005);
    authenticate_default(&mut t);
    let own = hex("4F 0B A0 00 00 03 08 00 00 10 00 01 00 5F 2F 02 60 10");
    // SP 800-73-4's form: the object itself.
    assert_eq!(
        send(&mut t, &cmd(0xDB, 0x3F, 0xFF, &tlv(&[0x7E], &own))).sw,
        StatusWord::Success
    );
    assert_eq!(
        send_hex(&mut t, "00 CB 3F FF 03 5C 01 7E 00").data,
        tlv(&[0x7E], &own)
    );
    // One that does not name PIV would lose OpenSC.
    let foreign = hex("4F 05 A0 00 00 00 01");
    assert_eq!(
        send(&mut t, &cmd(0xDB, 0x3F, 0xFF, &tlv(&[0x7E], &foreign))).sw,
        StatusWord::IncorrectData
    );
    // yubico-piv-tool's form deletes it; the standard one answers again.
    assert_eq!(
        send_hex(&mut t, "00 DB 3F FF 05 5C 01 7E 53 00").sw,
        StatusWord::Success
    );
    assert_eq!(
        send_hex(&mut t, "00 CB 3F FF 03 5C 01 7E 00").data,
        tlv(&[0x7E], &vsc::card::piv::DEFAULT_DISCOVERY)
    );
}

#[test]
fn printed_information_is_private_and_needs_the_pin() {
    let mut t = piv_card(3006);
    authenticate_default(&mut t);
    let printed = hex("01 04 4A4F484E 02 03 444F45");
    let mut d = hex("5C 03 5F C1 09");
    d.extend(tlv(&[0x53], &printed));
    assert_eq!(send(&mut t, &cmd(0xDB, 0x3F, 0xFF, &d)).sw, StatusWord::Success);
    assert_eq!(
        send_hex(&mut t, "00 CB 3F FF 05 5C 03 5F C1 09 00").sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    // Without the PIN an absent protected object is not revealed either.
    assert_eq!(
        send_hex(&mut t, "00 CB 3F FF 05 5C 03 5F C1 08 00").sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    assert_eq!(
        send_hex(&mut t, "00 CB 3F FF 05 5C 03 5F C1 09 00").data,
        tlv(&[0x53], &printed)
    );
    assert_eq!(
        send_hex(&mut t, "00 CB 3F FF 05 5C 03 5F C1 08 00").sw,
        StatusWord::FileNotFound
    );
    let vsc = t.remove().into_vsc();
    assert_eq!(vsc.private_area().get(&ObjectId::Piv(0x5FC109)), Some(&printed));
    assert!(!vsc.public_area().contains_key(&ObjectId::Piv(0x5FC109)));
}

#[test]
fn the_issuer_personalizes_under_scp03() {
    let mut t = card(3007);
    let mut s = open_scp03(&mut t, SecurityLevel::All);
    let select = CommandApdu::new(0x00, 0xA4, 0x04, 0x00)
        .with_data(hex("A0 00 00 03 08"))
        .unwrap();
    assert_eq!(secured(&mut t, &mut s, &select).sw, StatusWord::Success);
    // No 9B authentication: the session is the authority.
    let mut d = hex("5C 03 5F C1 02");
    d.extend(tlv(&[0x53], b"issued chuid"));
    assert_eq!(
        secured(&mut t, &mut s, &cmd(0xDB, 0x3F, 0xFF, &d)).sw,
        StatusWord::Success
    );
    let r = secured(
        &mut t,
        &mut s,
        &cmd(0x47, 0x00, 0x9A, &hex("AC 06 80 01 11 AA 01 02")),
    );
    assert_eq!(r.sw, StatusWord::Success);
    let public = p256_public(&r.data);
    let key = test_rsa_key(31);
    let r = secured(
        &mut t,
        &mut s,
        &cmd(0xFE, 0x07, 0x9D, &rsa_import_data(&key, &hex("AB 01 01"))),
    );
    assert_eq!(r.sw, StatusWord::Success);
    let mut new_key = vec![0x0A, 0x9B, 0x18];
    new_key.extend([0x42; 24]);
    assert_eq!(
        secured(&mut t, &mut s, &cmd(0xFF, 0xFF, 0xFF, &new_key)).sw,
        StatusWord::Success
    );
    // Outside the session the same commands are refused.
    t.reset(ResetKind::Warm).unwrap();
    select_piv(&mut t);
    assert_eq!(
        send(&mut t, &cmd(0xDB, 0x3F, 0xFF, &d)).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(
        send_hex(&mut t, "00 CB 3F FF 05 5C 03 5F C1 02 00").data,
        tlv(&[0x53], b"issued chuid")
    );
    // The VSC holds what the issuer put there.
    let vsc = t.remove().into_vsc();
    let generated = vsc.secret_key(&KeyRef::PivSlot(0x9A)).unwrap();
    assert_eq!(generated.algorithm, KeyAlgorithm::EccP256);
    assert_eq!(generated.attributes.origin, KeyOrigin::GeneratedOnCard);
    assert_eq!(generated.attributes.pin_policy, PinPolicy::Once);
    let imported = vsc.secret_key(&KeyRef::PivSlot(0x9D)).unwrap();
    assert_eq!(imported.algorithm, KeyAlgorithm::Rsa2048);
    assert_eq!(imported.attributes.origin, KeyOrigin::Imported);
    assert_eq!(imported.attributes.touch_policy, TouchPolicy::Never);
    let mgmt = vsc.secret_key(&KeyRef::PivSlot(0x9B)).unwrap();
    assert_eq!(mgmt.algorithm, KeyAlgorithm::Aes192);
    // The card's key is the one in the VSC: it still signs after a reload.
    let mut t = vsc::transport::InProcess::insert(SoftCard::with_seed(vsc, 5).unwrap());
    select_piv(&mut t);
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    let r = general_authenticate(&mut t, 0x11, 0x9A, 0x81, &[0x55; 32]);
    let sig = p256::ecdsa::DerSignature::try_from(dyn_auth(&r.data, 0x82).as_slice()).unwrap();
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    p256::ecdsa::VerifyingKey::from(public)
        .verify_prehash(&[0x55; 32], &sig)
        .unwrap();
}

#[test]
fn aes_management_keys_authenticate_both_ways() {
    for (alg, len) in [(0x08u8, 16usize), (0x0A, 24), (0x0C, 32)] {
        let mut t = piv_card(3008);
        authenticate_default(&mut t);
        let key: Vec<u8> = (0..len as u8)
            .map(|i| i.wrapping_mul(13).wrapping_add(alg))
            .collect();
        let mut data = vec![alg, 0x9B, len as u8];
        data.extend(&key);
        assert_eq!(
            send(&mut t, &cmd(0xFF, 0xFF, 0xFF, &data)).sw,
            StatusWord::Success
        );
        // The old key and a wrong algorithm no longer work.
        assert_eq!(
            authenticate(&mut t, 0x03, &DEFAULT_MGMT),
            Err(StatusWord::IncorrectData)
        );
        authenticate(&mut t, alg, &key).unwrap();
        // Single authentication: 16-byte challenges.
        let r = send(&mut t, &cmd(0x87, alg, 0x9B, &hex("7C 02 81 00")));
        assert_eq!(&r.data[..4], &[0x7C, 0x12, 0x81, 0x10]);
        let answer = block_encrypt(&key, &r.data[4..]);
        let r = send(
            &mut t,
            &cmd(0x87, alg, 0x9B, &tlv(&[0x7C], &tlv(&[0x82], &answer))),
        );
        assert_eq!((r.sw, r.data.len()), (StatusWord::Success, 0));
        let meta = send_hex(&mut t, "00 F7 00 9B 00");
        assert_eq!(&meta.data[..3], &[0x01, 0x01, alg]);
        assert_eq!(&meta.data[meta.data.len() - 3..], &[0x05, 0x01, 0x00]);
    }
}

#[test]
fn mutual_authentication_accepts_an_empty_response_request() {
    let mut t = piv_card(3012);
    let r = send(&mut t, &cmd(0x87, 0x03, 0x9B, &hex("7C 02 80 00")));
    let witness = block_decrypt(&DEFAULT_MGMT, &dyn_auth(&r.data, 0x80));
    let challenge = [0xC0u8; 8];
    let mut inner = tlv(&[0x80], &witness);
    inner.extend(tlv(&[0x81], &challenge));
    inner.extend([0x82, 0x00]);
    let r = send(&mut t, &cmd(0x87, 0x03, 0x9B, &tlv(&[0x7C], &inner)));
    assert_eq!(r.sw, StatusWord::Success);
    assert_eq!(dyn_auth(&r.data, 0x82), block_encrypt(&DEFAULT_MGMT, &challenge));
    // A wrong witness fails, and the answer is not given.
    let r = send(&mut t, &cmd(0x87, 0x03, 0x9B, &hex("7C 02 80 00")));
    assert_eq!(r.sw, StatusWord::Success);
    let mut inner = tlv(&[0x80], &[0; 8]);
    inner.extend(tlv(&[0x81], &challenge));
    let r = send(&mut t, &cmd(0x87, 0x03, 0x9B, &tlv(&[0x7C], &inner)));
    assert_eq!((r.sw, r.data.len()), (StatusWord::SecurityStatusNotSatisfied, 0));
    assert_eq!(
        send_hex(&mut t, "00 DB 3F FF 07 5C 03 5F C1 07 53 00").sw,
        StatusWord::SecurityStatusNotSatisfied
    );
}

#[test]
fn single_authentication_with_3des_and_its_pending_challenge() {
    let mut t = piv_card(3009);
    let challenge = |t: &mut Card| {
        let r = send(t, &cmd(0x87, 0x03, 0x9B, &hex("7C 02 81 00")));
        assert_eq!(&r.data[..4], &[0x7C, 0x0A, 0x81, 0x08]);
        r.data[4..].to_vec()
    };
    let answer = |t: &mut Card, response: &[u8]| {
        send(t, &cmd(0x87, 0x03, 0x9B, &tlv(&[0x7C], &tlv(&[0x82], response)))).sw
    };
    // A wrong answer fails and consumes the challenge.
    let c = challenge(&mut t);
    assert_eq!(answer(&mut t, &[0; 8]), StatusWord::SecurityStatusNotSatisfied);
    assert_eq!(
        answer(&mut t, &block_encrypt(&DEFAULT_MGMT, &c)),
        StatusWord::ConditionsOfUseNotSatisfied
    );
    // Only the newest challenge counts.
    let old = challenge(&mut t);
    let new = challenge(&mut t);
    assert_eq!(
        answer(&mut t, &block_encrypt(&DEFAULT_MGMT, &old)),
        StatusWord::SecurityStatusNotSatisfied
    );
    let _ = new;
    // Reset forgets a pending challenge.
    let c = challenge(&mut t);
    t.reset(ResetKind::Warm).unwrap();
    select_piv(&mut t);
    assert_eq!(
        answer(&mut t, &block_encrypt(&DEFAULT_MGMT, &c)),
        StatusWord::ConditionsOfUseNotSatisfied
    );
    // A right answer authenticates.
    let c = challenge(&mut t);
    assert_eq!(
        answer(&mut t, &block_encrypt(&DEFAULT_MGMT, &c)),
        StatusWord::Success
    );
    assert_eq!(
        send_hex(&mut t, "00 DB 3F FF 0A 5C 03 5F C1 07 53 03 F0 01 21").sw,
        StatusWord::Success
    );
    // A witness answered with a single-authentication response is refused.
    let r = send(&mut t, &cmd(0x87, 0x03, 0x9B, &hex("7C 02 80 00")));
    assert_eq!(r.sw, StatusWord::Success);
    assert_eq!(answer(&mut t, &[0; 8]), StatusWord::ConditionsOfUseNotSatisfied);
}

#[test]
fn generate_and_import_need_authority_and_valid_keys() {
    let mut t = piv_card(3010);
    assert_eq!(
        send_hex(&mut t, "00 47 00 9A 05 AC 03 80 01 11 00").sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(
        import_p256(&mut t, 0x9A, &test_p256_key(1), &[]),
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(
        send_hex(
            &mut t,
            "00 FF FF FF 1B 03 9B 18 010203040506070801020304050607080102030405060708"
        )
        .sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    authenticate_default(&mut t);
    // EC: d = 0 and d >= n are not keys.
    let n = hex("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551");
    for bad in [vec![0u8; 32], n.clone(), vec![0xFF; 32]] {
        let d = tlv(&[0x06], &bad);
        assert_eq!(
            send(&mut t, &cmd(0xFE, 0x11, 0x9A, &d)).sw,
            StatusWord::IncorrectData
        );
    }
    // RSA: CRT values that do not belong to the primes; primes too small.
    let key = test_rsa_key(32);
    let mut data = rsa_import_data(&key, &[]);
    let last = data.len() - 1;
    data[last] ^= 1; // qInv
    assert_eq!(
        send(&mut t, &cmd(0xFE, 0x07, 0x9C, &data)).sw,
        StatusWord::IncorrectData
    );
    let mut small = Vec::new();
    for i in 1..=5u8 {
        small.extend(tlv(&[i], &pad_left(&[0x0B], 128)));
    }
    assert_eq!(
        send(&mut t, &cmd(0xFE, 0x07, 0x9C, &small)).sw,
        StatusWord::IncorrectData
    );
    // Nothing was stored by the failures.
    assert_eq!(
        send_hex(&mut t, "00 F7 00 9C 00").sw,
        StatusWord::ReferencedDataNotFound
    );
    assert_eq!(
        send_hex(&mut t, "00 F7 00 9A 00").sw,
        StatusWord::ReferencedDataNotFound
    );
    // A generated key replaces an imported one.
    assert_eq!(
        import_p256(&mut t, 0x9A, &test_p256_key(1), &[]),
        StatusWord::Success
    );
    let public = p256_public(&generate(&mut t, 0x9A, 0x11));
    assert_ne!(public, test_p256_key(1).public_key());
    let meta = send_hex(&mut t, "00 F7 00 9A 00");
    assert_eq!(&meta.data[7..11], &[0x03, 0x01, 0x01, 0x04]);
}

/// Every command with malformed data or parameters: the right status word.
#[test]
fn malformed_commands_answer_the_right_status_word() {
    let mut t = piv_card(3011);
    authenticate_default(&mut t);
    assert_eq!(
        import_p256(&mut t, 0x9A, &test_p256_key(2), &[]),
        StatusWord::Success
    );
    use StatusWord::*;
    let cases: &[(&str, StatusWord)] = &[
        // GET DATA
        ("00 CB 3F FF", WrongLength),
        ("00 CB 3F FF 02 5C 03", IncorrectData),
        ("00 CB 3F FF 03 5C 81 01", IncorrectData),
        ("00 CB 3F FF 03 7E 01 7E", IncorrectData),
        ("00 CB 3F FF 02 5C 00", IncorrectData),
        ("00 CB 3F FF 06 5C 04 5F C1 05 01", IncorrectData),
        ("00 CB 3F FF 06 5C 03 5F C1 05 00", IncorrectData),
        ("00 CB 00 00 05 5C 03 5F C1 05", IncorrectP1P2),
        ("00 CB 3F FF 05 5C 03 5F C1 99", FileNotFound),
        // PUT DATA
        ("00 DB 3F FF", WrongLength),
        ("00 DB 3F FF 05 5C 03 5F C1 02", IncorrectData),
        ("00 DB 3F FF 07 5C 03 5F C1 02 53 01", IncorrectData),
        ("00 DB 3F FF 07 5C 03 5F C1 02 54 00", IncorrectData),
        ("00 DB 3F FF 09 5C 03 5F C1 02 53 00 53 00", IncorrectData),
        ("00 DB 3F FF 02 53 00", IncorrectData),
        ("00 DB 3F FE 07 5C 03 5F C1 02 53 00", IncorrectP1P2),
        // VERIFY
        ("00 20 00 80 06 31 32 33 34 35 36", IncorrectData),
        ("00 20 00 80 08 FF FF FF FF FF FF FF FF", IncorrectData),
        ("00 20 00 80 08 31 32 FF 34 35 36 FF FF", IncorrectData),
        ("00 20 00 80 09 31 32 33 34 35 36 FF FF FF", IncorrectData),
        ("00 20 00 82 08 31 32 33 34 35 36 FF FF", ReferencedDataNotFound),
        ("00 20 01 80", IncorrectP1P2),
        ("00 20 FF 80 08 31 32 33 34 35 36 FF FF", WrongLength),
        // CHANGE REFERENCE DATA, RESET RETRY COUNTER
        ("00 24 00 80", WrongLength),
        ("00 24 00 80 08 31 32 33 34 35 36 FF FF", IncorrectData),
        ("00 24 00 80 04 31 32 33 34", IncorrectData),
        (
            "00 24 01 80 10 31 32 33 34 35 36 FF FF 31 32 33 34 35 36 FF FF",
            IncorrectP1P2,
        ),
        (
            "00 24 00 9B 10 31 32 33 34 35 36 FF FF 31 32 33 34 35 36 FF FF",
            ReferencedDataNotFound,
        ),
        ("00 2C 00 80", WrongLength),
        (
            "00 2C 00 80 0F 31 32 33 34 35 36 37 38 31 32 33 34 35 36 FF",
            IncorrectData,
        ),
        (
            "00 2C 00 81 10 31 32 33 34 35 36 37 38 31 32 33 34 35 36 FF FF",
            ReferencedDataNotFound,
        ),
        // GENERAL AUTHENTICATE
        ("00 87 11 9A", WrongLength),
        ("00 87 11 9A 02 7C 05", IncorrectData),
        ("00 87 11 9A 04 7D 02 82 00", IncorrectData),
        ("00 87 11 9A 06 7C 04 82 00 82 00", IncorrectData),
        ("00 87 11 9A 04 7C 02 82 00", IncorrectData),
        ("00 87 11 9A 06 7C 04 82 00 81 00", IncorrectData),
        ("00 87 11 9A 07 7C 05 81 01 AA 83 00", IncorrectData),
        ("00 87 11 9A 07 7C 05 80 00 81 01 AA", IncorrectData),
        ("00 87 11 9A 05 7C 03 81 01 AA", IncorrectData),
        ("00 87 11 9A 05 7C 03 82 00 00", IncorrectData),
        ("00 87 11 9B 04 7C 02 80 00", IncorrectData),
        ("00 87 03 9B 04 7C 02 85 00", IncorrectData),
        ("00 87 03 9B 06 7C 04 80 00 81 00", IncorrectData),
        (
            "00 87 03 9B 0C 7C 0A 82 08 00 00 00 00 00 00 00 00",
            ConditionsOfUseNotSatisfied,
        ),
        ("00 87 11 80 07 7C 05 82 00 81 01 AA", IncorrectP1P2),
        ("00 87 11 9F 07 7C 05 82 00 81 01 AA", IncorrectP1P2),
        // GENERATE
        ("00 47 00 9A", WrongLength),
        ("00 47 01 9A 05 AC 03 80 01 11", IncorrectP1P2),
        ("00 47 00 9B 05 AC 03 80 01 11", IncorrectP1P2),
        ("00 47 00 9A 05 AC 03 80 01 05", IncorrectData),
        ("00 47 00 9A 05 AC 03 80 02 11", IncorrectData),
        ("00 47 00 9A 03 AC 01 80", IncorrectData),
        ("00 47 00 9A 08 AC 06 80 01 11 AB 01 09", IncorrectData),
        ("00 47 00 9A 08 AC 06 80 01 11 AA 02 01", IncorrectData),
        // IMPORT
        ("00 FE 11 9A", WrongLength),
        ("00 FE 14 9A 03 06 01 01", IncorrectData),
        ("00 FE 11 9B 03 06 01 01", IncorrectP1P2),
        ("00 FE 11 9A 03 07 01 01", IncorrectData),
        ("00 FE 11 9A 06 06 01 01 06 01 01", IncorrectData),
        ("00 FE 11 9A 02 06 00", IncorrectData),
        ("00 FE 11 9A 03 06 02 01", IncorrectData),
        ("00 FE 11 9A 06 06 01 01 AA 01 05", IncorrectData),
        ("00 FE 07 9A 03 01 01 03", IncorrectData),
        // SET MANAGEMENT KEY
        ("00 FF FF FF", WrongLength),
        ("00 FF FF FF 02 03 9B", IncorrectData),
        ("00 FF FF FF 05 03 9B 02 01 02", IncorrectData),
        ("00 FF FF FF 0B 03 9B 08 01 02 03 04 05 06 07 08", IncorrectData),
        ("00 FF FF FF 0B 11 9B 08 01 02 03 04 05 06 07 08", IncorrectData),
        ("00 FF FF 00 03 03 9B 00", IncorrectP1P2),
        // GET METADATA
        ("00 F7 01 9B", IncorrectP1P2),
        ("00 F7 00 00", IncorrectP1P2),
        // Not PIV
        ("00 84 00 00 08", InstructionNotSupported),
        ("00 FB 00 00", InstructionNotSupported),
        ("00 F9 9A 00", InstructionNotSupported),
        ("80 CB 3F FF 05 5C 03 5F C1 05", ClassNotSupported),
    ];
    for (apdu, sw) in cases {
        assert_eq!(raw(&mut t, apdu).sw, *sw, "{apdu}");
    }
    // The management key was never lost on the way.
    assert_eq!(
        send_hex(&mut t, "00 DB 3F FF 07 5C 03 5F C1 07 53 00").sw,
        Success
    );
}
