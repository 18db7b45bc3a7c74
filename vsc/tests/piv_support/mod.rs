//! Helpers shared by the `piv*` integration tests: a blank card in process,
//! commands sent the way OpenSC and yubico-piv-tool send them (chained,
//! responses collected over 61xx), the management key's authentication and
//! keys known to the test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use vsc::card::blank::{BlankCard, GP_TEST_KEY};
use vsc::card::SoftCard;
use vsc::codec::{CommandApdu, ResponseApdu, StatusWord, TlvRef};
use vsc::file::{Protector, Vsc};
use vsc::scp03::{HostSession, InitializeUpdate, InitializeUpdateResponse, SecurityLevel, StaticKeys};
use vsc::secret::AesKey;
use vsc::transport::{exchange, CardTransport, InProcess};

pub type Card = InProcess<SoftCard>;

pub const DEFAULT_MGMT: [u8; 24] = [
    1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8,
];

pub fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace([' ', '\n'], "")).unwrap()
}

/// `name = hex` lines of a vector file; `#` starts a comment.
pub fn vectors(text: &str) -> BTreeMap<String, Vec<u8>> {
    text.lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.trim().to_string(), hex(v.trim()))
        })
        .collect()
}

fn kek() -> Protector {
    Protector::Kek {
        key_id: "stock/1".into(),
        key: AesKey::from_slice(&[9; 32]).unwrap(),
    }
}

pub fn blank_vsc(serial: u32) -> Vsc {
    BlankCard::new(serial)
        .unwrap()
        .build(&kek(), &mut StdRng::seed_from_u64(u64::from(serial)))
        .unwrap()
}

/// A blank card, powered, nothing selected but the ISD.
pub fn card(serial: u32) -> Card {
    InProcess::insert(SoftCard::with_seed(blank_vsc(serial), u64::from(serial)).unwrap())
}

/// A blank card with PIV selected as yubico-piv-tool selects it (RID only).
pub fn piv_card(serial: u32) -> Card {
    let mut t = card(serial);
    select_piv(&mut t);
    t
}

pub fn select_piv(t: &mut impl CardTransport) {
    let r = raw(t, "00 A4 04 00 05 A0 00 00 03 08");
    assert_eq!(r.sw, StatusWord::Success);
}

/// One APDU as bytes, no chaining, no GET RESPONSE.
pub fn raw(t: &mut impl CardTransport, hex_apdu: &str) -> ResponseApdu {
    ResponseApdu::parse(&t.transmit(&hex(hex_apdu)).unwrap()).unwrap()
}

/// A command as the PIV clients send it: chained in 255-byte parts, the
/// response collected over 61xx.
pub fn send(t: &mut impl CardTransport, cmd: &CommandApdu) -> ResponseApdu {
    exchange(t, cmd, true).unwrap()
}

/// A command given as hex bytes, sent through [`send`].
pub fn send_hex(t: &mut impl CardTransport, hex_apdu: &str) -> ResponseApdu {
    send(t, &CommandApdu::parse(&hex(hex_apdu)).unwrap())
}

/// `00 ins p1 p2 Lc data 00` (case 4 with Le 00, as OpenSC sends), or
/// case 2 without data.
pub fn cmd(ins: u8, p1: u8, p2: u8, data: &[u8]) -> CommandApdu {
    let c = CommandApdu::new(0x00, ins, p1, p2);
    let c = if data.is_empty() {
        c
    } else {
        c.with_data(data.to_vec()).unwrap()
    };
    c.with_ne(256).unwrap()
}

/// A PIN padded to 8 bytes with `FF`.
pub fn padded(pin: &[u8]) -> Vec<u8> {
    let mut v = pin.to_vec();
    v.resize(8, 0xFF);
    v
}

pub fn verify_pin(t: &mut impl CardTransport, pin: &[u8]) -> StatusWord {
    send(t, &cmd(0x20, 0x00, 0x80, &padded(pin))).sw
}

/// A BER length.
pub fn len_bytes(len: usize) -> Vec<u8> {
    match len {
        0..=0x7F => vec![len as u8],
        0x80..=0xFF => vec![0x81, len as u8],
        _ => vec![0x82, (len >> 8) as u8, len as u8],
    }
}

pub fn tlv(tag: &[u8], value: &[u8]) -> Vec<u8> {
    let mut v = tag.to_vec();
    v.extend(len_bytes(value.len()));
    v.extend_from_slice(value);
    v
}

