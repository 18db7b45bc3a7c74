//! Shared by the issuance tests: an engine over the shipped profiles with
//! the in-memory stand-ins, blank software cards, records, and the checks a
//! personalized card must pass.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use keyserver::issue::testing::{issue_card, EventLog, MemoryAudit, MemoryEscrow, RsaPool, Sealed, TestKeys};
use keyserver::issue::Engine;
use keyserver::ports::{CardOutcome, CardRequest, Finished, IssuerKeys, RsaKeySource};
use keyserver::profile::Profile;
use keyserver::record::Record;
use keyserver::script::Reply;
use rand::rngs::StdRng;
use rand::SeedableRng;
use vsc::card::blank::BlankCard;
use vsc::card::{LifeCycle, SoftCard, ISD_AID};
use vsc::codec::{CommandApdu, ResponseApdu, StatusWord, TlvRef};
use vsc::file::{Protector, Unlock, Vsc};
use vsc::scp03::{HostSession, InitializeUpdate, InitializeUpdateResponse, SecurityLevel, StaticKeys};
use vsc::secret::AesKey;
use vsc::transport::{exchange, CardTransport, InProcess};

pub type Card = InProcess<SoftCard>;

pub fn profiles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles")
}

pub struct Rig {
    pub engine: Engine,
    pub keys: Arc<TestKeys>,
    pub escrow: Arc<MemoryEscrow>,
    pub audit: Arc<MemoryAudit>,
    pub log: EventLog,
}

/// A pool of `n` RSA-2048 keys of its own (a key is never used for two
/// cards); keys are generated once per test binary, under a lock.
pub fn rsa_pool(n: usize) -> RsaPool {
    static KEYS: OnceLock<std::sync::Mutex<Vec<rsa::RsaPrivateKey>>> = OnceLock::new();
    let mut keys = KEYS.get_or_init(Default::default).lock().unwrap();
    while keys.len() < n {
        keys.push(keyserver::issue::testing::GeneratedRsa.rsa2048().unwrap());
    }
    RsaPool::from_keys(keys.drain(..n).collect())
}

pub fn rig_with(rsa: impl RsaKeySource + 'static) -> Rig {
    let log = EventLog::default();
    let keys = Arc::new(TestKeys::new().unwrap());
    let escrow = Arc::new(MemoryEscrow::new(log.clone()));
    let audit = Arc::new(MemoryAudit::default());
    let engine = Engine::from_dir(
        &profiles_dir(),
        keys.clone(),
        escrow.clone(),
        audit.clone(),
        Arc::new(rsa),
    )
    .unwrap();
    Rig {
        engine,
        keys,
        escrow,
        audit,
        log,
    }
}

/// A rig whose RSA source holds `rsa_keys` keys.
pub fn rig(rsa_keys: usize) -> Rig {
    rig_with(rsa_pool(rsa_keys))
}

fn stock_kek() -> Protector {
    Protector::Kek {
        key_id: "stock/1".into(),
        key: AesKey::from_slice(&[9; 32]).unwrap(),
    }
}

/// A blank card of stock `default` (GP test keys, KVN 01), powered.
pub fn blank(serial: u32) -> Card {
    let vsc = BlankCard::new(serial)
        .unwrap()
        .build(&stock_kek(), &mut StdRng::seed_from_u64(u64::from(serial)))
        .unwrap();
    InProcess::insert(SoftCard::new(vsc).unwrap())
}

/// A blank card of another stock: its own transport keys.
pub fn foreign_blank(serial: u32) -> Card {
    let mut b = BlankCard::new(serial).unwrap();
    let k = || AesKey::from_slice(&[0x77; 16]).unwrap();
    b.keys = StaticKeys::new(k(), k(), k()).unwrap();
    let vsc = b.build(&stock_kek(), &mut StdRng::seed_from_u64(1)).unwrap();
    InProcess::insert(SoftCard::new(vsc).unwrap())
}

pub fn record(id: &str, pairs: &[(&str, &str)]) -> Record {
    Record {
        id: id.into(),
        fields: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
    }
}

pub fn badge_record(n: u32) -> Record {
    record(
        &format!("badge-{n}"),
        &[
            ("given_name", "Ada"),
            ("surname", "Lovelace"),
            ("email", "ada@example.org"),
            ("employee_id", &format!("{:06}", 1000 + n)),
            ("department", "Analytics"),
            ("street", "12 St James's Square"),
            ("city", "London"),
            ("account", "GB33BUKB20201555555555"),
        ],
    )
}

pub fn piv_record(n: u32) -> Record {
    record(
        &format!("piv-{n}"),
        &[
            ("given_name", "Grace"),
            ("surname", "Hopper"),
            ("email", "grace@example.org"),
            ("employee_id", &format!("{:05}", 500 + n)),
            ("pin", "24681357"),
        ],
    )
}

pub fn request(card: &Card, profile: &str, record: Record) -> CardRequest {
    CardRequest {
        request_id: format!("req-{}", record.id),
        station: "desk-1".into(),
        reader: "sim 0".into(),
        atr: card.atr(),
        job: "job-1".into(),
        profile: profile.into(),
        stock: "default".into(),
        record,
    }
}

