//! The station's control loop: one control stream to the keyserver, one
//! task per reader, one Perso stream per card.
//!
//! Per card (see `control/card.rs`): a card enters a reader → connect, ATR → the
//! request is journaled durably → PersoRequest on the control stream →
//! Perso stream (PersoOpen) → each Script run by the relay, its Reply sent
//! → PersoDone and the Result → the card released into its bin (pass only
//! on a Result OK) → the outcome journaled → the next card (pcscd's event
//! counter says it is another card).
//!
//! Around it:
//!
//! - the link ([`link`]) connects with mutual TLS and reconnects with
//!   capped exponential backoff; a card in flight when it drops is
//!   rejected, and its request asked for again later (see `control/settle.rs`);
//! - at start, requests the journal shows in flight (the station was
//!   killed) are counted rejected, their cards (same reader, same pcscd
//!   event count) powered off into the reject bin if still there, and
//!   the keyserver asked for their recorded Result;
//! - refusals: a revoked station ends the run with an error; a job the
//!   station may not run too; "no record left" ends the run cleanly;
//! - the run ends when the job is done, after `--cards N` cards, after
//!   `--idle-exit` without a card, or on Ctrl-C (cards in flight are
//!   finished; a second Ctrl-C rejects them).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use protos::bundle::StationBundle;
use protos::pb;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::journal::{Journal, JournalError};
use crate::readers::{Bin, Reader, ReaderSource};
use crate::relay::RelayConfig;
use crate::report::{per_hour, Event, ReaderStatus, Report, RunEnd, Summary};

pub(crate) mod card;
pub mod link;
pub(crate) mod settle;

pub use link::Backoff;
use link::{LinkConfig, LinkParts, LinkState, Results, Session};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the operator asked for with signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Run,
    /// Take no new card; finish the cards in flight.
    Drain,
    /// Reject the cards in flight now.
    Abort,
}

/// How the station runs.
#[derive(Clone)]
pub struct RunConfig {
    pub bundle: StationBundle,
    /// The keyserver, `host:port` (default: the bundle's).
    pub keyserver: String,
    pub job: String,
    /// Stop after this many cards passed or rejected.
    pub cards: Option<u64>,
    /// Stop after this long without a card.
    pub idle_exit: Option<Duration>,
    /// Give up when the keyserver cannot be reached within this at start.
    pub connect_timeout: Option<Duration>,
    pub relay: RelayConfig,
    pub backoff: Backoff,
    /// How long blocking reader calls wait before looking around again.
    pub poll: Duration,
    /// How long to wait for a card's Result after its PersoDone.
    pub result_wait: Duration,
    /// How long to wait for the Result that explains a refused Perso
    /// stream.
    pub refusal_wait: Duration,
    /// How long the keyserver may stay silent on a card's Perso stream.
    pub keyserver_wait: Duration,
    pub software_version: String,
}

impl std::fmt::Debug for RunConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunConfig")
            .field("station", &self.bundle.station)
            .field("keyserver", &self.keyserver)
            .field("job", &self.job)
            .field("cards", &self.cards)
            .field("idle_exit", &self.idle_exit)
            .finish_non_exhaustive()
    }
}

impl RunConfig {
    /// The defaults for `bundle` and `job`.
    pub fn new(bundle: StationBundle, job: &str) -> Self {
        RunConfig {
            keyserver: bundle.keyserver.clone(),
            bundle,
            job: job.to_owned(),
            cards: None,
            idle_exit: None,
            connect_timeout: Some(Duration::from_secs(120)),
            relay: RelayConfig::default(),
            backoff: Backoff::default(),
            poll: Duration::from_millis(500),
            result_wait: Duration::from_secs(60),
            refusal_wait: Duration::from_secs(5),
            keyserver_wait: Duration::from_secs(660),
            software_version: format!("cardsmith-station {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// What ends a run with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the keyserver refused this station (revoked or not enrolled): {0}")]
    Refused(String),
    #[error("the keyserver refused job {job:?}: {reason}")]
    JobRefused { job: String, reason: String },
    #[error("station {station} may not run job {job:?}; the keyserver lets it run: {allowed}")]
    JobNotAllowed {
        station: String,
        job: String,
        allowed: String,
    },
    #[error("the keyserver at {address} could not be reached: {reason}")]
    Unreachable { address: String, reason: String },
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("the station failed: {0}")]
    Internal(String),
}

