//! The control loop against a fake keyserver (mutual TLS on loopback) with
//! sim readers: concurrency, removal, keyserver down and dying, the
//! journal across a kill, refusals, the summary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use protos::bundle::StationBundle;
use station::control::{self, Backoff, RunConfig, RunError, RunOutcome, Stop};
use station::journal::{EntryState, Journal};
use station::readers::{Bin, SimFault, SimSlot, SimSource, SimStock};
use station::report::{Collect, Event, LinkStatus, ReaderStatus, RunEnd};
use support::{free_port, CardPlan, Fake, TestCa, JOB, PATIENCE};
use tokio::sync::watch;

fn config(bundle: StationBundle) -> RunConfig {
    let mut c = RunConfig::new(bundle, JOB);
    c.backoff = Backoff {
        first: Duration::from_millis(100),
        max: Duration::from_millis(400),
    };
    c.poll = Duration::from_millis(50);
    c.connect_timeout = None;
    c.result_wait = Duration::from_secs(30);
    c.refusal_wait = Duration::from_secs(5);
    c
}

struct Station {
    run: tokio::task::JoinHandle<RunOutcome>,
    events: Arc<Collect>,
    stop: watch::Sender<Stop>,
    slots: Vec<Arc<SimSlot>>,
}

fn start_in(
    rt: &tokio::runtime::Handle,
    cfg: RunConfig,
    journal: &Path,
    readers: usize,
    stock: Option<u64>,
) -> Station {
    let journal = Journal::open(journal, &cfg.bundle.station).unwrap();
    let source = SimSource::new(readers, SimStock::new(stock).unwrap());
    let slots = source.slots();
    let events = Arc::new(Collect::default());
    let (stop, stop_rx) = watch::channel(Stop::Run);
    let run = rt.spawn(control::run(
        cfg,
        journal,
        Box::new(source),
        events.clone(),
        stop_rx,
    ));
    Station {
        run,
        events,
        stop,
        slots,
    }
}

fn start(cfg: RunConfig, journal: &Path, readers: usize, stock: Option<u64>) -> Station {
    start_in(&tokio::runtime::Handle::current(), cfg, journal, readers, stock)
}

impl Station {
    async fn outcome(self) -> (RunOutcome, Vec<Event>, Vec<Arc<SimSlot>>) {
        let outcome = tokio::time::timeout(PATIENCE, self.run)
            .await
            .expect("the station did not end in time")
            .unwrap();
        drop(self.stop);
        (outcome, self.events.events(), self.slots)
    }

    async fn until(&self, what: &str, f: impl Fn(&[Event]) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if f(&self.events.events()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the station did not show {what} in time"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn cards(events: &[Event]) -> Vec<(String, String, Bin, bool, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Card {
                reader,
                request_id,
                bin,
                recovered,
                reason,
                ..
            } => Some((
                reader.clone(),
                request_id.clone(),
                *bin,
                *recovered,
                reason.clone(),
            )),
            _ => None,
        })
        .collect()
}

fn passed(slots: &[Arc<SimSlot>]) -> usize {
    slots.iter().map(|s| s.passed().len()).sum()
}

