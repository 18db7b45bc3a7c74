//! `ConsoleState::apply` for every event kind, and a property: any
//! sequence of events, actions and clock ticks never panics (applying or
//! drawing at any size) and keeps the counts consistent.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tui_support;

use std::time::Duration;

use proptest::prelude::*;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::widgets::Widget;
use station::control::Stop;
use station::readers::Bin;
use station::report::{Event, LinkStatus, ReaderStatus, RunEnd, Summary};
use station::tui::state::{LogKind, RunState, LOG_CAP};
use station::tui::widgets::Screen;
use station::tui::{Action, Command, ConsoleState};
use tui_support::*;

#[test]
fn start_names_the_run_and_starts_the_clock() {
    let mut s = ConsoleState::new();
    s.set_clock(Duration::from_secs(5));
    s.apply(&start());
    assert_eq!(s.start().station, STATION);
    assert_eq!(s.start().job, JOB);
    assert_eq!(s.start().readers, "sim:2");
    assert_eq!(s.elapsed(), Duration::ZERO);
    s.set_clock(Duration::from_secs(65));
    assert_eq!(s.elapsed(), Duration::from_secs(60));
    // The clock does not go back.
    s.set_clock(Duration::from_secs(1));
    assert_eq!(s.now(), Duration::from_secs(65));
}

#[test]
fn keyserver_link_state_countdown_and_log() {
    let mut s = ConsoleState::new();
    at(
        &mut s,
        0.0,
        &[start(), link(LinkStatus::Connecting, None, "ks:1")],
    );
    assert_eq!(s.link().state, Some(LinkStatus::Connecting));
    assert_eq!(s.link().detail.as_deref(), Some("ks:1"));
    assert!(s.log().is_empty(), "connecting is not news");

    at(&mut s, 10.0, &[link(LinkStatus::Unreachable, Some(4), "refused")]);
    assert_eq!(s.link_retry_left(), Some(4));
    s.set_clock(Duration::from_millis(12_500));
    assert_eq!(s.link_retry_left(), Some(2), "rounded up");
    s.set_clock(Duration::from_secs(20));
    assert_eq!(s.link_retry_left(), Some(0));
    // Retries of the same failure are said once.
    at(&mut s, 20.0, &[link(LinkStatus::Connecting, None, "ks:1")]);
    assert_eq!(s.link_retry_left(), None);
    at(&mut s, 20.1, &[link(LinkStatus::Unreachable, Some(8), "refused")]);
    assert_eq!(s.log().len(), 1, "{:?}", s.log());
    assert_eq!(s.log()[0].kind, LogKind::Link);
    assert!(s.log()[0].text.contains("unreachable"));

    at(
        &mut s,
        30.0,
        &[link(LinkStatus::Connected, None, "ks:1 (ks 0.1)")],
    );
    at(&mut s, 40.0, &[link(LinkStatus::Lost, Some(1), "reset")]);
    let texts: Vec<&str> = s.log().iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "keyserver connection lost: reset",
            "keyserver connected: ks:1 (ks 0.1)",
            "keyserver unreachable: refused"
        ]
    );
    assert_eq!(s.log()[0].at, Duration::from_secs(40));
}

#[test]
fn a_refused_station_is_said_once_and_stays() {
    let s = refused_station();
    assert_eq!(s.link().state, Some(LinkStatus::Refused));
    assert!(s.refusal().unwrap().contains("revoked"), "{:?}", s.refusal());
    let refusals = s.log().iter().filter(|l| l.kind == LogKind::Refused).count();
    assert_eq!(refusals, 1, "{:?}", s.log());
}

#[test]
fn refusals_of_each_kind() {
    let mut s = ConsoleState::new();
    s.apply(&refused("request", "the record is locked"));
    s.apply(&refused("no_record_left", "job people has no queued record left"));
    assert_eq!(s.refusal(), None, "neither stops the station by itself");
    s.apply(&refused("job", "station desk-1 may not run job x"));
    assert!(s.refusal().unwrap().contains("may not run"));
    let texts: Vec<&str> = s.log().iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            "the job: station desk-1 may not run job x",
            "no record left: job people has no queued record left",
            "a request: the record is locked",
        ]
    );
    assert!(s.log().iter().all(|l| l.kind == LogKind::Refused));
}

