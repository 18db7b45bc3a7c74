//! The personalization of one card as ONE list of plain command APDUs,
//! compiled from the profile, the record and the card's keys. The master
//! VSC is built by running this list against a software card; the real card
//! gets the same list wrapped in its SCP03 session. So master and card are
//! equal by construction — with one exception: the escrowed keys. The card
//! gets them with IMPORT ASYMMETRIC KEY; the master VSC, where they were
//! generated, gets the same keys as secret key entries
//! ([`Personalization::master_keys`], origin "generated on the master"),
//! without IMPORT repeating the pairwise check the engine made when it
//! generated them.

use time::OffsetDateTime;
use vsc::card::fs::fcp::{create_df_data, create_ef_data};
use vsc::card::isd::put_key::put_key_command;
use vsc::card::piv::{DEFAULT_DISCOVERY, PIV_AID};
use vsc::card::ISD_AID;
use vsc::codec::{CommandApdu, Instruction, Tlv, MAX_EXTENDED_NE, MAX_SHORT_NE};
use vsc::scp03::key_check_value;
use vsc::secret::{AesKey, SecretBytes};
use vsc::tag;
use zeroize::Zeroizing;

use super::keys::{certificate_object, PrivateKey};
use crate::ports::KeySet;
use crate::profile::{certificate_object as certificate_tag, Algorithm, KeyPolicy, Profile, SlotSpec};
use crate::record::Record;
use crate::script::SwPattern;

/// The status word every personalization command must answer.
pub(crate) const SW_OK: SwPattern = SwPattern::exact(0x9000);

const TIMEOUT_MS: u32 = 10_000;
const TIMEOUT_IMPORT_RSA_MS: u32 = 30_000;
const TIMEOUT_GENERATE_P256_MS: u32 = 30_000;
const TIMEOUT_GENERATE_RSA_MS: u32 = 120_000;

/// The blank card's PIN and PUK, which CHANGE REFERENCE DATA replaces.
const BLANK_PIN: &[u8] = b"123456";
const BLANK_PUK: &[u8] = b"12345678";

/// The FASC-N of the CHUID: the all-nines "no agency" value (SP 800-73-4
/// allows it for cards outside the federal numbering), as 25 BCD bytes.
const FASC_N: [u8; 25] = [
    0xD4, 0xE7, 0x39, 0xDA, 0x73, 0x9C, 0xED, 0x39, 0xCE, 0x73, 0x9D, 0x83, 0x68, 0x58, 0x21, 0x08, 0x42,
    0x10, 0x84, 0x21, 0xC8, 0x42, 0x10, 0xC3, 0xEB,
];

/// Which card runs a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The master VSC and the card.
    Both,
    /// The card only: GENERATE (the key never exists anywhere else) and
    /// IMPORT of an escrowed key (the master VSC gets it as a key entry).
    CardOnly,
}

/// An escrowed key as the master VSC keeps it.
pub(crate) struct MasterKey {
    pub slot: u8,
    pub algorithm: Algorithm,
    /// PKCS#8 DER.
    pub pkcs8: SecretBytes,
    /// The profile's PIN policy, as IMPORT gives it to the card.
    pub pin_policy: Option<vsc::file::PinPolicy>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MasterKey(slot {:02X}, {}, [REDACTED])",
            self.slot,
            self.algorithm.name()
        )
    }
}

/// What a response must carry besides its status word (checked on the
/// real card's responses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    None,
    /// Exactly these bytes (a value round trip 1 read in clear, re-read
    /// under the secure channel; PUT KEY's KVN and check values).
    Equals(Vec<u8>),
    /// A public key from GENERATE.
    PublicKey {
        slot: u8,
        algorithm: Algorithm,
    },
}

/// One plain command of the personalization.
#[derive(Debug)]
pub(crate) struct PersoCommand {
    /// What it does, for reasons and logs (never a value).
    pub label: String,
    pub apdu: CommandApdu,
    pub expect: SwPattern,
    pub target: Target,
    pub check: Check,
    pub timeout_ms: u32,
}

