#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The issue's in-process test: the whole keyserver as `keyserver serve`
//! wires it — custody initialized and unlocked in a temporary directory,
//! the durable archive and audit log, the RSA key pool, the engine over the
//! shipped profiles, the service on loopback with mutual TLS (the station's
//! identity from custody's enrollment CA) — and the test station driving
//! blank software cards (GP test keys). A job of 20 cards per profile,
//! submitted through the admin socket; every card is then checked from the
//! outside, and the archive and the audit log verified. Then a station
//! reply with one flipped bit: that card is void, the next one fine.

mod e2e_support;
mod issue_support;
mod support;

use e2e_support::{blank, issue_all, job_csv, Stack};
use protos::pb;

/// Cards in flight at once on the station (several, so that seals and
/// audit entries share fsyncs).
const IN_FLIGHT: usize = 4;

async fn job_of_20_then_a_flipped_bit(profile_id: &str, first_serial: u32, rsa_pool: usize) {
    let stack = Stack::start(rsa_pool).await;
    let profile = stack.profile(profile_id);
    let station = stack.station("desk-1").await;

    let job = format!("{profile_id}-20");
    let (csv, record_pins) = job_csv(profile_id, "p", 20);
    stack.submit(&job, profile_id, &csv).await;
    let cards = (0..20).map(|i| blank(first_serial + i)).collect();
    let issued = issue_all(&station, &job, "card", cards, IN_FLIGHT).await;

    let expected_round_trips = if profile.has_card_generated_keys() { 3 } else { 2 };
    for c in &issued {
        assert_eq!(
            c.result.outcome,
            pb::Outcome::Ok as i32,
            "{}: {}",
            c.request_id,
            c.result.reason
        );
        assert_eq!(c.done.outcome, pb::Outcome::Ok as i32);
        assert_eq!(c.round_trips, expected_round_trips, "{}", c.request_id);
        assert!(c.round_trips <= 3);
        assert_eq!(c.result.round_trips, c.round_trips);
    }
    let status = stack.harness.status(&job).await;
    assert_eq!(
        (
            status.total,
            status.issued,
            status.voided,
            status.queued,
            status.in_flight
        ),
        (20, 20, 0, 0, 0),
        "{status:?}"
    );
    assert_eq!(status.max_round_trips, expected_round_trips);

    // Every card, from the outside.
    let pins = stack.pins(&job, &record_pins);
    let mut records = std::collections::BTreeSet::new();
    for mut c in issued {
        let serial = c.card.card().identity().serial();
        assert_eq!(c.result.card_serial, format!("{serial:08}"));
        let record = stack.history(serial).record.unwrap();
        assert!(records.insert(record.clone()), "record {record} got two cards");
        let pin = pins.get(&record).unwrap().clone();
        stack.verify_card(&mut c.card, &profile, &pin);
    }
    assert_eq!(records.len(), 20);
    stack.verify_logs();

    // The audit log tells the same story: per card, one `card.issue` by the
    // station (the engine) and one `card.perso` (the service), both ok.
    let entries = stack.audit_entries();
    let count = |action: &str, outcome: &str| {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["outcome"] == outcome)
            .count()
    };
    assert_eq!(count("card.issue", "ok"), 20);
    assert_eq!(count("card.perso", "ok"), 20);
    assert_eq!(count("card.issue", "failed"), 0);
    assert_eq!(count("station.enroll", "ok"), 1, "{entries:#?}");

    // One bit flipped in the station's reply to round trip 2: that card is
    // void (archive, audit, job), its record queued again; the next card
    // is issued and verifies.
    let job2 = format!("{profile_id}-flip");
    let (csv, record_pins) = job_csv(profile_id, "f", 2);
    stack.submit(&job2, profile_id, &csv).await;
    let bad_serial = first_serial + 100;
    let mut bad = blank(bad_serial);
    let run = station
        .issue_with("flip-1", &job2, &mut bad, |round_trip, reply| {
            if round_trip == 2 {
                let last = reply.responses.last_mut().unwrap();
                last[0] ^= 0x01;
            }
        })
        .await
        .unwrap();
    assert_eq!(run.result.outcome, pb::Outcome::Failed as i32);
    assert!(
        run.result.reason.contains("round trip 2"),
        "{}",
        run.result.reason
    );
    let h = stack.history(bad_serial);
    let events: Vec<_> = h.events.iter().map(|e| e.2).collect();
    assert_eq!(
        events,
        [
            keyserver::archive::ManifestEvent::Sealed,
            keyserver::archive::ManifestEvent::Void
        ]
    );
    let reason = h.events[1].3.clone().unwrap();
    assert!(reason.contains("round trip 2"), "{reason}");
    let status = stack.harness.status(&job2).await;
    assert_eq!(
        (status.issued, status.voided, status.queued, status.in_flight),
        (0, 1, 2, 0)
    );
    let entries = stack.audit_entries();
    let bad_subject = format!("{bad_serial:08}");
    assert!(entries.iter().any(|e| e["action"] == "card.issue"
        && e["outcome"] == "failed"
        && e["subject"] == bad_subject.as_str()
        && e["detail"].as_str().unwrap().contains("round trip 2")));
    assert!(entries.iter().any(|e| e["action"] == "card.perso"
        && e["outcome"] == "failed"
        && e["subject"] == format!("card {bad_subject}").as_str()));
    stack.verify_logs();

    // The next cards are fine: both records of the job get one.
    let next = issue_all(
        &station,
        &job2,
        "after-flip",
        vec![blank(first_serial + 101), blank(first_serial + 102)],
        1,
    )
    .await;
    let pins = stack.pins(&job2, &record_pins);
    for mut c in next {
        assert_eq!(c.result.outcome, pb::Outcome::Ok as i32, "{}", c.result.reason);
        let serial = c.card.card().identity().serial();
        let record = stack.history(serial).record.unwrap();
        stack.verify_card(&mut c.card, &profile, pins.get(&record).unwrap());
    }
    let status = stack.harness.status(&job2).await;
    assert_eq!(
        (
            status.total,
            status.issued,
            status.voided,
            status.queued,
            status.in_flight
        ),
        (2, 2, 1, 0, 0)
    );
    stack.verify_logs();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn employee_badge_job_of_20_and_a_flipped_bit() {
    job_of_20_then_a_flipped_bit("employee-badge", 7_000_000, 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn piv_escrow_job_of_20_and_a_flipped_bit() {
    // A small pool, refilled in the background: some cards take a pooled
    // key, some generate on the spot (both paths are real).
    job_of_20_then_a_flipped_bit("piv-escrow", 8_000_000, 8).await;
}
