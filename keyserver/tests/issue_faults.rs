#![allow(clippy::unwrap_used, clippy::expect_used)]
//! What goes wrong: flipped bits, malformed replies, a failing escrow or
//! audit log, a station that goes away. Each voids that card (no panic),
//! the escrow and audit stand-ins say so, and the next card is fine. The
//! escrow order: the master VSC is sealed before round trip 2 leaves.

mod issue_support;

use issue_support::*;
use keyserver::issue::testing::{issue_card, run_script};
use keyserver::ports::{AuditOutcome, CardEngine, CardOutcome, Next};
use keyserver::script::Reply;
use proptest::prelude::*;
use vsc::card::LifeCycle;
use vsc::codec::StatusWord;

/// Asserts the card was sealed and then recorded void, and audited as failed.
fn assert_sealed_then_void(rig: &Rig, serial: u32) {
    assert!(rig.escrow.sealed().iter().any(|s| s.serial == serial), "sealed");
    let outcomes: Vec<_> = rig
        .escrow
        .outcomes()
        .into_iter()
        .filter(|(s, _, _)| *s == serial)
        .collect();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert!(matches!(outcomes[0].2, CardOutcome::Void { .. }));
    let failed: Vec<_> = rig
        .audit
        .actions("card.issue")
        .into_iter()
        .filter(|e| e.subject == format!("{serial:08}"))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].outcome, AuditOutcome::Failed);
}

fn good_card(rig: &Rig, serial: u32, n: u32) {
    let mut card = blank(serial);
    let f = issue_badge(rig, &mut card, n, |_, _| {});
    assert!(issued(&f), "{:?}", f.outcome);
}

#[test]
fn one_flipped_bit_in_round_trip_2_voids_that_card_and_the_next_is_fine() {
    let rig = rig(0);
    good_card(&rig, 6000, 0);
    let mut card = blank(6001);
    let f = issue_badge(&rig, &mut card, 1, |round, reply| {
        if round == 2 {
            // A bit of the answer to UPDATE BINARY of the address EF.
            let r = &mut reply.responses[6];
            r[0] ^= 0x10;
        }
    });
    let reason = void_reason(&f);
    assert!(reason.starts_with("round trip 2, step 7 of "), "{reason}");
    assert!(reason.ends_with("): the R-MAC does not verify"), "{reason}");
    assert!(f.secrets.is_none());
    assert_sealed_then_void(&rig, 6001);
    good_card(&rig, 6002, 2);
    assert_eq!(rig.escrow.sealed().len(), 3);
}

#[test]
fn a_flipped_bit_in_round_trip_3_voids_a_card_with_generated_keys() {
    let rig = rig(2);
    let mut card = blank(6100);
    let f = issue_card(
        &rig.engine,
        request(&card, "piv-escrow", piv_record(0)),
        &mut card,
        |round, reply| {
            if round == 3 {
                let last = reply.responses.last_mut().unwrap();
                let at = last.len() - 3;
                last[at] ^= 0x01;
            }
        },
    );
    let reason = void_reason(&f);
    assert!(
        reason.contains("round trip 3") && reason.contains("(SET STATUS SECURED)"),
        "{reason}"
    );
    assert_eq!(f.round_trips, 3);
    assert_sealed_then_void(&rig, 6100);
    // A flipped bit in the public key GENERATE returned.
    let mut card = blank(6101);
    let f = issue_card(
        &rig.engine,
        request(&card, "piv-escrow", piv_record(1)),
        &mut card,
        |round, reply| {
            if round == 2 {
                let last = reply.responses.last_mut().unwrap();
                last[10] ^= 0x80;
            }
        },
    );
    assert!(
        void_reason(&f).contains("(GENERATE 9C p256)"),
        "{}",
        void_reason(&f)
    );
    assert_sealed_then_void(&rig, 6101);
}

