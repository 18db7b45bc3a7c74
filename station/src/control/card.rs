//! One card, from the request to its bin.

use std::sync::Arc;

use protos::pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};
use tracing::Instrument;

use super::link::Session;
use super::{aborted, link_gone, RunError, Shared};
use crate::journal::{Closing, NewRequest, Verdict};
use crate::readers::{Bin, Card, Presence};
use crate::relay::{self, CardLost, SystemClock, Watchdog};
use crate::report::{Event, ReaderStatus, RunEnd};

/// How many times a Perso stream is opened again after a transient
/// refusal (the request is still being personalized elsewhere, the
/// station has too many cards open, the request has not arrived yet).
const OPEN_ATTEMPTS: u32 = 5;

/// What the reader does next.
pub(crate) struct CardOutcome {
    pub bin: Bin,
    /// Try the same card again (nothing reached it and the keyserver could
    /// not take the request).
    pub retry: bool,
}

#[derive(Default)]
struct Run {
    /// A command reached the card.
    touched: bool,
    lost: Option<CardLost>,
    scripts: u32,
    done: Option<pb::PersoDone>,
    /// How the Perso stream ended when not with PersoDone.
    status: Option<Status>,
    result: Option<pb::Result>,
    link_lost: bool,
    aborted: bool,
    silent: bool,
    ended: bool,
}

enum Next {
    /// Open the Perso stream again after a pause.
    Again,
    Stop,
}

pub(crate) async fn personalize(
    shared: &Arc<Shared>,
    session: Arc<Session>,
    card: Box<dyn Card>,
    presence: &Presence,
    survives: bool,
) -> CardOutcome {
    let reader = card.reader().to_owned();
    let started = Instant::now();
    let request = NewRequest {
        reader: reader.clone(),
        job: shared.cfg.job.clone(),
        protocol: card.protocol(),
        atr: card.atr(),
        event_count: survives.then_some(presence.event_count),
    };
    let watchdog = match Watchdog::new(card) {
        Ok(w) => w,
        Err(e) => {
            shared.report.event(&Event::Reader {
                reader: reader.clone(),
                state: ReaderStatus::Failed,
                round_trip: None,
                retry_in_s: None,
                detail: Some(e.to_string()),
            });
            return CardOutcome {
                bin: Bin::Untouched,
                retry: false,
            };
        }
    };
    // Durably journaled before anything is sent.
    let journal = shared.journal.clone();
    let entry = match tokio::task::spawn_blocking(move || journal.begin(request)).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            shared.fail(RunError::Journal(e));
            let _ = tokio::task::spawn_blocking(move || watchdog.release(Bin::Untouched)).await;
            return CardOutcome {
                bin: Bin::Untouched,
                retry: false,
            };
        }
        Err(e) => {
            shared.fail(RunError::Internal(format!("journaling a request: {e}")));
            return CardOutcome {
                bin: Bin::Untouched,
                retry: false,
            };
        }
    };
    let span = tracing::info_span!("card", reader = %reader, request = %entry.request_id);
    let request_id = entry.request_id.clone();
    async move {
        shared.reader_event(&reader, ReaderStatus::Personalizing, None, None);
        let mut watchdog = Some(watchdog);
        let run = relay_card(shared, &session, &entry, &mut watchdog).await;
        finish(shared, &session, &reader, &request_id, started, run, watchdog).await
    }
    .instrument(span)
    .await
}

fn perso_request(entry: &crate::journal::Entry) -> pb::station_event::Event {
    pb::station_event::Event::PersoRequest(pb::PersoRequest {
        request_id: entry.request_id.clone(),
        reader: entry.reader.clone(),
        protocol: entry.protocol,
        atr: hex::decode(&entry.atr).unwrap_or_default(),
        job: entry.job.clone(),
        resume: false,
    })
}

