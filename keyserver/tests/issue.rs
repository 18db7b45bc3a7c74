#![allow(clippy::unwrap_used, clippy::expect_used)]
//! One card end to end, in process: the engine with in-memory stand-ins, a
//! transparent station, real software blank cards. Issued cards are checked
//! from the outside (certificates, public keys against the master VSC, PIN,
//! rotated SCP03 keys, data objects).

mod issue_support;

use issue_support::*;
use keyserver::issue::testing::{issue_card, run_script};
use keyserver::ports::{AuditOutcome, CardEngine, CardOutcome, Next};
use keyserver::script::{Reply, Step};
use vsc::card::LifeCycle;
use vsc::codec::StatusWord;

#[test]
fn employee_badges_are_issued_and_verify() {
    let rig = rig(0);
    let profile = rig.engine.profile("employee-badge").unwrap().clone();
    for n in 0..3u32 {
        let serial = 2000 + n;
        let mut card = blank(serial);
        let f = issue_badge(&rig, &mut card, n, |_, _| {});
        assert_eq!(f.round_trips, 2, "{:?}", f.outcome);
        assert_eq!(f.serial, Some(serial));
        // PIN and PUK are random: returned once, in the job output.
        let secrets = f.secrets.as_ref().unwrap();
        let pin = secrets.pin.as_ref().unwrap().expose_secret().to_vec();
        let puk = secrets.puk.as_ref().unwrap().expose_secret().to_vec();
        assert_eq!(pin.len(), 6);
        assert_eq!(puk.len(), 8);
        assert!(pin.iter().chain(&puk).all(u8::is_ascii_digit));
        verify_issued(&rig, &mut card, &profile, &f, &pin);
    }
    let outcomes = rig.escrow.outcomes();
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes.iter().all(|(_, _, o)| *o == CardOutcome::Issued));
    let ok = rig.audit.actions("card.issue");
    assert_eq!(ok.len(), 3);
    assert!(ok
        .iter()
        .all(|e| e.outcome == AuditOutcome::Ok && e.actor == "desk-1"));
    assert!(
        ok[0].detail.contains("job job-1, record badge-0, station desk-1"),
        "{}",
        ok[0].detail
    );
    // Four escrowed keys per card.
    let gens = rig.audit.actions("key.generate");
    assert_eq!(gens.len(), 12);
    assert!(
        gens[1]
            .detail
            .starts_with("slot 9C (digital signature), p256, policy escrow (override)"),
        "{}",
        gens[1].detail
    );
}

#[test]
fn piv_escrow_cards_take_three_round_trips_and_verify() {
    let rig = rig(2);
    let profile = rig.engine.profile("piv-escrow").unwrap().clone();
    for n in 0..2u32 {
        let serial = 3000 + n;
        let mut card = blank(serial);
        let f = issue_card(
            &rig.engine,
            request(&card, "piv-escrow", piv_record(n)),
            &mut card,
            |_, _| {},
        );
        assert_eq!(f.round_trips, 3, "{:?}", f.outcome);
        // The PIN came from the record: only the random PUK is returned.
        let secrets = f.secrets.as_ref().unwrap();
        assert!(secrets.pin.is_none());
        assert_eq!(secrets.puk.as_ref().unwrap().len(), 8);
        verify_issued(&rig, &mut card, &profile, &f, b"24681357");
    }
    let gens = rig.audit.actions("key.generate");
    let details: Vec<&str> = gens.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details.len(), 6, "{details:#?}");
    assert!(details[0]
        .starts_with("slot 9A (PIV authentication), p256, policy escrow, generated on the master VSC"));
    assert!(details[1].starts_with("slot 9D (key management), rsa2048, policy escrow"));
    assert!(details[2].starts_with("slot 9C (digital signature), p256, policy card, generated on the card"));
    // No escrow override in this profile: only employee-badge's, at load.
    let overrides = rig.audit.actions("profile.escrow-override");
    assert_eq!(overrides.len(), 1);
    assert_eq!(overrides[0].subject, "profile employee-badge");
}

