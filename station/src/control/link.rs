//! The connection to the keyserver: one mutual-TLS channel, one Control
//! stream on it (Hello → Welcome, then PersoRequests up, Results and job
//! status down), reconnected with capped exponential backoff whenever it
//! fails. Perso streams for cards are opened on the same channel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use protos::pb;
use protos::pb::keyserver_client::KeyserverClient;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::report::{Event, LinkStatus, Report};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How long the keyserver may take to answer a Hello with its Welcome.
const WELCOME_WAIT: Duration = Duration::from_secs(30);
/// TCP connect limit; the TLS handshake has its own.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Capped exponential backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    pub fn next(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.max).max(self.first)
    }
}

/// A connected control stream.
pub(crate) struct Session {
    /// Counts connections: a different one is a new connection.
    pub generation: u64,
    pub client: KeyserverClient<Channel>,
    pub control: mpsc::Sender<pb::StationEvent>,
    pub welcome: pb::Welcome,
}

impl Session {
    /// Sends an event on the control stream; false if the stream is gone.
    pub async fn send(&self, event: pb::station_event::Event) -> bool {
        self.control
            .send(pb::StationEvent { event: Some(event) })
            .await
            .is_ok()
    }
}

/// Where the connection stands.
#[derive(Clone)]
pub(crate) enum LinkState {
    Connecting,
    Up(Arc<Session>),
    /// The keyserver refused this station (revoked, unknown certificate).
    Refused(String),
    /// Never reached within the connect timeout.
    Unreachable(String),
    /// The run is over.
    Closed,
}

impl LinkState {
    pub fn session(&self) -> Option<Arc<Session>> {
        match self {
            LinkState::Up(s) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn generation(&self) -> Option<u64> {
        match self {
            LinkState::Up(s) => Some(s.generation),
            _ => None,
        }
    }
}

/// Results from the control stream, for the requests someone waits for.
#[derive(Default)]
pub(crate) struct Results {
    slots: Mutex<HashMap<String, Option<pb::Result>>>,
    arrived: Notify,
}

impl Results {
    /// Someone will wait for `request_id`'s Result.
    pub fn expect(&self, request_id: &str) {
        lock(&self.slots).entry(request_id.to_owned()).or_insert(None);
    }

    /// Stops waiting for `request_id`.
    pub fn forget(&self, request_id: &str) {
        lock(&self.slots).remove(request_id);
    }

    /// Hands a Result to its waiter; false when nobody expects it.
    pub fn deliver(&self, result: pb::Result) -> bool {
        let mut slots = lock(&self.slots);
        match slots.get_mut(&result.request_id) {
            Some(slot) => {
                *slot = Some(result);
                drop(slots);
                self.arrived.notify_waiters();
                true
            }
            None => false,
        }
    }

    /// The Result if it arrived.
    pub fn take(&self, request_id: &str) -> Option<pb::Result> {
        let mut slots = lock(&self.slots);
        match slots.get(request_id) {
            Some(Some(_)) => slots.remove(request_id).flatten(),
            _ => None,
        }
    }

    /// Waits until `request_id`'s Result arrives, at most until `deadline`.
    pub async fn wait(&self, request_id: &str, deadline: Instant) -> Option<pb::Result> {
        loop {
            let notified = self.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(r) = self.take(request_id) {
                return Some(r);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.take(request_id);
            }
        }
    }
}

/// What the link needs to know.
pub(crate) struct LinkConfig {
    /// `host:port`.
    pub address: String,
    pub tls: ClientTlsConfig,
    pub station: String,
    pub software_version: String,
    pub job: String,
    pub backoff: Backoff,
    /// Give up when the first connection does not succeed within this.
    pub connect_timeout: Option<Duration>,
}

impl LinkConfig {
    pub fn tls_from(bundle: &protos::bundle::StationBundle) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&bundle.ca_certificate_pem))
            .domain_name(bundle.server_name.clone())
            .identity(Identity::from_pem(
                &bundle.certificate_pem,
                bundle.private_key_pem.as_bytes(),
            ))
            .timeout(CONNECT_TIMEOUT)
    }
}

enum ConnectError {
    /// The keyserver said no to this station.
    Refused(String),
    /// Anything else: try again.
    Failed(String),
}

fn status_text(s: &Status) -> String {
    if s.message().is_empty() {
        format!("{:?}", s.code())
    } else {
        s.message().to_owned()
    }
}

/// The error and its sources, on one line (tonic's transport errors say
/// little at the top).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = s.source();
    }
    text
}