/// The personalization, in the order the card runs it.
#[derive(Debug, Default)]
pub(crate) struct Personalization {
    /// Re-reads, files, PIV objects and escrowed keys, PIN and PUK.
    pub main: Vec<PersoCommand>,
    /// GENERATE for the keys the card makes (card only, end of round trip 2).
    pub generate: Vec<PersoCommand>,
    /// Key rotation and SECURED, last.
    pub finish: Vec<PersoCommand>,
    /// The escrowed keys the card gets by IMPORT, for the master VSC's
    /// secret key area.
    pub master_keys: Vec<MasterKey>,
}

impl Personalization {
    /// The commands the master VSC runs, in order.
    pub(crate) fn for_master(&self) -> impl Iterator<Item = &PersoCommand> {
        self.main
            .iter()
            .chain(self.finish.iter())
            .filter(|c| c.target == Target::Both)
    }
}

/// An escrowed key pair and its certificate.
pub(crate) struct EscrowedKey {
    pub slot: u8,
    pub algorithm: Algorithm,
    pub key: PrivateKey,
    pub certificate: Vec<u8>,
}

/// Everything one card's personalization is made of.
pub(crate) struct CardInputs<'a> {
    pub profile: &'a Profile,
    pub record: &'a Record,
    /// The ISD's FCI and the CPLC's GET DATA answer, as round trip 1 read
    /// them (re-read under the secure channel).
    pub fci: &'a [u8],
    pub cplc_response: &'a [u8],
    pub escrowed: &'a [EscrowedKey],
    pub pin: &'a SecretBytes,
    pub puk: &'a SecretBytes,
    pub management_key: &'a AesKey,
    pub guid: [u8; 16],
    pub now: OffsetDateTime,
    pub transport: &'a KeySet,
    pub card_keys: &'a KeySet,
}

fn command(
    cla: u8,
    ins: Instruction,
    p1: u8,
    p2: u8,
    data: Vec<u8>,
    ne: usize,
) -> Result<CommandApdu, String> {
    let c = CommandApdu::new(cla, ins, p1, p2);
    let c = if data.is_empty() { Ok(c) } else { c.with_data(data) };
    c.and_then(|c| c.with_ne(ne))
        .map_err(|e| format!("a command does not encode: {e}"))
}

fn step(label: impl Into<String>, apdu: CommandApdu) -> PersoCommand {
    PersoCommand {
        label: label.into(),
        apdu,
        expect: SW_OK,
        target: Target::Both,
        check: Check::None,
        timeout_ms: TIMEOUT_MS,
    }
}

fn select_aid(aid: &[u8]) -> Result<CommandApdu, String> {
    command(0x00, Instruction::Select, 0x04, 0x00, aid.to_vec(), MAX_SHORT_NE)
}

/// PUT DATA of a PIV object: `00 DB 3F FF {5C tag, 53 value}`.
fn put_data(object: u32, value: &[u8]) -> Result<CommandApdu, String> {
    let t = object.to_be_bytes();
    let tag_bytes: Vec<u8> = t.iter().copied().skip_while(|b| *b == 0).collect();
    let mut data = Vec::with_capacity(value.len() + 12);
    Tlv::new(tag!(0x5C), tag_bytes).write(&mut data);
    Tlv::new(tag!(0x53), value.to_vec()).write(&mut data);
    command(0x00, Instruction::PutDataOdd, 0x3F, 0xFF, data, MAX_SHORT_NE)
}

fn padded_pin(v: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(v.to_vec());
    out.resize(8, 0xFF);
    out
}

fn change_reference_data(reference: u8, old: &[u8], new: &SecretBytes) -> Result<CommandApdu, String> {
    let mut data = padded_pin(old);
    data.extend_from_slice(&padded_pin(new.expose_secret()));
    command(
        0x00,
        Instruction::ChangeReferenceData,
        0x00,
        reference,
        data.to_vec(),
        MAX_SHORT_NE,
    )
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// `YYYYMMDD` (CHUID expiration).
fn chuid_date(t: OffsetDateTime) -> String {
    format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day())
}

/// `YYYYMMMDD` (printed information expiration, e.g. `2030DEC31`).
fn printed_date(t: OffsetDateTime) -> String {
    let m = usize::from(u8::from(t.month())).saturating_sub(1);
    format!(
        "{:04}{}{:02}",
        t.year(),
        MONTHS.get(m).copied().unwrap_or("JAN"),
        t.day()
    )
}

/// The card's expiry: now plus the profile's card validity.
pub(crate) fn card_expiry(profile: &Profile, now: OffsetDateTime) -> OffsetDateTime {
    now + time::Duration::days(i64::from(profile.card_validity_days))
}

