//! `Keyserver.Perso`: one stream per card.
//!
//! PersoOpen{request_id} names a request this station made on its control
//! stream; the engine starts the card on a blocking thread and each Script
//! goes down, each Reply comes up, until the engine is done: PersoDone here,
//! the Result on the control stream. Anything else from the station — a
//! Reply with no Script pending, a second Open, a reply that does not fit
//! its script, a stream that ends mid-card, no reply in time — ends this
//! card's session (`CardSession::abort`: the card is void, its record queued
//! again), audited, and nothing else.

use std::sync::Arc;

use protos::pb;
use protos::pb::perso_down::Msg as Down;
use protos::pb::perso_up::Msg as Up;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::{Status, Streaming};

use super::control::{refused_result, result_pb};
use super::convert::{check_name, reply_from_pb, script_to_pb, shown};
use super::state::{Running, Shared};
use super::stations::Station;
use crate::jobs::{CardResult, Recorded, Reservation, Reserved};
use crate::ports::{CardOutcome, CardRequest, CardSession, Finished, Next};

pub(crate) type PersoTx = mpsc::Sender<Result<pb::PersoDown, Status>>;

pub(crate) fn channel() -> (PersoTx, mpsc::Receiver<Result<pb::PersoDown, Status>>) {
    mpsc::channel(4)
}

/// How long a new Perso stream may take to send its PersoOpen.
const OPEN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn send_status(tx: &PersoTx, status: Status) {
    let _ = tx.send(Err(status)).await;
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    station: Station,
    mut inbound: Streaming<pb::PersoUp>,
    tx: PersoTx,
) {
    let name = station.name.clone();
    let first = tokio::time::timeout(OPEN_TIMEOUT, inbound.message()).await;
    let request_id = match first {
        Ok(Ok(Some(pb::PersoUp {
            msg: Some(Up::Open(open)),
        }))) => open.request_id,
        Ok(Ok(Some(_))) => {
            refused(
                &shared,
                &name,
                "",
                "the first message of a Perso stream must be PersoOpen",
            )
            .await;
            send_status(
                &tx,
                Status::invalid_argument(format!(
                    "station {name}: the first message of a Perso stream must be PersoOpen"
                )),
            )
            .await;
            return;
        }
        Ok(Ok(None)) | Ok(Err(_)) => return,
        Err(_) => {
            send_status(
                &tx,
                Status::deadline_exceeded(format!("station {name}: no PersoOpen within {OPEN_TIMEOUT:?}")),
            )
            .await;
            return;
        }
    };
    if let Err(problem) = check_name("the request id", &request_id, &shared.limits, true) {
        refused(&shared, &name, &request_id, &problem).await;
        send_status(
            &tx,
            Status::invalid_argument(format!("station {name}: malformed PersoOpen: {problem}")),
        )
        .await;
        return;
    }
    let running = match shared.claim(&name, &request_id) {
        Ok(r) => r,
        Err(status) => {
            refused(&shared, &name, &request_id, status.message()).await;
            // Too many cards open: the station learns it from the Result's
            // refusal (RESOURCE_EXHAUSTED also means "no record left").
            // A request running on another stream gets no Result: that
            // card's Result will come.
            if status.code() == tonic::Code::ResourceExhausted {
                tell_refusal(
                    &shared,
                    &name,
                    &request_id,
                    status.message(),
                    pb::Refusal::StationBusy,
                )
                .await;
            }
            send_status(&tx, status).await;
            return;
        }
    };
    let reserved = match find_request(&shared, &name, &request_id).await {
        Ok(Reservation::InFlight(r)) => r,
        Ok(Reservation::Finished(rec)) => {
            // Its card is done: say so again.
            let _ = tx
                .send(Ok(pb::PersoDown {
                    msg: Some(Down::Done(done_pb(&rec))),
                }))
                .await;
            return;
        }
        Err(NotFound { status, tell }) => {
            refused(&shared, &name, &request_id, status.message()).await;
            if let Some(refusal) = tell {
                tell_refusal(&shared, &name, &request_id, status.message(), refusal).await;
            }
            send_status(&tx, status).await;
            return;
        }
    };
    let card = Card {
        shared,
        station,
        request_id,
        tx,
        reserved,
        round_trips: 0,
        _running: running,
    };
    card.personalize(inbound).await;
}