#[test]
fn flipped_bits_in_round_trip_1_are_caught() {
    let rig = rig(0);
    // In the CPLC outside the fields of the KDD: caught when the CPLC is
    // re-read under the secure channel.
    let mut card = blank(6200);
    let f = issue_badge(&rig, &mut card, 0, |round, reply| {
        if round == 1 {
            reply.responses[1][3 + 6] ^= 0x04; // OS release date
        }
    });
    assert!(
        void_reason(&f).contains("(GET DATA CPLC (re-read)): the answer is not the one expected"),
        "{}",
        void_reason(&f)
    );
    // In the FCI: the same.
    let mut card = blank(6201);
    let f = issue_badge(&rig, &mut card, 0, |round, reply| {
        if round == 1 {
            reply.responses[0][5] ^= 0x01;
        }
    });
    assert!(
        void_reason(&f).contains("(SELECT ISD (re-read))"),
        "{}",
        void_reason(&f)
    );
    // In the card cryptogram: nothing is sealed.
    let mut card = blank(6202);
    let before = rig.escrow.sealed().len();
    let f = issue_badge(&rig, &mut card, 0, |round, reply| {
        if round == 1 {
            reply.responses[2][25] ^= 0x01;
        }
    });
    assert!(
        void_reason(&f).contains("card cryptogram is wrong"),
        "{}",
        void_reason(&f)
    );
    assert_eq!(rig.escrow.sealed().len(), before);
    // A reserved bit of i.
    let mut card = blank(6203);
    let f = issue_badge(&rig, &mut card, 0, |round, reply| {
        if round == 1 {
            reply.responses[2][12] ^= 0x80;
        }
    });
    assert!(
        void_reason(&f).contains("reserved options"),
        "{}",
        void_reason(&f)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any single bit flipped anywhere in any reply voids the card.
    #[test]
    fn any_flipped_bit_voids_the_card(round in 1u32..=2, which in any::<prop::sample::Index>(), byte in any::<prop::sample::Index>(), bit in 0u8..8) {
        let rig = rig(0);
        let mut card = blank(6300);
        let f = issue_badge(&rig, &mut card, 0, |r, reply| {
            if r == round {
                let resp = which.get_mut(&mut reply.responses);
                let i = byte.index(resp.len());
                resp[i] ^= 1 << bit;
            }
        });
        prop_assert!(!issued(&f), "round {round}: a flipped bit went unnoticed");
        // Never a panic, never an unrecorded sealed card.
        if f.sealed.is_some() {
            prop_assert_eq!(rig.escrow.outcomes().len(), 1);
        }
    }
}

/// A way to bend a reply.
type Bend = Box<dyn Fn(&mut Reply)>;

/// The ways a reply can be malformed.
fn malformations() -> Vec<(&'static str, Bend)> {
    vec![
        (
            "too few",
            Box::new(|r: &mut Reply| {
                r.responses.pop();
            }),
        ),
        (
            "too many",
            Box::new(|r: &mut Reply| r.responses.push(vec![0x90, 0x00])),
        ),
        ("none", Box::new(|r: &mut Reply| r.responses.clear())),
        ("garbage", Box::new(|r: &mut Reply| r.responses[0] = vec![0x90])),
        (
            "empty response",
            Box::new(|r: &mut Reply| r.responses[1] = Vec::new()),
        ),
        (
            "stopped_at",
            Box::new(|r: &mut Reply| {
                r.responses.truncate(1);
                r.stopped_at = Some(0);
            }),
        ),
        (
            "stopped_at beyond",
            Box::new(|r: &mut Reply| r.stopped_at = Some(10_000)),
        ),
        ("card_removed", Box::new(|r: &mut Reply| r.card_removed = true)),
        (
            "atrs",
            Box::new(|r: &mut Reply| r.atrs_after_reset.push(vec![0x3B, 0x00])),
        ),
        (
            "SW only",
            Box::new(|r: &mut Reply| {
                for x in &mut r.responses {
                    *x = vec![0x90, 0x00];
                }
            }),
        ),
    ]
}

#[test]
fn malformed_replies_void_the_card_without_panic() {
    let rig = rig_with(ReusedRsa::new());
    let mut serial = 7000;
    for (profile, rounds) in [("employee-badge", 2u32), ("piv-escrow", 3)] {
        for round in 1..=rounds {
            for (name, bend) in malformations() {
                serial += 1;
                let mut card = blank(serial);
                let record = if profile == "piv-escrow" {
                    piv_record(serial)
                } else {
                    badge_record(serial)
                };
                let f = issue_card(
                    &rig.engine,
                    request(&card, profile, record),
                    &mut card,
                    |r, reply| {
                        if r == round {
                            bend(reply);
                        }
                    },
                );
                let reason = void_reason(&f).to_string();
                assert!(!reason.is_empty(), "{profile} round {round} {name}");
                assert!(f.secrets.is_none());
                if round > 1 {
                    assert_sealed_then_void(&rig, serial);
                }
                if name == "card_removed" {
                    assert!(reason.contains("the card was removed"), "{reason}");
                }
            }
        }
        // The engine is fine afterwards.
        serial += 1;
        let mut card = blank(serial);
        let record = if profile == "piv-escrow" {
            piv_record(1)
        } else {
            badge_record(1)
        };
        let f = issue_card(&rig.engine, request(&card, profile, record), &mut card, |_, _| {});
        assert!(issued(&f), "{:?}", f.outcome);
    }
}

#[test]
fn the_master_vsc_is_sealed_before_round_trip_2_is_returned() {
    let rig = rig(0);
    let mut card = blank(8000);
    let (mut session, rt1) = rig
        .engine
        .start(request(&card, "employee-badge", badge_record(0)))
        .unwrap();
    rig.log.push("test: round trip 1 returned");
    assert!(rig.escrow.sealed().is_empty());
    let reply = run_script(&mut card, &rt1);
    let next = session.on_reply(reply);
    rig.log.push("test: round trip 2 returned");
    let Next::Script(rt2) = next else {
        panic!("round trip 2 expected")
    };
    assert_eq!(
        rig.log.events(),
        [
            "test: round trip 1 returned",
            "escrow.seal 00008000",
            "test: round trip 2 returned"
        ]
    );
    // The sealed master already holds every escrowed key the script carries.
    let (_, master) = master_of(&rig, 8000);
    assert_eq!(
        master
            .secret_keys()
            .filter(|k| matches!(k.id, vsc::file::KeyRef::PivSlot(0x9A | 0x9C | 0x9D | 0x9E)))
            .count(),
        4
    );
    let reply = run_script(&mut card, &rt2);
    let Next::Done(f) = session.on_reply(reply) else {
        panic!()
    };
    assert!(issued(&f));
    assert_eq!(rig.log.events().last().unwrap(), "escrow.issued 00008000");
}

#[test]
fn when_sealing_fails_no_script_with_keys_leaves() {
    let rig = rig(0);
    rig.escrow.fail_seal(true);
    let mut card = blank(8100);
    let (mut session, rt1) = rig
        .engine
        .start(request(&card, "employee-badge", badge_record(0)))
        .unwrap();
    let reply = run_script(&mut card, &rt1);
    let Next::Done(f) = session.on_reply(reply) else {
        panic!("no round trip 2 may leave when sealing fails")
    };
    assert!(
        void_reason(&f).starts_with("sealing the master VSC: sealing the master VSC of card 00008100"),
        "{}",
        void_reason(&f)
    );
    assert!(f.sealed.is_none());
    assert_eq!(f.round_trips, 1);
    assert!(rig.escrow.outcomes().is_empty());
    assert_eq!(rig.log.events(), ["escrow.seal-failed 00008100"]);
    // The card is untouched: blank PIN, OP_READY, no keys.
    assert_eq!(card.card().life_cycle(), LifeCycle::OpReady);
    reset(&mut card);
    select_piv(&mut card);
    assert_eq!(verify_pin(&mut card, b"123456"), StatusWord::Success);
    assert_eq!(
        metadata_public_key(&mut card, 0x9A),
        Err(StatusWord::ReferencedDataNotFound)
    );
    let audit = rig.audit.actions("card.issue");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].outcome, AuditOutcome::Failed);
    // Sealing works again: the next card is fine.
    rig.escrow.fail_seal(false);
    good_card(&rig, 8101, 1);
}