/// The value of `tag` inside a `7C` dynamic authentication template.
pub fn dyn_auth(data: &[u8], tag: u8) -> Vec<u8> {
    let outer = TlvRef::parse_single(data).unwrap();
    assert_eq!(outer.tag.raw(), 0x7C, "{}", hex::encode_upper(data));
    outer
        .children()
        .unwrap()
        .into_iter()
        .find(|c| c.tag.raw() == u32::from(tag))
        .unwrap()
        .value
        .to_vec()
}

/// E(K, block) / D(K, block) with 3DES or AES, by key and block length.
pub fn block_encrypt(key: &[u8], block: &[u8]) -> Vec<u8> {
    crypt(key, block, true)
}

pub fn block_decrypt(key: &[u8], block: &[u8]) -> Vec<u8> {
    crypt(key, block, false)
}

fn crypt(key: &[u8], block: &[u8], encrypt: bool) -> Vec<u8> {
    use aes::cipher::generic_array::GenericArray;
    fn run<C: BlockEncrypt + BlockDecrypt + KeyInit>(key: &[u8], block: &[u8], encrypt: bool) -> Vec<u8> {
        let c = C::new_from_slice(key).unwrap();
        let mut b = GenericArray::clone_from_slice(block);
        if encrypt {
            c.encrypt_block(&mut b);
        } else {
            c.decrypt_block(&mut b);
        }
        b.to_vec()
    }
    match (key.len(), block.len()) {
        (24, 8) => run::<des::TdesEde3>(key, block, encrypt),
        (16, 16) => run::<aes::Aes128>(key, block, encrypt),
        (24, 16) => run::<aes::Aes192>(key, block, encrypt),
        (32, 16) => run::<aes::Aes256>(key, block, encrypt),
        other => panic!("no block cipher for {other:?}"),
    }
}

/// Mutual authentication with the management key, as yubico-piv-tool does
/// it; `Ok` carries the card's answer to the host challenge.
pub fn authenticate(t: &mut impl CardTransport, alg: u8, key: &[u8]) -> Result<(), StatusWord> {
    let block = if alg == 0x03 { 8 } else { 16 };
    let r = send(t, &cmd(0x87, alg, 0x9B, &hex("7C 02 80 00")));
    if r.sw != StatusWord::Success {
        return Err(r.sw);
    }
    let witness = block_decrypt(key, &dyn_auth(&r.data, 0x80));
    let challenge: Vec<u8> = (0..block as u8).map(|i| i.wrapping_mul(37) ^ 0x5A).collect();
    let mut inner = tlv(&[0x80], &witness);
    inner.extend(tlv(&[0x81], &challenge));
    let r = send(t, &cmd(0x87, alg, 0x9B, &tlv(&[0x7C], &inner)));
    if r.sw != StatusWord::Success {
        return Err(r.sw);
    }
    assert_eq!(dyn_auth(&r.data, 0x82), block_encrypt(key, &challenge));
    Ok(())
}

pub fn authenticate_default(t: &mut impl CardTransport) {
    authenticate(t, 0x03, &DEFAULT_MGMT).unwrap();
}

/// GENERATE ASYMMETRIC KEY PAIR; the reply data (`7F49 …`).
pub fn generate(t: &mut impl CardTransport, slot: u8, alg: u8) -> Vec<u8> {
    let r = send(t, &cmd(0x47, 0x00, slot, &[0xAC, 0x03, 0x80, 0x01, alg]));
    assert_eq!(r.sw, StatusWord::Success, "generate {alg:02X} in {slot:02X}");
    r.data
}

/// The public key in a `7F49` template (or a metadata `04` value).
pub fn public_objects(data: &[u8]) -> BTreeMap<u32, Vec<u8>> {
    let inner = match TlvRef::parse_single(data) {
        Ok(t) if t.tag.raw() == 0x7F49 => t.value,
        _ => data,
    };
    TlvRef::parse_all(inner)
        .unwrap()
        .into_iter()
        .map(|o| (o.tag.raw(), o.value.to_vec()))
        .collect()
}

pub fn p256_public(data: &[u8]) -> p256::PublicKey {
    p256::PublicKey::from_sec1_bytes(&public_objects(data)[&0x86]).unwrap()
}

pub fn rsa_public(data: &[u8]) -> RsaPublicKey {
    let o = public_objects(data);
    RsaPublicKey::new(
        BigUint::from_bytes_be(&o[&0x81]),
        BigUint::from_bytes_be(&o[&0x82]),
    )
    .unwrap()
}

/// An RSA-2048 key for the tests, from a seeded generator.
pub fn test_rsa_key(seed: u64) -> RsaPrivateKey {
    RsaPrivateKey::new(&mut StdRng::seed_from_u64(seed), 2048).unwrap()
}

/// A P-256 key for the tests.
pub fn test_p256_key(seed: u64) -> p256::SecretKey {
    p256::SecretKey::random(&mut StdRng::seed_from_u64(seed))
}

