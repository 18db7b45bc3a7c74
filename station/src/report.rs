//! What the station tells its operator: [`Event`]s, shown as JSON lines
//! ([`JsonLines`], when standard output is not a terminal) or as one
//! progress line per reader refreshed in place ([`Progress`], on a
//! terminal), and the final [`Summary`].
//!
//! No event carries key material or cardholder data: readers, request ids,
//! card serials, the keyserver's reasons, counts.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::journal::now_ms;
use crate::readers::Bin;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state of the connection to the keyserver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkStatus {
    Connecting,
    Connected,
    /// Could not connect; retrying.
    Unreachable,
    /// The connection dropped; reconnecting.
    Lost,
    /// The keyserver refused this station.
    Refused,
}

/// What a reader is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReaderStatus {
    /// Waiting for a card.
    Waiting,
    /// A card is in it; waiting for the keyserver.
    Holding,
    /// Personalizing: the round trip being run.
    Personalizing,
    /// Failed; retried after a pause.
    Failed,
    /// The reader went away.
    Gone,
    /// No more cards for this reader in this run.
    Stopped,
}

/// Why the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEnd {
    /// The keyserver reports no record queued and none in flight.
    JobDone,
    /// The keyserver refused a request: no record left.
    NoRecordLeft,
    /// `--cards N` cards were personalized or rejected.
    CardsReached,
    /// No card for `--idle-exit` seconds.
    Idle,
    /// Ctrl-C / SIGTERM: cards in flight were finished.
    Interrupted,
    /// Asked twice: cards in flight were rejected.
    Aborted,
    /// A fatal refusal or error (see the error).
    Failed,
}

impl RunEnd {
    pub fn text(self) -> &'static str {
        match self {
            RunEnd::JobDone => "the job is done",
            RunEnd::NoRecordLeft => "the job has no record left",
            RunEnd::CardsReached => "the number of cards asked for is reached",
            RunEnd::Idle => "no card came for the idle time",
            RunEnd::Interrupted => "interrupted; cards in flight were finished",
            RunEnd::Aborted => "interrupted twice; cards in flight were rejected",
            RunEnd::Failed => "stopped by an error",
        }
    }
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Start {
        station: String,
        keyserver: String,
        job: String,
        readers: String,
        journal: String,
    },
    Keyserver {
        state: LinkStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_in_s: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// The readers the station found (when the list changes).
    Readers {
        readers: Vec<String>,
    },
    Reader {
        reader: String,
        state: ReaderStatus,
        #[serde(skip_serializing_if = "Option::is_none")]
        round_trip: Option<u32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_in_s: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A card is done (or, `recovered`, was found in flight at start).
    Card {
        reader: String,
        request_id: String,
        bin: Bin,
        /// The keyserver's outcome, when its Result arrived.
        #[serde(skip_serializing_if = "Option::is_none")]
        keyserver_ok: Option<bool>,
        reason: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        card_serial: String,
        round_trips: u32,
        seconds: f64,
        recovered: bool,
    },
    /// The keyserver's recorded Result for a request closed without one.
    Settled {
        request_id: String,
        keyserver_ok: bool,
        reason: String,
        #[serde(skip_serializing_if = "String::is_empty")]
        card_serial: String,
    },
    JobStatus {
        job: String,
        total: u64,
        issued: u64,
        voided: u64,
        queued: u64,
        in_flight: u64,
    },
    /// The keyserver refused something; `what`: `station`, `job`,
    /// `no_record_left`, `request`.
    Refused {
        what: String,
        message: String,
    },
    Stopping {
        reason: String,
    },
    Summary(Summary),
}

/// The run's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub passed: u64,
    pub rejected: u64,
    /// The most round trips a card of this run took (Result.round_trips).
    pub round_trips_per_card: u32,
    /// Passed cards per hour, from the first card's start to the last
    /// card's end.
    pub cards_per_hour: u64,
    /// Cards found in flight at start (counted in `rejected`).
    pub recovered: u64,
    pub end: RunEnd,
}

impl Summary {
    /// The summary's lines, exactly: `passed: N`, `rejected: N`,
    /// `round trips per card: N`, `cards/hour: N`.
    pub fn lines(&self) -> String {
        format!(
            "passed: {}\nrejected: {}\nround trips per card: {}\ncards/hour: {}\n",
            self.passed, self.rejected, self.round_trips_per_card, self.cards_per_hour
        )
    }
}