/// The request, the Perso stream and every script, until PersoDone or the
/// stream ends.
async fn relay_card(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    entry: &crate::journal::Entry,
    watchdog: &mut Option<Watchdog>,
) -> Run {
    let rid = &entry.request_id;
    let mut run = Run::default();
    shared.results.expect(rid);
    let generation = session.generation;
    let mut attempt = 0;
    'attempt: loop {
        attempt += 1;
        if !session.send(perso_request(entry)).await {
            run.link_lost = true;
            break;
        }
        let (tx, rx) = mpsc::channel(4);
        let open = pb::PersoUp {
            msg: Some(pb::perso_up::Msg::Open(pb::PersoOpen {
                request_id: rid.clone(),
            })),
        };
        if tx.send(open).await.is_err() {
            run.link_lost = true;
            break;
        }
        let mut client = session.client.clone();
        let opened = tokio::select! {
            r = client.perso(ReceiverStream::new(rx)) => r,
            _ = link_gone(shared.link.clone(), generation) => {
                run.link_lost = true;
                break;
            }
        };
        let mut down = match opened {
            Ok(r) => r.into_inner(),
            Err(status) => match refused(shared, rid, &mut run, status, attempt).await {
                Next::Again => continue 'attempt,
                Next::Stop => break,
            },
        };
        loop {
            let msg = tokio::select! {
                m = tokio::time::timeout(shared.cfg.keyserver_wait, down.message()) => m,
                _ = link_gone(shared.link.clone(), generation) => {
                    run.link_lost = true;
                    break 'attempt;
                }
                _ = aborted(shared.stop_receiver()) => {
                    run.aborted = true;
                    break 'attempt;
                }
            };
            match msg {
                Err(_) => {
                    run.silent = true;
                    break 'attempt;
                }
                Ok(Ok(Some(pb::PersoDown {
                    msg: Some(pb::perso_down::Msg::Script(script)),
                }))) => {
                    run.scripts += 1;
                    if script.round_trip != run.scripts {
                        tracing::debug!(
                            round_trip = script.round_trip,
                            expected = run.scripts,
                            "unexpected round trip number"
                        );
                    }
                    let reader = watchdog
                        .as_ref()
                        .map(|w| w.reader().to_owned())
                        .unwrap_or_default();
                    shared.reader_event(
                        &reader,
                        ReaderStatus::Personalizing,
                        Some(script.round_trip),
                        None,
                    );
                    let reply = run_one(shared, &mut run, watchdog, script).await;
                    let up = pb::PersoUp {
                        msg: Some(pb::perso_up::Msg::Reply(reply)),
                    };
                    if tx.send(up).await.is_err() {
                        run.ended = true;
                        break 'attempt;
                    }
                }
                Ok(Ok(Some(pb::PersoDown {
                    msg: Some(pb::perso_down::Msg::Done(done)),
                }))) => {
                    run.done = Some(done);
                    break 'attempt;
                }
                Ok(Ok(Some(pb::PersoDown { msg: None }))) => {
                    tracing::debug!("an empty message on the Perso stream: ignored");
                }
                Ok(Ok(None)) => {
                    run.ended = true;
                    break 'attempt;
                }
                Ok(Err(status)) => {
                    if run.scripts > 0 {
                        run.link_lost = connection_failure(status.code());
                        run.status = Some(status);
                        break 'attempt;
                    }
                    match refused(shared, rid, &mut run, status, attempt).await {
                        Next::Again => continue 'attempt,
                        Next::Stop => break 'attempt,
                    }
                }
            }
        }
    }
    run
}

/// Runs one script on the card (or, once the card is lost, answers at once
/// that it is).
async fn run_one(
    shared: &Arc<Shared>,
    run: &mut Run,
    watchdog: &mut Option<Watchdog>,
    script: pb::Script,
) -> pb::Reply {
    if let Some(lost) = &run.lost {
        // Lost in an earlier script: the same reason again.
        let mut reply = pb::Reply::default();
        relay::mark_lost(&mut reply, lost);
        return reply;
    }
    let Some(mut w) = watchdog.take() else {
        return relay::not_held("the station gave the card up before this script");
    };
    let config = shared.cfg.relay;
    let span = tracing::Span::current();
    let joined = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        let out = relay::run_script(&mut w, &SystemClock, &script, &config);
        (w, out)
    })
    .await;
    match joined {
        Ok((w, out)) => {
            *watchdog = Some(w);
            run.touched |= out.commands_sent > 0;
            if let Some(lost) = out.lost {
                tracing::warn!(%lost, "the card is lost");
                run.lost = Some(lost);
            }
            out.reply
        }
        Err(e) => {
            // The watchdog went down with the task: it released the card.
            run.touched = true;
            let lost = CardLost::Reader {
                step: 0,
                reason: format!("the relay failed: {e}"),
            };
            let mut reply = pb::Reply::default();
            relay::mark_lost(&mut reply, &lost);
            run.lost = Some(lost);
            reply
        }
    }
}

