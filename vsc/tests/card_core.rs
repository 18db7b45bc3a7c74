//! The software card's dispatcher: class and length errors, SELECT, the
//! SCP03 session across applications, persistence.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rand::rngs::StdRng;
use rand::SeedableRng;
use vsc::card::blank::{BlankCard, GP_TEST_KEY};
use vsc::card::{gp_state, LifeCycle, SoftCard};
use vsc::codec::{CommandApdu, ResponseApdu, StatusWord};
use vsc::file::{Argon2Params, Protector, Unlock, Vsc};
use vsc::scp03::{HostSession, InitializeUpdate, InitializeUpdateResponse, SecurityLevel, StaticKeys};
use vsc::secret::{AesKey, SecretBytes};
use vsc::transport::{CardTransport, InProcess};

fn kek() -> Protector {
    Protector::Kek {
        key_id: "stock/1".into(),
        key: AesKey::from_slice(&[9; 32]).unwrap(),
    }
}

fn blank(serial: u32) -> Vsc {
    BlankCard::new(serial)
        .unwrap()
        .build(&kek(), &mut StdRng::seed_from_u64(1))
        .unwrap()
}

fn send(t: &mut impl CardTransport, hex_apdu: &str) -> ResponseApdu {
    let bytes = hex::decode(hex_apdu.replace(' ', "")).unwrap();
    ResponseApdu::parse(&t.transmit(&bytes).unwrap()).unwrap()
}

fn test_keys() -> StaticKeys {
    let k = || AesKey::from_slice(&GP_TEST_KEY).unwrap();
    StaticKeys::new(k(), k(), k()).unwrap()
}

fn open_session(t: &mut impl CardTransport, level: SecurityLevel) -> Result<HostSession, StatusWord> {
    let hc = [0x11; 8];
    let iu = InitializeUpdate::new(0x01, hc).to_command();
    let r = ResponseApdu::parse(&t.transmit(&iu.to_bytes()).unwrap()).unwrap();
    if !r.is_success() {
        return Err(r.sw);
    }
    let resp = InitializeUpdateResponse::from_response(&r).unwrap();
    let (ext_auth, session) = HostSession::open(&test_keys(), hc, &resp, level, None).unwrap();
    let r = ResponseApdu::parse(&t.transmit(&ext_auth.to_bytes()).unwrap()).unwrap();
    assert_eq!(r.sw, StatusWord::Success);
    Ok(session)
}

#[test]
fn class_length_and_selection_errors() {
    let mut t = InProcess::insert(SoftCard::with_seed(blank(1), 7).unwrap());
    assert_eq!(send(&mut t, "00A404").sw, StatusWord::WrongLength);
    assert_eq!(send(&mut t, "00A4040005A0000003").sw, StatusWord::WrongLength);
    assert_eq!(send(&mut t, "40A4040000").sw, StatusWord::ClassNotSupported);
    assert_eq!(send(&mut t, "FFA4040000").sw, StatusWord::ClassNotSupported);
    assert_eq!(
        send(&mut t, "01A4040000").sw,
        StatusWord::LogicalChannelNotSupported
    );
    // Foreign AIDs are not found (OpenSC's other drivers probe with theirs).
    assert_eq!(
        send(&mut t, "00A4040006D27600012401").sw,
        StatusWord::FileNotFound
    );
    assert_eq!(send(&mut t, "00A4040002A000").sw, StatusWord::FileNotFound);
    // PIV by its RID only, as yubico-piv-tool selects it.
    assert_eq!(send(&mut t, "00A4040005A000000308").sw, StatusWord::Success);
    // GET RESPONSE with nothing pending.
    assert_eq!(
        send(&mut t, "00C0000000").sw,
        StatusWord::ConditionsOfUseNotSatisfied
    );
    // An interrupted chain.
    assert_eq!(send(&mut t, "10DB3FFF0101").sw, StatusWord::Success);
    assert_eq!(
        send(&mut t, "00CB3FFF00").sw,
        StatusWord::LastCommandOfChainExpected
    );
}

