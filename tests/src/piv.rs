//! Host-side commands the tests and the benchmark send to a card over any
//! [`CardTransport`]: PIV (select, management key, key generation, PIN,
//! signature) and GlobalPlatform (SCP03 with the stock keys, SET STATUS).
//! Written from the card edge as documented (SP 800-73-4 and Yubico's
//! extensions, GlobalPlatform Card Specification and Amendment D).

use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use des::TdesEde3;
use vsc::card::blank::{DEFAULT_MANAGEMENT_KEY, GP_TEST_KEY};
use vsc::codec::{CommandApdu, ResponseApdu, StatusWord, TlvRef};
use vsc::scp03::{
    put_key_component, HostSession, InitializeUpdate, InitializeUpdateResponse, SecurityLevel, StaticKeys,
};
use vsc::secret::AesKey;
use vsc::transport::{exchange, CardTransport, TransportError};

/// The PIV AID as OpenSC selects it.
pub const PIV_AID: [u8; 9] = [0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00];
/// The GlobalPlatform ISD AID.
pub const ISD_AID: [u8; 8] = [0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00];

/// A failed host step: a transport failure or an unexpected status word.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{step}: the card answered {sw}")]
    Status { step: &'static str, sw: StatusWord },
    #[error("{step}: unexpected response {0}", hex::encode_upper(.data))]
    Malformed { step: &'static str, data: Vec<u8> },
    #[error("SCP03: {0}")]
    Scp03(#[from] vsc::scp03::Scp03Error),
}

fn cmd(cla: u8, ins: u8, p1: u8, p2: u8, data: &[u8]) -> CommandApdu {
    let c = CommandApdu::new(cla, ins, p1, p2);
    let c = if data.is_empty() {
        c
    } else {
        c.with_data(data.to_vec()).unwrap_or_else(|e| panic!("{e}"))
    };
    c.with_ne(256).unwrap_or_else(|e| panic!("{e}"))
}

/// Sends a command (chained, 61xx collected); it must answer `9000`.
pub fn ok(t: &mut impl CardTransport, step: &'static str, c: &CommandApdu) -> Result<Vec<u8>, HostError> {
    let r = exchange(t, c, true)?;
    if r.sw != StatusWord::Success {
        return Err(HostError::Status { step, sw: r.sw });
    }
    Ok(r.data)
}

/// SELECT of the PIV application.
pub fn select_piv_command() -> CommandApdu {
    cmd(0x00, 0xA4, 0x04, 0x00, &PIV_AID)
}

/// GET DATA of the Discovery object.
pub fn get_discovery_command() -> CommandApdu {
    cmd(0x00, 0xCB, 0x3F, 0xFF, &[0x5C, 0x01, 0x7E])
}

pub fn select_piv(t: &mut impl CardTransport) -> Result<Vec<u8>, HostError> {
    ok(t, "SELECT PIV", &select_piv_command())
}

fn tdes(key: &[u8; 24]) -> TdesEde3 {
    TdesEde3::new(GenericArray::from_slice(key))
}

/// Mutual authentication with the 3DES management key (`9B`), as
/// yubico-piv-tool does it.
pub fn authenticate_management(t: &mut impl CardTransport, key: &[u8; 24]) -> Result<(), HostError> {
    let step = "GENERAL AUTHENTICATE 9B";
    let witness = ok(t, step, &cmd(0x00, 0x87, 0x03, 0x9B, &[0x7C, 0x02, 0x80, 0x00]))?;
    let bad = |data: &[u8]| HostError::Malformed {
        step,
        data: data.to_vec(),
    };
    let outer = TlvRef::parse_single(&witness).map_err(|_| bad(&witness))?;
    let enc = outer.child(vsc::tag!(0x80)).map_err(|_| bad(&witness))?;
    let mut block = GenericArray::clone_from_slice(enc.value.get(..8).ok_or_else(|| bad(&witness))?);
    let cipher = tdes(key);
    cipher.decrypt_block(&mut block);
    let challenge: [u8; 8] = rand::random();
    let mut data = vec![0x7C, 0x14, 0x80, 0x08];
    data.extend_from_slice(&block);
    data.extend_from_slice(&[0x81, 0x08]);
    data.extend_from_slice(&challenge);
    let answer = ok(t, step, &cmd(0x00, 0x87, 0x03, 0x9B, &data))?;
    let outer = TlvRef::parse_single(&answer).map_err(|_| bad(&answer))?;
    let got = outer.child(vsc::tag!(0x82)).map_err(|_| bad(&answer))?;
    let mut expected = GenericArray::clone_from_slice(&challenge);
    cipher.encrypt_block(&mut expected);
    if got.value != expected.as_slice() {
        return Err(bad(&answer));
    }
    Ok(())
}

/// The default management key of blank stock.
pub fn default_management_key() -> [u8; 24] {
    DEFAULT_MANAGEMENT_KEY
}

/// GENERATE ASYMMETRIC KEY PAIR, P-256 (alg `11`), in `slot`; the public
/// point `04 X Y`.
pub fn generate_p256(t: &mut impl CardTransport, slot: u8) -> Result<Vec<u8>, HostError> {
    let step = "GENERATE P-256";
    let r = ok(
        t,
        step,
        &cmd(0x00, 0x47, 0x00, slot, &[0xAC, 0x03, 0x80, 0x01, 0x11]),
    )?;
    let bad = || HostError::Malformed {
        step,
        data: r.clone(),
    };
    let outer = TlvRef::parse_single(&r).map_err(|_| bad())?;
    let point = outer.child(vsc::tag!(0x86)).map_err(|_| bad())?;
    Ok(point.value.to_vec())
}

/// VERIFY of the PIN (`80`), padded with `FF` to 8 bytes.
pub fn verify_pin_command(pin: &[u8]) -> CommandApdu {
    let mut padded = [0xFF; 8];
    for (d, s) in padded.iter_mut().zip(pin) {
        *d = *s;
    }
    CommandApdu::new(0x00, 0x20, 0x00, 0x80)
        .with_data(padded.to_vec())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// GENERAL AUTHENTICATE: a P-256 signature of a 32-byte digest with the
/// key in `slot`.
pub fn sign_p256_command(slot: u8, digest: &[u8; 32]) -> CommandApdu {
    let mut data = vec![0x7C, 0x24, 0x82, 0x00, 0x81, 0x20];
    data.extend_from_slice(digest);
    cmd(0x00, 0x87, 0x11, slot, &data)
}

/// The DER signature out of a GENERAL AUTHENTICATE response.
pub fn signature_of(response: &[u8]) -> Option<Vec<u8>> {
    let outer = TlvRef::parse_single(response).ok()?;
    Some(outer.child(vsc::tag!(0x82)).ok()?.value.to_vec())
}

/// The stock's SCP03 key set: the GlobalPlatform test keys.
pub fn test_keys() -> StaticKeys {
    let k = || AesKey::from_slice(&GP_TEST_KEY).unwrap_or_else(|e| panic!("{e}"));
    StaticKeys::new(k(), k(), k()).unwrap_or_else(|e| panic!("{e}"))
}

/// An SCP03 session opened with the stock keys (key version 01) at
/// security level 33, and the card's chip serial from its key
/// diversification data.
pub fn open_scp03(t: &mut impl CardTransport) -> Result<(HostSession, u32), HostError> {
    let (session, kdd) = open_scp03_with(t, 0x01, &test_keys())?;
    let [.., a, b, c, d] = kdd;
    Ok((session, u32::from_be_bytes([a, b, c, d])))
}

/// INITIALIZE UPDATE with key version `kvn` and `host_challenge`; the
/// card's answer (it refuses a key version it does not hold).
fn initialize_update(
    t: &mut impl CardTransport,
    kvn: u8,
    host_challenge: [u8; 8],
) -> Result<InitializeUpdateResponse, HostError> {
    let r = exchange(t, &InitializeUpdate::new(kvn, host_challenge).to_command(), false)?;
    if r.sw != StatusWord::Success {
        return Err(HostError::Status {
            step: "INITIALIZE UPDATE",
            sw: r.sw,
        });
    }
    Ok(InitializeUpdateResponse::from_response(&r)?)
}

/// The card's key diversification data (INITIALIZE UPDATE with key
/// version `kvn`; the card refuses a key version it does not hold).
pub fn key_diversification_data(t: &mut impl CardTransport, kvn: u8) -> Result<[u8; 10], HostError> {
    Ok(initialize_update(t, kvn, rand::random())?.key_diversification_data)
}

/// An SCP03 session opened with key set `kvn` = `keys` at security level
/// 33; the card's key diversification data.
pub fn open_scp03_with(
    t: &mut impl CardTransport,
    kvn: u8,
    keys: &StaticKeys,
) -> Result<(HostSession, [u8; 10]), HostError> {
    let host_challenge: [u8; 8] = rand::random();
    let resp = initialize_update(t, kvn, host_challenge)?;
    let kdd = resp.key_diversification_data;
    let (ext_auth, session) = HostSession::open(keys, host_challenge, &resp, SecurityLevel::All, None)?;
    let r = exchange(t, &ext_auth, false)?;
    if r.sw != StatusWord::Success {
        return Err(HostError::Status {
            step: "EXTERNAL AUTHENTICATE",
            sw: r.sw,
        });
    }
    Ok((session, kdd))
}

/// Sends a command inside the session; the unwrapped response.
pub fn secured(
    t: &mut impl CardTransport,
    session: &mut HostSession,
    c: &CommandApdu,
) -> Result<ResponseApdu, HostError> {
    let w = session.wrap(c)?;
    let r = exchange(t, &w.apdu, false)?;
    Ok(session.unwrap(&w.expect, &r)?)
}

/// PUT KEY adding key set `new_kvn` (AES keys ENC, MAC, DEK), its keys
/// encrypted under `dek`, the static Key-DEK of the session's key set.
pub fn put_key_command(new_kvn: u8, keys: &StaticKeys, dek: &AesKey) -> CommandApdu {
    let mut data = vec![new_kvn];
    for key in [keys.enc(), keys.mac(), keys.dek()] {
        data.extend(put_key_component(dek, key));
    }
    CommandApdu::new(0x80, 0xD8, 0x00, 0x81)
        .with_data(data)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_ne(256)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Fresh random AES-128 keys for a key set.
pub fn random_keys() -> StaticKeys {
    let k = || AesKey::from_slice(&rand::random::<[u8; 16]>()).unwrap_or_else(|e| panic!("{e}"));
    StaticKeys::new(k(), k(), k()).unwrap_or_else(|e| panic!("{e}"))
}

/// What the issuer does at least before SECURED: a key set of its own
/// (KVN 30) next to the stock's transport keys, then SET STATUS SECURED.
pub fn personalize_minimal(t: &mut impl CardTransport, session: &mut HostSession) -> Result<(), HostError> {
    let stock = test_keys();
    let r = secured(t, session, &put_key_command(0x30, &random_keys(), stock.dek()))?;
    if r.sw != StatusWord::Success {
        return Err(HostError::Status {
            step: "PUT KEY",
            sw: r.sw,
        });
    }
    let r = secured(t, session, &set_status_secured_command())?;
    if r.sw != StatusWord::Success {
        return Err(HostError::Status {
            step: "SET STATUS SECURED",
            sw: r.sw,
        });
    }
    Ok(())
}

/// SET STATUS of the ISD to SECURED (`80 F0 80 0F`).
pub fn set_status_secured_command() -> CommandApdu {
    CommandApdu::new(0x80, 0xF0, 0x80, 0x0F)
}
