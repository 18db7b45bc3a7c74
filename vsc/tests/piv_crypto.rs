//! The PIV keys at work: signatures verified with the public keys, RSA
//! decryption, ECDH, the PIN policy of each slot, the wire forms of the
//! long RSA exchange.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod piv_support;

use p256::ecdsa::signature::hazmat::PrehashVerifier;
use p256::ecdsa::{DerSignature, VerifyingKey};
use piv_support::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rsa::{Pkcs1v15Encrypt, Pkcs1v15Sign};
use sha2::{Digest, Sha256, Sha384};
use vsc::codec::StatusWord;
use vsc::transport::CardTransport;

fn sign_p256(t: &mut Card, slot: u8, hash: &[u8]) -> Result<DerSignature, StatusWord> {
    let r = general_authenticate(t, 0x11, slot, 0x81, hash);
    if r.sw != StatusWord::Success {
        return Err(r.sw);
    }
    Ok(DerSignature::try_from(dyn_auth(&r.data, 0x82).as_slice()).unwrap())
}

/// A PKCS#1 v1.5 signature block for SHA-256 (what OpenSC pads on the host).
fn pkcs1_block(message: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut digest_info = hex("3031300d060960864801650304020105000420");
    digest_info.extend_from_slice(&Sha256::digest(message));
    let mut block = vec![0x00, 0x01];
    block.resize(256 - digest_info.len() - 1, 0xFF);
    block.push(0x00);
    block.extend(&digest_info);
    (block, digest_info)
}