async fn connect(
    cfg: &LinkConfig,
    readers: Vec<pb::ReaderInfo>,
) -> Result<
    (
        KeyserverClient<Channel>,
        mpsc::Sender<pb::StationEvent>,
        tonic::Streaming<pb::KeyserverEvent>,
        pb::Welcome,
    ),
    ConnectError,
> {
    let fail = |e: &dyn std::error::Error| ConnectError::Failed(chain(e));
    let endpoint = Endpoint::from_shared(format!("https://{}", cfg.address))
        .map_err(|e| fail(&e))?
        .tls_config(cfg.tls.clone())
        .map_err(|e| fail(&e))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    let channel = endpoint.connect().await.map_err(|e| fail(&e))?;
    let mut client = KeyserverClient::new(channel);
    let (tx, rx) = mpsc::channel(256);
    let hello = pb::StationEvent {
        event: Some(pb::station_event::Event::Hello(pb::Hello {
            station: cfg.station.clone(),
            readers,
            software_version: cfg.software_version.clone(),
        })),
    };
    tx.send(hello)
        .await
        .map_err(|_| ConnectError::Failed("the control stream closed at once".into()))?;
    let refused_or = |s: Status| {
        if s.code() == Code::PermissionDenied || s.code() == Code::Unauthenticated {
            ConnectError::Refused(status_text(&s))
        } else {
            ConnectError::Failed(format!("{:?}: {}", s.code(), status_text(&s)))
        }
    };
    let mut down = client
        .control(ReceiverStream::new(rx))
        .await
        .map_err(refused_or)?
        .into_inner();
    let first = tokio::time::timeout(WELCOME_WAIT, down.message())
        .await
        .map_err(|_| ConnectError::Failed(format!("no Welcome within {WELCOME_WAIT:?}")))?
        .map_err(refused_or)?;
    match first {
        Some(pb::KeyserverEvent {
            event: Some(pb::keyserver_event::Event::Welcome(w)),
        }) => Ok((client, tx, down, w)),
        Some(_) => Err(ConnectError::Failed(
            "the keyserver's first message was not a Welcome".into(),
        )),
        None => Err(ConnectError::Failed(
            "the keyserver ended the control stream before its Welcome".into(),
        )),
    }
}

/// What the link shares with the rest of the station.
pub(crate) struct LinkParts {
    pub state: watch::Sender<LinkState>,
    pub results: Arc<Results>,
    pub job_status: watch::Sender<Option<pb::JobStatus>>,
    pub report: Arc<dyn Report>,
    /// The readers, for the Hello.
    pub readers: Arc<Mutex<std::collections::BTreeMap<String, pb::ReaderInfo>>>,
}