async fn refused(shared: &Shared, station: &str, request_id: &str, reason: &str) {
    tracing::warn!(station, request = %shown(request_id), reason, "perso stream refused");
    shared
        .audit(
            &format!("station:{station}"),
            "perso.refused",
            &format!("request {station}/{}", shown(request_id)),
            false,
            reason.to_string(),
        )
        .await;
}

/// A refused request's Result on the station's control stream (sent before
/// the Perso stream's status, so that the station can decide by it).
async fn tell_refusal(shared: &Shared, station: &str, request_id: &str, reason: &str, refusal: pb::Refusal) {
    shared
        .to_control(
            station,
            pb::keyserver_event::Event::Result(refused_result(request_id, reason, refusal)),
        )
        .await;
}

/// Why a Perso stream found no request to serve: the status for the
/// stream, and the refusal to send as a Result when the control stream
/// has not sent one already.
struct NotFound {
    status: Status,
    tell: Option<pb::Refusal>,
}

impl From<Status> for NotFound {
    fn from(status: Status) -> Self {
        NotFound { status, tell: None }
    }
}

/// The reservation for (station, request id), waiting a little for the
/// PersoRequest that the station sent on its control stream at the same
/// time.
async fn find_request(
    shared: &Arc<Shared>,
    station: &str,
    request_id: &str,
) -> Result<Reservation, NotFound> {
    let deadline = tokio::time::Instant::now() + shared.limits.request_wait;
    let mut seen = shared.requests_seen.subscribe();
    loop {
        seen.borrow_and_update();
        let jobs = shared.jobs.clone();
        let (s, r) = (station.to_string(), request_id.to_string());
        match tokio::task::spawn_blocking(move || jobs.lookup(&s, &r)).await {
            Ok(Ok(Some(res))) => return Ok(res),
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::error!(station, error = %e, "request lookup failed");
                return Err(NotFound {
                    status: Status::internal(format!(
                        "station {station}: the keyserver could not read request {}: {e}",
                        shown(request_id)
                    )),
                    tell: Some(pb::Refusal::Internal),
                });
            }
            Err(_) => {
                return Err(NotFound {
                    status: Status::internal("the keyserver failed to read a request"),
                    tell: Some(pb::Refusal::Internal),
                })
            }
        }
        // Refused on the control stream: its Result was sent there.
        if let Some(refusal) = shared.refusal(station, request_id) {
            return Err(Status::new(refusal.code, refusal.message).into());
        }
        let mut shutdown = shared.shutdown.clone();
        tokio::select! {
            waited = tokio::time::timeout_at(deadline, seen.changed()) => {
                if waited.is_err() {
                    return Err(NotFound {
                        status: Status::not_found(format!(
                            "station {station} has no request {}: send its PersoRequest on the control stream first",
                            shown(request_id)
                        )),
                        tell: Some(pb::Refusal::UnknownRequest),
                    });
                }
            }
            _ = super::state::shutting_down(&mut shutdown) => {
                return Err(Status::unavailable("the keyserver is shutting down").into());
            }
        }
    }
}

fn done_pb(rec: &Recorded) -> pb::PersoDone {
    pb::PersoDone {
        outcome: if rec.issued {
            pb::Outcome::Ok as i32
        } else {
            pb::Outcome::Failed as i32
        },
        reason: rec.reason.clone(),
    }
}

/// Why a session ends early: abort the card with `reason`; end the stream
/// with `status` (or a PersoDone if none).
struct Stop {
    reason: String,
    status: Option<Status>,
}

struct Card {
    shared: Arc<Shared>,
    station: Station,
    request_id: String,
    tx: PersoTx,
    reserved: Reserved,
    round_trips: u32,
    _running: Running,
}

type Step = (Box<dyn CardSession>, Next);

