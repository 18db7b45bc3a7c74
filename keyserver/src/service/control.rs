//! `Keyserver.Control`: one stream per station.
//!
//! The first message is a Hello; the keyserver answers with a Welcome that
//! lists the jobs the station may run, then each job's status. Every
//! PersoRequest reserves the next queued record of its job for (station,
//! request id), or answers again what the same request already got: its
//! reservation (nothing to send: the station opens the card's Perso stream)
//! or, when its card is done, its recorded Result. A request the keyserver
//! refuses gets a failed Result here, and its Perso stream the matching
//! status (`permission_denied` for a job the station may not run).

use std::sync::Arc;

use protos::pb;
use protos::pb::keyserver_event::Event as Down;
use protos::pb::station_event::Event as Up;
use tokio::sync::mpsc;
use tonic::{Code, Status, Streaming};

use super::convert::{check_name, shown};
use super::state::{job_status_pb, ControlTx, Refusal, Shared};
use super::stations::Station;
use crate::jobs::{JobError, Recorded, Reservation};

/// How long a new control stream may take to say Hello.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) fn result_pb(request_id: &str, r: &Recorded) -> pb::Result {
    pb::Result {
        request_id: request_id.to_string(),
        outcome: if r.issued {
            pb::Outcome::Ok as i32
        } else {
            pb::Outcome::Failed as i32
        },
        reason: r.reason.clone(),
        card_serial: r.serial.map(|s| format!("{s:08}")).unwrap_or_default(),
        round_trips: r.round_trips,
        refusal: pb::Refusal::None as i32,
    }
}

/// The Result of a request the keyserver would not start.
pub(crate) fn refused_result(request_id: &str, reason: &str, refusal: pb::Refusal) -> pb::Result {
    pb::Result {
        request_id: request_id.to_string(),
        outcome: pb::Outcome::Failed as i32,
        reason: reason.to_string(),
        card_serial: String::new(),
        round_trips: 0,
        refusal: refusal as i32,
    }
}

/// The refusal a job store error means for the station.
fn refusal_of(e: &JobError) -> (Code, pb::Refusal) {
    match e {
        JobError::UnknownJob(_) => (Code::NotFound, pb::Refusal::UnknownJob),
        JobError::NoQueuedRecord { .. } => (Code::ResourceExhausted, pb::Refusal::NoRecord),
        JobError::RequestForOtherJob { .. } | JobError::BadRequest { .. } => {
            (Code::InvalidArgument, pb::Refusal::Malformed)
        }
        _ => (Code::Internal, pb::Refusal::Internal),
    }
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    station: Station,
    mut inbound: Streaming<pb::StationEvent>,
    tx: ControlTx,
) {
    let name = station.name.clone();
    let mut epoch = shared.stations.subscribe(&name);
    // Hello first.
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
        Ok(Ok(Some(pb::StationEvent {
            event: Some(Up::Hello(h)),
        }))) => h,
        Ok(Ok(Some(_))) => {
            let _ = tx
                .send(Err(Status::invalid_argument(format!(
                    "station {name}: the first message of a control stream must be Hello"
                ))))
                .await;
            return;
        }
        Ok(Ok(None)) | Ok(Err(_)) => return,
        Err(_) => {
            let _ = tx
                .send(Err(Status::deadline_exceeded(format!(
                    "station {name}: no Hello within {HELLO_TIMEOUT:?}"
                ))))
                .await;
            return;
        }
    };
    if hello.readers.len() > shared.limits.max_readers {
        let _ = tx
            .send(Err(Status::invalid_argument(format!(
                "station {name}: the Hello lists {} readers (at most {})",
                hello.readers.len(),
                shared.limits.max_readers
            ))))
            .await;
        return;
    }
    if !hello.station.is_empty() && hello.station != name {
        tracing::warn!(station = %name, hello = %shown(&hello.station), "the Hello names another station; the certificate decides");
    }
    tracing::info!(
        station = %name,
        readers = hello.readers.len(),
        software = %shown(&hello.software_version),
        "station connected"
    );

    if let Err(reason) = shared.still_valid(&station) {
        let _ = tx
            .send(Err(Status::permission_denied(format!(
                "station {name}: {reason}"
            ))))
            .await;
        return;
    }
    let (id, replaced) = shared.register_control(&station, tx.clone());
    let jobs = shared.jobs_for(&station);
    let welcome = pb::KeyserverEvent {
        event: Some(Down::Welcome(pb::Welcome {
            keyserver: shared.server_name.clone(),
            jobs: jobs.clone(),
        })),
    };
    if tx.send(Ok(welcome)).await.is_err() {
        shared.unregister_control(&name, id);
        return;
    }
    for job in &jobs {
        if let Ok(counts) = shared.jobs.status(Some(job)) {
            for c in counts {
                let _ = tx
                    .send(Ok(pb::KeyserverEvent {
                        event: Some(Down::JobStatus(job_status_pb(&c))),
                    }))
                    .await;
            }
        }
    }

    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = replaced.notified() => {
                tracing::info!(station = %name, "control stream replaced by a newer one");
                break;
            }
            changed = epoch.changed() => {
                if changed.is_err() {
                    continue;
                }
                if let Err(reason) = shared.still_valid(&station) {
                    tracing::warn!(station = %name, %reason, "control stream closed: certificate retired");
                    let _ = tx.send(Err(Status::permission_denied(format!("station {name}: {reason}")))).await;
                    break;
                }
            }
            _ = super::state::shutting_down(&mut shutdown) => {
                let _ = tx.send(Err(Status::unavailable("the keyserver is shutting down"))).await;
                break;
            }
            msg = inbound.message() => match msg {
                Ok(Some(pb::StationEvent { event: Some(Up::PersoRequest(r)) })) => {
                    perso_request(&shared, &station, r, &tx).await;
                    shared.requests_seen.send_modify(|n| *n += 1);
                }
                Ok(Some(pb::StationEvent { event: Some(Up::Reader(r)) })) => {
                    tracing::info!(station = %name, reader = %shown(&r.name), present = r.card_present, failed = r.failed, "reader");
                }
                Ok(Some(pb::StationEvent { event: Some(Up::Hello(_)) })) => {
                    tracing::warn!(station = %name, "a second Hello on the control stream: ignored");
                }
                Ok(Some(pb::StationEvent { event: None })) => {
                    tracing::warn!(station = %name, "an empty control message: ignored");
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::info!(station = %name, code = ?status.code(), "control stream failed");
                    break;
                }
            }
        }
    }
    shared.unregister_control(&name, id);
    tracing::info!(station = %name, "station disconnected");
}

