//! The master VSC: a software card made from a blank with the real chip's
//! identity and the stock's transport keys, personalized with the same
//! plain commands as the chip (through its own in-process SCP03 session at
//! level 33). Every command must answer its expected status word, or the
//! card is void before anything leaves the keyserver. The escrowed keys,
//! generated (and pairwise-checked) by the engine for this master, go into
//! its secret key area as entries of origin "generated on the master"; the
//! card gets them by IMPORT.

use rand::rngs::OsRng;
use rand::RngCore;
use vsc::card::blank::BlankSpec;
use vsc::card::{CardIdentity, SoftCard, ISD_AID};
use vsc::codec::{CommandApdu, ResponseApdu};
use vsc::file::{
    KeyAlgorithm, KeyAttributes, KeyOrigin, KeyRef, Origin, PinPolicy, Protector, SecretKeyEntry,
    TouchPolicy, Vsc,
};
use vsc::scp03::{HostSession, InitializeUpdate, InitializeUpdateResponse, SecurityLevel};
use vsc::transport::SmartCard;

use super::compile::Personalization;
use crate::ports::KeySet;
use crate::profile::Algorithm;

fn send(card: &mut SoftCard, c: &CommandApdu) -> Result<ResponseApdu, String> {
    ResponseApdu::parse(&card.process_apdu(&c.to_bytes()))
        .map_err(|_| "the master VSC's card runtime gave no status word".to_string())
}

/// Builds the master VSC: blank, then every master command of `perso`.
pub(crate) fn build(
    identity: &CardIdentity,
    transport: &KeySet,
    card_type: &str,
    protector: &Protector,
    perso: &Personalization,
) -> Result<Vsc, String> {
    let blank = BlankSpec {
        identity,
        keys: &transport.keys,
        kvn: transport.kvn,
        origin: Origin::Master,
        card_type,
    }
    .build(protector, &mut OsRng)
    .map_err(|e| format!("making the master VSC's blank: {e}"))?;
    let mut card = SoftCard::new(blank).map_err(|e| format!("opening the master VSC as a card: {e}"))?;
    card.power_on();

    let select = CommandApdu::new(0x00, vsc::codec::Instruction::Select, 0x04, 0x00)
        .with_data(ISD_AID.to_vec())
        .and_then(|c| c.with_ne(256))
        .map_err(|e| format!("SELECT ISD does not encode: {e}"))?;
    let r = send(&mut card, &select)?;
    if !r.is_success() {
        return Err(format!("the master VSC answered SELECT ISD with {}", r.sw));
    }
    let mut challenge = [0u8; 8];
    OsRng.fill_bytes(&mut challenge);
    let r = send(
        &mut card,
        &InitializeUpdate::new(transport.kvn, challenge).to_command(),
    )?;
    let iu = InitializeUpdateResponse::from_response(&r).map_err(|e| format!("the master VSC: {e}"))?;
    let (ea, mut host) =
        HostSession::open(&transport.keys, challenge, &iu, SecurityLevel::All, Some(ISD_AID))
            .map_err(|e| format!("the master VSC's secure channel: {e}"))?;
    let r = send(&mut card, &ea)?;
    if !r.is_success() {
        return Err(format!(
            "the master VSC answered EXTERNAL AUTHENTICATE with {}",
            r.sw
        ));
    }
    for (i, c) in perso.for_master().enumerate() {
        let at = || format!("master VSC, command {} ({})", i + 1, c.label);
        let w = host.wrap(&c.apdu).map_err(|e| format!("{}: {e}", at()))?;
        let r = send(&mut card, &w.apdu)?;
        if !c.expect.matches(u16::from(r.sw)) {
            return Err(format!(
                "{}: answered {}, expected {:04X}",
                at(),
                r.sw,
                c.expect.value
            ));
        }
        host.unwrap(&w.expect, &r).map_err(|e| format!("{}: {e}", at()))?;
    }
    host.end();
    card.power_off();
    let mut vsc = card.into_vsc();
    for k in &perso.master_keys {
        let algorithm = match k.algorithm {
            Algorithm::P256 => KeyAlgorithm::EccP256,
            Algorithm::Rsa2048 => KeyAlgorithm::Rsa2048,
        };
        let entry = SecretKeyEntry::new(
            KeyRef::PivSlot(k.slot),
            algorithm,
            k.pkcs8.clone(),
            KeyAttributes {
                origin: KeyOrigin::GeneratedOnMaster,
                pin_policy: k.pin_policy.unwrap_or(PinPolicy::Default),
                touch_policy: TouchPolicy::Default,
            },
        )
        .map_err(|e| format!("the master VSC's key entry for slot {:02X}: {e}", k.slot))?;
        if vsc.put_secret_key(entry).is_some() {
            return Err(format!(
                "the master VSC already held a key in slot {:02X}",
                k.slot
            ));
        }
    }
    Ok(vsc)
}
