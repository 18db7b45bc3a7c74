//! The PIV application as OpenSC and yubico-piv-tool 2.2 talk to it: their
//! command sequences byte for byte (project reference, card-protocols.md
//! section C; OpenSC card-piv.c, yubico-piv-tool lib/ykpiv.c, lib/util.c).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod piv_support;

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use piv_support::*;
use rsa::Pkcs1v15Sign;
use sha2::{Digest, Sha256};
use vsc::card::piv::{DEFAULT_DISCOVERY, VERSION};
use vsc::codec::StatusWord;
use vsc::transport::CardTransport;

const APT: &str = "61114F0600001000010079074F05A000000308";

#[test]
fn opensc_start_up_on_a_blank_card() {
    let mut t = card(1001);
    // Other drivers probe first with their own AIDs: not found, never 9000.
    for foreign in [
        "00 A4 04 00 0C A0 00 00 00 63 50 4B 43 53 2D 31 35 00", // PKCS#15
        "00 A4 04 00 0B E8 2B 06 01 04 01 81 C3 1F 02 01 00",    // sc-hsm
        "00 A4 04 00 07 A0 00 00 00 79 01 00 00",                // coolkey-like
    ] {
        assert_eq!(raw(&mut t, foreign).sw, StatusWord::FileNotFound, "{foreign}");
    }
    // SELECT with the 9-byte AID; the application property template.
    let r = raw(&mut t, "00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00");
    assert_eq!(r.sw, StatusWord::Success);
    assert_eq!(hex::encode_upper(&r.data), APT);
    // The Yubico version probe with Le = 3.
    let r = raw(&mut t, "00 FD 00 00 03");
    assert_eq!((r.sw, r.data.as_slice()), (StatusWord::Success, &VERSION[..]));
    assert_eq!(VERSION.len(), 3);
    // CCC (errors ignored), Discovery, Key History.
    let r = raw(&mut t, "00 CB 3F FF 05 5C 03 5F C1 07 00");
    assert_eq!(r.sw, StatusWord::FileNotFound);
    let r = raw(&mut t, "00 CB 3F FF 03 5C 01 7E 00");
    assert_eq!(r.sw, StatusWord::Success);
    assert_eq!(
        hex::encode_upper(&r.data),
        "7E124F0BA0000003080000100001005F2F024000"
    );
    assert_eq!(&r.data[2..], &DEFAULT_DISCOVERY[..]);
    let r = raw(&mut t, "00 CB 3F FF 05 5C 03 5F C1 0C 00");
    assert_eq!(r.sw, StatusWord::FileNotFound);
    // pkcs15: the CHUID, then every certificate.
    let r = raw(&mut t, "00 CB 3F FF 05 5C 03 5F C1 02 00");
    assert_eq!(r.sw, StatusWord::FileNotFound);
    for cert in ["5FC105", "5FC10A", "5FC10B", "5FC101", "5FC10D", "5FC120"] {
        let r = raw(&mut t, &format!("00 CB 3F FF 05 5C 03 {cert} 00"));
        assert_eq!(r.sw, StatusWord::FileNotFound, "{cert}");
    }
    // The PIN status query OpenSC's C_Login starts with.
    assert_eq!(
        raw(&mut t, "00 20 00 80").sw,
        StatusWord::VerificationFailed { retries: 3 }
    );
}

