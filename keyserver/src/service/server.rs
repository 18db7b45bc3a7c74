//! Starting and stopping the service: stations over mutual TLS, the admin
//! service on the local socket.

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use protos::pb;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status, Streaming};

use super::admin::AdminService;
use super::authority::{Authority, AuthorityError};
use super::convert::Limits;
use super::state::Shared;
use super::stations::StationRegistry;
use crate::jobs::{JobError, JobStore};
use crate::ports::{AuditSink, CardEngine};

/// The service could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the keyserver's TLS identity: {0}")]
    Identity(#[from] AuthorityError),
    #[error("the keyserver's server certificate is unreadable: {0}")]
    ServerCertificate(String),
    #[error("configuring TLS: {0}")]
    Tls(#[source] tonic::transport::Error),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("a keyserver is already running on {0} (its admin socket answers)")]
    AlreadyRunning(PathBuf),
    #[error("the admin socket {path}: {reason}")]
    AdminSocket { path: PathBuf, reason: String },
    #[error("voiding the cards left in flight at start: {0}")]
    Recovery(#[source] JobError),
    #[error("the station service stopped: {0}")]
    Serve(#[source] tonic::transport::Error),
    #[error("the service task failed: {0}")]
    Task(String),
}

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where stations connect (mutual TLS). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// The address written into station bundles (default: the listening
    /// address).
    pub advertise: Option<String>,
    /// The admin socket's path (`DATA/admin.sock`).
    pub admin_socket: PathBuf,
    pub limits: Limits,
}

/// What the service is made of. Custody provides the authority, the audit
/// sink and the records key the job store was opened with; issuance the
/// engine.
#[derive(Clone)]
pub struct Parts {
    pub engine: Arc<dyn CardEngine>,
    pub authority: Arc<dyn Authority>,
    pub audit: Arc<dyn AuditSink>,
    pub jobs: Arc<JobStore>,
    pub stations: Arc<StationRegistry>,
}

/// A running service.
pub struct RunningServer {
    local_addr: SocketAddr,
    admin_socket: PathBuf,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    stop_servers: watch::Sender<bool>,
    tls: JoinHandle<Result<(), tonic::transport::Error>>,
    admin: JoinHandle<Result<(), tonic::transport::Error>>,
    sweeper: JoinHandle<()>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("local_addr", &self.local_addr)
            .field("admin_socket", &self.admin_socket)
            .finish_non_exhaustive()
    }
}

struct KeyserverService {
    shared: Arc<Shared>,
}

#[tonic::async_trait]
impl pb::keyserver_server::Keyserver for KeyserverService {
    type ControlStream = ReceiverStream<Result<pb::KeyserverEvent, Status>>;
    type PersoStream = ReceiverStream<Result<pb::PersoDown, Status>>;

    async fn control(
        &self,
        request: Request<Streaming<pb::StationEvent>>,
    ) -> Result<Response<Self::ControlStream>, Status> {
        let station = self.shared.authenticate(&request, "control").await?;
        let (tx, rx) = super::control::channel();
        tokio::spawn(super::control::run(
            self.shared.clone(),
            station,
            request.into_inner(),
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn perso(
        &self,
        request: Request<Streaming<pb::PersoUp>>,
    ) -> Result<Response<Self::PersoStream>, Status> {
        if *self.shared.shutdown.borrow() {
            return Err(Status::unavailable("the keyserver is shutting down"));
        }
        let station = self.shared.authenticate(&request, "perso").await?;
        let (tx, rx) = super::perso::channel();
        tokio::spawn(super::perso::run(
            self.shared.clone(),
            station,
            request.into_inner(),
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The name stations verify the server certificate against: its first DNS
/// subject alternative name, else its first IP address, else its CN.
pub fn server_name(cert_pem: &str) -> Result<String, ServeError> {
    use x509_parser::extensions::GeneralName;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| ServeError::ServerCertificate(e.to_string()))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| ServeError::ServerCertificate(e.to_string()))?;
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        let names = &san.value.general_names;
        if let Some(GeneralName::DNSName(d)) = names.iter().find(|n| matches!(n, GeneralName::DNSName(_))) {
            return Ok((*d).to_string());
        }
        if let Some(GeneralName::IPAddress(ip)) =
            names.iter().find(|n| matches!(n, GeneralName::IPAddress(_)))
        {
            let addr = match ip.len() {
                4 => <[u8; 4]>::try_from(*ip)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*ip)
                    .ok()
                    .map(|b| std::net::IpAddr::from(b).to_string()),
                _ => None,
            };
            if let Some(a) = addr {
                return Ok(a);
            }
        }
    }
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string);
    cn.ok_or_else(|| ServeError::ServerCertificate("it names no DNS name, IP address or common name".into()))
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Binds the admin socket at `path`, mode 0600 from the start: bound in a
/// fresh private directory, then renamed into place. A stale socket (no
/// keyserver answers on it) is replaced.
fn bind_admin_socket(path: &Path) -> Result<(tokio::net::UnixListener, u32), ServeError> {
    let err = |reason: String| ServeError::AdminSocket {
        path: path.to_path_buf(),
        reason,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(err("it exists and is not a socket; remove it".into()));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::AlreadyRunning(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(|e| err(format!("removing the stale socket: {e}")))?;
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".admin-{}.tmp", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&tmp)
        .map_err(|e| err(format!("creating {}: {e}", tmp.display())))?;
    let staged = tmp.join("admin.sock");
    let result = (|| {
        let listener = tokio::net::UnixListener::bind(&staged).map_err(|e| err(format!("binding: {e}")))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| err(format!("setting mode 0600: {e}")))?;
        let uid = std::fs::metadata(&staged)
            .map_err(|e| err(format!("reading its owner: {e}")))?
            .uid();
        std::fs::rename(&staged, path).map_err(|e| err(format!("moving it into place: {e}")))?;
        Ok((listener, uid))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    if result.is_ok() {
        let _ = fsync_dir(dir);
    }
    result
}

/// Starts the service: voids what a previous run left in flight, listens
/// for stations (mutual TLS) and on the admin socket.
///
/// With a real archive, settle it first with
/// [`recovery::after_restart`](crate::recovery::after_restart), as
/// `keyserver serve` does: it voids the cards sealed without an outcome and
/// the requests left in flight together, so that the manifest and the job
/// store agree; what is left in flight here is then nothing.
pub async fn start(config: ServerConfig, parts: Parts) -> Result<RunningServer, ServeError> {
    // What a crashed (or stopped) keyserver left in flight is void.
    let jobs = parts.jobs.clone();
    let stale = tokio::task::spawn_blocking(move || jobs.void_in_flight("keyserver restarted"))
        .await
        .map_err(|e| ServeError::Task(e.to_string()))?
        .map_err(ServeError::Recovery)?;

    let identity = parts.authority.server_identity()?;
    let ca_pem = parts.authority.client_ca_pem()?;
    let server_name = server_name(&identity.cert_pem)?;
    let tls = ServerTlsConfig::new()
        .timeout(Duration::from_secs(10))
        .identity(Identity::from_pem(
            &identity.cert_pem,
            identity.key_pem.expose_secret(),
        ))
        .client_ca_root(Certificate::from_pem(ca_pem.as_bytes()));
    drop(identity);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
    if config.advertise.is_none() && local_addr.ip().is_unspecified() {
        tracing::warn!(listen = %local_addr,
            "listening on an unspecified address without --advertise: station bundles will name {local_addr}, \
             which stations cannot dial");
    }
    let (uds, uid) = bind_admin_socket(&config.admin_socket)?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let (stop_servers, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared::new(
        parts.engine,
        parts.jobs,
        parts.stations,
        parts.audit,
        parts.authority,
        config.limits.clone(),
        server_name,
        config.advertise.clone().unwrap_or_else(|| local_addr.to_string()),
        shutdown_rx,
    ));

    for s in &stale {
        tracing::warn!(station = %s.station, request = %s.request_id, job = %s.job, record = %s.record_id,
            "card left in flight by the previous run: void, record queued again");
        shared
            .audit(
                "keyserver",
                "card.void",
                &format!("request {}/{}", s.station, s.request_id),
                true,
                format!(
                    "job={} record={}: keyserver restarted; record queued again",
                    s.job, s.record_id
                ),
            )
            .await;
    }

    let limits = &config.limits;
    let station_svc = pb::keyserver_server::KeyserverServer::new(KeyserverService {
        shared: shared.clone(),
    })
    .max_decoding_message_size(limits.max_station_message)
    .max_encoding_message_size(limits.max_keyserver_message);
    let max_streams = u32::try_from(limits.max_cards_per_station.saturating_add(8)).unwrap_or(u32::MAX);
    let mut stop = stop_rx.clone();
    let tls_server = Server::builder()
        .tls_config(tls)
        .map_err(ServeError::Tls)?
        .max_concurrent_streams(Some(max_streams))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .add_service(station_svc)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async move {
            let _ = stop.wait_for(|s| *s).await;
        });
    let tls = tokio::spawn(tls_server);

    let admin_svc = pb::admin_server::AdminServer::new(AdminService {
        shared: shared.clone(),
        uid,
    })
    .max_decoding_message_size(limits.max_admin_message)
    .max_encoding_message_size(limits.max_admin_message);
    let mut stop = stop_rx;
    let admin_server = Server::builder()
        .add_service(admin_svc)
        .serve_with_incoming_shutdown(UnixListenerStream::new(uds), async move {
            let _ = stop.wait_for(|s| *s).await;
        });
    let admin = tokio::spawn(admin_server);
    let sweeper = tokio::spawn(sweep(shared.clone()));

    tracing::info!(listen = %local_addr, admin = %config.admin_socket.display(), voided_at_start = stale.len(), "keyserver serving");
    Ok(RunningServer {
        local_addr,
        admin_socket: config.admin_socket,
        shared,
        shutdown,
        stop_servers,
        tls,
        admin,
        sweeper,
    })
}

/// Voids reservations whose card was never opened (a station that asked
/// and vanished), every minute.
async fn sweep(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = super::state::shutting_down(&mut shutdown) => return,
        }
        sweep_once(&shared).await;
    }
}

pub(crate) async fn sweep_once(shared: &Arc<Shared>) {
    let ttl = i64::try_from(shared.limits.unopened_ttl.as_secs()).unwrap_or(i64::MAX);
    let before = time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .saturating_sub(ttl);
    let s = shared.clone();
    let voided = tokio::task::spawn_blocking(move || {
        s.with_running(|running| {
            s.jobs
                .void_stale("the station never opened the card", before, running)
        })
    })
    .await;
    match voided {
        Ok(Ok(list)) => {
            for r in list {
                tracing::warn!(station = %r.station, request = %r.request_id, "reservation never opened: void");
                shared
                    .audit(
                        "keyserver",
                        "card.void",
                        &format!("request {}/{}", r.station, r.request_id),
                        true,
                        format!(
                            "job={} record={}: the station never opened the card; record queued again",
                            r.job, r.record_id
                        ),
                    )
                    .await;
                shared.push_job_status(&r.job).await;
            }
        }
        Ok(Err(e)) => tracing::error!(error = %e, "voiding unopened reservations failed"),
        Err(e) => tracing::error!(error = %e, "voiding unopened reservations panicked"),
    }
}

impl RunningServer {
    /// Where stations connect.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn admin_socket(&self) -> &Path {
        &self.admin_socket
    }

    /// Voids reservations never opened for longer than the configured time
    /// (the service does this every minute by itself).
    pub async fn sweep_unopened(&self) {
        sweep_once(&self.shared).await;
    }

    /// Stops: cards in personalization are aborted (void, their records
    /// queued again), streams end, the listeners close, the admin socket
    /// is removed.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        tracing::info!("keyserver shutting down");
        let _ = self.shutdown.send(true);
        let mut active = self.shared.active.subscribe();
        if tokio::time::timeout(Duration::from_secs(120), active.wait_for(|n| *n == 0))
            .await
            .is_err()
        {
            tracing::error!("cards still in personalization after 120 s: stopping anyway");
        }
        let _ = self.stop_servers.send(true);
        let mut result = Ok(());
        for (what, handle) in [("station", self.tls), ("admin", self.admin)] {
            let abort = handle.abort_handle();
            match tokio::time::timeout(Duration::from_secs(10), handle).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => result = Err(ServeError::Serve(e)),
                Ok(Err(e)) if e.is_cancelled() => {}
                Ok(Err(e)) => result = Err(ServeError::Task(e.to_string())),
                Err(_) => {
                    tracing::warn!(server = what, "connections still open after 10 s: closing them");
                    abort.abort();
                }
            }
        }
        self.sweeper.abort();
        if let Err(e) = std::fs::remove_file(&self.admin_socket) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %e, "removing the admin socket");
            }
        }
        tracing::info!("keyserver stopped");
        result
    }
}