#[test]
fn data_objects_are_where_the_profile_put_them() {
    let rig = rig(0);
    let mut card = blank(4000);
    let f = issue_badge(&rig, &mut card, 7, |_, _| {});
    assert!(issued(&f), "{:?}", f.outcome);
    reset(&mut card);
    let pin = f
        .secrets
        .as_ref()
        .unwrap()
        .pin
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_vec();
    let address = b"Ada Lovelace\n12 St James's Square\nLondon".to_vec();
    let account = b"GB33BUKB20201555555555".to_vec();

    let read = |card: &mut Card, path: [u8; 4]| {
        let r = send(card, &cmd(0x00, 0xA4, 0x08, 0x0C, &path));
        assert_eq!(r.sw, StatusWord::Success);
        let r = send(card, &cmd(0x00, 0xB0, 0x00, 0x00, &[]));
        (r.sw, r.data)
    };
    // Public EF: read without PIN; never updated.
    assert_eq!(
        read(&mut card, [0x50, 0x00, 0x50, 0x01]),
        (StatusWord::Success, address.clone())
    );
    let r = send(&mut card, &cmd(0x00, 0xD6, 0x00, 0x00, b"X"));
    assert_eq!(r.sw, StatusWord::SecurityStatusNotSatisfied);
    // Private EF: only after the PIN.
    assert_eq!(
        read(&mut card, [0x50, 0x00, 0x50, 0x02]).0,
        StatusWord::SecurityStatusNotSatisfied
    );
    assert_eq!(verify_pin(&mut card, &pin), StatusWord::Success);
    assert_eq!(
        read(&mut card, [0x50, 0x00, 0x50, 0x02]),
        (StatusWord::Success, account.clone())
    );

    // The master VSC holds the same files: public in clear, private
    // encrypted, with the same access rules.
    let (_, master) = master_of(&rig, 4000);
    let ef = master
        .header()
        .hierarchy
        .find_ef(&[0x3F00, 0x5000, 0x5002])
        .unwrap();
    assert_eq!(ef.area, vsc::file::EfArea::Private);
    assert_eq!(ef.read, vsc::file::AccessRule::Pin);
    assert_eq!(
        master
            .private_area()
            .get(&vsc::file::ObjectId::File(vec![0x3F00, 0x5000, 0x5002])),
        Some(&account)
    );
    assert_eq!(
        master
            .public_area()
            .get(&vsc::file::ObjectId::File(vec![0x3F00, 0x5000, 0x5001])),
        Some(&address)
    );

    // PIV objects: CHUID (public), Printed Information (after PIN).
    select_piv(&mut card);
    let chuid = get_object(&mut card, 0x5F_C102).unwrap();
    assert_eq!(&chuid[..2], &[0x30, 0x19]);
    let printed = get_object(&mut card, 0x5F_C109);
    assert!(printed.is_ok(), "the PIN was verified: {printed:?}");
    let printed = printed.unwrap();
    assert!(printed
        .windows(b"Ada Lovelace".len())
        .any(|w| w == b"Ada Lovelace"));
    // Management key: AES-192, not the default.
    let r = send(&mut card, &cmd(0x00, 0xF7, 0x00, 0x9B, &[]));
    assert_eq!(r.sw, StatusWord::Success);
    assert_eq!(&r.data[..3], &[0x01, 0x01, 0x0A]);
}

#[test]
fn every_card_gets_its_own_guid_and_keys() {
    let rig = rig(0);
    let mut chuids = Vec::new();
    let mut keys = Vec::new();
    for n in 0..3u32 {
        let mut card = blank(4100 + n);
        let f = issue_badge(&rig, &mut card, n, |_, _| {});
        assert!(issued(&f));
        reset(&mut card);
        select_piv(&mut card);
        chuids.push(get_object(&mut card, 0x5F_C102).unwrap());
        keys.push(metadata_public_key(&mut card, 0x9A).unwrap());
    }
    chuids.sort();
    chuids.dedup();
    keys.sort();
    keys.dedup();
    assert_eq!((chuids.len(), keys.len()), (3, 3));
}

