//! Malformed or out-of-order messages from a station end that card's
//! session (void, audited, record queued again), never the keyserver: the
//! next card is served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use protos::pb;
use protos::pb::perso_up::Msg as Up;
use support::station::{open_msg, run_script, RawPerso, TestStation};
use support::{blank_card, people, Harness};
use tonic::Code;

fn script(msg: Option<pb::PersoDown>) -> pb::Script {
    match msg.and_then(|m| m.msg) {
        Some(pb::perso_down::Msg::Script(s)) => s,
        other => panic!("expected a Script, got {other:?}"),
    }
}

/// Opens `request_id` and receives Script 1.
async fn opened(st: &TestStation, request_id: &str) -> (RawPerso, pb::Script) {
    st.request(request_id, "batch").await;
    let mut p = st.raw_perso().await.unwrap();
    p.send(open_msg(request_id)).await;
    let s = script(p.next().await.unwrap());
    (p, s)
}

/// The card of `request_id` ended void with a reason containing `why`, the
/// engine was told so, and the record is queued again; then the next card
/// is issued normally.
async fn assert_void_then_next_ok(h: &Harness, st: &TestStation, request_id: &str, why: &str, next: &str) {
    let r = st.result(request_id).await;
    assert_eq!(r.outcome, pb::Outcome::Failed as i32, "{r:?}");
    assert!(r.reason.contains(why), "{why:?} not in {r:?}");
    assert!(
        h.engine
            .aborts()
            .iter()
            .any(|a| a.starts_with(&format!("abort {request_id}:")) && a.contains(why)),
        "{:?}",
        h.engine.events()
    );
    let audited = h.audit.with_action("card.perso");
    assert!(audited
        .iter()
        .any(|e| e.detail.contains(&format!("request={request_id} ")) && e.detail.contains(why)));
    let s = h.status("batch").await;
    assert_eq!(s.in_flight, 0);
    let run = st.issue(next, "batch", &mut blank_card(99)).await.unwrap();
    assert_eq!(run.result.outcome, pb::Outcome::Ok as i32, "{run:?}");
}