async fn perso_request(shared: &Arc<Shared>, station: &Station, r: pb::PersoRequest, tx: &ControlTx) {
    let name = &station.name;
    let limits = &shared.limits;
    let checks = check_name("the request id", &r.request_id, limits, true)
        .and_then(|()| check_name("the reader name", &r.reader, limits, false))
        .and_then(|()| check_name("the job name", &r.job, limits, true))
        .and_then(|()| {
            if r.atr.len() > limits.max_atr {
                Err(format!("the ATR is longer than {} bytes", limits.max_atr))
            } else {
                Ok(())
            }
        });
    let request_id = r.request_id.clone();
    let refuse = |code: Code, refusal: pb::Refusal, reason: String| {
        let shared = shared.clone();
        let request_id = request_id.clone();
        let name = name.clone();
        let tx = tx.clone();
        async move {
            tracing::warn!(station = %name, request = %shown(&request_id), %reason, "request refused");
            shared.refuse(
                &name,
                &request_id,
                Refusal {
                    code,
                    message: format!("station {name}: {reason}"),
                },
            );
            shared
                .audit(
                    &format!("station:{name}"),
                    "perso.refused",
                    &format!("request {name}/{}", shown(&request_id)),
                    false,
                    reason.clone(),
                )
                .await;
            let _ = tx
                .send(Ok(pb::KeyserverEvent {
                    event: Some(Down::Result(refused_result(&request_id, &reason, refusal))),
                }))
                .await;
        }
    };
    if let Err(problem) = checks {
        refuse(
            Code::InvalidArgument,
            pb::Refusal::Malformed,
            format!("malformed PersoRequest: {problem}"),
        )
        .await;
        return;
    }
    if !station.may_run(&r.job) {
        refuse(
            Code::PermissionDenied,
            pb::Refusal::JobNotAllowed,
            format!(
                "station {name} may not run job {} (it is enrolled for {})",
                r.job,
                station.jobs_text()
            ),
        )
        .await;
        return;
    }

    if r.resume {
        resume(shared, station, &r, tx, refuse).await;
        return;
    }

    let jobs = shared.jobs.clone();
    let (st, rid, job, reader, atr) = (
        name.clone(),
        r.request_id.clone(),
        r.job.clone(),
        r.reader.clone(),
        r.atr.clone(),
    );
    let reserved = tokio::task::spawn_blocking(move || jobs.reserve(&st, &rid, &job, &reader, &atr)).await;
    match reserved {
        Ok(Ok((Reservation::InFlight(res), fresh))) => {
            shared.clear_refusal(name, &r.request_id);
            if fresh {
                tracing::info!(station = %name, request = %r.request_id, job = %res.job, record = %res.record.id, "record reserved");
                shared.push_job_status(&res.job).await;
            } else {
                tracing::info!(station = %name, request = %r.request_id, "request repeated: same reservation");
            }
        }
        Ok(Ok((Reservation::Finished(rec), _))) => {
            tracing::info!(station = %name, request = %r.request_id, "request repeated: its card is done, Result sent again");
            let _ = tx
                .send(Ok(pb::KeyserverEvent {
                    event: Some(Down::Result(result_pb(&r.request_id, &rec))),
                }))
                .await;
        }
        Ok(Err(e)) => {
            let (code, refusal) = refusal_of(&e);
            if code == Code::Internal {
                tracing::error!(station = %name, error = %e, "reservation failed");
            }
            refuse(code, refusal, e.to_string()).await;
        }
        Err(join) => {
            tracing::error!(station = %name, error = %join, "reservation panicked");
            refuse(
                Code::Internal,
                pb::Refusal::Internal,
                "the keyserver failed to reserve a record".into(),
            )
            .await;
        }
    }
}

