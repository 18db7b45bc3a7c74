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