impl Card {
    async fn personalize(mut self, mut inbound: Streaming<pb::PersoUp>) {
        let request = CardRequest {
            request_id: self.request_id.clone(),
            station: self.station.name.clone(),
            reader: self.reserved.reader.clone(),
            atr: self.reserved.atr.clone(),
            job: self.reserved.job.clone(),
            profile: self.reserved.profile.clone(),
            stock: self.reserved.stock.clone(),
            record: self.reserved.record.clone(),
        };
        tracing::info!(
            station = %self.station.name, request = %self.request_id, job = %self.reserved.job,
            record = %self.reserved.record.id, "card opened"
        );
        // Watch for the certificate's retirement from before the card starts.
        let mut epoch = self.shared.stations.subscribe(&self.station.name);
        if let Err(reason) = self.shared.still_valid(&self.station) {
            let status = Status::permission_denied(format!("station {}: {reason}", self.station.name));
            let finished = Finished {
                outcome: CardOutcome::Void {
                    reason: format!("the station's certificate was retired: {reason}"),
                },
                serial: None,
                round_trips: 0,
                sealed: None,
                secrets: None,
            };
            return self.finish(finished, Some(status)).await;
        }
        let engine = self.shared.engine.clone();
        let started = tokio::task::spawn_blocking(move || engine.start(request)).await;
        let (mut session, mut script) = match started {
            Ok(Ok(pair)) => pair,
            Ok(Err(finished)) => return self.finish(finished, None).await,
            Err(_) => return self.lost_session().await,
        };
        let mut shutdown = self.shared.shutdown.clone();
        loop {
            // Send the script.
            self.round_trips += 1;
            let msg = pb::PersoDown {
                msg: Some(Down::Script(script_to_pb(&script, self.round_trips))),
            };
            if self.tx.send(Ok(msg)).await.is_err() {
                return self
                    .abort(session, "the station closed the stream mid-card".into(), None)
                    .await;
            }
            // Wait for its reply.
            let reply = tokio::select! {
                r = tokio::time::timeout(self.shared.limits.reply_timeout, inbound.message()) => r,
                _ = super::state::shutting_down(&mut shutdown) => {
                    return self.abort(session, "the keyserver is shutting down".into(),
                        Some(Status::unavailable("the keyserver is shutting down: the card is void"))).await;
                }
                Some(reason) = retired(&self.shared, &self.station, &mut epoch) => {
                    let status = Status::permission_denied(format!("station {}: {reason}", self.station.name));
                    return self.abort(session, format!("the station's certificate was retired: {reason}"), Some(status)).await;
                }
            };
            let reply = match reply {
                Err(_) => {
                    let reason = format!("no reply within {:?}", self.shared.limits.reply_timeout);
                    let status =
                        Status::deadline_exceeded(format!("station {}: {reason}", self.station.name));
                    return self.abort(session, reason, Some(status)).await;
                }
                Ok(Ok(Some(pb::PersoUp {
                    msg: Some(Up::Reply(r)),
                }))) => r,
                Ok(Ok(Some(pb::PersoUp {
                    msg: Some(Up::Open(_)),
                }))) => {
                    return self
                        .violation(session, "a second PersoOpen on the same stream".into())
                        .await;
                }
                Ok(Ok(Some(pb::PersoUp { msg: None }))) => {
                    return self.violation(session, "an empty message".into()).await;
                }
                Ok(Ok(None)) => {
                    return self
                        .abort(session, "the station ended the stream mid-card".into(), None)
                        .await;
                }
                Ok(Err(status)) => {
                    let reason = format!("the stream failed mid-card ({:?})", status.code());
                    return self.abort(session, reason, None).await;
                }
            };
            if let Some(lost) = card_lost(&reply) {
                // The station lost the card: void it with the station's
                // reason (removed, timed out, reader failed, not held).
                let reason = format!("round trip {}: {lost}", self.round_trips);
                return self.abort(session, reason, None).await;
            }
            let reply = match reply_from_pb(reply, &script, &self.shared.limits) {
                Ok(r) => r,
                Err(problem) => {
                    return self
                        .violation(session, format!("malformed reply: {problem}"))
                        .await
                }
            };
            // Run the engine; anything the station sends meanwhile is out of
            // order.
            let handle: JoinHandle<Step> = tokio::task::spawn_blocking(move || {
                let next = session.on_reply(reply);
                (session, next)
            });
            let (outcome, stop) = self.await_engine(handle, &mut inbound).await;
            let Some((s, next)) = outcome else {
                return self.lost_session().await;
            };
            session = s;
            match (next, stop) {
                (Next::Done(finished), stop) => {
                    if let Some(Stop { reason, .. }) = stop {
                        tracing::warn!(station = %self.station.name, request = %self.request_id, %reason,
                            "protocol violation after the card's last reply: the card's outcome stands");
                    }
                    return self.finish(finished, None).await;
                }
                (Next::Script(_), Some(Stop { reason, status })) => {
                    return self.abort(session, reason, status).await;
                }
                (Next::Script(next), None) => script = next,
            }
        }
    }

