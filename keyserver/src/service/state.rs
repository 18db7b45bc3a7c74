//! What the service's streams share.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use protos::pb;
use tokio::sync::{mpsc, watch, Notify};
use tonic::{Code, Status};

use super::authority::Authority;
use super::convert::Limits;
use super::stations::{AuthError, Station, StationRegistry};
use crate::jobs::{JobCounts, JobStore};
use crate::ports::{AuditEvent, AuditOutcome, AuditSink, CardEngine};

/// How many refused requests are remembered (for the Perso stream that
/// follows a refused PersoRequest).
const MAX_REFUSALS: usize = 4096;

pub(crate) type ControlTx = mpsc::Sender<Result<pb::KeyserverEvent, Status>>;

struct ControlHandle {
    id: u64,
    station: Station,
    tx: ControlTx,
    /// Ends the stream's task (a newer control stream replaced it).
    replaced: Arc<Notify>,
}

/// A request refused on the control stream: the status its Perso stream
/// gets.
#[derive(Clone)]
pub(crate) struct Refusal {
    pub code: Code,
    pub message: String,
}

#[derive(Default)]
struct Refusals {
    map: HashMap<(String, String), Refusal>,
    order: VecDeque<(String, String)>,
}

pub(crate) struct Shared {
    pub engine: Arc<dyn CardEngine>,
    pub jobs: Arc<JobStore>,
    pub stations: Arc<StationRegistry>,
    pub audit: Arc<dyn AuditSink>,
    pub authority: Arc<dyn Authority>,
    pub limits: Limits,
    /// The keyserver's TLS server name (Welcome, bundles).
    pub server_name: String,
    /// The address stations dial (bundles).
    pub advertise: String,
    controls: Mutex<HashMap<String, ControlHandle>>,
    next_control: AtomicU64,
    /// (station, request id) of every card being personalized.
    running: Mutex<HashSet<(String, String)>>,
    refusals: Mutex<Refusals>,
    /// Bumped after each PersoRequest is handled (Perso streams wait on it).
    pub requests_seen: watch::Sender<u64>,
    /// True once the keyserver shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Cards being personalized (shutdown waits for 0).
    pub active: watch::Sender<usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A card being personalized: removed from the running set when dropped.
pub(crate) struct Running {
    shared: Arc<Shared>,
    key: (String, String),
}

impl Drop for Running {
    fn drop(&mut self) {
        lock(&self.shared.running).remove(&self.key);
        self.shared.active.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        engine: Arc<dyn CardEngine>,
        jobs: Arc<JobStore>,
        stations: Arc<StationRegistry>,
        audit: Arc<dyn AuditSink>,
        authority: Arc<dyn Authority>,
        limits: Limits,
        server_name: String,
        advertise: String,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Shared {
            engine,
            jobs,
            stations,
            audit,
            authority,
            limits,
            server_name,
            advertise,
            controls: Mutex::new(HashMap::new()),
            next_control: AtomicU64::new(1),
            running: Mutex::new(HashSet::new()),
            refusals: Mutex::new(Refusals::default()),
            requests_seen: watch::channel(0).0,
            shutdown,
            active: watch::channel(0).0,
        }
    }

    /// Appends an audit event (on a blocking thread: the sink fsyncs); a
    /// failure is logged, never fatal to the card or the stream.
    pub(crate) async fn audit(&self, actor: &str, action: &str, subject: &str, ok: bool, detail: String) {
        let event = AuditEvent {
            actor: actor.to_string(),
            action: action.to_string(),
            subject: subject.to_string(),
            outcome: if ok {
                AuditOutcome::Ok
            } else {
                AuditOutcome::Failed
            },
            detail,
        };
        let sink = self.audit.clone();
        match tokio::task::spawn_blocking(move || sink.record(event)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "audit log write failed"),
            Err(e) => tracing::error!(error = %e, action, subject, "audit log write panicked"),
        }
    }

    /// The station a request's client certificate belongs to; refusals are
    /// audited and answered with `permission_denied`.
    pub(crate) async fn authenticate<T>(
        &self,
        request: &tonic::Request<T>,
        what: &str,
    ) -> Result<Station, Status> {
        let result = match request.peer_certs() {
            None => Err(AuthError::NoCertificate),
            Some(certs) => match certs.first() {
                None => Err(AuthError::NoCertificate),
                Some(cert) => self.stations.authenticate(cert.as_ref()),
            },
        };
        match result {
            Ok(s) => Ok(s),
            Err(e) => {
                let who = e.station().unwrap_or("unknown").to_string();
                let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
                tracing::warn!(station = %who, peer = %peer, stream = what, reason = %e, "station refused");
                self.audit(
                    &format!("station:{who}"),
                    "station.refused",
                    &who,
                    false,
                    format!("{what} stream from {peer}: {e}"),
                )
                .await;
                Err(Status::permission_denied(format!("station {who}: refused: {e}")))
            }
        }
    }