impl RunError {
    /// The process exit code: 3 refused, 4 unreachable, 1 anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Refused(_) | RunError::JobRefused { .. } | RunError::JobNotAllowed { .. } => 3,
            RunError::Unreachable { .. } => 4,
            RunError::Journal(_) | RunError::Internal(_) => 1,
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    pub summary: Summary,
    pub error: Option<RunError>,
}

#[derive(Default)]
struct Tally {
    passed: u64,
    rejected: u64,
    recovered: u64,
    max_round_trips: u32,
    first_start: Option<Instant>,
    last_end: Option<Instant>,
}

/// What the tasks of a run share.
pub(crate) struct Shared {
    pub cfg: RunConfig,
    pub journal: Arc<Journal>,
    pub report: Arc<dyn Report>,
    pub link: watch::Receiver<LinkState>,
    pub results: Arc<Results>,
    stop: watch::Receiver<Stop>,
    ending: watch::Sender<Option<RunEnd>>,
    fatal: Mutex<Option<RunError>>,
    tally: Mutex<Tally>,
    /// Cards not yet started under `--cards`.
    tickets: Mutex<Option<u64>>,
    pub in_flight: AtomicUsize,
    last_card: Mutex<Instant>,
    /// Per reader, the event count of a card a crashed run left in flight.
    skip: Mutex<HashMap<String, u32>>,
    readers: Arc<Mutex<BTreeMap<String, pb::ReaderInfo>>>,
}

impl Shared {
    /// Whether new cards may start.
    pub fn accepting(&self) -> bool {
        self.ending.borrow().is_none() && *self.stop.borrow() == Stop::Run
    }

    pub fn stop_receiver(&self) -> watch::Receiver<Stop> {
        self.stop.clone()
    }

    /// Ends the run (the first reason given stands).
    pub fn end(&self, why: RunEnd) {
        self.ending.send_if_modified(|e| {
            if e.is_none() {
                *e = Some(why);
                true
            } else {
                false
            }
        });
    }

    /// Ctrl-C again: cards in flight are rejected, whatever ended the run.
    fn abort(&self) {
        self.ending.send_if_modified(|e| match e {
            None | Some(RunEnd::Interrupted) => {
                *e = Some(RunEnd::Aborted);
                true
            }
            _ => false,
        });
    }

    /// Ends the run with an error (the first error stands).
    pub fn fail(&self, error: RunError) {
        {
            let mut f = lock(&self.fatal);
            if f.is_none() {
                tracing::error!(error = %error, "the run stops");
                *f = Some(error);
            }
        }
        self.end(RunEnd::Failed);
    }

    fn touch(&self) {
        *lock(&self.last_card) = Instant::now();
    }

