#![allow(clippy::unwrap_used, clippy::expect_used)]
//! No key in clear: every byte that crosses the wire (scripts and replies),
//! the sealed master VSC, the audit log, outcomes and their Debug forms are
//! scanned for every secret of the card (escrowed private keys, the
//! management key, the card's SCP03 keys, PIN, PUK), raw, hex and base64.

mod issue_support;

use base64::Engine as _;
use issue_support::*;
use keyserver::issue::testing::run_script;
use keyserver::ports::{CardEngine, IssuerKeys, Next};
use keyserver::script::Step;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PrivateKeyParts;
use vsc::file::KeyRef;

fn forms(secret: &[u8]) -> Vec<Vec<u8>> {
    vec![
        secret.to_vec(),
        hex::encode(secret).into_bytes(),
        hex::encode_upper(secret).into_bytes(),
        base64::engine::general_purpose::STANDARD
            .encode(secret)
            .into_bytes(),
        base64::engine::general_purpose::STANDARD_NO_PAD
            .encode(secret)
            .into_bytes(),
    ]
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn assert_absent(what: &str, hay: &[u8], secrets: &[(String, Vec<u8>)]) {
    for (name, s) in secrets {
        for f in forms(s) {
            assert!(!contains(hay, &f), "{name} found in {what}");
        }
    }
}

fn scan(profile: &str, serial: u32, record: keyserver::record::Record, rig: &Rig) {
    let mut card = blank(serial);
    let pin_of_record = record.field("pin").map(|p| p.as_bytes().to_vec());
    let (mut session, mut script) = rig.engine.start(request(&card, profile, record)).unwrap();
    let mut wire = Vec::new();
    let finished = loop {
        for s in &script.steps {
            if let Step::Apdu { command, .. } = s {
                wire.extend_from_slice(command);
            }
        }
        let reply = run_script(&mut card, &script);
        for r in &reply.responses {
            wire.extend_from_slice(r);
        }
        match session.on_reply(reply) {
            Next::Script(next) => script = next,
            Next::Done(f) => break f,
        }
    };
    assert!(issued(&finished), "{:?}", finished.outcome);

    // The card's secrets.
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    let (sealed, master) = master_of(rig, serial);
    for entry in master.secret_keys() {
        let KeyRef::PivSlot(slot) = entry.id else { continue };
        let der = entry.material_for_card_personalization().expose_secret().to_vec();
        if let Ok(k) = p256::SecretKey::from_pkcs8_der(&der) {
            secrets.push((format!("P-256 key {slot:02X}"), k.to_bytes().to_vec()));
        } else if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(&der) {
            for (i, p) in k.primes().iter().enumerate() {
                secrets.push((format!("RSA key {slot:02X} prime {i}"), p.to_bytes_be()));
            }
            secrets.push((format!("RSA key {slot:02X} d"), k.d().to_bytes_be()));
        } else if slot == 0x9B {
            continue;
        } else {
            panic!("slot {slot:02X}: unreadable key");
        }
        secrets.push((format!("PKCS#8 of {slot:02X}"), der));
    }
    assert!(secrets.len() >= 3, "{}", secrets.len());
    let mgmt = rig.keys.management_key(serial).unwrap();
    secrets.push(("management key".into(), mgmt.expose_secret().to_vec()));
    let card_keys = rig.keys.card_keys(&card.card().identity().kdd()).unwrap();
    for (name, k) in [
        ("Key-ENC", card_keys.keys.enc()),
        ("Key-MAC", card_keys.keys.mac()),
        ("Key-DEK", card_keys.keys.dek()),
    ] {
        secrets.push((format!("card {name}"), k.expose_secret().to_vec()));
    }
    let (_, kek) = rig.keys.archive_kek();
    secrets.push(("archive KEK".into(), kek.expose_secret().to_vec()));
    if let Some(s) = &finished.secrets {
        for (name, v) in [("PIN", &s.pin), ("PUK", &s.puk)] {
            if let Some(v) = v {
                secrets.push((name.into(), v.expose_secret().to_vec()));
            }
        }
    }
    if let Some(pin) = pin_of_record {
        secrets.push(("record PIN".into(), pin));
    }

    assert_absent("the wire", &wire, &secrets);
    assert_absent("the sealed master VSC", &sealed.bytes, &secrets);
    let audit: Vec<u8> = format!("{:?}", rig.audit.events()).into_bytes();
    assert_absent("the audit log", &audit, &secrets);
    assert_absent(
        "the outcome (Debug)",
        format!("{finished:?}").as_bytes(),
        &secrets,
    );
    assert_absent(
        "the escrow outcomes",
        format!("{:?}", rig.escrow.outcomes()).as_bytes(),
        &secrets,
    );
}

#[test]
fn no_secret_of_an_employee_badge_in_clear() {
    let rig = rig(0);
    scan("employee-badge", 9000, badge_record(0), &rig);
}

#[test]
fn no_secret_of_a_piv_card_in_clear() {
    let rig = rig(1);
    scan("piv-escrow", 9001, piv_record(0), &rig);
}

#[test]
fn void_reasons_hold_no_secret() {
    // Every step of round trip 2 answered wrongly in turn: the reasons name
    // steps and status words, never values.
    let rig = rig_with(ReusedRsa::new());
    let mut reasons = String::new();
    for step in 0..40usize {
        let mut card = blank(9100 + step as u32);
        let f = issue_badge(&rig, &mut card, 0, |round, reply| {
            if round == 2 {
                if let Some(r) = reply.responses.get_mut(step) {
                    let n = r.len();
                    r[n / 2] ^= 0x42;
                }
            }
        });
        if issued(&f) {
            // Past the last step of round trip 2.
            assert!(step > 10, "{step}");
            break;
        }
        reasons.push_str(void_reason(&f));
        reasons.push('\n');
    }
    assert!(reasons.contains("R-MAC does not verify"), "{reasons}");
    let mgmt = rig.keys.management_key(9100).unwrap();
    assert_absent(
        "the void reasons",
        reasons.as_bytes(),
        &[("management key".into(), mgmt.expose_secret().to_vec())],
    );
    assert!(!reasons.contains("123456"));
}