#[test]
fn readers_are_listed_in_name_order_and_keep_the_selection() {
    let mut s = ConsoleState::new();
    s.apply(&readers(&["sim 1"]));
    assert_eq!(s.readers().len(), 1);
    assert_eq!(s.readers()[0].status, None);
    s.apply(&reader("sim 2", ReaderStatus::Waiting, None));
    s.handle(Action::SelectNext);
    assert_eq!(s.selected().unwrap().name, "sim 2");
    s.apply(&readers(&["sim 0", "sim 1", "sim 2"]));
    let names: Vec<&str> = s.readers().iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["sim 0", "sim 1", "sim 2"]);
    assert_eq!(s.selected().unwrap().name, "sim 2", "a reader added before it");
    // A reader missing from a later list keeps its row (its own event
    // says it is gone).
    s.apply(&readers(&["sim 0"]));
    assert_eq!(s.readers().len(), 3);
}

#[test]
fn reader_states_round_trips_and_retries() {
    let mut s = ConsoleState::new();
    at(
        &mut s,
        1.0,
        &[reader("sim 0", ReaderStatus::Personalizing, Some(2))],
    );
    let r = &s.readers()[0];
    assert_eq!(r.status, Some(ReaderStatus::Personalizing));
    assert_eq!(r.round_trip, Some(2));
    at(&mut s, 2.0, &[reader_failed("sim 0", Some(3), "reader busy")]);
    let r = s.readers()[0].clone();
    assert_eq!(r.status, Some(ReaderStatus::Failed));
    assert_eq!(r.round_trip, None);
    assert_eq!(r.detail.as_deref(), Some("reader busy"));
    assert_eq!(s.reader_retry_left(&r), Some(3));
    s.set_clock(Duration::from_millis(4_200));
    assert_eq!(s.reader_retry_left(&r), Some(1));
    for st in [
        ReaderStatus::Waiting,
        ReaderStatus::Holding,
        ReaderStatus::Gone,
        ReaderStatus::Stopped,
    ] {
        s.apply(&reader("sim 0", st.clone(), None));
        assert_eq!(s.readers()[0].status, Some(st));
        assert_eq!(s.readers()[0].retry_at, None);
        assert_eq!(s.readers()[0].detail, None);
    }
}

#[test]
fn cards_count_per_reader_and_in_total() {
    let mut s = ConsoleState::new();
    at(&mut s, 0.0, &[start()]);
    at(&mut s, 10.0, &[card("sim 0", 1, Bin::Pass, "issued", 10.0)]);
    at(
        &mut s,
        20.0,
        &[card("sim 0", 2, Bin::Reject, "status word 6982", 10.0)],
    );
    at(&mut s, 30.0, &[card("sim 0", 3, Bin::Pass, "", 10.0)]);
    at(
        &mut s,
        31.0,
        &[card("sim 1", 4, Bin::Untouched, "no record left", 1.0)],
    );
    at(&mut s, 32.0, &[recovered("sim 1", 5)]);
    let r0 = &s.readers()[0];
    assert_eq!((r0.passed, r0.rejected), (1 + 1, 1));
    // Two passed cards from 0 s to 30 s: 240 an hour.
    assert_eq!(r0.cards_per_hour(), 240);
    let last = r0.last_card.as_ref().unwrap();
    assert_eq!(last.serial, "47110003");
    assert_eq!(last.bin, Bin::Pass);
    let r1 = &s.readers()[1];
    assert_eq!((r1.passed, r1.rejected), (0, 1), "recovered counts rejected");
    assert_eq!(r1.cards_per_hour(), 0);
    assert_eq!((s.passed(), s.rejected()), (2, 2));
    let texts: Vec<(LogKind, &str)> = s.log().iter().map(|l| (l.kind, l.text.as_str())).collect();
    assert_eq!(
        texts,
        [
            (
                LogKind::Reject,
                "request desk-1-0000000005 rejected: in flight when the station stopped (in flight at start)"
            ),
            (LogKind::Untouched, "card 47110004 left untouched: no record left"),
            (LogKind::Pass, "card 47110003 personalized"),
            (
                LogKind::Reject,
                "card 47110002 rejected: status word 6982 (round trip 2)"
            ),
            (LogKind::Pass, "card 47110001 personalized: issued"),
        ]
    );
    assert_eq!(s.log()[0].reader.as_deref(), Some("sim 1"));
}

#[test]
fn a_card_with_nonsense_seconds_is_still_counted() {
    let mut s = ConsoleState::new();
    for secs in [f64::NAN, -1.0, f64::INFINITY, 1e300] {
        s.apply(&card("sim 0", 1, Bin::Pass, "", secs));
    }
    assert_eq!(s.readers()[0].passed, 4);
}

#[test]
fn settled_requests_are_logged() {
    let mut s = ConsoleState::new();
    s.apply(&settled(true));
    s.apply(&settled(false));
    assert!(s.log().iter().all(|l| l.kind == LogKind::Settled));
    assert!(
        s.log()[1].text.contains("47110007 was ISSUED after all"),
        "{:?}",
        s.log()
    );
    assert!(s.log()[0]
        .text
        .contains("recorded it failed: the card was removed"));
    assert_eq!((s.passed(), s.rejected()), (0, 0), "settling changes no count");
}

