//! Helpers shared by the ISD and file system tests: blank cards in process,
//! plain and SCP03-secured exchanges.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use rand::rngs::StdRng;
use rand::SeedableRng;
use vsc::card::blank::{BlankCard, GP_TEST_KEY};
use vsc::card::{SoftCard, ISD_AID};
use vsc::codec::{CommandApdu, ResponseApdu, StatusWord};
use vsc::file::{Protector, Vsc};
use vsc::scp03::{HostSession, InitializeUpdate, InitializeUpdateResponse, SecurityLevel, StaticKeys};
use vsc::secret::AesKey;
use vsc::transport::{exchange, CardTransport, InProcess};

pub type Card = InProcess<SoftCard>;

pub fn kek() -> Protector {
    Protector::Kek {
        key_id: "stock/1".into(),
        key: AesKey::from_slice(&[9; 32]).unwrap(),
    }
}

/// A blank card's VSC (GP test keys as KVN 01, OP_READY, PIN 123456).
pub fn blank(serial: u32) -> Vsc {
    BlankCard::new(serial)
        .unwrap()
        .build(&kek(), &mut StdRng::seed_from_u64(u64::from(serial)))
        .unwrap()
}

pub fn card(serial: u32) -> Card {
    InProcess::insert(SoftCard::with_seed(blank(serial), 7).unwrap())
}

/// A command from hex (spaces allowed).
pub fn cmd(hex_apdu: &str) -> CommandApdu {
    CommandApdu::parse(&hex::decode(hex_apdu.replace(' ', "")).unwrap()).unwrap()
}

/// Sends raw bytes, one APDU, no response chaining.
pub fn send_raw(t: &mut impl CardTransport, hex_apdu: &str) -> ResponseApdu {
    let bytes = hex::decode(hex_apdu.replace(' ', "")).unwrap();
    ResponseApdu::parse(&t.transmit(&bytes).unwrap()).unwrap()
}

/// Sends a command without secure messaging; collects 61xx.
pub fn plain(t: &mut impl CardTransport, c: &CommandApdu) -> ResponseApdu {
    exchange(t, c, true).unwrap()
}

/// [`plain`] from hex.
pub fn send(t: &mut impl CardTransport, hex_apdu: &str) -> ResponseApdu {
    plain(t, &cmd(hex_apdu))
}

pub fn test_keys() -> StaticKeys {
    keys_of(&GP_TEST_KEY, &GP_TEST_KEY, &GP_TEST_KEY)
}

pub fn keys_of(enc: &[u8], mac: &[u8], dek: &[u8]) -> StaticKeys {
    let k = |b: &[u8]| AesKey::from_slice(b).unwrap();
    StaticKeys::new(k(enc), k(mac), k(dek)).unwrap()
}

/// Opens an SCP03 session with key set `kvn`; the card challenge is checked
/// against `aid` (the application selected when the session opens).
pub fn open_with(
    t: &mut impl CardTransport,
    kvn: u8,
    keys: &StaticKeys,
    level: SecurityLevel,
    aid: &[u8],
) -> Result<HostSession, StatusWord> {
    let hc = [0x5A; 8];
    let iu = InitializeUpdate::new(kvn, hc).to_command();
    let r = plain(t, &iu);
    if !r.is_success() {
        return Err(r.sw);
    }
    let resp = InitializeUpdateResponse::from_response(&r).unwrap();
    let (ext_auth, session) = HostSession::open(keys, hc, &resp, level, Some(aid)).unwrap();
    let r = plain(t, &ext_auth);
    if !r.is_success() {
        return Err(r.sw);
    }
    Ok(session)
}

/// Opens a session with the factory test keys, KVN 01, with the ISD
/// selected.
pub fn open(t: &mut impl CardTransport, level: SecurityLevel) -> HostSession {
    open_with(t, 0x01, &test_keys(), level, ISD_AID).unwrap()
}

/// Sends a command through the session; checks and removes the response
/// protection.
pub fn secure(t: &mut impl CardTransport, s: &mut HostSession, c: &CommandApdu) -> ResponseApdu {
    let w = s.wrap(c).unwrap();
    let r = exchange(t, &w.apdu, false).unwrap();
    s.unwrap(&w.expect, &r).unwrap()
}

/// [`secure`] from hex.
pub fn ssend(t: &mut impl CardTransport, s: &mut HostSession, hex_apdu: &str) -> ResponseApdu {
    secure(t, s, &cmd(hex_apdu))
}