#[test]
fn a_card_of_the_wrong_stock_is_void_before_anything_is_sealed() {
    let rig = rig(0);
    let mut card = foreign_blank(5000);
    let f = issue_badge(&rig, &mut card, 0, |_, _| {});
    let reason = void_reason(&f);
    assert!(
        reason.contains("card cryptogram is wrong") && reason.contains("wrong stock"),
        "{reason}"
    );
    assert_eq!(f.round_trips, 1);
    assert!(f.sealed.is_none());
    assert!(rig.escrow.sealed().is_empty());
    assert_eq!(card.card().life_cycle(), LifeCycle::OpReady);
    let audit = rig.audit.actions("card.issue");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].outcome, AuditOutcome::Failed);
    assert_eq!(audit[0].subject, "00005000");
}

#[test]
fn a_personalized_card_cannot_be_personalized_again() {
    let rig = rig(0);
    let mut card = blank(5100);
    let f = issue_badge(&rig, &mut card, 0, |_, _| {});
    assert!(issued(&f));
    reset(&mut card);
    let f = issue_badge(&rig, &mut card, 1, |_, _| {});
    let reason = void_reason(&f);
    assert!(
        reason.contains("round trip 1, step 3 of 3 (INITIALIZE UPDATE): the card answered 6A88"),
        "{reason}"
    );
}

#[test]
fn a_forged_identity_is_void() {
    // The station (or a man in the middle) swaps the CPLC for another
    // chip's: the KDD of INITIALIZE UPDATE gives it away.
    let rig = rig(0);
    let mut card = blank(5200);
    let other = vsc::card::CardIdentity::new(5201);
    let f = issue_badge(&rig, &mut card, 0, |round, reply| {
        if round == 1 {
            let mut r = vec![0x9F, 0x7F, 0x2A];
            r.extend_from_slice(other.cplc());
            r.extend_from_slice(&[0x90, 0x00]);
            reply.responses[1] = r;
        }
    });
    assert!(void_reason(&f).contains("not the CPLC's"), "{}", void_reason(&f));
    assert!(rig.escrow.sealed().is_empty());
}

#[test]
fn start_refuses_unknown_profiles_stocks_and_bad_records() {
    let rig = rig(0);
    let card = blank(5300);
    let mut r = request(&card, "nope", badge_record(0));
    let f = rig.engine.start(r.clone()).err().unwrap();
    assert!(void_reason(&f).contains("no profile \"nope\""));
    r.profile = "employee-badge".into();
    r.stock = "other".into();
    let f = rig.engine.start(r.clone()).err().unwrap();
    assert!(
        void_reason(&f).contains("unknown card stock \"other\""),
        "{}",
        void_reason(&f)
    );
    r.stock = "default".into();
    r.record.fields.insert("email".into(), "nope".into());
    let f = rig.engine.start(r).err().unwrap();
    assert!(
        void_reason(&f).contains("email \"nope\" is not an e-mail address"),
        "{}",
        void_reason(&f)
    );
    assert_eq!(f.round_trips, 0);
    let audit = rig.audit.actions("card.issue");
    assert_eq!(audit.len(), 3);
    assert!(audit
        .iter()
        .all(|e| e.outcome == AuditOutcome::Failed && e.subject.starts_with("request ")));
}

