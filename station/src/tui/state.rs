//! Everything the console shows, changed only by [`ConsoleState::apply`]
//! (the run's [`Event`]s), [`ConsoleState::handle`] (the operator's
//! actions, see [`super::action`]) and [`ConsoleState::set_clock`] (time
//! passing, injected so that drawing is deterministic).

use std::collections::VecDeque;
use std::time::Duration;

use crate::control::Stop;
use crate::readers::Bin;
use crate::report::{per_hour, Event, LinkStatus, ReaderStatus, Summary};

/// How many log lines the console keeps (the newest).
pub const LOG_CAP: usize = 200;

/// The link to the keyserver, as the last [`Event::Keyserver`] said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LinkView {
    /// `None` before the first word about it.
    pub state: Option<LinkStatus>,
    /// When (on the console's clock) the next attempt is due.
    pub retry_at: Option<Duration>,
    pub detail: Option<String>,
}

/// The job's totals from the keyserver's last [`Event::JobStatus`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobTotals {
    pub total: u64,
    pub issued: u64,
    pub voided: u64,
    pub queued: u64,
    pub in_flight: u64,
}

/// The last card a reader finished.
#[derive(Debug, Clone, PartialEq)]
pub struct LastCard {
    pub bin: Bin,
    /// Empty when the keyserver never named the card.
    pub serial: String,
    pub request_id: String,
    /// The keyserver's (or the station's) reason; empty for a good card.
    pub reason: String,
}

/// One reader's row.
#[derive(Debug, Clone, PartialEq)]
pub struct ReaderRow {
    pub name: String,
    /// `None` while the reader is only listed.
    pub status: Option<ReaderStatus>,
    pub round_trip: Option<u32>,
    /// When (on the console's clock) a failed reader is retried.
    pub retry_at: Option<Duration>,
    pub detail: Option<String>,
    pub passed: u64,
    pub rejected: u64,
    pub last_card: Option<LastCard>,
    /// The start of this reader's first card of this run, its last card's
    /// end (console clock): the span its cards/hour is taken over.
    first_start: Option<Duration>,
    last_end: Option<Duration>,
}

impl ReaderRow {
    fn new(name: &str) -> Self {
        ReaderRow {
            name: name.to_owned(),
            status: None,
            round_trip: None,
            retry_at: None,
            detail: None,
            passed: 0,
            rejected: 0,
            last_card: None,
            first_start: None,
            last_end: None,
        }
    }

    /// Passed cards per hour, from its first card's start to its last
    /// card's end (as the run's summary counts them).
    pub fn cards_per_hour(&self) -> u64 {
        match (self.first_start, self.last_end) {
            (Some(a), Some(b)) => per_hour(self.passed, b.saturating_sub(a)),
            _ => 0,
        }
    }
}

/// What a log line is about (its tag and color).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Pass,
    Reject,
    /// A card no command reached (left as it was).
    Untouched,
    /// The keyserver refused something.
    Refused,
    /// The keyserver's recorded verdict for a request closed without one.
    Settled,
    /// The link to the keyserver changed.
    Link,
    /// The run is stopping.
    Stopping,
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// When, on the console's clock.
    pub at: Duration,
    pub kind: LogKind,
    /// The reader, for card lines.
    pub reader: Option<String>,
    pub text: String,
}

/// Where the run is.
#[derive(Debug, Clone, PartialEq)]
pub enum RunState {
    Running,
    /// The run takes no new card; why.
    Stopping(String),
    Finished(Summary),
}

/// The station, job and readers the run was started with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartInfo {
    pub station: String,
    pub keyserver: String,
    pub job: String,
    pub readers: String,
    pub journal: String,
}

/// What the operator set on the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ui {
    /// The selected reader (an index into the rows; 0 when there are none).
    pub selected: usize,
    /// How many of the newest log lines are scrolled past.
    pub log_scroll: usize,
    pub help: bool,
    /// What the operator asked for with the quit key.
    pub stop_asked: Stop,
}

