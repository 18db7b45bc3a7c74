//! Asking the keyserver what became of requests the station closed without
//! a Result (it was killed mid-card, or the connection dropped).
//!
//! A PersoRequest with the same request id and `resume` set (lookup only:
//! the keyserver never reserves a record for it) gets the request's
//! recorded Result when its card is done. When the keyserver still holds
//! the request open (it never saw the card end), the station opens its
//! Perso stream and answers the first script with the card lost
//! (`CARD_LOST_REASON_NOT_HELD`): the keyserver voids the card — its
//! record is queued again — and sends the Result. A request the keyserver
//! never reserved (the station stopped between its journal and the
//! network) gets a failed Result with `REFUSAL_UNKNOWN_REQUEST`: nothing
//! was reserved, nothing is voided.
//!
//! The station's bin stands: such a card was rejected. When the keyserver
//! recorded the card as issued (the station stopped after the keyserver
//! finished it but before the Result was journaled), the card is good and
//! escrowed, and the station says so loudly (a `settled` event with
//! `keyserver_ok: true`, a warning in the log) so the operator can take it
//! out of the reject bin; the journal keeps the keyserver's verdict beside
//! the station's bin. With `vsc feeder` such a card is SECURED and the
//! feeder put it into `out/pass` itself.

use std::sync::Arc;
use std::time::Duration;

use protos::pb;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use super::link::Session;
use super::{link_gone, Shared};
use crate::journal::{Entry, Verdict};
use crate::report::Event;

const ATTEMPTS: u32 = 3;

/// Settles every unsettled request, one after the other, while the
/// connection `session` lasts.
pub(crate) async fn settle_all(shared: Arc<Shared>, session: Arc<Session>) {
    let journal = shared.journal.clone();
    let entries = match tokio::task::spawn_blocking(move || journal.unsettled()).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read the journal's unsettled requests");
            return;
        }
        Err(_) => return,
    };
    for entry in entries {
        let gone = link_gone(shared.link.clone(), session.generation);
        tokio::select! {
            _ = settle_one(&shared, &session, &entry) => {}
            _ = gone => return,
        }
    }
}

async fn settle_one(shared: &Arc<Shared>, session: &Arc<Session>, entry: &Entry) {
    let rid = &entry.request_id;
    for attempt in 1..=ATTEMPTS {
        shared.results.expect(rid);
        let result = ask(shared, session, entry).await;
        shared.results.forget(rid);
        match result {
            Ok(Some(r)) => {
                let verdict = Verdict {
                    ok: r.outcome == pb::Outcome::Ok as i32,
                    reason: r.reason.clone(),
                    card_serial: r.card_serial.clone(),
                    round_trips: r.round_trips,
                };
                if verdict.ok {
                    tracing::warn!(request = %rid, serial = %verdict.card_serial,
                        "the keyserver recorded this card as issued although the station rejected it: the card is good");
                } else {
                    tracing::info!(request = %rid, reason = %verdict.reason, "settled: the keyserver recorded the card as failed");
                }
                let journal = shared.journal.clone();
                let (id, v) = (rid.clone(), verdict.clone());
                match tokio::task::spawn_blocking(move || journal.settle(&id, &v)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "cannot journal a settled request"),
                    Err(_) => {}
                }
                shared.report.event(&Event::Settled {
                    request_id: rid.clone(),
                    keyserver_ok: verdict.ok,
                    reason: verdict.reason,
                    card_serial: verdict.card_serial,
                });
                return;
            }
            Ok(None) => return,
            Err(()) => {
                // Still open on another stream: try again shortly.
                tokio::time::sleep(shared.cfg.backoff.first.saturating_mul(attempt)).await;
            }
        }
    }
}

/// One try. `Err(())`: try again later; `Ok(None)`: no answer now.
async fn ask(shared: &Arc<Shared>, session: &Arc<Session>, entry: &Entry) -> Result<Option<pb::Result>, ()> {
    let rid = &entry.request_id;
    let request = pb::station_event::Event::PersoRequest(pb::PersoRequest {
        request_id: rid.clone(),
        reader: entry.reader.clone(),
        protocol: entry.protocol,
        atr: hex::decode(&entry.atr).unwrap_or_default(),
        job: entry.job.clone(),
        resume: true,
    });
    if !session.send(request).await {
        return Ok(None);
    }
    let (tx, rx) = mpsc::channel(4);
    let open = pb::PersoUp {
        msg: Some(pb::perso_up::Msg::Open(pb::PersoOpen {
            request_id: rid.clone(),
        })),
    };
    if tx.send(open).await.is_err() {
        return Ok(None);
    }
    let mut client = session.client.clone();
    let mut retry = false;
    match client.perso(ReceiverStream::new(rx)).await {
        Err(s) => retry = s.code() == Code::AlreadyExists,
        Ok(resp) => {
            let mut down = resp.into_inner();
            loop {
                let msg = tokio::time::timeout(shared.cfg.keyserver_wait, down.message()).await;
                match msg {
                    Ok(Ok(Some(pb::PersoDown {
                        msg: Some(pb::perso_down::Msg::Script(_)),
                    }))) => {
                        // The card is not here any more.
                        let reply = pb::PersoUp {
                            msg: Some(pb::perso_up::Msg::Reply(crate::relay::not_held(
                                "the station closed this request without its Result (it stopped or lost the \
                                 keyserver) and rejected the card",
                            ))),
                        };
                        if tx.send(reply).await.is_err() {
                            break;
                        }
                    }
                    Ok(Ok(Some(_))) => break,
                    Ok(Ok(None)) => break,
                    Ok(Err(s)) => {
                        retry = s.code() == Code::AlreadyExists;
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }
    drop(tx);
    let wait: Duration = if retry {
        shared.cfg.refusal_wait
    } else {
        shared.cfg.result_wait
    };
    let deadline = Instant::now() + wait;
    tokio::select! {
        r = shared.results.wait(rid, deadline) => match r {
            Some(r) => Ok(Some(r)),
            None if retry => Err(()),
            None => Ok(None),
        },
        _ = link_gone(shared.link.clone(), session.generation) => Ok(shared.results.take(rid)),
    }
}