#[test]
fn the_engine_lists_profiles_fields_and_checks_records() {
    let rig = rig(0);
    assert_eq!(rig.engine.profiles(), ["employee-badge", "piv-escrow"]);
    assert_eq!(
        rig.engine.profile_fields("piv-escrow").unwrap(),
        [
            "given_name",
            "surname",
            "email",
            "employee_id",
            "department",
            "pin"
        ]
    );
    assert!(rig.engine.profile_fields("nope").is_none());
    rig.engine.check_record("piv-escrow", &piv_record(1)).unwrap();
    let mut bad = piv_record(1);
    bad.fields.insert("pin".into(), "12".into());
    bad.fields.remove("surname");
    let errors = rig.engine.check_record("piv-escrow", &bad).unwrap_err();
    let named: Vec<_> = errors
        .iter()
        .map(|e| (e.field.as_str(), e.problem.as_str()))
        .collect();
    assert_eq!(
        named,
        [
            ("surname", "is required"),
            ("pin", "is 2 characters long, at least 6 are needed")
        ]
    );
    let e = rig.engine.check_record("nope", &bad).unwrap_err();
    assert_eq!(e[0].field, "profile");
}

#[test]
fn escrow_overrides_are_audited_at_load_and_on_every_card() {
    let rig = rig(0);
    let at_load = rig.audit.actions("profile.escrow-override");
    assert_eq!(at_load.len(), 1, "{at_load:?}");
    assert_eq!(at_load[0].subject, "profile employee-badge");
    assert!(at_load[0]
        .detail
        .contains("slot 9C (digital signature, p256): escrow instead of the default card"));
    for n in 0..2 {
        let mut card = blank(5400 + n);
        let f = issue_badge(&rig, &mut card, n, |_, _| {});
        assert!(issued(&f));
    }
    let all = rig.audit.actions("profile.escrow-override");
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].subject, "00005400");
    assert!(all[1]
        .detail
        .starts_with("applied to card 00005400: profile employee-badge slot 9C"));
    assert_eq!(all[2].subject, "00005401");
}

#[test]
fn the_station_sees_a_script_per_round_trip_with_expected_status_words() {
    let rig = rig(0);
    let mut card = blank(5500);
    let (mut session, script) = rig
        .engine
        .start(request(&card, "employee-badge", badge_record(0)))
        .unwrap();
    // Round trip 1: SELECT ISD, GET DATA CPLC, INITIALIZE UPDATE.
    let apdus: Vec<&[u8]> = script
        .steps
        .iter()
        .map(|s| match s {
            Step::Apdu { command, expect, .. } => {
                assert_eq!(expect.len(), 1);
                assert!(expect[0].matches(0x9000));
                command.as_slice()
            }
            Step::Reset { .. } => panic!("no reset"),
        })
        .collect();
    assert_eq!(apdus[0], hex::decode("00A4040008A00000015100000000").unwrap());
    assert_eq!(apdus[1], hex::decode("80CA9F7F00").unwrap());
    assert_eq!(&apdus[2][..5], &hex::decode("8050010008").unwrap()[..]);
    let reply = run_script(&mut card, &script);
    let Next::Script(rt2) = session.on_reply(reply) else {
        panic!("round trip 2 expected")
    };
    // Round trip 2 starts with EXTERNAL AUTHENTICATE at level 33; every
    // other command is secured (CLA bit 04) and carries a Le.
    let Step::Apdu { command, .. } = &rt2.steps[0] else {
        panic!()
    };
    assert_eq!(&command[..4], &[0x84, 0x82, 0x33, 0x00]);
    for s in &rt2.steps[1..] {
        let Step::Apdu { command, .. } = s else { panic!() };
        assert_eq!(command[0] & 0x04, 0x04, "{}", hex::encode(command));
        let parsed = vsc::codec::CommandApdu::parse(command).unwrap();
        assert!(parsed.ne().is_some(), "{}", hex::encode(command));
    }
    // Extended APDUs where the secured command is longer than 255 bytes
    // (the certificates).
    assert!(rt2
        .steps
        .iter()
        .any(|s| matches!(s, Step::Apdu { command, .. } if command[4] == 0 && command.len() > 260)));
    let reply = run_script(&mut card, &rt2);
    assert!(reply.stopped_at.is_none());
    let Next::Done(f) = session.on_reply(reply) else {
        panic!("done expected")
    };
    assert!(issued(&f));
    // A late reply changes nothing.
    let Next::Done(again) = session.on_reply(Reply::default()) else {
        panic!()
    };
    assert!(void_reason(&again).contains("already ended"));
    assert_eq!(rig.escrow.outcomes().len(), 1);
}