/// Cards per hour for `cards` over `elapsed`, rounded.
pub fn per_hour(cards: u64, elapsed: Duration) -> u64 {
    let secs = elapsed.as_secs_f64();
    if cards == 0 || secs <= 0.0 {
        return 0;
    }
    let v = (cards as f64) * 3600.0 / secs;
    if v.is_finite() && v < u64::MAX as f64 {
        v.round() as u64
    } else {
        u64::MAX
    }
}

impl Event {
    /// The event in words, for a terminal.
    pub fn text(&self) -> String {
        match self {
            Event::Start {
                station,
                keyserver,
                job,
                readers,
                journal,
            } => {
                format!("station {station}: job {job} on {readers}, keyserver {keyserver}, journal {journal}")
            }
            Event::Keyserver {
                state,
                retry_in_s,
                detail,
            } => {
                let d = detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
                match (state, retry_in_s) {
                    (LinkStatus::Connecting, _) => "connecting to the keyserver".into(),
                    (LinkStatus::Connected, _) => format!("keyserver connected{d}"),
                    (LinkStatus::Unreachable, Some(s)) => {
                        format!("keyserver unreachable, retrying in {s} s{d}")
                    }
                    (LinkStatus::Lost, Some(s)) => {
                        format!("keyserver connection lost, retrying in {s} s{d}")
                    }
                    (LinkStatus::Unreachable, None) => format!("keyserver unreachable{d}"),
                    (LinkStatus::Lost, None) => format!("keyserver connection lost{d}"),
                    (LinkStatus::Refused, _) => format!("the keyserver refused this station{d}"),
                }
            }
            Event::Readers { readers } => {
                if readers.is_empty() {
                    "no reader matches yet: waiting for one".to_owned()
                } else {
                    format!("readers: {}", readers.join(", "))
                }
            }
            Event::Reader {
                reader,
                state,
                round_trip,
                retry_in_s,
                detail,
            } => format!(
                "{reader}: {}",
                reader_text(state, *round_trip, *retry_in_s, detail.as_deref())
            ),
            Event::Card {
                reader,
                request_id,
                bin,
                reason,
                card_serial,
                round_trips,
                recovered,
                ..
            } => {
                let serial = if card_serial.is_empty() {
                    String::new()
                } else {
                    format!(" card {card_serial}")
                };
                let how = if *recovered { " (in flight at start)" } else { "" };
                format!(
                    "{reader}: request {request_id}{serial}: {}{how}, {round_trips} round trip(s){}",
                    bin.as_str(),
                    if reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {reason}")
                    }
                )
            }
            Event::Settled {
                request_id,
                keyserver_ok,
                reason,
                card_serial,
            } => {
                if *keyserver_ok {
                    format!(
                        "request {request_id}: the keyserver recorded card {card_serial} as ISSUED although the station rejected it: that card is good"
                    )
                } else {
                    format!("request {request_id}: the keyserver recorded it as failed ({reason})")
                }
            }
            Event::JobStatus {
                job,
                total,
                issued,
                voided,
                queued,
                in_flight,
            } => format!(
                "job {job}: {issued}/{total} issued, {queued} queued, {in_flight} in flight, {voided} voided"
            ),
            Event::Refused { what, message } => format!("refused ({what}): {message}"),
            Event::Stopping { reason } => format!("stopping: {reason}"),
            Event::Summary(s) => s.lines().trim_end().replace('\n', ", "),
        }
    }
}

fn reader_text(
    state: &ReaderStatus,
    round_trip: Option<u32>,
    retry: Option<u64>,
    detail: Option<&str>,
) -> String {
    let d = detail.map(|d| format!(": {d}")).unwrap_or_default();
    match state {
        ReaderStatus::Waiting => format!("waiting for a card{d}"),
        ReaderStatus::Holding => format!("card in reader, waiting for the keyserver{d}"),
        ReaderStatus::Personalizing => match round_trip {
            Some(r) => format!("personalizing (round trip {r}){d}"),
            None => format!("personalizing{d}"),
        },
        ReaderStatus::Failed => match retry {
            Some(s) => format!("failed, retrying in {s} s{d}"),
            None => format!("failed{d}"),
        },
        ReaderStatus::Gone => format!("gone{d}"),
        ReaderStatus::Stopped => format!("stopped{d}"),
    }
}

/// Where events go.
pub trait Report: Send + Sync {
    fn event(&self, event: &Event);
    /// The run is over: leave the terminal tidy.
    fn finish(&self) {}
}

