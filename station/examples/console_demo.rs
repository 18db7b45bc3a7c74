//! The operator console driven by a scripted run, no keyserver needed:
//! the keyserver unreachable for a moment, then two sim readers
//! personalizing cards (every fifth one rejected) until the job's ten
//! records are issued or `q` is pressed (once: the cards in flight are
//! finished; twice: rejected).
//!
//! ```text
//! cargo run -p station --example console_demo [-- --no-wait]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;
use std::time::Duration;

use station::control::Stop;
use station::readers::Bin;
use station::report::{per_hour, Event, LinkStatus, ReaderStatus, Report, RunEnd, Summary};
use station::tui::{self, ConsoleOptions};
use tokio::sync::watch;

const RECORDS: u64 = 10;
const READERS: [&str; 2] = ["sim 0", "sim 1"];

fn reader(report: &dyn Report, name: &str, state: ReaderStatus, round_trip: Option<u32>) {
    report.event(&Event::Reader {
        reader: name.into(),
        state,
        round_trip,
        retry_in_s: None,
        detail: None,
    });
}

/// Sleeps `ms`, or less when the operator asks to stop.
fn pause(stop: &watch::Receiver<Stop>, ms: u64) -> Stop {
    for _ in 0..ms / 50 {
        if *stop.borrow() == Stop::Abort {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    *stop.borrow()
}

fn main() -> ExitCode {
    let no_wait = std::env::args().any(|a| a == "--no-wait");
    let (stop_tx, stop) = watch::channel(Stop::Run);
    let options = ConsoleOptions {
        wait_for_key: !no_wait,
        ..ConsoleOptions::default()
    };
    let console = match tui::run_console(options, stop_tx) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("console_demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = console.report();
    let r = report.as_ref();
    r.event(&Event::Start {
        station: "desk-1".into(),
        keyserver: "127.0.0.1:7443".into(),
        job: "people".into(),
        readers: "sim:2".into(),
        journal: "/tmp/station-journal".into(),
    });
    r.event(&Event::Keyserver {
        state: LinkStatus::Connecting,
        retry_in_s: None,
        detail: Some("127.0.0.1:7443".into()),
    });
    r.event(&Event::Readers {
        readers: READERS.iter().map(|s| s.to_string()).collect(),
    });
    for name in READERS {
        reader(r, name, ReaderStatus::Waiting, None);
    }
    pause(&stop, 500);
    r.event(&Event::Keyserver {
        state: LinkStatus::Unreachable,
        retry_in_s: Some(3),
        detail: Some("connection refused".into()),
    });
    for name in READERS {
        reader(r, name, ReaderStatus::Holding, None);
    }
    pause(&stop, 3000);
    r.event(&Event::Keyserver {
        state: LinkStatus::Connected,
        retry_in_s: None,
        detail: Some("127.0.0.1:7443 (cardsmith-keyserver 0.1.0)".into()),
    });
    let (mut passed, mut rejected, mut issued, mut n) = (0u64, 0u64, 0u64, 0u64);
    let started = std::time::Instant::now();
    let mut end = RunEnd::JobDone;
    'run: while issued + rejected < RECORDS {
        for (i, name) in READERS.iter().enumerate() {
            if *stop.borrow() != Stop::Run {
                end = RunEnd::Interrupted;
                break 'run;
            }
            n += 1;
            for rt in 1..=2 {
                reader(r, name, ReaderStatus::Personalizing, Some(rt));
                if pause(&stop, 400 + 100 * i as u64) == Stop::Abort {
                    break;
                }
            }
            let aborted = *stop.borrow() == Stop::Abort;
            let good = !aborted && n % 5 != 0;
            let reason = if aborted {
                "interrupted: rejected in flight"
            } else if good {
                ""
            } else {
                "status word 6982 at step 4 (security status not satisfied)"
            };
            if good {
                passed += 1;
                issued += 1;
            } else {
                rejected += 1;
            }
            r.event(&Event::Card {
                reader: name.to_string(),
                request_id: format!("desk-1-{n:010}"),
                bin: if good { Bin::Pass } else { Bin::Reject },
                keyserver_ok: Some(good),
                reason: reason.into(),
                card_serial: format!("{:08X}", 0x4711_0000 + n),
                round_trips: 2,
                seconds: 0.9,
                recovered: false,
            });
            r.event(&Event::JobStatus {
                job: "people".into(),
                total: RECORDS,
                issued,
                voided: 0,
                queued: RECORDS - issued - rejected,
                in_flight: 0,
            });
            reader(r, name, ReaderStatus::Waiting, None);
            if aborted {
                end = RunEnd::Aborted;
                break 'run;
            }
        }
    }
    if end != RunEnd::JobDone {
        r.event(&Event::Stopping {
            reason: "interrupted: finishing the cards in flight (again to reject them)".into(),
        });
        pause(&stop, 1000);
    } else {
        r.event(&Event::Stopping {
            reason: end.text().into(),
        });
    }
    for name in READERS {
        reader(r, name, ReaderStatus::Stopped, None);
    }
    let summary = Summary {
        passed,
        rejected,
        round_trips_per_card: 2,
        cards_per_hour: per_hour(passed, started.elapsed()),
        recovered: 0,
        end,
    };
    r.event(&Event::Summary(summary));
    r.finish();
    drop(report);
    if let Err(e) = console.wait() {
        eprintln!("console_demo: {e}");
    }
    print!("{}", summary.lines());
    ExitCode::SUCCESS
}
