//! The protocol's answers to the gaps a station found: why a card was lost
//! (in the void reason), refusals with a machine-readable code, `resume`
//! requests that never reserve, and the meaning of an empty `expect` list.
//! The service in process with the fake engine and the test station.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use protos::pb;
use support::station::{open_msg, run_script, TestStation};
use support::{blank_card, people, test_limits, Harness};
use tonic::Code;
use vsc::transport::CardTransport as _;

fn refusal(r: &pb::Result) -> pb::Refusal {
    pb::Refusal::try_from(r.refusal).unwrap()
}

async fn request(st: &TestStation, request_id: &str, job: &str, resume: bool) {
    st.send_control(pb::station_event::Event::PersoRequest(pb::PersoRequest {
        request_id: request_id.into(),
        reader: "sim 0".into(),
        protocol: 2,
        atr: vec![0x3B, 0x88],
        job: job.into(),
        resume,
    }))
    .await;
}

/// The lost-card reply a station sends.
fn lost(reason: pb::CardLostReason, detail: &str) -> pb::Reply {
    pb::Reply {
        card_removed: true,
        card_lost_reason: reason as i32,
        card_lost_detail: detail.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_card_s_reason_is_in_its_void_reason() {
    let h = Harness::start().await;
    // Two records: each is held after its third failed card.
    h.submit("batch", &people(2)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    let cases = [
        (
            lost(
                pb::CardLostReason::Timeout,
                "the card did not answer step 1 within 60s",
            ),
            "round trip 2: station: the card did not answer in time (the card did not answer step 1 within 60s)",
        ),
        (
            lost(
                pb::CardLostReason::ReaderFailed,
                "the reader failed at step 0: pcscd\u{7} stopped",
            ),
            "station: the reader failed (the reader failed at step 0: pcscd  stopped)",
        ),
        (
            lost(pb::CardLostReason::Removed, ""),
            "round trip 2: station: the card was removed from the reader",
        ),
        (
            lost(pb::CardLostReason::NotHeld, "the station restarted"),
            "station: the station no longer holds the card (the station restarted)",
        ),
        // A station older than card_lost_reason.
        (
            pb::Reply {
                card_removed: true,
                ..Default::default()
            },
            "station: the card was removed from the reader",
        ),
        (
            lost(pb::CardLostReason::Timeout, &"x".repeat(1000)),
            "the card did not answer in time",
        ),
    ];
    for (i, (reply, want)) in cases.into_iter().enumerate() {
        let rid = format!("req-{i}");
        let run = st
            .issue_with(&rid, "batch", &mut blank_card(i as u32 + 1), |rt, r| {
                if rt == 2 {
                    *r = reply.clone();
                }
            })
            .await
            .unwrap();
        assert_eq!(run.result.outcome, pb::Outcome::Failed as i32, "{run:?}");
        assert!(
            run.result.reason.contains(want),
            "{:?} lacks {want:?}",
            run.result.reason
        );
        assert!(run.done.reason.contains(want), "{:?}", run.done.reason);
        assert_eq!(
            refusal(&run.result),
            pb::Refusal::None,
            "a card's outcome is no refusal"
        );
        // The engine voided it with the same reason (its manifest and audit
        // entries say it), and the job store recorded it.
        let abort = h.engine.aborts().pop().unwrap();
        assert!(abort.contains(want), "{abort}");
        assert!(run.result.reason.len() < 600, "the station's words are cut");
        let audited = h.audit.with_action("card.perso").pop().unwrap();
        assert!(audited.detail.contains(want), "{audited:?}");
    }
    let s = h.status("batch").await;
    assert_eq!((s.issued, s.voided, s.queued, s.held), (0, 6, 0, 2));
    let held = h.audit.with_action("record.held");
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(
        held.iter()
            .all(|e| e.detail.contains("3 cards failed") && e.detail.contains("new job")),
        "{held:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_say_why_in_the_result() {
    let h = Harness::start().await;
    h.submit("batch", &people(1)).await;
    h.submit("other", &people(1)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    let only_other = TestStation::connect(&h.enroll("desk-2", &["other"]).await)
        .await
        .unwrap();

    // A card's Result: no refusal.
    let run = st.issue("req-1", "batch", &mut blank_card(1)).await.unwrap();
    assert_eq!(run.result.outcome, pb::Outcome::Ok as i32);
    assert_eq!(refusal(&run.result), pb::Refusal::None);

    // No record left, an unknown job, a job the station may not run, a
    // malformed request, a request id used for another job.
    st.request("req-2", "batch").await;
    assert_eq!(refusal(&st.result("req-2").await), pb::Refusal::NoRecord);
    st.request("req-3", "no-such-job").await;
    assert_eq!(refusal(&st.result("req-3").await), pb::Refusal::UnknownJob);
    only_other.request("req-4", "batch").await;
    assert_eq!(
        refusal(&only_other.result("req-4").await),
        pb::Refusal::JobNotAllowed
    );
    st.request_atr("req-5", "other", vec![0x3B; 40]).await;
    assert_eq!(refusal(&st.result("req-5").await), pb::Refusal::Malformed);
    st.request("req-1", "other").await;
    let again = st.results("req-1", 2).await;
    assert_eq!(refusal(&again[1]), pb::Refusal::Malformed, "{again:?}");
    for r in [
        st.result("req-2").await,
        st.result("req-3").await,
        only_other.result("req-4").await,
    ] {
        assert_eq!(r.outcome, pb::Outcome::Failed as i32);
        assert!(!r.reason.is_empty());
        assert_eq!(r.round_trips, 0);
    }
    // The Perso stream of a refused request: its status, and no second
    // Result.
    let e = st.personalize("req-2", &mut blank_card(2)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert_eq!(st.results_now("req-2").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_station_at_its_card_limit_is_told_it_is_busy_not_out_of_records() {
    let limits = pb_limits(1);
    let h = Harness::start_with(limits).await;
    h.submit("batch", &people(3)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    // Card 1 open: its first script arrives and waits for a reply.
    st.request("req-1", "batch").await;
    let mut p1 = st.raw_perso().await.unwrap();
    p1.send(open_msg("req-1")).await;
    let script = match p1.next().await.unwrap() {
        Some(pb::PersoDown {
            msg: Some(pb::perso_down::Msg::Script(s)),
        }) => s,
        other => panic!("expected a script, got {other:?}"),
    };
    // Card 2: reserved, but its Perso stream is refused for now.
    st.request("req-2", "batch").await;
    let e = st.personalize("req-2", &mut blank_card(2)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    let r = st.result("req-2").await;
    assert_eq!(refusal(&r), pb::Refusal::StationBusy, "{r:?}");
    assert_eq!(h.status("batch").await.in_flight, 2, "the reservation stands");
    // Card 1 ends; card 2 goes through on the same request.
    let mut card = blank_card(1);
    p1.send(pb::perso_up::Msg::Reply(run_script(&mut card, &script)))
        .await;
    let script = match p1.next().await.unwrap() {
        Some(pb::PersoDown {
            msg: Some(pb::perso_down::Msg::Script(s)),
        }) => s,
        other => panic!("expected a script, got {other:?}"),
    };
    p1.send(pb::perso_up::Msg::Reply(run_script(&mut card, &script)))
        .await;
    let (_, done) = p1.end().await;
    assert_eq!(done.unwrap().outcome, pb::Outcome::Ok as i32);
    let (done, _) = st.personalize("req-2", &mut blank_card(2)).await.unwrap();
    assert_eq!(done.outcome, pb::Outcome::Ok as i32);
    let r = st.results("req-2", 2).await;
    assert_eq!(refusal(&r[1]), pb::Refusal::None);
    assert_eq!(r[1].outcome, pb::Outcome::Ok as i32);
    let s = h.status("batch").await;
    assert_eq!((s.issued, s.voided, s.in_flight, s.queued), (2, 0, 0, 1));
}

fn pb_limits(cards: usize) -> keyserver::service::Limits {
    keyserver::service::Limits {
        max_cards_per_station: cards,
        ..test_limits()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_perso_stream_for_a_request_never_sent_is_refused_as_unknown() {
    let h = Harness::start().await;
    h.submit("batch", &people(1)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();
    let e = st.personalize("ghost", &mut blank_card(1)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let r = st.result("ghost").await;
    assert_eq!(refusal(&r), pb::Refusal::UnknownRequest, "{r:?}");
    assert_eq!(h.status("batch").await.queued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resume_request_reports_what_was_recorded_and_never_reserves() {
    let h = Harness::start().await;
    h.submit("batch", &people(3)).await;
    let st = TestStation::connect(&h.enroll("desk-1", &[]).await)
        .await
        .unwrap();

    // A request the keyserver never saw (the station crashed between its
    // journal and the network): refused, nothing reserved, nothing voided.
    request(&st, "lost-1", "batch", true).await;
    let r = st.result("lost-1").await;
    assert_eq!(refusal(&r), pb::Refusal::UnknownRequest, "{r:?}");
    assert_eq!(r.outcome, pb::Outcome::Failed as i32);
    let e = st.personalize("lost-1", &mut blank_card(9)).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let s = h.status("batch").await;
    assert_eq!((s.queued, s.in_flight, s.voided, s.issued), (3, 0, 0, 0));
    assert_eq!(st.results_now("lost-1").len(), 1);

    // A finished card: its recorded Result again.
    let run = st.issue("req-1", "batch", &mut blank_card(1)).await.unwrap();
    request(&st, "req-1", "batch", true).await;
    let again = st.results("req-1", 2).await;
    assert_eq!(again[1], run.result);

    // A request still in flight (reserved, its Perso stream never
    // opened): no Result yet; its Perso stream voids the card once the
    // station says it no longer holds it.
    st.request("req-2", "batch").await;
    st.job_status_where("batch", |j| j.in_flight == 1).await;
    request(&st, "req-2", "batch", true).await;
    let (done, scripts) = st
        .personalize_with("req-2", &mut blank_card(2), |_, r| {
            *r = lost(pb::CardLostReason::NotHeld, "the station restarted");
        })
        .await
        .unwrap();
    assert_eq!((done.outcome, scripts), (pb::Outcome::Failed as i32, 1));
    let r = st.result("req-2").await;
    assert!(r.reason.contains("no longer holds the card"), "{r:?}");
    assert_eq!(
        st.results_now("req-2").len(),
        1,
        "resume sent no Result of its own"
    );
    let s = h.status("batch").await;
    assert_eq!((s.issued, s.voided, s.queued, s.in_flight), (1, 1, 2, 0));

    // Resumed for another job than its own: refused as malformed.
    request(&st, "req-1", "other-job", true).await;
    let r = st.results("req-1", 3).await;
    assert_eq!(refusal(&r[2]), pb::Refusal::Malformed, "{r:?}");
    assert!(r[2].reason.contains("already used request id"), "{r:?}");
    assert_eq!(h.status("batch").await.issued, 1);
}

#[test]
fn an_empty_expect_list_stops_the_script_after_its_step() {
    let mut card = blank_card(1);
    let select_isd = vec![
        0x00, 0xA4, 0x04, 0x00, 0x08, 0xA0, 0x00, 0x00, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00,
    ];
    let apdu = |expect: Vec<pb::SwPattern>| pb::Step {
        step: Some(pb::step::Step::Apdu(pb::Apdu {
            command: select_isd.clone(),
            expect,
            timeout_ms: 0,
        })),
    };
    let ok = pb::SwPattern {
        value: 0x9000,
        mask: 0xFFFF,
    };
    let script = pb::Script {
        round_trip: 1,
        steps: vec![apdu(vec![ok]), apdu(vec![]), apdu(vec![ok])],
    };
    let reply = run_script(&mut card, &script);
    assert_eq!(reply.stopped_at, Some(1), "{reply:?}");
    assert_eq!(reply.responses.len(), 2);
    assert!(
        reply.responses[1].ends_with(&[0x90, 0x00]),
        "the card answered 9000"
    );
    assert!(!card.atr().is_empty());
}