#[test]
fn job_totals_are_the_latest() {
    let mut s = ConsoleState::new();
    assert!(s.job().is_none());
    s.apply(&job(10, 1, 8, 1, 0));
    s.apply(&job(10, 2, 7, 0, 1));
    let j = s.job().unwrap();
    assert_eq!(
        (j.total, j.issued, j.queued, j.in_flight, j.voided),
        (10, 2, 7, 0, 1)
    );
}

#[test]
fn stopping_then_summary_then_nothing_undoes_it() {
    let mut s = personalizing();
    at(&mut s, 40.0, &[stopping("the job is done")]);
    assert_eq!(s.run(), &RunState::Stopping("the job is done".into()));
    assert_eq!(s.log()[0].kind, LogKind::Stopping);
    at(&mut s, 42.0, &[summary(4, 1, RunEnd::JobDone)]);
    assert!(s.is_finished());
    s.set_clock(Duration::from_secs(500));
    assert_eq!(s.elapsed(), Duration::from_secs(42), "frozen at the end");
    s.apply(&stopping("late"));
    assert!(s.is_finished(), "finished stays finished");
    assert_eq!(s.link_retry_left(), None);
}

#[test]
fn the_log_keeps_the_newest_lines() {
    let mut s = ConsoleState::new();
    for n in 0..(LOG_CAP as u32 + 50) {
        s.apply(&card("sim 0", n, Bin::Pass, "", 1.0));
    }
    assert_eq!(s.log().len(), LOG_CAP);
    assert!(s.log()[0]
        .text
        .contains(&format!("{:08X}", 0x4711_0000 + LOG_CAP as u32 + 49)));
    assert_eq!(
        s.readers()[0].passed,
        LOG_CAP as u64 + 50,
        "counts are not bounded"
    );
}

#[test]
fn a_scrolled_log_stays_on_its_lines() {
    let mut s = personalizing();
    s.handle(Action::ScrollLog(2));
    let shown = s.log()[s.ui().log_scroll].clone();
    s.apply(&card("sim 1", 99, Bin::Pass, "", 1.0));
    assert_eq!(s.log()[s.ui().log_scroll], shown);
}

// --- the property ---------------------------------------------------------

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("sim 0".to_owned()),
        Just("sim 1".to_owned()),
        Just("Virtual PCD 00 00".to_owned()),
        Just("読取機 1".to_owned()),
        Just(String::new()),
        "[ -~]{0,40}",
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[ -~]{0,100}", "\\PC{0,60}"]
}

fn link_status() -> impl Strategy<Value = LinkStatus> {
    prop_oneof![
        Just(LinkStatus::Connecting),
        Just(LinkStatus::Connected),
        Just(LinkStatus::Unreachable),
        Just(LinkStatus::Lost),
        Just(LinkStatus::Refused),
    ]
}

fn reader_status() -> impl Strategy<Value = ReaderStatus> {
    prop_oneof![
        Just(ReaderStatus::Waiting),
        Just(ReaderStatus::Holding),
        Just(ReaderStatus::Personalizing),
        Just(ReaderStatus::Failed),
        Just(ReaderStatus::Gone),
        Just(ReaderStatus::Stopped),
    ]
}

fn bin() -> impl Strategy<Value = Bin> {
    prop_oneof![Just(Bin::Pass), Just(Bin::Reject), Just(Bin::Untouched)]
}

