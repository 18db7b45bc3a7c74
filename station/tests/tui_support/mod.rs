//! Events and console states for the console's tests: one builder per
//! event kind, and the representative states the snapshots show.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use station::readers::Bin;
use station::report::{Event, LinkStatus, ReaderStatus, RunEnd, Summary};
use station::tui::{Action, ConsoleState};

pub const STATION: &str = "desk-1";
pub const JOB: &str = "people-2025";

pub fn start() -> Event {
    Event::Start {
        station: STATION.into(),
        keyserver: "ks.example:7443".into(),
        job: JOB.into(),
        readers: "sim:2".into(),
        journal: "/var/lib/cardsmith/station-desk-1".into(),
    }
}

pub fn link(state: LinkStatus, retry_in_s: Option<u64>, detail: &str) -> Event {
    Event::Keyserver {
        state,
        retry_in_s,
        detail: (!detail.is_empty()).then(|| detail.to_owned()),
    }
}

pub fn readers(names: &[&str]) -> Event {
    Event::Readers {
        readers: names.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn reader(name: &str, state: ReaderStatus, round_trip: Option<u32>) -> Event {
    Event::Reader {
        reader: name.into(),
        state,
        round_trip,
        retry_in_s: None,
        detail: None,
    }
}

pub fn reader_failed(name: &str, retry_in_s: Option<u64>, detail: &str) -> Event {
    Event::Reader {
        reader: name.into(),
        state: ReaderStatus::Failed,
        round_trip: None,
        retry_in_s,
        detail: Some(detail.into()),
    }
}

/// Card number `n` in `reader`, taking `seconds`.
pub fn card(reader: &str, n: u32, bin: Bin, reason: &str, seconds: f64) -> Event {
    Event::Card {
        reader: reader.into(),
        request_id: format!("desk-1-{n:010}"),
        bin,
        keyserver_ok: Some(bin == Bin::Pass),
        reason: reason.into(),
        card_serial: format!("{:08X}", 0x4711_0000 + n),
        round_trips: 2,
        seconds,
        recovered: false,
    }
}

pub fn recovered(reader: &str, n: u32) -> Event {
    Event::Card {
        reader: reader.into(),
        request_id: format!("desk-1-{n:010}"),
        bin: Bin::Reject,
        keyserver_ok: None,
        reason: "in flight when the station stopped".into(),
        card_serial: String::new(),
        round_trips: 0,
        seconds: 0.0,
        recovered: true,
    }
}

pub fn job(total: u64, issued: u64, queued: u64, in_flight: u64, voided: u64) -> Event {
    Event::JobStatus {
        job: JOB.into(),
        total,
        issued,
        voided,
        queued,
        in_flight,
    }
}

pub fn refused(what: &str, message: &str) -> Event {
    Event::Refused {
        what: what.into(),
        message: message.into(),
    }
}

pub fn settled(ok: bool) -> Event {
    Event::Settled {
        request_id: "desk-1-0000000007".into(),
        keyserver_ok: ok,
        reason: if ok {
            "issued".into()
        } else {
            "the card was removed".into()
        },
        card_serial: if ok { "47110007".into() } else { String::new() },
    }
}

pub fn stopping(reason: &str) -> Event {
    Event::Stopping {
        reason: reason.into(),
    }
}

pub fn summary(passed: u64, rejected: u64, end: RunEnd) -> Event {
    Event::Summary(Summary {
        passed,
        rejected,
        round_trips_per_card: 2,
        cards_per_hour: 312,
        recovered: 0,
        end,
    })
}

/// Applies `events` at `at_s` seconds on the console's clock.
pub fn at(state: &mut ConsoleState, at_s: f64, events: &[Event]) {
    state.set_clock(Duration::from_secs_f64(at_s));
    for e in events {
        state.apply(e);
    }
}

pub const READERS: [&str; 2] = ["sim 0", "sim 1"];

/// Started a second ago; the keyserver being contacted; two readers waiting.
pub fn connecting() -> ConsoleState {
    let mut s = ConsoleState::new();
    at(
        &mut s,
        0.0,
        &[start(), link(LinkStatus::Connecting, None, "ks.example:7443")],
    );
    at(
        &mut s,
        0.4,
        &[
            readers(&READERS),
            reader("sim 0", ReaderStatus::Waiting, None),
            reader("sim 1", ReaderStatus::Waiting, None),
        ],
    );
    s.set_clock(Duration::from_secs(1));
    s
}

/// Two readers personalizing after five cards (one rejected).
pub fn personalizing() -> ConsoleState {
    let mut s = connecting();
    at(
        &mut s,
        1.2,
        &[
            link(
                LinkStatus::Connected,
                None,
                "ks.example:7443 (cardsmith-keyserver 0.1.0)",
            ),
            job(100, 0, 100, 0, 0),
        ],
    );
    let cards = [
        (12.0, "sim 0", 1, Bin::Pass, ""),
        (13.0, "sim 1", 2, Bin::Pass, ""),
        (23.5, "sim 0", 3, Bin::Reject, "status word 6982 at step 4"),
        (24.0, "sim 1", 4, Bin::Pass, ""),
        (35.0, "sim 0", 5, Bin::Pass, ""),
    ];
    let mut issued = 0;
    for (t, r, n, bin, reason) in cards {
        if bin == Bin::Pass {
            issued += 1;
        }
        at(
            &mut s,
            t,
            &[
                card(r, n, bin, reason, 10.5),
                job(100, issued, 100 - issued - 1, 1, 0),
                reader(r, ReaderStatus::Waiting, None),
            ],
        );
    }
    at(
        &mut s,
        36.0,
        &[
            reader("sim 1", ReaderStatus::Personalizing, Some(2)),
            reader("sim 0", ReaderStatus::Personalizing, Some(1)),
            job(100, 4, 94, 2, 0),
        ],
    );
    s.set_clock(Duration::from_secs(37));
    s
}

/// The keyserver went away: unreachable, retried in 5 s; a card held,
/// a reader failed.
pub fn unreachable() -> ConsoleState {
    let mut s = personalizing();
    at(
        &mut s,
        40.0,
        &[
            link(
                LinkStatus::Lost,
                Some(1),
                "Unavailable: the keyserver ended the control stream",
            ),
            card(
                "sim 0",
                6,
                Bin::Reject,
                "the connection to the keyserver was lost",
                4.0,
            ),
            card(
                "sim 1",
                7,
                Bin::Reject,
                "the connection to the keyserver was lost",
                4.0,
            ),
            reader("sim 0", ReaderStatus::Holding, None),
            reader_failed("sim 1", Some(8), "the reader is busy"),
        ],
    );
    at(
        &mut s,
        41.0,
        &[link(LinkStatus::Connecting, None, "ks.example:7443")],
    );
    at(
        &mut s,
        41.5,
        &[link(
            LinkStatus::Unreachable,
            Some(8),
            "transport error: tcp connect error: Connection refused (os error 111)",
        )],
    );
    s.set_clock(Duration::from_millis(44_700));
    s
}

/// The keyserver refused this station (its certificate revoked).
pub fn refused_station() -> ConsoleState {
    let mut s = connecting();
    let why = "station desk-1: refused: its certificate was revoked";
    at(
        &mut s,
        1.5,
        &[
            link(LinkStatus::Refused, None, why),
            refused("station", why),
            reader("sim 0", ReaderStatus::Stopped, None),
        ],
    );
    s.set_clock(Duration::from_secs(2));
    s
}

/// The job done: stopping, then the summary.
pub fn finished() -> ConsoleState {
    let mut s = personalizing();
    at(
        &mut s,
        46.0,
        &[
            card("sim 1", 6, Bin::Pass, "", 10.0),
            card("sim 0", 7, Bin::Pass, "", 10.0),
            job(100, 6, 0, 0, 0),
            stopping("the job is done"),
            reader("sim 0", ReaderStatus::Stopped, None),
            reader("sim 1", ReaderStatus::Stopped, None),
            summary(6, 1, RunEnd::JobDone),
        ],
    );
    // The clock goes on; the elapsed time shown does not.
    s.set_clock(Duration::from_secs(300));
    s
}

/// [`personalizing`] with the help shown.
pub fn help() -> ConsoleState {
    let mut s = personalizing();
    s.handle(Action::ToggleHelp);
    s
}

/// The representative states, by name.
pub fn states() -> Vec<(&'static str, ConsoleState)> {
    vec![
        ("connecting", connecting()),
        ("personalizing", personalizing()),
        ("unreachable", unreachable()),
        ("refused", refused_station()),
        ("finished", finished()),
        ("help", help()),
    ]
}