/// A cold reset, as a station gives a card it is done with.
pub fn reset(t: &mut Card) {
    t.reset(vsc::transport::ResetKind::Cold).unwrap();
}

pub fn send(t: &mut Card, c: &CommandApdu) -> ResponseApdu {
    exchange(t, c, true).unwrap()
}

pub fn cmd(cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8]) -> CommandApdu {
    let c = CommandApdu::new(cla, ins, p1, p2);
    let c = if data.is_empty() {
        c
    } else {
        c.with_data(data.to_vec()).unwrap()
    };
    c.with_ne(256).unwrap()
}

pub fn select_piv(t: &mut Card) {
    let r = send(t, &cmd(0x00, 0xA4, 0x04, 0x00, &[0xA0, 0x00, 0x00, 0x03, 0x08]));
    assert_eq!(r.sw, StatusWord::Success);
}

pub fn verify_pin(t: &mut Card, pin: &[u8]) -> StatusWord {
    let mut p = pin.to_vec();
    p.resize(8, 0xFF);
    send(t, &cmd(0x00, 0x20, 0x00, 0x80, &p)).sw
}

/// GET DATA of a PIV object: the value inside `53`, or the status word.
pub fn get_object(t: &mut Card, tag: u32) -> Result<Vec<u8>, StatusWord> {
    let tb = tag.to_be_bytes();
    let r = send(
        t,
        &cmd(0x00, 0xCB, 0x3F, 0xFF, &[0x5C, 0x03, tb[1], tb[2], tb[3]]),
    );
    if r.sw != StatusWord::Success {
        return Err(r.sw);
    }
    Ok(TlvRef::parse_single(&r.data).unwrap().value.to_vec())
}

/// The public key objects of a slot from GET METADATA (tag `04`).
pub fn metadata_public_key(t: &mut Card, slot: u8) -> Result<Vec<u8>, StatusWord> {
    let r = send(t, &cmd(0x00, 0xF7, 0x00, slot, &[]));
    if r.sw != StatusWord::Success {
        return Err(r.sw);
    }
    let objs = TlvRef::parse_all(&r.data).unwrap();
    Ok(objs.iter().find(|o| o.tag.raw() == 0x04).unwrap().value.to_vec())
}

/// Opens an SCP03 session with key set `kvn` on the ISD (after a reset).
pub fn open_scp(t: &mut Card, kvn: u8, keys: &StaticKeys) -> Result<HostSession, StatusWord> {
    reset(t);
    let r = send(t, &cmd(0x00, 0xA4, 0x04, 0x00, ISD_AID));
    assert_eq!(r.sw, StatusWord::Success);
    let hc = [0x3C; 8];
    let r = send(t, &InitializeUpdate::new(kvn, hc).to_command());
    if r.sw != StatusWord::Success {
        return Err(r.sw);
    }
    let iu = InitializeUpdateResponse::from_response(&r).unwrap();
    let (ea, s) = HostSession::open(keys, hc, &iu, SecurityLevel::All, Some(ISD_AID)).unwrap();
    let r = send(t, &ea);
    if r.sw != StatusWord::Success {
        return Err(r.sw);
    }
    Ok(s)
}

/// The sealed master VSC of a card, opened with the archive KEK.
pub fn master_of(rig: &Rig, serial: u32) -> (Sealed, Vsc) {
    let sealed = rig
        .escrow
        .sealed()
        .into_iter()
        .find(|s| s.serial == serial)
        .expect("the card's master VSC was sealed");
    let (id, kek) = rig.keys.archive_kek();
    let vsc = Vsc::open(
        &sealed.bytes,
        &Unlock::Kek {
            key_id: id.into(),
            key: kek.clone(),
        },
    )
    .unwrap();
    (sealed, vsc)
}

/// Issues `card` with employee-badge record `n` through the rig's engine;
/// `tamper` may change each round trip's reply before the engine sees it.
pub fn issue_badge(rig: &Rig, card: &mut Card, n: u32, tamper: impl FnMut(u32, &mut Reply)) -> Finished {
    let req = request(card, "employee-badge", badge_record(n));
    issue_card(&rig.engine, req, card, tamper)
}

pub fn issued(f: &Finished) -> bool {
    matches!(f.outcome, CardOutcome::Issued)
}

pub fn void_reason(f: &Finished) -> &str {
    match &f.outcome {
        CardOutcome::Void { reason } => reason,
        CardOutcome::Issued => panic!("the card was issued, expected void"),
    }
}

/// Verifies a certificate's signature with the issuer CA's key, and returns
/// its SubjectPublicKeyInfo (DER).
pub fn check_chain(cert_der: &[u8], ca_der: &[u8]) -> Vec<u8> {
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).unwrap();
    cert.verify_signature(Some(ca.public_key()))
        .expect("the certificate chains to the issuer CA");
    assert_eq!(cert.issuer(), ca.subject());
    cert.public_key().raw.to_vec()
}

