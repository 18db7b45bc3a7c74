//! `keyserver serve`: load the profiles, unlock, open the audit log, the
//! archive and the RSA key pool, build the engine, settle what a stopped
//! keyserver left unfinished, then serve stations (mutual TLS) and the
//! admin socket until SIGINT/SIGTERM.
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::{CliResult, ServeArgs};
use crate::archive::Archive;
use crate::audit::AuditLog;
use crate::issue::{Engine, IssueError};
use crate::jobs::JobStore;
use crate::keystore::pool::{KeyPool, PoolConfig};
use crate::keystore::{KeystoreError, Unlocked};
use crate::ports::{AuditEvent, AuditOutcome, AuditSink};
use crate::profile::{Algorithm, KeyPolicy, LoadError, Profile};
use crate::recovery::{self, RecoveryError};
use crate::service::{self, Limits, Parts, ServerConfig, StationRegistry};

/// The sled database of the job store and the station registry, in the
/// data directory.
pub const SERVICE_DB: &str = "service.sled";

/// RSA-2048 keys the pool keeps ready when a profile escrows an RSA key:
/// at ~0.2 s a key, a minute of one core's work, enough for a burst of 64
/// cards while the refill catches up.
pub const DEFAULT_RSA_POOL: usize = 64;

/// `keyserver serve` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeCliError {
    #[error("--listen {0:?} is not an address (host:port, e.g. 127.0.0.1:7443)")]
    Listen(String),
    #[error("the data directory {0} does not exist or is not a directory (create it with `keyserver init`)")]
    NoData(PathBuf),
    #[error(
        "the profiles directory {0} does not exist: put the issuance profiles (*.toml) there, or pass \
         --profiles DIR (e.g. --profiles profiles in a source checkout)"
    )]
    NoProfilesDir(PathBuf),
    #[error(
        "the profiles directory {0} holds no profile (*.toml): the keyserver would have nothing to issue"
    )]
    NoProfiles(PathBuf),
    #[error("loading the issuance profiles: {0}")]
    Profiles(#[source] LoadError),
    #[error("unlocking the keystore: {0}")]
    Unlock(#[source] KeystoreError),
    #[error("opening {what}: {source}")]
    Open {
        what: &'static str,
        #[source]
        source: KeystoreError,
    },
    #[error("building the issuance engine: {0}")]
    Engine(#[source] IssueError),
    #[error("opening the service database {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: sled::Error,
    },
    #[error("opening the job store: {0}")]
    Jobs(#[from] crate::jobs::JobError),
    #[error("opening the station registry: {0}")]
    Stations(#[from] service::stations::StationError),
    #[error("settling what the previous run left unfinished: {0}")]
    Recovery(#[from] RecoveryError),
    #[error(transparent)]
    Serve(#[from] service::ServeError),
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("listening for signals: {0}")]
    Signals(#[source] std::io::Error),
}

/// Logs: JSON lines when standard output is not a terminal, text otherwise;
/// `RUST_LOG` sets the filter (default `info`).
pub fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if std::io::stdout().is_terminal() {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
}

pub fn serve(args: ServeArgs) -> CliResult {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeCliError::Runtime)?;
    runtime.block_on(run(args))?;
    Ok(ExitCode::SUCCESS)
}

/// What custody and issuance provide the service, and what must live as
/// long as it.
struct Wired {
    unlocked: Arc<Unlocked>,
    audit: Arc<AuditLog>,
    archive: Arc<Archive>,
    pool: Arc<KeyPool>,
    engine: Arc<Engine>,
}

/// Loads the profiles (before anyone is asked for a component: a typo in a
/// profile should not cost an unlock ceremony).
fn load_profiles(dir: &Path) -> Result<Vec<Profile>, ServeCliError> {
    if !dir.is_dir() {
        return Err(ServeCliError::NoProfilesDir(dir.to_path_buf()));
    }
    let profiles = Profile::load_dir(dir).map_err(ServeCliError::Profiles)?;
    if profiles.is_empty() {
        return Err(ServeCliError::NoProfiles(dir.to_path_buf()));
    }
    Ok(profiles)
}

/// Whether any profile escrows an RSA key (which the pool provides).
fn escrows_rsa(profiles: &[Profile]) -> bool {
    profiles.iter().any(|p| {
        p.slots
            .iter()
            .any(|s| s.algorithm == Algorithm::Rsa2048 && s.policy == KeyPolicy::Escrow)
    })
}

/// Custody, the audit log, the archive, the RSA key pool and the engine.
fn wire(
    data: &Path,
    unlock: &[PathBuf],
    profiles: Vec<Profile>,
    rsa_pool: Option<usize>,
) -> Result<Wired, ServeCliError> {
    let unlocked = if unlock.is_empty() {
        Unlocked::from_prompt(data)
    } else {
        Unlocked::from_component_files(data, unlock)
    }
    .map_err(ServeCliError::Unlock)?;
    let unlocked = Arc::new(unlocked);
    let audit = unlocked.audit();
    let archive = Arc::new(unlocked.open_archive().map_err(|source| ServeCliError::Open {
        what: "the archive",
        source,
    })?);
    let target = rsa_pool.unwrap_or(if escrows_rsa(&profiles) {
        DEFAULT_RSA_POOL
    } else {
        0
    });
    let pool = Arc::new(
        unlocked
            .key_pool(PoolConfig { target })
            .map_err(|source| ServeCliError::Open {
                what: "the RSA key pool",
                source,
            })?,
    );
    tracing::info!(
        target,
        ready = pool.len(),
        "RSA key pool open (refilled in the background; an empty pool generates on the spot)"
    );
    let ids: Vec<String> = profiles.iter().map(|p| p.id.clone()).collect();
    let engine = Arc::new(
        Engine::new(
            profiles,
            unlocked.clone(),
            archive.clone(),
            audit.clone(),
            pool.clone(),
        )
        .map_err(ServeCliError::Engine)?,
    );
    tracing::info!(profiles = %ids.join(", "), "issuance engine ready");
    Ok(Wired {
        unlocked,
        audit,
        archive,
        pool,
        engine,
    })
}

/// Opens the service's database: the job store and the station registry.
fn open_stores(
    data: &Path,
    records_key: &vsc::secret::AesKey,
) -> Result<(JobStore, StationRegistry), ServeCliError> {
    let path = data.join(SERVICE_DB);
    let db = sled::open(&path).map_err(|source| ServeCliError::Db {
        path: path.clone(),
        source,
    })?;
    // A newly created database: make its directory entries durable.
    let _ = std::fs::File::open(data).and_then(|d| d.sync_all());
    let _ = std::fs::File::open(&path).and_then(|d| d.sync_all());
    Ok((JobStore::open(&db, records_key)?, StationRegistry::open(&db)?))
}

async fn run(args: ServeArgs) -> Result<(), ServeCliError> {
    let listen: SocketAddr = args
        .listen
        .parse()
        .map_err(|_| ServeCliError::Listen(args.listen.clone()))?;
    let data = args.data.data.clone();
    if !data.is_dir() {
        return Err(ServeCliError::NoData(data));
    }
    let profiles_dir = args.profiles.clone().unwrap_or_else(|| data.join("profiles"));
    let profiles = load_profiles(&profiles_dir)?;
    // Unlocking reads the terminal and fsyncs: off the async threads.
    let (d, unlock, pool) = (data.clone(), args.unlock.clone(), args.rsa_pool);
    let wired = tokio::task::spawn_blocking(move || wire(&d, &unlock, profiles, pool))
        .await
        .map_err(|e| service::ServeError::Task(e.to_string()))??;
    let (jobs, stations) = open_stores(&data, wired.unlocked.records_key())?;
    let jobs = Arc::new(jobs);

    // What a stopped keyserver left unfinished: void in the archive and
    // the job store alike, audited.
    let (a, j, l) = (wired.archive.clone(), jobs.clone(), wired.audit.clone());
    let recovered = tokio::task::spawn_blocking(move || recovery::after_restart(&a, &j, l.as_ref()))
        .await
        .map_err(|e| service::ServeError::Task(e.to_string()))??;
    if !recovered.cards.is_empty() || !recovered.requests.is_empty() {
        tracing::warn!(
            cards = recovered.cards.len(),
            requests = recovered.requests.len(),
            "the previous run stopped mid-card: those cards are void and their records queued again"
        );
    }

    let parts = Parts {
        engine: wired.engine.clone(),
        authority: wired.unlocked.clone(),
        audit: wired.audit.clone(),
        jobs,
        stations: Arc::new(stations),
    };
    let config = ServerConfig {
        listen,
        advertise: args.advertise.clone(),
        admin_socket: service::client::admin_socket_path(&data),
        limits: Limits::default(),
    };
    let server = service::start(config, parts).await?;
    lifecycle(
        &wired.audit,
        "keyserver.start",
        format!(
            "listening on {}, profiles {}, {} RSA keys ready",
            server.local_addr(),
            crate::ports::CardEngine::profiles(wired.engine.as_ref()).join(", "),
            wired.pool.len()
        ),
    );
    println!(
        "keyserver ready: listening on {} (stations, mutual TLS); admin socket {}",
        server.local_addr(),
        server.admin_socket().display()
    );
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServeCliError::Signals)?;
    let signal = tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    tracing::info!(
        signal,
        "stopping: cards in personalization are void, their records queued again"
    );
    let stopped = server.shutdown().await;
    lifecycle(&wired.audit, "keyserver.stop", format!("on {signal}"));
    // The engine, then the pool (its refill thread finishes the key it is
    // generating), the archive and the audit log close as they drop.
    drop(wired);
    stopped?;
    tracing::info!("keyserver stopped cleanly");
    Ok(())
}

/// Audits the keyserver's start or stop; a failure is logged.
fn lifecycle(audit: &AuditLog, action: &str, detail: String) {
    let event = AuditEvent {
        actor: "keyserver".into(),
        action: action.into(),
        subject: "keyserver".into(),
        outcome: AuditOutcome::Ok,
        detail,
    };
    if let Err(e) = audit.record(event) {
        tracing::error!(error = %e, action, "could not be audited");
    }
}