async fn setup() -> (Harness, TestStation) {
    let h = Harness::start().await;
    h.submit("batch", &people(4)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    (h, st)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reply_before_open_is_refused_and_the_request_can_still_be_opened() {
    let (h, st) = setup().await;
    st.request("req-1", "batch").await;
    let mut p = st.raw_perso().await.unwrap();
    p.send(Up::Reply(pb::Reply::default())).await;
    let (end, _) = p.end().await;
    let e = end.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("desk-1") && e.message().contains("PersoOpen"),
        "{e:?}"
    );
    assert!(!h.audit.with_action("perso.refused").is_empty());
    // No card was started; the reservation stands.
    let (done, _) = st.personalize("req-1", &mut blank_card(1)).await.unwrap();
    assert_eq!(done.outcome, pb::Outcome::Ok as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_open_voids_the_card() {
    let (h, st) = setup().await;
    let (mut p, _) = opened(&st, "req-1").await;
    p.send(open_msg("req-1")).await;
    let (end, _) = p.end().await;
    assert_eq!(end.unwrap_err().code(), Code::InvalidArgument);
    assert_void_then_next_ok(&h, &st, "req-1", "a second PersoOpen", "req-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reply_with_no_script_pending_voids_the_card() {
    let (h, st) = setup().await;
    let (mut p, s1) = opened(&st, "req-1").await;
    let mut card = blank_card(1);
    p.send(Up::Reply(run_script(&mut card, &s1))).await;
    // An extra reply right behind it: either it arrives while the engine
    // works (no script pending) or it is taken as the reply to script 2,
    // which it cannot fit (more responses than steps). Both void the card.
    p.send(Up::Reply(pb::Reply {
        responses: vec![vec![0x90, 0x00]; 40],
        ..Default::default()
    }))
    .await;
    let (end, _) = p.end().await;
    let e = end.unwrap_err();
    assert!(
        matches!(e.code(), Code::FailedPrecondition | Code::InvalidArgument),
        "{e:?}"
    );
    let r = st.result("req-1").await;
    assert!(
        r.reason.contains("no script was pending") || r.reason.contains("malformed reply"),
        "{r:?}"
    );
    let why = if r.reason.contains("no script") {
        "no script was pending"
    } else {
        "malformed reply"
    };
    assert_void_then_next_ok(&h, &st, "req-1", why, "req-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_response_voids_the_card() {
    let (h, st) = setup().await;
    let (mut p, _) = opened(&st, "req-1").await;
    p.send(Up::Reply(pb::Reply {
        responses: vec![vec![0x61; 70_000]],
        ..Default::default()
    }))
    .await;
    let (end, _) = p.end().await;
    assert_eq!(end.unwrap_err().code(), Code::InvalidArgument);
    assert_void_then_next_ok(&h, &st, "req-1", "longer than", "req-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_over_the_size_limit_voids_the_card() {
    let (h, st) = setup().await;
    let (mut p, _) = opened(&st, "req-1").await;
    p.send(Up::Reply(pb::Reply {
        responses: vec![vec![0x61; 60_000]; 40],
        ..Default::default()
    }))
    .await;
    let _ = p.end().await;
    assert_void_then_next_ok(&h, &st, "req-1", "the stream failed mid-card", "req-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_that_ends_mid_card_voids_the_card() {
    let (h, st) = setup().await;
    let (p, _) = opened(&st, "req-1").await;
    drop(p);
    let r = st.result("req-1").await;
    assert!(r.reason.contains("mid-card"), "{r:?}");
    let why = if r.reason.contains("ended the stream") {
        "ended the stream mid-card"
    } else {
        "the stream failed mid-card"
    };
    assert_void_then_next_ok(&h, &st, "req-1", why, "req-2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_or_another_stations_request_is_not_found() {
    let (h, st) = setup().await;
    let other = TestStation::connect(&h.enroll("desk-2", &[]).await)
        .await
        .unwrap();
    let e = st
        .personalize("never-asked", &mut blank_card(1))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.message().contains("desk-1") && e.message().contains("never-asked"),
        "{e:?}"
    );
    // desk-2 reserves req-x; desk-1 cannot open it.
    other.request("req-x", "batch").await;
    other.job_status_where("batch", |j| j.in_flight == 1).await;
    let e = st.personalize("req-x", &mut blank_card(2)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // desk-2's reservation is untouched.
    let (done, _) = other.personalize("req-x", &mut blank_card(3)).await.unwrap();
    assert_eq!(done.outcome, pb::Outcome::Ok as i32);
    assert!(h.engine.aborts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_stream_for_a_card_in_personalization_is_refused() {
    let (h, st) = setup().await;
    let (_p, _) = opened(&st, "req-1").await;
    let e = st.personalize("req-1", &mut blank_card(2)).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(h.engine.aborts().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_perso_request_gets_a_failed_result() {
    let (h, st) = setup().await;
    st.send_control(pb::station_event::Event::PersoRequest(pb::PersoRequest {
        request_id: "req-1".into(),
        reader: "r".into(),
        protocol: 2,
        atr: vec![0x3B; 80],
        job: "batch".into(),
        resume: false,
    }))
    .await;
    let r = st.result("req-1").await;
    assert!(r.reason.contains("ATR is longer"), "{r:?}");
    st.send_control(pb::station_event::Event::PersoRequest(pb::PersoRequest {
        request_id: "bad\u{0}id".into(),
        reader: "r".into(),
        protocol: 2,
        atr: vec![],
        job: "batch".into(),
        resume: false,
    }))
    .await;
    let r = st.result("bad\u{0}id").await;
    assert!(r.reason.contains("control characters"), "{r:?}");
    assert_eq!(h.status("batch").await.in_flight, 0);
    let run = st.issue("req-2", "batch", &mut blank_card(2)).await.unwrap();
    assert_eq!(run.result.outcome, pb::Outcome::Ok as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_station_that_does_not_reply_in_time_loses_the_card() {
    let mut limits = support::test_limits();
    limits.reply_timeout = Duration::from_millis(300);
    let h = Harness::start_with(limits).await;
    h.submit("batch", &people(2)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    let (mut p, _) = opened(&st, "req-1").await;
    let (end, _) = p.end().await;
    assert_eq!(end.unwrap_err().code(), Code::DeadlineExceeded);
    assert_void_then_next_ok(&h, &st, "req-1", "no reply within", "req-2").await;
}