/// The SPKI of a GET METADATA / GENERATE public key (`86` point or `81 n
/// 82 e`).
pub fn spki_of_public_objects(objects: &[u8]) -> Vec<u8> {
    use rsa::pkcs8::EncodePublicKey;
    let objs = TlvRef::parse_all(objects).unwrap();
    let find = |t: u32| objs.iter().find(|o| o.tag.raw() == t).map(|o| o.value);
    if let Some(point) = find(0x86) {
        let k = p256::PublicKey::from_sec1_bytes(point).unwrap();
        return k.to_public_key_der().unwrap().as_bytes().to_vec();
    }
    let n = rsa::BigUint::from_bytes_be(find(0x81).unwrap());
    let e = rsa::BigUint::from_bytes_be(find(0x82).unwrap());
    rsa::RsaPublicKey::new(n, e)
        .unwrap()
        .to_public_key_der()
        .unwrap()
        .as_bytes()
        .to_vec()
}

/// The certificate DER inside a PIV certificate object (`70 … 71 01 00 FE 00`).
pub fn certificate_der(object: &[u8]) -> Vec<u8> {
    let objs = TlvRef::parse_all(object).unwrap();
    assert_eq!(objs.len(), 3);
    assert_eq!(objs[1].value, [0x00]);
    objs[0].value.to_vec()
}

pub fn cert_object_tag(slot: u8) -> u32 {
    keyserver::profile::certificate_object(slot).unwrap()
}

/// Everything an issued card must be: certificates chained to the CA and
/// matching the card's public keys; escrowed keys equal to the master
/// VSC's; PIN verifies; SCP03 keys rotated; SECURED.
pub fn verify_issued(rig: &Rig, card: &mut Card, profile: &Profile, f: &Finished, pin: &[u8]) {
    assert!(issued(f), "{:?}", f.outcome);
    let serial = f.serial.unwrap();
    // The station is done with the card: a reset closes the session.
    reset(card);
    assert!(f.round_trips <= 3, "{} round trips", f.round_trips);
    assert_eq!(card.card().life_cycle(), LifeCycle::Secured);
    let (sealed, master) = master_of(rig, serial);
    assert_eq!(f.sealed.as_ref(), Some(&sealed.receipt));
    let h = master.header();
    assert_eq!(h.label, format!("VSC {serial:08}"));
    assert_eq!(h.card_type, profile.id);
    assert_eq!(h.attributes.origin, vsc::file::Origin::Master);
    assert_eq!(h.attributes.chip_serials, vec![serial.to_be_bytes().to_vec()]);
    let mut master_card = InProcess::insert(SoftCard::new(master).unwrap());
    assert_eq!(master_card.card().life_cycle(), LifeCycle::Secured);

    let ca = rig.keys.issuer().ca_certificate_der().to_vec();
    select_piv(card);
    select_piv(&mut master_card);
    for slot in &profile.slots {
        let object = get_object(card, cert_object_tag(slot.slot)).unwrap();
        let spki = check_chain(&certificate_der(&object), &ca);
        let card_key = metadata_public_key(card, slot.slot).unwrap();
        assert_eq!(spki_of_public_objects(&card_key), spki, "slot {:02X}", slot.slot);
        match slot.policy {
            keyserver::profile::KeyPolicy::Escrow => {
                assert_eq!(
                    metadata_public_key(&mut master_card, slot.slot).unwrap(),
                    card_key
                );
                assert_eq!(
                    get_object(&mut master_card, cert_object_tag(slot.slot)).unwrap(),
                    object
                );
            }
            keyserver::profile::KeyPolicy::Card => {
                // Never on the master VSC.
                assert_eq!(
                    metadata_public_key(&mut master_card, slot.slot),
                    Err(StatusWord::ReferencedDataNotFound)
                );
            }
        }
    }
    // The PIN (record or returned random) verifies, on card and master.
    assert_eq!(verify_pin(card, pin), StatusWord::Success);
    assert_eq!(verify_pin(&mut master_card, pin), StatusWord::Success);
    // The SCP03 keys were rotated: the card's own keys open a session, the
    // stock's transport keys are refused.
    let card_keys = rig.keys.card_keys(&card.card().identity().kdd()).unwrap();
    assert!(open_scp(card, card_keys.kvn, &card_keys.keys).is_ok());
    let transport = rig.keys.transport_keys("default").unwrap();
    assert_eq!(
        open_scp(card, transport.kvn, &transport.keys).err(),
        Some(StatusWord::ReferencedDataNotFound)
    );
}

/// One RSA-2048 key handed out again and again: only for tests where key
/// uniqueness does not matter (faults), never a real key source.
pub struct ReusedRsa(rsa::RsaPrivateKey);

impl ReusedRsa {
    pub fn new() -> Self {
        ReusedRsa(rsa_pool(1).rsa2048().unwrap())
    }
}

impl RsaKeySource for ReusedRsa {
    fn rsa2048(&self) -> Result<rsa::RsaPrivateKey, keyserver::ports::KeyError> {
        Ok(self.0.clone())
    }
}