/// A status that says the connection failed rather than the keyserver
/// decided something (the keyserver shutting down says Unavailable too).
fn connection_failure(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::Cancelled | Code::Unknown)
}

/// The refusal a Result carries (`None` for a card's outcome, and from a
/// keyserver older than the field).
pub(crate) fn refusal_of(r: &pb::Result) -> pb::Refusal {
    pb::Refusal::try_from(r.refusal).unwrap_or(pb::Refusal::Internal)
}

/// A Perso stream refused before any script: whether to try again.
///
/// The keyserver sends a refused request's Result (with its `refusal`) on
/// the control stream before the Perso stream's status, so the station
/// decides by the refusal as soon as it is there: a busy keyserver (this
/// station has too many cards open) or a request it has not seen yet is
/// asked again; anything else stops the card (the Result goes to
/// `finish`). `refusal_wait` only bounds the wait for a Result that does
/// not come (a request already being personalized on another stream gets
/// none; an older keyserver sends none when it is busy).
async fn refused(shared: &Arc<Shared>, rid: &str, run: &mut Run, status: Status, attempt: u32) -> Next {
    let code = status.code();
    tracing::info!(code = ?code, message = %status.message(), attempt, "Perso stream refused");
    if connection_failure(code) {
        run.link_lost = true;
        run.status = Some(status);
        return Next::Stop;
    }
    let explained = if matches!(
        code,
        Code::ResourceExhausted
            | Code::NotFound
            | Code::PermissionDenied
            | Code::InvalidArgument
            | Code::Internal
    ) {
        let deadline = Instant::now() + shared.cfg.refusal_wait;
        shared.results.wait(rid, deadline).await
    } else {
        None
    };
    let (transient, counted) = match explained.as_ref().map(refusal_of) {
        Some(pb::Refusal::StationBusy) => (true, false),
        Some(pb::Refusal::UnknownRequest) => (true, true),
        Some(_) => (false, true),
        // No Result: still running elsewhere, or an older keyserver.
        None => (
            matches!(
                code,
                Code::AlreadyExists | Code::ResourceExhausted | Code::NotFound
            ),
            true,
        ),
    };
    let again = transient && (!counted || attempt < OPEN_ATTEMPTS) && shared.accepting();
    run.status = Some(status);
    if again {
        // The refusal's Result is not the card's: wait for the next one.
        shared.results.forget(rid);
        shared.results.expect(rid);
        let delay = if counted {
            shared.cfg.backoff.first.saturating_mul(attempt)
        } else {
            shared.cfg.backoff.first
        };
        tokio::time::sleep(delay).await;
        Next::Again
    } else {
        run.result = explained;
        Next::Stop
    }
}

fn verdict_of(r: &pb::Result) -> Verdict {
    Verdict {
        ok: r.outcome == pb::Outcome::Ok as i32,
        reason: r.reason.clone(),
        card_serial: r.card_serial.clone(),
        round_trips: r.round_trips,
    }
}