/// One JSON object per line: `{"ts_ms": …, "event": "card", …}`.
pub struct JsonLines<W: Write + Send> {
    out: Mutex<W>,
}

impl<W: Write + Send> JsonLines<W> {
    pub fn new(out: W) -> Self {
        JsonLines { out: Mutex::new(out) }
    }

    pub fn into_inner(self) -> W {
        self.out.into_inner().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Serialize)]
struct Line<'a> {
    ts_ms: u64,
    #[serde(flatten)]
    event: &'a Event,
}

impl<W: Write + Send> Report for JsonLines<W> {
    fn event(&self, event: &Event) {
        let Ok(text) = serde_json::to_string(&Line {
            ts_ms: now_ms(),
            event,
        }) else {
            return;
        };
        let mut out = lock(&self.out);
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// Collects events (tests, tools).
#[derive(Default)]
pub struct Collect {
    events: Mutex<Vec<Event>>,
}

impl Collect {
    pub fn events(&self) -> Vec<Event> {
        lock(&self.events).clone()
    }
}

impl Report for Collect {
    fn event(&self, event: &Event) {
        lock(&self.events).push(event.clone());
    }
}

/// Sends every event to two reports.
pub struct Tee<A, B>(pub A, pub B);

impl<A: Report, B: Report> Report for Tee<A, B> {
    fn event(&self, event: &Event) {
        self.0.event(event);
        self.1.event(event);
    }
    fn finish(&self) {
        self.0.finish();
        self.1.finish();
    }
}

#[derive(Debug, Clone, Default)]
struct ReaderRow {
    passed: u64,
    rejected: u64,
    first_card: Option<Instant>,
    last_end: Option<Instant>,
    state: String,
}

#[derive(Default)]
struct View {
    keyserver: String,
    job: String,
    readers: BTreeMap<String, ReaderRow>,
    last: String,
    drawn: usize,
}

/// The terminal view: a keyserver line, one line per reader (reader,
/// passed, rejected, cards/hour, state) and the latest message, redrawn
/// in place.
pub struct Progress<W: Write + Send> {
    out: Mutex<(W, View)>,
}

impl<W: Write + Send> Progress<W> {
    pub fn new(out: W) -> Self {
        Progress {
            out: Mutex::new((out, View::default())),
        }
    }

    /// The lines the view shows now (without terminal control codes).
    fn lines(view: &View) -> Vec<String> {
        let mut lines = vec![format!("{} {}", view.keyserver, view.job).trim_end().to_owned()];
        let width = view.readers.keys().map(|k| k.chars().count()).max().unwrap_or(0);
        for (name, r) in &view.readers {
            let rate = match (r.first_card, r.last_end) {
                (Some(a), Some(b)) => per_hour(r.passed, b.saturating_duration_since(a)),
                _ => 0,
            };
            lines.push(format!(
                "{name:<width$}  passed {:>5}  rejected {:>4}  {:>6} cards/h  {}",
                r.passed, r.rejected, rate, r.state
            ));
        }
        if !view.last.is_empty() {
            lines.push(view.last.clone());
        }
        lines
    }

    fn apply(view: &mut View, event: &Event) {
        match event {
            Event::Start { job, .. } => view.job = format!("| job {job}"),
            Event::Keyserver { .. } => view.keyserver = event.text(),
            Event::Reader {
                reader,
                state,
                round_trip,
                retry_in_s,
                detail,
            } => {
                let row = view.readers.entry(reader.clone()).or_default();
                row.state = reader_text(state, *round_trip, *retry_in_s, detail.as_deref());
                if *state == ReaderStatus::Personalizing && row.first_card.is_none() {
                    row.first_card = Some(Instant::now());
                }
            }
            Event::Card {
                reader,
                bin,
                recovered,
                ..
            } => {
                let row = view.readers.entry(reader.clone()).or_default();
                match bin {
                    Bin::Pass => row.passed += 1,
                    Bin::Reject => row.rejected += 1,
                    Bin::Untouched => {}
                }
                if !recovered {
                    row.last_end = Some(Instant::now());
                }
                view.last = event.text();
            }
            Event::JobStatus { .. } => view.job = format!("| {}", event.text()),
            Event::Readers { .. }
            | Event::Settled { .. }
            | Event::Refused { .. }
            | Event::Stopping { .. } => view.last = event.text(),
            Event::Summary(_) => {}
        }
    }
}

impl<W: Write + Send> Report for Progress<W> {
    fn event(&self, event: &Event) {
        let mut guard = lock(&self.out);
        let (out, view) = &mut *guard;
        Self::apply(view, event);
        let lines = Self::lines(view);
        // Back to the first line drawn, then redraw every line.
        if view.drawn > 0 {
            let _ = write!(out, "\x1b[{}A", view.drawn);
        }
        // A line longer than the terminal would wrap and throw the
        // redraw off: cut it.
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse::<usize>().ok())
            .filter(|w| *w > 20)
            .unwrap_or(120);
        for l in &lines {
            let cut: String = l.chars().take(width - 1).collect();
            let _ = write!(out, "\r\x1b[2K{cut}\n");
        }
        view.drawn = lines.len();
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(reader: &str, bin: Bin) -> Event {
        Event::Card {
            reader: reader.into(),
            request_id: "abc-0000000001".into(),
            bin,
            keyserver_ok: Some(bin == Bin::Pass),
            reason: if bin == Bin::Pass {
                String::new()
            } else {
                "the card was removed".into()
            },
            card_serial: "00001234".into(),
            round_trips: 2,
            seconds: 1.5,
            recovered: false,
        }
    }

    #[test]
    fn the_summary_has_exactly_its_four_lines() {
        let s = Summary {
            passed: 7,
            rejected: 1,
            round_trips_per_card: 3,
            cards_per_hour: 420,
            recovered: 0,
            end: RunEnd::CardsReached,
        };
        assert_eq!(
            s.lines(),
            "passed: 7\nrejected: 1\nround trips per card: 3\ncards/hour: 420\n"
        );
    }

    #[test]
    fn rates() {
        assert_eq!(per_hour(0, Duration::from_secs(10)), 0);
        assert_eq!(per_hour(10, Duration::ZERO), 0);
        assert_eq!(per_hour(1, Duration::from_secs(1)), 3600);
        assert_eq!(per_hour(3, Duration::from_secs(36)), 300);
    }

    #[test]
    fn json_lines_are_one_object_per_event() {
        let j = JsonLines::new(Vec::new());
        j.event(&card("sim 0", Bin::Pass));
        j.event(&Event::Keyserver {
            state: LinkStatus::Unreachable,
            retry_in_s: Some(4),
            detail: None,
        });
        let text = String::from_utf8(j.into_inner()).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["event"], "card");
        assert_eq!(lines[0]["bin"], "pass");
        assert_eq!(lines[0]["reader"], "sim 0");
        assert_eq!(lines[0]["card_serial"], "00001234");
        assert!(lines[0]["ts_ms"].as_u64().unwrap() > 0);
        assert_eq!(lines[1]["event"], "keyserver");
        assert_eq!(lines[1]["state"], "unreachable");
        assert_eq!(lines[1]["retry_in_s"], 4);
    }

    #[test]
    fn texts_say_what_happened() {
        let e = Event::Keyserver {
            state: LinkStatus::Unreachable,
            retry_in_s: Some(4),
            detail: None,
        };
        assert_eq!(e.text(), "keyserver unreachable, retrying in 4 s");
        let t = card("sim 1", Bin::Reject).text();
        assert!(
            t.contains("sim 1") && t.contains("reject") && t.contains("the card was removed"),
            "{t}"
        );
    }

    #[test]
    fn the_progress_view_keeps_one_line_per_reader() {
        let p = Progress::new(Vec::new());
        p.event(&Event::Reader {
            reader: "sim 0".into(),
            state: ReaderStatus::Waiting,
            round_trip: None,
            retry_in_s: None,
            detail: None,
        });
        p.event(&Event::Reader {
            reader: "sim 1".into(),
            state: ReaderStatus::Personalizing,
            round_trip: Some(2),
            retry_in_s: None,
            detail: None,
        });
        p.event(&card("sim 1", Bin::Pass));
        p.event(&card("sim 0", Bin::Reject));
        let guard = lock(&p.out);
        let lines = Progress::<Vec<u8>>::lines(&guard.1);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(
            lines[1].starts_with("sim 0") && lines[1].contains("rejected    1"),
            "{lines:?}"
        );
        assert!(
            lines[2].starts_with("sim 1") && lines[2].contains("passed     1"),
            "{lines:?}"
        );
        assert!(lines[2].contains("personalizing (round trip 2)"), "{lines:?}");
        // Redrawn in place: the cursor goes up over the lines drawn before.
        let text = String::from_utf8_lossy(&guard.0);
        assert!(text.contains("\x1b[3A"), "{text:?}");
    }
}
