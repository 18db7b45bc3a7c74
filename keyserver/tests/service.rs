//! The gRPC service in process: real mutual TLS on loopback, the test
//! station relaying to software cards, the fake engine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use protos::pb;
use support::station::TestStation;
use support::{blank_card, people, Harness};

fn ok(r: &pb::Result) -> bool {
    r.outcome == pb::Outcome::Ok as i32
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hello_welcome_and_one_card() {
    let h = Harness::start().await;
    assert_eq!(h.submit("batch", &people(3)).await.records, 3);
    let bundle = h.enroll("desk-1", &[]).await;
    let st = TestStation::connect(&bundle).await.unwrap();
    assert_eq!(st.welcome.keyserver, support::authority::SERVER_NAME);
    assert_eq!(st.welcome.jobs, vec!["batch".to_string()]);
    let initial = st.job_status_where("batch", |_| true).await;
    assert_eq!((initial.total, initial.queued), (3, 3));

    let mut card = blank_card(1);
    let run = st.issue("req-1", "batch", &mut card).await.unwrap();
    assert_eq!(run.done.outcome, pb::Outcome::Ok as i32, "{run:?}");
    assert!(ok(&run.result), "{run:?}");
    assert_eq!(run.round_trips, 2);
    assert_eq!(run.result.round_trips, 2);
    assert!(!run.result.card_serial.is_empty());

    let s = h.status("batch").await;
    assert_eq!(
        (s.total, s.issued, s.queued, s.in_flight, s.voided),
        (3, 1, 2, 0, 0)
    );
    assert_eq!(s.max_round_trips, 2);
    let pushed = st.job_status_where("batch", |j| j.issued == 1).await;
    assert_eq!(pushed.max_round_trips, 2);

    let audited = h.audit.with_action("card.perso");
    assert_eq!(audited.len(), 1);
    assert!(audited[0].detail.contains("round_trips=2"), "{:?}", audited[0]);
    assert!(audited[0].detail.contains("record=r1"), "{:?}", audited[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn several_cards_concurrently_on_two_stations() {
    let h = Harness::start().await;
    h.submit("batch", &people(8)).await;
    let a = std::sync::Arc::new(
        TestStation::connect(&h.enroll("desk-a", &[]).await)
            .await
            .unwrap(),
    );
    let b = std::sync::Arc::new(
        TestStation::connect(&h.enroll("desk-b", &["batch"]).await)
            .await
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for i in 0..8u32 {
        let st = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let mut card = blank_card(100 + i);
            st.issue(&format!("req-{i}"), "batch", &mut card).await.unwrap()
        }));
    }
    let mut serials = std::collections::HashSet::new();
    for t in tasks {
        let run = t.await.unwrap();
        assert!(ok(&run.result), "{run:?}");
        assert!(serials.insert(run.result.card_serial.clone()));
    }
    let s = h.status("batch").await;
    assert_eq!(
        (s.total, s.issued, s.queued, s.in_flight, s.voided),
        (8, 8, 0, 0, 0)
    );
    // Every record issued exactly once.
    let mut records: Vec<String> = h
        .audit
        .with_action("card.perso")
        .iter()
        .map(|e| e.detail.split_whitespace().nth(1).unwrap().to_string())
        .collect();
    records.sort();
    records.dedup();
    assert_eq!(records.len(), 8);
    // A ninth card finds no record left.
    let mut card = blank_card(200);
    a.request("req-9", "batch").await;
    let r = a.result("req-9").await;
    assert!(!ok(&r) && r.reason.contains("no queued record"), "{r:?}");
    let err = a.personalize("req-9", &mut card).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn perso_requests_are_idempotent() {
    let h = Harness::start().await;
    h.submit("batch", &people(3)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    // The same request twice before the card: one reservation.
    st.request("req-1", "batch").await;
    st.request("req-1", "batch").await;
    let s = st.job_status_where("batch", |j| j.in_flight == 1).await;
    assert_eq!((s.queued, s.in_flight), (2, 1));
    let mut card = blank_card(1);
    let (done, _) = st.personalize("req-1", &mut card).await.unwrap();
    assert_eq!(done.outcome, pb::Outcome::Ok as i32);
    let first = st.result("req-1").await;
    assert!(ok(&first));
    // After the card: the recorded Result again, nothing counted twice.
    st.request("req-1", "batch").await;
    let again = st.results("req-1", 2).await;
    assert_eq!(again[1], first);
    // A Perso stream for the finished request just says it is done.
    let (done, scripts) = st.personalize("req-1", &mut blank_card(2)).await.unwrap();
    assert_eq!((done.outcome, scripts), (pb::Outcome::Ok as i32, 0));
    let s = h.status("batch").await;
    assert_eq!((s.issued, s.queued, s.in_flight), (1, 2, 0));
    assert_eq!(
        h.engine
            .events()
            .iter()
            .filter(|e| e.starts_with("start"))
            .count(),
        1
    );
    // The same request id for another job is refused.
    h.submit("other", &people(1)).await;
    st.request("req-1", "other").await;
    let r = st.results("req-1", 3).await;
    assert!(
        !ok(&r[2]) && r[2].reason.contains("already used request id"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_station_reconnecting_with_a_new_control_stream_gets_its_results() {
    let h = Harness::start().await;
    h.submit("batch", &people(1)).await;
    let bundle = h.enroll("desk-1", &[]).await;
    let st = TestStation::connect(&bundle).await.unwrap();
    let run = st.issue("req-1", "batch", &mut blank_card(1)).await.unwrap();
    assert!(ok(&run.result));
    // The station "restarts": a new control stream replaces the old one;
    // its journal resends the request and gets the same Result.
    let st2 = TestStation::connect(&bundle).await.unwrap();
    let end = st.control_end().await.unwrap_err();
    assert_eq!(end.code(), tonic::Code::Aborted, "{end:?}");
    st2.request("req-1", "batch").await;
    assert_eq!(st2.result("req-1").await, run.result);
    assert_eq!(h.status("batch").await.issued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_round_trips_with_a_reset_step() {
    let h = Harness::start().await;
    h.submit("batch", "record_id,given_name,surname,pin\nr1,A,THREE,123456\n")
        .await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    let run = st.issue("req-1", "batch", &mut blank_card(1)).await.unwrap();
    assert!(ok(&run.result), "{run:?}");
    assert_eq!((run.round_trips, run.result.round_trips), (3, 3));
    assert_eq!(h.status("batch").await.max_round_trips, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn void_cards_requeue_their_records() {
    let h = Harness::start().await;
    h.submit(
        "batch",
        "record_id,given_name,surname,pin\nr1,A,VOID-RT2,123456\nr2,B,FAIL-START,123456\nr3,C,Ok,123456\n",
    )
    .await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    let run = st.issue("req-1", "batch", &mut blank_card(1)).await.unwrap();
    assert!(
        !ok(&run.result) && run.result.reason.contains("told to void"),
        "{run:?}"
    );
    assert_eq!(run.done.outcome, pb::Outcome::Failed as i32);
    let s = h.status("batch").await;
    assert_eq!((s.issued, s.queued, s.in_flight, s.voided), (0, 3, 0, 1));
    // The voided record is first in the queue again.
    let run = st.issue("req-2", "batch", &mut blank_card(2)).await.unwrap();
    assert!(!ok(&run.result));
    assert!(h
        .audit
        .with_action("card.perso")
        .last()
        .unwrap()
        .detail
        .contains("record=r1"));
    assert_eq!(h.status("batch").await.voided, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_engine_that_fails_to_start_or_panics_voids_only_that_card() {
    let h = Harness::start().await;
    h.submit(
        "batch",
        "record_id,given_name,surname,pin\nr1,A,FAIL-START,123456\n",
    )
    .await;
    h.submit("panics", "record_id,given_name,surname,pin\nr1,A,PANIC,123456\n")
        .await;
    h.submit("good", &people(1)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    let run = st.issue("req-1", "batch", &mut blank_card(1)).await.unwrap();
    assert!(
        !ok(&run.result) && run.result.reason.contains("cannot start"),
        "{run:?}"
    );
    assert_eq!(run.round_trips, 0);

    st.request("req-2", "panics").await;
    let err = st.personalize("req-2", &mut blank_card(2)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal, "{err:?}");
    let r = st.result("req-2").await;
    assert!(!ok(&r) && r.reason.contains("engine failed"), "{r:?}");
    let s = h.status("panics").await;
    assert_eq!((s.queued, s.in_flight, s.voided), (1, 0, 1));

    let run = st.issue("req-3", "good", &mut blank_card(3)).await.unwrap();
    assert!(ok(&run.result));
}