/// Waits for the Result, decides the bin, releases the card, journals and
/// counts it.
async fn finish(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    reader: &str,
    rid: &str,
    started: Instant,
    mut run: Run,
    watchdog: Option<Watchdog>,
) -> CardOutcome {
    let result = match run.result.take() {
        Some(r) => Some(r),
        None if run.link_lost || run.aborted => shared.results.take(rid),
        None => {
            let wait = if run.done.is_some() {
                shared.cfg.result_wait
            } else {
                shared.cfg.refusal_wait
            };
            let deadline = Instant::now() + wait;
            tokio::select! {
                r = shared.results.wait(rid, deadline) => r,
                _ = link_gone(shared.link.clone(), session.generation) => shared.results.take(rid),
            }
        }
    };
    shared.results.forget(rid);
    let verdict = result.as_ref().map(verdict_of);
    let code = run.status.as_ref().map(Status::code);
    let mut retry = false;
    let (bin, reason) = match &verdict {
        Some(v) if v.ok => match &run.lost {
            None => (Bin::Pass, "issued".to_owned()),
            Some(lost) => (
                Bin::Reject,
                format!("the keyserver reported the card issued, but {lost}"),
            ),
        },
        Some(v) if run.touched => match &run.lost {
            Some(lost) => (Bin::Reject, format!("{lost} (keyserver: {})", v.reason)),
            None => (Bin::Reject, v.reason.clone()),
        },
        Some(v) => {
            // Refused before any command reached the card: decided by the
            // Result's refusal; by the status for an older keyserver.
            let refusal = result.as_ref().map_or(pb::Refusal::None, refusal_of);
            let by_code = match (refusal, code) {
                (pb::Refusal::None, Some(Code::ResourceExhausted)) => pb::Refusal::NoRecord,
                (pb::Refusal::None, Some(Code::PermissionDenied)) => pb::Refusal::JobNotAllowed,
                (pb::Refusal::None, Some(Code::NotFound)) => pb::Refusal::UnknownJob,
                (r, _) => r,
            };
            match by_code {
                pb::Refusal::NoRecord => {
                    shared.report.event(&Event::Refused {
                        what: "no_record_left".into(),
                        message: v.reason.clone(),
                    });
                    shared.end(RunEnd::NoRecordLeft);
                }
                pb::Refusal::JobNotAllowed | pb::Refusal::UnknownJob => {
                    shared.report.event(&Event::Refused {
                        what: "job".into(),
                        message: v.reason.clone(),
                    });
                    shared.fail(RunError::JobRefused {
                        job: shared.cfg.job.clone(),
                        reason: v.reason.clone(),
                    });
                }
                _ => shared.report.event(&Event::Refused {
                    what: "request".into(),
                    message: v.reason.clone(),
                }),
            }
            (Bin::Untouched, v.reason.clone())
        }
        None => {
            let why = if run.aborted {
                "interrupted: rejected in flight".to_owned()
            } else if run.link_lost {
                "the connection to the keyserver was lost".to_owned()
            } else if run.silent {
                format!(
                    "the keyserver said nothing for {} s",
                    shared.cfg.keyserver_wait.as_secs()
                )
            } else if run.done.is_some() {
                "the keyserver's Result did not arrive".to_owned()
            } else if let Some(s) = &run.status {
                format!(
                    "the keyserver ended the card's stream: {:?}: {}",
                    s.code(),
                    s.message()
                )
            } else if run.ended {
                "the keyserver ended the card's stream without a result".to_owned()
            } else {
                "no result".to_owned()
            };
            if run.touched {
                (Bin::Reject, why)
            } else {
                retry = !run.aborted && shared.accepting();
                (Bin::Untouched, why)
            }
        }
    };

    // Let go of the card first: it must not wait for the journal.
    if let Some(w) = watchdog {
        match tokio::task::spawn_blocking(move || w.release(bin)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "releasing the card failed"),
            Err(e) => tracing::warn!(error = %e, "releasing the card failed"),
        }
    }
    let closing = Closing {
        bin,
        reason: reason.clone(),
        keyserver: verdict.clone(),
    };
    let journal = shared.journal.clone();
    let id = rid.to_owned();
    match tokio::task::spawn_blocking(move || journal.close(&id, &closing)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => shared.fail(RunError::Journal(e)),
        Err(e) => shared.fail(RunError::Internal(format!("journaling a card's end: {e}"))),
    }
    let round_trips = verdict.as_ref().map_or(run.scripts, |v| v.round_trips);
    tracing::info!(bin = bin.as_str(), round_trips, %reason, "card done");
    shared.report.event(&Event::Card {
        reader: reader.to_owned(),
        request_id: rid.to_owned(),
        bin,
        keyserver_ok: verdict.as_ref().map(|v| v.ok),
        reason,
        card_serial: verdict
            .as_ref()
            .map(|v| v.card_serial.clone())
            .unwrap_or_default(),
        round_trips,
        seconds: started.elapsed().as_secs_f64(),
        recovered: false,
    });
    shared.count(bin, verdict.as_ref().map(|v| v.round_trips), started);
    CardOutcome { bin, retry }
}