const RETIRED: &str = r#"id = "retired"
[card]
validity_days = 400

[fields.name]
required = true

[[slot]]
key = "82"
algorithm = "p256"
pin_policy = "always"
[slot.certificate]
subject = { CN = "{name} (old encryption key)" }
validity_days = 365
key_usage = ["key_agreement"]

[[slot]]
key = "9e"
algorithm = "rsa2048"
escrow = "card"
[slot.certificate]
subject = { CN = "card of {name}", C = "GB" }
validity_days = 365
key_usage = ["digital_signature"]
extended_key_usage = ["1.3.6.1.5.5.7.3.2"]
"#;

#[test]
fn a_minimal_profile_with_a_retired_key_and_a_card_generated_rsa_key() {
    use std::sync::Arc;
    let profile = keyserver::profile::Profile::parse(RETIRED, "retired.toml").unwrap();
    let keys = Arc::new(keyserver::issue::testing::TestKeys::new().unwrap());
    let escrow = Arc::new(keyserver::issue::testing::MemoryEscrow::default());
    let audit = Arc::new(keyserver::issue::testing::MemoryAudit::default());
    let engine = keyserver::issue::Engine::new(
        vec![profile.clone()],
        keys.clone(),
        escrow.clone(),
        audit.clone(),
        Arc::new(rsa_pool(0)),
    )
    .unwrap();
    // 9E is generated on the card: an override (its default is escrow).
    assert_eq!(audit.actions("profile.escrow-override").len(), 1);
    let mut card = blank(5600);
    let record = record("r1", &[("name", "Alan")]);
    let f = issue_card(&engine, request(&card, "retired", record), &mut card, |_, _| {});
    assert!(issued(&f), "{:?}", f.outcome);
    assert_eq!(f.round_trips, 3);
    let rig = Rig {
        engine,
        keys,
        escrow,
        audit,
        log: Default::default(),
    };
    // The blank PIN and PUK stay random here too (the profile's defaults).
    let pin = f
        .secrets
        .as_ref()
        .unwrap()
        .pin
        .as_ref()
        .unwrap()
        .expose_secret()
        .to_vec();
    verify_issued(&rig, &mut card, &profile, &f, &pin);
    reset(&mut card);
    select_piv(&mut card);
    // Key History: one retired key with its certificate on the card.
    assert_eq!(
        get_object(&mut card, 0x5F_C10C).unwrap(),
        [0xC1, 0x01, 0x01, 0xC2, 0x01, 0x00, 0xFE, 0x00]
    );
    // No CHUID, no printed information in this profile.
    assert_eq!(get_object(&mut card, 0x5F_C102), Err(StatusWord::FileNotFound));
    // The RSA key on the card is 2048 bits, generated there (origin 01).
    let r = send(&mut card, &cmd(0x00, 0xF7, 0x00, 0x9E, &[]));
    let objs = vsc::codec::TlvRef::parse_all(&r.data).unwrap();
    let find = |t: u32| objs.iter().find(|o| o.tag.raw() == t).unwrap().value.to_vec();
    assert_eq!(find(0x01), [0x07]);
    assert_eq!(find(0x03), [0x01]);
    // The retired key's PIN policy is the profile's ("always").
    let r = send(&mut card, &cmd(0x00, 0xF7, 0x00, 0x82, &[]));
    let objs = vsc::codec::TlvRef::parse_all(&r.data).unwrap();
    assert_eq!(objs.iter().find(|o| o.tag.raw() == 0x02).unwrap().value[0], 0x03);
}
