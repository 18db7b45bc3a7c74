//! At start: what a stopped keyserver left unfinished, settled so that the
//! archive manifest, the job store and the audit log tell the same story.
//!
//! A keyserver killed mid-card leaves, depending on the moment:
//!
//! | archive manifest | job store | what [`after_restart`] does |
//! |---|---|---|
//! | nothing (before the seal) | request in flight | the request is void, its record queued again |
//! | `sealed`, no outcome | request in flight | `void` appended ("keyserver restarted before the outcome"), request void, record queued again |
//! | `issued` | request in flight (killed between the two) | `void` appended: the station was never told the card is good and rejects it; request void, record queued again |
//! | `issued` / `void` | finished | nothing: both know |
//!
//! Every void is audited (`card.void`) before it is written, so a crash
//! during recovery can at worst repeat an audit entry, never lose one; the
//! archive is settled before the job store, whose in-flight requests name
//! the records to look for.

use std::collections::HashSet;

use crate::archive::{Archive, ArchiveError, Unfinished};
use crate::jobs::{JobError, JobStore, StaleRequest};
use crate::ports::{AuditError, AuditEvent, AuditOutcome, AuditSink, CardOutcome, Escrow, EscrowError};

/// Why a sealed card without an outcome is void after a restart.
pub const SEALED_REASON: &str = "keyserver restarted before the outcome";
/// Why a card recorded `issued` whose request was still in flight is void
/// after a restart.
pub const UNREPORTED_REASON: &str = "keyserver restarted before the outcome: the card was personalized, \
     but neither the job store nor the station learned it was good (the station rejects it)";
/// Why a request left in flight is void after a restart.
pub const REQUEST_REASON: &str = "keyserver restarted before the outcome";

/// Settling what a stopped keyserver left failed: the keyserver must not
/// serve until it succeeds.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("listing or voiding the requests left in flight: {0}")]
    Jobs(#[from] JobError),
    #[error("reading the archive manifest for cards without an outcome: {0}")]
    Archive(#[from] ArchiveError),
    #[error("recording a card left without an outcome as void: {0}")]
    Record(#[from] EscrowError),
    #[error("auditing a card left without an outcome: {0}")]
    Audit(#[from] AuditError),
}

/// What [`after_restart`] settled.
#[derive(Debug, Default)]
pub struct Recovered {
    /// Cards the archive now records as void.
    pub cards: Vec<Unfinished>,
    /// Requests voided in the job store (their records queued again).
    pub requests: Vec<StaleRequest>,
}

/// Settles the archive and the job store after a stop (see the module
/// documentation). Call it before the service starts.
pub fn after_restart(
    archive: &Archive,
    jobs: &JobStore,
    audit: &dyn AuditSink,
) -> Result<Recovered, RecoveryError> {
    let in_flight = jobs.in_flight_requests()?;
    let pending: HashSet<(String, String)> = in_flight
        .iter()
        .map(|r| (r.job.clone(), r.record_id.clone()))
        .collect();
    let cards = archive.unfinished(&pending)?;
    for c in &cards {
        let reason = if c.issued {
            UNREPORTED_REASON
        } else {
            SEALED_REASON
        };
        let job = c.job.as_deref().unwrap_or("-");
        let record = c.record.as_deref().unwrap_or("-");
        tracing::warn!(serial = %format!("{:08}", c.serial), job, record, was_issued = c.issued,
            "card left without an outcome by the previous run: void");
        audit.record(AuditEvent {
            actor: "keyserver".into(),
            action: "card.void".into(),
            subject: format!("card {:08}", c.serial),
            outcome: AuditOutcome::Ok,
            detail: format!(
                "job={job} record={record} uid={}: {reason}; archive manifest: void",
                c.uid
            ),
        })?;
        archive.record(
            c.serial,
            c.uid,
            &CardOutcome::Void {
                reason: reason.to_string(),
            },
        )?;
    }
    // Audited first: a crash in between repeats an entry, never loses one.
    for r in &in_flight {
        tracing::warn!(station = %r.station, request = %r.request_id, job = %r.job, record = %r.record_id,
            "request left in flight by the previous run: void, record queued again");
        audit.record(AuditEvent {
            actor: "keyserver".into(),
            action: "card.void".into(),
            subject: format!("request {}/{}", r.station, r.request_id),
            outcome: AuditOutcome::Ok,
            detail: format!(
                "job={} record={}: {REQUEST_REASON}; record queued again",
                r.job, r.record_id
            ),
        })?;
    }
    let requests = jobs.void_in_flight(REQUEST_REASON)?;
    Ok(Recovered { cards, requests })
}