impl Default for Ui {
    fn default() -> Self {
        Ui {
            selected: 0,
            log_scroll: 0,
            help: false,
            stop_asked: Stop::Run,
        }
    }
}

/// Everything the console shows.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsoleState {
    now: Duration,
    started_at: Option<Duration>,
    finished_at: Option<Duration>,
    start: StartInfo,
    link: LinkView,
    /// The last link state written to the log (retries are said once).
    link_logged: Option<LinkStatus>,
    job: Option<JobTotals>,
    readers: Vec<ReaderRow>,
    passed: u64,
    rejected: u64,
    log: VecDeque<LogLine>,
    /// A refusal of the station or of its job: the run cannot go on.
    refusal: Option<String>,
    run: RunState,
    pub(super) ui: Ui,
}

impl Default for ConsoleState {
    fn default() -> Self {
        ConsoleState::new()
    }
}

fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO)
}

impl ConsoleState {
    pub fn new() -> Self {
        ConsoleState {
            now: Duration::ZERO,
            started_at: None,
            finished_at: None,
            start: StartInfo::default(),
            link: LinkView::default(),
            link_logged: None,
            job: None,
            readers: Vec::new(),
            passed: 0,
            rejected: 0,
            log: VecDeque::new(),
            refusal: None,
            run: RunState::Running,
            ui: Ui::default(),
        }
    }

    /// Time passes: `now` is the console's clock (time since it started).
    /// A clock that goes back is ignored.
    pub fn set_clock(&mut self, now: Duration) {
        self.now = self.now.max(now);
    }

    pub fn now(&self) -> Duration {
        self.now
    }

    /// How long the run has been going (frozen when it finished).
    pub fn elapsed(&self) -> Duration {
        let end = self.finished_at.unwrap_or(self.now);
        end.saturating_sub(self.started_at.unwrap_or(Duration::ZERO))
    }

    pub fn start(&self) -> &StartInfo {
        &self.start
    }

    pub fn link(&self) -> &LinkView {
        &self.link
    }

    /// Whole seconds until the keyserver is tried again (0: due now).
    pub fn link_retry_left(&self) -> Option<u64> {
        self.link.retry_at.map(|at| countdown(at, self.now))
    }

    /// Whole seconds until reader `row` is tried again.
    pub fn reader_retry_left(&self, row: &ReaderRow) -> Option<u64> {
        row.retry_at.map(|at| countdown(at, self.now))
    }

    pub fn job(&self) -> Option<&JobTotals> {
        self.job.as_ref()
    }

    pub fn readers(&self) -> &[ReaderRow] {
        &self.readers
    }

    /// The selected reader's row.
    pub fn selected(&self) -> Option<&ReaderRow> {
        self.readers.get(self.ui.selected)
    }

    /// Cards passed and rejected in this run (rejected counts the cards
    /// found in flight at start, as the summary does).
    pub fn passed(&self) -> u64 {
        self.passed
    }

    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The log, newest first.
    pub fn log(&self) -> &VecDeque<LogLine> {
        &self.log
    }

    pub fn refusal(&self) -> Option<&str> {
        self.refusal.as_deref()
    }