fn chuid(guid: [u8; 16], expiry: OffsetDateTime) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    Tlv::new(tag!(0x30), FASC_N.to_vec()).write(&mut v);
    Tlv::new(tag!(0x34), guid.to_vec()).write(&mut v);
    Tlv::new(tag!(0x35), chuid_date(expiry).into_bytes()).write(&mut v);
    Tlv::new(tag!(0x3E), Vec::new()).write(&mut v);
    Tlv::new(tag!(0xFE), Vec::new()).write(&mut v);
    v
}

fn printed_information(inputs: &CardInputs<'_>, expiry: OffsetDateTime) -> Option<Vec<u8>> {
    let p = inputs.profile.printed_information.as_ref()?;
    let r = inputs.record;
    let mut v = Vec::with_capacity(200);
    Tlv::new(tag!(0x01), p.name.render(r).into_bytes()).write(&mut v);
    let optional = |v: &mut Vec<u8>, t: u8, tpl: &Option<crate::profile::Template>| {
        let Some(tpl) = tpl else { return };
        let s = tpl.render(r);
        if let (false, Ok(tg)) = (s.is_empty(), vsc::codec::Tag::new(u32::from(t))) {
            Tlv::new(tg, s.into_bytes()).write(v);
        }
    };
    optional(&mut v, 0x02, &p.employee_affiliation);
    Tlv::new(tag!(0x04), printed_date(expiry).into_bytes()).write(&mut v);
    optional(&mut v, 0x05, &p.agency_card_serial_number);
    optional(&mut v, 0x06, &p.issuer_identification);
    optional(&mut v, 0x07, &p.organization_affiliation);
    optional(&mut v, 0x08, &p.organization_affiliation_2);
    Tlv::new(tag!(0xFE), Vec::new()).write(&mut v);
    Some(v)
}

/// The Key History object: how many retired key management keys have their
/// certificates on the card (`C1`), none off it (`C2`).
fn key_history(retired: usize) -> Vec<u8> {
    let mut v = Vec::new();
    Tlv::new(tag!(0xC1), vec![u8::try_from(retired).unwrap_or(u8::MAX)]).write(&mut v);
    Tlv::new(tag!(0xC2), vec![0]).write(&mut v);
    Tlv::new(tag!(0xFE), Vec::new()).write(&mut v);
    v
}

/// PUT DATA of a slot's certificate.
pub(crate) fn put_certificate(slot: u8, der: &[u8]) -> Result<PersoCommand, String> {
    let object = certificate_tag(slot).ok_or_else(|| format!("slot {slot:02X} has no certificate object"))?;
    Ok(step(
        format!("PUT DATA certificate {slot:02X}"),
        put_data(object, &certificate_object(der))?,
    ))
}

/// GENERATE ASYMMETRIC KEY PAIR for a card-policy slot.
fn generate(slot: &SlotSpec) -> Result<PersoCommand, String> {
    let mut template = vec![0x80, 0x01, slot.algorithm.piv_id()];
    if let Some(p) = slot.pin_policy {
        template.extend_from_slice(&[0xAA, 0x01, p.to_byte()]);
    }
    let mut data = Vec::new();
    Tlv::new(tag!(0xAC), template).write(&mut data);
    // The RSA public key (269 bytes) with R-ENC padding and R-MAC needs an
    // extended Le to come back whole.
    let (ne, timeout_ms) = match slot.algorithm {
        Algorithm::P256 => (MAX_SHORT_NE, TIMEOUT_GENERATE_P256_MS),
        Algorithm::Rsa2048 => (MAX_EXTENDED_NE, TIMEOUT_GENERATE_RSA_MS),
    };
    Ok(PersoCommand {
        label: format!("GENERATE {:02X} {}", slot.slot, slot.algorithm.name()),
        apdu: command(
            0x00,
            Instruction::GenerateAsymmetricKeyPair,
            0x00,
            slot.slot,
            data,
            ne,
        )?,
        expect: SW_OK,
        target: Target::CardOnly,
        check: Check::PublicKey {
            slot: slot.slot,
            algorithm: slot.algorithm,
        },
        timeout_ms,
    })
}