fn rejected(slots: &[Arc<SimSlot>]) -> usize {
    slots.iter().map(|s| s.rejected().len()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_sim_readers_personalize_concurrently() {
    let ca = TestCa::new();
    let fake = Fake::new(1000);
    // The first three cards are held until three are open at once: the
    // readers work concurrently, or the fake fails them.
    fake.db()
        .plan
        .extend([CardPlan::Barrier(3), CardPlan::Barrier(3), CardPlan::Barrier(3)]);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(ca.bundle("desk-1", ks.addr));
    cfg.cards = Some(9);
    let station = start(cfg, dir.path(), 3, None);
    let (outcome, events, slots) = station.outcome().await;

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let s = outcome.summary;
    assert_eq!((s.passed, s.rejected), (9, 0), "{events:?}");
    assert_eq!(s.round_trips_per_card, 2);
    assert_eq!(s.end, RunEnd::CardsReached);
    let lines = s.lines();
    for prefix in [
        "passed: 9\n",
        "rejected: 0\n",
        "round trips per card: 2\n",
        "cards/hour: ",
    ] {
        assert!(lines.contains(prefix), "{lines}");
    }
    assert!(events.iter().any(|e| matches!(e, Event::Summary(_))));

    let done = cards(&events);
    assert_eq!(done.len(), 9);
    assert!(done.iter().all(|c| c.2 == Bin::Pass));
    let ids: HashSet<&String> = done.iter().map(|c| &c.1).collect();
    assert_eq!(ids.len(), 9, "request ids are unique");
    let readers: HashSet<&String> = done.iter().map(|c| &c.0).collect();
    assert!(readers.len() >= 2, "{readers:?}");

    assert_eq!(passed(&slots), 9);
    assert_eq!(rejected(&slots), 0);
    for slot in &slots {
        for card in slot.passed() {
            assert_eq!(card.commands, 3, "every command of both scripts reached the card");
            assert!(!card.session_open_after_release);
        }
    }
    let db = fake.db();
    assert_eq!(db.issued, 9);
    assert_eq!(db.hellos.len(), 1);
    assert_eq!(db.hellos[0].station, "desk-1");
    assert_eq!(
        db.hellos[0].software_version,
        format!("cardsmith-station {}", env!("CARGO_PKG_VERSION"))
    );
    for r in &db.requests {
        assert_eq!(r.job, JOB);
        assert_eq!(r.protocol, 2);
        assert!(!r.atr.is_empty());
        assert!(r.reader.starts_with("sim "));
    }
    // The journal holds every request, each closed with the keyserver's verdict.
    drop(db);
    let j = Journal::open(dir.path(), "desk-1").unwrap();
    let entries = j.entries().unwrap();
    assert_eq!(entries.len(), 9);
    assert!(entries.iter().all(|e| e.state == EntryState::Done
        && e.bin == Some(Bin::Pass)
        && e.keyserver.as_ref().is_some_and(|v| v.ok)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_removed_mid_script_is_rejected_and_the_next_card_passes() {
    let ca = TestCa::new();
    let fake = Fake::new(100);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(ca.bundle("desk-1", ks.addr));
    cfg.cards = Some(2);
    let station = start(cfg, dir.path(), 1, None);
    // The first card leaves at its second command.
    station.slots[0].fault_next(SimFault::RemoveAt(2));
    let (outcome, events, slots) = station.outcome().await;

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!((outcome.summary.passed, outcome.summary.rejected), (1, 1));
    let done = cards(&events);
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].2, Bin::Reject);
    assert!(done[0].4.contains("removed"), "{:?}", done[0]);
    assert_eq!(done[1].2, Bin::Pass);
    assert_eq!(slots[0].removed().len(), 1);
    assert_eq!(slots[0].passed().len(), 1);
    let db = fake.db();
    let (_, first_reply) = &db.replies[0];
    assert!(first_reply.card_removed);
    assert_eq!(
        first_reply.card_lost_reason,
        protos::pb::CardLostReason::Removed as i32
    );
    assert_eq!(first_reply.card_lost_detail, "the card was removed at step 1");
    assert_eq!(
        first_reply.responses.len(),
        1,
        "the answer before the removal came back"
    );
    assert_eq!(db.voided, 1);
    assert_eq!(db.issued, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_that_stops_answering_is_rejected_after_its_timeout() {
    let ca = TestCa::new();
    let fake = Fake::new(100);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(ca.bundle("desk-1", ks.addr));
    cfg.cards = Some(2);
    // The fake's steps say 0: the station's default applies.
    cfg.relay.default_timeout = Duration::from_millis(300);
    let station = start(cfg, dir.path(), 1, None);
    let slot = station.slots[0].clone();
    slot.fault_next(SimFault::MuteAt(2));
    station
        .until("the mute card rejected", |ev| cards(ev).len() == 1)
        .await;
    let first = cards(&station.events.events()).remove(0);
    assert_eq!(first.2, Bin::Reject);
    assert!(first.4.contains("did not answer step 1"), "{first:?}");
    // The card answers at last: its thread releases it into the reject
    // bin and the next card comes.
    slot.unmute();
    let (outcome, _, slots) = station.outcome().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!((outcome.summary.passed, outcome.summary.rejected), (1, 1));
    assert_eq!(slots[0].rejected().len(), 1);
    assert_eq!(slots[0].passed().len(), 1);
    let db = fake.db();
    let reply = &db.replies[0].1;
    assert!(reply.card_removed, "a lost card is reported lost");
    assert_eq!(
        reply.card_lost_reason,
        protos::pb::CardLostReason::Timeout as i32,
        "{reply:?}"
    );
    assert!(
        reply.card_lost_detail.contains("did not answer step 1"),
        "{reply:?}"
    );
    assert_eq!(reply.responses.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyserver_down_at_start_is_retried_with_backoff_then_used() {
    let ca = TestCa::new();
    let fake = Fake::new(100);
    let port = free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(ca.bundle("desk-1", addr));
    cfg.cards = Some(1);
    let station = start(cfg, dir.path(), 1, None);
    station
        .until("two failed attempts", |ev| {
            ev.iter()
                .filter(|e| {
                    matches!(
                        e,
                        Event::Keyserver {
                            state: LinkStatus::Unreachable,
                            retry_in_s: Some(_),
                            ..
                        }
                    )
                })
                .count()
                >= 2
        })
        .await;
    let shown = station
        .events
        .events()
        .iter()
        .find(|e| {
            matches!(
                e,
                Event::Keyserver {
                    state: LinkStatus::Unreachable,
                    ..
                }
            )
        })
        .map(Event::text)
        .unwrap();
    assert!(
        shown.starts_with("keyserver unreachable, retrying in "),
        "{shown}"
    );
    // No card was marked good meanwhile.
    assert!(cards(&station.events.events()).is_empty());
    let _ks = fake.start(&ca, port);
    let (outcome, events, _) = station.outcome().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.summary.passed, 1);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Keyserver {
            state: LinkStatus::Connected,
            ..
        }
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyserver_never_reachable_within_the_connect_timeout_is_an_error() {
    let ca = TestCa::new();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(ca.bundle("desk-1", addr));
    cfg.connect_timeout = Some(Duration::from_millis(300));
    let station = start(cfg, dir.path(), 1, None);
    let (outcome, _, slots) = station.outcome().await;
    let err = outcome.error.expect("an error");
    assert!(matches!(err, RunError::Unreachable { .. }), "{err}");
    assert_eq!(err.exit_code(), 4);
    assert_eq!(outcome.summary.passed, 0);
    // The card was never touched.
    assert!(slots[0].passed().is_empty() && slots[0].rejected().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyserver_dying_mid_card_rejects_that_card_then_the_station_reconnects() {
    let ca = TestCa::new();
    let fake = Fake::new(100);
    fake.db().plan.push_back(CardPlan::HoldAfterFirstReply);
    let ks = fake.start(&ca, 0);
    let port = ks.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(ca.bundle("desk-1", ks.addr));
    cfg.cards = Some(2);
    let station = start(cfg, dir.path(), 1, None);
    fake.until("the first card held mid-card", |db| db.held == 1)
        .await;
    let first = fake.db().requests[0].request_id.clone();
    ks.kill();
    station
        .until("the first card rejected", |ev| cards(ev).len() == 1)
        .await;
    // Restarted: the keyserver voids what was in flight.
    let _ks = fake.start(&ca, port);
    let (outcome, events, slots) = station.outcome().await;

    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!((outcome.summary.passed, outcome.summary.rejected), (1, 1));
    let done = cards(&events);
    assert_eq!(done[0].1, first);
    assert_eq!(done[0].2, Bin::Reject);
    assert!(
        done[0].4.contains("connection to the keyserver was lost"),
        "{:?}",
        done[0]
    );
    assert_eq!(done[1].2, Bin::Pass);
    assert_ne!(done[1].1, first, "a new card gets a new request id");
    assert_eq!(slots[0].rejected().len(), 1);
    assert_eq!(slots[0].passed().len(), 1);
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Keyserver {
            state: LinkStatus::Lost,
            ..
        }
    )));
    // The rejected request was asked for again and settled as failed.
    let settled: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::Settled { request_id, .. } if *request_id == first))
        .collect();
    assert_eq!(settled.len(), 1, "{events:?}");
    assert!(matches!(
        settled[0],
        Event::Settled {
            keyserver_ok: false,
            ..
        }
    ));
    drop(events);
    let j = Journal::open(dir.path(), "desk-1").unwrap();
    assert!(j.unsettled().unwrap().is_empty());
}

/// Runs a station on a runtime of its own until the fake holds a card,
/// then drops that runtime without any cleanup (as a kill would).
async fn kill_station_mid_card(ca: &TestCa, fake: &Fake, addr: std::net::SocketAddr, dir: &Path) -> String {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let station = start_in(rt.handle(), config(ca.bundle("desk-1", addr)), dir, 1, None);
    fake.until("a card held mid-card", |db| db.held == 1).await;
    let rid = fake.db().requests[0].request_id.clone();
    rt.shutdown_background();
    drop(station);
    rid
}

/// Opens the journal once the killed station's last handles are gone.
async fn journal_after_kill(dir: &Path) -> Journal {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match Journal::open(dir, "desk-1") {
            Ok(j) => return j,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the journal stays locked: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_card_the_request_is_rejected_at_restart_and_the_job_continues() {
    let ca = TestCa::new();
    let fake = Fake::new(100);
    fake.db().plan.push_back(CardPlan::HoldAfterFirstReply);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let lost = kill_station_mid_card(&ca, &fake, ks.addr, dir.path()).await;
    // The keyserver notices the stream end and voids the card.
    fake.until("the lost card voided", |db| db.finished.contains_key(&lost))
        .await;
    let j = journal_after_kill(dir.path()).await;
    let open: Vec<_> = j
        .entries()
        .unwrap()
        .into_iter()
        .filter(|e| e.state == EntryState::InFlight)
        .collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].request_id, lost);
    drop(j);

    let mut cfg = config(ca.bundle("desk-1", ks.addr));
    cfg.cards = Some(2);
    let station = start(cfg, dir.path(), 1, None);
    let (outcome, events, _) = station.outcome().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let s = outcome.summary;
    assert_eq!((s.passed, s.rejected, s.recovered), (2, 1, 1));
    let done = cards(&events);
    assert_eq!(done[0].1, lost);
    assert!(done[0].3, "reported as found in flight");
    assert_eq!(done[0].2, Bin::Reject);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Settled { request_id, keyserver_ok: false, .. } if *request_id == lost)));
    // No request id was used twice: the lost one was only asked again.
    let db = fake.db();
    let mut fresh = HashSet::new();
    for r in &db.requests {
        if r.request_id != lost {
            assert!(
                fresh.insert(r.request_id.clone()),
                "request id {} reused",
                r.request_id
            );
        }
    }
    assert_eq!(fresh.len(), 2);
    assert_eq!(db.issued, 2);
    // The lost request was asked again as a lookup only.
    let asked: Vec<bool> = db
        .requests
        .iter()
        .filter(|r| r.request_id == lost)
        .map(|r| r.resume)
        .collect();
    assert_eq!(asked, vec![false, true], "first sent, then resumed");
    drop(db);
    let j = Journal::open(dir.path(), "desk-1").unwrap();
    let entries = j.entries().unwrap();
    assert_eq!(entries.len(), 3);
    let first = entries.iter().find(|e| e.request_id == lost).unwrap();
    assert!(first.recovered && !first.unsettled);
    assert_eq!(first.keyserver.as_ref().map(|v| v.ok), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_the_keyserver_issued_before_the_kill_is_reported_good() {
    let ca = TestCa::new();
    let fake = Fake::new(100);
    fake.db().plan.push_back(CardPlan::HoldBeforeResult);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let issued = kill_station_mid_card(&ca, &fake, ks.addr, dir.path()).await;
    assert!(fake.db().finished[&issued].ok);
    fake.release();
    drop(journal_after_kill(dir.path()).await);
    let mut cfg = config(ca.bundle("desk-1", ks.addr));
    cfg.cards = Some(1);
    let station = start(cfg, dir.path(), 1, None);
    let (outcome, events, _) = station.outcome().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    // Counted rejected (the station never binned it as good)…
    assert_eq!((outcome.summary.passed, outcome.summary.rejected), (1, 1));
    // …but reported as issued by the keyserver, with its serial.
    let settled = events
        .iter()
        .find(|e| matches!(e, Event::Settled { request_id, .. } if *request_id == issued))
        .expect("the issued card is settled");
    let Event::Settled {
        keyserver_ok,
        card_serial,
        ..
    } = settled
    else {
        unreachable!()
    };
    assert!(*keyserver_ok);
    assert!(!card_serial.is_empty());
    assert!(settled.text().contains("ISSUED"), "{}", settled.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_station_stops_with_a_clear_message() {
    let ca = TestCa::new();
    let fake = Fake::new(100);
    fake.db().revoked = true;
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let station = start(config(ca.bundle("desk-1", ks.addr)), dir.path(), 1, None);
    let (outcome, events, slots) = station.outcome().await;
    let err = outcome.error.expect("an error");
    assert_eq!(err.exit_code(), 3);
    let msg = err.to_string();
    assert!(
        msg.contains("refused this station") && msg.contains("revoked"),
        "{msg}"
    );
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Refused { what, .. } if what == "station")));
    assert!(events.iter().any(|e| matches!(e, Event::Summary(_))));
    assert_eq!(outcome.summary.passed, 0);
    assert!(slots[0].passed().is_empty() && slots[0].rejected().is_empty());
    assert!(fake.db().requests.is_empty(), "no request from a refused station");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_station_may_not_run_stops_it() {
    let ca = TestCa::new();
    let fake = Fake::new(100);
    fake.db().allowed_jobs = vec!["other".into()];
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let station = start(config(ca.bundle("desk-1", ks.addr)), dir.path(), 1, None);
    let (outcome, _, _) = station.outcome().await;
    let err = outcome.error.expect("an error");
    assert!(matches!(err, RunError::JobNotAllowed { .. }), "{err}");
    assert_eq!(err.exit_code(), 3);
    assert!(err.to_string().contains("other"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_record_left_ends_the_job_cleanly_and_leaves_the_card_untouched() {
    let ca = TestCa::new();
    let fake = Fake::new(2);
    // Without job status the station learns it from the refusal.
    fake.db().send_job_status = false;
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let station = start(config(ca.bundle("desk-1", ks.addr)), dir.path(), 1, None);
    let (outcome, events, slots) = station.outcome().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.summary.end, RunEnd::NoRecordLeft);
    assert_eq!((outcome.summary.passed, outcome.summary.rejected), (2, 0));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Refused { what, message } if what == "no_record_left" && message.contains("no queued record"))));
    // The third card is still in its slot, no command sent to it.
    assert!(slots[0].current_serial().is_some());
    assert_eq!(slots[0].passed().len(), 2);
    assert!(slots[0].rejected().is_empty());
    let untouched: Vec<_> = cards(&events)
        .into_iter()
        .filter(|c| c.2 == Bin::Untouched)
        .collect();
    assert_eq!(untouched.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_job_ends_the_run() {
    let ca = TestCa::new();
    let fake = Fake::new(3);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let station = start(config(ca.bundle("desk-1", ks.addr)), dir.path(), 2, None);
    let (outcome, _, slots) = station.outcome().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert!(
        matches!(outcome.summary.end, RunEnd::JobDone | RunEnd::NoRecordLeft),
        "{:?}",
        outcome.summary.end
    );
    assert_eq!(outcome.summary.passed, 3);
    assert_eq!(passed(&slots), 3);
    assert_eq!(rejected(&slots), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_exit_ends_the_run_when_no_card_comes() {
    let ca = TestCa::new();
    let fake = Fake::new(100);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(ca.bundle("desk-1", ks.addr));
    cfg.idle_exit = Some(Duration::from_millis(500));
    // One card in stock.
    let station = start(cfg, dir.path(), 1, Some(1));
    let (outcome, _, _) = station.outcome().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.summary.end, RunEnd::Idle);
    assert_eq!(outcome.summary.passed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_finishes_the_card_in_flight() {
    let ca = TestCa::new();
    let fake = Fake::new(100);
    fake.db().plan.push_back(CardPlan::HoldAfterFirstReply);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let station = start(config(ca.bundle("desk-1", ks.addr)), dir.path(), 1, None);
    fake.until("a card held", |db| db.held == 1).await;
    station.stop.send(Stop::Drain).unwrap();
    station
        .until("the stop noticed", |ev| {
            ev.iter().any(|e| matches!(e, Event::Stopping { .. }))
        })
        .await;
    fake.release();
    let (outcome, _, slots) = station.outcome().await;
    assert!(outcome.error.is_none());
    assert_eq!(outcome.summary.end, RunEnd::Interrupted);
    assert_eq!((outcome.summary.passed, outcome.summary.rejected), (1, 0));
    assert_eq!(slots[0].passed().len(), 1);
    assert_eq!(fake.db().requests.len(), 1, "no new card after Ctrl-C");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_twice_rejects_the_card_in_flight() {
    let ca = TestCa::new();
    let fake = Fake::new(100);
    fake.db().plan.push_back(CardPlan::HoldAfterFirstReply);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let station = start(config(ca.bundle("desk-1", ks.addr)), dir.path(), 1, None);
    fake.until("a card held", |db| db.held == 1).await;
    station.stop.send(Stop::Drain).unwrap();
    station.stop.send(Stop::Abort).unwrap();
    let (outcome, events, slots) = station.outcome().await;
    assert!(outcome.error.is_none());
    assert_eq!(outcome.summary.end, RunEnd::Aborted);
    assert_eq!((outcome.summary.passed, outcome.summary.rejected), (0, 1));
    assert_eq!(slots[0].rejected().len(), 1);
    assert!(cards(&events)[0].4.contains("interrupted"));
    fake.until("the keyserver voided the card", |db| db.voided == 1)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_keyserver_is_asked_again_and_the_card_passes() {
    let ca = TestCa::new();
    let fake = Fake::new(5);
    // Two refusals "too many cards open for this station" (RESOURCE_EXHAUSTED,
    // the same status as "no record left"): the Result's refusal tells
    // them apart.
    fake.db().busy_opens = 2;
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(ca.bundle("desk-1", ks.addr));
    cfg.cards = Some(1);
    // Decided by the Result, which comes before the status: the bound on
    // waiting for a Result that does not come plays no part.
    cfg.refusal_wait = PATIENCE;
    let station = start(cfg, dir.path(), 1, None);
    let (outcome, events, slots) = station.outcome().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.summary.end, RunEnd::CardsReached);
    assert_eq!((outcome.summary.passed, outcome.summary.rejected), (1, 0));
    assert_eq!(slots[0].passed().len(), 1);
    assert!(!events
        .iter()
        .any(|e| matches!(e, Event::Refused { what, .. } if what == "no_record_left")));
    let db = fake.db();
    assert_eq!(db.busy_opens, 0);
    let rid = db.requests[0].request_id.clone();
    assert_eq!(
        db.refusals,
        vec![
            (rid.clone(), protos::pb::Refusal::StationBusy),
            (rid.clone(), protos::pb::Refusal::StationBusy)
        ]
    );
    assert_eq!(db.opens.iter().filter(|o| **o == rid).count(), 3);
    assert_eq!((db.issued, db.voided, db.queued), (1, 0, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_keyserver_never_saw_is_settled_without_reserving_a_record() {
    let ca = TestCa::new();
    let fake = Fake::new(5);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    // A station that stopped after journaling a request, before sending it.
    let never_sent = {
        let j = Journal::open(dir.path(), "desk-1").unwrap();
        j.begin(station::journal::NewRequest {
            reader: "sim 0".into(),
            job: JOB.into(),
            protocol: 2,
            atr: vec![0x3B, 0x88],
            event_count: None,
        })
        .unwrap()
        .request_id
    };
    let mut cfg = config(ca.bundle("desk-1", ks.addr));
    cfg.cards = Some(1);
    let station = start(cfg, dir.path(), 1, None);
    station
        .until("the request settled", |ev| {
            ev.iter()
                .any(|e| matches!(e, Event::Settled { request_id, .. } if *request_id == never_sent))
        })
        .await;
    let (outcome, events, _) = station.outcome().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let s = outcome.summary;
    assert_eq!((s.passed, s.rejected, s.recovered), (1, 1, 1));
    let settled = events
        .iter()
        .find_map(|e| match e {
            Event::Settled {
                request_id,
                keyserver_ok,
                reason,
                ..
            } if *request_id == never_sent => Some((*keyserver_ok, reason.clone())),
            _ => None,
        })
        .unwrap();
    assert!(!settled.0);
    assert!(settled.1.contains("never reserved"), "{settled:?}");
    let db = fake.db();
    let asked: Vec<bool> = db
        .requests
        .iter()
        .filter(|r| r.request_id == never_sent)
        .map(|r| r.resume)
        .collect();
    assert_eq!(asked, vec![true], "only a lookup");
    assert_eq!(
        (db.issued, db.voided, db.queued),
        (1, 0, 4),
        "no record was reserved or voided for it"
    );
    drop(db);
    let j = Journal::open(dir.path(), "desk-1").unwrap();
    let e = j
        .entries()
        .unwrap()
        .into_iter()
        .find(|e| e.request_id == never_sent)
        .unwrap();
    assert!(e.recovered && !e.unsettled);
    assert_eq!(e.keyserver.map(|v| v.ok), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_reader_is_marked_and_retried_while_the_others_carry_on() {
    let ca = TestCa::new();
    let fake = Fake::new(1000);
    let ks = fake.start(&ca, 0);
    let dir = tempfile::tempdir().unwrap();
    let station = start(config(ca.bundle("desk-1", ks.addr)), dir.path(), 2, None);
    let failing = station.slots[0].name().to_owned();
    let other = station.slots[1].name().to_owned();
    station.slots[0].fail_reader(3);
    // Reader 0 fails three times (100, 200, 400 ms pauses); reader 1 passes
    // cards meanwhile; then reader 0 passes cards again.
    let failed_at = |ev: &[Event]| {
        ev.iter().position(|e| {
            matches!(e, Event::Reader { reader, state: ReaderStatus::Failed, retry_in_s: Some(_), detail: Some(d), .. }
                if *reader == failing && d.contains("the reader failed"))
        })
    };
    let passed_after = |ev: &[Event], from: usize, name: &str| {
        ev.get(from..)
            .unwrap_or_default()
            .iter()
            .any(|e| matches!(e, Event::Card { reader, bin: Bin::Pass, .. } if reader == name))
    };
    station
        .until("the failing reader back at work", |ev| {
            failed_at(ev).is_some_and(|f| passed_after(ev, f, &failing))
        })
        .await;
    station.stop.send(Stop::Drain).unwrap();
    let (outcome, events, slots) = station.outcome().await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.summary.rejected, 0);
    let first_failure = failed_at(&events).unwrap();
    let failures = events
        .iter()
        .filter(
            |e| matches!(e, Event::Reader { reader, state: ReaderStatus::Failed, .. } if *reader == failing),
        )
        .count();
    assert_eq!(failures, 3, "each failure is shown");
    assert!(
        passed_after(&events, first_failure, &other),
        "the other reader carried on while reader 0 failed"
    );
    assert!(!slots[0].passed().is_empty() && !slots[1].passed().is_empty());
}