    /// Whether the station still holds a current certificate; its reason if
    /// not.
    pub(crate) fn still_valid(&self, station: &Station) -> Result<(), String> {
        match self
            .stations
            .authenticate_fingerprint(&station.name, &station.fingerprint)
        {
            Ok(()) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Makes `tx` the station's control stream; an older one is told it
    /// was replaced and its task ends. Returns the stream's id and the
    /// notification its task waits on.
    pub(crate) fn register_control(&self, station: &Station, tx: ControlTx) -> (u64, Arc<Notify>) {
        let id = self.next_control.fetch_add(1, Ordering::Relaxed);
        let replaced = Arc::new(Notify::new());
        let old = lock(&self.controls).insert(
            station.name.clone(),
            ControlHandle {
                id,
                station: station.clone(),
                tx,
                replaced: replaced.clone(),
            },
        );
        if let Some(old) = old {
            let _ = old.tx.try_send(Err(Status::aborted(format!(
                "station {}: replaced by a newer control stream",
                station.name
            ))));
            old.replaced.notify_one();
        }
        (id, replaced)
    }

    pub(crate) fn unregister_control(&self, station: &str, id: u64) {
        let mut controls = lock(&self.controls);
        if controls.get(station).is_some_and(|h| h.id == id) {
            controls.remove(station);
        }
    }

    /// Sends an event on a station's control stream, if it has one.
    pub(crate) async fn to_control(&self, station: &str, event: pb::keyserver_event::Event) {
        let tx = lock(&self.controls).get(station).map(|h| h.tx.clone());
        if let Some(tx) = tx {
            let msg = pb::KeyserverEvent { event: Some(event) };
            if tokio::time::timeout(std::time::Duration::from_secs(5), tx.send(Ok(msg)))
                .await
                .is_err()
            {
                tracing::warn!(station, "control stream is not being read: event dropped");
            }
        }
    }

    /// Pushes a job's progress to every connected station that may run it.
    pub(crate) async fn push_job_status(&self, job: &str) {
        let jobs = self.jobs.clone();
        let name = job.to_string();
        let counts = match tokio::task::spawn_blocking(move || jobs.status(Some(&name))).await {
            Ok(Ok(c)) => c,
            _ => return,
        };
        let Some(counts) = counts.into_iter().next() else {
            return;
        };
        let targets: Vec<ControlTx> = lock(&self.controls)
            .values()
            .filter(|h| h.station.may_run(job))
            .map(|h| h.tx.clone())
            .collect();
        for tx in targets {
            let msg = pb::KeyserverEvent {
                event: Some(pb::keyserver_event::Event::JobStatus(job_status_pb(&counts))),
            };
            let _ = tx.try_send(Ok(msg));
        }
    }

    /// Marks (station, request) as being personalized, unless it already
    /// is or the station has too many cards open.
    pub(crate) fn claim(self: &Arc<Self>, station: &str, request_id: &str) -> Result<Running, Status> {
        let key = (station.to_string(), request_id.to_string());
        let mut running = lock(&self.running);
        if running.contains(&key) {
            return Err(Status::already_exists(format!(
                "station {station}: request {} is already being personalized on another stream",
                super::convert::shown(request_id)
            )));
        }
        let open = running.iter().filter(|(s, _)| s == station).count();
        if open >= self.limits.max_cards_per_station {
            return Err(Status::resource_exhausted(format!(
                "station {station}: {open} cards are already being personalized (the limit)"
            )));
        }
        running.insert(key.clone());
        self.active.send_modify(|n| *n += 1);
        Ok(Running {
            shared: self.clone(),
            key,
        })
    }

    /// Runs `f` with the set of (station, request id) being personalized
    /// held still.
    pub(crate) fn with_running<R>(&self, f: impl FnOnce(&HashSet<(String, String)>) -> R) -> R {
        let running = lock(&self.running);
        f(&running)
    }

    pub(crate) fn refuse(&self, station: &str, request_id: &str, refusal: Refusal) {
        let key = (station.to_string(), request_id.to_string());
        let mut r = lock(&self.refusals);
        if r.map.insert(key.clone(), refusal).is_none() {
            r.order.push_back(key);
        }
        while r.order.len() > MAX_REFUSALS {
            if let Some(old) = r.order.pop_front() {
                r.map.remove(&old);
            }
        }
    }

    pub(crate) fn clear_refusal(&self, station: &str, request_id: &str) {
        lock(&self.refusals)
            .map
            .remove(&(station.to_string(), request_id.to_string()));
    }

    pub(crate) fn refusal(&self, station: &str, request_id: &str) -> Option<Refusal> {
        lock(&self.refusals)
            .map
            .get(&(station.to_string(), request_id.to_string()))
            .cloned()
    }

    /// The jobs a station may run, of those that exist.
    pub(crate) fn jobs_for(&self, station: &Station) -> Vec<String> {
        self.jobs
            .job_names()
            .unwrap_or_default()
            .into_iter()
            .filter(|j| station.may_run(j))
            .collect()
    }
}

pub(crate) fn job_status_pb(c: &JobCounts) -> pb::JobStatus {
    pb::JobStatus {
        job: c.job.clone(),
        profile: c.profile.clone(),
        total: c.total,
        issued: c.issued,
        voided: c.voided,
        queued: c.queued,
        in_flight: c.in_flight,
        max_round_trips: c.max_round_trips,
        held: c.held,
    }
}

/// Resolves once the keyserver shuts down.
pub(crate) async fn shutting_down(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