/// Runs the link until `closing` turns true or the keyserver refuses the
/// station.
pub(crate) async fn run(cfg: LinkConfig, parts: LinkParts, mut closing: watch::Receiver<bool>) {
    let started = Instant::now();
    let mut ever = false;
    let mut delay = cfg.backoff.first;
    let mut generation = 0u64;
    let report = parts.report.clone();
    loop {
        if *closing.borrow() {
            break;
        }
        parts.state.send_replace(LinkState::Connecting);
        report.event(&Event::Keyserver {
            state: LinkStatus::Connecting,
            retry_in_s: None,
            detail: Some(cfg.address.clone()),
        });
        // The keyserver takes at most 256 readers in a Hello; the others
        // are reported as ReaderInfo events when they change.
        let readers: Vec<pb::ReaderInfo> = lock(&parts.readers).values().take(256).cloned().collect();
        let attempt = tokio::select! {
            r = connect(&cfg, readers) => r,
            _ = closing.wait_for(|c| *c) => break,
        };
        let lost_detail = match attempt {
            Ok((client, control, mut down, welcome)) => {
                ever = true;
                delay = cfg.backoff.first;
                generation += 1;
                tracing::info!(keyserver = %cfg.address, jobs = ?welcome.jobs, "keyserver connected");
                report.event(&Event::Keyserver {
                    state: LinkStatus::Connected,
                    retry_in_s: None,
                    detail: Some(format!("{} ({})", cfg.address, welcome.keyserver)),
                });
                parts.state.send_replace(LinkState::Up(Arc::new(Session {
                    generation,
                    client,
                    control,
                    welcome,
                })));
                let end = loop {
                    let msg = tokio::select! {
                        m = down.message() => m,
                        _ = closing.wait_for(|c| *c) => break None,
                    };
                    match msg {
                        Ok(Some(pb::KeyserverEvent { event: Some(e) })) => dispatch(&cfg, &parts, e),
                        Ok(Some(pb::KeyserverEvent { event: None })) => {}
                        Ok(None) => break Some(Ok(())),
                        Err(s) => break Some(Err(s)),
                    }
                };
                parts.state.send_replace(LinkState::Connecting);
                match end {
                    None => break,
                    Some(Err(s)) if s.code() == Code::PermissionDenied => {
                        let msg = status_text(&s);
                        report.event(&Event::Keyserver {
                            state: LinkStatus::Refused,
                            retry_in_s: None,
                            detail: Some(msg.clone()),
                        });
                        parts.state.send_replace(LinkState::Refused(msg));
                        return;
                    }
                    Some(Err(s)) => format!("{:?}: {}", s.code(), status_text(&s)),
                    Some(Ok(())) => "the keyserver ended the control stream".to_owned(),
                }
            }
            Err(ConnectError::Refused(msg)) => {
                report.event(&Event::Keyserver {
                    state: LinkStatus::Refused,
                    retry_in_s: None,
                    detail: Some(msg.clone()),
                });
                parts.state.send_replace(LinkState::Refused(msg));
                return;
            }
            Err(ConnectError::Failed(e)) => {
                if !ever {
                    if let Some(limit) = cfg.connect_timeout {
                        if started.elapsed() + delay > limit {
                            report.event(&Event::Keyserver {
                                state: LinkStatus::Unreachable,
                                retry_in_s: None,
                                detail: Some(e.clone()),
                            });
                            parts.state.send_replace(LinkState::Unreachable(format!(
                                "{e} (no connection within {} s)",
                                limit.as_secs()
                            )));
                            return;
                        }
                    }
                }
                tracing::warn!(keyserver = %cfg.address, error = %e, retry_in_s = delay.as_secs(), "keyserver unreachable");
                report.event(&Event::Keyserver {
                    state: LinkStatus::Unreachable,
                    retry_in_s: Some(delay.as_secs().max(1)),
                    detail: Some(e),
                });
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = closing.wait_for(|c| *c) => break,
                }
                delay = cfg.backoff.next(delay);
                continue;
            }
        };
        // The connection was up and dropped: reconnect after a pause.
        tracing::warn!(keyserver = %cfg.address, reason = %lost_detail, "keyserver connection lost");
        report.event(&Event::Keyserver {
            state: LinkStatus::Lost,
            retry_in_s: Some(delay.as_secs().max(1)),
            detail: Some(lost_detail),
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = closing.wait_for(|c| *c) => break,
        }
        delay = cfg.backoff.next(delay);
    }
    parts.state.send_replace(LinkState::Closed);
}

fn dispatch(cfg: &LinkConfig, parts: &LinkParts, event: pb::keyserver_event::Event) {
    match event {
        pb::keyserver_event::Event::Result(r) => {
            let id = r.request_id.clone();
            if !parts.results.deliver(r) {
                tracing::debug!(request = %id, "a Result for a request nobody waits for");
            }
        }
        pb::keyserver_event::Event::JobStatus(j) => {
            if j.job == cfg.job {
                let changed = parts.job_status.borrow().as_ref() != Some(&j);
                if changed {
                    parts.report.event(&Event::JobStatus {
                        job: j.job.clone(),
                        total: j.total,
                        issued: j.issued,
                        voided: j.voided,
                        queued: j.queued,
                        in_flight: j.in_flight,
                    });
                    parts.job_status.send_replace(Some(j));
                }
            }
        }
        pb::keyserver_event::Event::Welcome(_) => {
            tracing::debug!("a second Welcome: ignored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(30),
        };
        let mut d = b.first;
        let mut seen = vec![d.as_secs()];
        for _ in 0..7 {
            d = b.next(d);
            seen.push(d.as_secs());
        }
        assert_eq!(seen, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[tokio::test]
    async fn results_reach_whoever_expects_them() {
        let r = Results::default();
        let result = |id: &str| pb::Result {
            request_id: id.into(),
            outcome: pb::Outcome::Ok as i32,
            ..Default::default()
        };
        assert!(!r.deliver(result("nobody")));
        r.expect("a");
        assert_eq!(r.take("a"), None);
        let deadline = Instant::now() + Duration::from_secs(60);
        let r = Arc::new(r);
        let waiter = {
            let r = r.clone();
            tokio::spawn(async move { r.wait("a", deadline).await })
        };
        tokio::task::yield_now().await;
        assert!(r.deliver(result("a")));
        assert_eq!(waiter.await.unwrap().unwrap().request_id, "a");
        // Taken: gone.
        assert_eq!(r.take("a"), None);
        assert!(!r.deliver(result("a")));
        // A deadline passed: None.
        r.expect("b");
        assert_eq!(r.wait("b", Instant::now()).await, None);
        r.forget("b");
        assert!(!r.deliver(result("b")));
    }
}