#[test]
fn the_secure_channel_spans_select_of_piv() {
    let mut t = InProcess::insert(SoftCard::with_seed(blank(2), 7).unwrap());
    let mut s = open_session(&mut t, SecurityLevel::All).unwrap();
    assert!(t.card().secure_channel_open());
    let select_piv = CommandApdu::new(0x00, 0xA4, 0x04, 0x00)
        .with_data(hex::decode("A000000308").unwrap())
        .unwrap();
    let w = s.wrap(&select_piv).unwrap();
    let r = ResponseApdu::parse(&t.transmit(&w.apdu.to_bytes()).unwrap()).unwrap();
    let r = s.unwrap(&w.expect, &r).unwrap();
    assert_eq!(r.sw, StatusWord::Success);
    assert!(t.card().secure_channel_open());
    // A plain command inside the session ends it.
    assert_eq!(
        send(&mut t, "00CB3FFF055C035FC10200").sw,
        StatusWord::SecurityStatusNotSatisfied
    );
    assert!(!t.card().secure_channel_open());
    // Reset clears the session too.
    let mut s = open_session(&mut t, SecurityLevel::CMac).unwrap();
    t.reset(vsc::transport::ResetKind::Warm).unwrap();
    let w = s.wrap(&select_piv).unwrap();
    let r = ResponseApdu::parse(&t.transmit(&w.apdu.to_bytes()).unwrap()).unwrap();
    assert_eq!(r.sw, StatusWord::SecurityStatusNotSatisfied);
}

#[test]
fn a_secured_card_refuses_the_factory_keys() {
    let mut vsc = blank(3);
    gp_state::set_life_cycle(&mut vsc, LifeCycle::Secured).unwrap();
    let mut t = InProcess::insert(SoftCard::with_seed(vsc, 7).unwrap());
    assert_eq!(
        open_session(&mut t, SecurityLevel::All).unwrap_err(),
        StatusWord::ReferencedDataNotFound
    );
}

#[test]
fn the_sequence_counter_is_saved_before_the_response() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("card.vsc");
    let pw = SecretBytes::from_slice(b"stock password");
    let protector = Protector::Password {
        password: pw.clone(),
        params: Argon2Params::new(8 * 1024, 1, 1).unwrap(),
    };
    let vsc = BlankCard::new(4)
        .unwrap()
        .build(&protector, &mut StdRng::seed_from_u64(2))
        .unwrap();
    vsc.save_new(&path, &mut StdRng::seed_from_u64(3)).unwrap();
    let card = SoftCard::open_file(&path, Unlock::Password(pw.clone())).unwrap();
    let mut t = InProcess::insert(card);
    open_session(&mut t, SecurityLevel::All).unwrap();
    open_session(&mut t, SecurityLevel::All).unwrap();
    assert_eq!(t.card().writes(), 2);
    let saved = Vsc::load(&path, &Unlock::Password(pw)).unwrap();
    let sets = gp_state::keysets(&saved).unwrap();
    assert_eq!(sets[0].set.sequence_counter, 2);
    assert!(sets[0].factory);
}

#[test]
fn a_disabled_vsc_is_not_a_card() {
    let mut vsc = blank(5);
    vsc.set_state(vsc::file::State::Disabled);
    assert!(matches!(SoftCard::new(vsc), Err(vsc::card::CardError::Disabled)));
}

#[test]
fn a_terminated_card_opens_no_secure_channel() {
    let mut vsc = blank(6);
    gp_state::set_life_cycle(&mut vsc, LifeCycle::Terminated).unwrap();
    let mut t = InProcess::insert(SoftCard::with_seed(vsc, 7).unwrap());
    assert_eq!(
        open_session(&mut t, SecurityLevel::All).unwrap_err(),
        StatusWord::ConditionsOfUseNotSatisfied
    );
}