    fn take_ticket(&self) -> bool {
        match &mut *lock(&self.tickets) {
            None => true,
            Some(0) => false,
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }

    fn give_back_ticket(&self) {
        if let Some(n) = &mut *lock(&self.tickets) {
            *n += 1;
        }
    }

    /// Whether the first card a reader shows is the one a killed run left
    /// in flight (same event count). Asked once per reader: a later card
    /// is never taken for it (after a pcscd restart counts start over).
    fn skip_card(&self, reader: &str, event_count: u32) -> bool {
        lock(&self.skip).remove(reader) == Some(event_count)
    }

    /// Counts a finished card.
    pub fn count(&self, bin: Bin, round_trips: Option<u32>, started: Instant) {
        let finished = {
            let mut t = lock(&self.tally);
            match bin {
                Bin::Pass => t.passed += 1,
                Bin::Reject => t.rejected += 1,
                Bin::Untouched => return,
            }
            if let Some(r) = round_trips {
                t.max_round_trips = t.max_round_trips.max(r);
            }
            if t.first_start.is_none_or(|f| started < f) {
                t.first_start = Some(started);
            }
            t.last_end = Some(Instant::now());
            // Cards found in flight at start are not this run's.
            (t.passed + t.rejected).saturating_sub(t.recovered)
        };
        if let Some(n) = self.cfg.cards {
            if finished >= n {
                self.end(RunEnd::CardsReached);
            }
        }
    }

    fn summary(&self, end: RunEnd) -> Summary {
        let t = lock(&self.tally);
        let rate = match (t.first_start, t.last_end) {
            (Some(a), Some(b)) => per_hour(t.passed, b.saturating_duration_since(a)),
            _ => 0,
        };
        Summary {
            passed: t.passed,
            rejected: t.rejected,
            round_trips_per_card: t.max_round_trips,
            cards_per_hour: rate,
            recovered: t.recovered,
            end,
        }
    }

    /// Records a reader's state for the Hello and tells the keyserver.
    fn reader_info(&self, name: &str, present: bool, failed: bool) {
        let info = pb::ReaderInfo {
            name: name.to_owned(),
            card_present: present,
            failed,
        };
        let changed = {
            let mut r = lock(&self.readers);
            let old = r.insert(name.to_owned(), info.clone());
            old.as_ref() != Some(&info)
        };
        if changed {
            if let Some(s) = self.link.borrow().session() {
                let _ = s.control.try_send(pb::StationEvent {
                    event: Some(pb::station_event::Event::Reader(info)),
                });
            }
        }
    }

    pub fn reader_event(
        &self,
        reader: &str,
        state: ReaderStatus,
        round_trip: Option<u32>,
        detail: Option<String>,
    ) {
        self.report.event(&Event::Reader {
            reader: reader.to_owned(),
            state,
            round_trip,
            retry_in_s: None,
            detail,
        });
    }
}

/// Resolves when the link is no longer the connection `generation`.
pub(crate) async fn link_gone(mut rx: watch::Receiver<LinkState>, generation: u64) {
    loop {
        if rx.borrow_and_update().generation() != Some(generation) {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Resolves when the operator asks to abort (never if nobody can).
pub(crate) async fn aborted(mut rx: watch::Receiver<Stop>) {
    if rx.wait_for(|s| *s == Stop::Abort).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Runs the station until the job ends. `stop` carries Ctrl-C.
pub async fn run(
    cfg: RunConfig,
    journal: Journal,
    source: Box<dyn ReaderSource>,
    report: Arc<dyn Report>,
    stop: watch::Receiver<Stop>,
) -> RunOutcome {
    let journal = Arc::new(journal);
    let (link_tx, link_rx) = watch::channel(LinkState::Connecting);
    let (ending_tx, mut ending_rx) = watch::channel(None);
    let (job_status_tx, mut job_status_rx) = watch::channel(None);
    let (closing_tx, closing_rx) = watch::channel(false);
    let results = Arc::new(Results::default());
    let readers = Arc::new(Mutex::new(BTreeMap::new()));
    let shared = Arc::new(Shared {
        tickets: Mutex::new(cfg.cards),
        cfg,
        journal: journal.clone(),
        report: report.clone(),
        link: link_rx.clone(),
        results: results.clone(),
        stop: stop.clone(),
        ending: ending_tx,
        fatal: Mutex::new(None),
        tally: Mutex::new(Tally::default()),
        in_flight: AtomicUsize::new(0),
        last_card: Mutex::new(Instant::now()),
        skip: Mutex::new(HashMap::new()),
        readers: readers.clone(),
    });
    let cfg = &shared.cfg;
    report.event(&Event::Start {
        station: cfg.bundle.station.clone(),
        keyserver: cfg.keyserver.clone(),
        job: cfg.job.clone(),
        readers: source.describe(),
        journal: journal.dir().display().to_string(),
    });

    // Requests a run that stopped abruptly left in flight.
    let j = journal.clone();
    match tokio::task::spawn_blocking(move || j.recover()).await {
        Ok(Ok(entries)) => {
            for e in entries {
                {
                    let mut t = lock(&shared.tally);
                    t.rejected += 1;
                    t.recovered += 1;
                }
                if let Some(count) = e.event_count {
                    lock(&shared.skip).insert(e.reader.clone(), count);
                }
                tracing::warn!(request = %e.request_id, reader = %e.reader, "a request was in flight when the station stopped: its card is rejected");
                report.event(&Event::Card {
                    reader: e.reader.clone(),
                    request_id: e.request_id.clone(),
                    bin: Bin::Reject,
                    keyserver_ok: None,
                    reason: e.reason.clone(),
                    card_serial: String::new(),
                    round_trips: 0,
                    seconds: 0.0,
                    recovered: true,
                });
            }
        }
        Ok(Err(e)) => shared.fail(RunError::Journal(e)),
        Err(e) => shared.fail(RunError::Internal(format!("journal recovery: {e}"))),
    }

    let link_cfg = LinkConfig {
        address: cfg.keyserver.clone(),
        tls: LinkConfig::tls_from(&cfg.bundle),
        station: cfg.bundle.station.clone(),
        software_version: cfg.software_version.clone(),
        job: cfg.job.clone(),
        backoff: cfg.backoff,
        connect_timeout: cfg.connect_timeout,
    };
    let parts = LinkParts {
        state: link_tx,
        results,
        job_status: job_status_tx,
        report: report.clone(),
        readers,
    };
    let link_task = tokio::spawn(link::run(link_cfg, parts, closing_rx));
    let mut supervisor = tokio::spawn(supervise(shared.clone(), source));
    let mut settler: Option<tokio::task::JoinHandle<()>> = None;
    let mut link_watch = link_rx;
    let mut stop_watch = stop;
    let mut seen_generation = None;
    let mut tick = tokio::time::interval(shared.cfg.poll);

    loop {
        tokio::select! {
            changed = link_watch.changed() => {
                if changed.is_err() {
                    continue;
                }
                let state = link_watch.borrow_and_update().clone();
                match state {
                    LinkState::Refused(msg) => {
                        shared.report.event(&Event::Refused { what: "station".into(), message: msg.clone() });
                        shared.fail(RunError::Refused(msg));
                    }
                    LinkState::Unreachable(reason) => shared.fail(RunError::Unreachable {
                        address: shared.cfg.keyserver.clone(),
                        reason,
                    }),
                    LinkState::Up(session) if seen_generation != Some(session.generation) => {
                        seen_generation = Some(session.generation);
                        on_connected(&shared, session, &mut settler);
                    }
                    _ => {}
                }
            }
            changed = stop_watch.changed() => {
                if changed.is_ok() {
                    let s = *stop_watch.borrow_and_update();
                    match s {
                        Stop::Run => {}
                        Stop::Drain => {
                            report.event(&Event::Stopping { reason: "interrupted: finishing the cards in flight (again to reject them)".into() });
                            shared.end(RunEnd::Interrupted);
                        }
                        Stop::Abort => {
                            report.event(&Event::Stopping { reason: "interrupted again: rejecting the cards in flight".into() });
                            shared.abort();
                        }
                    }
                }
            }
            changed = job_status_rx.changed() => {
                if changed.is_ok() {
                    let done = job_status_rx
                        .borrow_and_update()
                        .as_ref()
                        .is_some_and(|j| j.queued == 0 && j.in_flight == 0);
                    if done {
                        shared.end(RunEnd::JobDone);
                    }
                }
            }
            _ = tick.tick() => {
                if let Some(idle) = shared.cfg.idle_exit {
                    let quiet = lock(&shared.last_card).elapsed();
                    if quiet >= idle && shared.in_flight.load(Ordering::SeqCst) == 0 {
                        shared.end(RunEnd::Idle);
                    }
                }
            }
            changed = ending_rx.changed() => {
                if changed.is_ok() {
                    let why = *ending_rx.borrow_and_update();
                    if let Some(why) = why {
                        if why != RunEnd::Failed {
                            report.event(&Event::Stopping { reason: why.text().into() });
                        }
                    }
                }
            }
            joined = &mut supervisor => {
                if let Err(e) = joined {
                    shared.fail(RunError::Internal(format!("the reader supervisor failed: {e}")));
                }
                break;
            }
        }
    }
    let _ = closing_tx.send(true);
    if let Some(s) = settler.take() {
        s.abort();
    }
    let _ = link_task.await;
    let end = (*shared.ending.borrow()).unwrap_or(RunEnd::Failed);
    let summary = shared.summary(end);
    report.event(&Event::Summary(summary));
    report.finish();
    let error = lock(&shared.fatal).take();
    RunOutcome { summary, error }
}

fn on_connected(
    shared: &Arc<Shared>,
    session: Arc<Session>,
    settler: &mut Option<tokio::task::JoinHandle<()>>,
) {
    let job = &shared.cfg.job;
    if !session.welcome.jobs.iter().any(|j| j == job) {
        let allowed = if session.welcome.jobs.is_empty() {
            "no job".to_owned()
        } else {
            session.welcome.jobs.join(", ")
        };
        let e = RunError::JobNotAllowed {
            station: shared.cfg.bundle.station.clone(),
            job: job.clone(),
            allowed,
        };
        shared.report.event(&Event::Refused {
            what: "job".into(),
            message: e.to_string(),
        });
        shared.fail(e);
        return;
    }
    if let Some(s) = settler.take() {
        s.abort();
    }
    *settler = Some(tokio::spawn(settle::settle_all(shared.clone(), session)));
}

enum ReaderExit {
    Stopped,
    Gone(String),
}

/// Watches the list of readers: one task per reader; readers that fail to
/// open or go away are retried with backoff.
async fn supervise(shared: Arc<Shared>, source: Box<dyn ReaderSource>) {
    let mut tasks: JoinSet<(String, ReaderExit)> = JoinSet::new();
    let mut running: HashSet<String> = HashSet::new();
    let mut retry: HashMap<String, (Instant, Duration)> = HashMap::new();
    let describe = source.describe();
    let mut source = Some(source);
    let mut first = true;
    let mut known: Vec<String> = Vec::new();
    let mut list_error: Option<String> = None;
    let poll = shared.cfg.poll;
    let mut ending = shared.ending.subscribe();
    let mut stop = shared.stop_receiver();
    while shared.accepting() {
        let Some(mut src) = source.take() else {
            break;
        };
        let wait = !first;
        first = false;
        let listing = tokio::task::spawn_blocking(move || {
            if wait && src.wait_for_change(poll).is_err() {
                std::thread::sleep(poll);
            }
            let listed = src.list();
            (src, listed)
        });
        tokio::pin!(listing);
        let joined = loop {
            tokio::select! {
                r = &mut listing => break r,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    on_exit(&shared, done, &mut running, &mut retry);
                }
                _ = ending.changed() => {}
                _ = stop.changed() => {}
            }
        };
        let (src, listed) = match joined {
            Ok(pair) => pair,
            Err(e) => {
                shared.fail(RunError::Internal(format!("listing the readers failed: {e}")));
                break;
            }
        };
        source = Some(src);
        let names = match listed {
            Ok(n) => {
                list_error = None;
                n
            }
            Err(e) => {
                // Said once per different error (pcscd may stay away).
                let text = e.to_string();
                if list_error.as_ref() != Some(&text) {
                    tracing::warn!(error = %text, "cannot list the readers");
                    shared.report.event(&Event::Reader {
                        reader: describe.clone(),
                        state: ReaderStatus::Failed,
                        round_trip: None,
                        retry_in_s: None,
                        detail: Some(text.clone()),
                    });
                    list_error = Some(text);
                }
                continue;
            }
        };
        if names != known {
            if names.is_empty() {
                tracing::warn!("no reader matches: waiting for one");
            }
            shared.report.event(&Event::Readers {
                readers: names.clone(),
            });
            known.clone_from(&names);
        }
        for name in names {
            if running.contains(&name) || !shared.accepting() {
                continue;
            }
            if let Some((at, _)) = retry.get(&name) {
                if Instant::now() < *at {
                    continue;
                }
            }
            let Some(mut src) = source.take() else {
                break;
            };
            let n = name.clone();
            let opened = tokio::task::spawn_blocking(move || {
                let r = src.open(&n);
                (src, r)
            })
            .await;
            let Ok((src, opened)) = opened else {
                shared.fail(RunError::Internal("opening a reader failed".into()));
                return;
            };
            source = Some(src);
            match opened {
                Ok(reader) => {
                    retry.remove(&name);
                    running.insert(name.clone());
                    let s = shared.clone();
                    tasks.spawn(async move { (name, reader_loop(s, reader).await) });
                }
                Err(e) => {
                    let delay = retry
                        .get(&name)
                        .map_or(shared.cfg.backoff.first, |(_, d)| shared.cfg.backoff.next(*d));
                    retry.insert(name.clone(), (Instant::now() + delay, delay));
                    shared.reader_info(&name, false, true);
                    shared.report.event(&Event::Reader {
                        reader: name.clone(),
                        state: ReaderStatus::Failed,
                        round_trip: None,
                        retry_in_s: Some(delay.as_secs().max(1)),
                        detail: Some(e.to_string()),
                    });
                }
            }
        }
    }
    // No new cards: let the readers finish theirs.
    while let Some(done) = tasks.join_next().await {
        on_exit(&shared, done, &mut running, &mut retry);
    }
}

fn on_exit(
    shared: &Shared,
    done: Result<(String, ReaderExit), tokio::task::JoinError>,
    running: &mut HashSet<String>,
    retry: &mut HashMap<String, (Instant, Duration)>,
) {
    match done {
        Ok((name, ReaderExit::Stopped)) => {
            running.remove(&name);
        }
        Ok((name, ReaderExit::Gone(why))) => {
            running.remove(&name);
            let delay = shared.cfg.backoff.first;
            retry.insert(name.clone(), (Instant::now() + delay, delay));
            shared.reader_info(&name, false, true);
            shared.report.event(&Event::Reader {
                reader: name,
                state: ReaderStatus::Gone,
                round_trip: None,
                retry_in_s: None,
                detail: Some(why),
            });
        }
        Err(e) => {
            tracing::error!(error = %e, "a reader's task failed");
        }
    }
}

/// Waits for the link to be up; `None` when the run stops meanwhile.
async fn wait_for_session(shared: &Shared, reader: &str) -> Option<Arc<Session>> {
    let mut link = shared.link.clone();
    let mut ending = shared.ending.subscribe();
    let mut stop = shared.stop_receiver();
    let mut said = false;
    loop {
        if !shared.accepting() {
            return None;
        }
        if let Some(s) = link.borrow_and_update().session() {
            return Some(s);
        }
        if !said {
            shared.reader_event(reader, ReaderStatus::Holding, None, None);
            said = true;
        }
        // A card waiting for the keyserver is not idleness.
        shared.touch();
        tokio::select! {
            _ = link.changed() => {}
            _ = ending.changed() => {}
            _ = stop.changed() => {}
            _ = tokio::time::sleep(shared.cfg.poll) => {}
        }
    }
}

async fn pause(shared: &Shared, delay: Duration) {
    let mut ending = shared.ending.subscribe();
    let mut stop = shared.stop_receiver();
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = ending.changed() => {}
        _ = stop.changed() => {}
    }
}

/// One reader: wait for a card, personalize it, bin it, again.
async fn reader_loop(shared: Arc<Shared>, reader: Box<dyn Reader>) -> ReaderExit {
    let name = reader.name().to_owned();
    let survives = reader.counts_survive_restart();
    let mut reader = Some(reader);
    let mut after: Option<u32> = None;
    let mut delay = shared.cfg.backoff.first;
    let mut retry_delay = shared.cfg.backoff.first;
    let poll = shared.cfg.poll;
    shared.reader_info(&name, false, false);
    shared.reader_event(&name, ReaderStatus::Waiting, None, None);
    let exit = loop {
        if !shared.accepting() {
            break ReaderExit::Stopped;
        }
        let Some(mut r) = reader.take() else {
            break ReaderExit::Gone("the reader was lost".into());
        };
        let waited = tokio::task::spawn_blocking(move || {
            let res = r.next_card(after, poll);
            (r, res)
        })
        .await;
        let Ok((r, res)) = waited else {
            break ReaderExit::Gone("waiting for a card failed".into());
        };
        reader = Some(r);
        let presence = match res {
            Ok(None) => continue,
            Ok(Some(p)) => p,
            Err(e) if e.reader_gone() => break ReaderExit::Gone(e.to_string()),
            Err(e) => {
                shared.reader_info(&name, false, true);
                shared.report.event(&Event::Reader {
                    reader: name.clone(),
                    state: ReaderStatus::Failed,
                    round_trip: None,
                    retry_in_s: Some(delay.as_secs().max(1)),
                    detail: Some(e.to_string()),
                });
                pause(&shared, delay).await;
                delay = shared.cfg.backoff.next(delay);
                continue;
            }
        };
        delay = shared.cfg.backoff.first;
        shared.touch();
        shared.reader_info(&name, true, false);

        if survives && shared.skip_card(&name, presence.event_count) {
            // The card a killed run was personalizing: power it off into
            // the reject bin, untouched by this run.
            tracing::warn!(reader = %name, "the card in flight when the station stopped is still in the reader: rejecting it");
            if let Some(mut r) = reader.take() {
                let released = tokio::task::spawn_blocking(move || {
                    let res = r.connect().and_then(|c| c.release(Bin::Reject));
                    (r, res)
                })
                .await;
                match released {
                    Ok((r, res)) => {
                        reader = Some(r);
                        if let Err(e) = res {
                            tracing::warn!(reader = %name, error = %e, "could not power the card off");
                        }
                    }
                    Err(_) => break ReaderExit::Gone("releasing a card failed".into()),
                }
            }
            after = Some(presence.event_count);
            shared.reader_event(&name, ReaderStatus::Waiting, None, None);
            continue;
        }

        let Some(session) = wait_for_session(&shared, &name).await else {
            break ReaderExit::Stopped;
        };
        if !shared.take_ticket() {
            // `--cards` cards are in flight: wait for one to end.
            pause(&shared, poll).await;
            continue;
        }
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let Some(mut r) = reader.take() else {
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            break ReaderExit::Gone("the reader was lost".into());
        };
        let connected = tokio::task::spawn_blocking(move || {
            let c = r.connect();
            (r, c)
        })
        .await;
        let Ok((r, connected)) = connected else {
            shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            break ReaderExit::Gone("connecting failed".into());
        };
        reader = Some(r);
        let card = match connected {
            Ok(c) => c,
            Err(e) => {
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
                shared.give_back_ticket();
                if e.reader_gone() {
                    break ReaderExit::Gone(e.to_string());
                }
                // A card that cannot be connected (mute, upside down) is
                // left for the operator; wait for another one.
                shared.report.event(&Event::Reader {
                    reader: name.clone(),
                    state: ReaderStatus::Failed,
                    round_trip: None,
                    retry_in_s: None,
                    detail: Some(format!(
                        "cannot connect to the card: {e}; waiting for another card"
                    )),
                });
                after = Some(presence.event_count);
                continue;
            }
        };
        let outcome = card::personalize(&shared, session, card, &presence, survives).await;
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        if outcome.bin == Bin::Untouched {
            shared.give_back_ticket();
        }
        if outcome.retry {
            // The same card again once the keyserver is back, after a
            // pause that grows while it keeps failing.
            pause(&shared, retry_delay).await;
            retry_delay = shared.cfg.backoff.next(retry_delay);
        } else {
            retry_delay = shared.cfg.backoff.first;
            after = Some(presence.event_count);
        }
        shared.reader_info(&name, outcome.bin == Bin::Untouched, false);
        shared.reader_event(&name, ReaderStatus::Waiting, None, None);
    };
    shared.reader_event(
        &name,
        match exit {
            ReaderExit::Stopped => ReaderStatus::Stopped,
            ReaderExit::Gone(_) => ReaderStatus::Gone,
        },
        None,
        None,
    );
    exit
}