    /// Waits for the engine while watching the stream: a message now is a
    /// Reply with no Script pending; the stream ending means the station is
    /// gone. (The engine is not interrupted: it returns, then the card is
    /// aborted.)
    async fn await_engine(
        &self,
        mut handle: JoinHandle<Step>,
        inbound: &mut Streaming<pb::PersoUp>,
    ) -> (Option<Step>, Option<Stop>) {
        let mut stop: Option<Stop> = None;
        loop {
            tokio::select! {
                joined = &mut handle => return (joined.ok(), stop),
                msg = inbound.message(), if stop.is_none() => {
                    stop = Some(match msg {
                        Ok(Some(_)) => {
                            let reason = "a message arrived while no script was pending".to_string();
                            let status = Status::failed_precondition(format!(
                                "station {}: {reason}", self.station.name));
                            Stop { reason, status: Some(status) }
                        }
                        Ok(None) => Stop { reason: "the station ended the stream mid-card".into(), status: None },
                        Err(status) => Stop {
                            reason: format!("the stream failed mid-card ({:?})", status.code()),
                            status: None,
                        },
                    });
                }
            }
        }
    }

    async fn violation(self, session: Box<dyn CardSession>, reason: String) {
        let status = Status::invalid_argument(format!("station {}: {reason}", self.station.name));
        self.abort(session, reason, Some(status)).await;
    }

    async fn abort(self, mut session: Box<dyn CardSession>, reason: String, status: Option<Status>) {
        tracing::warn!(station = %self.station.name, request = %self.request_id, %reason, "card aborted");
        let r = reason.clone();
        let finished = tokio::task::spawn_blocking(move || session.abort(&r)).await;
        match finished {
            Ok(finished) => self.finish(finished, status).await,
            Err(_) => self.lost_session().await,
        }
    }

    /// The engine panicked: its session is gone, the card is void.
    async fn lost_session(self) {
        tracing::error!(station = %self.station.name, request = %self.request_id, "the issuance engine failed");
        let finished = Finished {
            outcome: CardOutcome::Void {
                reason: "the issuance engine failed (internal error)".into(),
            },
            serial: None,
            round_trips: self.round_trips,
            sealed: None,
            secrets: None,
        };
        self.finish(
            finished,
            Some(Status::internal("the issuance engine failed: the card is void")),
        )
        .await;
    }

