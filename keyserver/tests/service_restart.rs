//! Restarts and shutdowns: what is in flight becomes void and its record is
//! queued again; secrets never reach sled in clear.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use protos::pb;
use support::station::{open_msg, TestStation};
use support::{blank_card, people, scan_dir, Harness};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_voids_and_requeues_what_was_in_flight() {
    let mut h = Harness::start().await;
    h.submit("batch", &people(3)).await;
    let bundle = h.enroll("desk-1", &[]).await;
    let st = TestStation::connect(&bundle).await.unwrap();
    st.request("req-1", "batch").await;
    st.request("req-2", "batch").await;
    st.job_status_where("batch", |j| j.in_flight == 2).await;
    h.stop().await;
    drop(st);
    assert_eq!(h.jobs.status(Some("batch")).unwrap()[0].in_flight, 2);

    h.serve().await;
    let s = h.status("batch").await;
    assert_eq!(
        (s.total, s.issued, s.queued, s.in_flight, s.voided),
        (3, 0, 3, 0, 2)
    );
    let voids = h.audit.with_action("card.void");
    assert_eq!(voids.len(), 2);
    assert!(voids
        .iter()
        .all(|e| e.actor == "keyserver" && e.detail.contains("keyserver restarted")));

    // The station's journal resends: it learns the card is void. (The
    // restarted keyserver listens on a new port here.)
    let mut bundle = bundle;
    bundle.keyserver = h.addr();
    let st = TestStation::connect(&bundle).await.unwrap();
    st.request("req-1", "batch").await;
    let r = st.result("req-1").await;
    assert_eq!(r.outcome, pb::Outcome::Failed as i32);
    assert!(r.reason.contains("keyserver restarted"), "{r:?}");
    // And the records are issued by new requests.
    for i in 0..3 {
        let run = st
            .issue(&format!("new-{i}"), "batch", &mut blank_card(i))
            .await
            .unwrap();
        assert_eq!(run.result.outcome, pb::Outcome::Ok as i32);
    }
    let s = h.status("batch").await;
    assert_eq!((s.issued, s.queued, s.in_flight), (3, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_voids_the_cards_in_personalization() {
    let mut h = Harness::start().await;
    h.submit("batch", &people(2)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    st.request("req-1", "batch").await;
    let mut p = st.raw_perso().await.unwrap();
    p.send(open_msg("req-1")).await;
    assert!(p.next().await.unwrap().is_some());
    h.stop().await;
    let (end, _) = p.end().await;
    assert!(end.is_err(), "{end:?}");
    assert!(
        h.engine.aborts().iter().any(|a| a.contains("shutting down")),
        "{:?}",
        h.engine.events()
    );
    let s = h.jobs.status(Some("batch")).unwrap().remove(0);
    assert_eq!((s.queued, s.in_flight, s.voided), (2, 0, 1));
    assert!(!h.admin_socket().exists(), "the admin socket is removed");
    // The CLI says no keyserver runs.
    let e = keyserver::service::client::connect(h.data(), 1 << 20)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("no keyserver is running"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_never_opened_are_voided_by_the_sweep() {
    let mut limits = support::test_limits();
    limits.unopened_ttl = Duration::ZERO;
    let h = Harness::start_with(limits).await;
    h.submit("batch", &people(2)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    st.request("req-1", "batch").await;
    st.request("req-2", "batch").await;
    st.job_status_where("batch", |j| j.in_flight == 2).await;
    // req-2 is being personalized: the sweep leaves it alone.
    let mut p = st.raw_perso().await.unwrap();
    p.send(open_msg("req-2")).await;
    assert!(p.next().await.unwrap().is_some());
    h.server().sweep_unopened().await;
    let s = h.status("batch").await;
    assert_eq!((s.queued, s.in_flight, s.voided), (1, 1, 1));
    let e = st.personalize("req-1", &mut blank_card(1)).await.unwrap();
    assert_eq!(e.0.outcome, pb::Outcome::Failed as i32);
    assert_eq!(h.audit.with_action("card.void").len(), 1);
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_pin_in_clear_in_sled_or_the_audit_log() {
    let h = Harness::start().await;
    h.submit("batch", &people(6)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    for i in 0..4 {
        let run = st
            .issue(&format!("req-{i}"), "batch", &mut blank_card(i))
            .await
            .unwrap();
        assert_eq!(run.result.outcome, pb::Outcome::Ok as i32);
    }
    // The random PINs/PUKs the engine generated are in the job output,
    // sealed.
    let secrets = h.jobs.issued_secrets("batch").unwrap();
    assert_eq!(secrets.len(), 4);
    h.db.flush().unwrap();
    let sled_dir = h.data().join("service.sled");
    let audit = h.audit.text();
    for i in 1..=6 {
        let pin = format!("7391{i:02}");
        assert_eq!(scan_dir(&sled_dir, pin.as_bytes()), 0, "record PIN {pin} in sled");
        assert!(!audit.contains(&pin), "record PIN {pin} in the audit log");
    }
    for (_, s) in &secrets {
        for v in [s.pin.as_ref().unwrap(), s.puk.as_ref().unwrap()] {
            assert_eq!(
                scan_dir(&sled_dir, v.expose_secret()),
                0,
                "an issued secret in sled"
            );
            assert!(!audit.contains(std::str::from_utf8(v.expose_secret()).unwrap()));
        }
    }
    // The scan itself finds what is there.
    assert!(scan_dir(&sled_dir, b"batch") > 0);
}