#[test]
fn p256_signatures_with_9a_verify() {
    let mut t = piv_card(2001);
    authenticate_default(&mut t);
    let public = VerifyingKey::from(p256_public(&generate(&mut t, 0x9A, 0x11)));
    // 9A needs the PIN once per session.
    let hash = Sha256::digest(b"hello");
    assert_eq!(
        sign_p256(&mut t, 0x9A, &hash).unwrap_err(),
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    for msg in [&b"one"[..], b"two", b"three"] {
        let hash = Sha256::digest(msg);
        let sig = sign_p256(&mut t, 0x9A, &hash).unwrap();
        public.verify_prehash(&hash, &sig).unwrap();
    }
    // A longer hash is truncated to its leftmost 32 bytes, a shorter one is
    // read as an integer (FIPS 186).
    let long = Sha384::digest(b"long");
    let sig = sign_p256(&mut t, 0x9A, &long).unwrap();
    public.verify_prehash(&long[..32], &sig).unwrap();
    let short = [0x12u8; 20];
    let sig = sign_p256(&mut t, 0x9A, &short).unwrap();
    public.verify_prehash(&pad_left(&short, 32), &sig).unwrap();
    // The session ends with the card's power.
    t.reset(vsc::transport::ResetKind::Warm).unwrap();
    select_piv(&mut t);
    assert_eq!(
        sign_p256(&mut t, 0x9A, &hash).unwrap_err(),
        StatusWord::SecurityStatusNotSatisfied
    );
}

#[test]
fn rsa_2048_raw_signature_with_9d_verifies() {
    let mut t = piv_card(2002);
    authenticate_default(&mut t);
    let public = rsa_public(&generate(&mut t, 0x9D, 0x07));
    assert_eq!(modulus_len(&public), 256);
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    let (block, digest_info) = pkcs1_block(b"signed by 9D");
    let r = general_authenticate(&mut t, 0x07, 0x9D, 0x81, &block);
    assert_eq!(r.sw, StatusWord::Success);
    assert_eq!(&r.data[..8], &hex("7C 82 01 04 82 82 01 00")[..]);
    let sig = dyn_auth(&r.data, 0x82);
    public
        .verify(Pkcs1v15Sign::new_unprefixed(), &digest_info, &sig)
        .unwrap();
}

#[test]
fn rsa_general_authenticate_arrives_chained_and_leaves_through_61xx() {
    let mut t = piv_card(2003);
    authenticate_default(&mut t);
    let public = rsa_public(&generate(&mut t, 0x9E, 0x07));
    let (block, digest_info) = pkcs1_block(b"card authentication");
    let mut data = hex("7C 82 01 06 82 00 81 82 01 00");
    data.extend(&block);
    assert_eq!(data.len(), 266);
    // OpenSC's two parts: 255 bytes with CLA 10, then the rest with Le 00.
    let mut first = hex("10 87 07 9E FF");
    first.extend(&data[..255]);
    assert_eq!(raw(&mut t, &hex::encode(&first)).sw, StatusWord::Success);
    let mut last = hex("00 87 07 9E 0B");
    last.extend(&data[255..]);
    last.push(0x00);
    let r = raw(&mut t, &hex::encode(&last));
    assert_eq!(r.data.len(), 256);
    assert_eq!(r.sw, StatusWord::BytesRemaining(8));
    let rest = raw(&mut t, "00 C0 00 00 08");
    assert_eq!(rest.sw, StatusWord::Success);
    let mut reply = r.data;
    reply.extend(rest.data);
    assert_eq!(reply.len(), 264);
    // 9E needs no PIN.
    public
        .verify(
            Pkcs1v15Sign::new_unprefixed(),
            &digest_info,
            &dyn_auth(&reply, 0x82),
        )
        .unwrap();
}

#[test]
fn rsa_decipher_with_9d() {
    let key = test_rsa_key(22);
    let mut t = piv_card(2004);
    authenticate_default(&mut t);
    assert_eq!(import_rsa(&mut t, 0x9D, &key, &[]), StatusWord::Success);
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    let secret = b"a session key, 32 bytes of it...";
    let ciphertext = key
        .to_public_key()
        .encrypt(&mut StdRng::seed_from_u64(3), Pkcs1v15Encrypt, secret)
        .unwrap();
    let r = general_authenticate(&mut t, 0x07, 0x9D, 0x81, &ciphertext);
    assert_eq!(r.sw, StatusWord::Success);
    // The card returns the padded block; the host removes the padding.
    let block = dyn_auth(&r.data, 0x82);
    assert_eq!(block.len(), 256);
    assert_eq!(&block[..2], &[0x00, 0x02]);
    let zero = block[2..].iter().position(|b| *b == 0).unwrap() + 2;
    assert_eq!(&block[zero + 1..], secret);
    // An input not below the modulus is refused.
    let r = general_authenticate(&mut t, 0x07, 0x9D, 0x81, &[0xFF; 256]);
    assert_eq!(r.sw, StatusWord::IncorrectData);
    let r = general_authenticate(&mut t, 0x07, 0x9D, 0x81, &[0x01; 255]);
    assert_eq!(r.sw, StatusWord::IncorrectData);
}

#[test]
fn ecdh_with_9d() {
    let mut t = piv_card(2005);
    authenticate_default(&mut t);
    let card_public = p256_public(&generate(&mut t, 0x9D, 0x11));
    let ours = test_p256_key(7);
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let our_point = ours.public_key().to_encoded_point(false);
    assert_eq!(
        general_authenticate(&mut t, 0x11, 0x9D, 0x85, our_point.as_bytes()).sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    let r = general_authenticate(&mut t, 0x11, 0x9D, 0x85, our_point.as_bytes());
    assert_eq!(r.sw, StatusWord::Success);
    assert_eq!(&r.data[..4], &[0x7C, 0x22, 0x82, 0x20]);
    let expected = p256::ecdh::diffie_hellman(ours.to_nonzero_scalar(), card_public.as_affine());
    assert_eq!(dyn_auth(&r.data, 0x82), expected.raw_secret_bytes().to_vec());
    // Not a point, a compressed point, a point off the curve.
    let mut off_curve = our_point.as_bytes().to_vec();
    off_curve[64] ^= 1;
    let compressed = ours.public_key().to_encoded_point(true);
    for bad in [&[0x04u8; 10][..], compressed.as_bytes(), &off_curve] {
        assert_eq!(
            general_authenticate(&mut t, 0x11, 0x9D, 0x85, bad).sw,
            StatusWord::IncorrectData
        );
    }
    // RSA keys do not agree keys.
    assert_eq!(
        import_rsa(&mut t, 0x82, &test_rsa_key(23), &[]),
        StatusWord::Success
    );
    assert_eq!(
        general_authenticate(&mut t, 0x07, 0x82, 0x85, our_point.as_bytes()).sw,
        StatusWord::IncorrectData
    );
}

#[test]
fn the_signature_key_needs_the_pin_before_every_use() {
    let mut t = piv_card(2006);
    authenticate_default(&mut t);
    let public = VerifyingKey::from(p256_public(&generate(&mut t, 0x9C, 0x11)));
    let hash = Sha256::digest(b"document");
    assert_eq!(
        sign_p256(&mut t, 0x9C, &hash).unwrap_err(),
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    // A malformed request does not spend the verification.
    assert_eq!(
        sign_p256(&mut t, 0x9C, &[0u8; 65]).unwrap_err(),
        StatusWord::IncorrectData
    );
    let sig = sign_p256(&mut t, 0x9C, &hash).unwrap();
    public.verify_prehash(&hash, &sig).unwrap();
    assert_eq!(
        sign_p256(&mut t, 0x9C, &hash).unwrap_err(),
        StatusWord::SecurityStatusNotSatisfied
    );
    // The PIN is still verified for the once-per-session keys.
    assert_eq!(raw(&mut t, "00 20 00 80").sw, StatusWord::Success);
    // OpenSC's context-specific login: VERIFY just before each signature.
    for _ in 0..2 {
        assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
        public
            .verify_prehash(&hash, &sign_p256(&mut t, 0x9C, &hash).unwrap())
            .unwrap();
    }
    // The signature key does not agree keys.
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    let point = test_p256_key(8).public_key();
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    assert_eq!(
        general_authenticate(&mut t, 0x11, 0x9C, 0x85, point.to_encoded_point(false).as_bytes()).sw,
        StatusWord::ConditionsOfUseNotSatisfied
    );
}

#[test]
fn key_policies_override_the_slot_defaults() {
    let mut t = piv_card(2007);
    authenticate_default(&mut t);
    // 9E with PIN "always", 9A with PIN "never".
    assert_eq!(
        import_p256(&mut t, 0x9E, &test_p256_key(9), &hex("AA 01 03")),
        StatusWord::Success
    );
    assert_eq!(
        import_p256(&mut t, 0x9A, &test_p256_key(10), &hex("AA 01 01")),
        StatusWord::Success
    );
    let hash = [0x33u8; 32];
    assert!(sign_p256(&mut t, 0x9A, &hash).is_ok());
    assert_eq!(
        sign_p256(&mut t, 0x9E, &hash).unwrap_err(),
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    let public = VerifyingKey::from(test_p256_key(9).public_key());
    public
        .verify_prehash(&hash, &sign_p256(&mut t, 0x9E, &hash).unwrap())
        .unwrap();
    assert_eq!(
        sign_p256(&mut t, 0x9E, &hash).unwrap_err(),
        StatusWord::SecurityStatusNotSatisfied
    );
}

#[test]
fn retired_slots_sign_and_wrong_algorithms_are_refused() {
    let mut t = piv_card(2008);
    authenticate_default(&mut t);
    let public = VerifyingKey::from(p256_public(&generate(&mut t, 0x95, 0x11)));
    assert_eq!(verify_pin(&mut t, b"123456"), StatusWord::Success);
    let hash = [0x44u8; 32];
    public
        .verify_prehash(&hash, &sign_p256(&mut t, 0x95, &hash).unwrap())
        .unwrap();
    // P1 is not the key's algorithm.
    assert_eq!(
        general_authenticate(&mut t, 0x07, 0x95, 0x81, &hash).sw,
        StatusWord::IncorrectData
    );
    assert_eq!(
        general_authenticate(&mut t, 0x14, 0x95, 0x81, &hash).sw,
        StatusWord::IncorrectData
    );
    // An empty slot; not a key reference.
    assert_eq!(
        general_authenticate(&mut t, 0x11, 0x82, 0x81, &hash).sw,
        StatusWord::ReferencedDataNotFound
    );
    assert_eq!(
        general_authenticate(&mut t, 0x11, 0x96, 0x81, &hash).sw,
        StatusWord::IncorrectP1P2
    );
    assert_eq!(
        general_authenticate(&mut t, 0x11, 0x9F, 0x81, &hash).sw,
        StatusWord::IncorrectP1P2
    );
}

#[test]
fn metadata_describes_keys_pins_and_the_management_key() {
    let mut t = piv_card(2009);
    let r = send_hex(&mut t, "00 F7 00 9B 00");
    assert_eq!(r.sw, StatusWord::Success);
    assert_eq!(
        hex::encode_upper(&r.data),
        "010103020200010501 01".replace(' ', "")
    );
    let r = send_hex(&mut t, "00 F7 00 80 00");
    assert_eq!(
        hex::encode_upper(&r.data),
        "0101FF050101060203 03".replace(' ', "")
    );
    assert_eq!(
        verify_pin(&mut t, b"000000"),
        StatusWord::VerificationFailed { retries: 2 }
    );
    let r = send_hex(&mut t, "00 F7 00 80 00");
    assert_eq!(
        hex::encode_upper(&r.data),
        "0101FF050101060203 02".replace(' ', "")
    );
    assert_eq!(
        send_hex(&mut t, "00 F7 00 9A 00").sw,
        StatusWord::ReferencedDataNotFound
    );
    assert_eq!(send_hex(&mut t, "00 F7 00 42 00").sw, StatusWord::IncorrectP1P2);
    authenticate_default(&mut t);
    let template = generate(&mut t, 0x9C, 0x11);
    let r = send_hex(&mut t, "00 F7 00 9C 00");
    assert_eq!(r.sw, StatusWord::Success);
    // Algorithm, policy (always, never), origin generated, the public key.
    let expected = hex("01 01 11 02 02 03 01 03 01 01");
    assert_eq!(&r.data[..10], &expected[..]);
    let public = &r.data[10..];
    assert_eq!(public[0], 0x04);
    assert_eq!(p256_public(&public[2..]), p256_public(&template));
    // An imported key says so.
    assert_eq!(
        import_rsa(&mut t, 0x9D, &test_rsa_key(24), &[]),
        StatusWord::Success
    );
    let r = send_hex(&mut t, "00 F7 00 9D 00");
    assert_eq!(&r.data[..10], &hex("01 01 07 02 02 02 01 03 01 02")[..]);
}