    /// Records the card's end durably, audits it, then tells the station:
    /// the Result on its control stream, PersoDone (or `status`) here.
    async fn finish(self, finished: Finished, status: Option<Status>) {
        let station = self.station.name.clone();
        let result = CardResult {
            outcome: finished.outcome.clone(),
            serial: finished.serial,
            round_trips: self.round_trips,
        };
        let jobs = self.shared.jobs.clone();
        let (st, rid) = (station.clone(), self.request_id.clone());
        let secrets = finished.secrets;
        let recorded =
            tokio::task::spawn_blocking(move || jobs.finish(&st, &rid, &result, secrets.as_ref())).await;
        let recorded = match recorded {
            Ok(Ok(rec)) => rec,
            failure => {
                let why = match failure {
                    Ok(Err(e)) => e.to_string(),
                    _ => "internal error".to_string(),
                };
                tracing::error!(station = %station, request = %self.request_id, error = %why,
                    "the card's end could not be recorded: reported as failed");
                Recorded {
                    job: self.reserved.job.clone(),
                    record_id: self.reserved.record.id.clone(),
                    issued: false,
                    held: false,
                    reason: format!("the keyserver could not record the card's end: {why}"),
                    serial: finished.serial,
                    round_trips: self.round_trips,
                }
            }
        };
        let serial = recorded.serial.map(|s| format!("{s:08}"));
        let subject = serial.clone().map_or_else(
            || format!("request {station}/{}", self.request_id),
            |s| format!("card {s}"),
        );
        tracing::info!(
            station = %station, request = %self.request_id, job = %recorded.job, record = %recorded.record_id,
            serial = serial.as_deref().unwrap_or("-"), issued = recorded.issued, round_trips = self.round_trips,
            engine_round_trips = finished.round_trips, reason = %recorded.reason, "card done"
        );
        let seal = finished
            .sealed
            .as_ref()
            .map(|s| format!(" sealed=entry {} sha256 {}", s.entry, s.sha256))
            .unwrap_or_default();
        self.shared
            .audit(
                &format!("station:{station}"),
                "card.perso",
                &subject,
                recorded.issued,
                format!(
                    "job={} record={} request={} round_trips={}{seal}{}",
                    recorded.job,
                    recorded.record_id,
                    self.request_id,
                    self.round_trips,
                    if recorded.issued {
                        String::new()
                    } else {
                        format!(" void: {}", recorded.reason)
                    }
                ),
            )
            .await;
        if recorded.held {
            tracing::warn!(job = %recorded.job, record = %recorded.record_id,
                "record held: {} of its cards failed; it is not queued again", crate::jobs::MAX_CARD_FAILURES);
            self.shared
                .audit(
                    "keyserver",
                    "record.held",
                    &format!("job {} record {}", recorded.job, recorded.record_id),
                    true,
                    format!(
                        "{} cards failed, the last: {}; not queued again (correct the record and submit it \
                         in a new job)",
                        crate::jobs::MAX_CARD_FAILURES,
                        recorded.reason
                    ),
                )
                .await;
        }
        self.shared
            .to_control(
                &station,
                pb::keyserver_event::Event::Result(result_pb(&self.request_id, &recorded)),
            )
            .await;
        match status {
            Some(s) => send_status(&self.tx, s).await,
            None => {
                let _ = self
                    .tx
                    .send(Ok(pb::PersoDown {
                        msg: Some(Down::Done(done_pb(&recorded))),
                    }))
                    .await;
            }
        }
        self.shared.push_job_status(&recorded.job).await;
    }
}

/// The most of a station's card-lost detail kept in a void reason.
const MAX_LOST_DETAIL: usize = 256;

/// Why the station lost the card, in words, if it did.
pub(crate) fn card_lost(reply: &pb::Reply) -> Option<String> {
    let words = match pb::CardLostReason::try_from(reply.card_lost_reason) {
        Ok(pb::CardLostReason::Unspecified) if !reply.card_removed => return None,
        // A station older than card_lost_reason says only card_removed.
        Ok(pb::CardLostReason::Unspecified | pb::CardLostReason::Removed) => {
            "the card was removed from the reader".to_string()
        }
        Ok(pb::CardLostReason::Timeout) => "the card did not answer in time".to_string(),
        Ok(pb::CardLostReason::ReaderFailed) => "the reader failed".to_string(),
        Ok(pb::CardLostReason::NotHeld) => "the station no longer holds the card".to_string(),
        Err(_) => format!("the card was lost (reason code {})", reply.card_lost_reason),
    };
    let detail: String = reply
        .card_lost_detail
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .scan(0usize, |len, c| {
            *len += c.len_utf8();
            (*len <= MAX_LOST_DETAIL).then_some(c)
        })
        .collect();
    let detail = detail.trim();
    Some(if detail.is_empty() {
        format!("station: {words}")
    } else {
        format!("station: {words} ({detail})")
    })
}

/// Resolves (with the reason) when the station's certificate is retired;
/// never otherwise.
async fn retired(
    shared: &Shared,
    station: &Station,
    epoch: &mut tokio::sync::watch::Receiver<u64>,
) -> Option<String> {
    loop {
        if epoch.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        if let Err(reason) = shared.still_valid(station) {
            return Some(reason);
        }
    }
}