/// `v` left-padded with zeros to `len`.
pub fn pad_left(v: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len - v.len()];
    out.extend_from_slice(v);
    out
}

/// The data of IMPORT ASYMMETRIC KEY for an RSA-2048 key, as
/// yubico-piv-tool builds it (each CRT value padded to 128 bytes).
pub fn rsa_import_data(key: &RsaPrivateKey, policies: &[u8]) -> Vec<u8> {
    use rsa::traits::PrivateKeyParts;
    let p = &key.primes()[0];
    let q = &key.primes()[1];
    let values = [
        p.to_bytes_be(),
        q.to_bytes_be(),
        key.dp().unwrap().to_bytes_be(),
        key.dq().unwrap().to_bytes_be(),
        key.crt_coefficient().unwrap().to_bytes_be(),
    ];
    let mut data = Vec::new();
    for (i, v) in values.iter().enumerate() {
        data.extend(tlv(&[0x01 + i as u8], &pad_left(v, 128)));
    }
    data.extend_from_slice(policies);
    data
}

pub fn import_rsa(t: &mut impl CardTransport, slot: u8, key: &RsaPrivateKey, policies: &[u8]) -> StatusWord {
    send(t, &cmd(0xFE, 0x07, slot, &rsa_import_data(key, policies))).sw
}

pub fn import_p256(
    t: &mut impl CardTransport,
    slot: u8,
    key: &p256::SecretKey,
    policies: &[u8],
) -> StatusWord {
    let mut data = tlv(&[0x06], &key.to_bytes());
    data.extend_from_slice(policies);
    send(t, &cmd(0xFE, 0x11, slot, &data)).sw
}

/// GENERAL AUTHENTICATE `7C {82 00, op data}`.
pub fn general_authenticate(
    t: &mut impl CardTransport,
    alg: u8,
    slot: u8,
    op: u8,
    data: &[u8],
) -> ResponseApdu {
    let mut inner = vec![0x82, 0x00];
    inner.extend(tlv(&[op], data));
    send(t, &cmd(0x87, alg, slot, &tlv(&[0x7C], &inner)))
}

/// The modulus length of an RSA key in bytes.
pub fn modulus_len(key: &RsaPublicKey) -> usize {
    key.size()
}

// ------------------------------------------------------------------ SCP03

fn test_keys() -> StaticKeys {
    let k = || AesKey::from_slice(&GP_TEST_KEY).unwrap();
    StaticKeys::new(k(), k(), k()).unwrap()
}

/// Opens an SCP03 session with the card stock's keys (as the keyserver
/// does before personalizing).
pub fn open_scp03(t: &mut impl CardTransport, level: SecurityLevel) -> HostSession {
    let hc = [0x21; 8];
    let iu = InitializeUpdate::new(0x01, hc).to_command();
    let r = ResponseApdu::parse(&t.transmit(&iu.to_bytes()).unwrap()).unwrap();
    assert_eq!(r.sw, StatusWord::Success);
    let resp = InitializeUpdateResponse::from_response(&r).unwrap();
    let (ext_auth, session) = HostSession::open(&test_keys(), hc, &resp, level, None).unwrap();
    let r = ResponseApdu::parse(&t.transmit(&ext_auth.to_bytes()).unwrap()).unwrap();
    assert_eq!(r.sw, StatusWord::Success);
    session
}

/// One command through the session: wrapped, sent, unwrapped.
pub fn secured(t: &mut impl CardTransport, s: &mut HostSession, c: &CommandApdu) -> ResponseApdu {
    let w = s.wrap(c).unwrap();
    let r = exchange(t, &w.apdu, false).unwrap();
    s.unwrap(&w.expect, &r).unwrap()
}

/// Records every response a card gives, for the key-byte scan.
pub struct Recorder<T: CardTransport> {
    pub inner: T,
    pub responses: Vec<Vec<u8>>,
}

impl<T: CardTransport> Recorder<T> {
    pub fn new(inner: T) -> Self {
        Recorder {
            inner,
            responses: Vec::new(),
        }
    }
}

impl<T: CardTransport> CardTransport for Recorder<T> {
    fn transmit(&mut self, command: &[u8]) -> Result<Vec<u8>, vsc::transport::TransportError> {
        let r = self.inner.transmit(command)?;
        self.responses.push(r.clone());
        Ok(r)
    }

    fn reset(&mut self, kind: vsc::transport::ResetKind) -> Result<Vec<u8>, vsc::transport::TransportError> {
        self.inner.reset(kind)
    }

    fn atr(&self) -> Vec<u8> {
        self.inner.atr()
    }
}