#[test]
fn opensc_reads_a_personalized_card() {
    let mut t = piv_card(1002);
    authenticate_default(&mut t);
    let chuid = hex("30 19 D4E739DA739CED39CE739D836858210842108421C84210C3EB
         34 10 00112233445566778899AABBCCDDEEFF 35 08 3230333030313031 3E 00 FE 00");
    let cert_der: Vec<u8> = std::iter::once(0x30)
        .chain([0x82, 0x03, 0x00])
        .chain((0..0x300u32).map(|i| (i * 7) as u8))
        .collect();
    let mut container = tlv(&[0x70], &cert_der);
    container.extend(hex("71 01 00 FE 00"));
    for (tag, value) in [("5FC102", &chuid), ("5FC105", &container)] {
        let mut data = tlv(&[0x5C], &hex(tag));
        data.extend(tlv(&[0x53], value));
        assert_eq!(
            send(&mut t, &cmd(0xDB, 0x3F, 0xFF, &data)).sw,
            StatusWord::Success
        );
    }
    // A new session: power cycle, then OpenSC's sequence.
    t.reset(vsc::transport::ResetKind::Cold).unwrap();
    assert_eq!(
        raw(&mut t, "00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00").sw,
        StatusWord::Success
    );
    let r = send_hex(&mut t, "00 CB 3F FF 05 5C 03 5F C1 02 00");
    assert_eq!(
        (r.sw, r.data.clone()),
        (StatusWord::Success, tlv(&[0x53], &chuid))
    );
    // The certificate object is longer than 256 bytes: 61xx, then GET RESPONSE.
    let first = raw(&mut t, "00 CB 3F FF 05 5C 03 5F C1 05 00");
    assert_eq!(first.data.len(), 256);
    assert!(matches!(first.sw, StatusWord::BytesRemaining(_)));
    let r = send_hex(&mut t, "00 CB 3F FF 05 5C 03 5F C1 05 00");
    assert_eq!(
        (r.sw, r.data.clone()),
        (StatusWord::Success, tlv(&[0x53], &container))
    );
    // The re-check of a later transaction: Discovery still answers.
    assert_eq!(raw(&mut t, "00 CB 3F FF 03 5C 01 7E 00").sw, StatusWord::Success);
}

#[test]
fn opensc_login_state_survives_reselect_and_logout_clears_it() {
    let mut t = piv_card(1003);
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    assert_eq!(raw(&mut t, "00 20 00 80").sw, StatusWord::Success);
    assert_eq!(
        raw(&mut t, "00 A4 04 00 09 A0 00 00 03 08 00 00 10 00 00").sw,
        StatusWord::Success
    );
    assert_eq!(raw(&mut t, "00 20 00 80").sw, StatusWord::Success);
    assert_eq!(raw(&mut t, "00 20 FF 80").sw, StatusWord::Success);
    assert_eq!(
        raw(&mut t, "00 20 00 80").sw,
        StatusWord::VerificationFailed { retries: 3 }
    );
}

#[test]
fn opensc_get_challenge_with_p1_zero() {
    let mut t = piv_card(1004);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let r = raw(&mut t, "00 87 00 9B 04 7C 02 81 00 00");
        assert_eq!(r.sw, StatusWord::Success);
        assert_eq!(&r.data[..4], &[0x7C, 0x0A, 0x81, 0x08]);
        seen.push(r.data[4..].to_vec());
    }
    assert!(seen[0] != seen[1] && seen[1] != seen[2]);
}

#[test]
fn yubico_piv_tool_start_up() {
    let mut t = card(1005);
    let r = raw(&mut t, "00 A4 04 00 05 A0 00 00 03 08");
    assert_eq!(
        (r.sw, hex::encode_upper(&r.data)),
        (StatusWord::Success, APT.to_string())
    );
    // _ykpiv_verify(state, NULL, 0): VERIFY with Le 00 and no data.
    assert_eq!(
        raw(&mut t, "00 20 00 80 00").sw,
        StatusWord::VerificationFailed { retries: 3 }
    );
    let r = raw(&mut t, "00 FD 00 00 00");
    assert_eq!((r.sw, r.data), (StatusWord::Success, vec![5, 4, 3]));
    let r = raw(&mut t, "00 F8 00 00 00");
    assert_eq!(
        (r.sw, r.data),
        (StatusWord::Success, 1005u32.to_be_bytes().to_vec())
    );
}

#[test]
fn yubico_piv_tool_authenticates_with_the_default_3des_key() {
    let v = vectors(include_str!("vectors/piv_management_key.txt"));
    let key = &v["tdes_default_key"];
    let mut t = piv_card(1006);
    // 00 87 03 9B 04 7C 02 80 00: the card's encrypted witness.
    let r = raw(&mut t, "00 87 03 9B 04 7C 02 80 00");
    assert_eq!(r.sw, StatusWord::Success);
    assert_eq!(&r.data[..4], &[0x7C, 0x0A, 0x80, 0x08]);
    let witness = block_decrypt(key, &r.data[4..12]);
    // The host's answer with its challenge: the vector's plaintext.
    let mut data = hex("7C 14 80 08");
    data.extend(&witness);
    data.extend(hex("81 08"));
    data.extend(&v["tdes_plain"]);
    let r = send(&mut t, &cmd(0x87, 0x03, 0x9B, &data));
    assert_eq!(r.sw, StatusWord::Success);
    assert_eq!(r.data[..4], [0x7C, 0x0A, 0x82, 0x08]);
    assert_eq!(r.data[4..].to_vec(), v["tdes_cipher"]);
}