/// Compiles the card's personalization.
pub(crate) fn compile(inputs: &CardInputs<'_>) -> Result<Personalization, String> {
    let profile = inputs.profile;
    let expiry = card_expiry(profile, inputs.now);
    let mut main = Vec::new();

    // Round trip 1's clear reads, again under the secure channel: a bit
    // flipped in them on the way is caught here.
    let mut s = step("SELECT ISD (re-read)", select_aid(ISD_AID)?);
    s.check = Check::Equals(inputs.fci.to_vec());
    main.push(s);
    let mut s = step(
        "GET DATA CPLC (re-read)",
        command(0x80, Instruction::GetData, 0x9F, 0x7F, Vec::new(), MAX_SHORT_NE)?,
    );
    s.check = Check::Equals(inputs.cplc_response.to_vec());
    main.push(s);

    // The file system: DFs under the MF, EFs with their access rules.
    for df in &profile.files {
        main.push(step(
            "SELECT MF",
            command(
                0x00,
                Instruction::Select,
                0x00,
                0x0C,
                vec![0x3F, 0x00],
                MAX_SHORT_NE,
            )?,
        ));
        main.push(step(
            format!("CREATE FILE DF {:04X}", df.fid),
            command(
                0x00,
                Instruction::CreateFile,
                0,
                0,
                create_df_data(df.fid, df.name.as_deref()),
                MAX_SHORT_NE,
            )?,
        ));
        for ef in &df.efs {
            main.push(step(
                format!("CREATE FILE EF {:04X}/{:04X}", df.fid, ef.fid),
                command(
                    0x00,
                    Instruction::CreateFile,
                    0,
                    0,
                    create_ef_data(ef.fid, ef.size, ef.area, ef.read, ef.update),
                    MAX_SHORT_NE,
                )?,
            ));
            let content = ef.content.render(inputs.record);
            if !content.is_empty() {
                main.push(step(
                    format!("UPDATE BINARY EF {:04X}/{:04X}", df.fid, ef.fid),
                    command(
                        0x00,
                        Instruction::UpdateBinary,
                        0,
                        0,
                        content.into_bytes(),
                        MAX_SHORT_NE,
                    )?,
                ));
            }
        }
    }

    // PIV: management key, escrowed keys and their certificates, objects.
    main.push(step(
        "SELECT PIV",
        select_aid(PIV_AID.get(..9).unwrap_or(PIV_AID))?,
    ));
    let mut mgmt = Zeroizing::new(vec![0x0A, 0x9B, 0x18]);
    mgmt.extend_from_slice(inputs.management_key.expose_secret());
    if inputs.management_key.expose_secret().len() != 24 {
        return Err("the management key is not AES-192".into());
    }
    main.push(step(
        "SET MANAGEMENT KEY (AES-192)",
        command(
            0x00,
            Instruction::SetManagementKey,
            0xFF,
            0xFF,
            mgmt.to_vec(),
            MAX_SHORT_NE,
        )?,
    ));
    let mut master_keys = Vec::with_capacity(inputs.escrowed.len());
    for key in inputs.escrowed {
        let spec = profile
            .slots
            .iter()
            .find(|s| s.slot == key.slot)
            .ok_or_else(|| format!("slot {:02X} is not in the profile", key.slot))?;
        let mut s = step(
            format!("IMPORT ASYMMETRIC KEY {:02X} {}", key.slot, key.algorithm.name()),
            key.key
                .import_command(key.slot, spec.pin_policy)?
                .with_ne(MAX_SHORT_NE)
                .map_err(|e| format!("IMPORT ASYMMETRIC KEY does not encode: {e}"))?,
        );
        if key.algorithm == Algorithm::Rsa2048 {
            s.timeout_ms = TIMEOUT_IMPORT_RSA_MS;
        }
        s.target = Target::CardOnly;
        main.push(s);
        master_keys.push(MasterKey {
            slot: key.slot,
            algorithm: key.algorithm,
            pkcs8: key.key.pkcs8()?,
            pin_policy: spec.pin_policy,
        });
        main.push(put_certificate(key.slot, &key.certificate)?);
    }
    if profile.chuid {
        main.push(step(
            "PUT DATA CHUID",
            put_data(0x5F_C102, &chuid(inputs.guid, expiry))?,
        ));
    }
    if profile.discovery {
        let mut data = Vec::new();
        Tlv::new(tag!(0x7E), DEFAULT_DISCOVERY.to_vec()).write(&mut data);
        main.push(step(
            "PUT DATA Discovery",
            command(0x00, Instruction::PutDataOdd, 0x3F, 0xFF, data, MAX_SHORT_NE)?,
        ));
    }
    if let Some(v) = printed_information(inputs, expiry) {
        main.push(step("PUT DATA Printed Information", put_data(0x5F_C109, &v)?));
    }
    let retired = profile
        .slots
        .iter()
        .filter(|s| (0x82..=0x95).contains(&s.slot))
        .count();
    if retired > 0 {
        main.push(step(
            "PUT DATA Key History",
            put_data(0x5F_C10C, &key_history(retired))?,
        ));
    }
    main.push(step(
        "CHANGE REFERENCE DATA PIN",
        change_reference_data(0x80, BLANK_PIN, inputs.pin)?,
    ));
    main.push(step(
        "CHANGE REFERENCE DATA PUK",
        change_reference_data(0x81, BLANK_PUK, inputs.puk)?,
    ));

    // Keys the card makes itself.
    let generate = profile
        .slots
        .iter()
        .filter(|s| s.policy == KeyPolicy::Card)
        .map(generate)
        .collect::<Result<Vec<_>, _>>()?;

    // Key rotation, then SECURED.
    let finish = finish(inputs.transport, inputs.card_keys)?;
    Ok(Personalization {
        main,
        generate,
        finish,
        master_keys,
    })
}