    pub fn run(&self) -> &RunState {
        &self.run
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.run, RunState::Finished(_))
    }

    pub fn ui(&self) -> &Ui {
        &self.ui
    }

    /// Takes in one thing that happened.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Start {
                station,
                keyserver,
                job,
                readers,
                journal,
            } => {
                self.start = StartInfo {
                    station: station.clone(),
                    keyserver: keyserver.clone(),
                    job: job.clone(),
                    readers: readers.clone(),
                    journal: journal.clone(),
                };
                if self.started_at.is_none() {
                    self.started_at = Some(self.now);
                }
            }
            Event::Keyserver {
                state,
                retry_in_s,
                detail,
            } => {
                self.link = LinkView {
                    state: Some(state.clone()),
                    retry_at: retry_in_s.map(|s| self.now.saturating_add(Duration::from_secs(s))),
                    detail: detail.clone(),
                };
                // Said once per change (not per retry); a refusal is said
                // by the Refused event that follows it.
                let quiet = matches!(state, LinkStatus::Connecting | LinkStatus::Refused);
                if !quiet && self.link_logged.as_ref() != Some(state) {
                    let text = match (state, detail) {
                        (LinkStatus::Connected, Some(d)) => format!("keyserver connected: {d}"),
                        (LinkStatus::Unreachable, Some(d)) => format!("keyserver unreachable: {d}"),
                        (LinkStatus::Lost, Some(d)) => format!("keyserver connection lost: {d}"),
                        (LinkStatus::Connected, None) => "keyserver connected".to_owned(),
                        (LinkStatus::Unreachable, None) => "keyserver unreachable".to_owned(),
                        _ => "keyserver connection lost".to_owned(),
                    };
                    self.push_log(LogKind::Link, None, text);
                }
                if !quiet {
                    self.link_logged = Some(state.clone());
                }
                if *state == LinkStatus::Refused && self.refusal.is_none() {
                    self.refusal = Some(match detail {
                        Some(d) => format!("the keyserver refused this station: {d}"),
                        None => "the keyserver refused this station".to_owned(),
                    });
                }
            }
            Event::Readers { readers } => {
                for name in readers {
                    self.row(name);
                }
            }
            Event::Reader {
                reader,
                state,
                round_trip,
                retry_in_s,
                detail,
            } => {
                let now = self.now;
                let row = self.row(reader);
                row.status = Some(state.clone());
                row.round_trip = *round_trip;
                row.retry_at = retry_in_s.map(|s| now.saturating_add(Duration::from_secs(s)));
                row.detail = detail.clone();
            }
            Event::Card {
                reader,
                request_id,
                bin,
                reason,
                card_serial,
                round_trips,
                seconds: took,
                recovered,
                ..
            } => {
                let now = self.now;
                let row = self.row(reader);
                match bin {
                    Bin::Pass => row.passed += 1,
                    Bin::Reject => row.rejected += 1,
                    Bin::Untouched => {}
                }
                if !recovered && *bin != Bin::Untouched {
                    let started = now.saturating_sub(seconds(*took));
                    row.first_start = Some(row.first_start.map_or(started, |f| f.min(started)));
                    row.last_end = Some(now);
                }
                row.last_card = Some(LastCard {
                    bin: *bin,
                    serial: card_serial.clone(),
                    request_id: request_id.clone(),
                    reason: reason.clone(),
                });
                match bin {
                    Bin::Pass => self.passed += 1,
                    Bin::Reject => self.rejected += 1,
                    Bin::Untouched => {}
                }
                let who = if card_serial.is_empty() {
                    format!("request {request_id}")
                } else {
                    format!("card {card_serial}")
                };
                let mut text = match bin {
                    Bin::Pass => format!("{who} personalized"),
                    Bin::Reject => format!("{who} rejected"),
                    Bin::Untouched => format!("{who} left untouched"),
                };
                if !reason.is_empty() {
                    text.push_str(": ");
                    text.push_str(reason);
                }
                // Where a bad card stopped.
                if *bin == Bin::Reject && *round_trips > 0 {
                    text.push_str(&format!(" (round trip {round_trips})"));
                }
                if *recovered {
                    text.push_str(" (in flight at start)");
                }
                let kind = match bin {
                    Bin::Pass => LogKind::Pass,
                    Bin::Reject => LogKind::Reject,
                    Bin::Untouched => LogKind::Untouched,
                };
                self.push_log(kind, Some(reader.clone()), text);
            }
            Event::Settled {
                request_id,
                keyserver_ok,
                reason,
                card_serial,
            } => {
                let text = if *keyserver_ok {
                    let card = if card_serial.is_empty() {
                        "its card".to_owned()
                    } else {
                        format!("card {card_serial}")
                    };
                    format!("{card} was ISSUED after all, it is good (request {request_id})")
                } else {
                    format!("request {request_id}: the keyserver recorded it failed: {reason}")
                };
                self.push_log(LogKind::Settled, None, text);
            }
            Event::JobStatus {
                total,
                issued,
                voided,
                queued,
                in_flight,
                ..
            } => {
                self.job = Some(JobTotals {
                    total: *total,
                    issued: *issued,
                    voided: *voided,
                    queued: *queued,
                    in_flight: *in_flight,
                });
            }
            Event::Refused { what, message } => {
                // The log line's tag says "refused".
                let whom = match what.as_str() {
                    "station" => "this station".to_owned(),
                    "job" => "the job".to_owned(),
                    "no_record_left" => "no record left".to_owned(),
                    "request" => "a request".to_owned(),
                    other => other.replace('_', " "),
                };
                if matches!(what.as_str(), "station" | "job") {
                    self.refusal = Some(format!("the keyserver refused {whom}: {message}"));
                }
                self.push_log(LogKind::Refused, None, format!("{whom}: {message}"));
            }
            Event::Stopping { reason } => {
                if !self.is_finished() {
                    self.run = RunState::Stopping(reason.clone());
                }
                self.push_log(LogKind::Stopping, None, format!("stopping: {reason}"));
            }
            Event::Summary(summary) => {
                self.run = RunState::Finished(*summary);
                if self.finished_at.is_none() {
                    self.finished_at = Some(self.now);
                }
                for row in &mut self.readers {
                    row.retry_at = None;
                }
                self.link.retry_at = None;
            }
        }
    }

    /// The row of reader `name`, added (in name order) when new.
    fn row(&mut self, name: &str) -> &mut ReaderRow {
        let at = match self.readers.binary_search_by(|r| r.name.as_str().cmp(name)) {
            Ok(i) => i,
            Err(i) => {
                self.readers.insert(i, ReaderRow::new(name));
                // The selection stays on the reader it was on.
                if i <= self.ui.selected && self.readers.len() > 1 {
                    self.ui.selected += 1;
                }
                i
            }
        };
        // `at` is in range: found or just inserted there.
        let len = self.readers.len();
        &mut self.readers[at.min(len - 1)]
    }

    fn push_log(&mut self, kind: LogKind, reader: Option<String>, text: String) {
        self.log.push_front(LogLine {
            at: self.elapsed_now(),
            kind,
            reader,
            text,
        });
        self.log.truncate(LOG_CAP);
        // A scrolled log keeps showing the same lines.
        if self.ui.log_scroll > 0 {
            self.ui.log_scroll = (self.ui.log_scroll + 1).min(self.log.len().saturating_sub(1));
        }
    }

    /// The run's time now (a log line's time stamp).
    fn elapsed_now(&self) -> Duration {
        self.now.saturating_sub(self.started_at.unwrap_or(Duration::ZERO))
    }

    pub(super) fn select_by(&mut self, delta: isize) {
        let last = self.readers.len().saturating_sub(1);
        self.ui.selected = self.ui.selected.saturating_add_signed(delta).min(last);
    }

    pub(super) fn scroll_by(&mut self, delta: i32) {
        let last = self.log.len().saturating_sub(1);
        let d = isize::try_from(delta).unwrap_or(0);
        self.ui.log_scroll = self.ui.log_scroll.saturating_add_signed(d).min(last);
    }
}

/// Whole seconds from `now` to `at`, rounded up.
fn countdown(at: Duration, now: Duration) -> u64 {
    let left = at.saturating_sub(now);
    left.as_secs() + u64::from(left.subsec_nanos() > 0)
}