#[test]
fn yubico_piv_tool_generates_p256_in_9a_and_imports_a_certificate() {
    let mut t = piv_card(1007);
    authenticate_default(&mut t);
    let reply = generate(&mut t, 0x9A, 0x11);
    // ykpiv_util_generate_key reads the point at fixed offsets.
    assert_eq!(reply.len(), 5 + 65);
    assert_eq!(&reply[..5], &[0x7F, 0x49, 0x43, 0x86, 0x41]);
    assert_eq!(reply[5], 0x04);
    let public = p256_public(&reply);
    // ykpiv_util_write_cert: 70 L cert 71 01 00 FE 00, chained PUT DATA.
    let cert: Vec<u8> = (0..700u32).map(|i| (i % 251) as u8).collect();
    let mut container = tlv(&[0x70], &cert);
    container.extend(hex("71 01 00 FE 00"));
    let mut data = hex("5C 03 5F C1 05");
    data.extend(tlv(&[0x53], &container));
    assert_eq!(
        send(&mut t, &cmd(0xDB, 0x3F, 0xFF, &data)).sw,
        StatusWord::Success
    );
    let r = send_hex(&mut t, "00 CB 3F FF 05 5C 03 5F C1 05 00");
    assert_eq!(r.data, tlv(&[0x53], &container));
    // The key signs after the PIN (yubico-piv-tool -a verify-pin -a sign).
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    let hash = Sha256::digest(b"to be signed");
    let r = general_authenticate(&mut t, 0x11, 0x9A, 0x81, &hash);
    assert_eq!(r.sw, StatusWord::Success);
    let sig = DerSignature::try_from(dyn_auth(&r.data, 0x82).as_slice()).unwrap();
    VerifyingKey::from(public).verify_prehash(&hash, &sig).unwrap();
    // A new key leaves the certificate alone.
    generate(&mut t, 0x9A, 0x11);
    let r = send_hex(&mut t, "00 CB 3F FF 05 5C 03 5F C1 05 00");
    assert_eq!(r.data, tlv(&[0x53], &container));
}

#[test]
fn yubico_piv_tool_imports_an_rsa_key_with_crt_values() {
    let key = test_rsa_key(21);
    let mut t = piv_card(1008);
    assert_eq!(
        import_rsa(&mut t, 0x9D, &key, &[]),
        StatusWord::SecurityStatusNotSatisfied
    );
    authenticate_default(&mut t);
    // Chained: 5 × (3 + 128) bytes, PIN policy "once", touch "never".
    assert_eq!(
        import_rsa(&mut t, 0x9D, &key, &hex("AA 01 02 AB 01 01")),
        StatusWord::Success
    );
    // The imported key signs a PKCS#1 v1.5 block the host padded.
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    let hash = Sha256::digest(b"message");
    let mut digest_info = hex("3031300d060960864801650304020105000420");
    digest_info.extend_from_slice(&hash);
    let mut block = vec![0x00, 0x01];
    block.resize(256 - digest_info.len() - 1, 0xFF);
    block.push(0x00);
    block.extend(&digest_info);
    let r = general_authenticate(&mut t, 0x07, 0x9D, 0x81, &block);
    assert_eq!(r.sw, StatusWord::Success);
    let sig = dyn_auth(&r.data, 0x82);
    assert_eq!(sig.len(), 256);
    key.to_public_key()
        .verify(Pkcs1v15Sign::new_unprefixed(), &digest_info, &sig)
        .unwrap();
}

#[test]
fn yubico_piv_tool_pin_actions_and_status() {
    let mut t = piv_card(1009);
    // verify-pin, change-pin, then verify with the new one.
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    let mut data = padded(b"123456");
    data.extend(padded(b"654321"));
    assert_eq!(
        send(&mut t, &cmd(0x24, 0x00, 0x80, &data)).sw,
        StatusWord::Success
    );
    assert_eq!(
        verify_pin(&mut t, b"123456"),
        StatusWord::VerificationFailed { retries: 2 }
    );
    assert_eq!(verify_pin(&mut t, b"654321"), StatusWord::Success);
    // change-puk.
    let mut data = padded(b"12345678");
    data.extend(padded(b"87654321"));
    assert_eq!(
        send(&mut t, &cmd(0x24, 0x00, 0x81, &data)).sw,
        StatusWord::Success
    );
    // status: version, serial, CHUID, CCC, 24 certificate slots, PIN tries.
    assert_eq!(raw(&mut t, "00 FD 00 00 00").data, vec![5, 4, 3]);
    assert_eq!(raw(&mut t, "00 F8 00 00 00").data, 1009u32.to_be_bytes().to_vec());
    for tag in ["5FC102", "5FC107"] {
        assert_eq!(
            send_hex(&mut t, &format!("00 CB 3F FF 05 5C 03 {tag} 00")).sw,
            StatusWord::FileNotFound
        );
    }
    let slots = ["5FC105", "5FC10A", "5FC10B", "5FC101"]
        .into_iter()
        .map(String::from)
        .chain((0x0D..=0x20).map(|i| format!("5FC1{i:02X}")));
    for tag in slots {
        assert_eq!(
            send_hex(&mut t, &format!("00 CB 3F FF 05 5C 03 {tag} 00")).sw,
            StatusWord::FileNotFound
        );
    }
    assert_eq!(raw(&mut t, "00 20 00 80 00").sw, StatusWord::Success);
}