/// SELECT ISD; PUT KEY of the card's own key set (replacing the stock's
/// transport set when the key lengths match, else added beside it);
/// SET STATUS SECURED.
fn finish(transport: &KeySet, card: &KeySet) -> Result<Vec<PersoCommand>, String> {
    let same_len = transport.keys.key_len() == card.keys.key_len();
    let replace = if same_len {
        Some(transport.kvn)
    } else if card.kvn != transport.kvn {
        None
    } else {
        return Err(format!(
            "the card key set (KVN {:02X}) has another key length than the transport set of the same KVN",
            card.kvn
        ));
    };
    let put_key = put_key_command(replace, card.kvn, transport.keys.dek(), &card.keys)
        .with_ne(MAX_SHORT_NE)
        .map_err(|e| format!("PUT KEY does not encode: {e}"))?;
    let mut expected = vec![card.kvn];
    for k in [card.keys.enc(), card.keys.mac(), card.keys.dek()] {
        expected.extend_from_slice(&key_check_value(k));
    }
    let mut rotate = step(format!("PUT KEY (KVN {:02X})", card.kvn), put_key);
    rotate.check = Check::Equals(expected);
    Ok(vec![
        step("SELECT ISD", select_aid(ISD_AID)?),
        rotate,
        step(
            "SET STATUS SECURED",
            command(0x80, Instruction::SetStatus, 0x80, 0x0F, Vec::new(), MAX_SHORT_NE)?,
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(y: i32, m: time::Month, d: u8) -> OffsetDateTime {
        time::Date::from_calendar_date(y, m, d)
            .unwrap()
            .with_hms(10, 0, 0)
            .unwrap()
            .assume_utc()
    }

    #[test]
    fn dates() {
        let t = at(2030, time::Month::December, 31);
        assert_eq!(chuid_date(t), "20301231");
        assert_eq!(printed_date(t), "2030DEC31");
        assert_eq!(printed_date(at(2027, time::Month::January, 5)), "2027JAN05");
    }

    #[test]
    fn chuid_layout() {
        let c = chuid([0xAB; 16], at(2030, time::Month::January, 1));
        assert_eq!(&c[..2], &[0x30, 0x19]);
        assert_eq!(&c[27..29], &[0x34, 0x10]);
        assert_eq!(&c[45..55], b"\x35\x0820300101");
        assert_eq!(&c[55..], &[0x3E, 0x00, 0xFE, 0x00]);
    }

    #[test]
    fn put_data_encodes_the_tag_list() {
        let c = put_data(0x5F_C102, &[1, 2]).unwrap();
        assert_eq!(c.data(), &[0x5C, 0x03, 0x5F, 0xC1, 0x02, 0x53, 0x02, 1, 2]);
        assert_eq!((c.p1(), c.p2()), (0x3F, 0xFF));
    }
}