fn run_end() -> impl Strategy<Value = RunEnd> {
    prop_oneof![
        Just(RunEnd::JobDone),
        Just(RunEnd::NoRecordLeft),
        Just(RunEnd::CardsReached),
        Just(RunEnd::Idle),
        Just(RunEnd::Interrupted),
        Just(RunEnd::Aborted),
        Just(RunEnd::Failed),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (name(), text(), text()).prop_map(|(station, job, readers)| Event::Start {
            station,
            keyserver: "ks:1".into(),
            job,
            readers,
            journal: "/j".into(),
        }),
        (
            link_status(),
            proptest::option::of(any::<u64>()),
            proptest::option::of(text())
        )
            .prop_map(|(state, retry_in_s, detail)| Event::Keyserver {
                state,
                retry_in_s,
                detail
            }),
        proptest::collection::vec(name(), 0..5).prop_map(|readers| Event::Readers { readers }),
        (
            name(),
            reader_status(),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(text())
        )
            .prop_map(|(reader, state, round_trip, retry_in_s, detail)| Event::Reader {
                reader,
                state,
                round_trip,
                retry_in_s,
                detail
            }),
        (
            name(),
            bin(),
            text(),
            "[0-9A-F]{0,16}",
            any::<u32>(),
            any::<f64>(),
            any::<bool>()
        )
            .prop_map(
                |(reader, bin, reason, card_serial, round_trips, seconds, recovered)| {
                    Event::Card {
                        reader,
                        request_id: "r-1".into(),
                        bin,
                        keyserver_ok: None,
                        reason,
                        card_serial,
                        round_trips,
                        seconds,
                        recovered,
                    }
                }
            ),
        (any::<bool>(), text(), "[0-9A-F]{0,16}").prop_map(|(keyserver_ok, reason, card_serial)| {
            Event::Settled {
                request_id: "r-2".into(),
                keyserver_ok,
                reason,
                card_serial,
            }
        }),
        proptest::array::uniform5(any::<u64>()).prop_map(|[total, issued, voided, queued, in_flight]| {
            Event::JobStatus {
                job: "j".into(),
                total,
                issued,
                voided,
                queued,
                in_flight,
            }
        }),
        (
            prop_oneof![
                Just("station".to_owned()),
                Just("job".to_owned()),
                Just("no_record_left".to_owned()),
                Just("request".to_owned()),
                "[a-z_]{0,10}"
            ],
            text()
        )
            .prop_map(|(what, message)| Event::Refused { what, message }),
        text().prop_map(|reason| Event::Stopping { reason }),
        (any::<u64>(), any::<u64>(), any::<u32>(), any::<u64>(), run_end()).prop_map(
            |(passed, rejected, round_trips_per_card, cards_per_hour, end)| {
                Event::Summary(Summary {
                    passed,
                    rejected,
                    round_trips_per_card,
                    cards_per_hour,
                    recovered: 0,
                    end,
                })
            }
        ),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        Just(Action::Quit),
        Just(Action::SelectNext),
        Just(Action::SelectPrev),
        any::<i32>().prop_map(Action::ScrollLog),
        Just(Action::ToggleHelp),
        Just(Action::Dismiss),
        Just(Action::None),
    ]
}

#[derive(Debug, Clone)]
enum Step {
    Event(Event),
    Action(Action),
    /// The clock moves on by this many milliseconds.
    Tick(u32),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => event().prop_map(Step::Event),
        2 => action().prop_map(Step::Action),
        1 => any::<u32>().prop_map(Step::Tick),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_sequence_keeps_the_state_consistent(
        steps in proptest::collection::vec(step(), 0..80),
        (w, h) in (0u16..130, 0u16..45),
    ) {
        let mut s = ConsoleState::new();
        let mut now = Duration::ZERO;
        let (mut passed, mut rejected) = (0u64, 0u64);
        let mut finished = false;
        let mut stops = Vec::new();
        for st in steps {
            match st {
                Step::Event(e) => {
                    if let Event::Card { bin, .. } = &e {
                        match bin {
                            Bin::Pass => passed += 1,
                            Bin::Reject => rejected += 1,
                            Bin::Untouched => {}
                        }
                    }
                    finished |= matches!(e, Event::Summary(_));
                    s.apply(&e);
                }
                Step::Action(a) => match s.handle(a) {
                    Some(Command::Stop(stop)) => stops.push(stop),
                    Some(Command::Exit) => prop_assert!(s.is_finished(), "exit only once finished"),
                    None => {}
                },
                Step::Tick(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    s.set_clock(now);
                }
            }
            prop_assert_eq!(s.passed(), passed);
            prop_assert_eq!(s.rejected(), rejected);
            prop_assert_eq!(s.readers().iter().map(|r| r.passed).sum::<u64>(), passed);
            prop_assert_eq!(s.readers().iter().map(|r| r.rejected).sum::<u64>(), rejected);
            prop_assert!(s.log().len() <= LOG_CAP);
            prop_assert!(s.ui().selected < s.readers().len().max(1));
            prop_assert!(s.ui().log_scroll < s.log().len().max(1));
            prop_assert!(s.readers().windows(2).all(|p| p[0].name < p[1].name), "sorted, unique");
            prop_assert_eq!(s.is_finished(), finished);
            prop_assert!(s.elapsed() <= s.now());
        }
        // Stop requests only ever escalate: drain, then abort, once each.
        prop_assert!(stops.len() <= 2);
        prop_assert!(stops.windows(2).all(|p| p[0] == Stop::Drain && p[1] == Stop::Abort));
        let mut buf = Buffer::empty(Rect::new(0, 0, w, h));
        Screen(&s).render(buf.area, &mut buf);
    }
}