#[test]
fn a_failing_outcome_record_or_audit_voids_the_card() {
    let rig = rig(0);
    rig.escrow.fail_record(true);
    let mut card = blank(8200);
    let f = issue_badge(&rig, &mut card, 0, |_, _| {});
    let reason = void_reason(&f);
    assert!(
        reason.contains("personalized but its outcome could not be recorded"),
        "{reason}"
    );
    assert!(reason.contains("and recording it failed"), "{reason}");
    rig.escrow.fail_record(false);

    let mut card = blank(8201);
    let (mut session, rt1) = rig
        .engine
        .start(request(&card, "employee-badge", badge_record(1)))
        .unwrap();
    let Next::Script(rt2) = session.on_reply(run_script(&mut card, &rt1)) else {
        panic!()
    };
    rig.audit.fail(true);
    let Next::Done(f) = session.on_reply(run_script(&mut card, &rt2)) else {
        panic!()
    };
    rig.audit.fail(false);
    assert!(
        void_reason(&f).contains("the card is personalized but the audit log"),
        "{}",
        void_reason(&f)
    );
    let last = rig.escrow.outcomes().pop().unwrap();
    assert_eq!(last.0, 8201);
    assert!(matches!(last.2, CardOutcome::Void { .. }));
}

#[test]
fn abort_and_drop_void_a_sealed_card() {
    let rig = rig(0);
    let mut card = blank(8300);
    let (mut session, rt1) = rig
        .engine
        .start(request(&card, "employee-badge", badge_record(0)))
        .unwrap();
    let Next::Script(_) = session.on_reply(run_script(&mut card, &rt1)) else {
        panic!()
    };
    let f = session.abort("the station went away");
    assert_eq!(void_reason(&f), "aborted: the station went away");
    assert!(f.sealed.is_some());
    assert_sealed_then_void(&rig, 8300);
    // Aborting twice records nothing more.
    let again = session.abort("again");
    assert!(void_reason(&again).contains("already ended"));
    assert_eq!(rig.escrow.outcomes().len(), 1);

    let mut card = blank(8301);
    let (mut session, rt1) = rig
        .engine
        .start(request(&card, "employee-badge", badge_record(1)))
        .unwrap();
    let Next::Script(_) = session.on_reply(run_script(&mut card, &rt1)) else {
        panic!()
    };
    drop(session);
    assert_sealed_then_void(&rig, 8301);

    // Aborted before round trip 1 came back: nothing sealed, audited.
    let card = blank(8302);
    let (mut session, _) = rig
        .engine
        .start(request(&card, "employee-badge", badge_record(2)))
        .unwrap();
    let f = session.abort("malformed message");
    assert!(f.sealed.is_none() && f.serial.is_none());
    let audit = rig.audit.actions("card.issue");
    assert_eq!(audit.last().unwrap().subject, "request req-badge-2");
}