/// A `resume` request: what the keyserver recorded for it, never a new
/// reservation.
async fn resume<F, Fut>(
    shared: &Arc<Shared>,
    station: &Station,
    r: &pb::PersoRequest,
    tx: &ControlTx,
    refuse: F,
) where
    F: Fn(Code, pb::Refusal, String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let name = &station.name;
    let jobs = shared.jobs.clone();
    let (st, rid) = (name.clone(), r.request_id.clone());
    let found = tokio::task::spawn_blocking(move || jobs.lookup(&st, &rid)).await;
    let reserved_job = match &found {
        Ok(Ok(Some(Reservation::InFlight(res)))) => Some(res.job.clone()),
        Ok(Ok(Some(Reservation::Finished(rec)))) => Some(rec.job.clone()),
        _ => None,
    };
    if let Some(reserved_job) = reserved_job.filter(|j| *j != r.job) {
        let e = JobError::RequestForOtherJob {
            station: name.clone(),
            request_id: r.request_id.clone(),
            job: r.job.clone(),
            reserved_job,
        };
        refuse(Code::InvalidArgument, pb::Refusal::Malformed, e.to_string()).await;
        return;
    }
    match found {
        Ok(Ok(Some(Reservation::InFlight(_)))) => {
            shared.clear_refusal(name, &r.request_id);
            tracing::info!(station = %name, request = %shown(&r.request_id),
                "request resumed: still in flight (its Perso stream ends the card)");
        }
        Ok(Ok(Some(Reservation::Finished(rec)))) => {
            tracing::info!(station = %name, request = %shown(&r.request_id), "request resumed: its card is done, Result sent again");
            let _ = tx
                .send(Ok(pb::KeyserverEvent {
                    event: Some(Down::Result(result_pb(&r.request_id, &rec))),
                }))
                .await;
        }
        Ok(Ok(None)) => {
            refuse(
                Code::NotFound,
                pb::Refusal::UnknownRequest,
                format!(
                    "station {name} request {} was never reserved: nothing to resume (no record was reserved for it)",
                    shown(&r.request_id)
                ),
            )
            .await;
        }
        Ok(Err(e)) => {
            tracing::error!(station = %name, error = %e, "request lookup failed");
            refuse(Code::Internal, pb::Refusal::Internal, e.to_string()).await;
        }
        Err(join) => {
            tracing::error!(station = %name, error = %join, "request lookup panicked");
            refuse(
                Code::Internal,
                pb::Refusal::Internal,
                "the keyserver failed to look the request up".into(),
            )
            .await;
        }
    }
}

/// The outbound half of a control stream.
pub(crate) fn channel() -> (ControlTx, mpsc::Receiver<Result<pb::KeyserverEvent, Status>>) {
    mpsc::channel(256)
}
